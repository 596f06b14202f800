/*
 * In-process flows between the real device core (mbedTLS, simulated flash)
 * and the real agent core (OpenSSL, memory registry and cloud): claim,
 * rotation, cloud switch, and every refusal with its error and with the
 * state of both ends unchanged.
 */
#include "check.h"
#include "world.h"

#include "otakey/proto.h"
#include "otakey/wire.h"

#define STEPS 64

/* Captures the next device->agent message without delivering it. */
static size_t capture_next(wdev *d, uint8_t *buf)
{
    size_t n = 0;
    d->last = otk_device_next(&d->dev, buf, OTK_MSG_MAX_LEN, &n);
    return n;
}

/* The agent's answer to msg, not delivered to the device. */
static size_t agent_answer(world *w, const uint8_t *msg, size_t len, uint8_t *out)
{
    size_t n = 0;
    w->last_agent = otk_agent_handle(&w->agent, msg, len, out, OTK_MSG_MAX_LEN, &n);
    return n;
}

static otk_status dev_rx(wdev *d, const uint8_t *msg, size_t len)
{
    uint8_t out[OTK_MSG_MAX_LEN];
    size_t n = 0;
    return otk_device_receive(&d->dev, msg, len, out, sizeof out, &n);
}

/* The device's set matches the agent's committed one and works on the cloud. */
static void check_consistent(world *w, wdev *d, uint32_t version, uint32_t cloud_id)
{
    otk_agent_device rec;
    otk_cloud c;
    CHECK(otk_device_state(&d->dev) == OTK_DEV_READY);
    CHECK(otk_device_version(&d->dev, OTK_SET_ACTIVE) == version);
    CHECK(otk_device_version(&d->dev, OTK_SET_STAGED) == 0);
    CHECK_OK(world_record(w, d, &rec));
    CHECK(rec.state == OTK_DS_ACTIVE && rec.has_committed && !rec.has_pending);
    CHECK(rec.committed.version == version);
    CHECK_OK(otk_device_cloud(&d->dev, OTK_SET_ACTIVE, &c));
    CHECK(c.cloud_id == cloud_id && rec.committed.cloud.cloud_id == cloud_id);
    CHECK(strcmp(c.user, rec.committed.cloud.user) == 0);
    CHECK(strcmp(c.secret, rec.committed.cloud.secret) == 0);
    CHECK(otk_memcloud_connect(w->cloud, &c) == OTK_PROOF_OK);
}

static void test_lifecycle(void)
{
    world w;
    wdev d;
    otk_cloud v1, v2;
    unsigned long up, down;
    CHECK(world_init(&w, 11) == 0);
    CHECK(wdev_init(&w, &d, 1) == 0);
    CHECK_OK(wdev_boot(&w, &d));
    CHECK(otk_device_state(&d.dev) == OTK_DEV_UNCLAIMED);

    /* Claim -> confirm. */
    CHECK_OK(world_settle(&w, &d, STEPS));
    check_consistent(&w, &d, 1, WORLD_CLOUD_A);
    CHECK(otk_memcloud_count(w.cloud) == 1);
    CHECK(w.msgs_up == 2 && w.msgs_down == 2);
    CHECK(w.bytes_up == 122 + 38 && w.bytes_down == 285 + 38);
    CHECK_OK(otk_device_cloud(&d.dev, OTK_SET_ACTIVE, &v1));

    /* A poll with nothing to do: STATUS, nothing changes. */
    CHECK_OK(otk_device_poll(&d.dev));
    CHECK_OK(world_settle(&w, &d, STEPS));
    check_consistent(&w, &d, 1, WORLD_CLOUD_A);

    /* Rotation: NOTIFY -> UPDATE_REQ -> UPDATE_RESP -> prove -> CONFIRM -> ACK. */
    up = w.bytes_up;
    down = w.bytes_down;
    CHECK_OK(world_request(&w, &d, OTK_WANT_ROTATE, 0));
    CHECK(otk_device_state(&d.dev) == OTK_DEV_PROVE);
    CHECK(otk_memcloud_count(w.cloud) == 2); /* old and new both valid until proven */
    CHECK(otk_memcloud_connect(w.cloud, &v1) == OTK_PROOF_OK);
    CHECK_OK(world_settle(&w, &d, STEPS));
    check_consistent(&w, &d, 2, WORLD_CLOUD_A);
    CHECK(w.bytes_up - up == 118 + 38 && w.bytes_down - down == 38 + 285 + 38);
    CHECK(otk_memcloud_connect(w.cloud, &v1) == OTK_PROOF_REFUSED);
    CHECK(otk_memcloud_count(w.cloud) == 1);
    CHECK_OK(otk_device_cloud(&d.dev, OTK_SET_ACTIVE, &v2));
    CHECK(strcmp(v1.user, v2.user) != 0 && strcmp(v1.secret, v2.secret) != 0);

    /* Cloud switch to B. */
    CHECK_OK(world_request(&w, &d, OTK_WANT_SWITCH, WORLD_CLOUD_B));
    CHECK_OK(world_settle(&w, &d, STEPS));
    check_consistent(&w, &d, 3, WORLD_CLOUD_B);
    CHECK(otk_memcloud_connect(w.cloud, &v2) == OTK_PROOF_REFUSED);
    CHECK(otk_memcloud_count(w.cloud) == 1);

    /* Reboot in READY: same set, nothing to do. */
    CHECK_OK(wdev_boot(&w, &d));
    check_consistent(&w, &d, 3, WORLD_CLOUD_B);
    wdev_free(&d);
    world_free(&w);
}

/* Messages the device must refuse in any state, leaving it unchanged. */
static void check_garbage_refused(world *w, wdev *d, const uint8_t *valid, size_t len)
{
    uint8_t buf[OTK_MSG_MAX_LEN + 1];
    otk_device before = d->dev;
    otk_agent_device rb, ra;
    size_t i;
    int have = world_record(w, d, &rb) == OTK_OK;
    memcpy(buf, valid, len);
    CHECK_ST(dev_rx(d, buf, 0), OTK_ERR_TRUNCATED);
    CHECK_ST(dev_rx(d, buf, 17), OTK_ERR_TRUNCATED);
    CHECK_ST(dev_rx(d, buf, len - 1), OTK_ERR_TRUNCATED);
    buf[len] = 0;
    CHECK_ST(dev_rx(d, buf, len + 1), OTK_ERR_TRAILING);
    buf[0] = 9;
    CHECK_ST(dev_rx(d, buf, len), OTK_ERR_UNKNOWN_VERSION);
    buf[0] = 1;
    buf[1] = 77;
    CHECK_ST(dev_rx(d, buf, len), OTK_ERR_UNKNOWN_TYPE);
    for (i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 37u + 11u);
    CHECK(dev_rx(d, buf, sizeof buf) < 0);
    CHECK(memcmp(&before, &d->dev, sizeof before) == 0);
    /* The agent refuses the same garbage and its registry is unchanged. */
    CHECK(agent_answer(w, buf, 5, buf) == 0 && w->last_agent == OTK_ERR_TRUNCATED);
    if (have) {
        CHECK_OK(world_record(w, d, &ra));
        CHECK(memcmp(&ra, &rb, sizeof ra) == 0);
    }
}

static void test_claim_refusals(void)
{
    world w;
    wdev d, clone, wrongpk;
    uint8_t claim[OTK_MSG_MAX_LEN], resp[OTK_MSG_MAX_LEN], bad[OTK_MSG_MAX_LEN];
    size_t claim_len, resp_len, n;
    otk_agent_device rec, rec2;
    otk_device snap;
    otk_msg m;
    uint8_t digest[32];
    CHECK(world_init(&w, 22) == 0);
    CHECK(wdev_init(&w, &d, 7) == 0);
    CHECK_OK(wdev_boot(&w, &d));

    /* Wrong PK: BAD_MAC at the agent, no record created. */
    CHECK(wdev_init(&w, &wrongpk, 8) == 0);
    wrongpk.cfg.pk[0] ^= 1;
    CHECK_OK(wdev_boot(&w, &wrongpk));
    claim_len = capture_next(&wrongpk, claim);
    CHECK(claim_len == 122);
    CHECK(agent_answer(&w, claim, claim_len, resp) == OTK_ERROR_LEN);
    CHECK_ST(w.last_agent, OTK_ERR_BAD_MAC);
    CHECK_ST(world_record(&w, &wrongpk, &rec), OTK_ERR_NOT_FOUND);
    CHECK_OK(dev_rx(&wrongpk, resp, OTK_ERROR_LEN)); /* an ERROR is recorded, not acted upon */
    CHECK(otk_device_last_remote(&wrongpk.dev) == OTK_ERR_BAD_MAC);
    CHECK(otk_device_state(&wrongpk.dev) == OTK_DEV_CLAIMING);

    /* The real claim; keep the response to tamper with it. */
    claim_len = capture_next(&d, claim);
    resp_len = agent_answer(&w, claim, claim_len, resp);
    CHECK_OK(w.last_agent);
    CHECK(resp_len == 285);
    /* The identical retransmission gets the byte-identical response. */
    CHECK(agent_answer(&w, claim, claim_len, bad) == resp_len && memcmp(bad, resp, resp_len) == 0);

    check_garbage_refused(&w, &d, resp, resp_len);

    /* Forged signature. */
    snap = d.dev;
    memcpy(bad, resp, resp_len);
    bad[resp_len - 1] ^= 0x01;
    CHECK_ST(dev_rx(&d, bad, resp_len), OTK_ERR_BAD_SIGNATURE);
    /* Tampered ciphertext: the signature covers it... */
    memcpy(bad, resp, resp_len);
    bad[100] ^= 0x80;
    CHECK_ST(dev_rx(&d, bad, resp_len), OTK_ERR_BAD_SIGNATURE);
    /* ...and re-signed by the agent's own key the AEAD tag still catches it. */
    CHECK_OK(otk_msg_decode(bad, resp_len, &m));
    CHECK_OK(otk_resp_digest(&w.agent_crypto, d.dev.th, bad, resp_len - 64, digest));
    CHECK_OK(w.agent_crypto.ecdsa_sign(w.agent_crypto.ctx, w.cfg.sign_priv, digest, bad + resp_len - 64));
    CHECK_ST(dev_rx(&d, bad, resp_len), OTK_ERR_BAD_MAC);
    /* Addressed to another device. */
    memcpy(bad, resp, resp_len);
    bad[5] ^= 1;
    CHECK_ST(dev_rx(&d, bad, resp_len), OTK_ERR_WRONG_DEVICE);
    CHECK(memcmp(&snap, &d.dev, sizeof snap) == 0);
    CHECK(otk_device_version(&d.dev, OTK_SET_STAGED) == 0);

    /* The genuine response is accepted; a replay of it afterwards is not. */
    CHECK_OK(dev_rx(&d, resp, resp_len));
    CHECK(otk_device_state(&d.dev) == OTK_DEV_PROVE && otk_device_version(&d.dev, OTK_SET_STAGED) == 1);
    CHECK_ST(dev_rx(&d, resp, resp_len), OTK_ERR_UNEXPECTED);
    CHECK_OK(world_settle(&w, &d, STEPS));
    check_consistent(&w, &d, 1, WORLD_CLOUD_A);

    /* Replayed claim after commit: refused as a clone, state unchanged. */
    CHECK_OK(world_record(&w, &d, &rec));
    CHECK(agent_answer(&w, claim, claim_len, bad) == OTK_ERROR_LEN);
    CHECK_ST(w.last_agent, OTK_ERR_ALREADY_CLAIMED);
    CHECK_OK(world_record(&w, &d, &rec2));
    CHECK(memcmp(&rec, &rec2, sizeof rec) == 0);

    /* A second device with the same id (a clone): refused and audited. */
    n = otk_memreg_audit_count(w.reg, OTK_AUD_CLAIM_REFUSED);
    CHECK(wdev_init(&w, &clone, 7) == 0);
    CHECK_OK(wdev_boot(&w, &clone));
    CHECK_ST(world_settle(&w, &clone, 8), OTK_ERR_ALREADY_CLAIMED);
    CHECK(otk_device_state(&clone.dev) == OTK_DEV_CLAIMING);
    CHECK(otk_device_last_remote(&clone.dev) == OTK_ERR_ALREADY_CLAIMED);
    CHECK(otk_memreg_audit_count(w.reg, OTK_AUD_CLAIM_REFUSED) > n);
    check_consistent(&w, &d, 1, WORLD_CLOUD_A); /* the original is untouched */

    /* An operator allows a re-claim (device replaced): the clone gets v2, the old set dies. */
    CHECK_OK(otk_agent_allow_reclaim(&w.agent, d.cfg.device_id));
    w.last_agent = OTK_OK;
    clone.flash.now_ms += 10000;
    CHECK_OK(world_settle(&w, &clone, STEPS));
    check_consistent(&w, &clone, 2, WORLD_CLOUD_A);
    CHECK(otk_memcloud_count(w.cloud) == 1);

    wdev_free(&d);
    wdev_free(&clone);
    wdev_free(&wrongpk);
    world_free(&w);
}

/* Removes a set's client from the cloud, so that its proof is refused. */
static void sabotage_staged(world *w, wdev *d)
{
    otk_cloud c;
    CHECK_OK(otk_device_cloud(&d->dev, OTK_SET_STAGED, &c));
    CHECK_OK(w->cloudif.remove(w->cloudif.ctx, c.cloud_id, c.user));
}

static void test_update_refusals(void)
{
    world w;
    wdev d;
    uint8_t req[OTK_MSG_MAX_LEN], conf[OTK_MSG_MAX_LEN], ack[OTK_MSG_MAX_LEN], ack2[OTK_MSG_MAX_LEN];
    uint8_t fake[OTK_MSG_MAX_LEN], notify[OTK_MSG_MAX_LEN], th[32];
    size_t req_len, conf_len, ack_len, n, fake_len;
    otk_agent_device rec, rec2;
    otk_keyset ks;
    otk_device snap;
    uint32_t v;
    CHECK(world_init(&w, 33) == 0);
    CHECK(wdev_init(&w, &d, 3) == 0);
    CHECK_OK(wdev_boot(&w, &d));
    CHECK_OK(world_settle(&w, &d, STEPS));
    check_consistent(&w, &d, 1, WORLD_CLOUD_A);

    /* Rotation driven by hand, keeping the CONFIRM. */
    CHECK_OK(world_request(&w, &d, OTK_WANT_ROTATE, 0));
    CHECK(otk_device_state(&d.dev) == OTK_DEV_PROVE);
    CHECK_OK(otk_device_proof(&d.dev, OTK_PROOF_OK, conf, sizeof conf, &conf_len));
    CHECK(conf_len == OTK_CONFIRM_LEN);
    ack_len = agent_answer(&w, conf, conf_len, ack);
    CHECK(ack_len == OTK_ACK_LEN);
    CHECK_OK(dev_rx(&d, ack, ack_len));
    check_consistent(&w, &d, 2, WORLD_CLOUD_A);
    /* Replayed CONFIRM: the same ACK, no state change, no second commit. */
    CHECK_OK(world_record(&w, &d, &rec));
    n = otk_memreg_audit_count(w.reg, OTK_AUD_COMMIT);
    CHECK(agent_answer(&w, conf, conf_len, ack2) == ack_len && memcmp(ack, ack2, ack_len) == 0);
    CHECK_OK(world_record(&w, &d, &rec2));
    CHECK(memcmp(&rec, &rec2, sizeof rec) == 0);
    CHECK(otk_memreg_audit_count(w.reg, OTK_AUD_COMMIT) == n);
    /* The replayed ACK is harmless at the device. */
    snap = d.dev;
    CHECK_OK(dev_rx(&d, ack, ack_len));
    CHECK(memcmp(&snap, &d.dev, sizeof snap) == 0);
    /* A forged ACK (bad MAC) is refused. */
    ack[ack_len - 1] ^= 1;
    CHECK_ST(dev_rx(&d, ack, ack_len), OTK_ERR_BAD_MAC);

    /* Rollback: a correctly signed response carrying the active version or lower. */
    CHECK_OK(otk_device_poll(&d.dev));
    req_len = capture_next(&d, req);
    CHECK(req_len == OTK_UPDATE_REQ_LEN);
    CHECK_OK(otk_transcript(&w.agent_crypto, req, req_len, th));
    CHECK_OK(world_record(&w, &d, &rec));
    for (v = 1; v <= 2; v++) {
        ks = rec.committed;
        ks.version = v;
        CHECK_OK(otk_resp_build(&w.agent_crypto, OTK_MSG_UPDATE_RESP, d.cfg.device_id, th,
                                req + 38, rec.committed.ak, &ks, w.cfg.sign_priv, fake,
                                sizeof fake, &fake_len));
        snap = d.dev;
        CHECK_ST(dev_rx(&d, fake, fake_len), OTK_ERR_ROLLBACK);
        CHECK(memcmp(&snap, &d.dev, sizeof snap) == 0);
    }
    /* The same with version 3 would have been accepted: the check is the version. */
    world_up(&w, &d, req, req_len);
    CHECK(otk_device_state(&d.dev) == OTK_DEV_READY); /* STATUS: nothing to do */
    CHECK(otk_device_last_remote(&d.dev) == OTK_OK);
    /* The answered UPDATE_REQ replayed later: its STATUS no longer verifies at the device. */
    CHECK(agent_answer(&w, req, req_len, fake) == OTK_STATUS_LEN);
    CHECK_ST(dev_rx(&d, fake, OTK_STATUS_LEN), OTK_ERR_UNEXPECTED);
    CHECK_OK(otk_device_poll(&d.dev));
    n = capture_next(&d, req + 200);
    CHECK(n == OTK_UPDATE_REQ_LEN);
    CHECK_ST(dev_rx(&d, fake, OTK_STATUS_LEN), OTK_ERR_BAD_MAC); /* bound to the old nonce */
    world_up(&w, &d, req + 200, n);
    CHECK(otk_device_state(&d.dev) == OTK_DEV_READY);

    /* NOTIFY with a bad MAC is refused; a valid one starts a poll. */
    CHECK_OK(otk_agent_request_update(&w.agent, d.cfg.device_id, OTK_WANT_SWITCH, WORLD_CLOUD_B,
                                      notify, sizeof notify, &n));
    CHECK(n == OTK_NOTIFY_LEN);
    notify[n - 2] ^= 4;
    CHECK_ST(dev_rx(&d, notify, n), OTK_ERR_BAD_MAC);
    CHECK(otk_device_state(&d.dev) == OTK_DEV_READY);
    notify[n - 2] ^= 4;

    /* The cloud refuses the new set: ABORT -> signed NACK, back to the old set. */
    CHECK_OK(world_request(&w, &d, OTK_WANT_SWITCH, WORLD_CLOUD_B));
    CHECK(otk_device_state(&d.dev) == OTK_DEV_PROVE && otk_device_version(&d.dev, OTK_SET_STAGED) == 3);
    sabotage_staged(&w, &d);
    CHECK_OK(world_settle(&w, &d, STEPS));
    CHECK(otk_device_last_remote(&d.dev) == OTK_ERR_PROOF_FAILED);
    check_consistent(&w, &d, 2, WORLD_CLOUD_A);
    CHECK(otk_memreg_audit_count(w.reg, OTK_AUD_ABORT) == 1);
    /* A new request after the abort gets a new version, never 3 again. */
    CHECK_OK(world_request(&w, &d, OTK_WANT_SWITCH, WORLD_CLOUD_B));
    CHECK_OK(world_settle(&w, &d, STEPS));
    check_consistent(&w, &d, 4, WORLD_CLOUD_B);

    /* Revocation: the agent refuses the AK, the cloud refuses the credentials. */
    CHECK_OK(otk_device_cloud(&d.dev, OTK_SET_ACTIVE, &ks.cloud));
    CHECK_OK(otk_agent_revoke(&w.agent, d.cfg.device_id));
    CHECK(otk_memcloud_connect(w.cloud, &ks.cloud) == OTK_PROOF_REFUSED);
    CHECK_OK(otk_device_poll(&d.dev));
    CHECK_ST(world_settle(&w, &d, 4), OTK_ERR_REVOKED);
    CHECK(otk_device_last_remote(&d.dev) == OTK_ERR_REVOKED);
    CHECK(otk_memcloud_count(w.cloud) == 0);
    wdev_free(&d);
    world_free(&w);
}

static void test_lost_messages(void)
{
    world w;
    wdev d, e, twin;
    uint8_t claim[OTK_MSG_MAX_LEN], resp1[OTK_MSG_MAX_LEN];
    size_t claim_len, resp1_len;
    CHECK(world_init(&w, 44) == 0);

    /* CONFIRM lost, then a reboot: the staged set is proven again and committed. */
    CHECK(wdev_init(&w, &d, 1) == 0);
    CHECK_OK(wdev_boot(&w, &d));
    w.drop_next_up = 0;
    while (otk_device_state(&d.dev) != OTK_DEV_PROVE && w.msgs_up < 10)
        CHECK(world_settle(&w, &d, 1) != OTK_OK);
    w.drop_next_up = 1;
    CHECK(world_settle(&w, &d, 1) != OTK_OK); /* proof OK, CONFIRM dropped */
    CHECK(otk_device_state(&d.dev) == OTK_DEV_CONFIRMING);
    CHECK_OK(wdev_boot(&w, &d));
    CHECK(otk_device_state(&d.dev) == OTK_DEV_PROVE);
    CHECK_OK(world_settle(&w, &d, STEPS));
    check_consistent(&w, &d, 1, WORLD_CLOUD_A);

    /* ACK lost: the retransmitted CONFIRM gets it again. */
    CHECK_OK(world_request(&w, &d, OTK_WANT_ROTATE, 0));
    w.drop_next_down = 1;
    CHECK(world_settle(&w, &d, 1) != OTK_OK);
    CHECK(otk_device_state(&d.dev) == OTK_DEV_CONFIRMING);
    CHECK_OK(world_settle(&w, &d, STEPS));
    check_consistent(&w, &d, 2, WORLD_CLOUD_A);

    /* Claim response lost, device reboots: the new claim supersedes the old;
     * the late first response no longer verifies. */
    CHECK(wdev_init(&w, &e, 2) == 0);
    CHECK_OK(wdev_boot(&w, &e));
    claim_len = capture_next(&e, claim);
    resp1_len = agent_answer(&w, claim, claim_len, resp1);
    CHECK(resp1_len == 285);
    CHECK_OK(wdev_boot(&w, &e));
    claim_len = capture_next(&e, claim);
    world_up(&w, &e, claim, claim_len);
    CHECK(otk_device_state(&e.dev) == OTK_DEV_PROVE);
    CHECK(otk_memreg_audit_count(w.reg, OTK_AUD_CLAIM_SUPERSEDED) == 1);
    CHECK_OK(world_settle(&w, &e, STEPS));
    check_consistent(&w, &e, 2, WORLD_CLOUD_A);
    CHECK_OK(wdev_boot(&w, &e));
    CHECK_ST(dev_rx(&e, resp1, resp1_len), OTK_ERR_UNEXPECTED);
    CHECK(otk_memcloud_count(w.cloud) == 2); /* one client per device */

    /* A PK holder races a real device's unconfirmed claim: the agent
     * supersedes, the real device's proof fails, the signed NACK sends it
     * back to claiming, and its new claim supersedes the squatter's. */
    {
        wdev f;
        CHECK(wdev_init(&w, &f, 5) == 0);
        CHECK(wdev_init(&w, &twin, 5) == 0);
        CHECK_OK(wdev_boot(&w, &f));
        CHECK_OK(wdev_boot(&w, &twin));
        claim_len = capture_next(&f, claim);
        world_up(&w, &f, claim, claim_len);
        CHECK(otk_device_state(&f.dev) == OTK_DEV_PROVE && otk_device_version(&f.dev, OTK_SET_STAGED) == 1);
        claim_len = capture_next(&twin, claim);
        world_up(&w, &twin, claim, claim_len);
        CHECK(otk_device_state(&twin.dev) == OTK_DEV_PROVE && otk_device_version(&twin.dev, OTK_SET_STAGED) == 2);
        CHECK_OK(world_settle(&w, &f, STEPS));
        CHECK(otk_device_last_remote(&f.dev) == OTK_ERR_STALE);
        check_consistent(&w, &f, 3, WORLD_CLOUD_A);
        /* The squatter's set was superseded: its proof fails, its ABORT gets a NACK. */
        CHECK(world_settle(&w, &twin, 6) != OTK_OK);
        CHECK(otk_device_state(&twin.dev) == OTK_DEV_CLAIMING);
        CHECK(otk_device_last_remote(&twin.dev) == OTK_ERR_ALREADY_CLAIMED);
        check_consistent(&w, &f, 3, WORLD_CLOUD_A);
        wdev_free(&f);
        wdev_free(&twin);
    }
    wdev_free(&d);
    wdev_free(&e);
    world_free(&w);
}

int main(void)
{
    test_lifecycle();
    test_claim_refusals();
    test_update_refusals();
    test_lost_messages();
    return CHECK_DONE();
}
