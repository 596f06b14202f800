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
        else if (!strcmp(value, "certs"))
            c->role = OTK_BP_CERTS;
        else
            return set_err(err, err_size, "role: '%s' is not devices, agents, cloud or certs", value);
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
    if (!strcmp(key, "identity")) {
        if (strcmp(value, "certificate") != 0)
            return set_err(err, err_size, "identity: '%s' is not certificate", value);
        c->cert_identity = 1;
        return 0;
    }
    if (!strcmp(key, "crl")) {
        if (!value[0] || strlen(value) >= sizeof c->crl)
            return set_err(err, err_size, "crl: '%s' is no file name", value);
        snprintf(c->crl, sizeof c->crl, "%s", value);
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
        return set_err(err, err_size, "%s",
                       "plugin_opt_role is required (devices, agents, cloud or certs)");
    if (c->role == OTK_BP_CERTS && !c->crl[0])
        return set_err(err, err_size, "%s", "plugin_opt_crl is required for the certs role");
    if (c->cert_identity && c->role != OTK_BP_DEVICES)
        return set_err(err, err_size, "%s", "plugin_opt_identity is for the devices role");
    if (c->role != OTK_BP_CLOUD && c->role != OTK_BP_CERTS && c->n_spaces == 0)
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

/* A certificate login: the user name is the CN, a device id, and the client id. */
static int certified(const char *username, const char *client_id, int *reason)
{
    if (username == NULL) {
        (void)deny(reason, OTK_BP_R_USER);
        return 0;
    }
    if (!otk_bp_is_device_id(username) || client_id == NULL || strcmp(username, client_id) != 0) {
        (void)deny(reason, OTK_BP_R_CLIENT_ID);
        return 0;
    }
    return 1;
}

int otk_bp_connect(const otk_bp_config *c, const char *username, const char *client_id,
                   int *reason)
{
    switch (c->role) {
    case OTK_BP_DEVICES:
        if (c->cert_identity)
            return certified(username, client_id, reason) ? OTK_BP_ALLOW : OTK_BP_DENY;
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
    case OTK_BP_CERTS:
        return certified(username, client_id, reason) ? OTK_BP_DEFER : OTK_BP_DENY;
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
        if (c->cert_identity && !certified(username, client_id, reason))
            return OTK_BP_DENY;
        if (!c->cert_identity && username != NULL)
            return deny(reason, OTK_BP_R_USER);
        return device_acl(c, client_id, access, topic, retain, reason);
    case OTK_BP_AGENTS:
        return agent_acl(c, username, access, topic, reason);
    case OTK_BP_CLOUD:
        return OTK_BP_DEFER;
    case OTK_BP_CERTS:
        /* use_username_as_clientid makes them equal; without it, nothing is allowed. */
        if (username == NULL || client_id == NULL || strcmp(username, client_id) != 0)
            return deny(reason, OTK_BP_R_CLIENT_ID);
        return OTK_BP_DEFER;
    default:
        return deny(reason, OTK_BP_R_USER);
    }
}

static int cmp_serial(const void *a, const void *b)
{
    const otk_bp_serial *x = a, *y = b;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return memcmp(x->b, y->b, x->len);
}

void otk_bp_serials_sort(otk_bp_serial *s, size_t n)
{
    size_t i;
    if (s == NULL)
        return;
    /* Leading zero octets carry no value: one form for each number. */
    for (i = 0; i < n; i++) {
        unsigned z = 0;
        if (s[i].len > OTK_BP_SERIAL_MAX)
            s[i].len = 0;
        while (z + 1u < s[i].len && s[i].b[z] == 0)
            z++;
        if (z) {
            memmove(s[i].b, s[i].b + z, s[i].len - z);
            s[i].len = (unsigned char)(s[i].len - z);
        }
    }
    if (n > 1)
        qsort(s, n, sizeof *s, cmp_serial);
}

int otk_bp_revoked(const otk_bp_serial *sorted, size_t n, const unsigned char *sn, size_t len)
{
    otk_bp_serial key;
    if (sorted == NULL || n == 0 || sn == NULL)
        return 0;
    while (len > 1 && sn[0] == 0) { /* leading zero octets carry no value */
        sn++;
        len--;
    }
    if (len == 0 || len > OTK_BP_SERIAL_MAX)
        return 0;
    key.len = (unsigned char)len;
    memcpy(key.b, sn, len);
    return bsearch(&key, sorted, n, sizeof *sorted, cmp_serial) != NULL;
}

static size_t slot_of(const otk_bp_sessions *s, const char *id)
{
    unsigned long long h = 1469598103934665603ull;
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 1099511628211ull;
    return (size_t)h & (s->cap - 1);
}

/* The slot holding id, or the empty slot where it would go. */
static size_t find(const otk_bp_sessions *s, const char *id)
{
    size_t i = slot_of(s, id);
    while (s->t[i].id[0] && strcmp(s->t[i].id, id) != 0)
        i = (i + 1) & (s->cap - 1);
    return i;
}

static int grow(otk_bp_sessions *s)
{
    otk_bp_sessions bigger;
    size_t i;
    bigger.cap = s->cap ? 2 * s->cap : 64;
    bigger.n = 0;
    bigger.t = calloc(bigger.cap, sizeof *bigger.t);
    if (bigger.t == NULL)
        return -1;
    for (i = 0; i < s->cap; i++)
        if (s->t[i].id[0])
            bigger.t[find(&bigger, s->t[i].id)] = s->t[i];
    bigger.n = s->n;
    free(s->t);
    *s = bigger;
    return 0;
}

int otk_bp_sessions_put(otk_bp_sessions *s, const char *id, const otk_bp_serial *sn)
{
    size_t i;
    if (s == NULL || id == NULL || sn == NULL || !otk_bp_is_device_id(id))
        return -1;
    if ((s->n + 1) * 4 > s->cap * 3 && grow(s) != 0) /* load at most 3/4 */
        return -1;
    i = find(s, id);
    if (!s->t[i].id[0]) {
        memcpy(s->t[i].id, id, sizeof s->t[i].id);
        s->n++;
    }
    s->t[i].sn = *sn;
    return 0;
}

int otk_bp_sessions_has(const otk_bp_sessions *s, const char *id)
{
    if (s == NULL || s->cap == 0 || id == NULL || !otk_bp_is_device_id(id))
        return 0;
    return s->t[find(s, id)].id[0] != '\0';
}

void otk_bp_sessions_del(otk_bp_sessions *s, const char *id, const otk_bp_serial *sn)
{
    size_t i, j;
    if (s == NULL || s->cap == 0 || id == NULL || !otk_bp_is_device_id(id))
        return;
    i = find(s, id);
    if (!s->t[i].id[0])
        return;
    if (sn != NULL && (sn->len != s->t[i].sn.len || memcmp(sn->b, s->t[i].sn.b, sn->len) != 0))
        return;
    memset(&s->t[i], 0, sizeof s->t[i]);
    s->n--;
    /* Backward shift: move up every entry whose probe run crossed the hole. */
    for (j = (i + 1) & (s->cap - 1); s->t[j].id[0]; j = (j + 1) & (s->cap - 1)) {
        size_t home = slot_of(s, s->t[j].id);
        if (((j - home) & (s->cap - 1)) >= ((j - i) & (s->cap - 1))) {
            s->t[i] = s->t[j];
            memset(&s->t[j], 0, sizeof s->t[j]);
            i = j;
        }
    }
}

size_t otk_bp_sessions_revoked(const otk_bp_sessions *s, const otk_bp_serial *sorted, size_t n,
                               char (*ids)[33], size_t max)
{
    size_t i, k = 0;
    if (s == NULL)
        return 0;
    for (i = 0; i < s->cap && k < max; i++)
        if (s->t[i].id[0] && otk_bp_revoked(sorted, n, s->t[i].sn.b, s->t[i].sn.len))
            memcpy(ids[k++], s->t[i].id, 33);
    return k;
}

void otk_bp_sessions_free(otk_bp_sessions *s)
{
    if (s == NULL)
        return;
    free(s->t);
    memset(s, 0, sizeof *s);
}

size_t otk_bp_report(const otk_bp_config *c, const unsigned long long *counts,
                     unsigned long long period_ms, char *out, size_t out_size)
{
    static const char *const role[] = {"", "devices", "agents", "cloud", "certs"};
    int n = snprintf(out, out_size,
                     "{\"listener\":\"%s\",\"period_ms\":%llu,\"connect_user\":%llu,"
                     "\"connect_client_id\":%llu,\"publish\":%llu,\"subscribe\":%llu,"
                     "\"read\":%llu,\"revoked\":%llu}",
                     role[c->role >= 1 && c->role <= 4 ? c->role : 0], period_ms,
                     counts[OTK_BP_R_USER], counts[OTK_BP_R_CLIENT_ID], counts[OTK_BP_R_PUBLISH],
                     counts[OTK_BP_R_SUBSCRIBE], counts[OTK_BP_R_READ], counts[OTK_BP_R_REVOKED]);
    return n < 0 ? 0 : (size_t)n < out_size ? (size_t)n : out_size - 1;
}
