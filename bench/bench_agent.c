/*
 * Agent CPU per operation: the agent core (OpenSSL) handling the messages
 * of N device cores (mbedTLS, simulated flash) in one process, with the
 * in-memory registry and cloud, or the SQLite registry (--sqlite FILE).
 * Only the agent's calls are timed (thread CPU time), so the figure is
 * what one agent core spends per claim (CLAIM + CONFIRM) and per update
 * (UPDATE_REQ + CONFIRM), without network or cloud round trips.
 * Usage: bench_agent [devices] [--sqlite FILE]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "world.h"

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
    otk_cloud c;
    for (steps = 0; steps < 16; steps++) {
        otk_dev_state s = otk_device_state(&d->dev);
        double t0;
        if (s == OTK_DEV_READY && !d->dev.poll_wanted)
            return 0;
        n = 0;
        if (s == OTK_DEV_PROVE) {
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
        if (otk_agent_handle(&w->agent, out, n, reply, sizeof reply, &rn) != OTK_OK)
            return -1;
        agent_cpu += cpu_s() - t0;
        handled++;
        if (otk_device_receive(&d->dev, reply, rn, out, sizeof out, &n) != OTK_OK)
            return -1;
    }
    return -1;
}

int main(int argc, char **argv)
{
    long n = 2000, i;
    const char *sqlite = NULL;
    static const char *names[] = {"claim", "rotation", "switch"};
    world w;
    wdev *devs;
    int phase, a;
    for (a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--sqlite") && a + 1 < argc)
            sqlite = argv[++a];
        else if ((n = strtol(argv[a], NULL, 10)) <= 0 || n > 1000000) {
            fprintf(stderr, "usage: bench_agent [devices] [--sqlite FILE]\n");
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
    printf("agent core CPU per operation, %ld devices, registry: %s\n\n", n,
           sqlite ? "SQLite (WAL)" : "memory");
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
                if (wdev_init(&w, d, (unsigned)i) != 0 || wdev_boot(&w, d) != OTK_OK)
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
            if (run(&w, d) != 0) {
                fprintf(stderr, "bench_agent: device %ld failed in %s\n", i, names[phase]);
                return 1;
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
    return 0;
}
