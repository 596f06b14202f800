/*
 * sqlreg.h: the agent's registry in SQLite (WAL mode), behind the
 * otk_registry interface of agent.h.
 *
 * Kept in clear: what the agent must use again (committed AK to check
 * MACs; the pending set, re-sent until the device confirms it). Kept only
 * as SHA-256: the committed cloud secret, which the agent never needs
 * once the device holds it.
 *
 * The audit log is append-only (triggers refuse UPDATE and DELETE) and
 * hash-chained: row n stores h_n = SHA-256(h_{n-1} || row n's fields), so
 * editing, deleting or inserting a row by hand breaks every later link;
 * otk_sqlreg_audit_verify finds the first broken one.
 */
#ifndef OTAKEY_SQLREG_H
#define OTAKEY_SQLREG_H

#include "otakey/agent.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTK_SQLREG_SCHEMA_VERSION 11

typedef struct otk_sqlreg otk_sqlreg;

/*
 * Opens (creating or migrating) the database at path. crypto (for the
 * audit chain's SHA-256) must outlive the registry. On failure *out is
 * NULL and err holds a message: OTK_ERR_STORAGE (cannot open, corrupt,
 * or a schema newer than this build understands).
 */
OTK_CHECK_RETURN otk_status otk_sqlreg_open(const char *path, const otk_crypto *crypto,
                                            otk_sqlreg **out, char *err, size_t err_size);
void otk_sqlreg_close(otk_sqlreg *r);
void otk_sqlreg_bind(otk_sqlreg *r, otk_registry *out);

/*
 * Group commit: between begin and end every put_device is a savepoint of
 * one transaction (all-or-nothing each, durable together at end). end
 * returns OTK_ERR_STORAGE when the commit failed (nothing of the batch is
 * stored then). Other writers wait (busy timeout) while a batch is open.
 */
OTK_CHECK_RETURN otk_status otk_sqlreg_batch_begin(otk_sqlreg *r);
OTK_CHECK_RETURN otk_status otk_sqlreg_batch_end(otk_sqlreg *r);

/* Adds a batch (product name for operators, PK). OTK_ERR_BAD_STATE if it exists. */
OTK_CHECK_RETURN otk_status otk_sqlreg_add_batch(otk_sqlreg *r, const uint8_t batch_id[8],
                                                 const char *product, const uint8_t pk[32]);

/*
 * Walks the audit chain. OTK_OK with *rows when intact; OTK_ERR_CORRUPT
 * with *bad_seq = the first row whose link does not verify.
 */
OTK_CHECK_RETURN otk_status otk_sqlreg_audit_verify(otk_sqlreg *r, uint64_t *rows,
                                                    uint64_t *bad_seq);

/*
 * Up to max devices with a requested update not offered yet, or an issued
 * update not confirmed yet, not notified in the last resend_ms (issuing a
 * set counts as offering it: its device has just been answered): their ids
 * go to ids and they are marked as notified now. The daemon sends each a
 * NOTIFY (otk_agent_notify); formal/atomic.pml shows why the resend of an
 * issued update matters (a device may have missed its response).
 */
size_t otk_sqlreg_due_cleanups(otk_sqlreg *r, uint8_t (*ids)[16], size_t max, unsigned retry_ms);
size_t otk_sqlreg_due_notifications(otk_sqlreg *r, uint8_t (*ids)[16], size_t max,
                                    unsigned resend_ms);
size_t otk_sqlreg_hold_offers(otk_sqlreg *r, const uint8_t (*ids)[16], size_t n,
                              unsigned resend_ms, unsigned hold_ms);

/* Number of audit rows of a kind (0: all). */
uint64_t otk_sqlreg_audit_count(otk_sqlreg *r, int kind);

#ifdef __cplusplus
}
#endif
#endif
