/*
 * proxy_stats: per-worker counters of each listener name, their sum for /metrics, and the
 * backend/peer outcome record (see proxy_stats.h for the threads and the layout).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "proxy_stats.h"

#define STATS_LINE 64 /* a cache line: no two workers' blocks share one */

/* One worker's block, padded to whole cache lines, with its way back to its name. */
union proxy_stats_slot {
    struct {
        struct proxy_stats s; /* first: proxy_stats_of() converts back */
        struct proxy_stats_name *name;
    } b;
    unsigned char line[(sizeof(struct proxy_stats) + sizeof(void *) + STATS_LINE - 1) / STATS_LINE *
                       STATS_LINE];
};

struct proxy_stats_set {
    struct proxy_stats_name **names;
    size_t n;
    size_t n_workers;
};

/* Handshake latency buckets: 1 ms ... 5 s. */
const uint64_t proxy_stats_hs_bounds_us[PROXY_HS_BUCKETS] = {
    1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000};

/* Request duration buckets: Prometheus's defaults, then up to backend_timeout. */
const uint64_t proxy_stats_req_bounds_us[PROXY_REQ_BUCKETS] = {
    5000,    10000,   25000,   50000,    100000,   250000,  500000,
    1000000, 2500000, 5000000, 10000000, 30000000, 60000000};

#define LOAD(x)     __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

/*
 * proxy_stats_set_new(n_workers):
 * An empty set; its names get ${n_workers} blocks each.
 */
struct proxy_stats_set *
proxy_stats_set_new(size_t n_workers)
{
    struct proxy_stats_set *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        return NULL;
    }
    s->n_workers = n_workers > 0 ? n_workers : 1;
    return s;
}

static void
name_free(struct proxy_stats_name *n)
{
    if (n == NULL) {
        return;
    }
    pthread_mutex_destroy(&n->up.mu);
    free(n->slots);
    n->slots = NULL;
    free(n);
}

/*
 * proxy_stats_set_free(s):
 * Every name and its blocks go with ${s}.
 */
void
proxy_stats_set_free(struct proxy_stats_set *s)
{
    if (s == NULL) {
        return;
    }
    for (size_t i = 0; i < s->n; i++) {
        name_free(s->names[i]);
        s->names[i] = NULL;
    }
    free(s->names);
    s->names = NULL;
    free(s);
}

/* proxy_stats_set_count(s): the number of names. */
size_t
proxy_stats_set_count(const struct proxy_stats_set *s)
{
    return s->n;
}

/* proxy_stats_set_at(s, i): the ${i}th name. */
struct proxy_stats_name *
proxy_stats_set_at(const struct proxy_stats_set *s, size_t i)
{
    return s->names[i];
}

/*
 * proxy_stats_name_get(s, name):
 * Find ${name}, or add it with zeroed blocks on their own cache lines (aligned_alloc: the
 * slot size is a multiple of STATS_LINE).
 */
struct proxy_stats_name *
proxy_stats_name_get(struct proxy_stats_set *s, const char *name)
{
    struct proxy_stats_name **v, *n;
    size_t bytes = s->n_workers * sizeof(union proxy_stats_slot);

    for (size_t i = 0; i < s->n; i++) {
        if (strcmp(s->names[i]->name, name) == 0) {
            return s->names[i];
        }
    }
    v = realloc(s->names, (s->n + 1) * sizeof(struct proxy_stats_name *));
    if (v == NULL) {
        return NULL;
    }
    s->names = v;
    n = calloc(1, sizeof(*n));
    if (n == NULL) {
        return NULL;
    }
    n->slots = aligned_alloc(STATS_LINE, bytes);
    if (n->slots == NULL) {
        free(n);
        return NULL;
    }
    memset(n->slots, 0, bytes);
    n->n_workers = s->n_workers;
    for (size_t i = 0; i < n->n_workers; i++) {
        n->slots[i].b.name = n;
    }
    snprintf(n->name, sizeof(n->name), "%s", name);
    pthread_mutex_init(&n->up.mu, NULL);
    n->up.logged = 0; /* PROXY_REACH_UNKNOWN (proxy_admin.h) */
    s->names[s->n++] = n;
    return n;
}

/* proxy_stats_worker(n, worker): worker ${worker}'s block of ${n}. */
struct proxy_stats *
proxy_stats_worker(struct proxy_stats_name *n, size_t worker)
{
    return &n->slots[worker].b.s;
}

/* proxy_stats_of(st): ${st} is the first member of its slot. */
struct proxy_stats_name *
proxy_stats_of(const struct proxy_stats *st)
{
    const union proxy_stats_slot *slot = (const union proxy_stats_slot *)(const void *)st;

    return slot->b.name;
}

/* ${n} counters from ${src} added into ${dst} (relaxed loads: a worker may be counting). */
static void
sum_into(uint64_t *dst, const uint64_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        dst[i] += __atomic_load_n(&src[i], __ATOMIC_RELAXED);
    }
}

#define SUM_FIELD(f) sum_into(&out->f, &w->f, 1)
#define SUM_ARRAY(f) sum_into(out->f, w->f, sizeof(w->f) / sizeof(w->f[0]))

/*
 * proxy_stats_sum(n, out):
 * Field by field, so that a field added to struct proxy_stats and forgotten here is caught by
 * the unit test that fills every byte of each block (test_stats.c).
 */
void
proxy_stats_sum(const struct proxy_stats_name *n, struct proxy_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t k = 0; k < n->n_workers; k++) {
        const struct proxy_stats *w = &n->slots[k].b.s;

        SUM_FIELD(conns_open);
        SUM_FIELD(conns_total);
        SUM_FIELD(hs_ok);
        SUM_ARRAY(hs_failed);
        SUM_ARRAY(hs_rejected);
        SUM_FIELD(bytes_in);
        SUM_FIELD(bytes_out);
        SUM_ARRAY(requests);
        SUM_FIELD(upstream_failures);
        SUM_ARRAY(hs_hist);
        SUM_FIELD(hs_sum_us);
        SUM_FIELD(hs_count);
        SUM_FIELD(pool_reused);
        SUM_FIELD(pool_connects);
        for (size_t c = 0; c < PROXY_REQ_CLASSES; c++) {
            SUM_ARRAY(req_hist[c]);
        }
        SUM_ARRAY(req_sum_us);
        SUM_ARRAY(req_count);
        SUM_FIELD(up_oks);
        SUM_ARRAY(pp);
        SUM_ARRAY(via);
    }
}

/* proxy_stats_bucket(bounds, n, us): a linear walk (12 or 13 bounds). */
size_t
proxy_stats_bucket(const uint64_t *bounds, size_t n, uint64_t us)
{
    size_t b = 0;

    while (b < n && us > bounds[b]) {
        b++;
    }
    return b;
}

/* proxy_stats_us(start, end): clamped at 0. */
uint64_t
proxy_stats_us(const struct timeval *start, const struct timeval *end)
{
    long long us = ((long long)end->tv_sec - (long long)start->tv_sec) * 1000000 +
                   ((long long)end->tv_usec - (long long)start->tv_usec);

    return us < 0 ? 0 : (uint64_t)us;
}

/* proxy_stats_handshake(st, start, now): one bucket, the sum and two counters. */
void
proxy_stats_handshake(struct proxy_stats *st, const struct timeval *start,
                      const struct timeval *now)
{
    uint64_t us = proxy_stats_us(start, now);

    PROXY_STATS_ADD(st->hs_hist[proxy_stats_bucket(proxy_stats_hs_bounds_us, PROXY_HS_BUCKETS, us)],
                    1);
    PROXY_STATS_ADD(st->hs_sum_us, us);
    PROXY_STATS_ADD(st->hs_count, 1);
    PROXY_STATS_ADD(st->hs_ok, 1);
}

/* proxy_stats_request(st, base, start, status): by the loop's cached clock (no syscall). */
void
proxy_stats_request(struct proxy_stats *st, struct event_base *base, const struct timeval *start,
                    int status)
{
    struct timeval now;
    uint64_t us;
    int k;

    if (status < 100 || status > 599) {
        return;
    }
    k = status / 100;
    event_base_gettimeofday_cached(base, &now);
    us = proxy_stats_us(start, &now);
    PROXY_STATS_ADD(
        st->req_hist[k][proxy_stats_bucket(proxy_stats_req_bounds_us, PROXY_REQ_BUCKETS, us)], 1);
    PROXY_STATS_ADD(st->req_sum_us[k], us);
    PROXY_STATS_ADD(st->req_count[k], 1);
}

/*
 * proxy_stats_upstream_ok(st):
 * The success is counted in the worker's own block; the shared record is only read unless a
 * failure streak ends or the second of the last success moved on.
 */
void
proxy_stats_upstream_ok(struct proxy_stats *st)
{
    struct proxy_upstream *up = &proxy_stats_of(st)->up;
    long long now = (long long)time(NULL);

    PROXY_STATS_ADD(st->up_oks, 1);
    if (LOAD(up->fails) != 0) {
        STORE(up->fails, 0);
    }
    if (LOAD(up->probe_failed)) {
        STORE(up->probe_failed, false);
    }
    if (LOAD(up->last_ok) != now) {
        STORE(up->last_ok, now);
    }
}

static void
upstream_failed(struct proxy_upstream *up, const char *detail)
{
    pthread_mutex_lock(&up->mu);
    snprintf(up->detail, sizeof(up->detail), "%s", detail);
    pthread_mutex_unlock(&up->mu);
    STORE(up->last_fail, (long long)time(NULL));
    (void)__atomic_fetch_add(&up->fails, 1, __ATOMIC_RELAXED);
}

/* proxy_stats_upstream_failed(st, detail): shared: failures in a row count across workers. */
void
proxy_stats_upstream_failed(struct proxy_stats *st, const char *detail)
{
    upstream_failed(&proxy_stats_of(st)->up, detail);
}

/* proxy_stats_probe_ok(n): like a worker's success, counted in the record. */
void
proxy_stats_probe_ok(struct proxy_stats_name *n)
{
    struct proxy_upstream *up = &n->up;

    STORE(up->probe_oks, LOAD(up->probe_oks) + 1);
    STORE(up->fails, 0);
    STORE(up->probe_failed, false);
    STORE(up->last_ok, (long long)time(NULL));
}

/* proxy_stats_probe_failed(n, detail): a failed probe says down at once (proxy_admin_reach_of). */
void
proxy_stats_probe_failed(struct proxy_stats_name *n, const char *detail)
{
    upstream_failed(&n->up, detail);
    STORE(n->up.probe_failed, true);
}

/* Every success of ${n} ever: the workers' and the probes'. */
static uint64_t
upstream_oks_ever(const struct proxy_stats_name *n)
{
    uint64_t oks = LOAD(n->up.probe_oks);

    for (size_t k = 0; k < n->n_workers; k++) {
        oks += LOAD(n->slots[k].b.s.up_oks);
    }
    return oks;
}

/*
 * proxy_stats_upstream_reset(n, target):
 * The workers' success counters are theirs to write, so the successes so far become the base
 * that proxy_stats_upstream_read() subtracts.
 */
void
proxy_stats_upstream_reset(struct proxy_stats_name *n, const char *target)
{
    struct proxy_upstream *up = &n->up;

    pthread_mutex_lock(&up->mu);
    up->detail[0] = '\0';
    pthread_mutex_unlock(&up->mu);
    up->oks_base = upstream_oks_ever(n);
    STORE(up->fails, 0);
    STORE(up->probe_failed, false);
    STORE(up->last_ok, 0);
    STORE(up->last_fail, 0);
    snprintf(up->target, sizeof(up->target), "%s", target);
    up->logged = 0; /* PROXY_REACH_UNKNOWN */
}

/* proxy_stats_upstream_read(n, with_detail, out): a copy for the admin endpoint. */
void
proxy_stats_upstream_read(struct proxy_stats_name *n, bool with_detail,
                          struct proxy_upstream_view *out)
{
    struct proxy_upstream *up = &n->up;
    uint64_t ever = upstream_oks_ever(n);

    out->oks = ever > up->oks_base ? ever - up->oks_base : 0;
    out->fails = LOAD(up->fails);
    out->probe_failed = LOAD(up->probe_failed);
    out->last_fail = LOAD(up->last_fail);
    out->detail[0] = '\0';
    if (with_detail) {
        pthread_mutex_lock(&up->mu);
        memcpy(out->detail, up->detail, sizeof(out->detail));
        pthread_mutex_unlock(&up->mu);
    }
}

/* proxy_stats_clock_ms(): CLOCK_MONOTONIC in milliseconds. */
long long
proxy_stats_clock_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
