/*
 * log: key=value text or JSON lines on one stream (see log.h).
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "config_json.h"
#include "log.h"

/*
 * Process-wide settings, written at start and on reload by the control thread and read by
 * every worker thread: relaxed atomics (a line logged during a reload may use either value).
 */
static enum log_level log_threshold = LOG_INFO;
static enum log_format log_fmt = LOG_TEXT;
static FILE *log_out;

/* One line is built in a fixed buffer and written with one fwrite, so lines never interleave. */
#define LOG_LINE_MAX 4096
/*
 * A value longer than this (escaped) is cut and ends in "...", so that one long value (a
 * 60 KiB request target) cannot push the keys after it out of the line.
 */
#define LOG_VALUE_MAX 1024

static const char *const log_level_names[] = {"error", "warn", "info", "debug"};

/*
 * log_setup(level, format, out):
 * Set the threshold, the format and the stream (NULL = stderr).
 */
void
log_setup(enum log_level level, enum log_format format, FILE *out)
{
    __atomic_store_n(&log_threshold, level, __ATOMIC_RELAXED);
    __atomic_store_n(&log_fmt, format, __ATOMIC_RELAXED);
    __atomic_store_n(&log_out, out, __ATOMIC_RELAXED);
}

/*
 * log_enabled(level):
 * Would a line at ${level} be written?
 */
bool
log_enabled(enum log_level level)
{
    return level <= __atomic_load_n(&log_threshold, __ATOMIC_RELAXED);
}

/*
 * log_level_str(level):
 * The lower-case name of ${level}.
 */
const char *
log_level_str(enum log_level level)
{
    if ((unsigned)level >= sizeof(log_level_names) / sizeof(log_level_names[0])) {
        return "unknown";
    }
    return log_level_names[level];
}

/* All of ${s} or none of it (config_json_buf_put()), so an escape sequence is never cut. */
static void
lb_puts(struct config_json_buf *b, const char *s)
{
    config_json_buf_put(b, s, strlen(s));
}

static bool
text_needs_quotes(const char *v)
{
    if (*v == '\0') {
        return true;
    }
    for (const char *s = v; *s != '\0';) {
        unsigned char c = (unsigned char)*s;
        size_t n = config_json_utf8_len(s);

        /* Bytes that are not UTF-8 are written escaped, and only a quoted value escapes. */
        if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f || n == 0) {
            return true;
        }
        s += n;
    }
    return false;
}

/*
 * Keys whose values are numbers: JSON writes them as JSON numbers (text is the same either
 * way).  Exact names, plus any key ending in one of number_suffixes.  Keep in step with the
 * LOGGING section of docs/ferry.1.
 */
static const char *const number_keys[] = {
    "status",   "bytes_in", "bytes_out", "connections", "listeners", "workers",
    "failures", "uid",      "port",      "count",       "depth",     "alert_code",
};
static const char *const number_suffixes[] = {"_ms", "_bytes", "_count", "_seconds", "_port"};

/*
 * log_number_key(key):
 * Is ${key} one whose values JSON writes as numbers?
 */
bool
log_number_key(const char *key)
{
    size_t klen = strlen(key);

    for (size_t i = 0; i < sizeof(number_keys) / sizeof(number_keys[0]); i++) {
        if (strcmp(key, number_keys[i]) == 0) {
            return true;
        }
    }
    for (size_t i = 0; i < sizeof(number_suffixes) / sizeof(number_suffixes[0]); i++) {
        size_t slen = strlen(number_suffixes[i]);

        if (klen > slen && strcmp(key + klen - slen, number_suffixes[i]) == 0) {
            return true;
        }
    }
    return false;
}

static bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/*
 * log_json_number(v):
 * Is ${v} a number as JSON writes it (RFC 8259 §6: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?)?
 */
bool
log_json_number(const char *v)
{
    const char *s = v;

    if (*s == '-') {
        s++;
    }
    if (*s == '0') {
        s++;
    } else if (is_digit(*s)) {
        while (is_digit(*s)) {
            s++;
        }
    } else {
        return false;
    }
    if (*s == '.') {
        s++;
        if (!is_digit(*s)) {
            return false;
        }
        while (is_digit(*s)) {
            s++;
        }
    }
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-') {
            s++;
        }
        if (!is_digit(*s)) {
            return false;
        }
        while (is_digit(*s)) {
            s++;
        }
    }
    return *s == '\0' && s - v <= 32;
}

/*
 * A value cut at LOG_VALUE_MAX escaped bytes; also a plain text value, which holds nothing
 * that escaping changes (text_needs_quotes()).
 */
static void
lb_put_value(struct config_json_buf *b, const char *value)
{
    config_json_escape(config_json_buf_put, b, value, LOG_VALUE_MAX);
}

static void
lb_put_pair(struct config_json_buf *b, enum log_format format, const char *key, const char *value)
{
    if (format == LOG_JSON) {
        lb_puts(b, ",\"");
        config_json_escape(config_json_buf_put, b, key, SIZE_MAX);
        lb_puts(b, "\":");
        if (log_number_key(key) && strcmp(value, "-") == 0) {
            /* "-" is text's "none" (a request that got no response): null in JSON. */
            lb_puts(b, "null");
        } else if (log_number_key(key) && log_json_number(value)) {
            lb_puts(b, value);
        } else {
            /* Anything else stays a string, so that a line is always valid JSON. */
            lb_puts(b, "\"");
            lb_put_value(b, value);
            lb_puts(b, "\"");
        }
        return;
    }
    lb_puts(b, " ");
    lb_puts(b, key);
    lb_puts(b, "=");
    if (text_needs_quotes(value)) {
        lb_puts(b, "\"");
        lb_put_value(b, value);
        lb_puts(b, "\"");
    } else {
        lb_put_value(b, value);
    }
}

/*
 * log_format_line(buf, len, format, ts, level, event, ap):
 * Format one line without the newline into ${buf}; the pairs in ${ap} end with NULL.
 * Returns the length written; a truncated line ends in "...".
 */
size_t
log_format_line(char *buf, size_t len, enum log_format format, const char *ts, enum log_level level,
                const char *event, va_list ap)
{
    static const char json_cut[] = ",\"truncated\":true}";
    struct config_json_buf b;
    const char *key;
    size_t whole = 0; /* JSON: the length up to the end of the last pair written whole */
    bool json_safe = format == LOG_JSON && len > 4 * sizeof(json_cut);

    if (len == 0) {
        return 0;
    }
    config_json_buf_init(&b, buf, len);
    if (json_safe) {
        /* Keep room to end a cut line as valid JSON: {...,"truncated":true} */
        b.len = len - (sizeof(json_cut) - 1);
    }
    if (format == LOG_JSON) {
        lb_puts(&b, "{\"ts\":\"");
        config_json_escape(config_json_buf_put, &b, ts, SIZE_MAX);
        lb_puts(&b, "\",\"level\":\"");
        lb_puts(&b, log_level_str(level));
        lb_puts(&b, "\"");
        lb_put_pair(&b, format, "event", event);
        whole = b.truncated ? 0 : b.used;
    } else {
        lb_puts(&b, ts);
        lb_puts(&b, " ");
        lb_puts(&b, log_level_str(level));
        lb_put_pair(&b, format, "event", event);
    }
    while ((key = va_arg(ap, const char *)) != NULL) {
        const char *value = va_arg(ap, const char *);

        if (value == NULL || value[0] == '\0') {
            continue;
        }
        lb_put_pair(&b, format, key, value);
        if (!b.truncated) {
            whole = b.used;
        }
    }
    if (format == LOG_JSON) {
        lb_puts(&b, "}");
    }
    if (b.truncated && json_safe && whole > 0) {
        /* Drop the pair that did not fit and say so: the line stays one JSON object. */
        memcpy(buf + whole, json_cut, sizeof(json_cut));
        return whole + sizeof(json_cut) - 1;
    }
    if (b.truncated && len > 4) {
        /* Mark the cut explicitly, right after the last whole piece. */
        size_t at = b.used + 4 <= len ? b.used : len - 4;

        memcpy(buf + at, "...", 4);
        b.used = at + 3;
    }
    return b.used;
}

/*
 * log_timestamp_format(tv, ts, len):
 * ${tv} as RFC 3339 in UTC with milliseconds, "2026-12-05T00:12:34.567Z".  Returns ${ts}.
 */
const char *
log_timestamp_format(const struct timeval *tv, char *ts, size_t len)
{
    struct tm tm;
    time_t sec = tv->tv_sec;

    if (gmtime_r(&sec, &tm) == NULL) {
        memset(&tm, 0, sizeof(tm));
        tm.tm_year = 70;
        tm.tm_mday = 1;
    }
    snprintf(ts, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv->tv_usec / 1000));
    return ts;
}

static void
log_timestamp(char *ts, size_t len)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    (void)log_timestamp_format(&tv, ts, len);
}

/*
 * log_kvv(level, event, ap):
 * As log_kv() with a va_list.
 */
void
log_kvv(enum log_level level, const char *event, va_list ap)
{
    char line[LOG_LINE_MAX];
    char ts[40];
    size_t n;
    FILE *out = __atomic_load_n(&log_out, __ATOMIC_RELAXED);

    if (!log_enabled(level)) {
        return;
    }
    if (out == NULL) {
        out = stderr;
    }
    log_timestamp(ts, sizeof(ts));
    n = log_format_line(line, sizeof(line) - 1, __atomic_load_n(&log_fmt, __ATOMIC_RELAXED), ts,
                        level, event, ap);
    line[n++] = '\n';
    /* A log line that cannot be written has nowhere to be reported. */
    (void)fwrite(line, 1, n, out);
    (void)fflush(out);
}

/*
 * log_kv(level, event, ...):
 * Write one line with key/value string pairs ending with NULL.
 */
void
log_kv(enum log_level level, const char *event, ...)
{
    va_list ap;

    va_start(ap, event);
    log_kvv(level, event, ap);
    va_end(ap);
}

/*
 * log_msg(level, fmt, ...):
 * A free-form line: event=message msg="<text>".
 */
void
log_msg(enum log_level level, const char *fmt, ...)
{
    char text[LOG_LINE_MAX / 2];
    va_list ap;

    if (!log_enabled(level)) {
        return;
    }
    va_start(ap, fmt);
    (void)vsnprintf(text, sizeof(text), fmt, ap); /* a longer message is cut */
    va_end(ap);
    log_kv(level, "message", "msg", text, (const char *)NULL);
}
