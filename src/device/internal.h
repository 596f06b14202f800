/*
 * Private header of the device core (key store + protocol state machine).
 * Every .c file of src/device includes it first. The core is C99, uses no
 * heap and no generated headers; all state lives in caller-owned contexts.
 */
#ifndef OTK_DEVICE_INTERNAL_H
#define OTK_DEVICE_INTERNAL_H

#include "../common/internal.h"
#include "otakey/device.h"
#include "otakey/keystore.h"

/*
 * Tunables, overridable by building with -DOTK_CONFIG=\"file.h\".
 * OTK_RETRY_MIN_MS / OTK_RETRY_MAX_MS: default retransmit backoff range
 * when the config leaves them 0 (exponential between the two).
 */
#ifdef OTK_CONFIG
#include OTK_CONFIG
#endif
#ifndef OTK_RETRY_MIN_MS
#define OTK_RETRY_MIN_MS 2000u
#endif
#ifndef OTK_RETRY_MAX_MS
#define OTK_RETRY_MAX_MS 300000u
#endif

#endif
