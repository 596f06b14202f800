/*
 * otakey-agent: the agent daemon. Subscribes to the device topics through
 * an MQTT 5 shared subscription (several agents can share the load), runs
 * each message through the agent core over the registry store (SQLite, or
 * PostgreSQL shared by several agents: docs/scaling.md) and the
 * dynamic-security cloud adapter, and publishes the reply.
 *
 * Usage: otakey-agent -c FILE     (see docs/operations.md)
 * Exit codes: 0 clean shutdown (SIGTERM/SIGINT), 1 runtime failure,
 *             2 bad usage or configuration.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent_config.h"
#include "api.h"
#include "clouds.h"
#include "mqtt_link.h"
#include "otakey/dynsec.h"
#include "otakey/pkcs11.h"
#include "otakey/ratelimit.h"
#include "otakey/store.h"
#include "otakey/wire.h"

#define UP_PREFIX "otakey/v1/up/"
#define DOWN_PREFIX "otakey/v1/down/"
/* The campaign engine and the update offers run TICKS_PER_S times a second,
 * at most TICK_MAX offers a tick (so notify_rate up to 5,120 a second). */
#define TICKS_PER_S 20
#define TICK_MAX 256
/* Update offers whose PUBACK is awaited, by message id (the link counts
 * them up one by one, so this holds the last OFFER_TRACK published). */
#define OFFER_TRACK 8192
/* Devices heard lately (a message that passed its MAC), by a hash of the
 * id: an offer that finds no subscriber within HEARD_GRACE_MS of one is
 * not taken for sleep (the device is reopening its link, or its request
 * crossed the offer) and the offer is repeated as usual. */
#define HEARD_SLOTS 4096
#define HEARD_GRACE_MS 5000
/* Nor within LINK_GRACE_MS of the agent's own connection to the broker: a
 * broker that restarted drops every device too, and an agent that restarted
 * has heard no one yet; devices reopen their links meanwhile. */
#define LINK_GRACE_MS 10000
/* Group commit: a batch of messages is read for at most BATCH_MS (and at
 * most BATCH_MAX of them) before its commit, cloud flush and replies. */
#define BATCH_MS 25
#define BATCH_MAX 2048
/* While a batch is held, the agent sleeps BATCH_SLICE_MS at a time and then
 * reads all that came meanwhile, rather than waking at each message: the
 * replies wait for the batch's end anyway, and each wake-up costs a context
 * switch (and the crypto tables' place in the caches) on a shared core. */
#define BATCH_SLICE_MS 5

static volatile sig_atomic_t stopping, reloading;
static int log_level = 2, log_json;
/*
 * While the main loop runs, log lines are held in log_buf and written
 * together at the end of each pass (a line per device event was a write(2)
 * each, two per update); outside it (start, stop) and to a terminal, each
 * line is written at once. stderr stays line-buffered, so a message printed
 * before an exit is never left in a buffer.
 */
static int log_held;
static char log_buf[1 << 16];
static size_t log_len;

/* Writes out the held lines (stderr's lock serialises the threads that log). */
static void log_flush(void)
{
    flockfile(stderr);
    if (log_len > 0) {
        (void)fwrite(log_buf, 1, log_len, stderr);
        fflush(stderr);
        log_len = 0;
    }
    funlockfile(stderr);
}

/* A line of level info or debug is held while the loop runs; a warning or
 * an error goes out at once, with the lines before it. */
static void log_line(int level, const char *line, size_t n)
{
    flockfile(stderr);
    if (level > 1 && __atomic_load_n(&log_held, __ATOMIC_RELAXED) && n <= sizeof log_buf) {
        if (log_len + n > sizeof log_buf)
            log_flush();
        memcpy(log_buf + log_len, line, n);
        log_len += n;
    } else {
        log_flush();
        (void)fwrite(line, 1, n, stderr);
        fflush(stderr);
    }
    funlockfile(stderr);
}

/* One line per event: UTC time to the millisecond, program, level, message. */
static void logf_(int level, const char *fmt, ...)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    struct timespec ts;
    struct tm tm;
    char when[32], line[8192]; /* (a JSON line: a message of 1,023 characters escaped) */
    int n;
    va_list ap;
    if (level > log_level)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    if (log_json) { /* {"ts": ..., "level": ..., "msg": ...}, escaped by cJSON */
        char msg[1024], stamp[64], *js;
        cJSON *o = cJSON_CreateObject();
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        snprintf(stamp, sizeof stamp, "%s.%03ldZ", when, ts.tv_nsec / 1000000L);
        cJSON_AddStringToObject(o, "ts", stamp);
        cJSON_AddStringToObject(o, "program", "otakey-agent");
        cJSON_AddStringToObject(o, "level", names[level]);
        cJSON_AddStringToObject(o, "msg", msg);
        js = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (js) {
            n = snprintf(line, sizeof line, "%s\n", js);
            free(js);
            if (n > 0 && (size_t)n < sizeof line)
                log_line(level, line, (size_t)n);
        }
        return;
    }
    n = snprintf(line, sizeof line, "%s.%03ldZ otakey-agent: %s: ", when, ts.tv_nsec / 1000000L,
                 names[level]);
    if (n < 0 || (size_t)n >= sizeof line)
        return;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    n = (int)strlen(line);
    line[n++] = '\n'; /* (a longer message is cut at the buffer's end) */
    log_line(level, line, (size_t)n);
}

typedef struct daemon_ctx {
    otk_agentd_config cfg;
    otk_crypto crypto;
    otk_token_key *sign_token; /* the signing key when it is in a PKCS#11 token */
    otk_store *reg;
    otk_clouds *clouds;
    /* Replies held until the password-file clouds have taken the clients
     * they name (see flush_replies). */
    struct held {
        char topic[64];
        uint16_t len;
        uint8_t msg[OTK_MSG_MAX_LEN];
    } *held;
    size_t n_held, cap_held;
    int in_batch; /* a group-commit transaction is open (SQLite) */
    otk_agent agent;
    otk_link *link; /* the agent broker (mqtt_link.h) */
    char sub[96];
    unsigned long handled, refused;
    unsigned long flushes;  /* cloud flushes and group commits: how batched the work was */
    double flush_ms;        /* time spent waiting for the clouds to take their changes */
    uint64_t crl_due_ms;    /* revocations wait for this time to be written (crl_next) */
    otk_rl *rl; /* admission control in front of the core */
    int conn_rc; /* the last CONNACK's reason, -1 before the first */
    uint64_t link_up_ms; /* when the broker last accepted the agent's connection */
    const char *config_path;
    otk_api *api;           /* the HTTP API ([api] listen), NULL when off */
    otk_agentd_config *next_cfg; /* SIGHUP's new cloud list, taken between batches */
    otk_api_metrics metrics; /* what /metrics reports */
    uint8_t answered[4096][OTK_DEVICE_ID_LEN + 5]; /* recent key sets answered (seen_before) */
    struct {
        uint16_t mid;
        uint8_t used;
        uint8_t id[16];
    } offers[OFFER_TRACK];               /* NOTIFYs awaiting their PUBACK, by message id */
    uint8_t asleep[TICK_MAX][16];        /* offers the broker had no subscriber for */
    size_t n_asleep;
    struct {
        uint8_t id[16];
        uint64_t at; /* mono_ms */
    } heard[HEARD_SLOTS];
} daemon_ctx;

/* Milliseconds from a to b (CLOCK_MONOTONIC readings). */
static long ms_between(const struct timespec *a, const struct timespec *b)
{
    return (long)(b->tv_sec - a->tv_sec) * 1000 + (b->tv_nsec - a->tv_nsec) / 1000000;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/*
 * The broker connection (tools/mqtt_link.h). The main loop polls its socket
 * and reads what came: one read(2) takes in every packet waiting, and the
 * PUBACKs of what was read leave together at the end of the read. What the
 * loop publishes (the batch's replies, the tick's offers) goes into the
 * link's buffer and leaves in one write(2) when the pass pushes it, so that
 * the broker is woken once for them, not once a packet. The agent's other
 * OpenSSL work (a PKCS#11 engine signing a response or a certificate) can
 * leave entries in this thread's error queue after success; the link clears
 * it before each TLS read and write, so that a "would block" is not taken
 * for a failure.
 */
/* What was published since the last push leaves now. */
static void push(daemon_ctx *d)
{
    if (otk_link_fd(d->link) >= 0 && otk_link_flush(d->link) != 0)
        logf_(1, "broker connection: %s", otk_link_error(d->link));
}

/* Packets still buffered after the last broker_loop (at most 64 are read a call). */
static int broker_more;

/*
 * One wait for the broker (up to timeout_ms; none when packets are
 * buffered), then up to 64 of the packets waiting. 0, or -1 when the
 * connection failed (otk_link_error says why; the caller reconnects).
 */
static int broker_loop(daemon_ctx *d, int timeout_ms)
{
    struct pollfd p;
    int rc = 0;
    p.fd = otk_link_fd(d->link);
    if (p.fd < 0)
        return -1;
    p.events = (short)(POLLIN | (otk_link_want_write(d->link) ? POLLOUT : 0));
    p.revents = 0;
    if (poll(&p, 1, broker_more ? 0 : timeout_ms) < 0)
        p.revents = 0; /* (EINTR: a signal; the caller looks at its flags) */
    if ((p.revents & POLLOUT) && otk_link_flush(d->link) != 0)
        rc = -1;
    if (rc == 0 && (broker_more || (p.revents & (POLLIN | POLLERR | POLLHUP | POLLNVAL))) &&
        otk_link_read(d->link, 64) < 0)
        rc = -1;
    broker_more = rc == 0 && otk_link_buffered(d->link);
    if (rc == 0 && otk_link_tick(d->link, mono_ms()) != 0)
        rc = -1;
    /* The PUBACKs of what was read leave now: the broker sends a client no
     * more than its max_inflight_messages unacknowledged (20 by default). */
    if (rc == 0 && otk_link_flush(d->link) != 0)
        rc = -1;
    return rc;
}

/* Connected, and the broker accepted the agent. */
static int link_up(const daemon_ctx *d)
{
    return otk_link_fd(d->link) >= 0 && __atomic_load_n(&d->metrics.broker_connected, __ATOMIC_RELAXED);
}

static int broker_publish(daemon_ctx *d, int *mid, const char *topic, size_t len, const void *msg)
{
    uint16_t id = 0;
    int rc = otk_link_publish(d->link, topic, msg, len, 1, &id);
    *mid = id;
    return rc;
}

/*
 * When the next CRL may be written, for one of `entries` entries that took
 * t0..t1 to write: a second later, or later still for a long CRL, so that
 * neither the agent's write nor the brokers' reload of it (each broker
 * parses the whole file: bench/crl.sh measures ~0.7 us an entry, and two
 * brokers reload it, the cloud's and the agent broker's certificate
 * listener) takes more than about 1/CRL_SHARE_INV of a core: at least 100
 * times the write, and CRL_GAP_US_PER_ENTRY an entry (10 s at 100,000
 * entries); at most CRL_GAP_MAX_MS later. This paces the certificates that
 * commits retire; a device's revocation is written at once
 * (finish_revocations).
 */
#define CRL_SHARE_INV 100u
#define CRL_GAP_US_PER_ENTRY 100u
#define CRL_GAP_MAX_MS 30000u
static uint64_t crl_next(uint64_t t0, uint64_t t1, size_t entries)
{
    uint64_t gap = (t1 - t0) * CRL_SHARE_INV, by_size = (uint64_t)entries * CRL_GAP_US_PER_ENTRY / 1000u;
    if (gap < by_size)
        gap = by_size;
    return t0 + (gap < 1000 ? 1000 : gap > CRL_GAP_MAX_MS ? CRL_GAP_MAX_MS : gap);
}

static size_t heard_slot(const uint8_t id[16])
{
    uint32_t h = 2166136261u;
    size_t i;
    for (i = 0; i < 16; i++)
        h = (h ^ id[i]) * 16777619u;
    return h & (HEARD_SLOTS - 1);
}

static void heard_now(daemon_ctx *d, const uint8_t id[16], uint64_t now)
{
    size_t k = heard_slot(id);
    memcpy(d->heard[k].id, id, 16);
    d->heard[k].at = now;
}

static int heard_lately(const daemon_ctx *d, const uint8_t id[16], uint64_t now)
{
    size_t k = heard_slot(id);
    return memcmp(d->heard[k].id, id, 16) == 0 && now - d->heard[k].at < HEARD_GRACE_MS;
}

/*
 * What a published message's PUBACK will answer for: an update offer to
 * device id, or (id NULL) anything else. A connection lost drops what was
 * in flight (the devices ask again).
 */
static void track_publish(daemon_ctx *d, int mid, const uint8_t *id)
{
    unsigned slot = (unsigned)mid & (OFFER_TRACK - 1);
    d->offers[slot].mid = (uint16_t)mid;
    d->offers[slot].used = id != NULL;
    if (id != NULL)
        memcpy(d->offers[slot].id, id, 16);
}

/*
 * A PUBACK. Each device subscribes to its own topic while it is connected
 * (its session ends with its connection), so a broker (MQTT 5) that had no
 * subscriber for an update offer says the device sleeps: no more offers go
 * to it for notify_asleep_ms; its own poll, when it wakes, gets the update.
 */
static void on_puback(void *ud, uint16_t mid, int rc)
{
    daemon_ctx *d = ud;
    unsigned slot = (unsigned)mid & (OFFER_TRACK - 1);
    if (!d->offers[slot].used || d->offers[slot].mid != (uint16_t)mid)
        return; /* not an offer */
    d->offers[slot].used = 0;
    if (rc != OTK_MQTT_RC_NO_MATCHING_SUBSCRIBERS)
        return;
    otk_api_add(&d->metrics.notifies_asleep, 1);
    if (mono_ms() - d->link_up_ms >= LINK_GRACE_MS && !heard_lately(d, d->offers[slot].id, mono_ms()) &&
        d->n_asleep < TICK_MAX)
        memcpy(d->asleep[d->n_asleep++], d->offers[slot].id, 16);
}

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        reloading = 1;
    else
        stopping = 1;
}

static void on_connack(void *ud, int rc)
{
    daemon_ctx *d = ud;
    d->conn_rc = rc;
    __atomic_store_n(&d->metrics.broker_connected, rc == 0, __ATOMIC_RELAXED);
    if (rc != 0) {
        logf_(0, "broker refused the connection: %s", otk_mqtt_reason(rc));
        return;
    }
    d->link_up_ms = mono_ms();
    if (otk_link_subscribe(d->link, d->sub, 1) != 0)
        logf_(0, "subscribe to %s failed", d->sub);
    else if (d->cfg.report_topic[0] && otk_link_subscribe(d->link, d->cfg.report_topic, 0) != 0)
        logf_(1, "subscribe to %s failed", d->cfg.report_topic);
    else
        logf_(2, "connected to %s, subscribed to %s", d->cfg.broker_where, d->sub);
}

static void hold(daemon_ctx *d, const char *topic, const uint8_t *msg, size_t n)
{
    if (d->n_held == d->cap_held) {
        d->cap_held = d->cap_held ? 2 * d->cap_held : 256;
        d->held = realloc(d->held, d->cap_held * sizeof *d->held);
        if (d->held == NULL) {
            log_flush();
            abort();
        }
    }
    snprintf(d->held[d->n_held].topic, sizeof d->held[d->n_held].topic, "%s", topic);
    memcpy(d->held[d->n_held].msg, msg, n);
    d->held[d->n_held++].len = (uint16_t)n;
}

/* A number of a broker report, 0 when absent. */
static unsigned long long report_count(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 1e18
               ? (unsigned long long)v->valuedouble
               : 0;
}

/*
 * The agent broker's plugin counts what it refused (src/broker/policy.h)
 * and reports it per period; the agent logs it, so that attempts on the
 * broker show in the agent's log in aggregate.
 */
static void broker_report(const char *payload, int len)
{
    cJSON *o = len > 0 ? cJSON_ParseWithLength(payload, (size_t)len) : NULL;
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(o, "listener");
    if (cJSON_IsObject(o) && cJSON_IsString(l) && strlen(l->valuestring) < 32)
        logf_(1,
              "agent broker (%s listener) refused in the last %.1f s: %llu connections under a "
              "foreign client id, %llu with a user name, %llu subscriptions, %llu publishes, "
              "%llu deliveries outside the client's own topics",
              l->valuestring, (double)report_count(o, "period_ms") / 1000.0,
              report_count(o, "connect_client_id"), report_count(o, "connect_user"),
              report_count(o, "subscribe"), report_count(o, "publish"), report_count(o, "read"));
    else
        logf_(1, "agent broker: unreadable refusal report (%d bytes)", len);
    cJSON_Delete(o);
}

/* One info line per claim answered, update issued, commit and abort. */
static void log_outcome(const char *device, uint8_t in_type, const uint8_t *reply, size_t n)
{
    otk_msg r;
    if (n == 0 || otk_msg_decode(reply, n, &r) != OTK_OK) {
        logf_(3, "%s from %s handled", otk_msg_name(in_type), device);
        return;
    }
    if (r.type == OTK_MSG_CLAIM_RESP)
        logf_(2, "device %s: claim answered with key set v%u", device, (unsigned)r.version);
    else if (r.type == OTK_MSG_UPDATE_RESP)
        logf_(2, "device %s: update to v%u issued", device, (unsigned)r.version);
    else if (r.type == OTK_MSG_ACK && in_type == OTK_MSG_CONFIRM)
        logf_(2, "device %s: v%u committed", device, (unsigned)r.version);
    else if (r.type == OTK_MSG_NACK || in_type == OTK_MSG_ABORT)
        logf_(2, "device %s: v%u aborted (%s)", device, (unsigned)r.version, otk_msg_name(in_type));
    else
        logf_(3, "%s from %s: %s", otk_msg_name(in_type), device, otk_msg_name(r.type));
}

/*
 * Whether this key set (device, version, response type) was answered
 * recently: a device that repeats its request gets the same set again,
 * which /metrics counts apart. A direct-mapped table of the last answers
 * (a collision only forgets an older one: it then counts as new).
 */
static int seen_before(daemon_ctx *d, const otk_msg *r)
{
    uint8_t key[OTK_DEVICE_ID_LEN + 5];
    uint32_t h = 2166136261u;
    size_t i;
    memcpy(key, r->device_id, OTK_DEVICE_ID_LEN);
    otk_put_u32(key + OTK_DEVICE_ID_LEN, r->version);
    key[OTK_DEVICE_ID_LEN + 4] = r->type;
    for (i = 0; i < sizeof key; i++)
        h = (h ^ key[i]) * 16777619u; /* FNV-1a: a table index, not a digest */
    i = h % (sizeof d->answered / sizeof d->answered[0]);
    if (!memcmp(d->answered[i], key, sizeof key))
        return 1;
    memcpy(d->answered[i], key, sizeof key);
    return 0;
}

/* The /metrics counters of one handled message and its reply. */
static void count_message(daemon_ctx *d, uint8_t in_type, otk_status st, const uint8_t *reply,
                          size_t n)
{
    otk_api_metrics *m = &d->metrics;
    otk_msg r;
    otk_api_add(&m->messages[in_type < OTK_API_MSG_TYPES ? in_type : 0][st != OTK_OK], 1);
    if (st != OTK_OK) {
        otk_api_add(&m->refusals[-st > 0 && -st < OTK_API_CODES ? -st : 0], 1);
        return;
    }
    if (n == 0 || otk_msg_decode(reply, n, &r) != OTK_OK)
        return;
    if ((r.type == OTK_MSG_CLAIM_RESP || r.type == OTK_MSG_UPDATE_RESP) && seen_before(d, &r))
        otk_api_add(&m->resent, 1); /* a repeated request answered again: no new set */
    else if (r.type == OTK_MSG_CLAIM_RESP)
        otk_api_add(&m->claims, 1);
    else if (r.type == OTK_MSG_UPDATE_RESP)
        otk_api_add(&m->updates_issued, 1);
    else if (r.type == OTK_MSG_ACK && in_type == OTK_MSG_CONFIRM)
        otk_api_add(&m->commits, 1);
    else if (r.type == OTK_MSG_NACK || in_type == OTK_MSG_ABORT)
        otk_api_add(&m->aborts, 1);
}

/* Every inbound message: never trusted, never fatal. */
typedef struct link_msg {
    const char *topic;
    const void *payload;
    int payloadlen;
} link_msg;

static void handle_message(daemon_ctx *d, const link_msg *msg)
{
    uint8_t out[OTK_MSG_MAX_LEN], client[16];
    char topic[64], hex[33];
    size_t n = 0;
    otk_status st;
    uint64_t now = mono_ms();
    int client_known;
    if (d->cfg.report_topic[0] && strcmp(msg->topic, d->cfg.report_topic) == 0) {
        broker_report(msg->payload, msg->payloadlen);
        return;
    }
    if (strncmp(msg->topic, UP_PREFIX, strlen(UP_PREFIX)) != 0 || msg->payloadlen < 0)
        return;
    /* The sender, as the topic names it: the rate-limit key and the device
     * an audit row names. A topic that is no device id keys on its text. */
    memset(client, 0, sizeof client);
    client_known = strlen(msg->topic + strlen(UP_PREFIX)) == 32 &&
                   otk_hex_decode(msg->topic + strlen(UP_PREFIX), client, 16) == 0;
    if (!client_known) {
        const char *t = msg->topic + strlen(UP_PREFIX);
        size_t tl = strlen(t);
        memcpy(client, t, tl < sizeof client ? tl : sizeof client);
    }
    /* The topic names the sender (the broker's ACL binds it to the client id):
     * a header that names another device is refused, and audited while the
     * refusal budget lasts. */
    if (msg->payloadlen >= (int)OTK_HDR_LEN) {
        otk_hex_encode((const uint8_t *)msg->payload + 2, 16, hex);
        if (strcmp(hex, msg->topic + strlen(UP_PREFIX)) != 0) {
            d->refused++;
            if (otk_rl_refusal(d->rl, now)) {
                otk_audit ev;
                memset(&ev, 0, sizeof ev);
                ev.kind = OTK_AUD_REFUSED;
                ev.msg_type = ((const uint8_t *)msg->payload)[1];
                ev.has_id = (uint8_t)client_known;
                memcpy(ev.id, client, sizeof ev.id);
                ev.code = OTK_ERR_WRONG_DEVICE;
                (void)d->agent.reg.audit(d->agent.reg.ctx, &ev);
                logf_(1, "message on %s names device %s: refused (WRONG_DEVICE)", msg->topic, hex);
            }
            return;
        }
    }
    if (otk_rl_admit(d->rl, &d->agent, client, msg->payload, (size_t)msg->payloadlen, now) != OTK_OK) {
        d->refused++;
        otk_api_add(&d->metrics.ratelimit_drops, 1);
        if (otk_store_release(d->reg) != OTK_OK) /* screening may have read a device */
            logf_(1, "database: a transaction did not commit");
        return; /* counted; otk_rl_report audits the drops in aggregate */
    }
    /* One transaction for every message read in this pass (group commit);
     * their replies wait for its commit. */
    if (!d->in_batch && otk_store_batch_begin(d->reg) == OTK_OK)
        d->in_batch = 1;
    /* Inside the batch's transaction, which commits after the revocation
     * queue is synced: a commit writes its device once. */
    d->agent.group_commit = d->in_batch && otk_store_batches(d->reg);
    st = otk_agent_handle(&d->agent, msg->payload, (size_t)msg->payloadlen, out, sizeof out, &n);
    /* Ends the device's transaction (PostgreSQL: its lock) before replying. */
    if (otk_store_release(d->reg) != OTK_OK)
        logf_(1, "database: a transaction did not commit");
    /* A poll answered "nothing" (its MAC checked) from a device that a running
     * campaign has not reached yet: started now if the campaign's rate has a
     * slot, and the same poll answered again, with the update. */
    if (st == OTK_OK && n > 1 && out[1] == OTK_MSG_STATUS && client_known &&
        ((const uint8_t *)msg->payload)[1] == OTK_MSG_UPDATE_REQ &&
        otk_store_campaign_poll(d->reg, &d->agent, client) == 1) {
        otk_api_add(&d->metrics.poll_starts, 1);
        st = otk_agent_handle(&d->agent, msg->payload, (size_t)msg->payloadlen, out, sizeof out, &n);
        if (otk_store_release(d->reg) != OTK_OK)
            logf_(1, "database: a transaction did not commit");
    }
    d->agent.group_commit = 0;
    d->handled++;
    if (st == OTK_OK && client_known)
        heard_now(d, client, now);
    count_message(d, msg->payloadlen > 1 ? ((const uint8_t *)msg->payload)[1] : 0, st, out, n);
    if (st != OTK_OK) {
        otk_rl_core_refused(d->rl, now);
        d->refused++;
        logf_(1, "%s from %s refused: %s", msg->payloadlen > 1 ? otk_msg_name(((uint8_t *)msg->payload)[1]) : "?",
              msg->topic + strlen(UP_PREFIX), otk_strerror(st));
    } else {
        log_outcome(msg->topic + strlen(UP_PREFIX), ((uint8_t *)msg->payload)[1], out, n);
    }
    if (n > 0) {
        snprintf(topic, sizeof topic, DOWN_PREFIX "%s", msg->topic + strlen(UP_PREFIX));
        if (d->in_batch || otk_clouds_have_files(d->clouds)) {
            hold(d, topic, out, n);
        } else {
            int mid = 0;
            if (broker_publish(d, &mid, topic, n, out) != 0)
                logf_(1, "publish to %s failed", topic);
            else
                track_publish(d, mid, NULL);
        }
    }
}

/*
 * The link calls this in the middle of its read and reads on when it
 * returns: what the handling left in OpenSSL's error queue (a token's
 * signature) is cleared (see broker_loop).
 */
static void on_message(void *ud, const char *topic, const uint8_t *payload, size_t len)
{
    link_msg m;
    m.topic = topic;
    m.payload = payload;
    m.payloadlen = (int)len;
    handle_message(ud, &m);
    ERR_clear_error();
}

static void on_refused(void *ud, const char *what, int reason)
{
    (void)ud;
    logf_(0, "broker refused the agent's %s: %s", what, otk_mqtt_reason(reason));
}

/*
 * Publishes the held replies once the batch's transaction committed and the
 * password-file clouds have taken every queued client (one reload for the
 * whole batch). Otherwise the replies are dropped: the devices send their
 * request again and get the same answer (its client re-queued by ensure).
 */
static void drop_replies(daemon_ctx *d, const char *why)
{
    size_t i;
    if (d->n_held)
        logf_(1, "%s: %zu replies dropped (the devices will ask again)", why, d->n_held);
    for (i = 0; i < d->n_held; i++)
        otk_wipe(d->held[i].msg, d->held[i].len);
    d->n_held = 0;
}

static void flush_replies(daemon_ctx *d)
{
    size_t i;
    struct timespec a, b;
    int pending = otk_clouds_pending(d->clouds) > 0;
    otk_status fst = OTK_OK;
    clock_gettime(CLOCK_MONOTONIC, &a);
    if (pending)
        fst = otk_clouds_flush(d->clouds, 10000);
    clock_gettime(CLOCK_MONOTONIC, &b);
    d->flushes++;
    d->flush_ms += (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    if (pending)
        otk_api_flush_observe(&d->metrics, (double)(b.tv_sec - a.tv_sec) +
                                               (double)(b.tv_nsec - a.tv_nsec) / 1e9);
    if (pending && fst != OTK_OK) {
        logf_(1, "a cloud did not take %zu queued changes", otk_clouds_pending(d->clouds));
        drop_replies(d, "cloud not updated");
        return;
    }
    if (!link_up(d)) {
        drop_replies(d, "broker connection lost");
        return;
    }
    for (i = 0; i < d->n_held; i++) {
        int mid = 0;
        if (broker_publish(d, &mid, d->held[i].topic, d->held[i].len, d->held[i].msg) != 0)
            logf_(1, "publish to %s failed", d->held[i].topic);
        else
            track_publish(d, mid, NULL);
        otk_wipe(d->held[i].msg, d->held[i].len);
    }
    d->n_held = 0;
}

/* The clouds as /v1/clouds shows them. */
static size_t api_clouds(const daemon_ctx *d, otk_api_cloud clouds[OTK_AGENT_MAX_CLOUDS])
{
    static const char *const types[] = {"dynsec", "passwd", "x509"};
    size_t i;
    memset(clouds, 0, OTK_AGENT_MAX_CLOUDS * sizeof clouds[0]);
    for (i = 0; i < d->cfg.n_clouds && i < OTK_AGENT_MAX_CLOUDS; i++) {
        clouds[i].id = d->cfg.clouds[i].cloud_id;
        clouds[i].type = d->cfg.cloud_type[i] >= 0 && d->cfg.cloud_type[i] <= 2
                             ? types[d->cfg.cloud_type[i]] : "?";
        snprintf(clouds[i].host, sizeof clouds[i].host, "%s", d->cfg.clouds[i].host);
        clouds[i].port = d->cfg.clouds[i].port;
        clouds[i].tls = d->cfg.clouds[i].flags & 1;
    }
    return i;
}

static void set_api_clouds(daemon_ctx *d)
{
    otk_api_cloud clouds[OTK_AGENT_MAX_CLOUDS];
    otk_api_set_clouds(d->api, clouds, api_clouds(d, clouds));
}

/* The HTTP API ([api]); its own store handles, its own threads. */
static int start_api(daemon_ctx *d)
{
    otk_api_config ac;
    otk_api_cloud clouds[OTK_AGENT_MAX_CLOUDS];
    char err[512];
    size_t i;
    memset(&ac, 0, sizeof ac);
    snprintf(ac.listen, sizeof ac.listen, "%s", d->cfg.api_listen);
    ac.tls = d->cfg.api_tls;
    snprintf(ac.certfile, sizeof ac.certfile, "%s", d->cfg.api_certfile);
    snprintf(ac.keyfile, sizeof ac.keyfile, "%s", d->cfg.api_keyfile);
    snprintf(ac.tokens, sizeof ac.tokens, "%s", d->cfg.api_tokens);
    i = api_clouds(d, clouds);
    d->api = otk_api_start(&ac, d->cfg.database, clouds, i, &d->metrics, err, sizeof err);
    if (d->api == NULL) {
        fprintf(stderr, "otakey-agent: %s\n", err);
        return -1;
    }
    logf_(2, "API on %s://%s", ac.tls ? "https" : "http", ac.listen);
    return 0;
}

static int setup(daemon_ctx *d, const char *path)
{
    char err[512], hexpub[129];
    uint8_t key[96];
    otk_agent_config ac;
    otk_registry reg;
    otk_cloud_adapter cloud;
    if (otk_agentd_config_load(path, &d->cfg, err, sizeof err) != 0) {
        fprintf(stderr, "otakey-agent: %s\n", err);
        return 2;
    }
    log_level = d->cfg.log_level;
    log_json = d->cfg.log_json;
    if (otk_crypto_openssl_init(&d->crypto, NULL, NULL) != OTK_OK) {
        fprintf(stderr, "otakey-agent: crypto initialisation failed\n");
        return 1;
    }
    if (otk_is_token_uri(d->cfg.signing_key)) {
        /* In a token: the agent signs with a handle the crypto port maps to it. */
        if ((d->sign_token = otk_token_key_open(d->cfg.signing_key, d->cfg.pkcs11_module,
                                                d->cfg.pkcs11_pin_file, err, sizeof err)) == NULL ||
            otk_token_key_public(d->sign_token, key + 32) != 0) {
            fprintf(stderr, "otakey-agent: signing_key %s\n",
                    d->sign_token ? "in the token: not a P-256 key" : err);
            return 1;
        }
        if (d->crypto.sha256(d->crypto.ctx, &(otk_iov){d->cfg.signing_key, strlen(d->cfg.signing_key)},
                             1, key) != OTK_OK ||
            otk_crypto_openssl_use_signer(&d->crypto, key, otk_token_key_pkey(d->sign_token)) != OTK_OK) {
            fprintf(stderr, "otakey-agent: signing_key: the crypto backend refused the token key\n");
            return 1;
        }
        otk_hex_encode(key + 32, 64, hexpub);
        logf_(2, "signing key in a PKCS#11 token; its public key: %s", hexpub);
    } else {
        /* Like ssh with private keys: a key others may read is refused. */
        if (otk_check_private_file(d->cfg.signing_key, err, sizeof err) != 0) {
            fprintf(stderr, "otakey-agent: signing_key: %s\n", err);
            return 2;
        }
        if (otk_read_hex_file(d->cfg.signing_key, key, sizeof key, err, sizeof err) != 0) {
            fprintf(stderr, "otakey-agent: signing_key: %s\n", err);
            return 2;
        }
    }
    /* create = 0: a mistyped path is not an empty fleet ('otakey product create' makes one). */
    if (otk_store_open(d->cfg.database, &d->crypto, 0, &d->reg, err, sizeof err) != OTK_OK) {
        fprintf(stderr, "otakey-agent: database: %s\n", err);
        return 1;
    }
    if (otk_clouds_open(&d->cfg, &d->clouds, err, sizeof err) != 0) {
        fprintf(stderr, "otakey-agent: %s\n", err);
        return 1;
    }
    memset(&ac, 0, sizeof ac);
    memcpy(ac.sign_priv, key, 32);
    memcpy(ac.sign_pub, key + 32, 64);
    memcpy(ac.clouds, d->cfg.clouds, sizeof ac.clouds);
    ac.n_clouds = d->cfg.n_clouds;
    ac.claim_cloud = d->cfg.claim_cloud;
    ac.claim_cloud_v1 = d->cfg.claim_cloud_v1;
    otk_wipe(key, sizeof key);
    otk_store_bind(d->reg, &reg);
    otk_clouds_adapter(d->clouds, &cloud);
    if (otk_agent_init(&d->agent, &d->crypto, &reg, &cloud, &ac) != OTK_OK) {
        fprintf(stderr, "otakey-agent: invalid agent configuration\n");
        return 2;
    }
    otk_wipe(&ac, sizeof ac);
    if (otk_clouds_have_files(d->clouds)) {
        long gone = otk_clouds_reconcile(d->clouds, &reg);
        if (otk_store_release(d->reg) != OTK_OK || gone < 0)
            logf_(1, "password-file clouds: the start-up sweep did not finish");
        else if (gone > 0)
            logf_(1, "password-file clouds: %ld retired clients deleted at start", gone);
    }
    /* Certificate clouds: a fresh CRL now (the broker refuses one past its next update). */
    if (otk_clouds_refresh_crls(d->clouds) != OTK_OK)
        logf_(1, "certificate clouds: a CRL could not be written or its broker signalled");
    if (otk_rl_new(&d->cfg.ratelimit, &d->rl) != OTK_OK) {
        fprintf(stderr, "otakey-agent: invalid ratelimit_* settings\n");
        return 2;
    }
    snprintf(d->sub, sizeof d->sub, "$share/%s/" UP_PREFIX "+", d->cfg.share_group);
    d->conn_rc = -1;
    {
        otk_link_opts o;
        otk_link_cb cb;
        char why[256];
        memset(&o, 0, sizeof o);
        memset(&cb, 0, sizeof cb);
        o.client_id = d->cfg.client_id;
        o.username = d->cfg.username;
        o.password = d->cfg.password;
        o.socket_path = d->cfg.broker_socket;
        o.host = d->cfg.broker_host;
        o.port = d->cfg.broker_port;
        o.tls = d->cfg.tls;
        o.cafile = d->cfg.cafile;
        o.certfile = d->cfg.certfile;
        o.keyfile = d->cfg.keyfile;
        o.keepalive_s = 30;
        cb.connack = on_connack;
        cb.message = on_message;
        cb.puback = on_puback;
        cb.refused = on_refused;
        /* TLS fails closed: a CA (or client key) that cannot be loaded stops
         * the agent; it never falls back to plain TCP. */
        if (otk_link_new(&d->link, &o, &cb, d, why, sizeof why) != 0) {
            fprintf(stderr, "otakey-agent: %s%s\n", d->cfg.tls ? "TLS to the agent broker: " : "", why);
            return 2;
        }
    }
    if (d->cfg.api_listen[0] && start_api(d) != 0)
        return 2;
    if (otk_link_connect(d->link, 15000) != 0) {
        fprintf(stderr, "otakey-agent: cannot connect to broker %s: %s\n", d->cfg.broker_where,
                otk_link_error(d->link));
        return 1;
    }
    return 0;
}

/* Publishes an update offer (NOTIFY) to a device, its PUBACK watched. */
static void publish_offer(daemon_ctx *d, const uint8_t id[16], const uint8_t *msg, size_t len)
{
    char topic[64], hex[33];
    int mid;
    otk_hex_encode(id, 16, hex);
    snprintf(topic, sizeof topic, DOWN_PREFIX "%s", hex);
    if (broker_publish(d, &mid, topic, len, msg) != 0) {
        logf_(1, "NOTIFY to %s not sent", hex);
        return;
    }
    otk_api_add(&d->metrics.notifies, 1);
    track_publish(d, mid, id);
}

/* A tick's update offers: notify_rate a second, TICK_MAX at most. */
static size_t offers_per_tick(const daemon_ctx *d)
{
    unsigned per_tick = d->cfg.notify_rate / TICKS_PER_S ? d->cfg.notify_rate / TICKS_PER_S : 1;
    return per_tick < TICK_MAX ? per_tick : TICK_MAX;
}

/*
 * The devices the broker found asleep since the last call: their next offer
 * waits notify_asleep_ms. Inside an open batch (SQLite), written in its
 * transaction: no commit of their own.
 */
static void hold_asleep(daemon_ctx *d)
{
    size_t n;
    if (d->n_asleep == 0)
        return;
    n = otk_store_hold_offers(d->reg, (const uint8_t(*)[16])d->asleep, d->n_asleep,
                              d->cfg.notify_resend_ms, d->cfg.notify_asleep_ms);
    logf_(3, "%zu devices asleep: their next offer in %u ms", n, d->cfg.notify_asleep_ms);
    d->n_asleep = 0;
}

/*
 * Offers requested updates: NOTIFY to devices whose operator request has
 * not been offered yet (budget this tick: what the campaign step's offers
 * left of offers_per_tick). Devices that are offline get the update when
 * they poll on their next start.
 */
static size_t push_notifications(daemon_ctx *d, size_t budget)
{
    static uint8_t ids[TICK_MAX][16];
    uint8_t out[OTK_MSG_MAX_LEN];
    size_t n, i, len;
    hold_asleep(d);
    if (budget == 0)
        return 0;
    n = otk_store_due_notifications(d->reg, ids, budget, d->cfg.notify_resend_ms);
    for (i = 0; i < n; i++) {
        otk_status st = otk_agent_notify(&d->agent, ids[i], out, sizeof out, &len);
        if (otk_store_release(d->reg) != OTK_OK)
            logf_(1, "database: a transaction did not commit");
        if (st == OTK_OK)
            publish_offer(d, ids[i], out, len);
    }
    if (n)
        logf_(3, "%zu update offers sent", n);
    return n;
}

/*
 * Revocations: `otakey device revoke` refuses the device at once in the
 * registry and deletes what cloud clients it can reach itself; the rest
 * (password-file clouds, which this agent owns, or a cloud the CLI could not
 * reach) is left marked for the agents, which delete it here. A password-file
 * deletion takes effect at the next flush, in the same pass of the main
 * loop. A cloud that fails is tried again after CLEANUP_RETRY_MS.
 */
#define CLEANUP_RETRY_MS 2000
static void finish_revocations(daemon_ctx *d)
{
    uint8_t ids[32][16];
    char hex[33];
    size_t n = otk_store_due_cleanups(d->reg, ids, 32, CLEANUP_RETRY_MS), i;
    for (i = 0; i < n; i++) {
        otk_status st = otk_agent_cleanup(&d->agent, ids[i]);
        if (otk_store_release(d->reg) != OTK_OK)
            logf_(1, "database: a transaction did not commit");
        otk_hex_encode(ids[i], 16, hex);
        if (st == OTK_OK)
            logf_(2, "revoked device %s: its cloud credentials are deleted", hex);
        else
            logf_(1, "revoked device %s: cloud credentials not deleted yet (%s); retrying",
                  hex, otk_strerror(st));
    }
    /* An operator's revocation goes into the CRL at the next tick, unpaced. */
    if (n)
        d->crl_due_ms = 0;
}

/* The rate limiter's aggregate: one audit row and one log line per period with drops. */
static void report_drops(daemon_ctx *d, uint64_t now)
{
    otk_rl_stats s;
    uint64_t n = otk_rl_report(d->rl, &d->agent, now, &s);
    if (n)
        logf_(1,
              "rate limit: %llu messages dropped in the last %u ms (totals: %llu over a client's "
              "rate, %llu malformed, %llu bad claims, %llu unknown devices, %llu unaudited refusals)",
              (unsigned long long)n, d->cfg.ratelimit.report_ms,
              (unsigned long long)s.over_client_rate, (unsigned long long)s.malformed,
              (unsigned long long)s.bad_claim, (unsigned long long)s.unknown_device,
              (unsigned long long)s.unaudited);
}

static void teardown(daemon_ctx *d)
{
    otk_api_stop(d->api);
    free(d->next_cfg);
    otk_rl_free(d->rl);
    if (d->link) {
        otk_link_disconnect(d->link);
        otk_link_free(d->link);
    }
    /* Retired certificates queued for a CRL go out before the agent does. */
    if (d->clouds && otk_clouds_revocations(d->clouds) && otk_clouds_flush_crls(d->clouds) != OTK_OK)
        logf_(1, "certificate clouds: %zu revocations could not be written to a CRL",
              otk_clouds_revocations(d->clouds));
    otk_clouds_close(d->clouds);
    free(d->held);
    otk_store_close(d->reg);
    if (d->crypto.ctx)
        otk_crypto_openssl_free(&d->crypto);
    otk_token_key_close(d->sign_token);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: otakey-agent -c CONFIG\n"
               "       otakey-agent --help | --version\n"
               "Runs the OTA-Key agent daemon described by CONFIG (INI; see docs/operations.md).\n"
               "SIGTERM/SIGINT stop it; SIGHUP reloads log_level, log_format, notify_*, ratelimit_*,\n"
               "the API tokens and the clouds.\n"
               "Exit codes: 0 clean shutdown, 1 runtime failure, 2 bad usage or configuration.\n");
}

static int clouds_differ(const otk_agentd_config *a, const otk_agentd_config *b);

/*
 * SIGHUP: re-reads the configuration; applies what can change while
 * running and says what it did, and what needs a restart.
 */
static void reload(daemon_ctx *d)
{
    static otk_agentd_config n;
    char err[512];
    otk_rl *rl = NULL;
    if (otk_agentd_config_load(d->config_path, &n, err, sizeof err) != 0) {
        logf_(1, "SIGHUP: configuration not reloaded: %s", err);
        return;
    }
    if (otk_rl_new(&n.ratelimit, &rl) != OTK_OK) {
        logf_(1, "SIGHUP: configuration not reloaded: invalid ratelimit_* settings");
        return;
    }
    otk_rl_free(d->rl);
    d->rl = rl;
    d->cfg.ratelimit = n.ratelimit;
    d->cfg.notify_rate = n.notify_rate;
    d->cfg.notify_resend_ms = n.notify_resend_ms;
    d->cfg.notify_asleep_ms = n.notify_asleep_ms;
    d->cfg.log_level = log_level = n.log_level;
    d->cfg.log_json = log_json = n.log_json;
    logf_(2, "SIGHUP: reloaded log_level, log_format, notify_rate %u/s, notify_resend_ms %u, notify_asleep_ms %u, "
             "ratelimit (client %u/s, refusals %u/s)",
          n.notify_rate, n.notify_resend_ms, n.notify_asleep_ms, n.ratelimit.client_rate, n.ratelimit.refusal_rate);
    if (d->api) {
        if (otk_api_reload_tokens(d->api, err, sizeof err) == 0)
            logf_(2, "SIGHUP: reloaded the API tokens from %s", d->cfg.api_tokens);
        else
            logf_(1, "SIGHUP: API tokens not reloaded (the old ones stay): %s", err);
    }
    if (strcmp(n.database, d->cfg.database) || strcmp(n.signing_key, d->cfg.signing_key) ||
        strcmp(n.broker_where, d->cfg.broker_where) ||
        strcmp(n.username, d->cfg.username) || strcmp(n.password, d->cfg.password) ||
        strcmp(n.client_id, d->cfg.client_id) || strcmp(n.api_listen, d->cfg.api_listen))
        logf_(1, "SIGHUP: database, signing key, broker or API listener changed: they take "
                 "effect at the next start");
    /* The clouds change between batches (see swap_clouds). */
    if (clouds_differ(&n, &d->cfg)) {
        free(d->next_cfg);
        d->next_cfg = malloc(sizeof n);
        if (d->next_cfg)
            memcpy(d->next_cfg, &n, sizeof n);
    }
    otk_wipe(&n, sizeof n);
}

/* Whether two configurations differ in their clouds. */
static int clouds_differ(const otk_agentd_config *a, const otk_agentd_config *b)
{
    return a->n_clouds != b->n_clouds || a->claim_cloud != b->claim_cloud ||
           a->claim_cloud_v1 != b->claim_cloud_v1 ||
           memcmp(a->clouds, b->clouds, sizeof a->clouds) ||
           memcmp(a->admin, b->admin, sizeof a->admin) ||
           memcmp(a->cloud_type, b->cloud_type, sizeof a->cloud_type) ||
           memcmp(a->admin_tls, b->admin_tls, sizeof a->admin_tls) ||
           memcmp(a->pwfile, b->pwfile, sizeof a->pwfile) || memcmp(a->x509, b->x509, sizeof a->x509);
}

/*
 * SIGHUP's new cloud list, taken between batches (no transaction open, no
 * reply held): the new clouds are opened first (a cloud that does not
 * answer keeps the old list), what the old ones hold is finished (queued
 * password-file changes, revocations not yet in a CRL), then the agent
 * works with the new list. Devices keep the sets they have; a cloud removed
 * from the list is one the agent can no longer assign or administer.
 */
static void swap_clouds(daemon_ctx *d)
{
    otk_agentd_config *n = d->next_cfg;
    otk_clouds *fresh = NULL;
    otk_cloud_adapter cloud;
    otk_registry reg;
    char err[512];
    size_t i;
    d->next_cfg = NULL;
    if (otk_clouds_open(n, &fresh, err, sizeof err) != 0) {
        logf_(1, "SIGHUP: clouds not reloaded (the old list stays): %s", err);
        goto out;
    }
    if ((otk_clouds_pending(d->clouds) && otk_clouds_flush(d->clouds, 10000) != OTK_OK) ||
        (otk_clouds_revocations(d->clouds) && otk_clouds_flush_crls(d->clouds) != OTK_OK)) {
        logf_(1, "SIGHUP: clouds not reloaded: the old clouds did not take their queued changes "
                 "(the old list stays; send SIGHUP again)");
        otk_clouds_close(fresh);
        goto out;
    }
    otk_clouds_close(d->clouds);
    d->clouds = fresh;
    memcpy(d->cfg.clouds, n->clouds, sizeof n->clouds);
    memcpy(d->cfg.admin, n->admin, sizeof n->admin);
    memcpy(d->cfg.cloud_type, n->cloud_type, sizeof n->cloud_type);
    memcpy(d->cfg.admin_tls, n->admin_tls, sizeof n->admin_tls);
    memcpy(d->cfg.pwfile, n->pwfile, sizeof n->pwfile);
    memcpy(d->cfg.x509, n->x509, sizeof n->x509);
    d->cfg.n_clouds = n->n_clouds;
    d->cfg.claim_cloud = n->claim_cloud;
    d->cfg.claim_cloud_v1 = n->claim_cloud_v1;
    otk_clouds_adapter(d->clouds, &cloud);
    d->agent.cloud = cloud;
    memcpy(d->agent.cfg.clouds, n->clouds, sizeof n->clouds);
    d->agent.cfg.n_clouds = n->n_clouds;
    d->agent.cfg.claim_cloud = n->claim_cloud;
    d->agent.cfg.claim_cloud_v1 = n->claim_cloud_v1;
    otk_store_bind(d->reg, &reg);
    if (otk_clouds_have_files(d->clouds) && otk_clouds_reconcile(d->clouds, &reg) < 0)
        logf_(1, "password-file clouds: the sweep after SIGHUP did not finish");
    if (otk_store_release(d->reg) != OTK_OK)
        logf_(1, "database: a transaction did not commit");
    if (otk_clouds_refresh_crls(d->clouds) != OTK_OK)
        logf_(1, "certificate clouds: a CRL could not be written or its broker signalled");
    if (d->api)
        set_api_clouds(d);
    {
        char ids[128] = "";
        size_t len = 0;
        for (i = 0; i < d->cfg.n_clouds && len + 12 < sizeof ids; i++)
            len += (size_t)snprintf(ids + len, sizeof ids - len, "%s%u", i ? ", " : "",
                                    (unsigned)d->cfg.clouds[i].cloud_id);
        logf_(2, "SIGHUP: reloaded the clouds: %zu (%s), claims onto cloud %u", d->cfg.n_clouds,
              ids, (unsigned)d->cfg.claim_cloud);
    }
out:
    otk_wipe(n, sizeof *n);
    free(n);
}

/*
 * The broker's first answer: a refusal (bad credentials, not authorised)
 * or no answer at all ends the agent at start (exit 1) rather than retrying
 * for ever; later losses are retried.
 */
static int await_first_connack(daemon_ctx *d, unsigned timeout_ms)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (d->conn_rc < 0 && !stopping) {
        if (broker_loop(d, 100) != 0 && d->conn_rc < 0) {
            fprintf(stderr, "otakey-agent: broker %s closed the connection before answering "
                            "(TLS or network failure)\n",
                    d->cfg.broker_where);
            return 1;
        }
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (ms_between(&t0, &t) > (long)timeout_ms) {
            fprintf(stderr, "otakey-agent: broker %s did not answer within %u ms\n",
                    d->cfg.broker_where, timeout_ms);
            return 1;
        }
    }
    if (d->conn_rc > 0) {
        fprintf(stderr, "otakey-agent: broker %s refused the agent: %s\n", d->cfg.broker_where,
                otk_mqtt_reason(d->conn_rc));
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static daemon_ctx d;
    const char *path = NULL;
    struct sigaction sa;
    int opt, rc;
    /* A log line leaves in one write (stderr is unbuffered: three). */
    setvbuf(stderr, NULL, _IOLBF, 4096);
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    if (argc == 2 && !strcmp(argv[1], "--version")) {
        printf("otakey-agent %s\n", OTK_VERSION);
        return 0;
    }
    while ((opt = getopt(argc, argv, "c:h")) != -1) {
        if (opt == 'c')
            path = optarg;
        else {
            usage(opt == 'h' ? stdout : stderr);
            return opt == 'h' ? 0 : 2;
        }
    }
    if (path == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    d.config_path = path;
    rc = setup(&d, path);
    if (rc == 0)
        rc = await_first_connack(&d, 15000);
    if (rc == 0) {
        logf_(2, "running (database %s, %zu clouds)", d.cfg.database, d.cfg.n_clouds);
        struct timespec last = {0, 0}, last_flush = {0, 0}, now;
        uint64_t now_ms;
        unsigned long ticks = 0;
        int busy = 0; /* the last tick started devices or made offers */
        __atomic_store_n(&log_held, !isatty(STDERR_FILENO), __ATOMIC_RELAXED);
        while (!stopping) {
            int lrc, wait_ms = 100;
            /* While campaigns have work, the wait for the broker ends when the
             * next tick is due (a wait of 100 ms held ticks to ~10 a second,
             * and a campaign to ~2,000 devices a second whatever its rate). */
            if (busy) {
                long since;
                clock_gettime(CLOCK_MONOTONIC, &now);
                since = ms_between(&last, &now);
                wait_ms = since >= 1000 / TICKS_PER_S ? 0 : (int)(1000 / TICKS_PER_S - since);
            }
            lrc = broker_loop(&d, wait_ms);
            if (reloading) {
                reloading = 0;
                reload(&d);
            }
            struct timespec t0;
            /* Held replies: read on while messages keep coming (up to
             * BATCH_MS), and at least until BATCH_MS after the last flush, so
             * that one commit and one cloud reload serve a whole batch. */
            clock_gettime(CLOCK_MONOTONIC, &t0);
            long ms = 0; /* into the batch, as of the last read */
            while (lrc == 0 && d.n_held > 0 && d.n_held < BATCH_MAX) {
                size_t before = d.n_held;
                long since_flush, left = BATCH_MS - ms; /* > 0: the loop ends at BATCH_MS */
                struct timespec slice = {0, 0};
                slice.tv_nsec = (left < BATCH_SLICE_MS ? left : BATCH_SLICE_MS) * 1000000L;
                /* No nap while packets wait in the buffers (a read stops
                 * after 64): they are read at once. A signal cuts a nap
                 * short; the flags are seen when the batch ends. */
                if (slice.tv_nsec > 0 && !broker_more)
                    nanosleep(&slice, NULL);
                lrc = broker_loop(&d, 0);
                clock_gettime(CLOCK_MONOTONIC, &now);
                ms = ms_between(&t0, &now);
                since_flush = ms_between(&last_flush, &now);
                if (ms >= BATCH_MS || (d.n_held == before && since_flush >= BATCH_MS))
                    break;
            }
            if (d.in_batch) {
                if (otk_store_batches(d.reg))
                    hold_asleep(&d);
                d.in_batch = 0;
                /* The retired certificates' revocations reach the disk before
                 * the registry commits the sets that retire them. */
                if (otk_clouds_sync_revocations(d.clouds) != OTK_OK)
                    logf_(1, "certificate clouds: the revocation queue could not be synced "
                             "to disk (it is written; a power cut now could lose it)");
                if (otk_store_batch_end(d.reg) != OTK_OK)
                    drop_replies(&d, "database commit failed");
            }
            if (d.n_held || otk_clouds_pending(d.clouds)) {
                flush_replies(&d);
                clock_gettime(CLOCK_MONOTONIC, &last_flush);
            }
            /* Pushed now: the replies (a certificate device's ACK) are on
             * their way before this pass's tick writes the CRL that revokes
             * the certificates they retire. */
            push(&d);
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (ms_between(&last, &now) >= 1000 / TICKS_PER_S) {
                last = now;
                if (d.next_cfg && d.n_held == 0 && !d.in_batch)
                    swap_clouds(&d);
                static otk_offer offers[TICK_MAX];
                /* No offers while the broker connection is down: the
                 * notify pass makes them once it is back. */
                size_t n_offers = 0, budget = link_up(&d) ? offers_per_tick(&d) : 0, i;
                size_t started = otk_store_campaign_step(d.reg, &d.agent, offers, budget, &n_offers),
                       offered;
                if (started > 0)
                    logf_(3, "campaign devices started");
                /* Devices started now get their offer at once (within the
                 * tick's budget); the notify pass takes what is left. */
                for (i = 0; i < n_offers; i++)
                    publish_offer(&d, offers[i].id, offers[i].msg, offers[i].len);
                offered = n_offers + push_notifications(&d, budget - n_offers);
                push(&d);
                busy = started > 0 || offered > 0;
                if (++ticks % 5 == 0) /* four times a second */
                    finish_revocations(&d);
                now_ms = (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u;
                if (otk_clouds_revocations(d.clouds) && now_ms >= d.crl_due_ms) {
                    uint64_t w0 = mono_ms();
                    if (otk_clouds_flush_crls(d.clouds) != OTK_OK)
                        logf_(1, "certificate clouds: %zu revocations not yet in a CRL (retrying)",
                              otk_clouds_revocations(d.clouds));
                    d.crl_due_ms = now_ms + (crl_next(w0, mono_ms(), otk_clouds_crl_entries(d.clouds)) - w0);
                }
                if (ticks % (TICKS_PER_S * 86400UL) == 0 &&
                    otk_clouds_refresh_crls(d.clouds) != OTK_OK) /* once a day */
                    logf_(1, "certificate clouds: a CRL could not be signed again");
                report_drops(&d, now_ms);
            }
            if (lrc != 0 && !stopping) {
                logf_(1, "broker connection lost (%s); reconnecting", otk_link_error(d.link));
                __atomic_store_n(&d.metrics.broker_connected, 0, __ATOMIC_RELAXED);
                broker_more = 0;
                sleep(1);
                if (otk_link_connect(d.link, 15000) != 0)
                    logf_(1, "broker %s: %s", d.cfg.broker_where, otk_link_error(d.link));
            }
            log_flush();
        }
        __atomic_store_n(&log_held, 0, __ATOMIC_RELAXED);
        log_flush();
        logf_(2, "shutting down: %lu messages handled, %lu refused; %lu batches, %.1f ms waiting "
                 "for clouds; %llu update offers, %llu to devices asleep", d.handled, d.refused,
              d.flushes, d.flush_ms, (unsigned long long)d.metrics.notifies,
              (unsigned long long)d.metrics.notifies_asleep);
    }
    teardown(&d);
    return rc;
}
