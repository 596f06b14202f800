/*
 * What binding credentials to identities costs a password-file cloud
 * (docs/security.md, "Password-file clouds"): a mosquitto broker whose
 * password file the agent's own adapter (cloud_pwfile.c) fills with N
 * device clients, reached over TLS as devices do.
 *   reload     the adapter's flush: rewrite the files, SIGHUP, wait until a
 *              client written in the same pass can log in (at N clients);
 *   login      broker CPU per TLS login under the device's own id (from
 *              /proc/<pid>/stat), and the wall time of one login;
 *   foreign    the same credentials under another device's id: refused
 *              where the otakey plugin (role cloud) binds them, accepted
 *              where it does not.
 * Usage: bench_binding PASSWORD_FILE ACL_FILE PID_FILE PORT CAFILE N LOGINS
 * Prints one markdown table row; exit 1 when a login that must work fails.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "otakey/pwfile.h"
#include "posix_port.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* utime + stime of a process, seconds. */
static double proc_cpu_s(long pid)
{
    char path[64], buf[2048], *p;
    unsigned long ut = 0, st = 0;
    FILE *f;
    size_t n;
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    if ((f = fopen(path, "r")) == NULL)
        return 0;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')');
    if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    otk_pwfile_cloud cfg;
    otk_pwfile *pw;
    char err[256], (*secret)[33], hex[33], other[33];
    double t, cpu0, cpu_own, cpu_foreign, reload_full, reload_one, *wall;
    long n, logins, i, pid, foreign_ok = 0;
    FILE *f;
    if (argc != 8 || (n = atol(argv[6])) < 2 || (logins = atol(argv[7])) < 1) {
        fprintf(stderr, "usage: bench_binding PASSWORD_FILE ACL_FILE PID_FILE PORT CAFILE N LOGINS\n");
        return 2;
    }
    memset(&cfg, 0, sizeof cfg);
    cfg.cloud_id = 1;
    snprintf(cfg.password_file, sizeof cfg.password_file, "%s", argv[1]);
    snprintf(cfg.acl_file, sizeof cfg.acl_file, "%s", argv[2]);
    snprintf(cfg.pid_file, sizeof cfg.pid_file, "%s", argv[3]);
    snprintf(cfg.host, sizeof cfg.host, "127.0.0.1");
    cfg.port = (uint16_t)atoi(argv[4]);
    cfg.tls = 1;
    snprintf(cfg.cafile, sizeof cfg.cafile, "%s", argv[5]);
    if ((f = fopen(argv[3], "r")) == NULL || fscanf(f, "%ld", &pid) != 1) {
        fprintf(stderr, "bench_binding: no broker pid in %s\n", argv[3]);
        return 1;
    }
    fclose(f);
    secret = calloc((size_t)n, sizeof *secret);
    wall = calloc((size_t)logins, sizeof *wall);
    if (secret == NULL || wall == NULL || otk_pwfile_open(&cfg, &pw, err, sizeof err) != OTK_OK) {
        fprintf(stderr, "bench_binding: %s\n", err);
        return 1;
    }
    /* Device i: id = i (big-endian in the last 4 bytes), user "<id>-1". */
    for (i = 0; i < n; i++) {
        uint8_t id[16] = {0}, r[16];
        otk_cloud c;
        id[12] = (uint8_t)(i >> 24), id[13] = (uint8_t)(i >> 16), id[14] = (uint8_t)(i >> 8), id[15] = (uint8_t)i;
        if (RAND_bytes(r, sizeof r) != 1)
            return 1;
        otk_hex_encode(r, sizeof r, secret[i]);
        otk_hex_encode(id, 16, hex);
        memset(&c, 0, sizeof c);
        c.cloud_id = 1;
        snprintf(c.user, sizeof c.user, "%s-1", hex);
        snprintf(c.secret, sizeof c.secret, "%s", secret[i]);
        if (otk_pwfile_create(pw, id, &c) != OTK_OK)
            return 1;
    }
    t = now_s();
    if (otk_pwfile_flush(pw, 60000) != OTK_OK) {
        fprintf(stderr, "bench_binding: the broker did not take %ld clients\n", n);
        return 1;
    }
    reload_full = now_s() - t;
    srand(7);
    cpu0 = proc_cpu_s(pid);
    for (i = 0; i < logins; i++) {
        long k = rand() % n;
        otk_cloud c;
        uint8_t id[16] = {0};
        id[12] = (uint8_t)(k >> 24), id[13] = (uint8_t)(k >> 16), id[14] = (uint8_t)(k >> 8), id[15] = (uint8_t)k;
        otk_hex_encode(id, 16, hex);
        memset(&c, 0, sizeof c);
        c.cloud_id = 1;
        c.port = cfg.port;
        c.flags = OTK_CLOUD_FLAG_TLS;
        snprintf(c.host, sizeof c.host, "127.0.0.1");
        snprintf(c.user, sizeof c.user, "%s-1", hex);
        snprintf(c.secret, sizeof c.secret, "%s", secret[k]);
        t = now_s();
        if (otk_mqtt_prove(&c, cfg.cafile, hex, 5000) != OTK_PROOF_OK) {
            fprintf(stderr, "bench_binding: device %ld could not log in\n", k);
            return 1;
        }
        wall[i] = now_s() - t;
    }
    cpu_own = proc_cpu_s(pid) - cpu0;
    cpu0 = proc_cpu_s(pid);
    for (i = 0; i < logins; i++) {
        long k = rand() % n;
        otk_cloud c;
        uint8_t id[16] = {0};
        id[12] = (uint8_t)(k >> 24), id[13] = (uint8_t)(k >> 16), id[14] = (uint8_t)(k >> 8), id[15] = (uint8_t)k;
        otk_hex_encode(id, 16, hex);
        id[15] ^= 1; /* its neighbour's id */
        otk_hex_encode(id, 16, other);
        memset(&c, 0, sizeof c);
        c.cloud_id = 1;
        c.port = cfg.port;
        c.flags = OTK_CLOUD_FLAG_TLS;
        snprintf(c.host, sizeof c.host, "127.0.0.1");
        snprintf(c.user, sizeof c.user, "%s-1", hex);
        snprintf(c.secret, sizeof c.secret, "%s", secret[k]);
        foreign_ok += otk_mqtt_prove(&c, cfg.cafile, other, 5000) == OTK_PROOF_OK;
    }
    cpu_foreign = proc_cpu_s(pid) - cpu0;
    {
        otk_cloud c;
        uint8_t id[16];
        memset(&c, 0, sizeof c);
        memset(id, 0xee, sizeof id);
        otk_hex_encode(id, 16, hex);
        c.cloud_id = 1;
        snprintf(c.user, sizeof c.user, "%s-1", hex);
        snprintf(c.secret, sizeof c.secret, "x");
        t = now_s();
        if (otk_pwfile_create(pw, id, &c) != OTK_OK || otk_pwfile_flush(pw, 60000) != OTK_OK)
            return 1;
        reload_one = now_s() - t;
    }
    qsort(wall, (size_t)logins, sizeof *wall, cmp_d);
    printf("| %ld | %.0f | %.0f | %.0f | %.2f | %.0f | %ld of %ld |\n", n, reload_full * 1e3,
           reload_one * 1e3, cpu_own / (double)logins * 1e6, wall[logins / 2] * 1e3,
           cpu_foreign / (double)logins * 1e6, foreign_ok, logins);
    otk_pwfile_close(pw);
    free(secret);
    free(wall);
    return 0;
}
