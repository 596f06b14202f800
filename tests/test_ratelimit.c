/*
 * The agent's admission control (include/otakey/ratelimit.h): per-client
 * buckets, the refusal budget and the screening it turns on, and the
 * aggregate audit row. Time is passed in, so every case is exact.
 */
#include "check.h"
#include "world.h"

#include "otakey/proto.h"
#include "otakey/ratelimit.h"

static size_t claim(world *w, const uint8_t id[16], const uint8_t *pk, uint8_t *out)
{
    otk_msg m;
    size_t len = 0;
    memset(&m, 0, sizeof m);
    m.type = OTK_MSG_CLAIM;
    memcpy(m.device_id, id, 16);
    memcpy(m.batch_id, w->batch, 8);
    if (otk_msg_encode(&m, out, OTK_MSG_MAX_LEN, &len) != OTK_OK)
        return 0;
    if (pk != NULL && otk_mac_write(&w->agent_crypto, pk, OTK_PK_LEN, out,
                                    otk_msg_auth_offset(OTK_MSG_CLAIM, len), NULL, 0) != OTK_OK)
        return 0;
    return len;
}

static size_t update_req(const uint8_t id[16], uint8_t *out)
{
    otk_msg m;
    size_t len = 0;
    memset(&m, 0, sizeof m);
    m.type = OTK_MSG_UPDATE_REQ;
    memcpy(m.device_id, id, 16);
    m.version = 1;
    return otk_msg_encode(&m, out, OTK_MSG_MAX_LEN, &len) == OTK_OK ? len : 0;
}

static void test_config(void)
{
    otk_rl_config c;
    otk_rl *rl = (otk_rl *)1;
    otk_rl_defaults(&c);
    c.clients = 1000; /* not a power of two */
    CHECK_ST(otk_rl_new(&c, &rl), OTK_ERR_INVALID_ARGUMENT);
    CHECK(rl == NULL);
    otk_rl_defaults(&c);
    c.report_ms = 10;
    CHECK_ST(otk_rl_new(&c, &rl), OTK_ERR_INVALID_ARGUMENT);
    otk_rl_defaults(&c);
    c.client_burst = 0;
    CHECK_ST(otk_rl_new(&c, &rl), OTK_ERR_INVALID_ARGUMENT);
    CHECK_ST(otk_rl_new(NULL, &rl), OTK_ERR_INVALID_ARGUMENT);
    otk_rl_defaults(&c);
    CHECK_ST(otk_rl_new(&c, &rl), OTK_OK);
    otk_rl_free(rl);
}

static void test_client_bucket(world *w)
{
    otk_rl_config c;
    otk_rl *rl = NULL;
    otk_rl_stats s;
    uint8_t a[16], b[16], msg[OTK_MSG_MAX_LEN];
    size_t n;
    int i, ok = 0;
    memset(a, 0xaa, sizeof a);
    memset(b, 0xbb, sizeof b);
    n = claim(w, a, w->pk, msg);
    otk_rl_defaults(&c);
    c.client_rate = 10; /* one token per 100 ms */
    c.client_burst = 5;
    c.refusal_rate = 0; /* no screening in this case */
    CHECK_ST(otk_rl_new(&c, &rl), OTK_OK);
    for (i = 0; i < 8; i++)
        ok += otk_rl_admit(rl, &w->agent, a, msg, n, 1000) == OTK_OK;
    CHECK(ok == 5);
    CHECK_ST(otk_rl_admit(rl, &w->agent, b, msg, n, 1000), OTK_OK); /* another client: its own bucket */
    CHECK_ST(otk_rl_admit(rl, &w->agent, a, msg, n, 1050), OTK_ERR_RATE_LIMITED);
    CHECK_ST(otk_rl_admit(rl, &w->agent, a, msg, n, 1100), OTK_OK); /* refilled by one */
    CHECK_ST(otk_rl_admit(rl, &w->agent, a, msg, n, 1100), OTK_ERR_RATE_LIMITED);
    /* A long pause refills to the burst, never beyond. */
    for (i = 0, ok = 0; i < 10; i++)
        ok += otk_rl_admit(rl, &w->agent, a, msg, n, 100000) == OTK_OK;
    CHECK(ok == 5);
    (void)otk_rl_report(rl, NULL, 0, &s);
    CHECK(s.over_client_rate == 3 + 1 + 1 + 5);
    CHECK(s.admitted == 5 + 1 + 1 + 5);
    otk_rl_free(rl);
}

static void test_screening(world *w, const uint8_t known[16])
{
    otk_rl_config c;
    otk_rl *rl = NULL;
    otk_rl_stats s;
    uint8_t id[16], wrong_pk[32], good[OTK_MSG_MAX_LEN], bad[OTK_MSG_MAX_LEN], req[OTK_MSG_MAX_LEN];
    size_t ng, nb, nr;
    uint64_t t = 5000;
    memset(id, 0x11, sizeof id);
    memset(wrong_pk, 0x5a, sizeof wrong_pk);
    ng = claim(w, id, w->pk, good);
    nb = claim(w, id, wrong_pk, bad);
    nr = update_req(id, req);
    otk_rl_defaults(&c);
    c.refusal_rate = 1;
    c.refusal_burst = 2;
    c.report_ms = 1000;
    CHECK_ST(otk_rl_new(&c, &rl), OTK_OK);
    /* With budget left, everything goes to the core (which refuses and audits). */
    CHECK_ST(otk_rl_admit(rl, &w->agent, id, bad, nb, t), OTK_OK);
    otk_rl_core_refused(rl, t);
    CHECK_ST(otk_rl_admit(rl, &w->agent, id, bad, nb, t), OTK_OK);
    otk_rl_core_refused(rl, t);
    /* Budget spent: screening. */
    CHECK_ST(otk_rl_admit(rl, &w->agent, id, bad, nb, t), OTK_ERR_RATE_LIMITED);
    CHECK_ST(otk_rl_admit(rl, &w->agent, id, good, ng, t), OTK_OK); /* a real claim still passes */
    CHECK_ST(otk_rl_admit(rl, &w->agent, id, good, 10, t), OTK_ERR_RATE_LIMITED);
    CHECK_ST(otk_rl_admit(rl, &w->agent, id, good, ng + 1, t), OTK_ERR_RATE_LIMITED);
    CHECK_ST(otk_rl_admit(rl, &w->agent, id, req, nr, t), OTK_ERR_RATE_LIMITED); /* unknown device */
    memcpy(req + 2, known, 16);
    CHECK_ST(otk_rl_admit(rl, &w->agent, known, req, nr, t), OTK_OK); /* a known device passes */
    CHECK(otk_rl_refusal(rl, t) == 0);
    (void)otk_rl_report(rl, NULL, t, &s);
    CHECK(s.bad_claim == 1 && s.malformed == 2 && s.unknown_device == 1 && s.unaudited == 1);
    /* One second later one refusal token is back: the bad claim reaches the core again. */
    CHECK_ST(otk_rl_admit(rl, &w->agent, id, bad, nb, t + 1000), OTK_OK);
    CHECK(otk_rl_refusal(rl, t + 2000) == 1);
    otk_rl_free(rl);
}

static void test_report(world *w)
{
    otk_rl_config c;
    otk_rl *rl = NULL;
    uint8_t id[16], msg[OTK_MSG_MAX_LEN];
    size_t n, rows = otk_memreg_audit_count(w->reg, OTK_AUD_REFUSED);
    int i, ok;
    memset(id, 0x22, sizeof id);
    n = claim(w, id, w->pk, msg);
    otk_rl_defaults(&c);
    c.client_rate = 1;
    c.client_burst = 1;
    c.report_ms = 1000;
    CHECK_ST(otk_rl_new(&c, &rl), OTK_OK);
    CHECK(otk_rl_report(rl, &w->agent, 0, NULL) == 0); /* starts the first period */
    for (i = 0, ok = 0; i < 50; i++)
        ok += otk_rl_admit(rl, &w->agent, id, msg, n, 10) == OTK_OK;
    CHECK(ok == 1);
    CHECK(otk_rl_report(rl, &w->agent, 500, NULL) == 0); /* period not over */
    CHECK(otk_memreg_audit_count(w->reg, OTK_AUD_REFUSED) == rows);
    CHECK(otk_rl_report(rl, &w->agent, 1000, NULL) == 49);
    CHECK(otk_memreg_audit_count(w->reg, OTK_AUD_REFUSED) == rows + 1); /* one row for 49 drops */
    CHECK(otk_rl_report(rl, &w->agent, 2000, NULL) == 0); /* nothing dropped since: no row */
    CHECK(otk_memreg_audit_count(w->reg, OTK_AUD_REFUSED) == rows + 1);
    otk_rl_free(rl);
}

int main(void)
{
    world w;
    wdev d;
    if (world_init(&w, 7) != 0 || wdev_init(&w, &d, 1) != 0)
        return 1;
    CHECK_ST(wdev_boot(&w, &d), OTK_OK);
    CHECK_ST(world_settle(&w, &d, 64), OTK_OK); /* a claimed device the registry knows */
    test_config();
    test_client_bucket(&w);
    test_screening(&w, d.cfg.device_id);
    test_report(&w);
    wdev_free(&d);
    world_free(&w);
    return CHECK_DONE();
}
