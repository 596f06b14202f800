/*
 * Which devices sleep: the agent broker's plugin reports each device's
 * admission ("1 <id> <conn>") and departure ("0 <id> <conn>") on the
 * presence topic (src/broker/mosquitto_plugin.c). A departure counts only
 * for the connection it names: the end of a connection a newer one of the
 * same device took over leaves the device awake. A device the agent heard
 * nothing of is not asleep (it is offered its updates as before).
 */
#ifndef OTK_PRESENCE_H
#define OTK_PRESENCE_H

#include <stddef.h>
#include <stdint.h>

typedef struct otk_presence otk_presence;

otk_presence *otk_presence_new(void);
void otk_presence_free(otk_presence *p);

/* Forgets every report (the agent's broker connection was lost: reports
 * sent meanwhile are gone, so no device is known asleep any more). */
void otk_presence_reset(otk_presence *p);

/* Applies one report; 0, or -1 when it is not one (nothing changes). */
int otk_presence_apply(otk_presence *p, const char *msg, size_t len);

/* 1 when the device's last connection ended and no newer one began. */
int otk_presence_asleep(const otk_presence *p, const uint8_t id[16]);

/* Devices known (ever reported) and known asleep. */
size_t otk_presence_known(const otk_presence *p);
size_t otk_presence_sleeping(const otk_presence *p);

#endif
