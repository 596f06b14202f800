/*
 * The dynamic-security cloud adapter against real mosquitto brokers over
 * TLS (run under tests/with_lab.sh): clients created, made idempotent,
 * deleted; then the whole protocol with real clouds, where every proof is
 * a real MQTT CONNECT and retired credentials are refused by the broker.
 */
#include <stdio.h>
#include <stdlib.h>

#include <mosquitto.h>

#include "check.h"
#include "posix_port.h"
#include "world.h"

#include "otakey/dynsec.h"

#define STEPS 64

static const char *env(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL) {
        fprintf(stderr, "test_dynsec: %s is not set (run under tests/with_lab.sh)\n", name);
        exit(1);
    }
    return v;
}

/* The device id a user name "<32 hex>-<version>" belongs to (the agent's naming). */
static const char *owner_of(const otk_cloud *c, char hex[33])
{
    snprintf(hex, 33, "%.32s", c->user);
    return hex;
}

/* A login as the device the credentials were issued to. */
static otk_proof prove(void *ctx, const otk_cloud *c)
{
    char hex[33];
    (void)ctx;
    return otk_mqtt_prove(c, env("LAB_CA"), owner_of(c, hex), 5000);
}

/* Publishes once with QoS 1 using the credentials; the PUBACK reason (-1: none). */
static int publish_reason_rc;
static void on_pub(struct mosquitto *m, void *ud, int mid, int rc, const mosquitto_property *p)
{
    (void)m;
    (void)ud;
    (void)mid;
    (void)p;
    publish_reason_rc = rc;
}

static int publish_as(const otk_cloud *c, const char *topic)
{
    char hex[33];
    struct mosquitto *m = mosquitto_new(owner_of(c, hex), true, NULL);
    int i;
    publish_reason_rc = -1;
    mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_publish_v5_callback_set(m, on_pub);
    if (mosquitto_username_pw_set(m, c->user, c->secret) == 0 &&
        mosquitto_tls_set(m, env("LAB_CA"), NULL, NULL, NULL, NULL) == 0 &&
        mosquitto_connect(m, c->host, c->port, 30) == 0 &&
        mosquitto_publish_v5(m, NULL, topic, 2, "hi", 1, false, NULL) == 0)
        for (i = 0; i < 100 && publish_reason_rc < 0; i++)
            (void)mosquitto_loop(m, 20, 1);
    mosquitto_destroy(m);
    return publish_reason_rc;
}

static void fill_clouds(otk_dynsec_cloud *cl)
{
    size_t i;
    memset(cl, 0, 2 * sizeof *cl);
    for (i = 0; i < 2; i++) {
        cl[i].cloud_id = (uint32_t)(i + 1);
        strcpy(cl[i].host, "127.0.0.1");
        cl[i].port = (uint16_t)atoi(env(i ? "LAB_CLOUD_B_PORT" : "LAB_CLOUD_A_PORT"));
        cl[i].tls = 1;
        snprintf(cl[i].cafile, sizeof cl[i].cafile, "%s", env("LAB_CA"));
        snprintf(cl[i].admin_user, sizeof cl[i].admin_user, "%s", env("LAB_CLOUD_ADMIN"));
        snprintf(cl[i].admin_password, sizeof cl[i].admin_password, "%s", env("LAB_CLOUD_PASSWORD"));
    }
}

#define USER1 "42424242424242424242424242424242-1"

static void test_adapter(otk_dynsec *ds)
{
    otk_cloud_adapter ad;
    otk_cloud c;
    uint8_t id[16];
    memset(id, 0x42, sizeof id);
    otk_dynsec_adapter(ds, &ad);
    CHECK_OK(otk_cloud_set(&c, 1, "127.0.0.1", (uint16_t)atoi(env("LAB_CLOUD_A_PORT")),
                           OTK_CLOUD_FLAG_TLS, USER1, "first-secret"));
    CHECK(prove(NULL, &c) == OTK_PROOF_REFUSED);
    CHECK_OK(ad.create(ad.ctx, id, &c));
    CHECK(prove(NULL, &c) == OTK_PROOF_OK);
    /* The credentials are bound to the device's id: under any other client
     * id (another device's, or the admin connection's) they are refused. */
    CHECK(otk_mqtt_prove(&c, env("LAB_CA"), "43434343434343434343434343434343", 5000) ==
          OTK_PROOF_REFUSED);
    CHECK(otk_mqtt_prove(&c, env("LAB_CA"), "otakey-agent-1-1", 5000) == OTK_PROOF_REFUSED);
    /* Creating again with another secret: idempotent, the new secret rules. */
    CHECK_OK(otk_cloud_set(&c, 1, c.host, c.port, c.flags, USER1, "second-secret"));
    CHECK_OK(ad.create(ad.ctx, id, &c));
    CHECK(prove(NULL, &c) == OTK_PROOF_OK);
    CHECK_OK(otk_cloud_set(&c, 1, c.host, c.port, c.flags, USER1, "first-secret"));
    CHECK(prove(NULL, &c) == OTK_PROOF_REFUSED);
    CHECK_OK(ad.remove(ad.ctx, 1, USER1));
    CHECK_OK(otk_cloud_set(&c, 1, c.host, c.port, c.flags, USER1, "second-secret"));
    CHECK(prove(NULL, &c) == OTK_PROOF_REFUSED);
    CHECK_OK(ad.remove(ad.ctx, 1, USER1)); /* absent: still fine */
    CHECK_ST(ad.remove(ad.ctx, 9, "x"), OTK_ERR_CLOUD); /* unknown cloud */
    /* A cloud nobody listens on is unreachable, not refused. */
    CHECK_OK(otk_cloud_set(&c, 1, "127.0.0.1", 1, OTK_CLOUD_FLAG_TLS, "u", "s"));
    CHECK(prove(NULL, &c) == OTK_PROOF_UNREACHABLE);
}

static void test_protocol(otk_dynsec *ds)
{
    world w;
    wdev d;
    otk_cloud v1, v2, v3;
    size_t i;
    CHECK(world_init(&w, 9) == 0);
    otk_dynsec_adapter(ds, &w.cloudif);
    for (i = 0; i < 2; i++)
        w.cfg.clouds[i].port = (uint16_t)atoi(env(i ? "LAB_CLOUD_B_PORT" : "LAB_CLOUD_A_PORT"));
    strcpy(w.cfg.clouds[1].host, "127.0.0.1");
    CHECK_OK(otk_agent_init(&w.agent, &w.agent_crypto, &w.regif, &w.cloudif, &w.cfg));
    w.prove = prove;
    CHECK(wdev_init(&w, &d, 77) == 0);
    CHECK_OK(wdev_boot(&w, &d));
    CHECK_OK(world_settle(&w, &d, STEPS));
    CHECK_OK(otk_device_cloud(&d.dev, OTK_SET_ACTIVE, &v1));
    CHECK(prove(NULL, &v1) == OTK_PROOF_OK);
    {
        /* Its role allows its own topics only (0x87: not authorised). */
        char own[64], prefix[48];
        otk_dynsec_topic_prefix(d.cfg.device_id, prefix);
        snprintf(own, sizeof own, "%stelemetry", prefix);
        CHECK(publish_as(&v1, own) >= 0 && publish_as(&v1, own) < 0x80);
        CHECK(publish_as(&v1, "devices/00000000000000000000000000000000/telemetry") == 0x87);
        CHECK(publish_as(&v1, "somewhere/else") == 0x87);
        /* ... and under its own id only. */
        CHECK(otk_mqtt_prove(&v1, env("LAB_CA"), "00000000000000000000000000000000", 5000) ==
              OTK_PROOF_REFUSED);
    }
    CHECK_OK(world_request(&w, &d, OTK_WANT_ROTATE, 0));
    CHECK_OK(world_settle(&w, &d, STEPS));
    CHECK_OK(otk_device_cloud(&d.dev, OTK_SET_ACTIVE, &v2));
    CHECK(otk_device_version(&d.dev, OTK_SET_ACTIVE) == 2);
    CHECK(prove(NULL, &v2) == OTK_PROOF_OK);
    CHECK(prove(NULL, &v1) == OTK_PROOF_REFUSED); /* retired on the real broker */
    CHECK_OK(world_request(&w, &d, OTK_WANT_SWITCH, WORLD_CLOUD_B));
    CHECK_OK(world_settle(&w, &d, STEPS));
    CHECK_OK(otk_device_cloud(&d.dev, OTK_SET_ACTIVE, &v3));
    CHECK(v3.cloud_id == WORLD_CLOUD_B && prove(NULL, &v3) == OTK_PROOF_OK);
    CHECK(prove(NULL, &v2) == OTK_PROOF_REFUSED);
    /* Revocation deletes the client on the broker. */
    CHECK_OK(otk_agent_revoke(&w.agent, d.cfg.device_id));
    CHECK(prove(NULL, &v3) == OTK_PROOF_REFUSED);
    wdev_free(&d);
    world_free(&w);
}

int main(void)
{
    otk_dynsec_cloud cl[2];
    otk_dynsec *ds = NULL;
    char err[256] = "";
    fill_clouds(cl);
    CHECK_OK(otk_dynsec_open(cl, 2, 5000, &ds, err, sizeof err));
    if (ds == NULL) {
        fprintf(stderr, "test_dynsec: %s\n", err);
        return CHECK_DONE();
    }
    test_adapter(ds);
    test_protocol(ds);
    otk_dynsec_close(ds);
    /* TLS fails closed: a CA file that cannot be loaded is an error, not plain TCP. */
    fill_clouds(cl);
    strcpy(cl[0].cafile, "/nonexistent/ca.crt");
    CHECK_ST(otk_dynsec_open(cl, 1, 3000, &ds, err, sizeof err), OTK_ERR_CLOUD);
    CHECK(ds == NULL && strstr(err, "TLS") != NULL);
    cl[0].cafile[0] = '\0';
    CHECK_ST(otk_dynsec_open(cl, 1, 3000, &ds, err, sizeof err), OTK_ERR_CLOUD);
    fill_clouds(cl);
    /* A wrong admin password is reported, not hidden. */
    strcpy(cl[0].admin_password, "wrong");
    CHECK_ST(otk_dynsec_open(cl, 1, 3000, &ds, err, sizeof err), OTK_ERR_CLOUD);
    CHECK(ds == NULL && strstr(err, "cloud 1") != NULL);
    return CHECK_DONE();
}
