/* Fuzz target: the key-set plaintext decoder; decoded sets re-encode exactly. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "otakey/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t out[OTK_KEYSET_MAX_LEN];
    size_t len = 0;
    otk_keyset ks;
    memset(&ks, 0, sizeof ks);
    if (otk_keyset_decode(data, size, &ks) != OTK_OK)
        return 0;
    if (otk_keyset_encode(&ks, out, sizeof out, &len) != OTK_OK || len != size ||
        memcmp(out, data, size) != 0)
        abort();
    if (strlen(ks.cloud.host) != ks.cloud.host_len || strlen(ks.cloud.user) != ks.cloud.user_len ||
        strlen(ks.cloud.secret) != ks.cloud.secret_len)
        abort();
    return 0;
}
