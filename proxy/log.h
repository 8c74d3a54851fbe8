/*
 * log: one line per event on stderr, as text or JSON, with the same keys in both.
 *
 * Text:  2026-11-23T03:47:00.123Z warn event=handshake_rejected listener=from-peers
 *        remote=127.0.0.1:40000 reason=eku_wrong msg="certificate for node3.test lacks ..."
 * JSON:  {"ts":"2026-11-23T03:47:00.123Z","level":"warn","event":"handshake_rejected",...}
 *        {"ts":...,"event":"request",...,"status":200,"bytes_in":0,"bytes_out":42,...}
 *
 * Timestamps are RFC 3339 in UTC with milliseconds.  Values are strings, except in JSON the
 * values of number keys (log_number_key()): JSON numbers, or null for "-".  A NULL or empty
 * value leaves its key out, in both formats.
 *
 * A value is quoted in text when it holds a space, '"', '=' or a control character.  The
 * level and format are process-wide settings (set at start and on reload), not
 * per-connection state.  Secrets must never be passed as values.
 */
#ifndef FERRY_LOG_H
#define FERRY_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

enum log_level {
    LOG_ERROR,
    LOG_WARN,
    LOG_INFO,
    LOG_DEBUG,
};

enum log_format {
    LOG_TEXT,
    LOG_JSON,
};

/*
 * log_setup(level, format, out):
 * Set the threshold, the format and the stream (NULL = stderr).
 */
void log_setup(enum log_level level, enum log_format format, FILE *out);

/*
 * log_enabled(level):
 * Would a line at ${level} be written?  Lets callers skip building expensive values.
 */
bool log_enabled(enum log_level level);

/*
 * log_kv(level, event, ...):
 * Write one line: the timestamp, ${level}, event=${event}, then key/value string pairs
 * ending with NULL.  A NULL or empty value is left out.
 *   log_kv(LOG_WARN, "handshake_rejected", "listener", l->name, "reason", r, NULL);
 */
void log_kv(enum log_level level, const char *event, ...);

/*
 * log_kvv(level, event, ap): as log_kv() with a va_list.
 */
void log_kvv(enum log_level level, const char *event, va_list ap);

/*
 * log_msg(level, fmt, ...):
 * A free-form line: event=message msg="<formatted text>".  For start-up and shutdown
 * messages, never per-connection ones (use log_kv with keys there).
 */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * log_format_line(buf, len, format, ts, level, event, ap):
 * Format one line without the newline into ${buf}.  Exported for the unit tests.
 * Returns the length written.  A text line that does not fit ends in "..."; a JSON line ends
 * after the last pair that fitted whole, with ,"truncated":true} so that it stays valid JSON.
 */
size_t log_format_line(char *buf, size_t len, enum log_format format, const char *ts,
                       enum log_level level, const char *event, va_list ap);

/*
 * log_number_key(key):
 * Is ${key} one whose values are numbers ("status", "bytes_in", "duration_ms", any key ending
 * in "_ms", "_bytes", "_count", "_seconds", "_port"; see log.c)?  In JSON such a value is
 * written as a JSON number when it is one, as null when it is "-" (text's "none": a request
 * that got no response), and as a string otherwise.
 */
bool log_number_key(const char *key);

/*
 * log_json_number(v):
 * Is ${v} a JSON number (RFC 8259 §6), at most 32 characters?
 */
bool log_json_number(const char *v);

/*
 * log_timestamp_format(tv, ts, len):
 * ${tv} as an RFC 3339 timestamp in UTC with milliseconds ("2026-12-05T00:12:34.567Z"), the
 * "ts" of every line in both formats.  Returns ${ts}.
 */
struct timeval;
const char *log_timestamp_format(const struct timeval *tv, char *ts, size_t len);

/* "error", "warn", "info", "debug" */
const char *log_level_str(enum log_level level);

#endif /* FERRY_LOG_H */
