/*
 * Runs a fuzz target without libFuzzer: every file of the corpus
 * directories given, then a bounded number of mutations of them (seeded),
 * so ctest exercises each target on every build. With clang and
 * -DOTK_FUZZ=ON the same targets link against libFuzzer instead.
 * Usage: replay [-n mutations] dir...
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_INPUT 4096

static uint64_t state = 0x5eed;

static uint64_t rnd(void)
{
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint8_t inputs[256][MAX_INPUT];
static size_t sizes[256], n_inputs;

static void load_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[1024];
    if (d == NULL) {
        fprintf(stderr, "replay: cannot open %s\n", dir);
        exit(2);
    }
    while ((e = readdir(d)) != NULL && n_inputs < 256) {
        FILE *f;
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        f = fopen(path, "rb");
        if (f == NULL)
            continue;
        sizes[n_inputs] = fread(inputs[n_inputs], 1, MAX_INPUT, f);
        fclose(f);
        LLVMFuzzerTestOneInput(inputs[n_inputs], sizes[n_inputs]);
        n_inputs++;
    }
    closedir(d);
}

int main(int argc, char **argv)
{
    static uint8_t buf[MAX_INPUT];
    long i, mutations = 20000;
    int a = 1;
    if (argc > 2 && strcmp(argv[1], "-n") == 0) {
        mutations = atol(argv[2]);
        a = 3;
    }
    for (; a < argc; a++)
        load_dir(argv[a]);
    if (n_inputs == 0) {
        fprintf(stderr, "replay: empty corpus\n");
        return 2;
    }
    for (i = 0; i < mutations; i++) {
        size_t k = (size_t)(rnd() % n_inputs), len = sizes[k], j, flips;
        memcpy(buf, inputs[k], len);
        switch (rnd() % 4) {
        case 0: /* flip bits */
            for (flips = 1 + rnd() % 4, j = 0; j < flips && len; j++)
                buf[rnd() % len] ^= (uint8_t)(1u << (rnd() % 8));
            break;
        case 1: /* truncate */
            len = len ? (size_t)(rnd() % len) : 0;
            break;
        case 2: /* extend */
            for (flips = 1 + rnd() % 8; flips-- && len < MAX_INPUT;)
                buf[len++] = (uint8_t)rnd();
            break;
        default: /* overwrite a byte with an interesting value */
            if (len)
                buf[rnd() % len] = (uint8_t[]){0, 1, 0x7f, 0x80, 0xff}[rnd() % 5];
            break;
        }
        LLVMFuzzerTestOneInput(buf, len);
    }
    printf("replay: %zu corpus inputs, %ld mutations: 0 crashes\n", n_inputs, mutations);
    return 0;
}
