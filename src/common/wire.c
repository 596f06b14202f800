/*
 * Message codec. Each type's layout after the 18-byte header is a list of
 * fields; one walker encodes or decodes it, so the two directions cannot
 * disagree on a layout (docs/protocol.md §4).
 */
#include <stddef.h>

#include "internal.h"

enum field {
    F_END = 0, F_BATCH, F_VERSION, F_NONCE, F_EPUB, F_CODE, F_REF, F_CT, F_MAC, F_SIG,
    /* version 2 */
    F_DPUB, F_POP, F_KEY, F_KIND
};

static const uint8_t layouts[OTK_MSG_TYPE_MAX + 1][8] = {
    [OTK_MSG_CLAIM] = {F_BATCH, F_NONCE, F_EPUB, F_MAC},
    [OTK_MSG_CLAIM_RESP] = {F_VERSION, F_EPUB, F_CT, F_SIG},
    [OTK_MSG_UPDATE_REQ] = {F_VERSION, F_NONCE, F_EPUB, F_MAC},
    [OTK_MSG_UPDATE_RESP] = {F_VERSION, F_EPUB, F_CT, F_SIG},
    [OTK_MSG_CONFIRM] = {F_VERSION, F_MAC},
    [OTK_MSG_ABORT] = {F_VERSION, F_CODE, F_MAC},
    [OTK_MSG_ACK] = {F_VERSION, F_MAC},
    [OTK_MSG_NACK] = {F_VERSION, F_CODE, F_SIG},
    [OTK_MSG_NOTIFY] = {F_VERSION, F_MAC},
    [OTK_MSG_STATUS] = {F_VERSION, F_CODE, F_MAC},
    [OTK_MSG_ERROR] = {F_REF, F_CODE},
};

/* Version 2 differs in three layouts (docs/protocol.md §11.2); F_KEY is a
 * flag byte: D_pub and pop follow only when it is 1. */
static const uint8_t layouts2[OTK_MSG_TYPE_MAX + 1][8] = {
    [OTK_MSG_CLAIM] = {F_BATCH, F_NONCE, F_EPUB, F_DPUB, F_POP, F_MAC},
    [OTK_MSG_CLAIM_RESP] = {F_VERSION, F_EPUB, F_CT, F_SIG},
    [OTK_MSG_UPDATE_REQ] = {F_VERSION, F_NONCE, F_EPUB, F_KEY, F_DPUB, F_POP, F_MAC},
    [OTK_MSG_UPDATE_RESP] = {F_VERSION, F_EPUB, F_CT, F_SIG},
    [OTK_MSG_CONFIRM] = {F_VERSION, F_MAC},
    [OTK_MSG_ABORT] = {F_VERSION, F_CODE, F_MAC},
    [OTK_MSG_ACK] = {F_VERSION, F_MAC},
    [OTK_MSG_NACK] = {F_VERSION, F_CODE, F_SIG},
    [OTK_MSG_NOTIFY] = {F_VERSION, F_KIND, F_MAC},
    [OTK_MSG_STATUS] = {F_VERSION, F_CODE, F_MAC},
    [OTK_MSG_ERROR] = {F_REF, F_CODE},
};

static const uint8_t *layout(uint8_t proto, uint8_t type)
{
    return proto == OTK_PROTO_V2 ? layouts2[type] : layouts[type];
}

static const char *const names[OTK_MSG_TYPE_MAX + 1] = {
    "?", "CLAIM", "CLAIM_RESP", "UPDATE_REQ", "UPDATE_RESP", "CONFIRM",
    "ABORT", "ACK", "NACK", "NOTIFY", "STATUS", "ERROR",
};

const char *otk_msg_name(uint8_t type)
{
    return type <= OTK_MSG_TYPE_MAX ? names[type] : "?";
}

/*
 * Each field's size on the wire (F_CT: plus ct_len) and, for the fields
 * that are byte strings copied as they are, where they sit in otk_msg.
 */
static const struct {
    uint8_t size;
    uint8_t bytes;  /* copied as they are */
    uint16_t at;    /* offsetof(otk_msg, ...) when bytes */
} fields[] = {
    [F_BATCH] = {OTK_BATCH_ID_LEN, 1, offsetof(otk_msg, batch_id)},
    [F_VERSION] = {4, 0, 0},
    [F_NONCE] = {OTK_NONCE_LEN, 1, offsetof(otk_msg, nonce)},
    [F_EPUB] = {OTK_PUB_LEN, 1, offsetof(otk_msg, epub)},
    [F_CODE] = {2, 0, 0},
    [F_REF] = {2, 0, 0}, /* ref type + reserved zero byte */
    [F_CT] = {2, 0, 0},
    [F_MAC] = {OTK_MAC_LEN, 1, offsetof(otk_msg, mac)},
    [F_SIG] = {OTK_SIG_LEN, 1, offsetof(otk_msg, sig)},
    [F_DPUB] = {OTK_PUB_LEN, 1, offsetof(otk_msg, dpub)},
    [F_POP] = {OTK_SIG_LEN, 1, offsetof(otk_msg, pop)},
    [F_KEY] = {1, 0, 0},
    [F_KIND] = {2, 0, 0}, /* kind + reserved zero byte */
};

static size_t field_size(uint8_t f, size_t ct_len)
{
    return f == F_CT ? 2u + ct_len : fields[f].size;
}

/* Fields of a layout that are present: after a F_KEY of 0, D_pub and pop are not. */
static int present(uint8_t f, int has_key)
{
    return has_key || (f != F_DPUB && f != F_POP);
}

static uint8_t proto_of(uint8_t proto)
{
    return proto == OTK_PROTO_V2 ? OTK_PROTO_V2 : OTK_PROTO_VERSION;
}

static int valid_type(uint8_t type)
{
    return type >= 1 && type <= OTK_MSG_TYPE_MAX;
}

static size_t size_v(uint8_t proto, uint8_t type, size_t ct_len, int has_key)
{
    size_t n = OTK_HDR_LEN;
    const uint8_t *f;
    if (!valid_type(type))
        return 0;
    /* A version 2 CLAIM always carries the key. */
    if (proto == OTK_PROTO_V2 && type == OTK_MSG_CLAIM)
        has_key = 1;
    for (f = layout(proto, type); *f != F_END; f++)
        if (present(*f, has_key))
            n += field_size(*f, ct_len);
    return n;
}

size_t otk_msg_size(uint8_t type, size_t ct_len)
{
    return size_v(OTK_PROTO_VERSION, type, ct_len, 0);
}

size_t otk_msg_size_of(const otk_msg *m)
{
    return m ? size_v(proto_of(m->proto), m->type, m->ct_len, m->has_key != 0) : 0;
}

size_t otk_msg_pop_offset(const uint8_t *msg, size_t len)
{
    if (msg == NULL || len < OTK_HDR_LEN || msg[0] != OTK_PROTO_V2)
        return 0;
    if (msg[1] == OTK_MSG_CLAIM && len == OTK_CLAIM2_LEN)
        return OTK_CLAIM2_LEN - OTK_MAC_LEN - OTK_SIG_LEN;
    if (msg[1] == OTK_MSG_UPDATE_REQ && len == OTK_UPDATE_REQ2_KEY_LEN && msg[102] == 1)
        return OTK_UPDATE_REQ2_KEY_LEN - OTK_MAC_LEN - OTK_SIG_LEN;
    return 0;
}

size_t otk_msg_auth_offset(uint8_t type, size_t msg_len)
{
    if (!valid_type(type) || type == OTK_MSG_ERROR)
        return 0;
    if (type == OTK_MSG_CLAIM_RESP || type == OTK_MSG_UPDATE_RESP || type == OTK_MSG_NACK)
        return msg_len >= OTK_SIG_LEN ? msg_len - OTK_SIG_LEN : 0;
    return msg_len >= OTK_MAC_LEN ? msg_len - OTK_MAC_LEN : 0;
}

otk_status otk_msg_encode(const otk_msg *m, uint8_t *out, size_t out_size, size_t *out_len)
{
    const uint8_t *f;
    size_t need, off = OTK_HDR_LEN;
    uint8_t proto;
    int has_key;
    if (m == NULL || out == NULL || out_len == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    if (!valid_type(m->type))
        return OTK_ERR_UNKNOWN_TYPE;
    proto = proto_of(m->proto);
    has_key = proto == OTK_PROTO_V2 && (m->type == OTK_MSG_CLAIM || m->has_key);
    if ((m->type == OTK_MSG_CLAIM_RESP || m->type == OTK_MSG_UPDATE_RESP) &&
        (m->ct == NULL || m->ct_len < (proto == OTK_PROTO_V2 ? OTK_CT2_MIN : OTK_CT_MIN) ||
         m->ct_len > (proto == OTK_PROTO_V2 ? OTK_CT2_MAX : OTK_CT_MAX)))
        return OTK_ERR_BAD_LENGTH;
    need = size_v(proto, m->type, m->ct_len, has_key);
    if (out_size < need)
        return OTK_ERR_BUFFER_TOO_SMALL;
    out[0] = proto;
    out[1] = m->type;
    memcpy(out + 2, m->device_id, OTK_DEVICE_ID_LEN);
    for (f = layout(proto, m->type); *f != F_END; f++) {
        uint8_t *p = out + off;
        if (!present(*f, has_key))
            continue;
        if (fields[*f].bytes) {
            memcpy(p, (const uint8_t *)m + fields[*f].at, fields[*f].size);
        } else {
            switch (*f) {
            case F_VERSION: otk_put_u32(p, m->version); break;
            case F_CODE: otk_put_u16(p, (uint16_t)m->code); break;
            case F_REF: p[0] = m->ref_type; p[1] = 0; break;
            case F_CT:
                otk_put_u16(p, m->ct_len);
                memmove(p + 2, m->ct, m->ct_len); /* ct may already sit in out */
                break;
            case F_KEY: p[0] = (uint8_t)has_key; break;
            case F_KIND: p[0] = m->kind; p[1] = 0; break;
            default: return OTK_ERR_INTERNAL;
            }
        }
        off += field_size(*f, m->ct_len);
    }
    *out_len = off;
    return OTK_OK;
}

otk_status otk_msg_decode(const uint8_t *in, size_t len, otk_msg *m)
{
    const uint8_t *f;
    size_t off = OTK_HDR_LEN;
    int has_key = 0;
    if (m == NULL || (in == NULL && len > 0))
        return OTK_ERR_INVALID_ARGUMENT;
    memset(m, 0, sizeof *m);
    if (len < OTK_HDR_LEN)
        return OTK_ERR_TRUNCATED;
    if (in[0] != OTK_PROTO_VERSION && in[0] != OTK_PROTO_V2)
        return OTK_ERR_UNKNOWN_VERSION;
    if (!valid_type(in[1]))
        return OTK_ERR_UNKNOWN_TYPE;
    m->proto = in[0];
    m->type = in[1];
    memcpy(m->device_id, in + 2, OTK_DEVICE_ID_LEN);
    if (m->proto == OTK_PROTO_V2 && m->type == OTK_MSG_CLAIM)
        has_key = 1;
    for (f = layout(m->proto, m->type); *f != F_END; f++) {
        const uint8_t *p = in + off;
        size_t left = len - off, sz;
        if (!present(*f, has_key))
            continue;
        if (*f == F_CT) {
            if (left < 2)
                return OTK_ERR_TRUNCATED;
            m->ct_len = otk_get_u16(p);
            if (m->ct_len < (m->proto == OTK_PROTO_V2 ? OTK_CT2_MIN : OTK_CT_MIN) ||
                m->ct_len > (m->proto == OTK_PROTO_V2 ? OTK_CT2_MAX : OTK_CT_MAX))
                return OTK_ERR_BAD_LENGTH;
        }
        sz = field_size(*f, m->ct_len);
        if (left < sz)
            return OTK_ERR_TRUNCATED;
        if (fields[*f].bytes) {
            memcpy((uint8_t *)m + fields[*f].at, p, fields[*f].size);
            off += sz;
            continue;
        }
        switch (*f) {
        case F_VERSION: m->version = otk_get_u32(p); break;
        case F_CODE: m->code = (int16_t)otk_get_u16(p); break;
        case F_REF:
            m->ref_type = p[0];
            if (p[1] != 0)
                return OTK_ERR_BAD_VALUE;
            break;
        case F_CT: m->ct = p + 2; break;
        case F_KEY:
            if (p[0] > 1)
                return OTK_ERR_BAD_VALUE;
            has_key = p[0];
            break;
        case F_KIND:
            m->kind = p[0];
            if (p[1] != 0 || (p[0] != OTK_KIND_PASSWORD && p[0] != OTK_KIND_CERT))
                return OTK_ERR_BAD_VALUE;
            break;
        default: return OTK_ERR_INTERNAL;
        }
        off += sz;
    }
    m->has_key = (uint8_t)has_key;
    if (off != len)
        return OTK_ERR_TRAILING;
    return OTK_OK;
}

/* ---- key-set plaintext ---- */

static int printable(const char *s, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if ((uint8_t)s[i] < 0x21 || (uint8_t)s[i] > 0x7e)
            return 0;
    return 1;
}

static otk_status check_string(const char *s, size_t n, size_t max)
{
    if (n == 0 || n > max)
        return OTK_ERR_BAD_LENGTH;
    return printable(s, n) ? OTK_OK : OTK_ERR_BAD_VALUE;
}

static otk_status check_cloud(const otk_cloud *c)
{
    OTK_TRY(check_string(c->host, c->host_len, OTK_HOST_MAX));
    OTK_TRY(check_string(c->user, c->user_len, OTK_USER_MAX));
    return check_string(c->secret, c->secret_len, OTK_SECRET_MAX);
}

otk_status otk_cloud_set(otk_cloud *c, uint32_t cloud_id, const char *host, uint16_t port,
                         uint8_t flags, const char *user, const char *secret)
{
    otk_cloud t;
    size_t hl, ul, sl;
    if (c == NULL || host == NULL || user == NULL || secret == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    hl = strlen(host);
    ul = strlen(user);
    sl = strlen(secret);
    if (hl > OTK_HOST_MAX || ul > OTK_USER_MAX || sl > OTK_SECRET_MAX)
        return OTK_ERR_BAD_LENGTH;
    memset(&t, 0, sizeof t);
    t.cloud_id = cloud_id;
    t.port = port;
    t.flags = flags;
    t.host_len = (uint8_t)hl;
    t.user_len = (uint8_t)ul;
    t.secret_len = (uint8_t)sl;
    memcpy(t.host, host, hl);
    memcpy(t.user, user, ul);
    memcpy(t.secret, secret, sl);
    OTK_TRY(check_cloud(&t));
    *c = t;
    otk_wipe(&t, sizeof t);
    return OTK_OK;
}

static uint8_t *put_str(uint8_t *p, const char *s, uint8_t n)
{
    *p++ = n;
    memcpy(p, s, n);
    return p + n;
}

otk_status otk_keyset_encode_v(const otk_keyset *ks, uint8_t proto, uint8_t *out,
                               size_t out_size, size_t *out_len)
{
    const otk_cloud *c;
    size_t need;
    uint8_t *p = out;
    uint8_t kind;
    if (ks == NULL || out == NULL || out_len == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    c = &ks->cloud;
    kind = ks->kind ? ks->kind : OTK_KIND_PASSWORD;
    if (proto != OTK_PROTO_V2 && kind != OTK_KIND_PASSWORD)
        return OTK_ERR_BAD_VALUE; /* version 1 has only passwords */
    if (kind == OTK_KIND_PASSWORD) {
        OTK_TRY(check_cloud(c));
        need = OTK_KEYSET_FIXED_LEN + c->host_len + c->user_len + c->secret_len;
    } else if (kind == OTK_KIND_CERT) {
        OTK_TRY(check_string(c->host, c->host_len, OTK_HOST_MAX));
        if (ks->cert == NULL || ks->cert_len == 0 || ks->cert_len > OTK_CERT_MAX)
            return OTK_ERR_BAD_LENGTH;
        if (!(c->flags & OTK_CLOUD_FLAG_TLS))
            return OTK_ERR_BAD_VALUE;
        need = OTK_AK_LEN + 7u + 1u + c->host_len + 2u + ks->cert_len + OTK_PIN_LEN;
    } else {
        return OTK_ERR_BAD_VALUE;
    }
    if (proto == OTK_PROTO_V2)
        need++;
    if (out_size < need)
        return OTK_ERR_BUFFER_TOO_SMALL;
    if (proto == OTK_PROTO_V2)
        *p++ = kind;
    memcpy(p, ks->ak, OTK_AK_LEN);
    p += OTK_AK_LEN;
    otk_put_u32(p, c->cloud_id);
    otk_put_u16(p + 4, c->port);
    p[6] = c->flags;
    p += 7;
    p = put_str(p, c->host, c->host_len);
    if (kind == OTK_KIND_PASSWORD) {
        p = put_str(p, c->user, c->user_len);
        p = put_str(p, c->secret, c->secret_len);
    } else {
        otk_put_u16(p, ks->cert_len);
        memcpy(p + 2, ks->cert, ks->cert_len);
        memcpy(p + 2 + ks->cert_len, ks->ca_pin, OTK_PIN_LEN);
        p += 2u + ks->cert_len + OTK_PIN_LEN;
    }
    *out_len = (size_t)(p - out);
    return OTK_OK;
}

otk_status otk_keyset_encode(const otk_keyset *ks, uint8_t *out, size_t out_size, size_t *out_len)
{
    return otk_keyset_encode_v(ks, OTK_PROTO_VERSION, out, out_size, out_len);
}

/* Reads one length-prefixed string into dst (max bytes + NUL). */
static otk_status get_str(const uint8_t **pp, size_t *left, char *dst, uint8_t *dlen, size_t max)
{
    uint8_t n;
    if (*left < 1)
        return OTK_ERR_TRUNCATED;
    n = **pp;
    if (n == 0 || n > max)
        return OTK_ERR_BAD_LENGTH;
    if (*left - 1 < n)
        return OTK_ERR_TRUNCATED;
    memcpy(dst, *pp + 1, n);
    dst[n] = '\0';
    if (!printable(dst, n))
        return OTK_ERR_BAD_VALUE;
    *dlen = n;
    *pp += 1u + n;
    *left -= 1u + n;
    return OTK_OK;
}

otk_status otk_keyset_decode_v(const uint8_t *in, size_t len, uint8_t proto, otk_keyset *out)
{
    otk_keyset t;
    otk_status st;
    const uint8_t *p = in;
    size_t left = len;
    if (out == NULL || (in == NULL && len > 0))
        return OTK_ERR_INVALID_ARGUMENT;
    memset(&t, 0, sizeof t);
    t.kind = OTK_KIND_PASSWORD;
    if (proto == OTK_PROTO_V2) {
        if (left < 1) {
            st = OTK_ERR_TRUNCATED;
            goto out;
        }
        t.kind = *p++;
        left--;
        if (t.kind != OTK_KIND_PASSWORD && t.kind != OTK_KIND_CERT) {
            st = OTK_ERR_BAD_VALUE;
            goto out;
        }
    }
    if (left < OTK_AK_LEN + 7u) {
        st = OTK_ERR_TRUNCATED;
        goto out;
    }
    memcpy(t.ak, p, OTK_AK_LEN);
    t.cloud.cloud_id = otk_get_u32(p + OTK_AK_LEN);
    t.cloud.port = otk_get_u16(p + OTK_AK_LEN + 4);
    t.cloud.flags = p[OTK_AK_LEN + 6];
    p += OTK_AK_LEN + 7u;
    left -= OTK_AK_LEN + 7u;
    st = get_str(&p, &left, t.cloud.host, &t.cloud.host_len, OTK_HOST_MAX);
    if (st == OTK_OK && t.kind == OTK_KIND_PASSWORD) {
        st = get_str(&p, &left, t.cloud.user, &t.cloud.user_len, OTK_USER_MAX);
        if (st == OTK_OK)
            st = get_str(&p, &left, t.cloud.secret, &t.cloud.secret_len, OTK_SECRET_MAX);
    } else if (st == OTK_OK) {
        /* certificate: cl, DER, ca_pin; a certificate cloud is reached over TLS only */
        if (left < 2u)
            st = OTK_ERR_TRUNCATED;
        else if ((t.cert_len = otk_get_u16(p)) == 0 || t.cert_len > OTK_CERT_MAX)
            st = OTK_ERR_BAD_LENGTH;
        else if (left - 2u < (size_t)t.cert_len + OTK_PIN_LEN)
            st = OTK_ERR_TRUNCATED;
        else if (!(t.cloud.flags & OTK_CLOUD_FLAG_TLS))
            st = OTK_ERR_BAD_VALUE;
        if (st == OTK_OK) {
            t.cert = p + 2;
            memcpy(t.ca_pin, p + 2 + t.cert_len, OTK_PIN_LEN);
            p += 2u + t.cert_len + OTK_PIN_LEN;
            left -= 2u + t.cert_len + OTK_PIN_LEN;
        }
    }
    if (st == OTK_OK && (t.cloud.flags & (uint8_t)~OTK_CLOUD_FLAG_TLS) && proto == OTK_PROTO_V2)
        st = OTK_ERR_BAD_VALUE; /* reserved flag bits */
    if (st == OTK_OK && left != 0)
        st = OTK_ERR_TRAILING;
    if (st == OTK_OK) {
        t.version = out->version;
        *out = t;
    }
out:
    otk_wipe(&t, sizeof t);
    return st;
}

otk_status otk_keyset_decode(const uint8_t *in, size_t len, otk_keyset *out)
{
    return otk_keyset_decode_v(in, len, OTK_PROTO_VERSION, out);
}
