/* Declarations of ESP-IDF's bootloader_random.h used by samples/esp-idf (tests/sdk_stubs/README.md). */
#ifndef OTK_STUB_BOOTLOADER_RANDOM_H
#define OTK_STUB_BOOTLOADER_RANDOM_H

void bootloader_random_enable(void);
void bootloader_random_disable(void);
#endif
