/* Two certificate clouds for the in-process benchmarks (xclouds.h). */
#include "xclouds.h"

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>

#include "testca.h"

static otk_x509 *xcloud[2];
static X509 *xca[2];
static otk_cloud_adapter inner;

otk_x509 *xclouds_of(uint32_t cloud_id)
{
    return cloud_id == WORLD_CLOUD_A ? xcloud[0] : cloud_id == WORLD_CLOUD_B ? xcloud[1] : NULL;
}

static otk_status x_issue(void *ctx, const uint8_t id[16], uint32_t cloud_id, const uint8_t dpub[64],
                          uint8_t *der, size_t der_size, size_t *der_len, char serial[OTK_USER_MAX + 1],
                          uint8_t pin[OTK_PIN_LEN])
{
    (void)ctx;
    return otk_x509_issue_cert(xclouds_of(cloud_id), id, cloud_id, dpub, der, der_size, der_len,
                               serial, pin);
}

static otk_status x_remove(void *ctx, uint32_t cloud_id, const char *serial)
{
    (void)ctx;
    return otk_x509_remove(xclouds_of(cloud_id), cloud_id, serial);
}

static otk_status x_create(void *ctx, const uint8_t id[16], const otk_cloud *c)
{
    (void)ctx;
    return inner.create(inner.ctx, id, c);
}

/* Opens cloud i on its CA (made first when make is set). 0 or -1. */
static int open_cloud(world *w, int i, const char *cert, const char *key, const char *crl, int make)
{
    otk_x509_cloud cfg;
    char err[256];
    FILE *f;
    memset(&cfg, 0, sizeof cfg);
    cfg.cloud_id = i ? WORLD_CLOUD_B : WORLD_CLOUD_A;
    snprintf(cfg.ca_cert, sizeof cfg.ca_cert, "%s", cert);
    snprintf(cfg.ca_key, sizeof cfg.ca_key, "%s", key);
    snprintf(cfg.crl_file, sizeof cfg.crl_file, "%s", crl);
    cfg.crl_shares = 16; /* as docs/operations.md and the lab configure a cloud */
    if (make && otk_test_make_ca(cfg.ca_cert, cfg.ca_key, i ? "bench-cloud-b" : "bench-cloud-a") != 0)
        return -1;
    if (otk_x509_open(&cfg, &xcloud[i], err, sizeof err) != OTK_OK) {
        fprintf(stderr, "certificate cloud %u: %s\n", cfg.cloud_id, err);
        return -1;
    }
    if ((f = fopen(cfg.ca_cert, "r")) == NULL)
        return -1;
    xca[i] = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (xca[i] == NULL)
        return -1;
    w->cfg.clouds[i].kind = OTK_KIND_CERT;
    return 0;
}

static int bind_clouds(world *w)
{
    inner = w->cloudif;
    w->cloudif.ctx = NULL;
    w->cloudif.create = x_create;
    w->cloudif.remove = x_remove;
    w->cloudif.ensure = NULL;
    w->cloudif.issue_cert = x_issue;
    return world_restart_agent(w);
}

int xclouds_setup(world *w, const char *dir)
{
    int i;
    for (i = 0; i < 2; i++) {
        char cert[256], key[256], crl[256];
        snprintf(cert, sizeof cert, "%s/ca%d.crt", dir, i);
        snprintf(key, sizeof key, "%s/ca%d.key", dir, i);
        snprintf(crl, sizeof crl, "%s/crl%d.pem", dir, i);
        if (open_cloud(w, i, cert, key, crl, 1) != 0)
            return -1;
    }
    return bind_clouds(w);
}

int xclouds_setup_on(world *w, const char *const cert[2], const char *const key[2],
                     const char *const crl[2])
{
    int i;
    for (i = 0; i < 2; i++)
        if (open_cloud(w, i, cert[i], key[i], crl[i], 0) != 0)
            return -1;
    return bind_clouds(w);
}

otk_proof xclouds_login(world *w, const wdev *d)
{
    uint8_t der[OTK_CERT_MAX], priv[OTK_PRIV_LEN];
    const unsigned char *p = der;
    size_t n = 0;
    otk_cloud c;
    X509 *cert = NULL;
    otk_proof r = OTK_PROOF_REFUSED;
    if (otk_device_cloud(&d->dev, OTK_SET_STAGED, &c) == OTK_OK && xclouds_of(c.cloud_id) != NULL &&
        otk_device_cert(&d->dev, OTK_SET_STAGED, der, sizeof der, &n) == OTK_OK &&
        otk_device_cert_key(&d->dev, OTK_SET_STAGED, priv) == OTK_OK &&
        (cert = d2i_X509(NULL, &p, (long)n)) != NULL &&
        X509_verify(cert, X509_get0_pubkey(xca[c.cloud_id == WORLD_CLOUD_B])) == 1) {
        EVP_PKEY *k = X509_get0_pubkey(cert);
        uint8_t pt[65], digest[32] = {1}, sig[64];
        size_t pl = 0;
        /* Possession: a signature by the device's key verifies under the certificate's. */
        if (EVP_PKEY_get_octet_string_param(k, "pub", pt, sizeof pt, &pl) == 1 && pl == 65 &&
            w->dev_crypto.ecdsa_sign(w->dev_crypto.ctx, priv, digest, sig) == OTK_OK &&
            w->agent_crypto.ecdsa_verify(w->agent_crypto.ctx, pt + 1, digest, sig) == OTK_OK)
            r = OTK_PROOF_OK;
    }
    X509_free(cert);
    otk_wipe(priv, sizeof priv);
    return r;
}

void xclouds_close(void)
{
    int i;
    for (i = 0; i < 2; i++) {
        otk_x509_close(xcloud[i]);
        X509_free(xca[i]);
        xcloud[i] = NULL;
        xca[i] = NULL;
    }
}
