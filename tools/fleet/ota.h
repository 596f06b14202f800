/*
 * ota.h: OTA-Key devices of otakey-fleet. Each simulated device is the
 * real device core (its own otk_device context and key partition in
 * simulated NOR flash) with its own MQTT connection to the agent broker;
 * a staged key set is proven by a real MQTT CONNECT to the cloud it names.
 */
#ifndef OTK_FLEET_OTA_H
#define OTK_FLEET_OTA_H

#include "fleet.h"
#include "otakey/device.h"

typedef struct fl_ota fl_ota;

/* n devices with ids fl_device_id(env, i); fw holds batch id, PK, agent key. */
fl_ota *fl_ota_new(fl_env *env, uint32_t n, const otk_device_config *fw);
void fl_ota_free(fl_ota *o);

/*
 * First power-on of every device: connect, claim, prove on the claim
 * cloud, confirm. Latency per device: from its connection attempt to its
 * committed key set.
 */
int fl_ota_claim(fl_ota *o, fl_phase *ph);

/*
 * An update campaign: runs cmd (which starts the campaign at the agent),
 * then waits until every device committed a newer version, on cloud
 * want_cloud if non-zero. Latency per device: from the NOTIFY it received
 * to its committed set.
 */
int fl_ota_update(fl_ota *o, const char *cmd, uint32_t want_cloud, fl_phase *ph);

/*
 * The end check: each device logs in to the cloud its committed set names
 * (a real MQTT CONNECT with that set's user and secret; at most
 * env->phase_timeout_s seconds for all). If state_path is not NULL, writes
 * there one JSON object per device and line:
 *   {"id":"HEX32","state":"ready","version":V,"cloud":C,"login":"ok"}
 * login is "ok", "refused" (the cloud answered with a refusal), "failed"
 * (no answer) or "none" (no committed set). Returns the number of devices
 * not READY or whose login was not accepted (-1: state_path not writable);
 * *ok (may be NULL) gets the number of accepted logins.
 */
int fl_ota_check(fl_ota *o, const char *state_path, uint32_t *ok);

#endif
