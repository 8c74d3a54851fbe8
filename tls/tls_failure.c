/*
 * tls_failure.c: one failed side of a proxied connection as {reason, detail} (CONTRACT.md §4,
 * §8).  The proxy records what it saw (struct tls_failure: the stage, the verify result tls/
 * kept during the handshake, OpenSSL's error codes, errno, the TLS version, bytes received);
 * tls_failure_report() turns that into the reason the proxy maps to its close reason and log
 * event, and the sentence it logs and answers with.  Only tls_failure_collect() reads OpenSSL
 * state; the rest is pure, so unit tests replay recorded failures.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tls.h"

/* Room for "client 10.0.0.5:41234" or "peer " + a configured target (300 bytes). */
#define WHO_LEN 340

/* What explain_tls() found: nothing, an alert the other side sent, or another cause. */
enum said {
    SAID_UNKNOWN,
    SAID_ALERT,
    SAID_OTHER,
};

static void fmt(char *buf, size_t len, const char *f, ...) __attribute__((format(printf, 3, 4)));

static void
fmt(char *buf, size_t len, const char *f, ...)
{
    va_list ap;

    va_start(ap, f);
    (void)vsnprintf(buf, len, f, ap);
    va_end(ap);
}

/* The verify result of ${f}, or an empty one: the reporter never follows a NULL. */
static const struct tls_verify_result *
verify_of(const struct tls_failure *f)
{
    static const struct tls_verify_result none;

    return f->verify != NULL ? f->verify : &none;
}

/* ${s}, or "" for NULL. */
static const char *
str(const char *s)
{
    return s != NULL ? s : "";
}

/* Is the side that failed the TLS one: the client of an inbound listener, an outbound peer? */
static bool
side_is_tls(const struct tls_failure *f)
{
    bool client_side = f->stage == TLS_FAIL_CLIENT_HANDSHAKE || f->stage == TLS_FAIL_CLIENT_ERROR;

    return client_side == (f->role == TLS_ROLE_SERVER);
}

/* "backend" (inbound) or "peer" (outbound): what the dialled side is called in texts. */
static const char *
server_kind(const struct tls_failure *f)
{
    return f->role == TLS_ROLE_SERVER ? "backend" : "peer";
}

/*
 * The OpenSSL errors of ${f} as one line "reason: reason" in ${buf}; returns the first code
 * (the most specific), or 0.  Codes of library 0 are skipped: libevent queues SSL_get_error()'s
 * small values (SSL_ERROR_SYSCALL...) among OpenSSL's codes.
 */
static unsigned long
error_line(const struct tls_failure *f, char *buf, size_t len)
{
    unsigned long first = 0;
    size_t used = 0, i;

    buf[0] = '\0';
    for (i = 0; i < f->n_errors && i < TLS_FAIL_MAX_ERRORS; i++) {
        unsigned long e = f->errors[i];
        const char *reason;
        int n;

        if (ERR_GET_LIB(e) == 0) {
            continue;
        }
        reason = ERR_reason_error_string(e);
        if (first == 0) {
            first = e;
        }
        n = snprintf(buf + used, len - used, "%s%s", used > 0 ? ": " : "",
                     reason != NULL ? reason : "unknown TLS error");
        if (n > 0 && (size_t)n < len - used) {
            used += (size_t)n;
        }
    }
    return first;
}

/*
 * A §4 rule refused the other side (the rejection CONTRACT §4 logs): for a peer that sent its
 * leaf alone, which file lacks which intermediate; else the rule in plain words.
 */
static void
rejection(const struct tls_failure *f, char *buf, size_t len)
{
    const struct tls_verify_result *v = verify_of(f);

    if (tls_chain_gap_describe(v->reject, f->role, &v->peer, f->self.ca_file, buf, len) != 0) {
        (void)tls_reject_describe(v->reject, f->role, &v->peer, buf, len);
    }
}

/*
 * The peer refused our certificate for who we are (its allow, a rule of its own): end ${buf}
 * with the command that shows what it presented and accepts, in the exact form of ferry(1):
 * ferry check --peer HOST:PORT -c FILE --listener NAME.  Outbound only.
 */
static void
check_peer_hint(const struct tls_failure *f, int alert, char *buf, size_t len)
{
    size_t n = strlen(buf);
    bool have_path = f->config_path != NULL;

    if (f->role != TLS_ROLE_CLIENT ||
        (alert != SSL_AD_BAD_CERTIFICATE && alert != SSL_AD_ACCESS_DENIED &&
         alert != SSL_AD_CERTIFICATE_UNKNOWN && alert != SSL_AD_HANDSHAKE_FAILURE)) {
        return;
    }
    fmt(buf + n, len - n,
        ". Run `ferry check --peer %s%s%s --listener %s` for what it presented and accepts",
        str(f->target), have_path ? " -c " : "", have_path ? f->config_path : "", str(f->listener));
}

/*
 * The other side's TLS failure in plain words (CONTRACT §8): the alert it sent us (recorded by
 * tls/ during the handshake or, under TLS 1.3, as the first record after it, or found in the
 * first error ${e}), plaintext where TLS was due, or ${e} when tls/ can explain it.  Leaves
 * ${out} alone and returns SAID_UNKNOWN otherwise.
 */
static enum said
explain_tls(const struct tls_failure *f, unsigned long e, struct tls_failure_report *out)
{
    const struct tls_verify_result *v = verify_of(f);
    char who[WHO_LEN];
    bool inbound = f->role == TLS_ROLE_SERVER;

    fmt(who, sizeof(who), "%s %s", inbound ? "client" : "peer",
        inbound ? str(f->remote) : str(f->target));
    if (v->alert_received || tls_alert_from_error(e) >= 0) {
        int alert = v->alert_received ? v->alert : tls_alert_from_error(e);

        (void)tls_alert_describe(alert, who, &f->self, out->detail, sizeof(out->detail));
        check_peer_hint(f, alert, out->detail, sizeof(out->detail));
        out->alert = alert;
        return SAID_ALERT;
    }
    if (tls_error_describe(e, who, v, &f->self, out->detail, sizeof(out->detail)) == 0 ||
        tls_plaintext_describe(v->first_record, v->n_first_record, who, f->self.role, out->detail,
                               sizeof(out->detail)) == 0) {
        return SAID_OTHER;
    }
    return SAID_UNKNOWN;
}

/*
 * TLS 1.3 ends our handshake before the peer has judged our certificate, and we send the
 * request at once.  A peer that then refuses the certificate and closes with that request
 * unread resets the connection, and the reset makes our kernel drop its alert.  When the peer
 * reset this new connection under TLS 1.3 before any byte of an answer, after we sent a
 * certificate, say in ${out} that it may be such a refusal, with the causes of bad_certificate
 * and the `ferry check --peer` to run, and return true.
 */
static bool
explain_reset(const struct tls_failure *f, struct tls_failure_report *out)
{
    char who[WHO_LEN];

    if (f->role != TLS_ROLE_CLIENT || f->bytes_in > 0 || f->reused ||
        f->version != TLS1_3_VERSION || !verify_of(f)->cert_sent ||
        (f->sock_err != ECONNRESET && f->sock_err != EPIPE)) {
        return false;
    }
    fmt(who, sizeof(who), "peer %s", str(f->target));
    (void)tls_reset_describe(who, &f->self, out->detail, sizeof(out->detail));
    check_peer_hint(f, SSL_AD_BAD_CERTIFICATE, out->detail, sizeof(out->detail));
    return true;
}

/*
 * What explains a failed handshake before OpenSSL's own words, in order: a §4 rule we enforce
 * (tls/ records every refusal, "no client certificate" included, in the verify result), an
 * alert the other side sent (it refused OUR certificate: our side or it needs fixing), another
 * failure tls/ can name (no shared version or cipher, not TLS).  Returns true with the detail
 * in ${out} and *${reason} set when one does.
 */
static bool
handshake_explained(const struct tls_failure *f, unsigned long e, struct tls_failure_report *out,
                    enum tls_fail_reason *reason)
{
    if (verify_of(f)->reject != TLS_REJECT_NONE) {
        rejection(f, out->detail, sizeof(out->detail));
        *reason = TLS_FAIL_REJECTED;
        return true;
    }
    switch (explain_tls(f, e, out)) {
    case SAID_ALERT:
        *reason = TLS_FAIL_ALERT;
        return true;
    case SAID_OTHER:
        *reason = TLS_FAIL_TLS;
        return true;
    case SAID_UNKNOWN:
        break;
    }
    return false;
}

/* Inbound: the client's handshake failed, by a rule we enforce or in TLS itself. */
static enum tls_fail_reason
client_handshake(const struct tls_failure *f, unsigned long e, const char *errs,
                 struct tls_failure_report *out)
{
    enum tls_fail_reason reason;

    if (handshake_explained(f, e, out, &reason)) {
        return reason;
    }
    if (errs[0] != '\0') {
        fmt(out->detail, sizeof(out->detail), "TLS handshake failed: %s", errs);
        return TLS_FAIL_TLS;
    }
    if (f->eof) {
        fmt(out->detail, sizeof(out->detail),
            "client closed the connection during the TLS handshake");
        return TLS_FAIL_CLOSED;
    }
    fmt(out->detail, sizeof(out->detail), "TLS handshake failed: %s", strerror(f->sock_err));
    return TLS_FAIL_SOCKET;
}

/* The backend's connect, or the peer's connect and TLS handshake, failed. */
static enum tls_fail_reason
server_connect(const struct tls_failure *f, unsigned long e, const char *errs,
               struct tls_failure_report *out)
{
    bool tls = side_is_tls(f);
    int err = f->sock_err;
    enum tls_fail_reason reason;

    /* The backend is plain TCP: only the peer's side has a handshake to explain. */
    if (tls && handshake_explained(f, e, out, &reason)) {
        return reason;
    }
    if (tls && e != 0) {
        fmt(out->detail, sizeof(out->detail), "TLS handshake with peer %s failed: %s",
            str(f->target), errs);
        return TLS_FAIL_TLS;
    }
    if (err == 0 || err == EAGAIN || err == EWOULDBLOCK || err == EINTR) {
        /* No socket error: the other side closed (a TLS EOF leaves errno stale). */
        fmt(out->detail, sizeof(out->detail), "%s %s closed the connection %s", server_kind(f),
            str(f->target), tls ? "during the TLS handshake" : "at once");
        return TLS_FAIL_CLOSED;
    }
    fmt(out->detail, sizeof(out->detail), "cannot connect to %s %s: %s", server_kind(f),
        str(f->target), strerror(err));
    return TLS_FAIL_SOCKET;
}

/*
 * The backend or peer ended its stream with a request still unanswered.  A reset reads as an
 * end of stream to the proxy (allow_dirty_shutdown), errno still telling which.
 */
static enum tls_fail_reason
server_closed(const struct tls_failure *f, struct tls_failure_report *out)
{
    if (explain_reset(f, out)) {
        return TLS_FAIL_RESET;
    }
    fmt(out->detail, sizeof(out->detail), "%s %s closed the connection without answering",
        server_kind(f), str(f->target));
    return TLS_FAIL_CLOSED;
}

/* The backend or peer side failed while relaying: an error, a reset, an EOF while writing. */
static enum tls_fail_reason
server_error(const struct tls_failure *f, unsigned long e, const char *errs,
             struct tls_failure_report *out)
{
    if (side_is_tls(f) && f->bytes_in == 0 && explain_tls(f, e, out) == SAID_ALERT) {
        /* TLS 1.3: the peer's verdict on our certificate comes after our handshake. */
        return TLS_FAIL_ALERT;
    }
    if (errs[0] != '\0') {
        fmt(out->detail, sizeof(out->detail), "%s %s: %s", server_kind(f), str(f->target), errs);
        return TLS_FAIL_TLS;
    }
    if (explain_reset(f, out)) {
        return TLS_FAIL_RESET;
    }
    fmt(out->detail, sizeof(out->detail), "%s %s: %s", server_kind(f), str(f->target),
        strerror(f->sock_err));
    return TLS_FAIL_SOCKET;
}

/*
 * The client side failed while relaying: its TLS error in words when there is one (a
 * renegotiation ferry refuses ends here), else the socket error.  errno is 0 after a TLS
 * failure ("Success"), so it is never used alone.
 */
static enum tls_fail_reason
client_error(const struct tls_failure *f, unsigned long e, const char *errs,
             struct tls_failure_report *out)
{
    if (verify_of(f)->renegotiation_refused || ERR_GET_REASON(e) == SSL_R_NO_RENEGOTIATION ||
        ERR_GET_REASON(e) == SSL_R_UNSAFE_LEGACY_RENEGOTIATION_DISABLED) {
        /* ferry never renegotiates (SSL_OP_NO_RENEGOTIATION); the client gave up on it. */
        fmt(out->detail, sizeof(out->detail), "client: renegotiation refused%s%s%s",
            errs[0] != '\0' ? " (then: " : "", errs, errs[0] != '\0' ? ")" : "");
        return TLS_FAIL_RENEGOTIATION;
    }
    if (errs[0] != '\0') {
        fmt(out->detail, sizeof(out->detail), "client: TLS error: %s", errs);
        return TLS_FAIL_TLS;
    }
    if (f->sock_err != 0) {
        fmt(out->detail, sizeof(out->detail), "client: %s", strerror(f->sock_err));
    } else {
        fmt(out->detail, sizeof(out->detail), "client: the connection failed");
    }
    return TLS_FAIL_SOCKET;
}

/*
 * tls_failure_report(f, out):
 * Explain the failure ${f} into ${out}: the reason, the alert when one was received, and the
 * detail sentence.  Only the errors of the TLS side count (a plain side has none).
 */
void
tls_failure_report(const struct tls_failure *f, struct tls_failure_report *out)
{
    char errs[256] = "";
    unsigned long e = 0;

    out->alert = -1;
    out->detail[0] = '\0';
    if (side_is_tls(f)) {
        e = error_line(f, errs, sizeof(errs));
    }
    switch (f->stage) {
    case TLS_FAIL_CLIENT_HANDSHAKE:
        out->reason = client_handshake(f, e, errs, out);
        break;
    case TLS_FAIL_CLIENT_ERROR:
        out->reason = client_error(f, e, errs, out);
        break;
    case TLS_FAIL_SERVER_CONNECT:
        out->reason = server_connect(f, e, errs, out);
        break;
    case TLS_FAIL_SERVER_CLOSED:
        out->reason = server_closed(f, out);
        break;
    case TLS_FAIL_SERVER_ERROR:
    default:
        out->reason = server_error(f, e, errs, out);
        break;
    }
    if (out->reason != TLS_FAIL_ALERT) {
        out->alert = -1;
    }
}

/*
 * tls_failure_add_error(f, e):
 * Append the packed OpenSSL error ${e}; the ones past TLS_FAIL_MAX_ERRORS are dropped.
 */
void
tls_failure_add_error(struct tls_failure *f, unsigned long e)
{
    if (f->n_errors < TLS_FAIL_MAX_ERRORS) {
        f->errors[f->n_errors++] = e;
    }
}

/*
 * tls_failure_collect(f, t, ssl):
 * The OpenSSL part of ${f}: this thread's error queue (emptied, so that no stale entry blames
 * the next peer), the version of ${ssl}, then our side from ${t} when the failed side is TLS
 * and the stage may name our files.
 */
void
tls_failure_collect(struct tls_failure *f, const struct tls_ctx *t, const SSL *ssl)
{
    unsigned long e;

    while ((e = ERR_get_error()) != 0) {
        tls_failure_add_error(f, e);
    }
    f->version = ssl != NULL ? SSL_version(ssl) : 0;
    memset(&f->self, 0, sizeof(f->self));
    f->self.role = f->role;
    if (t != NULL && side_is_tls(f) && f->stage != TLS_FAIL_CLIENT_ERROR) {
        tls_ctx_self_info(t, &f->self);
        /* Reading our certificate is no part of the failure: drop what it may have queued. */
        ERR_clear_error();
    }
}
