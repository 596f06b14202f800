#include "memcloud.h"

#include <stdlib.h>
#include <string.h>

typedef struct client {
    uint32_t cloud_id;
    char user[OTK_USER_MAX + 1];
    char secret[OTK_SECRET_MAX + 1];
    uint8_t device_id[OTK_DEVICE_ID_LEN];
} client;

struct otk_memcloud {
    client *c;
    size_t n, cap;
    unsigned fail;
};

otk_memcloud *otk_memcloud_new(void)
{
    return calloc(1, sizeof(otk_memcloud));
}

void otk_memcloud_free(otk_memcloud *m)
{
    if (m == NULL)
        return;
    free(m->c);
    free(m);
}

static long find(const otk_memcloud *m, uint32_t cloud_id, const char *user)
{
    size_t i;
    for (i = 0; i < m->n; i++)
        if (m->c[i].cloud_id == cloud_id && strcmp(m->c[i].user, user) == 0)
            return (long)i;
    return -1;
}

static otk_status mc_create(void *ctx, const uint8_t device_id[16], const otk_cloud *creds)
{
    otk_memcloud *m = ctx;
    long i;
    if (m->fail) {
        m->fail--;
        return OTK_ERR_CLOUD;
    }
    i = find(m, creds->cloud_id, creds->user);
    if (i < 0) {
        if (m->n == m->cap) {
            m->cap = m->cap ? 2 * m->cap : 16;
            m->c = realloc(m->c, m->cap * sizeof *m->c);
            if (m->c == NULL)
                abort();
        }
        i = (long)m->n++;
    }
    memset(&m->c[i], 0, sizeof m->c[i]);
    m->c[i].cloud_id = creds->cloud_id;
    strcpy(m->c[i].user, creds->user);
    strcpy(m->c[i].secret, creds->secret);
    memcpy(m->c[i].device_id, device_id, OTK_DEVICE_ID_LEN);
    return OTK_OK;
}

static otk_status mc_remove(void *ctx, uint32_t cloud_id, const char *user)
{
    otk_memcloud *m = ctx;
    long i;
    if (m->fail) {
        m->fail--;
        return OTK_ERR_CLOUD;
    }
    i = find(m, cloud_id, user);
    if (i >= 0)
        m->c[i] = m->c[--m->n];
    return OTK_OK;
}

void otk_memcloud_adapter(otk_memcloud *m, otk_cloud_adapter *out)
{
    out->ctx = m;
    out->create = mc_create;
    out->remove = mc_remove;
    out->ensure = NULL;
}

otk_proof otk_memcloud_connect(otk_memcloud *m, const otk_cloud *creds)
{
    long i = find(m, creds->cloud_id, creds->user);
    return i >= 0 && strcmp(m->c[i].secret, creds->secret) == 0 ? OTK_PROOF_OK : OTK_PROOF_REFUSED;
}

size_t otk_memcloud_count(const otk_memcloud *m)
{
    return m->n;
}

void otk_memcloud_fail(otk_memcloud *m, unsigned n)
{
    m->fail = n;
}
