/*
 * fuzz_name: libFuzzer target for the peer-name rules of CONTRACT §4 rule 3 (tls/tls_name.c
 * and tls_check_leaf() in tls/tls_verify.c).
 *
 * Input: the lines of fuzz_input.h.  Every H, A, D and C payload (a C string: up to its
 * first NUL) goes through tls_name_is_ip(), tls_name_match_san() and tls_name_match_allow()
 * against the others, and a certificate with those names goes through tls_check_leaf().
 * Checked besides crashes, leaks and undefined behaviour:
 *   - a DNS SAN without '*' covers only the same name (ASCII case and one trailing dot
 *     aside); "*.rest" covers only "label.rest" with one non-empty label, never an IP
 *     literal or a host that holds '*'; allow entries likewise, IP literals as addresses;
 *   - a URI entry (or name) matches only a URI name (or entry): a spiffe:// entry byte for byte,
 *     or one ending in "/" "*" its prefix plus one path segment of [A-Za-z0-9._-] that is not
 *     "." or ".."; never anything longer than 2048 bytes;
 *   - matching ignores ASCII case (URIs aside: their path is case-sensitive), and a name
 *     matches itself;
 *   - tls_check_leaf() accepts a host exactly when one of the leaf's DNS SANs (as text,
 *     non-printable bytes shown as '?') covers it, an IP SAN equals it, or, with no DNS or
 *     IP SAN and cn_fallback, the last CN covers it; the same for allow entries, where URI SANs
 *     count too (a DNS SAN spelt as a URI, a URI SAN that is not one, a CN spelt as a URI
 *     never); and every text it fills in is printable.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "fuzz_input.h"
#include "tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Bounds on the work per input: names paired with each other, leaf checks. */
#define FZ_MAX_NAMES  24
#define FZ_MAX_CHECKS 8

/* ASCII lower case, whatever the locale. */
static char
fz_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* ${s} with ASCII letters upper-cased, into buf[0..len). */
static const char *
fz_upper(const char *s, char *buf, size_t len)
{
    size_t i;

    for (i = 0; s[i] != '\0' && i + 1 < len; i++) {
        buf[i] = (s[i] >= 'a' && s[i] <= 'z') ? (char)(s[i] - 'a' + 'A') : s[i];
    }
    buf[i] = '\0';
    return buf;
}

/* The length of ${s} without one trailing dot. */
static size_t
fz_nlen(const char *s)
{
    size_t n = strlen(s);

    return n > 0 && s[n - 1] == '.' ? n - 1 : n;
}

/* Are a[0..an) and b[0..bn) equal ignoring ASCII case? */
static bool
fz_ieq(const char *a, size_t an, const char *b, size_t bn)
{
    if (an != bn) {
        return false;
    }
    for (size_t i = 0; i < an; i++) {
        if (fz_lower(a[i]) != fz_lower(b[i])) {
            return false;
        }
    }
    return true;
}

/*
 * What a "*.rest" pattern may cover: ${name} (trailing dot dropped) is one non-empty label
 * without '*', a dot, then ${rest} (trailing dot dropped) ignoring case.
 */
static bool
fz_wildcard_ok(const char *pat, const char *name)
{
    size_t pn = fz_nlen(pat), nn = fz_nlen(name);
    const char *dot = memchr(name, '.', nn);

    if (pn < 3 || pat[0] != '*' || pat[1] != '.' || memchr(pat + 2, '*', pn - 2) != NULL ||
        dot == NULL || dot == name || memchr(name, '*', nn) != NULL) {
        return false;
    }
    return fz_ieq(dot + 1, nn - (size_t)(dot - name) - 1, pat + 2, pn - 2);
}

/* What a URI entry may match: the same spiffe:// ID, or one more path segment under ".../" "*". */
static bool
fz_uri_ok(const char *pat, const char *name)
{
    size_t pn = strlen(pat), nn = strlen(name);

    if (strncmp(pat, "spiffe://", 9) != 0 || strncmp(name, "spiffe://", 9) != 0 || nn > 2048) {
        return false;
    }
    if (pn >= 2 && pat[pn - 1] == '*' && pat[pn - 2] == '/') {
        const char *seg = name + pn - 1;
        size_t sn = nn - (pn - 1);

        if (nn <= pn - 1 || memcmp(pat, name, pn - 1) != 0 || memchr(pat, '*', pn - 1) != NULL ||
            (sn == 1 && seg[0] == '.') || (sn == 2 && seg[0] == '.' && seg[1] == '.')) {
            return false;
        }
        for (size_t i = 0; i < sn; i++) {
            char c = seg[i];

            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || c == '_')) {
                return false;
            }
        }
        return true;
    }
    return strcmp(pat, name) == 0 && strchr(pat, '*') == NULL;
}

/* The properties of the pure matchers for one pattern and one name. */
static void
fz_pair(const char *pat, const char *name)
{
    char up_p[600], up_n[600];
    unsigned char pb[16], nb[16];
    size_t pl = 0, nl = 0;
    bool pip = tls_name_is_ip(pat, pb, &pl);
    bool nip = tls_name_is_ip(name, nb, &nl);
    bool san = tls_name_match_san(pat, name);
    bool allow = tls_name_match_allow(pat, name);

    fz_check(!pip || pl == 4 || pl == 16, "tls_name_is_ip length");
    if (san) {
        fz_check(!nip, "a DNS SAN covers an IP literal");
        fz_check(memchr(name, '*', fz_nlen(name)) == NULL, "a DNS SAN covers a host with '*'");
        if (strchr(pat, '*') == NULL) {
            fz_check(fz_ieq(pat, fz_nlen(pat), name, fz_nlen(name)),
                     "a DNS SAN covers a different name");
        } else {
            fz_check(fz_wildcard_ok(pat, name), "a wildcard SAN covers more than one label");
        }
    }
    if (allow) {
        if (tls_name_is_uri(pat) || tls_name_is_uri(name)) {
            fz_check(tls_name_is_uri(pat) && tls_name_is_uri(name) && fz_uri_ok(pat, name),
                     "a URI allow entry matches what it must not");
        } else if (pip || nip) {
            fz_check(pip && nip && pl == nl && memcmp(pb, nb, pl) == 0,
                     "an IP allow entry matches another address");
        } else if (strchr(pat, '*') == NULL) {
            fz_check(fz_ieq(pat, fz_nlen(pat), name, fz_nlen(name)),
                     "an allow entry matches a different name");
        } else {
            fz_check(fz_wildcard_ok(pat, name), "a wildcard allow entry matches too much");
        }
    }
    /* Case does not matter (upper-casing keeps an IP literal an IP literal). */
    if (strlen(pat) < sizeof(up_p) && strlen(name) < sizeof(up_n)) {
        (void)fz_upper(pat, up_p, sizeof(up_p));
        (void)fz_upper(name, up_n, sizeof(up_n));
        fz_check(tls_name_match_san(up_p, up_n) == san, "tls_name_match_san depends on case");
        if (!tls_name_is_uri(pat) && !tls_name_is_uri(name)) {
            fz_check(tls_name_match_allow(up_p, up_n) == allow,
                     "tls_name_match_allow depends on case");
        }
    }
}

/* A name matches itself unless it is empty, holds '*', or (for SANs) is an IP literal. */
static void
fz_self(const char *s)
{
    bool ip = tls_name_is_ip(s, NULL, NULL);

    if (fz_nlen(s) == 0 || strchr(s, '*') != NULL) {
        return;
    }
    if (tls_name_is_uri(s)) {
        fz_check(tls_name_match_allow(s, s) ==
                     (strncmp(s, "spiffe://", 9) == 0 && strlen(s) <= 2048),
                 "a SPIFFE ID does not match itself, or another URI does");
        return;
    }
    /* A DNS name that is not a host name matches nothing, not even itself. */
    fz_check(tls_name_match_allow(s, s) == (ip || tls_name_is_host(s)),
             "an allow entry does not match itself, or a name that is no host does");
    if (!ip) {
        fz_check(tls_name_match_san(s, s), "a DNS SAN does not cover itself");
    }
}

/* The text tls_check_leaf() compares for a certificate string: printable, or nothing. */
static bool
fz_cert_text(const unsigned char *s, int n, char *buf, size_t len)
{
    if (n < 0 || (size_t)n >= len) {
        return false;
    }
    for (int i = 0; i < n; i++) {
        buf[i] = (s[i] < 0x20 || s[i] > 0x7e) ? '?' : (char)s[i];
    }
    buf[n] = '\0';
    return true;
}

/*
 * The oracle for tls_check_leaf(): may ${x} be named ${host} (as a peer host when
 * ${is_host}, else as an allow entry)?
 */
static bool
fz_leaf_names(X509 *x, const char *host, bool is_host, bool cn_fallback)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    const X509_NAME *subj = X509_get_subject_name(x);
    unsigned char hb[16];
    size_t hl = 0;
    bool host_ip = tls_name_is_ip(host, hb, &hl), has_san = false, ok = false;
    char text[256];
    int last = -1, i;

    for (i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        const ASN1_STRING *v;
        char ip[64];

        if (g->type == GEN_DNS) {
            has_san = true;
            v = g->d.dNSName;
            if (!fz_cert_text(ASN1_STRING_get0_data(v), ASN1_STRING_length(v), text,
                              sizeof(text))) {
                continue;
            }
            ok = ok || (is_host ? (!host_ip && tls_name_match_san(text, host))
                                : !tls_name_is_uri(text) && tls_name_match_allow(host, text));
        } else if (g->type == GEN_URI && !is_host) {
            v = g->d.uniformResourceIdentifier;
            if (fz_cert_text(ASN1_STRING_get0_data(v), ASN1_STRING_length(v), text, sizeof(text)) &&
                tls_name_is_uri(text)) {
                ok = ok || tls_name_match_allow(host, text);
            }
        } else if (g->type == GEN_IPADD) {
            has_san = true;
            v = g->d.iPAddress;
            if (ASN1_STRING_length(v) != 4 && ASN1_STRING_length(v) != 16) {
                continue;
            }
            if (is_host) {
                ok = ok || (host_ip && (size_t)ASN1_STRING_length(v) == hl &&
                            memcmp(ASN1_STRING_get0_data(v), hb, hl) == 0);
            } else {
                (void)inet_ntop(ASN1_STRING_length(v) == 4 ? AF_INET : AF_INET6,
                                ASN1_STRING_get0_data(v), ip, sizeof(ip));
                ok = ok || tls_name_match_allow(host, ip);
            }
        }
    }
    GENERAL_NAMES_free(gens);
    if (has_san || !cn_fallback) {
        return ok;
    }
    while ((i = X509_NAME_get_index_by_NID(subj, NID_commonName, last)) >= 0) {
        last = i;
    }
    if (last >= 0) {
        unsigned char *utf8 = NULL;
        int n =
            ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, last)));

        if (n > 0 && fz_cert_text(utf8, n, text, sizeof(text)) && !tls_name_is_uri(text)) {
            if (is_host) {
                unsigned char cb[16];
                size_t cl = 0;

                ok = host_ip ? tls_name_is_ip(text, cb, &cl) && cl == hl && memcmp(cb, hb, hl) == 0
                             : tls_name_match_san(text, host);
            } else {
                ok = ok || tls_name_match_allow(host, text);
            }
        }
        OPENSSL_free(utf8);
    }
    ERR_clear_error();
    return ok;
}

/* Is every text of ${info} that comes from the certificate printable and terminated? */
static void
fz_info_printable(const struct tls_peer_info *info)
{
    fz_check(memchr(info->subject, '\0', sizeof(info->subject)) != NULL &&
                 fz_printable(info->subject, strlen(info->subject)),
             "peer subject not printable");
    fz_check(memchr(info->issuer, '\0', sizeof(info->issuer)) != NULL &&
                 fz_printable(info->issuer, strlen(info->issuer)),
             "peer issuer not printable");
    fz_check(memchr(info->sans, '\0', sizeof(info->sans)) != NULL &&
                 fz_printable(info->sans, strlen(info->sans)),
             "peer SANs not printable");
    fz_check(memchr(info->name, '\0', sizeof(info->name)) != NULL &&
                 fz_printable(info->name, strlen(info->name)),
             "peer name not printable");
}

/* tls_check_leaf() against the oracle, for the host and for each allow entry alone. */
static void
fz_leaf(const struct fz_input *in)
{
    X509 *x = fz_cert_build(in);
    bool cn_fallback = fz_input_has(in, 'F', 'f');
    bool server = fz_input_has(in, 'F', 's');
    struct tls_peer_info info;
    enum tls_reject r;

    if (x == NULL) {
        return;
    }
    memset(&info, 0, sizeof(info));
    r = tls_check_leaf(x, server, NULL, NULL, 0, cn_fallback, &info);
    fz_info_printable(&info);
    if (r != TLS_REJECT_NONE) {
        /* EKU refused: names are never looked at. */
        fz_check(r == TLS_REJECT_EKU_MISSING || r == TLS_REJECT_EKU_WRONG, "unexpected reject");
        goto done;
    }
    for (size_t i = 0, checked = 0; i < in->n && checked < FZ_MAX_CHECKS; i++) {
        const char *s = in->v[i].s;
        const char *one[1] = {s};

        checked += in->v[i].tag == 'H' || in->v[i].tag == 'A';

        if (in->v[i].tag == 'H') {
            r = tls_check_leaf(x, server, s, NULL, 0, cn_fallback, &info);
            fz_info_printable(&info);
            fz_check((r == TLS_REJECT_NONE) == fz_leaf_names(x, s, true, cn_fallback),
                     "tls_check_leaf disagrees on the peer host");
            fz_check(r == TLS_REJECT_NONE || r == TLS_REJECT_NAME_MISMATCH ||
                         r == TLS_REJECT_NO_NAME,
                     "unexpected reject for a peer host");
        } else if (in->v[i].tag == 'A') {
            r = tls_check_leaf(x, server, NULL, one, 1, cn_fallback, &info);
            fz_info_printable(&info);
            fz_check((r == TLS_REJECT_NONE) == fz_leaf_names(x, s, false, cn_fallback),
                     "tls_check_leaf disagrees on an allow entry");
        }
    }
done:
    X509_free(x);
    ERR_clear_error();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz_input in;

    if (fz_input_parse(data, size, &in) != 0) {
        return 0;
    }
    for (size_t i = 0; i < in.n && i < FZ_MAX_NAMES; i++) {
        char t = in.v[i].tag;

        if (t != 'H' && t != 'A' && t != 'D' && t != 'C') {
            continue;
        }
        fz_self(in.v[i].s);
        for (size_t j = 0; j < in.n && j < FZ_MAX_NAMES; j++) {
            char u = in.v[j].tag;

            if (u == 'H' || u == 'A' || u == 'D' || u == 'C') {
                fz_pair(in.v[i].s, in.v[j].s);
            }
        }
    }
    fz_leaf(&in);
    fz_input_free(&in);
    return 0;
}
