/* Declarations of ESP-IDF's esp_err.h used by port/esp-idf (tests/sdk_stubs/README.md). */
#ifndef OTK_STUB_ESP_ERR_H
#define OTK_STUB_ESP_ERR_H
#include <stdint.h>

typedef int esp_err_t;
#define ESP_OK 0
#define ESP_FAIL -1
#define ESP_ERR_INVALID_ARG 0x102
#define ESP_ERR_INVALID_SIZE 0x104
#define ESP_ERR_NOT_FOUND 0x105
#define ESP_ERR_NOT_ALLOWED 0x10C

const char *esp_err_to_name(esp_err_t code);
/* ESP-IDF aborts on an error; the check compiles the samples, it does not run them. */
#define ESP_ERROR_CHECK(x)             \
    do {                               \
        esp_err_t otk_stub_rc_ = (x);  \
        (void)otk_stub_rc_;            \
    } while (0)
#endif
