/*
 * The agent's HTTP API (api.h, docs/api.md) on libmicrohttpd: one thread
 * per connection (an event stream waits in its own thread), a pool of
 * store handles shared by the requests, API tokens stored hashed.
 */
#define _GNU_SOURCE
#include "api.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "otakey/campaign.h"
#include "otakey/crypto.h"
#include "otakey/store.h"
#include "otakey/wire.h"

#if MHD_VERSION < 0x00097002
typedef int MHD_Result_t;
#else
typedef enum MHD_Result MHD_Result_t;
#endif

#define POOL_MAX 8
#define BODY_MAX 65536
#define TOKENS_MAX 256
#define PAGE_MAX 1000
#define EVENT_POLL_MS 250
#define EVENT_KEEPALIVE_MS 15000
#define HEALTH_CACHE_MS 5000

/* The dashboard's files, embedded at build time (dashboard_files.c). */
typedef struct otk_embedded_file {
    const char *name;
    const unsigned char *data;
    size_t size;
} otk_embedded_file;
extern const otk_embedded_file otk_dashboard_files[];
extern const size_t otk_dashboard_n_files;

typedef struct api_token {
    char name[49];
    int operator_role;
    uint8_t hash[32];
} api_token;

typedef struct slot {
    otk_store *s;
    otk_crypto c;
    int open, busy;
} slot;

typedef struct cloud_health {
    int64_t at_ms;
    int healthy;
    double latency_ms;
} cloud_health;

struct otk_api {
    struct MHD_Daemon *d;
    otk_api_config cfg;
    char database[256];
    otk_api_cloud clouds[OTK_AGENT_MAX_CLOUDS];
    cloud_health health[OTK_AGENT_MAX_CLOUDS];
    size_t n_clouds;
    otk_api_metrics *m;
    char *cert_pem, *key_pem;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    slot pool[POOL_MAX];
    api_token tokens[TOKENS_MAX];
    size_t n_tokens;
    volatile int stopping;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- metrics ---- */

static const double flush_bounds[OTK_API_FLUSH_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                           0.1,   0.25,   0.5,   1,    2.5,   5};

void otk_api_flush_observe(otk_api_metrics *m, double seconds)
{
    size_t i;
    for (i = 0; i < OTK_API_FLUSH_BUCKETS; i++)
        if (seconds <= flush_bounds[i])
            otk_api_add(&m->flush_le[i], 1);
    otk_api_add(&m->flush_count, 1);
    otk_api_add(&m->flush_us, (uint64_t)(seconds * 1e6));
}

static uint64_t ld(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* ---- names ---- */

const char *otk_api_status_name(otk_status st)
{
    static const char *const names[] = {
        "OK",          "INVALID_ARGUMENT", "BAD_STATE",     "BUFFER_TOO_SMALL", "BAD_MAC",
        "BAD_SIGNATURE", "REPLAY",         "ROLLBACK",      "CORRUPT",          "STORAGE",
        "CRYPTO",      "TRUNCATED",        "TRAILING",      "BAD_LENGTH",       "UNKNOWN_TYPE",
        "UNKNOWN_VERSION", "UNKNOWN_DEVICE", "UNKNOWN_BATCH", "ALREADY_CLAIMED", "REVOKED",
        "NOT_FOUND",   "CLOUD",            "RATE_LIMITED",  "STALE",            "WRONG_DEVICE",
        "PROOF_FAILED", "INTERNAL",        "NO_KEYSET",     "UNEXPECTED",       "BAD_VALUE",
        "BUSY"};
    return st <= 0 && -st < (int)(sizeof names / sizeof names[0]) ? names[-st] : "UNKNOWN";
}

const char *otk_api_state_name(int st)
{
    return st == OTK_DS_PENDING ? "pending" : st == OTK_DS_ACTIVE ? "active"
                                            : st == OTK_DS_REVOKED ? "revoked" : "unknown";
}

const char *otk_api_want_name(int w)
{
    return w == OTK_WANT_ROTATE ? "rotate" : w == OTK_WANT_SWITCH ? "switch"
                                           : w == OTK_WANT_CLEANUP ? "cleanup" : "none";
}

static const char *const audit_kinds[] = {
    NULL,      "claim_issued",    "claim_superseded", "claim_refused",   "update_issued",
    "commit",  "abort",           "refused",          "revoke",          "reclaim_allowed",
    "cloud_cleanup", "update_requested", "product_created", "campaign"};
#define N_AUDIT_KINDS (sizeof audit_kinds / sizeof audit_kinds[0])

const char *otk_api_audit_kind(int k)
{
    return k > 0 && (size_t)k < N_AUDIT_KINDS ? audit_kinds[k] : "unknown";
}

/* ---- tokens ---- */

static int sha256_hex(const char *s, uint8_t bin[32], char hex[65])
{
    unsigned int n = 0;
    uint8_t h[32];
    if (EVP_Digest(s, strlen(s), h, &n, EVP_sha256(), NULL) != 1 || n != 32)
        return -1;
    if (bin)
        memcpy(bin, h, 32);
    if (hex)
        otk_hex_encode(h, 32, hex);
    return 0;
}

int otk_api_token_hash(const char *tok, char out[65])
{
    return sha256_hex(tok, NULL, out);
}

int otk_api_token_new(char out[65])
{
    uint8_t r[32];
    if (RAND_bytes(r, sizeof r) != 1)
        return -1;
    otk_hex_encode(r, sizeof r, out);
    OPENSSL_cleanse(r, sizeof r);
    return 0;
}

static int valid_name(const char *s)
{
    size_t n = strlen(s), i;
    if (n == 0 || n > 48)
        return 0;
    for (i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_' || s[i] == '.'))
            return 0;
    return 1;
}

/* One line of the tokens file: 1 and *t filled, 0 for a comment or a blank
 * line, -1 for a malformed one. */
static int parse_token_line(const char *line, api_token *t)
{
    char name[49], role[16], hex[80];
    if (line[0] == '#' || strspn(line, " \t\r\n") == strlen(line))
        return 0;
    if (sscanf(line, "%48s %15s %79s", name, role, hex) != 3 || !valid_name(name) ||
        (strcmp(role, "read") && strcmp(role, "operator")) || strlen(hex) != 64 ||
        otk_hex_decode(hex, t->hash, 32) != 0)
        return -1;
    snprintf(t->name, sizeof t->name, "%s", name);
    t->operator_role = !strcmp(role, "operator");
    return 1;
}

/* Reads the tokens file into out (n at most TOKENS_MAX). */
static int load_tokens(const char *path, api_token *out, size_t *n, char *err, size_t err_size)
{
    FILE *f;
    struct stat st;
    char line[512];
    unsigned lineno = 0;
    *n = 0;
    f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, err_size, "api tokens file %s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077)) {
        snprintf(err, err_size,
                 "api tokens file %s: must be a regular file no group or other user may access "
                 "(chmod 600)", path);
        fclose(f);
        return -1;
    }
    while (fgets(line, sizeof line, f)) {
        int k;
        lineno++;
        if ((k = parse_token_line(line, &out[*n < TOKENS_MAX ? *n : TOKENS_MAX - 1])) == 0)
            continue;
        if (k < 0) {
            snprintf(err, err_size,
                     "api tokens file %s line %u: expected 'NAME ROLE SHA256HEX' with ROLE read or "
                     "operator", path, lineno);
            fclose(f);
            return -1;
        }
        if (*n >= TOKENS_MAX) {
            snprintf(err, err_size, "api tokens file %s: more than %d tokens", path, TOKENS_MAX);
            fclose(f);
            return -1;
        }
        (*n)++;
    }
    fclose(f);
    return 0;
}

void otk_api_set_clouds(otk_api *api, const otk_api_cloud *clouds, size_t n)
{
    if (n > OTK_AGENT_MAX_CLOUDS)
        n = OTK_AGENT_MAX_CLOUDS;
    pthread_mutex_lock(&api->mu);
    memcpy(api->clouds, clouds, n * sizeof clouds[0]);
    memset(api->health, 0, sizeof api->health);
    api->n_clouds = n;
    pthread_mutex_unlock(&api->mu);
}

int otk_api_reload_tokens(otk_api *api, char *err, size_t err_size)
{
    static api_token fresh[TOKENS_MAX];
    size_t n;
    if (load_tokens(api->cfg.tokens, fresh, &n, err, err_size) != 0)
        return -1;
    pthread_mutex_lock(&api->mu);
    memcpy(api->tokens, fresh, n * sizeof fresh[0]);
    api->n_tokens = n;
    pthread_mutex_unlock(&api->mu);
    return 0;
}

/* 1 and the token's name and role when the request carries a known token. */
static int authenticate(otk_api *api, struct MHD_Connection *conn, char name[49], int *op)
{
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    uint8_t hash[32];
    size_t i;
    int found = 0;
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0 || strlen(h + 7) > 256 ||
        sha256_hex(h + 7, hash, NULL) != 0)
        return 0;
    pthread_mutex_lock(&api->mu);
    for (i = 0; i < api->n_tokens; i++)
        if (CRYPTO_memcmp(hash, api->tokens[i].hash, 32) == 0 && !found) {
            found = 1;
            snprintf(name, 49, "%s", api->tokens[i].name);
            *op = api->tokens[i].operator_role;
        }
    pthread_mutex_unlock(&api->mu);
    return found;
}

/* ---- store pool ---- */

static slot *acquire(otk_api *api)
{
    slot *got = NULL;
    size_t i;
    pthread_mutex_lock(&api->mu);
    while (got == NULL && !api->stopping) {
        for (i = 0; i < POOL_MAX && got == NULL; i++)
            if (api->pool[i].open && !api->pool[i].busy)
                got = &api->pool[i];
        for (i = 0; i < POOL_MAX && got == NULL; i++)
            if (!api->pool[i].open) {
                slot *sl = &api->pool[i];
                char err[256];
                if (otk_crypto_openssl_init(&sl->c, NULL, NULL) != OTK_OK)
                    break;
                if (otk_store_open(api->database, &sl->c, 0, &sl->s, err, sizeof err) != OTK_OK) {
                    otk_crypto_openssl_free(&sl->c);
                    pthread_mutex_unlock(&api->mu);
                    return NULL;
                }
                sl->open = 1;
                got = sl;
            }
        if (got == NULL)
            pthread_cond_wait(&api->cv, &api->mu);
    }
    if (got)
        got->busy = 1;
    pthread_mutex_unlock(&api->mu);
    return got;
}

static void release(otk_api *api, slot *sl, int broken)
{
    if (sl == NULL)
        return;
    otk_store_set_actor(sl->s, NULL);
    if (otk_store_release(sl->s) != OTK_OK)
        broken = 1;
    pthread_mutex_lock(&api->mu);
    if (broken) { /* a store that failed is opened afresh next time */
        otk_store_close(sl->s);
        otk_crypto_openssl_free(&sl->c);
        sl->s = NULL;
        sl->open = 0;
    }
    sl->busy = 0;
    pthread_cond_signal(&api->cv);
    pthread_mutex_unlock(&api->mu);
}

/* ---- responses ---- */

static MHD_Result_t send_text(struct MHD_Connection *conn, unsigned status, const char *type,
                              char *body, size_t len, int must_free)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, body, must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    MHD_Result_t ret;
    if (r == NULL) {
        if (must_free)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (status == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"otakey\"");
    ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Sends o (taken) as JSON. */
static MHD_Result_t send_json(struct MHD_Connection *conn, unsigned status, cJSON *o)
{
    char *text = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (text == NULL)
        return MHD_NO;
    return send_text(conn, status, "application/json", text, strlen(text), 1);
}

static MHD_Result_t send_error(struct MHD_Connection *conn, unsigned status, const char *code,
                               const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static MHD_Result_t send_error(struct MHD_Connection *conn, unsigned status, const char *code,
                               const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    cJSON *o = cJSON_CreateObject();
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON_AddStringToObject(o, "error", msg);
    cJSON_AddStringToObject(o, "code", code);
    return send_json(conn, status, o);
}

/* The HTTP status for a store or agent status. */
static MHD_Result_t send_status(struct MHD_Connection *conn, otk_status st, const char *what)
{
    unsigned code = st == OTK_ERR_NOT_FOUND || st == OTK_ERR_UNKNOWN_DEVICE ? MHD_HTTP_NOT_FOUND
                    : st == OTK_ERR_BAD_STATE || st == OTK_ERR_REVOKED ||
                            st == OTK_ERR_NO_KEYSET
                        ? MHD_HTTP_CONFLICT
                    : st == OTK_ERR_BAD_VALUE || st == OTK_ERR_INVALID_ARGUMENT
                        ? MHD_HTTP_BAD_REQUEST
                        : MHD_HTTP_SERVICE_UNAVAILABLE;
    return send_error(conn, code, otk_api_status_name(st), "%s: %s", what, otk_strerror(st));
}

/* ---- JSON of registry rows ---- */

static void add_hex(cJSON *o, const char *key, const uint8_t *p, size_t n)
{
    char hex[2 * 32 + 1];
    otk_hex_encode(p, n, hex);
    cJSON_AddStringToObject(o, key, hex);
}

static cJSON *device_json(const otk_device_info *d)
{
    cJSON *o = cJSON_CreateObject();
    add_hex(o, "id", d->id, 16);
    add_hex(o, "batch", d->batch_id, 8);
    cJSON_AddStringToObject(o, "state", otk_api_state_name(d->state));
    cJSON_AddNumberToObject(o, "version", d->version);
    cJSON_AddNumberToObject(o, "cloud", d->cloud);
    cJSON_AddStringToObject(o, "user", d->user);
    cJSON_AddNumberToObject(o, "pending_version", d->pending_version);
    cJSON_AddNumberToObject(o, "issued", d->issued);
    cJSON_AddStringToObject(o, "want", otk_api_want_name(d->want));
    cJSON_AddNumberToObject(o, "last_seen_ms", (double)d->last_seen_ms);
    return o;
}

static cJSON *campaign_json(const otk_campaign_status *c)
{
    cJSON *o = cJSON_CreateObject();
    const char *why = otk_campaign_pause_name(c->pause_reason);
    cJSON_AddNumberToObject(o, "id", (double)c->id);
    cJSON_AddStringToObject(o, "kind", c->kind == OTK_WANT_SWITCH ? "switch" : "rotate");
    cJSON_AddNumberToObject(o, "target_cloud", c->target_cloud);
    cJSON_AddStringToObject(o, "selector", c->selector);
    cJSON_AddStringToObject(o, "state", otk_campaign_state_name(c->state));
    if (why)
        cJSON_AddStringToObject(o, "pause_reason", why);
    else
        cJSON_AddNullToObject(o, "pause_reason");
    cJSON_AddNumberToObject(o, "rate", c->rate);
    cJSON_AddNumberToObject(o, "canary", c->canary);
    cJSON_AddNumberToObject(o, "max_failures", c->max_failures);
    cJSON_AddNumberToObject(o, "total", (double)c->total);
    cJSON_AddNumberToObject(o, "started", (double)c->started);
    cJSON_AddNumberToObject(o, "done", (double)c->done);
    cJSON_AddNumberToObject(o, "failed", (double)c->failed);
    cJSON_AddNumberToObject(o, "created_ms", (double)c->created_ms);
    return o;
}

static cJSON *audit_json(const otk_audit_row *a)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "seq", (double)a->seq);
    cJSON_AddNumberToObject(o, "ts_ms", (double)a->ts_ms);
    cJSON_AddStringToObject(o, "kind", otk_api_audit_kind(a->ev.kind));
    if (a->ev.msg_type)
        cJSON_AddStringToObject(o, "msg_type", otk_msg_name(a->ev.msg_type));
    else
        cJSON_AddNullToObject(o, "msg_type");
    if (a->ev.has_id)
        add_hex(o, "device", a->ev.id, 16);
    else
        cJSON_AddNullToObject(o, "device");
    cJSON_AddNumberToObject(o, "version", a->ev.version);
    cJSON_AddStringToObject(o, "code", a->ev.kind == OTK_AUD_CAMPAIGN
                                           ? otk_campaign_state_name((int)a->ev.code)
                                           : otk_api_status_name(a->ev.code));
    if (a->actor[0])
        cJSON_AddStringToObject(o, "actor", a->actor);
    else
        cJSON_AddNullToObject(o, "actor");
    return o;
}

/* ---- request parameters ---- */

static const char *arg(struct MHD_Connection *conn, const char *key)
{
    return MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, key);
}

/* Parses an unsigned decimal in [lo, hi]; 0 on success. */
static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end = NULL;
    unsigned long long v;
    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_id(const char *s, uint8_t *out, size_t n)
{
    size_t i;
    if (s == NULL || strlen(s) != 2 * n)
        return -1;
    for (i = 0; i < 2 * n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return -1;
    return otk_hex_decode(s, out, n);
}

/* ---- request context ---- */

typedef struct req {
    char *body;
    size_t len;
    int too_big;
} req;

typedef struct req_ctx {
    otk_api *api;
    struct MHD_Connection *conn;
    const char *method;
    req *rq;
    char token_name[49];
    int op;
    slot *sl;
    int broken;
} req_ctx;

static otk_store *store(req_ctx *c)
{
    if (c->sl == NULL) {
        c->sl = acquire(c->api);
        if (c->sl == NULL)
            return NULL;
        if (c->op) {
            char actor[OTK_ACTOR_MAX + 1];
            snprintf(actor, sizeof actor, "api:%s", c->token_name);
            otk_store_set_actor(c->sl->s, actor);
        }
    }
    return c->sl->s;
}

#define STORE_OR_503(c, s)                                                                        \
    do {                                                                                          \
        if (((s) = store(c)) == NULL)                                                             \
            return send_error((c)->conn, MHD_HTTP_SERVICE_UNAVAILABLE, "STORAGE",                 \
                              "the registry cannot be opened");                                  \
    } while (0)

static cJSON *parse_body(req_ctx *c)
{
    if (c->rq->len == 0)
        return NULL;
    return cJSON_ParseWithLength(c->rq->body, c->rq->len);
}

/* ---- products ---- */

typedef struct list_ctx {
    cJSON *arr;
    size_t n, limit;
    int more;
    const char *want_batch;
    uint8_t batch[8];
    int has_batch, has_cloud, has_version;
    uint64_t cloud, version, seen_after, seen_before;
    uint8_t last[16];
    uint64_t last_seq;
    int kind;
    int has_device;
    uint8_t device[16];
} list_ctx;

static int batch_row(void *user, const otk_batch_info *b)
{
    list_ctx *l = user;
    cJSON *o = cJSON_CreateObject();
    add_hex(o, "batch", b->batch_id, 8);
    cJSON_AddStringToObject(o, "name", b->product);
    cJSON_AddNumberToObject(o, "devices", (double)b->devices);
    cJSON_AddItemToArray(l->arr, o);
    return 0;
}

static MHD_Result_t products(req_ctx *c)
{
    otk_store *s;
    otk_status st;
    if (!strcmp(c->method, "GET")) {
        list_ctx l;
        cJSON *o;
        memset(&l, 0, sizeof l);
        STORE_OR_503(c, s);
        o = cJSON_CreateObject();
        l.arr = cJSON_AddArrayToObject(o, "products");
        if ((st = otk_store_list_batches(s, batch_row, &l)) != OTK_OK) {
            cJSON_Delete(o);
            c->broken = 1;
            return send_status(c->conn, st, "products");
        }
        return send_json(c->conn, MHD_HTTP_OK, o);
    } else {
        cJSON *b = parse_body(c), *bi, *ni, *o;
        uint8_t batch[8], pk[32];
        char hex[65];
        if (b == NULL)
            return send_error(c->conn, MHD_HTTP_BAD_REQUEST, "BAD_REQUEST", "body: not JSON");
        bi = cJSON_GetObjectItemCaseSensitive(b, "batch");
        ni = cJSON_GetObjectItemCaseSensitive(b, "name");
        if (!cJSON_IsString(bi) || parse_id(bi->valuestring, batch, 8) != 0 || !cJSON_IsString(ni) ||
            strlen(ni->valuestring) == 0 || strlen(ni->valuestring) > 127) {
            cJSON_Delete(b);
            return send_error(c->conn, MHD_HTTP_BAD_REQUEST, "BAD_REQUEST",
                              "body needs batch (16 lowercase hex digits) and name (1 to 127 "
                              "characters)");
        }
        if (RAND_bytes(pk, sizeof pk) != 1) {
            cJSON_Delete(b);
            return send_error(c->conn, MHD_HTTP_SERVICE_UNAVAILABLE, "CRYPTO", "no randomness");
        }
        if ((s = store(c)) == NULL) {
            cJSON_Delete(b);
            return send_error(c->conn, MHD_HTTP_SERVICE_UNAVAILABLE, "STORAGE",
                              "the registry cannot be opened");
        }
        st = otk_store_add_batch(s, batch, ni->valuestring, pk);
        if (st == OTK_ERR_BAD_STATE) {
            MHD_Result_t ret = send_error(c->conn, MHD_HTTP_CONFLICT, "BAD_STATE",
                                          "batch %s exists", bi->valuestring);
            cJSON_Delete(b);
            OPENSSL_cleanse(pk, sizeof pk);
            return ret;
        }
        if (st != OTK_OK) {
            cJSON_Delete(b);
            OPENSSL_cleanse(pk, sizeof pk);
            c->broken = 1;
            return send_status(c->conn, st, "product create");
        }
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "batch", bi->valuestring);
        cJSON_AddStringToObject(o, "name", ni->valuestring);
        otk_hex_encode(pk, sizeof pk, hex);
        cJSON_AddStringToObject(o, "pk", hex);
        OPENSSL_cleanse(pk, sizeof pk);
        OPENSSL_cleanse(hex, sizeof hex);
        cJSON_Delete(b);
        return send_json(c->conn, MHD_HTTP_CREATED, o);
    }
}

/* ---- devices ---- */

static int device_row(void *user, const otk_device_info *d)
{
    list_ctx *l = user;
    if ((l->has_batch && memcmp(d->batch_id, l->batch, 8) != 0) ||
        (l->has_cloud && d->cloud != l->cloud) || (l->has_version && d->version != l->version) ||
        (l->seen_after && (uint64_t)d->last_seen_ms <= l->seen_after) ||
        (l->seen_before && (uint64_t)d->last_seen_ms >= l->seen_before))
        return 0;
    if (l->n == l->limit) {
        l->more = 1;
        return 1;
    }
    cJSON_AddItemToArray(l->arr, device_json(d));
    memcpy(l->last, d->id, 16);
    l->n++;
    return 0;
}

static int one_device(void *user, const otk_device_info *d)
{
    cJSON **out = user;
    *out = device_json(d);
    return 1;
}

static MHD_Result_t device_list(req_ctx *c)
{
    list_ctx l;
    const char *state = arg(c->conn, "state"), *after = arg(c->conn, "after"), *v;
    uint8_t after_id[16];
    int st_filter = 0;
    otk_store *s;
    otk_status st;
    cJSON *o;
    uint64_t lim = 100;
    memset(&l, 0, sizeof l);
    if (state) {
        st_filter = !strcmp(state, "pending") ? OTK_DS_PENDING
                    : !strcmp(state, "active") ? OTK_DS_ACTIVE
                    : !strcmp(state, "revoked") ? OTK_DS_REVOKED : -1;
        if (st_filter < 0)
            return send_error(c->conn, MHD_HTTP_BAD_REQUEST, "BAD_REQUEST",
                              "state: pending, active or revoked");
    }
    if ((v = arg(c->conn, "batch")) && parse_id(v, l.batch, 8) != 0)
        return send_error(c->conn, MHD_HTTP_BAD_REQUEST, "BAD_REQUEST", "batch: 16 hex digits");
    l.has_batch = v != NULL;
    if ((v = arg(c->conn, "cloud")) && parse_u64(v, 0, 0xffffffffu, &l.cloud) != 0)
        return send_error(c->conn, MHD_HTTP_BAD_REQUEST, "BAD_REQUEST", "cloud: a number");
    l.has_cloud = v != NULL;
    if ((v = arg(c->conn, "version")) && parse_u64(v, 0, 0xffffffffu, &l.version) != 0)
        return send_error(c->conn, MHD_HTTP_BAD_REQUEST, "BAD_REQUEST", "version: a number");
    l.has_version = v != NULL;
    if (((v = arg(c->conn, "seen_after")) && parse_u64(v, 0, UINT64_MAX / 2, &l.seen_after) != 0) ||
        ((v = arg(c->conn, "seen_before")) && parse_u64(v, 0, UINT64_MAX / 2, &l.seen_before) != 0))
        return send_error(c->conn, MHD_HTTP_BAD_REQUEST, "BAD_REQUEST",
                          "seen_after, seen_before: milliseconds since the epoch");
    if ((v = arg(c->conn, "limit")) && parse_u64(v, 1, PAGE_MAX, &lim) != 0)
        return send_error(c->conn, MHD_HTTP_BAD_REQUEST, "BAD_REQUEST", "limit: 1 to %d", PAGE_MAX);
    if (after && parse_id(after, after_id, 16) != 0)
        return send_error(c->conn, MHD_HTTP_BAD_REQUEST, "BAD_REQUEST",
                          "after: a device id (32 lowercase hex digits)");
    l.limit = (size_t)lim;
    STORE_OR_503(c, s);
    o = cJSON_CreateObject();
    l.arr = cJSON_AddArrayToObject(o, "devices");
    st = otk_store_list_devices_after(s, after ? after_id : NULL, st_filter, device_row, &l);
    if (st != OTK_OK) {
        cJSON_Delete(o);
        c->broken = 1;
        return send_status(c->conn, st, "devices");
    }
    if (l.more)
        add_hex(o, "next", l.last, 16);
    else
        cJSON_AddNullToObject(o, "next");
    return send_json(c->conn, MHD_HTTP_OK, o);
}

static MHD_Result_t device_get(req_ctx *c, const uint8_t id[16], unsigned status)
{
    cJSON *d = NULL;
    otk_store *s;
    otk_status st;
    STORE_OR_503(c, s);
    st = otk_store_list_devices(s, id, 0, one_device, &d);
    if (st != OTK_OK) {
        cJSON_Delete(d);
        c->broken = 1;
        return send_status(c->conn, st, "device");
    }
    if (d == NULL)
        return send_error(c->conn, MHD_HTTP_NOT_FOUND, "NOT_FOUND", "no such device");
    return send_json(c->conn, status, d);
}

/* Cloud calls of a revocation are left to the daemon (it deletes the
 * credentials of every device marked CLEANUP within a quarter second). */
static otk_status deferred_create(void *ctx, const uint8_t device_id[16], const otk_cloud *creds)
{
    (void)ctx, (void)device_id, (void)creds;
    return OTK_ERR_CLOUD;
}

static otk_status deferred_remove(void *ctx, uint32_t cloud, const char *user)
{
    (void)ctx, (void)cloud, (void)user;
    return OTK_ERR_CLOUD;
}

static MHD_Result_t device_action(req_ctx *c, const uint8_t id[16], const char *action)
{
    otk_store *s;
    otk_agent agent;
    otk_agent_config ac;
    otk_registry reg;
    otk_cloud_adapter later = {NULL, deferred_create, deferred_remove, NULL, NULL};
    cJSON *d = NULL;
    otk_status st;
    STORE_OR_503(c, s);
    if (otk_store_list_devices(s, id, 0, one_device, &d) != OTK_OK || d == NULL) {
        cJSON_Delete(d);
        return send_error(c->conn, MHD_HTTP_NOT_FOUND, "NOT_FOUND", "no such device");
    }
    cJSON_Delete(d);
    memset(&ac, 0, sizeof ac);
    ac.n_clouds = 1;
    ac.clouds[0].cloud_id = ac.claim_cloud = 1;
    otk_store_bind(s, &reg);
    st = otk_agent_init(&agent, &c->sl->c, &reg, &later, &ac);
    if (st == OTK_OK)
        st = !strcmp(action, "revoke") ? otk_agent_revoke(&agent, id)
                                       : otk_agent_allow_reclaim(&agent, id);
    if (otk_store_release(s) != OTK_OK && st == OTK_OK)
        st = OTK_ERR_STORAGE;
    if (st == OTK_ERR_CLOUD) /* revoked; the daemon deletes its credentials */
        st = OTK_OK;
    if (st != OTK_OK)
        return send_status(c->conn, st, action);
    return device_get(c, id, MHD_HTTP_OK);
}

/* ---- campaigns ---- */

typedef struct failures_ctx {
    cJSON *arr;
    size_t n;
} failures_ctx;

static int failure_row(void *user, const uint8_t id[16], otk_status reason)
{
    failures_ctx *f = user;
    cJSON *o = cJSON_CreateObject();
    add_hex(o, "device", id, 16);
    cJSON_AddStringToObject(o, "reason", otk_api_status_name(reason));
    cJSON_AddItemToArray(f->arr, o);
    return ++f->n >= 10000; /* a page of failures is enough to act on */
}

static MHD_Result_t campaign_get(req_ctx *c, int64_t id, unsigned status)
{
    otk_campaign_status cs;
    failures_ctx f;
    otk_store *s;
    otk_status st;
    cJSON *o;
    STORE_OR_503(c, s);
    st = otk_store_campaign_get(s, id, &cs);
    if (st != OTK_OK)
        return send_status(c->conn, st, "campaign");
    o = campaign_json(&cs);
    memset(&f, 0, sizeof f);
    f.arr = cJSON_AddArrayToObject(o, "failures");
    if ((st = otk_store_campaign_failures(s, id, failure_row, &f)) != OTK_OK) {
        cJSON_Delete(o);
        return send_status(c->conn, st, "campaign failures");
    }
    return send_json(c->conn, status, o);
}

static MHD_Result_t campaign_list(req_ctx *c)
{
    static __thread int64_t ids[256];
    otk_store *s;
    size_t n, i;
    cJSON *o, *arr;
    STORE_OR_503(c, s);
    n = otk_store_campaign_list(s, ids, 256);
    o = cJSON_CreateObject();
    arr = cJSON_AddArrayToObject(o, "campaigns");
    for (i = 0; i < n; i++) {
        otk_campaign_status cs;
        if (otk_store_campaign_get(s, ids[i], &cs) == OTK_OK)
            cJSON_AddItemToArray(arr, campaign_json(&cs));
    }
    return send_json(c->conn, MHD_HTTP_OK, o);
}

static int cloud_known(otk_api *api, uint64_t id)
{
    size_t i;
    int known = 0;
    pthread_mutex_lock(&api->mu);
    for (i = 0; i < api->n_clouds; i++)
        if (api->clouds[i].id == id)
            known = 1;
    pthread_mutex_unlock(&api->mu);
    return known;
}

static int get_u32(cJSON *b, const char *key, uint64_t lo, uint64_t hi, uint64_t dflt,
                   uint64_t *out)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(b, key);
    if (v == NULL || cJSON_IsNull(v)) {
        *out = dflt;
        return 0;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble < (double)lo || v->valuedouble > (double)hi ||
        v->valuedouble != (double)(uint64_t)v->valuedouble)
        return -1;
    *out = (uint64_t)v->valuedouble;
    return 0;
}

/* A campaign request's body (docs/api.md); doc owns the selector's text. */
typedef struct campaign_req {
    cJSON *doc;
    int kind;
    const char *selector;
    uint64_t target, rate, canary, max_failures;
} campaign_req;

/* 0 with r filled (the caller deletes r->doc), or -1: the body is not one. */
static int parse_campaign_req(const char *body, size_t len, campaign_req *r)
{
    cJSON *k, *sel;
    memset(r, 0, sizeof *r);
    r->doc = len ? cJSON_ParseWithLength(body, len) : NULL;
    if (r->doc == NULL || !cJSON_IsObject(r->doc))
        goto bad;
    k = cJSON_GetObjectItemCaseSensitive(r->doc, "kind");
    sel = cJSON_GetObjectItemCaseSensitive(r->doc, "selector");
    r->kind = cJSON_IsString(k) && !strcmp(k->valuestring, "rotate")   ? OTK_WANT_ROTATE
              : cJSON_IsString(k) && !strcmp(k->valuestring, "switch") ? OTK_WANT_SWITCH
                                                                      : 0;
    r->selector = cJSON_IsString(sel) ? sel->valuestring : NULL; /* no default: say which */
    if (r->kind == 0 || r->selector == NULL || strlen(r->selector) > 65536 ||
        get_u32(r->doc, "rate", 1, 1000000, 100, &r->rate) != 0 ||
        get_u32(r->doc, "canary", 0, 1000000000, 0, &r->canary) != 0 ||
        get_u32(r->doc, "max_failures", 0, 1000000000, 0, &r->max_failures) != 0 ||
        get_u32(r->doc, "target_cloud", 0, 0xffffffffu, 0, &r->target) != 0)
        goto bad;
    return 0;
bad:
    cJSON_Delete(r->doc);
    r->doc = NULL;
    return -1;
}

static MHD_Result_t campaign_create(req_ctx *c)
{
    campaign_req rq;
    cJSON *b;
    uint64_t target, rate, canary, maxf;
    int kind;
    int64_t id;
    uint64_t total;
    otk_store *s;
    otk_status st;
    const char *selector;
    if (parse_campaign_req(c->rq->body, c->rq->len, &rq) != 0)
        return send_error(c->conn, MHD_HTTP_BAD_REQUEST, "BAD_REQUEST",
                          "body: kind (rotate or switch), selector (all, batch:HEX16, ids:ID,...), "
                          "rate (1 to 1000000), canary, max_failures, target_cloud (for switch)");
    b = rq.doc;
    kind = rq.kind;
    selector = rq.selector;
    target = rq.target;
    rate = rq.rate;
    canary = rq.canary;
    maxf = rq.max_failures;
    if (kind == OTK_WANT_SWITCH && !cloud_known(c->api, target)) {
        cJSON_Delete(b);
        return send_error(c->conn, MHD_HTTP_BAD_REQUEST, "BAD_VALUE",
                          "target_cloud %llu is not a cloud of this agent",
                          (unsigned long long)target);
    }
    if ((s = store(c)) == NULL) {
        cJSON_Delete(b);
        return send_error(c->conn, MHD_HTTP_SERVICE_UNAVAILABLE, "STORAGE",
                          "the registry cannot be opened");
    }
    st = otk_store_campaign_create(s, kind, kind == OTK_WANT_SWITCH ? (uint32_t)target : 0,
                                   selector, (uint32_t)rate, (uint32_t)canary, (uint32_t)maxf, &id,
                                   &total);
    cJSON_Delete(b);
    if (st == OTK_ERR_BAD_VALUE)
        return send_error(c->conn, MHD_HTTP_BAD_REQUEST, "BAD_VALUE",
                          "the selector matches no active device or does not parse");
    if (st != OTK_OK)
        return send_status(c->conn, st, "campaign create");
    return campaign_get(c, id, MHD_HTTP_CREATED);
}

static MHD_Result_t campaign_action(req_ctx *c, int64_t id, const char *action)
{
    int state = !strcmp(action, "pause")    ? OTK_CAMP_PAUSED
                : !strcmp(action, "resume") ? OTK_CAMP_RUNNING
                : !strcmp(action, "abort")  ? OTK_CAMP_ABORTED : 0;
    otk_store *s;
    otk_status st;
    if (state == 0)
        return send_error(c->conn, MHD_HTTP_NOT_FOUND, "NOT_FOUND", "no such action");
    STORE_OR_503(c, s);
    st = otk_store_campaign_set_state(s, id, state);
    if (st == OTK_ERR_BAD_STATE)
        return send_error(c->conn, MHD_HTTP_CONFLICT, "BAD_STATE", "campaign %lld has ended",
                          (long long)id);
    if (st != OTK_OK)
        return send_status(c->conn, st, action);
    return campaign_get(c, id, MHD_HTTP_OK);
}

/* ---- audit ---- */

static int audit_row(void *user, const otk_audit_row *a)
{
    list_ctx *l = user;
    if ((l->kind && a->ev.kind != l->kind) ||
        (l->has_device && (!a->ev.has_id || memcmp(a->ev.id, l->device, 16) != 0)))
        return 0;
    if (l->n == l->limit) {
        l->more = 1;
        return 1;
    }
    cJSON_AddItemToArray(l->arr, audit_json(a));
    l->last_seq = a->seq;
    l->n++;
    return 0;
}

static MHD_Result_t audit_list(req_ctx *c)
{
    list_ctx l;
    uint64_t after = 0, lim = 100, tail = 0;
    const char *v;
    otk_store *s;
    otk_status st;
    cJSON *o;
    size_t k;
    memset(&l, 0, sizeof l);
    if ((v = arg(c->conn, "after")) && parse_u64(v, 0, UINT64_MAX / 2, &after) != 0)
        return send_error(c->conn, MHD_HTTP_BAD_REQUEST, "BAD_REQUEST", "after: a sequence number");
    if ((v = arg(c->conn, "limit")) && parse_u64(v, 1, PAGE_MAX, &lim) != 0)
        return send_error(c->conn, MHD_HTTP_BAD_REQUEST, "BAD_REQUEST", "limit: 1 to %d", PAGE_MAX);
    if ((v = arg(c->conn, "tail")) && parse_u64(v, 1, PAGE_MAX, &tail) != 0)
        return send_error(c->conn, MHD_HTTP_BAD_REQUEST, "BAD_REQUEST", "tail: 1 to %d", PAGE_MAX);
    if ((v = arg(c->conn, "kind"))) {
        for (k = 1; k < N_AUDIT_KINDS; k++)
            if (!strcmp(v, audit_kinds[k]))
                l.kind = (int)k;
        if (l.kind == 0)
            return send_error(c->conn, MHD_HTTP_BAD_REQUEST, "BAD_REQUEST", "kind: unknown");
    }
    if ((v = arg(c->conn, "device"))) {
        if (parse_id(v, l.device, 16) != 0)
            return send_error(c->conn, MHD_HTTP_BAD_REQUEST, "BAD_REQUEST",
                              "device: 32 lowercase hex digits");
        l.has_device = 1;
    }
    STORE_OR_503(c, s);
    if (tail) { /* the last rows of the log */
        uint64_t rows = otk_store_audit_count(s, 0);
        after = rows > tail ? rows - tail : 0;
        lim = tail;
    }
    l.limit = (size_t)lim;
    o = cJSON_CreateObject();
    l.arr = cJSON_AddArrayToObject(o, "rows");
    st = otk_store_audit_list_after(s, after, audit_row, &l);
    if (st != OTK_OK) {
        cJSON_Delete(o);
        c->broken = 1;
        return send_status(c->conn, st, "audit");
    }
    if (l.more)
        cJSON_AddNumberToObject(o, "next", (double)l.last_seq);
    else
        cJSON_AddNullToObject(o, "next");
    return send_json(c->conn, MHD_HTTP_OK, o);
}

static MHD_Result_t audit_verify(req_ctx *c)
{
    uint64_t rows = 0, bad = 0;
    otk_store *s;
    otk_status st;
    cJSON *o;
    STORE_OR_503(c, s);
    st = otk_store_audit_verify(s, &rows, &bad);
    if (st != OTK_OK && st != OTK_ERR_CORRUPT)
        return send_status(c->conn, st, "audit verify");
    o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "ok", st == OTK_OK);
    cJSON_AddNumberToObject(o, "rows", (double)rows);
    if (st == OTK_OK)
        cJSON_AddNullToObject(o, "bad_seq");
    else
        cJSON_AddNumberToObject(o, "bad_seq", (double)bad);
    return send_json(c->conn, MHD_HTTP_OK, o);
}

/* ---- clouds ---- */

/* A TCP connection to host:port within timeout_ms: 1 and its time, or 0. */
static int probe(const char *host, uint16_t port, int timeout_ms, double *ms)
{
    struct addrinfo hints, *res = NULL, *ai;
    char service[8];
    int ok = 0;
    double t0 = mono_ms();
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    snprintf(service, sizeof service, "%u", (unsigned)port);
    if (getaddrinfo(host, service, &hints, &res) != 0)
        return 0;
    for (ai = res; ai && !ok; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        struct pollfd p;
        int soerr = 0;
        socklen_t len = sizeof soerr;
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            ok = 1;
        } else if (errno == EINPROGRESS) {
            p.fd = fd;
            p.events = POLLOUT;
            if (poll(&p, 1, timeout_ms) == 1 &&
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr == 0)
                ok = 1;
        }
        close(fd);
    }
    freeaddrinfo(res);
    *ms = mono_ms() - t0;
    return ok;
}

static MHD_Result_t clouds(req_ctx *c)
{
    otk_api *api = c->api;
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "clouds");
    otk_api_cloud list[OTK_AGENT_MAX_CLOUDS];
    cloud_health health[OTK_AGENT_MAX_CLOUDS];
    size_t i, n;
    pthread_mutex_lock(&api->mu); /* SIGHUP may replace the list meanwhile */
    n = api->n_clouds;
    memcpy(list, api->clouds, sizeof list);
    memcpy(health, api->health, sizeof health);
    pthread_mutex_unlock(&api->mu);
    for (i = 0; i < n; i++) {
        const otk_api_cloud *cl = &list[i];
        cloud_health h = health[i];
        cJSON *e = cJSON_CreateObject();
        if (now_ms() - h.at_ms > HEALTH_CACHE_MS) {
            h.healthy = probe(cl->host, cl->port, 1000, &h.latency_ms);
            h.at_ms = now_ms();
            pthread_mutex_lock(&api->mu);
            if (i < api->n_clouds && api->clouds[i].id == cl->id)
                api->health[i] = h;
            pthread_mutex_unlock(&api->mu);
        }
        cJSON_AddNumberToObject(e, "id", cl->id);
        cJSON_AddStringToObject(e, "type", cl->type);
        cJSON_AddStringToObject(e, "host", cl->host);
        cJSON_AddNumberToObject(e, "port", cl->port);
        cJSON_AddBoolToObject(e, "tls", cl->tls != 0);
        cJSON_AddBoolToObject(e, "healthy", h.healthy != 0);
        if (h.healthy)
            cJSON_AddNumberToObject(e, "latency_ms", (double)(int64_t)(h.latency_ms * 100) / 100);
        else
            cJSON_AddNullToObject(e, "latency_ms");
        cJSON_AddItemToArray(arr, e);
    }
    return send_json(c->conn, MHD_HTTP_OK, o);
}

/* ---- metrics ---- */

typedef struct fleet_counts {
    uint64_t by_state[4];
    uint64_t pending_updates;
} fleet_counts;

static int count_row(void *user, const otk_device_info *d)
{
    fleet_counts *f = user;
    if (d->state >= 1 && d->state <= 3)
        f->by_state[d->state]++;
    if (d->pending_version)
        f->pending_updates++;
    return 0;
}

/* Appends printf output to a growing buffer. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    int failed;
} sbuf;

static void sb(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (b->failed)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        {
            size_t cap = (b->cap ? b->cap * 2 : 8192) + (size_t)n;
            char *q = realloc(b->p, cap);
            if (q == NULL) {
                b->failed = 1;
                return;
            }
            b->p = q;
            b->cap = cap;
        }
    }
}

static MHD_Result_t metrics(req_ctx *c)
{
    otk_api_metrics *m = c->api->m;
    sbuf b = {NULL, 0, 0, 0};
    fleet_counts f;
    otk_store *s;
    int registry_up = 0, t, k;
    size_t i;
    uint64_t audit_rows = 0;
    static __thread int64_t ids[32];
    size_t n_camp = 0;
    memset(&f, 0, sizeof f);
    s = store(c);
    if (s && otk_store_list_devices(s, NULL, 0, count_row, &f) == OTK_OK) {
        registry_up = 1;
        audit_rows = otk_store_audit_count(s, 0);
        n_camp = otk_store_campaign_list(s, ids, 32);
    } else {
        c->broken = s != NULL;
    }
    sb(&b, "# HELP otakey_messages_total Protocol messages handled by this agent, by type and "
           "outcome.\n# TYPE otakey_messages_total counter\n");
    for (t = 1; t < OTK_API_MSG_TYPES; t++)
        for (k = 0; k < 2; k++) {
            uint64_t v = ld(&m->messages[t][k]);
            /* what devices send, always; anything else once seen */
            int device_sent = t == OTK_MSG_CLAIM || t == OTK_MSG_UPDATE_REQ ||
                              t == OTK_MSG_CONFIRM || t == OTK_MSG_ABORT;
            if (v || device_sent)
                sb(&b, "otakey_messages_total{type=\"%s\",outcome=\"%s\"} %llu\n",
                   otk_msg_name((uint8_t)t), k ? "refused" : "answered", (unsigned long long)v);
        }
    sb(&b, "# HELP otakey_refusals_total Refused messages by status code.\n"
           "# TYPE otakey_refusals_total counter\n");
    for (k = 1; k < OTK_API_CODES; k++) {
        uint64_t v = ld(&m->refusals[k]);
        if (v)
            sb(&b, "otakey_refusals_total{code=\"%s\"} %llu\n", otk_api_status_name(-k),
               (unsigned long long)v);
    }
#define COUNTER(name, field, help)                                                                \
    sb(&b, "# HELP " name " " help "\n# TYPE " name " counter\n" name " %llu\n",                  \
       (unsigned long long)ld(&m->field))
    COUNTER("otakey_claims_total", claims, "Claims answered with a new key set.");
    COUNTER("otakey_updates_issued_total", updates_issued, "Updates issued (new key sets).");
    COUNTER("otakey_responses_resent_total", resent,
            "Key sets answered again to a device that repeated its request.");
    COUNTER("otakey_commits_total", commits, "Key sets committed (claims and updates).");
    COUNTER("otakey_aborts_total", aborts, "Key sets aborted by their device.");
    COUNTER("otakey_campaign_poll_starts_total", poll_starts,
            "Campaign devices started by their own poll (within the campaign's rate).");
    COUNTER("otakey_notifies_total", notifies, "Update offers (NOTIFY) sent.");
    COUNTER("otakey_notifies_asleep_total", notifies_asleep,
            "Update offers the broker had no subscriber for: the device sleeps.");
    COUNTER("otakey_ratelimit_drops_total", ratelimit_drops,
            "Messages dropped by the agent's rate limits.");
#undef COUNTER
    sb(&b, "# HELP otakey_cloud_flush_seconds The agent's wait on cloud administration per "
           "batch.\n# TYPE otakey_cloud_flush_seconds histogram\n");
    for (i = 0; i < OTK_API_FLUSH_BUCKETS; i++)
        sb(&b, "otakey_cloud_flush_seconds_bucket{le=\"%g\"} %llu\n", flush_bounds[i],
           (unsigned long long)ld(&m->flush_le[i]));
    sb(&b, "otakey_cloud_flush_seconds_bucket{le=\"+Inf\"} %llu\n",
       (unsigned long long)ld(&m->flush_count));
    sb(&b, "otakey_cloud_flush_seconds_sum %.6f\notakey_cloud_flush_seconds_count %llu\n",
       (double)ld(&m->flush_us) / 1e6, (unsigned long long)ld(&m->flush_count));
    sb(&b, "# HELP otakey_broker_connected 1 while the agent is connected to its broker.\n"
           "# TYPE otakey_broker_connected gauge\notakey_broker_connected %llu\n",
       (unsigned long long)ld(&m->broker_connected));
    sb(&b, "# HELP otakey_registry_up 1 when the registry answered this scrape.\n"
           "# TYPE otakey_registry_up gauge\notakey_registry_up %d\n", registry_up);
    if (registry_up) {
        sb(&b, "# HELP otakey_devices Devices in the registry by state.\n"
               "# TYPE otakey_devices gauge\n");
        for (k = 1; k <= 3; k++)
            sb(&b, "otakey_devices{state=\"%s\"} %llu\n", otk_api_state_name(k),
               (unsigned long long)f.by_state[k]);
        sb(&b, "# HELP otakey_updates_pending Key sets issued and not yet confirmed.\n"
               "# TYPE otakey_updates_pending gauge\notakey_updates_pending %llu\n",
           (unsigned long long)f.pending_updates);
        sb(&b, "# HELP otakey_audit_rows Rows in the audit log.\n"
               "# TYPE otakey_audit_rows gauge\notakey_audit_rows %llu\n",
           (unsigned long long)audit_rows);
        sb(&b, "# HELP otakey_campaign_devices Devices of the latest campaigns by outcome.\n"
               "# TYPE otakey_campaign_devices gauge\n");
        for (i = 0; i < n_camp; i++) {
            otk_campaign_status cs;
            if (otk_store_campaign_get(s, ids[i], &cs) != OTK_OK)
                continue;
            sb(&b, "otakey_campaign_devices{campaign=\"%lld\",outcome=\"total\"} %llu\n",
               (long long)cs.id, (unsigned long long)cs.total);
            sb(&b, "otakey_campaign_devices{campaign=\"%lld\",outcome=\"started\"} %llu\n",
               (long long)cs.id, (unsigned long long)cs.started);
            sb(&b, "otakey_campaign_devices{campaign=\"%lld\",outcome=\"done\"} %llu\n",
               (long long)cs.id, (unsigned long long)cs.done);
            sb(&b, "otakey_campaign_devices{campaign=\"%lld\",outcome=\"failed\"} %llu\n",
               (long long)cs.id, (unsigned long long)cs.failed);
        }
    }
    if (b.failed || b.p == NULL) {
        free(b.p);
        return MHD_NO;
    }
    return send_text(c->conn, MHD_HTTP_OK, "text/plain; version=0.0.4", b.p, b.len, 1);
}

/* ---- events (Server-Sent Events over the audit log) ---- */

typedef struct event_stream {
    otk_api *api;
    uint64_t after;
    char buf[65536];
    size_t len, off;
    double last_send;
} event_stream;

static int event_row(void *user, const otk_audit_row *a)
{
    event_stream *e = user;
    cJSON *o = audit_json(a);
    char *data = cJSON_PrintUnformatted(o);
    int n;
    cJSON_Delete(o);
    if (data == NULL)
        return 1;
    n = snprintf(e->buf + e->len, sizeof e->buf - e->len, "id: %llu\nevent: %s\ndata: %s\n\n",
                 (unsigned long long)a->seq, otk_api_audit_kind(a->ev.kind), data);
    free(data);
    if (n < 0 || (size_t)n >= sizeof e->buf - e->len) {
        e->buf[e->len] = '\0'; /* no room: this row starts the next read */
        return 1;
    }
    e->len += (size_t)n;
    e->after = a->seq;
    return e->len > sizeof e->buf - 1024;
}

static ssize_t event_read(void *cls, uint64_t pos, char *out, size_t max)
{
    event_stream *e = cls;
    (void)pos;
    for (;;) {
        if (e->off < e->len) {
            size_t n = e->len - e->off < max ? e->len - e->off : max;
            memcpy(out, e->buf + e->off, n);
            e->off += n;
            e->last_send = mono_ms();
            return (ssize_t)n;
        }
        if (e->api->stopping)
            return MHD_CONTENT_READER_END_OF_STREAM;
        e->len = e->off = 0;
        {
            slot *sl = acquire(e->api);
            int broken = 0;
            if (sl) {
                broken = otk_store_audit_list_after(sl->s, e->after, event_row, e) != OTK_OK;
                release(e->api, sl, broken);
            }
        }
        if (e->len)
            continue;
        if (mono_ms() - e->last_send >= EVENT_KEEPALIVE_MS) {
            e->len = (size_t)snprintf(e->buf, sizeof e->buf, ": keepalive\n\n");
            continue;
        }
        {
            struct timespec pause = {0, EVENT_POLL_MS * 1000000L};
            nanosleep(&pause, NULL);
        }
    }
}

static MHD_Result_t events(req_ctx *c)
{
    event_stream *e = calloc(1, sizeof *e);
    const char *last = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Last-Event-ID");
    const char *after = arg(c->conn, "after");
    struct MHD_Response *r;
    MHD_Result_t ret;
    uint64_t v;
    if (e == NULL)
        return MHD_NO;
    e->api = c->api;
    e->last_send = mono_ms();
    if (last && parse_u64(last, 0, UINT64_MAX / 2, &v) == 0) {
        e->after = v;
    } else if (after) {
        if (parse_u64(after, 0, UINT64_MAX / 2, &v) != 0) {
            free(e);
            return send_error(c->conn, MHD_HTTP_BAD_REQUEST, "BAD_REQUEST",
                              "after: a sequence number");
        }
        e->after = v;
    } else {
        otk_store *s = store(c);
        if (s == NULL) {
            free(e);
            return send_error(c->conn, MHD_HTTP_SERVICE_UNAVAILABLE, "STORAGE",
                              "the registry cannot be opened");
        }
        e->after = otk_store_audit_count(s, 0); /* from now on */
    }
    /* A first comment makes the stream visible to the client at once. */
    e->len = (size_t)snprintf(e->buf, sizeof e->buf, ": otakey events after %llu\n\n",
                              (unsigned long long)e->after);
    r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, event_read, e, free);
    if (r == NULL) {
        free(e);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    ret = MHD_queue_response(c->conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

/* ---- dashboard ---- */

static const char *content_type(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (dot == NULL)
        return "application/octet-stream";
    if (!strcmp(dot, ".html"))
        return "text/html; charset=utf-8";
    if (!strcmp(dot, ".js"))
        return "text/javascript; charset=utf-8";
    if (!strcmp(dot, ".css"))
        return "text/css; charset=utf-8";
    if (!strcmp(dot, ".svg"))
        return "image/svg+xml";
    if (!strcmp(dot, ".png"))
        return "image/png";
    return "application/octet-stream";
}

static MHD_Result_t dashboard(req_ctx *c, const char *name)
{
    size_t i;
    for (i = 0; i < otk_dashboard_n_files; i++)
        if (!strcmp(otk_dashboard_files[i].name, name)) {
            struct MHD_Response *r = MHD_create_response_from_buffer(
                otk_dashboard_files[i].size, (void *)otk_dashboard_files[i].data,
                MHD_RESPMEM_PERSISTENT);
            MHD_Result_t ret;
            if (r == NULL)
                return MHD_NO;
            MHD_add_response_header(r, "Content-Type", content_type(name));
            MHD_add_response_header(r, "Cache-Control", "no-cache");
            MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
            MHD_add_response_header(r, "X-Frame-Options", "DENY");
            MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
            MHD_add_response_header(r, "Content-Security-Policy",
                                    "default-src 'self'; img-src 'self' data:; "
                                    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'");
            ret = MHD_queue_response(c->conn, MHD_HTTP_OK, r);
            MHD_destroy_response(r);
            return ret;
        }
    return send_error(c->conn, MHD_HTTP_NOT_FOUND, "NOT_FOUND", "no such page");
}

/* ---- routing ---- */

#define METHOD_IS(m) (!strcmp(c->method, (m)))
#define ONLY(m)                                                                                   \
    do {                                                                                          \
        if (!METHOD_IS(m))                                                                        \
            return not_allowed(c, (m));                                                           \
    } while (0)
#define NEED_OPERATOR()                                                                           \
    do {                                                                                          \
        if (!c->op)                                                                               \
            return send_error(c->conn, MHD_HTTP_FORBIDDEN, "FORBIDDEN",                           \
                              "token '%s' may only read", c->token_name);                         \
    } while (0)

/* 405 with the Allow header: allow is the method the resource takes
 * ("GET" also where POST is taken: the route says "GET, POST"). */
static MHD_Result_t not_allowed(req_ctx *c, const char *allow)
{
    char msg[160];
    cJSON *o = cJSON_CreateObject();
    char *text;
    struct MHD_Response *r;
    MHD_Result_t ret;
    snprintf(msg, sizeof msg, "%s is not allowed here (allowed: %s)", c->method, allow);
    cJSON_AddStringToObject(o, "error", msg);
    cJSON_AddStringToObject(o, "code", "METHOD_NOT_ALLOWED");
    text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (text == NULL)
        return MHD_NO;
    r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "Allow", allow);
    ret = MHD_queue_response(c->conn, MHD_HTTP_METHOD_NOT_ALLOWED, r);
    MHD_destroy_response(r);
    return ret;
}

/* Splits path (after "/v1/") into at most 4 segments. */
static size_t split(const char *path, char seg[4][80])
{
    size_t n = 0;
    while (*path && n < 4) {
        size_t len = strcspn(path, "/");
        if (len == 0 || len >= 80)
            return 5;
        memcpy(seg[n], path, len);
        seg[n][len] = '\0';
        n++;
        path += len;
        if (*path == '/')
            path++;
    }
    return *path ? 5 : n;
}

static MHD_Result_t route_v1(req_ctx *c, const char *rest)
{
    char seg[4][80];
    size_t n = split(rest, seg);
    uint8_t id[16];
    uint64_t cid;
    if (n == 1 && !strcmp(seg[0], "products")) {
        if (METHOD_IS("POST")) {
            NEED_OPERATOR();
            return products(c);
        }
        if (!METHOD_IS("GET"))
            return not_allowed(c, "GET, POST");
        return products(c);
    }
    if (n >= 1 && !strcmp(seg[0], "devices")) {
        if (n == 1) {
            ONLY("GET");
            return device_list(c);
        }
        if (parse_id(seg[1], id, 16) != 0)
            return send_error(c->conn, MHD_HTTP_BAD_REQUEST, "BAD_REQUEST",
                              "a device id is 32 lowercase hex digits");
        if (n == 2) {
            ONLY("GET");
            return device_get(c, id, MHD_HTTP_OK);
        }
        if (n == 3 && (!strcmp(seg[2], "revoke") || !strcmp(seg[2], "allow-reclaim"))) {
            ONLY("POST");
            NEED_OPERATOR();
            return device_action(c, id, seg[2]);
        }
    }
    if (n >= 1 && !strcmp(seg[0], "campaigns")) {
        if (n == 1) {
            if (METHOD_IS("POST")) {
                NEED_OPERATOR();
                return campaign_create(c);
            }
            if (!METHOD_IS("GET"))
                return not_allowed(c, "GET, POST");
            return campaign_list(c);
        }
        if (parse_u64(seg[1], 1, INT64_MAX, &cid) != 0)
            return send_error(c->conn, MHD_HTTP_BAD_REQUEST, "BAD_REQUEST",
                              "a campaign id is a positive number");
        if (n == 2) {
            ONLY("GET");
            return campaign_get(c, (int64_t)cid, MHD_HTTP_OK);
        }
        if (n == 3 && (!strcmp(seg[2], "pause") || !strcmp(seg[2], "resume") ||
                       !strcmp(seg[2], "abort"))) {
            ONLY("POST");
            NEED_OPERATOR();
            return campaign_action(c, (int64_t)cid, seg[2]);
        }
    }
    if (n == 1 && !strcmp(seg[0], "audit")) {
        ONLY("GET");
        return audit_list(c);
    }
    if (n == 2 && !strcmp(seg[0], "audit") && !strcmp(seg[1], "verify")) {
        ONLY("GET");
        return audit_verify(c);
    }
    if (n == 1 && !strcmp(seg[0], "clouds")) {
        ONLY("GET");
        return clouds(c);
    }
    if (n == 1 && !strcmp(seg[0], "events")) {
        ONLY("GET");
        return events(c);
    }
    return send_error(c->conn, MHD_HTTP_NOT_FOUND, "NOT_FOUND", "no such resource");
}

static MHD_Result_t route(req_ctx *c, const char *url)
{
    if (!strcmp(url, "/healthz")) {
        cJSON *o;
        ONLY("GET");
        o = cJSON_CreateObject();
        cJSON_AddBoolToObject(o, "ok", 1);
        return send_json(c->conn, MHD_HTTP_OK, o);
    }
    if (!strcmp(url, "/") || !strncmp(url, "/dashboard/", 11)) {
        ONLY("GET");
        return dashboard(c, !strcmp(url, "/") ? "index.html" : url + 11);
    }
    if (strncmp(url, "/v1/", 4) != 0 && strcmp(url, "/metrics") != 0)
        return send_error(c->conn, MHD_HTTP_NOT_FOUND, "NOT_FOUND", "no such resource");
    if (!authenticate(c->api, c->conn, c->token_name, &c->op))
        return send_error(c->conn, MHD_HTTP_UNAUTHORIZED, "UNAUTHORIZED",
                          "an API token is required: Authorization: Bearer TOKEN");
    if (!strcmp(url, "/metrics")) {
        ONLY("GET");
        return metrics(c);
    }
    return route_v1(c, url + 4);
}

static MHD_Result_t on_request(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls)
{
    otk_api *api = cls;
    req *rq = *con_cls;
    req_ctx c;
    MHD_Result_t ret;
    (void)version;
    if (rq == NULL) {
        rq = calloc(1, sizeof *rq);
        if (rq == NULL)
            return MHD_NO;
        *con_cls = rq;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!rq->too_big && rq->len + *upload_size <= BODY_MAX) {
            char *p = realloc(rq->body, rq->len + *upload_size + 1);
            if (p == NULL)
                return MHD_NO;
            rq->body = p;
            memcpy(rq->body + rq->len, upload, *upload_size);
            rq->len += *upload_size;
            rq->body[rq->len] = '\0';
        } else {
            rq->too_big = 1;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    memset(&c, 0, sizeof c);
    c.api = api;
    c.conn = conn;
    c.method = method;
    c.rq = rq;
    if (rq->too_big)
        return send_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, "BAD_REQUEST",
                          "the body is larger than %d bytes", BODY_MAX);
    ret = route(&c, url);
    release(api, c.sl, c.broken);
    return ret;
}

static void on_done(void *cls, struct MHD_Connection *conn, void **con_cls,
                    enum MHD_RequestTerminationCode toe)
{
    req *rq = *con_cls;
    (void)cls, (void)conn, (void)toe;
    if (rq) {
        free(rq->body);
        free(rq);
        *con_cls = NULL;
    }
}

/* ---- start and stop ---- */

static char *read_file(const char *path, int secret, char *err, size_t err_size)
{
    FILE *f = fopen(path, "r");
    struct stat st;
    char *buf;
    size_t n;
    if (f == NULL) {
        snprintf(err, err_size, "api: %s: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > 1 << 20 ||
        (secret && (st.st_mode & 077))) {
        snprintf(err, err_size, "api: %s: %s", path,
                 secret && (st.st_mode & 077)
                     ? "a private key group or other users may access (chmod 600)"
                     : "not a regular file of at most 1 MiB");
        fclose(f);
        return NULL;
    }
    buf = malloc((size_t)st.st_size + 1);
    n = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
    fclose(f);
    if (buf == NULL || n != (size_t)st.st_size) {
        free(buf);
        snprintf(err, err_size, "api: %s: cannot read", path);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

/* Parses "host:port" or "[v6]:port" into a socket address. */
static int parse_listen(const char *s, struct sockaddr_storage *ss, int *loopback)
{
    char host[128];
    const char *colon;
    unsigned long port;
    char *end;
    memset(ss, 0, sizeof *ss);
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':' || (size_t)(close - s - 1) >= sizeof host)
            return -1;
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || (size_t)(colon - s) >= sizeof host)
            return -1;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
    }
    port = strtoul(colon + 1, &end, 10);
    if (*end || port == 0 || port > 65535)
        return -1;
    {
        struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
        if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
            a4->sin_family = AF_INET;
            a4->sin_port = htons((uint16_t)port);
            *loopback = (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
            return 0;
        }
        if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
            a6->sin6_family = AF_INET6;
            a6->sin6_port = htons((uint16_t)port);
            *loopback = IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr);
            return 0;
        }
    }
    return -1;
}

otk_api *otk_api_start(const otk_api_config *cfg, const char *database,
                       const otk_api_cloud *clouds_in, size_t n_clouds, otk_api_metrics *m,
                       char *err, size_t err_size)
{
    otk_api *api;
    struct sockaddr_storage ss;
    int loopback = 0;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL;
    if (parse_listen(cfg->listen, &ss, &loopback) != 0) {
        snprintf(err, err_size, "api: listen '%s': expected IP:PORT or [IPv6]:PORT", cfg->listen);
        return NULL;
    }
    if (!cfg->tls && !loopback) {
        snprintf(err, err_size, "api: tls = 0 is allowed on a loopback address only (listen %s)",
                 cfg->listen);
        return NULL;
    }
    if (n_clouds > OTK_AGENT_MAX_CLOUDS)
        n_clouds = OTK_AGENT_MAX_CLOUDS;
    api = calloc(1, sizeof *api);
    if (api == NULL) {
        snprintf(err, err_size, "api: out of memory");
        return NULL;
    }
    api->cfg = *cfg;
    snprintf(api->database, sizeof api->database, "%s", database);
    memcpy(api->clouds, clouds_in, n_clouds * sizeof clouds_in[0]);
    api->n_clouds = n_clouds;
    api->m = m;
    pthread_mutex_init(&api->mu, NULL);
    pthread_cond_init(&api->cv, NULL);
    if (cfg->tokens[0] == '\0') {
        snprintf(err, err_size, "api: tokens (the API tokens file) is required");
        goto fail;
    }
    if (load_tokens(cfg->tokens, api->tokens, &api->n_tokens, err, err_size) != 0)
        goto fail;
    if (cfg->tls) {
        if (!cfg->certfile[0] || !cfg->keyfile[0]) {
            snprintf(err, err_size, "api: tls = 1 needs certfile and keyfile");
            goto fail;
        }
        if (!MHD_is_feature_supported(MHD_FEATURE_TLS)) {
            snprintf(err, err_size, "api: this libmicrohttpd has no TLS");
            goto fail;
        }
        if ((api->cert_pem = read_file(cfg->certfile, 0, err, err_size)) == NULL ||
            (api->key_pem = read_file(cfg->keyfile, 1, err, err_size)) == NULL)
            goto fail;
        flags |= MHD_USE_TLS;
    }
    if (cfg->tls)
        api->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, api, MHD_OPTION_SOCK_ADDR, &ss,
                                  MHD_OPTION_NOTIFY_COMPLETED, on_done, api,
                                  MHD_OPTION_CONNECTION_LIMIT, 64u,
                                  MHD_OPTION_PER_IP_CONNECTION_LIMIT, 32u,
                                  MHD_OPTION_CONNECTION_TIMEOUT, 60u,
                                  MHD_OPTION_HTTPS_MEM_KEY, api->key_pem,
                                  MHD_OPTION_HTTPS_MEM_CERT, api->cert_pem, MHD_OPTION_END);
    else
        api->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, api, MHD_OPTION_SOCK_ADDR, &ss,
                                  MHD_OPTION_NOTIFY_COMPLETED, on_done, api,
                                  MHD_OPTION_CONNECTION_LIMIT, 64u,
                                  MHD_OPTION_PER_IP_CONNECTION_LIMIT, 32u,
                                  MHD_OPTION_CONNECTION_TIMEOUT, 60u, MHD_OPTION_END);
    if (api->d == NULL) {
        snprintf(err, err_size,
                 "api: cannot serve on %s (address in use, or the certificate and key do not "
                 "load)", cfg->listen);
        goto fail;
    }
    return api;
fail:
    otk_api_stop(api);
    return NULL;
}

void otk_api_stop(otk_api *api)
{
    size_t i;
    if (api == NULL)
        return;
    api->stopping = 1;
    pthread_mutex_lock(&api->mu);
    pthread_cond_broadcast(&api->cv);
    pthread_mutex_unlock(&api->mu);
    if (api->d)
        MHD_stop_daemon(api->d);
    for (i = 0; i < POOL_MAX; i++)
        if (api->pool[i].open) {
            otk_store_close(api->pool[i].s);
            otk_crypto_openssl_free(&api->pool[i].c);
        }
    if (api->key_pem) {
        OPENSSL_cleanse(api->key_pem, strlen(api->key_pem));
        free(api->key_pem);
    }
    free(api->cert_pem);
    pthread_cond_destroy(&api->cv);
    pthread_mutex_destroy(&api->mu);
    free(api);
}

/* ---- what a client controls, for the fuzz target (tests/fuzz/fuzz_api.c) ---- */

int otk_api_fuzz_input(const uint8_t *data, size_t n)
{
    char *text = malloc(n + 1), seg[4][80];
    campaign_req rq;
    api_token t;
    struct sockaddr_storage ss;
    uint8_t id[16];
    uint64_t v;
    int loopback;
    size_t k;
    if (text == NULL)
        return 0;
    memcpy(text, data, n);
    text[n] = '\0';
    /* a request body, a tokens line, a path, query values, a listen setting */
    if (parse_campaign_req((const char *)data, n, &rq) == 0) {
        if (rq.kind != OTK_WANT_ROTATE && rq.kind != OTK_WANT_SWITCH)
            abort();
        cJSON_Delete(rq.doc);
    }
    (void)parse_token_line(text, &t);
    k = split(text, seg);
    if (k <= 4)
        for (; k > 0; k--)
            (void)parse_id(seg[k - 1], id, 16);
    (void)parse_u64(text, 0, UINT64_MAX / 2, &v);
    (void)parse_listen(text, &ss, &loopback);
    free(text);
    return 0;
}
