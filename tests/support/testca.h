/*
 * testca.h: an issuing CA for tests and benchmarks of certificate clouds:
 * a self-signed P-256 certificate and its key, written as PEM (key 0600).
 */
#ifndef OTK_TESTCA_H
#define OTK_TESTCA_H

/* 0, or -1 when a file cannot be written. */
int otk_test_make_ca(const char *cert_path, const char *key_path, const char *cn);
/* The same with an RSA-2048 key. */
int otk_test_make_ca_rsa(const char *cert_path, const char *key_path, const char *cn);

#endif
