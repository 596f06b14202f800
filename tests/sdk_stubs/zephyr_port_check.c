/*
 * port/zephyr/otakey_zephyr.c on the host (tests/sdk_stubs/README.md): the
 * flash-area functions over a RAM partition that behaves as Zephyr
 * documents it, then the device core through the port on several
 * geometries. Prints "N passed, M failed"; exit status 1 on a failure.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "otakey/device.h"
#include "otakey/keystore.h"
#include "otakey/wire.h"
#include "../support/check.h" /* the suite's CHECK and CHECK_DONE */
#include "port_exercise.h"
#include "otakey_zephyr.h"


/* The simulated flash device and its one partition (flash area 3). */
static struct device dev = {"flash-sim"};
static struct flash_area area = {3, 0, 0x10000, 0, &dev};
static uint8_t mem[16384];
static uint8_t written[16384]; /* 1: the byte's write block was programmed since its erase */
static size_t sector_sizes[8];
static uint32_t n_sectors, write_block, refused;
static uint8_t erased_val;
static uint32_t ms;

static void geometry(size_t sector, uint32_t n, uint32_t wb, uint8_t ev)
{
    uint32_t i;
    for (i = 0; i < n; i++)
        sector_sizes[i] = sector;
    n_sectors = n;
    write_block = wb;
    erased_val = ev;
    area.fa_size = sector * n;
    memset(mem, ev, sizeof mem);
    memset(written, 0, sizeof written);
    refused = 0;
}

uint32_t k_uptime_get_32(void)
{
    return ms += 7;
}

bool device_is_ready(const struct device *d)
{
    return d == &dev;
}

int sys_csrand_get(void *dst, size_t len)
{
    uint8_t *p = dst;
    while (len--)
        *p++ = (uint8_t)rand();
    return 0;
}

int flash_area_open(uint8_t id, const struct flash_area **fa)
{
    if (id != area.fa_id) {
        *fa = NULL;
        return -ENOENT;
    }
    *fa = &area;
    return 0;
}

void flash_area_close(const struct flash_area *fa)
{
    (void)fa;
}

static int in_area(const struct flash_area *fa, off_t off, size_t len)
{
    return fa == &area && off >= 0 && (size_t)off <= fa->fa_size && len <= fa->fa_size - (size_t)off;
}

int flash_area_read(const struct flash_area *fa, off_t off, void *dst, size_t len)
{
    if (!in_area(fa, off, len))
        return -EINVAL;
    memcpy(dst, mem + off, len);
    return 0;
}

/* Aligned to the write block; bits move away from the erased value only;
 * a block written twice between erases is refused (no CONFIG_OTAKEY_FLASH_REPROGRAM). */
int flash_area_write(const struct flash_area *fa, off_t off, const void *src, size_t len)
{
    const uint8_t *s = src;
    size_t i;
    if (!in_area(fa, off, len) || off % write_block || len % write_block)
        return -EINVAL;
    for (i = 0; i < len; i++)
        if (written[off + i]) {
            refused++;
            return -EIO;
        }
    for (i = 0; i < len; i++) {
        mem[off + i] = erased_val ? (uint8_t)(mem[off + i] & s[i]) : (uint8_t)(mem[off + i] | s[i]);
        written[off + i] = 1;
    }
    return 0;
}

int flash_area_erase(const struct flash_area *fa, off_t off, size_t len)
{
    size_t pos = 0, i;
    if (!in_area(fa, off, len))
        return -EINVAL;
    for (i = 0; i < n_sectors && pos < (size_t)off; i++)
        pos += sector_sizes[i];
    if (pos != (size_t)off)
        return -EINVAL;
    for (; i < n_sectors && pos < (size_t)off + len; i++)
        pos += sector_sizes[i];
    if (pos != (size_t)off + len)
        return -EINVAL;
    memset(mem + off, erased_val, len);
    memset(written + off, 0, len);
    return 0;
}

uint32_t flash_area_align(const struct flash_area *fa)
{
    (void)fa;
    return write_block;
}

int flash_area_get_sectors(int fa_id, uint32_t *count, struct flash_sector *sectors)
{
    uint32_t i;
    off_t off = 0;
    if (fa_id != area.fa_id)
        return -EINVAL;
    if (*count < n_sectors)
        return -ENOMEM;
    for (i = 0; i < n_sectors; i++) {
        sectors[i].fs_off = area.fa_off + off;
        sectors[i].fs_size = sector_sizes[i];
        off += (off_t)sector_sizes[i];
    }
    *count = n_sectors;
    return 0;
}

const struct device *flash_area_get_device(const struct flash_area *fa)
{
    return fa->fa_dev;
}

uint8_t flash_area_erased_val(const struct flash_area *fa)
{
    (void)fa;
    return erased_val;
}

/* Through the port: the first CLAIM, then a key set staged, committed, found after a remount. */
static void run(const char *name, size_t sector, uint32_t n, uint32_t wb, uint8_t ev)
{
    static struct otk_zephyr z;
    const char *what;
    geometry(sector, n, wb, ev);
    CHECK(otk_zephyr_init(&z, OTK_ZEPHYR_PARTITION_ID, NULL) == 0);
    CHECK(z.port.sector_size == sector && z.port.prog_size == wb &&
          z.port.flash_size == n / 2 * 2 * sector);
    CHECK(z.port.flash_flags == (ev == 0 ? OTK_FLASH_ERASED_ZERO : 0u));
    what = port_exercise(&z.port, 0);
    CHECK(what == NULL);
    if (what)
        printf("  %s\n", what);
    CHECK(refused == 0);
    otk_zephyr_deinit(&z);
    printf("zephyr port, %s: %u-byte sectors x %u, write block %u, erased 0x%02x: claim, commit, remount\n",
           name, (unsigned)sector, (unsigned)n, (unsigned)wb, ev);
}

int main(void)
{
    static struct otk_zephyr z;
    run("nRF52-like", 4096, 2, 4, 0xff);
    run("32-byte write blocks", 2048, 4, 32, 0xff);
    run("erased to 0x00, a sector left over", 1024, 3, 8, 0x00);
    run("byte writes", 4096, 2, 1, 0xff);
    /* Geometries the port refuses, with the documented errors. */
    geometry(4096, 2, 64, 0xff);
    CHECK(otk_zephyr_init(&z, OTK_ZEPHYR_PARTITION_ID, NULL) == -ENOTSUP);
    geometry(4096, 2, 4, 0x5a);
    CHECK(otk_zephyr_init(&z, OTK_ZEPHYR_PARTITION_ID, NULL) == -ENOTSUP);
    geometry(4096, 2, 4, 0xff);
    sector_sizes[1] = 2048;
    CHECK(otk_zephyr_init(&z, OTK_ZEPHYR_PARTITION_ID, NULL) == -ENOTSUP);
    geometry(4096, 1, 4, 0xff);
    CHECK(otk_zephyr_init(&z, OTK_ZEPHYR_PARTITION_ID, NULL) == -ENOSPC);
    geometry(1024, 8, 4, 0xff);
    CHECK(otk_zephyr_init(&z, 9, NULL) == -ENOENT);
    return CHECK_DONE();
}
