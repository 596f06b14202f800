/*
 * mbedTLS 2.28 configuration for the device on Cortex-M4: exactly what the
 * crypto port needs (P-256 ECDH and ECDSA, SHA-256, HMAC, HKDF, AES-CCM),
 * no file system, no network, no OS entropy (the port gives a TRNG).
 */
#ifndef OTK_MBEDTLS_CONFIG_M4_H
#define OTK_MBEDTLS_CONFIG_M4_H

#define MBEDTLS_NO_PLATFORM_ENTROPY
#define MBEDTLS_HAVE_ASM

#define MBEDTLS_AES_C
#define MBEDTLS_AES_ROM_TABLES     /* tables in flash, not 8 KiB of RAM */
#define MBEDTLS_AES_FEWER_TABLES   /* 2 KiB of tables instead of 8 */
#define MBEDTLS_CIPHER_C
#define MBEDTLS_CCM_C
#define MBEDTLS_MD_C
#define MBEDTLS_SHA256_C
#define MBEDTLS_HKDF_C
#define MBEDTLS_BIGNUM_C
#define MBEDTLS_ECP_C
#define MBEDTLS_ECP_DP_SECP256R1_ENABLED
#define MBEDTLS_ECP_NIST_OPTIM
#define MBEDTLS_ECP_NO_INTERNAL_RNG /* every ECP call gets the port's RNG */
#define MBEDTLS_ECDH_C
#define MBEDTLS_ECDSA_C
#define MBEDTLS_ASN1_PARSE_C
#define MBEDTLS_ASN1_WRITE_C

#ifndef OTK_MBEDTLS_CONFIG_M4_NO_CHECK /* mbedtls_config_m4_psa.h adds to this one */
#include "mbedtls/check_config.h"
#endif

#endif
