/*
 * proxy_linger: the lingering close of a client socket whose connection is over (nginx
 * lingering_close, Apache httpd's lingering close).
 *
 * Closing a TCP socket with unread bytes in its receive buffer makes the kernel send RST
 * instead of FIN, and a RST makes the other kernel throw away what it had received but the
 * application had not yet read.  Under TLS 1.3 a client finishes its handshake before the
 * server has judged its certificate and sends its request at once; when the server refuses
 * the certificate, its fatal alert (bad_certificate) and the client's request cross, and a
 * plain close() would reset the connection and destroy the alert that says why.  So: send
 * FIN after our last bytes (shutdown SHUT_WR), read and drop what the client still sends until
 * it closes, PROXY_LINGER_BYTES were dropped or the time given passed, then close.
 *
 * Bounded: at most PROXY_LINGER_MAX sockets per worker linger (over that, close at once), each
 * for at most the time given (the caller passes no more than the handshake timeout) and
 * PROXY_LINGER_BYTES; a lingering socket holds one descriptor and one event, no buffer, and
 * is no longer a connection (max_connections, drain and /metrics do not see it).
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/util.h>

#include "proxy_internal.h"
#include "proxy_stats.h"

#define PROXY_LINGER_MAGIC 0x4c494e47u /* "LING" */

/* One socket being closed gently; in its worker's list. */
struct proxy_linger {
    uint32_t magic;
    struct proxy_worker *w;
    struct proxy_linger *prev, *next;
    evutil_socket_t fd;
    struct event *ev;   /* EV_READ, with the time left as its timeout */
    long long deadline; /* proxy_stats_clock_ms() after which the socket is closed */
    size_t left;        /* bytes still to read and drop */
};

/* Close and free ${g}; it leaves its worker's list. */
static void
linger_end(struct proxy_linger *g)
{
    struct proxy_worker *w = g->w;

    assert(g->magic == PROXY_LINGER_MAGIC);
    if (g->prev != NULL) {
        g->prev->next = g->next;
    } else {
        w->lingering = g->next;
    }
    if (g->next != NULL) {
        g->next->prev = g->prev;
    }
    w->n_lingering--;
    event_free(g->ev); /* safe inside its own callback: libevent does not touch it after */
    g->ev = NULL;
    evutil_closesocket(g->fd);
    g->fd = -1;
    g->magic = 0;
    free(g);
}

/* Wait for more of the client's bytes, for the time left; false when none is left. */
static bool
linger_wait(struct proxy_linger *g)
{
    long long ms = g->deadline - proxy_stats_clock_ms();
    struct timeval tv;

    if (ms <= 0) {
        return false;
    }
    tv.tv_sec = (time_t)(ms / 1000);
    tv.tv_usec = (suseconds_t)((ms % 1000) * 1000);
    return event_add(g->ev, &tv) == 0;
}

/* Readable (or the time is up): drop what arrived; end at EOF, error, the byte cap or time. */
static void
linger_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_linger *g = arg;
    char buf[4096];
    ssize_t n;

    assert(g->magic == PROXY_LINGER_MAGIC);
    if ((what & EV_TIMEOUT) != 0) {
        linger_end(g);
        return;
    }
    for (;;) {
        n = recv(fd, buf, g->left < sizeof(buf) ? g->left : sizeof(buf), 0);
        if (n > 0) {
            g->left -= (size_t)n;
            if (g->left == 0) {
                break; /* the client keeps sending: give up on it */
            }
            continue;
        }
        if (n < 0 && (errno == EINTR)) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && linger_wait(g)) {
            return;
        }
        break; /* EOF (the client read our last bytes and closed), an error, or time is up */
    }
    linger_end(g);
}

/*
 * proxy_linger_close(w, fd, ms):
 * Close the client socket ${fd} of worker ${w} gently: FIN after what was sent, then read and
 * drop the client's bytes until it closes, for at most ${ms} and PROXY_LINGER_BYTES; close at
 * once when PROXY_LINGER_MAX sockets already linger in ${w} or on OOM.  Takes ${fd} in every
 * case; it must be registered with no event of ${w}'s loop (not a dup() of one: the loop's
 * epoll changelist).
 */
void
proxy_linger_close(struct proxy_worker *w, evutil_socket_t fd, uint64_t ms)
{
    struct proxy_linger *g = NULL;

    /* FIN follows our last bytes (a fatal alert): the client reads them, then EOF. */
    if (shutdown(fd, SHUT_WR) != 0 || ms == 0 || w->n_lingering >= PROXY_LINGER_MAX ||
        (g = calloc(1, sizeof(*g))) == NULL) {
        goto err0;
    }
    g->magic = PROXY_LINGER_MAGIC;
    g->w = w;
    g->fd = fd;
    g->left = PROXY_LINGER_BYTES;
    g->deadline = proxy_stats_clock_ms() + (long long)ms;
    if ((g->ev = event_new(w->base, fd, EV_READ, linger_cb, g)) == NULL) {
        goto err1;
    }
    g->next = w->lingering;
    if (w->lingering != NULL) {
        w->lingering->prev = g;
    }
    w->lingering = g;
    w->n_lingering++;
    if (!linger_wait(g)) {
        linger_end(g);
    }
    return;

err1:
    free(g);
err0:
    evutil_closesocket(fd);
}

/*
 * proxy_linger_free_all(w):
 * Close every socket still lingering in worker ${w} now (the worker ends).
 */
void
proxy_linger_free_all(struct proxy_worker *w)
{
    for (struct proxy_linger *g = w->lingering, *next; g != NULL; g = next) {
        next = g->next; /* read before linger_end() unlinks and frees g */
        linger_end(g);
    }
}
