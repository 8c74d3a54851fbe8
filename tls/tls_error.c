/*
 * tls_error.c: OpenSSL's per-thread error queue as one line of text.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

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
