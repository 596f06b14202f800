/* The agent's MQTT 5 connection to its broker (mqtt_link.h). */
#define _POSIX_C_SOURCE 200809L
#include "mqtt_link.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define PKT_MAX (1u << 20)    /* the largest packet the client takes (CONNECT says so) */
#define IN_CAP (PKT_MAX + 65536u)
#define READ_CHUNK 65536u
#define TOPIC_MAX 512

/* ---- decoding ---- */

/* A variable byte integer at b (n bytes left): its size, 0 when cut short, -1 when malformed. */
static int varint(const uint8_t *b, size_t n, uint32_t *v)
{
    uint32_t x = 0;
    int i;
    for (i = 0; i < 4; i++) {
        if ((size_t)i >= n)
            return 0;
        x |= (uint32_t)(b[i] & 0x7f) << (7 * i);
        if (!(b[i] & 0x80)) {
            *v = x;
            return i + 1;
        }
    }
    return -1;
}

typedef struct rd {
    const uint8_t *b;
    size_t n, off;
    int bad;
} rd;

static unsigned rd8(rd *r)
{
    if (r->off + 1 > r->n) {
        r->bad = 1;
        return 0;
    }
    return r->b[r->off++];
}

static unsigned rd16(rd *r)
{
    unsigned v;
    if (r->off + 2 > r->n) {
        r->bad = 1;
        return 0;
    }
    v = (unsigned)r->b[r->off] << 8 | r->b[r->off + 1];
    r->off += 2;
    return v;
}

static uint32_t rd32(rd *r)
{
    uint32_t v;
    if (r->off + 4 > r->n) {
        r->bad = 1;
        return 0;
    }
    v = (uint32_t)r->b[r->off] << 24 | (uint32_t)r->b[r->off + 1] << 16 |
        (uint32_t)r->b[r->off + 2] << 8 | r->b[r->off + 3];
    r->off += 4;
    return v;
}

/* A two-byte length and that many bytes (a string or binary data). */
static const uint8_t *rdbin(rd *r, size_t *len)
{
    size_t l = rd16(r);
    const uint8_t *p;
    if (r->bad || r->off + l > r->n) {
        r->bad = 1;
        return NULL;
    }
    p = r->b + r->off;
    r->off += l;
    *len = l;
    return p;
}

static uint32_t rdvar(rd *r)
{
    uint32_t v = 0;
    int k = varint(r->b + r->off, r->n - r->off, &v);
    if (k <= 0) {
        r->bad = 1;
        return 0;
    }
    r->off += (size_t)k;
    return v;
}

/* The properties at r (their length first): what the client uses is kept in p. */
static void rdprops(rd *r, otk_mqtt_pkt *p)
{
    uint32_t len = rdvar(r);
    size_t end, l;
    if (r->bad || len > r->n - r->off) {
        r->bad = 1;
        return;
    }
    end = r->off + len;
    while (!r->bad && r->off < end) {
        rd sub = {r->b, end, r->off, 0};
        unsigned id = rdvar(&sub);
        const uint8_t *s;
        switch (id) {
        case 0x01: case 0x17: case 0x19: case 0x24: case 0x25: case 0x28: case 0x29: case 0x2A:
            (void)rd8(&sub);
            break;
        case 0x13:
            p->server_keepalive = (long)rd16(&sub);
            break;
        case 0x21:
            p->receive_max = rd16(&sub);
            if (p->receive_max == 0)
                sub.bad = 1; /* a protocol error by the broker */
            break;
        case 0x22:
            (void)rd16(&sub);
            break;
        case 0x23: /* a topic alias: never allowed by this client */
            sub.bad = 1;
            break;
        case 0x02: case 0x11: case 0x18:
            (void)rd32(&sub);
            break;
        case 0x27:
            p->max_packet = rd32(&sub);
            break;
        case 0x0B:
            (void)rdvar(&sub);
            break;
        case 0x1F:
            s = rdbin(&sub, &l);
            if (s != NULL) {
                p->reason_str = (const char *)s;
                p->reason_str_len = l;
            }
            break;
        case 0x03: case 0x08: case 0x09: case 0x12: case 0x15: case 0x16: case 0x1A: case 0x1C:
            (void)rdbin(&sub, &l);
            break;
        case 0x26:
            (void)rdbin(&sub, &l);
            (void)rdbin(&sub, &l);
            break;
        default:
            sub.bad = 1;
        }
        r->bad |= sub.bad;
        r->off = sub.off;
    }
    if (r->off != end)
        r->bad = 1;
}

int otk_mqtt_parse(const uint8_t *buf, size_t len, otk_mqtt_pkt *p, size_t *used)
{
    uint32_t rl = 0;
    int k;
    unsigned hdr, flags;
    rd r;
    if (len < 2)
        return 0;
    k = varint(buf + 1, len - 1, &rl);
    if (k < 0 || rl > PKT_MAX)
        return -1;
    if (k == 0)
        return 0;
    if (len < 1 + (size_t)k + rl)
        return 0;
    *used = 1 + (size_t)k + rl;
    memset(p, 0, sizeof *p);
    p->receive_max = 65535;
    p->server_keepalive = -1;
    hdr = buf[0];
    p->type = (int)(hdr >> 4);
    flags = hdr & 0x0f;
    r.b = buf + 1 + k;
    r.n = rl;
    r.off = 0;
    r.bad = 0;
    switch (p->type) {
    case OTK_MQTT_CONNACK:
        if (flags != 0)
            return -1;
        (void)rd8(&r); /* session present: never, with a clean start */
        p->reason = (int)rd8(&r);
        if (r.off < r.n)
            rdprops(&r, p);
        break;
    case OTK_MQTT_PUBLISH:
        p->qos = (int)((flags >> 1) & 3);
        if (p->qos > 1) /* never subscribed above QoS 1 */
            return -1;
        p->topic = (const char *)rdbin(&r, &p->topic_len);
        if (r.bad || p->topic_len == 0 || memchr(p->topic, 0, p->topic_len) != NULL)
            return -1;
        if (p->qos > 0) {
            p->id = (uint16_t)rd16(&r);
            if (p->id == 0)
                return -1;
        }
        rdprops(&r, p);
        if (r.bad)
            return -1;
        p->payload = r.b + r.off;
        p->payload_len = r.n - r.off;
        r.off = r.n;
        break;
    case OTK_MQTT_PUBACK:
    case OTK_MQTT_SUBACK:
    case OTK_MQTT_UNSUBACK:
        if (flags != 0)
            return -1;
        p->id = (uint16_t)rd16(&r);
        if (p->type == OTK_MQTT_PUBACK) {
            if (r.off < r.n)
                p->reason = (int)rd8(&r);
            if (r.off < r.n)
                rdprops(&r, p);
        } else {
            rdprops(&r, p);
            if (r.off >= r.n) /* at least one reason code */
                return -1;
            p->reason = r.b[r.off];
            r.off = r.n;
        }
        break;
    case OTK_MQTT_PINGRESP:
        if (flags != 0 || rl != 0)
            return -1;
        break;
    case OTK_MQTT_DISCONNECT:
        if (flags != 0)
            return -1;
        if (r.off < r.n)
            p->reason = (int)rd8(&r);
        if (r.off < r.n)
            rdprops(&r, p);
        break;
    default: /* nothing else is sent to a client that asks for no AUTH or QoS 2 */
        return -1;
    }
    return r.bad || r.off != r.n ? -1 : 1;
}

const char *otk_mqtt_reason(int code)
{
    switch (code) {
    case 0x00: return "Success";
    case 0x04: return "Disconnect with Will Message";
    case 0x80: return "Unspecified error";
    case 0x81: return "Malformed Packet";
    case 0x82: return "Protocol Error";
    case 0x83: return "Implementation specific error";
    case 0x84: return "Unsupported Protocol Version";
    case 0x85: return "Client Identifier not valid";
    case 0x86: return "Bad User Name or Password";
    case 0x87: return "Not authorized";
    case 0x88: return "Server unavailable";
    case 0x89: return "Server busy";
    case 0x8A: return "Banned";
    case 0x8B: return "Server shutting down";
    case 0x8C: return "Bad authentication method";
    case 0x8D: return "Keep Alive timeout";
    case 0x8E: return "Session taken over";
    case 0x8F: return "Topic Filter invalid";
    case 0x90: return "Topic Name invalid";
    case 0x93: return "Receive Maximum exceeded";
    case 0x95: return "Packet too large";
    case 0x97: return "Quota exceeded";
    case 0x98: return "Administrative action";
    case 0x99: return "Payload format invalid";
    case 0x9C: return "Use another server";
    case 0x9D: return "Server moved";
    case 0x9F: return "Connection rate exceeded";
    default: return "Unknown reason";
    }
}

/* ---- the link ---- */

typedef struct queued {
    uint8_t *bytes;
    size_t n;
    uint16_t id;
} queued;

struct otk_link {
    char client_id[128], username[128], password[256], path[108], host[256];
    int port, tls;
    unsigned keepalive_s;
    otk_link_cb cb;
    void *user;
    SSL_CTX *ctx;
    SSL *ssl;
    int fd;
    int connected; /* the broker accepted CONNECT */
    uint8_t *in;
    size_t in_len, in_off;
    int in_more; /* the last read filled its chunk: the socket may hold more */
    uint8_t *out;
    size_t out_len, out_off, out_cap;
    int write_blocked; /* a write found the socket full (or TLS wants the socket) */
    /* QoS 1 publishes: ids in use, how many are unacknowledged, the broker's
     * Receive Maximum, the ones beyond it in order. */
    uint8_t id_used[65536 / 8];
    uint16_t next_id;
    unsigned inflight, quota;
    uint32_t max_packet;
    queued *q;
    size_t q_head, q_len, q_cap;
    unsigned long dropped;
    uint64_t last_out_ms, ping_sent_ms;
    char err[256];
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int fail(otk_link *l, const char *fmt, const char *what)
{
    snprintf(l->err, sizeof l->err, fmt, what);
    return -1;
}

static int tls_fail(otk_link *l, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[160] = "";
    if (e != 0)
        ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    snprintf(l->err, sizeof l->err, "%s%s%s", what, buf[0] ? ": " : "", buf);
    return -1;
}

/* A call on a link with no connection: the reason it was lost stays the error. */
static int not_connected(otk_link *l)
{
    if (!l->err[0])
        snprintf(l->err, sizeof l->err, "not connected");
    return -1;
}

static int copy(char *dst, size_t cap, const char *src)
{
    size_t n = src ? strlen(src) : 0;
    if (n >= cap)
        return -1;
    memcpy(dst, src ? src : "", n + 1);
    return 0;
}

int otk_link_new(otk_link **out, const otk_link_opts *o, const otk_link_cb *cb, void *user, char *err,
                 size_t err_size)
{
    otk_link *l = calloc(1, sizeof *l);
    *out = NULL;
    if (l == NULL || (l->in = malloc(IN_CAP)) == NULL) {
        free(l);
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    l->fd = -1;
    l->cb = *cb;
    l->user = user;
    l->port = o->port;
    l->tls = o->tls;
    l->keepalive_s = o->keepalive_s;
    if (copy(l->client_id, sizeof l->client_id, o->client_id) || copy(l->username, sizeof l->username, o->username) ||
        copy(l->password, sizeof l->password, o->password) ||
        copy(l->path, sizeof l->path, o->socket_path) || copy(l->host, sizeof l->host, o->host)) {
        snprintf(err, err_size, "a broker setting is too long");
        otk_link_free(l);
        return -1;
    }
    if (l->tls) {
        ERR_clear_error();
        l->ctx = SSL_CTX_new(TLS_client_method());
        if (l->ctx == NULL || SSL_CTX_set_min_proto_version(l->ctx, TLS1_2_VERSION) != 1 ||
            SSL_CTX_load_verify_locations(l->ctx, o->cafile, NULL) != 1) {
            snprintf(err, err_size, "cannot load cafile '%s'", o->cafile ? o->cafile : "");
            otk_link_free(l);
            return -1;
        }
        SSL_CTX_set_verify(l->ctx, SSL_VERIFY_PEER, NULL);
        if (o->certfile && o->certfile[0] &&
            (SSL_CTX_use_certificate_chain_file(l->ctx, o->certfile) != 1 ||
             SSL_CTX_use_PrivateKey_file(l->ctx, o->keyfile && o->keyfile[0] ? o->keyfile : o->certfile,
                                         SSL_FILETYPE_PEM) != 1 ||
             SSL_CTX_check_private_key(l->ctx) != 1)) {
            snprintf(err, err_size, "cannot load the certificate/key '%s'", o->certfile);
            otk_link_free(l);
            return -1;
        }
        SSL_CTX_set_mode(l->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        ERR_clear_error();
    }
    *out = l;
    return 0;
}

static void drop_connection(otk_link *l)
{
    size_t i;
    if (l->ssl != NULL) {
        SSL_free(l->ssl);
        l->ssl = NULL;
    }
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
    l->connected = 0;
    l->in_len = l->in_off = 0;
    l->in_more = 0;
    l->out_len = l->out_off = 0;
    l->write_blocked = 0;
    l->dropped += l->inflight + l->q_len;
    for (i = 0; i < l->q_len; i++)
        free(l->q[(l->q_head + i) % l->q_cap].bytes);
    l->q_head = l->q_len = 0;
    memset(l->id_used, 0, sizeof l->id_used);
    l->inflight = 0;
    l->ping_sent_ms = 0;
}

/* The connection failed (l->err says why): closed at once, what it had in flight dropped. */
static int broken(otk_link *l)
{
    drop_connection(l);
    return -1;
}

void otk_link_free(otk_link *l)
{
    if (l == NULL)
        return;
    drop_connection(l);
    SSL_CTX_free(l->ctx);
    free(l->in);
    free(l->out);
    free(l->q);
    memset(l->password, 0, sizeof l->password);
    free(l);
}

const char *otk_link_error(const otk_link *l)
{
    return l->err;
}

unsigned long otk_link_dropped(const otk_link *l)
{
    return l->dropped;
}

int otk_link_fd(const otk_link *l)
{
    return l->fd;
}

int otk_link_want_write(const otk_link *l)
{
    return l->fd >= 0 && (l->write_blocked || l->out_len > l->out_off);
}

/* Room for n more bytes in the output buffer. */
static uint8_t *out_room(otk_link *l, size_t n)
{
    if (l->out_off > 0 && l->out_off == l->out_len)
        l->out_off = l->out_len = 0;
    if (l->out_len + n > l->out_cap) {
        size_t cap = l->out_cap ? l->out_cap : 65536;
        uint8_t *b;
        while (cap < l->out_len + n)
            cap *= 2;
        if ((b = realloc(l->out, cap)) == NULL)
            return NULL;
        l->out = b;
        l->out_cap = cap;
    }
    return l->out + l->out_len;
}

/* A packet's fixed header (type and flags, remaining length rl) at b: its size. */
static size_t put_header(uint8_t *b, unsigned first, size_t rl)
{
    size_t k = 0;
    b[k++] = (uint8_t)first;
    do {
        uint8_t c = rl & 0x7f;
        rl >>= 7;
        b[k++] = (uint8_t)(c | (rl ? 0x80 : 0));
    } while (rl);
    return k;
}

static size_t put16(uint8_t *b, unsigned v)
{
    b[0] = (uint8_t)(v >> 8);
    b[1] = (uint8_t)v;
    return 2;
}

static size_t put_str(uint8_t *b, const void *s, size_t n)
{
    put16(b, (unsigned)n);
    memcpy(b + 2, s, n);
    return 2 + n;
}

/* Appends a packet: first byte, then the body pieces (already encoded). */
static int append(otk_link *l, unsigned first, const uint8_t *body, size_t n)
{
    uint8_t *b = out_room(l, n + 5);
    size_t k;
    if (b == NULL)
        return fail(l, "%s", "out of memory");
    k = put_header(b, first, n);
    if (n)
        memcpy(b + k, body, n);
    l->out_len += k + n;
    return 0;
}

static int send_connect(otk_link *l)
{
    uint8_t body[1024];
    size_t n = 0;
    unsigned flags = 0x02; /* clean start */
    n += put_str(body + n, "MQTT", 4);
    body[n++] = 5;
    if (l->username[0])
        flags |= 0x80 | (l->password[0] ? 0x40 : 0);
    body[n++] = (uint8_t)flags;
    n += put16(body + n, l->keepalive_s);
    /* Properties: Maximum Packet Size (what the client takes). */
    body[n++] = 5;
    body[n++] = 0x27;
    body[n++] = (uint8_t)(PKT_MAX >> 24);
    body[n++] = (uint8_t)(PKT_MAX >> 16);
    body[n++] = (uint8_t)(PKT_MAX >> 8);
    body[n++] = (uint8_t)PKT_MAX;
    n += put_str(body + n, l->client_id, strlen(l->client_id));
    if (l->username[0]) {
        n += put_str(body + n, l->username, strlen(l->username));
        if (l->password[0])
            n += put_str(body + n, l->password, strlen(l->password));
    }
    return append(l, 0x10, body, n);
}

static int set_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -1 : 0;
}

static int open_socket(otk_link *l)
{
    if (l->path[0]) {
        struct sockaddr_un sa;
        memset(&sa, 0, sizeof sa);
        sa.sun_family = AF_UNIX;
        memcpy(sa.sun_path, l->path, strlen(l->path) + 1);
        l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (l->fd < 0 || connect(l->fd, (struct sockaddr *)&sa, sizeof sa) != 0)
            return fail(l, "%s", strerror(errno));
    } else {
        struct addrinfo hints, *res = NULL, *a;
        char port[16];
        int rc, one = 1, e = ECONNREFUSED;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        snprintf(port, sizeof port, "%d", l->port);
        if ((rc = getaddrinfo(l->host, port, &hints, &res)) != 0)
            return fail(l, "%s", gai_strerror(rc));
        for (a = res; a != NULL; a = a->ai_next) {
            l->fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
            if (l->fd >= 0 && connect(l->fd, a->ai_addr, a->ai_addrlen) == 0)
                break;
            e = errno;
            if (l->fd >= 0)
                close(l->fd);
            l->fd = -1;
        }
        freeaddrinfo(res);
        if (l->fd < 0)
            return fail(l, "%s", strerror(e));
        /* Small request/response messages: no Nagle delay. */
        (void)setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return set_nonblocking(l->fd);
}

static int tls_handshake(otk_link *l, unsigned timeout_ms)
{
    struct in6_addr ip6;
    struct in_addr ip4;
    uint64_t deadline = now_ms() + timeout_ms;
    ERR_clear_error();
    if ((l->ssl = SSL_new(l->ctx)) == NULL || SSL_set_fd(l->ssl, l->fd) != 1)
        return tls_fail(l, "TLS setup");
    if (inet_pton(AF_INET, l->host, &ip4) == 1 || inet_pton(AF_INET6, l->host, &ip6) == 1) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(l->ssl), l->host) != 1)
            return tls_fail(l, "TLS setup");
    } else if (SSL_set1_host(l->ssl, l->host) != 1 || SSL_set_tlsext_host_name(l->ssl, l->host) != 1) {
        return tls_fail(l, "TLS setup");
    }
    /* One read(2) takes in every record the broker sent. */
    SSL_set_read_ahead(l->ssl, 1);
    for (;;) {
        int rc = SSL_connect(l->ssl), e;
        struct pollfd p;
        uint64_t now;
        if (rc == 1)
            break;
        e = SSL_get_error(l->ssl, rc);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            long v = SSL_get_verify_result(l->ssl);
            if (v != X509_V_OK) {
                snprintf(l->err, sizeof l->err, "TLS: the broker's certificate: %s",
                         X509_verify_cert_error_string(v));
                ERR_clear_error();
                return -1;
            }
            return tls_fail(l, "TLS handshake");
        }
        now = now_ms();
        if (now >= deadline)
            return fail(l, "%s", "TLS handshake timed out");
        p.fd = l->fd;
        p.events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        p.revents = 0;
        (void)poll(&p, 1, (int)(deadline - now));
    }
    ERR_clear_error();
    return 0;
}

int otk_link_connect(otk_link *l, unsigned timeout_ms)
{
    drop_connection(l);
    l->err[0] = 0;
    if (open_socket(l) != 0 || (l->tls && tls_handshake(l, timeout_ms) != 0)) {
        char keep[sizeof l->err];
        memcpy(keep, l->err, sizeof keep);
        drop_connection(l);
        memcpy(l->err, keep, sizeof keep);
        return -1;
    }
    l->quota = 65535;
    l->max_packet = 0;
    l->last_out_ms = now_ms();
    if (send_connect(l) != 0 || otk_link_flush(l) != 0) {
        drop_connection(l);
        return -1;
    }
    return 0;
}

/* Writes from the output buffer: bytes written (>= 0), or -1 on failure. */
static long raw_write(otk_link *l, const uint8_t *b, size_t n)
{
    if (l->ssl != NULL) {
        int rc, e;
        ERR_clear_error();
        rc = SSL_write(l->ssl, b, n > 1u << 30 ? 1 << 30 : (int)n);
        if (rc > 0)
            return rc;
        e = SSL_get_error(l->ssl, rc);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
            ERR_clear_error();
            return 0;
        }
        return tls_fail(l, "TLS write");
    } else {
        ssize_t rc = send(l->fd, b, n, MSG_NOSIGNAL);
        if (rc >= 0)
            return (long)rc;
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return 0;
        return fail(l, "%s", strerror(errno));
    }
}

int otk_link_flush(otk_link *l)
{
    if (l->fd < 0)
        return not_connected(l);
    l->write_blocked = 0;
    while (l->out_off < l->out_len) {
        long k = raw_write(l, l->out + l->out_off, l->out_len - l->out_off);
        if (k < 0)
            return broken(l);
        if (k == 0) {
            l->write_blocked = 1;
            break;
        }
        l->out_off += (size_t)k;
        l->last_out_ms = now_ms();
    }
    if (l->out_off == l->out_len)
        l->out_off = l->out_len = 0;
    return 0;
}

/* A QoS 1 publish whose turn came: into the output buffer. */
static int send_queued(otk_link *l, const uint8_t *bytes, size_t n)
{
    uint8_t *b = out_room(l, n);
    if (b == NULL)
        return fail(l, "%s", "out of memory");
    memcpy(b, bytes, n);
    l->out_len += n;
    l->inflight++;
    return 0;
}

static int release_queued(otk_link *l)
{
    while (l->q_len > 0 && l->inflight < l->quota) {
        queued *e = &l->q[l->q_head];
        int rc = send_queued(l, e->bytes, e->n);
        free(e->bytes);
        e->bytes = NULL;
        l->q_head = (l->q_head + 1) % l->q_cap;
        l->q_len--;
        if (rc != 0)
            return -1;
    }
    return 0;
}

static int dispatch(otk_link *l, const otk_mqtt_pkt *p)
{
    char topic[TOPIC_MAX + 1];
    switch (p->type) {
    case OTK_MQTT_CONNACK:
        if (l->connected)
            return fail(l, "%s", "a second CONNACK");
        if (p->reason != 0) {
            snprintf(l->err, sizeof l->err, "%s", otk_mqtt_reason(p->reason));
            if (l->cb.connack)
                l->cb.connack(l->user, p->reason);
            return -1;
        }
        l->connected = 1;
        l->quota = p->receive_max;
        l->max_packet = p->max_packet;
        if (p->server_keepalive >= 0)
            l->keepalive_s = (unsigned)p->server_keepalive;
        if (l->cb.connack)
            l->cb.connack(l->user, 0);
        return release_queued(l);
    case OTK_MQTT_PUBLISH:
        if (!l->connected)
            return fail(l, "%s", "a PUBLISH before CONNACK");
        if (p->topic_len <= TOPIC_MAX) {
            memcpy(topic, p->topic, p->topic_len);
            topic[p->topic_len] = 0;
            if (l->cb.message)
                l->cb.message(l->user, topic, p->payload, p->payload_len);
        }
        if (p->qos == 1) {
            uint8_t ack[2];
            put16(ack, p->id);
            return append(l, 0x40, ack, 2);
        }
        return 0;
    case OTK_MQTT_PUBACK:
        if (!(l->id_used[p->id >> 3] & (1u << (p->id & 7))))
            return 0; /* not one in flight (a broker's repeat): nothing to do */
        l->id_used[p->id >> 3] &= (uint8_t)~(1u << (p->id & 7));
        if (l->inflight > 0)
            l->inflight--;
        if (l->cb.puback)
            l->cb.puback(l->user, p->id, p->reason);
        return release_queued(l);
    case OTK_MQTT_SUBACK:
        l->id_used[p->id >> 3] &= (uint8_t)~(1u << (p->id & 7));
        if (p->reason >= 0x80 && l->cb.refused)
            l->cb.refused(l->user, "subscription", p->reason);
        return 0;
    case OTK_MQTT_PINGRESP:
        l->ping_sent_ms = 0;
        return 0;
    case OTK_MQTT_DISCONNECT:
        snprintf(l->err, sizeof l->err, "the broker disconnected: %s%s%.*s", otk_mqtt_reason(p->reason),
                 p->reason_str ? ": " : "", p->reason_str ? (int)p->reason_str_len : 0,
                 p->reason_str ? p->reason_str : "");
        return -1;
    default:
        return 0;
    }
}

/* Reads once into the input buffer: bytes read, 0 when nothing waits, -1 on failure or close. */
static long raw_read(otk_link *l)
{
    size_t room;
    if (l->in_off > 0) {
        memmove(l->in, l->in + l->in_off, l->in_len - l->in_off);
        l->in_len -= l->in_off;
        l->in_off = 0;
    }
    room = IN_CAP - l->in_len;
    if (room > READ_CHUNK)
        room = READ_CHUNK;
    if (room == 0)
        return 0;
    if (l->ssl != NULL) {
        int rc, e;
        ERR_clear_error();
        rc = SSL_read(l->ssl, l->in + l->in_len, (int)room);
        if (rc > 0) {
            l->in_len += (size_t)rc;
            l->in_more = (size_t)rc == room || SSL_has_pending(l->ssl);
            return rc;
        }
        e = SSL_get_error(l->ssl, rc);
        if (e == SSL_ERROR_WANT_READ) {
            ERR_clear_error();
            return 0;
        }
        if (e == SSL_ERROR_WANT_WRITE) {
            ERR_clear_error();
            l->write_blocked = 1;
            return 0;
        }
        if (e == SSL_ERROR_ZERO_RETURN)
            return fail(l, "%s", "the broker closed the connection");
        return tls_fail(l, "TLS read");
    } else {
        ssize_t rc = recv(l->fd, l->in + l->in_len, room, 0);
        if (rc > 0) {
            l->in_len += (size_t)rc;
            l->in_more = (size_t)rc == room;
            return (long)rc;
        }
        if (rc == 0)
            return fail(l, "%s", "the broker closed the connection");
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return 0;
        return fail(l, "%s", strerror(errno));
    }
}

int otk_link_read(otk_link *l, int max_packets)
{
    int done = 0, did_read = 0;
    if (l->fd < 0)
        return not_connected(l);
    l->in_more = 0;
    while (done < max_packets) {
        otk_mqtt_pkt p;
        size_t used = 0;
        int rc = otk_mqtt_parse(l->in + l->in_off, l->in_len - l->in_off, &p, &used);
        if (rc < 0) {
            fail(l, "%s", "a malformed packet from the broker");
            return broken(l);
        }
        if (rc == 0) {
            long k;
            if (did_read && !l->in_more)
                break;
            k = raw_read(l);
            did_read = 1;
            if (k < 0)
                return broken(l);
            if (k == 0)
                break;
            continue;
        }
        l->in_off += used;
        done++;
        if (dispatch(l, &p) != 0)
            return broken(l); /* a refusal, a DISCONNECT, a packet out of turn */
    }
    if (l->in_off == l->in_len)
        l->in_off = l->in_len = 0;
    return done;
}

int otk_link_buffered(const otk_link *l)
{
    otk_mqtt_pkt p;
    size_t used;
    if (l->fd < 0)
        return 0;
    if (l->in_more || (l->ssl != NULL && SSL_has_pending(l->ssl)))
        return 1;
    return otk_mqtt_parse(l->in + l->in_off, l->in_len - l->in_off, &p, &used) != 0;
}

int otk_link_tick(otk_link *l, uint64_t now)
{
    uint64_t ka = (uint64_t)l->keepalive_s * 1000u;
    if (l->fd < 0)
        return not_connected(l);
    if (ka == 0 || !l->connected)
        return 0;
    if (l->ping_sent_ms != 0 && now - l->ping_sent_ms >= ka) {
        fail(l, "%s", "the broker did not answer a keep-alive ping");
        return broken(l);
    }
    if (l->ping_sent_ms == 0 && now - l->last_out_ms >= ka) {
        if (append(l, 0xC0, NULL, 0) != 0)
            return -1;
        l->ping_sent_ms = now;
        return otk_link_flush(l);
    }
    return 0;
}

/* A packet id no packet in flight has (0 when none is free). */
static uint16_t new_id(otk_link *l)
{
    unsigned tries;
    for (tries = 0; tries < 65535; tries++) {
        l->next_id = (uint16_t)(l->next_id + 1);
        if (l->next_id == 0)
            l->next_id = 1;
        if (!(l->id_used[l->next_id >> 3] & (1u << (l->next_id & 7))))
            return l->next_id;
    }
    fail(l, "%s", "no packet id free");
    return 0;
}

int otk_link_publish(otk_link *l, const char *topic, const void *payload, size_t len, int qos,
                     uint16_t *id)
{
    size_t tl = strlen(topic), rl = 2 + tl + (qos ? 2 : 0) + 1 + len, n = 0;
    uint8_t *b;
    uint16_t mid = 0;
    int later; /* beyond the broker's Receive Maximum, or before its CONNACK */
    if (l->fd < 0)
        return not_connected(l);
    if (tl == 0 || tl > 65535 || qos < 0 || qos > 1 || rl > PKT_MAX)
        return fail(l, "%s", "a publish the link cannot send");
    if (l->max_packet && rl + 5 > l->max_packet)
        return fail(l, "%s", "a publish over the broker's packet size");
    if (qos && (mid = new_id(l)) == 0)
        return -1;
    later = qos && (l->inflight >= l->quota || !l->connected || l->q_len > 0);
    if (later) { /* in order, when PUBACKs make room */
        queued *e;
        if (l->q_len == l->q_cap) {
            size_t cap = l->q_cap ? 2 * l->q_cap : 64, i;
            queued *nq = malloc(cap * sizeof *nq);
            if (nq == NULL)
                return fail(l, "%s", "out of memory");
            for (i = 0; i < l->q_len; i++)
                nq[i] = l->q[(l->q_head + i) % l->q_cap];
            free(l->q);
            l->q = nq;
            l->q_cap = cap;
            l->q_head = 0;
        }
        e = &l->q[(l->q_head + l->q_len) % l->q_cap];
        if ((e->bytes = malloc(rl + 5)) == NULL)
            return fail(l, "%s", "out of memory");
        b = e->bytes;
        l->q_len++;
        e->id = mid;
        n = put_header(b, 0x30 | 0x02, rl);
        e->n = n + rl;
    } else {
        if ((b = out_room(l, rl + 5)) == NULL)
            return fail(l, "%s", "out of memory");
        n = put_header(b, 0x30 | (qos ? 0x02 : 0), rl);
        if (qos)
            l->inflight++;
    }
    n += put_str(b + n, topic, tl);
    if (qos)
        n += put16(b + n, mid);
    b[n++] = 0; /* no properties */
    if (len)
        memcpy(b + n, payload, len);
    n += len;
    if (!later)
        l->out_len += n;
    if (qos) {
        l->id_used[mid >> 3] |= (uint8_t)(1u << (mid & 7));
        if (id)
            *id = mid;
    }
    return 0;
}

int otk_link_subscribe(otk_link *l, const char *filter, int qos)
{
    uint8_t body[600];
    size_t n = 0, fl = strlen(filter);
    if (l->fd < 0)
        return not_connected(l);
    if (fl == 0 || fl > 512 || qos < 0 || qos > 1)
        return fail(l, "%s", "a subscription the link cannot send");
    uint16_t id;
    if ((id = new_id(l)) == 0)
        return -1;
    l->id_used[id >> 3] |= (uint8_t)(1u << (id & 7)); /* until its SUBACK */
    n += put16(body + n, id);
    body[n++] = 0; /* no properties */
    n += put_str(body + n, filter, fl);
    body[n++] = (uint8_t)qos;
    return append(l, 0x82, body, n);
}

void otk_link_disconnect(otk_link *l)
{
    static const uint8_t none[1] = {0};
    if (l->fd >= 0 && append(l, 0xE0, none, 0) == 0)
        (void)otk_link_flush(l);
    drop_connection(l);
}
