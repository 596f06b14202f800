/*
 * Seeded network faults between simulated devices and the agent broker
 * (tools/fleet/fault.h). The held copies are a binary min-heap ordered by
 * due time, then by arrival, so copies due at the same instant keep their
 * order and a run is repeatable.
 */
#include "fault.h"

#include <stdlib.h>
#include <string.h>

#include "net.h"

typedef struct held {
    uint64_t due_us, seq;
    uint32_t dev;
    int dir;
    size_t n;
    uint8_t *p;
} held;

struct fl_faults {
    fl_fault_cfg cfg;
    fl_fault_deliver deliver;
    void *ud;
    uint64_t rng, seq;
    held *h;
    size_t nh, cap;
    fl_fault_stats st;
};

/* splitmix64: a statistical generator for reproducible fault decisions;
 * nothing here needs unpredictability. */
static uint64_t next64(fl_faults *f)
{
    uint64_t z = (f->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double unit(fl_faults *f)
{
    return (double)(next64(f) >> 11) * (1.0 / 9007199254740992.0);
}

static int before(const held *a, const held *b)
{
    return a->due_us < b->due_us || (a->due_us == b->due_us && a->seq < b->seq);
}

static void push(fl_faults *f, held x)
{
    size_t i;
    if (f->nh == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 256;
        f->h = realloc(f->h, f->cap * sizeof *f->h);
        if (f->h == NULL)
            abort();
    }
    i = f->nh++;
    while (i > 0 && before(&x, &f->h[(i - 1) / 2])) {
        f->h[i] = f->h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    f->h[i] = x;
}

static held pop(fl_faults *f)
{
    held top = f->h[0], last = f->h[--f->nh];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= f->nh)
            break;
        if (c + 1 < f->nh && before(&f->h[c + 1], &f->h[c]))
            c++;
        if (!before(&f->h[c], &last))
            break;
        f->h[i] = f->h[c];
        i = c;
    }
    if (f->nh)
        f->h[i] = last;
    return top;
}

fl_faults *fl_faults_new(const fl_fault_cfg *cfg, fl_fault_deliver deliver, void *ud)
{
    fl_faults *f = calloc(1, sizeof *f);
    if (f == NULL)
        abort();
    f->cfg = *cfg;
    f->deliver = deliver;
    f->ud = ud;
    f->rng = cfg->seed;
    return f;
}

void fl_faults_free(fl_faults *f)
{
    if (f == NULL)
        return;
    while (f->nh)
        free(pop(f).p);
    free(f->h);
    free(f);
}

int fl_faults_active(const fl_faults *f)
{
    return f->cfg.loss > 0 || f->cfg.dup > 0 || f->cfg.delay_ms > 0;
}

/* One copy: handed on now, or held for its random delay. */
static void copy(fl_faults *f, uint32_t dev, int dir, const uint8_t *p, size_t n)
{
    held x;
    uint64_t d = f->cfg.delay_ms ? next64(f) % ((uint64_t)f->cfg.delay_ms * 1000u + 1u) : 0;
    if (d == 0) {
        f->deliver(f->ud, dev, dir, p, n);
        return;
    }
    f->st.delayed[dir]++;
    memset(&x, 0, sizeof x);
    x.due_us = fl_now_us() + d;
    x.seq = f->seq++;
    x.dev = dev;
    x.dir = dir;
    x.n = n;
    x.p = malloc(n ? n : 1);
    if (x.p == NULL)
        abort();
    memcpy(x.p, p, n);
    push(f, x);
}

void fl_faults_pass(fl_faults *f, uint32_t dev, int dir, const uint8_t *p, size_t n)
{
    int dup;
    dir = dir == FL_DOWN ? FL_DOWN : FL_UP;
    f->st.passed[dir]++;
    if (!fl_faults_active(f)) {
        f->deliver(f->ud, dev, dir, p, n);
        return;
    }
    if (unit(f) < f->cfg.loss) {
        f->st.dropped[dir]++;
        return;
    }
    dup = unit(f) < f->cfg.dup;
    copy(f, dev, dir, p, n);
    if (dup) {
        f->st.duplicated[dir]++;
        copy(f, dev, dir, p, n);
    }
}

void fl_faults_run(fl_faults *f, uint64_t now_us)
{
    while (f->nh && f->h[0].due_us <= now_us) {
        held x = pop(f);
        f->deliver(f->ud, x.dev, x.dir, x.p, x.n);
        free(x.p);
    }
}

size_t fl_faults_held(const fl_faults *f)
{
    return f->nh;
}

void fl_faults_stats(const fl_faults *f, fl_fault_stats *out)
{
    *out = f->st;
}
