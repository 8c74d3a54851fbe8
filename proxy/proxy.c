/*
 * proxy: the control thread and the workers.  The control thread owns the configuration
 * generations, signals, reload (SIGHUP and changed files), drain (SIGTERM/SIGINT), the admin
 * endpoint and systemd notification; each worker thread runs one event loop with its own
 * copy of every listener (see proxy_internal.h).
 *
 * Reload builds a complete new set of listeners (TLS contexts, targets, secrets) from a new
 * struct config before touching anything; a listener whose address stays takes over the old
 * listening socket, so no connection is refused during a reload.  Only when all of it worked
 * is the new set swapped in; otherwise the old one keeps serving.  Old listeners (and through
 * them their config) live on until their last connection ends.  The control thread does the
 * blocking part of a reload (reading files, resolving backend names, binding); each worker
 * then swaps in its new listeners on its own thread, in the order the reloads happened.
 */

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "log.h"
#include "proxy.h"
#include "proxy_admin.h"
#include "proxy_internal.h"
#include "proxy_stats.h"

/* How often the files named by the config are checked for changes (rotation by rename too). */
#define PROXY_WATCH_MS 2000

/* The identity of a watched file: a rename, a rewrite or a touch changes one of these. */
struct proxy_watch {
    char *path;
    bool exists;
    dev_t dev;
    ino_t ino;
    off_t size;
    time_t mtime;
    long mtime_ns;
};

static void
proxy_check_magic(const struct proxy *p)
{
    if (p == NULL || p->magic != PROXY_MAGIC) {
        abort();
    }
}

/* ---- systemd ---- */

/*
 * proxy_notify(state):
 * Tell systemd ${state} ("READY=1", "RELOADING=1", "STOPPING=1") over $NOTIFY_SOCKET, the
 * sd_notify protocol without libsystemd.  Does nothing when the variable is not set.
 */
void
proxy_notify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sun;
    size_t len;
    int fd;

    if (path == NULL || path[0] == '\0' || (path[0] != '/' && path[0] != '@')) {
        return;
    }
    len = strlen(path);
    if (len >= sizeof(sun.sun_path)) {
        return;
    }
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, len);
    if (path[0] == '@') {
        sun.sun_path[0] = '\0'; /* an abstract socket */
    }
    fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (fd < 0) {
        return;
    }
    (void)sendto(fd, state, strlen(state), MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&sun,
                 (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
    close(fd);
}

/* ---- generations ---- */

static struct proxy_gen *
gen_new(struct config *cfg)
{
    struct proxy_gen *g = calloc(1, sizeof(*g));

    if (g != NULL) {
        g->cfg = cfg;
        g->refs = 1;
    }
    return g;
}

/*
 * proxy_gen_unref(g):
 * Drop one reference to ${g} (from any thread); the last one frees its config.
 */
void
proxy_gen_unref(struct proxy_gen *g)
{
    if (g != NULL && __atomic_sub_fetch(&g->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        config_free(g->cfg);
        free(g);
    }
}

/* ---- watching the files of the config ---- */

static void
watch_stat(struct proxy_watch *w)
{
    struct stat st;

    w->exists = stat(w->path, &st) == 0;
    if (w->exists) {
        w->dev = st.st_dev;
        w->ino = st.st_ino;
        w->size = st.st_size;
        w->mtime = st.st_mtim.tv_sec;
        w->mtime_ns = st.st_mtim.tv_nsec;
    }
}

static void
watch_clear(struct proxy *p)
{
    for (size_t i = 0; i < p->n_watched; i++) {
        free(p->watched[i].path);
    }
    free(p->watched);
    p->watched = NULL;
    p->n_watched = 0;
}

static void
watch_add(struct proxy *p, const char *path)
{
    struct proxy_watch *v;

    if (path == NULL) {
        return;
    }
    for (size_t i = 0; i < p->n_watched; i++) {
        if (strcmp(p->watched[i].path, path) == 0) {
            return;
        }
    }
    v = realloc(p->watched, (p->n_watched + 1) * sizeof(*v));
    if (v == NULL) {
        return;
    }
    p->watched = v;
    memset(&v[p->n_watched], 0, sizeof(v[0]));
    v[p->n_watched].path = strdup(path);
    if (v[p->n_watched].path == NULL) {
        return;
    }
    watch_stat(&v[p->n_watched]);
    p->n_watched++;
}

/* Remember how every certificate, key, CA, CRL and secret file of the config looks now. */
static void
watch_snapshot(struct proxy *p)
{
    watch_clear(p);
    for (size_t i = 0; i < p->cfg->n_listeners; i++) {
        const struct config_listener *cl = &p->cfg->listeners[i];

        watch_add(p, cl->tls.cert.path);
        watch_add(p, cl->tls.key.path);
        watch_add(p, cl->tls.key_passphrase_file.path);
        watch_add(p, cl->tls.ca.path);
        watch_add(p, cl->tls.crl.path);
        watch_add(p, cl->proxy_auth.secret_file.path);
        watch_add(p, cl->via.auth_file.path);
    }
}

static void proxy_reload(struct proxy *p, const char *why);

static void
watch_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy *p = arg;

    (void)fd;
    (void)what;
    for (size_t i = 0; i < p->n_watched; i++) {
        struct proxy_watch now = p->watched[i];
        struct stat st;

        if (stat(now.path, &st) != 0 && errno == EACCES) {
            /* After `user:` a directory may hide the file: that is not a change. */
            continue;
        }
        watch_stat(&now);
        if (now.exists != p->watched[i].exists || now.dev != p->watched[i].dev ||
            now.ino != p->watched[i].ino || now.size != p->watched[i].size ||
            now.mtime != p->watched[i].mtime || now.mtime_ns != p->watched[i].mtime_ns) {
            log_kv(LOG_INFO, "file_changed", "file", p->watched[i].path, (const char *)NULL);
            /* A failed reload also takes the new snapshot: retry on the next change only. */
            proxy_reload(p, "file change");
            return;
        }
    }
}

/* ---- workers ---- */

/* How many workers ${cfg} asks for: workers: N, or one per online core for auto. */
static size_t
workers_wanted(const struct config *cfg)
{
    long n;

    if (cfg->workers > 0) {
        return cfg->workers;
    }
    n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (size_t)n;
}

/*
 * proxy_conns_open(p):
 * Connections open now in every worker (read from the control thread).
 */
unsigned
proxy_conns_open(const struct proxy *p)
{
    unsigned n = 0;

    for (size_t i = 0; i < p->n_workers; i++) {
        n += PROXY_STAT_GET(p->workers[i]->n_conns);
    }
    return n;
}

/* Control: a worker's loop ended; when all have, the control loop ends too. */
static void
worker_done_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy *p = arg;
    size_t running = 0;

    (void)fd;
    (void)what;
    for (size_t i = 0; i < p->n_workers; i++) {
        if (!__atomic_load_n(&p->workers[i]->done, __ATOMIC_ACQUIRE)) {
            running++;
        }
    }
    p->n_running = running;
    if (running == 0) {
        event_base_loopexit(p->base, NULL);
    }
}

/*
 * Build every worker's copy of every listener of ${cfg} (generation ${g}) into ${sets}
 * (one array per worker) and bind a socket for each address not in ${keep} (the running
 * configuration, whose sockets the new listeners take over; NULL at start).  Control thread.
 * Returns 0, or -1 with ${err} and nothing left open.
 */
static int
build_sets(struct proxy *p, struct proxy_gen *g, const struct config *keep,
           struct proxy_listener ***sets, char *err, size_t errlen)
{
    const struct config *cfg = g->cfg;
    size_t n = cfg->n_listeners, nw = p->n_workers;
    struct proxy_listener **copies;

    assert(nw > 0); /* proxy_new() starts at least one worker */
    copies = calloc(nw, sizeof(struct proxy_listener *));
    if (copies == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t w = 0; w < nw; w++) {
        sets[w] = calloc(n > 0 ? n : 1, sizeof(struct proxy_listener *));
        if (sets[w] == NULL) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    }
    for (size_t i = 0; i < n; i++) {
        const struct config_listener *cl = &cfg->listeners[i];
        bool adopt = false;

        for (size_t w = 0; w < nw; w++) {
            if (proxy_listener_build(p->workers[w], g, cl, &sets[w][i], err, errlen) < 0) {
                goto fail;
            }
            copies[w] = sets[w][i];
        }
        for (size_t k = 0; keep != NULL && k < keep->n_listeners; k++) {
            adopt = adopt || (keep->listeners[k].listen.port == cl->listen.port &&
                              strcmp(keep->listeners[k].listen.host, cl->listen.host) == 0);
        }
        if (!adopt && proxy_listener_bind(copies, nw, err, errlen) < 0) {
            goto fail;
        }
    }
    free(copies);
    return 0;

fail:
    for (size_t w = 0; w < nw; w++) {
        for (size_t i = 0; sets[w] != NULL && i < n; i++) {
            proxy_listener_free(sets[w][i]); /* closes a socket it bound, drops its gen ref */
        }
        free(sets[w]);
        sets[w] = NULL;
    }
    free(copies);
    return -1;
}

/* ---- reload ---- */

static void
reload_failed(struct proxy *p, const char *why, const char *msg)
{
    p->reloads_failed++;
    p->last_reload_ok = false;
    log_kv(LOG_ERROR, "reload_failed", "trigger", why, "config", p->config_path, "msg", msg,
           (const char *)NULL);
    log_kv(LOG_WARN, "reload_kept", "msg", "the previous configuration keeps serving",
           (const char *)NULL);
}

/*
 * Load the config again and hand every worker a complete new set of listeners, or keep the
 * old one.
 */
static void
proxy_reload(struct proxy *p, const char *why)
{
    struct config_errors errs = {0};
    struct config *cfg;
    struct proxy_gen *g = NULL;
    struct proxy_listener ***sets = NULL;
    struct proxy_cmd **cmds = NULL;
    char err[1024], line[1024];
    size_t n;
    bool cmds_ok;

    proxy_notify("RELOADING=1");
    if (p->draining) {
        goto out;
    }
    if (p->config_path == NULL) {
        reload_failed(p, why, "the embedded development default has no file to reload");
        goto out;
    }
    if (p->load != NULL) {
        /* The same findings as `ferry check` (main.c): each config error is logged there. */
        if ((cfg = p->load(p->config_path, p->vet_arg, err, sizeof(err))) == NULL) {
            reload_failed(p, why, err);
            goto out;
        }
    } else if ((cfg = config_load(p->config_path, &errs)) == NULL) {
        for (size_t i = 0; i < errs.n; i++) {
            log_kv(LOG_ERROR, "config_error", "msg",
                   config_error_format(&errs.v[i], line, sizeof(line)), (const char *)NULL);
        }
        snprintf(err, sizeof(err), "%zu error%s in %s (first: %s)", errs.n, errs.n == 1 ? "" : "s",
                 p->config_path,
                 errs.n > 0 ? config_error_format(&errs.v[0], line, sizeof(line)) : "?");
        config_errors_clear(&errs);
        reload_failed(p, why, err);
        goto out;
    }
    /* The same findings as at start: an error keeps the running config (main.c logs them). */
    if (p->vet != NULL && p->vet(cfg, p->vet_arg, err, sizeof(err)) != 0) {
        config_free(cfg);
        reload_failed(p, why, err);
        goto out;
    }
    g = gen_new(cfg);
    sets = calloc(p->n_workers, sizeof(struct proxy_listener **));
    cmds = calloc(p->n_workers, sizeof(struct proxy_cmd *));
    cmds_ok = cmds != NULL;
    for (size_t w = 0; cmds_ok && w < p->n_workers; w++) {
        cmds[w] = calloc(1, sizeof(*cmds[w]));
        cmds_ok = cmds[w] != NULL;
    }
    if (g == NULL || sets == NULL || !cmds_ok) {
        if (g == NULL) {
            config_free(cfg);
        }
        reload_failed(p, why, "out of memory");
        goto fail;
    }
    /* Build (and bind) everything first; nothing that runs changes until all of it worked. */
    if (build_sets(p, g, p->cfg, sets, err, sizeof(err)) < 0) {
        reload_failed(p, why, err);
        goto fail;
    }
    n = cfg->n_listeners;
    if (workers_wanted(cfg) != p->n_workers) {
        log_kv(LOG_WARN, "reload_workers", "msg",
               "a change of workers takes effect when ferry restarts", (const char *)NULL);
    }
    /* Commit: each worker swaps in its set on its own thread. */
    __atomic_store_n(&p->max_conns, cfg->limits.max_connections, __ATOMIC_RELAXED);
    for (size_t w = 0; w < p->n_workers; w++) {
        /* cmds_ok: every cmds[w] is allocated (clang-analyzer cannot follow that loop). */
        // NOLINTNEXTLINE(clang-analyzer-core.NullDereference)
        cmds[w]->kind = PROXY_CMD_LISTENERS;
        cmds[w]->listeners = sets[w];
        cmds[w]->n_listeners = n;
        proxy_worker_post(p->workers[w], cmds[w], false, false);
        cmds[w] = NULL;
    }
    proxy_gen_unref(p->gen);
    p->gen = g;
    p->cfg = cfg;
    g = NULL;
    log_setup((enum log_level)p->cfg->log_level, (enum log_format)p->cfg->log_format, NULL);
    if (!proxy_admin_same(p)) {
        proxy_admin_free(p);
        if (proxy_admin_open(p, err, sizeof(err)) < 0) {
            log_kv(LOG_ERROR, "admin_failed", "msg", err, (const char *)NULL);
        }
    }
    p->reloads_ok++;
    p->last_reload_ok = true;
    p->last_reload_ok_at = (long long)time(NULL);
    proxy_admin_refresh(p);
    {
        char count[16];

        snprintf(count, sizeof(count), "%zu", n);
        log_kv(LOG_INFO, "reloaded", "trigger", why, "config", p->config_path, "listeners", count,
               (const char *)NULL);
    }
    goto out;

fail:
    proxy_gen_unref(g);
out:
    for (size_t w = 0; cmds != NULL && w < p->n_workers; w++) {
        free(cmds[w]);
    }
    free(cmds);
    free(sets);
    watch_snapshot(p);
    proxy_notify("READY=1");
}

static void
hup_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    proxy_reload(arg, "SIGHUP");
}

/* ---- drain ---- */

/* Every worker closes its connections now and ends. */
static void
stop_workers(struct proxy *p)
{
    for (size_t i = 0; i < p->n_workers; i++) {
        proxy_worker_post(p->workers[i], NULL, false, true);
    }
}

static void
drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy *p = arg;
    char n[16];

    (void)fd;
    (void)what;
    snprintf(n, sizeof(n), "%u", proxy_conns_open(p));
    log_kv(LOG_WARN, "drain_timeout", "connections", n, "msg",
           "limits.drain_timeout passed; closing the connections still open", (const char *)NULL);
    stop_workers(p);
}

/*
 * SIGTERM / SIGINT: stop accepting (new connections are refused), let open ones finish for up
 * to limits.drain_timeout, then close them.  A second signal closes everything at once.
 */
static void
stop_cb(evutil_socket_t sig, short what, void *arg)
{
    struct proxy *p = arg;
    const char *name = sig == SIGINT ? "SIGINT" : "SIGTERM";
    struct timeval tv;
    char n[16], ms[24];

    (void)what;
    proxy_check_magic(p);
    if (p->draining) {
        log_kv(LOG_INFO, "stopping", "signal", name, "msg",
               "second signal: closing every connection now", (const char *)NULL);
        stop_workers(p);
        return;
    }
    p->draining = true;
    proxy_notify("STOPPING=1");
    event_del(p->watch);
    snprintf(n, sizeof(n), "%u", proxy_conns_open(p));
    snprintf(ms, sizeof(ms), "%llu", (unsigned long long)p->cfg->limits.drain_timeout_ms);
    log_kv(LOG_INFO, "draining", "signal", name, "connections", n, "drain_timeout_ms", ms,
           (const char *)NULL);
    for (size_t i = 0; i < p->n_workers; i++) {
        proxy_worker_post(p->workers[i], NULL, true, false);
    }
    tv.tv_sec = (time_t)(p->cfg->limits.drain_timeout_ms / 1000);
    tv.tv_usec = (suseconds_t)((p->cfg->limits.drain_timeout_ms % 1000) * 1000);
    evtimer_add(p->drain_timer, &tv);
}

/* libevent must know about threads before the first event base exists. */
static void
threads_init(void)
{
    if (evthread_use_pthreads() < 0) {
        log_kv(LOG_ERROR, "threads_failed", "msg", "libevent cannot use pthreads",
               (const char *)NULL);
    }
}

/*
 * proxy_new(cfg, path, err, errlen):
 * Build the control loop, the workers (one event loop each), every worker's copy of every
 * listener (TLS context, target, bound socket), the admin listener and the signal handlers.
 * Takes ownership of ${cfg} (freed on failure too).  Returns the proxy, or NULL with ${err}
 * naming the listener/file/address.
 */
struct proxy *
proxy_new(struct config *cfg, const char *path, char *err, size_t errlen)
{
    static pthread_once_t threads_once = PTHREAD_ONCE_INIT;
    struct proxy_listener ***sets = NULL;
    struct proxy *p;

    (void)pthread_once(&threads_once, threads_init);
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        config_free(cfg);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->magic = PROXY_MAGIC;
    p->started_at = (long long)time(NULL);
    p->last_reload_ok = true; /* the configuration of the start */
    p->last_reload_ok_at = p->started_at;
    p->gen = gen_new(cfg);
    if (p->gen == NULL) {
        config_free(cfg);
        snprintf(err, errlen, "out of memory");
        goto err1;
    }
    p->cfg = cfg;
    p->config_path = path != NULL ? strdup(path) : NULL;
    p->base = event_base_new();
    if (p->base == NULL) {
        snprintf(err, errlen, "cannot create the event loop");
        goto err1;
    }
    /* One set of ticket keys for the process: tickets survive reloads (tls.h). */
    if ((p->tickets = tls_tickets_new(err, errlen)) == NULL) {
        goto err1;
    }
    p->n_workers = workers_wanted(cfg);
    p->workers = calloc(p->n_workers, sizeof(struct proxy_worker *));
    p->stats = proxy_stats_set_new(p->n_workers);
    sets = calloc(p->n_workers, sizeof(struct proxy_listener **));
    p->worker_done = event_new(p->base, -1, 0, worker_done_cb, p);
    p->watch = event_new(p->base, -1, EV_PERSIST, watch_cb, p);
    p->drain_timer = evtimer_new(p->base, drain_timeout_cb, p);
    p->sig_term = evsignal_new(p->base, SIGTERM, stop_cb, p);
    p->sig_int = evsignal_new(p->base, SIGINT, stop_cb, p);
    p->sig_hup = evsignal_new(p->base, SIGHUP, hup_cb, p);
    if (p->workers == NULL || p->stats == NULL || sets == NULL || p->worker_done == NULL ||
        p->watch == NULL || p->drain_timer == NULL || p->sig_term == NULL || p->sig_int == NULL ||
        p->sig_hup == NULL || (path != NULL && p->config_path == NULL)) {
        snprintf(err, errlen, "out of memory");
        goto err1;
    }
    for (size_t i = 0; i < p->n_workers; i++) {
        p->workers[i] = proxy_worker_new(p, (unsigned)i);
        if (p->workers[i] == NULL) {
            snprintf(err, errlen, "cannot create the event loop of worker %zu", i);
            goto err1;
        }
    }
    if (build_sets(p, p->gen, NULL, sets, err, errlen) < 0) {
        goto err1;
    }
    /* The workers do not run yet: hand each its set directly. */
    p->max_conns = cfg->limits.max_connections;
    for (size_t i = 0; i < p->n_workers; i++) {
        struct proxy_worker *w = p->workers[i];

        w->listeners = sets[i];
        w->n_listeners = cfg->n_listeners;
        for (size_t k = 0; k < w->n_listeners; k++) {
            if (proxy_listener_listen(w->listeners[k]) < 0) {
                /* build_sets() filled sets[i][0..n_listeners); clang-analyzer cannot see it. */
                // NOLINTNEXTLINE(clang-analyzer-core.NullDereference)
                snprintf(err, errlen, "listener %s: cannot watch %s", w->listeners[k]->cfg->name,
                         w->listeners[k]->listen_text);
                goto err1;
            }
        }
    }
    free(sets);
    sets = NULL;
    if (proxy_admin_open(p, err, errlen) < 0) {
        goto err1;
    }
    watch_snapshot(p);
    event_add(p->sig_term, NULL);
    event_add(p->sig_int, NULL);
    event_add(p->sig_hup, NULL);
    return p;

err1:
    free(sets);
    proxy_free(p);
    return NULL;
}

/*
 * proxy_set_vet(p, vet, arg):
 * Remember the judge of reloaded configurations.
 */
void
proxy_set_vet(struct proxy *p, proxy_vet_fn vet, void *arg)
{
    proxy_check_magic(p);
    p->vet = vet;
    p->vet_arg = arg;
}

/*
 * proxy_set_load(p, load):
 * Reloads of ${p} load their config with ${load} (NULL: config_load()).
 */
void
proxy_set_load(struct proxy *p, proxy_load_fn load)
{
    p->load = load;
}

/*
 * proxy_start(p, err, errlen):
 * Drop privileges to `user:` once sockets are bound and keys read (before any worker thread
 * exists, so every thread runs as that user).
 */
int
proxy_start(struct proxy *p, char *err, size_t errlen)
{
    proxy_check_magic(p);
    if (p->cfg->user == NULL) {
        return 0;
    }
    if (proxy_privs_drop(p->cfg->user, err, errlen) < 0) {
        return -1;
    }
    {
        char uid[16];

        snprintf(uid, sizeof(uid), "%u", (unsigned)getuid());
        log_kv(LOG_INFO, "privileges_dropped", "user", p->cfg->user, "uid", uid, "msg",
               "reloads now need key files this user can read", (const char *)NULL);
    }
    return 0;
}

/* Start the worker threads with the control thread's signals blocked in them. */
static int
start_workers(struct proxy *p)
{
    sigset_t block, old;
    int rc = 0;

    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    for (size_t i = 0; i < p->n_workers; i++) {
        struct proxy_worker *w = p->workers[i];

        if (pthread_create(&w->thread, NULL, proxy_worker_main, w) != 0) {
            log_kv(LOG_ERROR, "worker_failed", "msg", "cannot start a worker thread",
                   (const char *)NULL);
            rc = -1;
            break;
        }
        w->started = true;
        p->n_running++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

/* Wait for every started worker thread (after their loops ended, or telling them to stop). */
static void
join_workers(struct proxy *p)
{
    for (size_t i = 0; i < p->n_workers; i++) {
        struct proxy_worker *w = p->workers[i];

        if (w != NULL && w->started) {
            if (!__atomic_load_n(&w->done, __ATOMIC_ACQUIRE)) {
                proxy_worker_post(w, NULL, false, true);
            }
            pthread_join(w->thread, NULL);
            w->started = false;
        }
    }
}

/*
 * proxy_run(p):
 * Start the workers and serve until SIGTERM/SIGINT and the drain that follows.  Returns 0,
 * or -1 when a loop or a thread fails.
 */
int
proxy_run(struct proxy *p)
{
    struct timeval tv = {PROXY_WATCH_MS / 1000, (suseconds_t)(PROXY_WATCH_MS % 1000) * 1000};
    char nw[16];
    int rc = 0;

    proxy_check_magic(p);
    for (size_t i = 0; i < p->workers[0]->n_listeners; i++) {
        const struct proxy_listener *l = p->workers[0]->listeners[i];

        log_kv(LOG_INFO, "listening", "listener", l->cfg->name, "mode",
               config_value_mode_str(l->cfg->mode), "protocol",
               config_value_protocol_str(l->cfg->protocol), "addr", l->listen_text, "target",
               l->target_text, (const char *)NULL);
    }
    if (p->admin != NULL) {
        char addr[CONFIG_ADDR_STR_MAX];

        config_value_addr_format(&p->cfg->admin.listen, addr, sizeof(addr));
        log_kv(LOG_INFO, "listening", "listener", "admin", "addr", addr, (const char *)NULL);
    }
    event_add(p->watch, &tv);
    if (start_workers(p) < 0) {
        join_workers(p);
        return -1;
    }
    snprintf(nw, sizeof(nw), "%zu", p->n_workers);
    log_kv(LOG_INFO, "ready", "config", p->cfg->path, "workers", nw, (const char *)NULL);
    proxy_notify("READY=1");
    if (event_base_dispatch(p->base) < 0) {
        log_kv(LOG_ERROR, "loop_failed", (const char *)NULL);
        rc = -1;
    }
    join_workers(p);
    if (rc == 0) {
        log_kv(LOG_INFO, "stopped", (const char *)NULL);
    }
    return rc;
}

/*
 * proxy_free(p):
 * Release ${p}: the workers (joined first if they run) with their connections and listeners
 * (and through them old generations), admin, events, base, the current configuration.
 */
void
proxy_free(struct proxy *p)
{
    if (p == NULL) {
        return;
    }
    proxy_check_magic(p);
    join_workers(p);
    /* Every connection first: ending one may wake another worker's update event. */
    for (size_t i = 0; p->workers != NULL && i < p->n_workers; i++) {
        if (p->workers[i] != NULL) {
            proxy_conn_drop_all(p->workers[i], PROXY_CLOSE_SHUTDOWN);
        }
    }
    for (size_t i = 0; p->workers != NULL && i < p->n_workers; i++) {
        proxy_worker_free(p->workers[i]);
        p->workers[i] = NULL;
    }
    free(p->workers);
    p->workers = NULL;
    proxy_admin_free(p);
    watch_clear(p);
    proxy_stats_set_free(p->stats);
    p->stats = NULL;
    if (p->worker_done != NULL) {
        event_free(p->worker_done);
    }
    if (p->watch != NULL) {
        event_free(p->watch);
    }
    if (p->drain_timer != NULL) {
        event_free(p->drain_timer);
    }
    if (p->sig_term != NULL) {
        event_free(p->sig_term);
    }
    if (p->sig_int != NULL) {
        event_free(p->sig_int);
    }
    if (p->sig_hup != NULL) {
        event_free(p->sig_hup);
    }
    if (p->base != NULL) {
        event_base_free(p->base);
    }
    proxy_gen_unref(p->gen);
    tls_tickets_free(p->tickets);
    free(p->config_path);
    p->magic = 0;
    free(p);
}
