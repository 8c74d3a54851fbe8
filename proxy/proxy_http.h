/*
 * proxy_http: HTTP/1.1 message framing for `protocol: http` (CONTRACT §5, §6).
 *
 * One struct proxy_http follows one direction of a connection with http-parser 2.9: it
 * collects each message head (request or response) into its own buffer, checks it
 * (smuggling: Content-Length with Transfer-Encoding, two Content-Lengths, bad chunk sizes,
 * obs-fold; 64 KiB of head at most), lets the connection decide about it, writes the
 * (possibly rewritten) head to the destination and then moves the body bytes unchanged:
 * bodies are streamed, never buffered whole.  Keep-alive and pipelining work message by
 * message.
 *
 * This file knows HTTP only; who the peer is and what it may do is decided by the caller's
 * on_head callback (proxy_conn.c), which keeps per-connection policy out of the parser.
 */
#ifndef FERRY_PROXY_HTTP_H
#define FERRY_PROXY_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>

#define PROXY_HTTP_MAX_HEAD    (64 * 1024) /* a bigger request head gets 431 */
#define PROXY_HTTP_MAX_HEADERS 100

enum proxy_http_kind {
    PROXY_HTTP_REQUEST,
    PROXY_HTTP_RESPONSE,
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
    const char *target; /* request: the request target as sent */
    int status;         /* response: 200... */
    const char *reason; /* response: the reason phrase as sent ("OK") */
    unsigned short http_major;
    unsigned short http_minor;
    struct proxy_http_header headers[PROXY_HTTP_MAX_HEADERS];
    size_t n_headers;
    bool keep_alive;      /* the connection may carry another message after this one */
    bool upgrade;         /* request: Upgrade asked for (refused by ferry) */
    bool expect_continue; /* request: Expect: 100-continue */
    bool has_body;        /* Content-Length > 0 or chunked */
};

/* What the caller's on_head decides. */
enum proxy_http_verdict {
    PROXY_HTTP_FORWARD, /* the caller wrote the head to the destination itself */
    PROXY_HTTP_REFUSE,  /* stop: the caller answers the client and closes */
};

/*
 * Called once per complete head, before any of it is forwarded.  ${out} is the destination's
 * output buffer: on FORWARD the callback writes the head to it, usually with
 * proxy_http_write_head().  For responses ${skip_body} may be set (reply to HEAD).
 */
typedef enum proxy_http_verdict (*proxy_http_head_cb)(void *arg, const struct proxy_http_head *h,
                                                      struct evbuffer *out, bool *skip_body);

/* Called when a message (head + body) has been moved completely. */
typedef void (*proxy_http_done_cb)(void *arg, enum proxy_http_kind kind, uint64_t body_bytes);

struct proxy_http;

/*
 * proxy_http_new(kind, on_head, on_done, arg):
 * A parser for one direction.  The callbacks get ${arg}.  Returns NULL on OOM.
 */
struct proxy_http *proxy_http_new(enum proxy_http_kind kind, proxy_http_head_cb on_head,
                                  proxy_http_done_cb on_done, void *arg);

/*
 * proxy_http_free(h):
 * Release ${h}.  proxy_http_free(NULL) does nothing.
 */
void proxy_http_free(struct proxy_http *h);

/* Outcome of proxy_http_pump(). */
enum proxy_http_result {
    PROXY_HTTP_OK,      /* moved what it could; waits for more input */
    PROXY_HTTP_STOPPED, /* on_head refused a message: nothing more is forwarded */
    PROXY_HTTP_BAD,     /* malformed: see proxy_http_error() (status 400, 431, 501) */
};

/*
 * proxy_http_pump(h, in, out):
 * Parse what ${in} holds: heads go through on_head (which writes them to ${out}), body bytes
 * move from ${in} to ${out} unchanged, message ends call on_done.  Bytes of a message whose
 * head is incomplete stay in ${in}.  Returns PROXY_HTTP_OK, PROXY_HTTP_STOPPED or
 * PROXY_HTTP_BAD.
 */
enum proxy_http_result proxy_http_pump(struct proxy_http *h, struct evbuffer *in,
                                       struct evbuffer *out);

/*
 * proxy_http_eof(h):
 * The source ended.  Returns true when that is a clean end (between messages, or a response
 * body delimited by the end of the connection), false when a message was cut short.
 */
bool proxy_http_eof(struct proxy_http *h);

/*
 * proxy_http_error(h, status):
 * After PROXY_HTTP_BAD: the reason in plain words, and in *${status} the HTTP status to
 * answer (400 malformed or smuggling, 431 head too large, 501 Upgrade).
 */
const char *proxy_http_error(const struct proxy_http *h, int *status);

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
 * proxy_http_idle(h):
 * Is ${h} cleanly between messages: the last one ended, no byte of the next seen, no error
 * and no refusal?
 */
bool proxy_http_idle(const struct proxy_http *h);

/*
 * proxy_http_connection_without(h, token, out, len):
 * The tokens of every Connection header of ${h}, joined by ", ", without ${token}
 * (case-insensitive), into ${out} (NUL-terminated; tokens that do not fit are left out).
 * Returns true when ${token} was among them.
 */
bool proxy_http_connection_without(const struct proxy_http_head *h, const char *token, char *out,
                                   size_t len);

/*
 * proxy_http_header_is(hd, name):
 * Is header ${hd} called ${name} (case-insensitive)?
 */
bool proxy_http_header_is(const struct proxy_http_header *hd, const char *name);

/*
 * proxy_http_find(h, name):
 * The first header of ${h} called ${name}, or NULL.
 */
const struct proxy_http_header *proxy_http_find(const struct proxy_http_head *h, const char *name);

/* Headers added by ferry, written after the kept ones. */
struct proxy_http_add {
    const char *name;
    const char *value;
};

/*
 * proxy_http_write_head(h, drop, n_drop, add, n_add, host, out):
 * Write ${h} to ${out} as HTTP/1.x: the request line (or status line), then every header
 * except those whose name is in ${drop} (case-insensitive; an entry ending in '*' drops every
 * header with that prefix), with Host replaced by ${host} when it is not NULL, then the
 * ${add} headers, then the blank line.  Names and values are written as received (values
 * trimmed of surrounding whitespace).  Returns 0, or -1 on OOM.
 */
int proxy_http_write_head(const struct proxy_http_head *h, const char *const *drop, size_t n_drop,
                          const struct proxy_http_add *add, size_t n_add, const char *host,
                          struct evbuffer *out);

#endif /* FERRY_PROXY_HTTP_H */
