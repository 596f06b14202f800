/*
 * pkcs11.h: private keys that stay in a PKCS#11 token (an HSM; SoftHSM in
 * the tests), reached through OpenSSL's pkcs11 engine (libp11: Debian's
 * libengine-pkcs11-openssl). The agent uses it for certificate clouds' CA
 * keys and for its own signing key.
 */
#ifndef OTAKEY_PKCS11_H
#define OTAKEY_PKCS11_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct otk_token_key otk_token_key;

/* Whether a key setting names a token key: a PKCS#11 URI (RFC 7512). */
int otk_is_token_uri(const char *s);

/*
 * Loads the key uri from the token of the PKCS#11 library module, with the
 * user PIN read from pin_file (mode 0600: refused otherwise). NULL with a
 * message in err (no engine, module not loadable, wrong PIN, no such key).
 */
otk_token_key *otk_token_key_open(const char *uri, const char *module, const char *pin_file,
                                  char *err, size_t err_size);
/* Its P-256 public key as X || Y (64 bytes): 0, or -1 for another kind of key. */
int otk_token_key_public(const otk_token_key *k, unsigned char pub[64]);
/* The key as an OpenSSL EVP_PKEY * (owned by the handle). */
void *otk_token_key_pkey(const otk_token_key *k);
void otk_token_key_close(otk_token_key *k);

#ifdef __cplusplus
}
#endif
#endif
