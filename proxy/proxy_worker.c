/*
 * proxy_worker: one worker thread's life.  Its event loop and the commands the control thread
 * queues for it (new listeners at start and reload, drain, stop), its heartbeat for /livez,
 * its accepting (paused at limits.max_connections, counted over every worker, and after
 * EMFILE), and its DNS resolver.  The connections themselves are proxy_conn.c's; this file
 * is what they report to when they open and end (proxy_worker_conns_changed,
 * proxy_worker_conn_gone), so no connection file calls into the control thread's proxy.c.
 *
 * Threads: everything here runs on the worker's own thread, except proxy_worker_new/_free
 * (control, before the thread starts or after it ended), proxy_worker_post (control: queues
 * under cmd_mu) and the handing over of a connection or a max_connections change by another
 * worker; those wake the loop with worker_wake() (an eventfd), so that the worker's event
 * base is never touched by another thread and runs without locks (EVENT_BASE_FLAG_NOLOCK).
 */
#define _GNU_SOURCE 1 /* pthread_setname_np */

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "log.h"
#include "proxy_internal.h"
#include "proxy_spare.h"
#include "proxy_stats.h"

/* Why another thread woke a worker (proxy_worker.wake_bits). */
#define WAKE_CMD     1u /* the control thread queued a command (proxy_worker_post) */
#define WAKE_HANDOFF 2u /* another worker handed over a connection (proxy_worker_place) */
#define WAKE_UPDATE  4u /* another worker crossed limits.max_connections */

/*
 * worker_wake(w, why):
 * From any thread: make ${w}'s loop run worker_wake_cb() with ${why} among its reasons.
 * Reasons given before the callback runs are seen by it (one write per call; the callback
 * takes the bits after draining the eventfd).
 */
static void
worker_wake(struct proxy_worker *w, unsigned why)
{
    uint64_t one = 1;

    __atomic_fetch_or(&w->wake_bits, why, __ATOMIC_RELEASE);
    while (write(w->wake_fd, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
}

/* ---- the memory of connection sides ---- */

/* A side's memory: the proxy_io, and its link while it waits to be freed (worker's reap). */
struct proxy_side {
    struct proxy_io io; /* first: a side's address is its proxy_io's */
    struct proxy_side *next_dead;
};

/*
 * proxy_worker_side_new(w):
 * Memory for one side (struct proxy_io, all zero) from ${w}'s spare sides, or NULL on OOM.
 * Sides are owned by pointer (a proxy_io must not move: its events point into it), so that a
 * peer side can pass between a connection and its listener's pool.
 */
struct proxy_io *
proxy_worker_side_new(struct proxy_worker *w)
{
    struct proxy_side *side = proxy_spare_get(&w->spare_sides, sizeof(struct proxy_side));

    return side != NULL ? &side->io : NULL;
}

/* The worker's reap event: free the sides that ended (proxy_worker_side_free()). */
static void
worker_reap_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    proxy_worker_reap(arg);
}

/*
 * proxy_worker_reap(w):
 * Free every side of ${w} that ended (proxy_worker_side_free()) and give its memory back to the
 * spare sides.  Run from the loop, and by proxy_worker_free() before the base goes.
 */
void
proxy_worker_reap(struct proxy_worker *w)
{
    while (w->dead_sides != NULL) {
        struct proxy_side *side = w->dead_sides;

        w->dead_sides = side->next_dead;
        proxy_io_free(&side->io);
        proxy_spare_put(&w->spare_sides, side);
    }
}

/*
 * proxy_worker_side_free(w, io):
 * ${io} has ended: no callback of it runs any more and it reads and writes nothing more; what it
 * holds (socket, SSL, buffers: proxy_io_free(), no close_notify) is freed on the next loop turn,
 * so a caller still inside the HTTP framer over its buffers (a verdict acted on from inside
 * proxy_http_pump()) reads valid memory, as libevent's deferred bufferevent free allowed.
 * NULL is a no-op.  Safe inside ${io}'s own callbacks.
 */
void
proxy_worker_side_free(struct proxy_worker *w, struct proxy_io *io)
{
    struct proxy_side *side = (struct proxy_side *)io;

    if (io == NULL) {
        return;
    }
    proxy_io_setcb(io, NULL, NULL, NULL, NULL);
    proxy_io_disable(io, EV_READ | EV_WRITE);
    side->next_dead = w->dead_sides;
    w->dead_sides = side;
    if (w->reap == NULL) {
        w->reap = event_new(w->base, -1, 0, worker_reap_cb, w);
    }
    if (w->reap != NULL) {
        event_active(w->reap, EV_TIMEOUT, 0);
    } else {
        proxy_worker_reap(w); /* OOM: free at once (the old hazard, but no leak) */
    }
}

/* ---- accepting ---- */

/*
 * proxy_worker_listeners_update(w):
 * Accept on worker ${w} while the process is under limits.max_connections and this worker is
 * not backing off after EMFILE; otherwise leave new connections in the kernel backlog
 * (CONTRACT §5), never refuse in a busy loop.
 */
void
proxy_worker_listeners_update(struct proxy_worker *w)
{
    bool enable =
        PROXY_STAT_GET(w->p->conns) < PROXY_STAT_GET(w->p->max_conns) && !w->accept_paused_fd;

    if (w->draining) {
        return;
    }
    for (size_t i = 0; i < w->n_listeners; i++) {
        if (w->listeners[i] == NULL || w->listeners[i]->lev == NULL) {
            continue;
        }
        if (enable) {
            evconnlistener_enable(w->listeners[i]->lev);
        } else {
            evconnlistener_disable(w->listeners[i]->lev);
        }
    }
}

/*
 * proxy_worker_conns_changed(w, opened):
 * A connection of worker ${w} opened or ended.  limits.max_connections counts every worker's
 * connections: the worker whose connection crosses it logs that once and makes every worker
 * pause or resume accepting (the others through their update event, so at most one
 * connection per other worker can slip past the limit meanwhile).
 */
void
proxy_worker_conns_changed(struct proxy_worker *w, bool opened)
{
    struct proxy *p = w->p;
    unsigned max = PROXY_STAT_GET(p->max_conns);
    unsigned old = opened ? __atomic_fetch_add(&p->conns, 1, __ATOMIC_RELAXED)
                          : __atomic_fetch_sub(&p->conns, 1, __ATOMIC_RELAXED);
    unsigned now = opened ? old + 1 : old - 1;
    char n[16];

    if ((old < max) == (now < max)) {
        if (opened && now >= max) {
            /* Over the limit already (another worker's pause is on its way): stop here too. */
            proxy_worker_listeners_update(w);
        }
        return;
    }
    snprintf(n, sizeof(n), "%u", max);
    log_kv(now >= max ? LOG_WARN : LOG_INFO, now >= max ? "accept_paused" : "accept_resumed",
           "max_connections", n, "msg",
           now >= max ? "limits.max_connections reached; new connections wait in the backlog"
                      : "below limits.max_connections again; accepting",
           (const char *)NULL);
    for (size_t i = 0; i < p->n_workers; i++) {
        if (p->workers[i] == w) {
            proxy_worker_listeners_update(w);
        } else {
            worker_wake(p->workers[i], WAKE_UPDATE);
        }
    }
}

static void
accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_worker *w = arg;

    (void)fd;
    (void)what;
    w->accept_paused_fd = false;
    proxy_worker_listeners_update(w);
}

/*
 * proxy_worker_accept_error(w, err):
 * accept() failed with ${err} on worker ${w}.  Out of descriptors or memory: pause its
 * listeners for PROXY_ACCEPT_BACKOFF_MS (the connection stays in the backlog); anything else
 * is logged.
 */
void
proxy_worker_accept_error(struct proxy_worker *w, int err)
{
    struct timeval tv = {0, (suseconds_t)PROXY_ACCEPT_BACKOFF_MS * 1000};

    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        /* One warning per episode; accept_recovered reports how many attempts failed. */
        if (__atomic_fetch_add(&w->p->accept_failures, 1, __ATOMIC_RELAXED) == 0) {
            log_kv(LOG_WARN, "accept_failed", "error", strerror(err), "msg",
                   "out of file descriptors or memory; pausing accept for 100ms (raise "
                   "LimitNOFILE / ulimit -n, or lower limits.max_connections)",
                   (const char *)NULL);
        }
        w->accept_paused_fd = true;
        proxy_worker_listeners_update(w);
        evtimer_add(w->accept_resume, &tv);
        return;
    }
    log_kv(LOG_WARN, "accept_failed", "error", strerror(err), (const char *)NULL);
}

/*
 * accept_resume_new(w):
 * The EMFILE backoff timer of worker ${w}; NULL on OOM.
 */
static struct event *
accept_resume_new(struct proxy_worker *w)
{
    return evtimer_new(w->base, accept_resume_cb, w);
}
/* ---- balanced accepts ---- */

/*
 * A socket one worker accepted for another (SO_REUSEPORT hashes connections to workers by
 * address and port, blind to how many each one holds; 64 connections often land 38:26 on two).
 */
struct proxy_handoff {
    evutil_socket_t fd;
    struct sockaddr_storage addr;
    int addr_len;
    const struct config_listener *cfg; /* the listener it came in on (its generation's) */
    struct proxy_gen *gen;             /* a reference that keeps cfg alive while queued: a
                                          reload may retire that listener in between */
    struct proxy_handoff *next;
};

/* What ${w} holds: open connections plus those queued for it. */
static unsigned
worker_load(struct proxy_worker *w)
{
    return PROXY_STAT_GET(w->n_conns) + PROXY_STAT_GET(w->handoff_pending);
}

/*
 * proxy_worker_pick(load, n, self):
 * Which of ${n} workers, holding ${load}[i] connections each (UINT_MAX: not serving), should
 * take a connection worker ${self} accepted: the least loaded one (the first of equals) when it
 * holds at least PROXY_BALANCE_SLACK fewer than ${self}, else ${self}.
 */
size_t
proxy_worker_pick(const unsigned *load, size_t n, size_t self)
{
    size_t to = self;

    for (size_t i = 0; i < n; i++) {
        if (i != self && load[i] != UINT_MAX && load[i] + PROXY_BALANCE_SLACK <= load[self] &&
            load[i] < load[to]) {
            to = i;
        }
    }
    return to;
}

/* The worker ${l}'s worker should give a new connection to, or NULL to keep it. */
static struct proxy_worker *
worker_pick(const struct proxy_listener *l)
{
    struct proxy *p = l->w->p;
    unsigned load[256];
    size_t n = p->n_workers < 256 ? p->n_workers : 256, self = n, to;

    for (size_t i = 0; i < n; i++) {
        struct proxy_worker *o = p->workers[i];

        if (o == l->w) {
            self = i;
        }
        load[i] = __atomic_load_n(&o->done, __ATOMIC_ACQUIRE) ? UINT_MAX : worker_load(o);
    }
    if (self == n) {
        return NULL;
    }
    to = proxy_worker_pick(load, n, self);
    return to == self ? NULL : p->workers[to];
}

/*
 * proxy_worker_place(l, fd, sa, salen):
 * A connection accepted on listener ${l}: served by ${l}'s worker, or handed to a worker that
 * holds PROXY_BALANCE_SLACK fewer connections (its copy of the same listener serves it).
 */
void
proxy_worker_place(struct proxy_listener *l, evutil_socket_t fd, const struct sockaddr *sa,
                   int salen)
{
    struct proxy_worker *to = l->w->draining ? NULL : worker_pick(l);
    struct proxy_handoff *h;

    if (to == NULL || salen < 0 || (size_t)salen > sizeof(h->addr) ||
        (h = calloc(1, sizeof(*h))) == NULL) {
        proxy_conn_accept(l, fd, sa, salen, false);
        return;
    }
    h->fd = fd;
    memcpy(&h->addr, sa, (size_t)salen);
    h->addr_len = salen;
    h->cfg = l->cfg;
    h->gen = l->gen;
    PROXY_STAT_ADD(h->gen->refs, 1); /* dropped once the other worker has served it */
    /* Counted against limits.max_connections now, by the worker that accepts (it pauses its
     * listeners when this crosses the limit), not when the other worker gets to it. */
    proxy_worker_conns_changed(l->w, true);
    PROXY_STAT_ADD(to->handoff_pending, 1);
    pthread_mutex_lock(&to->handoff_mu);
    if (to->handoff_tail != NULL) {
        to->handoff_tail->next = h;
    } else {
        to->handoff_head = h;
    }
    to->handoff_tail = h;
    pthread_mutex_unlock(&to->handoff_mu);
    worker_wake(to, WAKE_HANDOFF);
}

/* ${w}'s copy of the listener a handed-over connection came in on, or NULL. */
static struct proxy_listener *
worker_listener_for(struct proxy_worker *w, const struct config_listener *cfg)
{
    for (size_t i = 0; i < w->n_listeners; i++) {
        if (w->listeners[i] != NULL && w->listeners[i]->cfg == cfg) {
            return w->listeners[i];
        }
    }
    /* A reload swapped the sets in between: the listener of that name now, if any. */
    for (size_t i = 0; i < w->n_listeners; i++) {
        if (w->listeners[i] != NULL && strcmp(w->listeners[i]->cfg->name, cfg->name) == 0) {
            return w->listeners[i];
        }
    }
    return NULL;
}

/* On worker ${w}: serve the connections other workers handed to it, in order. */
static void
worker_handoff(struct proxy_worker *w)
{
    struct proxy_handoff *h, *next;

    pthread_mutex_lock(&w->handoff_mu);
    h = w->handoff_head;
    w->handoff_head = w->handoff_tail = NULL;
    pthread_mutex_unlock(&w->handoff_mu);
    for (; h != NULL; h = next) {
        struct proxy_listener *l = worker_listener_for(w, h->cfg);

        next = h->next;
        if (l != NULL) {
            proxy_conn_accept(l, h->fd, (const struct sockaddr *)&h->addr, h->addr_len, true);
        } else {
            log_kv(LOG_WARN, "handoff_dropped", "listener", h->cfg->name, "msg",
                   "a reload removed the listener while a connection was handed between workers",
                   (const char *)NULL);
            evutil_closesocket(h->fd);
            proxy_worker_conns_changed(w, false);
        }
        PROXY_STAT_SUB(w->handoff_pending, 1);
        PROXY_STAT_ADD(w->handoffs, 1);
        proxy_gen_unref(h->gen);
        free(h);
    }
}

/* Close the connections still queued for ${w} (it stops before serving them). */
static void
worker_free_handoffs(struct proxy_worker *w)
{
    struct proxy_handoff *h, *next;

    for (h = w->handoff_head; h != NULL; h = next) {
        next = h->next;
        evutil_closesocket(h->fd);
        proxy_gen_unref(h->gen);
        free(h);
    }
    w->handoff_head = w->handoff_tail = NULL;
}

/* ---- the loop and its commands ---- */

/* Queue ${cmd} (may be NULL for drain/stop flags only) for ${w} and wake its loop. */
void
proxy_worker_post(struct proxy_worker *w, struct proxy_cmd *cmd, bool drain, bool stop)
{
    pthread_mutex_lock(&w->cmd_mu);
    if (cmd != NULL) {
        cmd->next = NULL;
        if (w->cmd_tail != NULL) {
            w->cmd_tail->next = cmd;
        } else {
            w->cmd_head = cmd;
        }
        w->cmd_tail = cmd;
    }
    w->want_drain = w->want_drain || drain;
    w->want_stop = w->want_stop || stop;
    pthread_mutex_unlock(&w->cmd_mu);
    worker_wake(w, WAKE_CMD);
}

static struct proxy_listener *
worker_find_by_addr(struct proxy_worker *w, const struct config_addr *a)
{
    for (size_t i = 0; i < w->n_listeners; i++) {
        struct proxy_listener *l = w->listeners[i];

        if (l != NULL && l->lev != NULL && l->cfg->listen.port == a->port &&
            strcmp(l->cfg->listen.host, a->host) == 0) {
            return l;
        }
    }
    return NULL;
}

/*
 * On worker ${w}: swap in the listener set of ${cmd}.  A listener the control thread bound
 * starts accepting on its new socket; the others take over the socket of the old listener at
 * the same address.  The old set retires (each goes when its last connection ends).
 */
static void
worker_commit(struct proxy_worker *w, struct proxy_cmd *cmd)
{
    for (size_t i = 0; i < cmd->n_listeners; i++) {
        struct proxy_listener *l = cmd->listeners[i], *old;

        if (l->fd >= 0) {
            (void)proxy_listener_listen(l);
        } else if ((old = worker_find_by_addr(w, &l->cfg->listen)) != NULL) {
            proxy_listener_adopt(l, old);
        } else {
            log_kv(LOG_ERROR, "listen_failed", "listener", l->cfg->name, "addr", l->listen_text,
                   "msg", "no socket to take over for this address", (const char *)NULL);
            l->listen_failed = true;
            PROXY_STAT_ADD(proxy_stats_of(l->stats)->workers_down, 1);
        }
    }
    for (size_t i = 0; i < w->n_listeners; i++) {
        if (w->listeners[i] != NULL) {
            proxy_listener_retire(w->listeners[i]);
        }
    }
    free(w->listeners);
    w->listeners = cmd->listeners;
    w->n_listeners = cmd->n_listeners;
    cmd->listeners = NULL;
    proxy_worker_listeners_update(w);
}

/* On worker ${w}: stop accepting; close idle keep-alive connections; end with the last one. */
static void
worker_drain(struct proxy_worker *w)
{
    w->draining = true;
    for (size_t i = 0; i < w->n_listeners; i++) {
        if (w->listeners[i] != NULL && w->listeners[i]->lev != NULL) {
            evconnlistener_free(w->listeners[i]->lev);
            w->listeners[i]->lev = NULL;
        }
    }
    /* Idle keep-alive HTTP connections have nothing to finish: close them now. */
    proxy_conn_drain_idle(w);
    if (w->n_conns == 0) {
        event_base_loopexit(w->base, NULL);
    }
}

/* On worker ${w}: run what the control thread queued, in order. */
static void
worker_cmds(struct proxy_worker *w)
{
    struct proxy_cmd *q, *next;
    bool drain, stop;

    pthread_mutex_lock(&w->cmd_mu);
    q = w->cmd_head;
    w->cmd_head = w->cmd_tail = NULL;
    drain = w->want_drain;
    stop = w->want_stop;
    pthread_mutex_unlock(&w->cmd_mu);
    for (; q != NULL; q = next) {
        next = q->next;
        worker_commit(w, q);
        free(q);
    }
    if (drain && !w->draining) {
        worker_drain(w);
    }
    if (stop) {
        w->draining = true;
        proxy_conn_drop_all(w, PROXY_CLOSE_SHUTDOWN);
        event_base_loopexit(w->base, NULL);
    }
}

/* On worker ${arg}: the loop turns; GET /livez reads the time (proxy_admin.c).  Also says how
 * many lines about unauthenticated connections were held back in the last second. */
static void
worker_beat_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_worker *w = arg;

    (void)fd;
    (void)what;
    __atomic_store_n(&w->beat_ms, proxy_stats_clock_ms(), __ATOMIC_RELAXED);
    proxy_conn_log_flush(w);
}

/* The thread of worker ${arg}: its loop until drained or stopped, then tell the control. */
void *
proxy_worker_main(void *arg)
{
    struct proxy_worker *w = arg;
    struct timeval beat = {PROXY_BEAT_MS / 1000, (suseconds_t)(PROXY_BEAT_MS % 1000) * 1000};
    char name[16];

    /* `top -H` and /proc/PID/task/TID/comm show which worker is which. */
    snprintf(name, sizeof(name), "ferry-w%u", w->id);
    (void)pthread_setname_np(pthread_self(), name);
    worker_beat_cb(-1, 0, w);
    event_add(w->beat, &beat);
    if (event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY) < 0) {
        log_kv(LOG_ERROR, "loop_failed", "msg", "a worker's event loop failed", (const char *)NULL);
    }
    __atomic_store_n(&w->done, true, __ATOMIC_RELEASE);
    event_active(w->p->worker_done, EV_READ, 0);
    return NULL;
}

/*
 * On worker ${arg}, woken by another thread (worker_wake()): drain the eventfd, then do what
 * it was woken for: commands first (a stop ends the loop), then connections handed over,
 * then a max_connections change (pause or resume accepting).
 */
static void
worker_wake_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_worker *w = arg;
    uint64_t n;
    unsigned why;

    (void)what;
    while (read(fd, &n, sizeof(n)) < 0 && errno == EINTR) {
    }
    why = __atomic_exchange_n(&w->wake_bits, 0u, __ATOMIC_ACQUIRE);
    if ((why & WAKE_CMD) != 0) {
        worker_cmds(w);
    }
    if ((why & WAKE_HANDOFF) != 0) {
        worker_handoff(w);
    }
    if ((why & WAKE_UPDATE) != 0) {
        proxy_worker_listeners_update(w);
    }
}

static void
worker_free_cmds(struct proxy_cmd *q)
{
    struct proxy_cmd *next;

    for (; q != NULL; q = next) {
        next = q->next;
        for (size_t i = 0; q->listeners != NULL && i < q->n_listeners; i++) {
            proxy_listener_free(q->listeners[i]);
        }
        free(q->listeners);
        free(q);
    }
}

/* Free worker ${w} (its thread has ended or never started): connections, listeners, loop. */
void
proxy_worker_free(struct proxy_worker *w)
{
    if (w == NULL) {
        return;
    }
    proxy_conn_drop_all(w, PROXY_CLOSE_SHUTDOWN);
    proxy_linger_free_all(w);
    for (size_t i = 0; i < w->n_listeners; i++) {
        proxy_listener_free(w->listeners[i]);
    }
    free(w->listeners);
    worker_free_cmds(w->cmd_head);
    worker_free_handoffs(w);
    if (w->dns != NULL) {
        evdns_base_free(w->dns, 0);
    }
    if (w->accept_resume != NULL) {
        event_free(w->accept_resume);
    }
    if (w->beat != NULL) {
        event_free(w->beat);
    }
    if (w->wake_ev != NULL) {
        event_free(w->wake_ev);
    }
    if (w->wake_fd >= 0) {
        close(w->wake_fd);
    }
    /* Sides that ended (connections, the pools above) and the spare exchanges' timers are freed
     * while the base exists. */
    proxy_worker_reap(w);
    proxy_exchange_spares_free(w);
    if (w->reap != NULL) {
        event_free(w->reap);
    }
    if (w->base != NULL) {
        event_base_free(w->base);
    }
    /* Every connection has ended (above): its spare structs go now. */
    proxy_spare_clear(&w->spare_conns);
    proxy_spare_clear(&w->spare_sides);
    pthread_mutex_destroy(&w->cmd_mu);
    pthread_mutex_destroy(&w->handoff_mu);
    w->magic = 0;
    free(w);
}

/*
 * A worker's event loop. With epoll, the "changelist" coalesces the enable/disable calls a
 * loop turn makes on one descriptor into at most one epoll_ctl before the next epoll_wait
 * (a pooled http request toggled read/write interest about 12 times per client connection).
 * libevent's caveat for it is descriptors cloned with dup(): ferry never registers one.
 * No lock: only the worker's own thread touches its base (other threads use worker_wake());
 * with evthread_use_pthreads() on, a base otherwise takes its mutex for every event_add and
 * event_del (47 lock/unlock pairs per pooled request, bench/pooled-and-repl-profile.md).
 */
static struct event_base *
worker_base_new(void)
{
    struct event_config *cfg = event_config_new();
    struct event_base *base;

    if (cfg == NULL) {
        return NULL;
    }
    event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
    base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return base;
}

struct proxy_worker *
proxy_worker_new(struct proxy *p, unsigned id)
{
    struct proxy_worker *w = calloc(1, sizeof(*w));

    if (w == NULL) {
        return NULL;
    }
    w->magic = PROXY_WORKER_MAGIC;
    w->id = id;
    w->p = p;
    pthread_mutex_init(&w->cmd_mu, NULL);
    pthread_mutex_init(&w->handoff_mu, NULL);
    w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    w->base = worker_base_new();
    if (w->base != NULL && w->wake_fd >= 0) {
        w->wake_ev = event_new(w->base, w->wake_fd, EV_READ | EV_PERSIST, worker_wake_cb, w);
        w->accept_resume = accept_resume_new(w);
        w->beat = event_new(w->base, -1, EV_PERSIST, worker_beat_cb, w);
    }
    if (w->wake_ev == NULL || event_add(w->wake_ev, NULL) < 0 || w->accept_resume == NULL ||
        w->beat == NULL) {
        proxy_worker_free(w);
        return NULL;
    }
    return w;
}

/*
 * proxy_worker_conn_gone(w):
 * A connection of worker ${w} ended: while draining, the last one ends its loop.
 */
void
proxy_worker_conn_gone(struct proxy_worker *w)
{
    if (w->draining && w->n_conns == 0) {
        event_base_loopexit(w->base, NULL);
    }
}

/*
 * proxy_worker_dns(w):
 * The asynchronous resolver of worker ${w} for outbound peers given by DNS name, made on
 * first use (reads /etc/resolv.conf and /etc/hosts).  NULL when it cannot be made.
 */
struct evdns_base *
proxy_worker_dns(struct proxy_worker *w)
{
    if (w->dns == NULL) {
        w->dns = evdns_base_new(w->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                             EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        if (w->dns == NULL) {
            log_kv(LOG_ERROR, "dns_failed", "msg",
                   "cannot set up the DNS resolver; set connect: on outbound listeners",
                   (const char *)NULL);
        }
    }
    return w->dns;
}
