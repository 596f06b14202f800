/*
 * otakey-agent configuration: an INI file (docs/operations.md lists every
 * key). Unknown sections or keys and bad values are errors that name the
 * line, so a typo never silently falls back to a default.
 */
#include "agent_config.h"

#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct parse_ctx {
    otk_agentd_config *cfg;
    char *err;
    size_t err_size;
    int failed;
    int tcp_keys; /* a key of the broker's TCP link was given (not with broker_socket) */
} parse_ctx;

static int fail(parse_ctx *p, const char *section, const char *key, const char *why)
{
    if (!p->failed)
        snprintf(p->err, p->err_size, "[%s] %s: %s", section, key, why);
    p->failed = 1;
    return 0;
}

static int copy(parse_ctx *p, const char *s, const char *k, char *dst, size_t n, const char *v)
{
    if (strlen(v) >= n)
        return fail(p, s, k, "value too long");
    strcpy(dst, v);
    return 1;
}

static int number(parse_ctx *p, const char *s, const char *k, const char *v, long lo, long hi,
                  long *out)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (*v == '\0' || *end != '\0' || x < lo || x > hi) {
        char why[96];
        snprintf(why, sizeof why, "'%s' is not a number in [%ld, %ld]", v, lo, hi);
        return fail(p, s, k, why);
    }
    *out = x;
    return 1;
}

/* [agent] ratelimit_* keys: admission control (docs/operations.md, "Rate limits"). */
static int on_ratelimit(parse_ctx *p, const char *s, const char *k, const char *v)
{
    otk_rl_config *r = &p->cfg->ratelimit;
    long x;
    if (!strcmp(k, "ratelimit_client_rate"))
        return number(p, s, k, v, 0, 1000000, &x) && (r->client_rate = (unsigned)x, 1);
    if (!strcmp(k, "ratelimit_client_burst"))
        return number(p, s, k, v, 1, 1000000, &x) && (r->client_burst = (unsigned)x, 1);
    if (!strcmp(k, "ratelimit_refusal_rate"))
        return number(p, s, k, v, 0, 1000000, &x) && (r->refusal_rate = (unsigned)x, 1);
    if (!strcmp(k, "ratelimit_refusal_burst"))
        return number(p, s, k, v, 1, 1000000, &x) && (r->refusal_burst = (unsigned)x, 1);
    if (!strcmp(k, "ratelimit_report_ms"))
        return number(p, s, k, v, 100, 86400000, &x) && (r->report_ms = (unsigned)x, 1);
    if (!strcmp(k, "ratelimit_clients")) {
        if (!number(p, s, k, v, 64, 1L << 24, &x))
            return 0;
        if (x & (x - 1))
            return fail(p, s, k, "must be a power of two");
        r->clients = (unsigned)x;
        return 1;
    }
    return fail(p, s, k, "unknown key");
}

static int on_agent(parse_ctx *p, const char *s, const char *k, const char *v)
{
    otk_agentd_config *c = p->cfg;
    long x;
    if (!strcmp(k, "database"))
        return copy(p, s, k, c->database, sizeof c->database, v);
    if (!strcmp(k, "signing_key"))
        return copy(p, s, k, c->signing_key, sizeof c->signing_key, v);
    if (!strcmp(k, "pkcs11_module"))
        return copy(p, s, k, c->pkcs11_module, sizeof c->pkcs11_module, v);
    if (!strcmp(k, "pkcs11_pin_file"))
        return copy(p, s, k, c->pkcs11_pin_file, sizeof c->pkcs11_pin_file, v);
    if (!strcmp(k, "broker_socket")) {
        if (v[0] != '/')
            return fail(p, s, k, "must be an absolute path");
        return copy(p, s, k, c->broker_socket, sizeof c->broker_socket, v);
    }
    if (!strcmp(k, "broker_host") || !strcmp(k, "broker_port") || !strcmp(k, "tls") ||
        !strcmp(k, "cafile") || !strcmp(k, "certfile") || !strcmp(k, "keyfile"))
        p->tcp_keys = 1;
    if (!strcmp(k, "broker_host"))
        return copy(p, s, k, c->broker_host, sizeof c->broker_host, v);
    if (!strcmp(k, "broker_port"))
        return number(p, s, k, v, 1, 65535, &x) && (c->broker_port = (uint16_t)x, 1);
    if (!strcmp(k, "tls"))
        return number(p, s, k, v, 0, 1, &x) && (c->tls = (int)x, 1);
    if (!strcmp(k, "cafile"))
        return copy(p, s, k, c->cafile, sizeof c->cafile, v);
    if (!strcmp(k, "certfile"))
        return copy(p, s, k, c->certfile, sizeof c->certfile, v);
    if (!strcmp(k, "keyfile"))
        return copy(p, s, k, c->keyfile, sizeof c->keyfile, v);
    if (!strcmp(k, "broker_report_topic")) {
        if (strchr(v, '+') || strchr(v, '#'))
            return fail(p, s, k, "must be a topic name (no wildcards)");
        return copy(p, s, k, c->report_topic, sizeof c->report_topic, v);
    }
    if (!strcmp(k, "username"))
        return copy(p, s, k, c->username, sizeof c->username, v);
    if (!strcmp(k, "password"))
        return copy(p, s, k, c->password, sizeof c->password, v);
    if (!strcmp(k, "client_id"))
        return copy(p, s, k, c->client_id, sizeof c->client_id, v);
    if (!strcmp(k, "share_group"))
        return copy(p, s, k, c->share_group, sizeof c->share_group, v);
    if (!strcmp(k, "claim_cloud"))
        return number(p, s, k, v, 1, 0x7fffffff, &x) && (c->claim_cloud = (uint32_t)x, 1);
    if (!strcmp(k, "devices_crl_file"))
        return copy(p, s, k, c->devices_crl_file, sizeof c->devices_crl_file, v);
    if (!strcmp(k, "broker_pid_file"))
        return copy(p, s, k, c->broker_pid_file, sizeof c->broker_pid_file, v);
    if (!strcmp(k, "claim_cloud_v1"))
        return number(p, s, k, v, 1, 0x7fffffff, &x) && (c->claim_cloud_v1 = (uint32_t)x, 1);
    if (!strcmp(k, "notify_rate"))
        return number(p, s, k, v, 1, 100000, &x) && (c->notify_rate = (unsigned)x, 1);
    if (!strcmp(k, "notify_resend_ms"))
        return number(p, s, k, v, 100, 86400000, &x) && (c->notify_resend_ms = (unsigned)x, 1);
    if (!strcmp(k, "notify_asleep_ms"))
        return number(p, s, k, v, 100, 86400000, &x) && (c->notify_asleep_ms = (unsigned)x, 1);
    if (!strncmp(k, "ratelimit_", 10))
        return on_ratelimit(p, s, k, v);
    if (!strcmp(k, "log_format")) {
        if (strcmp(v, "text") && strcmp(v, "json"))
            return fail(p, s, k, "expected text or json");
        c->log_json = !strcmp(v, "json");
        return 1;
    }
    if (!strcmp(k, "log_level")) {
        if (!strcmp(v, "error"))
            c->log_level = 0;
        else if (!strcmp(v, "warn"))
            c->log_level = 1;
        else if (!strcmp(v, "info"))
            c->log_level = 2;
        else if (!strcmp(v, "debug"))
            c->log_level = 3;
        else
            return fail(p, s, k, "must be error, warn, info or debug");
        return 1;
    }
    return fail(p, s, k, "unknown key");
}

static int on_cloud(parse_ctx *p, const char *s, const char *k, const char *v)
{
    otk_agentd_config *c = p->cfg;
    long id, x;
    size_t i;
    otk_cloud_endpoint *ep = NULL;
    otk_dynsec_cloud *ad = NULL;
    if (!number(p, s, "section", s + 6, 1, 0x7fffffff, &id))
        return 0;
    for (i = 0; i < c->n_clouds; i++)
        if (c->clouds[i].cloud_id == (uint32_t)id)
            break;
    if (i == c->n_clouds) {
        if (c->n_clouds == OTK_AGENT_MAX_CLOUDS)
            return fail(p, s, k, "too many clouds");
        c->n_clouds++;
        c->clouds[i].cloud_id = (uint32_t)id;
        c->admin[i].cloud_id = (uint32_t)id;
        c->pwfile[i].cloud_id = (uint32_t)id;
        c->x509[i].cloud_id = (uint32_t)id;
        c->clouds[i].flags = OTK_CLOUD_FLAG_TLS;
        c->admin_tls[i] = -1;
    }
    ep = &c->clouds[i];
    ad = &c->admin[i];
    if (!strcmp(k, "host"))
        return copy(p, s, k, ep->host, sizeof ep->host, v);
    if (!strcmp(k, "port"))
        return number(p, s, k, v, 1, 65535, &x) && (ep->port = (uint16_t)x, 1);
    if (!strcmp(k, "tls"))
        return number(p, s, k, v, 0, 1, &x) && (ep->flags = x ? OTK_CLOUD_FLAG_TLS : 0, 1);
    if (!strcmp(k, "admin_host"))
        return copy(p, s, k, ad->host, sizeof ad->host, v);
    if (!strcmp(k, "admin_port"))
        return number(p, s, k, v, 1, 65535, &x) && (ad->port = (uint16_t)x, 1);
    if (!strcmp(k, "admin_tls"))
        return number(p, s, k, v, 0, 1, &x) && (c->admin_tls[i] = (int)x, 1);
    if (!strcmp(k, "admin_cafile"))
        return copy(p, s, k, ad->cafile, sizeof ad->cafile, v);
    if (!strcmp(k, "admin_user"))
        return copy(p, s, k, ad->admin_user, sizeof ad->admin_user, v);
    if (!strcmp(k, "admin_password"))
        return copy(p, s, k, ad->admin_password, sizeof ad->admin_password, v);
    if (!strcmp(k, "type")) {
        if (!strcmp(v, "dynsec"))
            c->cloud_type[i] = OTK_CLOUD_DYNSEC;
        else if (!strcmp(v, "passwd"))
            c->cloud_type[i] = OTK_CLOUD_PWFILE;
        else if (!strcmp(v, "x509"))
            c->cloud_type[i] = OTK_CLOUD_X509;
        else
            return fail(p, s, k, "must be dynsec, passwd or x509");
        return 1;
    }
    /* type = x509: the issuing CA, the CRL the broker loads, the server's CA (pin) */
    if (!strcmp(k, "ca_cert"))
        return copy(p, s, k, c->x509[i].ca_cert, sizeof c->x509[i].ca_cert, v);
    if (!strcmp(k, "ca_key"))
        return copy(p, s, k, c->x509[i].ca_key, sizeof c->x509[i].ca_key, v);
    if (!strcmp(k, "pkcs11_module"))
        return copy(p, s, k, c->x509[i].pkcs11_module, sizeof c->x509[i].pkcs11_module, v);
    if (!strcmp(k, "pkcs11_pin_file"))
        return copy(p, s, k, c->x509[i].pkcs11_pin_file, sizeof c->x509[i].pkcs11_pin_file, v);
    if (!strcmp(k, "crl_file"))
        return copy(p, s, k, c->x509[i].crl_file, sizeof c->x509[i].crl_file, v);
    if (!strcmp(k, "server_ca"))
        return copy(p, s, k, c->x509[i].server_ca, sizeof c->x509[i].server_ca, v);
    if (!strcmp(k, "validity_days"))
        return number(p, s, k, v, 1, 3650, &x) && (c->x509[i].validity_days = (unsigned)x, 1);
    if (!strcmp(k, "crl_shares"))
        return number(p, s, k, v, 1, OTK_X509_CRL_SHARES_MAX, &x) &&
               (c->x509[i].crl_shares = (unsigned)x, 1);
    if (!strcmp(k, "password_file"))
        return copy(p, s, k, c->pwfile[i].password_file, sizeof c->pwfile[i].password_file, v);
    if (!strcmp(k, "acl_file"))
        return copy(p, s, k, c->pwfile[i].acl_file, sizeof c->pwfile[i].acl_file, v);
    if (!strcmp(k, "pid_file"))
        return copy(p, s, k, c->pwfile[i].pid_file, sizeof c->pwfile[i].pid_file, v) &&
               copy(p, s, k, c->x509[i].pid_file, sizeof c->x509[i].pid_file, v);
    return fail(p, s, k, "unknown key");
}

/* [api]: the HTTP API (docs/api.md). */
static int on_api(parse_ctx *p, const char *s, const char *k, const char *v)
{
    otk_agentd_config *c = p->cfg;
    long x;
    if (!strcmp(k, "listen"))
        return copy(p, s, k, c->api_listen, sizeof c->api_listen, v);
    if (!strcmp(k, "tls"))
        return number(p, s, k, v, 0, 1, &x) && (c->api_tls = (int)x, 1);
    if (!strcmp(k, "certfile"))
        return copy(p, s, k, c->api_certfile, sizeof c->api_certfile, v);
    if (!strcmp(k, "keyfile"))
        return copy(p, s, k, c->api_keyfile, sizeof c->api_keyfile, v);
    if (!strcmp(k, "tokens"))
        return copy(p, s, k, c->api_tokens, sizeof c->api_tokens, v);
    return fail(p, s, k, "unknown key (expected listen, tls, certfile, keyfile, tokens)");
}

static int handler(void *user, const char *section, const char *key, const char *value)
{
    parse_ctx *p = user;
    if (p->failed)
        return 0;
    if (!strcmp(section, "agent"))
        return on_agent(p, section, key, value);
    if (!strncmp(section, "cloud.", 6))
        return on_cloud(p, section, key, value);
    if (!strcmp(section, "api"))
        return on_api(p, section, key, value);
    return fail(p, section, key, "unknown section (expected [agent], [cloud.N] or [api])");
}

int otk_agentd_config_load(const char *path, otk_agentd_config *cfg, char *err, size_t err_size)
{
    parse_ctx p;
    size_t i;
    int line;
    memset(cfg, 0, sizeof *cfg);
    strcpy(cfg->client_id, "otakey-agent");
    strcpy(cfg->share_group, "otakey");
    strcpy(cfg->broker_host, "127.0.0.1");
    cfg->broker_port = 8883;
    cfg->tls = 1;
    strcpy(cfg->report_topic, "otakey/v1/broker/refused");
    cfg->log_level = 2;
    cfg->notify_rate = 200;
    cfg->notify_resend_ms = 30000;
    cfg->notify_asleep_ms = 600000;
    cfg->api_tls = 1;
    otk_rl_defaults(&cfg->ratelimit);
    p.cfg = cfg;
    p.err = err;
    p.err_size = err_size;
    p.failed = 0;
    p.tcp_keys = 0;
    line = ini_parse(path, handler, &p);
    if (line == -1) {
        snprintf(err, err_size, "cannot open config file '%s'", path);
        return -1;
    }
    if (line != 0) {
        char why[256];
        snprintf(why, sizeof why, "%s", p.failed ? err : "syntax error");
        snprintf(err, err_size, "%s:%d: %s", path, line, why);
        return -1;
    }
    if (!cfg->database[0] || !cfg->signing_key[0]) {
        snprintf(err, err_size, "%s: [agent] database and signing_key are required", path);
        return -1;
    }
    if (cfg->n_clouds == 0) {
        snprintf(err, err_size, "%s: at least one [cloud.N] section is required", path);
        return -1;
    }
    /* A broker on this host through its Unix socket: the socket's file
     * permissions and the password guard it; no TLS (docs/operations.md). */
    if (cfg->broker_socket[0]) {
        if (p.tcp_keys) {
            snprintf(err, err_size, "%s: [agent] broker_socket takes no broker_host, broker_port, "
                     "tls, cafile, certfile or keyfile (those are for a TCP broker)", path);
            return -1;
        }
        cfg->tls = 0;
        snprintf(cfg->broker_where, sizeof cfg->broker_where, "unix:%s", cfg->broker_socket);
    } else {
        snprintf(cfg->broker_where, sizeof cfg->broker_where, "%s:%u", cfg->broker_host,
                 (unsigned)cfg->broker_port);
    }
    /* TLS fails closed: no CA, no connection (plain TCP only when asked). */
    if (cfg->tls && !cfg->cafile[0]) {
        snprintf(err, err_size, "%s: [agent] cafile is required for TLS to the agent broker "
                 "(tls = 0 for plain TCP)", path);
        return -1;
    }
    if (!cfg->certfile[0] != !cfg->keyfile[0] || (!cfg->tls && cfg->certfile[0])) {
        snprintf(err, err_size, "%s: [agent] certfile and keyfile go together, with tls = 1", path);
        return -1;
    }
    if (cfg->claim_cloud == 0)
        cfg->claim_cloud = cfg->clouds[0].cloud_id;
    for (i = 0; i < cfg->n_clouds; i++) {
        otk_cloud_endpoint *ep = &cfg->clouds[i];
        otk_dynsec_cloud *ad = &cfg->admin[i];
        otk_pwfile_cloud *pf = &cfg->pwfile[i];
        if (cfg->cloud_type[i] == OTK_CLOUD_X509) {
            otk_x509_cloud *xc = &cfg->x509[i];
            if (!xc->ca_cert[0] || !xc->ca_key[0] || !xc->crl_file[0]) {
                snprintf(err, err_size, "%s: [cloud.%u] type = x509 needs ca_cert, ca_key and crl_file",
                         path, (unsigned)ep->cloud_id);
                return -1;
            }
            if (!(ep->flags & OTK_CLOUD_FLAG_TLS)) {
                snprintf(err, err_size, "%s: [cloud.%u] type = x509 is reached over TLS only (tls = 1)",
                         path, (unsigned)ep->cloud_id);
                return -1;
            }
            ep->kind = OTK_KIND_CERT;
            /* No admin connection: certificates need no broker state. */
            cfg->admin_tls[i] = 0;
        }
        if (!ep->host[0] || !ep->port ||
            (cfg->cloud_type[i] == OTK_CLOUD_DYNSEC && !ad->admin_user[0])) {
            snprintf(err, err_size, "%s: [cloud.%u] needs host, port%s", path,
                     (unsigned)ep->cloud_id,
                     cfg->cloud_type[i] == OTK_CLOUD_DYNSEC ? " and admin_user" : "");
            return -1;
        }
        if (cfg->cloud_type[i] == OTK_CLOUD_PWFILE &&
            (!pf->password_file[0] || !pf->acl_file[0] || !pf->pid_file[0])) {
            snprintf(err, err_size,
                     "%s: [cloud.%u] type = passwd needs password_file, acl_file and pid_file",
                     path, (unsigned)ep->cloud_id);
            return -1;
        }
        if (cfg->admin_tls[i] < 0)
            cfg->admin_tls[i] = (ep->flags & OTK_CLOUD_FLAG_TLS) != 0;
        ad->tls = (uint8_t)cfg->admin_tls[i];
        if (ad->tls && !ad->cafile[0]) {
            snprintf(err, err_size, "%s: [cloud.%u] admin_cafile is required: the agent reaches "
                     "this cloud over TLS (admin_tls = 0 for plain TCP)", path,
                     (unsigned)ep->cloud_id);
            return -1;
        }
        if (!ad->host[0])
            strcpy(ad->host, ep->host);
        if (!ad->port)
            ad->port = ep->port;
        /* The reload probe reaches the broker as the admin connection would. */
        snprintf(pf->host, sizeof pf->host, "%s", ad->host);
        pf->port = ad->port;
        snprintf(pf->cafile, sizeof pf->cafile, "%s", ad->cafile);
        pf->tls = ad->tls;
    }
    for (i = 0; i < cfg->n_clouds && cfg->clouds[i].cloud_id != cfg->claim_cloud; i++)
        ;
    if (i == cfg->n_clouds) {
        snprintf(err, err_size, "%s: claim_cloud %u has no [cloud.%u] section", path,
                 (unsigned)cfg->claim_cloud, (unsigned)cfg->claim_cloud);
        return -1;
    }
    if (cfg->claim_cloud_v1 == 0)
        return 0;
    for (i = 0; i < cfg->n_clouds && cfg->clouds[i].cloud_id != cfg->claim_cloud_v1; i++)
        ;
    if (i == cfg->n_clouds) {
        snprintf(err, err_size, "%s: claim_cloud_v1 %u has no [cloud.%u] section", path,
                 (unsigned)cfg->claim_cloud_v1, (unsigned)cfg->claim_cloud_v1);
        return -1;
    }
    if (cfg->cloud_type[i] == OTK_CLOUD_X509) {
        snprintf(err, err_size, "%s: claim_cloud_v1 %u is a certificate cloud: version 1 devices "
                 "take passwords only", path, (unsigned)cfg->claim_cloud_v1);
        return -1;
    }
    return 0;
}

FILE *otk_create_secret_file(const char *path, int exclusive)
{
    FILE *f;
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (exclusive ? O_EXCL : O_TRUNC),
                  0600);
    if (fd < 0)
        return NULL;
    /* An existing file keeps its mode through O_TRUNC: narrow it. */
    if (fchmod(fd, 0600) != 0 || (f = fdopen(fd, "w")) == NULL) {
        int e = errno;
        close(fd);
        errno = e;
        return NULL;
    }
    return f;
}

int otk_check_private_file(const char *path, char *err, size_t err_size)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(err, err_size, "cannot open '%s': %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, err_size, "'%s' is not a regular file", path);
        return -1;
    }
    if (st.st_mode & 077) {
        snprintf(err, err_size,
                 "'%s' is accessible by group or others (mode %04o): it holds a private key; "
                 "chmod 600 it",
                 path, (unsigned)(st.st_mode & 07777));
        return -1;
    }
    return 0;
}

int otk_read_hex_file(const char *path, uint8_t *out, size_t n, char *err, size_t err_size)
{
    char buf[1024];
    size_t len;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, err_size, "cannot open '%s'", path);
        return -1;
    }
    len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
        buf[--len] = '\0';
    if (otk_hex_decode(buf, out, n) != 0) {
        snprintf(err, err_size, "'%s' must hold %zu hex digits", path, 2 * n);
        return -1;
    }
    return 0;
}
