/*
 * policy.h: who may connect and what each client may do, on the brokers of
 * an otakey deployment. The mosquitto plugin (mosquitto_plugin.c) asks these
 * functions at every CONNECT, PUBLISH, SUBSCRIBE and delivery; they hold no
 * state and do no I/O, so they are tested and fuzzed on their own.
 *
 * Three roles, one per listener (docs/security.md says which attack each
 * rule stops):
 *
 *  devices  the agent broker's device listener. Clients are anonymous; the
 *           MQTT client id must be a device id (32 lowercase hex digits), so
 *           no client here can take an agent's or a server's id. A device may
 *           publish only <root>/up/<its id> (not retained), and subscribe to
 *           and receive only <root>/down/<its id>, for each configured root.
 *           A client that names a user is refused (devices have none here).
 *  agents   the agent broker's listener for agents (and other servers).
 *           Authentication is the broker's (password file or client
 *           certificates); this role only authorises: each topic space
 *           (root) has one owner user, who alone may publish, subscribe
 *           (shared subscriptions included: "$share/<group>/" is stripped
 *           before the check) and receive under it. Anything else is denied.
 *  cloud    a cloud broker whose clients come from a password file: a user
 *           name of the form <device id>-<version> (the agent's naming) is
 *           accepted only with its device id as client id, which binds the
 *           credentials to the identity the ACL pattern devices/%c/# uses.
 *           The password check itself and the ACL stay the broker's.
 *           With plugin_opt_identity certificate, a devices listener takes
 *           devices that log in with a certificate set's certificate (the
 *           agent broker's second devices listener: require_certificate,
 *           use_identity_as_username, use_username_as_clientid): the user
 *           name is then the CN and must be the client id, a device id; and
 *           plugin_opt_crl names the clouds' CRLs (below). A device id
 *           connected there cannot be taken by an anonymous client on the
 *           other devices listener: the plugin's instances share that list.
 *  certs    a certificate cloud (agent config type = x509): devices log in
 *           with certificates, the CN (their device id) as user name
 *           (use_identity_as_username); the client id must be that device
 *           id, so that no device can take another's session. The plugin
 *           also reads the cloud's CRL (plugin_opt_crl, again at every
 *           reload): the broker checks it at the TLS handshake only, so a
 *           session opened before a certificate was revoked would live on;
 *           the plugin denies its next publish, subscription or delivery and
 *           disconnects it.
 */
#ifndef OTK_BROKER_POLICY_H
#define OTK_BROKER_POLICY_H

#include <stddef.h>

enum otk_bp_role { OTK_BP_DEVICES = 1, OTK_BP_AGENTS = 2, OTK_BP_CLOUD = 3, OTK_BP_CERTS = 4 };

/* A verdict: let the broker's own checks decide, allow, or deny. */
enum otk_bp_verdict { OTK_BP_DEFER = 0, OTK_BP_ALLOW = 1, OTK_BP_DENY = 2 };

enum otk_bp_access { OTK_BP_WRITE = 1, OTK_BP_READ = 2, OTK_BP_SUBSCRIBE = 3, OTK_BP_UNSUBSCRIBE = 4 };

/* Why a client was denied: the counters of the plugin's reports. */
enum otk_bp_reason {
    OTK_BP_R_USER = 0,      /* a user name where none is accepted */
    OTK_BP_R_CLIENT_ID = 1, /* a client id that is not (its credentials') device id */
    OTK_BP_R_PUBLISH = 2,   /* a publish outside the client's own topic (or retained) */
    OTK_BP_R_SUBSCRIBE = 3, /* a subscription outside it (shared ones included) */
    OTK_BP_R_READ = 4,      /* a delivery outside it */
    OTK_BP_R_REVOKED = 5,   /* a session whose certificate was revoked since it opened */
    OTK_BP_R_COUNT = 6
};

#define OTK_BP_MAX_SPACES 8
#define OTK_BP_NAME_MAX 63

typedef struct otk_bp_space {
    char root[OTK_BP_NAME_MAX + 1];  /* "otakey/v1": topics below root + "/" */
    char owner[OTK_BP_NAME_MAX + 1]; /* the user who owns it (agents role); "" in devices */
} otk_bp_space;

typedef struct otk_bp_config {
    int role; /* OTK_BP_*; 0 until set */
    otk_bp_space spaces[OTK_BP_MAX_SPACES];
    size_t n_spaces;
    char report_topic[128]; /* where aggregate refusal counts go ("" none) */
    char crl[512];          /* certs, identity certificate: CRL files, space-separated */
    int cert_identity;      /* devices: plugin_opt_identity certificate */
    unsigned report_ms;     /* at most one report per period */
} otk_bp_config;

/*
 * Applies one plugin option (key without "plugin_opt_"):
 *   role    devices | agents | cloud | certs
 *   spaces  "ROOT[=OWNER] ..." (devices: roots; agents: ROOT=OWNER each)
 *   crl     PATH [PATH...] (certs: required; devices with identity certificate)
 *   identity  certificate (devices: the certificate's CN is the user name)
 *   report_topic  TOPIC      report_ms  N (default 10000)
 * Returns 0, or -1 with err set.
 */
int otk_bp_option(otk_bp_config *c, const char *key, const char *value, char *err, size_t err_size);

/* After every option: 0 when the configuration is complete and consistent. */
int otk_bp_check(const otk_bp_config *c, char *err, size_t err_size);

/* 32 lowercase hex digits. */
int otk_bp_is_device_id(const char *s);

/* CONNECT: a verdict; *reason is set on OTK_BP_DENY. username may be NULL. */
int otk_bp_connect(const otk_bp_config *c, const char *username, const char *client_id,
                   int *reason);

/* An ACL check (access OTK_BP_*): a verdict; *reason is set on OTK_BP_DENY. */
int otk_bp_acl(const otk_bp_config *c, const char *username, const char *client_id, int access,
               const char *topic, int retain, int *reason);

/*
 * Certificate serial numbers (certs role): big-endian magnitude as in the
 * DER INTEGER, without leading zero octets. A list sorted once, then
 * searched at each check.
 */
#define OTK_BP_SERIAL_MAX 20 /* RFC 5280 4.1.2.2 */
typedef struct otk_bp_serial {
    unsigned char len;
    unsigned char b[OTK_BP_SERIAL_MAX];
} otk_bp_serial;
void otk_bp_serials_sort(otk_bp_serial *s, size_t n);
int otk_bp_revoked(const otk_bp_serial *sorted, size_t n, const unsigned char *sn, size_t len);

/*
 * The sessions of a certs listener: client id (the device id) -> serial of
 * the certificate it logged in with, so that a CRL reload can end the
 * sessions it revokes. Linear probing; grows. All-zero is an empty table.
 */
typedef struct otk_bp_session {
    char id[33];
    otk_bp_serial sn;
} otk_bp_session;
typedef struct otk_bp_sessions {
    otk_bp_session *t;
    size_t cap, n; /* cap: 0 or a power of two */
} otk_bp_sessions;
/* 0, or -1 (no memory; the session is then not tracked). id: a device id. */
int otk_bp_sessions_put(otk_bp_sessions *s, const char *id, const otk_bp_serial *sn);
/* Forgets id's session; with sn, only if it logged in with that serial (the
 * client that ends may be one whose session a newer login took over). */
void otk_bp_sessions_del(otk_bp_sessions *s, const char *id, const otk_bp_serial *sn);
int otk_bp_sessions_has(const otk_bp_sessions *s, const char *id);
/* Writes up to max ids of sessions whose serial is in the sorted list; returns how many. */
size_t otk_bp_sessions_revoked(const otk_bp_sessions *s, const otk_bp_serial *sorted, size_t n,
                               char (*ids)[33], size_t max);
void otk_bp_sessions_free(otk_bp_sessions *s);

/* Writes the JSON report of counts[OTK_BP_R_COUNT] over period_ms. Returns its length. */
size_t otk_bp_report(const otk_bp_config *c, const unsigned long long *counts,
                     unsigned long long period_ms, char *out, size_t out_size);

#endif
