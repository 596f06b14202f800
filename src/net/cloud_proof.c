/* The proof of a staged key set: can the device log in to its cloud? */
#include <mosquitto.h>
#include <openssl/ssl.h>
#include <string.h>
#include <time.h>

#include "cloud_login.h"

typedef struct probe {
    int done;
    int rc;
} probe;

static void on_connect(struct mosquitto *m, void *ud, int rc, int flags, const mosquitto_property *p)
{
    probe *pr = ud;
    (void)m;
    (void)flags;
    (void)p;
    pr->done = 1;
    pr->rc = rc;
}

/* One CONNECT with m, prepared by the caller; waits for the CONNACK. */
static otk_proof connect_once(struct mosquitto *m, probe *pr, const otk_cloud *c, unsigned timeout_ms)
{
    struct timespec t0, t;
    otk_proof result = OTK_PROOF_UNREACHABLE;
    if (mosquitto_connect(m, c->host, c->port, 30) != MOSQ_ERR_SUCCESS)
        return result;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (!pr->done) {
        if (mosquitto_loop(m, 50, 1) != MOSQ_ERR_SUCCESS && !pr->done)
            break;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((unsigned long)((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000) >
            timeout_ms)
            break;
    }
    /* MQTT 5 refusals: 0x86 bad user name or password, 0x87 not authorised
     * (and their 3.1.1 counterparts 4 and 5). */
    if (pr->done)
        result = pr->rc == 0 ? OTK_PROOF_OK
                 : (pr->rc == 0x86 || pr->rc == 0x87 || pr->rc == 4 || pr->rc == 5) ? OTK_PROOF_REFUSED
                                                                                 : OTK_PROOF_UNREACHABLE;
    if (pr->done && pr->rc == 0)
        mosquitto_disconnect(m);
    return result;
}

static struct mosquitto *new_client(const char *client_id, probe *pr)
{
    static int ready;
    struct mosquitto *m;
    if (!ready) {
        mosquitto_lib_init();
        ready = 1;
    }
    m = mosquitto_new(client_id, true, pr);
    if (m == NULL)
        return NULL;
    /* Small request/response messages: no Nagle delay. */
    (void)mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_connect_v5_callback_set(m, on_connect);
    return m;
}

otk_proof otk_mqtt_prove(const otk_cloud *c, const char *cafile, const char *client_id,
                         unsigned timeout_ms)
{
    probe pr = {0, -1};
    otk_proof result = OTK_PROOF_UNREACHABLE;
    struct mosquitto *m = new_client(client_id, &pr);
    if (m == NULL)
        return result;
    if (mosquitto_username_pw_set(m, c->user, c->secret) == MOSQ_ERR_SUCCESS &&
        (!(c->flags & OTK_CLOUD_FLAG_TLS) ||
         mosquitto_tls_set(m, cafile, NULL, NULL, NULL, NULL) == MOSQ_ERR_SUCCESS))
        result = connect_once(m, &pr, c, timeout_ms);
    mosquitto_destroy(m);
    return result;
}

otk_proof otk_mqtt_prove_cert(const otk_cloud *c, const char *cafile, const char *client_id,
                              const uint8_t *der, size_t der_len, const uint8_t priv[OTK_PRIV_LEN],
                              const uint8_t pin[OTK_PIN_LEN], unsigned timeout_ms)
{
    probe pr = {0, -1};
    otk_proof result = OTK_PROOF_UNREACHABLE;
    void *ctx = otk_posix_cert_ctx(cafile, c->host, der, der_len, priv, pin);
    struct mosquitto *m = ctx ? new_client(client_id, &pr) : NULL;
    if (m != NULL && mosquitto_int_option(m, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0) == MOSQ_ERR_SUCCESS &&
        mosquitto_void_option(m, MOSQ_OPT_SSL_CTX, ctx) == MOSQ_ERR_SUCCESS) {
        result = connect_once(m, &pr, c, timeout_ms);
        /* A certificate the server refused ends the handshake with an alert. */
        if (result == OTK_PROOF_UNREACHABLE && otk_posix_cert_refused(ctx))
            result = OTK_PROOF_REFUSED;
    }
    if (m != NULL)
        mosquitto_destroy(m);
    SSL_CTX_free(ctx);
    return result;
}
