/*
 * Fuzz target: the message decoder. Whatever decodes must re-encode to the
 * same bytes (the codec is canonical) and must never read out of bounds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "otakey/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t out[OTK_MSG_MAX_LEN];
    size_t len = 0;
    otk_msg m;
    if (otk_msg_decode(data, size, &m) != OTK_OK)
        return 0;
    if (otk_msg_encode(&m, out, sizeof out, &len) != OTK_OK || len != size ||
        memcmp(out, data, size) != 0)
        abort();
    if (otk_msg_auth_offset(m.type, len) > len)
        abort();
    return 0;
}
