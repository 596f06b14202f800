/*
 * Device ports for Linux hosts: a key partition in a file (NOR semantics
 * kept: erase to 0xFF, program clears bits, fsync after each operation),
 * a monotonic clock; the cloud proof (a real MQTT CONNECT) is src/net's.
 */
#ifndef OTK_POSIX_PORT_H
#define OTK_POSIX_PORT_H

#include <stdio.h>

#include "cloud_login.h"
#include "otakey/device.h"

typedef struct otk_file_flash {
    int fd;
    uint32_t size, sector_size, prog_size;
    unsigned long ops;    /* flash operations performed since open */
    unsigned long cut_at; /* 0: no fault hook; else the operation to die at */
    unsigned tear;        /* nonzero: the cut operation is left half done */
} otk_file_flash;

/* Exit status of a process whose power was cut by the fault hook. */
#define OTK_FILE_FLASH_CUT_EXIT 3

/*
 * Opens (creating, erased, when absent) a key partition file of size bytes.
 * Returns 0, or -1 with errno; a file of another size is refused (EINVAL).
 */
int otk_file_flash_open(otk_file_flash *f, const char *path, uint32_t size, uint32_t sector_size,
                        uint32_t prog_size);
void otk_file_flash_close(otk_file_flash *f);

/*
 * Fault hook for power-loss tests. Operations are counted as NOR hardware
 * performs them: one per erased sector and one per programmed unit of
 * prog_size bytes (f->ops holds the count so far). With op >= 1, the
 * process dies with _exit(OTK_FILE_FLASH_CUT_EXIT), no cleanup, as power
 * fails at operation number op (1-based) instead of performing it. With
 * tear, that operation is left half done first: a programmed unit gets a
 * prefix of its bytes plus one byte with only some of its bits cleared; an
 * erased sector gets a prefix erased and one garbage byte at the edge.
 * tear == 0 is a clean cut; any other value is torn, and with op picks the
 * prefix length and garbage: the same (op, tear) always tears the same way.
 * op == 0 turns the hook off (the default after open).
 */
void otk_file_flash_cut(otk_file_flash *f, unsigned long op, unsigned tear);

/* Fills an otk_port over the file flash, CLOCK_MONOTONIC and crypto. */
void otk_posix_port(otk_file_flash *f, const otk_crypto *crypto, otk_port *out);

/*
 * The TLS context of a device's certificate set (OTK_SET_ACTIVE or
 * OTK_SET_STAGED), as otk_posix_cert_ctx: certificate, key and CA pin read
 * from its key partition for this context only. NULL when any is missing.
 */
void *otk_posix_set_tls(const otk_device *dev, int which, const char *cafile, const char *host);

#endif
