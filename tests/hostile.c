/*
 * otakey-hostile: hostile clients against a running otakey-agent over the
 * real agent broker.
 *
 *   otakey-hostile attacks --broker HOST:PORT --server HOST:PORT --cafile FILE
 *       --user U --password P --db DB --batch HEX16 --pk FILE --victim HEX32 --victim-flash FILE
 *       --victim-status FILE --rotate-cmd CMD --ready FILE
 *   otakey-hostile flood --broker HOST:PORT --cafile FILE --batch HEX16
 *       [--conns N] [--seconds S] [--inflight N] [--rate PER_SECOND]
 *   otakey-hostile hijack --broker HOST:PORT --cafile FILE [--conns N] [--seconds S]
 *       [--takeover CLIENT_ID] [--group NAME]
 *
 * attacks: with the broker-access credentials (the agent's, as an attacker
 * who stole them would, on the servers' listener --server) it watches the victim device claim and rotate,
 * then replays and forges messages, sends malformed ones from an
 * anonymous client of its own, and checks each reply against
 * docs/protocol.md and each audit row in the registry. One line per attack
 * ("PASS"/"FAIL"); exit 0 when every attack got what was expected.
 *
 * Exit codes: 0 all as expected, 1 an attack got something else or the
 * set-up failed, 2 bad usage.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent_config.h"
#include "hostile.h"
#include "otakey/crypto.h"
#include "otakey/keystore.h"
#include "otakey/proto.h"
#include "posix_port.h"

enum { AUD_CLAIM_REFUSED = 3, AUD_REFUSED = 7, AUD_NONE = 0 };

typedef struct ctx {
    hx_broker b;   /* the device listener (anonymous clients) */
    hx_broker srv; /* the servers' listener (the stolen credentials) */
    const char *db_path, *victim_flash, *victim_status, *rotate_cmd;
    uint8_t batch[8], pk[32], victim[16], own[16];
    char victim_hex[33], own_hex[33];
    otk_crypto crypto;
    hx_capture cap;
    struct mosquitto *inj;  /* broker-access injector */
    struct mosquitto *anon; /* anonymous client with an id of its own */
    sqlite3 *db;
    int passes, fails;
} ctx;

/* What one attack sends and expects. */
typedef struct attack {
    const char *name;
    struct mosquitto *via;  /* publisher */
    const char *up_id_hex;  /* topic otakey/v1/up/<this> */
    const char *down_id_hex; /* where a reply would come */
    const uint8_t *msg;
    size_t len;
    uint8_t reply;          /* expected reply type, 0: none */
    otk_status reply_code;  /* ERROR / NACK code */
    uint32_t reply_version; /* ACK / NACK version */
    int audit_kind;         /* AUD_NONE: no audit row for audit_id */
    otk_status audit_code;
    const uint8_t *audit_id; /* NULL: the row has no device */
} attack;

/* ---- registry queries (read-only; the agent writes) ---- */

static int64_t audit_max_seq(ctx *c)
{
    sqlite3_stmt *s;
    int64_t n = -1;
    if (sqlite3_prepare_v2(c->db, "SELECT coalesce(max(seq), 0) FROM audit", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return n;
}

/* Rows after seq with this kind (0: any kind) and code (when kind != 0) for id (NULL: no device). */
static int64_t audit_count(ctx *c, int64_t after, int kind, otk_status code, const uint8_t *id)
{
    sqlite3_stmt *s;
    int64_t n = -1;
    const char *sql =
        id ? "SELECT count(*) FROM audit WHERE seq > ?1 AND (?2 = 0 OR (kind = ?2 AND code = ?3))"
             " AND device = ?4"
           : "SELECT count(*) FROM audit WHERE seq > ?1 AND (?2 = 0 OR (kind = ?2 AND code = ?3))"
             " AND device IS NULL";
    if (sqlite3_prepare_v2(c->db, sql, -1, &s, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(s, 1, after);
    sqlite3_bind_int(s, 2, kind);
    sqlite3_bind_int(s, 3, code);
    if (id)
        sqlite3_bind_blob(s, 4, id, 16, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return n;
}

/* ---- message builders ---- */

static void rnd(ctx *c, uint8_t *p, size_t n)
{
    if (c->crypto.random(c->crypto.ctx, p, n) != OTK_OK)
        abort();
}

/* A CLAIM for id with a fresh nonce and ephemeral key; MAC under pk, or random when pk is NULL. */
static size_t build_claim(ctx *c, const uint8_t id[16], const uint8_t batch[8], const uint8_t *pk,
                          uint8_t *out)
{
    otk_msg m;
    uint8_t priv[32];
    size_t len = 0;
    memset(&m, 0, sizeof m);
    m.type = OTK_MSG_CLAIM;
    memcpy(m.device_id, id, 16);
    memcpy(m.batch_id, batch, 8);
    rnd(c, m.nonce, sizeof m.nonce);
    if (c->crypto.ec_keygen(c->crypto.ctx, OTK_KEY_EPHEMERAL, priv, m.epub) != OTK_OK ||
        otk_msg_encode(&m, out, OTK_MSG_MAX_LEN, &len) != OTK_OK)
        abort();
    otk_wipe(priv, sizeof priv);
    if (pk == NULL)
        rnd(c, out + otk_msg_auth_offset(OTK_MSG_CLAIM, len), OTK_MAC_LEN);
    else if (otk_mac_write(&c->crypto, pk, 32, out, otk_msg_auth_offset(OTK_MSG_CLAIM, len), NULL, 0) != OTK_OK)
        abort();
    return len;
}

/* An UPDATE_REQ naming version, MACed under ak (random MAC when ak is NULL). */
static size_t build_update_req(ctx *c, const uint8_t id[16], uint32_t version, const uint8_t *ak,
                               uint8_t *out)
{
    otk_msg m;
    uint8_t priv[32];
    size_t len = 0, off;
    memset(&m, 0, sizeof m);
    m.type = OTK_MSG_UPDATE_REQ;
    memcpy(m.device_id, id, 16);
    m.version = version;
    rnd(c, m.nonce, sizeof m.nonce);
    if (c->crypto.ec_keygen(c->crypto.ctx, OTK_KEY_EPHEMERAL, priv, m.epub) != OTK_OK ||
        otk_msg_encode(&m, out, OTK_MSG_MAX_LEN, &len) != OTK_OK)
        abort();
    otk_wipe(priv, sizeof priv);
    off = otk_msg_auth_offset(OTK_MSG_UPDATE_REQ, len);
    if (ak == NULL)
        rnd(c, out + off, OTK_MAC_LEN);
    else if (otk_mac_write(&c->crypto, ak, 32, out, off, NULL, 0) != OTK_OK)
        abort();
    return len;
}

/* ABORT, NACK: fixed layouts whose authenticator is random (a forgery). */
static size_t build_forged(ctx *c, uint8_t type, const uint8_t id[16], uint32_t version,
                           otk_status code, uint8_t *out)
{
    otk_msg m;
    size_t len = 0;
    memset(&m, 0, sizeof m);
    m.type = type;
    memcpy(m.device_id, id, 16);
    m.version = version;
    m.code = (int16_t)code;
    if (otk_msg_encode(&m, out, OTK_MSG_MAX_LEN, &len) != OTK_OK)
        abort();
    rnd(c, out + otk_msg_auth_offset(type, len), type == OTK_MSG_NACK ? OTK_SIG_LEN : OTK_MAC_LEN);
    return len;
}

/* ---- checks ---- */

static void describe(const uint8_t *msg, size_t len, int found, char *out, size_t n)
{
    if (!found)
        snprintf(out, n, "no reply");
    else if (msg[1] == OTK_MSG_ERROR && len >= OTK_ERROR_LEN)
        snprintf(out, n, "ERROR(%s) %s", otk_msg_name(msg[18]),
                 otk_strerror((int16_t)otk_get_u16(msg + 20)));
    else if (msg[1] == OTK_MSG_NACK && len >= 24)
        snprintf(out, n, "NACK v%u %s", (unsigned)otk_get_u32(msg + 18),
                 otk_strerror((int16_t)otk_get_u16(msg + 22)));
    else if ((msg[1] == OTK_MSG_ACK || msg[1] == OTK_MSG_STATUS) && len >= 22)
        snprintf(out, n, "%s v%u", otk_msg_name(msg[1]), (unsigned)otk_get_u32(msg + 18));
    else
        snprintf(out, n, "%s", otk_msg_name(msg[1]));
}

static void expected(const attack *a, char *out, size_t n)
{
    uint8_t m[24] = {0};
    size_t len = 0;
    if (a->reply) {
        m[1] = a->reply;
        if (a->reply == OTK_MSG_ERROR) {
            m[18] = a->msg && a->len > 1 ? a->msg[1] : 0;
            otk_put_u16(m + 20, (uint16_t)(int16_t)a->reply_code);
            len = OTK_ERROR_LEN;
        } else {
            otk_put_u32(m + 18, a->reply_version);
            otk_put_u16(m + 22, (uint16_t)(int16_t)a->reply_code);
            len = 24;
        }
    }
    describe(m, len, a->reply != 0, out, n);
}

static void result(ctx *c, const char *name, const char *want, const char *got, int ok)
{
    printf("%-4s | %-44s | expected: %-30s | got: %s\n", ok ? "PASS" : "FAIL", name, want, got);
    fflush(stdout);
    if (ok)
        c->passes++;
    else
        c->fails++;
}

static void run(ctx *c, const attack *a)
{
    char topic[80], down[80], want[128], got[160], aud[96];
    hx_seen seen;
    int found, ok;
    int64_t seq0 = audit_max_seq(c), rows = 0;
    size_t mark = hx_capture_mark(&c->cap);
    uint64_t deadline;
    snprintf(topic, sizeof topic, "otakey/v1/up/%s", a->up_id_hex);
    snprintf(down, sizeof down, "otakey/v1/down/%s", a->down_id_hex);
    if (hx_publish(a->via, topic, a->msg, a->len) != 0) {
        result(c, a->name, "-", "publish failed", 0);
        return;
    }
    /* A refusal is answered at once; "no reply" waits long enough to be sure. */
    found = hx_capture_find(&c->cap, mark, down, 0, 0, a->reply ? 5000 : 1500, &seen);
    expected(a, want, sizeof want);
    describe(seen.data, seen.len, found, got, sizeof got);
    ok = strcmp(want, got) == 0;
    if (a->audit_kind != AUD_NONE) {
        deadline = hx_now_ms() + 3000;
        while ((rows = audit_count(c, seq0, a->audit_kind, a->audit_code, a->audit_id)) < 1 &&
               hx_now_ms() < deadline)
            hx_sleep_ms(20);
        snprintf(aud, sizeof aud, "; audit %s %s: %lld row(s)",
                 a->audit_kind == AUD_CLAIM_REFUSED ? "claim-refused" : "refused",
                 otk_strerror(a->audit_code), (long long)rows);
        ok = ok && rows == 1;
    } else {
        hx_sleep_ms(200);
        rows = audit_count(c, seq0, 0, 0, a->audit_id);
        snprintf(aud, sizeof aud, "; audit: %lld new row(s) for the device", (long long)rows);
        ok = ok && rows == 0;
    }
    strncat(got, aud, sizeof got - strlen(got) - 1);
    result(c, a->name, want, got, ok);
}

/* The victim's status file says ready at this version. */
static int victim_ready(ctx *c, unsigned version)
{
    char buf[512], want[64];
    size_t n;
    FILE *f = fopen(c->victim_status, "r");
    if (f == NULL)
        return 0;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    snprintf(want, sizeof want, "\"state\":\"ready\",\"version\":%u,", version);
    return strstr(buf, want) != NULL;
}

/* Reads the victim's committed set from its key partition (physical extraction). */
static int extract_ak(ctx *c, uint8_t ak[32], uint32_t *version)
{
    otk_file_flash f;
    otk_port port;
    otk_keystore ks;
    otk_keyset set;
    int rc = -1;
    if (otk_file_flash_open(&f, c->victim_flash, 2 * 4096, 4096, 8) != 0)
        return -1;
    otk_posix_port(&f, &c->crypto, &port);
    memset(&ks, 0, sizeof ks);
    if (otk_ks_mount(&ks, &port) == OTK_OK && otk_ks_load(&ks, 0, &set) == OTK_OK) {
        memcpy(ak, set.ak, 32);
        *version = set.version;
        rc = 0;
    }
    otk_wipe(&set, sizeof set);
    otk_file_flash_close(&f);
    return rc;
}

static int step(ctx *c, const char *what, int ok)
{
    if (!ok) {
        fprintf(stderr, "otakey-hostile: set-up failed: %s\n", what);
        c->fails++;
    }
    return ok;
}

static int attacks(ctx *c, const char *ready)
{
    char up[80], down[80];
    hx_seen claim, claim_resp, confirm1, req1, resp2, confirm2, ack;
    uint8_t m[OTK_MSG_MAX_LEN], big[1024], ak[32], zero_batch[8];
    static uint8_t huge[256 * 1024];
    size_t mark, n;
    uint32_t v = 0;
    attack a;
    FILE *f;
    snprintf(up, sizeof up, "otakey/v1/up/%s", c->victim_hex);
    snprintf(down, sizeof down, "otakey/v1/down/%s", c->victim_hex);
    if (!step(c, "capture client", hx_capture_start(&c->cap, &c->srv) == 0))
        return 1;
    f = fopen(ready, "w");
    if (f)
        fclose(f);
    /* 1. Watch the victim claim, then rotate once. */
    if (!step(c, "victim's CLAIM seen", hx_capture_find(&c->cap, 0, up, OTK_MSG_CLAIM, 0, 60000, &claim)) ||
        !step(c, "CLAIM_RESP seen", hx_capture_find(&c->cap, 0, down, OTK_MSG_CLAIM_RESP, 0, 30000, &claim_resp)) ||
        !step(c, "CONFIRM v1 seen", hx_capture_find(&c->cap, 0, up, OTK_MSG_CONFIRM, 1, 30000, &confirm1)) ||
        !step(c, "ACK v1 seen", hx_capture_find(&c->cap, 0, down, OTK_MSG_ACK, 1, 30000, &ack)))
        return 1;
    mark = hx_capture_mark(&c->cap);
    if (!step(c, "rotation requested", system(c->rotate_cmd) == 0) ||
        !step(c, "UPDATE_REQ v1 seen", hx_capture_find(&c->cap, mark, up, OTK_MSG_UPDATE_REQ, 1, 30000, &req1)) ||
        !step(c, "UPDATE_RESP v2 seen", hx_capture_find(&c->cap, mark, down, OTK_MSG_UPDATE_RESP, 2, 30000, &resp2)) ||
        !step(c, "CONFIRM v2 seen", hx_capture_find(&c->cap, mark, up, OTK_MSG_CONFIRM, 2, 30000, &confirm2)) ||
        !step(c, "ACK v2 seen", hx_capture_find(&c->cap, mark, down, OTK_MSG_ACK, 2, 30000, &ack)))
        return 1;
    for (n = 0; n < 100 && !victim_ready(c, 2); n++)
        hx_sleep_ms(50);
    printf("victim %s: claimed v1 and rotated to v2; %zu messages captured\n", c->victim_hex,
           hx_capture_mark(&c->cap));

    /* 2. Replays and forgeries on the victim's topic, with broker access. */
#define ON_VICTIM(NAME, MSG, LEN, REPLY, RCODE, RVER, KIND, ACODE)                                  \
    do {                                                                                           \
        memset(&a, 0, sizeof a);                                                                   \
        a.name = NAME; a.via = c->inj; a.up_id_hex = c->victim_hex;                                \
        a.down_id_hex = c->victim_hex; a.msg = MSG; a.len = LEN; a.reply = REPLY;                  \
        a.reply_code = RCODE; a.reply_version = RVER; a.audit_kind = KIND; a.audit_code = ACODE;   \
        a.audit_id = c->victim;                                                                    \
        run(c, &a);                                                                                \
    } while (0)
    ON_VICTIM("replayed CLAIM", claim.data, claim.len, OTK_MSG_ERROR, OTK_ERR_ALREADY_CLAIMED, 0,
              AUD_CLAIM_REFUSED, OTK_ERR_ALREADY_CLAIMED);
    ON_VICTIM("replayed CONFIRM v1 (superseded)", confirm1.data, confirm1.len, OTK_MSG_NACK,
              OTK_ERR_STALE, 1, AUD_NONE, 0);
    ON_VICTIM("replayed CONFIRM v2 (committed)", confirm2.data, confirm2.len, OTK_MSG_ACK, 0, 2,
              AUD_NONE, 0);
    ON_VICTIM("replayed UPDATE_REQ v1 (MAC under old AK)", req1.data, req1.len, OTK_MSG_ERROR,
              OTK_ERR_BAD_MAC, 0, AUD_REFUSED, OTK_ERR_BAD_MAC);
    memcpy(m, claim.data, claim.len);
    m[claim.len - 1] ^= 0x01;
    ON_VICTIM("CLAIM with a flipped MAC byte", m, claim.len, OTK_MSG_ERROR, OTK_ERR_BAD_MAC, 0,
              AUD_CLAIM_REFUSED, OTK_ERR_BAD_MAC);
    memcpy(m, confirm2.data, confirm2.len);
    m[confirm2.len - 1] ^= 0x80;
    ON_VICTIM("CONFIRM v2 with a flipped MAC byte", m, confirm2.len, OTK_MSG_ERROR, OTK_ERR_BAD_MAC,
              0, AUD_REFUSED, OTK_ERR_BAD_MAC);
    n = build_forged(c, OTK_MSG_ABORT, c->victim, 2, OTK_ERR_PROOF_FAILED, m);
    ON_VICTIM("forged ABORT v2 (random MAC)", m, n, OTK_MSG_ERROR, OTK_ERR_BAD_MAC, 0, AUD_REFUSED,
              OTK_ERR_BAD_MAC);
    n = build_claim(c, c->victim, c->batch, c->pk, m);
    ON_VICTIM("cloned id: fresh CLAIM under the batch PK", m, n, OTK_MSG_ERROR,
              OTK_ERR_ALREADY_CLAIMED, 0, AUD_CLAIM_REFUSED, OTK_ERR_ALREADY_CLAIMED);
    if (step(c, "victim's AK read from its key partition", extract_ak(c, ak, &v) == 0 && v == 2)) {
        n = build_update_req(c, c->victim, 1, ak, m);
        ON_VICTIM("rollback: UPDATE_REQ v1 under the v2 AK", m, n, OTK_MSG_ERROR, OTK_ERR_ROLLBACK,
                  0, AUD_REFUSED, OTK_ERR_ROLLBACK);
        n = build_update_req(c, c->victim, 3, ak, m);
        ON_VICTIM("UPDATE_REQ naming a version never issued", m, n, OTK_MSG_ERROR, OTK_ERR_STALE, 0,
                  AUD_REFUSED, OTK_ERR_STALE);
    }
    otk_wipe(ak, sizeof ak);

    /* 3. From an anonymous client with an id of its own (no credentials at all). */
#define ON_OWN(NAME, MSG, LEN, REPLY, RCODE, KIND, ACODE, AID)                                      \
    do {                                                                                           \
        memset(&a, 0, sizeof a);                                                                   \
        a.name = NAME; a.via = c->anon; a.up_id_hex = c->own_hex; a.down_id_hex = c->own_hex;      \
        a.msg = MSG; a.len = LEN; a.reply = REPLY; a.reply_code = RCODE; a.audit_kind = KIND;      \
        a.audit_code = ACODE; a.audit_id = AID;                                                    \
        run(c, &a);                                                                                \
    } while (0)
    {
        uint8_t wrong_pk[32];
        rnd(c, wrong_pk, sizeof wrong_pk);
        n = build_claim(c, c->own, c->batch, wrong_pk, m);
        ON_OWN("CLAIM under a wrong PK", m, n, OTK_MSG_ERROR, OTK_ERR_BAD_MAC, AUD_CLAIM_REFUSED,
               OTK_ERR_BAD_MAC, c->own);
    }
    memset(zero_batch, 0xee, sizeof zero_batch);
    n = build_claim(c, c->own, zero_batch, c->pk, m);
    ON_OWN("CLAIM naming an unknown batch", m, n, OTK_MSG_ERROR, OTK_ERR_UNKNOWN_BATCH,
           AUD_CLAIM_REFUSED, OTK_ERR_UNKNOWN_BATCH, c->own);
    n = build_update_req(c, c->own, 1, NULL, m);
    ON_OWN("UPDATE_REQ from an unknown device", m, n, OTK_MSG_ERROR, OTK_ERR_UNKNOWN_DEVICE,
           AUD_REFUSED, OTK_ERR_UNKNOWN_DEVICE, c->own);
    n = build_claim(c, c->own, c->batch, NULL, big);
    memset(big + n, 0x41, sizeof big - n);
    ON_OWN("oversized CLAIM (1024 bytes)", big, sizeof big, OTK_MSG_ERROR, OTK_ERR_TRAILING,
           AUD_CLAIM_REFUSED, OTK_ERR_TRAILING, c->own);
    memcpy(huge, big, n);
    memset(huge + n, 0x42, sizeof huge - n);
    ON_OWN("oversized CLAIM (256 KiB)", huge, sizeof huge, OTK_MSG_ERROR, OTK_ERR_TRAILING,
           AUD_CLAIM_REFUSED, OTK_ERR_TRAILING, c->own);
    ON_OWN("truncated CLAIM (60 of 122 bytes)", big, 60, OTK_MSG_ERROR, OTK_ERR_TRUNCATED,
           AUD_CLAIM_REFUSED, OTK_ERR_TRUNCATED, c->own);
    ON_OWN("10 bytes, shorter than a header", big, 10, 0, 0, AUD_REFUSED, OTK_ERR_TRUNCATED, NULL);
    ON_OWN("empty message", big, 0, 0, 0, AUD_REFUSED, OTK_ERR_TRUNCATED, NULL);
    memcpy(m, big, n);
    m[0] = 3;
    ON_OWN("CLAIM of protocol version 3 (not spoken)", m, n, OTK_MSG_ERROR, OTK_ERR_UNKNOWN_VERSION,
           AUD_CLAIM_REFUSED, OTK_ERR_UNKNOWN_VERSION, c->own);
    m[0] = 2; /* version 2's CLAIM carries a key and its pop: 250 bytes */
    ON_OWN("version 1 CLAIM relabelled version 2", m, n, OTK_MSG_ERROR, OTK_ERR_TRUNCATED,
           AUD_CLAIM_REFUSED, OTK_ERR_TRUNCATED, c->own);
    m[0] = 1;
    m[1] = 42;
    ON_OWN("message of type 42", m, n, OTK_MSG_ERROR, OTK_ERR_UNKNOWN_TYPE, AUD_REFUSED,
           OTK_ERR_UNKNOWN_TYPE, c->own);
    ON_OWN("header naming the victim on its own topic", claim.data, claim.len, 0, 0, AUD_REFUSED,
           OTK_ERR_WRONG_DEVICE, c->own);
    /* The broker's ACL drops a publish to another device's topic: nothing reaches the agent. */
    memset(&a, 0, sizeof a);
    a.name = "publish on the victim's topic (ACL)";
    a.via = c->anon;
    a.up_id_hex = c->victim_hex;
    a.down_id_hex = c->victim_hex;
    a.msg = claim.data;
    a.len = claim.len;
    a.audit_id = c->victim;
    run(c, &a);

    /* 4. Forged agent messages to the device (broker access): it changes nothing. */
    memcpy(m, resp2.data, resp2.len);
    m[resp2.len - 1] ^= 0x01;
    hx_publish(c->inj, down, m, resp2.len);
    hx_publish(c->inj, down, claim_resp.data, claim_resp.len);
    n = build_forged(c, OTK_MSG_NACK, c->victim, 2, OTK_ERR_STALE, m);
    hx_publish(c->inj, down, m, n);
    hx_sleep_ms(1000);
    result(c, "forged UPDATE_RESP, replayed CLAIM_RESP, forged NACK to the device",
           "device still ready on v2", victim_ready(c, 2) ? "device still ready on v2" : "device state changed",
           victim_ready(c, 2));

    /* 5. After all that, the victim still rotates. */
    mark = hx_capture_mark(&c->cap);
    n = step(c, "rotation requested", system(c->rotate_cmd) == 0) &&
        hx_capture_find(&c->cap, mark, down, OTK_MSG_ACK, 3, 30000, &ack);
    for (v = 0; n && v < 100 && !victim_ready(c, 3); v++)
        hx_sleep_ms(50);
    n = n && victim_ready(c, 3);
    result(c, "the victim rotates after the attacks", "ACK v3, device ready on v3",
           n ? "ACK v3, device ready on v3" : "no", (int)n);
    printf("%d passed, %d failed\n", c->passes, c->fails);
    return c->fails ? 1 : 0;
}

static int usage(const char *why)
{
    if (why)
        fprintf(stderr, "otakey-hostile: %s\n", why);
    fprintf(why ? stderr : stdout,
            "usage: otakey-hostile attacks --broker HOST:PORT --server HOST:PORT --cafile FILE\n"
            "         --user U --password P\n"
            "           --db DB --batch HEX16 --pk FILE --victim HEX32 --victim-flash FILE\n"
            "           --victim-status FILE --rotate-cmd CMD --ready FILE\n"
            "       otakey-hostile flood --broker HOST:PORT --cafile FILE --batch HEX16\n"
            "           [--conns N] [--seconds S] [--inflight N] [--rate PER_SECOND]\n"
            "       otakey-hostile hijack --broker HOST:PORT --cafile FILE [--conns N]\n"
            "           [--seconds S (0: until SIGTERM)] [--takeover CLIENT_ID] [--group NAME]\n"
            "Exit codes: 0 every attack got what docs/protocol.md expects, 1 otherwise, 2 bad usage.\n");
    return why ? 2 : 0;
}

int main(int argc, char **argv)
{
    static ctx c;
    const char *broker = NULL, *batch = NULL, *pk = NULL, *victim = NULL, *ready = NULL;
    const char *server = NULL, *takeover = NULL, *group = "otakey";
    long conns = 200, seconds = 10, inflight = 8, rate = 0;
    char err[256];
    int i, rc;
    if (argc < 2)
        return usage("a subcommand is required");
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
        return usage(NULL);
    for (i = 2; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--help"))
            return usage(NULL);
        if (v == NULL)
            return usage("every option takes a value");
        i++;
        if (!strcmp(k, "--broker")) broker = v;
        else if (!strcmp(k, "--server")) server = v;
        else if (!strcmp(k, "--takeover")) takeover = v;
        else if (!strcmp(k, "--group")) group = v;
        else if (!strcmp(k, "--cafile")) c.b.cafile = v;
        else if (!strcmp(k, "--user")) c.b.user = v;
        else if (!strcmp(k, "--password")) c.b.password = v;
        else if (!strcmp(k, "--db")) c.db_path = v;
        else if (!strcmp(k, "--batch")) batch = v;
        else if (!strcmp(k, "--pk")) pk = v;
        else if (!strcmp(k, "--victim")) victim = v;
        else if (!strcmp(k, "--victim-flash")) c.victim_flash = v;
        else if (!strcmp(k, "--victim-status")) c.victim_status = v;
        else if (!strcmp(k, "--rotate-cmd")) c.rotate_cmd = v;
        else if (!strcmp(k, "--ready")) ready = v;
        else if (!strcmp(k, "--conns")) conns = atol(v);
        else if (!strcmp(k, "--seconds")) seconds = atol(v);
        else if (!strcmp(k, "--inflight")) inflight = atol(v);
        else if (!strcmp(k, "--rate")) rate = atol(v);
        else {
            snprintf(err, sizeof err, "unknown option '%s'", k);
            return usage(err);
        }
    }
    if (broker == NULL || sscanf(broker, "%127[^:]:%d", c.b.host, &c.b.port) != 2 || c.b.port <= 0 ||
        c.b.port > 65535)
        return usage("--broker HOST:PORT is required");
    if (!strcmp(argv[1], "hijack")) {
        if (conns < 0 || conns > 1000 || seconds < 0 || seconds > 86400)
            return usage("--conns in [0, 1000], --seconds in [0, 86400]");
        mosquitto_lib_init();
        rc = hx_hijack_main(&c.b, (unsigned)conns, (unsigned)seconds, takeover, group);
        mosquitto_lib_cleanup();
        return rc;
    }
    if (batch == NULL || otk_hex_decode(batch, c.batch, 8) != 0)
        return usage("--batch must be 16 hex digits");
    c.srv = c.b;
    if (server != NULL && (sscanf(server, "%127[^:]:%d", c.srv.host, &c.srv.port) != 2 ||
                           c.srv.port <= 0 || c.srv.port > 65535))
        return usage("--server must be HOST:PORT");
    mosquitto_lib_init();
    if (!strcmp(argv[1], "flood")) {
        if (conns < 1 || conns > 5000 || seconds < 1 || seconds > 3600 || inflight < 1 ||
            inflight > 1000 || rate < 0 || rate > 10000000)
            return usage("--conns in [1, 5000], --seconds in [1, 3600], --inflight in [1, 1000], "
                         "--rate in [0, 10000000]");
        rc = hx_flood_main(&c.b, c.batch, (unsigned)conns, (unsigned)seconds, (unsigned)inflight,
                           (unsigned)rate);
        mosquitto_lib_cleanup();
        return rc;
    }
    if (strcmp(argv[1], "attacks") != 0)
        return usage("the subcommand is attacks, flood or hijack");
    if (!c.b.user || !c.b.password || !c.db_path || !victim || !c.victim_flash || !c.victim_status ||
        !c.rotate_cmd || !ready || !pk)
        return usage("attacks needs --user --password --db --pk --victim --victim-flash "
                     "--victim-status --rotate-cmd --ready");
    if (otk_hex_decode(victim, c.victim, 16) != 0)
        return usage("--victim must be 32 hex digits");
    if (otk_read_hex_file(pk, c.pk, 32, err, sizeof err) != 0)
        return usage("--pk must name a file of 64 hex digits");
    otk_hex_encode(c.victim, 16, c.victim_hex);
    if (otk_crypto_openssl_init(&c.crypto, NULL, NULL) != OTK_OK)
        return 1;
    rnd(&c, c.own, sizeof c.own);
    otk_hex_encode(c.own, 16, c.own_hex);
    if (sqlite3_open_v2(c.db_path, &c.db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        fprintf(stderr, "otakey-hostile: cannot open registry '%s'\n", c.db_path);
        return 1;
    }
    sqlite3_busy_timeout(c.db, 5000);
    snprintf(err, sizeof err, "otakey-hostile-inj-%ld", (long)getpid());
    c.inj = hx_connect(&c.srv, err, c.b.user, c.b.password, NULL);
    c.anon = hx_connect(&c.b, c.own_hex, NULL, NULL, NULL);
    rc = c.inj && c.anon ? attacks(&c, ready) : 1;
    hx_close(c.inj);
    hx_close(c.anon);
    if (c.cap.msgs)
        hx_capture_stop(&c.cap);
    sqlite3_close(c.db);
    otk_crypto_openssl_free(&c.crypto);
    mosquitto_lib_cleanup();
    return rc;
}
