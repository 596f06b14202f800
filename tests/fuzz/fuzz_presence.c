/*
 * Fuzz target: the agent's table of sleeping devices (tools/presence.h)
 * over presence reports as the broker's plugin sends them, one per line of
 * the input. Invariants: a report that is not one changes nothing; the
 * devices known asleep are never more than the devices known; a device
 * whose last report admitted it is awake; a departure of the connection
 * last admitted puts it to sleep; a reset ("R") forgets every device.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "otakey/common.h"
#include "presence.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    otk_presence *p = otk_presence_new();
    size_t start = 0, i;
    if (p == NULL)
        return 0;
    for (i = 0; i <= size; i++) {
        if (i < size && data[i] != '\n')
            continue;
        {
            const char *line = (const char *)data + start;
            size_t len = i - start, known = otk_presence_known(p);
            size_t sleeping = otk_presence_sleeping(p);
            if (len == 1 && line[0] == 'R') { /* the agent's broker connection came back */
                otk_presence_reset(p);
                if (otk_presence_known(p) != 0 || otk_presence_sleeping(p) != 0)
                    abort();
            } else if (otk_presence_apply(p, line, len) != 0) {
                if (otk_presence_known(p) != known || otk_presence_sleeping(p) != sleeping)
                    abort();
            } else {
                uint8_t id[16];
                char hex[33];
                memcpy(hex, line + 2, 32);
                hex[32] = '\0';
                if (otk_hex_decode(hex, id, 16) != 0)
                    abort(); /* accepted, so its id decodes */
                if (line[0] == '1' && otk_presence_asleep(p, id))
                    abort();
            }
            if (otk_presence_sleeping(p) > otk_presence_known(p))
                abort();
        }
        start = i + 1;
    }
    otk_presence_free(p);
    return 0;
}
