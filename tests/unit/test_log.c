/*
 * test_log: the text and JSON line formats of proxy/log.c, and JSON escaping.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include <cmocka.h>

#include "config_json.h"
#include "log.h"
#include "proxy_internal.h"

static size_t
fmt(char *buf, size_t len, enum log_format f, enum log_level level, const char *event, ...)
{
    va_list ap;
    size_t n;

    va_start(ap, event);
    n = log_format_line(buf, len, f, "2026-11-23T00:00:00.000Z", level, event, ap);
    va_end(ap);
    return n;
}

static void
test_text_plain_values(void **state)
{
    char buf[256];

    (void)state;
    fmt(buf, sizeof(buf), LOG_TEXT, LOG_WARN, "handshake_rejected", "listener", "from-peers",
        "reason", "eku_wrong", (const char *)NULL);
    assert_string_equal(buf, "2026-11-23T00:00:00.000Z warn event=handshake_rejected "
                             "listener=from-peers reason=eku_wrong");
}

static void
test_text_quotes_and_skips_empty(void **state)
{
    char buf[256];

    (void)state;
    fmt(buf, sizeof(buf), LOG_TEXT, LOG_INFO, "conn_closed", "peer", "", "msg", "say \"hi\"\nnow",
        "subject", "CN=a b", "x", (const char *)NULL, (const char *)NULL);
    assert_string_equal(buf, "2026-11-23T00:00:00.000Z info event=conn_closed "
                             "msg=\"say \\\"hi\\\"\\nnow\" subject=\"CN=a b\"");
}

static void
test_json_line(void **state)
{
    char buf[256];

    (void)state;
    fmt(buf, sizeof(buf), LOG_JSON, LOG_ERROR, "start_failed", "msg", "tab\there\x01",
        (const char *)NULL);
    assert_string_equal(buf, "{\"ts\":\"2026-11-23T00:00:00.000Z\",\"level\":\"error\","
                             "\"event\":\"start_failed\",\"msg\":\"tab\\there\\u0001\"}");
}

static void
test_truncation_is_marked_and_bounded(void **state)
{
    char buf[48];
    char big[200];
    size_t n;

    (void)state;
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    n = fmt(buf, sizeof(buf), LOG_TEXT, LOG_INFO, "e", "k", big, (const char *)NULL);
    assert_true(n < sizeof(buf));
    assert_int_equal(strlen(buf), n);
    assert_string_equal(buf + n - 3, "...");
}

/* A long value is cut on its own, so the keys after it stay (issue 12: an empty msg=). */
static void
test_long_value_cut_alone(void **state)
{
    static char buf[4096];
    static char big[3000];

    (void)state;
    memset(big, 'p', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    big[10] = '"';
    fmt(buf, sizeof(buf), LOG_TEXT, LOG_WARN, "access_denied", "path", big, "rule", big, "msg",
        "peer x may not GET /y", (const char *)NULL);
    assert_non_null(strstr(buf, "p...\" rule=\"ppp"));
    assert_non_null(strstr(buf, " msg=\"peer x may not GET /y\""));
    assert_true(strlen(buf) < 2400);
    fmt(buf, sizeof(buf), LOG_JSON, LOG_WARN, "access_denied", "path", big, "msg", "m",
        (const char *)NULL);
    assert_non_null(strstr(buf, "p...\",\"msg\":\"m\"}"));
}

/* The escaper of log lines (config_json_escape()) into a fixed buffer, all of a piece or none. */
static void
log_json_escape(char *dst, size_t len, const char *src)
{
    struct config_json_buf b;

    config_json_buf_init(&b, dst, len);
    config_json_escape(config_json_buf_put, &b, src, SIZE_MAX);
}

static void
test_json_escape_never_splits_an_escape(void **state)
{
    char buf[7];

    (void)state;
    /* 'abc\"' takes 5 bytes + NUL; the second quote's 2 bytes do not fit, and are left out
     * whole rather than as a lone backslash. */
    log_json_escape(buf, sizeof(buf), "abc\"\"");
    assert_string_equal(buf, "abc\\\"");
    log_json_escape(buf, sizeof(buf), "\\");
    assert_string_equal(buf, "\\\\");
}

static void
test_json_invalid_utf8_escaped(void **state)
{
    char buf[256];

    (void)state;
    /* Each byte outside a well-formed sequence is \u00XX; well-formed UTF-8 passes. */
    log_json_escape(buf, sizeof(buf), "/db\xff\xfe\"x");
    assert_string_equal(buf, "/db\\u00ff\\u00fe\\\"x");
    log_json_escape(buf, sizeof(buf),
                    "a\x80"
                    "b");
    assert_string_equal(buf, "a\\u0080b");
    log_json_escape(buf, sizeof(buf), "\xc0\xaf");
    assert_string_equal(buf, "\\u00c0\\u00af");
    log_json_escape(buf, sizeof(buf), "\xed\xa0\x80");
    assert_string_equal(buf, "\\u00ed\\u00a0\\u0080");
    log_json_escape(buf, sizeof(buf), "caf\xc3\xa9 \xe2\x82");
    assert_string_equal(buf, "caf\xc3\xa9 \\u00e2\\u0082");
    log_json_escape(buf, sizeof(buf), "\xf0\x9f\x98\x80");
    assert_string_equal(buf, "\xf0\x9f\x98\x80");
    /* A character is never cut in half: the 2 bytes of U+00E9 do not fit after "ab". */
    log_json_escape(buf, 4, "ab\xc3\xa9");
    assert_string_equal(buf, "ab");
    fmt(buf, sizeof(buf), LOG_JSON, LOG_INFO, "request", "path", "/db\xff", (const char *)NULL);
    assert_string_equal(buf, "{\"ts\":\"2026-11-23T00:00:00.000Z\",\"level\":\"info\","
                             "\"event\":\"request\",\"path\":\"/db\\u00ff\"}");
}

static void
test_text_invalid_utf8_quoted(void **state)
{
    char buf[256];

    (void)state;
    /* Text escapes alike: a value holding a byte that is not UTF-8 is quoted and escaped. */
    fmt(buf, sizeof(buf), LOG_TEXT, LOG_INFO, "request", "path", "/db\xff\xfe", "user",
        "caf\xc3\xa9", (const char *)NULL);
    assert_string_equal(buf, "2026-11-23T00:00:00.000Z info event=request "
                             "path=\"/db\\u00ff\\u00fe\" user=caf\xc3\xa9");
}

static void
test_levels(void **state)
{
    (void)state;
    log_setup(LOG_WARN, LOG_TEXT, NULL);
    assert_true(log_enabled(LOG_ERROR));
    assert_true(log_enabled(LOG_WARN));
    assert_false(log_enabled(LOG_INFO));
    assert_string_equal(log_level_str(LOG_DEBUG), "debug");
    log_setup(LOG_INFO, LOG_TEXT, NULL);
}

/* The access-log line: numbers are JSON numbers, text is unchanged (issue 13 §4). */
static void
test_json_numbers(void **state)
{
    char buf[512];

    (void)state;
    fmt(buf, sizeof(buf), LOG_JSON, LOG_INFO, "request", "listener", "in", "peer", "node2.test",
        "method", "GET", "path", "/db", "status", "200", "bytes_in", "0", "bytes_out", "1234",
        "duration_ms", "17", "rule", "-", (const char *)NULL);
    assert_string_equal(buf, "{\"ts\":\"2026-11-23T00:00:00.000Z\",\"level\":\"info\","
                             "\"event\":\"request\",\"listener\":\"in\",\"peer\":\"node2.test\","
                             "\"method\":\"GET\",\"path\":\"/db\",\"status\":200,\"bytes_in\":0,"
                             "\"bytes_out\":1234,\"duration_ms\":17,\"rule\":\"-\"}");
    fmt(buf, sizeof(buf), LOG_TEXT, LOG_INFO, "request", "listener", "in", "status", "200",
        "bytes_in", "0", "duration_ms", "17", "rule", "-", (const char *)NULL);
    assert_string_equal(buf, "2026-11-23T00:00:00.000Z info event=request listener=in "
                             "status=200 bytes_in=0 duration_ms=17 rule=-");
}

/* "-" in a number key is null; a value that is not a number stays a string; empty is left out. */
static void
test_json_number_edge_values(void **state)
{
    char buf[512];

    (void)state;
    fmt(buf, sizeof(buf), LOG_JSON, LOG_INFO, "request", "status", "-", "bytes_out", "", "workers",
        "auto", "drain_timeout_ms", "30000", "connections", "007", "port", "-1.5e3",
        (const char *)NULL);
    assert_string_equal(buf, "{\"ts\":\"2026-11-23T00:00:00.000Z\",\"level\":\"info\","
                             "\"event\":\"request\",\"status\":null,\"workers\":\"auto\","
                             "\"drain_timeout_ms\":30000,\"connections\":\"007\","
                             "\"port\":-1.5e3}");
    fmt(buf, sizeof(buf), LOG_TEXT, LOG_INFO, "request", "status", "-", (const char *)NULL);
    assert_string_equal(buf, "2026-11-23T00:00:00.000Z info event=request status=-");
}

static void
test_number_key_and_grammar(void **state)
{
    (void)state;
    assert_true(log_number_key("status"));
    assert_true(log_number_key("duration_ms"));
    assert_true(log_number_key("drain_timeout_ms"));
    assert_true(log_number_key("backend_port"));
    assert_false(log_number_key("_ms"));
    assert_false(log_number_key("msg"));
    assert_false(log_number_key("remote"));
    assert_false(log_number_key("statuses"));
    assert_true(log_json_number("0"));
    assert_true(log_json_number("18446744073709551615"));
    assert_true(log_json_number("-2"));
    assert_true(log_json_number("0.25"));
    assert_true(log_json_number("1E+9"));
    assert_false(log_json_number(""));
    assert_false(log_json_number("-"));
    assert_false(log_json_number("01"));
    assert_false(log_json_number("1."));
    assert_false(log_json_number(".5"));
    assert_false(log_json_number("1e"));
    assert_false(log_json_number("+1"));
    assert_false(log_json_number("0x10"));
    assert_false(log_json_number("12 "));
    assert_false(log_json_number("NaN"));
}

static void
test_timestamp_rfc3339(void **state)
{
    char ts[40];
    struct timeval tv = {1796429554, 567999}; /* 2026-12-05T00:12:34.567999Z */

    (void)state;
    assert_string_equal(log_timestamp_format(&tv, ts, sizeof(ts)), "2026-12-05T00:12:34.567Z");
    tv.tv_sec = 0;
    tv.tv_usec = 1000;
    assert_string_equal(log_timestamp_format(&tv, ts, sizeof(ts)), "1970-01-01T00:00:00.001Z");
}

/* A line written by log_kv() in JSON: the real clock's ts, numbers, one line. */
static void
test_log_kv_json_to_stream(void **state)
{
    char line[512];
    FILE *f = tmpfile();

    (void)state;
    assert_non_null(f);
    log_setup(LOG_INFO, LOG_JSON, f);
    log_kv(LOG_INFO, "request", "status", "502", "bytes_out", "80", (const char *)NULL);
    log_setup(LOG_INFO, LOG_TEXT, NULL);
    rewind(f);
    assert_non_null(fgets(line, sizeof(line), f));
    fclose(f);
    /* {"ts":"YYYY-MM-DDTHH:MM:SS.mmmZ",... */
    assert_int_equal(strlen(line), strlen("{\"ts\":\"2026-12-05T00:12:34.567Z\",\"level\":\"info\","
                                          "\"event\":\"request\",\"status\":502,"
                                          "\"bytes_out\":80}\n"));
    assert_int_equal(line[11], '-');
    assert_int_equal(line[17], 'T');
    assert_int_equal(line[26], '.');
    assert_int_equal(line[30], 'Z');
    assert_non_null(strstr(line, "\",\"level\":\"info\",\"event\":\"request\",\"status\":502,"
                                 "\"bytes_out\":80}\n"));
}

/* A JSON line too long for the buffer stays one JSON object (issue 13 §4). */
static void
test_json_truncation_stays_json(void **state)
{
    static char buf[200];
    static char big[300];
    size_t n;

    (void)state;
    memset(big, 'v', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    n = fmt(buf, sizeof(buf), LOG_JSON, LOG_INFO, "conn_closed", "listener", "in", "status", "502",
            "detail", big, "reason", "done", (const char *)NULL);
    assert_int_equal(strlen(buf), n);
    assert_true(n < sizeof(buf));
    assert_string_equal(buf, "{\"ts\":\"2026-11-23T00:00:00.000Z\",\"level\":\"info\","
                             "\"event\":\"conn_closed\",\"listener\":\"in\",\"status\":502,"
                             "\"truncated\":true}");
}

/* The request line of an answer ferry makes before framing (its access-log line). */
static void
test_request_line_parse(void **state)
{
    char m[16], t[32];
    char big[PROXY_REQUEST_LINE_PEEK];

    (void)state;
    assert_true(proxy_exchange_request_line_parse("GET /db/doc?x=1 HTTP/1.1\r\nHost: a\r\n", 35, m,
                                                  sizeof(m), t, sizeof(t)));
    assert_string_equal(m, "GET");
    assert_string_equal(t, "/db/doc?x=1");
    /* Not complete yet: wait for more. */
    assert_false(proxy_exchange_request_line_parse("GET /db HTT", 11, m, sizeof(m), t, sizeof(t)));
    assert_string_equal(t, "");
    assert_false(proxy_exchange_request_line_parse(NULL, 0, m, sizeof(m), t, sizeof(t)));
    /* A complete line that is not METHOD SP TARGET: both "" (logged as "-"). */
    assert_true(
        proxy_exchange_request_line_parse("G\x01T /x HTTP/1.1\n", 16, m, sizeof(m), t, sizeof(t)));
    assert_string_equal(m, "");
    assert_string_equal(t, "");
    assert_true(proxy_exchange_request_line_parse("\x16\x03\x01\n", 4, m, sizeof(m), t, sizeof(t)));
    assert_string_equal(m, "");
    assert_true(proxy_exchange_request_line_parse("GET  /x\n", 8, m, sizeof(m), t, sizeof(t)));
    assert_string_equal(t, "");
    /* Control bytes in the target are kept (the log line escapes them). */
    assert_true(proxy_exchange_request_line_parse("GET /a\x7f\x01b HTTP/1.1\n", 19, m, sizeof(m), t,
                                                  sizeof(t)));
    assert_string_equal(t, "/a\x7f\x01b");
    assert_true(proxy_exchange_request_line_parse("AVERYVERYLONGMETHODNAME /x\n", 27, m, sizeof(m),
                                                  t, sizeof(t)));
    assert_string_equal(m, "");
    /* A target longer than the room is cut; a line longer than the peek counts as complete. */
    memset(big, 'a', sizeof(big));
    memcpy(big, "PUT /", 5);
    assert_true(proxy_exchange_request_line_parse(big, sizeof(big), m, sizeof(m), t, sizeof(t)));
    assert_string_equal(m, "PUT");
    assert_int_equal(strlen(t), sizeof(t) - 1);
    assert_int_equal(t[0], '/');
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_plain_values),
        cmocka_unit_test(test_text_quotes_and_skips_empty),
        cmocka_unit_test(test_json_line),
        cmocka_unit_test(test_truncation_is_marked_and_bounded),
        cmocka_unit_test(test_long_value_cut_alone),
        cmocka_unit_test(test_json_escape_never_splits_an_escape),
        cmocka_unit_test(test_json_invalid_utf8_escaped),
        cmocka_unit_test(test_text_invalid_utf8_quoted),
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_json_numbers),
        cmocka_unit_test(test_json_number_edge_values),
        cmocka_unit_test(test_number_key_and_grammar),
        cmocka_unit_test(test_timestamp_rfc3339),
        cmocka_unit_test(test_log_kv_json_to_stream),
        cmocka_unit_test(test_request_line_parse),
        cmocka_unit_test(test_json_truncation_stays_json),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
