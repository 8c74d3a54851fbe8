/*
 * test_worker: which worker serves a new connection (proxy_worker_pick, balanced accepts).
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "proxy_internal.h"

static void
test_pick_keeps_when_balanced(void **state)
{
    unsigned even[] = {10, 10, 10, 10};
    unsigned one_more[] = {11, 10};
    unsigned one[] = {7};

    (void)state;
    assert_int_equal(proxy_worker_pick(even, 4, 2), 2);
    /* One more than the other is within PROXY_BALANCE_SLACK: keep it. */
    assert_int_equal(proxy_worker_pick(one_more, 2, 0), 0);
    assert_int_equal(proxy_worker_pick(one_more, 2, 1), 1);
    assert_int_equal(proxy_worker_pick(one, 1, 0), 0);
}

static void
test_pick_hands_to_least_loaded(void **state)
{
    unsigned two_more[] = {12, 10};
    unsigned four[] = {9, 30, 4, 4};
    unsigned idle_self[] = {0, 5, 5};

    (void)state;
    assert_int_equal(proxy_worker_pick(two_more, 2, 0), 1);
    /* The least loaded; the first of equals. */
    assert_int_equal(proxy_worker_pick(four, 4, 1), 2);
    assert_int_equal(proxy_worker_pick(four, 4, 0), 2);
    /* Never away from the least loaded worker. */
    assert_int_equal(proxy_worker_pick(idle_self, 3, 0), 0);
}

static void
test_pick_skips_stopped_workers(void **state)
{
    unsigned stopped[] = {20, UINT_MAX, 19};
    unsigned all_stopped[] = {UINT_MAX, 20, UINT_MAX};

    (void)state;
    /* A stopped worker (UINT_MAX) never takes one; 19 is within the slack of 20. */
    assert_int_equal(proxy_worker_pick(stopped, 3, 0), 0);
    assert_int_equal(proxy_worker_pick(all_stopped, 3, 1), 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pick_keeps_when_balanced),
        cmocka_unit_test(test_pick_hands_to_least_loaded),
        cmocka_unit_test(test_pick_skips_stopped_workers),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
