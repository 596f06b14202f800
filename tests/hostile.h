/*
 * otakey-hostile: hostile MQTT clients against a running agent (see
 * tests/hostile_e2e.sh and docs/reliability.md, "Hostile clients").
 *
 * hostile_net.c: broker connections and a capture of what goes by.
 * hostile.c:     the attacks, one by one, each checked against the agent's
 *                reply and the audit log.
 * hostile_flood.c: many connections sending invalid claims.
 * hostile_hijack.c: share-group hijackers and an agent-id takeover loop.
 */
#ifndef OTK_HOSTILE_H
#define OTK_HOSTILE_H

#include <mosquitto.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "otakey/common.h"
#include "otakey/wire.h"

/* Where the agent broker is and how to reach it. */
typedef struct hx_broker {
    char host[128];
    int port;
    const char *cafile;
    const char *user, *password; /* credentials of a client with broker access (agent's) */
} hx_broker;

/* One message seen by the capture client. */
typedef struct hx_seen {
    char topic[80];
    uint8_t data[OTK_MSG_MAX_LEN];
    size_t len; /* bytes kept (a longer payload is cut to OTK_MSG_MAX_LEN) */
} hx_seen;

#define HX_CAPTURE_MAX 8192

/* Everything the capture client saw, in arrival order (mutex-protected). */
typedef struct hx_capture {
    pthread_mutex_t lock;
    hx_seen *msgs; /* HX_CAPTURE_MAX entries, allocated by hx_capture_start */
    size_t n;
    struct mosquitto *m;
    int subscribed; /* the SUBACK arrived (atomic) */
} hx_capture;

uint64_t hx_now_ms(void);
void hx_sleep_ms(unsigned ms);

/*
 * A connected client with its network thread running. user NULL:
 * anonymous (the broker's ACL then binds it to up/<client_id>). Returns
 * NULL with a message on stderr when the broker refuses or is unreachable.
 * The caller ends it with hx_close.
 */
struct mosquitto *hx_connect(const hx_broker *b, const char *client_id, const char *user,
                             const char *password, void *userdata);
void hx_close(struct mosquitto *m);

/* QoS 1 publish; 0 when queued. */
int hx_publish(struct mosquitto *m, const char *topic, const void *data, size_t len);

/*
 * Starts a client with the broker-access credentials subscribed to every
 * up and down topic: it sees what devices send and what the agent answers,
 * as an attacker with those credentials would. 0 on success.
 */
int hx_capture_start(hx_capture *c, const hx_broker *b);
void hx_capture_stop(hx_capture *c);

/* Number of messages seen so far (a mark for hx_capture_find). */
size_t hx_capture_mark(hx_capture *c);

/*
 * Waits up to timeout_ms for a message after mark on topic whose type is
 * type (0: any type but NOTIFY, which the agent sends on its own) and, if
 * version is not 0, whose version field is version. Copies it to out and
 * returns 1, or returns 0 on timeout.
 */
int hx_capture_find(hx_capture *c, size_t mark, const char *topic, uint8_t type, uint32_t version,
                    unsigned timeout_ms, hx_seen *out);

/* Flood: see hostile_flood.c; rate 0: as fast as the broker takes them. Returns the exit code. */
int hx_flood_main(const hx_broker *b, const uint8_t batch[8], unsigned conns, unsigned seconds,
                  unsigned inflight, unsigned rate);

/* Share-group hijackers and an agent-id takeover loop: see hostile_hijack.c. */
int hx_hijack_main(const hx_broker *b, unsigned conns, unsigned seconds, const char *takeover_id,
                   const char *group);

#endif
