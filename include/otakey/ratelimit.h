/*
 * ratelimit.h: admission control in front of the agent core, for the
 * daemon (docs/operations.md, "Rate limits").
 *
 * Two token buckets:
 *  - per client (the device id its topic names; the broker's ACL binds the
 *    topic to the MQTT client id): at most client_rate messages a second,
 *    client_burst at once. Beyond that a message is dropped unread.
 *  - refusals, all clients together: the core audits each refused message
 *    (one row each) and answers it; refusal_rate a second and
 *    refusal_burst at once are allowed. While that budget is spent the
 *    limiter screens messages before the core, with the same codec and MAC
 *    code the core uses: a message that does not decode, a CLAIM whose MAC
 *    does not verify under its batch's PK, or another message naming a
 *    device the registry does not know is dropped. A legitimate device
 *    passes the screen (its claim verifies; later it is known), so a flood
 *    of invalid claims does not shut it out.
 * Dropped messages get no reply and no audit row of their own: they are
 * counted, and once per report_ms in which any was dropped the limiter
 * appends one aggregate audit row (kind OTK_AUD_REFUSED, no device,
 * code OTK_ERR_RATE_LIMITED, version = messages dropped in that period).
 *
 * Not thread-safe: one limiter per event loop.
 */
#ifndef OTAKEY_RATELIMIT_H
#define OTAKEY_RATELIMIT_H

#include "otakey/agent.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct otk_rl_config {
    unsigned client_rate;   /* messages a second per client; 0 turns the per-client limit off */
    unsigned client_burst;  /* bucket size (>= 1 when client_rate != 0) */
    unsigned refusal_rate;  /* refusals a second audited one by one; 0 turns screening off */
    unsigned refusal_burst; /* bucket size (>= 1 when refusal_rate != 0) */
    unsigned report_ms;     /* aggregate audit row and counters period (>= 100) */
    unsigned clients;       /* per-client buckets kept (a power of two >= 64) */
} otk_rl_config;

/* Counters since the limiter was created. */
typedef struct otk_rl_stats {
    uint64_t admitted;
    uint64_t over_client_rate; /* dropped: client bucket empty */
    uint64_t malformed;        /* dropped while screening: does not decode */
    uint64_t bad_claim;        /* dropped while screening: unknown batch or bad MAC */
    uint64_t unknown_device;   /* dropped while screening: device not in the registry */
    uint64_t unaudited;        /* refusals seen by the daemon itself, budget spent (otk_rl_refusal) */
} otk_rl_stats;

typedef struct otk_rl otk_rl;

/* Defaults: 20/s burst 40 per client, 20/s burst 200 refusals, 10 s reports, 16384 clients. */
void otk_rl_defaults(otk_rl_config *cfg);

/*
 * A limiter (aborts when out of memory). OTK_ERR_INVALID_ARGUMENT for a
 * configuration outside the ranges above (*out NULL). Free with otk_rl_free.
 */
OTK_CHECK_RETURN otk_status otk_rl_new(const otk_rl_config *cfg, otk_rl **out);
void otk_rl_free(otk_rl *rl);

/*
 * Whether a message the client published goes to the core: OTK_OK, or
 * OTK_ERR_RATE_LIMITED when it is dropped (counted). a is used read-only
 * while screening (registry lookups); msg[0..len) is not kept.
 */
OTK_CHECK_RETURN otk_status otk_rl_admit(otk_rl *rl, const otk_agent *a, const uint8_t client[16],
                                         const uint8_t *msg, size_t len, uint64_t now_ms);

/* The core refused an admitted message (and audited it): spends a refusal token. */
void otk_rl_core_refused(otk_rl *rl, uint64_t now_ms);

/*
 * The daemon refuses a message itself (e.g. a header naming another device
 * than the topic): 1 when the refusal budget allows an audit row of its
 * own (a token is spent), 0 when it is only counted (in unaudited).
 */
int otk_rl_refusal(otk_rl *rl, uint64_t now_ms);

/*
 * Called often (every loop turn is fine): once report_ms have passed since
 * the last report, returns the number of messages dropped in that period
 * and, when it is not 0, appends the aggregate audit row through
 * a->reg.audit. Returns 0 otherwise. stats (may be NULL) gets the totals.
 */
uint64_t otk_rl_report(otk_rl *rl, const otk_agent *a, uint64_t now_ms, otk_rl_stats *stats);

#ifdef __cplusplus
}
#endif
#endif
