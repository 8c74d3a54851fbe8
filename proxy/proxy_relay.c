/*
 * proxy_relay: one direction of a connection.  Moves bytes from src's input to dst's output
 * with backpressure, and passes end-of-stream on as a half-close (spiped's pipe, nginx's
 * half_closed): EOF on src, once dst's output is empty, becomes close_notify + FIN on a TLS
 * dst or a FIN on a plain one.  The connection decides when both directions are done.
 */
#include <event2/buffer.h>

#include "proxy_internal.h"
#include "proxy_io.h"

/*
 * proxy_relay_read_limit(io):
 * Bound what ${io} buffers on input to PROXY_RELAY_HIGH: its read high-watermark, which stops
 * reading by itself and resumes once the input is drained below it (proxy_io reads the rest
 * of a TLS record already inside OpenSSL on the next loop turn, so TLS needs no special case).
 */
void
proxy_relay_read_limit(struct proxy_io *io)
{
    proxy_io_set_read_high(io, PROXY_RELAY_HIGH);
}

/*
 * proxy_relay_init(r, src, dst, dst_tls):
 * Set up ${r} to carry ${src} -> ${dst} (exactly one of them is TLS).  Caps src's input at
 * PROXY_RELAY_HIGH (proxy_relay_read_limit()).  ${dst} may be NULL (outbound lending, no peer
 * connection yet): the framer then writes into r->hold, which this leaves alone.
 */
void
proxy_relay_init(struct proxy_relay *r, struct proxy_io *src, struct proxy_io *dst, bool dst_tls)
{
    r->src = src;
    r->dst = dst;
    r->dst_tls = dst_tls;
    r->eof_seen = false;
    r->shut_sent = false;
    r->throttled = false;
    r->bytes = 0;
    r->http = NULL;
    proxy_relay_read_limit(src);
}

static void
relay_shut(struct proxy_relay *r)
{
    if (r->shut_sent) {
        return;
    }
    /* close_notify (TLS, once, only while the session is healthy), then FIN. */
    proxy_io_shutdown(r->dst);
    r->shut_sent = true;
}

/*
 * relay_quiet(r):
 * This direction has nothing buffered, which is how a connection sits between requests: give
 * back OpenSSL's record buffers of its TLS side (proxy_io_release_buffers(); empty evbuffers
 * hold no chain with proxy_io).  A no-op when that side still holds bytes.
 */
static void
relay_quiet(struct proxy_relay *r)
{
    struct proxy_io *tls = r->dst_tls ? r->dst : r->src;

    if (tls != NULL) {
        (void)proxy_io_release_buffers(tls);
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
    if (evbuffer_get_length(proxy_io_input(r->src)) == 0 &&
        (r->dst == NULL || evbuffer_get_length(proxy_io_output(r->dst)) == 0)) {
        relay_quiet(r);
    }
}

/*
 * proxy_relay_pump(r):
 * Move everything src has read to dst (through the HTTP framer when the relay has one; its
 * result is returned; with no dst, into r->hold).  dst writes what it was given on this loop
 * iteration.  When dst holds more than PROXY_RELAY_HIGH, stop reading src and ask for dst's
 * write callback at half that (le-proxy); the callback calls proxy_relay_dst_drained(), which
 * resumes.
 */
enum proxy_http_result
proxy_relay_pump(struct proxy_relay *r)
{
    struct evbuffer *in = proxy_io_input(r->src);
    struct evbuffer *out = r->dst != NULL ? proxy_io_output(r->dst) : r->hold;
    enum proxy_http_result res = PROXY_HTTP_OK;
    size_t n;

    n = evbuffer_get_length(in);
    if (n > 0 && !r->shut_sent) {
        if (r->http != NULL) {
            /* HTTP framing: heads are checked and rewritten, bodies move unchanged. */
            res = proxy_http_pump(r->http, in, out);
            r->bytes += n - evbuffer_get_length(in);
        } else {
            /* evbuffer_add_buffer moves the chains; no copy. */
            evbuffer_add_buffer(out, in);
            r->bytes += n;
        }
    }
    if (!r->eof_seen && r->dst != NULL && evbuffer_get_length(out) >= PROXY_RELAY_HIGH) {
        proxy_io_disable(r->src, EV_READ);
        r->throttled = true;
        proxy_io_set_write_low(r->dst, PROXY_RELAY_HIGH / 2);
    }
    return res;
}

/*
 * src has ended: once everything it sent has been framed (a held HTTP framer may still keep
 * pipelined requests in src's input) and written, half-close dst; while dst's output still
 * holds bytes, ask for dst's write callback at empty and come back from there.  An end inside
 * an HTTP message is not passed on: the connection ends such an exchange its own way (a FIN
 * would tell a recipient reading to the end of the connection that the message was whole).
 */
static void
relay_eof_progress(struct proxy_relay *r)
{
    if (!r->eof_seen || r->shut_sent || r->dst == NULL ||
        evbuffer_get_length(proxy_io_input(r->src)) > 0 ||
        (r->http != NULL && proxy_http_cut(r->http))) {
        return;
    }
    if (evbuffer_get_length(proxy_io_output(r->dst)) == 0) {
        relay_shut(r);
    } else {
        proxy_io_set_write_low(r->dst, 0);
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
    if (r->http != NULL && evbuffer_get_length(proxy_io_input(r->src)) == 0) {
        /*
         * Completes a response delimited by the end of the connection (HTTP/1.0 style) when
         * its sender ended it: a TLS stream's end only with close_notify, since a FIN (or a
         * reset) without one may be a truncation by anyone on the path (RFC 8446 §6.1).
         */
        (void)proxy_http_eof(r->http, proxy_io_ssl(r->src) == NULL ||
                                          proxy_io_end(r->src) == PROXY_IO_END_CLOSE_NOTIFY);
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
 * once everything has been written.  Once both src's input and dst's output are empty, give
 * back the idle TLS side's record buffers (relay_quiet()).
 */
void
proxy_relay_dst_drained(struct proxy_relay *r)
{
    size_t left = evbuffer_get_length(proxy_io_output(r->dst));

    if (r->eof_seen) {
        relay_eof_progress(r);
        return;
    }
    if (r->throttled && left < PROXY_RELAY_HIGH) {
        r->throttled = false;
        proxy_io_set_write_low(r->dst, 0);
        proxy_io_enable(r->src, EV_READ);
    }
    if (left == 0 && (r->src == NULL || evbuffer_get_length(proxy_io_input(r->src)) == 0)) {
        relay_quiet(r);
    }
}
