/*
 * port_exercise.h: what the SDK port checks run through a port once it is
 * initialised: the device core starts unclaimed and gives its first CLAIM,
 * then a key set is staged, committed and found again after a remount.
 * Returns NULL, or what failed.
 */
#ifndef OTK_PORT_EXERCISE_H
#define OTK_PORT_EXERCISE_H

#include <string.h>

#include "otakey/device.h"
#include "otakey/keystore.h"
#include "otakey/wire.h"

static const char *port_exercise(const otk_port *port, uint8_t proto)
{
    static otk_device d;
    otk_device_config cfg;
    otk_keystore ks;
    otk_keyset set, got;
    uint8_t out[OTK_MSG_MAX_LEN];
    size_t len = 0;
    int ok;
    memset(&cfg, 0, sizeof cfg);
    memset(cfg.device_id, 0xd0, sizeof cfg.device_id);
    cfg.proto = proto;
    if (otk_device_init(&d, port, &cfg) != OTK_OK || otk_device_state(&d) != OTK_DEV_UNCLAIMED)
        return "the device core does not start unclaimed";
    ok = otk_device_next(&d, out, sizeof out, &len) == OTK_OK && len == OTK_CLAIM_LEN &&
         out[1] == OTK_MSG_CLAIM;
    otk_device_free(&d);
    if (!ok)
        return "no CLAIM";
    memset(&ks, 0, sizeof ks);
    memset(&set, 0, sizeof set);
    set.version = 1;
    memset(set.ak, 0xa5, sizeof set.ak);
    if (otk_cloud_set(&set.cloud, 1, "cloud-a.example", 8883, OTK_CLOUD_FLAG_TLS, "device-1",
                      "secret-1") != OTK_OK ||
        otk_ks_mount(&ks, port) != OTK_OK || otk_ks_stage(&ks, &set) != OTK_OK ||
        otk_ks_commit(&ks, 1) != OTK_OK)
        return "key store: stage and commit";
    memset(&ks, 0, sizeof ks);
    if (otk_ks_mount(&ks, port) != OTK_OK || otk_ks_active_version(&ks) != 1 ||
        otk_ks_load(&ks, 0, &got) != OTK_OK || memcmp(got.ak, set.ak, sizeof set.ak) != 0)
        return "key store: the committed set after a remount";
    return NULL;
}

#endif
