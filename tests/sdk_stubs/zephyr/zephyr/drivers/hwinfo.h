/* Declarations of Zephyr's drivers/hwinfo.h used by samples/zephyr (tests/sdk_stubs/README.md). */
#ifndef OTK_STUB_ZEPHYR_HWINFO_H
#define OTK_STUB_ZEPHYR_HWINFO_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

ssize_t hwinfo_get_device_id(uint8_t *buffer, size_t length);
#endif
