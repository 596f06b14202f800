/*
 * otakey-recorder: a plain TCP listener that records every byte it receives,
 * to prove that a client configured for TLS never sends anything in clear
 * (no MQTT CONNECT, no user name, no password), whatever goes wrong with
 * its TLS set-up. It answers nothing.
 *
 * usage: otakey-recorder PORT_FILE OUT_FILE
 *   listens on 127.0.0.1 (a free port, written to PORT_FILE), appends what
 *   every connection sends to OUT_FILE, until SIGTERM.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CONNS 64

static volatile sig_atomic_t stopping;

static void on_term(int s)
{
    (void)s;
    stopping = 1;
}

int main(int argc, char **argv)
{
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    struct pollfd p[MAX_CONNS + 1];
    FILE *out, *pf;
    int ls, n = 1, i;
    if (argc != 3) {
        fprintf(stderr, "usage: otakey-recorder PORT_FILE OUT_FILE\n");
        return 2;
    }
    signal(SIGTERM, on_term);
    signal(SIGPIPE, SIG_IGN);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ls = socket(AF_INET, SOCK_STREAM, 0);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 16) != 0 ||
        getsockname(ls, (struct sockaddr *)&a, &al) != 0 || (out = fopen(argv[2], "ab")) == NULL ||
        (pf = fopen(argv[1], "w")) == NULL) {
        perror("otakey-recorder");
        return 1;
    }
    fprintf(pf, "%u\n", (unsigned)ntohs(a.sin_port));
    fclose(pf);
    p[0].fd = ls;
    p[0].events = POLLIN;
    while (!stopping) {
        if (poll(p, (nfds_t)n, 200) <= 0)
            continue;
        if ((p[0].revents & POLLIN) && n <= MAX_CONNS) {
            int c = accept(ls, NULL, NULL);
            if (c >= 0) {
                p[n].fd = c;
                p[n++].events = POLLIN;
            }
        }
        for (i = 1; i < n; i++) {
            char buf[4096];
            ssize_t r;
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            r = read(p[i].fd, buf, sizeof buf);
            if (r > 0) {
                fwrite(buf, 1, (size_t)r, out);
                fflush(out);
                continue;
            }
            close(p[i].fd);
            p[i--] = p[--n];
        }
    }
    fclose(out);
    return 0;
}
