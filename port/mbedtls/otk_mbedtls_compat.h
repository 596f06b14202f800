/*
 * otk_mbedtls_compat.h: checks, before src/common/crypto_mbedtls.c is
 * compiled against an SDK's mbedTLS (2.28 as on Debian 12 and port/mps2, or
 * the 3.x of ESP-IDF 5.x and Zephyr 3.x and 4.x), that its version and
 * configuration have what the port needs, with a message naming what is
 * missing. The Zephyr module, the ESP-IDF component and library.json force
 * it in front of that file (-include).
 *
 *  - the port itself handles what mbedTLS 3 renamed or made private (the
 *    SHA-256 calls without _ret, MBEDTLS_ALLOW_PRIVATE_ACCESS); this header
 *    defines MBEDTLS_ALLOW_PRIVATE_ACCESS too, so that it holds for every
 *    mbedTLS header the -include brings in first;
 *
 * mbedTLS 4 (TF-PSA-Crypto: ESP-IDF 6) has none of the legacy API the port
 * uses: there the firmware passes a crypto table of its own, over PSA Crypto
 * or a secure element (docs/porting.md).
 */
#ifndef OTK_MBEDTLS_COMPAT_H
#define OTK_MBEDTLS_COMPAT_H

#ifndef MBEDTLS_ALLOW_PRIVATE_ACCESS
#define MBEDTLS_ALLOW_PRIVATE_ACCESS
#endif
#include <mbedtls/version.h> /* the configuration too (config.h or build_info.h) */

#if MBEDTLS_VERSION_MAJOR >= 4
#error "otakey: the mbedTLS crypto port needs mbedTLS 2.28 or 3.x; with mbedTLS 4 pass a crypto table over PSA Crypto (docs/porting.md)"
#elif MBEDTLS_VERSION_MAJOR < 2 || (MBEDTLS_VERSION_MAJOR == 2 && MBEDTLS_VERSION_MINOR < 16)
#error "otakey: the mbedTLS crypto port needs mbedTLS 2.28 or 3.x"
#endif

/* What the port calls, by the configuration macro that compiles it in. */
#if !defined(MBEDTLS_BIGNUM_C) || !defined(MBEDTLS_ECP_C) || \
    !defined(MBEDTLS_ECP_DP_SECP256R1_ENABLED) || !defined(MBEDTLS_ECDH_C) || \
    !defined(MBEDTLS_ECDSA_C)
#error "otakey: the mbedTLS configuration lacks P-256 ECDH/ECDSA (MBEDTLS_ECP_C, MBEDTLS_ECP_DP_SECP256R1_ENABLED, MBEDTLS_ECDH_C, MBEDTLS_ECDSA_C)"
#endif
#if !defined(MBEDTLS_AES_C) || !defined(MBEDTLS_CCM_C)
#error "otakey: the mbedTLS configuration lacks AES-CCM (MBEDTLS_AES_C, MBEDTLS_CCM_C)"
#endif
#if !defined(MBEDTLS_SHA256_C) || !defined(MBEDTLS_MD_C) || !defined(MBEDTLS_HKDF_C)
#error "otakey: the mbedTLS configuration lacks SHA-256, HMAC or HKDF (MBEDTLS_SHA256_C, MBEDTLS_MD_C, MBEDTLS_HKDF_C)"
#endif

#endif
