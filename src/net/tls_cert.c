/*
 * TLS client authentication with a version 2 certificate set (docs/protocol.md
 * §11): an OpenSSL context holding the device's certificate and key from its
 * key partition (never written to a file), verifying the cloud's server
 * against the CA file, its host name or address, and the set's CA pin.
 */
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

#include "cloud_login.h"

static int pin_index = -1, alert_index = -1;

/* A fatal alert the server sent about our certificate: the cloud refused it. */
static void on_info(const SSL *ssl, int where, int ret)
{
    SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);
    int *refused = ctx ? SSL_CTX_get_ex_data(ctx, alert_index) : NULL;
    int desc = ret & 0xff;
    if (refused == NULL || !(where & SSL_CB_READ_ALERT) || ((ret >> 8) & 0xff) != 2)
        return;
    /* bad_certificate, certificate_revoked / expired / unknown, unknown_ca, access_denied */
    if (desc == 42 || desc == 44 || desc == 45 || desc == 46 || desc == 48 || desc == 49 ||
        desc == 116 /* certificate_required */)
        *refused = 1;
}

int otk_posix_cert_refused(const void *ctx)
{
    const int *refused = ctx && alert_index >= 0 ? SSL_CTX_get_ex_data(ctx, alert_index) : NULL;
    return refused != NULL && *refused;
}

/* The pin must match one certificate of the chain the server presents. */
static int verify_pin(int ok, X509_STORE_CTX *store)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    SSL_CTX *ctx = ssl ? SSL_get_SSL_CTX(ssl) : NULL;
    uint8_t *pin = ctx ? SSL_CTX_get_ex_data(ctx, pin_index) : NULL;
    STACK_OF(X509) *chain;
    int i, found = 0;
    if (!ok || pin == NULL || X509_STORE_CTX_get_error_depth(store) != 0)
        return ok;
    chain = X509_STORE_CTX_get0_chain(store);
    for (i = 0; chain != NULL && i < sk_X509_num(chain); i++) {
        unsigned char *der = NULL, md[32];
        unsigned mdl = 0;
        int n = i2d_X509(sk_X509_value(chain, i), &der);
        if (n > 0 && EVP_Digest(der, (size_t)n, md, &mdl, EVP_sha256(), NULL) == 1 &&
            memcmp(md, pin, 32) == 0)
            found = 1;
        OPENSSL_free(der);
    }
    if (!found)
        X509_STORE_CTX_set_error(store, X509_V_ERR_CERT_REJECTED);
    return found;
}

static void free_pin(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    OPENSSL_clear_free(ptr, 32);
}

/* The device's key: its scalar, and the point from its certificate. */
static EVP_PKEY *device_key(const uint8_t priv[OTK_PRIV_LEN], X509 *cert)
{
    uint8_t point[65];
    size_t plen = 0;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *key = NULL;
    BIGNUM *d = BN_bin2bn(priv, OTK_PRIV_LEN, NULL);
    if (bld == NULL || d == NULL ||
        EVP_PKEY_get_octet_string_param(X509_get0_pubkey(cert), OSSL_PKEY_PARAM_PUB_KEY, point,
                                        sizeof point, &plen) != 1 ||
        OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) != 1 ||
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, plen) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d) != 1 ||
        (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
        (ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL ||
        EVP_PKEY_fromdata_init(ctx) != 1 || EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_KEYPAIR, params) != 1)
        key = NULL;
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    EVP_PKEY_CTX_free(ctx);
    BN_clear_free(d);
    return key;
}

void *otk_posix_cert_ctx(const char *cafile, const char *host, const uint8_t *der,
                            size_t der_len, const uint8_t priv[OTK_PRIV_LEN],
                            const uint8_t pin[OTK_PIN_LEN])
{
    static const uint8_t zero[OTK_PIN_LEN];
    const unsigned char *p = der;
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    SSL_CTX *ctx = NULL;
    X509_VERIFY_PARAM *vp;
    uint8_t *pin_copy = NULL;
    int ok = 0;
    if (cafile == NULL || !cafile[0] || host == NULL || der == NULL || priv == NULL)
        return NULL;
    if (pin_index < 0)
        pin_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_pin);
    if (alert_index < 0)
        alert_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_pin);
    if ((cert = d2i_X509(NULL, &p, (long)der_len)) == NULL || (key = device_key(priv, cert)) == NULL ||
        (ctx = SSL_CTX_new(TLS_client_method())) == NULL)
        goto out;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    vp = SSL_CTX_get0_param(ctx);
    /* TLS fails closed: the CA must load; the server is checked by name and pin. */
    if (SSL_CTX_load_verify_locations(ctx, cafile, NULL) != 1 ||
        (X509_VERIFY_PARAM_set1_ip_asc(vp, host) != 1 && X509_VERIFY_PARAM_set1_host(vp, host, 0) != 1) ||
        SSL_CTX_use_certificate(ctx, cert) != 1 || SSL_CTX_use_PrivateKey(ctx, key) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1)
        goto out;
    if (pin != NULL && memcmp(pin, zero, OTK_PIN_LEN) != 0) {
        if ((pin_copy = OPENSSL_malloc(OTK_PIN_LEN)) == NULL)
            goto out;
        memcpy(pin_copy, pin, OTK_PIN_LEN);
        if (SSL_CTX_set_ex_data(ctx, pin_index, pin_copy) != 1) {
            OPENSSL_free(pin_copy);
            goto out;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_pin);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    {
        int *refused = OPENSSL_zalloc(OTK_PIN_LEN); /* freed with the pin's destructor */
        if (refused == NULL || SSL_CTX_set_ex_data(ctx, alert_index, refused) != 1) {
            OPENSSL_free(refused);
            goto out;
        }
        SSL_CTX_set_info_callback(ctx, on_info);
    }
    ok = 1;
out:
    X509_free(cert);
    EVP_PKEY_free(key);
    if (!ok) {
        SSL_CTX_free(ctx);
        ctx = NULL;
    }
    return ctx;
}

int otk_posix_cert_pem(const uint8_t *der, size_t der_len, const uint8_t priv[OTK_PRIV_LEN],
                       FILE *cert_out, FILE *key_out)
{
    const unsigned char *p = der;
    X509 *cert = d2i_X509(NULL, &p, (long)der_len);
    EVP_PKEY *key = cert ? device_key(priv, cert) : NULL;
    int ok = key != NULL && PEM_write_X509(cert_out, cert) == 1 &&
             PEM_write_PrivateKey(key_out, key, NULL, NULL, 0, NULL, NULL) == 1;
    X509_free(cert);
    EVP_PKEY_free(key);
    return ok ? 0 : -1;
}
