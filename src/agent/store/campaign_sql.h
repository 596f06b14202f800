/* SQL of the SQLite campaign engine that a test checks the plan of. */
#ifndef OTK_CAMPAIGN_SQL_H
#define OTK_CAMPAIGN_SQL_H

#include "store_internal.h"

/* A campaign's device is done once its committed set is past the one it
 * started from; failed when revoked, or when its request was dropped with
 * no set pending (the device aborted: the cloud refused the set). */
#define DONE_COND "d.c_version > cd.base_version"
#define FAILED_COND "(d.state = 3 OR (d.want = 0 AND d.p_version IS NULL))"
/* Reasons (otk_status): -19 REVOKED, -21 CLOUD. */
#define REASON_SQL "CASE WHEN d.state = 3 THEN -19 ELSE -21 END"

/* Whether a device of campaign ?1 is still undecided (the engine's test
 * for completion once every device has started): a probe of the index on
 * (campaign, finished), which test_registry checks. */
#define OTK_UNDECIDED_SQL                                                                          \
    "SELECT EXISTS(SELECT 1 FROM campaign_devices WHERE campaign = ?1 AND finished IS NULL)"

/*
 * Records the outcomes of the campaign ?1's devices audited after the row
 * ?2. The unary + keeps SQLite's planner off the indexes on started and
 * finished: with them it walked every unfinished device of the campaign
 * (campaign_devices_finished, finished IS NULL) and tested each against
 * the audited list, a pass over the devices in flight every second; now
 * each audited device is looked up by the primary key (campaign, device).
 * test_registry checks the plan.
 */
#define OTK_SETTLE_SQL                                                                             \
    "UPDATE campaign_devices AS cd SET"                                                            \
    " finished = CASE WHEN " DONE_COND " THEN 1 ELSE 2 END,"                                       \
    " reason = CASE WHEN " DONE_COND " THEN NULL ELSE " REASON_SQL " END"                          \
    " FROM devices AS d WHERE d.id = cd.device AND cd.campaign = ?1"                               \
    " AND cd.device IN (SELECT device FROM audit WHERE seq > ?2"                                   \
    " AND kind NOT IN (" OTK_AUD_UNDECIDING_SQL "))"                                               \
    " AND +cd.started IS NOT NULL AND +cd.finished IS NULL"                                        \
    " AND (" DONE_COND " OR " FAILED_COND ")"

#endif
