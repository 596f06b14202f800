/* A CRL as a compact list (crl.h). */
#include "otakey/crl.h"

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>

void otk_crl_clear(otk_crl_list *l)
{
    free(l->e);
    l->e = NULL;
    l->n = l->cap = 0;
}

static int cmp_entry(const void *a, const void *b)
{
    const otk_crl_entry *x = a, *y = b;
    if (x->sn_len != y->sn_len)
        return x->sn_len < y->sn_len ? -1 : 1;
    return memcmp(x->sn, y->sn, x->sn_len);
}

static int reserve(otk_crl_list *l, size_t n)
{
    otk_crl_entry *e;
    size_t cap = l->cap ? l->cap : 1024;
    if (n <= l->cap)
        return 0;
    while (cap < n)
        cap *= 2;
    if ((e = realloc(l->e, cap * sizeof *e)) == NULL)
        return -1;
    l->e = e;
    l->cap = cap;
    return 0;
}

/* One DER element at *p (before end): its tag, class, whether constructed,
 * where its content starts and how long it is; *p moves past it. */
typedef struct elem {
    const unsigned char *start, *content;
    long len;
    int tag, cls, cons;
} elem;

static int next(const unsigned char **p, const unsigned char *end, elem *e)
{
    int r;
    if (*p >= end)
        return -1;
    e->start = *p;
    r = ASN1_get_object(p, &e->len, &e->tag, &e->cls, (long)(end - *p));
    if ((r & 0x80) || (r & 1)) /* an error, or an indefinite length (not DER) */
        return -1;
    e->cons = (r & V_ASN1_CONSTRUCTED) != 0;
    e->content = *p;
    *p += e->len;
    return 0;
}

static int is(const elem *e, int tag, int cons)
{
    return e->cls == V_ASN1_UNIVERSAL && e->tag == tag && e->cons == cons;
}

static int is_time(const elem *e)
{
    return is(e, V_ASN1_UTCTIME, 0) || is(e, V_ASN1_GENERALIZEDTIME, 0);
}

/* A revocation date as "YYYYMMDDHHMMSS" (a UTCTime's year in 1950..2049);
 * -1 for a form other than the two RFC 5280 allows. */
static int norm_time(const uint8_t *t, size_t len, char out[15])
{
    size_t n = len >= 2 ? t[1] : 0, i;
    if (len < 2 || t[1] & 0x80 || n + 2 != len)
        return -1;
    for (i = 0; i + 1 < n; i++)
        if (t[2 + i] < '0' || t[2 + i] > '9')
            return -1;
    if (t[0] == V_ASN1_UTCTIME && n == 13 && t[14] == 'Z') {
        memcpy(out, t[2] >= '5' ? "19" : "20", 2);
        memcpy(out + 2, t + 2, 12);
    } else if (t[0] == V_ASN1_GENERALIZEDTIME && n == 15 && t[16] == 'Z') {
        memcpy(out, t + 2, 14);
    } else {
        return -1;
    }
    out[14] = '\0';
    return 0;
}

/* A serial as DER wants it, and as a broker's OpenSSL accepts it: a
 * positive INTEGER in its shortest form. */
static int good_serial(const elem *sn)
{
    const unsigned char *c = sn->content;
    if (!is(sn, V_ASN1_INTEGER, 0) || sn->len < 1 || sn->len > OTK_CRL_SN_MAX || (c[0] & 0x80))
        return 0;
    return sn->len == 1 || c[0] != 0 || (c[1] & 0x80);
}

/* The revokedCertificates list: SEQUENCE OF SEQUENCE { serial, date,
 * extensions SEQUENCE? }; the extensions are not kept. */
static int read_entries(const unsigned char *p, const unsigned char *end, otk_crl_list *l)
{
    elem ent, sn, t, ext;
    char norm[15];
    while (p < end) {
        const unsigned char *q;
        otk_crl_entry *e;
        size_t t_tlv;
        if (next(&p, end, &ent) != 0 || !is(&ent, V_ASN1_SEQUENCE, 1))
            return -1;
        q = ent.content;
        if (next(&q, p, &sn) != 0 || !good_serial(&sn) || next(&q, p, &t) != 0 || !is_time(&t))
            return -1;
        t_tlv = (size_t)(q - t.start);
        if (t_tlv > OTK_CRL_TIME_MAX || norm_time(t.start, t_tlv, norm) != 0 ||
            (q < p && (next(&q, p, &ext) != 0 || !is(&ext, V_ASN1_SEQUENCE, 1) || q != p)) ||
            reserve(l, l->n + 1) != 0)
            return -1;
        e = &l->e[l->n++];
        e->sn_len = (uint8_t)sn.len;
        memcpy(e->sn, sn.content, (size_t)sn.len);
        e->t_len = (uint8_t)t_tlv;
        memcpy(e->t, t.start, t_tlv);
    }
    return 0;
}

/* CertificateList ::= SEQUENCE { TBSCertList, signatureAlgorithm, signature };
 * TBSCertList ::= SEQUENCE { version?, signature, issuer, thisUpdate,
 * nextUpdate?, revokedCertificates?, [0] crlExtensions? } (RFC 5280 5.1). */
static int parse(const unsigned char *p, long len, otk_crl_list *l)
{
    const unsigned char *end = p + len, *q;
    elem e;
    if (next(&p, end, &e) != 0 || !is(&e, V_ASN1_SEQUENCE, 1))
        return -1;
    p = e.content;
    end = e.content + e.len;
    if (next(&p, end, &e) != 0 || !is(&e, V_ASN1_SEQUENCE, 1))
        return -1;
    p = e.content;
    end = e.content + e.len; /* the TBSCertList */
    if (next(&p, end, &e) != 0)
        return -1;
    if (is(&e, V_ASN1_INTEGER, 0) && next(&p, end, &e) != 0) /* version */
        return -1;
    if (!is(&e, V_ASN1_SEQUENCE, 1) || next(&p, end, &e) != 0 || /* signature */
        !is(&e, V_ASN1_SEQUENCE, 1) || next(&p, end, &e) != 0 || /* issuer */
        !is_time(&e))                                             /* thisUpdate */
        return -1;
    /* Then nextUpdate?, revokedCertificates?, [0] crlExtensions?, nothing else:
     * anything else is not a CRL this can read (and write back whole). */
    if (p < end && (q = p, next(&q, end, &e) != 0))
        return -1;
    if (p < end && is_time(&e)) {
        p = q;
        if (p < end && (q = p, next(&q, end, &e) != 0))
            return -1;
    }
    if (p < end && is(&e, V_ASN1_SEQUENCE, 1)) {
        if (read_entries(e.content, e.content + e.len, l) != 0)
            return -1;
        p = q;
        if (p < end && (q = p, next(&q, end, &e) != 0))
            return -1;
    }
    if (p < end && e.cls == V_ASN1_CONTEXT_SPECIFIC && e.tag == 0 && e.cons) {
        /* An issuingDistributionPoint (OID 2.5.29.28) among the extensions:
         * looked for as its encoding; a false match only takes the CRL for
         * a share, which is never written over as a placeholder. */
        static const unsigned char idp_oid[] = {0x06, 0x03, 0x55, 0x1d, 0x1c};
        long i;
        for (i = 0; i + (long)sizeof idp_oid <= e.len; i++)
            if (memcmp(e.content + i, idp_oid, sizeof idp_oid) == 0)
                l->idp = 1;
        p = q;
    }
    return p == end ? 0 : -1;
}

/* Sorted and each serial once: as written here (one pass finds it so), sorted anew otherwise. */
static void sort_unique(otk_crl_list *l)
{
    size_t i, k;
    for (i = 1; i < l->n && cmp_entry(&l->e[i - 1], &l->e[i]) < 0; i++)
        ;
    if (i < l->n) {
        qsort(l->e, l->n, sizeof *l->e, cmp_entry);
        for (i = k = 1; i < l->n; i++)
            if (cmp_entry(&l->e[k - 1], &l->e[i]) != 0)
                l->e[k++] = l->e[i];
        l->n = l->n ? k : 0;
    }
}

int otk_crl_parse(const unsigned char *der, long len, otk_crl_list *l)
{
    l->n = 0;
    if (der == NULL || len <= 0 || parse(der, len, l) != 0) {
        l->n = 0;
        return -1;
    }
    sort_unique(l);
    return 0;
}

int otk_crl_read(FILE *f, otk_crl_list *l, size_t *crls)
{
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL;
    long len = 0;
    size_t n = 0;
    int bad = 0;
    unsigned long err;
    l->n = 0;
    l->idp = 0;
    ERR_clear_error();
    while (!bad && PEM_read(f, &name, &header, &data, &len) == 1) {
        if (strcmp(name, PEM_STRING_X509_CRL) == 0) {
            bad = data == NULL || len <= 0 || parse(data, len, l) != 0;
            n++;
        }
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(data);
        name = header = NULL;
        data = NULL;
    }
    /* The loop ends at the end of the file (no further block), or at a
     * block that is not PEM to its end: a damaged file, not read as less. */
    err = ERR_peek_last_error();
    if (!bad && !(ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE))
        bad = 1;
    ERR_clear_error();
    if (bad || n == 0) {
        l->n = 0;
        return -1;
    }
    sort_unique(l); /* shares: each sorted, together not */
    if (crls != NULL)
        *crls = n;
    return 0;
}

int otk_crl_split(const otk_crl_list *all, otk_crl_list *shares, unsigned n)
{
    size_t i;
    unsigned k;
    for (k = 0; k < n; k++)
        shares[k].n = 0;
    for (i = 0; i < all->n; i++) {
        const otk_crl_entry *e = &all->e[i];
        otk_crl_list *l = &shares[otk_crl_share(e->sn, e->sn_len, n)];
        if (reserve(l, l->n + 1) != 0) {
            for (k = 0; k < n; k++)
                shares[k].n = 0;
            return -1;
        }
        l->e[l->n++] = *e;
    }
    return 0;
}

unsigned otk_crl_share(const uint8_t *sn, size_t len, unsigned shares)
{
    unsigned v;
    if (shares <= 1 || len == 0)
        return 0;
    v = len >= 2 ? (unsigned)sn[len - 2] << 8 | sn[len - 1] : sn[0];
    return v % shares;
}

/* An unsigned big-endian number as a DER INTEGER's content: no leading
 * zero octets, one zero before a top bit that is set. 0 when too long. */
static size_t int_content(const uint8_t *s, size_t len, uint8_t out[OTK_CRL_SN_MAX])
{
    while (len > 1 && s[0] == 0) {
        s++;
        len--;
    }
    if (len == 0 || len + (s[0] >> 7) > OTK_CRL_SN_MAX)
        return 0;
    out[0] = 0;
    memcpy(out + (s[0] >> 7), s, len);
    return len + (s[0] >> 7);
}

int otk_crl_has(const otk_crl_list *l, const uint8_t *sn, size_t len)
{
    otk_crl_entry key;
    size_t n = int_content(sn, len, key.sn);
    if (n == 0 || l->n == 0)
        return 0;
    key.sn_len = (uint8_t)n;
    return bsearch(&key, l->e, l->n, sizeof *l->e, cmp_entry) != NULL;
}

int otk_crl_update(otk_crl_list *l, const ASN1_TIME *horizon, const uint8_t *fresh, size_t n,
                   size_t sn_len, const ASN1_TIME *when)
{
    uint8_t td[OTK_CRL_TIME_MAX], *p = td, hd[OTK_CRL_TIME_MAX], *hp = hd;
    char h[15], t[15];
    int tl = i2d_ASN1_TIME(when, NULL), hl = i2d_ASN1_TIME(horizon, NULL);
    size_t i, kept, k;
    if (tl <= 0 || tl > OTK_CRL_TIME_MAX || hl <= 0 || hl > OTK_CRL_TIME_MAX ||
        sn_len < 1 || sn_len >= OTK_CRL_SN_MAX || i2d_ASN1_TIME(when, &p) != tl ||
        i2d_ASN1_TIME(horizon, &hp) != hl || norm_time(hd, (size_t)hl, h) != 0 ||
        reserve(l, l->n + n) != 0)
        return -1;
    /* A revocation older than the horizon names an expired certificate; a
     * date of another form is kept. */
    for (i = kept = 0; i < l->n; i++)
        if (norm_time(l->e[i].t, l->e[i].t_len, t) != 0 || strcmp(t, h) > 0)
            l->e[kept++] = l->e[i];
    /* Merged from the back: both runs are sorted. */
    l->n = kept + n;
    for (i = kept, k = l->n; n > 0;) {
        otk_crl_entry f;
        f.sn_len = (uint8_t)int_content(fresh + (n - 1) * sn_len, sn_len, f.sn);
        f.t_len = (uint8_t)tl;
        memcpy(f.t, td, (size_t)tl);
        if (i > 0 && cmp_entry(&l->e[i - 1], &f) > 0) {
            l->e[--k] = l->e[--i];
        } else {
            l->e[--k] = f;
            n--;
        }
    }
    return 0;
}

static size_t entry_content(const otk_crl_entry *e)
{
    return (size_t)ASN1_object_size(0, e->sn_len, V_ASN1_INTEGER) + e->t_len;
}

/* An issuingDistributionPoint naming one URI (its full name), critical, on h. */
static int add_idp(X509_CRL *h, const char *uri)
{
    ISSUING_DIST_POINT *idp = ISSUING_DIST_POINT_new();
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_IA5STRING *s = ASN1_IA5STRING_new();
    int ok = 0;
    if (idp == NULL || gn == NULL || s == NULL || ASN1_STRING_set(s, uri, -1) != 1 ||
        (idp->distpoint = DIST_POINT_NAME_new()) == NULL ||
        (idp->distpoint->name.fullname = GENERAL_NAMES_new()) == NULL)
        goto out;
    GENERAL_NAME_set0_value(gn, GEN_URI, s);
    s = NULL;
    idp->distpoint->type = 0;
    if (sk_GENERAL_NAME_push(idp->distpoint->name.fullname, gn) <= 0)
        goto out;
    gn = NULL;
    ok = X509_CRL_add1_ext_i2d(h, NID_issuing_distribution_point, idp, 1, 0) == 1;
out:
    ASN1_IA5STRING_free(s);
    GENERAL_NAME_free(gn);
    ISSUING_DIST_POINT_free(idp);
    return ok;
}

/* Where the entries go in the header's content (hc, n bytes): before the
 * crlExtensions ([0]) when there are any, else at the end. */
static long entries_at(const unsigned char *hc, long n)
{
    const unsigned char *p = hc, *end = hc + n;
    elem e;
    while (p < end) {
        const unsigned char *at = p;
        if (next(&p, end, &e) != 0)
            return -1;
        if (e.cls == V_ASN1_CONTEXT_SPECIFIC && e.tag == 0 && e.cons)
            return p == end ? (long)(at - hc) : -1;
    }
    return n;
}

int otk_crl_write(FILE *f, const otk_crl_list *l, X509 *ca, EVP_PKEY *key, const ASN1_TIME *now,
                  const ASN1_TIME *next_update, const char *idp_uri)
{
    X509_CRL *h = X509_CRL_new();
    const X509_ALGOR *alg = NULL;
    unsigned char *hdr = NULL, *algd = NULL, *buf = NULL, *q, *sig;
    const unsigned char *hp;
    long hc_len = 0, split;
    int tag, cls, hl, al, rc = -1;
    size_t body = 0, i, tbs_content, tbs, sig_max, content, total, off, sig_len;
    EVP_MD_CTX *mc = NULL;
    /* The header (version 2, the signature's algorithm, issuer, dates) as
     * OpenSSL encodes it for a CRL without entries. */
    if (h == NULL || X509_CRL_set_version(h, 1) != 1 ||
        X509_CRL_set_issuer_name(h, X509_get_subject_name(ca)) != 1 ||
        X509_CRL_set1_lastUpdate(h, now) != 1 || X509_CRL_set1_nextUpdate(h, next_update) != 1 ||
        (idp_uri != NULL && !add_idp(h, idp_uri)) || X509_CRL_sign(h, key, EVP_sha256()) <= 0 ||
        (hl = i2d_re_X509_CRL_tbs(h, &hdr)) <= 0)
        goto out;
    X509_CRL_get0_signature(h, NULL, &alg);
    hp = hdr;
    if ((ASN1_get_object(&hp, &hc_len, &tag, &cls, hl) & 0x80) || tag != V_ASN1_SEQUENCE ||
        (al = i2d_X509_ALGOR(alg, &algd)) <= 0 || (split = entries_at(hp, hc_len)) < 0)
        goto out;
    for (i = 0; i < l->n; i++)
        body += (size_t)ASN1_object_size(1, (int)entry_content(&l->e[i]), V_ASN1_SEQUENCE);
    if (body > 0x40000000u) /* a billion bytes: not a CRL any broker loads */
        goto out;
    tbs_content = (size_t)hc_len + (l->n ? (size_t)ASN1_object_size(1, (int)body, V_ASN1_SEQUENCE) : 0);
    tbs = (size_t)ASN1_object_size(1, (int)tbs_content, V_ASN1_SEQUENCE);
    if (EVP_PKEY_get_size(key) <= 0)
        goto out;
    sig_max = (size_t)EVP_PKEY_get_size(key);
    content = tbs + (size_t)al + (size_t)ASN1_object_size(0, (int)sig_max + 1, V_ASN1_BIT_STRING);
    total = (size_t)ASN1_object_size(1, (int)content, V_ASN1_SEQUENCE);
    if ((buf = OPENSSL_malloc(total + sig_max)) == NULL)
        goto out;
    /* The TBSCertList where it would go with the longest signature. */
    off = total - content;
    q = buf + off;
    ASN1_put_object(&q, 1, (int)tbs_content, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
    memcpy(q, hp, (size_t)split);
    q += split;
    if (l->n)
        ASN1_put_object(&q, 1, (int)body, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
    for (i = 0; i < l->n; i++) {
        const otk_crl_entry *e = &l->e[i];
        ASN1_put_object(&q, 1, (int)entry_content(e), V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
        ASN1_put_object(&q, 0, e->sn_len, V_ASN1_INTEGER, V_ASN1_UNIVERSAL);
        memcpy(q, e->sn, e->sn_len);
        q += e->sn_len;
        memcpy(q, e->t, e->t_len);
        q += e->t_len;
    }
    memcpy(q, hp + split, (size_t)(hc_len - split)); /* the extensions */
    q += hc_len - split;
    if ((size_t)(q - (buf + off)) != tbs)
        goto out;
    /* Signed (after the buffer's end, then moved into place). */
    sig = buf + total;
    sig_len = sig_max;
    if ((mc = EVP_MD_CTX_new()) == NULL ||
        EVP_DigestSignInit(mc, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSign(mc, sig, &sig_len, buf + off, tbs) != 1 || sig_len > sig_max)
        goto out;
    content = tbs + (size_t)al + (size_t)ASN1_object_size(0, (int)sig_len + 1, V_ASN1_BIT_STRING);
    total = (size_t)ASN1_object_size(1, (int)content, V_ASN1_SEQUENCE);
    memmove(buf + (total - content), buf + off, tbs);
    q = buf;
    ASN1_put_object(&q, 1, (int)content, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
    q += tbs;
    memcpy(q, algd, (size_t)al);
    q += al;
    /* the signature before q is overwritten: it sits past every byte written */
    ASN1_put_object(&q, 0, (int)sig_len + 1, V_ASN1_BIT_STRING, V_ASN1_UNIVERSAL);
    *q++ = 0; /* no unused bits */
    memmove(q, sig, sig_len);
    q += sig_len;
    if ((size_t)(q - buf) != total)
        goto out;
    rc = PEM_write(f, PEM_STRING_X509_CRL, "", buf, (long)total) > 0 ? 0 : -1;
out:
    EVP_MD_CTX_free(mc);
    OPENSSL_free(buf);
    OPENSSL_free(hdr);
    OPENSSL_free(algd);
    X509_CRL_free(h);
    return rc;
}
