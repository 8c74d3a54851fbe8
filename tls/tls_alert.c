/*
 * tls_alert.c: what the other side of a failed handshake said, in plain words (CONTRACT.md
 * §8).  A peer that rejects us says why only through a one-byte TLS alert; OpenSSL turns it
 * into "tlsv1 alert unknown ca".  These pure functions turn the alert into a sentence that
 * names the rule and the file to fix (OpenSSL's own reason for a local failure: tls_error.c).
 * Nothing here logs or touches a socket.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tls.h"

/* TLS record content types (RFC 8446 §5.1): change_cipher_spec .. heartbeat. */
#define TLS_CT_MIN 20
#define TLS_CT_MAX 24

/* The registry of TLS alerts (RFC 8446 §6, RFC 5246 §7.2, IANA "TLS Alerts"). */
static const struct {
    int code;
    const char *name;
} alert_names[] = {
    {0, "close_notify"},
    {10, "unexpected_message"},
    {20, "bad_record_mac"},
    {21, "decryption_failed"},
    {22, "record_overflow"},
    {30, "decompression_failure"},
    {40, "handshake_failure"},
    {41, "no_certificate"},
    {42, "bad_certificate"},
    {43, "unsupported_certificate"},
    {44, "certificate_revoked"},
    {45, "certificate_expired"},
    {46, "certificate_unknown"},
    {47, "illegal_parameter"},
    {48, "unknown_ca"},
    {49, "access_denied"},
    {50, "decode_error"},
    {51, "decrypt_error"},
    {60, "export_restriction"},
    {70, "protocol_version"},
    {71, "insufficient_security"},
    {80, "internal_error"},
    {86, "inappropriate_fallback"},
    {90, "user_canceled"},
    {100, "no_renegotiation"},
    {109, "missing_extension"},
    {110, "unsupported_extension"},
    {111, "certificate_unobtainable"},
    {112, "unrecognized_name"},
    {113, "bad_certificate_status_response"},
    {114, "bad_certificate_hash_value"},
    {115, "unknown_psk_identity"},
    {116, "certificate_required"},
    {120, "no_application_protocol"},
};

static void fmt(char *buf, size_t len, const char *f, ...) __attribute__((format(printf, 3, 4)));

static void
fmt(char *buf, size_t len, const char *f, ...)
{
    va_list ap;

    if (buf == NULL || len == 0) {
        return;
    }
    va_start(ap, f);
    (void)vsnprintf(buf, len, f, ap);
    va_end(ap);
}

/* ${s} when set, else ${dflt}: explanations never print "(null)" or "". */
static const char *
or_default(const char *s, const char *dflt)
{
    return s != NULL && s[0] != '\0' ? s : dflt;
}

/*
 * tls_alert_name(alert):
 * The RFC 8446 name of the TLS alert ${alert}, or NULL for an unknown code.
 */
const char *
tls_alert_name(int alert)
{
    size_t i;

    for (i = 0; i < sizeof(alert_names) / sizeof(alert_names[0]); i++) {
        if (alert_names[i].code == alert) {
            return alert_names[i].name;
        }
    }
    return NULL;
}

/*
 * tls_alert_from_error(e):
 * OpenSSL reports a received alert as the SSL reason SSL_AD_REASON_OFFSET + alert code
 * ("tlsv1 alert unknown ca" = 1048).  Returns the alert code, or -1.
 */
int
tls_alert_from_error(unsigned long e)
{
    int reason;

    if (e == 0 || ERR_SYSTEM_ERROR(e) || ERR_GET_LIB(e) != ERR_LIB_SSL) {
        return -1;
    }
    reason = ERR_GET_REASON(e);
    if (reason < SSL_AD_REASON_OFFSET || reason > SSL_AD_REASON_OFFSET + 255 ||
        tls_alert_name(reason - SSL_AD_REASON_OFFSET) == NULL) {
        return -1;
    }
    return reason - SSL_AD_REASON_OFFSET;
}

/*
 * tls_self_has_name(self):
 * Does our certificate have a SAN a peer's `allow` can match (DNS, IP or URI)?
 */
bool
tls_self_has_name(const struct tls_self_info *self)
{
    return strstr(self->sans, "DNS:") != NULL || strstr(self->sans, "IP:") != NULL ||
           strstr(self->sans, "IP Address:") != NULL || strstr(self->sans, "URI:") != NULL;
}

/*
 * tls_self_cn(self, buf, len):
 * The CN of our certificate's subject ("CN=node1.test,O=Site A" -> "node1.test"), or "".
 * Returns ${buf}.
 */
const char *
tls_self_cn(const struct tls_self_info *self, char *buf, size_t len)
{
    const char *p = self->subject;
    size_t n = 0;

    fmt(buf, len, "%s", "");
    while (p != NULL && *p != '\0') {
        if (strncmp(p, "CN=", 3) == 0) {
            p += 3;
            while (p[n] != '\0' && p[n] != ',' && n + 1 < len) {
                n++;
            }
            fmt(buf, len, "%.*s", (int)n, p);
            return buf;
        }
        p = strchr(p, ',');
        if (p != NULL) {
            p++;
        }
    }
    return buf;
}

/*
 * A server refused our client certificate with bad_certificate.  What a ferry inbound listener
 * means by it (its verification sets the X509 error whose alert OpenSSL sends), most likely
 * first: a name its `allow` lacks (HOSTNAME_MISMATCH), then a certificate not valid yet by
 * its clock (CERT_NOT_YET_VALID), a CRL not valid yet (CRL_NOT_YET_VALID), a field it cannot
 * parse.  A missing intermediate or an unknown CA is unknown_ca, an expired certificate
 * certificate_expired, a missing EKU unsupported_certificate: not these.  Writes the list,
 * "likely causes, most likely first: 1. ...; 4. ...", for the alert and for a reset that may
 * have destroyed it (tls_reset_describe()).
 */
static void
bad_certificate_causes(const struct tls_self_info *self, char *buf, size_t len)
{
    char cn[128], first[700];
    const char *cert = or_default(self->cert_file, "our certificate");

    (void)tls_self_cn(self, cn, sizeof(cn));
    if (tls_self_has_name(self)) {
        fmt(first, sizeof(first),
            "its allow lists none of our names (%s): add one to the allow of its inbound "
            "listener, or reissue %s with a name it allows",
            self->sans, cert);
    } else {
        fmt(first, sizeof(first),
            "%s has no DNS, IP or URI SAN for its allow to match (its CN %s counts only with the "
            "peer's tls.cn_fallback: true): reissue it with --dns or --ip",
            cert, or_default(cn, "(none)"));
    }
    fmt(buf, len,
        "likely causes, most likely first: 1. %s; 2. by its clock %s is not valid yet (valid "
        "from %s): fix the clock that is wrong; 3. a CRL in its tls.crl is not valid yet; 4. it "
        "cannot parse %s (subject \"%s\"), or, if it is not a ferry, a rule of its own: see its "
        "log",
        first, cert, or_default(self->not_before, "?"), cert, or_default(self->subject, "?"));
}

/*
 * tls_reset_describe(who, self, buf, len):
 * ${who} reset the connection right after our TLS 1.3 handshake, before answering: how a
 * server refusing our client certificate may look (see tls.h).  The causes are those of
 * bad_certificate.  Returns ${buf}.
 */
const char *
tls_reset_describe(const char *who, const struct tls_self_info *self, char *buf, size_t len)
{
    static const struct tls_self_info none;
    char causes[1024];

    bad_certificate_causes(self != NULL ? self : &none, causes, sizeof(causes));
    fmt(buf, len,
        "%s reset the connection right after our TLS 1.3 handshake, before answering: this is "
        "how a peer refusing our certificate may look under TLS 1.3 (its alert lost to the "
        "reset); %s",
        or_default(who, "the peer"), causes);
    return buf;
}

/*
 * tls_alert_describe(alert, who, self, buf, len):
 * One sentence per alert: what the other side refused, and what to change where.  A server
 * (our role CLIENT) judges our client certificate against its tls.ca; a client (our role
 * SERVER) judges our server certificate against its own trust store.  Returns ${buf}.
 */
const char *
tls_alert_describe(int alert, const char *who, const struct tls_self_info *self, char *buf,
                   size_t len)
{
    static const struct tls_self_info none;
    const char *name = tls_alert_name(alert);
    bool client;
    const char *cert, *their_ca, *eku, *peer_kind;

    if (self == NULL) {
        self = &none;
    }
    who = or_default(who, "the peer");
    client = self->role == TLS_ROLE_CLIENT;
    cert = or_default(self->cert_file, "our certificate");
    their_ca =
        client ? "the peer's tls.ca" : "the client's trusted CAs (its tls.ca, curl --cacert)";
    eku = client ? "clientAuth" : "serverAuth";
    peer_kind = client ? "peer" : "client";

    switch (alert) {
    case SSL_AD_UNKNOWN_CA:
        fmt(buf, len,
            "%s rejected our certificate (alert unknown_ca): it does not trust the CA that issued "
            "%s (issuer \"%s\"); add that CA to %s",
            who, cert, or_default(self->issuer, "?"), their_ca);
        break;
    case SSL_AD_BAD_CERTIFICATE:
        if (client) {
            char causes[1024];

            bad_certificate_causes(self, causes, sizeof(causes));
            fmt(buf, len, "%s rejected our certificate (alert bad_certificate); %s", who, causes);
            break;
        }
        fmt(buf, len,
            "%s rejected our certificate (alert bad_certificate): it could not verify %s "
            "(subject \"%s\"): an intermediate missing from that file (leaf first, then its "
            "intermediates), a bad signature, or a rule of the %s's own (does it dial a name "
            "among our SANs?); see its log",
            who, cert, or_default(self->subject, "?"), peer_kind);
        break;
    case SSL_AD_UNSUPPORTED_CERTIFICATE:
        fmt(buf, len,
            "%s rejected our certificate (alert unsupported_certificate): %s lacks the "
            "extendedKeyUsage %s it requires (it has: %s); reissue it with both serverAuth and "
            "clientAuth (ferry certs issue does)",
            who, cert, eku, or_default(self->ekus, "no EKU extension"));
        break;
    case SSL_AD_CERTIFICATE_EXPIRED:
        fmt(buf, len,
            "%s rejected our certificate (alert certificate_expired): by its clock %s is not valid "
            "now (valid %s to %s); renew it, or fix the clock that is wrong",
            who, cert, or_default(self->not_before, "?"), or_default(self->not_after, "?"));
        break;
    case SSL_AD_CERTIFICATE_REVOKED:
        fmt(buf, len,
            "%s rejected our certificate (alert certificate_revoked): its CRL revokes %s (subject "
            "\"%s\"); issue a new certificate and key for this node",
            who, cert, or_default(self->subject, "?"));
        break;
    case SSL_AD_CERTIFICATE_UNKNOWN:
        fmt(buf, len,
            "%s rejected our certificate (alert certificate_unknown): it refused %s (subject "
            "\"%s\", issuer \"%s\") without naming the rule; see its log",
            who, cert, or_default(self->subject, "?"), or_default(self->issuer, "?"));
        break;
    case SSL_AD_CERTIFICATE_REQUIRED:
        if (client) {
            fmt(buf, len,
                "%s requires a client certificate and got none from us (alert "
                "certificate_required): OpenSSL withholds %s (key %s) when the peer accepts none "
                "of its signature algorithms; check tls.cert of this listener and run `ferry "
                "check --peer`",
                who, cert, or_default(self->key_type, "?"));
        } else {
            fmt(buf, len, "%s ended the handshake (alert certificate_required)", who);
        }
        break;
    case SSL_AD_ACCESS_DENIED:
        fmt(buf, len,
            "%s refused us (alert access_denied): our certificate %s (subject \"%s\", %s) is "
            "valid for it but its policy does not admit us; add our name to the %s's allow list",
            who, cert, or_default(self->subject, "?"), or_default(self->sans, "no SAN"), peer_kind);
        break;
    case SSL_AD_HANDSHAKE_FAILURE:
        /* (A ferry refuses names its allow lacks with bad_certificate, not with this.) */
        fmt(buf, len,
            "%s aborted the handshake (alert handshake_failure): no TLS version, cipher or "
            "signature algorithm in common, or %s (%s); we offer %s%s%s",
            who,
            client ? "a rule of its own on our certificate"
                   : "it refused the names in our certificate",
            or_default(self->sans, "no SAN"), or_default(self->versions, "TLS 1.2 and TLS 1.3"),
            self->ciphers[0] != '\0' ? ", TLS 1.2 ciphers " : "", self->ciphers);
        break;
    case SSL_AD_PROTOCOL_VERSION:
        fmt(buf, len,
            "%s refused our TLS version (alert protocol_version): we offer %s (tls.min_version); "
            "set the same tls.min_version on both sides, and upgrade a %s that lacks TLS 1.2",
            who, or_default(self->versions, "TLS 1.2 and TLS 1.3"), peer_kind);
        break;
    case SSL_AD_INSUFFICIENT_SECURITY:
        fmt(buf, len,
            "%s wants stronger security than we offer (alert insufficient_security): we offer "
            "%s%s%s",
            who, or_default(self->versions, "TLS 1.2 and TLS 1.3"),
            self->ciphers[0] != '\0' ? ", TLS 1.2 ciphers " : "", self->ciphers);
        break;
    case SSL_AD_DECRYPT_ERROR:
        fmt(buf, len,
            "%s could not verify our handshake signature (alert decrypt_error): the key %s may "
            "not belong to %s, or the %s refuses its type (%s); run `ferry check`",
            who, or_default(self->key_file, "tls.key"), cert, peer_kind,
            or_default(self->key_type, "?"));
        break;
    case SSL_AD_INTERNAL_ERROR:
        fmt(buf, len,
            "%s failed on its own side (alert internal_error): nothing we sent is known to be "
            "wrong; see the %s's log (an unreadable key or CA file there, out of memory)",
            who, peer_kind);
        break;
    case SSL_AD_UNRECOGNIZED_NAME:
        if (client) {
            fmt(buf, len,
                "%s does not serve the name we asked for (alert unrecognized_name): we sent SNI "
                "\"%s\"; set `peer:` to a name the peer has a certificate for",
                who, or_default(self->peer_host, "?"));
        } else {
            fmt(buf, len, "%s ended the handshake (alert unrecognized_name)", who);
        }
        break;
    case SSL_AD_ILLEGAL_PARAMETER:
    case SSL_AD_DECODE_ERROR:
    case SSL_AD_UNEXPECTED_MESSAGE:
    case SSL_AD_BAD_RECORD_MAC:
    case SSL_AD_RECORD_OVERFLOW:
        fmt(buf, len,
            "%s found our TLS messages malformed (alert %s): a TLS library bug, or a middlebox "
            "that alters the traffic between us",
            who, name);
        break;
    default:
        if (name != NULL) {
            fmt(buf, len, "%s aborted the handshake (alert %s)", who, name);
        } else {
            fmt(buf, len, "%s aborted the handshake (alert %d)", who, alert);
        }
        break;
    }
    return buf;
}

/* Printable ASCII (and CR, LF, TAB): what a plaintext protocol starts with. */
static bool
printable(const unsigned char *b, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (!(isprint(b[i]) || b[i] == '\r' || b[i] == '\n' || b[i] == '\t')) {
            return false;
        }
    }
    return n > 0;
}

/*
 * tls_plaintext_describe(bytes, n, who, role, buf, len):
 * A first record that does not start with a TLS content type is not TLS.  An "HTTP/" answer
 * to our ClientHello is the common mistake of pointing `peer:` at CouchDB itself.
 * Returns 0 with the sentence in ${buf}, or -1 when ${bytes} may be TLS.
 */
int
tls_plaintext_describe(const unsigned char *bytes, size_t n, const char *who, enum tls_role role,
                       char *buf, size_t len)
{
    char shown[16];
    size_t i, k = 0;

    who = or_default(who, "the peer");
    if (bytes == NULL || n == 0 || (bytes[0] >= TLS_CT_MIN && bytes[0] <= TLS_CT_MAX)) {
        fmt(buf, len, "%s", "");
        return -1;
    }
    /* An HTTP status line, or the bare HTML/JSON body of a server treating us as HTTP/0.9. */
    if (role == TLS_ROLE_CLIENT && printable(bytes, n) &&
        ((n >= 5 && memcmp(bytes, "HTTP/", 5) == 0) || bytes[0] == '<' || bytes[0] == '{')) {
        fmt(buf, len,
            "%s answered in plaintext: it is not a TLS port (is it CouchDB itself rather than "
            "its ferry?)",
            who);
        return 0;
    }
    if (printable(bytes, n)) {
        for (i = 0; i < n && k + 1 < sizeof(shown); i++) {
            shown[k++] = (char)(isprint(bytes[i]) && bytes[i] != '"' ? bytes[i] : '.');
        }
        shown[k] = '\0';
        fmt(buf, len, "%s %s in plaintext (\"%s...\"): it is not %s", who,
            role == TLS_ROLE_CLIENT ? "answered" : "spoke", shown,
            role == TLS_ROLE_CLIENT ? "a TLS port" : "a TLS client");
        return 0;
    }
    fmt(buf, len, "%s %s bytes that are not TLS (first byte 0x%02x): it is not %s", who,
        role == TLS_ROLE_CLIENT ? "answered with" : "sent", bytes[0],
        role == TLS_ROLE_CLIENT ? "a TLS port" : "a TLS client");
    return 0;
}

/*
 * tls_chain_note(sctx, info):
 * Record how many certificates the peer sent and whether tls.ca knows the leaf's issuer.
 */
void
tls_chain_note(X509_STORE_CTX *sctx, struct tls_peer_info *info)
{
    X509 *leaf = X509_STORE_CTX_get0_cert(sctx);
    STACK_OF(X509) *sent = X509_STORE_CTX_get0_untrusted(sctx);
    STACK_OF(X509) * found;
    int i;

    info->sent = leaf != NULL ? 1 : 0;
    info->gap_in_ca = false;
    /* The SSL layer passes the whole chain the peer sent as untrusted, its leaf included. */
    for (i = 0; sent != NULL && i < sk_X509_num(sent); i++) {
        if (X509_cmp(sk_X509_value(sent, i), leaf) != 0) {
            info->sent++;
        }
    }
    if (leaf == NULL) {
        return;
    }
    found = X509_STORE_CTX_get1_certs(sctx, X509_get_issuer_name(leaf));
    info->gap_in_ca = found != NULL && sk_X509_num(found) > 0;
    sk_X509_pop_free(found, X509_free);
    ERR_clear_error(); /* a lookup that found nothing may leave an entry */
}

/*
 * tls_chain_gap_describe(r, role, info, ca_file, buf, len):
 * The peer sent only its leaf and its chain does not build: say which file lacks what.
 */
int
tls_chain_gap_describe(enum tls_reject r, enum tls_role role, const struct tls_peer_info *info,
                       const char *ca_file, char *buf, size_t len)
{
    const char *who, *file, *ca;

    if (info == NULL || r != TLS_REJECT_UNKNOWN_CA || info->sent != 1 || info->issuer[0] == '\0' ||
        strcmp(info->issuer, info->subject) == 0) {
        return -1;
    }
    who = or_default(info->name, or_default(info->subject, "the peer"));
    file = role == TLS_ROLE_SERVER
               ? "the client's certificate file (curl --cert, a ferry's tls.cert)"
               : "the peer's certificate file (a ferry's tls.cert)";
    ca = or_default(ca_file, "tls.ca");
    if (info->gap_in_ca) {
        fmt(buf, len,
            "certificate for %s came without its intermediate \"%s\", which our tls.ca (%s) "
            "holds, but not the root CA above it (%s): add that root to tls.ca, and append the "
            "intermediate to %s after the leaf, for peers that trust only the root",
            who, info->issuer, ca, or_default(info->detail, "?"), file);
    } else {
        /*
         * Its issuer may as well be the peer's own root CA, which we do not trust (the leaf
         * of a root-issued certificate comes alone): say both, the missing intermediate first.
         */
        fmt(buf, len,
            "certificate for %s was issued by %s, which is not in tls.ca (%s), and came alone, "
            "without an intermediate: if that issuer is an intermediate CA, %s lacks it: append "
            "it, so that the file holds the leaf, then the intermediate; if it is the %s's root "
            "CA, add it to tls.ca instead",
            who, info->issuer, ca, file, role == TLS_ROLE_SERVER ? "client" : "peer");
    }
    return 0;
}
