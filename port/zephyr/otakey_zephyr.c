/*
 * The otk_port of a Zephyr firmware over the flash-area API
 * (otakey_zephyr.h). Built by the otakey Zephyr module (zephyr/).
 */
#include <errno.h>
#include <string.h>

#include <zephyr/device.h>
#include <zephyr/kernel.h>
#include <zephyr/storage/flash_map.h>
#if defined(CONFIG_OTAKEY_CRYPTO_MBEDTLS)
#include <zephyr/random/random.h>
#endif

#include "otakey_zephyr.h"

static int zf_read(void *ctx, uint32_t off, uint8_t *buf, uint32_t len)
{
    const struct otk_zephyr *z = ctx;
    return flash_area_read(z->fa, (off_t)off, buf, len) == 0 ? 0 : -1;
}

static int zf_prog(void *ctx, uint32_t off, const uint8_t *buf, uint32_t len)
{
    const struct otk_zephyr *z = ctx;
    return flash_area_write(z->fa, (off_t)off, buf, len) == 0 ? 0 : -1;
}

/* Devices without an explicit erase (RRAM, MRAM) fill the sector with the
 * erased value instead (flash_area_flatten, Zephyr 3.7 on). */
static int zf_erase(void *ctx, uint32_t off)
{
    const struct otk_zephyr *z = ctx;
#if defined(CONFIG_FLASH_HAS_NO_EXPLICIT_ERASE)
    return flash_area_flatten(z->fa, (off_t)off, z->port.sector_size) == 0 ? 0 : -1;
#else
    return flash_area_erase(z->fa, (off_t)off, z->port.sector_size) == 0 ? 0 : -1;
#endif
}

static uint32_t zf_now_ms(void *ctx)
{
    (void)ctx;
    return k_uptime_get_32();
}

#if defined(CONFIG_OTAKEY_CRYPTO_MBEDTLS)
static int zf_random(void *ctx, uint8_t *out, size_t len)
{
    (void)ctx;
    return sys_csrand_get(out, len) == 0 ? 0 : -1;
}
#endif

/* The partition's erase sector: every sector of it the same size. */
static int sector_size(uint8_t area_id, uint32_t *size)
{
    struct flash_sector sec[CONFIG_OTAKEY_MAX_SECTORS];
    uint32_t n = CONFIG_OTAKEY_MAX_SECTORS, i;
    int rc = flash_area_get_sectors(area_id, &n, sec);
    if (rc != 0)
        return rc;
    if (n < 2)
        return -ENOSPC;
    for (i = 1; i < n; i++)
        if (sec[i].fs_size != sec[0].fs_size)
            return -ENOTSUP;
    *size = (uint32_t)sec[0].fs_size;
    return 0;
}

int otk_zephyr_init(struct otk_zephyr *z, uint8_t area_id, const otk_crypto *crypto)
{
    uint32_t sector = 0, align;
    uint8_t erased;
    int rc;
    memset(z, 0, sizeof *z);
    rc = flash_area_open(area_id, &z->fa);
    if (rc != 0)
        return rc;
    if (!device_is_ready(flash_area_get_device(z->fa))) {
        rc = -ENODEV;
        goto fail;
    }
    rc = sector_size(area_id, &sector);
    if (rc != 0)
        goto fail;
    align = flash_area_align(z->fa);
    erased = flash_area_erased_val(z->fa);
    if (align == 0 || align > 32 || (align & (align - 1u)) || (erased != 0xFF && erased != 0x00)) {
        rc = -ENOTSUP;
        goto fail;
    }
    z->port.version = OTK_PORT_VERSION;
    z->port.ctx = z;
    z->port.sector_size = sector;
    /* Two slots of whole sectors; a sector left over at the end is unused. */
    z->port.flash_size = (uint32_t)(z->fa->fa_size / (2u * sector)) * 2u * sector;
    z->port.prog_size = align;
    z->port.flash_read = zf_read;
    z->port.flash_prog = zf_prog;
    z->port.flash_erase = zf_erase;
    z->port.now_ms = zf_now_ms;
    z->port.flash_flags = (erased == 0x00 ? OTK_FLASH_ERASED_ZERO : 0u) |
                          (IS_ENABLED(CONFIG_OTAKEY_FLASH_REPROGRAM) ? OTK_FLASH_REPROGRAM : 0u);
    if (z->port.flash_size == 0) {
        rc = -ENOSPC;
        goto fail;
    }
    if (crypto != NULL) {
        z->port.crypto = crypto;
        return 0;
    }
#if defined(CONFIG_OTAKEY_CRYPTO_MBEDTLS)
    if (otk_crypto_mbedtls_init(&z->crypto, z->crypto_state.b, sizeof z->crypto_state.b,
                                zf_random, NULL) != OTK_OK) {
        rc = -EIO;
        goto fail;
    }
    z->port.crypto = &z->crypto;
    return 0;
#elif defined(CONFIG_OTAKEY_CRYPTO_PSA)
    if (otk_crypto_psa_init(&z->crypto, z->crypto_state.b, sizeof z->crypto_state.b,
                            CONFIG_OTAKEY_PSA_KEY_BASE) != OTK_OK) {
        rc = -EIO;
        goto fail;
    }
    z->port.crypto = &z->crypto;
    return 0;
#else
    rc = -EINVAL;
#endif
fail:
    flash_area_close(z->fa);
    memset(z, 0, sizeof *z);
    return rc;
}

void otk_zephyr_deinit(struct otk_zephyr *z)
{
    if (z == NULL || z->fa == NULL)
        return;
#if defined(CONFIG_OTAKEY_CRYPTO_MBEDTLS)
    if (z->port.crypto == &z->crypto)
        otk_crypto_mbedtls_free(&z->crypto);
#elif defined(CONFIG_OTAKEY_CRYPTO_PSA)
    if (z->port.crypto == &z->crypto)
        otk_crypto_psa_free(&z->crypto);
#endif
    flash_area_close(z->fa);
    memset(z, 0, sizeof *z);
}
