/*
 * keystore.h: the A/B key store on the device's key partition
 * (docs/protocol.md §6).
 *
 * Two slots, each the first half / second half of the partition. A slot
 * holds one record: a commit marker (one program unit at offset 0), then
 * magic, version, the key-set plaintext and a CRC-32; a second commit
 * marker is the slot's last unit. A slot is
 *   EMPTY      when its record does not verify (erased, torn, corrupt);
 *   STAGED     when the record verifies and neither marker is complete;
 *   COMMITTED  when the record verifies and a marker is complete (every
 *              bit away from the erased value: all 0x00 on 0xFF flash).
 * The active set is the committed record with the highest version; a
 * staged record counts only if its version is above the active one. The
 * new set always goes to the other slot, so the active one is never
 * touched until the new one is committed, and the commit is one program
 * operation of one unit. A torn marker reads as STAGED; committing again
 * programs the second marker, so no unit is programmed twice between
 * erases (ECC flash forbids it).
 */
#ifndef OTAKEY_KEYSTORE_H
#define OTAKEY_KEYSTORE_H

#include "otakey/common.h"
#include "otakey/port.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTK_SLOT_NONE 0xFFu

/* Smallest slot: the largest record plus the largest marker, rounded up. */
#define OTK_SLOT_MIN 256u
/* Smallest slot for version 2 certificate records (docs/protocol.md §11.4). */
#define OTK_SLOT_MIN_V2 1024u

/* Key-store state; all-zero is "not mounted". Fields are private. */
typedef struct otk_keystore {
    const otk_port *port;
    uint8_t mounted;
    uint8_t active;  /* slot index or OTK_SLOT_NONE */
    uint8_t staged;  /* slot index or OTK_SLOT_NONE */
    uint8_t invalid; /* bit i set: slot i did not verify at mount */
    uint32_t active_version;
    uint32_t staged_version;
} otk_keystore;

/*
 * Scans both slots and derives the active and staged sets. Never fails on
 * bad contents (they read as EMPTY); OTK_ERR_INVALID_ARGUMENT for a port
 * whose geometry is unusable, OTK_ERR_STORAGE when a read fails.
 */
OTK_CHECK_RETURN otk_status otk_ks_mount(otk_keystore *ks, const otk_port *port);

/*
 * Writes ks->version + key set to the inactive slot (erasing it first) and
 * verifies it by reading back. OTK_ERR_ROLLBACK when the version is not
 * above the active one. A previously staged set is replaced.
 */
OTK_CHECK_RETURN otk_status otk_ks_stage(otk_keystore *ks, const otk_keyset *set);

/*
 * Programs the commit marker of the staged set of this version, which then
 * becomes the active set. OTK_ERR_BAD_STATE when no staged set has it;
 * committing the active version again returns OTK_OK (idempotent).
 */
OTK_CHECK_RETURN otk_status otk_ks_commit(otk_keystore *ks, uint32_t version);

/* Erases the staged set of this version (OTK_OK when none is staged). */
OTK_CHECK_RETURN otk_status otk_ks_discard(otk_keystore *ks, uint32_t version);

/*
 * Reads the active (staged = 0) or staged (staged = 1) set into out,
 * checking its integrity again. OTK_ERR_NO_KEYSET when there is none,
 * OTK_ERR_CORRUPT when it no longer verifies. out is wiped on failure.
 */
OTK_CHECK_RETURN otk_status otk_ks_load(const otk_keystore *ks, int staged, otk_keyset *out);

/*
 * Version 2 certificate sets (docs/protocol.md §11.4) are records of format
 * 2: the key-set plaintext v2 (kind 2) followed by the device's private key.
 * To keep them off the stack, the caller builds the record in a buffer of
 * its own: it writes the body (plaintext, then the 32-byte private key) at
 * buf + OTK_KS_BODY_OFF and calls otk_ks_stage_record, which writes the
 * header and CRC around it (buf_size >= OTK_KS_RECORD_MAX) and programs it.
 * A slot must then hold OTK_KS_RECORD_MAX bytes plus the marker.
 */
#define OTK_KS_BODY_OFF 12u
#define OTK_KS_BODY2_MAX (OTK_KEYSET2_MAX_LEN + OTK_PRIV_LEN)
#define OTK_KS_RECORD_MAX (OTK_KS_BODY_OFF + OTK_KS_BODY2_MAX + 4u + 32u)
OTK_CHECK_RETURN otk_status otk_ks_stage_record(otk_keystore *ks, uint32_t version, uint8_t *buf,
                                                size_t buf_size, size_t body_len);
/*
 * The same for a password set: the body at buf + OTK_KS_BODY_OFF is its
 * version 1 encoding (docs/protocol.md §4.3; a version 2 plaintext of kind
 * 1 without its kind byte), written as a format 1 record. The device
 * stages what it decrypted (and decoded) as it is, with no re-encoding. A
 * body that does not decode fails the read-back: OTK_ERR_STORAGE, nothing
 * staged. buf_size >= OTK_KS_BODY_OFF + body_len + 4 + 32 (the padding to a program unit).
 */
OTK_CHECK_RETURN otk_status otk_ks_stage_plain(otk_keystore *ks, uint32_t version, uint8_t *buf,
                                               size_t buf_size, size_t body_len);

/*
 * A certificate set's certificate (DER) and private key, read from flash
 * (otk_ks_load gives its other fields, with cert NULL). OTK_ERR_BAD_STATE
 * for a password set, OTK_ERR_BUFFER_TOO_SMALL for a short der buffer.
 */
OTK_CHECK_RETURN otk_status otk_ks_read_cert(const otk_keystore *ks, int staged, uint8_t *der,
                                             size_t der_size, size_t *der_len);
OTK_CHECK_RETURN otk_status otk_ks_read_key(const otk_keystore *ks, int staged,
                                            uint8_t priv[OTK_PRIV_LEN]);

/* Versions (0 when none). */
/* The slot the next set will be staged in (0 or 1). */
uint8_t otk_ks_next_slot(const otk_keystore *ks);
uint32_t otk_ks_active_version(const otk_keystore *ks);
uint32_t otk_ks_staged_version(const otk_keystore *ks);

/* CRC-32 (IEEE 802.3, reflected, as zlib's crc32) used by the record. */
uint32_t otk_crc32(uint32_t crc, const uint8_t *p, size_t n);

#ifdef __cplusplus
}
#endif
#endif
