/*
 * proxy_io: one side of a connection on ferry's own non-blocking socket (proxy_io.h has the
 * state diagram, the ownership and the callbacks' promises).
 *
 * One handler (io_cb) serves both events; it switches on the side's state (redis tls.c's
 * tlsHandleEvent) and then calls io_update(), the one place that turns the state, the
 * caller's wishes and the TLS wants into the two events.  Work that must happen without the
 * socket telling us (bytes added to output, a TLS record already decrypted inside OpenSSL, an
 * error found outside the loop) is scheduled with event_active(), which costs no system call,
 * and only in io_kick(), after io_update(): event_del() would cancel an activation.
 */
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "proxy_io.h"

/* The most evbuffer chains one sendmsg() gathers. */
#define IO_IOV 16

/* io->again: the handshake's next step (beside EV_READ, EV_WRITE). */
#define IO_AGAIN_HANDSHAKE 0x100

/* A name lookup in flight: its own small allocation, because libevent may call back after the
 * side is gone (a cancelled lookup reports from the loop); io is NULL once the side let go. */
struct proxy_io_dns {
    struct proxy_io *io;
    struct evdns_getaddrinfo_request *req;
};

static const char *const state_names[] = {
    [PROXY_IO_IDLE] = "idle",
    [PROXY_IO_CONNECTING] = "connecting",
    [PROXY_IO_HANDSHAKE] = "handshake",
    [PROXY_IO_OPEN] = "open",
    [PROXY_IO_READ_CLOSED] = "read_closed",
    [PROXY_IO_WRITE_CLOSED] = "write_closed",
    [PROXY_IO_CLOSED] = "closed",
    [PROXY_IO_FAILED] = "failed",
};

static void io_cb(evutil_socket_t fd, short what, void *arg);

static struct event *
io_rev(struct proxy_io *io)
{
    return (struct event *)(void *)io->rev;
}

static struct event *
io_wev(struct proxy_io *io)
{
    return (struct event *)(void *)io->wev;
}

static void
io_check(const struct proxy_io *io)
{
    assert(io != NULL && io->magic == PROXY_IO_MAGIC);
    (void)io;
}

/* Legal moves only (the diagram in proxy_io.h); anything else is a programming error. */
static void
io_set_state(struct proxy_io *io, enum proxy_io_state to)
{
    static const unsigned legal[] = {
        [PROXY_IO_IDLE] = 1u << PROXY_IO_CONNECTING,
        [PROXY_IO_CONNECTING] = (1u << PROXY_IO_HANDSHAKE) | (1u << PROXY_IO_OPEN),
        [PROXY_IO_HANDSHAKE] = 1u << PROXY_IO_OPEN,
        [PROXY_IO_OPEN] = (1u << PROXY_IO_READ_CLOSED) | (1u << PROXY_IO_WRITE_CLOSED),
        [PROXY_IO_READ_CLOSED] = 1u << PROXY_IO_CLOSED,
        [PROXY_IO_WRITE_CLOSED] = 1u << PROXY_IO_CLOSED,
        [PROXY_IO_CLOSED] = 0,
        [PROXY_IO_FAILED] = 0,
    };

    /* FAILED is reachable from anywhere (errors, proxy_io_take_fd()). */
    assert(to == PROXY_IO_FAILED || (legal[io->state] & (1u << to)) != 0);
    (void)legal; /* only read by assert() */
    io->state = to;
}

/* May the side read application data: the peer has not ended, nothing failed. */
static bool
io_can_read(const struct proxy_io *io)
{
    return io->state == PROXY_IO_OPEN || io->state == PROXY_IO_WRITE_CLOSED;
}

/* May the side write application data: we have not ended, nothing failed. */
static bool
io_can_write(const struct proxy_io *io)
{
    return io->state == PROXY_IO_OPEN || io->state == PROXY_IO_READ_CLOSED;
}

static bool
io_input_full(const struct proxy_io *io)
{
    return io->read_high > 0 && evbuffer_get_length(io->input) >= io->read_high;
}

/* Reading is wanted now: enabled, the stream open, room in input. */
static bool
io_reading(const struct proxy_io *io)
{
    return io_can_read(io) && (io->enabled & EV_READ) != 0 && !io_input_full(io);
}

/* Writing has work: output to write (EV_WRITE enabled), or a shutdown waiting for nothing
 * more than the socket. */
static bool
io_writing(const struct proxy_io *io)
{
    size_t len = evbuffer_get_length(io->output);

    return io_can_write(io) &&
           (((io->enabled & EV_WRITE) != 0 && len > 0) || (io->shut_wanted && len == 0));
}

/* ---- events ---- */

static void
io_arm(struct proxy_io *io, int which, bool on)
{
    struct event *ev = which == EV_READ ? io_rev(io) : io_wev(io);

    if (on && (io->armed & which) == 0) {
        if (event_add(ev, NULL) == 0) {
            io->armed |= which;
        }
    } else if (!on && (io->armed & which) != 0) {
        (void)event_del(ev);
        io->armed &= ~which;
    }
}

/*
 * io_update(io):
 * The one place the side's two events follow from its state: which readiness the pending
 * operation waits for (the handshake's want, the cross wants of redis tls.c: a read that
 * wants the socket writable, a write that wants it readable), the caller's enabled reading,
 * and a write the socket refused.  A write that has not been refused is tried directly
 * (io_kick()), so the write event is armed only while the socket is full.
 */
static void
io_update(struct proxy_io *io)
{
    bool r = false, w = false;

    if (io->fd >= 0) {
        switch (io->state) {
        case PROXY_IO_CONNECTING:
            w = true; /* connect() completes with writability */
            break;
        case PROXY_IO_HANDSHAKE:
            r = !io->hs_want_write;
            w = io->hs_want_write;
            break;
        case PROXY_IO_OPEN:
        case PROXY_IO_READ_CLOSED:
        case PROXY_IO_WRITE_CLOSED:
            r = io_reading(io) || (io_can_write(io) && io->write_want_read);
            w = (io_writing(io) && io->write_blocked) || (io_reading(io) && io->read_want_write);
            break;
        case PROXY_IO_IDLE:
        case PROXY_IO_CLOSED:
        case PROXY_IO_FAILED:
            break;
        }
    }
    io_arm(io, EV_READ, r);
    io_arm(io, EV_WRITE, w);
}

/*
 * io_kick(io):
 * Run what io->again and io->pending ask for on this loop iteration, without a system call
 * (event_active()): an error to deliver, the handshake's first step, a write not yet tried,
 * a read of bytes OpenSSL already holds (SSL_has_pending(): the socket may never become
 * readable for them).  Called after io_update() only.
 */
static void
io_kick(struct proxy_io *io)
{
    int again = io->again;

    io->again = 0;
    if (io->pending != 0) {
        event_active(io_wev(io), EV_WRITE, 0);
        return;
    }
    if (io->state == PROXY_IO_HANDSHAKE) {
        if ((again & IO_AGAIN_HANDSHAKE) != 0) {
            event_active(io_wev(io), EV_WRITE, 0);
        }
        return;
    }
    if ((again & EV_WRITE) != 0 && io_writing(io) && !io->write_blocked && !io->write_want_read) {
        event_active(io_wev(io), EV_WRITE, 0);
    }
    if ((again & EV_READ) != 0 && io_reading(io) && io->ssl != NULL && SSL_has_pending(io->ssl)) {
        event_active(io_rev(io), EV_READ, 0);
    }
}

/*
 * io_schedule(io, bits):
 * Ask for io_kick(${bits}): now when called from outside the side's handler (after
 * io_update()), else at the handler's end (its io_update() could cancel an activation).
 */
static void
io_schedule(struct proxy_io *io, int bits)
{
    io->again |= bits;
    if (io->gone == NULL) {
        io_update(io);
        io_kick(io);
    }
}

/* ---- failures ---- */

/* Move OpenSSL's error queue into the side: the first PROXY_IO_MAX_ERRORS, the rest dropped. */
static void
io_keep_errors(struct proxy_io *io)
{
    unsigned long e;

    while ((e = ERR_get_error()) != 0) {
        if (io->n_errors < PROXY_IO_MAX_ERRORS) {
            io->errors[io->n_errors++] = e;
        }
    }
}

/* The side failed: FAILED, with errno ${sock_err} and SSL_get_error() ${ssl_err} kept.
 * Returns the event_cb flags ${what} | ERROR. */
static int
io_fail(struct proxy_io *io, int what, int sock_err, int ssl_err)
{
    io_keep_errors(io);
    io->sock_err = sock_err;
    io->ssl_err = ssl_err;
    io_set_state(io, PROXY_IO_FAILED);
    return what | PROXY_IO_EV_ERROR;
}

/* A failure found outside the loop (a lookup, a connect, proxy_io_flush()): event_cb gets
 * ${what} from the loop (io_kick()). */
static void
io_fail_later(struct proxy_io *io, int what, int sock_err)
{
    io->pending = io_fail(io, what, sock_err, 0);
    io_schedule(io, 0);
}

/* The peer ended its stream: READ_CLOSED, or CLOSED when we had ended ours. */
static int
io_read_ended(struct proxy_io *io, enum proxy_io_end how)
{
    io->end = how;
    io_set_state(io, io->state == PROXY_IO_WRITE_CLOSED ? PROXY_IO_CLOSED : PROXY_IO_READ_CLOSED);
    return PROXY_IO_EV_EOF | PROXY_IO_EV_READING;
}

/*
 * io_err_clear():
 * Empty this thread's OpenSSL error queue before a call whose failure SSL_get_error() reads.
 * It is empty on the data path but after a failure (kept for tls/'s explanation), so it is
 * looked at first: ERR_clear_error() clears all 16 slots every time (bench/small-and-resumed-
 * profile.md: 3 calls, about 2,500 instructions per small request on each side).
 */
static void
io_err_clear(void)
{
    if (ERR_peek_error() != 0) {
        ERR_clear_error();
    }
}

/*
 * How the peer ended a TLS stream that read as SSL_ERROR_ZERO_RETURN.  Under
 * SSL_OP_IGNORE_UNEXPECTED_EOF (tls.h) OpenSSL reports a TCP FIN without close_notify as a
 * clean end too, having seen the socket BIO's EOF; after a real close_notify it has not read
 * the FIN behind it (it reads records, not ahead), so the BIO's EOF flag tells them apart.
 */
static enum proxy_io_end
io_tls_end(const struct proxy_io *io)
{
    BIO *rbio = SSL_get_rbio(io->ssl);

    return rbio != NULL && BIO_eof(rbio) ? PROXY_IO_END_FIN : PROXY_IO_END_CLOSE_NOTIFY;
}

/*
 * io_tls_fail(io, ret, op):
 * A TLS call on ${io} returned ${ret} and did not complete (not a want: the caller handled
 * those).  ${op}: READING, WRITING or both (the handshake).  An end of stream (close_notify, or
 * a FIN with no OpenSSL error) is EOF: in the handshake the side FAILED with EOF (libevent's
 * meaning under allow_dirty_shutdown), in the data states READ_CLOSED.  Anything else is an
 * error with errno (a reset: SSL_ERROR_SYSCALL) and OpenSSL's queue kept.
 */
static int
io_tls_fail(struct proxy_io *io, int ret, int op)
{
    int sock_err = errno; /* first: nothing below may change it */
    int err = SSL_get_error(io->ssl, ret);
    unsigned long first = ERR_peek_error();
    /* errno was zeroed before the call: a SYSCALL with neither errno nor a queued error is
     * the socket's EOF (a reset has ECONNRESET). */
    bool eof = err == SSL_ERROR_ZERO_RETURN ||
               (err == SSL_ERROR_SYSCALL && first == 0 && sock_err == 0) ||
               (err == SSL_ERROR_SSL && ERR_GET_LIB(first) == ERR_LIB_SSL &&
                ERR_GET_REASON(first) == SSL_R_UNEXPECTED_EOF_WHILE_READING);
    enum proxy_io_end how = err == SSL_ERROR_ZERO_RETURN ? io_tls_end(io) : PROXY_IO_END_FIN;

    if (eof && io->state == PROXY_IO_HANDSHAKE) {
        /* Closed during the handshake: tls/ explains it from f.eof and what was recorded. */
        io->end = how;
        (void)io_fail(io, op, 0, err);
        return op | PROXY_IO_EV_EOF;
    }
    if (eof && op == PROXY_IO_EV_READING && io_can_read(io)) {
        ERR_clear_error();
        return io_read_ended(io, how);
    }
    return io_fail(io, op, err == SSL_ERROR_SYSCALL ? sock_err : 0, err);
}

/* ---- connect and handshake ---- */

/*
 * io_handshake(io):
 * One SSL_do_handshake() step.  Returns CONNECTED when it completed (OPEN; bytes already
 * queued in output, or decrypted behind the handshake, are taken up on this loop iteration),
 * 0 while it waits for the socket (hs_want_write says which way), or a failure's flags.
 */
static int
io_handshake(struct proxy_io *io)
{
    int r;

    ERR_clear_error();
    errno = 0;
    r = SSL_do_handshake(io->ssl);
    if (r == 1) {
        io->hs_want_write = false;
        io->hs_buffers = 2;
        io_set_state(io, PROXY_IO_OPEN);
        io->again |= EV_READ | EV_WRITE;
        return PROXY_IO_EV_CONNECTED;
    }
    switch (SSL_get_error(io->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        io->hs_want_write = false;
        return 0;
    case SSL_ERROR_WANT_WRITE:
        io->hs_want_write = true;
        return 0;
    default:
        return io_tls_fail(io, r, PROXY_IO_EV_READING | PROXY_IO_EV_WRITING);
    }
}

/* The socket of a CONNECTING side became writable: the connect's outcome, then the
 * handshake when the side has an SSL. */
static int
io_connected(struct proxy_io *io)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        err = errno;
    }
    if (err == EINPROGRESS || err == EALREADY || err == EINTR) {
        return 0;
    }
    if (err != 0) {
        return io_fail(io, PROXY_IO_EV_WRITING, err, 0);
    }
    if (io->ssl == NULL) {
        io_set_state(io, PROXY_IO_OPEN);
        io->again |= EV_WRITE; /* what was queued while connecting */
        return PROXY_IO_EV_CONNECTED;
    }
    io_set_state(io, PROXY_IO_HANDSHAKE);
    return io_handshake(io); /* the ClientHello goes now */
}

/* (Re)attach the two events to ${io}->fd; they must be neither pending nor active. */
static int
io_assign(struct proxy_io *io)
{
    if (event_assign(io_rev(io), io->base, io->fd, EV_READ | EV_PERSIST, io_cb, io) != 0 ||
        event_assign(io_wev(io), io->base, io->fd, EV_WRITE | EV_PERSIST, io_cb, io) != 0) {
        return -1;
    }
    return 0;
}

/* A non-blocking, close-on-exec TCP socket for ${family}, or -1 with errno. */
static evutil_socket_t
io_socket(int family)
{
    evutil_socket_t fd;

#ifdef SOCK_NONBLOCK
    fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
#else
    fd = socket(family, SOCK_STREAM, 0);
    if (fd >= 0 &&
        (evutil_make_socket_nonblocking(fd) != 0 || evutil_make_socket_closeonexec(fd) != 0)) {
        int err = errno;

        evutil_closesocket(fd);
        errno = err;
        return -1;
    }
#endif
    return fd;
}

/*
 * io_connect_addr(io, sa, salen):
 * The CONNECTING side ${io} gets a socket and connects it to ${sa} without blocking.  A connect
 * refused at once is delivered from the loop like a later one.  Returns 0, or -1 with errno
 * when no socket could be made or set up.
 */
static int
io_connect_addr(struct proxy_io *io, const struct sockaddr *sa, socklen_t salen)
{
    evutil_socket_t fd = io_socket(sa->sa_family);

    if (fd < 0) {
        return -1;
    }
    io->fd = fd; /* owned (and closed by proxy_io_free()) from here */
    if (io_assign(io) != 0 || (io->ssl != NULL && SSL_set_fd(io->ssl, (int)fd) != 1)) {
        errno = ENOMEM;
        return -1;
    }
    if (io->ssl != NULL) {
        SSL_set_connect_state(io->ssl);
    }
    if (connect(fd, sa, salen) != 0 && errno != EINPROGRESS && errno != EINTR) {
        io_fail_later(io, PROXY_IO_EV_WRITING, errno);
        return 0;
    }
    io_schedule(io, 0); /* arms the write event: the connect's outcome */
    return 0;
}

/*
 * proxy_io_connect(io, sa, salen):
 * Start connecting the IDLE side ${io} to ${sa} (proxy_io.h).
 */
int
proxy_io_connect(struct proxy_io *io, const struct sockaddr *sa, socklen_t salen)
{
    io_check(io);
    assert(io->state == PROXY_IO_IDLE);
    io_set_state(io, PROXY_IO_CONNECTING);
    if (io_connect_addr(io, sa, salen) != 0) {
        int err = errno;

        (void)io_fail(io, 0, err, 0);
        io_update(io);
        errno = err;
        return -1;
    }
    return 0;
}

/* evdns_getaddrinfo's answer: connect to the first address, or fail with the lookup's error. */
static void
io_dns_cb(int result, struct evutil_addrinfo *ai, void *arg)
{
    struct proxy_io_dns *d = arg;
    struct proxy_io *io = d->io;

    free(d);
    if (io == NULL || result == EVUTIL_EAI_CANCEL) {
        /* The side let go of the lookup (proxy_io_free()): nothing to tell. */
        if (ai != NULL) {
            evutil_freeaddrinfo(ai);
        }
        return;
    }
    io_check(io);
    io->dns = NULL;
    if (result != 0 || ai == NULL) {
        io->dns_err = result != 0 ? result : EVUTIL_EAI_FAIL;
        io_fail_later(io, PROXY_IO_EV_WRITING, 0);
    } else if (io_connect_addr(io, ai->ai_addr, (socklen_t)ai->ai_addrlen) != 0) {
        io_fail_later(io, PROXY_IO_EV_WRITING, errno);
    }
    if (ai != NULL) {
        evutil_freeaddrinfo(ai);
    }
}

/* "${port}" in decimal into ${buf} (at least 6 bytes): no printf on the dial path. */
static void
io_port_str(uint16_t port, char *buf)
{
    char tmp[6];
    size_t n = 0, i;

    do {
        tmp[n++] = (char)('0' + port % 10);
        port /= 10;
    } while (port != 0);
    for (i = 0; i < n; i++) {
        buf[i] = tmp[n - 1 - i];
    }
    buf[n] = '\0';
}

/*
 * proxy_io_connect_hostname(io, dns, family, host, port):
 * Resolve ${host}, then connect to its first address (proxy_io.h).
 */
int
proxy_io_connect_hostname(struct proxy_io *io, struct evdns_base *dns, int family, const char *host,
                          uint16_t port)
{
    struct evutil_addrinfo hints;
    struct evdns_getaddrinfo_request *req;
    struct proxy_io_dns *d;
    char portbuf[8];

    io_check(io);
    assert(io->state == PROXY_IO_IDLE);
    d = malloc(sizeof(*d));
    if (d == NULL) {
        errno = ENOMEM;
        return -1;
    }
    d->io = io;
    d->req = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP; /* the hints bufferevent_socket_connect_hostname uses */
    io_port_str(port, portbuf);
    io_set_state(io, PROXY_IO_CONNECTING);
    io->dns = d;
    /* May answer at once (a numeric address, /etc/hosts): io_dns_cb has run and freed d. */
    req = evdns_getaddrinfo(dns, host, portbuf, &hints, io_dns_cb, d);
    if (io->dns == d) {
        d->req = req;
    }
    return 0;
}

/* ---- reading ---- */

/*
 * io_read_plain(io, room, got):
 * One readv() into up to ${room} bytes of input (64 KiB when the last read filled its space,
 * else PROXY_IO_READ_SMALL).  Sets *${got} when bytes came; returns EOF or error flags, or 0.
 */
static int
io_read_plain(struct proxy_io *io, size_t room, bool *got)
{
    struct evbuffer_iovec v[2];
    struct iovec iov[2];
    size_t want = io->read_big ? PROXY_IO_READ_CHAIN : PROXY_IO_READ_SMALL;
    ssize_t n;
    int nv, i, used = 0;

    if (want > room) {
        want = room;
    }
    nv = evbuffer_reserve_space(io->input, (ev_ssize_t)want, v, 2);
    if (nv <= 0) {
        return io_fail(io, PROXY_IO_EV_READING, ENOMEM, 0);
    }
    for (i = 0; i < nv; i++) {
        size_t take = v[i].iov_len < want ? v[i].iov_len : want;

        iov[i].iov_base = v[i].iov_base;
        iov[i].iov_len = take;
        want -= take;
    }
    n = readv(io->fd, iov, nv);
    if (n <= 0) {
        int err = errno;

        (void)evbuffer_commit_space(io->input, v, 0);
        if (n == 0) {
            return io_read_ended(io, PROXY_IO_END_FIN);
        }
        if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) {
            return 0;
        }
        return io_fail(io, PROXY_IO_EV_READING, err, 0);
    }
    io->read_big = true;
    for (i = 0; i < nv; i++) {
        size_t take = (size_t)n < iov[i].iov_len ? (size_t)n : iov[i].iov_len;

        if (take < iov[i].iov_len) {
            io->read_big = false; /* the socket had no more */
        }
        v[i].iov_len = take;
        n -= (ssize_t)take;
        if (take > 0) {
            used++;
        }
    }
    (void)evbuffer_commit_space(io->input, v, used);
    *got = true;
    return 0;
}

/*
 * io_read_tls(io, room, got):
 * SSL_read_ex() into reserved input space while it returns data, up to ${room} bytes: records
 * already in OpenSSL and whatever the socket holds, but not past a record shorter than
 * PROXY_IO_RECORD that leaves nothing inside OpenSSL (no SSL_read_ex and read(2) only to hear
 * EAGAIN after each small message).  One reservation and one commit per
 * PROXY_IO_READ_CHAIN.  When ${room} runs out with bytes still inside OpenSSL, the read comes
 * back on the next loop iteration (io_kick()): bounded work per wakeup.
 */
static int
io_read_tls(struct proxy_io *io, size_t room, bool *got)
{
    size_t total = 0;
    int ev = 0;
    bool more = true;

    while (more && total < room) {
        struct evbuffer_iovec v[2];
        size_t want = io->read_big || total > 0 ? PROXY_IO_READ_CHAIN : PROXY_IO_READ_SMALL;
        size_t filled = 0;
        int nv, i, used = 0;

        if (want > room - total) {
            want = room - total;
        }
        nv = evbuffer_reserve_space(io->input, (ev_ssize_t)want, v, 2);
        if (nv <= 0) {
            return io_fail(io, PROXY_IO_EV_READING, ENOMEM, 0);
        }
        for (i = 0; i < nv && more; i++) {
            size_t cap = v[i].iov_len < want - filled ? v[i].iov_len : want - filled;
            size_t pos = 0;

            while (pos < cap) {
                size_t n = 0;
                int r;

                io_err_clear();
                errno = 0;
                r = SSL_read_ex(io->ssl, (char *)v[i].iov_base + pos, cap - pos, &n);
                if (r == 1) {
                    pos += n;
                    if (io->hs_buffers == 2) {
                        io->hs_buffers = 1; /* post-handshake messages came before it */
                    }
                    if (n < PROXY_IO_RECORD && !SSL_has_pending(io->ssl)) {
                        /* A short record and nothing left inside OpenSSL: the peer is not
                         * sending in bulk, so spare the read that would say EAGAIN (the
                         * read event is level-triggered: more bytes wake us again). */
                        more = false;
                        break;
                    }
                    continue;
                }
                switch (SSL_get_error(io->ssl, r)) {
                case SSL_ERROR_WANT_READ:
                    break;
                case SSL_ERROR_WANT_WRITE:
                    /* OpenSSL must write to read on (a key update's answer): wait for
                     * writability, then read again (io_update()). */
                    io->read_want_write = true;
                    break;
                default:
                    ev = io_tls_fail(io, r, PROXY_IO_EV_READING);
                    break;
                }
                more = false;
                break;
            }
            v[i].iov_len = pos;
            filled += pos;
            if (pos > 0) {
                used = i + 1;
            }
            if (pos < cap) {
                more = false;
            }
        }
        (void)evbuffer_commit_space(io->input, v, used);
        total += filled;
        io->read_big = more; /* the reservation filled: the peer sends in bulk */
    }
    if (total > 0) {
        *got = true;
    }
    if (more && ev == 0) {
        io->again |= EV_READ; /* room ran out: OpenSSL may hold a record already read */
    }
    return ev;
}

/* A read that brought nothing leaves its reserved chain in an empty input: give it back (one
 * byte added and drained: evbuffer_drain frees every chain of a buffer it empties). */
static void
io_drop_chains(struct proxy_io *io, struct evbuffer *buf)
{
    static const char zero = 0;

    io->muted = true;
    if (evbuffer_add(buf, &zero, 1) == 0) {
        (void)evbuffer_drain(buf, 1);
    }
    io->muted = false;
}

/* Read what the socket (or OpenSSL) has, within PROXY_IO_READ_MAX and the high-watermark. */
static int
io_read(struct proxy_io *io, bool *got)
{
    size_t room = PROXY_IO_READ_MAX;
    size_t held = evbuffer_get_length(io->input);
    int ev;

    if (io->read_high > 0) {
        if (held >= io->read_high) {
            return 0;
        }
        if (room > io->read_high - held) {
            room = io->read_high - held;
        }
    }
    io->read_want_write = false;
    io->muted = true;
    ev = io->ssl != NULL ? io_read_tls(io, room, got) : io_read_plain(io, room, got);
    io->muted = false;
    if (!*got && held == 0) {
        io_drop_chains(io, io->input);
    }
    return ev;
}

/* ---- writing ---- */

/*
 * io_shut(io):
 * Output is empty and a shutdown is wanted: close_notify once when the TLS session is up (a
 * single SSL_shutdown(): a bidirectional one would wait for the peer's), then the FIN.
 * WANT_WRITE keeps the shutdown pending on writability; a failed close_notify (the peer has
 * gone) still gets its FIN.  Returns true when done.
 */
static bool
io_shut(struct proxy_io *io)
{
    if (io->ssl != NULL && !io->close_notify_sent) {
        int r;

        ERR_clear_error();
        r = SSL_shutdown(io->ssl);
        if (r < 0 && SSL_get_error(io->ssl, r) == SSL_ERROR_WANT_WRITE) {
            io->write_blocked = true;
            return false;
        }
        ERR_clear_error();
        io->close_notify_sent = true;
    }
    (void)shutdown(io->fd, SHUT_WR);
    io->shut_wanted = false;
    io_set_state(io, io->state == PROXY_IO_READ_CLOSED ? PROXY_IO_CLOSED : PROXY_IO_WRITE_CLOSED);
    return true;
}

/* One sendmsg() of up to ${max} output bytes; returns the bytes sent, 0 when refused
 * (write_blocked set), -1 on error (errno). */
static ssize_t
io_send_plain(struct proxy_io *io, size_t max)
{
    struct evbuffer_iovec v[IO_IOV];
    struct iovec iov[IO_IOV];
    struct msghdr msg;
    size_t asked = 0;
    ssize_t n;
    int nv, i;

    nv = evbuffer_peek(io->output, (ev_ssize_t)max, NULL, v, IO_IOV);
    if (nv > IO_IOV) {
        nv = IO_IOV;
    }
    for (i = 0; i < nv; i++) {
        size_t take = v[i].iov_len < max - asked ? v[i].iov_len : max - asked;

        iov[i].iov_base = v[i].iov_base;
        iov[i].iov_len = take;
        asked += take;
    }
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)nv;
    do {
        n = sendmsg(io->fd, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            io->write_blocked = true;
            return 0;
        }
        return -1;
    }
    if ((size_t)n < asked) {
        io->write_blocked = true; /* the socket is full: spare the EAGAIN */
    }
    return n;
}

/*
 * io_send_tls(io, sent):
 * One SSL_write_ex() of at most one record (PROXY_IO_RECORD).  Small chains are first copied
 * into one record's buffer so that they do not each become a record (nginx's
 * ssl_buffer_size); a first chain holding a whole record is passed as it is.  A call that
 * wants the socket leaves its bytes first in output: the retry passes them again, at least
 * as many (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER allows the other address).  Returns 1 with
 * *${sent}, 0 on a want (write_blocked or write_want_read set), or a failure's flags (< 0 is
 * not used: flags are positive) through *${ev}.
 */
static int
io_send_tls(struct proxy_io *io, size_t *sent, int *ev)
{
    unsigned char record[PROXY_IO_RECORD];
    struct evbuffer_iovec v;
    size_t len = evbuffer_get_length(io->output);
    const void *p;
    int r;

    if (len > PROXY_IO_RECORD) {
        len = PROXY_IO_RECORD;
    }
    if (evbuffer_peek(io->output, (ev_ssize_t)len, NULL, &v, 1) >= 1 && v.iov_len >= len) {
        p = v.iov_base;
    } else {
        if (evbuffer_copyout(io->output, record, len) != (ev_ssize_t)len) {
            *ev = io_fail(io, PROXY_IO_EV_WRITING, ENOMEM, 0);
            return -1;
        }
        p = record;
    }
    io_err_clear();
    errno = 0;
    r = SSL_write_ex(io->ssl, p, len, sent);
    if (r == 1) {
        return 1;
    }
    switch (SSL_get_error(io->ssl, r)) {
    case SSL_ERROR_WANT_WRITE:
        io->write_blocked = true;
        return 0;
    case SSL_ERROR_WANT_READ:
        /* OpenSSL must read to write on (TLS 1.2 renegotiation is refused by tls/, but a
         * record may wait): wait for readability, then write again (io_update()). */
        io->write_want_read = true;
        return 0;
    default:
        *ev = io_tls_fail(io, r, PROXY_IO_EV_WRITING);
        return -1;
    }
}

/*
 * io_write(io, drained):
 * Write output until it is empty, the socket refuses, or PROXY_IO_WRITE_MAX went (then the
 * write comes back on the next loop iteration); then a shutdown that waited for it.  Sets
 * *${drained} (write_cb is due) when bytes went and output is at or below the low-watermark,
 * or a waiting shutdown was done.  Returns a failure's flags, or 0.
 */
static int
io_write(struct proxy_io *io, bool *drained)
{
    size_t wrote = 0;
    int ev = 0;

    io->write_blocked = false;
    io->write_want_read = false;
    io->muted = true;
    while (wrote < PROXY_IO_WRITE_MAX && evbuffer_get_length(io->output) > 0 &&
           !io->write_blocked && !io->write_want_read) {
        size_t n = 0;

        if (io->ssl == NULL) {
            ssize_t s = io_send_plain(io, PROXY_IO_WRITE_MAX - wrote);

            if (s < 0) {
                ev = io_fail(io, PROXY_IO_EV_WRITING, errno, 0);
                break;
            }
            n = (size_t)s;
        } else if (io_send_tls(io, &n, &ev) < 0) {
            break;
        }
        if (n > 0) {
            (void)evbuffer_drain(io->output, n);
            wrote += n;
        }
    }
    io->muted = false;
    if (ev != 0) {
        return ev;
    }
    if (evbuffer_get_length(io->output) == 0) {
        if (io->shut_wanted && io_shut(io)) {
            *drained = true;
        }
    } else if (!io->write_blocked && !io->write_want_read) {
        io->again |= EV_WRITE; /* PROXY_IO_WRITE_MAX went: the rest on the next iteration */
    }
    if (wrote > 0 && evbuffer_get_length(io->output) <= io->write_low) {
        *drained = true;
    }
    return 0;
}

/* ---- the handler ---- */

/*
 * io_transfer(io, what, got, drained):
 * OPEN, READ_CLOSED, WRITE_CLOSED: write when the write event fired (or a refused write
 * waited for readability and the read event fired), then read when the read event fired (or
 * a read waited for writability).  Returns the event_cb flags.
 */
static int
io_transfer(struct proxy_io *io, short what, bool *got, bool *drained)
{
    bool do_write = io_writing(io) && ((what & EV_WRITE) != 0 || io->write_want_read);
    bool do_read = io_reading(io) && ((what & EV_READ) != 0 || io->read_want_write);
    int ev = 0;

    if (do_write) {
        ev = io_write(io, drained);
    }
    if (do_read && ev == 0 && io_reading(io)) {
        ev = io_read(io, got);
    }
    return ev;
}

/*
 * io_cb(fd, what, arg):
 * Both events' handler: one switch on the state, then the callbacks (read_cb, write_cb,
 * event_cb, in that order; each may free the side: the local ${gone} tells), then io_update()
 * and io_kick().
 */
static void
io_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_io *io = arg;
    bool gone = false, got = false, drained = false;
    int ev = 0;

    (void)fd;
    io_check(io);
    io->gone = &gone;
    if (io->pending != 0) {
        /* An error found outside the loop: deliver it and nothing else. */
        ev = io->pending;
        io->pending = 0;
    } else {
        switch (io->state) {
        case PROXY_IO_CONNECTING:
            if ((what & EV_WRITE) != 0 && io->fd >= 0) {
                ev = io_connected(io);
            }
            break;
        case PROXY_IO_HANDSHAKE:
            ev = io_handshake(io);
            break;
        case PROXY_IO_OPEN:
        case PROXY_IO_READ_CLOSED:
        case PROXY_IO_WRITE_CLOSED:
            ev = io_transfer(io, what, &got, &drained);
            break;
        case PROXY_IO_IDLE:
        case PROXY_IO_CLOSED:
        case PROXY_IO_FAILED:
            break;
        }
    }
    if (got && io->read_cb != NULL) {
        io->read_cb(io, io->arg);
        if (gone) {
            return;
        }
    }
    if (drained && io->write_cb != NULL) {
        io->write_cb(io, io->arg);
        if (gone) {
            return;
        }
    }
    if (ev != 0 && io->event_cb != NULL) {
        if ((ev & (PROXY_IO_EV_ERROR | PROXY_IO_EV_EOF)) != 0) {
            errno = io->sock_err; /* as libevent leaves it for EVUTIL_SOCKET_ERROR() */
        }
        io->event_cb(io, (short)ev, io->arg);
        if (gone) {
            return;
        }
    }
    io->gone = NULL;
    io_update(io);
    io_kick(io);
}

/* input changed: the caller drained it below the high-watermark, so reading resumes (with a
 * read of what OpenSSL already holds: the socket may never tell). */
static void
io_input_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct proxy_io *io = arg;

    if (io->muted || info->n_deleted == 0 || io->read_high == 0 ||
        info->orig_size < io->read_high || evbuffer_get_length(buf) >= io->read_high) {
        return;
    }
    io_schedule(io, EV_READ);
}

/* output grew: write it on this loop iteration, directly (no write event armed first). */
static void
io_output_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct proxy_io *io = arg;

    (void)buf;
    if (io->muted || info->n_added == 0) {
        return;
    }
    io_schedule(io, EV_WRITE);
}

/* ---- the public calls ---- */

/*
 * proxy_io_init(io, base, fd, ssl, role):
 * Make ${io} one side on ${base} with ${fd} and ${ssl} (proxy_io.h).
 */
int
proxy_io_init(struct proxy_io *io, struct event_base *base, evutil_socket_t fd, SSL *ssl,
              enum proxy_io_role role)
{
    memset(io, 0, sizeof(*io));
    io->fd = -1;
    if (event_get_struct_event_size() > PROXY_IO_EVENT_SPACE) {
        goto err0;
    }
    if ((io->input = evbuffer_new()) == NULL) {
        goto err0;
    }
    if ((io->output = evbuffer_new()) == NULL) {
        goto err1;
    }
    if (evbuffer_add_cb(io->input, io_input_cb, io) == NULL ||
        evbuffer_add_cb(io->output, io_output_cb, io) == NULL) {
        goto err2;
    }
    io->base = base;
    io->fd = fd;
    if (io_assign(io) != 0) {
        goto err2;
    }
    if (ssl != NULL) {
        if (fd >= 0 && SSL_set_fd(ssl, (int)fd) != 1) {
            goto err2;
        }
        /* One record per SSL_write_ex(), retried from wherever output's bytes now are. */
        SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        /* Read-ahead: one read(2) per record or more instead of a header then a body (half
         * the reads of a bulk transfer, bench/spike); what it reads beyond a record waits in
         * OpenSSL, which io_kick() reads without the socket's word. */
        SSL_set_read_ahead(ssl, 1);
        if (SSL_is_init_finished(ssl)) {
            /* Handshake done elsewhere: the role is set, and setting it again would reset the
             * session's state.  The first step completes at once (CONNECTED). */
        } else if (role == PROXY_IO_CLIENT) {
            SSL_set_connect_state(ssl);
        } else {
            SSL_set_accept_state(ssl);
        }
    }
    io->magic = PROXY_IO_MAGIC;
    io->ssl = ssl;
    io->role = role;
    if (fd < 0) {
        io->state = PROXY_IO_IDLE;
    } else if (ssl != NULL) {
        /* The handshake's first step runs on the next loop iteration (io_kick()). */
        io->state = PROXY_IO_HANDSHAKE;
        io_schedule(io, IO_AGAIN_HANDSHAKE);
    } else {
        io->state = PROXY_IO_OPEN;
    }
    return 0;

err2:
    evbuffer_free(io->output);
err1:
    evbuffer_free(io->input);
err0:
    SSL_free(ssl);
    if (fd >= 0) {
        evutil_closesocket(fd);
    }
    memset(io, 0, sizeof(*io));
    io->fd = -1;
    return -1;
}

/*
 * proxy_io_free(io):
 * Release what ${io} holds (proxy_io.h); safe inside its callbacks.
 */
void
proxy_io_free(struct proxy_io *io)
{
    if (io == NULL || io->magic != PROXY_IO_MAGIC) {
        return;
    }
    if (io->gone != NULL) {
        *io->gone = true; /* io_cb returns without touching ${io} */
    }
    if (io->dns != NULL) {
        struct proxy_io_dns *d = io->dns;

        /* libevent may still call back (cancelled, from the loop): d outlives us. */
        d->io = NULL;
        io->dns = NULL;
        if (d->req != NULL) {
            evdns_getaddrinfo_cancel(d->req);
        }
    }
    /* Deletes the events from the loop and from its active queue. */
    (void)event_del(io_rev(io));
    (void)event_del(io_wev(io));
    io->muted = true;
    evbuffer_free(io->input);
    evbuffer_free(io->output);
    /* No SSL_shutdown(): the owner decides a clean end (proxy_io_shutdown()).  The socket BIO
     * does not close the socket (SSL_set_fd's BIO_NOCLOSE). */
    SSL_free(io->ssl);
    if (io->fd >= 0) {
        evutil_closesocket(io->fd);
    }
    memset(io, 0, sizeof(*io));
    io->fd = -1;
}

void
proxy_io_setcb(struct proxy_io *io, proxy_io_data_cb read_cb, proxy_io_data_cb write_cb,
               proxy_io_event_cb event_cb, void *arg)
{
    io_check(io);
    io->read_cb = read_cb;
    io->write_cb = write_cb;
    io->event_cb = event_cb;
    io->arg = arg;
}

/*
 * proxy_io_enable(io, what):
 * Turn on reading and/or writing (proxy_io.h).
 */
void
proxy_io_enable(struct proxy_io *io, short what)
{
    io_check(io);
    io->enabled |= what & (EV_READ | EV_WRITE);
    io_schedule(io, what);
}

/*
 * proxy_io_disable(io, what):
 * Turn off reading and/or writing (proxy_io.h).
 */
void
proxy_io_disable(struct proxy_io *io, short what)
{
    io_check(io);
    io->enabled &= ~what;
    io_schedule(io, 0);
}

short
proxy_io_enabled(const struct proxy_io *io)
{
    io_check(io);
    return (short)io->enabled;
}

struct evbuffer *
proxy_io_input(const struct proxy_io *io)
{
    io_check(io);
    return io->input;
}

struct evbuffer *
proxy_io_output(const struct proxy_io *io)
{
    io_check(io);
    return io->output;
}

/*
 * proxy_io_set_read_high(io, high):
 * The read high-watermark (proxy_io.h).
 */
void
proxy_io_set_read_high(struct proxy_io *io, size_t high)
{
    io_check(io);
    io->read_high = high;
    io_schedule(io, EV_READ);
}

/*
 * proxy_io_set_write_low(io, low):
 * The write low-watermark (proxy_io.h).
 */
void
proxy_io_set_write_low(struct proxy_io *io, size_t low)
{
    io_check(io);
    io->write_low = low;
}

/*
 * proxy_io_flush(io):
 * Write output now, as far as the socket takes it (proxy_io.h).
 */
int
proxy_io_flush(struct proxy_io *io)
{
    bool drained = false;
    int ev;

    io_check(io);
    if (!io_can_write(io) || (io->enabled & EV_WRITE) == 0) {
        return -1;
    }
    if (io->write_want_read || (io->write_blocked && evbuffer_get_length(io->output) > 0)) {
        return 0; /* the socket said "not now": its event brings us back */
    }
    ev = io_write(io, &drained);
    if (ev != 0) {
        io->pending = ev;
        io_schedule(io, 0);
        return -1;
    }
    io_schedule(io, 0);
    return 0;
}

/*
 * proxy_io_shutdown(io):
 * End our sending side once output is written (proxy_io.h).
 */
void
proxy_io_shutdown(struct proxy_io *io)
{
    io_check(io);
    switch (io->state) {
    case PROXY_IO_IDLE:
    case PROXY_IO_CONNECTING:
    case PROXY_IO_HANDSHAKE:
        io->shut_wanted = true; /* once open and output is written */
        return;
    case PROXY_IO_OPEN:
    case PROXY_IO_READ_CLOSED:
        break;
    case PROXY_IO_WRITE_CLOSED:
    case PROXY_IO_CLOSED:
    case PROXY_IO_FAILED:
        return;
    }
    io->shut_wanted = true;
    if (evbuffer_get_length(io->output) == 0 && !io->write_want_read) {
        io->write_blocked = false;
        (void)io_shut(io);
    }
    io_schedule(io, EV_WRITE);
}

/*
 * proxy_io_release_buffers(io):
 * Give back the memory an idle side holds (proxy_io.h).
 */
int
proxy_io_release_buffers(struct proxy_io *io)
{
    io_check(io);
    if (evbuffer_get_length(io->input) > 0 || evbuffer_get_length(io->output) > 0 ||
        io->state < PROXY_IO_OPEN || io->state == PROXY_IO_FAILED) {
        return -1;
    }
    if (io->ssl != NULL && (SSL_has_pending(io->ssl) || io->read_want_write ||
                            io->write_want_read || io->write_blocked)) {
        return -1;
    }
    /* Empty evbuffers hold no chain: evbuffer_drain() and moving every byte out free them,
     * and io_read() gives back a reservation that brought nothing (libevent's own reads keep
     * it: hence the relay's "one byte added and drained").  OpenSSL's buffers are what is
     * left to free: those of the handshake and of the messages right after it (hs_buffers);
     * SSL_MODE_RELEASE_BUFFERS (tls_ctx.c) frees those of the data path as they empty, so
     * calling SSL_free_buffers() at every quiet moment freed nothing and cost about 2,000
     * instructions per small request on each side (bench/small-and-resumed-profile.md).
     * Without the second release an idle outbound side kept 9 KiB (pair-counts idle). */
    io->read_big = false;
    if (io->ssl != NULL && io->hs_buffers > 0) {
        if (SSL_free_buffers(io->ssl) != 1) {
            return -1;
        }
        if (io->hs_buffers == 1) {
            io->hs_buffers = 0;
        }
    }
    return 0;
}

/*
 * proxy_io_take_fd(io):
 * Hand ${io}'s socket back to the caller; the side is FAILED from here (proxy_io.h).
 */
evutil_socket_t
proxy_io_take_fd(struct proxy_io *io)
{
    evutil_socket_t fd;

    io_check(io);
    fd = io->fd;
    if (fd < 0) {
        return -1;
    }
    io_arm(io, EV_READ, false);
    io_arm(io, EV_WRITE, false);
    /* Also out of the active queue: no handler may run on a socket we no longer own. */
    (void)event_del(io_rev(io));
    (void)event_del(io_wev(io));
    io->fd = -1;
    io->pending = 0;
    if (io->state != PROXY_IO_FAILED) {
        io_set_state(io, PROXY_IO_FAILED);
    }
    return fd;
}

void
proxy_io_reset(struct proxy_io *io)
{
    struct linger now = {.l_onoff = 1, .l_linger = 0};

    io_check(io);
    if (io->fd >= 0) {
        (void)setsockopt(io->fd, SOL_SOCKET, SO_LINGER, &now, sizeof(now));
    }
}

SSL *
proxy_io_ssl(const struct proxy_io *io)
{
    io_check(io);
    return io->ssl;
}

evutil_socket_t
proxy_io_fd(const struct proxy_io *io)
{
    io_check(io);
    return io->fd;
}

enum proxy_io_state
proxy_io_state(const struct proxy_io *io)
{
    io_check(io);
    return io->state;
}

enum proxy_io_end
proxy_io_end(const struct proxy_io *io)
{
    io_check(io);
    return io->end;
}

/*
 * proxy_io_state_str(state):
 * The stable name of ${state}.
 */
const char *
proxy_io_state_str(enum proxy_io_state state)
{
    if ((unsigned)state >= sizeof(state_names) / sizeof(state_names[0])) {
        return "unknown";
    }
    return state_names[state];
}

/*
 * proxy_io_get_openssl_error(io):
 * The next OpenSSL error kept from ${io}'s failure, oldest first; 0 when none is left.
 */
unsigned long
proxy_io_get_openssl_error(struct proxy_io *io)
{
    io_check(io);
    if (io->next_error >= io->n_errors) {
        return 0;
    }
    return io->errors[io->next_error++];
}

int
proxy_io_socket_error(const struct proxy_io *io)
{
    io_check(io);
    return io->sock_err;
}

int
proxy_io_ssl_error(const struct proxy_io *io)
{
    io_check(io);
    return io->ssl_err;
}

int
proxy_io_dns_error(const struct proxy_io *io)
{
    io_check(io);
    return io->dns_err;
}
