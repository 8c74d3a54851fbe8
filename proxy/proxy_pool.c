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

/* An idle connection must stay silent: a byte from the peer (a stray response, a TLS alert's
 * record) means it cannot carry a request any more. */
static void
pool_read_cb(struct proxy_io *io, void *arg)
{
    struct proxy_pool_entry *e = arg;

    if (evbuffer_get_length(proxy_io_input(io)) > 0) {
        pool_close(&e->l->pool, e, false, "peer_sent_data");
    }
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
 * proxy_pool_take(l, verify):
 * The most recently pooled idle connection of ${l}, detached (no callbacks; reading stays on,
 * so the caller sets its own callbacks before the loop runs again), with the peer's verified
 * identity copied into ${verify} (outbound; NULL for a plain backend connection), which its
 * SSL reports to from now on; or NULL when the pool is empty.  Counts a reuse.
 */
struct proxy_io *
proxy_pool_take(struct proxy_listener *l, struct tls_verify_result *verify)
{
    struct proxy_pool *pool = &l->pool;
    struct proxy_pool_entry *e;
    struct proxy_io *io;

    /* Never lend a side that holds a byte from the peer or is no longer open both ways. */
    while ((e = pool->newest) != NULL && (evbuffer_get_length(proxy_io_input(e->io)) > 0 ||
                                          proxy_io_state(e->io) != PROXY_IO_OPEN)) {
        pool_close(pool, e, false, "peer_sent_data");
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
 * proxy_pool_put(l, io, verify):
 * Keep the idle peer side ${io} (from proxy_worker_side_new(); its last response read to the
 * end, nothing in either buffer) of a connection of ${l}, with the peer's verified identity
 * ${verify} (NULL for a plain backend connection); the pool owns it from now on.  Closed
 * instead when ${l} no longer takes any (retired, draining, pooling off), when something is still
 * buffered, or on OOM.  The oldest idle connection is closed when max_idle are kept already.
 */
void
proxy_pool_put(struct proxy_listener *l, struct proxy_io *io,
               const struct tls_verify_result *verify)
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
    while (pool->spare != NULL) {
        struct proxy_pool_entry *e = pool->spare;

        pool->spare = e->next;
        free(e);
    }
    if (pool->timer != NULL) {
        event_free(pool->timer);
        pool->timer = NULL;
    }
}
