/*
 * dynsec.h: the cloud adapter for mosquitto brokers running the dynamic
 * security plugin. The agent keeps one admin MQTT connection per cloud
 * and manages device clients through $CONTROL/dynamic-security/v1:
 *
 *   create  -> createRole "otk-<id>" (publish/subscribe devices/<id>/#,
 *              nothing else) + createClient <user> with that role; an
 *              existing client is recreated as asked (idempotent);
 *   remove  -> deleteClient <user> ("not found" counts as done).
 *
 * Each client is created with its device id as client id ("clientid"), so
 * its credentials work only under that id: no device can log in under
 * another device's (or the admin's) id.
 *
 * Calls block until the broker answers or timeout_ms passes
 * (OTK_ERR_CLOUD). One request is in flight per cloud at a time. TLS fails
 * closed: a cloud with tls set and a CA file that cannot be loaded is an
 * error, never a plain-TCP connection.
 */
#ifndef OTAKEY_DYNSEC_H
#define OTAKEY_DYNSEC_H

#include "otakey/agent.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct otk_dynsec_cloud {
    uint32_t cloud_id;
    char host[OTK_HOST_MAX + 1]; /* admin connection; devices get cfg.clouds[] */
    uint16_t port;
    uint8_t tls;                 /* 1: TLS, verified against cafile (required then) */
    char cafile[256];
    char admin_user[64];
    char admin_password[128];
} otk_dynsec_cloud;

typedef struct otk_dynsec otk_dynsec;

/*
 * Connects to every cloud (waiting for each CONNACK up to timeout_ms).
 * On failure err names the cloud and the reason.
 */
OTK_CHECK_RETURN otk_status otk_dynsec_open(const otk_dynsec_cloud *clouds, size_t n,
                                            unsigned timeout_ms, otk_dynsec **out, char *err,
                                            size_t err_size);
void otk_dynsec_close(otk_dynsec *d);
void otk_dynsec_adapter(otk_dynsec *d, otk_cloud_adapter *out);

/* Topic prefix a device may use on its cloud: "devices/<32 hex>/". */
void otk_dynsec_topic_prefix(const uint8_t device_id[16], char out[48]);

/*
 * Parses one message from the broker's response topic (network input,
 * never trusted): {"responses":[{"correlationData":"<seq>-<k>",
 * "error":"..."}, ...]}. For every response of request `seq` with
 * 0 <= k < expected, writes its error text (truncated to 63 bytes, ""
 * for a success) to errors[k]; other entries are left as they were.
 * Returns how many responses were recorded (a repeated k counts again);
 * malformed JSON, a missing array or foreign responses give 0. Reads at
 * most len bytes of payload (no terminator needed); errors needs
 * `expected` entries. Allocates only while it runs.
 */
OTK_CHECK_RETURN int otk_dynsec_parse_responses(const char *payload, size_t len,
                                                unsigned long seq, int expected,
                                                char errors[][64]);

#ifdef __cplusplus
}
#endif
#endif
