/*
 * A certificate cloud's CRL kept as a compact list (about 40 bytes an entry)
 * instead of OpenSSL's objects (some 170 bytes an entry, and twice that
 * while one is read and another written): read from its PEM file by walking
 * the DER, written by encoding the list behind a header OpenSSL made and
 * signing it once. At a million entries the list is 40 MB.
 *
 * An entry holds a serial (the INTEGER's content octets) and the
 * revocation date (its UTCTime or GeneralizedTime, DER); entries carry no
 * extensions. The list is sorted by serial, numeric order (the order
 * X509_CRL_sort gives), each serial once.
 */
#ifndef OTK_CRL_H
#define OTK_CRL_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define OTK_CRL_SN_MAX 21  /* 20 octets (RFC 5280), and a leading zero */
#define OTK_CRL_TIME_MAX 17 /* a GeneralizedTime "YYYYMMDDHHMMSSZ", DER */

typedef struct otk_crl_entry {
    uint8_t sn_len, t_len;
    uint8_t sn[OTK_CRL_SN_MAX];
    uint8_t t[OTK_CRL_TIME_MAX];
} otk_crl_entry;

typedef struct otk_crl_list {
    otk_crl_entry *e;
    size_t n, cap;
    int idp; /* otk_crl_read: a CRL of the file has an issuing distribution point (a share) */
} otk_crl_list;

/* Frees the entries; the list is empty again. */
void otk_crl_clear(otk_crl_list *l);

/*
 * Reads every CRL in PEM file f (its "X509 CRL" blocks: one, or a cloud's
 * shares) into l, which it replaces, their entries merged; *crls (if not
 * NULL) gets how many CRLs the file holds, l->idp whether one names an
 * issuing distribution point. 0 on success; -1 when f holds no CRL, a
 * block that is not PEM to its end (damaged, cut short), or a CRL this
 * list cannot hold (an entry with extensions is read without them; a
 * serial or a date longer than an entry holds is an error), l then empty.
 * Signatures are not checked: the file is the agent's own.
 */
int otk_crl_read(FILE *f, otk_crl_list *l, size_t *crls);

/*
 * Which of `shares` CRLs lists serial sn (len octets, big-endian, as a
 * certificate or an entry holds it): its last two octets modulo shares
 * (0 when shares <= 1). A certificate names its share's CRL (its CRL
 * distribution point), and that CRL only is checked when it is presented.
 */
unsigned otk_crl_share(const uint8_t *sn, size_t len, unsigned shares);

/* The same from the CRL's DER (len bytes at der). */
int otk_crl_parse(const unsigned char *der, long len, otk_crl_list *l);

/* 1 when serial sn (an unsigned big-endian number of len octets) is listed. */
int otk_crl_has(const otk_crl_list *l, const uint8_t *sn, size_t len);

/*
 * Drops the entries revoked at or before horizon (an ASN1_TIME), then
 * merges fresh serials (n of them, each an unsigned big-endian number of
 * sn_len octets, in increasing order, each once, none listed) revoked at
 * `when`.
 * 0, or -1 (out of memory, or a date it cannot encode: l unchanged).
 */
int otk_crl_update(otk_crl_list *l, const ASN1_TIME *horizon, const uint8_t *fresh, size_t n,
                   size_t sn_len, const ASN1_TIME *when);

/* The entries of `all` into n shares (otk_crl_share), each sorted as all is. 0, or -1 (out of memory: shares emptied). */
int otk_crl_split(const otk_crl_list *all, otk_crl_list *shares, unsigned n);

/*
 * Writes l as a version 2 CRL by issuer ca, signed with key (SHA-256),
 * lastUpdate now and nextUpdate next, PEM, to f; with idp_uri (not NULL) it
 * carries a critical issuingDistributionPoint of that URI: the CRL of the
 * certificates naming it as their distribution point, and of no others.
 * 0 or -1.
 */
int otk_crl_write(FILE *f, const otk_crl_list *l, X509 *ca, EVP_PKEY *key, const ASN1_TIME *now,
                  const ASN1_TIME *next, const char *idp_uri);

#endif
