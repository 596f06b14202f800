/*
 * x509cloud.h: the cloud adapter for certificate clouds (docs/protocol.md
 * §11; docs/operations.md, "type = x509"): a broker that authenticates
 * devices by TLS client certificates (mosquitto: require_certificate,
 * use_identity_as_username, an ACL on %u) needs no per-device state, only
 * the issuing CA and a certificate revocation list.
 *
 *   issue_cert -> a certificate for the device's key: subject
 *                 CN=<hex(device id)>, serial 128 random bits (unique
 *                 without shared state, so several agents may issue),
 *                 validity validity_days from now (backdated 5 minutes),
 *                 basicConstraints CA:FALSE, keyUsage digitalSignature,
 *                 extendedKeyUsage clientAuth, and its CRL distribution point
 *                 when the CRL is in shares (below); signed by the CA's key;
 *   remove     -> the serial is appended to the revocation queue
 *                 "<crl_file>.queue" (0600) and queued for the CRL: an agent
 *                 that crashes before the CRL is written loses nothing (the
 *                 next flush, of this agent or another, reads the queue);
 *   flush      -> under an flock on "<crl_file>.lock": the CRL on disk read
 *                 back, the queued serials and the queue file's added, the
 *                 queue file emptied once the CRL is written, entries older than the
 *                 longest validity dropped (their certificates expired),
 *                 the shares with news signed, written atomically (0644: a
 *                 CRL is public),
 *                 SIGHUP to the broker, which reloads it.
 * The pin given with each certificate is the SHA-256 of the DER of the CA
 * that signed the cloud's server certificate (server_ca).
 */
#ifndef OTAKEY_X509CLOUD_H
#define OTAKEY_X509CLOUD_H

#include "otakey/agent.h"

#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct otk_x509_cloud {
    uint32_t cloud_id;
    char ca_cert[256];      /* the issuing CA's certificate (PEM) */
    char ca_key[256];       /* its private key: a PEM file (mode 0600), or a PKCS#11 URI
                             * ("pkcs11:token=...;object=...") of a key in a token */
    char pkcs11_module[256];   /* the token's PKCS#11 library (a URI ca_key) */
    char pkcs11_pin_file[256]; /* the token's user PIN (mode 0600) */
    char crl_file[256];     /* the broker's crlfile */
    char pid_file[256];     /* the broker's pid, for SIGHUP ("" none) */
    char server_ca[256];    /* the CA of the cloud's server certificate ("" no pin) */
    unsigned validity_days; /* device certificates' lifetime (default 30) */
    unsigned crl_shares;    /* the CRL's shares, 1 to OTK_X509_CRL_SHARES_MAX (0: the default, 1) */
} otk_x509_cloud;

/*
 * The CRL in shares: with crl_shares > 1 every certificate names one share
 * (a CRL distribution point, "urn:otakey:crl:<share>/<shares>", chosen by
 * its serial) and the file holds one CRL per share, each with that name as
 * its issuing distribution point. A TLS login checks one share, not the
 * whole list (OpenSSL verifies the signature of the CRL it checks, over
 * all its entries, at every login); a flush signs again only the shares
 * with news. The number is fixed for a cloud once it issued certificates.
 * The default is one CRL, as before shares existed (a cloud whose
 * certificates name no share keeps working); new clouds set 16
 * (docs/operations.md), 64 beyond a million certificates.
 */
#define OTK_X509_CRL_SHARES 1
#define OTK_X509_CRL_SHARES_MAX 256

typedef struct otk_x509 otk_x509;

/* Loads the CA (its key file must not be readable by others). err says why not. */
OTK_CHECK_RETURN otk_status otk_x509_open(const otk_x509_cloud *cfg, otk_x509 **out, char *err,
                                          size_t err_size);
void otk_x509_close(otk_x509 *x);

/* The otk_cloud_adapter functions (ctx is the otk_x509). */
otk_status otk_x509_issue_cert(void *ctx, const uint8_t device_id[16], uint32_t cloud_id,
                               const uint8_t dpub[OTK_PUB_LEN], uint8_t *der, size_t der_size,
                               size_t *der_len, char serial[OTK_USER_MAX + 1],
                               uint8_t ca_pin[OTK_PIN_LEN]);
otk_status otk_x509_remove(void *ctx, uint32_t cloud_id, const char *serial);

/* A device certificate for a given serial (16 octets, top bit clear, not
 * zero at the top) and issuing time: from the CA's template, or (openssl
 * set, or when the template does not fit) built by OpenSSL; the two are the
 * same certificate but for the signature's randomness. For tests. */
otk_status otk_x509_issue_at(otk_x509 *x, const uint8_t device_id[16], const uint8_t dpub[OTK_PUB_LEN],
                             const uint8_t sn[16], time_t now, int openssl, uint8_t *der,
                             size_t der_size, size_t *der_len);
/* Whether the CA's template was made (for tests). */
int otk_x509_templated(const otk_x509 *x);

/* Makes the revocation queue file durable (fdatasync; before the registry
 * commits the updates whose certificates it retires). */
OTK_CHECK_RETURN otk_status otk_x509_sync(otk_x509 *x);

/* Every share of the CRL signed again (at start, and daily: a broker
 * refuses a CRL past its next update), with the queued revocations. */
OTK_CHECK_RETURN otk_status otk_x509_refresh(otk_x509 *x);

/* Revocations queued and not yet in the CRL. */
size_t otk_x509_pending(const otk_x509 *x);

/* Writes the CRL with every queued revocation and signals the broker. */
OTK_CHECK_RETURN otk_status otk_x509_flush(otk_x509 *x);

/* Entries in the CRL as of the last flush (for tests and logs). */
size_t otk_x509_crl_entries(const otk_x509 *x);

#ifdef __cplusplus
}
#endif
#endif
