/*
 * The agent's HTTP API (docs/api.md): JSON over HTTPS, Server-Sent Events
 * of the audit log, Prometheus metrics and the fleet dashboard, served by
 * libmicrohttpd from threads of its own. Each request works on a store
 * handle of its own (a small pool), so the API reads and changes the same
 * registry as the protocol core and, with PostgreSQL, as every other agent.
 */
#ifndef OTK_API_H
#define OTK_API_H

#include <stdint.h>

#include "otakey/agent.h"

#define OTK_API_MSG_TYPES 16
#define OTK_API_CODES 48
#define OTK_API_FLUSH_BUCKETS 12

/*
 * What the daemon counts for /metrics. The daemon's thread writes with
 * otk_api_add, the API's threads read with atomic loads.
 */
typedef struct otk_api_metrics {
    uint64_t messages[OTK_API_MSG_TYPES][2]; /* by message type: answered, refused */
    uint64_t refusals[OTK_API_CODES];        /* by -status */
    uint64_t claims, updates_issued, commits, aborts, ratelimit_drops;
    uint64_t resent; /* a key set answered again to a repeated request */
    uint64_t poll_starts; /* campaign devices started by their own poll */
    uint64_t notifies;       /* update offers (NOTIFY) sent */
    uint64_t notifies_asleep; /* ... that the broker had no subscriber for */
    uint64_t flush_le[OTK_API_FLUSH_BUCKETS]; /* cloud flush waits, cumulative buckets */
    uint64_t flush_count, flush_us;
    uint64_t broker_connected;               /* 0 or 1 */
} otk_api_metrics;

static inline void otk_api_add(uint64_t *counter, uint64_t n)
{
    __atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

/* Records one cloud flush wait (the histogram's buckets are in api.c). */
void otk_api_flush_observe(otk_api_metrics *m, double seconds);

typedef struct otk_api_cloud {
    uint32_t id;
    const char *type;  /* "dynsec", "passwd", "x509" */
    char host[OTK_HOST_MAX + 1];
    uint16_t port;
    int tls;
} otk_api_cloud;

typedef struct otk_api_config {
    char listen[128];  /* host:port ("" off) */
    int tls;           /* 1 (default); 0 only on a loopback address */
    char certfile[256], keyfile[256];
    char tokens[256];  /* NAME ROLE SHA256HEX per line, mode 0600 */
} otk_api_config;

typedef struct otk_api otk_api;

/*
 * Starts the server. database: the agent's `database` setting; clouds as
 * devices are told (for /v1/clouds); m: the daemon's counters (outlives
 * the server). NULL with err filled on failure.
 */
otk_api *otk_api_start(const otk_api_config *cfg, const char *database,
                       const otk_api_cloud *clouds, size_t n_clouds, otk_api_metrics *m,
                       char *err, size_t err_size);

/* Replaces the cloud list (SIGHUP). */
void otk_api_set_clouds(otk_api *api, const otk_api_cloud *clouds, size_t n);

/* Re-reads the tokens file; 0, or -1 with err (the old tokens stay). */
int otk_api_reload_tokens(otk_api *api, char *err, size_t err_size);

/* Stops the server and closes its stores (NULL is fine). */
void otk_api_stop(otk_api *api);

/*
 * The API's names (docs/api.md), shared with the CLI: a status ("OK",
 * "BAD_MAC", ...), a device state ("pending", "active", "revoked"), what an
 * operator wants of a device ("none", "rotate", "switch", "cleanup"), an
 * audit row's kind ("claim_issued", ...; "unknown" outside the table).
 */
const char *otk_api_status_name(otk_status st);
const char *otk_api_state_name(int state);
const char *otk_api_want_name(int want);
const char *otk_api_audit_kind(int kind);

/*
 * Token file helpers, shared with the CLI: the SHA-256 of a token as 64 hex
 * digits; a new random token (64 hex digits) into out[65].
 */
int otk_api_token_hash(const char *token, char out[65]);
int otk_api_token_new(char out[65]);

/* Runs the API's parsers of client input over data (the fuzz target's entry). */
int otk_api_fuzz_input(const uint8_t *data, size_t n);

#endif
