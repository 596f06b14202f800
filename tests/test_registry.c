/*
 * Registry stores. Without an argument: the SQLite store (the protocol over
 * it, persistence across reopen, secrets at rest, the hash-chained audit log
 * and its verification after tampering, schema versioning, unreadable
 * files) and the backend-generic suite. With a PostgreSQL conninfo
 * (tests/with_pg.sh gives one): the same generic suite on PostgreSQL, then
 * agents in several processes racing on one database (one claim answered
 * once, one audit chain, campaign steps and update offers taken once), and
 * tampering with the audit log.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "check.h"
#include "world.h"

#include "campaign_sql.h"
#include "sqlreg_internal.h"
#include "otakey/sqlreg.h"
#include "otakey/store.h"

#define STEPS 64

static char path[256];

/* Device and agent agree, and the device's credentials work on the cloud. */
static void check_agree(world *w, wdev *d, uint32_t cloud)
{
    otk_agent_device rec;
    otk_cloud c;
    CHECK(otk_device_state(&d->dev) == OTK_DEV_READY);
    CHECK_OK(world_record(w, d, &rec));
    CHECK(rec.has_committed && !rec.has_pending && rec.state == OTK_DS_ACTIVE);
    CHECK(rec.committed.version == otk_device_version(&d->dev, OTK_SET_ACTIVE));
    CHECK(rec.committed.cloud.cloud_id == cloud);
    CHECK_OK(otk_device_cloud(&d->dev, OTK_SET_ACTIVE, &c));
    CHECK(strcmp(c.user, rec.committed.cloud.user) == 0);
    CHECK(rec.committed.cloud.secret_len == 0); /* only its hash is stored */
    CHECK(otk_memcloud_connect(w->cloud, &c) == OTK_PROOF_OK);
}

/* 1 if the bytes occur in the file. */
static int file_contains(const char *file, const char *needle)
{
    static char buf[1 << 22];
    size_t n, k = strlen(needle), i;
    FILE *f = fopen(file, "rb");
    if (f == NULL)
        return 0;
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    for (i = 0; i + k <= n; i++)
        if (memcmp(buf + i, needle, k) == 0)
            return 1;
    return 0;
}

/* The one integer a query on the database at file returns; -1 on an error. */
static long long sql_int(const char *file, const char *q)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *s = NULL;
    long long v = -1;
    if (sqlite3_open(file, &h) == SQLITE_OK && sqlite3_prepare_v2(h, q, -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(h);
    return v;
}

static void test_protocol_on_sqlite(void)
{
    world w;
    wdev d[3];
    otk_cloud secret_v1, current;
    otk_agent_device rec;
    uint64_t rows, bad;
    int i;
    CHECK(world_init_sqlite(&w, 5, path) == 0);
    for (i = 0; i < 3; i++) {
        CHECK(wdev_init(&w, &d[i], (unsigned)i) == 0);
        CHECK_OK(wdev_boot(&w, &d[i]));
        CHECK_OK(world_settle(&w, &d[i], STEPS));
        check_agree(&w, &d[i], WORLD_CLOUD_A);
    }
    CHECK_OK(otk_device_cloud(&d[0].dev, OTK_SET_ACTIVE, &secret_v1));
    /* Rotation with an agent crash between the response and the confirm. */
    CHECK_OK(world_request(&w, &d[0], OTK_WANT_ROTATE, 0));
    CHECK(otk_device_state(&d[0].dev) == OTK_DEV_PROVE);
    CHECK(world_restart_agent(&w) == 0);
    CHECK_OK(world_settle(&w, &d[0], STEPS));
    check_agree(&w, &d[0], WORLD_CLOUD_A);
    CHECK(otk_device_version(&d[0].dev, OTK_SET_ACTIVE) == 2);
    /* Switch of another device; a clone refused and audited. */
    CHECK_OK(world_request(&w, &d[1], OTK_WANT_SWITCH, WORLD_CLOUD_B));
    CHECK_OK(world_settle(&w, &d[1], STEPS));
    check_agree(&w, &d[1], WORLD_CLOUD_B);
    {
        wdev clone;
        CHECK(wdev_init(&w, &clone, 2) == 0);
        CHECK_OK(wdev_boot(&w, &clone));
        CHECK_ST(world_settle(&w, &clone, 4), OTK_ERR_ALREADY_CLAIMED);
        wdev_free(&clone);
    }
    CHECK(otk_sqlreg_audit_count(w.sql, OTK_AUD_CLAIM_REFUSED) >= 1);
    CHECK(otk_sqlreg_audit_count(w.sql, OTK_AUD_COMMIT) == 5);
    CHECK_OK(otk_sqlreg_audit_verify(w.sql, &rows, &bad));
    CHECK(rows == otk_sqlreg_audit_count(w.sql, 0) && rows > 10);
    /* A pending update survives a reopen of the database. */
    CHECK_OK(world_request(&w, &d[2], OTK_WANT_ROTATE, 0));
    CHECK_OK(world_record(&w, &d[2], &rec));
    CHECK(rec.has_pending && rec.pending.version == 2);
    otk_sqlreg_close(w.sql);
    /* Its bulk (keys, certificate, response) is in a table of its own, not
     * in the device's row; a database of schema 10, where it was, migrates
     * with the pending set whole. */
    CHECK(sql_int(path, "SELECT count(*) FROM pending") == 1);
    CHECK(sql_int(path, "SELECT count(*) FROM pragma_table_info('devices') WHERE name = 'p_keyset'") == 0);
    {
        sqlite3 *h = NULL;
        CHECK(sqlite3_open(path, &h) == SQLITE_OK);
        CHECK(sqlite3_exec(h,
                           "ALTER TABLE devices ADD COLUMN p_keyset BLOB;"
                           "ALTER TABLE devices ADD COLUMN p_th BLOB;"
                           "ALTER TABLE devices ADD COLUMN p_resp BLOB;"
                           "UPDATE devices SET p_keyset = (SELECT keyset FROM pending p WHERE p.id = devices.id),"
                           " p_th = (SELECT th FROM pending p WHERE p.id = devices.id),"
                           " p_resp = (SELECT resp FROM pending p WHERE p.id = devices.id);"
                           "DROP TABLE pending;"
                           "UPDATE meta SET value = 10 WHERE key = 'schema_version'",
                           NULL, NULL, NULL) == SQLITE_OK);
        sqlite3_close(h);
    }
    {
        char err[200];
        otk_agent_device again;
        CHECK_OK(otk_sqlreg_open(path, &w.agent_crypto, &w.sql, err, sizeof err));
        if (w.sql == NULL) {
            fprintf(stderr, "schema 10 -> %d: %s\n", OTK_SQLREG_SCHEMA_VERSION, err);
            return;
        }
        otk_sqlreg_bind(w.sql, &w.regif);
        CHECK(world_restart_agent(&w) == 0);
        CHECK(sql_int(path, "SELECT value FROM meta WHERE key = 'schema_version'") == OTK_SQLREG_SCHEMA_VERSION);
        CHECK(sql_int(path, "SELECT count(*) FROM pending") == 1);
        CHECK_OK(world_record(&w, &d[2], &again));
        CHECK(again.has_pending && memcmp(&again, &rec, sizeof rec) == 0);
        otk_wipe(&again, sizeof again);
    }
    CHECK_OK(world_settle(&w, &d[2], STEPS));
    CHECK(sql_int(path, "SELECT count(*) FROM pending") == 0); /* committed: gone with the set */
    check_agree(&w, &d[2], WORLD_CLOUD_A);
    CHECK(otk_device_version(&d[2].dev, OTK_SET_ACTIVE) == 2);
    CHECK_OK(otk_device_cloud(&d[1].dev, OTK_SET_ACTIVE, &current));
    for (i = 0; i < 3; i++)
        wdev_free(&d[i]);
    otk_sqlreg_close(w.sql);
    w.sql = NULL;
    world_free(&w);
    /* At rest: a committed secret is not in the files, in any form we wrote. */
    CHECK(!file_contains(path, secret_v1.secret));
    CHECK(!file_contains(path, current.secret));
    CHECK(!file_contains(path, secret_v1.user)); /* retired: overwritten, not left in a free page */
    CHECK(file_contains(path, current.user));    /* (the scan itself works) */
}

static void test_audit_tamper(void)
{
    otk_crypto c;
    otk_sqlreg *r;
    sqlite3 *db;
    char err[200];
    uint64_t rows, bad;
    CHECK_OK(otk_crypto_openssl_init(&c, NULL, NULL));
    CHECK_OK(otk_sqlreg_open(path, &c, &r, err, sizeof err));
    CHECK_OK(otk_sqlreg_audit_verify(r, &rows, &bad));
    CHECK(rows > 10);
    /* Plain edits are refused by the append-only triggers... */
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "UPDATE audit SET code = 0 WHERE seq = 3", NULL, NULL, NULL) != SQLITE_OK);
    CHECK(sqlite3_exec(db, "DELETE FROM audit WHERE seq = 3", NULL, NULL, NULL) != SQLITE_OK);
    /* ...and one who drops them is caught by the chain. */
    CHECK(sqlite3_exec(db, "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;"
                           "UPDATE audit SET code = -18 WHERE seq = 4", NULL, NULL, NULL) == SQLITE_OK);
    CHECK_ST(otk_sqlreg_audit_verify(r, &rows, &bad), OTK_ERR_CORRUPT);
    CHECK(bad == 4 && rows == 3);
    CHECK(sqlite3_exec(db, "UPDATE audit SET code = (SELECT code FROM audit WHERE seq = 5)"
                           " WHERE seq = 4", NULL, NULL, NULL) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "DELETE FROM audit WHERE seq = 7", NULL, NULL, NULL) == SQLITE_OK);
    CHECK_ST(otk_sqlreg_audit_verify(r, &rows, &bad), OTK_ERR_CORRUPT);
    CHECK(bad == 4 || bad == 8);
    sqlite3_close(db);
    otk_sqlreg_close(r);

    /* A schema from the future, and a file that is no database. */
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "UPDATE meta SET value = 99 WHERE key = 'schema_version'", NULL, NULL,
                       NULL) == SQLITE_OK);
    sqlite3_close(db);
    err[0] = 0;
    CHECK_ST(otk_sqlreg_open(path, &c, &r, err, sizeof err), OTK_ERR_STORAGE);
    CHECK(r == NULL && strstr(err, "newer") != NULL);
    {
        FILE *f = fopen(path, "wb");
        CHECK(f != NULL);
        if (f) {
            fputs("this is not a database, but it is long enough to look like one.............", f);
            fclose(f);
        }
    }
    err[0] = 0;
    CHECK_ST(otk_sqlreg_open(path, &c, &r, err, sizeof err), OTK_ERR_STORAGE);
    CHECK(r == NULL && err[0] != 0);
    CHECK_ST(otk_sqlreg_open("/nonexistent-dir/x.db", &c, &r, err, sizeof err), OTK_ERR_STORAGE);
    otk_crypto_openssl_free(&c);
}


/* ---- backend-generic suite, over otk_store ---- */

static void nap_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}


/* A world whose agent runs over store st (its batch added there). */
static int world_on_store(world *w, otk_store *st, uint64_t seed)
{
    otk_status s;
    if (world_init(w, seed) != 0)
        return -1;
    s = otk_store_add_batch(st, w->batch, "store-test", w->pk);
    if (s != OTK_OK && s != OTK_ERR_BAD_STATE)
        return -1;
    otk_store_bind(st, &w->regif);
    return world_restart_agent(w);
}

/* The NOTIFY for a device, delivered, and the device run to READY. */
static otk_status notify_and_settle(world *w, otk_store *st, wdev *d)
{
    uint8_t msg[OTK_MSG_MAX_LEN], out[OTK_MSG_MAX_LEN];
    size_t n = 0, m = 0;
    otk_status s = otk_agent_notify(&w->agent, d->cfg.device_id, msg, sizeof msg, &n);
    if (otk_store_release(st) != OTK_OK)
        return OTK_ERR_STORAGE;
    if (s != OTK_OK)
        return s;
    s = otk_device_receive(&d->dev, msg, n, out, sizeof out, &m);
    if (s != OTK_OK)
        return s;
    if (m)
        world_up(w, d, out, m);
    return world_settle(w, d, STEPS);
}

static int one_info(void *user, const otk_device_info *d)
{
    *(otk_device_info *)user = *d;
    return 1;
}

static int count_dev(void *user, const otk_device_info *d)
{
    unsigned *n = user;
    (*n)++;
    return d->state == 0; /* never stops a valid walk */
}

static int count_batch(void *user, const otk_batch_info *b)
{
    unsigned *n = user;
    (*n)++;
    return strcmp(b->product, "store-test") != 0 && strcmp(b->product, "world") != 0;
}

typedef struct audit_seen {
    uint64_t rows, last_seq;
    int ordered;
} audit_seen;

static int see_audit(void *user, const otk_audit_row *r)
{
    audit_seen *a = user;
    if (r->seq != a->last_seq + 1)
        a->ordered = 0;
    a->last_seq = r->seq;
    a->rows++;
    return 0;
}

#define SUITE_DEVS 6

static void store_suite(const char *db)
{
    otk_crypto c;
    otk_store *st = NULL;
    world w;
    wdev d[SUITE_DEVS];
    otk_agent_device rec;
    otk_campaign_status cs;
    char err[256];
    uint64_t rows, bad, total;
    int64_t cid, ids[8];
    uint8_t due[16][16];
    unsigned n = 0, i;
    audit_seen seen = {0, 0, 1};
    CHECK_OK(otk_crypto_openssl_init(&c, NULL, NULL));
    CHECK_ST(otk_store_open("/nonexistent-dir/x.db", &c, 0, &st, err, sizeof err),
             OTK_ERR_NOT_FOUND);
    CHECK(st == NULL && strstr(err, "no registry") != NULL);
    CHECK_OK(otk_store_open(db, &c, 1, &st, err, sizeof err));
    if (st == NULL) {
        fprintf(stderr, "store %s: %s\n", db, err);
        otk_crypto_openssl_free(&c);
        return;
    }
    CHECK(world_on_store(&w, st, 11) == 0);
    CHECK_ST(otk_store_add_batch(st, w.batch, "again", w.pk), OTK_ERR_BAD_STATE);
    for (i = 0; i < SUITE_DEVS; i++) {
        CHECK(wdev_init(&w, &d[i], 100 + i) == 0);
        CHECK_OK(wdev_boot(&w, &d[i]));
        CHECK_OK(world_settle(&w, &d[i], STEPS));
        CHECK_OK(otk_store_release(st));
        CHECK_OK(world_record(&w, &d[i], &rec));
        CHECK(rec.state == OTK_DS_ACTIVE && rec.committed.version == 1 && !rec.has_pending);
        CHECK_OK(otk_store_release(st));
    }
    /* A rotation across an agent restart; a switch; a clone refused. */
    CHECK_OK(world_request(&w, &d[0], OTK_WANT_ROTATE, 0));
    CHECK(world_restart_agent(&w) == 0);
    CHECK_OK(world_settle(&w, &d[0], STEPS));
    CHECK(otk_device_version(&d[0].dev, OTK_SET_ACTIVE) == 2);
    CHECK_OK(world_request(&w, &d[1], OTK_WANT_SWITCH, WORLD_CLOUD_B));
    CHECK_OK(world_settle(&w, &d[1], STEPS));
    CHECK_OK(world_record(&w, &d[1], &rec));
    CHECK(rec.committed.cloud.cloud_id == WORLD_CLOUD_B && rec.committed.version == 2);
    CHECK_OK(otk_store_release(st));
    {
        wdev clone;
        CHECK(wdev_init(&w, &clone, 102) == 0);
        CHECK_OK(wdev_boot(&w, &clone));
        CHECK_ST(world_settle(&w, &clone, 4), OTK_ERR_ALREADY_CLAIMED);
        CHECK_OK(otk_store_release(st));
        wdev_free(&clone);
    }
    CHECK(otk_store_audit_count(st, OTK_AUD_CLAIM_ISSUED) == SUITE_DEVS);
    CHECK(otk_store_audit_count(st, OTK_AUD_COMMIT) == SUITE_DEVS + 2);
    CHECK(otk_store_audit_count(st, OTK_AUD_CLAIM_REFUSED) >= 1);
    CHECK_OK(otk_store_audit_verify(st, &rows, &bad));
    CHECK(rows == otk_store_audit_count(st, 0) && rows > 20);
    CHECK_OK(otk_store_audit_list(st, see_audit, &seen));
    CHECK(seen.rows == rows && seen.ordered);
    /* Listings. */
    CHECK_OK(otk_store_list_devices(st, NULL, 0, count_dev, &n));
    CHECK(n == SUITE_DEVS);
    n = 0;
    CHECK_OK(otk_store_list_devices(st, NULL, OTK_DS_PENDING, count_dev, &n));
    CHECK(n == 0);
    n = 0;
    CHECK_OK(otk_store_list_batches(st, count_batch, &n));
    CHECK(n == 1);
    n = 0;
    CHECK_OK(otk_store_list_devices(st, d[1].cfg.device_id, 0, count_dev, &n));
    CHECK(n == 1);
    /* A campaign: create, step, offers due once per resend period, done. */
    CHECK_ST(otk_store_campaign_create(st, OTK_WANT_ROTATE, 0, "ids:0011", 100, 0, 0, &cid, &total),
             OTK_ERR_BAD_VALUE);
    CHECK_ST(otk_store_campaign_create(st, OTK_WANT_ROTATE, 0, "batch:zz", 100, 0, 0, &cid, &total),
             OTK_ERR_BAD_VALUE);
    CHECK_OK(otk_store_campaign_create(st, OTK_WANT_ROTATE, 0, "all", 1000, 0, 0, &cid, &total));
    CHECK(total == SUITE_DEVS);
    CHECK(otk_store_campaign_list(st, ids, 8) == 1 && ids[0] == cid);
    for (i = 0; i < 50 && otk_store_campaign_step(st, &w.agent, NULL, 0, NULL) < SUITE_DEVS; i++) {
        CHECK_OK(otk_store_campaign_get(st, cid, &cs));
        if (cs.started == SUITE_DEVS)
            break;
        nap_ms(2);
    }
    CHECK_OK(otk_store_campaign_get(st, cid, &cs));
    CHECK(cs.started == SUITE_DEVS && cs.done == 0 && cs.state == OTK_CAMP_RUNNING);
    CHECK(otk_store_due_notifications(st, due, 16, 60000) == SUITE_DEVS);
    CHECK(otk_store_due_notifications(st, due, 16, 60000) == 0); /* marked: not again yet */
    {
        /* Offers the broker had no subscriber for (the devices sleep): the
         * next is due after the hold, not after the resend period. */
        uint8_t held[2][16];
        size_t k;
        memcpy(held[0], d[0].cfg.device_id, 16);
        memcpy(held[1], d[1].cfg.device_id, 16);
        /* Inside a group commit (SQLite: in its transaction),
         * kept by its commit. */
        CHECK_OK(otk_store_batch_begin(st));
        CHECK(otk_store_hold_offers(st, (const uint8_t(*)[16])held, 2, 50, 60000) == 2);
        CHECK(otk_store_hold_offers(st, (const uint8_t(*)[16])held, 2, 50, 60000) == 0);
        CHECK_OK(otk_store_batch_end(st));
        CHECK(otk_store_hold_offers(st, (const uint8_t(*)[16])held, 2, 50, 60000) == 0);
        nap_ms(80);
        n = otk_store_due_notifications(st, due, 16, 50);
        CHECK(n == SUITE_DEVS - 2);
        for (k = 0; k < n; k++)
            CHECK(memcmp(due[k], held[0], 16) != 0 && memcmp(due[k], held[1], 16) != 0);
        for (i = 0; i < SUITE_DEVS; i++)
            CHECK_OK(notify_and_settle(&w, st, &d[i]));
        /* Updated and committed: no offer pending, nothing to hold. */
        CHECK(otk_store_hold_offers(st, (const uint8_t(*)[16])held, 2, 50, 60000) == 0);
    }
    CHECK(otk_store_campaign_step(st, &w.agent, NULL, 0, NULL) == 0);
    CHECK_OK(otk_store_campaign_get(st, cid, &cs));
    CHECK(cs.done == SUITE_DEVS && cs.failed == 0 && cs.state == OTK_CAMP_DONE);
    CHECK_ST(otk_store_campaign_set_state(st, cid, OTK_CAMP_PAUSED), OTK_ERR_BAD_STATE);
    CHECK_ST(otk_store_campaign_get(st, cid + 1000, &cs), OTK_ERR_NOT_FOUND);
    CHECK(otk_device_version(&d[0].dev, OTK_SET_ACTIVE) == 3);
    CHECK(otk_device_version(&d[5].dev, OTK_SET_ACTIVE) == 2);
    {
        /* Offers made with the starts (SQLite; none on PostgreSQL): at most
         * max_offers a step, marked offered in the start's transaction, each
         * the NOTIFY the notify pass would send; the rest are left to it. */
        static otk_offer offers[SUITE_DEVS];
        int pg = strncmp(db, "postgres", 8) == 0;
        size_t n_off, offered = 0, k, started = 0;
        uint8_t out[OTK_MSG_MAX_LEN];
        CHECK_OK(otk_store_campaign_create(st, OTK_WANT_ROTATE, 0, "all", 1000, 0, 0, &cid, &total));
        for (i = 0; i < 50 && started < SUITE_DEVS; i++) {
            started += otk_store_campaign_step(st, &w.agent, offers + offered, 2, &n_off);
            CHECK(n_off <= 2 && (!pg || n_off == 0));
            offered += n_off;
            nap_ms(10); /* 10 more due a step: more than the offers' room */
        }
        CHECK(started == SUITE_DEVS);
        CHECK(pg ? offered == 0 : offered >= 2 && offered < SUITE_DEVS);
        n = otk_store_due_notifications(st, due, 16, 60000);
        CHECK(n == SUITE_DEVS - offered);
        for (k = 0; k < offered; k++) {
            size_t m = 0, j, nn = 0;
            uint8_t want[OTK_MSG_MAX_LEN];
            for (j = 0; j < n; j++) /* an offered device is not due again */
                CHECK(memcmp(due[j], offers[k].id, 16) != 0);
            CHECK_OK(otk_agent_notify(&w.agent, offers[k].id, want, sizeof want, &nn));
            CHECK_OK(otk_store_release(st));
            CHECK(nn == offers[k].len && memcmp(want, offers[k].msg, nn) == 0);
            for (j = 0; j < SUITE_DEVS; j++)
                if (memcmp(d[j].cfg.device_id, offers[k].id, 16) == 0)
                    break;
            CHECK(j < SUITE_DEVS);
            if (j == SUITE_DEVS)
                continue;
            CHECK_OK(otk_device_receive(&d[j].dev, offers[k].msg, offers[k].len, out, sizeof out,
                                        &m));
            CHECK(m > 0);
            if (m)
                world_up(&w, &d[j], out, m);
            CHECK_OK(world_settle(&w, &d[j], STEPS));
        }
        for (k = 0; k < n; k++)
            for (i = 0; i < SUITE_DEVS; i++)
                if (memcmp(d[i].cfg.device_id, due[k], 16) == 0)
                    CHECK_OK(notify_and_settle(&w, st, &d[i]));
        (void)otk_store_campaign_step(st, &w.agent, NULL, 0, NULL);
        CHECK_OK(otk_store_campaign_get(st, cid, &cs));
        CHECK(cs.done == SUITE_DEVS && cs.failed == 0 && cs.state == OTK_CAMP_DONE);
    }
    {
        /* A device already asked for the same update, and held asleep: a
         * campaign that starts it makes no offer, and the hold stands. */
        otk_offer offers[2];
        size_t n_off = 99;
        uint8_t held[1][16], out[OTK_MSG_MAX_LEN];
        char sel[40];
        size_t len = 0;
        memcpy(held[0], d[4].cfg.device_id, 16);
        CHECK_OK(otk_agent_request_update(&w.agent, held[0], OTK_WANT_ROTATE, 0, out, sizeof out,
                                          &len));
        CHECK_OK(otk_store_release(st));
        CHECK(len > 0);
        CHECK(otk_store_due_notifications(st, due, 16, 60000) == 1);
        CHECK(otk_store_hold_offers(st, (const uint8_t(*)[16])held, 1, 50, 60000) == 1);
        memcpy(sel, "ids:", 4);
        otk_hex_encode(held[0], 16, sel + 4);
        CHECK_OK(otk_store_campaign_create(st, OTK_WANT_ROTATE, 0, sel, 1000, 0, 0, &cid, &total));
        CHECK(otk_store_campaign_step(st, &w.agent, offers, 2, &n_off) == 1);
        CHECK(n_off == 0);
        nap_ms(80);
        CHECK(otk_store_due_notifications(st, due, 16, 50) == 0); /* still held */
        CHECK_OK(notify_and_settle(&w, st, &d[4]));
        (void)otk_store_campaign_step(st, &w.agent, NULL, 0, NULL);
        CHECK_OK(otk_store_campaign_get(st, cid, &cs));
        CHECK(cs.done == 1 && cs.state == OTK_CAMP_DONE);
    }
    /* Abort withdraws what is requested and not issued yet. */
    CHECK_OK(otk_store_campaign_create(st, OTK_WANT_ROTATE, 0, "all", 1, 0, 0, &cid, &total));
    CHECK(otk_store_campaign_step(st, &w.agent, NULL, 0, NULL) == 1);
    CHECK_OK(otk_store_campaign_set_state(st, cid, OTK_CAMP_ABORTED));
    CHECK_OK(otk_store_campaign_get(st, cid, &cs));
    CHECK(cs.state == OTK_CAMP_ABORTED && cs.started == 1 && cs.failed == 1);
    CHECK(otk_store_due_notifications(st, due, 16, 0) == 0);
    CHECK_OK(otk_store_audit_verify(st, &rows, &bad));
    {
        /* A device that polls while a campaign includes it and has not started it
         * is started by its poll, when the campaign's rate has a slot for it. */
        otk_device_info di;
        uint8_t *last = d[SUITE_DEVS - 1].cfg.device_id;
        CHECK(otk_store_campaign_poll(st, &w.agent, last) == 0); /* in no campaign */
        CHECK_OK(otk_store_campaign_create(st, OTK_WANT_ROTATE, 0, "all", 1, 0, 0, &cid, &total));
        CHECK(otk_store_campaign_step(st, &w.agent, NULL, 0, NULL) == 1); /* the first, at once */
        CHECK(otk_store_campaign_poll(st, &w.agent, last) == 0); /* no slot: 1 a second */
        nanosleep(&(struct timespec){1, 100000000L}, NULL);
        CHECK(otk_store_campaign_poll(st, &w.agent, last) == 1); /* the second slot */
        CHECK_OK(otk_store_release(st));
        CHECK(otk_store_campaign_poll(st, &w.agent, last) == 0); /* started already */
        CHECK(otk_store_campaign_poll(st, &w.agent, d[SUITE_DEVS - 2].cfg.device_id) == 0);
        CHECK(otk_store_campaign_step(st, &w.agent, NULL, 0, NULL) == 0); /* the slot was taken */
        CHECK_OK(otk_store_campaign_get(st, cid, &cs));
        CHECK(cs.started == 2);
        memset(&di, 0, sizeof di);
        CHECK_OK(otk_store_list_devices(st, last, 0, one_info, &di));
        CHECK(di.want == OTK_WANT_ROTATE);
        CHECK_OK(otk_store_campaign_set_state(st, cid, OTK_CAMP_ABORTED));
        CHECK_OK(otk_store_release(st));
    }
    {
        /* A revocation whose cloud deletion failed is refused at once and
         * stays due for the agents until its clients are gone. */
        otk_cloud vc;
        uint8_t cl[4][16];
        CHECK_OK(otk_device_cloud(&d[3].dev, OTK_SET_ACTIVE, &vc));
        otk_memcloud_fail(w.cloud, 1);
        CHECK_ST(otk_agent_revoke(&w.agent, d[3].cfg.device_id), OTK_ERR_CLOUD);
        CHECK_OK(otk_store_release(st));
        CHECK(otk_memcloud_connect(w.cloud, &vc) == OTK_PROOF_OK); /* not deleted yet */
        CHECK(otk_store_due_cleanups(st, cl, 4, 60000) == 1 &&
              memcmp(cl[0], d[3].cfg.device_id, 16) == 0);
        CHECK(otk_store_due_cleanups(st, cl, 4, 60000) == 0); /* marked: not again yet */
        CHECK_OK(otk_agent_cleanup(&w.agent, cl[0]));
        CHECK_OK(otk_store_release(st));
        CHECK(otk_memcloud_connect(w.cloud, &vc) == OTK_PROOF_REFUSED);
        CHECK(otk_store_due_cleanups(st, cl, 4, 0) == 0); /* done: never again */
        CHECK(otk_store_audit_count(st, OTK_AUD_REVOKE) == 1);
    }
    /* Everything survives a reopen. */
    otk_store_close(st);
    CHECK_OK(otk_store_open(db, &c, 0, &st, err, sizeof err));
    if (st) {
        otk_store_bind(st, &w.regif);
        CHECK(world_restart_agent(&w) == 0);
        CHECK_OK(world_request(&w, &d[2], OTK_WANT_ROTATE, 0));
        CHECK_OK(world_settle(&w, &d[2], STEPS));
        CHECK(otk_device_version(&d[2].dev, OTK_SET_ACTIVE) == 4);
        CHECK_OK(otk_store_audit_verify(st, &rows, &bad));
        CHECK(rows == otk_store_audit_count(st, 0));
        otk_store_close(st);
    }
    for (i = 0; i < SUITE_DEVS; i++)
        wdev_free(&d[i]);
    world_free(&w);
    otk_crypto_openssl_free(&c);
}

/* A canary campaign: the canaries first, the rest once every canary committed. */
#define CANARY_DEVS 5

static void store_canary(const char *db)
{
    otk_crypto c;
    otk_store *st = NULL;
    world w;
    wdev d[CANARY_DEVS];
    otk_campaign_status cs;
    uint8_t due[8][16];
    char err[256], sel[4 + CANARY_DEVS * 33 + 1], *p = sel;
    uint64_t total;
    int64_t cid;
    size_t n, k;
    int i, j;
    CHECK_OK(otk_crypto_openssl_init(&c, NULL, NULL));
    CHECK_OK(otk_store_open(db, &c, 1, &st, err, sizeof err));
    if (st == NULL)
        return;
    CHECK(world_on_store(&w, st, 11) == 0);
    p += sprintf(p, "ids:");
    for (i = 0; i < CANARY_DEVS; i++) {
        CHECK(wdev_init(&w, &d[i], 300 + (unsigned)i) == 0);
        CHECK_OK(wdev_boot(&w, &d[i]));
        CHECK_OK(world_settle(&w, &d[i], STEPS));
        CHECK_OK(otk_store_release(st));
        otk_hex_encode(d[i].cfg.device_id, 16, p);
        p += 32;
        *p++ = i + 1 < CANARY_DEVS ? ',' : '\0';
    }
    CHECK_OK(otk_store_campaign_create(st, OTK_WANT_ROTATE, 0, sel, 1000, 2, 0, &cid, &total));
    CHECK(total == CANARY_DEVS);
    nap_ms(20);
    for (j = 0; j < 3; j++) /* however often it steps, only the canaries start */
        (void)otk_store_campaign_step(st, &w.agent, NULL, 0, NULL);
    CHECK_OK(otk_store_campaign_get(st, cid, &cs));
    CHECK(cs.state == OTK_CAMP_CANARY && cs.started == 2 && cs.done == 0);
    for (j = 0; j < 2; j++) { /* the canaries, then everybody else */
        n = otk_store_due_notifications(st, due, 8, 60000);
        CHECK(n == (j == 0 ? 2u : CANARY_DEVS - 2u));
        for (k = 0; k < n; k++)
            for (i = 0; i < CANARY_DEVS; i++)
                if (!memcmp(due[k], d[i].cfg.device_id, 16))
                    CHECK_OK(notify_and_settle(&w, st, &d[i]));
        (void)otk_store_campaign_step(st, &w.agent, NULL, 0, NULL);
        CHECK_OK(otk_store_campaign_get(st, cid, &cs));
        CHECK(j == 1 || (cs.state == OTK_CAMP_RUNNING && cs.started == CANARY_DEVS && cs.done == 2));
    }
    (void)otk_store_campaign_step(st, &w.agent, NULL, 0, NULL);
    CHECK_OK(otk_store_campaign_get(st, cid, &cs));
    CHECK(cs.state == OTK_CAMP_DONE && cs.done == CANARY_DEVS && cs.failed == 0);
    for (i = 0; i < CANARY_DEVS; i++) {
        CHECK(otk_device_version(&d[i].dev, OTK_SET_ACTIVE) == 2);
        wdev_free(&d[i]);
    }
    world_free(&w);
    otk_store_close(st);
    otk_crypto_openssl_free(&c);
}

/* Campaign outcomes: recorded once decided, each failure with its reason. */
static otk_proof refuse_proof(void *ctx, const otk_cloud *c)
{
    (void)ctx;
    (void)c;
    return OTK_PROOF_REFUSED;
}

typedef struct failures {
    uint8_t id[4][16];
    otk_status reason[4];
    int n;
} failures;

static int add_failure(void *user, const uint8_t id[16], otk_status reason)
{
    failures *f = user;
    if (f->n < 4) {
        memcpy(f->id[f->n], id, 16);
        f->reason[f->n] = reason;
    }
    f->n++;
    return 0;
}

/* Steps until campaign cid leaves state (1.5 s at most: outcomes are counted once a second). */
static void step_until_not(otk_store *st, world *w, int64_t cid, int state, otk_campaign_status *cs)
{
    int i;
    for (i = 0; i < 40; i++) {
        (void)otk_store_campaign_step(st, &w->agent, NULL, 0, NULL);
        CHECK_OK(otk_store_campaign_get(st, cid, cs));
        if (cs->state != state)
            return;
        nap_ms(50);
    }
}

static void store_outcomes(const char *db)
{
    otk_crypto c;
    otk_store *st = NULL;
    world w;
    wdev d[3];
    otk_campaign_status cs;
    failures f;
    uint8_t due[8][16];
    char err[256], sel[4 + 3 * 33 + 1], one[4 + 33];
    uint64_t total;
    int64_t ca, cb, cc, cd;
    size_t n, k;
    int i;
    CHECK_OK(otk_crypto_openssl_init(&c, NULL, NULL));
    CHECK_OK(otk_store_open(db, &c, 1, &st, err, sizeof err));
    if (st == NULL)
        return;
    CHECK(world_on_store(&w, st, 11) == 0);
    strcpy(sel, "ids:");
    for (i = 0; i < 3; i++) {
        CHECK(wdev_init(&w, &d[i], 400 + (unsigned)i) == 0);
        CHECK_OK(wdev_boot(&w, &d[i]));
        CHECK_OK(world_settle(&w, &d[i], STEPS));
        CHECK_OK(otk_store_release(st));
        otk_hex_encode(d[i].cfg.device_id, 16, sel + strlen(sel));
        if (i < 2)
            strcat(sel, ",");
    }
    /* A: three rotations, the cloud refuses the third device's new set. */
    CHECK_OK(otk_store_campaign_create(st, OTK_WANT_ROTATE, 0, sel, 1000, 0, 0, &ca, &total));
    nap_ms(10);
    (void)otk_store_campaign_step(st, &w.agent, NULL, 0, NULL);
    n = otk_store_due_notifications(st, due, 8, 60000);
    CHECK(n == 3);
    for (k = 0; k < n; k++)
        for (i = 0; i < 3; i++)
            if (!memcmp(due[k], d[i].cfg.device_id, 16)) {
                w.prove = i == 2 ? refuse_proof : NULL;
                CHECK_OK(notify_and_settle(&w, st, &d[i]));
            }
    w.prove = NULL;
    step_until_not(st, &w, ca, OTK_CAMP_RUNNING, &cs);
    CHECK(cs.state == OTK_CAMP_DONE && cs.done == 2 && cs.failed == 1);
    memset(&f, 0, sizeof f);
    CHECK_OK(otk_store_campaign_failures(st, ca, add_failure, &f));
    CHECK(f.n == 1 && !memcmp(f.id[0], d[2].cfg.device_id, 16) && f.reason[0] == OTK_ERR_CLOUD);
    /* B moves the failed device on; A's outcome stays as it was decided. */
    snprintf(one, sizeof one, "ids:%.32s", sel + 4 + 2 * 33);
    CHECK_OK(otk_store_campaign_create(st, OTK_WANT_ROTATE, 0, one, 1000, 0, 0, &cb, &total));
    nap_ms(10);
    (void)otk_store_campaign_step(st, &w.agent, NULL, 0, NULL);
    CHECK_OK(notify_and_settle(&w, st, &d[2]));
    step_until_not(st, &w, cb, OTK_CAMP_RUNNING, &cs);
    CHECK(cs.state == OTK_CAMP_DONE && cs.done == 1 && cs.failed == 0);
    CHECK_OK(otk_store_campaign_get(st, ca, &cs));
    CHECK(cs.done == 2 && cs.failed == 1);
    /* C: a switch to a cloud the agent does not serve fails at once, with its reason. */
    snprintf(one, sizeof one, "ids:%.32s", sel + 4);
    CHECK_OK(otk_store_campaign_create(st, OTK_WANT_SWITCH, 9, one, 1000, 0, 0, &cc, &total));
    nap_ms(10);
    step_until_not(st, &w, cc, OTK_CAMP_RUNNING, &cs);
    CHECK(cs.state == OTK_CAMP_DONE && cs.done == 0 && cs.failed == 1);
    memset(&f, 0, sizeof f);
    CHECK_OK(otk_store_campaign_failures(st, cc, add_failure, &f));
    CHECK(f.n == 1 && f.reason[0] == OTK_ERR_BAD_VALUE);
    /* D: one device started, then revoked; the other withdrawn by an abort. */
    CHECK_OK(otk_store_campaign_create(st, OTK_WANT_ROTATE, 0, sel, 1, 0, 0, &cd, &total));
    (void)otk_store_campaign_step(st, &w.agent, NULL, 0, NULL); /* rate 1/s: one device now */
    CHECK_OK(otk_store_campaign_get(st, cd, &cs));
    CHECK(cs.started == 1);
    CHECK_OK(otk_store_campaign_set_state(st, cd, OTK_CAMP_ABORTED));
    CHECK_OK(otk_store_campaign_get(st, cd, &cs));
    CHECK(cs.state == OTK_CAMP_ABORTED && cs.failed == 1 && cs.done == 0);
    memset(&f, 0, sizeof f);
    CHECK_OK(otk_store_campaign_failures(st, cd, add_failure, &f));
    CHECK(f.n == 1 && f.reason[0] == OTK_ERR_BAD_STATE);
    CHECK_OK(otk_store_campaign_get(st, ca, &cs)); /* still as decided */
    CHECK(cs.done == 2 && cs.failed == 1);
    /* E: a switch campaign created and started while the device's rotation
     * is pending: the rotation's commit neither ends the campaign's request
     * nor counts as its outcome; the switch follows. */
    {
        otk_agent_device rec;
        int64_t ce;
        uint32_t v;
        CHECK_OK(world_request(&w, &d[1], OTK_WANT_ROTATE, 0));
        CHECK_OK(otk_store_release(st));
        CHECK(otk_device_state(&d[1].dev) == OTK_DEV_PROVE);
        CHECK_OK(world_record(&w, &d[1], &rec));
        CHECK(rec.has_pending && rec.want == OTK_WANT_NONE); /* issued: the request is answered */
        CHECK_OK(otk_store_release(st));
        v = rec.pending.version;
        snprintf(one, sizeof one, "ids:%.32s", sel + 4 + 33);
        CHECK_OK(otk_store_campaign_create(st, OTK_WANT_SWITCH, WORLD_CLOUD_B, one, 1000, 0, 0, &ce,
                                           &total));
        nap_ms(10);
        (void)otk_store_campaign_step(st, &w.agent, NULL, 0, NULL);
        CHECK_OK(world_settle(&w, &d[1], STEPS)); /* the rotation commits */
        CHECK_OK(otk_store_release(st));
        CHECK(otk_device_version(&d[1].dev, OTK_SET_ACTIVE) == v);
        CHECK_OK(world_record(&w, &d[1], &rec));
        CHECK(rec.want == OTK_WANT_SWITCH && rec.want_cloud == WORLD_CLOUD_B);
        CHECK_OK(otk_store_release(st));
        nap_ms(1100); /* past OUTCOME_MS: the step counts outcomes */
        (void)otk_store_campaign_step(st, &w.agent, NULL, 0, NULL);
        CHECK_OK(otk_store_campaign_get(st, ce, &cs));
        CHECK(cs.state == OTK_CAMP_RUNNING && cs.done == 0 && cs.failed == 0);
        CHECK(otk_store_due_notifications(st, due, 8, 0) == 1 && !memcmp(due[0], d[1].cfg.device_id, 16));
        CHECK_OK(notify_and_settle(&w, st, &d[1]));
        check_agree(&w, &d[1], WORLD_CLOUD_B);
        CHECK_OK(otk_store_release(st));
        CHECK(otk_device_version(&d[1].dev, OTK_SET_ACTIVE) == v + 1);
        step_until_not(st, &w, ce, OTK_CAMP_RUNNING, &cs);
        CHECK(cs.state == OTK_CAMP_DONE && cs.done == 1 && cs.failed == 0);
    }
    /* G: a campaign aborted while the request it made waits behind an older
     * pending set: the request is withdrawn (the device failed, withdrawn),
     * the older set still commits, and nothing follows it. */
    {
        otk_agent_device rec;
        int64_t cg;
        CHECK_OK(world_request(&w, &d[1], OTK_WANT_ROTATE, 0));
        CHECK_OK(otk_store_release(st));
        CHECK(otk_device_state(&d[1].dev) == OTK_DEV_PROVE);
        snprintf(one, sizeof one, "ids:%.32s", sel + 4 + 33);
        CHECK_OK(otk_store_campaign_create(st, OTK_WANT_SWITCH, WORLD_CLOUD_A, one, 1000, 0, 0, &cg,
                                           &total));
        nap_ms(10);
        (void)otk_store_campaign_step(st, &w.agent, NULL, 0, NULL);
        CHECK_OK(world_record(&w, &d[1], &rec));
        CHECK(rec.has_pending && rec.want == OTK_WANT_SWITCH);
        CHECK_OK(otk_store_release(st));
        CHECK_OK(otk_store_campaign_set_state(st, cg, OTK_CAMP_ABORTED));
        CHECK_OK(otk_store_campaign_get(st, cg, &cs));
        CHECK(cs.state == OTK_CAMP_ABORTED && cs.failed == 1 && cs.done == 0);
        memset(&f, 0, sizeof f);
        CHECK_OK(otk_store_campaign_failures(st, cg, add_failure, &f));
        CHECK(f.n == 1 && f.reason[0] == OTK_ERR_BAD_STATE);
        CHECK_OK(world_record(&w, &d[1], &rec));
        CHECK(rec.has_pending && rec.want == OTK_WANT_NONE);
        CHECK_OK(otk_store_release(st));
        CHECK_OK(world_settle(&w, &d[1], STEPS)); /* the older set commits */
        CHECK_OK(otk_store_release(st));
        CHECK(otk_store_due_notifications(st, due, 8, 0) == 0); /* nothing follows */
    }
    /* F (SQLite): the count of started devices kept with a campaign, lost
     * (a step cut short), is counted again, and the campaign ends. */
    if (otk_store_kind(st) == OTK_STORE_SQLITE) {
        sqlite3 *h = NULL;
        int64_t cf;
        snprintf(one, sizeof one, "ids:%.32s", sel + 4);
        CHECK_OK(otk_store_campaign_create(st, OTK_WANT_ROTATE, 0, one, 1000, 0, 0, &cf, &total));
        (void)otk_store_campaign_step(st, &w.agent, NULL, 0, NULL);
        CHECK_OK(otk_store_campaign_get(st, cf, &cs));
        CHECK(cs.started == 1);
        CHECK(sqlite3_open(db, &h) == SQLITE_OK &&
              sqlite3_exec(h, "UPDATE campaigns SET n_started = 0", NULL, NULL, NULL) == SQLITE_OK);
        sqlite3_close(h);
        CHECK_OK(otk_store_campaign_get(st, cf, &cs));
        CHECK(cs.started == 0);
        (void)otk_store_campaign_step(st, &w.agent, NULL, 0, NULL);
        CHECK_OK(otk_store_campaign_get(st, cf, &cs));
        CHECK(cs.started == 1);
        CHECK_OK(notify_and_settle(&w, st, &d[0]));
        step_until_not(st, &w, cf, OTK_CAMP_RUNNING, &cs);
        CHECK(cs.state == OTK_CAMP_DONE && cs.done == 1 && cs.failed == 0);
    }
    for (i = 0; i < 3; i++)
        wdev_free(&d[i]);
    world_free(&w);
    otk_store_close(st);
    otk_crypto_openssl_free(&c);
}

/* ---- PostgreSQL: agents in several processes on one database ---- */

#define RACERS 3
#define RACE_DEVS 12
#define RACE_AUDITS 150

typedef struct captured {
    uint8_t msg[RACE_DEVS][OTK_MSG_MAX_LEN];
    size_t len[RACE_DEVS];
    int n;
} captured;

static void grab_claim(void *ctx, int up, const uint8_t *msg, size_t len)
{
    captured *c = ctx;
    if (up && len > 1 && msg[1] == OTK_MSG_CLAIM && c->n < RACE_DEVS &&
        c->len[c->n] == 0 && len <= OTK_MSG_MAX_LEN) {
        memcpy(c->msg[c->n], msg, len);
        c->len[c->n] = len;
    }
}

static int full_write(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t k = write(fd, b, n);
        if (k <= 0)
            return -1;
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

static int full_read(int fd, void *p, size_t n)
{
    uint8_t *b = p;
    while (n) {
        ssize_t k = read(fd, b, n);
        if (k <= 0)
            return -1;
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

/*
 * One racing agent process: its own connection and agent core over w's
 * configuration; waits on go, then runs its phase and writes what it got
 * to out. Never returns.
 */
static void racer(const char *db, world *w, const captured *cap, int phase, int go, int out)
{
    otk_store *st = NULL;
    otk_registry reg;
    otk_agent ag;
    char err[256], b;
    int i, code = 1;
    if (otk_store_open(db, &w->agent_crypto, 0, &st, err, sizeof err) != OTK_OK)
        _exit(3);
    otk_store_bind(st, &reg);
    if (otk_agent_init(&ag, &w->agent_crypto, &reg, &w->cloudif, &w->cfg) != OTK_OK ||
        read(go, &b, 1) != 1)
        _exit(4);
    if (phase == 0) { /* the same claims, handled by every racer at once */
        for (i = 0; i < cap->n; i++) {
            uint8_t reply[OTK_MSG_MAX_LEN];
            size_t n = 0;
            uint16_t n16;
            otk_status s = otk_agent_handle(&ag, cap->msg[i], cap->len[i], reply, sizeof reply, &n);
            if (otk_store_release(st) != OTK_OK || s != OTK_OK)
                n = 0;
            n16 = (uint16_t)n;
            if (full_write(out, &n16, 2) != 0 || full_write(out, reply, n) != 0)
                _exit(5);
        }
        code = 0;
    } else if (phase == 1) { /* audit appends */
        otk_audit ev;
        memset(&ev, 0, sizeof ev);
        ev.kind = OTK_AUD_REFUSED;
        for (i = 0; i < RACE_AUDITS; i++) {
            ev.version = (uint32_t)i;
            if (reg.audit(reg.ctx, &ev) != OTK_OK)
                _exit(6);
        }
        code = 0;
    } else { /* campaign steps and update offers */
        uint8_t ids[RACE_DEVS][16];
        uint32_t got = 0;
        for (i = 0; i < 400; i++) {
            size_t k, n;
            (void)otk_store_campaign_step(st, &ag, NULL, 0, NULL);
            n = otk_store_due_notifications(st, ids, RACE_DEVS, 600000);
            for (k = 0; k < n; k++)
                if (full_write(out, ids[k], 16) != 0)
                    _exit(7);
            got += (uint32_t)n;
            nap_ms(1);
        }
        (void)got;
        code = 0;
    }
    otk_store_close(st);
    _exit(code);
}

/* Runs RACERS racers of a phase; fills replies (phase 0) or offers (phase 2). */
static void race(const char *db, world *w, const captured *cap, int phase,
                 uint8_t (*buf)[RACE_DEVS][OTK_MSG_MAX_LEN], size_t (*lens)[RACE_DEVS],
                 uint8_t (*offers)[16], size_t *n_offers)
{
    int go[2], outp[RACERS][2], r, status, i;
    pid_t pid[RACERS];
    CHECK(pipe(go) == 0);
    for (r = 0; r < RACERS; r++) {
        CHECK(pipe(outp[r]) == 0);
        fflush(NULL);
        pid[r] = fork();
        if (pid[r] == 0) {
            close(go[1]);
            close(outp[r][0]);
            racer(db, w, cap, phase, go[0], outp[r][1]);
        }
        close(outp[r][1]);
    }
    close(go[0]);
    {
        char start[RACERS];
        memset(start, 'g', sizeof start);
        CHECK(full_write(go[1], start, sizeof start) == 0);
    }
    close(go[1]);
    for (r = 0; r < RACERS; r++) {
        if (phase == 0)
            for (i = 0; i < cap->n; i++) {
                uint16_t n16 = 0;
                CHECK(full_read(outp[r][0], &n16, 2) == 0 && n16 <= OTK_MSG_MAX_LEN);
                lens[r][i] = n16;
                CHECK(full_read(outp[r][0], buf[r][i], n16) == 0);
            }
        if (phase == 2)
            while (*n_offers < 4 * RACE_DEVS && full_read(outp[r][0], offers[*n_offers], 16) == 0)
                (*n_offers)++;
        close(outp[r][0]);
    }
    for (r = 0; r < RACERS; r++) {
        CHECK(waitpid(pid[r], &status, 0) == pid[r]);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
}

static void store_races(const char *db)
{
    static captured cap;
    static uint8_t replies[RACERS][RACE_DEVS][OTK_MSG_MAX_LEN];
    static size_t lens[RACERS][RACE_DEVS];
    uint8_t offers[4 * RACE_DEVS][16];
    size_t n_offers = 0;
    otk_crypto c;
    otk_store *st = NULL;
    world w, gen;
    wdev d[RACE_DEVS];
    otk_campaign_status cs;
    char err[256];
    uint64_t rows, bad, audits, requested, total;
    int64_t cid;
    int i, j, r;
    CHECK_OK(otk_crypto_openssl_init(&c, NULL, NULL));
    CHECK_OK(otk_store_open(db, &c, 0, &st, err, sizeof err));
    if (st == NULL)
        return;
    CHECK(world_on_store(&w, st, 11) == 0); /* the suite's batch key */
    /* Claims made by devices of an identical world (same batch key, same
     * agent key) over a memory registry: valid claims the store never saw. */
    memset(&cap, 0, sizeof cap);
    CHECK(world_init(&gen, 11) == 0);
    gen.tap = grab_claim;
    gen.tap_ctx = &cap;
    for (i = 0; i < RACE_DEVS; i++) {
        wdev g;
        CHECK(wdev_init(&gen, &g, 500 + (unsigned)i) == 0);
        CHECK_OK(wdev_boot(&gen, &g));
        CHECK_OK(world_settle(&gen, &g, STEPS));
        CHECK(cap.len[cap.n] > 0);
        cap.n++;
        wdev_free(&g);
    }
    world_free(&gen);
    audits = otk_store_audit_count(st, OTK_AUD_CLAIM_ISSUED);
    race(db, &w, &cap, 0, replies, lens, NULL, NULL);
    /* Each claim issued once; every racer gave its device the same answer. */
    CHECK(otk_store_audit_count(st, OTK_AUD_CLAIM_ISSUED) == audits + RACE_DEVS);
    for (i = 0; i < cap.n; i++)
        for (r = 0; r < RACERS; r++)
            CHECK(lens[r][i] > 0 && lens[r][i] == lens[0][i] &&
                  memcmp(replies[r][i], replies[0][i], lens[0][i]) == 0);
    /* One audit chain under concurrent appends. */
    audits = otk_store_audit_count(st, 0);
    race(db, &w, &cap, 1, NULL, NULL, NULL, NULL);
    CHECK_OK(otk_store_audit_verify(st, &rows, &bad));
    CHECK(rows == audits + RACERS * RACE_AUDITS && rows == otk_store_audit_count(st, 0));
    /* Campaign steps and offers: active devices, one campaign, racers. */
    for (i = 0; i < RACE_DEVS; i++) {
        CHECK(wdev_init(&w, &d[i], 700 + (unsigned)i) == 0);
        CHECK_OK(wdev_boot(&w, &d[i]));
        CHECK_OK(world_settle(&w, &d[i], STEPS));
        CHECK_OK(otk_store_release(st));
    }
    {
        char sel[4 + RACE_DEVS * 33 + 1], *p = sel;
        p += sprintf(p, "ids:");
        for (i = 0; i < RACE_DEVS; i++) {
            otk_hex_encode(d[i].cfg.device_id, 16, p);
            p += 32;
            *p++ = i + 1 < RACE_DEVS ? ',' : '\0';
        }
        CHECK_OK(otk_store_campaign_create(st, OTK_WANT_ROTATE, 0, sel, 400, 0, 0, &cid, &total));
        CHECK(total == RACE_DEVS);
    }
    requested = otk_store_audit_count(st, OTK_AUD_UPDATE_REQUESTED);
    race(db, &w, &cap, 2, NULL, NULL, offers, &n_offers);
    CHECK_OK(otk_store_campaign_get(st, cid, &cs));
    CHECK(cs.started == RACE_DEVS);
    CHECK(otk_store_audit_count(st, OTK_AUD_UPDATE_REQUESTED) == requested + RACE_DEVS);
    CHECK(n_offers == RACE_DEVS); /* each offer taken by one racer, once */
    for (i = 0; i < (int)n_offers; i++)
        for (j = i + 1; j < (int)n_offers; j++)
            CHECK(memcmp(offers[i], offers[j], 16) != 0);
    /* The devices finish the rotation through this agent. */
    for (i = 0; i < RACE_DEVS; i++) {
        CHECK_OK(notify_and_settle(&w, st, &d[i]));
        CHECK(otk_device_version(&d[i].dev, OTK_SET_ACTIVE) == 2);
    }
    (void)otk_store_campaign_step(st, &w.agent, NULL, 0, NULL);
    CHECK_OK(otk_store_campaign_get(st, cid, &cs));
    CHECK(cs.done == RACE_DEVS && cs.failed == 0 && cs.state == OTK_CAMP_DONE);
    CHECK_OK(otk_store_audit_verify(st, &rows, &bad));
    /* The lock is per device: a second connection (giving up on a lock
     * after 1 s) reads another device at once but waits for this one. */
    {
        otk_store *st2 = NULL;
        otk_registry reg1, reg2;
        otk_agent_device rec;
        char url[512];
        snprintf(url, sizeof url, "%s%soptions=-c%%20lock_timeout%%3D1000", db,
                 strchr(db, '?') ? "&" : "?");
        CHECK_OK(otk_store_open(url, &c, 0, &st2, err, sizeof err));
        if (st2) {
            otk_store_bind(st, &reg1);
            otk_store_bind(st2, &reg2);
            CHECK_OK(reg1.get_device(reg1.ctx, d[0].cfg.device_id, &rec));
            for (i = 1; i < RACE_DEVS; i++)
                CHECK_OK(reg2.get_device(reg2.ctx, d[i].cfg.device_id, &rec));
            CHECK_ST(reg2.get_device(reg2.ctx, d[0].cfg.device_id, &rec), OTK_ERR_STORAGE);
            CHECK_ST(otk_store_release(st2), OTK_OK);
            CHECK_OK(otk_store_release(st));
            CHECK_OK(reg2.get_device(reg2.ctx, d[0].cfg.device_id, &rec));
            CHECK(rec.committed.version == 2);
            otk_store_close(st2);
        }
    }
    for (i = 0; i < RACE_DEVS; i++)
        wdev_free(&d[i]);
    world_free(&w);
    otk_store_close(st);
    otk_crypto_openssl_free(&c);
}

/* Tampering with the audit log on PostgreSQL, through psql. */
static int psql(const char *db, const char *sql)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "psql -q -X -v ON_ERROR_STOP=1 '%s' -c \"%s\" >/dev/null 2>&1", db, sql);
    return system(cmd);
}

/*
 * The server drops the agent's connection (a restart, a failover): the call
 * that finds it gone fails with STORAGE and changes nothing; the next one
 * connects again (statements prepared anew) and works.
 */
static void store_pg_reconnect(const char *db)
{
    otk_crypto c;
    otk_store *st = NULL;
    world w;
    wdev d;
    otk_agent_device rec;
    char err[256], url[512];
    uint64_t rows, bad, before;
    otk_status s;
    int i;
    CHECK_OK(otk_crypto_openssl_init(&c, NULL, NULL));
    snprintf(url, sizeof url, "%s%sapplication_name=otk-reconnect", db, strchr(db, '?') ? "&" : "?");
    CHECK_OK(otk_store_open(url, &c, 0, &st, err, sizeof err));
    if (st == NULL)
        return;
    CHECK(world_on_store(&w, st, 11) == 0);
    CHECK(wdev_init(&w, &d, 900) == 0);
    CHECK_OK(wdev_boot(&w, &d));
    CHECK_OK(world_settle(&w, &d, STEPS));
    CHECK_OK(otk_store_release(st));
    before = otk_store_audit_count(st, 0);
    CHECK(psql(db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                   " WHERE application_name = 'otk-reconnect'") == 0);
    /* Up to two calls fail (the one that finds the socket closed, and a
     * release of what it left); then it works again. */
    nap_ms(300); /* the server ends the backend asynchronously */
    for (i = 0, s = OTK_ERR_STORAGE; i < 3 && s != OTK_OK; i++) {
        s = world_record(&w, &d, &rec);
        if (s == OTK_OK)
            break;
        CHECK_ST(s, OTK_ERR_STORAGE);
        if (otk_store_release(st) != OTK_OK)
            continue; /* the release may find the connection gone too */
    }
    CHECK_OK(s);
    CHECK(i >= 1); /* the loss was seen, then recovered from */
    CHECK(rec.committed.version == 1);
    CHECK_OK(otk_store_release(st));
    CHECK_OK(world_request(&w, &d, OTK_WANT_ROTATE, 0));
    CHECK_OK(world_settle(&w, &d, STEPS));
    CHECK(otk_device_version(&d.dev, OTK_SET_ACTIVE) == 2);
    CHECK_OK(otk_store_audit_verify(st, &rows, &bad));
    CHECK(rows > before);
    wdev_free(&d);
    world_free(&w);
    otk_store_close(st);
    otk_crypto_openssl_free(&c);
}

static void store_pg_tamper(const char *db)
{
    otk_crypto c;
    otk_store *st = NULL;
    char err[256];
    uint64_t rows, bad, n;
    CHECK_OK(otk_crypto_openssl_init(&c, NULL, NULL));
    CHECK_OK(otk_store_open(db, &c, 0, &st, err, sizeof err));
    if (st == NULL)
        return;
    CHECK_OK(otk_store_audit_verify(st, &rows, &bad));
    n = rows;
    /* Plain edits are refused by the triggers... */
    CHECK(psql(db, "UPDATE audit SET code = 0 WHERE seq = 3") != 0);
    CHECK(psql(db, "DELETE FROM audit WHERE seq = 3") != 0);
    CHECK(psql(db, "TRUNCATE audit") != 0);
    /* ...a version issued twice by the unique index... */
    CHECK(psql(db, "INSERT INTO audit SELECT seq + 1000000, ts, kind, msg_type, device, version,"
                   " code, hash FROM audit WHERE kind = 1 LIMIT 1") != 0);
    /* ...an issued version going back by the device trigger... */
    CHECK(psql(db, "UPDATE devices SET issued = 0") != 0);
    /* ...and one who disables the triggers is caught by the chain. */
    CHECK(psql(db, "ALTER TABLE audit DISABLE TRIGGER USER;"
                   " UPDATE audit SET code = -18 WHERE seq = 4") == 0);
    CHECK_ST(otk_store_audit_verify(st, &rows, &bad), OTK_ERR_CORRUPT);
    CHECK(bad == 4 && rows == 3);
    CHECK(psql(db, "UPDATE audit SET code = (SELECT code FROM audit WHERE seq = 5) WHERE seq = 4;"
                   " DELETE FROM audit WHERE seq = (SELECT max(seq) FROM audit)") == 0);
    CHECK_ST(otk_store_audit_verify(st, &rows, &bad), OTK_ERR_CORRUPT);
    CHECK(bad == 4 || bad == n);
    /* A schema from the future is refused with a message. */
    CHECK(psql(db, "UPDATE otk_meta SET value = 99") == 0);
    otk_store_close(st);
    st = NULL;
    err[0] = 0;
    CHECK_ST(otk_store_open(db, &c, 0, &st, err, sizeof err), OTK_ERR_STORAGE);
    CHECK(st == NULL && strstr(err, "newer") != NULL);
    CHECK_ST(otk_store_open("postgresql://nobody@127.0.0.1:1/none", &c, 0, &st, err, sizeof err),
             OTK_ERR_STORAGE);
    CHECK(st == NULL && strstr(err, "cannot connect") != NULL);
    otk_crypto_openssl_free(&c);
}

/* Whether the plan of sql on the database at file has a step naming want. */
static int plan_has(const char *file, const char *sql, const char *want)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *s = NULL;
    char q[4096];
    int found = 0;
    snprintf(q, sizeof q, "EXPLAIN QUERY PLAN %s", sql);
    if (sqlite3_open(file, &h) == SQLITE_OK && sqlite3_prepare_v2(h, q, -1, &s, NULL) == SQLITE_OK)
        while (sqlite3_step(s) == SQLITE_ROW)
            if (strstr((const char *)sqlite3_column_text(s, 3), want) != NULL)
                found = 1;
    sqlite3_finalize(s);
    sqlite3_close(h);
    return found;
}

/* A campaign's outcome pass looks up the devices audited since the last
 * one by the primary key, and walks none of the campaign's devices in
 * flight (an index on started or finished): before and after ANALYZE. */
/* Kept statements (otk_sqlreg_prep): one in use is not handed out twice,
 * a given-back one is reset and kept, more texts than the table holds are
 * prepared and finalized apart; the registry closes with none left open. */
static void test_kept_statements(void)
{
    static const char *const one = "SELECT ?1 + 1";
    static char many[40][32];
    sqlite3_stmt *a, *b, *c, *v[40];
    otk_crypto cr;
    otk_sqlreg *r;
    char err[200];
    int i;
    CHECK_OK(otk_crypto_openssl_init(&cr, NULL, NULL));
    CHECK_OK(otk_sqlreg_open(path, &cr, &r, err, sizeof err));
    a = otk_sqlreg_prep(r, one);
    b = otk_sqlreg_prep(r, one); /* a is in use: another */
    CHECK(a != NULL && b != NULL && a != b);
    CHECK(sqlite3_bind_int(a, 1, 41) == SQLITE_OK && sqlite3_step(a) == SQLITE_ROW &&
          sqlite3_column_int(a, 0) == 42);
    otk_sqlreg_fin(r, a);
    otk_sqlreg_fin(r, b);
    c = otk_sqlreg_prep(r, one); /* given back: the same, reset, its binding cleared */
    CHECK(c == a || c == b);
    CHECK(sqlite3_step(c) == SQLITE_ROW && sqlite3_column_type(c, 0) == SQLITE_NULL);
    otk_sqlreg_fin(r, c);
    for (i = 0; i < 40; i++) {
        snprintf(many[i], sizeof many[i], "SELECT %d", i);
        v[i] = otk_sqlreg_prep(r, many[i]);
        CHECK(v[i] != NULL && sqlite3_step(v[i]) == SQLITE_ROW && sqlite3_column_int(v[i], 0) == i);
    }
    for (i = 0; i < 40; i++)
        otk_sqlreg_fin(r, v[i]);
    CHECK(otk_sqlreg_prep(r, "SELECT no_such_column FROM meta") == NULL);
    otk_sqlreg_close(r);
    otk_crypto_openssl_free(&cr);
}

/*
 * The audit chain across group commits: inside a batch the last row is
 * kept rather than looked up, so a row another process appends between
 * two batches (the CLI's, on its own connection) must be seen by the next
 * one: the chain verifies, every row counted, in order.
 */
static void test_batch_audit(void)
{
    otk_crypto cr;
    otk_sqlreg *r, *other;
    otk_registry reg, oreg;
    otk_audit ev;
    char err[200];
    uint64_t rows = 0, bad = 0, before = 0;
    int b, i;
    CHECK_OK(otk_crypto_openssl_init(&cr, NULL, NULL));
    CHECK_OK(otk_sqlreg_open(path, &cr, &r, err, sizeof err));
    CHECK_OK(otk_sqlreg_open(path, &cr, &other, err, sizeof err));
    otk_sqlreg_bind(r, &reg);
    otk_sqlreg_bind(other, &oreg);
    CHECK_OK(otk_sqlreg_audit_verify(r, &before, &bad));
    memset(&ev, 0, sizeof ev);
    ev.kind = OTK_AUD_REFUSED;
    ev.has_id = 1;
    for (b = 0; b < 3; b++) {
        CHECK_OK(otk_sqlreg_batch_begin(r));
        for (i = 0; i < 5; i++) {
            ev.id[0] = (uint8_t)(16 * b + i);
            ev.version = (uint32_t)i;
            CHECK_OK(reg.audit(reg.ctx, &ev));
        }
        CHECK_OK(otk_sqlreg_batch_end(r));
        ev.id[0] = 0xee;
        CHECK_OK(oreg.audit(oreg.ctx, &ev)); /* between batches, from elsewhere */
    }
    CHECK_OK(otk_sqlreg_audit_verify(r, &rows, &bad));
    CHECK(rows == before + 3 * 6);
    CHECK(otk_sqlreg_audit_count(r, OTK_AUD_REFUSED) >= 18);
    {
        /* A write that fails inside a batch fails the batch: its later
         * writes are refused and its end rolls all of it back (the rows
         * written before the failure included); the next batch works. */
        sqlite3 *h = otk_sqlreg_handle(r);
        uint64_t n0 = otk_sqlreg_audit_count(r, OTK_AUD_REFUSED);
        CHECK(sqlite3_exec(h,
                           "CREATE TEMP TRIGGER fail_one BEFORE INSERT ON audit WHEN NEW.version = 77"
                           " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
                           NULL, NULL, NULL) == SQLITE_OK);
        CHECK_OK(otk_sqlreg_batch_begin(r));
        ev.version = 1;
        CHECK_OK(reg.audit(reg.ctx, &ev));
        ev.version = 77;
        CHECK_ST(reg.audit(reg.ctx, &ev), OTK_ERR_STORAGE);
        ev.version = 2;
        CHECK_ST(reg.audit(reg.ctx, &ev), OTK_ERR_STORAGE);
        CHECK_ST(otk_sqlreg_batch_end(r), OTK_ERR_STORAGE);
        CHECK(otk_sqlreg_audit_count(r, OTK_AUD_REFUSED) == n0);
        CHECK(sqlite3_exec(h, "DROP TRIGGER temp.fail_one", NULL, NULL, NULL) == SQLITE_OK);
        CHECK_OK(otk_sqlreg_batch_begin(r));
        ev.version = 3;
        CHECK_OK(reg.audit(reg.ctx, &ev));
        CHECK_OK(otk_sqlreg_batch_end(r));
        CHECK(otk_sqlreg_audit_count(r, OTK_AUD_REFUSED) == n0 + 1);
        CHECK_OK(otk_sqlreg_audit_verify(r, &rows, &bad));
        CHECK(bad == 0);
    }
    {
        /* A device's savepoint journal stays in memory (2 = MEMORY): never a
         * file in /var/tmp holding page images of pending keys. */
        sqlite3_stmt *s = NULL;
        CHECK(sqlite3_prepare_v2(otk_sqlreg_handle(r), "PRAGMA temp_store", -1, &s, NULL) == SQLITE_OK);
        CHECK(sqlite3_step(s) == SQLITE_ROW && sqlite3_column_int(s, 0) == 2);
        sqlite3_finalize(s);
        /* One thread at a time per connection: no mutex of its own, and no
         * global memory count (SQLite reports none used). */
        CHECK(sqlite3_db_mutex(otk_sqlreg_handle(r)) == NULL);
        CHECK(sqlite3_memory_used() == 0);
    }
    otk_sqlreg_close(other);
    otk_sqlreg_close(r);
    otk_crypto_openssl_free(&cr);
}

static void test_settle_plan(void)
{
    int pass;
    for (pass = 0; pass < 2; pass++) {
        CHECK(plan_has(path, OTK_SETTLE_SQL,
                       "sqlite_autoindex_campaign_devices_1 (campaign=? AND device=?)"));
        CHECK(!plan_has(path, OTK_SETTLE_SQL, "campaign_devices_finished"));
        CHECK(!plan_has(path, OTK_SETTLE_SQL, "campaign_devices_started"));
        CHECK(!plan_has(path, OTK_SETTLE_SQL, "campaign_devices_inflight"));
        /* The completion test: a probe, not a walk of the decided ones. */
        CHECK(plan_has(path, OTK_UNDECIDED_SQL, "campaign_devices_finished (campaign=? AND finished=?)"));
        CHECK(sql_int(path, "SELECT count(*) FROM campaign_devices") > 0);
        if (pass == 0) { /* statistics for the planner */
            sqlite3 *h = NULL;
            CHECK(sqlite3_open(path, &h) == SQLITE_OK &&
                  sqlite3_exec(h, "ANALYZE", NULL, NULL, NULL) == SQLITE_OK);
            sqlite3_close(h);
            CHECK(sql_int(path, "SELECT count(*) FROM sqlite_stat1") > 0);
        }
    }
}

int main(int argc, char **argv)
{
    char wal[300], shm[300];
    if (argc > 1) { /* a PostgreSQL database, fresh */
        store_suite(argv[1]);
        store_canary(argv[1]);
        store_outcomes(argv[1]);
        store_races(argv[1]);
        store_pg_reconnect(argv[1]);
        store_pg_tamper(argv[1]);
        return CHECK_DONE();
    }
    snprintf(path, sizeof path, "/tmp/otk-test-registry-%d.db", (int)getpid());
    snprintf(wal, sizeof wal, "%s-wal", path);
    snprintf(shm, sizeof shm, "%s-shm", path);
    remove(path);
    test_protocol_on_sqlite();
    test_audit_tamper();
    remove(path);
    remove(wal);
    remove(shm);
    store_suite(path);
    store_canary(path);
    remove(path);
    remove(wal);
    remove(shm);
    store_outcomes(path);
    test_settle_plan();
    test_kept_statements();
    test_batch_audit();
    remove(path);
    remove(wal);
    remove(shm);
    return CHECK_DONE();
}
