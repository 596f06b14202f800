/* Phase measures and their tables (tools/fleet/fleet.h). */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fleet.h"
#include "otakey/common.h"

void fl_phase_begin(fl_phase *ph, const char *scheme, const char *name, uint64_t n)
{
    memset(ph, 0, sizeof *ph);
    snprintf(ph->scheme, sizeof ph->scheme, "%s", scheme);
    snprintf(ph->name, sizeof ph->name, "%s", name);
    ph->devices = n;
    ph->lat_ms = calloc(n ? n : 1, sizeof *ph->lat_ms);
    if (ph->lat_ms == NULL)
        abort();
    ph->server_cpu_us = ph->server_rss_mib = ph->cloud_cpu_us = ph->broker_cpu_us = -1;
}

void fl_phase_latency(fl_phase *ph, double ms)
{
    if (ph->n_lat < ph->devices)
        ph->lat_ms[ph->n_lat++] = ms;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array. */
static double pct(const double *v, uint64_t n, double p)
{
    uint64_t k;
    if (n == 0)
        return 0;
    k = (uint64_t)(p / 100.0 * (double)n + 0.999999);
    if (k < 1)
        k = 1;
    return v[(k > n ? n : k) - 1];
}

void fl_phase_end(fl_phase *ph)
{
    qsort(ph->lat_ms, ph->n_lat, sizeof *ph->lat_ms, cmp_double);
    ph->p50 = pct(ph->lat_ms, ph->n_lat, 50);
    ph->p95 = pct(ph->lat_ms, ph->n_lat, 95);
    ph->p99 = pct(ph->lat_ms, ph->n_lat, 99);
    if (ph->done > ph->devices)
        ph->done = ph->devices;
    ph->failures += ph->devices - ph->done;
}

void fl_phase_free(fl_phase *ph)
{
    free(ph->lat_ms);
    ph->lat_ms = NULL;
}

static double per(uint64_t v, uint64_t n)
{
    return n ? (double)v / (double)n : 0;
}

static void opt(FILE *f, double v, const char *fmt)
{
    if (v < 0)
        fputs(" - |", f);
    else {
        fputc(' ', f);
        fprintf(f, fmt, v);
        fputs(" |", f);
    }
}

void fl_report_md_header(FILE *f)
{
    fprintf(f, "| scheme | phase | devices | failures | wall s | devices/s | p50 ms | p95 ms | p99 ms "
               "| server CPU µs/dev | server peak RSS MiB | payload B/dev (up+down) "
               "| MQTT framing B/dev | payload+framing B/dev | TCP bytes/dev (TLS incl.) |\n");
    fprintf(f, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
}

void fl_report_md_row(FILE *f, const fl_phase *ph)
{
    uint64_t n = ph->done ? ph->done : 1;
    double app = per(ph->bytes.app_up + ph->bytes.app_down, n);
    double mq = per(ph->bytes.mqtt_up + ph->bytes.mqtt_down, n);
    fprintf(f, "| %s | %s | %llu | %llu | %.2f | %.0f | %.1f | %.1f | %.1f |", ph->scheme, ph->name,
            (unsigned long long)ph->devices, (unsigned long long)ph->failures, ph->wall_s,
            ph->wall_s > 0 ? (double)ph->done / ph->wall_s : 0, ph->p50, ph->p95, ph->p99);
    opt(f, ph->server_cpu_us, "%.0f");
    opt(f, ph->server_rss_mib, "%.1f");
    fprintf(f, " %.0f (%.0f+%.0f) | %.0f | %.0f | %.0f |\n", app, per(ph->bytes.app_up, n),
            per(ph->bytes.app_down, n), mq, app + mq,
            per(ph->bytes.tcp_up + ph->bytes.tcp_down, n));
}

void fl_report_csv_header(FILE *f)
{
    fprintf(f, "fleet,scheme,phase,devices,done,failures,wall_s,devices_per_s,p50_ms,p95_ms,p99_ms,"
               "server_cpu_us,server_rss_mib,device_cpu_us,broker_cpu_us,cloud_cpu_us,"
               "app_up,app_down,mqtt_up,mqtt_down,tcp_up,tcp_down,refused\n");
}

void fl_report_csv_row(FILE *f, const fl_phase *ph, uint64_t fleet_size)
{
    uint64_t n = ph->done ? ph->done : 1;
    fprintf(f, "%llu,%s,%s,%llu,%llu,%llu,%.3f,%.1f,%.2f,%.2f,%.2f,%.1f,%.1f,%.1f,%.1f,%.1f,"
               "%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,%llu\n",
            (unsigned long long)fleet_size, ph->scheme, ph->name, (unsigned long long)ph->devices,
            (unsigned long long)ph->done, (unsigned long long)ph->failures, ph->wall_s,
            ph->wall_s > 0 ? (double)ph->done / ph->wall_s : 0, ph->p50, ph->p95, ph->p99,
            ph->server_cpu_us, ph->server_rss_mib, ph->device_cpu_us, ph->broker_cpu_us,
            ph->cloud_cpu_us, per(ph->bytes.app_up, n), per(ph->bytes.app_down, n),
            per(ph->bytes.mqtt_up, n), per(ph->bytes.mqtt_down, n), per(ph->bytes.tcp_up, n),
            per(ph->bytes.tcp_down, n), (unsigned long long)ph->refused);
}

int fl_proc_cpu(long pid, double *cpu_s)
{
    char path[64], buf[1024], *p;
    unsigned long ut, st;
    FILE *f;
    size_t n;
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Fields after the command name (which may hold spaces): state is 3rd,
     * utime 14th and stime 15th. */
    p = strrchr(buf, ')');
    if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
                            &st) != 2)
        return -1;
    *cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    return 0;
}

int fl_proc_peak_rss(long pid, double *mib)
{
    char path[64], line[256];
    FILE *f;
    long kb = -1;
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
            break;
    fclose(f);
    if (kb < 0)
        return -1;
    *mib = (double)kb / 1024.0;
    return 0;
}

double fl_thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void fl_device_id(const fl_env *env, uint32_t i, uint8_t id[16], char hex[33])
{
    uint32_t v = env->id_base + i;
    memset(id, 0xd0, 12);
    id[12] = (uint8_t)(v >> 24);
    id[13] = (uint8_t)(v >> 16);
    id[14] = (uint8_t)(v >> 8);
    id[15] = (uint8_t)v;
    otk_hex_encode(id, 16, hex);
}
