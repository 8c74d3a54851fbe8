/*
 * config_check: the schema walk.  Each mapping is checked against its list of known keys
 * (h2o's parse_mapping): unknown keys, keys of a later release, duplicates and missing required
 * keys are errors, then each value is checked for its type and converted.  Every error is
 * collected; the walk fails at the end when there was any.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_internal.h"

#include "config.h"

#define KEY_REQUIRED 0x1u /* an error when absent */
#define KEY_LATER    0x2u /* a later release brings it: "not supported yet" */

/* One key a mapping may hold. */
struct key_spec {
    const char *name;
    unsigned flags;
};

/* The walk's state. */
struct check {
    const char *file;
    const char *basedir; /* NULL: relative paths are taken as they are */
    struct config_errors *errs;
    size_t n_errors; /* errors appended by this walk */
};

/* The keys of a tls: mapping, in the order of the schema; bit i of tls_set.set is key i. */
enum tls_key {
    TLS_CERT,
    TLS_KEY,
    TLS_KEY_PASSPHRASE_FILE,
    TLS_CA,
    TLS_CRL,
    TLS_MIN_VERSION,
    TLS_VERIFY_DEPTH,
    TLS_CN_FALLBACK,
    TLS_SESSION_RESUMPTION,
    TLS_NKEYS
};

static const struct key_spec tls_keys[TLS_NKEYS] = {
    {"cert", 0},         {"key", 0},         {"key_passphrase_file", 0},
    {"ca", 0},           {"crl", 0},         {"min_version", 0},
    {"verify_depth", 0}, {"cn_fallback", 0}, {"session_resumption", 0},
};

/* A tls: mapping as written: the values of the keys present (bit set in ${set}). */
struct tls_set {
    struct config_tls v; /* owns its paths */
    unsigned set;
};

/* What the cross-listener checks need to know about one listener. */
struct listener_aux {
    char label[160]; /* "listeners[1] (to-node2)" */
    const struct config_node *name_node;
    const struct config_node *listen_node;
    bool mode_ok;
    bool listen_ok;
    struct tls_set tls;
};

/* The keys of a listener, in the order of the schema; index into listener_check's keys and vals. */
enum listener_key {
    L_NAME,
    L_MODE,
    L_LISTEN,
    L_BACKEND,
    L_PEER,
    L_CONNECT,
    L_PROTOCOL,
    L_CLIENT_CERT,
    L_ALLOW,
    L_TLS,
    L_POOL,
    L_ACCESS,
    L_COUCHDB_PROXY_AUTH,
    L_CLIENT_CERT_HEADER,
    L_HOST_HEADER,
    L_PROXY_PROTOCOL,
    L_BACKEND_PROXY_PROTOCOL,
    L_VIA,
    L_NKEYS
};

static const struct key_spec listener_keys[L_NKEYS] = {
    {"name", KEY_REQUIRED},
    {"mode", KEY_REQUIRED},
    {"listen", KEY_REQUIRED},
    {"backend", 0},
    {"peer", 0},
    {"connect", 0},
    {"protocol", 0},
    {"client_cert", 0},
    {"allow", 0},
    {"tls", 0},
    {"pool", 0},
    {"access", 0},
    {"couchdb_proxy_auth", 0},
    {"client_cert_header", 0},
    {"host_header", 0},
    {"proxy_protocol", 0},
    {"backend_proxy_protocol", 0},
    {"via", 0},
};

/* A listener being checked: what its key rules and value parsers share. */
struct listener_check {
    const char *lp;  /* "listeners[0]" */
    char where[192]; /* "in listeners[0] (to-node2)" */
    struct config_listener *l;
    struct listener_aux *aux;
    const struct config_node *keys[L_NKEYS]; /* as written (check_keys()) */
    const struct config_node *vals[L_NKEYS]; /* NULL when absent or refused */
    bool protocol_ok;                        /* protocol: absent (http) or good */
};

static void ck_err(struct check *ck, const struct config_node *at, const char *fmt, ...)
    CONFIG_PRINTF(3, 4);

/* Append an error at ${at}. */
static void
ck_err(struct check *ck, const struct config_node *at, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    config_errors_addv(ck->errs, ck->file, at->pos.line, at->pos.col, fmt, ap);
    va_end(ap);
    ck->n_errors++;
}

/* Describe ${n} for "got ...": a mapping, a sequence, nothing, or its text quoted. */
static const char *
what(const struct config_node *n, char *buf, size_t len)
{
    const unsigned char *p;
    size_t o = 0;

    if (n->type == CONFIG_NODE_MAPPING) {
        return ("a mapping");
    }
    if (n->type == CONFIG_NODE_SEQUENCE) {
        return ("a sequence");
    }
    if (n->type != CONFIG_NODE_SCALAR || config_node_is_null(n)) {
        return ("nothing");
    }

    /* Quote the text, escaping what a terminal or a log line should not see raw. */
    buf[o++] = '"';
    for (p = (const unsigned char *)n->text; *p != '\0' && o + 8 < len; p++) {
        if (o > 80 && p[1] != '\0') {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (*p == '"' || *p == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)*p;
        } else if (*p < 0x20 || *p == 0x7f) {
            o += (size_t)snprintf(buf + o, len - o, "\\x%02x", *p);
        } else {
            buf[o++] = (char)*p;
        }
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return (buf);
}

/* True when ${n} is a scalar with text (not null); else an error "expected ${expected}". */
static bool
want_scalar(struct check *ck, const struct config_node *n, const char *path, const char *expected)
{
    char got[128];

    if (n->type == CONFIG_NODE_INVALID) {
        return (false);
    }
    if (n->type == CONFIG_NODE_SCALAR && !config_node_is_null(n)) {
        return (true);
    }
    ck_err(ck, n, "%s: expected %s, got %s", path, expected, what(n, got, sizeof(got)));
    return (false);
}

/* True when ${n} is a node of ${type}; else an error. */
static bool
want_type(struct check *ck, const struct config_node *n, const char *path,
          enum config_node_type type)
{
    char got[128];

    if (n->type == CONFIG_NODE_INVALID) {
        return (false);
    }
    if (n->type == type) {
        return (true);
    }
    ck_err(ck, n, "%s: expected %s, got %s", path,
           type == CONFIG_NODE_MAPPING ? "a mapping" : "a sequence", what(n, got, sizeof(got)));
    return (false);
}

/* The value of ${key} in mapping ${map} when it is a scalar, else NULL. */
static const char *
map_scalar(const struct config_node *map, const char *key)
{
    size_t i;

    for (i = 0; i + 1 < map->n_items; i += 2) {
        const struct config_node *k = map->items[i];
        const struct config_node *v = map->items[i + 1];

        if (k->type == CONFIG_NODE_SCALAR && strcmp(k->text, key) == 0 &&
            v->type == CONFIG_NODE_SCALAR && !config_node_is_null(v)) {
            return (v->text);
        }
    }
    return (NULL);
}

/*
 * Check the keys of mapping ${map} (called ${where} in messages: "in tls", "at the top
 * level") against ${specs}.  ${keys}[i] and ${vals}[i] receive the key and value nodes of
 * specs[i] (NULL when absent or refused).
 */
static void
check_keys(struct check *ck, const struct config_node *map, const char *where,
           const struct key_spec *specs, size_t n_specs, const struct config_node **keys,
           const struct config_node **vals)
{
    char expected[512];
    char got[128];
    size_t o = 0;
    size_t i;
    size_t s;

    for (s = 0; s < n_specs; s++) {
        keys[s] = NULL;
        vals[s] = NULL;
    }

    /* "name, mode, listen, ...": the keys of this release, for unknown-key messages. */
    expected[0] = '\0';
    for (s = 0; s < n_specs; s++) {
        if (specs[s].flags & KEY_LATER) {
            continue;
        }
        o += (size_t)snprintf(expected + o, sizeof(expected) - o, "%s%s", o > 0 ? ", " : "",
                              specs[s].name);
        if (o >= sizeof(expected)) {
            break;
        }
    }

    for (i = 0; i + 1 < map->n_items; i += 2) {
        const struct config_node *k = map->items[i];
        const struct config_node *v = map->items[i + 1];

        if (k->type == CONFIG_NODE_INVALID) {
            continue;
        }
        if (k->type != CONFIG_NODE_SCALAR || config_node_is_null(k)) {
            ck_err(ck, k, "expected a key name %s, got %s", where, what(k, got, sizeof(got)));
            continue;
        }
        for (s = 0; s < n_specs; s++) {
            if (strcmp(k->text, specs[s].name) == 0) {
                break;
            }
        }
        if (s == n_specs) {
            ck_err(ck, k, "unknown key %s %s; expected one of: %s", what(k, got, sizeof(got)),
                   where, expected);
            continue;
        }
        if (keys[s] != NULL) {
            ck_err(ck, k, "duplicate key \"%s\" %s; the first is at %u:%u", specs[s].name, where,
                   keys[s]->pos.line, keys[s]->pos.col);
            continue;
        }
        keys[s] = k;
        if (specs[s].flags & KEY_LATER) {
            ck_err(ck, k, "\"%s\" is not supported yet in this release", specs[s].name);
            continue;
        }
        vals[s] = v;
    }

    for (s = 0; s < n_specs; s++) {
        if ((specs[s].flags & KEY_REQUIRED) && keys[s] == NULL) {
            ck_err(ck, map, "missing required key \"%s\" %s", specs[s].name, where);
        }
    }
}

/* A string value: copy it into ${out} (replacing what was there).  Returns 0 or -1. */
static int
get_string(struct check *ck, const struct config_node *n, const char *path, char **out)
{
    char *s;

    if (!want_scalar(ck, n, path, "a string")) {
        return (-1);
    }
    if ((s = strdup(n->text)) == NULL) {
        ck_err(ck, n, "out of memory");
        return (-1);
    }
    free(*out);
    *out = s;
    return (0);
}

/* A boolean: true or false, nothing else.  Returns 0 or -1. */
static int
get_bool(struct check *ck, const struct config_node *n, const char *path, bool *out)
{
    char got[128];

    if (!want_scalar(ck, n, path, "true or false")) {
        return (-1);
    }
    if (strcmp(n->text, "true") == 0) {
        *out = true;
    } else if (strcmp(n->text, "false") == 0) {
        *out = false;
    } else {
        ck_err(ck, n, "%s: expected true or false, got %s", path, what(n, got, sizeof(got)));
        return (-1);
    }
    return (0);
}

/* A decimal integer from ${lo} to ${hi}.  Returns 0 or -1. */
static int
get_int(struct check *ck, const struct config_node *n, const char *path, unsigned long lo,
        unsigned long hi, unsigned long *out)
{
    char got[128];
    unsigned long v = 0;
    const char *p;

    if (!want_scalar(ck, n, path, "an integer")) {
        return (-1);
    }
    for (p = n->text; *p >= '0' && *p <= '9'; p++) {
        if (v > hi) {
            break; /* already out of range: stop before it can overflow */
        }
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (p == n->text || (*p != '\0' && (*p < '0' || *p > '9'))) {
        ck_err(ck, n, "%s: expected an integer from %lu to %lu, got %s", path, lo, hi,
               what(n, got, sizeof(got)));
        return (-1);
    }
    if (*p != '\0' || v < lo || v > hi) {
        ck_err(ck, n, "%s: expected an integer from %lu to %lu, got %s", path, lo, hi,
               what(n, got, sizeof(got)));
        return (-1);
    }
    *out = v;
    return (0);
}

/* A duration greater than zero, in milliseconds.  Returns 0 or -1. */
static int
get_duration(struct check *ck, const struct config_node *n, const char *path, uint64_t *ms)
{
    char got[128];
    uint64_t v;

    if (!want_scalar(ck, n, path, "a duration like 10s or 500ms")) {
        return (-1);
    }
    if (config_value_parse_duration(n->text, &v) != 0) {
        ck_err(ck, n, "%s: expected a duration like 10s or 500ms, got %s", path,
               what(n, got, sizeof(got)));
        return (-1);
    }
    if (v == 0) {
        ck_err(ck, n, "%s: expected a duration greater than 0, got %s", path,
               what(n, got, sizeof(got)));
        return (-1);
    }
    *ms = v;
    return (0);
}

/*
 * One of ${names} (${n_names} of them); its index in ${out}.  ${expected} reads like
 * "inbound or outbound".  Returns 0 or -1.
 */
static int
get_enum(struct check *ck, const struct config_node *n, const char *path, const char *const *names,
         size_t n_names, const char *expected, int *out)
{
    char got[128];
    size_t i;

    if (!want_scalar(ck, n, path, expected)) {
        return (-1);
    }
    for (i = 0; i < n_names; i++) {
        if (strcmp(n->text, names[i]) == 0) {
            *out = (int)i;
            return (0);
        }
    }
    ck_err(ck, n, "%s: expected %s, got %s", path, expected, what(n, got, sizeof(got)));
    return (-1);
}

/* A host:port address (a host name only when ${allow_name}).  Returns 0 or -1. */
static int
get_addr(struct check *ck, const struct config_node *n, const char *path, bool allow_name,
         struct config_addr *out)
{
    char why[512];

    if (!want_scalar(ck, n, path,
                     allow_name ? "host:port" : "an IP address and port like 127.0.0.1:7001")) {
        return (-1);
    }
    if (config_value_parse_addr(n->text, allow_name, out, why, sizeof(why)) != 0) {
        ck_err(ck, n, "%s: %s", path, why);
        return (-1);
    }
    return (0);
}

/* Thread-safe strerror(). */
static const char *
errstr(int e, char *buf, size_t len)
{
    if (strerror_r(e, buf, len) != 0) {
        snprintf(buf, len, "error %d", e);
    }
    return (buf);
}

/*
 * ${rel} joined to ${dir}, without "." components or doubled slashes.  Returns a new string
 * or NULL when out of memory.
 */
static char *
join_path(const char *dir, const char *rel)
{
    size_t dl = strlen(dir);
    size_t rl = strlen(rel);
    char *s;
    char *out;
    const char *p;
    char *o;

    if ((s = malloc(dl + 1 + rl + 1)) == NULL) {
        return (NULL);
    }
    memcpy(s, dir, dl);
    s[dl] = '/';
    memcpy(s + dl + 1, rel, rl + 1);

    /* Copy component by component, dropping "." and empty ones. */
    out = s;
    o = s;
    p = s;
    if (*p == '/') {
        *o++ = *p++;
    }
    while (*p != '\0') {
        const char *end = strchr(p, '/');
        size_t cl = end == NULL ? strlen(p) : (size_t)(end - p);

        if (cl == 0 || (cl == 1 && p[0] == '.')) {
            p += cl;
        } else {
            if (o > out && o[-1] != '/') {
                *o++ = '/';
            }
            memmove(o, p, cl);
            o += cl;
            p += cl;
        }
        if (*p == '/') {
            p++;
        }
    }
    *o = '\0';
    if (o == out) {
        out[0] = '.';
        out[1] = '\0';
    }
    return (out);
}

/*
 * A file path: resolve it against the config's directory and check that it names a readable
 * file.  Errors are positioned at the value.  Returns 0 or -1.
 */
static int
get_file(struct check *ck, const struct config_node *n, const char *path, struct config_file *out)
{
    struct stat st;
    char ebuf[128];
    char *resolved;

    if (!want_scalar(ck, n, path, "a file path")) {
        return (-1);
    }
    if (ck->basedir != NULL && n->text[0] != '/') {
        resolved = join_path(ck->basedir, n->text);
    } else {
        resolved = strdup(n->text);
    }
    if (resolved == NULL) {
        ck_err(ck, n, "out of memory");
        return (-1);
    }
    free(out->path);
    out->path = resolved;
    out->pos = n->pos;

    if (stat(resolved, &st) != 0 || access(resolved, R_OK) != 0) {
        ck_err(ck, n, "%s: cannot read %s: %s", path, resolved, errstr(errno, ebuf, sizeof(ebuf)));
        return (-1);
    }
    if (S_ISDIR(st.st_mode)) {
        ck_err(ck, n, "%s: expected a file, got the directory %s", path, resolved);
        return (-1);
    }
    /* stat() followed any symlink: a FIFO or device would block whoever opens it. */
    if (!S_ISREG(st.st_mode)) {
        ck_err(ck, n, "%s: cannot read %s: not a regular file (%s)", path, resolved,
               config_file_kind((unsigned)st.st_mode));
        return (-1);
    }
    return (0);
}

/*
 * The secret_file of couchdb_proxy_auth (CONTRACT §6): a readable, non-empty regular file
 * (stat() follows symlinks: a Kubernetes secret volume is made of them).  Its permissions are
 * not judged here: the rule shared with keys (others: error; group: warning) is a finding of
 * certs/, which `ferry check` and `ferry run` both apply.  Only its metadata is looked at: the
 * secret itself never reaches a message.  Returns 0 or -1.
 */
static int
get_secret_file(struct check *ck, const struct config_node *n, const char *path,
                struct config_file *out)
{
    struct stat st;
    char ebuf[128];

    /* get_file() refused anything but a regular file (symlinks followed). */
    if (get_file(ck, n, path, out) != 0) {
        return (-1);
    }
    if (stat(out->path, &st) != 0) {
        ck_err(ck, n, "%s: cannot read %s: %s", path, out->path, errstr(errno, ebuf, sizeof(ebuf)));
        return (-1);
    }
    if (st.st_size == 0) {
        ck_err(ck, n, "%s: secret file %s is empty; write CouchDB's [chttpd_auth] secret in it",
               path, out->path);
        return (-1);
    }
    return (0);
}

/* Defaults of a tls: mapping with nothing set. */
static void
tls_init(struct tls_set *t)
{
    memset(t, 0, sizeof(*t));
    t->v.min_version = CONFIG_DEFAULT_TLS_MIN_VERSION;
    t->v.verify_depth = CONFIG_DEFAULT_TLS_VERIFY_DEPTH;
    t->v.cn_fallback = CONFIG_DEFAULT_TLS_CN_FALLBACK;
    t->v.session_resumption = CONFIG_DEFAULT_TLS_SESSION_RESUMPTION;
}

static void
tls_free(struct tls_set *t)
{
    free(t->v.cert.path);
    free(t->v.key.path);
    free(t->v.key_passphrase_file.path);
    free(t->v.ca.path);
    free(t->v.crl.path);
    memset(t, 0, sizeof(*t));
}

/* The struct config_file of ${t} for file key ${k}. */
static struct config_file *
tls_file(struct config_tls *t, enum tls_key k)
{
    switch (k) {
    case TLS_CERT:
        return (&t->cert);
    case TLS_KEY:
        return (&t->key);
    case TLS_KEY_PASSPHRASE_FILE:
        return (&t->key_passphrase_file);
    case TLS_CA:
        return (&t->ca);
    case TLS_CRL:
        return (&t->crl);
    case TLS_MIN_VERSION:
    case TLS_VERIFY_DEPTH:
    case TLS_CN_FALLBACK:
    case TLS_SESSION_RESUMPTION:
    case TLS_NKEYS:
        break;
    }
    return (NULL);
}

/* Check a tls: mapping ${n} at ${path} ("tls" or "listeners[0].tls") into ${t}. */
static void
check_tls(struct check *ck, const struct config_node *n, const char *path, struct tls_set *t)
{
    const struct config_node *keys[TLS_NKEYS];
    const struct config_node *vals[TLS_NKEYS];
    char where[160];
    char kp[192];
    char got[128];
    unsigned long depth;
    size_t k;

    if (!want_type(ck, n, path, CONFIG_NODE_MAPPING)) {
        /* Count every key as written, so "no tls.cert" does not pile onto this error. */
        t->set = (1u << TLS_NKEYS) - 1;
        return;
    }
    snprintf(where, sizeof(where), "in %s", path);
    check_keys(ck, n, where, tls_keys, TLS_NKEYS, keys, vals);

    for (k = 0; k < TLS_NKEYS; k++) {
        const struct config_node *v = vals[k];

        if (keys[k] != NULL) {
            t->set |= 1u << k;
        }
        if (v == NULL) {
            continue;
        }
        snprintf(kp, sizeof(kp), "%s.%s", path, tls_keys[k].name);
        switch ((enum tls_key)k) {
        case TLS_CERT:
        case TLS_KEY:
        case TLS_KEY_PASSPHRASE_FILE:
        case TLS_CA:
        case TLS_CRL:
            get_file(ck, v, kp, tls_file(&t->v, (enum tls_key)k));
            break;
        case TLS_MIN_VERSION:
            /* "1.2" quoted or not: a plain 1.2 is the same text to libyaml. */
            if (!want_scalar(ck, v, kp, "\"1.2\" or \"1.3\"")) {
                break;
            }
            if (strcmp(v->text, "1.2") == 0) {
                t->v.min_version = 0x0303;
            } else if (strcmp(v->text, "1.3") == 0) {
                t->v.min_version = 0x0304;
            } else {
                ck_err(ck, v, "%s: expected \"1.2\" or \"1.3\", got %s", kp,
                       what(v, got, sizeof(got)));
            }
            break;
        case TLS_VERIFY_DEPTH:
            if (get_int(ck, v, kp, 1, 32, &depth) == 0) {
                t->v.verify_depth = (int)depth;
            }
            break;
        case TLS_CN_FALLBACK:
            get_bool(ck, v, kp, &t->v.cn_fallback);
            break;
        case TLS_SESSION_RESUMPTION:
            get_bool(ck, v, kp, &t->v.session_resumption);
            break;
        case TLS_NKEYS:
            break;
        }
    }
}

/* Check the log: mapping. */
static void
check_log(struct check *ck, const struct config_node *n, struct config *cfg)
{
    static const struct key_spec specs[] = {{"level", 0}, {"format", 0}};
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    static const char *const formats[] = {"text", "json"};
    const struct config_node *keys[2];
    const struct config_node *vals[2];
    int v;

    if (!want_type(ck, n, "log", CONFIG_NODE_MAPPING)) {
        return;
    }
    check_keys(ck, n, "in log", specs, 2, keys, vals);
    if (vals[0] != NULL &&
        get_enum(ck, vals[0], "log.level", levels, 4, "error, warn, info or debug", &v) == 0) {
        cfg->log_level = (enum config_log_level)v;
    }
    if (vals[1] != NULL &&
        get_enum(ck, vals[1], "log.format", formats, 2, "text or json", &v) == 0) {
        cfg->log_format = (enum config_log_format)v;
    }
}

/* Check the limits: mapping. */
static void
check_limits(struct check *ck, const struct config_node *n, struct config *cfg)
{
    static const struct key_spec specs[] = {
        {"max_connections", 0}, {"handshake_timeout", 0}, {"idle_timeout", 0},
        {"header_timeout", 0},  {"backend_timeout", 0},   {"drain_timeout", 0},
    };
    const struct config_node *keys[6];
    const struct config_node *vals[6];
    unsigned long v;

    if (!want_type(ck, n, "limits", CONFIG_NODE_MAPPING)) {
        return;
    }
    check_keys(ck, n, "in limits", specs, 6, keys, vals);
    if (vals[0] != NULL && get_int(ck, vals[0], "limits.max_connections", 1, 1000000, &v) == 0) {
        cfg->limits.max_connections = (unsigned)v;
    }
    if (vals[1] != NULL) {
        get_duration(ck, vals[1], "limits.handshake_timeout", &cfg->limits.handshake_timeout_ms);
    }
    if (vals[2] != NULL) {
        get_duration(ck, vals[2], "limits.idle_timeout", &cfg->limits.idle_timeout_ms);
    }
    if (vals[3] != NULL) {
        get_duration(ck, vals[3], "limits.header_timeout", &cfg->limits.header_timeout_ms);
    }
    if (vals[4] != NULL) {
        get_duration(ck, vals[4], "limits.backend_timeout", &cfg->limits.backend_timeout_ms);
    }
    if (vals[5] != NULL) {
        get_duration(ck, vals[5], "limits.drain_timeout", &cfg->limits.drain_timeout_ms);
    }
}

/*
 * Check the admin: mapping into cfg->admin.  ${listen_node} receives the node of a good
 * admin.listen, for the check against the listeners' addresses.
 */
static void
check_admin(struct check *ck, const struct config_node *n, struct config *cfg,
            const struct config_node **listen_node)
{
    static const struct key_spec specs[] = {{"listen", KEY_REQUIRED}, {"probe_interval", 0}};
    const struct config_node *keys[2];
    const struct config_node *vals[2];
    uint64_t ms;
    char got[128];

    if (!want_type(ck, n, "admin", CONFIG_NODE_MAPPING)) {
        return;
    }
    check_keys(ck, n, "in admin", specs, 2, keys, vals);
    if (vals[0] != NULL && get_addr(ck, vals[0], "admin.listen", false, &cfg->admin.listen) == 0) {
        cfg->admin.enabled = true;
        *listen_node = vals[0];
    }
    if (vals[1] != NULL && get_duration(ck, vals[1], "admin.probe_interval", &ms) == 0) {
        /* Under 100ms a probe is load, not a check; over an hour readiness means nothing. */
        if (ms < CONFIG_PROBE_INTERVAL_MIN_MS || ms > CONFIG_PROBE_INTERVAL_MAX_MS) {
            ck_err(ck, vals[1],
                   "admin.probe_interval: expected a duration from 100ms to 1h, got %s",
                   what(vals[1], got, sizeof(got)));
        } else {
            cfg->admin.probe_interval_ms = ms;
        }
    }
}

/* True when ${s} is a user name: a letter or "_", then letters, digits, "_", "." and "-". */
static bool
valid_user(const char *s)
{
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_')) {
        return (false);
    }
    for (s++; *s != '\0'; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '.' || *s == '-')) {
            return (false);
        }
    }
    return (true);
}

/*
 * Check user: into cfg->user.  Only its spelling: whether the user exists is the daemon's
 * question when it starts (it drops privileges then, and says so when it cannot).
 */
static void
check_user(struct check *ck, const struct config_node *n, struct config *cfg)
{
    static const char expected[] =
        "a user name (a letter or \"_\", then letters, digits, \"_\", \".\" and \"-\")";
    char got[128];

    if (!want_scalar(ck, n, "user", expected)) {
        return;
    }
    if (!valid_user(n->text)) {
        ck_err(ck, n, "user: expected %s, got %s", expected, what(n, got, sizeof(got)));
        return;
    }
    if (get_string(ck, n, "user", &cfg->user) == 0) {
        cfg->user_pos = n->pos;
    }
}

/* The most worker threads a config may ask for. */
#define WORKERS_MAX 256

/*
 * Check workers: into cfg->workers: "auto" (0: one per online core, decided by the daemon)
 * or a number from 1 to WORKERS_MAX.
 */
static void
check_workers(struct check *ck, const struct config_node *n, struct config *cfg)
{
    unsigned long v;

    if (!want_scalar(ck, n, "workers", "\"auto\" or an integer from 1 to 256")) {
        return;
    }
    if (strcmp(n->text, "auto") == 0) {
        cfg->workers = CONFIG_WORKERS_AUTO;
        return;
    }
    if (n->text[0] < '0' || n->text[0] > '9') {
        char got[128];

        ck_err(ck, n, "workers: expected \"auto\" or an integer from 1 to %d, got %s", WORKERS_MAX,
               what(n, got, sizeof(got)));
        return;
    }
    if (get_int(ck, n, "workers", 1, WORKERS_MAX, &v) == 0) {
        cfg->workers = (unsigned)v;
    }
}

/* True when ${s} is a listener name: [A-Za-z0-9_.-]+. */
static bool
valid_name(const char *s)
{
    if (*s == '\0') {
        return (false);
    }
    for (; *s != '\0'; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '.' || *s == '-')) {
            return (false);
        }
    }
    return (true);
}

/* True when ${s} is an allow: entry: a host name, "*." and a host name, or an IP literal. */
static bool
valid_allow(const char *s)
{
    unsigned char bytes[16];
    int family;

    if (config_value_ip_parse(s, bytes, &family) == 0) {
        return (true);
    }
    if (s[0] == '*' && s[1] == '.') {
        return (config_value_name_is_dns(s + 2));
    }
    return (config_value_name_is_dns(s));
}

/* The longest SPIFFE ID (SPIFFE ID standard §2.3). */
#define SPIFFE_ID_MAX 2048

/* Is ${c} one of the bytes of a SPIFFE path segment: [A-Za-z0-9._-]? */
static bool
spiffe_path_char(char c)
{
    return ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '.' || c == '-' || c == '_');
}

/* Does [s, end) hold ".."? */
static bool
spiffe_double_dot(const char *s, const char *end)
{
    for (; s + 1 < end; s++) {
        if (s[0] == '.' && s[1] == '.') {
            return (true);
        }
    }
    return (false);
}

/*
 * config_check_spiffe_problem(s, pattern):
 * Why ${s} is not a SPIFFE ID (a pattern when ${pattern}: "*" may then be the whole last path
 * segment), or NULL when it is one: "spiffe://" + a lower-case trust domain of [a-z0-9._-]
 * without an empty label + one or more "/segment" of [A-Za-z0-9._-] (a trust domain alone
 * names no workload), no "." or ".." segment, no query, fragment,
 * port, userinfo, percent-encoding or trailing '/', at most SPIFFE_ID_MAX bytes.
 */
const char *
config_check_spiffe_problem(const char *s, bool pattern)
{
    const char *p, *seg;
    size_t n;

    if (strncmp(s, "spiffe://", 9) != 0) {
        return ("the scheme must be spiffe, in lower case (spiffe://trust-domain/path)");
    }
    if (strlen(s) > SPIFFE_ID_MAX) {
        return ("a SPIFFE ID is at most 2048 bytes");
    }
    if (strpbrk(s, "?#") != NULL) {
        return ("a SPIFFE ID has no query (?) or fragment (#)");
    }
    if (strchr(s, '%') != NULL) {
        return ("a SPIFFE ID is compared byte for byte: no percent-encoding (%)");
    }
    for (p = s + 9; *p != '\0' && *p != '/'; p++) {
        if (*p == '@') {
            return ("a SPIFFE ID has no user info (@) in its trust domain");
        }
        if (*p == ':') {
            return ("a SPIFFE ID has no port in its trust domain");
        }
        if (*p >= 'A' && *p <= 'Z') {
            return ("the trust domain must be lower case");
        }
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' ||
              *p == '_')) {
            return ("the trust domain may hold only a-z, 0-9, '.', '-' and '_'");
        }
    }
    if (p == s + 9) {
        return ("the trust domain is empty");
    }
    if (s[9] == '.' || p[-1] == '.' || spiffe_double_dot(s + 9, p)) {
        return ("the trust domain has an empty label (a leading, trailing or doubled '.')");
    }
    if (*p == '\0') {
        return ("a trust domain alone names no workload: add a path (spiffe://trust-domain/path)");
    }
    while (*p == '/') {
        seg = ++p;
        while (*p != '\0' && *p != '/') {
            p++;
        }
        n = (size_t)(p - seg);
        if (n == 0) {
            return (*p == '\0' ? "a SPIFFE ID does not end in '/'"
                               : "a SPIFFE ID has no empty path segment (//)");
        }
        if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.')) {
            return ("a SPIFFE ID has no \".\" or \"..\" path segment");
        }
        if (n == 1 && seg[0] == '*' && pattern) {
            if (*p != '\0') {
                return ("'*' may stand only for the whole last path segment (.../ns/db/*)");
            }
            continue;
        }
        for (; seg < p; seg++) {
            if (*seg == '*') {
                return (pattern ? "'*' may stand only for the whole last path segment (.../ns/db/*)"
                                : "a SPIFFE ID names one workload: no '*' (patterns are for allow: "
                                  "and peers:)");
            }
            if (!spiffe_path_char(*seg)) {
                return ("a path segment may hold only A-Z, a-z, 0-9, '.', '-' and '_'");
            }
        }
    }
    return (NULL);
}

/*
 * Write "${path}[${i}]", the key path of item ${i} of a sequence, into ${buf}.  Key paths are
 * made of the schema's names and indexes, far below the buffers' sizes; were one cut, it would
 * end in "..." rather than pass for another key.
 */
static void
item_path(char *buf, size_t len, const char *path, size_t i)
{
    int n = snprintf(buf, len, "%s[%zu]", path, i);

    if (n >= 0 && (size_t)n >= len && len > 3) {
        memcpy(buf + len - 4, "...", 4);
    }
}

/*
 * A sequence of peer names as in allow: (host names, "*.domain" wildcards, IP literals,
 * SPIFFE IDs "spiffe://td/path", or with "*" as the last path segment) at
 * ${path}, copied into ${out}/${n_out}.  ${empty_hint} follows the error for an empty
 * sequence.
 */
static void
check_names(struct check *ck, const struct config_node *n, const char *path, const char *empty_hint,
            char ***out, size_t *n_out)
{
    char got[128];
    size_t i;

    if (!want_type(ck, n, path, CONFIG_NODE_SEQUENCE)) {
        return;
    }
    if (n->n_items == 0) {
        ck_err(ck, n, "%s: expected at least one name, got an empty sequence%s", path, empty_hint);
        return;
    }
    if ((*out = calloc(n->n_items, sizeof(**out))) == NULL) {
        ck_err(ck, n, "out of memory");
        return;
    }
    for (i = 0; i < n->n_items; i++) {
        const struct config_node *e = n->items[i];
        char ep[256];

        item_path(ep, sizeof(ep), path, i);
        if (!want_scalar(ck, e, ep,
                         "a host name, a *.domain wildcard, an IP address or a spiffe:// ID")) {
            continue;
        }
        if (strstr(e->text, "://") != NULL) {
            const char *why = config_check_spiffe_problem(e->text, true);

            if (why != NULL) {
                ck_err(ck, e,
                       "%s: expected a SPIFFE ID (spiffe://trust-domain/path, or .../* for one "
                       "more path segment), got %s: %s",
                       ep, what(e, got, sizeof(got)), why);
                continue;
            }
        } else if (!valid_allow(e->text)) {
            ck_err(ck, e,
                   "%s: expected a host name, a *.domain wildcard, an IP address or a spiffe:// "
                   "ID, got %s",
                   ep, what(e, got, sizeof(got)));
            continue;
        }
        if (((*out)[*n_out] = strdup(e->text)) == NULL) {
            ck_err(ck, e, "out of memory");
            continue;
        }
        (*n_out)++;
    }
}

/* Check a listener's allow: sequence ${n} at ${path}. */
static void
check_allow(struct check *ck, const struct config_node *n, const char *path,
            struct listener_check *lc)
{
    check_names(ck, n, path, "; remove allow: to accept any certificate the CA issued",
                &lc->l->allow, &lc->l->n_allow);
}

/* The databases: globs of access rule ${r}, at ${path}. */
static void
check_databases(struct check *ck, const struct config_node *n, const char *path,
                struct config_access_rule *r)
{
    static const char expected[] =
        "a database name or glob (a lowercase letter, then lowercase letters, digits and "
        "_$()+-/; * and ? as wildcards within a name, ** across /)";
    char got[128];
    char why[128];
    size_t i;

    if (!want_type(ck, n, path, CONFIG_NODE_SEQUENCE)) {
        return;
    }
    if (n->n_items == 0) {
        ck_err(ck, n,
               "%s: expected at least one database name or glob, got an empty sequence; remove "
               "databases: to cover every database",
               path);
        return;
    }
    if ((r->databases = calloc(n->n_items, sizeof(*r->databases))) == NULL) {
        ck_err(ck, n, "out of memory");
        return;
    }
    for (i = 0; i < n->n_items; i++) {
        const struct config_node *e = n->items[i];
        char ep[256];

        item_path(ep, sizeof(ep), path, i);
        if (!want_scalar(ck, e, ep, expected)) {
            continue;
        }
        if (config_value_db_glob_check(e->text, why, sizeof(why)) != 0) {
            ck_err(ck, e, "%s: expected %s, got %s: %s", ep, expected, what(e, got, sizeof(got)),
                   why);
            continue;
        }
        if ((r->databases[r->n_databases] = strdup(e->text)) == NULL) {
            ck_err(ck, e, "out of memory");
            continue;
        }
        r->n_databases++;
    }
}

/* The keys of an access rule. */
enum rule_key { R_PEERS, R_ALLOW, R_DATABASES, R_NKEYS };

static const struct key_spec rule_keys[R_NKEYS] = {
    {"peers", KEY_REQUIRED},
    {"allow", KEY_REQUIRED},
    {"databases", 0},
};

/* Check access rule mapping ${n} at ${path} ("listeners[0].access[1]") into ${r}. */
static void
check_rule(struct check *ck, const struct config_node *n, const char *path,
           struct config_access_rule *r)
{
    /* In the order of enum config_allow. */
    static const char *const allows[] = {"read",           "write",        "replicate",
                                         "replicate-from", "replicate-to", "all"};
    _Static_assert(sizeof(allows) / sizeof(allows[0]) == CONFIG_ALLOW_ALL + 1,
                   "allows[] lists every enum config_allow value");
    const struct config_node *keys[R_NKEYS];
    const struct config_node *vals[R_NKEYS];
    char where[256]; /* "in " and ${path} (rp[224] of check_access) */
    char kp[256];
    int v;

    r->pos = n->pos;
    r->allow = CONFIG_ALLOW_READ;
    if (!want_type(ck, n, path, CONFIG_NODE_MAPPING)) {
        return;
    }
    snprintf(where, sizeof(where), "in %s", path);
    check_keys(ck, n, where, rule_keys, R_NKEYS, keys, vals);
    if (vals[R_PEERS] != NULL) {
        snprintf(kp, sizeof(kp), "%s.peers", path);
        check_names(ck, vals[R_PEERS], kp, "", &r->peers, &r->n_peers);
    }
    if (vals[R_ALLOW] != NULL) {
        snprintf(kp, sizeof(kp), "%s.allow", path);
        if (get_enum(ck, vals[R_ALLOW], kp, allows, sizeof(allows) / sizeof(allows[0]),
                     "replicate, replicate-from, replicate-to, read, write or all", &v) == 0) {
            r->allow = (enum config_allow)v;
        }
    }
    if (vals[R_DATABASES] != NULL) {
        snprintf(kp, sizeof(kp), "%s.databases", path);
        check_databases(ck, vals[R_DATABASES], kp, r);
    }
}

/* Check a listener's access: sequence ${n} at ${path}. */
static void
check_access(struct check *ck, const struct config_node *n, const char *path,
             struct listener_check *lc)
{
    struct config_listener *l = lc->l;
    char rp[224];
    size_t i;

    if (!want_type(ck, n, path, CONFIG_NODE_SEQUENCE)) {
        return;
    }
    if (n->n_items == 0) {
        ck_err(ck, n,
               "%s: expected at least one rule, got an empty sequence; remove access: to let "
               "every verified peer do anything",
               path);
        return;
    }
    if ((l->access = calloc(n->n_items, sizeof(*l->access))) == NULL) {
        ck_err(ck, n, "out of memory");
        return;
    }
    /* Every rule is counted, so that config_free() releases what a bad one holds. */
    for (i = 0; i < n->n_items; i++) {
        item_path(rp, sizeof(rp), path, i);
        check_rule(ck, n->items[i], rp, &l->access[i]);
        l->n_access++;
    }
}

/* The roles: of couchdb_proxy_auth, at ${path}. */
static void
check_roles(struct check *ck, const struct config_node *n, const char *path,
            struct config_proxy_auth *pa)
{
    static const char expected[] = "a role name (not empty; no commas or control characters)";
    char got[128];
    size_t i;

    if (!want_type(ck, n, path, CONFIG_NODE_SEQUENCE)) {
        return;
    }
    if (n->n_items == 0) {
        return; /* roles: [] sends an empty X-Auth-CouchDB-Roles */
    }
    if ((pa->roles = calloc(n->n_items, sizeof(*pa->roles))) == NULL) {
        ck_err(ck, n, "out of memory");
        return;
    }
    for (i = 0; i < n->n_items; i++) {
        const struct config_node *e = n->items[i];
        const unsigned char *p;
        const char *why = NULL;
        char ep[256];

        item_path(ep, sizeof(ep), path, i);
        if (!want_scalar(ck, e, ep, expected)) {
            continue;
        }
        if (e->text[0] == '\0') {
            why = "a role name cannot be empty";
        }
        for (p = (const unsigned char *)e->text; why == NULL && *p != '\0'; p++) {
            if (*p == ',') {
                why = "X-Auth-CouchDB-Roles separates roles with commas";
            } else if (*p < 0x20 || *p == 0x7f) {
                why = "a header value cannot hold control characters";
            }
        }
        if (why != NULL) {
            ck_err(ck, e, "%s: expected %s, got %s: %s", ep, expected, what(e, got, sizeof(got)),
                   why);
            continue;
        }
        if ((pa->roles[pa->n_roles] = strdup(e->text)) == NULL) {
            ck_err(ck, e, "out of memory");
            continue;
        }
        pa->n_roles++;
    }
}

/* Check a listener's couchdb_proxy_auth: mapping ${n} at ${path}. */
static void
check_proxy_auth(struct check *ck, const struct config_node *n, const char *path,
                 struct listener_check *lc)
{
    static const struct key_spec specs[] = {
        {"secret_file", KEY_REQUIRED},
        {"hash", 0},
        {"roles", 0},
    };
    static const char *const hashes[] = {"sha256", "sha1"}; /* in the order of enum config_hash */
    struct config_proxy_auth *pa = &lc->l->proxy_auth;
    const struct config_node *keys[3];
    const struct config_node *vals[3];
    char where[224];
    char kp[256];
    int v;

    if (!want_type(ck, n, path, CONFIG_NODE_MAPPING)) {
        return;
    }
    pa->enabled = true;
    pa->hash = CONFIG_DEFAULT_PROXY_AUTH_HASH;
    snprintf(where, sizeof(where), "in %s", path);
    check_keys(ck, n, where, specs, 3, keys, vals);
    if (vals[0] != NULL) {
        snprintf(kp, sizeof(kp), "%s.secret_file", path);
        get_secret_file(ck, vals[0], kp, &pa->secret_file);
    }
    if (vals[1] != NULL) {
        snprintf(kp, sizeof(kp), "%s.hash", path);
        if (get_enum(ck, vals[1], kp, hashes, 2, "sha256 or sha1", &v) == 0) {
            pa->hash = (enum config_hash)v;
        }
    }
    if (vals[2] != NULL) {
        snprintf(kp, sizeof(kp), "%s.roles", path);
        check_roles(ck, vals[2], kp, pa);
    }
}

/* Check a listener's pool: mapping ${n} at ${path} (protocol http). */
static void
check_pool(struct check *ck, const struct config_node *n, const char *path,
           struct listener_check *lc)
{
    static const struct key_spec specs[] = {{"max_idle", 0}, {"idle_timeout", 0}};
    struct config_listener *l = lc->l;
    const struct config_node *keys[2];
    const struct config_node *vals[2];
    char where[224];
    char kp[256];
    unsigned long v;

    if (!want_type(ck, n, path, CONFIG_NODE_MAPPING)) {
        return;
    }
    snprintf(where, sizeof(where), "in %s", path);
    check_keys(ck, n, where, specs, 2, keys, vals);
    if (vals[0] != NULL) {
        snprintf(kp, sizeof(kp), "%s.max_idle", path);
        if (get_int(ck, vals[0], kp, 0, 100000, &v) == 0) {
            l->pool_max_idle = (unsigned)v;
        }
    }
    if (vals[1] != NULL) {
        snprintf(kp, sizeof(kp), "%s.idle_timeout", path);
        get_duration(ck, vals[1], kp, &l->pool_idle_timeout_ms);
    }
}

/*
 * The auth_file of via: besides get_secret_file()'s checks, one line "user:password" with a
 * user name and no control characters.  Its content never reaches a message.  Returns 0 or -1.
 */
static int
get_proxy_auth_file(struct check *ck, const struct config_node *n, const char *path,
                    struct config_file *out)
{
    unsigned char buf[1024];
    const char *bad = NULL;
    size_t len = 0, i, colon = SIZE_MAX;
    FILE *f;

    if (get_file(ck, n, path, out) != 0) {
        return (-1);
    }
    if ((f = fopen(out->path, "rb")) != NULL) {
        len = fread(buf, 1, sizeof(buf), f);
        (void)fclose(f); /* read-only: nothing to lose on close */
    }
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) {
        len--;
    }
    for (i = 0; i < len && bad == NULL; i++) {
        if (buf[i] == ':' && colon == SIZE_MAX) {
            colon = i;
        } else if (buf[i] == '\n' || buf[i] == '\r') {
            bad = "it holds more than one line";
        } else if (buf[i] < 0x20 || buf[i] == 0x7f) {
            bad = "it holds a control character";
        }
    }
    if (f == NULL) {
        bad = "it cannot be opened";
    } else if (len == sizeof(buf)) {
        bad = "it is longer than 1 KiB";
    } else if (len == 0) {
        bad = "it is empty";
    } else if (bad == NULL && colon == SIZE_MAX) {
        bad = "it has no \":\" between the user and the password";
    } else if (bad == NULL && colon == 0) {
        bad = "the user name before \":\" is empty";
    }
    memset(buf, 0, sizeof(buf));
    __asm__ __volatile__("" : : "r"(buf) : "memory"); /* the memset is not optimised away */
    if (bad != NULL) {
        ck_err(ck, n,
               "%s: %s: expected one line \"user:password\" for the proxy's Basic "
               "authentication, but %s",
               path, out->path, bad);
        return (-1);
    }
    return (0);
}

/* Check a listener's via: mapping ${n} at ${path} (outbound). */
static void
check_via(struct check *ck, const struct config_node *n, const char *path,
          struct listener_check *lc)
{
    static const struct key_spec specs[] = {
        {"proxy", KEY_REQUIRED}, {"auth_file", 0}, {"connect_timeout", 0}};
    struct config_listener *l = lc->l;
    const struct config_node *keys[3];
    const struct config_node *vals[3];
    char where[224];
    char kp[256];
    char why[256];
    char got[128];
    const char *text;

    if (!want_type(ck, n, path, CONFIG_NODE_MAPPING)) {
        return;
    }
    snprintf(where, sizeof(where), "in %s", path);
    check_keys(ck, n, where, specs, 3, keys, vals);
    l->via.enabled = true;
    if (vals[0] != NULL) {
        snprintf(kp, sizeof(kp), "%s.proxy", path);
        if (want_scalar(ck, vals[0], kp, "an http://host:port proxy address")) {
            text = vals[0]->text;
            if (strncasecmp(text, "http://", 7) == 0) {
                text += 7;
            }
            if (strchr(text, '@') != NULL) {
                /* Never quoted: what precedes "@" is a password. */
                ck_err(ck, vals[0],
                       "%s: credentials in the proxy address are not accepted (they would show "
                       "in logs and in ferry check); write \"user:password\" in a file (mode "
                       "0600) and name it in via.auth_file",
                       kp);
            } else if (strstr(text, "://") != NULL) {
                ck_err(ck, vals[0],
                       "%s: expected an http://host:port proxy address, got %s: ferry speaks "
                       "plain HTTP to the proxy (its CONNECT tunnel then carries ferry's own "
                       "TLS to the peer)",
                       kp, what(vals[0], got, sizeof(got)));
            } else {
                char hp[CONFIG_ADDR_STR_MAX];
                size_t hl = strcspn(text, "/");

                if (text[hl] == '/' && text[hl + 1] != '\0') {
                    ck_err(ck, vals[0],
                           "%s: expected an http://host:port proxy address, got %s: a proxy "
                           "address has no path",
                           kp, what(vals[0], got, sizeof(got)));
                } else if (hl >= sizeof(hp)) {
                    ck_err(ck, vals[0], "%s: the proxy address is too long", kp);
                } else {
                    memcpy(hp, text, hl);
                    hp[hl] = '\0';
                    if (config_value_parse_addr(hp, true, &l->via.proxy, why, sizeof(why)) != 0) {
                        ck_err(ck, vals[0], "%s: %s", kp, why);
                    }
                    l->via.proxy_pos = vals[0]->pos;
                }
            }
        }
    }
    if (vals[1] != NULL) {
        snprintf(kp, sizeof(kp), "%s.auth_file", path);
        get_proxy_auth_file(ck, vals[1], kp, &l->via.auth_file);
    }
    if (vals[2] != NULL) {
        snprintf(kp, sizeof(kp), "%s.connect_timeout", path);
        get_duration(ck, vals[2], kp, &l->via.connect_timeout_ms);
    }
}

/* Check a listener's proxy_protocol: mapping ${n} at ${path} (inbound). */
static void
check_proxy_protocol(struct check *ck, const struct config_node *n, const char *path,
                     struct listener_check *lc)
{
    static const struct key_spec specs[] = {{"accept", 0}, {"from", 0}};
    struct config_listener *l = lc->l;
    const struct config_node *keys[2];
    const struct config_node *vals[2];
    char where[224];
    char kp[256];
    char why[160];
    char got[128];
    size_t i;

    if (!want_type(ck, n, path, CONFIG_NODE_MAPPING)) {
        return;
    }
    snprintf(where, sizeof(where), "in %s", path);
    check_keys(ck, n, where, specs, 2, keys, vals);
    if (vals[0] != NULL) {
        snprintf(kp, sizeof(kp), "%s.accept", path);
        get_bool(ck, vals[0], kp, &l->pp_accept);
    }
    if (vals[1] != NULL) {
        snprintf(kp, sizeof(kp), "%s.from", path);
        if (!want_type(ck, vals[1], kp, CONFIG_NODE_SEQUENCE)) {
            return;
        }
        if (vals[1]->n_items == 0) {
            ck_err(ck, vals[1],
                   "%s: expected at least one address or block (the load balancers' addresses, "
                   "e.g. [\"10.0.0.0/8\"]), got an empty sequence",
                   kp);
            return;
        }
        if ((l->pp_from = calloc(vals[1]->n_items, sizeof(*l->pp_from))) == NULL) {
            ck_err(ck, vals[1], "out of memory");
            return;
        }
        for (i = 0; i < vals[1]->n_items; i++) {
            const struct config_node *e = vals[1]->items[i];
            char ep[272];

            item_path(ep, sizeof(ep), kp, i);
            if (!want_scalar(ck, e, ep, "an IP address or block such as 10.0.0.0/8")) {
                continue;
            }
            if (config_value_cidr_parse(e->text, &l->pp_from[l->n_pp_from], why, sizeof(why)) !=
                0) {
                ck_err(ck, e, "%s: got %s: %s", ep, what(e, got, sizeof(got)), why);
                continue;
            }
            l->n_pp_from++;
        }
    } else if (l->pp_accept) {
        ck_err(ck, keys[0],
               "%s: accept: true needs from: the addresses of the load balancers that may send "
               "a PROXY protocol header (e.g. from: [\"10.0.0.0/8\"]); a header from anyone "
               "else could claim any client address",
               path);
        l->pp_accept = false;
    }
}

/* The listener's name: letters, digits, "_", "." and "-". */
static void
check_name(struct check *ck, const struct config_node *n, const char *path,
           struct listener_check *lc)
{
    char got[128];

    if (!want_scalar(ck, n, path, "a name")) {
        return;
    }
    if (!valid_name(n->text)) {
        ck_err(ck, n, "%s: expected a name of letters, digits, \"_\", \".\" and \"-\", got %s",
               path, what(n, got, sizeof(got)));
    } else if (get_string(ck, n, path, &lc->l->name) == 0) {
        lc->aux->name_node = n;
    }
}

/* listen: an IP address and port (aux->listen_ok and listen_node when good). */
static void
check_listen(struct check *ck, const struct config_node *n, const char *path,
             struct listener_check *lc)
{
    if (get_addr(ck, n, path, false, &lc->l->listen) == 0) {
        lc->aux->listen_ok = true;
        lc->aux->listen_node = n;
    }
}

/* backend: host:port (inbound). */
static void
check_backend(struct check *ck, const struct config_node *n, const char *path,
              struct listener_check *lc)
{
    get_addr(ck, n, path, true, &lc->l->backend);
}

/* peer: host:port (outbound). */
static void
check_peer(struct check *ck, const struct config_node *n, const char *path,
           struct listener_check *lc)
{
    get_addr(ck, n, path, true, &lc->l->peer);
}

/* connect: an IP address and port dialled instead of peer's host (outbound). */
static void
check_connect(struct check *ck, const struct config_node *n, const char *path,
              struct listener_check *lc)
{
    if (get_addr(ck, n, path, false, &lc->l->connect) == 0) {
        lc->l->has_connect = true;
    }
}

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* The listener keys whose value is one of a few words, each in the order of its enum. */
struct listener_enum {
    enum listener_key key;
    const char *const *names;
    size_t n_names;
    const char *expected;
};

static const char *const modes[] = {"inbound", "outbound"};
static const char *const protocols[] = {"http", "tcp"};
static const char *const client_certs[] = {"required", "none"};
static const char *const cert_headers[] = {"xfcc", "rfc9440", "none"};
static const char *const host_headers[] = {"keep", "peer"};
static const char *const backend_pps[] = {"none", "v2"};

static const struct listener_enum listener_enums[] = {
    {L_MODE, modes, ARRAY_LEN(modes), "inbound or outbound"},
    {L_PROTOCOL, protocols, ARRAY_LEN(protocols), "http or tcp"},
    {L_CLIENT_CERT, client_certs, ARRAY_LEN(client_certs), "required or none"},
    {L_CLIENT_CERT_HEADER, cert_headers, ARRAY_LEN(cert_headers), "xfcc, rfc9440 or none"},
    {L_HOST_HEADER, host_headers, ARRAY_LEN(host_headers), "keep or peer"},
    {L_BACKEND_PROXY_PROTOCOL, backend_pps, ARRAY_LEN(backend_pps), "none or v2"},
};

/*
 * The value of enum key ${key} at ${n} (a row of listener_enums[]) into its field of the
 * listener.  A good mode sets aux->mode_ok; a bad protocol clears protocol_ok.
 */
static void
check_enum(struct check *ck, const struct config_node *n, const char *path, enum listener_key key,
           struct listener_check *lc)
{
    const struct listener_enum *e = listener_enums;
    struct config_listener *l = lc->l;
    int v;

    while (e < listener_enums + ARRAY_LEN(listener_enums) - 1 && e->key != key) {
        e++;
    }
    if (get_enum(ck, n, path, e->names, e->n_names, e->expected, &v) != 0) {
        if (key == L_PROTOCOL) {
            lc->protocol_ok = false;
        }
        return;
    }
    switch (key) {
    case L_MODE:
        l->mode = (enum config_mode)v;
        lc->aux->mode_ok = true;
        break;
    case L_PROTOCOL:
        l->protocol = (enum config_protocol)v;
        break;
    case L_CLIENT_CERT:
        l->client_cert = (enum config_client_cert)v;
        break;
    case L_CLIENT_CERT_HEADER:
        l->client_cert_header = (enum config_client_cert_header)v;
        break;
    case L_HOST_HEADER:
        l->host_header = (enum config_host_header)v;
        break;
    case L_BACKEND_PROXY_PROTOCOL:
        l->backend_pp = (enum config_backend_pp)v;
        break;
    default:
        break;
    }
}

/* backend_proxy_protocol: protocol tcp only (on http the backend reads X-Forwarded-For). */
static void
check_backend_pp(struct check *ck, const struct config_node *n, const char *path,
                 struct listener_check *lc)
{
    if (lc->protocol_ok && lc->l->protocol == CONFIG_PROTOCOL_HTTP) {
        ck_err(ck, lc->keys[L_BACKEND_PROXY_PROTOCOL],
               "%s needs protocol: tcp: on protocol: http the backend gets the client's "
               "address in X-Forwarded-For",
               path);
    } else {
        check_enum(ck, n, path, L_BACKEND_PROXY_PROTOCOL, lc);
    }
}

/* tls: the listener's override of the top-level tls: (into aux->tls). */
static void
check_listener_tls(struct check *ck, const struct config_node *n, const char *path,
                   struct listener_check *lc)
{
    check_tls(ck, n, path, &lc->aux->tls);
}

/*
 * Where each listener key may appear, one row per rule, in the order their errors are
 * reported (before any value is parsed).  A key of one mode (why_mode) is refused on the
 * other mode; a key of protocol http (why_http) is refused on protocol: tcp, which relays
 * bytes without reading them (only the mode error when both are wrong).  A required row
 * names a key that ${mode} cannot do without, and why_mode says what it is for.  With a mode
 * or protocol that is itself wrong, nothing is refused for it and the value is still checked.
 */
struct listener_place {
    enum listener_key key;
    enum config_mode mode; /* the mode the key belongs to (unused when why_mode is NULL) */
    bool required;         /* missing on ${mode}: an error */
    const char *why_mode;  /* the error on the other mode; NULL: either mode */
    const char *why_http;  /* the error on protocol: tcp; NULL: either protocol */
};

static const struct listener_place listener_places[] = {
    {L_ACCESS, CONFIG_MODE_INBOUND, false,
     "access applies only to inbound listeners: its rules limit what connecting peers may do; "
     "set them on the peer's inbound listener",
     "access rules need protocol: http: ferry must read the request to apply them"},
    {L_COUCHDB_PROXY_AUTH, CONFIG_MODE_INBOUND, false,
     "couchdb_proxy_auth applies only to inbound listeners: the inbound listener in front of "
     "CouchDB adds the X-Auth-CouchDB-* headers",
     "couchdb_proxy_auth needs protocol: http: ferry must add X-Auth-CouchDB-* headers to each "
     "request"},
    {L_CLIENT_CERT_HEADER, CONFIG_MODE_INBOUND, false,
     "client_cert_header applies only to inbound listeners: it tells the backend which "
     "certificate the connecting peer presented",
     "client_cert_header needs protocol: http: ferry must add the header to each request"},
    {L_HOST_HEADER, CONFIG_MODE_OUTBOUND, false,
     "host_header applies only to outbound listeners: an inbound listener forwards Host as the "
     "peer sent it",
     "host_header needs protocol: http: ferry must rewrite the Host header of each request"},
    {L_POOL, CONFIG_MODE_OUTBOUND, false, NULL,
     "pool needs protocol: http: ferry must see where each response ends to reuse a "
     "connection"},
    {L_BACKEND, CONFIG_MODE_INBOUND, false,
     "backend applies only to inbound listeners; an outbound listener uses peer", NULL},
    {L_CLIENT_CERT, CONFIG_MODE_INBOUND, false,
     "client_cert applies only to inbound listeners; an outbound listener always presents "
     "tls.cert to its peer",
     NULL},
    {L_ALLOW, CONFIG_MODE_INBOUND, false,
     "allow applies only to inbound listeners; an outbound listener checks the peer's "
     "certificate against the host of peer",
     NULL},
    {L_PEER, CONFIG_MODE_OUTBOUND, true, "an outbound listener connects to it", NULL},
    {L_PROXY_PROTOCOL, CONFIG_MODE_INBOUND, false,
     "proxy_protocol applies only to inbound listeners: a load balancer in front of ferry "
     "passes the client's address in it",
     NULL},
    {L_BACKEND_PROXY_PROTOCOL, CONFIG_MODE_INBOUND, false,
     "backend_proxy_protocol applies only to inbound listeners (it is sent to backend)", NULL},
    {L_PEER, CONFIG_MODE_OUTBOUND, false,
     "peer applies only to outbound listeners; an inbound listener uses backend", NULL},
    {L_CONNECT, CONFIG_MODE_OUTBOUND, false, "connect applies only to outbound listeners", NULL},
    {L_BACKEND, CONFIG_MODE_INBOUND, true, "an inbound listener forwards to it", NULL},
    {L_VIA, CONFIG_MODE_OUTBOUND, false,
     "via applies only to outbound listeners: it names the egress proxy ferry goes through to "
     "reach peer",
     NULL},
};

/*
 * How each listener key is parsed, in the order the values are checked (a NULL check: one of
 * the words of its listener_enums[] row).  The rows marked first (mode and protocol among
 * them) are read before listener_places[] is applied; a row with why_no_cert is refused on
 * client_cert: none, where no peer is verified.
 */
struct listener_parse {
    enum listener_key key;
    bool first;
    void (*check)(struct check *ck, const struct config_node *n, const char *path,
                  struct listener_check *lc); /* NULL: a word of listener_enums[] */
    const char *why_no_cert;
};

static const struct listener_parse listener_parses[] = {
    {L_NAME, true, check_name, NULL},
    {L_MODE, true, NULL, NULL},
    {L_LISTEN, true, check_listen, NULL},
    {L_PROTOCOL, true, NULL, NULL},
    {L_BACKEND, false, check_backend, NULL},
    {L_PEER, false, check_peer, NULL},
    {L_CONNECT, false, check_connect, NULL},
    {L_CLIENT_CERT, false, NULL, NULL},
    {L_ALLOW, false, check_allow,
     "allow matches the names of verified peers, and with client_cert: none no certificate is "
     "asked for, so allow would refuse nobody; set client_cert: required or remove allow:"},
    {L_ACCESS, false, check_access,
     "access rules match the names of verified peers, and with client_cert: none no peer is "
     "verified, so every request would be refused; set client_cert: required or remove "
     "access:"},
    {L_COUCHDB_PROXY_AUTH, false, check_proxy_auth,
     "couchdb_proxy_auth takes the CouchDB user name from the peer's certificate, and with "
     "client_cert: none there is none; set client_cert: required or remove "
     "couchdb_proxy_auth:"},
    {L_CLIENT_CERT_HEADER, false, NULL, NULL},
    {L_HOST_HEADER, false, NULL, NULL},
    {L_POOL, false, check_pool, NULL},
    {L_PROXY_PROTOCOL, false, check_proxy_protocol, NULL},
    {L_VIA, false, check_via, NULL},
    {L_BACKEND_PROXY_PROTOCOL, false, check_backend_pp, NULL},
    {L_TLS, false, check_listener_tls, NULL},
};

/* Refuse the keys of listener ${n} that its mode or protocol cannot take (listener_places[]). */
static void
check_places(struct check *ck, const struct config_node *n, struct listener_check *lc)
{
    const struct config_listener *l = lc->l;
    size_t i;

    for (i = 0; i < ARRAY_LEN(listener_places); i++) {
        const struct listener_place *p = &listener_places[i];
        const struct config_node *k = lc->keys[p->key];

        if (p->required) {
            if (lc->aux->mode_ok && l->mode == p->mode && k == NULL) {
                ck_err(ck, n, "missing required key \"%s\" %s (%s)", listener_keys[p->key].name,
                       lc->where, p->why_mode);
            }
        } else if (k == NULL) {
            continue;
        } else if (p->why_mode != NULL && lc->aux->mode_ok && l->mode != p->mode) {
            ck_err(ck, k, "%s", p->why_mode);
            lc->vals[p->key] = NULL;
        } else if (p->why_http != NULL && lc->protocol_ok && l->protocol == CONFIG_PROTOCOL_TCP) {
            ck_err(ck, k, "%s, and %s has protocol: tcp", p->why_http, lc->aux->label);
            lc->vals[p->key] = NULL;
        }
    }
}

/* Check the values of the listener_parses[] rows whose first is ${first}. */
static void
check_values(struct check *ck, struct listener_check *lc, bool first)
{
    char kp[192];
    size_t i;

    for (i = 0; i < ARRAY_LEN(listener_parses); i++) {
        const struct listener_parse *p = &listener_parses[i];
        const struct config_node *v = lc->vals[p->key];

        if (p->first != first || v == NULL) {
            continue;
        }
        /* Peer identities come from client certificates: nothing to match without them. */
        if (p->why_no_cert != NULL && lc->l->client_cert == CONFIG_CLIENT_CERT_NONE) {
            ck_err(ck, lc->keys[p->key], "%s", p->why_no_cert);
            lc->vals[p->key] = NULL;
            continue;
        }
        snprintf(kp, sizeof(kp), "%s.%s", lc->lp, listener_keys[p->key].name);
        if (p->check == NULL) {
            check_enum(ck, v, kp, p->key, lc);
        } else {
            p->check(ck, v, kp, lc);
        }
    }
}

/* The defaults of listener ${l}, before its keys are read. */
static void
listener_defaults(struct config_listener *l)
{
    l->protocol = CONFIG_DEFAULT_PROTOCOL;
    l->client_cert = CONFIG_DEFAULT_CLIENT_CERT;
    l->client_cert_header = CONFIG_DEFAULT_CLIENT_CERT_HEADER;
    l->host_header = CONFIG_DEFAULT_HOST_HEADER;
    l->proxy_auth.hash = CONFIG_DEFAULT_PROXY_AUTH_HASH;
    l->pool_max_idle = CONFIG_DEFAULT_POOL_MAX_IDLE;
    l->pool_idle_timeout_ms = CONFIG_DEFAULT_POOL_IDLE_TIMEOUT_MS;
    l->backend_pp = CONFIG_DEFAULT_BACKEND_PROXY_PROTOCOL;
}

/* Check listeners[${idx}] mapping ${n} into ${l} and ${aux}. */
static void
check_listener(struct check *ck, const struct config_node *n, size_t idx, struct config_listener *l,
               struct listener_aux *aux)
{
    struct listener_check lc;
    const char *name;
    char lp[64];

    snprintf(lp, sizeof(lp), "listeners[%zu]", idx);
    l->pos = n->pos;
    listener_defaults(l);
    tls_init(&aux->tls);
    if (!want_type(ck, n, lp, CONFIG_NODE_MAPPING)) {
        snprintf(aux->label, sizeof(aux->label), "%s", lp);
        return;
    }

    /* Name the listener in messages about the whole mapping when it has a usable name. */
    name = map_scalar(n, "name");
    if (name != NULL && valid_name(name) && strlen(name) < 64) {
        snprintf(aux->label, sizeof(aux->label), "%s (%s)", lp, name);
    } else {
        snprintf(aux->label, sizeof(aux->label), "%s", lp);
    }
    memset(&lc, 0, sizeof(lc));
    lc.lp = lp;
    lc.l = l;
    lc.aux = aux;
    lc.protocol_ok = true; /* absent is http */
    snprintf(lc.where, sizeof(lc.where), "in %s", aux->label);
    check_keys(ck, n, lc.where, listener_keys, L_NKEYS, lc.keys, lc.vals);

    check_values(ck, &lc, true);
    check_places(ck, n, &lc);
    check_values(ck, &lc, false);

    /* Pooling is for protocol http only: no pool anywhere else. */
    if (!aux->mode_ok || l->protocol != CONFIG_PROTOCOL_HTTP) {
        l->pool_max_idle = 0;
    }
}

/* Copy ${from} into ${to}.  Returns 0 or -1 (out of memory). */
static int
copy_file(struct config_file *to, const struct config_file *from)
{
    char *p = NULL;

    if (from->path != NULL && (p = strdup(from->path)) == NULL) {
        return (-1);
    }
    free(to->path);
    to->path = p;
    to->pos = from->pos;
    return (0);
}

/* Where key ${k} of a listener's tls comes from: its own tls: when it sets it, else the defaults.
 */
static const struct config_tls *
pick(const struct listener_aux *aux, const struct tls_set *def, enum tls_key k)
{
    return ((aux->tls.set & (1u << k)) ? &aux->tls.v : &def->v);
}

/*
 * The effective tls of listener ${l}: the defaults ${def}, then each key its own tls: sets.
 * Then the files its mode needs must be there.
 */
static void
merge_tls(struct check *ck, const struct config_node *at, struct config_listener *l,
          const struct listener_aux *aux, const struct tls_set *def)
{
    static const char *const needed[] = {"cert", "key", "ca"};
    const enum tls_key needed_keys[] = {TLS_CERT, TLS_KEY, TLS_CA};
    size_t i;

    if (copy_file(&l->tls.cert, &pick(aux, def, TLS_CERT)->cert) != 0 ||
        copy_file(&l->tls.key, &pick(aux, def, TLS_KEY)->key) != 0 ||
        copy_file(&l->tls.key_passphrase_file,
                  &pick(aux, def, TLS_KEY_PASSPHRASE_FILE)->key_passphrase_file) != 0 ||
        copy_file(&l->tls.ca, &pick(aux, def, TLS_CA)->ca) != 0 ||
        copy_file(&l->tls.crl, &pick(aux, def, TLS_CRL)->crl) != 0) {
        ck_err(ck, at, "out of memory");
    }
    l->tls.min_version = pick(aux, def, TLS_MIN_VERSION)->min_version;
    l->tls.verify_depth = pick(aux, def, TLS_VERIFY_DEPTH)->verify_depth;
    l->tls.cn_fallback = pick(aux, def, TLS_CN_FALLBACK)->cn_fallback;
    l->tls.session_resumption = pick(aux, def, TLS_SESSION_RESUMPTION)->session_resumption;

    if (!aux->mode_ok) {
        return;
    }
    for (i = 0; i < 3; i++) {
        unsigned bit = 1u << needed_keys[i];
        const char *hint = "";

        if (needed_keys[i] == TLS_CA) {
            /* An inbound listener that does not ask for client certificates needs no CA. */
            if (l->mode == CONFIG_MODE_INBOUND && l->client_cert == CONFIG_CLIENT_CERT_NONE) {
                continue;
            }
            hint = l->mode == CONFIG_MODE_OUTBOUND
                       ? " (an outbound listener verifies its peer against it)"
                       : " (an inbound listener with client_cert: required verifies clients "
                         "against it)";
        }
        if (!(def->set & bit) && !(aux->tls.set & bit)) {
            ck_err(ck, at, "%s: no tls.%s: set it under tls: or in the listener's tls:%s",
                   aux->label, needed[i], hint);
        }
    }
}

/* True when listen addresses ${a} and ${b} cannot both be bound. */
static bool
addr_conflict(const struct config_addr *a, const struct config_addr *b)
{
    static const unsigned char zero[16];
    unsigned char ab[16];
    unsigned char bb[16];
    int af;
    int bf;

    if (a->port != b->port) {
        return (false);
    }
    if (config_value_ip_parse(a->host, ab, &af) != 0 ||
        config_value_ip_parse(b->host, bb, &bf) != 0) {
        return (strcmp(a->host, b->host) == 0);
    }
    /* A wildcard address takes the port on every address. */
    if (memcmp(ab, zero, 16) == 0 || memcmp(bb, zero, 16) == 0) {
        return (true);
    }
    return (af == bf && memcmp(ab, bb, 16) == 0);
}

/*
 * True when via.proxy ${p} is listen address ${l}: the same address and port, or a wildcard
 * listen address and a loopback (or wildcard) proxy on its port.  A remote proxy on a
 * wildcard listener's port number is someone else.
 */
static bool
via_is_listener(const struct config_addr *p, const struct config_addr *l)
{
    static const unsigned char zero[16];
    static const unsigned char v6_loop[16] = {[15] = 1};
    unsigned char pb[16];
    unsigned char lb[16];
    int pf;
    int lf;

    if (p->port != l->port) {
        return (false);
    }
    if (config_value_ip_parse(p->host, pb, &pf) != 0) {
        return (strcasecmp(p->host, "localhost") == 0 || strcasecmp(p->host, l->host) == 0);
    }
    if (config_value_ip_parse(l->host, lb, &lf) != 0) {
        return (false);
    }
    if (memcmp(lb, zero, 16) == 0) {
        return (memcmp(pb, zero, 16) == 0 || (pf == 4 && pb[0] == 127) ||
                (pf == 6 && memcmp(pb, v6_loop, 16) == 0));
    }
    return (pf == lf && memcmp(pb, lb, 16) == 0);
}

/* via.proxy against every listener's listen address: CONNECT to itself would never end. */
static void
check_via_loops(struct check *ck, const struct config *cfg, const struct listener_aux *aux)
{
    char a1[CONFIG_ADDR_STR_MAX];
    size_t i;
    size_t j;

    for (i = 0; i < cfg->n_listeners; i++) {
        const struct config_via *v = &cfg->listeners[i].via;

        if (!v->enabled || v->proxy.port == 0) {
            continue;
        }
        for (j = 0; j < cfg->n_listeners; j++) {
            if (aux[j].listen_ok && via_is_listener(&v->proxy, &cfg->listeners[j].listen)) {
                config_errors_add(ck->errs, ck->file, v->proxy_pos.line, v->proxy_pos.col,
                                  "listeners[%zu].via.proxy: %s is the listen address of %s at "
                                  "%u:%u: ferry would send CONNECT to itself, and each "
                                  "connection would open another; name the egress proxy",
                                  i, config_value_addr_format(&v->proxy, a1, sizeof(a1)),
                                  aux[j].label, aux[j].listen_node->pos.line,
                                  aux[j].listen_node->pos.col);
                ck->n_errors++;
                break;
            }
        }
    }
}

/* admin.listen (at ${at}) against every listener's listen address. */
static void
check_admin_conflict(struct check *ck, const struct config *cfg, const struct listener_aux *aux,
                     const struct config_node *at)
{
    char a1[CONFIG_ADDR_STR_MAX];
    char a2[CONFIG_ADDR_STR_MAX];
    size_t i;

    for (i = 0; i < cfg->n_listeners; i++) {
        if (aux[i].listen_ok && addr_conflict(&cfg->admin.listen, &cfg->listeners[i].listen)) {
            ck_err(ck, at,
                   "admin.listen: %s conflicts with %s of %s at %u:%u; the admin listener needs "
                   "its own port",
                   config_value_addr_format(&cfg->admin.listen, a1, sizeof(a1)),
                   config_value_addr_format(&cfg->listeners[i].listen, a2, sizeof(a2)),
                   aux[i].label, aux[i].listen_node->pos.line, aux[i].listen_node->pos.col);
            return;
        }
    }
}

/* Duplicate listener names and listen addresses. */
static void
check_duplicates(struct check *ck, const struct config *cfg, const struct listener_aux *aux)
{
    char a1[CONFIG_ADDR_STR_MAX];
    char a2[CONFIG_ADDR_STR_MAX];
    size_t i;
    size_t j;

    for (i = 0; i < cfg->n_listeners; i++) {
        for (j = 0; j < i; j++) {
            if (aux[i].name_node != NULL && aux[j].name_node != NULL &&
                strcmp(cfg->listeners[i].name, cfg->listeners[j].name) == 0) {
                ck_err(ck, aux[i].name_node,
                       "listeners[%zu].name: duplicate listener name \"%s\"; listeners[%zu] at "
                       "%u:%u already has it",
                       i, cfg->listeners[i].name, j, aux[j].name_node->pos.line,
                       aux[j].name_node->pos.col);
                break;
            }
        }
        for (j = 0; j < i; j++) {
            if (aux[i].listen_ok && aux[j].listen_ok &&
                addr_conflict(&cfg->listeners[i].listen, &cfg->listeners[j].listen)) {
                ck_err(ck, aux[i].listen_node,
                       "listeners[%zu].listen: %s conflicts with %s of %s at %u:%u; each "
                       "listener needs its own port",
                       i, config_value_addr_format(&cfg->listeners[i].listen, a1, sizeof(a1)),
                       config_value_addr_format(&cfg->listeners[j].listen, a2, sizeof(a2)),
                       aux[j].label, aux[j].listen_node->pos.line, aux[j].listen_node->pos.col);
                break;
            }
        }
    }
}

/* The defaults of ${cfg}, before the file's keys are read (the listeners have their own). */
static void
config_defaults(struct config *cfg)
{
    cfg->log_level = CONFIG_DEFAULT_LOG_LEVEL;
    cfg->log_format = CONFIG_DEFAULT_LOG_FORMAT;
    cfg->limits.max_connections = CONFIG_DEFAULT_MAX_CONNECTIONS;
    cfg->limits.handshake_timeout_ms = CONFIG_DEFAULT_HANDSHAKE_TIMEOUT_MS;
    cfg->limits.idle_timeout_ms = CONFIG_DEFAULT_IDLE_TIMEOUT_MS;
    cfg->limits.header_timeout_ms = CONFIG_DEFAULT_HEADER_TIMEOUT_MS;
    cfg->limits.backend_timeout_ms = CONFIG_DEFAULT_BACKEND_TIMEOUT_MS;
    cfg->limits.drain_timeout_ms = CONFIG_DEFAULT_DRAIN_TIMEOUT_MS;
    cfg->admin.probe_interval_ms = CONFIG_DEFAULT_PROBE_INTERVAL_MS;
    cfg->workers = CONFIG_DEFAULT_WORKERS;
}

/*
 * Check the listeners: sequence ${ls} into cfg->listeners, then what involves several of
 * them or admin.listen (${admin_listen}, NULL when not good).  ${def} is the top-level tls:.
 * *${auxp} receives an array of cfg->n_listeners, owned by the caller.  Returns 0, or -1 when
 * out of memory.
 */
static int
check_listeners(struct check *ck, const struct config_node *ls, struct config *cfg,
                struct listener_aux **auxp, const struct tls_set *def,
                const struct config_node *admin_listen)
{
    struct listener_aux *aux;
    size_t i;

    if (!want_type(ck, ls, "listeners", CONFIG_NODE_SEQUENCE)) {
        return (0);
    }
    if (ls->n_items == 0) {
        ck_err(ck, ls, "listeners: expected at least one listener, got an empty sequence");
        return (0);
    }
    cfg->listeners = calloc(ls->n_items, sizeof(*cfg->listeners));
    aux = *auxp = calloc(ls->n_items, sizeof(*aux));
    if (cfg->listeners == NULL || aux == NULL) {
        return (-1);
    }
    cfg->n_listeners = ls->n_items;
    for (i = 0; i < ls->n_items; i++) {
        check_listener(ck, ls->items[i], i, &cfg->listeners[i], &aux[i]);
    }
    for (i = 0; i < ls->n_items; i++) {
        merge_tls(ck, ls->items[i], &cfg->listeners[i], &aux[i], def);
    }
    check_duplicates(ck, cfg, aux);
    check_via_loops(ck, cfg, aux);
    if (admin_listen != NULL) {
        check_admin_conflict(ck, cfg, aux, admin_listen);
    }
    return (0);
}

static const struct key_spec top_keys[] = {
    {"tls", 0},     {"listeners", KEY_REQUIRED},
    {"log", 0},     {"limits", 0},
    {"admin", 0},   {"user", 0},
    {"workers", 0},
};
#define TOP_NKEYS (sizeof(top_keys) / sizeof(top_keys[0]))

/*
 * config_check(root, file, basedir, errs):
 * Walk ${root} against the schema of CONTRACT.md §3 and build a struct config.  Relative
 * file paths are joined to ${basedir} (taken as they are when ${basedir} is NULL).  Every
 * problem is appended to ${errs} with ${file} as its file name.  Returns a new config owned
 * by the caller, or NULL after appending at least one error.
 */
struct config *
config_check(const struct config_node *root, const char *file, const char *basedir,
             struct config_errors *errs)
{
    const struct config_node *keys[TOP_NKEYS];
    const struct config_node *vals[TOP_NKEYS];
    const struct config_node *admin_listen = NULL;
    struct listener_aux *aux = NULL;
    struct tls_set def;
    struct config *cfg;
    struct check ck;
    char got[128];
    size_t i;

    ck.file = file;
    ck.basedir = basedir;
    ck.errs = errs;
    ck.n_errors = 0;
    tls_init(&def);

    if ((cfg = calloc(1, sizeof(*cfg))) == NULL) {
        goto oom;
    }
    if ((cfg->path = strdup(file)) == NULL) {
        goto oom;
    }
    config_defaults(cfg);

    if (root->type != CONFIG_NODE_MAPPING) {
        ck_err(&ck, root, "expected a mapping at the top level (with listeners:), got %s",
               what(root, got, sizeof(got)));
        goto err;
    }
    check_keys(&ck, root, "at the top level", top_keys, TOP_NKEYS, keys, vals);

    if (vals[0] != NULL) {
        check_tls(&ck, vals[0], "tls", &def);
    }
    if (vals[2] != NULL) {
        check_log(&ck, vals[2], cfg);
    }
    if (vals[3] != NULL) {
        check_limits(&ck, vals[3], cfg);
    }
    if (vals[4] != NULL) {
        check_admin(&ck, vals[4], cfg, &admin_listen);
    }
    if (vals[5] != NULL) {
        check_user(&ck, vals[5], cfg);
    }
    if (vals[6] != NULL) {
        check_workers(&ck, vals[6], cfg);
    }

    if (vals[1] != NULL && check_listeners(&ck, vals[1], cfg, &aux, &def, admin_listen) != 0) {
        goto oom;
    }

    if (ck.n_errors > 0) {
        goto err;
    }

    for (i = 0; i < cfg->n_listeners; i++) {
        tls_free(&aux[i].tls);
    }
    free(aux);
    tls_free(&def);
    return (cfg);

oom:
    config_errors_add(errs, file, 0, 0, "out of memory");
err:
    /* Whoever logs these errors may still follow log.format. */
    if (cfg != NULL) {
        errs->log_format = cfg->log_format;
    }
    if (aux != NULL) {
        for (i = 0; i < cfg->n_listeners; i++) {
            tls_free(&aux[i].tls);
        }
        free(aux);
    }
    tls_free(&def);
    config_free(cfg);
    return (NULL);
}
