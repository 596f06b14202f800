/*
 * Agent protocol core (docs/protocol.md §7.2). Each handler reads the
 * device's record, decides, and writes the record back with its audit
 * event in one registry transaction; cloud clients are created before the
 * record that names them is stored, and old ones deleted only after the
 * record that retires them is stored, so a crash between the two steps
 * leaves at worst an unused client, never a device without a valid one.
 */
#include "../internal.h"

/* ---- small helpers ---- */

static otk_status audit(otk_agent *a, uint8_t kind, uint8_t msg_type, const uint8_t *id,
                        uint32_t version, otk_status code)
{
    otk_audit ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = kind;
    ev.msg_type = msg_type;
    if (id != NULL) {
        ev.has_id = 1;
        memcpy(ev.id, id, OTK_DEVICE_ID_LEN);
    }
    ev.version = version;
    ev.code = code;
    return a->reg.audit(a->reg.ctx, &ev);
}

static otk_status put(otk_agent *a, const otk_agent_device *rec, uint8_t kind, uint8_t msg_type,
                      uint32_t version, otk_status code)
{
    otk_audit ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = kind;
    ev.msg_type = msg_type;
    ev.has_id = 1;
    memcpy(ev.id, rec->id, OTK_DEVICE_ID_LEN);
    ev.version = version;
    ev.code = code;
    return a->reg.put_device(a->reg.ctx, rec, kind ? &ev : NULL);
}

static const otk_cloud_endpoint *endpoint(const otk_agent *a, uint32_t cloud_id)
{
    size_t i;
    for (i = 0; i < a->cfg.n_clouds; i++)
        if (a->cfg.clouds[i].cloud_id == cloud_id)
            return &a->cfg.clouds[i];
    return NULL;
}

/* The kind of key set a cloud takes (docs/protocol.md §11.1). */
static uint8_t kind_of(const otk_agent *a, uint32_t cloud_id)
{
    const otk_cloud_endpoint *ep = endpoint(a, cloud_id);
    return ep != NULL && ep->kind == OTK_KIND_CERT ? OTK_KIND_CERT : OTK_KIND_PASSWORD;
}

static uint8_t proto_of(uint8_t p)
{
    return p == OTK_PROTO_V2 ? OTK_PROTO_V2 : OTK_PROTO_VERSION;
}

/*
 * A keyed version 2 request: its pop must verify under the key it carries
 * (the device holds that key, and binds it to this very request).
 */
static otk_status check_pop(otk_agent *a, const otk_msg *m, const uint8_t *in, size_t len)
{
    uint8_t digest[OTK_HASH_LEN];
    size_t off;
    if (!m->has_key)
        return OTK_OK;
    off = otk_msg_pop_offset(in, len);
    if (off == 0)
        return OTK_ERR_BAD_VALUE;
    OTK_TRY(otk_pop_digest(a->crypto, in, off, digest));
    return a->crypto->ecdsa_verify(a->crypto->ctx, m->dpub, digest, m->pop);
}

/* Unpadded base64url of n bytes into out (4 * ceil(n / 3) + 1 bytes). */
static void base64url(const uint8_t *in, size_t n, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t i;
    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];
        *out++ = abc[(v >> 18) & 63];
        *out++ = abc[(v >> 12) & 63];
        *out++ = abc[(v >> 6) & 63];
        *out++ = abc[v & 63];
    }
    *out = '\0';
}

/*
 * A fresh key set for a device on a cloud: random AK, username
 * hex(id)-version (unique per set, so old and new coexist on one cloud)
 * and a secret of 24 random bytes in base64url (32 characters).
 */
static otk_status new_set(otk_agent *a, const uint8_t id[16], uint32_t cloud_id, uint32_t version,
                          otk_keyset *ks)
{
    const otk_cloud_endpoint *ep = endpoint(a, cloud_id);
    char user[OTK_USER_MAX + 1], secret[33];
    uint8_t rnd[24];
    otk_status st;
    if (ep == NULL)
        return OTK_ERR_BAD_VALUE;
    memset(ks, 0, sizeof *ks);
    ks->version = version;
    st = a->crypto->random(a->crypto->ctx, ks->ak, OTK_AK_LEN);
    if (st == OTK_OK)
        st = a->crypto->random(a->crypto->ctx, rnd, sizeof rnd);
    if (st == OTK_OK) {
        otk_hex_encode(id, OTK_DEVICE_ID_LEN, user);
        snprintf(user + 32, sizeof user - 32, "-%lu", (unsigned long)version);
        base64url(rnd, sizeof rnd, secret);
        st = otk_cloud_set(&ks->cloud, cloud_id, ep->host, ep->port, ep->flags, user, secret);
    }
    otk_wipe(rnd, sizeof rnd);
    otk_wipe(secret, sizeof secret);
    if (st != OTK_OK)
        otk_wipe(ks, sizeof *ks);
    return st;
}

/* ACK, NOTIFY or STATUS: fixed header, version, code, MAC under key. */
static otk_status mac_reply_kind(otk_agent *a, uint8_t proto, uint8_t type, const uint8_t id[16],
                                 uint32_t version, otk_status code, uint8_t kind,
                                 const uint8_t *key, const uint8_t *extra, size_t extra_len,
                                 uint8_t *out, size_t out_size, size_t *out_len)
{
    otk_msg m;
    size_t len = 0;
    memset(&m, 0, sizeof m);
    m.proto = proto_of(proto);
    m.kind = kind ? kind : OTK_KIND_PASSWORD; /* NOTIFY v2 */
    m.type = type;
    memcpy(m.device_id, id, OTK_DEVICE_ID_LEN);
    m.version = version;
    m.code = (int16_t)code;
    OTK_TRY(otk_msg_encode(&m, out, out_size, &len));
    OTK_TRY(otk_mac_write(a->crypto, key, OTK_AK_LEN, out, otk_msg_auth_offset(type, len), extra,
                          extra_len));
    *out_len = len;
    return OTK_OK;
}

static otk_status mac_reply(otk_agent *a, uint8_t proto, uint8_t type, const uint8_t id[16],
                            uint32_t version, otk_status code, const uint8_t *key,
                            const uint8_t *extra, size_t extra_len, uint8_t *out, size_t out_size,
                            size_t *out_len)
{
    return mac_reply_kind(a, proto, type, id, version, code, 0, key, extra, extra_len, out,
                          out_size, out_len);
}

/* NACK: signed, because the agent may no longer hold the AK of v. */
static otk_status nack(otk_agent *a, uint8_t proto, const uint8_t id[16], uint32_t version,
                       otk_status code, uint8_t *out, size_t out_size, size_t *out_len)
{
    otk_msg m;
    uint8_t digest[32];
    size_t len = 0;
    memset(&m, 0, sizeof m);
    m.proto = proto_of(proto);
    m.type = OTK_MSG_NACK;
    memcpy(m.device_id, id, OTK_DEVICE_ID_LEN);
    m.version = version;
    m.code = (int16_t)code;
    OTK_TRY(otk_msg_encode(&m, out, out_size, &len));
    OTK_TRY(otk_nack_digest(a->crypto, out, digest));
    OTK_TRY(a->crypto->ecdsa_sign(a->crypto->ctx, a->cfg.sign_priv, digest,
                                  out + OTK_NACK_LEN - OTK_SIG_LEN));
    *out_len = len;
    return OTK_OK;
}

static otk_status cloud_remove(otk_agent *a, const otk_cloud *c)
{
    return a->cloud.remove(a->cloud.ctx, c->cloud_id, c->user);
}

/*
 * A certificate set for the key a request carries: AK, the cloud's
 * endpoint, the certificate the cloud's CA issues (into rec's buffer) and
 * its serial in cloud.user (what remove revokes).
 */
static otk_status new_cert_set(otk_agent *a, otk_agent_device *rec, uint32_t cloud_id,
                               uint32_t version, const uint8_t dpub[OTK_PUB_LEN], otk_keyset *ks)
{
    const otk_cloud_endpoint *ep = endpoint(a, cloud_id);
    size_t der_len = 0;
    otk_status st;
    if (ep == NULL)
        return OTK_ERR_BAD_VALUE;
    if (a->cloud.issue_cert == NULL)
        return OTK_ERR_CLOUD;
    memset(ks, 0, sizeof *ks);
    ks->version = version;
    ks->kind = OTK_KIND_CERT;
    st = a->crypto->random(a->crypto->ctx, ks->ak, OTK_AK_LEN);
    if (st != OTK_OK)
        return st;
    ks->cloud.cloud_id = cloud_id;
    ks->cloud.port = ep->port;
    ks->cloud.flags = (uint8_t)(ep->flags | OTK_CLOUD_FLAG_TLS);
    ks->cloud.host_len = (uint8_t)strlen(ep->host);
    memcpy(ks->cloud.host, ep->host, ks->cloud.host_len);
    st = a->cloud.issue_cert(a->cloud.ctx, rec->id, cloud_id, dpub, rec->pending_cert,
                             sizeof rec->pending_cert, &der_len, ks->cloud.user, ks->ca_pin);
    if (st != OTK_OK || der_len == 0 || der_len > OTK_CERT_MAX) {
        otk_wipe(ks, sizeof *ks);
        return OTK_ERR_CLOUD;
    }
    ks->cloud.user[OTK_USER_MAX] = '\0';
    ks->cloud.user_len = (uint8_t)strlen(ks->cloud.user);
    ks->cert = rec->pending_cert;
    ks->cert_len = (uint16_t)der_len;
    memcpy(rec->pending_dpub, dpub, OTK_PUB_LEN);
    rec->pending_cert_len = (uint16_t)der_len;
    return OTK_OK;
}

/*
 * Issues the pending set v = issued + 1 on cloud_id and its response, in
 * the request's protocol version: cloud client (or certificate) first,
 * then the record (with the audit event) in one transaction. On failure
 * the new client is removed and rec is unchanged.
 */
static otk_status issue(otk_agent *a, otk_agent_device *rec, uint8_t resp_type, uint32_t cloud_id,
                        const otk_msg *req, const uint8_t th[32], uint8_t *out, size_t out_size,
                        size_t *out_len)
{
    otk_agent_device *next = malloc(sizeof *next);
    otk_keyset ks;
    size_t len = 0;
    int claim = resp_type == OTK_MSG_CLAIM_RESP, created = 0;
    otk_status st;
    if (next == NULL)
        abort();
    *next = *rec;
    memset(&ks, 0, sizeof ks);
    if (kind_of(a, cloud_id) == OTK_KIND_CERT) {
        /* A version 1 device cannot hold a certificate set; a version 2
         * request without a key was answered with a NOTIFY before. */
        st = proto_of(req->proto) != OTK_PROTO_V2 ? OTK_ERR_UNKNOWN_VERSION
             : !req->has_key                   ? OTK_ERR_INTERNAL
                                               : new_cert_set(a, next, cloud_id,
                                                              rec->issued_version + 1, req->dpub, &ks);
    } else {
        st = new_set(a, rec->id, cloud_id, rec->issued_version + 1, &ks);
        next->pending_cert_len = 0;
        if (st == OTK_OK && a->cloud.create(a->cloud.ctx, rec->id, &ks.cloud) != OTK_OK)
            st = OTK_ERR_CLOUD;
    }
    created = st == OTK_OK;
    if (st == OTK_OK)
        st = otk_resp_build_v(a->crypto, proto_of(req->proto), resp_type, rec->id, th, req->epub,
                              claim ? NULL : rec->committed.ak, &ks, a->cfg.sign_priv, out,
                              out_size, &len);
    if (st == OTK_OK && len > sizeof next->pending_resp)
        st = OTK_ERR_INTERNAL;
    if (st == OTK_OK) {
        next->issued_version = ks.version;
        next->pending = ks;
        next->pending.cert = NULL; /* the record keeps the bytes (pending_cert) */
        next->has_pending = 1;
        next->pending_claim = (uint8_t)claim;
        memcpy(next->pending_th, th, OTK_HASH_LEN);
        memcpy(next->pending_resp, out, len);
        next->pending_resp_len = (uint16_t)len;
        if (claim)
            next->proto = proto_of(req->proto);
        /* The request is answered by this set (not by one that replaces a
         * pending set for a new key): a request made while it is pending (a
         * campaign started meanwhile) is a new one and stays. */
        if (!claim && !rec->has_pending && next->want != OTK_WANT_CLEANUP) {
            next->want = OTK_WANT_NONE;
            next->want_cloud = 0;
        }
        st = put(a, next, claim ? OTK_AUD_CLAIM_ISSUED : OTK_AUD_UPDATE_ISSUED,
                 claim ? OTK_MSG_CLAIM : OTK_MSG_UPDATE_REQ, ks.version, OTK_OK);
    }
    if (st != OTK_OK) {
        if (created)
            (void)cloud_remove(a, &ks.cloud);
        if (len)
            otk_wipe(out, len);
        goto out;
    }
    *rec = *next;
    *out_len = len;
out:
    otk_wipe(&ks, sizeof ks);
    otk_wipe(next, sizeof *next);
    free(next);
    return st;
}

static otk_status cached(otk_agent *a, const otk_agent_device *rec, uint8_t *out,
                         size_t out_size, size_t *out_len)
{
    if (out_size < rec->pending_resp_len)
        return OTK_ERR_BUFFER_TOO_SMALL;
    /* The response names the pending set's client: it must still exist. */
    if (a->cloud.ensure != NULL &&
        a->cloud.ensure(a->cloud.ctx, rec->id, &rec->pending.cloud) != OTK_OK)
        return OTK_ERR_CLOUD;
    memcpy(out, rec->pending_resp, rec->pending_resp_len);
    *out_len = rec->pending_resp_len;
    return OTK_OK;
}

/* ---- handlers ---- */

static otk_status on_claim(otk_agent *a, const otk_msg *m, const uint8_t *in, size_t len,
                           otk_agent_device *rec, uint8_t *out, size_t out_size, size_t *out_len)
{
    uint8_t pk[OTK_PK_LEN], th[OTK_HASH_LEN];
    uint32_t claim_cloud = a->cfg.claim_cloud;
    otk_status st = a->reg.get_batch(a->reg.ctx, m->batch_id, pk);
    if (proto_of(m->proto) != OTK_PROTO_V2 && a->cfg.claim_cloud_v1 != 0)
        claim_cloud = a->cfg.claim_cloud_v1;
    if (st == OTK_ERR_NOT_FOUND)
        st = OTK_ERR_UNKNOWN_BATCH;
    if (st == OTK_OK)
        st = otk_mac_check(a->crypto, pk, OTK_PK_LEN, in, otk_msg_auth_offset(m->type, len), NULL, 0);
    otk_wipe(pk, sizeof pk);
    if (st != OTK_OK)
        return st;
    OTK_TRY(check_pop(a, m, in, len));
    /* A certificate cloud takes version 2 devices only. */
    if (kind_of(a, claim_cloud) == OTK_KIND_CERT && proto_of(m->proto) != OTK_PROTO_V2)
        return OTK_ERR_UNKNOWN_VERSION;
    OTK_TRY(otk_transcript(a->crypto, in, len, th));
    st = a->reg.get_device(a->reg.ctx, m->device_id, rec);
    if (st == OTK_ERR_NOT_FOUND) {
        memset(rec, 0, sizeof *rec);
        memcpy(rec->id, m->device_id, OTK_DEVICE_ID_LEN);
        memcpy(rec->batch_id, m->batch_id, OTK_BATCH_ID_LEN);
        rec->state = OTK_DS_PENDING;
    } else if (st != OTK_OK) {
        return st;
    } else if (memcmp(rec->batch_id, m->batch_id, OTK_BATCH_ID_LEN) != 0) {
        return OTK_ERR_ALREADY_CLAIMED;
    } else if (rec->state == OTK_DS_REVOKED) {
        return OTK_ERR_REVOKED;
    } else if (rec->state == OTK_DS_ACTIVE && proto_of(rec->proto) > proto_of(m->proto)) {
        return OTK_ERR_UNKNOWN_VERSION; /* no downgrade of a device that used version 2 */
    } else if (rec->state == OTK_DS_ACTIVE && !rec->reclaim_allowed) {
        return OTK_ERR_ALREADY_CLAIMED; /* a clone, or a replay */
    } else if (rec->has_pending) {
        /* The identical request again: the same answer, nothing new issued. */
        if (rec->pending_claim && otk_ct_compare(th, rec->pending_th, OTK_HASH_LEN) == 0)
            return cached(a, rec, out, out_size, out_len);
        /* Another request: anyone with PK can make one, so it gets fresh
         * secrets and the unconfirmed set dies with its cloud client. */
        OTK_TRY(cloud_remove(a, &rec->pending.cloud) == OTK_OK ? OTK_OK : OTK_ERR_CLOUD);
        (void)audit(a, OTK_AUD_CLAIM_SUPERSEDED, OTK_MSG_CLAIM, rec->id, rec->pending.version,
                    OTK_OK);
        rec->has_pending = 0;
        rec->pending_resp_len = 0;
    }
    return issue(a, rec, OTK_MSG_CLAIM_RESP, claim_cloud, m, th, out, out_size, out_len);
}

/* The pending set re-encrypted to a new request of the device's (it rebooted). */
static otk_status resend_pending(otk_agent *a, const otk_msg *m, otk_agent_device *rec,
                                 const uint8_t th[32], uint8_t *out, size_t out_size,
                                 size_t *out_len)
{
    otk_keyset ks = rec->pending;
    size_t n = 0;
    otk_status st;
    if (ks.kind == OTK_KIND_CERT) {
        ks.cert = rec->pending_cert;
        ks.cert_len = rec->pending_cert_len;
    }
    st = otk_resp_build_v(a->crypto, proto_of(m->proto), OTK_MSG_UPDATE_RESP, rec->id, th, m->epub,
                          rec->committed.ak, &ks, a->cfg.sign_priv, out, out_size, &n);
    otk_wipe(&ks, sizeof ks);
    if (st == OTK_OK && n > sizeof rec->pending_resp)
        st = OTK_ERR_INTERNAL;
    if (st == OTK_OK) {
        memcpy(rec->pending_th, th, OTK_HASH_LEN);
        memcpy(rec->pending_resp, out, n);
        rec->pending_resp_len = (uint16_t)n;
        st = put(a, rec, 0, 0, 0, OTK_OK);
    }
    if (st != OTK_OK)
        return st;
    *out_len = n;
    return OTK_OK;
}

static otk_status on_update_req(otk_agent *a, const otk_msg *m, const uint8_t *in, size_t len,
                                otk_agent_device *rec, uint8_t *out, size_t out_size,
                                size_t *out_len)
{
    uint8_t th[OTK_HASH_LEN];
    uint8_t proto = proto_of(m->proto);
    if (!rec->has_committed)
        return OTK_ERR_NO_KEYSET;
    OTK_TRY(otk_mac_check(a->crypto, rec->committed.ak, OTK_AK_LEN, in,
                          otk_msg_auth_offset(m->type, len), NULL, 0));
    if (proto < proto_of(rec->proto))
        return OTK_ERR_UNKNOWN_VERSION; /* no downgrade of a device that used version 2 */
    if (m->version < rec->committed.version)
        return OTK_ERR_ROLLBACK;
    if (m->version > rec->committed.version)
        return OTK_ERR_STALE;
    /* A key's proof of possession is checked where a certificate is at
     * stake: a poll with a key answered "nothing" costs no verification. */
    rec->proto = proto; /* stored with the next write */
    OTK_TRY(otk_transcript(a->crypto, in, len, th));
    if (rec->has_pending && !rec->pending_claim) {
        if (otk_ct_compare(th, rec->pending_th, OTK_HASH_LEN) == 0)
            return cached(a, rec, out, out_size, out_len);
        if (rec->pending.kind != OTK_KIND_CERT)
            return resend_pending(a, m, rec, th, out, out_size, out_len);
        /* A certificate set is for one key: without a key, ask for one; with
         * the same key, send it again; with another (the device rebooted and
         * lost the first), revoke it and issue a new one. */
        if (!m->has_key)
            return mac_reply_kind(a, proto, OTK_MSG_NOTIFY, rec->id, rec->committed.version,
                                  OTK_OK, OTK_KIND_CERT, rec->committed.ak, NULL, 0, out,
                                  out_size, out_len);
        OTK_TRY(check_pop(a, m, in, len));
        if (memcmp(m->dpub, rec->pending_dpub, OTK_PUB_LEN) == 0)
            return resend_pending(a, m, rec, th, out, out_size, out_len);
        if (cloud_remove(a, &rec->pending.cloud) != OTK_OK)
            return OTK_ERR_CLOUD;
        (void)audit(a, OTK_AUD_ABORT, OTK_MSG_UPDATE_REQ, rec->id, rec->pending.version, OTK_ERR_STALE);
        return issue(a, rec, OTK_MSG_UPDATE_RESP, rec->pending.cloud.cloud_id, m, th, out,
                     out_size, out_len);
    }
    if (rec->want != OTK_WANT_NONE && !rec->has_pending) {
        uint32_t cloud = rec->want == OTK_WANT_SWITCH ? rec->want_cloud : rec->committed.cloud.cloud_id;
        otk_status why = OTK_ERR_BAD_VALUE;
        if (endpoint(a, cloud) != NULL) {
            if (kind_of(a, cloud) != OTK_KIND_CERT)
                return issue(a, rec, OTK_MSG_UPDATE_RESP, cloud, m, th, out, out_size, out_len);
            if (proto == OTK_PROTO_V2 && !m->has_key) /* a certificate set: ask for the key */
                return mac_reply_kind(a, proto, OTK_MSG_NOTIFY, rec->id, rec->committed.version,
                                      OTK_OK, OTK_KIND_CERT, rec->committed.ak, NULL, 0, out,
                                      out_size, out_len);
            if (proto == OTK_PROTO_V2) {
                OTK_TRY(check_pop(a, m, in, len));
                return issue(a, rec, OTK_MSG_UPDATE_RESP, cloud, m, th, out, out_size, out_len);
            }
            why = OTK_ERR_UNKNOWN_VERSION; /* a version 1 device on a certificate cloud */
        }
        /* A request this agent cannot serve (its configuration changed, or
         * the device cannot hold that kind): drop it, audited, rather than
         * refuse the device forever. */
        rec->want = OTK_WANT_NONE;
        OTK_TRY(put(a, rec, OTK_AUD_REFUSED, OTK_MSG_UPDATE_REQ, rec->committed.version, why));
    }
    return mac_reply(a, proto, OTK_MSG_STATUS, rec->id, rec->committed.version, OTK_OK,
                     rec->committed.ak, m->nonce, OTK_NONCE_LEN, out, out_size, out_len);
}

/* Deletes the retired credentials after the commit is durable. */
/* Removes the record's retired client from its cloud; the record (in
 * memory) no longer names it when that worked. */
static otk_status remove_stale(otk_agent *a, otk_agent_device *rec)
{
    otk_cloud c;
    otk_status st;
    memset(&c, 0, sizeof c);
    c.cloud_id = rec->stale_cloud;
    memcpy(c.user, rec->stale_user, sizeof c.user);
    st = cloud_remove(a, &c);
    if (st == OTK_OK) {
        rec->has_stale = 0;
        memset(rec->stale_user, 0, sizeof rec->stale_user);
    }
    return st;
}

static void retire_stale(otk_agent *a, otk_agent_device *rec)
{
    /* (a failed removal is kept: otk_agent_cleanup retries) */
    if (rec->has_stale && remove_stale(a, rec) == OTK_OK)
        (void)put(a, rec, OTK_AUD_CLOUD_CLEANUP, 0, rec->committed.version, OTK_OK);
}

static otk_status on_confirm(otk_agent *a, const otk_msg *m, const uint8_t *in, size_t len,
                             otk_agent_device *rec, uint8_t *out, size_t out_size, size_t *out_len)
{
    otk_agent_device next;
    otk_status st;
    int once;
    size_t off = otk_msg_auth_offset(m->type, len);
    if (proto_of(m->proto) < proto_of(rec->proto))
        return OTK_ERR_UNKNOWN_VERSION;
    if (rec->has_committed && m->version == rec->committed.version) {
        OTK_TRY(otk_mac_check(a->crypto, rec->committed.ak, OTK_AK_LEN, in, off, NULL, 0));
        return mac_reply(a, m->proto, OTK_MSG_ACK, rec->id, m->version, OTK_OK, rec->committed.ak, NULL, 0,
                         out, out_size, out_len);
    }
    if (!rec->has_pending || m->version != rec->pending.version)
        return m->version > 0 && m->version <= rec->issued_version
                   ? nack(a, m->proto, rec->id, m->version, OTK_ERR_STALE, out, out_size, out_len)
                   : OTK_ERR_STALE;
    OTK_TRY(otk_mac_check(a->crypto, rec->pending.ak, OTK_AK_LEN, in, off, NULL, 0));
    /* One record can hold one retired client: clear an older one first. */
    retire_stale(a, rec);
    if (rec->has_stale && rec->has_committed)
        return OTK_ERR_BUSY;
    next = *rec;
    if (rec->has_committed) {
        next.has_stale = 1;
        next.stale_cloud = rec->committed.cloud.cloud_id;
        memcpy(next.stale_user, rec->committed.cloud.user, sizeof next.stale_user);
    }
    next.committed = rec->pending;
    next.has_committed = 1;
    next.has_pending = 0;
    next.pending_claim = 0;
    next.pending_resp_len = 0;
    memset(&next.pending, 0, sizeof next.pending);
    next.state = OTK_DS_ACTIVE;
    next.reclaim_allowed = 0;
    /* Inside a group commit (otk_agent.group_commit) the commit, the removal
     * and its record are durable together or not at all: the commit records
     * the retired client as removed, one device write, and removes it. */
    once = a->group_commit && next.has_stale;
    next.has_stale = (uint8_t)(next.has_stale && !once);
    st = put(a, &next, OTK_AUD_COMMIT, OTK_MSG_CONFIRM, m->version, OTK_OK);
    if (st == OTK_OK) {
        *rec = next;
        rec->has_stale = (uint8_t)(rec->has_stale || once); /* (its name is still in it) */
        if (!once)
            retire_stale(a, rec);
        else if (remove_stale(a, rec) == OTK_OK)
            (void)audit(a, OTK_AUD_CLOUD_CLEANUP, 0, rec->id, rec->committed.version, OTK_OK);
        else /* written back as stale, for otk_agent_cleanup to retry */
            (void)put(a, rec, 0, 0, rec->committed.version, OTK_OK);
        st = mac_reply(a, m->proto, OTK_MSG_ACK, rec->id, m->version, OTK_OK, rec->committed.ak, NULL, 0,
                       out, out_size, out_len);
    }
    otk_wipe(&next, sizeof next);
    return st;
}

static otk_status on_abort(otk_agent *a, const otk_msg *m, const uint8_t *in, size_t len,
                           otk_agent_device *rec, uint8_t *out, size_t out_size, size_t *out_len)
{
    size_t off = otk_msg_auth_offset(m->type, len);
    if (proto_of(m->proto) < proto_of(rec->proto))
        return OTK_ERR_UNKNOWN_VERSION;
    if (rec->has_pending && m->version == rec->pending.version) {
        OTK_TRY(otk_mac_check(a->crypto, rec->pending.ak, OTK_AK_LEN, in, off, NULL, 0));
        if (cloud_remove(a, &rec->pending.cloud) != OTK_OK)
            return OTK_ERR_CLOUD;
        rec->has_pending = 0;
        rec->pending_claim = 0;
        rec->pending_resp_len = 0;
        memset(&rec->pending, 0, sizeof rec->pending);
        /* Not retried blindly: the request it answered ended with it (only
         * one made since, if any, is still wanted). */
        OTK_TRY(put(a, rec, OTK_AUD_ABORT, OTK_MSG_ABORT, m->version, m->code));
        return nack(a, m->proto, rec->id, m->version, OTK_ERR_PROOF_FAILED, out, out_size, out_len);
    }
    if (rec->has_committed && m->version == rec->committed.version) {
        /* Already committed here: the device must commit too. */
        OTK_TRY(otk_mac_check(a->crypto, rec->committed.ak, OTK_AK_LEN, in, off, NULL, 0));
        return mac_reply(a, m->proto, OTK_MSG_ACK, rec->id, m->version, OTK_OK, rec->committed.ak, NULL, 0,
                         out, out_size, out_len);
    }
    return m->version > 0 && m->version <= rec->issued_version
               ? nack(a, m->proto, rec->id, m->version, OTK_ERR_STALE, out, out_size, out_len)
               : OTK_ERR_STALE;
}

static void error_reply(uint8_t proto, const uint8_t *id, uint8_t ref, otk_status code,
                        uint8_t *out, size_t out_size, size_t *out_len)
{
    otk_msg m;
    memset(&m, 0, sizeof m);
    m.proto = proto_of(proto);
    m.type = OTK_MSG_ERROR;
    memcpy(m.device_id, id, OTK_DEVICE_ID_LEN);
    m.ref_type = ref;
    m.code = (int16_t)code;
    if (otk_msg_encode(&m, out, out_size, out_len) != OTK_OK)
        *out_len = 0;
}

otk_status otk_agent_handle(otk_agent *a, const uint8_t *in, size_t in_len, uint8_t *out,
                            size_t out_size, size_t *out_len)
{
    otk_agent_device *rec;
    otk_msg m;
    otk_status st;
    if (a == NULL || (in == NULL && in_len) || out == NULL || out_len == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    *out_len = 0;
    rec = calloc(1, sizeof *rec); /* ~1 KiB: kept off the stack of the daemon's threads */
    if (rec == NULL)
        abort();
    st = otk_msg_decode(in, in_len, &m);
    if (st == OTK_OK && m.type != OTK_MSG_CLAIM) {
        st = a->reg.get_device(a->reg.ctx, m.device_id, rec);
        if (st == OTK_ERR_NOT_FOUND)
            st = OTK_ERR_UNKNOWN_DEVICE;
        else if (st == OTK_OK && rec->state == OTK_DS_REVOKED)
            st = OTK_ERR_REVOKED;
        /* Retired credentials whose deletion a crash or a cloud failure cut
         * short go now: a device that talks is a device whose record is at hand. */
        if (st == OTK_OK && rec->has_stale)
            retire_stale(a, rec);
    }
    if (st == OTK_OK) {
        switch (m.type) {
        case OTK_MSG_CLAIM: st = on_claim(a, &m, in, in_len, rec, out, out_size, out_len); break;
        case OTK_MSG_UPDATE_REQ:
            st = on_update_req(a, &m, in, in_len, rec, out, out_size, out_len);
            break;
        case OTK_MSG_CONFIRM: st = on_confirm(a, &m, in, in_len, rec, out, out_size, out_len); break;
        case OTK_MSG_ABORT: st = on_abort(a, &m, in, in_len, rec, out, out_size, out_len); break;
        default: st = OTK_ERR_UNEXPECTED; break;
        }
    }
    if (st != OTK_OK) {
        /* A refusal: no state change, one audit event, an ERROR when an id is known. */
        int has_id = in_len >= OTK_HDR_LEN;
        uint8_t ref = has_id ? in[1] : 0;
        *out_len = 0;
        (void)audit(a, ref == OTK_MSG_CLAIM ? OTK_AUD_CLAIM_REFUSED : OTK_AUD_REFUSED, ref,
                    has_id ? in + 2 : NULL, m.version, st);
        if (has_id)
            error_reply(in[0], in + 2, ref, st, out, out_size, out_len);
    }
    otk_wipe(rec, sizeof *rec);
    free(rec);
    return st;
}

/* ---- storage form of the pending set ---- */

otk_status otk_agent_pending_encode(const otk_agent_device *d, uint8_t *out, size_t out_size,
                                    size_t *out_len)
{
    otk_keyset ks;
    otk_status st;
    if (d == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    if (d->pending.kind != OTK_KIND_CERT)
        return otk_keyset_encode(&d->pending, out, out_size, out_len);
    ks = d->pending;
    ks.cert = d->pending_cert;
    ks.cert_len = d->pending_cert_len;
    st = otk_keyset_encode_v(&ks, OTK_PROTO_V2, out, out_size, out_len);
    otk_wipe(&ks, sizeof ks);
    return st;
}

otk_status otk_agent_pending_decode(otk_agent_device *d, int kind, const uint8_t *in, size_t len,
                                    const char *serial)
{
    otk_status st;
    if (d == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    if (kind != OTK_KIND_CERT)
        return otk_keyset_decode(in, len, &d->pending);
    /* The serial (cloud.user) is the agent's own, stored beside the plaintext. */
    if (serial == NULL || strlen(serial) == 0 || strlen(serial) > OTK_USER_MAX)
        return OTK_ERR_CORRUPT;
    st = otk_keyset_decode_v(in, len, OTK_PROTO_V2, &d->pending);
    if (st == OTK_OK && d->pending.kind != OTK_KIND_CERT)
        st = OTK_ERR_CORRUPT;
    if (st == OTK_OK) {
        memcpy(d->pending_cert, d->pending.cert, d->pending.cert_len);
        d->pending_cert_len = d->pending.cert_len;
        d->pending.cert = NULL;
        memcpy(d->pending.cloud.user, serial, strlen(serial) + 1);
        d->pending.cloud.user_len = (uint8_t)strlen(serial);
    }
    return st;
}

/* ---- operator calls ---- */

/* A device an update offer (NOTIFY) goes to: active, with an update
 * requested or issued and not confirmed (not a claim). */
static int offerable(const otk_agent_device *rec)
{
    return rec->state == OTK_DS_ACTIVE && rec->has_committed &&
           (rec->has_pending ? !rec->pending_claim : rec->want != OTK_WANT_NONE);
}

/* The kind of the set an offer announces: the pending one's, or the wanted cloud's. */
static uint8_t offer_kind(const otk_agent *a, const otk_agent_device *rec)
{
    if (rec->has_pending)
        return rec->pending.kind ? rec->pending.kind : OTK_KIND_PASSWORD;
    return kind_of(a, rec->want == OTK_WANT_SWITCH ? rec->want_cloud : rec->committed.cloud.cloud_id);
}

static otk_status load(otk_agent *a, const uint8_t id[16], otk_agent_device *rec)
{
    otk_status st;
    if (a == NULL || id == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    st = a->reg.get_device(a->reg.ctx, id, rec);
    return st == OTK_ERR_NOT_FOUND ? OTK_ERR_UNKNOWN_DEVICE : st;
}

otk_status otk_agent_request_update(otk_agent *a, const uint8_t id[16], int want,
                                    uint32_t cloud_id, uint8_t *out, size_t out_size,
                                    size_t *out_len)
{
    otk_agent_device rec;
    otk_status st;
    if (out == NULL || out_len == NULL || (want != OTK_WANT_ROTATE && want != OTK_WANT_SWITCH))
        return OTK_ERR_INVALID_ARGUMENT;
    *out_len = 0;
    st = load(a, id, &rec);
    if (st == OTK_OK && rec.state == OTK_DS_REVOKED)
        st = OTK_ERR_REVOKED;
    if (st == OTK_OK && !rec.has_committed)
        st = OTK_ERR_NO_KEYSET;
    if (st == OTK_OK && want == OTK_WANT_SWITCH && endpoint(a, cloud_id) == NULL)
        st = OTK_ERR_BAD_VALUE;
    /* A version 1 device cannot hold a certificate set. */
    if (st == OTK_OK && proto_of(rec.proto) != OTK_PROTO_V2 &&
        kind_of(a, want == OTK_WANT_SWITCH ? cloud_id : rec.committed.cloud.cloud_id) == OTK_KIND_CERT)
        st = OTK_ERR_UNKNOWN_VERSION;
    if (st == OTK_OK) {
        rec.want = (uint8_t)want;
        rec.want_cloud = want == OTK_WANT_SWITCH ? cloud_id : 0;
        st = put(a, &rec, OTK_AUD_UPDATE_REQUESTED, 0, rec.committed.version, OTK_OK);
    }
    /* The offer the notify pass would make now; none to a device it would
     * not tell (a claim of it pending). */
    if (st == OTK_OK && offerable(&rec))
        st = mac_reply_kind(a, rec.proto, OTK_MSG_NOTIFY, rec.id, rec.committed.version, OTK_OK,
                            offer_kind(a, &rec), rec.committed.ak, NULL, 0, out, out_size,
                            out_len);
    otk_wipe(&rec, sizeof rec);
    return st;
}

otk_status otk_agent_notify(otk_agent *a, const uint8_t id[16], uint8_t *out, size_t out_size,
                            size_t *out_len)
{
    otk_agent_device rec;
    otk_status st;
    if (out == NULL || out_len == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    *out_len = 0;
    st = load(a, id, &rec);
    if (st == OTK_OK && !offerable(&rec))
        st = OTK_ERR_BAD_STATE;
    if (st == OTK_OK)
        st = mac_reply_kind(a, rec.proto, OTK_MSG_NOTIFY, rec.id, rec.committed.version, OTK_OK,
                            offer_kind(a, &rec), rec.committed.ak, NULL, 0, out, out_size,
                            out_len);
    otk_wipe(&rec, sizeof rec);
    return st;
}

otk_status otk_agent_revoke(otk_agent *a, const uint8_t id[16])
{
    otk_agent_device rec;
    otk_status st = load(a, id, &rec);
    if (st == OTK_OK) {
        rec.state = OTK_DS_REVOKED;
        rec.reclaim_allowed = 0;
        rec.want = OTK_WANT_CLEANUP; /* until every cloud client is gone */
        /* Refused from now on, whatever the clouds answer; then delete. */
        st = put(a, &rec, OTK_AUD_REVOKE, 0, rec.committed.version, OTK_OK);
    }
    if (st == OTK_OK)
        st = otk_agent_cleanup(a, id);
    otk_wipe(&rec, sizeof rec);
    return st;
}

otk_status otk_agent_allow_reclaim(otk_agent *a, const uint8_t id[16])
{
    otk_agent_device rec;
    otk_status st = load(a, id, &rec);
    if (st == OTK_OK && rec.state != OTK_DS_ACTIVE)
        st = OTK_ERR_BAD_STATE;
    if (st == OTK_OK) {
        rec.reclaim_allowed = 1;
        st = put(a, &rec, OTK_AUD_RECLAIM_ALLOWED, 0, rec.committed.version, OTK_OK);
    }
    otk_wipe(&rec, sizeof rec);
    return st;
}

otk_status otk_agent_cleanup(otk_agent *a, const uint8_t id[16])
{
    otk_agent_device rec;
    otk_status st = load(a, id, &rec), rm = OTK_OK;
    if (st != OTK_OK)
        return st;
    retire_stale(a, &rec);
    if (rec.has_stale)
        rm = OTK_ERR_CLOUD;
    if (rec.state == OTK_DS_REVOKED) {
        /* Deleting is idempotent: a revoked device's clients go, however often asked. */
        if (rec.has_committed && cloud_remove(a, &rec.committed.cloud) != OTK_OK)
            rm = OTK_ERR_CLOUD;
        if (rec.has_pending && cloud_remove(a, &rec.pending.cloud) != OTK_OK)
            rm = OTK_ERR_CLOUD;
        if (rm == OTK_OK && rec.want == OTK_WANT_CLEANUP) {
            rec.want = OTK_WANT_NONE;
            rm = put(a, &rec, OTK_AUD_CLOUD_CLEANUP, 0, rec.committed.version, OTK_OK);
        }
    }
    otk_wipe(&rec, sizeof rec);
    return rm;
}

otk_status otk_agent_init(otk_agent *a, const otk_crypto *crypto, const otk_registry *reg,
                          const otk_cloud_adapter *cloud, const otk_agent_config *cfg)
{
    if (a == NULL || crypto == NULL || reg == NULL || cloud == NULL || cfg == NULL ||
        reg->get_batch == NULL || reg->get_device == NULL || reg->put_device == NULL ||
        reg->audit == NULL || cloud->create == NULL || cloud->remove == NULL ||
        cfg->n_clouds == 0 || cfg->n_clouds > OTK_AGENT_MAX_CLOUDS)
        return OTK_ERR_INVALID_ARGUMENT;
    memset(a, 0, sizeof *a);
    a->crypto = crypto;
    a->reg = *reg;
    a->cloud = *cloud;
    a->cfg = *cfg;
    if (endpoint(a, cfg->claim_cloud) == NULL ||
        (cfg->claim_cloud_v1 != 0 && (endpoint(a, cfg->claim_cloud_v1) == NULL ||
                                      kind_of(a, cfg->claim_cloud_v1) == OTK_KIND_CERT))) {
        memset(a, 0, sizeof *a);
        return OTK_ERR_INVALID_ARGUMENT;
    }
    return OTK_OK;
}
