/* The store's backend table (include/otakey/store.h), shared by its backends. */
#ifndef OTK_STORE_INTERNAL_H
#define OTK_STORE_INTERNAL_H

#include "otakey/agent.h"
#include "otakey/store.h"

/* The audit kinds that decide no campaign outcome, in SQL: a request
 * (OTK_AUD_UPDATE_REQUESTED) or an issued set (OTK_AUD_UPDATE_ISSUED) leaves
 * the device with a request or a pending set, neither failed nor past its
 * base. A campaign's outcome pass leaves their rows out (both backends). */
#define OTK_AUD_UNDECIDING_SQL "4, 11"
typedef char otk_aud_undeciding_check[OTK_AUD_UPDATE_ISSUED == 4 && OTK_AUD_UPDATE_REQUESTED == 11 ? 1 : -1];

typedef struct otk_store_ops {
    void (*close)(void *impl);
    void (*bind)(void *impl, otk_registry *out);
    otk_status (*release)(void *impl);
    otk_status (*add_batch)(void *impl, const uint8_t batch_id[8], const char *product,
                            const uint8_t pk[32]);
    otk_status (*list_batches)(void *impl, otk_batch_fn fn, void *user);
    otk_status (*list_devices)(void *impl, const uint8_t *id, const uint8_t *after, int state,
                               otk_device_fn fn, void *user);
    otk_status (*audit_verify)(void *impl, uint64_t *rows, uint64_t *bad_seq);
    uint64_t (*audit_count)(void *impl, int kind);
    otk_status (*audit_list)(void *impl, uint64_t after, otk_audit_fn fn, void *user);
    size_t (*due_notifications)(void *impl, uint8_t (*ids)[16], size_t max, unsigned resend_ms);
    otk_status (*campaign_create)(void *impl, int kind, uint32_t target_cloud,
                                  const char *selector, uint32_t rate, uint32_t canary,
                                  uint32_t max_failures, int64_t *id, uint64_t *total);
    size_t (*campaign_step)(void *impl, otk_agent *a, otk_offer *offers, size_t max_offers,
                            size_t *n_offers);
    otk_status (*campaign_get)(void *impl, int64_t id, otk_campaign_status *st);
    otk_status (*campaign_set_state)(void *impl, int64_t id, int state);
    size_t (*campaign_list)(void *impl, int64_t *ids, size_t max);
    /* Group commit (NULL: every write commits on its own). */
    otk_status (*batch)(void *impl, int begin);
    size_t (*due_cleanups)(void *impl, uint8_t (*ids)[16], size_t max, unsigned retry_ms);
    otk_status (*campaign_failures)(void *impl, int64_t id, otk_campaign_failure_fn fn, void *user);
    int (*campaign_poll)(void *impl, otk_agent *a, const uint8_t id[16]);
    /* Who the audit rows written from now on name ("" none; copied). */
    void (*set_actor)(void *impl, const char *actor);
    size_t (*hold_offers)(void *impl, const uint8_t (*ids)[16], size_t n, unsigned resend_ms,
                          unsigned hold_ms);
} otk_store_ops;

/* Backend openers: on success *impl and *ops are set. */
otk_status otk_store_sqlite_open(const char *path, const otk_crypto *crypto, int create,
                                 void **impl, const otk_store_ops **ops, char *err,
                                 size_t err_size);
otk_status otk_store_pg_open(const char *conninfo, const otk_crypto *crypto, void **impl,
                             const otk_store_ops **ops, char *err, size_t err_size);

/* Copies a selector for display: whole when it fits, else cut after an id
 * and ended with ",...". */
void otk_selector_show(char *dst, size_t n, const char *src);

/*
 * Parses a campaign selector's "ids:" list: calls fn for each 16-byte id.
 * OTK_ERR_BAD_VALUE when the list does not parse; fn's status otherwise.
 */
otk_status otk_selector_ids(const char *list, otk_status (*fn)(void *user, const uint8_t id[16]),
                            void *user);



/*
 * The audit chain's link: hash = SHA-256(prev || seq, ts, kind, msg type,
 * has_id, id, version, code [|| actor length, actor]) with integers
 * big-endian (the layout both backends store and verify); the actor part
 * only when the row has one (NULL or "": none).
 */
otk_status otk_audit_link(const otk_crypto *c, const uint8_t prev[32], uint64_t seq, int64_t ts,
                          const otk_audit *ev, const char *actor, uint8_t hash[32]);
#endif
