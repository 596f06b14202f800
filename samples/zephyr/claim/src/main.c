/*
 * otakey claim sample (Zephyr): the device core over the key partition
 * (otakey_partition, in the overlays of boards/) and the mbedTLS crypto port. On a
 * factory-fresh partition it builds the device's first CLAIM; on a claimed
 * one it reports the active key set. A product's MQTT glue publishes what
 * otk_device_next returns on otakey/v1/up/<device id> and feeds what
 * arrives on otakey/v1/down/<device id> to otk_device_receive (the loop in
 * include/otakey/device.h).
 */
#include <string.h>

#include <zephyr/drivers/hwinfo.h>
#include <zephyr/kernel.h>
#include <zephyr/sys/printk.h>

#include "otakey/device.h"
#include "otakey/wire.h"
#include "otakey_zephyr.h"

#ifndef OTK_ZEPHYR_PARTITION_ID
#error "no key partition: label a fixed partition otakey_partition (boards/*.overlay) or set CONFIG_OTAKEY_PARTITION_ID"
#endif

/*
 * Firmware constants of the production batch: its id, its product key
 * (otakey product create --batch ... --pk-out FILE) and the agent's public
 * key (otakey keygen). The values here are placeholders, which the agent
 * refuses.
 */
static const uint8_t batch_id[OTK_BATCH_ID_LEN] = {0, 0, 0, 1, 0, 0, 0, 1};
static const uint8_t batch_pk[OTK_PK_LEN] = {0};
static const uint8_t agent_pub[OTK_PUB_LEN] = {0};

static struct otk_zephyr port;
static otk_device dev;
static uint8_t out[OTK_MSG_MAX_LEN];

int main(void)
{
    otk_device_config cfg;
    otk_cloud cloud;
    size_t n = 0;
    ssize_t id_len;
    otk_status st;
    int rc;

    memset(&cfg, 0, sizeof cfg);
    id_len = hwinfo_get_device_id(cfg.device_id, sizeof cfg.device_id);
    if (id_len <= 0) {
        printk("otakey: no hardware id on this board (%d): using a fixed one\n", (int)id_len);
        memset(cfg.device_id, 0xd0, sizeof cfg.device_id);
    }
    memcpy(cfg.batch_id, batch_id, sizeof cfg.batch_id);
    memcpy(cfg.pk, batch_pk, sizeof cfg.pk);
    memcpy(cfg.agent_pub, agent_pub, sizeof cfg.agent_pub);
    cfg.proto = CONFIG_OTAKEY_PROTO;

    rc = otk_zephyr_init(&port, OTK_ZEPHYR_PARTITION_ID, NULL);
    if (rc != 0) {
        printk("otakey: key partition: error %d\n", rc);
        return 0;
    }
    printk("otakey: key partition of %u bytes: 2 slots, %u-byte sectors, %u-byte program unit, "
           "erased 0x%02x\n",
           (unsigned)port.port.flash_size, (unsigned)port.port.sector_size,
           (unsigned)port.port.prog_size,
           (port.port.flash_flags & OTK_FLASH_ERASED_ZERO) ? 0x00u : 0xffu);

    st = otk_device_init(&dev, &port.port, &cfg);
    if (st != OTK_OK) {
        printk("otakey: init: %s\n", otk_strerror(st));
        return 0;
    }
    if (otk_device_state(&dev) == OTK_DEV_READY &&
        otk_device_cloud(&dev, OTK_SET_ACTIVE, &cloud) == OTK_OK) {
        printk("otakey: claimed: key set version %u for %s:%u\n",
               (unsigned)otk_device_version(&dev, OTK_SET_ACTIVE), cloud.host,
               (unsigned)cloud.port);
        return 0;
    }
    st = otk_device_next(&dev, out, sizeof out, &n);
    if (st != OTK_OK) {
        printk("otakey: next: %s\n", otk_strerror(st));
        return 0;
    }
    printk("otakey: first message: %s of %u bytes (protocol version %u), to publish on "
           "otakey/v1/up/<device id>\n",
           n ? otk_msg_name(out[1]) : "nothing", (unsigned)n, (unsigned)out[0]);
    return 0;
}
