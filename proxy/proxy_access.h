/*
 * proxy_access: the pure functions of CONTRACT §6 and §7, kept apart from the event loop so
 * that unit tests and fuzzers can call them directly.
 *
 *   - access rules: which verified peer may make which CouchDB request (§7);
 *   - path parsing: split, then percent-decode once, so "%2F", ".." and "//" cannot escape
 *     a rule; path hygiene: no dot segment, not even one hidden behind "%2F" or "\";
 *   - identity headers: X-Forwarded-Client-Cert (Envoy syntax), RFC 9440 Client-Cert;
 *   - CouchDB proxy authentication token (HMAC of the user name, lowercase hex).
 *
 * Nothing here logs, allocates per request or touches sockets.
 */
#ifndef FERRY_PROXY_ACCESS_H
#define FERRY_PROXY_ACCESS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/x509.h>

#include "config.h"

/* The verified names of a peer: DNS, IP and URI SANs, or the CN with cn_fallback. */
#define PROXY_ACCESS_MAX_NAMES 16

struct proxy_peer_names {
    const char *v[PROXY_ACCESS_MAX_NAMES];
    size_t n;
    char storage[1024]; /* v[] point into it */
};

/*
 * proxy_access_names_parse(sans, cn, names):
 * Fill ${names} from tls_peer_info's "DNS:a,IP:1.2.3.4,URI:spiffe://td/x" string ${sans}, in
 * its order (URI SANs are names: they match only URI entries); when it holds no DNS or IP name
 * and ${cn} is not NULL (cn_fallback), ${cn} comes first, unless it is neither a host name
 * nor an IP address.  email: entries are skipped, and so are DNS: entries that are not host
 * names (tls_name_is_host(): "DNS:spiffe://td/x", 'DNS:a".example.org') and URI: entries
 * shown cut (ending in TLS_SAN_CUT); extra names are ignored.
 */
void proxy_access_names_parse(const char *sans, const char *cn, struct proxy_peer_names *names);

/* A request path split into segments, each percent-decoded exactly once. */
#define PROXY_PATH_MAX_SEGS 16

struct proxy_path {
    const char *seg[PROXY_PATH_MAX_SEGS]; /* seg[0] = database (or "_all_dbs", "" for "/") */
    size_t n;
    char buf[4096]; /* seg[] point into it */
};

/*
 * proxy_access_path_parse(target, path):
 * Split the path of request target ${target} (up to '?' or '#') on '/' and percent-decode each
 * segment once, as CouchDB does: a database or document name may hold '/' written "%2F", yet
 * cannot add a segment.  Refused (-1): a target that is not origin-form ("/..."), a bad
 * escape, an encoded or raw NUL or control character, a segment proxy_access_path_hygiene() refuses
 * ("..", "%2e%2e", "..%2F_config"), an empty segment inside the path ("//"), more than
 * PROXY_PATH_MAX_SEGS segments, or a path that does not fit.  "/" gives n = 0; "/db/" gives
 * n = 1.  Returns 0.
 */
int proxy_access_path_parse(const char *target, struct proxy_path *path);

/*
 * proxy_access_path_hygiene(target, why, whylen):
 * Refuse a request target whose path holds a dot segment, plain or hidden in one segment.
 * The path of ${target} (up to '?' or '#') is split at '/' and each segment percent-decoded
 * exactly once; a segment is refused when it decodes to "." or ".." ("/db/..", "/db/%2e%2E"),
 * or when its decoded form, split at '/' and '\' (encoded, or a raw '\'), has a "." or ".."
 * part ("/patients/doc/..%2f..%2f_all_dbs", "/db/%2E%2E%5Cx", "/db/a%2F.%2Fb", "/db/..\x").
 * Document ids such as "_design%2Ffoo", "a%2Fb", "a.b", "...", ".hidden" and "a%2F..b" pass.
 * Empty segments, control bytes and bad escapes are not judged here (a bad escape counts as a
 * literal '%'; the access rules judge the path), nor are targets not in origin form ("*",
 * "http://...") or NULL.  Allocates nothing, walks ${target} once, does not log; no access
 * rule allows what it refuses.
 * Returns 0 when the path is acceptable, -1 (with a reason in plain words in ${why}, e.g.
 * path segment "..%2f..%2f_all_dbs" holds a dot segment ("..") behind an encoded "/"
 * (RFC 3986 §5.2.4), the segment printable and cut after 64 bytes) when it must be refused
 * with 400.  ${why} may be NULL; a reason longer than ${whylen} ends in "...".
 */
int proxy_access_path_hygiene(const char *target, char *why, size_t whylen);

/*
 * proxy_access_check(rules, n_rules, names, method, target, why, whylen, matched):
 * CONTRACT §7 for one request: the first rule whose `peers` match one of ${names} decides;
 * it allows the request when ${method} on ${target} (the raw request target, query included)
 * is within its `allow` level and database globs.  No rule for the peer, or a request outside
 * the first matching rule, is a refusal.  ${rules} NULL = no `access:` = allow everything.
 * On refusal writes to ${why} the rule in plain words (e.g. "rule 1 (ferry.yaml:14:9) allows
 * node2.example.org to replicate patients, visits*, not DELETE /patients/doc1") and returns -1;
 * returns 0 when allowed.  *${matched} (may be NULL) gets the deciding rule or NULL.
 */
int proxy_access_check(const struct config_access_rule *rules, size_t n_rules,
                       const struct proxy_peer_names *names, const char *method, const char *target,
                       char *why, size_t whylen, const struct config_access_rule **matched);

/*
 * proxy_access_identity_choose(rules, n_rules, allow_name, names):
 * The peer's one identity (CONTRACT §6): the name of ${names} that matched the `peers` of the
 * first access rule of ${rules} that matches at all, else ${allow_name} (the name that matched
 * `allow`; NULL or "" without one), else the first DNS name of ${names} (with cn_fallback, its
 * CN).  A URI SAN (a SPIFFE ID) is the identity only when it matched a rule or `allow`; an IP
 * only when it matched.  Returns a pointer into ${names} or ${allow_name}, or NULL.
 */
const char *proxy_access_identity_choose(const struct config_access_rule *rules, size_t n_rules,
                                         const char *allow_name,
                                         const struct proxy_peer_names *names);

/*
 * proxy_access_identity_canonical(name):
 * Write the identity ${name} the way it is compared, so that one peer is one CouchDB user: a
 * host name in lower case without a final dot ("CLIENT.TEST." -> "client.test"); a SPIFFE ID
 * as it is (case-sensitive path), holding only letters, digits, ".-_" and '/'.  Returns false,
 * leaving ${name} as it is, when it is none of a host name, an IP address or a SPIFFE ID (a
 * space, a quote, a '*', a '%', a control byte...): a header could not carry it as it is.
 */
bool proxy_access_identity_canonical(char *name);

/*
 * proxy_access_xfcc_value(cert, buf, len):
 * The X-Forwarded-Client-Cert value for ${cert} in Envoy's syntax:
 * Hash=<sha256 of DER, lowercase hex>;Subject="<RFC 2253, quotes and backslashes escaped>"
 * then ;DNS=<name> for each DNS SAN and ;URI=<uri> for each URI SAN.  Returns 0, or -1 when
 * it does not fit in ${len}.
 */
int proxy_access_xfcc_value(X509 *cert, char *buf, size_t len);

/*
 * proxy_access_rfc9440_value(cert, buf, len):
 * The RFC 9440 Client-Cert value for ${cert}: ":" base64(DER) ":".  For Client-Cert-Chain the
 * caller joins the values of the intermediates with ", ".  Returns 0, or -1 when it does not
 * fit.
 */
int proxy_access_rfc9440_value(X509 *cert, char *buf, size_t len);

/*
 * proxy_access_couchdb_token(hash, secret, secret_len, user, hex, len):
 * CouchDB's proxy-authentication token: lowercase hex HMAC-${hash}(key=${secret}, ${user}),
 * as couch_httpd_auth:proxy_authentication_handler computes it.  Known vector: user "foo",
 * secret "the_secret", sha256 ->
 * 3f0786e96b20b0102b77f1a49c041be6977cfb3bf78c41a12adc121cd9b4e68a.
 * Returns 0, or -1 when ${len} is too small (65 bytes needed for sha256, 41 for sha1).
 */
int proxy_access_couchdb_token(enum config_hash hash, const unsigned char *secret,
                               size_t secret_len, const char *user, char *hex, size_t len);

#endif /* FERRY_PROXY_ACCESS_H */
