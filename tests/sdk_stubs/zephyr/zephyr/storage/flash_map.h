/* Declarations of Zephyr's storage/flash_map.h used by port/zephyr (tests/sdk_stubs/README.md). */
#ifndef OTK_STUB_ZEPHYR_FLASH_MAP_H
#define OTK_STUB_ZEPHYR_FLASH_MAP_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <zephyr/device.h>

struct flash_area {
    uint8_t fa_id;
    uint16_t pad16;
    off_t fa_off;
    size_t fa_size;
    const struct device *fa_dev;
};

struct flash_sector {
    off_t fs_off;
    size_t fs_size;
};

int flash_area_open(uint8_t id, const struct flash_area **fa);
void flash_area_close(const struct flash_area *fa);
int flash_area_read(const struct flash_area *fa, off_t off, void *dst, size_t len);
int flash_area_write(const struct flash_area *fa, off_t off, const void *src, size_t len);
int flash_area_erase(const struct flash_area *fa, off_t off, size_t len);
int flash_area_flatten(const struct flash_area *fa, off_t off, size_t len);
uint32_t flash_area_align(const struct flash_area *fa);
int flash_area_get_sectors(int fa_id, uint32_t *count, struct flash_sector *sectors);
const struct device *flash_area_get_device(const struct flash_area *fa);
uint8_t flash_area_erased_val(const struct flash_area *fa);

/* The devicetree of the check: otakey_partition is flash area 3. */
#define FIXED_PARTITION_EXISTS(label) 1
#define FIXED_PARTITION_ID(label) 3
#endif
