/*
 * SQLite registry (include/otakey/sqlreg.h). One row per device, one per
 * batch, and the hash-chained audit log; every put_device writes the
 * device row and its audit row in one IMMEDIATE transaction.
 */
#include "../internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "otakey/sqlreg.h"
#include "sqlreg_internal.h"
#include "store_internal.h"

/* Schema migrations: index i brings a database from version i to i + 1. */
static const char *const migrations[] = {
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    "CREATE TABLE batches(batch_id BLOB PRIMARY KEY, product TEXT NOT NULL, pk BLOB NOT NULL,"
    "  created INTEGER NOT NULL);"
    "CREATE TABLE devices(id BLOB PRIMARY KEY, batch_id BLOB NOT NULL, state INTEGER NOT NULL,"
    "  reclaim INTEGER NOT NULL, issued INTEGER NOT NULL, want INTEGER NOT NULL,"
    "  want_cloud INTEGER NOT NULL,"
    "  c_version INTEGER, c_ak BLOB, c_cloud INTEGER, c_host TEXT, c_port INTEGER,"
    "  c_flags INTEGER, c_user TEXT, c_secret_hash BLOB,"
    "  p_version INTEGER, p_claim INTEGER, p_keyset BLOB, p_th BLOB, p_resp BLOB,"
    "  stale_cloud INTEGER, stale_user TEXT, updated INTEGER NOT NULL);"
    "CREATE INDEX devices_batch ON devices(batch_id);"
    "CREATE TABLE audit(seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL, kind INTEGER NOT NULL,"
    "  msg_type INTEGER NOT NULL, device BLOB, version INTEGER NOT NULL, code INTEGER NOT NULL,"
    "  hash BLOB NOT NULL);"
    "CREATE INDEX audit_device ON audit(device);"
    "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit"
    "  BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;"
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"
    "  BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;",
    /* 2: when the agent last sent a NOTIFY for the requested update. */
    "ALTER TABLE devices ADD COLUMN notified_at INTEGER;"
    "CREATE INDEX devices_want ON devices(want) WHERE want != 0;",
    /* 3: campaigns and their devices. */
    "CREATE TABLE campaigns(id INTEGER PRIMARY KEY, kind INTEGER NOT NULL,"
    "  target_cloud INTEGER NOT NULL, selector TEXT NOT NULL, rate INTEGER NOT NULL,"
    "  canary INTEGER NOT NULL, state INTEGER NOT NULL, total INTEGER NOT NULL,"
    "  created INTEGER NOT NULL);"
    "CREATE TABLE campaign_devices(campaign INTEGER NOT NULL, device BLOB NOT NULL,"
    "  base_version INTEGER NOT NULL, started INTEGER, PRIMARY KEY(campaign, device));",
    /* 4: indexes for the engine's ticks, so that a tick costs what is due,
     * not the size of the fleet. */
    "CREATE INDEX devices_due ON devices(notified_at) WHERE state = 2"
    " AND ((want != 0 AND p_version IS NULL) OR (p_version IS NOT NULL AND p_claim = 0));"
    "CREATE INDEX campaign_devices_started ON campaign_devices(campaign, started);",
    /* 5: a device's outcome in a campaign is recorded once decided (1 done,
     * 2 failed, with the reason: an otk_status) and never recomputed. */
    "ALTER TABLE campaign_devices ADD COLUMN finished INTEGER;"
    "ALTER TABLE campaign_devices ADD COLUMN reason INTEGER;"
    "CREATE INDEX campaign_devices_inflight ON campaign_devices(campaign)"
    " WHERE started IS NOT NULL AND finished IS NULL;",
    /* 6: protocol version 2 (docs/protocol.md §11): the version a device
     * authenticated with, the kinds of its sets, the key a pending
     * certificate is for and its serial (the certificate itself is in p_keyset). */
    "ALTER TABLE devices ADD COLUMN proto INTEGER;"
    "ALTER TABLE devices ADD COLUMN c_kind INTEGER;"
    "ALTER TABLE devices ADD COLUMN p_kind INTEGER;"
    "ALTER TABLE devices ADD COLUMN p_dpub BLOB;"
    "ALTER TABLE devices ADD COLUMN p_serial TEXT;",
    /* 7: who an operator's audit row acts for (part of its hash); campaigns
     * that pause themselves on failures, and why a campaign is paused. */
    "ALTER TABLE audit ADD COLUMN actor TEXT;"
    "ALTER TABLE campaigns ADD COLUMN max_failures INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE campaigns ADD COLUMN pause_reason INTEGER;"
    "ALTER TABLE campaigns ADD COLUMN failures_base INTEGER NOT NULL DEFAULT 0;",
    /* 8: a polling device's campaign, found by the device (otk_campaign_poll). */
    "CREATE INDEX campaign_devices_todo ON campaign_devices(device) WHERE started IS NULL;",
    /* 9: a request is answered (want 0) when its set is issued, no longer
     * when it is committed, so that one made while a set is pending stays;
     * the requests of sets pending now were answered. */
    "UPDATE devices SET want = 0, want_cloud = 0 WHERE p_version IS NOT NULL AND want IN (1, 2);",
    /* 10: how many of a campaign's devices are started, kept with it (a
     * count over its devices at every engine step grew with the fleet);
     * the audit row up to which its outcomes are recorded (each pass looks
     * at the devices audited since, not at every device in flight); its
     * recorded outcomes counted from an index. */
    "ALTER TABLE campaigns ADD COLUMN n_started INTEGER NOT NULL DEFAULT 0;"
    "UPDATE campaigns SET n_started = (SELECT count(*) FROM campaign_devices"
    "  WHERE campaign = campaigns.id AND started IS NOT NULL);"
    "ALTER TABLE campaigns ADD COLUMN settled_seq INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX campaign_devices_finished ON campaign_devices(campaign, finished);",
    /* 11: a pending set's bulk (its keys, its certificate, the response
     * that carried it: ~2 KiB) in a table of its own, from its issue to its
     * commit. In the device's row it made every row of a campaign grow
     * tenfold and shrink back: the table's pages split and stayed, ~2 rows
     * a page (100,000 devices: 207 MB, 92 % of it empty, against ~150 B a
     * committed row), and each update read and wrote a page of its own.
     * The devices table stays compact and cached; the pending one holds
     * the sets in flight, each dropped with its set (a trigger on the
     * devices table did that at a fifth more of a put's instructions than
     * the put's own delete). */
    "CREATE TABLE pending(id BLOB PRIMARY KEY, keyset BLOB, th BLOB, resp BLOB);"
    "INSERT INTO pending SELECT id, p_keyset, p_th, p_resp FROM devices WHERE p_version IS NOT NULL;"
    "ALTER TABLE devices DROP COLUMN p_keyset;"
    "ALTER TABLE devices DROP COLUMN p_th;"
    "ALTER TABLE devices DROP COLUMN p_resp;",
};
#define N_MIGRATIONS (sizeof migrations / sizeof migrations[0])

typedef char schema_version_matches[N_MIGRATIONS == OTK_SQLREG_SCHEMA_VERSION ? 1 : -1];

enum {
    Q_GET_BATCH,
    Q_GET_DEVICE,
    Q_PUT_DEVICE,
    Q_PUT_OFFERED,
    Q_GET_PENDING,
    Q_PUT_PENDING,
    Q_DEL_PENDING,
    Q_LAST_AUDIT,
    Q_ADD_AUDIT,
    Q_BEGIN,
    Q_COMMIT,
    Q_COUNT
};

/* A device's put. notified_at: "told at" (see otk_sqlreg_due_notifications):
 * set when the put makes a set pending, kept while the request stays the
 * same and was told, else ?29 (NULL, or now for a device offered its
 * update in the same transaction: otk_sqlreg_offer_with_put). */
#define PUT_SQL \
    "INSERT INTO devices(id, batch_id, state, reclaim, issued, want, want_cloud, c_version, c_ak," \
    " c_cloud, c_host, c_port, c_flags, c_user, c_secret_hash, p_version, p_claim," \
    " stale_cloud, stale_user, updated, proto, c_kind, p_kind, p_dpub, p_serial)" \
    " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?21,?22,?23," \
    "?24,?25,?26,?27,?28)" \
    " ON CONFLICT(id) DO UPDATE SET state = excluded.state," \
    " reclaim = excluded.reclaim, issued = excluded.issued, want = excluded.want," \
    " want_cloud = excluded.want_cloud, c_version = excluded.c_version, c_ak = excluded.c_ak," \
    " c_cloud = excluded.c_cloud, c_host = excluded.c_host, c_port = excluded.c_port," \
    " c_flags = excluded.c_flags, c_user = excluded.c_user," \
    " c_secret_hash = CASE WHEN excluded.c_secret_hash IS NOT NULL THEN excluded.c_secret_hash" \
    "   WHEN excluded.c_user IS c_user THEN c_secret_hash END," \
    " p_version = excluded.p_version, p_claim = excluded.p_claim, stale_cloud = excluded.stale_cloud," \
    " stale_user = excluded.stale_user, updated = excluded.updated," \
    " proto = excluded.proto, c_kind = excluded.c_kind, p_kind = excluded.p_kind," \
    " p_dpub = excluded.p_dpub, p_serial = excluded.p_serial," \
    " notified_at = CASE WHEN excluded.p_version IS NOT NULL AND p_version IS NULL" \
    "   THEN excluded.updated WHEN excluded.want = want AND notified_at IS NOT NULL" \
    "   THEN notified_at ELSE ?29 END"

static const char *const queries[Q_COUNT] = {
    "SELECT pk FROM batches WHERE batch_id = ?1",
    "SELECT batch_id, state, reclaim, issued, want, want_cloud, c_version, c_ak, c_cloud, c_host,"
    " c_port, c_flags, c_user, p_version, p_claim, stale_cloud, stale_user, proto, c_kind, p_kind,"
    " p_dpub, p_serial FROM devices WHERE id = ?1",
    /* A device's batch is written with its row and never changes (a claim
     * naming another batch is refused): leaving batch_id out of the update
     * spares the batch index a delete and an insert at every put. ?18-?20
     * are unused since schema 11 (the pending set's bulk: Q_PUT_PENDING). */
    PUT_SQL,
    /* The same put, for a device offered its update in the same
     * transaction (otk_sqlreg_offer_with_put): says whether the put left it
     * marked as told now (a device already told of a request of the same
     * kind keeps its timing). */
    PUT_SQL " RETURNING notified_at IS ?29",
    "SELECT keyset, th, resp FROM pending WHERE id = ?1",
    "INSERT INTO pending(id, keyset, th, resp) VALUES(?1, ?2, ?3, ?4) ON CONFLICT(id) DO UPDATE"
    " SET keyset = excluded.keyset, th = excluded.th, resp = excluded.resp",
    "DELETE FROM pending WHERE id = ?1",
    "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
    "INSERT INTO audit(seq, ts, kind, msg_type, device, version, code, hash, actor)"
    " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9)",
    /* A batch's, a claim of due devices', a put outside a batch. */
    "BEGIN IMMEDIATE",
    "COMMIT",
};

#define N_KEPT 32 /* statements otk_sqlreg_prep keeps (the campaign engine's) */

struct otk_sqlreg {
    sqlite3 *db;
    const otk_crypto *crypto;
    sqlite3_stmt *q[Q_COUNT];
    struct {
        const char *sql; /* the text's address: the callers' literals */
        sqlite3_stmt *s;
        int busy;
    } kept[N_KEPT];
    int in_batch;     /* a group-commit transaction is open */
    int batch_failed; /* a write of it failed: it rolls back as a whole */
    /* The audit log's last row, known while a batch holds the write lock
     * (every row then is appended here): no lookup per row. */
    int head_known;
    int64_t head_seq;
    uint8_t head_hash[32];
    char actor[OTK_ACTOR_MAX + 1]; /* named by the audit rows written ("" none) */
    int64_t offer_at; /* the next put marks its device told at this time (0: not) */
    int offered;      /* the last such put did */
};

void otk_sqlreg_offer_with_put(otk_sqlreg *r, int64_t at)
{
    r->offer_at = at;
    r->offered = 0;
}

int otk_sqlreg_offered(otk_sqlreg *r)
{
    int o = r->offered;
    r->offer_at = 0;
    r->offered = 0;
    return o;
}

void otk_sqlreg_set_actor(otk_sqlreg *r, const char *actor)
{
    snprintf(r->actor, sizeof r->actor, "%s", actor ? actor : "");
}

sqlite3 *otk_sqlreg_handle(otk_sqlreg *r)
{
    return r->db;
}

int64_t otk_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define now_ms otk_wall_ms

static pthread_once_t sqlite_once = PTHREAD_ONCE_INIT;

static void configure_sqlite(void)
{
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); /* (SQLITE_MISUSE once SQLite started: kept as is) */
}

static otk_status exec(otk_sqlreg *r, const char *sql)
{
    return otk_sql_exec(r->db, sql);
}

otk_status otk_sql_exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? OTK_OK : OTK_ERR_STORAGE;
}

static otk_status fail_err(otk_sqlreg *r, char *err, size_t err_size, const char *what)
{
    if (err && err_size)
        snprintf(err, err_size, "%s: %s", what, r->db ? sqlite3_errmsg(r->db) : "out of memory");
    return OTK_ERR_STORAGE;
}

static otk_status migrate(otk_sqlreg *r, char *err, size_t err_size)
{
    sqlite3_stmt *st = NULL;
    int64_t version = 0;
    size_t i;
    /* A missing meta table is version 0 (an empty database). */
    if (sqlite3_prepare_v2(r->db, "SELECT value FROM meta WHERE key = 'schema_version'", -1, &st,
                           NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            version = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    if (version > (int64_t)N_MIGRATIONS) {
        snprintf(err, err_size, "database schema version %lld is newer than this agent's (%d)",
                 (long long)version, OTK_SQLREG_SCHEMA_VERSION);
        return OTK_ERR_STORAGE;
    }
    for (i = (size_t)version; i < N_MIGRATIONS; i++) {
        char sql[96];
        snprintf(sql, sizeof sql, "INSERT OR REPLACE INTO meta VALUES('schema_version', %zu)", i + 1);
        if (exec(r, "BEGIN IMMEDIATE") != OTK_OK || exec(r, migrations[i]) != OTK_OK ||
            exec(r, sql) != OTK_OK || exec(r, "COMMIT") != OTK_OK) {
            otk_status st2 = fail_err(r, err, err_size, "schema migration");
            (void)exec(r, "ROLLBACK");
            return st2;
        }
    }
    return OTK_OK;
}

/*
 * The registry holds every device's AK: its file, and the WAL and shared
 * memory files SQLite creates beside it with the same mode, are the owner's
 * alone. A new file is created 0600 whatever the umask; an existing one
 * that others could read is narrowed to 0600.
 */
static int private_db_files(const char *path)
{
    static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
    char name[1100];
    size_t i;
    int fd;
    if (path[0] == '\0' || path[0] == ':' || strncmp(path, "file:", 5) == 0)
        return 0; /* in memory, or a URI: left to the caller */
    fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0)
        close(fd);
    else if (errno != EEXIST)
        return 0; /* SQLite reports why */
    for (i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
        struct stat st;
        snprintf(name, sizeof name, "%s%s", path, suffix[i]);
        if (stat(name, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077) &&
            chmod(name, st.st_mode & 0700) != 0)
            return -1;
    }
    return 0;
}

otk_status otk_sqlreg_open(const char *path, const otk_crypto *crypto, otk_sqlreg **out,
                           char *err, size_t err_size)
{
    otk_sqlreg *r;
    size_t i;
    if (out == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    *out = NULL;
    if (path == NULL || crypto == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    r = calloc(1, sizeof *r);
    if (r == NULL)
        abort();
    r->crypto = crypto;
    if (private_db_files(path) != 0) {
        if (err != NULL && err_size > 0)
            snprintf(err, err_size, "%s: cannot make the registry files private: %s", path,
                 strerror(errno));
        free(r);
        return OTK_ERR_STORAGE;
    }
    /* A connection is used by one thread at a time (the daemon's by its main
     * loop, each of the HTTP API's pooled connections by the request holding
     * it): no mutex of its own around every call (NOMUTEX), and no global
     * count of SQLite's memory behind another mutex (set once, before SQLite
     * starts). About 3-6 % of the agent's CPU per device at 100,000 devices
     * (docs/benchmarks.md, "SQLite settings"). */
    (void)pthread_once(&sqlite_once, configure_sqlite);
    if (sqlite3_open_v2(path, &r->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK)
        goto fail;
    sqlite3_busy_timeout(r->db, 5000);
    /* WAL + NORMAL: a commit survives a process crash; a power loss may lose
     * the last transactions but never corrupts the database. */
    /* secure_delete: a pending secret, once committed or dropped, is
     * overwritten in the file rather than left in a free page. */
    /* cache_size 16 MiB (SQLite's default is 2): enough for the interior
     * pages of every table and index of a million devices, so that a lookup
     * reads its leaf page alone from the file; the cache fills only as far as
     * the registry is read. */
    /* temp_store MEMORY: a device's writes inside a group commit run in a
     * savepoint, whose journal (the pages' images before the device's
     * writes) SQLite moves to a file in /var/tmp past 64 KiB and then keeps
     * there: two writes to it for each one to the WAL, and the images of
     * pages holding pending keys left on a disk in a deleted file. In
     * memory it is emptied at each release. */
    if (exec(r, "PRAGMA journal_mode=WAL") != OTK_OK || exec(r, "PRAGMA synchronous=NORMAL") != OTK_OK ||
        exec(r, "PRAGMA secure_delete=ON") != OTK_OK || exec(r, "PRAGMA cache_size=-16384") != OTK_OK ||
        exec(r, "PRAGMA temp_store=MEMORY") != OTK_OK)
        goto fail;
    if (migrate(r, err, err_size) != OTK_OK) {
        sqlite3_close(r->db);
        free(r);
        return OTK_ERR_STORAGE;
    }
    for (i = 0; i < Q_COUNT; i++)
        if (sqlite3_prepare_v3(r->db, queries[i], -1, SQLITE_PREPARE_PERSISTENT, &r->q[i], NULL) !=
            SQLITE_OK)
            goto fail;
    *out = r;
    return OTK_OK;
fail:
    fail_err(r, err, err_size, path);
    otk_sqlreg_close(r);
    return OTK_ERR_STORAGE;
}

void otk_sqlreg_close(otk_sqlreg *r)
{
    size_t i;
    if (r == NULL)
        return;
    for (i = 0; i < Q_COUNT; i++)
        sqlite3_finalize(r->q[i]);
    for (i = 0; i < N_KEPT; i++)
        sqlite3_finalize(r->kept[i].s);
    /* Fold the WAL back so old page images do not linger beside the file. */
    if (r->db)
        (void)exec(r, "PRAGMA wal_checkpoint(TRUNCATE)");
    sqlite3_close(r->db);
    free(r);
}

/*
 * A statement of sql (a string that lives as long as the registry: a
 * literal), prepared once and kept: the campaign engine runs the same few
 * statements twenty times a second, and a poll's, per poll; preparing
 * them each time was ~2 % of the agent's CPU. One in use (a nested caller)
 * is not handed out twice: a second caller gets one of its own. Every
 * statement from here goes back through otk_sqlreg_fin.
 */
sqlite3_stmt *otk_sqlreg_prep(otk_sqlreg *r, const char *sql)
{
    sqlite3_stmt *s = NULL;
    size_t i, free_slot = N_KEPT;
    for (i = 0; i < N_KEPT; i++) {
        if (r->kept[i].sql == sql && !r->kept[i].busy) {
            r->kept[i].busy = 1;
            return r->kept[i].s;
        }
        if (r->kept[i].sql == NULL && free_slot == N_KEPT)
            free_slot = i;
    }
    if (sqlite3_prepare_v3(r->db, sql, -1, free_slot < N_KEPT ? SQLITE_PREPARE_PERSISTENT : 0, &s,
                           NULL) != SQLITE_OK) {
        sqlite3_finalize(s);
        return NULL;
    }
    if (free_slot < N_KEPT) {
        r->kept[free_slot].sql = sql;
        r->kept[free_slot].s = s;
        r->kept[free_slot].busy = 1;
    }
    return s;
}

/* Gives back a statement of otk_sqlreg_prep: reset and kept, or finalized. */
void otk_sqlreg_fin(otk_sqlreg *r, sqlite3_stmt *s)
{
    size_t i;
    if (s == NULL)
        return;
    for (i = 0; i < N_KEPT; i++)
        if (r->kept[i].s == s) {
            sqlite3_reset(s);
            sqlite3_clear_bindings(s);
            r->kept[i].busy = 0;
            return;
        }
    sqlite3_finalize(s);
}

static sqlite3_stmt *stmt(otk_sqlreg *r, int which)
{
    sqlite3_stmt *s = r->q[which];
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

/* Copies a blob column of exactly n bytes; 0 on a size mismatch. */
static int col_blob(sqlite3_stmt *s, int col, void *dst, size_t n)
{
    if ((size_t)sqlite3_column_bytes(s, col) != n || sqlite3_column_blob(s, col) == NULL)
        return 0;
    memcpy(dst, sqlite3_column_blob(s, col), n);
    return 1;
}

static otk_status sr_get_batch(void *ctx, const uint8_t batch_id[8], uint8_t pk[32])
{
    otk_sqlreg *r = ctx;
    sqlite3_stmt *s = stmt(r, Q_GET_BATCH);
    int rc;
    sqlite3_bind_blob(s, 1, batch_id, OTK_BATCH_ID_LEN, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_DONE)
        return OTK_ERR_UNKNOWN_BATCH;
    if (rc != SQLITE_ROW)
        return OTK_ERR_STORAGE;
    rc = col_blob(s, 0, pk, OTK_PK_LEN);
    sqlite3_reset(s);
    return rc ? OTK_OK : OTK_ERR_CORRUPT;
}

/* A pending set's bulk, from its table (kind and serial from the device's row). */
static otk_status read_pending(otk_sqlreg *r, otk_agent_device *d, int kind, const char *serial)
{
    sqlite3_stmt *p = stmt(r, Q_GET_PENDING);
    otk_status st = OTK_ERR_CORRUPT;
    int n;
    sqlite3_bind_blob(p, 1, d->id, OTK_DEVICE_ID_LEN, SQLITE_STATIC);
    if (sqlite3_step(p) != SQLITE_ROW)
        goto out;
    n = sqlite3_column_bytes(p, 2);
    if (otk_agent_pending_decode(d, kind, sqlite3_column_blob(p, 0), (size_t)sqlite3_column_bytes(p, 0),
                                 serial) != OTK_OK ||
        !col_blob(p, 1, d->pending_th, OTK_HASH_LEN) || n < 0 || (size_t)n > sizeof d->pending_resp)
        goto out;
    if (n > 0) /* an empty blob reads as NULL */
        memcpy(d->pending_resp, sqlite3_column_blob(p, 2), (size_t)n);
    d->pending_resp_len = (uint16_t)n;
    st = OTK_OK;
out:
    sqlite3_reset(p);
    return st;
}

static otk_status sr_get_device(void *ctx, const uint8_t id[16], otk_agent_device *d)
{
    otk_sqlreg *r = ctx;
    sqlite3_stmt *s = stmt(r, Q_GET_DEVICE);
    otk_status st = OTK_ERR_CORRUPT;
    const char *host, *user;
    int rc;
    sqlite3_bind_blob(s, 1, id, OTK_DEVICE_ID_LEN, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_DONE)
        return OTK_ERR_NOT_FOUND;
    if (rc != SQLITE_ROW)
        return OTK_ERR_STORAGE;
    memset(d, 0, sizeof *d);
    memcpy(d->id, id, OTK_DEVICE_ID_LEN);
    if (!col_blob(s, 0, d->batch_id, OTK_BATCH_ID_LEN))
        goto out;
    d->state = (uint8_t)sqlite3_column_int(s, 1);
    d->reclaim_allowed = (uint8_t)sqlite3_column_int(s, 2);
    d->issued_version = (uint32_t)sqlite3_column_int64(s, 3);
    d->want = (uint8_t)sqlite3_column_int(s, 4);
    d->want_cloud = (uint32_t)sqlite3_column_int64(s, 5);
    if (sqlite3_column_type(s, 6) != SQLITE_NULL) {
        d->has_committed = 1;
        d->committed.version = (uint32_t)sqlite3_column_int64(s, 6);
        host = (const char *)sqlite3_column_text(s, 9);
        user = (const char *)sqlite3_column_text(s, 12);
        if (!col_blob(s, 7, d->committed.ak, OTK_AK_LEN) || host == NULL || user == NULL ||
            strlen(host) > OTK_HOST_MAX || strlen(user) > OTK_USER_MAX)
            goto out;
        /* The secret is stored as a hash only: the record comes back without it. */
        d->committed.cloud.cloud_id = (uint32_t)sqlite3_column_int64(s, 8);
        d->committed.cloud.port = (uint16_t)sqlite3_column_int(s, 10);
        d->committed.cloud.flags = (uint8_t)sqlite3_column_int(s, 11);
        d->committed.cloud.host_len = (uint8_t)strlen(host);
        d->committed.cloud.user_len = (uint8_t)strlen(user);
        memcpy(d->committed.cloud.host, host, d->committed.cloud.host_len);
        memcpy(d->committed.cloud.user, user, d->committed.cloud.user_len);
    }
    d->proto = (uint8_t)sqlite3_column_int(s, 17);
    if (d->has_committed)
        d->committed.kind = sqlite3_column_int(s, 18) == OTK_KIND_CERT ? OTK_KIND_CERT
                                                                        : OTK_KIND_PASSWORD;
    if (sqlite3_column_type(s, 13) != SQLITE_NULL) {
        d->has_pending = 1;
        d->pending_claim = (uint8_t)sqlite3_column_int(s, 14);
        if (read_pending(r, d, sqlite3_column_int(s, 19), (const char *)sqlite3_column_text(s, 21)) != OTK_OK ||
            (d->pending.kind == OTK_KIND_CERT && !col_blob(s, 20, d->pending_dpub, OTK_PUB_LEN)))
            goto out;
        d->pending.version = (uint32_t)sqlite3_column_int64(s, 13);
    }
    if (sqlite3_column_type(s, 16) != SQLITE_NULL) {
        const char *su = (const char *)sqlite3_column_text(s, 16);
        if (su == NULL || strlen(su) > OTK_USER_MAX)
            goto out;
        d->has_stale = 1;
        d->stale_cloud = (uint32_t)sqlite3_column_int64(s, 15);
        memcpy(d->stale_user, su, strlen(su));
    }
    st = OTK_OK;
out:
    sqlite3_reset(s);
    if (st != OTK_OK)
        otk_wipe(d, sizeof *d);
    return st;
}

/* Appends an audit row chained to the previous one (inside a transaction). */
otk_status otk_sqlreg_append_audit(otk_sqlreg *r, const otk_audit *ev)
{
    sqlite3_stmt *s;
    uint8_t prev[32], hash[32];
    int64_t seq = 1, ts = now_ms();
    int rc;
    memset(prev, 0, sizeof prev);
    if (r->in_batch && r->head_known) {
        seq = r->head_seq + 1;
        memcpy(prev, r->head_hash, sizeof prev);
    } else {
        s = stmt(r, Q_LAST_AUDIT);
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            seq = sqlite3_column_int64(s, 0) + 1;
            if (!col_blob(s, 1, prev, sizeof prev)) {
                sqlite3_reset(s);
                return OTK_ERR_CORRUPT;
            }
        } else if (rc != SQLITE_DONE) {
            return OTK_ERR_STORAGE;
        }
        sqlite3_reset(s);
    }
    OTK_TRY(otk_audit_link(r->crypto, prev, (uint64_t)seq, ts, ev, r->actor, hash));
    s = stmt(r, Q_ADD_AUDIT);
    sqlite3_bind_int64(s, 1, seq);
    sqlite3_bind_int64(s, 2, ts);
    sqlite3_bind_int(s, 3, ev->kind);
    sqlite3_bind_int(s, 4, ev->msg_type);
    if (ev->has_id)
        sqlite3_bind_blob(s, 5, ev->id, OTK_DEVICE_ID_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, ev->version);
    sqlite3_bind_int(s, 7, ev->code);
    sqlite3_bind_blob(s, 8, hash, sizeof hash, SQLITE_STATIC);
    if (r->actor[0])
        sqlite3_bind_text(s, 9, r->actor, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 9);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        r->head_known = 0;
        return OTK_ERR_STORAGE;
    }
    if (r->in_batch) {
        r->head_known = 1;
        r->head_seq = seq;
        memcpy(r->head_hash, hash, sizeof hash);
    }
    return OTK_OK;
}

static otk_status write_device(otk_sqlreg *r, const otk_agent_device *d)
{
    sqlite3_stmt *s = stmt(r, r->offer_at ? Q_PUT_OFFERED : Q_PUT_DEVICE);
    uint8_t ks[OTK_KEYSET2_MAX_LEN], secret_hash[32];
    size_t ks_len = 0;
    otk_status st = OTK_OK;
    int rc;
    sqlite3_bind_blob(s, 1, d->id, OTK_DEVICE_ID_LEN, SQLITE_STATIC);
    sqlite3_bind_blob(s, 2, d->batch_id, OTK_BATCH_ID_LEN, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, d->state);
    sqlite3_bind_int(s, 4, d->reclaim_allowed);
    sqlite3_bind_int64(s, 5, d->issued_version);
    sqlite3_bind_int(s, 6, d->want);
    sqlite3_bind_int64(s, 7, d->want_cloud);
    if (d->has_committed) {
        sqlite3_bind_int64(s, 8, d->committed.version);
        sqlite3_bind_blob(s, 9, d->committed.ak, OTK_AK_LEN, SQLITE_STATIC);
        sqlite3_bind_int64(s, 10, d->committed.cloud.cloud_id);
        sqlite3_bind_text(s, 11, d->committed.cloud.host, -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 12, d->committed.cloud.port);
        sqlite3_bind_int(s, 13, d->committed.cloud.flags);
        sqlite3_bind_text(s, 14, d->committed.cloud.user, -1, SQLITE_STATIC);
        if (d->committed.cloud.secret_len) {
            otk_iov io;
            io.p = d->committed.cloud.secret;
            io.n = d->committed.cloud.secret_len;
            st = r->crypto->sha256(r->crypto->ctx, &io, 1, secret_hash);
            sqlite3_bind_blob(s, 15, secret_hash, 32, SQLITE_STATIC);
        }
    }
    if (d->proto)
        sqlite3_bind_int(s, 24, d->proto);
    if (d->has_committed && d->committed.kind == OTK_KIND_CERT)
        sqlite3_bind_int(s, 25, OTK_KIND_CERT);
    if (st == OTK_OK && d->has_pending) {
        st = otk_agent_pending_encode(d, ks, sizeof ks, &ks_len);
        if (d->pending.kind == OTK_KIND_CERT) {
            sqlite3_bind_int(s, 26, OTK_KIND_CERT);
            sqlite3_bind_blob(s, 27, d->pending_dpub, OTK_PUB_LEN, SQLITE_STATIC);
            sqlite3_bind_text(s, 28, d->pending.cloud.user, -1, SQLITE_STATIC);
        }
        sqlite3_bind_int64(s, 16, d->pending.version);
        sqlite3_bind_int(s, 17, d->pending_claim);
    }
    if (d->has_stale) {
        sqlite3_bind_int64(s, 21, d->stale_cloud);
        sqlite3_bind_text(s, 22, d->stale_user, -1, SQLITE_STATIC);
    }
    sqlite3_bind_int64(s, 23, now_ms());
    if (r->offer_at)
        sqlite3_bind_int64(s, 29, r->offer_at);
    rc = st == OTK_OK ? sqlite3_step(s) : SQLITE_ERROR;
    if (rc == SQLITE_ROW) { /* Q_PUT_OFFERED: its one row */
        r->offered = sqlite3_column_int(s, 0);
        rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc == SQLITE_DONE) { /* the pending set's bulk: written, or dropped with the set */
        s = stmt(r, d->has_pending ? Q_PUT_PENDING : Q_DEL_PENDING);
        sqlite3_bind_blob(s, 1, d->id, OTK_DEVICE_ID_LEN, SQLITE_STATIC);
        if (d->has_pending) {
            sqlite3_bind_blob(s, 2, ks, (int)ks_len, SQLITE_STATIC);
            sqlite3_bind_blob(s, 3, d->pending_th, OTK_HASH_LEN, SQLITE_STATIC);
            sqlite3_bind_blob(s, 4, d->pending_resp, d->pending_resp_len, SQLITE_STATIC);
        }
        rc = sqlite3_step(s);
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
    }
    otk_wipe(ks, sizeof ks);
    if (st != OTK_OK)
        return st;
    return rc == SQLITE_DONE ? OTK_OK : OTK_ERR_STORAGE;
}

/* One of the prepared statements that take no parameters and return no row. */
static otk_status run(otk_sqlreg *r, int which)
{
    sqlite3_stmt *s = stmt(r, which);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? OTK_OK : OTK_ERR_STORAGE;
}

/*
 * A write's transaction: its own outside a batch; inside one, the batch's
 * (refused once the batch has failed). end_write commits or rolls back its
 * own, and marks the batch failed when a write inside it failed.
 */
static otk_status begin_write(otk_sqlreg *r)
{
    if (r->in_batch)
        return r->batch_failed ? OTK_ERR_STORAGE : OTK_OK;
    return run(r, Q_BEGIN) == OTK_OK ? OTK_OK : OTK_ERR_BUSY;
}

static otk_status end_write(otk_sqlreg *r, otk_status st)
{
    if (st == OTK_OK && !r->in_batch)
        st = run(r, Q_COMMIT);
    if (st != OTK_OK) {
        if (r->in_batch)
            r->batch_failed = 1;
        else
            (void)exec(r, "ROLLBACK");
    }
    return st;
}

/*
 * Runs the writes in one transaction: all of them or none. Inside a batch,
 * in the batch's transaction, without a savepoint of their own (one a put
 * cost ~2 % of an update's CPU, bench/results/hold-fold-ab.md): a put that
 * fails marks the batch failed, the batch's later puts are refused, and its
 * end rolls all of it back (the daemon then drops the batch's replies; the
 * devices ask again). The errors a put meets in a batch that holds the write
 * lock (a full disk, I/O) may roll SQLite's transaction back by themselves
 * anyway.
 */
static otk_status sr_put_device(void *ctx, const otk_agent_device *d, const otk_audit *ev)
{
    otk_sqlreg *r = ctx;
    otk_status st = begin_write(r);
    if (st != OTK_OK)
        return st;
    if (d != NULL)
        st = write_device(r, d);
    if (st == OTK_OK && ev != NULL)
        st = otk_sqlreg_append_audit(r, ev);
    st = end_write(r, st);
    if (st != OTK_OK) {
        r->head_known = 0; /* the row appended, if any, is rolled back */
        r->offered = 0;
    }
    return st;
}

otk_status otk_sqlreg_batch_begin(otk_sqlreg *r)
{
    if (r == NULL || r->in_batch)
        return OTK_ERR_BAD_STATE;
    if (run(r, Q_BEGIN) != OTK_OK)
        return OTK_ERR_BUSY;
    r->in_batch = 1;
    r->batch_failed = 0;
    r->head_known = 0; /* another process may have appended since the last batch */
    return OTK_OK;
}

otk_status otk_sqlreg_batch_end(otk_sqlreg *r)
{
    if (r == NULL || !r->in_batch)
        return OTK_ERR_BAD_STATE;
    r->in_batch = 0;
    if (!r->batch_failed && run(r, Q_COMMIT) == OTK_OK)
        return OTK_OK;
    r->batch_failed = 0;
    r->head_known = 0;
    (void)exec(r, "ROLLBACK");
    return OTK_ERR_STORAGE;
}

static otk_status sr_audit(void *ctx, const otk_audit *ev)
{
    return sr_put_device(ctx, NULL, ev);
}

void otk_sqlreg_bind(otk_sqlreg *r, otk_registry *out)
{
    memset(out, 0, sizeof *out);
    out->ctx = r;
    out->get_batch = sr_get_batch;
    out->get_device = sr_get_device;
    out->put_device = sr_put_device;
    out->audit = sr_audit;
}

otk_status otk_sqlreg_add_batch(otk_sqlreg *r, const uint8_t batch_id[8], const char *product,
                                const uint8_t pk[32])
{
    sqlite3_stmt *s = NULL;
    int rc;
    if (r == NULL || batch_id == NULL || product == NULL || pk == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    if (sqlite3_prepare_v2(r->db, "INSERT INTO batches VALUES(?1, ?2, ?3, ?4)", -1, &s, NULL) !=
        SQLITE_OK)
        return OTK_ERR_STORAGE;
    sqlite3_bind_blob(s, 1, batch_id, OTK_BATCH_ID_LEN, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, product, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 3, pk, OTK_PK_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, now_ms());
    rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc == SQLITE_CONSTRAINT)
        return OTK_ERR_BAD_STATE;
    return rc == SQLITE_DONE ? OTK_OK : OTK_ERR_STORAGE;
}

otk_status otk_sqlreg_audit_verify(otk_sqlreg *r, uint64_t *rows, uint64_t *bad_seq)
{
    sqlite3_stmt *s = NULL;
    uint8_t prev[32], hash[32], stored[32];
    uint64_t n = 0;
    int64_t expect = 1;
    otk_status st = OTK_OK;
    int rc;
    if (r == NULL || rows == NULL || bad_seq == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    *rows = *bad_seq = 0;
    if (sqlite3_prepare_v2(r->db,
                           "SELECT seq, ts, kind, msg_type, device, version, code, hash, actor"
                           " FROM audit ORDER BY seq",
                           -1, &s, NULL) != SQLITE_OK)
        return OTK_ERR_STORAGE;
    memset(prev, 0, sizeof prev);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(s, 0), ts = sqlite3_column_int64(s, 1);
        int has_id = sqlite3_column_type(s, 4) != SQLITE_NULL;
        otk_audit ev;
        memset(&ev, 0, sizeof ev);
        ev.kind = (uint8_t)sqlite3_column_int(s, 2);
        ev.msg_type = (uint8_t)sqlite3_column_int(s, 3);
        ev.has_id = (uint8_t)has_id;
        ev.version = (uint32_t)sqlite3_column_int64(s, 5);
        ev.code = (otk_status)sqlite3_column_int(s, 6);
        if ((has_id && !col_blob(s, 4, ev.id, OTK_DEVICE_ID_LEN)) ||
            !col_blob(s, 7, stored, sizeof stored) || seq != expect ||
            otk_audit_link(r->crypto, prev, (uint64_t)seq, ts, &ev,
                           (const char *)sqlite3_column_text(s, 8), hash) != OTK_OK ||
            memcmp(hash, stored, sizeof hash) != 0) {
            *bad_seq = (uint64_t)seq;
            st = OTK_ERR_CORRUPT;
            break;
        }
        memcpy(prev, stored, sizeof prev);
        expect = seq + 1;
        n++;
    }
    if (st == OTK_OK && rc != SQLITE_DONE)
        st = OTK_ERR_STORAGE;
    sqlite3_finalize(s);
    *rows = n;
    return st;
}

/*
 * Runs the queries in turn (?1: the cut-off time, ?2: how many more), marks
 * each device found notified_at = now, all in one transaction; up to max.
 */
static size_t claim_due(otk_sqlreg *r, const char *const *sql, size_t n_sql, uint8_t (*ids)[16],
                        size_t max, unsigned period_ms)
{
    sqlite3_stmt *s = NULL, *u = NULL;
    int64_t now = now_ms();
    size_t n = 0, q;
    if (r == NULL || ids == NULL || max == 0 || run(r, Q_BEGIN) != OTK_OK)
        return 0;
    if ((u = otk_sqlreg_prep(r, "UPDATE devices SET notified_at = ?1 WHERE id = ?2")) != NULL)
        for (q = 0; q < n_sql && n < max; q++) {
            if ((s = otk_sqlreg_prep(r, sql[q])) == NULL)
                break;
            sqlite3_bind_int64(s, 1, now - (int64_t)period_ms);
            sqlite3_bind_int64(s, 2, (sqlite3_int64)(max - n));
            while (n < max && sqlite3_step(s) == SQLITE_ROW)
                if (col_blob(s, 0, ids[n], 16)) {
                    sqlite3_reset(u);
                    sqlite3_bind_int64(u, 1, now);
                    sqlite3_bind_blob(u, 2, ids[n], 16, SQLITE_STATIC);
                    if (sqlite3_step(u) == SQLITE_DONE)
                        n++;
                }
            otk_sqlreg_fin(r, s);
            s = NULL;
        }
    otk_sqlreg_fin(r, s);
    otk_sqlreg_fin(r, u);
    if (run(r, Q_COMMIT) != OTK_OK) {
        (void)exec(r, "ROLLBACK");
        n = 0;
    }
    return n;
}

size_t otk_sqlreg_due_cleanups(otk_sqlreg *r, uint8_t (*ids)[16], size_t max, unsigned retry_ms)
{
    /* want 3: OTK_WANT_CLEANUP ("want != 0" lets the devices_want index serve it). */
    static const char *const sql[1] = {
        "SELECT id FROM devices WHERE want != 0 AND want = 3"
        " AND (notified_at IS NULL OR notified_at < ?1) LIMIT ?2"};
    return claim_due(r, sql, 1, ids, max, retry_ms);
}

size_t otk_sqlreg_due_notifications(otk_sqlreg *r, uint8_t (*ids)[16], size_t max,
                                    unsigned resend_ms)
{
    /* Devices with a requested update, or an issued one not confirmed yet
     * (its device may have missed it), not told recently. Never told, then
     * told too long ago: two range searches of the devices_due index (one
     * query with an OR would scan all of it). */
    static const char *const sql[2] = {
        "SELECT id FROM devices WHERE state = 2"
        " AND ((want != 0 AND p_version IS NULL) OR (p_version IS NOT NULL AND p_claim = 0))"
        " AND notified_at IS NULL AND ?1 = ?1 LIMIT ?2",
        "SELECT id FROM devices WHERE state = 2"
        " AND ((want != 0 AND p_version IS NULL) OR (p_version IS NOT NULL AND p_claim = 0))"
        " AND notified_at < ?1 LIMIT ?2"};
    return claim_due(r, sql, 2, ids, max, resend_ms);
}

size_t otk_sqlreg_hold_offers(otk_sqlreg *r, const uint8_t (*ids)[16], size_t n,
                              unsigned resend_ms, unsigned hold_ms)
{
    sqlite3_stmt *u = NULL;
    int64_t now = now_ms();
    size_t held = 0, i;
    /* Inside a batch, in its transaction: no commit of its own. */
    if (r == NULL || ids == NULL || n == 0 || begin_write(r) != OTK_OK)
        return 0;
    if (hold_ms < resend_ms)
        hold_ms = resend_ms;
    /* Due again at now + hold: notified_at is "told at", due after resend. */
    if ((u = otk_sqlreg_prep(r, "UPDATE devices SET notified_at = ?1 WHERE id = ?2 AND state = 2"
                                " AND ((want != 0 AND p_version IS NULL)"
                                " OR (p_version IS NOT NULL AND p_claim = 0)) AND notified_at <= ?3")) !=
        NULL)
        for (i = 0; i < n; i++) {
            sqlite3_reset(u);
            sqlite3_bind_int64(u, 1, now + (int64_t)hold_ms - (int64_t)resend_ms);
            sqlite3_bind_blob(u, 2, ids[i], 16, SQLITE_STATIC);
            sqlite3_bind_int64(u, 3, now);
            if (sqlite3_step(u) == SQLITE_DONE)
                held += (size_t)sqlite3_changes(r->db);
        }
    otk_sqlreg_fin(r, u);
    return end_write(r, OTK_OK) == OTK_OK ? held : 0;
}

uint64_t otk_sqlreg_audit_count(otk_sqlreg *r, int kind)
{
    sqlite3_stmt *s = NULL;
    uint64_t n = 0;
    if (sqlite3_prepare_v2(r->db,
                           kind ? "SELECT count(*) FROM audit WHERE kind = ?1"
                                : "SELECT count(*) FROM audit",
                           -1, &s, NULL) != SQLITE_OK)
        return 0;
    if (kind)
        sqlite3_bind_int(s, 1, kind);
    if (sqlite3_step(s) == SQLITE_ROW)
        n = (uint64_t)sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return n;
}
