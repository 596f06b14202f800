/*
 * Transcript test vectors (docs/protocol.md §13): complete protocol runs
 * with fixed randomness, every message and every derived key in hex, in
 * tests/vectors/transcripts/. Each file is checked three ways:
 *
 *  - the spec alone: every derived value is recomputed from the named
 *    inputs with OpenSSL (th, ECDH, HKDF, AES-CCM, every MAC and signature);
 *  - the device alone: a device core whose random source is seeded as the
 *    file says gets the agent's messages and the proof results, and must
 *    send byte for byte the device's messages;
 *  - the agent alone: an agent core (OpenSSL, memory registry and cloud)
 *    seeded as the file says gets the device's messages and the operator's
 *    requests, and must send the agent's messages byte for byte, except the
 *    ECDSA signatures (OpenSSL draws their nonce itself), which must verify.
 *
 * test_vectors --write DIR regenerates the files from a run of both cores.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "flashsim.h"
#include "memcloud.h"
#include "testrng.h"

#include "otakey/agent.h"
#include "otakey/device.h"
#include "otakey/proto.h"
#include "otakey/wire.h"

#define MAX_STEPS 64
#define MAX_KEYS 16

static const char *const type_names[] = {"?", "CLAIM", "CLAIM_RESP", "UPDATE_REQ", "UPDATE_RESP",
                                         "CONFIRM", "ABORT", "ACK", "NACK", "NOTIFY", "STATUS",
                                         "ERROR"};

/* ---- a scenario ---- */

typedef struct cloud_def {
    uint32_t id;
    uint8_t kind;
    char host[OTK_HOST_MAX + 1];
    uint16_t port;
} cloud_def;

typedef struct op_def {
    int want;      /* 0: the claim; OTK_WANT_ROTATE / OTK_WANT_SWITCH */
    uint32_t cloud;
    int refused;   /* the cloud refuses the staged set */
} op_def;

typedef struct scenario {
    const char *name, *about;
    uint8_t proto;
    cloud_def clouds[2];
    uint32_t claim_cloud;
    op_def ops[4];
    size_t n_ops;
} scenario;

static const scenario scenarios[] = {
    {"v1-password", "version 1, password sets: claim, rotation, a rotation the cloud refuses",
     OTK_PROTO_VERSION,
     {{1, OTK_KIND_PASSWORD, "cloud-a.example", 8883}, {2, OTK_KIND_PASSWORD, "cloud-b.example", 8883}},
     1,
     {{0, 0, 0}, {OTK_WANT_ROTATE, 0, 0}, {OTK_WANT_ROTATE, 0, 1}},
     3},
    {"v2-certificate", "version 2, certificate sets: claim, switch to another CA's cloud, a rotation "
                       "the cloud refuses",
     OTK_PROTO_V2,
     {{1, OTK_KIND_CERT, "cloud-a.example", 8883}, {2, OTK_KIND_CERT, "cloud-b.example", 8883}},
     1,
     {{0, 0, 0}, {OTK_WANT_SWITCH, 2, 0}, {OTK_WANT_ROTATE, 0, 1}},
     3},
    {"v2-password", "version 2 device on a password cloud: claim, switch to a certificate cloud, "
                    "a rotation the cloud refuses",
     OTK_PROTO_V2,
     {{1, OTK_KIND_PASSWORD, "cloud-a.example", 8883}, {2, OTK_KIND_CERT, "cloud-b.example", 8883}},
     1,
     {{0, 0, 0}, {OTK_WANT_SWITCH, 2, 0}, {OTK_WANT_ROTATE, 0, 1}},
     3},
};

/* ---- hex ---- */

static void put_hex(FILE *f, const uint8_t *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        fprintf(f, "%02x", p[i]);
}

static int get_hex(const char *s, uint8_t *out, size_t max, size_t *n)
{
    size_t len = strlen(s), i;
    if (len % 2 || len / 2 > max)
        return -1;
    for (i = 0; i < len / 2; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (uint8_t)v;
    }
    *n = len / 2;
    return 0;
}

/* ---- the file, parsed ---- */

typedef struct kv {
    char name[32];
    uint8_t v[OTK_KEYSET2_MAX_LEN + 64];
    size_t n;
} kv;

typedef struct step {
    char kind[32];       /* up, down, proof, op, step */
    int type;            /* message type (up, down) */
    uint8_t msg[OTK_MSG_MAX_LEN];
    size_t len;
    char arg[32];        /* proof ok|refused; op rotate|switch N; step label */
    kv keys[MAX_KEYS];   /* derived values after a response */
    size_t n_keys;
} step;

typedef struct vector {
    char name[64];
    uint8_t proto;
    uint8_t id[OTK_DEVICE_ID_LEN], batch[OTK_BATCH_ID_LEN], pk[OTK_PK_LEN];
    uint8_t agent_priv[OTK_PRIV_LEN], agent_pub[OTK_PUB_LEN];
    cloud_def clouds[2];
    size_t n_clouds;
    uint32_t claim_cloud;
    uint64_t dev_seed, agent_seed;
    step steps[MAX_STEPS];
    size_t n_steps;
} vector;

static int type_of(const char *name)
{
    int t;
    for (t = 1; t <= OTK_MSG_TYPE_MAX; t++)
        if (!strcmp(name, type_names[t]))
            return t;
    return 0;
}

static const kv *key_of(const step *s, const char *name)
{
    size_t i;
    for (i = 0; i < s->n_keys; i++)
        if (!strcmp(s->keys[i].name, name))
            return &s->keys[i];
    return NULL;
}

static int parse(const char *path, vector *v)
{
    FILE *f = fopen(path, "r");
    static char line[8192];
    size_t n;
    int lineno = 0;
    if (f == NULL)
        return -1;
    memset(v, 0, sizeof *v);
    while (fgets(line, sizeof line, f) != NULL) {
        char a[32] = "", b[256] = "", c[4096] = "";
        unsigned long long u;
        int k;
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0')
            continue;
        k = sscanf(line, "%31s %255s %4095s", a, b, c);
        if (!strcmp(a, "vector") && k >= 2) {
            snprintf(v->name, sizeof v->name, "%.63s", b);
        } else if (!strcmp(a, "proto") && k == 2) {
            v->proto = (uint8_t)atoi(b);
        } else if (!strcmp(a, "device_id") && k == 2) {
            if (get_hex(b, v->id, sizeof v->id, &n) || n != sizeof v->id)
                goto bad;
        } else if (!strcmp(a, "batch") && k == 2) {
            if (get_hex(b, v->batch, sizeof v->batch, &n) || n != sizeof v->batch)
                goto bad;
        } else if (!strcmp(a, "pk") || !strcmp(a, "agent_priv") || !strcmp(a, "agent_pub")) {
            uint8_t *dst = !strcmp(a, "pk") ? v->pk : !strcmp(a, "agent_priv") ? v->agent_priv : v->agent_pub;
            size_t want = !strcmp(a, "agent_pub") ? OTK_PUB_LEN : 32;
            static char big[256];
            if (sscanf(line, "%*s %255s", big) != 1 || get_hex(big, dst, want, &n) || n != want)
                goto bad;
        } else if (!strcmp(a, "cloud")) {
            cloud_def *cd = &v->clouds[v->n_clouds];
            unsigned id, kind, port;
            if (v->n_clouds == 2 || sscanf(line, "cloud %u %u %64s %u", &id, &kind, cd->host, &port) != 4)
                goto bad;
            cd->id = id;
            cd->kind = (uint8_t)kind;
            cd->port = (uint16_t)port;
            v->n_clouds++;
        } else if (!strcmp(a, "claim_cloud") && k == 2) {
            v->claim_cloud = (uint32_t)atoi(b);
        } else if ((!strcmp(a, "device_rng_seed") || !strcmp(a, "agent_rng_seed")) && k == 2 &&
                   sscanf(b, "%llu", &u) == 1) {
            *(!strcmp(a, "device_rng_seed") ? &v->dev_seed : &v->agent_seed) = u;
        } else if (!strcmp(a, "key") && v->n_steps > 0) {
            step *s = &v->steps[v->n_steps - 1];
            static char big[4096];
            kv *e;
            if (s->n_keys == MAX_KEYS || sscanf(line, "key %*s %4095s", big) != 1)
                goto bad;
            e = &s->keys[s->n_keys++];
            snprintf(e->name, sizeof e->name, "%.31s", b);
            if (get_hex(big, e->v, sizeof e->v, &e->n))
                goto bad;
        } else if (!strcmp(a, "up") || !strcmp(a, "down") || !strcmp(a, "proof") || !strcmp(a, "op") ||
                   !strcmp(a, "step")) {
            step *s;
            if (v->n_steps == MAX_STEPS)
                goto bad;
            s = &v->steps[v->n_steps++];
            memset(s, 0, sizeof *s);
            snprintf(s->kind, sizeof s->kind, "%s", a);
            if (!strcmp(a, "up") || !strcmp(a, "down")) {
                if ((s->type = type_of(b)) == 0 || get_hex(c, s->msg, sizeof s->msg, &s->len))
                    goto bad;
            } else {
                const char *rest = line + strlen(a);
                while (*rest == ' ')
                    rest++;
                snprintf(s->arg, sizeof s->arg, "%s", rest);
            }
        } else {
            goto bad;
        }
    }
    fclose(f);
    return 0;
bad:
    fprintf(stderr, "%s:%d: cannot read: %s\n", path, lineno, line);
    fclose(f);
    return -1;
}

/* ---- the two cores, set up as a vector says ---- */

typedef struct dev_side {
    otk_testrng rng;
    union {
        uint8_t b[OTK_CRYPTO_MBEDTLS_STATE_SIZE];
        void *align;
    } st;
    otk_crypto crypto;
    otk_flashsim flash;
    otk_port port;
    otk_device dev;
    otk_device_config cfg;
    uint8_t pending[OTK_MSG_MAX_LEN]; /* the device's answer to the last input */
    size_t pending_len;
} dev_side;

static int dev_open(dev_side *d, const vector *v)
{
    memset(d, 0, sizeof *d);
    otk_testrng_seed(&d->rng, v->dev_seed);
    if (otk_crypto_mbedtls_init(&d->crypto, d->st.b, sizeof d->st.b, otk_testrng_fill, &d->rng) != OTK_OK ||
        otk_flashsim_init(&d->flash, 2 * 4096, 4096, 8) != 0)
        return -1;
    otk_flashsim_port(&d->flash, &d->crypto, &d->port);
    memcpy(d->cfg.device_id, v->id, sizeof v->id);
    memcpy(d->cfg.batch_id, v->batch, sizeof v->batch);
    memcpy(d->cfg.pk, v->pk, sizeof v->pk);
    memcpy(d->cfg.agent_pub, v->agent_pub, sizeof v->agent_pub);
    d->cfg.retry_min_ms = 1000;
    d->cfg.retry_max_ms = 8000;
    d->cfg.proto = v->proto;
    return otk_device_init(&d->dev, &d->port, &d->cfg) == OTK_OK ? 0 : -1;
}

static void dev_close(dev_side *d)
{
    otk_device_free(&d->dev);
    otk_flashsim_free(&d->flash);
    otk_crypto_mbedtls_free(&d->crypto);
}

/* What the device sends next: its answer to the last input, or its own next message. */
static otk_status dev_next(dev_side *d, uint8_t *out, size_t *n)
{
    if (d->pending_len) {
        memcpy(out, d->pending, d->pending_len);
        *n = d->pending_len;
        d->pending_len = 0;
        return OTK_OK;
    }
    return otk_device_next(&d->dev, out, OTK_MSG_MAX_LEN, n);
}

typedef struct agent_side {
    otk_testrng rng;
    otk_crypto crypto;
    otk_memreg *reg;
    otk_memcloud *cloud;
    otk_registry regif;
    otk_cloud_adapter cloudif;
    otk_agent_config cfg;
    otk_agent agent;
    /* The agent's random draws since the last mark (to name its ephemeral key). */
    uint8_t draws[16][32];
    size_t n_draws;
} agent_side;

static int agent_rng(void *ctx, uint8_t *out, size_t len)
{
    agent_side *a = ctx;
    otk_testrng_fill(&a->rng, out, len);
    if (len == 32 && a->n_draws < 16)
        memcpy(a->draws[a->n_draws++], out, 32);
    return 0;
}

static int agent_open(agent_side *a, const vector *v)
{
    size_t i;
    memset(a, 0, sizeof *a);
    otk_testrng_seed(&a->rng, v->agent_seed);
    if (otk_crypto_openssl_init(&a->crypto, agent_rng, a) != OTK_OK ||
        (a->reg = otk_memreg_new()) == NULL || (a->cloud = otk_memcloud_new()) == NULL ||
        otk_memreg_add_batch(a->reg, v->batch, v->pk) != OTK_OK)
        return -1;
    otk_memreg_bind(a->reg, &a->regif);
    otk_memcloud_adapter(a->cloud, &a->cloudif);
    memcpy(a->cfg.sign_priv, v->agent_priv, 32);
    memcpy(a->cfg.sign_pub, v->agent_pub, 64);
    for (i = 0; i < v->n_clouds; i++) {
        a->cfg.clouds[i].cloud_id = v->clouds[i].id;
        a->cfg.clouds[i].kind = v->clouds[i].kind;
        snprintf(a->cfg.clouds[i].host, sizeof a->cfg.clouds[i].host, "%s", v->clouds[i].host);
        a->cfg.clouds[i].port = v->clouds[i].port;
        a->cfg.clouds[i].flags = OTK_CLOUD_FLAG_TLS;
    }
    a->cfg.n_clouds = v->n_clouds;
    a->cfg.claim_cloud = v->claim_cloud;
    return otk_agent_init(&a->agent, &a->crypto, &a->regif, &a->cloudif, &a->cfg) == OTK_OK ? 0 : -1;
}

static void agent_close(agent_side *a)
{
    otk_memreg_free(a->reg);
    otk_memcloud_free(a->cloud);
    otk_crypto_openssl_free(&a->crypto);
}

/* Where an agent message's signature sits (0: none). */
static size_t sig_at(const uint8_t *m, size_t len)
{
    if (len < OTK_HDR_LEN)
        return 0;
    if (m[1] == OTK_MSG_CLAIM_RESP || m[1] == OTK_MSG_UPDATE_RESP || m[1] == OTK_MSG_NACK)
        return len - OTK_SIG_LEN;
    return 0;
}

/* ---- writing a vector from a run of both cores ---- */

static void line_msg(FILE *f, const char *dir, const uint8_t *m, size_t n)
{
    fprintf(f, "%s %s ", dir, type_names[m[1] <= OTK_MSG_TYPE_MAX ? m[1] : 0]);
    put_hex(f, m, n);
    fputc('\n', f);
}

static void line_key(FILE *f, const char *name, const uint8_t *p, size_t n)
{
    fprintf(f, "key %s ", name);
    put_hex(f, p, n);
    fputc('\n', f);
}

/*
 * The values a response derives from (docs/protocol.md §5, §11): written
 * after it, computed again here from the two cores' secrets.
 */
static int derive(FILE *f, const otk_crypto *c, const uint8_t *req, size_t req_len, const uint8_t *resp,
                  size_t resp_len, const uint8_t e_d[32], const uint8_t *ak_prev, agent_side *a)
{
    otk_msg m;
    uint8_t th[32], ss[32], ss2[32], prk[32], key[16], iv[13], digest[32], ikm[64];
    uint8_t pt[OTK_KEYSET2_MAX_LEN];
    size_t pt_len = 0, i;
    int found = 0;
    if (otk_msg_decode(resp, resp_len, &m) != OTK_OK || otk_transcript(c, req, req_len, th) != OTK_OK ||
        c->ecdh(c->ctx, e_d, m.epub, ss) != OTK_OK)
        return -1;
    line_key(f, "th", th, 32);
    line_key(f, "e_d", e_d, 32);
    for (i = 0; i < a->n_draws && !found; i++)
        if (c->ecdh(c->ctx, a->draws[i], req + (req[1] == OTK_MSG_CLAIM ? 42 : 38), ss2) == OTK_OK &&
            memcmp(ss, ss2, 32) == 0) {
            line_key(f, "e_a", a->draws[i], 32);
            found = 1;
        }
    if (!found)
        return -1;
    line_key(f, "ss", ss, 32);
    memcpy(ikm, ss, 32);
    if (ak_prev != NULL) {
        memcpy(ikm + 32, ak_prev, 32);
        line_key(f, "ak_committed", ak_prev, 32);
    }
    if (c->hkdf_extract(c->ctx, th, 32, ikm, ak_prev ? 64 : 32, prk) != OTK_OK ||
        otk_resp_keys_v(c, m.proto, th, ss, ak_prev, m.epub, key, iv) != OTK_OK ||
        otk_resp_digest(c, th, resp, resp_len - OTK_SIG_LEN, digest) != OTK_OK ||
        otk_resp_open_pt(c, resp, resp_len, &m, th, e_d, ak_prev, a->cfg.sign_pub, pt, sizeof pt,
                         &pt_len) != OTK_OK)
        return -1;
    line_key(f, "prk", prk, 32);
    line_key(f, "k", key, 16);
    line_key(f, "iv", iv, 13);
    line_key(f, "sig_digest", digest, 32);
    line_key(f, "plaintext", pt, pt_len);
    return 0;
}

static int write_vector(const scenario *sc, const char *dir, uint64_t seed)
{
    char path[512];
    FILE *f;
    vector v;
    dev_side d;
    agent_side a;
    otk_testrng keys;
    uint8_t out[OTK_MSG_MAX_LEN], reply[OTK_MSG_MAX_LEN], req[OTK_MSG_MAX_LEN], ak_prev[32];
    size_t n = 0, rn = 0, req_len = 0, i, o;
    int have_prev = 0, rc = -1;
    otk_crypto verify;
    memset(&v, 0, sizeof v);
    snprintf(v.name, sizeof v.name, "%s", sc->name);
    v.proto = sc->proto;
    memset(v.id, 0xd0, sizeof v.id);
    v.id[15] = 0x01;
    memcpy(v.batch, "\x00\x00\x00\x01\x00\x00\x00\x07", 8);
    otk_testrng_seed(&keys, seed);
    otk_testrng_fill(&keys, v.pk, sizeof v.pk);
    v.dev_seed = seed * 10 + 1;
    v.agent_seed = seed * 10 + 2;
    memcpy(v.clouds, sc->clouds, sizeof v.clouds);
    v.n_clouds = 2;
    v.claim_cloud = sc->claim_cloud;
    /* The agent's signing key, from its own stream. */
    if (otk_crypto_openssl_init(&verify, otk_testrng_fill, &keys) != OTK_OK ||
        verify.ec_keygen(verify.ctx, OTK_KEY_EPHEMERAL, v.agent_priv, v.agent_pub) != OTK_OK)
        return -1;
    snprintf(path, sizeof path, "%s/%s.txt", dir, sc->name);
    if ((f = fopen(path, "w")) == NULL || dev_open(&d, &v) != 0 || agent_open(&a, &v) != 0)
        return -1;
    fprintf(f, "# otakey transcript test vector (docs/protocol.md §13): %s.\n", sc->about);
    fprintf(f, "# Written by tests/test_vectors --write; checked by ctest test_vectors.\n");
    fprintf(f, "vector %s\nproto %u\ndevice_id ", v.name, v.proto);
    put_hex(f, v.id, sizeof v.id);
    fprintf(f, "\nbatch ");
    put_hex(f, v.batch, sizeof v.batch);
    fprintf(f, "\npk ");
    put_hex(f, v.pk, sizeof v.pk);
    fprintf(f, "\nagent_priv ");
    put_hex(f, v.agent_priv, 32);
    fprintf(f, "\nagent_pub ");
    put_hex(f, v.agent_pub, 64);
    fprintf(f, "\n# cloud ID KIND HOST PORT (flags: TLS)\n");
    for (i = 0; i < 2; i++)
        fprintf(f, "cloud %u %u %s %u\n", (unsigned)v.clouds[i].id, (unsigned)v.clouds[i].kind,
                v.clouds[i].host, (unsigned)v.clouds[i].port);
    fprintf(f, "claim_cloud %u\ndevice_rng_seed %llu\nagent_rng_seed %llu\n", (unsigned)v.claim_cloud,
            (unsigned long long)v.dev_seed, (unsigned long long)v.agent_seed);
    for (o = 0; o < sc->n_ops; o++) {
        const op_def *op = &sc->ops[o];
        int staged = 0;
        fprintf(f, "\nstep %s\n", op->want == 0 ? "claim"
                                  : op->want == OTK_WANT_ROTATE ? (op->refused ? "rotation-refused" : "rotation")
                                                                : "switch");
        if (op->want != 0) {
            if (otk_agent_request_update(&a.agent, v.id, op->want, op->cloud, reply, sizeof reply, &rn) !=
                    OTK_OK ||
                rn == 0)
                goto out;
            fprintf(f, "op %s %u\n", op->want == OTK_WANT_ROTATE ? "rotate" : "switch", (unsigned)op->cloud);
            line_msg(f, "down", reply, rn);
            if (otk_device_receive(&d.dev, reply, rn, d.pending, sizeof d.pending, &d.pending_len) != OTK_OK)
                goto out;
        }
        /* request -> response -> proof -> CONFIRM/ABORT -> ACK/NACK */
        while (!staged) {
            if (dev_next(&d, out, &n) != OTK_OK || n == 0)
                goto out;
            line_msg(f, "up", out, n);
            a.n_draws = 0;
            if (otk_agent_handle(&a.agent, out, n, reply, sizeof reply, &rn) != OTK_OK || rn == 0)
                goto out;
            memcpy(req, out, n);
            req_len = n;
            line_msg(f, "down", reply, rn);
            if (reply[1] == OTK_MSG_CLAIM_RESP || reply[1] == OTK_MSG_UPDATE_RESP) {
                uint8_t e_d[32];
                memcpy(e_d, d.dev.eph_priv, 32);
                if (d.dev.keyed)
                    line_key(f, "d_priv", d.dev.dev_priv, 32);
                if (derive(f, &verify, req, req_len, reply, rn, e_d,
                           reply[1] == OTK_MSG_UPDATE_RESP && have_prev ? ak_prev : NULL, &a) != 0)
                    goto out;
                staged = 1;
            }
            if (otk_device_receive(&d.dev, reply, rn, d.pending, sizeof d.pending, &d.pending_len) != OTK_OK)
                goto out;
        }
        fprintf(f, "proof %s\n", op->refused ? "refused" : "ok");
        if (otk_device_proof(&d.dev, op->refused ? OTK_PROOF_REFUSED : OTK_PROOF_OK, d.pending,
                             sizeof d.pending, &d.pending_len) != OTK_OK ||
            dev_next(&d, out, &n) != OTK_OK || n == 0)
            goto out;
        line_msg(f, "up", out, n);
        if (otk_agent_handle(&a.agent, out, n, reply, sizeof reply, &rn) != OTK_OK || rn == 0)
            goto out;
        line_msg(f, "down", reply, rn);
        if (otk_device_receive(&d.dev, reply, rn, d.pending, sizeof d.pending, &d.pending_len) != OTK_OK)
            goto out;
        if (!op->refused) {
            otk_keyset ks;
            if (otk_ks_load(&d.dev.ks, 0, &ks) != OTK_OK)
                goto out;
            memcpy(ak_prev, ks.ak, 32);
            otk_wipe(&ks, sizeof ks);
            have_prev = 1;
        }
    }
    rc = 0;
out:
    dev_close(&d);
    agent_close(&a);
    otk_crypto_openssl_free(&verify);
    if (fclose(f) != 0)
        rc = -1;
    if (rc != 0)
        fprintf(stderr, "test_vectors: writing %s failed\n", path);
    return rc;
}

/* ---- checking a vector ---- */

/* Every derived value, recomputed from the named inputs with OpenSSL (the spec alone). */
static void check_spec(const vector *v)
{
    otk_crypto c;
    uint8_t ak_committed[32], ak_staged[32], req[OTK_MSG_MAX_LEN];
    size_t req_len = 0, i;
    int has_committed = 0, has_staged = 0;
    CHECK_OK(otk_crypto_openssl_init(&c, NULL, NULL));
    for (i = 0; i < v->n_steps; i++) {
        const step *s = &v->steps[i];
        const uint8_t *mac_key = NULL;
        otk_msg m;
        if (s->len == 0)
            continue;
        CHECK_OK(otk_msg_decode(s->msg, s->len, &m));
        CHECK(memcmp(m.device_id, v->id, 16) == 0 && m.proto == v->proto);
        switch (s->type) {
        case OTK_MSG_CLAIM: mac_key = v->pk; break;
        case OTK_MSG_UPDATE_REQ:
        case OTK_MSG_NOTIFY:
        case OTK_MSG_STATUS: mac_key = has_committed ? ak_committed : NULL; break;
        case OTK_MSG_CONFIRM:
        case OTK_MSG_ABORT:
        case OTK_MSG_ACK: mac_key = has_staged ? ak_staged : NULL; break;
        default: break;
        }
        if (s->type == OTK_MSG_CLAIM || s->type == OTK_MSG_UPDATE_REQ || s->type == OTK_MSG_NOTIFY ||
            s->type == OTK_MSG_CONFIRM || s->type == OTK_MSG_ABORT || s->type == OTK_MSG_ACK) {
            CHECK(mac_key != NULL);
            if (mac_key)
                CHECK_OK(otk_mac_check(&c, mac_key, 32, s->msg, otk_msg_auth_offset(s->msg[1], s->len),
                                       NULL, 0));
        }
        if (m.has_key || (v->proto == OTK_PROTO_V2 && s->type == OTK_MSG_CLAIM)) {
            /* The pop: the device's new key signs the request (§11.2). */
            uint8_t d[32];
            CHECK_OK(otk_pop_digest(&c, s->msg, otk_msg_pop_offset(s->msg, s->len), d));
            CHECK_OK(c.ecdsa_verify(c.ctx, m.dpub, d, m.pop));
        }
        if (!strcmp(s->kind, "up") && (s->type == OTK_MSG_CLAIM || s->type == OTK_MSG_UPDATE_REQ)) {
            memcpy(req, s->msg, s->len);
            req_len = s->len;
        }
        if (s->type == OTK_MSG_NACK) {
            uint8_t d[32];
            CHECK_OK(otk_nack_digest(&c, s->msg, d));
            CHECK_OK(c.ecdsa_verify(c.ctx, v->agent_pub, d, s->msg + s->len - OTK_SIG_LEN));
            has_staged = 0;
        }
        if (s->type == OTK_MSG_ACK && has_staged) {
            memcpy(ak_committed, ak_staged, 32);
            has_committed = 1;
            has_staged = 0;
        }
        if (s->type == OTK_MSG_CLAIM_RESP || s->type == OTK_MSG_UPDATE_RESP) {
            const kv *th = key_of(s, "th"), *ed = key_of(s, "e_d"), *ea = key_of(s, "e_a"),
                     *ss = key_of(s, "ss"), *prk = key_of(s, "prk"), *k = key_of(s, "k"),
                     *iv = key_of(s, "iv"), *dg = key_of(s, "sig_digest"), *pt = key_of(s, "plaintext"),
                     *dp = key_of(s, "d_priv");
            uint8_t x[32], y[32], key[16], nonce[13], ikm[64], out[OTK_KEYSET2_MAX_LEN];
            size_t out_len = 0;
            otk_keyset ks;
            CHECK(th && ed && ea && ss && prk && k && iv && dg && pt);
            if (!(th && ed && ea && ss && prk && k && iv && dg && pt))
                continue;
            CHECK_OK(otk_transcript(&c, req, req_len, x));
            CHECK(memcmp(x, th->v, 32) == 0);
            /* ss = ECDH(e_d, E_a) = ECDH(e_a, E_d) */
            CHECK_OK(c.ecdh(c.ctx, ed->v, m.epub, x));
            CHECK_OK(c.ecdh(c.ctx, ea->v, req + (req[1] == OTK_MSG_CLAIM ? 42 : 38), y));
            CHECK(memcmp(x, ss->v, 32) == 0 && memcmp(y, ss->v, 32) == 0);
            memcpy(ikm, ss->v, 32);
            if (s->type == OTK_MSG_UPDATE_RESP)
                memcpy(ikm + 32, ak_committed, 32);
            CHECK_OK(c.hkdf_extract(c.ctx, th->v, 32, ikm, s->type == OTK_MSG_UPDATE_RESP ? 64 : 32, x));
            CHECK(memcmp(x, prk->v, 32) == 0);
            CHECK_OK(otk_resp_keys_v(&c, m.proto, th->v, ss->v,
                                     s->type == OTK_MSG_UPDATE_RESP ? ak_committed : NULL, m.epub, key,
                                     nonce));
            CHECK(memcmp(key, k->v, 16) == 0 && memcmp(nonce, iv->v, 13) == 0);
            CHECK_OK(otk_resp_digest(&c, th->v, s->msg, s->len - OTK_SIG_LEN, x));
            CHECK(memcmp(x, dg->v, 32) == 0);
            CHECK_OK(c.ecdsa_verify(c.ctx, v->agent_pub, dg->v, s->msg + s->len - OTK_SIG_LEN));
            CHECK_OK(otk_resp_open_pt(&c, s->msg, s->len, &m, th->v, ed->v,
                                      s->type == OTK_MSG_UPDATE_RESP ? ak_committed : NULL, v->agent_pub,
                                      out, sizeof out, &out_len));
            CHECK(out_len == pt->n && memcmp(out, pt->v, out_len) == 0);
            memset(&ks, 0, sizeof ks);
            CHECK_OK(otk_keyset_decode_v(out, out_len, m.proto, &ks));
            memcpy(ak_staged, ks.ak, 32);
            has_staged = 1;
            if (ks.kind == OTK_KIND_CERT) {
                /* The certificate carries the key the device sent, d_priv's. */
                uint8_t point[65], pd[32], sig[64];
                size_t j;
                int in_cert = 0;
                CHECK(dp != NULL);
                point[0] = 4;
                memcpy(point + 1, req + (req[1] == OTK_MSG_CLAIM ? 106 : 103), 64);
                for (j = 0; j + sizeof point <= ks.cert_len; j++)
                    in_cert |= memcmp(ks.cert + j, point, sizeof point) == 0;
                CHECK(in_cert);
                if (dp) {
                    memset(pd, 7, sizeof pd);
                    CHECK_OK(c.ecdsa_sign(c.ctx, dp->v, pd, sig));
                    CHECK_OK(c.ecdsa_verify(c.ctx, point + 1, pd, sig));
                }
            }
            otk_wipe(&ks, sizeof ks);
        }
    }
    otk_crypto_openssl_free(&c);
}

/* The device core alone: the agent's messages in, the device's out, byte for byte. */
static void check_device(const vector *v)
{
    dev_side d;
    uint8_t out[OTK_MSG_MAX_LEN];
    size_t n = 0, i;
    unsigned compared = 0;
    CHECK(dev_open(&d, v) == 0);
    for (i = 0; i < v->n_steps; i++) {
        const step *s = &v->steps[i];
        if (!strcmp(s->kind, "up")) {
            CHECK_OK(dev_next(&d, out, &n));
            CHECK(n == s->len && memcmp(out, s->msg, n) == 0);
            if (n != s->len || memcmp(out, s->msg, n) != 0)
                fprintf(stderr, "%s: device message %zu (%s) differs\n", v->name, i, type_names[s->type]);
            compared++;
        } else if (!strcmp(s->kind, "down")) {
            CHECK_OK(otk_device_receive(&d.dev, s->msg, s->len, d.pending, sizeof d.pending,
                                        &d.pending_len));
        } else if (!strcmp(s->kind, "proof")) {
            CHECK_OK(otk_device_proof(&d.dev, !strcmp(s->arg, "ok") ? OTK_PROOF_OK : OTK_PROOF_REFUSED,
                                      d.pending, sizeof d.pending, &d.pending_len));
        }
    }
    CHECK(compared >= 6);
    CHECK(otk_device_state(&d.dev) == OTK_DEV_READY);
    dev_close(&d);
}

/* The agent core alone: the device's messages in, the agent's out (signatures verified). */
static void check_agent(const vector *v)
{
    agent_side a;
    uint8_t out[OTK_MSG_MAX_LEN];
    size_t n = 0, i;
    unsigned compared = 0;
    CHECK(agent_open(&a, v) == 0);
    for (i = 0; i < v->n_steps; i++) {
        const step *s = &v->steps[i];
        if (!strcmp(s->kind, "op")) {
            char what[16] = "";
            unsigned cloud = 0;
            CHECK(sscanf(s->arg, "%15s %u", what, &cloud) == 2);
            CHECK_OK(otk_agent_request_update(&a.agent, v->id,
                                              !strcmp(what, "rotate") ? OTK_WANT_ROTATE : OTK_WANT_SWITCH,
                                              cloud, out, sizeof out, &n));
        } else if (!strcmp(s->kind, "up")) {
            CHECK_OK(otk_agent_handle(&a.agent, s->msg, s->len, out, sizeof out, &n));
        } else if (!strcmp(s->kind, "down")) {
            size_t sig = sig_at(s->msg, s->len);
            int same = n == s->len && memcmp(out, s->msg, sig ? sig : n) == 0;
            CHECK(same);
            if (!same)
                fprintf(stderr, "%s: agent message %zu (%s) differs\n", v->name, i, type_names[s->type]);
            if (sig && same) {
                /* OpenSSL draws the ECDSA nonce itself: the signature is checked, not compared. */
                uint8_t d[32], th[32];
                size_t j;
                if (s->type == OTK_MSG_NACK) {
                    CHECK_OK(otk_nack_digest(&a.crypto, out, d));
                } else {
                    const kv *t = NULL;
                    for (j = 0; j < s->n_keys; j++)
                        if (!strcmp(s->keys[j].name, "th"))
                            t = &s->keys[j];
                    CHECK(t != NULL);
                    if (t == NULL)
                        continue;
                    memcpy(th, t->v, 32);
                    CHECK_OK(otk_resp_digest(&a.crypto, th, out, sig, d));
                }
                CHECK_OK(a.crypto.ecdsa_verify(a.crypto.ctx, v->agent_pub, d, out + sig));
            }
            compared++;
        }
    }
    CHECK(compared >= 6);
    agent_close(&a);
}

int main(int argc, char **argv)
{
    size_t i;
    if (argc == 3 && !strcmp(argv[1], "--write")) {
        for (i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++)
            if (write_vector(&scenarios[i], argv[2], 100 + i) != 0)
                return 1;
        printf("written to %s\n", argv[2]);
        return 0;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: test_vectors DIR | --write DIR\n");
        return 2;
    }
    for (i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++) {
        static vector v;
        char path[512];
        snprintf(path, sizeof path, "%s/%s.txt", argv[1], scenarios[i].name);
        CHECK(parse(path, &v) == 0);
        if (v.n_steps == 0)
            continue;
        check_spec(&v);
        check_device(&v);
        check_agent(&v);
    }
    return CHECK_DONE();
}
