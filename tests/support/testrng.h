/*
 * Deterministic random source for reproducible tests (not for keys that
 * protect anything): a SplitMix64 stream per seed.
 */
#ifndef OTK_TEST_RNG_H
#define OTK_TEST_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct otk_testrng {
    uint64_t s;
} otk_testrng;

void otk_testrng_seed(otk_testrng *r, uint64_t seed);
uint64_t otk_testrng_u64(otk_testrng *r);
/* otk_rng_fn-compatible: fills out, returns 0. */
int otk_testrng_fill(void *r, uint8_t *out, size_t len);

#endif
