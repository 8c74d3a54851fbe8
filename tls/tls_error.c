/*
 * tls_error.c: OpenSSL's per-thread error queue as one line of text, and the errors of a failed
 * handshake that ferry can name in plain words (tls_error_describe()).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tls.h"
#include "tls_internal.h"

/* Append ${s} to buf[0..len) at *${pos}, truncating; keeps buf NUL-terminated. */
static void
append(char *buf, size_t len, size_t *pos, const char *s)
{
    size_t n = strlen(s);

    if (*pos + 1 >= len) {
        return;
    }
    if (n > len - 1 - *pos) {
        n = len - 1 - *pos;
    }
    memcpy(buf + *pos, s, n);
    *pos += n;
    buf[*pos] = '\0';
}

/*
 * tls_error_string(buf, len):
 * Drain this thread's OpenSSL error queue into one line in ${buf}: "reason (library)" per
 * entry, plus OpenSSL's extra text when it has some, joined with ": ".  OpenSSL raises the
 * innermost, most specific reason first, so the line reads from cause to context.  Repeated
 * entries are written once; file and line numbers are left out.  Writes "" when the queue is
 * empty.  Returns ${buf}.
 */
const char *
tls_error_string(char *buf, size_t len)
{
    unsigned long code, prev = 0;
    const char *data = NULL;
    int flags = 0;
    size_t pos = 0;
    char piece[512];

    if (buf == NULL || len == 0) {
        ERR_clear_error();
        return buf;
    }
    buf[0] = '\0';
    while ((code = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
        const char *reason = ERR_reason_error_string(code);
        const char *lib = ERR_lib_error_string(code);
        bool has_data = (flags & ERR_TXT_STRING) != 0 && data != NULL && data[0] != '\0';

        if (code == prev && !has_data) {
            continue;
        }
        prev = code;
        if (ERR_SYSTEM_ERROR(code)) {
            /* errno saved by OpenSSL: "No such file or directory (system library: ...)" */
            reason = strerror(ERR_GET_REASON(code));
        }
        if (reason == NULL) {
            (void)snprintf(piece, sizeof(piece), "error %lX", code);
        } else {
            (void)snprintf(piece, sizeof(piece), "%s", reason);
        }
        if (lib != NULL || has_data) {
            size_t n = strlen(piece);

            (void)snprintf(piece + n, sizeof(piece) - n, " (%s%s%s)", lib != NULL ? lib : "",
                           lib != NULL && has_data ? ": " : "", has_data ? data : "");
        }
        if (pos > 0) {
            append(buf, len, &pos, ": ");
        }
        append(buf, len, &pos, piece);
    }
    return buf;
}

/*
 * tls_errf(err, errlen, fmt, ...):
 * Write a message to ${err} when there is room for one.
 */
void
tls_errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0) {
        return;
    }
    va_start(ap, fmt);
    (void)vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ${s} when set, else ${dflt}: explanations never print "(null)" or "". */
static const char *
or_default(const char *s, const char *dflt)
{
    return s != NULL && s[0] != '\0' ? s : dflt;
}

/*
 * tls_error_describe(e, who, res, self, buf, len):
 * Translate the first OpenSSL error of a failed handshake.  Returns 0 with the text, or -1
 * with "" when ${e} is not one we explain.
 */
int
tls_error_describe(unsigned long e, const char *who, const struct tls_verify_result *res,
                   const struct tls_self_info *self, char *buf, size_t len)
{
    static const struct tls_self_info none;
    enum tls_role role;
    int alert, reason;

    if (self == NULL) {
        self = &none;
    }
    role = self->role;
    who = or_default(who, "the peer");
    tls_errf(buf, len, "%s", "");
    if ((alert = tls_alert_from_error(e)) >= 0) {
        (void)tls_alert_describe(alert, who, self, buf, len);
        return 0;
    }
    if (e == 0 || ERR_SYSTEM_ERROR(e) || ERR_GET_LIB(e) != ERR_LIB_SSL) {
        return -1;
    }
    reason = ERR_GET_REASON(e);
    switch (reason) {
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_UNKNOWN_PROTOCOL:
        if (res != NULL && tls_plaintext_describe(res->first_record, res->n_first_record, who, role,
                                                  buf, len) == 0) {
            return 0;
        }
        if (reason == SSL_R_HTTP_REQUEST || reason == SSL_R_HTTPS_PROXY_REQUEST) {
            tls_errf(buf, len, "%s sent a plaintext HTTP request: it must use https://", who);
            return 0;
        }
        tls_errf(buf, len, "%s does not speak TLS (%s): %s", who,
                 or_default(ERR_reason_error_string(e), "not a TLS record"),
                 role == TLS_ROLE_CLIENT ? "check that the port is its TLS port"
                                         : "it is not a TLS client");
        return 0;
    case SSL_R_NO_SHARED_CIPHER:
        tls_errf(buf, len,
                 "%s offers no cipher we accept (no shared cipher): we offer %s%s%s; upgrade or "
                 "reconfigure it",
                 who, or_default(self->versions, "TLS 1.2 and TLS 1.3"),
                 self->ciphers[0] != '\0' ? ", TLS 1.2 ciphers " : "", self->ciphers);
        return 0;
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
    case SSL_R_UNSUPPORTED_SSL_VERSION:
    case SSL_R_WRONG_SSL_VERSION:
        tls_errf(buf, len,
                 "%s and we have no TLS version in common (%s): we accept %s (tls.min_version); "
                 "upgrade a side that offers only older versions",
                 who, or_default(ERR_reason_error_string(e), "unsupported protocol"),
                 or_default(self->versions, "TLS 1.2 and TLS 1.3"));
        return 0;
    case SSL_R_NO_SHARED_SIGNATURE_ALGORITHMS:
    case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
        tls_errf(
            buf, len,
            "%s and we share no signature algorithm (%s): our key in %s is %s; use an ECDSA P-256 "
            "or RSA >= 2048 key",
            who, or_default(ERR_reason_error_string(e), "no shared signature algorithms"),
            or_default(self->cert_file, "tls.cert"), or_default(self->key_type, "?"));
        return 0;
    case SSL_R_UNEXPECTED_EOF_WHILE_READING:
        tls_errf(
            buf, len,
            "%s closed the connection in the middle of the TLS handshake without saying why; see "
            "its log",
            who);
        return 0;
    default:
        return -1;
    }
}
