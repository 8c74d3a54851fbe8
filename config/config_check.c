/*
 * config_check: the schema walk.  Each mapping is checked against its list of known keys
 * (h2o's parse_mapping): unknown keys, keys of a later release, duplicates and missing required
 * keys are errors, then each value is checked for its type and converted.  Every error is
 * collected; the walk fails at the end when there was any.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

    if (n->type == CONFIG_NODE_MAPPING)
        return ("a mapping");
    if (n->type == CONFIG_NODE_SEQUENCE)
        return ("a sequence");
    if (n->type != CONFIG_NODE_SCALAR || config_node_is_null(n))
        return ("nothing");

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

    if (n->type == CONFIG_NODE_INVALID)
        return (false);
    if (n->type == CONFIG_NODE_SCALAR && !config_node_is_null(n))
        return (true);
    ck_err(ck, n, "%s: expected %s, got %s", path, expected, what(n, got, sizeof(got)));
    return (false);
}

/* True when ${n} is a node of ${type}; else an error. */
static bool
want_type(struct check *ck, const struct config_node *n, const char *path,
          enum config_node_type type)
{
    char got[128];

    if (n->type == CONFIG_NODE_INVALID)
        return (false);
    if (n->type == type)
        return (true);
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
            v->type == CONFIG_NODE_SCALAR && !config_node_is_null(v))
            return (v->text);
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
        if (specs[s].flags & KEY_LATER)
            continue;
        o += (size_t)snprintf(expected + o, sizeof(expected) - o, "%s%s", o > 0 ? ", " : "",
                              specs[s].name);
        if (o >= sizeof(expected))
            break;
    }

    for (i = 0; i + 1 < map->n_items; i += 2) {
        const struct config_node *k = map->items[i];
        const struct config_node *v = map->items[i + 1];

        if (k->type == CONFIG_NODE_INVALID)
            continue;
        if (k->type != CONFIG_NODE_SCALAR || config_node_is_null(k)) {
            ck_err(ck, k, "expected a key name %s, got %s", where, what(k, got, sizeof(got)));
            continue;
        }
        for (s = 0; s < n_specs; s++) {
            if (strcmp(k->text, specs[s].name) == 0)
                break;
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
        if ((specs[s].flags & KEY_REQUIRED) && keys[s] == NULL)
            ck_err(ck, map, "missing required key \"%s\" %s", specs[s].name, where);
    }
}

/* A string value: copy it into ${out} (replacing what was there).  Returns 0 or -1. */
static int
get_string(struct check *ck, const struct config_node *n, const char *path, char **out)
{
    char *s;

    if (!want_scalar(ck, n, path, "a string"))
        return (-1);
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

    if (!want_scalar(ck, n, path, "true or false"))
        return (-1);
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

    if (!want_scalar(ck, n, path, "an integer"))
        return (-1);
    for (p = n->text; *p >= '0' && *p <= '9'; p++) {
        if (v > hi)
            break; /* already out of range: stop before it can overflow */
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

    if (!want_scalar(ck, n, path, "a duration like 10s or 500ms"))
        return (-1);
    if (config_parse_duration(n->text, &v) != 0) {
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

    if (!want_scalar(ck, n, path, expected))
        return (-1);
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
                     allow_name ? "host:port" : "an IP address and port like 127.0.0.1:7001"))
        return (-1);
    if (config_parse_addr(n->text, allow_name, out, why, sizeof(why)) != 0) {
        ck_err(ck, n, "%s: %s", path, why);
        return (-1);
    }
    return (0);
}

/* Thread-safe strerror(). */
static const char *
errstr(int e, char *buf, size_t len)
{
    if (strerror_r(e, buf, len) != 0)
        snprintf(buf, len, "error %d", e);
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

    if ((s = malloc(dl + 1 + rl + 1)) == NULL)
        return (NULL);
    memcpy(s, dir, dl);
    s[dl] = '/';
    memcpy(s + dl + 1, rel, rl + 1);

    /* Copy component by component, dropping "." and empty ones. */
    out = s;
    o = s;
    p = s;
    if (*p == '/')
        *o++ = *p++;
    while (*p != '\0') {
        const char *end = strchr(p, '/');
        size_t cl = end == NULL ? strlen(p) : (size_t)(end - p);

        if (cl == 0 || (cl == 1 && p[0] == '.')) {
            p += cl;
        } else {
            if (o > out && o[-1] != '/')
                *o++ = '/';
            memmove(o, p, cl);
            o += cl;
            p += cl;
        }
        if (*p == '/')
            p++;
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

    if (!want_scalar(ck, n, path, "a file path"))
        return (-1);
    if (ck->basedir != NULL && n->text[0] != '/')
        resolved = join_path(ck->basedir, n->text);
    else
        resolved = strdup(n->text);
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
    return (0);
}

/* Defaults of a tls: mapping with nothing set. */
static void
tls_init(struct tls_set *t)
{
    memset(t, 0, sizeof(*t));
    t->v.min_version = 0x0303;
    t->v.verify_depth = 4;
    t->v.cn_fallback = false;
    t->v.session_resumption = true;
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

        if (keys[k] != NULL)
            t->set |= 1u << k;
        if (v == NULL)
            continue;
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
            if (!want_scalar(ck, v, kp, "\"1.2\" or \"1.3\""))
                break;
            if (strcmp(v->text, "1.2") == 0)
                t->v.min_version = 0x0303;
            else if (strcmp(v->text, "1.3") == 0)
                t->v.min_version = 0x0304;
            else
                ck_err(ck, v, "%s: expected \"1.2\" or \"1.3\", got %s", kp,
                       what(v, got, sizeof(got)));
            break;
        case TLS_VERIFY_DEPTH:
            if (get_int(ck, v, kp, 1, 32, &depth) == 0)
                t->v.verify_depth = (int)depth;
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

    if (!want_type(ck, n, "log", CONFIG_NODE_MAPPING))
        return;
    check_keys(ck, n, "in log", specs, 2, keys, vals);
    if (vals[0] != NULL &&
        get_enum(ck, vals[0], "log.level", levels, 4, "error, warn, info or debug", &v) == 0)
        cfg->log_level = (enum config_log_level)v;
    if (vals[1] != NULL && get_enum(ck, vals[1], "log.format", formats, 2, "text or json", &v) == 0)
        cfg->log_format = (enum config_log_format)v;
}

/* Check the limits: mapping. */
static void
check_limits(struct check *ck, const struct config_node *n, struct config *cfg)
{
    static const struct key_spec specs[] = {
        {"max_connections", 0},        {"handshake_timeout", 0},       {"idle_timeout", 0},
        {"header_timeout", KEY_LATER}, {"backend_timeout", KEY_LATER}, {"drain_timeout", KEY_LATER},
    };
    const struct config_node *keys[6];
    const struct config_node *vals[6];
    unsigned long v;

    if (!want_type(ck, n, "limits", CONFIG_NODE_MAPPING))
        return;
    check_keys(ck, n, "in limits", specs, 6, keys, vals);
    if (vals[0] != NULL && get_int(ck, vals[0], "limits.max_connections", 1, 1000000, &v) == 0)
        cfg->limits.max_connections = (unsigned)v;
    if (vals[1] != NULL)
        get_duration(ck, vals[1], "limits.handshake_timeout", &cfg->limits.handshake_timeout_ms);
    if (vals[2] != NULL)
        get_duration(ck, vals[2], "limits.idle_timeout", &cfg->limits.idle_timeout_ms);
}

/* True when ${s} is a listener name: [A-Za-z0-9_.-]+. */
static bool
valid_name(const char *s)
{
    if (*s == '\0')
        return (false);
    for (; *s != '\0'; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '.' || *s == '-'))
            return (false);
    }
    return (true);
}

/* True when ${s} is an allow: entry: a host name, "*." and a host name, or an IP literal. */
static bool
valid_allow(const char *s)
{
    unsigned char bytes[16];
    int family;

    if (config_ip_parse(s, bytes, &family) == 0)
        return (true);
    if (s[0] == '*' && s[1] == '.')
        return (config_name_is_dns(s + 2));
    return (config_name_is_dns(s));
}

/* Check listener ${l}'s allow: sequence ${n}. */
static void
check_allow(struct check *ck, const struct config_node *n, const char *lp,
            struct config_listener *l)
{
    char path[192];
    char got[128];
    size_t i;

    snprintf(path, sizeof(path), "%s.allow", lp);
    if (!want_type(ck, n, path, CONFIG_NODE_SEQUENCE))
        return;
    if (n->n_items == 0) {
        ck_err(ck, n,
               "%s: expected at least one name, got an empty sequence; remove allow: to accept "
               "any certificate the CA issued",
               path);
        return;
    }
    if ((l->allow = calloc(n->n_items, sizeof(*l->allow))) == NULL) {
        ck_err(ck, n, "out of memory");
        return;
    }
    for (i = 0; i < n->n_items; i++) {
        const struct config_node *e = n->items[i];
        char ep[224];

        snprintf(ep, sizeof(ep), "%s[%zu]", path, i);
        if (!want_scalar(ck, e, ep, "a host name, a *.domain wildcard or an IP address"))
            continue;
        if (!valid_allow(e->text)) {
            ck_err(ck, e, "%s: expected a host name, a *.domain wildcard or an IP address, got %s",
                   ep, what(e, got, sizeof(got)));
            continue;
        }
        if ((l->allow[l->n_allow] = strdup(e->text)) == NULL) {
            ck_err(ck, e, "out of memory");
            continue;
        }
        l->n_allow++;
    }
}

/* The keys of a listener, in the order of the schema; index into vals[] below. */
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
    {"pool", KEY_LATER},
    {"access", KEY_LATER},
    {"couchdb_proxy_auth", KEY_LATER},
    {"client_cert_header", KEY_LATER},
    {"host_header", KEY_LATER},
};

/* Check listeners[${idx}] mapping ${n} into ${l} and ${aux}. */
static void
check_listener(struct check *ck, const struct config_node *n, size_t idx, struct config_listener *l,
               struct listener_aux *aux)
{
    static const char *const modes[] = {"inbound", "outbound"};
    static const char *const protocols[] = {"http", "tcp"};
    static const char *const client_certs[] = {"required", "none"};
    const struct config_node *keys[L_NKEYS];
    const struct config_node *vals[L_NKEYS];
    const char *name;
    char lp[64];
    char where[192];
    char kp[192];
    char got[128];
    int v;

    snprintf(lp, sizeof(lp), "listeners[%zu]", idx);
    l->pos = n->pos;
    tls_init(&aux->tls);
    if (!want_type(ck, n, lp, CONFIG_NODE_MAPPING)) {
        snprintf(aux->label, sizeof(aux->label), "%s", lp);
        return;
    }

    /* Name the listener in messages about the whole mapping when it has a usable name. */
    name = map_scalar(n, "name");
    if (name != NULL && valid_name(name) && strlen(name) < 64)
        snprintf(aux->label, sizeof(aux->label), "%s (%s)", lp, name);
    else
        snprintf(aux->label, sizeof(aux->label), "%s", lp);
    snprintf(where, sizeof(where), "in %s", aux->label);
    check_keys(ck, n, where, listener_keys, L_NKEYS, keys, vals);

    if (vals[L_NAME] != NULL) {
        snprintf(kp, sizeof(kp), "%s.name", lp);
        if (want_scalar(ck, vals[L_NAME], kp, "a name")) {
            if (!valid_name(vals[L_NAME]->text))
                ck_err(ck, vals[L_NAME],
                       "%s: expected a name of letters, digits, \"_\", \".\" and \"-\", got %s", kp,
                       what(vals[L_NAME], got, sizeof(got)));
            else if (get_string(ck, vals[L_NAME], kp, &l->name) == 0)
                aux->name_node = vals[L_NAME];
        }
    }

    if (vals[L_MODE] != NULL) {
        snprintf(kp, sizeof(kp), "%s.mode", lp);
        if (get_enum(ck, vals[L_MODE], kp, modes, 2, "inbound or outbound", &v) == 0) {
            l->mode = (enum config_mode)v;
            aux->mode_ok = true;
        }
    }

    if (vals[L_LISTEN] != NULL) {
        snprintf(kp, sizeof(kp), "%s.listen", lp);
        if (get_addr(ck, vals[L_LISTEN], kp, false, &l->listen) == 0) {
            aux->listen_ok = true;
            aux->listen_node = vals[L_LISTEN];
        }
    }

    /* Keys that belong to one mode only: refuse them on the other. */
    if (aux->mode_ok && l->mode == CONFIG_MODE_OUTBOUND) {
        if (keys[L_BACKEND] != NULL)
            ck_err(ck, keys[L_BACKEND],
                   "backend applies only to inbound listeners; an outbound listener uses peer");
        if (keys[L_CLIENT_CERT] != NULL)
            ck_err(ck, keys[L_CLIENT_CERT],
                   "client_cert applies only to inbound listeners; an outbound listener always "
                   "presents tls.cert to its peer");
        if (keys[L_ALLOW] != NULL)
            ck_err(ck, keys[L_ALLOW],
                   "allow applies only to inbound listeners; an outbound listener checks the "
                   "peer's certificate against the host of peer");
        if (keys[L_PEER] == NULL)
            ck_err(ck, n, "missing required key \"peer\" %s (an outbound listener connects to it)",
                   where);
        vals[L_BACKEND] = vals[L_CLIENT_CERT] = vals[L_ALLOW] = NULL;
    } else if (aux->mode_ok && l->mode == CONFIG_MODE_INBOUND) {
        if (keys[L_PEER] != NULL)
            ck_err(ck, keys[L_PEER],
                   "peer applies only to outbound listeners; an inbound listener uses backend");
        if (keys[L_CONNECT] != NULL)
            ck_err(ck, keys[L_CONNECT], "connect applies only to outbound listeners");
        if (keys[L_BACKEND] == NULL)
            ck_err(ck, n,
                   "missing required key \"backend\" %s (an inbound listener forwards to it)",
                   where);
        vals[L_PEER] = vals[L_CONNECT] = NULL;
    }

    if (vals[L_BACKEND] != NULL) {
        snprintf(kp, sizeof(kp), "%s.backend", lp);
        get_addr(ck, vals[L_BACKEND], kp, true, &l->backend);
    }
    if (vals[L_PEER] != NULL) {
        snprintf(kp, sizeof(kp), "%s.peer", lp);
        get_addr(ck, vals[L_PEER], kp, true, &l->peer);
    }
    if (vals[L_CONNECT] != NULL) {
        snprintf(kp, sizeof(kp), "%s.connect", lp);
        if (get_addr(ck, vals[L_CONNECT], kp, false, &l->connect) == 0)
            l->has_connect = true;
    }
    if (vals[L_PROTOCOL] != NULL) {
        snprintf(kp, sizeof(kp), "%s.protocol", lp);
        if (get_enum(ck, vals[L_PROTOCOL], kp, protocols, 2, "http or tcp", &v) == 0)
            l->protocol = (enum config_protocol)v;
    }
    if (vals[L_CLIENT_CERT] != NULL) {
        snprintf(kp, sizeof(kp), "%s.client_cert", lp);
        if (get_enum(ck, vals[L_CLIENT_CERT], kp, client_certs, 2, "required or none", &v) == 0)
            l->client_cert = (enum config_client_cert)v;
    }
    if (vals[L_ALLOW] != NULL)
        check_allow(ck, vals[L_ALLOW], lp, l);
    if (vals[L_TLS] != NULL) {
        snprintf(kp, sizeof(kp), "%s.tls", lp);
        check_tls(ck, vals[L_TLS], kp, &aux->tls);
    }
}

/* Copy ${from} into ${to}.  Returns 0 or -1 (out of memory). */
static int
copy_file(struct config_file *to, const struct config_file *from)
{
    char *p = NULL;

    if (from->path != NULL && (p = strdup(from->path)) == NULL)
        return (-1);
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
        copy_file(&l->tls.crl, &pick(aux, def, TLS_CRL)->crl) != 0)
        ck_err(ck, at, "out of memory");
    l->tls.min_version = pick(aux, def, TLS_MIN_VERSION)->min_version;
    l->tls.verify_depth = pick(aux, def, TLS_VERIFY_DEPTH)->verify_depth;
    l->tls.cn_fallback = pick(aux, def, TLS_CN_FALLBACK)->cn_fallback;
    l->tls.session_resumption = pick(aux, def, TLS_SESSION_RESUMPTION)->session_resumption;

    if (!aux->mode_ok)
        return;
    for (i = 0; i < 3; i++) {
        unsigned bit = 1u << needed_keys[i];
        const char *hint = "";

        if (needed_keys[i] == TLS_CA) {
            /* An inbound listener that does not ask for client certificates needs no CA. */
            if (l->mode == CONFIG_MODE_INBOUND && l->client_cert == CONFIG_CLIENT_CERT_NONE)
                continue;
            hint = l->mode == CONFIG_MODE_OUTBOUND
                       ? " (an outbound listener verifies its peer against it)"
                       : " (an inbound listener with client_cert: required verifies clients "
                         "against it)";
        }
        if (!(def->set & bit) && !(aux->tls.set & bit))
            ck_err(ck, at, "%s: no tls.%s: set it under tls: or in the listener's tls:%s",
                   aux->label, needed[i], hint);
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

    if (a->port != b->port)
        return (false);
    if (config_ip_parse(a->host, ab, &af) != 0 || config_ip_parse(b->host, bb, &bf) != 0)
        return (strcmp(a->host, b->host) == 0);
    /* A wildcard address takes the port on every address. */
    if (memcmp(ab, zero, 16) == 0 || memcmp(bb, zero, 16) == 0)
        return (true);
    return (af == bf && memcmp(ab, bb, 16) == 0);
}

/* Duplicate listener names and listen addresses. */
static void
check_duplicates(struct check *ck, const struct config *cfg, const struct listener_aux *aux)
{
    char a1[300];
    char a2[300];
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
                       i, config_addr_format(&cfg->listeners[i].listen, a1, sizeof(a1)),
                       config_addr_format(&cfg->listeners[j].listen, a2, sizeof(a2)), aux[j].label,
                       aux[j].listen_node->pos.line, aux[j].listen_node->pos.col);
                break;
            }
        }
    }
}

static const struct key_spec top_keys[] = {
    {"tls", 0},
    {"listeners", KEY_REQUIRED},
    {"log", 0},
    {"limits", 0},
    {"admin", KEY_LATER},
    {"user", KEY_LATER},
    {"workers", KEY_LATER},
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
    const struct config_node *ls;
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

    if ((cfg = calloc(1, sizeof(*cfg))) == NULL)
        goto oom;
    if ((cfg->path = strdup(file)) == NULL)
        goto oom;
    cfg->log_level = CONFIG_LOG_INFO;
    cfg->log_format = CONFIG_LOG_TEXT;
    cfg->limits.max_connections = 10000;
    cfg->limits.handshake_timeout_ms = 10 * 1000;
    cfg->limits.idle_timeout_ms = 300 * 1000;

    if (root->type != CONFIG_NODE_MAPPING) {
        ck_err(&ck, root, "expected a mapping at the top level (with listeners:), got %s",
               what(root, got, sizeof(got)));
        goto err;
    }
    check_keys(&ck, root, "at the top level", top_keys, TOP_NKEYS, keys, vals);

    if (vals[0] != NULL)
        check_tls(&ck, vals[0], "tls", &def);
    if (vals[2] != NULL)
        check_log(&ck, vals[2], cfg);
    if (vals[3] != NULL)
        check_limits(&ck, vals[3], cfg);

    if ((ls = vals[1]) != NULL && want_type(&ck, ls, "listeners", CONFIG_NODE_SEQUENCE)) {
        if (ls->n_items == 0) {
            ck_err(&ck, ls, "listeners: expected at least one listener, got an empty sequence");
        } else {
            cfg->listeners = calloc(ls->n_items, sizeof(*cfg->listeners));
            aux = calloc(ls->n_items, sizeof(*aux));
            if (cfg->listeners == NULL || aux == NULL)
                goto oom;
            cfg->n_listeners = ls->n_items;
            for (i = 0; i < ls->n_items; i++)
                check_listener(&ck, ls->items[i], i, &cfg->listeners[i], &aux[i]);
            for (i = 0; i < ls->n_items; i++)
                merge_tls(&ck, ls->items[i], &cfg->listeners[i], &aux[i], &def);
            check_duplicates(&ck, cfg, aux);
        }
    }

    if (ck.n_errors > 0)
        goto err;

    for (i = 0; i < cfg->n_listeners; i++)
        tls_free(&aux[i].tls);
    free(aux);
    tls_free(&def);
    return (cfg);

oom:
    config_errors_add(errs, file, 0, 0, "out of memory");
err:
    if (aux != NULL) {
        for (i = 0; i < cfg->n_listeners; i++)
            tls_free(&aux[i].tls);
        free(aux);
    }
    tls_free(&def);
    config_free(cfg);
    return (NULL);
}
