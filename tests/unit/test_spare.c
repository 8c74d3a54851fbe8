/*
 * test_spare: the per-worker free lists of proxy/proxy_spare.h: objects come back zeroed as
 * calloc() gives them, the newest spare first, at most PROXY_SPARE_MAX are kept, and clearing
 * frees them all (valgrind/ASan runs of this test find a leak or a double free).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proxy_spare.h"

struct thing {
    uint32_t magic;
    char text[300];
    uint64_t n;
};

static void
assert_zero(const void *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(((const unsigned char *)p)[i], 0);
    }
}

static void
test_reuse_zeroed(void **state)
{
    struct proxy_spare s = {0};
    struct thing *a, *b, *c;

    (void)state;
    a = proxy_spare_get(&s, sizeof(*a));
    assert_non_null(a);
    assert_zero(a, sizeof(*a));
    b = proxy_spare_get(&s, sizeof(*b));
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    /* Dirty them all over, as a connection does. */
    memset(a, 0xa5, sizeof(*a));
    memset(b, 0x5a, sizeof(*b));
    proxy_spare_put(&s, a);
    proxy_spare_put(&s, b);
    assert_int_equal(s.n, 2);
    /* The newest spare first, cleared as calloc would. */
    c = proxy_spare_get(&s, sizeof(*c));
    assert_ptr_equal(c, b);
    assert_zero(c, sizeof(*c));
    c = proxy_spare_get(&s, sizeof(*c));
    assert_ptr_equal(c, a);
    assert_zero(c, sizeof(*c));
    assert_int_equal(s.n, 0);
    assert_null(s.head);
    proxy_spare_put(&s, NULL); /* a no-op */
    assert_int_equal(s.n, 0);
    proxy_spare_put(&s, a);
    proxy_spare_put(&s, b);
    proxy_spare_clear(&s);
    assert_int_equal(s.n, 0);
    assert_null(s.head);
    /* Still usable after clearing. */
    a = proxy_spare_get(&s, sizeof(*a));
    assert_non_null(a);
    proxy_spare_put(&s, a);
    proxy_spare_clear(&s);
}

/* A burst of closes beyond the cap frees the surplus rather than keeping it. */
static void
test_cap(void **state)
{
    enum { N = PROXY_SPARE_MAX + 10 };
    static struct thing *v[N];
    struct proxy_spare s = {0};

    (void)state;
    for (size_t i = 0; i < N; i++) {
        v[i] = proxy_spare_get(&s, sizeof(*v[i]));
        assert_non_null(v[i]);
    }
    for (size_t i = 0; i < N; i++) {
        proxy_spare_put(&s, v[i]);
        assert_true(s.n <= PROXY_SPARE_MAX);
    }
    assert_int_equal(s.n, PROXY_SPARE_MAX);
    /* The kept ones are the first PROXY_SPARE_MAX put, newest first. */
    assert_ptr_equal(proxy_spare_get(&s, sizeof(struct thing)), v[PROXY_SPARE_MAX - 1]);
    proxy_spare_put(&s, v[PROXY_SPARE_MAX - 1]);
    proxy_spare_clear(&s);
    assert_int_equal(s.n, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reuse_zeroed),
        cmocka_unit_test(test_cap),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
