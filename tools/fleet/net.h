/*
 * net.h: many MQTT 5 client connections multiplexed on one thread. Each
 * connection is a libmosquitto client driven by one epoll loop instead of
 * a thread or a blocking loop of its own; TLS contexts are shared (one
 * SSL_CTX for every connection) so 100,000 connections fit in memory.
 *
 * Bytes are counted three ways per connection: application payload and
 * MQTT framing of every PUBLISH (and its PUBACK) sent and received, both
 * computed from the MQTT 5 encoding, and the TCP payload bytes the kernel
 * acknowledged and received (TCP_INFO), which add TLS and the connection
 * packets (CONNECT, SUBSCRIBE and their acknowledgements).
 */
#ifndef OTK_FLEET_NET_H
#define OTK_FLEET_NET_H

#include <stddef.h>
#include <stdint.h>

typedef struct fl_loop fl_loop;
typedef struct fl_conn fl_conn;

/* Byte counters; "up" is what the client sends. */
typedef struct fl_bytes {
    uint64_t app_up, app_down;     /* PUBLISH payloads */
    uint64_t mqtt_up, mqtt_down;   /* PUBLISH + PUBACK framing */
    uint64_t tcp_up, tcp_down;     /* TCP payload (TLS records included) */
} fl_bytes;

typedef struct fl_conn_cb {
    /* CONNACK (rc 0: accepted, else the MQTT reason code) or a failure to
     * connect (rc < 0). */
    void (*on_connect)(fl_conn *c, void *ud, int rc);
    void (*on_subscribe)(fl_conn *c, void *ud);
    void (*on_message)(fl_conn *c, void *ud, const char *topic, const uint8_t *p, size_t n);
    /* The connection dropped (not called for fl_close). */
    void (*on_lost)(fl_conn *c, void *ud);
} fl_conn_cb;

/* A broker and how to reach it. */
typedef struct fl_broker {
    const char *host;
    int port;
    int tls;
    /* NULL: the loop's shared context. Otherwise an SSL_CTX of the
     * connection's own (a client certificate): fl_open takes it over and
     * frees it with the connection, or at once when it fails. */
    void *ssl_ctx;
} fl_broker;

/*
 * Creates a loop. cafile (NULL: no TLS) is loaded once into the shared
 * client context; peers are verified against it and against host (an IP
 * address or a DNS name; every broker of the loop is on that host). A
 * broker with tls set is never reached without TLS: fl_open fails when the
 * loop has no context. Returns NULL with a message on stderr on failure.
 */
fl_loop *fl_loop_new(const char *cafile, const char *host);
void fl_loop_free(fl_loop *L);

/*
 * Opens a connection (asynchronously). bind_ip spreads source addresses
 * over 127.0.0.0/8 so more than one ephemeral port range is available.
 * user/pass may be NULL. The callbacks and ud must outlive the connection.
 * Returns NULL when the socket cannot even be started (errno kept).
 */
fl_conn *fl_open(fl_loop *L, const fl_broker *b, const char *bind_ip, const char *client_id,
                 const char *user, const char *pass, int keepalive, const fl_conn_cb *cb,
                 void *ud);

/* QoS 1 publish / subscribe; 0 or -1 when the connection is not usable. */
int fl_publish(fl_conn *c, const char *topic, const void *p, size_t n);
int fl_subscribe(fl_conn *c, const char *topic);

/* Adds this connection's counters into out (TCP counters read now). */
void fl_conn_bytes(fl_conn *c, fl_bytes *out);

/* Sends DISCONNECT, adds the final counters into out (may be NULL), frees. */
void fl_close(fl_conn *c, fl_bytes *out);

/* Runs the loop for at most timeout_ms (one epoll wait and its work). */
void fl_loop_run(fl_loop *L, int timeout_ms);

/* Open connections. */
size_t fl_loop_count(const fl_loop *L);

/* MQTT 5 framing of a QoS 1 PUBLISH of n bytes on topic, without PUBACK. */
size_t fl_publish_framing(size_t topic_len, size_t n);

/* Raises RLIMIT_NOFILE to its hard limit; returns the new soft limit. */
long fl_raise_fd_limit(void);

uint64_t fl_now_us(void);

/* Keep-alive of simulated clients: the longest MQTT allows (18 h), so that a
 * loop busy with other clients never has to send PINGREQs in time. */
#define FL_KEEPALIVE 65535

#endif
