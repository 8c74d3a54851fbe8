/*
 * bench/malloc_count.c: an LD_PRELOAD shim that counts malloc, calloc, realloc and free calls
 * (and aligned allocations) of a process by size class, for bench/pair-counts.sh --tools malloc
 * (issue 14).  Load-independent: a count, not a time.
 *
 *   cc -O2 -shared -fPIC -o malloc_count.so bench/malloc_count.c -ldl
 *   MALLOC_COUNT_OUT=/tmp/mc LD_PRELOAD=./malloc_count.so PROGRAM ...
 *
 * At exit (a destructor: the program must exit through exit() or a return from main) it writes
 * $MALLOC_COUNT_OUT.PID, one "key value" a line:
 *   malloc calloc realloc memalign free          calls (free: of non-NULL pointers)
 *   size_lt64 size_lt256 size_lt1k size_lt4k size_lt16k size_ge16k
 *                                                 new blocks (malloc/calloc/memalign,
 * realloc(NULL)) by size big.OBJECT                                    allocations of 16000 bytes
 * or more, by the first caller frame outside libc, libcrypto and this shim (libssl: OpenSSL's
 * record buffers; the program's own name: its buffers) bigfree frees of blocks of 16000 bytes or
 * more (malloc_usable_size) Every counter is updated atomically (any thread).  The big.*
 * attribution takes a backtrace, only for the (rare) big blocks.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

enum {
    C_MALLOC,
    C_CALLOC,
    C_REALLOC,
    C_MEMALIGN,
    C_FREE,
    C_BIGFREE,
    C_S64,
    C_S256,
    C_S1K,
    C_S4K,
    C_S16K,
    C_SBIG,
    C_N
};
static const char *names[C_N] = {"malloc",    "calloc",    "realloc",    "memalign",
                                 "free",      "bigfree",   "size_lt64",  "size_lt256",
                                 "size_lt1k", "size_lt4k", "size_lt16k", "size_ge16k"};
static unsigned long counts[C_N];

#define BIG  16000
#define NOBJ 16
static char obj_name[NOBJ][64];
static unsigned long obj_count[NOBJ];
static int obj_lock;
static __thread int in_shim;

static void
add(int i)
{
    __atomic_add_fetch(&counts[i], 1, __ATOMIC_RELAXED);
}

static int
skip_object(const char *path)
{
    return strstr(path, "libc.so") != NULL || strstr(path, "libcrypto") != NULL ||
           strstr(path, "malloc_count") != NULL || strstr(path, "vgpreload") != NULL;
}

static void
big_caller(void)
{
    void *frames[24];
    const char *who = "?";
    const char *base;
    int n, i;
    Dl_info info;

    if (in_shim) {
        return;
    }
    in_shim = 1;
    n = backtrace(frames, 24);
    for (i = 1; i < n; i++) {
        if (dladdr(frames[i], &info) != 0 && info.dli_fname != NULL &&
            !skip_object(info.dli_fname)) {
            who = info.dli_fname;
            break;
        }
    }
    base = strrchr(who, '/');
    base = base != NULL ? base + 1 : who;
    while (__atomic_exchange_n(&obj_lock, 1, __ATOMIC_ACQUIRE) != 0) {
    }
    for (i = 0; i < NOBJ; i++) {
        if (obj_name[i][0] == '\0') {
            snprintf(obj_name[i], sizeof(obj_name[i]), "%s", base);
        }
        if (strcmp(obj_name[i], base) == 0) {
            obj_count[i]++;
            break;
        }
    }
    __atomic_store_n(&obj_lock, 0, __ATOMIC_RELEASE);
    in_shim = 0;
}

static void
size_class(size_t n)
{
    if (n < 64) {
        add(C_S64);
    } else if (n < 256) {
        add(C_S256);
    } else if (n < 1024) {
        add(C_S1K);
    } else if (n < 4096) {
        add(C_S4K);
    } else if (n < BIG) {
        add(C_S16K);
    } else {
        add(C_SBIG);
        big_caller();
    }
}

void *
malloc(size_t n)
{
    add(C_MALLOC);
    size_class(n);
    return __libc_malloc(n);
}

void *
calloc(size_t a, size_t b)
{
    add(C_CALLOC);
    size_class(a * b);
    return __libc_calloc(a, b);
}

void *
realloc(void *p, size_t n)
{
    add(C_REALLOC);
    if (p == NULL) {
        size_class(n); /* a new block; growing an old one is counted as a realloc call only */
    }
    return __libc_realloc(p, n);
}

void *
memalign(size_t al, size_t n)
{
    add(C_MEMALIGN);
    size_class(n);
    return __libc_memalign(al, n);
}

void *
aligned_alloc(size_t al, size_t n)
{
    return memalign(al, n);
}

int
posix_memalign(void **out, size_t al, size_t n)
{
    void *p = memalign(al, n);
    if (p == NULL) {
        return 12;
    }
    *out = p;
    return 0;
}

void
free(void *p)
{
    if (p != NULL) {
        add(C_FREE);
        if (malloc_usable_size(p) >= BIG) {
            add(C_BIGFREE);
        }
    }
    __libc_free(p);
}

__attribute__((destructor)) static void
dump(void)
{
    const char *out = getenv("MALLOC_COUNT_OUT");
    char path[512];
    FILE *f;
    int i;

    if (out == NULL) {
        return;
    }
    snprintf(path, sizeof(path), "%s.%d", out, (int)getpid());
    in_shim = 1;
    f = fopen(path, "w");
    if (f == NULL) {
        return;
    }
    for (i = 0; i < C_N; i++) {
        fprintf(f, "%s %lu\n", names[i], counts[i]);
    }
    for (i = 0; i < NOBJ && obj_name[i][0] != '\0'; i++) {
        fprintf(f, "big.%s %lu\n", obj_name[i], obj_count[i]);
    }
    fclose(f);
}
