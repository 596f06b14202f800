/*
 * agent.h: the OTA-Key agent protocol core. No I/O of its own: the daemon
 * hands it each message from a device and publishes what it returns; the
 * device registry and the cloud platforms are reached through the two
 * interfaces below (SQLite/PostgreSQL registries and the mosquitto
 * dynamic-security adapter implement them; tests use the in-memory ones).
 *
 * Agent-side device states (docs/protocol.md §7.2):
 *   PENDING  a claim was issued, no key set committed yet;
 *   ACTIVE   a key set is committed (maybe with an update pending);
 *   REVOKED  refused for good (cloud credentials deleted).
 * Invariants: versions issued to a device strictly increase and are never
 * reused; the committed set's cloud credentials are deleted only after the
 * device proved a newer set (CONFIRM under its AK), or on revocation.
 */
#ifndef OTAKEY_AGENT_H
#define OTAKEY_AGENT_H

#include "otakey/common.h"
#include "otakey/crypto.h"
#include "otakey/wire.h"

#ifdef __cplusplus
extern "C" {
#endif

enum otk_agent_dev_state { OTK_DS_PENDING = 1, OTK_DS_ACTIVE = 2, OTK_DS_REVOKED = 3 };

/*
 * What an operator or a campaign wants next for a device. CLEANUP marks a
 * revoked device whose cloud clients are not all deleted yet: any agent
 * finishes the deletion (otk_store_due_cleanups, otk_agent_cleanup).
 */
enum otk_want { OTK_WANT_NONE = 0, OTK_WANT_ROTATE = 1, OTK_WANT_SWITCH = 2, OTK_WANT_CLEANUP = 3 };

/* The agent's record of one device (the registry stores it whole). */
typedef struct otk_agent_device {
    uint8_t id[OTK_DEVICE_ID_LEN];
    uint8_t batch_id[OTK_BATCH_ID_LEN];
    uint8_t state;            /* OTK_DS_* */
    uint8_t reclaim_allowed;  /* an operator allowed one more claim */
    uint8_t has_committed;
    uint8_t has_pending;
    uint8_t pending_claim;    /* the pending set answers a claim (a re-claim if ACTIVE) */
    uint32_t issued_version;  /* highest version ever issued, 0 if none */
    otk_keyset committed;     /* committed set (version inside) */
    otk_keyset pending;       /* issued, not yet confirmed */
    uint8_t pending_th[OTK_HASH_LEN]; /* transcript of the request answered */
    uint16_t pending_resp_len;        /* cached response to that request */
    uint8_t pending_resp[OTK_RESP_MAX_LEN];
    uint8_t want;             /* OTK_WANT_* */
    uint32_t want_cloud;      /* target cloud for OTK_WANT_SWITCH */
    uint8_t has_stale;        /* old credentials still to delete */
    uint32_t stale_cloud;
    char stale_user[OTK_USER_MAX + 1];
    /* Protocol version 2 (docs/protocol.md §11) */
    uint8_t proto;            /* highest version the device authenticated with (0: 1) */
    uint8_t pending_dpub[OTK_PUB_LEN]; /* kind 2: the key the pending certificate is for */
    uint16_t pending_cert_len;
    uint8_t pending_cert[OTK_CERT_MAX]; /* kind 2: the pending certificate (pending.cert is NULL) */
} otk_agent_device;

/* Audit events (stored with the device id, version and status code). */
enum otk_audit_kind {
    OTK_AUD_CLAIM_ISSUED = 1,
    OTK_AUD_CLAIM_SUPERSEDED = 2,
    OTK_AUD_CLAIM_REFUSED = 3,   /* includes clones: code ALREADY_CLAIMED */
    OTK_AUD_UPDATE_ISSUED = 4,
    OTK_AUD_COMMIT = 5,
    OTK_AUD_ABORT = 6,
    OTK_AUD_REFUSED = 7,         /* any other refused message */
    OTK_AUD_REVOKE = 8,
    OTK_AUD_RECLAIM_ALLOWED = 9,
    OTK_AUD_CLOUD_CLEANUP = 10,
    OTK_AUD_UPDATE_REQUESTED = 11,
    OTK_AUD_PRODUCT_CREATED = 12, /* no device; version 0 */
    OTK_AUD_CAMPAIGN = 13         /* no device; version = campaign id, code = its new state */
};

typedef struct otk_audit {
    uint8_t kind;              /* OTK_AUD_* */
    uint8_t msg_type;          /* message that caused it, 0 for operator actions */
    uint8_t has_id;
    uint8_t id[OTK_DEVICE_ID_LEN];
    uint32_t version;
    otk_status code;
} otk_audit;

/*
 * Registry interface. Each function returns OTK_OK or an otk_status.
 * put_device stores the record and the audit event (may be NULL) in one
 * transaction: either both are durable or neither is.
 */
typedef struct otk_registry {
    void *ctx;
    otk_status (*get_batch)(void *ctx, const uint8_t batch_id[8], uint8_t pk[32]); /* UNKNOWN_BATCH */
    otk_status (*get_device)(void *ctx, const uint8_t id[16], otk_agent_device *out); /* NOT_FOUND */
    otk_status (*put_device)(void *ctx, const otk_agent_device *dev, const otk_audit *ev);
    otk_status (*audit)(void *ctx, const otk_audit *ev);
} otk_registry;

/*
 * Cloud adapter: creates and deletes one device's client on a cloud
 * platform. Both are idempotent (creating an existing identical client or
 * deleting an absent one is OTK_OK). Failure: OTK_ERR_CLOUD.
 */
typedef struct otk_cloud_adapter {
    void *ctx;
    otk_status (*create)(void *ctx, const uint8_t device_id[16], const otk_cloud *creds);
    /*
     * remove: user is the client's user name, or for a certificate set the
     * certificate's serial number (hex) that issue_cert gave: the cloud then
     * refuses that certificate (revocation list).
     */
    otk_status (*remove)(void *ctx, uint32_t cloud_id, const char *user);
    /*
     * Optional (NULL: nothing to do). Called before a cached response is
     * sent again: makes sure the client it names exists, for adapters whose
     * create only takes effect later (a restart in between could lose it).
     */
    otk_status (*ensure)(void *ctx, const uint8_t device_id[16], const otk_cloud *creds);
    /*
     * Certificate clouds (kind 2; NULL when the agent has none): issues the
     * device's client certificate for dpub on cloud_id, subject
     * CN=hex(device_id), a serial number unique on that cloud (its hex in
     * serial), and gives the pin of the CA that signed the cloud's server
     * certificate (all zero: none). OTK_ERR_CLOUD on failure.
     */
    otk_status (*issue_cert)(void *ctx, const uint8_t device_id[16], uint32_t cloud_id,
                             const uint8_t dpub[OTK_PUB_LEN], uint8_t *der, size_t der_size,
                             size_t *der_len, char serial[OTK_USER_MAX + 1],
                             uint8_t ca_pin[OTK_PIN_LEN]);
} otk_cloud_adapter;

/* A cloud platform the agent can assign (credentials are per device). */
typedef struct otk_cloud_endpoint {
    uint32_t cloud_id;
    char host[OTK_HOST_MAX + 1];
    uint16_t port;
    uint8_t flags;
    uint8_t kind; /* OTK_KIND_*: sets this cloud takes (0 reads as password) */
} otk_cloud_endpoint;

#define OTK_AGENT_MAX_CLOUDS 8

typedef struct otk_agent_config {
    uint8_t sign_priv[OTK_PRIV_LEN];
    uint8_t sign_pub[OTK_PUB_LEN];
    otk_cloud_endpoint clouds[OTK_AGENT_MAX_CLOUDS];
    size_t n_clouds;
    uint32_t claim_cloud; /* cloud id assigned at claim */
    /* Cloud a version 1 device claims onto (0: claim_cloud). A certificate
     * claim cloud takes version 2 devices only; this keeps a v1 fleet
     * claiming onto a password cloud beside it. Must not be of kind 2. */
    uint32_t claim_cloud_v1;
} otk_agent_config;

typedef struct otk_agent {
    const otk_crypto *crypto;
    otk_registry reg;
    otk_cloud_adapter cloud;
    otk_agent_config cfg;
    /*
     * Set by the caller (0 after otk_agent_init) while the registry's writes
     * become durable only together, at a commit the caller makes after the
     * cloud adapter's queued changes are synced (the daemon's group commit).
     * A commit then writes its device once: the retired client recorded as
     * removed, removed right after, an audit row saying so. (Otherwise the
     * record is written twice, with the retired client, then without it
     * once it is removed: a crash between the two leaves the removal to do.)
     */
    int group_commit;
} otk_agent;

/* Copies the interfaces and config; crypto must outlive the agent. */
OTK_CHECK_RETURN otk_status otk_agent_init(otk_agent *a, const otk_crypto *crypto,
                                           const otk_registry *reg, const otk_cloud_adapter *cloud,
                                           const otk_agent_config *cfg);

/*
 * Handles one message from a device. On success, *out_len is the length of
 * the reply (CLAIM_RESP, UPDATE_RESP, STATUS, ACK or NACK). On refusal it
 * returns the reason and, when the message named a device, writes an ERROR
 * reply carrying it (*out_len 0 otherwise); the registry is unchanged apart
 * from the audit entry. out_size >= OTK_MSG_MAX_LEN always suffices.
 */
OTK_CHECK_RETURN otk_status otk_agent_handle(otk_agent *a, const uint8_t *in, size_t in_len,
                                             uint8_t *out, size_t out_size, size_t *out_len);

/*
 * Marks a device for rotation (cloud_id ignored) or a switch to cloud_id,
 * and writes the NOTIFY to publish to it (MAC under its committed AK): the
 * one otk_agent_notify would write now, or none (*out_len 0) to a device it
 * would refuse. OTK_ERR_NO_KEYSET before its first commit, OTK_ERR_REVOKED
 * when revoked.
 */
OTK_CHECK_RETURN otk_status otk_agent_request_update(otk_agent *a, const uint8_t id[16], int want,
                                                     uint32_t cloud_id, uint8_t *out,
                                                     size_t out_size, size_t *out_len);

/*
 * Writes the NOTIFY for a device whose update was requested or issued and
 * not confirmed yet (record unchanged). OTK_ERR_BAD_STATE otherwise.
 */
OTK_CHECK_RETURN otk_status otk_agent_notify(otk_agent *a, const uint8_t id[16], uint8_t *out,
                                             size_t out_size, size_t *out_len);

/*
 * Revokes a device: its AK is refused from the moment the record is stored
 * (state REVOKED, want CLEANUP), then its cloud credentials (committed and
 * pending) are deleted. OTK_ERR_CLOUD when some could not be deleted now:
 * the record keeps want CLEANUP until otk_agent_cleanup succeeds.
 */
OTK_CHECK_RETURN otk_status otk_agent_revoke(otk_agent *a, const uint8_t id[16]);

/* Allows one new claim of an already claimed id (a replaced or reset device). */
OTK_CHECK_RETURN otk_status otk_agent_allow_reclaim(otk_agent *a, const uint8_t id[16]);

/*
 * Deletes old credentials left behind by a failed cloud call, and a revoked
 * device's credentials (idempotent). When every deletion succeeded, a
 * revoked device's want CLEANUP is cleared (audited as CLOUD_CLEANUP).
 */
OTK_CHECK_RETURN otk_status otk_agent_cleanup(otk_agent *a, const uint8_t id[16]);

/*
 * A record's pending set as the registries store it: a password set as the
 * version 1 plaintext, a certificate set as the version 2 plaintext with
 * its certificate (kind: what the store recorded, 0 or 1 for password;
 * serial: the certificate's serial the store kept beside it, or NULL).
 */
OTK_CHECK_RETURN otk_status otk_agent_pending_encode(const otk_agent_device *d, uint8_t *out,
                                                     size_t out_size, size_t *out_len);
OTK_CHECK_RETURN otk_status otk_agent_pending_decode(otk_agent_device *d, int kind,
                                                     const uint8_t *in, size_t len,
                                                     const char *serial);

/* ---- in-memory registry and cloud, for tests and tools ---- */

typedef struct otk_memreg otk_memreg;
otk_memreg *otk_memreg_new(void);
void otk_memreg_free(otk_memreg *m);
OTK_CHECK_RETURN otk_status otk_memreg_add_batch(otk_memreg *m, const uint8_t batch_id[8],
                                                 const uint8_t pk[32]);
void otk_memreg_bind(otk_memreg *m, otk_registry *out);
size_t otk_memreg_audit_count(const otk_memreg *m, int kind); /* kind 0: all */
/* Makes the next n put_device calls fail with OTK_ERR_STORAGE (fault injection). */
void otk_memreg_fail_puts(otk_memreg *m, unsigned n);

#ifdef __cplusplus
}
#endif
#endif
