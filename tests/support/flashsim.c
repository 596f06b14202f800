#include "flashsim.h"

#include <stdlib.h>
#include <string.h>

static uint64_t next_rand(otk_flashsim *f)
{
    uint64_t z = (f->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int otk_flashsim_init2(otk_flashsim *f, uint32_t size, uint32_t sector_size, uint32_t prog_size,
                       uint8_t erased, int reprogram)
{
    memset(f, 0, sizeof *f);
    f->mem = malloc(size);
    f->programmed = calloc(size / (prog_size ? prog_size : 1) + 1, 1);
    if (f->mem == NULL || f->programmed == NULL) {
        free(f->mem);
        free(f->programmed);
        return -1;
    }
    memset(f->mem, erased, size);
    f->erased = erased;
    f->reprogram = reprogram;
    f->size = size;
    f->sector_size = sector_size;
    f->prog_size = prog_size;
    f->cut_at = -1;
    f->fail_at = -1;
    return 0;
}

int otk_flashsim_init(otk_flashsim *f, uint32_t size, uint32_t sector_size, uint32_t prog_size)
{
    return otk_flashsim_init2(f, size, sector_size, prog_size, 0xFF, 0);
}

/* Program moves bits away from the erased value only. */
static void program_bytes(const otk_flashsim *f, uint8_t *dst, const uint8_t *src, uint32_t n)
{
    uint32_t i;
    for (i = 0; i < n; i++)
        dst[i] = f->erased ? (uint8_t)(dst[i] & src[i]) : (uint8_t)(dst[i] | src[i]);
}

void otk_flashsim_free(otk_flashsim *f)
{
    free(f->mem);
    free(f->programmed);
    memset(f, 0, sizeof *f);
}

void otk_flashsim_cut(otk_flashsim *f, unsigned long op, int tear, uint64_t seed)
{
    f->cut_at = (long)(f->ops + op);
    f->tear = tear;
    f->rng = seed;
}

void otk_flashsim_reboot(otk_flashsim *f)
{
    f->dead = 0;
    f->cut_at = -1;
}

/* Counts an operation; returns 1 to perform it, 0 if power is cut now. */
static int op_begin(otk_flashsim *f, int *torn)
{
    long idx = (long)f->ops++;
    *torn = 0;
    if (f->dead)
        return 0;
    if (idx == f->cut_at) {
        f->dead = 1;
        *torn = f->tear;
        return 0;
    }
    return 1;
}

static int sim_read(void *ctx, uint32_t off, uint8_t *buf, uint32_t len)
{
    otk_flashsim *f = ctx;
    uint32_t u;
    f->reads++;
    if (f->dead || off > f->size || len > f->size - off || f->reads == f->glitch_at)
        return -1;
    /* ECC flash (program-once) reports a torn unit as a read error. */
    for (u = off / f->prog_size; !f->reprogram && len && u <= (off + len - 1) / f->prog_size; u++)
        if (f->programmed[u] == 2)
            return -1;
    memcpy(buf, f->mem + off, len);
    return 0;
}

static int sim_prog(void *ctx, uint32_t off, const uint8_t *buf, uint32_t len)
{
    otk_flashsim *f = ctx;
    int torn;
    uint32_t u, n;
    if (off > f->size || len > f->size - off || off % f->prog_size || len % f->prog_size)
        return -1;
    /* Hardware programs one unit at a time: each unit is an operation. */
    for (u = 0; u < len; u += f->prog_size) {
        uint8_t *dst = f->mem + off + u;
        const uint8_t *src = buf + u;
        uint8_t part;
        if ((long)f->ops == f->fail_at) {
            f->ops++;
            return -1;
        }
        if (!f->reprogram && f->programmed[(off + u) / f->prog_size]) {
            f->reprograms++; /* ECC flash: a second program corrupts the unit */
            return -1;
        }
        if (!op_begin(f, &torn)) {
            if (torn) {
                /* A prefix of the unit lands, then one byte gets only some bits. */
                n = (uint32_t)(next_rand(f) % f->prog_size);
                program_bytes(f, dst, src, n);
                part = f->erased ? (uint8_t)(src[n] | (uint8_t)next_rand(f))
                                 : (uint8_t)(src[n] & (uint8_t)next_rand(f));
                program_bytes(f, dst + n, &part, 1);
                f->programmed[(off + u) / f->prog_size] = 2; /* torn: its ECC does not match */
            }
            return -1;
        }
        program_bytes(f, dst, src, f->prog_size);
        f->programmed[(off + u) / f->prog_size] = 1;
    }
    return 0;
}

static int sim_erase(void *ctx, uint32_t off)
{
    otk_flashsim *f = ctx;
    int torn;
    uint32_t n;
    if (off >= f->size || off % f->sector_size)
        return -1;
    if ((long)f->ops == f->fail_at) {
        f->ops++;
        return -1;
    }
    if (!op_begin(f, &torn)) {
        if (torn) {
            /* Part of the sector is erased, the byte at the edge is garbage. */
            n = (uint32_t)(next_rand(f) % f->sector_size);
            memset(f->mem + off, f->erased, n);
            if (f->erased)
                f->mem[off + n] |= (uint8_t)next_rand(f);
            else
                f->mem[off + n] &= (uint8_t)next_rand(f);
            /* The units it reached may be programmed again; the rest stay as they were. */
            memset(f->programmed + off / f->prog_size, 0, n / f->prog_size);
        }
        return -1;
    }
    memset(f->mem + off, f->erased, f->sector_size);
    memset(f->programmed + off / f->prog_size, 0, f->sector_size / f->prog_size);
    return 0;
}

static uint32_t sim_now(void *ctx)
{
    return ((otk_flashsim *)ctx)->now_ms;
}

void otk_flashsim_port(otk_flashsim *f, const otk_crypto *crypto, otk_port *out)
{
    memset(out, 0, sizeof *out);
    out->version = OTK_PORT_VERSION;
    out->ctx = f;
    out->flash_size = f->size;
    out->sector_size = f->sector_size;
    out->prog_size = f->prog_size;
    out->flash_flags = (f->erased ? 0u : OTK_FLASH_ERASED_ZERO) | (f->reprogram ? OTK_FLASH_REPROGRAM : 0u);
    out->flash_read = sim_read;
    out->flash_prog = sim_prog;
    out->flash_erase = sim_erase;
    out->now_ms = sim_now;
    out->crypto = crypto;
}
