/*
 * pwfile.h: the cloud adapter for a mosquitto broker that authenticates
 * with its own password_file and acl_file, for a self-hosted cloud broker
 * on the agent's host. It scales where the dynamic-security plugin does
 * not: mosquitto 2.0's plugin rewrites its whole JSON configuration on
 * every command (measured: ~7 ms per device at 500 devices, ~47 ms at
 * 1,500), so a fleet of 10,000 would take hours to enrol.
 *
 *   create -> a line "user:$6$salt$hash" in password_file (SHA-512 of the
 *             secret and a random salt: the secrets are 192-bit random,
 *             so a slow hash adds nothing);
 *   remove -> the line taken out.
 * acl_file holds one pattern, "pattern readwrite devices/%c/#": a device
 * logs in with its id as client id and may use its own topics. Unlike the
 * dynamic-security adapter's per-device roles, the pattern binds topics to
 * the client id a client chooses, not to its credentials: a device holding
 * valid credentials could log in under another device's id on this cloud.
 * Per-user ACL lines would close that, but mosquitto 2.0 looks users up in
 * a list, for every ACL line at each reload (quadratic in the fleet: ~1 s
 * at 18,000 devices) and for every publish.
 * Both only queue the change (idempotent, in memory). otk_pwfile_flush
 * writes both files (atomically: temporary file + rename), signals the
 * broker to reload (SIGHUP to the pid in pid_file) and returns once the
 * broker accepts a probe client written in the same flush, so that every
 * queued client is usable when it returns. The daemon flushes before it
 * publishes the replies that name new clients.
 *
 * At open the files are read back, so a restarted agent keeps every
 * client. Several agents may share the files: each flush takes an
 * exclusive flock on "<password_file>.lock", reads the file as it is on
 * disk, replays the agent's queued changes on it and writes it back.
 */
#ifndef OTAKEY_PWFILE_H
#define OTAKEY_PWFILE_H

#include "otakey/agent.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct otk_pwfile_cloud {
    uint32_t cloud_id;
    char password_file[256];
    char acl_file[256];
    char pid_file[256];          /* the broker's pid, for SIGHUP */
    char host[OTK_HOST_MAX + 1]; /* the probe connects here */
    uint16_t port;
    uint8_t tls;                 /* the probe uses TLS (verified against cafile) */
    char cafile[256];
} otk_pwfile_cloud;

typedef struct otk_pwfile otk_pwfile;

/* Reads the files back (missing files are empty). err names the file and line. */
OTK_CHECK_RETURN otk_status otk_pwfile_open(const otk_pwfile_cloud *cfg, otk_pwfile **out,
                                            char *err, size_t err_size);
void otk_pwfile_close(otk_pwfile *p);

/* The otk_cloud_adapter functions (ctx is the otk_pwfile). */
otk_status otk_pwfile_create(void *ctx, const uint8_t device_id[16], const otk_cloud *creds);
otk_status otk_pwfile_remove(void *ctx, uint32_t cloud_id, const char *user);

/* Changes queued and not yet flushed. */
size_t otk_pwfile_pending(const otk_pwfile *p);

/*
 * Applies the queued changes (see above); timeout_ms bounds the wait for
 * the broker. OTK_ERR_STORAGE (files), OTK_ERR_CLOUD (no broker pid, or
 * the broker did not take the change in time: the change stays queued
 * and the next flush tries again).
 */
OTK_CHECK_RETURN otk_status otk_pwfile_flush(otk_pwfile *p, unsigned timeout_ms);

/*
 * Calls fn for every client in the file (probe clients left out), as of
 * the last open or flush. fn must not change p.
 */
void otk_pwfile_each(const otk_pwfile *p, void (*fn)(void *ud, const char *user), void *ud);

/* Clients known (for tests and logs). */
size_t otk_pwfile_count(const otk_pwfile *p);

#ifdef __cplusplus
}
#endif
#endif
