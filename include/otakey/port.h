/*
 * port.h: what the device core needs from the platform, in one versioned
 * struct passed at init (flash partition, clock, crypto). The struct and
 * everything it points to must outlive every context initialised with it.
 */
#ifndef OTAKEY_PORT_H
#define OTAKEY_PORT_H

#include "otakey/common.h"
#include "otakey/crypto.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTK_PORT_VERSION 2u

/* flash_flags (version 2 added them: a version 1 port is refused, so that
 * its author looks at them). */
#define OTK_FLASH_ERASED_ZERO 0x1u /* erase gives 0x00 and program sets bits */
#define OTK_FLASH_REPROGRAM 0x2u   /* a unit may be programmed again before its erase */

/*
 * Flash: erase sets a whole sector to the erased value (0xFF, or 0x00 with
 * OTK_FLASH_ERASED_ZERO); program moves bits away from it only (old & new
 * on 0xFF flash, old | new on 0x00 flash), at offsets and lengths that are
 * multiples of prog_size. Without OTK_FLASH_REPROGRAM the key store programs
 * each unit at most once between two erases of its sector, as flash with
 * ECC (STM32H7, STM32L4, ESP32 with flash encryption) demands; with it, a
 * torn commit marker may be completed in place. Offsets are relative to the
 * key partition, which is reserved for the key store alone (two slots of
 * flash_size / 2).
 *
 * flash_read is called at any offset and length, with no alignment: a
 * port over a part that reads in words aligns inside. A read may fail
 * where a power cut tore a unit (an ECC error): the key store then takes
 * that slot as not committed (a marker) or invalid (a record), never as a
 * reason to stop mounting. Each flash function returns 0 on success,
 * non-zero on failure.
 */
typedef struct otk_port {
    uint32_t version; /* OTK_PORT_VERSION */
    void *ctx;        /* passed back to every function below */

    uint32_t flash_size;  /* bytes in the key partition; 2 * k * sector_size */
    uint32_t sector_size; /* erase unit in bytes */
    uint32_t prog_size;   /* program unit: a power of two, 1 to 32 */
    int (*flash_read)(void *ctx, uint32_t off, uint8_t *buf, uint32_t len);
    int (*flash_prog)(void *ctx, uint32_t off, const uint8_t *buf, uint32_t len);
    int (*flash_erase)(void *ctx, uint32_t off); /* the sector starting at off */

    /* Monotonic milliseconds (wraps at 2^32; differences are used). */
    uint32_t (*now_ms)(void *ctx);

    /* Cryptography and randomness. */
    const otk_crypto *crypto;

    /* OTK_FLASH_* (0: erased 0xFF, each unit programmed once). */
    uint32_t flash_flags;
} otk_port;

#ifdef __cplusplus
}
#endif
#endif
