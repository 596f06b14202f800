/*
 * Minimal test harness: CHECK records a failure and goes on; each test
 * program ends with CHECK_DONE(), which prints "N passed, N failed" and
 * returns the exit status ctest reads.
 */
#ifndef OTK_TEST_CHECK_H
#define OTK_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

#include "otakey/common.h"

static unsigned check_passed_, check_failed_;

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (cond) {                                                           \
            check_passed_++;                                                  \
        } else {                                                              \
            check_failed_++;                                                  \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,  \
                    #cond);                                                   \
        }                                                                     \
    } while (0)

/* Checks that a status expression equals the expected status. */
#define CHECK_ST(expr, want)                                                  \
    do {                                                                      \
        otk_status got_ = (expr), want_ = (want);                             \
        if (got_ == want_) {                                                  \
            check_passed_++;                                                  \
        } else {                                                              \
            check_failed_++;                                                  \
            fprintf(stderr, "%s:%d: %s: got %s (%d), want %s (%d)\n",         \
                    __FILE__, __LINE__, #expr, otk_strerror(got_), got_,      \
                    otk_strerror(want_), want_);                              \
        }                                                                     \
    } while (0)

#define CHECK_OK(expr) CHECK_ST(expr, OTK_OK)

#define CHECK_MEM(a, b, n) CHECK(memcmp((a), (b), (n)) == 0)

#define CHECK_DONE()                                                          \
    (printf("%u passed, %u failed\n", check_passed_, check_failed_),          \
     check_failed_ ? 1 : 0)

#endif
