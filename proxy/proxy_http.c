/*
 * proxy_http: HTTP/1.1 framing (see proxy_http.h).
 *
 * http-parser 2.9 reads heads only.  Debian builds it lenient (HTTP_PARSER_STRICT 0): it takes
 * a space into a header name, any byte after a CR as the LF, a tab or a byte >= 0x80 into a
 * request target, and reads a chunk-size line up to the first CR.  So before it sees a byte,
 * a pre-scan refuses bare CRs and obs-fold and bounds the head; after it, the head is checked
 * again field by field; and bodies never go through it: this file frames them itself, byte
 * exact, and writes chunked bodies anew.
 *
 * A message:  IDLE --first byte--> HEAD --head complete, on_head FORWARD--> BODY --> IDLE
 *                                       \--on_head REFUSE--> STOPPED     any error --> BAD
 * http-parser is paused in on_headers_complete (it returns the offset of the head's final LF)
 * and reset with http_parser_init() when the next message starts.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <http_parser.h>
#include <openssl/crypto.h>

#include "proxy_http.h"

#define PROXY_HTTP_MAGIC 0x48545450u /* "HTTP" */
/* At most this much of a body is copied to sit behind its head: one TLS record's plaintext. */
#define PROXY_HTTP_COALESCE_MAX 16384
#define PH_STR_(x)              #x
#define PH_STR(x)               PH_STR_(x) /* a number macro as a string literal */

enum ph_state {
    PH_IDLE,    /* between messages */
    PH_HEAD,    /* inside a head */
    PH_BODY,    /* head forwarded; framing the body */
    PH_STOPPED, /* on_head refused; nothing more moves */
    PH_BAD,     /* malformed input */
};

/* Where a chunked body is (RFC 9112 §7.1). */
enum ph_chunk {
    PH_CH_SIZE,       /* chunk-size: 1*HEXDIG */
    PH_CH_BWS,        /* whitespace after the size: only ";" may follow */
    PH_CH_EXT,        /* chunk-ext up to CR */
    PH_CH_LINE_LF,    /* the LF of the chunk line */
    PH_CH_DATA,       /* chunk-data */
    PH_CH_DATA_CR,    /* the CRLF after the data */
    PH_CH_DATA_LF,    /* */
    PH_CH_TRAILER,    /* start of a trailer line, or the final CRLF */
    PH_CH_TR_NAME,    /* a trailer field's name */
    PH_CH_TR_VALUE,   /* its value, up to CR */
    PH_CH_TR_LINE_LF, /* the LF ending it */
    PH_CH_END_LF,     /* the LF of the last line */
    PH_CH_DONE,       /* the body is complete: the message ends once it has moved */
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
    bool hold;          /* start no new message (proxy_http_hold) */
    bool head_complete; /* http-parser paused in on_headers_complete */
    unsigned interim;   /* 1xx responses since the last final one */

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

    /* the body */
    enum proxy_http_framing framing; /* what is being framed now (NONE once skipped) */
    uint64_t left;                   /* LENGTH: bytes to go; CHUNKED, PH_CH_DATA: of this chunk */
    enum ph_chunk chunk;
    uint64_t chunk_size; /* the size being read */
    /*
     * Framing ferry still owes before the next chunk's data: the CRLF that ends the previous
     * chunk and the next chunk line.  It goes out in front of that data (see ph_pump_chunked()),
     * or with the last chunk.
     */
    char pend[40];
    size_t pend_len;
    /*
     * Bytes at the front of the input that are checked and go out as they are (data, and
     * framing the sender wrote exactly as ferry would): moved together at the end of a pump,
     * chains and all, so that a body is not cut into more TLS records than it came in.
     */
    size_t held;
    size_t raw;          /* framing bytes read behind them, still in the input */
    bool raw_dropped;    /* some of this framing's bytes were drained: it is written anew */
    bool plain;          /* this chunked body goes out as bare data (proxy_http_plain_body) */
    bool forged_end;     /* its body ran to an end that was not authentic (proxy_http_eof) */
    size_t line_len;     /* bytes of the current chunk line, or of the trailer section */
    uint64_t body_bytes; /* payload moved */
    /* what ferry itself wrote at the end of the destination since a body chain was moved */
    size_t out_small; /* its length (a head, chunk lines, copied body bytes) */
    bool out_head;    /* it holds a head */

    struct proxy_http_head head;
    const char *error;
    const char *error_rule;
    int error_status;
};

/* ---- characters (RFC 9110 §5.6.2, RFC 9112) ---- */

static bool
ph_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* field-vchar / SP / HTAB: a byte a field value (or a reason phrase) may hold. */
static bool
ph_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/*
 * A byte a Host value may hold (RFC 9112 §3.2, RFC 3986 §3.2.2): uri-host [ ":" port ], so
 * unreserved, pct-encoded, sub-delims, ':' and the brackets of an IP literal.  Not '/', '?',
 * '#', '@', '\\' or whitespace, which parsers split differently (a backend that builds URLs or
 * picks a virtual host from Host must read the same host ferry checked).
 */
static bool
ph_host_char(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != '\0' && strchr("-._~%!$&'()*+,;=:[]", c) != NULL);
}

/* The length of s[0..len) without the spaces and tabs at its end (optional whitespace). */
static size_t
ph_trim_len(const char *s, size_t len)
{
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t')) {
        len--;
    }
    return len;
}

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

/* Record the first error: its status, the short id of the rule and the reason. */
static void
ph_fail(struct proxy_http *h, int status, const char *rule, const char *why)
{
    if (h->error == NULL) {
        h->error = why;
        h->error_rule = rule;
        h->error_status = status;
    }
}

/*
 * A head over ferry's limits (${fields}: too many fields, else too many bytes): 431 for a
 * request; for a response, the backend's or peer's fault: 502.
 */
static void
ph_too_large(struct proxy_http *h, bool fields)
{
    if (h->kind == PROXY_HTTP_REQUEST) {
        ph_fail(h, 431, "too-large",
                fields ? "more than 100 header fields" : "request head larger than 64 KiB");
    } else {
        ph_fail(h, 502, "too-large",
                fields ? "a response with more than 100 header fields"
                       : "response head larger than 64 KiB");
    }
}

/* ---- http-parser callbacks (heads only) ---- */

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
            ph_too_large(h, true);
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

/* Stop at the end of the head: the body is ours to frame (see the top of the file). */
static int
ph_on_headers_complete(http_parser *p)
{
    struct proxy_http *h = p->data;

    h->head_complete = true;
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
};

/* ---- list-valued headers (RFC 9110 §5.6.1) ---- */

/*
 * Call ${fn} for every non-empty element of every header of ${hd} called ${name}, trimmed of
 * whitespace; stop when it returns false.
 */
typedef bool (*ph_token_fn)(void *arg, const char *t, size_t len);

static void
ph_each_token(const struct proxy_http_head *hd, const char *name, ph_token_fn fn, void *arg)
{
    for (size_t i = 0; i < hd->n_headers; i++) {
        const struct proxy_http_header *x = &hd->headers[i];
        const char *s = x->value, *end = x->value + x->value_len;

        if (!proxy_http_header_is(x, name)) {
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
            e = t + ph_trim_len(t, (size_t)(s - t));
            if (e > t && !fn(arg, t, (size_t)(e - t))) {
                return;
            }
        }
    }
}

static bool
ph_is(const char *t, size_t len, const char *word)
{
    return len == strlen(word) && strncasecmp(t, word, len) == 0;
}

struct ph_te {
    size_t n;     /* transfer codings named */
    bool chunked; /* the only one is exactly "chunked" */
};

static bool
ph_te_token(void *arg, const char *t, size_t len)
{
    struct ph_te *te = arg;

    te->chunked = ++te->n == 1 && ph_is(t, len, "chunked");
    return true;
}

/*
 * Tokens looked for in a list-valued header, and the flag each one sets; the last entry, with
 * a NULL word, sets its flag (when not NULL) for any other token.
 */
struct ph_word {
    const char *word;
    bool *seen;
};

static bool
ph_word_token(void *arg, const char *t, size_t len)
{
    const struct ph_word *w;

    for (w = arg; w->word != NULL; w++) {
        if (ph_is(t, len, w->word)) {
            *w->seen = true;
            return true;
        }
    }
    if (w->seen != NULL) {
        *w->seen = true;
    }
    return true;
}

/* ---- the head ---- */

/* Is every byte of s[0..len) one that ${ok} accepts (and len > 0 when ${nonempty})? */
static bool
ph_all(const char *s, size_t len, bool (*ok)(unsigned char), bool nonempty)
{
    if (nonempty && len == 0) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!ok((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

static bool
ph_target_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f;
}

/*
 * Turn the offsets into the public head and check it (the store no longer moves for this
 * head).  Returns 0, or -1 after ph_fail().
 */
static int
ph_build_head(struct proxy_http *h)
{
    struct proxy_http_head *hd = &h->head;
    bool request = h->kind == PROXY_HTTP_REQUEST;
    size_t n_host = 0;
    bool bad_host = false;
    struct ph_te te = {0, false};
    bool no_body;

    hd->kind = h->kind;
    hd->http_major = h->parser.http_major;
    hd->http_minor = h->parser.http_minor;
    hd->method = request ? http_method_str(h->parser.method) : NULL;
    hd->target = request ? h->store + h->url_off : NULL;
    hd->status = request ? 0 : (int)h->parser.status_code;
    hd->reason = !request && h->reason_len > 0 ? h->store + h->reason_off : "";
    hd->n_headers = h->n_hdr;
    hd->framing = PROXY_HTTP_FRAMING_NONE;
    hd->content_length = 0;
    hd->conn_close = hd->conn_keep_alive = hd->conn_other = hd->keep_alive = false;
    hd->upgrade = hd->expect_continue = hd->has_body = false;
    for (size_t i = 0; i < h->n_hdr; i++) {
        struct proxy_http_header *x = &hd->headers[i];

        x->name = h->store + h->hdr[i].name;
        x->name_len = h->hdr[i].name_len;
        x->value = h->hdr[i].value_len > 0 ? h->store + h->hdr[i].value : "";
        x->value_len = h->hdr[i].value_len;
        /*
         * RFC 9112 §5.1: no whitespace between a field name and its colon (http-parser, not
         * strict, takes "Host " as a name; Erlang's parser reads it as Host); names are
         * tokens, so no obs-text either.
         */
        if (!ph_all(x->name, x->name_len, ph_tchar, true)) {
            ph_fail(h, request ? 400 : 502, "header-name",
                    "a header field name holds whitespace, a control character or a byte above "
                    "0x7e (RFC 9112 §5.1: whitespace before the colon must be refused)");
            return -1;
        }
        if (!ph_all(x->value, x->value_len, ph_value_char, false)) {
            ph_fail(h, request ? 400 : 502, "header-value",
                    "a header field value holds a control character");
            return -1;
        }
        if (proxy_http_header_is(x, "host")) {
            n_host++;
            bad_host = bad_host ||
                       !ph_all(x->value, ph_trim_len(x->value, x->value_len), ph_host_char, false);
        } else if (proxy_http_header_is(x, "content-length")) {
            hd->framing = PROXY_HTTP_FRAMING_LENGTH;
        } else if (proxy_http_header_is(x, "upgrade")) {
            hd->upgrade = request;
        }
    }

    /* The version: HTTP/1.0 and HTTP/1.1 only (http-parser takes any digits). */
    if (hd->http_major != 1 || hd->http_minor > 1) {
        if (request) {
            ph_fail(h, 505, "version", "HTTP version other than HTTP/1.0 and HTTP/1.1");
        } else {
            ph_fail(h, 502, "version", "a response with an HTTP version other than 1.0 and 1.1");
        }
        return -1;
    }
    if (request && !ph_all(hd->target, h->url_len, ph_target_char, true)) {
        ph_fail(h, 400, "malformed",
                "the request target holds a space, a control character or "
                "a byte above 0x7e");
        return -1;
    }
    if (request && memchr(hd->target, '#', h->url_len) != NULL) {
        ph_fail(h, 400, "malformed",
                "the request target holds '#' (a fragment is never sent, RFC 9110 §7.1; "
                "servers disagree on where such a path ends)");
        return -1;
    }
    if (!request && (hd->status < 100 || hd->status > 599 ||
                     !ph_all(hd->reason, h->reason_len, ph_value_char, false))) {
        ph_fail(h, 502, "malformed", "a malformed status line");
        return -1;
    }

    {
        struct ph_word conn[] = {
            {"close", &hd->conn_close},
            {"keep-alive", &hd->conn_keep_alive},
            {NULL, &hd->conn_other},
        };
        struct ph_word expect[] = {{"100-continue", &hd->expect_continue}, {NULL, NULL}};

        ph_each_token(hd, "connection", ph_word_token, conn);
        ph_each_token(hd, "expect", ph_word_token, expect);
    }
    ph_each_token(hd, "transfer-encoding", ph_te_token, &te);
    if (hd->framing == PROXY_HTTP_FRAMING_LENGTH) {
        if (h->parser.content_length == ULLONG_MAX) {
            ph_fail(h, request ? 400 : 502, "framing", "invalid Content-Length");
            return -1;
        }
        hd->content_length = h->parser.content_length;
    }
    if (proxy_http_find(hd, "transfer-encoding") != NULL) {
        /* Every Transfer-Encoding header together must name exactly one coding: chunked. */
        if (!te.chunked) {
            ph_fail(h, request ? 400 : 502, "framing",
                    "Transfer-Encoding other than exactly \"chunked\"");
            return -1;
        }
        if (hd->framing == PROXY_HTTP_FRAMING_LENGTH) {
            ph_fail(h, request ? 400 : 502, "framing",
                    "both Content-Length and Transfer-Encoding (request smuggling)");
            return -1;
        }
        if (hd->http_minor == 0) {
            /* RFC 9112 §6.1: the framing of such a message is faulty. */
            ph_fail(h, request ? 400 : 502, "framing", "Transfer-Encoding in an HTTP/1.0 message");
            return -1;
        }
        hd->framing = PROXY_HTTP_FRAMING_CHUNKED;
    } else if (hd->framing != PROXY_HTTP_FRAMING_LENGTH && !request) {
        hd->framing = PROXY_HTTP_FRAMING_EOF;
    }
    if (!request && hd->status < 200 && ++h->interim > PROXY_HTTP_MAX_INTERIM) {
        ph_fail(
            h, 502, "interim",
            "more than " PH_STR(PROXY_HTTP_MAX_INTERIM) " interim (1xx) responses to one request");
        return -1;
    }
    if (!request && hd->status >= 200) {
        h->interim = 0;
    }
    no_body = !request && (hd->status < 200 || hd->status == 204 || hd->status == 304);
    if (no_body) {
        hd->framing = PROXY_HTTP_FRAMING_NONE;
    }
    hd->has_body = hd->framing == PROXY_HTTP_FRAMING_CHUNKED ||
                   (hd->framing == PROXY_HTTP_FRAMING_LENGTH && hd->content_length > 0);
    hd->keep_alive =
        (hd->http_minor >= 1 ? !hd->conn_close : hd->conn_keep_alive && !hd->conn_close) &&
        hd->framing != PROXY_HTTP_FRAMING_EOF;

    if (request) {
        if (n_host > 1) {
            ph_fail(h, 400, "malformed", "more than one Host header");
        } else if (n_host == 0 && hd->http_minor >= 1) {
            ph_fail(h, 400, "malformed", "HTTP/1.1 request without a Host header");
        } else if (bad_host) {
            ph_fail(h, 400, "malformed",
                    "a Host value that is not host[:port] (it holds '/', '?', '#', '@', a "
                    "backslash or whitespace: RFC 9112 §3.2)");
        } else if (h->parser.method == HTTP_CONNECT) {
            ph_fail(h, 501, "upgrade", "CONNECT is not supported");
        } else if (hd->upgrade) {
            ph_fail(h, 501, "upgrade", "protocol upgrades (Upgrade:) are not supported by ferry");
        }
    } else if (hd->status == 101) {
        /* ferry never forwards an Upgrade, so no switch of protocols can be due. */
        ph_fail(h, 502, "upgrade", "101 Switching Protocols to a request without Upgrade");
    }
    return h->error != NULL ? -1 : 0;
}

/* Map an http-parser error to our status, rule and words. */
static void
ph_parser_error(struct proxy_http *h)
{
    enum http_errno e = HTTP_PARSER_ERRNO(&h->parser);
    int bad = h->kind == PROXY_HTTP_REQUEST ? 400 : 502;

    switch (e) {
    case HPE_HEADER_OVERFLOW:
        ph_too_large(h, false);
        break;
    case HPE_UNEXPECTED_CONTENT_LENGTH:
        ph_fail(h, bad, "framing",
                "both Content-Length and Transfer-Encoding, or two Content-Length headers "
                "(request smuggling)");
        break;
    case HPE_INVALID_CONTENT_LENGTH:
        ph_fail(h, bad, "framing", "invalid Content-Length");
        break;
    case HPE_INVALID_HEADER_TOKEN:
        ph_fail(h, bad, "header-name",
                "a header field name holds whitespace, a control character or a byte above 0x7e, "
                "or a value a control character");
        break;
    case HPE_INVALID_VERSION:
        ph_fail(h, bad, "version", "malformed HTTP version");
        break;
    default:
        ph_fail(h, bad, "malformed", http_errno_description(e));
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
            ph_too_large(h, false);
            return false;
        }
        /*
         * http-parser (not built strict on Debian) takes any byte after a CR as the LF: the
         * head would end, or a line break, where this scan sees none.  Refuse it instead.
         */
        if (h->scan_cr && c != '\n') {
            ph_fail(h, h->kind == PROXY_HTTP_REQUEST ? 400 : 502, "malformed",
                    "CR not followed by LF in a head (bare CR)");
            return false;
        }
        h->scan_cr = c == '\r';
        if (h->scan_lf) {
            if (c == ' ' || c == '\t') {
                ph_fail(h, h->kind == PROXY_HTTP_REQUEST ? 400 : 502, "malformed",
                        "obsolete line folding in a header (obs-fold)");
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

/* Between messages: ready for the next head. */
static void
ph_next_message(struct proxy_http *h)
{
    h->state = PH_IDLE;
    h->head_complete = false;
    h->url_len = 0; /* proxy_http_request_line(): no target of the message before */
    h->head_bytes = 0;
    h->scan_started = false;
    h->scan_lf = false;
    h->scan_cr = false;
    h->scan_done = false;
    http_parser_init(&h->parser, h->kind == PROXY_HTTP_REQUEST ? HTTP_REQUEST : HTTP_RESPONSE);
}

/* The message's body has been framed completely. */
static void
ph_message_done(struct proxy_http *h)
{
    uint64_t body = h->body_bytes;

    ph_next_message(h);
    if (h->on_done != NULL) {
        h->on_done(h->arg, h->kind, body);
    }
}

/*
 * ph_move_body(h, in, out, n):
 * Move ${n} body bytes from the front of ${in} to ${out}.  Moving chains copies nothing, but
 * bufferevent_openssl writes chain by chain, one TLS record each: a body moved behind its
 * rewritten head made the head a record of its own, which the peer read a loop turn earlier
 * than the body (one more wakeup, two more reads and a write of the head alone to its client
 * per response: +15% CPU per 16 KiB response).  So behind a head ferry just wrote, the body's
 * first bytes are copied up to one full record, and only the rest is moved; behind a chunk
 * line, a chunk that fits is copied (small chunks share records), a bigger one is moved.
 */
static void
ph_move_body(struct proxy_http *h, struct evbuffer *in, struct evbuffer *out, size_t n)
{
    if (h->out_small > 0 && h->out_small < PROXY_HTTP_COALESCE_MAX) {
        size_t room = PROXY_HTTP_COALESCE_MAX - h->out_small;
        size_t k = n < room ? n : room;
        struct evbuffer_iovec v;

        /* expand first: the last chain (ferry's bytes) grows, so that the copy lands in it. */
        if ((h->out_head || n <= room) && evbuffer_expand(out, k) == 0 &&
            evbuffer_reserve_space(out, (ev_ssize_t)k, &v, 1) == 1) {
            if (v.iov_len >= k && evbuffer_copyout(in, v.iov_base, k) == (ev_ssize_t)k) {
                v.iov_len = k;
                (void)evbuffer_commit_space(out, &v, 1);
                (void)evbuffer_drain(in, k);
                h->out_small += k;
                n -= k;
            } else {
                (void)evbuffer_commit_space(out, &v, 0);
            }
        }
    }
    if (n > 0) {
        (void)evbuffer_remove_buffer(in, out, n);
        h->out_small = 0;
        h->out_head = false;
    }
}

/*
 * The head is complete and its final LF is the first byte of ${in}: check it, hand it to
 * on_head, and set up its body.  Returns false when the framer stopped (refusal or error).
 */
static bool
ph_head_done(struct proxy_http *h, struct evbuffer *in, struct evbuffer *out)
{
    bool skip_body = false;
    size_t before;

    evbuffer_drain(in, 1);
    h->head_complete = false;
    if (ph_terminate(h) < 0) {
        ph_fail(h, 500, "malformed", "out of memory");
        h->state = PH_BAD;
        return false;
    }
    if (ph_build_head(h) < 0) {
        h->state = PH_BAD;
        return false;
    }
    before = evbuffer_get_length(out);
    h->plain = false; /* on_head may ask for it (proxy_http_plain_body) */
    if (h->on_head(h->arg, &h->head, out, &skip_body) != PROXY_HTTP_FORWARD) {
        h->state = PH_STOPPED;
        return false;
    }
    /* The head is ferry's own bytes at the end of out (a small chain: see ph_move_body()). */
    h->out_small = evbuffer_get_length(out) - before;
    h->out_head = true;
    h->state = PH_BODY;
    h->framing = skip_body ? PROXY_HTTP_FRAMING_NONE : h->head.framing;
    h->body_bytes = 0;
    switch (h->framing) {
    case PROXY_HTTP_FRAMING_NONE:
        ph_message_done(h);
        break;
    case PROXY_HTTP_FRAMING_LENGTH:
        h->left = h->head.content_length;
        if (h->left == 0) {
            ph_message_done(h);
        }
        break;
    case PROXY_HTTP_FRAMING_CHUNKED:
        h->chunk = PH_CH_SIZE;
        h->chunk_size = 0;
        h->line_len = 0;
        h->pend_len = 0;
        h->held = 0;
        h->raw = 0;
        h->raw_dropped = false;
        break;
    case PROXY_HTTP_FRAMING_EOF:
        break;
    }
    return true;
}

/* Feed head bytes from ${in} to http-parser.  Returns false when the framer stopped. */
static bool
ph_pump_head(struct proxy_http *h, struct evbuffer *in, struct evbuffer *out)
{
    struct evbuffer_iovec v;
    enum http_errno e;
    size_t n;

    if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0) {
        return false;
    }
    if (!ph_prescan(h, v.iov_base, v.iov_len)) {
        h->state = PH_BAD;
        return false;
    }
    n = http_parser_execute(&h->parser, &ph_settings, v.iov_base, v.iov_len);
    e = HTTP_PARSER_ERRNO(&h->parser);
    if (e != HPE_OK && e != HPE_PAUSED) {
        ph_parser_error(h);
        h->state = PH_BAD;
        return false;
    }
    /* Every byte it took is in the head's storage now. */
    evbuffer_drain(in, n);
    if (!h->head_complete) {
        return true;
    }
    /* Paused in on_headers_complete: the next byte is the head's final LF. */
    return ph_head_done(h, in, out);
}

/* Append a chunk's size line, lowercase HEX CRLF, to the framing ferry owes. */
static void
ph_pend_chunk_line(struct proxy_http *h, uint64_t size)
{
    static const char digits[] = "0123456789abcdef";
    char buf[24];
    size_t i = sizeof(buf);

    buf[--i] = '\n';
    buf[--i] = '\r';
    do {
        buf[--i] = digits[size & 0xf];
        size >>= 4;
    } while (size != 0);
    if (h->plain) {
        return; /* no framing at all: the receiver reads to the end of the connection */
    }
    /* At most "\r\n" + 11 digits (2^40) + "\r\n" is pending. */
    memcpy(h->pend + h->pend_len, buf + i, sizeof(buf) - i);
    h->pend_len += sizeof(buf) - i;
}

static bool
ph_chunk_fail(struct proxy_http *h, const char *rule, const char *why)
{
    int status = h->kind == PROXY_HTTP_REQUEST ? 400 : 502;

    ph_fail(h, status, rule, why);
    h->state = PH_BAD;
    return false;
}

/*
 * One byte of a chunk line or of the trailer section (everything of a chunked body but its
 * data); what ferry will write for it accumulates in h->pend.  Returns false when the framer
 * stopped.
 */
static bool
ph_chunk_byte(struct proxy_http *h, unsigned char c)
{
    int x;

    if (h->chunk >= PH_CH_TRAILER) {
        /* The trailer section is read, checked and dropped; bounded like a head. */
        if (++h->line_len > PROXY_HTTP_MAX_HEAD) {
            return ph_chunk_fail(h, "trailer", "trailer section larger than 64 KiB");
        }
    } else if (++h->line_len > PROXY_HTTP_MAX_CHUNK_LINE) {
        return ph_chunk_fail(h, "chunk-line", "chunk line longer than 4096 bytes");
    }
    switch (h->chunk) {
    case PH_CH_SIZE:
        if ((x = OPENSSL_hexchar2int(c)) >= 0) {
            h->chunk_size = h->chunk_size * 16 + (uint64_t)x;
            if (h->chunk_size > PROXY_HTTP_MAX_CHUNK) {
                return ph_chunk_fail(h, "chunk-size", "chunk size above 2^40");
            }
            return true;
        }
        if (h->line_len == 1) {
            return ph_chunk_fail(h, "chunk-line", "chunk line does not start with a hex digit");
        }
        if (c == ';') {
            h->chunk = PH_CH_EXT;
        } else if (c == ' ' || c == '\t') {
            h->chunk = PH_CH_BWS;
        } else if (c == '\r') {
            h->chunk = PH_CH_LINE_LF;
        } else {
            return ph_chunk_fail(h, "chunk-line",
                                 c == '\n'
                                     ? "chunk line ended by a bare LF (not CRLF)"
                                     : "chunk size followed by a byte other than ';' or CRLF");
        }
        return true;
    case PH_CH_BWS:
        if (c == ';') {
            h->chunk = PH_CH_EXT;
        } else if (c != ' ' && c != '\t') {
            return ph_chunk_fail(h, "chunk-line",
                                 "whitespace after a chunk size not followed by "
                                 "a chunk extension");
        }
        return true;
    case PH_CH_EXT:
        if (c == '\r') {
            h->chunk = PH_CH_LINE_LF;
        } else if (c == '\n') {
            return ph_chunk_fail(h, "chunk-line", "chunk line ended by a bare LF (not CRLF)");
        } else if (c != '\t' && (c < 0x20 || c > 0x7e)) {
            return ph_chunk_fail(h, "chunk-line",
                                 "chunk extension holds a control character or "
                                 "a byte above 0x7e");
        }
        return true;
    case PH_CH_LINE_LF:
        if (c != '\n') {
            return ph_chunk_fail(h, "chunk-line", "chunk line ended by a bare CR (not CRLF)");
        }
        h->line_len = 0;
        if (h->chunk_size == 0) {
            h->chunk = PH_CH_TRAILER;
            return true;
        }
        ph_pend_chunk_line(h, h->chunk_size);
        h->left = h->chunk_size;
        h->chunk = PH_CH_DATA;
        return true;
    case PH_CH_DATA:
    case PH_CH_DONE:
        return true; /* not reached: ph_pump_chunked() handles them */
    case PH_CH_DATA_CR:
    case PH_CH_DATA_LF:
        if (c != (h->chunk == PH_CH_DATA_CR ? '\r' : '\n')) {
            return ph_chunk_fail(h, "chunk-data", "chunk data not followed by CRLF");
        }
        if (h->chunk == PH_CH_DATA_CR) {
            h->chunk = PH_CH_DATA_LF;
            return true;
        }
        if (!h->plain) {
            memcpy(h->pend + h->pend_len, "\r\n", 2);
            h->pend_len += 2;
        }
        h->chunk = PH_CH_SIZE;
        h->chunk_size = 0;
        h->line_len = 0;
        return true;
    case PH_CH_TRAILER:
        if (c == '\r') {
            h->chunk = PH_CH_END_LF;
        } else if (ph_tchar(c)) {
            h->chunk = PH_CH_TR_NAME;
        } else {
            return ph_chunk_fail(h, "trailer",
                                 c == '\n' ? "trailer section ended by a bare LF"
                                           : "malformed trailer field name");
        }
        return true;
    case PH_CH_TR_NAME:
        if (c == ':') {
            h->chunk = PH_CH_TR_VALUE;
        } else if (!ph_tchar(c)) {
            return ph_chunk_fail(h, "trailer",
                                 "a trailer field name holds whitespace, a control "
                                 "character or a byte above 0x7e");
        }
        return true;
    case PH_CH_TR_VALUE:
        if (c == '\r') {
            h->chunk = PH_CH_TR_LINE_LF;
        } else if (!ph_value_char(c)) {
            return ph_chunk_fail(h, "trailer",
                                 c == '\n' ? "trailer line ended by a bare LF"
                                           : "a trailer field value holds a "
                                             "control character");
        }
        return true;
    case PH_CH_TR_LINE_LF:
    case PH_CH_END_LF:
        if (c != '\n') {
            return ph_chunk_fail(h, "trailer", "CR not followed by LF in the trailer section");
        }
        if (h->chunk == PH_CH_TR_LINE_LF) {
            h->chunk = PH_CH_TRAILER;
            return true;
        }
        /* The last chunk and an empty trailer section, as ferry writes them. */
        if (!h->plain) {
            memcpy(h->pend + h->pend_len, "0\r\n\r\n", 5);
            h->pend_len += 5;
        }
        h->chunk = PH_CH_DONE;
        return true;
    }
    return true;
}

/* Move the checked bytes at the front of ${in} (h->held) to ${out}. */
static void
ph_flush_held(struct proxy_http *h, struct evbuffer *in, struct evbuffer *out)
{
    if (h->held > 0) {
        ph_move_body(h, in, out, h->held);
        h->held = 0;
    }
}

/*
 * A piece of framing (the CRLF after a chunk's data and the next chunk line, or the last
 * chunk and the trailers) has been read completely, h->raw bytes of it behind the held ones:
 * keep them in place when they are exactly what ferry writes (h->pend), else drop them and put
 * ferry's bytes in their place (evbuffer_prepend uses the room they leave in the chain when
 * it is there).  Returns false on OOM.
 */
static bool
ph_framing_done(struct proxy_http *h, struct evbuffer *in, struct evbuffer *out)
{
    char raw[sizeof(h->pend)];
    struct evbuffer_ptr at;
    bool same = false;

    if (!h->raw_dropped && h->raw == h->pend_len &&
        evbuffer_ptr_set(in, &at, h->held, EVBUFFER_PTR_SET) == 0 &&
        evbuffer_copyout_from(in, &at, raw, h->raw) == (ev_ssize_t)h->raw) {
        same = memcmp(raw, h->pend, h->raw) == 0;
    }
    if (same) {
        h->held += h->raw;
    } else {
        ph_flush_held(h, in, out);
        evbuffer_drain(in, h->raw);
        if (h->pend_len > 0 && evbuffer_prepend(in, h->pend, h->pend_len) < 0) {
            return ph_chunk_fail(h, "malformed", "out of memory");
        }
        h->held = h->pend_len;
    }
    h->raw = 0;
    h->raw_dropped = false;
    h->pend_len = 0;
    return true;
}

/*
 * Frame a chunked body from ${in}: data and framing are checked in place and move in bulk
 * (h->held), framing is rewritten only where the sender's differs from ferry's.  Returns
 * false when the framer stopped.
 */
static bool
ph_pump_chunked(struct proxy_http *h, struct evbuffer *in, struct evbuffer *out)
{
    bool ok = true;

    while (ok && h->state == PH_BODY) {
        size_t avail = evbuffer_get_length(in) - h->held - h->raw;
        struct evbuffer_ptr at;
        struct evbuffer_iovec v;
        const unsigned char *p;
        size_t i;

        if (h->chunk == PH_CH_DONE) {
            ph_flush_held(h, in, out);
            ph_message_done(h);
            break;
        }
        if (avail == 0) {
            break;
        }
        if (h->chunk == PH_CH_DATA) {
            size_t n = (uint64_t)avail < h->left ? avail : (size_t)h->left;

            h->held += n;
            h->left -= n;
            h->body_bytes += n;
            if (h->left == 0) {
                h->chunk = PH_CH_DATA_CR;
            }
            continue;
        }
        if (evbuffer_ptr_set(in, &at, h->held + h->raw, EVBUFFER_PTR_SET) < 0 ||
            evbuffer_peek(in, -1, &at, &v, 1) < 1 || v.iov_len == 0) {
            break;
        }
        p = v.iov_base;
        for (i = 0; i < v.iov_len && h->chunk != PH_CH_DATA && h->chunk != PH_CH_DONE; i++) {
            if (!ph_chunk_byte(h, p[i])) {
                ok = false;
                break;
            }
        }
        h->raw += i;
        if (ok && (h->chunk == PH_CH_DATA || h->chunk == PH_CH_DONE)) {
            ok = ph_framing_done(h, in, out);
        } else if (ok && h->raw > sizeof(h->pend)) {
            /*
             * Longer than anything ferry writes (extensions, trailers): it is written anew
             * anyway, and keeping it in the input could fill it (a trailer section may take
             * 64 KiB).
             */
            ph_flush_held(h, in, out);
            evbuffer_drain(in, h->raw);
            h->raw = 0;
            h->raw_dropped = true;
        }
    }
    /* What was checked goes out now; a defect stops it at the last good byte. */
    ph_flush_held(h, in, out);
    return ok;
}

/* Frame body bytes from ${in}.  Returns false when the framer stopped. */
static bool
ph_pump_body(struct proxy_http *h, struct evbuffer *in, struct evbuffer *out)
{
    size_t n = evbuffer_get_length(in);

    switch (h->framing) {
    case PROXY_HTTP_FRAMING_LENGTH:
        if ((uint64_t)n > h->left) {
            n = (size_t)h->left;
        }
        ph_move_body(h, in, out, n);
        h->left -= n;
        h->body_bytes += n;
        if (h->left == 0) {
            ph_message_done(h);
        }
        return true;
    case PROXY_HTTP_FRAMING_EOF:
        ph_move_body(h, in, out, n);
        h->body_bytes += n;
        return true;
    case PROXY_HTTP_FRAMING_CHUNKED:
        return ph_pump_chunked(h, in, out);
    case PROXY_HTTP_FRAMING_NONE:
        break;
    }
    return true;
}

/*
 * proxy_http_new(kind, on_head, on_done, arg):
 * A framer for one direction; NULL on OOM.
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
    h->parser.data = h;
    ph_next_message(h);
    return h;
}

/*
 * proxy_http_set_arg(h, arg):
 * ${h}, between messages, calls its callbacks with ${arg} from now on (a framer kept for the
 * next request of another connection).
 */
void
proxy_http_set_arg(struct proxy_http *h, void *arg)
{
    h->arg = arg;
    h->interim = 0;
    h->forged_end = false;
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

/*
 * proxy_http_pump(h, in, out):
 * Frame what can be framed from ${in} to ${out}, message by message.
 */
enum proxy_http_result
proxy_http_pump(struct proxy_http *h, struct evbuffer *in, struct evbuffer *out)
{
    while (evbuffer_get_length(in) > 0) {
        if (h->state == PH_IDLE && h->hold) {
            break;
        }
        if (h->state == PH_IDLE || h->state == PH_HEAD) {
            if (!ph_pump_head(h, in, out)) {
                break;
            }
        } else if (h->state == PH_BODY) {
            size_t before = evbuffer_get_length(in);

            if (!ph_pump_body(h, in, out)) {
                break;
            }
            if (h->state == PH_BODY && evbuffer_get_length(in) == before) {
                break; /* a chunk's framing is in, its data not yet */
            }
        } else {
            break;
        }
    }
    if (h->state == PH_BAD) {
        return PROXY_HTTP_BAD;
    }
    return h->state == PH_STOPPED ? PROXY_HTTP_STOPPED : PROXY_HTTP_OK;
}

/*
 * proxy_http_hold(h, hold):
 * Start no new message while ${hold}.
 */
void
proxy_http_hold(struct proxy_http *h, bool hold)
{
    h->hold = hold;
}

/*
 * proxy_http_plain_body(h):
 * From on_head: this message's chunked body goes out as bare data (see proxy_http.h).
 */
void
proxy_http_plain_body(struct proxy_http *h)
{
    h->plain = true;
}

/*
 * proxy_http_eof(h, authentic):
 * The source ended: clean (between messages, or an EOF-delimited response ended by its
 * sender) or cut short.
 */
bool
proxy_http_eof(struct proxy_http *h, bool authentic)
{
    if (h->state == PH_IDLE) {
        return !h->scan_started;
    }
    if (h->state == PH_BODY && h->framing == PROXY_HTTP_FRAMING_EOF) {
        if (!authentic) {
            /* A FIN without close_notify: perhaps not the sender's end (a truncation). */
            h->forged_end = true;
            return false;
        }
        /* A response delimited by the end of the connection completes here. */
        ph_message_done(h);
        return true;
    }
    return false;
}

/*
 * proxy_http_error(h, status, rule):
 * The reason for PROXY_HTTP_BAD, the status to answer and the rule's id.
 */
const char *
proxy_http_error(const struct proxy_http *h, int *status, const char **rule)
{
    if (status != NULL) {
        *status = h->error_status != 0 ? h->error_status : 400;
    }
    if (rule != NULL) {
        *rule = h->error_rule != NULL ? h->error_rule : "malformed";
    }
    return h->error != NULL ? h->error : "malformed HTTP";
}

/*
 * proxy_http_request_line(h, method, mlen, target, tlen):
 * The method and target of the request head being read or refused, as far as http-parser
 * read them, for the access-log line of a request ferry answers itself.
 */
void
proxy_http_request_line(const struct proxy_http *h, char *method, size_t mlen, char *target,
                        size_t tlen)
{
    size_t n;

    if (mlen == 0 || tlen == 0) {
        return;
    }
    method[0] = '\0';
    target[0] = '\0';
    /* The method is known once the target began (http-parser reads it first). */
    if (h->kind != PROXY_HTTP_REQUEST || h->url_len == 0 ||
        h->url_off + h->url_len > h->store_len) {
        return;
    }
    n = strlen(http_method_str(h->parser.method));
    n = n < mlen - 1 ? n : mlen - 1;
    memcpy(method, http_method_str(h->parser.method), n);
    method[n] = '\0';
    n = h->url_len < tlen - 1 ? h->url_len : tlen - 1;
    memcpy(target, h->store + h->url_off, n);
    target[n] = '\0';
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
 * proxy_http_cut(h):
 * Was the source cut inside a message (proxy_http.h)?
 */
bool
proxy_http_cut(const struct proxy_http *h)
{
    switch (h->state) {
    case PH_IDLE:
        return h->scan_started;
    case PH_HEAD:
        return true;
    case PH_BODY:
        return h->framing != PROXY_HTTP_FRAMING_EOF || h->forged_end;
    case PH_STOPPED:
    case PH_BAD:
        break;
    }
    return false;
}

/*
 * proxy_http_out_to_eof(h):
 * Does the message being framed go out delimited by the end of the connection?
 */
bool
proxy_http_out_to_eof(const struct proxy_http *h)
{
    return h->state == PH_BODY && (h->framing == PROXY_HTTP_FRAMING_EOF || h->plain);
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

/* ---- writing heads ---- */

static char
ph_lower(char c)
{
    if (c >= 'A' && c <= 'Z') {
        return (char)(c - 'A' + 'a');
    }
    return c;
}

static char
ph_fold(char c)
{
    if (c == '_') {
        return '-';
    }
    return ph_lower(c);
}

/*
 * proxy_http_name_eq(a, alen, b):
 * Same field name for ferry: case-insensitive, '_' read as '-', a trailing '*' in ${b} a
 * prefix.
 */
bool
proxy_http_name_eq(const char *a, size_t alen, const char *b)
{
    size_t i;

    /* Called for every header against every name of a list: out at the first difference. */
    for (i = 0; b[i] != '\0'; i++) {
        if (b[i] == '*' && b[i + 1] == '\0') {
            return true;
        }
        if (i == alen || ph_fold(a[i]) != ph_fold(b[i])) {
            return false;
        }
    }
    return i == alen;
}

/*
 * proxy_http_header_is(hd, name):
 * Case-insensitive name comparison.
 */
bool
proxy_http_header_is(const struct proxy_http_header *hd, const char *name)
{
    size_t i;

    for (i = 0; name[i] != '\0'; i++) {
        if (i == hd->name_len || ph_lower(hd->name[i]) != ph_lower(name[i])) {
            return false;
        }
    }
    return i == hd->name_len;
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

struct ph_named {
    const char *name;
    size_t len;
    bool found;
};

static bool
ph_named_token(void *arg, const char *t, size_t len)
{
    struct ph_named *n = arg;
    char tok[256];

    if (len >= sizeof(tok)) {
        return true;
    }
    memcpy(tok, t, len);
    tok[len] = '\0';
    n->found = proxy_http_name_eq(n->name, n->len, tok);
    return !n->found;
}

/*
 * proxy_http_connection_names(h, name, len):
 * Does a Connection header of ${h} name ${name}?
 */
bool
proxy_http_connection_names(const struct proxy_http_head *h, const char *name, size_t len)
{
    struct ph_named n = {name, len, false};

    ph_each_token(h, "connection", ph_named_token, &n);
    return n.found;
}

/*
 * Headers ferry never forwards as received: the hop-by-hop ones (RFC 9110 §7.6.1), and any
 * other spelling of the framing headers ("Transfer_Encoding", which a CGI- or WSGI-style
 * backend reads as Transfer-Encoding), since ferry writes the real ones itself.
 */
static const char *const ph_hop_by_hop[] = {
    "connection", "keep-alive", "proxy-connection", "te",
    "trailer",    "upgrade",    "content-length",   "transfer-encoding",
};

static bool
ph_dropped(const struct proxy_http_head *h, const struct proxy_http_header *hd,
           const struct proxy_http_rewrite *rw)
{
    for (size_t i = 0; i < sizeof(ph_hop_by_hop) / sizeof(ph_hop_by_hop[0]); i++) {
        if (proxy_http_name_eq(hd->name, hd->name_len, ph_hop_by_hop[i])) {
            return true;
        }
    }
    for (size_t i = 0; rw != NULL && i < rw->n_drop; i++) {
        if (proxy_http_name_eq(hd->name, hd->name_len, rw->drop[i])) {
            return true;
        }
    }
    /* Named in Connection: meant for the hop that ends here (Host is for every hop). */
    return h->conn_other && !proxy_http_header_is(hd, "host") &&
           proxy_http_connection_names(h, hd->name, hd->name_len);
}

/*
 * proxy_http_u64(buf, v):
 * Write ${v} in decimal at ${buf} (at least PROXY_HTTP_U64_MAX bytes; no NUL).  Returns the
 * number of digits.
 */
size_t
proxy_http_u64(char *buf, uint64_t v)
{
    char tmp[PROXY_HTTP_U64_MAX];
    size_t i = sizeof(tmp);

    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    memcpy(buf, tmp + i, sizeof(tmp) - i);
    return sizeof(tmp) - i;
}

/*
 * Where a head goes: a stretch of the output evbuffer reserved for it (proxy_http_write_head),
 * filled with memcpy rather than a printf or an evbuffer_add per piece.  ${len} is what is
 * written so far, at most ${cap}; ${over}: a piece did not fit (ph_head_bound() is wrong),
 * nothing more is written and the head is not committed.
 */
struct ph_out {
    char *p;
    size_t len;
    size_t cap;
    bool over;
};

static void
ph_put(struct ph_out *o, const void *s, size_t n)
{
    if (o->over || n > o->cap - o->len) {
        o->over = true; /* never past the reservation, even if the bound were wrong */
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

#define PH_PUT_LIT(o, lit) ph_put((o), (lit), sizeof(lit) - 1)

static void
ph_put_header(struct ph_out *o, const char *name, size_t nl, const char *v, size_t vl)
{
    while (vl > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vl--;
    }
    vl = ph_trim_len(v, vl);
    ph_put(o, name, nl);
    PH_PUT_LIT(o, ": ");
    ph_put(o, v, vl);
    PH_PUT_LIT(o, "\r\n");
}

/* The start line: "METHOD target HTTP/1.x" or "HTTP/1.x status reason". */
static void
ph_put_start_line(const struct proxy_http_head *h, struct ph_out *o)
{
    char ver[] = "HTTP/1.1";
    char st[4];

    ver[7] = (char)('0' + h->http_minor);
    if (h->kind == PROXY_HTTP_REQUEST) {
        ph_put(o, h->method, strlen(h->method));
        PH_PUT_LIT(o, " ");
        ph_put(o, h->target, strlen(h->target));
        PH_PUT_LIT(o, " ");
        ph_put(o, ver, 8);
        PH_PUT_LIT(o, "\r\n");
        return;
    }
    st[0] = (char)('0' + h->status / 100);
    st[1] = (char)('0' + h->status / 10 % 10);
    st[2] = (char)('0' + h->status % 10);
    st[3] = ' ';
    ph_put(o, ver, 8);
    PH_PUT_LIT(o, " ");
    ph_put(o, st, 4);
    ph_put(o, h->reason, strlen(h->reason));
    PH_PUT_LIT(o, "\r\n");
}

/*
 * Content-Length or Transfer-Encoding as ferry frames the body (none for 1xx and 204, and
 * none for a chunked body that goes out bare: ${plain}).
 */
static void
ph_put_framing(const struct proxy_http_head *h, bool plain, struct ph_out *o)
{
    char num[PROXY_HTTP_U64_MAX];

    if (h->kind == PROXY_HTTP_RESPONSE && (h->status < 200 || h->status == 204)) {
        return;
    }
    if (proxy_http_find(h, "transfer-encoding") != NULL) {
        if (!plain) {
            PH_PUT_LIT(o, "Transfer-Encoding: chunked\r\n");
        }
        return;
    }
    if (proxy_http_find(h, "content-length") == NULL) {
        return;
    }
    PH_PUT_LIT(o, "Content-Length: ");
    ph_put(o, num, proxy_http_u64(num, h->content_length));
    PH_PUT_LIT(o, "\r\n");
}

/* The whole head as proxy_http_write_head() forwards it, into ${o}. */
static void
ph_put_head(const struct proxy_http_head *h, const struct proxy_http_rewrite *rw, struct ph_out *o)
{
    enum proxy_http_conn conn = rw != NULL ? rw->conn : PROXY_HTTP_CONN_KEEP;
    bool framing_done = false;

    ph_put_start_line(h, o);
    for (size_t i = 0; i < h->n_headers; i++) {
        const struct proxy_http_header *hd = &h->headers[i];
        const char *v = hd->value;
        size_t vl = hd->value_len;

        if (proxy_http_header_is(hd, "content-length") ||
            proxy_http_header_is(hd, "transfer-encoding")) {
            /* Written once, canonical, where the first of them was. */
            if (!framing_done) {
                ph_put_framing(h, rw != NULL && rw->plain_body, o);
            }
            framing_done = true;
            continue;
        }
        if (ph_dropped(h, hd, rw)) {
            continue;
        }
        if (rw != NULL && rw->host != NULL && proxy_http_header_is(hd, "host")) {
            v = rw->host;
            vl = strlen(rw->host);
        }
        ph_put_header(o, hd->name, hd->name_len, v, vl);
    }
    for (size_t i = 0; rw != NULL && i < rw->n_add; i++) {
        if (rw->add[i].value != NULL) {
            ph_put_header(o, rw->add[i].name, strlen(rw->add[i].name), rw->add[i].value,
                          strlen(rw->add[i].value));
        }
    }
    if (conn == PROXY_HTTP_CONN_CLOSE || (conn == PROXY_HTTP_CONN_KEEP && h->conn_close)) {
        PH_PUT_LIT(o, "Connection: close\r\n");
    } else if (conn == PROXY_HTTP_CONN_KEEP_ALIVE ||
               (conn == PROXY_HTTP_CONN_KEEP && h->conn_keep_alive)) {
        PH_PUT_LIT(o, "Connection: keep-alive\r\n");
    }
    PH_PUT_LIT(o, "\r\n");
}

/*
 * The most bytes ph_put_head() can write for ${h} and ${rw}: every header and addition with
 * its ": " and CRLF, the start line, and a fixed allowance for the framing header (written
 * once, in place of a Content-Length or Transfer-Encoding header counted already), the
 * Connection header and the last CRLF.  A cheap sum, so the head is written in one pass.
 */
static size_t
ph_head_bound(const struct proxy_http_head *h, const struct proxy_http_rewrite *rw)
{
    size_t n = 128; /* "HTTP/1.x " and CRLFs, framing, Connection, the empty line */

    if (h->kind == PROXY_HTTP_REQUEST) {
        n += strlen(h->method) + strlen(h->target);
    } else {
        n += strlen(h->reason);
    }
    for (size_t i = 0; i < h->n_headers; i++) {
        n += h->headers[i].name_len + h->headers[i].value_len + 4;
    }
    if (rw != NULL && rw->host != NULL) {
        n += strlen(rw->host);
    }
    for (size_t i = 0; rw != NULL && i < rw->n_add; i++) {
        if (rw->add[i].value != NULL) {
            n += strlen(rw->add[i].name) + strlen(rw->add[i].value) + 4;
        }
    }
    return n;
}

/*
 * proxy_http_write_head(h, rw, out):
 * Write ${h} as ferry forwards it (see proxy_http.h) into one stretch of ${out} reserved for
 * its largest possible size (ph_head_bound), in one pass, and commit what was written.
 */
int
proxy_http_write_head(const struct proxy_http_head *h, const struct proxy_http_rewrite *rw,
                      struct evbuffer *out)
{
    size_t bound = ph_head_bound(h, rw);
    struct evbuffer_iovec v;
    struct ph_out o;

    if (bound > (size_t)EV_SSIZE_MAX ||
        evbuffer_reserve_space(out, (ev_ssize_t)bound, &v, 1) != 1 || v.iov_len < bound) {
        return -1;
    }
    o.p = v.iov_base;
    o.len = 0;
    o.cap = bound;
    o.over = false;
    ph_put_head(h, rw, &o);
    if (o.over) {
        return -1; /* nothing committed: ${out} is as it was */
    }
    v.iov_len = o.len;
    return evbuffer_commit_space(out, &v, 1);
}
