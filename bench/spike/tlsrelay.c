/*
 * tlsrelay: a spike for issue 14's I/O decision, not part of ferry.  One TLS connection
 * relayed to one plain one, both ways at once, with one of two designs:
 *
 *   bev  libevent 2.1 bufferevents, public API only (what ferry's core does now): a
 *        bufferevent_openssl on the TLS socket, a socket bufferevent on the plain one,
 *        evbuffer_add_buffer between them, read high-watermark / write low-watermark
 *        backpressure (le-proxy).  close_notify needs SSL_shutdown on the bufferevent's SSL.
 *   raw  the relay owns both sockets and the SSL and drives non-blocking SSL_read_ex /
 *        SSL_write_ex and read / write itself from libevent `event`s (nginx, redis): 64 KiB
 *        per direction, 16 KiB records, events armed only while an operation waits.
 *   io   raw's design as ferry's module: two struct proxy_io (proxy/proxy_io.h) relayed with
 *        the same read-callback / write-low-watermark backpressure as bev, so the relay code
 *        reads like the bufferevent one (built only with -DTLSRELAY_IO and proxy/proxy_io.c).
 *
 *   tlsrelay bev|raw|io LISTEN_PORT BACKEND_PORT CERT KEY
 *
 * It accepts one TLS client on 127.0.0.1:LISTEN_PORT (blocking handshake: the spike measures
 * the relay, not the handshake), connects to 127.0.0.1:BACKEND_PORT, relays until both
 * directions have ended (EOF passed on as close_notify + FIN, or FIN), and exits.
 * bench/spike/run.sh builds it and counts Ir and system calls per MiB under each design.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#define CAP    (64 * 1024) /* bytes buffered per direction */
#define RECORD 16384       /* one TLS record's payload */

static void
die(const char *what)
{
    fprintf(stderr, "tlsrelay: %s: %s\n", what, strerror(errno));
    ERR_print_errors_fp(stderr);
    exit(1);
}

static int
tcp_socket(int port, bool listen_it)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

    if (fd < 0) {
        die("socket");
    }
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (listen_it) {
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 1) != 0) {
            die("bind/listen");
        }
        printf("listening\n");
        fflush(stdout);
    } else if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        die("connect");
    }
    return fd;
}

static void
nonblock(int fd)
{
    int one = 1;

    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
        die("fcntl");
    }
}

/* ---- raw: own sockets, non-blocking SSL_*_ex, libevent events ---- */

struct dir {
    char buf[CAP];
    size_t len, off;
    bool eof;  /* the source ended */
    bool shut; /* the end was passed on */
};

struct raw {
    struct event_base *base;
    SSL *ssl;
    int tfd, pfd;
    struct event *tr, *tw, *pr, *pw;
    bool tr_on, tw_on, pr_on, pw_on;
    bool t_wants_write; /* the last TLS call asked for writability */
    bool t_wants_read;  /* ... for readability */
    struct dir up;      /* TLS -> plain */
    struct dir down;    /* plain -> TLS */
};

static void
arm(struct event *ev, bool *on, bool want)
{
    if (want && !*on) {
        (void)event_add(ev, NULL);
    } else if (!want && *on) {
        (void)event_del(ev);
    }
    *on = want;
}

/* One TLS call's outcome: true if it made progress. */
static bool
tls_result(struct raw *r, int ok, int ret, bool *eof)
{
    if (ok) {
        return true;
    }
    switch (SSL_get_error(r->ssl, ret)) {
    case SSL_ERROR_WANT_READ:
        r->t_wants_read = true;
        break;
    case SSL_ERROR_WANT_WRITE:
        r->t_wants_write = true;
        break;
    case SSL_ERROR_ZERO_RETURN:
        *eof = true;
        break;
    default:
        ERR_clear_error();
        *eof = true; /* a reset or a dirty end: this spike treats it as the end */
        break;
    }
    return false;
}

static void
raw_pump(struct raw *r)
{
    int rounds;

    r->t_wants_read = r->t_wants_write = false;
    /* Bounded work per wakeup: at most 16 buffers' worth each way. */
    for (rounds = 0; rounds < 16; rounds++) {
        bool progress = false;
        size_t n;
        ssize_t got;
        int ret;

        /* TLS -> buffer: SSL_read_ex until OpenSSL wants the socket or the buffer is full. */
        while (!r->up.eof && r->up.len < CAP) {
            ERR_clear_error();
            ret = SSL_read_ex(r->ssl, r->up.buf + r->up.len, CAP - r->up.len, &n);
            if (!tls_result(r, ret, ret, &r->up.eof)) {
                break;
            }
            r->up.len += n;
            progress = true;
        }
        /* buffer -> plain */
        if (r->up.off < r->up.len) {
            got = write(r->pfd, r->up.buf + r->up.off, r->up.len - r->up.off);
            if (got > 0) {
                r->up.off += (size_t)got;
                progress = true;
                if (r->up.off == r->up.len) {
                    r->up.off = r->up.len = 0;
                }
            } else if (errno != EAGAIN) {
                die("write plain");
            }
        }
        if (r->up.eof && r->up.len == 0 && !r->up.shut) {
            (void)shutdown(r->pfd, SHUT_WR);
            r->up.shut = true;
        }
        /* plain -> buffer */
        if (!r->down.eof && r->down.len < CAP) {
            got = read(r->pfd, r->down.buf + r->down.len, CAP - r->down.len);
            if (got > 0) {
                r->down.len += (size_t)got;
                progress = true;
            } else if (got == 0) {
                r->down.eof = true;
            } else if (errno != EAGAIN) {
                die("read plain");
            }
        }
        /* buffer -> TLS, a full record at a time (a retry passes at least as much again) */
        while (r->down.off < r->down.len) {
            size_t len = r->down.len - r->down.off;
            bool dead = false;

            if (len > RECORD) {
                len = RECORD;
            }
            ERR_clear_error();
            ret = SSL_write_ex(r->ssl, r->down.buf + r->down.off, len, &n);
            if (!tls_result(r, ret, ret, &dead)) {
                if (dead) {
                    die("SSL_write_ex");
                }
                break;
            }
            r->down.off += n;
            progress = true;
            if (r->down.off == r->down.len) {
                r->down.off = r->down.len = 0;
            }
        }
        if (r->down.eof && r->down.len == 0 && !r->down.shut) {
            /* close_notify: one call, no wait for the peer's (it may still send). */
            ERR_clear_error();
            (void)SSL_shutdown(r->ssl);
            (void)shutdown(r->tfd, SHUT_WR);
            r->down.shut = true;
        }
        if (!progress) {
            break;
        }
    }
    if (r->up.shut && r->down.shut) {
        event_base_loopbreak(r->base);
        return;
    }
    arm(r->tr, &r->tr_on, (!r->up.eof && r->up.len < CAP) || r->t_wants_read);
    arm(r->tw, &r->tw_on, r->t_wants_write);
    arm(r->pr, &r->pr_on, !r->down.eof && r->down.len < CAP);
    arm(r->pw, &r->pw_on, r->up.off < r->up.len);
}

static void
raw_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    raw_pump(arg);
}

static void
run_raw(struct event_base *base, SSL *ssl, int tfd, int pfd)
{
    struct raw *r = calloc(1, sizeof(*r));

    if (r == NULL) {
        die("calloc");
    }
    r->base = base;
    r->ssl = ssl;
    r->tfd = tfd;
    r->pfd = pfd;
    r->tr = event_new(base, tfd, EV_READ | EV_PERSIST, raw_cb, r);
    r->tw = event_new(base, tfd, EV_WRITE | EV_PERSIST, raw_cb, r);
    r->pr = event_new(base, pfd, EV_READ | EV_PERSIST, raw_cb, r);
    r->pw = event_new(base, pfd, EV_WRITE | EV_PERSIST, raw_cb, r);
    raw_pump(r);
    (void)event_base_dispatch(base);
    event_free(r->tr);
    event_free(r->tw);
    event_free(r->pr);
    event_free(r->pw);
    free(r);
}

#ifdef TLSRELAY_IO
/* ---- io: proxy_io, ferry's own-socket side ---- */

#include "proxy_io.h"

struct io_relay {
    struct event_base *base;
    struct proxy_io t, p;
    bool t_eof, p_eof; /* the side ended (EOF or error) */
};

static struct proxy_io *
io_other(struct io_relay *r, struct proxy_io *io)
{
    return io == &r->t ? &r->p : &r->t;
}

static void
io_finish(struct io_relay *r)
{
    enum proxy_io_state t = proxy_io_state(&r->t), p = proxy_io_state(&r->p);

    if ((t == PROXY_IO_CLOSED || t == PROXY_IO_FAILED) &&
        (p == PROXY_IO_CLOSED || p == PROXY_IO_FAILED)) {
        event_base_loopbreak(r->base);
    }
}

static void
io_relay_read(struct proxy_io *io, void *arg)
{
    struct io_relay *r = arg;
    struct proxy_io *dst = io_other(r, io);
    struct evbuffer *out = proxy_io_output(dst);

    evbuffer_add_buffer(out, proxy_io_input(io));
    if (evbuffer_get_length(out) >= CAP) {
        /* le-proxy: stop reading until dst drains to half. */
        proxy_io_disable(io, EV_READ);
        proxy_io_set_write_low(dst, CAP / 2);
    }
}

static void
io_relay_write(struct proxy_io *io, void *arg)
{
    struct io_relay *r = arg;
    struct proxy_io *src = io_other(r, io);
    bool src_eof = io == &r->t ? r->p_eof : r->t_eof;

    if (!src_eof && (proxy_io_enabled(src) & EV_READ) == 0) {
        proxy_io_set_write_low(io, 0);
        proxy_io_enable(src, EV_READ);
    }
    io_finish(r);
}

static void
io_relay_event(struct proxy_io *io, short what, void *arg)
{
    struct io_relay *r = arg;

    if ((what & (PROXY_IO_EV_EOF | PROXY_IO_EV_ERROR)) != 0) {
        if (io == &r->t) {
            r->t_eof = true;
        } else {
            r->p_eof = true;
        }
        io_relay_read(io, r); /* what it read before the end */
        /* close_notify + FIN (TLS) or FIN, once dst's output is written. */
        proxy_io_shutdown(io_other(r, io));
        io_finish(r);
    }
}

static void
run_io(struct event_base *base, SSL *ssl, int tfd, int pfd)
{
    struct io_relay r = {.base = base};

    if (proxy_io_init(&r.t, base, tfd, ssl, PROXY_IO_SERVER) != 0 ||
        proxy_io_init(&r.p, base, pfd, NULL, PROXY_IO_CLIENT) != 0) {
        die("proxy_io_init");
    }
    proxy_io_setcb(&r.t, io_relay_read, io_relay_write, io_relay_event, &r);
    proxy_io_setcb(&r.p, io_relay_read, io_relay_write, io_relay_event, &r);
    proxy_io_set_read_high(&r.t, CAP);
    proxy_io_set_read_high(&r.p, CAP);
    proxy_io_enable(&r.t, EV_READ | EV_WRITE);
    proxy_io_enable(&r.p, EV_READ | EV_WRITE);
    (void)event_base_dispatch(base);
    proxy_io_free(&r.t); /* closes tfd, frees ssl */
    proxy_io_free(&r.p);
}
#endif

/* ---- bev: bufferevents, public API ---- */

struct bev_relay {
    struct event_base *base;
    struct bufferevent *t, *p;
    bool t_eof, p_eof;   /* the side ended */
    bool t_shut, p_shut; /* we ended our sending side */
};

static void bev_read_cb(struct bufferevent *bev, void *arg);

static void
bev_finish(struct bev_relay *b)
{
    if (b->t_eof && !b->p_shut && evbuffer_get_length(bufferevent_get_output(b->p)) == 0) {
        (void)shutdown(bufferevent_getfd(b->p), SHUT_WR);
        b->p_shut = true;
    }
    if (b->p_eof && !b->t_shut && evbuffer_get_length(bufferevent_get_output(b->t)) == 0) {
        /* What ferry does: libevent 2.1 has no public call that sends close_notify. */
        (void)SSL_shutdown(bufferevent_openssl_get_ssl(b->t));
        (void)shutdown(bufferevent_getfd(b->t), SHUT_WR);
        b->t_shut = true;
    }
    if (b->t_shut && b->p_shut) {
        event_base_loopbreak(b->base);
    }
}

static void
bev_read_cb(struct bufferevent *bev, void *arg)
{
    struct bev_relay *b = arg;
    struct bufferevent *dst = bev == b->t ? b->p : b->t;
    struct evbuffer *out = bufferevent_get_output(dst);

    evbuffer_add_buffer(out, bufferevent_get_input(bev));
    if (evbuffer_get_length(out) >= CAP) {
        /* le-proxy: stop reading until dst drains to half. */
        bufferevent_disable(bev, EV_READ);
        bufferevent_setwatermark(dst, EV_WRITE, CAP / 2, 0);
    }
}

static void
bev_write_cb(struct bufferevent *bev, void *arg)
{
    struct bev_relay *b = arg;
    struct bufferevent *src = bev == b->t ? b->p : b->t;
    bool src_eof = bev == b->t ? b->p_eof : b->t_eof;

    if (!src_eof && !(bufferevent_get_enabled(src) & EV_READ)) {
        bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
        bufferevent_enable(src, EV_READ);
    }
    bev_finish(b);
}

static void
bev_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct bev_relay *b = arg;

    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        if (bev == b->t) {
            b->t_eof = true;
        } else {
            b->p_eof = true;
        }
        bev_read_cb(bev, b); /* what it read before the end */
        bufferevent_disable(bev, EV_READ);
        bufferevent_setwatermark(bev == b->t ? b->p : b->t, EV_WRITE, 0, 0);
        bev_finish(b);
    }
}

static void
run_bev(struct event_base *base, SSL *ssl, int tfd, int pfd)
{
    struct bev_relay b = {.base = base};

    b.t = bufferevent_openssl_socket_new(base, tfd, ssl, BUFFEREVENT_SSL_OPEN,
                                         BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    b.p = bufferevent_socket_new(base, pfd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (b.t == NULL || b.p == NULL) {
        die("bufferevent");
    }
    bufferevent_openssl_set_allow_dirty_shutdown(b.t, 1);
    bufferevent_setcb(b.t, bev_read_cb, bev_write_cb, bev_event_cb, &b);
    bufferevent_setcb(b.p, bev_read_cb, bev_write_cb, bev_event_cb, &b);
    bufferevent_setwatermark(b.p, EV_READ, 0, CAP);
    bufferevent_enable(b.t, EV_READ | EV_WRITE);
    bufferevent_enable(b.p, EV_READ | EV_WRITE);
    (void)event_base_dispatch(base);
    bufferevent_free(b.t);
    bufferevent_free(b.p);
}

int
main(int argc, char **argv)
{
    struct event_base *base;
    SSL_CTX *ctx;
    SSL *ssl;
    int lfd, tfd, pfd;

    if (argc != 6 || (strcmp(argv[1], "bev") != 0 && strcmp(argv[1], "raw") != 0 &&
                      strcmp(argv[1], "io") != 0)) {
        fprintf(stderr, "usage: tlsrelay bev|raw|io LISTEN_PORT BACKEND_PORT CERT KEY\n");
        return 2;
    }
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL || SSL_CTX_use_certificate_chain_file(ctx, argv[4]) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, argv[5], SSL_FILETYPE_PEM) != 1) {
        die("SSL_CTX");
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_num_tickets(ctx, 0);
    lfd = tcp_socket(atoi(argv[2]), true);
    tfd = accept(lfd, NULL, NULL);
    if (tfd < 0) {
        die("accept");
    }
    ssl = SSL_new(ctx);
    if (ssl == NULL || SSL_set_fd(ssl, tfd) != 1 || SSL_accept(ssl) != 1) {
        die("handshake");
    }
    pfd = tcp_socket(atoi(argv[3]), false);
    nonblock(tfd);
    nonblock(pfd);
    base = event_base_new();
    if (base == NULL) {
        die("event_base_new");
    }
    if (strcmp(argv[1], "raw") == 0) {
        run_raw(base, ssl, tfd, pfd);
        SSL_free(ssl);
        close(tfd);
        close(pfd);
    } else if (strcmp(argv[1], "io") == 0) {
#ifdef TLSRELAY_IO
        run_io(base, ssl, tfd, pfd);
#else
        fprintf(stderr, "tlsrelay: built without -DTLSRELAY_IO\n");
        return 2;
#endif
    } else {
        run_bev(base, ssl, tfd, pfd);
    }
    event_base_free(base);
    close(lfd);
    SSL_CTX_free(ctx);
    return 0;
}
