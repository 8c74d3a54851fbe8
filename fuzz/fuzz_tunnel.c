/*
 * fuzz_tunnel: libFuzzer target for the reader of an egress proxy's answer to CONNECT
 * (tls_tunnel_answer(), tls/tls_tunnel.c), the bytes a proxy (or whatever answers on its port)
 * sends before the tunnel opens.
 *
 * Input: the answer.  It is read whole and cut at every length below, each copy ending where
 * its heap buffer ends (ASan sees a read past n).  Checked besides crashes and UB:
 *   - the answer never changes as bytes arrive: once a prefix gets a result other than
 *     NEED_MORE, every longer input gets the same result, status and head length;
 *   - NEED_MORE only below TLS_TUNNEL_HEAD_MAX bytes; a head length only for a result other
 *     than NEED_MORE and BAD, never more than n, and ending in LF; a status of 100..999 with
 *     it, 2xx exactly for OK;
 *   - the reason is printable ASCII only.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fz_answer {
    enum tls_tunnel_result r;
    size_t head;
    int status;
};

static void
fz_fail(const char *what, size_t n)
{
    fprintf(stderr, "fuzz_tunnel: %s (input of %zu bytes)\n", what, n);
    abort();
}

/* Read ${n} bytes of ${d} from a heap copy of exactly that size; check one answer. */
static struct fz_answer
fz_read(const uint8_t *d, size_t n)
{
    char *copy = malloc(n > 0 ? n : 1), why[160];
    struct fz_answer a;

    if (copy == NULL) {
        fz_fail("out of memory", n);
    }
    memcpy(copy, d, n);
    a.r = tls_tunnel_answer(copy, n, &a.head, &a.status, why, sizeof(why));
    for (const char *p = why; *p != '\0'; p++) {
        if (*p < 0x20 || *p > 0x7e) {
            fz_fail("a reason byte is not printable", n);
        }
    }
    if (a.r == TLS_TUNNEL_NEED_MORE && n >= TLS_TUNNEL_HEAD_MAX) {
        fz_fail("NEED_MORE at the head limit", n);
    }
    if (a.r != TLS_TUNNEL_NEED_MORE && a.r != TLS_TUNNEL_BAD) {
        if (a.head == 0 || a.head > n || copy[a.head - 1] != '\n') {
            fz_fail("a head length that does not end a head", n);
        }
        if (a.status < 100 || a.status > 999 ||
            (a.r == TLS_TUNNEL_OK) != (a.status >= 200 && a.status <= 299)) {
            fz_fail("a status that does not match the result", n);
        }
    }
    free(copy);
    return a;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz_answer whole = fz_read(data, size), first = {TLS_TUNNEL_NEED_MORE, 0, 0};
    size_t n;

    /* The first decided prefix decides the whole answer. */
    for (n = 0; n <= size; n++) {
        first = n == size ? whole : fz_read(data, n);
        if (first.r != TLS_TUNNEL_NEED_MORE) {
            break;
        }
    }
    if (first.r != whole.r || first.head != whole.head || first.status != whole.status) {
        fz_fail("a longer answer changed what a shorter one decided", size);
    }
    return 0;
}
