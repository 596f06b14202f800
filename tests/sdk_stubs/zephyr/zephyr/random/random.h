/* Declarations of Zephyr's random/random.h used by port/zephyr (tests/sdk_stubs/README.md). */
#ifndef OTK_STUB_ZEPHYR_RANDOM_H
#define OTK_STUB_ZEPHYR_RANDOM_H
#include <stddef.h>

int sys_csrand_get(void *dst, size_t len);
#endif
