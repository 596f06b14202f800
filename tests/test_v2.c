/*
 * Protocol version 2 end to end in one process (docs/protocol.md §11):
 * version 2 devices beside version 1 devices on one agent, password and
 * certificate clouds, certificate sets issued for keys the devices made,
 * and every refusal the version brings: no downgrade, no certificate for a
 * key without its proof of possession, no version 1 device on a
 * certificate cloud, no certificate staged that does not carry the
 * device's key. The agent runs over SQLite, restarted mid-update.
 */
#include <stdio.h>
#include <unistd.h>

#include "check.h"
#include "world.h"

#include "otakey/proto.h"

#define STEPS 64

static char path[64];

static void v2_device(world *w, wdev *d, unsigned n)
{
    CHECK(wdev_init(w, d, n) == 0);
    d->cfg.proto = OTK_PROTO_V2;
    CHECK_OK(wdev_boot(w, d));
}

/* Captures the last message a device sent up. */
static uint8_t last_up[OTK_MSG_MAX_LEN];
static size_t last_up_len;
static void tap(void *ctx, int up, const uint8_t *msg, size_t len)
{
    (void)ctx;
    if (up && len <= sizeof last_up) {
        memcpy(last_up, msg, len);
        last_up_len = len;
    }
}

static uint8_t kind(const world *w, const wdev *d)
{
    otk_agent_device rec;
    uint8_t k = 0;
    if (world_record((world *)w, d, &rec) == OTK_OK && rec.has_committed)
        k = rec.committed.kind ? rec.committed.kind : OTK_KIND_PASSWORD;
    return k;
}

/* Cloud B takes certificate sets. */
static void make_b_cert(world *w)
{
    w->cfg.clouds[1].kind = OTK_KIND_CERT;
    CHECK(world_restart_agent(w) == 0);
}

static void test_side_by_side(void)
{
    world w;
    wdev v1, v2;
    otk_agent_device rec;
    otk_cloud c;
    char old_serial[OTK_USER_MAX + 1];
    uint8_t der[OTK_CERT_MAX], priv[32];
    size_t len = 0;
    CHECK(world_init_sqlite(&w, 21, path) == 0);
    make_b_cert(&w);
    CHECK(wdev_init(&w, &v1, 1) == 0);
    CHECK_OK(wdev_boot(&w, &v1));
    v2_device(&w, &v2, 2);
    /* Both claim on cloud A (passwords), each in its own version. */
    w.tap = tap;
    CHECK_OK(world_settle(&w, &v1, STEPS));
    CHECK_OK(world_settle(&w, &v2, STEPS));
    CHECK(last_up[0] == 2 && last_up_len == OTK_CONFIRM_LEN);
    CHECK(kind(&w, &v1) == OTK_KIND_PASSWORD && kind(&w, &v2) == OTK_KIND_PASSWORD);
    CHECK_OK(world_record(&w, &v2, &rec));
    CHECK(rec.proto == OTK_PROTO_V2);
    /* A version 1 device cannot move to a certificate cloud. */
    CHECK_ST(world_request(&w, &v1, OTK_WANT_SWITCH, WORLD_CLOUD_B), OTK_ERR_UNKNOWN_VERSION);
    /* The version 2 device switches to B: NOTIFY of kind 2, a keyed request, a certificate. */
    CHECK_OK(world_request(&w, &v2, OTK_WANT_SWITCH, WORLD_CLOUD_B));
    CHECK_OK(world_settle(&w, &v2, STEPS));
    CHECK(otk_device_version(&v2.dev, OTK_SET_ACTIVE) == 2);
    CHECK(otk_device_kind(&v2.dev, OTK_SET_ACTIVE) == OTK_KIND_CERT);
    CHECK(kind(&w, &v2) == OTK_KIND_CERT);
    CHECK_OK(world_record(&w, &v2, &rec));
    CHECK(rec.committed.cloud.cloud_id == WORLD_CLOUD_B && rec.committed.cloud.user_len > 0);
    snprintf(old_serial, sizeof old_serial, "%s", rec.committed.cloud.user);
    CHECK(world_cert_login(&w, &v2, OTK_SET_ACTIVE) == OTK_PROOF_OK);
    /* The device holds the certificate for its own key; the agent never saw the key. */
    CHECK_OK(otk_device_cert(&v2.dev, OTK_SET_ACTIVE, der, sizeof der, &len));
    CHECK_OK(otk_device_cert_key(&v2.dev, OTK_SET_ACTIVE, priv));
    CHECK(len > 0);
    CHECK_OK(otk_device_cloud(&v2.dev, OTK_SET_ACTIVE, &c));
    CHECK(c.user_len == 0 && c.cloud_id == WORLD_CLOUD_B);
    /* Rotation on the certificate cloud: a new key, a new certificate, the old one revoked. */
    CHECK_OK(world_request(&w, &v2, OTK_WANT_ROTATE, 0));
    {
        uint8_t der1[OTK_CERT_MAX], priv1[32];
        size_t len1 = len;
        memcpy(der1, der, len);
        memcpy(priv1, priv, 32);
        CHECK_OK(world_settle(&w, &v2, STEPS));
        CHECK(otk_device_version(&v2.dev, OTK_SET_ACTIVE) == 3);
        CHECK(otk_memcloud_connect_cert(w.cloud, &w.dev_crypto, WORLD_CLOUD_B, der1, len1, priv1) ==
              OTK_PROOF_REFUSED);
        CHECK_OK(otk_device_cert_key(&v2.dev, OTK_SET_ACTIVE, priv));
        CHECK(memcmp(priv, priv1, 32) != 0);
        otk_wipe(priv1, sizeof priv1);
    }
    CHECK(world_cert_login(&w, &v2, OTK_SET_ACTIVE) == OTK_PROOF_OK);
    CHECK_OK(world_record(&w, &v2, &rec));
    CHECK(strcmp(rec.committed.cloud.user, old_serial) != 0);
    /* And back to passwords on A. */
    CHECK_OK(world_request(&w, &v2, OTK_WANT_SWITCH, WORLD_CLOUD_A));
    CHECK_OK(world_settle(&w, &v2, STEPS));
    CHECK(otk_device_version(&v2.dev, OTK_SET_ACTIVE) == 4 && kind(&w, &v2) == OTK_KIND_PASSWORD);
    CHECK(otk_device_kind(&v2.dev, OTK_SET_ACTIVE) == OTK_KIND_PASSWORD);
    /* The version 1 device still rotates on A, in version 1. */
    CHECK_OK(world_request(&w, &v1, OTK_WANT_ROTATE, 0));
    CHECK_OK(world_settle(&w, &v1, STEPS));
    CHECK(otk_device_version(&v1.dev, OTK_SET_ACTIVE) == 2 && last_up[0] == 1);
    otk_wipe(priv, sizeof priv);
    wdev_free(&v1);
    wdev_free(&v2);
    world_free(&w);
}

/* Re-MACs a message under key after changing it. */
static void remac(world *w, uint8_t *msg, size_t len, const uint8_t key[32])
{
    CHECK_OK(otk_mac_write(&w->dev_crypto, key, 32, msg, otk_msg_auth_offset(msg[1], len), NULL, 0));
}

static void test_refusals(void)
{
    world w;
    wdev d;
    otk_keyset ks;
    otk_keystore *store;
    uint8_t msg[OTK_MSG_MAX_LEN], out[OTK_MSG_MAX_LEN];
    size_t len, n;
    CHECK(world_init(&w, 22) == 0);
    make_b_cert(&w);
    v2_device(&w, &d, 3);
    w.tap = tap;
    CHECK_OK(world_settle(&w, &d, STEPS));
    store = &d.dev.ks;
    CHECK_OK(otk_ks_load(store, 0, &ks));
    /* On the certificate cloud, a rotation: catch the keyed request the NOTIFY brings. */
    CHECK_OK(world_request(&w, &d, OTK_WANT_SWITCH, WORLD_CLOUD_B));
    CHECK_OK(world_settle(&w, &d, STEPS));
    CHECK_OK(otk_ks_load(store, 0, &ks));
    w.drop_next_up = 1;
    CHECK_OK(world_request(&w, &d, OTK_WANT_ROTATE, 0));
    CHECK(otk_device_state(&d.dev) == OTK_DEV_UPDATING);
    d.flash.now_ms += 20000; /* its retransmission: the same bytes */
    len = 0;
    CHECK_OK(otk_device_next(&d.dev, msg, sizeof msg, &len));
    CHECK(len == OTK_UPDATE_REQ2_KEY_LEN && msg[0] == 2 && msg[102] == 1);
    /* A forged pop (MAC made again with the AK, as a holder of the flash could) is refused. */
    msg[200] ^= 0x40;
    remac(&w, msg, len, ks.ak);
    CHECK_ST(otk_agent_handle(&w.agent, msg, len, out, sizeof out, &n), OTK_ERR_BAD_SIGNATURE);
    msg[200] ^= 0x40;
    remac(&w, msg, len, ks.ak);
    /* The same request in version 1 (a downgrade) is refused, MAC or not. */
    {
        uint8_t v1[OTK_UPDATE_REQ_LEN];
        memcpy(v1, msg, 102);
        v1[0] = 1;
        remac(&w, v1, sizeof v1, ks.ak);
        CHECK_ST(otk_agent_handle(&w.agent, v1, sizeof v1, out, sizeof out, &n),
                 OTK_ERR_UNKNOWN_VERSION);
        CHECK(n == OTK_ERROR_LEN && out[0] == 1);
    }
    /* The genuine request goes through. */
    CHECK_OK(otk_agent_handle(&w.agent, msg, len, out, sizeof out, &n));
    CHECK(n > 0 && out[1] == OTK_MSG_UPDATE_RESP && out[0] == 2);
    CHECK_OK(otk_device_receive(&d.dev, out, n, msg, sizeof msg, &len));
    CHECK(otk_device_state(&d.dev) == OTK_DEV_PROVE);
    CHECK_OK(world_settle(&w, &d, STEPS));
    CHECK(otk_device_version(&d.dev, OTK_SET_ACTIVE) == 3);
    /* A certificate that does not carry the device's key is never staged. */
    otk_memcloud_wrong_key(w.cloud, 1);
    CHECK_OK(world_request(&w, &d, OTK_WANT_ROTATE, 0));
    CHECK(world_settle(&w, &d, 8) == OTK_ERR_BAD_VALUE);
    CHECK(otk_device_version(&d.dev, OTK_SET_STAGED) == 0 &&
          otk_device_version(&d.dev, OTK_SET_ACTIVE) == 3);
    otk_wipe(&ks, sizeof ks);
    wdev_free(&d);
    world_free(&w);
}

/* A certificate claim cloud: version 2 devices claim certificates, version 1 devices are refused. */
static void test_cert_claim(void)
{
    world w;
    wdev v1, v2;
    CHECK(world_init(&w, 23) == 0);
    w.cfg.clouds[0].kind = OTK_KIND_CERT;
    CHECK(world_restart_agent(&w) == 0);
    v2_device(&w, &v2, 4);
    CHECK_OK(world_settle(&w, &v2, STEPS));
    CHECK(otk_device_kind(&v2.dev, OTK_SET_ACTIVE) == OTK_KIND_CERT);
    CHECK(world_cert_login(&w, &v2, OTK_SET_ACTIVE) == OTK_PROOF_OK);
    CHECK(wdev_init(&w, &v1, 5) == 0);
    CHECK_OK(wdev_boot(&w, &v1));
    CHECK(world_settle(&w, &v1, 4) != OTK_OK);
    CHECK(w.last_agent == OTK_ERR_UNKNOWN_VERSION);
    CHECK(otk_device_version(&v1.dev, OTK_SET_ACTIVE) == 0);
    /* claim_cloud_v1 must name a password cloud ... */
    w.cfg.claim_cloud_v1 = WORLD_CLOUD_A;
    CHECK(world_restart_agent(&w) != 0);
    /* ... and then v1 devices claim there while v2 devices claim on A. */
    w.cfg.claim_cloud_v1 = WORLD_CLOUD_B;
    CHECK(world_restart_agent(&w) == 0);
    CHECK_OK(world_settle(&w, &v1, STEPS));
    CHECK(otk_device_version(&v1.dev, OTK_SET_ACTIVE) == 1);
    {
        otk_cloud cl;
        CHECK_OK(otk_device_cloud(&v1.dev, OTK_SET_ACTIVE, &cl));
        CHECK(cl.cloud_id == WORLD_CLOUD_B);
    }
    CHECK(kind(&w, &v1) == OTK_KIND_PASSWORD);
    wdev_free(&v1);
    wdev_free(&v2);
    world_free(&w);
}

/*
 * Crashes around a certificate update: the agent restarted from SQLite
 * between issue and confirm; the device rebooted after asking (its key
 * lost: the pending certificate is revoked and a new one issued).
 */
static void test_restarts(void)
{
    world w;
    wdev d;
    otk_agent_device rec;
    char first[OTK_USER_MAX + 1];
    unlink(path);
    CHECK(world_init_sqlite(&w, 24, path) == 0);
    make_b_cert(&w);
    v2_device(&w, &d, 6);
    CHECK_OK(world_settle(&w, &d, STEPS));
    {
        /* The NOTIFY, the device's keyed request, the agent's response: lost. */
        uint8_t notify[OTK_MSG_MAX_LEN], req[OTK_MSG_MAX_LEN], resp[OTK_MSG_MAX_LEN];
        size_t nn = 0, rn = 0, pn = 0;
        CHECK_OK(otk_agent_request_update(&w.agent, d.cfg.device_id, OTK_WANT_SWITCH, WORLD_CLOUD_B,
                                          notify, sizeof notify, &nn));
        CHECK(nn == OTK_NOTIFY2_LEN && notify[22] == OTK_KIND_CERT);
        CHECK_OK(otk_device_receive(&d.dev, notify, nn, req, sizeof req, &rn));
        CHECK(rn == OTK_UPDATE_REQ2_KEY_LEN);
        CHECK_OK(otk_agent_handle(&w.agent, req, rn, resp, sizeof resp, &pn));
        CHECK(pn > 0 && resp[1] == OTK_MSG_UPDATE_RESP);
        CHECK(otk_device_state(&d.dev) == OTK_DEV_UPDATING);
    }
    CHECK(world_restart_agent(&w) == 0);
    CHECK_OK(world_record(&w, &d, &rec));
    CHECK(rec.has_pending && rec.pending.kind == OTK_KIND_CERT && rec.pending_cert_len > 0);
    snprintf(first, sizeof first, "%s", rec.pending.cloud.user);
    /* The device reboots: a new request with a new key supersedes the pending certificate. */
    CHECK_OK(wdev_boot(&w, &d));
    CHECK_OK(otk_device_poll(&d.dev));
    CHECK_OK(world_settle(&w, &d, STEPS));
    CHECK(otk_device_version(&d.dev, OTK_SET_ACTIVE) >= 2 &&
          otk_device_kind(&d.dev, OTK_SET_ACTIVE) == OTK_KIND_CERT);
    CHECK(world_cert_login(&w, &d, OTK_SET_ACTIVE) == OTK_PROOF_OK);
    CHECK_OK(world_record(&w, &d, &rec));
    CHECK(!rec.has_pending && strcmp(rec.committed.cloud.user, first) != 0);
    wdev_free(&d);
    world_free(&w);
}

/* One poll of a ready device: its UPDATE_REQ (decoded into m) and the agent's answer type. */
static uint8_t poll_once(world *w, wdev *d, otk_msg *m, size_t *req_len)
{
    uint8_t req[OTK_MSG_MAX_LEN], resp[OTK_MSG_MAX_LEN], back[OTK_MSG_MAX_LEN];
    size_t rn = 0, pn = 0, bn = 0;
    CHECK_OK(otk_device_poll(&d->dev));
    CHECK_OK(otk_device_next(&d->dev, req, sizeof req, &rn));
    CHECK(rn > 0 && req[1] == OTK_MSG_UPDATE_REQ);
    CHECK_OK(otk_msg_decode(req, rn, m));
    *req_len = rn;
    CHECK_OK(otk_agent_handle(&w->agent, req, rn, resp, sizeof resp, &pn));
    CHECK(pn > 1);
    CHECK_OK(otk_device_receive(&d->dev, resp, pn, back, sizeof back, &bn));
    return resp[1];
}

/*
 * A device on a certificate set polls with a key (§11.2): a certificate
 * set waiting at the agent comes in the poll's answer, without a NOTIFY
 * first; the key is made once per update (kept by polls answered
 * "nothing") and is the key of the certificate issued.
 */
static void test_keyed_poll(void)
{
    world w;
    wdev d;
    otk_msg m;
    uint8_t first[OTK_PUB_LEN], der[OTK_CERT_MAX], notify[OTK_MSG_MAX_LEN];
    size_t rn = 0, len = 0, nn = 0;
    unlink(path);
    CHECK(world_init_sqlite(&w, 25, path) == 0);
    make_b_cert(&w);
    v2_device(&w, &d, 7);
    CHECK_OK(world_settle(&w, &d, STEPS));
    /* On a password set a poll carries no key. */
    CHECK(poll_once(&w, &d, &m, &rn) == OTK_MSG_STATUS);
    CHECK(rn == OTK_UPDATE_REQ2_LEN && !m.has_key);
    CHECK_OK(world_request(&w, &d, OTK_WANT_SWITCH, WORLD_CLOUD_B));
    CHECK_OK(world_settle(&w, &d, STEPS));
    CHECK(otk_device_kind(&d.dev, OTK_SET_ACTIVE) == OTK_KIND_CERT);
    /* On a certificate set: keyed, and the same key while nothing is issued. */
    CHECK(poll_once(&w, &d, &m, &rn) == OTK_MSG_STATUS);
    CHECK(rn == OTK_UPDATE_REQ2_KEY_LEN && m.has_key);
    memcpy(first, m.dpub, sizeof first);
    CHECK(poll_once(&w, &d, &m, &rn) == OTK_MSG_STATUS);
    CHECK(m.has_key && memcmp(m.dpub, first, sizeof first) == 0);
    CHECK(otk_device_state(&d.dev) == OTK_DEV_READY);
    /* A rotation wanted (its NOTIFY lost): the poll's answer is the set itself. */
    CHECK_OK(otk_agent_request_update(&w.agent, d.cfg.device_id, OTK_WANT_ROTATE, 0, notify,
                                      sizeof notify, &nn));
    CHECK(poll_once(&w, &d, &m, &rn) == OTK_MSG_UPDATE_RESP);
    CHECK(memcmp(m.dpub, first, sizeof first) == 0);
    CHECK(otk_device_state(&d.dev) == OTK_DEV_PROVE);
    CHECK_OK(world_settle(&w, &d, STEPS));
    CHECK(otk_device_version(&d.dev, OTK_SET_ACTIVE) == 3);
    CHECK(world_cert_login(&w, &d, OTK_SET_ACTIVE) == OTK_PROOF_OK);
    /* The certificate is for the key the polls offered. */
    CHECK_OK(otk_device_cert(&d.dev, OTK_SET_ACTIVE, der, sizeof der, &len));
    {
        size_t i;
        int found = 0;
        for (i = 0; i + OTK_PUB_LEN <= len && !found; i++)
            found = memcmp(der + i, first, OTK_PUB_LEN) == 0;
        CHECK(found);
    }
    /* That key is spent: the next poll offers a new one. */
    CHECK(poll_once(&w, &d, &m, &rn) == OTK_MSG_STATUS);
    CHECK(m.has_key && memcmp(m.dpub, first, sizeof first) != 0);
    wdev_free(&d);
    world_free(&w);
}

int main(void)
{
    snprintf(path, sizeof path, "/tmp/otk-test-v2-%d.db", (int)getpid());
    unlink(path);
    test_side_by_side();
    test_refusals();
    test_cert_claim();
    test_restarts();
    test_keyed_poll();
    unlink(path);
    return CHECK_DONE();
}
