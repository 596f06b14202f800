/* Which devices sleep (presence.h): an open-addressing table by device id. */
#include "presence.h"

#include <stdlib.h>
#include <string.h>

#include "otakey/common.h"

typedef struct slot {
    uint8_t id[16];
    uint64_t conn;  /* the connection last admitted (or that last ended) */
    uint8_t used, asleep;
} slot;

struct otk_presence {
    slot *tab;
    size_t cap, count, sleeping;
};

otk_presence *otk_presence_new(void)
{
    otk_presence *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->cap = 1024;
    p->tab = calloc(p->cap, sizeof *p->tab);
    if (p->tab == NULL) {
        free(p);
        return NULL;
    }
    return p;
}

void otk_presence_free(otk_presence *p)
{
    if (p) {
        free(p->tab);
        free(p);
    }
}

void otk_presence_reset(otk_presence *p)
{
    if (p) {
        memset(p->tab, 0, p->cap * sizeof *p->tab);
        p->count = p->sleeping = 0;
    }
}

static size_t home(const otk_presence *p, const uint8_t id[16])
{
    uint64_t h;
    memcpy(&h, id + 8, sizeof h); /* device ids are serials: mix them */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return (size_t)h & (p->cap - 1);
}

static slot *find(const otk_presence *p, const uint8_t id[16])
{
    size_t i = home(p, id);
    while (p->tab[i].used && memcmp(p->tab[i].id, id, 16) != 0)
        i = (i + 1) & (p->cap - 1);
    return &p->tab[i];
}

static int grow(otk_presence *p)
{
    slot *old = p->tab;
    size_t i, n = p->cap;
    slot *t = calloc(2 * n, sizeof *t);
    if (t == NULL)
        return -1;
    p->tab = t;
    p->cap = 2 * n;
    for (i = 0; i < n; i++)
        if (old[i].used)
            *find(p, old[i].id) = old[i];
    free(old);
    return 0;
}

int otk_presence_apply(otk_presence *p, const char *msg, size_t len)
{
    char buf[64], hex[33], connhex[17];
    uint8_t id[16], c[8];
    uint64_t conn = 0;
    size_t i;
    slot *s;
    int up;
    /* "U <32 hex> <16 hex>" exactly */
    if (p == NULL || len != 1 + 1 + 32 + 1 + 16 || (msg[0] != '0' && msg[0] != '1') ||
        msg[1] != ' ' || msg[34] != ' ')
        return -1;
    memcpy(buf, msg, len);
    buf[len] = '\0';
    memcpy(hex, buf + 2, 32);
    hex[32] = '\0';
    memcpy(connhex, buf + 35, 16);
    connhex[16] = '\0';
    if (otk_hex_decode(hex, id, 16) != 0 || otk_hex_decode(connhex, c, 8) != 0)
        return -1;
    for (i = 0; i < 8; i++)
        conn = conn << 8 | c[i];
    up = msg[0] == '1';
    if ((p->count + 1) * 2 > p->cap && grow(p) != 0)
        return -1;
    s = find(p, id);
    if (!s->used) {
        memcpy(s->id, id, 16);
        s->used = 1;
        p->count++;
    } else if (!up && s->conn != conn) {
        return 0; /* a connection a newer one took over: the device stays */
    }
    if (s->asleep != !up)
        p->sleeping += up ? (size_t)-1 : 1;
    s->asleep = (uint8_t)!up;
    s->conn = conn;
    return 0;
}

int otk_presence_asleep(const otk_presence *p, const uint8_t id[16])
{
    const slot *s = p ? find(p, id) : NULL;
    return s && s->used && s->asleep;
}

size_t otk_presence_known(const otk_presence *p)
{
    return p ? p->count : 0;
}

size_t otk_presence_sleeping(const otk_presence *p)
{
    return p ? p->sleeping : 0;
}
