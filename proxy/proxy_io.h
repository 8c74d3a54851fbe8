/*
 * proxy_io: one side of a connection, on ferry's own non-blocking socket (issue 14).
 *
 * A struct proxy_io is one socket, an optional SSL (client or server role), an input and an
 * output evbuffer and one read and one write libevent event, driven by non-blocking
 * SSL_read_ex / SSL_write_ex / SSL_do_handshake / SSL_shutdown, or readv / sendmsg on a plain
 * socket, as redis src/tls.c and nginx's ngx_event_openssl.c do.  Public library API only:
 * <event2/event.h>, <event2/buffer.h>, <event2/dns.h>, <event2/util.h> and OpenSSL's SSL_* on
 * an SSL this side owns.  Its calls mirror the subset of bufferevent that proxy/ uses, so that
 * replacing a bufferevent by a proxy_io is mechanical:
 *
 *   bufferevent_socket_new / _openssl_socket_new   proxy_io_init(io, base, fd, ssl, role)
 *   bufferevent_socket_connect(_hostname)          proxy_io_connect(_hostname)
 *   bufferevent_setcb                              proxy_io_setcb
 *   bufferevent_enable / _disable / _get_enabled   proxy_io_enable / _disable / _enabled
 *   bufferevent_get_input / _get_output            proxy_io_input / proxy_io_output
 *   bufferevent_setwatermark(EV_READ, 0, high)     proxy_io_set_read_high
 *   bufferevent_setwatermark(EV_WRITE, low, 0)     proxy_io_set_write_low
 *   bufferevent_getfd / bufferevent_setfd(-1)      proxy_io_fd / proxy_io_take_fd
 *   bufferevent_openssl_get_ssl                    proxy_io_ssl
 *   bufferevent_get_openssl_error                  proxy_io_get_openssl_error
 *   bufferevent_socket_get_dns_error               proxy_io_dns_error
 *   bufferevent_free                               proxy_io_free
 *   SSL_shutdown + shutdown(SHUT_WR) (by hand)     proxy_io_shutdown
 *   the relay's direct writev / SSL_write          proxy_io_flush
 *   the relay's "one byte added and drained" and SSL_free_buffers   proxy_io_release_buffers
 *
 * ## The state of one side (one enum, changed only by io_set_state() in proxy_io.c)
 *
 *   proxy_io_init(fd=-1)                 proxy_io_init(fd, ssl)      proxy_io_init(fd, no ssl)
 *       IDLE                                    |                            |
 *        | proxy_io_connect[_hostname]          |                            |
 *        v              TCP up, ssl             v                            |
 *    CONNECTING ------------------------> HANDSHAKE                         |
 *        |  TCP up, no ssl                      | SSL_do_handshake() == 1    |
 *        +------------------------------------->+<---------------------------+
 *                                               v     (event_cb CONNECTED, except for an
 *                                             OPEN     accepted plain socket, which is OPEN
 *                            the peer ended /      \  we ended (proxy_io_shutdown()      at once)
 *            (close_notify or FIN: proxy_io_end)    \  done: close_notify once, then FIN)
 *                                   v                v
 *                             READ_CLOSED      WRITE_CLOSED
 *                                   \                /
 *                                    +--> CLOSED <--+
 *
 *    any state --(socket error, reset, TLS error, connect or DNS failure)--> FAILED
 *    any state --(proxy_io_take_fd())--> FAILED (no more I/O; the caller has the socket)
 *
 * Beside the state, one side keeps only what its pending operation waits for, as redis's
 * tls.c does with its flags: the TLS want (want-read / want-write) of the handshake, of the
 * last SSL_read_ex (READ_WANT_WRITE: a read that needs the socket writable, e.g. to answer a
 * key update) and of the last SSL_write_ex or SSL_shutdown (WRITE_WANT_READ), whether the
 * last write was refused (the socket or OpenSSL said "not now": the write event is armed
 * only then), and the caller's wishes (enabled EV_READ / EV_WRITE, a shutdown asked for while
 * output still held bytes).  io_update() turns these into the two events, in one place.
 *
 * ## Who owns what
 * - The struct proxy_io itself: the caller (embedded in its connection struct, or anywhere);
 *   proxy_io_free() releases what it holds, not the struct.  The two events live inside the
 *   struct (event_assign() into space of event_get_struct_event_size(): no allocation per
 *   event and no <event2/event_struct.h>).
 * - The socket: from proxy_io_init() (or the socket proxy_io_connect() makes) until
 *   proxy_io_free() closes it, or proxy_io_take_fd() hands it back.
 * - The SSL: from proxy_io_init() on; proxy_io_free() calls SSL_free() (never SSL_shutdown():
 *   a clean end is proxy_io_shutdown(), once the caller has decided the side is healthy).
 *   The caller may read it (peer certificate, version, verify result) through proxy_io_ssl();
 *   every I/O call on it is made here.
 * - The two evbuffers: made by proxy_io_init(), freed by proxy_io_free().  The caller reads
 *   input (drains it, moves it with evbuffer_add_buffer) and appends to output; it never
 *   drains output.  Bytes added to output are written without any further call: the output
 *   buffer's callback schedules a write attempt for this loop iteration (event_active(), no
 *   system call), so everything added within one callback goes out together.
 *
 * ## What the callbacks promise
 * Callbacks run only from the event loop, never from inside a proxy_io_* call, and at most
 * one at a time per side.  A callback may call any proxy_io_* function on its side, including
 * proxy_io_free() (and then free the struct's memory too): the side notices and touches
 * nothing after the callback returns.
 * - read_cb(io, arg): input received bytes in this wakeup (at most PROXY_IO_READ_MAX, and no
 *   more than the read high-watermark allows).  Reading stops by itself while input holds the
 *   high-watermark and resumes when the caller drains it below (with the rest of a TLS record
 *   already inside OpenSSL read on the next loop turn, not when the peer sends again).
 * - write_cb(io, arg): a write in this wakeup left output at or below the write
 *   low-watermark (0: empty).  A shutdown waiting for the output to drain has been done when
 *   it is called (proxy_io_state() says WRITE_CLOSED or CLOSED).
 * - event_cb(io, what, arg), ${what} a mix of PROXY_IO_EV_*:
 *     CONNECTED           the TCP connect and, with an SSL, the handshake completed (an accepted
 *                         TLS side: the handshake);
 *     EOF | READING       the peer ended its stream; proxy_io_end() says how (close_notify, or
 *                         a FIN without one: OpenSSL reads both as a clean end under
 *                         SSL_OP_IGNORE_UNEXPECTED_EOF, see tls.h, and this tells them apart);
 *                         read_cb has had every byte before it;
 *     ERROR | READING / WRITING   a socket or TLS error on that operation; errno is set to
 *                         proxy_io_socket_error() when the callback runs, and OpenSSL's
 *                         errors of the failure wait in proxy_io_get_openssl_error() (they are
 *                         taken off the thread's queue at once, so that a stale entry cannot
 *                         blame the next peer);
 *     EOF | READING | WRITING   the peer closed during the handshake (the side is FAILED);
 *     ERROR | WRITING     connect() failed, or the name did not resolve (proxy_io_dns_error());
 *   After ERROR the side is FAILED and does no more I/O: free it.  A reset reads as ERROR
 *   (errno ECONNRESET), not as EOF as libevent's TLS bufferevent reports it under
 *   allow_dirty_shutdown.
 *
 * No timeouts: the connection keeps its own timer.  The process must ignore SIGPIPE (ferry's
 * main() does): OpenSSL writes with write(2); plain writes use MSG_NOSIGNAL.  A side belongs to
 * its event base's thread.
 */
#ifndef FERRY_PROXY_IO_H
#define FERRY_PROXY_IO_H

#include <stdalign.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/ssl.h>

#define PROXY_IO_MAGIC 0x494f5344u /* "IOSD" */

/* What a side reads per wakeup at most, and the largest piece it reserves in its input for
 * one read: a chain of 64 KiB with libevent's chain header (power-of-two allocations). */
#define PROXY_IO_READ_MAX   ((size_t)64 * 1024)
#define PROXY_IO_READ_CHAIN ((size_t)64 * 1024 - 256)
/* The first reservation of a wakeup after a read that did not fill its space (small
 * requests do not each get 64 KiB). */
#define PROXY_IO_READ_SMALL ((size_t)16 * 1024 - 256)
/* What a side writes per wakeup at most (fair service: 8 TLS records). */
#define PROXY_IO_WRITE_MAX ((size_t)128 * 1024)
/* One TLS record's payload: the most one SSL_write_ex() is given, and the size small output
 * chains are coalesced to (nginx's ssl_buffer_size). */
#define PROXY_IO_RECORD ((size_t)16384)
/* OpenSSL errors kept from one failure (tls_failure.h keeps 16; the first are the specific). */
#define PROXY_IO_MAX_ERRORS 8
/* Room for one struct event (checked against event_get_struct_event_size() at init). */
#define PROXY_IO_EVENT_SPACE 192

/* event_cb's flags; the values of libevent's BEV_EVENT_* so that the swap reads the same. */
#define PROXY_IO_EV_READING   0x01
#define PROXY_IO_EV_WRITING   0x02
#define PROXY_IO_EV_EOF       0x10
#define PROXY_IO_EV_ERROR     0x20
#define PROXY_IO_EV_CONNECTED 0x80

/* The role of the side's SSL (ignored without one). */
enum proxy_io_role {
    PROXY_IO_CLIENT, /* we connected: SSL_set_connect_state() */
    PROXY_IO_SERVER, /* we accepted: SSL_set_accept_state() */
};

/* The state of one side (the diagram above). */
enum proxy_io_state {
    PROXY_IO_IDLE,         /* initialised with no socket: proxy_io_connect() comes next */
    PROXY_IO_CONNECTING,   /* name resolution or TCP connect in flight */
    PROXY_IO_HANDSHAKE,    /* TLS handshake in flight */
    PROXY_IO_OPEN,         /* both directions open */
    PROXY_IO_READ_CLOSED,  /* the peer ended its stream; we may still write */
    PROXY_IO_WRITE_CLOSED, /* we ended ours (close_notify when TLS, then FIN); we still read */
    PROXY_IO_CLOSED,       /* both ended */
    PROXY_IO_FAILED,       /* an error (or the socket was taken): no more I/O */
};

/* How the peer ended its stream (READ_CLOSED, CLOSED). */
enum proxy_io_end {
    PROXY_IO_END_NONE,         /* it has not */
    PROXY_IO_END_CLOSE_NOTIFY, /* TLS close_notify: a clean end */
    PROXY_IO_END_FIN,          /* TCP FIN (plain), or TLS without close_notify (truncation
                                  is possible: the protocol above must tell) */
};

struct proxy_io;

typedef void (*proxy_io_data_cb)(struct proxy_io *io, void *arg);
typedef void (*proxy_io_event_cb)(struct proxy_io *io, short what, void *arg);

struct proxy_io_dns;

/* One side.  Its body is here so that a connection can embed it (no allocation per side);
 * its fields are proxy_io.c's: callers use the functions below. */
struct proxy_io {
    uint32_t magic;
    enum proxy_io_state state;
    enum proxy_io_end end;
    enum proxy_io_role role;
    evutil_socket_t fd;
    SSL *ssl;
    struct event_base *base;
    struct evbuffer *input;
    struct evbuffer *output;
    proxy_io_data_cb read_cb;
    proxy_io_data_cb write_cb;
    proxy_io_event_cb event_cb;
    void *arg;
    size_t read_high; /* 0: none */
    size_t write_low;
    /* the caller's wishes */
    int enabled;      /* EV_READ | EV_WRITE */
    bool shut_wanted; /* proxy_io_shutdown() asked; done once output is written */
    /* what the pending operations wait for (the TLS wants; see the header comment) */
    bool hs_want_write;   /* HANDSHAKE: SSL_do_handshake wants writability (else readability) */
    bool read_want_write; /* the last SSL_read_ex wants the socket writable */
    bool write_want_read; /* the last SSL_write_ex wants it readable */
    bool write_blocked;   /* the last write attempt was refused: wait for writability */
    bool read_big;        /* the last read filled its space: reserve PROXY_IO_READ_CHAIN */
    /* OpenSSL may hold record buffers that SSL_MODE_RELEASE_BUFFERS does not give back (the
     * handshake's, and a TLS 1.3 client's after the session tickets that come with the first
     * data): 2 after the handshake, 1 once application data was read, 0 once a release
     * followed that; proxy_io_release_buffers() calls SSL_free_buffers() only while > 0. */
    unsigned char hs_buffers;
    bool close_notify_sent;
    bool muted;   /* the buffer change under way is our own, not the caller's */
    int armed;    /* the events added to the loop: EV_READ | EV_WRITE */
    int again;    /* work to run on this loop iteration (io_kick) */
    int pending;  /* event_cb flags of a failure found outside the loop, to deliver */
    bool *gone;   /* while the handler runs: set by proxy_io_free() */
    int sock_err; /* errno of the failure; 0: none */
    int ssl_err;  /* SSL_get_error() of the failure; 0: none */
    int dns_err;  /* evdns_getaddrinfo's error; 0: none */
    unsigned long errors[PROXY_IO_MAX_ERRORS]; /* OpenSSL's queue at the failure */
    unsigned n_errors, next_error;
    struct proxy_io_dns *dns;                                     /* a name lookup in flight */
    alignas(max_align_t) unsigned char rev[PROXY_IO_EVENT_SPACE]; /* struct event: reading */
    alignas(max_align_t) unsigned char wev[PROXY_IO_EVENT_SPACE]; /* struct event: writing */
};

/*
 * proxy_io_init(io, base, fd, ssl, role):
 * Make ${io} one side on ${base}: the connected, non-blocking socket ${fd} (or -1: call
 * proxy_io_connect() next) and the SSL ${ssl} in ${role}, or NULL for a plain side.  ${io}
 * owns ${fd} and ${ssl} from here on, also when this fails.  A plain ${fd} is OPEN at once; a
 * TLS one starts its handshake on the next loop iteration (event_cb CONNECTED when it ends).
 * Reading and writing start disabled (proxy_io_enable()).  Sets SSL_MODE_ENABLE_PARTIAL_WRITE,
 * SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER and read-ahead on ${ssl}; the role is left alone when
 * its handshake is already done.  Returns 0, or -1 (out of memory, or
 * libevent's struct event larger than PROXY_IO_EVENT_SPACE): then ${io} holds nothing
 * (${fd} closed, ${ssl} freed) and proxy_io_free() is a no-op on it.
 */
int proxy_io_init(struct proxy_io *io, struct event_base *base, evutil_socket_t fd, SSL *ssl,
                  enum proxy_io_role role);

/*
 * proxy_io_free(io):
 * Release what ${io} holds: cancel a name lookup, delete its events, free both buffers (what
 * output still holds is dropped), SSL_free() its SSL (no close_notify: proxy_io_shutdown()
 * first for a clean end) and close its socket.  Safe inside ${io}'s own callbacks; NULL or a
 * side already freed (or zeroed) is a no-op.  The struct's memory stays the caller's.
 */
void proxy_io_free(struct proxy_io *io);

/*
 * proxy_io_setcb(io, read_cb, write_cb, event_cb, arg):
 * Set ${io}'s callbacks (any may be NULL) and their argument ${arg}; see the header comment.
 */
void proxy_io_setcb(struct proxy_io *io, proxy_io_data_cb read_cb, proxy_io_data_cb write_cb,
                    proxy_io_event_cb event_cb, void *arg);

/*
 * proxy_io_connect(io, sa, salen):
 * Start a non-blocking TCP connect of the IDLE side ${io} to ${sa}, then the TLS handshake
 * when ${io} has an SSL.  The result arrives in event_cb: CONNECTED, or ERROR | WRITING (a
 * refused or failed connect included; errno says why).  Returns 0, or -1 with errno when no
 * socket could be made (EMFILE...): then no callback follows.
 */
int proxy_io_connect(struct proxy_io *io, const struct sockaddr *sa, socklen_t salen);

/*
 * proxy_io_connect_hostname(io, dns, family, host, port):
 * Resolve ${host} with ${dns} (evdns_getaddrinfo, ${family} AF_UNSPEC, AF_INET or AF_INET6)
 * and connect to its first address as proxy_io_connect() does.  A failed lookup ends in
 * event_cb ERROR | WRITING with proxy_io_dns_error() set.  Returns 0, or -1 when the lookup
 * could not start (no callback follows).
 */
int proxy_io_connect_hostname(struct proxy_io *io, struct evdns_base *dns, int family,
                              const char *host, uint16_t port);

/*
 * proxy_io_enable(io, what) / proxy_io_disable(io, what):
 * Start or stop reading (EV_READ: read_cb gets what arrives) and writing (EV_WRITE: output is
 * written as it fills; while disabled it stays queued) on ${io}.  Enabling EV_WRITE with an
 * empty output arms nothing (no wakeup, no epoll change).  The handshake and a connect run
 * whatever is enabled.
 */
void proxy_io_enable(struct proxy_io *io, short what);
void proxy_io_disable(struct proxy_io *io, short what);

/* proxy_io_enabled(io): what proxy_io_enable() turned on (EV_READ | EV_WRITE). */
short proxy_io_enabled(const struct proxy_io *io);

/* proxy_io_input(io), proxy_io_output(io): ${io}'s buffers (owned by it). */
struct evbuffer *proxy_io_input(const struct proxy_io *io);
struct evbuffer *proxy_io_output(const struct proxy_io *io);

/*
 * proxy_io_set_read_high(io, high):
 * Stop reading while ${io}'s input holds ${high} bytes or more (0: no limit), and read again
 * once the caller has drained it below: the read high-watermark.  A read never takes input
 * past ${high}.
 */
void proxy_io_set_read_high(struct proxy_io *io, size_t high);

/*
 * proxy_io_set_write_low(io, low):
 * Call write_cb after a write that leaves ${low} bytes or fewer in output (0: once empty).
 */
void proxy_io_set_write_low(struct proxy_io *io, size_t low);

/*
 * proxy_io_flush(io):
 * Write what ${io}'s output holds now, as far as the socket takes it (plain: one sendmsg;
 * TLS: records of PROXY_IO_RECORD), without waiting for the loop; what is left goes out when
 * the socket is writable.  No callback runs; an error is delivered to event_cb from the
 * loop.  Returns 0, or -1 when the side has failed or cannot write (not OPEN or READ_CLOSED,
 * or EV_WRITE disabled).
 */
int proxy_io_flush(struct proxy_io *io);

/*
 * proxy_io_shutdown(io):
 * End our sending side of ${io} once its output is written: a TLS side sends close_notify
 * (once, whatever the number of calls, and only while its session is up and healthy: OPEN or
 * READ_CLOSED), then a TCP FIN (shutdown(SHUT_WR)).  Reading goes on.  Done at once when
 * output is empty, else after the write that empties it (before that write's write_cb).
 * No-op when already done or failed.
 */
void proxy_io_shutdown(struct proxy_io *io);

/*
 * proxy_io_release_buffers(io):
 * ${io} is idle: give back the memory it holds while nothing is buffered.  Its evbuffers hold
 * no chain once empty (a read that brought nothing gives its reservation back at once), so
 * this frees OpenSSL's record buffers (SSL_free_buffers(): OpenSSL keeps the one of the
 * handshake despite SSL_MODE_RELEASE_BUFFERS).  Returns 0 when both buffers were empty and
 * OpenSSL let go of its buffers (or there is no SSL), -1 when something is still held
 * (nothing freed then).  No allocation; the next read or write allocates again.
 */
int proxy_io_release_buffers(struct proxy_io *io);

/*
 * proxy_io_take_fd(io):
 * Take ${io}'s socket back (lingering close): its events are deleted, the side becomes FAILED
 * and will neither read, write, nor close the socket, and its SSL (if any) is only freed.
 * Returns the socket, or -1 when it has none.
 */
evutil_socket_t proxy_io_take_fd(struct proxy_io *io);

/*
 * proxy_io_reset(io):
 * Make ${io}'s close a reset (SO_LINGER 0: RST, not FIN, and what the kernel still holds for
 * it is dropped): for a stream whose recipient would read a FIN as a whole message's end.
 * Sends nothing now; proxy_io_free() closes.  No effect on a side without a socket.
 */
void proxy_io_reset(struct proxy_io *io);

/* proxy_io_ssl(io), proxy_io_fd(io), proxy_io_state(io): ${io}'s SSL (NULL: plain), socket
 * (-1: none) and state. */
SSL *proxy_io_ssl(const struct proxy_io *io);
evutil_socket_t proxy_io_fd(const struct proxy_io *io);
enum proxy_io_state proxy_io_state(const struct proxy_io *io);

/* proxy_io_end(io): how the peer ended its stream (PROXY_IO_END_NONE: it has not). */
enum proxy_io_end proxy_io_end(const struct proxy_io *io);

/* proxy_io_state_str(state): the stable name of ${state}, for debug logs. */
const char *proxy_io_state_str(enum proxy_io_state state);

/*
 * proxy_io_get_openssl_error(io):
 * The next OpenSSL error code kept from ${io}'s failure (oldest first), or 0 when none is
 * left.  Feed them to tls_failure_add_error().
 */
unsigned long proxy_io_get_openssl_error(struct proxy_io *io);

/* proxy_io_socket_error(io): errno of ${io}'s failure (0: none). */
int proxy_io_socket_error(const struct proxy_io *io);

/* proxy_io_ssl_error(io): SSL_get_error() of ${io}'s failed TLS call (0: none). */
int proxy_io_ssl_error(const struct proxy_io *io);

/* proxy_io_dns_error(io): the evutil EAI error of a failed lookup (0: none). */
int proxy_io_dns_error(const struct proxy_io *io);

#endif /* FERRY_PROXY_IO_H */
