/*
 * certs_err.c: a reason into the caller's buffer, with the reasons OpenSSL queued
 * (certs_err_*).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

#include "certs_internal.h"

/* At most this many OpenSSL reasons are appended to one message. */
#define ERR_REASONS_MAX 3

/*
 * certs_err(err, errlen, fmt, ...):
 * Format a reason into ${err} (if not NULL).
 */
void
certs_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0) {
        return;
    }
    va_start(ap, fmt);
    (void)vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/*
 * certs_err_ossl(err, errlen, fmt, ...):
 * Like certs_err(), then append the reasons on OpenSSL's error queue (oldest first) and
 * empty the queue, so a stale entry never blames a later step.
 */
void
certs_err_ossl(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    unsigned long e;
    const char *sep = ": ";
    const char *reason;
    char buf[256];
    size_t used;
    int n = 0;

    if (err == NULL || errlen == 0) {
        ERR_clear_error();
        return;
    }
    va_start(ap, fmt);
    (void)vsnprintf(err, errlen, fmt, ap);
    va_end(ap);

    /* The oldest entry is the root cause; the next ones say where it surfaced. */
    while ((e = ERR_get_error()) != 0 && n < ERR_REASONS_MAX) {
        reason = ERR_reason_error_string(e);
        if (reason == NULL) {
            ERR_error_string_n(e, buf, sizeof(buf));
            reason = buf;
        }
        used = strlen(err);
        snprintf(err + used, errlen - used, "%s%s", sep, reason);
        sep = "; ";
        n++;
    }
    ERR_clear_error();
}
