/*
 * Tests of the parser of the broker's dynamic-security responses: answers
 * of the current request are recorded by index, everything else (other
 * requests, indexes out of range, malformed JSON) is ignored without
 * touching the error slots.
 */
#include <stdlib.h>

#include "check.h"

#include "otakey/dynsec.h"

static char errors[4][64];

static int parse(const char *json, unsigned long seq, int expected)
{
    memset(errors, 'x', sizeof errors);
    errors[0][63] = errors[1][63] = errors[2][63] = errors[3][63] = '\0';
    return otk_dynsec_parse_responses(json, strlen(json), seq, expected, errors);
}

static int untouched(int k)
{
    size_t i;
    for (i = 0; i < 63; i++)
        if (errors[k][i] != 'x')
            return 0;
    return 1;
}

int main(void)
{
    char big[400], *heap;
    size_t n;

    /* Both answers of a create, successes. */
    CHECK(parse("{\"responses\":[{\"command\":\"createRole\",\"correlationData\":\"42-0\"},"
                "{\"command\":\"createClient\",\"correlationData\":\"42-1\"}]}",
                42, 2) == 2);
    CHECK(errors[0][0] == '\0' && errors[1][0] == '\0' && untouched(2));

    /* Errors are copied by index, in any order. */
    CHECK(parse("{\"responses\":[{\"error\":\"Client already exists\",\"correlationData\":\"7-1\"},"
                "{\"error\":\"Role already exists\",\"correlationData\":\"7-0\"}]}",
                7, 2) == 2);
    CHECK(strcmp(errors[0], "Role already exists") == 0);
    CHECK(strcmp(errors[1], "Client already exists") == 0);

    /* Another request's answer, an index out of range, a negative index,
     * a numeric correlationData, none at all: nothing recorded. */
    CHECK(parse("{\"responses\":[{\"correlationData\":\"41-0\"},{\"correlationData\":\"42-2\"},"
                "{\"correlationData\":\"42--1\"},{\"correlationData\":42},{\"error\":\"e\"}]}",
                42, 2) == 0);
    CHECK(untouched(0) && untouched(1) && untouched(2) && untouched(3));

    /* Malformed or foreign documents. */
    CHECK(parse("", 1, 2) == 0);
    CHECK(parse("{\"responses\":[{\"correlationData\":\"1-0\"}", 1, 2) == 0);
    CHECK(parse("{\"responses\":{\"correlationData\":\"1-0\"}}", 1, 2) == 0);
    CHECK(parse("[{\"correlationData\":\"1-0\"}]", 1, 2) == 0);
    CHECK(parse("{\"responses\":[\"1-0\", 1, null]}", 1, 2) == 0);
    CHECK(untouched(0) && untouched(1));
    CHECK(otk_dynsec_parse_responses(NULL, 5, 1, 2, errors) == 0);

    /* A repeated answer counts again (the caller waits for a count). */
    CHECK(parse("{\"responses\":[{\"correlationData\":\"3-0\"},{\"correlationData\":\"3-0\"}]}", 3,
                1) == 2);

    /* A long error is cut to 63 bytes and terminated. */
    n = (size_t)snprintf(big, sizeof big, "{\"responses\":[{\"correlationData\":\"9-0\",\"error\":\"");
    memset(big + n, 'e', 200);
    strcpy(big + n + 200, "\"}]}");
    CHECK(parse(big, 9, 1) == 1);
    CHECK(strlen(errors[0]) == 63 && errors[0][62] == 'e');

    /* The payload needs no terminator: an exact-size heap copy (ASan checks
     * that nothing past it is read); cut short, it is malformed. */
    n = strlen("{\"responses\":[{\"correlationData\":\"5-0\",\"error\":\"Client not found\"}]}");
    heap = malloc(n);
    if (heap == NULL)
        abort();
    memcpy(heap, "{\"responses\":[{\"correlationData\":\"5-0\",\"error\":\"Client not found\"}]}", n);
    CHECK(otk_dynsec_parse_responses(heap, n, 5, 1, errors) == 1);
    CHECK(strcmp(errors[0], "Client not found") == 0);
    CHECK(otk_dynsec_parse_responses(heap, n - 3, 5, 1, errors) == 0);
    free(heap);

    return CHECK_DONE();
}
