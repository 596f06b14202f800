/*
 * Fuzz target: the brokers' access policy (src/broker/policy.h), which the
 * mosquitto plugin asks for every CONNECT, SUBSCRIBE, PUBLISH and delivery
 * with strings any client chooses. The input is split at NUL bytes into an
 * option value, a user name ("" for none), a client id and a topic; the
 * first byte picks the role and the access. Invariants: a verdict is one of
 * the three; a denial names a reason; a device may only ever be allowed its
 * own topics (with a certificate identity: the user name is the client id).
 * The input's bytes also drive the certs listeners' session table (put,
 * delete, look up), checked against a plain list.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *field(char **p, const char *end)
{
    const char *s = *p;
    size_t n = strnlen(s, (size_t)(end - s));
    *p += n < (size_t)(end - s) ? n + 1 : n;
    return s;
}

/* Each pair of bytes: an operation (put, delete, delete if its serial is
 * another id's, look up) and one of 32 ids. */
static void sessions(const uint8_t *data, size_t size)
{
    otk_bp_sessions t;
    otk_bp_serial sn = {1, {0}}, list[1];
    int present[32] = {0};
    char id[33];
    size_t i, n = 0, k, hits;
    char ids[32][33];
    memset(&t, 0, sizeof t);
    for (i = 0; i + 1 < size; i += 2) {
        int op = data[i] % 4, which = data[i + 1] % 32;
        snprintf(id, sizeof id, "%032x", (unsigned)which * 2654435761u);
        sn.b[0] = (uint8_t)which;
        if (op == 0) {
            if (otk_bp_sessions_put(&t, id, &sn) != 0)
                abort();
            n += !present[which];
            present[which] = 1;
        } else if (op == 1) {
            otk_bp_sessions_del(&t, id, data[i] & 4 ? &sn : NULL);
            n -= present[which];
            present[which] = 0;
        } else if (op == 2) { /* the end of a connection a newer login took over */
            otk_bp_serial other = {1, {(uint8_t)(which + 1)}};
            otk_bp_sessions_del(&t, id, &other);
        }
        if (otk_bp_sessions_has(&t, id) != present[which] || t.n != n)
            abort();
    }
    /* Each id present is found by its serial, and only it. */
    for (i = 0; i < 32; i++) {
        list[0].len = 1;
        list[0].b[0] = (uint8_t)i;
        hits = otk_bp_sessions_revoked(&t, list, 1, ids, 32);
        if (hits != (size_t)present[i])
            abort();
        for (k = 0; k < hits; k++) {
            snprintf(id, sizeof id, "%032x", (unsigned)i * 2654435761u);
            if (strcmp(ids[k], id) != 0)
                abort();
        }
    }
    otk_bp_sessions_free(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    otk_bp_config c;
    char *buf, *p, *end, err[200];
    const char *opt, *user, *cid, *topic;
    int v, reason = -1, access;
    if (size < 1 || size > 4096)
        return 0;
    buf = malloc(size + 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';
    p = buf;
    end = buf + size - 1;
    opt = field(&p, end);
    user = field(&p, end);
    cid = field(&p, end);
    topic = field(&p, end);
    memset(&c, 0, sizeof c);
    (void)otk_bp_option(&c, (data[0] & 0x10) ? "spaces" : "report_topic", opt, err, sizeof err);
    (void)otk_bp_option(&c, "role",
                        (const char *[]){"devices", "agents", "cloud", "certs"}[data[0] & 3], err,
                        sizeof err);
    if (data[0] & 0x20) {
        (void)otk_bp_option(&c, "identity", "certificate", err, sizeof err);
        (void)otk_bp_option(&c, "crl", "/dev/null", err, sizeof err);
    }
    if (otk_bp_check(&c, err, sizeof err) == 0) {
        access = 1 + ((data[0] >> 2) & 3);
        v = otk_bp_connect(&c, user[0] ? user : NULL, cid, &reason);
        if (v != OTK_BP_DEFER && v != OTK_BP_ALLOW && v != OTK_BP_DENY)
            abort();
        if (v == OTK_BP_DENY && (reason < 0 || reason >= OTK_BP_R_COUNT))
            abort();
        reason = -1;
        v = otk_bp_acl(&c, user[0] ? user : NULL, cid, access, topic, data[0] >> 7, &reason);
        if (v == OTK_BP_DENY && (reason < 0 || reason >= OTK_BP_R_COUNT))
            abort();
        /* A device is allowed nothing but <root>/{up,down}/<its own id>. */
        if (c.role == OTK_BP_DEVICES && v == OTK_BP_ALLOW) {
            size_t tl = strlen(topic), cl = strlen(cid);
            if (!otk_bp_is_device_id(cid) || tl <= cl || strcmp(topic + tl - cl, cid) != 0 ||
                topic[tl - cl - 1] != '/')
                abort();
            if (c.cert_identity && (user[0] == '\0' || strcmp(user, cid) != 0))
                abort();
        }
    }
    free(buf);
    sessions(data, size);
    return 0;
}
