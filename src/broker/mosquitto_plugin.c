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
#include <openssl/pem.h>
#include <openssl/x509.h>
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
    otk_bp_serial *revoked; /* certs: the CRL's serials, sorted */
    size_t n_revoked;
    otk_bp_sessions sessions; /* certs: client id -> serial, of clients seen */
} plugin;

static int verdict(plugin *p, int v, int reason);

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

/* The CRL's serials; on failure the list in force stays. 0 or -1. */
static int load_crl(plugin *p)
{
    FILE *f = fopen(p->cfg.crl, "r");
    X509_CRL *crl = f ? PEM_read_X509_CRL(f, NULL, NULL, NULL) : NULL;
    STACK_OF(X509_REVOKED) *rs;
    otk_bp_serial *list;
    int i, n;
    if (f)
        fclose(f);
    if (crl == NULL) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "otakey plugin: cannot read the CRL %s", p->cfg.crl);
        return -1;
    }
    rs = X509_CRL_get_REVOKED(crl);
    n = rs ? sk_X509_REVOKED_num(rs) : 0;
    list = calloc(n > 0 ? (size_t)n : 1, sizeof *list);
    if (list == NULL) {
        X509_CRL_free(crl);
        return -1;
    }
    for (i = 0; i < n; i++)
        put_serial(&list[i], X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(rs, i)));
    otk_bp_serials_sort(list, (size_t)n);
    X509_CRL_free(crl);
    free(p->revoked);
    p->revoked = list;
    p->n_revoked = (size_t)n;
    mosquitto_log_printf(MOSQ_LOG_INFO, "otakey plugin: CRL %s: %d revoked certificates", p->cfg.crl, n);
    return 0;
}

/*
 * Whether this client's certificate is on the CRL; if not, its session is
 * remembered so that a reload that revokes it ends it at once.
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
        (void)otk_bp_sessions_put(&p->sessions, id, &sn);
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

static int on_reload(int event, void *event_data, void *userdata)
{
    plugin *p = userdata;
    char (*ids)[33];
    size_t n, i;
    (void)event;
    (void)event_data;
    if (load_crl(p) != 0 || p->sessions.n == 0)
        return MOSQ_ERR_SUCCESS;
    /* The sessions this CRL revokes end now (collected first: a kick may
     * remove its session from the table). */
    if ((ids = malloc(p->sessions.n * sizeof *ids)) == NULL)
        return MOSQ_ERR_SUCCESS;
    n = otk_bp_sessions_revoked(&p->sessions, p->revoked, p->n_revoked, ids, p->sessions.n);
    for (i = 0; i < n; i++) {
        otk_bp_sessions_del(&p->sessions, ids[i]);
        kick(p, ids[i]);
    }
    free(ids);
    return MOSQ_ERR_SUCCESS;
}

static int on_disconnect(int event, void *event_data, void *userdata)
{
    struct mosquitto_evt_disconnect *ed = event_data;
    plugin *p = userdata;
    (void)event;
    otk_bp_sessions_del(&p->sessions, mosquitto_client_id(ed->client));
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
    v = otk_bp_connect(&p->cfg, ed->username, mosquitto_client_id(ed->client), &reason);
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
    if (p->cfg.role == OTK_BP_CERTS && client_revoked(p, ed->client)) {
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
    if (p->cfg.role == OTK_BP_CERTS && load_crl(p) != 0) {
        free(p);
        return MOSQ_ERR_INVAL;
    }
    if (mosquitto_callback_register(identifier, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, p) ||
        mosquitto_callback_register(identifier, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, p) ||
        (p->cfg.role == OTK_BP_CERTS &&
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
    if (p->cfg.role == OTK_BP_CERTS) {
        (void)mosquitto_callback_unregister(p->id, MOSQ_EVT_RELOAD, on_reload, NULL);
        (void)mosquitto_callback_unregister(p->id, MOSQ_EVT_DISCONNECT, on_disconnect, NULL);
    }
    otk_bp_sessions_free(&p->sessions);
    free(p->revoked);
    free(p);
    return MOSQ_ERR_SUCCESS;
}
