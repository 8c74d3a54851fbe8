/*
 * config_json: one small JSON writer over a sink (see config_json.h).
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "config_json.h"

static void
json_file_put(void *arg, const char *s, size_t n)
{
    (void)fwrite(s, 1, n, (FILE *)arg);
}

/*
 * config_json_init(j, sink, arg):
 * Make ${j} a writer that sends its bytes to ${sink} with ${arg}.
 */
void
config_json_init(struct config_json *j, config_json_sink sink, void *arg)
{
    memset(j, 0, sizeof(*j));
    j->sink = sink;
    j->arg = arg;
}

/*
 * config_json_init_file(j, out):
 * Make ${j} a writer to the stream ${out}.
 */
void
config_json_init_file(struct config_json *j, FILE *out)
{
    config_json_init(j, json_file_put, out);
}

/*
 * config_json_buf_init(b, p, len):
 * Make ${b} an empty buffer over the ${len} bytes at ${p}.
 */
void
config_json_buf_init(struct config_json_buf *b, char *p, size_t len)
{
    b->p = p;
    b->len = len;
    b->used = 0;
    b->truncated = false;
    if (len > 0) {
        p[0] = '\0';
    }
}

/*
 * config_json_buf_put(arg, s, n):
 * Append all ${n} bytes of ${s} to the struct config_json_buf ${arg}, or none of them.
 */
void
config_json_buf_put(void *arg, const char *s, size_t n)
{
    struct config_json_buf *b = arg;

    if (b->truncated || b->used + n >= b->len) {
        b->truncated = true;
        return;
    }
    memcpy(b->p + b->used, s, n);
    b->used += n;
    b->p[b->used] = '\0';
}

static void
json_put(struct config_json *j, const char *s)
{
    j->sink(j->arg, s, strlen(s));
}

/* Before a value: its comma, unless it is the first in its container or follows a key. */
static void
json_value(struct config_json *j)
{
    if (j->after_key) {
        j->after_key = false;
        return;
    }
    if (j->more[j->depth]) {
        json_put(j, ",");
    }
    j->more[j->depth] = true;
}

static void
json_open(struct config_json *j, const char *bracket)
{
    assert(j->depth < CONFIG_JSON_DEPTH_MAX);
    json_value(j);
    json_put(j, bracket);
    j->depth++;
    j->more[j->depth] = false;
}

static void
json_close(struct config_json *j, const char *bracket)
{
    assert(j->depth > 0 && !j->after_key);
    j->depth--;
    json_put(j, bracket);
}

/*
 * config_json_begin_object(j):
 * Open an object as the next value.
 */
void
config_json_begin_object(struct config_json *j)
{
    json_open(j, "{");
}

/*
 * config_json_end_object(j):
 * Close the innermost object.
 */
void
config_json_end_object(struct config_json *j)
{
    json_close(j, "}");
}

/*
 * config_json_begin_array(j):
 * Open an array as the next value.
 */
void
config_json_begin_array(struct config_json *j)
{
    json_open(j, "[");
}

/*
 * config_json_end_array(j):
 * Close the innermost array.
 */
void
config_json_end_array(struct config_json *j)
{
    json_close(j, "]");
}

/*
 * config_json_key(j, key):
 * Write "${key}": with its comma when one is due.
 */
void
config_json_key(struct config_json *j, const char *key)
{
    assert(!j->after_key);
    json_value(j);
    json_put(j, "\"");
    config_json_escape(j->sink, j->arg, key, SIZE_MAX);
    json_put(j, "\":");
    j->after_key = true;
}

/*
 * config_json_string(j, s):
 * Write ${s} as a JSON string, or null when ${s} is NULL.
 */
void
config_json_string(struct config_json *j, const char *s)
{
    config_json_string_max(j, s, SIZE_MAX);
}

/*
 * config_json_string_max(j, s, max):
 * Write ${s} as a JSON string cut to ${max} escaped bytes, or null when ${s} is NULL.
 */
void
config_json_string_max(struct config_json *j, const char *s, size_t max)
{
    if (s == NULL) {
        config_json_null(j);
        return;
    }
    json_value(j);
    json_put(j, "\"");
    config_json_escape(j->sink, j->arg, s, max);
    json_put(j, "\"");
}

/*
 * config_json_int(j, v):
 * Write ${v} as a JSON number.
 */
void
config_json_int(struct config_json *j, long long v)
{
    char num[24];

    snprintf(num, sizeof(num), "%lld", v);
    config_json_raw(j, num, strlen(num));
}

/*
 * config_json_uint(j, v):
 * Write ${v} as a JSON number.
 */
void
config_json_uint(struct config_json *j, uint64_t v)
{
    char num[24];

    snprintf(num, sizeof(num), "%" PRIu64, v);
    config_json_raw(j, num, strlen(num));
}

/*
 * config_json_bool(j, v):
 * Write true or false.
 */
void
config_json_bool(struct config_json *j, bool v)
{
    config_json_raw(j, v ? "true" : "false", v ? 4 : 5);
}

/*
 * config_json_null(j):
 * Write null.
 */
void
config_json_null(struct config_json *j)
{
    config_json_raw(j, "null", 4);
}

/*
 * config_json_kv_string(j, key, s):
 * "${key}":"${s}" (null when ${s} is NULL).
 */
void
config_json_kv_string(struct config_json *j, const char *key, const char *s)
{
    config_json_key(j, key);
    config_json_string(j, s);
}

/*
 * config_json_kv_int(j, key, v):
 * "${key}":${v}.
 */
void
config_json_kv_int(struct config_json *j, const char *key, long long v)
{
    config_json_key(j, key);
    config_json_int(j, v);
}

/*
 * config_json_kv_uint(j, key, v):
 * "${key}":${v}.
 */
void
config_json_kv_uint(struct config_json *j, const char *key, uint64_t v)
{
    config_json_key(j, key);
    config_json_uint(j, v);
}

/*
 * config_json_kv_bool(j, key, v):
 * "${key}":true or false.
 */
void
config_json_kv_bool(struct config_json *j, const char *key, bool v)
{
    config_json_key(j, key);
    config_json_bool(j, v);
}

/*
 * config_json_raw(j, json, n):
 * Write the ${n} bytes at ${json}, one whole JSON value, as the next value.
 */
void
config_json_raw(struct config_json *j, const char *json, size_t n)
{
    json_value(j);
    j->sink(j->arg, json, n);
}

/*
 * config_json_utf8_len(s):
 * The length (1 to 4) of the well-formed UTF-8 sequence at ${s}, or 0 when none begins there.
 */
size_t
config_json_utf8_len(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned char lo = 0x80, hi = 0xbf;
    size_t n, i;

    if (u[0] >= 0x01 && u[0] < 0x80) {
        return 1;
    }
    if (u[0] >= 0xc2 && u[0] <= 0xdf) {
        n = 2;
    } else if (u[0] >= 0xe0 && u[0] <= 0xef) {
        n = 3;
        lo = u[0] == 0xe0 ? 0xa0 : 0x80; /* overlong */
        hi = u[0] == 0xed ? 0x9f : 0xbf; /* U+D800..U+DFFF */
    } else if (u[0] >= 0xf0 && u[0] <= 0xf4) {
        n = 4;
        lo = u[0] == 0xf0 ? 0x90 : 0x80; /* overlong */
        hi = u[0] == 0xf4 ? 0x8f : 0xbf; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (u[1] < lo || u[1] > hi) {
        return 0;
    }
    for (i = 2; i < n; i++) {
        if (u[i] < 0x80 || u[i] > 0xbf) {
            return 0;
        }
    }
    return n;
}

/*
 * The escaped form of the character at ${s} (whose UTF-8 length is ${n}, 0 when it begins
 * none) in ${piece}, at most 7 bytes and a NUL.  Returns its length.
 */
static size_t
json_piece(const char *s, size_t n, char piece[8])
{
    static const char hex[] = "0123456789abcdef";
    static const char shortened[] = "\"\\\n\r\t"; /* written '\\' and one of ... */
    static const char letters[] = "\"\\nrt";      /* ... these letters */
    unsigned char c = (unsigned char)*s;
    const char *at = c != '\0' ? strchr(shortened, c) : NULL;

    if (at != NULL) {
        piece[0] = '\\';
        piece[1] = letters[at - shortened];
        piece[2] = '\0';
        return 2;
    }
    if (c < 0x20 || c == 0x7f || n == 0) {
        memcpy(piece, "\\u00", 4);
        piece[4] = hex[c >> 4];
        piece[5] = hex[c & 0xf];
        piece[6] = '\0';
        return 6;
    }
    memcpy(piece, s, n);
    piece[n] = '\0';
    return n;
}

/*
 * config_json_escape(sink, arg, s, max):
 * Send ${s} escaped to ${sink}, piece by piece, cut with "..." past ${max} bytes.
 */
void
config_json_escape(config_json_sink sink, void *arg, const char *s, size_t max)
{
    size_t out = 0;

    while (*s != '\0') {
        size_t n = config_json_utf8_len(s);
        char piece[8];
        size_t plen = json_piece(s, n, piece);

        s += n > 0 ? n : 1;
        if (out + plen + 3 > max && *s != '\0') {
            sink(arg, "...", 3);
            return;
        }
        sink(arg, piece, plen);
        out += plen;
    }
}
