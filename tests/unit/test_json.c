/*
 * test_json: config/config_json.c, the one JSON writer: escaping, UTF-8, commas and nesting,
 * numbers, the fixed-buffer sink and the "..." cut.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config_json.h"

/* ${s} escaped into ${out} (at most ${max} escaped bytes). */
static const char *
esc(char *out, size_t len, const char *s, size_t max)
{
    struct config_json_buf b;

    config_json_buf_init(&b, out, len);
    config_json_escape(config_json_buf_put, &b, s, max);
    assert_false(b.truncated);
    return out;
}

static void
test_escape_quotes_backslash_and_short_forms(void **state)
{
    char out[64];

    (void)state;
    assert_string_equal(esc(out, sizeof(out), "a\"b\\c", SIZE_MAX), "a\\\"b\\\\c");
    assert_string_equal(esc(out, sizeof(out), "\n\r\t", SIZE_MAX), "\\n\\r\\t");
    /* '/' and the rest of printable ASCII pass through. */
    assert_string_equal(esc(out, sizeof(out), "/ ~'{}", SIZE_MAX), "/ ~'{}");
    assert_string_equal(esc(out, sizeof(out), "", SIZE_MAX), "");
}

static void
test_escape_every_control_byte_and_del(void **state)
{
    char in[2] = {0, 0};
    char out[16], want[16];

    (void)state;
    for (int c = 0x01; c < 0x20; c++) {
        in[0] = (char)c;
        if (c == '\n') {
            strcpy(want, "\\n");
        } else if (c == '\r') {
            strcpy(want, "\\r");
        } else if (c == '\t') {
            strcpy(want, "\\t");
        } else {
            snprintf(want, sizeof(want), "\\u%04x", (unsigned)c);
        }
        assert_string_equal(esc(out, sizeof(out), in, SIZE_MAX), want);
    }
    assert_string_equal(esc(out, sizeof(out), "\x7f", SIZE_MAX), "\\u007f");
}

static void
test_escape_invalid_utf8(void **state)
{
    char out[64];

    (void)state;
    /* Each byte outside a well-formed sequence is \u00XX; well-formed UTF-8 passes. */
    assert_string_equal(esc(out, sizeof(out), "/db\xff\xfe\"x", SIZE_MAX),
                        "/db\\u00ff\\u00fe\\\"x");
    assert_string_equal(esc(out, sizeof(out), "\xc0\xaf", SIZE_MAX), "\\u00c0\\u00af");
    assert_string_equal(esc(out, sizeof(out), "\xed\xa0\x80", SIZE_MAX), "\\u00ed\\u00a0\\u0080");
    assert_string_equal(esc(out, sizeof(out), "caf\xc3\xa9 \xe2\x82", SIZE_MAX),
                        "caf\xc3\xa9 \\u00e2\\u0082");
    assert_string_equal(esc(out, sizeof(out), "\xf0\x9f\x98\x80", SIZE_MAX), "\xf0\x9f\x98\x80");
}

static void
test_utf8_len(void **state)
{
    (void)state;
    assert_int_equal(config_json_utf8_len("a"), 1);
    assert_int_equal(config_json_utf8_len(""), 0);
    assert_int_equal(config_json_utf8_len("\xc3\xa9"), 2);         /* U+00E9 */
    assert_int_equal(config_json_utf8_len("\xe2\x82\xac"), 3);     /* U+20AC */
    assert_int_equal(config_json_utf8_len("\xf0\x9f\x98\x80"), 4); /* U+1F600 */
    assert_int_equal(config_json_utf8_len("\xf4\x8f\xbf\xbf"), 4); /* U+10FFFF */
    assert_int_equal(config_json_utf8_len("\x80"), 0);             /* lone continuation byte */
    assert_int_equal(config_json_utf8_len("\xc0\xaf"), 0);         /* overlong '/' */
    assert_int_equal(config_json_utf8_len("\xe0\x80\xaf"), 0);     /* overlong '/' */
    assert_int_equal(config_json_utf8_len("\xf0\x80\x80\xaf"), 0); /* overlong '/' */
    assert_int_equal(config_json_utf8_len("\xed\xa0\x80"), 0);     /* U+D800, a surrogate */
    assert_int_equal(config_json_utf8_len("\xed\xbf\xbf"), 0);     /* U+DFFF */
    assert_int_equal(config_json_utf8_len("\xf4\x90\x80\x80"), 0); /* above U+10FFFF */
    assert_int_equal(config_json_utf8_len("\xe2\x82"), 0);         /* cut short by the end */
    assert_int_equal(config_json_utf8_len("\xe2\x82x"), 0);        /* cut short by another byte */
    assert_int_equal(config_json_utf8_len("\xff"), 0);
    assert_int_equal(config_json_utf8_len("\xfe"), 0);
    assert_int_equal(config_json_utf8_len("\xf5\x80\x80\x80"), 0);
}

static void
test_escape_cut_with_dots(void **state)
{
    char out[64];

    (void)state;
    /*
     * A value is whole when all but its last piece leave room for "..."; else the pieces that
     * do stay, then "...".
     */
    assert_string_equal(esc(out, sizeof(out), "abcdef", 8), "abcdef");
    assert_string_equal(esc(out, sizeof(out), "abcdef", 7), "abcd...");
    assert_string_equal(esc(out, sizeof(out), "abcdefg", 6), "abc...");
    /* An escape sequence or a character is never split by the cut. */
    assert_string_equal(esc(out, sizeof(out), "ab\"cdefg", 6), "ab...");
    assert_string_equal(esc(out, sizeof(out),
                            "a\xc3\xa9"
                            "bcdefg",
                            6),
                        "a\xc3\xa9...");
    assert_string_equal(esc(out, sizeof(out), "ab\x01zzzz", 8), "ab...");
}

static void
test_buf_sink_all_or_nothing(void **state)
{
    char out[7];
    struct config_json_buf b;

    (void)state;
    /* 'abc\"' takes 5 bytes + NUL; the second quote's 2 bytes do not fit: left out whole. */
    config_json_buf_init(&b, out, sizeof(out));
    config_json_escape(config_json_buf_put, &b, "abc\"\"", SIZE_MAX);
    assert_true(b.truncated);
    assert_string_equal(out, "abc\\\"");
    assert_int_equal(b.used, 5);
    /* Once cut, nothing more is written, even what would fit. */
    config_json_buf_put(&b, "", 0);
    config_json_buf_put(&b, "x", 1);
    assert_string_equal(out, "abc\\\"");
    /* A character is never cut in half. */
    config_json_buf_init(&b, out, 4);
    config_json_escape(config_json_buf_put, &b, "ab\xc3\xa9", SIZE_MAX);
    assert_string_equal(out, "ab");
}

/* A writer into a memory stream; the text is returned in *${buf} by mem_done(). */
struct mem {
    FILE *f;
    char *buf;
    size_t len;
};

static void
mem_open(struct mem *m, struct config_json *j)
{
    m->buf = NULL;
    m->len = 0;
    assert_non_null(m->f = open_memstream(&m->buf, &m->len));
    config_json_init_file(j, m->f);
}

static const char *
mem_done(struct mem *m)
{
    fclose(m->f);
    return m->buf;
}

static void
test_nesting_and_commas(void **state)
{
    struct config_json j;
    struct mem m;

    (void)state;
    mem_open(&m, &j);
    config_json_begin_object(&j);
    config_json_key(&j, "a");
    config_json_begin_array(&j);
    config_json_end_array(&j);
    config_json_key(&j, "b");
    config_json_begin_array(&j);
    config_json_int(&j, 1);
    config_json_begin_object(&j);
    config_json_end_object(&j);
    config_json_begin_object(&j);
    config_json_key(&j, "x\"y");
    config_json_null(&j);
    config_json_key(&j, "t");
    config_json_bool(&j, true);
    config_json_key(&j, "f");
    config_json_bool(&j, false);
    config_json_end_object(&j);
    config_json_begin_array(&j);
    config_json_string(&j, "s");
    config_json_string(&j, NULL);
    config_json_end_array(&j);
    config_json_end_array(&j);
    config_json_key(&j, "c");
    config_json_begin_object(&j);
    config_json_key(&j, "d");
    config_json_raw(&j, "[1,2]", 5);
    config_json_end_object(&j);
    config_json_end_object(&j);
    assert_string_equal(mem_done(&m), "{\"a\":[],\"b\":[1,{},{\"x\\\"y\":null,\"t\":true,"
                                      "\"f\":false},[\"s\",null]],\"c\":{\"d\":[1,2]}}");
    free(m.buf);
    /* Two top-level values are separated by a comma too (a list written in pieces). */
    mem_open(&m, &j);
    config_json_string(&j, "a");
    config_json_string(&j, "b");
    assert_string_equal(mem_done(&m), "\"a\",\"b\"");
    free(m.buf);
}

static void
test_numbers(void **state)
{
    struct config_json j;
    struct mem m;

    (void)state;
    mem_open(&m, &j);
    config_json_begin_array(&j);
    config_json_uint(&j, 0);
    config_json_uint(&j, UINT64_MAX);
    config_json_int(&j, -1);
    config_json_int(&j, INT64_MIN);
    config_json_int(&j, INT64_MAX);
    config_json_end_array(&j);
    assert_string_equal(mem_done(&m), "[0,18446744073709551615,-1,-9223372036854775808,"
                                      "9223372036854775807]");
    free(m.buf);
}

static void
test_string_max_and_buf_writer(void **state)
{
    char out[64];
    struct config_json_buf b;
    struct config_json j;

    (void)state;
    config_json_buf_init(&b, out, sizeof(out));
    config_json_init(&j, config_json_buf_put, &b);
    config_json_begin_object(&j);
    config_json_key(&j, "v");
    config_json_string_max(&j, "0123456789", 8);
    config_json_key(&j, "w");
    config_json_string_max(&j, NULL, 8);
    config_json_end_object(&j);
    assert_false(b.truncated);
    assert_string_equal(out, "{\"v\":\"01234...\",\"w\":null}");
    /* A buffer that is too small keeps what fitted whole and says so. */
    config_json_buf_init(&b, out, 8);
    config_json_init(&j, config_json_buf_put, &b);
    config_json_begin_object(&j);
    config_json_key(&j, "key");
    config_json_string(&j, "value");
    config_json_end_object(&j);
    assert_true(b.truncated);
    assert_string_equal(out, "{\"key\":");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_quotes_backslash_and_short_forms),
        cmocka_unit_test(test_escape_every_control_byte_and_del),
        cmocka_unit_test(test_escape_invalid_utf8),
        cmocka_unit_test(test_utf8_len),
        cmocka_unit_test(test_escape_cut_with_dots),
        cmocka_unit_test(test_buf_sink_all_or_nothing),
        cmocka_unit_test(test_nesting_and_commas),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_string_max_and_buf_writer),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
