/*
 * crypto.h: the crypto port. Both protocol cores reach cryptography only
 * through this table of functions, so the same core runs over mbedTLS (the
 * device), OpenSSL 3 (the agent), or a secure element / PSA driver.
 *
 * Suite (docs/protocol.md §3): P-256 ECDH, ECDSA P-256/SHA-256,
 * HKDF-SHA256, HMAC-SHA256, AES-128-CCM with a 16-byte tag.
 *
 * Private keys are passed as 32-byte key references: for the raw-key
 * backends (mbedTLS, OpenSSL) the big-endian scalar itself; for a backend
 * whose keys live in a key store (PSA Crypto, a secure element) an opaque
 * reference that ec_keygen wrote, while the key never leaves that store.
 * Every backend also accepts a raw scalar wherever it takes a reference
 * (known-answer tests, the agent's signing key). A key-store backend may
 * hold one ephemeral key at a time (a new one replaces it) and may restrict
 * each key to its use: ephemeral keys to ECDH, slot keys to ECDSA.
 *
 * Conventions for every function:
 *  - returns OTK_OK, or OTK_ERR_BAD_MAC / OTK_ERR_BAD_SIGNATURE for a
 *    failed check, OTK_ERR_INVALID_ARGUMENT for malformed keys or points,
 *    OTK_ERR_CRYPTO for a backend failure;
 *  - points are X || Y (64 bytes), scalars and r, s big-endian 32 bytes;
 *  - outputs are written only on success; on failure their content is
 *    unspecified but never a partial plaintext (ccm_decrypt wipes it).
 */
#ifndef OTAKEY_CRYPTO_H
#define OTAKEY_CRYPTO_H

#include "otakey/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One contiguous piece of a message that is hashed or MACed in parts. */
typedef struct otk_iov {
    const void *p;
    size_t n;
} otk_iov;

/* Purposes of ec_keygen and key_destroy. */
#define OTK_KEY_EPHEMERAL 0u
#define OTK_KEY_SLOT0 1u /* + slot index: the device key of a certificate set */

typedef struct otk_crypto {
    void *ctx; /* backend state; passed back as the first argument */

    /* Fills out with cryptographically secure random bytes. */
    otk_status (*random)(void *ctx, uint8_t *out, size_t len);

    /* SHA-256 over the concatenation of n parts. */
    otk_status (*sha256)(void *ctx, const otk_iov *parts, size_t n, uint8_t out[32]);

    /* HMAC-SHA256(key, parts...). */
    otk_status (*hmac_sha256)(void *ctx, const uint8_t *key, size_t key_len,
                              const otk_iov *parts, size_t n, uint8_t out[32]);

    /* HKDF-Extract (RFC 5869 §2.2) with SHA-256. */
    otk_status (*hkdf_extract)(void *ctx, const uint8_t *salt, size_t salt_len,
                               const uint8_t *ikm, size_t ikm_len, uint8_t prk[32]);

    /* HKDF-Expand (RFC 5869 §2.3) with SHA-256; out_len <= 255 * 32. */
    otk_status (*hkdf_expand)(void *ctx, const uint8_t prk[32], const uint8_t *info,
                              size_t info_len, uint8_t *out, size_t out_len);

    /* AES-128-CCM, 13-byte nonce, 16-byte tag; ct may alias pt. */
    otk_status (*ccm_encrypt)(void *ctx, const uint8_t key[16], const uint8_t iv[13],
                              const uint8_t *aad, size_t aad_len, const uint8_t *pt,
                              size_t len, uint8_t *ct, uint8_t tag[16]);

    /* Inverse of ccm_encrypt; OTK_ERR_BAD_MAC (and pt wiped) on a bad tag. */
    otk_status (*ccm_decrypt)(void *ctx, const uint8_t key[16], const uint8_t iv[13],
                              const uint8_t *aad, size_t aad_len, const uint8_t *ct,
                              size_t len, const uint8_t tag[16], uint8_t *pt);

    /* New P-256 key pair from the backend's RNG, for purpose (OTK_KEY_*):
     * an ephemeral ECDH key, or the signing key of the set to be staged in
     * key-store slot 0 or 1, which a key-store backend keeps across power
     * cycles (replacing the slot's previous key). priv receives the key's
     * reference. */
    otk_status (*ec_keygen)(void *ctx, uint8_t purpose, uint8_t priv[32], uint8_t pub[64]);

    /* Destroys the backend's key of purpose (the last ephemeral key, or a
     * slot's signing key) if it holds one; nothing to do for raw-key
     * backends. Called when the key is no longer needed: the request is
     * over, the set holding it is retired or discarded. */
    void (*key_destroy)(void *ctx, uint8_t purpose);

    /* Takes the AK of the set to be staged in key-store slot purpose -
     * OTK_KEY_SLOT0 (an HMAC-SHA256 key, protocol version 2) into the
     * backend and replaces its 32 bytes with a reference, which
     * hmac_sha256 then accepts as its key (key_len 32); key_destroy of the
     * slot destroys it too. Raw-key backends keep the bytes as they are. */
    otk_status (*ak_import)(void *ctx, uint8_t purpose, uint8_t ak[32]);

    /* ECDH: x-coordinate of priv * peer; rejects points not on the curve. */
    otk_status (*ecdh)(void *ctx, const uint8_t priv[32], const uint8_t peer[64],
                       uint8_t shared[32]);

    /* ECDSA P-256 over a SHA-256 digest. */
    otk_status (*ecdsa_sign)(void *ctx, const uint8_t priv[32], const uint8_t digest[32],
                             uint8_t sig[64]);
    otk_status (*ecdsa_verify)(void *ctx, const uint8_t pub[64], const uint8_t digest[32],
                               const uint8_t sig[64]);
} otk_crypto;

/*
 * Random source for a backend: fills out and returns 0, non-zero on failure.
 * Tests pass a deterministic one. A device port passes its TRNG; NULL uses
 * the OS (getrandom(2) for mbedTLS on Linux, RAND_bytes for OpenSSL) and
 * is refused by the mbedTLS backend where there is no OS source.
 */
typedef int (*otk_rng_fn)(void *rng_ctx, uint8_t *out, size_t len);

/*
 * mbedTLS backend. The caller allocates storage of at least
 * OTK_CRYPTO_MBEDTLS_STATE_SIZE bytes (aligned for any type), which must
 * outlive the table; otk_crypto_mbedtls_free releases it.
 */
#define OTK_CRYPTO_MBEDTLS_STATE_SIZE 64u
OTK_CHECK_RETURN otk_status otk_crypto_mbedtls_init(otk_crypto *c, void *state, size_t state_size,
                                                    otk_rng_fn rng, void *rng_ctx);
void otk_crypto_mbedtls_free(otk_crypto *c);

/*
 * OpenSSL 3 backend. The state is heap-allocated by init and released by
 * free (the agent side is not malloc-free).
 */
OTK_CHECK_RETURN otk_status otk_crypto_openssl_init(otk_crypto *c, otk_rng_fn rng, void *rng_ctx);
void otk_crypto_openssl_free(otk_crypto *c);
/*
 * OpenSSL backend: ecdsa_sign called with priv equal to handle signs with
 * key (an EVP_PKEY *, such as a PKCS#11 token's: otakey/pkcs11.h) instead
 * of a raw scalar, so the agent's signing key can stay in a token. The
 * backend holds a reference to key.
 */
OTK_CHECK_RETURN otk_status otk_crypto_openssl_use_signer(otk_crypto *c, const uint8_t handle[32],
                                                          void *key);

#ifdef __cplusplus
}
#endif
#endif
