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

/* HKDF info prefix and signature contexts (ASCII, no terminator). */
#define OTK_LABEL_KEYSET "otakey v1 keyset"
#define OTK_LABEL_SIG_RESP "otakey v1 resp"
#define OTK_LABEL_SIG_NACK "otakey v1 nack"
/* Version 2 (docs/protocol.md §11.2). */
#define OTK_LABEL_KEYSET2 "otakey v2 keyset"
#define OTK_LABEL_SIG_RESP2 "otakey v2 resp"
#define OTK_LABEL_SIG_NACK2 "otakey v2 nack"
#define OTK_LABEL_POP "otakey v2 pop"
#define OTK_LABEL_AK2 "otakey v2 ak"

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
/* The same for a protocol version: info "otakey v<proto> keyset" || E_a. */
OTK_CHECK_RETURN otk_status otk_resp_keys_v(const otk_crypto *c, uint8_t proto,
                                            const uint8_t th[32], const uint8_t ss[32],
                                            const uint8_t *ak, const uint8_t agent_epub[64],
                                            uint8_t key[16], uint8_t iv[13]);

/*
 * Digest a version 2 device signs with its new key to prove it holds it:
 * SHA-256("otakey v2 pop" || msg[0..pop_off)), pop_off from
 * otk_msg_pop_offset (docs/protocol.md §11.2).
 */
OTK_CHECK_RETURN otk_status otk_pop_digest(const otk_crypto *c, const uint8_t *msg, size_t pop_off,
                                           uint8_t digest[32]);

/*
 * Digest signed in a response: SHA-256("otakey v1 resp" || th ||
 * resp[0..auth_off)), i.e. everything the response carries but the
 * signature, bound to the request transcript ("otakey v2 resp" when
 * resp[0] is 2; likewise for a NACK).
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
/* The same in a protocol version (2: the v2 labels and plaintext, ks of either kind). */
OTK_CHECK_RETURN otk_status otk_resp_build_v(const otk_crypto *c, uint8_t proto, uint8_t type,
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

/*
 * Opens a response of either version into the caller's plaintext buffer
 * (device side, version 2: no plaintext on the stack): the checks of
 * otk_resp_open, then the plaintext in pt[0..*pt_len), not decoded.
 * OTK_ERR_BUFFER_TOO_SMALL when pt_size is short; pt is wiped on failure.
 */
OTK_CHECK_RETURN otk_status otk_resp_open_pt(const otk_crypto *c, const uint8_t *resp, size_t len,
                                             const otk_msg *m, const uint8_t th[32],
                                             const uint8_t eph_priv[32], const uint8_t *ak,
                                             const uint8_t agent_pub[64], uint8_t *pt,
                                             size_t pt_size, size_t *pt_len);

/* th = SHA-256(msg[0..len)). */
OTK_CHECK_RETURN otk_status otk_transcript(const otk_crypto *c, const uint8_t *msg, size_t len,
                                           uint8_t th[32]);

#ifdef __cplusplus
}
#endif
#endif
