/*
 * Admission control in front of the agent core (include/otakey/ratelimit.h).
 *
 * Token buckets count in thousandths of a token so that integer refills
 * stay exact at any rate: every elapsed millisecond adds `rate` of them.
 */
#include "../internal.h"

#include <stdint.h>
#include <string.h>
#include <time.h>

#include "otakey/proto.h"
#include "otakey/ratelimit.h"
#include "otakey/wire.h"

typedef struct bucket {
    uint64_t milli; /* tokens x 1000 */
    uint64_t at_ms; /* last refill */
} bucket;

typedef struct client_slot {
    uint8_t id[OTK_DEVICE_ID_LEN];
    uint8_t used;
    bucket b;
} client_slot;

struct otk_rl {
    otk_rl_config cfg;
    client_slot *slots;
    uint64_t seed;
    bucket refusals;
    otk_rl_stats st;
    uint64_t dropped_at_last_report, last_report_ms;
    otk_agent_device scratch; /* screening lookups: ~1 KiB, kept off the stack */
};

void otk_rl_defaults(otk_rl_config *cfg)
{
    cfg->client_rate = 20;
    cfg->client_burst = 40;
    cfg->refusal_rate = 20;
    cfg->refusal_burst = 200;
    cfg->report_ms = 10000;
    cfg->clients = 16384;
}

static void refill(bucket *b, unsigned rate, unsigned burst, uint64_t now_ms)
{
    uint64_t cap = (uint64_t)burst * 1000u;
    if (now_ms > b->at_ms) {
        uint64_t add = (now_ms - b->at_ms) * rate;
        b->milli = cap - b->milli < add ? cap : b->milli + add;
    }
    b->at_ms = now_ms;
}

/* Takes one token: 1 when there was one. */
static int take(bucket *b, unsigned rate, unsigned burst, uint64_t now_ms)
{
    refill(b, rate, burst, now_ms);
    if (b->milli < 1000u)
        return 0;
    b->milli -= 1000u;
    return 1;
}

otk_status otk_rl_new(const otk_rl_config *cfg, otk_rl **out)
{
    otk_rl *rl;
    if (out == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    *out = NULL;
    if (cfg == NULL || (cfg->client_rate && cfg->client_burst == 0) ||
        (cfg->refusal_rate && cfg->refusal_burst == 0) || cfg->report_ms < 100 ||
        cfg->clients < 64 || (cfg->clients & (cfg->clients - 1)) != 0 || cfg->clients > (1u << 24))
        return OTK_ERR_INVALID_ARGUMENT;
    rl = calloc(1, sizeof *rl);
    if (rl == NULL)
        abort();
    rl->slots = calloc(cfg->clients, sizeof *rl->slots);
    if (rl->slots == NULL)
        abort();
    rl->cfg = *cfg;
    rl->refusals.milli = (uint64_t)cfg->refusal_burst * 1000u;
    rl->last_report_ms = UINT64_MAX; /* set by the first otk_rl_report */
    /* Client ids are chosen by clients: a random seed keeps them from
     * aiming at one slot (a collision only resets a bucket to full). */
    rl->seed = (uint64_t)(uintptr_t)rl ^ ((uint64_t)time(NULL) << 20) ^ 0x9e3779b97f4a7c15u;
    *out = rl;
    return OTK_OK;
}

void otk_rl_free(otk_rl *rl)
{
    if (rl == NULL)
        return;
    otk_wipe(&rl->scratch, sizeof rl->scratch);
    free(rl->slots);
    free(rl);
}

static client_slot *slot_for(otk_rl *rl, const uint8_t id[16], uint64_t now_ms)
{
    uint64_t h = rl->seed;
    size_t i;
    client_slot *s;
    for (i = 0; i < OTK_DEVICE_ID_LEN; i++) /* FNV-1a */
        h = (h ^ id[i]) * 0x100000001b3u;
    s = &rl->slots[(h ^ (h >> 29)) & (rl->cfg.clients - 1)];
    if (!s->used || memcmp(s->id, id, OTK_DEVICE_ID_LEN) != 0) {
        memcpy(s->id, id, OTK_DEVICE_ID_LEN);
        s->used = 1;
        s->b.milli = (uint64_t)rl->cfg.client_burst * 1000u;
        s->b.at_ms = now_ms;
    }
    return s;
}

/* Screening while the refusal budget is spent: 1 when the core should see it. */
static int screen(otk_rl *rl, const otk_agent *a, const uint8_t *msg, size_t len)
{
    otk_msg m;
    uint8_t pk[OTK_PK_LEN];
    otk_status st;
    if (otk_msg_decode(msg, len, &m) != OTK_OK) {
        rl->st.malformed++;
        return 0;
    }
    if (m.type == OTK_MSG_CLAIM) {
        st = a->reg.get_batch(a->reg.ctx, m.batch_id, pk);
        if (st == OTK_OK)
            st = otk_mac_check(a->crypto, pk, OTK_PK_LEN, msg, otk_msg_auth_offset(m.type, len),
                               NULL, 0);
        otk_wipe(pk, sizeof pk);
        if (st == OTK_ERR_BAD_MAC || st == OTK_ERR_NOT_FOUND || st == OTK_ERR_UNKNOWN_BATCH) {
            rl->st.bad_claim++;
            return 0;
        }
        return 1; /* verified, or a storage error the core will report */
    }
    st = a->reg.get_device(a->reg.ctx, m.device_id, &rl->scratch);
    otk_wipe(&rl->scratch, sizeof rl->scratch);
    if (st == OTK_ERR_NOT_FOUND) {
        rl->st.unknown_device++;
        return 0;
    }
    return 1;
}

otk_status otk_rl_admit(otk_rl *rl, const otk_agent *a, const uint8_t client[16],
                        const uint8_t *msg, size_t len, uint64_t now_ms)
{
    if (rl == NULL || a == NULL || client == NULL || (msg == NULL && len))
        return OTK_ERR_INVALID_ARGUMENT;
    if (rl->cfg.client_rate &&
        !take(&slot_for(rl, client, now_ms)->b, rl->cfg.client_rate, rl->cfg.client_burst, now_ms)) {
        rl->st.over_client_rate++;
        return OTK_ERR_RATE_LIMITED;
    }
    if (rl->cfg.refusal_rate) {
        refill(&rl->refusals, rl->cfg.refusal_rate, rl->cfg.refusal_burst, now_ms);
        if (rl->refusals.milli < 1000u && !screen(rl, a, msg, len))
            return OTK_ERR_RATE_LIMITED;
    }
    rl->st.admitted++;
    return OTK_OK;
}

void otk_rl_core_refused(otk_rl *rl, uint64_t now_ms)
{
    if (rl == NULL || rl->cfg.refusal_rate == 0)
        return;
    (void)take(&rl->refusals, rl->cfg.refusal_rate, rl->cfg.refusal_burst, now_ms);
}

int otk_rl_refusal(otk_rl *rl, uint64_t now_ms)
{
    if (rl == NULL || rl->cfg.refusal_rate == 0)
        return 1;
    if (take(&rl->refusals, rl->cfg.refusal_rate, rl->cfg.refusal_burst, now_ms))
        return 1;
    rl->st.unaudited++;
    return 0;
}

static uint64_t dropped_total(const otk_rl_stats *s)
{
    return s->over_client_rate + s->malformed + s->bad_claim + s->unknown_device + s->unaudited;
}

uint64_t otk_rl_report(otk_rl *rl, const otk_agent *a, uint64_t now_ms, otk_rl_stats *stats)
{
    uint64_t total, n = 0;
    otk_audit ev;
    if (rl == NULL)
        return 0;
    if (stats)
        *stats = rl->st;
    if (rl->last_report_ms == UINT64_MAX)
        rl->last_report_ms = now_ms;
    if (now_ms - rl->last_report_ms < rl->cfg.report_ms)
        return 0;
    rl->last_report_ms = now_ms;
    total = dropped_total(&rl->st);
    n = total - rl->dropped_at_last_report;
    rl->dropped_at_last_report = total;
    if (n && a != NULL) {
        memset(&ev, 0, sizeof ev);
        ev.kind = OTK_AUD_REFUSED;
        ev.version = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
        ev.code = OTK_ERR_RATE_LIMITED;
        (void)a->reg.audit(a->reg.ctx, &ev);
    }
    return n;
}
