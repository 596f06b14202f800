/*
 * Fuzz target: the agent's parser of the cloud broker's dynamic-security
 * responses (otk_dynsec_parse_responses), which reads JSON from the
 * network. The current request is number 42 with two commands: only
 * errors[0] and errors[1] may change, whatever changes is a terminated
 * string, and nothing is recorded that the input did not contain.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "otakey/dynsec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SEQ 42
#define EXPECTED 2
#define FILL 0x5a

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char errors[4][64];
    const uint8_t *p = data;
    size_t objects = 0, left = size;
    int n, k, touched = 0;
    memset(errors, FILL, sizeof errors);
    n = otk_dynsec_parse_responses((const char *)data, size, SEQ, EXPECTED, errors);
    /* Each recorded response is a JSON object: the input holds its '{'. */
    while (left && (p = memchr(p, '{', left)) != NULL) {
        objects++;
        p++;
        left = size - (size_t)(p - data);
    }
    if (n < 0 || (size_t)n > objects)
        abort();
    for (k = 0; k < 4; k++) {
        size_t i;
        for (i = 0; i < 64 && (unsigned char)errors[k][i] == FILL; i++)
            ;
        if (i == 64)
            continue; /* untouched */
        if (k >= EXPECTED || memchr(errors[k], '\0', 64) == NULL)
            abort();
        touched = 1;
    }
    if (touched && n == 0)
        abort();
    return 0;
}
