/*
 * proxy_relay: one direction of a connection.  Moves bytes from src's input to dst's output
 * with backpressure, and passes end-of-stream on as a half-close (spiped's pipe, nginx's
 * half_closed): EOF on src, once dst's output is empty, becomes close_notify + FIN on a TLS
 * dst or a FIN on a plain one.  The connection decides when both directions are done.
 */
#include <errno.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "proxy_internal.h"

/*
 * proxy_relay_read_limit(bev, tls):
 * Bound what ${bev} buffers on input to about PROXY_RELAY_HIGH.  A plain socket: libevent's
 * read high-watermark, which stops reading by itself.  A TLS bufferevent: no watermark,
 * because libevent 2.1 stops reading at the mark in the middle of a TLS record and, when
 * reading resumes, only waits for the socket to become readable again: the rest of that
 * record, already decrypted inside OpenSSL (SSL_pending), is not read until the peer sends
 * something more.  A client that pipelined more requests than ferry holds at once, then waited
 * for the answers, had its last requests stuck there (408 after header_timeout).  Without a
 * mark libevent reads about one record per loop turn and always empties OpenSSL's buffer;
 * ferry then stops reading itself, between records, when the input is full
 * (relay_input_limit(); before the relay, the connection's read callback).
 */
void
proxy_relay_read_limit(struct bufferevent *bev, bool tls)
{
    bufferevent_setwatermark(bev, EV_READ, 0, tls ? 0 : PROXY_RELAY_HIGH);
}

/*
 * proxy_relay_init(r, src, dst, dst_tls):
 * Set up ${r} to carry ${src} -> ${dst} (exactly one of them is TLS).  Caps src's input at
 * PROXY_RELAY_HIGH (proxy_relay_read_limit()).  ${dst} may be NULL (outbound lending, no peer
 * connection yet): the framer then writes into r->hold, which this leaves alone.
 */
void
proxy_relay_init(struct proxy_relay *r, struct bufferevent *src, struct bufferevent *dst,
                 bool dst_tls)
{
    r->src = src;
    r->dst = dst;
    r->dst_tls = dst_tls;
    r->eof_seen = false;
    r->shut_sent = false;
    r->throttled = false;
    r->in_full = false;
    r->bytes = 0;
    r->http = NULL;
    proxy_relay_read_limit(src, !dst_tls);
}

/*
 * A TLS src has no read watermark (proxy_relay_read_limit()): stop reading it while its input
 * holds PROXY_RELAY_HIGH bytes the framer does not take (it is held: pipelined requests wait
 * for responses), and read again once it holds less, unless dst is still over its mark.
 */
static void
relay_input_limit(struct proxy_relay *r)
{
    size_t left = evbuffer_get_length(bufferevent_get_input(r->src));

    if (!r->dst_tls && left >= PROXY_RELAY_HIGH && !r->in_full) {
        bufferevent_disable(r->src, EV_READ);
        r->in_full = true;
    } else if (r->in_full && left < PROXY_RELAY_HIGH) {
        r->in_full = false;
        if (!r->throttled && !r->eof_seen) {
            bufferevent_enable(r->src, EV_READ);
        }
    }
}

/*
 * proxy_shutdown_write(bev, tls):
 * End our sending side of ${bev}: for TLS a close_notify (libevent 2.1 never sends one; the
 * SSL object writes it straight to the socket, which is safe because the caller has drained
 * the bufferevent's output), then a TCP FIN.  Reading goes on: the other direction may still
 * be open.
 */
void
proxy_shutdown_write(struct bufferevent *bev, bool tls)
{
    evutil_socket_t fd = bufferevent_getfd(bev);

    if (tls) {
        SSL *ssl = bufferevent_openssl_get_ssl(bev);

        if (ssl != NULL) {
            /* One call only: a bidirectional shutdown would wait for the peer's reply. */
            ERR_clear_error();
            (void)SSL_shutdown(ssl);
            ERR_clear_error();
        }
    }
    if (fd >= 0) {
        (void)shutdown(fd, SHUT_WR);
    }
}

static void
relay_shut(struct proxy_relay *r)
{
    if (r->shut_sent) {
        return;
    }
    proxy_shutdown_write(r->dst, r->dst_tls);
    r->shut_sent = true;
}

/*
 * relay_read_more(r):
 * libevent 2.1 reads a plain socket at most 4 KiB per wakeup (EVBUFFER_MAX_READ), so a bulk
 * transfer costs a loop turn, an ioctl and a readv per 4 KiB, and the TLS side then writes
 * 4 KiB records.  Called from the read callback of a plain src (so the socket was just
 * readable), read what else is waiting, with one readv into up to PROXY_RELAY_READ of free
 * space, while src and dst together hold less than PROXY_RELAY_HIGH.  EOF is left for
 * libevent to see on its next read (the socket stays readable); a hard error is handed to
 * the event callback as libevent would (reading stopped, BEV_EVENT_ERROR with errno).
 */
static void
relay_read_more(struct proxy_relay *r)
{
    struct evbuffer *in = bufferevent_get_input(r->src);
    evutil_socket_t fd = bufferevent_getfd(r->src);
    struct evbuffer_iovec v[2];
    struct iovec iov[2];
    size_t want, held;
    ssize_t got;
    int n, i, used = 0;

    if (r->dst == NULL) {
        return; /* no peer connection lent yet: what was read waits for one */
    }
    held = evbuffer_get_length(in) + evbuffer_get_length(bufferevent_get_output(r->dst));
    if (r->dst_tls == false || fd < 0 || r->eof_seen || r->shut_sent ||
        (bufferevent_get_enabled(r->src) & EV_READ) == 0 || held + 1024 >= PROXY_RELAY_HIGH ||
        evbuffer_get_length(in) < PROXY_RELAY_LIBEVENT_READ) {
        /* Less than a full 4 KiB read means the socket had no more: spare the EAGAIN. */
        return;
    }
    /* Stay below the input high-watermark: reaching it would stop and restart reading. */
    want = PROXY_RELAY_HIGH - 1 - held;
    if (want > PROXY_RELAY_READ) {
        want = PROXY_RELAY_READ;
    }
    /* libevent keeps a bufferevent's input frozen at the end outside its own reads. */
    evbuffer_unfreeze(in, 0);
    n = evbuffer_reserve_space(in, (ev_ssize_t)want, v, 2);
    if (n <= 0) {
        evbuffer_freeze(in, 0);
        return;
    }
    for (i = 0; i < n; i++) {
        iov[i].iov_base = v[i].iov_base;
        iov[i].iov_len = v[i].iov_len;
        if (want < iov[i].iov_len) {
            iov[i].iov_len = want;
        }
        want -= iov[i].iov_len;
    }
    got = readv(fd, iov, n);
    if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        int err = errno;

        (void)evbuffer_commit_space(in, v, 0);
        evbuffer_freeze(in, 0);
        bufferevent_disable(r->src, EV_READ);
        errno = err;
        bufferevent_trigger_event(r->src, BEV_EVENT_READING | BEV_EVENT_ERROR, 0);
        return;
    }
    for (i = 0; i < n; i++) {
        size_t take = got > 0 ? (size_t)got : 0;

        if (take > iov[i].iov_len) {
            take = iov[i].iov_len;
        }
        v[i].iov_len = take;
        got -= (ssize_t)take;
        if (take > 0) {
            used++;
        }
    }
    (void)evbuffer_commit_space(in, v, used);
    evbuffer_freeze(in, 0);
}

/*
 * relay_ssl_write_direct(r, in, ssl):
 * SSL_write() what ${in} holds, one chain (at most one TLS record) at a time, draining what
 * was written.  Stops at the first call that does not complete.  Safe with libevent's own
 * writes afterwards: a call that returns WANT_WRITE leaves its record half sent inside
 * OpenSSL, and its bytes stay first in ${in}, then first in dst's output; libevent's next
 * SSL_write passes that first chain again, at least as long (SSL_MODE_ACCEPT_MOVING_WRITE_
 * BUFFER is on), which is the retry OpenSSL needs.  A failed call's error repeats on
 * libevent's retry, which reports it.
 */
static void
relay_ssl_write_direct(struct evbuffer *in, SSL *ssl)
{
    struct evbuffer_iovec v;
    int w;

    while (evbuffer_peek(in, PROXY_RELAY_RECORD, NULL, &v, 1) > 0 && v.iov_len > 0) {
        size_t len = v.iov_len > PROXY_RELAY_RECORD ? PROXY_RELAY_RECORD : v.iov_len;

        ERR_clear_error();
        w = SSL_write(ssl, v.iov_base, (int)len);
        if (w <= 0) {
            ERR_clear_error();
            return;
        }
        evbuffer_drain(in, (size_t)w);
    }
}

/*
 * relay_write_direct(r, in):
 * dst's output is empty: write what ${in} holds to dst's socket now (writev, or SSL_write for
 * TLS), draining the bytes written, instead of queueing them.  Queueing costs a loop turn and
 * two epoll_ctl calls per burst: libevent adds dst's write event, writes on the next turn and
 * deletes the event again once the output is empty.  What the socket does not take (or an
 * error, which libevent's own write meets again and reports) goes the usual way.
 */
static void
relay_write_direct(struct proxy_relay *r, struct evbuffer *in)
{
    evutil_socket_t fd = bufferevent_getfd(r->dst);

    if (fd < 0) {
        return;
    }
    if (r->dst_tls) {
        SSL *ssl = bufferevent_openssl_get_ssl(r->dst);

        if (ssl != NULL && SSL_is_init_finished(ssl)) {
            relay_ssl_write_direct(in, ssl);
        }
        return;
    }
    (void)evbuffer_write(in, fd);
}

/*
 * relay_quiet(r, in):
 * This direction has nothing buffered (src's input ${in} and dst's output are empty), which is
 * how a connection sits between requests: give back what idles in it.  libevent reserves a
 * chain before each read (up to 32 KiB for TLS, 8 KiB for plain) and keeps it when the read
 * brought nothing, and no libevent call frees the chains of an empty buffer: one byte added
 * and drained again does (evbuffer_drain frees every chain when it empties a buffer).
 * OpenSSL keeps a record buffer it allocated for the handshake despite
 * SSL_MODE_RELEASE_BUFFERS; SSL_free_buffers() frees both when neither holds pending data.
 */
static void
relay_quiet(struct proxy_relay *r, struct evbuffer *in)
{
    static const char zero = 0;
    struct bufferevent *tls = r->dst_tls ? r->dst : r->src;
    SSL *ssl = tls != NULL ? bufferevent_openssl_get_ssl(tls) : NULL;

    /* Only a plain (socket) bufferevent keeps its input frozen between its reads. */
    if (r->dst_tls) {
        evbuffer_unfreeze(in, 0);
    }
    if (evbuffer_add(in, &zero, 1) == 0) {
        (void)evbuffer_drain(in, 1);
    }
    if (r->dst_tls) {
        evbuffer_freeze(in, 0);
    }
    if (ssl != NULL) {
        (void)SSL_free_buffers(ssl);
    }
}

/*
 * proxy_relay_quiet(r):
 * Give back the buffers that idle in ${r} when nothing is buffered in src's input or dst's
 * output (relay_quiet()); a no-op otherwise.  For a connection that stops relaying for a while
 * (outbound lending: its peer connection went back to the pool).
 */
void
proxy_relay_quiet(struct proxy_relay *r)
{
    struct evbuffer *in = bufferevent_get_input(r->src);

    if (evbuffer_get_length(in) == 0 &&
        (r->dst == NULL || evbuffer_get_length(bufferevent_get_output(r->dst)) == 0)) {
        relay_quiet(r, in);
    }
}

/*
 * proxy_relay_pump(r):
 * Move everything src has read to dst (through the HTTP framer when the relay has one; its
 * result is returned; with no dst, into r->hold).  First read what else src has waiting (libevent
 * reads 4 KiB or one TLS record per wakeup); without a framer, write straight to dst when its
 * output is empty. When dst holds more than PROXY_RELAY_HIGH, stop reading src and ask for dst's
 * write callback at half that (le-proxy); the callback calls proxy_relay_dst_drained(), which
 * resumes.
 */
enum proxy_http_result
proxy_relay_pump(struct proxy_relay *r)
{
    struct evbuffer *in = bufferevent_get_input(r->src);
    struct evbuffer *out = r->dst != NULL ? bufferevent_get_output(r->dst) : r->hold;
    enum proxy_http_result res = PROXY_HTTP_OK;
    size_t n;

    relay_read_more(r);
    n = evbuffer_get_length(in);
    if (n > 0 && !r->shut_sent) {
        if (r->http != NULL) {
            /* HTTP framing: heads are checked and rewritten, bodies move unchanged. */
            res = proxy_http_pump(r->http, in, out);
            r->bytes += n - evbuffer_get_length(in);
        } else {
            if (evbuffer_get_length(out) == 0) {
                relay_write_direct(r, in);
            }
            /* evbuffer_add_buffer moves the chains; no copy. */
            evbuffer_add_buffer(out, in);
            r->bytes += n;
        }
    }
    if (!r->eof_seen && r->dst != NULL && evbuffer_get_length(out) >= PROXY_RELAY_HIGH) {
        bufferevent_disable(r->src, EV_READ);
        r->throttled = true;
        bufferevent_setwatermark(r->dst, EV_WRITE, PROXY_RELAY_HIGH / 2, 0);
    }
    relay_input_limit(r);
    if (n > 0 && evbuffer_get_length(in) == 0 && evbuffer_get_length(out) == 0) {
        relay_quiet(r, in);
    }
    return res;
}

/*
 * src has ended: once everything it sent has been framed (a held HTTP framer may still keep
 * pipelined requests in src's input) and written, half-close dst; while dst's output still
 * holds bytes, ask for dst's write callback at empty and come back from there.
 */
static void
relay_eof_progress(struct proxy_relay *r)
{
    if (!r->eof_seen || r->shut_sent || r->dst == NULL ||
        evbuffer_get_length(bufferevent_get_input(r->src)) > 0) {
        return;
    }
    if (evbuffer_get_length(bufferevent_get_output(r->dst)) == 0) {
        relay_shut(r);
    } else {
        bufferevent_setwatermark(r->dst, EV_WRITE, 0, 0);
    }
}

/*
 * proxy_relay_src_eof(r):
 * src reached end of stream.  Flush what it had read; when that is all framed and dst's
 * output is empty, half-close dst now, else later (proxy_relay_dst_drained,
 * proxy_relay_resume).
 */
void
proxy_relay_src_eof(struct proxy_relay *r)
{
    r->eof_seen = true;
    (void)proxy_relay_pump(r);
    if (r->http != NULL && evbuffer_get_length(bufferevent_get_input(r->src)) == 0) {
        /* Completes a response delimited by the end of the connection (HTTP/1.0 style). */
        (void)proxy_http_eof(r->http);
    }
    relay_eof_progress(r);
}

/*
 * proxy_relay_resume(r):
 * The HTTP framer was held and may go on: frame what waits in src's input, and pass an end of
 * stream that waited behind it on.  Returns proxy_relay_pump()'s result.
 */
enum proxy_http_result
proxy_relay_resume(struct proxy_relay *r)
{
    enum proxy_http_result res = proxy_relay_pump(r);

    if (res == PROXY_HTTP_OK) {
        relay_eof_progress(r);
    }
    return res;
}

/*
 * proxy_relay_dst_drained(r):
 * dst's output fell to its low watermark: resume a throttled src, or finish the half-close
 * once everything has been written.
 */
void
proxy_relay_dst_drained(struct proxy_relay *r)
{
    size_t left = evbuffer_get_length(bufferevent_get_output(r->dst));

    if (r->eof_seen) {
        relay_eof_progress(r);
        return;
    }
    if (r->throttled && left < PROXY_RELAY_HIGH) {
        r->throttled = false;
        bufferevent_setwatermark(r->dst, EV_WRITE, 0, 0);
        if (!r->in_full) {
            bufferevent_enable(r->src, EV_READ);
        }
    }
}
