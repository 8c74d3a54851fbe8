/*
 * proxy_exchange: the HTTP side of a `protocol: http` connection (CONTRACT §5, §6, §7).
 *
 * It owns the two framers (requests client -> server, responses server -> client), the queue
 * of requests waiting for their responses (keep-alive and pipelining), the identity headers
 * computed once per connection, and the two HTTP timers: header_timeout (a request head must
 * arrive once begun) and backend_timeout (the first byte of the response).  Each request
 * gets one access-log line when its response ends.  Policy lives here; framing lives in
 * proxy_http.c; the connection's life lives in proxy_conn.c.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "config_json.h"
#include "log.h"
#include "proxy_access.h"
#include "proxy_http.h"
#include "proxy_internal.h"
#include "proxy_stats.h"

/*
 * Requests that may wait for their responses at once.  A client that pipelines more is not
 * read from (its request framer is held) until responses drain, so nothing is dropped and
 * what waits is bounded by the client's input high-watermark (PROXY_RELAY_HIGH).
 */
#define EXCHANGE_QUEUE      32
#define EXCHANGE_TARGET_LOG 256

struct exchange_req {
    char method[16];
    char target[EXCHANGE_TARGET_LOG];
    struct timeval start;
    uint64_t req_body;
    char rule[32];     /* "rule 2", "-" */
    bool head;         /* HEAD: the response has no body */
    int status;        /* response status, once its head is seen (1xx not kept) */
    bool up_keep;      /* the request as forwarded lets the connection carry another one */
    bool client_close; /* pool: the client's Connection: close was not forwarded; ferry closes */
    bool last;         /* the client's last: its connection closes once this response is out
                          (HTTP/1.0 without keep-alive, Connection: close, or a body sent bare) */
    bool http10;       /* the client spoke HTTP/1.0: it cannot read a chunked body */
};

/* req_fill() writes "rule " and up to PROXY_HTTP_U64_MAX digits. */
_Static_assert(sizeof(((struct exchange_req *)NULL)->rule) >= 5 + PROXY_HTTP_U64_MAX + 1,
               "exchange_req.rule holds \"rule \" and any rule number");

struct proxy_exchange {
    size_t q_head, q_len;
    /*
     * The request whose head was forwarded last is still sending its body (the back of the
     * queue).  head_mark: how many bytes the destination's output held before that head was
     * written, valid (mark_valid) while nothing can have been flushed since: from on_request
     * until the end of the same pump.
     */
    bool req_in_body;
    bool mark_valid;
    struct evbuffer *mark_buf;
    size_t head_mark;
    /*
     * A request ferry refuses itself (an access rule's 403, a malformed head's 400/431/501/505,
     * a head not finished in time: 408): its access-log line is owed until the answer goes out
     * (proxy_exchange_answered()), or until the connection ends without it (status "-").
     */
    struct exchange_req denied;
    bool denied_owed;
    struct timeval head_start; /* the head being read began (header_timer armed) */
    /* an answer (403, 400...) to send once earlier responses have gone out */
    bool answer_pending;
    int answer_status;
    char answer_body[700];
    /* the queue was full and has room again: the held request framer may go on */
    bool resume_requests;
    /*
     * A request ended persistence (Connection: close, HTTP/1.0 without keep-alive): nothing the
     * client sends after it is a request (RFC 9112 §9.6); it is read and dropped.
     */
    bool no_more;
    /* outbound pool (proxy_pool.c) */
    bool keep;        /* the last final response and its request both allowed keep-alive
                         (true before the first) */
    bool odd;         /* never reuse this peer connection: a 1xx other than 100 was seen, or
                         part of a request, or a response, is still owed on it (ferry answered
                         the request itself, or took back a request after bytes of it left) */
    bool close_after; /* the client's last request was answered: the client is done */
    size_t retry_len; /* the forwarded heads of the requests in flight, which a stale pooled */
    unsigned retry_n; /* connection may resend once (until the first response byte), every
                         one of them retriable, in retry: their length, how many (== q_len
                         while it is valid) */
    proxy_exchange_report_fn report; /* the connection's: verdicts of the timers */
    char why[1536]; /* the reason in plain words of the last refusal, answer or close: the
                       connection copies it for its close line (proxy_exchange_why()) */
    struct proxy_exchange *next_spare; /* in its worker's spare exchanges (exchange_put()) */
    /*
     * From here on, kept when a spare exchange is reused (exchange_get() clears what is above):
     * each queue entry is cleared when queued; the framers, the timers and the retry buffer
     * are made once (the framers again after an exchange ended inside a message).
     */
    struct exchange_req q[EXCHANGE_QUEUE];
    struct proxy_http *req;
    struct proxy_http *resp;
    struct event *header_timer;
    struct event *backend_timer;
    char *retry;
    size_t retry_cap; /* retry's size */
};

/*
 * Ended exchanges a worker keeps for the next ones (exchange_put()): enough for the client
 * connections and lends usually open at once; each holds about 26 KiB with its two framers.
 */
#define EXCHANGE_SPARES 64

/*
 * Headers a client may not send, compared with '_' read as '-': ferry's own identity headers
 * (CONTRACT §6), and the ones other proxies set and some backends trust, which would let a
 * client claim another address, a path or method past the access rules, a certificate or a
 * user name.
 */
static const char *const inbound_drop[] = {
    /* ferry's own (CONTRACT §6) */
    "x-forwarded-*",
    "forwarded",
    "x-auth-couchdb-*",
    "client-cert",
    "client-cert-chain",
    /* client-address and path overrides */
    "x-real-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "x-original-forwarded-for",
    "x-envoy-external-address",
    "client-ip",
    "x-originating-ip",
    "proxy-client-ip",
    "wl-proxy-client-ip",
    "fastly-client-ip",
    "x-proxyuser-ip",
    "x-remote-addr",
    "x-remote-ip",
    "remote-addr",
    "x-original-url",
    "x-rewrite-url",
    /* method overrides: the access rules judge the request's own method */
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-method",
    /* client certificates as other TLS terminators pass them */
    "x-ssl-*",
    "ssl-client-*",
    "x-client-cert*",
    "x-client-verify",
    "x-client-dn",
    "x-client-s-dn",
    "x-client-i-dn",
    "x-tls-client-*",
    "x-arr-clientcert",
    "x-amzn-mtls-*",
    /* user names as authenticating proxies pass them */
    "x-remote-user",
    "remote-user",
    "x-user",
    "x-auth-request-*",
    "x-webauth-*",
    "x-proxy-user",
    "x-authenticated-user",
    "x-goog-authenticated-user-*",
    "x-ms-client-principal*",
};

static struct exchange_req *
q_back(struct proxy_exchange *x)
{
    return &x->q[(x->q_head + x->q_len - 1) % EXCHANGE_QUEUE];
}

static struct exchange_req *
q_front(struct proxy_exchange *x)
{
    return x->q_len > 0 ? &x->q[x->q_head] : NULL;
}

static void
timer_in(struct event *ev, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};

    evtimer_add(ev, &tv);
}

static uint64_t
ms_since(struct proxy_conn *c, const struct timeval *t)
{
    struct timeval now;

    event_base_gettimeofday_cached(c->l->w->base, &now);
    if (now.tv_sec < t->tv_sec || (now.tv_sec == t->tv_sec && now.tv_usec < t->tv_usec)) {
        return 0; /* ${t} read the real clock, ahead of the loop's cached time */
    }
    return (uint64_t)(now.tv_sec - t->tv_sec) * 1000u +
           (uint64_t)((now.tv_usec - t->tv_usec) / 1000);
}

/*
 * proxy_exchange_request_log(c, method, target, status, bytes_in, bytes_out, start, rule):
 * THE event=request line: every request gets exactly one, written here and nowhere else,
 * whether its response was relayed or ferry answered it itself (403, 400, 408, 431, 501, 502,
 * 504, 505).  ${status} 0 means no response at all (the connection ended first): "-" in text,
 * null in JSON.  ${method} and ${target} NULL or "" are logged as "-"; ${start} is when the
 * request began; ${rule} the access rule that let it through or refused it ("rule 2"), or NULL.
 */
void
proxy_exchange_request_log(struct proxy_conn *c, const char *method, const char *target, int status,
                           uint64_t bytes_in, uint64_t bytes_out, const struct timeval *start,
                           const char *rule)
{
    char st[16], in[24], out[24], dur[24];
    uint64_t ms = ms_since(c, start);

    /* Every request line is one observation of ferry_request_duration_seconds. */
    proxy_stats_request(c->l->stats, c->l->w->base, start, status);
    if (!log_enabled(LOG_INFO)) {
        return;
    }
    if (status > 0) {
        snprintf(st, sizeof(st), "%d", status);
    } else {
        snprintf(st, sizeof(st), "-");
    }
    snprintf(in, sizeof(in), "%llu", (unsigned long long)bytes_in);
    snprintf(out, sizeof(out), "%llu", (unsigned long long)bytes_out);
    snprintf(dur, sizeof(dur), "%llu", (unsigned long long)ms);
    log_kv(LOG_INFO, "request", "listener", c->l->cfg->name, "remote", c->remote, "peer",
           c->verify.peer.name, "method", method != NULL && method[0] != '\0' ? method : "-",
           "path", target != NULL && target[0] != '\0' ? target : "-", "status", st, "bytes_in", in,
           "bytes_out", out, "duration_ms", dur, "rule",
           rule != NULL && rule[0] != '\0' ? rule : "-", "subject",
           strcmp(c->verify.peer.name, "-") == 0 ? c->verify.peer.subject : NULL,
           (const char *)NULL);
}

/* The access-log line of a queued request (proxy_exchange_request_log()). */
static void
access_log(struct proxy_conn *c, const struct exchange_req *r, int status, uint64_t resp_body)
{
    proxy_exchange_request_log(c, r->method, r->target, status, r->req_body, resp_body, &r->start,
                               r->rule);
}

/*
 * proxy_exchange_request_line_parse(buf, n, method, mlen, target, tlen):
 * The method and target of the HTTP request line at the start of ${buf} (${n} bytes, not
 * NUL-terminated), for the access-log line of a request ferry answers before framing it.
 * Returns true once the line is there (it ends in LF within ${buf}, or ${buf} holds
 * PROXY_REQUEST_LINE_PEEK bytes or more): then ${method} and ${target} are set, "" where the
 * line is not "TOKEN SP TARGET".  Returns false (both "") while the line is still incomplete.
 */
bool
proxy_exchange_request_line_parse(const char *buf, size_t n, char *method, size_t mlen,
                                  char *target, size_t tlen)
{
    size_t i = 0, k;

    method[0] = '\0';
    target[0] = '\0';
    if (buf == NULL || (memchr(buf, '\n', n) == NULL && n < PROXY_REQUEST_LINE_PEEK)) {
        return false;
    }
    /* RFC 9112 §3: method = token (letters, digits, !#$%&'*+-.^_`|~), SP, request-target. */
    while (i < n && buf[i] != ' ' && buf[i] != '\n' && buf[i] != '\r') {
        if (strchr("!#$%&'*+-.^_`|~", buf[i]) == NULL &&
            !((buf[i] >= '0' && buf[i] <= '9') || (buf[i] >= 'A' && buf[i] <= 'Z') ||
              (buf[i] >= 'a' && buf[i] <= 'z'))) {
            return true;
        }
        i++;
    }
    if (i == 0 || i >= mlen || i >= n || buf[i] != ' ') {
        return true;
    }
    /* The target as sent, control bytes included: the log line escapes them. */
    for (k = i + 1; k < n && buf[k] != ' ' && buf[k] != '\r' && buf[k] != '\n'; k++) {
    }
    if (k == i + 1) {
        return true;
    }
    memcpy(method, buf, i);
    method[i] = '\0';
    k = k - (i + 1) < tlen - 1 ? k - (i + 1) : tlen - 1;
    memcpy(target, buf + i + 1, k);
    target[k] = '\0';
    return true;
}

/*
 * proxy_exchange_answered(c, status, body_len):
 * ferry is sending its own answer ${status} to ${c}'s client (proxy_conn_answer()): write the
 * access-log line of the request it answers.  That is the oldest request still waiting for
 * its response (502 or 504 from the backend or peer side), else the request ferry refused
 * (403, 400, 408...).  Returns false when there is neither (before any request was framed):
 * the connection logs the one in the client's input itself.
 */
bool
proxy_exchange_answered(struct proxy_conn *c, int status, uint64_t body_len)
{
    struct proxy_exchange *x = c->x;

    if (x != NULL && x->q_len > 0) {
        access_log(c, q_front(x), status, body_len);
        x->q_head = (x->q_head + 1) % EXCHANGE_QUEUE;
        x->q_len--;
        x->odd = true; /* its response may still come on that connection: never pool it */
        return true;
    }
    if (x != NULL && x->denied_owed) {
        x->denied_owed = false;
        access_log(c, &x->denied, status, body_len);
        return true;
    }
    return false;
}

/*
 * A CouchDB-style JSON error body: {"error":"...","reason":"..."}.  The escaped reason gets
 * what ${len} leaves after the rest, so that the body stays whole JSON: a long reason ends in
 * "..." (config_json_escape()), the body is never cut.
 */
static void
json_error(char *body, size_t len, const char *error, const char *reason)
{
    static const char frame[] = "{\"error\":\"\",\"reason\":\"\"}\n";
    size_t used = sizeof(frame) - 1 + strlen(error);
    struct config_json_buf b;
    struct config_json j;

    config_json_buf_init(&b, body, len);
    config_json_init(&j, config_json_buf_put, &b);
    config_json_begin_object(&j);
    config_json_kv_string(&j, "error", error);
    config_json_key(&j, "reason");
    /* The room ${len} leaves (less its NUL), at most 511 escaped bytes as before. */
    config_json_string_max(&j, reason,
                           used < len - 1 && len - 1 - used < 512 ? len - 1 - used : 511);
    config_json_end_object(&j);
    config_json_buf_put(&b, "\n", 1);
    if (b.truncated) {
        /* Only an ${error} longer than ${len}: a programming error, answered without it. */
        (void)snprintf(body, len, "{}\n");
    }
}

/* Our own answers: status, reason phrase, CouchDB-style "error" value. */
static const struct {
    int status;
    const char *phrase;
    const char *error;
} answers[] = {
    {400, "Bad Request", "bad_request"},
    {403, "Forbidden", "forbidden"},
    {408, "Request Timeout", "request_timeout"},
    {431, "Request Header Fields Too Large", "header_too_large"},
    {501, "Not Implemented", "not_implemented"},
    {502, "Bad Gateway", "bad_gateway"},
    {504, "Gateway Timeout", "gateway_timeout"},
    {505, "HTTP Version Not Supported", "http_version_not_supported"},
};

static size_t
answer_index(int status)
{
    for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
        if (answers[i].status == status) {
            return i;
        }
    }
    return 0; /* 400 */
}

static const char *
status_phrase(int status)
{
    return answers[answer_index(status)].phrase;
}

static const char *
status_error(int status)
{
    return answers[answer_index(status)].error;
}

/*
 * proxy_exchange_can_answer(c):
 * Can ferry still answer the client itself: a request waits for its response and no byte of
 * that response has been relayed (the response stream is between messages)?  Before the
 * relay (no exchange yet): nothing was relayed at all.
 */
bool
proxy_exchange_can_answer(const struct proxy_conn *c)
{
    const struct exchange_req *r;

    if (c->x == NULL) {
        return c->down.bytes == 0;
    }
    /* Not once the front response's head went out (its status is known): a defect later in
     * its body ends the connection; an answer of ours would land inside that body. */
    r = q_front(c->x);
    return r != NULL && r->status == 0 && !proxy_http_in_message(c->x->resp);
}

/*
 * proxy_exchange_unasked(c):
 * Does no request wait for a response (protocol http), so that whatever the other side sends
 * now is something nobody asked for?
 */
bool
proxy_exchange_unasked(const struct proxy_conn *c)
{
    return c->x != NULL && c->x->q_len == 0;
}

/*
 * proxy_exchange_server_closing(c):
 * Did the last final response (or its request) end keep-alive?  Then the other side closes
 * next, and requests the client pipelined behind it are not ours to answer with 502: the
 * client sees the close and, as HTTP says, sends them again.
 */
bool
proxy_exchange_server_closing(const struct proxy_conn *c)
{
    return c->x != NULL && !c->x->keep;
}

/*
 * proxy_exchange_idle(c):
 * Is ${c} between requests: nothing queued, no request or response half-way (or, lending, no
 * exchange and no peer connection at all)?  Such a keep-alive connection may be closed at once
 * when ferry drains.
 */
bool
proxy_exchange_idle(const struct proxy_conn *c)
{
    const struct proxy_exchange *x = c->x;

    if (x == NULL) {
        /* Lending: a client between requests holds neither an exchange nor a peer connection. */
        return proxy_pool_enabled(c->l) && c->server == NULL;
    }
    return x->q_len == 0 && !proxy_http_in_message(x->req) && !proxy_http_in_head(x->req) &&
           !proxy_http_in_message(x->resp);
}

/* A verdict of ${kind} with ${reason}. */
static struct proxy_verdict
verdict(enum proxy_verdict_kind kind, enum proxy_close_reason reason)
{
    struct proxy_verdict v = {kind, reason};

    return v;
}

/* ferry's answer ${status}: 502 and 504 end the connection as the server side's failure. */
static struct proxy_verdict
verdict_answer(enum proxy_verdict_kind kind, int status)
{
    return verdict(kind, status == 502 || status == 504 ? PROXY_CLOSE_SERVER_ERROR
                                                        : PROXY_CLOSE_CLIENT_ERROR);
}

/*
 * proxy_exchange_answer(c, status, phrase):
 * The answer of ferry's own that the last ANSWER verdict asks for: its body (JSON), and in
 * *${status} and *${phrase} its status and reason phrase.
 */
const char *
proxy_exchange_answer(const struct proxy_conn *c, int *status, const char **phrase)
{
    *status = c->x->answer_status;
    *phrase = status_phrase(c->x->answer_status);
    return c->x->answer_body;
}

/*
 * proxy_exchange_why(c):
 * The reason in plain words of ${c}'s last refusal, answer or close ("" when none).
 */
const char *
proxy_exchange_why(const struct proxy_conn *c)
{
    return c->x != NULL ? c->x->why : "";
}

/*
 * Answer ${status} with ${body} now when the response stream is between messages (ANSWER),
 * else once the responses already owed to the client have gone out (ANSWER_LATER: nothing
 * more is read from the client, its request parser has stopped).
 */
static struct proxy_verdict
answer_when_idle(struct proxy_conn *c, int status, const char *body)
{
    struct proxy_exchange *x = c->x;

    x->answer_status = status;
    if (body != x->answer_body) {
        /* (A 403 is built in answer_body already: copying it onto itself would be undefined.) */
        snprintf(x->answer_body, sizeof(x->answer_body), "%s", body);
    }
    if (x->q_len == 0 && !proxy_http_in_message(x->resp)) {
        return verdict_answer(PROXY_VERDICT_ANSWER, status);
    }
    x->answer_pending = true;
    return verdict_answer(PROXY_VERDICT_ANSWER_LATER, status);
}

/*
 * The request whose head ferry refuses (malformed, or not finished in time): what the framer
 * read of its request line, for its access-log line with the answer.  ${start}: when its
 * head began.
 */
static void
denied_from_framer(struct proxy_conn *c, const struct timeval *start)
{
    struct proxy_exchange *x = c->x;

    memset(&x->denied, 0, sizeof(x->denied));
    proxy_http_request_line(x->req, x->denied.method, sizeof(x->denied.method), x->denied.target,
                            sizeof(x->denied.target));
    if (x->denied.target[0] == '\0' && c->client != NULL) {
        /* Refused by the pre-scan before http-parser read the line: it is still in the input. */
        char buf[PROXY_REQUEST_LINE_PEEK];
        ev_ssize_t n = evbuffer_copyout(proxy_io_input(c->client), buf, sizeof(buf));

        (void)proxy_exchange_request_line_parse(buf, n > 0 ? (size_t)n : 0, x->denied.method,
                                                sizeof(x->denied.method), x->denied.target,
                                                sizeof(x->denied.target));
    }
    x->denied.start = *start;
    if (start->tv_sec == 0) {
        event_base_gettimeofday_cached(c->l->w->base, &x->denied.start);
    }
    x->denied_owed = true;
}

/* ---- timers ---- */

static void
header_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_conn *c = arg;
    char body[256];

    (void)fd;
    (void)what;
    denied_from_framer(c, &c->x->head_start);
    snprintf(c->x->why, sizeof(c->x->why), "request head not complete within %llums",
             (unsigned long long)c->l->limits->header_timeout_ms);
    json_error(body, sizeof(body), "request_timeout", c->x->why);
    c->x->report(c, answer_when_idle(c, 408, body));
}

static void
backend_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_conn *c = arg;
    struct proxy_exchange *x = c->x;

    (void)fd;
    (void)what;
    if (x->q_len == 0) {
        return; /* nothing is waiting for an answer */
    }
    snprintf(x->why, sizeof(x->why), "%s %s sent no response within %llums",
             c->l->cfg->mode == CONFIG_MODE_INBOUND ? "backend" : "peer", c->l->target_text,
             (unsigned long long)c->l->limits->backend_timeout_ms);
    log_kv(LOG_WARN, "backend_timeout", "listener", c->l->cfg->name, "remote", c->remote, "target",
           c->l->target_text, "msg", x->why, (const char *)NULL);
    if (!proxy_exchange_can_answer(c)) {
        x->report(c, verdict(PROXY_VERDICT_CLOSE, PROXY_CLOSE_SERVER_ERROR));
        return;
    }
    /* The 504 is the answer to the oldest request (proxy_exchange_answered() logs it). */
    json_error(x->answer_body, sizeof(x->answer_body), "gateway_timeout", x->why);
    x->answer_status = 504;
    x->report(c, verdict_answer(PROXY_VERDICT_ANSWER, 504));
}

/*
 * Wait for the first byte of the oldest unanswered response, once that request has gone out
 * whole: backend_timeout does not run while a client is still sending its body (an upload
 * slower than backend_timeout is not the backend's delay).  Only the last request queued can
 * still be sending.
 */
static void
backend_timer_arm(struct proxy_conn *c)
{
    const struct proxy_exchange *x = c->x;

    if ((x->q_len > 1 || (x->q_len == 1 && !x->req_in_body)) &&
        !evtimer_pending(x->backend_timer, NULL)) {
        timer_in(c->x->backend_timer, c->l->limits->backend_timeout_ms);
    }
}

/* Forget the kept heads: nothing will be resent. */
static void
retry_forget(struct proxy_exchange *x)
{
    x->retry_len = 0;
    x->retry_n = 0;
}

/*
 * proxy_exchange_response_bytes(c):
 * Bytes of a response arrived: the backend answered in time.
 */
void
proxy_exchange_response_bytes(struct proxy_conn *c)
{
    if (c->x != NULL) {
        evtimer_del(c->x->backend_timer);
        retry_forget(c->x); /* the peer answered: never resent from here on */
    }
}

/* ---- the outbound pool ---- */

/* A request that may be sent again when its connection fails before answering (RFC 9110 §9.2.2
 * idempotent, and no body to replay). */
static bool
retriable(const struct proxy_http_head *h)
{
    return !h->has_body && (strcmp(h->method, "GET") == 0 || strcmp(h->method, "HEAD") == 0 ||
                            strcmp(h->method, "OPTIONS") == 0);
}

/*
 * Keep the head just forwarded (in ${out} from x->head_mark on) behind those of the requests
 * in flight before it, while every one of them may be retried; else keep none.  Pool on: a
 * head is framed before the peer connection it goes on is lent (that may be a pooled one),
 * so it is kept for any; requests pipelined in one read go out together and are resent
 * together (RFC 9112 §9.3.2).
 */
static void
retry_keep(struct proxy_conn *c, const struct proxy_http_head *h, struct evbuffer *out)
{
    struct proxy_exchange *x = c->x;
    size_t n = evbuffer_get_length(out) - x->head_mark;
    struct evbuffer_ptr at;

    if (x->q_len == 1) {
        retry_forget(x); /* nothing else in flight: start over */
    }
    if (!proxy_pool_enabled(c->l) || !retriable(h) || x->retry_n != x->q_len - 1 ||
        x->retry_len + n > PROXY_HTTP_MAX_HEAD) {
        /* (Kept heads together are bounded like one head: 64 KiB, not 32 of them.) */
        retry_forget(x);
        return;
    }
    if (x->retry_len + n > x->retry_cap) {
        char *p = realloc(x->retry, x->retry_len + n);

        if (p == NULL) {
            retry_forget(x);
            return;
        }
        x->retry = p;
        x->retry_cap = x->retry_len + n;
    }
    if (evbuffer_ptr_set(out, &at, x->head_mark, EVBUFFER_PTR_SET) == 0 &&
        evbuffer_copyout_from(out, &at, x->retry + x->retry_len, n) == (ev_ssize_t)n) {
        x->retry_len += n;
        x->retry_n++;
    } else {
        retry_forget(x);
    }
}

/* Bytes of requests the client pipelined that wait, unread by the held framer. */
static size_t
requests_waiting(const struct proxy_conn *c)
{
    return c->client != NULL ? evbuffer_get_length(proxy_io_input(c->client)) : 0;
}

/*
 * proxy_exchange_requests_idle(c):
 * Is ${c}'s request stream between messages (every request forwarded whole, none half-way)
 * with no answer of ferry's own pending?
 */
bool
proxy_exchange_requests_idle(const struct proxy_conn *c)
{
    const struct proxy_exchange *x = c->x;

    return x != NULL && !x->req_in_body && !x->answer_pending && proxy_http_idle(x->req) &&
           requests_waiting(c) == 0;
}

/* Between exchanges: nothing queued, no request body going out, no answer owed, no response
 * half read. */
static bool
exchange_between(const struct proxy_exchange *x)
{
    return x->q_len == 0 && !x->req_in_body && !x->answer_pending && proxy_http_idle(x->resp);
}

/*
 * proxy_exchange_reusable(c):
 * Can ${c}'s peer connection carry another request: the last response was read to its end,
 * it and its request allowed keep-alive, nothing is in flight or half-way either way?  The
 * client's side may be anywhere: a head ferry refuses or has not finished (400, 403, 408...)
 * never reaches the peer (heads go whole, after the checks), and a request refused in its
 * body after bytes of it left marks the connection (odd).
 */
bool
proxy_exchange_reusable(const struct proxy_conn *c)
{
    const struct proxy_exchange *x = c->x;

    return x != NULL && x->keep && !x->odd && exchange_between(x);
}

/*
 * proxy_exchange_can_retry(c):
 * ${c}'s pooled peer connection failed: may ${c} go on with a new connection?  Yes when its one
 * request may go once more (idempotent, no body, its head kept, no byte of the response seen),
 * or when nothing at all has been sent either way on it yet.
 */
bool
proxy_exchange_can_retry(const struct proxy_conn *c)
{
    const struct proxy_exchange *x = c->x;

    if (x == NULL || c->server_from != PROXY_ORIGIN_POOLED || x->req_in_body ||
        !proxy_http_idle(x->req) || !proxy_http_idle(x->resp)) {
        return false;
    }
    if (x->q_len == 0) {
        return c->up.bytes == c->lent_up && c->down.bytes == c->lent_down;
    }
    return x->retry_n == x->q_len && x->retry_len > 0;
}

/*
 * proxy_exchange_retry_heads(c, len):
 * ${c} goes on with a new peer connection after a stale pooled one failed
 * (proxy_exchange_can_retry()): the request heads to send on it again, *${len} bytes (NULL
 * when none).  They are forgotten: each is resent once.
 */
const char *
proxy_exchange_retry_heads(struct proxy_conn *c, size_t *len)
{
    struct proxy_exchange *x = c->x;

    *len = x->retry_len;
    if (x->retry_len == 0) {
        return NULL;
    }
    retry_forget(x);
    return x->retry;
}

/* ---- requests ---- */

/* ${src}, cut to ${len} - 1 bytes, NUL-terminated at ${dst} (no printf per request). */
static void
text_copy(char *dst, size_t len, const char *src)
{
    size_t n = strnlen(src, len - 1);

    memcpy(dst, src, n);
    dst[n] = '\0';
}

/*
 * What the access-log line of request ${h} needs, into ${r}: its method, target (cut), when
 * it began, and ${rule}, the access rule that let it through or refused it ("rule 2"), or
 * "-" (NULL).
 */
static void
req_fill(struct proxy_conn *c, const struct proxy_http_head *h,
         const struct config_access_rule *rule, struct exchange_req *r)
{
    memset(r, 0, sizeof(*r));
    text_copy(r->method, sizeof(r->method), h->method);
    text_copy(r->target, sizeof(r->target), h->target);
    event_base_gettimeofday_cached(c->l->w->base, &r->start);
    if (rule != NULL) {
        memcpy(r->rule, "rule ", 5);
        r->rule[5 + proxy_http_u64(r->rule + 5, (uint64_t)(rule - c->l->cfg->access) + 1)] = '\0';
    } else {
        memcpy(r->rule, "-", 2);
    }
}

/* The rule id and words of a refusal, for the access-log line of a refused request. */
static void
deny_record(struct proxy_conn *c, const struct proxy_http_head *h,
            const struct config_access_rule *rule)
{
    struct proxy_exchange *x = c->x;

    req_fill(c, h, rule, &x->denied);
    x->denied_owed = true;
}

/*
 * CONTRACT §7: may this peer make this request?  On refusal logs access_denied, prepares the
 * 403 and returns false.
 */
static bool
request_allowed(struct proxy_conn *c, const struct proxy_http_head *h,
                const struct config_access_rule **rule)
{
    struct proxy_exchange *x = c->x;
    const struct config_listener *cl = c->l->cfg;
    char why[512], reason[600];

    *rule = NULL;
    if (cl->mode != CONFIG_MODE_INBOUND || cl->access == NULL ||
        proxy_access_check(cl->access, cl->n_access, &c->id->names, h->method, h->target, why,
                           sizeof(why), rule) == 0) {
        return true;
    }
    snprintf(reason, sizeof(reason), "peer %s may not %s %s", c->verify.peer.name, h->method,
             h->target);
    log_kv(LOG_WARN, "access_denied", "listener", cl->name, "remote", c->remote, "peer",
           c->verify.peer.name, "method", h->method, "path", h->target, "rule", why, "msg", reason,
           (const char *)NULL);
    snprintf(x->why, sizeof(x->why), "%s", reason);
    deny_record(c, h, *rule);
    json_error(x->answer_body, sizeof(x->answer_body), "forbidden", reason);
    x->answer_status = 403;
    return false;
}

/*
 * No dot segment, plain or hidden behind an encoded '/' or '\' in one segment: backends that
 * normalise paths (nginx, most HTTP stores) would read "/db/doc/..%2f..%2f_all_dbs" as
 * "/_all_dbs", outside every rule.  On refusal logs bad_request, prepares the 400 and returns
 * false.
 */
static bool
request_path_clean(struct proxy_conn *c, const struct proxy_http_head *h)
{
    struct proxy_exchange *x = c->x;
    char why[256];

    if (proxy_access_path_hygiene(h->target, why, sizeof(why)) == 0) {
        return true;
    }
    log_kv(LOG_WARN, "bad_request", "listener", c->l->cfg->name, "remote", c->remote, "peer",
           c->verify.peer.name, "status", "400", "rule", "path", "method", h->method, "path",
           h->target, "msg", why, (const char *)NULL);
    snprintf(c->x->why, sizeof(c->x->why), "refused a malformed request: %s", why);
    deny_record(c, h, NULL);
    json_error(x->answer_body, sizeof(x->answer_body), "bad_request", why);
    x->answer_status = 400;
    return false;
}

/*
 * Write the request head as it goes to the backend (inbound: the client's identity headers
 * out, ferry's in) or to the peer (outbound).  Returns 0, or -1 on OOM.
 */
static int
request_write(struct proxy_conn *c, const struct proxy_http_head *h, struct exchange_req *r,
              struct evbuffer *out)
{
    const struct proxy_identity *id = c->id;
    const struct config_listener *cl = c->l->cfg;
    struct proxy_http_add add[8];
    struct proxy_http_rewrite rw = {.conn = PROXY_HTTP_CONN_KEEP};

    if (proxy_pool_enabled(c->l) && h->http_minor >= 1 && h->conn_close) {
        /* Pool: the peer or backend connection outlives this client; ferry closes the client
         * itself. */
        r->client_close = true;
        rw.conn = PROXY_HTTP_CONN_NONE;
    }
    if (cl->mode == CONFIG_MODE_INBOUND) {
        size_t n_add = 0;

        /* CONTRACT §6: whatever the client sent of these is dropped, ours are added. */
        add[n_add++] = (struct proxy_http_add){"X-Forwarded-For", id->xff};
        add[n_add++] = (struct proxy_http_add){"X-Forwarded-Proto", "https"};
        if (cl->client_cert_header == CONFIG_CLIENT_CERT_HEADER_XFCC) {
            add[n_add++] = (struct proxy_http_add){"X-Forwarded-Client-Cert", id->client_cert};
        } else if (cl->client_cert_header == CONFIG_CLIENT_CERT_HEADER_RFC9440) {
            add[n_add++] = (struct proxy_http_add){"Client-Cert", id->client_cert};
            add[n_add++] = (struct proxy_http_add){"Client-Cert-Chain", id->client_cert_chain};
        }
        if (cl->proxy_auth.enabled && id->auth_user != NULL) {
            /* All three or none: a peer without an identity gets no Roles either. */
            add[n_add++] = (struct proxy_http_add){"X-Auth-CouchDB-UserName", id->auth_user};
            add[n_add++] = (struct proxy_http_add){"X-Auth-CouchDB-Roles", c->l->auth_roles};
            add[n_add++] = (struct proxy_http_add){"X-Auth-CouchDB-Token", id->auth_token};
        }
        rw.drop = inbound_drop;
        rw.n_drop = sizeof(inbound_drop) / sizeof(inbound_drop[0]);
        rw.add = add;
        rw.n_add = n_add;
        return proxy_http_write_head(h, &rw, out);
    }
    rw.host = cl->host_header == CONFIG_HOST_HEADER_PEER ? c->l->target_text : NULL;
    return proxy_http_write_head(h, &rw, out);
}

static enum proxy_http_verdict
on_request(void *arg, const struct proxy_http_head *h, struct evbuffer *out, bool *skip_body)
{
    struct proxy_conn *c = arg;
    struct proxy_exchange *x = c->x;
    const struct config_listener *cl = c->l->cfg;
    const struct config_access_rule *rule = NULL;
    struct exchange_req *r;

    (void)skip_body;
    evtimer_del(x->header_timer);
    /* Not reached: the framer is held while the queue is full (below). */
    if (x->q_len == EXCHANGE_QUEUE) {
        snprintf(x->why, sizeof(x->why), "more than %d pipelined requests", EXCHANGE_QUEUE);
        return PROXY_HTTP_REFUSE;
    }
    if (!request_path_clean(c, h) || !request_allowed(c, h, &rule)) {
        return PROXY_HTTP_REFUSE;
    }

    /* Queue it for its response and the access log. */
    r = &x->q[(x->q_head + x->q_len) % EXCHANGE_QUEUE];
    x->q_len++;
    req_fill(c, h, rule, r);
    r->head = strcmp(h->method, "HEAD") == 0;
    if (!h->keep_alive) {
        /* The last request of this connection: what follows it is dropped. */
        x->no_more = true;
        proxy_http_hold(x->req, true);
    } else if (x->q_len == EXCHANGE_QUEUE) {
        /* Full: read no further request until a response has gone out (on_response_done). */
        proxy_http_hold(x->req, true);
    }

    x->mark_buf = out;
    x->head_mark = evbuffer_get_length(out);
    x->mark_valid = true;
    x->req_in_body = true;
    if (request_write(c, h, r, out) < 0) {
        snprintf(x->why, sizeof(x->why), "out of memory");
        return PROXY_HTTP_REFUSE;
    }
    r->up_keep = r->client_close || h->keep_alive;
    r->last = !h->keep_alive;
    r->http10 = h->http_minor == 0;
    if (cl->mode == CONFIG_MODE_OUTBOUND) {
        retry_keep(c, h, out);
    }
    backend_timer_arm(c);
    return PROXY_HTTP_FORWARD;
}

static void
on_request_done(void *arg, enum proxy_http_kind kind, uint64_t body)
{
    struct proxy_conn *c = arg;

    (void)kind;
    c->x->req_in_body = false;
    if (c->x->q_len > 0) {
        q_back(c->x)->req_body = body;
    }
    backend_timer_arm(c); /* the request has gone out whole */
}

/*
 * A request was refused in the middle of its body (a bad chunk line...) after its head was
 * forwarded.  Take it back: when its head is still in the destination's output (it arrived in
 * the same read), remove those bytes so that nothing of it reaches the other side; either
 * way it leaves the queue, with its access-log line, and gets ferry's own answer.  What did
 * leave is a prefix of a body ferry framed itself: the other side reads an unfinished request
 * and then the end of the connection.
 */
static void
take_back_request(struct proxy_conn *c)
{
    struct proxy_exchange *x = c->x;

    x->req_in_body = false;
    if (x->q_len == 0) {
        return;
    }
    if (x->mark_valid && evbuffer_get_length(x->mark_buf) >= x->head_mark) {
        struct evbuffer *keep = evbuffer_new();

        if (keep != NULL) {
            evbuffer_remove_buffer(x->mark_buf, keep, x->head_mark);
            evbuffer_drain(x->mark_buf, evbuffer_get_length(x->mark_buf));
            evbuffer_add_buffer(x->mark_buf, keep);
            evbuffer_free(keep);
        }
    }
    if (!x->mark_valid || evbuffer_get_length(x->mark_buf) != x->head_mark) {
        /* Part of it left (or stays: out of memory, an output libevent keeps frozen at its
         * start): that connection must never carry another request. */
        x->odd = true;
    }
    /* Its access-log line goes with ferry's answer, as for a head refused whole. */
    x->denied = *q_back(x);
    x->denied_owed = true;
    x->q_len--;
    if (x->q_len == 0) {
        evtimer_del(x->backend_timer);
    }
}

/*
 * proxy_exchange_request_failed(c, res):
 * The request framer refused a request (res BAD: malformed; STOPPED: on_request refused it).
 * The verdict: answer the client (400/403/431/501/505) now (ANSWER) or once earlier responses
 * are out (ANSWER_LATER), else close (CLOSE: out of memory).
 */
struct proxy_verdict
proxy_exchange_request_failed(struct proxy_conn *c, enum proxy_http_result res)
{
    struct proxy_exchange *x = c->x;
    char body[700], st[8];
    const char *rule;
    int status = 400;

    evtimer_del(x->header_timer);
    if (res == PROXY_HTTP_BAD) {
        const char *why = proxy_http_error(x->req, &status, &rule);

        snprintf(st, sizeof(st), "%d", status);
        snprintf(x->why, sizeof(x->why), "refused a malformed request: %s", why);
        log_kv(LOG_WARN, "bad_request", "listener", c->l->cfg->name, "remote", c->remote, "peer",
               c->verify.peer.name, "status", st, "rule", rule, "msg", why, (const char *)NULL);
        json_error(body, sizeof(body), status_error(status), why);
        if (x->req_in_body) {
            take_back_request(c);
        } else {
            /* A refused head: its line is written with the answer (proxy_exchange_answered). */
            denied_from_framer(c, &x->head_start);
        }
        x->mark_valid = false;
        return answer_when_idle(c, status, body);
    }
    if (x->answer_status != 0) {
        return answer_when_idle(c, x->answer_status, x->answer_body);
    }
    /* Refused for another reason (out of memory): just close. */
    return verdict(PROXY_VERDICT_CLOSE, PROXY_CLOSE_CLIENT_ERROR);
}

/* ---- responses ---- */

static enum proxy_http_verdict
on_response(void *arg, const struct proxy_http_head *h, struct evbuffer *out, bool *skip_body)
{
    struct proxy_conn *c = arg;
    struct exchange_req *r = q_front(c->x);
    struct proxy_http_rewrite rw = {.conn = PROXY_HTTP_CONN_KEEP};
    bool keep;

    if (r == NULL) {
        snprintf(c->x->why, sizeof(c->x->why), "%s sent a response nobody asked for",
                 c->l->target_text);
        return PROXY_HTTP_REFUSE;
    }
    *skip_body = r->head || h->status == 204 || h->status == 304;
    /* A reply to HEAD has no body whatever its head declares, so no EOF to wait for. */
    keep = h->keep_alive ||
           (*skip_body && h->framing == PROXY_HTTP_FRAMING_EOF &&
            (h->http_minor >= 1 ? !h->conn_close : h->conn_keep_alive && !h->conn_close));
    if (h->status >= 200) {
        r->status = h->status;
        c->x->keep = keep && r->up_keep;
        if (!keep) {
            /* The other side ends persistence: the client is told so (Connection: close,
             * below), and ferry, its server, closes it after this response (RFC 9112 §9.6),
             * instead of sending its next request on a connection the other side is done with
             * (the fifth black-box attack: a backend that said close and kept the socket open
             * got that client's next request). */
            r->last = true;
        }
    } else if (h->status != 100) {
        c->x->odd = true; /* 102, 103...: framing ferry does not reuse connections after */
    }
    if (h->status < 200 && r->http10) {
        /* No interim response to an HTTP/1.0 client (RFC 9110 §15.2): it would read the first
         * one as its answer.  The final one follows. */
        return PROXY_HTTP_FORWARD;
    }
    if (h->status >= 200 && r->http10 && h->framing == PROXY_HTTP_FRAMING_CHUNKED && !*skip_body) {
        /*
         * An HTTP/1.0 client cannot read chunked (RFC 9112 §6.1): the body goes to it bare and
         * ends with the connection, which ferry closes after it.
         */
        proxy_http_plain_body(c->x->resp);
        rw.plain_body = true;
        r->last = true;
    }
    if (h->status >= 200 && (r->last || !keep || !r->up_keep)) {
        /*
         * The client's request ended persistence (ferry closes it after this response, pool
         * or not), the body runs to the end of the connection, or goes bare: say so, whatever
         * the other side said.
         */
        rw.conn = PROXY_HTTP_CONN_CLOSE;
    } else if (h->status >= 200 && r->http10) {
        /* An HTTP/1.0 client keeps the connection only when the response says so. */
        rw.conn = PROXY_HTTP_CONN_KEEP_ALIVE;
    }
    return proxy_http_write_head(h, &rw, out) < 0 ? PROXY_HTTP_REFUSE : PROXY_HTTP_FORWARD;
}

static void
on_response_done(void *arg, enum proxy_http_kind kind, uint64_t body)
{
    struct proxy_conn *c = arg;
    struct proxy_exchange *x = c->x;
    struct exchange_req *r = q_front(x);

    (void)kind;
    if (r == NULL || r->status == 0) {
        /* An interim 1xx response: the final one is still to come. */
        return;
    }
    access_log(c, r, r->status, body);
    if (r->status >= 100 && r->status < 600) {
        PROXY_STATS_ADD(c->l->stats->requests[r->status / 100], 1);
    }
    if (r->last) {
        /* The client is done: nothing more goes to it (bytes the other side sends after this
         * response stay unread), and the verdict is CLIENT_LAST (proxy_exchange_decide()). */
        x->close_after = true;
        proxy_http_hold(x->resp, true);
    }
    if (x->q_len == EXCHANGE_QUEUE && !x->no_more) {
        /* Room again: the caller pumps the held requests once this response is framed. */
        proxy_http_hold(x->req, false);
        x->resume_requests = true;
    }
    x->q_head = (x->q_head + 1) % EXCHANGE_QUEUE;
    x->q_len--;
    if (x->close_after && x->q_len > 0) {
        /*
         * A body went bare to an HTTP/1.0 keep-alive client with requests pipelined behind it:
         * they get no response (the client sees the close and sends them again); their
         * responses, still owed on the other side, keep that connection from any reuse.
         */
        while (x->q_len > 0) {
            access_log(c, q_front(x), 0, 0);
            x->q_head = (x->q_head + 1) % EXCHANGE_QUEUE;
            x->q_len--;
        }
        x->odd = true;
        x->no_more = true;
        proxy_http_hold(x->req, true);
    }
    if (x->q_len == 0) {
        /* An earlier response of the same read may have armed it for this one. */
        evtimer_del(x->backend_timer);
    }
    backend_timer_arm(c);
    if (x->answer_pending && x->q_len == 0) {
        /* The responses owed before ferry's answer are out: it is the next verdict
         * (proxy_exchange_next(), once the pump is over), and nothing after it is framed. */
        proxy_http_hold(x->resp, true);
    }
}

/*
 * proxy_exchange_decide(f):
 * The verdict after an event, from the exchange's state ${f} alone (pure):
 *   ANSWER       an answer of ferry's was pending and nothing is owed before it any more;
 *   RESUME_UP    a response made room in a full queue: the client's waiting requests go on;
 *   CLIENT_LAST  the client is done with nothing in flight: its last request (HTTP/1.0
 *                without keep-alive, Connection: close) answered, or, pool on, it closed its
 *                side; the other side is let go and the client's connection ends after the
 *                response, whatever the backend or peer does with its own.  Also when the
 *                other side broke the exchange after a whole response: it sent bytes nobody
 *                asked for (past a Content-Length, a body after a reply to HEAD, 204 or 304),
 *                which would otherwise start the next client's response, or it answered a
 *                request whose body is still coming, which it would then read as requests
 *                (nginx and HAProxy close that upstream connection too);
 *   LEND_END     pool on: every request forwarded on the lent peer connection has its
 *                response read to its end, both allowed keep-alive, nothing is half-way either
 *                way (not even the next request's head) or waits in the client's input, and
 *                the client may send more;
 *   CONTINUE     otherwise.
 */
struct proxy_verdict
proxy_exchange_decide(const struct proxy_exchange_facts *f)
{
    bool between = f->q_len == 0 && !f->req_in_body && !f->answer_pending && f->resp_idle;

    if (f->answer_pending && f->q_len == 0 && !f->resp_in_message) {
        return verdict(PROXY_VERDICT_ANSWER, PROXY_CLOSE_CLIENT_ERROR);
    }
    if (f->q_len == 0 && (f->resp_unsolicited || f->req_in_body)) {
        return verdict(PROXY_VERDICT_CLIENT_LAST, PROXY_CLOSE_SERVER_ERROR);
    }
    if (f->resume_requests) {
        return verdict(PROXY_VERDICT_RESUME_UP, PROXY_CLOSE_DONE);
    }
    if ((f->close_after || (f->pool && f->client_eof)) && f->q_len == 0 && !f->answer_pending &&
        !f->resp_in_message && !f->requests_waiting) {
        return verdict(PROXY_VERDICT_CLIENT_LAST, PROXY_CLOSE_DONE);
    }
    if (f->pool && !f->no_more && !f->close_after && !f->client_eof && f->keep && between &&
        f->req_idle && !f->requests_waiting) {
        return verdict(PROXY_VERDICT_LEND_END, PROXY_CLOSE_DONE);
    }
    return verdict(PROXY_VERDICT_CONTINUE, PROXY_CLOSE_DONE);
}

/*
 * proxy_exchange_next(c):
 * What ${c} does next, as proxy_exchange_decide() judges the exchange now (CONTINUE without
 * one).  A verdict that acts once (ANSWER, RESUME_UP) is taken by this call.
 */
struct proxy_verdict
proxy_exchange_next(struct proxy_conn *c)
{
    struct proxy_exchange *x = c->x;
    struct proxy_exchange_facts f;
    struct proxy_verdict v;

    if (x == NULL) {
        return verdict(PROXY_VERDICT_CONTINUE, PROXY_CLOSE_DONE);
    }
    f.pool = proxy_pool_enabled(c->l);
    f.answer_pending = x->answer_pending;
    f.resume_requests = x->resume_requests;
    f.q_len = (unsigned)x->q_len;
    f.req_in_body = x->req_in_body;
    f.req_idle = proxy_http_idle(x->req);
    f.resp_in_message = proxy_http_in_message(x->resp);
    f.resp_idle = proxy_http_idle(x->resp);
    f.keep = x->keep;
    f.no_more = x->no_more;
    f.close_after = x->close_after;
    f.client_eof = c->client_eof;
    f.requests_waiting = requests_waiting(c) > 0;
    f.resp_unsolicited = x->q_len == 0 && (proxy_http_in_head(x->resp) || f.resp_in_message);
    v = proxy_exchange_decide(&f);
    if (v.kind == PROXY_VERDICT_CLIENT_LAST && f.q_len == 0 &&
        (f.resp_unsolicited || f.req_in_body)) {
        /* That connection carries nothing more, and the client is told by the close. */
        x->odd = true;
        snprintf(x->why, sizeof(x->why), "%s %s %s", c->l->target_text,
                 f.resp_unsolicited ? "sent bytes after its response that no request asked for"
                                    : "answered a request whose body was still coming",
                 "(its connection is closed, never reused)");
        log_kv(LOG_WARN, "bad_response", "listener", c->l->cfg->name, "remote", c->remote, "target",
               c->l->target_text, "rule", f.resp_unsolicited ? "unsolicited" : "early-response",
               "msg", x->why, (const char *)NULL);
    }
    if (v.kind == PROXY_VERDICT_ANSWER) {
        x->answer_pending = false;
        v = verdict_answer(PROXY_VERDICT_ANSWER, x->answer_status);
    } else if (v.kind == PROXY_VERDICT_RESUME_UP) {
        x->resume_requests = false;
    }
    return v;
}

/* ---- life ---- */

/* The identity headers of ${id}, ${c}'s (CONTRACT §6); ${user} the peer's identity
 * (identity_peer_name()) or NULL.  Returns 0, or -1 on OOM. */
static int
identity_headers(const struct proxy_conn *c, struct proxy_identity *id, const char *user)
{
    const struct config_listener *cl = c->l->cfg;
    SSL *ssl = proxy_io_ssl(c->client);
    X509 *cert = ssl != NULL ? SSL_get0_peer_certificate(ssl) : NULL;
    char buf[16384];
    char *colon;

    snprintf(id->xff, sizeof(id->xff), "%s", c->remote);
    colon = strrchr(id->xff, ':');
    if (colon != NULL) {
        *colon = '\0';
    }
    if (id->xff[0] == '[') {
        memmove(id->xff, id->xff + 1, strlen(id->xff));
        id->xff[strcspn(id->xff, "]")] = '\0';
    }
    if (cert == NULL) {
        return 0;
    }
    if (cl->client_cert_header == CONFIG_CLIENT_CERT_HEADER_XFCC &&
        proxy_access_xfcc_value(cert, buf, sizeof(buf)) == 0) {
        if ((id->client_cert = strdup(buf)) == NULL) {
            return -1;
        }
    } else if (cl->client_cert_header == CONFIG_CLIENT_CERT_HEADER_RFC9440 &&
               proxy_access_rfc9440_value(cert, buf, sizeof(buf)) == 0) {
        STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
        size_t used = 0;

        if ((id->client_cert = strdup(buf)) == NULL) {
            return -1;
        }
        /*
         * On the server side SSL_get_peer_cert_chain() holds what the client sent after its
         * leaf (OpenSSL: "the peer's certificate must be obtained separately"); skip the leaf
         * anyway should it be there.
         */
        for (int i = 0; chain != NULL && i < sk_X509_num(chain); i++) {
            char one[8192];

            if (X509_cmp(sk_X509_value(chain, i), cert) == 0) {
                continue;
            }
            if (proxy_access_rfc9440_value(sk_X509_value(chain, i), one, sizeof(one)) == 0 &&
                used + strlen(one) + 3 < sizeof(buf)) {
                used += (size_t)snprintf(buf + used, sizeof(buf) - used, "%s%s",
                                         used > 0 ? ", " : "", one);
            }
        }
        buf[used] = '\0';
        if (used > 0 && (id->client_cert_chain = strdup(buf)) == NULL) {
            return -1;
        }
    }
    if (cl->proxy_auth.enabled) {
        char token[129];

        if (user != NULL &&
            proxy_access_couchdb_token(cl->proxy_auth.hash, c->l->auth_secret,
                                       c->l->auth_secret_len, user, token, sizeof(token)) == 0) {
            id->auth_user = strdup(user);
            id->auth_token = strdup(token);
            if (id->auth_user == NULL || id->auth_token == NULL) {
                return -1;
            }
        }
    }
    return 0;
}

/*
 * With tls.cn_fallback, the peer's CN as tls_check_leaf() verified it: the last CN, printable,
 * and only when the leaf has no DNS or IP SAN (what tls_peer_info_fill() gives as its name
 * then).  Not the first CN as it is: that one was never checked against `allow`.
 */
static bool
cn_fallback_name(const struct proxy_conn *c, char *cn, size_t len)
{
    struct tls_peer_info info;
    SSL *ssl;
    X509 *cert;

    if (!c->l->cfg->tls.cn_fallback || c->client == NULL) {
        return false;
    }
    ssl = proxy_io_ssl(c->client);
    cert = ssl != NULL ? SSL_get0_peer_certificate(ssl) : NULL;
    if (cert == NULL) {
        return false;
    }
    tls_peer_info_fill(cert, true, &info);
    /* Without a CN the name filled in may be a URI SAN: that one is a name already. */
    return info.name[0] != '\0' && !tls_name_is_uri(info.name) &&
           (size_t)snprintf(cn, len, "%s", info.name) < len;
}

/*
 * The peer's one identity (CONTRACT §6, proxy_access_identity_choose()): the name that matched the
 * first access rule, else the one that matched `allow` (tls_verify_peer() left it in
 * peer.name), else its first DNS SAN.  NULL when there is none.
 */
static const char *
identity_peer_name(const struct proxy_conn *c, const struct proxy_identity *id)
{
    const struct config_listener *cl = c->l->cfg;

    return proxy_access_identity_choose(cl->access, cl->access != NULL ? cl->n_access : 0,
                                        cl->allow != NULL ? c->verify.peer.name : NULL, &id->names);
}

/*
 * proxy_exchange_identity(c):
 * Inbound http: ${c}'s client as its exchanges see it (struct proxy_identity), from its
 * verified handshake, made once per connection (the connection keeps it across lends, so that
 * a request after a pause computes nothing).  NULL on OOM.  Freed by
 * proxy_exchange_identity_free().
 */
struct proxy_identity *
proxy_exchange_identity(const struct proxy_conn *c)
{
    static uint64_t anonymous; /* atomic: connections without a certificate, numbered */
    struct proxy_identity *id = calloc(1, sizeof(*id));
    SSL *ssl = c->client != NULL ? proxy_io_ssl(c->client) : NULL;
    X509 *cert = ssl != NULL ? SSL_get0_peer_certificate(ssl) : NULL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    const char *who;
    char cn[256];

    if (id == NULL) {
        return NULL;
    }
    /* Its pooled backend connections are its own (proxy_pool_take()): by certificate, or, for
     * a client without one, by a number no other connection gets. */
    if (cert != NULL && X509_digest(cert, EVP_sha256(), md, &mdlen) == 1 &&
        mdlen == PROXY_POOL_OWNER_LEN) {
        memcpy(id->pool_owner, md, PROXY_POOL_OWNER_LEN);
    } else {
        uint64_t n = __atomic_add_fetch(&anonymous, 1, __ATOMIC_RELAXED);

        memset(id->pool_owner, 0, sizeof(id->pool_owner));
        memcpy(id->pool_owner, "anonymous", 9);
        memcpy(id->pool_owner + 16, &n, sizeof(n));
    }
    proxy_access_names_parse(c->verify.peer.sans, cn_fallback_name(c, cn, sizeof(cn)) ? cn : NULL,
                             &id->names);
    who = identity_peer_name(c, id);
    snprintf(id->peer, sizeof(id->peer), "%s", who != NULL ? who : "-");
    if (who != NULL && !proxy_access_identity_canonical(id->peer)) {
        who = NULL; /* no name CouchDB could take as a user: no proxy authentication */
    }
    if (who == NULL) {
        /* No verified identity: peer= says so rather than show a name nothing checked
         * (a URI SAN no pattern matched, the leaf's first SAN); subject= still tells
         * which certificate it was. */
        snprintf(id->peer, sizeof(id->peer), "-");
    }
    if (identity_headers(c, id, who != NULL ? id->peer : NULL) < 0) {
        proxy_exchange_identity_free(id);
        return NULL;
    }
    return id;
}

/*
 * proxy_exchange_identity_free(id):
 * Free ${id} (NULL: a no-op).
 */
void
proxy_exchange_identity_free(struct proxy_identity *id)
{
    if (id == NULL) {
        return;
    }
    free(id->client_cert);
    free(id->client_cert_chain);
    free(id->auth_user);
    free(id->auth_token);
    free(id);
}

static void exchange_put(struct proxy_worker *w, struct proxy_exchange *x);

/*
 * exchange_get(c):
 * An exchange for ${c}: one of its worker's spares (exchange_put()) with its framers, timers
 * and retry buffer kept and everything else cleared as calloc() would (the request queue is
 * not: each entry is cleared when queued), or a new one.  Its framers (made when it has none)
 * and timers report to ${c}.  NULL on OOM.
 */
static struct proxy_exchange *
exchange_get(struct proxy_conn *c)
{
    struct proxy_worker *w = c->l->w;
    struct proxy_exchange *x = w->spare_x;

    if (x == NULL) {
        return calloc(1, sizeof(*x));
    }
    w->spare_x = x->next_spare;
    w->n_spare_x--;
    memset(x, 0, offsetof(struct proxy_exchange, q));
    if (x->req != NULL) {
        proxy_http_set_arg(x->req, c);
        proxy_http_set_arg(x->resp, c);
        proxy_http_hold(x->req, false);
        proxy_http_hold(x->resp, false);
    }
    if (x->header_timer != NULL) {
        /* Not pending (put stopped them): so they may be assigned again, to ${c}. */
        evtimer_assign(x->header_timer, w->base, header_timeout_cb, c);
        evtimer_assign(x->backend_timer, w->base, backend_timeout_cb, c);
    }
    return x;
}

/*
 * proxy_exchange_start(c, report):
 * Set up HTTP framing for ${c} when the relay starts (lending: when the client speaks after a
 * pause), with a spare exchange of its worker when there is one (exchange_get()); its timers
 * report their verdicts to ${report}.  The framers of both directions are then
 * proxy_exchange_framer()'s once the caller made the exchange ${c}'s (c->x).  Returns it, or
 * NULL on OOM.
 */
struct proxy_exchange *
proxy_exchange_start(struct proxy_conn *c, proxy_exchange_report_fn report)
{
    struct proxy_exchange *x;
    struct event_base *base = c->l->w->base;

    if ((x = exchange_get(c)) == NULL) {
        return NULL;
    }
    x->report = report;
    if (x->req == NULL) {
        x->req = proxy_http_new(PROXY_HTTP_REQUEST, on_request, on_request_done, c);
        x->resp = proxy_http_new(PROXY_HTTP_RESPONSE, on_response, on_response_done, c);
    }
    if (x->header_timer == NULL) {
        x->header_timer = evtimer_new(base, header_timeout_cb, c);
        x->backend_timer = evtimer_new(base, backend_timeout_cb, c);
    }
    if (x->req == NULL || x->resp == NULL || x->header_timer == NULL || x->backend_timer == NULL) {
        exchange_put(c->l->w, x); /* nothing queued: what was made is kept or freed */
        return NULL;
    }
    x->keep = true; /* a peer connection that has carried nothing may carry a request */
    return x;
}

/*
 * proxy_exchange_peer(c):
 * Inbound: the peer's one identity (CONTRACT §6) as the exchange chose it, for every log line
 * of ${c} from now on (peer=), or "-" when it has none; NULL on an outbound listener.
 */
const char *
proxy_exchange_peer(const struct proxy_conn *c)
{
    return c->id != NULL ? c->id->peer : NULL;
}

/*
 * proxy_exchange_framer(c, kind):
 * The framer of ${c}'s requests or responses (NULL without an exchange).
 */
struct proxy_http *
proxy_exchange_framer(const struct proxy_conn *c, enum proxy_http_kind kind)
{
    if (c->x == NULL) {
        return NULL;
    }
    return kind == PROXY_HTTP_REQUEST ? c->x->req : c->x->resp;
}

/*
 * proxy_exchange_after_read(c):
 * Called after request bytes were read: start header_timeout when a head has begun.  Returns
 * true when what waits in the client's input is not requests (it follows the last one): the
 * caller reads and drops it, never framed.
 */
bool
proxy_exchange_after_read(struct proxy_conn *c)
{
    struct proxy_exchange *x = c->x;

    if (x == NULL) {
        return false;
    }
    /* The pump is over: the destination's output may be flushed from now on. */
    x->mark_valid = false;
    if (proxy_http_in_head(x->req) && !evtimer_pending(x->header_timer, NULL)) {
        event_base_gettimeofday_cached(c->l->w->base, &x->head_start);
        timer_in(x->header_timer, c->l->limits->header_timeout_ms);
    }
    return x->no_more && !x->req_in_body;
}

/* Free the framers and timers of ${x} (set to NULL). */
static void
exchange_release_framing(struct proxy_exchange *x)
{
    if (x->header_timer != NULL) {
        event_free(x->header_timer);
    }
    if (x->backend_timer != NULL) {
        event_free(x->backend_timer);
    }
    x->header_timer = x->backend_timer = NULL;
    proxy_http_free(x->req);
    proxy_http_free(x->resp);
    x->req = x->resp = NULL;
}

/*
 * exchange_put(w, x):
 * ${x} has ended (its owed lines written): keep it among ${w}'s spare exchanges for the next
 * exchange of any connection (a client that connects, a lent peer connection's next request,
 * a new client after Connection: close), or free it when ${w} keeps EXCHANGE_SPARES already.
 * Its framers are kept when they are between messages (else freed: made again on reuse), as are its
 * timers (stopped) and its retry buffer.  Spares each exchange the allocation and clearing of about
 * 26 KiB.
 */
static void
exchange_put(struct proxy_worker *w, struct proxy_exchange *x)
{
    if (w->n_spare_x >= EXCHANGE_SPARES) {
        exchange_release_framing(x);
        free(x->retry);
        free(x);
        return;
    }
    if (x->req == NULL || x->resp == NULL || x->header_timer == NULL || x->backend_timer == NULL ||
        !proxy_http_idle(x->req) || !proxy_http_idle(x->resp)) {
        exchange_release_framing(x); /* made again, whole and fresh, on reuse */
    } else {
        evtimer_del(x->header_timer);
        evtimer_del(x->backend_timer);
    }
    x->next_spare = w->spare_x;
    w->spare_x = x;
    w->n_spare_x++;
}

/*
 * proxy_exchange_spares_free(w):
 * Free ${w}'s spare exchanges (the worker ends; before its event base: their timers are its).
 */
void
proxy_exchange_spares_free(struct proxy_worker *w)
{
    struct proxy_exchange *x;

    while ((x = w->spare_x) != NULL) {
        w->spare_x = x->next_spare;
        exchange_release_framing(x);
        free(x->retry);
        free(x);
    }
    w->n_spare_x = 0;
}

/*
 * proxy_exchange_free(c):
 * End ${c}'s exchange: log the requests that never got a response, and keep the exchange for
 * the next one of its worker (exchange_put()).  The caller then clears c->x.
 */
void
proxy_exchange_free(struct proxy_conn *c)
{
    struct proxy_exchange *x = c->x;

    if (x == NULL) {
        return;
    }
    while (x->q_len > 0) {
        /* Unanswered ("-"), or cut short after its head was relayed (that status). */
        access_log(c, q_front(x), q_front(x)->status, 0);
        x->q_head = (x->q_head + 1) % EXCHANGE_QUEUE;
        x->q_len--;
    }
    if (x->denied_owed) {
        /* Refused, but the connection ended before ferry's answer could go out. */
        x->denied_owed = false;
        access_log(c, &x->denied, 0, 0);
    }
    exchange_put(c->l->w, x);
}
