/*
 * The registry and the certificate clouds at fleet scale: one agent core
 * over the SQLite store, opened as the daemon opens it, with two certificate
 * clouds (real issuing CAs; retired certificates queued, synced and written
 * to a CRL as the daemon does it). For each fleet size N, on a fresh
 * registry:
 *   claim     N version 2 devices claim, in waves: the device cores of all
 *             but a sample of K are dropped once claimed (those devices
 *             sleep from then on; their registry rows and certificates are
 *             real), so the process holds K device cores whatever N is;
 *   rotation  a campaign over all N, driven as the daemon drives it: created,
 *             its engine stepped until every device is started, an update
 *             offer (NOTIFY) made to each device; the sample's devices then
 *             ask, prove and confirm (group commit per 256 devices, the
 *             revocation queue synced before each commit); the retired
 *             certificates go into cloud A's CRL; then the campaign is
 *             aborted (the sleepers' requests withdrawn);
 *   switch    the same, to cloud B.
 * Timed: the agent's thread CPU time inside its calls (what the device cores
 * and the sample's proof logins cost is not counted). Reported per size:
 * agent CPU per claim (over the last 10,000 claims or all if fewer: the cost
 * at that size), per update of the sample, the campaign's creation, its
 * engine and its offers per device, the abort, the CRL write, the process's
 * peak RSS (the sample's device cores included; their share is measured
 * before the claims) and the registry file's size.
 * Usage: bench_scale SIZES [--sample K]     e.g. bench_scale 10000,100000,1000000
 * (bench/scale.sh builds it in Release and runs it.)
 *
 * bench_scale --prefill N --db FILE --ca CERT_A,KEY_A,CERT_B,KEY_B [--id-base B]
 * claims N devices (their own batch, ids from B, default 0x10000000) into the
 * SQLite registry FILE, with certificates of the given clouds' CAs, all of
 * them dropped once claimed: a daemon opened on FILE then holds N sleeping
 * devices beside the fleet it serves (bench/run, PREFILL=N). Prints the
 * agent's CPU per claim and the registry's size.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "world.h"
#include "xclouds.h"

#include "otakey/campaign.h"
#include "otakey/store.h"

#define GROUP 256      /* devices per group commit, as the daemon's batches */
#define WINDOW 10000L  /* the claims the per-claim cost at a size is taken over */

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A field of /proc/self/status in KiB (VmHWM, VmRSS), or -1. */
static long status_kib(const char *key)
{
    char line[256];
    long v = -1;
    size_t k = strlen(key);
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, k) && line[k] == ':') {
            v = atol(line + k + 1);
            break;
        }
    fclose(f);
    return v;
}

/* Starts a new peak (VmHWM) at the current RSS. */
static void reset_peak(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f != NULL) {
        fputs("5", f);
        fclose(f);
    }
}

static double agent_cpu; /* seconds inside the agent's calls */

static otk_store *st;

static int fail(const char *what, otk_status s)
{
    fprintf(stderr, "bench_scale: %s: %s\n", what, otk_strerror(s));
    return -1;
}

/* One device's exchanges until it is READY; real proof logins only for the sample. */
static int run(world *w, wdev *d, int sample)
{
    uint8_t out[OTK_MSG_MAX_LEN], reply[OTK_MSG_MAX_LEN];
    size_t n = 0, rn;
    int steps;
    otk_status s;
    for (steps = 0; steps < 16; steps++) {
        double t0;
        if (n == 0 && otk_device_state(&d->dev) == OTK_DEV_READY && !d->dev.poll_wanted)
            return 0;
        if (n != 0) {
            /* the device's answer to the agent's last message goes first */
        } else if (otk_device_state(&d->dev) == OTK_DEV_PROVE) {
            if ((s = otk_device_proof(&d->dev, sample ? xclouds_login(w, d) : OTK_PROOF_OK, out,
                                      sizeof out, &n)) != OTK_OK)
                return fail("device proof", s);
        } else if ((s = otk_device_next(&d->dev, out, sizeof out, &n)) != OTK_OK) {
            return fail("device", s);
        }
        if (n == 0)
            return fail("device", OTK_ERR_BAD_STATE);
        t0 = cpu_s();
        s = otk_agent_handle(&w->agent, out, n, reply, sizeof reply, &rn);
        if (s == OTK_OK)
            s = otk_store_release(st);
        agent_cpu += cpu_s() - t0;
        if (s != OTK_OK)
            return fail("agent", s);
        if ((s = otk_device_receive(&d->dev, reply, rn, out, sizeof out, &n)) != OTK_OK)
            return fail("device receive", s);
    }
    return fail("device (no end in 16 exchanges)", OTK_ERR_BAD_STATE);
}

/* Group commit around devices [i, i + GROUP), with the revocation queues synced first. */
static int group(long i, long n, int end)
{
    double t0 = cpu_s();
    otk_status s = OTK_OK;
    if (!end && i % GROUP == 0)
        s = otk_store_batch_begin(st);
    else if (end && ((i + 1) % GROUP == 0 || i == n - 1)) {
        otk_x509 *a = xclouds_of(WORLD_CLOUD_A), *b = xclouds_of(WORLD_CLOUD_B);
        if (otk_x509_pending(a) && otk_x509_sync(a) != OTK_OK)
            s = OTK_ERR_STORAGE;
        if (otk_x509_pending(b) && otk_x509_sync(b) != OTK_OK)
            s = OTK_ERR_STORAGE;
        if (s == OTK_OK)
            s = otk_store_batch_end(st);
    }
    agent_cpu += cpu_s() - t0;
    return s == OTK_OK ? 0 : fail("group commit", s);
}

typedef struct figures {
    double claim_us, create_s, engine_us, offer_us, update_us, abort_s, crl_ms;
    size_t crl_entries;
} figures;

/* A campaign over the whole fleet (rotation or switch), as the daemon runs it. */
static int campaign(world *w, wdev *sample, long k, long n, int kind, figures *f)
{
    static uint8_t ids[256][16];
    int64_t cid;
    uint64_t total;
    otk_campaign_status cs;
    otk_status s;
    double t0;
    long i, offers = 0;
    otk_x509 *x = xclouds_of(WORLD_CLOUD_A); /* both campaigns retire cloud A's certificates */
    t0 = cpu_s();
    s = otk_store_campaign_create(st, kind, kind == OTK_WANT_SWITCH ? WORLD_CLOUD_B : 0, "all",
                                  100000000, 0, 0, &cid, &total);
    f->create_s = cpu_s() - t0;
    if (s != OTK_OK || total != (uint64_t)n)
        return fail("campaign create", s != OTK_OK ? s : OTK_ERR_BAD_VALUE);
    /* The engine's steps until one starts nothing (its rate is no limit
     * here); the status read after (a pass over the devices in flight, what
     * an operator's status call costs) is not the engine's. */
    agent_cpu = 0;
    for (;;) {
        size_t started;
        t0 = cpu_s();
        started = otk_store_campaign_step(st, &w->agent, NULL, 0, NULL);
        agent_cpu += cpu_s() - t0;
        if (started == 0)
            break;
    }
    f->engine_us = agent_cpu / (double)n * 1e6;
    if ((s = otk_store_campaign_get(st, cid, &cs)) != OTK_OK || cs.started != cs.total)
        return fail("campaign: not every device started", s != OTK_OK ? s : OTK_ERR_BAD_STATE);
    agent_cpu = 0;
    for (;;) {
        size_t m, j;
        t0 = cpu_s();
        m = otk_store_due_notifications(st, ids, 256, 3600000u);
        for (j = 0; j < m; j++) {
            uint8_t msg[OTK_MSG_MAX_LEN];
            size_t len;
            if ((s = otk_agent_notify(&w->agent, ids[j], msg, sizeof msg, &len)) != OTK_OK ||
                (s = otk_store_release(st)) != OTK_OK)
                return fail("update offer", s);
        }
        agent_cpu += cpu_s() - t0;
        offers += (long)m;
        if (m == 0)
            break;
    }
    if (offers != n) {
        fprintf(stderr, "bench_scale: %ld update offers for %ld devices\n", offers, n);
        return -1;
    }
    f->offer_us = agent_cpu / (double)n * 1e6;
    /* The sample wakes up, asks and confirms (the offer itself went to sleepers too). */
    agent_cpu = 0;
    for (i = 0; i < k; i++) {
        if (otk_device_poll(&sample[i].dev) != OTK_OK)
            return fail("poll", OTK_ERR_BAD_STATE);
        if (group(i, k, 0) != 0 || run(w, &sample[i], 1) != 0 || group(i, k, 1) != 0)
            return -1;
    }
    f->update_us = agent_cpu / (double)k * 1e6;
    t0 = wall_s();
    f->crl_entries = otk_x509_pending(x);
    if ((s = otk_x509_flush(x)) != OTK_OK)
        return fail("CRL", s);
    f->crl_ms = (wall_s() - t0) * 1e3;
    f->crl_entries = otk_x509_crl_entries(x);
    t0 = cpu_s();
    s = otk_store_campaign_set_state(st, cid, OTK_CAMP_ABORTED);
    f->abort_s = cpu_s() - t0;
    if (s != OTK_OK)
        return fail("campaign abort", s);
    if ((s = otk_store_campaign_get(st, cid, &cs)) != OTK_OK || cs.done != (uint64_t)k)
        return fail("campaign outcome (the sample done)", s != OTK_OK ? s : OTK_ERR_BAD_VALUE);
    return 0;
}

/* A world on the SQLite registry at db with its batch (named name), the
 * device cores on OpenSSL (their work is not what is measured; their
 * mbedTLS backend is kept in *mbed for the teardown). 0 or -1. */
static int open_world(world *w, uint64_t seed, const char *db, const char *name, otk_crypto *mbed)
{
    char err[256];
    otk_status s;
    if (world_init(w, seed) != 0)
        return fail("setup", OTK_ERR_INTERNAL);
    *mbed = w->dev_crypto;
    if (otk_crypto_openssl_init(&w->dev_crypto, NULL, NULL) != OTK_OK)
        return fail("device crypto", OTK_ERR_CRYPTO);
    if (otk_store_open(db, &w->agent_crypto, 1, &st, err, sizeof err) != OTK_OK) {
        fprintf(stderr, "bench_scale: %s\n", err);
        return -1;
    }
    if ((s = otk_store_add_batch(st, w->batch, name, w->pk)) != OTK_OK)
        return fail("batch (a registry prefilled with it already?)", s);
    otk_store_bind(st, &w->regif);
    return 0;
}

/* Closes what open_world and the clouds opened and removes dir. 0 or -1. */
static int close_world(world *w, otk_crypto mbed, const char *dir)
{
    char cmd[96];
    xclouds_close();
    otk_store_close(st);
    otk_crypto_openssl_free(&w->dev_crypto);
    w->dev_crypto = mbed;
    world_free(w);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int one_size(long n, long k, int first)
{
    char dir[64], db[96];
    world w;
    otk_crypto mbed;
    wdev *sample, tmp;
    figures rot, sw;
    long i, ns = 0, stride = n / k, base_kib, peak_kib;
    double wall0 = wall_s(), window_cpu = 0;
    struct stat sb;
    otk_status s;
    snprintf(dir, sizeof dir, "/tmp/otk-scale-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return fail("mkdtemp", OTK_ERR_STORAGE);
    snprintf(db, sizeof db, "%s/registry.db", dir);
    sample = calloc((size_t)k, sizeof *sample);
    if (sample == NULL)
        return fail("setup", OTK_ERR_INTERNAL);
    if (open_world(&w, 1, db, "scale", &mbed) != 0)
        return -1;
    if (xclouds_setup(&w, dir) != 0)
        return fail("certificate clouds", OTK_ERR_INTERNAL);
    for (i = 0; i < k; i++) /* the sample's cores and flash, before anything is measured */
        if (wdev_init(&w, &sample[i], 0) != 0)
            return fail("sample", OTK_ERR_INTERNAL);
    reset_peak();
    base_kib = status_kib("VmRSS");
    if (first) {
        printf("| fleet | claim µs | rotation µs | switch µs | campaign create s | engine µs/dev |"
               " offer µs/dev | abort s | CRL write ms (entries) | peak RSS MiB (sample's) |"
               " registry MiB | wall s |\n");
        printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        fflush(stdout);
    }
    for (i = 0; i < n; i++) {
        int in_sample = i % stride == 0 && ns < k;
        wdev *d = in_sample ? &sample[ns++] : &tmp;
        if (in_sample)
            wdev_free(d);
        if (wdev_init(&w, d, (unsigned)i) != 0)
            return fail("device", OTK_ERR_INTERNAL);
        d->cfg.proto = OTK_PROTO_V2;
        if ((s = wdev_boot(&w, d)) != OTK_OK)
            return fail("boot", s);
        if (i == n - (n < WINDOW ? n : WINDOW))
            window_cpu = agent_cpu;
        if (group(i, n, 0) != 0 || run(&w, d, in_sample) != 0 || group(i, n, 1) != 0)
            return -1;
        if (!in_sample)
            wdev_free(d);
    }
    if (ns != k)
        return fail("sample size", OTK_ERR_INTERNAL);
    rot.claim_us = (agent_cpu - window_cpu) / (double)(n < WINDOW ? n : WINDOW) * 1e6;
    if (campaign(&w, sample, k, n, OTK_WANT_ROTATE, &rot) != 0 ||
        campaign(&w, sample, k, n, OTK_WANT_SWITCH, &sw) != 0)
        return -1;
    peak_kib = status_kib("VmHWM");
    printf("| %ld | %.0f | %.0f | %.0f | %.2f / %.2f | %.1f / %.1f | %.1f / %.1f | %.2f / %.2f |"
           " %.0f (%zu) | %.1f (%.1f) | %.0f | %.0f |\n",
           n, rot.claim_us, rot.update_us, sw.update_us, rot.create_s, sw.create_s, rot.engine_us,
           sw.engine_us, rot.offer_us, sw.offer_us, rot.abort_s, sw.abort_s, rot.crl_ms,
           rot.crl_entries, (double)peak_kib / 1024.0, (double)base_kib / 1024.0,
           stat(db, &sb) == 0 ? (double)sb.st_size / 1048576.0 : -1.0, wall_s() - wall0);
    fflush(stdout);
    for (i = 0; i < k; i++)
        wdev_free(&sample[i]);
    free(sample);
    return close_world(&w, mbed, dir);
}

/* --prefill: n claimed devices, dropped once claimed, into the registry at db. */
static int prefill(long n, const char *db, char *cas, unsigned long id_base)
{
    const char *cert[2], *key[2], *crl[2];
    char dir[64], crlp[2][96], *f[4], *save = NULL;
    world w;
    otk_crypto mbed;
    wdev d;
    long i;
    int j;
    double wall0 = wall_s();
    struct stat sb;
    otk_status s;
    for (j = 0; j < 4; j++)
        if ((f[j] = strtok_r(j ? NULL : cas, ",", &save)) == NULL) {
            fprintf(stderr, "bench_scale: --ca wants CERT_A,KEY_A,CERT_B,KEY_B\n");
            return 2;
        }
    snprintf(dir, sizeof dir, "/tmp/otk-prefill-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return fail("mkdtemp", OTK_ERR_STORAGE);
    for (j = 0; j < 2; j++) { /* the CRLs of the sleepers' clouds are not the daemon's */
        snprintf(crlp[j], sizeof crlp[j], "%s/crl%d.pem", dir, j);
        cert[j] = f[2 * j];
        key[j] = f[2 * j + 1];
        crl[j] = crlp[j];
    }
    if (open_world(&w, 2, db, "prefill", &mbed) != 0)
        return 1;
    if (xclouds_setup_on(&w, cert, key, crl) != 0)
        return fail("certificate clouds", OTK_ERR_INTERNAL);
    for (i = 0; i < n; i++) {
        if (wdev_init(&w, &d, (unsigned)(id_base + (unsigned long)i)) != 0)
            return fail("device", OTK_ERR_INTERNAL);
        d.cfg.proto = OTK_PROTO_V2;
        if ((s = wdev_boot(&w, &d)) != OTK_OK)
            return fail("boot", s);
        if (group(i, n, 0) != 0 || run(&w, &d, 0) != 0 || group(i, n, 1) != 0)
            return 1;
        wdev_free(&d);
        if ((i + 1) % 100000 == 0) {
            fprintf(stderr, "prefill: %ld devices, %.0f s\n", i + 1, wall_s() - wall0);
        }
    }
    printf("prefill: %ld devices claimed (batch 0000000100000007, ids from %08lx), agent %.0f µs"
           " per claim, %.0f s, registry %.0f MiB, peak RSS %.1f MiB\n",
           n, id_base, agent_cpu / (double)n * 1e6, wall_s() - wall0,
           stat(db, &sb) == 0 ? (double)sb.st_size / 1048576.0 : -1.0,
           (double)status_kib("VmHWM") / 1024.0);
    return close_world(&w, mbed, dir) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    long sizes[8], k = 1000, pre = 0;
    unsigned long id_base = 0x10000000ul;
    const char *db = NULL;
    char *cas = NULL;
    int n = 0, a, i;
    for (a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--sample") && a + 1 < argc) {
            k = strtol(argv[++a], NULL, 10);
        } else if (!strcmp(argv[a], "--prefill") && a + 1 < argc) {
            pre = strtol(argv[++a], NULL, 10);
        } else if (!strcmp(argv[a], "--db") && a + 1 < argc) {
            db = argv[++a];
        } else if (!strcmp(argv[a], "--ca") && a + 1 < argc) {
            cas = argv[++a];
        } else if (!strcmp(argv[a], "--id-base") && a + 1 < argc) {
            id_base = strtoul(argv[++a], NULL, 0);
        } else {
            char *p = argv[a], *e;
            while (*p && n < 8) {
                sizes[n++] = strtol(p, &e, 10);
                if (e == p || sizes[n - 1] <= 0 || sizes[n - 1] > 10000000)
                    n = 99;
                p = *e == ',' ? e + 1 : e;
                if (n == 99)
                    break;
            }
        }
    }
    if (pre != 0 || db != NULL || cas != NULL) {
        if (pre <= 0 || pre > 10000000 || db == NULL || cas == NULL || n != 0 ||
            id_base + (unsigned long)pre > 0xfffffffful) {
            fprintf(stderr, "usage: bench_scale --prefill N --db FILE --ca CERT_A,KEY_A,CERT_B,KEY_B"
                            " [--id-base B]\n");
            return 2;
        }
        return prefill(pre, db, cas, id_base);
    }
    if (n == 0 || n > 8 || k <= 0) {
        fprintf(stderr, "usage: bench_scale SIZES [--sample K]   (SIZES: e.g. 10000,100000,1000000)\n");
        return 2;
    }
    for (i = 0; i < n; i++)
        if (sizes[i] < k) {
            fprintf(stderr, "bench_scale: a fleet of %ld is smaller than the sample (%ld)\n", sizes[i], k);
            return 2;
        }
    printf("agent core over SQLite with two certificate clouds; sample of %ld devices per size;"
           " agent thread CPU (rotation / switch where two figures)\n\n", k);
    for (i = 0; i < n; i++)
        if (one_size(sizes[i], k, i == 0) != 0)
            return 1;
    return 0;
}
