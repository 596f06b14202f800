/*
 * otakey-flashdump: what an attacker holding one device's flash reads out of
 * it (docs/security.md, "The holder of one device's flash"). Prints the
 * active and staged key sets of an otakey-device key partition, one line
 * each: "SET VERSION CLOUD HOST PORT USER SECRET".
 *
 * usage: otakey-flashdump FILE      exit 0, 1 (no key set), 2 (bad usage)
 */
#include <stdio.h>
#include <string.h>

#include "otakey/keystore.h"
#include "posix_port.h"

int main(int argc, char **argv)
{
    otk_file_flash flash;
    otk_crypto crypto;
    otk_port port;
    otk_keystore ks;
    union {
        uint8_t b[OTK_CRYPTO_MBEDTLS_STATE_SIZE];
        void *align;
    } cstate;
    int set, found = 0;
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(argc == 2 && !strcmp(argv[1], "--help") ? stdout : stderr,
                "usage: otakey-flashdump FILE\n");
        return argc == 2 && !strcmp(argv[1], "--help") ? 0 : 2;
    }
    /* The geometry otakey-device uses: two 4 KiB sectors, 8-byte program unit. */
    if (otk_file_flash_open(&flash, argv[1], 2 * 4096, 4096, 8) != 0 ||
        otk_crypto_mbedtls_init(&crypto, cstate.b, sizeof cstate.b, NULL, NULL) != OTK_OK) {
        fprintf(stderr, "otakey-flashdump: cannot open '%s'\n", argv[1]);
        return 1;
    }
    otk_posix_port(&flash, &crypto, &port);
    memset(&ks, 0, sizeof ks);
    if (otk_ks_mount(&ks, &port) == OTK_OK)
        for (set = 0; set < 2; set++) {
            otk_keyset k;
            if (otk_ks_load(&ks, set, &k) != OTK_OK)
                continue;
            printf("%s %u %u %s %u %s %s\n", set ? "staged" : "active", (unsigned)k.version,
                   (unsigned)k.cloud.cloud_id, k.cloud.host, (unsigned)k.cloud.port, k.cloud.user,
                   k.cloud.secret);
            otk_wipe(&k, sizeof k);
            found = 1;
        }
    otk_file_flash_close(&flash);
    return found ? 0 : 1;
}
