/*
 * SQLite registry: the protocol over it (claim, rotation, switch, an agent
 * restart mid-update), persistence across reopen, secrets at rest, the
 * hash-chained audit log and its verification after tampering, schema
 * versioning and unreadable files.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <sqlite3.h>

#include "check.h"
#include "world.h"

#include "otakey/sqlreg.h"

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
    {
        char err[200];
        CHECK_OK(otk_sqlreg_open(path, &w.agent_crypto, &w.sql, err, sizeof err));
        otk_sqlreg_bind(w.sql, &w.regif);
        CHECK(world_restart_agent(&w) == 0);
    }
    CHECK_OK(world_settle(&w, &d[2], STEPS));
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

int main(void)
{
    char wal[300], shm[300];
    snprintf(path, sizeof path, "/tmp/otk-test-registry-%d.db", (int)getpid());
    snprintf(wal, sizeof wal, "%s-wal", path);
    snprintf(shm, sizeof shm, "%s-shm", path);
    remove(path);
    test_protocol_on_sqlite();
    test_audit_tamper();
    remove(path);
    remove(wal);
    remove(shm);
    return CHECK_DONE();
}
