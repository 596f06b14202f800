/*
 * In-memory cloud platforms for in-process tests: the set of device
 * clients (cloud id, username, secret) the agent created, and a connect
 * check standing in for an MQTT CONNECT with those credentials.
 */
#ifndef OTK_TEST_MEMCLOUD_H
#define OTK_TEST_MEMCLOUD_H

#include "otakey/agent.h"
#include "otakey/device.h"

typedef struct otk_memcloud otk_memcloud;

otk_memcloud *otk_memcloud_new(void);
void otk_memcloud_free(otk_memcloud *m);
void otk_memcloud_adapter(otk_memcloud *m, otk_cloud_adapter *out);
/* OTK_PROOF_OK when a client with these credentials exists on that cloud. */
otk_proof otk_memcloud_connect(otk_memcloud *m, const otk_cloud *creds);
size_t otk_memcloud_count(const otk_memcloud *m);
/* The next n create/remove calls fail with OTK_ERR_CLOUD. */
void otk_memcloud_fail(otk_memcloud *m, unsigned n);

#endif
