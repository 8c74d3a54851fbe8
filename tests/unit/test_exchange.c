/*
 * test_exchange: when may a pooled peer connection be reused (proxy_exchange_reusable), and
 * what our own answer does with it (proxy_conn_answer -> conn_close_server: back to the pool,
 * or closed), over scripted request and response bytes.
 *
 * One outbound `protocol: http` connection with the pool on, built by hand around two
 * bufferevent pairs that never transfer (their far ends do not read): the test writes the
 * client's bytes into the client side's input, the peer's into the server side's input, runs
 * the relays' pumps as the read callbacks would, and drains the server side's output when a
 * test wants it "sent".  No sockets, no TLS, no network.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "log.h"
#include "proxy_internal.h"
#include "proxy_spare.h"
#include "proxy_stats.h"

struct fixture {
    struct event_base *base;
    struct proxy_worker w;
    struct proxy_stats_set *stats;
    struct config_listener cl;
    struct config_limits lim;
    struct proxy_listener l;
    struct proxy_conn *c;
    struct bufferevent *client_pair[2];
    struct bufferevent *server_pair[2];
};

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
    assert_int_equal(bufferevent_pair_new(f->base, 0, f->client_pair), 0);
    assert_int_equal(bufferevent_pair_new(f->base, 0, f->server_pair), 0);

    /* As conn_start_relay() leaves a connection that took a pooled peer connection. */
    c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->magic = PROXY_CONN_MAGIC;
    c->l = &f->l;
    c->fd = -1;
    c->state = PROXY_CONN_RELAY;
    c->client = f->client_pair[0];
    c->server = f->server_pair[0];
    c->tls_up = true;
    c->timer = evtimer_new(f->base, NULL, NULL);
    snprintf(c->remote, sizeof(c->remote), "127.0.0.1:1");
    snprintf(c->verify.peer.name, sizeof(c->verify.peer.name), "peer.test");
    /* A pair's output is frozen at its start, bufferevent_openssl's (the peer side) is not. */
    evbuffer_unfreeze(bufferevent_get_output(c->server), 1);
    proxy_relay_init(&c->up, c->client, c->server, true);
    proxy_relay_init(&c->down, c->server, c->client, false);
    assert_int_equal(proxy_exchange_start(c), 0);
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
    event_free(c->timer);
    if (c->server != NULL) {
        bufferevent_free(c->server);
    }
    bufferevent_free(c->client);
    free(c);
    bufferevent_free(f->client_pair[1]);
    bufferevent_free(f->server_pair[1]);
    proxy_pool_free(&f->l);
    proxy_spare_clear(&f->w.spare_exchanges);
    event_base_free(f->base);
    proxy_stats_set_free(f->stats);
    free(f);
    return 0;
}

/* Bytes arrive in ${bev}'s input, as a read would put them (unfrozen for the while). */
static void
arrive(struct bufferevent *bev, const char *s)
{
    struct evbuffer *in = bufferevent_get_input(bev);

    evbuffer_unfreeze(in, 0);
    assert_int_equal(evbuffer_add(in, s, strlen(s)), 0);
}

/* The client sends ${s}: frame it as client_read_cb would; returns the framer's result. */
static enum proxy_http_result
client_sends(struct fixture *f, const char *s)
{
    enum proxy_http_result res;

    arrive(f->c->client, s);
    res = proxy_relay_pump(&f->c->up);
    if (res == PROXY_HTTP_OK) {
        proxy_exchange_after_read(f->c);
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
    struct evbuffer *out = bufferevent_get_output(f->c->server);

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
    assert_int_equal(evbuffer_get_length(bufferevent_get_output(f->c->server)), 0);
    assert_true(proxy_exchange_reusable(f->c));
    proxy_exchange_request_failed(f->c, PROXY_HTTP_BAD);
    assert_int_equal(f->c->state, PROXY_CONN_DRAINING);
    assert_null(f->c->server);
    assert_int_equal(f->l.pool.n_idle, 1);
    f->server_pair[0] = proxy_pool_take(&f->l, &f->c->verify); /* teardown frees it */
    f->c->server = f->server_pair[0];
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
    proxy_exchange_request_failed(f->c, PROXY_HTTP_BAD);
    assert_null(f->c->server);
    assert_int_equal(f->l.pool.n_idle, 1);
    f->server_pair[0] = proxy_pool_take(&f->l, &f->c->verify);
    f->c->server = f->server_pair[0];
    assert_int_equal(evbuffer_get_length(bufferevent_get_output(f->c->server)), 0);
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
    proxy_exchange_request_failed(f->c, PROXY_HTTP_BAD);
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
    f->c->server_failed = true;
    assert_int_equal(client_sends(f, SMUGGLE), PROXY_HTTP_BAD);
    proxy_exchange_request_failed(f->c, PROXY_HTTP_BAD);
    assert_null(f->c->server);
    assert_false(f->c->server_failed); /* cleared with the side */
    assert_int_equal(f->l.pool.n_idle, 0);
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
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
