/*
 * The agent's connection to its broker: a small MQTT 5 client made for a
 * server that handles many small messages a second (docs/operations.md,
 * "otakey-agent": the agent's broker connection).
 *
 * What it does differently from a general client library: one read(2) takes
 * in every packet the socket holds (a general client reads a packet's header
 * byte, its length and its body apart: three reads a packet), and what the
 * agent sends (its replies, the PUBACKs of what it read, its offers) is kept
 * in one buffer and written with one write(2) when the agent says so, so
 * that the broker is woken once for a batch rather than once a packet.
 *
 * The subset of MQTT 5 the agent needs: CONNECT (clean start, user name and
 * password, keep-alive), SUBSCRIBE, PUBLISH at QoS 0 and 1 both ways (QoS 1
 * sends within the broker's Receive Maximum; the rest wait in order),
 * PUBACK with its reason code (an offer's "no matching subscribers"),
 * PINGREQ, DISCONNECT. Over a Unix socket, TCP, or TLS over TCP (OpenSSL:
 * the broker's certificate checked against the CA and the host name, an
 * optional client certificate). Sans threads; the caller polls the socket.
 */
#ifndef OTK_MQTT_LINK_H
#define OTK_MQTT_LINK_H

#include <stddef.h>
#include <stdint.h>

/* A packet from the broker as otk_mqtt_parse reads it (pointers into its buffer). */
enum {
    OTK_MQTT_CONNACK = 2,
    OTK_MQTT_PUBLISH = 3,
    OTK_MQTT_PUBACK = 4,
    OTK_MQTT_SUBACK = 9,
    OTK_MQTT_UNSUBACK = 11,
    OTK_MQTT_PINGRESP = 13,
    OTK_MQTT_DISCONNECT = 14
};

#define OTK_MQTT_RC_NO_MATCHING_SUBSCRIBERS 0x10

typedef struct otk_mqtt_pkt {
    int type;
    int qos;     /* PUBLISH */
    uint16_t id; /* PUBLISH at QoS 1, PUBACK, SUBACK */
    int reason;  /* CONNACK, PUBACK, SUBACK (its first code), DISCONNECT; 0 when absent */
    const char *topic;
    size_t topic_len;
    const uint8_t *payload;
    size_t payload_len;
    uint32_t receive_max;  /* CONNACK: 65535 when absent */
    uint32_t max_packet;   /* CONNACK: 0 when absent (no limit) */
    long server_keepalive; /* CONNACK: -1 when absent */
    const char *reason_str; /* CONNACK, PUBACK, SUBACK, DISCONNECT: NULL when absent */
    size_t reason_str_len;
} otk_mqtt_pkt;

/*
 * Reads the packet at the start of buf (len bytes): 1 when whole (*used its
 * size, *p filled), 0 when more bytes are needed, -1 when malformed or not
 * one a broker sends to this client (a PUBLISH at QoS 2 or with a topic
 * alias, which the client never allows; packets over 1 MiB).
 */
int otk_mqtt_parse(const uint8_t *buf, size_t len, otk_mqtt_pkt *p, size_t *used);

/* A CONNACK's or DISCONNECT's reason code in words. */
const char *otk_mqtt_reason(int code);

typedef struct otk_link otk_link;

typedef struct otk_link_opts {
    const char *client_id;
    const char *username; /* NULL or "": none */
    const char *password;
    const char *socket_path; /* a Unix socket; else host and port */
    const char *host;
    int port;
    int tls; /* over TCP: cafile (required), certfile and keyfile (optional) */
    const char *cafile, *certfile, *keyfile;
    unsigned keepalive_s;
} otk_link_opts;

typedef struct otk_link_cb {
    /* The broker's answer to CONNECT: 0 accepted, else its reason code. */
    void (*connack)(void *user, int reason);
    /* A message (topic NUL-terminated; QoS 1 ones are acknowledged after this returns). */
    void (*message)(void *user, const char *topic, const uint8_t *payload, size_t len);
    /* The PUBACK of a QoS 1 publish: its id and reason code. */
    void (*puback)(void *user, uint16_t id, int reason);
    /* A SUBACK whose reason refuses the subscription (>= 0x80). */
    void (*refused)(void *user, const char *what, int reason);
} otk_link_cb;

/* A link with its settings checked (TLS files loaded); not connected. 0, or -1 with err. */
int otk_link_new(otk_link **l, const otk_link_opts *o, const otk_link_cb *cb, void *user, char *err,
                 size_t err_size);
/* Connects (a TLS handshake within timeout_ms) and sends CONNECT: 0, or -1 (otk_link_error).
 * Whatever an earlier connection had in flight or queued is dropped. */
int otk_link_connect(otk_link *l, unsigned timeout_ms);
/* The socket to poll (-1 when not connected) and whether to poll it for writing. */
int otk_link_fd(const otk_link *l);
int otk_link_want_write(const otk_link *l);
/* Reads what the socket holds and passes up to max_packets of the packets
 * to the callbacks: how many, or -1 when the connection failed or closed. */
int otk_link_read(otk_link *l, int max_packets);
/* Whether a whole packet, or TLS data, waits in the link's buffers. */
int otk_link_buffered(const otk_link *l);
/* Writes what is buffered (without blocking): 0, or -1 when the connection failed. */
int otk_link_flush(otk_link *l);
/* Keep-alive (now: a monotonic clock, ms): 0, or -1 when the broker stopped answering. */
int otk_link_tick(otk_link *l, uint64_t now_ms);
/* Queues a publish (sent at the next flush); its id for QoS 1 in *id. 0 or -1. */
int otk_link_publish(otk_link *l, const char *topic, const void *payload, size_t len, int qos,
                     uint16_t *id);
/* Queues a subscription. 0 or -1. */
int otk_link_subscribe(otk_link *l, const char *filter, int qos);
/* Sends DISCONNECT and closes the socket. */
void otk_link_disconnect(otk_link *l);
void otk_link_free(otk_link *l);
/* Why the last call failed. */
const char *otk_link_error(const otk_link *l);
/* How many QoS 1 publishes were dropped unacknowledged by connection losses. */
unsigned long otk_link_dropped(const otk_link *l);

#endif
