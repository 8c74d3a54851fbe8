/*
 * proxy: the event base, the listeners of one config, signals, and the stop sequence.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "log.h"
#include "proxy.h"
#include "proxy_internal.h"

static void
proxy_check_magic(const struct proxy *p)
{
    if (p == NULL || p->magic != PROXY_MAGIC) {
        abort();
    }
}

/* SIGTERM / SIGINT: stop accepting, close every connection cleanly, leave the loop. */
static void
stop_cb(evutil_socket_t sig, short what, void *arg)
{
    struct proxy *p = arg;

    (void)what;
    proxy_check_magic(p);
    log_kv(LOG_INFO, "stopping", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM",
           (const char *)NULL);
    /* Connections point at their listener: drop them first, then close the listeners. */
    p->stopping = true;
    proxy_listeners_update(p);
    proxy_conn_drop_all(p, PROXY_CLOSE_SHUTDOWN);
    for (size_t i = 0; i < p->n_listeners; i++) {
        proxy_listener_free(p->listeners[i]);
        p->listeners[i] = NULL;
    }
    event_base_loopexit(p->base, NULL);
}

static void
hup_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    log_kv(LOG_WARN, "sighup", "msg",
           "this version does not reload its configuration; restart ferry to apply changes",
           (const char *)NULL);
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
 * proxy_new(cfg, err, errlen):
 * Build the event base, every listener (TLS context, target, bound socket) and the signal
 * handlers.  Returns the proxy, or NULL with ${err} naming the listener/file/address.
 */
struct proxy *
proxy_new(const struct config *cfg, char *err, size_t errlen)
{
    struct proxy *p;

    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->magic = PROXY_MAGIC;
    p->cfg = cfg;
    p->base = event_base_new();
    if (p->base == NULL) {
        snprintf(err, errlen, "cannot create the event loop");
        goto err1;
    }
    p->listeners = calloc(cfg->n_listeners, sizeof(*p->listeners));
    p->accept_resume = proxy_accept_resume_new(p);
    p->sig_term = evsignal_new(p->base, SIGTERM, stop_cb, p);
    p->sig_int = evsignal_new(p->base, SIGINT, stop_cb, p);
    p->sig_hup = evsignal_new(p->base, SIGHUP, hup_cb, p);
    if ((p->listeners == NULL && cfg->n_listeners > 0) || p->accept_resume == NULL ||
        p->sig_term == NULL || p->sig_int == NULL || p->sig_hup == NULL) {
        snprintf(err, errlen, "out of memory");
        goto err1;
    }
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        if (proxy_listener_open(p, &cfg->listeners[i], &p->listeners[i], err, errlen) < 0) {
            goto err1;
        }
        p->n_listeners = i + 1;
    }
    event_add(p->sig_term, NULL);
    event_add(p->sig_int, NULL);
    event_add(p->sig_hup, NULL);
    return p;

err1:
    proxy_free(p);
    return NULL;
}

/*
 * proxy_run(p):
 * Serve until SIGTERM/SIGINT.  Returns 0, or -1 when the loop fails.
 */
int
proxy_run(struct proxy *p)
{
    proxy_check_magic(p);
    for (size_t i = 0; i < p->n_listeners; i++) {
        const struct proxy_listener *l = p->listeners[i];

        log_kv(LOG_INFO, "listening", "listener", l->cfg->name, "mode",
               config_mode_str(l->cfg->mode), "protocol", config_protocol_str(l->cfg->protocol),
               "addr", l->listen_text, "target", l->target_text, (const char *)NULL);
    }
    log_kv(LOG_INFO, "ready", "config", p->cfg->path, (const char *)NULL);
    if (event_base_dispatch(p->base) < 0) {
        log_kv(LOG_ERROR, "loop_failed", (const char *)NULL);
        return -1;
    }
    log_kv(LOG_INFO, "stopped", (const char *)NULL);
    return 0;
}

/*
 * proxy_free(p):
 * Release ${p}: connections, listeners, resolver, events, base.
 */
void
proxy_free(struct proxy *p)
{
    if (p == NULL) {
        return;
    }
    proxy_check_magic(p);
    proxy_conn_drop_all(p, PROXY_CLOSE_SHUTDOWN);
    for (size_t i = 0; i < p->n_listeners; i++) {
        proxy_listener_free(p->listeners[i]);
        p->listeners[i] = NULL;
    }
    free(p->listeners);
    p->listeners = NULL;
    if (p->dns != NULL) {
        evdns_base_free(p->dns, 0);
        p->dns = NULL;
    }
    if (p->accept_resume != NULL) {
        event_free(p->accept_resume);
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
    p->magic = 0;
    free(p);
}
