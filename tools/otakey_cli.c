/*
 * otakey: the operator's command line.
 *
 *   otakey keygen OUT                      agent signing key (prints the public key)
 *   otakey product create --db DB --batch HEX16 --name NAME --pk-out FILE
 *   otakey product list --db DB [--json]
 *   otakey device list --db DB [--json]
 *   otakey device show --db DB ID [--json]
 *   otakey device update --db DB (--rotate | --switch-to CLOUD) (ID... | --all)
 *   otakey device revoke --config AGENT.ini ID [--wait SECONDS]
 *   otakey device allow-reclaim --db DB ID
 *   otakey campaign start --db DB (--rotate | --switch-to CLOUD)
 *                (--all | --batch HEX16 | --devices ID,ID...) [--rate N] [--canary N]
 *   otakey campaign status --db DB [ID] [--json] [--watch]
 *   otakey campaign pause|resume|abort --db DB ID
 *   otakey audit verify --db DB
 *   otakey audit list --db DB [--json]
 *   otakey token create --tokens FILE --name NAME --role read|operator
 *
 * DB is a SQLite file or a PostgreSQL URI (postgresql://...): docs/operations.md.
 *
 * With --url URL (or OTAKEY_URL) instead of --db/--config, the commands go
 * through a running agent's HTTP API (docs/api.md; token from --token-file
 * or OTAKEY_TOKEN, CA from --cafile or OTAKEY_CAFILE) and print the same.
 *
 * Exit codes: 0 success, 1 the operation failed (message on stderr),
 * 2 bad usage (the message names the bad argument), 3 audit log tampered.
 */
#include <errno.h>
#include <pwd.h>
#include <time.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "agent_config.h"
#include "api.h"
#include "cli_api.h"
#include "otakey/campaign.h"
#include "otakey/dynsec.h"
#include "otakey/store.h"
#include "otakey/wire.h"

#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define EXIT_TAMPERED 3

typedef struct args {
    int argc;
    char **argv;
    const char *db, *config, *batch, *name, *pk_out, *switch_to, *devices, *rate, *canary, *wait;
    const char *max_failures, *tokens, *role;
    const char *url, *token_file, *cafile; /* --url: through the agent's HTTP API */
    cli_api api;
    int json, rotate, all, watch, help;
    int rows; /* rows printed by a listing */
    cJSON *arr; /* --json: the listing's array */
    const char *pos[64];
    int npos;
} args;

static int remote_campaign(args *a, int want, long target, const char *selector, long rate,
                           long canary, long max_failures, cJSON **out);

static int usage_error(const char *fmt, const char *what)
{
    fprintf(stderr, "otakey: ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\n(see 'otakey --help')\n");
    return EXIT_USAGE;
}

static const char *help_text =
    "usage: otakey COMMAND [options]\n"
    "  keygen OUT                              create the agent signing key file OUT\n"
    "  product create --db DB --batch HEX16 --name NAME --pk-out FILE\n"
    "  product list --db DB [--json]\n"
    "  device list --db DB [--json]\n"
    "  device show --db DB ID [--json]\n"
    "  device update --db DB (--rotate | --switch-to CLOUD) (ID... | --all)\n"
    "  device revoke --config AGENT.ini ID [--wait S]  (S: for the agent's cloud deletions, 10)\n"
    "  device allow-reclaim --db DB ID\n"
    "  campaign start --db DB (--rotate | --switch-to CLOUD)\n"
    "                 (--all | --batch HEX16 | --devices ID,ID...) [--rate N/s] [--canary N]\n"
    "                 [--max-failures N]\n"
    "  campaign status --db DB [ID] [--json] [--watch]\n"
    "  campaign pause|resume|abort --db DB ID\n"
    "  audit verify --db DB\n"
    "  audit list --db DB [--json]\n"
    "  token create --tokens FILE --name NAME --role read|operator\n"
    "  --version\n"
    "Through a running agent's HTTP API instead of the registry (docs/api.md): --url URL\n"
    "  (or OTAKEY_URL) in place of --db/--config, the token from --token-file FILE or\n"
    "  OTAKEY_TOKEN, the CA that signed the API's certificate from --cafile FILE or\n"
    "  OTAKEY_CAFILE (default: the system's); the output is the same.\n"
    "'otakey COMMAND --help' explains one command.\n"
    "DB is a SQLite file or a PostgreSQL URI (postgresql://user@host/dbname).\n"
    "Exit codes: 0 success, 1 failure, 2 bad usage, 3 audit log tampered.\n";

/* Each subcommand's own help: "NAME\tTEXT". */
static const char *const sub_help[] = {
    "keygen\tusage: otakey keygen OUT\n"
    "Creates the agent's signing key file OUT (mode 0600; it must not exist yet) and prints\n"
    "the public key (128 hex digits) to build into the firmware.\n",
    "product create\tusage: otakey product create --db DB --batch HEX16 --name NAME --pk-out FILE\n"
    "Registers a production batch (product id and batch number, 16 hex digits) in the registry,\n"
    "creating a SQLite registry if DB is a new file, and writes the batch's product key PK to\n"
    "FILE (mode 0600; it must not exist yet) for the firmware build.\n",
    "product list\tusage: otakey product list --db DB [--json]\n"
    "Lists the batches with the number of devices that claimed from each.\n",
    "device list\tusage: otakey device list --db DB [--json]\n"
    "Lists every device: state, committed version, cloud, pending version, batch.\n",
    "device show\tusage: otakey device show --db DB ID [--json]\n"
    "Shows one device (ID: 32 hex digits); exit 1 if the registry does not know it.\n",
    "device update\tusage: otakey device update --db DB (--rotate | --switch-to CLOUD) (ID... | --all)\n"
    "Requests a rotation, or a switch to cloud CLOUD, of the devices named (or of every active\n"
    "device) at once, outside any campaign; the agent offers it to each device.\n",
    "device revoke\tusage: otakey device revoke --config AGENT.ini ID [--wait S]\n"
    "Revokes a device: its AK is refused from now on, its cloud credentials are deleted (on\n"
    "dynsec clouds by this command, elsewhere by the running agent, waited for up to S seconds,\n"
    "default 10). Exit 1 if the agent has not finished in time (it still will).\n",
    "device allow-reclaim\tusage: otakey device allow-reclaim --db DB ID\n"
    "Lets a replaced or reset device claim its id once more.\n",
    "campaign start\tusage: otakey campaign start --db DB (--rotate | --switch-to CLOUD)\n"
    "                   (--all | --batch HEX16 | --devices ID,ID...) [--rate N] [--canary N]\n"
    "                   [--max-failures N] [--json]\n"
    "Starts a campaign over the active devices selected: RATE devices a second (100); with\n"
    "--canary N, N devices go first and the rest waits until they all committed; with\n"
    "--max-failures N, the campaign pauses itself when N devices failed (resume or abort it).\n",
    "campaign status\tusage: otakey campaign status --db DB [ID] [--json] [--watch]\n"
    "Shows every campaign, or one; --watch follows one until it ends or pauses.\n",
    "campaign pause\tusage: otakey campaign pause --db DB ID\nStops starting devices.\n",
    "campaign resume\tusage: otakey campaign resume --db DB ID\nStarts devices again.\n",
    "campaign abort\tusage: otakey campaign abort --db DB ID\n"
    "Ends the campaign; requests not yet issued are withdrawn (issued sets finish).\n",
    "audit verify\tusage: otakey audit verify --db DB [--json]\n"
    "Walks the audit log's hash chain; exit 3 at the first row that does not verify.\n",
    "audit list\tusage: otakey audit list --db DB [--json]\nPrints the audit log.\n",
    "token create\tusage: otakey token create --tokens FILE --name NAME --role read|operator\n"
    "Creates an API token for the agent's HTTP API (docs/api.md) and prints it once; FILE (mode\n"
    "0600) keeps only its SHA-256. The agent reads FILE at its start and on SIGHUP.\n",
};

/* --help: the subcommand's own text, or the overview. */
static int print_help(const args *a)
{
    char name[64];
    size_t i;
    snprintf(name, sizeof name, "%s%s%s", a->npos > 0 ? a->pos[0] : "", a->npos > 1 ? " " : "",
             a->npos > 1 ? a->pos[1] : "");
    for (i = 0; i < sizeof sub_help / sizeof sub_help[0]; i++) {
        const char *tab = strchr(sub_help[i], '\t');
        if ((size_t)(tab - sub_help[i]) == strlen(name) &&
            !strncmp(sub_help[i], name, (size_t)(tab - sub_help[i]))) {
            fputs(tab + 1, stdout);
            fputs("Exit codes: 0 success, 1 failure, 2 bad usage, 3 audit log tampered.\n", stdout);
            return 0;
        }
    }
    fputs(help_text, stdout);
    return 0;
}

static int parse(args *a, int from)
{
    int i;
    for (i = from; i < a->argc; i++) {
        const char *s = a->argv[i];
        const char **dst = NULL;
        if (!strcmp(s, "--json"))
            a->json = 1;
        else if (!strcmp(s, "--rotate"))
            a->rotate = 1;
        else if (!strcmp(s, "--all"))
            a->all = 1;
        else if (!strcmp(s, "--watch"))
            a->watch = 1;
        else if (!strcmp(s, "--devices"))
            dst = &a->devices;
        else if (!strcmp(s, "--rate"))
            dst = &a->rate;
        else if (!strcmp(s, "--canary"))
            dst = &a->canary;
        else if (!strcmp(s, "--wait"))
            dst = &a->wait;
        else if (!strcmp(s, "--url"))
            dst = &a->url;
        else if (!strcmp(s, "--token-file"))
            dst = &a->token_file;
        else if (!strcmp(s, "--cafile"))
            dst = &a->cafile;
        else if (!strcmp(s, "--max-failures"))
            dst = &a->max_failures;
        else if (!strcmp(s, "--tokens"))
            dst = &a->tokens;
        else if (!strcmp(s, "--role"))
            dst = &a->role;
        else if (!strcmp(s, "--help") || !strcmp(s, "-h"))
            a->help = 1;
        else if (!strcmp(s, "--db"))
            dst = &a->db;
        else if (!strcmp(s, "--config"))
            dst = &a->config;
        else if (!strcmp(s, "--batch"))
            dst = &a->batch;
        else if (!strcmp(s, "--name"))
            dst = &a->name;
        else if (!strcmp(s, "--pk-out"))
            dst = &a->pk_out;
        else if (!strcmp(s, "--switch-to"))
            dst = &a->switch_to;
        else if (s[0] == '-' && s[1] == '-')
            return usage_error("unknown option '%s'", s);
        else if (a->npos < 64)
            a->pos[a->npos++] = s;
        if (dst) {
            if (i + 1 >= a->argc)
                return usage_error("option '%s' needs a value", s);
            *dst = a->argv[++i];
        }
    }
    return 0;
}

/* --json output: one JSON value per line, always built by cJSON (names and
 * selectors may hold any character); takes o. */
static void json_out(cJSON *o)
{
    char *text = o ? cJSON_PrintUnformatted(o) : NULL;
    if (text == NULL)
        abort();
    puts(text);
    free(text);
    cJSON_Delete(o);
}

static cJSON *json_list_item(args *a)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL || a->arr == NULL || !cJSON_AddItemToArray(a->arr, o))
        abort();
    return o;
}

static void print_hex(FILE *f, const uint8_t *p, size_t n)
{
    while (n--)
        fprintf(f, "%02x", *p++);
}

/* The audit rows this command writes name the operator's login. */
static void set_cli_actor(otk_store *r)
{
    char actor[OTK_ACTOR_MAX + 1];
    const struct passwd *pw = getpwuid(getuid());
    snprintf(actor, sizeof actor, "cli:%s", pw && pw->pw_name ? pw->pw_name : "?");
    otk_store_set_actor(r, actor);
}

static int open_db(args *a, otk_crypto *c, otk_store **r)
{
    char err[512];
    /* Only 'product create' may start a new SQLite registry; elsewhere a
     * missing file is a mistyped path, not an empty fleet. */
    int creating = a->npos > 1 && !strcmp(a->pos[0], "product") && !strcmp(a->pos[1], "create");
    if (a->db == NULL)
        return usage_error("%s", "--db DB is required");
    if (otk_crypto_openssl_init(c, NULL, NULL) != OTK_OK)
        return EXIT_FAIL;
    if (otk_store_open(a->db, c, creating, r, err, sizeof err) != OTK_OK) {
        fprintf(stderr, "otakey: %s\n", err);
        otk_crypto_openssl_free(c);
        return EXIT_FAIL;
    }
    set_cli_actor(*r);
    return 0;
}

static void close_db(otk_crypto *c, otk_store *r)
{
    otk_store_close(r);
    otk_crypto_openssl_free(c);
}

static int cmd_keygen(args *a)
{
    otk_crypto c;
    uint8_t priv[32], pub[64];
    FILE *f;
    if (a->npos != 2)
        return usage_error("%s", "keygen needs exactly one OUT file");
    if (otk_crypto_openssl_init(&c, NULL, NULL) != OTK_OK || c.ec_keygen(c.ctx, OTK_KEY_EPHEMERAL, priv, pub) != OTK_OK)
        return EXIT_FAIL;
    otk_crypto_openssl_free(&c);
    f = otk_create_secret_file(a->pos[1], 1); /* 0600: the agent refuses a key others may read */
    if (f == NULL) {
        fprintf(stderr, "otakey: cannot create '%s': %s%s\n", a->pos[1], strerror(errno),
                errno == EEXIST ? " (it must not exist yet)" : "");
        otk_wipe(priv, sizeof priv);
        return EXIT_FAIL;
    }
    print_hex(f, priv, 32);
    print_hex(f, pub, 64);
    fputc('\n', f);
    fclose(f);
    otk_wipe(priv, sizeof priv);
    print_hex(stdout, pub, 64);
    fputc('\n', stdout);
    return 0;
}

static int cmd_product_create(args *a)
{
    otk_crypto c;
    otk_store *r;
    uint8_t batch[8], pk[32];
    FILE *f;
    otk_status st;
    int rc;
    if (a->batch == NULL || otk_hex_decode(a->batch, batch, sizeof batch) != 0)
        return usage_error("%s", "--batch must be 16 hex digits (product id, batch number)");
    if (a->name == NULL || a->pk_out == NULL)
        return usage_error("%s", "--name and --pk-out are required");
    if ((rc = open_db(a, &c, &r)) != 0)
        return rc;
    rc = EXIT_FAIL;
    if (c.random(c.ctx, pk, sizeof pk) != OTK_OK)
        goto out;
    f = otk_create_secret_file(a->pk_out, 1); /* 0600: PK is the batch's claim key */
    if (f == NULL) {
        fprintf(stderr, "otakey: cannot create '%s': %s%s\n", a->pk_out, strerror(errno),
                errno == EEXIST ? " (it must not exist yet)" : "");
        goto out;
    }
    print_hex(f, pk, sizeof pk);
    fputc('\n', f);
    fclose(f);
    st = otk_store_add_batch(r, batch, a->name, pk);
    if (st == OTK_ERR_BAD_STATE)
        fprintf(stderr, "otakey: batch %s exists already\n", a->batch);
    else if (st != OTK_OK)
        fprintf(stderr, "otakey: %s\n", otk_strerror(st));
    else
        rc = 0;
    if (rc != 0)
        remove(a->pk_out);
out:
    otk_wipe(pk, sizeof pk);
    otk_store_close(r);
    otk_crypto_openssl_free(&c);
    return rc;
}

static int print_batch(void *user, const otk_batch_info *b)
{
    args *a = user;
    char hex[17];
    otk_hex_encode(b->batch_id, 8, hex);
    if (a->json) {
        cJSON *o = json_list_item(a);
        cJSON_AddStringToObject(o, "batch", hex);
        cJSON_AddStringToObject(o, "product", b->product);
        cJSON_AddNumberToObject(o, "devices", (double)b->devices);
    } else
        printf("%-16s %-24s %llu\n", hex, b->product, (unsigned long long)b->devices);
    a->rows++;
    return 0;
}

static int cmd_product_list(args *a)
{
    otk_crypto c;
    otk_store *r;
    otk_status st;
    int rc;
    if ((rc = open_db(a, &c, &r)) != 0)
        return rc;
    if (a->json)
        a->arr = cJSON_CreateArray();
    else
        printf("%-16s %-24s %s\n", "BATCH", "PRODUCT", "DEVICES");
    st = otk_store_list_batches(r, print_batch, a);
    if (a->json)
        json_out(a->arr);
    close_db(&c, r);
    return st == OTK_OK ? 0 : EXIT_FAIL;
}

static const char *state_name(int s)
{
    return s == OTK_DS_PENDING ? "pending" : s == OTK_DS_ACTIVE ? "active" : s == OTK_DS_REVOKED ? "revoked" : "?";
}

static int print_device(void *user, const otk_device_info *d)
{
    args *a = user;
    char hid[33], hb[17];
    otk_hex_encode(d->id, 16, hid);
    otk_hex_encode(d->batch_id, 8, hb);
    if (a->json) {
        cJSON *o = json_list_item(a);
        cJSON_AddStringToObject(o, "id", hid);
        cJSON_AddStringToObject(o, "state", state_name(d->state));
        cJSON_AddNumberToObject(o, "version", d->version);
        cJSON_AddNumberToObject(o, "cloud", d->cloud);
        cJSON_AddStringToObject(o, "user", d->user);
        cJSON_AddNumberToObject(o, "pending_version", d->pending_version);
        cJSON_AddStringToObject(o, "batch", hb);
    } else
        printf("%-32s %-8s %-7lu %-5lu %-7lu %s\n", hid, state_name(d->state),
               (unsigned long)d->version, (unsigned long)d->cloud,
               (unsigned long)d->pending_version, hb);
    a->rows++;
    return 0;
}

static int cmd_device_list(args *a, int show)
{
    otk_crypto c;
    otk_store *r;
    otk_status st;
    uint8_t id[16];
    int rc;
    if (show && (a->npos != 3 || otk_hex_decode(a->pos[2], id, 16) != 0))
        return usage_error("%s", "device show needs one device ID (32 hex digits)");
    if ((rc = open_db(a, &c, &r)) != 0)
        return rc;
    if (a->json)
        a->arr = cJSON_CreateArray();
    else
        printf("%-32s %-8s %-7s %-5s %-7s %s\n", "DEVICE", "STATE", "VERSION", "CLOUD", "PENDING", "BATCH");
    st = otk_store_list_devices(r, show ? id : NULL, 0, print_device, a);
    if (a->json)
        json_out(a->arr);
    close_db(&c, r);
    if (show && st == OTK_OK && a->rows == 0) {
        fprintf(stderr, "otakey: no device %s\n", a->pos[2]);
        return EXIT_FAIL;
    }
    return st == OTK_OK ? 0 : EXIT_FAIL;
}

/* Agent core over the registry only: for operator calls that touch no cloud. */
static otk_status no_cloud_create(void *ctx, const uint8_t id[16], const otk_cloud *c)
{
    (void)ctx;
    (void)id;
    (void)c;
    return OTK_ERR_CLOUD;
}

static otk_status no_cloud_remove(void *ctx, uint32_t cloud_id, const char *user)
{
    (void)ctx;
    (void)cloud_id;
    (void)user;
    return OTK_ERR_CLOUD;
}

typedef struct update_all {
    otk_agent *agent;
    otk_store *store;
    int want;
    uint32_t target;
    int done, failed;
    uint8_t *ids;
    int n, cap;
} update_all;

static int collect_id(void *user, const otk_device_info *d)
{
    update_all *u = user;
    if (u->n == u->cap) {
        u->cap = u->cap ? 2 * u->cap : 256;
        u->ids = realloc(u->ids, 16 * (size_t)u->cap);
        if (u->ids == NULL)
            abort();
    }
    memcpy(u->ids + 16 * (size_t)u->n++, d->id, 16);
    return 0;
}

static void request_one(update_all *u, const uint8_t id[16])
{
    uint8_t out[OTK_MSG_MAX_LEN];
    size_t n;
    if (otk_agent_request_update(u->agent, id, u->want, u->target, out, sizeof out, &n) == OTK_OK)
        u->done++;
    else
        u->failed++;
    if (otk_store_release(u->store) != OTK_OK)
        u->failed++;
}

static int cmd_device_update(args *a)
{
    otk_crypto c;
    otk_store *r;
    otk_agent agent;
    otk_agent_config cfg;
    otk_registry reg;
    otk_cloud_adapter none = {NULL, no_cloud_create, no_cloud_remove, NULL, NULL};
    uint8_t id[16], out[OTK_MSG_MAX_LEN];
    long target = 0;
    int i, rc, failed = 0, done = 0;
    size_t n;
    if (a->rotate == (a->switch_to != NULL))
        return usage_error("%s", "give exactly one of --rotate and --switch-to CLOUD");
    if (a->switch_to && ((target = strtol(a->switch_to, NULL, 10)) <= 0))
        return usage_error("--switch-to '%s' is not a cloud id", a->switch_to);
    if (a->npos < 3 && !a->all)
        return usage_error("%s", "device update needs device IDs or --all");
    for (i = 2; i < a->npos; i++)
        if (otk_hex_decode(a->pos[i], id, 16) != 0)
            return usage_error("'%s' is not a device ID (32 hex digits)", a->pos[i]);
    if (a->url) { /* through the API: a campaign over them, at the agent's pace */
        static char sel[65536];
        size_t len = 4;
        cJSON *o = NULL;
        const cJSON *tot, *cid;
        strcpy(sel, a->all ? "all" : "ids:");
        for (i = 2; !a->all && i < a->npos && len + 34 < sizeof sel; i++)
            len += (size_t)snprintf(sel + len, sizeof sel - len, "%s%s", i > 2 ? "," : "", a->pos[i]);
        if (remote_campaign(a, target ? OTK_WANT_SWITCH : OTK_WANT_ROTATE, target, sel, 1000000, 0,
                            0, &o) != 0)
            return EXIT_FAIL;
        tot = cJSON_GetObjectItemCaseSensitive(o, "total");
        cid = cJSON_GetObjectItemCaseSensitive(o, "id");
        if (a->json) {
            cJSON *res = cJSON_CreateObject();
            cJSON_AddNumberToObject(res, "requested", cJSON_IsNumber(tot) ? tot->valuedouble : 0);
            cJSON_AddNumberToObject(res, "failed", 0);
            cJSON_AddNumberToObject(res, "campaign", cJSON_IsNumber(cid) ? cid->valuedouble : 0);
            json_out(res);
        } else {
            printf("update requested for %.0f devices, 0 failed (campaign %.0f)\n",
                   cJSON_IsNumber(tot) ? tot->valuedouble : 0, cJSON_IsNumber(cid) ? cid->valuedouble : 0);
        }
        cJSON_Delete(o);
        return 0;
    }
    if ((rc = open_db(a, &c, &r)) != 0)
        return rc;
    memset(&cfg, 0, sizeof cfg);
    cfg.n_clouds = 1;
    cfg.clouds[0].cloud_id = (uint32_t)(target ? target : 1);
    cfg.claim_cloud = cfg.clouds[0].cloud_id;
    otk_store_bind(r, &reg);
    if (otk_agent_init(&agent, &c, &reg, &none, &cfg) != OTK_OK)
        return EXIT_FAIL;
    if (a->all) {
        update_all u;
        memset(&u, 0, sizeof u); /* the id list starts empty (n, cap, ids) */
        u.agent = &agent;
        u.store = r;
        u.want = target ? OTK_WANT_SWITCH : OTK_WANT_ROTATE;
        u.target = (uint32_t)target;
        u.done = u.failed = 0;
        /* The ids first: requests write to the store the walk reads. */
        if (otk_store_list_devices(r, NULL, OTK_DS_ACTIVE, collect_id, &u) != OTK_OK)
            failed++;
        for (i = 0; i < u.n; i++)
            request_one(&u, u.ids + 16 * (size_t)i);
        free(u.ids);
        done += u.done;
        failed += u.failed;
    }
    for (i = 2; i < a->npos; i++) {
        otk_status st;
        (void)otk_hex_decode(a->pos[i], id, 16);
        st = otk_agent_request_update(&agent, id, target ? OTK_WANT_SWITCH : OTK_WANT_ROTATE,
                                      (uint32_t)target, out, sizeof out, &n);
        if (st != OTK_OK) {
            fprintf(stderr, "otakey: %s: %s\n", a->pos[i], otk_strerror(st));
            failed++;
        } else {
            done++;
        }
    }
    if (a->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "requested", done);
        cJSON_AddNumberToObject(o, "failed", failed);
        json_out(o);
    } else {
        printf("update requested for %d devices, %d failed\n", done, failed);
    }
    otk_store_close(r);
    otk_crypto_openssl_free(&c);
    return failed ? EXIT_FAIL : 0;
}

/*
 * The CLI's clouds for a revocation: dynamic-security clouds it reaches
 * itself; password-file clouds belong to the running agent (it would write
 * a deletion made here back), so their deletions are left to it, as are
 * those of a dynsec cloud the CLI cannot reach.
 */
typedef struct revoke_clouds {
    const otk_agentd_config *cfg;
    otk_dynsec *ds;
    otk_cloud_adapter dsa;
} revoke_clouds;

static otk_status revoke_create(void *ctx, const uint8_t id[16], const otk_cloud *c)
{
    (void)ctx;
    (void)id;
    (void)c;
    return OTK_ERR_CLOUD;
}

static otk_status revoke_remove(void *ctx, uint32_t cloud_id, const char *user)
{
    revoke_clouds *rc = ctx;
    size_t i;
    for (i = 0; i < rc->cfg->n_clouds; i++)
        if (rc->cfg->clouds[i].cloud_id == cloud_id && rc->cfg->cloud_type[i] == OTK_CLOUD_DYNSEC &&
            rc->ds != NULL)
            return rc->dsa.remove(rc->dsa.ctx, cloud_id, user);
    return OTK_ERR_CLOUD; /* left to the agent */
}

static int want_of(void *user, const otk_device_info *d)
{
    *(int *)user = d->want;
    return 0;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmd_device_revoke(args *a)
{
    otk_agentd_config cfg;
    otk_crypto c;
    otk_store *r = NULL;
    otk_agent agent;
    otk_agent_config ac;
    otk_registry reg;
    otk_cloud_adapter cloud = {NULL, revoke_create, revoke_remove, NULL, NULL};
    revoke_clouds rc;
    uint8_t id[16];
    char err[512], *end = NULL;
    otk_status st;
    size_t i;
    int n_ds = 0, want = OTK_WANT_CLEANUP;
    double wait_s = 10, t0;
    if (a->config == NULL)
        return usage_error("%s", "--config AGENT.ini is required (to reach the clouds)");
    if (a->npos != 3 || otk_hex_decode(a->pos[2], id, 16) != 0)
        return usage_error("%s", "device revoke needs one device ID (32 hex digits)");
    if (a->wait != NULL && ((wait_s = strtod(a->wait, &end)) < 0 || wait_s > 3600 || *end))
        return usage_error("--wait '%s' is not a number of seconds in [0, 3600]", a->wait);
    if (otk_agentd_config_load(a->config, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "otakey: %s\n", err);
        return EXIT_USAGE;
    }
    a->db = cfg.database;
    if (open_db(a, &c, &r) != 0)
        return EXIT_FAIL;
    memset(&rc, 0, sizeof rc);
    rc.cfg = &cfg;
    for (i = 0; i < cfg.n_clouds; i++)
        if (cfg.cloud_type[i] == OTK_CLOUD_DYNSEC)
            cfg.admin[n_ds++] = cfg.admin[i];
    if (n_ds && otk_dynsec_open(cfg.admin, (size_t)n_ds, 5000, &rc.ds, err, sizeof err) != OTK_OK)
        fprintf(stderr, "otakey: %s; the running agent deletes the credentials there\n", err);
    if (rc.ds)
        otk_dynsec_adapter(rc.ds, &rc.dsa);
    cloud.ctx = &rc;
    memset(&ac, 0, sizeof ac);
    memcpy(ac.clouds, cfg.clouds, sizeof ac.clouds);
    ac.n_clouds = cfg.n_clouds;
    ac.claim_cloud = cfg.claim_cloud;
    ac.claim_cloud_v1 = cfg.claim_cloud_v1;
    otk_store_bind(r, &reg);
    st = otk_agent_init(&agent, &c, &reg, &cloud, &ac);
    /* Refused from here on (the registry says REVOKED), whatever the clouds do. */
    if (st == OTK_OK)
        st = otk_agent_revoke(&agent, id);
    if (otk_store_release(r) != OTK_OK && st == OTK_OK)
        st = OTK_ERR_STORAGE;
    if (st != OTK_OK && st != OTK_ERR_CLOUD) {
        fprintf(stderr, "otakey: revoke %s: %s\n", a->pos[2], otk_strerror(st));
        goto out;
    }
    printf("revoked %s: its AK is refused from now on\n", a->pos[2]);
    if (st == OTK_OK) {
        printf("its cloud credentials are deleted\n");
        goto out;
    }
    /* The rest is the running agent's: wait until it reports it done. */
    t0 = mono_s();
    while (want == OTK_WANT_CLEANUP && mono_s() - t0 < wait_s) {
        struct timespec pause = {0, 50000000L};
        if (otk_store_list_devices(r, id, 0, want_of, &want) != OTK_OK)
            break;
        if (want == OTK_WANT_CLEANUP)
            nanosleep(&pause, NULL);
    }
    if (want != OTK_WANT_CLEANUP) {
        printf("its cloud credentials are deleted (by the running agent, %.1f s)\n",
               mono_s() - t0);
        st = OTK_OK;
    } else {
        fprintf(stderr,
                "otakey: revoke %s: the agent has not deleted its cloud credentials%s; is "
                "otakey-agent running? It deletes them as soon as it runs\n",
                a->pos[2], wait_s > 0 ? " in time" : " yet (--wait 0)");
    }
out:
    otk_dynsec_close(rc.ds);
    otk_store_close(r);
    otk_crypto_openssl_free(&c);
    return st == OTK_OK ? 0 : EXIT_FAIL;
}

static int cmd_allow_reclaim(args *a)
{
    otk_crypto c;
    otk_store *r;
    otk_agent agent;
    otk_agent_config cfg;
    otk_registry reg;
    otk_cloud_adapter none = {NULL, no_cloud_create, no_cloud_remove, NULL, NULL};
    uint8_t id[16];
    otk_status st;
    int rc;
    if (a->npos != 3 || otk_hex_decode(a->pos[2], id, 16) != 0)
        return usage_error("%s", "device allow-reclaim needs one device ID (32 hex digits)");
    if ((rc = open_db(a, &c, &r)) != 0)
        return rc;
    memset(&cfg, 0, sizeof cfg);
    cfg.n_clouds = 1;
    cfg.clouds[0].cloud_id = cfg.claim_cloud = 1;
    otk_store_bind(r, &reg);
    st = otk_agent_init(&agent, &c, &reg, &none, &cfg);
    if (st == OTK_OK)
        st = otk_agent_allow_reclaim(&agent, id);
    if (st != OTK_OK)
        fprintf(stderr, "otakey: allow-reclaim %s: %s\n", a->pos[2], otk_strerror(st));
    otk_store_close(r);
    otk_crypto_openssl_free(&c);
    return st == OTK_OK ? 0 : EXIT_FAIL;
}

static int cmd_audit_verify(args *a)
{
    otk_crypto c;
    otk_store *r;
    uint64_t rows = 0, bad = 0;
    otk_status st;
    int rc;
    if ((rc = open_db(a, &c, &r)) != 0)
        return rc;
    st = otk_store_audit_verify(r, &rows, &bad);
    if ((st == OTK_OK || st == OTK_ERR_CORRUPT) && a->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddBoolToObject(o, "ok", st == OTK_OK);
        cJSON_AddNumberToObject(o, st == OTK_OK ? "rows" : "first_bad_row",
                                (double)(st == OTK_OK ? rows : bad));
        json_out(o);
    } else if (st == OTK_OK)
        printf("audit log intact: %llu rows\n", (unsigned long long)rows);
    else if (st == OTK_ERR_CORRUPT)
        printf("audit log TAMPERED: row %llu does not verify\n", (unsigned long long)bad);
    else
        fprintf(stderr, "otakey: audit verify: %s\n", otk_strerror(st));
    otk_store_close(r);
    otk_crypto_openssl_free(&c);
    return st == OTK_OK ? 0 : st == OTK_ERR_CORRUPT ? EXIT_TAMPERED : EXIT_FAIL;
}

static int parse_count(const char *s, const char *opt, long lo, long hi, long *out)
{
    char *end;
    long v;
    if (s == NULL)
        return 0;
    v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "otakey: %s '%s' must be a number in [%ld, %ld]\n", opt, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int cmd_campaign_start(args *a)
{
    otk_crypto c;
    otk_store *r;
    static char selector[65536];
    long rate = 100, canary = 0, target = 0, max_failures = 0;
    int64_t id;
    uint64_t total;
    otk_status st;
    int rc, nsel = a->all + (a->batch != NULL) + (a->devices != NULL);
    if (a->rotate == (a->switch_to != NULL))
        return usage_error("%s", "give exactly one of --rotate and --switch-to CLOUD");
    if (a->switch_to && parse_count(a->switch_to, "--switch-to", 1, 0x7fffffff, &target) != 0)
        return EXIT_USAGE;
    if (nsel != 1)
        return usage_error("%s", "give exactly one of --all, --batch HEX16, --devices ID,ID...");
    if (parse_count(a->rate, "--rate", 1, 1000000, &rate) != 0 ||
        parse_count(a->canary, "--canary", 0, 1000000000, &canary) != 0 ||
        parse_count(a->max_failures, "--max-failures", 0, 1000000000, &max_failures) != 0)
        return EXIT_USAGE;
    if (a->all)
        strcpy(selector, "all");
    else if (a->batch)
        snprintf(selector, sizeof selector, "batch:%s", a->batch);
    else if (strlen(a->devices) + 4 < sizeof selector)
        snprintf(selector, sizeof selector, "ids:%s", a->devices);
    else
        return usage_error("%s", "--devices lists too many ids (about 1900 at most); use --batch or --all");
    if (a->url) {
        cJSON *o = NULL;
        const cJSON *cid, *tot;
        if (remote_campaign(a, target ? OTK_WANT_SWITCH : OTK_WANT_ROTATE, target, selector, rate,
                            canary, max_failures, &o) != 0)
            return EXIT_FAIL;
        cid = cJSON_GetObjectItemCaseSensitive(o, "id");
        tot = cJSON_GetObjectItemCaseSensitive(o, "total");
        id = cJSON_IsNumber(cid) ? (int64_t)cid->valuedouble : 0;
        total = cJSON_IsNumber(tot) ? (uint64_t)tot->valuedouble : 0;
        cJSON_Delete(o);
        r = NULL;
        st = OTK_OK;
        goto report;
    }
    if ((rc = open_db(a, &c, &r)) != 0)
        return rc;
    st = otk_store_campaign_create(r, target ? OTK_WANT_SWITCH : OTK_WANT_ROTATE, (uint32_t)target,
                                   selector, (uint32_t)rate, (uint32_t)canary,
                                   (uint32_t)max_failures, &id, &total);
report:
    if (st == OTK_OK && a->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "campaign", (double)id);
        cJSON_AddNumberToObject(o, "devices", (double)total);
        json_out(o);
    } else if (st == OTK_OK)
        printf("campaign %lld started: %llu devices\n", (long long)id, (unsigned long long)total);
    else if (st == OTK_ERR_BAD_VALUE)
        fprintf(stderr, "otakey: the selection '%s' matches no active device, or does not parse\n",
                selector);
    else
        fprintf(stderr, "otakey: campaign start: %s\n", otk_strerror(st));
    if (r) {
        otk_store_close(r);
        otk_crypto_openssl_free(&c);
    }
    return st == OTK_OK ? 0 : EXIT_FAIL;
}

static cJSON *campaign_json(const otk_campaign_status *c)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "campaign", (double)c->id);
    cJSON_AddStringToObject(o, "kind", c->kind == OTK_WANT_SWITCH ? "switch" : "rotate");
    cJSON_AddNumberToObject(o, "target_cloud", c->target_cloud);
    cJSON_AddStringToObject(o, "selector", c->selector);
    cJSON_AddStringToObject(o, "state", otk_campaign_state_name(c->state));
    cJSON_AddNumberToObject(o, "total", (double)c->total);
    cJSON_AddNumberToObject(o, "started", (double)c->started);
    cJSON_AddNumberToObject(o, "done", (double)c->done);
    cJSON_AddNumberToObject(o, "failed", (double)c->failed);
    cJSON_AddNumberToObject(o, "max_failures", c->max_failures);
    if (otk_campaign_pause_name(c->pause_reason))
        cJSON_AddStringToObject(o, "pause_reason", otk_campaign_pause_name(c->pause_reason));
    else
        cJSON_AddNullToObject(o, "pause_reason");
    return o;
}

/* Why a device failed in a campaign (campaign.h). */
static const char *failure_reason(otk_status reason)
{
    switch (reason) {
    case OTK_ERR_REVOKED: return "revoked";
    case OTK_ERR_CLOUD: return "the cloud refused the new key set (the device aborted)";
    case OTK_ERR_BAD_VALUE: return "the target cloud is not configured on the agent";
    case OTK_ERR_BAD_STATE: return "withdrawn: the campaign was aborted";
    case OTK_ERR_NO_KEYSET: return "no committed key set";
    default: return otk_strerror(reason);
    }
}

typedef struct failure_out {
    cJSON *arr; /* --json */
    unsigned long n;
} failure_out;

static int print_failure(void *user, const uint8_t id[16], otk_status reason)
{
    failure_out *o = user;
    char hex[33];
    otk_hex_encode(id, 16, hex);
    if (o->arr) {
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "device", hex);
        cJSON_AddStringToObject(f, "code", otk_strerror(reason));
        cJSON_AddStringToObject(f, "reason", failure_reason(reason));
        cJSON_AddItemToArray(o->arr, f);
    } else if (o->n < 20) {
        printf("  failed %s: %s\n", hex, failure_reason(reason));
    } else if (o->n == 20) {
        printf("  (more failures: otakey campaign status --json)\n");
    }
    o->n++;
    return 0;
}

static void print_campaign(const otk_campaign_status *c, int json, int bar)
{
    if (json) {
        json_out(campaign_json(c));
        return;
    }
    if (bar) {
        char b[41];
        size_t i, fill = c->total ? (size_t)(40 * c->done / c->total) : 0;
        for (i = 0; i < 40; i++)
            b[i] = i < fill ? '#' : '.';
        b[40] = 0;
        printf("\rcampaign %lld [%s] %llu/%llu done, %llu failed, %s   ", (long long)c->id, b,
               (unsigned long long)c->done, (unsigned long long)c->total,
               (unsigned long long)c->failed, otk_campaign_state_name(c->state));
        fflush(stdout);
        return;
    }
    if (c->kind == OTK_WANT_SWITCH)
        printf("campaign %lld: switch to cloud %u", (long long)c->id, (unsigned)c->target_cloud);
    else
        printf("campaign %lld: rotate", (long long)c->id);
    printf(" over %s: %s", c->selector, otk_campaign_state_name(c->state));
    if (otk_campaign_pause_name(c->pause_reason))
        printf(" (%s)", otk_campaign_pause_name(c->pause_reason));
    printf(", %llu devices, %llu started, %llu done, %llu failed\n", (unsigned long long)c->total,
           (unsigned long long)c->started, (unsigned long long)c->done, (unsigned long long)c->failed);
}

/*
 * The last view of a campaign (not --watch, or it ended or paused): its line,
 * then its failures go to fo; with --json, the object they go in (the caller
 * prints it with json_out).
 */
static cJSON *last_view(const args *a, const otk_campaign_status *cs, int tty, failure_out *fo)
{
    cJSON *o = a->json ? campaign_json(cs) : NULL;
    fo->arr = o ? cJSON_AddArrayToObject(o, "failures") : NULL;
    fo->n = 0;
    if (!a->json)
        print_campaign(cs, 0, a->watch && tty);
    if (a->watch && tty)
        printf("\n");
    return o;
}

/* The campaign's final view: not watching, or it ended or paused. */
static int campaign_settled(const args *a, const otk_campaign_status *cs)
{
    return !a->watch || cs->state == OTK_CAMP_DONE || cs->state == OTK_CAMP_ABORTED ||
           cs->state == OTK_CAMP_PAUSED;
}

/* A list of campaigns: one JSON array (--json, printed by campaign_list_end), or a line each. */
static void campaign_list_add(args *a, const otk_campaign_status *cs)
{
    if (!a->json) {
        print_campaign(cs, 0, 0);
        return;
    }
    if (a->arr == NULL)
        a->arr = cJSON_CreateArray();
    cJSON_AddItemToArray(a->arr, campaign_json(cs));
}

static void campaign_list_end(args *a)
{
    if (a->json)
        json_out(a->arr ? a->arr : cJSON_CreateArray());
    a->arr = NULL;
}

static int cmd_campaign_status(args *a)
{
    otk_crypto c;
    otk_store *r;
    otk_campaign_status cs;
    int64_t ids[256];
    long id = 0;
    size_t n, i;
    int rc, tty = isatty(1) && !a->json;
    if (a->npos == 3 && parse_count(a->pos[2], "campaign ID", 1, 0x7fffffff, &id) != 0)
        return EXIT_USAGE;
    if (a->npos > 3)
        return usage_error("%s", "campaign status takes at most one ID");
    if ((rc = open_db(a, &c, &r)) != 0)
        return rc;
    rc = 0;
    if (id) {
        for (;;) {
            if (otk_store_campaign_get(r, id, &cs) != OTK_OK) {
                fprintf(stderr, "otakey: no campaign %ld\n", id);
                rc = EXIT_FAIL;
                break;
            }
            if (campaign_settled(a, &cs)) {
                /* The last view lists the failures, each with its reason. */
                failure_out fo;
                cJSON *o = last_view(a, &cs, tty, &fo);
                if (otk_store_campaign_failures(r, id, print_failure, &fo) != OTK_OK)
                    rc = EXIT_FAIL;
                if (o)
                    json_out(o);
                break;
            }
            print_campaign(&cs, a->json, a->watch && tty);
            nanosleep(&(struct timespec){0, 200000000L}, NULL);
        }
    } else {
        n = otk_store_campaign_list(r, ids, 256);
        for (i = 0; i < n; i++)
            if (otk_store_campaign_get(r, ids[i], &cs) == OTK_OK)
                campaign_list_add(a, &cs);
        campaign_list_end(a);
    }
    otk_store_close(r);
    otk_crypto_openssl_free(&c);
    return rc;
}

static int cmd_campaign_set(args *a, int state)
{
    otk_crypto c;
    otk_store *r;
    long id;
    otk_status st;
    int rc;
    if (a->npos != 3 || parse_count(a->pos[2], "campaign ID", 1, 0x7fffffff, &id) != 0)
        return usage_error("%s", "give one campaign ID");
    if ((rc = open_db(a, &c, &r)) != 0)
        return rc;
    st = otk_store_campaign_set_state(r, id, state);
    if (st == OTK_OK)
        printf("campaign %ld: %s\n", id, a->pos[1]);
    else
        fprintf(stderr, "otakey: campaign %ld: %s\n", id,
                st == OTK_ERR_BAD_STATE ? "already finished" : st == OTK_ERR_NOT_FOUND ? "no such campaign" : otk_strerror(st));
    otk_store_close(r);
    otk_crypto_openssl_free(&c);
    return st == OTK_OK ? 0 : EXIT_FAIL;
}

static const char *audit_kind(int k)
{
    static const char *names[] = {"?", "claim-issued", "claim-superseded", "claim-refused",
                                  "update-issued", "commit", "abort", "refused", "revoke",
                                  "reclaim-allowed", "cloud-cleanup", "update-requested",
                                  "product-created", "campaign"};
    return k > 0 && k < (int)(sizeof names / sizeof names[0]) ? names[k] : "?";
}

static int print_audit(void *user, const otk_audit_row *r)
{
    args *a = user;
    char dev[33] = "";
    /* a campaign's row carries its new state where others carry a status */
    const char *code = r->ev.kind == OTK_AUD_CAMPAIGN ? otk_campaign_state_name((int)r->ev.code)
                                                      : otk_strerror(r->ev.code);
    if (r->ev.has_id)
        otk_hex_encode(r->ev.id, 16, dev);
    if (a->json) {
        cJSON *o = json_list_item(a);
        cJSON_AddNumberToObject(o, "seq", (double)r->seq);
        cJSON_AddNumberToObject(o, "ts_ms", (double)r->ts_ms);
        cJSON_AddStringToObject(o, "event", audit_kind(r->ev.kind));
        cJSON_AddStringToObject(o, "message", otk_msg_name(r->ev.msg_type));
        cJSON_AddStringToObject(o, "device", dev);
        cJSON_AddNumberToObject(o, "version", r->ev.version);
        cJSON_AddStringToObject(o, "code", code);
        cJSON_AddStringToObject(o, "actor", r->actor);
    } else
        printf("%6llu %-17s %-11s %-32s v%-4lu %s%s%s\n", (unsigned long long)r->seq,
               audit_kind(r->ev.kind), r->ev.msg_type ? otk_msg_name(r->ev.msg_type) : "-",
               r->ev.has_id ? dev : "-", (unsigned long)r->ev.version, code,
               r->actor[0] ? " by " : "", r->actor);
    a->rows++;
    return 0;
}

static int cmd_audit_list(args *a)
{
    otk_crypto c;
    otk_store *r;
    otk_status st;
    int rc;
    if ((rc = open_db(a, &c, &r)) != 0)
        return rc;
    if (a->json)
        a->arr = cJSON_CreateArray();
    st = otk_store_audit_list(r, print_audit, a);
    if (a->json)
        json_out(a->arr);
    close_db(&c, r);
    return st == OTK_OK ? 0 : EXIT_FAIL;
}

/*
 * token create: a new API token for the agent's HTTP API. The file keeps
 * only its SHA-256 (docs/api.md); the token itself is printed once.
 */
static int cmd_token_create(args *a)
{
    char tok[65], hash[65], line[512], err[256];
    FILE *f;
    size_t nl;
    if (a->tokens == NULL || a->name == NULL || a->role == NULL)
        return usage_error("%s", "token create needs --tokens FILE --name NAME --role read|operator");
    if (strcmp(a->role, "read") && strcmp(a->role, "operator"))
        return usage_error("--role '%s': read or operator", a->role);
    nl = strspn(a->name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.");
    if (nl == 0 || nl != strlen(a->name) || nl > 48)
        return usage_error("--name '%s': 1 to 48 letters, digits, '-', '_' or '.'", a->name);
    if (access(a->tokens, F_OK) == 0) {
        if (otk_check_private_file(a->tokens, err, sizeof err) != 0) {
            fprintf(stderr, "otakey: %s\n", err);
            return EXIT_FAIL;
        }
        f = fopen(a->tokens, "r");
        while (f && fgets(line, sizeof line, f)) {
            size_t k = strcspn(line, " \t");
            if (k == nl && !strncmp(line, a->name, nl)) {
                fclose(f);
                fprintf(stderr, "otakey: %s already has a token named '%s'\n", a->tokens, a->name);
                return EXIT_FAIL;
            }
        }
        if (f)
            fclose(f);
        f = fopen(a->tokens, "a");
    } else {
        f = otk_create_secret_file(a->tokens, 1);
    }
    if (f == NULL) {
        fprintf(stderr, "otakey: %s: %s\n", a->tokens, strerror(errno));
        return EXIT_FAIL;
    }
    if (otk_api_token_new(tok) != 0 || otk_api_token_hash(tok, hash) != 0) {
        fclose(f);
        fprintf(stderr, "otakey: no randomness for a token\n");
        return EXIT_FAIL;
    }
    fprintf(f, "%s %s %s\n", a->name, a->role, hash);
    if (fclose(f) != 0) {
        fprintf(stderr, "otakey: %s: %s\n", a->tokens, strerror(errno));
        return EXIT_FAIL;
    }
    printf("%s\n", tok);
    fprintf(stderr, "otakey: token '%s' (%s) added to %s; it is shown once; the agent reads it at "
                    "its next start or SIGHUP\n", a->name, a->role, a->tokens);
    return 0;
}

/* ---- the same commands through the agent's HTTP API (--url) ---- */

#define IS(i, s) (a->npos > (i) && !strcmp(a->pos[i], s))

/* One call; NULL after printing why when it failed or the API refused it
 * (want: the status expected). */
static cJSON *remote(args *a, const char *what, const char *method, const char *path,
                     const cJSON *body, long want)
{
    long status = 0;
    cJSON *o = cli_api_call(&a->api, method, path, body, &status);
    if (o && status != want) {
        cli_api_error(what, o, status);
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* Walks a paged listing: GET path&after=CURSOR until next is null. */
static int remote_pages(args *a, const char *what, const char *path, const char *key,
                        int (*row)(args *a, const cJSON *item), const char *header)
{
    char p[512], cursor[40] = "";
    for (;;) {
        cJSON *o, *items, *next, *it;
        snprintf(p, sizeof p, "%s%s%s", path, cursor[0] ? "&after=" : "", cursor);
        if ((o = remote(a, what, "GET", p, NULL, 200)) == NULL)
            return EXIT_FAIL;
        if (header && !a->json && !cursor[0])
            fputs(header, stdout); /* once the API answered, as --db once the registry opened */
        items = cJSON_GetObjectItemCaseSensitive(o, key);
        cJSON_ArrayForEach(it, items) {
            if (row(a, it) != 0) {
                cJSON_Delete(o);
                fprintf(stderr, "otakey: %s: the API's answer does not parse\n", what);
                return EXIT_FAIL;
            }
        }
        next = cJSON_GetObjectItemCaseSensitive(o, "next");
        if (cJSON_IsString(next))
            snprintf(cursor, sizeof cursor, "%s", next->valuestring);
        else if (cJSON_IsNumber(next))
            snprintf(cursor, sizeof cursor, "%.0f", next->valuedouble);
        else
            cursor[0] = '\0';
        cJSON_Delete(o);
        if (!cursor[0])
            return 0;
    }
}

static int device_row(args *a, const cJSON *it)
{
    otk_device_info d;
    return cli_api_device(it, &d) ? -1 : (print_device(a, &d), 0);
}

static int batch_row(args *a, const cJSON *it)
{
    otk_batch_info b;
    return cli_api_batch(it, &b) ? -1 : (print_batch(a, &b), 0);
}

static int audit_row(args *a, const cJSON *it)
{
    otk_audit_row r;
    return cli_api_audit(it, &r) ? -1 : (print_audit(a, &r), 0);
}

static int remote_product_create(args *a)
{
    uint8_t batch[8];
    cJSON *body, *o;
    const cJSON *pk;
    FILE *f;
    int rc = EXIT_FAIL;
    if (a->batch == NULL || otk_hex_decode(a->batch, batch, sizeof batch) != 0)
        return usage_error("%s", "--batch must be 16 hex digits (product id, batch number)");
    if (a->name == NULL || a->pk_out == NULL)
        return usage_error("%s", "--name and --pk-out are required");
    f = otk_create_secret_file(a->pk_out, 1); /* first: the PK comes back once */
    if (f == NULL) {
        fprintf(stderr, "otakey: cannot create '%s': %s%s\n", a->pk_out, strerror(errno),
                errno == EEXIST ? " (it must not exist yet)" : "");
        return EXIT_FAIL;
    }
    body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "batch", a->batch);
    cJSON_AddStringToObject(body, "name", a->name);
    o = remote(a, "product create", "POST", "/v1/products", body, 201);
    cJSON_Delete(body);
    pk = cJSON_GetObjectItemCaseSensitive(o, "pk");
    if (cJSON_IsString(pk) && strlen(pk->valuestring) == 64) {
        fprintf(f, "%s\n", pk->valuestring);
        otk_wipe(pk->valuestring, 64);
        rc = 0;
    }
    if (fclose(f) != 0)
        rc = EXIT_FAIL;
    if (rc != 0)
        remove(a->pk_out);
    cJSON_Delete(o);
    return rc;
}

static int remote_list(args *a, const char *what, const char *path, const char *key,
                       int (*row)(args *a, const cJSON *item), const char *header)
{
    int rc;
    if (a->json)
        a->arr = cJSON_CreateArray();
    rc = remote_pages(a, what, path, key, row, header);
    if (a->json)
        json_out(a->arr);
    return rc;
}

static int remote_device_show(args *a)
{
    char p[64];
    uint8_t id[16];
    cJSON *o;
    long status = 0;
    int rc;
    if (a->npos != 3 || otk_hex_decode(a->pos[2], id, 16) != 0)
        return usage_error("%s", "device show needs one device ID (32 hex digits)");
    snprintf(p, sizeof p, "/v1/devices/%s", a->pos[2]);
    if ((o = cli_api_call(&a->api, "GET", p, NULL, &status)) == NULL)
        return EXIT_FAIL;
    if (a->json)
        a->arr = cJSON_CreateArray();
    else
        printf("%-32s %-8s %-7s %-5s %-7s %s\n", "DEVICE", "STATE", "VERSION", "CLOUD", "PENDING", "BATCH");
    if (status == 404) { /* as --db says it */
        if (a->json)
            json_out(a->arr);
        fprintf(stderr, "otakey: no device %s\n", a->pos[2]);
        cJSON_Delete(o);
        return EXIT_FAIL;
    }
    if (status != 200) {
        cli_api_error(a->pos[2], o, status);
        cJSON_Delete(a->json ? a->arr : NULL);
        cJSON_Delete(o);
        return EXIT_FAIL;
    }
    rc = device_row(a, o) ? EXIT_FAIL : 0;
    if (a->json)
        json_out(a->arr);
    cJSON_Delete(o);
    return rc;
}

static int remote_device_action(args *a, const char *action)
{
    char p[96];
    uint8_t id[16];
    cJSON *o;
    double wait_s = 10, t0;
    char *end = NULL;
    int cleaned = 0;
    if (a->npos != 3 || otk_hex_decode(a->pos[2], id, 16) != 0)
        return usage_error("device %s needs one device ID (32 hex digits)", action);
    if (a->wait != NULL && ((wait_s = strtod(a->wait, &end)) < 0 || wait_s > 3600 || *end))
        return usage_error("--wait '%s' is not a number of seconds in [0, 3600]", a->wait);
    snprintf(p, sizeof p, "/v1/devices/%s/%s", a->pos[2], action);
    if ((o = remote(a, a->pos[2], "POST", p, NULL, 200)) == NULL)
        return EXIT_FAIL;
    cJSON_Delete(o);
    if (strcmp(action, "revoke") != 0) {
        printf("%s may claim once more\n", a->pos[2]);
        return 0;
    }
    printf("revoked %s: its AK is refused from now on\n", a->pos[2]);
    /* The agent deletes its cloud credentials: wait until it reports it. */
    snprintf(p, sizeof p, "/v1/devices/%s", a->pos[2]);
    t0 = mono_s();
    do {
        const cJSON *w;
        if ((o = remote(a, a->pos[2], "GET", p, NULL, 200)) == NULL)
            return EXIT_FAIL;
        w = cJSON_GetObjectItemCaseSensitive(o, "want");
        cleaned = !(cJSON_IsString(w) && !strcmp(w->valuestring, "cleanup"));
        cJSON_Delete(o);
        if (!cleaned)
            nanosleep(&(struct timespec){0, 50000000L}, NULL);
    } while (!cleaned && mono_s() - t0 < wait_s);
    if (cleaned) {
        printf("its cloud credentials are deleted (by the agent, %.1f s)\n", mono_s() - t0);
        return 0;
    }
    fprintf(stderr, "otakey: revoke %s: the agent has not deleted its cloud credentials%s\n",
            a->pos[2], wait_s > 0 ? " in time (it still will)" : " yet (--wait 0)");
    return EXIT_FAIL;
}

/* A campaign through the API; *out (the answer) on success. */
static int remote_campaign(args *a, int want, long target, const char *selector, long rate,
                           long canary, long max_failures, cJSON **out)
{
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "kind", want == OTK_WANT_SWITCH ? "switch" : "rotate");
    if (want == OTK_WANT_SWITCH)
        cJSON_AddNumberToObject(body, "target_cloud", (double)target);
    cJSON_AddStringToObject(body, "selector", selector);
    cJSON_AddNumberToObject(body, "rate", (double)rate);
    cJSON_AddNumberToObject(body, "canary", (double)canary);
    cJSON_AddNumberToObject(body, "max_failures", (double)max_failures);
    *out = remote(a, "campaign start", "POST", "/v1/campaigns", body, 201);
    cJSON_Delete(body);
    return *out ? 0 : EXIT_FAIL;
}

static int remote_campaign_status(args *a, long id)
{
    char p[64];
    int tty = isatty(1) && !a->json;
    otk_campaign_status cs;
    if (id == 0) {
        cJSON *o = remote(a, "campaign status", "GET", "/v1/campaigns", NULL, 200), *it;
        if (o == NULL)
            return EXIT_FAIL;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(o, "campaigns"))
            if (cli_api_campaign(it, &cs) == 0)
                campaign_list_add(a, &cs);
        campaign_list_end(a);
        cJSON_Delete(o);
        return 0;
    }
    snprintf(p, sizeof p, "/v1/campaigns/%ld", id);
    for (;;) {
        cJSON *o = remote(a, "campaign status", "GET", p, NULL, 200), *it;
        if (o == NULL)
            return EXIT_FAIL;
        if (cli_api_campaign(o, &cs) != 0) {
            cJSON_Delete(o);
            fprintf(stderr, "otakey: campaign %ld: the API's answer does not parse\n", id);
            return EXIT_FAIL;
        }
        if (campaign_settled(a, &cs)) {
            failure_out fo;
            cJSON *out = last_view(a, &cs, tty, &fo);
            cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(o, "failures")) {
                const cJSON *dv = cJSON_GetObjectItemCaseSensitive(it, "device");
                const cJSON *rs = cJSON_GetObjectItemCaseSensitive(it, "reason");
                uint8_t dev[16];
                int k;
                if (!cJSON_IsString(dv) || !cJSON_IsString(rs) ||
                    otk_hex_decode(dv->valuestring, dev, 16) != 0)
                    continue;
                for (k = 0; k <= 40 && strcmp(otk_api_status_name(-k), rs->valuestring); k++)
                    ;
                (void)print_failure(&fo, dev, (otk_status)-k);
            }
            if (out)
                json_out(out);
            cJSON_Delete(o);
            return 0;
        }
        cJSON_Delete(o);
        print_campaign(&cs, a->json, a->watch && tty);
        nanosleep(&(struct timespec){0, 200000000L}, NULL);
    }
}

static int remote_campaign_set(args *a, const char *action)
{
    char p[96];
    long id;
    cJSON *o;
    if (a->npos != 3 || parse_count(a->pos[2], "campaign ID", 1, 0x7fffffff, &id) != 0)
        return usage_error("%s", "give one campaign ID");
    snprintf(p, sizeof p, "/v1/campaigns/%ld/%s", id, action);
    if ((o = remote(a, "campaign", "POST", p, NULL, 200)) == NULL)
        return EXIT_FAIL;
    cJSON_Delete(o);
    printf("campaign %ld: %s\n", id, a->pos[1]);
    return 0;
}

static int remote_audit_verify(args *a)
{
    cJSON *o = remote(a, "audit verify", "GET", "/v1/audit/verify", NULL, 200);
    const cJSON *ok, *rows, *bad;
    int good;
    if (o == NULL)
        return EXIT_FAIL;
    ok = cJSON_GetObjectItemCaseSensitive(o, "ok");
    rows = cJSON_GetObjectItemCaseSensitive(o, "rows");
    bad = cJSON_GetObjectItemCaseSensitive(o, "bad_seq");
    good = cJSON_IsTrue(ok);
    if (a->json) {
        cJSON *out = cJSON_CreateObject();
        cJSON_AddBoolToObject(out, "ok", good);
        cJSON_AddNumberToObject(out, good ? "rows" : "first_bad_row",
                                good ? (cJSON_IsNumber(rows) ? rows->valuedouble : 0)
                                     : (cJSON_IsNumber(bad) ? bad->valuedouble : 0));
        json_out(out);
    } else if (good) {
        printf("audit log intact: %.0f rows\n", cJSON_IsNumber(rows) ? rows->valuedouble : 0);
    } else {
        printf("audit log TAMPERED: row %.0f does not verify\n",
               cJSON_IsNumber(bad) ? bad->valuedouble : 0);
    }
    cJSON_Delete(o);
    return good ? 0 : EXIT_TAMPERED;
}

/* Commands through the API; -1 for one that has no API form. */
static int remote_command(args *a)
{
    if (a->db || a->config)
        return usage_error("%s", "--url goes through the agent's API: leave out --db and --config");
    if (cli_api_token(&a->api, a->token_file) != 0)
        return EXIT_USAGE;
    a->api.url = a->url;
    a->api.cafile = a->cafile ? a->cafile : getenv("OTAKEY_CAFILE");
    if (IS(0, "product") && IS(1, "create"))
        return remote_product_create(a);
    if (IS(0, "product") && IS(1, "list"))
        return remote_list(a, "product list", "/v1/products?", "products", batch_row,
                           "BATCH            PRODUCT                  DEVICES\n");
    if (IS(0, "device") && IS(1, "list"))
        return remote_list(a, "device list", "/v1/devices?limit=1000", "devices", device_row,
                           "DEVICE                           STATE    VERSION CLOUD PENDING BATCH\n");
    if (IS(0, "device") && IS(1, "show"))
        return remote_device_show(a);
    if (IS(0, "device") && (IS(1, "revoke") || IS(1, "allow-reclaim")))
        return remote_device_action(a, a->pos[1]);
    if (IS(0, "device") && IS(1, "update"))
        return cmd_device_update(a);
    if (IS(0, "campaign") && IS(1, "start"))
        return cmd_campaign_start(a);
    if (IS(0, "campaign") && IS(1, "status")) {
        long id = 0;
        if (a->npos == 3 && parse_count(a->pos[2], "campaign ID", 1, 0x7fffffff, &id) != 0)
            return EXIT_USAGE;
        if (a->npos > 3)
            return usage_error("%s", "campaign status takes at most one ID");
        return remote_campaign_status(a, id);
    }
    if (IS(0, "campaign") && (IS(1, "pause") || IS(1, "resume") || IS(1, "abort")))
        return remote_campaign_set(a, a->pos[1]);
    if (IS(0, "audit") && IS(1, "verify"))
        return remote_audit_verify(a);
    if (IS(0, "audit") && IS(1, "list"))
        return remote_list(a, "audit list", "/v1/audit?limit=1000", "rows", audit_row, NULL);
    return -1;
}

int main(int argc, char **argv)
{
    args a_, *a = &a_;
    int rc;
    memset(a, 0, sizeof *a);
    a->argc = argc;
    a->argv = argv;
    if (argc < 2) {
        fputs(help_text, stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("otakey %s\n", OTK_VERSION);
        return 0;
    }
    if ((rc = parse(a, 1)) != 0)
        return rc;
    if (a->help)
        return print_help(a);
    if (a->url == NULL && a->db == NULL && a->config == NULL && getenv("OTAKEY_URL") &&
        *getenv("OTAKEY_URL"))
        a->url = getenv("OTAKEY_URL");
    if (a->url && !(IS(0, "keygen") || (IS(0, "token") && IS(1, "create")))) {
        rc = remote_command(a);
        if (rc >= 0)
            return rc;
    }
    if (IS(0, "keygen"))
        return cmd_keygen(a);
    if (IS(0, "product") && IS(1, "create"))
        return cmd_product_create(a);
    if (IS(0, "product") && IS(1, "list"))
        return cmd_product_list(a);
    if (IS(0, "device") && IS(1, "list"))
        return cmd_device_list(a, 0);
    if (IS(0, "device") && IS(1, "show"))
        return cmd_device_list(a, 1);
    if (IS(0, "device") && IS(1, "update"))
        return cmd_device_update(a);
    if (IS(0, "device") && IS(1, "revoke"))
        return cmd_device_revoke(a);
    if (IS(0, "device") && IS(1, "allow-reclaim"))
        return cmd_allow_reclaim(a);
    if (IS(0, "campaign") && IS(1, "start"))
        return cmd_campaign_start(a);
    if (IS(0, "campaign") && IS(1, "status"))
        return cmd_campaign_status(a);
    if (IS(0, "campaign") && IS(1, "pause"))
        return cmd_campaign_set(a, OTK_CAMP_PAUSED);
    if (IS(0, "campaign") && IS(1, "resume"))
        return cmd_campaign_set(a, OTK_CAMP_RUNNING);
    if (IS(0, "campaign") && IS(1, "abort"))
        return cmd_campaign_set(a, OTK_CAMP_ABORTED);
    if (IS(0, "audit") && IS(1, "verify"))
        return cmd_audit_verify(a);
    if (IS(0, "audit") && IS(1, "list"))
        return cmd_audit_list(a);
    if (IS(0, "token") && IS(1, "create"))
        return cmd_token_create(a);
    return usage_error("unknown command '%s'", a->npos ? a->pos[0] : argv[1]);
}
