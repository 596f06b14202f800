#include "testca.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <sys/stat.h>

static int write_pem(const char *path, X509 *c, EVP_PKEY *k)
{
    FILE *f = fopen(path, "w");
    int ok = f != NULL && (c ? PEM_write_X509(f, c) : PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL,
                                                                            NULL)) == 1;
    if (f != NULL && fclose(f) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

static int make_ca(EVP_PKEY *k, const char *cert_path, const char *key_path, const char *cn);

int otk_test_make_ca(const char *cert_path, const char *key_path, const char *cn)
{
    return make_ca(EVP_EC_gen("P-256"), cert_path, key_path, cn);
}

int otk_test_make_ca_rsa(const char *cert_path, const char *key_path, const char *cn)
{
    return make_ca(EVP_RSA_gen(2048), cert_path, key_path, cn);
}

/* A self-signed CA of key k (taken), written as PEM (the key mode 0600). */
static int make_ca(EVP_PKEY *k, const char *cert_path, const char *key_path, const char *cn)
{
    X509 *c = X509_new();
    X509_NAME *n;
    int rc = -1;
    if (k == NULL || c == NULL || X509_set_version(c, 2) != 1 ||
        ASN1_INTEGER_set(X509_get_serialNumber(c), 1) != 1)
        goto out;
    n = X509_get_subject_name(c);
    if (X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) != 1 ||
        X509_set_issuer_name(c, n) != 1 || X509_gmtime_adj(X509_getm_notBefore(c), -60) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(c), 86400) == NULL || X509_set_pubkey(c, k) != 1 ||
        X509_sign(c, k, EVP_sha256()) <= 0)
        goto out;
    if (write_pem(cert_path, c, NULL) == 0 && write_pem(key_path, NULL, k) == 0 &&
        chmod(key_path, 0600) == 0)
        rc = 0;
out:
    X509_free(c);
    EVP_PKEY_free(k);
    return rc;
}
