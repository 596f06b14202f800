/*
 * Cloud adapter over mosquitto's dynamic-security plugin
 * (include/otakey/dynsec.h). Requests are JSON command lists published to
 * $CONTROL/dynamic-security/v1; each command carries a correlationData
 * that its response echoes, which is how answers are matched.
 */
#include "../internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <mosquitto.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "otakey/dynsec.h"

#define CTRL_TOPIC "$CONTROL/dynamic-security/v1"
#define RESP_TOPIC "$CONTROL/dynamic-security/v1/response"
#define MAX_CMDS 4

typedef struct conn {
    otk_dynsec_cloud cfg;
    struct mosquitto *mosq;
    pthread_mutex_t lock;  /* guards the fields below */
    pthread_cond_t cond;
    pthread_mutex_t req;   /* one request in flight */
    int connected;
    int conn_rc;           /* CONNACK reason, -1 before any */
    unsigned long seq;     /* current request number */
    int expected, answered;
    char errors[MAX_CMDS][64];
} conn;

struct otk_dynsec {
    conn *c;
    size_t n;
    unsigned timeout_ms;
};

static int lib_ready;

void otk_dynsec_topic_prefix(const uint8_t id[16], char out[48])
{
    memcpy(out, "devices/", 8);
    otk_hex_encode(id, 16, out + 8);
    out[40] = '/';
    out[41] = '\0';
}

static void on_connect(struct mosquitto *m, void *ud, int rc, int flags, const mosquitto_property *p)
{
    conn *c = ud;
    (void)flags;
    (void)p;
    if (rc == 0)
        (void)mosquitto_subscribe(m, NULL, RESP_TOPIC, 1);
    pthread_mutex_lock(&c->lock);
    c->conn_rc = rc;
    c->connected = rc == 0;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

static void on_disconnect(struct mosquitto *m, void *ud, int rc, const mosquitto_property *p)
{
    conn *c = ud;
    (void)m;
    (void)rc;
    (void)p;
    pthread_mutex_lock(&c->lock);
    c->connected = 0;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

int otk_dynsec_parse_responses(const char *payload, size_t len, unsigned long seq, int expected,
                               char errors[][64])
{
    cJSON *root, *arr, *it;
    int answered = 0;
    if (payload == NULL || len == 0)
        return 0;
    root = cJSON_ParseWithLength(payload, len);
    arr = cJSON_GetObjectItemCaseSensitive(root, "responses");
    cJSON_ArrayForEach(it, arr)
    {
        const cJSON *cd = cJSON_GetObjectItemCaseSensitive(it, "correlationData");
        const cJSON *er = cJSON_GetObjectItemCaseSensitive(it, "error");
        unsigned long s;
        int k;
        if (!cJSON_IsString(cd) || sscanf(cd->valuestring, "%lu-%d", &s, &k) != 2 || s != seq ||
            k < 0 || k >= expected)
            continue;
        snprintf(errors[k], 64, "%s", cJSON_IsString(er) ? er->valuestring : "");
        answered++;
    }
    cJSON_Delete(root);
    return answered;
}

/* Records each response of the current request: correlationData "<seq>-<k>". */
static void on_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg,
                       const mosquitto_property *p)
{
    conn *c = ud;
    (void)m;
    (void)p;
    if (strcmp(msg->topic, RESP_TOPIC) != 0 || msg->payloadlen <= 0)
        return;
    /* Parsed under the lock: it reads seq and expected and fills errors. */
    pthread_mutex_lock(&c->lock);
    c->answered += otk_dynsec_parse_responses(msg->payload, (size_t)msg->payloadlen, c->seq,
                                              c->expected, c->errors);
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

static void deadline_in(struct timespec *ts, unsigned ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/*
 * Sends the commands (a cJSON array; correlation data is added here) and
 * waits for every answer. errors[k] is "" for a success.
 */
static otk_status request(otk_dynsec *d, conn *c, cJSON *cmds, char errors[][64])
{
    cJSON *root = cJSON_CreateObject(), *it;
    char cd[32], *text = NULL;
    struct timespec until;
    otk_status st = OTK_ERR_CLOUD;
    int k = 0, rc = 0;
    pthread_mutex_lock(&c->req);
    pthread_mutex_lock(&c->lock);
    c->seq++;
    c->answered = 0;
    cJSON_ArrayForEach(it, cmds)
    {
        snprintf(cd, sizeof cd, "%lu-%d", c->seq, k++);
        cJSON_AddStringToObject(it, "correlationData", cd);
    }
    c->expected = k;
    pthread_mutex_unlock(&c->lock);
    cJSON_AddItemToObject(root, "commands", cmds);
    text = cJSON_PrintUnformatted(root);
    if (text != NULL &&
        mosquitto_publish_v5(c->mosq, NULL, CTRL_TOPIC, (int)strlen(text), text, 1, false, NULL) ==
            MOSQ_ERR_SUCCESS) {
        deadline_in(&until, d->timeout_ms);
        pthread_mutex_lock(&c->lock);
        while (c->answered < c->expected && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&c->cond, &c->lock, &until);
        if (c->answered >= c->expected) {
            memcpy(errors, c->errors, sizeof c->errors);
            st = OTK_OK;
        }
        c->expected = 0;
        pthread_mutex_unlock(&c->lock);
    }
    if (text != NULL)
        otk_wipe(text, strlen(text)); /* it held a password */
    free(text);
    cJSON_Delete(root);
    pthread_mutex_unlock(&c->req);
    return st;
}

static conn *find(otk_dynsec *d, uint32_t cloud_id)
{
    size_t i;
    for (i = 0; i < d->n; i++)
        if (d->c[i].cfg.cloud_id == cloud_id)
            return &d->c[i];
    return NULL;
}

static cJSON *acl(const char *type, const char *topic)
{
    cJSON *a = cJSON_CreateObject();
    cJSON_AddStringToObject(a, "acltype", type);
    cJSON_AddStringToObject(a, "topic", topic);
    cJSON_AddBoolToObject(a, "allow", 1);
    return a;
}

/* Appends a createClient command: the device's user, secret and role. */
static void add_create_client(cJSON *cmds, const otk_cloud *creds, const char *role,
                              const char *device_hex)
{
    cJSON *cmd = cJSON_CreateObject(), *roles, *r;
    cJSON_AddStringToObject(cmd, "command", "createClient");
    cJSON_AddStringToObject(cmd, "username", creds->user);
    cJSON_AddStringToObject(cmd, "password", creds->secret);
    /* The credentials work under the device's own id only. */
    cJSON_AddStringToObject(cmd, "clientid", device_hex);
    roles = cJSON_AddArrayToObject(cmd, "roles");
    r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "rolename", role);
    cJSON_AddItemToArray(roles, r);
    cJSON_AddItemToArray(cmds, cmd);
}

static otk_status ds_create(void *ctx, const uint8_t device_id[16], const otk_cloud *creds)
{
    otk_dynsec *d = ctx;
    conn *c = find(d, creds->cloud_id);
    char prefix[48], topic[64], role[64], errors[MAX_CMDS][64], hex[33];
    cJSON *cmds, *cmd, *acls;
    otk_status st;
    if (c == NULL)
        return OTK_ERR_CLOUD;
    otk_dynsec_topic_prefix(device_id, prefix);
    otk_hex_encode(device_id, 16, hex);
    snprintf(topic, sizeof topic, "%s#", prefix);
    snprintf(role, sizeof role, "otk-%.32s", prefix + 8);
    cmds = cJSON_CreateArray();
    cmd = cJSON_CreateObject();
    cJSON_AddStringToObject(cmd, "command", "createRole");
    cJSON_AddStringToObject(cmd, "rolename", role);
    acls = cJSON_AddArrayToObject(cmd, "acls");
    cJSON_AddItemToArray(acls, acl("publishClientSend", topic));
    cJSON_AddItemToArray(acls, acl("subscribePattern", topic));
    cJSON_AddItemToArray(acls, acl("publishClientReceive", topic));
    cJSON_AddItemToArray(cmds, cmd);
    add_create_client(cmds, creds, role, hex);
    st = request(d, c, cmds, errors);
    if (st != OTK_OK)
        return st;
    if (errors[0][0] && strstr(errors[0], "already exists") == NULL)
        return OTK_ERR_CLOUD;
    if (errors[1][0] == 0)
        return OTK_OK;
    if (strstr(errors[1], "already exists") == NULL)
        return OTK_ERR_CLOUD;
    /* Created before (a retried request): recreate it exactly as asked, in
     * one request (dynsec runs the commands in order). */
    cmds = cJSON_CreateArray();
    cmd = cJSON_CreateObject();
    cJSON_AddStringToObject(cmd, "command", "deleteClient");
    cJSON_AddStringToObject(cmd, "username", creds->user);
    cJSON_AddItemToArray(cmds, cmd);
    add_create_client(cmds, creds, role, hex);
    st = request(d, c, cmds, errors);
    if (st == OTK_OK && errors[1][0])
        st = OTK_ERR_CLOUD;
    return st;
}

static otk_status ds_remove(void *ctx, uint32_t cloud_id, const char *user)
{
    otk_dynsec *d = ctx;
    conn *c = find(d, cloud_id);
    char errors[MAX_CMDS][64];
    cJSON *cmds, *cmd;
    otk_status st;
    if (c == NULL)
        return OTK_ERR_CLOUD;
    cmds = cJSON_CreateArray();
    cmd = cJSON_CreateObject();
    cJSON_AddStringToObject(cmd, "command", "deleteClient");
    cJSON_AddStringToObject(cmd, "username", user);
    cJSON_AddItemToArray(cmds, cmd);
    st = request(d, c, cmds, errors);
    if (st == OTK_OK && errors[0][0] && strstr(errors[0], "not found") == NULL)
        st = OTK_ERR_CLOUD;
    return st;
}

void otk_dynsec_adapter(otk_dynsec *d, otk_cloud_adapter *out)
{
    out->ctx = d;
    out->create = ds_create;
    out->remove = ds_remove;
    out->ensure = NULL; /* creates are done when create returns */
    out->issue_cert = NULL;
}

static otk_status open_conn(conn *c, unsigned timeout_ms, char *err, size_t err_size)
{
    char id[64];
    struct timespec until;
    int rc = 0;
    snprintf(id, sizeof id, "otakey-agent-%ld-%u", (long)getpid(), (unsigned)c->cfg.cloud_id);
    c->conn_rc = -1;
    c->mosq = mosquitto_new(id, true, c);
    if (c->mosq == NULL)
        abort();
    /* Small request/response messages: no Nagle delay. */
    (void)mosquitto_int_option(c->mosq, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_int_option(c->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_connect_v5_callback_set(c->mosq, on_connect);
    mosquitto_disconnect_v5_callback_set(c->mosq, on_disconnect);
    mosquitto_message_v5_callback_set(c->mosq, on_message);
    mosquitto_reconnect_delay_set(c->mosq, 1, 10, true);
    if (mosquitto_username_pw_set(c->mosq, c->cfg.admin_user, c->cfg.admin_password) != 0) {
        snprintf(err, err_size, "cloud %u: bad admin user or password", (unsigned)c->cfg.cloud_id);
        return OTK_ERR_CLOUD;
    }
    /* TLS fails closed: no usable CA, no connection (never plain TCP). */
    if (c->cfg.tls && (!c->cfg.cafile[0] || mosquitto_tls_set(c->mosq, c->cfg.cafile, NULL, NULL,
                                                               NULL, NULL) != MOSQ_ERR_SUCCESS)) {
        snprintf(err, err_size, "cloud %u: TLS: cannot load CA file '%s'", (unsigned)c->cfg.cloud_id,
                 c->cfg.cafile);
        return OTK_ERR_CLOUD;
    }
    rc = mosquitto_connect_async(c->mosq, c->cfg.host, c->cfg.port, 30);
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_loop_start(c->mosq);
    if (rc != MOSQ_ERR_SUCCESS) {
        snprintf(err, err_size, "cloud %u: cannot connect to %s:%u: %s", (unsigned)c->cfg.cloud_id,
                 c->cfg.host, c->cfg.port, mosquitto_strerror(rc));
        return OTK_ERR_CLOUD;
    }
    deadline_in(&until, timeout_ms);
    pthread_mutex_lock(&c->lock);
    rc = 0;
    while (c->conn_rc < 0 && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&c->cond, &c->lock, &until);
    rc = c->conn_rc;
    pthread_mutex_unlock(&c->lock);
    if (rc != 0) {
        snprintf(err, err_size, "cloud %u at %s:%u: %s", (unsigned)c->cfg.cloud_id, c->cfg.host,
                 c->cfg.port, rc < 0 ? "no answer" : mosquitto_reason_string(rc));
        return OTK_ERR_CLOUD;
    }
    return OTK_OK;
}

otk_status otk_dynsec_open(const otk_dynsec_cloud *clouds, size_t n, unsigned timeout_ms,
                           otk_dynsec **out, char *err, size_t err_size)
{
    otk_dynsec *d;
    size_t i;
    if (out == NULL || clouds == NULL || n == 0)
        return OTK_ERR_INVALID_ARGUMENT;
    *out = NULL;
    if (!lib_ready) {
        mosquitto_lib_init();
        lib_ready = 1;
    }
    d = calloc(1, sizeof *d);
    if (d == NULL || (d->c = calloc(n, sizeof *d->c)) == NULL)
        abort();
    d->timeout_ms = timeout_ms ? timeout_ms : 5000;
    for (i = 0; i < n; i++) {
        d->c[i].cfg = clouds[i];
        pthread_mutex_init(&d->c[i].lock, NULL);
        pthread_mutex_init(&d->c[i].req, NULL);
        pthread_cond_init(&d->c[i].cond, NULL);
        d->n = i + 1;
        if (open_conn(&d->c[i], d->timeout_ms, err, err_size) != OTK_OK) {
            otk_dynsec_close(d);
            return OTK_ERR_CLOUD;
        }
    }
    *out = d;
    return OTK_OK;
}

void otk_dynsec_close(otk_dynsec *d)
{
    size_t i;
    if (d == NULL)
        return;
    for (i = 0; i < d->n; i++) {
        conn *c = &d->c[i];
        if (c->mosq) {
            mosquitto_disconnect(c->mosq);
            mosquitto_loop_stop(c->mosq, true);
            mosquitto_destroy(c->mosq);
        }
        pthread_mutex_destroy(&c->lock);
        pthread_mutex_destroy(&c->req);
        pthread_cond_destroy(&c->cond);
        otk_wipe(&c->cfg, sizeof c->cfg);
    }
    free(d->c);
    free(d);
}
