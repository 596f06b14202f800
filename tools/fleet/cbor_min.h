/*
 * cbor_min.h: the subset of CBOR (RFC 8949) that AWS IoT OTA's stream
 * messages use: one map of short text keys whose values are unsigned
 * integers, byte strings or text strings, definite lengths only. Private
 * to tools/fleet (fw.c).
 */
#ifndef OTK_FLEET_CBOR_MIN_H
#define OTK_FLEET_CBOR_MIN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum { CB_UINT = 0, CB_BYTES = 2, CB_TEXT = 3, CB_MAP = 5 };

/* Encoder over a caller's buffer; err is set (and sticks) when it is short. */
typedef struct cb_buf {
    uint8_t *p;
    size_t n, cap;
    int err;
} cb_buf;

static inline void cb_init(cb_buf *b, uint8_t *p, size_t cap)
{
    b->p = p;
    b->n = 0;
    b->cap = cap;
    b->err = 0;
}

static inline void cb_head(cb_buf *b, unsigned major, uint64_t v)
{
    uint8_t h[9];
    size_t k, len;
    if (v < 24) {
        h[0] = (uint8_t)(major << 5 | v);
        len = 1;
    } else {
        /* 1, 2, 4 or 8 bytes of argument, big-endian (additional info 24..27). */
        unsigned ai = v <= 0xff ? 24 : v <= 0xffff ? 25 : v <= 0xffffffffu ? 26 : 27;
        len = (size_t)1 + ((size_t)1 << (ai - 24));
        h[0] = (uint8_t)(major << 5 | ai);
        for (k = 1; k < len; k++)
            h[k] = (uint8_t)(v >> (8 * (len - 1 - k)));
    }
    if (b->err || b->cap - b->n < len) {
        b->err = 1;
        return;
    }
    memcpy(b->p + b->n, h, len);
    b->n += len;
}

static inline void cb_raw(cb_buf *b, const void *p, size_t n)
{
    if (b->err || b->cap - b->n < n) {
        b->err = 1;
        return;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

static inline void cb_map(cb_buf *b, size_t pairs)
{
    cb_head(b, CB_MAP, pairs);
}

static inline void cb_uint(cb_buf *b, uint64_t v)
{
    cb_head(b, CB_UINT, v);
}

static inline void cb_bytes(cb_buf *b, const void *p, size_t n)
{
    cb_head(b, CB_BYTES, n);
    cb_raw(b, p, n);
}

static inline void cb_text(cb_buf *b, const char *s)
{
    size_t n = strlen(s);
    cb_head(b, CB_TEXT, n);
    cb_raw(b, s, n);
}

/* One decoded pair: key (text, at most 8 bytes), kind, and the value
 * (u for CB_UINT; ptr/len, pointing into the message, otherwise). */
typedef struct cb_map_entry {
    char key[9];
    unsigned kind;
    uint64_t u;
    const uint8_t *ptr;
    size_t len;
} cb_map_entry;

/* Reads one head at *off; -1 when short, indefinite or reserved. */
static inline int cb_read_head(const uint8_t *p, size_t n, size_t *off, unsigned *major, uint64_t *v)
{
    unsigned ai;
    size_t k, len;
    if (*off >= n)
        return -1;
    *major = p[*off] >> 5;
    ai = p[*off] & 31u;
    (*off)++;
    if (ai < 24) {
        *v = ai;
        return 0;
    }
    if (ai > 27)
        return -1;
    len = (size_t)1 << (ai - 24);
    if (n - *off < len)
        return -1;
    for (*v = 0, k = 0; k < len; k++)
        *v = *v << 8 | p[*off + k];
    *off += len;
    return 0;
}

/*
 * Parses a message that is exactly one map into at most max entries.
 * Returns the number of entries, or -1 for anything else (trailing bytes,
 * other value types, keys longer than 8, more than max pairs).
 */
static inline int cb_parse_map(const uint8_t *p, size_t n, cb_map_entry *e, int max)
{
    size_t off = 0;
    unsigned major;
    uint64_t pairs, v, i;
    if (cb_read_head(p, n, &off, &major, &pairs) != 0 || major != CB_MAP || pairs > (uint64_t)max)
        return -1;
    for (i = 0; i < pairs; i++) {
        cb_map_entry *x = &e[i];
        if (cb_read_head(p, n, &off, &major, &v) != 0 || major != CB_TEXT || v > 8 || n - off < v)
            return -1;
        memcpy(x->key, p + off, (size_t)v);
        x->key[v] = '\0';
        off += (size_t)v;
        if (cb_read_head(p, n, &off, &major, &v) != 0)
            return -1;
        x->kind = major;
        x->u = v;
        x->ptr = NULL;
        x->len = 0;
        if (major == CB_BYTES || major == CB_TEXT) {
            if (n - off < v)
                return -1;
            x->ptr = p + off;
            x->len = (size_t)v;
            off += (size_t)v;
        } else if (major != CB_UINT) {
            return -1;
        }
    }
    return off == n ? (int)pairs : -1;
}

/* The entry of key with that kind, or NULL. */
static inline const cb_map_entry *cb_find(const cb_map_entry *e, int n, const char *key, unsigned kind)
{
    int i;
    for (i = 0; i < n; i++)
        if (e[i].kind == kind && strcmp(e[i].key, key) == 0)
            return &e[i];
    return NULL;
}

#endif
