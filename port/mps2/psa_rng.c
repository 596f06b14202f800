/*
 * The PSA layer's random source on the emulated board
 * (MBEDTLS_PSA_CRYPTO_EXTERNAL_RNG). The emulated MPS2 has no TRNG: the
 * tests' deterministic generator stands in for it. A part passes its TRNG
 * here (or lets mbedTLS's entropy module collect from it).
 */
#include <psa/crypto.h>

#include "testrng.h"

psa_status_t mbedtls_psa_external_get_random(mbedtls_psa_external_random_context_t *context,
                                             uint8_t *output, size_t output_size,
                                             size_t *output_length)
{
    static otk_testrng rng;
    static int seeded;
    (void)context;
    if (!seeded) {
        otk_testrng_seed(&rng, 0x70736121u);
        seeded = 1;
    }
    if (otk_testrng_fill(&rng, output, output_size) != 0)
        return PSA_ERROR_INSUFFICIENT_ENTROPY;
    *output_length = output_size;
    return PSA_SUCCESS;
}
