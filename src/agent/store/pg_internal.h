/* Shared by the PostgreSQL backend's files (registry, campaigns). */
#ifndef OTK_PG_INTERNAL_H
#define OTK_PG_INTERNAL_H

#include <libpq-fe.h>

#include "store_internal.h"

/*
 * A connection and the statements prepared on it (by the address of their
 * SQL text: the queries are string constants). Emptied whenever the
 * connection is made again, since the server forgets them then.
 */
#define PREP_MAX 64
typedef struct pgconn {
    PGconn *c;
    const char *prepared[PREP_MAX];
    int n;
    char sqlstate[6]; /* of the last statement pg_run saw fail ("" none) */
} pgconn;

typedef struct pgstore {
    pgconn db;          /* registry, listings, operator changes */
    pgconn work;        /* campaign work claims (opened on first use) */
    char *conninfo;
    const otk_crypto *crypto;
    int locked;         /* a registry read opened a transaction holding a device lock */
    int64_t lock_key;
    char actor[64];     /* named by the audit rows written ("" none) */
} pgstore;

/* Appends one audit row chained to the head (inside c's open transaction). */
otk_status pg_append_audit(pgstore *s, pgconn *c, const otk_audit *ev);

/* Query parameters: integers and text sent as text, blobs as binary. */
#define PGQ_MAX 32
typedef struct pgq {
    int n;
    const char *v[PGQ_MAX];
    int len[PGQ_MAX];
    int fmt[PGQ_MAX];
    char num[PGQ_MAX][24];
} pgq;

void pq_int(pgq *q, int64_t v);
void pq_text(pgq *q, const char *s);
void pq_blob(pgq *q, const void *p, size_t n);
void pq_null(pgq *q);

/*
 * Runs sql with q (may be NULL) on c as a prepared statement, results in binary. Returns the result
 * when its status is PGRES_TUPLES_OK or PGRES_COMMAND_OK, else NULL (the
 * error is cleared). The caller PQclear()s it.
 */
PGresult *pg_run(pgconn *c, const char *sql, const pgq *q);
/* Whether the last failure of pg_run on c was a deadlock or a serialization
 * failure: the transaction lost to another, and may be run again. */
int pg_conflict(const pgconn *c);
/* PQreset with the prepared statements forgotten; 1 when connected again. */
int pg_reset(pgconn *c);
/* Runs a command without parameters; OTK_OK or OTK_ERR_STORAGE. */
otk_status pg_exec(PGconn *c, const char *sql);
/* Binary column readers: integer of any width; blob of exactly n bytes (1) or not (0). */
int64_t pg_int(const PGresult *r, int row, int col);
int pg_blob(const PGresult *r, int row, int col, void *dst, size_t n);
int pg_null(const PGresult *r, int row, int col);

/* Ends the registry transaction, if any (commit; rollback after an error). */
otk_status pg_release(void *impl);

/* Campaigns and notification claims (campaign_pg.c). */
otk_status pgc_create(void *impl, int kind, uint32_t target_cloud, const char *selector,
                      uint32_t rate, uint32_t canary, uint32_t max_failures, int64_t *id,
                      uint64_t *total);
size_t pgc_step(void *impl, otk_agent *a, otk_offer *offers, size_t max_offers, size_t *n_offers);
int pgc_poll(void *impl, otk_agent *a, const uint8_t id[16]);
otk_status pgc_get(void *impl, int64_t id, otk_campaign_status *st);
otk_status pgc_set_state(void *impl, int64_t id, int state);
size_t pgc_list(void *impl, int64_t *ids, size_t max);
size_t pgc_due(void *impl, uint8_t (*ids)[16], size_t max, unsigned resend_ms);
otk_status pgc_failures(void *impl, int64_t id, otk_campaign_failure_fn fn, void *user);
size_t pgc_due_cleanups(void *impl, uint8_t (*ids)[16], size_t max, unsigned retry_ms);
size_t pgc_hold_offers(void *impl, const uint8_t (*ids)[16], size_t n, unsigned resend_ms,
                       unsigned hold_ms);

#endif
