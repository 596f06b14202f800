/*
 * Cloud adapter for certificate clouds (include/otakey/x509cloud.h):
 * device certificates issued with OpenSSL 3 from the cloud's CA, and the
 * CRL the broker enforces.
 */
#include "../internal.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "otakey/crl.h"
#include "otakey/pkcs11.h"
#include "otakey/x509cloud.h"

#define SERIAL_LEN 16 /* 128 random bits, top bit clear: a positive INTEGER */

/* A certificate's CRL distribution point when the CRL is split in shares:
 * its share and the number of shares, three digits each. */
#define DP_PREFIX "urn:otakey:crl:"
#define DP_FORMAT DP_PREFIX "%03u/%03u"
#define DP_LEN (sizeof DP_PREFIX - 1 + 7)

/* Where a share's CRL is in the file this agent last wrote. */
typedef struct share_seg {
    long off, len;
    int dirty; /* to be signed again at the next write */
} share_seg;

struct otk_x509 {
    otk_x509_cloud cfg;
    X509 *ca;
    EVP_PKEY *ca_key;
    EVP_MD_CTX *sign_tpl; /* SHA-256 with ca_key, initialised once and copied per certificate */
    EC_GROUP *group; /* P-256, for checking device keys */
    otk_token_key *token; /* the token holding ca_key, or NULL (a key file) */
    uint8_t pin[OTK_PIN_LEN];
    char (*queue)[2 * SERIAL_LEN + 1];
    size_t pending, cap;
    size_t entries;
    unsigned shares;     /* the CRL's shares (1: one CRL, without a distribution point) */
    otk_crl_list *crl;   /* each share's list as this agent last wrote or read it */
    share_seg *seg;      /* ... where it is in the file, */
    int crl_known;       /* ... and crl_st says which file that was */
    size_t file_crls;    /* the CRLs the file held when read (0: no file, or a placeholder) */
    struct stat crl_st;
    int journal;  /* "<crl_file>.queue": revocations not yet in the CRL, one serial a line */
    int unsynced; /* appended since the last otk_x509_sync */
    /* The TBSCertificate OpenSSL made once for a placeholder device, and
     * where a device's own fields (all of fixed length) go in it. */
    unsigned char *tbs, *alg;
    size_t tbs_len, alg_len, sn_off, cn_off, pub_off, nb_off, na_off, nb_len, na_len, dp_off;
};

static void make_template(otk_x509 *x);
static int load_crl(otk_x509 *x);

static int err_out(char *err, size_t n, const char *fmt, const char *a)
{
    if (err != NULL && n > 0)
        snprintf(err, n, fmt, a);
    return -1;
}

otk_status otk_x509_open(const otk_x509_cloud *cfg, otk_x509 **out, char *err, size_t err_size)
{
    otk_x509 *x;
    FILE *f = NULL;
    struct stat st;
    if (cfg == NULL || out == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    *out = NULL;
    x = calloc(1, sizeof *x);
    if (x == NULL)
        abort();
    x->cfg = *cfg;
    x->journal = -1;
    if ((x->group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1)) == NULL)
        abort();
    if (x->cfg.validity_days == 0)
        x->cfg.validity_days = 30;
    if (x->cfg.crl_shares == 0)
        x->cfg.crl_shares = OTK_X509_CRL_SHARES;
    if (x->cfg.crl_shares > OTK_X509_CRL_SHARES_MAX) {
        err_out(err, err_size, "crl_shares: at most %s", "256");
        goto fail;
    }
    x->shares = x->cfg.crl_shares;
    if ((x->crl = calloc(x->shares, sizeof *x->crl)) == NULL ||
        (x->seg = calloc(x->shares, sizeof *x->seg)) == NULL)
        abort();
    if ((f = fopen(cfg->ca_cert, "r")) == NULL || (x->ca = PEM_read_X509(f, NULL, NULL, NULL)) == NULL) {
        err_out(err, err_size, "ca_cert '%s': not a PEM certificate", cfg->ca_cert);
        goto fail;
    }
    fclose(f);
    f = NULL;
    /* In a PKCS#11 token (an HSM; SoftHSM in the tests): the key never leaves it. */
    if (otk_is_token_uri(cfg->ca_key)) {
        char e[256];
        if ((x->token = otk_token_key_open(cfg->ca_key, cfg->pkcs11_module, cfg->pkcs11_pin_file, e,
                                           sizeof e)) == NULL) {
            err_out(err, err_size, "ca_key %s", e);
            goto fail;
        }
        x->ca_key = otk_token_key_pkey(x->token);
        if (X509_check_private_key(x->ca, x->ca_key) != 1) {
            err_out(err, err_size, "ca_key '%s': the token's key is not ca_cert's", cfg->ca_key);
            goto fail;
        }
        goto key_done;
    }
    /* The CA key signs every device's identity: like the agent's own key, others may not read it. */
    if (stat(cfg->ca_key, &st) != 0 || (st.st_mode & 077)) {
        err_out(err, err_size, "ca_key '%s': missing, or accessible by group or others (chmod 600 it)",
                cfg->ca_key);
        f = NULL;
        goto fail;
    }
    if ((f = fopen(cfg->ca_key, "r")) == NULL ||
        (x->ca_key = PEM_read_PrivateKey(f, NULL, NULL, NULL)) == NULL ||
        X509_check_private_key(x->ca, x->ca_key) != 1) {
        err_out(err, err_size, "ca_key '%s': not the PEM key of ca_cert", cfg->ca_key);
        goto fail;
    }
    fclose(f);
    f = NULL;
key_done:
    if (cfg->server_ca[0]) {
        X509 *s = NULL;
        unsigned char *der = NULL;
        int n;
        unsigned md_len = 0;
        if ((f = fopen(cfg->server_ca, "r")) == NULL ||
            (s = PEM_read_X509(f, NULL, NULL, NULL)) == NULL || (n = i2d_X509(s, &der)) <= 0 ||
            EVP_Digest(der, (size_t)n, x->pin, &md_len, EVP_sha256(), NULL) != 1) {
            X509_free(s);
            OPENSSL_free(der);
            err_out(err, err_size, "server_ca '%s': not a PEM certificate", cfg->server_ca);
            goto fail;
        }
        X509_free(s);
        OPENSSL_free(der);
        fclose(f);
        f = NULL;
    }
    {
        char path[300];
        snprintf(path, sizeof path, "%s.queue", cfg->crl_file);
        x->journal = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (x->journal < 0) {
            err_out(err, err_size, "crl_file '%s': cannot open its revocation queue (.queue)",
                    cfg->crl_file);
            goto fail;
        }
    }
    /* A CRL written for another number of shares: the certificates issued
     * since name shares this agent would not write (or none), and their
     * logins would fail. */
    if (load_crl(x) != 0 && x->file_crls != 0 && x->file_crls != x->shares) {
        if (err != NULL && err_size > 0)
            snprintf(err, err_size, "crl_file '%s': %zu CRLs in it, crl_shares = %u (fixed once "
                     "certificates are issued: each names its share; to change it, switch the "
                     "devices to a new cloud)", cfg->crl_file, x->file_crls, x->shares);
        goto fail;
    }
    make_template(x);
    *out = x;
    return OTK_OK;
fail:
    if (f)
        fclose(f);
    otk_x509_close(x);
    return OTK_ERR_CLOUD;
}

void otk_x509_close(otk_x509 *x)
{
    unsigned i;
    if (x == NULL)
        return;
    X509_free(x->ca);
    EC_GROUP_free(x->group);
    EVP_MD_CTX_free(x->sign_tpl); /* (before the key it holds) */
    if (x->token != NULL)
        otk_token_key_close(x->token); /* it owns ca_key */
    else
        EVP_PKEY_free(x->ca_key);
    if (x->journal >= 0)
        close(x->journal);
    free(x->queue);
    OPENSSL_free(x->tbs);
    OPENSSL_free(x->alg);
    for (i = 0; x->crl != NULL && i < x->shares; i++)
        otk_crl_clear(&x->crl[i]);
    free(x->crl);
    free(x->seg);
    otk_wipe(x, sizeof *x);
    free(x);
}

/*
 * The certificate's subject public key: a P-256 point X || Y, checked to be
 * on the curve, written as the SubjectPublicKeyInfo's algorithm (id-ecPublicKey,
 * prime256v1) and key bits directly. (X509_set_pubkey with an EVP_PKEY made
 * from parameters went through OpenSSL 3's encoder and decoder lookups: about
 * half of what issuing a certificate cost the agent.)
 */
static int set_public_key(X509 *c, const EC_GROUP *group, const uint8_t pub[OTK_PUB_LEN])
{
    unsigned char *point = OPENSSL_malloc(1 + OTK_PUB_LEN);
    EC_POINT *q = group ? EC_POINT_new(group) : NULL;
    int ok;
    if (point != NULL) {
        point[0] = 0x04;
        memcpy(point + 1, pub, OTK_PUB_LEN);
    }
    ok = point != NULL && q != NULL &&
         EC_POINT_oct2point(group, q, point, 1 + OTK_PUB_LEN, NULL) == 1 &&
         X509_PUBKEY_set0_param(X509_get_X509_PUBKEY(c), OBJ_nid2obj(NID_X9_62_id_ecPublicKey),
                                V_ASN1_OBJECT, OBJ_nid2obj(NID_X9_62_prime256v1), point,
                                1 + OTK_PUB_LEN) == 1;
    if (!ok)
        OPENSSL_free(point);
    EC_POINT_free(q);
    return ok;
}

static int add_ext(X509 *c, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509_EXTENSION *e;
    int ok;
    X509V3_set_ctx(&v3, issuer, c, NULL, NULL, 0);
    e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    ok = e != NULL && X509_add_ext(c, e, -1) == 1;
    X509_EXTENSION_free(e);
    return ok;
}

/*
 * A certificate as OpenSSL makes it, for a device key, serial and issuing
 * time: the reference the template below is cut from, and the way taken
 * when the template does not fit (a date past 2049 changes its length).
 * NULL with *bad_key set when dpub is not a point of the curve.
 */
static X509 *build_cert(otk_x509 *x, const uint8_t device_id[16], const uint8_t dpub[OTK_PUB_LEN],
                        const uint8_t sn[SERIAL_LEN], time_t now, int *bad_key)
{
    char cn[33], dp[32];
    X509 *c = NULL;
    X509_NAME *name = NULL;
    BIGNUM *bn = NULL;
    ASN1_INTEGER *ai = NULL;
    int ok;
    *bad_key = 0;
    otk_hex_encode(device_id, OTK_DEVICE_ID_LEN, cn);
    snprintf(dp, sizeof dp, "URI:" DP_FORMAT, otk_crl_share(sn, SERIAL_LEN, x->shares), x->shares);
    if ((c = X509_new()) == NULL)
        return NULL;
    if (!set_public_key(c, x->group, dpub)) {
        X509_free(c);
        *bad_key = 1;
        return NULL;
    }
    ok = X509_set_version(c, 2) == 1 &&
         (bn = BN_bin2bn(sn, SERIAL_LEN, NULL)) != NULL && (ai = BN_to_ASN1_INTEGER(bn, NULL)) != NULL &&
         X509_set_serialNumber(c, ai) == 1 &&
         X509_set_issuer_name(c, X509_get_subject_name(x->ca)) == 1 &&
         (name = X509_NAME_new()) != NULL &&
         X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) == 1 &&
         X509_set_subject_name(c, name) == 1 &&
         X509_time_adj(X509_getm_notBefore(c), -300, &now) != NULL &&
         X509_time_adj(X509_getm_notAfter(c), (long)x->cfg.validity_days * 86400L, &now) != NULL &&
         add_ext(c, x->ca, NID_basic_constraints, "critical,CA:FALSE") &&
         add_ext(c, x->ca, NID_key_usage, "critical,digitalSignature") &&
         add_ext(c, x->ca, NID_ext_key_usage, "clientAuth") &&
         (x->shares <= 1 || add_ext(c, x->ca, NID_crl_distribution_points, dp)) &&
         X509_sign(c, x->ca_key, EVP_sha256()) > 0;
    X509_NAME_free(name);
    BN_free(bn);
    ASN1_INTEGER_free(ai);
    if (!ok) {
        X509_free(c);
        return NULL;
    }
    return c;
}

/* A time as RFC 5280 encodes it: UTCTime through 2049, GeneralizedTime
 * from 2050 (tag, length, content); its length, 0 when out of range. */
static size_t der_time(time_t t, unsigned char out[17])
{
    struct tm tm;
    char txt[16];
    size_t n;
    if (gmtime_r(&t, &tm) == NULL || tm.tm_year < 50 || tm.tm_year > 8099)
        return 0;
    n = tm.tm_year < 150 ? strftime(txt, sizeof txt, "%y%m%d%H%M%SZ", &tm)
                         : strftime(txt, sizeof txt, "%Y%m%d%H%M%SZ", &tm);
    if (n != (tm.tm_year < 150 ? 13u : 15u))
        return 0;
    out[0] = tm.tm_year < 150 ? V_ASN1_UTCTIME : V_ASN1_GENERALIZEDTIME;
    out[1] = (unsigned char)n;
    memcpy(out + 2, txt, n);
    return n + 2;
}

/* Where needle is in hay, if it is there exactly once. */
static int find_once(const unsigned char *hay, size_t n, const void *needle, size_t k, size_t *at)
{
    size_t i, found = 0;
    for (i = 0; k > 0 && i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0) {
            if (found++)
                return 0;
            *at = i;
        }
    return found == 1;
}

/*
 * The template: a certificate OpenSSL makes for a placeholder device (its
 * serial, name, key and dates chosen to occur once each), kept as its
 * TBSCertificate and signature algorithm with the places of those fields.
 * A device's certificate is then that TBSCertificate with its own fields
 * copied in, signed: what OpenSSL builds, without building it (the
 * building was as costly as the signature). Without a template (fields not
 * found), every certificate is built by OpenSSL.
 */
static void make_template(otk_x509 *x)
{
    uint8_t id[16], pub[1 + OTK_PUB_LEN], sn[SERIAL_LEN];
    unsigned char nb[17], na[17], *tbs = NULL, *alg = NULL;
    char cn[33], dp[32];
    const X509_ALGOR *sig_alg = NULL;
    time_t t = time(NULL);
    size_t nbl = der_time(t - 300, nb), nal = der_time(t + (time_t)x->cfg.validity_days * 86400, na);
    int tl, al, bad;
    X509 *c;
    unsigned char snd[2 + SERIAL_LEN];
    /* An EC CA key only (PKCS#11 included): its signature and algorithm
     * are what X509_sign makes of them, and short; an RSA key (PSS and its
     * parameters among them) keeps OpenSSL's way. */
    if (EVP_PKEY_get_base_id(x->ca_key) != EVP_PKEY_EC)
        return;
    memset(id, 0x5a, sizeof id);
    memset(sn, 0xa5, sizeof sn);
    sn[0] = 0x4b;
    if (EC_POINT_point2oct(x->group, EC_GROUP_get0_generator(x->group), POINT_CONVERSION_UNCOMPRESSED,
                           pub, sizeof pub, NULL) != sizeof pub || nbl == 0 || nal == 0)
        return;
    if ((c = build_cert(x, id, pub + 1, sn, t, &bad)) == NULL)
        return;
    X509_get0_signature(NULL, &sig_alg, c);
    tl = i2d_re_X509_tbs(c, &tbs);
    al = i2d_X509_ALGOR(sig_alg, &alg);
    X509_free(c);
    snd[0] = V_ASN1_INTEGER;
    snd[1] = SERIAL_LEN;
    memcpy(snd + 2, sn, SERIAL_LEN);
    otk_hex_encode(id, sizeof id, cn);
    snprintf(dp, sizeof dp, DP_FORMAT, otk_crl_share(sn, SERIAL_LEN, x->shares), x->shares);
    if (x->shares > 1 && (tl <= 0 || !find_once(tbs, (size_t)tl, dp, DP_LEN, &x->dp_off)))
        tl = 0; /* no template */
    if (tl > 0 && al > 0 && find_once(tbs, (size_t)tl, snd, sizeof snd, &x->sn_off) &&
        find_once(tbs, (size_t)tl, cn, 32, &x->cn_off) &&
        find_once(tbs, (size_t)tl, pub, sizeof pub, &x->pub_off) &&
        find_once(tbs, (size_t)tl, nb, nbl, &x->nb_off) && find_once(tbs, (size_t)tl, na, nal, &x->na_off)) {
        x->sn_off += 2;
        x->pub_off += 1;
        x->dp_off += sizeof DP_PREFIX - 1; /* the share's digits */
        x->tbs = tbs;
        x->tbs_len = (size_t)tl;
        x->alg = alg;
        x->alg_len = (size_t)al;
        x->nb_len = nbl;
        x->na_len = nal;
        return;
    }
    OPENSSL_free(tbs);
    OPENSSL_free(alg);
}

/* DER of a length (at most 3 bytes of it: certificates are small). */
static unsigned char *put_len(unsigned char *q, size_t n)
{
    if (n < 0x80) {
        *q++ = (unsigned char)n;
    } else if (n < 0x100) {
        *q++ = 0x81;
        *q++ = (unsigned char)n;
    } else {
        *q++ = 0x82;
        *q++ = (unsigned char)(n >> 8);
        *q++ = (unsigned char)n;
    }
    return q;
}

static size_t len_size(size_t n)
{
    return n < 0x80 ? 1 : n < 0x100 ? 2 : 3;
}

/* A certificate from the template: 1 made, 0 when the template does not fit
 * (no template, a date of another length, a signature that failed), -1
 * when the certificate does not fit the caller's buffer. */
static int from_template(otk_x509 *x, const uint8_t device_id[16], const uint8_t dpub[OTK_PUB_LEN],
                         const uint8_t sn[SERIAL_LEN], time_t now, uint8_t *der, size_t der_size,
                         size_t *der_len)
{
    unsigned char nb[17], na[17], tbs[1024], sig[160], *q;
    char cn[33], digits[12];
    size_t sig_len = sizeof sig, bits, content, total;
    EVP_MD_CTX *mc;
    int ok;
    if (x->tbs == NULL || x->tbs_len > sizeof tbs ||
        der_time(now - 300, nb) != x->nb_len ||
        der_time(now + (time_t)x->cfg.validity_days * 86400, na) != x->na_len || nb[0] != x->tbs[x->nb_off] ||
        na[0] != x->tbs[x->na_off])
        return 0;
    memcpy(tbs, x->tbs, x->tbs_len);
    memcpy(tbs + x->sn_off, sn, SERIAL_LEN);
    otk_hex_encode(device_id, OTK_DEVICE_ID_LEN, cn);
    memcpy(tbs + x->cn_off, cn, 32);
    memcpy(tbs + x->pub_off, dpub, OTK_PUB_LEN);
    memcpy(tbs + x->nb_off, nb, x->nb_len);
    memcpy(tbs + x->na_off, na, x->na_len);
    if (x->shares > 1) {
        snprintf(digits, sizeof digits, "%03u", otk_crl_share(sn, SERIAL_LEN, x->shares));
        memcpy(tbs + x->dp_off, digits, 3);
    }
    /* A signing context is a copy of one initialised once: an initialisation
     * looks the digest and the signature up by name in OpenSSL 3. */
    if (x->sign_tpl == NULL && (x->sign_tpl = EVP_MD_CTX_new()) != NULL &&
        EVP_DigestSignInit(x->sign_tpl, NULL, EVP_sha256(), NULL, x->ca_key) != 1) {
        EVP_MD_CTX_free(x->sign_tpl);
        x->sign_tpl = NULL;
    }
    if ((mc = EVP_MD_CTX_new()) == NULL)
        return 0;
    ok = ((x->sign_tpl != NULL && EVP_MD_CTX_copy_ex(mc, x->sign_tpl) == 1) ||
          EVP_DigestSignInit(mc, NULL, EVP_sha256(), NULL, x->ca_key) == 1) &&
         EVP_DigestSign(mc, NULL, &sig_len, tbs, x->tbs_len) == 1 && sig_len <= sizeof sig &&
         EVP_DigestSign(mc, sig, &sig_len, tbs, x->tbs_len) == 1;
    EVP_MD_CTX_free(mc);
    if (!ok)
        return 0; /* OpenSSL's way then, which says why if it fails too */
    /* Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, BIT STRING } */
    bits = 1 + sig_len;
    content = x->tbs_len + x->alg_len + 1 + len_size(bits) + bits;
    total = 1 + len_size(content) + content;
    if (total > der_size || total > OTK_CERT_MAX || content > 0xffff)
        return -1;
    q = der;
    *q++ = V_ASN1_SEQUENCE | V_ASN1_CONSTRUCTED;
    q = put_len(q, content);
    memcpy(q, tbs, x->tbs_len);
    q += x->tbs_len;
    memcpy(q, x->alg, x->alg_len);
    q += x->alg_len;
    *q++ = V_ASN1_BIT_STRING;
    q = put_len(q, bits);
    *q++ = 0; /* no unused bits */
    memcpy(q, sig, sig_len);
    *der_len = total;
    otk_wipe(tbs, sizeof tbs);
    return 1;
}

otk_status otk_x509_issue_at(otk_x509 *x, const uint8_t device_id[16], const uint8_t dpub[OTK_PUB_LEN],
                             const uint8_t sn[SERIAL_LEN], time_t now, int openssl, uint8_t *der,
                             size_t der_size, size_t *der_len)
{
    X509 *c;
    unsigned char *p;
    int n, bad, r = 0;
    EC_POINT *q;
    uint8_t oct[1 + OTK_PUB_LEN];
    if (x == NULL || device_id == NULL || dpub == NULL || sn == NULL || der == NULL || der_len == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    if (!openssl) {
        /* The key must be a point of the curve, as set_public_key checks. */
        oct[0] = 0x04;
        memcpy(oct + 1, dpub, OTK_PUB_LEN);
        q = EC_POINT_new(x->group);
        bad = q == NULL || EC_POINT_oct2point(x->group, q, oct, sizeof oct, NULL) != 1;
        EC_POINT_free(q);
        if (bad)
            return OTK_ERR_INVALID_ARGUMENT;
        r = from_template(x, device_id, dpub, sn, now, der, der_size, der_len);
        if (r != 0)
            return r > 0 ? OTK_OK : OTK_ERR_CLOUD;
    }
    if ((c = build_cert(x, device_id, dpub, sn, now, &bad)) == NULL)
        return bad ? OTK_ERR_INVALID_ARGUMENT : OTK_ERR_CLOUD;
    n = i2d_X509(c, NULL);
    if (n <= 0 || (size_t)n > der_size || (size_t)n > OTK_CERT_MAX) {
        X509_free(c);
        return OTK_ERR_CLOUD;
    }
    p = der;
    n = i2d_X509(c, &p) == n ? n : -1;
    X509_free(c);
    if (n < 0)
        return OTK_ERR_CLOUD;
    *der_len = (size_t)n;
    return OTK_OK;
}

int otk_x509_templated(const otk_x509 *x)
{
    return x != NULL && x->tbs != NULL;
}

otk_status otk_x509_issue_cert(void *ctx, const uint8_t device_id[16], uint32_t cloud_id,
                               const uint8_t dpub[OTK_PUB_LEN], uint8_t *der, size_t der_size,
                               size_t *der_len, char serial[OTK_USER_MAX + 1],
                               uint8_t ca_pin[OTK_PIN_LEN])
{
    otk_x509 *x = ctx;
    uint8_t sn[SERIAL_LEN];
    otk_status st;
    if (x == NULL || cloud_id != x->cfg.cloud_id || dpub == NULL || der == NULL ||
        der_len == NULL || serial == NULL || ca_pin == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    if (RAND_bytes(sn, sizeof sn) != 1)
        return OTK_ERR_CRYPTO;
    sn[0] &= 0x7f;
    sn[0] |= 0x40; /* 16 octets exactly: no leading zero to strip */
    st = otk_x509_issue_at(x, device_id, dpub, sn, time(NULL), 0, der, der_size, der_len);
    if (st != OTK_OK)
        return st;
    otk_hex_encode(sn, sizeof sn, serial);
    memcpy(ca_pin, x->pin, OTK_PIN_LEN);
    return OTK_OK;
}

static void queue_serial(otk_x509 *x, const uint8_t sn[SERIAL_LEN])
{
    if (x->pending == x->cap) {
        x->cap = x->cap ? 2 * x->cap : 64;
        x->queue = realloc(x->queue, x->cap * sizeof *x->queue);
        if (x->queue == NULL)
            abort();
    }
    otk_hex_encode(sn, SERIAL_LEN, x->queue[x->pending++]);
}

otk_status otk_x509_remove(void *ctx, uint32_t cloud_id, const char *serial)
{
    otk_x509 *x = ctx;
    uint8_t sn[SERIAL_LEN];
    if (x == NULL || serial == NULL || cloud_id != x->cfg.cloud_id)
        return OTK_ERR_CLOUD;
    if (strlen(serial) != 2 * SERIAL_LEN || otk_hex_decode(serial, sn, sizeof sn) != 0)
        return OTK_ERR_CLOUD; /* not one of this adapter's serials */
    {
        /* Into the journal first: a crash before the CRL is written loses nothing. */
        char line[2 * SERIAL_LEN + 2];
        int ok;
        otk_hex_encode(sn, sizeof sn, line);
        line[2 * SERIAL_LEN] = '\n';
        if (flock(x->journal, LOCK_EX) != 0)
            return OTK_ERR_CLOUD;
        ok = write(x->journal, line, sizeof line - 1) == (ssize_t)(sizeof line - 1);
        (void)flock(x->journal, LOCK_UN);
        if (!ok)
            return OTK_ERR_CLOUD;
        x->unsynced = 1;
    }
    queue_serial(x, sn);
    return OTK_OK;
}

otk_status otk_x509_sync(otk_x509 *x)
{
    if (x == NULL || !x->unsynced)
        return OTK_OK;
    if (fdatasync(x->journal) != 0)
        return OTK_ERR_STORAGE;
    x->unsynced = 0;
    return OTK_OK;
}

/* The queue, from the journal: what this agent queued (written there
 * first), and what another run (a crash) or another agent left there. */
static int read_journal(otk_x509 *x)
{
    char buf[4096], line[2 * SERIAL_LEN + 1];
    uint8_t sn[SERIAL_LEN];
    size_t have = 0;
    off_t off = 0;
    ssize_t n;
    x->pending = 0;
    while ((n = pread(x->journal, buf, sizeof buf, off)) > 0) {
        ssize_t i;
        off += n;
        for (i = 0; i < n; i++) {
            if (buf[i] != '\n') {
                if (have < sizeof line - 1)
                    line[have] = buf[i];
                have++;
                continue;
            }
            /* A torn or foreign line is skipped, the rest still read. */
            if (have == 2 * SERIAL_LEN) {
                line[have] = '\0';
                if (otk_hex_decode(line, sn, sizeof sn) == 0)
                    queue_serial(x, sn);
            }
            have = 0;
        }
    }
    return n < 0 ? -1 : 0;
}

size_t otk_x509_pending(const otk_x509 *x)
{
    return x ? x->pending : 0;
}

size_t otk_x509_crl_entries(const otk_x509 *x)
{
    return x ? x->entries : 0;
}

/* Serials in hex of one length: text order is numeric order. */
static int cmp_serial(const void *a, const void *b)
{
    return strcmp(a, b);
}

/*
 * The queued serials the CRL does not list yet, each once, in order, as
 * SERIAL_LEN octets each: the queue sorted, each looked up in the list.
 * *out (freed by the caller) gets *n of them.
 */
static int fresh_serials(otk_x509 *x, uint8_t **out, size_t *n)
{
    size_t i;
    *n = 0;
    if ((*out = malloc((x->pending ? x->pending : 1) * SERIAL_LEN)) == NULL)
        return 0;
    if (x->pending > 1)
        qsort(x->queue, x->pending, sizeof *x->queue, cmp_serial);
    for (i = 0; i < x->pending; i++) {
        uint8_t *sn = *out + *n * SERIAL_LEN;
        if (i > 0 && strcmp(x->queue[i], x->queue[i - 1]) == 0)
            continue;
        if (otk_hex_decode(x->queue[i], sn, SERIAL_LEN) != 0)
            return 0;
        /* (a serial with its top bit set is listed with a leading zero) */
        if (!otk_crl_has(&x->crl[otk_crl_share(sn, SERIAL_LEN, x->shares)], sn, SERIAL_LEN))
            (*n)++;
    }
    return 1;
}

/* Every share empty; each to be written. */
static void clear_shares(otk_x509 *x)
{
    unsigned i;
    for (i = 0; i < x->shares; i++) {
        x->crl[i].n = 0;
        x->seg[i].dirty = 1;
    }
}

/* The CRL file as this agent left it, or read again: another agent (or an
 * operator) wrote it since. A file that holds no CRL this can read stops
 * the flush: writing over it would drop the revocations it lists. So does
 * one of another number of shares (x->file_crls says how many). */
static int load_crl(otk_x509 *x)
{
    struct stat st;
    otk_crl_list all = {0};
    FILE *f;
    int rc;
    if (stat(x->cfg.crl_file, &st) != 0) {
        if (errno != ENOENT)
            return -1;
        clear_shares(x); /* none yet */
        x->crl_known = 0;
        x->file_crls = 0;
        return 0;
    }
    if (x->crl_known && st.st_ino == x->crl_st.st_ino && st.st_dev == x->crl_st.st_dev &&
        st.st_size == x->crl_st.st_size && st.st_mtim.tv_sec == x->crl_st.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == x->crl_st.st_mtim.tv_nsec)
        return 0;
    x->crl_known = 0;
    x->file_crls = 0;
    clear_shares(x);
    if ((f = fopen(x->cfg.crl_file, "r")) == NULL)
        return -1;
    rc = otk_crl_read(f, x->shares == 1 ? &x->crl[0] : &all, &x->file_crls);
    if (rc != 0 && st.st_size <= 4096) {
        /* A placeholder (empty, blank, a comment) lists nothing: no PEM block in it. */
        char head[4097];
        size_t n;
        rewind(f);
        n = fread(head, 1, sizeof head - 1, f);
        head[n] = '\0';
        if (strstr(head, "-----BEGIN") == NULL)
            rc = 0;
    }
    fclose(f);
    /* One CRL listing nothing and naming no share (what `openssl ca -gencrl`
     * gives a broker to start with) is a placeholder for any number of
     * shares; one share alone is a file cut short. */
    if (rc == 0 && x->file_crls == 1 && x->shares > 1 && all.n == 0 && !all.idp)
        x->file_crls = 0;
    if (rc == 0 && x->file_crls != 0 && x->file_crls != x->shares)
        rc = -1;
    if (rc == 0 && x->shares > 1 && otk_crl_split(&all, x->crl, x->shares) != 0)
        rc = -1;
    otk_crl_clear(&all);
    if (rc != 0) {
        clear_shares(x);
        return rc;
    }
    /* The lists are the file's (read once: at start, not again at the first
     * flush); where each share sits in it is not known, so all are signed
     * anew at the next write. */
    x->crl_known = 1;
    x->crl_st = st;
    return 0;
}

/*
 * The shares into f: those with news signed anew, the others copied from
 * the file this agent wrote last (old, NULL when there is none); where
 * each went into seg. 1, or 0 on failure.
 */
static int write_shares(otk_x509 *x, FILE *f, FILE *old, share_seg *seg, const ASN1_TIME *now,
                        const ASN1_TIME *next)
{
    char uri[32], buf[16384];
    unsigned i;
    for (i = 0; i < x->shares; i++) {
        long off = ftell(f), left = x->seg[i].len;
        if (off < 0)
            return 0;
        if (x->seg[i].dirty || old == NULL) {
            snprintf(uri, sizeof uri, DP_FORMAT, i, x->shares);
            if (otk_crl_write(f, &x->crl[i], x->ca, x->ca_key, now, next,
                              x->shares > 1 ? uri : NULL) != 0)
                return 0;
        } else {
            if (fseek(old, x->seg[i].off, SEEK_SET) != 0)
                return 0;
            while (left > 0) {
                size_t n = fread(buf, 1, left < (long)sizeof buf ? (size_t)left : sizeof buf, old);
                if (n == 0 || fwrite(buf, 1, n, f) != n)
                    return 0;
                left -= (long)n;
            }
        }
        seg[i].off = off;
        seg[i].len = ftell(f) - off;
        seg[i].dirty = 0;
    }
    return 1;
}

otk_status otk_x509_flush(otk_x509 *x)
{
    char lock_path[300], tmp[300];
    ASN1_TIME *now = NULL, *next = NULL, *horizon = NULL;
    uint8_t *fresh = NULL, *by_share = NULL;
    size_t n_fresh = 0, i, *at = NULL;
    share_seg *seg = NULL;
    int journal_locked = 0;
    unsigned s;
    FILE *f, *old = NULL;
    otk_status st = OTK_ERR_STORAGE;
    int lock = -1, fd, k;
    long pid = 0;
    if (x == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    snprintf(lock_path, sizeof lock_path, "%s.lock", x->cfg.crl_file);
    snprintf(tmp, sizeof tmp, "%s.tmp", x->cfg.crl_file);
    /* Several agents may share the CRL: read it, merge, write, under a lock. */
    lock = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock < 0 || flock(lock, LOCK_EX) != 0 || flock(x->journal, LOCK_EX) != 0)
        goto out;
    journal_locked = 1;
    if (read_journal(x) != 0 || load_crl(x) != 0)
        goto out;
    /* A revocation older than the longest validity names an expired certificate. */
    now = X509_gmtime_adj(NULL, 0);
    next = X509_gmtime_adj(NULL, (long)(x->cfg.validity_days + 30u) * 86400L);
    horizon = X509_gmtime_adj(NULL, -(long)(x->cfg.validity_days + 1u) * 86400L);
    if (now == NULL || next == NULL || horizon == NULL || !fresh_serials(x, &fresh, &n_fresh))
        goto out;
    /* The shares not written anew are copied from the file as this agent
     * wrote it. */
    if (x->crl_known && (old = fopen(x->cfg.crl_file, "r")) != NULL) {
        struct stat os;
        if (fstat(fileno(old), &os) != 0 || os.st_ino != x->crl_st.st_ino ||
            os.st_dev != x->crl_st.st_dev || os.st_size != x->crl_st.st_size) {
            fclose(old);
            old = NULL;
        }
    }
    /* From here the lists may hold what the file does not: read it again
     * next time unless it is written. */
    x->crl_known = 0;
    /* The fresh serials by share (each run still in order), each share
     * with news merged (and pruned). */
    if ((by_share = malloc((n_fresh ? n_fresh : 1) * SERIAL_LEN)) == NULL ||
        (at = calloc(x->shares + 1u, sizeof *at)) == NULL ||
        (seg = calloc(x->shares, sizeof *seg)) == NULL)
        goto out;
    for (i = 0; i < n_fresh; i++)
        at[otk_crl_share(fresh + i * SERIAL_LEN, SERIAL_LEN, x->shares) + 1]++;
    for (s = 0; s < x->shares; s++)
        at[s + 1] += at[s];
    for (i = 0; i < n_fresh; i++) {
        s = otk_crl_share(fresh + i * SERIAL_LEN, SERIAL_LEN, x->shares);
        memcpy(by_share + at[s]++ * SERIAL_LEN, fresh + i * SERIAL_LEN, SERIAL_LEN);
    }
    for (s = 0, i = 0; s < x->shares; i = at[s++]) {
        if (at[s] > i) {
            x->seg[s].dirty = 1;
            if (otk_crl_update(&x->crl[s], horizon, by_share + i * SERIAL_LEN, at[s] - i,
                               SERIAL_LEN, now) != 0)
                goto out;
        } else if (x->seg[s].dirty &&
                   otk_crl_update(&x->crl[s], horizon, NULL, 0, SERIAL_LEN, now) != 0) {
            goto out;
        }
    }
    /* A CRL is public: the broker (maybe another user) reads it. */
    (void)unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0 || fchmod(fd, 0644) != 0 || (f = fdopen(fd, "w")) == NULL) {
        if (fd >= 0)
            close(fd);
        goto out;
    }
    k = write_shares(x, f, old, seg, now, next) && fflush(f) == 0 && fsync(fileno(f)) == 0 &&
        fstat(fileno(f), &x->crl_st) == 0; /* (rename keeps these) */
    if (fclose(f) != 0 || !k || rename(tmp, x->cfg.crl_file) != 0) {
        unlink(tmp);
        goto out;
    }
    memcpy(x->seg, seg, x->shares * sizeof *seg);
    x->crl_known = 1;
    x->file_crls = x->shares;
    for (s = 0, x->entries = 0; s < x->shares; s++)
        x->entries += x->crl[s].n;
    x->pending = 0;
    st = OTK_OK;
    /* Everything the journal held is in the CRL now. (Should emptying it
     * fail, its serials are read again next time and listed once.) */
    if (ftruncate(x->journal, 0) != 0)
        x->unsynced = 0;
    /* The broker reloads its CRL on SIGHUP. */
    if (x->cfg.pid_file[0] && (f = fopen(x->cfg.pid_file, "r")) != NULL) {
        if (fscanf(f, "%ld", &pid) != 1)
            pid = 0;
        fclose(f);
        if (pid <= 0 || kill((pid_t)pid, SIGHUP) != 0)
            st = OTK_ERR_CLOUD;
    }
out:
    if (journal_locked)
        (void)flock(x->journal, LOCK_UN);
    if (lock >= 0)
        close(lock);
    if (old != NULL)
        fclose(old);
    free(fresh);
    free(by_share);
    free(at);
    free(seg);
    ASN1_TIME_free(now);
    ASN1_TIME_free(next);
    ASN1_TIME_free(horizon);
    return st;
}

otk_status otk_x509_refresh(otk_x509 *x)
{
    unsigned i;
    if (x == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    for (i = 0; i < x->shares; i++)
        x->seg[i].dirty = 1;
    return otk_x509_flush(x);
}
