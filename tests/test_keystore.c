/*
 * Key-store tests: the A/B semantics, corrupt and torn contents, and a
 * sweep that cuts power at every flash operation of a sequence of stage /
 * commit / discard steps (clean and torn cuts, several geometries) and
 * checks after each reboot that the active set is exactly one of the sets
 * written, never a mix, and that the sequence can be completed.
 */
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "flashsim.h"

#include "otakey/keystore.h"
#include "otakey/wire.h"

/* The key set written for version v: every field derived from v. */
static void make_set(uint32_t v, otk_keyset *ks)
{
    char user[40], secret[40];
    size_t i;
    memset(ks, 0, sizeof *ks);
    ks->version = v;
    for (i = 0; i < sizeof ks->ak; i++)
        ks->ak[i] = (uint8_t)(v * 31u + i);
    snprintf(user, sizeof user, "device-%u", (unsigned)v);
    snprintf(secret, sizeof secret, "secret-%08x-%u", (unsigned)(v * 2654435761u), (unsigned)v);
    if (otk_cloud_set(&ks->cloud, v % 3u, v % 2 ? "cloud-b.example" : "cloud-a", (uint16_t)(8000 + v),
                      OTK_CLOUD_FLAG_TLS, user, secret) != OTK_OK)
        abort();
}

static int same_set(const otk_keyset *a, const otk_keyset *b)
{
    return a->version == b->version && memcmp(a->ak, b->ak, sizeof a->ak) == 0 &&
           a->cloud.cloud_id == b->cloud.cloud_id && a->cloud.port == b->cloud.port &&
           a->cloud.flags == b->cloud.flags && strcmp(a->cloud.host, b->cloud.host) == 0 &&
           strcmp(a->cloud.user, b->cloud.user) == 0 && strcmp(a->cloud.secret, b->cloud.secret) == 0;
}

static otk_crypto no_crypto; /* the key store itself uses no cryptography */

/*
 * Certificate sets (format 2, docs/protocol.md §11.4): in the mixed sweep,
 * even versions are certificate sets, every field derived from v: the
 * plaintext v2 then the private key, at OTK_KS_BODY_OFF of a record buffer.
 */
static int mixed;
static uint8_t record[OTK_KS_RECORD_MAX];

static int is_cert(uint32_t v)
{
    return mixed && v % 2u == 0;
}

static void cert_of(uint32_t v, uint8_t *der, size_t *len, uint8_t priv[32])
{
    size_t i;
    *len = 200u + (v * 37u) % 400u;
    for (i = 0; i < *len; i++)
        der[i] = (uint8_t)(v + i * 13u);
    for (i = 0; i < 32; i++)
        priv[i] = (uint8_t)(0xa5u ^ (v * 7u + i));
}

static size_t make_cert_body(uint32_t v, uint8_t *buf)
{
    otk_keyset ks;
    uint8_t der[OTK_CERT_MAX], priv[32];
    size_t len = 0, dlen;
    make_set(v, &ks);
    cert_of(v, der, &dlen, priv);
    ks.kind = OTK_KIND_CERT;
    ks.cert = der;
    ks.cert_len = (uint16_t)dlen;
    memset(ks.ca_pin, (int)v, sizeof ks.ca_pin);
    if (otk_keyset_encode_v(&ks, OTK_PROTO_V2, buf + OTK_KS_BODY_OFF, OTK_KEYSET2_MAX_LEN, &len) !=
        OTK_OK)
        abort();
    memcpy(buf + OTK_KS_BODY_OFF + len, priv, 32);
    return len + 32;
}

/* A certificate set of version v loaded back: every field, the certificate and the key. */
static int same_cert_set(const otk_keystore *st, int staged, const otk_keyset *got, uint32_t v)
{
    otk_keyset want;
    uint8_t der[OTK_CERT_MAX], priv[32], d2[OTK_CERT_MAX], p2[32];
    size_t dlen, d2len = 0;
    make_set(v, &want);
    cert_of(v, der, &dlen, priv);
    if (got->kind != OTK_KIND_CERT || got->version != v || memcmp(got->ak, want.ak, 32) ||
        got->cloud.cloud_id != want.cloud.cloud_id || strcmp(got->cloud.host, want.cloud.host) ||
        got->cert_len != dlen || got->cert != NULL || got->ca_pin[0] != (uint8_t)v)
        return 0;
    if (otk_ks_read_cert(st, staged, d2, sizeof d2, &d2len) != OTK_OK || d2len != dlen ||
        memcmp(d2, der, dlen) || otk_ks_read_key(st, staged, p2) != OTK_OK || memcmp(p2, priv, 32))
        return 0;
    return 1;
}

static void test_basics(uint32_t sector, uint32_t prog, uint8_t erased, int reprogram)
{
    otk_flashsim f;
    otk_port port;
    otk_keystore ks;
    otk_keyset a, b, out;
    uint8_t mark;
    CHECK(otk_flashsim_init2(&f, 2 * sector * (sector < 256 ? 256 / sector : 1), sector, prog, erased,
                             reprogram) == 0);
    otk_flashsim_port(&f, &no_crypto, &port);
    CHECK_OK(otk_ks_mount(&ks, &port));
    CHECK(otk_ks_active_version(&ks) == 0 && otk_ks_staged_version(&ks) == 0);
    CHECK_ST(otk_ks_load(&ks, 0, &out), OTK_ERR_NO_KEYSET);
    make_set(1, &a);
    CHECK_OK(otk_ks_stage(&ks, &a));
    CHECK(otk_ks_staged_version(&ks) == 1 && otk_ks_active_version(&ks) == 0);
    CHECK_OK(otk_ks_load(&ks, 1, &out));
    CHECK(same_set(&out, &a));
    CHECK_ST(otk_ks_commit(&ks, 2), OTK_ERR_BAD_STATE);
    CHECK_OK(otk_ks_commit(&ks, 1));
    CHECK_OK(otk_ks_commit(&ks, 1)); /* idempotent */
    CHECK(otk_ks_active_version(&ks) == 1 && otk_ks_staged_version(&ks) == 0);
    /* Remount finds the same thing. */
    CHECK_OK(otk_ks_mount(&ks, &port));
    CHECK(otk_ks_active_version(&ks) == 1 && otk_ks_staged_version(&ks) == 0);
    CHECK_OK(otk_ks_load(&ks, 0, &out));
    CHECK(same_set(&out, &a));
    /* Rollback refused; staging a newer set leaves the active one alone. */
    CHECK_ST(otk_ks_stage(&ks, &a), OTK_ERR_ROLLBACK);
    make_set(5, &b);
    CHECK_OK(otk_ks_stage(&ks, &b));
    CHECK_OK(otk_ks_mount(&ks, &port));
    CHECK(otk_ks_active_version(&ks) == 1 && otk_ks_staged_version(&ks) == 5);
    CHECK_OK(otk_ks_load(&ks, 0, &out));
    CHECK(same_set(&out, &a));
    CHECK_ST(otk_ks_discard(&ks, 4), OTK_ERR_BAD_STATE);
    CHECK_OK(otk_ks_discard(&ks, 5));
    CHECK_OK(otk_ks_mount(&ks, &port));
    CHECK(otk_ks_active_version(&ks) == 1 && otk_ks_staged_version(&ks) == 0);
    CHECK_OK(otk_ks_stage(&ks, &b));
    CHECK_OK(otk_ks_commit(&ks, 5));
    CHECK_OK(otk_ks_mount(&ks, &port));
    CHECK(otk_ks_active_version(&ks) == 5);
    CHECK_OK(otk_ks_load(&ks, 0, &out));
    CHECK(same_set(&out, &b));
    /* The commit marker holds the value an erased byte is not; the second
     * marker (the slot's last unit) and the record's padding stayed erased. */
    mark = (uint8_t)(0xFFu - erased);
    CHECK(f.mem[f.size / 2] == mark && f.mem[f.size / 2 + prog - 1] == mark);
    CHECK(f.mem[f.size - 1] == erased);
    {
        const uint8_t *r = f.mem + f.size / 2 + (prog < 4 ? 4 : prog);
        uint32_t end = 12u + (uint32_t)(r[6] << 8 | r[7]) + 4u, j;
        for (j = end; j < (end + prog - 1) / prog * prog; j++)
            CHECK(r[j] == erased);
    }
    CHECK(f.reprograms == 0);
    otk_flashsim_free(&f);
}

/* A flash_prog that records where it was called and fails the first fail_progs calls. */
static int (*real_prog)(void *ctx, uint32_t off, const uint8_t *buf, uint32_t len);
static uint32_t prog_off[8];
static unsigned prog_calls, fail_progs;

static int counting_prog(void *ctx, uint32_t off, const uint8_t *buf, uint32_t len)
{
    if (prog_calls < 8)
        prog_off[prog_calls] = off;
    if (prog_calls++ < fail_progs)
        return -1;
    return real_prog(ctx, off, buf, len);
}

static void test_corruption(void)
{
    otk_flashsim f;
    otk_port port;
    otk_keystore ks;
    otk_keyset a, b, out;
    uint32_t i;
    CHECK(otk_flashsim_init(&f, 2 * 4096, 4096, 8) == 0);
    otk_flashsim_port(&f, &no_crypto, &port);
    real_prog = port.flash_prog;
    CHECK_OK(otk_ks_mount(&ks, &port));
    make_set(1, &a);
    make_set(2, &b);
    CHECK_OK(otk_ks_stage(&ks, &a));
    CHECK_OK(otk_ks_commit(&ks, 1));
    CHECK_OK(otk_ks_stage(&ks, &b));
    CHECK_OK(otk_ks_commit(&ks, 2));
    /* Any single flipped bit in the newer record makes it invalid; the older committed set is then active. */
    for (i = 8; i < 8 + 12 + 74 + 4; i += 3) { /* marker, header, body, CRC */
        f.mem[4096 + i] ^= 0x10;
        CHECK_OK(otk_ks_mount(&ks, &port));
        CHECK(otk_ks_active_version(&ks) == 1 && (ks.invalid & 2));
        CHECK_OK(otk_ks_load(&ks, 0, &out));
        CHECK(same_set(&out, &a));
        f.mem[4096 + i] ^= 0x10;
    }
    /* Corrupted after mount: load reports CORRUPT and wipes the output. */
    CHECK_OK(otk_ks_mount(&ks, &port));
    f.mem[4096 + 40] ^= 1;
    memset(&out, 0x5a, sizeof out);
    CHECK_ST(otk_ks_load(&ks, 0, &out), OTK_ERR_CORRUPT);
    CHECK(out.ak[0] == 0 && out.version == 0);
    f.mem[4096 + 40] ^= 1;
    /* A torn marker (some bits cleared) is not a commit. */
    memset(f.mem + 4096, 0xff, 8);
    f.mem[4096 + 3] = 0x7f;
    CHECK_OK(otk_ks_mount(&ks, &port));
    CHECK(otk_ks_active_version(&ks) == 1 && otk_ks_staged_version(&ks) == 2);
    /* Committing again programs the second marker (the slot's last unit),
     * never the torn one a second time (ECC flash forbids it). */
    CHECK_OK(otk_ks_commit(&ks, 2));
    CHECK(f.reprograms == 0 && f.mem[4096 + 3] == 0x7f);
    CHECK(f.mem[8192 - 8] == 0 && f.mem[8192 - 1] == 0);
    CHECK_OK(otk_ks_mount(&ks, &port));
    CHECK(otk_ks_active_version(&ks) == 2);
    /* Both markers torn: no commit is possible without programming a unit
     * twice; refused (the device aborts the update, the old set stays). */
    memset(f.mem + 8192 - 8, 0xff, 8);
    f.mem[8192 - 2] = 0x0f;
    CHECK_OK(otk_ks_mount(&ks, &port));
    CHECK(otk_ks_active_version(&ks) == 1 && otk_ks_staged_version(&ks) == 2);
    CHECK_ST(otk_ks_commit(&ks, 2), OTK_ERR_STORAGE);
    CHECK(f.reprograms == 0 && otk_ks_active_version(&ks) == 1);
    /* ... unless the port allows a unit programmed again: the first marker is completed in place. */
    f.reprogram = 1;
    otk_flashsim_port(&f, &no_crypto, &port);
    CHECK_OK(otk_ks_mount(&ks, &port));
    CHECK_OK(otk_ks_commit(&ks, 2));
    CHECK(f.mem[4096 + 3] == 0);
    CHECK_OK(otk_ks_mount(&ks, &port));
    CHECK(otk_ks_active_version(&ks) == 2);
    f.reprogram = 0;
    otk_flashsim_port(&f, &no_crypto, &port);
    /* A marker whose read fails (ECC on a torn unit) is not a commit, and the mount goes on. */
    memset(f.mem + 4096, 0xff, 8);
    memset(f.mem + 8192 - 8, 0xff, 8);
    f.programmed[4096 / 8] = 2;
    f.programmed[8192 / 8 - 1] = 0;
    CHECK_OK(otk_ks_mount(&ks, &port));
    CHECK(otk_ks_active_version(&ks) == 1 && otk_ks_staged_version(&ks) == 2);
    CHECK_OK(otk_ks_commit(&ks, 2));
    CHECK_OK(otk_ks_mount(&ks, &port));
    CHECK(otk_ks_active_version(&ks) == 2 && f.reprograms == 0);
    /* A record whose read fails is an invalid slot, not a failed mount. */
    f.programmed[4096 / 8 + 3] = 2;
    CHECK_OK(otk_ks_mount(&ks, &port));
    CHECK(otk_ks_active_version(&ks) == 1 && (ks.invalid & 2));
    f.programmed[4096 / 8 + 3] = 1;
    /* A read that fails once (a bus glitch, not a torn unit) is tried again:
     * the newer set stays active, whichever read of the mount it hits. */
    for (i = 1; i <= 12; i++) {
        f.glitch_at = f.reads + i;
        CHECK_OK(otk_ks_mount(&ks, &port));
        CHECK(otk_ks_active_version(&ks) == 2 && ks.invalid == 0);
    }
    f.glitch_at = 0;
    /* Program calls that fail: one commit never programs a unit twice. */
    make_set(3, &a);
    CHECK_OK(otk_ks_stage(&ks, &a));
    port.flash_prog = counting_prog;
    prog_calls = 0;
    fail_progs = 2;
    CHECK_ST(otk_ks_commit(&ks, 3), OTK_ERR_STORAGE);
    CHECK(prog_calls == 2 && prog_off[0] != prog_off[1]);
    CHECK(otk_ks_active_version(&ks) == 2);
    prog_calls = 0;
    fail_progs = 0;
    CHECK_OK(otk_ks_commit(&ks, 3)); /* a later commit may try the erased unit again */
    CHECK(prog_calls == 1 && f.reprograms == 0);
    otk_flashsim_port(&f, &no_crypto, &port);
    CHECK_OK(otk_ks_mount(&ks, &port));
    CHECK(otk_ks_active_version(&ks) == 3);
    /* Garbage everywhere mounts as empty, never as a set. */
    for (i = 0; i < f.size; i++)
        f.mem[i] = (uint8_t)(i * 131u + 7u);
    CHECK_OK(otk_ks_mount(&ks, &port));
    CHECK(otk_ks_active_version(&ks) == 0 && otk_ks_staged_version(&ks) == 0 && ks.invalid == 3);
    /* Storage errors are reported, not hidden. */
    f.fail_at = (long)f.ops;
    CHECK_OK(otk_ks_mount(&ks, &port));
    CHECK_ST(otk_ks_stage(&ks, &a), OTK_ERR_STORAGE);
    /* Unusable geometries. */
    port.prog_size = 3;
    CHECK_ST(otk_ks_mount(&ks, &port), OTK_ERR_INVALID_ARGUMENT);
    port.prog_size = 64;
    CHECK_ST(otk_ks_mount(&ks, &port), OTK_ERR_INVALID_ARGUMENT);
    /* 32-byte units: two markers and a record do not fit in 256-byte slots. */
    port.prog_size = 32;
    port.flash_size = 2 * 256;
    port.sector_size = 256;
    CHECK_ST(otk_ks_mount(&ks, &port), OTK_ERR_INVALID_ARGUMENT);
    port.flash_size = 2 * 512;
    port.sector_size = 512;
    CHECK_OK(otk_ks_mount(&ks, &port));
    port.sector_size = 4096;
    port.prog_size = 8;
    port.flash_size = 2 * 128;
    CHECK_ST(otk_ks_mount(&ks, &port), OTK_ERR_INVALID_ARGUMENT);
    port.flash_size = 3 * 4096;
    CHECK_ST(otk_ks_mount(&ks, &port), OTK_ERR_INVALID_ARGUMENT);
    port.version = OTK_PORT_VERSION + 1;
    port.flash_size = 2 * 4096;
    CHECK_ST(otk_ks_mount(&ks, &port), OTK_ERR_INVALID_ARGUMENT);
    port.version = 1; /* before flash_flags: refused */
    CHECK_ST(otk_ks_mount(&ks, &port), OTK_ERR_INVALID_ARGUMENT);
    otk_flashsim_free(&f);
}

/*
 * The step sequence of the sweep. A step is applied to whatever state the
 * store is in, so after a reboot the sequence resumes at the interrupted
 * step: that is what the device does (it re-stages or re-commits).
 */
enum { S_STAGE, S_COMMIT, S_DISCARD };
static const struct {
    int op;
    uint32_t v;
} steps[] = {
    {S_STAGE, 1}, {S_COMMIT, 1}, {S_STAGE, 2}, {S_COMMIT, 2}, {S_STAGE, 3},
    {S_DISCARD, 3}, {S_STAGE, 4}, {S_STAGE, 5}, {S_COMMIT, 5}, {S_STAGE, 6}, {S_COMMIT, 6},
};
#define NSTEPS (sizeof steps / sizeof steps[0])

static otk_status apply(otk_keystore *ks, size_t i)
{
    otk_keyset s;
    otk_status st;
    switch (steps[i].op) {
    case S_STAGE:
        if (is_cert(steps[i].v))
            return otk_ks_stage_record(ks, steps[i].v, record, sizeof record,
                                       make_cert_body(steps[i].v, record));
        make_set(steps[i].v, &s);
        st = otk_ks_stage(ks, &s);
        otk_wipe(&s, sizeof s);
        return st;
    case S_COMMIT:
        /* After a cut during staging, the set may need staging again first. */
        if (otk_ks_staged_version(ks) != steps[i].v && otk_ks_active_version(ks) != steps[i].v) {
            make_set(steps[i].v, &s);
            st = is_cert(steps[i].v)
                     ? otk_ks_stage_record(ks, steps[i].v, record, sizeof record,
                                           make_cert_body(steps[i].v, record))
                     : otk_ks_stage(ks, &s);
            if (st != OTK_OK)
                return st;
        }
        return otk_ks_commit(ks, steps[i].v);
    default:
        return otk_ks_discard(ks, otk_ks_staged_version(ks));
    }
}

/* Committed version after steps [0, n) ran to completion. */
static uint32_t committed_after(size_t n)
{
    uint32_t v = 0;
    size_t i;
    for (i = 0; i < n; i++)
        if (steps[i].op == S_COMMIT)
            v = steps[i].v;
    return v;
}

/* A flash part: erase sector, program unit, erased value, reprogramming allowed. */
typedef struct part {
    uint32_t sector, prog;
    uint8_t erased;
    int reprogram;
} part;

static unsigned long sweep(part g, int tear, unsigned seeds)
{
    unsigned long points = 0, cut;
    unsigned seed;
    for (seed = 0; seed < seeds; seed++) {
        for (cut = 0; cut < 100000; cut++) { /* a bug may never let a run pass: bounded */
            otk_flashsim f;
            otk_port port;
            otk_keystore ks;
            otk_keyset out, want;
            size_t i;
            int fired = 0;
            uint32_t before, after;
            uint32_t slot = mixed ? 1024u : 256u;
            CHECK(otk_flashsim_init2(&f, 2 * (g.sector < slot ? slot : g.sector), g.sector, g.prog,
                                     g.erased, g.reprogram) == 0);
            otk_flashsim_port(&f, &no_crypto, &port);
            CHECK_OK(otk_ks_mount(&ks, &port));
            otk_flashsim_cut(&f, cut, tear, 1000u * seed + cut);
            for (i = 0; i < NSTEPS; i++)
                if (apply(&ks, i) != OTK_OK) {
                    fired = 1;
                    break;
                }
            if (!fired) {
                otk_flashsim_free(&f);
                break; /* the cut point is past the last operation */
            }
            points++;
            /* Reboot: the active set must be the one before or after step i. */
            otk_flashsim_reboot(&f);
            CHECK_OK(otk_ks_mount(&ks, &port));
            before = committed_after(i);
            after = committed_after(i + 1);
            CHECK(otk_ks_active_version(&ks) == before || otk_ks_active_version(&ks) == after);
            if (otk_ks_active_version(&ks)) {
                make_set(otk_ks_active_version(&ks), &want);
                CHECK_OK(otk_ks_load(&ks, 0, &out));
                CHECK(is_cert(out.version) ? same_cert_set(&ks, 0, &out, out.version)
                                           : same_set(&out, &want));
            }
            if (otk_ks_staged_version(&ks)) {
                make_set(otk_ks_staged_version(&ks), &want);
                CHECK_OK(otk_ks_load(&ks, 1, &out));
                CHECK(is_cert(out.version) ? same_cert_set(&ks, 1, &out, out.version)
                                           : same_set(&out, &want));
            }
            /* Resume from the interrupted step; the sequence completes. */
            for (; i < NSTEPS; i++)
                CHECK_OK(apply(&ks, i));
            CHECK_OK(otk_ks_mount(&ks, &port));
            CHECK(otk_ks_active_version(&ks) == committed_after(NSTEPS));
            CHECK(f.reprograms == 0); /* no unit programmed twice, cuts or not */
            otk_flashsim_free(&f);
        }
        CHECK(cut < 100000);
    }
    return points;
}

/* Certificate records: what stage_record accepts, what load and the readers give back. */
static void test_cert_records(void)
{
    otk_flashsim f;
    otk_port port;
    otk_keystore ks;
    otk_keyset out;
    uint8_t der[OTK_CERT_MAX];
    size_t body, len = 0;
    mixed = 1;
    CHECK(otk_flashsim_init(&f, 2 * 1024, 1024, 8) == 0);
    otk_flashsim_port(&f, &no_crypto, &port);
    CHECK_OK(otk_ks_mount(&ks, &port));
    body = make_cert_body(2, record);
    CHECK_ST(otk_ks_stage_record(&ks, 2, record, 10, body), OTK_ERR_INVALID_ARGUMENT);
    CHECK_ST(otk_ks_stage_record(&ks, 0, record, sizeof record, body), OTK_ERR_ROLLBACK);
    CHECK_ST(otk_ks_stage_record(&ks, 2, record, sizeof record, body - 1), OTK_ERR_TRUNCATED);
    CHECK_ST(otk_ks_stage_record(&ks, 2, record, sizeof record, body + 1), OTK_ERR_TRAILING);
    CHECK_OK(otk_ks_stage_record(&ks, 2, record, sizeof record, make_cert_body(2, record)));
    CHECK_OK(otk_ks_load(&ks, 1, &out));
    CHECK(same_cert_set(&ks, 1, &out, 2));
    CHECK_ST(otk_ks_read_cert(&ks, 1, der, 10, &len), OTK_ERR_BUFFER_TOO_SMALL);
    CHECK_ST(otk_ks_read_cert(&ks, 0, der, sizeof der, &len), OTK_ERR_NO_KEYSET);
    CHECK_OK(otk_ks_commit(&ks, 2));
    CHECK_OK(otk_ks_mount(&ks, &port)); /* after a reboot */
    CHECK(otk_ks_active_version(&ks) == 2);
    CHECK_OK(otk_ks_load(&ks, 0, &out));
    CHECK(same_cert_set(&ks, 0, &out, 2));
    /* A password set has no certificate to read. */
    {
        otk_keyset p;
        uint8_t priv[32];
        make_set(3, &p);
        CHECK_OK(otk_ks_stage(&ks, &p));
        CHECK_ST(otk_ks_read_key(&ks, 1, priv), OTK_ERR_BAD_STATE);
    }
    /* A flipped bit in the certificate makes the record invalid. */
    CHECK_OK(otk_ks_stage_record(&ks, 4, record, sizeof record, make_cert_body(4, record)));
    f.mem[1024 + 8 + 12 + 120] ^= 0x01;
    CHECK_OK(otk_ks_mount(&ks, &port));
    CHECK(otk_ks_staged_version(&ks) == 0 && otk_ks_active_version(&ks) == 2);
    /* A slot too small for a certificate record. */
    otk_flashsim_free(&f);
    CHECK(otk_flashsim_init(&f, 2 * 256, 256, 8) == 0);
    otk_flashsim_port(&f, &no_crypto, &port);
    CHECK_OK(otk_ks_mount(&ks, &port));
    CHECK_ST(otk_ks_stage_record(&ks, 2, record, sizeof record, make_cert_body(2, record)),
             OTK_ERR_BAD_LENGTH);
    otk_flashsim_free(&f);
    mixed = 0;
}

int main(void)
{
    unsigned long points = 0;
    test_basics(256, 4, 0xFF, 0);
    test_basics(4096, 8, 0xFF, 0);
    test_basics(128, 1, 0xFF, 0);
    test_basics(256, 16, 0xFF, 0);
    test_basics(512, 32, 0xFF, 0);
    test_basics(256, 4, 0x00, 0);
    test_basics(256, 8, 0xFF, 1);
    test_corruption();
    /* Parts: 0xFF flash with 4-, 8-, 16- and 32-byte units programmed once
     * (ECC), 0x00 flash with 4-byte units, plain NOR that may program a
     * unit again. */
    points += sweep((part){256, 4, 0xFF, 0}, 0, 1);
    points += sweep((part){256, 4, 0xFF, 0}, 1, 8);
    points += sweep((part){4096, 8, 0xFF, 0}, 1, 4);
    points += sweep((part){128, 16, 0xFF, 0}, 1, 4);
    points += sweep((part){512, 32, 0xFF, 0}, 1, 4);
    points += sweep((part){256, 4, 0x00, 0}, 1, 8);
    points += sweep((part){256, 8, 0xFF, 1}, 1, 4);
    printf("key-store power-cut sweep: %lu cut points, torn and clean\n", points);
    /* Password and certificate sets in turn (slots of 1 KiB and more). */
    mixed = 1;
    points = sweep((part){1024, 4, 0xFF, 0}, 0, 1);
    points += sweep((part){1024, 16, 0xFF, 0}, 1, 8);
    points += sweep((part){4096, 8, 0xFF, 0}, 1, 4);
    points += sweep((part){1024, 32, 0xFF, 0}, 1, 4);
    points += sweep((part){1024, 4, 0x00, 0}, 1, 4);
    printf("with certificate sets: %lu cut points, torn and clean\n", points);
    test_cert_records();
    return CHECK_DONE();
}
