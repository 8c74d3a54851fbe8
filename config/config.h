/*
 * config: YAML file -> validated, immutable struct config (CONTRACT.md §3).
 *
 * libyaml events are turned into a small node tree that keeps file:line:column, then a
 * schema walk checks every mapping against its list of known keys.  Every problem of the
 * file is collected (never just the first) as a struct config_error.  This layer depends
 * on libyaml only: it does not open sockets, load certificates or log.
 *
 * Ownership: a struct config returned by config_load*() is owned by the caller and
 * released with config_free().  It is never mutated after load; a reload builds a new one.
 */
#ifndef FERRY_CONFIG_H
#define FERRY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define CONFIG_DEFAULT_PATH_LOCAL  "./ferry.yaml"
#define CONFIG_DEFAULT_PATH_SYSTEM "/etc/ferry/ferry.yaml"

enum config_mode {
    CONFIG_MODE_INBOUND,
    CONFIG_MODE_OUTBOUND,
};

enum config_protocol {
    CONFIG_PROTOCOL_HTTP,
    CONFIG_PROTOCOL_TCP,
};

enum config_client_cert {
    CONFIG_CLIENT_CERT_REQUIRED,
    CONFIG_CLIENT_CERT_NONE,
};

enum config_log_level {
    CONFIG_LOG_ERROR,
    CONFIG_LOG_WARN,
    CONFIG_LOG_INFO,
    CONFIG_LOG_DEBUG,
};

enum config_log_format {
    CONFIG_LOG_TEXT,
    CONFIG_LOG_JSON,
};

/* Where a value came from, for messages like "ferry.yaml:12:9". line/col are 1-based. */
struct config_pos {
    unsigned line;
    unsigned col;
};

/*
 * A "host:port" address.  host is an IPv4 literal, an IPv6 literal (written "[::1]:80" in
 * YAML; stored here without the brackets) or, where allowed, a DNS name.
 */
/* The bytes of a host name or literal with its NUL (struct config_addr's host). */
#define CONFIG_HOST_MAX 256
/* A formatted address, config_value_addr_format()'s "[host]:port": host, brackets, ':', port. */
#define CONFIG_ADDR_STR_MAX 300

struct config_addr {
    char host[CONFIG_HOST_MAX];
    uint16_t port;
    bool is_ip; /* host is an IPv4 or IPv6 literal */
    bool is_ipv6;
};

/* A file named by the config, with the position of its YAML value. */
struct config_file {
    char *path; /* NULL when not set */
    struct config_pos pos;
};

/*
 * Defaults, each named once, next to the field it fills: config/ uses these names, and
 * tests/lint/man-defaults.sh checks that ferry.yaml(5) states the same value for each key.
 * Durations are in milliseconds (the _MS names); an enum default is the enum's constant.
 */

/* Defaults of struct config_tls: a tls: mapping with nothing set. */
#define CONFIG_DEFAULT_TLS_MIN_VERSION        0x0303 /* "1.2" (OpenSSL's TLS1_2_VERSION) */
#define CONFIG_DEFAULT_TLS_VERIFY_DEPTH       4
#define CONFIG_DEFAULT_TLS_CN_FALLBACK        false
#define CONFIG_DEFAULT_TLS_SESSION_RESUMPTION true

/* TLS settings: the top-level `tls:` defaults merged with a listener's `tls:` override. */
struct config_tls {
    struct config_file cert;
    struct config_file key;
    struct config_file key_passphrase_file;
    struct config_file ca;
    struct config_file crl;
    int min_version; /* 0x0303 for "1.2" or 0x0304 for "1.3" (OpenSSL's values) */
    int verify_depth;
    bool cn_fallback;
    bool session_resumption;
};

/* CONTRACT §7: what a matching access rule lets a peer do. */
enum config_allow {
    CONFIG_ALLOW_READ,  /* GET/HEAD (+ POST _all_docs, _bulk_get, _revs_diff, _changes, _find) */
    CONFIG_ALLOW_WRITE, /* read + PUT/POST/DELETE/COPY on documents */
    CONFIG_ALLOW_REPLICATE,      /* exactly the CouchDB replication protocol, as source or target */
    CONFIG_ALLOW_REPLICATE_FROM, /* the replication protocol, this node the source only */
    CONFIG_ALLOW_REPLICATE_TO,   /* the replication protocol, this node the target only */
    CONFIG_ALLOW_ALL,            /* everything, server-wide paths included */
};

/* One entry of a listener's `access:` list; the first rule whose peers match wins. */
struct config_access_rule {
    struct config_pos pos;
    char **peers; /* names, or "*.suffix" wildcards, matched like `allow` */
    size_t n_peers;
    enum config_allow allow;
    char **databases; /* globs ('*', '?', '**'); NULL when absent (= every database) */
    size_t n_databases;
};

enum config_client_cert_header {
    CONFIG_CLIENT_CERT_HEADER_XFCC,    /* X-Forwarded-Client-Cert, Envoy syntax (default) */
    CONFIG_CLIENT_CERT_HEADER_RFC9440, /* Client-Cert / Client-Cert-Chain */
    CONFIG_CLIENT_CERT_HEADER_NONE,
};

enum config_host_header {
    CONFIG_HOST_HEADER_KEEP, /* default: forward the client's Host */
    CONFIG_HOST_HEADER_PEER, /* rewrite Host to the peer's host:port */
};

enum config_hash {
    CONFIG_HASH_SHA256,
    CONFIG_HASH_SHA1,
};

/* Default of struct config_proxy_auth's hash. */
#define CONFIG_DEFAULT_PROXY_AUTH_HASH CONFIG_HASH_SHA256

/* CONTRACT §6: CouchDB proxy authentication, per inbound http listener. */
struct config_proxy_auth {
    bool enabled;
    struct config_file secret_file; /* must exist, be non-empty, not readable by group/other */
    enum config_hash hash;          /* CONFIG_DEFAULT_PROXY_AUTH_HASH */
    char **roles;                   /* sent comma-separated as X-Auth-CouchDB-Roles */
    size_t n_roles;
};

/*
 * `via:` of an outbound listener: reach the peer through an HTTP CONNECT proxy (an egress
 * proxy).  enabled when the mapping is present.
 */
struct config_via {
    bool enabled;
    struct config_addr proxy;     /* host:port; host may be a DNS name ("http://" stripped) */
    struct config_pos proxy_pos;  /* of its value, for errors found across listeners */
    struct config_file auth_file; /* "user:password" for Basic; path NULL when absent */
    uint64_t connect_timeout_ms;  /* proxy connect + its answer; 0 = limits.handshake_timeout */
};

/* An address block of proxy_protocol.from: "10.0.0.0/8", "2001:db8::/32" or one address. */
struct config_cidr {
    int family;             /* AF_INET or AF_INET6 */
    unsigned char addr[16]; /* network order; 4 bytes used for AF_INET; host bits zero */
    unsigned prefix;        /* 0..32 or 0..128 */
};

/* backend_proxy_protocol: what an inbound protocol: tcp listener sends its backend first. */
enum config_backend_pp { CONFIG_BACKEND_PP_NONE, CONFIG_BACKEND_PP_V2 };

/* Defaults of struct config_listener. */
#define CONFIG_DEFAULT_PROTOCOL               CONFIG_PROTOCOL_HTTP
#define CONFIG_DEFAULT_CLIENT_CERT            CONFIG_CLIENT_CERT_REQUIRED
#define CONFIG_DEFAULT_CLIENT_CERT_HEADER     CONFIG_CLIENT_CERT_HEADER_XFCC
#define CONFIG_DEFAULT_HOST_HEADER            CONFIG_HOST_HEADER_KEEP
#define CONFIG_DEFAULT_POOL_MAX_IDLE          64
#define CONFIG_DEFAULT_POOL_IDLE_TIMEOUT_MS   (UINT64_C(60) * 1000)
#define CONFIG_DEFAULT_BACKEND_PROXY_PROTOCOL CONFIG_BACKEND_PP_NONE

struct config_listener {
    char *name;
    struct config_pos pos; /* the listener's mapping */
    enum config_mode mode;
    struct config_addr listen;
    /* inbound only (required there) */
    struct config_addr backend;
    /* outbound only: peer is required (host may be a DNS name); connect is optional */
    struct config_addr peer;
    struct config_addr connect;
    bool has_connect;
    enum config_protocol protocol;
    enum config_client_cert client_cert; /* inbound */
    char **allow;                        /* inbound; NULL when absent (= any cert this CA issued) */
    size_t n_allow;
    struct config_tls tls; /* effective settings: defaults + this listener's override */
    /* protocol http only: */
    struct config_access_rule *access; /* inbound; NULL when absent (= every verified peer
                                          may do anything) */
    size_t n_access;
    enum config_client_cert_header client_cert_header; /* inbound */
    struct config_proxy_auth proxy_auth;               /* inbound */
    enum config_host_header host_header;               /* outbound */
    /*
     * protocol http: keep-alive connections to the other side, lent per request (pool:
     * { max_idle, idle_timeout }): mTLS to the peer (outbound), plain to the backend (inbound).
     * max_idle 0 turns pooling off, and it is 0 on protocol: tcp.
     */
    unsigned pool_max_idle;
    uint64_t pool_idle_timeout_ms;
    /*
     * inbound: proxy_protocol: { accept, from }.  With pp_accept, each connection starts with
     * a PROXY protocol v1 or v2 header, and only senders in pp_from (never empty then) may
     * connect; the header's address becomes the connection's remote.
     */
    bool pp_accept;
    struct config_cidr *pp_from;
    size_t n_pp_from;
    enum config_backend_pp backend_pp; /* inbound protocol: tcp only */
    struct config_via via;             /* outbound */
};

/* Defaults of struct config_limits. */
#define CONFIG_DEFAULT_MAX_CONNECTIONS      10000
#define CONFIG_DEFAULT_HANDSHAKE_TIMEOUT_MS (UINT64_C(10) * 1000)
#define CONFIG_DEFAULT_IDLE_TIMEOUT_MS      (UINT64_C(300) * 1000)
#define CONFIG_DEFAULT_HEADER_TIMEOUT_MS    (UINT64_C(15) * 1000)
#define CONFIG_DEFAULT_BACKEND_TIMEOUT_MS   (UINT64_C(60) * 1000)
#define CONFIG_DEFAULT_DRAIN_TIMEOUT_MS     (UINT64_C(30) * 1000)

struct config_limits {
    unsigned max_connections;
    uint64_t handshake_timeout_ms;
    uint64_t idle_timeout_ms;
    uint64_t header_timeout_ms;  /* protocol http: a request head must arrive */
    uint64_t backend_timeout_ms; /* protocol http: first response byte */
    uint64_t drain_timeout_ms;   /* SIGTERM: how long open connections may finish */
};

/* Bounds of admin.probe_interval. */
#define CONFIG_PROBE_INTERVAL_MIN_MS UINT64_C(100)
#define CONFIG_PROBE_INTERVAL_MAX_MS (UINT64_C(3600) * 1000)

/* Default of struct config_admin's probe_interval_ms. */
#define CONFIG_DEFAULT_PROBE_INTERVAL_MS (UINT64_C(5) * 1000)

/* `admin:` — the plain-HTTP admin listener (GET /livez, /readyz, /healthz, /metrics). */
struct config_admin {
    bool enabled;               /* admin.listen is set */
    struct config_addr listen;  /* IP literal and port, e.g. 127.0.0.1:9901 */
    uint64_t probe_interval_ms; /* readiness: TCP-probe an idle backend this often */
};

/* workers: auto, one event-loop thread per online core. */
#define CONFIG_WORKERS_AUTO 0

/* Defaults of struct config. */
#define CONFIG_DEFAULT_LOG_LEVEL  CONFIG_LOG_INFO
#define CONFIG_DEFAULT_LOG_FORMAT CONFIG_LOG_TEXT
#define CONFIG_DEFAULT_WORKERS    CONFIG_WORKERS_AUTO

struct config {
    char *path; /* the file it was loaded from, or the name given to config_load_string() */
    struct config_listener *listeners;
    size_t n_listeners;
    enum config_log_level log_level;
    enum config_log_format log_format;
    struct config_limits limits;
    struct config_admin admin;
    char *user; /* `user:`: drop privileges to this user after binding; NULL = stay */
    struct config_pos user_pos;
    unsigned workers; /* `workers:` event-loop threads; CONFIG_WORKERS_AUTO (0) = auto */
};

struct config_error {
    char *file;
    unsigned line; /* 0 when the error is about the file as a whole (unreadable, empty) */
    unsigned col;
    char *msg;
};

/* A list of errors; zero-initialise before the first use. */
struct config_errors {
    struct config_error *v;
    size_t n;
    /* The file's log.format when it was read although the config did not load (else text):
       what is logged about the failure follows it. */
    enum config_log_format log_format;
};

/*
 * config_load(path, errs):
 * Read and validate the YAML file ${path}.  Every key of CONTRACT.md §3 is checked: unknown
 * keys, wrong types, bad durations/addresses/enums, missing required keys, duplicate listener
 * names or listen ports, and files that do not exist or cannot be read are errors.  The
 * protocol-http keys of CONTRACT §6/§7 (access, couchdb_proxy_auth, client_cert_header on
 * inbound listeners; host_header on outbound ones) are errors on the other mode and on
 * protocol: tcp; couchdb_proxy_auth.secret_file must be a non-empty regular file that group
 * and others can neither read nor write (its content is not read here).  admin.listen is an
 * IP address and port that no listener's listen address may share; user is only checked for
 * its spelling (a letter or "_", then letters, digits, "_", "." and "-"), not looked up.  workers
 * is "auto" (0) or 1..256.  pool is an error on protocol: tcp.
 * Returns a new config, or NULL with every problem appended to ${errs} (which the caller
 * frees with config_errors_clear()).  Relative file paths in the config are resolved
 * against the directory of ${path}.
 */
struct config *config_load(const char *path, struct config_errors *errs);

/*
 * config_load_string(name, text, len, errs):
 * As config_load(), from memory; ${name} is used in error messages and relative file paths
 * are taken as they are (relative to the working directory).
 */
struct config *config_load_string(const char *name, const char *text, size_t len,
                                  struct config_errors *errs);

/*
 * config_free(cfg):
 * Release ${cfg} and everything it owns.  config_free(NULL) does nothing.
 */
void config_free(struct config *cfg);

/*
 * config_errors_clear(errs):
 * Free every error in ${errs} and reset it to empty.
 */
void config_errors_clear(struct config_errors *errs);

/*
 * config_error_format(err, buf, len):
 * Write "file:line:col: msg" (or "file: msg" when line is 0) into ${buf}.  Returns ${buf}.
 */
const char *config_error_format(const struct config_error *err, char *buf, size_t len);

/*
 * config_listener_find(cfg, name):
 * The listener called ${name}, or NULL.
 */
/*
 * config_value_cidr_parse(text, out, why, whylen):
 * Parse ${text}, an IPv4 or IPv6 address with an optional "/prefix", into ${out}.  Host bits
 * set below the prefix ("10.1.2.3/8") are an error: the writer meant another block.  An
 * IPv4-mapped block (::ffff:10.0.0.0/104) becomes its IPv4 block (10.0.0.0/8), which is how
 * senders are matched.  Returns 0, or -1 with the reason in ${why}.
 */
int config_value_cidr_parse(const char *text, struct config_cidr *out, char *why, size_t whylen);

/*
 * config_value_cidr_match(cidrs, n, sa):
 * True when the address of ${sa} (AF_INET or AF_INET6; an IPv4-mapped IPv6 address counts as
 * its IPv4 address) lies in one of the ${n} blocks ${cidrs}.
 */
bool config_value_cidr_match(const struct config_cidr *cidrs, size_t n, const struct sockaddr *sa);

const struct config_listener *config_listener_find(const struct config *cfg, const char *name);

/* ---- values (config_value.c); pure functions, exported for the other layers and tests ---- */

/*
 * config_value_parse_duration(text, ms):
 * Parse "250ms", "10s", "5m", "1h" (a non-negative integer and a unit; a bare "0" is allowed)
 * into milliseconds in ${ms}.  Returns 0, or -1 when ${text} is not a duration or overflows.
 */
int config_value_parse_duration(const char *text, uint64_t *ms);

/*
 * config_value_parse_addr(text, allow_name, addr, why, whylen):
 * Parse "1.2.3.4:80", "[::1]:80" or, when ${allow_name}, "host.example.org:80" into ${addr}.
 * The port must be 1-65535.  Returns 0, or -1 with the reason in ${why}.
 */
int config_value_parse_addr(const char *text, bool allow_name, struct config_addr *addr, char *why,
                            size_t whylen);

/*
 * config_value_addr_format(addr, buf, len):
 * "host:port", with brackets around IPv6 hosts.  Returns ${buf}.
 */
const char *config_value_addr_format(const struct config_addr *addr, char *buf, size_t len);

/*
 * config_check_spiffe_problem(s, pattern):
 * Why ${s} is not a SPIFFE ID (a pattern when ${pattern}: "*" may then be the whole last path
 * segment), in plain words, or NULL when it is one: "spiffe://" + a lower-case trust domain of
 * [a-z0-9._-] without an empty label ("a..b", ".a", "a.") + one or more "/segment" of
 * [A-Za-z0-9._-] (a trust domain alone names no workload), no "." or ".." segment, no query,
 * fragment, port, user info, percent-encoding or trailing '/', at most 2048 bytes.
 */
const char *config_check_spiffe_problem(const char *s, bool pattern);

/* String names of the enums, as written in YAML ("inbound", "http", "warn", ...). */
const char *config_value_mode_str(enum config_mode mode);
const char *config_value_protocol_str(enum config_protocol protocol);
const char *config_value_log_level_str(enum config_log_level level);

#endif /* FERRY_CONFIG_H */
