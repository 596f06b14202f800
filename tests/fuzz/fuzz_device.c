/*
 * Fuzz target: the device core's message handler. The first input byte
 * picks a device state (claiming, proving, confirming, ready, updating);
 * the rest is handed to otk_device_receive. Each input starts from the
 * same snapshot, and a refused input must leave the context unchanged.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "world.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define N_STATES 5

static world w;
static wdev devs[N_STATES];
static otk_device snap[N_STATES];
static uint8_t *flash_snap[N_STATES];

static void setup(void)
{
    uint8_t out[OTK_MSG_MAX_LEN];
    size_t n, i;
    if (world_init(&w, 99) != 0)
        abort();
    for (i = 0; i < N_STATES; i++) {
        if (wdev_init(&w, &devs[i], (unsigned)i) != 0 || wdev_boot(&w, &devs[i]) != OTK_OK)
            abort();
    }
    /* 0: CLAIMING (request sent, no answer) */
    if (otk_device_next(&devs[0].dev, out, sizeof out, &n) != OTK_OK)
        abort();
    /* 1: PROVE (response delivered) */
    if (world_settle(&w, &devs[1], 1) == OTK_OK || otk_device_state(&devs[1].dev) != OTK_DEV_PROVE)
        abort();
    /* 2: CONFIRMING (CONFIRM not delivered) */
    (void)world_settle(&w, &devs[2], 1);
    if (otk_device_proof(&devs[2].dev, OTK_PROOF_OK, out, sizeof out, &n) != OTK_OK)
        abort();
    /* 3: READY and 4: UPDATING */
    if (world_settle(&w, &devs[3], 16) != OTK_OK || world_settle(&w, &devs[4], 16) != OTK_OK ||
        otk_device_poll(&devs[4].dev) != OTK_OK ||
        otk_device_next(&devs[4].dev, out, sizeof out, &n) != OTK_OK)
        abort();
    for (i = 0; i < N_STATES; i++) {
        snap[i] = devs[i].dev;
        flash_snap[i] = malloc(devs[i].flash.size);
        memcpy(flash_snap[i], devs[i].flash.mem, devs[i].flash.size);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    uint8_t out[OTK_MSG_MAX_LEN];
    size_t n = 0;
    wdev *d;
    unsigned k;
    otk_status st;
    if (!ready) {
        setup();
        ready = 1;
    }
    if (size < 1)
        return 0;
    k = data[0] % N_STATES;
    d = &devs[k];
    d->dev = snap[k];
    memcpy(d->flash.mem, flash_snap[k], d->flash.size);
    st = otk_device_receive(&d->dev, data + 1, size - 1, out, sizeof out, &n);
    if (st != OTK_OK && memcmp(&d->dev, &snap[k], sizeof snap[k]) != 0)
        abort(); /* a refusal changed the state */
    if (n > sizeof out)
        abort();
    return 0;
}
