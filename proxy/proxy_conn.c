/*
 * proxy_conn: one proxied connection, from accept() to the summary line.
 *
 * inbound:  SNIFF -> HANDSHAKE (TLS with the client) -> CONNECTING (backend) -> RELAY
 * outbound: CONNECTING (TCP + TLS with the peer) -> RELAY
 * http, pool on (lending): RELAY at once (outbound: at accept; inbound: HANDSHAKE -> RELAY),
 *           with no connection to the peer or backend; a request head ready to go takes one
 *           from the pool (RELAY) or dials (RELAY -> CONNECTING -> RELAY), and it goes back to
 *           the pool when its last response has been read to its end (a stale pooled
 *           connection: RELAY -> CONNECTING once, to resend the request)
 * each side: its own state (enum proxy_side_state, conn_side_set()): NONE -> OPENING -> UP,
 *           then FAILED or RESET, -> NONE when it ends (conn_close_client/_server)
 * any:      -> DRAINING (our own 400/502 answer, or the end of a pooled exchange) -> CLOSED
 *
 * Every way out goes through proxy_conn_drop(), which logs once and frees everything.
 * Callbacks that call proxy_conn_drop() return at once without touching the connection.  A
 * side (struct proxy_io, proxy_io.h) that ends is silenced at once and freed on the next loop
 * turn (proxy_worker_side_free()), because the HTTP framer may still be reading its input or
 * writing its output when the verdict of a message it framed ends that side.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/ssl.h>

#include "config_json.h"
#include "log.h"
#include "proxy_internal.h"
#include "proxy_pp.h"
#include "proxy_stats.h"

_Static_assert(PROXY_UNAUTH_LOG_PER_SEC == 20 && PROXY_UNAUTH_LOG_BURST == 100,
               "the log_suppressed message names these numbers");

/* proxy_conn.log_mode (conn_log_ok()) */
#define CONN_LOG_ON   1
#define CONN_LOG_HELD 2

#define TLS_RECORD_HANDSHAKE 0x16

static const char *const close_reason_names[PROXY_CLOSE__COUNT] = {
    [PROXY_CLOSE_DONE] = "done",
    [PROXY_CLOSE_CLIENT_CLOSED] = "client_closed",
    [PROXY_CLOSE_NOT_TLS] = "not_tls",
    [PROXY_CLOSE_HANDSHAKE_TIMEOUT] = "handshake_timeout",
    [PROXY_CLOSE_HANDSHAKE_FAILED] = "handshake_failed",
    [PROXY_CLOSE_REJECTED] = "rejected",
    [PROXY_CLOSE_BACKEND_UNREACHABLE] = "backend_unreachable",
    [PROXY_CLOSE_PEER_UNREACHABLE] = "peer_unreachable",
    [PROXY_CLOSE_PEER_HANDSHAKE_FAILED] = "peer_handshake_failed",
    [PROXY_CLOSE_IDLE_TIMEOUT] = "idle_timeout",
    [PROXY_CLOSE_CLIENT_ERROR] = "client_error",
    [PROXY_CLOSE_SERVER_ERROR] = "server_error",
    [PROXY_CLOSE_OOM] = "out_of_memory",
    [PROXY_CLOSE_SHUTDOWN] = "shutdown",
    [PROXY_CLOSE_PROXY_PROTOCOL] = "proxy_protocol",
};

static const char *const pp_outcome_names[PROXY_PPO__COUNT] = {
    [PROXY_PPO_OK] = "ok",
    [PROXY_PPO_LOCAL] = "local",
    [PROXY_PPO_REFUSED] = "refused",
    [PROXY_PPO_MISSING] = "missing",
    [PROXY_PPO_MALFORMED] = "malformed",
    [PROXY_PPO_TRUNCATED] = "truncated",
    [PROXY_PPO_OVERSIZED] = "oversized",
    [PROXY_PPO_TIMEOUT] = "timeout",
};

static const char *const via_result_names[PROXY_VIA__COUNT] = {
    [PROXY_VIA_OK] = "ok",
    [PROXY_VIA_UNREACHABLE] = "unreachable",
    [PROXY_VIA_TIMEOUT] = "timeout",
    [PROXY_VIA_AUTH_REQUIRED] = "auth_required",
    [PROXY_VIA_AUTH_FAILED] = "auth_failed",
    [PROXY_VIA_REFUSED] = "refused",
    [PROXY_VIA_PEER_UNREACHABLE] = "peer_unreachable",
    [PROXY_VIA_BAD_ANSWER] = "bad_answer",
};

static const char *const state_names[] = {
    [PROXY_CONN_SNIFF] = "sniff",           [PROXY_CONN_HANDSHAKE] = "handshake",
    [PROXY_CONN_CONNECTING] = "connecting", [PROXY_CONN_RELAY] = "relay",
    [PROXY_CONN_DRAINING] = "draining",     [PROXY_CONN_CLOSED] = "closed",
};

static void client_read_cb(struct proxy_io *io, void *arg);
static void client_write_cb(struct proxy_io *io, void *arg);
static void client_event_cb(struct proxy_io *io, short what, void *arg);
static void server_read_cb(struct proxy_io *io, void *arg);
static void server_write_cb(struct proxy_io *io, void *arg);
static void server_event_cb(struct proxy_io *io, short what, void *arg);
static void conn_connect(struct proxy_conn *c);
static void conn_finish_client(struct proxy_conn *c, enum proxy_close_reason reason);
static bool conn_resume_up(struct proxy_conn *c);
static void conn_client_last(struct proxy_conn *c, enum proxy_close_reason reason);
static bool conn_cut(struct proxy_conn *c, struct proxy_relay *r);
static void conn_lend_end(struct proxy_conn *c);
static bool conn_log_ok(struct proxy_conn *c, enum log_level level);
static void conn_pp_timeout(struct proxy_conn *c);
static void conn_via_timeout(struct proxy_conn *c);
static void conn_answer_502(struct proxy_conn *c, enum proxy_close_reason reason);

/*
 * conn_detail(c, fmt, ...):
 * Set ${c}'s reason in plain words (the close line's detail=, a 502's body, metrics) to the
 * formatted text, cut at PROXY_DETAIL_MAX - 1 bytes.  Its buffer is taken on the first failure
 * to explain, so that a connection that never needs one (nearly all) holds none: 1.5 KiB less
 * per idle connection.  Out of memory: the detail stays what it was.
 */
static void __attribute__((format(printf, 2, 3)))
conn_detail(struct proxy_conn *c, const char *fmt, ...)
{
    va_list ap;

    if (c->detail == NULL && (c->detail = malloc(PROXY_DETAIL_MAX)) == NULL) {
        return;
    }
    va_start(ap, fmt);
    (void)vsnprintf(c->detail, PROXY_DETAIL_MAX, fmt, ap);
    va_end(ap);
}

/* conn_detail_str(c): ${c}'s detail, "" when none was set. */
static const char *
conn_detail_str(const struct proxy_conn *c)
{
    return c->detail != NULL ? c->detail : "";
}

/*
 * proxy_conn_close_reason_str(reason):
 * The stable snake_case name of ${reason}, for logs and metrics.
 */
const char *
proxy_conn_close_reason_str(enum proxy_close_reason reason)
{
    if ((unsigned)reason >= PROXY_CLOSE__COUNT) {
        return "unknown";
    }
    return close_reason_names[reason];
}

/*
 * proxy_conn_pp_outcome_str(o):
 * The stable snake_case name of PROXY protocol outcome ${o}, for logs and metrics.
 */
const char *
proxy_conn_pp_outcome_str(enum proxy_pp_outcome o)
{
    if ((unsigned)o >= PROXY_PPO__COUNT) {
        return "unknown";
    }
    return pp_outcome_names[o];
}

/*
 * proxy_conn_via_result_str(r):
 * The stable snake_case name of CONNECT outcome ${r}, for logs, 502 bodies and metrics.
 */
const char *
proxy_conn_via_result_str(enum proxy_via_result r)
{
    if ((unsigned)r >= PROXY_VIA__COUNT) {
        return "unknown";
    }
    return via_result_names[r];
}

static bool
conn_inbound(const struct proxy_conn *c)
{
    return c->l->cfg->mode == CONFIG_MODE_INBOUND;
}

static bool
conn_http(const struct proxy_conn *c)
{
    return c->l->cfg->protocol == CONFIG_PROTOCOL_HTTP;
}

static struct event_base *
conn_base(const struct proxy_conn *c)
{
    return c->l->w->base;
}

static void
conn_check(const struct proxy_conn *c)
{
    assert(c != NULL && c->magic == PROXY_CONN_MAGIC);
    (void)c;
}

/* Legal moves only; anything else is a programming error. */
static void
conn_set_state(struct proxy_conn *c, enum proxy_state to)
{
    static const unsigned legal[] = {
        /* SNIFF is also the "just accepted" state of outbound, which dials at once. */
        [PROXY_CONN_SNIFF] = (1u << PROXY_CONN_HANDSHAKE) | (1u << PROXY_CONN_DRAINING) |
                             (1u << PROXY_CONN_CONNECTING) | (1u << PROXY_CONN_RELAY),
        /* HANDSHAKE -> RELAY: inbound lending, no backend connection until a request. */
        [PROXY_CONN_HANDSHAKE] = (1u << PROXY_CONN_CONNECTING) | (1u << PROXY_CONN_RELAY),
        [PROXY_CONN_CONNECTING] = (1u << PROXY_CONN_RELAY) | (1u << PROXY_CONN_DRAINING),
        /* RELAY -> DRAINING: the other side failed before any response byte (502), or the
         * pooled peer connection was let go.  RELAY -> CONNECTING: a stale pooled one, or
         * (lending) a request with no pooled connection to take. */
        [PROXY_CONN_RELAY] = (1u << PROXY_CONN_DRAINING) | (1u << PROXY_CONN_CONNECTING),
        [PROXY_CONN_DRAINING] = 0,
        [PROXY_CONN_CLOSED] = 0,
    };

    assert(to == PROXY_CONN_CLOSED || (legal[c->state] & (1u << to)) != 0);
    (void)legal; /* only read by assert() */
    if (log_enabled(LOG_DEBUG)) {
        log_kv(LOG_DEBUG, "state", "listener", c->l->cfg->name, "remote", c->remote, "from",
               state_names[c->state], "to", state_names[to], (const char *)NULL);
    }
    c->state = to;
}

static const char *const side_state_names[] = {
    [PROXY_SIDE_NONE] = "none",     [PROXY_SIDE_OPENING] = "opening", [PROXY_SIDE_UP] = "up",
    [PROXY_SIDE_FAILED] = "failed", [PROXY_SIDE_RESET] = "reset",
};

/*
 * conn_side_set(c, st, to):
 * Move the side of ${c} whose state is *${st} (&c->client_st or &c->server_st) to ${to}.  A
 * side that failed stays failed, and one to be reset stays so, until it ends (NONE): nothing
 * that happens to it afterwards makes it healthy again.
 */
static void
conn_side_set(struct proxy_conn *c, enum proxy_side_state *st, enum proxy_side_state to)
{
    if (to != PROXY_SIDE_NONE &&
        (*st == PROXY_SIDE_RESET || (*st == PROXY_SIDE_FAILED && to != PROXY_SIDE_RESET))) {
        return;
    }
    if (*st != to && log_enabled(LOG_DEBUG)) {
        log_kv(LOG_DEBUG, "side", "listener", c->l->cfg->name, "remote", c->remote, "side",
               st == &c->client_st ? "client" : "server", "from", side_state_names[*st], "to",
               side_state_names[to], (const char *)NULL);
    }
    *st = to;
}

static void
conn_timer_in(struct proxy_conn *c, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};

    evtimer_add(c->timer, &tv);
}

static uint64_t
tv_ms(const struct timeval *tv)
{
    return (uint64_t)tv->tv_sec * 1000u + (uint64_t)tv->tv_usec / 1000u;
}

static void
conn_touch(struct proxy_conn *c)
{
    event_base_gettimeofday_cached(conn_base(c), &c->last_active);
}

static void
format_sockaddr(const struct sockaddr *sa, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;

        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        port = ntohs(sin->sin_port);
        snprintf(buf, len, "%s:%u", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;

        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
        port = ntohs(sin6->sin6_port);
        snprintf(buf, len, "[%s]:%u", host, port);
    } else {
        snprintf(buf, len, "unknown");
    }
}

static void
set_nodelay(evutil_socket_t fd)
{
    int one = 1;

    if (fd >= 0) {
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
}

/*
 * Does the client's socket linger after ${c} ends for ${reason} (proxy_linger.c)?  An inbound
 * client refused during its handshake: we sent it a fatal alert (or, for a resumed session
 * refused after it, nothing more), and a TLS 1.3 client has sent its request by then, unread;
 * a plain close() would reset the connection and the client would lose the alert.  Decided
 * before the state becomes CLOSED.
 */
static bool
conn_client_lingers(const struct proxy_conn *c, enum proxy_close_reason reason)
{
    return conn_inbound(c) && c->client != NULL && c->state == PROXY_CONN_HANDSHAKE &&
           (reason == PROXY_CLOSE_REJECTED || reason == PROXY_CLOSE_HANDSHAKE_FAILED);
}

/*
 * A side of ${c} on ${fd} (or -1: it connects later) with ${ssl} (or NULL: plain) in ${role}.
 * Takes ${fd} and ${ssl} whatever happens; NULL on OOM.
 */
static struct proxy_io *
conn_side(struct proxy_conn *c, evutil_socket_t fd, SSL *ssl, enum proxy_io_role role)
{
    struct proxy_io *io = proxy_worker_side_new(c->l->w);

    if (io == NULL) {
        if (fd >= 0) {
            evutil_closesocket(fd);
        }
        SSL_free(ssl);
        return NULL;
    }
    if (proxy_io_init(io, conn_base(c), fd, ssl, role) < 0) {
        proxy_spare_put(&c->l->w->spare_sides, io); /* init freed fd and ssl */
        return NULL;
    }
    return io;
}

/* How long a refused client may linger: PROXY_LINGER_MS, never more than the handshake timeout. */
static uint64_t
conn_linger_ms(const struct proxy_conn *c)
{
    uint64_t ms = c->l->limits->handshake_timeout_ms;

    return ms < PROXY_LINGER_MS ? ms : PROXY_LINGER_MS;
}

/* ---- the end of each side: one function per side, on every path ---- */

/*
 * May the client side still get a close_notify: TLS (inbound), its handshake done, no error
 * or reset seen on it, none sent yet?  (OpenSSL: no SSL_shutdown() after a fatal error.)
 */
static bool
conn_client_tls_ok(const struct proxy_conn *c)
{
    return c->client_st == PROXY_SIDE_UP && proxy_io_ssl(c->client) != NULL && !c->down.shut_sent;
}

/* Is the server side open, with no error seen on it and no end sent to it? */
static bool
conn_server_healthy(const struct proxy_conn *c)
{
    return c->server_st == PROXY_SIDE_UP && !c->up.shut_sent;
}

/* May the server side still get a close_notify (outbound: the peer's TLS side)? */
static bool
conn_server_tls_ok(const struct proxy_conn *c)
{
    return conn_server_healthy(c) && proxy_io_ssl(c->server) != NULL;
}

/*
 * Whose pooled connections ${c} may take and gives back (proxy_pool_take()): inbound, its
 * client's (struct proxy_identity); outbound, anyone's (NULL).
 */
static const unsigned char *
conn_pool_owner(const struct proxy_conn *c)
{
    return conn_inbound(c) && c->id != NULL ? c->id->pool_owner : NULL;
}

/*
 * Can the peer side go back to the pool rather than close: pooling on, the side healthy
 * (conn_server_healthy(): for the peer, its TLS session up), the peer has not ended its
 * side, and the exchange says it is between exchanges (proxy_exchange_reusable(): no
 * request of ours in flight or half-sent, the last response read to its end with keep-alive
 * both ways; proxy_pool_put() also refuses bytes left in either buffer).
 */
static bool
conn_server_poolable(const struct proxy_conn *c)
{
    return proxy_pool_enabled(c->l) && conn_server_healthy(c) && !c->down.eof_seen &&
           proxy_exchange_reusable(c);
}

/*
 * conn_close_server(c):
 * The one end of the backend/peer side of ${c}, on every path: the client done, our own
 * answer to it (400, 403, 408, 502, 504...), an error, a timeout, drain and stop.  A peer
 * connection between exchanges goes back to the pool (conn_server_poolable()); any other is
 * closed, after a close_notify when its TLS session is up and healthy, so that the peer sees
 * a clean end and our session stays resumable (OpenSSL drops the session of an SSL freed
 * without SSL_shutdown()).  A side ended with bytes still queued for it (a drop) gets no
 * close_notify: those bytes are lost, and a close_notify would tell the other end that its
 * stream had ended whole (proxy_io_shutdown() sends it only once the output is written).
 * Afterwards c->server is NULL and its state NONE.
 *
 * Safe inside the server's own callbacks (proxy_io_free() is).  The relays' pointers to the
 * side are left for the caller to clear; c->down.eof_seen (nothing more comes from that side)
 * keeps a pump from turning its reading back on or off.
 */
static void
conn_close_server(struct proxy_conn *c)
{
    if (c->server == NULL) {
        return;
    }
    if (conn_server_poolable(c)) {
        /* Ownership moves to the pool, which sets its own callbacks and watermarks. */
        proxy_pool_put(c->l, c->server, conn_inbound(c) ? NULL : &c->verify, conn_pool_owner(c));
    } else {
        if (conn_server_tls_ok(c)) {
            proxy_io_shutdown(c->server); /* close_notify, then FIN */
        }
        proxy_worker_side_free(c->l->w, c->server);
    }
    c->server = NULL;
    c->down.eof_seen = true;
    conn_side_set(c, &c->server_st, PROXY_SIDE_NONE);
}

/*
 * conn_close_client(c, lingers):
 * The one end of the client side of ${c}: a close_notify when its TLS session is up and
 * healthy (conn_client_tls_ok()) and nothing is left queued for it (as conn_close_server()),
 * then the socket closes; with ${lingers} (a client refused
 * in its handshake, conn_client_lingers()) the socket is handed to proxy_linger.c instead,
 * after our alert: FIN, then the client's request is read so that no RST destroys the alert.
 */
static void
conn_close_client(struct proxy_conn *c, bool lingers)
{
    evutil_socket_t fd;

    if (c->client == NULL) {
        return;
    }
    fd = lingers ? proxy_io_take_fd(c->client) : -1;
    if (conn_client_tls_ok(c)) {
        proxy_io_shutdown(c->client); /* close_notify, then FIN */
    }
    proxy_worker_side_free(c->l->w, c->client);
    c->client = NULL;
    conn_side_set(c, &c->client_st, PROXY_SIDE_NONE);
    if (fd >= 0) {
        proxy_linger_close(c->l->w, fd, conn_linger_ms(c));
    }
}

/*
 * Half-close the client side once everything it is owed is written (DRAINING): close_notify
 * when its TLS session is healthy (proxy_io_shutdown() sends one only then), then FIN; reading
 * goes on until the client closes.
 */
static void
conn_shut_client(struct proxy_conn *c)
{
    proxy_io_shutdown(c->client);
    c->down.shut_sent = true;
}

/* The one place that turns a connection's end into /metrics counters. */
static void
conn_count_close(const struct proxy_conn *c, enum proxy_close_reason reason)
{
    struct proxy_stats *m = c->l->stats;

    switch (reason) {
    case PROXY_CLOSE_REJECTED:
        PROXY_STATS_ADD(m->hs_rejected[c->verify.reject], 1);
        if (!conn_inbound(c)) {
            proxy_stats_upstream_failed(
                m, conn_detail_str(c)); /* the peer's certificate broke a rule */
        }
        break;
    case PROXY_CLOSE_HANDSHAKE_TIMEOUT:
    case PROXY_CLOSE_HANDSHAKE_FAILED:
    case PROXY_CLOSE_NOT_TLS:
        PROXY_STATS_ADD(m->hs_failed[reason], 1);
        break;
    case PROXY_CLOSE_PEER_HANDSHAKE_FAILED:
        /* A TLS 1.3 refusal after our handshake: failed only (conn_count_peer_answered). */
        PROXY_STATS_ADD(m->hs_failed[reason], 1);
        proxy_stats_upstream_failed(m, conn_detail_str(c)); /* readiness: ferry_peer_up */
        return;
    case PROXY_CLOSE_BACKEND_UNREACHABLE:
    case PROXY_CLOSE_PEER_UNREACHABLE:
        PROXY_STATS_ADD(m->upstream_failures, 1);
        proxy_stats_upstream_failed(
            m, conn_detail_str(c)); /* readiness: ferry_backend_up / ferry_peer_up */
        break;
    default:
        break;
    }
    if (c->hs_pending) {
        /* An outbound handshake the peer never answered nor refused: ok, counted once. */
        proxy_stats_handshake(m, &c->dialed, &c->hs_done);
    }
}

/*
 * A handshake (inbound: with the client; outbound: with the peer) passed every rule.  Inbound
 * it is counted now; outbound, under TLS 1.3 the peer may still refuse our certificate, so it
 * is counted ok (with the time it took) when the peer's first bytes arrive or the connection
 * ends without that refusal (conn_count_close): each handshake once, never ok and failed.
 */
static void
conn_count_handshake(struct proxy_conn *c)
{
    struct timeval now;

    evutil_gettimeofday(&now, NULL);
    if (conn_inbound(c)) {
        proxy_stats_handshake(c->l->stats, &c->started, &now);
    } else {
        c->hs_done = now;
        c->hs_pending = true;
    }
}

/* Outbound: the peer's first bytes arrived; its handshake is ok (conn_count_handshake). */
static void
conn_count_peer_answered(struct proxy_conn *c)
{
    if (c->hs_pending) {
        c->hs_pending = false;
        proxy_stats_handshake(c->l->stats, &c->dialed, &c->hs_done);
    }
}

/*
 * conn_request_owed(c, in, final):
 * ferry answered ${c} (c->owed_status) before any request was framed: a backend or peer that
 * failed while connecting, plaintext on a TLS port.  Write the access-log line of the request
 * that answer went to, once its request line is at the front of ${in} (may be NULL), or with
 * ${final} (the connection ends) with what there is.
 */
static void
conn_request_owed(struct proxy_conn *c, struct evbuffer *in, bool final)
{
    char buf[PROXY_REQUEST_LINE_PEEK], method[16], target[256];
    ev_ssize_t n = 0;

    if (c->owed_status == 0) {
        return;
    }
    if (in != NULL) {
        n = evbuffer_copyout(in, buf, sizeof(buf));
    }
    if (!proxy_exchange_request_line_parse(buf, n > 0 ? (size_t)n : 0, method, sizeof(method),
                                           target, sizeof(target)) &&
        !final) {
        return;
    }
    /* Its body (if any) was read and dropped, never framed: bytes_in 0.  Plaintext on a TLS
     * port is a connection that never passed a handshake: logged within conn_log_ok()'s
     * bounds (the fourth black-box attack: 64,000 such lines in 4 s), always counted. */
    if (conn_log_ok(c, LOG_INFO)) {
        proxy_exchange_request_log(c, method, target, c->owed_status, 0, c->owed_bytes, &c->started,
                                   NULL);
    } else {
        proxy_stats_request(c->l->stats, c->l->w->base, &c->started, c->owed_status);
    }
    c->owed_status = 0;
}

/* ---- the HTTP exchange: it decides, the connection acts ---- */

/*
 * Inbound http, once its handshake passed: who the client is, for every request and log line
 * of ${c} from now on (its one identity becomes peer=).  Returns 0, or -1 on OOM.
 */
static int
conn_identify(struct proxy_conn *c)
{
    const char *peer;

    if (!conn_inbound(c) || !conn_http(c) || c->id != NULL) {
        return 0;
    }
    if ((c->id = proxy_exchange_identity(c)) == NULL) {
        return -1;
    }
    if ((peer = proxy_exchange_peer(c)) != NULL) {
        snprintf(c->verify.peer.name, sizeof(c->verify.peer.name), "%s", peer);
    }
    return 0;
}

/* protocol http: start ${c}'s exchange and frame both directions through it.  Returns 0, or -1
 * on OOM. */
static int
conn_exchange_begin(struct proxy_conn *c)
{
    if (conn_identify(c) < 0 || (c->x = proxy_exchange_start(c, proxy_conn_report)) == NULL) {
        return -1;
    }
    c->up.http = proxy_exchange_framer(c, PROXY_HTTP_REQUEST);
    c->down.http = proxy_exchange_framer(c, PROXY_HTTP_RESPONSE);
    return 0;
}

/* End ${c}'s exchange (kept by the worker for the next one: proxy_exchange_free()). */
static void
conn_exchange_end(struct proxy_conn *c)
{
    proxy_exchange_free(c);
    c->x = NULL;
    c->up.http = NULL;
    c->down.http = NULL;
}

/*
 * proxy_conn_act(c, v):
 * Do what the exchange decided (proxy_internal.h, enum proxy_verdict_kind).  Returns true
 * while ${c} relays on as before; false when it answered, closed, let a side go or went on
 * in another way (it may be freed): the caller returns at once.
 */
bool
proxy_conn_act(struct proxy_conn *c, struct proxy_verdict v)
{
    int status;
    const char *phrase, *body;

    switch (v.kind) {
    case PROXY_VERDICT_CONTINUE:
        return true;
    case PROXY_VERDICT_RESUME_UP:
        /* A response made room in the queue: frame the requests that waited, then decide
         * again (the response that made room may also have been the client's last). */
        return conn_resume_up(c) && proxy_conn_act(c, proxy_exchange_next(c));
    case PROXY_VERDICT_ANSWER:
        conn_detail(c, "%s", proxy_exchange_why(c));
        body = proxy_exchange_answer(c, &status, &phrase);
        proxy_conn_answer(c, v.reason, status, phrase, "application/json", body);
        return false;
    case PROXY_VERDICT_ANSWER_LATER:
        conn_detail(c, "%s", proxy_exchange_why(c));
        /* Nothing more is read from the client: its request framer has stopped. */
        proxy_io_disable(c->client, EV_READ);
        return true;
    case PROXY_VERDICT_CLOSE:
        conn_detail(c, "%s", proxy_exchange_why(c));
        proxy_conn_drop(c, v.reason);
        return false;
    case PROXY_VERDICT_CLIENT_LAST:
        conn_client_last(c, v.reason);
        return false;
    case PROXY_VERDICT_LEND_END:
        conn_lend_end(c);
        return false;
    }
    return true;
}

/*
 * proxy_conn_report(c, v):
 * What the exchange's timers (header_timeout, backend_timeout) report, from the loop (never
 * from inside a framer): acted on at once (proxy_conn_act()).
 */
void
proxy_conn_report(struct proxy_conn *c, struct proxy_verdict v)
{
    (void)proxy_conn_act(c, v);
}

/*
 * proxy_conn_drop(c, reason):
 * The one teardown of a connection: log the summary line, cancel timers, end both sides
 * (conn_close_server(): the pool or close_notify; conn_close_client(): close_notify or
 * linger), update the listener accounting and free ${c}.  ${c} is invalid afterwards.
 */
void
proxy_conn_drop(struct proxy_conn *c, enum proxy_close_reason reason)
{
    struct proxy_listener *l = c->l;
    struct proxy_worker *w = l->w;
    struct timeval now;
    char dur[32], in[32], out[32];
    bool lingers;
    enum log_level lvl;

    conn_check(c);
    c->reason = reason;
    if (c->x != NULL && c->client != NULL && c->down.http != NULL &&
        c->client_st != PROXY_SIDE_RESET && proxy_http_out_to_eof(c->down.http) &&
        reason != PROXY_CLOSE_CLIENT_CLOSED) {
        /*
         * The client reads its response to the end of the connection, and this end is not
         * the response's own (a bad TLS record from the peer, a backend's reset: the fourth
         * black-box attack): a FIN or a close_notify would tell it the body was whole, so it
         * gets a reset, as in conn_cut() (which logged and set it up itself).
         */
        log_kv(LOG_WARN, "bad_response", "listener", c->l->cfg->name, "remote", c->remote, "target",
               c->l->target_text, "rule", "truncated", "msg",
               "the response was cut by a failure of the other side; the client's connection "
               "is reset, as its response runs to the end of the connection",
               (const char *)NULL);
        conn_side_set(c, &c->client_st, PROXY_SIDE_RESET);
        proxy_io_reset(c->client);
    }
    /* First, while the exchange can still say whether the peer side is between exchanges. */
    conn_close_server(c);
    /* Requests that never got their response get their access-log line first. */
    conn_request_owed(c, c->client != NULL ? proxy_io_input(c->client) : NULL, true);
    conn_exchange_end(c);
    /* A refused certificate's name (perhaps its URI SAN) is no peer's: its own warn line
     * names it, with its subject and SANs.  Formatted only when written (the level). */
    /* A load balancer's health check that ended as checks do: only at debug. */
    lvl = c->pp_local && reason == PROXY_CLOSE_CLIENT_CLOSED ? LOG_DEBUG : LOG_INFO;
    if (conn_log_ok(c, lvl)) {
        /* The real clock, as for c->started: the loop's cached time may be older than that. */
        evutil_gettimeofday(&now, NULL);
        snprintf(dur, sizeof(dur), "%llu", (unsigned long long)(tv_ms(&now) - tv_ms(&c->started)));
        snprintf(in, sizeof(in), "%llu", (unsigned long long)c->up.bytes);
        snprintf(out, sizeof(out), "%llu", (unsigned long long)c->down.bytes);
        log_kv(lvl, "conn_closed", "listener", c->l->cfg->name, "remote", c->remote, "sender",
               c->pp_sender, "peer",
               c->verify.reject == TLS_REJECT_NONE ? c->verify.peer.name : NULL, "target",
               c->l->target_text, "bytes_in", in, "bytes_out", out, "duration_ms", dur, "reason",
               proxy_conn_close_reason_str(reason), "detail", conn_detail_str(c),
               (const char *)NULL);
    }
    lingers = conn_client_lingers(c, reason);
    conn_set_state(c, PROXY_CONN_CLOSED);
    conn_count_close(c, reason);

    if (c->sniff != NULL) {
        event_free(c->sniff);
        c->sniff = NULL;
    }
    free(c->pre_buf);
    c->pre_buf = NULL;
    free(c->pp_sender);
    c->pp_sender = NULL;
    if (c->timer != NULL) {
        event_free(c->timer);
        c->timer = NULL;
    }
    conn_close_client(c, lingers);
    if (c->fd >= 0) {
        evutil_closesocket(c->fd);
        c->fd = -1;
    }
    if (c->up.hold != NULL) {
        evbuffer_free(c->up.hold);
        c->up.hold = NULL;
    }

    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        w->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    PROXY_STAT_SUB(w->n_conns, 1);
    proxy_worker_conns_changed(w, false);
    PROXY_STATS_SUB(l->stats->conns_open, 1);
    PROXY_STATS_ADD(l->stats->bytes_in, c->up.bytes);
    PROXY_STATS_ADD(l->stats->bytes_out, c->down.bytes);
    c->magic = 0;
    free(c->detail);
    c->detail = NULL;
    proxy_exchange_identity_free(c->id);
    c->id = NULL;
    proxy_spare_put(&w->spare_conns, c);
    if (--l->n_conns == 0 && l->retired) {
        /* The last connection of a listener that a reload replaced. */
        proxy_listener_free(l);
    }
    proxy_worker_conn_gone(w);
}

/*
 * Both directions have passed their FIN on, or (pool) the client's end was held back for a
 * response that ended the peer connection instead: the connection ended normally.
 */
static bool
conn_relay_finished(struct proxy_conn *c)
{
    if ((c->up.shut_sent || c->client_eof) && c->down.shut_sent) {
        proxy_conn_drop(c, PROXY_CLOSE_DONE);
        return true;
    }
    return false;
}

/* ---- our own answers: 400 on a TLS port, 502 when the other side fails ---- */

/*
 * proxy_conn_answer(c, reason, status, phrase, ctype, body):
 * Queue our own HTTP answer to the client and move to DRAINING: the backend/peer side ends
 * (conn_close_server(): a healthy peer connection between exchanges goes back to the pool,
 * any other closes with close_notify); once the answer is written the client's side is
 * half-closed and whatever the client still sends is read and dropped until it closes or
 * PROXY_LINGER_MS pass, so it sees our answer rather than a reset.  ${reason} is the close
 * reason logged at the end.
 */
void
proxy_conn_answer(struct proxy_conn *c, enum proxy_close_reason reason, int status,
                  const char *phrase, const char *ctype, const char *body)
{
    struct evbuffer *out = proxy_io_output(c->client);

    PROXY_STATS_ADD(c->l->stats->requests[status / 100], 1); /* our answers count too */
    /* ... and has its access-log line, like every relayed response: the request it answers,
     * or, before any was framed, the one in the client's input now or later. */
    if (!proxy_exchange_answered(c, status, strlen(body))) {
        c->owed_status = status;
        c->owed_bytes = strlen(body);
        conn_request_owed(c, c->client != NULL ? proxy_io_input(c->client) : NULL, false);
    }
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                        "Connection: close\r\nServer: ferry\r\n\r\n%s",
                        status, phrase, ctype, strlen(body), body);
    conn_finish_client(c, reason);
}

/*
 * conn_finish_client(c, reason):
 * End ${c} without dropping what the client is owed: the backend/peer side ends
 * (conn_close_server()), the client's output (our answer, or the response relayed so far) is
 * written, then the client's side is half-closed and whatever it still sends is read and
 * dropped until it closes or PROXY_LINGER_MS pass.  ${reason} is the close reason logged at
 * the end.
 */
static void
conn_finish_client(struct proxy_conn *c, enum proxy_close_reason reason)
{
    c->reason = reason;
    /* Between exchanges back to the pool, else closed with close_notify when healthy. */
    conn_close_server(c);
    conn_set_state(c, PROXY_CONN_DRAINING);
    proxy_io_set_write_low(c->client, 0);
    proxy_io_enable(c->client, EV_READ | EV_WRITE);
    event_del(c->timer);
    conn_timer_in(c, PROXY_LINGER_MS);
    if (evbuffer_get_length(proxy_io_output(c->client)) == 0) {
        /* Nothing to write, so no write callback will come: half-close now. */
        client_write_cb(c->client, c);
    }
}

static void
conn_answer_502(struct proxy_conn *c, enum proxy_close_reason reason)
{
    /* The detail escapes to at most 6 bytes a byte (\u00XX): the body always fits. */
    char body[PROXY_DETAIL_MAX * 6 + 128];
    struct config_json_buf b;
    struct config_json j;

    config_json_buf_init(&b, body, sizeof(body));
    config_json_init(&j, config_json_buf_put, &b);
    config_json_begin_object(&j);
    config_json_kv_string(&j, "error", "bad_gateway");
    config_json_kv_string(&j, "reason", conn_detail_str(c));
    if (c->via_result != PROXY_VIA_OK) {
        config_json_kv_string(&j, "proxy_result",
                              proxy_conn_via_result_str((enum proxy_via_result)c->via_result));
    }
    config_json_end_object(&j);
    config_json_buf_put(&b, "\n", 1);
    proxy_conn_answer(c, reason, 502, "Bad Gateway", "application/json", body);
}

/*
 * The other side (backend or peer) could not be reached or verified: log it once at warn,
 * answer 502 for protocol http, or just close for protocol tcp.
 */
static void
conn_upstream_failed(struct proxy_conn *c, enum proxy_close_reason reason, const char *event)
{
    log_kv(LOG_WARN, event, "listener", c->l->cfg->name, "remote", c->remote, "target",
           c->l->target_text, "subject", c->verify.peer.subject, "sans", c->verify.peer.sans,
           "reason",
           c->verify.reject != TLS_REJECT_NONE ? tls_reject_str(c->verify.reject)
                                               : proxy_conn_close_reason_str(reason),
           "msg", conn_detail_str(c), (const char *)NULL);
    if (conn_http(c) && c->client != NULL) {
        conn_answer_502(c, reason);
        return;
    }
    proxy_conn_drop(c, reason);
}

/* ---- timers ---- */

static void
conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_conn *c = arg;
    const struct config_limits *lim = c->l->limits;
    struct timeval now;
    uint64_t idle;

    (void)fd;
    (void)what;
    conn_check(c);
    if (c->state == PROXY_CONN_SNIFF && c->pre_buf != NULL) {
        conn_pp_timeout(c); /* still reading the PROXY header */
        return;
    }
    switch (c->state) {
    case PROXY_CONN_SNIFF:
    case PROXY_CONN_HANDSHAKE:
        conn_detail(c, "TLS handshake not finished within %llums",
                    (unsigned long long)lim->handshake_timeout_ms);
        proxy_conn_drop(c, PROXY_CLOSE_HANDSHAKE_TIMEOUT);
        return;
    case PROXY_CONN_CONNECTING:
        if (c->via_phase == PROXY_VIA_DIALING || c->via_phase == PROXY_VIA_ANSWER) {
            conn_via_timeout(c);
            return;
        }
        conn_detail(c, "%s %s did not %s within %llums", conn_inbound(c) ? "backend" : "peer",
                    c->l->target_text,
                    conn_inbound(c) ? "accept the connection" : "complete the TLS handshake",
                    (unsigned long long)lim->handshake_timeout_ms);
        conn_upstream_failed(
            c, conn_inbound(c) ? PROXY_CLOSE_BACKEND_UNREACHABLE : PROXY_CLOSE_PEER_UNREACHABLE,
            conn_inbound(c) ? "backend_unreachable" : "peer_unreachable");
        return;
    case PROXY_CONN_RELAY:
        event_base_gettimeofday_cached(conn_base(c), &now);
        idle = tv_ms(&now) - tv_ms(&c->last_active);
        if (idle >= lim->idle_timeout_ms) {
            conn_detail(c, "no data either way for %llums", (unsigned long long)idle);
            proxy_conn_drop(c, PROXY_CLOSE_IDLE_TIMEOUT);
            return;
        }
        conn_timer_in(c, lim->idle_timeout_ms - idle);
        return;
    case PROXY_CONN_DRAINING:
    case PROXY_CONN_CLOSED:
        proxy_conn_drop(c, c->reason);
        return;
    }
}

/* ---- relay ---- */

/* Request bytes were framed: what follows the client's last request is read and dropped. */
static void
conn_after_read(struct proxy_conn *c)
{
    if (proxy_exchange_after_read(c) && c->client != NULL) {
        struct evbuffer *in = proxy_io_input(c->client);

        evbuffer_drain(in, evbuffer_get_length(in));
    }
}

/*
 * Move the client's bytes on.  A request the HTTP layer refuses is answered (or the
 * connection dropped) by proxy_exchange_request_failed().  Lending (no peer connection held):
 * a request head the framer forwarded waits in c->up.hold, and a peer connection is lent for
 * it now (conn_connect()).  Returns false when ${c} no longer relays as before (it may be
 * freed, or went on with a peer connection): the caller must return at once.
 */
static bool
conn_pump_up(struct proxy_conn *c)
{
    enum proxy_http_result res;

    if (c->x == NULL && c->up.hold != NULL) {
        /* Lending: a client between requests has no exchange; it gets one when it speaks. */
        if (evbuffer_get_length(proxy_io_input(c->client)) == 0) {
            return true;
        }
        if (conn_exchange_begin(c) < 0) {
            conn_detail(c, "out of memory");
            proxy_conn_drop(c, PROXY_CLOSE_OOM);
            return false;
        }
    }
    res = proxy_relay_pump(&c->up);
    if (res != PROXY_HTTP_OK) {
        /*
         * A refused request: answered now, or after the responses to the requests before it.
         * Lending: those may still wait in the hold for a peer connection; lend them one.
         */
        if (proxy_conn_act(c, proxy_exchange_request_failed(c, res)) && c->server == NULL &&
            c->up.hold != NULL && evbuffer_get_length(c->up.hold) > 0) {
            conn_connect(c);
        }
        return false;
    }
    conn_after_read(c);
    if (c->server == NULL && c->up.hold != NULL && evbuffer_get_length(c->up.hold) > 0) {
        conn_connect(c);
        return false;
    }
    return true;
}

/*
 * A response made room in a full queue of pipelined requests: frame the requests that waited
 * in the client's input, and an end of stream behind them.  Returns false when ${c} no longer
 * relays (it may be freed).
 */
static bool
conn_resume_up(struct proxy_conn *c)
{
    enum proxy_http_result res = proxy_relay_resume(&c->up);

    if (res != PROXY_HTTP_OK) {
        (void)proxy_conn_act(c, proxy_exchange_request_failed(c, res));
        return false;
    }
    if (conn_cut(c, &c->up)) {
        return false; /* the client ended inside the request that waited */
    }
    conn_after_read(c);
    return !conn_relay_finished(c);
}

/* ---- the client's last request; the outbound pool ---- */

/*
 * The client is done (verdict CLIENT_LAST, proxy_exchange_decide(): its last request
 * answered, HTTP/1.0 without keep-alive or Connection: close, or, pool on, it closed its side)
 * and nothing is in flight: give the peer connection to the pool when it can carry another request
 * (else close it, as a backend connection is), then finish the client: its response goes out, then
 * our FIN (after close_notify), and the connection ends when the client closes (or after
 * PROXY_LINGER_MS), whether or not the backend or peer ever closes its side.  ${reason} is the
 * close line's: done, or server_error when the backend or peer broke the exchange after a whole
 * response (bytes nobody asked for, an answer before the request's end).
 */
static void
conn_client_last(struct proxy_conn *c, enum proxy_close_reason reason)
{
    if (reason != PROXY_CLOSE_DONE) {
        conn_detail(c, "%s", proxy_exchange_why(c));
    }
    conn_close_server(c); /* lending: the client may hold no peer connection */
    c->up.dst = c->down.src = NULL;
    conn_exchange_end(c); /* nothing is in flight: no timer of it may fire any more */
    c->reason = reason;
    conn_set_state(c, PROXY_CONN_DRAINING);
    event_del(c->timer);
    conn_timer_in(c, PROXY_LINGER_MS);
    proxy_io_enable(c->client, EV_READ); /* the client's end; usually on already */
    if (evbuffer_get_length(proxy_io_output(c->client)) == 0) {
        /* Nothing left to write, so no write callback will come: finish now. */
        client_write_cb(c->client, c);
        return;
    }
    proxy_io_set_write_low(c->client, 0);
    proxy_io_enable(c->client, EV_WRITE);
}

/*
 * Lending: the peer connection's last response was read to its end and the client may send
 * more (verdict LEND_END, proxy_exchange_decide()): give the connection back to the pool (closed
 * there when it cannot take it) and keep the client, holding no peer connection, no exchange (its
 * framers are between messages; nothing in it outlives a request) and none of the buffers that idle
 * in its relay, until it speaks again and its next request head is ready (conn_pump_up()).
 */
static void
conn_lend_end(struct proxy_conn *c)
{
    proxy_relay_quiet(&c->up);
    /* Back to the pool (which owns it from here), or closed with close_notify when it may not
     * carry another request (a 102/103 was seen on it): never kept by an idle client. */
    conn_close_server(c);
    c->up.dst = NULL;
    c->down.src = NULL;
    c->server_from = PROXY_ORIGIN_DIALED;
    c->down.eof_seen = false;
    c->down.shut_sent = false;
    c->down.throttled = false;
    proxy_io_set_write_low(c->client, 0);
    if (c->up.throttled) {
        /* The peer connection's output had filled up; it is empty now. */
        c->up.throttled = false;
        proxy_io_enable(c->client, EV_READ);
    }
    conn_exchange_end(c); /* nothing is in flight: no access-log line is owed */
}

/*
 * protocol http with the pool on (outbound: at accept; inbound: once the client's handshake
 * passed): relay at once with no connection to the peer or backend.  One is lent per request
 * (conn_pump_up() when a head is ready, conn_lend_end() after its response), so an idle
 * keep-alive client holds none.  Returns 0, or -1 on OOM.
 */
static int
conn_start_lending(struct proxy_conn *c)
{
    c->up.hold = evbuffer_new();
    if (c->up.hold == NULL) {
        return -1;
    }
    conn_set_state(c, PROXY_CONN_RELAY);
    proxy_relay_init(&c->up, c->client, NULL, !conn_inbound(c));
    c->down.src = NULL;
    c->down.dst = c->client;
    c->down.dst_tls = conn_inbound(c);
    conn_touch(c);
    event_del(c->timer);
    conn_timer_in(c, c->l->limits->idle_timeout_ms);
    return 0;
}

/*
 * Lending: the client sent its end of stream while no peer connection is lent.  A request that
 * came with it gets one (conn_pump_up()); else the client is done: its response goes out, then
 * our FIN (conn_client_last()).
 */
static void
conn_lend_client_ended(struct proxy_conn *c)
{
    c->client_eof = true;
    if (!conn_pump_up(c)) {
        return;
    }
    conn_client_last(c, PROXY_CLOSE_DONE);
}

/*
 * The client sent its end of stream while relaying (or before).  With the pool on and the
 * request stream between messages, the peer connection is not half-closed: it stays open for
 * the response still due, then goes to the pool.  Returns true when handled that way (${c}
 * may be gone), false to pass the end on to the peer as usual.
 */
static bool
conn_pool_client_ended(struct proxy_conn *c)
{
    if (!proxy_pool_enabled(c->l) || c->x == NULL || c->server == NULL || c->down.eof_seen) {
        return false;
    }
    if (!conn_pump_up(c)) {
        return true;
    }
    if (!proxy_exchange_requests_idle(c)) {
        return false;
    }
    c->client_eof = true;
    (void)proxy_conn_act(c, proxy_exchange_next(c)); /* CLIENT_LAST once nothing is owed */
    return true;
}

/*
 * A pooled peer connection failed before answering: go on with a new connection (never a
 * pooled one), once, resending its one idempotent request if there is one.  Returns true when
 * it did.
 */
static bool
conn_pool_retry(struct proxy_conn *c)
{
    if (!proxy_exchange_can_retry(c) || evbuffer_get_length(proxy_io_input(c->server)) > 0) {
        return false;
    }
    log_kv(LOG_INFO, "pool_retry", "listener", c->l->cfg->name, "remote", c->remote, "target",
           c->l->target_text, "msg",
           "a pooled connection to the peer closed before answering; going on with a new "
           "connection",
           (const char *)NULL);
    /* It closed or failed: no close_notify, not pooled again. */
    conn_side_set(c, &c->server_st, PROXY_SIDE_FAILED);
    conn_close_server(c);
    c->up.dst = c->down.src = NULL;
    c->server_from = PROXY_ORIGIN_REDIALED;
    conn_connect(c);
    return true;
}

/*
 * backend_proxy_protocol: v2 (inbound protocol: tcp): the PROXY v2 header that goes to the
 * backend before any byte of the client's: the client's address (from the load balancer's
 * header when there was one), ferry's own address, the TLS version, the subject CN of the
 * peer's certificate and ferry's verified name of the peer (TLV PROXY_PP_TLV_PEER_NAME).
 * Returns 0, or -1 after dropping ${c}.
 */
static int
conn_send_backend_pp(struct proxy_conn *c)
{
    struct sockaddr_storage src, dst;
    int srclen = sizeof(src);
    socklen_t dstlen = sizeof(dst);
    unsigned char hdr[PROXY_PP_MAX];
    char cn[256] = "";
    SSL *ssl = proxy_io_ssl(c->client);
    X509 *cert = ssl != NULL ? SSL_get0_peer_certificate(ssl) : NULL;
    size_t n = 0;

    if (cert != NULL && X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn,
                                                  sizeof(cn)) < 0) {
        cn[0] = '\0';
    }
    if (evutil_parse_sockaddr_port(c->remote, (struct sockaddr *)&src, &srclen) == 0 &&
        getsockname(proxy_io_fd(c->client), (struct sockaddr *)&dst, &dstlen) == 0) {
        n = proxy_pp_v2_build(hdr, sizeof(hdr), (const struct sockaddr *)&src,
                              (const struct sockaddr *)&dst,
                              ssl != NULL ? SSL_get_version(ssl) : NULL, cn[0] != '\0' ? cn : NULL,
                              c->verify.reject == TLS_REJECT_NONE && c->verify.peer.name[0] != '\0'
                                  ? c->verify.peer.name
                                  : NULL);
    }
    if (n == 0 || evbuffer_add(proxy_io_output(c->server), hdr, n) != 0) {
        conn_detail(c, "cannot build the PROXY protocol header for backend %s (client %s)",
                    c->l->target_text, c->remote);
        proxy_conn_drop(c, PROXY_CLOSE_SERVER_ERROR);
        return -1;
    }
    return 0;
}

static void
conn_start_relay(struct proxy_conn *c)
{
    uint64_t up_bytes = c->up.bytes, down_bytes = c->down.bytes; /* kept across a retry */

    conn_set_state(c, PROXY_CONN_RELAY);
    proxy_relay_init(&c->up, c->client, c->server, !conn_inbound(c));
    proxy_relay_init(&c->down, c->server, c->client, conn_inbound(c));
    c->up.bytes = up_bytes;
    c->down.bytes = down_bytes;
    if (c->l->cfg->backend_pp == CONFIG_BACKEND_PP_V2 && conn_send_backend_pp(c) < 0) {
        return;
    }
    if (c->up.hold != NULL && evbuffer_get_length(c->up.hold) > 0) {
        /* Lending: the request this peer connection was lent for goes first. */
        evbuffer_add_buffer(proxy_io_output(c->server), c->up.hold);
    }
    proxy_io_enable(c->client, EV_READ | EV_WRITE);
    proxy_io_enable(c->server, EV_READ | EV_WRITE);
    conn_touch(c);
    event_del(c->timer);
    conn_timer_in(c, c->l->limits->idle_timeout_ms);
    if (c->x != NULL) {
        /* A new peer connection (lent, or a retry): the exchange goes on through it, and
         * after a retry the requests in flight are sent again. */
        c->up.http = proxy_exchange_framer(c, PROXY_HTTP_REQUEST);
        c->down.http = proxy_exchange_framer(c, PROXY_HTTP_RESPONSE);
        if (c->server_from == PROXY_ORIGIN_REDIALED) {
            size_t n;
            const char *heads = proxy_exchange_retry_heads(c, &n);

            if (heads != NULL) {
                evbuffer_add(proxy_io_output(c->server), heads, n);
            }
        }
    } else if (conn_http(c) && conn_exchange_begin(c) < 0) {
        conn_detail(c, "out of memory");
        proxy_conn_drop(c, PROXY_CLOSE_OOM);
        return;
    }
    /* Bytes the client sent while we connected are waiting in its input buffer. */
    if (!conn_pump_up(c)) {
        return;
    }
    if (c->client_eof && !conn_pool_client_ended(c)) {
        proxy_relay_src_eof(&c->up);
    }
}

/*
 * A clean end of what the other side sends.  EOF while WRITING is not one: the side failed
 * while writing to a vanished peer (conn_reset_as_eof()) and can take no more bytes, so the
 * connection must end instead of waiting for idle_timeout.
 */
static bool
conn_read_eof(short what)
{
    return (what & PROXY_IO_EV_EOF) != 0 && (what & PROXY_IO_EV_WRITING) == 0;
}

/*
 * conn_reset_as_eof(io, what):
 * The event flags ${what} of the TLS side ${io}, with a reset (a system call error and no
 * OpenSSL error) read as the end of that side's stream, as libevent's TLS bufferevent under
 * allow_dirty_shutdown read it: a TLS client that closes with bytes still unread resets rather
 * than sends a FIN, and its stream had ended all the same.  The other direction still drains
 * and the close line says done, as it did before the core ran on proxy_io; a truncated
 * response is caught by the HTTP framer, not by this.  A plain side's reset is ERROR.
 */
static short
conn_reset_as_eof(struct proxy_io *io, short what)
{
    if ((what & PROXY_IO_EV_ERROR) != 0 && proxy_io_ssl(io) != NULL &&
        proxy_io_ssl_error(io) == SSL_ERROR_SYSCALL && proxy_io_socket_error(io) != 0) {
        what = (short)((what & ~PROXY_IO_EV_ERROR) | PROXY_IO_EV_EOF);
    }
    return what;
}

/*
 * conn_cut(c, r):
 * ${r}'s source ended inside an HTTP message (proxy_http_cut()): the rest of it will never
 * come, and what it left unframed (a chunk line, the CRLF after a chunk, part of a head) would
 * sit in the input for ever, so the end was never passed on and both sides stayed open until
 * idle_timeout (found by the black-box attack: a chunked body cut at a chunk boundary pinned
 * two sockets per request).  A request cut short: the connection is dropped (client_closed;
 * the backend or peer sees its connection end inside the body).  A response cut short after
 * part of it reached the client: the client keeps what it got, then the end of the connection
 * (bad_response rule=truncated), a reset where that end would read as the response's own (a
 * response that runs to the end of the connection, the peer's TLS stream ended without
 * close_notify: proxy_http_eof()).  Returns true when ${c} was ended that way.
 */
static bool
conn_cut(struct proxy_conn *c, struct proxy_relay *r)
{
    const char *who = conn_inbound(c) ? "backend" : "peer";

    if (r->http == NULL || !r->eof_seen || !proxy_http_cut(r->http)) {
        return false;
    }
    if (r == &c->up) {
        conn_detail(c, "the client closed its connection in the middle of a request");
        proxy_conn_drop(c, PROXY_CLOSE_CLIENT_CLOSED);
        return true;
    }
    if (proxy_http_out_to_eof(r->http)) {
        conn_side_set(c, &c->client_st, PROXY_SIDE_RESET);
    }
    if (c->client_st == PROXY_SIDE_RESET && proxy_io_ssl(r->src) != NULL &&
        proxy_io_end(r->src) != PROXY_IO_END_CLOSE_NOTIFY) {
        conn_detail(c,
                    "%s %s ended its TLS stream without close_notify inside a response that runs "
                    "to the end of the connection, so its end may be anyone's (a truncation): the "
                    "client got what came, then a reset, not the end of a whole response",
                    who, c->l->target_text);
    } else {
        conn_detail(c,
                    "%s %s closed its connection in the middle of a response (the client got its "
                    "start, then %s)",
                    who, c->l->target_text,
                    c->client_st == PROXY_SIDE_RESET
                        ? "a reset: its response runs to the end of the connection"
                        : "the end of the connection");
    }
    log_kv(LOG_WARN, "bad_response", "listener", c->l->cfg->name, "remote", c->remote, "target",
           c->l->target_text, "rule", "truncated", "msg", conn_detail_str(c), (const char *)NULL);
    conn_finish_client(c, PROXY_CLOSE_SERVER_ERROR);
    return true;
}

/*
 * EOF on one side while relaying: pass it on (proxy_io keeps writing a side whose peer ended
 * its stream, so what is queued for it still goes out).
 */
static void
conn_side_eof(struct proxy_conn *c, struct proxy_relay *r)
{
    proxy_relay_src_eof(r);
    if (conn_cut(c, r)) {
        return;
    }
    if (r == &c->down && c->x != NULL) {
        /* The last responses framed with the end may have made an answer of ferry's due. */
        struct proxy_verdict v = proxy_exchange_next(c);

        if (v.kind == PROXY_VERDICT_ANSWER) {
            (void)proxy_conn_act(c, v);
            return;
        }
    }
    (void)conn_relay_finished(c);
}

static void
client_read_cb(struct proxy_io *io, void *arg)
{
    struct proxy_conn *c = arg;

    conn_check(c);
    if (c->state == PROXY_CONN_DRAINING) {
        /* The request we are refusing: its access-log line when still owed, then drop it. */
        conn_request_owed(c, proxy_io_input(io), false);
        evbuffer_drain(proxy_io_input(io), evbuffer_get_length(proxy_io_input(io)));
        return;
    }
    if (c->state != PROXY_CONN_RELAY) {
        /*
         * Keep it until the other side is up (conn_start_relay() reads on); the read
         * high-watermark bounds it (proxy_relay_read_limit()).
         */
        return;
    }
    conn_touch(c);
    (void)conn_pump_up(c);
}

static void
client_write_cb(struct proxy_io *io, void *arg)
{
    struct proxy_conn *c = arg;

    conn_check(c);
    if (c->state == PROXY_CONN_DRAINING) {
        /* Our answer is out: half-close and wait for the client to go (or the linger timer). */
        if (evbuffer_get_length(proxy_io_output(io)) == 0 && c->client_st == PROXY_SIDE_RESET) {
            /* What came is out: a reset, no FIN, no close_notify (conn_cut()). */
            proxy_io_reset(io);
            proxy_conn_drop(c, c->reason);
            return;
        }
        if (evbuffer_get_length(proxy_io_output(io)) == 0 && !c->down.shut_sent) {
            conn_shut_client(c);
            if (c->up.eof_seen || c->client_eof) {
                /* The client has finished sending too: nothing left to wait for. */
                proxy_conn_drop(c, c->reason);
            }
        }
        return;
    }
    if (c->state == PROXY_CONN_RELAY) {
        proxy_relay_dst_drained(&c->down);
        if (conn_relay_finished(c)) {
            return;
        }
        if (c->l->w->draining && proxy_exchange_idle(c) &&
            evbuffer_get_length(proxy_io_output(io)) == 0) {
            /* Draining: this keep-alive connection has delivered its last response. */
            proxy_conn_drop(c, PROXY_CLOSE_SHUTDOWN);
        }
    }
}

/*
 * The response framer refused what the backend or peer sent: a 502 while no byte of that
 * response has reached the client; else (bytes nobody asked for, such as a body after the
 * reply to a HEAD, or a defect inside a response already under way) the client keeps what it
 * was sent, then the end of the connection; the other side is not read again (never pooled).
 */
static void
conn_bad_response(struct proxy_conn *c)
{
    const char *rule;
    const char *why = proxy_http_error(c->down.http, NULL, &rule);

    if (proxy_exchange_unasked(c)) {
        /* Framed in the same read as the response before them: what they hold is beside the
         * point (a head, or no HTTP at all), nobody asked for them (as proxy_exchange_next()
         * says of such bytes read on their own). */
        conn_detail(c,
                    "%s %s sent bytes after its response that no request asked for (its "
                    "connection is closed, never reused)",
                    conn_inbound(c) ? "backend" : "peer", c->l->target_text);
        rule = "unsolicited";
    } else {
        conn_detail(c, "%s %s sent a malformed response: %s", conn_inbound(c) ? "backend" : "peer",
                    c->l->target_text, why);
    }
    if (proxy_exchange_can_answer(c)) {
        conn_upstream_failed(c, PROXY_CLOSE_SERVER_ERROR, "bad_response");
        return;
    }
    log_kv(LOG_WARN, "bad_response", "listener", c->l->cfg->name, "remote", c->remote, "target",
           c->l->target_text, "rule", rule, "msg", conn_detail_str(c), (const char *)NULL);
    conn_finish_client(c, PROXY_CLOSE_SERVER_ERROR);
}

static void
server_read_cb(struct proxy_io *io, void *arg)
{
    struct proxy_conn *c = arg;
    enum proxy_http_result res;

    (void)io;
    conn_check(c);
    if (c->state != PROXY_CONN_RELAY) {
        return;
    }
    if (!conn_inbound(c) && (c->down.bytes == 0 || c->hs_pending)) {
        /* Readiness: the peer answers; under TLS 1.3 its verdict on us came before this. */
        proxy_stats_upstream_ok(c->l->stats);
        conn_count_peer_answered(c);
    }
    conn_touch(c);
    proxy_exchange_response_bytes(c);
    res = proxy_relay_pump(&c->down);
    if (res == PROXY_HTTP_OK) {
        /* Room for more requests, ferry's pending answer (403, 400...) now due, the client's
         * last response, the end of a lend... */
        (void)proxy_conn_act(c, proxy_exchange_next(c));
        return;
    }
    conn_bad_response(c);
}

static void
server_write_cb(struct proxy_io *io, void *arg)
{
    struct proxy_conn *c = arg;

    (void)io;
    conn_check(c);
    if (c->state == PROXY_CONN_RELAY) {
        proxy_relay_dst_drained(&c->up);
        (void)conn_relay_finished(c);
    }
}

/* ---- failure reporting: tls/ explains (tls_failure_report()), we log ---- */

/*
 * Hand what is known of ${c}'s failed side to tls/: the stage, errno (read first, before
 * anything can change it; the side's own when it kept one), the event flags ${what}, the errors
 * the side ${io} took off OpenSSL's queue at its failure, the verify result.  Puts its words into
 * the detail (conn_detail()) and returns its reason;
 * *${alert} (when not NULL) is the alert the other side sent, or -1.
 */
static enum tls_fail_reason
conn_explain(struct proxy_conn *c, enum tls_fail_stage stage, struct proxy_io *io, short what,
             int *alert)
{
    int err = EVUTIL_SOCKET_ERROR();
    const struct config *cfg = c->l->gen != NULL ? c->l->gen->cfg : NULL;
    SSL *ssl = proxy_io_ssl(io);
    struct tls_failure f;
    struct tls_failure_report r;
    unsigned long e;

    memset(&f, 0, sizeof(f));
    f.sock_err = proxy_io_socket_error(io) != 0 ? proxy_io_socket_error(io) : err;
    f.role = conn_inbound(c) ? TLS_ROLE_SERVER : TLS_ROLE_CLIENT;
    f.stage = stage;
    f.remote = c->remote;
    f.target = c->l->target_text;
    f.listener = c->l->cfg->name;
    f.config_path = cfg != NULL ? cfg->path : NULL;
    f.verify = &c->verify;
    f.eof = (what & PROXY_IO_EV_EOF) != 0;
    f.bytes_in = c->down.bytes;
    f.reused = c->server_from == PROXY_ORIGIN_POOLED;
    while ((e = proxy_io_get_openssl_error(io)) != 0) {
        tls_failure_add_error(&f, e);
    }
    tls_failure_collect(&f, c->l->tls, ssl);
    tls_failure_report(&f, &r);
    conn_detail(c, "%s", r.detail);
    if (alert != NULL) {
        *alert = r.alert;
    }
    return r.reason;
}

/*
 * proxy_conn_log_flush(w):
 * Once a second: say how many unauthenticated connections were not logged since the last
 * time (conn_log_ok()).  From conn_log_ok() and the worker's beat.
 */
void
proxy_conn_log_flush(struct proxy_worker *w)
{
    long long sec = proxy_stats_clock_ms() / 1000;
    char n[16];

    if (sec == w->unauth_log_sec) {
        return;
    }
    w->unauth_log_sec = sec;
    if (w->unauth_log_quiet > 0) {
        snprintf(n, sizeof(n), "%u", w->unauth_log_quiet);
        w->unauth_log_quiet = 0;
        /* The numbers are PROXY_UNAUTH_LOG_PER_SEC and PROXY_UNAUTH_LOG_BURST (asserted). */
        log_kv(LOG_WARN, "log_suppressed", "count", n, "msg",
               "connections that never passed their TLS handshake were not logged: more than 20 "
               "a second on one worker, after a burst of 100 (a flood of refused, failed or "
               "non-TLS connections; ferry_connections_total counts every one, "
               "ferry_handshakes_total the refused and failed ones by reason)",
               (const char *)NULL);
    }
}

/*
 * conn_log_ok(c, level):
 * May a line of ${level} about ${c} be written?  Not below the configured level; else always,
 * except for an inbound connection that has not passed its handshake: anyone who reaches the
 * port makes as many of those as it likes (the third black-box attack wrote 8,000 warn lines
 * in 5 s from two loops).  Such a connection takes a token from its worker's bucket with its
 * first line: logged in full when it got one (PROXY_UNAUTH_LOG_BURST, refilled at
 * PROXY_UNAUTH_LOG_PER_SEC a second), else not at all, only counted.
 */
static bool
conn_log_ok(struct proxy_conn *c, enum log_level level)
{
    struct proxy_worker *w = c->l->w;
    long long now, full = PROXY_UNAUTH_LOG_BURST * 1000LL;

    if (!log_enabled(level)) {
        return false;
    }
    if (!conn_inbound(c) || c->log_mode == CONN_LOG_ON) {
        return true;
    }
    if (c->log_mode == CONN_LOG_HELD) {
        return false;
    }
    proxy_conn_log_flush(w);
    now = proxy_stats_clock_ms();
    if (w->unauth_log_filled == 0) {
        w->unauth_log_tokens = full;
    } else {
        w->unauth_log_tokens += (now - w->unauth_log_filled) * PROXY_UNAUTH_LOG_PER_SEC;
        w->unauth_log_tokens = w->unauth_log_tokens < full ? w->unauth_log_tokens : full;
    }
    w->unauth_log_filled = now > 0 ? now : 1;
    if (w->unauth_log_tokens >= 1000) {
        w->unauth_log_tokens -= 1000;
        c->log_mode = CONN_LOG_ON;
        return true;
    }
    c->log_mode = CONN_LOG_HELD;
    w->unauth_log_quiet++;
    return false;
}

/* A §4 rule refused the peer (conn_detail_str(c) says which): the one warn line of CONTRACT §4. */
static void
conn_log_rejection(struct proxy_conn *c)
{
    if (!conn_log_ok(c, LOG_WARN)) {
        return;
    }
    log_kv(LOG_WARN, "handshake_rejected", "listener", c->l->cfg->name, "remote", c->remote,
           "target", conn_inbound(c) ? NULL : c->l->target_text, "subject", c->verify.peer.subject,
           "sans", c->verify.peer.sans, "reason", tls_reject_str(c->verify.reject), "msg",
           conn_detail_str(c), (const char *)NULL);
}

/* Outbound: we refused the peer's certificate; log the rule, then answer 502 with it. */
static void
conn_peer_rejected(struct proxy_conn *c)
{
    conn_log_rejection(c);
    if (conn_http(c)) {
        conn_answer_502(c, PROXY_CLOSE_REJECTED);
    } else {
        proxy_conn_drop(c, PROXY_CLOSE_REJECTED);
    }
}

/* The client's handshake (inbound) failed: a rule we enforce, or TLS itself. */
static void
conn_client_handshake_failed(struct proxy_conn *c, struct proxy_io *io, short what)
{
    int alert = -1;

    switch (conn_explain(c, TLS_FAIL_CLIENT_HANDSHAKE, io, what, &alert)) {
    case TLS_FAIL_REJECTED:
        conn_log_rejection(c);
        proxy_conn_drop(c, PROXY_CLOSE_REJECTED);
        return;
    case TLS_FAIL_ALERT:
        /* The client refused OUR certificate: the operator has to fix our side or the client. */
        if (conn_log_ok(c, LOG_WARN)) {
            log_kv(LOG_WARN, "client_rejected_us", "listener", c->l->cfg->name, "remote", c->remote,
                   "reason", proxy_conn_close_reason_str(PROXY_CLOSE_HANDSHAKE_FAILED), "alert",
                   tls_alert_name(alert), "msg", conn_detail_str(c), (const char *)NULL);
        }
        proxy_conn_drop(c, PROXY_CLOSE_HANDSHAKE_FAILED);
        return;
    case TLS_FAIL_CLOSED:
        proxy_conn_drop(c, PROXY_CLOSE_CLIENT_CLOSED);
        return;
    default:
        break;
    }
    if (conn_log_ok(c, LOG_INFO)) {
        log_kv(LOG_INFO, "handshake_failed", "listener", c->l->cfg->name, "remote", c->remote,
               "msg", conn_detail_str(c), (const char *)NULL);
    }
    proxy_conn_drop(c, PROXY_CLOSE_HANDSHAKE_FAILED);
}

/* ---- the backend / peer side ---- */

/* The backend's (plain) or the peer's (TLS, we connect) side, not connected yet; NULL on OOM. */
static struct proxy_io *
conn_new_server(struct proxy_conn *c)
{
    SSL *ssl = NULL;

    if (!conn_inbound(c) && (ssl = tls_ssl_new(c->l->tls, &c->verify)) == NULL) {
        return NULL;
    }
    return conn_side(c, -1, ssl, PROXY_IO_CLIENT);
}

/* ---- outbound: through an egress proxy (via:) ---- */

/* via.connect_timeout, or limits.handshake_timeout when it is not set. */
static uint64_t
conn_via_timeout_ms(const struct proxy_conn *c)
{
    uint64_t ms = c->l->cfg->via.connect_timeout_ms;

    return ms > 0 ? ms : c->l->limits->handshake_timeout_ms;
}

/*
 * The CONNECT to the egress proxy failed with ${r} (${status}: the proxy's, or 0): counted,
 * logged with the proxy and ${msg}, then as any peer that cannot be reached (502 naming
 * ${r} for protocol http, readiness).
 */
static void
conn_via_failed(struct proxy_conn *c, enum proxy_via_result r, int status, const char *msg)
{
    char st[16];

    snprintf(st, sizeof(st), "%d", status);
    PROXY_STATS_ADD(c->l->stats->via[r], 1);
    c->via_result = (unsigned char)r;
    conn_detail(c, "%s", msg);
    free(c->pre_buf);
    c->pre_buf = NULL;
    log_kv(LOG_WARN, "proxy_connect_failed", "listener", c->l->cfg->name, "remote", c->remote,
           "target", c->l->target_text, "proxy", c->l->via_text, "result",
           proxy_conn_via_result_str(r), "status", status > 0 ? st : "-", "msg", msg,
           (const char *)NULL);
    if (conn_http(c) && c->client != NULL) {
        conn_answer_502(c, PROXY_CLOSE_PEER_UNREACHABLE);
        return;
    }
    proxy_conn_drop(c, PROXY_CLOSE_PEER_UNREACHABLE);
}

/* The connection to the proxy itself failed (${io}'s error, or its name did not resolve). */
static void
conn_via_unreachable(struct proxy_conn *c, struct proxy_io *io)
{
    char msg[PROXY_DETAIL_MAX];
    int dns_err = proxy_io_dns_error(io), err = proxy_io_socket_error(io);

    if (dns_err != 0) {
        snprintf(msg, sizeof(msg), "cannot resolve proxy %s (via.proxy): %s", c->l->via_text,
                 evutil_gai_strerror(dns_err));
    } else {
        snprintf(msg, sizeof(msg), "cannot connect to proxy %s (via.proxy) to reach peer %s: %s",
                 c->l->via_text, c->l->target_text,
                 evutil_socket_error_to_string(err != 0 ? err : EVUTIL_SOCKET_ERROR()));
    }
    conn_via_failed(c, PROXY_VIA_UNREACHABLE, 0, msg);
}

/* What ${r}, the proxy's answer ${status} ${phrase}, means, in words, into ${msg}. */
static enum proxy_via_result
conn_via_explain(const struct proxy_conn *c, enum tls_tunnel_result r, int status,
                 const char *phrase, char *msg, size_t len)
{
    const struct config_listener *cl = c->l->cfg;
    const char *px = c->l->via_text, *peer = c->l->via_target;

    switch (r) {
    case TLS_TUNNEL_AUTH:
        if (cl->via.auth_file.path == NULL) {
            snprintf(msg, len,
                     "proxy %s answered %d %s: it wants credentials; put \"user:password\" in a "
                     "file and name it in via.auth_file",
                     px, status, phrase);
            return PROXY_VIA_AUTH_REQUIRED;
        }
        snprintf(msg, len,
                 "proxy %s answered %d %s: it refused the credentials in %s (via.auth_file)", px,
                 status, phrase, cl->via.auth_file.path);
        return PROXY_VIA_AUTH_FAILED;
    case TLS_TUNNEL_PEER_UNREACHABLE:
        snprintf(msg, len, "proxy %s answered %d %s: it cannot open a tunnel to %s", px, status,
                 phrase, peer);
        return PROXY_VIA_PEER_UNREACHABLE;
    case TLS_TUNNEL_REFUSED:
        snprintf(msg, len,
                 "proxy %s answered %d %s to CONNECT %s: its policy refuses this host or port "
                 "(ask its operator to allow CONNECT to it)",
                 px, status, phrase, peer);
        return PROXY_VIA_REFUSED;
    case TLS_TUNNEL_BAD:
    default:
        snprintf(msg, len, "proxy %s sent a malformed answer to CONNECT: %s", px, phrase);
        return PROXY_VIA_BAD_ANSWER;
    }
}

/* The tunnel is open: TLS to the peer starts on the proxy's socket, as on a direct one. */
static void
conn_via_open(struct proxy_conn *c, int status)
{
    SSL *ssl = tls_ssl_new(c->l->tls, &c->verify);
    char st[16];

    PROXY_STATS_ADD(c->l->stats->via[PROXY_VIA_OK], 1);
    if (log_enabled(LOG_DEBUG)) {
        snprintf(st, sizeof(st), "%d", status);
        log_kv(LOG_DEBUG, "proxy_connect", "listener", c->l->cfg->name, "remote", c->remote,
               "target", c->l->target_text, "proxy", c->l->via_text, "status", st,
               (const char *)NULL);
    }
    c->via_phase = PROXY_VIA_TLS;
    c->server = ssl != NULL ? conn_side(c, c->fd, ssl, PROXY_IO_CLIENT) : NULL;
    if (ssl == NULL) {
        evutil_closesocket(c->fd);
    }
    c->fd = -1; /* owned by the side now (closed if that failed) */
    if (c->server == NULL) {
        conn_detail(c, "out of memory");
        proxy_conn_drop(c, PROXY_CLOSE_OOM);
        return;
    }
    proxy_io_setcb(c->server, server_read_cb, server_write_cb, server_event_cb, c);
    proxy_relay_read_limit(c->server);
    proxy_io_enable(c->server, EV_READ | EV_WRITE);
    event_del(c->timer);
    conn_timer_in(c, c->l->limits->handshake_timeout_ms);
}

/*
 * The proxy's answer to CONNECT on ${c}'s socket ${fd}: peek, parse, and take off the socket
 * only the answer's head, so that whatever follows it reaches the TLS library.
 */
static void
via_answer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_conn *c = arg;
    char phrase[160], msg[PROXY_DETAIL_MAX];
    enum tls_tunnel_result r;
    size_t head = 0, want;
    ssize_t n;
    int status = 0;

    (void)what;
    conn_check(c);
    n = recv(fd, c->pre_buf + c->pre_len, TLS_TUNNEL_HEAD_MAX - c->pre_len, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        event_add(c->sniff, NULL);
        return;
    }
    if (n <= 0) {
        snprintf(msg, sizeof(msg), "proxy %s %s after %zu bytes of its answer to CONNECT %s",
                 c->l->via_text, n == 0 ? "closed the connection" : strerror(errno), c->pre_len,
                 c->l->via_target);
        conn_via_failed(c, n == 0 ? PROXY_VIA_BAD_ANSWER : PROXY_VIA_UNREACHABLE, 0, msg);
        return;
    }
    r = tls_tunnel_answer((const char *)c->pre_buf, c->pre_len + (size_t)n, &head, &status, phrase,
                          sizeof(phrase));
    if (r != TLS_TUNNEL_NEED_MORE && r != TLS_TUNNEL_OK) {
        conn_via_failed(c, conn_via_explain(c, r, status, phrase, msg, sizeof(msg)), status, msg);
        return;
    }
    /* NEED_MORE: every byte peeked is part of the head; OK: take the head's rest only. */
    want = r == TLS_TUNNEL_OK ? head - c->pre_len : (size_t)n;
    if (recv(fd, c->pre_buf + c->pre_len, want, 0) != (ssize_t)want) {
        snprintf(msg, sizeof(msg), "reading the answer of proxy %s: %s", c->l->via_text,
                 strerror(errno));
        conn_via_failed(c, PROXY_VIA_UNREACHABLE, 0, msg);
        return;
    }
    c->pre_len += want;
    if (r == TLS_TUNNEL_NEED_MORE) {
        event_add(c->sniff, NULL);
        return;
    }
    free(c->pre_buf);
    c->pre_buf = NULL;
    event_free(c->sniff); /* safe inside its own callback: libevent does not touch it after */
    c->sniff = NULL;
    conn_via_open(c, status);
}

/*
 * TCP to the proxy is up (${c}'s plain server side): take its socket, send CONNECT (a few
 * hundred bytes into an empty send buffer: one send()), and wait for the answer.
 */
static void
conn_via_send(struct proxy_conn *c)
{
    const struct proxy_listener *l = c->l;
    ssize_t n;

    c->fd = proxy_io_take_fd(c->server);
    proxy_worker_side_free(l->w, c->server);
    c->server = NULL;
    c->via_phase = PROXY_VIA_ANSWER;
    n = send(c->fd, l->via_request, l->via_request_len, MSG_NOSIGNAL);
    if (n != (ssize_t)l->via_request_len) {
        char msg[PROXY_DETAIL_MAX];

        snprintf(msg, sizeof(msg), "sending CONNECT %s to proxy %s: %s", l->via_target, l->via_text,
                 n < 0 ? strerror(errno) : "short write");
        conn_via_failed(c, PROXY_VIA_UNREACHABLE, 0, msg);
        return;
    }
    c->pre_len = 0;
    if ((c->pre_buf = malloc(TLS_TUNNEL_HEAD_MAX)) == NULL ||
        (c->sniff = event_new(conn_base(c), c->fd, EV_READ, via_answer_cb, c)) == NULL) {
        conn_detail(c, "out of memory");
        proxy_conn_drop(c, PROXY_CLOSE_OOM);
        return;
    }
    event_add(c->sniff, NULL);
}

/* via.connect_timeout passed while connecting to the proxy or waiting for its answer. */
static void
conn_via_timeout(struct proxy_conn *c)
{
    char msg[PROXY_DETAIL_MAX];
    unsigned long long ms = (unsigned long long)conn_via_timeout_ms(c);

    if (c->via_phase == PROXY_VIA_DIALING) {
        snprintf(msg, sizeof(msg), "proxy %s did not accept the connection within %llums",
                 c->l->via_text, ms);
    } else {
        snprintf(msg, sizeof(msg),
                 "proxy %s did not answer CONNECT %s within %llums (%zu bytes of an answer)",
                 c->l->via_text, c->l->via_target, ms, c->pre_len);
    }
    conn_via_failed(c, PROXY_VIA_TIMEOUT, 0, msg);
}

/* Dial the backend (inbound) or the peer (outbound); the result arrives in server_event_cb. */
static void
conn_connect(struct proxy_conn *c)
{
    struct proxy_listener *l = c->l;
    int rc;

    conn_set_state(c, PROXY_CONN_CONNECTING);
    c->via_phase = 0;
    /* What this peer connection carries starts here (proxy_exchange_can_retry()). */
    c->lent_up = c->up.bytes;
    c->lent_down = c->down.bytes;
    if (proxy_pool_enabled(l)) {
        if (c->server_from != PROXY_ORIGIN_REDIALED &&
            (c->server = proxy_pool_take(l, conn_inbound(c) ? NULL : &c->verify,
                                         conn_pool_owner(c))) != NULL) {
            /* An idle pooled connection (outbound: TLS up, the peer verified): relay at once. */
            proxy_io_setcb(c->server, server_read_cb, server_write_cb, server_event_cb, c);
            conn_side_set(c, &c->server_st, PROXY_SIDE_UP);
            c->server_from = PROXY_ORIGIN_POOLED;
            conn_start_relay(c);
            return;
        }
        PROXY_STATS_ADD(l->stats->pool_connects, 1);
    }
    if (c->hs_pending) {
        /* An earlier dial of this client's, never refused: counted before this one starts. */
        conn_count_peer_answered(c);
    }
    evutil_gettimeofday(&c->dialed, NULL);
    event_del(c->timer);
    if (l->via_request != NULL) {
        /* Through the egress proxy: plain TCP to it first (conn_via_send()). */
        c->via_phase = PROXY_VIA_DIALING;
        c->via_result = PROXY_VIA_OK;
        conn_timer_in(c, conn_via_timeout_ms(c));
        c->server = conn_side(c, -1, NULL, PROXY_IO_CLIENT);
    } else {
        conn_timer_in(c, l->limits->handshake_timeout_ms);
        c->server = conn_new_server(c);
    }
    if (c->server == NULL) {
        conn_detail(c, "out of memory");
        proxy_conn_drop(c, PROXY_CLOSE_OOM);
        return;
    }
    if (c->server_from == PROXY_ORIGIN_POOLED) {
        c->server_from = PROXY_ORIGIN_DIALED;
    }
    conn_side_set(c, &c->server_st, PROXY_SIDE_OPENING);
    proxy_io_setcb(c->server, server_read_cb, server_write_cb, server_event_cb, c);
    proxy_relay_read_limit(c->server);
    proxy_io_enable(c->server, EV_READ | EV_WRITE);
    if (l->target_host[0] != '\0') {
        struct evdns_base *dns = proxy_worker_dns(l->w);

        rc = dns == NULL ? -1
                         : proxy_io_connect_hostname(c->server, dns, AF_UNSPEC, l->target_host,
                                                     l->target_port);
    } else {
        rc = proxy_io_connect(c->server, (const struct sockaddr *)&l->target, l->target_len);
    }
    if (rc < 0 && c->state == PROXY_CONN_CONNECTING && c->server != NULL &&
        c->via_phase == PROXY_VIA_DIALING) {
        conn_via_unreachable(c, c->server);
        return;
    }
    if (rc < 0 && c->state == PROXY_CONN_CONNECTING && c->server != NULL) {
        /* Failed before any callback (no route, out of fds): report it the same way. */
        conn_detail(c, "cannot connect to %s %s: %s", conn_inbound(c) ? "backend" : "peer",
                    l->target_text, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        conn_upstream_failed(
            c, conn_inbound(c) ? PROXY_CLOSE_BACKEND_UNREACHABLE : PROXY_CLOSE_PEER_UNREACHABLE,
            conn_inbound(c) ? "backend_unreachable" : "peer_unreachable");
    }
}

/* The connection to the backend or peer failed while CONNECTING. */
static void
conn_server_connect_failed(struct proxy_conn *c, struct proxy_io *io, short what)
{
    int dns_err = proxy_io_dns_error(io);

    if (c->via_phase == PROXY_VIA_DIALING) {
        conn_via_unreachable(c, io);
        return;
    }
    if (dns_err != 0) {
        conn_detail(c, "cannot resolve peer %s: %s", c->l->target_text,
                    evutil_gai_strerror(dns_err));
        conn_upstream_failed(c, PROXY_CLOSE_PEER_UNREACHABLE, "peer_unreachable");
        return;
    }
    switch (conn_explain(c, TLS_FAIL_SERVER_CONNECT, io, what, NULL)) {
    case TLS_FAIL_REJECTED:
        conn_peer_rejected(c);
        return;
    case TLS_FAIL_ALERT:
        /* The peer refused us (our certificate, version, ...): its alert in plain words. */
        conn_upstream_failed(c, PROXY_CLOSE_PEER_HANDSHAKE_FAILED, "peer_rejected_us");
        return;
    case TLS_FAIL_TLS:
        conn_upstream_failed(c, PROXY_CLOSE_PEER_HANDSHAKE_FAILED, "peer_handshake_failed");
        return;
    default:
        conn_upstream_failed(
            c, conn_inbound(c) ? PROXY_CLOSE_BACKEND_UNREACHABLE : PROXY_CLOSE_PEER_UNREACHABLE,
            conn_inbound(c) ? "backend_unreachable" : "peer_unreachable");
        return;
    }
}

static void
server_event_cb(struct proxy_io *io, short what, void *arg)
{
    struct proxy_conn *c = arg;

    conn_check(c);
    if ((what & PROXY_IO_EV_CONNECTED) != 0) {
        set_nodelay(proxy_io_fd(io));
        if (c->via_phase == PROXY_VIA_DIALING) {
            conn_via_send(c);
            return;
        }
        if (!conn_inbound(c)) {
            /* Outbound: CONNECTED means the TLS handshake and our §4 checks passed. */
            tls_ssl_done(proxy_io_ssl(io), &c->verify);
            if (c->verify.reject != TLS_REJECT_NONE) {
                /* A resumed session whose certificate no longer passes rules 2 and 3. */
                (void)conn_explain(c, TLS_FAIL_SERVER_CONNECT, io, 0, NULL);
                conn_peer_rejected(c);
                return;
            }
            conn_count_handshake(c);
        } else {
            proxy_stats_upstream_ok(c->l->stats); /* readiness: the backend accepts connections */
        }
        conn_side_set(c, &c->server_st, PROXY_SIDE_UP);
        conn_start_relay(c);
        return;
    }
    what = conn_reset_as_eof(io, what);
    /* Anything but a clean end of what it sends: no close_notify to it (conn_close_server). */
    if (!conn_read_eof(what)) {
        conn_side_set(c, &c->server_st, PROXY_SIDE_FAILED);
    }
    if (c->state == PROXY_CONN_CONNECTING) {
        conn_server_connect_failed(c, io, what);
        return;
    }
    if (c->state != PROXY_CONN_RELAY) {
        return;
    }
    if (c->server_from == PROXY_ORIGIN_POOLED &&
        (what & (PROXY_IO_EV_EOF | PROXY_IO_EV_ERROR)) != 0 && conn_pool_retry(c)) {
        return;
    }
    if (conn_read_eof(what)) {
        if (c->x != NULL && proxy_exchange_can_answer(c) && !proxy_exchange_server_closing(c)) {
            /*
             * Closed with a request still unanswered: tell the client why.  A reset of the
             * peer's TLS side reads as an EOF here (conn_reset_as_eof()), errno telling which.
             */
            if (conn_explain(c, TLS_FAIL_SERVER_CLOSED, io, what, NULL) == TLS_FAIL_RESET) {
                conn_upstream_failed(c, PROXY_CLOSE_PEER_HANDSHAKE_FAILED, "peer_failed");
                return;
            }
            conn_upstream_failed(c, PROXY_CLOSE_SERVER_ERROR,
                                 conn_inbound(c) ? "backend_failed" : "peer_failed");
            return;
        }
        conn_side_eof(c, &c->down);
        return;
    }
    if ((what & (PROXY_IO_EV_EOF | PROXY_IO_EV_ERROR)) != 0) {
        if (conn_explain(c, TLS_FAIL_SERVER_ERROR, io, what, NULL) == TLS_FAIL_ALERT) {
            /* TLS 1.3: the peer's verdict on our certificate comes after our handshake. */
            conn_upstream_failed(c, PROXY_CLOSE_PEER_HANDSHAKE_FAILED, "peer_rejected_us");
            return;
        }
        if (conn_http(c) && proxy_exchange_can_answer(c)) {
            /*
             * Nothing of a response has reached the client yet, so it can still be told why.
             * This is also how a peer's rejection of our certificate arrives under TLS 1.3:
             * its alert comes after our side of the handshake has finished.
             */
            conn_upstream_failed(
                c, conn_inbound(c) ? PROXY_CLOSE_SERVER_ERROR : PROXY_CLOSE_PEER_HANDSHAKE_FAILED,
                conn_inbound(c) ? "backend_failed" : "peer_failed");
            return;
        }
        proxy_conn_drop(c, PROXY_CLOSE_SERVER_ERROR);
    }
}

static void
client_event_cb(struct proxy_io *io, short what, void *arg)
{
    struct proxy_conn *c = arg;

    conn_check(c);
    if ((what & PROXY_IO_EV_CONNECTED) != 0) {
        /* Inbound: the client's handshake passed every §4 rule. */
        tls_ssl_done(proxy_io_ssl(io), &c->verify);
        if (c->verify.reject != TLS_REJECT_NONE) {
            /* A resumed session whose certificate no longer passes rules 2 and 3. */
            (void)conn_explain(c, TLS_FAIL_CLIENT_HANDSHAKE, io, 0, NULL);
            conn_log_rejection(c);
            proxy_conn_drop(c, PROXY_CLOSE_REJECTED);
            return;
        }
        conn_side_set(c, &c->client_st, PROXY_SIDE_UP);
        c->log_mode = CONN_LOG_ON; /* authenticated: every line of it is written */
        conn_count_handshake(c);
        if (conn_identify(c) < 0) {
            conn_detail(c, "out of memory");
            proxy_conn_drop(c, PROXY_CLOSE_OOM);
            return;
        }
        if (!proxy_pool_enabled(c->l)) {
            conn_connect(c); /* a backend connection of its own, for its whole life */
            return;
        }
        /* Lending: a backend connection per request; what the client sent with its
         * handshake (a TLS 1.3 client's first request) is framed now. */
        if (conn_start_lending(c) < 0) {
            conn_detail(c, "out of memory");
            proxy_conn_drop(c, PROXY_CLOSE_OOM);
            return;
        }
        (void)conn_pump_up(c);
        return;
    }
    what = conn_reset_as_eof(io, what);
    /* Anything but a clean end of what it sends: no close_notify to it (conn_close_client). */
    if (!conn_read_eof(what)) {
        conn_side_set(c, &c->client_st, PROXY_SIDE_FAILED);
    }
    switch (c->state) {
    case PROXY_CONN_HANDSHAKE:
        conn_client_handshake_failed(c, io, what);
        return;
    case PROXY_CONN_CONNECTING:
        if ((what & PROXY_IO_EV_EOF) != 0) {
            /* Half-closed early (request sent, then FIN): pass it on once relaying. */
            c->client_eof = true;
            return;
        }
        /* A TLS error says why (errno alone would read "client: Success"). */
        (void)conn_explain(c, TLS_FAIL_CLIENT_ERROR, io, what, NULL);
        proxy_conn_drop(c, PROXY_CLOSE_CLIENT_ERROR);
        return;
    case PROXY_CONN_RELAY:
        if (conn_read_eof(what) && c->server == NULL) {
            /* Lending, between requests: no peer connection to pass the end on to. */
            conn_lend_client_ended(c);
            return;
        }
        if (conn_read_eof(what)) {
            if (conn_pool_client_ended(c)) {
                return;
            }
            conn_side_eof(c, &c->up);
            return;
        }
        (void)conn_explain(c, TLS_FAIL_CLIENT_ERROR, io, what, NULL);
        proxy_conn_drop(c, PROXY_CLOSE_CLIENT_ERROR);
        return;
    case PROXY_CONN_DRAINING:
        /* The client has read our answer and gone. */
        proxy_conn_drop(c, c->reason);
        return;
    case PROXY_CONN_SNIFF:
    case PROXY_CONN_CLOSED:
        return;
    }
}

/* ---- inbound: the PROXY protocol header (proxy_protocol.accept) ---- */

/* The ${n} blocks ${cidrs} as "10.0.0.0/8, fd00::/8" into ${buf}, cut to fit with "...". */
static void
conn_format_cidrs(const struct config_cidr *cidrs, size_t n, char *buf, size_t len)
{
    char a[INET6_ADDRSTRLEN];
    size_t o = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < n && o < len; i++) {
        int w;

        if (inet_ntop(cidrs[i].family, cidrs[i].addr, a, sizeof(a)) == NULL) {
            continue;
        }
        w = snprintf(buf + o, len - o, "%s%s/%u", i > 0 ? ", " : "", a, cidrs[i].prefix);
        if (w < 0 || (size_t)w >= len - o) {
            snprintf(buf + (len > 4 ? len - 4 : 0), len > 4 ? 4 : len, "...");
            return;
        }
        o += (size_t)w;
    }
}

/*
 * ${c}'s PROXY header, or its sender, is refused with outcome ${o}: counted, logged (as any
 * line about a connection not yet verified: conn_log_ok()) with ${why}, and closed.
 */
static void
conn_pp_reject(struct proxy_conn *c, enum proxy_pp_outcome o, const char *why)
{
    conn_detail(c, "%s", why);
    PROXY_STATS_ADD(c->l->stats->pp[o], 1);
    if (conn_log_ok(c, LOG_WARN)) {
        log_kv(LOG_WARN, "proxy_protocol_rejected", "listener", c->l->cfg->name, "remote",
               c->remote, "reason", proxy_conn_pp_outcome_str(o), "msg", why, (const char *)NULL);
    }
    proxy_conn_drop(c, PROXY_CLOSE_PROXY_PROTOCOL);
}

/* handshake_timeout while ${c} waits for its PROXY header: none at all, or part of one. */
static void
conn_pp_timeout(struct proxy_conn *c)
{
    char why[PROXY_DETAIL_MAX];
    unsigned long long ms = (unsigned long long)c->l->limits->handshake_timeout_ms;

    if (c->pre_len == 0) {
        snprintf(why, sizeof(why),
                 "no PROXY protocol header within handshake_timeout (%llums): the load balancer "
                 "opened the connection and sent nothing",
                 ms);
        conn_pp_reject(c, PROXY_PPO_TIMEOUT, why);
    } else {
        snprintf(why, sizeof(why),
                 "PROXY protocol header incomplete: %zu bytes of it within handshake_timeout "
                 "(%llums)",
                 c->pre_len, ms);
        conn_pp_reject(c, PROXY_PPO_TRUNCATED, why);
    }
}

/* ${c}'s whole PROXY header ${h}: its address becomes the connection's remote. */
static void
conn_pp_apply(struct proxy_conn *c, const struct proxy_pp_header *h)
{
    char sender[sizeof(c->remote)];

    snprintf(sender, sizeof(sender), "%s", c->remote);
    if (!h->local) {
        format_sockaddr((const struct sockaddr *)&h->src, c->remote, sizeof(c->remote));
        c->pp_sender = strdup(sender); /* the close line names it (NULL on OOM: not named) */
    }
    c->pp_local = h->local;
    PROXY_STATS_ADD(c->l->stats->pp[h->local ? PROXY_PPO_LOCAL : PROXY_PPO_OK], 1);
    if (conn_log_ok(c, LOG_DEBUG)) {
        log_kv(LOG_DEBUG, "proxy_protocol", "listener", c->l->cfg->name, "remote", c->remote,
               "sender", sender, "version", h->version == 1 ? "1" : "2", "command",
               h->local ? "local" : "proxy", (const char *)NULL);
    }
}

/*
 * Read what has arrived of ${c}'s PROXY header from its socket ${fd}: peek, parse, and take
 * off the socket only the header's own bytes, so that the TLS library still sees the
 * ClientHello from its first byte.  Returns true when the header is whole (the caller goes on
 * to sniff for TLS), false when ${c} waits for more or was dropped.
 */
static bool
conn_pp_read(struct proxy_conn *c, evutil_socket_t fd)
{
    struct proxy_pp_header h;
    char why[PROXY_DETAIL_MAX];
    size_t want;
    ssize_t n, got;
    bool whole = false;

    n = recv(fd, c->pre_buf + c->pre_len, PROXY_PP_MAX - c->pre_len, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        event_add(c->sniff, NULL);
        return false;
    }
    if (n < 0 || (n == 0 && c->pre_len == 0)) {
        conn_detail(c, "%s", n == 0 ? "closed before sending anything" : strerror(errno));
        proxy_conn_drop(c, n == 0 ? PROXY_CLOSE_CLIENT_CLOSED : PROXY_CLOSE_CLIENT_ERROR);
        return false;
    }
    if (n == 0) {
        snprintf(why, sizeof(why),
                 "PROXY protocol header incomplete: the sender closed the connection after %zu "
                 "bytes",
                 c->pre_len);
        conn_pp_reject(c, PROXY_PPO_TRUNCATED, why);
        return false;
    }
    switch (proxy_pp_parse(c->pre_buf, c->pre_len + (size_t)n, &h, why, sizeof(why))) {
    case PROXY_PP_NEED_MORE:
        if (c->pre_len + (size_t)n >= PROXY_PP_MAX) {
            snprintf(why, sizeof(why), "PROXY protocol header longer than %d bytes", PROXY_PP_MAX);
            conn_pp_reject(c, PROXY_PPO_OVERSIZED, why);
            return false;
        }
        /* Every byte peeked belongs to the header: take them, wait for the rest. */
        want = (size_t)n;
        break;
    case PROXY_PP_OK:
        want = h.len - c->pre_len;
        whole = true;
        break;
    case PROXY_PP_MISSING: {
        char msg[PROXY_DETAIL_MAX];
        int len = snprintf(msg, sizeof(msg),
                           "no PROXY protocol header: %s; proxy_protocol.accept is on, so the load "
                           "balancer must send one (HAProxy: send-proxy-v2 on the server line)",
                           why);

        /* A reason as long as the detail itself: cut, and it says so. */
        if (len >= 0 && (size_t)len >= sizeof(msg)) {
            memcpy(msg + sizeof(msg) - 4, "...", 4);
        }
        conn_pp_reject(c, PROXY_PPO_MISSING, msg);
        return false;
    }
    case PROXY_PP_OVERSIZED:
        conn_pp_reject(c, PROXY_PPO_OVERSIZED, why);
        return false;
    case PROXY_PP_MALFORMED:
    default:
        conn_pp_reject(c, PROXY_PPO_MALFORMED, why);
        return false;
    }
    got = recv(fd, c->pre_buf + c->pre_len, want, 0);
    if (got != (ssize_t)want) {
        /* What was peeked is there to read: only an error can make this short. */
        conn_detail(c, "reading the PROXY protocol header: %s",
                    got < 0 ? strerror(errno) : "short read");
        proxy_conn_drop(c, PROXY_CLOSE_CLIENT_ERROR);
        return false;
    }
    c->pre_len += want;
    if (!whole) {
        event_add(c->sniff, NULL);
        return false;
    }
    conn_pp_apply(c, &h);
    free(c->pre_buf);
    c->pre_buf = NULL;
    return true;
}

/* ---- inbound: SNIFF ---- */

/* The Host header of a peeked plaintext request, reduced to safe characters, or "". */
static void
sniff_host(const char *req, char *host, size_t len)
{
    const char *h = req;
    size_t n = 0;

    host[0] = '\0';
    while ((h = strchr(h, '\n')) != NULL) {
        h++;
        if (strncasecmp(h, "host:", 5) == 0) {
            h += 5;
            while (*h == ' ' || *h == '\t') {
                h++;
            }
            while (n + 1 < len && (isalnum((unsigned char)*h) || strchr(".-:[]", *h) != NULL) &&
                   *h != '\0') {
                host[n++] = *h++;
            }
            host[n] = '\0';
            return;
        }
    }
}

/*
 * The client side of ${c} on its accepted socket, with ${ssl} (inbound: its handshake is
 * OPENING) or plain (UP at once), reading up to the relay's limit.  Returns 0, or -1 on OOM
 * (the socket and ${ssl} are freed).
 */
static int
conn_open_client(struct proxy_conn *c, SSL *ssl)
{
    c->client = conn_side(c, c->fd, ssl, PROXY_IO_SERVER);
    c->fd = -1; /* owned by the side now (closed if that failed) */
    if (c->client == NULL) {
        return -1;
    }
    conn_side_set(c, &c->client_st, ssl != NULL ? PROXY_SIDE_OPENING : PROXY_SIDE_UP);
    proxy_io_setcb(c->client, client_read_cb, client_write_cb, client_event_cb, c);
    proxy_relay_read_limit(c->client);
    return 0;
}

/* Plaintext on a TLS port: the 400 of CONTRACT §5, naming the https URL. */
static void
sniff_plaintext(struct proxy_conn *c, const char *peeked)
{
    char host[CONFIG_ADDR_STR_MAX], local[CONFIG_ADDR_STR_MAX], body[512];
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);

    sniff_host(peeked, host, sizeof(host));
    if (host[0] == '\0') {
        if (getsockname(c->fd, (struct sockaddr *)&ss, &sslen) == 0) {
            format_sockaddr((struct sockaddr *)&ss, local, sizeof(local));
        } else {
            snprintf(local, sizeof(local), "%s", c->l->listen_text);
        }
        snprintf(host, sizeof(host), "%s", local);
    }
    snprintf(body, sizeof(body), "This port requires TLS%s. Use https://%s/ instead of http://.\n",
             c->l->cfg->client_cert == CONFIG_CLIENT_CERT_REQUIRED
                 ? " with a client certificate issued by this site's CA"
                 : "",
             host);
    conn_detail(c, "plaintext on a TLS port");
    if (conn_open_client(c, NULL) < 0) {
        proxy_conn_drop(c, PROXY_CLOSE_OOM);
        return;
    }
    proxy_conn_answer(c, PROXY_CLOSE_NOT_TLS, 400, "Bad Request", "text/plain; charset=utf-8",
                      body);
}

static void
sniff_start_tls(struct proxy_conn *c)
{
    SSL *ssl = tls_ssl_new(c->l->tls, &c->verify);

    if (ssl == NULL) {
        proxy_conn_drop(c, PROXY_CLOSE_OOM);
        return;
    }
    /* The handshake starts on the next loop iteration. */
    if (conn_open_client(c, ssl) < 0) {
        proxy_conn_drop(c, PROXY_CLOSE_OOM);
        return;
    }
    conn_set_state(c, PROXY_CONN_HANDSHAKE);
    proxy_io_enable(c->client, EV_READ | EV_WRITE);
}

static void
sniff_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_conn *c = arg;
    char peek[1024];
    ssize_t n;

    (void)what;
    conn_check(c);
    if (c->pre_buf != NULL && !conn_pp_read(c, fd)) {
        return;
    }
    /* Peek, do not read: the TLS library must see the ClientHello from its first byte. */
    n = recv(fd, peek, sizeof(peek) - 1, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        event_add(c->sniff, NULL);
        return;
    }
    if (n <= 0 && c->pp_local && (n == 0 || errno == ECONNRESET)) {
        /* HAProxy's checks: a LOCAL header, then a close or a reset.  Not the client's error. */
        conn_detail(c, "load balancer health check: a PROXY v2 LOCAL header, then %s",
                    n == 0 ? "a close" : "a reset");
        proxy_conn_drop(c, PROXY_CLOSE_CLIENT_CLOSED);
        return;
    }
    if (n <= 0) {
        conn_detail(c, "%s", n == 0 ? "closed before sending anything" : strerror(errno));
        proxy_conn_drop(c, n == 0 ? PROXY_CLOSE_CLIENT_CLOSED : PROXY_CLOSE_CLIENT_ERROR);
        return;
    }
    peek[n] = '\0';
    event_free(c->sniff); /* safe inside its own callback: libevent does not touch it after */
    c->sniff = NULL;
    if ((unsigned char)peek[0] == TLS_RECORD_HANDSHAKE) {
        sniff_start_tls(c);
    } else {
        sniff_plaintext(c, peek);
    }
}

/* ---- accept ---- */

static int
conn_start_outbound(struct proxy_conn *c)
{
    if (conn_open_client(c, NULL) < 0) {
        return -1;
    }
    /* Read (and buffer) the client's first bytes while we dial; EOF is noticed too. */
    proxy_io_enable(c->client, EV_READ | EV_WRITE);
    if (proxy_pool_enabled(c->l)) {
        /* Lending: no peer connection until a request head is ready. */
        return conn_start_lending(c);
    }
    conn_connect(c);
    return 0;
}

/*
 * proxy_conn_accept(l, fd, sa, salen, counted):
 * Take ownership of the accepted socket ${fd} and start its connection: inbound sniffs for
 * TLS, outbound dials the peer.  On OOM the socket is closed and the event logged.  ${counted}:
 * the worker that accepted it and handed it over counted it against limits.max_connections
 * already (proxy_worker_place).
 */
void
proxy_conn_accept(struct proxy_listener *l, evutil_socket_t fd, const struct sockaddr *sa,
                  int salen, bool counted)
{
    struct proxy_worker *w = l->w;
    struct proxy_conn *c;

    (void)salen;
    c = proxy_spare_get(&w->spare_conns, sizeof(*c)); /* zeroed, as by calloc */
    if (c == NULL) {
        log_kv(LOG_WARN, "oom", "listener", l->cfg->name, "msg",
               "out of memory accepting a connection; closed it", (const char *)NULL);
        evutil_closesocket(fd);
        if (counted) {
            proxy_worker_conns_changed(w, false);
        }
        return;
    }
    c->magic = PROXY_CONN_MAGIC;
    c->l = l;
    c->fd = fd;
    c->state = PROXY_CONN_SNIFF;
    format_sockaddr(sa, c->remote, sizeof(c->remote));
    /* The real clock, not the loop's cached one: handshake latency is measured from here. */
    evutil_gettimeofday(&c->started, NULL);
    c->last_active = c->started;
    set_nodelay(fd);

    c->next = w->conns;
    if (w->conns != NULL) {
        w->conns->prev = c;
    }
    w->conns = c;
    PROXY_STAT_ADD(w->n_conns, 1);
    l->n_conns++;
    PROXY_STATS_ADD(l->stats->conns_total, 1);
    PROXY_STATS_ADD(l->stats->conns_open, 1);
    if (!counted) {
        proxy_worker_conns_changed(w, true);
    }

    c->timer = evtimer_new(w->base, conn_timer_cb, c);
    if (c->timer == NULL) {
        proxy_conn_drop(c, PROXY_CLOSE_OOM);
        return;
    }
    if (!conn_inbound(c)) {
        if (conn_start_outbound(c) < 0) {
            proxy_conn_drop(c, PROXY_CLOSE_OOM);
        }
        return;
    }
    if (l->cfg->pp_accept) {
        if (!config_value_cidr_match(l->cfg->pp_from, l->cfg->n_pp_from, sa)) {
            char why[PROXY_DETAIL_MAX];

            char from[256];

            conn_format_cidrs(l->cfg->pp_from, l->cfg->n_pp_from, from, sizeof(from));
            snprintf(why, sizeof(why),
                     "sender %s is not in proxy_protocol.from (%s) of listener %s: with "
                     "proxy_protocol.accept only the load balancers listed there may connect",
                     c->remote, from, l->cfg->name);
            conn_pp_reject(c, PROXY_PPO_REFUSED, why);
            return;
        }
        if ((c->pre_buf = malloc(PROXY_PP_MAX)) == NULL) {
            proxy_conn_drop(c, PROXY_CLOSE_OOM);
            return;
        }
    }
    c->sniff = event_new(w->base, fd, EV_READ, sniff_cb, c);
    if (c->sniff == NULL) {
        proxy_conn_drop(c, PROXY_CLOSE_OOM);
        return;
    }
    event_add(c->sniff, NULL);
    conn_timer_in(c, l->limits->handshake_timeout_ms);
}

/*
 * proxy_conn_drain_idle(w):
 * Drop the keep-alive HTTP connections of worker ${w} that sit between requests (drain start).
 */
void
proxy_conn_drain_idle(struct proxy_worker *w)
{
    struct proxy_conn *c = w->conns, *next;

    for (; c != NULL; c = next) {
        next = c->next;
        if (c->state == PROXY_CONN_RELAY && proxy_exchange_idle(c) &&
            evbuffer_get_length(proxy_io_output(c->client)) == 0) {
            proxy_conn_drop(c, PROXY_CLOSE_SHUTDOWN);
        }
    }
}

/*
 * proxy_conn_drop_all(w, reason):
 * Drop every open connection of worker ${w} (shutdown).
 */
void
proxy_conn_drop_all(struct proxy_worker *w, enum proxy_close_reason reason)
{
    while (w->conns != NULL) {
        proxy_conn_drop(w->conns, reason);
    }
}
