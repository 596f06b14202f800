/*
 * Per-operation cost of the agent over a store (SQLite or PostgreSQL):
 * the agent core (OpenSSL) with N device cores (mbedTLS) in one process,
 * devices claiming, then a rotation campaign over all of them driven as
 * the daemon drives it (campaign steps, update offers, UPDATE_REQ and
 * CONFIRM). Timed are the agent's calls only, so the figures are one
 * agent's cost without MQTT or cloud round trips:
 *   agent CPU   thread CPU time of the agent process,
 *   wall        elapsed time in those calls (database round trips included),
 *   db CPU      (PostgreSQL) CPU of the server process serving the agent's
 *               connection, from /proc (server on this machine),
 *   WAL         (PostgreSQL) write-ahead log bytes written.
 * Usage: bench_store DATABASE [devices]     (docs/scaling.md)
 *        bench_store DATABASE --audit P M   P processes appending M audit
 *                                           rows each to the one chain
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "world.h"

#include "otakey/store.h"

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct cost {
    double cpu, wall, db;
    unsigned long calls;
} cost;

static double t_cpu, t_wall, t_db;
static double backend_cpu_s(void);

/* The server's CPU is read outside the timed window (10 ms ticks: the sums
 * over many calls are what count). */
static void start(void)
{
    t_db = backend_cpu_s();
    t_cpu = clock_s(CLOCK_THREAD_CPUTIME_ID);
    t_wall = clock_s(CLOCK_MONOTONIC);
}

static void stop(cost *c)
{
    c->cpu += clock_s(CLOCK_THREAD_CPUTIME_ID) - t_cpu;
    c->wall += clock_s(CLOCK_MONOTONIC) - t_wall;
    c->db += backend_cpu_s() - t_db;
    c->calls++;
}

/* The server side, through a second connection: backend CPU and WAL position. */
typedef struct server {
    PGconn *c;
    int pid;
} server;

static server sv = {NULL, 0};

static double backend_cpu_s(void)
{
    const server *s = &sv;
    char path[64], buf[1024], *p;
    unsigned long ut = 0, st = 0;
    FILE *f;
    if (s->pid <= 0)
        return 0;
    snprintf(path, sizeof path, "/proc/%d/stat", s->pid);
    f = fopen(path, "r");
    if (f == NULL)
        return 0;
    p = fgets(buf, sizeof buf, f);
    fclose(f);
    if (p == NULL || (p = strrchr(buf, ')')) == NULL)
        return 0;
    /* Fields after the command: state is 3rd; utime and stime are 14th and 15th. */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / 100.0; /* USER_HZ */
}

static double wal_bytes(const server *s)
{
    PGresult *r;
    double v = 0;
    if (s->c == NULL)
        return 0;
    r = PQexec(s->c, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')");
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        v = atof(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

/* Exchanges of one device until it is READY, timing the agent's side. */
static int run(world *w, otk_store *st, wdev *d, const uint8_t *first, size_t first_len, cost *c)
{
    uint8_t out[OTK_MSG_MAX_LEN], reply[OTK_MSG_MAX_LEN];
    size_t n = first_len, rn;
    int steps;
    otk_cloud cl;
    if (first_len)
        memcpy(out, first, first_len);
    for (steps = 0; steps < 16; steps++) {
        otk_dev_state s = otk_device_state(&d->dev);
        otk_status hs;
        if (n == 0) {
            if (s == OTK_DEV_READY && !d->dev.poll_wanted)
                return 0;
            if (s == OTK_DEV_PROVE) {
                if (otk_device_cloud(&d->dev, OTK_SET_STAGED, &cl) != OTK_OK ||
                    otk_device_proof(&d->dev, otk_memcloud_connect(w->cloud, &cl), out, sizeof out,
                                     &n) != OTK_OK)
                    return -1;
            } else if (otk_device_next(&d->dev, out, sizeof out, &n) != OTK_OK) {
                return -1;
            }
            if (n == 0)
                return -1;
        }
        start();
        hs = otk_agent_handle(&w->agent, out, n, reply, sizeof reply, &rn);
        if (otk_store_release(st) != OTK_OK)
            hs = OTK_ERR_STORAGE;
        stop(c);
        if (hs != OTK_OK)
            return -1;
        n = 0;
        if (otk_device_receive(&d->dev, reply, rn, out, sizeof out, &n) != OTK_OK)
            return -1;
    }
    return -1;
}

static void row(const char *what, long n, const cost *c, double wal, int pg)
{
    double db_cpu = wal < 0 ? -1 : c->db;
    printf("| %s | %.1f µs | %.1f µs |", what, c->cpu / (double)n * 1e6, c->wall / (double)n * 1e6);
    if (pg && wal < 0)
        printf(" %.1f µs | - |", c->db / (double)n * 1e6);
    else if (pg)
        printf(" %.1f µs | %.0f B |", db_cpu / (double)n * 1e6, wal / (double)n);
    printf("\n");
}

/* P processes append M rows each at once: the chain's throughput under contention. */
static int audit_bench(const char *db, int procs, long m)
{
    otk_crypto c;
    double t0;
    int p, status, ok = 1;
    uint64_t rows, bad;
    otk_store *st = NULL;
    char err[512];
    if (otk_crypto_openssl_init(&c, NULL, NULL) != OTK_OK)
        return 1;
    t0 = clock_s(CLOCK_MONOTONIC);
    for (p = 0; p < procs; p++) {
        fflush(NULL);
        if (fork() == 0) {
            otk_registry reg;
            otk_audit ev;
            long i;
            if (otk_store_open(db, &c, 1, &st, err, sizeof err) != OTK_OK)
                _exit(1);
            otk_store_bind(st, &reg);
            memset(&ev, 0, sizeof ev);
            ev.kind = OTK_AUD_REFUSED;
            for (i = 0; i < m; i++)
                if (reg.audit(reg.ctx, &ev) != OTK_OK)
                    _exit(1);
            otk_store_close(st);
            _exit(0);
        }
    }
    for (p = 0; p < procs; p++)
        if (wait(&status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            ok = 0;
    t0 = clock_s(CLOCK_MONOTONIC) - t0;
    if (!ok || otk_store_open(db, &c, 1, &st, err, sizeof err) != OTK_OK ||
        otk_store_audit_verify(st, &rows, &bad) != OTK_OK) {
        fprintf(stderr, "bench_store: audit appends failed or the chain does not verify\n");
        return 1;
    }
    printf("audit chain: %d processes x %ld appends in %.2f s = %.0f appends/s (chain verifies, %llu rows)\n",
           procs, m, t0, (double)procs * (double)m / t0, (unsigned long long)rows);
    otk_store_close(st);
    otk_crypto_openssl_free(&c);
    return 0;
}

int main(int argc, char **argv)
{
    const char *db = argc > 1 ? argv[1] : NULL;
    long n = argc > 2 ? strtol(argv[2], NULL, 10) : 1000, i;
    otk_store *st = NULL;
    world w;
    wdev *devs;
    cost claim = {0, 0, 0, 0}, step = {0, 0, 0, 0}, offer = {0, 0, 0, 0}, upd = {0, 0, 0, 0};
    char err[512], url[600];
    double wal0, wal_claim, wal_rot;
    int64_t cid;
    uint64_t total;
    otk_campaign_status cs;
    int pg;
    if (db && argc == 5 && !strcmp(argv[2], "--audit"))
        return audit_bench(db, atoi(argv[3]), atol(argv[4]));
    if (db == NULL || n <= 0 || n > 1000000) {
        fprintf(stderr, "usage: bench_store DATABASE [devices]\n");
        return 2;
    }
    pg = otk_store_kind_of(db) == OTK_STORE_POSTGRES;
    if (pg) /* names the agent's connection, to find its server process */
        snprintf(url, sizeof url, "%s%sapplication_name=otk-bench-agent", db,
                 strchr(db, '?') ? "&" : strncmp(db, "postgres", 8) ? " " : "?");
    else
        snprintf(url, sizeof url, "%s", db);
    devs = calloc((size_t)n, sizeof *devs);
    if (devs == NULL || world_init(&w, 1) != 0)
        return 1;
    if (otk_store_open(url, &w.agent_crypto, 1, &st, err, sizeof err) != OTK_OK) {
        fprintf(stderr, "bench_store: %s\n", err);
        return 1;
    }
    if (otk_store_add_batch(st, w.batch, "bench", w.pk) != OTK_OK) {
        fprintf(stderr, "bench_store: the database must be empty\n");
        return 1;
    }
    otk_store_bind(st, &w.regif);
    if (world_restart_agent(&w) != 0)
        return 1;
    if (pg) {
        PGresult *r;
        sv.c = PQconnectdb(db);
        r = PQexec(sv.c, "SELECT pid FROM pg_stat_activity WHERE application_name = 'otk-bench-agent'"
                         " LIMIT 1");
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
            sv.pid = atoi(PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    wal0 = wal_bytes(&sv);
    for (i = 0; i < n; i++) {
        if (wdev_init(&w, &devs[i], (unsigned)i) != 0 || wdev_boot(&w, &devs[i]) != OTK_OK ||
            run(&w, st, &devs[i], NULL, 0, &claim) != 0) {
            fprintf(stderr, "bench_store: claim of device %ld failed\n", i);
            return 1;
        }
    }
    wal_claim = wal_bytes(&sv) - wal0;
    wal0 = wal_bytes(&sv);
    if (otk_store_campaign_create(st, OTK_WANT_ROTATE, 0, "all", 1000000, 0, 0, &cid, &total) != OTK_OK ||
        total != (uint64_t)n)
        return 1;
    for (;;) {
        size_t k;
        start();
        k = otk_store_campaign_step(st, &w.agent, NULL, 0, NULL);
        stop(&step);
        if (otk_store_campaign_get(st, cid, &cs) != OTK_OK)
            return 1;
        if (cs.started == total)
            break;
        if (k == 0)
            return 1;
    }
    for (;;) {
        uint8_t ids[64][16], note[OTK_MSG_MAX_LEN], up[OTK_MSG_MAX_LEN];
        size_t k, j, nl, ul;
        start();
        k = otk_store_due_notifications(st, ids, 64, 600000);
        stop(&offer);
        if (k == 0)
            break;
        for (j = 0; j < k; j++) {
            wdev *d = NULL;
            long m;
            otk_status s;
            start();
            s = otk_agent_notify(&w.agent, ids[j], note, sizeof note, &nl);
            if (otk_store_release(st) != OTK_OK)
                s = OTK_ERR_STORAGE;
            stop(&offer);
            for (m = 0; m < n && d == NULL; m++)
                if (!memcmp(devs[m].cfg.device_id, ids[j], 16))
                    d = &devs[m];
            ul = 0;
            if (s != OTK_OK || d == NULL ||
                otk_device_receive(&d->dev, note, nl, up, sizeof up, &ul) != OTK_OK || ul == 0 ||
                run(&w, st, d, up, ul, &upd) != 0) {
                fprintf(stderr, "bench_store: rotation failed\n");
                return 1;
            }
        }
    }
    wal_rot = wal_bytes(&sv) - wal0;
    if (otk_store_campaign_step(st, &w.agent, NULL, 0, NULL) != 0 || otk_store_campaign_get(st, cid, &cs) != OTK_OK ||
        cs.done != total || cs.failed != 0) {
        fprintf(stderr, "bench_store: the campaign did not finish cleanly\n");
        return 1;
    }
    printf("agent over %s, %ld devices (agent core CPU and wall time per device)\n\n",
           pg ? "PostgreSQL" : "SQLite", n);
    printf(pg ? "| operation | agent CPU | wall | db CPU | WAL |\n|---|---|---|---|---|\n"
              : "| operation | agent CPU | wall |\n|---|---|---|\n");
    row("claim (CLAIM + CONFIRM)", n, &claim, wal_claim, pg);
    {
        cost rot = upd;
        rot.cpu += step.cpu + offer.cpu;
        rot.wall += step.wall + offer.wall;
        rot.db += step.db + offer.db;
        row("rotation: campaign step", n, &step, -1, pg);
        row("rotation: offer (claim + NOTIFY)", n, &offer, -1, pg);
        row("rotation: UPDATE_REQ + CONFIRM", n, &upd, -1, pg);
        row("rotation, all of it", n, &rot, wal_rot, pg);
    }
    for (i = 0; i < n; i++)
        wdev_free(&devs[i]);
    free(devs);
    otk_store_close(st);
    PQfinish(sv.c);
    world_free(&w);
    return 0;
}
