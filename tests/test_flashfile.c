/*
 * The file-backed key partition (port/posix/flash_file.c) and its power-cut
 * hook: operations are counted per erased sector and per programmed unit;
 * a cut ends the process with OTK_FILE_FLASH_CUT_EXIT at exactly that
 * operation, leaving the earlier ones done and later ones undone; a torn
 * cut leaves the cut operation half done (a programmed prefix, a partly
 * erased sector). Each cut runs in a child process, as it ends the process.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "posix_port.h"

#define SIZE 512u
#define SECTOR 256u
#define UNIT 8u

static char path[] = "/tmp/otk-flashfile-XXXXXX";

static void fresh(otk_file_flash *f, otk_port *p)
{
    unlink(path);
    CHECK(otk_file_flash_open(f, path, SIZE, SECTOR, UNIT) == 0);
    otk_posix_port(f, NULL, p);
}

static void image(uint8_t out[SIZE])
{
    otk_file_flash f;
    otk_port p;
    CHECK(otk_file_flash_open(&f, path, SIZE, SECTOR, UNIT) == 0);
    otk_posix_port(&f, NULL, &p);
    CHECK(p.flash_read(p.ctx, 0, out, SIZE) == 0);
    otk_file_flash_close(&f);
}

static int all(const uint8_t *b, size_t n, uint8_t v)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (b[i] != v)
            return 0;
    return 1;
}

/*
 * Sector 0 is programmed to zeros, then the child erases it (operation 1)
 * and programs 3 units of zeros at 256 (operations 2..4) with power cut at
 * operation cut. Returns the child's exit status.
 */
static int run_cut(unsigned long cut, unsigned tear)
{
    static const uint8_t zeros[SECTOR] = {0};
    otk_file_flash f;
    otk_port p;
    int status;
    pid_t pid;
    fresh(&f, &p);
    CHECK(p.flash_prog(p.ctx, 0, zeros, SECTOR) == 0);
    otk_file_flash_close(&f);
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        CHECK(otk_file_flash_open(&f, path, SIZE, SECTOR, UNIT) == 0);
        otk_posix_port(&f, NULL, &p);
        otk_file_flash_cut(&f, cut, tear);
        if (p.flash_erase(p.ctx, 0) != 0 || p.flash_prog(p.ctx, SECTOR, zeros, 3 * UNIT) != 0)
            _exit(1);
        _exit(0);
    }
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

/* A torn region: a prefix of want, at most one byte between, then old. */
static int torn_shape(const uint8_t *b, size_t n, uint8_t want, uint8_t old)
{
    size_t i = 0;
    while (i < n && b[i] == want)
        i++;
    if (i < n)
        i++; /* the byte caught mid-operation */
    return all(b + i, n - i, old);
}

int main(void)
{
    static const uint8_t data[24] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
                                     13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24};
    uint8_t img[SIZE], back[24];
    otk_file_flash f;
    otk_port p;
    unsigned long k;
    int torn_prog = 0, torn_erase = 0;
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);

    /* Hook off: NOR semantics, and the operations counted. */
    fresh(&f, &p);
    CHECK(f.ops == 0);
    CHECK(p.flash_prog(p.ctx, 0, data, 24) == 0);
    CHECK(f.ops == 3);
    CHECK(p.flash_read(p.ctx, 0, back, 24) == 0 && memcmp(back, data, 24) == 0);
    CHECK(p.flash_prog(p.ctx, 0, (const uint8_t[8]){0xFF, 0xFF, 0, 0, 0, 0, 0, 0}, 8) == 0);
    CHECK(p.flash_read(p.ctx, 0, back, 2) == 0 && back[0] == 1 && back[1] == 2);
    CHECK(p.flash_prog(p.ctx, 3, data, 8) != 0); /* misaligned */
    CHECK(p.flash_erase(p.ctx, 0) == 0);
    CHECK(f.ops == 5);
    CHECK(p.flash_read(p.ctx, 0, back, 24) == 0 && all(back, 24, 0xFF));
    otk_file_flash_close(&f);

    /* A cut past the last operation never fires. */
    CHECK(run_cut(5, 0) == 0);

    /* Clean cuts: operation k is not done, the ones before it are. */
    CHECK(run_cut(1, 0) == OTK_FILE_FLASH_CUT_EXIT);
    image(img);
    CHECK(all(img, SECTOR, 0x00) && all(img + SECTOR, SECTOR, 0xFF));
    for (k = 2; k <= 4; k++) {
        CHECK(run_cut(k, 0) == OTK_FILE_FLASH_CUT_EXIT);
        image(img);
        CHECK(all(img, SECTOR, 0xFF));
        CHECK(all(img + SECTOR, (k - 2) * UNIT, 0x00));
        CHECK(all(img + SECTOR + (k - 2) * UNIT, SECTOR - (k - 2) * UNIT, 0xFF));
    }

    /* Torn cuts with many tear values (each tears at its own length):
     * always the torn shape, and some of them really half done. */
    for (k = 1; k <= 64; k++) {
        unsigned long at = 1 + k % 4;
        CHECK(run_cut(at, (unsigned)k) == OTK_FILE_FLASH_CUT_EXIT);
        image(img);
        if (at == 1) {
            CHECK(torn_shape(img, SECTOR, 0xFF, 0x00));
            CHECK(all(img + SECTOR, SECTOR, 0xFF));
            torn_erase += !all(img, SECTOR, 0xFF) && !all(img, SECTOR, 0x00);
        } else {
            CHECK(all(img, SECTOR, 0xFF));
            CHECK(all(img + SECTOR, (at - 2) * UNIT, 0x00));
            CHECK(torn_shape(img + SECTOR + (at - 2) * UNIT, UNIT, 0x00, 0xFF));
            CHECK(all(img + SECTOR + (at - 1) * UNIT, SECTOR - (at - 1) * UNIT, 0xFF));
            torn_prog += !all(img + SECTOR + (at - 2) * UNIT, UNIT, 0xFF) &&
                         !all(img + SECTOR + (at - 2) * UNIT, UNIT, 0x00);
        }
    }
    CHECK(torn_erase > 8 && torn_prog > 8);

    /* The partition holds secrets: created 0600 whatever the umask, and an
     * existing partition others could read is narrowed when opened. */
    {
        struct stat st;
        mode_t old = umask(0);
        fresh(&f, &p);
        CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
        otk_file_flash_close(&f);
        CHECK(chmod(path, 0644) == 0);
        CHECK(otk_file_flash_open(&f, path, SIZE, SECTOR, UNIT) == 0);
        CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
        otk_file_flash_close(&f);
        umask(old);
    }
    unlink(path);
    return CHECK_DONE();
}
