/*
 * proto.h: the key schedule and authenticators shared by the device core
 * and the agent core (docs/protocol.md §5). Each function is the one place
 * where its construction is defined; both ends call the same code with
 * their own crypto backend.
 */
#ifndef OTAKEY_PROTO_H
#define OTAKEY_PROTO_H

#include "otakey/common.h"
#include "otakey/crypto.h"
#include "otakey/wire.h"

#ifdef __cplusplus
extern "C" {
#endif

/* HKDF info prefix and signature context (ASCII, no terminator). */
#define OTK_LABEL_KEYSET "otakey v1 keyset"
#define OTK_LABEL_SIG_RESP "otakey v1 resp"
#define OTK_LABEL_SIG_NACK "otakey v1 nack"

/*
 * mac = HMAC-SHA256(key, msg[0..auth_off))[0..16) written at msg+auth_off;
 * extra (may be NULL/0) is appended to the MAC input (STATUS binds the
 * request nonce this way).
 */
OTK_CHECK_RETURN otk_status otk_mac_write(const otk_crypto *c, const uint8_t *key, size_t key_len,
                                          uint8_t *msg, size_t auth_off, const uint8_t *extra,
                                          size_t extra_len);

/* Constant-time check of the MAC at msg+auth_off; OTK_ERR_BAD_MAC. */
OTK_CHECK_RETURN otk_status otk_mac_check(const otk_crypto *c, const uint8_t *key, size_t key_len,
                                          const uint8_t *msg, size_t auth_off, const uint8_t *extra,
                                          size_t extra_len);

/*
 * Response key schedule: th = SHA-256(request bytes); ss = ECDH;
 * prk = HKDF-Extract(salt = th, ikm = ss || ak) (ak NULL for a claim);
 * k || iv = HKDF-Expand(prk, "otakey v1 keyset" || E_a, 29).
 */
OTK_CHECK_RETURN otk_status otk_resp_keys(const otk_crypto *c, const uint8_t th[32],
                                          const uint8_t ss[32], const uint8_t *ak,
                                          const uint8_t agent_epub[64], uint8_t key[16],
                                          uint8_t iv[13]);

/*
 * Digest signed in a response: SHA-256("otakey v1 resp" || th ||
 * resp[0..auth_off)), i.e. everything the response carries but the
 * signature, bound to the request transcript.
 */
OTK_CHECK_RETURN otk_status otk_resp_digest(const otk_crypto *c, const uint8_t th[32],
                                            const uint8_t *resp, size_t auth_off,
                                            uint8_t digest[32]);

/* Digest signed in a NACK: SHA-256("otakey v1 nack" || nack[0..24)). */
OTK_CHECK_RETURN otk_status otk_nack_digest(const otk_crypto *c, const uint8_t *nack,
                                            uint8_t digest[32]);

/*
 * Builds a signed CLAIM_RESP / UPDATE_RESP (agent side): encodes ks, makes
 * an ephemeral key E_a, derives k, iv with otk_resp_keys (ak: the device's
 * committed AK for an update, NULL for a claim), encrypts under
 * AAD = th || resp[0..88) and signs otk_resp_digest with sign_priv.
 */
OTK_CHECK_RETURN otk_status otk_resp_build(const otk_crypto *c, uint8_t type,
                                           const uint8_t device_id[16], const uint8_t th[32],
                                           const uint8_t dev_epub[64], const uint8_t *ak,
                                           const otk_keyset *ks, const uint8_t sign_priv[32],
                                           uint8_t *out, size_t out_size, size_t *out_len);

/*
 * Opens a response (device side) already decoded into m from resp[0..len):
 * verifies the signature (OTK_ERR_BAD_SIGNATURE) before anything else,
 * derives the keys, decrypts (OTK_ERR_BAD_MAC) and decodes the key set
 * into out (version from m). Secrets on the stack are wiped.
 */
OTK_CHECK_RETURN otk_status otk_resp_open(const otk_crypto *c, const uint8_t *resp, size_t len,
                                          const otk_msg *m, const uint8_t th[32],
                                          const uint8_t eph_priv[32], const uint8_t *ak,
                                          const uint8_t agent_pub[64], otk_keyset *out);

/* th = SHA-256(msg[0..len)). */
OTK_CHECK_RETURN otk_status otk_transcript(const otk_crypto *c, const uint8_t *msg, size_t len,
                                           uint8_t th[32]);

#ifdef __cplusplus
}
#endif
#endif
