/*
 * A/B key store (docs/protocol.md §6). The only writes are: erase the
 * inactive slot, program one record into it, and program one of its two
 * commit markers (the first unit of the slot, or the last one when the
 * first was torn). The active slot is never written while it is active,
 * so a power cut at any point leaves either the old set active or, once a
 * marker is fully programmed, the new one. No unit is programmed twice
 * between erases unless the port allows it (OTK_FLASH_REPROGRAM).
 */
#include "internal.h"

#define REC_MAGIC 0x4f544b53u /* "OTKS" */
#define REC_FORMAT 1u
#define REC_FORMAT2 2u        /* a certificate set (docs/protocol.md §11.4) */
#define REC_HDR_LEN 12u       /* magic, format, reserved, body length, version */
#define REC_MAX (REC_HDR_LEN + OTK_KEYSET_MAX_LEN + 4u)
#define MARKER_MAX 32u
/* A certificate body up to the certificate: kind, AK, id, port, flags, host, cl. */
#define CERT_HEAD_MAX (1u + OTK_AK_LEN + 7u + 1u + OTK_HOST_MAX + 2u)
#define CERT_BODY_MIN (1u + OTK_AK_LEN + 7u + 1u + 1u + 2u + 1u + OTK_PIN_LEN + OTK_PRIV_LEN)

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

/* The value of an erased byte. */
static uint8_t erased(const otk_port *p)
{
    return (p->flash_flags & OTK_FLASH_ERASED_ZERO) ? 0x00u : 0xFFu;
}

/* Where slot i's markers lie: the slot's first unit, and its last. */
static uint32_t marker_off(const otk_port *p, uint8_t i, int second)
{
    return i * slot_size(p) + (second ? slot_size(p) - marker_len(p) : 0u);
}

/*
 * A read, tried twice: a bus glitch passes the second time, a unit a power
 * cut tore fails both (and is then taken as torn or invalid, not as an
 * error of the whole store). 0 on success.
 */
static int rd(const otk_port *p, uint32_t off, uint8_t *buf, uint32_t len)
{
    return p->flash_read(p->ctx, off, buf, len) != 0 && p->flash_read(p->ctx, off, buf, len) != 0;
}

/*
 * A marker's state: 0 erased, 1 complete (every bit moved: 0x00 on 0xFF
 * flash), 2 anything else (torn by a power cut, or a read that failed on
 * it, as ECC flash reports a torn unit).
 */
static int marker_state(const otk_port *p, uint32_t off)
{
    uint8_t b[MARKER_MAX];
    uint32_t j, m = marker_len(p), e = 0, c = 0;
    uint8_t v = erased(p), w = (uint8_t)(v ^ 0xFFu);
    if (rd(p, off, b, m) != 0)
        return 2;
    for (j = 0; j < m; j++) {
        e += b[j] == v;
        c += b[j] == w;
    }
    return e == m ? 0 : c == m ? 1 : 2;
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
    /* Two markers and the largest password record must fit in a slot. */
    if (p->flash_size % 2u || s < OTK_SLOT_MIN || s % p->sector_size ||
        p->sector_size % p->prog_size ||
        s < 2u * marker_len(p) + round_up(REC_MAX, p->prog_size))
        return OTK_ERR_INVALID_ARGUMENT;
    return OTK_OK;
}

/*
 * Reads and verifies slot i. Returns OTK_OK with *set and (when not NULL) *committed,
 * OTK_ERR_CORRUPT when the slot holds no valid record, OTK_ERR_STORAGE
 * when the flash read fails.
 */
/* CRC of a record of body_len bytes at off, read in small pieces. */
static otk_status crc_of(const otk_port *p, uint32_t off, const uint8_t hdr[REC_HDR_LEN],
                         uint32_t body_len, uint32_t *crc, uint32_t *stored)
{
    uint8_t chunk[64];
    uint32_t done = 0, c = otk_crc32(0, hdr, REC_HDR_LEN);
    while (done < body_len) {
        uint32_t n = body_len - done < sizeof chunk ? body_len - done : (uint32_t)sizeof chunk;
        if (rd(p, off + REC_HDR_LEN + done, chunk, n) != 0)
            return OTK_ERR_STORAGE;
        c = otk_crc32(c, chunk, n);
        done += n;
    }
    if (rd(p, off + REC_HDR_LEN + body_len, chunk, 4) != 0)
        return OTK_ERR_STORAGE;
    *crc = c;
    *stored = otk_get_u32(chunk);
    otk_wipe(chunk, sizeof chunk);
    return OTK_OK;
}

/*
 * A format 2 body (whose CRC checked): the fields before the certificate,
 * the certificate's length and the pin; the certificate and the private
 * key stay in flash. The lengths must add up to body_len exactly.
 */
static otk_status read_cert_body(const otk_port *p, uint32_t off, uint32_t body_len,
                                 otk_keyset *set)
{
    uint8_t head[CERT_HEAD_MAX];
    uint32_t hl, cl, n = body_len < CERT_HEAD_MAX ? body_len : CERT_HEAD_MAX;
    otk_status st = OTK_ERR_CORRUPT;
    memset(set, 0, sizeof *set);
    if (rd(p, off, head, n) != 0)
        return OTK_ERR_STORAGE;
    hl = head[1u + OTK_AK_LEN + 7u];
    if (head[0] != OTK_KIND_CERT || hl == 0 || hl > OTK_HOST_MAX ||
        1u + OTK_AK_LEN + 7u + 1u + hl + 2u > n || !(head[1u + OTK_AK_LEN + 6u] & OTK_CLOUD_FLAG_TLS))
        goto out;
    cl = otk_get_u16(head + 1u + OTK_AK_LEN + 7u + 1u + hl);
    if (cl == 0 || cl > OTK_CERT_MAX ||
        body_len != 1u + OTK_AK_LEN + 7u + 1u + hl + 2u + cl + OTK_PIN_LEN + OTK_PRIV_LEN)
        goto out;
    set->kind = OTK_KIND_CERT;
    memcpy(set->ak, head + 1, OTK_AK_LEN);
    set->cloud.cloud_id = otk_get_u32(head + 1 + OTK_AK_LEN);
    set->cloud.port = otk_get_u16(head + 1 + OTK_AK_LEN + 4);
    set->cloud.flags = head[1 + OTK_AK_LEN + 6];
    set->cloud.host_len = (uint8_t)hl;
    memcpy(set->cloud.host, head + 1u + OTK_AK_LEN + 8u, hl);
    set->cert_len = (uint16_t)cl;
    if (rd(p, off + body_len - OTK_PRIV_LEN - OTK_PIN_LEN, set->ca_pin,
                      OTK_PIN_LEN) != 0) {
        st = OTK_ERR_STORAGE;
        goto out;
    }
    st = OTK_OK;
out:
    otk_wipe(head, sizeof head);
    if (st != OTK_OK)
        otk_wipe(set, sizeof *set);
    return st;
}

static otk_status read_slot(const otk_port *p, uint8_t i, otk_keyset *set, int *committed)
{
    uint8_t rec[REC_MAX];
    uint32_t base = i * slot_size(p) + marker_len(p), body_len, crc = 0, stored = 1;
    otk_status st;
    int cert;
    if (rd(p, base, rec, REC_HDR_LEN) != 0)
        return OTK_ERR_STORAGE;
    body_len = otk_get_u16(rec + 6);
    cert = rec[4] == REC_FORMAT2;
    if (otk_get_u32(rec) != REC_MAGIC || rec[5] != 0 || otk_get_u32(rec + 8) == 0 ||
        (cert ? body_len < CERT_BODY_MIN || body_len > OTK_KS_BODY2_MAX ||
                    2u * marker_len(p) + REC_HDR_LEN + body_len + 4u > slot_size(p)
              : rec[4] != REC_FORMAT || body_len < OTK_KEYSET_FIXED_LEN ||
                    body_len > OTK_KEYSET_MAX_LEN))
        return OTK_ERR_CORRUPT;
    /* A certificate set is checked in pieces, its body left in flash; a
     * password set is read once, and what the CRC checked is decoded. */
    if (cert) {
        st = crc_of(p, base, rec, body_len, &crc, &stored);
    } else {
        st = rd(p, base + REC_HDR_LEN, rec + REC_HDR_LEN, body_len + 4u) != 0 ? OTK_ERR_STORAGE
                                                                            : OTK_OK;
        crc = otk_crc32(0, rec, REC_HDR_LEN + body_len);
        stored = otk_get_u32(rec + REC_HDR_LEN + body_len);
    }
    if (st == OTK_OK && crc != stored)
        st = OTK_ERR_CORRUPT;
    if (st == OTK_OK)
        st = cert ? read_cert_body(p, base + REC_HDR_LEN, body_len, set)
             : otk_keyset_decode(rec + REC_HDR_LEN, body_len, set) != OTK_OK ? OTK_ERR_CORRUPT
                                                                            : OTK_OK;
    if (st == OTK_OK)
        set->version = otk_get_u32(rec + 8);
    /* Committed when either marker is complete; a torn one is not (not read
     * when the caller does not ask: a load knows the slot's state). */
    if (st == OTK_OK && committed != NULL) {
        *committed = marker_state(p, marker_off(p, i, 0)) == 1 ||
                     marker_state(p, marker_off(p, i, 1)) == 1;
    }
    otk_wipe(rec, sizeof rec);
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
        /* A read that fails (ECC on a unit a power cut tore) is an invalid slot too. */
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

/*
 * Writes the header and CRC around body_len bytes at rec + REC_HDR_LEN,
 * pads to the program unit, erases the inactive slot, programs the record
 * and reads it back (its AK must be ak). rec must hold the padded record.
 */
static otk_status program_record(otk_keystore *ks, uint8_t format, uint32_t version, uint8_t *rec,
                                 size_t rec_size, size_t body_len, const uint8_t *ak)
{
    const otk_port *p = ks->port;
    otk_keyset check;
    uint32_t len = round_up((uint32_t)(REC_HDR_LEN + body_len + 4u), p->prog_size), i;
    uint8_t slot;
    int committed = 0;
    otk_status st;
    if (len > rec_size || 2u * marker_len(p) + len > slot_size(p))
        return OTK_ERR_BAD_LENGTH;
    otk_put_u32(rec, REC_MAGIC);
    rec[4] = format;
    rec[5] = 0;
    otk_put_u16(rec + 6, (uint16_t)body_len);
    otk_put_u32(rec + 8, version);
    otk_put_u32(rec + REC_HDR_LEN + body_len, otk_crc32(0, rec, REC_HDR_LEN + body_len));
    for (i = (uint32_t)(REC_HDR_LEN + body_len + 4u); i < len; i++)
        rec[i] = erased(p); /* padding leaves its bits as they are */
    slot = otk_ks_next_slot(ks);
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
    if (st == OTK_OK && (check.version != version || committed ||
                         otk_ct_compare(check.ak, ak, OTK_AK_LEN) != 0))
        st = OTK_ERR_STORAGE;
    else if (st == OTK_ERR_CORRUPT)
        st = OTK_ERR_STORAGE;
    otk_wipe(&check, sizeof check);
    if (st == OTK_OK) {
        ks->staged = slot;
        ks->staged_version = version;
    }
out:
    return st;
}

otk_status otk_ks_stage(otk_keystore *ks, const otk_keyset *set)
{
    uint8_t rec[REC_MAX + MARKER_MAX];
    size_t body_len = 0;
    otk_status st;
    if (ks == NULL || set == NULL || !ks->mounted)
        return OTK_ERR_INVALID_ARGUMENT;
    if (set->version == 0 || (ks->active != OTK_SLOT_NONE && set->version <= ks->active_version))
        return OTK_ERR_ROLLBACK;
    st = otk_keyset_encode(set, rec + REC_HDR_LEN, OTK_KEYSET_MAX_LEN, &body_len);
    if (st == OTK_OK)
        st = program_record(ks, REC_FORMAT, set->version, rec, sizeof rec, body_len, set->ak);
    otk_wipe(rec, sizeof rec);
    return st;
}

otk_status otk_ks_stage_plain(otk_keystore *ks, uint32_t version, uint8_t *buf, size_t buf_size,
                              size_t body_len)
{
    if (ks == NULL || buf == NULL || !ks->mounted || buf_size < OTK_KS_BODY_OFF + body_len + 4u)
        return OTK_ERR_INVALID_ARGUMENT;
    if (version == 0 || (ks->active != OTK_SLOT_NONE && version <= ks->active_version))
        return OTK_ERR_ROLLBACK;
    if (body_len < OTK_KEYSET_FIXED_LEN || body_len > OTK_KEYSET_MAX_LEN)
        return OTK_ERR_BAD_LENGTH;
    /* The body is a password set as version 1 encodes it (§4.3), its AK
     * first; the read-back decodes it (no second keyset on this stack). */
    return program_record(ks, REC_FORMAT, version, buf, buf_size, body_len, buf + OTK_KS_BODY_OFF);
}

otk_status otk_ks_stage_record(otk_keystore *ks, uint32_t version, uint8_t *buf, size_t buf_size,
                               size_t body_len)
{
    otk_keyset chk;
    otk_status st;
    if (ks == NULL || buf == NULL || !ks->mounted || buf_size < OTK_KS_BODY_OFF + body_len + 4u)
        return OTK_ERR_INVALID_ARGUMENT;
    if (version == 0 || (ks->active != OTK_SLOT_NONE && version <= ks->active_version))
        return OTK_ERR_ROLLBACK;
    if (body_len < CERT_BODY_MIN || body_len > OTK_KS_BODY2_MAX)
        return OTK_ERR_BAD_LENGTH;
    /* The body must be a certificate set's plaintext and key (§11.4). */
    chk.version = 0;
    st = otk_keyset_decode_v(buf + OTK_KS_BODY_OFF, body_len - OTK_PRIV_LEN, OTK_PROTO_V2, &chk);
    if (st == OTK_OK && chk.kind != OTK_KIND_CERT)
        st = OTK_ERR_BAD_VALUE;
    if (st == OTK_OK)
        st = program_record(ks, REC_FORMAT2, version, buf, buf_size, body_len, chk.ak);
    otk_wipe(&chk, sizeof chk);
    return st;
}

otk_status otk_ks_commit(otk_keystore *ks, uint32_t version)
{
    uint8_t b[MARKER_MAX];
    const otk_port *p;
    uint32_t off;
    int k, ms;
    if (ks == NULL || !ks->mounted)
        return OTK_ERR_INVALID_ARGUMENT;
    if (ks->active != OTK_SLOT_NONE && version == ks->active_version && ks->staged == OTK_SLOT_NONE)
        return OTK_OK;
    if (ks->staged == OTK_SLOT_NONE || ks->staged_version != version)
        return OTK_ERR_BAD_STATE;
    p = ks->port;
    memset(b, erased(p) ^ 0xFF, sizeof b);
    /* The first marker, or the second if a power cut tore the first: never
     * a unit programmed twice. Where the port allows it, a torn first
     * marker is completed in place as a last resort (k = 2). */
    for (k = 0; k < 3; k++) {
        off = marker_off(p, ks->staged, k == 1);
        ms = marker_state(p, off);
        if (ms == 1)
            break;
        if (((k < 2 && ms == 0) || (k == 2 && (p->flash_flags & OTK_FLASH_REPROGRAM))) &&
            p->flash_prog(p->ctx, off, b, marker_len(p)) == 0 && marker_state(p, off) == 1)
            break;
    }
    if (k == 3)
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
    otk_status st;
    if (ks == NULL || out == NULL || !ks->mounted)
        return OTK_ERR_INVALID_ARGUMENT;
    slot = staged ? ks->staged : ks->active;
    want = staged ? ks->staged_version : ks->active_version;
    if (slot == OTK_SLOT_NONE)
        return OTK_ERR_NO_KEYSET;
    st = read_slot(ks->port, slot, out, NULL);
    if (st == OTK_OK && out->version != want)
        st = OTK_ERR_CORRUPT;
    if (st != OTK_OK)
        otk_wipe(out, sizeof *out);
    return st;
}

/*
 * Reads a certificate set's certificate (key = 0) or private key (key = 1)
 * from flash into out[size], after checking the record again (CRC,
 * layout): *len is what was read. out is wiped when the read fails.
 */
static otk_status cert_read(const otk_keystore *ks, int staged, int key, uint8_t *out,
                            size_t size, size_t *len)
{
    otk_keyset set;
    uint32_t off, n = 0;
    otk_status st = out == NULL ? OTK_ERR_INVALID_ARGUMENT : otk_ks_load(ks, staged, &set);
    if (st == OTK_OK && set.kind != OTK_KIND_CERT)
        st = OTK_ERR_BAD_STATE;
    if (st == OTK_OK) {
        /* The body's layout, as read_cert_body checked it against its length. */
        off = (staged ? ks->staged : ks->active) * slot_size(ks->port) + marker_len(ks->port) +
              REC_HDR_LEN + 1u + OTK_AK_LEN + 7u + 1u + set.cloud.host_len + 2u;
        n = set.cert_len;
        if (key) {
            off += n + OTK_PIN_LEN;
            n = OTK_PRIV_LEN;
        }
        if (size < n)
            st = OTK_ERR_BUFFER_TOO_SMALL;
        else if (rd(ks->port, off, out, n) != 0)
            st = OTK_ERR_STORAGE;
        else
            *len = n;
    }
    if (st == OTK_ERR_STORAGE)
        otk_wipe(out, n);
    otk_wipe(&set, sizeof set);
    return st;
}

otk_status otk_ks_read_cert(const otk_keystore *ks, int staged, uint8_t *der, size_t der_size,
                            size_t *der_len)
{
    return der_len == NULL ? OTK_ERR_INVALID_ARGUMENT
                           : cert_read(ks, staged, 0, der, der_size, der_len);
}

otk_status otk_ks_read_key(const otk_keystore *ks, int staged, uint8_t priv[OTK_PRIV_LEN])
{
    size_t n;
    return cert_read(ks, staged, 1, priv, OTK_PRIV_LEN, &n);
}

uint8_t otk_ks_next_slot(const otk_keystore *ks)
{
    return ks->active == OTK_SLOT_NONE ? (ks->staged == OTK_SLOT_NONE ? 0 : ks->staged)
                                       : (uint8_t)(1u - ks->active);
}

uint32_t otk_ks_active_version(const otk_keystore *ks)
{
    return ks && ks->active != OTK_SLOT_NONE ? ks->active_version : 0;
}

uint32_t otk_ks_staged_version(const otk_keystore *ks)
{
    return ks && ks->staged != OTK_SLOT_NONE ? ks->staged_version : 0;
}
