/*
 * The audit log's hash chain, one link per row (store_internal.h): shared
 * by the SQLite and PostgreSQL backends, which store and verify the same
 * chain.
 */
#include "../internal.h"

#include "store_internal.h"

otk_status otk_audit_link(const otk_crypto *c, const uint8_t prev[32], uint64_t seq, int64_t ts,
                          const otk_audit *ev, const char *actor, uint8_t hash[32])
{
    uint8_t row[8 + 8 + 3 + OTK_DEVICE_ID_LEN + 4 + 4 + 1];
    otk_iov parts[3];
    size_t actor_len = actor ? strlen(actor) : 0;
    if (actor_len > OTK_ACTOR_MAX)
        return OTK_ERR_INVALID_ARGUMENT;
    otk_put_u32(row, (uint32_t)(seq >> 32));
    otk_put_u32(row + 4, (uint32_t)seq);
    otk_put_u32(row + 8, (uint32_t)((uint64_t)ts >> 32));
    otk_put_u32(row + 12, (uint32_t)ts);
    row[16] = ev->kind;
    row[17] = ev->msg_type;
    row[18] = ev->has_id;
    memset(row + 19, 0, OTK_DEVICE_ID_LEN);
    if (ev->has_id)
        memcpy(row + 19, ev->id, OTK_DEVICE_ID_LEN);
    otk_put_u32(row + 35, ev->version);
    otk_put_u32(row + 39, (uint32_t)ev->code);
    parts[0].p = prev;
    parts[0].n = 32;
    /* A row without an actor hashes as it did before actors existed. */
    row[43] = (uint8_t)actor_len;
    parts[1].p = row;
    parts[1].n = actor_len ? sizeof row : sizeof row - 1;
    parts[2].p = (const uint8_t *)actor;
    parts[2].n = actor_len;
    return c->sha256(c->ctx, parts, actor_len ? 3 : 2, hash);
}
