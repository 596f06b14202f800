/* The store front (include/otakey/store.h): picks a backend, forwards calls. */
#include "../internal.h"

#include "store_internal.h"

struct otk_store {
    const otk_store_ops *ops;
    void *impl;
    int kind;
};

int otk_store_kind_of(const char *database)
{
    if (database == NULL)
        return 0;
    /* libpq URIs, or a keyword conninfo ("host=... dbname=..."): a file path
     * never holds a '=' before its first '/'. */
    if (!strncmp(database, "postgresql://", 13) || !strncmp(database, "postgres://", 11))
        return OTK_STORE_POSTGRES;
    {
        const char *eq = strchr(database, '='), *sl = strchr(database, '/');
        if (eq != NULL && (sl == NULL || eq < sl))
            return OTK_STORE_POSTGRES;
    }
    return OTK_STORE_SQLITE;
}

otk_status otk_store_open(const char *database, const otk_crypto *crypto, int create,
                          otk_store **out, char *err, size_t err_size)
{
    otk_store *s;
    otk_status st;
    if (out == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    *out = NULL;
    if (database == NULL || crypto == NULL || database[0] == '\0') {
        if (err && err_size)
            snprintf(err, err_size, "no database given");
        return OTK_ERR_INVALID_ARGUMENT;
    }
    s = calloc(1, sizeof *s);
    if (s == NULL)
        abort();
    s->kind = otk_store_kind_of(database);
    if (s->kind == OTK_STORE_POSTGRES)
        st = otk_store_pg_open(database, crypto, &s->impl, &s->ops, err, err_size);
    else
        st = otk_store_sqlite_open(database, crypto, create, &s->impl, &s->ops, err, err_size);
    if (st != OTK_OK) {
        free(s);
        return st;
    }
    *out = s;
    return OTK_OK;
}

void otk_store_close(otk_store *s)
{
    if (s == NULL)
        return;
    s->ops->close(s->impl);
    free(s);
}

int otk_store_kind(const otk_store *s)
{
    return s ? s->kind : 0;
}

void otk_store_bind(otk_store *s, otk_registry *out)
{
    s->ops->bind(s->impl, out);
}

otk_status otk_store_batch_begin(otk_store *s)
{
    if (s == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    return s->ops->batch ? s->ops->batch(s->impl, 1) : OTK_OK;
}

int otk_store_batches(const otk_store *s)
{
    return s != NULL && s->ops->batch != NULL;
}

otk_status otk_store_batch_end(otk_store *s)
{
    if (s == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    return s->ops->batch ? s->ops->batch(s->impl, 0) : OTK_OK;
}

otk_status otk_store_release(otk_store *s)
{
    return s ? s->ops->release(s->impl) : OTK_ERR_INVALID_ARGUMENT;
}

otk_status otk_store_add_batch(otk_store *s, const uint8_t batch_id[8], const char *product,
                               const uint8_t pk[32])
{
    otk_registry reg;
    otk_audit ev;
    if (s == NULL || batch_id == NULL || product == NULL || pk == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    OTK_TRY(s->ops->add_batch(s->impl, batch_id, product, pk));
    /* The batch is there; its audit row follows (a failure here is reported,
     * the batch stays). */
    memset(&ev, 0, sizeof ev);
    ev.kind = OTK_AUD_PRODUCT_CREATED;
    s->ops->bind(s->impl, &reg);
    return reg.audit(reg.ctx, &ev);
}

otk_status otk_store_list_batches(otk_store *s, otk_batch_fn fn, void *user)
{
    if (s == NULL || fn == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    return s->ops->list_batches(s->impl, fn, user);
}

otk_status otk_store_list_devices(otk_store *s, const uint8_t *id, int state, otk_device_fn fn,
                                  void *user)
{
    if (s == NULL || fn == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    return s->ops->list_devices(s->impl, id, NULL, state, fn, user);
}

otk_status otk_store_list_devices_after(otk_store *s, const uint8_t *after, int state,
                                        otk_device_fn fn, void *user)
{
    if (s == NULL || fn == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    return s->ops->list_devices(s->impl, NULL, after, state, fn, user);
}

void otk_store_set_actor(otk_store *s, const char *actor)
{
    if (s != NULL)
        s->ops->set_actor(s->impl, actor ? actor : "");
}

otk_status otk_store_audit_verify(otk_store *s, uint64_t *rows, uint64_t *bad_seq)
{
    if (s == NULL || rows == NULL || bad_seq == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    return s->ops->audit_verify(s->impl, rows, bad_seq);
}

uint64_t otk_store_audit_count(otk_store *s, int kind)
{
    return s ? s->ops->audit_count(s->impl, kind) : 0;
}

otk_status otk_store_audit_list(otk_store *s, otk_audit_fn fn, void *user)
{
    if (s == NULL || fn == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    return s->ops->audit_list(s->impl, 0, fn, user);
}

otk_status otk_store_audit_list_after(otk_store *s, uint64_t after, otk_audit_fn fn, void *user)
{
    if (s == NULL || fn == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    return s->ops->audit_list(s->impl, after, fn, user);
}

size_t otk_store_due_notifications(otk_store *s, uint8_t (*ids)[16], size_t max,
                                   unsigned resend_ms)
{
    if (s == NULL || ids == NULL || max == 0)
        return 0;
    return s->ops->due_notifications(s->impl, ids, max, resend_ms);
}

otk_status otk_store_campaign_failures(otk_store *s, int64_t id, otk_campaign_failure_fn fn,
                                       void *user)
{
    if (s == NULL || fn == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    return s->ops->campaign_failures(s->impl, id, fn, user);
}

size_t otk_store_hold_offers(otk_store *s, const uint8_t (*ids)[16], size_t n, unsigned resend_ms,
                             unsigned hold_ms)
{
    if (s == NULL || ids == NULL || n == 0)
        return 0;
    return s->ops->hold_offers(s->impl, ids, n, resend_ms, hold_ms);
}

size_t otk_store_due_cleanups(otk_store *s, uint8_t (*ids)[16], size_t max, unsigned retry_ms)
{
    if (s == NULL || ids == NULL || max == 0)
        return 0;
    return s->ops->due_cleanups(s->impl, ids, max, retry_ms);
}

otk_status otk_store_campaign_create(otk_store *s, int kind, uint32_t target_cloud,
                                     const char *selector, uint32_t rate, uint32_t canary,
                                     uint32_t max_failures, int64_t *id, uint64_t *total)
{
    if (s == NULL || selector == NULL || id == NULL || total == NULL || rate == 0 ||
        (kind != OTK_WANT_ROTATE && kind != OTK_WANT_SWITCH) || strlen(selector) > 65536)
        return OTK_ERR_INVALID_ARGUMENT;
    return s->ops->campaign_create(s->impl, kind, target_cloud, selector, rate, canary,
                                   max_failures, id, total);
}

size_t otk_store_campaign_step(otk_store *s, otk_agent *a, otk_offer *offers, size_t max_offers,
                               size_t *n_offers)
{
    if (n_offers != NULL)
        *n_offers = 0;
    if (offers == NULL || n_offers == NULL)
        max_offers = 0;
    return s && a ? s->ops->campaign_step(s->impl, a, offers, max_offers, n_offers) : 0;
}

int otk_store_campaign_poll(otk_store *s, otk_agent *a, const uint8_t id[16])
{
    return s && a && id ? s->ops->campaign_poll(s->impl, a, id) : 0;
}

otk_status otk_store_campaign_get(otk_store *s, int64_t id, otk_campaign_status *st)
{
    if (s == NULL || st == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    return s->ops->campaign_get(s->impl, id, st);
}

otk_status otk_store_campaign_set_state(otk_store *s, int64_t id, int state)
{
    if (s == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    if (state != OTK_CAMP_PAUSED && state != OTK_CAMP_RUNNING && state != OTK_CAMP_ABORTED)
        return OTK_ERR_INVALID_ARGUMENT;
    return s->ops->campaign_set_state(s->impl, id, state);
}

size_t otk_store_campaign_list(otk_store *s, int64_t *ids, size_t max)
{
    return s && ids ? s->ops->campaign_list(s->impl, ids, max) : 0;
}

