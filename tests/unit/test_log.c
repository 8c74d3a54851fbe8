/*
 * test_log: the text and JSON line formats of proxy/log.c, and JSON escaping.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "log.h"

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
        cmocka_unit_test(test_levels),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
