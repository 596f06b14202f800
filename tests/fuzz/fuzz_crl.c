/*
 * Fuzz target: the certificate clouds' CRL reader (otk_crl_parse), which
 * reads the CRL file back before each write (the agent's own, or another
 * agent's on a shared CRL). Whatever it accepts is a list sorted by serial,
 * each serial once, every entry within its bounds, and each entry's
 * serial is found.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "otakey/crl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    otk_crl_list l = {0};
    size_t i;
    if (otk_crl_parse(data, (long)size, &l) == 0) {
        for (i = 0; i < l.n; i++) {
            const otk_crl_entry *e = &l.e[i];
            if (e->sn_len < 1 || e->sn_len > OTK_CRL_SN_MAX || e->t_len < 2 ||
                e->t_len > OTK_CRL_TIME_MAX)
                abort();
            if (i > 0 && (l.e[i - 1].sn_len > e->sn_len ||
                          (l.e[i - 1].sn_len == e->sn_len &&
                           memcmp(l.e[i - 1].sn, e->sn, e->sn_len) >= 0)))
                abort();
            if (!(e->sn_len > 1 && e->sn[0] == 0 ? otk_crl_has(&l, e->sn + 1, e->sn_len - 1u)
                                                  : otk_crl_has(&l, e->sn, e->sn_len)))
                abort();
        }
    } else if (l.n != 0) {
        abort(); /* refused: nothing listed */
    }
    otk_crl_clear(&l);
    return 0;
}
