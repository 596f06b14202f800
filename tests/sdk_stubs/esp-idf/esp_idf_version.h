/* ESP-IDF's esp_idf_version.h, as ESP-IDF 5.2 (tests/sdk_stubs/README.md). */
#ifndef OTK_STUB_ESP_IDF_VERSION_H
#define OTK_STUB_ESP_IDF_VERSION_H
#define ESP_IDF_VERSION_VAL(major, minor, patch) (((major) << 16) | ((minor) << 8) | (patch))
#define ESP_IDF_VERSION ESP_IDF_VERSION_VAL(5, 2, 0)
#endif
