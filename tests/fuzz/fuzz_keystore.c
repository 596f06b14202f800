/*
 * Fuzz target: the key-store record parser. The input is the raw content
 * of a key partition (two 256-byte slots, 4-byte program unit); mounting
 * it must never fail or crash, and whatever it reports as active or staged
 * must load, then survive staging and committing a newer set.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "flashsim.h"
#include "otakey/keystore.h"
#include "otakey/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static otk_crypto none;
    otk_flashsim f;
    otk_port port;
    otk_keystore ks;
    otk_keyset k;
    uint32_t v;
    if (otk_flashsim_init(&f, 512, 256, 4) != 0)
        abort();
    memcpy(f.mem, data, size < 512 ? size : 512);
    otk_flashsim_port(&f, &none, &port);
    if (otk_ks_mount(&ks, &port) != OTK_OK)
        abort();
    if (otk_ks_active_version(&ks) && otk_ks_load(&ks, 0, &k) != OTK_OK)
        abort();
    if (otk_ks_staged_version(&ks) && otk_ks_load(&ks, 1, &k) != OTK_OK)
        abort();
    v = otk_ks_active_version(&ks);
    if (v < 0xfffffff0u) {
        memset(&k, 0, sizeof k);
        k.version = v + 1;
        if (otk_cloud_set(&k.cloud, 1, "h", 1, 0, "u", "s") != OTK_OK ||
            otk_ks_stage(&ks, &k) != OTK_OK || otk_ks_commit(&ks, v + 1) != OTK_OK ||
            otk_ks_mount(&ks, &port) != OTK_OK || otk_ks_active_version(&ks) != v + 1)
            abort();
    }
    otk_flashsim_free(&f);
    return 0;
}
