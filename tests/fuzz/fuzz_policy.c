/*
 * Fuzz target: the brokers' access policy (src/broker/policy.h), which the
 * mosquitto plugin asks for every CONNECT, SUBSCRIBE, PUBLISH and delivery
 * with strings any client chooses. The input is split at NUL bytes into an
 * option value, a user name ("" for none), a client id and a topic; the
 * first byte picks the role and the access. Invariants: a verdict is one of
 * the three; a denial names a reason; a device may only ever be allowed its
 * own topics.
 */
#include <stdint.h>
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
    (void)otk_bp_option(&c, "role", (const char *[]){"devices", "agents", "cloud", "x"}[data[0] & 3],
                        err, sizeof err);
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
        }
    }
    free(buf);
    return 0;
}
