#include "world.h"

#ifndef OTK_WORLD_MBEDTLS_ONLY
#include "otakey/sqlreg.h"
#endif

#include <stdlib.h>
#include <string.h>

static int init(world *w, uint64_t seed, const char *path)
{
    static const char *hosts[] = {"127.0.0.1", "127.0.0.2"};
    size_t i;
    memset(w, 0, sizeof *w);
    otk_testrng_seed(&w->dev_rng, seed);
    otk_testrng_seed(&w->agent_rng, seed ^ 0xa5a5a5a5u);
    if (otk_crypto_mbedtls_init(&w->dev_crypto, w->mbed.bytes, sizeof w->mbed.bytes,
                                otk_testrng_fill, &w->dev_rng) != OTK_OK)
        return -1;
#ifdef OTK_WORLD_MBEDTLS_ONLY
    /* On a microcontroller target the agent core runs over mbedTLS too. */
    if (otk_crypto_mbedtls_init(&w->agent_crypto, w->mbed_agent.bytes, sizeof w->mbed_agent.bytes,
                                otk_testrng_fill, &w->agent_rng) != OTK_OK)
        return -1;
#else
    if (otk_crypto_openssl_init(&w->agent_crypto, otk_testrng_fill, &w->agent_rng) != OTK_OK)
        return -1;
#endif
    (void)otk_testrng_fill(&w->agent_rng, w->pk, sizeof w->pk);
    memcpy(w->batch, "\x00\x00\x00\x01\x00\x00\x00\x07", OTK_BATCH_ID_LEN);
    if (w->agent_crypto.ec_keygen(w->agent_crypto.ctx, OTK_KEY_EPHEMERAL, w->cfg.sign_priv, w->cfg.sign_pub) != OTK_OK)
        return -1;
    for (i = 0; i < 2; i++) {
        w->cfg.clouds[i].cloud_id = (uint32_t)(i + 1);
        strcpy(w->cfg.clouds[i].host, hosts[i]);
        w->cfg.clouds[i].port = (uint16_t)(8883 + i);
        w->cfg.clouds[i].flags = OTK_CLOUD_FLAG_TLS;
    }
    w->cfg.n_clouds = 2;
    w->cfg.claim_cloud = WORLD_CLOUD_A;
    w->cloud = otk_memcloud_new();
    if (w->cloud == NULL)
        return -1;
    if (path != NULL) {
#ifdef OTK_WORLD_MBEDTLS_ONLY
        return -1;
#else
        char err[256];
        otk_status st;
        if (otk_sqlreg_open(path, &w->agent_crypto, &w->sql, err, sizeof err) != OTK_OK)
            return -1;
        st = otk_sqlreg_add_batch(w->sql, w->batch, "world", w->pk);
        if (st != OTK_OK && st != OTK_ERR_BAD_STATE)
            return -1;
        otk_sqlreg_bind(w->sql, &w->regif);
#endif
    } else {
        w->reg = otk_memreg_new();
        if (w->reg == NULL || otk_memreg_add_batch(w->reg, w->batch, w->pk) != OTK_OK)
            return -1;
        otk_memreg_bind(w->reg, &w->regif);
    }
    otk_memcloud_adapter(w->cloud, &w->cloudif);
    return otk_agent_init(&w->agent, &w->agent_crypto, &w->regif, &w->cloudif, &w->cfg) == OTK_OK
               ? 0
               : -1;
}

int world_init(world *w, uint64_t seed)
{
    return init(w, seed, NULL);
}

int world_init_sqlite(world *w, uint64_t seed, const char *path)
{
#ifdef OTK_WORLD_MBEDTLS_ONLY
    /* No SQLite on a microcontroller: the memory registry outlives agent
     * restarts just the same (world_restart_agent keeps it). */
    (void)path;
    return init(w, seed, NULL);
#else
    return init(w, seed, path);
#endif
}

int world_restart_agent(world *w)
{
    otk_agent fresh;
    if (otk_agent_init(&fresh, &w->agent_crypto, &w->regif, &w->cloudif, &w->cfg) != OTK_OK)
        return -1;
    memset(&w->agent, 0xa5, sizeof w->agent); /* nothing survives in memory */
    w->agent = fresh;
    return 0;
}

void world_free(world *w)
{
    otk_memreg_free(w->reg);
#ifdef OTK_WORLD_MBEDTLS_ONLY
    otk_crypto_mbedtls_free(&w->agent_crypto);
#else
    otk_sqlreg_close(w->sql);
    otk_memcloud_free(w->cloud);
    otk_crypto_openssl_free(&w->agent_crypto);
#endif
    otk_crypto_mbedtls_free(&w->dev_crypto);
    memset(w, 0, sizeof *w);
}

int wdev_init(world *w, wdev *d, unsigned n)
{
    memset(d, 0, sizeof *d);
    if (otk_flashsim_init(&d->flash, 2 * 4096, 4096, 8) != 0)
        return -1;
    otk_flashsim_port(&d->flash, &w->dev_crypto, &d->port);
    memset(d->cfg.device_id, 0xd0, OTK_DEVICE_ID_LEN);
    otk_put_u32(d->cfg.device_id + 12, n);
    memcpy(d->cfg.batch_id, w->batch, OTK_BATCH_ID_LEN);
    memcpy(d->cfg.pk, w->pk, OTK_PK_LEN);
    memcpy(d->cfg.agent_pub, w->cfg.sign_pub, OTK_PUB_LEN);
    d->cfg.retry_min_ms = 1000;
    d->cfg.retry_max_ms = 8000;
    return 0;
}

void wdev_free(wdev *d)
{
    otk_flashsim_free(&d->flash);
    otk_device_free(&d->dev);
}

otk_status wdev_boot(world *w, wdev *d)
{
    (void)w;
    return d->last = otk_device_init(&d->dev, &d->port, &d->cfg);
}

/* Hands an agent->device message to the device; a reply goes back up. */
static void down(world *w, wdev *d, const uint8_t *msg, size_t len)
{
    uint8_t out[OTK_MSG_MAX_LEN];
    size_t n = 0;
    if (w->drop_next_down) {
        w->drop_next_down = 0;
        return;
    }
    w->bytes_down += len;
    w->msgs_down++;
    if (w->tap)
        w->tap(w->tap_ctx, 0, msg, len);
    d->last = otk_device_receive(&d->dev, msg, len, out, sizeof out, &n);
    if (n) /* only a NOTIFY is answered at once, by an UPDATE_REQ */
        world_up(w, d, out, n);
}

void world_up(world *w, wdev *d, const uint8_t *msg, size_t len)
{
    uint8_t out[OTK_MSG_MAX_LEN];
    size_t n = 0;
    if (w->drop_next_up) {
        w->drop_next_up = 0;
        return;
    }
    w->bytes_up += len;
    w->msgs_up++;
    if (w->tap)
        w->tap(w->tap_ctx, 1, msg, len);
    w->last_agent = otk_agent_handle(&w->agent, msg, len, out, sizeof out, &n);
    if (n)
        down(w, d, out, n);
}

otk_status world_settle(world *w, wdev *d, int max_steps)
{
    uint8_t out[OTK_MSG_MAX_LEN];
    size_t n;
    otk_cloud cloud;
    otk_status bad = OTK_ERR_BAD_STATE;
    int step;
    for (step = 0; step < max_steps; step++) {
        otk_dev_state s = otk_device_state(&d->dev);
        if (d->last != OTK_OK)
            bad = d->last;
        if (w->last_agent != OTK_OK)
            bad = w->last_agent;
        if (s == OTK_DEV_READY && !d->dev.poll_wanted)
            return OTK_OK;
        if (s == OTK_DEV_PROVE) {
            otk_proof r = OTK_PROOF_UNREACHABLE;
            d->last = otk_device_cloud(&d->dev, OTK_SET_STAGED, &cloud);
            if (d->last != OTK_OK)
                return d->last;
            if (w->prove)
                r = w->prove(w->prove_ctx, &cloud);
            else if (otk_device_kind(&d->dev, OTK_SET_STAGED) == OTK_KIND_CERT)
                r = world_cert_login(w, d, OTK_SET_STAGED);
            else
                r = otk_memcloud_connect(w->cloud, &cloud);
            d->last = otk_device_proof(&d->dev, r, out, sizeof out, &n);
            if (d->last != OTK_OK)
                return d->last;
            if (n)
                world_up(w, d, out, n);
            continue;
        }
        d->last = otk_device_next(&d->dev, out, sizeof out, &n);
        if (d->last != OTK_OK)
            return d->last;
        if (n)
            world_up(w, d, out, n);
        else
            d->flash.now_ms += 1000; /* let the backoff elapse */
    }
    if (w->last_agent != OTK_OK)
        return w->last_agent;
    return d->last != OTK_OK ? d->last : bad;
}

otk_proof world_cert_login(world *w, const wdev *d, int which)
{
    uint8_t der[OTK_CERT_MAX], priv[OTK_PRIV_LEN];
    size_t len = 0;
    otk_cloud c;
    otk_proof r = OTK_PROOF_REFUSED;
    if (otk_device_cloud(&d->dev, which, &c) == OTK_OK &&
        otk_device_cert(&d->dev, which, der, sizeof der, &len) == OTK_OK &&
        otk_device_cert_key(&d->dev, which, priv) == OTK_OK)
        r = otk_memcloud_connect_cert(w->cloud, &w->dev_crypto, c.cloud_id, der, len, priv);
    otk_wipe(priv, sizeof priv);
    return r;
}

otk_status world_request(world *w, wdev *d, int want, uint32_t cloud_id)
{
    uint8_t out[OTK_MSG_MAX_LEN];
    size_t n = 0;
    otk_status st = otk_agent_request_update(&w->agent, d->cfg.device_id, want, cloud_id, out,
                                             sizeof out, &n);
    if (st == OTK_OK && n)
        down(w, d, out, n);
    return st;
}

otk_status world_record(world *w, const wdev *d, otk_agent_device *out)
{
    return w->regif.get_device(w->regif.ctx, d->cfg.device_id, out);
}
