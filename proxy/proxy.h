/*
 * proxy: the daemon.  One libevent loop, the listeners of a config, their connections.
 *
 * Layering: proxy/ uses config/ (what to run) and tls/ (how to verify); it is the only layer
 * that logs.  Nothing per-connection lives in globals: a struct proxy owns its event base,
 * listeners and connections, so a later release can run one struct proxy per core.
 */
#ifndef FERRY_PROXY_H
#define FERRY_PROXY_H

#include <stddef.h>
#include <stdio.h>

struct config;
struct config_listener;
struct tls_ctx;
struct proxy;

/*
 * proxy_new(cfg, path, err, errlen):
 * Build everything ${cfg} describes: one TLS context per listener (refusing bad files, key
 * mismatches and certificates our peers would reject), resolved backend addresses, bound
 * listening sockets and the admin listener.  Takes ownership of ${cfg} (freed on failure
 * too); ${path} is the file SIGHUP reloads (NULL: the embedded default, never reloaded).
 * Returns the proxy, or NULL with a message naming the listener, file or address in ${err}.
 */
struct proxy *proxy_new(struct config *cfg, const char *path, char *err, size_t errlen);

/*
 * proxy_vet_fn(cfg, arg, err, errlen):
 * Judges a configuration a reload has just loaded, before anything of it is built: logs what
 * it finds and returns 0 to apply ${cfg}, or -1 with a one-line reason in ${err} to keep the
 * running configuration.  ${arg} is the pointer given to proxy_set_vet().  main.c hands in
 * the findings of certs/ this way, so that proxy/ does not depend on certs/.
 */
typedef int (*proxy_vet_fn)(const struct config *cfg, void *arg, char *err, size_t errlen);

/*
 * proxy_set_vet(p, vet, arg):
 * Have every reload of ${p} (SIGHUP, a changed file) ask ${vet} first; NULL: no judge.
 */
void proxy_set_vet(struct proxy *p, proxy_vet_fn vet, void *arg);

/*
 * proxy_load_fn(path, arg, err, errlen):
 * Loads the configuration file ${path} for a reload, logging what is wrong with it (main.c
 * logs each config error as the event=finding `ferry check` computes for it).  Returns the
 * new config (the caller owns it), or NULL with a one-line reason in ${err}.  ${arg} is the
 * vet argument of proxy_set_vet().
 */
typedef struct config *(*proxy_load_fn)(const char *path, void *arg, char *err, size_t errlen);

/*
 * proxy_set_load(p, load):
 * Have every reload of ${p} load its config with ${load}; NULL: config_load(), each error
 * logged as event=config_error.
 */
void proxy_set_load(struct proxy *p, proxy_load_fn load);

/*
 * proxy_start(p, err, errlen):
 * After proxy_new(), with the sockets bound and the keys read: drop privileges to `user:`
 * when set.  Returns 0, or -1 with the reason in ${err}.
 */
int proxy_start(struct proxy *p, char *err, size_t errlen);

/*
 * proxy_run(p):
 * Serve until SIGTERM or SIGINT (SIGHUP and changed certificate files reload), then stop
 * accepting, let open connections finish for up to limits.drain_timeout (a second signal
 * ends them at once), close them (sending TLS close_notify) and return 0.  Returns -1 when
 * the event loop fails.
 */
int proxy_run(struct proxy *p);

/*
 * proxy_free(p):
 * Release ${p}, its listeners and any connection still open.  proxy_free(NULL) is a no-op.
 */
void proxy_free(struct proxy *p);

/*
 * proxy_listener_tls(cl, out, err, errlen):
 * The one place that turns a listener's config into a TLS context (used by `ferry run` and
 * `ferry check`).  Returns 0 with the context in *${out}, or -1 with the reason (naming the
 * listener and file) in ${err}.
 */
int proxy_listener_tls(const struct config_listener *cl, struct tls_ctx **out, char *err,
                       size_t errlen);

#endif /* FERRY_PROXY_H */
