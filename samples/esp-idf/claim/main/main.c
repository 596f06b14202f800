/*
 * otakey claim sample (ESP-IDF): the device core over the "otakey" data
 * partition (partitions.csv) and the mbedTLS crypto port. On a
 * factory-fresh partition it builds the device's first CLAIM; on a claimed
 * one it reports the active key set. A product's MQTT glue (ESP-MQTT)
 * publishes what otk_device_next returns on otakey/v1/up/<device id> and
 * feeds what arrives on otakey/v1/down/<device id> to otk_device_receive
 * (the loop in include/otakey/device.h).
 */
#include <stdio.h>
#include <string.h>

#include "bootloader_random.h"
#include "esp_mac.h"

#include "otakey/device.h"
#include "otakey/wire.h"
#include "otakey_esp.h"

/*
 * Firmware constants of the production batch: its id, its product key
 * (otakey product create --batch ... --pk-out FILE) and the agent's public
 * key (otakey keygen). The values here are placeholders, which the agent
 * refuses.
 */
static const uint8_t batch_id[OTK_BATCH_ID_LEN] = {0, 0, 0, 1, 0, 0, 0, 1};
static const uint8_t batch_pk[OTK_PK_LEN] = {0};
static const uint8_t agent_pub[OTK_PUB_LEN] = {0};

static struct otk_esp port;
static otk_device dev;
static uint8_t out[OTK_MSG_MAX_LEN];

void app_main(void)
{
    otk_device_config cfg;
    otk_cloud cloud;
    size_t n = 0;
    otk_status st;
    esp_err_t err;

    /* The device id: the factory MAC in eFuse, zero-padded to 16 bytes. */
    memset(&cfg, 0, sizeof cfg);
    ESP_ERROR_CHECK(esp_efuse_mac_get_default(cfg.device_id));
    memcpy(cfg.batch_id, batch_id, sizeof cfg.batch_id);
    memcpy(cfg.pk, batch_pk, sizeof cfg.pk);
    memcpy(cfg.agent_pub, agent_pub, sizeof cfg.agent_pub);
    cfg.proto = CONFIG_OTAKEY_PROTO;

    err = otk_esp_init(&port, CONFIG_OTAKEY_PARTITION_LABEL, NULL);
    if (err != ESP_OK) {
        printf("otakey: key partition \"%s\": %s\n", CONFIG_OTAKEY_PARTITION_LABEL,
               esp_err_to_name(err));
        return;
    }
    printf("otakey: key partition of %u bytes: 2 slots, %u-byte sectors, %u-byte program unit%s\n",
           (unsigned)port.port.flash_size, (unsigned)port.port.sector_size,
           (unsigned)port.port.prog_size, port.part->encrypted ? ", encrypted" : "");

    /* Key generation needs a true RNG: with Wi-Fi and Bluetooth off, the
     * SAR ADC entropy source (not to be used with the ADC meanwhile). */
    bootloader_random_enable();
    st = otk_device_init(&dev, &port.port, &cfg);
    if (st == OTK_OK && otk_device_state(&dev) == OTK_DEV_READY &&
        otk_device_cloud(&dev, OTK_SET_ACTIVE, &cloud) == OTK_OK) {
        printf("otakey: claimed: key set version %u for %s:%u\n",
               (unsigned)otk_device_version(&dev, OTK_SET_ACTIVE), cloud.host,
               (unsigned)cloud.port);
    } else if (st == OTK_OK && (st = otk_device_next(&dev, out, sizeof out, &n)) == OTK_OK) {
        printf("otakey: first message: %s of %u bytes (protocol version %u), to publish on "
               "otakey/v1/up/<device id>\n",
               n ? otk_msg_name(out[1]) : "nothing", (unsigned)n, (unsigned)out[0]);
    }
    bootloader_random_disable();
    if (st != OTK_OK)
        printf("otakey: %s\n", otk_strerror(st));
}
