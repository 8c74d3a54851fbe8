/*
 * test_admin: the decisions behind GET /livez and /readyz (when a backend or peer is down or
 * up, which state lets /readyz say 200, when a worker's loop counts as stalled) and the admin
 * request line (proxy/proxy_admin.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proxy_admin.h"

static void
test_reach_states(void **state)
{
    (void)state;
    /* Before anything happened: unknown. */
    assert_int_equal(proxy_admin_reach_of(0, 0, false), PROXY_REACH_UNKNOWN);
    /* One or two failures and never a success: still unknown, not down. */
    assert_int_equal(proxy_admin_reach_of(0, 1, false), PROXY_REACH_UNKNOWN);
    assert_int_equal(proxy_admin_reach_of(0, PROXY_UPSTREAM_DOWN_AFTER - 1, false),
                     PROXY_REACH_UNKNOWN);
    /* Three in a row: down, with or without earlier successes. */
    assert_int_equal(PROXY_UPSTREAM_DOWN_AFTER, 3);
    assert_int_equal(proxy_admin_reach_of(0, 3, false), PROXY_REACH_DOWN);
    assert_int_equal(proxy_admin_reach_of(42, 3, false), PROXY_REACH_DOWN);
    assert_int_equal(proxy_admin_reach_of(42, 1000, false), PROXY_REACH_DOWN);
    /* A failed probe: down at once. */
    assert_int_equal(proxy_admin_reach_of(0, 1, true), PROXY_REACH_DOWN);
    assert_int_equal(proxy_admin_reach_of(7, 1, true), PROXY_REACH_DOWN);
    /* A success resets the streak (the recorder sets fails to 0): up. */
    assert_int_equal(proxy_admin_reach_of(1, 0, false), PROXY_REACH_UP);
    /* Up, then fewer than three failures: still up. */
    assert_int_equal(proxy_admin_reach_of(5, 2, false), PROXY_REACH_UP);
}

static void
test_reach_ready(void **state)
{
    (void)state;
    /* Down is never ready; up always is. */
    assert_false(proxy_admin_reach_ready(true, PROXY_REACH_DOWN));
    assert_false(proxy_admin_reach_ready(false, PROXY_REACH_DOWN));
    assert_true(proxy_admin_reach_ready(true, PROXY_REACH_UP));
    assert_true(proxy_admin_reach_ready(false, PROXY_REACH_UP));
    /* Unknown: a backend (probed at start) is not ready yet; a peer (never probed) is. */
    assert_false(proxy_admin_reach_ready(true, PROXY_REACH_UNKNOWN));
    assert_true(proxy_admin_reach_ready(false, PROXY_REACH_UNKNOWN));
}

static void
test_loop_stalled(void **state)
{
    (void)state;
    assert_int_equal(PROXY_LIVE_STALL_MS, 5000);
    assert_false(proxy_admin_loop_stalled(1000, 1000));
    assert_false(proxy_admin_loop_stalled(10000, 9000));
    assert_false(proxy_admin_loop_stalled(10000, 5000)); /* exactly the limit: not yet */
    assert_true(proxy_admin_loop_stalled(10001, 5000));
    assert_true(proxy_admin_loop_stalled(60000, 1000));
    /* A beat "in the future" (read racing the writer) is not a stall. */
    assert_false(proxy_admin_loop_stalled(1000, 1500));
}

/* Parse ${line} and expect ${code} (0 = parsed). */
static int
parse(const char *line, struct proxy_admin_req *req, const char **why)
{
    *why = NULL;
    return proxy_admin_parse(line, strlen(line), req, why);
}

static void
test_parse_good(void **state)
{
    struct proxy_admin_req req;
    const char *why;

    (void)state;
    assert_int_equal(parse("GET /livez HTTP/1.1", &req, &why), 0);
    assert_string_equal(req.method, "GET");
    assert_string_equal(req.path, "/livez");
    assert_string_equal(req.query, "");
    assert_false(req.http10);
    assert_int_equal(parse("HEAD /readyz?exclude=peers HTTP/1.0", &req, &why), 0);
    assert_string_equal(req.method, "HEAD");
    assert_string_equal(req.path, "/readyz");
    assert_string_equal(req.query, "exclude=peers");
    assert_true(req.http10);
    /* Any token is a method here; the router answers 405 for what it does not serve. */
    assert_int_equal(parse("PROPFIND /metrics HTTP/1.1", &req, &why), 0);
    assert_string_equal(req.method, "PROPFIND");
    assert_int_equal(parse("GET /metrics? HTTP/1.1", &req, &why), 0);
    assert_string_equal(req.path, "/metrics");
    assert_string_equal(req.query, "");
}

static void
test_parse_bad(void **state)
{
    struct proxy_admin_req req;
    const char *why;
    char line[1024];

    (void)state;
    assert_int_equal(parse("", &req, &why), 400);
    assert_non_null(why);
    assert_int_equal(parse("GET", &req, &why), 400);
    assert_int_equal(parse("GET /livez", &req, &why), 400);
    assert_int_equal(parse("GET  /livez HTTP/1.1", &req, &why), 400);
    assert_int_equal(parse("GET /livez HTTP/1.1 ", &req, &why), 400);
    assert_int_equal(parse("G(T /livez HTTP/1.1", &req, &why), 400);
    assert_int_equal(parse("GET livez HTTP/1.1", &req, &why), 400);
    assert_string_equal(why, "the request target must be a path starting with /");
    assert_int_equal(parse("GET http://127.0.0.1/livez HTTP/1.1", &req, &why), 400);
    assert_int_equal(parse("GET /li\x01vez HTTP/1.1", &req, &why), 400);
    assert_int_equal(parse("GET /li\xffvez HTTP/1.1", &req, &why), 400);
    assert_int_equal(parse("GET /livez FTP/1.1", &req, &why), 400);
    assert_int_equal(parse("VERYLONGMETHODNAMEXX /livez HTTP/1.1", &req, &why), 400);
    /* Versions other than 1.0 and 1.1. */
    assert_int_equal(parse("GET /livez HTTP/2.0", &req, &why), 505);
    assert_int_equal(parse("GET /livez HTTP/0.9", &req, &why), 505);
    /* Not HTTP-version = "HTTP/" DIGIT "." DIGIT at all: malformed. */
    assert_int_equal(parse("GET /livez HTTP/1.10", &req, &why), 400);
    assert_int_equal(parse("GET /livez HTTP/2", &req, &why), 400);
    /* A path or query longer than the buffers: 414. */
    memset(line, 0, sizeof(line));
    memcpy(line, "GET /", 5);
    memset(line + 5, 'a', 300);
    memcpy(line + 305, " HTTP/1.1", 9);
    assert_int_equal(parse(line, &req, &why), 414);
    memset(line, 0, sizeof(line));
    memcpy(line, "GET /readyz?", 12);
    memset(line + 12, 'q', 300);
    memcpy(line + 312, " HTTP/1.1", 9);
    assert_int_equal(parse(line, &req, &why), 414);
}

static void
test_exclude(void **state)
{
    unsigned ex = 99;
    char why[400];

    (void)state;
    assert_int_equal(proxy_admin_exclude("", &ex, why, sizeof(why)), 0);
    assert_int_equal(ex, 0);
    assert_int_equal(proxy_admin_exclude("exclude=peers", &ex, why, sizeof(why)), 0);
    assert_int_equal(ex, PROXY_EXCLUDE_PEERS);
    assert_int_equal(proxy_admin_exclude("exclude=backends", &ex, why, sizeof(why)), 0);
    assert_int_equal(ex, PROXY_EXCLUDE_BACKENDS);
    assert_int_equal(proxy_admin_exclude("exclude=peers,backends", &ex, why, sizeof(why)), 0);
    assert_int_equal(ex, PROXY_EXCLUDE_PEERS | PROXY_EXCLUDE_BACKENDS);
    assert_int_equal(proxy_admin_exclude("exclude=backends&exclude=peers&", &ex, why, sizeof(why)),
                     0);
    assert_int_equal(ex, PROXY_EXCLUDE_PEERS | PROXY_EXCLUDE_BACKENDS);
    /* A typo in the parameter's name is named, not ignored. */
    assert_int_equal(proxy_admin_exclude("exlude=peers", &ex, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "unknown query parameter exlude"));
    assert_int_equal(proxy_admin_exclude("exclude=peers&x=1", &ex, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "parameter x:"));
    /* Empty values. */
    assert_int_equal(proxy_admin_exclude("exclude=", &ex, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "empty value"));
    assert_int_equal(proxy_admin_exclude("exclude", &ex, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "empty value"));
    assert_int_equal(proxy_admin_exclude("exclude=peers,", &ex, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "empty value"));
    assert_int_equal(proxy_admin_exclude("exclude=,peers", &ex, why, sizeof(why)), -1);
    /* Unknown values. */
    assert_int_equal(proxy_admin_exclude("exclude=peer", &ex, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "exclude=peer: unknown"));
    assert_int_equal(proxy_admin_exclude("exclude=peers,nonsense", &ex, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "exclude=nonsense: unknown"));
}

static void
test_file_state(void **state)
{
    (void)state;
    assert_int_equal(proxy_admin_file_state(true, 100, 2000, 1000), PROXY_FILE_OK);
    /* A CA file (notBefore not checked) and a CRL without nextUpdate. */
    assert_int_equal(proxy_admin_file_state(true, 0, 2000, 1000), PROXY_FILE_OK);
    assert_int_equal(proxy_admin_file_state(true, 0, 0, 1000), PROXY_FILE_OK);
    /* Deleted or unreadable at runtime: whatever was read before no longer counts. */
    assert_int_equal(proxy_admin_file_state(false, 100, 2000, 1000), PROXY_FILE_UNREADABLE);
    assert_int_equal(proxy_admin_file_state(false, 0, 0, 1000), PROXY_FILE_UNREADABLE);
    /* notAfter (nextUpdate) reached. */
    assert_int_equal(proxy_admin_file_state(true, 100, 1000, 1000), PROXY_FILE_EXPIRED);
    assert_int_equal(proxy_admin_file_state(true, 100, 999, 1000), PROXY_FILE_EXPIRED);
    /* notBefore ahead: ferry starts with it, but no handshake can pass yet. */
    assert_int_equal(proxy_admin_file_state(true, 1001, 2000, 1000), PROXY_FILE_NOT_YET_VALID);
    assert_int_equal(proxy_admin_file_state(true, 1000, 2000, 1000), PROXY_FILE_OK);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reach_states), cmocka_unit_test(test_reach_ready),
        cmocka_unit_test(test_loop_stalled), cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_bad),    cmocka_unit_test(test_exclude),
        cmocka_unit_test(test_file_state),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
