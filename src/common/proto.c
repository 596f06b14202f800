/*
 * Key schedule and authenticators (docs/protocol.md §5). Both ends use
 * these functions, so a change of construction is made in one place.
 */
#include "internal.h"

static otk_status mac_compute(const otk_crypto *c, const uint8_t *key, size_t key_len,
                              const uint8_t *msg, size_t auth_off, const uint8_t *extra,
                              size_t extra_len, uint8_t full[32])
{
    otk_iov parts[2];
    parts[0].p = msg;
    parts[0].n = auth_off;
    parts[1].p = extra;
    parts[1].n = extra ? extra_len : 0;
    return c->hmac_sha256(c->ctx, key, key_len, parts, 2, full);
}

otk_status otk_mac_write(const otk_crypto *c, const uint8_t *key, size_t key_len, uint8_t *msg,
                         size_t auth_off, const uint8_t *extra, size_t extra_len)
{
    uint8_t full[32];
    otk_status st;
    if (c == NULL || key == NULL || msg == NULL || auth_off == 0)
        return OTK_ERR_INVALID_ARGUMENT;
    st = mac_compute(c, key, key_len, msg, auth_off, extra, extra_len, full);
    if (st == OTK_OK)
        memcpy(msg + auth_off, full, OTK_MAC_LEN);
    otk_wipe(full, sizeof full);
    return st;
}

otk_status otk_mac_check(const otk_crypto *c, const uint8_t *key, size_t key_len,
                         const uint8_t *msg, size_t auth_off, const uint8_t *extra,
                         size_t extra_len)
{
    uint8_t full[32];
    otk_status st;
    if (c == NULL || key == NULL || msg == NULL || auth_off == 0)
        return OTK_ERR_INVALID_ARGUMENT;
    st = mac_compute(c, key, key_len, msg, auth_off, extra, extra_len, full);
    if (st == OTK_OK && otk_ct_compare(full, msg + auth_off, OTK_MAC_LEN) != 0)
        st = OTK_ERR_BAD_MAC;
    otk_wipe(full, sizeof full);
    return st;
}

otk_status otk_transcript(const otk_crypto *c, const uint8_t *msg, size_t len, uint8_t th[32])
{
    otk_iov part;
    if (c == NULL || msg == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    part.p = msg;
    part.n = len;
    return c->sha256(c->ctx, &part, 1, th);
}

otk_status otk_resp_keys(const otk_crypto *c, const uint8_t th[32], const uint8_t ss[32],
                         const uint8_t *ak, const uint8_t agent_epub[64], uint8_t key[16],
                         uint8_t iv[13])
{
    return otk_resp_keys_v(c, OTK_PROTO_VERSION, th, ss, ak, agent_epub, key, iv);
}

otk_status otk_resp_keys_v(const otk_crypto *c, uint8_t proto, const uint8_t th[32],
                           const uint8_t ss[32], const uint8_t *ak, const uint8_t agent_epub[64],
                           uint8_t key[16], uint8_t iv[13])
{
    /* Both labels have the same length. */
    static const char label1[] = OTK_LABEL_KEYSET, label2[] = OTK_LABEL_KEYSET2;
    const char *label = proto == OTK_PROTO_V2 ? label2 : label1;
    uint8_t ikm[32 + OTK_AK_LEN], prk[32], info[sizeof label1 - 1 + OTK_PUB_LEN];
    uint8_t okm[OTK_AEAD_KEY_LEN + OTK_AEAD_IV_LEN];
    size_t ikm_len = 32;
    otk_status st;
    if (c == NULL || th == NULL || ss == NULL || agent_epub == NULL || key == NULL || iv == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    memcpy(ikm, ss, 32);
    st = OTK_OK;
    if (ak != NULL) {
        /* Version 2 mixes in HMAC(AK, label || th), not the AK itself:
         * the AK may then be a key a crypto port holds and never hands out. */
        static const char aklabel[] = OTK_LABEL_AK2;
        if (proto == OTK_PROTO_V2)
            st = mac_compute(c, ak, OTK_AK_LEN, (const uint8_t *)aklabel, sizeof aklabel - 1, th,
                             32, ikm + 32);
        else
            memcpy(ikm + 32, ak, OTK_AK_LEN);
        ikm_len += OTK_AK_LEN;
    }
    memcpy(info, label, sizeof label1 - 1);
    memcpy(info + sizeof label1 - 1, agent_epub, OTK_PUB_LEN);
    if (st == OTK_OK)
        st = c->hkdf_extract(c->ctx, th, 32, ikm, ikm_len, prk);
    if (st == OTK_OK)
        st = c->hkdf_expand(c->ctx, prk, info, sizeof info, okm, sizeof okm);
    if (st == OTK_OK) {
        memcpy(key, okm, OTK_AEAD_KEY_LEN);
        memcpy(iv, okm + OTK_AEAD_KEY_LEN, OTK_AEAD_IV_LEN);
    }
    otk_wipe(ikm, sizeof ikm);
    otk_wipe(prk, sizeof prk);
    otk_wipe(okm, sizeof okm);
    return st;
}

otk_status otk_resp_digest(const otk_crypto *c, const uint8_t th[32], const uint8_t *resp,
                           size_t auth_off, uint8_t digest[32])
{
    static const char label1[] = OTK_LABEL_SIG_RESP, label2[] = OTK_LABEL_SIG_RESP2;
    otk_iov parts[3];
    if (c == NULL || th == NULL || resp == NULL || digest == NULL || auth_off == 0)
        return OTK_ERR_INVALID_ARGUMENT;
    parts[0].p = resp[0] == OTK_PROTO_V2 ? label2 : label1;
    parts[0].n = sizeof label1 - 1;
    parts[1].p = th;
    parts[1].n = 32;
    parts[2].p = resp;
    parts[2].n = auth_off;
    return c->sha256(c->ctx, parts, 3, digest);
}

otk_status otk_nack_digest(const otk_crypto *c, const uint8_t *nack, uint8_t digest[32])
{
    static const char label1[] = OTK_LABEL_SIG_NACK, label2[] = OTK_LABEL_SIG_NACK2;
    otk_iov parts[2];
    if (c == NULL || nack == NULL || digest == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    parts[0].p = nack[0] == OTK_PROTO_V2 ? label2 : label1;
    parts[0].n = sizeof label1 - 1;
    parts[1].p = nack;
    parts[1].n = OTK_NACK_LEN - OTK_SIG_LEN;
    return c->sha256(c->ctx, parts, 2, digest);
}

otk_status otk_pop_digest(const otk_crypto *c, const uint8_t *msg, size_t pop_off,
                          uint8_t digest[32])
{
    static const char label[] = OTK_LABEL_POP;
    otk_iov parts[2];
    if (c == NULL || msg == NULL || digest == NULL || pop_off == 0)
        return OTK_ERR_INVALID_ARGUMENT;
    parts[0].p = label;
    parts[0].n = sizeof label - 1;
    parts[1].p = msg;
    parts[1].n = pop_off;
    return c->sha256(c->ctx, parts, 2, digest);
}

/* Offset of the ciphertext in a *_RESP message: header, version, E_a, ct_len. */
#define RESP_CT_OFF (OTK_HDR_LEN + 4u + OTK_PUB_LEN + 2u)

/* AEAD additional data: th || resp[0..RESP_CT_OFF). */
static void resp_aad(const uint8_t th[32], const uint8_t *resp, uint8_t aad[32 + RESP_CT_OFF])
{
    memcpy(aad, th, 32);
    memcpy(aad + 32, resp, RESP_CT_OFF);
}

otk_status otk_resp_build(const otk_crypto *c, uint8_t type, const uint8_t device_id[16],
                          const uint8_t th[32], const uint8_t dev_epub[64], const uint8_t *ak,
                          const otk_keyset *ks, const uint8_t sign_priv[32], uint8_t *out,
                          size_t out_size, size_t *out_len)
{
    return otk_resp_build_v(c, OTK_PROTO_VERSION, type, device_id, th, dev_epub, ak, ks, sign_priv,
                            out, out_size, out_len);
}

otk_status otk_resp_build_v(const otk_crypto *c, uint8_t proto, uint8_t type,
                            const uint8_t device_id[16], const uint8_t th[32],
                            const uint8_t dev_epub[64], const uint8_t *ak, const otk_keyset *ks,
                            const uint8_t sign_priv[32], uint8_t *out, size_t out_size,
                            size_t *out_len)
{
    uint8_t pt[OTK_KEYSET2_MAX_LEN], e_priv[OTK_PRIV_LEN], ss[32], key[16], iv[13];
    uint8_t aad[32 + RESP_CT_OFF], digest[32];
    size_t pt_len = 0, len = 0, auth_off;
    otk_msg m;
    otk_status st;
    if (c == NULL || device_id == NULL || th == NULL || dev_epub == NULL || ks == NULL ||
        sign_priv == NULL || out == NULL || out_len == NULL ||
        (type != OTK_MSG_CLAIM_RESP && type != OTK_MSG_UPDATE_RESP))
        return OTK_ERR_INVALID_ARGUMENT;
    memset(&m, 0, sizeof m);
    proto = proto == OTK_PROTO_V2 ? OTK_PROTO_V2 : OTK_PROTO_VERSION;
    st = otk_keyset_encode_v(ks, proto, pt, sizeof pt, &pt_len);
    if (st == OTK_OK)
        st = c->ec_keygen(c->ctx, OTK_KEY_EPHEMERAL, e_priv, m.epub);
    if (st == OTK_OK)
        st = c->ecdh(c->ctx, e_priv, dev_epub, ss);
    if (st == OTK_OK)
        st = otk_resp_keys_v(c, proto, th, ss, ak, m.epub, key, iv);
    if (st == OTK_OK) {
        /* Lay the message out with the plaintext in the ciphertext's place,
         * then encrypt in place and sign. */
        m.proto = proto;
        m.type = type;
        memcpy(m.device_id, device_id, OTK_DEVICE_ID_LEN);
        m.version = ks->version;
        m.ct = pt;
        m.ct_len = (uint16_t)(pt_len + OTK_AEAD_TAG_LEN);
        st = otk_msg_encode(&m, out, out_size, &len);
    }
    if (st == OTK_OK) {
        resp_aad(th, out, aad);
        st = c->ccm_encrypt(c->ctx, key, iv, aad, sizeof aad, out + RESP_CT_OFF, pt_len,
                            out + RESP_CT_OFF, out + RESP_CT_OFF + pt_len);
    }
    if (st == OTK_OK) {
        auth_off = otk_msg_auth_offset(type, len);
        st = otk_resp_digest(c, th, out, auth_off, digest);
        if (st == OTK_OK)
            st = c->ecdsa_sign(c->ctx, sign_priv, digest, out + auth_off);
    }
    if (st == OTK_OK)
        *out_len = len;
    else if (len > 0)
        otk_wipe(out, len);
    otk_wipe(pt, sizeof pt);
    otk_wipe(e_priv, sizeof e_priv);
    otk_wipe(ss, sizeof ss);
    otk_wipe(key, sizeof key);
    otk_wipe(iv, sizeof iv);
    return st;
}

otk_status otk_resp_open_pt(const otk_crypto *c, const uint8_t *resp, size_t len,
                            const otk_msg *m, const uint8_t th[32], const uint8_t eph_priv[32],
                            const uint8_t *ak, const uint8_t agent_pub[64], uint8_t *pt,
                            size_t pt_size, size_t *pt_len)
{
    uint8_t ss[32], key[16], iv[13], aad[32 + RESP_CT_OFF], digest[32];
    size_t n, auth_off;
    otk_status st;
    if (c == NULL || resp == NULL || m == NULL || th == NULL || eph_priv == NULL ||
        agent_pub == NULL || pt == NULL || pt_len == NULL || m->ct != resp + RESP_CT_OFF ||
        m->ct_len < OTK_CT_MIN || m->ct_len > OTK_CT2_MAX || resp[0] != m->proto ||
        (m->proto != OTK_PROTO_V2 && m->ct_len > OTK_CT_MAX))
        return OTK_ERR_INVALID_ARGUMENT;
    n = (size_t)m->ct_len - OTK_AEAD_TAG_LEN;
    if (pt_size < n)
        return OTK_ERR_BUFFER_TOO_SMALL;
    auth_off = otk_msg_auth_offset(m->type, len);
    /* Signature first: nothing is derived from an unauthenticated response. */
    st = otk_resp_digest(c, th, resp, auth_off, digest);
    if (st == OTK_OK)
        st = c->ecdsa_verify(c->ctx, agent_pub, digest, resp + auth_off);
    if (st == OTK_OK)
        st = c->ecdh(c->ctx, eph_priv, m->epub, ss);
    if (st == OTK_OK)
        st = otk_resp_keys_v(c, m->proto, th, ss, ak, m->epub, key, iv);
    if (st == OTK_OK) {
        resp_aad(th, resp, aad);
        st = c->ccm_decrypt(c->ctx, key, iv, aad, sizeof aad, m->ct, n, m->ct + n, pt);
    }
    if (st == OTK_OK)
        *pt_len = n;
    else
        otk_wipe(pt, n);
    otk_wipe(ss, sizeof ss);
    otk_wipe(key, sizeof key);
    otk_wipe(iv, sizeof iv);
    return st;
}

otk_status otk_resp_open(const otk_crypto *c, const uint8_t *resp, size_t len, const otk_msg *m,
                         const uint8_t th[32], const uint8_t eph_priv[32], const uint8_t *ak,
                         const uint8_t agent_pub[64], otk_keyset *out)
{
    uint8_t pt[OTK_KEYSET_MAX_LEN];
    size_t pt_len = 0;
    otk_status st;
    if (out == NULL || m == NULL || m->proto == OTK_PROTO_V2)
        return OTK_ERR_INVALID_ARGUMENT; /* version 2: otk_resp_open_pt */
    st = otk_resp_open_pt(c, resp, len, m, th, eph_priv, ak, agent_pub, pt, sizeof pt, &pt_len);
    if (st == OTK_OK)
        st = otk_keyset_decode(pt, pt_len, out);
    if (st == OTK_OK)
        out->version = m->version;
    otk_wipe(pt, sizeof pt);
    return st;
}
