/*
 * The fleet simulator's network fault layer (tools/fleet/fault.c): rates of
 * loss and duplication, delays within bounds and in due order, reordering,
 * repeatability from the seed, re-entrant delivery, held copies freed.
 * The layer's clock (fl_now_us) is this test's, so time is stepped by hand.
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fault.h"

static uint64_t fake_now;

uint64_t fl_now_us(void)
{
    return fake_now;
}

#define MAXLOG 250000

typedef struct rec {
    uint32_t dev;
    int dir;
    uint32_t seq;     /* the message's number, from its payload */
    uint64_t at_us;   /* when delivered */
} rec;

typedef struct sink {
    rec *log;
    size_t n;
    int bad_payload;
    fl_faults *f;     /* for the re-entrant test */
    int echo;         /* DOWN deliveries answered by an UP pass */
} sink;

static void deliver(void *ud, uint32_t dev, int dir, const uint8_t *p, size_t n)
{
    sink *s = ud;
    uint32_t seq;
    if (n != 8 || memcmp(p + 4, "otk!", 4) != 0) {
        s->bad_payload++;
        return;
    }
    memcpy(&seq, p, 4);
    if (s->n < MAXLOG) {
        s->log[s->n].dev = dev;
        s->log[s->n].dir = dir;
        s->log[s->n].seq = seq;
        s->log[s->n].at_us = fake_now;
        s->n++;
    }
    if (s->echo && dir == FL_DOWN)
        fl_faults_pass(s->f, dev, FL_UP, p, n);
}

static void pass(fl_faults *f, uint32_t dev, int dir, uint32_t seq)
{
    uint8_t m[8];
    memcpy(m, &seq, 4);
    memcpy(m + 4, "otk!", 4);
    fl_faults_pass(f, dev, dir, m, sizeof m);
}

static sink *sink_new(void)
{
    sink *s = calloc(1, sizeof *s);
    if (s == NULL || (s->log = calloc(MAXLOG, sizeof *s->log)) == NULL)
        abort();
    return s;
}

static void sink_free(sink *s)
{
    free(s->log);
    free(s);
}

static void test_clear(void)
{
    fl_fault_cfg cfg = {0, 0, 0, 1};
    sink *s = sink_new();
    fl_faults *f = fl_faults_new(&cfg, deliver, s);
    fl_fault_stats st;
    uint32_t i;
    int inorder = 1;
    CHECK(!fl_faults_active(f));
    for (i = 0; i < 1000; i++)
        pass(f, i % 7, i & 1, i);
    CHECK(s->n == 1000);
    for (i = 0; i < s->n; i++)
        inorder &= s->log[i].seq == i && s->log[i].dev == i % 7 && s->log[i].dir == (int)(i & 1);
    CHECK(inorder);
    CHECK(fl_faults_held(f) == 0);
    fl_faults_stats(f, &st);
    CHECK(st.passed[FL_UP] + st.passed[FL_DOWN] == 1000);
    CHECK(st.dropped[0] + st.dropped[1] + st.duplicated[0] + st.duplicated[1] == 0);
    fl_faults_free(f);
    sink_free(s);
}

/* Loss and duplication at their configured rates; every copy accounted for. */
static void test_rates(double p)
{
    fl_fault_cfg cfg = {p, p, 0, 42};
    sink *s = sink_new();
    fl_faults *f = fl_faults_new(&cfg, deliver, s);
    fl_fault_stats st;
    uint32_t i, n = 100000;
    double drop, dup;
    for (i = 0; i < n; i++)
        pass(f, 0, FL_UP, i);
    fl_faults_stats(f, &st);
    drop = (double)st.dropped[FL_UP] / n;
    dup = (double)st.duplicated[FL_UP] / (double)(n - st.dropped[FL_UP]);
    CHECK(st.passed[FL_UP] == n);
    CHECK(drop > p - 0.01 && drop < p + 0.01);
    CHECK(dup > p - 0.01 && dup < p + 0.01);
    CHECK(s->n == n - st.dropped[FL_UP] + st.duplicated[FL_UP]);
    CHECK(s->bad_payload == 0);
    fl_faults_free(f);
    sink_free(s);
}

/* Delays: each copy held 0..D, handed on only once due, in due order;
 * messages overtake one another. */
static void test_delay(void)
{
    fl_fault_cfg cfg = {0, 0.1, 200, 7};
    sink *s = sink_new();
    fl_faults *f = fl_faults_new(&cfg, deliver, s);
    uint64_t sent_at[2000];
    uint32_t i;
    size_t k;
    int early = 0, late = 0, order = 1, overtaken = 0;
    fake_now = 1000000;
    for (i = 0; i < 2000; i++) {
        sent_at[i] = fake_now;
        pass(f, i, FL_DOWN, i);
        fake_now += 100; /* one message every 0.1 ms */
        fl_faults_run(f, fake_now);
    }
    /* Nothing is handed on before its time: 50 ms later, some still held. */
    CHECK(fl_faults_held(f) > 0);
    for (k = 0; k < 400; k++) {
        fake_now += 1000;
        fl_faults_run(f, fake_now);
    }
    CHECK(fl_faults_held(f) == 0);
    for (k = 0; k < s->n; k++) {
        uint64_t d = s->log[k].at_us - sent_at[s->log[k].seq];
        early |= s->log[k].at_us < sent_at[s->log[k].seq];
        late |= d > 200000 + 1000; /* one run step (1 ms) of slack */
        if (k > 0 && s->log[k].seq < s->log[k - 1].seq)
            overtaken++;
        if (k > 0 && s->log[k].at_us < s->log[k - 1].at_us)
            order = 0;
    }
    CHECK(s->n > 2000);
    CHECK(!early);
    CHECK(!late);
    CHECK(order);
    CHECK(overtaken > 100);
    fl_faults_free(f);
    sink_free(s);
}

/* The same seed and calls give the same decisions; another seed does not. */
static void pattern(uint64_t seed, uint32_t *out, size_t n)
{
    fl_fault_cfg cfg = {0.2, 0.2, 50, seed};
    sink *s = sink_new();
    fl_faults *f = fl_faults_new(&cfg, deliver, s);
    size_t i, k;
    fake_now = 0;
    for (i = 0; i < n; i++)
        pass(f, 0, FL_UP, (uint32_t)i);
    fake_now = 1000000;
    fl_faults_run(f, fake_now);
    memset(out, 0xff, n * sizeof *out);
    for (k = 0; k < s->n && k < n; k++)
        out[k] = s->log[k].seq;
    fl_faults_free(f);
    sink_free(s);
}

static void test_seed(void)
{
    static uint32_t a[5000], b[5000], c[5000];
    pattern(1234, a, 5000);
    pattern(1234, b, 5000);
    pattern(1235, c, 5000);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(a, c, sizeof a) != 0);
}

/* A delivery that passes a new message (a device answering) while the
 * layer is handing on held copies; copies still held at the end freed. */
static void test_reentrant(void)
{
    fl_fault_cfg cfg = {0.1, 0.1, 30, 99};
    sink *s = sink_new();
    fl_faults *f = fl_faults_new(&cfg, deliver, s);
    fl_fault_stats st;
    uint32_t i, ups = 0;
    size_t k;
    s->f = f;
    s->echo = 1;
    fake_now = 0;
    for (i = 0; i < 3000; i++) {
        pass(f, i % 50, FL_DOWN, i);
        fake_now += 1000;
        fl_faults_run(f, fake_now);
    }
    /* The answers passed during the last run are held in turn. */
    fake_now += 1000000;
    fl_faults_run(f, fake_now);
    fake_now += 1000000;
    fl_faults_run(f, fake_now);
    CHECK(fl_faults_held(f) == 0);
    for (k = 0; k < s->n; k++)
        ups += s->log[k].dir == FL_UP;
    fl_faults_stats(f, &st);
    CHECK(st.passed[FL_UP] == s->n - ups);
    CHECK(ups == st.passed[FL_UP] - st.dropped[FL_UP] + st.duplicated[FL_UP]);
    CHECK(s->bad_payload == 0);
    /* Held copies at free time are released (ASan reports a leak otherwise). */
    for (i = 0; i < 100; i++)
        pass(f, 0, FL_DOWN, i);
    CHECK(fl_faults_held(f) > 0);
    fl_faults_free(f);
    sink_free(s);
}

int main(void)
{
    test_clear();
    test_rates(0.05);
    test_rates(0.20);
    test_delay();
    test_seed();
    test_reentrant();
    return CHECK_DONE();
}
