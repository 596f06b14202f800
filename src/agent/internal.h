/*
 * Private header of the agent library (protocol core, in-memory registry).
 * Every .c file of src/agent includes it first.
 */
#ifndef OTK_AGENT_INTERNAL_H
#define OTK_AGENT_INTERNAL_H

#include <stdio.h>
#include <stdlib.h>

#include "../common/internal.h"
#include "otakey/agent.h"

#endif
