/*
 * Campaigns and update-offer claims on PostgreSQL (semantics in
 * campaign.h), for several agents sharing one database.
 *
 * A step takes each campaign's row with FOR NO KEY UPDATE SKIP LOCKED on a
 * second connection: one agent steps a campaign at a time (so the rate is
 * the campaign's, not the campaign's times the agents), the others skip
 * it. Its due devices are claimed with FOR UPDATE SKIP LOCKED in the same
 * transaction, each update requested through the registry connection (its
 * own transaction, as the agent core needs), and the claims marked started
 * when the work transaction commits. An agent killed in between leaves the
 * rows unclaimed and unstarted; the next agent sees the device already
 * asked (or done) and only marks it, so no device is asked twice.
 */
#include "../internal.h"

#include <time.h>

#include "pg_internal.h"
#include "store_internal.h"

/*
 * The outcome of a started device not counted yet, over campaign_devices cd
 * joined with devices d: 1 done (its committed version passed the base),
 * 2 failed (nothing requested or pending any more), NULL still in flight.
 */
#define OUTCOME_SQL                                                   \
    "CASE WHEN d.c_version > cd.base_version THEN 1"                  \
    " WHEN d.state = 3 OR (d.want = 0 AND d.p_version IS NULL) THEN 2 END"
/* Why (campaign.h): -19 REVOKED, -21 CLOUD (the device aborted: the cloud refused the set). */
#define REASON_SQL "CASE WHEN d.state = 3 THEN -19 ELSE -21 END"
#define INFLIGHT_SQL                                                  \
    " FROM campaign_devices cd JOIN devices d ON d.id = cd.device"    \
    " WHERE cd.campaign = $1 AND cd.started IS NOT NULL AND cd.finished IS NULL"

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct add_ctx {
    pgstore *s;
    int64_t cid;
    uint64_t n;
} add_ctx;

#define ADD_SQL                                                                          \
    "INSERT INTO campaign_devices(campaign, device, base_version) SELECT $1, id, issued" \
    " FROM devices WHERE state = 2 AND c_version IS NOT NULL"

static otk_status add_one(void *user, const uint8_t id[16])
{
    add_ctx *c = user;
    pgq q = {0};
    PGresult *r;
    pq_int(&q, c->cid);
    pq_blob(&q, id, 16);
    r = pg_run(&c->s->db, ADD_SQL " AND id = $2 ON CONFLICT DO NOTHING", &q);
    if (r == NULL)
        return OTK_ERR_STORAGE;
    c->n += (uint64_t)strtoull(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return OTK_OK;
}

/* The audit row of a campaign's state change (inside c's transaction). */
static otk_status audit_state(pgstore *s, pgconn *c, int64_t id, int state)
{
    otk_audit ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = OTK_AUD_CAMPAIGN;
    ev.version = (uint32_t)id;
    ev.code = (otk_status)state;
    return pg_append_audit(s, c, &ev);
}

otk_status pgc_create(void *impl, int kind, uint32_t target_cloud, const char *selector,
                      uint32_t rate, uint32_t canary, uint32_t max_failures, int64_t *id,
                      uint64_t *total)
{
    pgstore *s = impl;
    pgq q = {0};
    PGresult *r;
    add_ctx c;
    uint8_t batch[8];
    otk_status st = OTK_ERR_STORAGE;
    OTK_TRY(pg_release(s));
    if (pg_exec(s->db.c, "BEGIN") != OTK_OK)
        return OTK_ERR_STORAGE;
    pq_int(&q, kind);
    pq_int(&q, target_cloud);
    pq_text(&q, selector);
    pq_int(&q, rate);
    pq_int(&q, canary);
    pq_int(&q, canary ? OTK_CAMP_CANARY : OTK_CAMP_RUNNING);
    pq_int(&q, wall_ms());
    pq_int(&q, max_failures);
    r = pg_run(&s->db,
               "INSERT INTO campaigns(kind, target_cloud, selector, rate, canary, state, total,"
               " created, max_failures) VALUES($1, $2, $3, $4, $5, $6, 0, $7, $8) RETURNING id",
               &q);
    if (r == NULL || PQntuples(r) != 1) {
        PQclear(r);
        goto out;
    }
    memset(&c, 0, sizeof c);
    c.s = s;
    c.cid = pg_int(r, 0, 0);
    PQclear(r);
    memset(&q, 0, sizeof q);
    pq_int(&q, c.cid);
    if (!strcmp(selector, "all")) {
        r = pg_run(&s->db, ADD_SQL, &q);
    } else if (!strncmp(selector, "batch:", 6) && strlen(selector) == 22 &&
               otk_hex_decode(selector + 6, batch, 8) == 0) {
        pq_blob(&q, batch, 8);
        r = pg_run(&s->db, ADD_SQL " AND batch_id = $2", &q);
    } else if (!strncmp(selector, "ids:", 4)) {
        st = otk_selector_ids(selector + 4, add_one, &c);
        if (st != OTK_OK)
            goto out;
        st = OTK_ERR_STORAGE;
        r = pg_run(&s->db, "SELECT 1", NULL);
    } else {
        st = OTK_ERR_BAD_VALUE;
        goto out;
    }
    if (r == NULL)
        goto out;
    if (strncmp(selector, "ids:", 4) != 0)
        c.n = (uint64_t)strtoull(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    if (c.n == 0) {
        st = OTK_ERR_BAD_VALUE;
        goto out;
    }
    memset(&q, 0, sizeof q);
    pq_int(&q, c.cid);
    pq_int(&q, (int64_t)c.n);
    r = pg_run(&s->db, "UPDATE campaigns SET total = $2 WHERE id = $1", &q);
    if (r == NULL)
        goto out;
    PQclear(r);
    if (audit_state(s, &s->db, c.cid, canary ? OTK_CAMP_CANARY : OTK_CAMP_RUNNING) != OTK_OK)
        goto out;
    if (pg_exec(s->db.c, "COMMIT") != OTK_OK)
        goto out;
    *id = c.cid;
    *total = c.n;
    return OTK_OK;
out:
    (void)pg_exec(s->db.c, "ROLLBACK");
    return st;
}

#define CAMP_COLS "kind, target_cloud, selector, rate, canary, state, total, created," \
                  " max_failures, coalesce(pause_reason, 0), failures_base"
#define CAMP_COLS_C "c.kind, c.target_cloud, c.selector, c.rate, c.canary, c.state, c.total," \
                    " c.created, c.max_failures, coalesce(c.pause_reason, 0), c.failures_base"

/* The CAMP_COLS of row 0 from column col on. */
static void decode_campaign_at(const PGresult *r, int col, int64_t id, otk_campaign_status *st);

static void decode_campaign(const PGresult *r, int64_t id, otk_campaign_status *st)
{
    decode_campaign_at(r, 0, id, st);
}

static void decode_campaign_at(const PGresult *r, int col, int64_t id, otk_campaign_status *st)
{
    memset(st, 0, sizeof *st);
    st->id = id;
    st->kind = (int)pg_int(r, 0, col + 0);
    st->target_cloud = (uint32_t)pg_int(r, 0, col + 1);
    otk_selector_show(st->selector, sizeof st->selector, PQgetvalue(r, 0, col + 2));
    st->rate = (uint32_t)pg_int(r, 0, col + 3);
    st->canary = (uint32_t)pg_int(r, 0, col + 4);
    st->state = (int)pg_int(r, 0, col + 5);
    st->total = (uint64_t)pg_int(r, 0, col + 6);
    st->created_ms = pg_int(r, 0, col + 7);
    st->max_failures = (uint32_t)pg_int(r, 0, col + 8);
    st->pause_reason = st->state == OTK_CAMP_PAUSED ? (int)pg_int(r, 0, col + 9) : 0;
    st->failures_base = (uint64_t)pg_int(r, 0, col + 10);
}

/*
 * Fills started, done and failed: the counters plus the devices that
 * finished since the last step. settle (inside a step's transaction) also
 * records those outcomes and moves them into the counters; it looks only at
 * the devices audited since the campaign's settled_seq (every change that
 * decides an outcome is audited with its device; appends commit in their
 * order, the chain's head being locked until then).
 */
static otk_status counts(pgconn *c, otk_campaign_status *st, int settle)
{
    pgq q = {0};
    PGresult *r;
    pq_int(&q, st->id);
    r = pg_run(c, settle
                      ? "WITH t AS (SELECT seq AS top FROM audit_head),"
                        " f AS (SELECT cd.device, " OUTCOME_SQL " AS outcome, " REASON_SQL
                        " AS reason" INFLIGHT_SQL " AND cd.device IN (SELECT device FROM audit"
                        " WHERE seq > (SELECT settled_seq FROM campaigns WHERE id = $1)"
                        " AND kind NOT IN (" OTK_AUD_UNDECIDING_SQL "))),"
                        " u AS (UPDATE campaign_devices cd SET finished = f.outcome,"
                        " reason = CASE WHEN f.outcome = 2 THEN f.reason END FROM f"
                        " WHERE cd.campaign = $1 AND cd.device = f.device AND f.outcome IS NOT NULL"
                        " AND cd.finished IS NULL"
                        " RETURNING f.outcome)"
                        " UPDATE campaigns SET"
                        " n_done = n_done + (SELECT count(*) FROM u WHERE outcome = 1),"
                        " n_failed = n_failed + (SELECT count(*) FROM u WHERE outcome = 2),"
                        " settled_seq = (SELECT top FROM t)"
                        " WHERE id = $1 RETURNING n_started, n_done, n_failed"
                      : "SELECT n_started, n_done + (SELECT count(*)" INFLIGHT_SQL
                        " AND d.c_version > cd.base_version), n_failed + (SELECT count(*)"
                        INFLIGHT_SQL " AND NOT coalesce(d.c_version > cd.base_version, false)"
                        " AND (d.state = 3 OR (d.want = 0 AND d.p_version IS NULL)))"
                        " FROM campaigns WHERE id = $1",
               &q);
    if (r == NULL || PQntuples(r) != 1) {
        PQclear(r);
        return OTK_ERR_STORAGE;
    }
    st->started = (uint64_t)pg_int(r, 0, 0);
    st->done = (uint64_t)pg_int(r, 0, 1);
    st->failed = (uint64_t)pg_int(r, 0, 2);
    PQclear(r);
    return OTK_OK;
}

otk_status pgc_failures(void *impl, int64_t id, otk_campaign_failure_fn fn, void *user)
{
    pgstore *s = impl;
    pgq q = {0};
    PGresult *r;
    int i;
    OTK_TRY(pg_release(s));
    pq_int(&q, id);
    r = pg_run(&s->db,
               "SELECT device, coalesce(reason, 0) FROM campaign_devices WHERE campaign = $1"
               " AND finished = 2 ORDER BY ord",
               &q);
    if (r == NULL)
        return OTK_ERR_STORAGE;
    for (i = 0; i < PQntuples(r); i++) {
        uint8_t dev[16];
        if (pg_blob(r, i, 0, dev, 16) && fn(user, dev, (otk_status)pg_int(r, i, 1)) != 0)
            break;
    }
    PQclear(r);
    return OTK_OK;
}

otk_status pgc_get(void *impl, int64_t id, otk_campaign_status *st)
{
    pgstore *s = impl;
    pgq q = {0};
    PGresult *r;
    OTK_TRY(pg_release(s));
    pq_int(&q, id);
    r = pg_run(&s->db, "SELECT " CAMP_COLS " FROM campaigns WHERE id = $1", &q);
    if (r == NULL)
        return OTK_ERR_STORAGE;
    if (PQntuples(r) != 1) {
        PQclear(r);
        memset(st, 0, sizeof *st);
        return OTK_ERR_NOT_FOUND;
    }
    decode_campaign(r, id, st);
    PQclear(r);
    return counts(&s->db, st, 0);
}

/*
 * Moves campaign id to state (with why, when it pauses) and audits it,
 * inside c's transaction; failures_base >= 0 restarts the failure count,
 * -1 keeps it, -2 keeps it and leaves the audit row to the caller.
 */
static otk_status set_state(pgstore *s, pgconn *c, int64_t id, int state, int reason,
                            int64_t failures_base)
{
    pgq q = {0};
    PGresult *r;
    pq_int(&q, id);
    pq_int(&q, state);
    if (state == OTK_CAMP_PAUSED)
        pq_int(&q, reason);
    else
        pq_null(&q);
    pq_int(&q, failures_base < 0 ? -1 : failures_base);
    r = pg_run(c,
               "UPDATE campaigns SET state = $2, pause_reason = $3::bigint, failures_base ="
               " CASE WHEN $4::bigint < 0 THEN failures_base ELSE $4::bigint END WHERE id = $1",
               &q);
    PQclear(r);
    if (r == NULL)
        return OTK_ERR_STORAGE;
    return failures_base == -2 ? OTK_OK : audit_state(s, c, id, state);
}

static otk_status set_state_once(pgstore *s, int64_t id, int state)
{
    otk_campaign_status cur;
    pgq q = {0};
    PGresult *r;
    OTK_TRY(pgc_get(s, id, &cur));
    if (cur.state == OTK_CAMP_DONE || cur.state == OTK_CAMP_ABORTED)
        return OTK_ERR_BAD_STATE;
    if (pg_exec(s->db.c, "BEGIN") != OTK_OK)
        return OTK_ERR_STORAGE;
    if (state == cur.state || (state == OTK_CAMP_RUNNING && cur.state == OTK_CAMP_CANARY)) {
        (void)pg_exec(s->db.c, "ROLLBACK"); /* nothing to change */
        return OTK_OK;
    }
    if (state == OTK_CAMP_RUNNING && cur.canary && cur.done < cur.canary)
        state = OTK_CAMP_CANARY;
    if (set_state(s, &s->db, id, state, OTK_PAUSE_OPERATOR,
                  state == OTK_CAMP_PAUSED ? -1 : (int64_t)cur.failed) != OTK_OK)
        goto fail;
    if (state == OTK_CAMP_ABORTED) {
        /* What is decided stays decided; then withdraw what is requested
         * and not issued yet (issued sets finish), for this campaign's
         * undecided devices only, and record those as failed (-2
         * BAD_STATE: withdrawn). */
        if (counts(&s->db, &cur, 1) != OTK_OK)
            goto fail;
        /* (want set: not issued yet, an older set may be pending; it
         * finishes.) Other campaigns that started the same devices look at
         * all theirs again once: no audit row tells them of the withdrawal. */
        pq_int(&q, id);
        r = pg_run(&s->db,
                   "WITH c AS (UPDATE campaign_devices cd SET finished = 2, reason = -2"
                   " FROM devices d WHERE d.id = cd.device AND cd.campaign = $1"
                   " AND cd.started IS NOT NULL AND cd.finished IS NULL"
                   " AND d.state = 2 AND d.want IN (1, 2) RETURNING cd.device),"
                   " w AS (UPDATE devices SET want = 0, want_cloud = 0"
                   " WHERE id IN (SELECT device FROM c) RETURNING 1),"
                   " o AS (UPDATE campaigns SET settled_seq = 0 WHERE id <> $1 AND state IN (1, 2, 3)"
                   " RETURNING 1)"
                   " UPDATE campaigns SET n_failed = n_failed + (SELECT count(*) FROM c) WHERE id = $1",
                   &q);
        if (r == NULL)
            goto fail;
        PQclear(r);
    }
    if (pg_exec(s->db.c, "COMMIT") == OTK_OK)
        return OTK_OK;
fail:
    (void)pg_exec(s->db.c, "ROLLBACK");
    return OTK_ERR_STORAGE;
}

/*
 * An operator's pause, resume or abort. An abort writes the campaign's
 * undecided devices, their device rows and the other campaigns' rows in one
 * transaction, while the agents' campaign steps lock the same rows in their
 * own order: PostgreSQL then ends one of them as a deadlock. Such a loss is
 * run again (a few times, after a short wait), not reported as a failure.
 */
otk_status pgc_set_state(void *impl, int64_t id, int state)
{
    pgstore *s = impl;
    otk_status st = OTK_ERR_STORAGE;
    int attempt;
    for (attempt = 0; attempt < 5; attempt++) {
        struct timespec pause = {0, 0};
        s->db.sqlstate[0] = '\0';
        st = set_state_once(s, id, state);
        if (st != OTK_ERR_STORAGE || !pg_conflict(&s->db))
            return st;
        pause.tv_nsec = (long)(10 + 20 * attempt) * 1000000L;
        nanosleep(&pause, NULL);
    }
    return st;
}

size_t pgc_list(void *impl, int64_t *ids, size_t max)
{
    pgstore *s = impl;
    PGresult *r;
    size_t n = 0;
    if (pg_release(s) != OTK_OK)
        return 0;
    r = pg_run(&s->db, "SELECT id FROM campaigns ORDER BY id DESC", NULL);
    while (r && n < max && (int)n < PQntuples(r)) {
        ids[n] = pg_int(r, (int)n, 0);
        n++;
    }
    PQclear(r);
    return n;
}

/* 1 when the device was already asked, or a set was issued to it since the
 * campaign was created (base: the last one issued then): a crashed step's. */
static int already_started(pgstore *s, const uint8_t id[16], int64_t base)
{
    pgq q = {0};
    PGresult *r;
    int yes = 0;
    pq_blob(&q, id, 16);
    pq_int(&q, base);
    r = pg_run(&s->db,
               "SELECT want <> 0 OR issued > $2"
               " FROM devices WHERE id = $1",
               &q);
    if (r && PQntuples(r) == 1)
        yes = pg_int(r, 0, 0) != 0;
    PQclear(r);
    return yes;
}

/* Starts up to want due devices of campaign c inside the work transaction. */
static size_t start_devices(pgstore *s, otk_agent *a, const otk_campaign_status *c, uint64_t want)
{
    pgq q = {0};
    PGresult *r, *u;
    uint8_t out[OTK_MSG_MAX_LEN];
    size_t started = 0, len;
    int i, unaudited = 0;
    pq_int(&q, c->id);
    pq_int(&q, (int64_t)(want > OTK_CAMPAIGN_STEP_MAX ? OTK_CAMPAIGN_STEP_MAX : want));
    r = pg_run(&s->work,
               "SELECT device, base_version FROM campaign_devices WHERE campaign = $1"
               " AND started IS NULL ORDER BY ord LIMIT $2 FOR UPDATE SKIP LOCKED",
               &q);
    for (i = 0; r && i < PQntuples(r); i++) {
        uint8_t id[16];
        if (!pg_blob(r, i, 0, id, 16))
            continue;
        /* A request the agent refuses (the device revoked since selection, a
         * target cloud this agent does not serve) fails the device at once,
         * with the refusal as its reason. */
        otk_status rs = OTK_OK;
        if (!already_started(s, id, pg_int(r, i, 1)))
            rs = otk_agent_request_update(a, id, c->kind, c->target_cloud, out, sizeof out, &len);
        else
            unaudited = 1; /* no audit row of this start: its outcome may be decided already */
        (void)pg_release(s);
        memset(&q, 0, sizeof q);
        pq_int(&q, c->id);
        pq_blob(&q, id, 16);
        pq_int(&q, wall_ms());
        pq_int(&q, rs);
        u = pg_run(&s->work,
                   "WITH c AS (UPDATE campaign_devices SET started = $3,"
                   " finished = CASE WHEN $4::bigint = 0 THEN NULL ELSE 2 END,"
                   " reason = CASE WHEN $4::bigint = 0 THEN NULL ELSE $4::bigint END"
                   " WHERE campaign = $1 AND device = $2 RETURNING finished)"
                   " UPDATE campaigns SET n_failed = n_failed + (SELECT count(*) FROM c"
                   " WHERE finished = 2) WHERE id = $1",
                   &q);
        if (u)
            started++;
        PQclear(u);
    }
    PQclear(r);
    if (unaudited) { /* the next settle looks at every device in flight once */
        memset(&q, 0, sizeof q);
        pq_int(&q, c->id);
        PQclear(pg_run(&s->work, "UPDATE campaigns SET settled_seq = 0 WHERE id = $1", &q));
    }
    return started;
}

/* Steps one campaign if no other agent is stepping it now. */
static size_t step_one(pgstore *s, otk_agent *a, int64_t id)
{
    otk_campaign_status c;
    pgq q = {0};
    PGresult *r;
    uint64_t budget, limit, due;
    int64_t age;
    size_t started = 0;
    int audit_running = 0;
    if (pg_exec(s->work.c, "BEGIN") != OTK_OK)
        return 0;
    pq_int(&q, id);
    r = pg_run(&s->work,
               "SELECT " CAMP_COLS " FROM campaigns WHERE id = $1 AND state IN (1, 2)"
               " FOR NO KEY UPDATE SKIP LOCKED",
               &q);
    if (r == NULL || PQntuples(r) != 1) {
        PQclear(r);
        goto out;
    }
    decode_campaign(r, id, &c);
    PQclear(r);
    if (counts(&s->work, &c, 1) != OTK_OK)
        goto out;
    if (c.done + c.failed >= c.total) {
        (void)set_state(s, &s->work, id, OTK_CAMP_DONE, 0, -1);
        goto out;
    }
    if (c.max_failures && c.failed >= c.failures_base + c.max_failures) {
        (void)set_state(s, &s->work, id, OTK_CAMP_PAUSED, OTK_PAUSE_THRESHOLD, -1);
        goto out;
    }
    if (c.state == OTK_CAMP_CANARY) {
        if (c.failed > c.failures_base) { /* the cloud refused a canary: an operator decides */
            (void)set_state(s, &s->work, id, OTK_CAMP_PAUSED, OTK_PAUSE_CANARY, -1);
            goto out;
        }
        if (c.done >= c.canary) {
            /* Its audit row is written last: it holds the chain's head until
             * the commit, which starting devices (their rows go through the
             * registry's connection) would wait for. */
            if (set_state(s, &s->work, id, OTK_CAMP_RUNNING, 0, -2) != OTK_OK)
                goto out;
            audit_running = 1;
            c.state = OTK_CAMP_RUNNING;
        }
    }
    limit = c.state == OTK_CAMP_CANARY ? c.canary : c.total;
    if (c.started >= limit)
        goto out;
    /* rate devices per second since the campaign began (the first at once). */
    age = wall_ms() - c.created_ms;
    due = 1u + (uint64_t)(age > 0 ? age : 0) * c.rate / 1000u;
    if (due > limit)
        due = limit;
    if (due <= c.started)
        goto out;
    budget = due - c.started;
    started = start_devices(s, a, &c, budget);
    if (started) {
        memset(&q, 0, sizeof q);
        pq_int(&q, id);
        pq_int(&q, (int64_t)started);
        r = pg_run(&s->work, "UPDATE campaigns SET n_started = n_started + $2 WHERE id = $1", &q);
        if (r == NULL) { /* the claims roll back with the counter */
            (void)pg_exec(s->work.c, "ROLLBACK");
            return 0;
        }
        PQclear(r);
    }
out:
    if ((audit_running && audit_state(s, &s->work, id, OTK_CAMP_RUNNING) != OTK_OK) ||
        pg_exec(s->work.c, "COMMIT") != OTK_OK) {
        (void)pg_exec(s->work.c, "ROLLBACK");
        started = 0;
    }
    return started;
}

/* Offers are not made with the start here (*n_offers stays the 0
 * otk_store_campaign_step set): the request commits on the registry's
 * connection before the start does on the work one, and the notify pass
 * hands each device to one agent. */
size_t pgc_step(void *impl, otk_agent *a, otk_offer *offers, size_t max_offers, size_t *n_offers)
{
    pgstore *s = impl;
    PGresult *r;
    size_t started = 0;
    int i;
    (void)offers;
    (void)max_offers;
    (void)n_offers;
    if (pg_release(s) != OTK_OK)
        return 0;
    if (s->work.c == NULL || PQstatus(s->work.c) != CONNECTION_OK) {
        if (s->work.c == NULL)
            s->work.c = PQconnectdb(s->conninfo);
        else
            (void)pg_reset(&s->work);
        if (s->work.c == NULL || PQstatus(s->work.c) != CONNECTION_OK)
            return 0;
    }
    r = pg_run(&s->db, "SELECT id FROM campaigns WHERE state IN (1, 2) ORDER BY id DESC LIMIT 32",
               NULL);
    for (i = 0; r && i < PQntuples(r); i++)
        started += step_one(s, a, pg_int(r, i, 0));
    PQclear(r);
    return started;
}

/*
 * Devices due across agents: the claiming UPDATE skips devices another
 * agent is handling or claiming right now, and the mark it sets keeps the
 * others off them until period_ms passed. sql is one of the DUE_SQL texts
 * (a literal: pg_run keeps prepared statements by the text's address).
 */
#define DUE_SQL(where)                                                                     \
    "UPDATE devices SET notified_at = $1 WHERE id IN (SELECT id FROM devices WHERE " where \
    " AND (notified_at IS NULL OR notified_at < $2) LIMIT $3 FOR UPDATE SKIP LOCKED)"    \
    " RETURNING id"

static size_t claim_due(pgstore *s, const char *sql, uint8_t (*ids)[16], size_t max,
                        unsigned period_ms)
{
    pgq q = {0};
    PGresult *r;
    int64_t now = wall_ms();
    size_t n = 0;
    int i;
    if (pg_release(s) != OTK_OK)
        return 0;
    pq_int(&q, now);
    pq_int(&q, now - (int64_t)period_ms);
    pq_int(&q, (int64_t)max);
    r = pg_run(&s->db, sql, &q);
    for (i = 0; r && i < PQntuples(r) && n < max; i++)
        if (pg_blob(r, i, 0, ids[n], 16))
            n++;
    PQclear(r);
    return n;
}

/* Update offers: a requested update, or an issued one not confirmed yet. */
size_t pgc_due(void *impl, uint8_t (*ids)[16], size_t max, unsigned resend_ms)
{
    return claim_due(impl,
                     DUE_SQL("state = 2 AND (want <> 0 OR p_version IS NOT NULL) AND ((want <> 0"
                             " AND p_version IS NULL) OR (p_version IS NOT NULL AND p_claim = 0))"),
                     ids, max, resend_ms);
}

/* Offers the brokers found no subscriber for (store.h otk_store_hold_offers):
 * one statement for them all; a device another agent is handling right now
 * (its row locked) is awake, and left alone. */
size_t pgc_hold_offers(void *impl, const uint8_t (*ids)[16], size_t n, unsigned resend_ms,
                       unsigned hold_ms)
{
    pgstore *s = impl;
    int64_t now = wall_ms();
    pgq q = {0};
    PGresult *r;
    size_t held = 0, i, k = 0;
    char *arr;
    if (n == 0 || pg_release(s) != OTK_OK || (arr = malloc(n * 38 + 3)) == NULL)
        return 0;
    if (hold_ms < resend_ms)
        hold_ms = resend_ms;
    /* A bytea[] literal: {"\\x<hex>",...} */
    arr[k++] = '{';
    for (i = 0; i < n; i++) {
        memcpy(arr + k, i ? ",\"\\\\x" : "\"\\\\x", i ? 5 : 4);
        k += i ? 5 : 4;
        otk_hex_encode(ids[i], 16, arr + k);
        k += 32;
        arr[k++] = '"';
    }
    arr[k++] = '}';
    arr[k] = '\0';
    pq_int(&q, now + (int64_t)hold_ms - (int64_t)resend_ms);
    pq_text(&q, arr);
    pq_int(&q, now);
    r = pg_run(&s->db,
               "UPDATE devices SET notified_at = $1 WHERE id IN (SELECT id FROM devices"
               " WHERE id = ANY($2::bytea[]) AND state = 2 AND ((want <> 0 AND p_version IS NULL)"
               " OR (p_version IS NOT NULL AND p_claim = 0)) AND notified_at <= $3"
               " FOR UPDATE SKIP LOCKED)",
               &q);
    if (r)
        held = (size_t)strtoull(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    free(arr);
    return held;
}

/* Revoked devices whose cloud clients are still to delete: want 3 (OTK_WANT_CLEANUP). */
size_t pgc_due_cleanups(void *impl, uint8_t (*ids)[16], size_t max, unsigned retry_ms)
{
    return claim_due(impl, DUE_SQL("want = 3"), ids, max, retry_ms);
}

/* A device that polled (store.h otk_store_campaign_poll). */
int pgc_poll(void *impl, otk_agent *a, const uint8_t id[16])
{
    pgstore *s = impl;
    pgq q = {0};
    PGresult *r;
    otk_campaign_status c;
    uint64_t due, limit;
    int64_t age;
    uint8_t out[OTK_MSG_MAX_LEN];
    size_t len;
    otk_status rs;
    int started = 0;
    if (pg_release(s) != OTK_OK || s->work.c == NULL || PQstatus(s->work.c) != CONNECTION_OK)
        return 0; /* the work connection is the engine's: opened by its first step */
    if (pg_exec(s->work.c, "BEGIN") != OTK_OK)
        return 0;
    pq_blob(&q, id, 16);
    r = pg_run(&s->work,
               "SELECT c.id, " CAMP_COLS_C ", c.n_started FROM campaign_devices cd JOIN campaigns c"
               " ON c.id = cd.campaign WHERE cd.device = $1 AND cd.started IS NULL"
               " AND c.state IN (1, 2) ORDER BY c.id LIMIT 1 FOR NO KEY UPDATE OF c, cd SKIP LOCKED",
               &q);
    if (r == NULL || PQntuples(r) != 1) {
        PQclear(r);
        goto out;
    }
    decode_campaign_at(r, 1, pg_int(r, 0, 0), &c);
    c.started = (uint64_t)pg_int(r, 0, 12);
    PQclear(r);
    limit = c.state == OTK_CAMP_CANARY ? c.canary : c.total;
    age = wall_ms() - c.created_ms;
    due = 1u + (uint64_t)(age > 0 ? age : 0) * c.rate / 1000u;
    if (due > limit)
        due = limit;
    if (c.started >= due)
        goto out; /* no slot now: a step reaches it in its turn */
    rs = otk_agent_request_update(a, id, c.kind, c.target_cloud, out, sizeof out, &len);
    (void)pg_release(s);
    memset(&q, 0, sizeof q);
    pq_int(&q, c.id);
    pq_blob(&q, id, 16);
    pq_int(&q, wall_ms());
    pq_int(&q, rs);
    r = pg_run(&s->work,
               "WITH c AS (UPDATE campaign_devices SET started = $3,"
               " finished = CASE WHEN $4::bigint = 0 THEN NULL ELSE 2 END,"
               " reason = CASE WHEN $4::bigint = 0 THEN NULL ELSE $4::bigint END"
               " WHERE campaign = $1 AND device = $2 AND started IS NULL RETURNING finished)"
               " UPDATE campaigns SET n_started = n_started + (SELECT count(*) FROM c),"
               " n_failed = n_failed + (SELECT count(*) FROM c WHERE finished = 2) WHERE id = $1",
               &q);
    started = r != NULL && rs == OTK_OK;
    PQclear(r);
out:
    if (pg_exec(s->work.c, "COMMIT") != OTK_OK) {
        (void)pg_exec(s->work.c, "ROLLBACK");
        started = 0;
    }
    return started;
}
