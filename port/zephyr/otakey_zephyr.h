/*
 * otakey_zephyr.h: the otk_port of a Zephyr firmware (zephyr/module.yml).
 *
 * The key partition is a flash area (a fixed partition of the devicetree,
 * by default the one labelled otakey_partition); its geometry is read from
 * the flash-area API at init: the erase sector (flash_area_get_sectors,
 * uniform over the partition), the program unit (flash_area_align) and the
 * erased value (flash_area_erased_val: 0xFF, or 0x00 for
 * OTK_FLASH_ERASED_ZERO). The clock is k_uptime_get_32. With
 * CONFIG_OTAKEY_CRYPTO_MBEDTLS the crypto table is the mbedTLS port with
 * sys_csrand_get as its random source; with CONFIG_OTAKEY_CRYPTO_PSA the
 * PSA port (keys by reference, persistent ids from
 * CONFIG_OTAKEY_PSA_KEY_BASE).
 *
 *   static struct otk_zephyr z;
 *   static otk_device dev;
 *   otk_zephyr_init(&z, OTK_ZEPHYR_PARTITION_ID, NULL);
 *   otk_device_init(&dev, &z.port, &cfg);
 */
#ifndef OTAKEY_ZEPHYR_H
#define OTAKEY_ZEPHYR_H

#include <stdint.h>

#include <zephyr/storage/flash_map.h>

#include "otakey/device.h"
#if defined(CONFIG_OTAKEY_CRYPTO_PSA)
#include "otakey/crypto_psa.h"
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The key partition: CONFIG_OTAKEY_PARTITION_ID, or the fixed partition
 * labelled otakey_partition (samples/zephyr/claim/boards/). */
#if defined(CONFIG_OTAKEY_PARTITION_ID) && CONFIG_OTAKEY_PARTITION_ID >= 0
#define OTK_ZEPHYR_PARTITION_ID CONFIG_OTAKEY_PARTITION_ID
#elif FIXED_PARTITION_EXISTS(otakey_partition)
#define OTK_ZEPHYR_PARTITION_ID FIXED_PARTITION_ID(otakey_partition)
#endif

/* Caller-allocated (static: the port must outlive the device context). */
struct otk_zephyr {
    otk_port port; /* for otk_device_init */
    const struct flash_area *fa;
#if defined(CONFIG_OTAKEY_CRYPTO_MBEDTLS) || defined(CONFIG_OTAKEY_CRYPTO_PSA)
    otk_crypto crypto;
    union {
#if defined(CONFIG_OTAKEY_CRYPTO_MBEDTLS)
        uint8_t b[OTK_CRYPTO_MBEDTLS_STATE_SIZE];
#else
        uint8_t b[OTK_CRYPTO_PSA_STATE_SIZE];
#endif
        void *p;
        uint64_t u;
    } crypto_state;
#endif
};

/*
 * Opens flash area area_id and fills z->port. crypto: a table of the
 * firmware's own, or NULL for the configured port (CONFIG_OTAKEY_CRYPTO_MBEDTLS
 * or CONFIG_OTAKEY_CRYPTO_PSA).
 * Returns 0, or a negative errno: flash_area_open's, -ENODEV (device not
 * ready), -ENOMEM (more than CONFIG_OTAKEY_MAX_SECTORS sectors), -ENOTSUP
 * (sectors of different sizes, a write block that is not a power of two up
 * to 32, an erased value other than 0xFF and 0x00), -ENOSPC (fewer than two
 * sectors), -EINVAL (no crypto table), -EIO (the crypto port refused).
 */
int otk_zephyr_init(struct otk_zephyr *z, uint8_t area_id, const otk_crypto *crypto);

/* Releases what otk_zephyr_init took (after otk_device_free). */
void otk_zephyr_deinit(struct otk_zephyr *z);

#ifdef __cplusplus
}
#endif
#endif
