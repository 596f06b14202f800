/*
 * Many libmosquitto clients on one epoll loop (tools/fleet/net.h).
 *
 * libmosquitto is used without its own loop: each client's socket sits in
 * one epoll set, and readiness is handed to mosquitto_loop_read/write.
 * Callbacks may close connections; the close is finished (DISCONNECT
 * flushed, client destroyed) after the callback has returned, because a
 * client cannot be destroyed from inside its own callback.
 */
#include "net.h"

#include <errno.h>
#include <linux/tcp.h>
#include <mosquitto.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct fl_conn {
    fl_loop *L;
    struct mosquitto *m;
    const fl_conn_cb *cb;
    void *ud;
    int fd;
    uint32_t events;     /* epoll interest now registered */
    int connacked;       /* CONNACK seen */
    int dead;            /* closed or lost: being finished */
    int reported;        /* on_connect/on_lost already told */
    fl_bytes *close_out; /* where fl_close wants the final counters */
    fl_bytes b;          /* PUBLISH counters */
    uint64_t tcp_up, tcp_down;
    fl_conn *next_dead;
    SSL_CTX *own_ssl;    /* a context of this connection's own (client certificate) */
};

struct fl_loop {
    int ep;
    SSL_CTX *ssl;
    size_t count;
    fl_conn *dead;
};

/* After mosquitto_destroy: the library may hold the context until then. */
static void conn_free(fl_conn *c)
{
    if (c->m != NULL)
        mosquitto_destroy(c->m);
    SSL_CTX_free(c->own_ssl);
    free(c);
}

uint64_t fl_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

long fl_raise_fd_limit(void)
{
    struct rlimit r;
    FILE *f = fopen("/proc/sys/fs/nr_open", "r");
    unsigned long nr_open = 0;
    if (f != NULL) {
        if (fscanf(f, "%lu", &nr_open) != 1)
            nr_open = 0;
        fclose(f);
    }
    if (getrlimit(RLIMIT_NOFILE, &r) != 0)
        return -1;
    /* Root may raise the hard limit up to fs.nr_open; others get theirs. */
    if (nr_open > r.rlim_max) {
        struct rlimit up = {nr_open, nr_open};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            return (long)nr_open;
    }
    r.rlim_cur = r.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &r);
    if (getrlimit(RLIMIT_NOFILE, &r) != 0)
        return -1;
    return (long)r.rlim_cur;
}

static size_t varint_len(size_t v)
{
    return v < 128 ? 1 : v < 16384 ? 2 : v < 2097152 ? 3 : 4;
}

size_t fl_publish_framing(size_t topic_len, size_t n)
{
    /* topic (2 + len), packet id (2), property length (1: none), payload */
    size_t rl = 2 + topic_len + 2 + 1 + n;
    return 1 + varint_len(rl) + (rl - n);
}

/* An MQTT 5 PUBACK with reason 0 and no properties: header, length, id. */
#define PUBACK_LEN 4u

static void tcp_snapshot(fl_conn *c)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    if (c->fd < 0 || mosquitto_socket(c->m) != c->fd)
        return;
    memset(&ti, 0, sizeof ti);
    if (getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0) {
        c->tcp_up = ti.tcpi_bytes_sent;
        c->tcp_down = ti.tcpi_bytes_received;
    }
}

static void interest(fl_conn *c)
{
    struct epoll_event ev;
    uint32_t want;
    if (c->dead || c->fd < 0)
        return;
    want = EPOLLIN | (mosquitto_want_write(c->m) ? EPOLLOUT : 0u);
    if (want == c->events)
        return;
    memset(&ev, 0, sizeof ev);
    ev.events = want;
    ev.data.ptr = c;
    if (epoll_ctl(c->L->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
        c->events = want;
}

static void mark_dead(fl_conn *c)
{
    if (c->dead)
        return;
    c->dead = 1;
    c->next_dead = c->L->dead;
    c->L->dead = c;
}

static void on_connect(struct mosquitto *m, void *ud, int rc, int flags, const mosquitto_property *p)
{
    fl_conn *c = ud;
    (void)m;
    (void)flags;
    (void)p;
    c->connacked = rc == 0;
    c->reported = 1;
    if (c->cb->on_connect)
        c->cb->on_connect(c, c->ud, rc);
    ERR_clear_error(); /* libmosquitto reads on after a callback (see handle) */
}

static void on_subscribe(struct mosquitto *m, void *ud, int mid, int n, const int *qos,
                         const mosquitto_property *p)
{
    fl_conn *c = ud;
    (void)m;
    (void)mid;
    (void)n;
    (void)qos;
    (void)p;
    if (c->cb->on_subscribe && !c->dead)
        c->cb->on_subscribe(c, c->ud);
    ERR_clear_error();
}

static void on_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg,
                       const mosquitto_property *p)
{
    fl_conn *c = ud;
    size_t n = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0;
    (void)m;
    (void)p;
    c->b.app_down += n;
    c->b.mqtt_down += fl_publish_framing(strlen(msg->topic), n);
    if (msg->qos > 0)
        c->b.mqtt_up += PUBACK_LEN;
    if (c->cb->on_message && !c->dead)
        c->cb->on_message(c, c->ud, msg->topic, msg->payload, n);
    ERR_clear_error();
}

fl_loop *fl_loop_new(const char *cafile, const char *host)
{
    fl_loop *L = calloc(1, sizeof *L);
    if (L == NULL)
        abort();
    mosquitto_lib_init();
    L->ep = epoll_create1(EPOLL_CLOEXEC);
    if (L->ep < 0) {
        perror("epoll_create1");
        free(L);
        return NULL;
    }
    if (cafile != NULL) {
        L->ssl = SSL_CTX_new(TLS_client_method());
        if (L->ssl == NULL || SSL_CTX_load_verify_locations(L->ssl, cafile, NULL) != 1) {
            fprintf(stderr, "fleet: cannot load CA file '%s'\n", cafile);
            fl_loop_free(L);
            return NULL;
        }
        SSL_CTX_set_verify(L->ssl, SSL_VERIFY_PEER, NULL);
        SSL_CTX_set_min_proto_version(L->ssl, TLS1_2_VERSION);
        /* The shared context does the checks libmosquitto's own would:
         * the chain and the broker's name (an IP address or a host name). */
        if (host != NULL) {
            X509_VERIFY_PARAM *vp = SSL_CTX_get0_param(L->ssl);
            if (X509_VERIFY_PARAM_set1_ip_asc(vp, host) != 1 &&
                X509_VERIFY_PARAM_set1_host(vp, host, 0) != 1) {
                fprintf(stderr, "fleet: cannot check the broker name '%s'\n", host);
                fl_loop_free(L);
                return NULL;
            }
        }
    }
    return L;
}

static void finish_dead(fl_loop *L)
{
    while (L->dead) {
        fl_conn *c = L->dead;
        L->dead = c->next_dead;
        /* libmosquitto may have closed the socket already (a lost
         * connection): the kernel then dropped it from the epoll set, and
         * the number may belong to a newer socket, so leave it alone. */
        if (c->fd >= 0 && mosquitto_socket(c->m) == c->fd) {
            /* Flush what is queued (a DISCONNECT), then count. */
            (void)mosquitto_loop_write(c->m, 1);
            tcp_snapshot(c);
            (void)epoll_ctl(L->ep, EPOLL_CTL_DEL, c->fd, NULL);
        }
        if (c->close_out) {
            fl_bytes *o = c->close_out;
            o->app_up += c->b.app_up;
            o->app_down += c->b.app_down;
            o->mqtt_up += c->b.mqtt_up;
            o->mqtt_down += c->b.mqtt_down;
            o->tcp_up += c->tcp_up;
            o->tcp_down += c->tcp_down;
        }
        conn_free(c);
        L->count--;
    }
}

void fl_loop_free(fl_loop *L)
{
    if (L == NULL)
        return;
    finish_dead(L);
    if (L->ssl)
        SSL_CTX_free(L->ssl);
    if (L->ep >= 0)
        close(L->ep);
    free(L);
}

fl_conn *fl_open(fl_loop *L, const fl_broker *b, const char *bind_ip, const char *client_id,
                 const char *user, const char *pass, int keepalive, const fl_conn_cb *cb,
                 void *ud)
{
    struct epoll_event ev;
    fl_conn *c = calloc(1, sizeof *c);
    int rc;
    if (c == NULL)
        abort();
    c->L = L;
    c->cb = cb;
    c->ud = ud;
    c->fd = -1;
    c->own_ssl = b->ssl_ctx;
    c->m = mosquitto_new(client_id, true, c);
    if (c->m == NULL)
        abort();
    mosquitto_int_option(c->m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    /* Small messages (requests, PUBACKs) would otherwise wait for the
     * peer's delayed ACK (Nagle), ~40 ms each on loopback: a stall of the
     * simulator, not of the protocols. TCP payload bytes are unchanged. */
    mosquitto_int_option(c->m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_connect_v5_callback_set(c->m, on_connect);
    mosquitto_subscribe_v5_callback_set(c->m, on_subscribe);
    mosquitto_message_v5_callback_set(c->m, on_message);
    if (user != NULL)
        (void)mosquitto_username_pw_set(c->m, user, pass);
    if (b->tls && L->ssl == NULL && c->own_ssl == NULL) {
        /* TLS fails closed: no context, no connection (never plain TCP). */
        conn_free(c);
        errno = EPROTO;
        return NULL;
    }
    if (b->tls) {
        /* The shared context is complete: without this, libmosquitto 2.0
         * wants a cafile of its own and refuses to connect (MOSQ_ERR_INVAL). */
        (void)mosquitto_int_option(c->m, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0);
        (void)mosquitto_void_option(c->m, MOSQ_OPT_SSL_CTX, c->own_ssl ? c->own_ssl : L->ssl);
    }
    rc = mosquitto_connect_bind_async(c->m, b->host, b->port, keepalive, bind_ip);
    c->fd = mosquitto_socket(c->m);
    if (rc != MOSQ_ERR_SUCCESS || c->fd < 0) {
        int e = rc == MOSQ_ERR_ERRNO ? errno : ECONNREFUSED;
        conn_free(c);
        errno = e;
        return NULL;
    }
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.ptr = c;
    if (epoll_ctl(L->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        int e = errno;
        conn_free(c);
        errno = e;
        return NULL;
    }
    c->events = ev.events;
    L->count++;
    return c;
}

int fl_publish(fl_conn *c, const char *topic, const void *p, size_t n)
{
    if (c == NULL || c->dead || !c->connacked)
        return -1;
    ERR_clear_error(); /* the write may go out now, through TLS (see handle) */
    if (mosquitto_publish_v5(c->m, NULL, topic, (int)n, p, 1, false, NULL) != MOSQ_ERR_SUCCESS)
        return -1;
    c->b.app_up += n;
    c->b.mqtt_up += fl_publish_framing(strlen(topic), n);
    c->b.mqtt_down += PUBACK_LEN;
    interest(c);
    return 0;
}

int fl_subscribe(fl_conn *c, const char *topic)
{
    if (c == NULL || c->dead || !c->connacked)
        return -1;
    if (mosquitto_subscribe_v5(c->m, NULL, topic, 1, 0, NULL) != MOSQ_ERR_SUCCESS)
        return -1;
    interest(c);
    return 0;
}

void fl_conn_bytes(fl_conn *c, fl_bytes *out)
{
    tcp_snapshot(c);
    out->app_up += c->b.app_up;
    out->app_down += c->b.app_down;
    out->mqtt_up += c->b.mqtt_up;
    out->mqtt_down += c->b.mqtt_down;
    out->tcp_up += c->tcp_up;
    out->tcp_down += c->tcp_down;
}

void fl_close(fl_conn *c, fl_bytes *out)
{
    if (c == NULL || c->dead)
        return;
    c->close_out = out;
    tcp_snapshot(c);
    if (c->connacked)
        (void)mosquitto_disconnect(c->m);
    mark_dead(c);
}

static void handle(fl_conn *c, uint32_t events)
{
    int rc;
    /* libmosquitto's TLS needs an empty OpenSSL error queue (the CSR
     * baseline's signing runs in its callbacks). */
    ERR_clear_error();
    rc = mosquitto_loop_read(c->m, 1);
    ERR_clear_error();
    if (rc == MOSQ_ERR_SUCCESS && !c->dead && (events & EPOLLOUT))
        rc = mosquitto_loop_write(c->m, 1);
    if (c->dead)
        return;
    /* A peer that went away while the TLS handshake was under way leaves
     * the socket hung up, yet libmosquitto's read can still report
     * success (the handshake "wants" more): without this the connection
     * would sit in the set forever, never reported. */
    if (rc == MOSQ_ERR_SUCCESS && (events & (EPOLLERR | EPOLLHUP)))
        rc = MOSQ_ERR_CONN_LOST;
    if (rc != MOSQ_ERR_SUCCESS || mosquitto_socket(c->m) < 0) {
        tcp_snapshot(c);
        mark_dead(c);
        if (!c->reported) {
            c->reported = 1;
            if (c->cb->on_connect)
                c->cb->on_connect(c, c->ud, rc > 0 ? -rc : -1);
        } else if (c->cb->on_lost) {
            c->cb->on_lost(c, c->ud);
        }
        return;
    }
    interest(c);
}

void fl_loop_run(fl_loop *L, int timeout_ms)
{
    struct epoll_event evs[512];
    int n, i;
    finish_dead(L);
    n = epoll_wait(L->ep, evs, 512, timeout_ms);
    for (i = 0; i < n; i++) {
        fl_conn *c = evs[i].data.ptr;
        if (!c->dead)
            handle(c, evs[i].events);
    }
    finish_dead(L);
}

size_t fl_loop_count(const fl_loop *L)
{
    return L->count;
}
