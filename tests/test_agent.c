/*
 * Agent core tests beyond the flows of test_flow.c: refusals of messages a
 * device would not send, operator calls and their errors, and failures of
 * the registry and of the cloud, after which nothing is half done.
 */
#include "check.h"
#include "world.h"

#include "otakey/proto.h"

#define STEPS 64

static size_t answer(world *w, const uint8_t *msg, size_t len, uint8_t *out)
{
    size_t n = 0;
    w->last_agent = otk_agent_handle(&w->agent, msg, len, out, OTK_MSG_MAX_LEN, &n);
    return n;
}

/* A message of the given type for device d, MACed with key when given. */
static size_t forge(world *w, const wdev *d, uint8_t type, uint32_t version, const uint8_t *key,
                    uint8_t *out)
{
    static const uint8_t ct[OTK_CT_MIN];
    otk_msg m;
    size_t len = 0;
    memset(&m, 0, sizeof m);
    m.type = type;
    memcpy(m.device_id, d->cfg.device_id, OTK_DEVICE_ID_LEN);
    memcpy(m.batch_id, d->cfg.batch_id, OTK_BATCH_ID_LEN);
    m.version = version;
    m.ct = ct;
    m.ct_len = OTK_CT_MIN;
    if (otk_msg_encode(&m, out, OTK_MSG_MAX_LEN, &len) != OTK_OK)
        return 0;
    if (key != NULL && otk_mac_write(&w->agent_crypto, key, OTK_AK_LEN, out,
                                     otk_msg_auth_offset(type, len), NULL, 0) != OTK_OK)
        return 0;
    return len;
}

/* The ERROR reply carries the refused type and the code. */
static void check_error_reply(const uint8_t *out, size_t n, uint8_t ref, otk_status code)
{
    otk_msg m;
    CHECK(n == OTK_ERROR_LEN);
    CHECK_OK(otk_msg_decode(out, n, &m));
    CHECK(m.type == OTK_MSG_ERROR && m.ref_type == ref && m.code == code);
}

static void test_refusals(void)
{
    world w;
    wdev d, stranger, pending;
    uint8_t msg[OTK_MSG_MAX_LEN], out[OTK_MSG_MAX_LEN];
    otk_agent_device before, after;
    size_t n, len, audits;
    uint8_t t;
    CHECK(world_init(&w, 1) == 0);
    CHECK(wdev_init(&w, &d, 1) == 0 && wdev_init(&w, &stranger, 2) == 0 &&
          wdev_init(&w, &pending, 3) == 0);
    CHECK_OK(wdev_boot(&w, &d));
    CHECK_OK(world_settle(&w, &d, STEPS));
    CHECK_OK(world_record(&w, &d, &before));

    /* Agent->device types sent to the agent. */
    for (t = OTK_MSG_CLAIM_RESP; t <= OTK_MSG_ERROR; t++) {
        if (t == OTK_MSG_UPDATE_REQ || t == OTK_MSG_CONFIRM || t == OTK_MSG_ABORT)
            continue;
        audits = otk_memreg_audit_count(w.reg, OTK_AUD_REFUSED);
        len = forge(&w, &d, t, 1, NULL, msg);
        n = answer(&w, msg, len, out);
        CHECK_ST(w.last_agent, OTK_ERR_UNEXPECTED);
        check_error_reply(out, n, t, OTK_ERR_UNEXPECTED);
        CHECK(otk_memreg_audit_count(w.reg, OTK_AUD_REFUSED) == audits + 1);
    }
    /* Unknown device and unknown batch. */
    len = forge(&w, &stranger, OTK_MSG_UPDATE_REQ, 1, before.committed.ak, msg);
    n = answer(&w, msg, len, out);
    CHECK_ST(w.last_agent, OTK_ERR_UNKNOWN_DEVICE);
    check_error_reply(out, n, OTK_MSG_UPDATE_REQ, OTK_ERR_UNKNOWN_DEVICE);
    stranger.cfg.batch_id[0] ^= 0x80;
    len = forge(&w, &stranger, OTK_MSG_CLAIM, 0, stranger.cfg.pk, msg);
    n = answer(&w, msg, len, out);
    CHECK_ST(w.last_agent, OTK_ERR_UNKNOWN_BATCH);
    CHECK_ST(world_record(&w, &stranger, &after), OTK_ERR_NOT_FOUND);
    /* MACs: CONFIRM / ABORT / UPDATE_REQ under a wrong key. */
    len = forge(&w, &d, OTK_MSG_CONFIRM, 1, stranger.cfg.pk, msg);
    (void)answer(&w, msg, len, out);
    CHECK_ST(w.last_agent, OTK_ERR_BAD_MAC);
    len = forge(&w, &d, OTK_MSG_ABORT, 1, stranger.cfg.pk, msg);
    (void)answer(&w, msg, len, out);
    CHECK_ST(w.last_agent, OTK_ERR_BAD_MAC);
    len = forge(&w, &d, OTK_MSG_UPDATE_REQ, 1, stranger.cfg.pk, msg);
    (void)answer(&w, msg, len, out);
    CHECK_ST(w.last_agent, OTK_ERR_BAD_MAC);
    /* Versions: above the committed one is STALE; never issued gets no NACK. */
    len = forge(&w, &d, OTK_MSG_UPDATE_REQ, 2, before.committed.ak, msg);
    (void)answer(&w, msg, len, out);
    CHECK_ST(w.last_agent, OTK_ERR_STALE);
    len = forge(&w, &d, OTK_MSG_CONFIRM, 9, before.committed.ak, msg);
    n = answer(&w, msg, len, out);
    CHECK_ST(w.last_agent, OTK_ERR_STALE);
    check_error_reply(out, n, OTK_MSG_CONFIRM, OTK_ERR_STALE);
    /* ABORT of the committed version: the agent answers ACK (it is committed). */
    len = forge(&w, &d, OTK_MSG_ABORT, 1, before.committed.ak, msg);
    n = answer(&w, msg, len, out);
    CHECK_OK(w.last_agent);
    CHECK(n == OTK_ACK_LEN && out[1] == OTK_MSG_ACK);
    /* A header alone, garbage, an empty message. */
    n = answer(&w, msg, OTK_HDR_LEN, out);
    CHECK_ST(w.last_agent, OTK_ERR_TRUNCATED);
    check_error_reply(out, n, msg[1], OTK_ERR_TRUNCATED);
    n = answer(&w, msg, 3, out);
    CHECK(w.last_agent == OTK_ERR_TRUNCATED && n == 0);
    n = answer(&w, NULL, 0, out);
    CHECK(w.last_agent == OTK_ERR_TRUNCATED && n == 0);
    CHECK_ST(otk_agent_handle(&w.agent, msg, len, out, 10, &n), OTK_ERR_BUFFER_TOO_SMALL);
    /* None of it changed the record. */
    CHECK_OK(world_record(&w, &d, &after));
    CHECK(memcmp(&before, &after, sizeof before) == 0);

    /* A device with only a pending claim cannot poll: NO_KEYSET. */
    CHECK_OK(wdev_boot(&w, &pending));
    CHECK(world_settle(&w, &pending, 1) != OTK_OK);
    CHECK(otk_device_state(&pending.dev) == OTK_DEV_PROVE);
    len = forge(&w, &pending, OTK_MSG_UPDATE_REQ, 1, before.committed.ak, msg);
    (void)answer(&w, msg, len, out);
    CHECK_ST(w.last_agent, OTK_ERR_NO_KEYSET);
    CHECK_ST(otk_agent_allow_reclaim(&w.agent, pending.cfg.device_id), OTK_ERR_BAD_STATE);
    CHECK_ST(otk_agent_request_update(&w.agent, pending.cfg.device_id, OTK_WANT_ROTATE, 0, out,
                                      sizeof out, &n),
             OTK_ERR_NO_KEYSET);
    CHECK_ST(otk_agent_request_update(&w.agent, stranger.cfg.device_id, OTK_WANT_ROTATE, 0, out,
                                      sizeof out, &n),
             OTK_ERR_UNKNOWN_DEVICE);
    CHECK_ST(otk_agent_request_update(&w.agent, d.cfg.device_id, OTK_WANT_SWITCH, 99, out,
                                      sizeof out, &n),
             OTK_ERR_BAD_VALUE);
    CHECK_ST(otk_agent_request_update(&w.agent, d.cfg.device_id, 7, 0, out, sizeof out, &n),
             OTK_ERR_INVALID_ARGUMENT);
    /* NOTIFY is offered for a requested or issued update, nothing else. */
    CHECK_ST(otk_agent_notify(&w.agent, d.cfg.device_id, out, sizeof out, &n), OTK_ERR_BAD_STATE);
    CHECK_ST(otk_agent_notify(&w.agent, pending.cfg.device_id, out, sizeof out, &n), OTK_ERR_BAD_STATE);
    CHECK_ST(otk_agent_notify(&w.agent, stranger.cfg.device_id, out, sizeof out, &n),
             OTK_ERR_UNKNOWN_DEVICE);
    CHECK_ST(otk_agent_revoke(&w.agent, stranger.cfg.device_id), OTK_ERR_UNKNOWN_DEVICE);
    /* Revoking a device with a pending claim removes that client too. */
    CHECK(otk_memcloud_count(w.cloud) == 2);
    CHECK_OK(otk_agent_revoke(&w.agent, pending.cfg.device_id));
    CHECK(otk_memcloud_count(w.cloud) == 1);
    CHECK(world_settle(&w, &pending, 8) != OTK_OK);
    CHECK(otk_device_last_remote(&pending.dev) == OTK_ERR_REVOKED);
    wdev_free(&d);
    wdev_free(&stranger);
    wdev_free(&pending);
    world_free(&w);
}

static void test_failures(void)
{
    world w;
    wdev d, e;
    otk_agent_device rec, rec2;
    size_t clients;
    CHECK(world_init(&w, 2) == 0);
    CHECK(wdev_init(&w, &d, 1) == 0 && wdev_init(&w, &e, 2) == 0);
    CHECK_OK(wdev_boot(&w, &d));

    /* The cloud refuses to create the client: CLOUD, nothing stored. */
    otk_memcloud_fail(w.cloud, 1);
    CHECK_ST(world_settle(&w, &d, 1), OTK_ERR_CLOUD);
    CHECK_ST(world_record(&w, &d, &rec), OTK_ERR_NOT_FOUND);
    CHECK(otk_memcloud_count(w.cloud) == 0);
    CHECK(otk_device_state(&d.dev) == OTK_DEV_CLAIMING);
    /* The registry fails: STORAGE, and the client made for it is removed. */
    otk_memreg_fail_puts(w.reg, 1);
    d.flash.now_ms += 60000;
    w.last_agent = OTK_OK;
    CHECK_ST(world_settle(&w, &d, 1), OTK_ERR_STORAGE);
    CHECK_ST(world_record(&w, &d, &rec), OTK_ERR_NOT_FOUND);
    CHECK(otk_memcloud_count(w.cloud) == 0);
    /* Then it works: the retransmitted claim is served normally. */
    d.flash.now_ms += 60000;
    w.last_agent = OTK_OK;
    CHECK_OK(world_settle(&w, &d, STEPS));
    CHECK(otk_memcloud_count(w.cloud) == 1);

    /* The commit is stored but deleting the old client fails: it is kept as
     * stale, the device is ACKed, and otk_agent_cleanup removes it later. */
    CHECK_OK(world_request(&w, &d, OTK_WANT_ROTATE, 0));
    CHECK(otk_device_state(&d.dev) == OTK_DEV_PROVE);
    {
        /* Issued, not confirmed: offered again, with a NOTIFY the device accepts. */
        uint8_t note[OTK_MSG_MAX_LEN];
        size_t nl = 0;
        CHECK_OK(otk_agent_notify(&w.agent, d.cfg.device_id, note, sizeof note, &nl));
        CHECK(nl == OTK_NOTIFY_LEN && note[1] == OTK_MSG_NOTIFY);
    }
    otk_memcloud_fail(w.cloud, 1);
    CHECK_OK(world_settle(&w, &d, STEPS));
    CHECK_OK(world_record(&w, &d, &rec));
    CHECK(rec.committed.version == 2 && rec.has_stale && otk_memcloud_count(w.cloud) == 2);
    CHECK_OK(otk_agent_cleanup(&w.agent, d.cfg.device_id));
    CHECK_OK(world_record(&w, &d, &rec));
    CHECK(!rec.has_stale && otk_memcloud_count(w.cloud) == 1);
    CHECK(otk_memreg_audit_count(w.reg, OTK_AUD_CLOUD_CLEANUP) == 1);

    /* A failed put at commit time leaves the pending set pending. */
    CHECK_OK(world_request(&w, &d, OTK_WANT_SWITCH, WORLD_CLOUD_B));
    otk_memreg_fail_puts(w.reg, 1);
    w.last_agent = OTK_OK;
    CHECK_ST(world_settle(&w, &d, 2), OTK_ERR_STORAGE);
    CHECK_OK(world_record(&w, &d, &rec2));
    CHECK(rec2.has_pending && rec2.committed.version == 2);
    w.last_agent = OTK_OK;
    CHECK_OK(world_settle(&w, &d, STEPS));
    CHECK_OK(world_record(&w, &d, &rec2));
    CHECK(rec2.committed.version == 3 && rec2.committed.cloud.cloud_id == WORLD_CLOUD_B);
    clients = otk_memcloud_count(w.cloud);
    CHECK(clients == 1);

    /* A switch requested to a cloud the agent no longer serves (configuration
     * changed): the request is dropped and audited, the device is not wedged. */
    {
        otk_agent_config one = w.cfg;
        size_t refused = otk_memreg_audit_count(w.reg, OTK_AUD_REFUSED);
        CHECK_OK(otk_agent_request_update(&w.agent, d.cfg.device_id, OTK_WANT_SWITCH, WORLD_CLOUD_A,
                                          (uint8_t[OTK_MSG_MAX_LEN]){0}, OTK_MSG_MAX_LEN, &(size_t){0}));
        one.n_clouds = 1;
        one.clouds[0] = w.cfg.clouds[1];
        one.claim_cloud = WORLD_CLOUD_B;
        CHECK_OK(otk_agent_init(&w.agent, &w.agent_crypto, &w.regif, &w.cloudif, &one));
        CHECK_OK(otk_device_poll(&d.dev));
        w.last_agent = OTK_OK;
        CHECK_OK(world_settle(&w, &d, STEPS));
        CHECK_OK(world_record(&w, &d, &rec2));
        CHECK(rec2.want == OTK_WANT_NONE && rec2.committed.version == 3 && !rec2.has_pending);
        CHECK(otk_memreg_audit_count(w.reg, OTK_AUD_REFUSED) == refused + 1);
        CHECK_OK(otk_agent_init(&w.agent, &w.agent_crypto, &w.regif, &w.cloudif, &w.cfg));
    }

    /* Config validation. */
    {
        otk_agent a;
        otk_agent_config cfg = w.cfg;
        cfg.claim_cloud = 42;
        CHECK_ST(otk_agent_init(&a, &w.agent_crypto, &w.regif, &w.cloudif, &cfg),
                 OTK_ERR_INVALID_ARGUMENT);
        cfg = w.cfg;
        cfg.n_clouds = OTK_AGENT_MAX_CLOUDS + 1;
        CHECK_ST(otk_agent_init(&a, &w.agent_crypto, &w.regif, &w.cloudif, &cfg),
                 OTK_ERR_INVALID_ARGUMENT);
        CHECK_ST(otk_agent_init(&a, NULL, &w.regif, &w.cloudif, &w.cfg), OTK_ERR_INVALID_ARGUMENT);
    }
    wdev_free(&d);
    wdev_free(&e);
    world_free(&w);
}

/* The registry's puts, counted (around the memory registry's). */
static otk_registry counted_reg;
static unsigned n_puts;

static otk_status count_put(void *ctx, const otk_agent_device *dev, const otk_audit *ev)
{
    n_puts++;
    return counted_reg.put_device(ctx, dev, ev);
}

/*
 * Inside a group commit (otk_agent.group_commit, the daemon's batch) a
 * commit writes its device once: the retired client recorded as removed,
 * removed after the write, the removal audited. Should the removal fail,
 * the client is written back as stale for otk_agent_cleanup; should the
 * write fail, nothing is removed and the set stays pending.
 */
static void test_group_commit(void)
{
    world w;
    wdev d;
    otk_agent_device rec;
    unsigned before;
    CHECK(world_init(&w, 2) == 0);
    CHECK(wdev_init(&w, &d, 1) == 0);
    CHECK_OK(wdev_boot(&w, &d));
    counted_reg = w.agent.reg;
    w.agent.reg.put_device = count_put;
    w.agent.group_commit = 1;
    CHECK_OK(world_settle(&w, &d, STEPS));
    CHECK(otk_memcloud_count(w.cloud) == 1);
    /* A rotation: the commit is one put, the old client gone, audited. */
    CHECK_OK(world_request(&w, &d, OTK_WANT_ROTATE, 0)); /* the request: its set issued */
    CHECK(otk_device_state(&d.dev) == OTK_DEV_PROVE);
    before = n_puts;
    CHECK_OK(world_settle(&w, &d, STEPS)); /* the proof, the commit */
    CHECK(n_puts == before + 1);
    CHECK_OK(world_record(&w, &d, &rec));
    CHECK(rec.committed.version == 2 && !rec.has_stale && otk_memcloud_count(w.cloud) == 1);
    CHECK(otk_memreg_audit_count(w.reg, OTK_AUD_CLOUD_CLEANUP) == 1);
    CHECK(otk_device_version(&d.dev, OTK_SET_ACTIVE) == 2);
    /* The removal fails: written back as stale (a second put), removed by cleanup. */
    CHECK_OK(world_request(&w, &d, OTK_WANT_ROTATE, 0));
    otk_memcloud_fail(w.cloud, 1);
    CHECK_OK(world_settle(&w, &d, STEPS));
    CHECK_OK(world_record(&w, &d, &rec));
    CHECK(rec.committed.version == 3 && rec.has_stale && otk_memcloud_count(w.cloud) == 2);
    CHECK(otk_memreg_audit_count(w.reg, OTK_AUD_CLOUD_CLEANUP) == 1);
    CHECK_OK(otk_agent_cleanup(&w.agent, d.cfg.device_id));
    CHECK_OK(world_record(&w, &d, &rec));
    CHECK(!rec.has_stale && otk_memcloud_count(w.cloud) == 1);
    CHECK(otk_memreg_audit_count(w.reg, OTK_AUD_CLOUD_CLEANUP) == 2);
    /* The commit's write fails: nothing removed, the set still pending; then it commits. */
    CHECK_OK(world_request(&w, &d, OTK_WANT_SWITCH, WORLD_CLOUD_B));
    otk_memreg_fail_puts(w.reg, 1);
    w.last_agent = OTK_OK;
    CHECK_ST(world_settle(&w, &d, 2), OTK_ERR_STORAGE);
    CHECK_OK(world_record(&w, &d, &rec));
    CHECK(rec.has_pending && rec.committed.version == 3 && otk_memcloud_count(w.cloud) == 2);
    w.last_agent = OTK_OK;
    CHECK_OK(world_settle(&w, &d, STEPS));
    CHECK_OK(world_record(&w, &d, &rec));
    CHECK(rec.committed.version == 4 && rec.committed.cloud.cloud_id == WORLD_CLOUD_B &&
          !rec.has_stale && otk_memcloud_count(w.cloud) == 1);
    wdev_free(&d);
    world_free(&w);
}

int main(void)
{
    test_refusals();
    test_failures();
    test_group_commit();
    return CHECK_DONE();
}
