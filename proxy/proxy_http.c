/*
 * proxy_http: HTTP/1.1 framing with http-parser 2.9 (see proxy_http.h).
 *
 * The parser is paused at two points of every message so that byte boundaries are exact:
 *   - in on_headers_complete: http_parser_execute() returns the offset of the head's final
 *     LF, which the parser consumes only when it runs again (state s_headers_done);
 *   - in on_message_complete: it returns the count including the message's last byte.
 * Bytes of a head are dropped from the source (the caller writes the head itself, rewritten);
 * bytes between the two pauses are the body, chunk framing included, and move unchanged.
 */
#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <http_parser.h>

#include "proxy_http.h"

#define PROXY_HTTP_MAGIC 0x48545450u /* "HTTP" */
/* At most this much of a body is copied to sit behind its head: one TLS record's plaintext. */
#define PROXY_HTTP_COALESCE_MAX 16384

enum ph_state {
    PH_IDLE,    /* between messages */
    PH_HEAD,    /* inside a head */
    PH_BODY,    /* head forwarded; moving the body */
    PH_STOPPED, /* on_head refused; nothing more moves */
    PH_BAD,     /* malformed input */
};

enum ph_last {
    PH_LAST_NONE,
    PH_LAST_FIELD,
    PH_LAST_VALUE,
};

/* Offsets into store; uint32_t is plenty under PROXY_HTTP_MAX_HEAD and halves the table. */
struct ph_hdr_off {
    uint32_t name, name_len, value, value_len;
};

struct proxy_http {
    uint32_t magic;
    http_parser parser;
    enum proxy_http_kind kind;
    enum ph_state state;
    proxy_http_head_cb on_head;
    proxy_http_done_cb on_done;
    void *arg;
    struct evbuffer *out; /* the destination during one proxy_http_pump() */

    /* the head being collected: strings appended to store, found again by offset */
    char *store;
    size_t store_len, store_cap;
    size_t url_off, url_len;
    size_t reason_off, reason_len;
    struct ph_hdr_off hdr[PROXY_HTTP_MAX_HEADERS];
    size_t n_hdr;
    enum ph_last last;
    /* the pre-scan of raw head bytes (before http-parser sees them) */
    size_t head_bytes; /* raw bytes of this head so far */
    bool scan_started; /* past the CR/LFs that may precede a message */
    bool scan_lf;      /* the last byte scanned ended a line */
    bool scan_cr;      /* the last byte scanned was a CR */
    bool scan_done;    /* the blank line that ends the head was seen */
    bool head_paused;  /* paused in on_headers_complete: the next byte fed is the head's LF */
    bool msg_paused;   /* paused in on_message_complete */
    uint64_t body_bytes;

    struct proxy_http_head head;
    const char *error;
    int error_status;
};

/* ---- storage for the head being collected ---- */

static int
ph_append(struct proxy_http *h, const char *at, size_t len)
{
    if (h->store_len + len + 1 > h->store_cap) {
        size_t cap = h->store_cap == 0 ? 1024 : h->store_cap;
        char *p;

        while (cap < h->store_len + len + 1) {
            cap *= 2;
        }
        p = realloc(h->store, cap);
        if (p == NULL) {
            return -1;
        }
        h->store = p;
        h->store_cap = cap;
    }
    memcpy(h->store + h->store_len, at, len);
    h->store_len += len;
    h->store[h->store_len] = '\0';
    return 0;
}

/* End the current string with a NUL that counts as storage. */
static int
ph_terminate(struct proxy_http *h)
{
    return ph_append(h, "", 1);
}

static void
ph_fail(struct proxy_http *h, int status, const char *why)
{
    if (h->error == NULL) {
        h->error = why;
        h->error_status = status;
    }
}

/* ---- http-parser callbacks ---- */

static int
ph_on_message_begin(http_parser *p)
{
    struct proxy_http *h = p->data;

    h->state = PH_HEAD;
    h->store_len = 0;
    h->url_off = h->url_len = 0;
    h->reason_off = h->reason_len = 0;
    h->n_hdr = 0;
    h->last = PH_LAST_NONE;
    h->body_bytes = 0;
    return 0;
}

static int
ph_on_url(http_parser *p, const char *at, size_t len)
{
    struct proxy_http *h = p->data;

    if (h->url_len == 0) {
        h->url_off = h->store_len;
    }
    h->url_len += len;
    return ph_append(h, at, len);
}

static int
ph_on_status(http_parser *p, const char *at, size_t len)
{
    struct proxy_http *h = p->data;

    if (h->reason_len == 0) {
        h->reason_off = h->store_len;
    }
    h->reason_len += len;
    return ph_append(h, at, len);
}

static int
ph_on_header_field(http_parser *p, const char *at, size_t len)
{
    struct proxy_http *h = p->data;

    if (h->last != PH_LAST_FIELD) {
        /* A new header: end the previous string (URL or value) first. */
        if (ph_terminate(h) < 0) {
            return -1;
        }
        if (h->n_hdr == PROXY_HTTP_MAX_HEADERS) {
            ph_fail(h, 431, "more than 100 header fields");
            return -1;
        }
        h->hdr[h->n_hdr].name = (uint32_t)h->store_len;
        h->hdr[h->n_hdr].name_len = 0;
        h->hdr[h->n_hdr].value = 0;
        h->hdr[h->n_hdr].value_len = 0;
        h->n_hdr++;
        h->last = PH_LAST_FIELD;
    }
    h->hdr[h->n_hdr - 1].name_len += (uint32_t)len;
    return ph_append(h, at, len);
}

static int
ph_on_header_value(http_parser *p, const char *at, size_t len)
{
    struct proxy_http *h = p->data;

    if (h->n_hdr == 0) {
        return -1;
    }
    if (h->last != PH_LAST_VALUE) {
        if (ph_terminate(h) < 0) {
            return -1;
        }
        h->hdr[h->n_hdr - 1].value = (uint32_t)h->store_len;
        h->last = PH_LAST_VALUE;
    }
    h->hdr[h->n_hdr - 1].value_len += (uint32_t)len;
    return ph_append(h, at, len);
}

static bool
ph_token_in_list(const char *value, const char *token)
{
    size_t tl = strlen(token);
    const char *s = value;

    while (*s != '\0') {
        while (*s == ' ' || *s == '\t' || *s == ',') {
            s++;
        }
        if (strncasecmp(s, token, tl) == 0 &&
            (s[tl] == '\0' || s[tl] == ',' || s[tl] == ' ' || s[tl] == '\t' || s[tl] == ';')) {
            return true;
        }
        while (*s != '\0' && *s != ',') {
            s++;
        }
    }
    return false;
}

/* Turn the offsets into the public head (the store no longer moves for this head). */
static void
ph_build_head(struct proxy_http *h)
{
    struct proxy_http_head *hd = &h->head;
    size_t n_host = 0;

    hd->kind = h->kind;
    hd->http_major = h->parser.http_major;
    hd->http_minor = h->parser.http_minor;
    hd->method = h->kind == PROXY_HTTP_REQUEST ? http_method_str(h->parser.method) : NULL;
    hd->target = h->kind == PROXY_HTTP_REQUEST ? h->store + h->url_off : NULL;
    hd->status = h->kind == PROXY_HTTP_RESPONSE ? (int)h->parser.status_code : 0;
    hd->reason =
        h->kind == PROXY_HTTP_RESPONSE && h->reason_len > 0 ? h->store + h->reason_off : "";
    hd->n_headers = h->n_hdr;
    hd->expect_continue = false;
    for (size_t i = 0; i < h->n_hdr; i++) {
        struct proxy_http_header *x = &hd->headers[i];

        x->name = h->store + h->hdr[i].name;
        x->name_len = h->hdr[i].name_len;
        x->value = h->hdr[i].value_len > 0 ? h->store + h->hdr[i].value : "";
        x->value_len = h->hdr[i].value_len;
        if (proxy_http_header_is(x, "host")) {
            n_host++;
        } else if (proxy_http_header_is(x, "expect") &&
                   ph_token_in_list(x->value, "100-continue")) {
            hd->expect_continue = true;
        }
    }
    hd->keep_alive = http_should_keep_alive(&h->parser) != 0;
    hd->upgrade = h->kind == PROXY_HTTP_REQUEST &&
                  (h->parser.upgrade != 0 || proxy_http_find(hd, "upgrade") != NULL);
    hd->has_body = (h->parser.flags & F_CHUNKED) != 0 ||
                   (h->parser.content_length > 0 && h->parser.content_length != ULLONG_MAX);
    if (h->kind == PROXY_HTTP_REQUEST) {
        if (n_host > 1) {
            ph_fail(h, 400, "more than one Host header");
        } else if (n_host == 0 && hd->http_major == 1 && hd->http_minor >= 1) {
            ph_fail(h, 400, "HTTP/1.1 request without a Host header");
        } else if (h->parser.uses_transfer_encoding && (h->parser.flags & F_CHUNKED) == 0) {
            /* http-parser reports this only after on_headers_complete: refuse it here. */
            ph_fail(h, 400, "Transfer-Encoding other than a final chunked");
        } else if (h->parser.method == HTTP_CONNECT) {
            ph_fail(h, 501, "CONNECT is not supported");
        } else if (hd->upgrade) {
            ph_fail(h, 501, "protocol upgrades (Upgrade:) are not supported by ferry");
        }
    } else if (h->parser.uses_transfer_encoding && (h->parser.flags & F_CHUNKED) == 0) {
        /*
         * A response body would then run to the end of the connection.  Refused (as nginx
         * does): http-parser does not see "chunked<HT>" as chunked, but the receiver of the
         * rewritten head (value trimmed) would, and the two would frame the bytes apart.
         */
        ph_fail(h, 400, "Transfer-Encoding other than a final chunked");
    }
}

static int
ph_on_headers_complete(http_parser *p)
{
    struct proxy_http *h = p->data;
    bool skip_body = false;

    if (ph_terminate(h) < 0) {
        ph_fail(h, 500, "out of memory");
        return -1;
    }
    ph_build_head(h);
    if (h->error != NULL) {
        return -1;
    }
    if (h->on_head(h->arg, &h->head, h->out, &skip_body) != PROXY_HTTP_FORWARD) {
        h->state = PH_STOPPED;
        return -1;
    }
    h->state = PH_BODY;
    h->head_paused = true;
    http_parser_pause(p, 1);
    /* 1 = this response has no body (a reply to HEAD). */
    return skip_body ? 1 : 0;
}

static int
ph_on_message_complete(http_parser *p)
{
    struct proxy_http *h = p->data;

    h->msg_paused = true;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings ph_settings = {
    .on_message_begin = ph_on_message_begin,
    .on_url = ph_on_url,
    .on_status = ph_on_status,
    .on_header_field = ph_on_header_field,
    .on_header_value = ph_on_header_value,
    .on_headers_complete = ph_on_headers_complete,
    .on_message_complete = ph_on_message_complete,
};

/*
 * proxy_http_new(kind, on_head, on_done, arg):
 * A parser for one direction; NULL on OOM.
 */
struct proxy_http *
proxy_http_new(enum proxy_http_kind kind, proxy_http_head_cb on_head, proxy_http_done_cb on_done,
               void *arg)
{
    struct proxy_http *h = calloc(1, sizeof(*h));

    if (h == NULL) {
        return NULL;
    }
    h->magic = PROXY_HTTP_MAGIC;
    h->kind = kind;
    h->on_head = on_head;
    h->on_done = on_done;
    h->arg = arg;
    http_parser_init(&h->parser, kind == PROXY_HTTP_REQUEST ? HTTP_REQUEST : HTTP_RESPONSE);
    h->parser.data = h;
    return h;
}

/*
 * proxy_http_free(h):
 * Release ${h}; NULL is a no-op.
 */
void
proxy_http_free(struct proxy_http *h)
{
    if (h == NULL) {
        return;
    }
    free(h->store);
    h->store = NULL;
    h->magic = 0;
    free(h);
}

/* Map an http-parser error to our status and words. */
static void
ph_parser_error(struct proxy_http *h)
{
    enum http_errno e = HTTP_PARSER_ERRNO(&h->parser);

    switch (e) {
    case HPE_HEADER_OVERFLOW:
        ph_fail(h, 431, "request head larger than 64 KiB");
        break;
    case HPE_UNEXPECTED_CONTENT_LENGTH:
        ph_fail(h, 400,
                "both Content-Length and Transfer-Encoding, or two Content-Length "
                "headers (request smuggling)");
        break;
    case HPE_INVALID_TRANSFER_ENCODING:
        ph_fail(h, 400, "Transfer-Encoding other than a final chunked");
        break;
    case HPE_INVALID_CHUNK_SIZE:
        ph_fail(h, 400, "invalid chunk size");
        break;
    case HPE_INVALID_CONTENT_LENGTH:
        ph_fail(h, 400, "invalid Content-Length");
        break;
    default:
        ph_fail(h, 400, http_errno_description(e));
        break;
    }
}

/*
 * Look at raw head bytes before http-parser does, so that a bad head is refused before any of
 * it reaches on_head: obs-fold (a header line starting with SP/HT, which parsers disagree
 * about), a bare CR (RFC 9112 §2.2) and heads over PROXY_HTTP_MAX_HEAD.  Stops at the blank
 * line that ends the head.
 */
static bool
ph_prescan(struct proxy_http *h, const char *d, size_t n)
{
    for (size_t i = 0; i < n && !h->scan_done; i++) {
        char c = d[i];

        if (!h->scan_started) {
            if (c == '\r' || c == '\n') {
                continue;
            }
            h->scan_started = true;
        }
        if (++h->head_bytes > PROXY_HTTP_MAX_HEAD) {
            ph_fail(h, 431, "request head larger than 64 KiB");
            return false;
        }
        /*
         * http-parser (not built strict on Debian) takes any byte after a CR as the LF: the
         * head would end, or a line break, where this scan sees none.  Refuse it instead.
         */
        if (h->scan_cr && c != '\n') {
            ph_fail(h, 400, "CR not followed by LF in a head (bare CR)");
            return false;
        }
        h->scan_cr = c == '\r';
        if (h->scan_lf) {
            if (c == ' ' || c == '\t') {
                ph_fail(h, 400, "obsolete line folding in a header (obs-fold)");
                return false;
            }
            if (c == '\n') {
                h->scan_done = true;
                continue;
            }
            if (c == '\r') {
                continue;
            }
        }
        h->scan_lf = c == '\n';
    }
    return true;
}

static void
ph_prescan_reset(struct proxy_http *h)
{
    h->head_bytes = 0;
    h->scan_started = false;
    h->scan_lf = false;
    h->scan_cr = false;
    h->scan_done = false;
}

/*
 * ph_move_body(in, out, n):
 * Move ${n} body bytes from the front of ${in} to ${out}.  Moving chains copies nothing, but
 * bufferevent_openssl writes chain by chain, one TLS record each: a small body moved behind
 * its rewritten head went out as a second record, which the peer read a loop turn later
 * (one more wakeup, two more reads and a second write to its client per response).  A body
 * that fits in one record with what ${out} already holds is copied behind it instead.
 */
static void
ph_move_body(struct evbuffer *in, struct evbuffer *out, size_t n)
{
    size_t have = evbuffer_get_length(out);

    if (have > 0 && have < PROXY_HTTP_COALESCE_MAX && n <= PROXY_HTTP_COALESCE_MAX - have) {
        unsigned char *p = evbuffer_pullup(in, (ev_ssize_t)n);

        if (p != NULL && evbuffer_expand(out, n) == 0 && evbuffer_add(out, p, n) == 0) {
            evbuffer_drain(in, n);
            return;
        }
    }
    evbuffer_remove_buffer(in, out, n);
}

/*
 * proxy_http_pump(h, in, out):
 * Move what can be moved from ${in} to ${out}, message by message.
 */
enum proxy_http_result
proxy_http_pump(struct proxy_http *h, struct evbuffer *in, struct evbuffer *out)
{
    h->out = out;
    while (h->state != PH_STOPPED && h->state != PH_BAD && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        size_t n, head_part;
        enum ph_state before = h->state;
        enum http_errno e;

        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0) {
            break;
        }
        if ((before == PH_IDLE || before == PH_HEAD) && !ph_prescan(h, v.iov_base, v.iov_len)) {
            h->state = PH_BAD;
            break;
        }
        n = http_parser_execute(&h->parser, &ph_settings, v.iov_base, v.iov_len);
        e = HTTP_PARSER_ERRNO(&h->parser);
        if (e != HPE_OK && e != HPE_PAUSED) {
            if (h->state != PH_STOPPED) {
                h->state = PH_BAD;
                ph_parser_error(h);
            }
            break;
        }
        /*
         * Which of the n bytes were head bytes?  In IDLE/HEAD: all of them (up to the pause).
         * Right after the head pause: the first byte (the head's final LF) still is.
         */
        if (before == PH_IDLE || before == PH_HEAD) {
            head_part = n;
        } else if (h->head_paused) {
            head_part = n > 0 ? 1 : 0;
            h->head_paused = false;
        } else {
            head_part = 0;
        }
        evbuffer_drain(in, head_part);
        if (n > head_part) {
            h->body_bytes += n - head_part;
            ph_move_body(in, out, n - head_part);
        }
        if (h->msg_paused) {
            h->msg_paused = false;
            h->state = PH_IDLE;
            h->head_paused = false;
            ph_prescan_reset(h);
            if (h->on_done != NULL) {
                h->on_done(h->arg, h->kind, h->body_bytes);
            }
        }
        if (e == HPE_PAUSED) {
            http_parser_pause(&h->parser, 0);
        }
    }
    h->out = NULL;
    if (h->state == PH_BAD) {
        return PROXY_HTTP_BAD;
    }
    return h->state == PH_STOPPED ? PROXY_HTTP_STOPPED : PROXY_HTTP_OK;
}

/*
 * proxy_http_eof(h):
 * The source ended: clean (between messages, or an EOF-delimited response) or cut short.
 */
bool
proxy_http_eof(struct proxy_http *h)
{
    if (h->state == PH_IDLE) {
        return true;
    }
    if (h->state == PH_BODY && !h->head_paused) {
        /* A response delimited by the end of the connection completes here. */
        http_parser_execute(&h->parser, &ph_settings, NULL, 0);
        if (h->msg_paused) {
            h->msg_paused = false;
            h->state = PH_IDLE;
            ph_prescan_reset(h);
            if (h->on_done != NULL) {
                h->on_done(h->arg, h->kind, h->body_bytes);
            }
            return true;
        }
    }
    return false;
}

/*
 * proxy_http_error(h, status):
 * The reason for PROXY_HTTP_BAD and the status to answer.
 */
const char *
proxy_http_error(const struct proxy_http *h, int *status)
{
    if (status != NULL) {
        *status = h->error_status != 0 ? h->error_status : 400;
    }
    return h->error != NULL ? h->error : "malformed HTTP";
}

/*
 * proxy_http_in_message(h):
 * Has a message started and not ended?
 */
bool
proxy_http_in_message(const struct proxy_http *h)
{
    return h->state == PH_HEAD || h->state == PH_BODY;
}

/*
 * proxy_http_in_head(h):
 * Has a head started and not been completed?
 */
bool
proxy_http_in_head(const struct proxy_http *h)
{
    return h->state == PH_HEAD || (h->state == PH_IDLE && h->scan_started);
}

/*
 * proxy_http_idle(h):
 * Between messages, nothing of the next seen, no error.
 */
bool
proxy_http_idle(const struct proxy_http *h)
{
    return h->state == PH_IDLE && !h->scan_started;
}

/*
 * proxy_http_connection_without(h, token, out, len):
 * The Connection tokens of ${h} except ${token}; true when ${token} was there.
 */
bool
proxy_http_connection_without(const struct proxy_http_head *h, const char *token, char *out,
                              size_t len)
{
    size_t tl = strlen(token), used = 0;
    bool found = false;

    if (len > 0) {
        out[0] = '\0';
    }
    for (size_t i = 0; i < h->n_headers; i++) {
        const struct proxy_http_header *hd = &h->headers[i];
        const char *s = hd->value, *end = hd->value + hd->value_len;

        if (!proxy_http_header_is(hd, "connection")) {
            continue;
        }
        while (s < end) {
            const char *t, *e;

            while (s < end && (*s == ' ' || *s == '\t' || *s == ',')) {
                s++;
            }
            t = s;
            while (s < end && *s != ',') {
                s++;
            }
            e = s;
            while (e > t && (e[-1] == ' ' || e[-1] == '\t')) {
                e--;
            }
            if (e == t) {
                continue;
            }
            if ((size_t)(e - t) == tl && strncasecmp(t, token, tl) == 0) {
                found = true;
                continue;
            }
            if (used + (used > 0 ? 2 : 0) + (size_t)(e - t) + 1 > len) {
                continue;
            }
            if (used > 0) {
                memcpy(out + used, ", ", 2);
                used += 2;
            }
            memcpy(out + used, t, (size_t)(e - t));
            used += (size_t)(e - t);
            out[used] = '\0';
        }
    }
    return found;
}

/*
 * proxy_http_header_is(hd, name):
 * Case-insensitive name comparison.
 */
bool
proxy_http_header_is(const struct proxy_http_header *hd, const char *name)
{
    return hd->name_len == strlen(name) && strncasecmp(hd->name, name, hd->name_len) == 0;
}

/*
 * proxy_http_find(h, name):
 * The first header called ${name}, or NULL.
 */
const struct proxy_http_header *
proxy_http_find(const struct proxy_http_head *h, const char *name)
{
    for (size_t i = 0; i < h->n_headers; i++) {
        if (proxy_http_header_is(&h->headers[i], name)) {
            return &h->headers[i];
        }
    }
    return NULL;
}

static bool
ph_dropped(const struct proxy_http_header *hd, const char *const *drop, size_t n_drop)
{
    for (size_t i = 0; i < n_drop; i++) {
        size_t len = strlen(drop[i]);

        if (len > 0 && drop[i][len - 1] == '*') {
            if (hd->name_len >= len - 1 && strncasecmp(hd->name, drop[i], len - 1) == 0) {
                return true;
            }
        } else if (proxy_http_header_is(hd, drop[i])) {
            return true;
        }
    }
    return false;
}

/*
 * proxy_http_write_head(h, drop, n_drop, add, n_add, host, out):
 * Write ${h} with ${drop}ped headers left out, Host replaced by ${host}, ${add} appended.
 */
int
proxy_http_write_head(const struct proxy_http_head *h, const char *const *drop, size_t n_drop,
                      const struct proxy_http_add *add, size_t n_add, const char *host,
                      struct evbuffer *out)
{
    int rc;

    if (h->kind == PROXY_HTTP_REQUEST) {
        rc = evbuffer_add_printf(out, "%s %s HTTP/%u.%u\r\n", h->method, h->target, h->http_major,
                                 h->http_minor);
    } else {
        rc = evbuffer_add_printf(out, "HTTP/%u.%u %d %s\r\n", h->http_major, h->http_minor,
                                 h->status, h->reason);
    }
    if (rc < 0) {
        return -1;
    }
    for (size_t i = 0; i < h->n_headers; i++) {
        const struct proxy_http_header *hd = &h->headers[i];
        const char *v = hd->value;
        size_t vl = hd->value_len;

        if (ph_dropped(hd, drop, n_drop)) {
            continue;
        }
        if (host != NULL && proxy_http_header_is(hd, "host")) {
            v = host;
            vl = strlen(host);
        }
        while (vl > 0 && (*v == ' ' || *v == '\t')) {
            v++;
            vl--;
        }
        while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) {
            vl--;
        }
        if (evbuffer_add(out, hd->name, hd->name_len) < 0 || evbuffer_add(out, ": ", 2) < 0 ||
            evbuffer_add(out, v, vl) < 0 || evbuffer_add(out, "\r\n", 2) < 0) {
            return -1;
        }
    }
    for (size_t i = 0; i < n_add; i++) {
        if (add[i].value == NULL) {
            continue;
        }
        if (evbuffer_add_printf(out, "%s: %s\r\n", add[i].name, add[i].value) < 0) {
            return -1;
        }
    }
    return evbuffer_add(out, "\r\n", 2);
}
