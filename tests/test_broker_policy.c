/*
 * The brokers' access policy (src/broker/policy.h), rule by rule: which
 * client ids, users and topics each listener role allows, and the options
 * that configure it. The same policy runs inside mosquitto in the attack
 * suite (tests/attacks_e2e.sh).
 */
#include "check.h"
#include "policy.h"

#define DEV "0123456789abcdef0123456789abcdef"
#define OTHER "ffffffffffffffffffffffffffffffff"

static otk_bp_config make(const char *role, const char *spaces)
{
    otk_bp_config c;
    char err[200];
    memset(&c, 0, sizeof c);
    CHECK(otk_bp_option(&c, "role", role, err, sizeof err) == 0);
    if (spaces)
        CHECK(otk_bp_option(&c, "spaces", spaces, err, sizeof err) == 0);
    CHECK(otk_bp_check(&c, err, sizeof err) == 0);
    return c;
}

static int acl(const otk_bp_config *c, const char *user, const char *cid, int access,
               const char *topic, int retain)
{
    int reason = -1, v = otk_bp_acl(c, user, cid, access, topic, retain, &reason);
    CHECK(v != OTK_BP_DENY || (reason >= 0 && reason < OTK_BP_R_COUNT));
    return v;
}

static void test_options(void)
{
    otk_bp_config c;
    char err[200];
    memset(&c, 0, sizeof c);
    CHECK(otk_bp_check(&c, err, sizeof err) != 0 && strstr(err, "role"));
    CHECK(otk_bp_option(&c, "role", "brokers", err, sizeof err) != 0 && strstr(err, "brokers"));
    CHECK(otk_bp_option(&c, "colour", "x", err, sizeof err) != 0 && strstr(err, "colour"));
    CHECK(otk_bp_option(&c, "role", "agents", err, sizeof err) == 0);
    CHECK(otk_bp_check(&c, err, sizeof err) != 0 && strstr(err, "spaces"));
    CHECK(otk_bp_option(&c, "spaces", "otakey/v1", err, sizeof err) == 0);
    CHECK(otk_bp_check(&c, err, sizeof err) != 0 && strstr(err, "owner")); /* agents need owners */
    CHECK(otk_bp_option(&c, "spaces", "otakey/#", err, sizeof err) != 0);    /* no wildcards */
    CHECK(otk_bp_option(&c, "spaces", "$SYS=x", err, sizeof err) != 0);
    CHECK(otk_bp_option(&c, "spaces", "a/=x", err, sizeof err) != 0);
    CHECK(otk_bp_option(&c, "spaces", "a=", err, sizeof err) != 0);
    CHECK(otk_bp_option(&c, "spaces", "a=1 b=2 c=3 d=4 e=5 f=6 g=7 h=8 i=9", err, sizeof err) != 0);
    CHECK(otk_bp_option(&c, "spaces", " otakey/v1=otakey-agent   bench/v1=otakey-bench ", err,
                        sizeof err) == 0);
    CHECK(c.n_spaces == 2 && !strcmp(c.spaces[1].root, "bench/v1") &&
          !strcmp(c.spaces[1].owner, "otakey-bench"));
    CHECK(otk_bp_check(&c, err, sizeof err) == 0);
    CHECK(otk_bp_option(&c, "report_ms", "50", err, sizeof err) != 0);
    CHECK(otk_bp_option(&c, "report_ms", "1000", err, sizeof err) == 0 && c.report_ms == 1000);
    CHECK(otk_bp_option(&c, "report_topic", "a/+", err, sizeof err) != 0);
}

static void test_devices(void)
{
    otk_bp_config c = make("devices", "otakey/v1 bench/v1");
    int reason = -1;
    CHECK(otk_bp_is_device_id(DEV) && !otk_bp_is_device_id("0123456789ABCDEF0123456789ABCDEF") &&
          !otk_bp_is_device_id(DEV "0") && !otk_bp_is_device_id("otakey-agent") &&
          !otk_bp_is_device_id(NULL));
    /* Connect: anonymous, with a device id; nothing else (the agent-id takeover). */
    CHECK(otk_bp_connect(&c, NULL, DEV, &reason) == OTK_BP_ALLOW);
    CHECK(otk_bp_connect(&c, NULL, "otakey-agent", &reason) == OTK_BP_DENY &&
          reason == OTK_BP_R_CLIENT_ID);
    CHECK(otk_bp_connect(&c, NULL, "", &reason) == OTK_BP_DENY);
    CHECK(otk_bp_connect(&c, "otakey-agent", DEV, &reason) == OTK_BP_DENY && reason == OTK_BP_R_USER);
    /* Its own topics, in each space. */
    CHECK(acl(&c, NULL, DEV, OTK_BP_WRITE, "otakey/v1/up/" DEV, 0) == OTK_BP_ALLOW);
    CHECK(acl(&c, NULL, DEV, OTK_BP_WRITE, "bench/v1/up/" DEV, 0) == OTK_BP_ALLOW);
    CHECK(acl(&c, NULL, DEV, OTK_BP_SUBSCRIBE, "otakey/v1/down/" DEV, 0) == OTK_BP_ALLOW);
    CHECK(acl(&c, NULL, DEV, OTK_BP_UNSUBSCRIBE, "otakey/v1/down/" DEV, 0) == OTK_BP_ALLOW);
    CHECK(acl(&c, NULL, DEV, OTK_BP_READ, "otakey/v1/down/" DEV, 0) == OTK_BP_ALLOW);
    /* Nothing else: directions swapped, other devices, wildcards, shares, $SYS, retain. */
    CHECK(acl(&c, NULL, DEV, OTK_BP_WRITE, "otakey/v1/down/" DEV, 0) == OTK_BP_DENY);
    CHECK(acl(&c, NULL, DEV, OTK_BP_SUBSCRIBE, "otakey/v1/up/" DEV, 0) == OTK_BP_DENY);
    CHECK(acl(&c, NULL, DEV, OTK_BP_WRITE, "otakey/v1/up/" OTHER, 0) == OTK_BP_DENY);
    CHECK(acl(&c, NULL, DEV, OTK_BP_READ, "otakey/v1/down/" OTHER, 0) == OTK_BP_DENY);
    CHECK(acl(&c, NULL, DEV, OTK_BP_SUBSCRIBE, "otakey/v1/down/+", 0) == OTK_BP_DENY);
    CHECK(acl(&c, NULL, DEV, OTK_BP_SUBSCRIBE, "otakey/v1/up/+", 0) == OTK_BP_DENY);
    CHECK(acl(&c, NULL, DEV, OTK_BP_SUBSCRIBE, "$share/otakey/otakey/v1/up/+", 0) == OTK_BP_DENY);
    CHECK(acl(&c, NULL, DEV, OTK_BP_SUBSCRIBE, "$share/g/otakey/v1/down/" DEV, 0) == OTK_BP_DENY);
    CHECK(acl(&c, NULL, DEV, OTK_BP_SUBSCRIBE, "#", 0) == OTK_BP_DENY);
    CHECK(acl(&c, NULL, DEV, OTK_BP_SUBSCRIBE, "$SYS/#", 0) == OTK_BP_DENY);
    CHECK(acl(&c, NULL, DEV, OTK_BP_WRITE, "otakey/v1/up/" DEV, 1) == OTK_BP_DENY);
    CHECK(acl(&c, NULL, DEV, OTK_BP_WRITE, "otakey/v1/up/" DEV "/x", 0) == OTK_BP_DENY);
    CHECK(acl(&c, NULL, DEV, OTK_BP_WRITE, "otakey/v2/up/" DEV, 0) == OTK_BP_DENY);
    CHECK(acl(&c, NULL, "otakey-agent", OTK_BP_WRITE, "otakey/v1/up/otakey-agent", 0) == OTK_BP_DENY);
    CHECK(acl(&c, "u", DEV, OTK_BP_WRITE, "otakey/v1/up/" DEV, 0) == OTK_BP_DENY);
}

static void test_agents(void)
{
    otk_bp_config c = make("agents", "otakey/v1=otakey-agent bench/v1=otakey-bench");
    int reason = -1;
    CHECK(otk_bp_connect(&c, "otakey-agent", "anything", &reason) == OTK_BP_DEFER); /* password file */
    CHECK(otk_bp_connect(&c, NULL, "otakey-agent", &reason) == OTK_BP_DENY);
    /* The owner: its space, shared subscriptions included. */
    CHECK(acl(&c, "otakey-agent", "a1", OTK_BP_SUBSCRIBE, "$share/otakey/otakey/v1/up/+", 0) ==
          OTK_BP_ALLOW);
    CHECK(acl(&c, "otakey-agent", "a1", OTK_BP_READ, "otakey/v1/up/" DEV, 0) == OTK_BP_ALLOW);
    CHECK(acl(&c, "otakey-agent", "a1", OTK_BP_WRITE, "otakey/v1/down/" DEV, 0) == OTK_BP_ALLOW);
    CHECK(acl(&c, "otakey-agent", "a1", OTK_BP_SUBSCRIBE, "otakey/v1/broker/refused", 0) ==
          OTK_BP_ALLOW);
    /* Another server user: its own space only, not the agents' share group. */
    CHECK(acl(&c, "otakey-bench", "b", OTK_BP_SUBSCRIBE, "bench/v1/up/+", 0) == OTK_BP_ALLOW);
    CHECK(acl(&c, "otakey-bench", "b", OTK_BP_SUBSCRIBE, "$share/otakey/otakey/v1/up/+", 0) ==
          OTK_BP_DENY);
    CHECK(acl(&c, "otakey-bench", "b", OTK_BP_READ, "otakey/v1/up/" DEV, 0) == OTK_BP_DENY);
    CHECK(acl(&c, "otakey-agent", "a1", OTK_BP_WRITE, "bench/v1/down/" DEV, 0) == OTK_BP_DENY);
    /* Outside every space, or around it with wildcards. */
    CHECK(acl(&c, "otakey-agent", "a1", OTK_BP_SUBSCRIBE, "#", 0) == OTK_BP_DENY);
    CHECK(acl(&c, "otakey-agent", "a1", OTK_BP_SUBSCRIBE, "+/v1/up/+", 0) == OTK_BP_DENY);
    CHECK(acl(&c, "otakey-agent", "a1", OTK_BP_SUBSCRIBE, "otakey/#", 0) == OTK_BP_DENY);
    CHECK(acl(&c, "otakey-agent", "a1", OTK_BP_SUBSCRIBE, "$share//otakey/v1/up/+", 0) == OTK_BP_DENY);
    CHECK(acl(&c, "otakey-agent", "a1", OTK_BP_SUBSCRIBE, "$share/g", 0) == OTK_BP_DENY);
    CHECK(acl(&c, "otakey-agent", "a1", OTK_BP_WRITE, "otakey/v1", 0) == OTK_BP_DENY);
    CHECK(acl(&c, "otakey-agent", "a1", OTK_BP_WRITE, "otakey/v10/x", 0) == OTK_BP_DENY);
    CHECK(acl(&c, "intruder", "a1", OTK_BP_WRITE, "otakey/v1/down/" DEV, 0) == OTK_BP_DENY);
}

static void test_cloud(void)
{
    otk_bp_config c = make("cloud", NULL);
    int reason = -1;
    /* Device credentials: under their own device id only. */
    CHECK(otk_bp_connect(&c, DEV "-7", DEV, &reason) == OTK_BP_DEFER); /* the password decides */
    CHECK(otk_bp_connect(&c, DEV "-7", OTHER, &reason) == OTK_BP_DENY &&
          reason == OTK_BP_R_CLIENT_ID);
    CHECK(otk_bp_connect(&c, DEV "-7", DEV "x", &reason) == OTK_BP_DENY);
    CHECK(otk_bp_connect(&c, DEV "-7", "otakey-probe-1", &reason) == OTK_BP_DENY);
    CHECK(otk_bp_connect(&c, DEV "-7", NULL, &reason) == OTK_BP_DENY);
    /* Other user names (the agent's probe, an admin) are left to the broker. */
    CHECK(otk_bp_connect(&c, "otakey-probe-1", "otakey-probe-1", &reason) == OTK_BP_DEFER);
    CHECK(otk_bp_connect(&c, DEV "-", OTHER, &reason) == OTK_BP_DEFER);
    CHECK(otk_bp_connect(&c, DEV "-12345678901", OTHER, &reason) == OTK_BP_DEFER);
    CHECK(otk_bp_connect(&c, NULL, DEV, &reason) == OTK_BP_DEFER);
    CHECK(acl(&c, DEV "-7", DEV, OTK_BP_WRITE, "devices/" OTHER "/x", 0) == OTK_BP_DEFER);
}

/* A certificate cloud: the CN is the user name and must be the client id. */
static void test_certs(void)
{
    otk_bp_config c;
    char err[128];
    int reason = -1;
    otk_bp_serial list[4];
    static const unsigned char a[] = {0x40, 1, 2}, b[] = {0x7f}, z[] = {0, 0, 0x7f}, d[] = {0x40, 1, 3};
    memset(&c, 0, sizeof c);
    CHECK(otk_bp_option(&c, "role", "certs", err, sizeof err) == 0);
    CHECK(otk_bp_check(&c, err, sizeof err) != 0 && strstr(err, "crl") != NULL);
    CHECK(otk_bp_option(&c, "crl", "", err, sizeof err) != 0);
    CHECK(otk_bp_option(&c, "crl", "/etc/mosquitto/crl.pem", err, sizeof err) == 0);
    CHECK(otk_bp_check(&c, err, sizeof err) == 0);
    CHECK(otk_bp_connect(&c, DEV, DEV, &reason) == OTK_BP_DEFER);
    CHECK(otk_bp_connect(&c, DEV, OTHER, &reason) == OTK_BP_DENY && reason == OTK_BP_R_CLIENT_ID);
    CHECK(otk_bp_connect(&c, DEV, NULL, &reason) == OTK_BP_DENY);
    CHECK(otk_bp_connect(&c, "not-a-device", "not-a-device", &reason) == OTK_BP_DENY);
    CHECK(otk_bp_connect(&c, NULL, DEV, &reason) == OTK_BP_DENY && reason == OTK_BP_R_USER);
    CHECK(acl(&c, DEV, DEV, OTK_BP_WRITE, "devices/" OTHER "/x", 0) == OTK_BP_DEFER);
    CHECK(acl(&c, DEV, OTHER, OTK_BP_WRITE, "devices/" DEV "/x", 0) == OTK_BP_DENY);
    /* Serials: sorted once, found by value whatever leading zeros say. */
    list[0].len = 3; memcpy(list[0].b, a, 3);
    list[1].len = 1; memcpy(list[1].b, b, 1);
    list[2].len = 3; memcpy(list[2].b, "\x01\x02\x03", 3);
    list[3].len = 2; memcpy(list[3].b, "\x10\x00", 2);
    otk_bp_serials_sort(list, 4);
    CHECK(list[0].len == 1 && list[3].len == 3);
    CHECK(otk_bp_revoked(list, 4, a, sizeof a));
    CHECK(otk_bp_revoked(list, 4, b, sizeof b));
    CHECK(otk_bp_revoked(list, 4, z, sizeof z));
    CHECK(!otk_bp_revoked(list, 4, d, sizeof d));
    CHECK(!otk_bp_revoked(list, 0, a, sizeof a));
    CHECK(!otk_bp_revoked(list, 4, a, 0));
}

/* The session table: many puts and deletes, then what a CRL revokes. */
static void test_sessions(void)
{
    otk_bp_sessions s;
    otk_bp_serial sn = {0, {0}}, revoked[2];
    static char ids[3000][33];
    char id[33];
    unsigned i, found = 0, bad = 0;
    size_t k;
    memset(&s, 0, sizeof s);
    CHECK(otk_bp_sessions_put(&s, "not-an-id", &sn) == -1);
    for (i = 0; i < 3000; i++) {
        snprintf(id, sizeof id, "%032x", i * 7919u);
        sn.len = 2;
        sn.b[0] = (unsigned char)(i >> 8);
        sn.b[1] = (unsigned char)i;
        if (otk_bp_sessions_put(&s, id, &sn) != 0)
            bad++;
    }
    CHECK(bad == 0 && s.n == 3000);
    /* A session logged in again replaces its serial. */
    snprintf(id, sizeof id, "%032x", 5u * 7919u);
    sn.len = 3;
    memcpy(sn.b, "\xab\xcd\xef", 3);
    CHECK(otk_bp_sessions_put(&s, id, &sn) == 0 && s.n == 3000);
    /* The end of a connection whose session a newer login (serial abcdef)
     * took over forgets nothing. */
    snprintf(id, sizeof id, "%032x", 5u * 7919u);
    sn.len = 2;
    sn.b[0] = 0;
    sn.b[1] = 5;
    otk_bp_sessions_del(&s, id, &sn);
    CHECK(s.n == 3000 && otk_bp_sessions_has(&s, id));
    for (i = 0; i < 3000; i += 2) { /* every even one disconnects */
        snprintf(id, sizeof id, "%032x", i * 7919u);
        sn.len = 2;
        sn.b[0] = (unsigned char)(i >> 8);
        sn.b[1] = (unsigned char)i;
        otk_bp_sessions_del(&s, id, i % 4 ? &sn : NULL);
    }
    otk_bp_sessions_del(&s, id, NULL); /* twice: nothing */
    CHECK(s.n == 1500);
    /* The CRL lists the serials of session 5 (replaced) and 7 (written 00 07). */
    revoked[0].len = 3;
    memcpy(revoked[0].b, "\xab\xcd\xef", 3);
    revoked[1].len = 2;
    revoked[1].b[0] = 0;
    revoked[1].b[1] = 7;
    otk_bp_serials_sort(revoked, 2);
    k = otk_bp_sessions_revoked(&s, revoked, 2, ids, 3000);
    for (i = 0; i < k; i++) {
        char five[33], seven[33];
        snprintf(five, sizeof five, "%032x", 5u * 7919u);
        snprintf(seven, sizeof seven, "%032x", 7u * 7919u);
        found += !strcmp(ids[i], five) || !strcmp(ids[i], seven);
    }
    CHECK(k == 2 && found == 2);
    /* Every odd session is still found after the deletions shifted entries. */
    revoked[0].len = 0;
    for (i = 1, bad = 0; i < 3000; i += 2) {
        otk_bp_serial one;
        one.len = 2;
        one.b[0] = (unsigned char)(i >> 8);
        one.b[1] = (unsigned char)i;
        if (i == 5)
            continue;
        otk_bp_serials_sort(&one, 1);
        if (otk_bp_sessions_revoked(&s, &one, 1, ids, 2) != 1)
            bad++;
    }
    CHECK(bad == 0);
    otk_bp_sessions_free(&s);
    CHECK(s.t == NULL && s.n == 0);
}

static void test_report(void)
{
    otk_bp_config c = make("devices", "otakey/v1");
    unsigned long long n[OTK_BP_R_COUNT] = {1, 2, 3, 4, 5, 6};
    char out[256];
    size_t len = otk_bp_report(&c, n, 1500, out, sizeof out);
    CHECK(len == strlen(out));
    CHECK(strcmp(out, "{\"listener\":\"devices\",\"period_ms\":1500,\"connect_user\":1,"
                      "\"connect_client_id\":2,\"publish\":3,\"subscribe\":4,\"read\":5,"
                      "\"revoked\":6}") == 0);
    CHECK(otk_bp_report(&c, n, 1500, out, 10) == 9 && strlen(out) == 9);
}

int main(void)
{
    test_options();
    test_certs();
    test_sessions();
    test_devices();
    test_agents();
    test_cloud();
    test_report();
    return CHECK_DONE();
}
