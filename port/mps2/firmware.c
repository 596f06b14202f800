/*
 * A device firmware as a product would build it, reduced to the key
 * management: the device core on a RAM-backed key partition (2 x 1 KiB, so
 * certificate sets fit) with the mbedTLS crypto port, calling every entry
 * point of otakey/device.h that a product's MQTT glue needs. Linked with
 * --gc-sections it shows what the core costs in an image
 * (scripts/footprint.sh reads its map); run on the board it boots from
 * erased flash and builds its first CLAIM (version 2).
 */
#include <stdio.h>
#include <string.h>

#include "otakey/device.h"
#include "otakey/wire.h"

#define SECTOR 1024u

static uint8_t part[2 * SECTOR];
static uint32_t ticks;
/* What the MQTT client received (nothing, on this board: the image is
 * linked as if it might, so the whole receive path is in it). */
static uint8_t rx[OTK_MSG_MAX_LEN];
static volatile size_t rx_len;

static int fl_read(void *ctx, uint32_t off, uint8_t *buf, uint32_t len)
{
    (void)ctx;
    memcpy(buf, part + off, len);
    return 0;
}

static int fl_prog(void *ctx, uint32_t off, const uint8_t *buf, uint32_t len)
{
    uint32_t i;
    (void)ctx;
    for (i = 0; i < len; i++)
        part[off + i] &= buf[i]; /* NOR: programming clears bits */
    return 0;
}

static int fl_erase(void *ctx, uint32_t off)
{
    (void)ctx;
    memset(part + off, 0xff, SECTOR);
    return 0;
}

static uint32_t now_ms(void *ctx)
{
    (void)ctx;
    return ticks += 10;
}

/* The board's entropy source would go here (a TRNG); the emulated board has
 * none, so this image (for sizes and a boot check only) uses a counter. */
static int rng(void *ctx, uint8_t *out, size_t len)
{
    static uint8_t x = 1;
    size_t i;
    (void)ctx;
    for (i = 0; i < len; i++)
        out[i] = x = (uint8_t)(x * 5u + 1u);
    return 0;
}

/* What the MQTT glue does with each of the core's outputs. */
static void glue(otk_device *d, const uint8_t *msg, size_t n)
{
    uint8_t out[OTK_MSG_MAX_LEN], der[OTK_CERT_MAX], key[OTK_PRIV_LEN], pin[OTK_PIN_LEN];
    size_t len = 0, dl = 0;
    otk_cloud c;
    if (n > 0 && otk_device_receive(d, msg, n, out, sizeof out, &len) == OTK_OK && len)
        printf("reply of %u bytes\n", (unsigned)len);
    if (otk_device_state(d) == OTK_DEV_PROVE && otk_device_cloud(d, OTK_SET_STAGED, &c) == OTK_OK) {
        if (otk_device_kind(d, OTK_SET_STAGED) == OTK_KIND_CERT &&
            (otk_device_cert(d, OTK_SET_STAGED, der, sizeof der, &dl) != OTK_OK ||
             otk_device_cert_key(d, OTK_SET_STAGED, key) != OTK_OK ||
             otk_device_ca_pin(d, OTK_SET_STAGED, pin) != OTK_OK))
            return;
        if (otk_device_proof(d, OTK_PROOF_OK, out, sizeof out, &len) == OTK_OK && len)
            printf("CONFIRM of %u bytes\n", (unsigned)len);
    }
    if (otk_device_version(d, OTK_SET_ACTIVE) && otk_device_last_remote(d) == OTK_OK &&
        otk_device_poll(d) != OTK_OK)
        printf("poll refused\n");
}

int main(void)
{
    static otk_device dev;
    static union {
        uint8_t b[OTK_CRYPTO_MBEDTLS_STATE_SIZE];
        void *align;
    } state;
    otk_crypto crypto;
    otk_port port;
    otk_device_config cfg;
    uint8_t out[OTK_MSG_MAX_LEN];
    size_t n = 0;
    int ok;
    memset(part, 0xff, sizeof part);
    memset(&cfg, 0x11, sizeof cfg);
    cfg.retry_min_ms = cfg.retry_max_ms = 0;
    cfg.proto = OTK_PROTO_V2;
    memset(&port, 0, sizeof port);
    port.version = OTK_PORT_VERSION;
    port.flash_size = sizeof part;
    port.sector_size = SECTOR;
    port.prog_size = 8;
    port.flash_read = fl_read;
    port.flash_prog = fl_prog;
    port.flash_erase = fl_erase;
    port.now_ms = now_ms;
    port.crypto = &crypto;
    ok = otk_crypto_mbedtls_init(&crypto, state.b, sizeof state.b, rng, NULL) == OTK_OK &&
         otk_device_init(&dev, &port, &cfg) == OTK_OK &&
         otk_device_next(&dev, out, sizeof out, &n) == OTK_OK && n == 250 && out[0] == 2;
    printf("firmware: %s (first CLAIM: %u bytes, version %u)\n", ok ? "boots" : "FAILED",
           (unsigned)n, (unsigned)out[0]);
    glue(&dev, rx, rx_len);
    otk_device_free(&dev);
    otk_crypto_mbedtls_free(&crypto);
    return ok ? 0 : 1;
}
