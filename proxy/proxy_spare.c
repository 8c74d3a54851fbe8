/*
 * proxy_spare: per-worker free lists (see proxy_spare.h).
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_spare.h"

/*
 * Tell AddressSanitizer and valgrind that a spare object's bytes past its link are not to be
 * used (the link stays readable: the list walks it).
 */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define SPARE_HIDE(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define SPARE_SHOW(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#elif defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define SPARE_HIDE(p, n) (void)VALGRIND_MAKE_MEM_NOACCESS((p), (n))
#define SPARE_SHOW(p, n) (void)VALGRIND_MAKE_MEM_UNDEFINED((p), (n))
#endif
#endif
#ifndef SPARE_HIDE
#define SPARE_HIDE(p, n) ((void)(p), (void)(n))
#define SPARE_SHOW(p, n) ((void)(p), (void)(n))
#endif

/* The link of spare object ${obj}: its first bytes. */
static void *
spare_next(void *obj)
{
    void *next;

    memcpy(&next, obj, sizeof(next));
    return next;
}

/*
 * proxy_spare_get(s, size):
 * The newest spare object (the one most likely still in cache), cleared as calloc() would;
 * else calloc().
 */
void *
proxy_spare_get(struct proxy_spare *s, size_t size)
{
    void *obj = s->head;

    assert(size >= sizeof(void *) && (s->size == 0 || s->size == size));
    s->size = size;
    if (obj == NULL) {
        return calloc(1, size);
    }
    s->head = spare_next(obj);
    s->n--;
    SPARE_SHOW((char *)obj + sizeof(void *), s->size - sizeof(void *));
    memset(obj, 0, s->size);
    return obj;
}

/* proxy_spare_put(s, obj): on top of the stack, or freed beyond PROXY_SPARE_MAX. */
void
proxy_spare_put(struct proxy_spare *s, void *obj)
{
    if (obj == NULL) {
        return;
    }
    if (s->n >= PROXY_SPARE_MAX) {
        free(obj);
        return;
    }
    memcpy(obj, &s->head, sizeof(s->head));
    SPARE_HIDE((char *)obj + sizeof(void *), s->size - sizeof(void *));
    s->head = obj;
    s->n++;
}

/* proxy_spare_clear(s): free them all. */
void
proxy_spare_clear(struct proxy_spare *s)
{
    while (s->head != NULL) {
        void *obj = s->head;

        s->head = spare_next(obj);
        SPARE_SHOW((char *)obj + sizeof(void *), s->size - sizeof(void *));
        free(obj);
    }
    s->n = 0;
}
