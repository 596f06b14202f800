/*
 * otakey — over-the-air key management for IoT fleets.
 *
 * common.h: the status type, protocol constants and sizes shared by the
 * device core, the agent and the tools. Everything here is part of the wire
 * protocol (docs/protocol.md) or of the stored formats: values never change
 * once published.
 */
#ifndef OTAKEY_COMMON_H
#define OTAKEY_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define OTK_CHECK_RETURN __attribute__((warn_unused_result))
#else
#define OTK_CHECK_RETURN
#endif

/*
 * Status codes. 0 is success; every failure is a distinct negative value.
 * They travel in ERROR and NACK messages (as signed 16-bit big-endian) and
 * are stored in the agent's audit log, so a published value never changes
 * meaning and is never reused.
 */
typedef int otk_status;

#define OTK_OK 0
#define OTK_ERR_INVALID_ARGUMENT (-1)  /* caller passed a bad pointer/size/value */
#define OTK_ERR_BAD_STATE (-2)         /* call not valid in the current state */
#define OTK_ERR_BUFFER_TOO_SMALL (-3)  /* output buffer shorter than needed */
#define OTK_ERR_BAD_MAC (-4)           /* HMAC or AEAD tag did not verify */
#define OTK_ERR_BAD_SIGNATURE (-5)     /* agent ECDSA signature did not verify */
#define OTK_ERR_REPLAY (-6)            /* message already seen / not fresh */
#define OTK_ERR_ROLLBACK (-7)          /* key-set version not above committed */
#define OTK_ERR_CORRUPT (-8)           /* stored data fails its integrity check */
#define OTK_ERR_STORAGE (-9)           /* flash port reported a failure */
#define OTK_ERR_CRYPTO (-10)           /* crypto backend failure (not a MAC) */
#define OTK_ERR_TRUNCATED (-11)        /* input shorter than its layout */
#define OTK_ERR_TRAILING (-12)         /* input longer than its layout */
#define OTK_ERR_BAD_LENGTH (-13)       /* a length field is out of its limits */
#define OTK_ERR_UNKNOWN_TYPE (-14)     /* message type not defined */
#define OTK_ERR_UNKNOWN_VERSION (-15)  /* protocol version not supported */
#define OTK_ERR_UNKNOWN_DEVICE (-16)   /* device id not in the registry */
#define OTK_ERR_UNKNOWN_BATCH (-17)    /* batch id not in the registry */
#define OTK_ERR_ALREADY_CLAIMED (-18)  /* id already claimed: a clone */
#define OTK_ERR_REVOKED (-19)          /* device revoked by an operator */
#define OTK_ERR_NOT_FOUND (-20)        /* registry lookup found nothing */
#define OTK_ERR_CLOUD (-21)            /* cloud adapter failed */
#define OTK_ERR_RATE_LIMITED (-22)     /* too many requests; retry later */
#define OTK_ERR_STALE (-23)           /* key-set version superseded, aborted or never issued */
#define OTK_ERR_WRONG_DEVICE (-24)     /* message addressed to another id */
#define OTK_ERR_PROOF_FAILED (-25)     /* cloud refused the staged set */
#define OTK_ERR_INTERNAL (-26)         /* invariant broken; a bug */
#define OTK_ERR_NO_KEYSET (-27)        /* no committed key set yet */
#define OTK_ERR_UNEXPECTED (-28)       /* valid message, not expected now */
#define OTK_ERR_BAD_VALUE (-29)        /* a field holds a forbidden value */
#define OTK_ERR_BUSY (-30)             /* retryable server-side failure */

/* Returns a static, human-readable name for a status ("BAD_MAC"). */
const char *otk_strerror(otk_status st);

/* ---- protocol constants (docs/protocol.md §2) ---- */

#define OTK_PROTO_VERSION 1u
#define OTK_PROTO_V2 2u       /* certificate key sets (docs/protocol.md §11) */

#define OTK_DEVICE_ID_LEN 16u /* hardware-derived unique id */
#define OTK_BATCH_ID_LEN 8u   /* product id (4) || batch number (4) */
#define OTK_PK_LEN 32u        /* batch product key (HMAC key) */
#define OTK_AK_LEN 32u        /* per-device agent key */
#define OTK_NONCE_LEN 16u
#define OTK_PUB_LEN 64u       /* P-256 point, X || Y, big-endian */
#define OTK_PRIV_LEN 32u      /* P-256 scalar, big-endian */
#define OTK_SIG_LEN 64u       /* ECDSA r || s, big-endian */
#define OTK_MAC_LEN 16u       /* HMAC-SHA256 truncated */
#define OTK_HASH_LEN 32u      /* SHA-256 */
#define OTK_AEAD_KEY_LEN 16u  /* AES-128-CCM */
#define OTK_AEAD_IV_LEN 13u
#define OTK_AEAD_TAG_LEN 16u

/* Cloud record limits (bytes, no terminator on the wire). */
#define OTK_HOST_MAX 64u
#define OTK_USER_MAX 48u
#define OTK_SECRET_MAX 48u

/* Key-set plaintext: AK, cloud id, port, flags, three length-prefixed strings. */
#define OTK_KEYSET_FIXED_LEN (OTK_AK_LEN + 4u + 2u + 1u + 3u)
#define OTK_KEYSET_MAX_LEN (OTK_KEYSET_FIXED_LEN + OTK_HOST_MAX + OTK_USER_MAX + OTK_SECRET_MAX)

/* Version 2 (§11.3): key-set kinds and the certificate kind's fields. */
#define OTK_KIND_PASSWORD 1u
#define OTK_KIND_CERT 2u
#define OTK_CERT_MAX 640u     /* the device certificate, DER */
#define OTK_PIN_LEN 32u       /* SHA-256 of the cloud's CA certificate */
#define OTK_KEYSET2_MAX_LEN (1u + OTK_AK_LEN + 7u + 1u + OTK_HOST_MAX + 2u + OTK_CERT_MAX + OTK_PIN_LEN)

/* Cloud record flag bits. */
#define OTK_CLOUD_FLAG_TLS 0x01u

/* A cloud platform's connection info and the device's credentials on it. */
typedef struct otk_cloud {
    uint32_t cloud_id;
    uint16_t port;
    uint8_t flags;
    uint8_t host_len, user_len, secret_len;
    char host[OTK_HOST_MAX + 1];     /* NUL-terminated copy for convenience */
    char user[OTK_USER_MAX + 1];
    char secret[OTK_SECRET_MAX + 1];
} otk_cloud;

/*
 * A key set: the device's agent key plus its cloud info and credentials.
 * Kind 1 (password): cloud.user and cloud.secret. Kind 2 (certificate,
 * protocol v2): the device certificate (cert, not owned: it points into the
 * buffer the set was decoded from, or is NULL where only its length is
 * known, as in a set loaded from the key store) and the cloud CA's pin;
 * cloud.user/secret are empty on the device (the agent keeps the
 * certificate's serial number in cloud.user for its own records).
 */
typedef struct otk_keyset {
    uint32_t version; /* carried beside the plaintext, not inside it */
    uint8_t kind;     /* OTK_KIND_*; 0 reads as OTK_KIND_PASSWORD */
    uint8_t ak[OTK_AK_LEN];
    otk_cloud cloud;
    const uint8_t *cert; /* kind 2 */
    uint16_t cert_len;
    uint8_t ca_pin[OTK_PIN_LEN];
} otk_keyset;

/* Overwrites memory in a way the compiler may not elide. */
void otk_wipe(void *p, size_t n);

/* Lowercase hex of n bytes into out (2n + 1 bytes, NUL-terminated). */
void otk_hex_encode(const uint8_t *in, size_t n, char *out);

/*
 * Exactly 2n hex digits (either case) into n bytes: 0, or -1 for another
 * length or a non-hex digit (out unspecified then).
 */
int otk_hex_decode(const char *s, uint8_t *out, size_t n);

/* Constant-time comparison: returns 0 when equal, non-zero otherwise. */
int otk_ct_compare(const void *a, const void *b, size_t n);

#ifdef __cplusplus
}
#endif
#endif
