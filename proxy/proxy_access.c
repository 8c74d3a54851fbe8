/*
 * proxy_access: the pure functions of CONTRACT §6 and §7 (see proxy_access.h).
 *
 * Request classification.  A request is first reduced to what CouchDB will do with it: the
 * path is split on '/' and each segment percent-decoded once (CouchDB's chttpd does the same,
 * so "%2F" stays inside a segment and "%5Fall_docs" is "_all_docs"), then seg[0] is the
 * database and seg[1] either a document id, "_design"/"_local" (+ seg[2]), a "_design/x" or
 * "_local/x" id written with "%2F", or an endpoint ("_changes").  HEAD is classified as GET.
 * Methods are compared case-sensitively ("get" is not GET).  What each level allows:
 *
 *   replicate-from  what a replicator sends to this node as the replication source
 *              (CouchDB's couch_replicator_api_wrap and scheduler_job, PouchDB's replicate
 *              over pouchdb-adapter-http): GET /  ·  GET /db  ·  GET, POST /db/_changes and
 *              /db/_all_docs (PouchDB)  ·  POST /db/_bulk_get, _ensure_full_commit  ·  GET,
 *              PUT /db/_local/id (the checkpoint is written on the source too)  ·  GET
 *              /db/doc and /db/_design/d with revs=true or open_revs=...  ·  GET
 *              /db/doc/att and /db/_design/d/att with rev=... (PouchDB)  ·  GET
 *              /db/_design/d (CouchDB's replicator reads the filter function of a filtered
 *              replication that way; every design document is readable with open_revs
 *              anyway).
 *   replicate-to  what it sends to this node as the replication target: GET /  ·  GET, PUT
 *              /db (PUT creates the target, with ?q=&n=&partitioned= for create_target)  ·
 *              POST /db/_revs_diff, _bulk_docs, _ensure_full_commit  ·  GET, PUT
 *              /db/_local/id  ·  PUT /db/doc and /db/_design/d with new_edits=false
 *              (multipart/related when there are attachments).
 *   replicate  both: what replicate-from or replicate-to allows.
 *   read       GET / and /db  ·  GET documents, attachments, _local and _design documents,
 *              /db/_design/d/_view/v (+ POST, + POST .../queries), _info, _show, _list,
 *              _search, _nouveau  ·  GET /db/_all_docs, _changes, _design_docs, _local_docs,
 *              _index  ·  POST /db/_all_docs, _bulk_get, _revs_diff, _changes, _find,
 *              _explain, _design_docs, _local_docs, _missing_revs (+ POST .../queries for
 *              the three *_docs).
 *   write      read + POST /db (new document), POST /db/_bulk_docs, _ensure_full_commit,
 *              _index (and DELETE /db/_index/...)  ·  PUT, POST, DELETE, COPY on documents,
 *              _design and _local documents  ·  PUT, DELETE on attachments  ·  POST, PUT
 *              /db/_design/d/_update/...  Not: PUT/DELETE /db (creating or deleting a
 *              database is administration), _security, _compact, _purge, _view_cleanup,
 *              _revs_limit, _rewrite.  write covers every request of a replication into an
 *              existing database.
 *   all        everything.
 *
 * Databases.  No level but all reaches a path whose first segment starts with '_'
 * (server-wide: /_all_dbs, /_config, /_session and the databases _users, _replicator).
 * `databases` globs are matched, case sensitive, against the decoded seg[0], which may hold
 * '/' (written "%2F"): '*' matches any run of characters but '/', '?' one character but '/',
 * and "**" any run of characters, '/' included, so "pat*" matches "pat-2024" and not
 * "pat-2024/../_users"; a database name with '/' needs "**" or a literal '/' in the glob.
 * Like a shell's '*' and leading '.', a wildcard never matches a leading '_': only a glob
 * written with a literal leading '_' ("_users") lets `all` reach a server-wide path.  "/" is
 * not a database: every level may GET it.
 *
 * Paths.  No rule allows a path that proxy_access_path_hygiene() refuses: a segment that decodes to
 * "." or "..", or holds one between an encoded '/' or a '\' ("..%2F..%2F_all_dbs"), which a
 * server that decodes first and resolves dot segments after would follow elsewhere.  Apart
 * from that, `all` without `databases` allows everything, malformed paths included (the
 * backend judges them); every other rule refuses a path proxy_access_path_parse() refuses.
 *
 * Query parameters the levels look at (revs, open_revs, new_edits, rev) are percent-decoded
 * ('+' is a space, as in CouchDB's query parser).  To leave no doubt about what the backend
 * sees, a parameter that appears twice, has a bad escape, or a query that holds a raw ';'
 * (some parsers split on it) counts as absent.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "config.h"
#include "tls.h"

#include "proxy_access.h"

/* ---- small helpers ---- */

static bool
starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The value of hex digit ${c}, or -1 (OpenSSL's, so that '\0' and non-ASCII are -1 too). */
static int
hex_value(int c)
{
    return OPENSSL_hexchar2int((unsigned char)c);
}

/* A bounded string builder: ${over} is set when something did not fit. */
struct sbuf {
    char *buf;
    size_t len;
    size_t pos;
    bool over;
};

static void
sb_init(struct sbuf *sb, char *buf, size_t len)
{
    sb->buf = buf;
    sb->len = len;
    sb->pos = 0;
    sb->over = len == 0;
    if (len > 0) {
        buf[0] = '\0';
    }
}

static void
sb_putc(struct sbuf *sb, char c)
{
    if (sb->over || sb->pos + 1 >= sb->len) {
        sb->over = true;
        return;
    }
    sb->buf[sb->pos++] = c;
    sb->buf[sb->pos] = '\0';
}

static void
sb_puts(struct sbuf *sb, const char *s)
{
    while (*s != '\0' && !sb->over) {
        sb_putc(sb, *s++);
    }
}

/* Append ${s} with every byte outside printable ASCII shown as '?' (log and header safety). */
static void
sb_puts_printable(struct sbuf *sb, const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n && !sb->over; i++) {
        unsigned char c = (unsigned char)s[i];

        sb_putc(sb, (char)((c < 0x20 || c > 0x7e) ? '?' : c));
    }
}

/*
 * Append s[0..n) in double quotes, printable as by sb_puts_printable() and with '"' shown as
 * '?' so that the quotes stay unambiguous; over ${max} bytes, its first max - 3 and "...".
 */
static void
sb_puts_quoted(struct sbuf *sb, const char *s, size_t n, size_t max)
{
    size_t i;

    sb_putc(sb, '"');
    for (i = 0; i < n && !sb->over; i++) {
        if (n > max && i == max - 3) {
            sb_puts(sb, "...");
            break;
        }
        sb_puts_printable(sb, s[i] == '"' ? "?" : s + i, 1);
    }
    sb_putc(sb, '"');
}

/*
 * End the text in ${sb}: when something did not fit, its last three bytes become "...",
 * without leaving the first byte of a cut UTF-8 sequence before them.
 */
static void
sb_finish(struct sbuf *sb)
{
    const unsigned char *b = (const unsigned char *)sb->buf;
    size_t end, lead, need;

    if (!sb->over || sb->len <= 4) {
        return;
    }
    end = sb->len - 4;
    /* The cut may fall inside a UTF-8 sequence ("§"): drop what it left of it. */
    lead = end;
    while (lead > 0 && (b[lead - 1] & 0xc0) == 0x80) {
        lead--;
    }
    if (lead > 0 && b[lead - 1] >= 0xc0) {
        lead--;
        need = b[lead] >= 0xf0 ? 4 : b[lead] >= 0xe0 ? 3 : 2;
        if (end - lead < need) {
            end = lead;
        }
    }
    memcpy(sb->buf + end, "...", 4);
}

/* ---- peer names ---- */

/*
 * Add s[0..len) as a name, with every byte outside printable ASCII stored as '?' (as tls/
 * compares names): a CN holding CR LF must not reach X-Auth-CouchDB-UserName as it is.
 */
static void
names_add(struct proxy_peer_names *names, size_t *used, const char *s, size_t len)
{
    size_t i;

    if (len == 0 || names->n >= PROXY_ACCESS_MAX_NAMES ||
        *used + len + 1 > sizeof(names->storage)) {
        return;
    }
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        names->storage[*used + i] = (char)((c < 0x20 || c > 0x7e) ? '?' : c);
    }
    names->storage[*used + len] = '\0';
    names->v[names->n++] = names->storage + *used;
    *used += len + 1;
}

/* Is s[0..len) written as a URI ("scheme://...", tls_name_is_uri())? */
static bool
span_is_uri(const char *s, size_t len)
{
    for (size_t i = 0; i + 3 <= len; i++) {
        if (memcmp(s + i, "://", 3) == 0) {
            return true;
        }
    }
    return false;
}

/* Is s[0..len) a host name (tls_name_is_host())? */
static bool
span_is_host(const char *s, size_t len)
{
    char host[256];

    if (len >= sizeof(host)) {
        return false;
    }
    memcpy(host, s, len);
    host[len] = '\0';
    return tls_name_is_host(host);
}

/*
 * proxy_access_names_parse(sans, cn, names):
 * Fill ${names} from tls_peer_info's "DNS:a,IP:1.2.3.4,URI:spiffe://td/x" string ${sans}, in
 * its order; when it holds no DNS or IP name and ${cn} is not NULL (cn_fallback), ${cn} comes
 * first (unless it is neither a host name nor an IP address).  Extra names are ignored.  Entries
 * are separated by ','; URI: entries are names (a URI only ever matches a URI entry), email:
 * entries are skipped, and so are DNS: entries that are not host names (tls_name_is_host():
 * "DNS:spiffe://td/x", 'DNS:a".example.org'), which are never a peer's name, and URI: entries
 * shown cut (ending in TLS_SAN_CUT).
 */
void
proxy_access_names_parse(const char *sans, const char *cn, struct proxy_peer_names *names)
{
    size_t used = 0;
    const char *p = sans != NULL ? sans : "";
    bool dns_or_ip = false;

    names->n = 0;
    names->storage[0] = '\0';
    /* The CN stands in only for DNS and IP names: does ${sans} hold one? */
    while (*p != '\0' && !dns_or_ip) {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);

        dns_or_ip =
            (len > 4 && strncmp(p, "DNS:", 4) == 0) || (len > 3 && strncmp(p, "IP:", 3) == 0);
        p += len + (end != NULL ? 1 : 0);
    }
    /* A CN written as a URI is no name (it must not pass for a URI SAN), nor one that is
     * neither a host name nor an IP address ('a".example.org', "Jane Doe"). */
    if (!dns_or_ip && cn != NULL && (tls_name_is_host(cn) || tls_name_is_ip(cn, NULL, NULL))) {
        names_add(names, &used, cn, strlen(cn));
    }
    p = sans != NULL ? sans : "";
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);

        /* Each kind keeps its own names: a DNS SAN spelt as a URI is none, nor a URI SAN
         * without a scheme (tls_check_leaf() skips them alike). */
        bool uri = len > 4 && strncmp(p, "URI:", 4) == 0;
        size_t skip = uri || strncmp(p, "DNS:", 4) == 0 ? 4 : strncmp(p, "IP:", 3) == 0 ? 3 : 0;

        size_t cut = sizeof(TLS_SAN_CUT) - 1;

        /* A URI SAN shown cut (TLS_SAN_CUT) is none of the certificate's names. */
        if (uri && len >= skip + cut && memcmp(p + len - cut, TLS_SAN_CUT, cut) == 0) {
            skip = 0;
        }
        if (skip > 0 && len > skip && uri == span_is_uri(p + skip, len - skip) &&
            (skip != 4 || uri || span_is_host(p + skip, len - skip))) {
            names_add(names, &used, p + skip, len - skip);
        }
        p += len;
        if (*p == ',') {
            p++;
        }
    }
}

/* ---- request targets ---- */

/*
 * Decode the path byte at ${p}: "%XX" or a raw byte.  Returns how many bytes of ${p} it took
 * (3 or 1), the byte in *${c}; 0 for a bad escape ('%' not followed by two hex digits).
 */
static size_t
path_byte(const char *p, unsigned char *c)
{
    if (*p == '%') {
        int hi = hex_value((unsigned char)p[1]);
        int lo = hi < 0 ? -1 : hex_value((unsigned char)p[2]);

        if (lo < 0) {
            return 0;
        }
        *c = (unsigned char)(hi * 16 + lo);
        return 3;
    }
    *c = (unsigned char)*p;
    return 1;
}

/* A separator inside one path segment (a raw '/' ends the segment, so '/' is encoded). */
enum dot_sep {
    DOT_SEP_NONE,          /* none: the segment's start or end */
    DOT_SEP_SLASH,         /* "%2F" */
    DOT_SEP_BACKSLASH,     /* "%5C" */
    DOT_SEP_RAW_BACKSLASH, /* a raw '\' */
};

/*
 * The parts of one decoded path segment, split at '/' and '\' and fed one decoded byte at a
 * time.  A part "." or ".." is a dot segment (RFC 3986 §5.2.4) that a server which decodes
 * "%2F" (or reads '\' as '/', as some do) before it resolves dot segments would follow; a
 * segment without a separator is one part, so "." and ".." themselves count.
 */
struct dot_scan {
    size_t len;          /* bytes of the current part */
    bool dots;           /* the current part holds only '.' */
    enum dot_sep before; /* the separator before the current part */
    size_t found;        /* the first dot part: 1 ".", 2 "..", 0 none */
    enum dot_sep beside; /* a separator next to it; NONE: the whole segment is the dot part */
};

static void
dot_scan_init(struct dot_scan *ds)
{
    memset(ds, 0, sizeof(*ds));
    ds->dots = true;
}

/* The current part ends at ${after} (DOT_SEP_NONE: at the end of the segment). */
static void
dot_scan_end_part(struct dot_scan *ds, enum dot_sep after)
{
    if (ds->found == 0 && ds->dots && ds->len >= 1 && ds->len <= 2) {
        ds->found = ds->len;
        ds->beside = ds->before != DOT_SEP_NONE ? ds->before : after;
    }
    ds->len = 0;
    ds->dots = true;
    ds->before = after;
}

/* Feed decoded byte ${c}; ${raw} when it was not percent-encoded. */
static void
dot_scan_byte(struct dot_scan *ds, unsigned char c, bool raw)
{
    if (c == '/' || c == '\\') {
        dot_scan_end_part(ds, c == '/' ? DOT_SEP_SLASH
                              : raw    ? DOT_SEP_RAW_BACKSLASH
                                       : DOT_SEP_BACKSLASH);
        return;
    }
    ds->len++;
    ds->dots = ds->dots && c == '.';
}

/* Why proxy_access_path_hygiene() refused segment seg[0..n): into ${buf}. */
static void
describe_dot_segment(const char *seg, size_t n, const struct dot_scan *ds, char *buf, size_t len)
{
    static const char *const behind[] = {
        [DOT_SEP_NONE] = "",
        [DOT_SEP_SLASH] = " behind an encoded \"/\"",
        [DOT_SEP_BACKSLASH] = " behind an encoded \"\\\" (some servers read it as \"/\")",
        [DOT_SEP_RAW_BACKSLASH] = " behind a \"\\\" (some servers read it as \"/\")",
    };
    struct sbuf sb;

    if (buf == NULL || len == 0) {
        return;
    }
    sb_init(&sb, buf, len);
    sb_puts(&sb, "path segment ");
    sb_puts_quoted(&sb, seg, n, 64);
    if (ds->beside == DOT_SEP_NONE) {
        sb_puts(&sb, memchr(seg, '%', n) != NULL ? " decodes to" : " is");
        sb_puts(&sb, " a dot segment (\"");
    } else {
        sb_puts(&sb, " holds a dot segment (\"");
    }
    sb_puts(&sb, ds->found == 1 ? "." : "..");
    sb_puts(&sb, "\")");
    sb_puts(&sb, behind[ds->beside]);
    sb_puts(&sb, " (RFC 3986 §5.2.4)");
    sb_finish(&sb);
}

/*
 * proxy_access_path_hygiene(target, why, whylen):
 * Refuse a request target whose path holds a dot segment, plain or hidden in one segment.
 * The path of ${target} (up to '?' or '#') is split at '/' and each segment percent-decoded
 * exactly once; a segment is refused when it decodes to "." or "..", or when its decoded form,
 * split at '/' and '\' (encoded, or a raw '\'), has a "." or ".." part ("..%2F..%2F_all_dbs",
 * "%2E%2E%5Cx", "a%2F.%2Fb", "..\x").  Ids like "_design%2Ffoo", "a%2Fb", "...", ".hidden" and
 * "a%2F..b" pass.  Empty segments, control bytes and bad escapes are not judged here (a bad
 * escape is read as a literal '%'; the access rules judge the path); a target that is not in
 * origin form ("*", "http://...") or is NULL passes.  Walks ${target} once, allocates nothing,
 * does not log.  Returns 0 when the path is acceptable, -1 (with a reason in plain words in
 * ${why}: the segment quoted, printable, cut after 64 bytes, and the rule) when it must be
 * refused with 400.  ${why} may be NULL; a reason that does not fit ends in "...".
 */
int
proxy_access_path_hygiene(const char *target, char *why, size_t whylen)
{
    const char *p;

    if (why != NULL && whylen > 0) {
        why[0] = '\0';
    }
    if (target == NULL || target[0] != '/') {
        return 0;
    }
    for (p = target; *p == '/';) {
        const char *seg = ++p;
        struct dot_scan ds;

        dot_scan_init(&ds);
        while (*p != '\0' && *p != '?' && *p != '#' && *p != '/') {
            unsigned char c;
            size_t k = path_byte(p, &c);

            if (k == 0) {
                /* A bad escape is the access rules' business: its '%' counts as a byte. */
                c = '%';
                k = 1;
            }
            dot_scan_byte(&ds, c, k == 1);
            p += k;
        }
        dot_scan_end_part(&ds, DOT_SEP_NONE);
        if (ds.found > 0) {
            describe_dot_segment(seg, (size_t)(p - seg), &ds, why, whylen);
            return -1;
        }
    }
    return 0;
}

/*
 * proxy_access_path_parse(target, path):
 * Split the path of request target ${target} (up to '?' or '#') on '/' and percent-decode each
 * segment once, as CouchDB does.  Refused (-1): not origin-form, a bad escape, a raw or encoded
 * NUL or control character (or a raw space), a segment proxy_access_path_hygiene() refuses (one
 * that decodes to "." or "..", or holds one between '/' or '\' as in "..%2F_config"), an empty
 * segment inside the path ("//"), more than PROXY_PATH_MAX_SEGS segments, or a path that does
 * not fit.  "/" gives n = 0; "/db/" gives n = 1 (one trailing '/' is dropped).  '+' stays '+'
 * (CouchDB turns it into a space, but a space is not allowed in database names and no
 * reserved segment holds one, so this cannot change a decision).  Returns 0.
 */
int
proxy_access_path_parse(const char *target, struct proxy_path *path)
{
    const char *p;
    size_t out = 0;

    path->n = 0;
    path->buf[0] = '\0';
    if (target == NULL || target[0] != '/') {
        return -1;
    }
    p = target + 1;
    while (*p != '\0' && *p != '?' && *p != '#') {
        size_t start = out;
        struct dot_scan ds;

        if (*p == '/') {
            /* An empty segment: "//", or a path that begins with "//". */
            goto fail;
        }
        if (path->n == PROXY_PATH_MAX_SEGS) {
            goto fail;
        }
        dot_scan_init(&ds);
        while (*p != '\0' && *p != '?' && *p != '#' && *p != '/') {
            unsigned char c;
            size_t k = path_byte(p, &c);

            if (k == 0 || (k == 1 && c == ' ') || c < 0x20 || c == 0x7f) {
                goto fail;
            }
            /* Keep room for this segment's NUL. */
            if (out + 2 > sizeof(path->buf)) {
                goto fail;
            }
            path->buf[out++] = (char)c;
            dot_scan_byte(&ds, c, k == 1);
            p += k;
        }
        path->buf[out++] = '\0';
        /* What proxy_access_path_hygiene() refuses: ".", "..", or one as a part ("..%2F"). */
        dot_scan_end_part(&ds, DOT_SEP_NONE);
        if (ds.found > 0) {
            goto fail;
        }
        path->seg[path->n++] = path->buf + start;
        if (*p == '/') {
            p++;
        }
    }
    return 0;

fail:
    path->n = 0;
    path->buf[0] = '\0';
    return -1;
}

/*
 * Find query parameter ${name} in query[0..qlen) (without the '?').  Returns its decoded
 * value's length and copies as much as fits (NUL-terminated) into ${out}; -1 when it is
 * absent, appears twice, has a bad escape, or when the query holds a raw ';'.
 */
static long
query_param(const char *query, size_t qlen, const char *name, char *out, size_t outlen)
{
    size_t i = 0, nlen = strlen(name);
    long found = -1;

    if (query == NULL || memchr(query, ';', qlen) != NULL) {
        return -1;
    }
    while (i < qlen) {
        size_t j = i, k = 0, vlen = 0;
        bool match = true, bad = false;

        /* The name, decoded on the fly and compared with ${name}. */
        while (j < qlen && query[j] != '&' && query[j] != '=') {
            int c = (unsigned char)query[j];

            if (c == '%') {
                int hi = j + 2 < qlen ? hex_value((unsigned char)query[j + 1]) : -1;
                int lo = hi < 0 ? -1 : hex_value((unsigned char)query[j + 2]);

                if (lo < 0) {
                    bad = true;
                    break;
                }
                c = hi * 16 + lo;
                j += 3;
            } else {
                c = c == '+' ? ' ' : c;
                j++;
            }
            if (k >= nlen || name[k] != (char)c) {
                match = false;
            }
            k++;
        }
        if (!bad && match && k == nlen) {
            if (found >= 0) {
                return -1; /* twice */
            }
            if (j < qlen && query[j] == '=') {
                j++;
            }
            while (j < qlen && query[j] != '&') {
                int c = (unsigned char)query[j];

                if (c == '%') {
                    int hi = j + 2 < qlen ? hex_value((unsigned char)query[j + 1]) : -1;
                    int lo = hi < 0 ? -1 : hex_value((unsigned char)query[j + 2]);

                    if (lo < 0) {
                        return -1;
                    }
                    c = hi * 16 + lo;
                    j += 3;
                } else {
                    c = c == '+' ? ' ' : c;
                    j++;
                }
                if (vlen + 1 < outlen) {
                    out[vlen] = (char)c;
                }
                vlen++;
            }
            if (outlen > 0) {
                out[vlen < outlen ? vlen : outlen - 1] = '\0';
            }
            found = (long)vlen;
        } else if (bad && match) {
            /* A bad escape where the name still could have matched: stay on the safe side. */
            return -1;
        }
        while (j < qlen && query[j] != '&') {
            j++;
        }
        i = j + 1;
    }
    return found;
}

/* Is query parameter ${name} present exactly once with the value ${value}? */
static bool
query_is(const char *query, size_t qlen, const char *name, const char *value)
{
    char v[16];
    long n = query_param(query, qlen, name, v, sizeof(v));

    return n >= 0 && (size_t)n == strlen(value) && strcmp(v, value) == 0;
}

/* Is query parameter ${name} present exactly once with a non-empty value? */
static bool
query_has(const char *query, size_t qlen, const char *name)
{
    char v[2];

    return query_param(query, qlen, name, v, sizeof(v)) > 0;
}

/* ---- classification ---- */

enum req_kind {
    REQ_ROOT,     /* "/" */
    REQ_DB,       /* "/db" or "/db/" */
    REQ_ENDPOINT, /* "/db/_changes", "/db/_index/..." */
    REQ_DOC,      /* "/db/doc", "/db/doc/att..." */
    REQ_DESIGN,   /* "/db/_design/d", "/db/_design%2Fd", "/db/_design/d/_view/v", ".../att" */
    REQ_LOCAL,    /* "/db/_local/x" */
    REQ_OTHER,    /* "/db/_design" alone and the like */
};

struct req {
    const char *method; /* HEAD is given as "GET" */
    enum req_kind kind;
    const char *name;        /* endpoint (with its '_') or document id */
    const char *const *rest; /* the segments after it: attachment name or sub-resource */
    size_t n_rest;
    const char *query; /* after '?', up to '#' or the end; NULL when none */
    size_t qlen;
};

static void
req_classify(const struct proxy_path *p, const char *method, const char *target, struct req *r)
{
    const char *q = strpbrk(target, "?#");
    const char *s1;

    r->method = strcmp(method, "HEAD") == 0 ? "GET" : method;
    r->query = NULL;
    r->qlen = 0;
    if (q != NULL && *q == '?') {
        r->query = q + 1;
        r->qlen = strcspn(r->query, "#");
    }
    r->name = "";
    r->rest = NULL;
    r->n_rest = 0;
    if (p->n == 0) {
        r->kind = REQ_ROOT;
        return;
    }
    if (p->n == 1) {
        r->kind = REQ_DB;
        return;
    }
    s1 = p->seg[1];
    r->rest = p->seg + 2;
    r->n_rest = p->n - 2;
    if (strcmp(s1, "_design") == 0 || strcmp(s1, "_local") == 0) {
        if (p->n < 3) {
            r->kind = REQ_OTHER;
            return;
        }
        r->kind = strcmp(s1, "_design") == 0 ? REQ_DESIGN : REQ_LOCAL;
        r->name = p->seg[2];
        r->rest = p->seg + 3;
        r->n_rest = p->n - 3;
    } else if (starts_with(s1, "_design/") && s1[8] != '\0') {
        r->kind = REQ_DESIGN;
        r->name = s1 + 8;
    } else if (starts_with(s1, "_local/") && s1[7] != '\0') {
        r->kind = REQ_LOCAL;
        r->name = s1 + 7;
    } else if (s1[0] == '_') {
        r->kind = REQ_ENDPOINT;
        r->name = s1;
    } else {
        r->kind = REQ_DOC;
        r->name = s1;
    }
}

static bool
is(const char *a, const char *b)
{
    return strcmp(a, b) == 0;
}

/* Is ${m} one of the methods that follow (up to four; unused ones NULL)? */
static bool
method_in(const char *m, const char *a, const char *b, const char *c, const char *d)
{
    return is(m, a) || (b != NULL && is(m, b)) || (c != NULL && is(m, c)) ||
           (d != NULL && is(m, d));
}

/* Is ${name} one of the names of the NULL-terminated list ${list}? */
static bool
name_in(const char *name, const char *const *list)
{
    for (; *list != NULL; list++) {
        if (is(name, *list)) {
            return true;
        }
    }
    return false;
}

/* The first segment after a design document: an attachment, or "_view" and the like. */
static bool
design_is_attachment(const struct req *r)
{
    return r->n_rest > 0 && r->rest[0][0] != '_';
}

static bool
allows_read(const struct req *r)
{
    static const char *const get_endpoints[] = {"_all_docs",   "_changes", "_design_docs",
                                                "_local_docs", "_index",   NULL};
    static const char *const post_endpoints[] = {
        "_all_docs", "_bulk_get",    "_revs_diff",  "_changes",      "_find",
        "_explain",  "_design_docs", "_local_docs", "_missing_revs", NULL};
    static const char *const post_queries[] = {"_all_docs", "_design_docs", "_local_docs", NULL};
    static const char *const design_gets[] = {"_show", "_list", "_search", "_nouveau", NULL};
    const char *m = r->method;

    switch (r->kind) {
    case REQ_ROOT:
    case REQ_DB:
        return is(m, "GET");
    case REQ_ENDPOINT:
        if (r->n_rest == 0) {
            return (is(m, "GET") && name_in(r->name, get_endpoints)) ||
                   (is(m, "POST") && name_in(r->name, post_endpoints));
        }
        return r->n_rest == 1 && is(r->rest[0], "queries") && is(m, "POST") &&
               name_in(r->name, post_queries);
    case REQ_DOC:
        return is(m, "GET");
    case REQ_LOCAL:
        return r->n_rest == 0 && is(m, "GET");
    case REQ_DESIGN:
        if (r->n_rest == 0 || design_is_attachment(r)) {
            return is(m, "GET");
        }
        if (is(r->rest[0], "_view")) {
            return (r->n_rest == 2 && method_in(m, "GET", "POST", NULL, NULL)) ||
                   (r->n_rest == 3 && is(r->rest[2], "queries") && is(m, "POST"));
        }
        if (is(r->rest[0], "_info")) {
            return r->n_rest == 1 && is(m, "GET");
        }
        return r->n_rest >= 2 && is(m, "GET") && name_in(r->rest[0], design_gets);
    case REQ_OTHER:
        return false;
    }
    return false;
}

static bool
allows_write(const struct req *r)
{
    static const char *const post_endpoints[] = {"_bulk_docs", "_ensure_full_commit", "_index",
                                                 NULL};
    const char *m = r->method;

    if (allows_read(r)) {
        return true;
    }
    switch (r->kind) {
    case REQ_ROOT:
        return false;
    case REQ_DB:
        return is(m, "POST");
    case REQ_ENDPOINT:
        if (r->n_rest == 0) {
            return is(m, "POST") && name_in(r->name, post_endpoints);
        }
        return is(r->name, "_index") &&
               (is(m, "DELETE") ||
                (r->n_rest == 1 && is(r->rest[0], "_bulk_delete") && is(m, "POST")));
    case REQ_DOC:
        if (r->n_rest == 0) {
            return method_in(m, "PUT", "POST", "DELETE", "COPY");
        }
        return method_in(m, "PUT", "DELETE", NULL, NULL);
    case REQ_LOCAL:
        return r->n_rest == 0 && method_in(m, "PUT", "POST", "DELETE", "COPY");
    case REQ_DESIGN:
        if (r->n_rest == 0) {
            return method_in(m, "PUT", "POST", "DELETE", "COPY");
        }
        if (design_is_attachment(r)) {
            return method_in(m, "PUT", "DELETE", NULL, NULL);
        }
        return r->n_rest >= 2 && is(r->rest[0], "_update") &&
               method_in(m, "POST", "PUT", NULL, NULL);
    case REQ_OTHER:
        return false;
    }
    return false;
}

/* A replication checkpoint: read, then written, on both the source and the target. */
static bool
replication_checkpoint(const struct req *r)
{
    return r->kind == REQ_LOCAL && r->n_rest == 0 && method_in(r->method, "GET", "PUT", NULL, NULL);
}

/* What a replicator sends to this node as the replication source. */
static bool
allows_replicate_from(const struct req *r)
{
    static const char *const post_endpoints[] = {"_changes", "_all_docs", "_bulk_get",
                                                 "_ensure_full_commit", NULL};
    const char *m = r->method;

    switch (r->kind) {
    case REQ_ROOT:
    case REQ_DB:
        return is(m, "GET");
    case REQ_ENDPOINT:
        return r->n_rest == 0 &&
               ((is(m, "GET") && (is(r->name, "_changes") || is(r->name, "_all_docs"))) ||
                (is(m, "POST") && name_in(r->name, post_endpoints)));
    case REQ_LOCAL:
        return replication_checkpoint(r);
    case REQ_DOC:
    case REQ_DESIGN:
        if (!is(m, "GET")) {
            return false;
        }
        if (r->n_rest > 0) {
            /* PouchDB fetches attachments one by one, naming the revision. */
            return (r->kind == REQ_DOC || design_is_attachment(r)) &&
                   query_has(r->query, r->qlen, "rev");
        }
        /* The filter function of a filtered replication is read with a plain GET. */
        return r->kind == REQ_DESIGN || query_is(r->query, r->qlen, "revs", "true") ||
               query_has(r->query, r->qlen, "open_revs");
    case REQ_OTHER:
        return false;
    }
    return false;
}

/* What a replicator sends to this node as the replication target. */
static bool
allows_replicate_to(const struct req *r)
{
    static const char *const post_endpoints[] = {"_revs_diff", "_bulk_docs", "_ensure_full_commit",
                                                 NULL};
    const char *m = r->method;

    switch (r->kind) {
    case REQ_ROOT:
        return is(m, "GET");
    case REQ_DB:
        /* PUT creates the target (create_target, with ?q=&n=&partitioned= at most). */
        return method_in(m, "GET", "PUT", NULL, NULL);
    case REQ_ENDPOINT:
        return r->n_rest == 0 && is(m, "POST") && name_in(r->name, post_endpoints);
    case REQ_LOCAL:
        return replication_checkpoint(r);
    case REQ_DOC:
    case REQ_DESIGN:
        /* A document with attachments is written alone, multipart/related. */
        return r->n_rest == 0 && is(m, "PUT") && query_is(r->query, r->qlen, "new_edits", "false");
    case REQ_OTHER:
        return false;
    }
    return false;
}

/*
 * Does database glob ${pat} match ${name}?  '*' matches any run of characters but '/', '?' one
 * character but '/', and "**" (or a longer run of '*') any run of characters, '/' included; a
 * wildcard never matches a leading '_' (server-wide paths and _users need a literal '_').
 * Matched without recursion or backtracking: reach[i] says whether the pattern read so far can
 * match exactly name[0..i), and each pattern token updates reach[] in one pass, so the cost is
 * at most strlen(pat) * strlen(name) steps.  A name longer than a parsed path can hold never
 * matches.
 */
static bool
glob_match(const char *pat, const char *name)
{
    bool reach[sizeof(((struct proxy_path *)NULL)->buf)];
    size_t n = strlen(name), i;

    if (n >= sizeof(reach) || (name[0] == '_' && pat[0] != '_')) {
        return false;
    }
    memset(reach, 0, n + 1);
    reach[0] = true;
    while (*pat != '\0') {
        if (pat[0] == '*') {
            /* A star only extends what is reachable already: a forward pass. */
            bool cross = pat[1] == '*';

            while (*pat == '*') {
                pat++;
            }
            for (i = 0; i < n; i++) {
                /* name[0..n) is initialised: n = strlen(name) (clang-analyzer loses that). */
                // NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult)
                reach[i + 1] = reach[i + 1] || (reach[i] && (cross || name[i] != '/'));
            }
        } else {
            /* One character moves every reachable position by one: a backward pass. */
            char c = *pat++;
            bool any = false;

            for (i = n; i > 0; i--) {
                // NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult): as above
                reach[i] = reach[i - 1] && (c == '?' ? name[i - 1] != '/' : name[i - 1] == c);
                any = any || reach[i];
            }
            reach[0] = false;
            if (!any) {
                return false;
            }
        }
    }
    return reach[n];
}

static bool
database_listed(const struct config_access_rule *rule, const char *db)
{
    size_t i;

    if (rule->databases == NULL) {
        return true;
    }
    for (i = 0; i < rule->n_databases; i++) {
        if (glob_match(rule->databases[i], db)) {
            return true;
        }
    }
    return false;
}

/* Why a rule refused: a hint appended to the message. */
enum refusal {
    REFUSE_LEVEL,       /* outside the rule's level */
    REFUSE_SERVER_WIDE, /* a server-wide path and the level is not all */
    REFUSE_DATABASE,    /* the database is not among the rule's databases */
    REFUSE_MALFORMED,   /* proxy_access_path_parse() refused the path */
    REFUSE_DOT_SEGMENT, /* proxy_access_path_hygiene() refused the path */
};

static const char *
allow_verb(enum config_allow allow)
{
    switch (allow) {
    case CONFIG_ALLOW_READ:
        return "read";
    case CONFIG_ALLOW_WRITE:
        return "read and write";
    case CONFIG_ALLOW_REPLICATE:
        return "replicate";
    case CONFIG_ALLOW_REPLICATE_FROM:
        return "replicate from";
    case CONFIG_ALLOW_REPLICATE_TO:
        return "replicate to";
    case CONFIG_ALLOW_ALL:
        return "do anything with";
    }
    return "?";
}

/* "rule 1 (line 14) allows node2.example.org to replicate patients, visits*, not GET /x" */
static void
describe_refusal(const struct config_access_rule *rules, const struct config_access_rule *rule,
                 const char *name, const char *method, const char *target, const char *db,
                 enum refusal why, char *buf, size_t len)
{
    struct sbuf sb;
    char num[64];
    size_t i;

    if (buf == NULL || len == 0) {
        return;
    }
    sb_init(&sb, buf, len);
    (void)snprintf(num, sizeof(num), "rule %zu (line %u) allows ", (size_t)(rule - rules) + 1,
                   rule->pos.line);
    sb_puts(&sb, num);
    sb_puts_printable(&sb, name, strlen(name));
    sb_puts(&sb, " to ");
    sb_puts(&sb, allow_verb(rule->allow));
    sb_putc(&sb, ' ');
    if (rule->databases == NULL) {
        sb_puts(&sb, "every database");
    }
    for (i = 0; rule->databases != NULL && i < rule->n_databases; i++) {
        sb_puts(&sb, i > 0 ? ", " : "");
        sb_puts_printable(&sb, rule->databases[i], strlen(rule->databases[i]));
    }
    sb_puts(&sb, ", not ");
    sb_puts_printable(&sb, method, strlen(method));
    sb_putc(&sb, ' ');
    sb_puts_printable(&sb, target, strcspn(target, "?#"));
    switch (why) {
    case REFUSE_LEVEL:
        break;
    case REFUSE_SERVER_WIDE:
        sb_puts(&sb, " (server-wide paths need allow: all)");
        break;
    case REFUSE_DATABASE:
        sb_puts(&sb, " (database ");
        sb_puts_printable(&sb, db, strlen(db));
        sb_puts(&sb, " is not listed)");
        break;
    case REFUSE_MALFORMED:
        sb_puts(&sb, " (malformed path: a bad escape, a control character, an empty segment, or "
                     "too long)");
        break;
    case REFUSE_DOT_SEGMENT:
        sb_puts(&sb, " (a \".\" or \"..\" path segment, raw, encoded or behind an encoded \"/\" "
                     "or a \"\\\")");
        break;
    }
    sb_finish(&sb);
}

static void
describe_no_rule(const struct proxy_peer_names *names, char *buf, size_t len)
{
    struct sbuf sb;
    size_t i;

    if (buf == NULL || len == 0) {
        return;
    }
    sb_init(&sb, buf, len);
    if (names == NULL || names->n == 0) {
        sb_puts(&sb, "no access rule matches this peer: it has no verified name");
        return;
    }
    sb_puts(&sb, "no access rule matches peer ");
    sb_puts_printable(&sb, names->v[0], strlen(names->v[0]));
    for (i = 1; i < names->n; i++) {
        sb_puts(&sb, i == 1 ? " (nor its other names " : ", ");
        sb_puts_printable(&sb, names->v[i], strlen(names->v[i]));
    }
    if (names->n > 1) {
        sb_putc(&sb, ')');
    }
    sb_finish(&sb);
}

/* The first rule whose peers match one of ${names}; *${name} = the name that matched. */
static const struct config_access_rule *
rule_for(const struct config_access_rule *rules, size_t n_rules,
         const struct proxy_peer_names *names, const char **name)
{
    size_t i, j, k;

    for (i = 0; i < n_rules; i++) {
        for (j = 0; j < rules[i].n_peers; j++) {
            for (k = 0; names != NULL && k < names->n; k++) {
                if (tls_name_match_allow(rules[i].peers[j], names->v[k])) {
                    *name = names->v[k];
                    return &rules[i];
                }
            }
        }
    }
    return NULL;
}

/*
 * proxy_access_identity_choose(rules, n_rules, allow_name, names):
 * The peer's one identity (CONTRACT §6): the name of ${names} that matched the `peers` of the
 * first access rule of ${rules} that matches at all, else ${allow_name} (the name that matched
 * `allow`; NULL or "" without one), else the first DNS name of ${names} (with cn_fallback, its
 * CN).  A URI SAN (a SPIFFE ID) is the identity only when it matched a rule or `allow`; an IP
 * only when it matched.  Returns a pointer into ${names} or ${allow_name}, or NULL.
 */
const char *
proxy_access_identity_choose(const struct config_access_rule *rules, size_t n_rules,
                             const char *allow_name, const struct proxy_peer_names *names)
{
    const char *name = NULL;
    size_t k;

    if (rules != NULL && rule_for(rules, n_rules, names, &name) != NULL) {
        return name;
    }
    if (allow_name != NULL && allow_name[0] != '\0') {
        return allow_name;
    }
    for (k = 0; names != NULL && k < names->n; k++) {
        if (!tls_name_is_ip(names->v[k], NULL, NULL) && !tls_name_is_uri(names->v[k])) {
            return names->v[k];
        }
    }
    return NULL;
}

/*
 * proxy_access_identity_canonical(name):
 * Write the identity ${name} the way it is compared, so that one peer is one CouchDB user: a
 * host name in lower case without a final dot ("CLIENT.TEST." -> "client.test"; `allow`
 * matched it so); a SPIFFE ID as it is (its path is case-sensitive; `allow` compared it byte
 * for byte), holding only what a SPIFFE ID may hold (letters, digits, ".-_" and '/').  Returns
 * false, leaving ${name} as it is, when it is none of a host name, an IP address or a SPIFFE ID
 * (a space, a quote, a '*', a '%', a control byte...): a header could not carry it as it is.
 */
bool
proxy_access_identity_canonical(char *name)
{
    size_t len = strlen(name), i;

    if (strncmp(name, "spiffe://", 9) == 0) {
        for (i = 9; i < len; i++) {
            unsigned char ch = (unsigned char)name[i];

            if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
                  (ch >= 'A' && ch <= 'Z') || ch == '.' || ch == '-' || ch == '_' || ch == '/')) {
                return false;
            }
        }
        return len > 9;
    }
    for (i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)name[i];

        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              ch == '.' || ch == '-' || ch == '_' || ch == ':')) {
            return false;
        }
    }
    if (len > 1 && name[len - 1] == '.') {
        name[--len] = '\0';
    }
    for (i = 0; i < len; i++) {
        if (name[i] >= 'A' && name[i] <= 'Z') {
            name[i] = (char)(name[i] - 'A' + 'a');
        }
    }
    return len > 0;
}

/*
 * proxy_access_check(rules, n_rules, names, method, target, why, whylen, matched):
 * CONTRACT §7 for one request: the first rule whose `peers` match one of ${names} decides;
 * it allows the request when ${method} on ${target} (the raw request target, query included)
 * is within its `allow` level and database globs (see the table at the top of this file).
 * ${rules} NULL = no `access:` = allow everything.  On refusal writes the rule in plain words
 * to ${why} ("rule 1 (line 14) allows node2.example.org to replicate patients, visits*, not
 * DELETE /patients/doc1", or "no access rule matches peer x.example.org") and returns -1;
 * returns 0 when allowed.  *${matched} (may be NULL) gets the deciding rule or NULL.
 */
int
proxy_access_check(const struct config_access_rule *rules, size_t n_rules,
                   const struct proxy_peer_names *names, const char *method, const char *target,
                   char *why, size_t whylen, const struct config_access_rule **matched)
{
    const struct config_access_rule *rule;
    const char *name = "";
    struct proxy_path path;
    struct req r;
    bool ok;

    if (matched != NULL) {
        *matched = NULL;
    }
    if (why != NULL && whylen > 0) {
        why[0] = '\0';
    }
    if (rules == NULL) {
        return 0;
    }
    if ((rule = rule_for(rules, n_rules, names, &name)) == NULL) {
        describe_no_rule(names, why, whylen);
        return -1;
    }
    if (matched != NULL) {
        *matched = rule;
    }
    /* No rule allows what the HTTP layer refuses with 400, not even `all`. */
    if (proxy_access_path_hygiene(target, NULL, 0) != 0) {
        describe_refusal(rules, rule, name, method, target, "", REFUSE_DOT_SEGMENT, why, whylen);
        return -1;
    }
    if (rule->allow == CONFIG_ALLOW_ALL && rule->databases == NULL) {
        return 0;
    }
    if (proxy_access_path_parse(target, &path) != 0) {
        describe_refusal(rules, rule, name, method, target, "", REFUSE_MALFORMED, why, whylen);
        return -1;
    }
    if (path.n > 0) {
        if (path.seg[0][0] == '_' && rule->allow != CONFIG_ALLOW_ALL) {
            describe_refusal(rules, rule, name, method, target, path.seg[0], REFUSE_SERVER_WIDE,
                             why, whylen);
            return -1;
        }
        if (!database_listed(rule, path.seg[0])) {
            describe_refusal(rules, rule, name, method, target, path.seg[0], REFUSE_DATABASE, why,
                             whylen);
            return -1;
        }
    }
    req_classify(&path, method, target, &r);
    switch (rule->allow) {
    case CONFIG_ALLOW_READ:
        ok = allows_read(&r);
        break;
    case CONFIG_ALLOW_WRITE:
        ok = allows_write(&r);
        break;
    case CONFIG_ALLOW_REPLICATE:
        ok = allows_replicate_from(&r) || allows_replicate_to(&r);
        break;
    case CONFIG_ALLOW_REPLICATE_FROM:
        ok = allows_replicate_from(&r);
        break;
    case CONFIG_ALLOW_REPLICATE_TO:
        ok = allows_replicate_to(&r);
        break;
    case CONFIG_ALLOW_ALL:
    default:
        ok = true;
        break;
    }
    if (!ok) {
        describe_refusal(rules, rule, name, method, target, "", REFUSE_LEVEL, why, whylen);
        return -1;
    }
    return 0;
}

/* ---- identity headers ---- */

/* Append an XFCC value, double-quoted with '"' and '\' escaped when it holds , ; = " or \. */
static void
xfcc_put_value(struct sbuf *sb, const char *s, size_t n, bool always_quote)
{
    bool quote = always_quote;
    size_t i;

    for (i = 0; i < n && !quote; i++) {
        quote = strchr(",;=\"\\", s[i]) != NULL && s[i] != '\0';
    }
    if (quote) {
        sb_putc(sb, '"');
    }
    for (i = 0; i < n && !sb->over; i++) {
        unsigned char c = (unsigned char)s[i];

        if (quote && (c == '"' || c == '\\')) {
            sb_putc(sb, '\\');
        }
        /* SAN text is IA5String: anything outside printable ASCII would break the header. */
        sb_putc(sb, (char)((c < 0x20 || c > 0x7e) ? '?' : c));
    }
    if (quote) {
        sb_putc(sb, '"');
    }
}

/* Append ";KEY=value" for every SAN of ${type} in ${gens}. */
static void
xfcc_put_sans(struct sbuf *sb, const GENERAL_NAMES *gens, int type, const char *key)
{
    int i;

    for (i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        const ASN1_IA5STRING *s;

        if (g->type != type) {
            continue;
        }
        s = type == GEN_DNS ? g->d.dNSName : g->d.uniformResourceIdentifier;
        sb_putc(sb, ';');
        sb_puts(sb, key);
        sb_putc(sb, '=');
        xfcc_put_value(sb, (const char *)ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s),
                       false);
    }
}

/*
 * proxy_access_xfcc_value(cert, buf, len):
 * The X-Forwarded-Client-Cert value for ${cert} in Envoy's syntax and key order (By, Hash,
 * Cert, Chain, Subject, URI, DNS; ferry sends no By, Cert or Chain):
 * Hash=<sha256 of DER, lowercase hex>;Subject="<RFC 2253, '"' and '\' escaped>", then
 * ;URI=<uri> for each URI SAN and ;DNS=<name> for each DNS SAN.  A URI holding , ; = " or \
 * is double-quoted and escaped likewise.  Bytes outside printable ASCII in a SAN are sent as
 * '?'.  Returns 0, or -1 when it does not fit in ${len} (or OpenSSL fails).
 */
int
proxy_access_xfcc_value(X509 *cert, char *buf, size_t len)
{
    static const char hexdig[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0, i;
    GENERAL_NAMES *gens = NULL;
    struct sbuf sb;
    BIO *bio = NULL;
    char *subj = NULL;
    long subjlen;

    sb_init(&sb, buf, len);
    if (cert == NULL || X509_digest(cert, EVP_sha256(), md, &mdlen) != 1) {
        goto fail;
    }
    sb_puts(&sb, "Hash=");
    for (i = 0; i < mdlen; i++) {
        sb_putc(&sb, hexdig[md[i] >> 4]);
        sb_putc(&sb, hexdig[md[i] & 0x0f]);
    }

    /* RFC 2253 with OpenSSL's escaping of non-ASCII and control bytes: printable ASCII out. */
    if ((bio = BIO_new(BIO_s_mem())) == NULL ||
        X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) < 0) {
        goto fail;
    }
    subjlen = BIO_get_mem_data(bio, &subj);
    sb_puts(&sb, ";Subject=");
    xfcc_put_value(&sb, subj != NULL ? subj : "", subjlen > 0 ? (size_t)subjlen : 0, true);
    BIO_free(bio);
    bio = NULL;

    gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    xfcc_put_sans(&sb, gens, GEN_URI, "URI");
    xfcc_put_sans(&sb, gens, GEN_DNS, "DNS");
    GENERAL_NAMES_free(gens);
    if (sb.over) {
        goto fail;
    }
    return 0;

fail:
    BIO_free(bio);
    if (len > 0) {
        buf[0] = '\0';
    }
    return -1;
}

/*
 * proxy_access_rfc9440_value(cert, buf, len):
 * The RFC 9440 Client-Cert value for ${cert}: ":" base64(DER) ":" (an RFC 8941 byte
 * sequence: standard alphabet, padded, no line breaks: EVP_EncodeBlock()).  For
 * Client-Cert-Chain the caller joins the values of the intermediates with ", ".  The DER is
 * written to the tail of ${buf} and encoded forwards, so nothing is allocated.  Returns 0, or
 * -1 when it does not fit (${buf} then holds "").
 */
int
proxy_access_rfc9440_value(X509 *cert, char *buf, size_t len)
{
    unsigned char chunk[3 * 64]; /* a multiple of 3: only the last chunk is padded */
    unsigned char *der, *p;
    size_t derlen, need, i, n, out = 0;
    int dlen;

    if (len > 0) {
        buf[0] = '\0';
    }
    if (cert == NULL || (dlen = i2d_X509(cert, NULL)) <= 0) {
        return -1;
    }
    derlen = (size_t)dlen;
    need = 4 * ((derlen + 2) / 3) + 3; /* ':' base64 ':' NUL */
    if (need > len) {
        return -1;
    }
    der = p = (unsigned char *)buf + (len - derlen);
    if (i2d_X509(cert, &p) != dlen) {
        buf[0] = '\0';
        return -1;
    }
    /*
     * Each chunk is copied out before its base64 (and EVP_EncodeBlock's NUL) is written, as
     * EVP_EncodeBlock's input and output must not overlap.  With the DER at offset
     * D = len - derlen >= B + 3 (B blocks, from need <= len), the output after the chunk ending
     * at byte e ends at 2 + 4e/3 <= D + e: it never reaches DER not yet copied.
     */
    buf[out++] = ':';
    for (i = 0; i < derlen; i += n) {
        n = derlen - i < sizeof(chunk) ? derlen - i : sizeof(chunk);
        memcpy(chunk, der + i, n);
        out += (size_t)EVP_EncodeBlock((unsigned char *)buf + out, chunk, (int)n);
    }
    buf[out++] = ':';
    buf[out] = '\0';
    return 0;
}

/*
 * proxy_access_couchdb_token(hash, secret, secret_len, user, hex, len):
 * CouchDB's proxy-authentication token: lowercase hex HMAC-${hash}(key=${secret}, ${user}),
 * as couch_httpd_auth:proxy_authentication_handler computes it.  Known vector: user "foo",
 * secret "the_secret", sha256 ->
 * 3f0786e96b20b0102b77f1a49c041be6977cfb3bf78c41a12adc121cd9b4e68a.
 * Returns 0, or -1 when ${len} is too small (65 bytes needed for sha256, 41 for sha1).
 */
int
proxy_access_couchdb_token(enum config_hash hash, const unsigned char *secret, size_t secret_len,
                           const char *user, char *hex, size_t len)
{
    static const char hexdig[] = "0123456789abcdef";
    static const unsigned char empty[1] = {0};
    const EVP_MD *md = hash == CONFIG_HASH_SHA1 ? EVP_sha1() : EVP_sha256();
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    size_t i;

    if (len > 0) {
        hex[0] = '\0';
    }
    if ((size_t)EVP_MD_get_size(md) * 2 + 1 > len || secret_len > INT32_MAX) {
        return -1;
    }
    if (HMAC(md, secret != NULL ? secret : empty, (int)secret_len, (const unsigned char *)user,
             strlen(user), mac, &maclen) == NULL) {
        return -1;
    }
    for (i = 0; i < (size_t)maclen; i++) {
        hex[2 * i] = hexdig[mac[i] >> 4];
        hex[2 * i + 1] = hexdig[mac[i] & 0x0f];
    }
    hex[2 * i] = '\0';
    return 0;
}
