/* Status names, secret hygiene and byte-order helpers. */
#include "internal.h"

const char *otk_strerror(otk_status st)
{
    switch (st) {
    case OTK_OK: return "OK";
    case OTK_ERR_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case OTK_ERR_BAD_STATE: return "BAD_STATE";
    case OTK_ERR_BUFFER_TOO_SMALL: return "BUFFER_TOO_SMALL";
    case OTK_ERR_BAD_MAC: return "BAD_MAC";
    case OTK_ERR_BAD_SIGNATURE: return "BAD_SIGNATURE";
    case OTK_ERR_REPLAY: return "REPLAY";
    case OTK_ERR_ROLLBACK: return "ROLLBACK";
    case OTK_ERR_CORRUPT: return "CORRUPT";
    case OTK_ERR_STORAGE: return "STORAGE";
    case OTK_ERR_CRYPTO: return "CRYPTO";
    case OTK_ERR_TRUNCATED: return "TRUNCATED";
    case OTK_ERR_TRAILING: return "TRAILING";
    case OTK_ERR_BAD_LENGTH: return "BAD_LENGTH";
    case OTK_ERR_UNKNOWN_TYPE: return "UNKNOWN_TYPE";
    case OTK_ERR_UNKNOWN_VERSION: return "UNKNOWN_VERSION";
    case OTK_ERR_UNKNOWN_DEVICE: return "UNKNOWN_DEVICE";
    case OTK_ERR_UNKNOWN_BATCH: return "UNKNOWN_BATCH";
    case OTK_ERR_ALREADY_CLAIMED: return "ALREADY_CLAIMED";
    case OTK_ERR_REVOKED: return "REVOKED";
    case OTK_ERR_NOT_FOUND: return "NOT_FOUND";
    case OTK_ERR_CLOUD: return "CLOUD";
    case OTK_ERR_RATE_LIMITED: return "RATE_LIMITED";
    case OTK_ERR_STALE: return "STALE";
    case OTK_ERR_WRONG_DEVICE: return "WRONG_DEVICE";
    case OTK_ERR_PROOF_FAILED: return "PROOF_FAILED";
    case OTK_ERR_INTERNAL: return "INTERNAL";
    case OTK_ERR_NO_KEYSET: return "NO_KEYSET";
    case OTK_ERR_UNEXPECTED: return "UNEXPECTED";
    case OTK_ERR_BAD_VALUE: return "BAD_VALUE";
    case OTK_ERR_BUSY: return "BUSY";
    default: return "UNKNOWN_STATUS";
    }
}

void otk_wipe(void *p, size_t n)
{
#if defined(__GNUC__) || defined(__clang__)
    /* memset, then an empty asm that may read the bytes: the compiler must
     * keep the stores. (The byte loop below was ~5 % of the agent core's
     * instructions: its callers wipe whole message buffers.) */
    if (n == 0)
        return;
    memset(p, 0, n);
    __asm__ __volatile__("" : : "r"(p) : "memory");
#else
    /* A volatile pointer keeps the stores from being optimised away. */
    volatile uint8_t *v = (volatile uint8_t *)p;
    while (n--)
        *v++ = 0;
#endif
}

int otk_ct_compare(const void *a, const void *b, size_t n)
{
    const uint8_t *x = (const uint8_t *)a, *y = (const uint8_t *)b;
    uint8_t d = 0;
    size_t i;
    for (i = 0; i < n; i++)
        d |= (uint8_t)(x[i] ^ y[i]);
    return d;
}

void otk_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

void otk_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

uint16_t otk_get_u16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

uint32_t otk_get_u32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

void otk_hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;
    for (i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int otk_hex_decode(const char *s, uint8_t *out, size_t n)
{
    size_t i;
    if (s == NULL || strlen(s) != 2 * n)
        return -1;
    for (i = 0; i < n; i++) {
        int hi = nibble(s[2 * i]), lo = nibble(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}
