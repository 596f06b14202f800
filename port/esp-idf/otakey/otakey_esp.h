/*
 * otakey_esp.h: the otk_port of an ESP-IDF firmware (the otakey component).
 *
 * The key partition is a data partition of the partition table, found by
 * label (CONFIG_OTAKEY_PARTITION_LABEL, "otakey"): erase sector
 * partition->erase_size (4 KiB), erased value 0xFF. On plain flash the
 * program unit is 4 bytes and a unit may be programmed again (SPI NOR:
 * OTK_FLASH_REPROGRAM). On a partition that flash encryption encrypts
 * (flag "encrypted" in the table, flash encryption enabled) writes are
 * 16-byte blocks that must not be programmed twice between erases: program
 * unit 16, flags 0; and since erased flash decrypts to noise, a read
 * returns 0xFF for every 16-byte block whose raw content is erased, as the
 * key store expects of erased flash.
 * The clock is esp_timer_get_time; with CONFIG_OTAKEY_CRYPTO_MBEDTLS the
 * crypto table is the mbedTLS port with esp_fill_random as its random
 * source, a true RNG while Wi-Fi or Bluetooth is on or after
 * bootloader_random_enable() (ESP-IDF, "Random Number Generation").
 *
 *   static struct otk_esp e;
 *   static otk_device dev;
 *   ESP_ERROR_CHECK(otk_esp_init(&e, CONFIG_OTAKEY_PARTITION_LABEL, NULL));
 *   otk_device_init(&dev, &e.port, &cfg);
 */
#ifndef OTAKEY_ESP_H
#define OTAKEY_ESP_H

#include <stdint.h>

#include "esp_err.h"
#include "esp_partition.h"
#include "sdkconfig.h"

#include "otakey/device.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Caller-allocated (static: the port must outlive the device context). */
struct otk_esp {
    otk_port port; /* for otk_device_init */
    const esp_partition_t *part;
#if defined(CONFIG_OTAKEY_CRYPTO_MBEDTLS)
    otk_crypto crypto;
    union {
        uint8_t b[OTK_CRYPTO_MBEDTLS_STATE_SIZE];
        void *p;
        uint64_t u;
    } crypto_state;
#endif
};

/*
 * Finds the data partition labelled label and fills e->port. crypto: a
 * table of the firmware's own, or NULL for the mbedTLS port
 * (CONFIG_OTAKEY_CRYPTO_MBEDTLS). Returns ESP_OK, ESP_ERR_NOT_FOUND (no such
 * partition), ESP_ERR_NOT_ALLOWED (read-only; ESP-IDF 5.2 on), ESP_ERR_INVALID_SIZE (fewer
 * than two sectors), ESP_ERR_INVALID_ARG (no crypto table) or ESP_FAIL (the
 * mbedTLS port refused).
 */
esp_err_t otk_esp_init(struct otk_esp *e, const char *label, const otk_crypto *crypto);

/* Releases what otk_esp_init took (after otk_device_free). */
void otk_esp_deinit(struct otk_esp *e);

#ifdef __cplusplus
}
#endif
#endif
