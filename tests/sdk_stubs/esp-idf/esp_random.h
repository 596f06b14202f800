/* Declarations of ESP-IDF's esp_random.h used by port/esp-idf (tests/sdk_stubs/README.md). */
#ifndef OTK_STUB_ESP_RANDOM_H
#define OTK_STUB_ESP_RANDOM_H
#include <stddef.h>

void esp_fill_random(void *buf, size_t len);
#endif
