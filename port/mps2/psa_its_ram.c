/*
 * PSA internal trusted storage for the emulated board: a small table in
 * RAM standing in for the part's own (TF-M's ITS in flash, a secure
 * element's key slots). It outlives a restart of the PSA implementation
 * (mbedtls_psa_crypto_free, psa_crypto_init), which is what the tests'
 * "reboot" exercises; a real part keeps it across power cycles.
 */
#include <string.h>

#include "psa/internal_trusted_storage.h"

#define ITS_ENTRIES 8
#define ITS_DATA_MAX 256

static struct {
    psa_storage_uid_t uid;
    uint32_t len;
    psa_storage_create_flags_t flags;
    uint8_t used;
    uint8_t data[ITS_DATA_MAX];
} its[ITS_ENTRIES];

static int find(psa_storage_uid_t uid)
{
    int i;
    for (i = 0; i < ITS_ENTRIES; i++)
        if (its[i].used && its[i].uid == uid)
            return i;
    return -1;
}

psa_status_t psa_its_set(psa_storage_uid_t uid, uint32_t data_length, const void *p_data,
                         psa_storage_create_flags_t create_flags)
{
    int i = find(uid);
    if (data_length > ITS_DATA_MAX)
        return PSA_ERROR_INSUFFICIENT_STORAGE;
    if (i >= 0 && (its[i].flags & PSA_STORAGE_FLAG_WRITE_ONCE))
        return PSA_ERROR_NOT_PERMITTED;
    for (i = i >= 0 ? i : 0; i < ITS_ENTRIES && its[i].used && its[i].uid != uid; i++)
        ;
    if (i == ITS_ENTRIES)
        return PSA_ERROR_INSUFFICIENT_STORAGE;
    its[i].uid = uid;
    its[i].len = data_length;
    its[i].flags = create_flags;
    memcpy(its[i].data, p_data, data_length);
    its[i].used = 1;
    return PSA_SUCCESS;
}

psa_status_t psa_its_get(psa_storage_uid_t uid, uint32_t data_offset, uint32_t data_length,
                         void *p_data, size_t *p_data_length)
{
    int i = find(uid);
    if (i < 0)
        return PSA_ERROR_DOES_NOT_EXIST;
    if (data_offset > its[i].len)
        return PSA_ERROR_INVALID_ARGUMENT;
    if (data_length > its[i].len - data_offset)
        data_length = its[i].len - data_offset;
    memcpy(p_data, its[i].data + data_offset, data_length);
    if (p_data_length != NULL)
        *p_data_length = data_length;
    return PSA_SUCCESS;
}

psa_status_t psa_its_get_info(psa_storage_uid_t uid, struct psa_storage_info_t *p_info)
{
    int i = find(uid);
    if (i < 0)
        return PSA_ERROR_DOES_NOT_EXIST;
    p_info->size = its[i].len;
    p_info->flags = its[i].flags;
    return PSA_SUCCESS;
}

psa_status_t psa_its_remove(psa_storage_uid_t uid)
{
    int i = find(uid);
    if (i < 0)
        return PSA_ERROR_DOES_NOT_EXIST;
    if (its[i].flags & PSA_STORAGE_FLAG_WRITE_ONCE)
        return PSA_ERROR_NOT_PERMITTED;
    memset(&its[i], 0, sizeof its[i]);
    return PSA_SUCCESS;
}
