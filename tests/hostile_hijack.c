/*
 * otakey-hostile hijack: the two attacks of an anonymous client on the agent
 * broker that used to cost the fleet its traffic or the agent its
 * connection, kept up for as long as a benchmark runs:
 *   - conns clients with device-shaped ids try to join the agents' shared
 *     subscription ($share/<group>/otakey/v1/up/+) again every 500 ms: each
 *     would be handed its share of every device's messages and drop them;
 *   - one client connects under the agent's client id every 100 ms: each
 *     accepted connection would knock the agent off the broker.
 * On SIGTERM/SIGINT (or after --seconds) it prints what the broker did and
 * exits 0 when nothing got through: no subscription granted, no message
 * received, no connection under the agent's id accepted.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostile.h"

static volatile sig_atomic_t stop;

static void on_stop(int s)
{
    (void)s;
    stop = 1;
}

typedef struct hijacker {
    struct mosquitto *m;
    char id[33];
    unsigned long granted, denied, received;
    int connected;
} hijacker;

static void on_hj_connect(struct mosquitto *m, void *ud, int rc, int flags, const mosquitto_property *p)
{
    hijacker *h = ud;
    (void)m;
    (void)flags;
    (void)p;
    __atomic_store_n(&h->connected, rc == 0 ? 1 : -1, __ATOMIC_RELEASE);
}

static void on_hj_subscribe(struct mosquitto *m, void *ud, int mid, int n, const int *granted,
                            const mosquitto_property *p)
{
    hijacker *h = ud;
    int i;
    (void)m;
    (void)mid;
    (void)p;
    for (i = 0; i < n; i++) {
        if (granted[i] >= 0x80)
            __atomic_add_fetch(&h->denied, 1, __ATOMIC_RELAXED);
        else
            __atomic_add_fetch(&h->granted, 1, __ATOMIC_RELAXED);
    }
}

static void on_hj_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg,
                          const mosquitto_property *p)
{
    hijacker *h = ud;
    (void)m;
    (void)msg;
    (void)p;
    __atomic_add_fetch(&h->received, 1, __ATOMIC_RELAXED);
}

static void on_takeover(struct mosquitto *m, void *ud, int rc, int flags, const mosquitto_property *p)
{
    (void)m;
    (void)flags;
    (void)p;
    *(int *)ud = rc == 0 ? 1 : 2;
}

/* One connection under id; 1 accepted, 2 refused, 0 no answer. */
static int try_takeover(const hx_broker *b, const char *id)
{
    int state = 0, i;
    struct mosquitto *m = mosquitto_new(id, true, &state);
    if (m == NULL)
        abort();
    mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_connect_v5_callback_set(m, on_takeover);
    if ((b->cafile && mosquitto_tls_set(m, b->cafile, NULL, NULL, NULL, NULL) != MOSQ_ERR_SUCCESS) ||
        mosquitto_connect(m, b->host, b->port, 30) != MOSQ_ERR_SUCCESS) {
        mosquitto_destroy(m);
        return 0;
    }
    for (i = 0; i < 100 && state == 0; i++)
        if (mosquitto_loop(m, 20, 1) != MOSQ_ERR_SUCCESS && state == 0)
            break;
    if (state == 1)
        mosquitto_disconnect(m);
    mosquitto_destroy(m);
    return state;
}

int hx_hijack_main(const hx_broker *b, unsigned conns, unsigned seconds, const char *takeover_id,
                   const char *group)
{
    hijacker *h = calloc(conns, sizeof *h);
    char topic[160];
    unsigned long granted = 0, denied = 0, received = 0, tries = 0, refused = 0, accepted = 0;
    uint64_t end = hx_now_ms() + (uint64_t)seconds * 1000u, next_sub = 0;
    unsigned i, up = 0;
    if (h == NULL)
        abort();
    signal(SIGTERM, on_stop);
    signal(SIGINT, on_stop);
    snprintf(topic, sizeof topic, "$share/%s/otakey/v1/up/+", group);
    for (i = 0; i < conns; i++) {
        uint8_t r[16];
        FILE *f = fopen("/dev/urandom", "rb");
        if (f == NULL || fread(r, 1, sizeof r, f) != sizeof r)
            abort();
        fclose(f);
        otk_hex_encode(r, sizeof r, h[i].id);
        h[i].m = mosquitto_new(h[i].id, true, &h[i]);
        if (h[i].m == NULL)
            abort();
        mosquitto_int_option(h[i].m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
        mosquitto_connect_v5_callback_set(h[i].m, on_hj_connect);
        mosquitto_subscribe_v5_callback_set(h[i].m, on_hj_subscribe);
        mosquitto_message_v5_callback_set(h[i].m, on_hj_message);
        mosquitto_reconnect_delay_set(h[i].m, 1, 1, false);
        if ((b->cafile && mosquitto_tls_set(h[i].m, b->cafile, NULL, NULL, NULL, NULL) != 0) ||
            mosquitto_connect_async(h[i].m, b->host, b->port, 30) != 0 ||
            mosquitto_loop_start(h[i].m) != 0) {
            fprintf(stderr, "otakey-hostile: hijacker %u cannot start\n", i);
            return 1;
        }
    }
    while (!stop && (seconds == 0 || hx_now_ms() < end)) {
        if (hx_now_ms() >= next_sub) {
            next_sub = hx_now_ms() + 500;
            for (i = 0; i < conns; i++)
                if (__atomic_load_n(&h[i].connected, __ATOMIC_ACQUIRE) == 1)
                    (void)mosquitto_subscribe_v5(h[i].m, NULL, topic, 1, 0, NULL);
        }
        if (takeover_id != NULL) {
            int t = try_takeover(b, takeover_id);
            tries++;
            refused += t == 2;
            accepted += t == 1;
        }
        hx_sleep_ms(100);
    }
    for (i = 0; i < conns; i++) {
        up += __atomic_load_n(&h[i].connected, __ATOMIC_ACQUIRE) == 1;
        granted += __atomic_load_n(&h[i].granted, __ATOMIC_RELAXED);
        denied += __atomic_load_n(&h[i].denied, __ATOMIC_RELAXED);
        received += __atomic_load_n(&h[i].received, __ATOMIC_RELAXED);
        hx_close(h[i].m);
    }
    free(h);
    printf("hijack: %u of %u hijackers connected, %lu shared subscriptions denied, %lu granted, "
           "%lu messages received; takeover as '%s': %lu attempts, %lu refused, %lu accepted\n",
           up, conns, denied, granted, received, takeover_id ? takeover_id : "-", tries, refused,
           accepted);
    return granted == 0 && received == 0 && accepted == 0 ? 0 : 1;
}
