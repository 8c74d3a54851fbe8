/*
 * fuzz_access: libFuzzer target for the access rules of CONTRACT §7 (proxy/proxy_access.c):
 * proxy_access_path_parse(), proxy_access_path_hygiene(), proxy_access_names_parse() and
 * proxy_access_check().
 *
 * Input: lines as in fuzz_input.h, with these tags:
 *   R<level><peers>[|<databases>]  a rule; level r(ead) w(rite) p (replicate) f (replicate-
 *                                  from) t (replicate-to) a(ll); peers and database globs
 *                                  comma-separated ("|" absent = every database)
 *   N sans     the peer's "DNS:a,IP:b" string      C cn   its CN (cn_fallback)
 *   M method   the method of the targets after it  T target   a request target
 *   W length   the size of the refusal text buffer
 * Checked besides crashes, leaks and undefined behaviour:
 *   - a parsed path has at most PROXY_PATH_MAX_SEGS non-empty segments, none "." or ".."
 *     nor holding a control byte, as many as the raw path has; percent-encoding the
 *     segments again and parsing gives the same segments (decoded exactly once);
 *   - proxy_access_path_hygiene() refuses exactly the origin-form targets in which a segment,
 *     decoded once (a bad escape read as a literal '%'), has a "." or ".." part when split
 *     at '/' and '\' (checked with a splitter of our own); a path it refuses neither parses
 *     nor is allowed by any rule; its reason fits its buffer, names the segment and holds no
 *     control byte, and the verdict does not depend on the buffer;
 *   - HEAD is judged as GET; read and write ignore the query; what read allows, write
 *     allows; replicate allows exactly what replicate-from or replicate-to allows; what a
 *     level allows for listed databases it allows for every database;
 *   - an allowed request under a level other than `all` has a path that parses, a first
 *     segment that does not start with '_' and that a listed glob matches (checked with
 *     a glob matcher of our own), and a method the level may use;
 *   - the refusal text fits its buffer, is printable and names the deciding rule.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_input.h"
#include "proxy_access.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_MAX_RULES 8
#define FZ_MAX_LIST  8

/* Rules built from R lines; the strings point into the input's store (split in place). */
struct fz_rules {
    struct config_access_rule v[FZ_MAX_RULES];
    char *peers[FZ_MAX_RULES][FZ_MAX_LIST];
    char *dbs[FZ_MAX_RULES][FZ_MAX_LIST];
    size_t n;
};

/* Split ${s} on ',' in place into at most FZ_MAX_LIST strings. */
static size_t
fz_split(char *s, char **out)
{
    size_t n = 0;

    while (n < FZ_MAX_LIST) {
        char *comma = strchr(s, ',');

        out[n++] = s;
        if (comma == NULL) {
            break;
        }
        *comma = '\0';
        s = comma + 1;
    }
    return n;
}

/* Add the rule an R line describes ("<level><peers>[|<databases>]"). */
static void
fz_rule_add(struct fz_rules *rs, char *s)
{
    struct config_access_rule *r;
    char *bar;

    if (rs->n == FZ_MAX_RULES || s[0] == '\0') {
        return;
    }
    r = &rs->v[rs->n];
    memset(r, 0, sizeof(*r));
    r->pos.line = (unsigned)rs->n + 1;
    r->allow = s[0] == 'w'   ? CONFIG_ALLOW_WRITE
               : s[0] == 'p' ? CONFIG_ALLOW_REPLICATE
               : s[0] == 'f' ? CONFIG_ALLOW_REPLICATE_FROM
               : s[0] == 't' ? CONFIG_ALLOW_REPLICATE_TO
               : s[0] == 'a' ? CONFIG_ALLOW_ALL
                             : CONFIG_ALLOW_READ;
    s++;
    if ((bar = strchr(s, '|')) != NULL) {
        *bar = '\0';
        r->n_databases = fz_split(bar + 1, rs->dbs[rs->n]);
        r->databases = rs->dbs[rs->n];
    }
    r->n_peers = fz_split(s, rs->peers[rs->n]);
    r->peers = rs->peers[rs->n];
    rs->n++;
}

/*
 * Our own glob, by recursion: '*' any run without '/', "**" (two or more '*') any run, '?' one
 * character but '/'; a wildcard never matches a leading '_'.
 */
static bool
fz_glob(const char *pat, const char *s, bool start)
{
    if (*pat == '\0') {
        return *s == '\0';
    }
    if (start && *s == '_' && *pat != '_') {
        return false;
    }
    if (pat[0] == '*' && pat[1] == '*') {
        size_t k = strspn(pat, "*");

        return fz_glob(pat + k, s, false) || (*s != '\0' && fz_glob(pat, s + 1, false));
    }
    if (*pat == '*') {
        return fz_glob(pat + 1, s, false) ||
               (*s != '\0' && *s != '/' && fz_glob(pat, s + 1, false));
    }
    return *s != '\0' && ((*pat == '?' && *s != '/') || *pat == *s) &&
           fz_glob(pat + 1, s + 1, false);
}

/* Percent-encode ${seg} so that it parses back to itself as one segment. */
static size_t
fz_encode(const char *seg, char *out, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t k = 0;

    for (const unsigned char *p = (const unsigned char *)seg; *p != '\0' && k + 4 < len; p++) {
        if (*p == '%' || *p == '/' || *p == '?' || *p == '#' || *p <= 0x20 || *p >= 0x7f) {
            out[k++] = '%';
            out[k++] = hex[*p >> 4];
            out[k++] = hex[*p & 15];
        } else {
            out[k++] = (char)*p;
        }
    }
    out[k] = '\0';
    return k;
}

/*
 * Our own reading of the hygiene rule: decode each segment of ${target} into a buffer (a bad
 * escape stays '%'), then look for a "." or ".." between '/' and '\'.  Returns 1 when one is
 * found, 0 when none is, -1 when a segment is too long for the buffer (no opinion).
 */
static int
fz_dot_hidden(const char *target)
{
    static char seg[8192];
    const char *p = target;

    if (target[0] != '/') {
        return 0;
    }
    while (*p == '/') {
        size_t n = 0, start = 0;

        p++;
        while (*p != '\0' && *p != '?' && *p != '#' && *p != '/') {
            unsigned int v;

            if (n == sizeof(seg)) {
                return -1;
            }
            if (p[0] == '%' && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2]) &&
                sscanf(p + 1, "%2x", &v) == 1) {
                seg[n++] = (char)v;
                p += 3;
            } else {
                seg[n++] = *p++;
            }
        }
        for (size_t i = 0; i <= n; i++) {
            if (i == n || seg[i] == '/' || seg[i] == '\\') {
                size_t len = i - start;

                if ((len == 1 && seg[start] == '.') ||
                    (len == 2 && seg[start] == '.' && seg[start + 1] == '.')) {
                    return 1;
                }
                start = i + 1;
            }
        }
    }
    return 0;
}

/* The properties of proxy_access_path_hygiene() for ${target}, with a reason buffer of ${whylen}.
 */
static int
fz_hygiene(const char *target, size_t whylen)
{
    static char why[1024];
    size_t len = whylen % sizeof(why);
    int rc = proxy_access_path_hygiene(target, NULL, 0);
    int hidden = fz_dot_hidden(target);

    fz_check(rc == 0 || rc == -1, "hygiene: neither 0 nor -1");
    fz_check(hidden < 0 || (rc == -1) == (hidden == 1),
             "hygiene: differs from our own reading of the rule");
    memset(why, 'X', sizeof(why));
    fz_check(proxy_access_path_hygiene(target, why, len) == rc,
             "hygiene: the buffer changed the verdict");
    fz_check(why[len] == 'X', "hygiene: reason written past its buffer");
    if (len > 0) {
        size_t wl = strnlen(why, len);

        fz_check(wl < len, "hygiene: reason not terminated within its buffer");
        fz_check(rc != 0 || wl == 0, "hygiene: a reason for an acceptable path");
        fz_check(rc == 0 || len < 18 || strncmp(why, "path segment \"", 14) == 0,
                 "hygiene: a reason that does not name the segment");
        for (size_t i = 0; i < wl; i++) {
            fz_check((unsigned char)why[i] >= 0x20 && why[i] != 0x7f, "hygiene: control byte");
        }
    }
    return rc;
}

/* The properties of proxy_access_path_parse() for ${target}; returns its result. */
static int
fz_path(const char *target, struct proxy_path *path)
{
    static char again[3 * sizeof(path->buf) + PROXY_PATH_MAX_SEGS + 2];
    struct proxy_path p2;
    size_t raw = 0, k = 0, plen;
    int rc = proxy_access_path_parse(target, path);

    if (rc != 0) {
        fz_check(path->n == 0, "a refused path with segments");
        return rc;
    }
    fz_check(proxy_access_path_hygiene(target, NULL, 0) == 0, "path: parsed what hygiene refuses");
    fz_check(target[0] == '/' && path->n <= PROXY_PATH_MAX_SEGS, "path: origin form, at most 16");
    /* Raw segments: components of the path part, one trailing '/' aside. */
    plen = strcspn(target, "?#");
    for (size_t i = 1; i < plen; i++) {
        if (target[i - 1] == '/' && target[i] != '/') {
            raw++;
        }
    }
    fz_check(raw == path->n, "path: segment count differs from the raw path");
    for (size_t i = 0; i < path->n; i++) {
        const char *s = path->seg[i];

        fz_check(s >= path->buf && s < path->buf + sizeof(path->buf), "path: segment outside buf");
        fz_check(s[0] != '\0' && strcmp(s, ".") != 0 && strcmp(s, "..") != 0,
                 "path: empty, \".\" or \"..\" segment");
        for (const unsigned char *c = (const unsigned char *)s; *c != '\0'; c++) {
            fz_check(*c >= 0x20 && *c != 0x7f, "path: control byte in a segment");
        }
        again[k++] = '/';
        k += fz_encode(s, again + k, sizeof(again) - k - 1);
    }
    if (path->n == 0) {
        again[k++] = '/';
    }
    again[k] = '\0';
    if (proxy_access_path_parse(again, &p2) == 0) {
        fz_check(p2.n == path->n, "path: re-encoded path has other segments");
        for (size_t i = 0; i < p2.n; i++) {
            fz_check(strcmp(p2.seg[i], path->seg[i]) == 0, "path: decoded more than once");
        }
    } else {
        /* Only when the encoded form no longer fits. */
        fz_check(strlen(again) > sizeof(path->buf) - PROXY_PATH_MAX_SEGS,
                 "path: re-encoded path refused");
    }
    return rc;
}

/* proxy_access_check() with one rule changed to ${allow} and ${dbs}. */
static int
fz_check_with(const struct fz_rules *rs, size_t i, enum config_allow allow, bool every_db,
              const struct proxy_peer_names *names, const char *method, const char *target)
{
    struct config_access_rule v[FZ_MAX_RULES];
    char why[600];

    memcpy(v, rs->v, sizeof(v));
    v[i].allow = allow;
    if (every_db) {
        v[i].databases = NULL;
        v[i].n_databases = 0;
    }
    return proxy_access_check(v, rs->n, names, method, target, why, sizeof(why), NULL);
}

/* The properties of proxy_access_check() for one request. */
static void
fz_request(const struct fz_rules *rs, const struct proxy_peer_names *names, const char *method,
           const char *target, size_t whylen)
{
    static char why[4096];
    const struct config_access_rule *rule = NULL;
    struct proxy_path path;
    size_t i;
    int rc, path_rc = fz_path(target, &path), hygiene_rc = fz_hygiene(target, whylen);

    whylen = whylen % sizeof(why);
    memset(why, 'X', sizeof(why));
    rc = proxy_access_check(rs->v, rs->n, names, method, target, why, whylen, &rule);
    if (whylen > 0) {
        size_t wl = strnlen(why, whylen);

        fz_check(wl < whylen, "refusal text not terminated within its buffer");
        fz_check(fz_printable(why, wl), "refusal text not printable");
        fz_check(rc != 0 || wl == 0, "an allowed request with a refusal text");
        fz_check(rc == 0 || wl > 0 || whylen < 2, "a refusal without a text");
    }
    fz_check(why[whylen] == 'X', "refusal text written past its buffer");
    if (rs->n == 0) {
        return;
    }
    fz_check(rule == NULL || (rule >= rs->v && rule < rs->v + rs->n), "matched rule not a rule");
    fz_check(rc == 0 ? rule != NULL : true, "allowed without a rule");
    if (rule == NULL) {
        return;
    }
    fz_check(hygiene_rc == 0 || rc != 0, "a rule allowed what hygiene refuses");
    i = (size_t)(rule - rs->v);
    if (strcmp(method, "HEAD") == 0) {
        fz_check(fz_check_with(rs, i, rule->allow, false, names, "GET", target) == rc,
                 "HEAD judged unlike GET");
    }
    if (rule->allow == CONFIG_ALLOW_READ || rule->allow == CONFIG_ALLOW_WRITE) {
        char plain[4096];
        size_t pl = strcspn(target, "?#");

        if (pl < sizeof(plain)) {
            memcpy(plain, target, pl);
            plain[pl] = '\0';
            fz_check(fz_check_with(rs, i, rule->allow, false, names, method, plain) == rc,
                     "read/write looked at the query");
        }
    }
    if (rule->allow == CONFIG_ALLOW_REPLICATE) {
        bool from =
            fz_check_with(rs, i, CONFIG_ALLOW_REPLICATE_FROM, false, names, method, target) == 0;
        bool to =
            fz_check_with(rs, i, CONFIG_ALLOW_REPLICATE_TO, false, names, method, target) == 0;

        fz_check((rc == 0) == (from || to), "replicate is not replicate-from + replicate-to");
    }
    if (rc == 0 && rule->allow == CONFIG_ALLOW_READ) {
        fz_check(fz_check_with(rs, i, CONFIG_ALLOW_WRITE, false, names, method, target) == 0,
                 "read allows what write refuses");
    }
    if (rc == 0) {
        fz_check(fz_check_with(rs, i, rule->allow, true, names, method, target) == 0,
                 "listing databases allowed more");
        fz_check(fz_check_with(rs, i, CONFIG_ALLOW_ALL, false, names, method, target) == 0,
                 "all refuses what a level allows");
    }
    if (rc != 0 || rule->allow == CONFIG_ALLOW_ALL) {
        return;
    }
    fz_check(path_rc == 0, "allowed a path that does not parse");
    if (path.n > 0) {
        bool listed = rule->databases == NULL;

        fz_check(path.seg[0][0] != '_', "allowed a server-wide path below `all`");
        for (size_t j = 0; j < rule->n_databases && !listed; j++) {
            listed = fz_glob(rule->databases[j], path.seg[0], true);
        }
        fz_check(listed, "allowed a database no glob matches");
    }
    if (rule->allow == CONFIG_ALLOW_READ) {
        fz_check(strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0 ||
                     (strcmp(method, "POST") == 0 && path.n >= 2),
                 "read allowed a method other than GET, HEAD or POST on a resource");
    }
    if (rule->allow == CONFIG_ALLOW_REPLICATE || rule->allow == CONFIG_ALLOW_REPLICATE_FROM ||
        rule->allow == CONFIG_ALLOW_REPLICATE_TO) {
        fz_check(strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0 ||
                     strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0,
                 "replicate allowed a method outside GET, HEAD, PUT, POST");
    }
}

/* A copy of ${s} with bytes outside printable ASCII as '?' (NULL for NULL). */
static char *
fz_mapped(const char *s)
{
    char *t = s != NULL ? strdup(s) : NULL;

    for (char *c = t; c != NULL && *c != '\0'; c++) {
        *c = ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e) ? '?' : *c;
    }
    return t;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz_input in;
    struct fz_rules rs;
    struct proxy_peer_names names;
    const char *sans = NULL, *cn = NULL, *method = "GET";
    char *msans, *mcn;
    size_t whylen = 512;

    if (fz_input_parse(data, size, &in) != 0) {
        return 0;
    }
    rs.n = 0;
    for (size_t i = 0; i < in.n; i++) {
        switch (in.v[i].tag) {
        case 'N':
            sans = in.v[i].s;
            break;
        case 'C':
            cn = in.v[i].s;
            break;
        case 'W':
            whylen = strtoul(in.v[i].s, NULL, 10);
            break;
        default:
            break;
        }
    }
    proxy_access_names_parse(sans, cn, &names);
    fz_check(names.n <= PROXY_ACCESS_MAX_NAMES, "too many names");
    /* Compared with the SANs and CN as names hold them: non-printable bytes as '?'. */
    msans = fz_mapped(sans);
    mcn = fz_mapped(cn);
    for (size_t i = 0; i < names.n; i++) {
        fz_check(names.v[i][0] != '\0', "an empty peer name");
        fz_check(fz_printable(names.v[i], strlen(names.v[i])), "a peer name not printable");
        fz_check((msans != NULL && strstr(msans, names.v[i]) != NULL) ||
                     (mcn != NULL && strcmp(names.v[i], mcn) == 0),
                 "a peer name from neither the SANs nor the CN");
    }
    free(msans);
    free(mcn);
    /* Targets with no rules: everything is allowed. */
    for (size_t i = 0; i < in.n; i++) {
        if (in.v[i].tag == 'T') {
            fz_check(proxy_access_check(NULL, 0, &names, method, in.v[i].s, NULL, 0, NULL) == 0,
                     "refused without rules");
            (void)fz_hygiene(in.v[i].s, whylen);
        }
    }
    for (size_t i = 0; i < in.n; i++) {
        if (in.v[i].tag == 'R') {
            fz_rule_add(&rs, in.v[i].s);
        }
    }
    for (size_t i = 0; i < in.n; i++) {
        if (in.v[i].tag == 'M') {
            method = in.v[i].s;
        } else if (in.v[i].tag == 'T' && rs.n > 0) {
            fz_request(&rs, &names, method, in.v[i].s, whylen);
        }
    }
    fz_input_free(&in);
    return 0;
}
