/*
 * port/esp-idf/otakey/otakey_esp.c on the host (tests/sdk_stubs/README.md):
 * the esp_partition functions over a RAM partition that behaves as ESP-IDF
 * documents it, plain and under flash encryption, then the device core
 * through the port. Prints "N passed, M failed"; exit status 1 on a failure.
 *
 * Flash encryption is modelled as the hardware presents it: writes through
 * esp_partition_write are 16-byte aligned blocks, each stored as
 * ciphertext (here the plaintext XOR an address-dependent keystream) and
 * never programmed twice between erases; esp_partition_read decrypts, so
 * erased flash (raw 0xFF) reads back as noise; esp_partition_read_raw does
 * not.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "otakey/device.h"
#include "otakey/keystore.h"
#include "otakey/wire.h"
#include "../support/check.h" /* the suite's CHECK and CHECK_DONE */
#include "port_exercise.h"
#include "otakey_esp.h"


#define SECTOR 4096u
static esp_partition_t part = {NULL, ESP_PARTITION_TYPE_DATA, ESP_PARTITION_SUBTYPE_DATA_UNDEFINED,
                               0x110000, 2 * SECTOR, SECTOR, "otakey", false, false};
static uint8_t raw[4 * SECTOR];
static uint8_t blocks[4 * SECTOR / 16]; /* 1: the 16-byte block was written since its erase */
static unsigned long refused, raw_reads;
static int64_t us;

static uint8_t keystream(size_t addr)
{
    return (uint8_t)((addr * 2654435761u) >> 13) ^ 0x5a;
}

static void reset(uint32_t size, bool encrypted, bool readonly)
{
    part.size = size;
    part.encrypted = encrypted;
    part.readonly = readonly;
    memset(raw, 0xff, sizeof raw);
    memset(blocks, 0, sizeof blocks);
    refused = raw_reads = 0;
}

int64_t esp_timer_get_time(void)
{
    return us += 7000;
}

void esp_fill_random(void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len--)
        *p++ = (uint8_t)rand();
}

const esp_partition_t *esp_partition_find_first(esp_partition_type_t type,
                                                esp_partition_subtype_t subtype, const char *label)
{
    if (type != ESP_PARTITION_TYPE_DATA || (subtype != ESP_PARTITION_SUBTYPE_ANY &&
                                            subtype != part.subtype))
        return NULL;
    return label == NULL || strcmp(label, part.label) == 0 ? &part : NULL;
}

static esp_err_t bounds(const esp_partition_t *p, size_t off, size_t size)
{
    if (p != &part || off > p->size)
        return ESP_ERR_INVALID_ARG;
    return size > p->size - off ? ESP_ERR_INVALID_SIZE : ESP_OK;
}

esp_err_t esp_partition_read(const esp_partition_t *p, size_t off, void *dst, size_t size)
{
    uint8_t *d = dst;
    size_t i;
    esp_err_t err = bounds(p, off, size);
    if (err != ESP_OK)
        return err;
    for (i = 0; i < size; i++)
        d[i] = p->encrypted ? (uint8_t)(raw[off + i] ^ keystream(off + i)) : raw[off + i];
    return ESP_OK;
}

esp_err_t esp_partition_read_raw(const esp_partition_t *p, size_t off, void *dst, size_t size)
{
    esp_err_t err = bounds(p, off, size);
    if (err != ESP_OK)
        return err;
    memcpy(dst, raw + off, size);
    raw_reads++;
    return ESP_OK;
}

esp_err_t esp_partition_write(const esp_partition_t *p, size_t off, const void *src, size_t size)
{
    const uint8_t *s = src;
    size_t i;
    esp_err_t err = bounds(p, off, size);
    if (err != ESP_OK)
        return err;
    if (p->readonly)
        return ESP_ERR_NOT_ALLOWED;
    if (p->encrypted) {
        if (off % 16 || size % 16)
            return ESP_ERR_INVALID_SIZE;
        for (i = off / 16; i < (off + size) / 16; i++)
            if (blocks[i]) {
                refused++;
                return ESP_FAIL;
            }
        for (i = off / 16; i < (off + size) / 16; i++)
            blocks[i] = 1;
    }
    for (i = 0; i < size; i++) /* NOR: programming clears bits */
        raw[off + i] &= p->encrypted ? (uint8_t)(s[i] ^ keystream(off + i)) : s[i];
    return ESP_OK;
}

esp_err_t esp_partition_erase_range(const esp_partition_t *p, size_t off, size_t size)
{
    esp_err_t err = bounds(p, off, size);
    if (err != ESP_OK)
        return err;
    if (off % p->erase_size || size % p->erase_size)
        return ESP_ERR_INVALID_SIZE;
    memset(raw + off, 0xff, size);
    memset(blocks + off / 16, 0, size / 16);
    return ESP_OK;
}

/* Through the port: the first CLAIM, then a key set staged, committed, found after a remount. */
static void run(const char *name, uint32_t size, bool encrypted)
{
    static struct otk_esp e;
    const char *what;
    reset(size, encrypted, false);
    CHECK(otk_esp_init(&e, CONFIG_OTAKEY_PARTITION_LABEL, NULL) == ESP_OK);
    CHECK(e.port.sector_size == SECTOR && e.port.flash_size == size / (2 * SECTOR) * 2 * SECTOR);
    CHECK(e.port.prog_size == (encrypted ? 16u : 4u));
    CHECK(e.port.flash_flags == (encrypted ? 0u : OTK_FLASH_REPROGRAM));
    what = port_exercise(&e.port, CONFIG_OTAKEY_PROTO);
    CHECK(what == NULL);
    if (what)
        printf("  %s\n", what);
    CHECK(refused == 0);
    CHECK(encrypted ? raw_reads > 0 : raw_reads == 0);
    otk_esp_deinit(&e);
    printf("esp-idf port, %s: %u bytes: claim, commit, remount\n", name, (unsigned)size);
}

int main(void)
{
    static struct otk_esp e;
    run("plain flash", 2 * SECTOR, false);
    run("flash encryption", 2 * SECTOR, true);
    run("flash encryption, a sector left over", 3 * SECTOR, true);
    reset(2 * SECTOR, false, true);
    CHECK(otk_esp_init(&e, CONFIG_OTAKEY_PARTITION_LABEL, NULL) == ESP_ERR_NOT_ALLOWED);
    reset(SECTOR, false, false);
    CHECK(otk_esp_init(&e, CONFIG_OTAKEY_PARTITION_LABEL, NULL) == ESP_ERR_INVALID_SIZE);
    reset(2 * SECTOR, false, false);
    CHECK(otk_esp_init(&e, "nvs", NULL) == ESP_ERR_NOT_FOUND);
    return CHECK_DONE();
}
