/* otakey-agent configuration (INI). */
#ifndef OTK_AGENT_CONFIG_H
#define OTK_AGENT_CONFIG_H

#include <stdio.h>

#include "otakey/agent.h"
#include "otakey/dynsec.h"
#include "otakey/pwfile.h"
#include "otakey/ratelimit.h"
#include "otakey/x509cloud.h"

/* How a cloud's clients are administered (docs/operations.md). */
enum { OTK_CLOUD_DYNSEC = 0, OTK_CLOUD_PWFILE = 1, OTK_CLOUD_X509 = 2 };

typedef struct otk_agentd_config {
    char database[256];
    char signing_key[256]; /* file: private scalar then public point, hex (192 digits);
                            * or a PKCS#11 URI of a P-256 key in a token */
    char pkcs11_module[256], pkcs11_pin_file[256]; /* the signing key's token */
    char broker_host[OTK_HOST_MAX + 1];
    uint16_t broker_port;
    int tls;               /* TLS to the agent broker (default 1; cafile required) */
    char broker_socket[108]; /* or a Unix socket of a broker on this host ("" none; no TLS) */
    char broker_where[300];  /* "HOST:PORT" or "unix:PATH", for messages */
    char cafile[256];
    char certfile[256];    /* optional client certificate and key for the broker */
    char keyfile[256];
    char report_topic[128]; /* the broker plugin's refusal reports ("" none) */
    char username[64];
    char password[128];
    char client_id[64];
    char share_group[32];
    uint32_t claim_cloud;
    uint32_t claim_cloud_v1; /* 0: claim_cloud */
    char devices_crl_file[256]; /* every certificate cloud's CRL, for the agent broker ("" none) */
    char broker_pid_file[256];  /* the agent broker, signalled when that file changes */
    int log_level; /* 0 error, 1 warn, 2 info, 3 debug */
    int log_json;  /* log_format = json: one JSON object per line */
    unsigned notify_rate;      /* NOTIFY messages per second at most */
    unsigned notify_resend_ms; /* offer a requested update again after this */
    unsigned notify_asleep_ms; /* ... or after this, when its broker found the device asleep */
    otk_rl_config ratelimit;   /* ratelimit_* keys (include/otakey/ratelimit.h) */
    otk_cloud_endpoint clouds[OTK_AGENT_MAX_CLOUDS]; /* what devices are told */
    otk_dynsec_cloud admin[OTK_AGENT_MAX_CLOUDS];    /* how the agent administers them */
    int cloud_type[OTK_AGENT_MAX_CLOUDS];            /* OTK_CLOUD_* */
    int admin_tls[OTK_AGENT_MAX_CLOUDS];             /* -1: as the cloud's tls */
    otk_pwfile_cloud pwfile[OTK_AGENT_MAX_CLOUDS];   /* files of a password-file cloud */
    otk_x509_cloud x509[OTK_AGENT_MAX_CLOUDS];       /* CA and CRL of a certificate cloud */
    size_t n_clouds;
    /* [api] (docs/api.md): listen "" = no API */
    char api_listen[128];
    int api_tls;
    char api_certfile[256], api_keyfile[256], api_tokens[256];
} otk_agentd_config;

/* 0 on success; -1 with err naming the file, line, section and key. */
int otk_agentd_config_load(const char *path, otk_agentd_config *cfg, char *err, size_t err_size);

/*
 * Creates path for a secret, mode 0600 whatever the umask (exclusive: fails
 * if it exists). NULL with errno set on failure.
 */
FILE *otk_create_secret_file(const char *path, int exclusive);

/*
 * 0 when path (a private key) is a regular file no group or other user may
 * read or write; -1 with err saying why (as ssh refuses such key files).
 */
int otk_check_private_file(const char *path, char *err, size_t err_size);

/* Reads exactly n bytes written as hex (whitespace at the end allowed). */
int otk_read_hex_file(const char *path, uint8_t *out, size_t n, char *err, size_t err_size);

#endif
