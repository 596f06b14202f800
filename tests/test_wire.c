/*
 * Codec tests: exact sizes (the table in docs/protocol.md §4.4), round
 * trips, and every refusal with its distinct error.
 */
#include "check.h"
#include "testrng.h"

#include "otakey/keystore.h"
#include "otakey/wire.h"

static otk_testrng rng;

static void fill(void *p, size_t n)
{
    (void)otk_testrng_fill(&rng, p, n);
}

/* The sizes published in docs/protocol.md, written out as numbers. */
static const struct {
    uint8_t type;
    size_t ct_len, size;
} sizes[] = {
    {OTK_MSG_CLAIM, 0, 122},      {OTK_MSG_UPDATE_REQ, 0, 118}, {OTK_MSG_CONFIRM, 0, 38},
    {OTK_MSG_ABORT, 0, 40},       {OTK_MSG_ACK, 0, 38},         {OTK_MSG_NACK, 0, 88},
    {OTK_MSG_NOTIFY, 0, 38},      {OTK_MSG_STATUS, 0, 40},      {OTK_MSG_ERROR, 0, 22},
    {OTK_MSG_CLAIM_RESP, 61, 213}, {OTK_MSG_CLAIM_RESP, 133, 285},
    {OTK_MSG_UPDATE_RESP, 218, 370},
};

static void random_msg(otk_msg *m, uint8_t type, const uint8_t *ct, uint16_t ct_len)
{
    memset(m, 0, sizeof *m);
    m->type = type;
    fill(m->device_id, sizeof m->device_id);
    switch (type) {
    case OTK_MSG_CLAIM: fill(m->batch_id, 8); /* fall through */
    case OTK_MSG_UPDATE_REQ:
        fill(m->nonce, sizeof m->nonce);
        fill(m->epub, sizeof m->epub);
        break;
    case OTK_MSG_CLAIM_RESP:
    case OTK_MSG_UPDATE_RESP:
        fill(m->epub, sizeof m->epub);
        m->ct = ct;
        m->ct_len = ct_len;
        break;
    case OTK_MSG_ERROR: m->ref_type = OTK_MSG_CLAIM; break;
    default: break;
    }
    if (type != OTK_MSG_CLAIM && type != OTK_MSG_ERROR)
        m->version = (uint32_t)otk_testrng_u64(&rng);
    if (type == OTK_MSG_ABORT || type == OTK_MSG_NACK || type == OTK_MSG_STATUS ||
        type == OTK_MSG_ERROR)
        m->code = OTK_ERR_PROOF_FAILED;
    fill(m->mac, sizeof m->mac);
    fill(m->sig, sizeof m->sig);
    if (type == OTK_MSG_CLAIM || type == OTK_MSG_CLAIM_RESP || type == OTK_MSG_UPDATE_RESP ||
        type == OTK_MSG_NACK || type == OTK_MSG_ERROR)
        memset(m->mac, 0, sizeof m->mac);
    if (type != OTK_MSG_CLAIM_RESP && type != OTK_MSG_UPDATE_RESP && type != OTK_MSG_NACK)
        memset(m->sig, 0, sizeof m->sig);
    if (type == OTK_MSG_CLAIM)
        fill(m->mac, sizeof m->mac);
}

static void test_sizes_and_roundtrip(void)
{
    uint8_t ct[OTK_CT_MAX], buf[OTK_MSG_MAX_LEN + 8], again[OTK_MSG_MAX_LEN];
    size_t i, len, len2, cut;
    otk_msg m, d;
    fill(ct, sizeof ct);
    for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        random_msg(&m, sizes[i].type, ct, (uint16_t)sizes[i].ct_len);
        CHECK(otk_msg_size(m.type, sizes[i].ct_len) == sizes[i].size);
        CHECK_OK(otk_msg_encode(&m, buf, sizeof buf, &len));
        CHECK(len == sizes[i].size);
        CHECK_OK(otk_msg_decode(buf, len, &d));
        CHECK(d.type == m.type && d.version == m.version && d.code == m.code &&
              d.ref_type == m.ref_type && d.ct_len == m.ct_len);
        CHECK_MEM(d.device_id, m.device_id, 16);
        CHECK_MEM(d.batch_id, m.batch_id, 8);
        CHECK_MEM(d.nonce, m.nonce, 16);
        CHECK_MEM(d.epub, m.epub, 64);
        CHECK_MEM(d.mac, m.mac, 16);
        CHECK_MEM(d.sig, m.sig, 64);
        if (m.ct_len)
            CHECK(d.ct == buf + 88 && memcmp(d.ct, ct, m.ct_len) == 0);
        CHECK_OK(otk_msg_encode(&d, again, sizeof again, &len2));
        CHECK(len2 == len && memcmp(again, buf, len) == 0);
        /* Every strict prefix is short; one more byte is trailing. */
        for (cut = 0; cut < len; cut++)
            CHECK_ST(otk_msg_decode(buf, cut, &d), OTK_ERR_TRUNCATED);
        buf[len] = 0;
        CHECK_ST(otk_msg_decode(buf, len + 1, &d), OTK_ERR_TRAILING);
        CHECK_ST(otk_msg_encode(&m, buf, len - 1, &len2), OTK_ERR_BUFFER_TOO_SMALL);
        /* Authenticator offsets: the last 16 (mac) or 64 (sig) bytes. */
        if (m.type == OTK_MSG_ERROR)
            CHECK(otk_msg_auth_offset(m.type, len) == 0);
        else if (m.type == OTK_MSG_NACK || m.type == OTK_MSG_CLAIM_RESP ||
                 m.type == OTK_MSG_UPDATE_RESP)
            CHECK(otk_msg_auth_offset(m.type, len) == len - 64);
        else
            CHECK(otk_msg_auth_offset(m.type, len) == len - 16);
    }
    /* Version 1's largest message is 370 bytes; version 2's response 947. */
    CHECK(otk_msg_size(OTK_MSG_UPDATE_RESP, OTK_CT_MAX) == 370);
    CHECK(OTK_MSG_MAX_LEN == 947 && OTK_KEYSET2_MAX_LEN == 779);
    CHECK(otk_msg_size(0, 0) == 0 && otk_msg_size(12, 0) == 0);
}

static void test_refusals(void)
{
    uint8_t ct[OTK_CT_MAX], buf[OTK_MSG_MAX_LEN];
    size_t len;
    otk_msg m, d;
    fill(ct, sizeof ct);
    random_msg(&m, OTK_MSG_CONFIRM, NULL, 0);
    CHECK_OK(otk_msg_encode(&m, buf, sizeof buf, &len));
    buf[0] = 3;
    CHECK_ST(otk_msg_decode(buf, len, &d), OTK_ERR_UNKNOWN_VERSION);
    buf[0] = 0;
    CHECK_ST(otk_msg_decode(buf, len, &d), OTK_ERR_UNKNOWN_VERSION);
    buf[0] = 1;
    buf[1] = 0;
    CHECK_ST(otk_msg_decode(buf, len, &d), OTK_ERR_UNKNOWN_TYPE);
    buf[1] = 12;
    CHECK_ST(otk_msg_decode(buf, len, &d), OTK_ERR_UNKNOWN_TYPE);
    buf[1] = 255;
    CHECK_ST(otk_msg_decode(buf, len, &d), OTK_ERR_UNKNOWN_TYPE);
    CHECK(d.type == 0); /* zeroed on failure */
    m.type = 0;
    CHECK_ST(otk_msg_encode(&m, buf, sizeof buf, &len), OTK_ERR_UNKNOWN_TYPE);

    /* Ciphertext length outside its limits, both directions. */
    random_msg(&m, OTK_MSG_UPDATE_RESP, ct, OTK_CT_MIN);
    CHECK_OK(otk_msg_encode(&m, buf, sizeof buf, &len));
    otk_put_u16(buf + 86, OTK_CT_MIN - 1);
    CHECK_ST(otk_msg_decode(buf, len, &d), OTK_ERR_BAD_LENGTH);
    otk_put_u16(buf + 86, OTK_CT_MAX + 1);
    CHECK_ST(otk_msg_decode(buf, len, &d), OTK_ERR_BAD_LENGTH);
    otk_put_u16(buf + 86, 0xffff);
    CHECK_ST(otk_msg_decode(buf, len, &d), OTK_ERR_BAD_LENGTH);
    otk_put_u16(buf + 86, OTK_CT_MIN + 1); /* claims one byte more than sent */
    CHECK_ST(otk_msg_decode(buf, len, &d), OTK_ERR_TRUNCATED);
    m.ct_len = OTK_CT_MAX + 1;
    CHECK_ST(otk_msg_encode(&m, buf, sizeof buf, &len), OTK_ERR_BAD_LENGTH);
    m.ct_len = 0;
    CHECK_ST(otk_msg_encode(&m, buf, sizeof buf, &len), OTK_ERR_BAD_LENGTH);

    /* ERROR's reserved byte must be zero. */
    random_msg(&m, OTK_MSG_ERROR, NULL, 0);
    CHECK_OK(otk_msg_encode(&m, buf, sizeof buf, &len));
    CHECK(len == 22 && buf[19] == 0);
    buf[19] = 1;
    CHECK_ST(otk_msg_decode(buf, len, &d), OTK_ERR_BAD_VALUE);

    CHECK_ST(otk_msg_decode(NULL, 5, &d), OTK_ERR_INVALID_ARGUMENT);
    CHECK_ST(otk_msg_decode(buf, 0, &d), OTK_ERR_TRUNCATED);
}

static void test_keyset(void)
{
    otk_keyset ks, out;
    uint8_t buf[OTK_KEYSET_MAX_LEN + 4];
    size_t len, cut;
    char host[OTK_HOST_MAX + 2];
    memset(&ks, 0, sizeof ks);
    fill(ks.ak, sizeof ks.ak);
    CHECK_OK(otk_cloud_set(&ks.cloud, 7, "cloud-a.example.net", 8883, OTK_CLOUD_FLAG_TLS,
                           "00112233445566778899aabbccddeeff-1", "s3cr3t-abcdefghijklmnopqrstuvwxy"));
    CHECK_OK(otk_keyset_encode(&ks, buf, sizeof buf, &len));
    CHECK(len == OTK_KEYSET_FIXED_LEN + 19 + 34 + 32);
    out.version = 42;
    CHECK_OK(otk_keyset_decode(buf, len, &out));
    CHECK(out.version == 42); /* not carried in the plaintext */
    CHECK_MEM(out.ak, ks.ak, 32);
    CHECK(out.cloud.cloud_id == 7 && out.cloud.port == 8883 && out.cloud.flags == 1);
    CHECK(strcmp(out.cloud.host, "cloud-a.example.net") == 0);
    CHECK(strcmp(out.cloud.user, ks.cloud.user) == 0 && strcmp(out.cloud.secret, ks.cloud.secret) == 0);
    for (cut = 0; cut < len; cut++)
        CHECK_ST(otk_keyset_decode(buf, cut, &out), OTK_ERR_TRUNCATED);
    CHECK_ST(otk_keyset_decode(buf, len + 1, &out), OTK_ERR_TRAILING);
    buf[39] = 0; /* host length 0 */
    CHECK_ST(otk_keyset_decode(buf, len, &out), OTK_ERR_BAD_LENGTH);
    buf[39] = OTK_HOST_MAX + 1;
    CHECK_ST(otk_keyset_decode(buf, len, &out), OTK_ERR_BAD_LENGTH);
    buf[39] = 19;
    buf[40] = ' '; /* not printable-without-space */
    CHECK_ST(otk_keyset_decode(buf, len, &out), OTK_ERR_BAD_VALUE);
    CHECK_ST(otk_keyset_encode(&ks, buf, len - 1, &len), OTK_ERR_BUFFER_TOO_SMALL);

    memset(host, 'h', sizeof host);
    host[OTK_HOST_MAX + 1] = 0;
    CHECK_ST(otk_cloud_set(&ks.cloud, 1, host, 1, 0, "u", "s"), OTK_ERR_BAD_LENGTH);
    host[OTK_HOST_MAX] = 0;
    CHECK_OK(otk_cloud_set(&ks.cloud, 1, host, 1, 0, "u", "s"));
    CHECK_ST(otk_cloud_set(&ks.cloud, 1, "", 1, 0, "u", "s"), OTK_ERR_BAD_LENGTH);
    CHECK_ST(otk_cloud_set(&ks.cloud, 1, "h", 1, 0, "u\n", "s"), OTK_ERR_BAD_VALUE);
}

/* Version 2 (docs/protocol.md §11.2, §11.3). */
static void test_v2(void)
{
    uint8_t buf[OTK_MSG_MAX_LEN], ct[OTK_CT2_MAX], pt[OTK_KEYSET2_MAX_LEN], cert[OTK_CERT_MAX];
    size_t len, len2;
    otk_msg m, d;
    otk_keyset ks, back;
    /* CLAIM: always keyed, 250 bytes, pop over the first 170. */
    random_msg(&m, OTK_MSG_CLAIM, NULL, 0);
    m.proto = OTK_PROTO_V2;
    fill(m.dpub, 64);
    fill(m.pop, 64);
    CHECK_OK(otk_msg_encode(&m, buf, sizeof buf, &len));
    CHECK(len == OTK_CLAIM2_LEN && buf[0] == 2 && otk_msg_size_of(&m) == len);
    CHECK(otk_msg_pop_offset(buf, len) == 170 && otk_msg_auth_offset(OTK_MSG_CLAIM, len) == 234);
    CHECK_OK(otk_msg_decode(buf, len, &d));
    CHECK(d.proto == 2 && d.has_key == 1 && !memcmp(d.dpub, m.dpub, 64) &&
          !memcmp(d.pop, m.pop, 64) && !memcmp(d.epub, m.epub, 64));
    CHECK_ST(otk_msg_decode(buf, len - 1, &d), OTK_ERR_TRUNCATED);
    buf[0] = 1; /* the same bytes as a version 1 CLAIM: too long */
    CHECK_ST(otk_msg_decode(buf, len, &d), OTK_ERR_TRAILING);
    /* UPDATE_REQ: 119 bytes without a key, 247 with one. */
    random_msg(&m, OTK_MSG_UPDATE_REQ, NULL, 0);
    m.proto = OTK_PROTO_V2;
    CHECK_OK(otk_msg_encode(&m, buf, sizeof buf, &len));
    CHECK(len == OTK_UPDATE_REQ2_LEN && buf[102] == 0 && otk_msg_pop_offset(buf, len) == 0);
    CHECK_OK(otk_msg_decode(buf, len, &d));
    CHECK(d.proto == 2 && d.has_key == 0);
    m.has_key = 1;
    fill(m.dpub, 64);
    fill(m.pop, 64);
    CHECK_OK(otk_msg_encode(&m, buf, sizeof buf, &len));
    CHECK(len == OTK_UPDATE_REQ2_KEY_LEN && buf[102] == 1 && otk_msg_pop_offset(buf, len) == 167);
    CHECK_OK(otk_msg_decode(buf, len, &d));
    CHECK(d.has_key == 1 && !memcmp(d.pop, m.pop, 64) && d.version == m.version);
    buf[102] = 0; /* says keyless, carries a key: trailing bytes */
    CHECK_ST(otk_msg_decode(buf, len, &d), OTK_ERR_TRAILING);
    buf[102] = 2;
    CHECK_ST(otk_msg_decode(buf, len, &d), OTK_ERR_BAD_VALUE);
    buf[102] = 1;
    CHECK_ST(otk_msg_decode(buf, OTK_UPDATE_REQ2_LEN, &d), OTK_ERR_TRUNCATED);
    /* NOTIFY: the kind of the set waiting. */
    random_msg(&m, OTK_MSG_NOTIFY, NULL, 0);
    m.proto = OTK_PROTO_V2;
    m.kind = OTK_KIND_CERT;
    CHECK_OK(otk_msg_encode(&m, buf, sizeof buf, &len));
    CHECK(len == OTK_NOTIFY2_LEN && buf[22] == 2 && buf[23] == 0);
    CHECK_OK(otk_msg_decode(buf, len, &d));
    CHECK(d.kind == OTK_KIND_CERT && d.version == m.version);
    buf[22] = 3;
    CHECK_ST(otk_msg_decode(buf, len, &d), OTK_ERR_BAD_VALUE);
    buf[22] = 1;
    buf[23] = 1;
    CHECK_ST(otk_msg_decode(buf, len, &d), OTK_ERR_BAD_VALUE);
    /* Other types keep version 1's layout with byte 0 = 2. */
    random_msg(&m, OTK_MSG_CONFIRM, NULL, 0);
    m.proto = OTK_PROTO_V2;
    CHECK_OK(otk_msg_encode(&m, buf, sizeof buf, &len));
    CHECK(len == OTK_CONFIRM_LEN && buf[0] == 2);
    /* Responses: a version 2 ciphertext may be longer than version 1 allows. */
    fill(ct, sizeof ct);
    random_msg(&m, OTK_MSG_UPDATE_RESP, ct, (uint16_t)OTK_CT2_MAX);
    m.proto = OTK_PROTO_V2;
    CHECK_OK(otk_msg_encode(&m, buf, sizeof buf, &len));
    CHECK(len == OTK_MSG_MAX_LEN);
    CHECK_OK(otk_msg_decode(buf, len, &d));
    CHECK(d.ct_len == OTK_CT2_MAX);
    m.proto = 1;
    CHECK_ST(otk_msg_encode(&m, buf, sizeof buf, &len2), OTK_ERR_BAD_LENGTH);
    /* Key-set plaintext v2: kind 1, then kind 2 with a certificate and a pin. */
    memset(&ks, 0, sizeof ks);
    fill(ks.ak, sizeof ks.ak);
    CHECK_OK(otk_cloud_set(&ks.cloud, 7, "mqtt.example", 8883, OTK_CLOUD_FLAG_TLS, "u-1", "s3cret"));
    CHECK_OK(otk_keyset_encode_v(&ks, OTK_PROTO_V2, pt, sizeof pt, &len));
    CHECK(pt[0] == OTK_KIND_PASSWORD);
    CHECK_OK(otk_keyset_encode(&ks, buf, sizeof buf, &len2));
    CHECK(len == len2 + 1 && !memcmp(pt + 1, buf, len2));
    CHECK_OK(otk_keyset_decode_v(pt, len, OTK_PROTO_V2, &back));
    CHECK(back.kind == OTK_KIND_PASSWORD && !strcmp(back.cloud.secret, "s3cret"));
    fill(cert, sizeof cert);
    ks.kind = OTK_KIND_CERT;
    ks.cert = cert;
    ks.cert_len = 300;
    fill(ks.ca_pin, sizeof ks.ca_pin);
    ks.cloud.user_len = ks.cloud.secret_len = 0;
    CHECK_OK(otk_keyset_encode_v(&ks, OTK_PROTO_V2, pt, sizeof pt, &len));
    CHECK(len == 1u + 32u + 7u + 1u + 12u + 2u + 300u + 32u);
    CHECK_OK(otk_keyset_decode_v(pt, len, OTK_PROTO_V2, &back));
    CHECK(back.kind == OTK_KIND_CERT && back.cert_len == 300 && back.cert == pt + 55 &&
          !memcmp(back.cert, cert, 300) && !memcmp(back.ca_pin, ks.ca_pin, 32) &&
          !memcmp(back.ak, ks.ak, 32) && back.cloud.port == 8883 && back.cloud.user_len == 0);
    CHECK_ST(otk_keyset_decode_v(pt, len - 1, OTK_PROTO_V2, &back), OTK_ERR_TRUNCATED);
    CHECK(otk_keyset_decode_v(pt, len, OTK_PROTO_VERSION, &back) != OTK_OK);
    CHECK_ST(otk_keyset_encode_v(&ks, OTK_PROTO_VERSION, buf, sizeof buf, &len2), OTK_ERR_BAD_VALUE);
    ks.cert_len = OTK_CERT_MAX + 1;
    CHECK_ST(otk_keyset_encode_v(&ks, OTK_PROTO_V2, pt, sizeof pt, &len2), OTK_ERR_BAD_LENGTH);
    ks.cert_len = OTK_CERT_MAX;
    ks.cloud.host_len = OTK_HOST_MAX;
    memset(ks.cloud.host, 'h', OTK_HOST_MAX);
    CHECK_OK(otk_keyset_encode_v(&ks, OTK_PROTO_V2, pt, sizeof pt, &len));
    CHECK(len == OTK_KEYSET2_MAX_LEN);
    ks.cloud.flags = 0; /* a certificate cloud without TLS */
    CHECK_ST(otk_keyset_encode_v(&ks, OTK_PROTO_V2, pt, sizeof pt, &len2), OTK_ERR_BAD_VALUE);
    pt[39] = 0;
    CHECK_ST(otk_keyset_decode_v(pt, len, OTK_PROTO_V2, &back), OTK_ERR_BAD_VALUE);
    pt[39] = 3; /* a reserved flag bit */
    CHECK_ST(otk_keyset_decode_v(pt, len, OTK_PROTO_V2, &back), OTK_ERR_BAD_VALUE);
    pt[39] = 1;
    pt[0] = 3; /* no such kind */
    CHECK_ST(otk_keyset_decode_v(pt, len, OTK_PROTO_V2, &back), OTK_ERR_BAD_VALUE);
    pt[0] = 2;
    otk_put_u16(pt + 41 + OTK_HOST_MAX, 0);
    CHECK_ST(otk_keyset_decode_v(pt, len, OTK_PROTO_V2, &back), OTK_ERR_BAD_LENGTH);
}

static void test_helpers(void)
{
    uint8_t b[4];
    CHECK(otk_crc32(0, (const uint8_t *)"123456789", 9) == 0xcbf43926u);
    otk_put_u32(b, 0x01020304u);
    CHECK(b[0] == 1 && b[3] == 4 && otk_get_u32(b) == 0x01020304u);
    otk_put_u16(b, 0xfffe);
    CHECK(otk_get_u16(b) == 0xfffe);
    CHECK(strcmp(otk_strerror(OTK_ERR_BAD_MAC), "BAD_MAC") == 0);
    CHECK(strcmp(otk_msg_name(OTK_MSG_NACK), "NACK") == 0);
    CHECK(otk_ct_compare("abc", "abd", 3) != 0 && otk_ct_compare("abc", "abc", 3) == 0);
    {
        uint8_t raw[3] = {0x00, 0xaf, 0x7e}, back[3];
        char hex[7];
        otk_hex_encode(raw, 3, hex);
        CHECK(strcmp(hex, "00af7e") == 0);
        CHECK(otk_hex_decode("00AF7e", back, 3) == 0 && memcmp(back, raw, 3) == 0);
        CHECK(otk_hex_decode("00af7", back, 3) == -1);
        CHECK(otk_hex_decode("00af7e0", back, 3) == -1);
        CHECK(otk_hex_decode("00ag7e", back, 3) == -1);
        CHECK(otk_hex_decode(NULL, back, 3) == -1);
    }
}

int main(void)
{
    otk_testrng_seed(&rng, 1);
    test_sizes_and_roundtrip();
    test_refusals();
    test_keyset();
    test_v2();
    test_helpers();
    return CHECK_DONE();
}
