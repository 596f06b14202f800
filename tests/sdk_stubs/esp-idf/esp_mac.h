/* Declarations of ESP-IDF's esp_mac.h used by samples/esp-idf (tests/sdk_stubs/README.md). */
#ifndef OTK_STUB_ESP_MAC_H
#define OTK_STUB_ESP_MAC_H
#include <stdint.h>

#include "esp_err.h"

esp_err_t esp_efuse_mac_get_default(uint8_t *mac);
#endif
