/*
 * proxy_spare: a worker's spare objects of one kind (struct proxy_conn, struct proxy_io),
 * kept when they end and handed out again zeroed, so that a busy worker does not go to malloc
 * for every connection.  At most PROXY_SPARE_MAX are kept; the rest are freed.  A list belongs
 * to one worker's thread and takes no lock.
 *
 * A spare object is poisoned for AddressSanitizer and made inaccessible for valgrind memcheck
 * while it waits (apart from its link), so a use after "free" is still reported.
 */
#ifndef FERRY_PROXY_SPARE_H
#define FERRY_PROXY_SPARE_H

#include <stddef.h>

/* The most spare objects of one kind a worker keeps (a burst of closes beyond it frees). */
#define PROXY_SPARE_MAX 256

/*
 * The spare objects of one size: a stack linked through each object's first pointer.  All
 * zero (as in a calloc'd worker) is an empty list.
 */
struct proxy_spare {
    void *head;
    unsigned n;
    size_t size; /* of each object (set by the first proxy_spare_get) */
};

/*
 * proxy_spare_get(s, size):
 * An object of ${size} bytes (at least sizeof(void *); the same size on every call for one
 * list), all zero bytes as calloc() gives: a spare one, or a new one.  NULL on OOM.  The
 * caller owns it until proxy_spare_put().
 */
void *proxy_spare_get(struct proxy_spare *s, size_t size);

/*
 * proxy_spare_put(s, obj):
 * ${obj} (from proxy_spare_get(${s}), or NULL: a no-op) has ended: kept for the next get, or
 * freed when ${s} holds PROXY_SPARE_MAX already.  The caller must not touch it any more.
 */
void proxy_spare_put(struct proxy_spare *s, void *obj);

/*
 * proxy_spare_clear(s):
 * Free every spare object of ${s} (the worker ends); ${s} stays usable and empty.
 */
void proxy_spare_clear(struct proxy_spare *s);

#endif /* FERRY_PROXY_SPARE_H */
