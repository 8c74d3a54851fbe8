/*
 * io_pingpong: allocations per keep-alive round trip through two struct proxy_io (issue 14).
 * A client side sends 100 bytes, the server side echoes them, N times, over a loopback TCP
 * pair, TLS or plain; with "release" both sides call proxy_io_release_buffers() after every
 * round trip (what an idle keep-alive connection does between requests).  Run it under
 * valgrind twice and subtract: (allocs at 2N - allocs at N) / N is the allocations per round
 * trip, load-independent.  NORB=1 leaves SSL_MODE_RELEASE_BUFFERS off the contexts (ferry's
 * tls_ctx.c sets it).
 *
 *   cc -std=c11 -O2 -I proxy -I tests/support -o /tmp/io_pingpong bench/spike/io_pingpong.c \
 *       build/proxy/libferry_proxy.a build/tests/libferry_test_pki.a \
 *       $(pkg-config --cflags --libs libevent openssl)
 *   for n in 1000 2000; do valgrind /tmp/io_pingpong $n tls keep 2>&1 | grep 'total heap'; done
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "pki.h"
#include "proxy_io.h"

static struct proxy_io client, server;
static struct event_base *base;
static long rounds, want;
static int release;
static const char msg[100];

static void
die(const char *what)
{
    fprintf(stderr, "io_pingpong: %s\n", what);
    exit(1);
}

/* The server echoes what it reads (the chains move; no copy). */
static void
server_read(struct proxy_io *io, void *arg)
{
    (void)arg;
    evbuffer_add_buffer(proxy_io_output(io), proxy_io_input(io));
}

static void
client_read(struct proxy_io *io, void *arg)
{
    (void)arg;
    if (evbuffer_get_length(proxy_io_input(io)) < sizeof(msg)) {
        return;
    }
    evbuffer_drain(proxy_io_input(io), sizeof(msg));
    if (release) {
        (void)proxy_io_release_buffers(&client);
        (void)proxy_io_release_buffers(&server);
    }
    if (++rounds >= want) {
        event_base_loopbreak(base);
        return;
    }
    evbuffer_add(proxy_io_output(&client), msg, sizeof(msg));
}

static void
event_cb(struct proxy_io *io, short what, void *arg)
{
    (void)arg;
    if ((what & PROXY_IO_EV_CONNECTED) == 0) {
        die("connection failed");
    }
    proxy_io_enable(io, EV_READ | EV_WRITE);
    if (io == &client) {
        evbuffer_add(proxy_io_output(&client), msg, sizeof(msg));
    }
}

static void
make_ctxs(SSL_CTX **s, SSL_CTX **c)
{
    static const char *const dns[] = {"pingpong.test", NULL};
    struct pki_cert *root = pki_cert_new(&(struct pki_opts){.cn = "Ping CA", .ca = true}, NULL);
    struct pki_cert *leaf;

    if (root == NULL) {
        die("pki");
    }
    leaf = pki_cert_new(&(struct pki_opts){.cn = "pingpong.test", .dns = dns}, root);
    *s = SSL_CTX_new(TLS_server_method());
    *c = SSL_CTX_new(TLS_client_method());
    if (leaf == NULL || *s == NULL || *c == NULL || SSL_CTX_use_certificate(*s, leaf->x509) != 1 ||
        SSL_CTX_use_PrivateKey(*s, leaf->key) != 1) {
        die("SSL_CTX");
    }
    if (getenv("NORB") == NULL) {
        SSL_CTX_set_mode(*s, SSL_MODE_RELEASE_BUFFERS);
        SSL_CTX_set_mode(*c, SSL_MODE_RELEASE_BUFFERS);
    }
    (void)SSL_CTX_set_num_tickets(*s, 0);
    pki_cert_free(leaf);
    pki_cert_free(root);
}

int
main(int argc, char **argv)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    SSL_CTX *s = NULL, *c = NULL;
    int lfd, fd, tls;

    if (argc != 4 || (want = atol(argv[1])) <= 0) {
        fprintf(stderr, "usage: io_pingpong N tls|plain keep|release\n");
        return 2;
    }
    tls = strcmp(argv[2], "tls") == 0;
    release = strcmp(argv[3], "release") == 0;
    signal(SIGPIPE, SIG_IGN);
    if (tls) {
        make_ctxs(&s, &c);
    }
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) != 0 || listen(lfd, 1) != 0 ||
        getsockname(lfd, (struct sockaddr *)&sin, &len) != 0 || (base = event_base_new()) == NULL) {
        die("setup");
    }
    if (proxy_io_init(&client, base, -1, tls ? SSL_new(c) : NULL, PROXY_IO_CLIENT) != 0) {
        die("proxy_io_init");
    }
    proxy_io_setcb(&client, client_read, NULL, event_cb, NULL);
    if (proxy_io_connect(&client, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
        (fd = accept(lfd, NULL, NULL)) < 0 || evutil_make_socket_nonblocking(fd) != 0 ||
        proxy_io_init(&server, base, fd, tls ? SSL_new(s) : NULL, PROXY_IO_SERVER) != 0) {
        die("connect");
    }
    proxy_io_setcb(&server, server_read, NULL, event_cb, NULL);
    if (!tls) {
        proxy_io_enable(&server, EV_READ | EV_WRITE); /* plain: open at once */
    }
    (void)event_base_dispatch(base);
    printf("%ld round trips; sizeof(struct proxy_io) %zu\n", rounds, sizeof(struct proxy_io));
    proxy_io_free(&client);
    proxy_io_free(&server);
    event_base_free(base);
    close(lfd);
    SSL_CTX_free(s);
    SSL_CTX_free(c);
    return rounds == want ? 0 : 1;
}
