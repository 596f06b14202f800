/* Declarations of Zephyr's kernel.h used by port/zephyr (tests/sdk_stubs/README.md). */
#ifndef OTK_STUB_ZEPHYR_KERNEL_H
#define OTK_STUB_ZEPHYR_KERNEL_H
#include <stdint.h>
#include <sys/types.h>

/* IS_ENABLED(CONFIG_X): 1 when CONFIG_X is defined as 1, 0 when it is not defined. */
#define OTK_STUB_ARG_1 0,
#define OTK_STUB_SECOND(ignored, val, ...) val
#define OTK_STUB_ENABLED3(maybe) OTK_STUB_SECOND(maybe 1, 0, 0)
#define OTK_STUB_ENABLED2(x) OTK_STUB_ENABLED3(OTK_STUB_ARG_##x)
#define IS_ENABLED(config) OTK_STUB_ENABLED2(config)

uint32_t k_uptime_get_32(void);
#endif
