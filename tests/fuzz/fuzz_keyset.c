/*
 * Fuzz target: the key-set plaintext decoder of both protocol versions
 * (docs/protocol.md §4.3, §11.3); whatever decodes re-encodes exactly.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "otakey/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const uint8_t *data, size_t size, uint8_t proto)
{
    uint8_t out[OTK_KEYSET2_MAX_LEN];
    size_t len = 0;
    otk_keyset ks;
    memset(&ks, 0, sizeof ks);
    if (otk_keyset_decode_v(data, size, proto, &ks) != OTK_OK)
        return;
    if (otk_keyset_encode_v(&ks, proto, out, sizeof out, &len) != OTK_OK || len != size ||
        memcmp(out, data, size) != 0)
        abort();
    if (strlen(ks.cloud.host) != ks.cloud.host_len || strlen(ks.cloud.user) != ks.cloud.user_len ||
        strlen(ks.cloud.secret) != ks.cloud.secret_len)
        abort();
    /* A certificate lies inside the input. */
    if (ks.kind == OTK_KIND_CERT &&
        (ks.cert < data || ks.cert + ks.cert_len > data + size || ks.cert_len > OTK_CERT_MAX))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check(data, size, OTK_PROTO_VERSION);
    check(data, size, OTK_PROTO_V2);
    return 0;
}
