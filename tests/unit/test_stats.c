/*
 * test_stats: the per-worker counters behind /metrics (proxy/proxy_stats.h): one block per
 * listener name and worker on cache lines of its own, the sum over workers (every field, and
 * exact while workers count), the histogram buckets, and the backend/peer outcome record.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/time.h>

#include <cmocka.h>
#include <event2/event.h>

#include "proxy_stats.h"

#define N_WORDS (sizeof(struct proxy_stats) / sizeof(uint64_t))

static void
test_registry(void **state)
{
    struct proxy_stats_set *s = proxy_stats_set_new(3);
    struct proxy_stats_name *a, *b;

    (void)state;
    assert_non_null(s);
    assert_int_equal(proxy_stats_set_count(s), 0);
    a = proxy_stats_name_get(s, "in");
    b = proxy_stats_name_get(s, "out");
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    /* The same name is the same record: counters survive a reload that keeps the name. */
    assert_ptr_equal(proxy_stats_name_get(s, "in"), a);
    assert_int_equal(proxy_stats_set_count(s), 2);
    assert_ptr_equal(proxy_stats_set_at(s, 0), a);
    assert_ptr_equal(proxy_stats_set_at(s, 1), b);
    assert_string_equal(a->name, "in");
    assert_int_equal(a->n_workers, 3);
    for (size_t w = 0; w < 3; w++) {
        struct proxy_stats *st = proxy_stats_worker(a, w);
        uintptr_t at = (uintptr_t)st;

        /* Each block starts a cache line and ends before the next worker's line. */
        assert_int_equal(at % 64, 0);
        if (w > 0) {
            uintptr_t prev = (uintptr_t)proxy_stats_worker(a, w - 1);

            assert_true(at - prev >= sizeof(struct proxy_stats));
            assert_int_equal((at - prev) % 64, 0);
        }
        assert_ptr_equal(proxy_stats_of(st), a);
        /* Zeroed when made. */
        for (size_t i = 0; i < sizeof(*st); i++) {
            assert_int_equal(((const unsigned char *)st)[i], 0);
        }
    }
    proxy_stats_set_free(s);
    proxy_stats_set_free(NULL);
}

/* Every word of worker w's block holds w + 1: the sum has 1 + 2 + 3 in every field. */
static void
test_sum_every_field(void **state)
{
    struct proxy_stats_set *s = proxy_stats_set_new(3);
    struct proxy_stats_name *n = proxy_stats_name_get(s, "in");
    struct proxy_stats out;
    uint64_t words[N_WORDS];

    (void)state;
    assert_int_equal(sizeof(struct proxy_stats) % sizeof(uint64_t), 0);
    for (size_t w = 0; w < 3; w++) {
        for (size_t i = 0; i < N_WORDS; i++) {
            words[i] = w + 1;
        }
        memcpy(proxy_stats_worker(n, w), words, sizeof(words));
    }
    proxy_stats_sum(n, &out);
    memcpy(words, &out, sizeof(words));
    for (size_t i = 0; i < N_WORDS; i++) {
        if (words[i] != 6) {
            fail_msg("word %zu of struct proxy_stats is %llu, want 6: proxy_stats_sum() misses "
                     "a field",
                     i, (unsigned long long)words[i]);
        }
    }
    proxy_stats_set_free(s);
}

static void
test_bucket(void **state)
{
    const uint64_t *hs = proxy_stats_hs_bounds_us;

    (void)state;
    /* le: a value equal to a bound is in that bound's bucket. */
    assert_int_equal(proxy_stats_bucket(hs, PROXY_HS_BUCKETS, 0), 0);
    assert_int_equal(proxy_stats_bucket(hs, PROXY_HS_BUCKETS, 1000), 0);
    assert_int_equal(proxy_stats_bucket(hs, PROXY_HS_BUCKETS, 1001), 1);
    assert_int_equal(proxy_stats_bucket(hs, PROXY_HS_BUCKETS, 5000000), PROXY_HS_BUCKETS - 1);
    assert_int_equal(proxy_stats_bucket(hs, PROXY_HS_BUCKETS, 5000001), PROXY_HS_BUCKETS);
    assert_int_equal(proxy_stats_bucket(hs, PROXY_HS_BUCKETS, UINT64_MAX), PROXY_HS_BUCKETS);
    /* The bounds ascend (the walk relies on it). */
    for (size_t i = 1; i < PROXY_HS_BUCKETS; i++) {
        assert_true(hs[i] > hs[i - 1]);
    }
    for (size_t i = 1; i < PROXY_REQ_BUCKETS; i++) {
        assert_true(proxy_stats_req_bounds_us[i] > proxy_stats_req_bounds_us[i - 1]);
    }
    assert_int_equal(proxy_stats_req_bounds_us[PROXY_REQ_BUCKETS - 1], 60000000);
}

static void
test_us(void **state)
{
    struct timeval a = {10, 900000}, b = {12, 100000};

    (void)state;
    assert_int_equal(proxy_stats_us(&a, &b), 1200000);
    assert_int_equal(proxy_stats_us(&a, &a), 0);
    /* A clock step backwards is 0, never a huge unsigned value. */
    assert_int_equal(proxy_stats_us(&b, &a), 0);
}

static void
test_handshake(void **state)
{
    struct proxy_stats_set *s = proxy_stats_set_new(2);
    struct proxy_stats_name *n = proxy_stats_name_get(s, "in");
    struct timeval t0 = {100, 0}, t1 = {100, 1000}, t2 = {100, 3000}, t3 = {110, 0};
    struct proxy_stats out;

    (void)state;
    proxy_stats_handshake(proxy_stats_worker(n, 0), &t0, &t1); /* 1 ms: le 0.001 */
    proxy_stats_handshake(proxy_stats_worker(n, 1), &t0, &t2); /* 3 ms: le 0.005 */
    proxy_stats_handshake(proxy_stats_worker(n, 1), &t0, &t3); /* 10 s: +Inf */
    proxy_stats_handshake(proxy_stats_worker(n, 0), &t1, &t0); /* backwards: 0, le 0.001 */
    proxy_stats_sum(n, &out);
    assert_int_equal(out.hs_ok, 4);
    assert_int_equal(out.hs_count, 4);
    assert_int_equal(out.hs_sum_us, 1000 + 3000 + 10000000);
    assert_int_equal(out.hs_hist[0], 2);
    assert_int_equal(out.hs_hist[1], 0);
    assert_int_equal(out.hs_hist[2], 1);
    assert_int_equal(out.hs_hist[PROXY_HS_BUCKETS], 1);
    proxy_stats_set_free(s);
}

static void
test_request(void **state)
{
    struct proxy_stats_set *s = proxy_stats_set_new(1);
    struct proxy_stats_name *n = proxy_stats_name_get(s, "in");
    struct proxy_stats *st = proxy_stats_worker(n, 0);
    struct event_base *base = event_base_new();
    struct timeval now, start;

    (void)state;
    assert_non_null(base);
    event_base_gettimeofday_cached(base, &now);
    start = now;
    start.tv_sec -= 2; /* about 2 s ago: le 2.5 */
    proxy_stats_request(st, base, &start, 200);
    proxy_stats_request(st, base, &start, 599);
    /* Not an HTTP status: not observed. */
    proxy_stats_request(st, base, &start, 0);
    proxy_stats_request(st, base, &start, 99);
    proxy_stats_request(st, base, &start, 600);
    assert_int_equal(st->req_count[2], 1);
    assert_int_equal(st->req_count[5], 1);
    assert_int_equal(st->req_count[0] + st->req_count[1] + st->req_count[3] + st->req_count[4], 0);
    assert_int_equal(st->req_hist[2][8], 1); /* 2.5 s */
    assert_true(st->req_sum_us[2] >= 2000000 && st->req_sum_us[2] < 2500000);
    event_base_free(base);
    proxy_stats_set_free(s);
}

static void
test_upstream(void **state)
{
    struct proxy_stats_set *s = proxy_stats_set_new(2);
    struct proxy_stats_name *n = proxy_stats_name_get(s, "in");
    struct proxy_stats *w0 = proxy_stats_worker(n, 0), *w1 = proxy_stats_worker(n, 1);
    struct proxy_upstream_view v;

    (void)state;
    proxy_stats_upstream_read(n, true, &v);
    assert_int_equal(v.oks, 0);
    assert_int_equal(v.fails, 0);
    assert_false(v.probe_failed);
    assert_string_equal(v.detail, "");
    /* Failures in a row count across workers. */
    proxy_stats_upstream_failed(w0, "connection refused");
    proxy_stats_upstream_failed(w1, "connection refused");
    proxy_stats_upstream_failed(w0, "timed out");
    proxy_stats_upstream_read(n, true, &v);
    assert_int_equal(v.fails, 3);
    assert_string_equal(v.detail, "timed out");
    assert_true(v.last_fail > 0);
    /* without the words: no lock, no detail */
    proxy_stats_upstream_read(n, false, &v);
    assert_string_equal(v.detail, "");
    /* A success in any worker ends the streak. */
    proxy_stats_upstream_ok(w1);
    proxy_stats_upstream_ok(w1);
    proxy_stats_upstream_read(n, false, &v);
    assert_int_equal(v.oks, 2);
    assert_int_equal(v.fails, 0);
    /* A failed probe: down at once; a good probe or connection clears it. */
    proxy_stats_probe_failed(n, "probe: refused");
    proxy_stats_upstream_read(n, true, &v);
    assert_true(v.probe_failed);
    assert_int_equal(v.fails, 1);
    assert_string_equal(v.detail, "probe: refused");
    proxy_stats_probe_ok(n);
    proxy_stats_upstream_read(n, false, &v);
    assert_false(v.probe_failed);
    assert_int_equal(v.fails, 0);
    assert_int_equal(v.oks, 3);
    /* A reload pointing elsewhere forgets everything; later successes count from 0. */
    proxy_stats_upstream_failed(w0, "refused");
    proxy_stats_upstream_reset(n, "inbound 127.0.0.1:1");
    proxy_stats_upstream_read(n, true, &v);
    assert_int_equal(v.oks, 0);
    assert_int_equal(v.fails, 0);
    assert_int_equal(v.last_fail, 0);
    assert_string_equal(v.detail, "");
    assert_string_equal(n->up.target, "inbound 127.0.0.1:1");
    proxy_stats_upstream_ok(w0);
    proxy_stats_upstream_read(n, false, &v);
    assert_int_equal(v.oks, 1);
    /* The worker's own success counter never went back: it is a counter. */
    assert_int_equal(w0->up_oks + w1->up_oks, 3);
    proxy_stats_set_free(s);
}

#define COUNT_PER_WORKER 200000

static void *
count_thread(void *arg)
{
    struct proxy_stats *st = arg;

    for (int i = 0; i < COUNT_PER_WORKER; i++) {
        PROXY_STATS_ADD(st->requests[2], 1);
        PROXY_STATS_ADD(st->bytes_in, 3);
    }
    return NULL;
}

/* Two workers count while the reader sums: reads only grow, and the end is exact. */
static void
test_threads(void **state)
{
    struct proxy_stats_set *s = proxy_stats_set_new(2);
    struct proxy_stats_name *n = proxy_stats_name_get(s, "in");
    pthread_t t[2];
    struct proxy_stats out;
    uint64_t last = 0;

    (void)state;
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, count_thread, proxy_stats_worker(n, i)), 0);
    }
    for (int k = 0; k < 1000; k++) {
        proxy_stats_sum(n, &out);
        assert_true(out.requests[2] >= last);
        assert_true(out.requests[2] <= 2 * COUNT_PER_WORKER);
        last = out.requests[2];
    }
    for (size_t i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
    }
    proxy_stats_sum(n, &out);
    assert_int_equal(out.requests[2], 2 * COUNT_PER_WORKER);
    assert_int_equal(out.bytes_in, 3 * 2 * COUNT_PER_WORKER);
    proxy_stats_set_free(s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry),  cmocka_unit_test(test_sum_every_field),
        cmocka_unit_test(test_bucket),    cmocka_unit_test(test_us),
        cmocka_unit_test(test_handshake), cmocka_unit_test(test_request),
        cmocka_unit_test(test_upstream),  cmocka_unit_test(test_threads),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
