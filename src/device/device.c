/*
 * Device protocol state machine (docs/protocol.md §7.1). The persistent
 * state is only the key store; everything in the context can be lost in a
 * power cut and is rebuilt from the store by otk_device_init.
 */
#include "internal.h"

static uint32_t now_ms(const otk_device *d)
{
    return d->port->now_ms ? d->port->now_ms(d->port->ctx) : 0;
}

static const otk_crypto *cry(const otk_device *d)
{
    return d->port->crypto;
}

/* A storage or internal failure poisons the context until the next init. */
static otk_status fatal(otk_device *d, otk_status st)
{
    if (st == OTK_ERR_STORAGE || st == OTK_ERR_INTERNAL || st == OTK_ERR_CORRUPT) {
        if (d->sticky == OTK_OK)
            d->sticky = st;
    }
    return st;
}

static uint8_t proto(const otk_device *d)
{
    return d->cfg.proto == OTK_PROTO_V2 ? OTK_PROTO_V2 : OTK_PROTO_VERSION;
}

/*
 * Has the crypto backend destroy a key (a no-op for raw keys): the
 * request's ephemeral key, or the certificate key of the slot the
 * next set goes to, once the set there is retired or discarded. A key made
 * for a request that ended without a set stays until then, or until the
 * next request replaces it: no key outlives its slot's set.
 */
static void drop_key(const otk_device *d, uint8_t purpose)
{
    cry(d)->key_destroy(cry(d)->ctx, purpose);
}

/* The kept key of the next slot (if any) is no longer one to offer. */
static void forget_slot_key(otk_device *d)
{
    d->slot_key = 0;
    otk_wipe(d->dev_priv, sizeof d->dev_priv);
    otk_wipe(d->dev_pub, sizeof d->dev_pub);
}

static OTK_NOINLINE void drop_slot_key(otk_device *d)
{
    forget_slot_key(d);
    drop_key(d, (uint8_t)(OTK_KEY_SLOT0 + otk_ks_next_slot(&d->ks)));
}

/* The request's ephemeral key goes with it. */
static void forget_request(otk_device *d)
{
    drop_key(d, OTK_KEY_EPHEMERAL);
    otk_wipe(d->eph_priv, sizeof *d - offsetof(otk_device, eph_priv));
}

/* Enters a state whose message (type) is sent by otk_device_next. */
static OTK_NOINLINE void expect(otk_device *d, uint8_t state, uint8_t outbound)
{
    d->state = state;
    d->outbound = outbound;
    d->sent = 0;
    d->retries = 0;
    d->backoff_ms = d->cfg.retry_min_ms;
}

static void settle(otk_device *d)
{
    forget_request(d);
    if (otk_ks_staged_version(&d->ks))
        expect(d, OTK_DEV_PROVE, 0);
    else if (otk_ks_active_version(&d->ks))
        expect(d, OTK_DEV_READY, 0);
    else
        expect(d, OTK_DEV_UNCLAIMED, 0);
}

otk_status otk_device_init(otk_device *d, const otk_port *port, const otk_device_config *cfg)
{
    otk_status st;
    if (d == NULL || port == NULL || cfg == NULL || port->crypto == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    memset(d, 0, sizeof *d);
    d->cfg = *cfg;
    if (d->cfg.retry_min_ms == 0)
        d->cfg.retry_min_ms = OTK_RETRY_MIN_MS;
    if (d->cfg.retry_max_ms < d->cfg.retry_min_ms)
        d->cfg.retry_max_ms = d->cfg.retry_min_ms > OTK_RETRY_MAX_MS ? d->cfg.retry_min_ms
                                                                     : OTK_RETRY_MAX_MS;
    st = otk_ks_mount(&d->ks, port);
    if (st != OTK_OK) {
        otk_wipe(d, sizeof *d);
        return st;
    }
    d->port = port;
    settle(d);
    return OTK_OK;
}

otk_dev_state otk_device_state(const otk_device *d)
{
    return d ? (otk_dev_state)d->state : OTK_DEV_UNINIT;
}

static OTK_NOINLINE void header(const otk_device *d, otk_msg *m, uint8_t type)
{
    memset(m, 0, sizeof *m);
    m->proto = proto(d);
    m->type = type;
    memcpy(m->device_id, d->cfg.device_id, OTK_DEVICE_ID_LEN);
}

/*
 * Encodes m and MACs it with key. A keyed version 2 request is first
 * signed by the new key (pop), and the MAC then covers the pop too.
 */
static otk_status seal(const otk_device *d, const otk_msg *m, const uint8_t *key, uint8_t *out,
                       size_t out_size, size_t *out_len)
{
    const otk_crypto *c = cry(d);
    uint8_t digest[OTK_HASH_LEN];
    size_t len = 0, pop;
    OTK_TRY(otk_msg_encode(m, out, out_size, &len));
    if ((pop = otk_msg_pop_offset(out, len)) != 0) {
        OTK_TRY(otk_pop_digest(c, out, pop, digest));
        OTK_TRY(c->ecdsa_sign(c->ctx, d->dev_priv, digest, out + pop));
    }
    OTK_TRY(otk_mac_write(c, key, OTK_AK_LEN, out, otk_msg_auth_offset(m->type, len), NULL, 0));
    *out_len = len;
    return OTK_OK;
}

/*
 * Starts a CLAIM or UPDATE_REQ: fresh nonce and ephemeral key, and in
 * version 2 a new certificate key pair for a claim or when the agent asked
 * for a certificate set (NOTIFY of kind 2).
 */
static otk_status new_request(otk_device *d, int claim)
{
    const otk_crypto *c = cry(d);
    otk_status st;
    forget_request(d);
    st = c->random(c->ctx, d->nonce, sizeof d->nonce);
    if (st == OTK_OK)
        st = c->ec_keygen(c->ctx, OTK_KEY_EPHEMERAL, d->eph_priv, d->eph_pub);
    if (st == OTK_OK && proto(d) == OTK_PROTO_V2 && (claim || d->want_key)) {
        /* For the slot its set will be staged in (the active one stays); a
         * key made for an earlier request that staged nothing is offered
         * again (it never left the device, and no set holds it). */
        if (!d->slot_key || claim) {
            forget_slot_key(d);
            st = c->ec_keygen(c->ctx, (uint8_t)(OTK_KEY_SLOT0 + otk_ks_next_slot(&d->ks)),
                              d->dev_priv, d->dev_pub);
            d->slot_key = st == OTK_OK;
        }
        d->keyed = d->slot_key;
    }
    if (st != OTK_OK)
        forget_request(d);
    return st;
}

/*
 * Builds the message of the current state. CLAIM and UPDATE_REQ come out
 * identical on every call (same nonce and key), so a retransmission is
 * recognised by the agent and answered from its cache.
 */
/* The AK of the active (staged = 0) or staged set; a failed load is fatal. */
/* The active or staged set, for the accessors below. */
static otk_status load_set(const otk_device *d, int which, otk_keyset *ks)
{
    if (d == NULL || d->state == OTK_DEV_UNINIT)
        return OTK_ERR_BAD_STATE;
    return otk_ks_load(&d->ks, which == OTK_SET_STAGED, ks);
}

/* Copies n bytes at off of the set (a certificate set's, if cert). */
static OTK_NOINLINE otk_status set_field(const otk_device *d, int which, size_t off, size_t n, void *out,
                            int cert)
{
    otk_keyset ks;
    otk_status st;
    if (out == NULL || (which != OTK_SET_ACTIVE && which != OTK_SET_STAGED))
        return OTK_ERR_INVALID_ARGUMENT;
    st = load_set(d, which, &ks);
    if (st == OTK_OK && cert && ks.kind != OTK_KIND_CERT)
        st = OTK_ERR_BAD_STATE;
    if (st == OTK_OK)
        memcpy(out, (const uint8_t *)&ks + off, n);
    otk_wipe(&ks, sizeof ks);
    return st;
}

static OTK_NOINLINE otk_status load_ak(otk_device *d, int staged, uint8_t ak[OTK_AK_LEN])
{
    /* (fatal passes OTK_OK and every non-fatal status through) */
    return fatal(d, set_field(d, staged, offsetof(otk_keyset, ak), OTK_AK_LEN, ak, 0));
}

static otk_status build(otk_device *d, uint8_t *out, size_t out_size, size_t *out_len)
{
    uint8_t ak[OTK_AK_LEN];
    otk_msg m;
    otk_status st;
    switch (d->outbound) {
    case OTK_MSG_CLAIM:
        header(d, &m, OTK_MSG_CLAIM);
        memcpy(m.batch_id, d->cfg.batch_id, OTK_BATCH_ID_LEN);
        memcpy(m.nonce, d->nonce, OTK_NONCE_LEN);
        memcpy(m.epub, d->eph_pub, OTK_PUB_LEN);
        memcpy(m.dpub, d->dev_pub, OTK_PUB_LEN);
        st = seal(d, &m, d->cfg.pk, out, out_size, out_len);
        break;
    case OTK_MSG_UPDATE_REQ:
    case OTK_MSG_CONFIRM:
    case OTK_MSG_ABORT:
        /* UPDATE_REQ is MACed with the active AK, CONFIRM/ABORT with the staged one. */
        st = load_ak(d, d->outbound != OTK_MSG_UPDATE_REQ, ak);
        if (st != OTK_OK)
            return st;
        header(d, &m, d->outbound);
        m.version = d->outbound == OTK_MSG_UPDATE_REQ ? otk_ks_active_version(&d->ks)
                                                     : otk_ks_staged_version(&d->ks);
        m.code = d->abort_reason;
        memcpy(m.nonce, d->nonce, OTK_NONCE_LEN);
        memcpy(m.epub, d->eph_pub, OTK_PUB_LEN);
        if (d->outbound == OTK_MSG_UPDATE_REQ && d->keyed) {
            m.has_key = 1;
            memcpy(m.dpub, d->dev_pub, OTK_PUB_LEN);
        }
        st = seal(d, &m, ak, out, out_size, out_len);
        otk_wipe(ak, sizeof ak);
        break;
    default:
        return OTK_ERR_INTERNAL;
    }
    if (st == OTK_OK && (d->outbound == OTK_MSG_CLAIM || d->outbound == OTK_MSG_UPDATE_REQ))
        st = otk_transcript(cry(d), out, *out_len, d->th);
    return st;
}

static otk_status send_now(otk_device *d, uint8_t *out, size_t out_size, size_t *out_len)
{
    uint32_t b;
    OTK_TRY(build(d, out, out_size, out_len));
    if (d->sent) {
        d->retries++;
        b = d->backoff_ms * 2u;
        d->backoff_ms = (b < d->backoff_ms || b > d->cfg.retry_max_ms) ? d->cfg.retry_max_ms : b;
    }
    d->sent = 1;
    d->deadline_ms = now_ms(d) + d->backoff_ms;
    return OTK_OK;
}

otk_status otk_device_next(otk_device *d, uint8_t *out, size_t out_size, size_t *out_len)
{
    otk_status st;
    if (d == NULL || out == NULL || out_len == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    *out_len = 0;
    if (d->state == OTK_DEV_UNINIT)
        return OTK_ERR_BAD_STATE;
    if (d->sticky != OTK_OK)
        return d->sticky;
    if (d->state == OTK_DEV_UNCLAIMED || (d->state == OTK_DEV_READY && d->poll_wanted)) {
        st = new_request(d, d->state == OTK_DEV_UNCLAIMED);
        if (st != OTK_OK)
            return st;
        d->poll_wanted = 0;
        if (d->state == OTK_DEV_UNCLAIMED)
            expect(d, OTK_DEV_CLAIMING, OTK_MSG_CLAIM);
        else
            expect(d, OTK_DEV_UPDATING, OTK_MSG_UPDATE_REQ);
    }
    if (d->outbound == 0)
        return OTK_OK;
    /* Signed difference: correct across the 32-bit millisecond wrap. */
    if (d->sent && (int32_t)(now_ms(d) - d->deadline_ms) < 0)
        return OTK_OK;
    return send_now(d, out, out_size, out_len);
}

otk_status otk_device_poll(otk_device *d)
{
    if (d == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    if (d->sticky != OTK_OK)
        return d->sticky;
    if (d->state != OTK_DEV_READY && d->state != OTK_DEV_UPDATING)
        return OTK_ERR_BAD_STATE;
    if (d->state == OTK_DEV_READY) {
        d->poll_wanted = 1;
        /* On a certificate set the next set is most likely one too: the
         * poll carries its key, or the agent would answer it with a NOTIFY
         * asking for one (a round trip more per update). */
        if (proto(d) == OTK_PROTO_V2 && otk_device_kind(d, OTK_SET_ACTIVE) == OTK_KIND_CERT)
            d->want_key = 1;
    }
    return OTK_OK;
}

/*
 * A version 2 certificate set, opened in scratch at OTK_KS_BODY_OFF: its
 * certificate must carry the key this request sent; the record (plaintext,
 * then the private key) is built where it lies and staged.
 */
static otk_status stage_cert(otk_device *d, uint32_t version, uint8_t *scratch, size_t size,
                             size_t pt_len, const otk_keyset *set)
{
    size_t i;
    int found = 0;
    if (!d->keyed || set->cert == NULL || pt_len + OTK_PRIV_LEN + OTK_KS_BODY_OFF > size)
        return OTK_ERR_BAD_VALUE;
    /* The SubjectPublicKeyInfo holds the point uncompressed: 0x04 || X || Y. */
    for (i = 1; !found && i + OTK_PUB_LEN <= set->cert_len; i++)
        found = set->cert[i - 1] == 0x04 && memcmp(set->cert + i, d->dev_pub, OTK_PUB_LEN) == 0;
    if (!found)
        return OTK_ERR_BAD_VALUE;
    memcpy(scratch + OTK_KS_BODY_OFF + pt_len, d->dev_priv, OTK_PRIV_LEN);
    return otk_ks_stage_record(&d->ks, version, scratch, size, pt_len + OTK_PRIV_LEN);
}

/* CLAIM_RESP / UPDATE_RESP: open, check the version, stage (its key set
 * and AK stay off the NOTIFY path's stack). */
static OTK_NOINLINE otk_status on_response(otk_device *d, const otk_msg *m, const uint8_t *in, size_t len,
                              uint8_t *scratch, size_t scratch_size)
{
    otk_keyset set;
    uint8_t ak[OTK_AK_LEN];
    uint8_t *pt = scratch + OTK_KS_BODY_OFF;
    size_t pt_len = 0;
    /* Room for the largest record of the version: it is built where the plaintext lands. */
    size_t need = m->proto == OTK_PROTO_V2 ? OTK_KS_RECORD_MAX
                                           : OTK_KS_BODY_OFF + OTK_KEYSET_MAX_LEN + 4u + 16u;
    otk_status st;
    int update = m->type == OTK_MSG_UPDATE_RESP;
    if (d->state != (update ? OTK_DEV_UPDATING : OTK_DEV_CLAIMING))
        return OTK_ERR_UNEXPECTED;
    if (scratch_size < need)
        return OTK_ERR_BUFFER_TOO_SMALL;
    memset(&set, 0, sizeof set);
    if (update) /* the active set's AK keys the response */
        OTK_TRY(load_ak(d, 0, ak));
    /* The plaintext goes to the caller's buffer, where its record is built. */
    st = otk_resp_open_pt(cry(d), in, len, m, d->th, d->eph_priv, update ? ak : NULL, d->cfg.agent_pub, pt,
                          need - OTK_KS_BODY_OFF, &pt_len);
    if (st == OTK_OK)
        st = otk_keyset_decode_v(pt, pt_len, m->proto, &set);
    if (st == OTK_OK && (set.version = m->version) <= otk_ks_active_version(&d->ks))
        st = OTK_ERR_ROLLBACK;
    /* Version 2: the AK goes into the crypto port, the set keeps its reference. */
    if (st == OTK_OK && m->proto == OTK_PROTO_V2)
        st = cry(d)->ak_import(cry(d)->ctx, (uint8_t)(OTK_KEY_SLOT0 + otk_ks_next_slot(&d->ks)), pt + 1);
    if (st == OTK_OK) {
        if (set.kind == OTK_KIND_CERT) {
            st = stage_cert(d, m->version, scratch, scratch_size, pt_len, &set);
        } else {
            /* A password set is stored as version 1 encodes it: without a kind byte. */
            if (m->proto == OTK_PROTO_V2)
                memmove(pt, pt + 1, --pt_len);
            st = otk_ks_stage_plain(&d->ks, m->version, scratch, scratch_size, pt_len);
        }
        if (st == OTK_OK) {
            forget_request(d);
            forget_slot_key(d); /* the staged set holds it now */
            d->want_key = 0;
            expect(d, OTK_DEV_PROVE, 0);
        } else if (st != OTK_ERR_BAD_VALUE) {
            st = fatal(d, st);
        }
    }
    otk_wipe(ak, sizeof ak);
    otk_wipe(&set, sizeof set);
    otk_wipe(scratch, need);
    return st;
}

/* Checks a MAC under the active (staged = 0) or staged set's AK. */
static otk_status check_mac(otk_device *d, int staged, const uint8_t *in, size_t len,
                            const uint8_t *extra, size_t extra_len)
{
    uint8_t ak[OTK_AK_LEN];
    otk_status st;
    OTK_TRY(load_ak(d, staged, ak));
    st = otk_mac_check(cry(d), ak, OTK_AK_LEN, in, otk_msg_auth_offset(in[1], len), extra, extra_len);
    otk_wipe(ak, sizeof ak);
    return st;
}

static otk_status on_ack(otk_device *d, const otk_msg *m, const uint8_t *in, size_t len)
{
    otk_status st;
    uint32_t staged = otk_ks_staged_version(&d->ks);
    if (staged != 0 && m->version == staged &&
        (d->state == OTK_DEV_CONFIRMING || d->state == OTK_DEV_PROVE)) {
        OTK_TRY(check_mac(d, 1, in, len, NULL, 0));
        st = otk_ks_commit(&d->ks, m->version);
        if (st != OTK_OK)
            return fatal(d, st);
        drop_slot_key(d); /* the retired set's certificate key, if it had one */
        d->abort_reason = 0;
        settle(d);
        return OTK_OK;
    }
    /* A duplicate ACK for what is already committed changes nothing. */
    if (m->version != 0 && m->version == otk_ks_active_version(&d->ks))
        return check_mac(d, 0, in, len, NULL, 0);
    return OTK_ERR_UNEXPECTED;
}

static otk_status on_nack(otk_device *d, const otk_msg *m, const uint8_t *in)
{
    const otk_crypto *c = cry(d);
    uint8_t digest[32];
    otk_status st;
    uint32_t staged = otk_ks_staged_version(&d->ks);
    if (staged == 0 || m->version != staged ||
        (d->state != OTK_DEV_CONFIRMING && d->state != OTK_DEV_PROVE))
        return OTK_ERR_UNEXPECTED;
    /* Only the agent's signature may make the device drop a staged set. */
    OTK_TRY(otk_nack_digest(c, in, digest));
    OTK_TRY(c->ecdsa_verify(c->ctx, d->cfg.agent_pub, digest, in + OTK_NACK_LEN - OTK_SIG_LEN));
    st = otk_ks_discard(&d->ks, m->version);
    if (st != OTK_OK)
        return fatal(d, st);
    drop_slot_key(d); /* the discarded set's */
    d->last_remote = m->code;
    d->abort_reason = 0;
    settle(d);
    return OTK_OK;
}

otk_status otk_device_receive(otk_device *d, const uint8_t *in, size_t in_len, uint8_t *out,
                              size_t out_size, size_t *out_len)
{
    otk_msg m;
    otk_status st;
    if (d == NULL || in == NULL || out == NULL || out_len == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    *out_len = 0;
    if (d->state == OTK_DEV_UNINIT)
        return OTK_ERR_BAD_STATE;
    if (d->sticky != OTK_OK)
        return d->sticky;
    OTK_TRY(otk_msg_decode(in, in_len, &m));
    if (otk_ct_compare(m.device_id, d->cfg.device_id, OTK_DEVICE_ID_LEN) != 0)
        return OTK_ERR_WRONG_DEVICE;
    /* A device speaks one version; an ERROR of either is recorded. */
    if (m.proto != proto(d) && m.type != OTK_MSG_ERROR)
        return OTK_ERR_UNKNOWN_VERSION;
    switch (m.type) {
    case OTK_MSG_CLAIM_RESP:
    case OTK_MSG_UPDATE_RESP:
        return on_response(d, &m, in, in_len, out, out_size);
    case OTK_MSG_ACK:
        return on_ack(d, &m, in, in_len);
    case OTK_MSG_NACK:
        return on_nack(d, &m, in);
    case OTK_MSG_NOTIFY:
        /* Already asking, with a key if a certificate set waits: nothing to do. */
        if (d->state == OTK_DEV_UPDATING && (m.kind != OTK_KIND_CERT || d->keyed))
            return OTK_OK;
        if ((d->state != OTK_DEV_READY && d->state != OTK_DEV_UPDATING) ||
            m.version != otk_ks_active_version(&d->ks))
            return OTK_ERR_UNEXPECTED;
        OTK_TRY(check_mac(d, 0, in, in_len, NULL, 0));
        /* A certificate set waits: ask again, with a new key (§11.2). */
        d->want_key = m.kind == OTK_KIND_CERT;
        if (d->state == OTK_DEV_UPDATING) {
            forget_request(d);
            expect(d, OTK_DEV_READY, 0);
        }
        d->poll_wanted = 1;
        return otk_device_next(d, out, out_size, out_len);
    case OTK_MSG_STATUS:
        if (d->state != OTK_DEV_UPDATING || m.version != otk_ks_active_version(&d->ks))
            return OTK_ERR_UNEXPECTED;
        st = check_mac(d, 0, in, in_len, d->nonce, OTK_NONCE_LEN);
        if (st != OTK_OK)
            return st;
        d->last_remote = m.code;
        settle(d);
        return OTK_OK;
    case OTK_MSG_ERROR:
        /* Unauthenticated: recorded for diagnostics, never acted upon. */
        d->last_remote = m.code;
        return OTK_OK;
    default:
        return OTK_ERR_UNEXPECTED;
    }
}

otk_status otk_device_proof(otk_device *d, otk_proof result, uint8_t *out, size_t out_size,
                            size_t *out_len)
{
    if (d == NULL || out == NULL || out_len == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    *out_len = 0;
    if (d->sticky != OTK_OK)
        return d->sticky;
    if (d->state != OTK_DEV_PROVE)
        return OTK_ERR_BAD_STATE;
    switch (result) {
    case OTK_PROOF_OK:
        d->abort_reason = 0;
        expect(d, OTK_DEV_CONFIRMING, OTK_MSG_CONFIRM);
        break;
    case OTK_PROOF_REFUSED:
        d->abort_reason = OTK_ERR_PROOF_FAILED;
        expect(d, OTK_DEV_CONFIRMING, OTK_MSG_ABORT);
        break;
    case OTK_PROOF_UNREACHABLE:
        return OTK_OK;
    default:
        return OTK_ERR_INVALID_ARGUMENT;
    }
    return send_now(d, out, out_size, out_len);
}

otk_status otk_device_cloud(const otk_device *d, int which, otk_cloud *out)
{
    return set_field(d, which, offsetof(otk_keyset, cloud), sizeof *out, out, 0);
}

uint8_t otk_device_kind(const otk_device *d, int which)
{
    uint8_t kind = 0;
    if (set_field(d, which, offsetof(otk_keyset, kind), 1, &kind, 0) != OTK_OK)
        return 0;
    return kind ? kind : OTK_KIND_PASSWORD;
}

otk_status otk_device_cert(const otk_device *d, int which, uint8_t *der, size_t der_size,
                           size_t *der_len)
{
    if (d == NULL || d->state == OTK_DEV_UNINIT)
        return OTK_ERR_BAD_STATE;
    return otk_ks_read_cert(&d->ks, which == OTK_SET_STAGED, der, der_size, der_len);
}

otk_status otk_device_cert_key(const otk_device *d, int which, uint8_t priv[OTK_PRIV_LEN])
{
    if (d == NULL || d->state == OTK_DEV_UNINIT)
        return OTK_ERR_BAD_STATE;
    return otk_ks_read_key(&d->ks, which == OTK_SET_STAGED, priv);
}

otk_status otk_device_ca_pin(const otk_device *d, int which, uint8_t pin[OTK_PIN_LEN])
{
    return set_field(d, which, offsetof(otk_keyset, ca_pin), OTK_PIN_LEN, pin, 1);
}

uint32_t otk_device_version(const otk_device *d, int which)
{
    if (d == NULL || d->state == OTK_DEV_UNINIT)
        return 0;
    return which == OTK_SET_STAGED ? otk_ks_staged_version(&d->ks) : otk_ks_active_version(&d->ks);
}

otk_status otk_device_last_remote(const otk_device *d)
{
    return d ? d->last_remote : OTK_OK;
}

void otk_device_free(otk_device *d)
{
    if (d)
        otk_wipe(d, sizeof *d);
}
