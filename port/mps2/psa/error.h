/* The PSA status codes, for mbedTLS's storage layer on a platform with its own
 * internal trusted storage (port/mps2/psa_its_ram.c). */
#ifndef OTK_MPS2_PSA_ERROR_H
#define OTK_MPS2_PSA_ERROR_H
#include <psa/crypto_types.h>
#include <psa/crypto_values.h>
#endif
