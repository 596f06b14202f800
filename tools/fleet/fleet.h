/*
 * fleet.h: what the schemes of otakey-fleet share: the loop and brokers,
 * the per-phase measures and how they are reported.
 *
 * A phase is one operation done by n devices (a claim, a rotation, a
 * firmware re-key, a certificate rotation). Its measures: wall time,
 * devices/s, per-device latency percentiles, the server's CPU time per
 * device (the agent's from /proc, a baseline server's from its thread
 * clock), the server's peak RSS, bytes per device and failures.
 */
#ifndef OTK_FLEET_H
#define OTK_FLEET_H

#include <stdint.h>
#include <stdio.h>

#include "fault.h"
#include "net.h"
#include "otakey/crypto.h"

typedef struct fl_env {
    fl_loop *loop;
    fl_broker agent_broker;   /* where devices talk to the agent / baseline servers */
    fl_broker server_broker;  /* the same broker's listener for servers (authenticated) */
    const char *cafile;
    const char *bench_user;   /* broker user of the baseline servers (bench/#) */
    const char *bench_pass;
    const otk_crypto *crypto; /* device-side crypto of the OTA-Key devices */
    uint32_t id_base;         /* device ids: d0d0..d0 || (id_base + index) */
    unsigned window;          /* operations in flight at most */
    unsigned max_connections; /* agent-broker connections at most; 0: every device stays
                                 connected. Below the fleet size, devices are duty-cycled:
                                 they connect for their operation (and poll for updates) */
    unsigned phase_timeout_s;
    int verbose;
    const fl_fault_cfg *faults; /* between OTA-Key devices and the agent broker; NULL: none */
    const char *progress;     /* file rewritten with the phase's progress; NULL: none */
} fl_env;

typedef struct fl_phase {
    char scheme[32];          /* "ota-key", "firmware 1 MiB", "x509-csr", ... */
    char name[32];            /* "claim", "rotate", "switch", "re-key" */
    uint64_t devices;         /* devices asked to do it */
    uint64_t done;            /* devices that completed it */
    uint64_t failures;        /* devices that did not complete (devices - done) */
    uint64_t refused;         /* messages a device refused (duplicates, stale answers) */
    double wall_s;
    double *lat_ms;           /* one per completed device (malloc'd) */
    uint64_t n_lat;
    double p50, p95, p99;     /* milliseconds */
    double server_cpu_us;     /* per completed device; < 0: not measured */
    double server_rss_mib;    /* peak; < 0: not measured */
    double device_cpu_us;     /* simulator CPU per device (all devices' work) */
    fl_bytes bytes;           /* sums over the devices */
    double cloud_cpu_us;      /* cloud brokers' CPU per device; < 0: not measured */
    double broker_cpu_us;     /* agent broker's CPU per device; < 0: not measured */
    uint64_t sent, retransmits; /* device requests sent; of them, repeats of the previous one */
    uint64_t reconnects;      /* agent-broker connections opened again after a loss */
    fl_fault_stats faults;    /* fault layer counters during the phase */
} fl_phase;

/* Starts a phase record (zeroed, names copied, latency array for n). */
void fl_phase_begin(fl_phase *ph, const char *scheme, const char *name, uint64_t n);
/* Records one device's latency in milliseconds. */
void fl_phase_latency(fl_phase *ph, double ms);
/* Sorts the latencies and fills the percentiles. */
void fl_phase_end(fl_phase *ph);
void fl_phase_free(fl_phase *ph);

/* Markdown table header / row, and the CSV header / row. */
void fl_report_md_header(FILE *f);
void fl_report_md_row(FILE *f, const fl_phase *ph);
void fl_report_csv_header(FILE *f);
void fl_report_csv_row(FILE *f, const fl_phase *ph, uint64_t fleet_size);

/* CPU seconds (user + system) and peak RSS (MiB) of a process from /proc. */
int fl_proc_cpu(long pid, double *cpu_s);
int fl_proc_peak_rss(long pid, double *mib);
/* CPU seconds of the calling thread. */
double fl_thread_cpu(void);

/* Device id of index i: 12 bytes d0, then id_base + i big-endian. */
void fl_device_id(const fl_env *env, uint32_t i, uint8_t id[16], char hex[33]);

#endif
