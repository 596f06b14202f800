/*
 * A/B key store (docs/protocol.md §6). The only writes are: erase the
 * inactive slot, program one record into it, and program its commit
 * marker. The active slot is never written while it is active, so a power
 * cut at any point leaves either the old set active or, once the marker
 * is fully programmed, the new one.
 */
#include "internal.h"

#define REC_MAGIC 0x4f544b53u /* "OTKS" */
#define REC_FORMAT 1u
#define REC_HDR_LEN 12u       /* magic, format, reserved, body length, version */
#define REC_MAX (REC_HDR_LEN + OTK_KEYSET_MAX_LEN + 4u)
#define MARKER_MAX 16u

uint32_t otk_crc32(uint32_t crc, const uint8_t *p, size_t n)
{
    /* Bitwise: a table would cost 1 KiB of flash on the device. */
    int k;
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static uint32_t slot_size(const otk_port *p)
{
    return p->flash_size / 2u;
}

static uint32_t marker_len(const otk_port *p)
{
    return p->prog_size < 4u ? 4u : p->prog_size;
}

static uint32_t round_up(uint32_t n, uint32_t unit)
{
    return (n + unit - 1u) / unit * unit;
}

static otk_status check_geometry(const otk_port *p)
{
    uint32_t s;
    if (p == NULL || p->version != OTK_PORT_VERSION || p->flash_read == NULL ||
        p->flash_prog == NULL || p->flash_erase == NULL || p->sector_size == 0)
        return OTK_ERR_INVALID_ARGUMENT;
    if (p->prog_size == 0 || p->prog_size > MARKER_MAX || (p->prog_size & (p->prog_size - 1u)))
        return OTK_ERR_INVALID_ARGUMENT;
    s = slot_size(p);
    if (p->flash_size % 2u || s < OTK_SLOT_MIN || s % p->sector_size)
        return OTK_ERR_INVALID_ARGUMENT;
    return OTK_OK;
}

/*
 * Reads and verifies slot i. Returns OTK_OK with *set and *committed,
 * OTK_ERR_CORRUPT when the slot holds no valid record, OTK_ERR_STORAGE
 * when the flash read fails.
 */
static otk_status read_slot(const otk_port *p, uint8_t i, otk_keyset *set, int *committed)
{
    uint8_t buf[MARKER_MAX + REC_MAX];
    uint32_t base = i * slot_size(p), m = marker_len(p), body_len, j;
    otk_status st = OTK_ERR_CORRUPT;
    uint8_t *rec = buf + m;
    if (p->flash_read(p->ctx, base, buf, m + REC_HDR_LEN) != 0)
        return OTK_ERR_STORAGE;
    body_len = otk_get_u16(rec + 6);
    if (otk_get_u32(rec) != REC_MAGIC || rec[4] != REC_FORMAT || rec[5] != 0 ||
        body_len < OTK_KEYSET_FIXED_LEN || body_len > OTK_KEYSET_MAX_LEN ||
        otk_get_u32(rec + 8) == 0)
        goto out;
    if (p->flash_read(p->ctx, base + m + REC_HDR_LEN, rec + REC_HDR_LEN, body_len + 4u) != 0) {
        st = OTK_ERR_STORAGE;
        goto out;
    }
    if (otk_crc32(0, rec, REC_HDR_LEN + body_len) != otk_get_u32(rec + REC_HDR_LEN + body_len))
        goto out;
    if (otk_keyset_decode(rec + REC_HDR_LEN, body_len, set) != OTK_OK)
        goto out;
    set->version = otk_get_u32(rec + 8);
    /* Committed only when every marker bit is cleared; a torn marker is not. */
    *committed = 1;
    for (j = 0; j < m; j++)
        if (buf[j] != 0)
            *committed = 0;
    st = OTK_OK;
out:
    otk_wipe(buf, sizeof buf);
    return st;
}

otk_status otk_ks_mount(otk_keystore *ks, const otk_port *port)
{
    otk_keyset set;
    uint8_t i;
    int committed = 0;
    otk_status st;
    uint32_t ver[2] = {0, 0};
    int com[2] = {0, 0};
    if (ks == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    memset(ks, 0, sizeof *ks);
    OTK_TRY(check_geometry(port));
    for (i = 0; i < 2; i++) {
        st = read_slot(port, i, &set, &committed);
        if (st == OTK_OK) {
            ver[i] = set.version;
            com[i] = committed;
        }
        otk_wipe(&set, sizeof set);
        if (st == OTK_ERR_STORAGE)
            return st;
        if (st != OTK_OK)
            ks->invalid |= (uint8_t)(1u << i);
    }
    ks->port = port;
    ks->active = ks->staged = OTK_SLOT_NONE;
    for (i = 0; i < 2; i++)
        if (com[i] && (ks->active == OTK_SLOT_NONE || ver[i] > ks->active_version)) {
            ks->active = i;
            ks->active_version = ver[i];
        }
    for (i = 0; i < 2; i++)
        if (ver[i] && !com[i] && i != ks->active && ver[i] > ks->active_version) {
            ks->staged = i;
            ks->staged_version = ver[i];
        }
    ks->mounted = 1;
    return OTK_OK;
}

static otk_status erase_slot(const otk_keystore *ks, uint8_t i)
{
    const otk_port *p = ks->port;
    uint32_t off;
    for (off = 0; off < slot_size(p); off += p->sector_size)
        if (p->flash_erase(p->ctx, i * slot_size(p) + off) != 0)
            return OTK_ERR_STORAGE;
    return OTK_OK;
}

otk_status otk_ks_stage(otk_keystore *ks, const otk_keyset *set)
{
    uint8_t rec[REC_MAX + MARKER_MAX];
    const otk_port *p;
    otk_keyset check;
    size_t body_len = 0;
    uint32_t len;
    uint8_t slot;
    int committed = 0;
    otk_status st;
    if (ks == NULL || set == NULL || !ks->mounted)
        return OTK_ERR_INVALID_ARGUMENT;
    p = ks->port;
    if (set->version == 0 || (ks->active != OTK_SLOT_NONE && set->version <= ks->active_version))
        return OTK_ERR_ROLLBACK;
    memset(rec, 0xFF, sizeof rec);
    otk_put_u32(rec, REC_MAGIC);
    rec[4] = REC_FORMAT;
    rec[5] = 0;
    otk_put_u32(rec + 8, set->version);
    st = otk_keyset_encode(set, rec + REC_HDR_LEN, OTK_KEYSET_MAX_LEN, &body_len);
    if (st != OTK_OK)
        goto out;
    otk_put_u16(rec + 6, (uint16_t)body_len);
    otk_put_u32(rec + REC_HDR_LEN + body_len, otk_crc32(0, rec, REC_HDR_LEN + body_len));
    len = round_up((uint32_t)(REC_HDR_LEN + body_len + 4u), p->prog_size);

    slot = ks->active == OTK_SLOT_NONE ? (ks->staged == OTK_SLOT_NONE ? 0 : ks->staged)
                                       : (uint8_t)(1u - ks->active);
    /* From here the slot's old content is gone, whatever happens next. */
    ks->staged = OTK_SLOT_NONE;
    ks->staged_version = 0;
    st = erase_slot(ks, slot);
    if (st != OTK_OK)
        goto out;
    if (p->flash_prog(p->ctx, slot * slot_size(p) + marker_len(p), rec, len) != 0) {
        st = OTK_ERR_STORAGE;
        goto out;
    }
    /* Read back: a record that does not verify is never reported staged. */
    st = read_slot(p, slot, &check, &committed);
    if (st == OTK_OK && (check.version != set->version || committed ||
                         otk_ct_compare(check.ak, set->ak, OTK_AK_LEN) != 0))
        st = OTK_ERR_STORAGE;
    else if (st == OTK_ERR_CORRUPT)
        st = OTK_ERR_STORAGE;
    otk_wipe(&check, sizeof check);
    if (st == OTK_OK) {
        ks->staged = slot;
        ks->staged_version = set->version;
    }
out:
    otk_wipe(rec, sizeof rec);
    return st;
}

otk_status otk_ks_commit(otk_keystore *ks, uint32_t version)
{
    static const uint8_t zeros[MARKER_MAX] = {0};
    uint8_t back[MARKER_MAX];
    const otk_port *p;
    uint32_t base, m, j;
    if (ks == NULL || !ks->mounted)
        return OTK_ERR_INVALID_ARGUMENT;
    if (ks->active != OTK_SLOT_NONE && version == ks->active_version && ks->staged == OTK_SLOT_NONE)
        return OTK_OK;
    if (ks->staged == OTK_SLOT_NONE || ks->staged_version != version)
        return OTK_ERR_BAD_STATE;
    p = ks->port;
    base = ks->staged * slot_size(p);
    m = marker_len(p);
    /* Programming zeros over a torn marker completes it (NOR clears bits). */
    if (p->flash_prog(p->ctx, base, zeros, m) != 0 || p->flash_read(p->ctx, base, back, m) != 0)
        return OTK_ERR_STORAGE;
    for (j = 0; j < m; j++)
        if (back[j] != 0)
            return OTK_ERR_STORAGE;
    ks->active = ks->staged;
    ks->active_version = ks->staged_version;
    ks->staged = OTK_SLOT_NONE;
    ks->staged_version = 0;
    return OTK_OK;
}

otk_status otk_ks_discard(otk_keystore *ks, uint32_t version)
{
    uint8_t slot;
    if (ks == NULL || !ks->mounted)
        return OTK_ERR_INVALID_ARGUMENT;
    if (ks->staged == OTK_SLOT_NONE)
        return OTK_OK;
    if (ks->staged_version != version)
        return OTK_ERR_BAD_STATE;
    slot = ks->staged;
    ks->staged = OTK_SLOT_NONE;
    ks->staged_version = 0;
    return erase_slot(ks, slot);
}

otk_status otk_ks_load(const otk_keystore *ks, int staged, otk_keyset *out)
{
    uint8_t slot;
    uint32_t want;
    int committed = 0;
    otk_status st;
    if (ks == NULL || out == NULL || !ks->mounted)
        return OTK_ERR_INVALID_ARGUMENT;
    slot = staged ? ks->staged : ks->active;
    want = staged ? ks->staged_version : ks->active_version;
    if (slot == OTK_SLOT_NONE)
        return OTK_ERR_NO_KEYSET;
    st = read_slot(ks->port, slot, out, &committed);
    if (st == OTK_OK && out->version != want)
        st = OTK_ERR_CORRUPT;
    if (st != OTK_OK)
        otk_wipe(out, sizeof *out);
    return st;
}

uint32_t otk_ks_active_version(const otk_keystore *ks)
{
    return ks && ks->active != OTK_SLOT_NONE ? ks->active_version : 0;
}

uint32_t otk_ks_staged_version(const otk_keystore *ks)
{
    return ks && ks->staged != OTK_SLOT_NONE ? ks->staged_version : 0;
}
