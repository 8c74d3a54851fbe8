/*
 * fuzz_http: libFuzzer target for the HTTP framer and head rewriter (proxy/proxy_http.h).
 *
 * Input: one control byte, then the bytes of one direction of a connection.  The control
 * byte picks where the stream is split in two reads, whether Host is rewritten, whether
 * responses answer HEAD requests (no body) and whether they go to an HTTP/1.0 client (a
 * chunked body goes out bare, proxy_http_plain_body(): then only the split is checked, as
 * the output is delimited by the end of the connection).  The
 * bytes go through a REQUEST framer and, separately, a RESPONSE framer whose on_head rewrites
 * each head with proxy_http_write_head() the way proxy/ does (identity headers dropped, a
 * couple added).  Checked for each kind:
 *   - no crash, leak, or undefined behaviour anywhere in proxy_http.c;
 *   - the split does not matter: fed whole or in two reads, the framer gives the same result,
 *     the same heads and, when the input is accepted, the same output;
 *   - the rewriter never writes what the parser rejects: the output, fed to a fresh framer of
 *     the same kind, is accepted, has as many heads, and is written back byte for byte;
 *   - ferry owns the framing (issue 12): that second framer reads exactly the messages the
 *     first one forwarded, in order, with the same method and target (or status) and the
 *     same body length: nothing another parser could split differently gets through.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "proxy_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The messages one framer forwarded, as a second framer must read them again. */
#define FZ_MAX_MSGS 64

struct fz_msg {
    uint64_t line; /* FNV-1a of "METHOD target" or of the status code */
    uint64_t body; /* body length given to on_done */
};

/* What the callbacks of one framer saw. */
struct fz_rec {
    const char *host; /* Host rewrite for requests, or NULL */
    bool rewrite;     /* drop and add headers (the first pass) or write them back as parsed */
    bool skip_body;   /* responses: answers to HEAD (no body whatever the head says) */
    bool plain;       /* responses: chunked bodies go out bare (an HTTP/1.0 client) */
    struct proxy_http *framer; /* the framer calling on_head (for plain) */
    size_t heads;
    size_t done;
    bool over_limit; /* a rewritten head may exceed what a framer accepts (see fz_on_head) */
    struct fz_msg msgs[FZ_MAX_MSGS];
};

static uint64_t
fz_hash(uint64_t h, const char *s)
{
    for (; *s != '\0'; s++) {
        h = (h ^ (unsigned char)*s) * UINT64_C(0x100000001b3);
    }
    return h;
}

static const char *const fz_drop[] = {"x-forwarded-*", "x-auth-couchdb-*", "client-cert*"};

static const struct proxy_http_add fz_add_req[] = {
    {"X-Forwarded-For", "192.0.2.7"},
    {"X-Forwarded-Proto", "https"},
    {"X-Forwarded-Client-Cert", "Hash=00;Subject=\"CN=peer\";URI=spiffe://x"},
};

static const struct proxy_http_add fz_add_resp[] = {
    {"X-Ferry", "1"}, {"X-Unset", NULL}, /* a NULL value is skipped */
};

#define FZ_NELEM(a) (sizeof(a) / sizeof((a)[0]))

static void
fz_fail(const char *what, enum proxy_http_kind kind)
{
    fprintf(stderr, "fuzz_http: %s (%s framer)\n", what,
            kind == PROXY_HTTP_REQUEST ? "request" : "response");
    abort();
}

static enum proxy_http_verdict
fz_on_head(void *arg, const struct proxy_http_head *h, struct evbuffer *out, bool *skip_body)
{
    struct fz_rec *r = arg;
    size_t before = evbuffer_get_length(out);
    size_t n_add = h->kind == PROXY_HTTP_REQUEST ? FZ_NELEM(fz_add_req) : FZ_NELEM(fz_add_resp);
    int rc;

    *skip_body = r->skip_body;
    if (r->heads < FZ_MAX_MSGS) {
        uint64_t line = UINT64_C(0xcbf29ce484222325);

        if (h->kind == PROXY_HTTP_REQUEST) {
            line = fz_hash(fz_hash(fz_hash(line, h->method), " "), h->target);
        } else {
            line = (uint64_t)h->status;
        }
        r->msgs[r->heads].line = line;
    }
    r->heads++;
    /* Read what proxy/ reads, so that ASan checks the head's strings. */
    (void)proxy_http_find(h, "host");
    (void)proxy_http_find(h, "content-length");
    if (!r->rewrite) {
        rc = proxy_http_write_head(h, NULL, out);
    } else {
        struct proxy_http_rewrite rw = {
            .drop = fz_drop,
            .n_drop = FZ_NELEM(fz_drop),
            .add = h->kind == PROXY_HTTP_REQUEST ? fz_add_req : fz_add_resp,
            .n_add = n_add,
            .host = h->kind == PROXY_HTTP_REQUEST ? r->host : NULL,
            .conn = r->plain ? PROXY_HTTP_CONN_CLOSE : PROXY_HTTP_CONN_KEEP,
            .plain_body = r->plain,
        };

        if (r->plain) {
            proxy_http_plain_body(r->framer);
        }
        rc = proxy_http_write_head(h, &rw, out);
    }
    if (rc != 0) {
        fz_fail("proxy_http_write_head failed", h->kind);
    }
    /*
     * Added headers can take a head that was just within the limits (100 fields, 64 KiB) over
     * them.  proxy/ adds headers only on the way to the backend, never to another framer, so
     * such a head is no rewriter bug: the round trip is not checked for it.
     */
    if (r->rewrite && (h->n_headers + n_add > PROXY_HTTP_MAX_HEADERS ||
                       evbuffer_get_length(out) - before > PROXY_HTTP_MAX_HEAD)) {
        r->over_limit = true;
    }
    return PROXY_HTTP_FORWARD;
}

static void
fz_on_done(void *arg, enum proxy_http_kind kind, uint64_t body_bytes)
{
    struct fz_rec *r = arg;

    (void)kind;
    if (r->done < FZ_MAX_MSGS) {
        r->msgs[r->done].body = body_bytes;
    }
    r->done++;
}

/*
 * Run ${d}[0..${n}) through a fresh framer of ${kind}, in one read or two (split at ${split}
 * when 0 < split < n).  The output is left in ${out}; returns the result of the last pump.
 */
static enum proxy_http_result
fz_frame(enum proxy_http_kind kind, const uint8_t *d, size_t n, size_t split, struct fz_rec *r,
         struct evbuffer *out)
{
    struct proxy_http *h = proxy_http_new(kind, fz_on_head, fz_on_done, r);
    struct evbuffer *in = evbuffer_new();
    enum proxy_http_result res;
    int status = 0;

    if (h == NULL || in == NULL) {
        fz_fail("out of memory", kind);
    }
    r->framer = h;
    if (split == 0 || split >= n) {
        evbuffer_add(in, d, n);
        res = proxy_http_pump(h, in, out);
    } else {
        evbuffer_add(in, d, split);
        res = proxy_http_pump(h, in, out);
        if (res == PROXY_HTTP_OK) {
            evbuffer_add(in, d + split, n - split);
            res = proxy_http_pump(h, in, out);
        }
    }
    (void)proxy_http_in_head(h);
    (void)proxy_http_in_message(h);
    if (res == PROXY_HTTP_BAD) {
        const char *why = proxy_http_error(h, &status, NULL);

        if (why == NULL || status < 400 || status > 599) {
            fz_fail("PROXY_HTTP_BAD without a reason or an error status", kind);
        }
    } else {
        (void)proxy_http_eof(h, true);
    }
    evbuffer_free(in);
    proxy_http_free(h);
    return res;
}

/* Are the contents of ${a} and ${b} the same bytes? */
static bool
fz_same(struct evbuffer *a, struct evbuffer *b)
{
    size_t n = evbuffer_get_length(a);

    if (n != evbuffer_get_length(b)) {
        return false;
    }
    return n == 0 || memcmp(evbuffer_pullup(a, -1), evbuffer_pullup(b, -1), n) == 0;
}

static void
fz_one_kind(enum proxy_http_kind kind, const uint8_t *d, size_t n, size_t split, const char *host,
            bool skip_body, bool plain)
{
    struct evbuffer *whole = evbuffer_new();
    struct evbuffer *parts = evbuffer_new();
    struct evbuffer *again = evbuffer_new();
    struct fz_rec rw = {.host = host, .rewrite = true, .skip_body = skip_body, .plain = plain};
    struct fz_rec rp = {.host = host, .rewrite = true, .skip_body = skip_body, .plain = plain};
    struct fz_rec ra = {.host = NULL, .rewrite = false, .skip_body = skip_body};
    enum proxy_http_result res_whole, res_parts, res_again;

    if (whole == NULL || parts == NULL || again == NULL) {
        fz_fail("out of memory", kind);
    }
    res_whole = fz_frame(kind, d, n, 0, &rw, whole);
    res_parts = fz_frame(kind, d, n, split, &rp, parts);
    if (res_whole != res_parts || rw.heads != rp.heads) {
        fz_fail("the split changed the result or the number of heads", kind);
    }
    if (res_whole == PROXY_HTTP_OK && !fz_same(whole, parts)) {
        fz_fail("the split changed the output", kind);
    }

    /*
     * The output is a prefix of a stream the framer accepted, with its heads rewritten: a
     * fresh framer must accept it, find the same heads and write it back unchanged.
     */
    if (rw.over_limit || plain) {
        goto done;
    }
    res_again =
        fz_frame(kind, evbuffer_pullup(whole, -1), evbuffer_get_length(whole), 0, &ra, again);
    if (res_again != PROXY_HTTP_OK) {
        fz_fail("the parser rejects what the rewriter wrote", kind);
    }
    if (ra.heads != rw.heads || ra.done != rw.done) {
        fz_fail("the rewritten output has a different number of heads or messages", kind);
    }
    for (size_t i = 0; i < rw.heads && i < FZ_MAX_MSGS; i++) {
        if (ra.msgs[i].line != rw.msgs[i].line) {
            fz_fail("the rewritten output reads as another request line or status", kind);
        }
        if (i < rw.done && ra.msgs[i].body != rw.msgs[i].body) {
            fz_fail("the rewritten output reads as another body length", kind);
        }
    }
    if (!fz_same(whole, again)) {
        fz_fail("the rewritten output is not written back unchanged", kind);
    }
done:
    evbuffer_free(whole);
    evbuffer_free(parts);
    evbuffer_free(again);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t n, split;
    const char *host;

    if (size < 1) {
        return 0;
    }
    n = size - 1;
    /* The control byte maps 0..255 onto the whole input, so long inputs split anywhere. */
    split = (size_t)data[0] * n / 255;
    host = (data[0] & 1) != 0 ? "peer.example.org:6984" : NULL;
    fz_one_kind(PROXY_HTTP_REQUEST, data + 1, n, split, host, false, false);
    fz_one_kind(PROXY_HTTP_RESPONSE, data + 1, n, split, NULL, (data[0] & 2) != 0, false);
    if ((data[0] & 4) != 0) {
        fz_one_kind(PROXY_HTTP_RESPONSE, data + 1, n, split, NULL, (data[0] & 2) != 0, true);
    }
    return 0;
}
