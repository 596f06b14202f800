/*
 * Agent CPU per operation: the agent core (OpenSSL) handling the messages
 * of N device cores (mbedTLS, simulated flash) in one process, with the
 * in-memory registry and cloud, or the SQLite registry (--sqlite FILE).
 * Only the agent's calls are timed (thread CPU time), so the figure is
 * what one agent core spends per claim (CLAIM + CONFIRM) and per update
 * (UPDATE_REQ + CONFIRM), without network or cloud round trips.
 * --x509: version 2 devices on two certificate clouds whose CAs issue
 * every device certificate for real (otk_x509, OpenSSL): the figure then
 * includes the proof of possession checked and the certificate signed.
 * The device's proof is its certificate checked against its CA and its key.
 * --pragma SQL (with --sqlite, repeatable): run on the registry after it
 * opened, to measure a setting (bench/sqlite.sh). --batch N (with --sqlite):
 * one transaction per N devices' messages, as the daemon's group commit
 * does (its begin and commit are timed with the agent).
 * Usage: bench_agent [devices] [--sqlite FILE [--pragma SQL]...] [--x509]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sqlreg_internal.h"
#include "world.h"
#include "xclouds.h"

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double agent_cpu;      /* seconds spent inside otk_agent_handle */
static unsigned long handled; /* messages it handled */

/* One device through one phase, timing the agent's handling only. */
static int run(world *w, wdev *d)
{
    uint8_t out[OTK_MSG_MAX_LEN], reply[OTK_MSG_MAX_LEN];
    size_t n, rn;
    int steps;
    otk_status st;
    otk_cloud c;
    n = 0; /* an answer of the device's to the agent's last message, to send first */
    for (steps = 0; steps < 16; steps++) {
        otk_dev_state s = otk_device_state(&d->dev);
        double t0;
        if (n == 0 && s == OTK_DEV_READY && !d->dev.poll_wanted)
            return 0;
        if (n != 0) {
            /* (a NOTIFY of kind 2 is answered with a keyed request at once) */
        } else if (s == OTK_DEV_PROVE && xclouds_of(WORLD_CLOUD_A) != NULL) {
            if (otk_device_proof(&d->dev, xclouds_login(w, d), out, sizeof out, &n) != OTK_OK)
                return -1;
        } else if (s == OTK_DEV_PROVE) {
            if (otk_device_cloud(&d->dev, OTK_SET_STAGED, &c) != OTK_OK ||
                otk_device_proof(&d->dev, otk_memcloud_connect(w->cloud, &c), out, sizeof out, &n) !=
                    OTK_OK)
                return -1;
        } else if (otk_device_next(&d->dev, out, sizeof out, &n) != OTK_OK) {
            return -1;
        }
        if (n == 0)
            return -1;
        t0 = cpu_s();
        if ((st = otk_agent_handle(&w->agent, out, n, reply, sizeof reply, &rn)) != OTK_OK) {
            fprintf(stderr, "bench_agent: agent: %s\n", otk_strerror(st));
            return -1;
        }
        agent_cpu += cpu_s() - t0;
        handled++;
        if ((st = otk_device_receive(&d->dev, reply, rn, out, sizeof out, &n)) != OTK_OK) {
            fprintf(stderr, "bench_agent: device: %s\n", otk_strerror(st));
            return -1;
        }
    }
    return -1;
}

int main(int argc, char **argv)
{
    long n = 2000, i;
    const char *sqlite = NULL, *pragmas[16];
    int x509 = 0, n_pragmas = 0;
    long batch = 0;
    char dir[64];
    static const char *names[] = {"claim", "rotation", "switch"};
    world w;
    wdev *devs;
    int phase, a;
    for (a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--sqlite") && a + 1 < argc)
            sqlite = argv[++a];
        else if (!strcmp(argv[a], "--x509"))
            x509 = 1;
        else if (!strcmp(argv[a], "--pragma") && a + 1 < argc && n_pragmas < 16)
            pragmas[n_pragmas++] = argv[++a];
        else if (!strcmp(argv[a], "--batch") && a + 1 < argc && (batch = strtol(argv[++a], NULL, 10)) > 0)
            continue;
        else if ((n = strtol(argv[a], NULL, 10)) <= 0 || n > 1000000) {
            fprintf(stderr, "usage: bench_agent [devices] [--sqlite FILE [--pragma SQL]...] [--x509]\n");
            return 2;
        }
    }
    if (sqlite)
        remove(sqlite);
    devs = calloc((size_t)n, sizeof *devs);
    if (devs == NULL || (sqlite ? world_init_sqlite(&w, 1, sqlite) : world_init(&w, 1)) != 0) {
        fprintf(stderr, "bench_agent: setup failed\n");
        return 1;
    }
    for (a = 0; a < n_pragmas; a++)
        if (w.sql == NULL || otk_sql_exec(otk_sqlreg_handle(w.sql), pragmas[a]) != OTK_OK) {
            fprintf(stderr, "bench_agent: --pragma '%s' failed\n", pragmas[a]);
            return 1;
        }
    snprintf(dir, sizeof dir, "/tmp/otk-bench-x509-%d", (int)getpid());
    if (x509 && (mkdir(dir, 0700) != 0 || xclouds_setup(&w, dir) != 0)) {
        fprintf(stderr, "bench_agent: certificate clouds: setup failed\n");
        return 1;
    }
    /* Every device's messages run inside a group commit, as in the daemon. */
    w.agent.group_commit = batch > 0 && w.sql != NULL;
    printf("agent core CPU per operation, %ld %sdevices, registry: %s, clouds: %s\n\n", n,
           x509 ? "version 2 " : "", sqlite ? "SQLite (WAL)" : "memory",
           x509 ? "x509 (certificates issued by OpenSSL)" : "passwords");
    printf("| phase | devices | agent CPU total | per device | messages handled |\n");
    printf("|---|---|---|---|---|\n");
    for (phase = 0; phase < 3; phase++) {
        agent_cpu = 0;
        handled = 0;
        for (i = 0; i < n; i++) {
            wdev *d = &devs[i];
            uint8_t note[OTK_MSG_MAX_LEN];
            size_t nl;
            if (phase == 0) {
                if (wdev_init(&w, d, (unsigned)i) != 0)
                    return 1;
                if (x509)
                    d->cfg.proto = OTK_PROTO_V2;
                if (wdev_boot(&w, d) != OTK_OK)
                    return 1;
            } else {
                double t0 = cpu_s();
                if (otk_agent_request_update(&w.agent, d->cfg.device_id,
                                             phase == 1 ? OTK_WANT_ROTATE : OTK_WANT_SWITCH,
                                             WORLD_CLOUD_B, note, sizeof note, &nl) != OTK_OK)
                    return 1;
                agent_cpu += cpu_s() - t0;
                if (otk_device_poll(&d->dev) != OTK_OK)
                    return 1;
            }
            if (batch && w.sql && i % batch == 0) {
                double t0 = cpu_s();
                if (otk_sqlreg_batch_begin(w.sql) != OTK_OK)
                    return 1;
                agent_cpu += cpu_s() - t0;
            }
            if (run(&w, d) != 0) {
                fprintf(stderr, "bench_agent: device %ld failed in %s\n", i, names[phase]);
                return 1;
            }
            if (batch && w.sql && ((i + 1) % batch == 0 || i == n - 1)) {
                double t0 = cpu_s();
                if (otk_sqlreg_batch_end(w.sql) != OTK_OK)
                    return 1;
                agent_cpu += cpu_s() - t0;
            }
        }
        printf("| %s | %ld | %.3f s | %.1f µs | %lu |\n", names[phase], n, agent_cpu,
               agent_cpu / (double)n * 1e6, handled);
    }
    for (i = 0; i < n; i++)
        wdev_free(&devs[i]);
    free(devs);
    world_free(&w);
    if (sqlite)
        remove(sqlite);
    if (x509) {
        char cmd[96];
        for (a = 0; a < 2; a++) {
            printf("%scloud %c: %zu retired certificates queued for its CRL\n", a ? "" : "\n", 'A' + a,
                   otk_x509_pending(xclouds_of(a ? WORLD_CLOUD_B : WORLD_CLOUD_A)));
        }
        xclouds_close();
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd) != 0)
            return 1;
    }
    return 0;
}
