/*
 * test_io: proxy/proxy_io.h, one side of a connection on its own socket, driven by a real
 * event_base over loopback TCP pairs (127.0.0.1, ephemeral ports) with real TLS handshakes
 * (certificates made in memory by tests/support/pki.c).  Every test runs its loop under a
 * deadline (event_base_loopexit) and then asserts that it finished.
 *
 * Covered: the handshake in both roles; 1 MiB each way byte-exact under small read
 * high-watermarks (one reader drains from its callback, the other later, from outside it:
 * the resume path that libevent 2.1's TLS bufferevent got wrong, also for one record and
 * nothing behind it); the same over plain TCP;
 * close_notify told apart from a FIN without one; a reset peer; release_buffers while idle,
 * then more data; close_notify sent exactly once; small chains coalesced into few records; a
 * refused connect; a refused handshake with OpenSSL's reason kept; free from inside a
 * callback; connect by name (numeric, failing, and freed while the lookup is in flight).
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "pki.h"
#include "proxy_io.h"

#define MIB        ((size_t)1024 * 1024)
#define DEADLINE_S 10

/* Certificates and contexts, made once for the whole run. */
static struct pki_cert *root, *leaf, *other_root;
static SSL_CTX *server_ctx, *client_ctx, *stranger_ctx;
static unsigned char *pattern; /* 1 MiB + 64 KiB of bytes that do not repeat every 256 */

/* One side under test and what its callbacks saw. */
struct side {
    struct proxy_io io;
    struct pair *p;
    struct side *peer;
    bool freed;
    /* sending */
    size_t to_send;   /* pattern bytes to send in total */
    size_t queued;    /* ... queued so far */
    bool shut_at_end; /* proxy_io_shutdown() once everything is queued */
    /* receiving */
    size_t got;          /* pattern bytes received and checked */
    bool mismatch;       /* a byte differed */
    bool drain_later;    /* drain from a zero timer, not from read_cb */
    struct event *drain; /* that timer */
    size_t max_input;    /* the most input held at a read_cb */
    size_t max_wakeup;   /* the most bytes one wakeup brought */
    bool free_on_read;   /* proxy_io_free() from inside read_cb */
    /* events */
    int connected;
    int eofs;
    int errors;
    short last_what;
    int last_errno;
    int write_cbs;
    /* TLS records and alerts (msg callback) */
    bool count_records;
    int records_in;
    int close_notify_in, close_notify_out;
};

struct pair {
    struct event_base *base;
    struct side a; /* the client: dialled with proxy_io_connect() */
    struct side b; /* the server: accepted */
    evutil_socket_t lfd;
    bool (*done)(struct pair *p);
};

static unsigned char
pattern_byte(size_t off)
{
    return (unsigned char)(((off * 2654435761u) >> 13) ^ (off >> 8));
}

/* ---- callbacks ---- */

static void
check_done(struct pair *p)
{
    if (p->done != NULL && p->done(p)) {
        event_base_loopbreak(p->base);
    }
}

/* Queue pattern bytes up to 64 KiB in output; shut down after the last when asked. */
static void
side_fill(struct side *s)
{
    struct evbuffer *out = proxy_io_output(&s->io);

    while (s->queued < s->to_send && evbuffer_get_length(out) < (size_t)64 * 1024) {
        size_t n = s->to_send - s->queued;

        if (n > 8192) {
            n = 8192;
        }
        assert_int_equal(evbuffer_add(out, pattern + s->queued, n), 0);
        s->queued += n;
    }
    if (s->shut_at_end && s->queued == s->to_send) {
        proxy_io_shutdown(&s->io);
    }
}

/* Check and drop what input holds. */
static void
side_consume(struct side *s)
{
    struct evbuffer *in = proxy_io_input(&s->io);
    unsigned char buf[4096];
    int n;

    while ((n = evbuffer_remove(in, buf, sizeof(buf))) > 0) {
        for (int i = 0; i < n; i++) {
            if (buf[i] != pattern_byte(s->got + (size_t)i)) {
                s->mismatch = true;
            }
        }
        s->got += (size_t)n;
    }
}

static void
drain_cb(evutil_socket_t fd, short what, void *arg)
{
    struct side *s = arg;

    (void)fd;
    (void)what;
    side_consume(s); /* outside the side's handler: the input callback resumes reading */
    check_done(s->p);
}

static void
read_cb(struct proxy_io *io, void *arg)
{
    struct side *s = arg;
    size_t held = evbuffer_get_length(proxy_io_input(io));
    static const struct timeval now = {0, 0};

    assert_ptr_equal(io, &s->io);
    if (held > s->max_input) {
        s->max_input = held;
    }
    if (s->free_on_read) {
        s->got += held;
        proxy_io_free(io);
        s->freed = true;
        check_done(s->p);
        return;
    }
    if (s->drain_later) {
        if (!evtimer_pending(s->drain, NULL)) {
            evtimer_add(s->drain, &now);
        }
        return;
    }
    if (held > s->max_wakeup) {
        s->max_wakeup = held;
    }
    side_consume(s);
    check_done(s->p);
}

static void
write_cb(struct proxy_io *io, void *arg)
{
    struct side *s = arg;

    (void)io;
    s->write_cbs++;
    side_fill(s);
    check_done(s->p);
}

static void
event_cb(struct proxy_io *io, short what, void *arg)
{
    struct side *s = arg;

    s->last_what = what;
    s->last_errno = errno;
    if ((what & PROXY_IO_EV_CONNECTED) != 0) {
        s->connected++;
        s->count_records = true;
        if (proxy_io_enabled(io) != (EV_READ | EV_WRITE)) {
            proxy_io_enable(io, EV_READ | EV_WRITE);
        }
        side_fill(s);
    } else if ((what & PROXY_IO_EV_ERROR) != 0) {
        s->errors++;
    } else if ((what & PROXY_IO_EV_EOF) != 0) {
        s->eofs++;
        if (s->drain_later) {
            side_consume(s); /* the last bytes came with the end */
        }
    }
    check_done(s->p);
}

/* Records and close_notify alerts as OpenSSL reads and writes them. */
static void
msg_cb(int write_p, int version, int content_type, const void *buf, size_t len, SSL *ssl, void *arg)
{
    struct side *s = arg;
    const unsigned char *b = buf;

    (void)version;
    (void)ssl;
    if (content_type == SSL3_RT_HEADER && len >= 5 && !write_p && s->count_records &&
        b[0] == SSL3_RT_APPLICATION_DATA) {
        s->records_in++;
    }
    if (content_type == SSL3_RT_ALERT && len == 2 && b[1] == SSL_AD_CLOSE_NOTIFY) {
        if (write_p) {
            s->close_notify_out++;
        } else {
            s->close_notify_in++;
        }
    }
}

/* ---- pairs ---- */

static SSL *
new_ssl(SSL_CTX *ctx, struct side *s)
{
    SSL *ssl = SSL_new(ctx);

    assert_non_null(ssl);
    SSL_set_msg_callback(ssl, msg_cb);
    SSL_set_msg_callback_arg(ssl, s);
    return ssl;
}

static evutil_socket_t
listen_loopback(struct sockaddr_in *sin)
{
    socklen_t len = sizeof(*sin);
    evutil_socket_t fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    memset(sin, 0, sizeof(*sin));
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)sin, sizeof(*sin)), 0);
    assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)sin, &len), 0);
    return fd;
}

/* The server side: accept what the client side dialled (bounded wait). */
static void
pair_accept(struct pair *p, SSL_CTX *sctx)
{
    struct pollfd pfd = {.fd = p->lfd, .events = POLLIN};
    evutil_socket_t fd;

    assert_int_equal(poll(&pfd, 1, 2000), 1);
    fd = accept(p->lfd, NULL, NULL);
    assert_true(fd >= 0);
    assert_int_equal(evutil_make_socket_nonblocking(fd), 0);
    assert_int_equal(proxy_io_init(&p->b.io, p->base, fd,
                                   sctx != NULL ? new_ssl(sctx, &p->b) : NULL, PROXY_IO_SERVER),
                     0);
    proxy_io_setcb(&p->b.io, read_cb, write_cb, event_cb, &p->b);
    if (sctx == NULL) {
        /* A plain accepted side is OPEN at once: no CONNECTED. */
        p->b.connected++;
        proxy_io_enable(&p->b.io, EV_READ | EV_WRITE);
    }
}

/*
 * A client side dialling a server side over loopback; TLS with ${cctx} / ${sctx} when not
 * NULL.  The loop has not run yet: the handshake happens in run().
 */
static void
pair_open(struct pair *p, SSL_CTX *cctx, SSL_CTX *sctx)
{
    struct sockaddr_in sin;

    memset(p, 0, sizeof(*p));
    p->base = event_base_new();
    assert_non_null(p->base);
    p->a.p = p->b.p = p;
    p->a.peer = &p->b;
    p->b.peer = &p->a;
    p->lfd = listen_loopback(&sin);
    assert_int_equal(proxy_io_init(&p->a.io, p->base, -1,
                                   cctx != NULL ? new_ssl(cctx, &p->a) : NULL, PROXY_IO_CLIENT),
                     0);
    assert_int_equal(proxy_io_state(&p->a.io), PROXY_IO_IDLE);
    proxy_io_setcb(&p->a.io, read_cb, write_cb, event_cb, &p->a);
    assert_int_equal(proxy_io_connect(&p->a.io, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(proxy_io_state(&p->a.io), PROXY_IO_CONNECTING);
    pair_accept(p, sctx);
    p->a.drain = evtimer_new(p->base, drain_cb, &p->a);
    p->b.drain = evtimer_new(p->base, drain_cb, &p->b);
}

static void
pair_close(struct pair *p)
{
    proxy_io_free(&p->a.io);
    proxy_io_free(&p->b.io);
    event_free(p->a.drain);
    event_free(p->b.drain);
    evutil_closesocket(p->lfd);
    event_base_free(p->base);
}

/* Run ${p}'s loop until its done() holds (or the deadline); returns done(). */
static bool
run(struct pair *p, bool (*done)(struct pair *p))
{
    struct timeval deadline = {DEADLINE_S, 0};

    p->done = done;
    if (done(p)) {
        return true;
    }
    event_base_loopexit(p->base, &deadline);
    event_base_dispatch(p->base);
    return done(p);
}

static bool
both_connected(struct pair *p)
{
    return p->a.connected > 0 && p->b.connected > 0;
}

static bool
both_got_all(struct pair *p)
{
    return p->a.got == p->b.to_send && p->b.got == p->a.to_send && p->a.eofs > 0 && p->b.eofs > 0;
}

static bool
b_ended(struct pair *p)
{
    return p->b.eofs + p->b.errors > 0;
}

static bool
a_failed(struct pair *p)
{
    return p->a.errors > 0;
}

/* ---- tests ---- */

static bool b_got_100(struct pair *p);

static bool
b_got_30(struct pair *p)
{
    return p->b.got == 30;
}

/* Both roles complete a mutual handshake and report CONNECTED once. */
static void
test_handshake(void **state)
{
    struct pair p;

    (void)state;
    pair_open(&p, client_ctx, server_ctx);
    assert_int_equal(proxy_io_state(&p.b.io), PROXY_IO_HANDSHAKE);
    assert_true(run(&p, both_connected));
    assert_int_equal(p.a.connected, 1);
    assert_int_equal(p.b.connected, 1);
    assert_int_equal(proxy_io_state(&p.a.io), PROXY_IO_OPEN);
    assert_int_equal(proxy_io_state(&p.b.io), PROXY_IO_OPEN);
    assert_non_null(SSL_get0_peer_certificate(proxy_io_ssl(&p.a.io)));
    assert_non_null(SSL_get0_peer_certificate(proxy_io_ssl(&p.b.io)));
    assert_int_equal(SSL_get_verify_result(proxy_io_ssl(&p.b.io)), X509_V_OK);
    assert_true(SSL_version(proxy_io_ssl(&p.a.io)) >= TLS1_2_VERSION);
    assert_true(proxy_io_fd(&p.a.io) >= 0);
    assert_string_equal(proxy_io_state_str(PROXY_IO_OPEN), "open");
    assert_string_equal(proxy_io_state_str((enum proxy_io_state)99), "unknown");
    pair_close(&p);
}

/*
 * 1 MiB each way at once, byte-exact, with read high-watermarks of 4 KiB on b (drained from a
 * zero timer, outside its handler) and none on a; both end with close_notify.
 */
static void
bulk(SSL_CTX *cctx, SSL_CTX *sctx, enum proxy_io_end want_end)
{
    struct pair p;

    pair_open(&p, cctx, sctx);
    p.a.to_send = p.b.to_send = MIB;
    p.a.shut_at_end = p.b.shut_at_end = true;
    p.b.drain_later = true;
    proxy_io_set_read_high(&p.b.io, 4096);
    proxy_io_set_write_low(&p.a.io, 16 * 1024);
    proxy_io_set_write_low(&p.b.io, 16 * 1024);
    if (sctx == NULL) {
        side_fill(&p.b); /* plain: open at once, no CONNECTED to start it */
    }
    assert_true(run(&p, both_got_all));
    assert_false(p.a.mismatch);
    assert_false(p.b.mismatch);
    assert_int_equal(p.a.got, MIB);
    assert_int_equal(p.b.got, MIB);
    assert_int_equal(p.a.errors + p.b.errors, 0);
    /* Backpressure: b never held more than its mark; a read at most 64 KiB per wakeup. */
    assert_true(p.b.max_input <= 4096);
    assert_true(p.a.max_wakeup <= PROXY_IO_READ_MAX);
    assert_true(p.a.write_cbs > 0 && p.b.write_cbs > 0);
    assert_int_equal(proxy_io_end(&p.a.io), want_end);
    assert_int_equal(proxy_io_end(&p.b.io), want_end);
    assert_int_equal(proxy_io_state(&p.a.io), PROXY_IO_CLOSED);
    assert_int_equal(proxy_io_state(&p.b.io), PROXY_IO_CLOSED);
    assert_int_equal(p.a.last_what, PROXY_IO_EV_EOF | PROXY_IO_EV_READING);
    pair_close(&p);
}

static void
test_bulk_tls(void **state)
{
    (void)state;
    bulk(client_ctx, server_ctx, PROXY_IO_END_CLOSE_NOTIFY);
}

static void
test_bulk_plain(void **state)
{
    (void)state;
    bulk(NULL, NULL, PROXY_IO_END_FIN);
}

/*
 * Bytes queued before the handshake go out after it, and the server reads them even though
 * they may have come in with the client's Finished (read ahead into OpenSSL, never again
 * readable on the socket): the side reads what OpenSSL holds once it is open.
 */
static void
test_data_behind_handshake(void **state)
{
    struct pair p;

    (void)state;
    pair_open(&p, client_ctx, server_ctx);
    p.a.queued = p.a.to_send = 100;
    assert_int_equal(evbuffer_add(proxy_io_output(&p.a.io), pattern, 100), 0);
    proxy_io_enable(&p.a.io, EV_READ | EV_WRITE); /* while CONNECTING: written once open */
    proxy_io_enable(&p.b.io, EV_READ | EV_WRITE); /* before the handshake: nothing re-enables */
    assert_int_equal(evbuffer_get_length(proxy_io_output(&p.a.io)), 100);
    assert_true(run(&p, b_got_100));
    assert_int_equal(p.b.got, 100);
    assert_false(p.b.mismatch);
    pair_close(&p);
}

/* The memory-BIO client of test_data_with_finished: what its SSL wrote goes to ${fd} in one
 * send(); what ${fd} holds goes into its read BIO. */
static void
mem_flush(BIO *wbio, evutil_socket_t fd)
{
    char buf[65536];
    int n = BIO_read(wbio, buf, sizeof(buf));

    if (n > 0) {
        assert_int_equal(send(fd, buf, (size_t)n, 0), n);
    }
}

static void
mem_fill(BIO *rbio, evutil_socket_t fd)
{
    char buf[65536];
    ssize_t n;

    while ((n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
        assert_int_equal(BIO_write(rbio, buf, (int)n), (int)n);
    }
}

/*
 * A client whose Finished and first request arrive in one TCP segment (a memory-BIO client
 * that sends them with one send()): the server side reads both at once (read-ahead), so the
 * request is inside OpenSSL when the handshake completes and the socket never becomes readable
 * for it again.  Reading was enabled before the handshake and nothing enables it again: the
 * side must read what OpenSSL holds by itself.
 */
static void
test_data_with_finished(void **state)
{
    struct pair p;
    struct sockaddr_in sin;
    evutil_socket_t cfd;
    SSL *ssl;
    BIO *rbio, *wbio;

    (void)state;
    memset(&p, 0, sizeof(p));
    p.base = event_base_new();
    p.a.p = p.b.p = &p;
    p.lfd = listen_loopback(&sin);
    cfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(cfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    pair_accept(&p, server_ctx);
    proxy_io_enable(&p.b.io, EV_READ | EV_WRITE);
    ssl = SSL_new(client_ctx);
    rbio = BIO_new(BIO_s_mem());
    wbio = BIO_new(BIO_s_mem());
    assert_non_null(ssl);
    assert_non_null(rbio);
    assert_non_null(wbio);
    SSL_set_bio(ssl, rbio, wbio);
    SSL_set_connect_state(ssl);
    for (int i = 0; i < 100 && SSL_do_handshake(ssl) != 1; i++) {
        struct timeval tv = {0, 10000};

        mem_flush(wbio, cfd);
        event_base_loopexit(p.base, &tv);
        event_base_dispatch(p.base); /* the server side answers */
        mem_fill(rbio, cfd);
    }
    assert_true(SSL_is_init_finished(ssl));
    assert_int_equal(p.b.connected, 0); /* it waits for our Finished */
    assert_int_equal(SSL_write(ssl, pattern, 100), 100);
    mem_flush(wbio, cfd); /* Finished + the request, one segment */
    assert_true(run(&p, b_got_100));
    assert_int_equal(p.b.connected, 1);
    assert_int_equal(p.b.got, 100);
    assert_false(p.b.mismatch);
    SSL_free(ssl);
    evutil_closesocket(cfd);
    proxy_io_free(&p.b.io);
    evutil_closesocket(p.lfd);
    event_base_free(p.base);
}

static bool
b_got_16k(struct pair *p)
{
    return p->b.got >= 16384;
}

/*
 * One 16 KiB record, then the peer waits (no close_notify behind it): b, with a 4 KiB
 * high-watermark drained from outside its handler, must get all of it.  The rest of the record
 * is inside OpenSSL, not in the socket, so only the side itself can resume the read (libevent
 * 2.1's TLS bufferevent waited for the socket here, and pipelined requests stuck).
 */
static void
test_resume_pending_record(void **state)
{
    struct pair p;

    (void)state;
    pair_open(&p, client_ctx, server_ctx);
    assert_true(run(&p, both_connected));
    p.b.drain_later = true;
    proxy_io_set_read_high(&p.b.io, 4096);
    p.a.to_send = 16384;
    side_fill(&p.a);
    assert_true(run(&p, b_got_16k));
    assert_int_equal(p.b.got, 16384);
    assert_false(p.b.mismatch);
    assert_true(p.b.max_input <= 4096);
    assert_int_equal(p.b.eofs, 0);
    pair_close(&p);
}

/* A close_notify reads as END_CLOSE_NOTIFY, a bare FIN under TLS as END_FIN: both EOF. */
static void
test_close_notify_vs_fin(void **state)
{
    struct pair p;

    (void)state;
    pair_open(&p, client_ctx, server_ctx);
    assert_true(run(&p, both_connected));
    proxy_io_shutdown(&p.a.io);
    assert_int_equal(proxy_io_state(&p.a.io), PROXY_IO_WRITE_CLOSED);
    assert_true(run(&p, b_ended));
    assert_int_equal(p.b.eofs, 1);
    assert_int_equal(p.b.last_what, PROXY_IO_EV_EOF | PROXY_IO_EV_READING);
    assert_int_equal(proxy_io_end(&p.b.io), PROXY_IO_END_CLOSE_NOTIFY);
    assert_int_equal(proxy_io_state(&p.b.io), PROXY_IO_READ_CLOSED);
    /* b may still write after the peer's end: its own end closes both ways. */
    assert_int_equal(evbuffer_add(proxy_io_output(&p.b.io), "bye", 3), 0);
    proxy_io_shutdown(&p.b.io);
    pair_close(&p);

    pair_open(&p, client_ctx, server_ctx);
    assert_true(run(&p, both_connected));
    /* A FIN without close_notify (a client that just closes). */
    assert_int_equal(shutdown(proxy_io_fd(&p.a.io), SHUT_WR), 0);
    assert_true(run(&p, b_ended));
    assert_int_equal(p.b.eofs, 1);
    assert_int_equal(p.b.errors, 0);
    assert_int_equal(proxy_io_end(&p.b.io), PROXY_IO_END_FIN);
    assert_int_equal(p.b.close_notify_in, 0);
    pair_close(&p);
}

/* A peer that resets the connection gives ERROR | READING with ECONNRESET, not EOF. */
static void
test_reset(void **state)
{
    struct pair p;
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    evutil_socket_t fd;

    (void)state;
    pair_open(&p, client_ctx, server_ctx);
    assert_true(run(&p, both_connected));
    fd = proxy_io_take_fd(&p.a.io);
    assert_true(fd >= 0);
    assert_int_equal(proxy_io_state(&p.a.io), PROXY_IO_FAILED);
    assert_int_equal(proxy_io_fd(&p.a.io), -1);
    assert_int_equal(proxy_io_take_fd(&p.a.io), -1);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    evutil_closesocket(fd); /* RST */
    assert_true(run(&p, b_ended));
    assert_int_equal(p.b.errors, 1);
    assert_int_equal(p.b.eofs, 0);
    assert_int_equal(p.b.last_what, PROXY_IO_EV_ERROR | PROXY_IO_EV_READING);
    assert_int_equal(p.b.last_errno, ECONNRESET);
    assert_int_equal(proxy_io_socket_error(&p.b.io), ECONNRESET);
    assert_int_equal(proxy_io_ssl_error(&p.b.io), SSL_ERROR_SYSCALL);
    assert_int_equal(proxy_io_state(&p.b.io), PROXY_IO_FAILED);
    pair_close(&p);
}

static bool
b_got_100(struct pair *p)
{
    return p->b.got >= 100;
}

static bool
b_got_200(struct pair *p)
{
    return p->b.got >= 200;
}

/* An idle side gives its buffers back, refuses while something is held, and works on. */
static void
test_release_buffers(void **state)
{
    struct pair p;

    (void)state;
    pair_open(&p, client_ctx, server_ctx);
    assert_int_equal(proxy_io_release_buffers(&p.a.io), -1); /* not open yet */
    assert_true(run(&p, both_connected));
    p.a.to_send = 100;
    side_fill(&p.a);
    assert_true(run(&p, b_got_100));
    assert_int_equal(proxy_io_release_buffers(&p.a.io), 0);
    assert_int_equal(proxy_io_release_buffers(&p.b.io), 0);
    /* Not idle: bytes wait in output. */
    assert_int_equal(evbuffer_add(proxy_io_output(&p.a.io), pattern + 100, 50), 0);
    assert_int_equal(proxy_io_release_buffers(&p.a.io), -1);
    p.a.queued = 150;
    p.a.to_send = 200;
    side_fill(&p.a);
    assert_true(run(&p, b_got_200));
    assert_int_equal(p.b.got, 200);
    assert_false(p.b.mismatch);
    assert_int_equal(proxy_io_release_buffers(&p.b.io), 0);
    pair_close(&p);

    /* A plain pair: evbuffers only. */
    pair_open(&p, NULL, NULL);
    assert_true(run(&p, both_connected));
    p.a.to_send = 100;
    side_fill(&p.a);
    assert_true(run(&p, b_got_100));
    assert_int_equal(proxy_io_release_buffers(&p.b.io), 0);
    pair_close(&p);
}

static bool
b_eof_and_all(struct pair *p)
{
    return p->b.eofs > 0 && p->b.got == p->a.to_send;
}

/* Shutdown with output pending: every byte first, then one close_notify, whatever the calls. */
static void
test_shutdown_once(void **state)
{
    struct pair p;

    (void)state;
    pair_open(&p, client_ctx, server_ctx);
    assert_true(run(&p, both_connected));
    p.a.queued = p.a.to_send = 200 * 1024;
    assert_int_equal(evbuffer_add(proxy_io_output(&p.a.io), pattern, p.a.to_send), 0);
    proxy_io_shutdown(&p.a.io);
    proxy_io_shutdown(&p.a.io);
    assert_int_equal(proxy_io_state(&p.a.io), PROXY_IO_OPEN); /* output still held */
    assert_true(run(&p, b_eof_and_all));
    proxy_io_shutdown(&p.a.io);
    assert_int_equal(p.b.got, 200 * 1024);
    assert_false(p.b.mismatch);
    assert_int_equal(proxy_io_end(&p.b.io), PROXY_IO_END_CLOSE_NOTIFY);
    assert_int_equal(p.a.close_notify_out, 1);
    assert_int_equal(p.b.close_notify_in, 1);
    assert_int_equal(proxy_io_state(&p.a.io), PROXY_IO_WRITE_CLOSED);
    pair_close(&p);
}

static bool
b_got_10000(struct pair *p)
{
    return p->b.got >= 10000;
}

/* 1,000 chains of 10 bytes go out as one or two records, not 1,000. */
static void
test_coalesce(void **state)
{
    struct pair p;
    struct evbuffer *out;

    (void)state;
    pair_open(&p, client_ctx, server_ctx);
    assert_true(run(&p, both_connected));
    p.b.records_in = 0;
    out = proxy_io_output(&p.a.io);
    for (size_t i = 0; i < 1000; i++) {
        /* A reference makes a chain of its own (evbuffer_add would fill one chain). */
        assert_int_equal(evbuffer_add_reference(out, pattern + i * 10, 10, NULL, NULL), 0);
    }
    p.a.queued = p.a.to_send = 10000;
    assert_true(run(&p, b_got_10000));
    assert_int_equal(p.b.got, 10000);
    assert_false(p.b.mismatch);
    print_message("1000 chains of 10 bytes: %d records\n", p.b.records_in);
    assert_true(p.b.records_in >= 1 && p.b.records_in <= 2);
    pair_close(&p);
}

static bool
b_got_50(struct pair *p)
{
    return p->b.got == 50;
}

/*
 * Small records in a row, each shorter than PROXY_IO_RECORD: the side stops reading after a
 * short record only when OpenSSL holds nothing more, so every one of them is delivered, those
 * read ahead into OpenSSL with the first and those that reach the socket later alike.
 */
static void
test_small_records(void **state)
{
    struct pair p;
    SSL *ssl;
    size_t n;

    (void)state;
    pair_open(&p, client_ctx, server_ctx);
    assert_true(run(&p, both_connected));
    p.b.records_in = 0;
    ssl = proxy_io_ssl(&p.a.io);
    /* Five records of 10 bytes straight from a's SSL (proxy_io would coalesce them). */
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(SSL_write_ex(ssl, pattern + i * 10, 10, &n), 1);
        assert_int_equal(n, 10);
        if (i == 2) {
            /* b reads the first three (one wakeup, or more) before the last two are sent. */
            assert_true(run(&p, b_got_30));
        }
    }
    assert_true(run(&p, b_got_50));
    assert_false(p.b.mismatch);
    assert_int_equal(p.b.records_in, 5);
    assert_int_equal(p.a.errors + p.b.errors, 0);
    pair_close(&p);
}

/* A refused connect: ERROR | WRITING with ECONNREFUSED, from the loop. */
static void
test_connect_refused(void **state)
{
    struct pair p;
    struct sockaddr_in sin;
    evutil_socket_t fd;

    (void)state;
    memset(&p, 0, sizeof(p));
    p.base = event_base_new();
    p.a.p = &p;
    fd = listen_loopback(&sin);
    evutil_closesocket(fd); /* nothing listens there now */
    assert_int_equal(proxy_io_init(&p.a.io, p.base, -1, new_ssl(client_ctx, &p.a), PROXY_IO_CLIENT),
                     0);
    proxy_io_setcb(&p.a.io, read_cb, write_cb, event_cb, &p.a);
    assert_int_equal(proxy_io_connect(&p.a.io, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(p.a.errors, 0); /* never from inside the call */
    assert_true(run(&p, a_failed));
    assert_int_equal(p.a.last_what, PROXY_IO_EV_ERROR | PROXY_IO_EV_WRITING);
    assert_int_equal(p.a.last_errno, ECONNREFUSED);
    assert_int_equal(proxy_io_socket_error(&p.a.io), ECONNREFUSED);
    assert_int_equal(proxy_io_state(&p.a.io), PROXY_IO_FAILED);
    proxy_io_free(&p.a.io);
    proxy_io_free(&p.a.io); /* a no-op on a freed side */
    event_base_free(p.base);
}

static bool
both_failed(struct pair *p)
{
    return p->a.errors + p->a.eofs > 0 && p->b.errors + p->b.eofs > 0;
}

/* The client does not trust the server's CA: its failure keeps OpenSSL's reason. */
static void
test_handshake_refused(void **state)
{
    struct pair p;
    unsigned long e, verify_failed = 0;

    (void)state;
    pair_open(&p, stranger_ctx, server_ctx);
    assert_true(run(&p, both_failed));
    assert_int_equal(p.a.connected + p.b.connected, 0);
    assert_int_equal(p.a.last_what, PROXY_IO_EV_ERROR | PROXY_IO_EV_READING | PROXY_IO_EV_WRITING);
    assert_int_equal(proxy_io_ssl_error(&p.a.io), SSL_ERROR_SSL);
    while ((e = proxy_io_get_openssl_error(&p.a.io)) != 0) {
        if (ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
            verify_failed = e;
        }
    }
    assert_true(verify_failed != 0);
    assert_int_equal(ERR_peek_error(), 0); /* nothing left to blame the next peer */
    /* The server read our alert: an error with its reason kept too. */
    assert_int_equal(proxy_io_state(&p.b.io), PROXY_IO_FAILED);
    assert_true((p.b.last_what & PROXY_IO_EV_ERROR) != 0);
    assert_true(proxy_io_get_openssl_error(&p.b.io) != 0);
    pair_close(&p);
}

static bool
b_freed(struct pair *p)
{
    return p->b.freed;
}

/* A side freed inside its own read callback is not touched afterwards (ASan, valgrind). */
static void
test_free_in_callback(void **state)
{
    struct pair p;

    (void)state;
    pair_open(&p, client_ctx, server_ctx);
    assert_true(run(&p, both_connected));
    p.b.free_on_read = true;
    p.a.to_send = 100 * 1024;
    side_fill(&p.a);
    assert_true(run(&p, b_freed));
    assert_true(p.b.got > 0);
    proxy_io_free(&p.b.io); /* already freed: a no-op */
    pair_close(&p);
}

static bool
a_connected_or_failed(struct pair *p)
{
    return p->a.connected + p->a.errors > 0;
}

/* Connect by name: a numeric name, a name no server can resolve, and a side freed while its
 * lookup is in flight (libevent reports the cancel later, to nobody). */
static void
test_connect_hostname(void **state)
{
    struct pair p;
    struct sockaddr_in sin;
    struct evdns_base *dns;
    evutil_socket_t udp;
    socklen_t len = sizeof(sin);
    char ns[64];

    (void)state;
    memset(&p, 0, sizeof(p));
    p.base = event_base_new();
    p.a.p = p.b.p = &p;
    p.lfd = listen_loopback(&sin);
    dns = evdns_base_new(p.base, 0); /* no nameserver, no hosts file */
    assert_non_null(dns);
    assert_int_equal(proxy_io_init(&p.a.io, p.base, -1, NULL, PROXY_IO_CLIENT), 0);
    proxy_io_setcb(&p.a.io, read_cb, write_cb, event_cb, &p.a);
    assert_int_equal(
        proxy_io_connect_hostname(&p.a.io, dns, AF_INET, "127.0.0.1", ntohs(sin.sin_port)), 0);
    assert_true(run(&p, a_connected_or_failed));
    assert_int_equal(p.a.connected, 1);
    assert_int_equal(proxy_io_state(&p.a.io), PROXY_IO_OPEN);
    proxy_io_free(&p.a.io);

    /* A nameserver that never answers (a bound UDP socket): lookups time out (0.2 s). */
    udp = socket(AF_INET, SOCK_DGRAM, 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(udp, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(udp, (struct sockaddr *)&sin, &len), 0);
    (void)snprintf(ns, sizeof(ns), "127.0.0.1:%u", (unsigned)ntohs(sin.sin_port));
    assert_int_equal(evdns_base_nameserver_ip_add(dns, ns), 0);
    assert_int_equal(evdns_base_set_option(dns, "timeout:", "0.2"), 0);
    assert_int_equal(evdns_base_set_option(dns, "attempts:", "1"), 0);

    memset(&p.a, 0, sizeof(p.a));
    p.a.p = &p;
    assert_int_equal(proxy_io_init(&p.a.io, p.base, -1, NULL, PROXY_IO_CLIENT), 0);
    proxy_io_setcb(&p.a.io, read_cb, write_cb, event_cb, &p.a);
    assert_int_equal(proxy_io_connect_hostname(&p.a.io, dns, AF_INET, "no-such-name.invalid", 1),
                     0);
    assert_int_equal(p.a.errors, 0);
    assert_true(run(&p, a_connected_or_failed));
    assert_int_equal(p.a.errors, 1);
    assert_int_equal(p.a.last_what, PROXY_IO_EV_ERROR | PROXY_IO_EV_WRITING);
    assert_true(proxy_io_dns_error(&p.a.io) != 0);
    proxy_io_free(&p.a.io);

    /* Freed while its lookup is in flight. */
    memset(&p.a, 0, sizeof(p.a));
    p.a.p = &p;
    assert_int_equal(proxy_io_init(&p.a.io, p.base, -1, NULL, PROXY_IO_CLIENT), 0);
    proxy_io_setcb(&p.a.io, read_cb, write_cb, event_cb, &p.a);
    assert_int_equal(proxy_io_connect_hostname(&p.a.io, dns, AF_INET, "slow.example.test", 80), 0);
    assert_int_equal(proxy_io_state(&p.a.io), PROXY_IO_CONNECTING);
    proxy_io_free(&p.a.io);
    memset(&p.a.io, 0x5a, sizeof(p.a.io)); /* a late callback into it would show */
    {
        struct timeval tv = {0, 50000};

        event_base_loopexit(p.base, &tv);
        event_base_dispatch(p.base);
    }
    assert_int_equal(p.a.connected + p.a.errors, 0);
    evdns_base_free(dns, 1);
    evutil_closesocket(udp);
    evutil_closesocket(p.lfd);
    event_base_free(p.base);
}

/* ---- setup ---- */

static SSL_CTX *
make_ctx(const SSL_METHOD *method, const struct pki_cert *trust)
{
    SSL_CTX *ctx = SSL_CTX_new(method);

    if (ctx == NULL || SSL_CTX_use_certificate(ctx, leaf->x509) != 1 ||
        SSL_CTX_use_PrivateKey(ctx, leaf->key) != 1 ||
        X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), trust->x509) != 1) {
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    /* ferry's dirty-shutdown policy (tls.h) and buffers (tls_ctx.c). */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    (void)SSL_CTX_set_num_tickets(ctx, 0);
    return ctx;
}

static int
setup(void **state)
{
    static const char *const dns[] = {"node1.test", NULL};

    (void)state;
    root = pki_cert_new(&(struct pki_opts){.cn = "IO Root CA", .ca = true}, NULL);
    other_root = pki_cert_new(&(struct pki_opts){.cn = "Other Root CA", .ca = true}, NULL);
    if (root == NULL || other_root == NULL) {
        return -1;
    }
    leaf = pki_cert_new(&(struct pki_opts){.cn = "node1.test", .dns = dns}, root);
    if (leaf == NULL) {
        return -1;
    }
    server_ctx = make_ctx(TLS_server_method(), root);
    client_ctx = make_ctx(TLS_client_method(), root);
    stranger_ctx = make_ctx(TLS_client_method(), other_root);
    pattern = malloc(MIB + (size_t)64 * 1024);
    if (server_ctx == NULL || client_ctx == NULL || stranger_ctx == NULL || pattern == NULL) {
        return -1;
    }
    for (size_t i = 0; i < MIB + (size_t)64 * 1024; i++) {
        pattern[i] = pattern_byte(i);
    }
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    SSL_CTX_free(server_ctx);
    SSL_CTX_free(client_ctx);
    SSL_CTX_free(stranger_ctx);
    pki_cert_free(leaf);
    pki_cert_free(root);
    pki_cert_free(other_root);
    free(pattern);
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake),
        cmocka_unit_test(test_bulk_tls),
        cmocka_unit_test(test_bulk_plain),
        cmocka_unit_test(test_resume_pending_record),
        cmocka_unit_test(test_data_behind_handshake),
        cmocka_unit_test(test_data_with_finished),
        cmocka_unit_test(test_close_notify_vs_fin),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_release_buffers),
        cmocka_unit_test(test_shutdown_once),
        cmocka_unit_test(test_coalesce),
        cmocka_unit_test(test_small_records),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_handshake_refused),
        cmocka_unit_test(test_free_in_callback),
        cmocka_unit_test(test_connect_hostname),
    };

    (void)signal(SIGPIPE, SIG_IGN); /* as ferry's main() does */
    return cmocka_run_group_tests(tests, setup, teardown);
}
