/*
 * clouds.h: the clouds of an agent configuration behind one
 * otk_cloud_adapter: each [cloud.N] is either administered through the
 * dynamic-security plugin (calls block until the broker answers) or
 * through a password file (changes are queued until otk_clouds_flush).
 */
#ifndef OTK_TOOLS_CLOUDS_H
#define OTK_TOOLS_CLOUDS_H

#include "agent_config.h"

typedef struct otk_clouds otk_clouds;

/* Connects / loads every cloud of cfg. err names the failing cloud. */
int otk_clouds_open(const otk_agentd_config *cfg, otk_clouds **out, char *err, size_t err_size);
void otk_clouds_close(otk_clouds *c);
void otk_clouds_adapter(otk_clouds *c, otk_cloud_adapter *out);

/* Whether any cloud is a password-file cloud. */
int otk_clouds_have_files(const otk_clouds *c);

/* Changes queued on password-file clouds (replies wait for them). */
size_t otk_clouds_pending(const otk_clouds *c);

/*
 * Certificate revocations queued for the clouds' CRLs (retired and revoked
 * certificates; no reply waits for them), and their flush. The daemon
 * writes a CRL at most once a second, less often for a long one (each
 * write, and each broker's reload, handles the whole list: bench/crl.sh),
 * so a campaign's revocations go out together.
 */
size_t otk_clouds_revocations(const otk_clouds *c);
otk_status otk_clouds_flush_crls(otk_clouds *c);
/* Entries of the clouds' CRLs as last written. */
size_t otk_clouds_crl_entries(const otk_clouds *c);
/* Makes the queued revocations durable (before the registry forgets the
 * certificates they retire). */
otk_status otk_clouds_sync_revocations(otk_clouds *c);

/*
 * At start: a password-file client that no device's committed or pending
 * set names (a crash came between a commit and the deletion of the
 * credentials it retired) is deleted, and the change flushed. Returns the
 * number of clients deleted, or -1 when the registry or a cloud failed.
 */
long otk_clouds_reconcile(otk_clouds *c, const otk_registry *reg);

/* Makes the password files' queued changes effective (replies wait for
 * them). Revocations go into the CRLs apart (otk_clouds_flush_crls): no
 * reply waits for them, and a CRL that cannot be written holds up no reply. */
otk_status otk_clouds_flush(otk_clouds *c, unsigned timeout_ms);

/*
 * Signs every certificate cloud's CRL again (the broker refuses a CRL past
 * its next update): at start, then once a day.
 */
otk_status otk_clouds_refresh_crls(otk_clouds *c);

#endif
