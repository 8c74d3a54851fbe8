/*
 * proxy_stats: the counters behind /metrics and the backend/peer outcome record behind
 * /readyz, kept per worker so that counting takes no lock and shares no cache line.
 *
 * Each listener name ever configured has one struct proxy_stats_name (made by the control
 * thread, kept across reloads: Prometheus counters never reset) holding one struct proxy_stats
 * per worker, each on cache lines of its own.  A worker's copy of a listener points at its own
 * block (proxy_listener.stats) and only that worker writes it: plain loads and stores with
 * relaxed atomics (PROXY_STATS_ADD), no read-modify-write instruction, so the admin endpoint
 * (control thread) can read while the worker counts.  The reader, proxy_stats_sum(), adds the
 * blocks of every worker for one name.
 *
 * The outcome record (struct proxy_upstream) is shared by the workers of a name: it orders
 * "failed attempts in a row" across workers.  Its success path writes only when something
 * changes (a failure streak ends, or the second of the last success), so a healthy backend
 * costs each connection one counter of its own worker and a few reads.
 *
 * Threads: proxy_stats_set_* and proxy_stats_name_get(): control thread.  Counting and
 * proxy_stats_upstream_ok/_failed: the worker owning the block.  proxy_stats_sum() and
 * proxy_stats_upstream_read(): any thread (the admin endpoint).
 */
#ifndef FERRY_PROXY_STATS_H
#define FERRY_PROXY_STATS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#include <event2/event.h>

#include "proxy_internal.h"
#include "tls.h"

/* ferry_handshake_duration_seconds: finite buckets (upper bounds, proxy_stats_hs_bounds_us). */
#define PROXY_HS_BUCKETS 12

/* ferry_request_duration_seconds: finite buckets and status classes (index 1..5 = 1xx..5xx). */
#define PROXY_REQ_BUCKETS 13
#define PROXY_REQ_CLASSES 6

/* Upper bounds of the buckets, in microseconds (the last bucket, +Inf, has none). */
extern const uint64_t proxy_stats_hs_bounds_us[PROXY_HS_BUCKETS];
extern const uint64_t proxy_stats_req_bounds_us[PROXY_REQ_BUCKETS];

/*
 * Add ${n} to counter ${x} of the calling worker's own block: a relaxed load and store (no
 * lock prefix; readers on other threads see whole values).  Only the owning worker may use it.
 */
#define PROXY_STATS_ADD(x, n) \
    __atomic_store_n(&(x), __atomic_load_n(&(x), __ATOMIC_RELAXED) + (n), __ATOMIC_RELAXED)
#define PROXY_STATS_SUB(x, n) \
    __atomic_store_n(&(x), __atomic_load_n(&(x), __ATOMIC_RELAXED) - (n), __ATOMIC_RELAXED)

/*
 * The counters of one listener name in one worker (or, from proxy_stats_sum(), in all of
 * them).  Every field is a uint64_t counter; conns_open is a gauge that a connection raises
 * and lowers in the worker that accepted it.
 */
struct proxy_stats {
    uint64_t conns_open;
    uint64_t conns_total;
    uint64_t hs_ok;
    uint64_t hs_failed[PROXY_CLOSE__COUNT]; /* by close reason (handshake kinds only) */
    uint64_t hs_rejected[TLS_REJECT__COUNT];
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t requests[PROXY_REQ_CLASSES]; /* [1] = 1xx ... [5] = 5xx */
    uint64_t upstream_failures;
    uint64_t hs_hist[PROXY_HS_BUCKETS + 1]; /* count per bucket (not cumulative), +Inf last */
    uint64_t hs_sum_us;                     /* sum of handshake durations, microseconds */
    uint64_t hs_count;
    uint64_t pool_reused;   /* http: pooled peer or backend connections lent to a request */
    uint64_t pool_connects; /* http, pool on: new connections made to the peer or backend */
    /* protocol http: request durations by status class, as ferry_request_duration_seconds */
    uint64_t req_hist[PROXY_REQ_CLASSES][PROXY_REQ_BUCKETS + 1]; /* per bucket, +Inf last */
    uint64_t req_sum_us[PROXY_REQ_CLASSES];
    uint64_t req_count[PROXY_REQ_CLASSES];
    uint64_t pp[PROXY_PPO__COUNT];  /* proxy_protocol.accept: outcomes of the header */
    uint64_t via[PROXY_VIA__COUNT]; /* via: outcomes of CONNECT to the egress proxy */
    uint64_t up_oks; /* successful connects / verified peer handshakes (proxy_stats_upstream_ok) */
};

/*
 * Reachability of a listener's backend (inbound) or peer (outbound), for /readyz and
 * ferry_backend_up / ferry_peer_up: workers record the outcome of their connects and peer
 * handshakes, the control thread its probes.  fails, probe_failed, last_ok and last_fail are
 * relaxed atomics; detail is under ${mu}; the successes are counted per worker (up_oks).
 */
struct proxy_upstream {
    unsigned fails;      /* failed attempts since the last success */
    bool probe_failed;   /* the last probe failed and nothing succeeded since */
    long long last_ok;   /* Unix time of the last success; 0 = never */
    long long last_fail; /* Unix time of the last failure; 0 = never */
    pthread_mutex_t mu;  /* guards detail */
    char detail[384];    /* the last failure in words */
    /* control thread only */
    uint64_t probe_oks; /* successful probes (atomic: read with the workers' up_oks) */
    uint64_t oks_base;  /* successes before the last proxy_stats_upstream_reset() */
    char target[CONFIG_ADDR_STR_MAX]; /* what the outcomes are about */
    int logged;                       /* the admin's last logged state (enum proxy_reach) */
};

/* One listener name ever configured: its name, shared record and one block per worker. */
struct proxy_stats_name {
    char name[64];
    unsigned workers_down; /* workers whose copy of the listener could not start (atomic) */
    struct proxy_upstream up;
    size_t n_workers;
    union proxy_stats_slot *slots; /* n_workers blocks, cache-line aligned (proxy_stats.c) */
};

/* All listener names ever configured (struct proxy owns it). */
struct proxy_stats_set;

/*
 * proxy_stats_set_new(n_workers):
 * An empty set whose names will each have ${n_workers} blocks; NULL on OOM.
 */
struct proxy_stats_set *proxy_stats_set_new(size_t n_workers);

/*
 * proxy_stats_set_free(s):
 * Free ${s} and every name in it; NULL is a no-op.  No worker may count any more.
 */
void proxy_stats_set_free(struct proxy_stats_set *s);

/* proxy_stats_set_count(s): how many names ${s} holds (control thread). */
size_t proxy_stats_set_count(const struct proxy_stats_set *s);

/* proxy_stats_set_at(s, i): the ${i}th name of ${s}, in the order they were first seen. */
struct proxy_stats_name *proxy_stats_set_at(const struct proxy_stats_set *s, size_t i);

/*
 * proxy_stats_name_get(s, name):
 * The record of listener ${name} in ${s}, made (zeroed) on first use; NULL on OOM.  Control
 * thread only; the record lives as long as ${s}.
 */
struct proxy_stats_name *proxy_stats_name_get(struct proxy_stats_set *s, const char *name);

/*
 * proxy_stats_worker(n, worker):
 * The block of ${n} that worker ${worker} (< n_workers) counts into.  Its ${name} back
 * pointer is proxy_stats_of().
 */
struct proxy_stats *proxy_stats_worker(struct proxy_stats_name *n, size_t worker);

/* proxy_stats_of(st): the name record that block ${st} belongs to. */
struct proxy_stats_name *proxy_stats_of(const struct proxy_stats *st);

/*
 * proxy_stats_sum(n, out):
 * Fill ${out} with the sum over every worker of ${n}'s counters (relaxed loads: each value is
 * whole, the set is not one instant).  Any thread.
 */
void proxy_stats_sum(const struct proxy_stats_name *n, struct proxy_stats *out);

/*
 * proxy_stats_bucket(bounds, n, us):
 * The index of the first of the ${n} upper bounds ${bounds} (ascending, microseconds) that
 * ${us} does not exceed, or ${n} (+Inf).
 */
size_t proxy_stats_bucket(const uint64_t *bounds, size_t n, uint64_t us);

/*
 * proxy_stats_us(start, end):
 * Microseconds from ${start} to ${end}; 0 when ${end} is earlier.
 */
uint64_t proxy_stats_us(const struct timeval *start, const struct timeval *end);

/*
 * proxy_stats_handshake(st, start, now):
 * Count one successful handshake that took ${now} - ${start} in ${st}.
 */
void proxy_stats_handshake(struct proxy_stats *st, const struct timeval *start,
                           const struct timeval *now);

/*
 * proxy_stats_request(st, base, start, status):
 * One request got its access-log line with ${status} (outside 100..599, e.g. 0 when it got
 * none, it is not observed): observe its duration since ${start} (by ${base}'s cached clock)
 * in ferry_request_duration_seconds under its status class.
 */
void proxy_stats_request(struct proxy_stats *st, struct event_base *base,
                         const struct timeval *start, int status);

/*
 * proxy_stats_upstream_ok(st):
 * The backend (inbound) accepted a connection, or the peer (outbound) completed a verified
 * handshake and answered: it is up.  Worker owning ${st}.
 */
void proxy_stats_upstream_ok(struct proxy_stats *st);

/*
 * proxy_stats_upstream_failed(st, detail):
 * A connect to the backend, or a connect or handshake with the peer, failed with ${detail} in
 * words.  Worker owning ${st}.
 */
void proxy_stats_upstream_failed(struct proxy_stats *st, const char *detail);

/*
 * proxy_stats_probe_ok(n), proxy_stats_probe_failed(n, detail):
 * A probe of ${n}'s backend succeeded, or failed with ${detail} (down at once).  Control
 * thread.
 */
void proxy_stats_probe_ok(struct proxy_stats_name *n);
void proxy_stats_probe_failed(struct proxy_stats_name *n, const char *detail);

/*
 * proxy_stats_upstream_reset(n, target):
 * Forget what is known about ${n}'s backend or peer and note that it is now ${target} (a
 * reload pointed the listener elsewhere).  Control thread.
 */
void proxy_stats_upstream_reset(struct proxy_stats_name *n, const char *target);

/* A copy of an outcome record (proxy_stats_upstream_read). */
struct proxy_upstream_view {
    uint64_t oks;        /* successes since the last reset: workers' connections and probes */
    unsigned fails;      /* failed attempts since the last success */
    bool probe_failed;   /* the last probe failed and nothing succeeded since */
    long long last_fail; /* Unix time of the last failure; 0 = never */
    char detail[384];    /* the last failure in words; "" when ${with_detail} was false */
};

/*
 * proxy_stats_upstream_read(n, with_detail, out):
 * Copy ${n}'s outcome record into ${out}, the words of the last failure only when
 * ${with_detail} (they take the record's mutex).  Control thread (oks_base).
 */
void proxy_stats_upstream_read(struct proxy_stats_name *n, bool with_detail,
                               struct proxy_upstream_view *out);

/*
 * proxy_stats_clock_ms():
 * Monotonic milliseconds (heartbeats, lingering sockets, /livez; any thread).
 */
long long proxy_stats_clock_ms(void);

#endif /* FERRY_PROXY_STATS_H */
