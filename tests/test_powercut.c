/*
 * Power-loss sweep over the whole protocol: a device claims, is rotated,
 * then switched to cloud B, against the agent core. For every flash
 * operation N of that run (each erased sector and each programmed unit),
 * and for a clean and a torn cut, the run is repeated with power lost at
 * operation N; the device reboots from what its flash kept and the run
 * goes on. After each reboot the device must hold complete key sets (the
 * one committed before the phase or the one after, byte for byte as the
 * agent issued them), at least one of them accepted by its cloud once it
 * has any; at the end, device and agent agree on one version on cloud B and
 * the cloud holds exactly one client for the device.
 */
#include <stdlib.h>

#include "check.h"
#include "world.h"

#define STEPS 200

typedef struct issued {
    uint32_t version;
    otk_keyset set;
} issued;

/* Every set the agent issued in this run, to compare the device's against. */
static issued sets[16];
static size_t n_sets;

static void remember(world *w, wdev *d)
{
    otk_agent_device rec;
    size_t i;
    if (world_record(w, d, &rec) != OTK_OK)
        return;
    if (rec.has_pending) {
        for (i = 0; i < n_sets && sets[i].version != rec.pending.version; i++)
            ;
        if (i == n_sets && n_sets < 16) {
            sets[n_sets].version = rec.pending.version;
            sets[n_sets++].set = rec.pending;
        }
    }
}

static int is_issued(const otk_keyset *k)
{
    size_t i;
    for (i = 0; i < n_sets; i++)
        if (sets[i].version == k->version && memcmp(sets[i].set.ak, k->ak, 32) == 0 &&
            strcmp(sets[i].set.cloud.user, k->cloud.user) == 0 &&
            strcmp(sets[i].set.cloud.secret, k->cloud.secret) == 0 &&
            strcmp(sets[i].set.cloud.host, k->cloud.host) == 0 &&
            sets[i].set.cloud.port == k->cloud.port)
            return 1;
    return 0;
}

/* Checks made right after a reboot; returns 1 if the device holds a usable set. */
static void check_after_reboot(world *w, wdev *d, uint32_t before)
{
    otk_keyset k;
    otk_cloud c;
    int usable = 0, any = 0;
    uint32_t act = otk_device_version(&d->dev, OTK_SET_ACTIVE);
    uint32_t stg = otk_device_version(&d->dev, OTK_SET_STAGED);
    CHECK(act == before || act > before);
    if (act) {
        any = 1;
        CHECK_OK(otk_ks_load(&d->dev.ks, 0, &k));
        CHECK(is_issued(&k));
        CHECK_OK(otk_device_cloud(&d->dev, OTK_SET_ACTIVE, &c));
        usable |= otk_memcloud_connect(w->cloud, &c) == OTK_PROOF_OK;
    }
    if (stg) {
        any = 1;
        CHECK_OK(otk_ks_load(&d->dev.ks, 1, &k));
        CHECK(is_issued(&k));
        CHECK_OK(otk_device_cloud(&d->dev, OTK_SET_STAGED, &c));
        usable |= otk_memcloud_connect(w->cloud, &c) == OTK_PROOF_OK;
    }
    /* Before the first commit a claim may simply start over; after it, never lose the set. */
    CHECK(usable || (!any && before == 0) || (before == 0 && act == 0));
    if (before > 0)
        CHECK(act >= before);
}

/*
 * A phase is done when the device is READY on the set the agent committed:
 * any set for the claim, a newer one for the rotation, one on cloud B for
 * the switch. (Versions depend on where the cuts fell: a claim cut before
 * its response was stored is made again, and supersedes the first.)
 */
static int phase_done(world *w, wdev *d, int phase, uint32_t before)
{
    otk_agent_device rec;
    uint32_t v = otk_device_version(&d->dev, OTK_SET_ACTIVE);
    if (otk_device_state(&d->dev) != OTK_DEV_READY || world_record(w, d, &rec) != OTK_OK ||
        !rec.has_committed || rec.committed.version != v)
        return 0;
    if (phase == 1 && v <= before)
        return 0;
    if (phase == 2 && rec.committed.cloud.cloud_id != WORLD_CLOUD_B)
        return 0;
    return 1;
}

/* One phase, resumed across power cuts. Returns the number of cuts it saw. */
static int run_phase(world *w, wdev *d, int phase, unsigned long *cuts)
{
    uint32_t before = otk_device_version(&d->dev, OTK_SET_ACTIVE);
    int tries;
    otk_status st;
    if (phase == 1)
        CHECK_OK(otk_agent_request_update(&w->agent, d->cfg.device_id, OTK_WANT_ROTATE, 0,
                                          (uint8_t[OTK_MSG_MAX_LEN]){0}, OTK_MSG_MAX_LEN,
                                          &(size_t){0}));
    if (phase == 2)
        CHECK_OK(otk_agent_request_update(&w->agent, d->cfg.device_id, OTK_WANT_SWITCH,
                                          WORLD_CLOUD_B, (uint8_t[OTK_MSG_MAX_LEN]){0},
                                          OTK_MSG_MAX_LEN, &(size_t){0}));
    if (phase > 0)
        CHECK_OK(otk_device_poll(&d->dev));
    for (tries = 0; tries < 4; tries++) {
        /* Settle in small steps, noting each set the agent issues. */
        int i;
        st = OTK_ERR_BAD_STATE;
        for (i = 0; i < STEPS && st != OTK_OK; i++) {
            st = world_settle(w, d, 1);
            remember(w, d);
            if (d->dev.sticky != OTK_OK)
                break;
        }
        if (st == OTK_OK && phase_done(w, d, phase, before))
            return 0;
        if (d->dev.sticky == OTK_OK && !d->flash.dead)
            break; /* stuck without a power cut: a failure */
        /* Power cut: reboot from flash, check, and let the firmware poll at boot. */
        (*cuts)++;
        otk_flashsim_reboot(&d->flash);
        w->last_agent = OTK_OK;
        CHECK_OK(wdev_boot(w, d));
        check_after_reboot(w, d, before);
        if (otk_device_state(&d->dev) == OTK_DEV_READY)
            CHECK_OK(otk_device_poll(&d->dev));
    }
    CHECK(!"phase did not complete");
    fprintf(stderr, "phase %d: state %d, active v%u, last %s\n", phase, otk_device_state(&d->dev),
            (unsigned)otk_device_version(&d->dev, OTK_SET_ACTIVE), otk_strerror(st));
    return -1;
}

static unsigned long sweep(uint32_t sector, uint32_t prog, int tear, unsigned long *ops_total)
{
    unsigned long points = 0, cut;
    for (cut = 0;; cut++) {
        world w;
        wdev d;
        unsigned long cuts = 0;
        int phase, ok = 1;
        otk_agent_device rec;
        n_sets = 0;
        CHECK(world_init(&w, 1000 + cut) == 0);
        CHECK(wdev_init(&w, &d, 9) == 0);
        otk_flashsim_free(&d.flash);
        CHECK(otk_flashsim_init(&d.flash, 2 * 4096, sector, prog) == 0);
        otk_flashsim_port(&d.flash, &w.dev_crypto, &d.port);
        CHECK_OK(wdev_boot(&w, &d));
        otk_flashsim_cut(&d.flash, cut, tear, 77u * cut + 5u);
        for (phase = 0; phase < 3 && ok; phase++)
            ok = run_phase(&w, &d, phase, &cuts) == 0;
        if (ok) {
            CHECK(otk_device_state(&d.dev) == OTK_DEV_READY);
            CHECK_OK(world_record(&w, &d, &rec));
            CHECK(rec.committed.version == otk_device_version(&d.dev, OTK_SET_ACTIVE));
            CHECK(rec.committed.cloud.cloud_id == WORLD_CLOUD_B && !rec.has_pending);
            CHECK(otk_memcloud_count(w.cloud) == 1);
        }
        if (cuts == 0) {
            /* The cut point lies past the run's last flash operation: done. */
            *ops_total += d.flash.ops;
            wdev_free(&d);
            world_free(&w);
            break;
        }
        points++;
        wdev_free(&d);
        world_free(&w);
        if (!ok)
            break;
    }
    return points;
}

int main(int argc, char **argv)
{
    unsigned long points = 0, ops = 0;
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    points += sweep(4096, 8, 0, &ops);
    points += sweep(4096, 8, 1, &ops);
    if (!quick) {
        points += sweep(1024, 4, 1, &ops);
        points += sweep(512, 16, 1, &ops);
    }
    printf("power-cut sweep over claim + rotation + switch: %lu cut points "
           "(%lu flash operations in the uncut runs), clean and torn\n",
           points, ops);
    return CHECK_DONE();
}
