/* Broker access policy (policy.h). */
#include "policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEVICE_ID_LEN 32

static int set_err(char *err, size_t n, const char *fmt, const char *arg)
{
    if (err != NULL && n > 0)
        snprintf(err, n, fmt, arg);
    return -1;
}

int otk_bp_is_device_id(const char *s)
{
    size_t i;
    if (s == NULL)
        return 0;
    for (i = 0; i < DEVICE_ID_LEN; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return s[DEVICE_ID_LEN] == '\0';
}

/* A root: non-empty, no wildcard, no leading '$' or '/', no trailing '/'. */
static int root_ok(const char *r, size_t n)
{
    size_t i;
    if (n == 0 || n > OTK_BP_NAME_MAX || r[0] == '$' || r[0] == '/' || r[n - 1] == '/')
        return 0;
    for (i = 0; i < n; i++)
        if (r[i] == '+' || r[i] == '#' || r[i] == '=' || (unsigned char)r[i] <= ' ')
            return 0;
    return 1;
}

static int parse_spaces(otk_bp_config *c, const char *v, char *err, size_t err_size)
{
    const char *p = v;
    c->n_spaces = 0;
    while (*p) {
        const char *end, *eq;
        size_t rn, on;
        otk_bp_space *s;
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            break;
        end = p;
        while (*end && *end != ' ' && *end != '\t')
            end++;
        eq = memchr(p, '=', (size_t)(end - p));
        rn = (size_t)((eq ? eq : end) - p);
        on = eq ? (size_t)(end - eq - 1) : 0;
        if (c->n_spaces == OTK_BP_MAX_SPACES)
            return set_err(err, err_size, "spaces: more than %s", "8");
        if (!root_ok(p, rn) || on > OTK_BP_NAME_MAX || (eq && on == 0))
            return set_err(err, err_size, "spaces: bad entry in '%s' (ROOT or ROOT=OWNER)", v);
        s = &c->spaces[c->n_spaces++];
        memcpy(s->root, p, rn);
        s->root[rn] = '\0';
        if (eq)
            memcpy(s->owner, eq + 1, on);
        s->owner[on] = '\0';
        p = end;
    }
    return 0;
}

int otk_bp_option(otk_bp_config *c, const char *key, const char *value, char *err, size_t err_size)
{
    if (c == NULL || key == NULL || value == NULL)
        return set_err(err, err_size, "%s", "missing option");
    if (!strcmp(key, "role")) {
        if (!strcmp(value, "devices"))
            c->role = OTK_BP_DEVICES;
        else if (!strcmp(value, "agents"))
            c->role = OTK_BP_AGENTS;
        else if (!strcmp(value, "cloud"))
            c->role = OTK_BP_CLOUD;
        else
            return set_err(err, err_size, "role: '%s' is not devices, agents or cloud", value);
        return 0;
    }
    if (!strcmp(key, "spaces"))
        return parse_spaces(c, value, err, err_size);
    if (!strcmp(key, "report_topic")) {
        if (strlen(value) >= sizeof c->report_topic || strchr(value, '+') || strchr(value, '#'))
            return set_err(err, err_size, "report_topic: '%s' is no topic name", value);
        snprintf(c->report_topic, sizeof c->report_topic, "%s", value);
        return 0;
    }
    if (!strcmp(key, "report_ms")) {
        char *end;
        unsigned long ms = strtoul(value, &end, 10);
        if (end == value || *end || ms < 100 || ms > 3600000ul)
            return set_err(err, err_size, "report_ms: '%s' is not 100..3600000", value);
        c->report_ms = (unsigned)ms;
        return 0;
    }
    return set_err(err, err_size, "unknown option '%s'", key);
}

int otk_bp_check(const otk_bp_config *c, char *err, size_t err_size)
{
    size_t i;
    if (c->role == 0)
        return set_err(err, err_size, "%s", "plugin_opt_role is required (devices, agents or cloud)");
    if (c->role != OTK_BP_CLOUD && c->n_spaces == 0)
        return set_err(err, err_size, "%s", "plugin_opt_spaces is required for this role");
    for (i = 0; i < c->n_spaces; i++)
        if (c->role == OTK_BP_AGENTS && c->spaces[i].owner[0] == '\0')
            return set_err(err, err_size, "spaces: '%s' needs an owner (ROOT=OWNER)",
                           c->spaces[i].root);
    return 0;
}

static int deny(int *reason, int r)
{
    if (reason)
        *reason = r;
    return OTK_BP_DENY;
}

/* <device id>-<version>: the user names the agent gives device credentials. */
static int device_user(const char *u)
{
    size_t i, n;
    if (u == NULL || strlen(u) < DEVICE_ID_LEN + 2 || u[DEVICE_ID_LEN] != '-')
        return 0;
    for (i = 0; i < DEVICE_ID_LEN; i++)
        if (!((u[i] >= '0' && u[i] <= '9') || (u[i] >= 'a' && u[i] <= 'f')))
            return 0;
    n = strlen(u + DEVICE_ID_LEN + 1);
    if (n > 10)
        return 0;
    for (i = DEVICE_ID_LEN + 1; u[i]; i++)
        if (u[i] < '0' || u[i] > '9')
            return 0;
    return 1;
}

int otk_bp_connect(const otk_bp_config *c, const char *username, const char *client_id,
                   int *reason)
{
    switch (c->role) {
    case OTK_BP_DEVICES:
        if (username != NULL)
            return deny(reason, OTK_BP_R_USER);
        return otk_bp_is_device_id(client_id) ? OTK_BP_ALLOW : deny(reason, OTK_BP_R_CLIENT_ID);
    case OTK_BP_AGENTS:
        return username != NULL ? OTK_BP_DEFER : deny(reason, OTK_BP_R_USER);
    case OTK_BP_CLOUD:
        if (device_user(username) &&
            (client_id == NULL || strncmp(username, client_id, DEVICE_ID_LEN) != 0 ||
             client_id[DEVICE_ID_LEN] != '\0'))
            return deny(reason, OTK_BP_R_CLIENT_ID);
        return OTK_BP_DEFER;
    default:
        return deny(reason, OTK_BP_R_USER);
    }
}

/* topic == root "/" dir "/" id */
static int is_own(const char *topic, const char *root, const char *dir, const char *id)
{
    size_t rn = strlen(root), dn = strlen(dir);
    return strncmp(topic, root, rn) == 0 && topic[rn] == '/' && strncmp(topic + rn + 1, dir, dn) == 0 &&
           topic[rn + 1 + dn] == '/' && strcmp(topic + rn + 2 + dn, id) == 0;
}

static int device_acl(const otk_bp_config *c, const char *client_id, int access, const char *topic,
                      int retain, int *reason)
{
    size_t i;
    int r = access == OTK_BP_WRITE ? OTK_BP_R_PUBLISH
            : access == OTK_BP_READ ? OTK_BP_R_READ
                                    : OTK_BP_R_SUBSCRIBE;
    if (!otk_bp_is_device_id(client_id) || (access == OTK_BP_WRITE && retain))
        return deny(reason, r);
    for (i = 0; i < c->n_spaces; i++)
        if (is_own(topic, c->spaces[i].root, access == OTK_BP_WRITE ? "up" : "down", client_id))
            return OTK_BP_ALLOW;
    return deny(reason, r);
}

static int agent_acl(const otk_bp_config *c, const char *username, int access, const char *topic,
                     int *reason)
{
    size_t i;
    int r = access == OTK_BP_WRITE ? OTK_BP_R_PUBLISH
            : access == OTK_BP_READ ? OTK_BP_R_READ
                                    : OTK_BP_R_SUBSCRIBE;
    if (username == NULL)
        return deny(reason, r);
    if ((access == OTK_BP_SUBSCRIBE || access == OTK_BP_UNSUBSCRIBE) &&
        strncmp(topic, "$share/", 7) == 0) {
        const char *slash = strchr(topic + 7, '/');
        if (slash == NULL || slash == topic + 7)
            return deny(reason, r);
        topic = slash + 1;
    }
    for (i = 0; i < c->n_spaces; i++) {
        size_t rn = strlen(c->spaces[i].root);
        if (strncmp(topic, c->spaces[i].root, rn) == 0 && topic[rn] == '/')
            return strcmp(username, c->spaces[i].owner) == 0 ? OTK_BP_ALLOW : deny(reason, r);
    }
    return deny(reason, r);
}

int otk_bp_acl(const otk_bp_config *c, const char *username, const char *client_id, int access,
               const char *topic, int retain, int *reason)
{
    if (topic == NULL)
        return deny(reason, OTK_BP_R_PUBLISH);
    switch (c->role) {
    case OTK_BP_DEVICES:
        if (username != NULL)
            return deny(reason, OTK_BP_R_USER);
        return device_acl(c, client_id, access, topic, retain, reason);
    case OTK_BP_AGENTS:
        return agent_acl(c, username, access, topic, reason);
    case OTK_BP_CLOUD:
        return OTK_BP_DEFER;
    default:
        return deny(reason, OTK_BP_R_USER);
    }
}

size_t otk_bp_report(const otk_bp_config *c, const unsigned long long *counts,
                     unsigned long long period_ms, char *out, size_t out_size)
{
    static const char *const role[] = {"", "devices", "agents", "cloud"};
    int n = snprintf(out, out_size,
                     "{\"listener\":\"%s\",\"period_ms\":%llu,\"connect_user\":%llu,"
                     "\"connect_client_id\":%llu,\"publish\":%llu,\"subscribe\":%llu,"
                     "\"read\":%llu}",
                     role[c->role >= 1 && c->role <= 3 ? c->role : 0], period_ms,
                     counts[OTK_BP_R_USER], counts[OTK_BP_R_CLIENT_ID], counts[OTK_BP_R_PUBLISH],
                     counts[OTK_BP_R_SUBSCRIBE], counts[OTK_BP_R_READ]);
    return n < 0 ? 0 : (size_t)n < out_size ? (size_t)n : out_size - 1;
}
