/*
 * otakey_mosquitto.so: the access policy of policy.h as a mosquitto 2.0
 * plugin (plugin API version 5). One instance per listener
 * (per_listener_settings true), configured by its plugin_opt_* lines:
 *
 *   listener 8883            # devices
 *   plugin /usr/lib/otakey/otakey_mosquitto.so
 *   plugin_opt_role devices
 *   plugin_opt_spaces otakey/v1
 *   plugin_opt_report_topic otakey/v1/broker/refused
 *   allow_anonymous true
 *
 * A certificate cloud's listener (role certs) also names its CRL:
 *
 *   plugin_opt_role certs
 *   plugin_opt_crl /etc/mosquitto/cloud-crl.pem
 *
 * read at start and at every reload (SIGHUP): a client whose certificate it
 * lists is denied its next publish, subscription or delivery and
 * disconnected (the broker itself checks the CRL at the handshake only).
 *
 * Denials are counted by reason; at most once per report_ms, at the first
 * broker event after the period ended (mosquitto 2.0 sends no timer ticks to
 * per-listener plugins), the counts of the period are logged and published
 * on report_topic, where the agent logs them.
 */
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policy.h"

typedef struct plugin {
    mosquitto_plugin_id_t *id;
    otk_bp_config cfg;
    unsigned long long counts[OTK_BP_R_COUNT];
    unsigned long long last_ms;
    int dirty;
    int certs;                      /* checks client certificates against CRLs */
    otk_bp_serial *revoked;         /* the CRLs' serials, sorted */
    size_t n_revoked;
    unsigned long long crl_seen_ms; /* when the CRL files were last looked at */
    char crl_sig[512];              /* their modification times and sizes then */
} plugin;

/*
 * Devices connected with a certificate, by client id (the device id), with
 * the serial they logged in with. One table for the plugin's instances (a
 * broker loads the plugin once, its listeners share it): a CRL reload ends
 * the sessions it revokes, and the anonymous devices listener refuses a
 * device id connected here.
 */
static otk_bp_sessions sessions;

static int verdict(plugin *p, int v, int reason);
static unsigned long long mono_ms(void);

static void put_serial(otk_bp_serial *out, const ASN1_INTEGER *sn)
{
    const unsigned char *d = ASN1_STRING_get0_data(sn);
    int n = ASN1_STRING_length(sn);
    while (n > 1 && d[0] == 0) {
        d++;
        n--;
    }
    out->len = (unsigned char)(n > 0 && n <= OTK_BP_SERIAL_MAX ? n : 0);
    memcpy(out->b, d, out->len);
}

/* Calls fn for each CRL file named in the configuration; stops at a non-zero return. */
static int each_crl(const plugin *p, int (*fn)(const char *path, void *ctx), void *ctx)
{
    char list[sizeof p->cfg.crl], *save = NULL, *f;
    int rc = 0;
    snprintf(list, sizeof list, "%s", p->cfg.crl);
    for (f = strtok_r(list, " \t", &save); f != NULL && rc == 0; f = strtok_r(NULL, " \t", &save))
        rc = fn(f, ctx);
    return rc;
}

static int sig_of(const char *path, void *ctx)
{
    char *sig = ctx;
    struct stat st;
    size_t n = strlen(sig);
    if (stat(path, &st) != 0)
        memset(&st, 0, sizeof st);
    snprintf(sig + n, 512 - n, "%lld.%ld:%lld;", (long long)st.st_mtim.tv_sec,
             (long)st.st_mtim.tv_nsec, (long long)st.st_size);
    return 0;
}

typedef struct serials {
    otk_bp_serial *v;
    size_t n, cap;
} serials;

/* Every CRL of a PEM file (a file may hold the CRLs of several CAs). */
static int read_crls(const char *path, void *ctx)
{
    serials *out = ctx;
    FILE *f = fopen(path, "r");
    X509_CRL *crl;
    int found = 0;
    if (f == NULL) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "otakey plugin: cannot read the CRL %s", path);
        return -1;
    }
    while ((crl = PEM_read_X509_CRL(f, NULL, NULL, NULL)) != NULL) {
        STACK_OF(X509_REVOKED) *rs = X509_CRL_get_REVOKED(crl);
        int i, n = rs ? sk_X509_REVOKED_num(rs) : 0;
        found = 1;
        for (i = 0; i < n; i++) {
            if (out->n == out->cap) {
                size_t cap = out->cap ? 2 * out->cap : 256;
                otk_bp_serial *v = realloc(out->v, cap * sizeof *v);
                if (v == NULL) {
                    X509_CRL_free(crl);
                    fclose(f);
                    return -1;
                }
                out->v = v;
                out->cap = cap;
            }
            put_serial(&out->v[out->n++], X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(rs, i)));
        }
        X509_CRL_free(crl);
    }
    ERR_clear_error(); /* the end of the file */
    fclose(f);
    if (!found)
        mosquitto_log_printf(MOSQ_LOG_ERR, "otakey plugin: no CRL in %s", path);
    return found ? 0 : -1;
}

/* The CRLs' serials; on failure the list in force stays. 0 or -1. */
static int load_crls(plugin *p)
{
    serials all = {NULL, 0, 0};
    if (each_crl(p, read_crls, &all) != 0) {
        free(all.v);
        return -1;
    }
    otk_bp_serials_sort(all.v, all.n);
    free(p->revoked);
    p->revoked = all.v;
    p->n_revoked = all.n;
    mosquitto_log_printf(MOSQ_LOG_INFO, "otakey plugin: CRLs %s: %zu revoked certificates",
                         p->cfg.crl, all.n);
    return 0;
}

static void kick(plugin *p, const char *id)
{
    mosquitto_log_printf(MOSQ_LOG_NOTICE, "otakey plugin: %s: certificate revoked, disconnected",
                         id ? id : "?");
    (void)verdict(p, OTK_BP_DENY, OTK_BP_R_REVOKED);
    if (id != NULL)
        (void)mosquitto_kick_client_by_clientid(id, false);
}

/*
 * Loads the CRLs again when asked (a reload) or when a file changed
 * (looked at once a second at most: a per-listener plugin gets no reload
 * event), and ends the sessions they now revoke.
 */
static void refresh(plugin *p, int force)
{
    char sig[sizeof p->crl_sig] = "";
    char (*ids)[33];
    unsigned long long now = mono_ms();
    size_t n, i;
    if (!force && now - p->crl_seen_ms < 1000)
        return;
    p->crl_seen_ms = now;
    (void)each_crl(p, sig_of, sig);
    if (!force && strcmp(sig, p->crl_sig) == 0)
        return;
    if (load_crls(p) != 0)
        return;
    snprintf(p->crl_sig, sizeof p->crl_sig, "%s", sig);
    if (sessions.n == 0 || (ids = malloc(sessions.n * sizeof *ids)) == NULL)
        return;
    /* Collected first: a kick may remove its session from the table. */
    n = otk_bp_sessions_revoked(&sessions, p->revoked, p->n_revoked, ids, sessions.n);
    for (i = 0; i < n; i++) {
        otk_bp_sessions_del(&sessions, ids[i], NULL);
        kick(p, ids[i]);
    }
    free(ids);
}

/*
 * Whether this client's certificate is on a CRL; if not, its session is
 * remembered so that a CRL that revokes it ends it at once.
 */
static int client_revoked(plugin *p, struct mosquitto *client)
{
    X509 *cert = mosquitto_client_certificate(client);
    otk_bp_serial sn;
    const char *id = mosquitto_client_id(client);
    if (cert == NULL)
        return 0;
    put_serial(&sn, X509_get0_serialNumber(cert));
    X509_free(cert);
    if (otk_bp_revoked(p->revoked, p->n_revoked, sn.b, sn.len))
        return 1;
    if (id != NULL)
        (void)otk_bp_sessions_put(&sessions, id, &sn);
    return 0;
}

static int on_reload(int event, void *event_data, void *userdata)
{
    (void)event;
    (void)event_data;
    refresh(userdata, 1);
    return MOSQ_ERR_SUCCESS;
}

static int on_disconnect(int event, void *event_data, void *userdata)
{
    struct mosquitto_evt_disconnect *ed = event_data;
    X509 *cert = mosquitto_client_certificate(ed->client);
    otk_bp_serial sn;
    (void)event;
    (void)userdata;
    if (cert == NULL)
        return MOSQ_ERR_SUCCESS; /* not a session of the table */
    put_serial(&sn, X509_get0_serialNumber(cert));
    X509_free(cert);
    /* A login with a new certificate under the same id (a device after a
     * commit) can be seen before the old connection's end: that end must
     * not forget the new session. */
    otk_bp_sessions_del(&sessions, mosquitto_client_id(ed->client), &sn);
    return MOSQ_ERR_SUCCESS;
}

static unsigned long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000u + (unsigned long long)ts.tv_nsec / 1000000u;
}

static void report(plugin *p)
{
    char text[256];
    size_t n;
    unsigned long long now = mono_ms();
    if (!p->dirty || now - p->last_ms < p->cfg.report_ms)
        return;
    n = otk_bp_report(&p->cfg, p->counts, now - p->last_ms, text, sizeof text);
    mosquitto_log_printf(MOSQ_LOG_NOTICE, "otakey: refused %s", text);
    if (p->cfg.report_topic[0])
        (void)mosquitto_broker_publish_copy(NULL, p->cfg.report_topic, (int)n, text, 0, false, NULL);
    memset(p->counts, 0, sizeof p->counts);
    p->last_ms = now;
    p->dirty = 0;
}

static int verdict(plugin *p, int v, int reason)
{
    if (v == OTK_BP_DENY) {
        p->counts[reason]++;
        p->dirty = 1;
    }
    report(p);
    return v == OTK_BP_ALLOW ? MOSQ_ERR_SUCCESS : v == OTK_BP_DENY ? MOSQ_ERR_AUTH : MOSQ_ERR_PLUGIN_DEFER;
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
    struct mosquitto_evt_basic_auth *ed = event_data;
    plugin *p = userdata;
    int reason = 0, v;
    (void)event;
    const char *id = mosquitto_client_id(ed->client);
    v = otk_bp_connect(&p->cfg, ed->username, id, &reason);
    /* A device connected with its certificate keeps its id. */
    if (v != OTK_BP_DENY && p->cfg.role == OTK_BP_DEVICES && !p->cfg.cert_identity &&
        otk_bp_sessions_has(&sessions, id)) {
        v = OTK_BP_DENY;
        reason = OTK_BP_R_CLIENT_ID;
    }
    return verdict(p, v, reason);
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
    struct mosquitto_evt_acl_check *ed = event_data;
    plugin *p = userdata;
    int reason = 0, access, v;
    (void)event;
    switch (ed->access) {
    case MOSQ_ACL_WRITE: access = OTK_BP_WRITE; break;
    case MOSQ_ACL_READ: access = OTK_BP_READ; break;
    case MOSQ_ACL_SUBSCRIBE: access = OTK_BP_SUBSCRIBE; break;
    case MOSQ_ACL_UNSUBSCRIBE: access = OTK_BP_UNSUBSCRIBE; break;
    default: return MOSQ_ERR_ACL_DENIED;
    }
    if (p->certs)
        refresh(p, 0);
    if (p->certs && client_revoked(p, ed->client)) {
        kick(p, mosquitto_client_id(ed->client));
        return MOSQ_ERR_ACL_DENIED;
    }
    v = otk_bp_acl(&p->cfg, mosquitto_client_username(ed->client), mosquitto_client_id(ed->client),
                   access, ed->topic, ed->retain, &reason);
    v = verdict(p, v, reason);
    return v == MOSQ_ERR_AUTH ? MOSQ_ERR_ACL_DENIED : v;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
    int i;
    for (i = 0; i < supported_version_count; i++)
        if (supported_versions[i] == 5)
            return 5;
    return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
                          struct mosquitto_opt *options, int option_count)
{
    char err[200];
    int i;
    plugin *p = calloc(1, sizeof *p);
    if (p == NULL)
        return MOSQ_ERR_NOMEM;
    p->id = identifier;
    p->cfg.report_ms = 10000;
    p->last_ms = mono_ms();
    for (i = 0; i < option_count; i++)
        if (otk_bp_option(&p->cfg, options[i].key, options[i].value, err, sizeof err) != 0) {
            mosquitto_log_printf(MOSQ_LOG_ERR, "otakey plugin: plugin_opt_%s", err);
            free(p);
            return MOSQ_ERR_INVAL;
        }
    if (otk_bp_check(&p->cfg, err, sizeof err) != 0) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "otakey plugin: %s", err);
        free(p);
        return MOSQ_ERR_INVAL;
    }
    p->certs = p->cfg.role == OTK_BP_CERTS || (p->cfg.cert_identity && p->cfg.crl[0]);
    if (p->certs) {
        (void)each_crl(p, sig_of, p->crl_sig);
        p->crl_seen_ms = mono_ms();
        if (load_crls(p) != 0) {
            free(p);
            return MOSQ_ERR_INVAL;
        }
    }
    if (mosquitto_callback_register(identifier, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, p) ||
        mosquitto_callback_register(identifier, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, p) ||
        (p->certs &&
         (mosquitto_callback_register(identifier, MOSQ_EVT_RELOAD, on_reload, NULL, p) ||
          mosquitto_callback_register(identifier, MOSQ_EVT_DISCONNECT, on_disconnect, NULL, p)))) {
        free(p->revoked);
        free(p);
        return MOSQ_ERR_UNKNOWN;
    }
    *userdata = p;
    return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
    plugin *p = userdata;
    (void)options;
    (void)option_count;
    if (p == NULL)
        return MOSQ_ERR_SUCCESS;
    (void)mosquitto_callback_unregister(p->id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
    (void)mosquitto_callback_unregister(p->id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
    if (p->certs) {
        (void)mosquitto_callback_unregister(p->id, MOSQ_EVT_RELOAD, on_reload, NULL);
        (void)mosquitto_callback_unregister(p->id, MOSQ_EVT_DISCONNECT, on_disconnect, NULL);
        otk_bp_sessions_free(&sessions);
    }
    free(p->revoked);
    free(p);
    return MOSQ_ERR_SUCCESS;
}
