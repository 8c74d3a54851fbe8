/*
 * proxy_admin: the admin listener (`admin.listen`, plain HTTP, GET/HEAD only) and the
 * counters behind it (CONTRACT §9).
 *
 *   GET /healthz  200 {"status":"ok",...} when every listener is up and no certificate has
 *                 expired; 503 otherwise (and while draining).
 *   GET /metrics  Prometheus text format 0.0.4.
 *
 * Counters live in struct proxy_metrics, one per listener name, owned by struct proxy and
 * kept across reloads.  Certificate expiry is read from the files at start and on reload.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "log.h"
#include "proxy_internal.h"

/* Handshake latency buckets, in seconds (upper bounds). */
static const double hs_bounds[PROXY_HIST_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                     0.1,   0.25,   0.5,   1,    2.5,   5};

/* A certificate file named by the config, with the earliest notAfter of its certificates. */
struct admin_cert {
    char *path;
    long long not_after; /* Unix time; 0 when unreadable */
};

struct proxy_admin {
    struct evhttp *http;
    struct config_addr addr;
    struct admin_cert *certs;
    size_t n_certs;
};

/*
 * proxy_metrics_for(p, name):
 * The counters of listener ${name}, made on first use; NULL on OOM.  They outlive reloads.
 */
struct proxy_metrics *
proxy_metrics_for(struct proxy *p, const char *name)
{
    struct proxy_metrics **v, *m;

    for (size_t i = 0; i < p->n_metrics; i++) {
        if (strcmp(p->metrics[i]->name, name) == 0) {
            return p->metrics[i];
        }
    }
    v = realloc(p->metrics, (p->n_metrics + 1) * sizeof(*v));
    if (v == NULL) {
        return NULL;
    }
    p->metrics = v;
    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return NULL;
    }
    snprintf(m->name, sizeof(m->name), "%s", name);
    p->metrics[p->n_metrics++] = m;
    return m;
}

/*
 * proxy_metrics_handshake(m, start, now):
 * Count one successful handshake that took ${now} - ${start}.
 */
void
proxy_metrics_handshake(struct proxy_metrics *m, const struct timeval *start,
                        const struct timeval *now)
{
    double s =
        (double)(now->tv_sec - start->tv_sec) + (double)(now->tv_usec - start->tv_usec) / 1e6;
    size_t b = 0;

    while (b < PROXY_HIST_BUCKETS && s > hs_bounds[b]) {
        b++;
    }
    PROXY_STAT_ADD(m->hs_hist[b], 1);
    PROXY_STAT_ADD(m->hs_sum_us, (uint64_t)(s < 0 ? 0 : s * 1e6));
    PROXY_STAT_ADD(m->hs_count, 1);
    PROXY_STAT_ADD(m->hs_ok, 1);
}

/* The earliest notAfter of the certificates in ${path}, as Unix time; 0 when unreadable. */
static long long
file_not_after(const char *path)
{
    FILE *f = fopen(path, "r");
    X509 *x;
    long long best = 0;
    time_t now = time(NULL);

    if (f == NULL) {
        return 0;
    }
    ERR_clear_error();
    while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
        int days = 0, secs = 0;

        /* ASN1_TIME_diff from now avoids timegm(), which POSIX does not have. */
        if (ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)) == 1) {
            long long t = (long long)now + (long long)days * 86400 + secs;

            if (best == 0 || t < best) {
                best = t;
            }
        }
        X509_free(x);
    }
    ERR_clear_error();
    fclose(f);
    return best;
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
admin_cert_add(struct proxy_admin *a, const char *path)
{
    struct admin_cert *v;

    if (path == NULL) {
        return;
    }
    for (size_t i = 0; i < a->n_certs; i++) {
        if (strcmp(a->certs[i].path, path) == 0) {
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
    v[a->n_certs].not_after = file_not_after(path);
    a->n_certs++;
}

/*
 * proxy_admin_refresh(p):
 * Re-read the expiry of every certificate and CA file of the current configuration (at start
 * and after each reload).
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
        admin_cert_add(a, p->cfg->listeners[i].tls.cert.path);
        admin_cert_add(a, p->cfg->listeners[i].tls.ca.path);
    }
}

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

static void
metric_head(struct evbuffer *b, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
metric_listener(struct evbuffer *b, const char *name, const struct proxy_metrics *m,
                const char *extra, uint64_t v)
{
    evbuffer_add_printf(b, "%s{listener=\"", name);
    put_label(b, m->name);
    evbuffer_add_printf(b, "\"%s} %llu\n", extra, (unsigned long long)v);
}

/* Copy ${src} with atomic loads: the workers keep counting while /metrics renders. */
static void
metrics_snapshot(const struct proxy_metrics *src, struct proxy_metrics *dst)
{
    memcpy(dst->name, src->name, sizeof(dst->name));
    dst->conns_open = PROXY_STAT_GET(src->conns_open);
    dst->conns_total = PROXY_STAT_GET(src->conns_total);
    dst->hs_ok = PROXY_STAT_GET(src->hs_ok);
    for (int i = 0; i < PROXY_CLOSE__COUNT; i++) {
        dst->hs_failed[i] = PROXY_STAT_GET(src->hs_failed[i]);
    }
    for (int i = 0; i < TLS_REJECT__COUNT; i++) {
        dst->hs_rejected[i] = PROXY_STAT_GET(src->hs_rejected[i]);
    }
    dst->bytes_in = PROXY_STAT_GET(src->bytes_in);
    dst->bytes_out = PROXY_STAT_GET(src->bytes_out);
    for (int i = 0; i < 6; i++) {
        dst->requests[i] = PROXY_STAT_GET(src->requests[i]);
    }
    dst->upstream_failures = PROXY_STAT_GET(src->upstream_failures);
    for (int i = 0; i <= PROXY_HIST_BUCKETS; i++) {
        dst->hs_hist[i] = PROXY_STAT_GET(src->hs_hist[i]);
    }
    dst->hs_sum_us = PROXY_STAT_GET(src->hs_sum_us);
    dst->hs_count = PROXY_STAT_GET(src->hs_count);
    dst->workers_down = PROXY_STAT_GET(src->workers_down);
    dst->pool_reused = PROXY_STAT_GET(src->pool_reused);
    dst->pool_connects = PROXY_STAT_GET(src->pool_connects);
}

static void
render_metrics(struct proxy *p, struct evbuffer *b)
{
    char extra[128];
    size_t n = p->n_metrics;
    struct proxy_metrics *snap = calloc(n > 0 ? n : 1, sizeof(*snap));

    if (snap == NULL) {
        evbuffer_add_printf(b, "# out of memory\n");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        metrics_snapshot(p->metrics[i], &snap[i]);
    }

    metric_head(b, "ferry_connections_open", "gauge", "Connections open now.");
    for (size_t i = 0; i < n; i++) {
        metric_listener(b, "ferry_connections_open", &snap[i], "", snap[i].conns_open);
    }
    metric_head(b, "ferry_connections_total", "counter", "Connections accepted.");
    for (size_t i = 0; i < n; i++) {
        metric_listener(b, "ferry_connections_total", &snap[i], "", snap[i].conns_total);
    }
    metric_head(b, "ferry_handshakes_total", "counter",
                "TLS handshakes by outcome (ok, rejected by a verification rule, failed) and "
                "reason.");
    for (size_t i = 0; i < n; i++) {
        const struct proxy_metrics *m = &snap[i];

        metric_listener(b, "ferry_handshakes_total", m, ",outcome=\"ok\",reason=\"none\"",
                        m->hs_ok);
        for (int r = 1; r < TLS_REJECT__COUNT; r++) {
            snprintf(extra, sizeof(extra), ",outcome=\"rejected\",reason=\"%s\"",
                     tls_reject_str((enum tls_reject)r));
            metric_listener(b, "ferry_handshakes_total", m, extra, m->hs_rejected[r]);
        }
        for (int r = 0; r < PROXY_CLOSE__COUNT; r++) {
            if (m->hs_failed[r] > 0) {
                snprintf(extra, sizeof(extra), ",outcome=\"failed\",reason=\"%s\"",
                         proxy_close_reason_str((enum proxy_close_reason)r));
                metric_listener(b, "ferry_handshakes_total", m, extra, m->hs_failed[r]);
            }
        }
    }
    metric_head(b, "ferry_bytes_total", "counter",
                "Bytes relayed: in = from the connecting client, out = to it.");
    for (size_t i = 0; i < n; i++) {
        metric_listener(b, "ferry_bytes_total", &snap[i], ",direction=\"in\"", snap[i].bytes_in);
        metric_listener(b, "ferry_bytes_total", &snap[i], ",direction=\"out\"", snap[i].bytes_out);
    }
    metric_head(b, "ferry_requests_total", "counter", "HTTP requests by response status class.");
    for (size_t i = 0; i < n; i++) {
        for (int k = 1; k <= 5; k++) {
            snprintf(extra, sizeof(extra), ",class=\"%dxx\"", k);
            metric_listener(b, "ferry_requests_total", &snap[i], extra, snap[i].requests[k]);
        }
    }
    metric_head(b, "ferry_upstream_connect_failures_total", "counter",
                "Backend (inbound) or peer (outbound) connections that failed.");
    for (size_t i = 0; i < n; i++) {
        metric_listener(b, "ferry_upstream_connect_failures_total", &snap[i], "",
                        snap[i].upstream_failures);
    }
    metric_head(b, "ferry_pool_reused_total", "counter",
                "Outbound http: client connections served by a pooled peer connection.");
    for (size_t i = 0; i < n; i++) {
        metric_listener(b, "ferry_pool_reused_total", &snap[i], "", snap[i].pool_reused);
    }
    metric_head(b, "ferry_pool_connects_total", "counter",
                "Outbound http with a pool: new connections made to the peer.");
    for (size_t i = 0; i < n; i++) {
        metric_listener(b, "ferry_pool_connects_total", &snap[i], "", snap[i].pool_connects);
    }
    metric_head(b, "ferry_handshake_duration_seconds", "histogram",
                "Time from accept to a verified TLS handshake.");
    for (size_t i = 0; i < n; i++) {
        const struct proxy_metrics *m = &snap[i];
        uint64_t cum = 0;

        for (int k = 0; k < PROXY_HIST_BUCKETS; k++) {
            cum += m->hs_hist[k];
            snprintf(extra, sizeof(extra), ",le=\"%g\"", hs_bounds[k]);
            metric_listener(b, "ferry_handshake_duration_seconds_bucket", m, extra, cum);
        }
        cum += m->hs_hist[PROXY_HIST_BUCKETS];
        metric_listener(b, "ferry_handshake_duration_seconds_bucket", m, ",le=\"+Inf\"", cum);
        evbuffer_add_printf(b, "ferry_handshake_duration_seconds_sum{listener=\"");
        put_label(b, m->name);
        evbuffer_add_printf(b, "\"} %llu.%06llu\n", (unsigned long long)(m->hs_sum_us / 1000000),
                            (unsigned long long)(m->hs_sum_us % 1000000));
        metric_listener(b, "ferry_handshake_duration_seconds_count", m, "", m->hs_count);
    }
    free(snap);
    metric_head(b, "ferry_certificate_not_after_seconds", "gauge",
                "Earliest notAfter of the certificates in each file, as Unix time.");
    for (size_t i = 0; p->admin != NULL && i < p->admin->n_certs; i++) {
        evbuffer_add_printf(b, "ferry_certificate_not_after_seconds{file=\"");
        put_label(b, p->admin->certs[i].path);
        evbuffer_add_printf(b, "\"} %lld\n", p->admin->certs[i].not_after);
    }
    metric_head(b, "ferry_reloads_total", "counter", "Configuration reloads by result.");
    evbuffer_add_printf(b, "ferry_reloads_total{result=\"ok\"} %llu\n",
                        (unsigned long long)p->reloads_ok);
    evbuffer_add_printf(b, "ferry_reloads_total{result=\"failed\"} %llu\n",
                        (unsigned long long)p->reloads_failed);
}

/* 200 when every listener is up and no certificate has expired (CONTRACT §9). */
static int
render_health(struct proxy *p, struct evbuffer *b)
{
    long long now = (long long)time(NULL);
    bool ok = !p->draining;
    char esc[600];

    evbuffer_add_printf(b, "{\"listeners\":[");
    for (size_t i = 0; i < p->cfg->n_listeners; i++) {
        const struct config_listener *cl = &p->cfg->listeners[i];
        const struct proxy_metrics *m = proxy_metrics_for(p, cl->name);
        bool up = !p->draining && m != NULL && PROXY_STAT_GET(m->workers_down) == 0;
        char addr[300];

        ok = ok && up;
        config_addr_format(&cl->listen, addr, sizeof(addr));
        evbuffer_add_printf(b, "%s{\"name\":\"%s\",\"listen\":\"%s\",\"up\":%s}", i > 0 ? "," : "",
                            log_json_escape(esc, sizeof(esc), cl->name), addr,
                            up ? "true" : "false");
    }
    evbuffer_add_printf(b, "],\"certificates\":[");
    for (size_t i = 0; i < p->admin->n_certs; i++) {
        const struct admin_cert *c = &p->admin->certs[i];
        bool expired = c->not_after == 0 || c->not_after <= now;

        ok = ok && !expired;
        evbuffer_add_printf(b, "%s{\"file\":\"%s\",\"not_after\":%lld,\"expired\":%s}",
                            i > 0 ? "," : "", log_json_escape(esc, sizeof(esc), c->path),
                            c->not_after, expired ? "true" : "false");
    }
    evbuffer_add_printf(b, "],\"connections\":%u,\"draining\":%s,\"status\":\"%s\"}\n",
                        proxy_conns_open(p), p->draining ? "true" : "false",
                        ok ? "ok" : "unhealthy");
    return ok ? 200 : 503;
}

static void
admin_cb(struct evhttp_request *req, void *arg)
{
    struct proxy *p = arg;
    const char *uri = evhttp_request_get_uri(req);
    struct evbuffer *b = evbuffer_new();
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    size_t plen = strcspn(uri, "?");
    int code;

    if (b == NULL) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    if (plen == 8 && strncmp(uri, "/healthz", 8) == 0) {
        code = render_health(p, b);
        evhttp_add_header(h, "Content-Type", "application/json");
        evhttp_send_reply(req, code, code == 200 ? "OK" : "Service Unavailable", b);
    } else if (plen == 8 && strncmp(uri, "/metrics", 8) == 0) {
        render_metrics(p, b);
        evhttp_add_header(h, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
        evhttp_send_reply(req, 200, "OK", b);
    } else {
        evbuffer_add_printf(b,
                            "{\"error\":\"not_found\",\"reason\":\"try /healthz or /metrics\"}\n");
        evhttp_add_header(h, "Content-Type", "application/json");
        evhttp_send_reply(req, 404, "Not Found", b);
    }
    evbuffer_free(b);
}

/*
 * proxy_admin_open(p, err, errlen):
 * Start the admin listener of the current configuration when `admin.listen` is set.
 * Returns 0, or -1 with ${err} naming the address.
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
    a->addr = p->cfg->admin.listen;
    fd = proxy_bind_addr(&a->addr, "admin", false, err, errlen);
    if (fd < 0) {
        free(a);
        return -1;
    }
    a->http = evhttp_new(p->base);
    if (a->http == NULL || evhttp_accept_socket(a->http, fd) < 0) {
        snprintf(err, errlen, "admin: cannot serve HTTP");
        if (a->http != NULL) {
            evhttp_free(a->http);
        }
        evutil_closesocket(fd);
        free(a);
        return -1;
    }
    /* Anything but GET/HEAD is refused by libevent itself (501). */
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_timeout(a->http, 10);
    evhttp_set_max_headers_size(a->http, 8192);
    evhttp_set_max_body_size(a->http, 0);
    evhttp_set_gencb(a->http, admin_cb, p);
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
 * Stop the admin listener of ${p}, if any.
 */
void
proxy_admin_free(struct proxy *p)
{
    struct proxy_admin *a = p->admin;

    if (a == NULL) {
        return;
    }
    if (a->http != NULL) {
        evhttp_free(a->http); /* closes its socket */
    }
    admin_certs_clear(a);
    free(a);
    p->admin = NULL;
}
