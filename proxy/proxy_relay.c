/*
 * proxy_relay: one direction of a connection.  Moves bytes from src's input to dst's output
 * with backpressure, and passes end-of-stream on as a half-close (spiped's pipe, nginx's
 * half_closed): EOF on src, once dst's output is empty, becomes close_notify + FIN on a TLS
 * dst or a FIN on a plain one.  The connection decides when both directions are done.
 */
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "proxy_internal.h"

/*
 * proxy_relay_init(r, src, dst, dst_tls):
 * Set up ${r} to carry ${src} -> ${dst}.  Caps src's input at PROXY_RELAY_HIGH so libevent
 * stops reading a fast source by itself.
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
    r->bytes = 0;
    r->http = NULL;
    bufferevent_setwatermark(src, EV_READ, 0, PROXY_RELAY_HIGH);
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
 * proxy_relay_pump(r):
 * Move everything src has read to dst (through the HTTP framer when the relay has one; its
 * result is returned).  When dst holds more than PROXY_RELAY_HIGH, stop
 * reading src and ask for dst's write callback at half that (le-proxy); the callback calls
 * proxy_relay_dst_drained(), which resumes.
 */
enum proxy_http_result
proxy_relay_pump(struct proxy_relay *r)
{
    struct evbuffer *in = bufferevent_get_input(r->src);
    struct evbuffer *out = bufferevent_get_output(r->dst);
    size_t n = evbuffer_get_length(in);
    enum proxy_http_result res = PROXY_HTTP_OK;

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
    if (!r->eof_seen && evbuffer_get_length(out) >= PROXY_RELAY_HIGH) {
        bufferevent_disable(r->src, EV_READ);
        r->throttled = true;
        bufferevent_setwatermark(r->dst, EV_WRITE, PROXY_RELAY_HIGH / 2, 0);
    }
    return res;
}

/*
 * proxy_relay_src_eof(r):
 * src reached end of stream.  Flush what it had read; when dst's output is already empty,
 * half-close dst now, else ask for dst's write callback at empty and do it there.
 */
void
proxy_relay_src_eof(struct proxy_relay *r)
{
    r->eof_seen = true;
    (void)proxy_relay_pump(r);
    if (r->http != NULL) {
        /* Completes a response delimited by the end of the connection (HTTP/1.0 style). */
        (void)proxy_http_eof(r->http);
    }
    if (evbuffer_get_length(bufferevent_get_output(r->dst)) == 0) {
        relay_shut(r);
    } else {
        bufferevent_setwatermark(r->dst, EV_WRITE, 0, 0);
    }
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
        if (left == 0) {
            relay_shut(r);
        }
        return;
    }
    if (r->throttled && left < PROXY_RELAY_HIGH) {
        r->throttled = false;
        bufferevent_setwatermark(r->dst, EV_WRITE, 0, 0);
        bufferevent_enable(r->src, EV_READ);
    }
}
