/*
 * bench.h: the plain MQTT fleet both baseline schemes (fw.c, csr.c) run
 * on. Private to tools/fleet; the functions are static inline so each
 * scheme file stays a translation unit of its own (the build adds fw.c
 * and csr.c independently).
 *
 * A bl_fleet is n device connections (client id = the device's hex id, no
 * user; each subscribed to bench/v1/down/<id>) plus one server connection
 * (the bench user, subscribed to bench/v1/up/+), all on env->loop. The
 * scheme gives two handlers: one for a message reaching device i, one for
 * a message of device i reaching the server. The fleet times both with
 * the thread CPU clock while timing is on, so that device and server CPU
 * are kept apart although they share the thread.
 */
#ifndef OTK_FLEET_BENCH_H
#define OTK_FLEET_BENCH_H

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fleet.h"
#include "flashsim.h"

#define BL_CONNECT_WINDOW 256u /* connections being set up at most */
#define BL_BIND_IPS 64u        /* source addresses 127.2.0.1 .. 127.2.0.64 */
/* No keepalive: net.c sends no PINGREQ (it never calls
 * mosquitto_loop_misc), and devices waiting for their turn stay idle. */
#define BL_KEEPALIVE 0
#define BL_UP "bench/v1/up/"
#define BL_DOWN "bench/v1/down/"

typedef struct bl_fleet bl_fleet;

/*
 * Fault injection, to show that the devices' and the server's checks
 * bite: OTK_FLEET_FAULT names one fault, and every device of the scheme
 * it concerns must then fail:
 *   fw-block   the server flips a byte of one block on the wire
 *   fw-sig     the job document carries the signature of another image
 *   csr-ca     certificates are signed by a key other than the CA's
 *   csr-token  ownership tokens are sealed with a key the server does not
 *              accept (RegisterThing is rejected)
 */
static inline int bl_fault(const char *name)
{
    const char *f = getenv("OTK_FLEET_FAULT");
    return f != NULL && strcmp(f, name) == 0;
}

typedef struct bl_ops {
    /* A message on device i's down topic (device side). */
    void (*dev_msg)(void *s, uint32_t i, const uint8_t *p, size_t n);
    /* A message device i published, as the server receives it. */
    void (*srv_msg)(void *s, uint32_t i, const uint8_t *p, size_t n);
} bl_ops;

typedef struct bl_link {
    bl_fleet *F;
    fl_conn *c;
    uint32_t idx;
    uint8_t connecting, online;
    char hex[33];
} bl_link;

struct bl_fleet {
    fl_env *env;
    uint32_t first, n;
    bl_link *d;
    bl_link srv;            /* the server's connection (idx unused) */
    unsigned connecting;    /* device connections not yet answered */
    uint32_t online;        /* devices subscribed */
    const bl_ops *ops;
    void *s;
    int timing;             /* CPU accounting on */
    double dev_cpu_s, srv_cpu_s;
    uint64_t stray;         /* server messages from topics not of this fleet */
    fl_bytes gone;          /* counters of device connections that went away */
};

static inline void bl_link_connect(fl_conn *c, void *ud, int rc)
{
    bl_link *l = ud;
    bl_fleet *F = l->F;
    char t[64];
    if (l != &F->srv) {
        F->connecting -= l->connecting;
        l->connecting = 0;
    }
    if (rc != 0) {
        if (F->env->verbose)
            fprintf(stderr, "fleet: %s: bench connection failed (%d)\n", l->hex, rc);
        /* rc < 0: the loop frees this connection after the callback; a
         * refusal (rc > 0) is followed by on_lost. Either way it is
         * opened again by bl_fleet_tick once forgotten. */
        if (rc < 0 && l->c == c) {
            if (l != &F->srv)
                fl_conn_bytes(c, &F->gone);
            l->c = NULL;
        }
        return;
    }
    if (l == &F->srv)
        snprintf(t, sizeof t, BL_UP "+");
    else
        snprintf(t, sizeof t, BL_DOWN "%s", l->hex);
    if (fl_subscribe(c, t) != 0 && F->env->verbose)
        fprintf(stderr, "fleet: %s: subscribe failed\n", l->hex);
}

static inline void bl_link_subscribed(fl_conn *c, void *ud)
{
    bl_link *l = ud;
    (void)c;
    if (!l->online && l != &l->F->srv)
        l->F->online++;
    l->online = 1;
}

/* Device index of a topic bench/v1/up/<hex id of this fleet>, or -1. */
static inline long bl_index_of(const bl_fleet *F, const char *topic)
{
    const char *h = topic + strlen(BL_UP);
    unsigned long v;
    char *end;
    uint32_t i;
    if (strncmp(topic, BL_UP, strlen(BL_UP)) != 0 || strlen(h) != 32)
        return -1;
    v = strtoul(h + 24, &end, 16);
    if (*end != '\0' || v < (unsigned long)F->env->id_base + F->first)
        return -1;
    i = (uint32_t)(v - F->env->id_base - F->first);
    if (i >= F->n || strcmp(F->d[i].hex, h) != 0)
        return -1;
    return (long)i;
}

static inline void bl_link_message(fl_conn *c, void *ud, const char *topic, const uint8_t *p,
                                   size_t n)
{
    bl_link *l = ud;
    bl_fleet *F = l->F;
    double t0 = F->timing ? fl_thread_cpu() : 0;
    (void)c;
    if (l == &F->srv) {
        long i = bl_index_of(F, topic);
        if (i < 0)
            F->stray++;
        else
            F->ops->srv_msg(F->s, (uint32_t)i, p, n);
        if (F->timing)
            F->srv_cpu_s += fl_thread_cpu() - t0;
    } else {
        F->ops->dev_msg(F->s, l->idx, p, n);
        if (F->timing)
            F->dev_cpu_s += fl_thread_cpu() - t0;
    }
}

static inline void bl_link_lost(fl_conn *c, void *ud)
{
    bl_link *l = ud;
    if (l->c != c)
        return; /* an older connection of this device */
    if (l != &l->F->srv) {
        /* Still readable here (freed after the callback): its bytes count. */
        fl_conn_bytes(c, &l->F->gone);
        if (l->online)
            l->F->online--;
    }
    l->c = NULL;
    l->online = 0;
    if (l->F->env->verbose)
        fprintf(stderr, "fleet: %s: bench connection lost\n", l->hex);
}

static const fl_conn_cb bl_link_cb = {bl_link_connect, bl_link_subscribed, bl_link_message,
                                      bl_link_lost};

static inline void bl_open(bl_fleet *F, bl_link *l)
{
    char ip[32];
    int srv = l == &F->srv;
    snprintf(ip, sizeof ip, "127.2.0.%u", 1u + (srv ? 0u : l->idx) % BL_BIND_IPS);
    l->online = 0;
    l->c = fl_open(F->env->loop, srv ? &F->env->server_broker : &F->env->agent_broker, ip, l->hex,
                   srv ? F->env->bench_user : NULL,
                   srv ? F->env->bench_pass : NULL, BL_KEEPALIVE, &bl_link_cb, l);
    if (l->c == NULL) {
        if (F->env->verbose)
            fprintf(stderr, "fleet: %s: cannot open a connection: %s\n", l->hex, strerror(errno));
        return;
    }
    if (!srv) {
        l->connecting = 1;
        F->connecting++;
    }
}

/*
 * Sets up n devices with ids fl_device_id(env, first + i) and the server
 * id "<scheme>-server-<pid>". Nothing is opened yet.
 */
static inline void bl_fleet_init(bl_fleet *F, fl_env *env, uint32_t first, uint32_t n,
                                 const bl_ops *ops, void *s, const char *scheme)
{
    uint32_t i;
    memset(F, 0, sizeof *F);
    F->env = env;
    F->first = first;
    F->n = n;
    F->ops = ops;
    F->s = s;
    F->d = calloc(n ? n : 1, sizeof *F->d);
    if (F->d == NULL)
        abort();
    for (i = 0; i < n; i++) {
        uint8_t id[16];
        F->d[i].F = F;
        F->d[i].idx = i;
        fl_device_id(env, first + i, id, F->d[i].hex);
    }
    F->srv.F = F;
    snprintf(F->srv.hex, sizeof F->srv.hex, "%.12s-server-%ld", scheme, (long)getpid());
}

/* Reopens dropped connections (devices within the connect window). */
static inline void bl_fleet_tick(bl_fleet *F)
{
    uint32_t i;
    if (F->srv.c == NULL)
        bl_open(F, &F->srv);
    for (i = 0; i < F->n && F->connecting < BL_CONNECT_WINDOW; i++)
        if (F->d[i].c == NULL)
            bl_open(F, &F->d[i]);
}

/*
 * Connects the server and every device and waits until all are
 * subscribed (at most env->phase_timeout_s). Returns 0, or -1 when the
 * server could not get online (message on stderr). Devices that did not
 * come online are left to fail the phase.
 */
static inline int bl_fleet_connect(bl_fleet *F)
{
    uint64_t deadline = fl_now_us() + (uint64_t)F->env->phase_timeout_s * 1000000u;
    uint64_t last_tick = 0;
    while ((!F->srv.online || F->online < F->n) && fl_now_us() < deadline) {
        if (fl_now_us() - last_tick >= 50000) {
            last_tick = fl_now_us();
            bl_fleet_tick(F);
        }
        fl_loop_run(F->env->loop, 5);
    }
    if (!F->srv.online) {
        fprintf(stderr, "fleet: %s: cannot connect to the agent broker as '%s'\n", F->srv.hex,
                F->env->bench_user ? F->env->bench_user : "(none)");
        return -1;
    }
    if (F->online < F->n)
        fprintf(stderr, "fleet: %s: only %u of %u devices online\n", F->srv.hex, F->online, F->n);
    return 0;
}

/* Publishes on device i's up topic (device side) / down topic (server side). */
static inline int bl_send_up(bl_fleet *F, uint32_t i, const void *p, size_t n)
{
    char t[64];
    snprintf(t, sizeof t, BL_UP "%s", F->d[i].hex);
    return F->d[i].online ? fl_publish(F->d[i].c, t, p, n) : -1;
}

static inline int bl_send_down(bl_fleet *F, uint32_t i, const void *p, size_t n)
{
    char t[64];
    snprintf(t, sizeof t, BL_DOWN "%s", F->d[i].hex);
    return F->srv.online ? fl_publish(F->srv.c, t, p, n) : -1;
}

/* Adds (sign +1) or subtracts (sign -1) the devices' counters so far,
 * those of connections that dropped included. */
static inline void bl_fleet_bytes(bl_fleet *F, fl_bytes *out, int sign)
{
    fl_bytes b = F->gone;
    uint32_t i;
    for (i = 0; i < F->n; i++)
        if (F->d[i].c)
            fl_conn_bytes(F->d[i].c, &b);
    if (sign > 0) {
        out->app_up += b.app_up, out->app_down += b.app_down;
        out->mqtt_up += b.mqtt_up, out->mqtt_down += b.mqtt_down;
        out->tcp_up += b.tcp_up, out->tcp_down += b.tcp_down;
    } else {
        out->app_up -= b.app_up, out->app_down -= b.app_down;
        out->mqtt_up -= b.mqtt_up, out->mqtt_down -= b.mqtt_down;
        out->tcp_up -= b.tcp_up, out->tcp_down -= b.tcp_down;
    }
}

/* Closes every connection and frees the fleet. */
static inline void bl_fleet_free(bl_fleet *F)
{
    uint32_t i;
    for (i = 0; i < F->n; i++)
        if (F->d[i].c)
            fl_close(F->d[i].c, NULL);
    if (F->srv.c)
        fl_close(F->srv.c, NULL);
    fl_loop_run(F->env->loop, 0);
    free(F->d);
    F->d = NULL;
}


/*
 * Simulated flash for the devices in flight: a device takes a region for
 * its re-key and gives it back when done, so n regions serve the fleet.
 */
typedef struct bl_flash_pool {
    otk_flashsim *flash;
    otk_port *port;
    uint8_t *busy;
    unsigned n;
} bl_flash_pool;

/* n regions of size bytes (erase unit sector, program unit prog); aborts on failure. */
static inline void bl_pool_init(bl_flash_pool *p, unsigned n, uint32_t size, uint32_t sector,
                                uint32_t prog, const otk_crypto *crypto)
{
    unsigned k;
    p->n = n ? n : 1;
    p->flash = calloc(p->n, sizeof *p->flash);
    p->port = calloc(p->n, sizeof *p->port);
    p->busy = calloc(p->n, 1);
    if (!p->flash || !p->port || !p->busy)
        abort();
    for (k = 0; k < p->n; k++) {
        if (otk_flashsim_init(&p->flash[k], size, sector, prog) != 0)
            abort();
        otk_flashsim_port(&p->flash[k], crypto, &p->port[k]);
    }
}

/* A free region's index, or -1 when all are taken. */
static inline int bl_pool_take(bl_flash_pool *p)
{
    unsigned k;
    for (k = 0; k < p->n; k++)
        if (!p->busy[k]) {
            p->busy[k] = 1;
            return (int)k;
        }
    return -1;
}

static inline void bl_pool_give(bl_flash_pool *p, int k)
{
    if (k >= 0 && (unsigned)k < p->n)
        p->busy[k] = 0;
}

static inline void bl_pool_free(bl_flash_pool *p)
{
    unsigned k;
    for (k = 0; p->flash && k < p->n; k++)
        otk_flashsim_free(&p->flash[k]);
    free(p->flash);
    free(p->port);
    free(p->busy);
    memset(p, 0, sizeof *p);
}

#endif
