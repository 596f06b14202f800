/*
 * Fuzz target: what a client of the agent's HTTP API controls and the API
 * parses itself (src/agent/http/api.c): a campaign request's body, a line of
 * the tokens file, a path's segments and ids, a number in a query, the
 * listen setting. The request line and headers are libmicrohttpd's, JSON
 * syntax is cJSON's. Invariant: nothing crashes or leaks; a body the parser
 * accepts has a kind.
 */
#include <stdint.h>
#include <stddef.h>

#include "api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return otk_api_fuzz_input(data, size);
}
