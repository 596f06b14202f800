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
 * Denials are counted by reason; at most once per report_ms, at the first
 * broker event after the period ended (mosquitto 2.0 sends no timer ticks to
 * per-listener plugins), the counts of the period are logged and published
 * on report_topic, where the agent logs them.
 */
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
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
} plugin;

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
    if (mosquitto_callback_register(identifier, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, p) ||
        mosquitto_callback_register(identifier, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, p)) {
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
    free(p);
    return MOSQ_ERR_SUCCESS;
}
