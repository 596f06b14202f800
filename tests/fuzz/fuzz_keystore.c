/*
 * Fuzz target: the key-store record parser. The input is the raw content
 * of a key partition (two 1 KiB slots, 4-byte program unit, room for
 * certificate records); mounting it must never fail or crash, whatever it
 * reports as active or staged must load (a certificate set's certificate
 * and key too), then survive staging and committing a newer set.
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
    uint8_t der[OTK_CERT_MAX], priv[OTK_PRIV_LEN];
    size_t dlen;
    int w;
    if (otk_flashsim_init(&f, 2048, 1024, 4) != 0)
        abort();
    memcpy(f.mem, data, size < 2048 ? size : 2048);
    otk_flashsim_port(&f, &none, &port);
    if (otk_ks_mount(&ks, &port) != OTK_OK)
        abort();
    if (otk_ks_active_version(&ks) && otk_ks_load(&ks, 0, &k) != OTK_OK)
        abort();
    if (otk_ks_staged_version(&ks) && otk_ks_load(&ks, 1, &k) != OTK_OK)
        abort();
    for (w = 0; w < 2; w++)
        if ((w ? otk_ks_staged_version(&ks) : otk_ks_active_version(&ks)) &&
            otk_ks_load(&ks, w, &k) == OTK_OK && k.kind == OTK_KIND_CERT &&
            (otk_ks_read_cert(&ks, w, der, sizeof der, &dlen) != OTK_OK || dlen != k.cert_len ||
             otk_ks_read_key(&ks, w, priv) != OTK_OK))
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
