/*
 * The certificate cloud adapter (src/agent/cloud/cloud_x509.c) with OpenSSL as
 * the judge: issued certificates verify under the CA, name the device and
 * its key, carry the extensions a client certificate needs and fit the
 * protocol's limit; revocations land in a signed CRL that merges with what
 * is on disk and drops entries older than the longest validity; a CA key
 * others can read is refused.
 */
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "testca.h"

#include "otakey/crypto.h"
#include "otakey/x509cloud.h"

static char dir[64], ca_cert[128], ca_key[128], crl[128];

static X509_CRL *read_crl(void)
{
    FILE *f = fopen(crl, "r");
    X509_CRL *c = f ? PEM_read_X509_CRL(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    return c;
}

/* Writes a CRL of one entry (none when sn is NULL) as OpenSSL makes it
 * (signed with the CA key file), with a reason code when reason >= 0. */
static void openssl_crl(const char *path, X509 *issuer, const char *key_path, const ASN1_INTEGER *sn,
                        const ASN1_TIME *t, int reason)
{
    X509_CRL *o = X509_CRL_new();
    X509_REVOKED *r = X509_REVOKED_new();
    ASN1_ENUMERATED *why = ASN1_ENUMERATED_new();
    EVP_PKEY *k;
    FILE *f = fopen(key_path, "r");
    k = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    X509_REVOKED_set_serialNumber(r, (ASN1_INTEGER *)sn);
    X509_REVOKED_set_revocationDate(r, (ASN1_TIME *)t);
    if (reason >= 0 && ASN1_ENUMERATED_set(why, reason) == 1)
        X509_REVOKED_add1_ext_i2d(r, NID_crl_reason, why, 0, 0);
    X509_CRL_set_version(o, 1);
    X509_CRL_set_issuer_name(o, X509_get_subject_name(issuer));
    X509_CRL_set1_lastUpdate(o, t);
    if (sn != NULL)
        X509_CRL_add0_revoked(o, r);
    else
        X509_REVOKED_free(r);
    X509_CRL_sign(o, k, EVP_sha256());
    if ((f = fopen(path, "w")) != NULL) {
        PEM_write_X509_CRL(f, o);
        fclose(f);
    }
    X509_CRL_free(o);
    ASN1_ENUMERATED_free(why);
    EVP_PKEY_free(k);
}

/* A v3 CA (basicConstraints CA, keyUsage keyCertSign and cRLSign) as
 * X509_verify_cert wants an issuer, its key 0600. */
static int make_v3_ca(const char *cert_path, const char *key_path)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *c = X509_new();
    X509V3_CTX v3;
    X509_EXTENSION *e1 = NULL, *e2 = NULL;
    FILE *f;
    int ok;
    X509_NAME *n = c ? X509_get_subject_name(c) : NULL;
    ok = k != NULL && c != NULL && X509_set_version(c, 2) == 1 &&
         ASN1_INTEGER_set(X509_get_serialNumber(c), 2) == 1 &&
         X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"shares-ca", -1, -1, 0) == 1 &&
         X509_set_issuer_name(c, n) == 1 && X509_gmtime_adj(X509_getm_notBefore(c), -3600) != NULL &&
         X509_gmtime_adj(X509_getm_notAfter(c), 86400) != NULL && X509_set_pubkey(c, k) == 1;
    if (ok) {
        X509V3_set_ctx(&v3, c, c, NULL, NULL, 0);
        e1 = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, "critical,CA:TRUE");
        e2 = X509V3_EXT_conf_nid(NULL, &v3, NID_key_usage, "critical,keyCertSign,cRLSign");
        ok = e1 != NULL && e2 != NULL && X509_add_ext(c, e1, -1) == 1 && X509_add_ext(c, e2, -1) == 1 &&
             X509_sign(c, k, EVP_sha256()) > 0;
    }
    if (ok && (f = fopen(cert_path, "w")) != NULL) {
        ok = PEM_write_X509(f, c) == 1;
        ok = fclose(f) == 0 && ok;
    } else {
        ok = 0;
    }
    if (ok && (f = fopen(key_path, "w")) != NULL) {
        ok = PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) == 1;
        ok = fclose(f) == 0 && ok && chmod(key_path, 0600) == 0;
    } else {
        ok = 0;
    }
    X509_EXTENSION_free(e1);
    X509_EXTENSION_free(e2);
    X509_free(c);
    EVP_PKEY_free(k);
    return ok ? 0 : -1;
}

/* The CRL file's PEM blocks, each as its text (at most max). */
static size_t crl_blocks(char blocks[][4096], size_t max)
{
    FILE *f = fopen(crl, "r");
    char line[128];
    size_t n = 0;
    int in = 0;
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "-----BEGIN X509 CRL-----", 24) == 0 && n < max) {
            in = 1;
            blocks[n][0] = '\0';
        }
        if (in && strlen(blocks[n]) + strlen(line) < 4096)
            strcat(blocks[n], line);
        if (in && strncmp(line, "-----END X509 CRL-----", 22) == 0) {
            in = 0;
            n++;
        }
    }
    fclose(f);
    return n;
}

/* X509_verify_cert of c under ca with CRL checking and the CRL file's
 * CRLs (all, or all but the one of share `skip`): its error, 0 if valid. */
static int verify(X509 *ca, X509 *c, int skip)
{
    X509_STORE *st = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    FILE *f = fopen(crl, "r");
    X509_CRL *l;
    int i = 0, rc = -1;
    X509_STORE_add_cert(st, ca);
    while (f != NULL && (l = PEM_read_X509_CRL(f, NULL, NULL, NULL)) != NULL) {
        if (i++ != skip)
            X509_STORE_add_crl(st, l);
        X509_CRL_free(l);
    }
    if (f != NULL)
        fclose(f);
    X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK);
    if (X509_STORE_CTX_init(ctx, st, c, NULL) == 1)
        rc = X509_verify_cert(ctx) == 1 ? 0 : X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(st);
    return rc;
}

/*
 * The CRL in shares (crl_shares = 16): each certificate names its share,
 * the file holds one CRL per share with that name as its issuing
 * distribution point, and OpenSSL, given them all, checks a certificate
 * against its own share: revoked ones are refused, the others pass, and a
 * certificate whose share is missing is refused too. A flush signs again
 * only the shares with news; a refresh signs all; another number of shares
 * on the same file is refused at open.
 */
static void test_shares(void)
{
    enum { N = 48 };
    char cert[128], key[128], err[256], serial[OTK_USER_MAX + 1], sers[N][OTK_USER_MAX + 1];
    static char before[16][4096], after[16][4096];
    otk_x509_cloud cfg;
    otk_x509 *x = NULL, *y = NULL;
    otk_crypto cr;
    uint8_t priv[32], pub[64], der[OTK_CERT_MAX], pin[32], id[16];
    X509 *ca = NULL, *certs[N] = {0};
    size_t len, i;
    int k, changed, revoked_share = -1;
    FILE *f;
    snprintf(cert, sizeof cert, "%s/shares-ca.crt", dir);
    snprintf(key, sizeof key, "%s/shares-ca.key", dir);
    CHECK(make_v3_ca(cert, key) == 0);
    CHECK_OK(otk_crypto_openssl_init(&cr, NULL, NULL));
    CHECK_OK(cr.ec_keygen(cr.ctx, OTK_KEY_EPHEMERAL, priv, pub));
    memset(&cfg, 0, sizeof cfg);
    cfg.cloud_id = 5;
    snprintf(cfg.ca_cert, sizeof cfg.ca_cert, "%s", cert);
    snprintf(cfg.ca_key, sizeof cfg.ca_key, "%s", key);
    snprintf(cfg.crl_file, sizeof cfg.crl_file, "%s", crl);
    cfg.crl_shares = 16;
    f = fopen(cert, "r");
    ca = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    /* One CRL that lists a certificate: of one share, not of 16. */
    {
        ASN1_INTEGER *one = ASN1_INTEGER_new();
        ASN1_TIME *t = X509_gmtime_adj(NULL, 0);
        ASN1_INTEGER_set(one, 9);
        openssl_crl(crl, ca, key, one, t, -1);
        CHECK_ST(otk_x509_open(&cfg, &x, err, sizeof err), OTK_ERR_CLOUD);
        CHECK(x == NULL && strstr(err, "1 CRLs in it, crl_shares = 16") != NULL);
        /* One that lists nothing (a broker's first CRL from `openssl ca
         * -gencrl`) is a placeholder, written over. */
        openssl_crl(crl, ca, key, NULL, t, -1);
        ASN1_INTEGER_free(one);
        ASN1_TIME_free(t);
    }
    CHECK_OK(otk_x509_open(&cfg, &x, err, sizeof err));
    if (x == NULL || ca == NULL) {
        fprintf(stderr, "test_shares: %s\n", err);
        goto out;
    }
    CHECK(otk_x509_templated(x));
    memset(id, 0x5c, sizeof id);
    for (i = 0; i < N; i++) {
        const unsigned char *p = der;
        CRL_DIST_POINTS *dps;
        char want[32];
        uint8_t sn[16];
        CHECK_OK(otk_x509_issue_cert(x, id, 5, pub, der, sizeof der, &len, sers[i], pin));
        certs[i] = d2i_X509(NULL, &p, (long)len);
        CHECK(certs[i] != NULL && otk_hex_decode(sers[i], sn, sizeof sn) == 0);
        if (certs[i] == NULL)
            goto out;
        /* Its distribution point: its serial's last two octets modulo 16. */
        snprintf(want, sizeof want, "urn:otakey:crl:%03u/016", (unsigned)((sn[14] << 8 | sn[15]) % 16));
        dps = X509_get_ext_d2i(certs[i], NID_crl_distribution_points, NULL, NULL);
        CHECK(dps != NULL && sk_DIST_POINT_num(dps) == 1);
        if (dps != NULL && sk_DIST_POINT_num(dps) == 1) {
            DIST_POINT *dp = sk_DIST_POINT_value(dps, 0);
            GENERAL_NAME *gn = dp->distpoint && dp->distpoint->type == 0
                                   ? sk_GENERAL_NAME_value(dp->distpoint->name.fullname, 0)
                                   : NULL;
            int t = 0;
            ASN1_IA5STRING *u = gn ? GENERAL_NAME_get0_value(gn, &t) : NULL;
            CHECK(u != NULL && t == GEN_URI && ASN1_STRING_length(u) == (int)strlen(want) &&
                  memcmp(ASN1_STRING_get0_data(u), want, strlen(want)) == 0);
        }
        CRL_DIST_POINTS_free(dps);
        CHECK(verify(ca, certs[i], -1) == 0); /* the placeholder: every certificate's, empty */
    }
    /* The template's certificate is OpenSSL's, distribution point included. */
    for (i = 0; i < 3; i++) {
        uint8_t sn[16], d1[OTK_CERT_MAX], d2[OTK_CERT_MAX];
        size_t l1 = 0, l2 = 0;
        const unsigned char *q;
        X509 *c1, *c2;
        unsigned char *t1 = NULL, *t2 = NULL;
        int n1, n2;
        memset(sn, 0x52, sizeof sn);
        sn[15] = (uint8_t)(7 * i + 1);
        CHECK_OK(otk_x509_issue_at(x, id, pub, sn, time(NULL), 0, d1, sizeof d1, &l1));
        CHECK_OK(otk_x509_issue_at(x, id, pub, sn, time(NULL), 1, d2, sizeof d2, &l2));
        q = d1;
        c1 = d2i_X509(NULL, &q, (long)l1);
        q = d2;
        c2 = d2i_X509(NULL, &q, (long)l2);
        n1 = c1 ? i2d_re_X509_tbs(c1, &t1) : 0;
        n2 = c2 ? i2d_re_X509_tbs(c2, &t2) : -1;
        CHECK(n1 > 0 && n1 == n2 && memcmp(t1, t2, (size_t)n1) == 0);
        OPENSSL_free(t1);
        OPENSSL_free(t2);
        X509_free(c1);
        X509_free(c2);
    }
    /* Every other certificate revoked. */
    for (i = 0; i < N; i += 2)
        CHECK_OK(otk_x509_remove(x, 5, sers[i]));
    CHECK_OK(otk_x509_flush(x));
    CHECK(otk_x509_crl_entries(x) == N / 2);
    CHECK(crl_blocks(before, 16) == 16);
    for (i = 0; i < N; i++)
        CHECK(verify(ca, certs[i], -1) == (i % 2 == 0 ? X509_V_ERR_CERT_REVOKED : 0));
    /* Without its share's CRL a certificate is refused ("different CRL
     * scope": the others are not for it), whatever they list. */
    {
        const ASN1_INTEGER *ai = X509_get0_serialNumber(certs[1]);
        uint8_t b[20];
        int n = ASN1_STRING_length(ai);
        memcpy(b, ASN1_STRING_get0_data(ai), (size_t)n);
        k = (int)((b[n - 2] << 8 | b[n - 1]) % 16);
        CHECK(verify(ca, certs[1], k) == X509_V_ERR_DIFFERENT_CRL_SCOPE);
    }
    /* One more revocation: its share alone is signed again. */
    CHECK_OK(otk_x509_issue_cert(x, id, 5, pub, der, sizeof der, &len, serial, pin));
    {
        uint8_t sn[16];
        CHECK(otk_hex_decode(serial, sn, sizeof sn) == 0);
        revoked_share = (int)((sn[14] << 8 | sn[15]) % 16);
    }
    CHECK_OK(otk_x509_remove(x, 5, serial));
    CHECK_OK(otk_x509_flush(x));
    CHECK(crl_blocks(after, 16) == 16);
    for (k = 0, changed = 0; k < 16; k++)
        if (strcmp(before[k], after[k]) != 0)
            changed++;
    CHECK(changed == 1 && strcmp(before[revoked_share], after[revoked_share]) != 0);
    for (i = 0; i < N; i++)
        CHECK(verify(ca, certs[i], -1) == (i % 2 == 0 ? X509_V_ERR_CERT_REVOKED : 0));
    /* A refresh signs every share again. */
    CHECK_OK(otk_x509_refresh(x));
    CHECK(crl_blocks(before, 16) == 16);
    for (k = 0, changed = 0; k < 16; k++)
        if (strcmp(before[k], after[k]) != 0)
            changed++;
    CHECK(changed == 16 && otk_x509_crl_entries(x) == N / 2 + 1);
    /* A damaged file is not read as less than it holds, nor written over.
     * An empty CRL naming no share, then a block cut short: not a
     * placeholder (the flush fails, the file stays). An empty share alone
     * (a file cut at a block's end): not a placeholder either (refused at
     * open). */
    {
        FILE *g;
        char back[8192] = "", other[160], one[4096], serial9[OTK_USER_MAX + 1];
        static char blocks[16][4096];
        size_t got;
        otk_x509 *z = NULL;
        otk_x509_cloud zc = cfg;
        ASN1_TIME *t = X509_gmtime_adj(NULL, 0);
        CHECK(crl_blocks(before, 16) == 16);
        openssl_crl(crl, ca, key, NULL, t, -1);
        g = fopen(crl, "r");
        got = g ? fread(one, 1, sizeof one - 1, g) : 0;
        if (g)
            fclose(g);
        one[got] = '\0';
        g = fopen(crl, "a");
        fputs("-----BEGIN X509 CRL-----\nMIIB!!not base64!!\n", g);
        fclose(g);
        CHECK_OK(otk_x509_issue_cert(x, id, 5, pub, der, sizeof der, &len, serial, pin));
        CHECK_OK(otk_x509_remove(x, 5, serial));
        CHECK_ST(otk_x509_flush(x), OTK_ERR_STORAGE);
        g = fopen(crl, "r");
        got = g ? fread(back, 1, sizeof back - 1, g) : 0;
        if (g)
            fclose(g);
        CHECK(got > strlen(one) && strncmp(back, one, strlen(one)) == 0 &&
              strstr(back, "not base64") != NULL);
        /* Another cloud's file of 16 shares with one revocation, in share 9:
         * its share 0 is empty. */
        snprintf(other, sizeof other, "%s/other-crl.pem", dir);
        snprintf(zc.crl_file, sizeof zc.crl_file, "%s", other);
        memset(serial9, '0', 32);
        serial9[0] = '4';
        serial9[31] = '9';
        serial9[32] = '\0';
        CHECK_OK(otk_x509_open(&zc, &z, err, sizeof err));
        CHECK_OK(otk_x509_remove(z, 5, serial9));
        CHECK_OK(otk_x509_flush(z));
        otk_x509_close(z);
        {
            /* (crl_blocks reads the file named by crl) */
            char saved[sizeof crl];
            memcpy(saved, crl, sizeof crl);
            if (strlen(other) < sizeof crl) {
                memcpy(crl, other, strlen(other) + 1);
                CHECK(crl_blocks(blocks, 16) == 16);
            }
            memcpy(crl, saved, sizeof crl);
        }
        CHECK(strstr(blocks[0], "BEGIN X509 CRL") != NULL);
        g = fopen(crl, "w");
        fputs(blocks[0], g);
        fclose(g);
        CHECK_ST(otk_x509_open(&cfg, &y, err, sizeof err), OTK_ERR_CLOUD);
        CHECK(y == NULL && strstr(err, "1 CRLs in it, crl_shares = 16") != NULL);
        /* Put back whole: the queued revocation is listed at the next flush. */
        g = fopen(crl, "w");
        for (k = 0; k < 16; k++)
            fputs(before[k], g);
        fclose(g);
        CHECK_OK(otk_x509_flush(x));
        CHECK(otk_x509_crl_entries(x) == N / 2 + 2);
        unlink(other);
        snprintf(back, sizeof back, "%s.queue", other);
        unlink(back);
        snprintf(back, sizeof back, "%s.lock", other);
        unlink(back);
        ASN1_TIME_free(t);
    }
    /* Another number of shares on this file: refused, saying so; the same one reads it back. */
    cfg.crl_shares = 4;
    CHECK_ST(otk_x509_open(&cfg, &y, err, sizeof err), OTK_ERR_CLOUD);
    CHECK(y == NULL && strstr(err, "crl_shares = 4") != NULL && strstr(err, "16 CRLs") != NULL);
    cfg.crl_shares = 16;
    CHECK_OK(otk_x509_open(&cfg, &y, err, sizeof err));
    CHECK_OK(otk_x509_refresh(y));
    CHECK(otk_x509_crl_entries(y) == N / 2 + 2);
    for (i = 0; i < N; i++)
        CHECK(verify(ca, certs[i], -1) == (i % 2 == 0 ? X509_V_ERR_CERT_REVOKED : 0));
out:
    for (i = 0; i < N; i++)
        X509_free(certs[i]);
    X509_free(ca);
    otk_x509_close(x);
    otk_x509_close(y);
    otk_crypto_openssl_free(&cr);
    unlink(cert);
    unlink(key);
    unlink(crl);
    {
        char q[160];
        snprintf(q, sizeof q, "%s.queue", crl);
        unlink(q);
    }
}

int main(void)
{
    otk_x509_cloud cfg;
    otk_x509 *x = NULL;
    otk_crypto cr;
    uint8_t priv[32], pub[64], der[OTK_CERT_MAX], pin[32], id[16];
    char serial[OTK_USER_MAX + 1], serial2[OTK_USER_MAX + 1], err[256];
    size_t len = 0, len2 = 0;
    const unsigned char *p;
    X509 *c, *ca;
    X509_CRL *cl;
    FILE *f;
    snprintf(dir, sizeof dir, "/tmp/otk-test-x509-%d", (int)getpid());
    mkdir(dir, 0700);
    snprintf(ca_cert, sizeof ca_cert, "%s/ca.crt", dir);
    snprintf(ca_key, sizeof ca_key, "%s/ca.key", dir);
    snprintf(crl, sizeof crl, "%s/crl.pem", dir);
    CHECK(otk_test_make_ca(ca_cert, ca_key, "test-issuing-ca") == 0);
    CHECK_OK(otk_crypto_openssl_init(&cr, NULL, NULL));
    memset(&cfg, 0, sizeof cfg);
    cfg.cloud_id = 3;
    snprintf(cfg.ca_cert, sizeof cfg.ca_cert, "%s", ca_cert);
    snprintf(cfg.ca_key, sizeof cfg.ca_key, "%s", ca_key);
    snprintf(cfg.crl_file, sizeof cfg.crl_file, "%s", crl);
    snprintf(cfg.server_ca, sizeof cfg.server_ca, "%s", ca_cert);
    /* crl_shares 0: the default, one CRL (test_shares: a CRL in shares) */
    /* A CA key others may read is refused. */
    chmod(ca_key, 0644);
    CHECK_ST(otk_x509_open(&cfg, &x, err, sizeof err), OTK_ERR_CLOUD);
    CHECK(x == NULL && strstr(err, "chmod 600") != NULL);
    chmod(ca_key, 0600);
    CHECK_OK(otk_x509_open(&cfg, &x, err, sizeof err));
    if (x == NULL) {
        fprintf(stderr, "test_x509: %s\n", err);
        return CHECK_DONE();
    }
    /* Issue for a device key. */
    memset(id, 0xab, sizeof id);
    CHECK_OK(cr.ec_keygen(cr.ctx, OTK_KEY_EPHEMERAL, priv, pub));
    CHECK_OK(otk_x509_issue_cert(x, id, 3, pub, der, sizeof der, &len, serial, pin));
    CHECK_ST(otk_x509_issue_cert(x, id, 4, pub, der, sizeof der, &len2, serial2, pin),
             OTK_ERR_INVALID_ARGUMENT); /* another cloud's */
    printf("device certificate: %zu bytes DER (limit %u)\n", len, OTK_CERT_MAX);
    CHECK(len > 200 && len <= 400 && strlen(serial) == 32);
    p = der;
    c = d2i_X509(NULL, &p, (long)len);
    f = fopen(ca_cert, "r");
    ca = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    CHECK(c != NULL && ca != NULL);
    if (c && ca) {
        char cn[64] = "";
        EVP_PKEY *capub = X509_get0_pubkey(ca);
        uint8_t point[65];
        size_t plen = 0;
        unsigned char *dca = NULL;
        uint8_t want_pin[32];
        unsigned mdl = 0;
        int n;
        X509_NAME_get_text_by_NID(X509_get_subject_name(c), NID_commonName, cn, sizeof cn);
        CHECK(strcmp(cn, "abababababababababababababababab") == 0);
        CHECK(X509_verify(c, capub) == 1);
        CHECK(X509_check_purpose(c, X509_PURPOSE_SSL_CLIENT, 0) == 1);
        CHECK(X509_check_ca(c) == 0);
        /* One CRL (the default): no distribution point to name. */
        CHECK(X509_get_ext_by_NID(c, NID_crl_distribution_points, -1) < 0);
        CHECK(EVP_PKEY_get_octet_string_param(X509_get0_pubkey(c), "encoded-pub-key", point,
                                              sizeof point, &plen) == 1 &&
              plen == 65 && point[0] == 4 && memcmp(point + 1, pub, 64) == 0);
        /* The pin is the server CA's DER hash. */
        n = i2d_X509(ca, &dca);
        CHECK(n > 0 && EVP_Digest(dca, (size_t)n, want_pin, &mdl, EVP_sha256(), NULL) == 1);
        CHECK(memcmp(pin, want_pin, 32) == 0);
        OPENSSL_free(dca);
    }
    /* The template's certificate is the one OpenSSL builds (but for the
     * signature): today, on the eve of 2050 (notAfter becomes a
     * GeneralizedTime: OpenSSL's way) and after it. */
    CHECK(otk_x509_templated(x));
    if (ca != NULL) {
        static const time_t when[] = {0, 2524607000, 2556143999 + 86400};
        size_t w;
        uint8_t sn[16];
        memset(sn, 0x61, sizeof sn);
        for (w = 0; w < sizeof when / sizeof when[0]; w++) {
            time_t t = when[w] ? when[w] : time(NULL);
            uint8_t d1[OTK_CERT_MAX], d2[OTK_CERT_MAX];
            size_t l1 = 0, l2 = 0;
            X509 *c1, *c2;
            const unsigned char *q;
            unsigned char *t1 = NULL, *t2 = NULL;
            int n1, n2;
            sn[15] = (uint8_t)w;
            CHECK_OK(otk_x509_issue_at(x, id, pub, sn, t, 0, d1, sizeof d1, &l1));
            CHECK_OK(otk_x509_issue_at(x, id, pub, sn, t, 1, d2, sizeof d2, &l2));
            q = d1;
            c1 = d2i_X509(NULL, &q, (long)l1);
            CHECK(c1 != NULL && q == d1 + l1);
            q = d2;
            c2 = d2i_X509(NULL, &q, (long)l2);
            CHECK(c2 != NULL);
            if (c1 != NULL && c2 != NULL) {
                n1 = i2d_re_X509_tbs(c1, &t1);
                n2 = i2d_re_X509_tbs(c2, &t2);
                CHECK(n1 > 0 && n1 == n2 && memcmp(t1, t2, (size_t)n1) == 0);
                CHECK(X509_verify(c1, X509_get0_pubkey(ca)) == 1);
                CHECK(ASN1_TIME_cmp_time_t(X509_get0_notBefore(c1), t - 300) == 0);
                CHECK(ASN1_TIME_cmp_time_t(X509_get0_notAfter(c1), t + 30 * 86400) == 0);
            }
            OPENSSL_free(t1);
            OPENSSL_free(t2);
            X509_free(c1);
            X509_free(c2);
        }
    }
    /* Serials differ from one certificate to the next. */
    CHECK_OK(otk_x509_issue_cert(x, id, 3, pub, der, sizeof der, &len2, serial2, pin));
    CHECK(strcmp(serial, serial2) != 0);
    /* An invalid point is refused. */
    {
        uint8_t bad[64];
        memset(bad, 1, sizeof bad);
        CHECK_ST(otk_x509_issue_cert(x, id, 3, bad, der, sizeof der, &len2, serial2, pin),
                 OTK_ERR_INVALID_ARGUMENT);
    }
    /* Revocation: queued, then in a signed CRL; merged on the next flush. */
    CHECK_ST(otk_x509_remove(x, 3, "nothex"), OTK_ERR_CLOUD);
    CHECK_OK(otk_x509_remove(x, 3, serial));
    CHECK(otk_x509_pending(x) == 1);
    CHECK_OK(otk_x509_flush(x));
    CHECK(otk_x509_pending(x) == 0 && otk_x509_crl_entries(x) == 1);
    CHECK_OK(otk_x509_remove(x, 3, serial2));
    CHECK_OK(otk_x509_remove(x, 3, serial)); /* listed already: listed once */
    CHECK_OK(otk_x509_remove(x, 3, serial2)); /* twice in one flush: listed once */
    CHECK_OK(otk_x509_flush(x));
    CHECK(otk_x509_crl_entries(x) == 2);
    cl = read_crl();
    CHECK(cl != NULL && ca != NULL && X509_CRL_verify(cl, X509_get0_pubkey(ca)) == 1);
    if (cl && c) {
        X509_REVOKED *r = NULL;
        CHECK(X509_CRL_get0_by_cert(cl, &r, c) == 1); /* the first certificate is on it */
    }
    X509_CRL_free(cl);
    /* Entries older than the longest validity are dropped (their certificates expired). */
    {
        ASN1_INTEGER *sn = ASN1_INTEGER_new();
        ASN1_TIME *t = X509_gmtime_adj(NULL, -100L * 86400L);
        ASN1_INTEGER_set(sn, 77);
        openssl_crl(crl, ca, ca_key, sn, t, -1);
        CHECK_OK(otk_x509_remove(x, 3, serial));
        CHECK_OK(otk_x509_flush(x));
        CHECK(otk_x509_crl_entries(x) == 1); /* 77 dropped, serial kept */
        ASN1_INTEGER_free(sn);
        ASN1_TIME_free(t);
    }
    {
        struct stat st;
        CHECK(stat(crl, &st) == 0 && (st.st_mode & 0777) == 0644);
    }
    /* A crash between a revocation and the CRL: the queue file keeps it. */
    {
        otk_x509 *y = NULL;
        char q[160], torn[] = "00ff\n", serial3[OTK_USER_MAX + 1];
        size_t l3 = 0;
        int fd;
        struct stat st;
        CHECK_OK(otk_x509_issue_cert(x, id, 3, pub, der, sizeof der, &l3, serial3, pin));
        CHECK_OK(otk_x509_remove(x, 3, serial3));
        CHECK_OK(otk_x509_sync(x));
        snprintf(q, sizeof q, "%s.queue", crl);
        CHECK(stat(q, &st) == 0 && (st.st_mode & 0777) == 0600 && st.st_size == 33);
        fd = open(q, O_WRONLY | O_APPEND);
        CHECK(fd >= 0 && write(fd, torn, strlen(torn)) == (ssize_t)strlen(torn));
        close(fd);
        otk_x509_close(x); /* the agent dies: the queued revocation was not flushed */
        CHECK_OK(otk_x509_open(&cfg, &x, err, sizeof err));
        CHECK(otk_x509_crl_entries(x) == 0);
        CHECK_OK(otk_x509_flush(x)); /* at the next start (otk_clouds_refresh_crls) */
        CHECK(otk_x509_crl_entries(x) == 2); /* serial and serial3; the torn line skipped */
        CHECK(stat(q, &st) == 0 && st.st_size == 0);
        /* Two agents on one CRL: what one queued, the other's flush writes. */
        CHECK_OK(otk_x509_open(&cfg, &y, err, sizeof err));
        CHECK_OK(otk_x509_issue_cert(y, id, 3, pub, der, sizeof der, &l3, serial3, pin));
        CHECK_OK(otk_x509_remove(y, 3, serial3));
        CHECK_OK(otk_x509_flush(x));
        CHECK(otk_x509_crl_entries(x) == 3);
        CHECK_OK(otk_x509_flush(y)); /* its own queue: listed already */
        CHECK(otk_x509_crl_entries(y) == 3);
        /* What the other agent wrote (its revocation flushed, the queue
         * emptied) is read back, not written over. */
        CHECK_OK(otk_x509_issue_cert(y, id, 3, pub, der, sizeof der, &l3, serial3, pin));
        CHECK_OK(otk_x509_remove(y, 3, serial3));
        CHECK_OK(otk_x509_flush(y));
        CHECK(otk_x509_crl_entries(y) == 4);
        CHECK_OK(otk_x509_remove(x, 3, serial)); /* listed already */
        CHECK_OK(otk_x509_flush(x));
        CHECK(otk_x509_crl_entries(x) == 4);
        otk_x509_close(y);
        /* A CRL file this cannot read is not written over (its revocations
         * would be lost): the flush fails, the revocation stays queued. */
        {
            static const char bad[] = "-----BEGIN X509 CRL-----\nMIIBAAAA\n-----END X509 CRL-----\n";
            char b[128] = {0};
            FILE *g = fopen(crl, "w");
            fputs(bad, g);
            fclose(g);
            CHECK_OK(otk_x509_remove(x, 3, serial2));
            CHECK_ST(otk_x509_flush(x), OTK_ERR_STORAGE);
            CHECK_ST(otk_x509_flush(x), OTK_ERR_STORAGE); /* again: the queue does not grow */
            CHECK(otk_x509_pending(x) == 1);
            g = fopen(crl, "r");
            CHECK(g != NULL && fread(b, 1, sizeof b - 1, g) == strlen(bad) && strcmp(b, bad) == 0);
            if (g)
                fclose(g);
        }
        /* A CRL OpenSSL wrote: an entry with a reason code and a serial
         * whose top bit is set (a leading zero) is kept, and found. */
        {
            X509_CRL *back = NULL;
            X509_REVOKED *found = NULL;
            ASN1_INTEGER *sn = NULL;
            ASN1_TIME *t = X509_gmtime_adj(NULL, 0);
            BIGNUM *bn = NULL;
            uint8_t hb[16];
            FILE *g;
            memset(hb, 0xc3, sizeof hb);
            bn = BN_bin2bn(hb, sizeof hb, NULL);
            sn = BN_to_ASN1_INTEGER(bn, NULL);
            openssl_crl(crl, ca, ca_key, sn, t, 1); /* keyCompromise */
            CHECK_OK(otk_x509_flush(x)); /* serial2, queued above */
            CHECK(otk_x509_crl_entries(x) == 2);
            g = fopen(crl, "r");
            back = g ? PEM_read_X509_CRL(g, NULL, NULL, NULL) : NULL;
            if (g)
                fclose(g);
            CHECK(back != NULL && X509_CRL_verify(back, X509_get0_pubkey(ca)) == 1);
            CHECK(back != NULL && X509_CRL_get0_by_serial(back, &found, sn) == 1);
            CHECK(back != NULL && sk_X509_REVOKED_num(X509_CRL_get_REVOKED(back)) == 2);
            X509_CRL_free(back);
            ASN1_INTEGER_free(sn);
            ASN1_TIME_free(t);
            BN_free(bn);
        }
        /* A placeholder without a PEM block (a blank file) lists nothing: written over. */
        {
            FILE *g = fopen(crl, "w");
            fputs("\n", g);
            fclose(g);
            CHECK_OK(otk_x509_remove(x, 3, serial));
            CHECK_OK(otk_x509_flush(x));
            CHECK(otk_x509_crl_entries(x) == 1);
        }
        unlink(q);
    }
    X509_free(c);
    X509_free(ca);
    otk_x509_close(x);
    /* An RSA CA issues by OpenSSL's way (the template is for EC keys): the
     * certificate verifies under it. */
    {
        char rc_cert[160], rc_key[160], rc_crl[160], e[256];
        otk_x509_cloud rcfg = cfg;
        otk_x509 *rx = NULL;
        uint8_t d1[OTK_CERT_MAX];
        size_t l1 = 0;
        snprintf(rc_cert, sizeof rc_cert, "%s/rsa.crt", dir);
        snprintf(rc_key, sizeof rc_key, "%s/rsa.key", dir);
        snprintf(rc_crl, sizeof rc_crl, "%s/rsa-crl.pem", dir);
        CHECK(otk_test_make_ca_rsa(rc_cert, rc_key, "rsa-ca") == 0);
        snprintf(rcfg.ca_cert, sizeof rcfg.ca_cert, "%s", rc_cert);
        snprintf(rcfg.ca_key, sizeof rcfg.ca_key, "%s", rc_key);
        snprintf(rcfg.crl_file, sizeof rcfg.crl_file, "%s", rc_crl);
        CHECK_OK(otk_x509_open(&rcfg, &rx, e, sizeof e));
        if (rx != NULL) {
            X509 *rca = NULL, *rc = NULL;
            const unsigned char *q = d1;
            FILE *rf = fopen(rc_cert, "r");
            CHECK(!otk_x509_templated(rx));
            CHECK_OK(otk_x509_issue_cert(rx, id, 3, pub, d1, sizeof d1, &l1, serial2, pin));
            if (rf != NULL) {
                rca = PEM_read_X509(rf, NULL, NULL, NULL);
                fclose(rf);
            }
            rc = d2i_X509(NULL, &q, (long)l1);
            CHECK(rca != NULL && rc != NULL && X509_verify(rc, X509_get0_pubkey(rca)) == 1);
            X509_free(rc);
            X509_free(rca);
            otk_x509_close(rx);
        }
        unlink(rc_cert);
        unlink(rc_key);
        unlink(rc_crl);
        snprintf(rc_crl, sizeof rc_crl, "%s/rsa-crl.pem.queue", dir);
        unlink(rc_crl);
    }
    otk_crypto_openssl_free(&cr);
    test_shares();
    unlink(ca_cert);
    unlink(ca_key);
    unlink(crl);
    {
        char lock[160];
        snprintf(lock, sizeof lock, "%s.lock", crl);
        unlink(lock);
    }
    rmdir(dir);
    return CHECK_DONE();
}
