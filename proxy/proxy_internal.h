/*
 * proxy_internal: the structs shared by the files of proxy/ (not by other layers).
 *
 * Ownership:
 *   struct proxy          owns its event base, the listeners, the list of open connections.
 *   struct proxy_listener owns its evconnlistener and its tls_ctx; borrows its config.
 *   struct proxy_conn     owns both bufferevents (and through BEV_OPT_CLOSE_ON_FREE their
 *                         sockets and SSL objects), its timer and sniff event.
 *   struct proxy_pool     (in its listener) owns the idle peer bufferevents it holds; one
 *                         moves to a connection when taken and back when put.
 */
#ifndef FERRY_PROXY_INTERNAL_H
#define FERRY_PROXY_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "config.h"
#include "proxy_http.h"
#include "tls.h"

#define PROXY_MAGIC          0x50525859u /* "PRXY" */
#define PROXY_LISTENER_MAGIC 0x4c53544eu /* "LSTN" */
#define PROXY_CONN_MAGIC     0x434f4e4eu /* "CONN" */

/*
 * Per-direction buffering cap.  A relay stops reading its source while its destination holds
 * more than this, so one connection holds at most about 2 x 2 x 64 KiB of relay data (input
 * and output buffers, both directions) = 256 KiB at full speed; an idle one holds none.
 */
#define PROXY_RELAY_HIGH (64 * 1024)

/* How long a connection we are closing on purpose (400, 502) may linger to read the client's
 * rest before the socket closes, so the client sees our answer rather than a reset. */
#define PROXY_LINGER_MS 2000

/* After EMFILE/ENFILE, listeners pause for this long instead of spinning on accept(). */
#define PROXY_ACCEPT_BACKOFF_MS 100

/* The life of a connection; changed only by proxy_conn_set_state(), which logs at debug. */
enum proxy_state {
    PROXY_CONN_SNIFF,      /* inbound: waiting for the first byte (TLS record or not) */
    PROXY_CONN_HANDSHAKE,  /* inbound: TLS handshake with the client */
    PROXY_CONN_CONNECTING, /* connecting to the backend (inbound) or peer (outbound, + TLS) */
    PROXY_CONN_RELAY,      /* both sides up; bytes flow */
    PROXY_CONN_DRAINING,   /* sending our own answer (400/502), then closing */
    PROXY_CONN_CLOSED,
};

/* Why a connection ended: one string table feeds the log line and (later) /metrics. */
enum proxy_close_reason {
    PROXY_CLOSE_DONE,                  /* both directions ended normally */
    PROXY_CLOSE_CLIENT_CLOSED,         /* the client went away before the relay started */
    PROXY_CLOSE_NOT_TLS,               /* plaintext on a TLS port: answered 400 */
    PROXY_CLOSE_HANDSHAKE_TIMEOUT,     /* handshake/connect not done in handshake_timeout */
    PROXY_CLOSE_HANDSHAKE_FAILED,      /* client TLS handshake failed (protocol, cipher...) */
    PROXY_CLOSE_REJECTED,              /* the peer's certificate broke a §4 rule */
    PROXY_CLOSE_BACKEND_UNREACHABLE,   /* inbound: backend connect failed */
    PROXY_CLOSE_PEER_UNREACHABLE,      /* outbound: peer connect or name resolution failed */
    PROXY_CLOSE_PEER_HANDSHAKE_FAILED, /* outbound: TLS with the peer failed (its alert...) */
    PROXY_CLOSE_IDLE_TIMEOUT,          /* no byte either way for idle_timeout */
    PROXY_CLOSE_CLIENT_ERROR,          /* read/write error or reset on the client side */
    PROXY_CLOSE_SERVER_ERROR,          /* read/write error or reset on the backend/peer side */
    PROXY_CLOSE_OOM,                   /* out of memory for this connection */
    PROXY_CLOSE_SHUTDOWN,              /* ferry is stopping */
    PROXY_CLOSE__COUNT
};

struct proxy_listener;
struct proxy_conn;

/*
 * One direction of a relay: bytes read from src are written to dst.  eof_seen: src ended;
 * shut_sent: dst got its FIN (after close_notify when dst is TLS).
 */
struct proxy_relay {
    struct bufferevent *src;
    struct bufferevent *dst;
    struct proxy_http *http; /* protocol http: frames the bytes (owned by the exchange) */
    bool dst_tls;
    bool eof_seen;
    bool shut_sent;
    bool throttled; /* src reading is off because dst is over PROXY_RELAY_HIGH */
    uint64_t bytes;
};

/*
 * A loaded configuration and how many holders it has: the proxy (while it is the current
 * one) and every listener built from it.  A reload makes a new generation; the old one is
 * freed when its last listener, kept alive by its last connection, goes.
 */
struct proxy_gen {
    struct config *cfg;
    unsigned refs;
};

/* The counters of one listener name; they survive reloads (Prometheus counters never reset). */
#define PROXY_HIST_BUCKETS 12

struct proxy_metrics {
    char name[64];
    uint64_t conns_open;
    uint64_t conns_total;
    uint64_t hs_ok;
    uint64_t hs_failed[PROXY_CLOSE__COUNT]; /* by close reason (handshake kinds only) */
    uint64_t hs_rejected[TLS_REJECT__COUNT];
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t requests[6]; /* [1] = 1xx ... [5] = 5xx */
    uint64_t upstream_failures;
    uint64_t hs_hist[PROXY_HIST_BUCKETS + 1]; /* cumulative counts per bucket, +Inf last */
    double hs_sum;
    uint64_t hs_count;
    uint64_t pool_reused;   /* outbound http: pooled peer connections taken by a client */
    uint64_t pool_connects; /* outbound http, pool on: new connections made to the peer */
};

struct proxy_admin;

struct proxy {
    uint32_t magic;
    struct event_base *base;
    struct evdns_base *dns;   /* created on first use by an outbound listener with a DNS peer */
    struct proxy_gen *gen;    /* the current configuration */
    const struct config *cfg; /* == gen->cfg */
    char *config_path;        /* what SIGHUP reloads; NULL for the embedded default */
    struct proxy_listener **listeners; /* active listeners of the current generation */
    size_t n_listeners;
    struct proxy_metrics **metrics; /* one per listener name ever configured */
    size_t n_metrics;
    uint64_t reloads_ok;
    uint64_t reloads_failed;
    struct proxy_admin *admin;
    struct event *watch; /* polls the files named by the config for changes */
    struct proxy_watch *watched;
    size_t n_watched;
    struct event *drain_timer; /* limits.drain_timeout after SIGTERM */
    bool draining;
    struct event *sig_term;
    struct event *sig_int;
    struct event *sig_hup;
    struct event *accept_resume; /* EMFILE backoff timer */
    bool accept_paused_fd;       /* paused by EMFILE/ENFILE */
    unsigned accept_failures;    /* EMFILE/ENFILE since the last accepted connection */
    bool accept_paused_max;      /* paused by limits.max_connections */
    unsigned n_conns;
    struct proxy_conn *conns; /* doubly linked list of open connections */
};

/*
 * outbound http: the idle keep-alive connections of one listener to its peer (proxy_pool.c),
 * newest last.  Used by the listener's own thread only; entries are recycled through spare.
 */
struct proxy_pool_entry;

struct proxy_pool {
    struct proxy_pool_entry *oldest, *newest;
    struct proxy_pool_entry *spare;
    unsigned n_idle;
    struct event *timer; /* the oldest entry's idle_timeout; created on first use */
};

struct proxy_listener {
    uint32_t magic;
    struct proxy *proxy;
    struct proxy_gen *gen; /* holds a reference */
    const struct config_listener *cfg;
    const struct config_limits *limits; /* of its generation */
    struct proxy_metrics *m;
    unsigned n_conns; /* connections that point here */
    bool retired;     /* replaced by a reload: freed when its last connection ends */
    struct tls_ctx *tls;
    struct evconnlistener *lev;
    char listen_text[300];
    char target_text[300]; /* backend or peer, as written in the config */
    /* where to connect: resolved at start unless target_host is set */
    struct sockaddr_storage target;
    socklen_t target_len;
    char target_host[256]; /* outbound peer by DNS name, resolved per connection (evdns) */
    /* couchdb_proxy_auth: the secret (read at start, wiped on free) and the roles header */
    unsigned char *auth_secret;
    size_t auth_secret_len;
    char *auth_roles;
    uint16_t target_port;
    struct proxy_pool pool; /* outbound http with pool.max_idle > 0 */
};

struct proxy_conn {
    uint32_t magic;
    struct proxy_listener *l;
    struct proxy_conn *prev, *next; /* in proxy->conns */
    enum proxy_state state;
    enum proxy_close_reason reason;
    evutil_socket_t fd;         /* the client socket until a bufferevent owns it */
    struct event *sniff;        /* inbound SNIFF: waits for the first byte */
    struct bufferevent *client; /* the accepted side (TLS on inbound, plain on outbound) */
    struct bufferevent *server; /* the backend (plain) or the peer (TLS) */
    struct event *timer;        /* handshake deadline, then idle check, then linger */
    struct tls_verify_result verify;
    struct proxy_relay up;   /* client -> server */
    struct proxy_relay down; /* server -> client */
    struct timeval started;
    struct timeval last_active;
    bool client_eof;          /* the client half-closed before the relay started */
    bool tls_up;              /* the client-side (inbound) or server-side (outbound) TLS is open */
    bool pool_reused;         /* server came from the pool: a stale one may be retried once */
    bool pool_retried;        /* the retry happened: dial, never take from the pool again */
    struct proxy_exchange *x; /* protocol http: requests in flight, identity headers */
    char remote[64];          /* client address "ip:port" */
    char detail[384];         /* the reason in plain words for the close line / 502 body */
};

/* proxy.c */
struct evdns_base *proxy_dns(struct proxy *p);
void proxy_gen_unref(struct proxy_gen *g);
void proxy_conn_gone(struct proxy *p);
void proxy_notify(const char *state);

/* proxy_privs.c */
int proxy_drop_privileges(const char *user, char *err, size_t errlen);

/* proxy_admin.c: the admin listener and the metrics */
int proxy_admin_open(struct proxy *p, char *err, size_t errlen);
void proxy_admin_free(struct proxy *p);
void proxy_admin_refresh(struct proxy *p);
bool proxy_admin_same(const struct proxy *p);
struct proxy_metrics *proxy_metrics_for(struct proxy *p, const char *name);
void proxy_metrics_handshake(struct proxy_metrics *m, const struct timeval *start,
                             const struct timeval *now);

/* proxy_listener.c */
int proxy_listener_build(struct proxy *p, struct proxy_gen *g, const struct config_listener *cl,
                         struct proxy_listener **out, char *err, size_t errlen);
int proxy_listener_bind(struct proxy_listener *l, char *err, size_t errlen);
void proxy_listener_adopt(struct proxy_listener *l, struct proxy_listener *old);
void proxy_listener_retire(struct proxy_listener *l);
void proxy_listener_free(struct proxy_listener *l);
evutil_socket_t proxy_bind_addr(const struct config_addr *a, const char *label, char *err,
                                size_t errlen);
void proxy_listeners_update(struct proxy *p);
void proxy_accept_error(struct proxy *p, int err);
struct event *proxy_accept_resume_new(struct proxy *p);

/* proxy_conn.c */
void proxy_conn_accept(struct proxy_listener *l, evutil_socket_t fd, const struct sockaddr *sa,
                       int salen);
void proxy_conn_drop(struct proxy_conn *c, enum proxy_close_reason reason);
void proxy_conn_drop_all(struct proxy *p, enum proxy_close_reason reason);
void proxy_conn_drain_idle(struct proxy *p);
const char *proxy_close_reason_str(enum proxy_close_reason reason);

void proxy_conn_answer(struct proxy_conn *c, enum proxy_close_reason reason, int status,
                       const char *phrase, const char *ctype, const char *body);

/* proxy_pool.c (outbound http: idle keep-alive connections to the peer) */
bool proxy_pool_enabled(const struct proxy_listener *l);
struct bufferevent *proxy_pool_take(struct proxy_listener *l, struct tls_verify_result *verify);
void proxy_pool_put(struct proxy_listener *l, struct bufferevent *bev,
                    const struct tls_verify_result *verify);
void proxy_pool_flush(struct proxy_listener *l);
void proxy_pool_free(struct proxy_listener *l);

/* proxy_exchange.c (protocol http) */
int proxy_exchange_start(struct proxy_conn *c);
void proxy_exchange_free(struct proxy_conn *c);
void proxy_exchange_request_failed(struct proxy_conn *c, enum proxy_http_result res);
void proxy_exchange_response_bytes(struct proxy_conn *c);
void proxy_exchange_after_read(struct proxy_conn *c);
bool proxy_exchange_can_answer(const struct proxy_conn *c);
bool proxy_exchange_idle(const struct proxy_conn *c);
bool proxy_exchange_client_done(const struct proxy_conn *c);
bool proxy_exchange_requests_idle(const struct proxy_conn *c);
bool proxy_exchange_reusable(const struct proxy_conn *c);
bool proxy_exchange_can_retry(const struct proxy_conn *c);
void proxy_exchange_resume(struct proxy_conn *c);

/* proxy_relay.c */
void proxy_relay_init(struct proxy_relay *r, struct bufferevent *src, struct bufferevent *dst,
                      bool dst_tls);
enum proxy_http_result proxy_relay_pump(struct proxy_relay *r);
void proxy_relay_src_eof(struct proxy_relay *r);
void proxy_relay_dst_drained(struct proxy_relay *r);
void proxy_shutdown_write(struct bufferevent *bev, bool tls);

#endif /* FERRY_PROXY_INTERNAL_H */
