#include "testrng.h"

void otk_testrng_seed(otk_testrng *r, uint64_t seed)
{
    r->s = seed;
}

uint64_t otk_testrng_u64(otk_testrng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int otk_testrng_fill(void *ctx, uint8_t *out, size_t len)
{
    otk_testrng *r = (otk_testrng *)ctx;
    while (len) {
        uint64_t v = otk_testrng_u64(r);
        size_t i;
        for (i = 0; i < 8 && len; i++, len--) {
            *out++ = (uint8_t)v;
            v >>= 8;
        }
    }
    return 0;
}
