/*
 * otakey-hostile flood: many anonymous connections, each with an id of its
 * own (as the broker's ACL allows anyone), publishing CLAIMs that the
 * agent must refuse (random MAC: the sender does not know the batch PK)
 * as fast as the broker acknowledges them (each connection keeps
 * `inflight` QoS 1 messages outstanding) or, with a rate, at that many a
 * second in all. One thread drives them all.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostile.h"
#include "otakey/crypto.h"

typedef struct conn {
    struct mosquitto *m;
    int connected; /* 1 connected, -1 refused */
    unsigned inflight;
    unsigned long sent, acked;
    uint8_t claim[OTK_CLAIM_LEN];
    char topic[64];
} conn;

static void on_connect(struct mosquitto *m, void *ud, int rc, int flags, const mosquitto_property *p)
{
    (void)m;
    (void)flags;
    (void)p;
    ((conn *)ud)->connected = rc == 0 ? 1 : -1;
}

static void on_publish(struct mosquitto *m, void *ud, int mid, int rc, const mosquitto_property *p)
{
    conn *c = ud;
    (void)m;
    (void)mid;
    (void)rc;
    (void)p;
    if (c->inflight)
        c->inflight--;
    c->acked++;
}

static void pump(conn *c)
{
    int rc = mosquitto_loop(c->m, 0, 1);
    if (rc == MOSQ_ERR_CONN_LOST || rc == MOSQ_ERR_NO_CONN) {
        c->inflight = 0; /* the session is gone with its messages */
        (void)mosquitto_reconnect(c->m);
    }
}

int hx_flood_main(const hx_broker *b, const uint8_t batch[8], unsigned conns, unsigned seconds,
                  unsigned inflight, unsigned rate)
{
    otk_crypto cr;
    conn *cs = calloc(conns, sizeof *cs);
    char hex[33];
    unsigned i, up = 0, refused = 0, rr = 0;
    unsigned long sent = 0, acked = 0;
    uint64_t t0, t1, deadline;
    if (cs == NULL)
        abort();
    if (otk_crypto_openssl_init(&cr, NULL, NULL) != OTK_OK)
        return 1;
    for (i = 0; i < conns; i++) {
        conn *c = &cs[i];
        uint8_t id[16];
        if (cr.random(cr.ctx, id, sizeof id) != OTK_OK || cr.random(cr.ctx, c->claim, sizeof c->claim) != OTK_OK)
            abort();
        otk_hex_encode(id, 16, hex);
        snprintf(c->topic, sizeof c->topic, "otakey/v1/up/%s", hex);
        /* A well-formed CLAIM for this id and the real batch; nonce, key and MAC random. */
        c->claim[0] = OTK_PROTO_VERSION;
        c->claim[1] = OTK_MSG_CLAIM;
        memcpy(c->claim + 2, id, 16);
        memcpy(c->claim + 18, batch, 8);
        c->m = mosquitto_new(hex, true, c);
        if (c->m == NULL)
            abort();
        mosquitto_int_option(c->m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
        mosquitto_connect_v5_callback_set(c->m, on_connect);
        mosquitto_publish_v5_callback_set(c->m, on_publish);
        if ((b->cafile && b->cafile[0] &&
             mosquitto_tls_set(c->m, b->cafile, NULL, NULL, NULL, NULL) != MOSQ_ERR_SUCCESS) ||
            mosquitto_connect(c->m, b->host, b->port, 60) != MOSQ_ERR_SUCCESS)
            c->connected = -1;
    }
    deadline = hx_now_ms() + 15000;
    do {
        up = refused = 0;
        for (i = 0; i < conns; i++) {
            if (cs[i].connected == 0)
                (void)mosquitto_loop(cs[i].m, 0, 1);
            up += cs[i].connected == 1;
            refused += cs[i].connected == -1;
        }
    } while (up + refused < conns && hx_now_ms() < deadline);
    printf("flood: %u connections up, %u refused or unreachable\n", up, conns - up);
    fflush(stdout);
    t0 = hx_now_ms();
    deadline = t0 + (uint64_t)seconds * 1000u;
    while ((t1 = hx_now_ms()) < deadline) {
        /* With a rate, the total sent follows rate x elapsed time, and the
         * connections take turns (rr goes round them), so all send alike. */
        uint64_t allowed = rate ? (t1 - t0) * rate / 1000u + 1 : UINT64_MAX;
        for (i = 0; i < conns; i++) {
            conn *c = &cs[rate ? (rr + i) % conns : i];
            if (c->connected != 1)
                continue;
            while (c->inflight < inflight && sent < allowed) {
                /* A fresh nonce each time: no two claims are the same request. */
                otk_put_u32(c->claim + 26, (uint32_t)c->sent);
                if (mosquitto_publish_v5(c->m, NULL, c->topic, (int)sizeof c->claim, c->claim, 1,
                                         false, NULL) != MOSQ_ERR_SUCCESS)
                    break;
                c->inflight++;
                c->sent++;
                sent++;
                if (rate) {
                    rr = (unsigned)((c - cs) + 1) % conns;
                    break;
                }
            }
            pump(c);
        }
        if (sent >= allowed)
            hx_sleep_ms(1); /* paced: nothing more due yet */
    }
    t1 = hx_now_ms();
    for (i = 0; i < conns; i++) {
        acked += cs[i].acked;
        mosquitto_disconnect(cs[i].m);
        mosquitto_destroy(cs[i].m);
    }
    printf("flood: %u connections, %lu invalid claims sent in %.1f s (%.0f/s), %lu acknowledged by "
           "the broker\n",
           up, sent, (double)(t1 - t0) / 1000.0, (double)sent * 1000.0 / (double)(t1 - t0 ? t1 - t0 : 1),
           acked);
    free(cs);
    otk_crypto_openssl_free(&cr);
    return up ? 0 : 1;
}
