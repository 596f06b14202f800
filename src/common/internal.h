/*
 * Private header of the common library (codec, key schedule, utilities).
 * Every .c file of src/common includes it first.
 */
#ifndef OTK_COMMON_INTERNAL_H
#define OTK_COMMON_INTERNAL_H

#include <string.h>

#include "otakey/common.h"
#include "otakey/crypto.h"
#include "otakey/proto.h"
#include "otakey/wire.h"

/* Evaluates a status expression and returns it from the caller on failure. */
#define OTK_TRY(expr)                 \
    do {                              \
        otk_status otk_try_ = (expr); \
        if (otk_try_ != OTK_OK)       \
            return otk_try_;          \
    } while (0)

/*
 * Keeps a function out of line: a handler's frame out of its caller's (the
 * caller's other paths then do not carry it on the stack), or one copy of
 * a helper several callers share (code size on the device).
 */
#if defined(__GNUC__) || defined(__clang__)
#define OTK_NOINLINE __attribute__((noinline))
#else
#define OTK_NOINLINE
#endif

#endif
