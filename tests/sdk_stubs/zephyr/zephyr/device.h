/* Declarations of Zephyr's device.h used by port/zephyr (tests/sdk_stubs/README.md). */
#ifndef OTK_STUB_ZEPHYR_DEVICE_H
#define OTK_STUB_ZEPHYR_DEVICE_H
#include <stdbool.h>

struct device {
    const char *name;
};

bool device_is_ready(const struct device *dev);
#endif
