/*
 * proxy_listener: one configured listener: its TLS context, its bound socket, where it
 * forwards to, and accept() with the max_connections and EMFILE policies.
 */
#define _DEFAULT_SOURCE 1 /* SO_REUSEPORT */

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <openssl/crypto.h>

#include "log.h"
#include "proxy.h"
#include "proxy_internal.h"
#include "proxy_stats.h"

/* The kernel backlog: connections over max_connections wait here (CONTRACT §5). */
#define PROXY_LISTEN_BACKLOG 1024

/*
 * proxy_listener_tls(cl, out, err, errlen):
 * Turn ${cl}'s effective tls settings into a TLS context.  Returns 0 or -1 with ${err}
 * naming the listener.
 */
int
proxy_listener_tls(const struct config_listener *cl, struct tls_ctx **out, char *err, size_t errlen)
{
    return proxy_listener_tls_tickets(cl, NULL, out, err, errlen);
}

/*
 * proxy_listener_tls_tickets(cl, tickets, out, err, errlen):
 * proxy_listener_tls() with the process's session ticket keys ${tickets} (inbound only).
 */
int
proxy_listener_tls_tickets(const struct config_listener *cl, struct tls_tickets *tickets,
                           struct tls_ctx **out, char *err, size_t errlen)
{
    struct tls_ctx_params tp;
    char why[768];

    memset(&tp, 0, sizeof(tp));
    tp.role = cl->mode == CONFIG_MODE_INBOUND ? TLS_ROLE_SERVER : TLS_ROLE_CLIENT;
    tp.cert_file = cl->tls.cert.path;
    tp.key_file = cl->tls.key.path;
    tp.key_passphrase_file = cl->tls.key_passphrase_file.path;
    tp.ca_file = cl->tls.ca.path;
    tp.crl_file = cl->tls.crl.path;
    tp.min_version = cl->tls.min_version;
    tp.verify_depth = cl->tls.verify_depth;
    tp.cn_fallback = cl->tls.cn_fallback;
    tp.session_resumption = cl->tls.session_resumption;
    if (cl->mode == CONFIG_MODE_INBOUND) {
        tp.client_cert_required = cl->client_cert == CONFIG_CLIENT_CERT_REQUIRED;
        tp.allow = (const char *const *)cl->allow;
        tp.n_allow = cl->n_allow;
        tp.tickets = tickets;
    } else {
        tp.peer_host = cl->peer.host;
    }
    *out = tls_ctx_new(&tp, why, sizeof(why));
    if (*out == NULL) {
        snprintf(err, errlen, "listener %s: %s", cl->name, why);
        return -1;
    }
    return 0;
}

/* Resolve a numeric address (or, at start, a backend name) to a sockaddr. */
static int
resolve(const struct config_addr *a, bool numeric, struct sockaddr_storage *ss, socklen_t *len,
        char *why, size_t whylen)
{
    struct addrinfo hints, *res = NULL;
    char port[8];
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (numeric ? AI_NUMERICHOST : 0);
    snprintf(port, sizeof(port), "%u", (unsigned)a->port);
    rc = getaddrinfo(a->host, port, &hints, &res);
    if (rc != 0 || res == NULL) {
        int n = snprintf(why, whylen, "cannot resolve %s: %s", a->host, gai_strerror(rc));

        /* A long host name may not fit: the reason is cut, and says so. */
        if (n >= 0 && (size_t)n >= whylen && whylen > 3) {
            memcpy(why + whylen - 4, "...", 4);
        }
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/*
 * Read the secret file ${path} into ${buf} (${cap} bytes; trailing newlines are not part of
 * it, as in CouchDB's ini file and curl's netrc) and its length into ${n}.  Returns 0, or -1
 * with ${why} ("empty", ...), ${buf} wiped.  The secret never reaches a message.
 */
static int
read_secret_file(const char *path, unsigned char *buf, size_t cap, size_t *n, char *why,
                 size_t whylen)
{
    ssize_t r;
    int fd;

    *n = 0;
    /* Non-blocking and regular only: a FIFO swapped in must not hang the reloading thread. */
    if ((fd = tls_file_open_regular(path, why, whylen)) < 0) {
        return -1;
    }
    while (*n < cap && ((r = read(fd, buf + *n, cap - *n)) > 0 || (r < 0 && errno == EINTR))) {
        *n += r > 0 ? (size_t)r : 0;
    }
    (void)close(fd);
    while (*n > 0 && (buf[*n - 1] == '\n' || buf[*n - 1] == '\r')) {
        (*n)--;
    }
    if (*n == 0 || *n == cap) {
        snprintf(why, whylen, *n == 0 ? "empty" : "longer than %zu bytes", cap - 1);
        OPENSSL_cleanse(buf, cap);
        return -1;
    }
    return 0;
}

/*
 * couchdb_proxy_auth: read the secret once at start and join the roles.  The secret never
 * reaches a message.
 */
static int
load_proxy_auth(struct proxy_listener *l, char *err, size_t errlen)
{
    const struct config_proxy_auth *pa = &l->cfg->proxy_auth;
    unsigned char buf[4096];
    size_t n = 0, used = 0, len = 0;
    char why[256] = "";

    if (!pa->enabled) {
        return 0;
    }
    if (read_secret_file(pa->secret_file.path, buf, sizeof(buf), &n, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "listener %s: couchdb_proxy_auth.secret_file %s: %s", l->cfg->name,
                 pa->secret_file.path, why);
        return -1;
    }
    l->auth_secret = malloc(n);
    for (size_t i = 0; i < pa->n_roles; i++) {
        len += strlen(pa->roles[i]) + 1;
    }
    l->auth_roles = malloc(len + 1);
    if (l->auth_secret == NULL || l->auth_roles == NULL) {
        OPENSSL_cleanse(buf, sizeof(buf));
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(l->auth_secret, buf, n);
    l->auth_secret_len = n;
    OPENSSL_cleanse(buf, sizeof(buf));
    l->auth_roles[0] = '\0';
    for (size_t i = 0; i < pa->n_roles; i++) {
        used += (size_t)snprintf(l->auth_roles + used, len + 1 - used, "%s%s", i > 0 ? "," : "",
                                 pa->roles[i]);
    }
    return 0;
}

/*
 * proxy_listener_bind_addr(a, label, reuseport, err, errlen):
 * socket + bind + listen on ${a}, with errors naming ${label} ("listener from-peers",
 * "admin") and the address.  ${reuseport}: set SO_REUSEPORT first, so that each worker can
 * have its own socket on the address.  Returns the listening socket, or -1.
 */
evutil_socket_t
proxy_listener_bind_addr(const struct config_addr *a, const char *label, bool reuseport, char *err,
                         size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len;
    evutil_socket_t fd;
    char why[256], text[CONFIG_ADDR_STR_MAX];

    config_value_addr_format(a, text, sizeof(text));
    if (resolve(a, true, &ss, &len, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%s: cannot listen on %s: %s", label, text, why);
        return -1;
    }
    fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot listen on %s: %s", label, text, strerror(errno));
        return -1;
    }
    if (evutil_make_socket_nonblocking(fd) < 0 || evutil_make_socket_closeonexec(fd) < 0 ||
        evutil_make_listen_socket_reuseable(fd) < 0) {
        snprintf(err, errlen, "%s: cannot set up a socket for %s: %s", label, text,
                 strerror(errno));
        goto err0;
    }
    if (reuseport) {
        int one = 1;

        if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
            snprintf(err, errlen, "%s: cannot set SO_REUSEPORT on a socket for %s: %s", label, text,
                     strerror(errno));
            goto err0;
        }
    }
    if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
        int e = errno;

        snprintf(err, errlen, "%s: cannot listen on %s: %s%s", label, text, strerror(e),
                 e == EADDRINUSE      ? " (another process, or another ferry, holds this port)"
                 : e == EACCES        ? " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
                 : e == EADDRNOTAVAIL ? " (no interface on this machine has that address)"
                                      : "");
        goto err0;
    }
    if (listen(fd, PROXY_LISTEN_BACKLOG) < 0) {
        snprintf(err, errlen, "%s: cannot listen on %s: %s", label, text, strerror(errno));
        goto err0;
    }
    return fd;

err0:
    evutil_closesocket(fd);
    return -1;
}

static void
accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    struct proxy_listener *l = arg;

    (void)lev;
    if (PROXY_STAT_GET(l->w->p->accept_failures) > 0) {
        /* Descriptors run out for the whole process: one line per episode, from one worker. */
        unsigned failures = __atomic_exchange_n(&l->w->p->accept_failures, 0, __ATOMIC_RELAXED);
        char n[16];

        if (failures > 0) {
            snprintf(n, sizeof(n), "%u", failures);
            log_kv(LOG_INFO, "accept_recovered", "failures", n, "msg",
                   "file descriptors available again; accepting", (const char *)NULL);
        }
    }
    proxy_worker_place(l, fd, sa, salen);
}

static void
accept_error_cb(struct evconnlistener *lev, void *arg)
{
    struct proxy_listener *l = arg;

    (void)lev;
    proxy_worker_accept_error(l->w, EVUTIL_SOCKET_ERROR());
}

/*
 * via: where to dial (the proxy, resolved here when it is an IP literal, else per connection
 * by evdns as a DNS peer is) and the CONNECT request for the peer, made once with the
 * credentials of via.auth_file (read at start and at each reload, wiped on free).
 */
static int
load_via(struct proxy_listener *l, char *err, size_t errlen)
{
    const struct config_listener *cl = l->cfg;
    const struct config_addr *dest = cl->has_connect ? &cl->connect : &cl->peer;
    unsigned char secret[1024];
    char req[2048], why[256] = "";
    size_t n = 0, len;

    config_value_addr_format(&cl->via.proxy, l->via_text, sizeof(l->via_text));
    config_value_addr_format(dest, l->via_target, sizeof(l->via_target));
    if (cl->via.proxy.is_ip) {
        if (resolve(&cl->via.proxy, true, &l->target, &l->target_len, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "listener %s: via.proxy %s: %s", cl->name, l->via_text, why);
            return -1;
        }
        l->target_host[0] = '\0';
    } else {
        snprintf(l->target_host, sizeof(l->target_host), "%s", cl->via.proxy.host);
        l->target_port = cl->via.proxy.port;
    }
    if (cl->via.auth_file.path != NULL &&
        read_secret_file(cl->via.auth_file.path, secret, sizeof(secret), &n, why, sizeof(why)) <
            0) {
        snprintf(err, errlen, "listener %s: via.auth_file %s: %s", cl->name, cl->via.auth_file.path,
                 why);
        return -1;
    }
    len = tls_tunnel_request(req, sizeof(req), dest->host, dest->port,
                             n > 0 ? (const char *)secret : NULL, n);
    OPENSSL_cleanse(secret, sizeof(secret));
    if (len == 0 || (l->via_request = malloc(len)) == NULL) {
        OPENSSL_cleanse(req, sizeof(req));
        snprintf(err, errlen, "listener %s: via: %s", cl->name,
                 len == 0 ? "the CONNECT request does not fit in 2 KiB" : "out of memory");
        return -1;
    }
    memcpy(l->via_request, req, len);
    l->via_request_len = len;
    OPENSSL_cleanse(req, sizeof(req));
    return 0;
}

/*
 * proxy_listener_build(w, g, cl, out, err, errlen):
 * Worker ${w}'s copy of listener ${cl} (of generation ${g}), all but its socket: TLS context,
 * target address, proxy-auth secret, metrics slot.  Runs on the control thread (it reads
 * files and may resolve a backend name).  Takes a reference on ${g}.  Returns 0 with *${out}
 * owned by the caller (proxy_listener_free), or -1 with ${err}.
 */
int
proxy_listener_build(struct proxy_worker *w, struct proxy_gen *g, const struct config_listener *cl,
                     struct proxy_listener **out, char *err, size_t errlen)
{
    struct proxy_listener *l;
    struct proxy_stats_name *sn;
    char why[256];

    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    l->magic = PROXY_LISTENER_MAGIC;
    l->w = w;
    l->fd = -1;
    l->gen = g;
    PROXY_STAT_ADD(g->refs, 1);
    l->cfg = cl;
    l->limits = &g->cfg->limits;
    config_value_addr_format(&cl->listen, l->listen_text, sizeof(l->listen_text));
    sn = proxy_stats_name_get(w->p->stats, cl->name);
    l->stats = sn != NULL ? proxy_stats_worker(sn, w->id) : NULL;
    if (l->stats == NULL) {
        snprintf(err, errlen, "out of memory");
        goto err1;
    }
    if (proxy_listener_tls_tickets(cl, w->p->tickets, &l->tls, err, errlen) < 0) {
        goto err1;
    }
    if (cl->mode == CONFIG_MODE_INBOUND) {
        config_value_addr_format(&cl->backend, l->target_text, sizeof(l->target_text));
        /* A backend name is resolved once here (blocking is fine at start, never later). */
        if (resolve(&cl->backend, cl->backend.is_ip, &l->target, &l->target_len, why, sizeof(why)) <
            0) {
            snprintf(err, errlen, "listener %s: backend %s: %s", cl->name, l->target_text, why);
            goto err1;
        }
    } else {
        config_value_addr_format(&cl->peer, l->target_text, sizeof(l->target_text));
        if (cl->has_connect || cl->peer.is_ip) {
            const struct config_addr *a = cl->has_connect ? &cl->connect : &cl->peer;

            if (resolve(a, true, &l->target, &l->target_len, why, sizeof(why)) < 0) {
                snprintf(err, errlen, "listener %s: %s", cl->name, why);
                goto err1;
            }
        } else {
            /* A DNS peer is resolved per connection without blocking (evdns). */
            snprintf(l->target_host, sizeof(l->target_host), "%s", cl->peer.host);
            l->target_port = cl->peer.port;
        }
    }
    if (load_proxy_auth(l, err, errlen) < 0) {
        goto err1;
    }
    if (cl->mode == CONFIG_MODE_OUTBOUND && cl->via.enabled && load_via(l, err, errlen) < 0) {
        goto err1;
    }
    *out = l;
    return 0;

err1:
    proxy_listener_free(l);
    return -1;
}

/*
 * proxy_listener_bind(ls, n, err, errlen):
 * Bind the listen address of the ${n} copies ${ls} of one listener (one per worker), each
 * its own socket.  With several workers the sockets share the address through SO_REUSEPORT;
 * a plain bind first makes sure no other process (another ferry) already listens there, which
 * SO_REUSEPORT alone would allow.  Returns 0, or -1 with ${err} naming the listener and the
 * address (no socket left open).
 */
int
proxy_listener_bind(struct proxy_listener **ls, size_t n, char *err, size_t errlen)
{
    char label[128];
    evutil_socket_t fd;

    snprintf(label, sizeof(label), "listener %s", ls[0]->cfg->name);
    if (n > 1) {
        fd = proxy_listener_bind_addr(&ls[0]->cfg->listen, label, false, err, errlen);
        if (fd < 0) {
            return -1;
        }
        evutil_closesocket(fd);
    }
    for (size_t i = 0; i < n; i++) {
        fd = proxy_listener_bind_addr(&ls[i]->cfg->listen, label, n > 1, err, errlen);
        if (fd < 0) {
            for (size_t j = 0; j < i; j++) {
                evutil_closesocket(ls[j]->fd);
                ls[j]->fd = -1;
            }
            return -1;
        }
        ls[i]->fd = fd;
    }
    return 0;
}

/*
 * proxy_listener_listen(l):
 * On ${l}'s worker (or before the workers run): start accepting on the socket that
 * proxy_listener_bind() gave it.  Returns 0, or -1 (logged; the listener counts as down in
 * /healthz).
 */
int
proxy_listener_listen(struct proxy_listener *l)
{
    l->lev = evconnlistener_new(l->w->base, accept_cb, l,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, l->fd);
    if (l->lev == NULL) {
        log_kv(LOG_ERROR, "listen_failed", "listener", l->cfg->name, "addr", l->listen_text, "msg",
               "out of memory watching the listening socket", (const char *)NULL);
        l->listen_failed = true;
        PROXY_STAT_ADD(proxy_stats_of(l->stats)->workers_down, 1);
        return -1;
    }
    l->fd = -1; /* the evconnlistener owns it now */
    evconnlistener_set_error_cb(l->lev, accept_error_cb);
    return 0;
}

/*
 * proxy_listener_adopt(l, old):
 * Take over ${old}'s listening socket (same address, across a reload): no connection is
 * refused while the configuration changes.  ${old} keeps no socket afterwards.
 */
void
proxy_listener_adopt(struct proxy_listener *l, struct proxy_listener *old)
{
    l->lev = old->lev;
    old->lev = NULL;
    evconnlistener_set_cb(l->lev, accept_cb, l);
}

/*
 * proxy_listener_retire(l):
 * ${l} is no longer in the configuration: close its socket if it still has one; free it now
 * when no connection points at it, else when the last one ends (proxy_conn_drop).
 */
void
proxy_listener_retire(struct proxy_listener *l)
{
    if (l->lev != NULL) {
        evconnlistener_free(l->lev);
        l->lev = NULL;
    }
    l->retired = true;
    proxy_pool_flush(l); /* idle peer connections close at once */
    if (l->n_conns == 0) {
        proxy_listener_free(l);
    }
}

/*
 * proxy_listener_free(l):
 * Close ${l}'s socket and release its TLS context (connections keep theirs by reference)
 * and its reference on its generation.
 */
void
proxy_listener_free(struct proxy_listener *l)
{
    if (l == NULL) {
        return;
    }
    if (l->lev != NULL) {
        evconnlistener_free(l->lev);
        l->lev = NULL;
    }
    proxy_pool_free(l);
    if (l->fd >= 0) {
        evutil_closesocket(l->fd);
        l->fd = -1;
    }
    if (l->listen_failed) {
        PROXY_STAT_SUB(proxy_stats_of(l->stats)->workers_down, 1);
    }
    tls_ctx_free(l->tls);
    l->tls = NULL;
    if (l->auth_secret != NULL) {
        OPENSSL_cleanse(l->auth_secret, l->auth_secret_len);
        free(l->auth_secret);
        l->auth_secret = NULL;
    }
    free(l->auth_roles);
    l->auth_roles = NULL;
    if (l->via_request != NULL) {
        OPENSSL_cleanse(l->via_request, l->via_request_len);
        free(l->via_request);
        l->via_request = NULL;
    }
    proxy_gen_unref(l->gen);
    l->gen = NULL;
    l->magic = 0;
    free(l);
}
