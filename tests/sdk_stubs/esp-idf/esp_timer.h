/* Declarations of ESP-IDF's esp_timer.h used by port/esp-idf (tests/sdk_stubs/README.md). */
#ifndef OTK_STUB_ESP_TIMER_H
#define OTK_STUB_ESP_TIMER_H
#include <stdint.h>

int64_t esp_timer_get_time(void);
#endif
