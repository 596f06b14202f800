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
 *
 * The emulated board (built with OTK_TEST_BOARD; --board on the host does
 * the same) cannot afford every cut point: it runs a subset planned from a
 * traced uncut run, in each geometry and for each phase (claim, rotation,
 * switch): the first and last sector erase of the staged slot, the first
 * and last program unit of the record, and the commit marker, one cut per
 * phase in a run (sweep_subset). The host keeps the full sweep.
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

/*
 * The flash operations of a run, traced through the port: each erase call
 * (one sector), each record program (its units) and each commit marker
 * (one unit at the start of a slot), with the phase it belongs to.
 */
enum { OP_ERASE, OP_RECORD, OP_MARKER };
static const char *const kind_names[] = {"erase", "record", "marker"};
static const char *const phase_names[] = {"claim", "rotation", "switch"};

typedef struct traced {
    unsigned long first; /* index of its first operation */
    uint32_t n;          /* operations (program units) */
    int phase, kind;
} traced;

static traced trace[96];
static size_t n_trace;
static int cur_phase;
static int (*sim_prog)(void *ctx, uint32_t off, const uint8_t *buf, uint32_t len);
static int (*sim_erase)(void *ctx, uint32_t off);

static void note(const otk_flashsim *f, int kind, uint32_t n)
{
    if (n_trace < sizeof trace / sizeof trace[0]) {
        trace[n_trace].first = f->ops;
        trace[n_trace].n = n;
        trace[n_trace].phase = cur_phase;
        trace[n_trace++].kind = kind;
    }
}

static int traced_prog(void *ctx, uint32_t off, const uint8_t *buf, uint32_t len)
{
    const otk_flashsim *f = ctx;
    uint32_t in_slot = off % (f->size / 2u);
    /* A marker is a slot's first unit, or its last (when the first was torn). */
    note(f, in_slot == 0 || in_slot + len == f->size / 2u ? OP_MARKER : OP_RECORD, len / f->prog_size);
    return sim_prog(ctx, off, buf, len);
}

static int traced_erase(void *ctx, uint32_t off)
{
    note(ctx, OP_ERASE, 1);
    return sim_erase(ctx, off);
}

/* The traced operation that operation op belonged to, or NULL. */
static const traced *traced_op(unsigned long op)
{
    size_t i;
    for (i = 0; i < n_trace; i++)
        if (op >= trace[i].first && op < trace[i].first + (trace[i].n ? trace[i].n : 1))
            return &trace[i];
    return NULL;
}

/*
 * One run of claim, rotation and switch with power cut at operation cut,
 * counted from boot (none when cut < 0), or, when at is not NULL, at
 * operation at[p] of each phase p counted from the phase's start (none
 * when at[p] < 0; at[p] becomes the operation's index in the run). Returns
 * 1 when the run completed as it must, 0 when it failed; *cuts is the
 * number of cuts it saw (0: the cut point lies past the run's last flash
 * operation).
 */
static int cut_run(uint32_t sector, uint32_t prog, uint8_t erased, int tear, long cut, long *at,
                   unsigned long seed, unsigned long *cuts, unsigned long *ops)
{
    world w;
    wdev d;
    int phase, ok = 1;
    otk_agent_device rec;
    *cuts = 0;
    n_sets = 0;
    n_trace = 0;
    CHECK(world_init(&w, 1000 + seed) == 0);
    CHECK(wdev_init(&w, &d, 9) == 0);
    otk_flashsim_free(&d.flash);
    CHECK(otk_flashsim_init2(&d.flash, 2 * 4096, sector, prog, erased, 0) == 0);
    otk_flashsim_port(&d.flash, &w.dev_crypto, &d.port);
    sim_prog = d.port.flash_prog;
    sim_erase = d.port.flash_erase;
    d.port.flash_prog = traced_prog;
    d.port.flash_erase = traced_erase;
    CHECK_OK(wdev_boot(&w, &d));
    if (cut >= 0)
        otk_flashsim_cut(&d.flash, (unsigned long)cut, tear, 77u * seed + 5u);
    for (phase = 0; phase < 3 && ok; phase++) {
        cur_phase = phase;
        if (at != NULL && at[phase] >= 0) {
            otk_flashsim_cut(&d.flash, (unsigned long)at[phase], tear, 77u * (3u * seed + phase) + 5u);
            at[phase] += (long)d.flash.ops;
        }
        ok = run_phase(&w, &d, phase, cuts) == 0;
    }
    if (ok) {
        CHECK(otk_device_state(&d.dev) == OTK_DEV_READY);
        CHECK_OK(world_record(&w, &d, &rec));
        CHECK(rec.committed.version == otk_device_version(&d.dev, OTK_SET_ACTIVE));
        CHECK(rec.committed.cloud.cloud_id == WORLD_CLOUD_B && !rec.has_pending);
        CHECK(otk_memcloud_count(w.cloud) == 1);
    }
    CHECK(d.flash.reprograms == 0); /* no unit programmed twice between erases */
    *ops = d.flash.ops;
    wdev_free(&d);
    world_free(&w);
    return ok;
}

static unsigned long sweep(uint32_t sector, uint32_t prog, uint8_t erased, int tear,
                           unsigned long *ops_total)
{
    unsigned long points = 0, cut, cuts, ops;
    for (cut = 0;; cut++) {
        int ok = cut_run(sector, prog, erased, tear, (long)cut, NULL, cut, &cuts, &ops);
        if (cuts == 0) {
            /* The cut point lies past the run's last flash operation: done. */
            *ops_total += ops;
            break;
        }
        points++;
        if (!ok)
            break;
    }
    return points;
}

/*
 * The board's subset. An uncut run is traced; each phase's operations are
 * then cut at their first and last sector erase, first and last record
 * unit and commit marker: run k cuts power once in every phase, at the
 * phase's k-th such operation (a phase starts from what the previous one
 * committed, so its operations are the same as in the uncut run; each cut
 * is checked to fall on the operation planned).
 */
#define KINDS 5
static unsigned long sweep_subset(uint32_t sector, uint32_t prog, uint8_t erased, int tear,
                                  unsigned long *ops_total)
{
    long plan[3][KINDS] = {{0}};
    int plan_kind[3][KINDS], n_plan[3] = {0, 0, 0}, runs = 0, p, k, same;
    unsigned long points = 0, cuts, ops, phase_start[3] = {0, 0, 0};
    size_t i;
    CHECK(cut_run(sector, prog, erased, tear, -1, NULL, 0, &cuts, &ops) && cuts == 0);
    *ops_total += ops;
    for (i = n_trace; i-- > 0;)
        phase_start[trace[i].phase] = trace[i].first;
    for (i = 0; i < n_trace; i++) {
        const traced *t = &trace[i];
        unsigned long pick[2];
        int n_pick = 0;
        if (t->kind == OP_RECORD) { /* the record's first and last unit */
            pick[n_pick++] = t->first;
            if (t->n > 1)
                pick[n_pick++] = t->first + t->n - 1;
        } else if (t->kind == OP_MARKER || i == 0 || trace[i - 1].kind != OP_ERASE ||
                   trace[i - 1].phase != t->phase || i + 1 == n_trace ||
                   trace[i + 1].kind != OP_ERASE) {
            pick[n_pick++] = t->first; /* the marker; the first and last erase of a slot */
        }
        for (k = 0; k < n_pick && n_plan[t->phase] < KINDS; k++) {
            plan_kind[t->phase][n_plan[t->phase]] = t->kind;
            plan[t->phase][n_plan[t->phase]++] = (long)(pick[k] - phase_start[t->phase]);
        }
    }
    same = n_plan[1] == n_plan[0] && n_plan[2] == n_plan[0] &&
           memcmp(plan[1], plan[0], sizeof plan[0]) == 0 && memcmp(plan[2], plan[0], sizeof plan[0]) == 0;
    printf("  %u-byte sectors, %u-byte units programmed once, erased 0x%02X, %s cuts, at operations "
           "counted from a phase's start,",
           (unsigned)sector, (unsigned)prog, erased, tear ? "torn" : "clean");
    for (p = 0; p < 3; p++) {
        if (n_plan[p] > runs)
            runs = n_plan[p];
        if (same && p > 0)
            continue;
        printf("%s in %s:", p ? ";" : "", same ? "each of claim, rotation and switch" : phase_names[p]);
        for (k = 0; k < n_plan[p]; k++)
            printf("%s %s +%ld", k ? "," : "", kind_names[plan_kind[p][k]], plan[p][k]);
    }
    printf(" (%d runs, one cut in each phase)\n", runs);
    for (k = 0; k < runs; k++) {
        long at[3];
        int ok, want = 0;
        for (p = 0; p < 3; p++) {
            at[p] = k < n_plan[p] ? plan[p][k] : -1;
            want += at[p] >= 0;
        }
        ok = cut_run(sector, prog, erased, tear, -1, at, (unsigned long)k + 1, &cuts, &ops);
        CHECK(cuts == (unsigned long)want);
        for (p = 0; p < 3; p++) {
            const traced *t = at[p] >= 0 ? traced_op((unsigned long)at[p]) : NULL;
            if (at[p] < 0)
                continue;
            CHECK(t != NULL && t->phase == p && t->kind == plan_kind[p][k]);
            points++;
        }
        if (!ok)
            break;
    }
    return points;
}

int main(int argc, char **argv)
{
    unsigned long points = 0, ops = 0;
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
#ifdef OTK_TEST_BOARD
    int board = 1; /* no command line on the board */
#else
    int board = argc > 1 && strcmp(argv[1], "--board") == 0;
#endif
    /* Every unit programmed once between erases (ECC flash): 8-, 16- and
     * 32-byte units on 0xFF flash, 4-byte units on 0x00 flash; --quick runs
     * the first two. */
    static const struct {
        uint32_t sector, prog;
        uint8_t erased;
        int tear;
    } parts[] = {{4096, 8, 0xFF, 0}, {4096, 8, 0xFF, 1}, {1024, 4, 0x00, 1},
                 {512, 16, 0xFF, 1}, {512, 32, 0xFF, 1}};
    size_t i, n = quick ? 2 : sizeof parts / sizeof parts[0];
    if (board)
        printf("power-cut subset (the board's; the host cuts at every operation):\n");
    for (i = 0; i < n; i++)
        points += (board ? sweep_subset : sweep)(parts[i].sector, parts[i].prog, parts[i].erased,
                                                 parts[i].tear, &ops);
    if (board) {
        printf("power-cut subset over claim + rotation + switch: %lu cut points "
               "(of %lu flash operations in the uncut runs), clean and torn\n",
               points, ops);
        return CHECK_DONE();
    }
    printf("power-cut sweep over claim + rotation + switch: %lu cut points "
           "(%lu flash operations in the uncut runs), clean and torn\n",
           points, ops);
    return CHECK_DONE();
}
