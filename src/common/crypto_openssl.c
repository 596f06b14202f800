/*
 * Crypto port over OpenSSL 3 (what the agent uses). Algorithm objects and
 * the P-256 group are fetched once per instance; the last signing key is
 * kept imported, since the agent signs every response with the same key.
 * The contexts of the hash, the HMAC, HKDF and that signing key are made
 * once and used again: a new OpenSSL 3 context per call looked its
 * algorithm up by name (a digest's name through the provider's method
 * store, locks and hash tables) and allocated, which cost an HMAC of a
 * short message as much again as the hash itself.
 * One instance is used by one thread at a time (the daemon makes one per
 * worker thread).
 */
#include "internal.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <stdlib.h>

typedef struct os_state {
    otk_rng_fn rng;
    void *rng_ctx;
    EVP_MD *sha256;
    EVP_MAC *hmac;
    EVP_KDF *hkdf;
    EVP_CIPHER *ccm;
    EVP_MD_CTX *md;      /* SHA-256, initialised again per hash */
    EVP_MAC_CTX *mac;    /* HMAC-SHA256 (its digest set once), keyed per call */
    EVP_KDF_CTX *kdf;    /* HKDF-SHA256 with its digest set, copied per call (NULL: no copy) */
    EVP_PKEY_CTX *sign_pc; /* sign_key's signing context, initialised once */
    EC_GROUP *group;
    BN_CTX *bn;
    BIGNUM *order, *prime;
    EVP_PKEY *sign_key; /* cached import of sign_priv */
    uint8_t sign_priv[32];
    EVP_PKEY *verify_key; /* cached import of verify_pub */
    uint8_t verify_pub[64];
} os_state;

static otk_status os_random(void *ctx, uint8_t *out, size_t len)
{
    os_state *s = (os_state *)ctx;
    if (s->rng != NULL)
        return s->rng(s->rng_ctx, out, len) == 0 ? OTK_OK : OTK_ERR_CRYPTO;
    return RAND_bytes(out, (int)len) == 1 ? OTK_OK : OTK_ERR_CRYPTO;
}

static otk_status os_sha256(void *ctx, const otk_iov *parts, size_t n, uint8_t out[32])
{
    os_state *s = (os_state *)ctx;
    EVP_MD_CTX *m = s->md;
    unsigned int len = 0;
    size_t i;
    int ok = EVP_DigestInit_ex2(m, s->sha256, NULL) == 1;
    for (i = 0; ok && i < n; i++)
        ok = parts[i].n == 0 || EVP_DigestUpdate(m, parts[i].p, parts[i].n) == 1;
    ok = ok && EVP_DigestFinal_ex(m, out, &len) == 1 && len == 32;
    return ok ? OTK_OK : OTK_ERR_CRYPTO;
}

static otk_status os_hmac(void *ctx, const uint8_t *key, size_t key_len, const otk_iov *parts,
                          size_t n, uint8_t out[32])
{
    static const uint8_t no_key[1];
    os_state *s = (os_state *)ctx;
    EVP_MAC_CTX *m = s->mac;
    size_t len = 0, i;
    int ok;
    /* Keyed every time: a NULL key would run on with the last one. */
    ok = EVP_MAC_init(m, key != NULL ? key : no_key, key != NULL ? key_len : 0, NULL) == 1;
    for (i = 0; ok && i < n; i++)
        ok = parts[i].n == 0 || EVP_MAC_update(m, parts[i].p, parts[i].n) == 1;
    ok = ok && EVP_MAC_final(m, out, &len, 32) == 1 && len == 32;
    return ok ? OTK_OK : OTK_ERR_CRYPTO;
}

static otk_status hkdf(os_state *s, int mode, const uint8_t *key, size_t key_len,
                       const uint8_t *salt, size_t salt_len, const uint8_t *info, size_t info_len,
                       uint8_t *out, size_t out_len)
{
    OSSL_PARAM params[6], *p = params;
    /* A copy of the kept context, whose digest is set (a context used again
     * would carry the last call's parameters: OpenSSL 3.0 appends infos). */
    EVP_KDF_CTX *k = s->kdf != NULL ? EVP_KDF_CTX_dup(s->kdf) : NULL;
    int ok;
    *p++ = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
    if (k == NULL) { /* a provider without the copy: a new context, named digest */
        k = EVP_KDF_CTX_new(s->hkdf);
        *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
    }
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)key, key_len);
    if (salt != NULL)
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len);
    if (info != NULL && info_len > 0)
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, info_len);
    *p = OSSL_PARAM_construct_end();
    ok = k != NULL && EVP_KDF_derive(k, out, out_len, params) == 1;
    EVP_KDF_CTX_free(k);
    return ok ? OTK_OK : OTK_ERR_CRYPTO;
}

static otk_status os_hkdf_extract(void *ctx, const uint8_t *salt, size_t salt_len,
                                  const uint8_t *ikm, size_t ikm_len, uint8_t prk[32])
{
    static const uint8_t zero_salt[32];
    /* RFC 5869: an absent salt is HashLen zeros. */
    if (salt == NULL || salt_len == 0) {
        salt = zero_salt;
        salt_len = sizeof zero_salt;
    }
    return hkdf((os_state *)ctx, EVP_KDF_HKDF_MODE_EXTRACT_ONLY, ikm, ikm_len, salt, salt_len,
                NULL, 0, prk, 32);
}

static otk_status os_hkdf_expand(void *ctx, const uint8_t prk[32], const uint8_t *info,
                                 size_t info_len, uint8_t *out, size_t out_len)
{
    if (out_len == 0 || out_len > 255u * 32u)
        return OTK_ERR_INVALID_ARGUMENT;
    return hkdf((os_state *)ctx, EVP_KDF_HKDF_MODE_EXPAND_ONLY, prk, 32, NULL, 0, info, info_len,
                out, out_len);
}

static otk_status os_ccm_encrypt(void *ctx, const uint8_t key[16], const uint8_t iv[13],
                                 const uint8_t *aad, size_t aad_len, const uint8_t *pt, size_t len,
                                 uint8_t *ct, uint8_t tag[16])
{
    os_state *s = (os_state *)ctx;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, ok;
    ok = c != NULL && EVP_EncryptInit_ex2(c, s->ccm, NULL, NULL, NULL) == 1 &&
         EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_IVLEN, 13, NULL) == 1 &&
         EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, 16, NULL) == 1 &&
         EVP_EncryptInit_ex2(c, NULL, key, iv, NULL) == 1 &&
         EVP_EncryptUpdate(c, NULL, &n, NULL, (int)len) == 1 &&
         (aad_len == 0 || EVP_EncryptUpdate(c, NULL, &n, aad, (int)aad_len) == 1) &&
         EVP_EncryptUpdate(c, ct, &n, pt, (int)len) == 1 &&
         EVP_EncryptFinal_ex(c, ct + n, &n) == 1 &&
         EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, 16, tag) == 1;
    EVP_CIPHER_CTX_free(c);
    return ok ? OTK_OK : OTK_ERR_CRYPTO;
}

static otk_status os_ccm_decrypt(void *ctx, const uint8_t key[16], const uint8_t iv[13],
                                 const uint8_t *aad, size_t aad_len, const uint8_t *ct, size_t len,
                                 const uint8_t tag[16], uint8_t *pt)
{
    os_state *s = (os_state *)ctx;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, ok, setup;
    setup = c != NULL && EVP_DecryptInit_ex2(c, s->ccm, NULL, NULL, NULL) == 1 &&
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_IVLEN, 13, NULL) == 1 &&
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, 16, (void *)tag) == 1 &&
            EVP_DecryptInit_ex2(c, NULL, key, iv, NULL) == 1 &&
            EVP_DecryptUpdate(c, NULL, &n, NULL, (int)len) == 1 &&
            (aad_len == 0 || EVP_DecryptUpdate(c, NULL, &n, aad, (int)aad_len) == 1);
    /* In CCM the tag is checked by this last update. */
    ok = setup && EVP_DecryptUpdate(c, pt, &n, ct, (int)len) == 1;
    EVP_CIPHER_CTX_free(c);
    if (!ok) {
        otk_wipe(pt, len);
        return setup ? OTK_ERR_BAD_MAC : OTK_ERR_CRYPTO;
    }
    return OTK_OK;
}

/* Reads a public point, checking 0 <= x, y < p and that it is on the curve. */
static EC_POINT *read_point(os_state *s, const uint8_t pub[64])
{
    BIGNUM *x = BN_bin2bn(pub, 32, NULL), *y = BN_bin2bn(pub + 32, 32, NULL);
    EC_POINT *q = EC_POINT_new(s->group);
    int ok = x != NULL && y != NULL && q != NULL && BN_cmp(x, s->prime) < 0 &&
             BN_cmp(y, s->prime) < 0 &&
             EC_POINT_set_affine_coordinates(s->group, q, x, y, s->bn) == 1 &&
             EC_POINT_is_on_curve(s->group, q, s->bn) == 1;
    BN_free(x);
    BN_free(y);
    if (!ok) {
        EC_POINT_free(q);
        return NULL;
    }
    return q;
}

/* Reads a private scalar, checking 0 < d < n. Secret: BN_secure is not needed here. */
static BIGNUM *read_scalar(os_state *s, const uint8_t priv[32])
{
    BIGNUM *d = BN_bin2bn(priv, 32, NULL);
    if (d != NULL && (BN_is_zero(d) || BN_cmp(d, s->order) >= 0)) {
        BN_clear_free(d);
        return NULL;
    }
    if (d != NULL)
        BN_set_flags(d, BN_FLG_CONSTTIME);
    return d;
}

static int write_point(os_state *s, const EC_POINT *q, uint8_t out[64])
{
    BIGNUM *x = BN_new(), *y = BN_new();
    int ok = x != NULL && y != NULL &&
             EC_POINT_get_affine_coordinates(s->group, q, x, y, s->bn) == 1 &&
             BN_bn2binpad(x, out, 32) == 32 && BN_bn2binpad(y, out + 32, 32) == 32;
    BN_free(x);
    BN_free(y);
    return ok;
}

/* Raw keys: the caller holds them; there is nothing to destroy or import. */
static void os_key_destroy(void *ctx, uint8_t purpose)
{
    (void)ctx;
    (void)purpose;
}

static otk_status os_ak_import(void *ctx, uint8_t purpose, uint8_t ak[32])
{
    (void)ctx;
    (void)purpose;
    (void)ak;
    return OTK_OK;
}

static otk_status os_ec_keygen(void *ctx, uint8_t purpose, uint8_t priv[32], uint8_t pub[64])
{
    os_state *s = (os_state *)ctx;
    BIGNUM *d = NULL;
    EC_POINT *q = NULL;
    otk_status st;
    int tries;
    (void)purpose; /* raw keys: the caller keeps them */
    /* Draw the scalar from the instance's random source (reproducible in tests). */
    for (tries = 0; tries < 16 && d == NULL; tries++) {
        st = os_random(ctx, priv, 32);
        if (st != OTK_OK)
            return st;
        d = read_scalar(s, priv);
    }
    if (d == NULL)
        return OTK_ERR_CRYPTO;
    q = EC_POINT_new(s->group);
    st = q != NULL && EC_POINT_mul(s->group, q, d, NULL, NULL, s->bn) == 1 && write_point(s, q, pub)
             ? OTK_OK
             : OTK_ERR_CRYPTO;
    EC_POINT_free(q);
    BN_clear_free(d);
    if (st != OTK_OK)
        otk_wipe(priv, 32);
    return st;
}

static otk_status os_ecdh(void *ctx, const uint8_t priv[32], const uint8_t peer[64],
                          uint8_t shared[32])
{
    os_state *s = (os_state *)ctx;
    BIGNUM *d = read_scalar(s, priv), *x = BN_new();
    EC_POINT *q = read_point(s, peer), *r = EC_POINT_new(s->group);
    otk_status st = OTK_ERR_INVALID_ARGUMENT;
    if (d != NULL && q != NULL) {
        st = x != NULL && r != NULL && EC_POINT_mul(s->group, r, NULL, q, d, s->bn) == 1 &&
                     EC_POINT_is_at_infinity(s->group, r) == 0 &&
                     EC_POINT_get_affine_coordinates(s->group, r, x, NULL, s->bn) == 1 &&
                     BN_bn2binpad(x, shared, 32) == 32
                 ? OTK_OK
                 : OTK_ERR_CRYPTO;
    }
    BN_clear_free(d);
    BN_clear_free(x);
    EC_POINT_clear_free(r);
    EC_POINT_free(q);
    return st;
}

/* Imports a key as an EVP_PKEY: private (priv != NULL, pub computed) or public. */
static EVP_PKEY *import_key(os_state *s, const uint8_t *priv, const uint8_t *pub)
{
    OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *k = NULL;
    BIGNUM *d = NULL;
    EC_POINT *q = NULL;
    uint8_t oct[65];
    int ok = b != NULL && pc != NULL;
    if (ok && priv != NULL) {
        d = read_scalar(s, priv);
        q = EC_POINT_new(s->group);
        ok = d != NULL && q != NULL && EC_POINT_mul(s->group, q, d, NULL, NULL, s->bn) == 1 &&
             write_point(s, q, oct + 1);
    } else if (ok) {
        q = read_point(s, pub);
        ok = q != NULL;
        if (ok)
            memcpy(oct + 1, pub, 64);
    }
    oct[0] = 0x04;
    ok = ok && OSSL_PARAM_BLD_push_utf8_string(b, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) &&
         OSSL_PARAM_BLD_push_octet_string(b, OSSL_PKEY_PARAM_PUB_KEY, oct, sizeof oct) &&
         (d == NULL || OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_PRIV_KEY, d));
    ok = ok && (params = OSSL_PARAM_BLD_to_param(b)) != NULL && EVP_PKEY_fromdata_init(pc) == 1 &&
         EVP_PKEY_fromdata(pc, &k, d ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY, params) == 1;
    if (!ok) {
        EVP_PKEY_free(k);
        k = NULL;
    }
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(b);
    EVP_PKEY_CTX_free(pc);
    BN_clear_free(d);
    EC_POINT_free(q);
    return k;
}

/* sign_key's context, made and initialised for signing once (a new key, a new context). */
static void set_sign_ctx(os_state *s)
{
    EVP_PKEY_CTX_free(s->sign_pc);
    s->sign_pc = s->sign_key != NULL ? EVP_PKEY_CTX_new_from_pkey(NULL, s->sign_key, NULL) : NULL;
    if (s->sign_pc != NULL && EVP_PKEY_sign_init(s->sign_pc) != 1) {
        EVP_PKEY_CTX_free(s->sign_pc);
        s->sign_pc = NULL;
    }
}

static otk_status os_ecdsa_sign(void *ctx, const uint8_t priv[32], const uint8_t digest[32],
                                uint8_t sig[64])
{
    os_state *s = (os_state *)ctx;
    EVP_PKEY_CTX *pc = NULL;
    ECDSA_SIG *es = NULL;
    uint8_t der[80];
    const unsigned char *p = der;
    const BIGNUM *r, *sv;
    size_t der_len = sizeof der;
    otk_status st = OTK_ERR_CRYPTO;
    if (s->sign_key == NULL || otk_ct_compare(s->sign_priv, priv, 32) != 0) {
        EVP_PKEY_free(s->sign_key);
        s->sign_key = import_key(s, priv, NULL);
        set_sign_ctx(s);
        if (s->sign_key == NULL)
            return OTK_ERR_INVALID_ARGUMENT;
        memcpy(s->sign_priv, priv, 32);
    }
    pc = s->sign_pc;
    if (pc != NULL && EVP_PKEY_sign(pc, der, &der_len, digest, 32) == 1 &&
        (es = d2i_ECDSA_SIG(NULL, &p, (long)der_len)) != NULL) {
        ECDSA_SIG_get0(es, &r, &sv);
        if (BN_bn2binpad(r, sig, 32) == 32 && BN_bn2binpad(sv, sig + 32, 32) == 32)
            st = OTK_OK;
    }
    ECDSA_SIG_free(es);
    return st;
}

static otk_status os_ecdsa_verify(void *ctx, const uint8_t pub[64], const uint8_t digest[32],
                                  const uint8_t sig[64])
{
    os_state *s = (os_state *)ctx;
    EVP_PKEY_CTX *pc = NULL;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *sv = BN_bin2bn(sig + 32, 32, NULL);
    unsigned char *der = NULL;
    int der_len;
    otk_status st = OTK_ERR_BAD_SIGNATURE;
    if (s->verify_key == NULL || memcmp(s->verify_pub, pub, 64) != 0) {
        /* A new key: its point checked, then set into the cached key (an
         * import from parameters costs OpenSSL 3 a curve lookup each time). */
        EC_POINT *q = read_point(s, pub);
        uint8_t oct[65];
        oct[0] = 0x04;
        memcpy(oct + 1, pub, 64);
        if (q == NULL || s->verify_key == NULL ||
            EVP_PKEY_set1_encoded_public_key(s->verify_key, oct, sizeof oct) != 1) {
            EVP_PKEY_free(s->verify_key);
            s->verify_key = q != NULL ? import_key(s, NULL, pub) : NULL;
        }
        EC_POINT_free(q);
        if (s->verify_key != NULL)
            memcpy(s->verify_pub, pub, 64);
    }
    if (s->verify_key == NULL || es == NULL || r == NULL || sv == NULL) {
        st = s->verify_key == NULL ? OTK_ERR_INVALID_ARGUMENT : OTK_ERR_CRYPTO;
        goto out;
    }
    /* r and s must lie in [1, n-1]; the DER round trip would hide a wrap. */
    if (BN_is_zero(r) || BN_is_zero(sv) || BN_cmp(r, s->order) >= 0 || BN_cmp(sv, s->order) >= 0)
        goto out;
    if (ECDSA_SIG_set0(es, r, sv) != 1)
        goto out;
    r = sv = NULL;
    der_len = i2d_ECDSA_SIG(es, &der);
    pc = EVP_PKEY_CTX_new_from_pkey(NULL, s->verify_key, NULL);
    if (der_len > 0 && pc != NULL && EVP_PKEY_verify_init(pc) == 1 &&
        EVP_PKEY_verify(pc, der, (size_t)der_len, digest, 32) == 1)
        st = OTK_OK;
out:
    OPENSSL_free(der);
    EVP_PKEY_CTX_free(pc);
    ECDSA_SIG_free(es);
    BN_free(r);
    BN_free(sv);
    return st;
}

void otk_crypto_openssl_free(otk_crypto *c)
{
    os_state *s;
    if (c == NULL || c->ctx == NULL)
        return;
    s = (os_state *)c->ctx;
    EVP_MD_free(s->sha256);
    EVP_MAC_free(s->hmac);
    EVP_KDF_free(s->hkdf);
    EVP_CIPHER_free(s->ccm);
    EVP_MD_CTX_free(s->md);
    EVP_MAC_CTX_free(s->mac);
    EVP_KDF_CTX_free(s->kdf);
    EVP_PKEY_CTX_free(s->sign_pc);
    EC_GROUP_free(s->group);
    BN_CTX_free(s->bn);
    BN_free(s->order);
    BN_free(s->prime);
    EVP_PKEY_free(s->sign_key);
    EVP_PKEY_free(s->verify_key);
    otk_wipe(s, sizeof *s);
    free(s);
    memset(c, 0, sizeof *c);
}

otk_status otk_crypto_openssl_use_signer(otk_crypto *c, const uint8_t handle[32], void *key)
{
    os_state *s;
    if (c == NULL || c->ctx == NULL || handle == NULL || key == NULL || EVP_PKEY_up_ref(key) != 1)
        return OTK_ERR_INVALID_ARGUMENT;
    s = (os_state *)c->ctx;
    EVP_PKEY_free(s->sign_key);
    s->sign_key = key;
    memcpy(s->sign_priv, handle, 32);
    set_sign_ctx(s);
    return s->sign_pc != NULL ? OTK_OK : OTK_ERR_CRYPTO;
}

/* The HMAC's and HKDF's digest, set once in their kept contexts. */
static int set_digest(os_state *s)
{
    OSSL_PARAM p[2];
    p[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    p[1] = OSSL_PARAM_construct_end();
    if (EVP_MAC_CTX_set_params(s->mac, p) != 1)
        return 0;
    p[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
    return EVP_KDF_CTX_set_params(s->kdf, p) == 1;
}

otk_status otk_crypto_openssl_init(otk_crypto *c, otk_rng_fn rng, void *rng_ctx)
{
    os_state *s;
    if (c == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    memset(c, 0, sizeof *c);
    s = calloc(1, sizeof *s);
    if (s == NULL)
        return OTK_ERR_CRYPTO;
    c->ctx = s;
    s->rng = rng;
    s->rng_ctx = rng_ctx;
    s->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    s->hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    s->hkdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    s->ccm = EVP_CIPHER_fetch(NULL, "AES-128-CCM", NULL);
    s->md = EVP_MD_CTX_new();
    s->mac = s->hmac != NULL ? EVP_MAC_CTX_new(s->hmac) : NULL;
    s->kdf = s->hkdf != NULL ? EVP_KDF_CTX_new(s->hkdf) : NULL;
    s->group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
    s->bn = BN_CTX_new();
    s->order = BN_new();
    s->prime = BN_new();
    if (s->sha256 == NULL || s->hmac == NULL || s->hkdf == NULL || s->ccm == NULL ||
        s->md == NULL || s->mac == NULL || s->kdf == NULL || !set_digest(s) || s->group == NULL ||
        s->bn == NULL || s->order == NULL || s->prime == NULL ||
        EC_GROUP_get_order(s->group, s->order, s->bn) != 1 ||
        EC_GROUP_get_curve(s->group, s->prime, NULL, NULL, s->bn) != 1) {
        otk_crypto_openssl_free(c);
        return OTK_ERR_CRYPTO;
    }
    { /* OpenSSL 3.0's HKDF cannot be copied: then a new context per call. */
        EVP_KDF_CTX *probe = EVP_KDF_CTX_dup(s->kdf);
        if (probe == NULL) {
            EVP_KDF_CTX_free(s->kdf);
            s->kdf = NULL;
        }
        EVP_KDF_CTX_free(probe);
    }
    c->random = os_random;
    c->sha256 = os_sha256;
    c->hmac_sha256 = os_hmac;
    c->hkdf_extract = os_hkdf_extract;
    c->hkdf_expand = os_hkdf_expand;
    c->ccm_encrypt = os_ccm_encrypt;
    c->ccm_decrypt = os_ccm_decrypt;
    c->ec_keygen = os_ec_keygen;
    c->key_destroy = os_key_destroy;
    c->ak_import = os_ak_import;
    c->ecdh = os_ecdh;
    c->ecdsa_sign = os_ecdsa_sign;
    c->ecdsa_verify = os_ecdsa_verify;
    return OTK_OK;
}
