/*
 * Writes the fuzz seed corpus from our own encoder: every message of a
 * real claim / rotation / switch / abort / refusal run, key-set
 * plaintexts, and key-partition images in each state.
 * Usage: mkcorpus <dir>   (creates <dir>/fuzz_<target>/...)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "world.h"

#include "otakey/keystore.h"
#include "otakey/wire.h"

static const char *root;
static unsigned seq;

static void put(const char *target, const char *name, const uint8_t *p, size_t n)
{
    char path[512];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", root, target);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/%03u-%s", root, target, seq++, name);
    f = fopen(path, "wb");
    if (f == NULL || fwrite(p, 1, n, f) != n) {
        perror(path);
        exit(1);
    }
    fclose(f);
}

static void tap(void *ctx, int up, const uint8_t *msg, size_t len)
{
    uint8_t sel[OTK_MSG_MAX_LEN + 1];
    unsigned k;
    (void)ctx;
    put("fuzz_wire", otk_msg_name(msg[1]), msg, len);
    if (up) {
        put("fuzz_agent", otk_msg_name(msg[1]), msg, len);
        return;
    }
    /* fuzz_device: a state selector byte, then the message, for every state. */
    for (k = 0; k < 5; k++) {
        sel[0] = (uint8_t)k;
        memcpy(sel + 1, msg, len);
        put("fuzz_device", otk_msg_name(msg[1]), sel, len + 1);
    }
}

static void keysets(void)
{
    otk_keyset ks;
    uint8_t buf[OTK_KEYSET_MAX_LEN];
    size_t n;
    memset(&ks, 0x11, sizeof ks.ak);
    if (otk_cloud_set(&ks.cloud, 1, "127.0.0.1", 8883, 1, "00112233445566778899aabbccddeeff-1",
                      "abcdefghijklmnopqrstuvwxyz012345") != OTK_OK ||
        otk_keyset_encode(&ks, buf, sizeof buf, &n) != OTK_OK)
        exit(1);
    put("fuzz_keyset", "typical", buf, n);
    if (otk_cloud_set(&ks.cloud, 0xffffffffu, "h", 0, 0, "u", "s") != OTK_OK ||
        otk_keyset_encode(&ks, buf, sizeof buf, &n) != OTK_OK)
        exit(1);
    put("fuzz_keyset", "minimal", buf, n);
}

static void partitions(void)
{
    static otk_crypto none;
    otk_flashsim f;
    otk_port port;
    otk_keystore ks;
    otk_keyset k;
    uint32_t v;
    if (otk_flashsim_init(&f, 512, 256, 4) != 0)
        exit(1);
    otk_flashsim_port(&f, &none, &port);
    if (otk_ks_mount(&ks, &port) != OTK_OK)
        exit(1);
    put("fuzz_keystore", "empty", f.mem, f.size);
    memset(&k, 0x22, sizeof k.ak);
    if (otk_cloud_set(&k.cloud, 2, "cloud.example", 8883, 1, "user-1", "secret") != OTK_OK)
        exit(1);
    for (v = 1; v <= 3; v++) {
        k.version = v;
        if (otk_ks_stage(&ks, &k) != OTK_OK)
            exit(1);
        put("fuzz_keystore", "staged", f.mem, f.size);
        if (otk_ks_commit(&ks, v) != OTK_OK)
            exit(1);
        put("fuzz_keystore", "committed", f.mem, f.size);
    }
    f.mem[256] = 0x7f; /* a torn marker */
    put("fuzz_keystore", "torn", f.mem, f.size);
    otk_flashsim_free(&f);
}

int main(int argc, char **argv)
{
    world w;
    wdev d, e;
    if (argc != 2) {
        fprintf(stderr, "usage: mkcorpus <dir>\n");
        return 2;
    }
    root = argv[1];
    mkdir(root, 0755);
    if (world_init(&w, 5) != 0 || wdev_init(&w, &d, 1) != 0 || wdev_init(&w, &e, 1) != 0)
        return 1;
    w.tap = tap;
    if (wdev_boot(&w, &d) != OTK_OK || world_settle(&w, &d, 32) != OTK_OK)
        return 1;
    if (otk_device_poll(&d.dev) != OTK_OK)
        return 1;
    if (world_settle(&w, &d, 32) != OTK_OK ||
        world_request(&w, &d, OTK_WANT_ROTATE, 0) != OTK_OK || world_settle(&w, &d, 32) != OTK_OK ||
        world_request(&w, &d, OTK_WANT_SWITCH, WORLD_CLOUD_B) != OTK_OK)
        return 1;
    /* The switch is refused by the cloud once: ABORT and NACK. */
    {
        otk_cloud c;
        if (otk_device_cloud(&d.dev, OTK_SET_STAGED, &c) != OTK_OK ||
            w.cloudif.remove(w.cloudif.ctx, c.cloud_id, c.user) != OTK_OK)
            return 1;
    }
    if (world_settle(&w, &d, 32) != OTK_OK)
        return 1;
    /* A clone: CLAIM refused with an ERROR. */
    if (wdev_boot(&w, &e) != OTK_OK)
        return 1;
    (void)world_settle(&w, &e, 2);
    keysets();
    partitions();
    printf("mkcorpus: %u files in %s\n", seq, root);
    wdev_free(&d);
    wdev_free(&e);
    world_free(&w);
    return 0;
}
