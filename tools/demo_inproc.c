/*
 * otakey-demo-inproc: the OTA-Key life cycle for a small fleet, with the
 * real device cores (mbedTLS, simulated flash) and the real agent core
 * (OpenSSL) in one process: claim, rotation campaign, switch to cloud B.
 * Prints a summary table. Usage: otakey-demo-inproc [devices]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "world.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *state_name(otk_dev_state s)
{
    static const char *names[] = {"uninit", "unclaimed", "claiming", "prove",
                                  "confirming", "ready", "updating"};
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 20, i;
    world w;
    wdev *devs;
    double t0, t_phase[3];
    unsigned long bytes[3], failures = 0;
    int phase;
    if (n < 1 || n > 100000) {
        fprintf(stderr, "otakey-demo-inproc: devices must be 1..100000, got '%s'\n", argv[1]);
        return 2;
    }
    devs = calloc((size_t)n, sizeof *devs);
    if (devs == NULL || world_init(&w, (uint64_t)time(NULL)) != 0) {
        fprintf(stderr, "otakey-demo-inproc: setup failed\n");
        return 1;
    }
    for (phase = 0; phase < 3; phase++) {
        unsigned long b0 = w.bytes_up + w.bytes_down;
        t0 = now_s();
        for (i = 0; i < n; i++) {
            wdev *d = &devs[i];
            otk_status st;
            if (phase == 0) {
                if (wdev_init(&w, d, (unsigned)i) != 0 || wdev_boot(&w, d) != OTK_OK) {
                    failures++;
                    continue;
                }
            } else if (world_request(&w, d, phase == 1 ? OTK_WANT_ROTATE : OTK_WANT_SWITCH,
                                     WORLD_CLOUD_B) != OTK_OK) {
                failures++;
                continue;
            }
            st = world_settle(&w, d, 64);
            if (st != OTK_OK) {
                fprintf(stderr, "device %ld: %s\n", i, otk_strerror(st));
                failures++;
            }
        }
        t_phase[phase] = now_s() - t0;
        bytes[phase] = w.bytes_up + w.bytes_down - b0;
    }
    printf("| device | state | version | cloud | user |\n|---|---|---|---|---|\n");
    for (i = 0; i < n && i < 20; i++) {
        otk_cloud c;
        if (otk_device_cloud(&devs[i].dev, OTK_SET_ACTIVE, &c) != OTK_OK)
            c.user[0] = 0, c.cloud_id = 0;
        printf("| %ld | %s | %u | %s | %s |\n", i, state_name(otk_device_state(&devs[i].dev)),
               (unsigned)otk_device_version(&devs[i].dev, OTK_SET_ACTIVE),
               c.cloud_id == WORLD_CLOUD_B ? "B" : c.cloud_id == WORLD_CLOUD_A ? "A" : "-", c.user);
    }
    if (n > 20)
        printf("| ... %ld more | | | | |\n", n - 20);
    printf("\n| phase | devices | wall time | bytes/device (payload) |\n|---|---|---|---|\n");
    for (phase = 0; phase < 3; phase++)
        printf("| %s | %ld | %.3f s | %.0f |\n", (const char *[]){"claim", "rotation", "switch to B"}[phase],
               n, t_phase[phase], (double)bytes[phase] / (double)n);
    printf("\nclients on the clouds: %zu, failures: %lu\n", otk_memcloud_count(w.cloud), failures);
    for (i = 0; i < n; i++)
        wdev_free(&devs[i]);
    free(devs);
    world_free(&w);
    return failures ? 1 : 0;
}
