/*
 * An in-process world for protocol tests: one agent core (OpenSSL, memory
 * registry, memory cloud with two platforms) and any number of device
 * cores (mbedTLS, simulated flash), moving messages by function call. It
 * counts bytes per direction and can drop or tamper with messages.
 */
#ifndef OTK_TEST_WORLD_H
#define OTK_TEST_WORLD_H

#include "flashsim.h"
#include "memcloud.h"
#include "testrng.h"

#include "otakey/agent.h"
#include "otakey/device.h"

#define WORLD_CLOUD_A 1u
#define WORLD_CLOUD_B 2u


typedef struct world {
    otk_testrng dev_rng, agent_rng;
    union {
        uint8_t bytes[OTK_CRYPTO_MBEDTLS_STATE_SIZE];
        long double align_;
        void *palign_;
    } mbed;
    union {
        uint8_t bytes[OTK_CRYPTO_MBEDTLS_STATE_SIZE];
        void *palign_;
    } mbed_agent; /* the agent's backend state when it runs on mbedTLS */
    otk_crypto dev_crypto, agent_crypto;
    otk_memreg *reg;
    struct otk_sqlreg *sql; /* when the world runs on SQLite */
    otk_registry regif;
    otk_memcloud *cloud;
    otk_cloud_adapter cloudif;
    otk_agent agent;
    otk_agent_config cfg;
    uint8_t pk[OTK_PK_LEN];
    uint8_t batch[OTK_BATCH_ID_LEN];
    unsigned long bytes_up, bytes_down, msgs_up, msgs_down;
    otk_status last_agent; /* status of the agent's last handle() */
    /* When set, the next device->agent message is dropped (not delivered). */
    int drop_next_up, drop_next_down;
    /* Proof of a staged set; the memory cloud's check when NULL. */
    otk_proof (*prove)(void *ctx, const otk_cloud *c);
    void *prove_ctx;
    /* Called with every message delivered (up = 1: device -> agent). */
    void (*tap)(void *ctx, int up, const uint8_t *msg, size_t len);
    void *tap_ctx;
} world;

typedef struct wdev {
    otk_flashsim flash;
    otk_port port;
    otk_device dev;
    otk_device_config cfg;
    otk_status last; /* status of the device's last call */
} wdev;

/* 0 on success. */
int world_init(world *w, uint64_t seed);
/* The same world over the SQLite registry at path (reopened if it exists). */
int world_init_sqlite(world *w, uint64_t seed, const char *path);
/* Simulates an agent crash and restart: a new agent core over the same registry. */
int world_restart_agent(world *w);
void world_free(world *w);

/* A device of the world's batch with id derived from n; flash erased. */
int wdev_init(world *w, wdev *d, unsigned n);
void wdev_free(wdev *d);
/* A TLS login with the device's certificate set (active or staged) on the memory cloud. */
otk_proof world_cert_login(world *w, const wdev *d, int which);

/* Power-on: otk_device_init over the device's flash as it is. */
otk_status wdev_boot(world *w, wdev *d);

/* Delivers a device->agent message; the agent's reply goes to the device. */
void world_up(world *w, wdev *d, const uint8_t *msg, size_t len);

/*
 * Runs the device loop (send, answer, prove on the memory cloud, advance
 * simulated time for retransmissions) until the device is READY with
 * nothing in flight, or max_steps. Returns OTK_OK when READY, else the
 * last non-OK status seen (device or agent).
 */
otk_status world_settle(world *w, wdev *d, int max_steps);

/* Operator request + delivery of the NOTIFY to the device. */
otk_status world_request(world *w, wdev *d, int want, uint32_t cloud_id);

/* Agent's record of a device. */
otk_status world_record(world *w, const wdev *d, otk_agent_device *out);

#endif
