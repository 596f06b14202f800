/*
 * Cloud logins for Linux hosts, shared by the agent (its password-file
 * clouds' probe) and the POSIX device port (the proof of a staged set,
 * docs/protocol.md §7.3): a real MQTT 5 CONNECT over TLS with libmosquitto,
 * and the OpenSSL context of a certificate set.
 */
#ifndef OTK_CLOUD_LOGIN_H
#define OTK_CLOUD_LOGIN_H

#include <stdio.h>

#include "otakey/device.h"

/*
 * Proves a cloud record: MQTT 5 CONNECT over TLS (cafile; plain TCP when
 * the record has no TLS flag) with its username and secret, client id
 * client_id. OTK_PROOF_OK on CONNACK success, OTK_PROOF_REFUSED when the
 * broker refuses the credentials, OTK_PROOF_UNREACHABLE otherwise.
 */
otk_proof otk_mqtt_prove(const otk_cloud *c, const char *cafile, const char *client_id,
                         unsigned timeout_ms);

/*
 * Version 2 certificate sets: an OpenSSL client context (SSL_CTX *, as
 * libmosquitto's MOSQ_OPT_SSL_CTX takes it) that presents the device
 * certificate der with its key priv (from the key partition, never from a
 * file), and verifies the server against cafile, the name or address host
 * and, unless it is all zero, the set's CA pin. NULL when any of it fails
 * (no fallback). The caller frees it with SSL_CTX_free.
 */
void *otk_posix_cert_ctx(const char *cafile, const char *host, const uint8_t *der,
                         size_t der_len, const uint8_t priv[OTK_PRIV_LEN],
                         const uint8_t pin[OTK_PIN_LEN]);

/* A certificate set as PEM (certificate, private key): 0, or -1. */
int otk_posix_cert_pem(const uint8_t *der, size_t der_len, const uint8_t priv[OTK_PRIV_LEN],
                       FILE *cert_out, FILE *key_out);


/* Whether the server of a connection made with ctx refused our certificate (a TLS alert). */
int otk_posix_cert_refused(const void *ctx);

/*
 * Proves a certificate set: MQTT 5 CONNECT over TLS with the device
 * certificate (client id client_id, no user name); results as
 * otk_mqtt_prove (a refused certificate fails the TLS handshake or the
 * CONNACK: OTK_PROOF_REFUSED).
 */
otk_proof otk_mqtt_prove_cert(const otk_cloud *c, const char *cafile, const char *client_id,
                              const uint8_t *der, size_t der_len, const uint8_t priv[OTK_PRIV_LEN],
                              const uint8_t pin[OTK_PIN_LEN], unsigned timeout_ms);

#endif
