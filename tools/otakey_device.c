/*
 * otakey-device: a real OTA-Key device for Linux hosts: the device core
 * over a file-backed key partition, talking to the agent through the
 * agent broker, proving staged sets and publishing telemetry on its cloud
 * with its own credentials. It survives restarts (the key partition is
 * its only state).
 *
 * usage: otakey-device --id HEX32 --flash FILE --batch HEX16 --pk FILE
 *          --agent-pub HEX128 --broker HOST:PORT --cafile FILE
 *          [--status FILE] [--poll-ms N] [--telemetry-ms N] [--run-ms N]
 *          [--cut-at N [--tear] | --cut-at-commit]
 * --cut-at is the power-loss test hook: the process dies at its N-th
 * flash operation (see otk_file_flash_cut); --cut-at-commit at the first
 * one made for a message that answers its CONFIRM (the agent's ACK: the
 * agent committed, the device does not); the status file counts the
 * operations done so far (flash_ops) and the versions found at boot.
 * Exit codes: 0 done (--run-ms elapsed or SIGTERM), 1 failure, 2 bad usage,
 * 3 power cut by --cut-at.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <mosquitto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent_config.h"
#include "otakey/device.h"
#include "otakey/dynsec.h"
#include "posix_port.h"

static volatile sig_atomic_t stopping;

typedef struct dev_ctx {
    otk_device dev;
    otk_device_config cfg;
    otk_port port;
    otk_file_flash flash;
    otk_crypto crypto;
    union {
        uint8_t b[OTK_CRYPTO_MBEDTLS_STATE_SIZE];
        void *align;
    } cstate;
    char hex[33], up[64], down[64], cafile[256], status[256];
    struct mosquitto *agent, *cloud;
    void *cloud_tls; /* certificate sets: the link's OpenSSL context */
    void *agent_tls; /* the agent link's, when it logs in with the certificate */
    char broker_host[128], certs_host[128];
    int broker_port, certs_port;
    uint32_t agent_version; /* version whose certificate the agent link uses; 0 anonymous */
    uint32_t cloud_version; /* version whose credentials the cloud link uses */
    uint32_t boot_active, boot_staged; /* what the key partition held at boot */
    unsigned long telemetry_sent, telemetry_acked, up_bytes, down_bytes;
    int agent_connected;
    int relinked; /* the agent link dropped and is being opened again: poll once it is up */
    unsigned cert_fails; /* certificate logins in a row the listener did not accept */
    uint32_t cert_fails_version; /* ... with the certificate of this active version */
    int cert_tried;   /* a certificate login reached the listener; no CONNACK yet */
    uint64_t cert_off_ms; /* when the link went to the anonymous listener */
    int cut_commit; /* --cut-at-commit */
} dev_ctx;

/* A certificate the listener refuses this many times in a row is given up
 * for the anonymous listener until the next commit, or CERT_RETRY_MS (see
 * agent_link). */
#define CERT_LINK_TRIES 3
#define CERT_RETRY_MS 600000

static void on_signal(int s)
{
    (void)s;
    stopping = 1;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void publish_up(dev_ctx *d, const uint8_t *msg, size_t n)
{
    if (n == 0 || !d->agent_connected)
        return;
    if (mosquitto_publish_v5(d->agent, NULL, d->up, (int)n, msg, 1, false, NULL) == MOSQ_ERR_SUCCESS)
        d->up_bytes += n;
}

/* One line of JSON describing the device, rewritten on every change. */
static void write_status(dev_ctx *d)
{
    static const char *names[] = {"uninit", "unclaimed", "claiming", "prove",
                                  "confirming", "ready", "updating"};
    otk_cloud c;
    char tmp[300], *text;
    cJSON *o;
    FILE *f;
    if (!d->status[0])
        return;
    if (otk_device_cloud(&d->dev, OTK_SET_ACTIVE, &c) != OTK_OK)
        memset(&c, 0, sizeof c);
    /* Field order is what scripts match on: keep it. */
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", d->hex);
    cJSON_AddStringToObject(o, "state", names[otk_device_state(&d->dev)]);
    cJSON_AddNumberToObject(o, "version", otk_device_version(&d->dev, 0));
    cJSON_AddNumberToObject(o, "cloud", c.cloud_id);
    cJSON_AddStringToObject(o, "user", c.user);
    cJSON_AddNumberToObject(o, "telemetry_sent", (double)d->telemetry_sent);
    cJSON_AddNumberToObject(o, "telemetry_acked", (double)d->telemetry_acked);
    cJSON_AddNumberToObject(o, "agent_bytes_up", (double)d->up_bytes);
    cJSON_AddNumberToObject(o, "agent_bytes_down", (double)d->down_bytes);
    cJSON_AddStringToObject(o, "last_remote", otk_strerror(otk_device_last_remote(&d->dev)));
    cJSON_AddNumberToObject(o, "flash_ops", (double)d->flash.ops);
    cJSON_AddNumberToObject(o, "boot_version", d->boot_active);
    cJSON_AddNumberToObject(o, "boot_staged", d->boot_staged);
    cJSON_AddNumberToObject(o, "kind", otk_device_kind(&d->dev, OTK_SET_ACTIVE));
    text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    otk_wipe(&c, sizeof c);
    snprintf(tmp, sizeof tmp, "%s.tmp", d->status);
    if (text == NULL || (f = fopen(tmp, "w")) == NULL) {
        free(text);
        return;
    }
    fprintf(f, "%s\n", text);
    free(text);
    fclose(f);
    rename(tmp, d->status);
}

static void on_agent_connect(struct mosquitto *m, void *ud, int rc, int flags,
                             const mosquitto_property *p)
{
    dev_ctx *d = ud;
    (void)flags;
    (void)p;
    if (rc == 0 && mosquitto_subscribe_v5(m, NULL, d->down, 1, 0, NULL) == MOSQ_ERR_SUCCESS) {
        d->agent_connected = 1;
        if (d->agent_version != 0) {
            d->cert_fails = 0;
            d->cert_tried = 0;
        }
    }
}

static void on_agent_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg,
                             const mosquitto_property *p)
{
    dev_ctx *d = ud;
    uint8_t out[OTK_MSG_MAX_LEN];
    size_t n = 0;
    otk_status st;
    (void)m;
    (void)p;
    d->down_bytes += (unsigned long)msg->payloadlen;
    /* (test hook) the answer to a CONFIRM: power goes at its first flash write */
    if (d->cut_commit && otk_device_state(&d->dev) == OTK_DEV_CONFIRMING)
        otk_file_flash_cut(&d->flash, d->flash.ops + 1, 0);
    st = otk_device_receive(&d->dev, msg->payload, (size_t)msg->payloadlen, out, sizeof out, &n);
    if (st != OTK_OK)
        fprintf(stderr, "otakey-device %s: message refused: %s\n", d->hex, otk_strerror(st));
    publish_up(d, out, n);
    write_status(d);
}

static void on_cloud_publish(struct mosquitto *m, void *ud, int mid, int rc, const mosquitto_property *p)
{
    dev_ctx *d = ud;
    (void)m;
    (void)mid;
    (void)p;
    /* MQTT 5 reason codes below 0x80 are successes ("no matching
     * subscribers" included); 0x87 would be the ACL saying no. */
    if (rc < 0x80)
        d->telemetry_acked++;
}

/* The proof of the staged set: a login with its password or its certificate. */
static otk_proof prove_staged(dev_ctx *d)
{
    otk_cloud c;
    otk_proof r = OTK_PROOF_UNREACHABLE;
    if (otk_device_cloud(&d->dev, OTK_SET_STAGED, &c) != OTK_OK)
        return r;
    if (otk_device_kind(&d->dev, OTK_SET_STAGED) == OTK_KIND_CERT) {
        uint8_t der[OTK_CERT_MAX], priv[OTK_PRIV_LEN], pin[OTK_PIN_LEN];
        size_t len = 0;
        if (otk_device_cert(&d->dev, OTK_SET_STAGED, der, sizeof der, &len) == OTK_OK &&
            otk_device_cert_key(&d->dev, OTK_SET_STAGED, priv) == OTK_OK &&
            otk_device_ca_pin(&d->dev, OTK_SET_STAGED, pin) == OTK_OK)
            r = otk_mqtt_prove_cert(&c, d->cafile, d->hex, der, len, priv, pin, 5000);
        otk_wipe(priv, sizeof priv);
    } else {
        r = otk_mqtt_prove(&c, d->cafile, d->hex, 5000);
    }
    otk_wipe(&c, sizeof c);
    return r;
}

/*
 * What a (re)connection of a certificate link says of the certificate: a
 * TLS failure is a refusal; a connection that reached the listener is one
 * if no CONNACK follows (TLS 1.3 refuses a client certificate after the
 * handshake). A listener that cannot be reached (down, restarting, no
 * network) says nothing of the certificate.
 */
static void cert_attempt(dev_ctx *d, int rc)
{
    d->cert_tried = 0;
    if (d->agent_version == 0)
        return;
    if (rc == MOSQ_ERR_TLS)
        d->cert_fails++;
    else if (rc == MOSQ_ERR_SUCCESS)
        d->cert_tried = 1;
}

/*
 * The agent link: anonymous to --broker; with --broker-certs, once the
 * active set is a certificate set, logged in with that certificate there
 * (the agent broker then keeps the device's id to it alone), and opened
 * again when a new set is committed. A certificate the listener refuses
 * CERT_LINK_TRIES times in a row is given up for the anonymous listener
 * until the next commit: the agent revokes a set's certificate once it has
 * committed the next set, and a device that missed that commit's ACK (a
 * drop, a power cut) holds only the revoked one and the staged one; the
 * agent must still hear its CONFIRM again to answer it. 0, or -1 when the
 * link cannot be set up.
 */
static int agent_link(dev_ctx *d)
{
    uint32_t active = otk_device_version(&d->dev, OTK_SET_ACTIVE);
    int cert = d->certs_host[0] && otk_device_kind(&d->dev, OTK_SET_ACTIVE) == OTK_KIND_CERT;
    uint32_t want;
    int rc;
    if (d->cert_fails_version != active) {
        d->cert_fails_version = active;
        d->cert_fails = 0;
    }
    if (cert && d->cert_fails >= CERT_LINK_TRIES && d->agent_version == 0 &&
        now_ms() - d->cert_off_ms >= CERT_RETRY_MS)
        d->cert_fails = 0; /* given up a while ago: the certificate is tried again */
    if (cert && d->cert_fails >= CERT_LINK_TRIES) {
        if (d->agent_version != 0) {
            fprintf(stderr, "otakey-device %s: the certificate of v%u is refused; the agent link "
                            "goes to the anonymous listener until the next commit\n",
                    d->hex, (unsigned)active);
            d->cert_off_ms = now_ms();
        }
        cert = 0;
    }
    want = cert ? active : 0;
    if (d->agent != NULL && d->agent_version == want)
        return 0;
    if (d->agent != NULL) {
        mosquitto_disconnect(d->agent);
        mosquitto_destroy(d->agent);
    }
    SSL_CTX_free(d->agent_tls);
    d->agent_tls = NULL;
    d->agent_connected = 0;
    d->agent_version = want;
    if ((d->agent = mosquitto_new(d->hex, true, d)) == NULL)
        abort();
    /* Small request/response messages: no Nagle delay. */
    (void)mosquitto_int_option(d->agent, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_int_option(d->agent, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_connect_v5_callback_set(d->agent, on_agent_connect);
    mosquitto_message_v5_callback_set(d->agent, on_agent_message);
    /* TLS fails closed: a CA that cannot be loaded stops the device. */
    if (cert) {
        if ((d->agent_tls = otk_posix_set_tls(&d->dev, OTK_SET_ACTIVE, d->cafile, d->certs_host)) == NULL ||
            mosquitto_int_option(d->agent, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0) != MOSQ_ERR_SUCCESS ||
            mosquitto_void_option(d->agent, MOSQ_OPT_SSL_CTX, d->agent_tls) != MOSQ_ERR_SUCCESS) {
            fprintf(stderr, "otakey-device %s: TLS with the certificate set failed\n", d->hex);
            return -1;
        }
    } else if (mosquitto_tls_set(d->agent, d->cafile, NULL, NULL, NULL, NULL) != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "otakey-device: TLS: cannot load CA file '%s'\n", d->cafile);
        return -1;
    }
    rc = cert ? mosquitto_connect(d->agent, d->certs_host, d->certs_port, 30)
              : mosquitto_connect(d->agent, d->broker_host, d->broker_port, 30);
    cert_attempt(d, rc);
    if (rc != MOSQ_ERR_SUCCESS)
        fprintf(stderr, "otakey-device %s: cannot connect to the agent broker%s: %s\n", d->hex,
                cert ? " (certificates)" : "",
                rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
    return rc == MOSQ_ERR_SUCCESS || d->agent_version != 0 ? 0 : -1;
}

/* (Re)connects the cloud link with the active set's credentials. */
static void cloud_link(dev_ctx *d)
{
    otk_cloud c;
    uint32_t v = otk_device_version(&d->dev, OTK_SET_ACTIVE);
    int cert;
    if (v == 0 || v == d->cloud_version || otk_device_cloud(&d->dev, OTK_SET_ACTIVE, &c) != OTK_OK)
        return;
    cert = otk_device_kind(&d->dev, OTK_SET_ACTIVE) == OTK_KIND_CERT;
    if (d->cloud) {
        mosquitto_disconnect(d->cloud);
        mosquitto_destroy(d->cloud);
        d->cloud = NULL;
    }
    if (d->cloud_tls) {
        SSL_CTX_free(d->cloud_tls);
        d->cloud_tls = NULL;
    }
    d->cloud = mosquitto_new(d->hex, true, d);
    if (d->cloud == NULL)
        abort();
    /* Small request/response messages: no Nagle delay. */
    (void)mosquitto_int_option(d->cloud, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_int_option(d->cloud, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_publish_v5_callback_set(d->cloud, on_cloud_publish);
    /* TLS fails closed: without a CA it can load, the device does not
     * connect (its credentials never go out in clear). A certificate set
     * logs in with its certificate (no user name). */
    if (cert && ((d->cloud_tls = otk_posix_set_tls(&d->dev, OTK_SET_ACTIVE, d->cafile, c.host)) == NULL ||
                 mosquitto_int_option(d->cloud, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0) != MOSQ_ERR_SUCCESS ||
                 mosquitto_void_option(d->cloud, MOSQ_OPT_SSL_CTX, d->cloud_tls) != MOSQ_ERR_SUCCESS)) {
        fprintf(stderr, "otakey-device %s: cloud %u: TLS with the certificate set cannot be set up\n",
                d->hex, (unsigned)c.cloud_id);
        mosquitto_destroy(d->cloud);
        d->cloud = NULL;
        d->cloud_version = v;
        otk_wipe(&c, sizeof c);
        return;
    }
    if (!cert && (c.flags & OTK_CLOUD_FLAG_TLS) &&
        mosquitto_tls_set(d->cloud, d->cafile, NULL, NULL, NULL, NULL) != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "otakey-device %s: cloud %u: TLS: cannot load CA file '%s'; not connecting\n",
                d->hex, (unsigned)c.cloud_id, d->cafile);
        mosquitto_destroy(d->cloud);
        d->cloud = NULL;
        d->cloud_version = v; /* tried; the next set (or a restart) tries again */
        otk_wipe(&c, sizeof c);
        return;
    }
    if ((cert || mosquitto_username_pw_set(d->cloud, c.user, c.secret) == MOSQ_ERR_SUCCESS) &&
        mosquitto_connect(d->cloud, c.host, c.port, 30) == MOSQ_ERR_SUCCESS)
        d->cloud_version = v;
    otk_wipe(&c, sizeof c);
}

static void telemetry(dev_ctx *d)
{
    char topic[64], payload[96], prefix[48];
    int n;
    if (d->cloud == NULL || d->cloud_version == 0)
        return;
    otk_dynsec_topic_prefix(d->cfg.device_id, prefix);
    snprintf(topic, sizeof topic, "%stelemetry", prefix);
    n = snprintf(payload, sizeof payload, "{\"seq\":%lu,\"key_version\":%u}", d->telemetry_sent,
                 (unsigned)d->cloud_version);
    if (mosquitto_publish_v5(d->cloud, NULL, topic, n, payload, 1, false, NULL) == MOSQ_ERR_SUCCESS)
        d->telemetry_sent++;
}

static int usage(const char *why)
{
    if (why)
        fprintf(stderr, "otakey-device: %s\n", why);
    fprintf(why ? stderr : stdout,
            "usage: otakey-device --id HEX32 --flash FILE --batch HEX16 --pk FILE --agent-pub HEX128\n"
            "         --broker HOST:PORT --cafile FILE [--status FILE] [--poll-ms N]\n"
            "         [--telemetry-ms N] [--run-ms N] [--proto 1|2] [--broker-certs HOST:PORT]\n"
            "         [--cut-at N [--tear] | --cut-at-commit]\n"
            "       otakey-device --help | --version\n"
            "--proto 2: protocol version 2 (certificate key sets, docs/protocol.md §11).\n"
            "--broker-certs: the agent broker's listener for devices with certificates: once\n"
            "  the device holds a certificate set it talks to the agent there, logged in with it.\n"
            "--cut-at N: test hook, power is cut at the N-th flash operation (exit 3);\n"
            "  --tear leaves that operation half done. --cut-at-commit: at the first flash\n"
            "  operation for the answer to a CONFIRM (the agent committed, the device not).\n"
            "Exit codes: 0 done, 1 failure, 2 bad usage, 3 power cut by --cut-at(-commit).\n");
    return why ? 2 : 0;
}

int main(int argc, char **argv)
{
    static dev_ctx d;
    const char *flash = NULL, *broker = NULL, *pk = NULL, *id = NULL, *batch = NULL, *pub = NULL;
    long poll_ms = 60000, tele_ms = 1000, run_ms = 0, cut_at = 0;
    int tear = 0;
    char host[128], err[256];
    uint8_t out[OTK_MSG_MAX_LEN];
    uint64_t start, next_poll, next_tele, next_reconnect = 0, next_cloud_reconnect = 0;
    struct sigaction sa;
    size_t n;
    int i, port;
    otk_status st;
    for (i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--help") || !strcmp(k, "-h"))
            return usage(NULL);
        if (!strcmp(k, "--version")) {
            printf("otakey-device %s\n", OTK_VERSION);
            return 0;
        }
        if (!strcmp(k, "--tear")) {
            tear = 1;
            continue;
        }
        if (!strcmp(k, "--cut-at-commit")) {
            d.cut_commit = 1;
            continue;
        }
        if (v == NULL)
            return usage("every option takes a value");
        i++;
        if (!strcmp(k, "--id")) id = v;
        else if (!strcmp(k, "--flash")) flash = v;
        else if (!strcmp(k, "--batch")) batch = v;
        else if (!strcmp(k, "--pk")) pk = v;
        else if (!strcmp(k, "--agent-pub")) pub = v;
        else if (!strcmp(k, "--broker")) broker = v;
        else if (!strcmp(k, "--broker-certs")) {
            if (sscanf(v, "%127[^:]:%d", d.certs_host, &d.certs_port) != 2 || d.certs_port <= 0 ||
                d.certs_port > 65535)
                return usage("--broker-certs must be HOST:PORT");
        }
        else if (!strcmp(k, "--cafile")) snprintf(d.cafile, sizeof d.cafile, "%s", v);
        else if (!strcmp(k, "--status")) snprintf(d.status, sizeof d.status, "%s", v);
        else if (!strcmp(k, "--poll-ms")) poll_ms = atol(v);
        else if (!strcmp(k, "--telemetry-ms")) tele_ms = atol(v);
        else if (!strcmp(k, "--run-ms")) run_ms = atol(v);
        else if (!strcmp(k, "--proto")) {
            if (strcmp(v, "1") && strcmp(v, "2"))
                return usage("--proto must be 1 or 2");
            d.cfg.proto = (uint8_t)atoi(v);
        }
        else if (!strcmp(k, "--cut-at")) {
            char *end;
            errno = 0;
            cut_at = strtol(v, &end, 10);
            if (errno || end == v || *end || cut_at < 1)
                return usage("--cut-at must be a number >= 1");
        }
        else {
            fprintf(stderr, "otakey-device: unknown option '%s'\n", k);
            return usage("see the usage below");
        }
    }
    if (otk_hex_decode(id, d.cfg.device_id, 16) != 0)
        return usage("--id must be 32 hex digits");
    if (otk_hex_decode(batch, d.cfg.batch_id, 8) != 0)
        return usage("--batch must be 16 hex digits");
    if (otk_hex_decode(pub, d.cfg.agent_pub, 64) != 0)
        return usage("--agent-pub must be 128 hex digits");
    if (pk == NULL || otk_read_hex_file(pk, d.cfg.pk, 32, err, sizeof err) != 0)
        return usage(pk ? err : "--pk FILE is required");
    if (flash == NULL || broker == NULL || sscanf(broker, "%127[^:]:%d", host, &port) != 2 ||
        port <= 0 || port > 65535)
        return usage("--flash and --broker HOST:PORT are required");
    if (!d.cafile[0])
        return usage("--cafile FILE is required (TLS to the agent broker and the clouds)");
    if (poll_ms <= 0 || tele_ms <= 0 || run_ms < 0)
        return usage("--poll-ms, --telemetry-ms must be > 0 and --run-ms >= 0");
    if (tear && cut_at == 0)
        return usage("--tear needs --cut-at");
    if (d.cut_commit && cut_at != 0)
        return usage("--cut-at-commit and --cut-at: one or the other");
    memcpy(d.hex, id, 32);
    for (i = 0; i < 32; i++)
        d.hex[i] = (char)(d.hex[i] | 0x20); /* lowercase, as topics use */
    snprintf(d.up, sizeof d.up, "otakey/v1/up/%s", d.hex);
    snprintf(d.down, sizeof d.down, "otakey/v1/down/%s", d.hex);

    if (otk_file_flash_open(&d.flash, flash, 2 * 4096, 4096, 8) != 0) {
        fprintf(stderr, "otakey-device: key partition '%s': %s\n", flash, strerror(errno));
        return 1;
    }
    if (otk_crypto_mbedtls_init(&d.crypto, d.cstate.b, sizeof d.cstate.b, NULL, NULL) != OTK_OK)
        return 1;
    otk_file_flash_cut(&d.flash, (unsigned long)cut_at, tear);
    otk_posix_port(&d.flash, &d.crypto, &d.port);
    d.cfg.retry_min_ms = 1000;
    d.cfg.retry_max_ms = 10000;
    st = otk_device_init(&d.dev, &d.port, &d.cfg);
    if (st != OTK_OK) {
        fprintf(stderr, "otakey-device: init: %s\n", otk_strerror(st));
        return 1;
    }
    d.boot_active = otk_device_version(&d.dev, OTK_SET_ACTIVE);
    d.boot_staged = otk_device_version(&d.dev, OTK_SET_STAGED);
    mosquitto_lib_init();
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    /* A broker that closes a TLS connection while the device writes to it
     * (a reload, a kick) is a dropped link, reconnected: not a silent end
     * of the process. */
    signal(SIGPIPE, SIG_IGN);
    snprintf(d.broker_host, sizeof d.broker_host, "%s", host);
    d.broker_port = port;
    if (agent_link(&d) != 0)
        return 1;
    /* Firmware polls at boot, then every poll period. */
    if (otk_device_state(&d.dev) == OTK_DEV_READY && otk_device_poll(&d.dev) != OTK_OK)
        fprintf(stderr, "otakey-device %s: poll refused\n", d.hex);
    start = now_ms();
    next_poll = start + (uint64_t)poll_ms;
    next_tele = start;
    write_status(&d);
    while (!stopping && (run_ms == 0 || now_ms() - start < (uint64_t)run_ms)) {
        uint64_t t = now_ms();
        /* Links drop (a broker restart, another client taking the id):
         * reconnect, at most once a second. */
        ERR_clear_error(); /* libmosquitto's TLS needs an empty OpenSSL error queue */
        if (mosquitto_loop(d.agent, 20, 1) != MOSQ_ERR_SUCCESS && t >= next_reconnect) {
            if (d.cert_tried && !d.agent_connected)
                d.cert_fails++; /* it reached the listener, and no CONNACK came */
            d.agent_connected = 0;
            d.relinked = 1;
            next_reconnect = t + 1000;
            cert_attempt(&d, mosquitto_reconnect(d.agent));
        }
        if (d.cloud && mosquitto_loop(d.cloud, 0, 1) != MOSQ_ERR_SUCCESS && t >= next_cloud_reconnect) {
            next_cloud_reconnect = t + 1000;
            (void)mosquitto_reconnect(d.cloud);
        }
        if (otk_device_state(&d.dev) == OTK_DEV_PROVE) {
            otk_proof r = prove_staged(&d);
            if (otk_device_proof(&d.dev, r, out, sizeof out, &n) == OTK_OK)
                publish_up(&d, out, n);
            write_status(&d);
        }
        /* An update offer sent while the link was down found no subscriber,
         * and the agent holds the next one (notify_asleep_ms): ask now. */
        if (d.agent_connected && d.relinked) {
            d.relinked = 0;
            if (otk_device_state(&d.dev) == OTK_DEV_READY && otk_device_poll(&d.dev) != OTK_OK)
                fprintf(stderr, "otakey-device %s: poll refused\n", d.hex);
        }
        if (d.agent_connected && otk_device_next(&d.dev, out, sizeof out, &n) == OTK_OK && n)
            publish_up(&d, out, n);
        if (t >= next_poll) {
            next_poll = t + (uint64_t)poll_ms;
            if (otk_device_state(&d.dev) == OTK_DEV_READY && otk_device_poll(&d.dev) != OTK_OK)
                fprintf(stderr, "otakey-device %s: poll refused\n", d.hex);
        }
        cloud_link(&d);
        if (agent_link(&d) != 0)
            next_reconnect = t + 1000;
        if (t >= next_tele) {
            next_tele = t + (uint64_t)tele_ms;
            telemetry(&d);
            write_status(&d);
        }
    }
    write_status(&d);
    if (d.cloud) {
        mosquitto_disconnect(d.cloud);
        mosquitto_destroy(d.cloud);
    }
    SSL_CTX_free(d.cloud_tls);
    mosquitto_disconnect(d.agent);
    mosquitto_destroy(d.agent);
    SSL_CTX_free(d.agent_tls);
    mosquitto_lib_cleanup();
    otk_device_free(&d.dev);
    otk_file_flash_close(&d.flash);
    return 0;
}
