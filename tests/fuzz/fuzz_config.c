/*
 * Fuzz target: the agent's configuration parser (INI). Any input must be
 * either accepted with a complete configuration or refused with a message.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];

static void remove_file(void)
{
    remove(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    otk_agentd_config cfg;
    char err[512];
    FILE *f;
    if (!path[0]) {
        /* The file is rewritten on every run: memory-backed when possible,
         * which makes the target about ten times faster than on disk. */
        snprintf(path, sizeof path, "%s/otakey-fuzz-config-%d.ini",
                 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", (int)getpid());
        atexit(remove_file);
    }
    f = fopen(path, "wb");
    if (f == NULL)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    err[0] = '\0';
    if (otk_agentd_config_load(path, &cfg, err, sizeof err) == 0) {
        if (!cfg.database[0] || !cfg.signing_key[0] || cfg.n_clouds == 0 ||
            cfg.n_clouds > OTK_AGENT_MAX_CLOUDS)
            abort();
    } else if (err[0] == '\0') {
        abort(); /* a refusal always says why */
    }
    return 0;
}
