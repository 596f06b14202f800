/*
 * store.h: everything the agent daemon and the operator CLI need from the
 * database, behind one interface with two backends:
 *
 *   SQLite      (default; `database` is a file path): one agent process;
 *   PostgreSQL  (`database` is a libpq URI, postgresql://... or
 *               postgres://..., or a "key=value ..." conninfo): several
 *               agent processes share one database and the broker's shared
 *               subscription; the schema and the transactions make every
 *               claim, version and campaign step take effect once.
 *
 * A store is used by one thread at a time. Every function returns OTK_OK or
 * an otk_status (OTK_ERR_STORAGE when the database fails) unless noted.
 *
 * Concurrency contract (PostgreSQL): the registry bound by otk_store_bind
 * locks a device from its get_device until the next put_device commits or
 * until otk_store_release; callers that read a device without writing it
 * (a cached reply, a refusal, a NOTIFY) call otk_store_release once the
 * message is handled so the lock does not outlive it. On SQLite, release
 * does nothing (one process owns the file).
 */
#ifndef OTAKEY_STORE_H
#define OTAKEY_STORE_H

#include "otakey/agent.h"
#include "otakey/campaign.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct otk_store otk_store;

enum otk_store_kind { OTK_STORE_SQLITE = 1, OTK_STORE_POSTGRES = 2 };

/* Which backend a `database` setting selects (OTK_STORE_*). */
int otk_store_kind_of(const char *database);

/*
 * Opens (creating or migrating the schema) the store named by database.
 * create = 0 refuses a SQLite path that does not exist yet (a mistyped path
 * is not an empty fleet); PostgreSQL databases are created by their
 * administrator, the schema by the first agent or CLI that opens them.
 * crypto (SHA-256 of the audit chain) must outlive the store. On failure
 * *out is NULL and err holds a message (OTK_ERR_STORAGE; OTK_ERR_NOT_FOUND
 * for a missing SQLite file with create = 0).
 */
OTK_CHECK_RETURN otk_status otk_store_open(const char *database, const otk_crypto *crypto,
                                           int create, otk_store **out, char *err,
                                           size_t err_size);
/* Closes the store (NULL is fine); an open transaction is committed first. */
void otk_store_close(otk_store *s);
int otk_store_kind(const otk_store *s);

/* Fills *out with the registry interface of agent.h; valid until close. */
void otk_store_bind(otk_store *s, otk_registry *out);

/* Ends the transaction a registry read opened (see the contract above). */
OTK_CHECK_RETURN otk_status otk_store_release(otk_store *s);

/*
 * Group commit: the registry writes between begin and end form one
 * transaction (each put_device stays all-or-nothing inside it), so a batch
 * of messages costs one commit. Replies to those messages may be sent only
 * after end returned OTK_OK; on an error nothing of the batch is stored.
 * SQLite only; on PostgreSQL both do nothing (each device's writes commit
 * with its lock).
 */
OTK_CHECK_RETURN otk_status otk_store_batch_begin(otk_store *s);
OTK_CHECK_RETURN otk_status otk_store_batch_end(otk_store *s);
/* 1 when begin opens a transaction (SQLite): what otk_agent.group_commit asks. */
int otk_store_batches(const otk_store *s);

/* ---- batches and devices ---- */

/* Adds a batch (product name, PK). OTK_ERR_BAD_STATE if it exists. */
OTK_CHECK_RETURN otk_status otk_store_add_batch(otk_store *s, const uint8_t batch_id[8],
                                                const char *product, const uint8_t pk[32]);

typedef struct otk_batch_info {
    uint8_t batch_id[OTK_BATCH_ID_LEN];
    char product[128];   /* truncated if longer */
    uint64_t devices;    /* devices that ever claimed from it */
} otk_batch_info;

typedef struct otk_device_info {
    uint8_t id[OTK_DEVICE_ID_LEN];
    uint8_t batch_id[OTK_BATCH_ID_LEN];
    int state;                     /* OTK_DS_* */
    uint32_t version;              /* committed version, 0 before the first commit */
    uint32_t cloud;                /* committed cloud id, 0 before the first commit */
    char user[OTK_USER_MAX + 1];   /* committed cloud user, "" before the first commit */
    uint32_t pending_version;      /* 0 when nothing is pending */
    uint32_t issued;               /* highest version ever issued */
    int want;                      /* OTK_WANT_* */
    int64_t last_seen_ms;          /* wall clock of the record's last change */
} otk_device_info;

/* Longest actor an audit row names ("api:NAME", "cli:USER"). */
#define OTK_ACTOR_MAX 63

typedef struct otk_audit_row {
    uint64_t seq;
    int64_t ts_ms;                 /* wall clock */
    otk_audit ev;
    char actor[OTK_ACTOR_MAX + 1]; /* who asked for it; "" for a device's messages */
} otk_audit_row;

/* Row callbacks: the row is valid during the call only; nonzero stops the walk. */
typedef int (*otk_batch_fn)(void *user, const otk_batch_info *b);
typedef int (*otk_device_fn)(void *user, const otk_device_info *d);
typedef int (*otk_audit_fn)(void *user, const otk_audit_row *r);

/* Batches in batch id order. */
OTK_CHECK_RETURN otk_status otk_store_list_batches(otk_store *s, otk_batch_fn fn, void *user);

/* Devices in id order: all, or only id when id != NULL, or only those in
 * state when state != 0. */
OTK_CHECK_RETURN otk_status otk_store_list_devices(otk_store *s, const uint8_t *id, int state,
                                                   otk_device_fn fn, void *user);

/* Devices in id order after the id `after` (all when NULL), in state when
 * state != 0; the callback stops the walk (a page). */
OTK_CHECK_RETURN otk_status otk_store_list_devices_after(otk_store *s, const uint8_t *after,
                                                         int state, otk_device_fn fn, void *user);

/* ---- audit log (append-only, hash-chained; see sqlreg.h) ---- */

/*
 * Names who the audit rows this store writes from now on act for (an
 * operator's tool: "cli:USER", "api:TOKEN-NAME"; at most OTK_ACTOR_MAX
 * bytes, longer is cut). The name is part of the row's hash. NULL or "":
 * none (the agent's own rows).
 */
void otk_store_set_actor(otk_store *s, const char *actor);

/* Rows with a sequence number above after, in order (the callback stops the walk). */
OTK_CHECK_RETURN otk_status otk_store_audit_list_after(otk_store *s, uint64_t after,
                                                       otk_audit_fn fn, void *user);

/* OTK_OK with *rows when the chain verifies; OTK_ERR_CORRUPT with *bad_seq. */
OTK_CHECK_RETURN otk_status otk_store_audit_verify(otk_store *s, uint64_t *rows,
                                                   uint64_t *bad_seq);
/* Rows of one kind (0: all); 0 on a database error. */
uint64_t otk_store_audit_count(otk_store *s, int kind);
/* Rows in sequence order. */
OTK_CHECK_RETURN otk_status otk_store_audit_list(otk_store *s, otk_audit_fn fn, void *user);

/*
 * Claims up to max devices whose update offer is due (see
 * otk_sqlreg_due_notifications) and marks them notified now. Across agents
 * sharing a PostgreSQL store a device is handed to one of them per resend
 * period. Returns the count (0 on a database error).
 */
size_t otk_store_due_notifications(otk_store *s, uint8_t (*ids)[16], size_t max,
                                   unsigned resend_ms);

/*
 * The broker had no subscriber for these devices' update offers: they
 * sleep (a device subscribes to its topic on each connection). Their next
 * offer is due hold_ms from now instead of resend_ms (at least resend_ms);
 * meanwhile a device's own poll gets its update, and a request that changes
 * its row (its update issued) ends the wait. Devices with no offer pending
 * are left alone. Returns how many were held (0 on a database error).
 */
size_t otk_store_hold_offers(otk_store *s, const uint8_t (*ids)[16], size_t n, unsigned resend_ms,
                             unsigned hold_ms);

/*
 * Claims up to max revoked devices whose cloud clients are still to delete
 * (want OTK_WANT_CLEANUP) and not tried in the last retry_ms, and marks them
 * tried now; the caller runs otk_agent_cleanup on each. Returns the count
 * (0 on a database error).
 */
size_t otk_store_due_cleanups(otk_store *s, uint8_t (*ids)[16], size_t max, unsigned retry_ms);

/* ---- campaigns (semantics in campaign.h) ---- */

OTK_CHECK_RETURN otk_status otk_store_campaign_create(otk_store *s, int kind,
                                                      uint32_t target_cloud, const char *selector,
                                                      uint32_t rate, uint32_t canary,
                                                      uint32_t max_failures, int64_t *id,
                                                      uint64_t *total);
/*
 * One engine step with agent a (whose registry must be this store's). On
 * PostgreSQL, a campaign is stepped by one agent at a time (the others skip
 * it for this step) and each device is started once even if an agent dies
 * between requesting its update and recording the start. Offers made with
 * the starts (offers, max_offers, *n_offers) as in otk_campaign_step; on
 * PostgreSQL none (*n_offers 0): its devices wait for the notify pass.
 */
size_t otk_store_campaign_step(otk_store *s, otk_agent *a, otk_offer *offers, size_t max_offers,
                               size_t *n_offers);
/*
 * A device that polled and had nothing waiting: started now if a running
 * campaign includes it, has not started it, and its rate allows one more
 * device at this moment (the poll takes a slot; campaign.h). 1 when
 * started: the caller handles the poll again and the device gets its
 * update on this poll. On PostgreSQL the campaign is locked as a step locks
 * it (a campaign another agent is stepping skips this).
 */
int otk_store_campaign_poll(otk_store *s, otk_agent *a, const uint8_t id[16]);
OTK_CHECK_RETURN otk_status otk_store_campaign_get(otk_store *s, int64_t id,
                                                   otk_campaign_status *st);
OTK_CHECK_RETURN otk_status otk_store_campaign_set_state(otk_store *s, int64_t id, int state);
size_t otk_store_campaign_list(otk_store *s, int64_t *ids, size_t max);
/* The failed devices of a campaign with their reasons (campaign.h). */
OTK_CHECK_RETURN otk_status otk_store_campaign_failures(otk_store *s, int64_t id,
                                                        otk_campaign_failure_fn fn, void *user);

#ifdef __cplusplus
}
#endif
#endif
