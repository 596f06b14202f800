/*
 * The operator CLI as a client of the agent's HTTP API (docs/api.md): one
 * call at a time over HTTPS with libcurl, and the API's JSON read back into
 * the registry's row types, so that `otakey --url` prints what `otakey --db`
 * prints.
 */
#ifndef OTK_CLI_API_H
#define OTK_CLI_API_H

#include <cjson/cJSON.h>

#include "otakey/store.h"

typedef struct cli_api {
    const char *url;    /* https://host:port */
    char token[300];
    const char *cafile; /* NULL: the system's trust store */
} cli_api;

/*
 * Reads the token: from token_file when given (its first line), else from
 * the environment variable OTAKEY_TOKEN. 0, or -1 with a message on stderr.
 */
int cli_api_token(cli_api *c, const char *token_file);

/*
 * One call: method, path (with its query), body (NULL: none; not taken).
 * Returns the parsed JSON body (the caller deletes it) and the HTTP status
 * in *status; NULL when the call failed (no connection, TLS, no JSON),
 * with a message on stderr. An API error ({"error", "code"}) comes back as
 * its JSON with its status: cli_api_error prints it.
 */
cJSON *cli_api_call(const cli_api *c, const char *method, const char *path, const cJSON *body,
                    long *status);

/* Prints an API error response as "otakey: WHAT: message (CODE)". */
void cli_api_error(const char *what, const cJSON *o, long status);

/* The API's rows read back (0, or -1 when a field is missing or malformed). */
int cli_api_device(const cJSON *o, otk_device_info *d);
int cli_api_batch(const cJSON *o, otk_batch_info *b);
int cli_api_campaign(const cJSON *o, otk_campaign_status *st);
int cli_api_audit(const cJSON *o, otk_audit_row *r);

#endif
