/*
 * The otk_port of an ESP-IDF firmware over esp_partition (otakey_esp.h).
 */
#include <string.h>

#include "sdkconfig.h" /* CONFIG_OTAKEY_*, before the conditional includes */

#include "esp_idf_version.h"
#include "esp_partition.h"
#include "esp_timer.h"
#if defined(CONFIG_OTAKEY_CRYPTO_MBEDTLS)
#include "esp_random.h"
#endif

#include "otakey_esp.h"

/* Flash encryption's write block, and the program unit on plain flash. */
#define ENC_BLOCK 16u
#define PLAIN_UNIT 4u

/*
 * On an encrypted partition, erased flash (raw 0xFF) decrypts to noise:
 * give back 0xFF for each block of buf whose raw content is erased. A
 * programmed block is all 0xFF raw with probability 2^-128.
 */
static int show_erased(const struct otk_esp *e, uint32_t off, uint8_t *buf, uint32_t len)
{
    uint8_t raw[4 * ENC_BLOCK];
    uint32_t pos = off - off % ENC_BLOCK, end = off + len;
    while (pos < end) {
        uint32_t n = sizeof raw, b;
        if (n > e->part->size - pos)
            n = e->part->size - pos;
        if (esp_partition_read_raw(e->part, pos, raw, n) != ESP_OK)
            return -1;
        for (b = 0; b < n && pos + b < end; b += ENC_BLOCK) {
            uint32_t i, lo, hi;
            for (i = 0; i < ENC_BLOCK && raw[b + i] == 0xFF; i++)
                ;
            if (i < ENC_BLOCK)
                continue;
            lo = pos + b < off ? off : pos + b;
            hi = pos + b + ENC_BLOCK > end ? end : pos + b + ENC_BLOCK;
            memset(buf + (lo - off), 0xFF, hi - lo);
        }
        pos += n;
    }
    return 0;
}

static int ef_read(void *ctx, uint32_t off, uint8_t *buf, uint32_t len)
{
    const struct otk_esp *e = ctx;
    if (esp_partition_read(e->part, off, buf, len) != ESP_OK)
        return -1;
    return e->part->encrypted ? show_erased(e, off, buf, len) : 0;
}

static int ef_prog(void *ctx, uint32_t off, const uint8_t *buf, uint32_t len)
{
    const struct otk_esp *e = ctx;
    return esp_partition_write(e->part, off, buf, len) == ESP_OK ? 0 : -1;
}

static int ef_erase(void *ctx, uint32_t off)
{
    const struct otk_esp *e = ctx;
    return esp_partition_erase_range(e->part, off, e->port.sector_size) == ESP_OK ? 0 : -1;
}

static uint32_t ef_now_ms(void *ctx)
{
    (void)ctx;
    return (uint32_t)(esp_timer_get_time() / 1000);
}

#if defined(CONFIG_OTAKEY_CRYPTO_MBEDTLS)
static int ef_random(void *ctx, uint8_t *out, size_t len)
{
    (void)ctx;
    esp_fill_random(out, len);
    return 0;
}
#endif

esp_err_t otk_esp_init(struct otk_esp *e, const char *label, const otk_crypto *crypto)
{
    const esp_partition_t *p;
    uint32_t sector;
    memset(e, 0, sizeof *e);
    p = esp_partition_find_first(ESP_PARTITION_TYPE_DATA, ESP_PARTITION_SUBTYPE_ANY, label);
    if (p == NULL)
        return ESP_ERR_NOT_FOUND;
#if ESP_IDF_VERSION >= ESP_IDF_VERSION_VAL(5, 2, 0) /* the flag came with 5.2 */
    if (p->readonly)
        return ESP_ERR_NOT_ALLOWED;
#endif
    sector = p->erase_size;
    if (sector == 0 || p->size / sector < 2)
        return ESP_ERR_INVALID_SIZE;
    e->part = p;
    e->port.version = OTK_PORT_VERSION;
    e->port.ctx = e;
    e->port.sector_size = sector;
    /* Two slots of whole sectors; a sector left over at the end is unused. */
    e->port.flash_size = p->size / (2u * sector) * 2u * sector;
    e->port.prog_size = p->encrypted ? ENC_BLOCK : PLAIN_UNIT;
    e->port.flash_flags = p->encrypted ? 0u : OTK_FLASH_REPROGRAM;
    e->port.flash_read = ef_read;
    e->port.flash_prog = ef_prog;
    e->port.flash_erase = ef_erase;
    e->port.now_ms = ef_now_ms;
    if (crypto != NULL) {
        e->port.crypto = crypto;
        return ESP_OK;
    }
#if defined(CONFIG_OTAKEY_CRYPTO_MBEDTLS)
    if (otk_crypto_mbedtls_init(&e->crypto, e->crypto_state.b, sizeof e->crypto_state.b,
                                ef_random, NULL) == OTK_OK) {
        e->port.crypto = &e->crypto;
        return ESP_OK;
    }
    memset(e, 0, sizeof *e);
    return ESP_FAIL;
#else
    memset(e, 0, sizeof *e);
    return ESP_ERR_INVALID_ARG;
#endif
}

void otk_esp_deinit(struct otk_esp *e)
{
    if (e == NULL || e->part == NULL)
        return;
#if defined(CONFIG_OTAKEY_CRYPTO_MBEDTLS)
    if (e->port.crypto == &e->crypto)
        otk_crypto_mbedtls_free(&e->crypto);
#endif
    memset(e, 0, sizeof *e);
}
