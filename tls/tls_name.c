/*
 * tls_name.c: host name and IP matching for rule 3 of CONTRACT.md §4.
 *
 * Comparisons are ASCII case-insensitive and independent of the locale: certificate names
 * are IA5 strings, and internationalised names arrive here already as A-labels (xn--).
 */
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "tls.h"

/* The longest IPv6 literal we accept, with brackets and NUL. */
#define IP_TEXT_MAX (INET6_ADDRSTRLEN + 2)

static char
ascii_lower(char c)
{
    return (char)((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
}

/* Do a[0..alen) and b[0..blen) hold the same name, ignoring ASCII case? */
static bool
ascii_ieq(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t i;

    if (alen != blen) {
        return false;
    }
    for (i = 0; i < alen; i++) {
        if (ascii_lower(a[i]) != ascii_lower(b[i])) {
            return false;
        }
    }
    return true;
}

/* The length of ${s} without one trailing dot (an absolute name equals the relative one). */
static size_t
name_len(const char *s)
{
    size_t n = strlen(s);

    if (n > 0 && s[n - 1] == '.') {
        n--;
    }
    return n;
}

/*
 * Does the name s[0..n) end in ".suffix" where suffix[0..slen) follows a single non-empty
 * left-most label of s?  That is: s = "<label>.<suffix>".
 */
static bool
one_label_then(const char *s, size_t n, const char *suffix, size_t slen)
{
    const char *dot = memchr(s, '.', n);

    /* The label the wildcard stands for must be non-empty and must not itself be a '*'. */
    if (dot == NULL || dot == s || memchr(s, '*', (size_t)(dot - s)) != NULL) {
        return false;
    }
    return ascii_ieq(dot + 1, n - (size_t)(dot - s) - 1, suffix, slen);
}

/*
 * tls_name_is_ip(host, out, outlen):
 * Is ${host} an IPv4 or IPv6 literal (an IPv6 literal may be written in brackets)?  When it
 * is and ${out} is not NULL, writes its binary form (4 or 16 bytes; ${out} must hold 16) and
 * sets *${outlen}.
 */
bool
tls_name_is_ip(const char *host, unsigned char *out, size_t *outlen)
{
    char text[IP_TEXT_MAX];
    unsigned char bin[16];
    size_t n;

    if (host == NULL) {
        return false;
    }
    n = strlen(host);
    if (n == 0 || n >= sizeof(text)) {
        return false;
    }
    /* "[::1]" is how URLs and our config write IPv6 hosts; accept it here too. */
    if (host[0] == '[' && n > 2 && host[n - 1] == ']') {
        memcpy(text, host + 1, n - 2);
        text[n - 2] = '\0';
    } else {
        memcpy(text, host, n + 1);
    }
    if (inet_pton(AF_INET, text, bin) == 1) {
        n = 4;
    } else if (inet_pton(AF_INET6, text, bin) == 1) {
        n = 16;
    } else {
        return false;
    }
    if (out != NULL) {
        memcpy(out, bin, n);
        if (outlen != NULL) {
            *outlen = n;
        }
    }
    return true;
}

/*
 * tls_name_match_san(san, host):
 * Does the DNS SAN ${san} cover ${host}?  Case-insensitive; a wildcard only as the whole
 * left-most label, followed by at least two labels.  An IP literal ${host} never matches a
 * DNS SAN (IP SANs are compared by tls_check_leaf()).  A trailing dot on either side is
 * ignored.
 */
bool
tls_name_match_san(const char *san, const char *host)
{
    size_t slen, hlen;

    if (san == NULL || host == NULL || tls_name_is_ip(host, NULL, NULL)) {
        return false;
    }
    slen = name_len(san);
    hlen = name_len(host);
    if (slen == 0 || hlen == 0 || memchr(host, '*', hlen) != NULL) {
        return false;
    }
    if (slen > 2 && san[0] == '*' && san[1] == '.') {
        const char *rest = san + 2;
        size_t rlen = slen - 2;

        /* "*.org": the wildcard must be followed by two labels or more. */
        if (memchr(rest, '.', rlen) == NULL || memchr(rest, '*', rlen) != NULL) {
            return false;
        }
        return one_label_then(host, hlen, rest, rlen);
    }
    /* "f*.example.org", "*", "a.*.org": partial or inner wildcards are never honoured. */
    if (memchr(san, '*', slen) != NULL) {
        return false;
    }
    return ascii_ieq(san, slen, host, hlen);
}

/*
 * tls_name_is_uri(s):
 * Is ${s} written as a URI ("scheme://...")?  Such an entry or name is compared only with
 * URIs: "spiffe://a.example.org" must never read as a host name under "*.example.org".
 */
bool
tls_name_is_uri(const char *s)
{
    return s != NULL && strstr(s, "://") != NULL;
}

/*
 * tls_name_is_host(s):
 * Is ${s} a host name: LDH labels (plus '_'), 1..63 bytes each, 253 in all, one final dot?
 */
bool
tls_name_is_host(const char *s)
{
    size_t n, i, label = 0;

    if (s == NULL) {
        return false;
    }
    n = name_len(s);
    if (n == 0 || n > 253) {
        return false;
    }
    for (i = 0; i < n; i++) {
        char c = s[i];

        if (c == '.') {
            if (label == 0) {
                return false;
            }
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '_') {
            if (++label > 63) {
                return false;
            }
        } else {
            return false;
        }
    }
    return label > 0;
}

/* Is s[0..n) one SPIFFE path segment: non-empty [A-Za-z0-9._-], neither "." nor ".."? */
static bool
spiffe_segment(const char *s, size_t n)
{
    size_t i;

    if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.')) {
        return false;
    }
    for (i = 0; i < n; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_')) {
            return false;
        }
    }
    return true;
}

/*
 * The URI entry ${entry} against the URI name ${name}: byte for byte (SPIFFE IDs are
 * case-sensitive in their path, and their trust domain is lower case by rule), or, for an
 * entry whose last path segment is "*", the entry's prefix followed by exactly one more valid path
 * segment.
 */
static bool
uri_match(const char *entry, const char *name)
{
    size_t elen = strlen(entry), nlen = strlen(name);

    if (strncmp(entry, "spiffe://", 9) != 0 || strncmp(name, "spiffe://", 9) != 0 ||
        nlen > TLS_SPIFFE_ID_MAX) {
        return false;
    }
    if (elen > 11 && entry[elen - 1] == '*' && entry[elen - 2] == '/') {
        /* An entry "spiffe://td/ns/db/" + "*": the name is "spiffe://td/ns/db/<one segment>". */
        size_t plen = elen - 1;

        if (memchr(entry, '*', plen) != NULL || nlen <= plen || memcmp(entry, name, plen) != 0) {
            return false;
        }
        return memchr(name + plen, '/', nlen - plen) == NULL &&
               spiffe_segment(name + plen, nlen - plen);
    }
    return memchr(entry, '*', elen) == NULL && elen == nlen && memcmp(entry, name, elen) == 0;
}

/*
 * tls_name_match_allow(entry, name):
 * Does the `allow` / `peers` entry ${entry} match the peer name ${name}?  Exactly
 * (case-insensitive, trailing dot ignored), or "*.suffix" covering exactly one more label.
 * IP literals match only themselves, compared as addresses ("::1" equals "0:0::1").  A URI
 * entry ("spiffe://...") matches URI names only, byte for byte, or one more path segment
 * under an entry whose last path segment is "*"; a URI name matches URI entries only.
 */
bool
tls_name_match_allow(const char *entry, const char *name)
{
    unsigned char ebin[16], nbin[16];
    size_t ebinlen = 0, nbinlen = 0;
    bool eip, nip;
    size_t elen, nlen;

    if (entry == NULL || name == NULL) {
        return false;
    }
    if (tls_name_is_uri(entry) || tls_name_is_uri(name)) {
        return tls_name_is_uri(entry) && tls_name_is_uri(name) && uri_match(entry, name);
    }
    eip = tls_name_is_ip(entry, ebin, &ebinlen);
    nip = tls_name_is_ip(name, nbin, &nbinlen);
    if (eip || nip) {
        return eip && nip && ebinlen == nbinlen && memcmp(ebin, nbin, ebinlen) == 0;
    }
    if (!tls_name_is_host(name)) {
        return false; /* 'a".example.org' is no host: not even "*.example.org" covers it */
    }
    elen = name_len(entry);
    nlen = name_len(name);
    if (elen == 0 || nlen == 0) {
        return false;
    }
    if (elen > 2 && entry[0] == '*' && entry[1] == '.') {
        if (memchr(entry + 2, '*', elen - 2) != NULL) {
            return false;
        }
        return one_label_then(name, nlen, entry + 2, elen - 2);
    }
    if (memchr(entry, '*', elen) != NULL || memchr(name, '*', nlen) != NULL) {
        return false;
    }
    return ascii_ieq(entry, elen, name, nlen);
}
