/* Update campaigns over the SQLite registry (include/otakey/campaign.h). */
#include "../internal.h"

#include "otakey/campaign.h"
#include "sqlreg_internal.h"
#include "campaign_sql.h"
#include "store_internal.h"

/*
 * A started device's outcome, decided from its record (campaign_devices cd
 * joined with devices d): done once its committed version passed its base
 * (the last version issued to it when the campaign was created: a set
 * pending then, committed later, is not this campaign's),
 * failed once nothing is requested or pending for it any more, or it was
 * revoked. settle() records it in cd.finished (1 done, 2 failed) with the
 * reason, and it never changes after that: a later campaign that moves the
 * device does not rewrite this one's outcome.
 */

const char *otk_campaign_state_name(int state)
{
    static const char *names[] = {"?", "canary", "running", "paused", "aborted", "done"};
    return state >= 1 && state <= 5 ? names[state] : "?";
}

const char *otk_campaign_pause_name(int reason)
{
    static const char *names[] = {NULL, "operator", "canary_failed", "error_threshold"};
    return reason >= 1 && reason <= 3 ? names[reason] : NULL;
}

/* The audit row of a campaign's state change (inside the caller's transaction). */
static otk_status audit_state(otk_sqlreg *r, int64_t id, int state)
{
    otk_audit ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = OTK_AUD_CAMPAIGN;
    ev.version = (uint32_t)id;
    ev.code = (otk_status)state;
    return otk_sqlreg_append_audit(r, &ev);
}

otk_status otk_campaign_create(otk_sqlreg *r, int kind, uint32_t target_cloud,
                               const char *selector, uint32_t rate, uint32_t canary,
                               uint32_t max_failures, int64_t *id, uint64_t *total)
{
    sqlite3 *db;
    sqlite3_stmt *s = NULL;
    otk_status st = OTK_ERR_STORAGE;
    uint8_t batch[8], dev[16];
    int64_t cid;
    int changes = 0;
    if (r == NULL || selector == NULL || id == NULL || total == NULL || rate == 0 ||
        (kind != OTK_WANT_ROTATE && kind != OTK_WANT_SWITCH) || strlen(selector) > 65536)
        return OTK_ERR_INVALID_ARGUMENT;
    db = otk_sqlreg_handle(r);
    if (otk_sql_exec(db, "BEGIN IMMEDIATE") != OTK_OK)
        return OTK_ERR_BUSY;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO campaigns(kind, target_cloud, selector, rate, canary, state,"
                           " total, created, max_failures) VALUES(?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?8)",
                           -1, &s, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int(s, 1, kind);
    sqlite3_bind_int64(s, 2, target_cloud);
    sqlite3_bind_text(s, 3, selector, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, rate);
    sqlite3_bind_int64(s, 5, canary);
    sqlite3_bind_int(s, 6, canary ? OTK_CAMP_CANARY : OTK_CAMP_RUNNING);
    sqlite3_bind_int64(s, 7, otk_wall_ms());
    sqlite3_bind_int64(s, 8, max_failures);
    if (sqlite3_step(s) != SQLITE_DONE)
        goto out;
    sqlite3_finalize(s);
    s = NULL;
    cid = sqlite3_last_insert_rowid(db);
#define ADD "INSERT OR IGNORE INTO campaign_devices(campaign, device, base_version) SELECT ?1, id, issued" \
            " FROM devices WHERE state = 2 AND c_version IS NOT NULL"
    if (!strcmp(selector, "all")) {
        if (sqlite3_prepare_v2(db, ADD, -1, &s, NULL) != SQLITE_OK)
            goto out;
        sqlite3_bind_int64(s, 1, cid);
        if (sqlite3_step(s) != SQLITE_DONE)
            goto out;
        changes = sqlite3_changes(db);
    } else if (!strncmp(selector, "batch:", 6) && strlen(selector) == 22 &&
               otk_hex_decode(selector + 6, batch, 8) == 0) {
        if (sqlite3_prepare_v2(db, ADD " AND batch_id = ?2", -1, &s, NULL) != SQLITE_OK)
            goto out;
        sqlite3_bind_int64(s, 1, cid);
        sqlite3_bind_blob(s, 2, batch, 8, SQLITE_STATIC);
        if (sqlite3_step(s) != SQLITE_DONE)
            goto out;
        changes = sqlite3_changes(db);
    } else if (!strncmp(selector, "ids:", 4)) {
        const char *p = selector + 4;
        if (sqlite3_prepare_v2(db, ADD " AND id = ?2", -1, &s, NULL) != SQLITE_OK)
            goto out;
        while (*p) {
            char one[33];
            if (strlen(p) < 32) {
                st = OTK_ERR_BAD_VALUE;
                goto out;
            }
            memcpy(one, p, 32);
            one[32] = '\0';
            if (otk_hex_decode(one, dev, 16) != 0 || (p[32] != ',' && p[32] != '\0')) {
                st = OTK_ERR_BAD_VALUE;
                goto out;
            }
            sqlite3_reset(s);
            sqlite3_bind_int64(s, 1, cid);
            sqlite3_bind_blob(s, 2, dev, 16, SQLITE_TRANSIENT);
            if (sqlite3_step(s) != SQLITE_DONE)
                goto out;
            changes += sqlite3_changes(db);
            p += p[32] ? 33 : 32;
        }
    } else {
        st = OTK_ERR_BAD_VALUE;
        goto out;
    }
#undef ADD
    if (changes == 0) {
        st = OTK_ERR_BAD_VALUE;
        goto out;
    }
    sqlite3_finalize(s);
    s = NULL;
    if (sqlite3_prepare_v2(db, "UPDATE campaigns SET total = ?2 WHERE id = ?1", -1, &s, NULL) !=
        SQLITE_OK)
        goto out;
    sqlite3_bind_int64(s, 1, cid);
    sqlite3_bind_int64(s, 2, changes);
    if (sqlite3_step(s) != SQLITE_DONE)
        goto out;
    if (audit_state(r, cid, canary ? OTK_CAMP_CANARY : OTK_CAMP_RUNNING) != OTK_OK)
        goto out;
    *id = cid;
    *total = (uint64_t)changes;
    st = OTK_OK;
out:
    sqlite3_finalize(s);
    if (st == OTK_OK && otk_sql_exec(db, "COMMIT") == OTK_OK)
        return OTK_OK;
    (void)otk_sql_exec(db, "ROLLBACK");
    return st == OTK_OK ? OTK_ERR_STORAGE : st;
}

/* A campaign's devices recorded as failed (one text: one kept statement). */
#define FAILED_COUNT_SQL "SELECT count(*) FROM campaign_devices WHERE campaign = ?1 AND finished = 2"

/* sqlite3_prepare_v2 of a literal, kept (otk_sqlreg_prep); given back with otk_sqlreg_fin. */
static int prep(otk_sqlreg *r, const char *sql, sqlite3_stmt **s)
{
    *s = otk_sqlreg_prep(r, sql);
    return *s != NULL ? SQLITE_OK : SQLITE_ERROR;
}

static uint64_t count(otk_sqlreg *r, const char *sql, int64_t id)
{
    sqlite3_stmt *s = NULL;
    uint64_t n = 0;
    if (prep(r, sql, &s) == SQLITE_OK) {
        sqlite3_bind_int64(s, 1, id);
        if (sqlite3_step(s) == SQLITE_ROW)
            n = (uint64_t)sqlite3_column_int64(s, 0);
    }
    otk_sqlreg_fin(r, s);
    return n;
}

static otk_status get_status(otk_sqlreg *r, int64_t id, otk_campaign_status *st, int outcomes);

otk_status otk_campaign_get(otk_sqlreg *r, int64_t id, otk_campaign_status *st)
{
    return get_status(r, id, st, 1);
}

/* outcomes 0: done and failed are left 0; 2: only those recorded (right
 * after settle(): an index count); 1: the recorded ones and those decided
 * since (a pass over the devices in flight). */
static otk_status get_status(otk_sqlreg *r, int64_t id, otk_campaign_status *st, int outcomes)
{
    sqlite3_stmt *s = NULL;
    otk_status rc = OTK_ERR_NOT_FOUND;
    if (r == NULL || st == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    memset(st, 0, sizeof *st);
    if (prep(r, "SELECT kind, target_cloud, selector, rate, canary, state, total, created,"
                " max_failures, coalesce(pause_reason, 0), failures_base, n_started"
                " FROM campaigns WHERE id = ?1", &s) != SQLITE_OK)
        return OTK_ERR_STORAGE;
    sqlite3_bind_int64(s, 1, id);
    if (sqlite3_step(s) == SQLITE_ROW) {
        st->id = id;
        st->kind = sqlite3_column_int(s, 0);
        st->target_cloud = (uint32_t)sqlite3_column_int64(s, 1);
        otk_selector_show(st->selector, sizeof st->selector, (const char *)sqlite3_column_text(s, 2));
        st->rate = (uint32_t)sqlite3_column_int64(s, 3);
        st->canary = (uint32_t)sqlite3_column_int64(s, 4);
        st->state = sqlite3_column_int(s, 5);
        st->total = (uint64_t)sqlite3_column_int64(s, 6);
        st->created_ms = sqlite3_column_int64(s, 7);
        st->max_failures = (uint32_t)sqlite3_column_int64(s, 8);
        st->pause_reason = st->state == OTK_CAMP_PAUSED ? sqlite3_column_int(s, 9) : 0;
        st->failures_base = (uint64_t)sqlite3_column_int64(s, 10);
        st->started = (uint64_t)sqlite3_column_int64(s, 11);
        rc = OTK_OK;
    }
    otk_sqlreg_fin(r, s);
    if (rc != OTK_OK)
        return rc;
    if (!outcomes)
        return OTK_OK;
    /* Recorded outcomes, plus those decided since the last step settled. */
    st->done = count(r, "SELECT count(*) FROM campaign_devices WHERE campaign = ?1 AND finished = 1",
                     id);
    st->failed = count(r, FAILED_COUNT_SQL, id);
    if (outcomes == 2)
        return OTK_OK;
    st->done += count(r, "SELECT count(*) FROM campaign_devices cd JOIN devices d ON d.id = cd.device"
                         " WHERE cd.campaign = ?1 AND cd.started IS NOT NULL AND cd.finished IS NULL"
                         " AND " DONE_COND, id);
    st->failed += count(r, "SELECT count(*) FROM campaign_devices cd JOIN devices d ON d.id = cd.device"
                            " WHERE cd.campaign = ?1 AND cd.started IS NOT NULL AND cd.finished IS NULL"
                            " AND NOT coalesce(" DONE_COND ", 0) AND " FAILED_COND, id);
    return OTK_OK;
}

/*
 * Records the outcomes decided since the last call (in-flight devices only).
 * Every change that decides one (a commit, an abort, a revocation, a
 * request dropped) is audited with its device, so a pass looks only at the
 * devices audited since the campaign's settled_seq, not at every device in
 * flight (at a million devices, mostly asleep, that was a scan a second).
 * Rows that decide nothing (OTK_AUD_UNDECIDING_SQL) are left out, which
 * spares a pass two rows of every update, and the rows of another campaign
 * starting the same devices (OTK_SETTLE_SQL, campaign_sql.h).
 */
static void settle(otk_sqlreg *r, int64_t id)
{
    sqlite3_stmt *s = NULL;
    int64_t since = -1, top = -1;
    if (prep(r, "SELECT settled_seq, (SELECT coalesce(max(seq), 0) FROM audit)"
                " FROM campaigns WHERE id = ?1", &s) == SQLITE_OK) {
        sqlite3_bind_int64(s, 1, id);
        if (sqlite3_step(s) == SQLITE_ROW) {
            since = sqlite3_column_int64(s, 0);
            top = sqlite3_column_int64(s, 1);
        }
    }
    otk_sqlreg_fin(r, s);
    s = NULL;
    if (top < 0 || top == since)
        return;
    if (prep(r, OTK_SETTLE_SQL, &s) != SQLITE_OK ||
        (sqlite3_bind_int64(s, 1, id), sqlite3_bind_int64(s, 2, since), sqlite3_step(s)) !=
            SQLITE_DONE) {
        otk_sqlreg_fin(r, s);
        return; /* settled_seq stays: the next pass looks again */
    }
    otk_sqlreg_fin(r, s);
    s = NULL;
    if (prep(r, "UPDATE campaigns SET settled_seq = ?2 WHERE id = ?1", &s) == SQLITE_OK) {
        sqlite3_bind_int64(s, 1, id);
        sqlite3_bind_int64(s, 2, top);
        (void)sqlite3_step(s);
    }
    otk_sqlreg_fin(r, s);
}

otk_status otk_campaign_failures(otk_sqlreg *r, int64_t id, otk_campaign_failure_fn fn, void *user)
{
    sqlite3_stmt *s = NULL;
    otk_status st = OTK_OK;
    int rc;
    if (r == NULL || fn == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    if (sqlite3_prepare_v2(otk_sqlreg_handle(r),
                           "SELECT device, reason FROM campaign_devices WHERE campaign = ?1"
                           " AND finished = 2 ORDER BY rowid",
                           -1, &s, NULL) != SQLITE_OK)
        return OTK_ERR_STORAGE;
    sqlite3_bind_int64(s, 1, id);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if (sqlite3_column_bytes(s, 0) == 16 &&
            fn(user, sqlite3_column_blob(s, 0), (otk_status)sqlite3_column_int(s, 1)) != 0)
            break;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        st = OTK_ERR_STORAGE;
    sqlite3_finalize(s);
    return st;
}

/*
 * Moves campaign id to state (with why, when it pauses) and audits it,
 * inside the caller's transaction. failures_base: the failures counted so
 * far when it (re)starts, so that max_failures counts from there.
 */
static otk_status set_state_tx(otk_sqlreg *r, int64_t id, int state, int reason,
                               int64_t failures_base)
{
    sqlite3_stmt *s = NULL;
    otk_status st = OTK_ERR_STORAGE;
    if (sqlite3_prepare_v2(otk_sqlreg_handle(r),
                           "UPDATE campaigns SET state = ?2, pause_reason = ?3,"
                           " failures_base = CASE WHEN ?4 < 0 THEN failures_base ELSE ?4 END"
                           " WHERE id = ?1",
                           -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(s, 1, id);
        sqlite3_bind_int(s, 2, state);
        if (state == OTK_CAMP_PAUSED)
            sqlite3_bind_int(s, 3, reason);
        sqlite3_bind_int64(s, 4, failures_base);
        if (sqlite3_step(s) == SQLITE_DONE)
            st = OTK_OK;
    }
    sqlite3_finalize(s);
    return st == OTK_OK ? audit_state(r, id, state) : st;
}

/* set_state_tx in a transaction of its own (the engine's moves). */
static void set_state(otk_sqlreg *r, int64_t id, int state, int reason)
{
    sqlite3 *db = otk_sqlreg_handle(r);
    if (otk_sql_exec(db, "BEGIN IMMEDIATE") != OTK_OK)
        return; /* busy: the next step tries again */
    if (set_state_tx(r, id, state, reason, -1) == OTK_OK && otk_sql_exec(db, "COMMIT") == OTK_OK)
        return;
    (void)otk_sql_exec(db, "ROLLBACK");
}

otk_status otk_campaign_set_state(otk_sqlreg *r, int64_t id, int state)
{
    otk_campaign_status cur;
    sqlite3 *db;
    sqlite3_stmt *s = NULL;
    if (state != OTK_CAMP_PAUSED && state != OTK_CAMP_RUNNING && state != OTK_CAMP_ABORTED)
        return OTK_ERR_INVALID_ARGUMENT;
    OTK_TRY(otk_campaign_get(r, id, &cur));
    if (cur.state == OTK_CAMP_DONE || cur.state == OTK_CAMP_ABORTED)
        return OTK_ERR_BAD_STATE;
    db = otk_sqlreg_handle(r);
    if (otk_sql_exec(db, "BEGIN IMMEDIATE") != OTK_OK)
        return OTK_ERR_BUSY;
    if (state == cur.state || (state == OTK_CAMP_RUNNING && cur.state == OTK_CAMP_CANARY)) {
        (void)otk_sql_exec(db, "ROLLBACK"); /* nothing to change */
        return OTK_OK;
    }
    /* Resuming a campaign paused in its canary phase goes back there. */
    if (state == OTK_CAMP_RUNNING && cur.canary && cur.done < cur.canary)
        state = OTK_CAMP_CANARY;
    if (set_state_tx(r, id, state, OTK_PAUSE_OPERATOR,
                     state == OTK_CAMP_PAUSED ? -1 : (int64_t)cur.failed) != OTK_OK) {
        (void)otk_sql_exec(db, "ROLLBACK");
        return OTK_ERR_STORAGE;
    }
    if (state == OTK_CAMP_ABORTED)
        settle(r, id); /* what is decided stays decided */
    if (state == OTK_CAMP_ABORTED) {
        /* Withdraw what is requested but not issued yet (want set: an older
         * set may be pending, it finishes); issued sets finish. The withdrawn
         * fail, for that reason (-2 BAD_STATE). Other campaigns that started
         * the same devices look at all theirs again once (no audit row tells
         * them of the withdrawal). */
        static const char *const sql[3] = {
            "UPDATE campaign_devices AS cd SET finished = 2, reason = -2"
            " FROM devices AS d WHERE d.id = cd.device AND cd.campaign = ?1"
            " AND cd.started IS NOT NULL AND cd.finished IS NULL AND d.state = 2 AND d.want IN (1, 2)",
            "UPDATE devices SET want = 0, want_cloud = 0 WHERE state = 2 AND want IN (1, 2)"
            " AND id IN (SELECT device FROM campaign_devices WHERE campaign = ?1"
            " AND finished = 2 AND reason = -2)",
            "UPDATE campaigns SET settled_seq = 0 WHERE id != ?1 AND state IN (1, 2, 3)"};
        int k;
        for (k = 0; k < 3; k++) {
            if (sqlite3_prepare_v2(db, sql[k], -1, &s, NULL) == SQLITE_OK) {
                sqlite3_bind_int64(s, 1, id);
                (void)sqlite3_step(s);
            }
            sqlite3_finalize(s);
            s = NULL;
        }
    }
    sqlite3_finalize(s);
    if (otk_sql_exec(db, "COMMIT") == OTK_OK)
        return OTK_OK;
    (void)otk_sql_exec(db, "ROLLBACK");
    return OTK_ERR_STORAGE;
}

size_t otk_campaign_list(otk_sqlreg *r, int64_t *ids, size_t max)
{
    sqlite3_stmt *s = NULL;
    size_t n = 0;
    if (prep(r, "SELECT id FROM campaigns ORDER BY id DESC", &s) == SQLITE_OK)
        while (n < max && sqlite3_step(s) == SQLITE_ROW)
            ids[n++] = sqlite3_column_int64(s, 0);
    otk_sqlreg_fin(r, s);
    return n;
}

/* Adds n to campaign id's count of started devices; n < 0 counts them again. */
static void add_started(otk_sqlreg *r, int64_t id, int64_t n)
{
    sqlite3_stmt *s = NULL;
    if (n == 0)
        return;
    if (prep(r, n > 0 ? "UPDATE campaigns SET n_started = n_started + ?2 WHERE id = ?1"
                      : "UPDATE campaigns SET n_started = (SELECT count(*) FROM"
                        " campaign_devices WHERE campaign = ?1 AND started IS NOT NULL)"
                        " WHERE id = ?1", &s) == SQLITE_OK) {
        sqlite3_bind_int64(s, 1, id);
        if (n > 0)
            sqlite3_bind_int64(s, 2, n);
        (void)sqlite3_step(s);
    }
    otk_sqlreg_fin(r, s);
}

/* Offers (see otk_campaign_step): where they go, how many there is room for. */
typedef struct offer_sink {
    otk_offer *v;
    size_t max, n;
} offer_sink;

/*
 * Starts up to want devices of campaign c; returns how many started. Those
 * the sink has room for are marked offered now and their NOTIFYs kept.
 */
static size_t start_devices(otk_sqlreg *r, otk_agent *a, const otk_campaign_status *c, uint64_t want,
                            offer_sink *sink)
{
    sqlite3_stmt *s = NULL, *u = NULL;
    static uint8_t ids[OTK_CAMPAIGN_STEP_MAX][16];
    uint8_t out[OTK_MSG_MAX_LEN];
    size_t n = 0, i, started = 0, len;
    if (want > OTK_CAMPAIGN_STEP_MAX)
        want = OTK_CAMPAIGN_STEP_MAX;
    if (prep(r, "SELECT device FROM campaign_devices WHERE campaign = ?1"
                " AND started IS NULL ORDER BY rowid LIMIT ?2", &s) == SQLITE_OK) {
        sqlite3_bind_int64(s, 1, c->id);
        sqlite3_bind_int64(s, 2, (sqlite3_int64)want);
        while (n < want && sqlite3_step(s) == SQLITE_ROW)
            if (sqlite3_column_bytes(s, 0) == 16)
                memcpy(ids[n++], sqlite3_column_blob(s, 0), 16);
    }
    otk_sqlreg_fin(r, s);
    if (prep(r, "UPDATE campaign_devices SET started = ?3,"
                " finished = CASE WHEN ?4 = 0 THEN NULL ELSE 2 END,"
                " reason = CASE WHEN ?4 = 0 THEN NULL ELSE ?4 END"
                " WHERE campaign = ?1 AND device = ?2", &u) != SQLITE_OK) {
        otk_sqlreg_fin(r, u);
        return 0;
    }
    for (i = 0; i < n; i++) {
        otk_status rs;
        int told;
        /* While the sink has room, the request's own put marks the device
         * told now, unless it was told of the same request already (an
         * earlier request of the same kind, offered or held asleep: it
         * keeps its timing). */
        if (sink->n < sink->max)
            otk_sqlreg_offer_with_put(r, otk_wall_ms());
        /* A request the agent refuses (the device revoked since selection, a
         * target cloud this agent does not serve) fails the device at once,
         * with the refusal as its reason. */
        rs = otk_agent_request_update(a, ids[i], c->kind, c->target_cloud, out, sizeof out, &len);
        told = otk_sqlreg_offered(r);
        /* Its offer goes with the start: the notify pass, which would load
         * the row again and mark it in a transaction of its own, passes it by. */
        if (rs == OTK_OK && told && sink->n < sink->max && len > 0 && len <= sizeof sink->v[0].msg) {
            otk_offer *f = &sink->v[sink->n++];
            memcpy(f->id, ids[i], 16);
            memcpy(f->msg, out, len);
            f->len = (uint8_t)len;
        }
        sqlite3_reset(u);
        sqlite3_bind_int64(u, 1, c->id);
        sqlite3_bind_blob(u, 2, ids[i], 16, SQLITE_STATIC);
        sqlite3_bind_int64(u, 3, otk_wall_ms());
        sqlite3_bind_int(u, 4, rs);
        if (sqlite3_step(u) == SQLITE_DONE)
            started++;
    }
    otk_sqlreg_fin(r, u);
    /* The count kept with the campaign; counted again when it says devices
     * are left that the table does not have (a step cut short by a crash). */
    add_started(r, c->id, n == 0 && c->started < c->total ? -1 : (int64_t)started);
    return started;
}

#define OUTCOME_MS 1000

size_t otk_campaign_step(otk_sqlreg *r, otk_agent *a, otk_offer *offers, size_t max_offers,
                         size_t *n_offers)
{
    static int64_t outcome_at[32], outcome_id[32], settle_at[32], settle_id[32];
    int64_t ids[32];
    size_t n, i, started = 0, n_step, kept;
    otk_status own;
    offer_sink sink, no_sink = {NULL, 0, 0};
    sink.v = offers;
    sink.max = offers != NULL ? max_offers : 0;
    sink.n = 0;
    if (n_offers != NULL)
        *n_offers = 0;
    if (r == NULL || a == NULL)
        return 0;
    n = otk_campaign_list(r, ids, 32);
    for (i = 0; i < n; i++) {
        otk_campaign_status c;
        uint64_t budget, limit, due;
        int64_t age;
        /* Outcomes are counted only when they decide something: in the
         * canary phase, and once every device has been started; they are
         * recorded (settled) before they are counted. */
        if (get_status(r, ids[i], &c, 0) != OTK_OK ||
            (c.state != OTK_CAMP_CANARY && c.state != OTK_CAMP_RUNNING))
            continue;
        if (c.state == OTK_CAMP_CANARY) {
            settle(r, c.id);
            if (get_status(r, ids[i], &c, 2) != OTK_OK)
                continue;
        } else if (c.started < c.total) {
            /* Running, still starting devices: outcomes decide nothing yet
             * (but the error threshold) and are recorded as they come, at
             * most every OUTCOME_MS. */
            int64_t now = otk_wall_ms();
            if (now - settle_at[i % 32] >= OUTCOME_MS || settle_id[i % 32] != c.id) {
                settle_at[i % 32] = now;
                settle_id[i % 32] = c.id;
                settle(r, c.id);
                if (c.max_failures) {
                    c.failed = count(r, FAILED_COUNT_SQL, c.id);
                }
            }
        } else {
            /* All started: only completion is left to see, at most every
             * OUTCOME_MS. */
            int64_t now = otk_wall_ms();
            if (now - outcome_at[i % 32] < OUTCOME_MS && outcome_id[i % 32] == c.id)
                continue;
            outcome_at[i % 32] = now;
            outcome_id[i % 32] = c.id;
            settle(r, c.id);
            /* Done once none is left undecided: one index probe (counting
             * the done ones walked them all, every second, so that the
             * tail of a 100,000-device campaign cost what it had done). The
             * failed ones are counted: the threshold needs them, and they
             * are few. */
            c.failed = count(r, FAILED_COUNT_SQL, c.id);
            c.done = count(r, OTK_UNDECIDED_SQL, c.id) ? 0 : c.total - c.failed;
        }
        if (c.done + c.failed >= c.total) {
            set_state(r, c.id, OTK_CAMP_DONE, 0);
            continue;
        }
        if (c.max_failures && c.failed >= c.failures_base + c.max_failures) {
            set_state(r, c.id, OTK_CAMP_PAUSED, OTK_PAUSE_THRESHOLD);
            continue;
        }
        if (c.state == OTK_CAMP_CANARY) {
            if (c.failed > c.failures_base) { /* the cloud refused a canary: an operator decides */
                set_state(r, c.id, OTK_CAMP_PAUSED, OTK_PAUSE_CANARY);
                continue;
            }
            if (c.done >= c.canary) {
                set_state(r, c.id, OTK_CAMP_RUNNING, 0);
                c.state = OTK_CAMP_RUNNING;
            }
        }
        limit = c.state == OTK_CAMP_CANARY ? c.canary : c.total;
        if (c.started >= limit)
            continue;
        /* rate devices per second since the campaign began (the first at once). */
        age = otk_wall_ms() - c.created_ms;
        due = 1u + (uint64_t)(age > 0 ? age : 0) * c.rate / 1000u;
        if (due > limit)
            due = limit;
        if (due <= c.started)
            continue;
        budget = due - c.started;
        /* The step's devices in one transaction: one commit, not one per
         * device (a crash in the middle starts none of them). */
        own = otk_sqlreg_batch_begin(r);
        if (own == OTK_ERR_BUSY)
            continue; /* the next tick tries again */
        kept = sink.n;
        /* Inside a caller's transaction (own not OK) nothing is offered:
         * the offers could go out before a commit that may not come. */
        n_step = start_devices(r, a, &c, budget, own == OTK_OK ? &sink : &no_sink);
        if (own != OTK_OK || otk_sqlreg_batch_end(r) == OTK_OK)
            started += n_step;
        else
            sink.n = kept; /* rolled back: nothing of it to offer */
    }
    if (n_offers != NULL)
        *n_offers = sink.n;
    return started;
}

/*
 * A device that polls (UPDATE_REQ with nothing waiting for it) while a
 * running campaign includes it and has not started it yet is started now,
 * if the campaign's rate allows one more device at this moment (the poll
 * takes a slot of the rate; it does not pass it). Returns 1 when started.
 */
int otk_campaign_poll(otk_sqlreg *r, otk_agent *a, const uint8_t id[16])
{
    sqlite3 *db = otk_sqlreg_handle(r);
    sqlite3_stmt *s = NULL;
    otk_campaign_status c;
    int64_t cid = 0, age;
    uint64_t due, limit;
    uint8_t out[OTK_MSG_MAX_LEN];
    size_t len;
    otk_status rs;
    int started = 0;
    if (prep(r, "SELECT cd.campaign FROM campaign_devices cd JOIN campaigns c"
                " ON c.id = cd.campaign WHERE cd.device = ?1 AND cd.started IS NULL"
                " AND c.state IN (1, 2) ORDER BY cd.campaign LIMIT 1", &s) != SQLITE_OK)
        return 0;
    sqlite3_bind_blob(s, 1, id, 16, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW)
        cid = sqlite3_column_int64(s, 0);
    otk_sqlreg_fin(r, s);
    if (cid == 0 || get_status(r, cid, &c, 0) != OTK_OK)
        return 0;
    limit = c.state == OTK_CAMP_CANARY ? c.canary : c.total;
    age = otk_wall_ms() - c.created_ms;
    due = 1u + (uint64_t)(age > 0 ? age : 0) * c.rate / 1000u;
    if (due > limit)
        due = limit;
    if (c.started >= due)
        return 0; /* no slot now: the engine reaches it in its turn */
    rs = otk_agent_request_update(a, id, c.kind, c.target_cloud, out, sizeof out, &len);
    if (prep(r, "UPDATE campaign_devices SET started = ?3,"
                " finished = CASE WHEN ?4 = 0 THEN NULL ELSE 2 END,"
                " reason = CASE WHEN ?4 = 0 THEN NULL ELSE ?4 END"
                " WHERE campaign = ?1 AND device = ?2 AND started IS NULL", &s) == SQLITE_OK) {
        sqlite3_bind_int64(s, 1, cid);
        sqlite3_bind_blob(s, 2, id, 16, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, otk_wall_ms());
        sqlite3_bind_int(s, 4, rs);
        if (sqlite3_step(s) == SQLITE_DONE && sqlite3_changes(db) == 1) {
            started = rs == OTK_OK;
            otk_sqlreg_fin(r, s);
            s = NULL;
            add_started(r, cid, 1);
        }
    }
    otk_sqlreg_fin(r, s);
    return started;
}
