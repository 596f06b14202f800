/*
 * Crypto port tests, run against every backend (mbedTLS, OpenSSL, PSA):
 * known answers from published vectors (RFC 4231, RFC 5869, FIPS 180-2,
 * RFC 6979 and Project Wycheproof files under tests/vectors/), failure
 * cases with their expected errors, and cross tests where one backend
 * seals, signs or agrees and the other opens, verifies or agrees. The PSA
 * backend's keys by reference: made inside PSA, never exportable, kept
 * across a restart of the PSA implementation when persistent, gone once
 * destroyed, and no volatile key left behind by any operation.
 *
 * Built with OTK_TEST_BOARD (the emulated Cortex-M4, port/mps2): the
 * device's backends, mbedTLS and PSA (mbedTLS's PSA layer; no OpenSSL on a
 * microcontroller), the cross tests against a second mbedTLS instance, and
 * the vector files built into the image (port/mps2/vectors.c).
 */
/* mbedTLS 3 made mbedtls_psa_stats_t's fields private (read here to count
 * volatile keys); 2.28 ignores it. */
#define MBEDTLS_ALLOW_PRIVATE_ACCESS
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "testrng.h"

#include "otakey/crypto.h"
#include "otakey/crypto_psa.h"

#include <psa/crypto.h>
#ifndef OTK_TEST_BOARD
#include <unistd.h>
#endif

#define MAXB 8192

#ifdef OTK_TEST_BOARD
#define N_BACKENDS 3 /* mbedTLS, (a second mbedTLS: cross tests only), PSA */
#define CROSS_EC 4 /* two instances of one library: agreement is all they show */
/* port/mps2/vectors.c: a vector file's text, built into the image. */
const char *otk_board_vectors(const char *name, size_t *len);
#else
#define N_BACKENDS 3 /* mbedTLS, OpenSSL, PSA */
#define CROSS_EC 40
#endif

typedef struct backend {
    const char *name;
    otk_crypto c;
} backend;

static backend be[3];
static union {
    uint8_t b[OTK_CRYPTO_PSA_STATE_SIZE];
    void *align;
} pstate;
static otk_testrng rng_m, rng_o;
static union {
    uint8_t b[OTK_CRYPTO_MBEDTLS_STATE_SIZE];
    void *align;
} mstate;
#ifdef OTK_TEST_BOARD
static union {
    uint8_t b[OTK_CRYPTO_MBEDTLS_STATE_SIZE];
    void *align;
} mstate2; /* the second backend of the cross tests: mbedTLS again */
#endif

/* Parses hex ('-' = empty) into out; returns the byte count or -1. */
static long unhex(const char *s, uint8_t *out, size_t cap)
{
    size_t n = 0;
    if (strcmp(s, "-") == 0)
        return 0;
    while (s[0] && s[1]) {
        unsigned v;
        if (n == cap || sscanf(s, "%2x", &v) != 1)
            return -1;
        out[n++] = (uint8_t)v;
        s += 2;
    }
    return s[0] ? -1 : (long)n;
}

/* Reads the next vector line into up to 8 fields; 0 at end of file. */
static int next_line(FILE *f, char *line, size_t cap, char **fields, int nf)
{
    while (fgets(line, (int)cap, f)) {
        int i = 0;
        char *p, *save = NULL;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        for (p = strtok_r(line, " \n", &save); p && i < nf; p = strtok_r(NULL, " \n", &save))
            fields[i++] = p;
        if (i == nf)
            return 1;
    }
    return 0;
}

static FILE *open_vectors(const char *name)
{
    FILE *f;
#ifdef OTK_TEST_BOARD
    size_t len = 0;
    const char *text = otk_board_vectors(name, &len);
    f = text ? fmemopen((void *)(uintptr_t)text, len, "r") : NULL;
    if (f == NULL)
        fprintf(stderr, "vectors %s not in the image\n", name);
#else
    char path[256];
    snprintf(path, sizeof path, "vectors/%s", name);
    f = fopen(path, "r");
    if (f == NULL)
        fprintf(stderr, "cannot open %s (run from tests/)\n", path);
#endif
    CHECK(f != NULL);
    return f;
}

static void kat_rfc(backend *b)
{
    /* RFC 4231 test case 1 and FIPS 180-2 "abc"; RFC 5869 test case 1. */
    static const char *hmac_tc1 = "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7";
    static const char *abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    static const char *abc448 = "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";
    static const char *prk1 = "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5";
    static const char *okm1 = "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                              "34007208d5b887185865";
    otk_crypto *c = &b->c;
    uint8_t key[22], salt[13], info[10], want[64], out[64];
    otk_iov io;
    size_t i;
    memset(key, 0x0b, sizeof key);
    io.p = "Hi There";
    io.n = 8;
    CHECK_OK(c->hmac_sha256(c->ctx, key, 20, &io, 1, out));
    CHECK(unhex(hmac_tc1, want, sizeof want) == 32 && memcmp(out, want, 32) == 0);
    io.p = "abc";
    io.n = 3;
    CHECK_OK(c->sha256(c->ctx, &io, 1, out));
    CHECK(unhex(abc, want, sizeof want) == 32 && memcmp(out, want, 32) == 0);
    io.p = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    io.n = 56;
    CHECK_OK(c->sha256(c->ctx, &io, 1, out));
    CHECK(unhex(abc448, want, sizeof want) == 32 && memcmp(out, want, 32) == 0);
    for (i = 0; i < sizeof salt; i++)
        salt[i] = (uint8_t)i;
    for (i = 0; i < sizeof info; i++)
        info[i] = (uint8_t)(0xf0 + i);
    CHECK_OK(c->hkdf_extract(c->ctx, salt, sizeof salt, key, sizeof key, out));
    CHECK(unhex(prk1, want, sizeof want) == 32 && memcmp(out, want, 32) == 0);
    CHECK_OK(c->hkdf_expand(c->ctx, out, info, sizeof info, out + 32, 42 - 10));
    CHECK_OK(c->hkdf_expand(c->ctx, want, info, sizeof info, out, 42));
    CHECK(unhex(okm1, want, sizeof want) == 42 && memcmp(out, want, 42) == 0);
}

static void kat_hmac(backend *b)
{
    static char line[MAXB * 4], *f[5];
    uint8_t key[MAXB], msg[MAXB], tag[64], out[32];
    unsigned n = 0;
    FILE *fp = open_vectors("hmac_sha256.txt");
    while (fp && next_line(fp, line, sizeof line, f, 5)) {
        long kl = unhex(f[1], key, sizeof key), ml = unhex(f[2], msg, sizeof msg);
        long tl = unhex(f[3], tag, sizeof tag);
        otk_iov io;
        io.p = msg;
        io.n = (size_t)ml;
        if (kl < 0 || ml < 0 || tl < 0 || tl > 32)
            continue;
        CHECK_OK(b->c.hmac_sha256(b->c.ctx, key, (size_t)kl, &io, 1, out));
        CHECK((memcmp(out, tag, (size_t)tl) == 0) == (strcmp(f[4], "valid") == 0));
        n++;
    }
    if (fp)
        fclose(fp);
    CHECK(n > 100);
}

static void kat_hkdf(backend *b)
{
    static char line[MAXB * 4], *f[7];
    static uint8_t ikm[MAXB], salt[MAXB], info[MAXB], okm[MAXB], out[MAXB];
    uint8_t prk[32];
    unsigned n = 0;
    FILE *fp = open_vectors("hkdf_sha256.txt");
    while (fp && next_line(fp, line, sizeof line, f, 7)) {
        long il = unhex(f[1], ikm, sizeof ikm), sl = unhex(f[2], salt, sizeof salt);
        long nl = unhex(f[3], info, sizeof info), size = atol(f[4]);
        long ol = unhex(f[5], okm, sizeof okm);
        int valid = strcmp(f[6], "valid") == 0;
        if (il < 0 || sl < 0 || nl < 0 || ol < 0 || size > MAXB)
            continue;
        CHECK_OK(b->c.hkdf_extract(b->c.ctx, salt, (size_t)sl, ikm, (size_t)il, prk));
        if (valid) {
            CHECK_OK(b->c.hkdf_expand(b->c.ctx, prk, info, (size_t)nl, out, (size_t)size));
            CHECK(memcmp(out, okm, (size_t)size) == 0);
        } else {
            CHECK(b->c.hkdf_expand(b->c.ctx, prk, info, (size_t)nl, out, (size_t)size) != OTK_OK);
        }
        n++;
    }
    if (fp)
        fclose(fp);
    CHECK(n > 50);
}

static void kat_ccm(backend *b)
{
    static char line[MAXB * 4], *f[8];
    static uint8_t key[32], iv[32], aad[MAXB], msg[MAXB], ct[MAXB], tag[32], out[MAXB];
    unsigned n = 0;
    FILE *fp = open_vectors("aes128_ccm_n13_t16.txt");
    while (fp && next_line(fp, line, sizeof line, f, 8)) {
        long kl = unhex(f[1], key, sizeof key), vl = unhex(f[2], iv, sizeof iv);
        long al = unhex(f[3], aad, sizeof aad), ml = unhex(f[4], msg, sizeof msg);
        long cl = unhex(f[5], ct, sizeof ct), tl = unhex(f[6], tag, sizeof tag);
        int valid = strcmp(f[7], "valid") == 0;
        uint8_t t2[16];
        if (kl != 16 || vl != 13 || tl != 16 || al < 0 || ml < 0 || cl != ml)
            continue;
        if (valid) {
            CHECK_OK(b->c.ccm_encrypt(b->c.ctx, key, iv, aad, (size_t)al, msg, (size_t)ml, out, t2));
            CHECK(memcmp(out, ct, (size_t)ml) == 0 && memcmp(t2, tag, 16) == 0);
            CHECK_OK(b->c.ccm_decrypt(b->c.ctx, key, iv, aad, (size_t)al, ct, (size_t)ml, tag, out));
            CHECK(memcmp(out, msg, (size_t)ml) == 0);
        } else {
            CHECK_ST(b->c.ccm_decrypt(b->c.ctx, key, iv, aad, (size_t)al, ct, (size_t)ml, tag, out),
                     OTK_ERR_BAD_MAC);
        }
        n++;
    }
    if (fp)
        fclose(fp);
    CHECK(n >= 6);
}

static void kat_ecdh(backend *b)
{
    char line[1024], *f[5];
    uint8_t pub[200], priv[64], shared[64], out[32];
    unsigned n = 0, refused = 0;
    FILE *fp = open_vectors("ecdh_p256.txt");
    while (fp && next_line(fp, line, sizeof line, f, 5)) {
        long pl = unhex(f[1], pub, sizeof pub), dl = unhex(f[2], priv, sizeof priv);
        long sl = unhex(f[3], shared, sizeof shared);
        const uint8_t *d = priv;
        otk_status st;
        /* Only uncompressed points fit the port's X || Y form. */
        if (pl != 65 || pub[0] != 4 || dl < 32 || strcmp(f[4], "acceptable") == 0)
            continue;
        if (dl == 33 && priv[0] == 0)
            d = priv + 1;
        else if (dl != 32)
            continue;
        st = b->c.ecdh(b->c.ctx, d, pub + 1, out);
        if (strcmp(f[4], "valid") == 0) {
            CHECK_OK(st);
            CHECK(sl == 32 && memcmp(out, shared, 32) == 0);
        } else {
            CHECK_ST(st, OTK_ERR_INVALID_ARGUMENT);
            refused++;
        }
        n++;
    }
    if (fp)
        fclose(fp);
    CHECK(n > 100 && refused > 0);
}

static void kat_ecdsa(backend *b)
{
    static char line[MAXB * 4], *f[5];
    static uint8_t pub[80], msg[MAXB], sig[200], digest[32];
    unsigned n = 0, refused = 0;
    FILE *fp = open_vectors("ecdsa_p256_sha256.txt");
    while (fp && next_line(fp, line, sizeof line, f, 5)) {
        long pl = unhex(f[1], pub, sizeof pub), ml = unhex(f[2], msg, sizeof msg);
        long gl = unhex(f[3], sig, sizeof sig);
        otk_iov io;
        otk_status st;
        if (pl != 65 || ml < 0 || gl != 64 || strcmp(f[4], "acceptable") == 0)
            continue;
        io.p = msg;
        io.n = (size_t)ml;
        CHECK_OK(b->c.sha256(b->c.ctx, &io, 1, digest));
        st = b->c.ecdsa_verify(b->c.ctx, pub + 1, digest, sig);
        if (strcmp(f[4], "valid") == 0) {
            CHECK_OK(st);
        } else {
            CHECK_ST(st, OTK_ERR_BAD_SIGNATURE);
            refused++;
        }
        n++;
    }
    if (fp)
        fclose(fp);
    CHECK(n > 100 && refused > 50);
}

/* RFC 6979 A.2.5: the P-256 key, and signatures of "sample" and "test" with SHA-256. */
static const char *r6979_d = "c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721";
static const char *r6979_q = "60fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6"
                             "7903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299";
static const char *r6979_sample = "efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716"
                                  "f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8";
static const char *r6979_test = "f1abb023518351cd71d881567b1ea663ed3efcf6c5132b354f28d3b0b7d38367"
                                "019f4113742a2b14bd25926b49c649155f267e60d3814b4c0cc84250e46f0083";

/* An rng that returns one fixed scalar: keygen then computes its public key. */
static const uint8_t *fixed_scalar;
static int fixed_rng(void *ctx, uint8_t *out, size_t len)
{
    (void)ctx;
    memcpy(out, fixed_scalar, len < 32 ? len : 32);
    return 0;
}

static void kat_rfc6979(backend *b)
{
    uint8_t d[32], q[64], sig[64], digest[32], pub[64], priv[32], other[64], tmp[32];
    otk_crypto c;
    otk_iov io;
    int k;
    CHECK(unhex(r6979_d, d, 32) == 32 && unhex(r6979_q, q, 64) == 64);
    for (k = 0; k < 2; k++) {
        io.p = k ? "test" : "sample";
        io.n = k ? 4 : 6;
        CHECK_OK(b->c.sha256(b->c.ctx, &io, 1, digest));
        CHECK(unhex(k ? r6979_test : r6979_sample, sig, 64) == 64);
        CHECK_OK(b->c.ecdsa_verify(b->c.ctx, q, digest, sig));
        sig[5] ^= 1; /* r */
        CHECK_ST(b->c.ecdsa_verify(b->c.ctx, q, digest, sig), OTK_ERR_BAD_SIGNATURE);
        sig[5] ^= 1;
        sig[40] ^= 0x80; /* s */
        CHECK_ST(b->c.ecdsa_verify(b->c.ctx, q, digest, sig), OTK_ERR_BAD_SIGNATURE);
        sig[40] ^= 0x80;
        digest[0] ^= 1;
        CHECK_ST(b->c.ecdsa_verify(b->c.ctx, q, digest, sig), OTK_ERR_BAD_SIGNATURE);
        digest[0] ^= 1;
        CHECK_OK(b->c.ec_keygen(b->c.ctx, OTK_KEY_EPHEMERAL, priv, other));
        CHECK_ST(b->c.ecdsa_verify(b->c.ctx, other, digest, sig), OTK_ERR_BAD_SIGNATURE);
        /* r = 0, s = 0, s = n: out of range. */
        memset(sig, 0, 32);
        CHECK_ST(b->c.ecdsa_verify(b->c.ctx, q, digest, sig), OTK_ERR_BAD_SIGNATURE);
        CHECK(unhex(k ? r6979_test : r6979_sample, sig, 64) == 64);
        memset(sig + 32, 0, 32);
        CHECK_ST(b->c.ecdsa_verify(b->c.ctx, q, digest, sig), OTK_ERR_BAD_SIGNATURE);
        CHECK(unhex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551", sig + 32, 32) == 32);
        CHECK_ST(b->c.ecdsa_verify(b->c.ctx, q, digest, sig), OTK_ERR_BAD_SIGNATURE);
        /* Our own signature with that key verifies. */
        CHECK_OK(b->c.ecdsa_sign(b->c.ctx, d, digest, sig));
        CHECK_OK(b->c.ecdsa_verify(b->c.ctx, q, digest, sig));
    }
    /* The public key of the RFC's scalar, through keygen with a fixed rng, and
     * ECDH(d, G) = x(d * G). */
    fixed_scalar = d;
    if (b == &be[2]) {
        /* PSA draws from its own generator: the scalar's point is checked
         * by the agreement with G below. */
        memcpy(priv, d, 32);
        memcpy(pub, q, 64);
    } else if (b == &be[0]) {
        union {
            uint8_t b[OTK_CRYPTO_MBEDTLS_STATE_SIZE];
            void *align;
        } st;
        CHECK_OK(otk_crypto_mbedtls_init(&c, st.b, sizeof st.b, fixed_rng, NULL));
        CHECK_OK(c.ec_keygen(c.ctx, OTK_KEY_EPHEMERAL, priv, pub));
        otk_crypto_mbedtls_free(&c);
    } else {
#ifndef OTK_TEST_BOARD
        CHECK_OK(otk_crypto_openssl_init(&c, fixed_rng, NULL));
        CHECK_OK(c.ec_keygen(c.ctx, OTK_KEY_EPHEMERAL, priv, pub));
        otk_crypto_openssl_free(&c);
#endif
    }
    CHECK(memcmp(priv, d, 32) == 0 && memcmp(pub, q, 64) == 0);
    CHECK(unhex("6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
                "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5", other, 64) == 64);
    CHECK_OK(b->c.ecdh(b->c.ctx, d, other, tmp)); /* peer = G */
    CHECK(memcmp(tmp, q, 32) == 0);
}

static void failures(backend *b)
{
    uint8_t key[16] = {1}, iv[13] = {2}, aad[7] = "context", pt[48], ct[48], tag[16], out[48];
    uint8_t priv[32], pub[64], bad[64], ss[32], zero[32] = {0};
    otk_crypto *c = &b->c;
    size_t i;
    memset(pt, 0x42, sizeof pt);
    CHECK_OK(c->ccm_encrypt(c->ctx, key, iv, aad, sizeof aad, pt, sizeof pt, ct, tag));
    ct[7] ^= 1;
    memset(out, 0x55, sizeof out);
    CHECK_ST(c->ccm_decrypt(c->ctx, key, iv, aad, sizeof aad, ct, sizeof pt, tag, out), OTK_ERR_BAD_MAC);
    for (i = 0; i < sizeof out && out[i] == 0; i++)
        ;
    CHECK(i == sizeof out); /* no partial plaintext left behind */
    ct[7] ^= 1;
    tag[15] ^= 1;
    CHECK_ST(c->ccm_decrypt(c->ctx, key, iv, aad, sizeof aad, ct, sizeof pt, tag, out), OTK_ERR_BAD_MAC);
    tag[15] ^= 1;
    aad[0] ^= 1;
    CHECK_ST(c->ccm_decrypt(c->ctx, key, iv, aad, sizeof aad, ct, sizeof pt, tag, out), OTK_ERR_BAD_MAC);
    aad[0] ^= 1;
    CHECK_OK(c->ccm_decrypt(c->ctx, key, iv, aad, sizeof aad, ct, sizeof pt, tag, out));
    CHECK(memcmp(out, pt, sizeof pt) == 0);

    CHECK_OK(c->ec_keygen(c->ctx, OTK_KEY_EPHEMERAL, priv, pub));
    memcpy(bad, pub, 64);
    bad[63] ^= 1; /* off the curve */
    CHECK_ST(c->ecdh(c->ctx, priv, bad, ss), OTK_ERR_INVALID_ARGUMENT);
    memset(bad, 0, 64); /* (0, 0) */
    CHECK_ST(c->ecdh(c->ctx, priv, bad, ss), OTK_ERR_INVALID_ARGUMENT);
    memset(bad, 0xff, 64); /* coordinates >= p */
    CHECK_ST(c->ecdh(c->ctx, priv, bad, ss), OTK_ERR_INVALID_ARGUMENT);
    CHECK_ST(c->ecdh(c->ctx, zero, pub, ss), OTK_ERR_INVALID_ARGUMENT); /* scalar 0 */
    memset(bad, 0xff, 32); /* scalar >= n */
    CHECK_ST(c->ecdh(c->ctx, bad, pub, ss), OTK_ERR_INVALID_ARGUMENT);
    CHECK_ST(c->ecdsa_sign(c->ctx, zero, zero, bad), OTK_ERR_INVALID_ARGUMENT);
}

/* What one backend makes, the other accepts; both compute the same values. */
static void cross(backend *p, backend *q)
{
    otk_testrng r;
    int i;
    otk_testrng_seed(&r, 77);
    for (i = 0; i < 200; i++) {
        backend *x = i & 1 ? q : p, *y = i & 1 ? p : q;
        uint8_t a[32], A[64], b[32], B[64], s1[32], s2[32], d[32], sig[64], k[32], K[64];
        uint8_t key[16], iv[13], aad[40], pt[120], ct[120], tag[16], out[120], h1[64], h2[64];
        size_t n = (size_t)(otk_testrng_u64(&r) % sizeof pt);
        otk_iov io;
        (void)otk_testrng_fill(&r, d, sizeof d);
        (void)otk_testrng_fill(&r, key, sizeof key);
        (void)otk_testrng_fill(&r, iv, sizeof iv);
        (void)otk_testrng_fill(&r, aad, sizeof aad);
        (void)otk_testrng_fill(&r, pt, sizeof pt);
        if (i < CROSS_EC) { /* public-key operations are slow; fewer of them */
            CHECK_OK(x->c.ec_keygen(x->c.ctx, OTK_KEY_EPHEMERAL, a, A));
            CHECK_OK(y->c.ec_keygen(y->c.ctx, OTK_KEY_EPHEMERAL, b, B));
            CHECK_OK(x->c.ecdh(x->c.ctx, a, B, s1));
            CHECK_OK(y->c.ecdh(y->c.ctx, b, A, s2));
            CHECK(memcmp(s1, s2, 32) == 0);
            /* A signing key is a slot's (PSA: ECDH and ECDSA keys apart). */
            CHECK_OK(x->c.ec_keygen(x->c.ctx, OTK_KEY_SLOT0, k, K));
            CHECK_OK(x->c.ecdsa_sign(x->c.ctx, k, d, sig));
            CHECK_OK(y->c.ecdsa_verify(y->c.ctx, K, d, sig));
        }
        CHECK_OK(x->c.ccm_encrypt(x->c.ctx, key, iv, aad, sizeof aad, pt, n, ct, tag));
        CHECK_OK(y->c.ccm_decrypt(y->c.ctx, key, iv, aad, sizeof aad, ct, n, tag, out));
        CHECK(memcmp(out, pt, n) == 0);
        io.p = pt;
        io.n = n;
        CHECK_OK(x->c.hmac_sha256(x->c.ctx, key, sizeof key, &io, 1, h1));
        CHECK_OK(y->c.hmac_sha256(y->c.ctx, key, sizeof key, &io, 1, h2));
        CHECK(memcmp(h1, h2, 32) == 0);
        CHECK_OK(x->c.hkdf_extract(x->c.ctx, aad, sizeof aad, pt, n, h1));
        CHECK_OK(y->c.hkdf_extract(y->c.ctx, aad, sizeof aad, pt, n, h2));
        CHECK(memcmp(h1, h2, 32) == 0);
        CHECK_OK(x->c.hkdf_expand(x->c.ctx, h1, iv, sizeof iv, h1 + 32, 29));
        CHECK_OK(y->c.hkdf_expand(y->c.ctx, h2, iv, sizeof iv, h2 + 32, 29));
        CHECK(memcmp(h1 + 32, h2 + 32, 29) == 0);
    }
    /* Same seed, same key pair on both backends (the two seeded ones). */
    if (p == &be[0] && q == &be[1]) {
        uint8_t p1[32], q1[64], p2[32], q2[64];
        otk_testrng_seed(&rng_m, 5);
        otk_testrng_seed(&rng_o, 5);
        CHECK_OK(be[0].c.ec_keygen(be[0].c.ctx, OTK_KEY_EPHEMERAL, p1, q1));
        CHECK_OK(be[1].c.ec_keygen(be[1].c.ctx, OTK_KEY_EPHEMERAL, p2, q2));
        CHECK(memcmp(p1, p2, 32) == 0 && memcmp(q1, q2, 64) == 0);
    }
}

static size_t volatile_keys(void)
{
    mbedtls_psa_stats_t st;
    mbedtls_psa_get_stats(&st);
    return st.volatile_slots;
}

/*
 * Keys by reference: what ec_keygen returns is a reference, the key under
 * it signs and agrees but is not exportable, a persistent slot key
 * survives a restart of PSA (its storage in a directory of its own), a
 * destroyed one is gone, and a new key for a slot replaces the old.
 */
static void psa_refs(const otk_crypto *c)
{
    uint8_t ref[32], ref2[32], pub[64], pub2[64], other[32], opub[64], s1[32], s2[32];
    uint8_t digest[32] = {7}, sig[64], out[200];
    psa_key_attributes_t a = PSA_KEY_ATTRIBUTES_INIT;
    uint32_t id = 0, id2 = 0;
    size_t n = 0;
#ifndef OTK_TEST_BOARD /* (the board keeps its keys in RAM: port/mps2/psa_its_ram.c) */
    char dir[] = "/tmp/otk-psa-XXXXXX", here[512];
    CHECK(getcwd(here, sizeof here) != NULL && mkdtemp(dir) != NULL && chdir(dir) == 0);
#endif
    /* The ephemeral key: a reference, agreeing with a raw key of OpenSSL. */
    CHECK_OK(c->ec_keygen(c->ctx, OTK_KEY_EPHEMERAL, ref, pub));
    CHECK(otk_crypto_psa_ref(ref, &id) && id != 0);
    CHECK(volatile_keys() == 1);
    CHECK_OK(be[1].c.ec_keygen(be[1].c.ctx, OTK_KEY_EPHEMERAL, other, opub));
    CHECK_OK(c->ecdh(c->ctx, ref, opub, s1));
    CHECK_OK(be[1].c.ecdh(be[1].c.ctx, other, pub, s2));
    CHECK(memcmp(s1, s2, 32) == 0);
    CHECK(psa_export_key((psa_key_id_t)id, out, sizeof out, &n) == PSA_ERROR_NOT_PERMITTED);
    /* A new ephemeral key replaces it (PSA may reuse the id); key_destroy
     * drops the last. */
    CHECK_OK(c->ec_keygen(c->ctx, OTK_KEY_EPHEMERAL, ref2, pub2));
    CHECK(volatile_keys() == 1 && memcmp(pub, pub2, 64) != 0);
    CHECK_OK(c->ecdh(c->ctx, ref2, opub, s1));
    CHECK_OK(be[1].c.ecdh(be[1].c.ctx, other, pub2, s2));
    CHECK(memcmp(s1, s2, 32) == 0);
    c->key_destroy(c->ctx, OTK_KEY_EPHEMERAL);
    CHECK(volatile_keys() == 0);
    CHECK_ST(c->ecdh(c->ctx, ref2, opub, s1), OTK_ERR_CRYPTO);
    /* A slot key: persistent, signs, not exportable, not for ECDH. */
    CHECK_OK(c->ec_keygen(c->ctx, OTK_KEY_SLOT0 + 1, ref, pub));
    CHECK(otk_crypto_psa_ref(ref, &id) && id == 0x004f5401u + 1);
    CHECK(psa_get_key_attributes((psa_key_id_t)id, &a) == PSA_SUCCESS &&
          PSA_KEY_LIFETIME_IS_VOLATILE(psa_get_key_lifetime(&a)) == 0 &&
          (psa_get_key_usage_flags(&a) & PSA_KEY_USAGE_EXPORT) == 0);
    psa_reset_key_attributes(&a);
    CHECK(psa_export_key((psa_key_id_t)id, out, sizeof out, &n) == PSA_ERROR_NOT_PERMITTED);
    CHECK_OK(c->ecdsa_sign(c->ctx, ref, digest, sig));
    CHECK_OK(be[1].c.ecdsa_verify(be[1].c.ctx, pub, digest, sig));
    CHECK(c->ecdh(c->ctx, ref, opub, s1) != OTK_OK);
    /* It survives a restart of PSA (a reboot); a raw scalar is not a reference. */
    mbedtls_psa_crypto_free();
    CHECK(psa_crypto_init() == PSA_SUCCESS);
    CHECK_OK(c->ecdsa_sign(c->ctx, ref, digest, sig));
    CHECK_OK(be[1].c.ecdsa_verify(be[1].c.ctx, pub, digest, sig));
    CHECK(!otk_crypto_psa_ref(other, NULL));
    /* A new key for the slot replaces it; destroyed, it is gone. */
    CHECK_OK(c->ec_keygen(c->ctx, OTK_KEY_SLOT0 + 1, ref2, pub2));
    CHECK(memcmp(ref, ref2, 32) == 0 && memcmp(pub, pub2, 64) != 0);
    CHECK_OK(c->ecdsa_sign(c->ctx, ref2, digest, sig));
    CHECK_ST(be[1].c.ecdsa_verify(be[1].c.ctx, pub, digest, sig), OTK_ERR_BAD_SIGNATURE);
    c->key_destroy(c->ctx, OTK_KEY_SLOT0 + 1);
    CHECK(psa_get_key_attributes((psa_key_id_t)id, &a) != PSA_SUCCESS);
    psa_reset_key_attributes(&a);
    CHECK_ST(c->ecdsa_sign(c->ctx, ref2, digest, sig), OTK_ERR_CRYPTO);
    c->key_destroy(c->ctx, OTK_KEY_SLOT0); /* none there: nothing happens */
    CHECK_ST(c->ec_keygen(c->ctx, OTK_KEY_SLOT0 + 2, ref, pub), OTK_ERR_INVALID_ARGUMENT);
    CHECK(volatile_keys() == 0); /* nothing left behind by any operation */
    (void)id2;
#ifndef OTK_TEST_BOARD
    CHECK(chdir(here) == 0 && rmdir(dir) == 0); /* empty: every key file went */
#endif
}

int main(void)
{
    int i;
    otk_testrng_seed(&rng_m, 1);
    otk_testrng_seed(&rng_o, 1);
    be[0].name = "mbedtls";
    CHECK_OK(otk_crypto_mbedtls_init(&be[0].c, mstate.b, sizeof mstate.b, otk_testrng_fill, &rng_m));
#ifdef OTK_TEST_BOARD
    be[1].name = "mbedtls (second instance)";
    CHECK_OK(otk_crypto_mbedtls_init(&be[1].c, mstate2.b, sizeof mstate2.b, otk_testrng_fill, &rng_o));
#else
    be[1].name = "openssl";
    CHECK_OK(otk_crypto_openssl_init(&be[1].c, otk_testrng_fill, &rng_o));
#endif
    CHECK_ST(otk_crypto_mbedtls_init(&be[0].c, mstate.b, 4, NULL, NULL), OTK_ERR_BUFFER_TOO_SMALL);
    CHECK_OK(otk_crypto_mbedtls_init(&be[0].c, mstate.b, sizeof mstate.b, otk_testrng_fill, &rng_m));
    be[2].name = "psa";
    CHECK_ST(otk_crypto_psa_init(&be[2].c, pstate.b, 4, 0), OTK_ERR_BUFFER_TOO_SMALL);
    CHECK_ST(otk_crypto_psa_init(&be[2].c, pstate.b, sizeof pstate.b, 0x7fffffffu), OTK_ERR_INVALID_ARGUMENT);
    CHECK_OK(otk_crypto_psa_init(&be[2].c, pstate.b, sizeof pstate.b, 0));
    for (i = 0; i < N_BACKENDS; i++) {
        unsigned before = check_failed_;
#ifdef OTK_TEST_BOARD
        if (i == 1)
            continue; /* the second mbedTLS instance: the same code as the first */
#endif
        kat_rfc(&be[i]);
        kat_hmac(&be[i]);
        kat_hkdf(&be[i]);
        kat_ccm(&be[i]);
        kat_ecdh(&be[i]);
        kat_ecdsa(&be[i]);
        kat_rfc6979(&be[i]);
        failures(&be[i]);
        printf("%s: %s\n", be[i].name, check_failed_ == before ? "all vectors pass" : "FAILURES");
    }
    cross(&be[0], &be[1]);
    printf("cross tests: %s <-> %s\n", be[0].name, be[1].name);
    cross(&be[2], &be[1]);
    printf("cross tests: %s <-> %s\n", be[2].name, be[1].name);
    /* Left: the last ephemeral key and slot 0's (volatile here); nothing else. */
    CHECK(volatile_keys() == 2);
    otk_crypto_psa_free(&be[2].c);
    CHECK(volatile_keys() == 0);
    CHECK_OK(otk_crypto_psa_init(&be[2].c, pstate.b, sizeof pstate.b, 0x004f5401u));
    psa_refs(&be[2].c);
    printf("psa: keys by reference %s\n", check_failed_ ? "FAILED" : "pass");
    otk_crypto_psa_free(&be[2].c);
    mbedtls_psa_crypto_free();
    otk_crypto_mbedtls_free(&be[0].c);
#ifdef OTK_TEST_BOARD
    otk_crypto_mbedtls_free(&be[1].c);
#else
    otk_crypto_openssl_free(&be[1].c);
#endif
    return CHECK_DONE();
}
