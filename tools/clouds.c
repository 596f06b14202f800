/* The clouds of an agent configuration behind one adapter (clouds.h). */
#include "clouds.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct otk_clouds {
    otk_dynsec *dynsec;       /* the dynamic-security clouds, one connection each */
    otk_cloud_adapter ds;
    otk_pwfile *pw[OTK_AGENT_MAX_CLOUDS];
    uint32_t pw_id[OTK_AGENT_MAX_CLOUDS];
    size_t n_pw;
    otk_x509 *x509[OTK_AGENT_MAX_CLOUDS]; /* certificate clouds */
    uint32_t x509_id[OTK_AGENT_MAX_CLOUDS];
    char crl[OTK_AGENT_MAX_CLOUDS][256];  /* their CRL files */
    size_t n_x509;
    char bundle[256], bundle_pid[256];    /* the agent broker's copy of them all */
};

static otk_x509 *ca_of(otk_clouds *c, uint32_t cloud_id)
{
    size_t i;
    for (i = 0; i < c->n_x509; i++)
        if (c->x509_id[i] == cloud_id)
            return c->x509[i];
    return NULL;
}

static otk_pwfile *files_of(otk_clouds *c, uint32_t cloud_id)
{
    size_t i;
    for (i = 0; i < c->n_pw; i++)
        if (c->pw_id[i] == cloud_id)
            return c->pw[i];
    return NULL;
}

static otk_status route_create(void *ctx, const uint8_t id[16], const otk_cloud *creds)
{
    otk_clouds *c = ctx;
    otk_pwfile *p = files_of(c, creds->cloud_id);
    if (p)
        return otk_pwfile_create(p, id, creds);
    return c->dynsec ? c->ds.create(c->ds.ctx, id, creds) : OTK_ERR_CLOUD;
}

static otk_status route_remove(void *ctx, uint32_t cloud_id, const char *user)
{
    otk_clouds *c = ctx;
    otk_pwfile *p = files_of(c, cloud_id);
    otk_x509 *x = ca_of(c, cloud_id);
    if (p)
        return otk_pwfile_remove(p, cloud_id, user);
    if (x)
        return otk_x509_remove(x, cloud_id, user); /* user: the certificate's serial */
    return c->dynsec ? c->ds.remove(c->ds.ctx, cloud_id, user) : OTK_ERR_CLOUD;
}

/* Certificates: only a certificate cloud's CA issues them. */
static otk_status route_issue_cert(void *ctx, const uint8_t id[16], uint32_t cloud_id,
                                   const uint8_t dpub[64], uint8_t *der, size_t der_size,
                                   size_t *der_len, char serial[OTK_USER_MAX + 1],
                                   uint8_t ca_pin[OTK_PIN_LEN])
{
    otk_x509 *x = ca_of(ctx, cloud_id);
    return x ? otk_x509_issue_cert(x, id, cloud_id, dpub, der, der_size, der_len, serial, ca_pin)
             : OTK_ERR_CLOUD;
}

/* A password-file cloud queues creates: one may have been lost by a restart. */
static otk_status route_ensure(void *ctx, const uint8_t id[16], const otk_cloud *creds)
{
    otk_clouds *c = ctx;
    otk_pwfile *p = files_of(c, creds->cloud_id);
    return p ? otk_pwfile_create(p, id, creds) : OTK_OK;
}

int otk_clouds_open(const otk_agentd_config *cfg, otk_clouds **out, char *err, size_t err_size)
{
    otk_dynsec_cloud ds[OTK_AGENT_MAX_CLOUDS];
    size_t i, n_ds = 0;
    otk_clouds *c = calloc(1, sizeof *c);
    if (c == NULL)
        abort();
    *out = NULL;
    for (i = 0; i < cfg->n_clouds; i++) {
        if (cfg->cloud_type[i] == OTK_CLOUD_X509) {
            char e[200];
            if (otk_x509_open(&cfg->x509[i], &c->x509[c->n_x509], e, sizeof e) != OTK_OK) {
                snprintf(err, err_size, "cloud %u: %s", (unsigned)cfg->clouds[i].cloud_id, e);
                otk_clouds_close(c);
                return -1;
            }
            snprintf(c->crl[c->n_x509], sizeof c->crl[0], "%s", cfg->x509[i].crl_file);
            c->x509_id[c->n_x509++] = cfg->clouds[i].cloud_id;
        } else if (cfg->cloud_type[i] == OTK_CLOUD_PWFILE) {
            if (otk_pwfile_open(&cfg->pwfile[i], &c->pw[c->n_pw], err, err_size) != OTK_OK) {
                otk_clouds_close(c);
                return -1;
            }
            c->pw_id[c->n_pw++] = cfg->clouds[i].cloud_id;
        } else {
            ds[n_ds++] = cfg->admin[i];
        }
    }
    if (n_ds && otk_dynsec_open(ds, n_ds, 5000, &c->dynsec, err, err_size) != OTK_OK) {
        otk_clouds_close(c);
        return -1;
    }
    if (c->dynsec)
        otk_dynsec_adapter(c->dynsec, &c->ds);
    snprintf(c->bundle, sizeof c->bundle, "%s", cfg->devices_crl_file);
    snprintf(c->bundle_pid, sizeof c->bundle_pid, "%s", cfg->broker_pid_file);
    *out = c;
    return 0;
}

void otk_clouds_close(otk_clouds *c)
{
    size_t i;
    if (c == NULL)
        return;
    otk_dynsec_close(c->dynsec);
    for (i = 0; i < c->n_pw; i++)
        otk_pwfile_close(c->pw[i]);
    for (i = 0; i < c->n_x509; i++)
        otk_x509_close(c->x509[i]);
    free(c);
}

void otk_clouds_adapter(otk_clouds *c, otk_cloud_adapter *out)
{
    out->ctx = c;
    out->create = route_create;
    out->remove = route_remove;
    out->ensure = route_ensure;
    out->issue_cert = route_issue_cert;
}

int otk_clouds_have_files(const otk_clouds *c)
{
    return c->n_pw > 0;
}

size_t otk_clouds_pending(const otk_clouds *c)
{
    size_t i, n = 0;
    for (i = 0; i < c->n_pw; i++)
        n += otk_pwfile_pending(c->pw[i]);
    return n;
}

size_t otk_clouds_revocations(const otk_clouds *c)
{
    size_t i, n = 0;
    for (i = 0; i < c->n_x509; i++)
        n += otk_x509_pending(c->x509[i]);
    return n;
}

otk_status otk_clouds_sync_revocations(otk_clouds *c)
{
    size_t i;
    otk_status st = OTK_OK;
    for (i = 0; i < c->n_x509; i++)
        if (otk_x509_sync(c->x509[i]) != OTK_OK)
            st = OTK_ERR_STORAGE;
    return st;
}

/*
 * The agent broker's listener for devices with certificates checks them
 * against every certificate cloud's CRL: one file holding them all
 * (devices_crl_file), rewritten atomically after the clouds' CRLs change,
 * and the broker signalled (broker_pid_file) to load it.
 */
static otk_status write_bundle(otk_clouds *c)
{
    char tmp[300], buf[8192];
    FILE *out, *in;
    size_t i, n;
    int ok;
    long pid = 0;
    if (!c->bundle[0])
        return OTK_OK;
    snprintf(tmp, sizeof tmp, "%s.tmp", c->bundle);
    (void)unlink(tmp);
    if ((out = fopen(tmp, "wx")) == NULL)
        return OTK_ERR_STORAGE;
    ok = fchmod(fileno(out), 0644) == 0; /* CRLs are public */
    for (i = 0; ok && i < c->n_x509; i++) {
        if ((in = fopen(c->crl[i], "r")) == NULL) {
            ok = 0;
            break;
        }
        while ((n = fread(buf, 1, sizeof buf, in)) > 0)
            ok = ok && fwrite(buf, 1, n, out) == n;
        fclose(in);
    }
    ok = ok && fflush(out) == 0 && fsync(fileno(out)) == 0;
    if (fclose(out) != 0 || !ok || rename(tmp, c->bundle) != 0) {
        (void)unlink(tmp);
        return OTK_ERR_STORAGE;
    }
    if (c->bundle_pid[0] && (in = fopen(c->bundle_pid, "r")) != NULL) {
        if (fscanf(in, "%ld", &pid) != 1)
            pid = 0;
        fclose(in);
        if (pid <= 0 || kill((pid_t)pid, SIGHUP) != 0)
            return OTK_ERR_CLOUD;
    }
    return OTK_OK;
}

otk_status otk_clouds_flush_crls(otk_clouds *c)
{
    size_t i;
    int wrote = 0;
    otk_status st = OTK_OK;
    for (i = 0; i < c->n_x509; i++)
        if (otk_x509_pending(c->x509[i])) {
            if (otk_x509_flush(c->x509[i]) != OTK_OK)
                st = OTK_ERR_CLOUD;
            wrote = 1;
        }
    if (wrote && write_bundle(c) != OTK_OK)
        st = OTK_ERR_CLOUD;
    return st;
}

size_t otk_clouds_crl_entries(const otk_clouds *c)
{
    size_t i, n = 0;
    for (i = 0; c != NULL && i < c->n_x509; i++)
        n += otk_x509_crl_entries(c->x509[i]);
    return n;
}

otk_status otk_clouds_flush(otk_clouds *c, unsigned timeout_ms)
{
    size_t i;
    otk_status st = OTK_OK;
    for (i = 0; i < c->n_pw; i++)
        if (otk_pwfile_pending(c->pw[i]) && otk_pwfile_flush(c->pw[i], timeout_ms) != OTK_OK)
            st = OTK_ERR_CLOUD;
    return st;
}

otk_status otk_clouds_refresh_crls(otk_clouds *c)
{
    size_t i;
    otk_status st = OTK_OK;
    for (i = 0; i < c->n_x509; i++)
        if (otk_x509_refresh(c->x509[i]) != OTK_OK)
            st = OTK_ERR_CLOUD;
    if (c->n_x509 && write_bundle(c) != OTK_OK)
        st = OTK_ERR_CLOUD;
    return st;
}

typedef struct sweep {
    otk_clouds *c;
    const otk_registry *reg;
    uint32_t cloud_id;
    char (*gone)[OTK_USER_MAX + 1];
    size_t n, cap;
    int failed;
} sweep;

/* Usernames are hex(device id) "-" version (src/agent/core/agent.c new_set). */
static void check_user(void *ud, const char *user)
{
    sweep *s = ud;
    otk_agent_device rec;
    uint8_t id[16];
    char hex[33];
    int named = 0;
    otk_status st;
    memcpy(hex, user, 32);
    hex[32] = '\0';
    if (strlen(user) < 34 || user[32] != '-' || otk_hex_decode(hex, id, 16) != 0)
        return; /* not one of ours: left alone */
    st = s->reg->get_device(s->reg->ctx, id, &rec);
    if (st != OTK_OK && st != OTK_ERR_NOT_FOUND) {
        s->failed = 1;
        return;
    }
    if (st == OTK_OK && rec.state != OTK_DS_REVOKED)
        named = (rec.has_committed && rec.committed.cloud.cloud_id == s->cloud_id &&
                 strcmp(rec.committed.cloud.user, user) == 0) ||
                (rec.has_pending && rec.pending.cloud.cloud_id == s->cloud_id &&
                 strcmp(rec.pending.cloud.user, user) == 0);
    otk_wipe(&rec, sizeof rec);
    if (named)
        return;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->gone = realloc(s->gone, s->cap * sizeof *s->gone);
        if (s->gone == NULL)
            abort();
    }
    snprintf(s->gone[s->n++], sizeof s->gone[0], "%s", user);
}

long otk_clouds_reconcile(otk_clouds *c, const otk_registry *reg)
{
    size_t i, k;
    long removed = 0;
    for (i = 0; i < c->n_pw; i++) {
        sweep s;
        memset(&s, 0, sizeof s);
        s.c = c;
        s.reg = reg;
        s.cloud_id = c->pw_id[i];
        otk_pwfile_each(c->pw[i], check_user, &s);
        for (k = 0; k < s.n; k++)
            if (otk_pwfile_remove(c->pw[i], s.cloud_id, s.gone[k]) == OTK_OK)
                removed++;
        free(s.gone);
        if (s.failed)
            return -1;
    }
    if (removed && otk_clouds_flush(c, 10000) != OTK_OK)
        return -1;
    return removed;
}
