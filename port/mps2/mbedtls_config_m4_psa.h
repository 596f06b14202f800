/*
 * mbedTLS configuration for the board's PSA Crypto tests (tests/test_crypto.c,
 * tests/test_psa.c on the emulated Cortex-M4): the subset of
 * mbedtls_config_m4.h plus its PSA layer, with the random source given by the
 * platform (MBEDTLS_PSA_CRYPTO_EXTERNAL_RNG: port/mps2/psa_rng.c) and
 * persistent keys in the platform's internal trusted storage (psa_its_*:
 * port/mps2/psa_its_ram.c, a table in RAM where a part has TF-M's ITS or a
 * secure element).
 */
#ifndef OTK_MBEDTLS_CONFIG_M4_PSA_H
#define OTK_MBEDTLS_CONFIG_M4_PSA_H

#define OTK_MBEDTLS_CONFIG_M4_NO_CHECK
#include "mbedtls_config_m4.h"

#define MBEDTLS_PSA_CRYPTO_C
#define MBEDTLS_PSA_CRYPTO_EXTERNAL_RNG
#define MBEDTLS_PSA_CRYPTO_STORAGE_C

#include "mbedtls/check_config.h"

#endif
