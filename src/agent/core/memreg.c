/*
 * In-memory registry: an open-addressing hash table of device records,
 * a short batch list and audit counters. For tests, tools and dry runs;
 * the daemon uses SQLite or PostgreSQL behind the same interface.
 */
#include "../internal.h"

#define MAX_BATCHES 64
#define AUDIT_KINDS 16

struct otk_memreg {
    otk_agent_device *slots; /* NULL-free table: used[i] marks a live slot */
    uint8_t *used;
    size_t cap, count;
    struct {
        uint8_t id[OTK_BATCH_ID_LEN];
        uint8_t pk[OTK_PK_LEN];
    } batches[MAX_BATCHES];
    size_t n_batches;
    size_t audit[AUDIT_KINDS];
    size_t audit_total;
    unsigned fail_puts;
};

static size_t hash_id(const uint8_t id[16], size_t cap)
{
    uint64_t h = 1469598103934665603ull;
    size_t i;
    for (i = 0; i < OTK_DEVICE_ID_LEN; i++)
        h = (h ^ id[i]) * 1099511628211ull;
    return (size_t)(h & (cap - 1));
}

static size_t find(const otk_memreg *m, const uint8_t id[16])
{
    size_t i = hash_id(id, m->cap);
    while (m->used[i] && memcmp(m->slots[i].id, id, OTK_DEVICE_ID_LEN) != 0)
        i = (i + 1) & (m->cap - 1);
    return i;
}

static int grow(otk_memreg *m)
{
    otk_memreg old = *m;
    size_t i;
    m->cap = old.cap ? old.cap * 2 : 64;
    m->slots = calloc(m->cap, sizeof *m->slots);
    m->used = calloc(m->cap, 1);
    if (m->slots == NULL || m->used == NULL)
        abort();
    for (i = 0; i < old.cap; i++)
        if (old.used[i]) {
            size_t j = find(m, old.slots[i].id);
            m->slots[j] = old.slots[i];
            m->used[j] = 1;
        }
    if (old.slots)
        otk_wipe(old.slots, old.cap * sizeof *old.slots);
    free(old.slots);
    free(old.used);
    return 0;
}

otk_memreg *otk_memreg_new(void)
{
    otk_memreg *m = calloc(1, sizeof *m);
    if (m == NULL)
        abort();
    grow(m);
    return m;
}

void otk_memreg_free(otk_memreg *m)
{
    if (m == NULL)
        return;
    otk_wipe(m->slots, m->cap * sizeof *m->slots);
    free(m->slots);
    free(m->used);
    otk_wipe(m, sizeof *m);
    free(m);
}

otk_status otk_memreg_add_batch(otk_memreg *m, const uint8_t batch_id[8], const uint8_t pk[32])
{
    if (m == NULL || batch_id == NULL || pk == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    if (m->n_batches == MAX_BATCHES)
        return OTK_ERR_BUFFER_TOO_SMALL;
    memcpy(m->batches[m->n_batches].id, batch_id, OTK_BATCH_ID_LEN);
    memcpy(m->batches[m->n_batches].pk, pk, OTK_PK_LEN);
    m->n_batches++;
    return OTK_OK;
}

static otk_status mr_get_batch(void *ctx, const uint8_t batch_id[8], uint8_t pk[32])
{
    otk_memreg *m = ctx;
    size_t i;
    for (i = 0; i < m->n_batches; i++)
        if (memcmp(m->batches[i].id, batch_id, OTK_BATCH_ID_LEN) == 0) {
            memcpy(pk, m->batches[i].pk, OTK_PK_LEN);
            return OTK_OK;
        }
    return OTK_ERR_UNKNOWN_BATCH;
}

static otk_status mr_get_device(void *ctx, const uint8_t id[16], otk_agent_device *out)
{
    otk_memreg *m = ctx;
    size_t i = find(m, id);
    if (!m->used[i])
        return OTK_ERR_NOT_FOUND;
    *out = m->slots[i];
    return OTK_OK;
}

static void count(otk_memreg *m, const otk_audit *ev)
{
    if (ev == NULL)
        return;
    m->audit_total++;
    if (ev->kind < AUDIT_KINDS)
        m->audit[ev->kind]++;
}

static otk_status mr_put_device(void *ctx, const otk_agent_device *dev, const otk_audit *ev)
{
    otk_memreg *m = ctx;
    size_t i;
    if (m->fail_puts) {
        m->fail_puts--;
        return OTK_ERR_STORAGE;
    }
    if ((m->count + 1) * 4 > m->cap * 3)
        grow(m);
    i = find(m, dev->id);
    if (!m->used[i])
        m->count++;
    m->used[i] = 1;
    m->slots[i] = *dev;
    count(m, ev);
    return OTK_OK;
}

static otk_status mr_audit(void *ctx, const otk_audit *ev)
{
    count(ctx, ev);
    return OTK_OK;
}

void otk_memreg_bind(otk_memreg *m, otk_registry *out)
{
    memset(out, 0, sizeof *out);
    out->ctx = m;
    out->get_batch = mr_get_batch;
    out->get_device = mr_get_device;
    out->put_device = mr_put_device;
    out->audit = mr_audit;
}

size_t otk_memreg_audit_count(const otk_memreg *m, int kind)
{
    if (kind == 0)
        return m->audit_total;
    return kind > 0 && kind < AUDIT_KINDS ? m->audit[kind] : 0;
}

void otk_memreg_fail_puts(otk_memreg *m, unsigned n)
{
    m->fail_puts = n;
}
