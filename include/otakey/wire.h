/*
 * wire.h: the OTA-Key message codec (docs/protocol.md §4).
 *
 * Every message starts with an 18-byte header:
 *   proto version (1) | type (1) | device id (16)
 * followed by a fixed layout per type; only CLAIM_RESP / UPDATE_RESP carry
 * a length-prefixed ciphertext. Multi-byte integers are big-endian.
 *
 * The codec does no cryptography: encoders copy the mac/sig fields from the
 * struct as given (callers compute them over the first otk_msg_auth_offset()
 * bytes and patch them in), decoders check only the layout.
 */
#ifndef OTAKEY_WIRE_H
#define OTAKEY_WIRE_H

#include "otakey/common.h"

#ifdef __cplusplus
extern "C" {
#endif

enum otk_msg_type {
    OTK_MSG_CLAIM = 1,       /* device -> agent: first-boot claim, MAC under PK */
    OTK_MSG_CLAIM_RESP = 2,  /* agent -> device: key set v, signed */
    OTK_MSG_UPDATE_REQ = 3,  /* device -> agent: poll / update request, MAC under AK_v */
    OTK_MSG_UPDATE_RESP = 4, /* agent -> device: key set v' > v, signed */
    OTK_MSG_CONFIRM = 5,     /* device -> agent: staged set proven, MAC under AK_v' */
    OTK_MSG_ABORT = 6,       /* device -> agent: staged set refused by cloud, MAC under AK_v' */
    OTK_MSG_ACK = 7,         /* agent -> device: v' committed, MAC under AK_v' */
    OTK_MSG_NACK = 8,        /* agent -> device: v' will never commit, signed */
    OTK_MSG_NOTIFY = 9,      /* agent -> device: an update waits, MAC under AK_v */
    OTK_MSG_STATUS = 10,     /* agent -> device: answer to a poll, MAC under AK_v */
    OTK_MSG_ERROR = 11       /* agent -> device: refusal, unauthenticated */
};
#define OTK_MSG_TYPE_MAX 11

#define OTK_HDR_LEN 18u

/* Exact sizes of the fixed-layout messages (asserted by tests/test_wire.c). */
#define OTK_CLAIM_LEN 122u
#define OTK_UPDATE_REQ_LEN 118u
#define OTK_CONFIRM_LEN 38u
#define OTK_ABORT_LEN 40u
#define OTK_ACK_LEN 38u
#define OTK_NACK_LEN 88u
#define OTK_NOTIFY_LEN 38u
#define OTK_STATUS_LEN 40u
#define OTK_ERROR_LEN 22u
/* Version 2 (docs/protocol.md §11.2). */
#define OTK_CLAIM2_LEN 250u
#define OTK_UPDATE_REQ2_LEN 119u     /* without a key */
#define OTK_UPDATE_REQ2_KEY_LEN 247u /* with D_pub and pop */
#define OTK_NOTIFY2_LEN 40u
/* CLAIM_RESP / UPDATE_RESP: RESP_FIXED_LEN + ct_len, ct_len = keyset + tag. */
#define OTK_RESP_FIXED_LEN 152u
#define OTK_CT_MIN (OTK_KEYSET_FIXED_LEN + 3u + OTK_AEAD_TAG_LEN)
#define OTK_CT_MAX (OTK_KEYSET_MAX_LEN + OTK_AEAD_TAG_LEN)
#define OTK_CT2_MIN (OTK_CT_MIN + 1u)
#define OTK_CT2_MAX (OTK_KEYSET2_MAX_LEN + OTK_AEAD_TAG_LEN)
#define OTK_RESP_MAX_LEN (OTK_RESP_FIXED_LEN + OTK_CT2_MAX)
/* Largest message of either version: a buffer this size holds any of them. */
#define OTK_MSG_MAX_LEN OTK_RESP_MAX_LEN

/*
 * A decoded message: one flat struct for every type; fields a type does
 * not carry are left zero by the decoder and ignored by the encoder.
 * ct points into the buffer that was decoded (no copy): valid while it is.
 */
typedef struct otk_msg {
    uint8_t proto;                      /* protocol version (byte 0); 0 encodes as 1 */
    uint8_t type;
    uint8_t device_id[OTK_DEVICE_ID_LEN];
    uint8_t batch_id[OTK_BATCH_ID_LEN]; /* CLAIM */
    uint32_t version;                   /* all but CLAIM and ERROR */
    uint8_t nonce[OTK_NONCE_LEN];       /* CLAIM, UPDATE_REQ */
    uint8_t epub[OTK_PUB_LEN];          /* CLAIM, UPDATE_REQ, *_RESP */
    int16_t code;                       /* ABORT, NACK, STATUS, ERROR */
    uint8_t ref_type;                   /* ERROR: type of the refused message */
    const uint8_t *ct;                  /* *_RESP: ciphertext || tag */
    uint16_t ct_len;
    uint8_t mac[OTK_MAC_LEN];           /* MACed types */
    uint8_t sig[OTK_SIG_LEN];           /* *_RESP, NACK */
    /* version 2 */
    uint8_t has_key;                    /* CLAIM (always 1), UPDATE_REQ (0 or 1) */
    uint8_t dpub[OTK_PUB_LEN];          /* with has_key: the device's new certificate key */
    uint8_t pop[OTK_SIG_LEN];           /* with has_key: ECDSA under D_priv (§11.2) */
    uint8_t kind;                       /* NOTIFY: kind of the set waiting */
} otk_msg;

/*
 * Encodes m into out. Returns OTK_ERR_UNKNOWN_TYPE, OTK_ERR_BAD_LENGTH
 * (ct_len outside [OTK_CT_MIN, OTK_CT_MAX]) or OTK_ERR_BUFFER_TOO_SMALL;
 * *out_len is set on success only.
 */
OTK_CHECK_RETURN otk_status otk_msg_encode(const otk_msg *m, uint8_t *out, size_t out_size,
                                           size_t *out_len);

/*
 * Decodes in[0..len) into m. Distinct errors: OTK_ERR_TRUNCATED (shorter
 * than the header or the type's layout), OTK_ERR_UNKNOWN_VERSION,
 * OTK_ERR_UNKNOWN_TYPE, OTK_ERR_BAD_LENGTH (ct_len out of limits),
 * OTK_ERR_TRAILING (bytes after the layout), OTK_ERR_BAD_VALUE (a reserved
 * byte not zero). m is zeroed first whatever the outcome.
 */
OTK_CHECK_RETURN otk_status otk_msg_decode(const uint8_t *in, size_t len, otk_msg *m);

/*
 * Size of a version 1 message of this type (ct_len used by the *_RESP
 * types only); 0 for an unknown type.
 */
size_t otk_msg_size(uint8_t type, size_t ct_len);

/* Size of m as encoded (its proto, type, ct_len and has_key); 0 if invalid. */
size_t otk_msg_size_of(const otk_msg *m);

/*
 * Offset of the proof of possession in a keyed version 2 CLAIM or
 * UPDATE_REQ, i.e. the bytes it covers; 0 for any other message.
 */
size_t otk_msg_pop_offset(const uint8_t *msg, size_t len);

/*
 * Offset of the authenticator (mac or sig) in an encoded message of this
 * type and length, i.e. the number of bytes it covers; 0 for ERROR and
 * unknown types.
 */
size_t otk_msg_auth_offset(uint8_t type, size_t msg_len);

/* Name of a message type ("CLAIM"), "?" when unknown. */
const char *otk_msg_name(uint8_t type);

/*
 * Key-set plaintext (docs/protocol.md §4.3): AK, cloud id, port, flags and
 * host/user/secret, each a 1-byte length then bytes. The version travels
 * outside it. encode: OTK_ERR_BAD_LENGTH / OTK_ERR_BAD_VALUE for fields out
 * of limits. decode: as otk_msg_decode, plus OTK_ERR_BAD_VALUE for empty
 * strings or bytes outside printable ASCII (0x21..0x7e); out->version is
 * left unchanged.
 */
OTK_CHECK_RETURN otk_status otk_keyset_encode(const otk_keyset *ks, uint8_t *out, size_t out_size,
                                              size_t *out_len);
OTK_CHECK_RETURN otk_status otk_keyset_decode(const uint8_t *in, size_t len, otk_keyset *out);

/*
 * The same for a protocol version (1: §4.3, the kind must be 1; 2: §11.3,
 * the kind byte first). A decoded kind 2 set's cert points into in.
 */
OTK_CHECK_RETURN otk_status otk_keyset_encode_v(const otk_keyset *ks, uint8_t proto, uint8_t *out,
                                                size_t out_size, size_t *out_len);
OTK_CHECK_RETURN otk_status otk_keyset_decode_v(const uint8_t *in, size_t len, uint8_t proto,
                                                otk_keyset *out);

/* Sets a cloud record's string fields from C strings; OTK_ERR_BAD_LENGTH / BAD_VALUE. */
OTK_CHECK_RETURN otk_status otk_cloud_set(otk_cloud *c, uint32_t cloud_id, const char *host,
                                          uint16_t port, uint8_t flags, const char *user,
                                          const char *secret);

/* Big-endian helpers used by the codec and the key store. */
void otk_put_u16(uint8_t *p, uint16_t v);
void otk_put_u32(uint8_t *p, uint32_t v);
uint16_t otk_get_u16(const uint8_t *p);
uint32_t otk_get_u32(const uint8_t *p);

#ifdef __cplusplus
}
#endif
#endif
