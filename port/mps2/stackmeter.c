/*
 * Measured stack of the device core on the board, by painting. Linked into
 * a test program with -Wl,--wrap for each entry point of otakey/device.h
 * (see CMakeLists.txt), it stands between the program and the core: before
 * each call it paints WINDOW bytes below the stack pointer, after it finds
 * the lowest word changed. The depth counts from the stack pointer at the
 * call, as the program's own call would.
 *
 * Two figures: with the crypto backend (everything below the call: core,
 * flash port, crypto port, mbedTLS), and the core alone. For the latter the
 * device's crypto table is replaced by one whose functions record the
 * core's depth at each crypto call, call the backend, and paint over what
 * the backend used; what the core alone touched stays. The core-only
 * figure includes the meter's own crypto call frame (at most `frame`
 * bytes, printed): an upper bound.
 *
 * The heap the same way: calloc and free are wrapped (-Wl,--wrap), and
 * what is allocated during a measured call counts for the core, or for the
 * crypto backend when inside one of its calls; the peaks of bytes in use
 * and of blocks are printed.
 *
 * At exit it prints, per entry point, the calls and both peaks, and the
 * overall peaks (scripts/footprint.sh collects these lines).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "otakey/device.h"

#define PAINT 0xa5a5a5a5u
#define WINDOW 8192u

extern uint32_t __HeapLimit; /* the stack's lowest address (port/mps2/mps2-an386.ld) */
/* startup.c: the lowest stack address seen used before the meter painted over it. */
extern uintptr_t otk_stack_lowest;

enum { E_INIT, E_NEXT, E_POLL, E_RECEIVE, E_PROOF, E_CLOUD, E_CERT, E_CERT_KEY, E_CA_PIN, E_N };
static const char *const names[E_N] = {"otk_device_init",    "otk_device_next",
                                       "otk_device_poll",    "otk_device_receive",
                                       "otk_device_proof",   "otk_device_cloud",
                                       "otk_device_cert",    "otk_device_cert_key",
                                       "otk_device_ca_pin"};

static struct {
    unsigned long calls;
    uint32_t core, total; /* peak depths in bytes */
} stats[E_N];

static int active;            /* inside a measured call */
static uintptr_t call_sp;     /* stack pointer at the measured call */
static uint32_t *win;         /* lowest painted word */
static uintptr_t core_low;    /* lowest address the core alone used in this call */
static uint32_t frame_max;    /* the meter's crypto call frame */
static int overflow, registered;
static int in_crypto;         /* inside a crypto backend call of a measured call */

/* ---- heap: every block carries its size and whom it was counted for ---- */

#define HEAP_MAGIC 0x48a70000u
enum { H_NONE, H_CORE, H_CRYPTO };
static unsigned long heap_now[3], heap_peak[3], blocks_now[3], blocks_peak[3];

void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void __real_free(void *p);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_realloc(void *p, size_t size);
void __wrap_free(void *p);

void *__wrap_calloc(size_t n, size_t size)
{
    uint32_t *h;
    int who = !active ? H_NONE : in_crypto ? H_CRYPTO : H_CORE;
    if (size && n > (SIZE_MAX - 8) / size)
        return NULL;
    h = __real_calloc(1, n * size + 8);
    if (h == NULL)
        return NULL;
    h[0] = (uint32_t)(n * size);
    h[1] = HEAP_MAGIC | (uint32_t)who;
    heap_now[who] += h[0];
    if (heap_now[who] > heap_peak[who])
        heap_peak[who] = heap_now[who];
    if (++blocks_now[who] > blocks_peak[who])
        blocks_peak[who] = blocks_now[who];
    return h + 2;
}

void *__wrap_malloc(size_t size)
{
    return __wrap_calloc(1, size);
}

void *__wrap_realloc(void *p, size_t size)
{
    uint32_t *h = p ? (uint32_t *)p - 2 : NULL;
    void *q;
    if (h == NULL)
        return __wrap_calloc(1, size);
    if ((h[1] & 0xffff0000u) != HEAP_MAGIC)
        return __real_realloc(p, size); /* a block the C library handed out itself */
    q = __wrap_calloc(1, size);
    if (q == NULL)
        return NULL;
    memcpy(q, p, h[0] < size ? h[0] : size);
    __wrap_free(p);
    return q;
}

void __wrap_free(void *p)
{
    uint32_t *h = p ? (uint32_t *)p - 2 : NULL;
    int who;
    if (h == NULL)
        return;
    if ((h[1] & 0xffff0000u) != HEAP_MAGIC) {
        __real_free(p); /* a block the C library handed out itself (strdup, ...) */
        return;
    }
    who = (int)(h[1] & 3u);
    heap_now[who] -= h[0];
    blocks_now[who]--;
    __real_free(h);
}

static inline __attribute__((always_inline)) uintptr_t sp_now(void)
{
    uintptr_t sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    return sp;
}

/* Lowest changed word in [win, top), or top if none. */
static inline __attribute__((always_inline)) uintptr_t low_water(uintptr_t top)
{
    uint32_t *p = win;
    while ((uintptr_t)p < top && *p == PAINT)
        p++;
    if (p == win && (uintptr_t)p < top)
        overflow = 1; /* the window was too small */
    if ((uintptr_t)p < otk_stack_lowest)
        otk_stack_lowest = (uintptr_t)p; /* for the program's own high-water mark */
    return (uintptr_t)p;
}

static inline __attribute__((always_inline)) void paint(uintptr_t from, uintptr_t to)
{
    uint32_t *p;
    for (p = (uint32_t *)from; (uintptr_t)p < to; p++)
        *p = PAINT;
}

static void report(void)
{
    uint32_t core = 0, total = 0;
    int i, deep = 0;
    printf("measured device stack (painted; bytes below the caller's stack pointer):\n");
    printf("  %-20s %8s %10s %12s\n", "entry point", "calls", "core only", "with crypto");
    for (i = 0; i < E_N; i++) {
        if (!stats[i].calls)
            continue;
        printf("  %-20s %8lu %10lu %12lu\n", names[i], stats[i].calls,
               (unsigned long)stats[i].core, (unsigned long)stats[i].total);
        if (stats[i].core > core)
            core = stats[i].core;
        if (stats[i].total > total) {
            total = stats[i].total;
            deep = i;
        }
    }
    printf("device stack peak: %lu bytes core only (of which <= %lu the meter's crypto call "
           "frame), %lu bytes with crypto (deepest: %s)%s\n",
           (unsigned long)core, (unsigned long)frame_max, (unsigned long)total, names[deep],
           overflow ? "; WINDOW EXCEEDED" : "");
    printf("device heap peak: %lu bytes in %lu blocks core only, %lu bytes in %lu blocks in the "
           "crypto backend\n",
           heap_peak[H_CORE], blocks_peak[H_CORE], heap_peak[H_CRYPTO], blocks_peak[H_CRYPTO]);
}

/* Before a measured call: paint below the caller's stack pointer. */
static inline __attribute__((always_inline)) int begin(uintptr_t sp)
{
    uintptr_t bottom;
    int was;
    if (active)
        return 0;
    if (!registered) {
        registered = 1;
        atexit(report);
    }
    bottom = (uintptr_t)&__HeapLimit;
    if (sp - bottom > WINDOW)
        bottom = sp - WINDOW;
    win = (uint32_t *)bottom;
    was = overflow;
    (void)low_water(sp); /* what the program used there before, kept for startup.c */
    overflow = was;
    paint(bottom, sp);
    call_sp = sp;
    core_low = sp;
    active = 1;
    return 1;
}

static inline __attribute__((always_inline)) void end(int e, int measured)
{
    uintptr_t low;
    if (!measured)
        return;
    low = low_water(call_sp);
    if (low < core_low)
        core_low = low;
    stats[e].calls++;
    if (call_sp - core_low > stats[e].core)
        stats[e].core = (uint32_t)(call_sp - core_low);
    active = 0;
}

/* The peak of the whole call, crypto included, is kept across repaints. */
static uint32_t total_now;

static inline __attribute__((always_inline)) void total_at(uintptr_t low)
{
    if (call_sp - low > total_now)
        total_now = (uint32_t)(call_sp - low);
}

/* ---- the crypto table the core sees ---- */

#define POOL 8
static struct {
    const otk_crypto *orig_at;
    otk_crypto orig, shown;
} pool[POOL];
static unsigned next_slot;

static inline __attribute__((always_inline)) const otk_crypto *orig_of(void *ctx)
{
    unsigned i;
    for (i = 0; i < POOL; i++)
        if (pool[i].orig_at != NULL && pool[i].orig.ctx == ctx)
            return &pool[i].orig;
    abort(); /* a table the meter did not install */
}

/* Around a crypto call: the core's depth so far, then the backend's use painted over. */
#define PRE()                                                                                   \
    uintptr_t sp_ = sp_now(), cfa_ = (uintptr_t)__builtin_dwarf_cfa(), l_;                     \
    in_crypto++;                                                                               \
    if (active) {                                                                              \
        l_ = low_water(sp_);                                                                   \
        if (l_ < core_low)                                                                     \
            core_low = l_;                                                                     \
        if (sp_ < core_low)                                                                    \
            core_low = sp_; /* the meter's frame: counted, at most frame_max */                \
        if (cfa_ - sp_ > frame_max)                                                            \
            frame_max = (uint32_t)(cfa_ - sp_);                                                \
    }
#define POST()                                                                                 \
    in_crypto--;                                                                               \
    if (active) {                                                                              \
        l_ = low_water(sp_);                                                                   \
        total_at(l_);                                                                          \
        paint(l_, sp_);                                                                        \
    }

static otk_status m_random(void *ctx, uint8_t *out, size_t len)
{
    otk_status st;
    PRE();
    st = orig_of(ctx)->random(ctx, out, len);
    POST();
    return st;
}

static otk_status m_sha256(void *ctx, const otk_iov *parts, size_t n, uint8_t out[32])
{
    otk_status st;
    PRE();
    st = orig_of(ctx)->sha256(ctx, parts, n, out);
    POST();
    return st;
}

static otk_status m_hmac(void *ctx, const uint8_t *key, size_t key_len, const otk_iov *parts,
                         size_t n, uint8_t out[32])
{
    otk_status st;
    PRE();
    st = orig_of(ctx)->hmac_sha256(ctx, key, key_len, parts, n, out);
    POST();
    return st;
}

static otk_status m_extract(void *ctx, const uint8_t *salt, size_t salt_len, const uint8_t *ikm,
                            size_t ikm_len, uint8_t prk[32])
{
    otk_status st;
    PRE();
    st = orig_of(ctx)->hkdf_extract(ctx, salt, salt_len, ikm, ikm_len, prk);
    POST();
    return st;
}

static otk_status m_expand(void *ctx, const uint8_t prk[32], const uint8_t *info, size_t info_len,
                           uint8_t *out, size_t out_len)
{
    otk_status st;
    PRE();
    st = orig_of(ctx)->hkdf_expand(ctx, prk, info, info_len, out, out_len);
    POST();
    return st;
}

static otk_status m_ccm_enc(void *ctx, const uint8_t key[16], const uint8_t iv[13],
                            const uint8_t *aad, size_t aad_len, const uint8_t *pt, size_t len,
                            uint8_t *ct, uint8_t tag[16])
{
    otk_status st;
    PRE();
    st = orig_of(ctx)->ccm_encrypt(ctx, key, iv, aad, aad_len, pt, len, ct, tag);
    POST();
    return st;
}

static otk_status m_ccm_dec(void *ctx, const uint8_t key[16], const uint8_t iv[13],
                            const uint8_t *aad, size_t aad_len, const uint8_t *ct, size_t len,
                            const uint8_t tag[16], uint8_t *pt)
{
    otk_status st;
    PRE();
    st = orig_of(ctx)->ccm_decrypt(ctx, key, iv, aad, aad_len, ct, len, tag, pt);
    POST();
    return st;
}

static otk_status m_keygen(void *ctx, uint8_t purpose, uint8_t priv[32], uint8_t pub[64])
{
    otk_status st;
    PRE();
    st = orig_of(ctx)->ec_keygen(ctx, purpose, priv, pub);
    POST();
    return st;
}

static void m_destroy(void *ctx, uint8_t purpose)
{
    PRE();
    orig_of(ctx)->key_destroy(ctx, purpose);
    POST();
}

static otk_status m_ak_import(void *ctx, uint8_t purpose, uint8_t ak[32])
{
    otk_status st;
    PRE();
    st = orig_of(ctx)->ak_import(ctx, purpose, ak);
    POST();
    return st;
}

static otk_status m_ecdh(void *ctx, const uint8_t priv[32], const uint8_t peer[64],
                         uint8_t shared[32])
{
    otk_status st;
    PRE();
    st = orig_of(ctx)->ecdh(ctx, priv, peer, shared);
    POST();
    return st;
}

static otk_status m_sign(void *ctx, const uint8_t priv[32], const uint8_t digest[32],
                         uint8_t sig[64])
{
    otk_status st;
    PRE();
    st = orig_of(ctx)->ecdsa_sign(ctx, priv, digest, sig);
    POST();
    return st;
}

static otk_status m_verify(void *ctx, const uint8_t pub[64], const uint8_t digest[32],
                           const uint8_t sig[64])
{
    otk_status st;
    PRE();
    st = orig_of(ctx)->ecdsa_verify(ctx, pub, digest, sig);
    POST();
    return st;
}

/* The port's crypto table, seen through the meter's (the caller's port is changed). */
static void install(const otk_port *port)
{
    unsigned i;
    otk_crypto *shown;
    if (port == NULL || port->crypto == NULL)
        return;
    for (i = 0; i < POOL; i++)
        if (port->crypto == &pool[i].shown)
            return; /* already */
    for (i = 0; i < POOL && pool[i].orig_at != port->crypto; i++)
        ;
    if (i == POOL)
        i = next_slot++ % POOL;
    pool[i].orig_at = port->crypto;
    pool[i].orig = *port->crypto;
    shown = &pool[i].shown;
    *shown = *port->crypto; /* members the meter does not know pass through */
    shown->random = m_random;
    shown->sha256 = m_sha256;
    shown->hmac_sha256 = m_hmac;
    shown->hkdf_extract = m_extract;
    shown->hkdf_expand = m_expand;
    shown->ccm_encrypt = m_ccm_enc;
    shown->ccm_decrypt = m_ccm_dec;
    shown->ec_keygen = m_keygen;
    shown->key_destroy = m_destroy;
    shown->ak_import = m_ak_import;
    shown->ecdh = m_ecdh;
    shown->ecdsa_sign = m_sign;
    shown->ecdsa_verify = m_verify;
    ((otk_port *)(uintptr_t)port)->crypto = shown;
}

/* ---- the wrapped entry points ---- */

#define MEASURED(e, call)                                                                      \
    otk_status st;                                                                             \
    int m = begin(sp_now());                                                                   \
    if (m)                                                                                     \
        total_now = 0;                                                                         \
    st = call;                                                                                 \
    if (m) {                                                                                   \
        total_at(low_water(call_sp));                                                          \
        end(e, 1);                                                                             \
        if (total_now > stats[e].total)                                                        \
            stats[e].total = total_now;                                                        \
        if (stats[e].core > stats[e].total)                                                    \
            stats[e].total = stats[e].core;                                                    \
    }                                                                                          \
    return st

otk_status __real_otk_device_init(otk_device *d, const otk_port *port,
                                  const otk_device_config *cfg);
otk_status __real_otk_device_next(otk_device *d, uint8_t *out, size_t out_size, size_t *out_len);
otk_status __real_otk_device_poll(otk_device *d);
otk_status __real_otk_device_receive(otk_device *d, const uint8_t *in, size_t in_len,
                                     uint8_t *out, size_t out_size, size_t *out_len);
otk_status __real_otk_device_proof(otk_device *d, otk_proof result, uint8_t *out,
                                   size_t out_size, size_t *out_len);
otk_status __real_otk_device_cloud(const otk_device *d, int which, otk_cloud *out);
otk_status __real_otk_device_cert(const otk_device *d, int which, uint8_t *der, size_t der_size,
                                  size_t *der_len);
otk_status __real_otk_device_cert_key(const otk_device *d, int which,
                                      uint8_t priv[OTK_PRIV_LEN]);
otk_status __real_otk_device_ca_pin(const otk_device *d, int which, uint8_t pin[OTK_PIN_LEN]);

otk_status __wrap_otk_device_init(otk_device *d, const otk_port *port,
                                  const otk_device_config *cfg);
otk_status __wrap_otk_device_next(otk_device *d, uint8_t *out, size_t out_size, size_t *out_len);
otk_status __wrap_otk_device_poll(otk_device *d);
otk_status __wrap_otk_device_receive(otk_device *d, const uint8_t *in, size_t in_len,
                                     uint8_t *out, size_t out_size, size_t *out_len);
otk_status __wrap_otk_device_proof(otk_device *d, otk_proof result, uint8_t *out,
                                   size_t out_size, size_t *out_len);
otk_status __wrap_otk_device_cloud(const otk_device *d, int which, otk_cloud *out);
otk_status __wrap_otk_device_cert(const otk_device *d, int which, uint8_t *der, size_t der_size,
                                  size_t *der_len);
otk_status __wrap_otk_device_cert_key(const otk_device *d, int which,
                                      uint8_t priv[OTK_PRIV_LEN]);
otk_status __wrap_otk_device_ca_pin(const otk_device *d, int which, uint8_t pin[OTK_PIN_LEN]);

otk_status __wrap_otk_device_init(otk_device *d, const otk_port *port,
                                  const otk_device_config *cfg)
{
    install(port);
    {
        MEASURED(E_INIT, __real_otk_device_init(d, port, cfg));
    }
}

otk_status __wrap_otk_device_next(otk_device *d, uint8_t *out, size_t out_size, size_t *out_len)
{
    MEASURED(E_NEXT, __real_otk_device_next(d, out, out_size, out_len));
}

otk_status __wrap_otk_device_poll(otk_device *d)
{
    MEASURED(E_POLL, __real_otk_device_poll(d));
}

otk_status __wrap_otk_device_receive(otk_device *d, const uint8_t *in, size_t in_len,
                                     uint8_t *out, size_t out_size, size_t *out_len)
{
    MEASURED(E_RECEIVE, __real_otk_device_receive(d, in, in_len, out, out_size, out_len));
}

otk_status __wrap_otk_device_proof(otk_device *d, otk_proof result, uint8_t *out,
                                   size_t out_size, size_t *out_len)
{
    MEASURED(E_PROOF, __real_otk_device_proof(d, result, out, out_size, out_len));
}

otk_status __wrap_otk_device_cloud(const otk_device *d, int which, otk_cloud *out)
{
    MEASURED(E_CLOUD, __real_otk_device_cloud(d, which, out));
}

otk_status __wrap_otk_device_cert(const otk_device *d, int which, uint8_t *der, size_t der_size,
                                  size_t *der_len)
{
    MEASURED(E_CERT, __real_otk_device_cert(d, which, der, der_size, der_len));
}

otk_status __wrap_otk_device_cert_key(const otk_device *d, int which,
                                      uint8_t priv[OTK_PRIV_LEN])
{
    MEASURED(E_CERT_KEY, __real_otk_device_cert_key(d, which, priv));
}

otk_status __wrap_otk_device_ca_pin(const otk_device *d, int which, uint8_t pin[OTK_PIN_LEN])
{
    MEASURED(E_CA_PIN, __real_otk_device_ca_pin(d, which, pin));
}
