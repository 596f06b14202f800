/* The operator CLI's HTTP API client (cli_api.h). */
#include "cli_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "agent_config.h"
#include "api.h"
#include "otakey/campaign.h"
#include "otakey/wire.h"

#define RESPONSE_MAX (64u << 20)

int cli_api_token(cli_api *c, const char *token_file)
{
    const char *env = getenv("OTAKEY_TOKEN");
    size_t n;
    if (token_file) {
        char err[256];
        FILE *f;
        if (otk_check_private_file(token_file, err, sizeof err) != 0) {
            fprintf(stderr, "otakey: --token-file: %s\n", err);
            return -1;
        }
        f = fopen(token_file, "r");
        if (f == NULL || fgets(c->token, sizeof c->token, f) == NULL) {
            fprintf(stderr, "otakey: --token-file %s: cannot read a token\n", token_file);
            if (f)
                fclose(f);
            return -1;
        }
        fclose(f);
    } else if (env && *env) {
        snprintf(c->token, sizeof c->token, "%s", env);
    } else {
        fprintf(stderr, "otakey: --url needs an API token: --token-file FILE or OTAKEY_TOKEN\n");
        return -1;
    }
    n = strcspn(c->token, "\r\n");
    c->token[n] = '\0';
    if (n == 0) {
        fprintf(stderr, "otakey: the API token is empty\n");
        return -1;
    }
    return 0;
}

typedef struct buf {
    char *p;
    size_t n;
    int too_big;
} buf;

static size_t on_data(char *data, size_t size, size_t nmemb, void *user)
{
    buf *b = user;
    size_t len = size * nmemb;
    char *q;
    if (b->n + len > RESPONSE_MAX) {
        b->too_big = 1;
        return 0;
    }
    q = realloc(b->p, b->n + len + 1);
    if (q == NULL)
        return 0;
    b->p = q;
    memcpy(b->p + b->n, data, len);
    b->n += len;
    b->p[b->n] = '\0';
    return len;
}

cJSON *cli_api_call(const cli_api *c, const char *method, const char *path, const cJSON *body,
                    long *status)
{
    CURL *h = curl_easy_init();
    struct curl_slist *hdr = NULL;
    char auth[340], url[1024], errbuf[CURL_ERROR_SIZE] = "";
    char *text = NULL;
    buf b = {NULL, 0, 0};
    cJSON *o = NULL;
    CURLcode rc;
    *status = 0;
    if (h == NULL)
        return NULL;
    snprintf(url, sizeof url, "%s%s", c->url, path);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->token);
    hdr = curl_slist_append(hdr, auth);
    hdr = curl_slist_append(hdr, "Accept: application/json");
    if (body) {
        text = cJSON_PrintUnformatted(body);
        hdr = curl_slist_append(hdr, "Content-Type: application/json");
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, text ? text : "");
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    /* TLS is verified: peer and name; the CA is the given file or the system's. */
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (c->cafile)
        curl_easy_setopt(h, CURLOPT_CAINFO, c->cafile);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    rc = curl_easy_perform(h);
    if (rc != CURLE_OK) {
        fprintf(stderr, "otakey: %s %s: %s\n", method, url, errbuf[0] ? errbuf : curl_easy_strerror(rc));
    } else {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
        o = b.p ? cJSON_ParseWithLength(b.p, b.n) : NULL;
        if (o == NULL)
            fprintf(stderr, "otakey: %s %s: HTTP %ld without a JSON answer\n", method, url, *status);
    }
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
    free(text);
    free(b.p);
    return o;
}

void cli_api_error(const char *what, const cJSON *o, long status)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "error");
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(o, "code");
    fprintf(stderr, "otakey: %s: %s (HTTP %ld%s%s)\n", what,
            cJSON_IsString(e) ? e->valuestring : "the API refused it", status,
            cJSON_IsString(k) ? ", " : "", cJSON_IsString(k) ? k->valuestring : "");
}

/* ---- rows ---- */

static const char *str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int num(const cJSON *o, const char *key, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v))
        return -1;
    *out = v->valuedouble;
    return 0;
}

static int hex(const cJSON *o, const char *key, uint8_t *out, size_t n)
{
    const char *s = str(o, key);
    return s && strlen(s) == 2 * n && otk_hex_decode(s, out, n) == 0 ? 0 : -1;
}

/* The index of name in names(i) for i in [lo, hi]; -1 when none. */
static int lookup(const char *name, const char *(*names)(int), int lo, int hi)
{
    int i;
    for (i = lo; name && i <= hi; i++)
        if (!strcmp(names(i), name))
            return i;
    return -1;
}

static const char *status_at(int i)
{
    return otk_api_status_name(-i);
}

static const char *msg_at(int i)
{
    return otk_msg_name((uint8_t)i);
}

static const char *camp_state_at(int i)
{
    return otk_campaign_state_name(i);
}

static const char *pause_at(int i)
{
    const char *n = otk_campaign_pause_name(i);
    return n ? n : "";
}

int cli_api_device(const cJSON *o, otk_device_info *d)
{
    double v, c, p, is, seen;
    const char *user = str(o, "user");
    memset(d, 0, sizeof *d);
    if (hex(o, "id", d->id, 16) || hex(o, "batch", d->batch_id, 8) || num(o, "version", &v) ||
        num(o, "cloud", &c) || num(o, "pending_version", &p) || num(o, "issued", &is) ||
        num(o, "last_seen_ms", &seen) || user == NULL)
        return -1;
    d->state = lookup(str(o, "state"), otk_api_state_name, 1, 3);
    d->want = lookup(str(o, "want"), otk_api_want_name, 0, 3);
    if (d->state < 0 || d->want < 0)
        return -1;
    d->version = (uint32_t)v;
    d->cloud = (uint32_t)c;
    d->pending_version = (uint32_t)p;
    d->issued = (uint32_t)is;
    d->last_seen_ms = (int64_t)seen;
    snprintf(d->user, sizeof d->user, "%s", user);
    return 0;
}

int cli_api_batch(const cJSON *o, otk_batch_info *b)
{
    double n;
    const char *name = str(o, "name");
    memset(b, 0, sizeof *b);
    if (hex(o, "batch", b->batch_id, 8) || name == NULL || num(o, "devices", &n))
        return -1;
    snprintf(b->product, sizeof b->product, "%s", name);
    b->devices = (uint64_t)n;
    return 0;
}

int cli_api_campaign(const cJSON *o, otk_campaign_status *st)
{
    double id, tc, rate, canary, maxf, total, started, done, failed, created;
    const char *kind = str(o, "kind"), *sel = str(o, "selector"), *why = str(o, "pause_reason");
    memset(st, 0, sizeof *st);
    if (num(o, "id", &id) || num(o, "target_cloud", &tc) || num(o, "rate", &rate) ||
        num(o, "canary", &canary) || num(o, "max_failures", &maxf) || num(o, "total", &total) ||
        num(o, "started", &started) || num(o, "done", &done) || num(o, "failed", &failed) ||
        num(o, "created_ms", &created) || kind == NULL || sel == NULL)
        return -1;
    st->id = (int64_t)id;
    st->kind = !strcmp(kind, "switch") ? OTK_WANT_SWITCH : OTK_WANT_ROTATE;
    st->target_cloud = (uint32_t)tc;
    snprintf(st->selector, sizeof st->selector, "%s", sel);
    st->state = lookup(str(o, "state"), camp_state_at, 1, 5);
    st->pause_reason = why ? lookup(why, pause_at, 1, 3) : 0;
    if (st->state < 0 || st->pause_reason < 0)
        return -1;
    st->rate = (uint32_t)rate;
    st->canary = (uint32_t)canary;
    st->max_failures = (uint32_t)maxf;
    st->total = (uint64_t)total;
    st->started = (uint64_t)started;
    st->done = (uint64_t)done;
    st->failed = (uint64_t)failed;
    st->created_ms = (int64_t)created;
    return 0;
}

int cli_api_audit(const cJSON *o, otk_audit_row *r)
{
    double seq, ts, v;
    const char *kind = str(o, "kind"), *code = str(o, "code"), *msg = str(o, "msg_type");
    const char *actor = str(o, "actor");
    int k, c, t = 0;
    memset(r, 0, sizeof *r);
    if (num(o, "seq", &seq) || num(o, "ts_ms", &ts) || num(o, "version", &v) || kind == NULL ||
        code == NULL)
        return -1;
    k = lookup(kind, otk_api_audit_kind, 1, 13);
    c = k == OTK_AUD_CAMPAIGN ? lookup(code, camp_state_at, 1, 5) : lookup(code, status_at, 0, 40);
    if (msg)
        t = lookup(msg, msg_at, 1, 15);
    if (k < 0 || c < 0 || t < 0)
        return -1;
    r->seq = (uint64_t)seq;
    r->ts_ms = (int64_t)ts;
    r->ev.kind = (uint8_t)k;
    r->ev.msg_type = (uint8_t)t;
    r->ev.version = (uint32_t)v;
    r->ev.code = k == OTK_AUD_CAMPAIGN ? (otk_status)c : (otk_status)-c;
    if (str(o, "device")) {
        if (hex(o, "device", r->ev.id, 16))
            return -1;
        r->ev.has_id = 1;
    }
    if (actor)
        snprintf(r->actor, sizeof r->actor, "%s", actor);
    return 0;
}
