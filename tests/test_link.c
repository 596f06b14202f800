/*
 * The agent's MQTT 5 link (tools/mqtt_link.h) against a scripted broker on
 * a Unix socket: the test writes the broker's bytes itself (cut anywhere,
 * many packets at once, malformed ones) and reads what the link sends.
 * The link against a real mosquitto is what the end-to-end tests run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "mqtt_link.h"

static char sock_path[108];
static int listener = -1;

/* What the callbacks saw. */
static struct seen {
    int connacks, last_connack;
    int messages;
    char last_topic[128];
    uint8_t last_payload[256];
    size_t last_len;
    int order_ok; /* messages "m<k>" came in order */
    int pubacks;
    uint16_t puback_id[16];
    int puback_rc[16];
    int refusals;
} seen;

static void on_connack(void *u, int reason)
{
    (void)u;
    seen.connacks++;
    seen.last_connack = reason;
}

static void on_message(void *u, const char *topic, const uint8_t *p, size_t n)
{
    char want[16];
    (void)u;
    snprintf(want, sizeof want, "m%d", seen.messages);
    if (n != strlen(want) || memcmp(p, want, n) != 0)
        seen.order_ok = 0;
    seen.messages++;
    snprintf(seen.last_topic, sizeof seen.last_topic, "%s", topic);
    seen.last_len = n < sizeof seen.last_payload ? n : sizeof seen.last_payload;
    memcpy(seen.last_payload, p, seen.last_len);
}

static void on_puback(void *u, uint16_t id, int rc)
{
    (void)u;
    if (seen.pubacks < 16) {
        seen.puback_id[seen.pubacks] = id;
        seen.puback_rc[seen.pubacks] = rc;
    }
    seen.pubacks++;
}

static void on_refused(void *u, const char *what, int rc)
{
    (void)u;
    (void)what;
    (void)rc;
    seen.refusals++;
}

/* ---- the scripted broker's side ---- */

static size_t vbi(uint8_t *b, size_t v)
{
    size_t k = 0;
    do {
        uint8_t c = v & 0x7f;
        v >>= 7;
        b[k++] = (uint8_t)(c | (v ? 0x80 : 0));
    } while (v);
    return k;
}

/* A packet: first byte, body; into out, its size returned. */
static size_t pkt(uint8_t *out, unsigned first, const void *body, size_t n)
{
    size_t k = 0;
    out[k++] = (uint8_t)first;
    k += vbi(out + k, n);
    memcpy(out + k, body, n);
    return k + n;
}

/* PUBACKs (success, two bytes) for n ids. */
static size_t pubacks(uint8_t *out, const uint16_t *ids, int n)
{
    size_t off = 0;
    int i;
    for (i = 0; i < n; i++) {
        uint8_t ack[2] = {(uint8_t)(ids[i] >> 8), (uint8_t)ids[i]};
        off += pkt(out + off, 0x40, ack, 2);
    }
    return off;
}

static size_t publish_qos1(uint8_t *out, const char *topic, uint16_t id, const char *payload)
{
    uint8_t body[512];
    size_t n = 0, tl = strlen(topic), pl = strlen(payload);
    body[n++] = (uint8_t)(tl >> 8);
    body[n++] = (uint8_t)tl;
    memcpy(body + n, topic, tl);
    n += tl;
    body[n++] = (uint8_t)(id >> 8);
    body[n++] = (uint8_t)id;
    body[n++] = 0; /* no properties */
    memcpy(body + n, payload, pl);
    n += pl;
    return pkt(out, 0x32, body, n);
}

static void put_all(int fd, const uint8_t *b, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, b, n);
        if (k <= 0) {
            perror("test_link: write");
            exit(1);
        }
        b += k;
        n -= (size_t)k;
    }
}

/* Reads what the link sent within ms: bytes into b (up to cap). */
static size_t take(int fd, uint8_t *b, size_t cap, int ms)
{
    size_t n = 0;
    struct pollfd p;
    p.fd = fd;
    p.events = POLLIN;
    while (n < cap && poll(&p, 1, ms) == 1) {
        ssize_t k = read(fd, b + n, cap - n);
        if (k <= 0)
            break;
        n += (size_t)k;
        ms = 50; /* the rest of a burst */
    }
    return n;
}

static otk_link *new_link(unsigned keepalive)
{
    otk_link *l = NULL;
    otk_link_opts o;
    otk_link_cb cb;
    char err[128];
    memset(&o, 0, sizeof o);
    memset(&cb, 0, sizeof cb);
    o.client_id = "agent-1";
    o.username = "otakey-agent";
    o.password = "s3cret";
    o.socket_path = sock_path;
    o.keepalive_s = keepalive;
    cb.connack = on_connack;
    cb.message = on_message;
    cb.puback = on_puback;
    cb.refused = on_refused;
    if (otk_link_new(&l, &o, &cb, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "test_link: %s\n", err);
        exit(1);
    }
    return l;
}

/* Connects l and accepts it: the broker's end. The CONNECT is read and checked. */
static int open_pair(otk_link *l)
{
    uint8_t b[512];
    size_t n;
    int fd;
    memset(&seen, 0, sizeof seen);
    seen.order_ok = 1;
    CHECK(otk_link_connect(l, 2000) == 0);
    fd = accept(listener, NULL, NULL);
    CHECK(fd >= 0);
    n = take(fd, b, sizeof b, 2000);
    /* CONNECT: "MQTT" 5, clean start with user name and password, then the id. */
    CHECK(n > 12 && b[0] == 0x10);
    CHECK(n > 12 && memcmp(b + 2, "\0\4MQTT\5", 7) == 0 && b[9] == 0xC2);
    CHECK(n > 12 && memmem(b, n, "agent-1", 7) != NULL && memmem(b, n, "s3cret", 6) != NULL);
    return fd;
}

static void sleep_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static uint64_t mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* CONNACK: accepted, Receive Maximum 2, a reason string among the properties. */
static const uint8_t connack_rm2[] = {0x20, 0x0e, 0x00, 0x00, 0x0b, 0x21, 0x00, 0x02,
                                      0x1f, 0x00, 0x05, 'h', 'e', 'l', 'l', 'o'};

static void test_session(void)
{
    otk_link *l = new_link(30);
    int fd = open_pair(l), i, got;
    uint8_t b[8192];
    size_t n, k, off;
    uint16_t ids[5];

    /* The CONNACK a byte at a time: the link waits for the whole of it. */
    for (k = 0; k < sizeof connack_rm2; k++) {
        put_all(fd, connack_rm2 + k, 1);
        sleep_ms(2);
        CHECK(otk_link_read(l, 64) >= 0);
        CHECK(seen.connacks == (k + 1 == sizeof connack_rm2));
    }
    CHECK(seen.last_connack == 0);

    /* Five QoS 1 publishes against a Receive Maximum of 2: two leave, the
     * rest wait for PUBACKs, in order. */
    for (i = 0; i < 5; i++)
        CHECK(otk_link_publish(l, "otakey/v1/down/x", "reply", 5, 1, &ids[i]) == 0);
    CHECK(otk_link_want_write(l));
    CHECK(otk_link_flush(l) == 0);
    CHECK(!otk_link_want_write(l));
    n = take(fd, b, sizeof b, 500);
    /* Each: 0x32, two bytes of header, then the topic (2 + 16), the id (2), no properties (1), the payload (5). */
    CHECK(n == 2 * 28);
    CHECK(n == 2 * 28 && b[0] == 0x32 && b[28] == 0x32);
    CHECK(n >= 24 && b[20] == (ids[0] >> 8) && b[21] == (ids[0] & 0xff));
    /* The first acknowledged with "no matching subscribers": the third leaves. */
    {
        uint8_t ack[5] = {0x40, 0x03, (uint8_t)(ids[0] >> 8), (uint8_t)ids[0], 0x10};
        put_all(fd, ack, sizeof ack);
    }
    sleep_ms(20);
    CHECK(otk_link_read(l, 64) == 1);
    CHECK(seen.pubacks == 1 && seen.puback_id[0] == ids[0] && seen.puback_rc[0] == 0x10);
    CHECK(otk_link_flush(l) == 0);
    n = take(fd, b, sizeof b, 500);
    CHECK(n == 28 && b[20] == (ids[2] >> 8) && b[21] == (ids[2] & 0xff));
    /* The second and third acknowledged (a PUBACK of two bytes: success):
     * the last two leave; then they are acknowledged. */
    put_all(fd, b, pubacks(b, ids + 1, 2));
    sleep_ms(20);
    CHECK(otk_link_read(l, 64) == 2);
    CHECK(otk_link_flush(l) == 0);
    CHECK(take(fd, b, sizeof b, 500) == 2 * 28);
    put_all(fd, b, pubacks(b, ids + 3, 2));
    sleep_ms(20);
    CHECK(otk_link_read(l, 64) == 2);
    CHECK(seen.pubacks == 5 && seen.puback_rc[4] == 0 && seen.puback_id[4] == ids[4]);
    /* A PUBACK for an id not in flight is let pass. */
    {
        uint8_t ack[4] = {0x40, 0x02, 0x7f, 0x7f};
        put_all(fd, ack, sizeof ack);
        sleep_ms(20);
        CHECK(otk_link_read(l, 64) == 1 && seen.pubacks == 5);
    }

    /* A hundred messages in one write: passed on 64 a call, each
     * acknowledged, the acknowledgements in one write. */
    off = 0;
    for (i = 0; i < 100; i++) {
        char p[16];
        snprintf(p, sizeof p, "m%d", i);
        off += publish_qos1(b + off, "otakey/v1/up/dev", (uint16_t)(i + 1), p);
    }
    put_all(fd, b, off);
    sleep_ms(20);
    got = otk_link_read(l, 64); /* 64 at most a call */
    CHECK(got == 64 && otk_link_buffered(l));
    got += otk_link_read(l, 64);
    CHECK(got == 100 && !otk_link_buffered(l));
    CHECK(seen.messages == 100 && seen.order_ok && strcmp(seen.last_topic, "otakey/v1/up/dev") == 0);
    CHECK(otk_link_flush(l) == 0);
    n = take(fd, b, sizeof b, 500);
    CHECK(n == 100 * 4 && b[0] == 0x40 && b[1] == 2 && b[2] == 0 && b[3] == 1 && b[399] == 100);

    /* A SUBSCRIBE, refused by its SUBACK. */
    CHECK(otk_link_subscribe(l, "otakey/v1/up/+", 1) == 0);
    CHECK(otk_link_flush(l) == 0);
    n = take(fd, b, sizeof b, 500);
    CHECK(n > 5 && b[0] == 0x82);
    {
        uint8_t sa[6] = {0x90, 0x04, b[2], b[3], 0x00, 0x87};
        put_all(fd, sa, sizeof sa);
        sleep_ms(20);
        CHECK(otk_link_read(l, 64) == 1 && seen.refusals == 1);
    }

    /* A PUBLISH with a topic alias (never allowed): the link fails. */
    {
        uint8_t bad[] = {0x30, 0x08, 0x00, 0x01, 't', 0x03, 0x23, 0x00, 0x01, 'x'};
        put_all(fd, bad, sizeof bad);
        sleep_ms(20);
        CHECK(otk_link_read(l, 64) < 0);
        CHECK(strstr(otk_link_error(l), "malformed") != NULL);
        CHECK(otk_link_fd(l) < 0); /* closed at once */
    }
    otk_link_disconnect(l);
    CHECK(otk_link_publish(l, "t", "x", 1, 1, NULL) != 0);
    close(fd);
    otk_link_free(l);
}

static void test_refusals(void)
{
    otk_link *l = new_link(30);
    uint8_t b[256];
    int fd;
    /* CONNACK: bad user name or password. */
    static const uint8_t no[] = {0x20, 0x03, 0x00, 0x86, 0x00};
    /* DISCONNECT: server shutting down, with a reason string. */
    static const uint8_t bye[] = {0x20, 0x03, 0x00, 0x00, 0x00, 0xe0, 0x09, 0x8b, 0x07,
                                  0x1f, 0x00, 0x04, 'b', 'y', 'e', '!'};
    fd = open_pair(l);
    put_all(fd, no, sizeof no);
    sleep_ms(20);
    CHECK(otk_link_read(l, 64) < 0);
    CHECK(seen.connacks == 1 && seen.last_connack == 0x86);
    CHECK(strcmp(otk_link_error(l), "Bad User Name or Password") == 0);
    close(fd);

    /* Publishes made before the CONNACK wait for it; lost with the connection. */
    fd = open_pair(l);
    CHECK(otk_link_publish(l, "t/1", "a", 1, 1, NULL) == 0);
    CHECK(otk_link_flush(l) == 0);
    CHECK(take(fd, b, sizeof b, 100) == 0);
    put_all(fd, bye, sizeof bye);
    sleep_ms(20);
    CHECK(otk_link_read(l, 64) < 0);
    CHECK(seen.connacks == 1 && seen.last_connack == 0);
    CHECK(strstr(otk_link_error(l), "Server shutting down: bye!") != NULL);
    CHECK(otk_link_fd(l) < 0 && otk_link_dropped(l) == 1);
    /* Calls on the closed link fail and keep the reason it was lost. */
    CHECK(otk_link_publish(l, "t/1", "a", 1, 1, NULL) != 0 && otk_link_flush(l) != 0);
    CHECK(strstr(otk_link_error(l), "bye!") != NULL);
    close(fd);
    fd = open_pair(l);

    /* The broker closes the socket. */
    close(fd);
    sleep_ms(20);
    CHECK(otk_link_read(l, 64) < 0);
    CHECK(strstr(otk_link_error(l), "closed") != NULL);
    otk_link_free(l);
}

static void test_keepalive(void)
{
    otk_link *l = new_link(1);
    static const uint8_t ok[] = {0x20, 0x03, 0x00, 0x00, 0x00};
    static const uint8_t pong[] = {0xd0, 0x00};
    uint8_t b[64];
    int fd = open_pair(l);
    put_all(fd, ok, sizeof ok);
    sleep_ms(20);
    CHECK(otk_link_read(l, 64) == 1 && seen.last_connack == 0);
    CHECK(otk_link_tick(l, mono()) == 0);
    CHECK(take(fd, b, sizeof b, 100) == 0); /* nothing before the keep-alive */
    sleep_ms(1100);
    CHECK(otk_link_tick(l, mono()) == 0);
    CHECK(take(fd, b, sizeof b, 200) == 2 && b[0] == 0xc0 && b[1] == 0);
    put_all(fd, pong, sizeof pong);
    sleep_ms(20);
    CHECK(otk_link_read(l, 64) == 1);
    sleep_ms(1100);
    CHECK(otk_link_tick(l, mono()) == 0); /* answered: a second ping */
    CHECK(take(fd, b, sizeof b, 200) == 2 && b[0] == 0xc0);
    sleep_ms(1100);
    CHECK(otk_link_tick(l, mono()) < 0); /* not answered */
    CHECK(strstr(otk_link_error(l), "keep-alive") != NULL);
    close(fd);
    otk_link_free(l);
}

/* The settings the link refuses up front, and a socket nobody listens on. */
static void test_setup(void)
{
    otk_link *l = NULL;
    otk_link_opts o;
    otk_link_cb cb;
    char err[128] = "", path[200];
    memset(&o, 0, sizeof o);
    memset(&cb, 0, sizeof cb);
    o.client_id = "a";
    o.host = "127.0.0.1";
    o.port = 1;
    o.tls = 1;
    o.cafile = "/nonexistent/ca.crt";
    CHECK(otk_link_new(&l, &o, &cb, NULL, err, sizeof err) != 0 && l == NULL);
    CHECK(strstr(err, "cannot load cafile '/nonexistent/ca.crt'") != NULL);
    o.tls = 0;
    memset(path, 'x', sizeof path - 1);
    path[sizeof path - 1] = 0;
    o.socket_path = path;
    CHECK(otk_link_new(&l, &o, &cb, NULL, err, sizeof err) != 0 && l == NULL);
    snprintf(path, sizeof path, "%s.none", sock_path);
    CHECK(otk_link_new(&l, &o, &cb, NULL, err, sizeof err) == 0);
    CHECK(otk_link_connect(l, 1000) != 0 && otk_link_fd(l) < 0);
    CHECK(strstr(otk_link_error(l), "No such file") != NULL);
    CHECK(otk_link_read(l, 1) < 0 && otk_link_flush(l) < 0);
    otk_link_free(l);
}

int main(void)
{
    char dir[] = "/tmp/otk-link-XXXXXX";
    struct sockaddr_un sa;
    if (mkdtemp(dir) == NULL)
        return 1;
    snprintf(sock_path, sizeof sock_path, "%s/broker.sock", dir);
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock_path);
    listener = socket(AF_UNIX, SOCK_STREAM, 0);
    if (listener < 0 || bind(listener, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(listener, 4) != 0) {
        perror("test_link: listen");
        return 1;
    }
    test_setup();
    test_session();
    test_refusals();
    test_keepalive();
    close(listener);
    unlink(sock_path);
    rmdir(dir);
    return CHECK_DONE();
}
