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
 */
#ifndef OTK_BROKER_POLICY_H
#define OTK_BROKER_POLICY_H

#include <stddef.h>

enum otk_bp_role { OTK_BP_DEVICES = 1, OTK_BP_AGENTS = 2, OTK_BP_CLOUD = 3 };

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
    OTK_BP_R_COUNT = 5
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
    unsigned report_ms;     /* at most one report per period */
} otk_bp_config;

/*
 * Applies one plugin option (key without "plugin_opt_"):
 *   role    devices | agents | cloud
 *   spaces  "ROOT[=OWNER] ..." (devices: roots; agents: ROOT=OWNER each)
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

/* Writes the JSON report of counts[OTK_BP_R_COUNT] over period_ms. Returns its length. */
size_t otk_bp_report(const otk_bp_config *c, const unsigned long long *counts,
                     unsigned long long period_ms, char *out, size_t out_size);

#endif
