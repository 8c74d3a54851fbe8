/*
 * config_json: one small JSON writer for every JSON that ferry writes (log lines, the admin
 * bodies, `ferry certs inspect --json`, `ferry check --json`).  It lives in config/, the layer
 * that both proxy/ and certs/ link, and depends on nothing but libc.
 *
 * A writer sends its bytes to a sink: a FILE* (config_json_init_file()), a fixed buffer
 * (struct config_json_buf), or any callback (an evbuffer in proxy_admin.c).  It places the
 * commas itself: begin an object, then key/value, key/value, ...; begin an array, then values.
 *
 *   config_json_init_file(&j, stdout);
 *   config_json_begin_object(&j);
 *   config_json_key(&j, "file");
 *   config_json_string(&j, path);
 *   config_json_key(&j, "errors");
 *   config_json_uint(&j, n);
 *   config_json_end_object(&j);                    -> {"file":"...","errors":2}
 *
 * Strings are escaped by config_json_escape(): '"', '\\', "\n", "\r", "\t" as two-byte
 * escapes, other control bytes, DEL and each byte that is not part of well-formed UTF-8 as
 * "\u00XX" (its value, as JSON would write U+00XX), so the output is always valid UTF-8 and
 * valid JSON.  Well-formed UTF-8 passes through.
 */
#ifndef FERRY_CONFIG_JSON_H
#define FERRY_CONFIG_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* How deep objects and arrays may nest in one writer. */
#define CONFIG_JSON_DEPTH_MAX 16

/* A sink: take the ${n} bytes at ${s} (not NUL-terminated); ${arg} is the sink's state. */
typedef void (*config_json_sink)(void *arg, const char *s, size_t n);

/*
 * A fixed buffer as a sink (config_json_buf_put()): ${p} holds ${len} bytes, ${used} of them
 * written and always NUL-terminated.  A piece that does not fit is left out whole, and
 * ${truncated} is set; nothing is written after that.
 */
struct config_json_buf {
    char *p;
    size_t len;
    size_t used;
    bool truncated;
};

/* A writer; fill it with config_json_init() or config_json_init_file(). */
struct config_json {
    config_json_sink sink;
    void *arg;
    size_t depth;                         /* objects and arrays open */
    bool after_key;                       /* the next value follows a key: no comma */
    bool more[CONFIG_JSON_DEPTH_MAX + 1]; /* more[d]: depth d holds a value: comma first */
};

/*
 * config_json_init(j, sink, arg):
 * Make ${j} a writer that sends its bytes to ${sink} with ${arg}.  Nothing is allocated.
 */
void config_json_init(struct config_json *j, config_json_sink sink, void *arg);

/*
 * config_json_init_file(j, out):
 * Make ${j} a writer to the stream ${out} (not closed or flushed by the writer).
 */
void config_json_init_file(struct config_json *j, FILE *out);

/*
 * config_json_buf_init(b, p, len):
 * Make ${b} an empty buffer over the ${len} bytes at ${p} (NUL-terminated if ${len} > 0).
 */
void config_json_buf_init(struct config_json_buf *b, char *p, size_t len);

/*
 * config_json_buf_put(arg, s, n):
 * The sink of a struct config_json_buf ${arg}: append all ${n} bytes of ${s}, or none and
 * set truncated (also once it is set), so that an escape sequence is never cut in half.
 */
void config_json_buf_put(void *arg, const char *s, size_t n);

/*
 * config_json_begin_object(j), config_json_end_object(j),
 * config_json_begin_array(j), config_json_end_array(j):
 * Open (as a value: after a key, in an array, or at the top) or close an object or an array.
 * Nesting deeper than CONFIG_JSON_DEPTH_MAX, or closing what is not open, is a programmer
 * error (assert).
 */
void config_json_begin_object(struct config_json *j);
void config_json_end_object(struct config_json *j);
void config_json_begin_array(struct config_json *j);
void config_json_end_array(struct config_json *j);

/*
 * config_json_key(j, key):
 * Write the key ${key} of the next member (escaped), with its comma when one is due.
 */
void config_json_key(struct config_json *j, const char *key);

/*
 * config_json_string(j, s):
 * Write ${s} as a JSON string, or null when ${s} is NULL.
 */
void config_json_string(struct config_json *j, const char *s);

/*
 * config_json_string_max(j, s, max):
 * As config_json_string(), but the escaped text between the quotes takes at most ${max}
 * bytes, else it is cut with "..." (see config_json_escape()).
 */
void config_json_string_max(struct config_json *j, const char *s, size_t max);

/*
 * config_json_int(j, v), config_json_uint(j, v):
 * Write ${v} as a JSON number (any long long; any uint64_t, counters included).
 */
void config_json_int(struct config_json *j, long long v);
void config_json_uint(struct config_json *j, uint64_t v);

/*
 * config_json_bool(j, v), config_json_null(j):
 * Write true or false, or null.
 */
void config_json_bool(struct config_json *j, bool v);
void config_json_null(struct config_json *j);

/*
 * config_json_kv_string(j, key, s), config_json_kv_int(j, key, v),
 * config_json_kv_uint(j, key, v), config_json_kv_bool(j, key, v):
 * A member of the open object: config_json_key(${j}, ${key}), then the value as above.
 */
void config_json_kv_string(struct config_json *j, const char *key, const char *s);
void config_json_kv_int(struct config_json *j, const char *key, long long v);
void config_json_kv_uint(struct config_json *j, const char *key, uint64_t v);
void config_json_kv_bool(struct config_json *j, const char *key, bool v);

/*
 * config_json_raw(j, json, n):
 * Write the ${n} bytes at ${json}, which the caller vouches are one whole JSON value (a
 * number it has checked, an array written by another writer), as the next value.
 */
void config_json_raw(struct config_json *j, const char *json, size_t n);

/*
 * config_json_escape(sink, arg, s, max):
 * Send ${s} to ${sink} escaped for the inside of a JSON string (no quotes; the rules are at
 * the top of this file), one piece (a character or an escape sequence) per call.  When the
 * output would pass ${max} bytes, it stops after the last whole piece that leaves room for
 * "..." and ends with "..." (SIZE_MAX: no limit).
 */
void config_json_escape(config_json_sink sink, void *arg, const char *s, size_t max);

/*
 * config_json_utf8_len(s):
 * The length (1 to 4) of the well-formed UTF-8 sequence at ${s} (RFC 3629 §4: no overlong
 * form, no surrogate, nothing above U+10FFFF), or 0 when the byte at ${s} begins none (it is
 * then escaped "\u00XX").  ASCII, NUL excepted, is 1.
 */
size_t config_json_utf8_len(const char *s);

#endif /* FERRY_CONFIG_JSON_H */
