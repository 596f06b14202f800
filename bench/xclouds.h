/*
 * Two certificate clouds for the in-process benchmarks: real issuing CAs
 * (otk_x509, OpenSSL) that certify every device key and keep real CRLs, in
 * place of a world's memory clouds, and the device's proof against them.
 */
#ifndef OTK_BENCH_XCLOUDS_H
#define OTK_BENCH_XCLOUDS_H

#include "world.h"

#include "otakey/x509cloud.h"

/* Makes the CAs under dir (which must exist) and restarts w's agent on them. 0 or -1. */
int xclouds_setup(world *w, const char *dir);
/* The same on existing CAs (cert[i], key[i]: cloud A then B; CRLs written to crl[i]). */
int xclouds_setup_on(world *w, const char *const cert[2], const char *const key[2],
                     const char *const crl[2]);
/* The cloud of cloud_id, or NULL (also before setup). */
otk_x509 *xclouds_of(uint32_t cloud_id);
/* The staged certificate's login: signed by its cloud's CA, for the device's key. */
otk_proof xclouds_login(world *w, const wdev *d);
void xclouds_close(void);

#endif
