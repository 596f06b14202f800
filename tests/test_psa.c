/*
 * The device core over the PSA crypto port (otakey/crypto_psa.h), end to
 * end in one process: a version 2 device claims, moves to a certificate
 * cloud and rotates its certificate with every private key made inside
 * PSA, and every AK imported into PSA when its set is opened. Checked: the
 * key store holds references, the keys under them are persistent and not
 * exportable, the certificate holds the key's public half, neither the
 * flash nor the device context ever holds the AK the agent issued (its
 * bytes appear nowhere), a retired set's keys are destroyed, no ephemeral
 * key outlives its request, and after a reboot (PSA restarted from its key
 * storage, the core from flash) the device still logs in and rotates.
 */
/* mbedTLS 3 made mbedtls_psa_stats_t's fields private (read here to count
 * volatile keys); 2.28 ignores it. */
#define MBEDTLS_ALLOW_PRIVATE_ACCESS
#include <stdio.h>
#include <stdlib.h>
#ifndef OTK_TEST_BOARD
#include <unistd.h>
#endif

#include <psa/crypto.h>

#include "check.h"
#include "world.h"

#include "otakey/crypto_psa.h"

#define STEPS 64
/* The persistent ids: certificate keys BASE (slot 0) and BASE + 1, AKs BASE + 2 and + 3. */
#define BASE 0x00057a00u

static size_t volatile_keys(void)
{
    mbedtls_psa_stats_t st;
    mbedtls_psa_get_stats(&st);
    return st.volatile_slots;
}

static int contains(const uint8_t *hay, size_t n, const uint8_t *needle, size_t k)
{
    size_t i;
    for (i = 0; i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0)
            return 1;
    return 0;
}

/*
 * The AKs the agent issued for the device (committed and pending) appear
 * nowhere in its flash or its context; the active set's AK is a reference
 * to the slot's PSA key.
 */
static void check_no_ak_bytes(world *w, wdev *d, uint32_t want_ak_id)
{
    otk_agent_device rec;
    otk_keyset ks;
    uint32_t id = 0;
    CHECK_OK(world_record(w, d, &rec));
    CHECK(rec.has_committed);
    CHECK(!contains(d->flash.mem, d->flash.size, rec.committed.ak, OTK_AK_LEN));
    CHECK(!contains((const uint8_t *)&d->dev, sizeof d->dev, rec.committed.ak, OTK_AK_LEN));
    if (rec.has_pending)
        CHECK(!contains(d->flash.mem, d->flash.size, rec.pending.ak, OTK_AK_LEN));
    CHECK_OK(otk_ks_load(&d->dev.ks, 0, &ks));
    CHECK(otk_crypto_psa_ref(ks.ak, &id) && id == want_ak_id);
    otk_wipe(&ks, sizeof ks);
}

static int key_exists(uint32_t id)
{
    psa_key_attributes_t a = PSA_KEY_ATTRIBUTES_INIT;
    int ok = psa_get_key_attributes((psa_key_id_t)id, &a) == PSA_SUCCESS;
    psa_reset_key_attributes(&a);
    return ok;
}

/* The active set's key: a reference to slot's persistent key, its public
 * half inside the certificate, the key itself not exportable. */
static void check_active_key(wdev *d, uint32_t want_id)
{
    uint8_t ref[32], der[OTK_CERT_MAX], pub[65], out[200];
    size_t len = 0, n = 0, i;
    uint32_t id = 0;
    int found = 0;
    CHECK_OK(otk_device_cert_key(&d->dev, OTK_SET_ACTIVE, ref));
    CHECK(otk_crypto_psa_ref(ref, &id) && id == want_id);
    CHECK(psa_export_key((psa_key_id_t)id, out, sizeof out, &n) == PSA_ERROR_NOT_PERMITTED);
    CHECK(psa_export_public_key((psa_key_id_t)id, pub, sizeof pub, &n) == PSA_SUCCESS && n == 65);
    CHECK_OK(otk_device_cert(&d->dev, OTK_SET_ACTIVE, der, sizeof der, &len));
    for (i = 0; i + sizeof pub <= len && !found; i++)
        found = memcmp(der + i, pub, sizeof pub) == 0;
    CHECK(found);
}

int main(void)
{
    static union {
        uint8_t b[OTK_CRYPTO_PSA_STATE_SIZE];
        void *align;
    } pst;
    otk_crypto mbed;
    world w;
    wdev d;
#ifndef OTK_TEST_BOARD /* (the board keeps its keys in RAM: port/mps2/psa_its_ram.c) */
    char dir[] = "/tmp/otk-psa-flow-XXXXXX", here[512];
    CHECK(getcwd(here, sizeof here) != NULL && mkdtemp(dir) != NULL && chdir(dir) == 0);
#endif
    CHECK(world_init(&w, 31) == 0);
    w.cfg.clouds[1].kind = OTK_KIND_CERT; /* cloud B issues certificates */
    CHECK(world_restart_agent(&w) == 0);
    /* The device's crypto port is PSA (the world's own stays for its free). */
    mbed = w.dev_crypto;
    CHECK_OK(otk_crypto_psa_init(&w.dev_crypto, pst.b, sizeof pst.b, BASE));
    CHECK(wdev_init(&w, &d, 1) == 0);
    d.cfg.proto = OTK_PROTO_V2;
    CHECK_OK(wdev_boot(&w, &d));

    /* The claim (a password set on A) asks with a key made for slot 0. */
    CHECK_OK(world_settle(&w, &d, STEPS));
    CHECK(otk_device_version(&d.dev, OTK_SET_ACTIVE) == 1);
    CHECK(volatile_keys() == 0); /* the request's ephemeral key went with it */
    check_no_ak_bytes(&w, &d, BASE + 2);
    /* The switch to B: a certificate for a new key in slot 1. */
    CHECK_OK(world_request(&w, &d, OTK_WANT_SWITCH, WORLD_CLOUD_B));
    CHECK_OK(world_settle(&w, &d, STEPS));
    CHECK(otk_device_version(&d.dev, OTK_SET_ACTIVE) == 2 &&
          otk_device_kind(&d.dev, OTK_SET_ACTIVE) == OTK_KIND_CERT);
    check_active_key(&d, BASE + 1);
    check_no_ak_bytes(&w, &d, BASE + 3);
    CHECK(!key_exists(BASE) && !key_exists(BASE + 2)); /* slot 0's set retired: its keys destroyed */
    CHECK(world_cert_login(&w, &d, OTK_SET_ACTIVE) == OTK_PROOF_OK);
    /* A rotation: a new key in slot 0, the one of slot 1 destroyed. */
    CHECK_OK(world_request(&w, &d, OTK_WANT_ROTATE, 0));
    CHECK_OK(world_settle(&w, &d, STEPS));
    CHECK(otk_device_version(&d.dev, OTK_SET_ACTIVE) == 3);
    check_active_key(&d, BASE);
    check_no_ak_bytes(&w, &d, BASE + 2);
    CHECK(!key_exists(BASE + 1) && !key_exists(BASE + 3));
    CHECK(world_cert_login(&w, &d, OTK_SET_ACTIVE) == OTK_PROOF_OK);
    CHECK(volatile_keys() == 0);

    /* A reboot: PSA restarted from its storage, the core from flash. */
    otk_crypto_psa_free(&w.dev_crypto);
    mbedtls_psa_crypto_free();
    CHECK_OK(otk_crypto_psa_init(&w.dev_crypto, pst.b, sizeof pst.b, BASE));
    CHECK_OK(wdev_boot(&w, &d));
    CHECK(otk_device_state(&d.dev) == OTK_DEV_READY);
    check_active_key(&d, BASE);
    CHECK(world_cert_login(&w, &d, OTK_SET_ACTIVE) == OTK_PROOF_OK);
    /* And it rotates again after the reboot. */
    CHECK_OK(world_request(&w, &d, OTK_WANT_ROTATE, 0));
    CHECK_OK(world_settle(&w, &d, STEPS));
    CHECK(otk_device_version(&d.dev, OTK_SET_ACTIVE) == 4);
    check_active_key(&d, BASE + 1);
    check_no_ak_bytes(&w, &d, BASE + 3);
    CHECK(!key_exists(BASE) && !key_exists(BASE + 2));
    CHECK(world_cert_login(&w, &d, OTK_SET_ACTIVE) == OTK_PROOF_OK);

    /* Back to passwords on A: the certificate set's key goes at commit. */
    CHECK_OK(world_request(&w, &d, OTK_WANT_SWITCH, WORLD_CLOUD_A));
    CHECK_OK(world_settle(&w, &d, STEPS));
    CHECK(otk_device_version(&d.dev, OTK_SET_ACTIVE) == 5 &&
          otk_device_kind(&d.dev, OTK_SET_ACTIVE) == OTK_KIND_PASSWORD);
    CHECK(!key_exists(BASE + 1) && !key_exists(BASE + 3));
    check_no_ak_bytes(&w, &d, BASE + 2);
    printf("psa device: claim, switch to certificates, 3 rotations and a reboot with keys and AKs in PSA\n");

    wdev_free(&d);
    otk_crypto_psa_free(&w.dev_crypto);
    w.dev_crypto = mbed;
    world_free(&w);
    /* Every retired set's keys were destroyed with it: only the live AK is
     * left in the storage (the device's, destroyed here to clean up). */
    CHECK(!key_exists(BASE) && !key_exists(BASE + 1) && !key_exists(BASE + 3) && key_exists(BASE + 2));
    CHECK(psa_destroy_key((psa_key_id_t)(BASE + 2)) == PSA_SUCCESS);
#ifndef OTK_TEST_BOARD
    CHECK(chdir(here) == 0 && rmdir(dir) == 0);
#endif
    mbedtls_psa_crypto_free();
    return CHECK_DONE();
}
