/*
 * Crypto port over mbedTLS 2.28 or 3.x (what devices use). Everything lives in
 * the caller's state buffer; mbedTLS allocates its bignums internally.
 * The random source is the port's (a TRNG on a microcontroller); on Linux
 * hosts, passing none uses getrandom(2).
 */
/* mbedTLS 3 made struct fields private (the port reads and writes a point's
 * coordinates): asked for before any mbedTLS header. 2.28 ignores it. */
#ifndef MBEDTLS_ALLOW_PRIVATE_ACCESS
#define MBEDTLS_ALLOW_PRIVATE_ACCESS
#endif
#include "internal.h"

#include <mbedtls/bignum.h>
#include <mbedtls/ccm.h>
#include <mbedtls/ecdh.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/hkdf.h>
#include <mbedtls/md.h>
#include <mbedtls/sha256.h>
#include <mbedtls/version.h>

/* mbedTLS 3 dropped the _ret suffix of the SHA-256 calls (same arguments and results). */
#if MBEDTLS_VERSION_MAJOR >= 3
#define sha256_starts mbedtls_sha256_starts
#define sha256_update mbedtls_sha256_update
#define sha256_finish mbedtls_sha256_finish
#else
#define sha256_starts mbedtls_sha256_starts_ret
#define sha256_update mbedtls_sha256_update_ret
#define sha256_finish mbedtls_sha256_finish_ret
#endif

#if defined(__linux__)
#include <sys/random.h>
#endif

typedef struct mb_state {
    otk_rng_fn rng;
    void *rng_ctx;
} mb_state;

/* A compile-time check that the public state size holds the state. */
typedef char mb_state_fits[sizeof(mb_state) <= OTK_CRYPTO_MBEDTLS_STATE_SIZE ? 1 : -1];

#if defined(__linux__)
static int os_random(void *ctx, uint8_t *out, size_t len)
{
    (void)ctx;
    while (len > 0) {
        ssize_t n = getrandom(out, len, 0);
        if (n <= 0)
            return -1;
        out += n;
        len -= (size_t)n;
    }
    return 0;
}
#endif

/* mbedTLS-style RNG callback: 0 on success. */
static int mb_rng(void *p, unsigned char *out, size_t len)
{
    mb_state *s = (mb_state *)p;
    return s->rng(s->rng_ctx, out, len) == 0 ? 0 : MBEDTLS_ERR_ECP_RANDOM_FAILED;
}

static otk_status mb_random(void *ctx, uint8_t *out, size_t len)
{
    return mb_rng(ctx, out, len) == 0 ? OTK_OK : OTK_ERR_CRYPTO;
}

static otk_status mb_sha256(void *ctx, const otk_iov *parts, size_t n, uint8_t out[32])
{
    mbedtls_sha256_context h;
    size_t i;
    int rc;
    (void)ctx;
    mbedtls_sha256_init(&h);
    rc = sha256_starts(&h, 0);
    for (i = 0; rc == 0 && i < n; i++)
        if (parts[i].n)
            rc = sha256_update(&h, (const unsigned char *)parts[i].p, parts[i].n);
    if (rc == 0)
        rc = sha256_finish(&h, out);
    mbedtls_sha256_free(&h);
    return rc == 0 ? OTK_OK : OTK_ERR_CRYPTO;
}

static otk_status mb_hmac(void *ctx, const uint8_t *key, size_t key_len, const otk_iov *parts,
                          size_t n, uint8_t out[32])
{
    mbedtls_md_context_t m;
    size_t i;
    int rc;
    (void)ctx;
    mbedtls_md_init(&m);
    rc = mbedtls_md_setup(&m, mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), 1);
    if (rc == 0)
        rc = mbedtls_md_hmac_starts(&m, key, key_len);
    for (i = 0; rc == 0 && i < n; i++)
        if (parts[i].n)
            rc = mbedtls_md_hmac_update(&m, (const unsigned char *)parts[i].p, parts[i].n);
    if (rc == 0)
        rc = mbedtls_md_hmac_finish(&m, out);
    mbedtls_md_free(&m); /* zeroizes the key schedule */
    return rc == 0 ? OTK_OK : OTK_ERR_CRYPTO;
}

static otk_status mb_hkdf_extract(void *ctx, const uint8_t *salt, size_t salt_len,
                                  const uint8_t *ikm, size_t ikm_len, uint8_t prk[32])
{
    (void)ctx;
    return mbedtls_hkdf_extract(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), salt, salt_len, ikm,
                                ikm_len, prk) == 0
               ? OTK_OK
               : OTK_ERR_CRYPTO;
}

static otk_status mb_hkdf_expand(void *ctx, const uint8_t prk[32], const uint8_t *info,
                                 size_t info_len, uint8_t *out, size_t out_len)
{
    (void)ctx;
    if (out_len > 255u * 32u)
        return OTK_ERR_INVALID_ARGUMENT;
    return mbedtls_hkdf_expand(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), prk, 32, info,
                               info_len, out, out_len) == 0
               ? OTK_OK
               : OTK_ERR_CRYPTO;
}

static otk_status mb_ccm(int enc, const uint8_t key[16], const uint8_t iv[13], const uint8_t *aad,
                         size_t aad_len, const uint8_t *in, size_t len, uint8_t *out, uint8_t *tag)
{
    mbedtls_ccm_context c;
    int rc;
    mbedtls_ccm_init(&c);
    rc = mbedtls_ccm_setkey(&c, MBEDTLS_CIPHER_ID_AES, key, 128);
    if (rc == 0 && enc)
        rc = mbedtls_ccm_encrypt_and_tag(&c, len, iv, 13, aad, aad_len, in, out, tag, 16);
    else if (rc == 0)
        rc = mbedtls_ccm_auth_decrypt(&c, len, iv, 13, aad, aad_len, in, out, tag, 16);
    mbedtls_ccm_free(&c);
    if (rc == MBEDTLS_ERR_CCM_AUTH_FAILED) {
        otk_wipe(out, len);
        return OTK_ERR_BAD_MAC;
    }
    if (rc != 0 && !enc)
        otk_wipe(out, len);
    return rc == 0 ? OTK_OK : OTK_ERR_CRYPTO;
}

static otk_status mb_ccm_encrypt(void *ctx, const uint8_t key[16], const uint8_t iv[13],
                                 const uint8_t *aad, size_t aad_len, const uint8_t *pt, size_t len,
                                 uint8_t *ct, uint8_t tag[16])
{
    (void)ctx;
    return mb_ccm(1, key, iv, aad, aad_len, pt, len, ct, tag);
}

static otk_status mb_ccm_decrypt(void *ctx, const uint8_t key[16], const uint8_t iv[13],
                                 const uint8_t *aad, size_t aad_len, const uint8_t *ct, size_t len,
                                 const uint8_t tag[16], uint8_t *pt)
{
    (void)ctx;
    return mb_ccm(0, key, iv, aad, aad_len, ct, len, pt, (uint8_t *)(uintptr_t)tag);
}

/* Loads P-256 and, when given, a private scalar and a public point; checks both. */
static otk_status load_keys(mbedtls_ecp_group *g, mbedtls_mpi *d, const uint8_t *priv,
                            mbedtls_ecp_point *q, const uint8_t *pub)
{
    if (mbedtls_ecp_group_load(g, MBEDTLS_ECP_DP_SECP256R1) != 0)
        return OTK_ERR_CRYPTO;
    if (priv != NULL &&
        (mbedtls_mpi_read_binary(d, priv, 32) != 0 || mbedtls_ecp_check_privkey(g, d) != 0))
        return OTK_ERR_INVALID_ARGUMENT;
    if (pub != NULL &&
        (mbedtls_mpi_read_binary(&q->X, pub, 32) != 0 ||
         mbedtls_mpi_read_binary(&q->Y, pub + 32, 32) != 0 || mbedtls_mpi_lset(&q->Z, 1) != 0 ||
         mbedtls_ecp_check_pubkey(g, q) != 0))
        return OTK_ERR_INVALID_ARGUMENT;
    return OTK_OK;
}

/* Raw keys: the caller holds them; there is nothing to destroy or import. */
static void mb_key_destroy(void *ctx, uint8_t purpose)
{
    (void)ctx;
    (void)purpose;
}

static otk_status mb_ak_import(void *ctx, uint8_t purpose, uint8_t ak[32])
{
    (void)ctx;
    (void)purpose;
    (void)ak;
    return OTK_OK;
}

static otk_status mb_ec_keygen(void *ctx, uint8_t purpose, uint8_t priv[32], uint8_t pub[64])
{
    mbedtls_ecp_group g;
    mbedtls_mpi d;
    mbedtls_ecp_point q;
    otk_status st;
    (void)purpose; /* raw keys: the caller keeps them */
    mbedtls_ecp_group_init(&g);
    mbedtls_mpi_init(&d);
    mbedtls_ecp_point_init(&q);
    st = load_keys(&g, NULL, NULL, NULL, NULL);
    if (st == OTK_OK && (mbedtls_ecp_gen_keypair(&g, &d, &q, mb_rng, ctx) != 0 ||
                         mbedtls_mpi_write_binary(&d, priv, 32) != 0 ||
                         mbedtls_mpi_write_binary(&q.X, pub, 32) != 0 ||
                         mbedtls_mpi_write_binary(&q.Y, pub + 32, 32) != 0))
        st = OTK_ERR_CRYPTO;
    mbedtls_ecp_point_free(&q);
    mbedtls_mpi_free(&d);
    mbedtls_ecp_group_free(&g);
    return st;
}

static otk_status mb_ecdh(void *ctx, const uint8_t priv[32], const uint8_t peer[64],
                          uint8_t shared[32])
{
    mbedtls_ecp_group g;
    mbedtls_mpi d, z;
    mbedtls_ecp_point q;
    otk_status st;
    mbedtls_ecp_group_init(&g);
    mbedtls_mpi_init(&d);
    mbedtls_mpi_init(&z);
    mbedtls_ecp_point_init(&q);
    st = load_keys(&g, &d, priv, &q, peer);
    if (st == OTK_OK && (mbedtls_ecdh_compute_shared(&g, &z, &q, &d, mb_rng, ctx) != 0 ||
                         mbedtls_mpi_write_binary(&z, shared, 32) != 0))
        st = OTK_ERR_CRYPTO;
    mbedtls_ecp_point_free(&q);
    mbedtls_mpi_free(&z);
    mbedtls_mpi_free(&d);
    mbedtls_ecp_group_free(&g);
    return st;
}

static otk_status mb_ecdsa_sign(void *ctx, const uint8_t priv[32], const uint8_t digest[32],
                                uint8_t sig[64])
{
    mbedtls_ecp_group g;
    mbedtls_mpi d, r, s;
    otk_status st;
    mbedtls_ecp_group_init(&g);
    mbedtls_mpi_init(&d);
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);
    st = load_keys(&g, &d, priv, NULL, NULL);
    if (st == OTK_OK && (mbedtls_ecdsa_sign(&g, &r, &s, &d, digest, 32, mb_rng, ctx) != 0 ||
                         mbedtls_mpi_write_binary(&r, sig, 32) != 0 ||
                         mbedtls_mpi_write_binary(&s, sig + 32, 32) != 0))
        st = OTK_ERR_CRYPTO;
    mbedtls_mpi_free(&s);
    mbedtls_mpi_free(&r);
    mbedtls_mpi_free(&d);
    mbedtls_ecp_group_free(&g);
    return st;
}

static otk_status mb_ecdsa_verify(void *ctx, const uint8_t pub[64], const uint8_t digest[32],
                                  const uint8_t sig[64])
{
    mbedtls_ecp_group g;
    mbedtls_mpi r, s;
    mbedtls_ecp_point q;
    otk_status st;
    (void)ctx;
    mbedtls_ecp_group_init(&g);
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);
    mbedtls_ecp_point_init(&q);
    st = load_keys(&g, NULL, NULL, &q, pub);
    if (st == OTK_OK && (mbedtls_mpi_read_binary(&r, sig, 32) != 0 ||
                         mbedtls_mpi_read_binary(&s, sig + 32, 32) != 0))
        st = OTK_ERR_CRYPTO;
    /* mbedtls_ecdsa_verify rejects r, s outside [1, n-1]. */
    if (st == OTK_OK && mbedtls_ecdsa_verify(&g, digest, 32, &q, &r, &s) != 0)
        st = OTK_ERR_BAD_SIGNATURE;
    mbedtls_ecp_point_free(&q);
    mbedtls_mpi_free(&s);
    mbedtls_mpi_free(&r);
    mbedtls_ecp_group_free(&g);
    return st;
}

otk_status otk_crypto_mbedtls_init(otk_crypto *c, void *state, size_t state_size, otk_rng_fn rng,
                                   void *rng_ctx)
{
    mb_state *s = (mb_state *)state;
    if (c == NULL || state == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    if (state_size < sizeof *s)
        return OTK_ERR_BUFFER_TOO_SMALL;
#if defined(__linux__)
    if (rng == NULL)
        rng = os_random;
#endif
    if (rng == NULL)
        return OTK_ERR_INVALID_ARGUMENT; /* no OS source here: the port must give one */
    memset(c, 0, sizeof *c);
    s->rng = rng;
    s->rng_ctx = rng_ctx;
    c->ctx = s;
    c->random = mb_random;
    c->sha256 = mb_sha256;
    c->hmac_sha256 = mb_hmac;
    c->hkdf_extract = mb_hkdf_extract;
    c->hkdf_expand = mb_hkdf_expand;
    c->ccm_encrypt = mb_ccm_encrypt;
    c->ccm_decrypt = mb_ccm_decrypt;
    c->ec_keygen = mb_ec_keygen;
    c->key_destroy = mb_key_destroy;
    c->ak_import = mb_ak_import;
    c->ecdh = mb_ecdh;
    c->ecdsa_sign = mb_ecdsa_sign;
    c->ecdsa_verify = mb_ecdsa_verify;
    return OTK_OK;
}

void otk_crypto_mbedtls_free(otk_crypto *c)
{
    if (c == NULL || c->ctx == NULL)
        return;
    otk_wipe(c->ctx, sizeof(mb_state));
    memset(c, 0, sizeof *c);
}
