/*
 * Token keys (include/otakey/pkcs11.h). OpenSSL 3.0 reaches PKCS#11 tokens
 * through the pkcs11 engine; the ENGINE API it needs is marked deprecated
 * there.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "otakey/pkcs11.h"

#include <openssl/engine.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "otakey/common.h"

struct otk_token_key {
    ENGINE *engine;
    EVP_PKEY *key;
};

int otk_is_token_uri(const char *s)
{
    return s != NULL && strncmp(s, "pkcs11:", 7) == 0;
}

otk_token_key *otk_token_key_open(const char *uri, const char *module, const char *pin_file,
                                  char *err, size_t err_size)
{
    char pin[256] = "";
    struct stat st;
    otk_token_key *k;
    FILE *f;
    size_t len;
    if (module == NULL || !module[0] || pin_file == NULL || !pin_file[0]) {
        snprintf(err, err_size, "'%s': a token key needs pkcs11_module and pkcs11_pin_file", uri);
        return NULL;
    }
    if (stat(pin_file, &st) != 0 || (st.st_mode & 077) || (f = fopen(pin_file, "r")) == NULL) {
        snprintf(err, err_size,
                 "pkcs11_pin_file '%s': missing, or accessible by group or others (chmod 600 it)",
                 pin_file);
        return NULL;
    }
    len = fread(pin, 1, sizeof pin - 1, f);
    fclose(f);
    pin[len] = '\0';
    pin[strcspn(pin, "\r\n")] = '\0';
    if ((k = calloc(1, sizeof *k)) == NULL)
        abort();
    ENGINE_load_builtin_engines();
    if ((k->engine = ENGINE_by_id("pkcs11")) == NULL) {
        snprintf(err, err_size, "'%s': OpenSSL has no pkcs11 engine (install libengine-pkcs11-openssl)",
                 uri);
    } else if (ENGINE_ctrl_cmd_string(k->engine, "MODULE_PATH", module, 0) != 1 ||
               ENGINE_init(k->engine) != 1) {
        ENGINE_free(k->engine);
        k->engine = NULL;
        snprintf(err, err_size, "pkcs11_module '%s': cannot be loaded", module);
    } else if (ENGINE_ctrl_cmd_string(k->engine, "PIN", pin, 0) != 1 ||
               (k->key = ENGINE_load_private_key(k->engine, uri, NULL, NULL)) == NULL) {
        snprintf(err, err_size, "'%s': no such key in the token, or a wrong PIN", uri);
    }
    ERR_clear_error();
    otk_wipe(pin, sizeof pin);
    if (k->key == NULL) {
        otk_token_key_close(k);
        return NULL;
    }
    return k;
}

int otk_token_key_public(const otk_token_key *k, unsigned char pub[64])
{
    unsigned char *der = NULL;
    int n = k && k->key && EVP_PKEY_get_bits(k->key) == 256 ? i2d_PUBKEY(k->key, &der) : -1;
    /* SubjectPublicKeyInfo of a P-256 key ends with the point 0x04 || X || Y. */
    int ok = n == 91 && der[n - 65] == 0x04;
    if (ok)
        memcpy(pub, der + n - 64, 64);
    OPENSSL_free(der);
    return ok ? 0 : -1;
}

void *otk_token_key_pkey(const otk_token_key *k)
{
    return k ? k->key : NULL;
}

void otk_token_key_close(otk_token_key *k)
{
    if (k == NULL)
        return;
    EVP_PKEY_free(k->key);
    if (k->engine != NULL) {
        ENGINE_finish(k->engine);
        ENGINE_free(k->engine);
    }
    free(k);
}
