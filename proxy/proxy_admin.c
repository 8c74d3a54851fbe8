/*
 * proxy_admin: the admin listener (`admin.listen`, plain HTTP/1.x, GET/HEAD only) and the
 * counters behind it (CONTRACT §9).
 *
 *   GET /livez    200 while the control loop answers and every worker's loop has turned in
 *                 the last PROXY_LIVE_STALL_MS; 503 naming the stalled worker otherwise.
 *   GET /readyz   200 {"status":"ready",...}; 503 {"status":"unready",...} while draining, a
 *                 listener is down, an inbound listener's backend or an outbound listener's
 *                 peer is down (proxy_admin.h), or a certificate has expired.  The JSON says
 *                 which and why.  ?exclude=peers / ?exclude=backends leave those out.
 *   GET /healthz  the JSON summary (listeners with backend/peer state, certificates); 503
 *                 when a listener is down, a certificate has expired, or while draining.
 *   GET /metrics  Prometheus text format 0.0.4.
 *   anything else a JSON error: 400, 404, 405 (with Allow), 408, 414, 431, 505.
 *
 * The listener is a small HTTP/1.x server of its own (one request per connection, then
 * Connection: close) rather than libevent's evhttp, whose errors are HTML pages.
 *
 * Counters live in proxy_stats.h, one block per listener name and worker, owned by struct
 * proxy and kept across reloads; this file only reads them (proxy_stats_sum).  Certificate expiry
 * is read from the files at start and on reload. Inbound backends are probed (a TCP connect) every
 * admin.probe_interval when no connection of the listener reached them since the last probe.
 */
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <dirent.h>
#include <netdb.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "config_json.h"
#include "log.h"
#include "proxy_admin.h"
#include "proxy_internal.h"
#include "proxy_pp.h"
#include "proxy_stats.h"

/* The admin request head may be this long; more is 431. */
#define ADMIN_HEAD_MAX 8192
/*
 * A request head must arrive within ADMIN_HEAD_TIMEOUT_S (a probe sends its request at once);
 * an answer must be taken within ADMIN_TIMEOUT_S.
 */
#define ADMIN_HEAD_TIMEOUT_S 3
#define ADMIN_TIMEOUT_S      10
/* After our answer, the rest of what the client sends is read and dropped this long. */
#define ADMIN_LINGER_S 2
/*
 * At most this many admin connections at once.  A newcomer beyond it evicts the oldest
 * connection that has not sent a complete request yet (or, when every one has, the oldest),
 * so idle connections cannot lock the probes out.
 */
#define ADMIN_MAX_CLIENTS 64
/* Evictions are logged at most once per this many seconds, with how many since the last. */
#define ADMIN_EVICT_LOG_S 60

/* Certificate, CA and CRL files are read again at most this often (on an admin request). */
#define ADMIN_FILES_REREAD_MS 1000

/*
 * A certificate, CA or CRL file named by the config, as last read: the earliest notAfter of
 * its certificates (the earliest nextUpdate of its CRLs) and, for a certificate file, the
 * latest notBefore.
 */
struct admin_cert {
    char *path;
    enum proxy_file_kind kind;
    bool readable;        /* it opened and held at least one PEM certificate (CRL) */
    long long not_before; /* Unix time; certificate files only, else 0 */
    long long not_after;  /* Unix time; 0 when unreadable, or a CRL without nextUpdate */
};

/* The TCP probe of one inbound listener's backend (control thread). */
struct admin_probe {
    struct proxy_admin *a;
    struct proxy_stats_name *n;
    char target[CONFIG_ADDR_STR_MAX];
    struct sockaddr_storage ss;
    socklen_t len;
    char resolve_err[256]; /* non-empty: the backend name did not resolve */
    evutil_socket_t fd;    /* a connect in flight, or -1 */
    struct event *ev;
    uint64_t oks_seen; /* the backend's successes after the last probe (or tick that skipped one) */
    bool send_local;   /* backend_proxy_protocol: v2: a LOCAL header before the close */
};

/* One admin connection: read one request head, answer, linger, close. */
struct admin_client {
    struct proxy_admin *a;
    struct bufferevent *bev;
    struct admin_client *prev, *next;
    bool answered;
};

struct proxy_admin {
    struct proxy *p;
    struct evconnlistener *lev;
    struct config_addr addr;
    struct admin_cert *certs;
    size_t n_certs;
    long long certs_read_ms; /* proxy_stats_clock_ms() when the files were last read */
    struct admin_probe *probes;
    size_t n_probes;
    struct event *probe_timer;
    uint64_t probe_interval_ms;
    struct admin_client *clients; /* newest first */
    unsigned n_clients;
    uint64_t evicted;       /* connections evicted since the last admin_evicted line */
    long long evict_logged; /* proxy_stats_clock_ms() of that line; 0 before the first */
};

/* ---- the decisions (proxy_admin.h) ---- */

/*
 * proxy_admin_reach_of(oks, fails, probe_failed):
 * DOWN after PROXY_UPSTREAM_DOWN_AFTER failures in a row or a failed probe, UP after one
 * success, UNKNOWN before the first.
 */
enum proxy_reach
proxy_admin_reach_of(uint64_t oks, unsigned fails, bool probe_failed)
{
    if (probe_failed || fails >= PROXY_UPSTREAM_DOWN_AFTER) {
        return PROXY_REACH_DOWN;
    }
    return oks > 0 ? PROXY_REACH_UP : PROXY_REACH_UNKNOWN;
}

/*
 * proxy_admin_reach_ready(inbound, r):
 * DOWN is never ready; UNKNOWN is ready for an outbound peer only.
 */
bool
proxy_admin_reach_ready(bool inbound, enum proxy_reach r)
{
    return r == PROXY_REACH_UP || (r == PROXY_REACH_UNKNOWN && !inbound);
}

/*
 * proxy_admin_loop_stalled(now_ms, beat_ms):
 * More than PROXY_LIVE_STALL_MS since the loop's last beat.
 */
bool
proxy_admin_loop_stalled(long long now_ms, long long beat_ms)
{
    return now_ms - beat_ms > PROXY_LIVE_STALL_MS;
}

static bool
is_tchar(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/*
 * proxy_admin_parse(line, len, req, why):
 * "METHOD SP origin-form SP HTTP/1.x" (RFC 9112 §3).  Returns 0, or 400, 414 or 505 with
 * ${why}.
 */
int
proxy_admin_parse(const char *line, size_t len, struct proxy_admin_req *req, const char **why)
{
    size_t i = 0, t0, t, q;
    const char *v;

    memset(req, 0, sizeof(*req));
    while (i < len && is_tchar(line[i])) {
        i++;
    }
    if (i == 0 || i >= len || line[i] != ' ') {
        *why = "malformed request line: expected METHOD /path HTTP/1.1";
        return 400;
    }
    if (i >= sizeof(req->method)) {
        *why = "the method is too long";
        return 400;
    }
    memcpy(req->method, line, i);
    t0 = ++i;
    while (i < len && line[i] != ' ') {
        if ((unsigned char)line[i] <= 0x20 || (unsigned char)line[i] >= 0x7f) {
            *why = "the request target holds a control character, a space or a byte over 0x7e";
            return 400;
        }
        i++;
    }
    t = i - t0;
    if (t == 0 || i >= len) {
        *why = "malformed request line: expected METHOD /path HTTP/1.1";
        return 400;
    }
    if (line[t0] != '/') {
        *why = "the request target must be a path starting with /";
        return 400;
    }
    for (q = 0; q < t && line[t0 + q] != '?'; q++) {
    }
    if (q >= sizeof(req->path) || t - q >= sizeof(req->query) + 1) {
        *why = "the request target is too long";
        return 414;
    }
    memcpy(req->path, line + t0, q);
    if (q < t) {
        memcpy(req->query, line + t0 + q + 1, t - q - 1);
    }
    v = line + i + 1;
    if (len - i - 1 == 8 && strncmp(v, "HTTP/1.1", 8) == 0) {
        return 0;
    }
    if (len - i - 1 == 8 && strncmp(v, "HTTP/1.0", 8) == 0) {
        req->http10 = true;
        return 0;
    }
    if (len - i - 1 == 8 && strncmp(v, "HTTP/", 5) == 0 && v[5] >= '0' && v[5] <= '9' &&
        v[6] == '.' && v[7] >= '0' && v[7] <= '9') {
        *why = "only HTTP/1.0 and HTTP/1.1 are served here";
        return 505;
    }
    *why = "malformed request line: expected METHOD /path HTTP/1.1";
    return 400;
}

/*
 * proxy_admin_exclude(query, out, why, whylen):
 * "exclude=peers&exclude=backends", values also comma-separated; every other parameter, an
 * empty value and an unknown value are refused.
 */
int
proxy_admin_exclude(const char *query, unsigned *out, char *why, size_t whylen)
{
    const char *q = query;

    *out = 0;
    while (*q != '\0') {
        size_t n = strcspn(q, "&"), k = strcspn(q, "=&");
        const char *v, *end = q + n;

        if (n == 0) {
            q++; /* "a&&b", a trailing "&" */
            continue;
        }
        if (k != 7 || strncmp(q, "exclude", 7) != 0) {
            snprintf(why, whylen,
                     "unknown query parameter %.*s: /readyz takes only exclude=peers, "
                     "exclude=backends or exclude=peers,backends",
                     (int)(k < 64 ? k : 64), q);
            return -1;
        }
        v = q + k + (k < n);
        do {
            size_t len = strcspn(v, ",&");

            if (v + len > end) {
                len = (size_t)(end - v);
            }
            if (len == 5 && strncmp(v, "peers", 5) == 0) {
                *out |= PROXY_EXCLUDE_PEERS;
            } else if (len == 8 && strncmp(v, "backends", 8) == 0) {
                *out |= PROXY_EXCLUDE_BACKENDS;
            } else {
                snprintf(why, whylen,
                         "exclude=%.*s: %s: expected peers or backends, or both comma-separated "
                         "(e.g. /readyz?exclude=peers)",
                         (int)(len < 64 ? len : 64), v, len == 0 ? "an empty value" : "unknown");
                return -1;
            }
            v += len;
        } while (v < end && *v++ == ',');
        q = end + (*end == '&');
    }
    return 0;
}

/*
 * proxy_admin_file_state(readable, not_before, not_after, now):
 * Unreadable first, then expired (${not_after} 0 is no limit), then not valid yet.
 */
enum proxy_file_state
proxy_admin_file_state(bool readable, long long not_before, long long not_after, long long now)
{
    if (!readable) {
        return PROXY_FILE_UNREADABLE;
    }
    if (not_after != 0 && not_after <= now) {
        return PROXY_FILE_EXPIRED;
    }
    if (not_before > now) {
        return PROXY_FILE_NOT_YET_VALID;
    }
    return PROXY_FILE_OK;
}

/* ---- counters (proxy_stats.h) ---- */

/* The record of listener ${name}, made on first use; NULL on OOM.  It outlives reloads. */
static struct proxy_stats_name *
stats_for(struct proxy *p, const char *name)
{
    return proxy_stats_name_get(p->stats, name);
}

/* What the recorded outcomes say about ${n}'s backend or peer. */
static enum proxy_reach
upstream_reach(struct proxy_stats_name *n)
{
    struct proxy_upstream_view v;

    proxy_stats_upstream_read(n, false, &v);
    return proxy_admin_reach_of(v.oks, v.fails, v.probe_failed);
}

/* Successes of ${n}'s backend since the last reset: a probe is due when none came since. */
static uint64_t
upstream_oks(struct proxy_stats_name *n)
{
    struct proxy_upstream_view v;

    proxy_stats_upstream_read(n, false, &v);
    return v.oks;
}

/*
 * Why ${n}'s backend/peer is in state ${r}, in words, into ${buf}: the last failure with how
 * many attempts failed and how long ago, or what is still unknown.
 */
static void
upstream_reason(struct proxy_stats_name *n, bool inbound, enum proxy_reach r, char *buf, size_t len)
{
    long long now = (long long)time(NULL);
    struct proxy_upstream_view v;

    proxy_stats_upstream_read(n, true, &v);
    if (r == PROXY_REACH_UP) {
        buf[0] = '\0';
    } else if (r == PROXY_REACH_DOWN || v.fails > 0) {
        snprintf(buf, len, "%s (%u failed attempt%s in a row, last %llds ago)", v.detail, v.fails,
                 v.fails == 1 ? "" : "s", now - v.last_fail < 0 ? 0 : now - v.last_fail);
    } else if (inbound) {
        snprintf(buf, len, "not checked yet: the first probe has not answered");
    } else {
        snprintf(buf, len, "no connection to the peer yet (peers are not probed)");
    }
}

/* ---- certificates ---- */

/* ${t} as Unix time, by its distance from ${now} (ASN1_TIME_diff: POSIX has no timegm()). */
static bool
asn1_unix(const ASN1_TIME *t, time_t now, long long *out)
{
    int days = 0, secs = 0;

    if (t == NULL || ASN1_TIME_diff(&days, &secs, NULL, t) != 1) {
        return false;
    }
    *out = (long long)now + (long long)days * 86400 + secs;
    return true;
}

/* Read ${c}'s file again: readable, notBefore/notAfter (certificates) or nextUpdate (CRLs). */
static void
admin_cert_read(struct admin_cert *c)
{
    char why[128];
    int fd = tls_file_open_regular(c->path, why, sizeof(why)); /* never blocks on a FIFO */
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    time_t now = time(NULL);
    long long t;
    X509 *x;
    X509_CRL *crl;

    c->readable = false;
    c->not_before = 0;
    c->not_after = 0;
    if (f == NULL) {
        if (fd >= 0) {
            close(fd);
        }
        return;
    }
    ERR_clear_error();
    if (c->kind == PROXY_FILE_CRL) {
        while ((crl = PEM_read_X509_CRL(f, NULL, NULL, NULL)) != NULL) {
            c->readable = true;
            if (asn1_unix(X509_CRL_get0_nextUpdate(crl), now, &t) &&
                (c->not_after == 0 || t < c->not_after)) {
                c->not_after = t;
            }
            X509_CRL_free(crl);
        }
    } else {
        while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
            c->readable = true;
            if (asn1_unix(X509_get0_notAfter(x), now, &t) &&
                (c->not_after == 0 || t < c->not_after)) {
                c->not_after = t;
            }
            if (c->kind == PROXY_FILE_CERT && asn1_unix(X509_get0_notBefore(x), now, &t) &&
                t > c->not_before) {
                c->not_before = t;
            }
            X509_free(x);
        }
    }
    ERR_clear_error();
    (void)fclose(f); /* read only: nothing to lose on close */
}

/* Read every file again when the last read is ADMIN_FILES_REREAD_MS old. */
static void
admin_certs_reread(struct proxy_admin *a)
{
    long long now = proxy_stats_clock_ms();

    if (now - a->certs_read_ms < ADMIN_FILES_REREAD_MS) {
        return;
    }
    for (size_t i = 0; i < a->n_certs; i++) {
        admin_cert_read(&a->certs[i]);
    }
    a->certs_read_ms = now;
}

static void
admin_certs_clear(struct proxy_admin *a)
{
    for (size_t i = 0; i < a->n_certs; i++) {
        free(a->certs[i].path);
    }
    free(a->certs);
    a->certs = NULL;
    a->n_certs = 0;
}

static void
admin_cert_add(struct proxy_admin *a, const char *path, enum proxy_file_kind kind)
{
    struct admin_cert *v;

    if (path == NULL) {
        return;
    }
    for (size_t i = 0; i < a->n_certs; i++) {
        /* One entry per file, but a file that is both tls.ca and tls.crl is read as both. */
        if (strcmp(a->certs[i].path, path) == 0 &&
            (a->certs[i].kind == PROXY_FILE_CRL) == (kind == PROXY_FILE_CRL)) {
            return;
        }
    }
    v = realloc(a->certs, (a->n_certs + 1) * sizeof(*v));
    if (v == NULL) {
        return;
    }
    a->certs = v;
    v[a->n_certs].path = strdup(path);
    if (v[a->n_certs].path == NULL) {
        return;
    }
    v[a->n_certs].kind = kind;
    admin_cert_read(&v[a->n_certs]);
    a->n_certs++;
    a->certs_read_ms = proxy_stats_clock_ms();
}

/* ---- probes ---- */

static void
probe_stop(struct admin_probe *pr)
{
    if (pr->ev != NULL) {
        event_free(pr->ev);
        pr->ev = NULL;
    }
    if (pr->fd >= 0) {
        evutil_closesocket(pr->fd);
        pr->fd = -1;
    }
}

static void
probes_clear(struct proxy_admin *a)
{
    for (size_t i = 0; i < a->n_probes; i++) {
        probe_stop(&a->probes[i]);
    }
    free(a->probes);
    a->probes = NULL;
    a->n_probes = 0;
}

/* The probe's connect ended: ${err} 0 = the backend accepted it. */
static void
probe_done(struct admin_probe *pr, int err, bool timed_out)
{
    char detail[400];

    if (err == 0 && !timed_out && pr->send_local) {
        /* A backend that reads the PROXY protocol gets a header, as from HAProxy's checks,
         * not a connection that ends before one (16 bytes into an empty send buffer). */
        unsigned char local[16];
        size_t n = proxy_pp_v2_local(local, sizeof(local));

        (void)send(pr->fd, local, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    probe_stop(pr);
    if (err == 0 && !timed_out) {
        proxy_stats_probe_ok(pr->n);
    } else if (timed_out) {
        snprintf(detail, sizeof(detail), "probe: backend %s did not accept a connection in time",
                 pr->target);
        proxy_stats_probe_failed(pr->n, detail);
    } else {
        snprintf(detail, sizeof(detail), "probe: cannot connect to backend %s: %s", pr->target,
                 evutil_socket_error_to_string(err));
        proxy_stats_probe_failed(pr->n, detail);
    }
    pr->oks_seen = upstream_oks(pr->n);
}

static void
probe_cb(evutil_socket_t fd, short what, void *arg)
{
    struct admin_probe *pr = arg;
    int err = 0;
    socklen_t len = sizeof(err);

    if ((what & EV_TIMEOUT) != 0) {
        probe_done(pr, ETIMEDOUT, true);
        return;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) {
        err = errno;
    }
    probe_done(pr, err, false);
}

/* Start a TCP connect to ${pr}'s backend; its outcome is recorded when it ends. */
static void
probe_start(struct admin_probe *pr, uint64_t timeout_ms)
{
    struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)((timeout_ms % 1000) * 1000)};
    char detail[600];

    if (pr->resolve_err[0] != '\0') {
        snprintf(detail, sizeof(detail), "probe: backend %s: %s", pr->target, pr->resolve_err);
        proxy_stats_probe_failed(pr->n, detail);
        pr->oks_seen = upstream_oks(pr->n);
        return;
    }
    pr->fd = socket(pr->ss.ss_family, SOCK_STREAM, 0);
    if (pr->fd < 0 || evutil_make_socket_nonblocking(pr->fd) < 0 ||
        evutil_make_socket_closeonexec(pr->fd) < 0) {
        probe_done(pr, errno, false);
        return;
    }
    if (connect(pr->fd, (const struct sockaddr *)&pr->ss, pr->len) == 0) {
        probe_done(pr, 0, false);
        return;
    }
    if (errno != EINPROGRESS) {
        probe_done(pr, errno, false);
        return;
    }
    pr->ev = event_new(pr->a->p->base, pr->fd, EV_WRITE, probe_cb, pr);
    if (pr->ev == NULL || event_add(pr->ev, &tv) < 0) {
        probe_done(pr, ENOMEM, false);
    }
}

/* Log a backend or peer going down or coming back once, when the admin notices. */
static void
log_transitions(struct proxy *p)
{
    char reason[800];

    for (size_t i = 0; i < p->cfg->n_listeners; i++) {
        const struct config_listener *cl = &p->cfg->listeners[i];
        bool inbound = cl->mode == CONFIG_MODE_INBOUND;
        struct proxy_stats_name *m = stats_for(p, cl->name);
        enum proxy_reach r;
        char target[CONFIG_ADDR_STR_MAX];

        if (m == NULL) {
            continue;
        }
        config_value_addr_format(inbound ? &cl->backend : &cl->peer, target, sizeof(target));
        r = upstream_reach(m);
        if (r == PROXY_REACH_UNKNOWN || (int)r == m->up.logged) {
            continue;
        }
        if (r == PROXY_REACH_DOWN) {
            upstream_reason(m, inbound, r, reason, sizeof(reason));
        }
        log_kv(r == PROXY_REACH_DOWN ? LOG_WARN : LOG_INFO,
               inbound ? (r == PROXY_REACH_DOWN ? "backend_down" : "backend_up")
                       : (r == PROXY_REACH_DOWN ? "peer_down" : "peer_up"),
               "listener", cl->name, "target", target, "msg",
               r == PROXY_REACH_DOWN              ? reason
               : m->up.logged == PROXY_REACH_DOWN ? "reachable again"
                                                  : "reachable",
               (const char *)NULL);
        m->up.logged = (int)r;
    }
}

/* Every admin.probe_interval: probe each backend no connection has reached since the last. */
static void
probe_tick(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_admin *a = arg;
    uint64_t timeout = a->probe_interval_ms;

    (void)fd;
    (void)what;
    if (timeout > a->p->cfg->limits.handshake_timeout_ms) {
        timeout = a->p->cfg->limits.handshake_timeout_ms;
    }
    for (size_t i = 0; i < a->n_probes; i++) {
        struct admin_probe *pr = &a->probes[i];
        uint64_t oks = upstream_oks(pr->n);

        if (pr->fd >= 0) {
            continue; /* the last one is still connecting */
        }
        if (oks != pr->oks_seen) {
            pr->oks_seen = oks; /* a real connection reached it: no probe needed */
            continue;
        }
        probe_start(pr, timeout);
    }
    log_transitions(a->p);
}

/* The probes of the current configuration: one per inbound listener; the first runs now. */
static void
probes_build(struct proxy *p)
{
    struct proxy_admin *a = p->admin;
    const struct config *cfg = p->cfg;
    struct timeval tv;
    size_t n = 0;

    probes_clear(a);
    a->probes = calloc(cfg->n_listeners > 0 ? cfg->n_listeners : 1, sizeof(*a->probes));
    if (a->probes == NULL) {
        return;
    }
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct config_listener *cl = &cfg->listeners[i];
        struct admin_probe *pr = &a->probes[n];
        struct addrinfo hints, *res = NULL;
        char port[8];
        int rc;

        if (cl->mode != CONFIG_MODE_INBOUND) {
            continue;
        }
        pr->n = stats_for(p, cl->name);
        if (pr->n == NULL) {
            continue;
        }
        pr->a = a;
        pr->fd = -1;
        pr->send_local = cl->backend_pp == CONFIG_BACKEND_PP_V2;
        config_value_addr_format(&cl->backend, pr->target, sizeof(pr->target));
        /* Like the listener's own target: resolved once per configuration. */
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_NUMERICSERV | (cl->backend.is_ip ? AI_NUMERICHOST : 0);
        snprintf(port, sizeof(port), "%u", (unsigned)cl->backend.port);
        rc = getaddrinfo(cl->backend.host, port, &hints, &res);
        if (rc != 0 || res == NULL) {
            snprintf(pr->resolve_err, sizeof(pr->resolve_err), "cannot resolve %s: %s",
                     cl->backend.host, gai_strerror(rc));
        } else {
            memcpy(&pr->ss, res->ai_addr, res->ai_addrlen);
            pr->len = res->ai_addrlen;
        }
        if (res != NULL) {
            freeaddrinfo(res);
        }
        /* Probe at once unless a connection already says how the backend is. */
        pr->oks_seen = upstream_oks(pr->n) > 0 ? UINT64_MAX : 0;
        n++;
    }
    a->n_probes = n;
    a->probe_interval_ms = cfg->admin.probe_interval_ms;
    tv.tv_sec = (time_t)(a->probe_interval_ms / 1000);
    tv.tv_usec = (suseconds_t)((a->probe_interval_ms % 1000) * 1000);
    event_del(a->probe_timer);
    event_add(a->probe_timer, &tv);
    /* Not EV_TIMEOUT: libevent would then count the next interval from the planned time. */
    event_active(a->probe_timer, 0, 0);
}

/*
 * proxy_admin_refresh(p):
 * Certificates, backend/peer records and probes of the current configuration.
 */
void
proxy_admin_refresh(struct proxy *p)
{
    struct proxy_admin *a = p->admin;

    if (a == NULL) {
        return;
    }
    admin_certs_clear(a);
    for (size_t i = 0; i < p->cfg->n_listeners; i++) {
        const struct config_listener *cl = &p->cfg->listeners[i];
        struct proxy_stats_name *m = stats_for(p, cl->name);
        char target[CONFIG_ADDR_STR_MAX], addr[280];

        admin_cert_add(a, cl->tls.cert.path, PROXY_FILE_CERT);
        admin_cert_add(a, cl->tls.ca.path, PROXY_FILE_CA);
        admin_cert_add(a, cl->tls.crl.path, PROXY_FILE_CRL);
        if (m == NULL) {
            continue;
        }
        config_value_addr_format(cl->mode == CONFIG_MODE_INBOUND ? &cl->backend : &cl->peer, addr,
                                 sizeof(addr));
        snprintf(target, sizeof(target), "%s %s", config_value_mode_str(cl->mode), addr);
        if (strcmp(m->up.target, target) != 0) {
            proxy_stats_upstream_reset(m, target);
        }
    }
    probes_build(p);
}

/* ---- /metrics ---- */

/* Prometheus label values: escape backslash, double quote and newline. */
static void
put_label(struct evbuffer *b, const char *v)
{
    for (; *v != '\0'; v++) {
        if (*v == '\\' || *v == '"') {
            evbuffer_add_printf(b, "\\%c", *v);
        } else if (*v == '\n') {
            evbuffer_add(b, "\\n", 2);
        } else {
            evbuffer_add(b, v, 1);
        }
    }
}

/* One listener name's counters summed over the workers, as /metrics renders them. */
struct admin_snap {
    const char *name;
    struct proxy_stats s;
};

static void
metric_head(struct evbuffer *b, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
metric_listener(struct evbuffer *b, const char *name, const struct admin_snap *m, const char *extra,
                uint64_t v)
{
    evbuffer_add_printf(b, "%s{listener=\"", name);
    put_label(b, m->name);
    evbuffer_add_printf(b, "\"%s} %llu\n", extra, (unsigned long long)v);
}

/* A sum of microseconds as seconds. */
static void
metric_sum_us(struct evbuffer *b, const char *name, const struct admin_snap *m, const char *extra,
              uint64_t us)
{
    evbuffer_add_printf(b, "%s{listener=\"", name);
    put_label(b, m->name);
    evbuffer_add_printf(b, "\"%s} %llu.%06llu\n", extra, (unsigned long long)(us / 1000000),
                        (unsigned long long)(us % 1000000));
}

/* The listener of the current configuration named ${name}, or NULL (removed by a reload). */
static const struct config_listener *
cfg_listener(const struct proxy *p, const char *name)
{
    for (size_t i = 0; i < p->cfg->n_listeners; i++) {
        if (strcmp(p->cfg->listeners[i].name, name) == 0) {
            return &p->cfg->listeners[i];
        }
    }
    return NULL;
}

static bool
is_mode(const struct config_listener *cl, enum config_mode mode)
{
    return cl != NULL && cl->mode == mode;
}

/* Does listener ${cl} (NULL: removed by a reload) speak protocol http (and so pool)? */
static bool
is_http(const struct config_listener *cl)
{
    return cl != NULL && cl->protocol == CONFIG_PROTOCOL_HTTP;
}

/*
 * Can listener ${cl} (NULL: removed by a reload) reject a certificate for ${r}?  Only an
 * inbound listener sees a client without a certificate or a name outside `allow`; only an
 * outbound one checks the peer's name against the peer host.
 */
static bool
reject_possible(const struct config_listener *cl, enum tls_reject r)
{
    if (is_mode(cl, CONFIG_MODE_INBOUND)) {
        return r != TLS_REJECT_NAME_MISMATCH;
    }
    if (is_mode(cl, CONFIG_MODE_OUTBOUND)) {
        return r != TLS_REJECT_NO_CERT && r != TLS_REJECT_NAME_NOT_ALLOWED;
    }
    return true;
}

static const char *
pp_label(int o)
{
    return proxy_conn_pp_outcome_str((enum proxy_pp_outcome)o);
}

static const char *
via_label(int r)
{
    return proxy_conn_via_result_str((enum proxy_via_result)r);
}

static bool
has_pp(const struct config_listener *cl)
{
    return cl != NULL && cl->pp_accept;
}

static bool
has_via(const struct config_listener *cl)
{
    return cl != NULL && cl->via.enabled;
}

/*
 * A counter ${metric} with a label result="${label}(i)" for each of the ${count} counters at
 * ${field} (bytes into struct proxy_stats), for the listeners where ${on}() holds and any that
 * counted before a reload turned it off; each result present from zero.
 */
static void
render_results(const struct proxy *p, struct evbuffer *b, const struct admin_snap *snap, size_t n,
               const char *metric, const char *help, size_t field, int count,
               const char *(*label)(int), bool (*on)(const struct config_listener *))
{
    char extra[64];

    metric_head(b, metric, "counter", help);
    for (size_t i = 0; i < n; i++) {
        const uint64_t *v = (const uint64_t *)(const void *)((const char *)&snap[i].s + field);
        uint64_t any = 0;

        for (int k = 0; k < count; k++) {
            any += v[k];
        }
        if (!on(cfg_listener(p, snap[i].name)) && any == 0) {
            continue;
        }
        for (int k = 0; k < count; k++) {
            snprintf(extra, sizeof(extra), ",result=\"%s\"", label(k));
            metric_listener(b, metric, &snap[i], extra, v[k]);
        }
    }
}

/* Handshake failures by reason, each present from zero where it can happen. */
static void
render_hs_failed(struct evbuffer *b, const struct admin_snap *m, const struct config_listener *cl)
{
    static const enum proxy_close_reason inbound[] = {
        PROXY_CLOSE_NOT_TLS, PROXY_CLOSE_HANDSHAKE_TIMEOUT, PROXY_CLOSE_HANDSHAKE_FAILED};
    char extra[128];

    for (int r = 0; r < PROXY_CLOSE__COUNT; r++) {
        bool always = false;

        if (is_mode(cl, CONFIG_MODE_INBOUND)) {
            for (size_t k = 0; k < sizeof(inbound) / sizeof(inbound[0]); k++) {
                always = always || inbound[k] == (enum proxy_close_reason)r;
            }
        } else if (is_mode(cl, CONFIG_MODE_OUTBOUND)) {
            always = r == PROXY_CLOSE_PEER_HANDSHAKE_FAILED;
        }
        if (always || m->s.hs_failed[r] > 0) {
            snprintf(extra, sizeof(extra), ",outcome=\"failed\",reason=\"%s\"",
                     proxy_conn_close_reason_str((enum proxy_close_reason)r));
            metric_listener(b, "ferry_handshakes_total", m, extra, m->s.hs_failed[r]);
        }
    }
}

/* ferry_request_duration_seconds: one histogram per listener (protocol http) and class. */
static void
render_req_hist(struct proxy *p, struct evbuffer *b, const struct admin_snap *snap, size_t n)
{
    const char *name = "ferry_request_duration_seconds";
    char extra[128], bucket[96], sum[96], count[96];

    snprintf(bucket, sizeof(bucket), "%s_bucket", name);
    snprintf(sum, sizeof(sum), "%s_sum", name);
    snprintf(count, sizeof(count), "%s_count", name);
    metric_head(b, name, "histogram",
                "HTTP requests by response status class: time from the request's first byte to "
                "its access-log line (the end of the response, or ferry's own answer).");
    for (size_t i = 0; i < n; i++) {
        const struct admin_snap *m = &snap[i];
        const struct config_listener *cl = cfg_listener(p, m->name);
        bool any = false;

        for (int k = 2; k <= 5; k++) {
            any = any || m->s.req_count[k] > 0;
        }
        if (!(cl != NULL && cl->protocol == CONFIG_PROTOCOL_HTTP) && !any) {
            continue;
        }
        for (int k = 2; k <= 5; k++) {
            uint64_t cum = 0;

            for (int j = 0; j < PROXY_REQ_BUCKETS; j++) {
                cum += m->s.req_hist[k][j];
                snprintf(extra, sizeof(extra), ",class=\"%dxx\",le=\"%g\"", k,
                         (double)proxy_stats_req_bounds_us[j] / 1e6);
                metric_listener(b, bucket, m, extra, cum);
            }
            cum += m->s.req_hist[k][PROXY_REQ_BUCKETS];
            snprintf(extra, sizeof(extra), ",class=\"%dxx\",le=\"+Inf\"", k);
            metric_listener(b, bucket, m, extra, cum);
            snprintf(extra, sizeof(extra), ",class=\"%dxx\"", k);
            metric_sum_us(b, sum, m, extra, m->s.req_sum_us[k]);
            metric_listener(b, count, m, extra, m->s.req_count[k]);
        }
    }
}

/* ferry_backend_up / ferry_peer_up on the listeners they apply to. */
static void
render_up(struct proxy *p, struct evbuffer *b)
{
    static const struct {
        const char *name;
        enum config_mode mode;
        const char *help;
    } fams[] = {
        {"ferry_backend_up", CONFIG_MODE_INBOUND,
         "1 when the inbound listener's backend is reachable (its last connection or probe "
         "succeeded), 0 when it is down or not checked yet."},
        {"ferry_peer_up", CONFIG_MODE_OUTBOUND,
         "1 unless the outbound listener's last 3 connections or handshakes with its peer "
         "failed in a row."},
    };

    for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]); f++) {
        metric_head(b, fams[f].name, "gauge", fams[f].help);
        for (size_t i = 0; i < p->cfg->n_listeners; i++) {
            const struct config_listener *cl = &p->cfg->listeners[i];
            struct proxy_stats_name *m = stats_for(p, cl->name);
            struct admin_snap one = {.name = cl->name};

            if (cl->mode != fams[f].mode || m == NULL) {
                continue;
            }
            metric_listener(
                b, fams[f].name, &one, "",
                proxy_admin_reach_ready(cl->mode == CONFIG_MODE_INBOUND, upstream_reach(m)) ? 1
                                                                                            : 0);
        }
    }
}

/* The process_* metrics of the Prometheus client libraries, from /proc and getrusage. */
static void
render_process(struct evbuffer *b)
{
    struct rusage ru;
    struct rlimit rl;
    long page = sysconf(_SC_PAGESIZE), ticks = sysconf(_SC_CLK_TCK);
    unsigned long long vsz = 0, rss = 0, start_ticks = 0, btime = 0;
    long long fds = 0;
    DIR *d;
    FILE *f;
    char line[1024];

    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        metric_head(b, "process_cpu_seconds_total", "counter",
                    "Total user and system CPU time spent in seconds.");
        evbuffer_add_printf(b, "process_cpu_seconds_total %.6f\n",
                            (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                                (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
    }
    if ((d = opendir("/proc/self/fd")) != NULL) {
        struct dirent *e;

        while ((e = readdir(d)) != NULL) {
            fds += e->d_name[0] != '.';
        }
        closedir(d);
        metric_head(b, "process_open_fds", "gauge", "Number of open file descriptors.");
        evbuffer_add_printf(b, "process_open_fds %lld\n", fds - 1); /* less opendir's own */
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        metric_head(b, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
        evbuffer_add_printf(b, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
    }
    if ((f = fopen("/proc/self/statm", "r")) != NULL) {
        char *end = NULL;

        if (fgets(line, sizeof(line), f) != NULL) {
            vsz = strtoull(line, &end, 10);
            rss = strtoull(end, NULL, 10);
        }
        if (rss > 0 && page > 0) {
            metric_head(b, "process_virtual_memory_bytes", "gauge",
                        "Virtual memory size in bytes.");
            evbuffer_add_printf(b, "process_virtual_memory_bytes %llu\n",
                                vsz * (unsigned long long)page);
            metric_head(b, "process_resident_memory_bytes", "gauge",
                        "Resident memory size in bytes.");
            evbuffer_add_printf(b, "process_resident_memory_bytes %llu\n",
                                rss * (unsigned long long)page);
        }
        (void)fclose(f);
    }
    /* Field 22 of /proc/self/stat: start time in clock ticks after boot (btime in /proc/stat). */
    if ((f = fopen("/proc/self/stat", "r")) != NULL) {
        if (fgets(line, sizeof(line), f) != NULL) {
            const char *s = strrchr(line, ')');
            int field = 2;

            for (; s != NULL && *s != '\0'; s++) {
                if (*s == ' ' && ++field == 22) {
                    start_ticks = strtoull(s + 1, NULL, 10);
                    break;
                }
            }
        }
        (void)fclose(f);
    }
    if ((f = fopen("/proc/stat", "r")) != NULL) {
        while (fgets(line, sizeof(line), f) != NULL) {
            if (strncmp(line, "btime ", 6) == 0) {
                btime = strtoull(line + 6, NULL, 10);
            }
        }
        (void)fclose(f);
    }
    if (btime > 0 && ticks > 0) {
        metric_head(b, "process_start_time_seconds", "gauge",
                    "Start time of the process since unix epoch in seconds.");
        evbuffer_add_printf(b, "process_start_time_seconds %.2f\n",
                            (double)btime + (double)start_ticks / (double)ticks);
    }
}

static void
render_metrics(struct proxy *p, struct evbuffer *b)
{
    char extra[128];
    size_t n = proxy_stats_set_count(p->stats);
    struct admin_snap *snap = calloc(n > 0 ? n : 1, sizeof(*snap));

    if (snap == NULL) {
        evbuffer_add_printf(b, "# out of memory\n");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const struct proxy_stats_name *sn = proxy_stats_set_at(p->stats, i);

        snap[i].name = sn->name;
        proxy_stats_sum(sn, &snap[i].s);
    }

    metric_head(b, "ferry_build_info", "gauge",
                "Always 1; the labels say which ferry, OpenSSL and libevent run.");
    evbuffer_add_printf(b, "ferry_build_info{version=\"");
    put_label(b, FERRY_VERSION);
    evbuffer_add_printf(b, "\",openssl=\"");
    put_label(b, OpenSSL_version(OPENSSL_VERSION_STRING));
    evbuffer_add_printf(b, "\",libevent=\"");
    put_label(b, event_get_version());
    evbuffer_add_printf(b, "\"} 1\n");

    metric_head(b, "ferry_connections_open", "gauge", "Connections open now.");
    for (size_t i = 0; i < n; i++) {
        metric_listener(b, "ferry_connections_open", &snap[i], "", snap[i].s.conns_open);
    }
    metric_head(b, "ferry_worker_connections", "gauge",
                "Connections open now on each worker thread (ferry-wN): new connections go to "
                "the least loaded worker.");
    for (size_t i = 0; i < p->n_workers; i++) {
        evbuffer_add_printf(b, "ferry_worker_connections{worker=\"%zu\"} %u\n", i,
                            PROXY_STAT_GET(p->workers[i]->n_conns));
    }
    metric_head(b, "ferry_worker_handoffs_total", "counter",
                "Connections another worker accepted and handed to this one, the least loaded.");
    for (size_t i = 0; i < p->n_workers; i++) {
        evbuffer_add_printf(b, "ferry_worker_handoffs_total{worker=\"%zu\"} %llu\n", i,
                            (unsigned long long)PROXY_STAT_GET(p->workers[i]->handoffs));
    }
    metric_head(b, "ferry_connections_total", "counter", "Connections accepted.");
    for (size_t i = 0; i < n; i++) {
        metric_listener(b, "ferry_connections_total", &snap[i], "", snap[i].s.conns_total);
    }
    metric_head(b, "ferry_handshakes_total", "counter",
                "TLS handshakes by outcome (ok, rejected by a verification rule, failed) and "
                "reason.");
    for (size_t i = 0; i < n; i++) {
        const struct admin_snap *m = &snap[i];

        const struct config_listener *cl = cfg_listener(p, m->name);

        metric_listener(b, "ferry_handshakes_total", m, ",outcome=\"ok\",reason=\"none\"",
                        m->s.hs_ok);
        for (int r = 1; r < TLS_REJECT__COUNT; r++) {
            if (!reject_possible(cl, (enum tls_reject)r) && m->s.hs_rejected[r] == 0) {
                continue;
            }
            snprintf(extra, sizeof(extra), ",outcome=\"rejected\",reason=\"%s\"",
                     tls_reject_str((enum tls_reject)r));
            metric_listener(b, "ferry_handshakes_total", m, extra, m->s.hs_rejected[r]);
        }
        render_hs_failed(b, m, cl);
    }
    metric_head(b, "ferry_bytes_total", "counter",
                "Bytes relayed: in = from the connecting client, out = to it.");
    for (size_t i = 0; i < n; i++) {
        metric_listener(b, "ferry_bytes_total", &snap[i], ",direction=\"in\"", snap[i].s.bytes_in);
        metric_listener(b, "ferry_bytes_total", &snap[i], ",direction=\"out\"",
                        snap[i].s.bytes_out);
    }
    metric_head(b, "ferry_requests_total", "counter", "HTTP requests by response status class.");
    for (size_t i = 0; i < n; i++) {
        for (int k = 1; k <= 5; k++) {
            snprintf(extra, sizeof(extra), ",class=\"%dxx\"", k);
            metric_listener(b, "ferry_requests_total", &snap[i], extra, snap[i].s.requests[k]);
        }
    }
    render_req_hist(p, b, snap, n);
    metric_head(b, "ferry_upstream_connect_failures_total", "counter",
                "Backend (inbound) or peer (outbound) connections that failed.");
    for (size_t i = 0; i < n; i++) {
        metric_listener(b, "ferry_upstream_connect_failures_total", &snap[i], "",
                        snap[i].s.upstream_failures);
    }
    render_up(p, b);
    metric_head(b, "ferry_pool_reused_total", "counter",
                "http: pooled connections to the peer (outbound) or backend (inbound) lent to a "
                "client request.");
    for (size_t i = 0; i < n; i++) {
        if (is_http(cfg_listener(p, snap[i].name))) {
            metric_listener(b, "ferry_pool_reused_total", &snap[i], "", snap[i].s.pool_reused);
        }
    }
    metric_head(b, "ferry_pool_connects_total", "counter",
                "http with a pool: new connections made to the peer (outbound) or backend "
                "(inbound).");
    for (size_t i = 0; i < n; i++) {
        if (is_http(cfg_listener(p, snap[i].name))) {
            metric_listener(b, "ferry_pool_connects_total", &snap[i], "", snap[i].s.pool_connects);
        }
    }
    render_results(p, b, snap, n, "ferry_proxy_protocol_total",
                   "Inbound connections on listeners with proxy_protocol.accept, by what ferry "
                   "made of their PROXY protocol header.",
                   offsetof(struct proxy_stats, pp), PROXY_PPO__COUNT, pp_label, has_pp);
    render_results(p, b, snap, n, "ferry_proxy_connect_total",
                   "Outbound dials through the egress proxy (via), by the outcome of CONNECT.",
                   offsetof(struct proxy_stats, via), PROXY_VIA__COUNT, via_label, has_via);
    metric_head(b, "ferry_handshake_duration_seconds", "histogram",
                "Time from accept to a verified TLS handshake.");
    for (size_t i = 0; i < n; i++) {
        const struct admin_snap *m = &snap[i];
        uint64_t cum = 0;

        for (int k = 0; k < PROXY_HS_BUCKETS; k++) {
            cum += m->s.hs_hist[k];
            snprintf(extra, sizeof(extra), ",le=\"%g\"", (double)proxy_stats_hs_bounds_us[k] / 1e6);
            metric_listener(b, "ferry_handshake_duration_seconds_bucket", m, extra, cum);
        }
        cum += m->s.hs_hist[PROXY_HS_BUCKETS];
        metric_listener(b, "ferry_handshake_duration_seconds_bucket", m, ",le=\"+Inf\"", cum);
        metric_sum_us(b, "ferry_handshake_duration_seconds_sum", m, "", m->s.hs_sum_us);
        metric_listener(b, "ferry_handshake_duration_seconds_count", m, "", m->s.hs_count);
    }
    free(snap);
    metric_head(b, "ferry_certificate_expiry_timestamp_seconds", "gauge",
                "Earliest notAfter of the certificates in each file, as Unix time (0: "
                "unreadable).");
    if (p->admin != NULL) {
        admin_certs_reread(p->admin);
    }
    for (size_t i = 0; p->admin != NULL && i < p->admin->n_certs; i++) {
        const struct admin_cert *c = &p->admin->certs[i];

        if (c->kind == PROXY_FILE_CRL) {
            continue;
        }
        evbuffer_add_printf(b, "ferry_certificate_expiry_timestamp_seconds{file=\"");
        put_label(b, c->path);
        evbuffer_add_printf(b, "\"} %lld\n", c->readable ? c->not_after : 0);
    }
    metric_head(b, "ferry_reloads_total", "counter", "Configuration reloads by result.");
    evbuffer_add_printf(b, "ferry_reloads_total{result=\"ok\"} %llu\n",
                        (unsigned long long)p->reloads_ok);
    evbuffer_add_printf(b, "ferry_reloads_total{result=\"failed\"} %llu\n",
                        (unsigned long long)p->reloads_failed);
    metric_head(b, "ferry_config_last_reload_successful", "gauge",
                "Whether the last configuration load (start or reload) succeeded.");
    evbuffer_add_printf(b, "ferry_config_last_reload_successful %d\n", p->last_reload_ok ? 1 : 0);
    metric_head(b, "ferry_config_last_reload_success_timestamp_seconds", "gauge",
                "Time of the last successful configuration load (start or reload), as Unix "
                "time.");
    evbuffer_add_printf(b, "ferry_config_last_reload_success_timestamp_seconds %lld\n",
                        p->last_reload_ok_at);
    render_process(b);
}

/* ---- /healthz, /readyz, /livez ---- */

/* The sink of the admin's JSON writers: append to the evbuffer ${arg}. */
static void
admin_json_put(void *arg, const char *s, size_t n)
{
    evbuffer_add(arg, s, n);
}

/*
 * One listener's JSON object: listening or not, and its backend or peer with its state.
 * *${listening} and *${ready} say whether it is up and whether it lets /readyz say 200
 * (${exclude}: PROXY_EXCLUDE_* bits).
 */
static void
render_listener(struct proxy *p, struct config_json *j, const struct config_listener *cl,
                unsigned exclude, bool *listening, bool *ready)
{
    struct proxy_stats_name *m = stats_for(p, cl->name);
    bool inbound = cl->mode == CONFIG_MODE_INBOUND;
    bool up = !p->draining && m != NULL && PROXY_STAT_GET(m->workers_down) == 0;
    bool excluded = (exclude & (inbound ? PROXY_EXCLUDE_BACKENDS : PROXY_EXCLUDE_PEERS)) != 0;
    enum proxy_reach r = m != NULL ? upstream_reach(m) : PROXY_REACH_UNKNOWN;
    bool target_ok = proxy_admin_reach_ready(inbound, r);
    char addr[CONFIG_ADDR_STR_MAX], target[CONFIG_ADDR_STR_MAX], reason[800];
    static const char *const states[] = {"unknown", "up", "down"};

    config_value_addr_format(&cl->listen, addr, sizeof(addr));
    config_value_addr_format(inbound ? &cl->backend : &cl->peer, target, sizeof(target));
    reason[0] = '\0';
    if (m != NULL) {
        upstream_reason(m, inbound, r, reason, sizeof(reason));
    }
    config_json_begin_object(j);
    config_json_kv_string(j, "name", cl->name);
    config_json_kv_string(j, "mode", config_value_mode_str(cl->mode));
    config_json_kv_string(j, "listen", addr);
    config_json_kv_bool(j, "up", up);
    config_json_kv_string(j, inbound ? "backend" : "peer", target);
    config_json_kv_bool(j, inbound ? "backend_up" : "peer_up", target_ok);
    config_json_kv_string(j, inbound ? "backend_state" : "peer_state", states[r]);
    if (reason[0] != '\0') {
        config_json_kv_string(j, "reason", reason);
    }
    if (excluded) {
        config_json_kv_bool(j, "excluded", true);
    }
    config_json_end_object(j);
    *listening = up;
    *ready = up && (target_ok || excluded);
}

/*
 * The "certificates" (certificate and CA files) and "crls" arrays, read again when stale.
 * *${all_valid} is false when a file cannot be read, a certificate has expired or is not
 * valid yet, or a CRL is past its nextUpdate; each such file adds a reason in words to the
 * array open in ${why} unless ${why} is NULL.
 */
static void
render_certs(struct proxy *p, struct config_json *j, bool *all_valid, struct config_json *why)
{
    static const char *const kinds[] = {"certificate file", "CA file", "CRL file"};
    long long now = (long long)time(NULL);
    char line[900];

    admin_certs_reread(p->admin);
    *all_valid = true;
    for (int crls = 0; crls <= 1; crls++) {
        config_json_key(j, crls ? "crls" : "certificates");
        config_json_begin_array(j);
        for (size_t i = 0; i < p->admin->n_certs; i++) {
            const struct admin_cert *c = &p->admin->certs[i];
            enum proxy_file_state st =
                proxy_admin_file_state(c->readable, c->not_before, c->not_after, now);

            if ((c->kind == PROXY_FILE_CRL) != (crls == 1)) {
                continue;
            }
            *all_valid = *all_valid && st == PROXY_FILE_OK;
            config_json_begin_object(j);
            config_json_kv_string(j, "file", c->path);
            config_json_kv_bool(j, "readable", c->readable);
            config_json_kv_int(j, crls ? "next_update" : "not_after", c->not_after);
            if (crls) {
                config_json_kv_bool(j, "expired", st != PROXY_FILE_OK);
            } else {
                config_json_kv_bool(j, "expired",
                                    st == PROXY_FILE_EXPIRED || st == PROXY_FILE_UNREADABLE);
                config_json_kv_bool(j, "not_yet_valid", st == PROXY_FILE_NOT_YET_VALID);
            }
            config_json_end_object(j);
            if (st == PROXY_FILE_OK || why == NULL) {
                continue;
            }
            snprintf(line, sizeof(line), "%s %s %s", kinds[c->kind], c->path,
                     st == PROXY_FILE_UNREADABLE
                         ? (c->kind == PROXY_FILE_CRL ? "cannot be read or holds no PEM CRL"
                                                      : "cannot be read or holds no PEM "
                                                        "certificate")
                     : st == PROXY_FILE_NOT_YET_VALID ? "is not valid yet (notBefore is ahead)"
                     : c->kind == PROXY_FILE_CRL
                         ? "is past its nextUpdate: every peer certificate is refused (reason "
                           "crl) until a fresh CRL is installed"
                         : "has expired");
            config_json_string(why, line);
        }
        config_json_end_array(j);
    }
}

/* 200 when every listener is up and no certificate has expired (CONTRACT §9). */
static int
render_health(struct proxy *p, struct evbuffer *b)
{
    bool ok = !p->draining, certs_ok;
    struct config_json j;

    config_json_init(&j, admin_json_put, b);
    config_json_begin_object(&j);
    config_json_key(&j, "listeners");
    config_json_begin_array(&j);
    for (size_t i = 0; i < p->cfg->n_listeners; i++) {
        bool up, ready;

        render_listener(p, &j, &p->cfg->listeners[i], 0, &up, &ready);
        ok = ok && up;
    }
    config_json_end_array(&j);
    render_certs(p, &j, &certs_ok, NULL);
    ok = ok && certs_ok;
    config_json_kv_uint(&j, "connections", proxy_conns_open(p));
    config_json_kv_bool(&j, "draining", p->draining);
    config_json_kv_string(&j, "status", ok ? "ok" : "unhealthy");
    config_json_end_object(&j);
    evbuffer_add(b, "\n", 1);
    return ok ? 200 : 503;
}

/*
 * /readyz: 200 unless draining, a listener is down, a backend or peer is down (unless
 * ${exclude}d), or a certificate has expired.  "reasons" lists each cause in words.
 */
static int
render_ready(struct proxy *p, struct evbuffer *b, unsigned exclude)
{
    struct evbuffer *why = evbuffer_new();
    bool ok = !p->draining, certs_ok;
    struct config_json j, jw;
    const char *reasons;

    if (why == NULL) {
        return 500;
    }
    /* The reasons are found while the listeners and files are written: gather them apart. */
    config_json_init(&jw, admin_json_put, why);
    config_json_begin_array(&jw);
    if (p->draining) {
        config_json_string(&jw, "draining: ferry is stopping");
    }
    config_json_init(&j, admin_json_put, b);
    config_json_begin_object(&j);
    config_json_key(&j, "listeners");
    config_json_begin_array(&j);
    for (size_t i = 0; i < p->cfg->n_listeners; i++) {
        const struct config_listener *cl = &p->cfg->listeners[i];
        bool up, ready;

        render_listener(p, &j, cl, exclude, &up, &ready);
        ok = ok && ready;
        if (!ready && !p->draining) {
            char reason[800], line[1100];
            struct proxy_stats_name *m = stats_for(p, cl->name);
            bool inbound = cl->mode == CONFIG_MODE_INBOUND;

            reason[0] = '\0';
            if (m != NULL) {
                upstream_reason(m, inbound, upstream_reach(m), reason, sizeof(reason));
            }
            snprintf(line, sizeof(line), "listener %s: %s", cl->name,
                     !up         ? "not listening"
                     : reason[0] ? reason
                     : inbound   ? "backend down"
                                 : "peer down");
            config_json_string(&jw, line);
        }
    }
    config_json_end_array(&j);
    render_certs(p, &j, &certs_ok, &jw);
    config_json_end_array(&jw);
    ok = ok && certs_ok;
    config_json_kv_bool(&j, "draining", p->draining);
    config_json_key(&j, "reasons");
    reasons = (const char *)evbuffer_pullup(why, -1);
    if (reasons == NULL) {
        evbuffer_free(why);
        evbuffer_drain(b, evbuffer_get_length(b));
        return 500;
    }
    config_json_raw(&j, reasons, evbuffer_get_length(why));
    evbuffer_free(why);
    config_json_kv_string(&j, "status", ok ? "ready" : "unready");
    config_json_end_object(&j);
    evbuffer_add(b, "\n", 1);
    return ok ? 200 : 503;
}

/* /livez: every running worker's loop beat within PROXY_LIVE_STALL_MS. */
static int
render_live(struct proxy *p, struct evbuffer *b)
{
    long long now = proxy_stats_clock_ms();
    bool ok = true;
    char reason[200] = "";
    struct config_json j;

    config_json_init(&j, admin_json_put, b);
    config_json_begin_object(&j);
    config_json_key(&j, "workers");
    config_json_begin_array(&j);
    for (size_t i = 0; i < p->n_workers; i++) {
        const struct proxy_worker *w = p->workers[i];
        long long beat = PROXY_STAT_GET(w->beat_ms);
        bool running = w->started && !__atomic_load_n(&w->done, __ATOMIC_ACQUIRE);
        bool stalled = running && proxy_admin_loop_stalled(now, beat);

        if (stalled && ok) {
            snprintf(reason, sizeof(reason),
                     "worker %u's event loop has not run for %lldms (limit %dms)", w->id,
                     now - beat, PROXY_LIVE_STALL_MS);
        }
        ok = ok && !stalled;
        config_json_begin_object(&j);
        config_json_kv_uint(&j, "id", w->id);
        config_json_kv_bool(&j, "running", running);
        config_json_kv_int(&j, "ms_since_beat", running ? now - beat : 0);
        config_json_kv_bool(&j, "stalled", stalled);
        config_json_end_object(&j);
    }
    config_json_end_array(&j);
    if (!ok) {
        config_json_kv_string(&j, "reason", reason);
    }
    config_json_kv_string(&j, "status", ok ? "ok" : "stalled");
    config_json_end_object(&j);
    evbuffer_add(b, "\n", 1);
    return ok ? 200 : 503;
}

/* ---- the HTTP side ---- */

static void client_free(struct admin_client *cl);

static const char *
status_phrase(int code)
{
    switch (code) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 414:
        return "URI Too Long";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Error";
    }
}

/*
 * Queue the answer ${code} with ${body} (not sent for HEAD) on ${cl}, then half-close once it
 * is written (client_write_cb).  Takes ${body}'s bytes.
 */
static void
client_answer(struct admin_client *cl, int code, const char *ctype, struct evbuffer *body,
              bool head, const char *extra_headers)
{
    struct evbuffer *out = bufferevent_get_output(cl->bev);

    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                        "Cache-Control: no-store\r\n%sConnection: close\r\nServer: ferry\r\n\r\n",
                        code, status_phrase(code), ctype, evbuffer_get_length(body),
                        extra_headers != NULL ? extra_headers : "");
    if (head) {
        evbuffer_drain(body, evbuffer_get_length(body));
    } else {
        evbuffer_add_buffer(out, body);
    }
    cl->answered = true;
    bufferevent_enable(cl->bev, EV_WRITE);
}

/* A JSON error: {"error":"...","reason":"..."}. */
static void
client_error(struct admin_client *cl, int code, const char *error, const char *reason, bool head,
             const char *extra_headers)
{
    struct evbuffer *b = evbuffer_new();
    struct config_json j;

    if (b == NULL) {
        client_free(cl);
        return;
    }
    config_json_init(&j, admin_json_put, b);
    config_json_begin_object(&j);
    config_json_kv_string(&j, "error", error);
    config_json_kv_string(&j, "reason", reason);
    config_json_end_object(&j);
    evbuffer_add(b, "\n", 1);
    client_answer(cl, code, "application/json", b, head, extra_headers);
    evbuffer_free(b);
}

/* One complete request head in ${cl}'s input: route it. */
static void
client_request(struct admin_client *cl, const char *line, size_t len)
{
    struct proxy *p = cl->a->p;
    struct proxy_admin_req req;
    const char *why = NULL;
    struct evbuffer *b;
    bool head;
    int code = proxy_admin_parse(line, len, &req, &why);
    unsigned exclude = 0;
    char reason[400];

    if (code != 0) {
        client_error(cl, code,
                     code == 414   ? "uri_too_long"
                     : code == 505 ? "http_version_not_supported"
                                   : "bad_request",
                     why, false, NULL);
        return;
    }
    head = strcmp(req.method, "HEAD") == 0;
    if (strcmp(req.path, "/livez") != 0 && strcmp(req.path, "/readyz") != 0 &&
        strcmp(req.path, "/healthz") != 0 && strcmp(req.path, "/metrics") != 0) {
        /* The path is printable ASCII (proxy_admin_parse); client_error escapes it for JSON. */
        snprintf(reason, sizeof(reason),
                 "no such path: %.200s (the admin endpoint serves /livez, /readyz, /healthz and "
                 "/metrics)",
                 req.path);
        client_error(cl, 404, "not_found", reason, head, NULL);
        return;
    }
    if (!head && strcmp(req.method, "GET") != 0) {
        snprintf(reason, sizeof(reason),
                 "%s is not allowed on %s: the admin endpoint answers GET "
                 "and HEAD only",
                 req.method, req.path);
        client_error(cl, 405, "method_not_allowed", reason, false, "Allow: GET, HEAD\r\n");
        return;
    }
    if (strcmp(req.path, "/readyz") == 0 &&
        proxy_admin_exclude(req.query, &exclude, reason, sizeof(reason)) < 0) {
        client_error(cl, 400, "bad_request", reason, head, NULL);
        return;
    }
    b = evbuffer_new();
    if (b == NULL) {
        client_free(cl);
        return;
    }
    if (strcmp(req.path, "/metrics") == 0) {
        render_metrics(p, b);
        client_answer(cl, 200, "text/plain; version=0.0.4; charset=utf-8", b, head, NULL);
    } else {
        code = strcmp(req.path, "/livez") == 0    ? render_live(p, b)
               : strcmp(req.path, "/readyz") == 0 ? render_ready(p, b, exclude)
                                                  : render_health(p, b);
        client_answer(cl, code, "application/json", b, head, NULL);
    }
    evbuffer_free(b);
}

static void
client_free(struct admin_client *cl)
{
    struct proxy_admin *a = cl->a;

    if (cl->prev != NULL) {
        cl->prev->next = cl->next;
    } else {
        a->clients = cl->next;
    }
    if (cl->next != NULL) {
        cl->next->prev = cl->prev;
    }
    a->n_clients--;
    bufferevent_free(cl->bev); /* closes the socket */
    cl->bev = NULL;
    free(cl);
}

/* The length of the line ${h} .. ${eol} (its LF) without its CR. */
static size_t
line_len(const char *h, const char *eol)
{
    return (size_t)(eol - h) - (eol > h && eol[-1] == '\r');
}

static void
client_read_cb(struct bufferevent *bev, void *arg)
{
    struct admin_client *cl = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = evbuffer_get_length(in), scan = len < ADMIN_HEAD_MAX ? len : ADMIN_HEAD_MAX;
    const char *h, *eol;
    bool done = false;

    if (cl->answered) {
        /* Lingering after our answer: read and drop. */
        evbuffer_drain(in, len);
        return;
    }
    h = (const char *)evbuffer_pullup(in, (ev_ssize_t)scan);
    /* The head ends at an empty line (CRLF CRLF, or bare LF LF). */
    for (size_t i = 1; h != NULL && i < scan && !done; i++) {
        done =
            h[i] == '\n' && (h[i - 1] == '\n' || (i >= 2 && h[i - 1] == '\r' && h[i - 2] == '\n'));
    }
    if (!done) {
        struct proxy_admin_req req;
        const char *why;

        eol = h != NULL ? memchr(h, '\n', scan) : NULL;
        if (eol != NULL && proxy_admin_parse(h, line_len(h, eol), &req, &why) != 0) {
            /* A complete request line that is malformed ("GET /livez", HTTP/0.9): at once. */
            client_request(cl, h, line_len(h, eol));
            return;
        }
        if (len >= ADMIN_HEAD_MAX) {
            client_error(cl, 431, "header_too_large",
                         "the request head is over 8 KiB (the admin endpoint needs only the "
                         "request line)",
                         false, NULL);
        }
        return;
    }
    eol = memchr(h, '\n', scan);
    client_request(cl, h, line_len(h, eol));
}

static void
client_write_cb(struct bufferevent *bev, void *arg)
{
    struct admin_client *cl = arg;
    struct timeval linger = {ADMIN_LINGER_S, 0};

    if (!cl->answered || evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
        return;
    }
    /*
     * Answer written: send our FIN, then read and drop what the client still sends (a body we
     * refused) until it closes or ADMIN_LINGER_S pass, so it sees the answer, not a reset.
     */
    shutdown(bufferevent_getfd(bev), SHUT_WR);
    bufferevent_disable(bev, EV_WRITE);
    bufferevent_set_timeouts(bev, &linger, NULL);
    bufferevent_enable(bev, EV_READ);
}

static void
client_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct admin_client *cl = arg;

    (void)bev;
    if ((what & BEV_EVENT_TIMEOUT) != 0 && (what & BEV_EVENT_READING) != 0 && !cl->answered) {
        client_error(cl, 408, "request_timeout", "no complete request head within 3s", false, NULL);
        return;
    }
    client_free(cl);
}

/*
 * The connection cap is reached: close the oldest connection that has not sent a complete
 * request (no answer: it asked nothing), or the oldest of all when every one has, and log it
 * at most once per ADMIN_EVICT_LOG_S.
 */
static void
admin_evict(struct proxy_admin *a)
{
    struct admin_client *victim = NULL, *oldest = NULL;
    long long now = proxy_stats_clock_ms();
    char n[24];

    for (struct admin_client *cl = a->clients; cl != NULL; cl = cl->next) {
        oldest = cl;
        if (!cl->answered) {
            victim = cl;
        }
    }
    if (victim == NULL) {
        victim = oldest;
    }
    if (victim == NULL) {
        return;
    }
    assert(victim->a == a); /* a client is on its own admin's list (tells clang-analyzer too) */
    client_free(victim);
    a->evicted++;
    if (a->evict_logged == 0 || now - a->evict_logged >= ADMIN_EVICT_LOG_S * 1000LL) {
        snprintf(n, sizeof(n), "%llu", (unsigned long long)a->evicted);
        log_kv(LOG_WARN, "admin_evicted", "connections", n, "msg",
               "the admin endpoint has 64 connections open: the oldest that sent no complete "
               "request was closed to admit a new one (logged at most once a minute)",
               (const char *)NULL);
        a->evicted = 0;
        a->evict_logged = now;
    }
}

static void
admin_accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int salen,
                void *arg)
{
    struct proxy_admin *a = arg;
    struct admin_client *cl;
    struct timeval tmo = {ADMIN_TIMEOUT_S, 0}, head_tmo = {ADMIN_HEAD_TIMEOUT_S, 0};

    (void)lev;
    (void)sa;
    (void)salen;
    if (a->n_clients >= ADMIN_MAX_CLIENTS) {
        admin_evict(a);
    }
    if ((cl = calloc(1, sizeof(*cl))) == NULL) {
        evutil_closesocket(fd);
        return;
    }
    cl->a = a;
    cl->bev = bufferevent_socket_new(a->p->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (cl->bev == NULL) {
        evutil_closesocket(fd);
        free(cl);
        return;
    }
    cl->next = a->clients;
    if (a->clients != NULL) {
        /* admin_evict() above unlinked what it freed; clang-analyzer cannot prove a doubly
         * linked list consistent, so it suspects the head was the freed client. */
        // NOLINTNEXTLINE(clang-analyzer-unix.Malloc)
        a->clients->prev = cl;
    }
    a->clients = cl;
    a->n_clients++;
    bufferevent_setcb(cl->bev, client_read_cb, client_write_cb, client_event_cb, cl);
    bufferevent_set_timeouts(cl->bev, &head_tmo, &tmo);
    bufferevent_enable(cl->bev, EV_READ);
}

/*
 * proxy_admin_open(p, err, errlen):
 * Start the admin listener of the current configuration when `admin.listen` is set, and its
 * backend probes.  Returns 0, or -1 with ${err} naming the address.
 */
int
proxy_admin_open(struct proxy *p, char *err, size_t errlen)
{
    struct proxy_admin *a;
    evutil_socket_t fd;

    if (!p->cfg->admin.enabled) {
        return 0;
    }
    a = calloc(1, sizeof(*a));
    if (a == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    a->p = p;
    a->addr = p->cfg->admin.listen;
    fd = proxy_listener_bind_addr(&a->addr, "admin", false, err, errlen);
    if (fd < 0) {
        free(a);
        return -1;
    }
    a->lev = evconnlistener_new(p->base, admin_accept_cb, a,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
    a->probe_timer = event_new(p->base, -1, EV_PERSIST, probe_tick, a);
    if (a->lev == NULL || a->probe_timer == NULL) {
        snprintf(err, errlen, "admin: out of memory");
        if (a->lev != NULL) {
            evconnlistener_free(a->lev);
        } else {
            evutil_closesocket(fd);
        }
        if (a->probe_timer != NULL) {
            event_free(a->probe_timer);
        }
        free(a);
        return -1;
    }
    p->admin = a;
    proxy_admin_refresh(p);
    return 0;
}

/*
 * proxy_admin_same(p):
 * Does the running admin listener already serve what the current configuration asks for?
 */
bool
proxy_admin_same(const struct proxy *p)
{
    const struct config_admin *want = &p->cfg->admin;

    if (p->admin == NULL) {
        return !want->enabled;
    }
    return want->enabled && strcmp(p->admin->addr.host, want->listen.host) == 0 &&
           p->admin->addr.port == want->listen.port;
}

/*
 * proxy_admin_free(p):
 * Stop the admin listener of ${p}, if any: its socket, open admin connections and probes.
 */
void
proxy_admin_free(struct proxy *p)
{
    struct proxy_admin *a = p->admin;

    if (a == NULL) {
        return;
    }
    for (struct admin_client *cl = a->clients, *next; cl != NULL; cl = next) {
        next = cl->next; /* read before client_free() unlinks and frees cl */
        client_free(cl);
    }
    if (a->lev != NULL) {
        evconnlistener_free(a->lev); /* closes its socket */
        a->lev = NULL;
    }
    probes_clear(a);
    if (a->probe_timer != NULL) {
        event_free(a->probe_timer);
        a->probe_timer = NULL;
    }
    admin_certs_clear(a);
    free(a);
    p->admin = NULL;
}
