#include "memcloud.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct client {
    uint32_t cloud_id;
    char user[OTK_USER_MAX + 1];     /* a certificate's: its serial in hex */
    char secret[OTK_SECRET_MAX + 1]; /* a certificate's: "" */
    uint8_t device_id[OTK_DEVICE_ID_LEN];
    uint8_t dpub[OTK_PUB_LEN];       /* a certificate's key */
} client;

struct otk_memcloud {
    client *c;
    size_t n, cap;
    unsigned fail;
    uint64_t serial;
    int wrong_key; /* issue certificates for another key (a faulty CA) */
};

/*
 * A stand-in certificate: "OTKMEMCERT", serial (8), device id (16) and
 * the key as a SubjectPublicKeyInfo holds it, 0x04 || X || Y.
 */
#define CERT_LEN (10u + 8u + OTK_DEVICE_ID_LEN + 1u + OTK_PUB_LEN)

otk_memcloud *otk_memcloud_new(void)
{
    return calloc(1, sizeof(otk_memcloud));
}

void otk_memcloud_free(otk_memcloud *m)
{
    if (m == NULL)
        return;
    free(m->c);
    free(m);
}

static long find(const otk_memcloud *m, uint32_t cloud_id, const char *user)
{
    size_t i;
    for (i = 0; i < m->n; i++)
        if (m->c[i].cloud_id == cloud_id && strcmp(m->c[i].user, user) == 0)
            return (long)i;
    return -1;
}

static otk_status mc_create(void *ctx, const uint8_t device_id[16], const otk_cloud *creds)
{
    otk_memcloud *m = ctx;
    long i;
    if (m->fail) {
        m->fail--;
        return OTK_ERR_CLOUD;
    }
    i = find(m, creds->cloud_id, creds->user);
    if (i < 0) {
        if (m->n == m->cap) {
            m->cap = m->cap ? 2 * m->cap : 16;
            m->c = realloc(m->c, m->cap * sizeof *m->c);
            if (m->c == NULL)
                abort();
        }
        i = (long)m->n++;
    }
    memset(&m->c[i], 0, sizeof m->c[i]);
    m->c[i].cloud_id = creds->cloud_id;
    strcpy(m->c[i].user, creds->user);
    strcpy(m->c[i].secret, creds->secret);
    memcpy(m->c[i].device_id, device_id, OTK_DEVICE_ID_LEN);
    return OTK_OK;
}

static otk_status mc_remove(void *ctx, uint32_t cloud_id, const char *user)
{
    otk_memcloud *m = ctx;
    long i;
    if (m->fail) {
        m->fail--;
        return OTK_ERR_CLOUD;
    }
    i = find(m, cloud_id, user);
    if (i >= 0)
        m->c[i] = m->c[--m->n];
    return OTK_OK;
}

static client *add(otk_memcloud *m)
{
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 16;
        m->c = realloc(m->c, m->cap * sizeof *m->c);
        if (m->c == NULL)
            abort();
    }
    memset(&m->c[m->n], 0, sizeof m->c[m->n]);
    return &m->c[m->n++];
}

static otk_status mc_issue_cert(void *ctx, const uint8_t device_id[16], uint32_t cloud_id,
                                const uint8_t dpub[64], uint8_t *der, size_t der_size,
                                size_t *der_len, char serial[OTK_USER_MAX + 1],
                                uint8_t ca_pin[OTK_PIN_LEN])
{
    otk_memcloud *m = ctx;
    client *c;
    uint8_t sn[8];
    if (m->fail) {
        m->fail--;
        return OTK_ERR_CLOUD;
    }
    if (der_size < CERT_LEN)
        return OTK_ERR_CLOUD;
    otk_put_u32(sn, (uint32_t)(++m->serial >> 32));
    otk_put_u32(sn + 4, (uint32_t)m->serial);
    c = add(m);
    c->cloud_id = cloud_id;
    otk_hex_encode(sn, 8, c->user);
    memcpy(c->device_id, device_id, OTK_DEVICE_ID_LEN);
    memcpy(c->dpub, dpub, OTK_PUB_LEN);
    memcpy(der, "OTKMEMCERT", 10);
    memcpy(der + 10, sn, 8);
    memcpy(der + 18, device_id, OTK_DEVICE_ID_LEN);
    der[34] = 0x04;
    memcpy(der + 35, dpub, OTK_PUB_LEN);
    if (m->wrong_key)
        der[35] ^= 0x01;
    *der_len = CERT_LEN;
    snprintf(serial, OTK_USER_MAX + 1, "%s", c->user);
    memset(ca_pin, 0x5a, OTK_PIN_LEN);
    return OTK_OK;
}

void otk_memcloud_adapter(otk_memcloud *m, otk_cloud_adapter *out)
{
    out->ctx = m;
    out->create = mc_create;
    out->remove = mc_remove;
    out->ensure = NULL;
    out->issue_cert = mc_issue_cert;
}

otk_proof otk_memcloud_connect_cert(otk_memcloud *m, const otk_crypto *cr, uint32_t cloud_id,
                                    const uint8_t *der, size_t der_len,
                                    const uint8_t priv[OTK_PRIV_LEN])
{
    char sn[17];
    uint8_t digest[32], sig[64];
    long i;
    if (der_len != CERT_LEN || memcmp(der, "OTKMEMCERT", 10) != 0)
        return OTK_PROOF_REFUSED;
    otk_hex_encode(der + 10, 8, sn);
    i = find(m, cloud_id, sn);
    if (i < 0 || memcmp(m->c[i].dpub, der + 35, OTK_PUB_LEN) != 0)
        return OTK_PROOF_REFUSED; /* revoked, or never issued by this cloud */
    /* What TLS client authentication proves: the holder has the key. */
    memset(digest, 0x11, sizeof digest);
    if (cr->ecdsa_sign(cr->ctx, priv, digest, sig) != OTK_OK ||
        cr->ecdsa_verify(cr->ctx, m->c[i].dpub, digest, sig) != OTK_OK)
        return OTK_PROOF_REFUSED;
    return OTK_PROOF_OK;
}

void otk_memcloud_wrong_key(otk_memcloud *m, int on)
{
    m->wrong_key = on;
}

otk_proof otk_memcloud_connect(otk_memcloud *m, const otk_cloud *creds)
{
    long i = find(m, creds->cloud_id, creds->user);
    return i >= 0 && strcmp(m->c[i].secret, creds->secret) == 0 ? OTK_PROOF_OK : OTK_PROOF_REFUSED;
}

size_t otk_memcloud_count(const otk_memcloud *m)
{
    return m->n;
}

void otk_memcloud_fail(otk_memcloud *m, unsigned n)
{
    m->fail = n;
}
