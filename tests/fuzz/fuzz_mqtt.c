/*
 * Fuzz target: the agent's MQTT 5 packet decoder (tools/mqtt_link.h), over
 * a stream of packets as the link reads them from its broker. Whatever it
 * accepts lies inside the input, and a packet cut short is asked for again
 * (0), never read past its end.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt_link.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int inside(const void *p, size_t n, const uint8_t *b, size_t len)
{
    const uint8_t *q = p;
    return n == 0 || (q != NULL && q >= b && q + n <= b + len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        otk_mqtt_pkt p;
        size_t used = 0, cut;
        int rc = otk_mqtt_parse(data + off, size - off, &p, &used);
        if (rc <= 0)
            break;
        if (used == 0 || used > size - off)
            abort();
        if (!inside(p.topic, p.topic_len, data + off, used) ||
            !inside(p.payload, p.payload_len, data + off, used) ||
            !inside(p.reason_str, p.reason_str_len, data + off, used))
            abort();
        if (p.type == OTK_MQTT_PUBLISH && (p.qos > 1 || p.topic_len == 0))
            abort();
        /* The same packet one byte short: more is needed. */
        cut = used - 1;
        if (otk_mqtt_parse(data + off, cut, &p, &used) != 0)
            abort();
        off += cut + 1;
    }
    return 0;
}
