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

#define OTK_PORT_VERSION 1u

/*
 * Flash semantics are NOR: erase sets a whole sector to 0xFF; program can
 * only clear bits (the result is old & new), at offsets and lengths that
 * are multiples of prog_size. Offsets are relative to the key partition,
 * which is reserved for the key store alone (two slots of flash_size / 2).
 * Each flash function returns 0 on success, non-zero on failure.
 */
typedef struct otk_port {
    uint32_t version; /* OTK_PORT_VERSION */
    void *ctx;        /* passed back to every function below */

    uint32_t flash_size;  /* bytes in the key partition; 2 * k * sector_size */
    uint32_t sector_size; /* erase unit in bytes */
    uint32_t prog_size;   /* program unit: 1, 2, 4, 8 or 16 */
    int (*flash_read)(void *ctx, uint32_t off, uint8_t *buf, uint32_t len);
    int (*flash_prog)(void *ctx, uint32_t off, const uint8_t *buf, uint32_t len);
    int (*flash_erase)(void *ctx, uint32_t off); /* the sector starting at off */

    /* Monotonic milliseconds (wraps at 2^32; differences are used). */
    uint32_t (*now_ms)(void *ctx);

    /* Cryptography and randomness. */
    const otk_crypto *crypto;
} otk_port;

#ifdef __cplusplus
}
#endif
#endif
