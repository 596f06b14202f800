/*
 * otakey-flashdump: what an attacker holding one device's flash reads out of
 * it (docs/security.md, "The holder of one device's flash"). Prints the
 * active and staged key sets of an otakey-device key partition, one line
 * each: "SET VERSION CLOUD HOST PORT USER SECRET" for a password set,
 * "SET VERSION CLOUD HOST PORT cert DER_BYTES" for a certificate set, whose
 * certificate and key --pem PREFIX writes to PREFIX.SET.crt and .key (for
 * stock clients such as mosquitto_pub).
 *
 * usage: otakey-flashdump FILE [--pem PREFIX]   exit 0, 1 (no key set), 2 (bad usage)
 */
#include <stdio.h>
#include <string.h>

#include "otakey/keystore.h"
#include "posix_port.h"

static int dump_cert(const otk_keystore *ks, int set, const otk_keyset *k, const char *pem)
{
    static uint8_t der[OTK_CERT_MAX];
    uint8_t priv[OTK_PRIV_LEN];
    char path[2][512];
    FILE *f[2] = {NULL, NULL};
    size_t n = 0;
    int rc = 0, i;
    const char *name = set ? "staged" : "active";
    if (otk_ks_read_cert(ks, set, der, sizeof der, &n) != OTK_OK ||
        otk_ks_read_key(ks, set, priv) != OTK_OK) {
        fprintf(stderr, "otakey-flashdump: %s certificate set unreadable\n", name);
        return -1;
    }
    printf("%s %u %u %s %u cert %u\n", name, (unsigned)k->version, (unsigned)k->cloud.cloud_id,
           k->cloud.host, (unsigned)k->cloud.port, (unsigned)n);
    if (pem != NULL) {
        for (i = 0; i < 2; i++) {
            snprintf(path[i], sizeof path[i], "%s.%s.%s", pem, name, i ? "key" : "crt");
            f[i] = fopen(path[i], "w");
        }
        if (f[0] == NULL || f[1] == NULL || otk_posix_cert_pem(der, n, priv, f[0], f[1]) != 0) {
            fprintf(stderr, "otakey-flashdump: cannot write %s / %s\n", path[0], path[1]);
            rc = -1;
        }
        for (i = 0; i < 2; i++)
            if (f[i] != NULL && fclose(f[i]) != 0)
                rc = -1;
    }
    otk_wipe(priv, sizeof priv);
    return rc;
}

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
    const char *pem = argc == 4 && !strcmp(argv[2], "--pem") ? argv[3] : NULL;
    if ((argc != 2 && pem == NULL) || argv[1][0] == '-') {
        fprintf(argc == 2 && !strcmp(argv[1], "--help") ? stdout : stderr,
                "usage: otakey-flashdump FILE [--pem PREFIX]\n");
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
            found = 1;
            if (k.kind == OTK_KIND_CERT) {
                found = dump_cert(&ks, set, &k, pem) == 0 && found;
                continue;
            }
            printf("%s %u %u %s %u %s %s\n", set ? "staged" : "active", (unsigned)k.version,
                   (unsigned)k.cloud.cloud_id, k.cloud.host, (unsigned)k.cloud.port, k.cloud.user,
                   k.cloud.secret);
            otk_wipe(&k, sizeof k);
        }
    otk_file_flash_close(&flash);
    return found ? 0 : 1;
}
