/*
 * crypto_psa.h: the crypto port over the PSA Crypto API (mbedTLS 2.28's
 * PSA layer, mbedTLS 3, TF-M, a secure element's PSA driver).
 *
 * The device's private keys are made inside the PSA implementation and
 * never leave it: ec_keygen writes a reference (crypto.h), not a scalar.
 * The ephemeral ECDH key of a request is a volatile key; the certificate
 * key of key-store slot i is the persistent key key_base + i, made for the
 * set to be staged there, and the set's AK (protocol version 2) the
 * persistent HMAC key key_base + 2 + i, imported when the set is opened;
 * both are destroyed when that set is retired or discarded (the device
 * core calls key_destroy). The key store then holds references, not keys.
 * The keys are created without PSA_KEY_USAGE_EXPORT: no call returns them.
 *
 * key_base: the first of four persistent key ids in the application's range
 * (PSA_KEY_ID_USER_MIN..MAX); 0 makes the slot keys volatile, for parts
 * without PSA key storage (they do not survive a reset: only for tests).
 * PSA's own random generator is used (on a part, its entropy source or
 * MBEDTLS_PSA_CRYPTO_EXTERNAL_RNG).
 *
 * A certificate set's TLS login uses the key by its id: otk_crypto_psa_ref
 * gives the id of the reference otk_device_cert_key returns (mbedTLS:
 * mbedtls_pk_setup_opaque with MBEDTLS_USE_PSA_CRYPTO).
 */
#ifndef OTAKEY_CRYPTO_PSA_H
#define OTAKEY_CRYPTO_PSA_H

#include "otakey/crypto.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTK_CRYPTO_PSA_STATE_SIZE 32u

/* Calls psa_crypto_init; the state (>= OTK_CRYPTO_PSA_STATE_SIZE bytes,
 * aligned for any type) must outlive the table. */
OTK_CHECK_RETURN otk_status otk_crypto_psa_init(otk_crypto *c, void *state, size_t state_size,
                                                uint32_t key_base);
/* Destroys the volatile keys; persistent ones stay for the next boot. */
void otk_crypto_psa_free(otk_crypto *c);

/* 1 and *key_id set when ref is a reference this backend wrote, else 0 (a
 * raw scalar). */
int otk_crypto_psa_ref(const uint8_t ref[32], uint32_t *key_id);

#ifdef __cplusplus
}
#endif
#endif
