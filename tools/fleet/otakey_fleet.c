/*
 * otakey-fleet: simulates a fleet of OTA-Key devices against the real
 * agent and the real brokers, and runs the baseline schemes through the
 * same brokers; prints one markdown table and appends CSV rows.
 *
 * usage: otakey-fleet --lab-env FILE --batch HEX16 --pk FILE --agent-pub HEX128
 *          --devices N [options]        (otakey-fleet --help lists them)
 * Exit codes: 0 every phase done with 0 failures, 1 failures or a phase
 *             that could not run, 2 bad usage.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent_config.h"
#include "baseline.h"
#include "fleet.h"
#include "ota.h"

typedef struct opts {
    const char *lab_env, *batch, *pk, *agent_pub, *csv, *md;
    const char *rotate_cmd, *switch_cmd, *schemes, *fw_sizes, *progress, *state_out;
    long devices, id_base, window, timeout_s, baseline_devices, fw_block, retry_ms, max_conn;
    long agent_pids[8], broker_pid, cloud_pids[2], switch_cloud, proto;
    int n_agents;
    const char *label;
    int mbedtls, verbose, check;
    fl_fault_cfg faults;
    int seed_given;
} opts;

typedef struct lab {
    char ca[256], bench_user[64], bench_pass[128];
    int agent_port, server_port;
} lab;

static int usage(const char *why)
{
    FILE *f = why ? stderr : stdout;
    if (why)
        fprintf(stderr, "otakey-fleet: %s\n", why);
    fprintf(f,
            "usage: otakey-fleet --lab-env FILE --batch HEX16 --pk FILE --agent-pub HEX128\n"
            "                    --devices N [options]\n"
            "  --lab-env FILE         brokers written by scripts/lab.sh (lab.env)\n"
            "  --devices N            OTA-Key devices (1..1000000)\n"
            "  --id-base N            first device number (default 1)\n"
            "  --window N             operations in flight at most (default 2000)\n"
            "  --max-connections N    agent-broker connections at most (default: what the fd\n"
            "                         limit allows); with fewer than the devices, devices are\n"
            "                         duty-cycled: connect for their operation, poll for updates\n"
            "  --timeout S            seconds a phase may take (default 900)\n"
            "  --retry-ms N           devices' first retransmission delay (default 10000)\n"
            "  --device-crypto NAME   openssl (default) or mbedtls, for the OTA-Key devices\n"
            "  --proto 1|2            protocol version of the OTA-Key devices (default 1; 2 for\n"
            "                         certificate clouds, docs/protocol.md §11)\n"
            "  --rotate-cmd CMD       starts the rotation campaign (shell command)\n"
            "  --switch-cmd CMD       starts the cloud-switch campaign\n"
            "  --switch-cloud ID      cloud the switch goes to (default 2)\n"
            "  --agent-pid PID[,PID]  agent process(es), for their CPU time and peak RSS\n"
            "  --label NAME           scheme name of the OTA-Key rows (default ota-key)\n"
            "  --broker-pid PID       agent broker process, for its CPU time\n"
            "  --cloud-pids PID,PID   cloud broker processes, for their CPU time\n"
            "  --schemes LIST         of ota,fw,csr (default all three)\n"
            "  --baseline-devices N   devices of each baseline (default min(N, 1000))\n"
            "  --fw-sizes LIST        firmware image sizes in bytes (default 262144,1048576,4194304)\n"
            "  --fw-block N           firmware block size (default 4096)\n"
            "  --loss P               drop each device<->agent message with probability P (0..1)\n"
            "  --dup P                deliver each message twice with probability P (0..1)\n"
            "  --delay-ms D           hold each message a random 0..D ms (reorders)\n"
            "  --seed N               seed of the fault decisions (default: from the clock, printed)\n"
            "  --check                at the end, every device logs in to its cloud with its\n"
            "                         committed set; failures count (exit 1)\n"
            "  --state-out FILE       with --check: one JSON line per device (state, version,\n"
            "                         cloud, login)\n"
            "  --progress FILE        rewritten during phases: PHASE DONE N SECONDS\n"
            "  --csv FILE             append CSV rows (header written when the file is new)\n"
            "  --md FILE              also write the markdown table there\n"
            "  -v                     progress on stderr\n"
            "Exit codes: 0 all phases done with 0 failures, 1 failures, 2 bad usage.\n");
    return why ? 2 : 0;
}

static int num(const char *v, long lo, long hi, long *out)
{
    char *end;
    long x;
    errno = 0;
    x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return -1;
    *out = x;
    return 0;
}

static int numf(const char *v, double lo, double hi, double *out)
{
    char *end;
    double x;
    errno = 0;
    x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= lo && x <= hi))
        return -1;
    *out = x;
    return 0;
}

static int parse(int argc, char **argv, opts *o)
{
    int i;
    char why[160];
    memset(o, 0, sizeof *o);
    o->id_base = 1;
    o->window = 2000;
    o->timeout_s = 900;
    o->retry_ms = 10000;
    o->switch_cloud = 2;
    o->baseline_devices = -1;
    o->fw_block = 4096;
    o->schemes = "ota,fw,csr";
    o->fw_sizes = "262144,1048576,4194304";
    for (i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(k, "--help") || !strcmp(k, "-h"))
            return usage(NULL) - 1;
        if (!strcmp(k, "-v")) {
            o->verbose = 1;
            continue;
        }
        if (!strcmp(k, "--check")) {
            o->check = 1;
            continue;
        }
        if (v == NULL) {
            snprintf(why, sizeof why, "option '%s' needs a value (or is unknown)", k);
            return usage(why);
        }
        i++;
        if (!strcmp(k, "--lab-env")) o->lab_env = v;
        else if (!strcmp(k, "--batch")) o->batch = v;
        else if (!strcmp(k, "--pk")) o->pk = v;
        else if (!strcmp(k, "--agent-pub")) o->agent_pub = v;
        else if (!strcmp(k, "--csv")) o->csv = v;
        else if (!strcmp(k, "--md")) o->md = v;
        else if (!strcmp(k, "--rotate-cmd")) o->rotate_cmd = v;
        else if (!strcmp(k, "--switch-cmd")) o->switch_cmd = v;
        else if (!strcmp(k, "--schemes")) o->schemes = v;
        else if (!strcmp(k, "--fw-sizes")) o->fw_sizes = v;
        else if (!strcmp(k, "--progress")) o->progress = v;
        else if (!strcmp(k, "--state-out")) o->state_out = v;
        else if (!strcmp(k, "--loss")) bad = numf(v, 0, 1, &o->faults.loss);
        else if (!strcmp(k, "--dup")) bad = numf(v, 0, 1, &o->faults.dup);
        else if (!strcmp(k, "--delay-ms")) {
            long d;
            bad = num(v, 0, 600000, &d);
            o->faults.delay_ms = (unsigned)d;
        } else if (!strcmp(k, "--seed")) {
            char *end;
            errno = 0;
            o->faults.seed = strtoull(v, &end, 10);
            bad = errno || end == v || *end || *v == '-';
            o->seed_given = 1;
        }
        else if (!strcmp(k, "--devices")) bad = num(v, 1, 1000000, &o->devices);
        else if (!strcmp(k, "--id-base")) bad = num(v, 0, 0x7fffffffL, &o->id_base);
        else if (!strcmp(k, "--window")) bad = num(v, 1, 1000000, &o->window);
        else if (!strcmp(k, "--timeout")) bad = num(v, 1, 86400, &o->timeout_s);
        else if (!strcmp(k, "--retry-ms")) bad = num(v, 100, 600000, &o->retry_ms);
        else if (!strcmp(k, "--switch-cloud")) bad = num(v, 1, 0xffffffffL, &o->switch_cloud);
        else if (!strcmp(k, "--agent-pid")) {
            /* One pid, or a comma-separated list (several agents: CPU summed). */
            char *p = (char *)v, *end;
            o->n_agents = 0;
            while (*p && o->n_agents < 8) {
                long x = strtol(p, &end, 10);
                if (end == p || x <= 0 || (*end && *end != ',')) {
                    bad = 1;
                    break;
                }
                o->agent_pids[o->n_agents++] = x;
                p = *end ? end + 1 : end;
            }
            bad = bad || o->n_agents == 0;
        } else if (!strcmp(k, "--label")) o->label = v;
        else if (!strcmp(k, "--broker-pid")) bad = num(v, 1, 0x7fffffffL, &o->broker_pid);
        else if (!strcmp(k, "--baseline-devices")) bad = num(v, 0, 1000000, &o->baseline_devices);
        else if (!strcmp(k, "--fw-block")) bad = num(v, 64, 262144, &o->fw_block);
        else if (!strcmp(k, "--max-connections")) bad = num(v, 1, 10000000, &o->max_conn);
        else if (!strcmp(k, "--proto")) bad = num(v, 1, 2, &o->proto);
        else if (!strcmp(k, "--cloud-pids"))
            bad = sscanf(v, "%ld,%ld", &o->cloud_pids[0], &o->cloud_pids[1]) != 2;
        else if (!strcmp(k, "--device-crypto")) {
            if (!strcmp(v, "mbedtls")) o->mbedtls = 1;
            else bad = strcmp(v, "openssl") != 0;
        } else {
            snprintf(why, sizeof why, "unknown option '%s'", k);
            return usage(why);
        }
        if (bad) {
            snprintf(why, sizeof why, "bad value '%s' for %s", v, k);
            return usage(why);
        }
    }
    if (!o->lab_env || !o->batch || !o->pk || !o->agent_pub || !o->devices)
        return usage("--lab-env, --batch, --pk, --agent-pub and --devices are required");
    if (o->state_out && !o->check)
        return usage("--state-out needs --check");
    if (o->faults.loss >= 1)
        return usage("--loss must be below 1 (no message would ever arrive)");
    if (!o->seed_given)
        o->faults.seed = fl_now_us() ^ ((uint64_t)getpid() << 32);
    if (o->baseline_devices < 0)
        o->baseline_devices = o->devices < 1000 ? o->devices : 1000;
    return 0;
}

/* Reads KEY=VALUE lines of lab.env. */
static int read_lab(const char *path, lab *l)
{
    char line[512], k[64], v[400];
    FILE *f = fopen(path, "r");
    memset(l, 0, sizeof *l);
    if (f == NULL) {
        fprintf(stderr, "otakey-fleet: %s: %s\n", path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "%63[^=]=%399s", k, v) != 2)
            continue;
        if (!strcmp(k, "LAB_CA")) snprintf(l->ca, sizeof l->ca, "%.255s", v);
        else if (!strcmp(k, "LAB_AGENT_PORT")) l->agent_port = atoi(v);
        else if (!strcmp(k, "LAB_SERVER_PORT")) l->server_port = atoi(v);
        else if (!strcmp(k, "LAB_BENCH_USER")) snprintf(l->bench_user, sizeof l->bench_user, "%.63s", v);
        else if (!strcmp(k, "LAB_BENCH_PASSWORD")) snprintf(l->bench_pass, sizeof l->bench_pass, "%.127s", v);
    }
    fclose(f);
    if (!l->ca[0] || l->agent_port <= 0 || l->server_port <= 0) {
        fprintf(stderr, "otakey-fleet: %s: LAB_CA, LAB_AGENT_PORT or LAB_SERVER_PORT missing\n", path);
        return -1;
    }
    return 0;
}

static int has_scheme(const char *list, const char *name)
{
    size_t n = strlen(name);
    const char *p = list;
    while ((p = strstr(p, name)) != NULL) {
        if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
            return 1;
        p += n;
    }
    return 0;
}

/* Process accounting around a phase. */
typedef struct acct {
    double agent, broker, cloud;
} acct;

static void acct_read(const opts *o, acct *a)
{
    double v;
    memset(a, 0, sizeof *a);
    for (int i = 0; i < o->n_agents; i++)
        if (fl_proc_cpu(o->agent_pids[i], &v) == 0)
            a->agent += v;
    if (o->broker_pid && fl_proc_cpu(o->broker_pid, &v) == 0)
        a->broker = v;
    if (o->cloud_pids[0] && fl_proc_cpu(o->cloud_pids[0], &v) == 0)
        a->cloud += v;
    if (o->cloud_pids[1] && fl_proc_cpu(o->cloud_pids[1], &v) == 0)
        a->cloud += v;
}

static void acct_fill(const opts *o, const acct *a0, fl_phase *ph)
{
    acct a1;
    double n = (double)(ph->done ? ph->done : 1), rss;
    acct_read(o, &a1);
    if (o->n_agents) {
        ph->server_cpu_us = (a1.agent - a0->agent) * 1e6 / n;
        for (int i = 0; i < o->n_agents; i++) /* the largest agent's peak */
            if (fl_proc_peak_rss(o->agent_pids[i], &rss) == 0 && rss > ph->server_rss_mib)
                ph->server_rss_mib = rss;
    }
    if (o->broker_pid)
        ph->broker_cpu_us = (a1.broker - a0->broker) * 1e6 / n;
    if (o->cloud_pids[0])
        ph->cloud_cpu_us = (a1.cloud - a0->cloud) * 1e6 / n;
}

typedef struct out {
    FILE *csv, *md;
    uint64_t fleet;
    int failed;
} out;

static void emit(out *w, fl_phase *ph)
{
    fl_phase_end(ph);
    fl_report_md_row(stdout, ph);
    fflush(stdout);
    if (w->md)
        fl_report_md_row(w->md, ph);
    if (w->csv) {
        fl_report_csv_row(w->csv, ph, w->fleet);
        fflush(w->csv);
    }
    if (ph->failures)
        w->failed = 1;
    fl_phase_free(ph);
}

/* What the network did to a phase and what the devices did about it. */
static void fault_line(const opts *o, const fl_phase *ph)
{
    const fl_fault_stats *f = &ph->faults;
    printf("faults: %s: devices sent %llu requests (%llu retransmissions), %llu reconnections;",
           ph->name, (unsigned long long)ph->sent, (unsigned long long)ph->retransmits,
           (unsigned long long)ph->reconnects);
    if (o->faults.loss > 0 || o->faults.dup > 0 || o->faults.delay_ms > 0)
        printf(" up %llu: %llu dropped, %llu duplicated, %llu delayed; down %llu: %llu dropped, "
               "%llu duplicated, %llu delayed;",
               (unsigned long long)f->passed[FL_UP], (unsigned long long)f->dropped[FL_UP],
               (unsigned long long)f->duplicated[FL_UP], (unsigned long long)f->delayed[FL_UP],
               (unsigned long long)f->passed[FL_DOWN], (unsigned long long)f->dropped[FL_DOWN],
               (unsigned long long)f->duplicated[FL_DOWN], (unsigned long long)f->delayed[FL_DOWN]);
    printf(" %llu refused by devices\n", (unsigned long long)ph->refused);
}

/* Emits an OTA-Key phase and, below the table row, its fault line. */
static void emit_ota(const opts *o, out *w, fl_phase *ph)
{
    fl_phase copy = *ph;
    copy.lat_ms = NULL;
    emit(w, ph);
    fault_line(o, &copy);
}

static int run_ota(const opts *o, fl_env *env, out *w)
{
    otk_device_config fw;
    char err[256];
    fl_ota *ota;
    fl_phase ph;
    acct a0;
    memset(&fw, 0, sizeof fw);
    if (otk_hex_decode(o->batch, fw.batch_id, 8) != 0 || otk_hex_decode(o->agent_pub, fw.agent_pub, 64) != 0 ||
        otk_read_hex_file(o->pk, fw.pk, 32, err, sizeof err) != 0) {
        fprintf(stderr, "otakey-fleet: bad --batch, --agent-pub or --pk (%s)\n", err);
        return -1;
    }
    fw.retry_min_ms = (uint32_t)o->retry_ms;
    fw.proto = o->proto == 2 ? OTK_PROTO_V2 : OTK_PROTO_VERSION;
    fw.retry_max_ms = (uint32_t)o->retry_ms * 8;
    ota = fl_ota_new(env, (uint32_t)o->devices, &fw);
    otk_wipe(&fw, sizeof fw);
    if (ota == NULL)
        return -1;
    fl_phase_begin(&ph, o->label ? o->label : "ota-key", "claim", (uint64_t)o->devices);
    acct_read(o, &a0);
    fl_ota_claim(ota, &ph);
    acct_fill(o, &a0, &ph);
    emit_ota(o, w, &ph);
    if (o->rotate_cmd) {
        fl_phase_begin(&ph, o->label ? o->label : "ota-key", "rotate", (uint64_t)o->devices);
        acct_read(o, &a0);
        if (fl_ota_update(ota, o->rotate_cmd, 0, &ph) != 0)
            w->failed = 1;
        acct_fill(o, &a0, &ph);
        emit_ota(o, w, &ph);
    }
    if (o->switch_cmd) {
        fl_phase_begin(&ph, o->label ? o->label : "ota-key", "switch", (uint64_t)o->devices);
        acct_read(o, &a0);
        if (fl_ota_update(ota, o->switch_cmd, (uint32_t)o->switch_cloud, &ph) != 0)
            w->failed = 1;
        acct_fill(o, &a0, &ph);
        emit_ota(o, w, &ph);
    }
    if (o->check) {
        uint32_t ok = 0;
        int bad = fl_ota_check(ota, o->state_out, &ok);
        printf("check: %u of %ld devices READY and logged in to their cloud with their committed"
               " set\n", ok, o->devices);
        if (bad != 0)
            w->failed = 1;
    }
    fl_ota_free(ota);
    return 0;
}

static void run_baselines(const opts *o, fl_env *env, out *w)
{
    uint32_t first = (uint32_t)o->devices + 16; /* ids apart from the OTA-Key devices */
    uint32_t n = (uint32_t)o->baseline_devices;
    fl_phase ph;
    if (n == 0)
        return;
#ifdef OTK_FLEET_HAVE_FW
    if (has_scheme(o->schemes, "fw")) {
        const char *p = o->fw_sizes;
        while (*p) {
            char *end;
            unsigned long size = strtoul(p, &end, 10);
            if (end == p || size == 0)
                break;
            memset(&ph, 0, sizeof ph);
            if (fl_fw_run(env, first, n, size, (size_t)o->fw_block, &ph) == 0)
                emit(w, &ph);
            else
                w->failed = 1;
            first += n;
            p = *end == ',' ? end + 1 : end;
        }
    }
#endif
#ifdef OTK_FLEET_HAVE_CSR
    if (has_scheme(o->schemes, "csr")) {
        memset(&ph, 0, sizeof ph);
        if (fl_csr_run(env, first, n, &ph) == 0)
            emit(w, &ph);
        else
            w->failed = 1;
    }
#endif
    (void)first;
    (void)ph;
    (void)env;
    (void)w;
}

int main(int argc, char **argv)
{
    static otk_crypto crypto;
    static union {
        uint8_t b[OTK_CRYPTO_MBEDTLS_STATE_SIZE];
        void *align;
    } mstate;
    opts o;
    lab l;
    fl_env env;
    out w;
    long fds;
    int rc = parse(argc, argv, &o);
    if (rc != 0)
        return rc < 0 ? 0 : rc;
    if (read_lab(o.lab_env, &l) != 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    fds = fl_raise_fd_limit();
    /* Three descriptors per libmosquitto client (its socket and a socket
     * pair for wake-ups), plus the proofs in flight: what does not fit is
     * duty-cycled rather than refused. */
    if (o.max_conn == 0 && fds > 0 && 3 * o.devices + 2048 > fds)
        o.max_conn = fds > 4096 ? (fds - 2048) / 3 : fds / 6;
    if ((o.mbedtls ? otk_crypto_mbedtls_init(&crypto, mstate.b, sizeof mstate.b, NULL, NULL)
                   : otk_crypto_openssl_init(&crypto, NULL, NULL)) != OTK_OK) {
        fprintf(stderr, "otakey-fleet: crypto initialisation failed\n");
        return 1;
    }
    memset(&env, 0, sizeof env);
    env.loop = fl_loop_new(l.ca, "127.0.0.1");
    if (env.loop == NULL)
        return 1;
    env.agent_broker.host = "127.0.0.1";
    env.agent_broker.port = l.agent_port;
    env.agent_broker.tls = 1;
    env.server_broker = env.agent_broker;
    env.server_broker.port = l.server_port;
    env.cafile = l.ca;
    env.bench_user = l.bench_user;
    env.bench_pass = l.bench_pass;
    env.crypto = &crypto;
    env.id_base = (uint32_t)o.id_base;
    env.window = (unsigned)o.window;
    env.max_connections = (unsigned)o.max_conn;
    env.phase_timeout_s = (unsigned)o.timeout_s;
    env.verbose = o.verbose;
    env.progress = o.progress;
    if (o.faults.loss > 0 || o.faults.dup > 0 || o.faults.delay_ms > 0)
        env.faults = &o.faults;

    memset(&w, 0, sizeof w);
    w.fleet = (uint64_t)o.devices;
    if (o.csv) {
        FILE *probe = fopen(o.csv, "r");
        int fresh = probe == NULL;
        if (probe)
            fclose(probe);
        w.csv = fopen(o.csv, "a");
        if (w.csv == NULL) {
            fprintf(stderr, "otakey-fleet: %s: %s\n", o.csv, strerror(errno));
            return 2;
        }
        if (fresh)
            fl_report_csv_header(w.csv);
    }
    if (o.md && (w.md = fopen(o.md, "w")) == NULL) {
        fprintf(stderr, "otakey-fleet: %s: %s\n", o.md, strerror(errno));
        return 2;
    }
    printf("\nfleet of %ld devices (device crypto: %s; %ld fds; %s)\n", o.devices,
           o.mbedtls ? "mbedTLS" : "OpenSSL", fds,
           o.max_conn && o.devices > o.max_conn ? "duty-cycled: devices connect for their operation"
                                                : "every device stays connected");
    if (o.max_conn && o.devices > o.max_conn)
        printf("at most %ld agent-broker connections at once (file descriptor limit %ld)\n",
               o.max_conn, fds);
    if (env.faults)
        printf("faults: loss %.3f, duplication %.3f, delay 0..%u ms, seed %llu\n", o.faults.loss,
               o.faults.dup, o.faults.delay_ms, (unsigned long long)o.faults.seed);
    printf("\n");
    fl_report_md_header(stdout);
    if (w.md)
        fl_report_md_header(w.md);
    if (has_scheme(o.schemes, "ota") && run_ota(&o, &env, &w) != 0)
        w.failed = 1;
    run_baselines(&o, &env, &w);
    if (has_scheme(o.schemes, "ota")) {
        /* The status quo: one key in every firmware image. No message, no
         * per-device key: nothing to measure, nothing gained. */
        printf("| shared key (status quo) | none | %ld | - | 0 | - | - | - | - | 0 | - | 0 | 0 | 0 | 0 |\n",
               o.devices);
        if (w.md)
            fprintf(w.md, "| shared key (status quo) | none | %ld | - | 0 | - | - | - | - | 0 | - | 0 | 0 | 0 | 0 |\n",
                    o.devices);
    }
    if (w.csv)
        fclose(w.csv);
    if (w.md)
        fclose(w.md);
    fl_loop_free(env.loop);
    if (o.mbedtls)
        otk_crypto_mbedtls_free(&crypto);
    else
        otk_crypto_openssl_free(&crypto);
    return w.failed ? 1 : 0;
}
