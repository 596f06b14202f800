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

/* Writes a CRL of one entry as OpenSSL makes it (signed with the CA key
 * file), with a reason code when reason >= 0. */
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
    X509_CRL_add0_revoked(o, r);
    X509_CRL_sign(o, k, EVP_sha256());
    if ((f = fopen(path, "w")) != NULL) {
        PEM_write_X509_CRL(f, o);
        fclose(f);
    }
    X509_CRL_free(o);
    ASN1_ENUMERATED_free(why);
    EVP_PKEY_free(k);
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
