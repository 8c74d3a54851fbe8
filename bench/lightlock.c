/*
 * lightlock.c: an LD_PRELOAD shim for bench/handshake-profile.sh --lightlock, NOT part of
 * ferry.  It replaces glibc's pthread_rwlock_* (which OpenSSL 3.0's CRYPTO_THREAD_*_lock
 * call, about 5,500 times per full handshake) with a small reader-writer spinlock: one atomic
 * int per lock (-1: a writer, n >= 0: n readers), spinning with a CPU pause and yielding after
 * a while.  This is the idea of HAProxy's "lighter locks" for OpenSSL (its own rwlocks in
 * place of pthread's), to measure what lighter locks would save on our workload.  No writer
 * preference, no error checks, no timed or attribute variants: a measuring tool only.
 *
 * Build: cc -O2 -shared -fPIC -o lightlock.so bench/lightlock.c
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

_Static_assert(sizeof(pthread_rwlock_t) >= sizeof(atomic_int), "pthread_rwlock_t too small");

static atomic_int *
state(pthread_rwlock_t *l)
{
    return (atomic_int *)(void *)l;
}

static void
relax(unsigned *spins)
{
    if (++*spins < 64) {
        __builtin_ia32_pause();
    } else {
        *spins = 0;
        (void)sched_yield();
    }
}

int
pthread_rwlock_init(pthread_rwlock_t *l, const pthread_rwlockattr_t *attr)
{
    (void)attr;
    atomic_store_explicit(state(l), 0, memory_order_relaxed);
    return 0;
}

int
pthread_rwlock_destroy(pthread_rwlock_t *l)
{
    (void)l;
    return 0;
}

int
pthread_rwlock_tryrdlock(pthread_rwlock_t *l)
{
    int v = atomic_load_explicit(state(l), memory_order_relaxed);

    while (v >= 0) {
        if (atomic_compare_exchange_weak_explicit(state(l), &v, v + 1, memory_order_acquire,
                                                  memory_order_relaxed)) {
            return 0;
        }
    }
    return 16; /* EBUSY */
}

int
pthread_rwlock_rdlock(pthread_rwlock_t *l)
{
    unsigned spins = 0;

    while (pthread_rwlock_tryrdlock(l) != 0) {
        relax(&spins);
    }
    return 0;
}

int
pthread_rwlock_trywrlock(pthread_rwlock_t *l)
{
    int v = 0;

    return atomic_compare_exchange_strong_explicit(state(l), &v, -1, memory_order_acquire,
                                                   memory_order_relaxed)
               ? 0
               : 16;
}

int
pthread_rwlock_wrlock(pthread_rwlock_t *l)
{
    unsigned spins = 0;

    while (pthread_rwlock_trywrlock(l) != 0) {
        relax(&spins);
    }
    return 0;
}

int
pthread_rwlock_unlock(pthread_rwlock_t *l)
{
    if (atomic_load_explicit(state(l), memory_order_relaxed) == -1) {
        atomic_store_explicit(state(l), 0, memory_order_release);
    } else {
        atomic_fetch_sub_explicit(state(l), 1, memory_order_release);
    }
    return 0;
}
