/*
 * NOR flash simulator for the key partition, RAM-backed, with power-cut
 * injection: power fails at the N-th program/erase operation, and that
 * operation can be torn (a random part of its bits changed). After a cut
 * every operation fails until otk_flashsim_reboot(), as on a board whose
 * supply dropped. Each erased sector and each programmed unit (prog_size
 * bytes) is one operation, as the hardware does them. Erase sets the
 * erased value (0xFF, or 0x00); program moves bits away from it only (AND
 * on 0xFF flash, OR on 0x00 flash) and enforces alignment to prog_size.
 * Unless reprogramming is allowed, a unit programmed (or torn) since its
 * sector's last erase is refused a second program, as ECC flash is, and
 * the attempt is counted in reprograms; a read of a unit torn by a cut
 * then fails, as an ECC error does.
 */
#ifndef OTK_FLASHSIM_H
#define OTK_FLASHSIM_H

#include <stdint.h>

#include "otakey/port.h"

typedef struct otk_flashsim {
    uint8_t *mem;
    uint32_t size, sector_size, prog_size;
    uint8_t erased;         /* 0xFF or 0x00 */
    int reprogram;          /* a unit may be programmed again */
    uint8_t *programmed;    /* one byte per unit: 1 programmed since its erase, 2 torn */
    unsigned long reprograms; /* second programs of a unit refused */
    unsigned long ops;      /* program + erase operations since creation */
    long cut_at;            /* op index that loses power; -1: never */
    int tear;               /* the cut op is torn rather than skipped */
    int dead;               /* power is off */
    long fail_at;           /* op index that returns an error (no cut); -1 never */
    uint64_t rng;           /* tear pattern state */
    uint32_t now_ms;        /* simulated clock, advanced by the test */
    unsigned long reads;
    unsigned long glitch_at; /* the read of this count fails once (a bus glitch); 0 never */
} otk_flashsim;

/* Creates an erased partition (size = 2 slots), 0xFF and program-once. Returns 0 or -1. */
int otk_flashsim_init(otk_flashsim *f, uint32_t size, uint32_t sector_size, uint32_t prog_size);
/* The same with an erased value of 0xFF or 0x00, and reprogramming allowed or not. */
int otk_flashsim_init2(otk_flashsim *f, uint32_t size, uint32_t sector_size, uint32_t prog_size,
                       uint8_t erased, int reprogram);
void otk_flashsim_free(otk_flashsim *f);

/* Arms a power cut at operation index op (counted from now), torn or clean. */
void otk_flashsim_cut(otk_flashsim *f, unsigned long op, int tear, uint64_t seed);

/* Power comes back: operations work again; memory is kept. */
void otk_flashsim_reboot(otk_flashsim *f);

/* Fills an otk_port over this simulator and the given crypto table. */
void otk_flashsim_port(otk_flashsim *f, const otk_crypto *crypto, otk_port *out);

#endif
