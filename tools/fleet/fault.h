/*
 * fault.h: a seeded network fault layer between the simulated devices and
 * the agent broker. Every message a device sends or receives passes
 * through fl_faults_pass, which drops it with probability loss, copies it
 * with probability dup, and holds each copy for a uniform random 0..delay_ms
 * before handing it on (so later messages can overtake earlier ones).
 * Held messages sit in a timer queue that the caller's loop drains with
 * fl_faults_run: nothing ever sleeps.
 *
 * The same seed and the same sequence of calls give the same decisions;
 * the timing of the real network around it is not part of the seed.
 */
#ifndef OTK_FLEET_FAULT_H
#define OTK_FLEET_FAULT_H

#include <stddef.h>
#include <stdint.h>

typedef struct fl_fault_cfg {
    double loss;        /* probability a message is dropped, 0..1 */
    double dup;         /* probability a delivered message is delivered twice, 0..1 */
    unsigned delay_ms;  /* each copy is held 0..delay_ms (uniform); 0: none */
    uint64_t seed;
} fl_fault_cfg;

/* Directions of a message. */
#define FL_UP 0   /* device -> agent */
#define FL_DOWN 1 /* agent -> device */

typedef struct fl_fault_stats {
    uint64_t passed[2];     /* messages given to the layer, per direction */
    uint64_t dropped[2];
    uint64_t duplicated[2]; /* extra copies made */
    uint64_t delayed[2];    /* copies held for > 0 ms */
} fl_fault_stats;

/* Hands one copy on: dev is the device index given to fl_faults_pass. */
typedef void (*fl_fault_deliver)(void *ud, uint32_t dev, int dir, const uint8_t *p, size_t n);

typedef struct fl_faults fl_faults;

/* A fault layer calling deliver(ud, ...). Never NULL (aborts on no memory).
 * With loss = dup = 0 and delay_ms = 0 every message is handed on at once. */
fl_faults *fl_faults_new(const fl_fault_cfg *cfg, fl_fault_deliver deliver, void *ud);

/* Frees the layer and the messages still held (they are lost). */
void fl_faults_free(fl_faults *f);

/* Whether any fault is configured. */
int fl_faults_active(const fl_faults *f);

/*
 * Passes message p (n bytes, copied when held) of device dev in direction
 * dir: 0, 1 or 2 copies reach deliver, now (from inside this call) or
 * from a later fl_faults_run.
 */
void fl_faults_pass(fl_faults *f, uint32_t dev, int dir, const uint8_t *p, size_t n);

/* Hands on the held copies due at now_us. deliver may call fl_faults_pass. */
void fl_faults_run(fl_faults *f, uint64_t now_us);

/* Messages held now. */
size_t fl_faults_held(const fl_faults *f);

/* Counters since the layer was made. */
void fl_faults_stats(const fl_faults *f, fl_fault_stats *out);

#endif
