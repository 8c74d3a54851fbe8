/*
 * tls_verify.c: the rules of CONTRACT.md §4 as pure functions on certificates.
 *
 * Chain building itself is OpenSSL's (X509_verify_cert() in tls_ctx.c); this file maps its
 * result to an enum tls_reject, runs rules 2 (EKU) and 3 (name) on the leaf, and turns a
 * rejection into words an operator can act on.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls.h"
#include "tls_internal.h"

/* Labels for /metrics and JSON: stable, other layers and dashboards rely on them. */
static const char *const reject_labels[TLS_REJECT__COUNT] = {
    [TLS_REJECT_NONE] = "none",
    [TLS_REJECT_NO_CERT] = "no_cert",
    [TLS_REJECT_UNKNOWN_CA] = "unknown_ca",
    [TLS_REJECT_SELF_SIGNED] = "self_signed",
    [TLS_REJECT_NOT_CA] = "not_ca",
    [TLS_REJECT_EXPIRED] = "expired",
    [TLS_REJECT_NOT_YET_VALID] = "not_yet_valid",
    [TLS_REJECT_REVOKED] = "revoked",
    [TLS_REJECT_CRL] = "crl",
    [TLS_REJECT_CHAIN_TOO_LONG] = "chain_too_long",
    [TLS_REJECT_BAD_SIGNATURE] = "bad_signature",
    [TLS_REJECT_CHAIN_OTHER] = "chain_other",
    [TLS_REJECT_EKU_MISSING] = "eku_missing",
    [TLS_REJECT_EKU_WRONG] = "eku_wrong",
    [TLS_REJECT_NO_NAME] = "no_name",
    [TLS_REJECT_NAME_MISMATCH] = "name_mismatch",
    [TLS_REJECT_NAME_NOT_ALLOWED] = "name_not_allowed",
};

/*
 * Copy n bytes of certificate text into buf[0..len) as printable ASCII: control bytes, NULs
 * and non-ASCII bytes become '?', so a hostile name can neither forge log lines nor hide a
 * NUL that would truncate a comparison.  Returns false when the text does not fit (a name
 * that long is never compared, so truncation cannot make it match).
 */
static bool
printable_copy(char *buf, size_t len, const unsigned char *s, size_t n)
{
    size_t i;

    if (len == 0) {
        return false;
    }
    if (n >= len) {
        buf[0] = '\0';
        return false;
    }
    for (i = 0; i < n; i++) {
        buf[i] = (char)((s[i] < 0x20 || s[i] > 0x7e) ? '?' : s[i]);
    }
    buf[n] = '\0';
    return true;
}

/*
 * Append ",KIND:text" (no ',' before the first entry) to the SAN list buf[0..len) at *pos,
 * whole or not at all: a cut entry would read as another name ("DNS:admin.example.org" out
 * of "DNS:admin.example.org.evil").  A ',' in ${text} (a URI may hold one) is shown as '?',
 * so that one SAN cannot read as two ("URI:x,DNS:admin.example.org").
 */
static void
append_san(char *buf, size_t len, size_t *pos, const char *kind, const char *text)
{
    size_t klen = strlen(kind), tlen = strlen(text), i;
    size_t need = (*pos > 0 ? 1 : 0) + klen + tlen;
    char *p = buf + *pos;

    if (*pos + need + 1 > len) {
        return;
    }
    if (*pos > 0) {
        *p++ = ',';
    }
    memcpy(p, kind, klen);
    p += klen;
    /*
     * Up to the '\0', not to tlen: the same bytes, in a form the analyzer can follow (it does
     * not tie strlen() to the '\0' that printable_copy() wrote, and takes text[tlen-1] for
     * garbage).
     */
    for (i = 0; text[i] != '\0'; i++) {
        *p++ = (char)(text[i] == ',' ? '?' : text[i]);
    }
    *p = '\0';
    *pos += need;
}

/* ${name} in RFC 2253 form ("CN=node2.test,O=Site B"), printable, into buf[0..len). */
static void
name_rfc2253(const X509_NAME *name, char *buf, size_t len)
{
    BIO *bio;
    char *data = NULL;
    long n;

    buf[0] = '\0';
    if (name == NULL || (bio = BIO_new(BIO_s_mem())) == NULL) {
        return;
    }
    if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) >= 0 &&
        (n = BIO_get_mem_data(bio, &data)) > 0) {
        /* Truncate long names rather than drop them: this text is only shown, never matched. */
        size_t m = (size_t)n < len ? (size_t)n : len - 1;

        (void)printable_copy(buf, len, (const unsigned char *)data, m);
    }
    BIO_free(bio);
}

/*
 * tls_subject_str(cert, buf, len):
 * The subject of ${cert} in RFC 2253 form, printable ASCII, into ${buf} ("" for NULL).
 * Returns ${buf}.
 */
const char *
tls_subject_str(X509 *cert, char *buf, size_t len)
{
    if (len == 0) {
        return buf;
    }
    buf[0] = '\0';
    if (cert != NULL) {
        name_rfc2253(X509_get_subject_name(cert), buf, len);
    }
    return buf;
}

/*
 * The most specific (last) commonName of ${cert} into buf[0..len); "" when none fits or when
 * it is written as a URI.
 */
static void
leaf_cn(X509 *cert, char *buf, size_t len)
{
    const X509_NAME *subj = X509_get_subject_name(cert);
    int i, last = -1;
    unsigned char *utf8 = NULL;
    int n;

    buf[0] = '\0';
    while ((i = X509_NAME_get_index_by_NID(subj, NID_commonName, last)) >= 0) {
        last = i;
    }
    if (last < 0) {
        return;
    }
    n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, last)));
    if (n > 0) {
        (void)printable_copy(buf, len, utf8, (size_t)n);
    }
    OPENSSL_free(utf8);
    /* A CN written as a URI must not pass for a URI SAN under a spiffe:// entry. */
    if (tls_name_is_uri(buf)) {
        buf[0] = '\0';
    }
}

/*
 * The text of a DNS, IP or URI SAN: "node2.test", "10.0.0.2" or "spiffe://td/ns/db/x" (bytes
 * outside printable ASCII as '?').  Returns false for other types and for names that do not
 * fit ${len}.
 */
static bool
san_text(const GENERAL_NAME *g, char *buf, size_t len)
{
    const ASN1_OCTET_STRING *ip;

    switch (g->type) {
    case GEN_DNS:
        return printable_copy(buf, len, ASN1_STRING_get0_data(g->d.dNSName),
                              (size_t)ASN1_STRING_length(g->d.dNSName));
    case GEN_IPADD:
        ip = g->d.iPAddress;
        if (ASN1_STRING_length(ip) == 4) {
            return inet_ntop(AF_INET, ASN1_STRING_get0_data(ip), buf, (socklen_t)len) != NULL;
        }
        if (ASN1_STRING_length(ip) == 16) {
            return inet_ntop(AF_INET6, ASN1_STRING_get0_data(ip), buf, (socklen_t)len) != NULL;
        }
        return false;
    case GEN_URI:
        return printable_copy(buf, len, ASN1_STRING_get0_data(g->d.uniformResourceIdentifier),
                              (size_t)ASN1_STRING_length(g->d.uniformResourceIdentifier));
    default:
        return false;
    }
}

/*
 * A URI SAN too long for buf[0..len) (san_text() refused it), cut and marked with TLS_SAN_CUT:
 * shown, never a name ('[' is in no SPIFFE ID nor pattern, so the cut text matches nothing).
 */
static bool
uri_cut(const GENERAL_NAME *g, char *buf, size_t len)
{
    const ASN1_IA5STRING *u = g->d.uniformResourceIdentifier;
    size_t keep = len > sizeof(TLS_SAN_CUT) ? len - sizeof(TLS_SAN_CUT) : 0;

    if (keep == 0 || (size_t)ASN1_STRING_length(u) < len ||
        !printable_copy(buf, len, ASN1_STRING_get0_data(u), keep)) {
        return false;
    }
    memcpy(buf + keep, TLS_SAN_CUT, sizeof(TLS_SAN_CUT));
    return true;
}

/* ${t} as RFC 3339 ("2027-12-05T00:00:00Z") or for people ("2027-12-05 00:00:00 UTC") into
 * ${buf}; ${fallback} when it cannot be parsed or does not fit. */
static const char *
time_fmt(const ASN1_TIME *t, bool rfc3339, const char *fallback, char *buf, size_t len)
{
    struct tm tm;
    size_t n = 0;

    if (len == 0) {
        return buf;
    }
    memset(&tm, 0, sizeof(tm));
    if (t != NULL && ASN1_TIME_to_tm(t, &tm) == 1) {
        n = rfc3339 ? strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm)
                    : strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm);
    }
    if (n == 0) {
        (void)snprintf(buf, len, "%s", fallback);
    }
    return buf;
}

/*
 * tls_time_str(t, buf, len):
 * Format ${t} as "2025-01-31 12:00:00 UTC" into ${buf}; "?" when it cannot be parsed.
 * Returns ${buf}.
 */
const char *
tls_time_str(const ASN1_TIME *t, char *buf, size_t len)
{
    return time_fmt(t, false, "?", buf, len);
}

/*
 * tls_time_rfc3339(t, buf, len):
 * Format ${t} as an RFC 3339 UTC timestamp, "2027-12-05T00:00:00Z", into ${buf}; "" when it
 * cannot be parsed or does not fit.  Returns ${buf}.
 */
const char *
tls_time_rfc3339(const ASN1_TIME *t, char *buf, size_t len)
{
    return time_fmt(t, true, "", buf, len);
}

/*
 * tls_reject_from_x509(x509_err):
 * Map an X509_V_ERR_* code from chain building to the rule that failed.
 */
enum tls_reject
tls_reject_from_x509(int x509_err)
{
    switch (x509_err) {
    case X509_V_OK:
        return TLS_REJECT_NONE;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
        return TLS_REJECT_UNKNOWN_CA;
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        return TLS_REJECT_SELF_SIGNED;
    case X509_V_ERR_INVALID_CA:
        return TLS_REJECT_NOT_CA;
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return TLS_REJECT_EXPIRED;
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return TLS_REJECT_NOT_YET_VALID;
    case X509_V_ERR_CERT_REVOKED:
        return TLS_REJECT_REVOKED;
    case X509_V_ERR_UNABLE_TO_GET_CRL:
    case X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER:
    case X509_V_ERR_CRL_HAS_EXPIRED:
    case X509_V_ERR_CRL_NOT_YET_VALID:
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
    case X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD:
    case X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD:
    case X509_V_ERR_KEYUSAGE_NO_CRL_SIGN:
    case X509_V_ERR_DIFFERENT_CRL_SCOPE:
    case X509_V_ERR_CRL_PATH_VALIDATION_ERROR:
    case X509_V_ERR_UNHANDLED_CRITICAL_CRL_EXTENSION:
        return TLS_REJECT_CRL;
    case X509_V_ERR_CERT_CHAIN_TOO_LONG:
        return TLS_REJECT_CHAIN_TOO_LONG;
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE:
        return TLS_REJECT_BAD_SIGNATURE;
    default:
        return TLS_REJECT_CHAIN_OTHER;
    }
}

/*
 * tls_check_eku(cert, need_server_auth):
 * Rule 2 alone.  anyExtendedKeyUsage does not count: CONTRACT.md §4 asks for the purpose to
 * be listed, as our peers (ferry and OpenSSL-based clients) check it.
 */
enum tls_reject
tls_check_eku(X509 *cert, bool need_server_auth)
{
    uint32_t xku;

    /* X509_get_extension_flags() also makes OpenSSL parse and cache the extensions. */
    if ((X509_get_extension_flags(cert) & EXFLAG_XKUSAGE) == 0) {
        return TLS_REJECT_EKU_MISSING;
    }
    xku = X509_get_extended_key_usage(cert);
    if ((xku & (need_server_auth ? XKU_SSL_SERVER : XKU_SSL_CLIENT)) == 0) {
        return TLS_REJECT_EKU_WRONG;
    }
    return TLS_REJECT_NONE;
}

/*
 * tls_peer_info_fill() on the SANs ${gens} of ${cert}, already decoded by the caller (NULL: the
 * certificate has none), so that tls_check_leaf() decodes them once per handshake.
 */
static void
info_fill(X509 *cert, const GENERAL_NAMES *gens, bool cn_fallback, struct tls_peer_info *info)
{
    char text[256], first_dns[256] = "", first_ip[256] = "", first_uri[256] = "";
    size_t pos = 0;
    bool has_san = false;
    int i;

    info->subject[0] = info->issuer[0] = info->sans[0] = info->name[0] = '\0';
    info->not_before[0] = info->not_after[0] = '\0';
    if (cert == NULL) {
        return;
    }
    name_rfc2253(X509_get_subject_name(cert), info->subject, sizeof(info->subject));
    name_rfc2253(X509_get_issuer_name(cert), info->issuer, sizeof(info->issuer));
    (void)tls_time_str(X509_get0_notBefore(cert), info->not_before, sizeof(info->not_before));
    (void)tls_time_str(X509_get0_notAfter(cert), info->not_after, sizeof(info->not_after));

    for (i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);

        has_san = has_san || g->type == GEN_DNS || g->type == GEN_IPADD;
        if (g->type == GEN_DNS && san_text(g, text, sizeof(text))) {
            append_san(info->sans, sizeof(info->sans), &pos, "DNS:", text);
            /* Shown in sans, but only a host name may be the peer's name. */
            if (first_dns[0] == '\0' && tls_name_is_host(text)) {
                (void)snprintf(first_dns, sizeof(first_dns), "%s", text);
            }
        } else if (g->type == GEN_IPADD && san_text(g, text, sizeof(text))) {
            append_san(info->sans, sizeof(info->sans), &pos, "IP:", text);
            if (first_ip[0] == '\0') {
                (void)snprintf(first_ip, sizeof(first_ip), "%s", text);
            }
        } else if (g->type == GEN_URI && san_text(g, text, sizeof(text))) {
            append_san(info->sans, sizeof(info->sans), &pos, "URI:", text);
            if (first_uri[0] == '\0') {
                (void)snprintf(first_uri, sizeof(first_uri), "%s", text);
            }
        } else if (g->type == GEN_URI && uri_cut(g, text, sizeof(text))) {
            append_san(info->sans, sizeof(info->sans), &pos, "URI:", text);
        } else if (g->type == GEN_EMAIL &&
                   printable_copy(text, sizeof(text), ASN1_STRING_get0_data(g->d.rfc822Name),
                                  (size_t)ASN1_STRING_length(g->d.rfc822Name))) {
            append_san(info->sans, sizeof(info->sans), &pos, "email:", text);
        }
    }

    if (first_dns[0] != '\0') {
        (void)snprintf(info->name, sizeof(info->name), "%s", first_dns);
    } else if (first_ip[0] != '\0') {
        (void)snprintf(info->name, sizeof(info->name), "%s", first_ip);
    } else if (cn_fallback && !has_san) {
        /* As in tls_check_leaf(): a DNS or IP SAN, even one never shown, rules the CN out. */
        leaf_cn(cert, info->name, sizeof(info->name));
        if (!tls_name_is_host(info->name) && !tls_name_is_ip(info->name, NULL, NULL)) {
            info->name[0] = '\0'; /* "Jane Doe" is a subject, not a name */
        }
    }
    if (info->name[0] == '\0' && tls_name_is_uri(first_uri)) {
        /* A mesh identity (URI SAN only): the name shown; tls_check_leaf() may confirm it. */
        (void)snprintf(info->name, sizeof(info->name), "%s", first_uri);
    }
}

/*
 * tls_peer_info_fill(cert, cn_fallback, info):
 * Fill ${info}'s subject, issuer, sans, name, not_before and not_after from ${cert}; leaves
 * detail, x509_error and depth untouched.  With a NULL ${cert} the strings become "".
 */
void
tls_peer_info_fill(X509 *cert, bool cn_fallback, struct tls_peer_info *info)
{
    GENERAL_NAMES *gens = NULL;

    if (cert != NULL) {
        gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    }
    info_fill(cert, gens, cn_fallback, info);
    GENERAL_NAMES_free(gens);
}

/* Does the IP literal ${host} (binary hbin[0..hlen)) equal the IP SAN or CN text ${ip}? */
static bool
ip_equal(const unsigned char *hbin, size_t hlen, const char *ip)
{
    unsigned char bin[16];
    size_t n = 0;

    return tls_name_is_ip(ip, bin, &n) && n == hlen && memcmp(bin, hbin, n) == 0;
}

/* Does ${name} (a SAN or, with fallback, the CN) match one entry of allow[0..n_allow)? */
static bool
allowed(const char *name, const char *const *allow, size_t n_allow)
{
    size_t j;

    for (j = 0; j < n_allow; j++) {
        if (tls_name_match_allow(allow[j], name)) {
            return true;
        }
    }
    return false;
}

/*
 * tls_check_leaf(leaf, need_server_auth, peer_host, allow, n_allow, cn_fallback, info):
 * Rules 2 and 3 of CONTRACT.md §4 on an already chain-verified ${leaf}.  EKU: the leaf must
 * have the extension and list serverAuth (${need_server_auth}) or clientAuth.  Name: when
 * ${peer_host} is set, a SAN must cover it (DNS name, or IP literal against IP SANs); when
 * ${allow} is not NULL, one of the leaf's DNS/IP/URI SANs must match one of its ${n_allow}
 * entries (a URI SAN only a URI entry, tls_name_match_allow()).  The CN counts as a name only
 * when the leaf has no DNS or IP SAN and ${cn_fallback}; a leaf with no name at all (for
 * ${allow}, a URI SAN is one) is TLS_REJECT_NO_NAME only where a name is checked (${peer_host}
 * or ${allow} set).  Fills ${info} (see tls_peer_info_fill()); on a
 * match info->name is the SAN (or CN) that matched (with neither ${peer_host} nor ${allow},
 * never a URI SAN: nothing matched it), and on TLS_REJECT_NAME_MISMATCH
 * info->detail holds ${peer_host}.
 * Returns TLS_REJECT_NONE or the first rule that fails.
 */
enum tls_reject
tls_check_leaf(X509 *leaf, bool need_server_auth, const char *peer_host, const char *const *allow,
               size_t n_allow, bool cn_fallback, struct tls_peer_info *info)
{
    GENERAL_NAMES *gens = NULL;
    enum tls_reject r = TLS_REJECT_NONE;
    char text[256], cn[256] = "";
    unsigned char hbin[16];
    size_t hlen = 0;
    bool host_is_ip, has_san = false, has_uri = false, matched;
    int i;

    if (leaf == NULL) {
        tls_peer_info_fill(NULL, cn_fallback, info);
        return TLS_REJECT_NO_CERT;
    }
    /* Decoded once: for the names shown (info) and for the names matched below. */
    gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    info_fill(leaf, gens, cn_fallback, info);
    if ((r = tls_check_eku(leaf, need_server_auth)) != TLS_REJECT_NONE) {
        goto done;
    }
    if (peer_host == NULL && allow == NULL) {
        if (tls_name_is_uri(info->name)) {
            info->name[0] = '\0'; /* no pattern to match: a URI SAN is shown, never a name */
        }
        goto done;
    }

    for (i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        int type = sk_GENERAL_NAME_value(gens, i)->type;

        has_san = has_san || type == GEN_DNS || type == GEN_IPADD;
        has_uri = has_uri || type == GEN_URI;
    }
    if (!has_san) {
        if (cn_fallback) {
            leaf_cn(leaf, cn, sizeof(cn));
        }
        /* A URI SAN names the peer for `allow`, never for a host we dial. */
        if (cn[0] == '\0' && (peer_host != NULL || !has_uri)) {
            r = TLS_REJECT_NO_NAME;
            goto done;
        }
    }

    if (peer_host != NULL) {
        host_is_ip = tls_name_is_ip(peer_host, hbin, &hlen);
        matched = false;
        for (i = 0; i < sk_GENERAL_NAME_num(gens) && !matched; i++) {
            const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);

            /* An IP literal matches IP SANs only, a DNS name DNS SANs only. */
            if (g->type != (host_is_ip ? GEN_IPADD : GEN_DNS) || !san_text(g, text, sizeof(text))) {
                continue;
            }
            matched = host_is_ip ? ip_equal(hbin, hlen, text) : tls_name_match_san(text, peer_host);
        }
        if (!matched && cn[0] != '\0') {
            (void)snprintf(text, sizeof(text), "%s", cn);
            matched = host_is_ip ? ip_equal(hbin, hlen, cn) : tls_name_match_san(cn, peer_host);
        }
        if (!matched) {
            (void)snprintf(info->detail, sizeof(info->detail), "%s", peer_host);
            r = TLS_REJECT_NAME_MISMATCH;
            goto done;
        }
        (void)snprintf(info->name, sizeof(info->name), "%s", text);
    }

    if (allow != NULL) {
        matched = false;
        for (i = 0; i < sk_GENERAL_NAME_num(gens) && !matched; i++) {
            const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);

            if ((g->type != GEN_DNS && g->type != GEN_IPADD && g->type != GEN_URI) ||
                !san_text(g, text, sizeof(text))) {
                continue;
            }
            /* A DNS SAN spelt "spiffe://..." is no URI SAN, and a URI SAN "x.org" no host. */
            if ((g->type == GEN_URI) != tls_name_is_uri(text)) {
                continue;
            }
            matched = allowed(text, allow, n_allow);
        }
        if (!matched && cn[0] != '\0') {
            (void)snprintf(text, sizeof(text), "%s", cn);
            matched = allowed(cn, allow, n_allow);
        }
        if (!matched) {
            r = TLS_REJECT_NAME_NOT_ALLOWED;
            goto done;
        }
        (void)snprintf(info->name, sizeof(info->name), "%s", text);
    }

done:
    GENERAL_NAMES_free(gens);
    return r;
}

/*
 * tls_reject_str(r):
 * The stable snake_case label of ${r} ("eku_wrong"), for metrics and JSON; "unknown" for a
 * value outside the enum.
 */
const char *
tls_reject_str(enum tls_reject r)
{
    if ((int)r < 0 || r >= TLS_REJECT__COUNT) {
        return "unknown";
    }
    return reject_labels[r];
}

/*
 * tls_reject_describe(r, role, info, buf, len):
 * The rule that failed in plain words, naming the peer by its name, else its subject, e.g.
 * "certificate for node3.test lacks extendedKeyUsage clientAuth".  ${role} is OUR role
 * (SERVER checks clients).  Never contains key material.  Returns ${buf}.
 */
const char *
tls_reject_describe(enum tls_reject r, enum tls_role role, const struct tls_peer_info *info,
                    char *buf, size_t len)
{
    const char *who = "the peer";
    const char *need = role == TLS_ROLE_SERVER ? "clientAuth" : "serverAuth";
    const char *detail = "";
    bool leaf = true;

    if (buf == NULL || len == 0) {
        return buf;
    }
    if (info != NULL) {
        who = info->name[0] != '\0' ? info->name : info->subject[0] != '\0' ? info->subject : who;
        detail = info->detail;
        leaf = info->depth == 0;
    }

    switch (r) {
    case TLS_REJECT_NONE:
        (void)snprintf(buf, len, "certificate for %s accepted", who);
        break;
    case TLS_REJECT_NO_CERT:
        (void)snprintf(buf, len, "%s",
                       role == TLS_ROLE_SERVER
                           ? "client sent no certificate (client_cert: required)"
                           : "server sent no certificate");
        break;
    case TLS_REJECT_UNKNOWN_CA:
        if (leaf && info != NULL && info->issuer[0] != '\0') {
            (void)snprintf(buf, len,
                           "certificate for %s was issued by %s, which is not in tls.ca (%s)", who,
                           info->issuer, detail);
        } else {
            (void)snprintf(buf, len,
                           "certificate for %s chains to an issuer that is not in tls.ca (%s)", who,
                           detail);
        }
        break;
    case TLS_REJECT_SELF_SIGNED:
        if (leaf) {
            (void)snprintf(buf, len, "certificate for %s is self-signed and not in tls.ca", who);
        } else {
            (void)snprintf(buf, len,
                           "certificate for %s chains to a self-signed certificate that is not in "
                           "tls.ca (%s)",
                           who, detail);
        }
        break;
    case TLS_REJECT_NOT_CA:
        (void)snprintf(buf, len,
                       "certificate for %s was issued by a certificate that is not a CA "
                       "(basicConstraints CA:TRUE missing) (%s)",
                       who, detail);
        break;
    case TLS_REJECT_EXPIRED:
        if (leaf && info != NULL) {
            (void)snprintf(buf, len, "certificate for %s expired on %s", who, info->not_after);
        } else {
            (void)snprintf(buf, len, "certificate for %s chains to an expired certificate (%s)",
                           who, detail);
        }
        break;
    case TLS_REJECT_NOT_YET_VALID:
        if (leaf && info != NULL) {
            (void)snprintf(buf, len,
                           "certificate for %s is not valid before %s (check the clocks of both "
                           "hosts)",
                           who, info->not_before);
        } else {
            (void)snprintf(buf, len,
                           "certificate for %s chains to a certificate that is not valid yet (%s)",
                           who, detail);
        }
        break;
    case TLS_REJECT_REVOKED:
        if (leaf) {
            (void)snprintf(buf, len, "certificate for %s is revoked by tls.crl", who);
        } else {
            (void)snprintf(buf, len,
                           "certificate for %s chains to a certificate revoked by tls.crl (%s)",
                           who, detail);
        }
        break;
    case TLS_REJECT_CRL:
        (void)snprintf(buf, len,
                       "certificate for %s cannot be checked against tls.crl (%s); tls.crl needs a "
                       "current CRL from every CA in the chain",
                       who, detail);
        break;
    case TLS_REJECT_CHAIN_TOO_LONG:
        (void)snprintf(buf, len, "certificate for %s has a chain deeper than tls.verify_depth (%s)",
                       who, detail);
        break;
    case TLS_REJECT_BAD_SIGNATURE:
        (void)snprintf(buf, len, "certificate for %s has a signature that does not verify (%s)",
                       who, detail);
        break;
    case TLS_REJECT_CHAIN_OTHER:
        (void)snprintf(buf, len, "certificate for %s failed chain verification (%s)", who, detail);
        break;
    case TLS_REJECT_EKU_MISSING:
        (void)snprintf(buf, len,
                       "certificate for %s has no extendedKeyUsage extension; ferry requires %s",
                       who, need);
        break;
    case TLS_REJECT_EKU_WRONG:
        (void)snprintf(buf, len, "certificate for %s lacks extendedKeyUsage %s", who, need);
        break;
    case TLS_REJECT_NO_NAME:
        (void)snprintf(buf, len,
                       "certificate for %s has no DNS or IP subjectAltName%s (its CN is used only "
                       "with tls.cn_fallback: true)",
                       who, role == TLS_ROLE_SERVER ? " nor a URI one" : "");
        break;
    case TLS_REJECT_NAME_MISMATCH:
        (void)snprintf(buf, len, "certificate for %s does not cover peer host %s (SANs: %s)", who,
                       detail[0] != '\0' ? detail : "?",
                       info != NULL && info->sans[0] != '\0' ? info->sans : "none");
        break;
    case TLS_REJECT_NAME_NOT_ALLOWED:
        (void)snprintf(buf, len, "certificate for %s is not in allow list", who);
        break;
    default:
        (void)snprintf(buf, len, "certificate for %s rejected (reason %d)", who, (int)r);
        break;
    }
    return buf;
}
