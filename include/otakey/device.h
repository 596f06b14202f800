/*
 * device.h: the OTA-Key device core. Sans-I/O and malloc-free: the caller
 * owns the context, moves bytes between the core and its MQTT client, and
 * connects to the cloud when the core asks for a proof.
 *
 * Typical loop (docs/protocol.md §7):
 *
 *   otk_device_init(&d, &port, &cfg);
 *   for (;;) {
 *     otk_device_next(&d, out, sizeof out, &n);   // first send + retries
 *     if (n) mqtt_publish(OTK_TOPIC_UP..., out, n);
 *     on message m: otk_device_receive(&d, m, mlen, out, sizeof out, &n);
 *                   if (n) mqtt_publish(..., out, n);
 *     if (otk_device_state(&d) == OTK_DEV_PROVE) {
 *       otk_device_cloud(&d, OTK_SET_STAGED, &cloud);
 *       r = try_connect(&cloud);        // OK, REFUSED, or UNREACHABLE
 *       otk_device_proof(&d, r, out, sizeof out, &n); publish if n;
 *     }
 *     use otk_device_cloud(&d, OTK_SET_ACTIVE, ...) for telemetry.
 *     at boot, every few hours, and when the agent link is back after a
 *     drop: otk_device_poll(&d) (then otk_device_next sends it).
 *   }
 *
 * Every function returns OTK_OK or a negative otk_status. Bad input from
 * the network is refused with its error and leaves the state unchanged. A
 * storage or internal failure is sticky: every later call returns it until
 * otk_device_init is called again (after a reboot, that is what happens).
 */
#ifndef OTAKEY_DEVICE_H
#define OTAKEY_DEVICE_H

#include "otakey/common.h"
#include "otakey/keystore.h"
#include "otakey/port.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Firmware constants plus the device's hardware id. */
typedef struct otk_device_config {
    uint8_t device_id[OTK_DEVICE_ID_LEN];
    uint8_t batch_id[OTK_BATCH_ID_LEN];
    uint8_t pk[OTK_PK_LEN];          /* batch product key */
    uint8_t agent_pub[OTK_PUB_LEN];  /* agent signing key */
    uint32_t retry_min_ms;           /* first retransmit delay; 0: 2000 */
    uint32_t retry_max_ms;           /* backoff ceiling; 0: 300000 */
    uint8_t proto;                   /* protocol version spoken: 1 (0 reads as 1) or 2 */
} otk_device_config;

typedef enum otk_dev_state {
    OTK_DEV_UNINIT = 0,  /* all-zero context: call otk_device_init */
    OTK_DEV_UNCLAIMED,   /* no key set; otk_device_next sends a CLAIM */
    OTK_DEV_CLAIMING,    /* CLAIM sent; waiting for CLAIM_RESP */
    OTK_DEV_PROVE,       /* staged set waits for otk_device_proof */
    OTK_DEV_CONFIRMING,  /* CONFIRM/ABORT sent; waiting for ACK/NACK */
    OTK_DEV_READY,       /* committed set active, nothing in flight */
    OTK_DEV_UPDATING     /* UPDATE_REQ sent; waiting for UPDATE_RESP/STATUS */
} otk_dev_state;

/* Outcome of the caller's attempt to connect with the staged set. */
typedef enum otk_proof {
    OTK_PROOF_OK = 0,         /* the cloud accepted the staged credentials */
    OTK_PROOF_REFUSED = 1,    /* the cloud refused them (bad credentials) */
    OTK_PROOF_UNREACHABLE = 2 /* no answer: nothing learnt, try again later */
} otk_proof;

enum { OTK_SET_ACTIVE = 0, OTK_SET_STAGED = 1 };

/*
 * Device context. Caller-allocated (about 420 bytes), no interior
 * pointers, all-zero is OTK_DEV_UNINIT. Fields are private.
 */
typedef struct otk_device {
    const otk_port *port;
    otk_keystore ks;
    otk_status sticky;      /* first fatal error, or OTK_OK */
    otk_status last_remote; /* last code the agent sent (ERROR/NACK/STATUS) */
    uint8_t state;
    uint8_t outbound;       /* message type to (re)send in this state */
    uint8_t poll_wanted;
    uint8_t sent;           /* the current request was sent at least once */
    int16_t abort_reason;
    uint32_t req_version;   /* committed version named in the UPDATE_REQ */
    uint32_t deadline_ms;
    uint32_t backoff_ms;
    uint32_t retries;
    otk_device_config cfg;
    uint8_t want_key;         /* version 2: the next UPDATE_REQ carries a key */
    /* version 2: a certificate key made for the next slot and not staged
     * yet, kept across requests (a device that polls with a key makes one
     * per update, not one per poll) */
    uint8_t slot_key;         /* dev_priv / dev_pub hold it */
    uint8_t dev_priv[OTK_PRIV_LEN];
    uint8_t dev_pub[OTK_PUB_LEN];
    /* The request in flight, from here to the end (wiped as one). */
    uint8_t eph_priv[OTK_PRIV_LEN];
    uint8_t eph_pub[OTK_PUB_LEN];
    uint8_t nonce[OTK_NONCE_LEN];
    uint8_t th[OTK_HASH_LEN]; /* transcript hash of the request in flight */
    uint8_t keyed;            /* the request in flight carries dev_pub */
} otk_device;

/*
 * Initialises d over port (which must outlive d) and cfg (copied): mounts
 * the key store and resumes in the state it implies: UNCLAIMED with no
 * set, PROVE with a staged set, READY with a committed one.
 */
OTK_CHECK_RETURN otk_status otk_device_init(otk_device *d, const otk_port *port,
                                            const otk_device_config *cfg);

/* Current state. */
otk_dev_state otk_device_state(const otk_device *d);

/*
 * The message to send now, if any: the first CLAIM / UPDATE_REQ / CONFIRM /
 * ABORT of the current state, or its retransmission once the backoff has
 * elapsed (identical bytes, so the agent answers idempotently). *out_len
 * is 0 when there is nothing to send. out_size >= OTK_CLAIM2_LEN suffices.
 */
OTK_CHECK_RETURN otk_status otk_device_next(otk_device *d, uint8_t *out, size_t out_size,
                                            size_t *out_len);

/*
 * Asks for an update check: in READY, the next otk_device_next sends an
 * UPDATE_REQ. A version 2 device on a certificate set sends it with a key
 * for its next set (docs/protocol.md §11.2), so that a certificate set
 * waiting at the agent comes in the answer to the poll.
 */
OTK_CHECK_RETURN otk_status otk_device_poll(otk_device *d);

/*
 * Processes one message from the agent. A reply to send at once (the
 * UPDATE_REQ answering a NOTIFY) is written to out (*out_len 0 if none).
 * A response is decrypted (and a version 2 record built) in out, then
 * wiped, not on the stack: out_size >= OTK_MSG_MAX_LEN suffices (version 1
 * alone: 390).
 * Refusals: the codec errors, OTK_ERR_WRONG_DEVICE, OTK_ERR_UNEXPECTED (not
 * expected in this state or for this version), OTK_ERR_BAD_SIGNATURE,
 * OTK_ERR_BAD_MAC, OTK_ERR_ROLLBACK; the state is then unchanged.
 * An ERROR message returns OTK_OK after recording its code
 * (otk_device_last_remote); it is unauthenticated and changes nothing.
 */
OTK_CHECK_RETURN otk_status otk_device_receive(otk_device *d, const uint8_t *in, size_t in_len,
                                               uint8_t *out, size_t out_size, size_t *out_len);

/*
 * Reports the caller's proof of the staged set (state PROVE). OK writes a
 * CONFIRM, REFUSED an ABORT (state CONFIRMING); UNREACHABLE writes nothing
 * and stays in PROVE.
 */
OTK_CHECK_RETURN otk_status otk_device_proof(otk_device *d, otk_proof result, uint8_t *out,
                                             size_t out_size, size_t *out_len);

/*
 * Copies the cloud record of the active or staged set (OTK_SET_*) into out.
 * OTK_ERR_NO_KEYSET when there is none.
 */
OTK_CHECK_RETURN otk_status otk_device_cloud(const otk_device *d, int which, otk_cloud *out);

/*
 * Version 2 certificate sets: the kind of the active or staged set
 * (OTK_KIND_*, 0 when none), its certificate (DER) and its private key, for
 * the caller's TLS login to the cloud. The key stays the device's: nothing
 * of the protocol sends it anywhere. OTK_ERR_BAD_STATE for a password set.
 */
uint8_t otk_device_kind(const otk_device *d, int which);
OTK_CHECK_RETURN otk_status otk_device_cert(const otk_device *d, int which, uint8_t *der,
                                            size_t der_size, size_t *der_len);
OTK_CHECK_RETURN otk_status otk_device_cert_key(const otk_device *d, int which,
                                                uint8_t priv[OTK_PRIV_LEN]);
/* The set's CA pin (docs/protocol.md §11.3; all zero: no pin). */
OTK_CHECK_RETURN otk_status otk_device_ca_pin(const otk_device *d, int which,
                                              uint8_t pin[OTK_PIN_LEN]);

/* Version of the active or staged set, 0 when none. */
uint32_t otk_device_version(const otk_device *d, int which);

/* Last status code received from the agent (OTK_OK if none). */
otk_status otk_device_last_remote(const otk_device *d);

/* Wipes secrets from the context (ephemeral key) and zeroes it. */
void otk_device_free(otk_device *d);

#ifdef __cplusplus
}
#endif
#endif
