/* otakey-hostile: broker connections and the capture of what goes by. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hostile.h"

uint64_t hx_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void hx_sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void on_connect(struct mosquitto *m, void *ud, int rc, int flags, const mosquitto_property *p)
{
    (void)m;
    (void)flags;
    (void)p;
    __atomic_store_n((int *)ud, rc == 0 ? 1 : -1, __ATOMIC_RELEASE);
}

struct mosquitto *hx_connect(const hx_broker *b, const char *client_id, const char *user,
                             const char *password, void *userdata)
{
    /* Until connected, the userdata is the connect flag; then the caller's. */
    int state = 0;
    uint64_t deadline;
    struct mosquitto *m = mosquitto_new(client_id, true, &state);
    if (m == NULL)
        abort();
    mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_connect_v5_callback_set(m, on_connect);
    if ((user && mosquitto_username_pw_set(m, user, password) != MOSQ_ERR_SUCCESS) ||
        (b->cafile && b->cafile[0] &&
         mosquitto_tls_set(m, b->cafile, NULL, NULL, NULL, NULL) != MOSQ_ERR_SUCCESS) ||
        mosquitto_connect(m, b->host, b->port, 30) != MOSQ_ERR_SUCCESS ||
        mosquitto_loop_start(m) != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "otakey-hostile: cannot connect to %s:%d as %s\n", b->host, b->port,
                client_id);
        mosquitto_destroy(m);
        return NULL;
    }
    deadline = hx_now_ms() + 30000; /* a TLS handshake on a loaded machine */
    while (__atomic_load_n(&state, __ATOMIC_ACQUIRE) == 0 && hx_now_ms() < deadline)
        hx_sleep_ms(5);
    mosquitto_connect_v5_callback_set(m, NULL);
    mosquitto_user_data_set(m, userdata);
    if (state != 1) {
        fprintf(stderr, "otakey-hostile: broker refused %s\n", client_id);
        hx_close(m);
        return NULL;
    }
    return m;
}

void hx_close(struct mosquitto *m)
{
    if (m == NULL)
        return;
    mosquitto_disconnect(m);
    mosquitto_loop_stop(m, false);
    mosquitto_destroy(m);
}

int hx_publish(struct mosquitto *m, const char *topic, const void *data, size_t len)
{
    return mosquitto_publish_v5(m, NULL, topic, (int)len, data, 1, false, NULL) == MOSQ_ERR_SUCCESS
               ? 0
               : -1;
}

static void on_capture(struct mosquitto *m, void *ud, const struct mosquitto_message *msg,
                       const mosquitto_property *p)
{
    hx_capture *c = ud;
    hx_seen *s;
    (void)m;
    (void)p;
    pthread_mutex_lock(&c->lock);
    if (c->n < HX_CAPTURE_MAX && msg->payloadlen >= 0) {
        s = &c->msgs[c->n];
        snprintf(s->topic, sizeof s->topic, "%s", msg->topic);
        s->len = (size_t)msg->payloadlen < sizeof s->data ? (size_t)msg->payloadlen : sizeof s->data;
        if (s->len) /* an empty payload comes as NULL */
            memcpy(s->data, msg->payload, s->len);
        c->n++;
    }
    pthread_mutex_unlock(&c->lock);
}

static void on_capture_subscribed(struct mosquitto *m, void *ud, int mid, int n, const int *qos,
                                  const mosquitto_property *p)
{
    hx_capture *c = ud;
    (void)m;
    (void)mid;
    (void)n;
    (void)qos;
    (void)p;
    __atomic_store_n(&c->subscribed, 1, __ATOMIC_RELEASE);
}

int hx_capture_start(hx_capture *c, const hx_broker *b)
{
    uint64_t deadline;
    char id[48];
    static char *const subs[] = {"otakey/v1/up/+", "otakey/v1/down/+"};
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->lock, NULL);
    c->msgs = calloc(HX_CAPTURE_MAX, sizeof *c->msgs);
    if (c->msgs == NULL)
        abort();
    snprintf(id, sizeof id, "otakey-hostile-capture-%ld", (long)getpid());
    c->m = hx_connect(b, id, b->user, b->password, c);
    if (c->m == NULL)
        return -1;
    mosquitto_message_v5_callback_set(c->m, on_capture);
    mosquitto_subscribe_v5_callback_set(c->m, on_capture_subscribed);
    if (mosquitto_subscribe_multiple(c->m, NULL, 2, subs, 1, 0, NULL) != MOSQ_ERR_SUCCESS)
        return -1;
    /* The SUBACK: nothing before it would be seen. */
    deadline = hx_now_ms() + 30000;
    while (!__atomic_load_n(&c->subscribed, __ATOMIC_ACQUIRE) && hx_now_ms() < deadline)
        hx_sleep_ms(10);
    return __atomic_load_n(&c->subscribed, __ATOMIC_ACQUIRE) ? 0 : -1;
}

void hx_capture_stop(hx_capture *c)
{
    hx_close(c->m);
    c->m = NULL;
    free(c->msgs);
    c->msgs = NULL;
    pthread_mutex_destroy(&c->lock);
}

size_t hx_capture_mark(hx_capture *c)
{
    size_t n;
    pthread_mutex_lock(&c->lock);
    n = c->n;
    pthread_mutex_unlock(&c->lock);
    return n;
}

int hx_capture_find(hx_capture *c, size_t mark, const char *topic, uint8_t type, uint32_t version,
                    unsigned timeout_ms, hx_seen *out)
{
    uint64_t deadline = hx_now_ms() + timeout_ms;
    size_t i = mark;
    for (;;) {
        pthread_mutex_lock(&c->lock);
        for (; i < c->n; i++) {
            const hx_seen *s = &c->msgs[i];
            if (strcmp(s->topic, topic) != 0 || s->len < OTK_HDR_LEN)
                continue;
            if (type ? s->data[1] != type : s->data[1] == OTK_MSG_NOTIFY)
                continue;
            if (version && (s->len < 22 || otk_get_u32(s->data + 18) != version))
                continue;
            *out = *s;
            pthread_mutex_unlock(&c->lock);
            return 1;
        }
        pthread_mutex_unlock(&c->lock);
        if (hx_now_ms() >= deadline)
            return 0;
        hx_sleep_ms(10);
    }
}
