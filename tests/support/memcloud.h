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

/*
 * Certificate clouds: the adapter issues stand-in certificates (serial,
 * device id and key). A login with one is OTK_PROOF_OK when that cloud
 * issued it, has not revoked it (remove of its serial), and priv is the
 * key it names.
 */
otk_proof otk_memcloud_connect_cert(otk_memcloud *m, const otk_crypto *cr, uint32_t cloud_id,
                                    const uint8_t *der, size_t der_len,
                                    const uint8_t priv[OTK_PRIV_LEN]);
/* From now on, certificates name another key than the one asked for. */
void otk_memcloud_wrong_key(otk_memcloud *m, int on);

#endif
