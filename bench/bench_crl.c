/*
 * What a certificate cloud's CRL costs (docs/operations.md, "type = x509"):
 * the agent's flush (read the CRL back, merge the queued revocations, sign,
 * write) and its size on disk, for CRLs of growing size up to N entries.
 * For each size: the flush that brings the CRL there (a campaign's worth of
 * retired certificates at once), then the steady cost of one more
 * revocation on a CRL of that size. CPU time of the process, min/median/max
 * of R runs. The broker's reload of the same files is measured by
 * bench/crl.sh, which runs this first. SHARES: the CRL's shares
 * (crl_shares; default 16, what docs/operations.md configures).
 * Usage: bench_crl DIR [N] [RUNS] [SHARES]   (DIR: an empty scratch directory)
 */
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "otakey/common.h"
#include "otakey/x509cloud.h"
#include "testca.h"

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The process's peak resident set so far (VmHWM), KiB; -1 unknown. */
static long peak_kib(void)
{
    char line[128];
    long v = -1;
    FILE *f = fopen("/proc/self/status", "r");
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, "VmHWM:", 6) == 0)
            v = strtol(line + 6, NULL, 10);
    if (f != NULL)
        fclose(f);
    return v;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Queues n random serials of the adapter's form. */
static int queue(otk_x509 *x, long n)
{
    uint8_t sn[16];
    char hex[33];
    long i;
    for (i = 0; i < n; i++) {
        if (RAND_bytes(sn, sizeof sn) != 1)
            return -1;
        sn[0] = (uint8_t)((sn[0] & 0x7f) | 0x40);
        otk_hex_encode(sn, sizeof sn, hex);
        if (otk_x509_remove(x, 3, hex) != OTK_OK)
            return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    long max = argc > 2 ? strtol(argv[2], NULL, 10) : 100000, size, have;
    int runs = argc > 3 ? atoi(argv[3]) : 5, r;
    long shares = argc > 4 ? strtol(argv[4], NULL, 10) : 16;
    otk_x509_cloud cfg;
    otk_x509 *x = NULL;
    char err[256];
    struct stat st;
    if (argc < 2 || max < 1 || max > 10000000 || runs < 1 || runs > 100 || shares < 1 ||
        shares > OTK_X509_CRL_SHARES_MAX) {
        fprintf(stderr, "usage: bench_crl DIR [N] [RUNS] [SHARES]\n");
        return 2;
    }
    memset(&cfg, 0, sizeof cfg);
    cfg.cloud_id = 3;
    cfg.validity_days = 30;
    cfg.crl_shares = (unsigned)shares;
    snprintf(cfg.ca_cert, sizeof cfg.ca_cert, "%s/ca.crt", argv[1]);
    snprintf(cfg.ca_key, sizeof cfg.ca_key, "%s/ca.key", argv[1]);
    snprintf(cfg.crl_file, sizeof cfg.crl_file, "%s/crl.pem", argv[1]);
    if (otk_test_make_ca(cfg.ca_cert, cfg.ca_key, "bench-crl-ca") != 0 ||
        otk_x509_open(&cfg, &x, err, sizeof err) != OTK_OK) {
        fprintf(stderr, "bench_crl: setup failed: %s\n", err);
        return 1;
    }
    printf("| CRL entries | flush to this size (s) | one more revocation: min / median / max (ms) | CRL file (KiB) | peak RSS (MiB) |\n");
    printf("|---:|---:|---|---:|---:|\n");
    have = 0;
    for (size = 1000; size <= max; size *= 10) {
        double t0, grow, t[100];
        if (queue(x, size - have) != 0)
            return 1;
        t0 = cpu_s();
        if (otk_x509_flush(x) != OTK_OK)
            return 1;
        grow = cpu_s() - t0;
        have = size;
        for (r = 0; r < runs; r++) {
            if (queue(x, 1) != 0)
                return 1;
            t0 = cpu_s();
            if (otk_x509_flush(x) != OTK_OK)
                return 1;
            t[r] = cpu_s() - t0;
            have++;
        }
        qsort(t, (size_t)runs, sizeof t[0], cmp_d);
        if (otk_x509_crl_entries(x) != (size_t)have || stat(cfg.crl_file, &st) != 0) {
            fprintf(stderr, "bench_crl: the CRL holds %zu entries, not %ld\n",
                    otk_x509_crl_entries(x), have);
            return 1;
        }
        printf("| %ld | %.3f | %.1f / %.1f / %.1f | %.0f | %.1f |\n", have, grow, t[0] * 1e3,
               t[runs / 2] * 1e3, t[runs - 1] * 1e3, (double)st.st_size / 1024.0,
               (double)peak_kib() / 1024.0);
        fflush(stdout);
    }
    otk_x509_close(x);
    return 0;
}
