/* Declarations of Zephyr's sys/printk.h used by samples/zephyr (tests/sdk_stubs/README.md). */
#ifndef OTK_STUB_ZEPHYR_PRINTK_H
#define OTK_STUB_ZEPHYR_PRINTK_H

void printk(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#endif
