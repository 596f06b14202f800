/*
 * Cloud adapter over a mosquitto password_file + acl_file
 * (include/otakey/pwfile.h). Clients live in an open-addressing table
 * keyed by user name; every flush rewrites both files from it.
 */
#include "../internal.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "otakey/pwfile.h"
#include "cloud_login.h"

#define PROBE_PREFIX "otakey-probe-"
#define HASH_MAX 112 /* "$6$" + 16 (salt) + "$" + 88 (SHA-512) + NUL */

typedef struct entry {
    char user[OTK_USER_MAX + 1]; /* "" free */
    char hash[HASH_MAX];
} entry;

/* A queued change: create (hash set) or remove (hash empty). */
typedef struct change {
    char user[OTK_USER_MAX + 1];
    char hash[HASH_MAX];
} change;

struct otk_pwfile {
    otk_pwfile_cloud cfg;
    entry *tab;        /* the file as of the last flush, with the changes since */
    size_t cap, count;
    change *log;       /* changes not flushed yet, in order */
    size_t pending, log_cap;
    char probe_user[OTK_USER_MAX + 1]; /* this agent's probe client */
};

static void log_change(otk_pwfile *p, const char *user, const char *hash)
{
    if (p->pending == p->log_cap) {
        p->log_cap = p->log_cap ? 2 * p->log_cap : 256;
        p->log = realloc(p->log, p->log_cap * sizeof *p->log);
        if (p->log == NULL)
            abort();
    }
    snprintf(p->log[p->pending].user, sizeof p->log[p->pending].user, "%s", user);
    snprintf(p->log[p->pending].hash, sizeof p->log[p->pending].hash, "%s", hash);
    p->pending++;
}

static int load(otk_pwfile *p, char *err, size_t err_size);

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    while (*s)
        h = (h ^ (uint8_t)*s++) * 1099511628211ull;
    return h;
}

/* Slot of user, or the free slot where it would go. */
static entry *slot(const otk_pwfile *p, const char *user)
{
    size_t i = (size_t)name_hash(user) & (p->cap - 1);
    while (p->tab[i].user[0] && strcmp(p->tab[i].user, user) != 0)
        i = (i + 1) & (p->cap - 1);
    return &p->tab[i];
}

static void grow(otk_pwfile *p)
{
    entry *old = p->tab;
    size_t i, n = p->cap;
    p->cap = n ? n * 2 : 1024;
    p->tab = calloc(p->cap, sizeof *p->tab);
    if (p->tab == NULL)
        abort();
    for (i = 0; i < n; i++)
        if (old[i].user[0])
            *slot(p, old[i].user) = old[i];
    if (old) {
        otk_wipe(old, n * sizeof *old);
        free(old);
    }
}

static int put_entry(otk_pwfile *p, const char *user, const char *hash)
{
    entry *e;
    if (strlen(user) > OTK_USER_MAX || strlen(hash) >= HASH_MAX)
        return -1;
    if ((p->count + 1) * 2 > p->cap)
        grow(p);
    e = slot(p, user);
    if (!e->user[0])
        p->count++;
    snprintf(e->user, sizeof e->user, "%s", user);
    snprintf(e->hash, sizeof e->hash, "%s", hash);
    return 0;
}

/* Backward-shift deletion keeps every probe sequence intact. */
static int del_entry(otk_pwfile *p, const char *user)
{
    entry *e = slot(p, user);
    size_t i, j;
    if (!e->user[0])
        return 0;
    i = (size_t)(e - p->tab);
    memset(e, 0, sizeof *e);
    p->count--;
    for (j = (i + 1) & (p->cap - 1); p->tab[j].user[0]; j = (j + 1) & (p->cap - 1)) {
        size_t home = (size_t)name_hash(p->tab[j].user) & (p->cap - 1);
        /* Move j back into the hole at i unless its home lies in (i, j]. */
        if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
            p->tab[i] = p->tab[j];
            memset(&p->tab[j], 0, sizeof p->tab[j]);
            i = j;
        }
    }
    return 1;
}

/* "$6$" base64(salt) "$" base64(SHA-512(secret || salt)), as mosquitto reads it. */
static otk_status hash_secret(const char *secret, char out[HASH_MAX])
{
    uint8_t salt[12], md[64];
    unsigned md_len = 0;
    char b_salt[17], b_md[89];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && RAND_bytes(salt, sizeof salt) == 1 &&
             EVP_DigestInit_ex(ctx, EVP_sha512(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, secret, strlen(secret)) == 1 &&
             EVP_DigestUpdate(ctx, salt, sizeof salt) == 1 &&
             EVP_DigestFinal_ex(ctx, md, &md_len) == 1 && md_len == sizeof md;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return OTK_ERR_CRYPTO;
    EVP_EncodeBlock((unsigned char *)b_salt, salt, sizeof salt);
    EVP_EncodeBlock((unsigned char *)b_md, md, sizeof md);
    snprintf(out, HASH_MAX, "$6$%s$%s", b_salt, b_md);
    otk_wipe(md, sizeof md);
    return OTK_OK;
}

otk_status otk_pwfile_create(void *ctx, const uint8_t device_id[16], const otk_cloud *creds)
{
    otk_pwfile *p = ctx;
    char hash[HASH_MAX];
    if (p == NULL || creds == NULL || creds->cloud_id != p->cfg.cloud_id || !creds->user[0] ||
        strchr(creds->user, ':') || strchr(creds->user, '\n') ||
        strncmp(creds->user, PROBE_PREFIX, strlen(PROBE_PREFIX)) == 0)
        return OTK_ERR_CLOUD;
    if (hash_secret(creds->secret, hash) != OTK_OK)
        return OTK_ERR_CLOUD;
    (void)device_id; /* its topics follow from its client id (see pwfile.h) */
    if (put_entry(p, creds->user, hash) != 0)
        return OTK_ERR_CLOUD;
    log_change(p, creds->user, hash);
    return OTK_OK;
}

otk_status otk_pwfile_remove(void *ctx, uint32_t cloud_id, const char *user)
{
    otk_pwfile *p = ctx;
    if (p == NULL || user == NULL || cloud_id != p->cfg.cloud_id)
        return OTK_ERR_CLOUD;
    if (strlen(user) > OTK_USER_MAX)
        return OTK_ERR_CLOUD;
    (void)del_entry(p, user);
    log_change(p, user, ""); /* logged even if absent here: another agent may have it */
    return OTK_OK;
}

size_t otk_pwfile_pending(const otk_pwfile *p)
{
    return p ? p->pending : 0;
}

void otk_pwfile_each(const otk_pwfile *p, void (*fn)(void *ud, const char *user), void *ud)
{
    size_t i;
    for (i = 0; p != NULL && i < p->cap; i++)
        if (p->tab[i].user[0] && strncmp(p->tab[i].user, PROBE_PREFIX, strlen(PROBE_PREFIX)) != 0)
            fn(ud, p->tab[i].user);
}

size_t otk_pwfile_count(const otk_pwfile *p)
{
    return p ? p->count : 0;
}

/* Writes path through path.tmp, fsync'd, renamed over. */
static int write_file(const otk_pwfile *p, const char *path, int acl)
{
    char tmp[300];
    FILE *f;
    size_t i;
    int ok;
    int fd;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    /* Created 0600 (whatever the umask), never through a left-over file or link. */
    (void)unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -1;
    if (fchmod(fd, 0600) != 0 || (f = fdopen(fd, "w")) == NULL) {
        close(fd);
        unlink(tmp);
        return -1;
    }
    /* The ACL is one pattern: a client may use devices/<its client id>/#.
     * Per-user "user"/"topic" lines would cost mosquitto 2.0 a walk of its
     * user list for every line at each reload (quadratic in the fleet) and
     * for every publish; see pwfile.h for what the pattern implies. */
    if (acl)
        fprintf(f, "pattern readwrite devices/%%c/#\n");
    for (i = 0; !acl && i < p->cap; i++) {
        const entry *e = &p->tab[i];
        if (e->user[0])
            fprintf(f, "%s:%s\n", e->user, e->hash);
    }
    ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static long broker_pid(const otk_pwfile *p)
{
    FILE *f = fopen(p->cfg.pid_file, "r");
    long pid = 0;
    if (f == NULL)
        return 0;
    if (fscanf(f, "%ld", &pid) != 1)
        pid = 0;
    fclose(f);
    return pid;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

otk_status otk_pwfile_flush(otk_pwfile *p, unsigned timeout_ms)
{
    otk_cloud probe;
    char hash[HASH_MAX], lock_path[300], err[256];
    uint8_t rnd[24];
    size_t i;
    int lock = -1;
    uint64_t until;
    long pid;
    otk_status st = OTK_ERR_CLOUD;
    if (p == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    if (p->pending == 0)
        return OTK_OK;
    pid = broker_pid(p);
    if (pid <= 0)
        return OTK_ERR_CLOUD;
    /* This agent's probe client, with a fresh secret per flush: once it
     * gets in, the broker has read this flush's file. Each agent sharing
     * the file has its own probe line, which the others keep. */
    memset(&probe, 0, sizeof probe);
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        return OTK_ERR_CRYPTO;
    snprintf(probe.user, sizeof probe.user, "%s", p->probe_user);
    otk_hex_encode(rnd + 8, 16, probe.secret);
    snprintf(probe.host, sizeof probe.host, "%s", p->cfg.host);
    probe.port = p->cfg.port;
    probe.flags = p->cfg.tls ? OTK_CLOUD_FLAG_TLS : 0; /* never plain TCP by accident */
    if (hash_secret(probe.secret, hash) != OTK_OK)
        goto out;
    /* Several agents may share the files: under an exclusive lock, read
     * what is on disk now, replay this agent's changes on it, write. */
    snprintf(lock_path, sizeof lock_path, "%s.lock", p->cfg.password_file);
    lock = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock < 0 || flock(lock, LOCK_EX) != 0) {
        st = OTK_ERR_STORAGE;
        goto out;
    }
    for (i = 0; i < p->cap; i++)
        memset(&p->tab[i], 0, sizeof p->tab[i]);
    p->count = 0;
    if (load(p, err, sizeof err) != 0) {
        st = OTK_ERR_STORAGE;
        goto out;
    }
    for (i = 0; i < p->pending; i++)
        if (p->log[i].hash[0] ? put_entry(p, p->log[i].user, p->log[i].hash) != 0
                              : (del_entry(p, p->log[i].user), 0)) {
            st = OTK_ERR_STORAGE;
            goto out;
        }
    if (put_entry(p, probe.user, hash) != 0 || write_file(p, p->cfg.acl_file, 1) != 0 ||
        write_file(p, p->cfg.password_file, 0) != 0) {
        st = OTK_ERR_STORAGE;
        goto out;
    }
    close(lock); /* releases the lock: the broker reads files that are whole */
    lock = -1;
    if (kill((pid_t)pid, SIGHUP) != 0)
        goto out;
    until = mono_ms() + (timeout_ms ? timeout_ms : 5000);
    do {
        if (otk_mqtt_prove(&probe, p->cfg.cafile, probe.user, 1000) == OTK_PROOF_OK) {
            p->pending = 0;
            st = OTK_OK;
            break;
        }
        nanosleep(&(struct timespec){0, 2000000L}, NULL);
    } while (mono_ms() < until);
out:
    if (lock >= 0)
        close(lock);
    otk_wipe(&probe, sizeof probe);
    otk_wipe(rnd, sizeof rnd);
    return st;
}

/* Reads the "user:hash" lines back. */
static int load(otk_pwfile *p, char *err, size_t err_size)
{
    char line[512];
    FILE *f = fopen(p->cfg.password_file, "r");
    unsigned ln = 0;
    if (f != NULL) {
        while (fgets(line, sizeof line, f)) {
            char *colon = strchr(line, ':'), *nl = strchr(line, '\n');
            ln++;
            if (nl)
                *nl = '\0';
            if (line[0] == '\0' || line[0] == '#')
                continue;
            if (colon == NULL || (size_t)(colon - line) > OTK_USER_MAX) {
                snprintf(err, err_size, "%s:%u: not a 'user:hash' line", p->cfg.password_file, ln);
                fclose(f);
                return -1;
            }
            *colon = '\0';
            if (put_entry(p, line, colon + 1) != 0) {
                snprintf(err, err_size, "%s:%u: entry too long", p->cfg.password_file, ln);
                fclose(f);
                return -1;
            }
        }
        fclose(f);
    }
    return 0;
}

otk_status otk_pwfile_open(const otk_pwfile_cloud *cfg, otk_pwfile **out, char *err,
                           size_t err_size)
{
    otk_pwfile *p;
    if (cfg == NULL || out == NULL)
        return OTK_ERR_INVALID_ARGUMENT;
    *out = NULL;
    p = calloc(1, sizeof *p);
    if (p == NULL)
        abort();
    p->cfg = *cfg;
    grow(p);
    {
        uint8_t r[8];
        if (RAND_bytes(r, sizeof r) != 1) {
            otk_pwfile_close(p);
            return OTK_ERR_CRYPTO;
        }
        snprintf(p->probe_user, sizeof p->probe_user, PROBE_PREFIX);
        otk_hex_encode(r, sizeof r, p->probe_user + strlen(PROBE_PREFIX));
    }
    if (load(p, err, err_size) != 0) {
        otk_pwfile_close(p);
        return OTK_ERR_STORAGE;
    }
    *out = p;
    return OTK_OK;
}

void otk_pwfile_close(otk_pwfile *p)
{
    if (p == NULL)
        return;
    if (p->tab) {
        otk_wipe(p->tab, p->cap * sizeof *p->tab);
        free(p->tab);
    }
    if (p->log) {
        otk_wipe(p->log, p->log_cap * sizeof *p->log);
        free(p->log);
    }
    otk_wipe(p, sizeof *p);
    free(p);
}
