/*
 * campaign.h: update campaigns over the SQLite registry. A campaign rotates
 * keys or switches the cloud of a selection of active devices (all, one
 * batch, or a list), starting at most `rate` devices a second; with a
 * canary count, only that many start first, and the rest waits until
 * every canary committed (a canary the cloud refused pauses the campaign
 * for an operator), and with max_failures N > 0 the campaign pauses itself
 * when N devices failed since it started or was last resumed. Every state
 * change is an audit row (OTK_AUD_CAMPAIGN). Every step is a database row, so an agent killed at
 * any point resumes where it was.
 *
 * Starting a device = otk_agent_request_update (the daemon then pushes the
 * NOTIFY). A device is done when its committed version passed the one it
 * had when the campaign selected it; failed when its update was aborted (the
 * cloud refused the new set: reason OTK_ERR_CLOUD), it was revoked
 * (OTK_ERR_REVOKED), the agent refused the request (that status: e.g.
 * OTK_ERR_BAD_VALUE for a target cloud the agent does not serve), or the
 * campaign was aborted before its request was issued (OTK_ERR_BAD_STATE).
 * An outcome is recorded once decided and never changes: a later campaign
 * that moves the device does not rewrite it.
 */
#ifndef OTAKEY_CAMPAIGN_H
#define OTAKEY_CAMPAIGN_H

#include "otakey/agent.h"
#include "otakey/sqlreg.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Devices one engine step starts at most. */
#define OTK_CAMPAIGN_STEP_MAX 256

/* Why a campaign is paused (otk_campaign_status.pause_reason). */
enum otk_campaign_pause {
    OTK_PAUSE_NONE = 0,
    OTK_PAUSE_OPERATOR = 1,
    OTK_PAUSE_CANARY = 2,     /* the cloud refused a canary's set */
    OTK_PAUSE_THRESHOLD = 3   /* max_failures devices failed since it (re)started */
};

enum otk_campaign_state {
    OTK_CAMP_CANARY = 1,
    OTK_CAMP_RUNNING = 2,
    OTK_CAMP_PAUSED = 3,
    OTK_CAMP_ABORTED = 4,
    OTK_CAMP_DONE = 5
};

typedef struct otk_campaign_status {
    int64_t id;
    int kind;              /* OTK_WANT_ROTATE or OTK_WANT_SWITCH */
    uint32_t target_cloud;
    int state;             /* otk_campaign_state */
    uint32_t rate, canary;
    uint32_t max_failures; /* pause after this many failures (0: never) */
    int pause_reason;      /* otk_campaign_pause, while paused */
    uint64_t failures_base; /* failures already counted when it last resumed */
    uint64_t total, started, done, failed;
    int64_t created_ms;    /* wall clock */
    char selector[4096]; /* as given; a longer ids: list ends with ",..." */
} otk_campaign_status;

/*
 * Creates a campaign over the active devices matching selector: "all",
 * "batch:<16 hex>", or "ids:<32 hex>,<32 hex>,...". OTK_ERR_BAD_VALUE for a
 * selector that matches nothing or does not parse.
 */
OTK_CHECK_RETURN otk_status otk_campaign_create(otk_sqlreg *r, int kind, uint32_t target_cloud,
                                                const char *selector, uint32_t rate,
                                                uint32_t canary, uint32_t max_failures,
                                                int64_t *id, uint64_t *total);

/* An update offer made as a campaign starts a device: the NOTIFY to publish to it. */
typedef struct otk_offer {
    uint8_t id[16];
    uint8_t len;
    uint8_t msg[OTK_NOTIFY2_LEN];
} otk_offer;

/*
 * One engine step (the daemon calls it a few times a second): moves
 * campaign states on, and starts the devices now due (rate per second
 * since the campaign was created, at most OTK_CAMPAIGN_STEP_MAX a step), calling
 * otk_agent_request_update for each. Returns how many started.
 * Up to max_offers of the started devices get their update offer with the
 * start (offers may be NULL when max_offers is 0): the step marks them
 * offered in the transaction that starts them, and once it commits their
 * NOTIFYs are in offers[0 .. *n_offers) for the caller to publish; the others
 * wait for the notify pass (otk_sqlreg_due_notifications), as do devices
 * already marked (a request of the same kind made earlier keeps its offer's
 * timing, an asleep hold among it) and every device a step started inside a
 * transaction of the caller's (otk_sqlreg_batch_begin).
 */
size_t otk_campaign_step(otk_sqlreg *r, otk_agent *a, otk_offer *offers, size_t max_offers,
                         size_t *n_offers);

/*
 * A device that polls while a running campaign includes it and has not
 * started it: started now if the campaign's rate allows one more device at
 * this moment (the poll takes a slot of the rate). 1 when started.
 */
int otk_campaign_poll(otk_sqlreg *r, otk_agent *a, const uint8_t id[16]);

OTK_CHECK_RETURN otk_status otk_campaign_get(otk_sqlreg *r, int64_t id, otk_campaign_status *st);

/* Pause, resume or abort (abort also withdraws requests not yet issued). */
OTK_CHECK_RETURN otk_status otk_campaign_set_state(otk_sqlreg *r, int64_t id, int state);

/* Called for each failed device of a campaign; nonzero stops the walk. */
typedef int (*otk_campaign_failure_fn)(void *user, const uint8_t id[16], otk_status reason);

/* The failed devices of campaign id with their reasons, in start order. */
OTK_CHECK_RETURN otk_status otk_campaign_failures(otk_sqlreg *r, int64_t id,
                                                  otk_campaign_failure_fn fn, void *user);

/* Ids of all campaigns, newest first; returns the count (at most max). */
size_t otk_campaign_list(otk_sqlreg *r, int64_t *ids, size_t max);

const char *otk_campaign_state_name(int state);
/* "operator", "canary_failed", "error_threshold"; NULL for none. */
const char *otk_campaign_pause_name(int reason);

#ifdef __cplusplus
}
#endif
#endif
