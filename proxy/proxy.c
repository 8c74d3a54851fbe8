/*
 * proxy: the event base, the configuration generations and their listeners, signals,
 * reload (SIGHUP and changed files), drain (SIGTERM/SIGINT) and systemd notification.
 *
 * Reload builds a complete new set of listeners (TLS contexts, targets, secrets) from a new
 * struct config before touching anything; a listener whose address stays takes over the old
 * listening socket, so no connection is refused during a reload.  Only when all of it worked
 * is the new set swapped in; otherwise the old one keeps serving.  Old listeners (and through
 * them their config) live on until their last connection ends.
 */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "log.h"
#include "proxy.h"
#include "proxy_internal.h"

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
 * Drop one reference to ${g}; the last one frees its config.
 */
void
proxy_gen_unref(struct proxy_gen *g)
{
    if (g != NULL && --g->refs == 0) {
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

/* ---- reload ---- */

static struct proxy_listener *
find_by_addr(struct proxy *p, const struct config_addr *a)
{
    for (size_t i = 0; i < p->n_listeners; i++) {
        struct proxy_listener *l = p->listeners[i];

        if (l != NULL && l->lev != NULL && l->cfg->listen.port == a->port &&
            strcmp(l->cfg->listen.host, a->host) == 0) {
            return l;
        }
    }
    return NULL;
}

static void
reload_failed(struct proxy *p, const char *why, const char *msg)
{
    p->reloads_failed++;
    log_kv(LOG_ERROR, "reload_failed", "trigger", why, "config", p->config_path, "msg", msg,
           (const char *)NULL);
    log_kv(LOG_WARN, "reload_kept", "msg", "the previous configuration keeps serving",
           (const char *)NULL);
}

/*
 * Load the config again and swap in a complete new set of listeners, or keep the old one.
 */
static void
proxy_reload(struct proxy *p, const char *why)
{
    struct config_errors errs = {0};
    struct config *cfg;
    struct proxy_gen *g = NULL;
    struct proxy_listener **nl = NULL, **adopt = NULL;
    char err[1024], line[1024];
    size_t n;

    proxy_notify("RELOADING=1");
    if (p->draining) {
        goto out;
    }
    if (p->config_path == NULL) {
        reload_failed(p, why, "the embedded development default has no file to reload");
        goto out;
    }
    cfg = config_load(p->config_path, &errs);
    if (cfg == NULL) {
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
    g = gen_new(cfg);
    n = cfg->n_listeners;
    nl = calloc(n > 0 ? n : 1, sizeof(*nl));
    adopt = calloc(n > 0 ? n : 1, sizeof(*adopt));
    if (g == NULL || nl == NULL || adopt == NULL) {
        if (g == NULL) {
            config_free(cfg);
        }
        reload_failed(p, why, "out of memory");
        goto fail;
    }
    /* Build everything first; nothing of the running set changes until all of it worked. */
    for (size_t i = 0; i < n; i++) {
        if (proxy_listener_build(p, g, &cfg->listeners[i], &nl[i], err, sizeof(err)) < 0) {
            reload_failed(p, why, err);
            goto fail;
        }
        adopt[i] = find_by_addr(p, &cfg->listeners[i].listen);
        if (adopt[i] == NULL && proxy_listener_bind(nl[i], err, sizeof(err)) < 0) {
            reload_failed(p, why, err);
            goto fail;
        }
    }
    /* Commit: same addresses keep their sockets; the rest of the old set retires. */
    for (size_t i = 0; i < n; i++) {
        if (adopt[i] != NULL) {
            proxy_listener_adopt(nl[i], adopt[i]);
        }
    }
    for (size_t i = 0; i < p->n_listeners; i++) {
        if (p->listeners[i] != NULL) {
            proxy_listener_retire(p->listeners[i]);
        }
    }
    free(p->listeners);
    p->listeners = nl;
    p->n_listeners = n;
    nl = NULL;
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
    proxy_admin_refresh(p);
    p->reloads_ok++;
    {
        char count[16];

        snprintf(count, sizeof(count), "%zu", n);
        log_kv(LOG_INFO, "reloaded", "trigger", why, "config", p->config_path, "listeners", count,
               (const char *)NULL);
    }
    proxy_listeners_update(p);
    goto out;

fail:
    for (size_t i = 0; nl != NULL && i < n; i++) {
        proxy_listener_free(nl[i]); /* closes a socket it bound, drops its generation ref */
    }
    proxy_gen_unref(g);
out:
    free(nl);
    free(adopt);
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

static void
drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy *p = arg;
    char n[16];

    (void)fd;
    (void)what;
    snprintf(n, sizeof(n), "%u", p->n_conns);
    log_kv(LOG_WARN, "drain_timeout", "connections", n, "msg",
           "limits.drain_timeout passed; closing the connections still open", (const char *)NULL);
    proxy_conn_drop_all(p, PROXY_CLOSE_SHUTDOWN);
    event_base_loopexit(p->base, NULL);
}

/*
 * proxy_conn_gone(p):
 * A connection ended: while draining, the last one ends the loop.
 */
void
proxy_conn_gone(struct proxy *p)
{
    if (p->draining && p->n_conns == 0) {
        event_base_loopexit(p->base, NULL);
    }
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
        proxy_conn_drop_all(p, PROXY_CLOSE_SHUTDOWN);
        event_base_loopexit(p->base, NULL);
        return;
    }
    p->draining = true;
    proxy_notify("STOPPING=1");
    for (size_t i = 0; i < p->n_listeners; i++) {
        if (p->listeners[i] != NULL && p->listeners[i]->lev != NULL) {
            evconnlistener_free(p->listeners[i]->lev);
            p->listeners[i]->lev = NULL;
        }
    }
    event_del(p->watch);
    snprintf(n, sizeof(n), "%u", p->n_conns);
    snprintf(ms, sizeof(ms), "%llu", (unsigned long long)p->cfg->limits.drain_timeout_ms);
    log_kv(LOG_INFO, "draining", "signal", name, "connections", n, "drain_timeout_ms", ms,
           (const char *)NULL);
    /* Idle keep-alive HTTP connections have nothing to finish: close them now. */
    proxy_conn_drain_idle(p);
    if (p->n_conns == 0) {
        event_base_loopexit(p->base, NULL);
        return;
    }
    tv.tv_sec = (time_t)(p->cfg->limits.drain_timeout_ms / 1000);
    tv.tv_usec = (suseconds_t)((p->cfg->limits.drain_timeout_ms % 1000) * 1000);
    evtimer_add(p->drain_timer, &tv);
}

/*
 * proxy_dns(p):
 * The asynchronous resolver of ${p} for outbound peers given by DNS name, made on first use
 * (reads /etc/resolv.conf and /etc/hosts).  NULL when it cannot be made.
 */
struct evdns_base *
proxy_dns(struct proxy *p)
{
    if (p->dns == NULL) {
        p->dns = evdns_base_new(p->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                             EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        if (p->dns == NULL) {
            log_kv(LOG_ERROR, "dns_failed", "msg",
                   "cannot set up the DNS resolver; set connect: on outbound listeners",
                   (const char *)NULL);
        }
    }
    return p->dns;
}

/*
 * proxy_new(cfg, path, err, errlen):
 * Build the event base, every listener (TLS context, target, bound socket), the admin
 * listener and the signal handlers.  Takes ownership of ${cfg} (freed on failure too).
 * Returns the proxy, or NULL with ${err} naming the listener/file/address.
 */
struct proxy *
proxy_new(struct config *cfg, const char *path, char *err, size_t errlen)
{
    struct proxy *p;

    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        config_free(cfg);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->magic = PROXY_MAGIC;
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
    p->listeners = calloc(cfg->n_listeners > 0 ? cfg->n_listeners : 1, sizeof(*p->listeners));
    p->accept_resume = proxy_accept_resume_new(p);
    p->watch = event_new(p->base, -1, EV_PERSIST, watch_cb, p);
    p->drain_timer = evtimer_new(p->base, drain_timeout_cb, p);
    p->sig_term = evsignal_new(p->base, SIGTERM, stop_cb, p);
    p->sig_int = evsignal_new(p->base, SIGINT, stop_cb, p);
    p->sig_hup = evsignal_new(p->base, SIGHUP, hup_cb, p);
    if (p->listeners == NULL || p->accept_resume == NULL || p->watch == NULL ||
        p->drain_timer == NULL || p->sig_term == NULL || p->sig_int == NULL || p->sig_hup == NULL ||
        (path != NULL && p->config_path == NULL)) {
        snprintf(err, errlen, "out of memory");
        goto err1;
    }
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        if (proxy_listener_build(p, p->gen, &cfg->listeners[i], &p->listeners[i], err, errlen) <
            0) {
            goto err1;
        }
        p->n_listeners = i + 1;
        if (proxy_listener_bind(p->listeners[i], err, errlen) < 0) {
            goto err1;
        }
    }
    if (proxy_admin_open(p, err, errlen) < 0) {
        goto err1;
    }
    watch_snapshot(p);
    event_add(p->sig_term, NULL);
    event_add(p->sig_int, NULL);
    event_add(p->sig_hup, NULL);
    return p;

err1:
    proxy_free(p);
    return NULL;
}

/*
 * proxy_start(p, err, errlen):
 * Drop privileges to `user:` once sockets are bound and keys read.
 */
int
proxy_start(struct proxy *p, char *err, size_t errlen)
{
    proxy_check_magic(p);
    if (p->cfg->user == NULL) {
        return 0;
    }
    if (proxy_drop_privileges(p->cfg->user, err, errlen) < 0) {
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

/*
 * proxy_run(p):
 * Serve until SIGTERM/SIGINT and the drain that follows.  Returns 0, or -1 when the loop
 * fails.
 */
int
proxy_run(struct proxy *p)
{
    struct timeval tv = {PROXY_WATCH_MS / 1000, (PROXY_WATCH_MS % 1000) * 1000};

    proxy_check_magic(p);
    for (size_t i = 0; i < p->n_listeners; i++) {
        const struct proxy_listener *l = p->listeners[i];

        log_kv(LOG_INFO, "listening", "listener", l->cfg->name, "mode",
               config_mode_str(l->cfg->mode), "protocol", config_protocol_str(l->cfg->protocol),
               "addr", l->listen_text, "target", l->target_text, (const char *)NULL);
    }
    if (p->admin != NULL) {
        char addr[300];

        config_addr_format(&p->cfg->admin.listen, addr, sizeof(addr));
        log_kv(LOG_INFO, "listening", "listener", "admin", "addr", addr, (const char *)NULL);
    }
    event_add(p->watch, &tv);
    log_kv(LOG_INFO, "ready", "config", p->cfg->path, (const char *)NULL);
    proxy_notify("READY=1");
    if (event_base_dispatch(p->base) < 0) {
        log_kv(LOG_ERROR, "loop_failed", (const char *)NULL);
        return -1;
    }
    log_kv(LOG_INFO, "stopped", (const char *)NULL);
    return 0;
}

/*
 * proxy_free(p):
 * Release ${p}: connections, listeners (and through them old generations), admin, events,
 * base, the current configuration.
 */
void
proxy_free(struct proxy *p)
{
    if (p == NULL) {
        return;
    }
    proxy_check_magic(p);
    /* Connections point at their listener: drop them first (retired listeners go with them). */
    proxy_conn_drop_all(p, PROXY_CLOSE_SHUTDOWN);
    for (size_t i = 0; i < p->n_listeners; i++) {
        proxy_listener_free(p->listeners[i]);
        p->listeners[i] = NULL;
    }
    free(p->listeners);
    p->listeners = NULL;
    proxy_admin_free(p);
    watch_clear(p);
    for (size_t i = 0; i < p->n_metrics; i++) {
        free(p->metrics[i]);
    }
    free(p->metrics);
    if (p->dns != NULL) {
        evdns_base_free(p->dns, 0);
        p->dns = NULL;
    }
    if (p->accept_resume != NULL) {
        event_free(p->accept_resume);
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
