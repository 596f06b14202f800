/*
 * The PostgreSQL backend of the store (include/otakey/store.h): schema,
 * registry, audit chain and listings. Campaigns are in campaign_pg.c.
 *
 * Several agent processes share the database, so the schema carries the
 * invariants itself: a device id is one primary-key row, its issued
 * version never goes back and a pending version is always a new one
 * (trigger), a version is issued to a device at most once (unique index
 * over the audit log's issue events), and the audit log refuses UPDATE,
 * DELETE and TRUNCATE. Isolation is READ COMMITTED with explicit locks:
 * a device is serialised across agents by a transaction-level advisory
 * lock on its id (taken before the row exists, so two first claims of one
 * id cannot both run) plus FOR NO KEY UPDATE on its row, and the audit
 * chain by FOR UPDATE on its single head row, so appends from every agent
 * form one chain.
 */
#include "../internal.h"

#include <time.h>

#include "pg_internal.h"

#define PG_SCHEMA_VERSION 1
/* pg_advisory_xact_lock(int, int) key for schema migrations. */
#define MIGRATE_LOCK "pg_advisory_xact_lock(1869900645, 1)"

static const char *const migrations[] = {
    "CREATE TABLE batches(batch_id bytea PRIMARY KEY CHECK (length(batch_id) = 8),"
    "  product text NOT NULL, pk bytea NOT NULL CHECK (length(pk) = 32), created bigint NOT NULL);"
    "CREATE TABLE devices(id bytea PRIMARY KEY CHECK (length(id) = 16),"
    "  batch_id bytea NOT NULL REFERENCES batches(batch_id),"
    "  state bigint NOT NULL CHECK (state IN (1, 2, 3)), reclaim bigint NOT NULL,"
    "  issued bigint NOT NULL CHECK (issued >= 0), want bigint NOT NULL, want_cloud bigint NOT NULL,"
    "  c_version bigint, c_ak bytea, c_cloud bigint, c_host text, c_port bigint, c_flags bigint,"
    "  c_user text, c_secret_hash bytea,"
    "  p_version bigint, p_claim bigint, p_keyset bytea, p_th bytea, p_resp bytea,"
    "  stale_cloud bigint, stale_user text, notified_at bigint, updated bigint NOT NULL,"
    "  CHECK (c_version IS NULL OR c_version <= issued),"
    "  CHECK (p_version IS NULL OR p_version <= issued));"
    "CREATE INDEX devices_batch ON devices(batch_id);"
    "CREATE INDEX devices_due ON devices(notified_at)"
    "  WHERE state = 2 AND (want <> 0 OR p_version IS NOT NULL);"
    "CREATE FUNCTION otk_devices_guard() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    "  IF NEW.issued < OLD.issued THEN"
    "    RAISE EXCEPTION 'device %: issued version would go back from % to %',"
    "      encode(OLD.id, 'hex'), OLD.issued, NEW.issued;"
    "  END IF;"
    "  IF NEW.p_version IS NOT NULL AND NEW.p_version IS DISTINCT FROM OLD.p_version"
    "     AND NEW.p_version <= OLD.issued THEN"
    "    RAISE EXCEPTION 'device %: version % was issued before', encode(OLD.id, 'hex'),"
    "      NEW.p_version;"
    "  END IF;"
    "  RETURN NEW; END $$;"
    "CREATE TRIGGER devices_guard BEFORE UPDATE ON devices FOR EACH ROW"
    "  EXECUTE FUNCTION otk_devices_guard();"
    "CREATE TABLE audit(seq bigint PRIMARY KEY, ts bigint NOT NULL, kind bigint NOT NULL,"
    "  msg_type bigint NOT NULL, device bytea, version bigint NOT NULL, code bigint NOT NULL,"
    "  hash bytea NOT NULL);"
    "CREATE INDEX audit_device ON audit(device);"
    /* kinds 1 and 4: CLAIM_ISSUED, UPDATE_ISSUED */
    "CREATE UNIQUE INDEX audit_issued_once ON audit(device, version) WHERE kind IN (1, 4);"
    "CREATE TABLE audit_head(one bigint PRIMARY KEY CHECK (one = 1), seq bigint NOT NULL,"
    "  hash bytea NOT NULL);"
    "INSERT INTO audit_head VALUES (1, 0, decode(repeat('00', 32), 'hex'));"
    "CREATE FUNCTION otk_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    "  RAISE EXCEPTION 'audit log is append-only'; END $$;"
    "CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit FOR EACH ROW"
    "  EXECUTE FUNCTION otk_append_only();"
    "CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit FOR EACH STATEMENT"
    "  EXECUTE FUNCTION otk_append_only();"
    /* n_*: counters kept by the steps, so a step costs what is in flight, not
     * the campaign's size; finished: 1 done, 2 failed, NULL in flight. */
    "CREATE TABLE campaigns(id bigserial PRIMARY KEY, kind bigint NOT NULL,"
    "  target_cloud bigint NOT NULL, selector text NOT NULL, rate bigint NOT NULL CHECK (rate > 0),"
    "  canary bigint NOT NULL, state bigint NOT NULL, total bigint NOT NULL, created bigint NOT NULL,"
    "  n_started bigint NOT NULL DEFAULT 0, n_done bigint NOT NULL DEFAULT 0,"
    "  n_failed bigint NOT NULL DEFAULT 0);"
    "CREATE TABLE campaign_devices(campaign bigint NOT NULL REFERENCES campaigns(id),"
    "  device bytea NOT NULL, base_version bigint NOT NULL, started bigint, ord bigserial,"
    "  finished bigint CHECK (finished IN (1, 2)), PRIMARY KEY (campaign, device));"
    "CREATE INDEX campaign_todo ON campaign_devices(campaign, ord) WHERE started IS NULL;"
    "CREATE INDEX campaign_inflight ON campaign_devices(campaign)"
    "  WHERE started IS NOT NULL AND finished IS NULL;",
    /* 2: revoked devices whose cloud clients are still to delete (want 3). */
    "CREATE INDEX devices_cleanup ON devices(notified_at) WHERE want = 3;",
    /* 3: why a device failed in a campaign (an otk_status; campaign.h). */
    "ALTER TABLE campaign_devices ADD COLUMN reason bigint;",
    /* 4: protocol version 2 (docs/protocol.md §11): the version a device
     * authenticated with, the kinds of its sets, the key a pending
     * certificate is for and its serial (the certificate is in p_keyset). */
    "ALTER TABLE devices ADD COLUMN proto bigint, ADD COLUMN c_kind bigint,"
    " ADD COLUMN p_kind bigint, ADD COLUMN p_dpub bytea, ADD COLUMN p_serial text;",
    /* 5: who an operator's audit row acts for (part of its hash); campaigns
     * that pause themselves on failures, and why a campaign is paused. */
    "ALTER TABLE audit ADD COLUMN actor text;"
    "ALTER TABLE campaigns ADD COLUMN max_failures bigint NOT NULL DEFAULT 0,"
    " ADD COLUMN pause_reason bigint, ADD COLUMN failures_base bigint NOT NULL DEFAULT 0;",
    /* 6: a polling device's campaign, found by the device (pgc_poll). */
    "CREATE INDEX campaign_devices_todo ON campaign_devices(device) WHERE started IS NULL;",
    /* 7: a request is answered (want 0) when its set is issued, no longer
     * when it is committed, so that one made while a set is pending stays;
     * the requests of sets pending now were answered. */
    "UPDATE devices SET want = 0, want_cloud = 0 WHERE p_version IS NOT NULL AND want IN (1, 2);",
    /* 8: the audit row up to which a campaign's outcomes are recorded: a
     * step looks at the devices audited since, not at every device in
     * flight (at a million devices, mostly asleep, that was a scan a step). */
    "ALTER TABLE campaigns ADD COLUMN settled_seq bigint NOT NULL DEFAULT 0;",
};
#define N_MIGRATIONS (sizeof migrations / sizeof migrations[0])

/* ---- libpq helpers ---- */

static void pq_add(pgq *q, const char *v, int len, int fmt)
{
    if (q->n >= PGQ_MAX)
        abort(); /* a programming error: the queries are fixed */
    q->v[q->n] = v;
    q->len[q->n] = len;
    q->fmt[q->n] = fmt;
    q->n++;
}

void pq_int(pgq *q, int64_t v)
{
    if (q->n >= PGQ_MAX)
        abort();
    snprintf(q->num[q->n], sizeof q->num[0], "%lld", (long long)v);
    pq_add(q, q->num[q->n], 0, 0);
}

void pq_text(pgq *q, const char *s)
{
    pq_add(q, s, 0, 0);
}

void pq_blob(pgq *q, const void *p, size_t n)
{
    pq_add(q, p, (int)n, 1);
}

void pq_null(pgq *q)
{
    pq_add(q, NULL, 0, 0);
}

/* A statement is prepared on first use (parse and plan once per connection). */
static int prepare(pgconn *c, const char *sql, const pgq *q)
{
    PGresult *r;
    char name[16];
    int i, ok;
    for (i = 0; i < c->n; i++)
        if (c->prepared[i] == sql)
            return i;
    if (c->n == PREP_MAX)
        return -1;
    snprintf(name, sizeof name, "otk%d", c->n);
    r = PQprepare(c->c, name, sql, q ? q->n : 0, NULL);
    ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok)
        return -2;
    c->prepared[c->n] = sql;
    return c->n++;
}

PGresult *pg_run(pgconn *c, const char *sql, const pgq *q)
{
    PGresult *r;
    ExecStatusType st;
    int i = PQtransactionStatus(c->c) == PQTRANS_INERROR ? -2 : prepare(c, sql, q);
    if (i == -2) /* the statement or the transaction is bad: the call fails */
        return NULL;
    if (i >= 0) {
        char name[16];
        snprintf(name, sizeof name, "otk%d", i);
        r = PQexecPrepared(c->c, name, q ? q->n : 0, q ? q->v : NULL, q ? q->len : NULL,
                           q ? q->fmt : NULL, 1);
    } else {
        r = PQexecParams(c->c, sql, q ? q->n : 0, NULL, q ? q->v : NULL, q ? q->len : NULL,
                         q ? q->fmt : NULL, 1);
    }
    st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        return r;
    {
        const char *code = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
        snprintf(c->sqlstate, sizeof c->sqlstate, "%s", code != NULL ? code : "");
    }
    PQclear(r);
    return NULL;
}

int pg_conflict(const pgconn *c)
{
    return !strcmp(c->sqlstate, "40P01") || !strcmp(c->sqlstate, "40001");
}

int pg_reset(pgconn *c)
{
    c->n = 0;
    PQreset(c->c);
    return PQstatus(c->c) == CONNECTION_OK;
}

otk_status pg_exec(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    otk_status st = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK
                        ? OTK_OK
                        : OTK_ERR_STORAGE;
    PQclear(r);
    return st;
}

int64_t pg_int(const PGresult *r, int row, int col)
{
    const uint8_t *p = (const uint8_t *)PQgetvalue(r, row, col);
    int n = PQgetlength(r, row, col), i;
    uint64_t v;
    if (PQgetisnull(r, row, col) || n < 1 || n > 8)
        return 0;
    /* Big-endian two's complement of 1 (bool), 2, 4 or 8 bytes. */
    v = (p[0] & 0x80) && n > 1 ? ~(uint64_t)0 : 0;
    for (i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return (int64_t)v;
}

int pg_blob(const PGresult *r, int row, int col, void *dst, size_t n)
{
    if (PQgetisnull(r, row, col) || (size_t)PQgetlength(r, row, col) != n)
        return 0;
    memcpy(dst, PQgetvalue(r, row, col), n);
    return 1;
}

int pg_null(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A lost server connection is retried once per call; the call itself fails. */
static otk_status ready(pgstore *s)
{
    if (PQstatus(s->db.c) == CONNECTION_OK)
        return OTK_OK;
    s->locked = 0;
    return pg_reset(&s->db) ? OTK_OK : OTK_ERR_STORAGE;
}

otk_status pg_release(void *impl)
{
    pgstore *s = impl;
    PGTransactionStatusType t = PQtransactionStatus(s->db.c);
    otk_status st = OTK_OK;
    s->locked = 0;
    if (t == PQTRANS_INTRANS)
        st = pg_exec(s->db.c, "COMMIT");
    else if (t == PQTRANS_INERROR) { /* a statement failed: nothing of it is kept */
        (void)pg_exec(s->db.c, "ROLLBACK");
        st = OTK_ERR_STORAGE;
    }
    else if (t != PQTRANS_IDLE)
        st = ready(s);
    return st;
}

static void rollback(pgstore *s)
{
    if (PQtransactionStatus(s->db.c) != PQTRANS_IDLE)
        (void)pg_exec(s->db.c, "ROLLBACK");
    s->locked = 0;
}

/* Opens a transaction holding the advisory lock of a device id. */
static otk_status lock_device(pgstore *s, int64_t key)
{
    char sql[96];
    snprintf(sql, sizeof sql, "BEGIN; SELECT pg_advisory_xact_lock(%lld)", (long long)key);
    if (pg_exec(s->db.c, sql) != OTK_OK) {
        rollback(s);
        return OTK_ERR_STORAGE;
    }
    s->locked = 1;
    s->lock_key = key;
    return OTK_OK;
}

/*
 * The advisory lock key of a device: FNV-1a over the whole id. Ids are often
 * a shared prefix and a serial number, so a slice of them would put every
 * device of a batch on one lock; equal keys only serialise, never corrupt.
 */
static int64_t id_key(const uint8_t id[16])
{
    uint64_t k = 0xcbf29ce484222325u;
    int i;
    for (i = 0; i < 16; i++)
        k = (k ^ id[i]) * 0x100000001b3u;
    return (int64_t)k;
}

/* ---- registry (otk_registry of agent.h) ---- */

static otk_status pr_get_batch(void *ctx, const uint8_t batch_id[8], uint8_t pk[32])
{
    pgstore *s = ctx;
    pgq q = {0};
    PGresult *r;
    otk_status st;
    OTK_TRY(ready(s));
    pq_blob(&q, batch_id, OTK_BATCH_ID_LEN);
    r = pg_run(&s->db, "SELECT pk FROM batches WHERE batch_id = $1", &q);
    if (r == NULL)
        return OTK_ERR_STORAGE;
    st = PQntuples(r) == 0 ? OTK_ERR_UNKNOWN_BATCH : pg_blob(r, 0, 0, pk, 32) ? OTK_OK : OTK_ERR_CORRUPT;
    PQclear(r);
    return st;
}

static otk_status decode_device(const PGresult *r, otk_agent_device *d)
{
    const char *host, *user;
    if (!pg_blob(r, 0, 0, d->batch_id, OTK_BATCH_ID_LEN))
        return OTK_ERR_CORRUPT;
    d->state = (uint8_t)pg_int(r, 0, 1);
    d->reclaim_allowed = (uint8_t)pg_int(r, 0, 2);
    d->issued_version = (uint32_t)pg_int(r, 0, 3);
    d->want = (uint8_t)pg_int(r, 0, 4);
    d->want_cloud = (uint32_t)pg_int(r, 0, 5);
    if (!pg_null(r, 0, 6)) {
        d->has_committed = 1;
        d->committed.version = (uint32_t)pg_int(r, 0, 6);
        host = PQgetvalue(r, 0, 9);
        user = PQgetvalue(r, 0, 12);
        if (!pg_blob(r, 0, 7, d->committed.ak, OTK_AK_LEN) || pg_null(r, 0, 9) ||
            pg_null(r, 0, 12) || PQgetlength(r, 0, 9) > (int)OTK_HOST_MAX ||
            PQgetlength(r, 0, 12) > (int)OTK_USER_MAX)
            return OTK_ERR_CORRUPT;
        d->committed.cloud.cloud_id = (uint32_t)pg_int(r, 0, 8);
        d->committed.cloud.port = (uint16_t)pg_int(r, 0, 10);
        d->committed.cloud.flags = (uint8_t)pg_int(r, 0, 11);
        d->committed.cloud.host_len = (uint8_t)PQgetlength(r, 0, 9);
        d->committed.cloud.user_len = (uint8_t)PQgetlength(r, 0, 12);
        memcpy(d->committed.cloud.host, host, d->committed.cloud.host_len);
        memcpy(d->committed.cloud.user, user, d->committed.cloud.user_len);
    }
    d->proto = (uint8_t)(pg_null(r, 0, 20) ? 0 : pg_int(r, 0, 20));
    if (d->has_committed)
        d->committed.kind = !pg_null(r, 0, 21) && pg_int(r, 0, 21) == OTK_KIND_CERT
                                ? OTK_KIND_CERT
                                : OTK_KIND_PASSWORD;
    if (!pg_null(r, 0, 13)) {
        int n = PQgetlength(r, 0, 17);
        int kind = pg_null(r, 0, 22) ? 0 : (int)pg_int(r, 0, 22);
        d->has_pending = 1;
        d->pending_claim = (uint8_t)pg_int(r, 0, 14);
        if (otk_agent_pending_decode(d, kind, (const uint8_t *)PQgetvalue(r, 0, 15),
                                     (size_t)PQgetlength(r, 0, 15),
                                     pg_null(r, 0, 24) ? NULL : PQgetvalue(r, 0, 24)) != OTK_OK ||
            (kind == OTK_KIND_CERT && !pg_blob(r, 0, 23, d->pending_dpub, OTK_PUB_LEN)) ||
            !pg_blob(r, 0, 16, d->pending_th, OTK_HASH_LEN) || n < 0 ||
            (size_t)n > sizeof d->pending_resp)
            return OTK_ERR_CORRUPT;
        d->pending.version = (uint32_t)pg_int(r, 0, 13);
        memcpy(d->pending_resp, PQgetvalue(r, 0, 17), (size_t)n);
        d->pending_resp_len = (uint16_t)n;
    }
    if (!pg_null(r, 0, 19)) {
        if (PQgetlength(r, 0, 19) > (int)OTK_USER_MAX)
            return OTK_ERR_CORRUPT;
        d->has_stale = 1;
        d->stale_cloud = (uint32_t)pg_int(r, 0, 18);
        memcpy(d->stale_user, PQgetvalue(r, 0, 19), (size_t)PQgetlength(r, 0, 19));
    }
    return OTK_OK;
}

/*
 * Reads a device and keeps it locked (advisory lock + row lock) until the
 * next put_device commits or the caller releases the store: a second agent
 * handling the same device waits, then reads what the first one wrote.
 */
static otk_status pr_get_device(void *ctx, const uint8_t id[16], otk_agent_device *d)
{
    pgstore *s = ctx;
    pgq q = {0};
    PGresult *r;
    otk_status st;
    OTK_TRY(ready(s));
    if (!s->locked || s->lock_key != id_key(id)) {
        OTK_TRY(pg_release(s)); /* a previous read nobody released */
        OTK_TRY(lock_device(s, id_key(id)));
    }
    pq_blob(&q, id, OTK_DEVICE_ID_LEN);
    r = pg_run(&s->db,
               "SELECT batch_id, state, reclaim, issued, want, want_cloud, c_version, c_ak, c_cloud,"
               " c_host, c_port, c_flags, c_user, p_version, p_claim, p_keyset, p_th, p_resp,"
               " stale_cloud, stale_user, proto, c_kind, p_kind, p_dpub, p_serial"
               " FROM devices WHERE id = $1 FOR NO KEY UPDATE",
               &q);
    if (r == NULL) {
        rollback(s);
        return OTK_ERR_STORAGE;
    }
    if (PQntuples(r) == 0) {
        PQclear(r);
        return OTK_ERR_NOT_FOUND;
    }
    memset(d, 0, sizeof *d);
    memcpy(d->id, id, OTK_DEVICE_ID_LEN);
    st = decode_device(r, d);
    PQclear(r);
    if (st != OTK_OK)
        otk_wipe(d, sizeof *d);
    return st;
}

/* Appends one audit row chained to the head (inside c's open transaction). */
otk_status pg_append_audit(pgstore *s, pgconn *c, const otk_audit *ev)
{
    pgq q = {0};
    PGresult *r;
    uint8_t prev[32], hash[32];
    uint64_t seq;
    int64_t ts = now_ms();
    /* The head row lock serialises appends of every agent into one chain. */
    r = pg_run(c, "SELECT seq, hash FROM audit_head WHERE one = 1 FOR UPDATE", NULL);
    if (r == NULL)
        return OTK_ERR_STORAGE;
    if (PQntuples(r) != 1 || !pg_blob(r, 0, 1, prev, 32)) {
        PQclear(r);
        return OTK_ERR_CORRUPT;
    }
    seq = (uint64_t)pg_int(r, 0, 0) + 1;
    PQclear(r);
    OTK_TRY(otk_audit_link(s->crypto, prev, seq, ts, ev, s->actor, hash));
    pq_int(&q, (int64_t)seq);
    pq_int(&q, ts);
    pq_int(&q, ev->kind);
    pq_int(&q, ev->msg_type);
    if (ev->has_id)
        pq_blob(&q, ev->id, OTK_DEVICE_ID_LEN);
    else
        pq_null(&q);
    pq_int(&q, ev->version);
    pq_int(&q, ev->code);
    pq_blob(&q, hash, 32);
    if (s->actor[0])
        pq_text(&q, s->actor);
    else
        pq_null(&q);
    r = pg_run(c,
               "WITH a AS (INSERT INTO audit(seq, ts, kind, msg_type, device, version, code, hash,"
               " actor) VALUES ($1, $2, $3, $4, $5::bytea, $6, $7, $8, $9::text) RETURNING seq)"
               " UPDATE audit_head SET seq = $1, hash = $8 WHERE one = 1 AND seq = $1::bigint - 1",
               &q);
    if (r == NULL)
        return OTK_ERR_STORAGE;
    seq = strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    return seq ? OTK_OK : OTK_ERR_CORRUPT;
}

static otk_status append_audit(pgstore *s, const otk_audit *ev)
{
    return pg_append_audit(s, &s->db, ev);
}

static otk_status write_device(pgstore *s, const otk_agent_device *d)
{
    pgq q = {0};
    PGresult *r;
    uint8_t ks[OTK_KEYSET2_MAX_LEN], secret_hash[32];
    size_t ks_len = 0;
    otk_status st = OTK_OK;
    pq_blob(&q, d->id, OTK_DEVICE_ID_LEN);
    pq_blob(&q, d->batch_id, OTK_BATCH_ID_LEN);
    pq_int(&q, d->state);
    pq_int(&q, d->reclaim_allowed);
    pq_int(&q, d->issued_version);
    pq_int(&q, d->want);
    pq_int(&q, d->want_cloud);
    if (d->has_committed) {
        pq_int(&q, d->committed.version);
        pq_blob(&q, d->committed.ak, OTK_AK_LEN);
        pq_int(&q, d->committed.cloud.cloud_id);
        pq_text(&q, d->committed.cloud.host);
        pq_int(&q, d->committed.cloud.port);
        pq_int(&q, d->committed.cloud.flags);
        pq_text(&q, d->committed.cloud.user);
        if (d->committed.cloud.secret_len) {
            otk_iov io;
            io.p = d->committed.cloud.secret;
            io.n = d->committed.cloud.secret_len;
            st = s->crypto->sha256(s->crypto->ctx, &io, 1, secret_hash);
            pq_blob(&q, secret_hash, 32);
        } else {
            pq_null(&q);
        }
    } else {
        int i;
        for (i = 0; i < 8; i++)
            pq_null(&q);
    }
    if (st == OTK_OK && d->has_pending) {
        st = otk_agent_pending_encode(d, ks, sizeof ks, &ks_len);
        pq_int(&q, d->pending.version);
        pq_int(&q, d->pending_claim);
        pq_blob(&q, ks, ks_len);
        pq_blob(&q, d->pending_th, OTK_HASH_LEN);
        pq_blob(&q, d->pending_resp, d->pending_resp_len);
    } else {
        int i;
        for (i = 0; i < 5; i++)
            pq_null(&q);
    }
    if (d->has_stale) {
        pq_int(&q, d->stale_cloud);
        pq_text(&q, d->stale_user);
    } else {
        pq_null(&q);
        pq_null(&q);
    }
    pq_int(&q, now_ms());
    /* $24..$28: version 2 (proto, c_kind, p_kind, p_dpub, p_serial) */
    if (d->proto)
        pq_int(&q, d->proto);
    else
        pq_null(&q);
    if (d->has_committed && d->committed.kind == OTK_KIND_CERT)
        pq_int(&q, OTK_KIND_CERT);
    else
        pq_null(&q);
    if (d->has_pending && d->pending.kind == OTK_KIND_CERT) {
        pq_int(&q, OTK_KIND_CERT);
        pq_blob(&q, d->pending_dpub, OTK_PUB_LEN);
        pq_text(&q, d->pending.cloud.user);
    } else {
        pq_null(&q);
        pq_null(&q);
        pq_null(&q);
    }
    if (st == OTK_OK) {
        /* As in SQLite: the secret hash stays while the user does; the
         * notification mark stays while the request does. */
        r = pg_run(&s->db,
                   "INSERT INTO devices AS o(id, batch_id, state, reclaim, issued, want, want_cloud,"
                   " c_version, c_ak, c_cloud, c_host, c_port, c_flags, c_user, c_secret_hash,"
                   " p_version, p_claim, p_keyset, p_th, p_resp, stale_cloud, stale_user, updated,"
                   " proto, c_kind, p_kind, p_dpub, p_serial)"
                   " VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9::bytea,$10,$11,$12,$13,$14,$15::bytea,$16,$17,"
                   "$18::bytea,$19::bytea,$20::bytea,$21,$22,$23,$24,$25,$26,$27::bytea,$28)"
                   " ON CONFLICT(id) DO UPDATE SET batch_id = excluded.batch_id,"
                   " state = excluded.state, reclaim = excluded.reclaim, issued = excluded.issued,"
                   " want = excluded.want, want_cloud = excluded.want_cloud,"
                   " c_version = excluded.c_version, c_ak = excluded.c_ak,"
                   " c_cloud = excluded.c_cloud, c_host = excluded.c_host,"
                   " c_port = excluded.c_port, c_flags = excluded.c_flags, c_user = excluded.c_user,"
                   " c_secret_hash = CASE WHEN excluded.c_secret_hash IS NOT NULL"
                   "   THEN excluded.c_secret_hash"
                   "   WHEN excluded.c_user IS NOT DISTINCT FROM o.c_user THEN o.c_secret_hash END,"
                   " p_version = excluded.p_version, p_claim = excluded.p_claim,"
                   " p_keyset = excluded.p_keyset, p_th = excluded.p_th, p_resp = excluded.p_resp,"
                   " stale_cloud = excluded.stale_cloud, stale_user = excluded.stale_user,"
                   " updated = excluded.updated, proto = excluded.proto, c_kind = excluded.c_kind,"
                   " p_kind = excluded.p_kind, p_dpub = excluded.p_dpub, p_serial = excluded.p_serial,"
                   " notified_at = CASE WHEN excluded.p_version IS NOT NULL AND o.p_version IS NULL"
                   "   THEN excluded.updated WHEN excluded.want = o.want THEN o.notified_at END",
                   &q);
        st = r ? OTK_OK : OTK_ERR_STORAGE;
        PQclear(r);
    }
    otk_wipe(ks, sizeof ks);
    otk_wipe(q.num, sizeof q.num);
    return st;
}

/*
 * Writes the device and its audit row in one transaction and commits it.
 * If a read had locked the device, the lock is taken again at once so the
 * rest of the message's handling stays serialised.
 */
static otk_status pr_put_device(void *ctx, const otk_agent_device *d, const otk_audit *ev)
{
    pgstore *s = ctx;
    int relock = s->locked;
    int64_t key = s->lock_key;
    otk_status st;
    OTK_TRY(ready(s));
    if (d != NULL && s->locked && key != id_key(d->id)) {
        OTK_TRY(pg_release(s));
        relock = 0;
    }
    if (PQtransactionStatus(s->db.c) == PQTRANS_IDLE) {
        st = d ? lock_device(s, id_key(d->id)) : pg_exec(s->db.c, "BEGIN");
        if (st != OTK_OK)
            return OTK_ERR_BUSY;
        if (d) {
            relock = 0;
            key = id_key(d->id);
        }
    }
    st = d ? write_device(s, d) : OTK_OK;
    if (st == OTK_OK && ev != NULL)
        st = append_audit(s, ev);
    if (st == OTK_OK)
        st = pg_exec(s->db.c, "COMMIT");
    if (st != OTK_OK) {
        rollback(s);
        return st;
    }
    s->locked = 0;
    if (relock)
        (void)lock_device(s, key);
    return OTK_OK;
}

/* An event on its own: inside the open transaction if a read holds one. */
static otk_status pr_audit(void *ctx, const otk_audit *ev)
{
    pgstore *s = ctx;
    otk_status st;
    OTK_TRY(ready(s));
    if (PQtransactionStatus(s->db.c) == PQTRANS_INTRANS)
        return append_audit(s, ev);
    if (pg_exec(s->db.c, "BEGIN") != OTK_OK)
        return OTK_ERR_STORAGE;
    st = append_audit(s, ev);
    if (st == OTK_OK)
        st = pg_exec(s->db.c, "COMMIT");
    if (st != OTK_OK)
        rollback(s);
    return st;
}

static void p_bind(void *impl, otk_registry *out)
{
    memset(out, 0, sizeof *out);
    out->ctx = impl;
    out->get_batch = pr_get_batch;
    out->get_device = pr_get_device;
    out->put_device = pr_put_device;
    out->audit = pr_audit;
}

/* ---- operator calls and listings ---- */

static otk_status p_add_batch(void *impl, const uint8_t batch_id[8], const char *product,
                              const uint8_t pk[32])
{
    pgstore *s = impl;
    pgq q = {0};
    PGresult *r;
    int added;
    OTK_TRY(pg_release(s));
    pq_blob(&q, batch_id, 8);
    pq_text(&q, product);
    pq_blob(&q, pk, 32);
    pq_int(&q, now_ms());
    r = pg_run(&s->db,
               "INSERT INTO batches VALUES($1, $2, $3, $4) ON CONFLICT (batch_id) DO NOTHING", &q);
    if (r == NULL)
        return OTK_ERR_STORAGE;
    added = strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    return added ? OTK_OK : OTK_ERR_BAD_STATE;
}

static otk_status p_list_batches(void *impl, otk_batch_fn fn, void *user)
{
    pgstore *s = impl;
    PGresult *r;
    int i;
    OTK_TRY(pg_release(s));
    r = pg_run(&s->db,
               "SELECT b.batch_id, b.product, (SELECT count(*) FROM devices d"
               " WHERE d.batch_id = b.batch_id) FROM batches b ORDER BY b.batch_id",
               NULL);
    if (r == NULL)
        return OTK_ERR_STORAGE;
    for (i = 0; i < PQntuples(r); i++) {
        otk_batch_info b;
        memset(&b, 0, sizeof b);
        if (!pg_blob(r, i, 0, b.batch_id, 8))
            continue;
        snprintf(b.product, sizeof b.product, "%s", PQgetvalue(r, i, 1));
        b.devices = (uint64_t)pg_int(r, i, 2);
        if (fn(user, &b))
            break;
    }
    PQclear(r);
    return OTK_OK;
}

/* Runs sql with q in single-row mode, calling row(ctx, result) per row. */
static otk_status stream(pgstore *s, const char *sql, const pgq *q,
                         int (*row)(void *ctx, const PGresult *r), void *ctx)
{
    PGresult *r;
    otk_status st = OTK_OK;
    int stop = 0;
    OTK_TRY(pg_release(s));
    if (!PQsendQueryParams(s->db.c, sql, q ? q->n : 0, NULL, q ? q->v : NULL, q ? q->len : NULL,
                           q ? q->fmt : NULL, 1))
        return OTK_ERR_STORAGE;
    if (!PQsetSingleRowMode(s->db.c)) { /* results are still drained below */
        st = OTK_ERR_STORAGE;
        stop = 1;
    }
    while ((r = PQgetResult(s->db.c)) != NULL) {
        ExecStatusType t = PQresultStatus(r);
        if (t == PGRES_SINGLE_TUPLE && !stop)
            stop = row(ctx, r);
        else if (t != PGRES_SINGLE_TUPLE && t != PGRES_TUPLES_OK)
            st = OTK_ERR_STORAGE;
        PQclear(r);
    }
    return st;
}

typedef struct dev_walk {
    otk_device_fn fn;
    void *user;
} dev_walk;

static int dev_row(void *ctx, const PGresult *r)
{
    dev_walk *w = ctx;
    otk_device_info d;
    memset(&d, 0, sizeof d);
    if (!pg_blob(r, 0, 0, d.id, 16) || !pg_blob(r, 0, 1, d.batch_id, 8))
        return 0;
    d.state = (int)pg_int(r, 0, 2);
    d.version = (uint32_t)pg_int(r, 0, 3);
    d.cloud = (uint32_t)pg_int(r, 0, 4);
    snprintf(d.user, sizeof d.user, "%s", pg_null(r, 0, 5) ? "" : PQgetvalue(r, 0, 5));
    d.pending_version = (uint32_t)pg_int(r, 0, 6);
    d.issued = (uint32_t)pg_int(r, 0, 7);
    d.want = (int)pg_int(r, 0, 8);
    d.last_seen_ms = pg_int(r, 0, 9);
    return w->fn(w->user, &d);
}

static otk_status p_list_devices(void *impl, const uint8_t *id, const uint8_t *after, int state,
                                 otk_device_fn fn, void *user)
{
    pgq q = {0};
    dev_walk w;
    w.fn = fn;
    w.user = user;
    if (id)
        pq_blob(&q, id, 16);
    else
        pq_null(&q);
    pq_int(&q, state);
    if (after)
        pq_blob(&q, after, 16);
    else
        pq_null(&q);
    return stream(impl,
                  "SELECT id, batch_id, state, c_version, c_cloud, c_user, p_version, issued, want,"
                  " updated FROM devices WHERE ($1::bytea IS NULL OR id = $1)"
                  " AND ($2 = 0 OR state = $2) AND ($3::bytea IS NULL OR id > $3) ORDER BY id",
                  &q, dev_row, &w);
}

typedef struct audit_walk {
    pgstore *s;
    otk_audit_fn fn;
    void *user;
    uint8_t prev[32];
    uint64_t rows, bad, expect;
    int corrupt;
} audit_walk;

static void audit_decode(const PGresult *r, otk_audit_row *a)
{
    memset(a, 0, sizeof *a);
    a->seq = (uint64_t)pg_int(r, 0, 0);
    a->ts_ms = pg_int(r, 0, 1);
    a->ev.kind = (uint8_t)pg_int(r, 0, 2);
    a->ev.msg_type = (uint8_t)pg_int(r, 0, 3);
    a->ev.has_id = (uint8_t)pg_blob(r, 0, 4, a->ev.id, 16);
    a->ev.version = (uint32_t)pg_int(r, 0, 5);
    a->ev.code = (otk_status)pg_int(r, 0, 6);
    if (!pg_null(r, 0, 8))
        snprintf(a->actor, sizeof a->actor, "%s", PQgetvalue(r, 0, 8));
}

static int audit_row(void *ctx, const PGresult *r)
{
    audit_walk *w = ctx;
    otk_audit_row a;
    audit_decode(r, &a);
    return w->fn(w->user, &a);
}

static int verify_row(void *ctx, const PGresult *r)
{
    audit_walk *w = ctx;
    otk_audit_row a;
    uint8_t hash[32], stored[32];
    audit_decode(r, &a);
    if ((!pg_null(r, 0, 4) && !a.ev.has_id) || !pg_blob(r, 0, 7, stored, 32) ||
        a.seq != w->expect ||
        otk_audit_link(w->s->crypto, w->prev, a.seq, a.ts_ms, &a.ev, a.actor, hash) != OTK_OK ||
        memcmp(hash, stored, 32) != 0) {
        w->bad = a.seq;
        w->corrupt = 1;
        return 1;
    }
    memcpy(w->prev, stored, 32);
    w->expect = a.seq + 1;
    w->rows++;
    return 0;
}

#define AUDIT_SQL "SELECT seq, ts, kind, msg_type, device, version, code, hash, actor FROM audit"

static otk_status p_audit_list(void *impl, uint64_t after, otk_audit_fn fn, void *user)
{
    audit_walk w;
    pgq q = {0};
    memset(&w, 0, sizeof w);
    w.fn = fn;
    w.user = user;
    pq_int(&q, (int64_t)after);
    return stream(impl, AUDIT_SQL " WHERE seq > $1 ORDER BY seq", &q, audit_row, &w);
}

static void p_set_actor(void *impl, const char *actor)
{
    pgstore *s = impl;
    snprintf(s->actor, sizeof s->actor, "%s", actor ? actor : "");
}

static otk_status p_audit_verify(void *impl, uint64_t *rows, uint64_t *bad_seq)
{
    pgstore *s = impl;
    audit_walk w;
    PGresult *r;
    otk_status st;
    memset(&w, 0, sizeof w);
    w.s = s;
    w.expect = 1;
    st = stream(s, AUDIT_SQL " ORDER BY seq", NULL, verify_row, &w);
    *rows = w.rows;
    *bad_seq = w.bad;
    if (st != OTK_OK)
        return st;
    if (w.corrupt)
        return OTK_ERR_CORRUPT;
    /* The head must name the last row: a cut tail is tampering too. */
    r = pg_run(&s->db, "SELECT seq, hash FROM audit_head WHERE one = 1", NULL);
    if (r == NULL)
        return OTK_ERR_STORAGE;
    {
        uint8_t h[32];
        int ok = PQntuples(r) == 1 && (uint64_t)pg_int(r, 0, 0) == w.rows && pg_blob(r, 0, 1, h, 32) &&
                 memcmp(h, w.prev, 32) == 0;
        PQclear(r);
        if (!ok) {
            *bad_seq = w.rows + 1;
            return OTK_ERR_CORRUPT;
        }
    }
    return OTK_OK;
}

static uint64_t p_audit_count(void *impl, int kind)
{
    pgstore *s = impl;
    pgq q = {0};
    PGresult *r;
    uint64_t n = 0;
    if (pg_release(s) != OTK_OK)
        return 0;
    pq_int(&q, kind);
    r = pg_run(&s->db, "SELECT count(*) FROM audit WHERE $1 = 0 OR kind = $1", &q);
    if (r && PQntuples(r) == 1)
        n = (uint64_t)pg_int(r, 0, 0);
    PQclear(r);
    return n;
}

static void p_close(void *impl)
{
    pgstore *s = impl;
    if (s == NULL)
        return;
    if (s->db.c)
        (void)pg_release(s);
    PQfinish(s->db.c);
    PQfinish(s->work.c);
    free(s->conninfo);
    free(s);
}

static const otk_store_ops pg_ops = {
    p_close,        p_bind,         pg_release,    p_add_batch,  p_list_batches,
    p_list_devices, p_audit_verify, p_audit_count, p_audit_list, pgc_due,
    pgc_create,     pgc_step,       pgc_get,       pgc_set_state, pgc_list,
    NULL, /* each device's writes commit with its lock */
    pgc_due_cleanups, pgc_failures, pgc_poll, p_set_actor, pgc_hold_offers,
};

static otk_status fail(pgstore *s, char *err, size_t err_size, const char *what)
{
    if (err && err_size) {
        const char *m = s->db.c ? PQerrorMessage(s->db.c) : "out of memory";
        size_t n;
        snprintf(err, err_size, "%s: %s", what, m);
        n = strlen(err);
        while (n && (err[n - 1] == '\n' || err[n - 1] == ' '))
            err[--n] = '\0';
    }
    return OTK_ERR_STORAGE;
}

static otk_status migrate(pgstore *s, char *err, size_t err_size)
{
    PGresult *r;
    int64_t version = 0;
    size_t i;
    /* Agents starting together: one migrates, the others wait and see it done. */
    if (pg_exec(s->db.c, "BEGIN; SELECT " MIGRATE_LOCK "; CREATE TABLE IF NOT EXISTS otk_meta("
                       "key text PRIMARY KEY, value bigint NOT NULL)") != OTK_OK)
        return fail(s, err, err_size, "schema");
    r = pg_run(&s->db, "SELECT value FROM otk_meta WHERE key = 'schema_version'", NULL);
    if (r == NULL) {
        rollback(s);
        return fail(s, err, err_size, "schema");
    }
    if (PQntuples(r) == 1)
        version = pg_int(r, 0, 0);
    PQclear(r);
    if (version > (int64_t)N_MIGRATIONS) {
        rollback(s);
        snprintf(err, err_size, "database schema version %lld is newer than this agent's (%d)",
                 (long long)version, PG_SCHEMA_VERSION);
        return OTK_ERR_STORAGE;
    }
    for (i = (size_t)version; i < N_MIGRATIONS; i++) {
        char sql[128];
        snprintf(sql, sizeof sql,
                 "INSERT INTO otk_meta VALUES('schema_version', %zu) ON CONFLICT (key)"
                 " DO UPDATE SET value = excluded.value", i + 1);
        if (pg_exec(s->db.c, migrations[i]) != OTK_OK || pg_exec(s->db.c, sql) != OTK_OK) {
            otk_status st = fail(s, err, err_size, "schema migration");
            rollback(s);
            return st;
        }
    }
    if (pg_exec(s->db.c, "COMMIT") != OTK_OK)
        return fail(s, err, err_size, "schema");
    return OTK_OK;
}

static void quiet(void *arg, const PGresult *r)
{
    (void)arg; /* NOTICEs (e.g. "relation already exists") are not errors */
    (void)r;
}

otk_status otk_store_pg_open(const char *conninfo, const otk_crypto *crypto, void **impl,
                             const otk_store_ops **ops, char *err, size_t err_size)
{
    pgstore *s = calloc(1, sizeof *s);
    if (s == NULL)
        abort();
    s->crypto = crypto;
    s->conninfo = strdup(conninfo);
    if (s->conninfo == NULL)
        abort();
    s->db.c = PQconnectdb(conninfo);
    if (s->db.c == NULL || PQstatus(s->db.c) != CONNECTION_OK) {
        fail(s, err, err_size, "cannot connect to PostgreSQL");
        p_close(s);
        return OTK_ERR_STORAGE;
    }
    PQsetNoticeReceiver(s->db.c, quiet, NULL);
    if (migrate(s, err, err_size) != OTK_OK) {
        p_close(s);
        return OTK_ERR_STORAGE;
    }
    *impl = s;
    *ops = &pg_ops;
    return OTK_OK;
}
