/* The platform's internal trusted storage API (psa_its_*) as mbedTLS 2.28
 * declares it (library/psa_crypto_its.h); implemented by port/mps2/psa_its_ram.c. */
#ifndef OTK_MPS2_PSA_ITS_H
#define OTK_MPS2_PSA_ITS_H
#include "psa_crypto_its.h"
#endif
