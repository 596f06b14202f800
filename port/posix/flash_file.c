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
    /* The partition holds the device's AK and cloud secret: the owner's alone. */
    if (fstat(f->fd, &st) != 0 || ((st.st_mode & 077) && fchmod(f->fd, 0600) != 0))
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

void otk_file_flash_cut(otk_file_flash *f, unsigned long op, unsigned tear)
{
    f->cut_at = op;
    f->tear = tear;
}

/* A fixed mix of the cut: varied but reproducible torn lengths. */
static uint64_t cut_mix(const otk_file_flash *f)
{
    uint64_t z = ((uint64_t)f->cut_at ^ (uint64_t)f->tear << 32) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Program len bytes at off with NOR semantics (bits only cleared). */
static int nor_write(otk_file_flash *f, uint32_t off, const uint8_t *buf, uint32_t len)
{
    uint8_t cur[256];
    uint32_t done = 0, i, n;
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
    return 0;
}

/*
 * The power cut inside a program call: units before the cut one land,
 * the cut one lands in part when torn, and the process dies. A process
 * exit keeps what was written to the file, as flash keeps programmed bits.
 */
static void prog_cut(otk_file_flash *f, uint32_t off, const uint8_t *buf, uint32_t units)
{
    uint64_t r = cut_mix(f);
    uint32_t n, u = units * f->prog_size;
    uint8_t b;
    (void)nor_write(f, off, buf, u);
    if (f->tear) {
        n = (uint32_t)(r % f->prog_size);
        (void)nor_write(f, off + u, buf + u, n);
        b = (uint8_t)(buf[u + n] | (uint8_t)(r >> 32)); /* only some bits clear */
        (void)nor_write(f, off + u + n, &b, 1);
    }
    _exit(OTK_FILE_FLASH_CUT_EXIT);
}

static int ff_prog(void *ctx, uint32_t off, const uint8_t *buf, uint32_t len)
{
    otk_file_flash *f = ctx;
    uint32_t units;
    if (off > f->size || len > f->size - off || off % f->prog_size || len % f->prog_size)
        return -1;
    units = len / f->prog_size;
    if (f->cut_at > f->ops && f->cut_at <= f->ops + units)
        prog_cut(f, off, buf, (uint32_t)(f->cut_at - f->ops - 1));
    f->ops += units;
    if (nor_write(f, off, buf, len) != 0)
        return -1;
    return fsync(f->fd) == 0 ? 0 : -1;
}

static int ff_erase(void *ctx, uint32_t off)
{
    otk_file_flash *f = ctx;
    uint8_t ff[256];
    uint32_t done, n, end;
    uint64_t r = 0;
    if (off >= f->size || off % f->sector_size)
        return -1;
    memset(ff, 0xFF, sizeof ff);
    end = f->sector_size;
    if (++f->ops == f->cut_at) {
        if (!f->tear)
            _exit(OTK_FILE_FLASH_CUT_EXIT);
        /* Torn: a prefix is erased, the byte at its edge is garbage. */
        r = cut_mix(f);
        end = (uint32_t)(r % f->sector_size);
    }
    for (done = 0; done < end; done += n) {
        n = sizeof ff < end - done ? (uint32_t)sizeof ff : end - done;
        if (pwrite(f->fd, ff, n, off + done) < 0)
            return -1;
    }
    if (end < f->sector_size) {
        uint8_t g = (uint8_t)(r >> 32);
        if (pread(f->fd, ff, 1, off + end) == 1) {
            g |= ff[0];
            if (pwrite(f->fd, &g, 1, off + end) != 1) {
                /* the garbage byte is lost: the cut below happens all the same */
            }
        }
        _exit(OTK_FILE_FLASH_CUT_EXIT);
    }
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
