/*
 * proxy_pool: the idle keep-alive connections of a `protocol: http` listener to the other
 * side (`pool: { max_idle, idle_timeout }`, CONTRACT §3): mTLS connections to the peer
 * (outbound), plain ones to the backend (inbound).
 *
 * These connections are lent per request, not per client: one is taken by a client
 * connection when a request head is ready to go, and put back here by proxy_conn.c when its
 * last response was read to its end with keep-alive both ways and no further request of that
 * client waits for it (or when the client is done).  So an idle keep-alive client (a local
 * replicator, or a peer site's TLS connection) holds no connection to the other side, and a
 * few serve many clients.  While idle, a connection is watched: any byte
 * or end of stream from the peer, or idle_timeout, closes it.  At most max_idle are kept (the
 * oldest is closed first).  The pool lives in its listener and is used by the listener's
 * thread only, so it takes no lock.  Entries are recycled: a busy pool allocates nothing.
 *
 * Which connection may come back (the response read to its end, keep-alive both ways, nothing
 * in flight) is decided by proxy_exchange.c; this file only keeps what it is given.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "log.h"
#include "proxy_internal.h"
#include "proxy_stats.h"

struct proxy_pool_entry {
    struct proxy_listener *l;
    struct proxy_io *io; /* owned, from the worker's spare sides (proxy_worker_side_new()) */
    bool owned;          /* inbound: lent again only to the same peer (owner) */
    unsigned char owner[PROXY_POOL_OWNER_LEN];
    struct tls_verify_result verify; /* the peer's verified identity, attached to its SSL */
    struct timeval since;            /* put into the pool */
    struct proxy_pool_entry *prev, *next;
};

static uint64_t
tv_ms(const struct timeval *tv)
{
    return (uint64_t)tv->tv_sec * 1000u + (uint64_t)tv->tv_usec / 1000u;
}

/*
 * proxy_pool_enabled(l):
 * Does ${l} pool its peer or backend connections (protocol http, pool.max_idle > 0)?
 */
bool
proxy_pool_enabled(const struct proxy_listener *l)
{
    return l->cfg->protocol == CONFIG_PROTOCOL_HTTP && l->cfg->pool_max_idle > 0;
}

/* Unlink ${e} from the idle list and keep it as a spare. */
static void
pool_unlink(struct proxy_pool *pool, struct proxy_pool_entry *e)
{
    if (e->prev != NULL) {
        e->prev->next = e->next;
    } else {
        pool->oldest = e->next;
    }
    if (e->next != NULL) {
        e->next->prev = e->prev;
    } else {
        pool->newest = e->prev;
    }
    pool->n_idle--;
    e->io = NULL;
    e->prev = NULL;
    e->next = pool->spare;
    pool->spare = e;
}

/*
 * Close the idle connection ${e}: with a close_notify when we end it (${polite}), without one
 * when the peer already did or failed.
 */
static void
pool_close(struct proxy_pool *pool, struct proxy_pool_entry *e, bool polite, const char *why)
{
    struct proxy_io *io = e->io;
    struct proxy_worker *w = e->l->w;

    if (log_enabled(LOG_DEBUG)) {
        log_kv(LOG_DEBUG, "pool_closed", "listener", e->l->cfg->name, "target", e->l->target_text,
               "reason", why, (const char *)NULL);
    }
    pool_unlink(pool, e);
    proxy_io_setcb(io, NULL, NULL, NULL, NULL);
    if (polite) {
        proxy_io_shutdown(io);
    }
    proxy_worker_side_free(w, io);
}

/*
 * An idle connection must stay silent: a byte from the other side (a stray response, a TLS
 * alert's record) means it cannot carry a request any more.  A backend or peer that answers
 * one request twice is worth a warning: had the second answer come a moment later, with the
 * connection lent again, it would have been read as the next request's response (the fifth
 * black-box attack; on an inbound listener that request can only be the same peer's: see
 * proxy_pool_take()).
 */
static void
pool_read_cb(struct proxy_io *io, void *arg)
{
    struct proxy_pool_entry *e = arg;
    const struct proxy_listener *l = e->l;

    if (evbuffer_get_length(proxy_io_input(io)) > 0) {
        log_kv(LOG_WARN, "bad_response", "listener", l->cfg->name, "target", l->target_text, "rule",
               "unsolicited", "msg",
               l->cfg->mode == CONFIG_MODE_INBOUND
                   ? "the backend sent bytes on an idle pooled connection, after the end of the "
                     "response it owed (it answered a request twice?); the connection is closed"
                   : "the peer sent bytes on an idle pooled connection, after the end of the "
                     "response it owed (it answered a request twice?); the connection is closed",
               (const char *)NULL);
        pool_close(&e->l->pool, e, false, "peer_sent_data");
    }
}

/* May ${e} be lent to a request of ${owner} (NULL: outbound, any request)? */
static bool
pool_owner_is(const struct proxy_pool_entry *e, const unsigned char *owner)
{
    return owner == NULL ? !e->owned
                         : e->owned && memcmp(e->owner, owner, PROXY_POOL_OWNER_LEN) == 0;
}

/* The peer closed an idle connection (its own keep-alive timeout, a restart) or it failed. */
static void
pool_event_cb(struct proxy_io *io, short what, void *arg)
{
    struct proxy_pool_entry *e = arg;

    (void)io;
    (void)what;
    pool_close(&e->l->pool, e, false, "peer_closed");
}

/* Arm the timer for the oldest idle connection's idle_timeout. */
static void
pool_timer_arm(struct proxy_listener *l)
{
    struct proxy_pool *pool = &l->pool;
    struct timeval now, tv;
    uint64_t due, at;

    if (pool->oldest == NULL || pool->timer == NULL) {
        return;
    }
    event_base_gettimeofday_cached(l->w->base, &now);
    due = tv_ms(&pool->oldest->since) + l->cfg->pool_idle_timeout_ms;
    at = due > tv_ms(&now) ? due - tv_ms(&now) : 0;
    tv.tv_sec = (time_t)(at / 1000);
    tv.tv_usec = (suseconds_t)((at % 1000) * 1000);
    evtimer_add(pool->timer, &tv);
}

/* idle_timeout: close every idle connection that has waited that long, oldest first. */
static void
pool_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_listener *l = arg;
    struct proxy_pool *pool = &l->pool;
    struct timeval now;

    (void)fd;
    (void)what;
    while (pool->oldest != NULL) {
        event_base_gettimeofday_cached(l->w->base, &now);
        if (tv_ms(&pool->oldest->since) + l->cfg->pool_idle_timeout_ms > tv_ms(&now)) {
            break;
        }
        pool_close(pool, pool->oldest, true, "idle_timeout");
    }
    pool_timer_arm(l);
}

/*
 * proxy_pool_take(l, verify, owner):
 * The most recently pooled idle connection of ${l} that ${owner} may have, detached (no
 * callbacks; reading stays on, so the caller sets its own callbacks before the loop runs
 * again), with the peer's verified identity copied into ${verify} (outbound; NULL for a plain
 * backend connection), which its SSL reports to from now on; or NULL when there is none.
 * ${owner} (inbound: PROXY_POOL_OWNER_LEN bytes naming the client's certificate,
 * struct proxy_identity) takes only a connection put back by the same owner, so that a backend
 * that answers a request twice can never hand one peer's response to another; NULL (outbound:
 * one peer) takes any.  Counts a reuse.
 */
struct proxy_io *
proxy_pool_take(struct proxy_listener *l, struct tls_verify_result *verify,
                const unsigned char *owner)
{
    struct proxy_pool *pool = &l->pool;
    struct proxy_pool_entry *e, *prev;
    struct proxy_io *io;

    for (e = pool->newest; e != NULL; e = prev) {
        prev = e->prev;
        /* Never lend a side that holds a byte from the other side or is no longer open. */
        if (evbuffer_get_length(proxy_io_input(e->io)) > 0 ||
            proxy_io_state(e->io) != PROXY_IO_OPEN) {
            pool_close(pool, e, false, "peer_sent_data");
        } else if (pool_owner_is(e, owner)) {
            break;
        }
    }
    if (e == NULL) {
        return NULL;
    }
    io = e->io;
    if (verify != NULL) {
        memcpy(verify, &e->verify, sizeof(*verify));
        tls_ssl_set_result(proxy_io_ssl(io), verify);
    }
    proxy_io_setcb(io, NULL, NULL, NULL, NULL);
    pool_unlink(pool, e);
    PROXY_STATS_ADD(l->stats->pool_reused, 1);
    return io;
}

/*
 * proxy_pool_put(l, io, verify, owner):
 * Keep the idle peer side ${io} (from proxy_worker_side_new(); its last response read to the
 * end, nothing in either buffer) of a connection of ${l}, with the peer's verified identity
 * ${verify} (NULL for a plain backend connection), lent again only to ${owner} (NULL: to any;
 * proxy_pool_take()); the pool owns it from now on.  Closed
 * instead when ${l} no longer takes any (retired, draining, pooling off), when something is still
 * buffered, or on OOM.  The oldest idle connection is closed when max_idle are kept already.
 */
void
proxy_pool_put(struct proxy_listener *l, struct proxy_io *io,
               const struct tls_verify_result *verify, const unsigned char *owner)
{
    struct proxy_pool *pool = &l->pool;
    struct proxy_pool_entry *e;

    if (!proxy_pool_enabled(l) || l->retired || l->w->draining ||
        proxy_io_state(io) != PROXY_IO_OPEN || evbuffer_get_length(proxy_io_input(io)) > 0 ||
        evbuffer_get_length(proxy_io_output(io)) > 0) {
        goto close;
    }
    if (pool->timer == NULL && (pool->timer = evtimer_new(l->w->base, pool_timer_cb, l)) == NULL) {
        goto close;
    }
    if (pool->spare != NULL) {
        e = pool->spare;
        pool->spare = e->next;
    } else if ((e = calloc(1, sizeof(*e))) == NULL) {
        goto close;
    }
    if (pool->n_idle >= l->cfg->pool_max_idle) {
        pool_close(pool, pool->oldest, true, "max_idle");
    }
    e->l = l;
    e->io = io;
    e->owned = owner != NULL;
    if (owner != NULL) {
        memcpy(e->owner, owner, PROXY_POOL_OWNER_LEN);
    }
    if (verify != NULL) {
        memcpy(&e->verify, verify, sizeof(e->verify));
        tls_ssl_set_result(proxy_io_ssl(io), &e->verify);
    }
    event_base_gettimeofday_cached(l->w->base, &e->since);
    e->next = NULL;
    e->prev = pool->newest;
    if (pool->newest != NULL) {
        pool->newest->next = e;
    } else {
        pool->oldest = e;
    }
    pool->newest = e;
    pool->n_idle++;
    /* Watch it: reading on, the relay's watermarks and throttling undone. */
    proxy_io_setcb(io, pool_read_cb, NULL, pool_event_cb, e);
    proxy_io_set_read_high(io, PROXY_RELAY_HIGH);
    proxy_io_set_write_low(io, 0);
    proxy_io_disable(io, EV_WRITE);
    proxy_io_enable(io, EV_READ);
    (void)proxy_io_release_buffers(io);
    if (!evtimer_pending(pool->timer, NULL)) {
        pool_timer_arm(l);
    }
    return;

close:
    proxy_io_setcb(io, NULL, NULL, NULL, NULL);
    proxy_io_shutdown(io);
    proxy_worker_side_free(l->w, io);
}

/*
 * proxy_pool_flush(l):
 * Close every idle connection of ${l} (its listener was retired by a reload, or is freed).
 */
void
proxy_pool_flush(struct proxy_listener *l)
{
    while (l->pool.oldest != NULL) {
        pool_close(&l->pool, l->pool.oldest, true, "listener_closed");
    }
    if (l->pool.timer != NULL) {
        evtimer_del(l->pool.timer);
    }
}

/*
 * proxy_pool_free(l):
 * Close ${l}'s idle connections and release the pool's memory.
 */
void
proxy_pool_free(struct proxy_listener *l)
{
    struct proxy_pool *pool = &l->pool;

    proxy_pool_flush(l);
    for (struct proxy_pool_entry *e = pool->spare, *next; e != NULL; e = next) {
        /* The spare list has no cycle; clang-analyzer cannot rule one out. */
        // NOLINTNEXTLINE(clang-analyzer-unix.Malloc)
        next = e->next;
        free(e);
    }
    pool->spare = NULL;
    if (pool->timer != NULL) {
        event_free(pool->timer);
        pool->timer = NULL;
    }
}
