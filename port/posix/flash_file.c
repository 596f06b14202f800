/* A key partition in a file, with the flash port's NOR semantics. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "posix_port.h"

int otk_file_flash_open(otk_file_flash *f, const char *path, uint32_t size, uint32_t sector_size,
                        uint32_t prog_size)
{
    struct stat st;
    uint8_t ff[512];
    uint32_t off;
    memset(f, 0, sizeof *f);
    f->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (f->fd < 0)
        return -1;
    if (fstat(f->fd, &st) != 0)
        goto fail;
    if (st.st_size == 0) {
        memset(ff, 0xFF, sizeof ff);
        for (off = 0; off < size; off += sizeof ff)
            if (pwrite(f->fd, ff, size - off < sizeof ff ? size - off : sizeof ff, off) < 0)
                goto fail;
        if (fsync(f->fd) != 0)
            goto fail;
    } else if ((uint64_t)st.st_size != size) {
        errno = EINVAL;
        goto fail;
    }
    f->size = size;
    f->sector_size = sector_size;
    f->prog_size = prog_size;
    return 0;
fail:
    close(f->fd);
    f->fd = -1;
    return -1;
}

void otk_file_flash_close(otk_file_flash *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
}

static int ff_read(void *ctx, uint32_t off, uint8_t *buf, uint32_t len)
{
    otk_file_flash *f = ctx;
    if (off > f->size || len > f->size - off)
        return -1;
    return pread(f->fd, buf, len, off) == (ssize_t)len ? 0 : -1;
}

static int ff_prog(void *ctx, uint32_t off, const uint8_t *buf, uint32_t len)
{
    otk_file_flash *f = ctx;
    uint8_t cur[256];
    uint32_t done = 0, i, n;
    if (off > f->size || len > f->size - off || off % f->prog_size || len % f->prog_size)
        return -1;
    while (done < len) {
        n = len - done < sizeof cur ? len - done : (uint32_t)sizeof cur;
        if (pread(f->fd, cur, n, off + done) != (ssize_t)n)
            return -1;
        for (i = 0; i < n; i++)
            cur[i] &= buf[done + i]; /* NOR: programming only clears bits */
        if (pwrite(f->fd, cur, n, off + done) != (ssize_t)n)
            return -1;
        done += n;
    }
    return fsync(f->fd) == 0 ? 0 : -1;
}

static int ff_erase(void *ctx, uint32_t off)
{
    otk_file_flash *f = ctx;
    uint8_t ff[256];
    uint32_t done;
    if (off >= f->size || off % f->sector_size)
        return -1;
    memset(ff, 0xFF, sizeof ff);
    for (done = 0; done < f->sector_size; done += sizeof ff)
        if (pwrite(f->fd, ff, sizeof ff < f->sector_size - done ? sizeof ff : f->sector_size - done,
                   off + done) < 0)
            return -1;
    return fsync(f->fd) == 0 ? 0 : -1;
}

static uint32_t mono_ms(void *ctx)
{
    struct timespec ts;
    (void)ctx;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

void otk_posix_port(otk_file_flash *f, const otk_crypto *crypto, otk_port *out)
{
    memset(out, 0, sizeof *out);
    out->version = OTK_PORT_VERSION;
    out->ctx = f;
    out->flash_size = f->size;
    out->sector_size = f->sector_size;
    out->prog_size = f->prog_size;
    out->flash_read = ff_read;
    out->flash_prog = ff_prog;
    out->flash_erase = ff_erase;
    out->now_ms = mono_ms;
    out->crypto = crypto;
}
