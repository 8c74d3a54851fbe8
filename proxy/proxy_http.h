/*
 * proxy_http: HTTP/1.1 message framing for `protocol: http` (CONTRACT §5, §6).
 *
 * One struct proxy_http follows one direction of a connection.  ferry owns every byte of
 * framing it forwards: the other side must only ever read what ferry checked, whatever a
 * laxer or stricter parser would have made of the bytes ferry received.  So:
 *
 *   - heads are parsed (http-parser 2.9, heads only), checked strictly and written anew by
 *     the caller with proxy_http_write_head(): names and values as parsed, Content-Length
 *     and Transfer-Encoding canonical, Connection written by ferry and every header it named
 *     removed;
 *   - bodies are framed by this file, not by http-parser: a Content-Length body moves with
 *     exactly that many bytes; a chunked body is decoded and re-encoded (HEX CRLF data CRLF,
 *     no extensions, "0" CRLF CRLF, trailers dropped); a response without either runs to
 *     the end of the connection;
 *   - anything else is refused before the message's head is handed on: a chunk line that is
 *     not 1*HEXDIG [*(SP/HTAB) ";" ext] CRLF (bare CR or LF, a CTL), chunk data not followed
 *     by CRLF, a chunk size above 2^40, a malformed trailer section, whitespace or obs-text in
 *     a header name, obs-fold, a bare CR, Content-Length with Transfer-Encoding, two
 *     Content-Lengths, a Transfer-Encoding other than exactly "chunked", a version other than
 *     HTTP/1.0 and HTTP/1.1 (505), heads over 64 KiB (431).
 *
 * Bodies are streamed, never buffered whole.  Keep-alive and pipelining work message by
 * message; proxy_http_hold() stops the framer at the next message boundary (the caller's
 * queue of requests in flight is full) without dropping anything.
 *
 * This file knows HTTP only; who the peer is and what it may do is decided by the caller's
 * on_head callback (proxy_exchange.c), which keeps per-connection policy out of the framer.
 */
#ifndef FERRY_PROXY_HTTP_H
#define FERRY_PROXY_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>

#define PROXY_HTTP_MAX_HEAD    ((size_t)64 * 1024) /* a bigger request head gets 431 */
#define PROXY_HTTP_MAX_HEADERS 100
/* The largest chunk accepted (RFC 9112 sets none; 2^40 bytes is 1 TiB). */
#define PROXY_HTTP_MAX_CHUNK (UINT64_C(1) << 40)
/* The longest chunk line (size and extensions) accepted. */
#define PROXY_HTTP_MAX_CHUNK_LINE 4096
/*
 * Interim (1xx) responses before one final response: more is a backend or peer that keeps a
 * request in flight for ever (each 1xx would go on to the client and hold off backend_timeout),
 * answered 502 (rule interim).  A real server sends one 100 Continue and perhaps a 103.
 */
#define PROXY_HTTP_MAX_INTERIM 16

enum proxy_http_kind {
    PROXY_HTTP_REQUEST,
    PROXY_HTTP_RESPONSE,
};

/* How a message's body is delimited, as its head declares it. */
enum proxy_http_framing {
    PROXY_HTTP_FRAMING_NONE,    /* no body (request without CL/TE; 1xx, 204, 304) */
    PROXY_HTTP_FRAMING_LENGTH,  /* Content-Length (0 included) */
    PROXY_HTTP_FRAMING_CHUNKED, /* Transfer-Encoding: chunked */
    PROXY_HTTP_FRAMING_EOF,     /* response: runs to the end of the connection */
};

struct proxy_http_header {
    const char *name; /* into the head's storage; NUL-terminated */
    const char *value;
    size_t name_len;
    size_t value_len;
};

/* A parsed head.  Strings point into the parser's storage until the next head starts. */
struct proxy_http_head {
    enum proxy_http_kind kind;
    const char *method; /* request: "GET"... */
    const char *target; /* request: the request target as sent (visible ASCII only) */
    int status;         /* response: 200... */
    const char *reason; /* response: the reason phrase as sent ("OK") */
    unsigned short http_major;
    unsigned short http_minor;
    struct proxy_http_header headers[PROXY_HTTP_MAX_HEADERS];
    size_t n_headers;
    enum proxy_http_framing framing;
    uint64_t content_length; /* FRAMING_LENGTH: the value */
    bool conn_close;         /* Connection names "close" */
    bool conn_keep_alive;    /* Connection names "keep-alive" (HTTP/1.0 persistence) */
    bool conn_other;         /* Connection names something else (a header to remove) */
    bool keep_alive;         /* the connection may carry another message after this one */
    bool upgrade;            /* request: Upgrade asked for (refused by ferry) */
    bool expect_continue;    /* request: Expect: 100-continue */
    bool has_body;           /* Content-Length > 0 or chunked */
};

/* What the caller's on_head decides. */
enum proxy_http_verdict {
    PROXY_HTTP_FORWARD, /* the caller wrote the head to the destination itself */
    PROXY_HTTP_REFUSE,  /* stop: the caller answers the client and closes */
};

/*
 * Called once per complete and valid head, before any of it is forwarded.  ${out} is the
 * destination's output buffer: on FORWARD the callback writes the head to it with
 * proxy_http_write_head().  For responses ${skip_body} may be set (reply to HEAD).
 */
typedef enum proxy_http_verdict (*proxy_http_head_cb)(void *arg, const struct proxy_http_head *h,
                                                      struct evbuffer *out, bool *skip_body);

/*
 * Called when a message (head + body) has been moved completely; ${body_bytes} is the length
 * of its body's payload (chunked: the data without the chunk framing).
 */
typedef void (*proxy_http_done_cb)(void *arg, enum proxy_http_kind kind, uint64_t body_bytes);

struct proxy_http;

/*
 * proxy_http_new(kind, on_head, on_done, arg):
 * A framer for one direction.  The callbacks get ${arg}.  Returns NULL on OOM.
 */
struct proxy_http *proxy_http_new(enum proxy_http_kind kind, proxy_http_head_cb on_head,
                                  proxy_http_done_cb on_done, void *arg);

/*
 * proxy_http_set_arg(h, arg):
 * ${h}, between messages, calls its callbacks with ${arg} from now on (a framer kept for the
 * next request of another connection).
 */
void proxy_http_set_arg(struct proxy_http *h, void *arg);

/*
 * proxy_http_free(h):
 * Release ${h}.  proxy_http_free(NULL) does nothing.
 */
void proxy_http_free(struct proxy_http *h);

/* Outcome of proxy_http_pump(). */
enum proxy_http_result {
    PROXY_HTTP_OK,      /* moved what it could; waits for more input (or for the hold) */
    PROXY_HTTP_STOPPED, /* on_head refused a message: nothing more is forwarded */
    PROXY_HTTP_BAD,     /* malformed: see proxy_http_error() (status 400, 431, 501, 505) */
};

/*
 * proxy_http_pump(h, in, out):
 * Frame what ${in} holds: heads go through on_head (which writes them to ${out}), body bytes
 * move from ${in} to ${out} (chunked ones re-encoded), message ends call on_done.  Bytes of a
 * head not yet complete are consumed into ${h}; bytes of a message not yet started stay in
 * ${in} while ${h} is held.  Returns PROXY_HTTP_OK, PROXY_HTTP_STOPPED or PROXY_HTTP_BAD;
 * after a refusal or an error nothing more moves.
 */
enum proxy_http_result proxy_http_pump(struct proxy_http *h, struct evbuffer *in,
                                       struct evbuffer *out);

/*
 * proxy_http_hold(h, hold):
 * With ${hold}, proxy_http_pump() starts no new message (the bytes stay in its input) until
 * called again without it; a message already started goes on.
 */
void proxy_http_hold(struct proxy_http *h, bool hold);

/*
 * proxy_http_plain_body(h):
 * Called from on_head: the body of the message whose head is being handed on, when chunked,
 * goes out as its bare data, without chunk lines, last chunk or trailers: for an HTTP/1.0
 * recipient, which cannot read chunked and reads such a body to the end of the connection
 * (the caller writes the head with rewrite.plain_body and closes after the message).  No
 * effect on a body of another framing.
 */
void proxy_http_plain_body(struct proxy_http *h);

/*
 * proxy_http_eof(h, authentic):
 * The source ended; ${authentic}: its end is the sender's own (any end of a plain TCP stream,
 * a TLS close_notify), not a TLS stream's bare FIN or reset, which anyone on the path can
 * forge.  Returns true when that is a clean end: between messages, or a response body
 * delimited by the end of the connection, which completes here when the end is authentic;
 * false when a message was cut short (such a body included: proxy_http_cut() then says so).
 */
bool proxy_http_eof(struct proxy_http *h, bool authentic);

/*
 * proxy_http_error(h, status, rule):
 * After PROXY_HTTP_BAD: the reason in plain words; in *${status} the HTTP status to answer
 * (400 malformed or smuggling, 431 head too large, 501 Upgrade/CONNECT, 505 version) and in
 * *${rule} (may be NULL) a short id of the rule broken ("chunk-line", "header-name", ...).
 */
const char *proxy_http_error(const struct proxy_http *h, int *status, const char **rule);

/*
 * proxy_http_request_line(h, method, mlen, target, tlen):
 * The method and target of the request head being read, or refused (PROXY_HTTP_BAD), as far
 * as they were read; "" for both before the target begins.  A target longer than ${tlen} - 1
 * is cut.  For the access-log line of a request ferry answers itself (400, 408, 431...).
 */
void proxy_http_request_line(const struct proxy_http *h, char *method, size_t mlen, char *target,
                             size_t tlen);

/*
 * proxy_http_in_message(h):
 * Has a message started (a byte of a head or body seen) and not yet ended?
 */
bool proxy_http_in_message(const struct proxy_http *h);

/*
 * proxy_http_in_head(h):
 * Has a head started (its first byte seen) and not yet been completed?
 */
bool proxy_http_in_head(const struct proxy_http *h);

/*
 * proxy_http_cut(h):
 * Called once the source has ended and its input was pumped: was it cut inside a message (a
 * head begun, or a body framed by Content-Length or chunks not finished, a chunk boundary
 * included)?  A body that runs to the end of the connection is not cut (proxy_http_eof()
 * ends it) unless that end was not authentic, nor is a held framer between messages.
 */
bool proxy_http_cut(const struct proxy_http *h);

/*
 * proxy_http_out_to_eof(h):
 * Does the message being framed go out delimited by the end of the connection (a body that
 * runs to the end, or a chunked one sent bare: proxy_http_plain_body())?  Its recipient
 * cannot tell a cut in it from its end, except by a reset.
 */
bool proxy_http_out_to_eof(const struct proxy_http *h);

/*
 * proxy_http_idle(h):
 * Is ${h} cleanly between messages: the last one ended, no byte of the next seen, no error
 * and no refusal?
 */
bool proxy_http_idle(const struct proxy_http *h);

/*
 * proxy_http_name_eq(a, alen, b):
 * Do header names ${a}[0..${alen}) and ${b} (NUL-terminated) name the same field for ferry:
 * case-insensitive, with '_' read as '-' (CGI and WSGI backends read X_Foo as X-Foo)?  A ${b}
 * ending in '*' matches every name that starts with the rest.
 */
bool proxy_http_name_eq(const char *a, size_t alen, const char *b);

/*
 * proxy_http_header_is(hd, name):
 * Is header ${hd} called ${name} (case-insensitive; exact spelling otherwise)?
 */
bool proxy_http_header_is(const struct proxy_http_header *hd, const char *name);

/*
 * proxy_http_find(h, name):
 * The first header of ${h} called ${name}, or NULL.
 */
const struct proxy_http_header *proxy_http_find(const struct proxy_http_head *h, const char *name);

/*
 * proxy_http_connection_names(h, name, len):
 * Does a Connection header of ${h} name the field ${name}[0..${len}) (compared as
 * proxy_http_name_eq() does)?
 */
bool proxy_http_connection_names(const struct proxy_http_head *h, const char *name, size_t len);

/* Headers added by ferry, written after the kept ones. */
struct proxy_http_add {
    const char *name;
    const char *value; /* NULL: not written */
};

/* The Connection header ferry writes. */
enum proxy_http_conn {
    PROXY_HTTP_CONN_KEEP,       /* what the message said: "close", else "keep-alive", else none */
    PROXY_HTTP_CONN_CLOSE,      /* Connection: close */
    PROXY_HTTP_CONN_NONE,       /* none: HTTP/1.1's default persistence */
    PROXY_HTTP_CONN_KEEP_ALIVE, /* Connection: keep-alive (to an HTTP/1.0 recipient) */
};

/* The most digits a uint64_t takes in decimal (proxy_http_u64). */
#define PROXY_HTTP_U64_MAX 20

/*
 * proxy_http_u64(buf, v):
 * Write ${v} in decimal at ${buf}, which has room for PROXY_HTTP_U64_MAX bytes; no NUL is
 * added.  Returns the number of digits written (1 to PROXY_HTTP_U64_MAX).  For heads and
 * log fields written with memcpy rather than printf.
 */
size_t proxy_http_u64(char *buf, uint64_t v);

/* How proxy_http_write_head() rewrites a head. */
struct proxy_http_rewrite {
    const char *const *drop; /* names dropped as proxy_http_name_eq() compares them */
    size_t n_drop;
    const struct proxy_http_add *add;
    size_t n_add;
    const char *host; /* replaces Host's value when not NULL */
    enum proxy_http_conn conn;
    bool plain_body; /* a chunked message's Transfer-Encoding is not written: its body goes out
                        bare (proxy_http_plain_body), delimited by the end of the connection */
};

/*
 * proxy_http_write_head(h, rw, out):
 * Write ${h} to ${out} as ferry forwards it: the request line (or status line), then every
 * header except the hop-by-hop ones (Connection, Keep-Alive, Proxy-Connection, TE, Trailer,
 * Upgrade), those a Connection header names (but never Host or the framing headers), those
 * in ${rw}->drop, and the framing headers, which are written once in canonical form where
 * the first of them was (Content-Length: <decimal> or Transfer-Encoding: chunked; none for a
 * 1xx or 204 response); Host's value replaced by ${rw}->host when set; then the ${rw}->add headers,
 * Connection as ${rw}->conn says, and the blank line.  Names and values are written as
 * parsed (values trimmed of surrounding whitespace).  ${rw} NULL = no drop, no add,
 * PROXY_HTTP_CONN_KEEP.  Returns 0, or -1 on OOM.
 */
int proxy_http_write_head(const struct proxy_http_head *h, const struct proxy_http_rewrite *rw,
                          struct evbuffer *out);

#endif /* FERRY_PROXY_HTTP_H */
