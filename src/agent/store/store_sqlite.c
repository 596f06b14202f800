/*
 * The SQLite backend of the store: the registry of reg_sqlite.c and the
 * campaigns of campaign_sqlite.c, plus the operator's listings.
 */
#include "../internal.h"

#include <unistd.h>

#include "sqlreg_internal.h"
#include "store_internal.h"

static void s_close(void *impl)
{
    otk_sqlreg_close(impl);
}

static void s_bind(void *impl, otk_registry *out)
{
    otk_sqlreg_bind(impl, out);
}

static otk_status s_release(void *impl)
{
    (void)impl; /* every registry write commits on its own */
    return OTK_OK;
}

static otk_status s_add_batch(void *impl, const uint8_t batch_id[8], const char *product,
                              const uint8_t pk[32])
{
    return otk_sqlreg_add_batch(impl, batch_id, product, pk);
}

static int blob_to(sqlite3_stmt *s, int col, void *dst, size_t n)
{
    if ((size_t)sqlite3_column_bytes(s, col) != n || sqlite3_column_blob(s, col) == NULL)
        return 0;
    memcpy(dst, sqlite3_column_blob(s, col), n);
    return 1;
}

static otk_status s_list_batches(void *impl, otk_batch_fn fn, void *user)
{
    sqlite3_stmt *s = NULL;
    otk_batch_info b;
    int rc;
    if (sqlite3_prepare_v2(otk_sqlreg_handle(impl),
                           "SELECT b.batch_id, b.product, (SELECT count(*) FROM devices d"
                           " WHERE d.batch_id = b.batch_id) FROM batches b ORDER BY b.batch_id",
                           -1, &s, NULL) != SQLITE_OK)
        return OTK_ERR_STORAGE;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        memset(&b, 0, sizeof b);
        if (!blob_to(s, 0, b.batch_id, sizeof b.batch_id))
            continue;
        snprintf(b.product, sizeof b.product, "%s", (const char *)sqlite3_column_text(s, 1));
        b.devices = (uint64_t)sqlite3_column_int64(s, 2);
        if (fn(user, &b)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? OTK_OK : OTK_ERR_STORAGE;
}

static otk_status s_list_devices(void *impl, const uint8_t *id, const uint8_t *after, int state,
                                 otk_device_fn fn, void *user)
{
    sqlite3_stmt *s = NULL;
    otk_device_info d;
    int rc;
    if (sqlite3_prepare_v2(otk_sqlreg_handle(impl),
                           "SELECT id, batch_id, state, c_version, c_cloud, c_user, p_version,"
                           " issued, want, updated FROM devices WHERE (?1 IS NULL OR id = ?1)"
                           " AND (?2 = 0 OR state = ?2) AND (?3 IS NULL OR id > ?3) ORDER BY id",
                           -1, &s, NULL) != SQLITE_OK)
        return OTK_ERR_STORAGE;
    if (id)
        sqlite3_bind_blob(s, 1, id, 16, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, state);
    if (after)
        sqlite3_bind_blob(s, 3, after, 16, SQLITE_STATIC);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *u = (const char *)sqlite3_column_text(s, 5);
        memset(&d, 0, sizeof d);
        if (!blob_to(s, 0, d.id, 16) || !blob_to(s, 1, d.batch_id, 8))
            continue;
        d.state = sqlite3_column_int(s, 2);
        d.version = (uint32_t)sqlite3_column_int64(s, 3);
        d.cloud = (uint32_t)sqlite3_column_int64(s, 4);
        snprintf(d.user, sizeof d.user, "%s", u ? u : "");
        d.pending_version = (uint32_t)sqlite3_column_int64(s, 6);
        d.issued = (uint32_t)sqlite3_column_int64(s, 7);
        d.want = sqlite3_column_int(s, 8);
        d.last_seen_ms = sqlite3_column_int64(s, 9);
        if (fn(user, &d)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? OTK_OK : OTK_ERR_STORAGE;
}

static otk_status s_audit_verify(void *impl, uint64_t *rows, uint64_t *bad_seq)
{
    return otk_sqlreg_audit_verify(impl, rows, bad_seq);
}

static uint64_t s_audit_count(void *impl, int kind)
{
    return otk_sqlreg_audit_count(impl, kind);
}

static int s_camp_poll(void *impl, otk_agent *a, const uint8_t id[16])
{
    return otk_campaign_poll(impl, a, id);
}

static void s_set_actor(void *impl, const char *actor)
{
    otk_sqlreg_set_actor(impl, actor);
}

static otk_status s_audit_list(void *impl, uint64_t after, otk_audit_fn fn, void *user)
{
    sqlite3_stmt *s = NULL;
    otk_audit_row r;
    int rc;
    if (sqlite3_prepare_v2(otk_sqlreg_handle(impl),
                           "SELECT seq, ts, kind, msg_type, device, version, code, actor FROM audit"
                           " WHERE seq > ?1 ORDER BY seq",
                           -1, &s, NULL) != SQLITE_OK)
        return OTK_ERR_STORAGE;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)after);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        memset(&r, 0, sizeof r);
        r.seq = (uint64_t)sqlite3_column_int64(s, 0);
        r.ts_ms = sqlite3_column_int64(s, 1);
        r.ev.kind = (uint8_t)sqlite3_column_int(s, 2);
        r.ev.msg_type = (uint8_t)sqlite3_column_int(s, 3);
        r.ev.has_id = (uint8_t)blob_to(s, 4, r.ev.id, 16);
        r.ev.version = (uint32_t)sqlite3_column_int64(s, 5);
        r.ev.code = (otk_status)sqlite3_column_int(s, 6);
        if (sqlite3_column_type(s, 7) == SQLITE_TEXT)
            snprintf(r.actor, sizeof r.actor, "%s", (const char *)sqlite3_column_text(s, 7));
        if (fn(user, &r)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? OTK_OK : OTK_ERR_STORAGE;
}

static size_t s_due(void *impl, uint8_t (*ids)[16], size_t max, unsigned resend_ms)
{
    return otk_sqlreg_due_notifications(impl, ids, max, resend_ms);
}

static otk_status s_camp_create(void *impl, int kind, uint32_t target_cloud, const char *selector,
                                uint32_t rate, uint32_t canary, uint32_t max_failures,
                                int64_t *id, uint64_t *total)
{
    return otk_campaign_create(impl, kind, target_cloud, selector, rate, canary, max_failures, id,
                               total);
}

static size_t s_camp_step(void *impl, otk_agent *a, otk_offer *offers, size_t max_offers,
                          size_t *n_offers)
{
    return otk_campaign_step(impl, a, offers, max_offers, n_offers);
}

static otk_status s_camp_get(void *impl, int64_t id, otk_campaign_status *st)
{
    return otk_campaign_get(impl, id, st);
}

static otk_status s_camp_set(void *impl, int64_t id, int state)
{
    return otk_campaign_set_state(impl, id, state);
}

static size_t s_camp_list(void *impl, int64_t *ids, size_t max)
{
    return otk_campaign_list(impl, ids, max);
}

static otk_status s_camp_failures(void *impl, int64_t id, otk_campaign_failure_fn fn, void *user)
{
    return otk_campaign_failures(impl, id, fn, user);
}

static size_t s_due_cleanups(void *impl, uint8_t (*ids)[16], size_t max, unsigned retry_ms)
{
    return otk_sqlreg_due_cleanups(impl, ids, max, retry_ms);
}

static size_t s_hold_offers(void *impl, const uint8_t (*ids)[16], size_t n, unsigned resend_ms,
                            unsigned hold_ms)
{
    return otk_sqlreg_hold_offers(impl, ids, n, resend_ms, hold_ms);
}

static otk_status s_batch(void *impl, int begin)
{
    return begin ? otk_sqlreg_batch_begin(impl) : otk_sqlreg_batch_end(impl);
}

static const otk_store_ops sqlite_ops = {
    s_close,        s_bind,        s_release,      s_add_batch,   s_list_batches,
    s_list_devices, s_audit_verify, s_audit_count, s_audit_list,  s_due,
    s_camp_create,  s_camp_step,   s_camp_get,     s_camp_set,    s_camp_list,
    s_batch,        s_due_cleanups, s_camp_failures, s_camp_poll, s_set_actor,
    s_hold_offers,
};

otk_status otk_store_sqlite_open(const char *path, const otk_crypto *crypto, int create,
                                 void **impl, const otk_store_ops **ops, char *err,
                                 size_t err_size)
{
    otk_sqlreg *r = NULL;
    if (!create && access(path, F_OK) != 0) {
        if (err && err_size)
            snprintf(err, err_size, "no registry at '%s'", path);
        return OTK_ERR_NOT_FOUND;
    }
    OTK_TRY(otk_sqlreg_open(path, crypto, &r, err, err_size));
    *impl = r;
    *ops = &sqlite_ops;
    return OTK_OK;
}
