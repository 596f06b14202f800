/*
 * Device ports for Linux hosts: a key partition in a file (NOR semantics
 * kept: erase to 0xFF, program clears bits, fsync after each operation),
 * a monotonic clock, and the cloud proof as a real MQTT CONNECT.
 */
#ifndef OTK_POSIX_PORT_H
#define OTK_POSIX_PORT_H

#include "otakey/device.h"

typedef struct otk_file_flash {
    int fd;
    uint32_t size, sector_size, prog_size;
} otk_file_flash;

/*
 * Opens (creating, erased, when absent) a key partition file of size bytes.
 * Returns 0, or -1 with errno; a file of another size is refused (EINVAL).
 */
int otk_file_flash_open(otk_file_flash *f, const char *path, uint32_t size, uint32_t sector_size,
                        uint32_t prog_size);
void otk_file_flash_close(otk_file_flash *f);

/* Fills an otk_port over the file flash, CLOCK_MONOTONIC and crypto. */
void otk_posix_port(otk_file_flash *f, const otk_crypto *crypto, otk_port *out);

/*
 * Proves a cloud record: MQTT 5 CONNECT over TLS (cafile; plain TCP when
 * the record has no TLS flag) with its username and secret, client id
 * client_id. OTK_PROOF_OK on CONNACK success, OTK_PROOF_REFUSED when the
 * broker refuses the credentials, OTK_PROOF_UNREACHABLE otherwise.
 */
otk_proof otk_mqtt_prove(const otk_cloud *c, const char *cafile, const char *client_id,
                         unsigned timeout_ms);

#endif
