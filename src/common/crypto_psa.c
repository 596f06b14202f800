/*
 * Crypto port over the PSA Crypto API (psa_*: mbedTLS 2.28's PSA layer,
 * mbedTLS 3, TF-M, a secure element's PSA driver). The device's private
 * keys are made inside the PSA implementation and never leave it: the
 * ephemeral ECDH key is a volatile key, the certificate key of each
 * key-store slot a persistent key (ids key_base and key_base + 1) that
 * survives power cycles, and so is the AK of each slot's set (key_base + 2
 * and + 3, protocol version 2); the core holds only 32-byte references to
 * them (crypto.h). Keys given as bytes (HMAC, AES-CCM, a raw scalar in a
 * known-answer test) are imported as volatile keys for the one operation.
 */
#include "internal.h"

#include <psa/crypto.h>

#include "otakey/crypto_psa.h"

typedef struct psa_state {
    psa_key_id_t key_base;   /* 0: slot keys are volatile (no key storage) */
    psa_key_id_t eph;        /* the live ephemeral key, or 0 */
    psa_key_id_t vslot[4];   /* volatile slot keys when key_base is 0: keys, then AKs */
} psa_state;

typedef char psa_state_fits[sizeof(psa_state) <= OTK_CRYPTO_PSA_STATE_SIZE ? 1 : -1];

/* A reference: this tag, then the key id big-endian. A raw scalar never
 * starts with 28 such bytes (probability 2^-224). */
static const uint8_t ref_tag[28] = {0x00, 'o', 't', 'a', 'k', 'e', 'y', ' ', 'p', 's',
                                    'a', ' ', 'k', 'e', 'y', ' ', 'r', 'e', 'f', 0x00};

static void ref_write(uint8_t ref[32], psa_key_id_t id)
{
    memcpy(ref, ref_tag, sizeof ref_tag);
    otk_put_u32(ref + 28, (uint32_t)id);
}

int otk_crypto_psa_ref(const uint8_t ref[32], uint32_t *key_id)
{
    uint32_t id;
    if (ref == NULL || memcmp(ref, ref_tag, sizeof ref_tag) != 0)
        return 0;
    id = otk_get_u32(ref + 28);
    if (id == 0)
        return 0;
    if (key_id != NULL)
        *key_id = id;
    return 1;
}

static otk_status map(psa_status_t s)
{
    switch (s) {
    case PSA_SUCCESS: return OTK_OK;
    case PSA_ERROR_INVALID_SIGNATURE: return OTK_ERR_BAD_SIGNATURE;
    case PSA_ERROR_INVALID_ARGUMENT: return OTK_ERR_INVALID_ARGUMENT;
    case PSA_ERROR_BUFFER_TOO_SMALL: return OTK_ERR_BUFFER_TOO_SMALL;
    default: return OTK_ERR_CRYPTO;
    }
}

static otk_status p_random(void *ctx, uint8_t *out, size_t len)
{
    (void)ctx;
    return map(psa_generate_random(out, len));
}

static otk_status p_sha256(void *ctx, const otk_iov *parts, size_t n, uint8_t out[32])
{
    psa_hash_operation_t op = PSA_HASH_OPERATION_INIT;
    psa_status_t s;
    size_t i, len = 0;
    (void)ctx;
    s = psa_hash_setup(&op, PSA_ALG_SHA_256);
    for (i = 0; s == PSA_SUCCESS && i < n; i++)
        if (parts[i].n)
            s = psa_hash_update(&op, (const uint8_t *)parts[i].p, parts[i].n);
    if (s == PSA_SUCCESS)
        s = psa_hash_finish(&op, out, 32, &len);
    if (s != PSA_SUCCESS)
        (void)psa_hash_abort(&op);
    return map(s);
}

/* Imports key bytes as a volatile key for one operation. */
static psa_status_t import(psa_key_type_t type, psa_key_usage_t usage, psa_algorithm_t alg,
                           const uint8_t *key, size_t len, psa_key_id_t *id)
{
    psa_key_attributes_t a = PSA_KEY_ATTRIBUTES_INIT;
    psa_set_key_type(&a, type);
    psa_set_key_usage_flags(&a, usage);
    psa_set_key_algorithm(&a, alg);
    return psa_import_key(&a, key, len, id);
}

static otk_status p_hmac(void *ctx, const uint8_t *key, size_t key_len, const otk_iov *parts,
                         size_t n, uint8_t out[32])
{
    static const uint8_t zero[32] = {0};
    psa_mac_operation_t op = PSA_MAC_OPERATION_INIT;
    psa_key_id_t id = 0;
    psa_status_t s;
    size_t i, len = 0;
    uint32_t ref = 0;
    int temp = !(key_len == 32 && otk_crypto_psa_ref(key, &ref)); /* an AK by reference */
    (void)ctx;
    /* HMAC pads its key with zeros: an empty key is the same as 32 zero
     * bytes, which PSA (no empty keys) can import. */
    if (key_len == 0) {
        key = zero;
        key_len = sizeof zero;
    }
    id = (psa_key_id_t)ref;
    s = temp ? import(PSA_KEY_TYPE_HMAC, PSA_KEY_USAGE_SIGN_MESSAGE, PSA_ALG_HMAC(PSA_ALG_SHA_256),
                      key, key_len, &id)
             : PSA_SUCCESS;
    if (s == PSA_SUCCESS)
        s = psa_mac_sign_setup(&op, id, PSA_ALG_HMAC(PSA_ALG_SHA_256));
    for (i = 0; s == PSA_SUCCESS && i < n; i++)
        if (parts[i].n)
            s = psa_mac_update(&op, (const uint8_t *)parts[i].p, parts[i].n);
    if (s == PSA_SUCCESS)
        s = psa_mac_sign_finish(&op, out, 32, &len);
    if (s != PSA_SUCCESS)
        (void)psa_mac_abort(&op);
    if (temp)
        (void)psa_destroy_key(id);
    return s == PSA_SUCCESS ? OTK_OK : OTK_ERR_CRYPTO;
}

static otk_status p_hkdf_extract(void *ctx, const uint8_t *salt, size_t salt_len,
                                 const uint8_t *ikm, size_t ikm_len, uint8_t prk[32])
{
    otk_iov part;
    part.p = ikm;
    part.n = ikm_len;
    /* RFC 5869 §2.2: PRK = HMAC-Hash(salt, IKM). */
    return p_hmac(ctx, salt, salt_len, &part, 1, prk);
}

static otk_status p_hkdf_expand(void *ctx, const uint8_t prk[32], const uint8_t *info,
                                size_t info_len, uint8_t *out, size_t out_len)
{
    /* RFC 5869 §2.3: T(i) = HMAC-Hash(PRK, T(i-1) | info | i); PSA 1.0
     * (mbedTLS 2.28) has HKDF only as extract-then-expand in one. */
    uint8_t t[32], i = 0;
    otk_iov parts[3];
    size_t done = 0, n;
    otk_status st = OTK_OK;
    if (out_len > 255u * 32u)
        return OTK_ERR_INVALID_ARGUMENT;
    while (st == OTK_OK && done < out_len) {
        i++;
        parts[0].p = t;
        parts[0].n = i == 1 ? 0 : sizeof t;
        parts[1].p = info;
        parts[1].n = info_len;
        parts[2].p = &i;
        parts[2].n = 1;
        st = p_hmac(ctx, prk, 32, parts, 3, t);
        n = out_len - done < sizeof t ? out_len - done : sizeof t;
        if (st == OTK_OK)
            memcpy(out + done, t, n);
        done += n;
    }
    otk_wipe(t, sizeof t);
    return st;
}

/*
 * AES-128-CCM, 16-byte tag. PSA writes the tag after the ciphertext: when
 * the caller's tag follows its ciphertext (as in every message), the
 * operation runs in place; otherwise through a bounded local buffer.
 */
#define CCM_LOCAL 512u

static otk_status p_ccm_encrypt(void *ctx, const uint8_t key[16], const uint8_t iv[13],
                                const uint8_t *aad, size_t aad_len, const uint8_t *pt, size_t len,
                                uint8_t *ct, uint8_t tag[16])
{
    uint8_t local[CCM_LOCAL];
    psa_key_id_t id = 0;
    psa_status_t s;
    size_t n = 0;
    int direct = tag == ct + len;
    (void)ctx;
    if (!direct && len + 16u > sizeof local)
        return OTK_ERR_BUFFER_TOO_SMALL;
    s = import(PSA_KEY_TYPE_AES, PSA_KEY_USAGE_ENCRYPT, PSA_ALG_CCM, key, 16, &id);
    if (s == PSA_SUCCESS)
        s = psa_aead_encrypt(id, PSA_ALG_CCM, iv, 13, aad, aad_len, pt, len, direct ? ct : local,
                             len + 16u, &n);
    (void)psa_destroy_key(id);
    if (s == PSA_SUCCESS && n != len + 16u)
        s = PSA_ERROR_GENERIC_ERROR;
    if (s == PSA_SUCCESS && !direct) {
        memcpy(ct, local, len);
        memcpy(tag, local + len, 16);
    }
    otk_wipe(local, sizeof local);
    return s == PSA_SUCCESS ? OTK_OK : OTK_ERR_CRYPTO;
}

static otk_status p_ccm_decrypt(void *ctx, const uint8_t key[16], const uint8_t iv[13],
                                const uint8_t *aad, size_t aad_len, const uint8_t *ct, size_t len,
                                const uint8_t tag[16], uint8_t *pt)
{
    uint8_t local[CCM_LOCAL];
    const uint8_t *in = ct;
    psa_key_id_t id = 0;
    psa_status_t s;
    size_t n = 0;
    (void)ctx;
    if (tag != ct + len) {
        if (len + 16u > sizeof local)
            return OTK_ERR_BUFFER_TOO_SMALL;
        memcpy(local, ct, len);
        memcpy(local + len, tag, 16);
        in = local;
    }
    s = import(PSA_KEY_TYPE_AES, PSA_KEY_USAGE_DECRYPT, PSA_ALG_CCM, key, 16, &id);
    if (s == PSA_SUCCESS)
        s = psa_aead_decrypt(id, PSA_ALG_CCM, iv, 13, aad, aad_len, in, len + 16u, pt, len, &n);
    (void)psa_destroy_key(id);
    otk_wipe(local, sizeof local);
    if (s == PSA_SUCCESS && n == len)
        return OTK_OK;
    otk_wipe(pt, len); /* never a partial plaintext */
    return s == PSA_ERROR_INVALID_SIGNATURE ? OTK_ERR_BAD_MAC : OTK_ERR_CRYPTO;
}

/* Key k of the slots (0, 1: certificate keys; 2, 3: AKs): its persistent
 * id, or its volatile key's. */
static psa_key_id_t slot_id(const psa_state *s, unsigned k)
{
    return s->key_base ? s->key_base + k : s->vslot[k];
}

static void drop(psa_state *s, unsigned k)
{
    /* A persistent id with no key is fine: nothing to destroy. */
    if (slot_id(s, k))
        (void)psa_destroy_key(slot_id(s, k));
    s->vslot[k] = 0;
}

/* A slot's keys go together: its set is retired or discarded. */
static void p_key_destroy(void *ctx, uint8_t purpose)
{
    psa_state *s = (psa_state *)ctx;
    uint8_t slot = (uint8_t)(purpose - OTK_KEY_SLOT0);
    if (purpose == OTK_KEY_EPHEMERAL) {
        if (s->eph)
            (void)psa_destroy_key(s->eph);
        s->eph = 0;
    } else if (slot < 2) {
        drop(s, slot);
        drop(s, 2u + slot);
    }
}

static otk_status p_ak_import(void *ctx, uint8_t purpose, uint8_t ak[32])
{
    psa_state *s = (psa_state *)ctx;
    psa_key_attributes_t a = PSA_KEY_ATTRIBUTES_INIT;
    uint8_t slot = (uint8_t)(purpose - OTK_KEY_SLOT0);
    psa_key_id_t id = 0;
    psa_status_t st;
    if (purpose == OTK_KEY_EPHEMERAL || slot >= 2)
        return OTK_ERR_INVALID_ARGUMENT;
    drop(s, 2u + slot); /* the AK this one replaces */
    psa_set_key_type(&a, PSA_KEY_TYPE_HMAC);
    psa_set_key_usage_flags(&a, PSA_KEY_USAGE_SIGN_MESSAGE);
    psa_set_key_algorithm(&a, PSA_ALG_HMAC(PSA_ALG_SHA_256));
    if (s->key_base) {
        psa_set_key_id(&a, s->key_base + 2u + slot);
        psa_set_key_lifetime(&a, PSA_KEY_LIFETIME_PERSISTENT);
    }
    st = psa_import_key(&a, ak, 32, &id);
    psa_reset_key_attributes(&a);
    if (st != PSA_SUCCESS)
        return OTK_ERR_CRYPTO;
    if (!s->key_base)
        s->vslot[2u + slot] = id;
    ref_write(ak, id); /* the bytes are gone from the caller's buffer */
    return OTK_OK;
}

static otk_status p_ec_keygen(void *ctx, uint8_t purpose, uint8_t priv[32], uint8_t pub[64])
{
    psa_state *s = (psa_state *)ctx;
    psa_key_attributes_t a = PSA_KEY_ATTRIBUTES_INIT;
    uint8_t point[65];
    uint8_t slot = (uint8_t)(purpose - OTK_KEY_SLOT0);
    psa_key_id_t id = 0;
    psa_status_t st;
    size_t n = 0;
    if (purpose != OTK_KEY_EPHEMERAL && slot >= 2)
        return OTK_ERR_INVALID_ARGUMENT;
    /* The key this one replaces goes first. */
    if (purpose == OTK_KEY_EPHEMERAL)
        p_key_destroy(ctx, purpose);
    else
        drop(s, slot);
    psa_set_key_type(&a, PSA_KEY_TYPE_ECC_KEY_PAIR(PSA_ECC_FAMILY_SECP_R1));
    psa_set_key_bits(&a, 256);
    if (purpose == OTK_KEY_EPHEMERAL) {
        psa_set_key_usage_flags(&a, PSA_KEY_USAGE_DERIVE);
        psa_set_key_algorithm(&a, PSA_ALG_ECDH);
    } else {
        psa_set_key_usage_flags(&a, PSA_KEY_USAGE_SIGN_HASH | PSA_KEY_USAGE_VERIFY_HASH);
        psa_set_key_algorithm(&a, PSA_ALG_ECDSA(PSA_ALG_SHA_256));
        if (s->key_base) {
            psa_set_key_id(&a, s->key_base + slot);
            psa_set_key_lifetime(&a, PSA_KEY_LIFETIME_PERSISTENT);
        }
    }
    st = psa_generate_key(&a, &id);
    psa_reset_key_attributes(&a);
    if (st == PSA_SUCCESS)
        st = psa_export_public_key(id, point, sizeof point, &n);
    if (st == PSA_SUCCESS && (n != sizeof point || point[0] != 0x04))
        st = PSA_ERROR_GENERIC_ERROR;
    if (st != PSA_SUCCESS) {
        if (id)
            (void)psa_destroy_key(id);
        return OTK_ERR_CRYPTO;
    }
    if (purpose == OTK_KEY_EPHEMERAL)
        s->eph = id;
    else if (!s->key_base)
        s->vslot[slot] = id;
    memcpy(pub, point + 1, 64);
    ref_write(priv, id);
    return OTK_OK;
}

/*
 * The key a reference names, or a raw scalar imported for this operation
 * (*temp set: the caller destroys it).
 */
static psa_status_t key_of(const uint8_t priv[32], psa_key_usage_t usage, psa_algorithm_t alg,
                           psa_key_id_t *id, int *temp)
{
    uint32_t ref;
    *temp = 0;
    if (otk_crypto_psa_ref(priv, &ref)) {
        *id = (psa_key_id_t)ref;
        return PSA_SUCCESS;
    }
    *temp = 1;
    return import(PSA_KEY_TYPE_ECC_KEY_PAIR(PSA_ECC_FAMILY_SECP_R1), usage, alg, priv, 32, id);
}

static otk_status p_ecdh(void *ctx, const uint8_t priv[32], const uint8_t peer[64],
                         uint8_t shared[32])
{
    uint8_t point[65];
    psa_key_id_t id = 0;
    psa_status_t s;
    size_t n = 0;
    int temp;
    (void)ctx;
    point[0] = 0x04;
    memcpy(point + 1, peer, 64);
    s = key_of(priv, PSA_KEY_USAGE_DERIVE, PSA_ALG_ECDH, &id, &temp);
    if (s != PSA_SUCCESS)
        return map(s);
    s = psa_raw_key_agreement(PSA_ALG_ECDH, id, point, sizeof point, shared, 32, &n);
    if (temp)
        (void)psa_destroy_key(id);
    if (s == PSA_SUCCESS && n != 32)
        s = PSA_ERROR_GENERIC_ERROR;
    if (s != PSA_SUCCESS)
        otk_wipe(shared, 32);
    return map(s);
}

static otk_status p_ecdsa_sign(void *ctx, const uint8_t priv[32], const uint8_t digest[32],
                               uint8_t sig[64])
{
    psa_key_id_t id = 0;
    psa_status_t s;
    size_t n = 0;
    int temp;
    (void)ctx;
    s = key_of(priv, PSA_KEY_USAGE_SIGN_HASH, PSA_ALG_ECDSA(PSA_ALG_SHA_256), &id, &temp);
    if (s != PSA_SUCCESS)
        return map(s);
    s = psa_sign_hash(id, PSA_ALG_ECDSA(PSA_ALG_SHA_256), digest, 32, sig, 64, &n);
    if (temp)
        (void)psa_destroy_key(id);
    return s == PSA_SUCCESS && n == 64 ? OTK_OK : OTK_ERR_CRYPTO;
}

static otk_status p_ecdsa_verify(void *ctx, const uint8_t pub[64], const uint8_t digest[32],
                                 const uint8_t sig[64])
{
    uint8_t point[65];
    psa_key_id_t id = 0;
    psa_status_t s;
    (void)ctx;
    point[0] = 0x04;
    memcpy(point + 1, pub, 64);
    s = import(PSA_KEY_TYPE_ECC_PUBLIC_KEY(PSA_ECC_FAMILY_SECP_R1), PSA_KEY_USAGE_VERIFY_HASH,
               PSA_ALG_ECDSA(PSA_ALG_SHA_256), point, sizeof point, &id);
    if (s != PSA_SUCCESS)
        return map(s);
    s = psa_verify_hash(id, PSA_ALG_ECDSA(PSA_ALG_SHA_256), digest, 32, sig, 64);
    (void)psa_destroy_key(id);
    return s == PSA_SUCCESS ? OTK_OK : s == PSA_ERROR_INVALID_SIGNATURE ? OTK_ERR_BAD_SIGNATURE
                                                                       : OTK_ERR_CRYPTO;
}

otk_status otk_crypto_psa_init(otk_crypto *c, void *state, size_t state_size, uint32_t key_base)
{
    psa_state *s = (psa_state *)state;
    if (c == NULL || s == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    if (state_size < sizeof *s)
        return OTK_ERR_BUFFER_TOO_SMALL;
    /* Four persistent ids in the application's range (PSA_KEY_ID_USER_*). */
    if (key_base != 0 &&
        (key_base < PSA_KEY_ID_USER_MIN || key_base > PSA_KEY_ID_USER_MAX - 3u))
        return OTK_ERR_INVALID_ARGUMENT;
    if (psa_crypto_init() != PSA_SUCCESS)
        return OTK_ERR_CRYPTO;
    memset(s, 0, sizeof *s);
    s->key_base = (psa_key_id_t)key_base;
    memset(c, 0, sizeof *c);
    c->ctx = s;
    c->random = p_random;
    c->sha256 = p_sha256;
    c->hmac_sha256 = p_hmac;
    c->hkdf_extract = p_hkdf_extract;
    c->hkdf_expand = p_hkdf_expand;
    c->ccm_encrypt = p_ccm_encrypt;
    c->ccm_decrypt = p_ccm_decrypt;
    c->ec_keygen = p_ec_keygen;
    c->key_destroy = p_key_destroy;
    c->ak_import = p_ak_import;
    c->ecdh = p_ecdh;
    c->ecdsa_sign = p_ecdsa_sign;
    c->ecdsa_verify = p_ecdsa_verify;
    return OTK_OK;
}

void otk_crypto_psa_free(otk_crypto *c)
{
    psa_state *s;
    if (c == NULL || c->ctx == NULL)
        return;
    s = (psa_state *)c->ctx;
    /* Volatile keys go; persistent ones stay for the next boot. */
    p_key_destroy(s, OTK_KEY_EPHEMERAL);
    if (!s->key_base) {
        p_key_destroy(s, OTK_KEY_SLOT0);
        p_key_destroy(s, OTK_KEY_SLOT0 + 1u);
    }
    otk_wipe(s, sizeof *s);
    memset(c, 0, sizeof *c);
}
