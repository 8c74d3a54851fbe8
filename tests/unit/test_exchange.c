/*
 * test_exchange: the HTTP exchange's verdicts (proxy_exchange_decide, proxy_exchange_next,
 * proxy_exchange_request_failed and what it reports), when may a pooled peer connection be
 * reused (proxy_exchange_reusable), and what our own answer does with it (proxy_conn_answer ->
 * conn_close_server: back to the pool, or closed), over scripted request and response bytes.
 *
 * One outbound `protocol: http` connection with the pool on, built by hand around two plain
 * proxy_io sides on loopback socketpairs whose loop never runs (so nothing is read or
 * written): the test writes the client's bytes into the client side's input, the peer's into
 * the server side's input, runs the relays' pumps as the read callbacks would, and drains the
 * server side's output when a test wants it "sent".  No TLS, no network.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/util.h>

#include "log.h"
#include "proxy_internal.h"
#include "proxy_spare.h"
#include "proxy_stats.h"

/* The verdicts the exchange reported (x->report) since the last reset. */
static struct proxy_verdict reported[8];
static size_t n_reported;

static void
report_capture(struct proxy_conn *c, struct proxy_verdict v)
{
    (void)c;
    assert_true(n_reported < sizeof(reported) / sizeof(reported[0]));
    reported[n_reported++] = v;
}

struct fixture {
    struct event_base *base;
    struct proxy_worker w;
    struct proxy_stats_set *stats;
    struct config_listener cl;
    struct config_limits lim;
    struct proxy_listener l;
    struct proxy_conn *c;
    int client_far; /* the far ends of the sides' socketpairs: the client, the peer */
    int server_far;
};

/* A plain side on one end of a new non-blocking socketpair; *${far} is the other end. */
static struct proxy_io *
side_new(struct fixture *f, int *far)
{
    struct proxy_io *io = proxy_worker_side_new(&f->w);
    int sv[2];

    assert_non_null(io);
    assert_int_equal(evutil_socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(evutil_make_socket_nonblocking(sv[0]), 0);
    assert_int_equal(proxy_io_init(io, f->base, sv[0], NULL, PROXY_IO_SERVER), 0);
    *far = sv[1];
    return io;
}

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct proxy_conn *c;

    assert_non_null(f);
    log_setup(LOG_ERROR, LOG_TEXT, stderr);
    f->base = event_base_new();
    assert_non_null(f->base);
    f->w.magic = PROXY_WORKER_MAGIC;
    f->w.base = f->base;
    f->cl.name = (char *)(uintptr_t) "pooled";
    f->cl.mode = CONFIG_MODE_OUTBOUND;
    f->cl.protocol = CONFIG_PROTOCOL_HTTP;
    f->cl.host_header = CONFIG_HOST_HEADER_KEEP;
    f->cl.pool_max_idle = 4;
    f->cl.pool_idle_timeout_ms = 60000;
    f->lim.header_timeout_ms = 15000;
    f->lim.backend_timeout_ms = 60000;
    f->l.magic = PROXY_LISTENER_MAGIC;
    f->l.w = &f->w;
    f->l.cfg = &f->cl;
    f->l.limits = &f->lim;
    f->stats = proxy_stats_set_new(1);
    assert_non_null(f->stats);
    f->l.stats = proxy_stats_worker(proxy_stats_name_get(f->stats, "pooled"), 0);
    assert_non_null(f->l.stats);
    snprintf(f->l.target_text, sizeof(f->l.target_text), "peer.test:6984");

    /* As conn_start_relay() leaves a connection that took a pooled peer connection. */
    c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->magic = PROXY_CONN_MAGIC;
    c->l = &f->l;
    c->fd = -1;
    c->state = PROXY_CONN_RELAY;
    c->client = side_new(f, &f->client_far);
    c->server = side_new(f, &f->server_far);
    c->client_st = PROXY_SIDE_UP;
    c->server_st = PROXY_SIDE_UP;
    c->timer = evtimer_new(f->base, NULL, NULL);
    snprintf(c->remote, sizeof(c->remote), "127.0.0.1:1");
    snprintf(c->verify.peer.name, sizeof(c->verify.peer.name), "peer.test");
    proxy_relay_init(&c->up, c->client, c->server, true);
    proxy_relay_init(&c->down, c->server, c->client, false);
    c->x = proxy_exchange_start(c, report_capture);
    assert_non_null(c->x);
    c->up.http = proxy_exchange_framer(c, PROXY_HTTP_REQUEST);
    c->down.http = proxy_exchange_framer(c, PROXY_HTTP_RESPONSE);
    n_reported = 0;
    f->c = c;
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    struct proxy_conn *c = f->c;

    proxy_exchange_free(c);
    c->x = NULL;
    event_free(c->timer);
    proxy_worker_side_free(&f->w, c->server);
    proxy_worker_side_free(&f->w, c->client);
    free(c->detail); /* taken when first set (conn_detail) */
    free(c);
    close(f->client_far);
    close(f->server_far);
    proxy_pool_free(&f->l);
    proxy_worker_reap(&f->w);
    if (f->w.reap != NULL) {
        event_free(f->w.reap);
    }
    proxy_exchange_spares_free(&f->w);
    proxy_spare_clear(&f->w.spare_sides);
    event_base_free(f->base);
    proxy_stats_set_free(f->stats);
    free(f);
    return 0;
}

/* Bytes arrive in ${io}'s input, as a read would put them. */
static void
arrive(struct proxy_io *io, const char *s)
{
    struct evbuffer *in = proxy_io_input(io);

    assert_int_equal(evbuffer_add(in, s, strlen(s)), 0);
}

/* The client sends ${s}: frame it as client_read_cb would; returns the framer's result. */
static enum proxy_http_result
client_sends(struct fixture *f, const char *s)
{
    enum proxy_http_result res;

    arrive(f->c->client, s);
    res = proxy_relay_pump(&f->c->up);
    if (res == PROXY_HTTP_OK && proxy_exchange_after_read(f->c)) {
        /* What follows the client's last request is dropped (conn_after_read). */
        struct evbuffer *in = proxy_io_input(f->c->client);

        evbuffer_drain(in, evbuffer_get_length(in));
    }
    return res;
}

/* The peer sends ${s}: frame it as server_read_cb would. */
static void
peer_sends(struct fixture *f, const char *s)
{
    arrive(f->c->server, s);
    proxy_exchange_response_bytes(f->c);
    assert_int_equal(proxy_relay_pump(&f->c->down), PROXY_HTTP_OK);
}

/* What ferry forwarded to the peer leaves the server side's output (written to the socket). */
static void
sent_to_peer(struct fixture *f)
{
    struct evbuffer *out = proxy_io_output(f->c->server);

    evbuffer_drain(out, evbuffer_get_length(out));
}

#define GET_ONE "GET /one HTTP/1.1\r\nHost: x\r\n\r\n"
#define RESP_OK "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
#define SMUGGLE                                                               \
    "POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: " \
    "chunked\r\n\r\n0\r\n\r\n"
#define CHUNKED  "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
#define BAD_LINE "zz\r\nhello\r\n0\r\n\r\n"

/* One good exchange: in flight while its response is due, reusable once it was read. */
static void
test_reusable_after_response(void **state)
{
    struct fixture *f = *state;

    assert_true(proxy_exchange_reusable(f->c)); /* a fresh pooled connection */
    assert_int_equal(client_sends(f, GET_ONE), PROXY_HTTP_OK);
    sent_to_peer(f);
    assert_false(proxy_exchange_reusable(f->c)); /* its response is due */
    peer_sends(f, RESP_OK);
    assert_true(proxy_exchange_reusable(f->c));
}

/* A head ferry refuses (CL + TE) after a good exchange: nothing of it reached the peer, so
 * the connection stays reusable and our 400 gives it back to the pool. */
static void
test_refused_head_pools(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(client_sends(f, GET_ONE), PROXY_HTTP_OK);
    sent_to_peer(f);
    peer_sends(f, RESP_OK);
    assert_int_equal(client_sends(f, SMUGGLE), PROXY_HTTP_BAD);
    assert_int_equal(evbuffer_get_length(proxy_io_output(f->c->server)), 0);
    assert_true(proxy_exchange_reusable(f->c));
    assert_false(proxy_conn_act(f->c, proxy_exchange_request_failed(f->c, PROXY_HTTP_BAD)));
    assert_int_equal(f->c->state, PROXY_CONN_DRAINING);
    assert_null(f->c->server);
    assert_int_equal(f->l.pool.n_idle, 1);
    f->c->server = proxy_pool_take(&f->l, &f->c->verify, NULL); /* teardown frees it */
}

/* ferry answers a request in flight itself (504): its response may still come on that
 * connection, which is never reused, and is closed rather than pooled. */
static void
test_answered_in_flight_closes(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(client_sends(f, GET_ONE), PROXY_HTTP_OK);
    sent_to_peer(f);
    proxy_conn_answer(f->c, PROXY_CLOSE_SERVER_ERROR, 504, "Gateway Timeout", "application/json",
                      "{}");
    assert_false(proxy_exchange_reusable(f->c));
    assert_null(f->c->server);
    assert_int_equal(f->l.pool.n_idle, 0);
}

/* A chunked body refused at a bad chunk line in the same read as its head: the head is taken
 * back from the output before anything left, so the connection goes back to the pool. */
static void
test_taken_back_whole_pools(void **state)
{
    struct fixture *f = *state;
    char req[256];

    snprintf(req, sizeof(req), "%s%s", CHUNKED, BAD_LINE);
    assert_int_equal(client_sends(f, req), PROXY_HTTP_BAD);
    assert_false(proxy_conn_act(f->c, proxy_exchange_request_failed(f->c, PROXY_HTTP_BAD)));
    assert_null(f->c->server);
    assert_int_equal(f->l.pool.n_idle, 1);
    f->c->server = proxy_pool_take(&f->l, &f->c->verify, NULL);
    assert_int_equal(evbuffer_get_length(proxy_io_output(f->c->server)), 0);
}

/* The same refused after its head and first chunk left: half a request is on that
 * connection, which must never carry another one. */
static void
test_taken_back_after_bytes_left_closes(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(client_sends(f, CHUNKED), PROXY_HTTP_OK);
    sent_to_peer(f);
    assert_int_equal(client_sends(f, BAD_LINE), PROXY_HTTP_BAD);
    assert_false(proxy_conn_act(f->c, proxy_exchange_request_failed(f->c, PROXY_HTTP_BAD)));
    assert_false(proxy_exchange_reusable(f->c));
    assert_null(f->c->server);
    assert_int_equal(f->l.pool.n_idle, 0);
}

/* A side that failed is never pooled, even between exchanges. */
static void
test_failed_side_closes(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(client_sends(f, GET_ONE), PROXY_HTTP_OK);
    sent_to_peer(f);
    peer_sends(f, RESP_OK);
    f->c->server_st = PROXY_SIDE_FAILED;
    assert_int_equal(client_sends(f, SMUGGLE), PROXY_HTTP_BAD);
    assert_false(proxy_conn_act(f->c, proxy_exchange_request_failed(f->c, PROXY_HTTP_BAD)));
    assert_null(f->c->server);
    assert_int_equal(f->c->server_st, PROXY_SIDE_NONE); /* the side ended */
    assert_int_equal(f->l.pool.n_idle, 0);
}

/* ---- verdicts ---- */

/* The kind of verdict proxy_exchange_next() gives now. */
static enum proxy_verdict_kind
next_kind(struct fixture *f)
{
    return proxy_exchange_next(f->c).kind;
}

/* What the client has been sent so far, NUL-terminated (static): what reached the far end of
 * its socketpair, then what still waits in the client side's output. */
static const char *
client_got(struct fixture *f)
{
    static char buf[4096];
    struct evbuffer *out = proxy_io_output(f->c->client);
    ssize_t got = recv(f->client_far, buf, sizeof(buf) - 1, MSG_DONTWAIT);
    size_t a = got > 0 ? (size_t)got : 0, b = evbuffer_get_length(out);

    assert_true(a + b < sizeof(buf));
    assert_int_equal(evbuffer_copyout(out, buf + a, b), (ev_ssize_t)b);
    buf[a + b] = '\0';
    return buf;
}

/* Keep-alive: nothing to do while the response is due; once it was read, the lent peer
 * connection goes back (LEND_END) and the client stays. */
static void
test_verdict_keepalive_lend_end(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(client_sends(f, GET_ONE), PROXY_HTTP_OK);
    assert_int_equal(next_kind(f), PROXY_VERDICT_CONTINUE);
    sent_to_peer(f);
    peer_sends(f, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nok");
    assert_int_equal(next_kind(f), PROXY_VERDICT_CONTINUE); /* half the body */
    peer_sends(f, "ok");
    assert_int_equal(next_kind(f), PROXY_VERDICT_LEND_END);
}

/* Connection: close: the client's last request; once its response is out the client is done
 * (CLIENT_LAST), and the peer connection, not told to close, may be pooled. */
static void
test_verdict_close_client_last(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(client_sends(f, "GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                                     "GET /after HTTP/1.1\r\nHost: x\r\n\r\n"),
                     PROXY_HTTP_OK);
    sent_to_peer(f);
    assert_int_equal(next_kind(f), PROXY_VERDICT_CONTINUE);
    peer_sends(f, RESP_OK);
    assert_int_equal(next_kind(f), PROXY_VERDICT_CLIENT_LAST);
    assert_non_null(strstr(client_got(f), "Connection: close\r\n"));
    assert_true(proxy_exchange_reusable(f->c));
}

/* The other side ends persistence (Connection: close) but keeps its socket open: the client is
 * told so and is done after the response (CLIENT_LAST), and the connection is never reused; a
 * request pipelined behind it gets no response there (before: it went on the connection the
 * other side had closed, and the client stayed open). */
static void
test_verdict_response_close_client_last(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(client_sends(f, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                                     "GET /b HTTP/1.1\r\nHost: x\r\n\r\n"),
                     PROXY_HTTP_OK);
    sent_to_peer(f);
    peer_sends(f, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok");
    assert_int_equal(next_kind(f), PROXY_VERDICT_CLIENT_LAST);
    assert_non_null(strstr(client_got(f), "Connection: close\r\n"));
    assert_null(strstr(client_got(f), "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: "
                                      "2\r\n\r\nokHTTP"));
    assert_false(proxy_exchange_reusable(f->c));
}

/* HTTP/1.0 without keep-alive, and a peer that answers keep-alive anyway: the client is done
 * after the response (before: ferry waited for the other side to close). */
static void
test_verdict_http10_client_last(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(client_sends(f, "GET /old HTTP/1.0\r\n\r\n"), PROXY_HTTP_OK);
    sent_to_peer(f);
    peer_sends(f, RESP_OK);
    assert_int_equal(next_kind(f), PROXY_VERDICT_CLIENT_LAST);
    assert_non_null(strstr(client_got(f), "Connection: close\r\n"));
}

/* A chunked response to an HTTP/1.0 client goes bare: no Transfer-Encoding, no chunk lines,
 * ended by the close (CLIENT_LAST once its last chunk was read). */
static void
test_verdict_http10_chunked_bare(void **state)
{
    struct fixture *f = *state;
    const char *got;

    assert_int_equal(client_sends(f, "GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
                     PROXY_HTTP_OK);
    sent_to_peer(f);
    peer_sends(f, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n");
    assert_int_equal(next_kind(f), PROXY_VERDICT_CONTINUE);
    peer_sends(f, "6\r\n world\r\n0\r\nT: 1\r\n\r\n");
    assert_int_equal(next_kind(f), PROXY_VERDICT_CLIENT_LAST);
    got = client_got(f);
    assert_null(strstr(got, "Transfer-Encoding"));
    assert_non_null(strstr(got, "Connection: close\r\n"));
    assert_string_equal(strstr(got, "\r\n\r\n") + 4, "hello world");
}

/* Interim responses never reach an HTTP/1.0 client (RFC 9110 §15.2): it would take the first
 * as its answer; the final response does (test_http's interim cases: HTTP/1.1 gets them). */
static void
test_http10_no_interim(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(client_sends(f, "GET /old HTTP/1.0\r\n\r\n"), PROXY_HTTP_OK);
    sent_to_peer(f);
    peer_sends(f, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"
                  "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n");
    assert_int_equal(next_kind(f), PROXY_VERDICT_CONTINUE);
    assert_string_equal(client_got(f), "");
    peer_sends(f, RESP_OK);
    assert_int_equal(next_kind(f), PROXY_VERDICT_CLIENT_LAST);
    assert_true(strncmp(client_got(f), "HTTP/1.1 200 OK\r\n", 17) == 0);
}

/* A refused request with an earlier one in flight: ANSWER_LATER; the earlier response ends and
 * the answer is the next verdict (ANSWER, 400); with nothing in flight: ANSWER now. */
static void
test_verdict_refusal_waits_for_responses(void **state)
{
    struct fixture *f = *state;
    struct proxy_verdict v;
    const char *phrase;
    int status = 0;

    assert_int_equal(client_sends(f, GET_ONE), PROXY_HTTP_OK);
    sent_to_peer(f);
    assert_int_equal(client_sends(f, SMUGGLE), PROXY_HTTP_BAD);
    v = proxy_exchange_request_failed(f->c, PROXY_HTTP_BAD);
    assert_int_equal(v.kind, PROXY_VERDICT_ANSWER_LATER);
    assert_int_equal(v.reason, PROXY_CLOSE_CLIENT_ERROR);
    assert_int_equal(n_reported, 0);
    peer_sends(f, RESP_OK);
    assert_int_equal(n_reported, 0); /* a verdict, never a call back from inside the pump */
    assert_int_equal(next_kind(f), PROXY_VERDICT_ANSWER);
    (void)proxy_exchange_answer(f->c, &status, &phrase);
    assert_int_equal(status, 400);
    assert_string_equal(phrase, "Bad Request");
    assert_non_null(strstr(proxy_exchange_why(f->c), "refused a malformed request"));
}

static void
test_verdict_refusal_idle_answers_now(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(client_sends(f, SMUGGLE), PROXY_HTTP_BAD);
    assert_int_equal(proxy_exchange_request_failed(f->c, PROXY_HTTP_BAD).kind,
                     PROXY_VERDICT_ANSWER);
}

/* 33 pipelined requests: the framer holds the 33rd; the first response makes room
 * (RESUME_UP, taken by the call), then nothing more to do. */
static void
test_verdict_queue_full_resumes(void **state)
{
    struct fixture *f = *state;
    char reqs[33 * sizeof(GET_ONE)];

    reqs[0] = '\0';
    for (int i = 0; i < 33; i++) {
        strcat(reqs, GET_ONE);
    }
    assert_int_equal(client_sends(f, reqs), PROXY_HTTP_OK);
    assert_int_equal(evbuffer_get_length(proxy_io_input(f->c->client)),
                     strlen(GET_ONE)); /* the 33rd waits */
    sent_to_peer(f);
    peer_sends(f, RESP_OK);
    assert_int_equal(next_kind(f), PROXY_VERDICT_RESUME_UP);
    assert_int_equal(next_kind(f), PROXY_VERDICT_CONTINUE);
}

/* A stale pooled connection: two GETs in flight are both resent; a POST among them is not. */
static void
test_retry_pipelined_gets(void **state)
{
    struct fixture *f = *state;
    size_t n;
    const char *heads;

    f->c->server_from = PROXY_ORIGIN_POOLED;
    assert_int_equal(client_sends(f, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                                     "GET /b HTTP/1.1\r\nHost: x\r\n\r\n"),
                     PROXY_HTTP_OK);
    assert_true(proxy_exchange_can_retry(f->c));
    heads = proxy_exchange_retry_heads(f->c, &n);
    assert_non_null(heads);
    assert_int_equal(n, 2 * strlen("GET /a HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert_memory_equal(heads + n / 2, "GET /b", 6);
    assert_null(proxy_exchange_retry_heads(f->c, &n)); /* once */
}

static void
test_retry_not_with_post(void **state)
{
    struct fixture *f = *state;

    f->c->server_from = PROXY_ORIGIN_POOLED;
    assert_int_equal(client_sends(f, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                                     "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nz"),
                     PROXY_HTTP_OK);
    assert_false(proxy_exchange_can_retry(f->c));
}

/* Bytes past a response that no request asked for (here the start of a head behind a
 * Content-Length body) would start the next client's response: the client is finished
 * (CLIENT_LAST) and the peer connection is never reused. */
static void
test_verdict_unsolicited_bytes_close(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(client_sends(f, GET_ONE), PROXY_HTTP_OK);
    sent_to_peer(f);
    peer_sends(f, RESP_OK "HTTP/1.1 200 OK\r\nSet-Cookie: x\r\nX-Junk: ");
    assert_int_equal(next_kind(f), PROXY_VERDICT_CLIENT_LAST);
    assert_false(proxy_exchange_reusable(f->c));
    assert_null(strstr(client_got(f), "Set-Cookie"));
}

/* A response that ends while its request's body is still coming: the rest of the body must
 * not reach a peer that would read it as requests. */
static void
test_verdict_early_response_close(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(
        client_sends(f, "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc"),
        PROXY_HTTP_OK);
    sent_to_peer(f);
    peer_sends(f, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(next_kind(f), PROXY_VERDICT_CLIENT_LAST);
    assert_false(proxy_exchange_reusable(f->c));
}

/* The next request's head half read when a response ends: the lend goes on (its header
 * timeout runs) rather than losing the half head with the exchange. */
static void
test_verdict_half_head_keeps_lend(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(client_sends(f, GET_ONE "GET /two HTTP/1.1\r\nHo"), PROXY_HTTP_OK);
    sent_to_peer(f);
    peer_sends(f, RESP_OK);
    assert_int_equal(next_kind(f), PROXY_VERDICT_CONTINUE);
    assert_int_equal(client_sends(f, "st: x\r\n\r\n"), PROXY_HTTP_OK);
    sent_to_peer(f);
    peer_sends(f, RESP_OK);
    assert_int_equal(next_kind(f), PROXY_VERDICT_LEND_END);
}

/* An HTTP/1.0 keep-alive client is told its connection stays (Connection: keep-alive). */
static void
test_http10_keepalive_said(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(client_sends(f, "GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
                     PROXY_HTTP_OK);
    sent_to_peer(f);
    peer_sends(f, RESP_OK);
    assert_non_null(strstr(client_got(f), "Connection: keep-alive\r\n"));
    assert_int_equal(next_kind(f), PROXY_VERDICT_LEND_END);
}

/*
 * One reuse mechanism: an ended exchange (whatever ended it: a lend, a client's close) is kept
 * by its worker with its framers and timers and is the next exchange of any connection; one
 * that ended inside a message loses its framers, which are made again, fresh, on reuse.
 */
static void
test_exchange_spare_reused(void **state)
{
    struct fixture *f = *state;
    struct proxy_exchange *x = f->c->x;
    struct proxy_http *req = f->c->up.http;

    assert_int_equal(client_sends(f, GET_ONE), PROXY_HTTP_OK);
    sent_to_peer(f);
    peer_sends(f, RESP_OK);
    proxy_exchange_free(f->c);
    f->c->x = NULL;
    assert_int_equal(f->w.n_spare_x, 1);
    f->c->x = proxy_exchange_start(f->c, report_capture);
    assert_ptr_equal(f->c->x, x);                                           /* the same exchange, */
    assert_ptr_equal(proxy_exchange_framer(f->c, PROXY_HTTP_REQUEST), req); /* its framer kept */
    assert_int_equal(f->w.n_spare_x, 0);
    f->c->up.http = proxy_exchange_framer(f->c, PROXY_HTTP_REQUEST);
    f->c->down.http = proxy_exchange_framer(f->c, PROXY_HTTP_RESPONSE);
    assert_int_equal(client_sends(f, "GET /two HTTP/1.1\r\nHost: x\r\n\r\n"), PROXY_HTTP_OK);
    sent_to_peer(f);
    peer_sends(f, RESP_OK);
    assert_int_equal(next_kind(f), PROXY_VERDICT_LEND_END); /* as on a fresh exchange */

    /* Ended inside a request head: kept, without its framers. */
    assert_int_equal(client_sends(f, "GET /three HTTP/1.1\r\nHo"), PROXY_HTTP_OK);
    proxy_exchange_free(f->c);
    f->c->x = NULL;
    assert_int_equal(f->w.n_spare_x, 1);
    f->c->x = proxy_exchange_start(f->c, report_capture);
    assert_ptr_equal(f->c->x, x);
    assert_true(proxy_http_idle(proxy_exchange_framer(f->c, PROXY_HTTP_REQUEST)));
    f->c->up.http = proxy_exchange_framer(f->c, PROXY_HTTP_REQUEST);
    f->c->down.http = proxy_exchange_framer(f->c, PROXY_HTTP_RESPONSE);
    evbuffer_drain(proxy_io_input(f->c->client), evbuffer_get_length(proxy_io_input(f->c->client)));
    assert_int_equal(client_sends(f, GET_ONE), PROXY_HTTP_OK);
    sent_to_peer(f);
    peer_sends(f, RESP_OK);
    assert_int_equal(next_kind(f), PROXY_VERDICT_LEND_END);
}

/* proxy_exchange_decide() alone, over the states that tell the verdicts apart. */
static void
test_decide_table(void **state)
{
    struct proxy_exchange_facts idle = {
        .pool = true, .req_idle = true, .resp_idle = true, .keep = true};
    struct proxy_exchange_facts f;

    (void)state;
    assert_int_equal(proxy_exchange_decide(&idle).kind, PROXY_VERDICT_LEND_END);
    f = idle;
    f.pool = false; /* no lending: a kept-alive client simply stays */
    assert_int_equal(proxy_exchange_decide(&f).kind, PROXY_VERDICT_CONTINUE);
    f = idle;
    f.q_len = 1; /* a response is due */
    assert_int_equal(proxy_exchange_decide(&f).kind, PROXY_VERDICT_CONTINUE);
    f = idle;
    f.requests_waiting = true; /* the next request goes on the same connection */
    assert_int_equal(proxy_exchange_decide(&f).kind, PROXY_VERDICT_CONTINUE);
    f = idle;
    f.keep = false; /* the peer ends keep-alive: it closes, not the pool's */
    assert_int_equal(proxy_exchange_decide(&f).kind, PROXY_VERDICT_CONTINUE);
    f = idle;
    f.close_after = true;
    assert_int_equal(proxy_exchange_decide(&f).kind, PROXY_VERDICT_CLIENT_LAST);
    f.pool = false; /* inbound too: ferry closes, whatever the backend does */
    assert_int_equal(proxy_exchange_decide(&f).kind, PROXY_VERDICT_CLIENT_LAST);
    f.resp_in_message = true; /* not before its response is out */
    f.resp_idle = false;
    assert_int_equal(proxy_exchange_decide(&f).kind, PROXY_VERDICT_CONTINUE);
    f = idle;
    f.client_eof = true; /* pool: a client that closed its side is done */
    assert_int_equal(proxy_exchange_decide(&f).kind, PROXY_VERDICT_CLIENT_LAST);
    f.pool = false; /* without the pool its FIN is passed on instead */
    assert_int_equal(proxy_exchange_decide(&f).kind, PROXY_VERDICT_CONTINUE);
    f = idle;
    f.answer_pending = true; /* the responses before it are out: answer */
    assert_int_equal(proxy_exchange_decide(&f).kind, PROXY_VERDICT_ANSWER);
    f.q_len = 2;
    assert_int_equal(proxy_exchange_decide(&f).kind, PROXY_VERDICT_CONTINUE);
    f = idle;
    f.resp_unsolicited = true; /* bytes nobody asked for */
    f.resp_idle = false;
    assert_int_equal(proxy_exchange_decide(&f).kind, PROXY_VERDICT_CLIENT_LAST);
    f = idle;
    f.req_in_body = true; /* answered while its body is still coming */
    assert_int_equal(proxy_exchange_decide(&f).kind, PROXY_VERDICT_CLIENT_LAST);
    f = idle;
    f.req_idle = false; /* half of the next head read */
    assert_int_equal(proxy_exchange_decide(&f).kind, PROXY_VERDICT_CONTINUE);
    f = idle;
    f.q_len = 31;
    f.resume_requests = true;
    assert_int_equal(proxy_exchange_decide(&f).kind, PROXY_VERDICT_RESUME_UP);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reusable_after_response, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_head_pools, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answered_in_flight_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_taken_back_whole_pools, setup, teardown),
        cmocka_unit_test_setup_teardown(test_taken_back_after_bytes_left_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_side_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verdict_keepalive_lend_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verdict_close_client_last, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verdict_response_close_client_last, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verdict_http10_client_last, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http10_no_interim, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verdict_http10_chunked_bare, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verdict_refusal_waits_for_responses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verdict_refusal_idle_answers_now, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verdict_queue_full_resumes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_pipelined_gets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_not_with_post, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verdict_unsolicited_bytes_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verdict_early_response_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verdict_half_head_keeps_lend, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http10_keepalive_said, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exchange_spare_reused, setup, teardown),
        cmocka_unit_test(test_decide_table),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
