/*
 * OTA-Key devices of otakey-fleet (tools/fleet/ota.h).
 *
 * Everything runs on one thread: the epoll loop of net.c delivers each
 * device's messages to its own device core; a tick every few
 * milliseconds lets the cores retransmit (otk_device_next) and starts the
 * cloud proofs that wait for a slot. Proofs (one TLS connection each) are
 * limited in number so that handshakes do not starve the message flow.
 */
#include "ota.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "flashsim.h"
#include "otakey/keystore.h"
#include "posix_port.h"
#include "otakey/wire.h"

#define PROOF_WINDOW 128u     /* cloud proofs in flight at most */
#define CONNECT_WINDOW 256u   /* agent-broker connections being set up at most */
#define PROOF_RETRY_US 1000000u
#define AGENT_SETUP_US 15000000u /* an agent connection not subscribed by then is opened again */
#define BIND_IPS 64u          /* source addresses 127.1.0.1 .. 127.1.0.64 */

typedef struct sdev {
    otk_device dev;
    otk_flashsim flash;
    otk_port port;
    struct fl_ota *o;
    fl_conn *agent, *proof;
    uint32_t idx;
    char hex[33];
    uint8_t connecting, online, started, done, need_proof;
    uint8_t lost;           /* the agent connection dropped; not yet back */
    int check_rc;           /* final cloud login: CONNACK code, < 0 failed, CHECK_PENDING */
    uint64_t last_sent;     /* hash of the last request sent, to spot repeats */
    uint32_t from_version;  /* committed version when the phase began */
    uint64_t t0_us;         /* latency start; 0 before the device started */
    uint64_t proof_at_us;   /* earliest next proof attempt */
    uint64_t wake_at_us;    /* duty-cycled: earliest next connection */
    uint8_t polls;          /* duty-cycled: polls answered "nothing yet" this phase */
    uint64_t opened_us;     /* when the agent connection was opened */
    fl_bytes bytes;         /* closed proof and lost agent connections, this phase */
} sdev;

struct fl_ota {
    fl_env *env;
    uint32_t n;
    sdev *d;
    otk_device_config fw;
    fl_phase *ph;
    uint32_t want_cloud;
    unsigned connecting, proofs, inflight;
    unsigned open;          /* agent-broker connections open */
    int duty;               /* devices connect only for their operation */
    int updating;           /* an update phase is running */
    uint64_t refused, sent, retransmits, reconnects;
    uint64_t t_start_us;
    fl_faults *fx;          /* NULL: messages go straight through */
    fl_fault_stats fx0;     /* counters at the phase start */
    unsigned checks;        /* final cloud logins in flight */
};

#define CHECK_PENDING 1000

static uint32_t port_now_ms(void *ctx)
{
    (void)ctx;
    return (uint32_t)(fl_now_us() / 1000u);
}

static void bind_ip(uint32_t i, char out[32])
{
    snprintf(out, 32, "127.1.0.%u", 1u + i % BIND_IPS);
}

static void topic(const sdev *d, const char *dir, char out[64])
{
    snprintf(out, 64, "otakey/v1/%s/%s", dir, d->hex);
}

static void publish_up(sdev *d, const uint8_t *msg, size_t n)
{
    char t[64];
    if (n == 0 || d->agent == NULL || !d->online)
        return;
    topic(d, "up", t);
    (void)fl_publish(d->agent, t, msg, n);
}

/* FNV-1a: only tells whether a request repeats the previous one. */
static uint64_t msg_hash(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    size_t i;
    for (i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* Every message a device core produced goes out here, through the faults. */
static void send_up(sdev *d, const uint8_t *msg, size_t n)
{
    uint64_t h;
    if (n == 0)
        return;
    h = msg_hash(msg, n);
    d->o->sent++;
    /* The core retransmits identical bytes (device.h), so a repeat of the
     * previous request is a retransmission. */
    if (h == d->last_sent)
        d->o->retransmits++;
    d->last_sent = h;
    if (d->o->fx)
        fl_faults_pass(d->o->fx, d->idx, FL_UP, msg, n);
    else
        publish_up(d, msg, n);
}

static int is_done(const fl_ota *o, const sdev *d)
{
    otk_cloud c;
    if (otk_device_state(&d->dev) != OTK_DEV_READY ||
        otk_device_version(&d->dev, OTK_SET_ACTIVE) <= d->from_version)
        return 0;
    if (o->want_cloud == 0)
        return 1;
    return otk_device_cloud(&d->dev, OTK_SET_ACTIVE, &c) == OTK_OK && c.cloud_id == o->want_cloud;
}

/* Duty-cycled devices disconnect once done, or to poll again later. */
static void sleep_dev(sdev *d, uint64_t again_us)
{
    if (d->agent == NULL)
        return;
    fl_close(d->agent, &d->bytes);
    d->agent = NULL;
    d->online = 0;
    d->o->open--;
    d->wake_at_us = fl_now_us() + again_us;
}

/* After any change of a device's state: a proof to start, or done. */
static void progress(sdev *d)
{
    fl_ota *o = d->o;
    if (d->done)
        return;
    if (otk_device_state(&d->dev) == OTK_DEV_PROVE && d->proof == NULL)
        d->need_proof = 1;
    if (d->started && is_done(o, d)) {
        d->done = 1;
        if (o->inflight)
            o->inflight--;
        o->ph->done++;
        fl_phase_latency(o->ph, (double)(fl_now_us() - d->t0_us) / 1000.0);
        if (o->duty)
            sleep_dev(d, 0);
    }
}

static void kick(sdev *d)
{
    uint8_t out[OTK_MSG_MAX_LEN];
    size_t n = 0;
    if (otk_device_next(&d->dev, out, sizeof out, &n) == OTK_OK)
        send_up(d, out, n);
}

/* ---- the agent connection ---- */

static void agent_connect(fl_conn *c, void *ud, int rc)
{
    sdev *d = ud;
    char t[64];
    d->o->connecting -= d->connecting;
    d->connecting = 0;
    if (rc != 0) {
        if (d->o->env->verbose)
            fprintf(stderr, "fleet: %s: agent broker connection failed (%d)\n", d->hex, rc);
        /* The loop frees a connection that failed; the tick opens a new one. */
        if (rc > 0)
            fl_close(c, &d->bytes);
        else
            fl_conn_bytes(c, &d->bytes);
        d->agent = NULL;
        d->online = 0;
        d->o->open--;
        return;
    }
    topic(d, "down", t);
    if (fl_subscribe(c, t) != 0 && d->o->env->verbose)
        fprintf(stderr, "fleet: %s: subscribe failed\n", d->hex);
}

static void agent_subscribed(fl_conn *c, void *ud)
{
    sdev *d = ud;
    (void)c;
    d->online = 1;
    /* A duty-cycled device wakes up in an update phase: it asks; so does any
     * device whose link came back (an offer sent meanwhile found no one). */
    if (((d->o->duty && d->o->updating) || d->lost) && otk_device_state(&d->dev) == OTK_DEV_READY &&
        otk_device_poll(&d->dev) != OTK_OK && d->o->env->verbose)
        fprintf(stderr, "fleet: %s: poll refused\n", d->hex);
    if (d->lost) {
        d->lost = 0;
        d->o->reconnects++;
    }
    if (d->started)
        kick(d);
}

/* A message from the agent reaches the device core (after the faults). */
static void device_input(sdev *d, const uint8_t *p, size_t n)
{
    uint8_t out[OTK_MSG_MAX_LEN];
    size_t len = 0;
    otk_status st;
    if (!d->started && d->o->ph != NULL && otk_device_state(&d->dev) == OTK_DEV_READY) {
        /* The first NOTIFY of an update phase starts this device's clock. */
        d->started = 1;
        d->t0_us = fl_now_us();
        d->o->inflight++;
    }
    st = otk_device_receive(&d->dev, p, n, out, sizeof out, &len);
    if (st != OTK_OK) {
        d->o->refused++;
        if (d->o->env->verbose)
            fprintf(stderr, "fleet: %s: message refused: %s\n", d->hex, otk_strerror(st));
    }
    send_up(d, out, len);
    progress(d);
    /* Polled before the campaign reached it: sleep, ask again (1, 2, 4, 8 s). */
    if (d->o->duty && d->o->updating && !d->done && d->agent != NULL &&
        otk_device_state(&d->dev) == OTK_DEV_READY) {
        unsigned shift = d->polls < 3 ? d->polls : 3;
        d->polls++;
        sleep_dev(d, 1000000u << shift);
    }
}

static void agent_message(fl_conn *c, void *ud, const char *t, const uint8_t *p, size_t n)
{
    sdev *d = ud;
    (void)c;
    (void)t;
    if (d->o->fx)
        fl_faults_pass(d->o->fx, d->idx, FL_DOWN, p, n);
    else
        device_input(d, p, n);
}

/* The fault layer hands a copy on. */
static void fault_deliver(void *ud, uint32_t dev, int dir, const uint8_t *p, size_t n)
{
    fl_ota *o = ud;
    if (dev >= o->n)
        return;
    if (dir == FL_UP)
        publish_up(&o->d[dev], p, n);
    else
        device_input(&o->d[dev], p, n);
}

static void agent_lost(fl_conn *c, void *ud)
{
    sdev *d = ud;
    /* What the lost connection carried stays in the phase's counts. */
    fl_conn_bytes(c, &d->bytes);
    d->agent = NULL;
    d->online = 0;
    d->o->open--;
    d->lost = 1;
    if (d->o->env->verbose)
        fprintf(stderr, "fleet: %s: agent broker connection lost\n", d->hex);
}

static const fl_conn_cb agent_cb = {agent_connect, agent_subscribed, agent_message, agent_lost};

static void open_agent(fl_ota *o, sdev *d)
{
    char ip[32];
    bind_ip(d->idx, ip);
    d->online = 0;
    d->agent = fl_open(o->env->loop, &o->env->agent_broker, ip, d->hex, NULL, NULL, FL_KEEPALIVE,
                       &agent_cb, d);
    if (d->agent != NULL) {
        d->connecting = 1;
        d->opened_us = fl_now_us();
        o->connecting++;
        o->open++;
    } else if (o->env->verbose) {
        fprintf(stderr, "fleet: %s: cannot open a connection: %s\n", d->hex, strerror(errno));
    }
}

/* ---- cloud proofs ---- */

static void proof_result(fl_conn *c, void *ud, int rc)
{
    sdev *d = ud;
    uint8_t out[OTK_MSG_MAX_LEN];
    size_t n = 0;
    otk_proof r;
    /* MQTT 5: 0x86 bad user name or password, 0x87 not authorized. */
    r = rc == 0 ? OTK_PROOF_OK
        : (rc == 0x86 || rc == 0x87 || rc == 4 || rc == 5) ? OTK_PROOF_REFUSED
                                                         : OTK_PROOF_UNREACHABLE;
    fl_close(c, &d->bytes);
    d->proof = NULL;
    d->o->proofs--;
    if (r == OTK_PROOF_UNREACHABLE) {
        d->need_proof = 1;
        d->proof_at_us = fl_now_us() + PROOF_RETRY_US;
        return;
    }
    if (otk_device_proof(&d->dev, r, out, sizeof out, &n) == OTK_OK)
        send_up(d, out, n);
    progress(d);
}

static const fl_conn_cb proof_cb = {proof_result, NULL, NULL, NULL};

/*
 * The cloud of a device's set: with a password set, c's user and secret
 * log in; with a certificate set, b->ssl_ctx holds its certificate, key
 * and CA pin (fl_open takes it over). -1: no such set.
 */
static int set_broker(const fl_ota *o, const sdev *d, int which, otk_cloud *c, fl_broker *b)
{
    memset(b, 0, sizeof *b);
    if (otk_device_cloud(&d->dev, which, c) != OTK_OK)
        return -1;
    b->host = c->host;
    b->port = c->port;
    b->tls = (c->flags & OTK_CLOUD_FLAG_TLS) != 0;
    if (otk_device_kind(&d->dev, which) == OTK_KIND_CERT &&
        (b->ssl_ctx = otk_posix_set_tls(&d->dev, which, o->env->cafile, c->host)) == NULL)
        return -1;
    return 0;
}

static void start_proof(fl_ota *o, sdev *d)
{
    otk_cloud c;
    fl_broker b;
    char ip[32];
    d->need_proof = 0;
    if (set_broker(o, d, OTK_SET_STAGED, &c, &b) != 0)
        return;
    bind_ip(d->idx + 7, ip);
    d->proof = fl_open(o->env->loop, &b, ip, d->hex, b.ssl_ctx ? NULL : c.user,
                       b.ssl_ctx ? NULL : c.secret, FL_KEEPALIVE, &proof_cb, d);
    otk_wipe(&c, sizeof c);
    if (d->proof == NULL) {
        d->need_proof = 1;
        d->proof_at_us = fl_now_us() + PROOF_RETRY_US;
        return;
    }
    o->proofs++;
}

/* ---- the loop ---- */

static void tick(fl_ota *o, uint32_t *next_start)
{
    uint64_t now = fl_now_us();
    uint32_t i;
    for (i = 0; i < o->n; i++) {
        sdev *d = &o->d[i];
        if (d->done)
            continue;
        /* A connection that never got subscribed (a broker that went away
         * in the middle, a handshake that stalled) is given up. */
        if (d->agent != NULL && !d->online && now - d->opened_us > AGENT_SETUP_US) {
            if (o->env->verbose)
                fprintf(stderr, "fleet: %s: agent broker connection stalled; opening again\n",
                        d->hex);
            o->connecting -= d->connecting;
            d->connecting = 0;
            d->lost = 1;
            fl_close(d->agent, &d->bytes);
            d->agent = NULL;
            o->open--;
        }
        /* A lost connection is opened again (in the claim phase, only for
         * devices already brought up). */
        if (d->agent == NULL && (d->started || next_start == NULL) &&
            o->connecting < CONNECT_WINDOW &&
            (!o->duty || (o->open < o->env->max_connections && now >= d->wake_at_us))) {
            if (o->duty && !d->started && next_start == NULL) {
                /* Update phase, duty-cycled: its clock starts when it wakes. */
                d->started = 1;
                d->t0_us = now;
                o->inflight++;
            }
            open_agent(o, d);
        }
        if (!d->started)
            continue;
        if (d->need_proof && o->proofs < PROOF_WINDOW && now >= d->proof_at_us)
            start_proof(o, d);
        if (d->online)
            kick(d);
    }
    /* Claim phase: bring more devices up while the windows allow. */
    while (next_start && *next_start < o->n && o->connecting < CONNECT_WINDOW &&
           o->inflight < o->env->window && (!o->duty || o->open < o->env->max_connections)) {
        sdev *d = &o->d[(*next_start)++];
        d->started = 1;
        d->t0_us = now;
        o->inflight++;
        open_agent(o, d);
    }
}

/* The phase's progress for scripts that act during a phase (crash tests):
 * "PHASE DONE N SECONDS", replaced atomically. */
static void write_progress(const fl_ota *o, const fl_phase *ph)
{
    char tmp[512];
    FILE *f;
    if (o->env->progress == NULL)
        return;
    snprintf(tmp, sizeof tmp, "%s.tmp", o->env->progress);
    if ((f = fopen(tmp, "w")) == NULL)
        return;
    fprintf(f, "%s %llu %u %.3f\n", ph->name, (unsigned long long)ph->done, o->n,
            (double)(fl_now_us() - o->t_start_us) / 1e6);
    if (fclose(f) == 0)
        (void)rename(tmp, o->env->progress);
}

static int run(fl_ota *o, fl_phase *ph, uint32_t *next_start)
{
    uint64_t deadline = fl_now_us() + (uint64_t)o->env->phase_timeout_s * 1000000u;
    uint64_t last_tick = 0, last_note = fl_now_us();
    double cpu0 = fl_thread_cpu();
    uint32_t i;
    while (ph->done < o->n && fl_now_us() < deadline) {
        uint64_t now = fl_now_us();
        if (now - last_tick >= 50000) {
            last_tick = now;
            tick(o, next_start);
            write_progress(o, ph);
        }
        if (o->fx)
            fl_faults_run(o->fx, now);
        fl_loop_run(o->env->loop, 5);
        if (o->env->verbose && now - last_note >= 2000000) {
            last_note = now;
            fprintf(stderr, "fleet: %s %s: %llu/%u done, %u in flight, %u proofs, %zu connections\n",
                    ph->scheme, ph->name, (unsigned long long)ph->done, o->n, o->inflight,
                    o->proofs, fl_loop_count(o->env->loop));
        }
    }
    ph->wall_s = (double)(fl_now_us() - o->t_start_us) / 1e6;
    ph->device_cpu_us = (fl_thread_cpu() - cpu0) * 1e6 / (double)(o->n ? o->n : 1);
    for (i = 0; i < o->n; i++) {
        sdev *d = &o->d[i];
        ph->bytes.app_up += d->bytes.app_up;
        ph->bytes.app_down += d->bytes.app_down;
        ph->bytes.mqtt_up += d->bytes.mqtt_up;
        ph->bytes.mqtt_down += d->bytes.mqtt_down;
        ph->bytes.tcp_up += d->bytes.tcp_up;
        ph->bytes.tcp_down += d->bytes.tcp_down;
        if (d->agent)
            fl_conn_bytes(d->agent, &ph->bytes);
    }
    ph->refused += o->refused;
    ph->sent += o->sent;
    ph->retransmits += o->retransmits;
    ph->reconnects += o->reconnects;
    if (o->fx) {
        fl_fault_stats now;
        int k;
        fl_faults_stats(o->fx, &now);
        for (k = 0; k < 2; k++) {
            ph->faults.passed[k] += now.passed[k] - o->fx0.passed[k];
            ph->faults.dropped[k] += now.dropped[k] - o->fx0.dropped[k];
            ph->faults.duplicated[k] += now.duplicated[k] - o->fx0.duplicated[k];
            ph->faults.delayed[k] += now.delayed[k] - o->fx0.delayed[k];
        }
    }
    write_progress(o, ph);
    o->ph = NULL;
    return 0;
}

/* Phase start: counters of the persistent connections are subtracted. */
static void begin(fl_ota *o, fl_phase *ph)
{
    uint32_t i;
    fl_bytes base;
    memset(&base, 0, sizeof base);
    o->ph = ph;
    o->refused = o->sent = o->retransmits = o->reconnects = 0;
    if (o->fx)
        fl_faults_stats(o->fx, &o->fx0);
    o->inflight = 0;
    o->t_start_us = fl_now_us();
    for (i = 0; i < o->n; i++) {
        sdev *d = &o->d[i];
        memset(&d->bytes, 0, sizeof d->bytes);
        d->done = d->started = 0;
        d->t0_us = 0;
        d->polls = 0;
        d->wake_at_us = 0;
        d->from_version = otk_device_version(&d->dev, OTK_SET_ACTIVE);
        if (d->agent)
            fl_conn_bytes(d->agent, &base);
    }
    /* Start from minus the persistent connections' counters so far. */
    ph->bytes.app_up -= base.app_up;
    ph->bytes.app_down -= base.app_down;
    ph->bytes.mqtt_up -= base.mqtt_up;
    ph->bytes.mqtt_down -= base.mqtt_down;
    ph->bytes.tcp_up -= base.tcp_up;
    ph->bytes.tcp_down -= base.tcp_down;
}

int fl_ota_claim(fl_ota *o, fl_phase *ph)
{
    uint32_t next = 0;
    begin(o, ph);
    o->updating = 0;
    o->want_cloud = 0;
    return run(o, ph, &next);
}

int fl_ota_update(fl_ota *o, const char *cmd, uint32_t want_cloud, fl_phase *ph)
{
    int rc;
    begin(o, ph);
    o->want_cloud = want_cloud;
    rc = system(cmd);
    if (rc != 0) {
        fprintf(stderr, "fleet: '%s' failed (status %d)\n", cmd, rc);
        o->ph = NULL;
        return -1;
    }
    o->updating = 1;
    rc = run(o, ph, NULL);
    o->updating = 0;
    return rc;
}

/* ---- the end check ---- */

static void check_result(fl_conn *c, void *ud, int rc)
{
    sdev *d = ud;
    d->check_rc = rc;
    d->o->checks--;
    fl_close(c, NULL);
}

static const fl_conn_cb check_cb = {check_result, NULL, NULL, NULL};

static const char *state_name(otk_dev_state s)
{
    static const char *names[] = {"uninit", "unclaimed", "claiming", "prove",
                                  "confirming", "ready", "updating"};
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}

int fl_ota_check(fl_ota *o, const char *state_path, uint32_t *ok)
{
    uint64_t deadline = fl_now_us() + (uint64_t)o->env->phase_timeout_s * 1000000u;
    uint32_t i, next = 0, pending = 0, good = 0;
    int bad = 0;
    FILE *f = NULL;
    if (state_path != NULL && (f = fopen(state_path, "w")) == NULL) {
        fprintf(stderr, "otakey-fleet: %s: %s\n", state_path, strerror(errno));
        return -1;
    }
    for (i = 0; i < o->n; i++) {
        otk_cloud c;
        o->d[i].check_rc = -1;
        if (otk_device_state(&o->d[i].dev) == OTK_DEV_READY &&
            otk_device_cloud(&o->d[i].dev, OTK_SET_ACTIVE, &c) == OTK_OK) {
            o->d[i].check_rc = CHECK_PENDING;
            pending++;
        }
        otk_wipe(&c, sizeof c);
    }
    /* One TLS login per device, PROOF_WINDOW at a time, as the proofs. */
    while (pending && fl_now_us() < deadline) {
        while (next < o->n && o->checks < PROOF_WINDOW) {
            sdev *d = &o->d[next++];
            otk_cloud c;
            fl_broker b;
            char ip[32];
            if (d->check_rc != CHECK_PENDING)
                continue;
            if (set_broker(o, d, OTK_SET_ACTIVE, &c, &b) != 0) {
                d->check_rc = -1;
                pending--;
                continue;
            }
            bind_ip(d->idx + 13, ip);
            if (fl_open(o->env->loop, &b, ip, d->hex, b.ssl_ctx ? NULL : c.user,
                        b.ssl_ctx ? NULL : c.secret, FL_KEEPALIVE, &check_cb, d) != NULL)
                o->checks++;
            else
                d->check_rc = -1;
            otk_wipe(&c, sizeof c);
        }
        if (o->fx)
            fl_faults_run(o->fx, fl_now_us());
        fl_loop_run(o->env->loop, 5);
        pending = 0;
        for (i = 0; i < o->n; i++)
            pending += o->d[i].check_rc == CHECK_PENDING;
    }
    for (i = 0; i < o->n; i++) {
        sdev *d = &o->d[i];
        otk_cloud c;
        int ready = otk_device_state(&d->dev) == OTK_DEV_READY;
        int has = otk_device_cloud(&d->dev, OTK_SET_ACTIVE, &c) == OTK_OK;
        const char *login = !has ? "none"
                            : d->check_rc == 0 ? "ok"
                            : d->check_rc > 0 && d->check_rc != CHECK_PENDING ? "refused"
                                                                              : "failed";
        if (ready && d->check_rc == 0)
            good++;
        else
            bad++;
        if (f)
            fprintf(f, "{\"id\":\"%s\",\"state\":\"%s\",\"version\":%lu,\"cloud\":%lu,"
                       "\"login\":\"%s\"}\n",
                    d->hex, state_name(otk_device_state(&d->dev)),
                    (unsigned long)otk_device_version(&d->dev, OTK_SET_ACTIVE),
                    has ? (unsigned long)c.cloud_id : 0ul, login);
        otk_wipe(&c, sizeof c);
    }
    if (f && fclose(f) != 0) {
        fprintf(stderr, "otakey-fleet: %s: %s\n", state_path, strerror(errno));
        bad = -1;
    }
    if (ok)
        *ok = good;
    return bad;
}

fl_ota *fl_ota_new(fl_env *env, uint32_t n, const otk_device_config *fw)
{
    fl_ota *o = calloc(1, sizeof *o);
    uint32_t i;
    if (o == NULL || (o->d = calloc(n ? n : 1, sizeof *o->d)) == NULL)
        abort();
    o->env = env;
    o->n = n;
    o->duty = env->max_connections && n > env->max_connections;
    o->fw = *fw;
    if (env->faults != NULL)
        o->fx = fl_faults_new(env->faults, fault_deliver, o);
    for (i = 0; i < n; i++) {
        sdev *d = &o->d[i];
        otk_device_config cfg = *fw;
        uint32_t slot = fw->proto == OTK_PROTO_V2 ? OTK_SLOT_MIN_V2 : OTK_SLOT_MIN;
        uint8_t id[16];
        d->o = o;
        d->idx = i;
        fl_device_id(env, i, id, d->hex);
        memcpy(cfg.device_id, id, 16);
        /* The smallest partition the key store takes: two 256-byte slots
         * (1 KiB ones for version 2 certificate sets). */
        if (otk_flashsim_init(&d->flash, 2 * slot, slot, 8) != 0)
            abort();
        otk_flashsim_port(&d->flash, env->crypto, &d->port);
        d->port.now_ms = port_now_ms;
        if (otk_device_init(&d->dev, &d->port, &cfg) != OTK_OK) {
            fprintf(stderr, "fleet: device %s: init failed\n", d->hex);
            fl_ota_free(o);
            return NULL;
        }
    }
    return o;
}

void fl_ota_free(fl_ota *o)
{
    uint32_t i;
    if (o == NULL)
        return;
    for (i = 0; i < o->n; i++) {
        sdev *d = &o->d[i];
        if (d->agent)
            fl_close(d->agent, NULL);
        if (d->proof)
            fl_close(d->proof, NULL);
        otk_device_free(&d->dev);
        otk_flashsim_free(&d->flash);
    }
    fl_loop_run(o->env->loop, 0);
    fl_faults_free(o->fx);
    otk_wipe(&o->fw, sizeof o->fw);
    free(o->d);
    free(o);
}
