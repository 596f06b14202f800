/* Campaign selectors, shared by both registry backends (store_internal.h). */
#include "../internal.h"
#include "store_internal.h"

void otk_selector_show(char *dst, size_t n, const char *src)
{
    size_t len = strlen(src), cut;
    if (len < n) {
        memcpy(dst, src, len + 1);
        return;
    }
    cut = n - 5; /* room for ",..." and the NUL */
    while (cut > 0 && src[cut] != ',')
        cut--;
    memcpy(dst, src, cut);
    memcpy(dst + cut, ",...", 5);
}

otk_status otk_selector_ids(const char *p, otk_status (*fn)(void *user, const uint8_t id[16]),
                            void *user)
{
    uint8_t dev[16];
    if (*p == '\0')
        return OTK_ERR_BAD_VALUE;
    while (*p) {
        char one[33];
        if (strlen(p) < 32)
            return OTK_ERR_BAD_VALUE;
        memcpy(one, p, 32);
        one[32] = '\0';
        if (otk_hex_decode(one, dev, 16) != 0 || (p[32] != ',' && p[32] != '\0'))
            return OTK_ERR_BAD_VALUE;
        OTK_TRY(fn(user, dev));
        p += p[32] ? 33 : 32;
    }
    return OTK_OK;
}
