/*
 * proxy_internal: the structs shared by the files of proxy/ (not by other layers).
 *
 * Threads: one control thread runs struct proxy's event base (signals, reload, file watch,
 * admin endpoint); each of the N worker threads runs one struct proxy_worker's event base and
 * owns everything of its connections.  A worker has its own copy of every listener (its own
 * listening socket, shared with the other workers through SO_REUSEPORT, and its own tls_ctx),
 * so nothing on the per-connection path takes a lock.  Between threads there are only: the
 * worker's command queue (mutex, then event_active), the generation's reference count and
 * connection counts (atomics, PROXY_STAT_*), the read-only config, and the /metrics counters
 * (proxy_stats.h: each worker writes only its own block, the admin endpoint reads them all).
 *
 * Ownership:
 *   struct proxy          (control) owns the workers, the current generation, the counters,
 *                         the admin listener and the file watch.
 *   struct proxy_worker   owns its event base, its listeners, its open connections.
 *   struct proxy_listener owns its evconnlistener and its tls_ctx; borrows its config.
 *   struct proxy_conn     owns both sides (struct proxy_io, by pointer, from the worker's
 *                         spare_sides: proxy_worker_side_new/_free; each side owns its socket
 *                         and SSL), its timer and sniff event.  Each side ends in one
 *                         function (proxy_conn.c: conn_close_client, conn_close_server),
 *                         which sends close_notify (proxy_io_shutdown) when that side's TLS
 *                         session is up and healthy, or gives the peer side to the pool.
 *   struct proxy_pool     (in its listener) owns the idle peer sides it holds; one moves (by
 *                         pointer: a proxy_io never moves in memory) to a connection when
 *                         taken (a request head is ready to go) and back when put (its
 *                         response was read to its end).
 */
#ifndef FERRY_PROXY_INTERNAL_H
#define FERRY_PROXY_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "config.h"
#include "proxy.h"
#include "proxy_access.h"
#include "proxy_http.h"
#include "proxy_io.h"
#include "proxy_spare.h"
#include "tls.h"

#define PROXY_MAGIC          0x50525859u /* "PRXY" */
#define PROXY_WORKER_MAGIC   0x574f524bu /* "WORK" */
#define PROXY_LISTENER_MAGIC 0x4c53544eu /* "LSTN" */
#define PROXY_CONN_MAGIC     0x434f4e4eu /* "CONN" */

/*
 * Per-direction buffering cap.  A relay stops reading its source while its destination holds
 * more than this, so one connection holds at most about 2 x 2 x 64 KiB of relay data (input
 * and output buffers, both directions) = 256 KiB at full speed; an idle one holds none.
 */
#define PROXY_RELAY_HIGH ((size_t)64 * 1024)

/* How long a connection we are closing on purpose (400, 502) may linger to read the client's
 * rest before the socket closes, so the client sees our answer rather than a reset. */
#define PROXY_LINGER_MS 2000

/*
 * A client socket refused during its handshake lingers after our alert (proxy_linger.c): for
 * at most PROXY_LINGER_MS (and never longer than limits.handshake_timeout), reading and
 * dropping at most PROXY_LINGER_BYTES; at most PROXY_LINGER_MAX such sockets per worker.
 */
#define PROXY_LINGER_BYTES ((size_t)64 * 1024)
#define PROXY_LINGER_MAX   256

/* The longest reason in plain words a connection keeps (its close line's detail=, a 502's
 * body); tls/'s explanations of a refused chain run to about 700 bytes. */
#define PROXY_DETAIL_MAX 1536

/*
 * Inbound connections that never pass their handshake (refused, failed, not TLS, timed out:
 * anyone who reaches the port makes as many as it likes) are logged, each in full or not at
 * all, at most PROXY_UNAUTH_LOG_PER_SEC a second per worker after a burst of
 * PROXY_UNAUTH_LOG_BURST (a token bucket); the others are counted in one event=log_suppressed
 * line a second (proxy_conn_log_flush()).  /metrics counts every connection.
 */
#define PROXY_UNAUTH_LOG_PER_SEC 20
#define PROXY_UNAUTH_LOG_BURST   100

/* An inbound pooled connection's owner: the SHA-256 of the client's certificate (or, without
 * one, a number no other connection has): proxy_pool_take(). */
#define PROXY_POOL_OWNER_LEN 32

/* Each worker's event loop beats this often (proxy_worker.c); GET /livez reads the beats. */
#define PROXY_BEAT_MS 1000

/*
 * Balanced accepts: a worker that accepts a connection while it holds at least this many more
 * (open + handed to it) than the least loaded worker hands the socket to that one instead.
 */
#define PROXY_BALANCE_SLACK 2

/* After EMFILE/ENFILE, listeners pause for this long instead of spinning on accept(). */
#define PROXY_ACCEPT_BACKOFF_MS 100

/* Values shared between threads (connection counts, refs): relaxed atomics, no lock. */
#define PROXY_STAT_ADD(x, n) ((void)__atomic_fetch_add(&(x), (n), __ATOMIC_RELAXED))
#define PROXY_STAT_SUB(x, n) ((void)__atomic_fetch_sub(&(x), (n), __ATOMIC_RELAXED))
#define PROXY_STAT_GET(x)    __atomic_load_n(&(x), __ATOMIC_RELAXED)

/* The life of a connection; changed only by proxy_conn_set_state(), which logs at debug. */
enum proxy_state {
    PROXY_CONN_SNIFF,      /* inbound: waiting for the first byte (TLS record or not) */
    PROXY_CONN_HANDSHAKE,  /* inbound: TLS handshake with the client */
    PROXY_CONN_CONNECTING, /* connecting to the backend (inbound) or peer (outbound, + TLS) */
    PROXY_CONN_RELAY,      /* both sides up; bytes flow */
    PROXY_CONN_DRAINING,   /* sending our own answer (400/502), then closing */
    PROXY_CONN_CLOSED,
};

/*
 * Where one side of a connection stands (struct proxy_conn's client_st and server_st; changed
 * only by conn_side_set(), which logs at debug).  How a side ends is read from it alone: a
 * close_notify when it is UP with a TLS session (and none was sent), back to the pool when a
 * peer side is UP between exchanges, a TCP reset when it is RESET, a plain close otherwise.
 */
enum proxy_side_state {
    PROXY_SIDE_NONE,    /* no side: not dialed yet, ended, or (lending) none lent */
    PROXY_SIDE_OPENING, /* its TCP connect or its TLS handshake is under way */
    PROXY_SIDE_UP,      /* open; its TLS session, when it has one, passed every rule */
    PROXY_SIDE_FAILED,  /* an error, a reset or a timeout on it: no close_notify, never pooled */
    PROXY_SIDE_RESET,   /* the client's response was cut where a FIN would read as its whole
                           end: once what came is written, a TCP reset ends it (conn_cut()) */
};

/* Where the server side came from (outbound http with the pool on: proxy_pool.c). */
enum proxy_side_origin {
    PROXY_ORIGIN_DIALED,   /* a new connection */
    PROXY_ORIGIN_POOLED,   /* an idle pooled one: if stale, the request may be retried once */
    PROXY_ORIGIN_REDIALED, /* dialed in place of a stale pooled one: never from the pool again
                              until this lend ends */
};

/* Why a connection ended: one string table feeds the log line and (later) /metrics. */
/*
 * What the PROXY protocol reader made of one connection (ferry_proxy_protocol_total), on an
 * inbound listener with proxy_protocol.accept; proxy_conn_pp_outcome_str() names each.
 */
enum proxy_pp_outcome {
    PROXY_PPO_OK,        /* a header with the client's address: it became the remote */
    PROXY_PPO_LOCAL,     /* v2 LOCAL (health checks) or v1 UNKNOWN: the sender's own address */
    PROXY_PPO_REFUSED,   /* the sender is not in proxy_protocol.from */
    PROXY_PPO_MISSING,   /* the connection did not start with a PROXY header */
    PROXY_PPO_MALFORMED, /* the header broke the specification */
    PROXY_PPO_TRUNCATED, /* the sender closed, or stopped until handshake_timeout, mid-header */
    PROXY_PPO_OVERSIZED, /* longer than ferry reads (PROXY_PP_MAX) */
    PROXY_PPO_TIMEOUT,   /* nothing at all within handshake_timeout */
    PROXY_PPO__COUNT
};

/* Where an outbound dial through an egress proxy (via:) is (proxy_conn.via_phase). */
#define PROXY_VIA_DIALING 1 /* connecting to the proxy */
#define PROXY_VIA_ANSWER  2 /* CONNECT sent, reading its answer (the socket is proxy_conn.fd) */
#define PROXY_VIA_TLS     3 /* the tunnel is open: TLS to the peer runs through it */

/* What became of a CONNECT to the egress proxy (ferry_proxy_connect_total{result}). */
enum proxy_via_result {
    PROXY_VIA_OK,
    PROXY_VIA_UNREACHABLE,      /* cannot connect to the proxy (or resolve its name) */
    PROXY_VIA_TIMEOUT,          /* no whole answer within via.connect_timeout */
    PROXY_VIA_AUTH_REQUIRED,    /* 407 (or 401) and no via.auth_file */
    PROXY_VIA_AUTH_FAILED,      /* 407 (or 401) with via.auth_file: its credentials were refused */
    PROXY_VIA_REFUSED,          /* 403 or another status: its policy refuses the peer */
    PROXY_VIA_PEER_UNREACHABLE, /* 500, 502, 503, 504: the proxy cannot reach the peer */
    PROXY_VIA_BAD_ANSWER,       /* not HTTP, too long, or cut short */
    PROXY_VIA__COUNT
};

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
    PROXY_CLOSE_PROXY_PROTOCOL,        /* inbound: the PROXY protocol header or its sender
                                          was refused (proxy_protocol.accept) */
    PROXY_CLOSE__COUNT
};

struct proxy_listener;
struct proxy_conn;
struct proxy_linger;
struct proxy_side;

/*
 * What the HTTP exchange (proxy_exchange.c) decides; the connection (proxy_conn.c) acts on it
 * (proxy_conn_act()).  The exchange frames, checks and keeps the requests in flight; it never
 * calls the connection's functions nor writes its fields: it returns a verdict from the calls
 * the connection makes, and reports one through the callback the connection gave it when its
 * own timers fire.
 */
enum proxy_verdict_kind {
    PROXY_VERDICT_CONTINUE,     /* relay on */
    PROXY_VERDICT_RESUME_UP,    /* a response made room in the queue of requests in flight:
                                   frame the requests that wait in the client's input */
    PROXY_VERDICT_ANSWER,       /* send ferry's own answer now (proxy_exchange_answer()), then
                                   close */
    PROXY_VERDICT_ANSWER_LATER, /* the same once the responses owed before it are out: read
                                   nothing more from the client */
    PROXY_VERDICT_CLOSE,        /* end the connection now: nothing can be answered any more */
    PROXY_VERDICT_CLIENT_LAST,  /* the client is done (its last request answered, or, pool on,
                                   it closed its side): let the other side go, finish it */
    PROXY_VERDICT_LEND_END,     /* lending: the peer connection goes back; the client stays */
};

struct proxy_verdict {
    enum proxy_verdict_kind kind;
    enum proxy_close_reason reason; /* ANSWER, ANSWER_LATER, CLOSE: logged at the end */
};

/*
 * Inbound http: the client as the HTTP exchange sees it (CONTRACT §6), made from its verified
 * handshake once per connection (proxy_exchange_identity()) and kept by the connection, across
 * the exchanges of its lends.
 */
struct proxy_identity {
    struct proxy_peer_names names; /* what the access rules match */
    char peer[256];          /* the peer's one identity, "-" for none (proxy_exchange_peer()) */
    char xff[64];            /* X-Forwarded-For */
    char *client_cert;       /* X-Forwarded-Client-Cert or Client-Cert value */
    char *client_cert_chain; /* RFC 9440 Client-Cert-Chain value */
    char *auth_user;         /* couchdb_proxy_auth */
    char *auth_token;
    /* whose backend connections these are (proxy_pool_take()): the certificate's SHA-256 */
    unsigned char pool_owner[PROXY_POOL_OWNER_LEN];
};

/* How the exchange reports a verdict when one of its own timers fires. */
typedef void (*proxy_exchange_report_fn)(struct proxy_conn *c, struct proxy_verdict v);

/*
 * Everything proxy_exchange_decide() reads: the exchange's state after an event, in plain
 * values (proxy_exchange_next() gathers them).
 */
struct proxy_exchange_facts {
    bool pool;             /* outbound http, pool on: peer connections are lent per request */
    bool answer_pending;   /* an answer of ferry's waits for the responses owed before it */
    bool resume_requests;  /* a response made room in a full queue since the last verdict */
    unsigned q_len;        /* requests forwarded and waiting for their response */
    bool req_in_body;      /* the last request forwarded is still sending its body */
    bool req_idle;         /* the request framer is between messages (and not stopped) */
    bool resp_in_message;  /* a response has started and not ended */
    bool resp_idle;        /* the response framer is between messages (and not stopped) */
    bool keep;             /* the last response and its request allowed keep-alive */
    bool no_more;          /* a request ended persistence: nothing after it is framed */
    bool close_after;      /* the client's last request was answered */
    bool client_eof;       /* the client closed its side */
    bool requests_waiting; /* bytes the client sent wait, unframed, in its input */
    bool resp_unsolicited; /* bytes of a response arrived with no request waiting for one */
};

/*
 * One direction of a relay: bytes read from src are written to dst.  eof_seen: src ended;
 * shut_sent: dst got its FIN (after close_notify when dst is TLS).
 */
struct proxy_relay {
    struct proxy_io *src;
    struct proxy_io *dst;
    struct proxy_http *http; /* protocol http: frames the bytes (owned by the exchange) */
    bool dst_tls;
    bool eof_seen;
    bool shut_sent;
    bool throttled; /* src reading is off because dst is over PROXY_RELAY_HIGH */
    uint64_t bytes;
    /*
     * Outbound lending (client -> peer, pool on): while no peer connection is lent (dst is
     * NULL) the framer writes the heads and bodies it forwards here; they move to the peer
     * connection's output when one is attached.  Owned by the connection; kept across
     * proxy_relay_init().
     */
    struct evbuffer *hold;
};

/*
 * A loaded configuration and how many holders it has: the proxy (while it is the current
 * one) and every listener built from it, in any worker.  A reload makes a new generation; the
 * old one is freed when its last listener, kept alive by its last connection, goes.  refs
 * changes with atomics (listeners end on worker threads).
 */
struct proxy_gen {
    struct config *cfg;
    unsigned refs;
};

/* The counters of /metrics (proxy_stats.h): one block per listener name and worker. */
struct proxy_stats;
struct proxy_stats_set;

struct proxy_admin;
struct proxy_worker;
struct proxy_handoff;

/* What the control thread asks a worker to do (queued, in order). */
enum proxy_cmd_kind {
    PROXY_CMD_LISTENERS, /* swap in a new set of listeners (start, reload) */
    PROXY_CMD_DRAIN,     /* stop accepting; end when the last connection has ended */
    PROXY_CMD_STOP,      /* close every connection now and end */
};

struct proxy_cmd {
    enum proxy_cmd_kind kind;
    struct proxy_listener **listeners; /* PROXY_CMD_LISTENERS: the new set (owned) */
    size_t n_listeners;
    struct proxy_cmd *next;
};

/* The control side: one per process, on the main thread. */
struct proxy {
    uint32_t magic;
    struct event_base *base;  /* the control loop: signals, file watch, admin, reload */
    struct proxy_gen *gen;    /* the current configuration */
    const struct config *cfg; /* == gen->cfg */
    char *config_path;        /* what SIGHUP reloads; NULL for the embedded default */
    proxy_vet_fn vet;         /* judges a reloaded config before it is built (proxy.h) */
    void *vet_arg;
    proxy_load_fn load; /* loads the config on reload instead of config_load() (proxy.h) */
    struct proxy_worker **workers;
    size_t n_workers;
    size_t n_running;              /* worker threads whose loop has not ended */
    struct event *worker_done;     /* made active by a worker thread when its loop ends */
    struct proxy_stats_set *stats; /* counters of every listener name ever configured */
    uint64_t reloads_ok;
    uint64_t reloads_failed;
    bool last_reload_ok;         /* the configuration loaded at start counts as a success */
    long long last_reload_ok_at; /* Unix time of the last successful load (start or reload) */
    long long started_at;        /* Unix time proxy_new() ran */
    unsigned accept_failures;    /* EMFILE/ENFILE in any worker since one accepted (atomic) */
    struct tls_tickets *tickets; /* session ticket keys of every inbound listener, all reloads */
    unsigned conns;              /* connections open in all workers (atomic) */
    unsigned max_conns;          /* limits.max_connections of the current config (atomic) */
    struct proxy_admin *admin;
    struct event *watch; /* polls the files named by the config for changes */
    struct proxy_watch *watched;
    size_t n_watched;
    struct event *drain_timer; /* limits.drain_timeout after SIGTERM */
    bool draining;
    struct event *sig_term;
    struct event *sig_int;
    struct event *sig_hup;
};

/* One event loop on its own thread, with its own copy of every listener. */
struct proxy_worker {
    uint32_t magic;
    unsigned id;
    struct proxy *p; /* control: only its config and metrics are read from here */
    struct event_base *base;
    struct evdns_base *dns; /* created on first use by an outbound listener with a DNS peer */
    pthread_t thread;
    bool started;
    struct proxy_listener **listeners; /* active listeners of the current generation */
    size_t n_listeners;
    pthread_mutex_t cmd_mu;
    struct proxy_cmd *cmd_head, *cmd_tail;
    bool want_drain;             /* under cmd_mu: the control thread asked for a drain */
    bool want_stop;              /* under cmd_mu: ... to close everything now */
    bool done;                   /* its loop has ended (atomic: read by the control thread) */
    struct event *accept_resume; /* EMFILE backoff timer */
    bool accept_paused_fd;       /* paused by EMFILE/ENFILE */
    /* balanced accepts (proxy_worker.c): connections other workers accepted for this one */
    pthread_mutex_t handoff_mu;
    struct proxy_handoff *handoff_head, *handoff_tail; /* under handoff_mu */
    unsigned handoff_pending; /* queued here, not yet a connection (atomic) */
    uint64_t handoffs;        /* connections other workers handed here, ever (atomic) */
    /*
     * Other threads wake the loop through an eventfd (proxy_worker_wake()), never through
     * libevent, so that the worker's event base takes no lock (EVENT_BASE_FLAG_NOLOCK):
     * wake_bits says why (PROXY_WAKE_*: a command queued by the control thread, a connection
     * handed over or max_connections crossed by another worker).
     */
    int wake_fd;
    unsigned wake_bits; /* atomic */
    struct event *wake_ev;
    bool draining;
    unsigned n_conns;         /* written by this worker only; read by control (PROXY_STAT_GET) */
    struct proxy_conn *conns; /* doubly linked list of open connections */
    struct event *beat;       /* every PROXY_BEAT_MS: the loop still turns (GET /livez) */
    long long beat_ms;        /* monotonic ms of the last beat (atomic: read by control) */
    /* logging unauthenticated connections (PROXY_UNAUTH_LOG_PER_SEC): the bucket's tokens in
     * thousandths, when it was last filled (monotonic ms; 0: never, full), the connections
     * held back since the last event=log_suppressed and the second that line was due in */
    long long unauth_log_tokens;
    long long unauth_log_filled;
    unsigned unauth_log_quiet;
    long long unauth_log_sec;
    /* client sockets being closed gently (proxy_linger.c), at most PROXY_LINGER_MAX */
    struct proxy_linger *lingering;
    unsigned n_lingering;
    /* ended connections' structs, reused by the next ones (no malloc per connection) */
    struct proxy_spare spare_conns; /* struct proxy_conn */
    struct proxy_exchange *spare_x; /* ended exchanges, with their framers (proxy_exchange.c) */
    unsigned n_spare_x;
    struct proxy_spare spare_sides; /* struct proxy_io (proxy_worker_side_new()) */
    struct proxy_side *dead_sides;  /* ended sides, freed by reap on the next loop turn */
    struct event *reap;             /* made active by proxy_worker_side_free() */
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
    struct proxy_worker *w;
    struct proxy_gen *gen; /* holds a reference */
    const struct config_listener *cfg;
    const struct config_limits *limits; /* of its generation */
    struct proxy_stats *stats;          /* this worker's counters of the listener's name */
    unsigned n_conns;                   /* connections that point here */
    bool retired; /* replaced by a reload: freed when its last connection ends */
    struct tls_ctx *tls;
    struct evconnlistener *lev;
    evutil_socket_t fd; /* bound by the control thread, not yet watched (-1 once it is) */
    bool listen_failed; /* counted in the name's workers_down (proxy_stats.h) */
    char listen_text[CONFIG_ADDR_STR_MAX];
    char target_text[CONFIG_ADDR_STR_MAX]; /* backend or peer, as written in the config */
    /* where to connect: resolved at start unless target_host is set */
    struct sockaddr_storage target;
    socklen_t target_len;
    char target_host[256]; /* outbound peer by DNS name, resolved per connection (evdns) */
    /* couchdb_proxy_auth: the secret (read at start, wiped on free) and the roles header */
    unsigned char *auth_secret;
    size_t auth_secret_len;
    char *auth_roles;
    uint16_t target_port;
    /* via: target* above are the proxy's; the CONNECT request (with credentials: wiped on
     * free) and the proxy as "host:port" */
    char *via_request;
    size_t via_request_len;
    char via_text[CONFIG_ADDR_STR_MAX];
    char via_target[CONFIG_ADDR_STR_MAX]; /* what CONNECT asks for: connect: if set, else peer
                                             ("host:port") */
    struct proxy_pool pool;               /* outbound http with pool.max_idle > 0 */
};

struct proxy_conn {
    uint32_t magic;
    struct proxy_listener *l;
    struct proxy_conn *prev, *next; /* in proxy->conns */
    enum proxy_state state;         /* the connection's life (conn_set_state()) */
    enum proxy_close_reason reason;
    evutil_socket_t fd;     /* the client socket until a proxy_io owns it */
    struct event *sniff;    /* inbound SNIFF: waits for the first byte */
    unsigned char *pre_buf; /* bytes read before TLS, NULL when none is awaited: inbound with
                               proxy_protocol.accept, the PROXY header (PROXY_PP_MAX bytes);
                               outbound with via:, the proxy's answer head (TLS_TUNNEL_HEAD_MAX) */
    size_t pre_len;
    char *pp_sender; /* proxy_protocol: the load balancer ("ip:port") when its header gave
                        another address, for the close line; NULL otherwise */
    bool pp_local;   /* proxy_protocol: a LOCAL (or UNKNOWN) header: a balancer's check */
    /* the accepted side (TLS on inbound, plain on outbound) */
    struct proxy_io *client;
    enum proxy_side_state client_st;
    bool client_eof;        /* it ended its stream before the relay could pass that on */
    unsigned char log_mode; /* inbound: 0 undecided, CONN_LOG_ON (its handshake passed, or the
                               log bucket gave it a token) or CONN_LOG_HELD (conn_log_ok()) */
    /* the backend (plain) or the peer (TLS) */
    struct proxy_io *server;
    enum proxy_side_state server_st;
    enum proxy_side_origin server_from;
    unsigned char via_phase;  /* via: PROXY_VIA_* of the current dial (0: none) */
    unsigned char via_result; /* via: the failed dial's enum proxy_via_result, for the 502 */
    struct event *timer;      /* handshake deadline, then idle check, then linger */
    struct tls_verify_result verify;
    struct proxy_relay up;   /* client -> server */
    struct proxy_relay down; /* server -> client */
    struct timeval started;
    struct timeval last_active;
    struct proxy_exchange *x;  /* protocol http: the requests in flight */
    struct proxy_identity *id; /* inbound http: the client's identity, from its first exchange */
    char remote[64];           /* client address "ip:port" */
    char *detail;              /* the reason in plain words for the close line / 502 body:
                                  PROXY_DETAIL_MAX bytes, taken when first set (conn_detail) */
    int owed_status;           /* ferry answered before a request was framed: the access-log
                                  line still to write, with this status (conn_request_owed) */
    uint64_t owed_bytes;       /* and the answer's body length */
    /*
     * Accounting of the current peer connection (outbound): up.bytes and down.bytes when it
     * was attached (proxy_exchange_can_retry()); when its dial began and when its handshake
     * passed our rules, not yet counted while the peer may still refuse us (TLS 1.3:
     * conn_count_handshake()).
     */
    uint64_t lent_up, lent_down;
    struct timeval dialed;
    struct timeval hs_done;
    bool hs_pending;
};

/* proxy.c (control) */
void proxy_gen_unref(struct proxy_gen *g);
void proxy_notify(const char *state);
unsigned proxy_conns_open(const struct proxy *p);

/* proxy_worker.c: a worker's loop, commands, accepting; what its connections report to */
struct proxy_worker *proxy_worker_new(struct proxy *p, unsigned id);
void proxy_worker_free(struct proxy_worker *w);
void *proxy_worker_main(void *arg);
void proxy_worker_post(struct proxy_worker *w, struct proxy_cmd *cmd, bool drain, bool stop);
struct evdns_base *proxy_worker_dns(struct proxy_worker *w);
void proxy_worker_conn_gone(struct proxy_worker *w);
void proxy_worker_listeners_update(struct proxy_worker *w);
void proxy_worker_conns_changed(struct proxy_worker *w, bool opened);
void proxy_worker_accept_error(struct proxy_worker *w, int err);
void proxy_worker_place(struct proxy_listener *l, evutil_socket_t fd, const struct sockaddr *sa,
                        int salen);
size_t proxy_worker_pick(const unsigned *load, size_t n, size_t self);
/* ... and the memory of connection sides (struct proxy_io), for connections and pools */
struct proxy_io *proxy_worker_side_new(struct proxy_worker *w);
void proxy_worker_side_free(struct proxy_worker *w, struct proxy_io *io);
void proxy_worker_reap(struct proxy_worker *w);

/* proxy_privs.c */
int proxy_privs_drop(const char *user, char *err, size_t errlen);

/* proxy_listener.c */
int proxy_listener_build(struct proxy_worker *w, struct proxy_gen *g,
                         const struct config_listener *cl, struct proxy_listener **out, char *err,
                         size_t errlen);
int proxy_listener_bind(struct proxy_listener **ls, size_t n, char *err, size_t errlen);
int proxy_listener_listen(struct proxy_listener *l);
void proxy_listener_adopt(struct proxy_listener *l, struct proxy_listener *old);
void proxy_listener_retire(struct proxy_listener *l);
void proxy_listener_free(struct proxy_listener *l);
evutil_socket_t proxy_listener_bind_addr(const struct config_addr *a, const char *label,
                                         bool reuseport, char *err, size_t errlen);
int proxy_listener_tls_tickets(const struct config_listener *cl, struct tls_tickets *tickets,
                               struct tls_ctx **out, char *err, size_t errlen);

/* proxy_conn.c */
void proxy_conn_accept(struct proxy_listener *l, evutil_socket_t fd, const struct sockaddr *sa,
                       int salen, bool counted);
void proxy_conn_drop(struct proxy_conn *c, enum proxy_close_reason reason);
void proxy_conn_drop_all(struct proxy_worker *w, enum proxy_close_reason reason);
void proxy_conn_drain_idle(struct proxy_worker *w);
void proxy_conn_log_flush(struct proxy_worker *w);
const char *proxy_conn_close_reason_str(enum proxy_close_reason reason);
const char *proxy_conn_pp_outcome_str(enum proxy_pp_outcome o);
const char *proxy_conn_via_result_str(enum proxy_via_result r);

void proxy_conn_answer(struct proxy_conn *c, enum proxy_close_reason reason, int status,
                       const char *phrase, const char *ctype, const char *body);
bool proxy_conn_act(struct proxy_conn *c, struct proxy_verdict v);
void proxy_conn_report(struct proxy_conn *c, struct proxy_verdict v);

/* proxy_linger.c */
void proxy_linger_close(struct proxy_worker *w, evutil_socket_t fd, uint64_t ms);
void proxy_linger_free_all(struct proxy_worker *w);

/* proxy_pool.c (outbound http: idle keep-alive connections to the peer) */
bool proxy_pool_enabled(const struct proxy_listener *l);
struct proxy_io *proxy_pool_take(struct proxy_listener *l, struct tls_verify_result *verify,
                                 const unsigned char *owner);
void proxy_pool_put(struct proxy_listener *l, struct proxy_io *io,
                    const struct tls_verify_result *verify, const unsigned char *owner);
void proxy_pool_flush(struct proxy_listener *l);
void proxy_pool_free(struct proxy_listener *l);

/* proxy_exchange.c (protocol http) */
struct proxy_identity *proxy_exchange_identity(const struct proxy_conn *c);
void proxy_exchange_identity_free(struct proxy_identity *id);
struct proxy_exchange *proxy_exchange_start(struct proxy_conn *c, proxy_exchange_report_fn report);
struct proxy_http *proxy_exchange_framer(const struct proxy_conn *c, enum proxy_http_kind kind);
const char *proxy_exchange_peer(const struct proxy_conn *c);
void proxy_exchange_free(struct proxy_conn *c);
void proxy_exchange_spares_free(struct proxy_worker *w);
struct proxy_verdict proxy_exchange_request_failed(struct proxy_conn *c,
                                                   enum proxy_http_result res);
struct proxy_verdict proxy_exchange_next(struct proxy_conn *c);
struct proxy_verdict proxy_exchange_decide(const struct proxy_exchange_facts *f);
const char *proxy_exchange_answer(const struct proxy_conn *c, int *status, const char **phrase);
const char *proxy_exchange_why(const struct proxy_conn *c);
void proxy_exchange_response_bytes(struct proxy_conn *c);
bool proxy_exchange_after_read(struct proxy_conn *c);
bool proxy_exchange_can_answer(const struct proxy_conn *c);
bool proxy_exchange_unasked(const struct proxy_conn *c);
bool proxy_exchange_idle(const struct proxy_conn *c);
bool proxy_exchange_server_closing(const struct proxy_conn *c);
bool proxy_exchange_requests_idle(const struct proxy_conn *c);
bool proxy_exchange_reusable(const struct proxy_conn *c);
bool proxy_exchange_can_retry(const struct proxy_conn *c);
const char *proxy_exchange_retry_heads(struct proxy_conn *c, size_t *len);
bool proxy_exchange_answered(struct proxy_conn *c, int status, uint64_t body_len);
void proxy_exchange_request_log(struct proxy_conn *c, const char *method, const char *target,
                                int status, uint64_t bytes_in, uint64_t bytes_out,
                                const struct timeval *start, const char *rule);
/* Bytes of the client's input read for the request line of an answer made before framing. */
#define PROXY_REQUEST_LINE_PEEK 512
bool proxy_exchange_request_line_parse(const char *buf, size_t n, char *method, size_t mlen,
                                       char *target, size_t tlen);

/* proxy_relay.c */
void proxy_relay_init(struct proxy_relay *r, struct proxy_io *src, struct proxy_io *dst,
                      bool dst_tls);
void proxy_relay_read_limit(struct proxy_io *io);
enum proxy_http_result proxy_relay_pump(struct proxy_relay *r);
void proxy_relay_src_eof(struct proxy_relay *r);
enum proxy_http_result proxy_relay_resume(struct proxy_relay *r);
void proxy_relay_dst_drained(struct proxy_relay *r);
void proxy_relay_quiet(struct proxy_relay *r);

#endif /* FERRY_PROXY_INTERNAL_H */
