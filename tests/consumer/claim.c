/*
 * A firmware's first boot as an integration outside the tree builds it
 * against the installed device core (<otakey/...>, libotakey-device.a with
 * its mbedTLS crypto port): a port over a RAM key partition, the core
 * mounts it and sends its CLAIM; the key store stages and commits a set
 * that a remount finds; a truncated message from the network is refused.
 * Prints what it checked; exit status 1 on a failure.
 */
#include <otakey/common.h>
#include <otakey/crypto.h>
#include <otakey/device.h>
#include <otakey/keystore.h>
#include <otakey/port.h>
#include <otakey/proto.h>
#include <otakey/wire.h>
#include <stdio.h>
#include <string.h>

#define SECTOR 4096u
static uint8_t flash[2 * SECTOR];

static int rd(void *c, uint32_t off, uint8_t *b, uint32_t n)
{
    (void)c;
    memcpy(b, flash + off, n);
    return 0;
}

static int pr(void *c, uint32_t off, const uint8_t *b, uint32_t n)
{
    uint32_t i;
    (void)c;
    for (i = 0; i < n; i++)
        flash[off + i] &= b[i]; /* NOR: programming clears bits */
    return 0;
}

static int er(void *c, uint32_t off)
{
    (void)c;
    memset(flash + off, 0xff, SECTOR);
    return 0;
}

static uint32_t now(void *c)
{
    (void)c;
    return 0;
}

static int fail(const char *what)
{
    fprintf(stderr, "consumer: %s\n", what);
    return 1;
}

int main(void)
{
    static union {
        uint8_t b[OTK_CRYPTO_MBEDTLS_STATE_SIZE];
        void *p;
        long double ld;
    } cstate;
    static otk_device dev;
    otk_crypto crypto;
    otk_port port;
    otk_device_config cfg;
    otk_keystore ks;
    otk_keyset set, got;
    uint8_t out[OTK_MSG_MAX_LEN], cut[10];
    size_t n = 0;
    otk_msg m;
    otk_status st;

    memset(flash, 0xff, sizeof flash);
    memset(&port, 0, sizeof port);
    port.version = OTK_PORT_VERSION;
    port.flash_size = sizeof flash;
    port.sector_size = SECTOR;
    port.prog_size = 8;
    port.flash_read = rd;
    port.flash_prog = pr;
    port.flash_erase = er;
    port.now_ms = now;
    port.crypto = &crypto;
    port.flash_flags = 0;
    memset(&cfg, 0, sizeof cfg);
    memset(cfg.device_id, 0xd0, sizeof cfg.device_id);
    cfg.batch_id[3] = 1;
    cfg.batch_id[7] = 1;

    if (otk_crypto_mbedtls_init(&crypto, cstate.b, sizeof cstate.b, NULL, NULL) != OTK_OK)
        return fail("mbedTLS crypto port");
    if (otk_device_init(&dev, &port, &cfg) != OTK_OK || otk_device_state(&dev) != OTK_DEV_UNCLAIMED)
        return fail("the device core does not start unclaimed on erased flash");
    if (otk_device_next(&dev, out, sizeof out, &n) != OTK_OK || otk_msg_decode(out, n, &m) != OTK_OK ||
        m.type != OTK_MSG_CLAIM || n != OTK_CLAIM_LEN)
        return fail("no CLAIM");
    printf("device: %s of %u bytes\n", otk_msg_name(m.type), (unsigned)n);
    memcpy(cut, out, sizeof cut); /* the CLAIM's first bytes: a message cut short */
    st = otk_device_receive(&dev, cut, sizeof cut, out, sizeof out, &n);
    if (st != OTK_ERR_TRUNCATED || otk_device_state(&dev) != OTK_DEV_CLAIMING)
        return fail("a truncated message is not refused with TRUNCATED");
    printf("device: a truncated message refused: %s\n", otk_strerror(st));
    otk_device_free(&dev);

    memset(&ks, 0, sizeof ks);
    memset(&set, 0, sizeof set);
    set.version = 1;
    memset(set.ak, 0xa5, sizeof set.ak);
    if (otk_cloud_set(&set.cloud, 1, "cloud-a.example", 8883, OTK_CLOUD_FLAG_TLS, "device-1",
                      "secret-1") != OTK_OK ||
        otk_ks_mount(&ks, &port) != OTK_OK || otk_ks_stage(&ks, &set) != OTK_OK ||
        otk_ks_commit(&ks, 1) != OTK_OK)
        return fail("key store: stage and commit");
    memset(&ks, 0, sizeof ks);
    if (otk_ks_mount(&ks, &port) != OTK_OK || otk_ks_active_version(&ks) != 1 ||
        otk_ks_load(&ks, 0, &got) != OTK_OK || strcmp(got.cloud.host, "cloud-a.example") != 0)
        return fail("key store: the committed set is not found after a remount");
    printf("key store: version %u committed, found after a remount (%s:%u)\n",
           (unsigned)otk_ks_active_version(&ks), got.cloud.host, (unsigned)got.cloud.port);
    otk_crypto_mbedtls_free(&crypto);
    return 0;
}
