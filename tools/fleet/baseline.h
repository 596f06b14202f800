/*
 * baseline.h: the schemes OTA-Key is measured against, run by otakey-fleet
 * through the same agent broker (topics bench/v1/up/<client id> and
 * bench/v1/down/<client id>; the servers log in as the bench user):
 *
 *  - firmware re-key: the new key travels inside a firmware image that a
 *    server streams to the device in blocks, as MQTT OTA services do; the
 *    device writes it to (simulated) flash and checks its signature;
 *  - X.509 CSR rotation, as AWS IoT fleet provisioning / EST do it: the
 *    device makes a P-256 key and a PKCS#10 CSR (mbedTLS), a CA server
 *    signs an X.509 certificate (OpenSSL), JSON payloads over MQTT.
 *
 * Each run connects n devices with ids fl_device_id(env, first + i) (not
 * timed), then times the re-key of all of them (at most env->window in
 * flight) and fills out (scheme, name "re-key", latencies, bytes of the
 * re-key exchange only, server CPU per device from its thread clock, the
 * simulator's device CPU per device). Returns 0, or -1 when the phase
 * could not run at all (a message on stderr); device failures are counted
 * in out->failures, not returned.
 */
#ifndef OTK_FLEET_BASELINE_H
#define OTK_FLEET_BASELINE_H

#include "fleet.h"

int fl_fw_run(fl_env *env, uint32_t first, uint32_t n, size_t image_size, size_t block_size,
              fl_phase *out);
int fl_csr_run(fl_env *env, uint32_t first, uint32_t n, fl_phase *out);

#endif
