/*
 * Fuzz target: the agent core's message handler, end to end (decode,
 * registry lookups, MAC checks, replies), over a registry that holds a
 * pending, an active and a revoked device. It must never crash, and a
 * refused message must come with an ERROR reply or none.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "world.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static world w;
static wdev devs[3];
static unsigned long runs;

static void setup(void)
{
    uint8_t out[OTK_MSG_MAX_LEN];
    size_t n;
    unsigned i;
    if (world_init(&w, 7) != 0)
        abort();
    for (i = 0; i < 3; i++)
        if (wdev_init(&w, &devs[i], i) != 0 || wdev_boot(&w, &devs[i]) != OTK_OK)
            abort();
    (void)world_settle(&w, &devs[0], 1); /* pending claim */
    if (world_settle(&w, &devs[1], 16) != OTK_OK || world_settle(&w, &devs[2], 16) != OTK_OK ||
        otk_agent_request_update(&w.agent, devs[1].cfg.device_id, OTK_WANT_ROTATE, 0, out,
                                 sizeof out, &n) != OTK_OK ||
        otk_agent_revoke(&w.agent, devs[2].cfg.device_id) != OTK_OK)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t out[OTK_MSG_MAX_LEN];
    size_t n = 0;
    otk_status st;
    /* The memory registry keeps every audit event: start afresh now and then. */
    if (runs++ % 50000 == 0) {
        unsigned i;
        if (runs > 1) {
            for (i = 0; i < 3; i++)
                wdev_free(&devs[i]);
            world_free(&w);
        }
        setup();
    }
    st = otk_agent_handle(&w.agent, data, size, out, sizeof out, &n);
    if (n > sizeof out || (st != OTK_OK && n != 0 && n != OTK_ERROR_LEN))
        abort();
    return 0;
}
