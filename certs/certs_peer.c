/*
 * certs_peer.c: `ferry check --peer HOST:PORT` (CONTRACT.md §2, §8).
 *
 * Handshake with a live peer exactly as an outbound listener of the config would: the same
 * TLS context (built by the caller's certs_tls_builder, so the same cert, key, CA and CRL as
 * `ferry run`), with HOST as the peer host (SNI and rule 3).  Then print what the peer
 * presented, which CAs it accepts for client certificates, the TLS version and cipher, the
 * rules of §4 one by one and, when the peer refused us, its alert in plain words; end with
 * one verdict line.
 *
 * This is the CLI, not the daemon: one blocking connection with poll() deadlines (connect
 * 5s, handshake 10s, then 1s for a TLS 1.3 server's verdict on our certificate, which only
 * arrives after our side of the handshake is done).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "config.h"
#include "config_json.h"
#include "tls.h"

#include "certs.h"
#include "certs_internal.h"

#define PEER_CONNECT_MS   5000  /* TCP connect */
#define PEER_HANDSHAKE_MS 10000 /* TLS handshake, from the end of connect */
#define PEER_VERDICT_MS   1000  /* after the handshake: a TLS 1.3 server's alert, if any */
#define PEER_MAX_CHAIN    10    /* certificates of the peer's chain we describe */

/* One certificate of the peer's chain, as printed. */
struct peer_cert {
    struct tls_peer_info info;
    char ekus[128];
    char key_type[32];
    char not_before_rfc3339[32]; /* the dates of --json */
    char not_after_rfc3339[32];
};

/* Everything we learned, printed at the end in text or JSON. */
struct peer_report {
    const char *listener;
    char peer[CONFIG_ADDR_STR_MAX]; /* HOST:PORT as given */
    char host[256];                 /* HOST */
    char port[8];                   /* PORT */
    char dial_host[256]; /* where we connect: HOST, or the listener's `connect:` for its peer */
    char dial_port[8];
    char address[80];              /* the address we reached */
    char via[CONFIG_ADDR_STR_MAX]; /* the listener's egress proxy (via:) we went through, "" for
                                      none */
    int via_status;                /* its answer to CONNECT, 0 before one */
    bool connected;                /* TCP connected */
    bool handshake;                /* our side of the TLS handshake finished */
    bool cert_req;                 /* the peer asked for a client certificate */
    bool rejected_us;              /* the peer sent a fatal alert */
    char version[16];              /* "TLSv1.3" */
    char cipher[64];               /* "TLS_AES_256_GCM_SHA384" */
    struct peer_cert chain[PEER_MAX_CHAIN];
    size_t n_chain;
    char client_cas[8][256]; /* CA names of its CertificateRequest */
    size_t n_client_cas;
    struct tls_verify_result res;
    struct tls_self_info self;
    bool ok;
    struct certs_findings findings; /* what we infer of the peer's refusal (peer-refused-*) */
    char reason[1024];              /* the verdict in words */
    char note[512];                 /* an OK with a remark: ~130 bytes of words and the peer */
};

/* SSL_set_cert_cb: OpenSSL calls it when the server sent a CertificateRequest. */
static int
cert_req_cb(SSL *ssl, void *arg)
{
    bool *asked = arg;

    (void)ssl;
    *asked = true;
    return 1;
}

static long long
now_ms(void)
{
    struct timespec ts;

    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until ${fd} is ready for ${events} or ${deadline} passes.  1 ready, 0 timeout, -1 error. */
static int
wait_fd(int fd, short events, long long deadline)
{
    struct pollfd pfd;
    long long left;
    int rc;

    for (;;) {
        left = deadline - now_ms();
        if (left <= 0) {
            return 0;
        }
        pfd.fd = fd;
        pfd.events = events;
        pfd.revents = 0;
        rc = poll(&pfd, 1, (int)left);
        if (rc < 0 && errno == EINTR) {
            continue;
        }
        return rc < 0 ? -1 : (rc > 0 ? 1 : 0);
    }
}

/*
 * The number in ${port}, a PORT that split_peer() checked or a uint16_t printed with "%u"; 0
 * for anything else (as atoi() gave for text that is not a number).
 */
static uint16_t
port_number(const char *port)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(port, &end, 10);
    if (errno != 0 || end == port || *end != '\0' || v < 0 || v > 65535) {
        return 0;
    }
    return (uint16_t)v;
}

/* Split "host:port" or "[v6]:port".  Returns 0, or -1 with the reason in ${r}->reason. */
static int
split_peer(const char *spec, struct peer_report *r)
{
    const char *colon;
    size_t hl;
    char *end;
    long port;

    if (spec == NULL || spec[0] == '\0') {
        goto bad;
    }
    if (spec[0] == '[') {
        const char *rb = strchr(spec, ']');

        if (rb == NULL || rb[1] != ':') {
            goto bad;
        }
        hl = (size_t)(rb - spec - 1);
        if (hl == 0 || hl >= sizeof(r->host)) {
            goto bad;
        }
        memcpy(r->host, spec + 1, hl);
        r->host[hl] = '\0';
        colon = rb + 1;
    } else {
        colon = strrchr(spec, ':');
        if (colon == NULL || colon == spec || strchr(spec, ':') != colon) {
            goto bad;
        }
        hl = (size_t)(colon - spec);
        if (hl >= sizeof(r->host)) {
            goto bad;
        }
        memcpy(r->host, spec, hl);
        r->host[hl] = '\0';
    }
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (errno != 0 || *end != '\0' || end == colon + 1 || port < 1 || port > 65535) {
        goto bad;
    }
    (void)snprintf(r->port, sizeof(r->port), "%ld", port);
    return 0;

bad:
    (void)snprintf(r->reason, sizeof(r->reason),
                   "--peer %s is not HOST:PORT (e.g. node2.example.org:6984 or [::1]:6984)",
                   spec != NULL ? spec : "");
    return -1;
}

/* The outbound listener to act as: --listener NAME, else the first outbound one. */
static const struct config_listener *
pick_listener(const struct config *cfg, const char *name, struct peer_report *r)
{
    size_t i;

    for (i = 0; cfg != NULL && i < cfg->n_listeners; i++) {
        const struct config_listener *cl = &cfg->listeners[i];

        if (name != NULL && strcmp(cl->name, name) != 0) {
            continue;
        }
        if (cl->mode == CONFIG_MODE_OUTBOUND) {
            return cl;
        }
        if (name == NULL) {
            continue;
        }
        (void)snprintf(r->reason, sizeof(r->reason),
                       "listener %s is inbound; --peer needs an outbound listener (its "
                       "certificate, key and CA are what the peer will see)",
                       name);
        return NULL;
    }
    if (name != NULL) {
        (void)snprintf(r->reason, sizeof(r->reason), "no listener named %s in %s", name,
                       cfg != NULL && cfg->path != NULL ? cfg->path : "the config");
    } else {
        (void)snprintf(r->reason, sizeof(r->reason),
                       "%s has no outbound listener: ferry check --peer handshakes as one (its "
                       "tls.cert, tls.key and tls.ca); add one, or pass --listener NAME",
                       cfg != NULL && cfg->path != NULL ? cfg->path : "the config");
    }
    return NULL;
}

/* TCP connect to HOST:PORT within PEER_CONNECT_MS.  Returns a non-blocking fd, or -1. */
static int
dial(struct peer_report *r)
{
    struct addrinfo hints, *res = NULL, *ai;
    char why[256] = "no address";
    int fd = -1, rc, soerr;
    socklen_t sl;
    long long deadline = now_ms() + PEER_CONNECT_MS;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    rc = getaddrinfo(r->dial_host, r->dial_port, &hints, &res);
    if (rc != 0) {
        (void)snprintf(r->reason, sizeof(r->reason), "cannot resolve %s: %s", r->dial_host,
                       gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        char h[256], s[32];

        if (getnameinfo(ai->ai_addr, ai->ai_addrlen, h, sizeof(h), s, sizeof(s),
                        NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
            (void)snprintf(r->address, sizeof(r->address),
                           ai->ai_family == AF_INET6 ? "[%s]:%s" : "%s:%s", h, s);
        }
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) {
            (void)snprintf(why, sizeof(why), "%s", strerror(errno));
            continue;
        }
        rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (rc != 0 && errno == EINPROGRESS) {
            rc = wait_fd(fd, POLLOUT, deadline);
            if (rc == 0) {
                (void)snprintf(why, sizeof(why), "no answer to the TCP connection within %ds",
                               PEER_CONNECT_MS / 1000);
                (void)close(fd);
                fd = -1;
                break;
            }
            sl = sizeof(soerr);
            soerr = 0;
            if (rc < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0) {
                soerr = errno;
            }
            rc = soerr == 0 ? 0 : -1;
            errno = soerr;
        }
        if (rc == 0) {
            break;
        }
        (void)snprintf(why, sizeof(why), "%s", strerror(errno));
        (void)close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        (void)snprintf(r->reason, sizeof(r->reason), "cannot connect to %s (%s): %s", r->peer,
                       r->address[0] != '\0' ? r->address : r->dial_host, why);
        return -1;
    }
    r->connected = true;
    return fd;
}

/*
 * Through the listener's egress proxy ${cl}->via (${fd} connected to it): CONNECT to the
 * dial address, and read the answer's head only, as `ferry run` does (tls_tunnel.c).
 * Returns 0 with the tunnel open, or -1 with the reason.
 */
static int
tunnel(struct peer_report *r, int fd, const struct config_listener *cl)
{
    unsigned char secret[1024];
    char req[2048], head[TLS_TUNNEL_HEAD_MAX], phrase[160];
    size_t n = 0, len, got = 0, head_len = 0;
    long long deadline = now_ms() + PEER_CONNECT_MS;
    enum tls_tunnel_result res = TLS_TUNNEL_NEED_MORE;
    FILE *f;

    if (cl->via.auth_file.path != NULL && (f = fopen(cl->via.auth_file.path, "rb")) != NULL) {
        n = fread(secret, 1, sizeof(secret) - 1, f);
        (void)fclose(f);
        while (n > 0 && (secret[n - 1] == '\n' || secret[n - 1] == '\r')) {
            n--;
        }
    }
    len = tls_tunnel_request(req, sizeof(req), r->dial_host, port_number(r->dial_port),
                             n > 0 ? (const char *)secret : NULL, n);
    OPENSSL_cleanse(secret, sizeof(secret));
    if (len == 0 || send(fd, req, len, MSG_NOSIGNAL) != (ssize_t)len) {
        OPENSSL_cleanse(req, sizeof(req));
        (void)snprintf(r->reason, sizeof(r->reason), "cannot send CONNECT %s:%s to proxy %s",
                       r->dial_host, r->dial_port, r->via);
        return -1;
    }
    OPENSSL_cleanse(req, sizeof(req));
    while (res == TLS_TUNNEL_NEED_MORE) {
        ssize_t k;

        if (wait_fd(fd, POLLIN, deadline) <= 0) {
            (void)snprintf(r->reason, sizeof(r->reason),
                           "proxy %s did not answer CONNECT %s:%s within %ds", r->via, r->dial_host,
                           r->dial_port, PEER_CONNECT_MS / 1000);
            return -1;
        }
        k = recv(fd, head + got, sizeof(head) - got, MSG_PEEK);
        if (k <= 0) {
            (void)snprintf(r->reason, sizeof(r->reason),
                           "proxy %s closed the connection after %zu bytes of its answer to "
                           "CONNECT",
                           r->via, got);
            return -1;
        }
        res = tls_tunnel_answer(head, got + (size_t)k, &head_len, &r->via_status, phrase,
                                sizeof(phrase));
        /* Take the head off the socket, nothing after it: that is the peer's TLS. */
        len = res == TLS_TUNNEL_NEED_MORE ? (size_t)k : res == TLS_TUNNEL_OK ? head_len - got : 0;
        if (len > 0 && recv(fd, head + got, len, 0) != (ssize_t)len) {
            (void)snprintf(r->reason, sizeof(r->reason), "reading the answer of proxy %s: %s",
                           r->via, strerror(errno));
            return -1;
        }
        got += len;
    }
    switch (res) {
    case TLS_TUNNEL_OK:
        return 0;
    case TLS_TUNNEL_AUTH:
        if (cl->via.auth_file.path != NULL) {
            (void)snprintf(r->reason, sizeof(r->reason),
                           "proxy %s answered %d %s: it refused the credentials in %s "
                           "(via.auth_file)",
                           r->via, r->via_status, phrase, cl->via.auth_file.path);
        } else {
            (void)snprintf(r->reason, sizeof(r->reason),
                           "proxy %s answered %d %s: it wants credentials; put \"user:password\" "
                           "in a file and name it in via.auth_file",
                           r->via, r->via_status, phrase);
        }
        return -1;
    case TLS_TUNNEL_PEER_UNREACHABLE:
        (void)snprintf(r->reason, sizeof(r->reason),
                       "proxy %s answered %d %s: it cannot open a tunnel to %s:%s", r->via,
                       r->via_status, phrase, r->dial_host, r->dial_port);
        return -1;
    case TLS_TUNNEL_REFUSED:
        (void)snprintf(r->reason, sizeof(r->reason),
                       "proxy %s answered %d %s to CONNECT %s:%s: its policy refuses this host "
                       "or port",
                       r->via, r->via_status, phrase, r->dial_host, r->dial_port);
        return -1;
    default:
        (void)snprintf(r->reason, sizeof(r->reason),
                       "proxy %s sent a malformed answer to CONNECT: %s", r->via, phrase);
        return -1;
    }
}

/* Drive SSL_connect until done, failed, or the deadline.  1 done, 0 timeout, -1 failed. */
static int
handshake(SSL *ssl, int fd, long long deadline, unsigned long *first_err)
{
    int rc, e;

    for (;;) {
        ERR_clear_error();
        rc = SSL_connect(ssl);
        if (rc == 1) {
            return 1;
        }
        e = SSL_get_error(ssl, rc);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            rc = wait_fd(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
            if (rc <= 0) {
                return rc;
            }
            continue;
        }
        *first_err = ERR_peek_error();
        return -1;
    }
}

/*
 * After our side of the handshake: read for PEER_VERDICT_MS.  A TLS 1.3 server that rejects
 * our certificate says so with an alert now (tls/ records it in the result); one that
 * accepts sends session tickets, then waits for our request.
 */
static void
read_verdict(SSL *ssl, int fd, unsigned long *first_err)
{
    long long deadline = now_ms() + PEER_VERDICT_MS;
    char buf[512];
    int rc, e;

    for (;;) {
        ERR_clear_error();
        rc = SSL_read(ssl, buf, sizeof(buf));
        if (rc > 0) {
            continue; /* a server that speaks first: not our business here */
        }
        e = SSL_get_error(ssl, rc);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            if (wait_fd(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline) <= 0) {
                return;
            }
            continue;
        }
        if (e == SSL_ERROR_SSL && *first_err == 0) {
            *first_err = ERR_peek_error();
        }
        return;
    }
}

/* Copy what the peer presented into ${r}: chain, client CA names, version, cipher. */
static void
collect(SSL *ssl, struct peer_report *r)
{
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
    STACK_OF(X509_NAME) *cas = SSL_get_client_CA_list(ssl);
    const SSL_CIPHER *cipher = SSL_get_current_cipher(ssl);
    int i;

    for (i = 0; chain != NULL && i < sk_X509_num(chain) && r->n_chain < PEER_MAX_CHAIN; i++) {
        X509 *x = sk_X509_value(chain, i);
        struct peer_cert *pc = &r->chain[r->n_chain++];

        tls_peer_info_fill(x, false, &pc->info);
        (void)tls_cert_ekus(x, pc->ekus, sizeof(pc->ekus));
        (void)tls_cert_key_type(x, pc->key_type, sizeof(pc->key_type));
        (void)tls_time_rfc3339(X509_get0_notBefore(x), pc->not_before_rfc3339,
                               sizeof(pc->not_before_rfc3339));
        (void)tls_time_rfc3339(X509_get0_notAfter(x), pc->not_after_rfc3339,
                               sizeof(pc->not_after_rfc3339));
    }
    for (i = 0; cas != NULL && i < sk_X509_NAME_num(cas) &&
                r->n_client_cas < sizeof(r->client_cas) / sizeof(r->client_cas[0]);
         i++) {
        BIO *b = BIO_new(BIO_s_mem());
        char *p = r->client_cas[r->n_client_cas];
        int n;

        if (b == NULL) {
            break;
        }
        (void)X509_NAME_print_ex(b, sk_X509_NAME_value(cas, i), 0, XN_FLAG_RFC2253);
        n = BIO_read(b, p, (int)sizeof(r->client_cas[0]) - 1);
        p[n > 0 ? n : 0] = '\0';
        BIO_free(b);
        r->n_client_cas++;
    }
    if (cipher != NULL) {
        (void)snprintf(r->version, sizeof(r->version), "%s", SSL_get_version(ssl));
        (void)snprintf(r->cipher, sizeof(r->cipher), "%s", SSL_CIPHER_get_name(cipher));
    }
    /* TLS 1.3: CA names arrive with the request even when the handshake stops before our
     * certificate is due (cert_req_cb never runs then). */
    r->cert_req = r->cert_req || r->n_client_cas > 0;
    ERR_clear_error();
}

/* Does the peer's CertificateRequest name the CA that issued our certificate? */
static bool
peer_names_our_issuer(const struct peer_report *r)
{
    for (size_t i = 0; i < r->n_client_cas; i++) {
        if (strcmp(r->client_cas[i], r->self.issuer) == 0) {
            return true;
        }
    }
    return false;
}

/*
 * The peer refused our certificate for who it says we are (alert bad_certificate, as a ferry
 * sends when its allow matches none of our names, or access_denied): the finding
 * peer-refused-names, with our names and what the peer could match them against.
 */
static void
infer_refusal(struct peer_report *r, int alert)
{
    /* Each holds its longest text whole.  msg: ~450 bytes of words, the peer (300), the SANs (512),
     * the CN (128), ca (400); fix: ~190 bytes of words, the SANs, tls.cert (256), a date (32). */
    char msg[2048], fix[1024], cn[128], ca[400];
    const char *cert = r->self.cert_file[0] != '\0' ? r->self.cert_file : "tls.cert";

    if (alert != SSL_AD_BAD_CERTIFICATE && alert != SSL_AD_ACCESS_DENIED) {
        return;
    }
    (void)tls_self_cn(&r->self, cn, sizeof(cn));
    if (!r->cert_req) {
        (void)snprintf(ca, sizeof(ca), "%s", "");
    } else if (peer_names_our_issuer(r)) {
        (void)snprintf(ca, sizeof(ca),
                       " It names our issuer \"%s\" among the CAs it accepts, so our chain is "
                       "not what it refused.",
                       r->self.issuer);
    } else {
        (void)snprintf(ca, sizeof(ca), " (Our issuer \"%s\" is not among the CA names it sent%s.)",
                       r->self.issuer, r->n_client_cas > 0 ? "" : ": it sent none");
    }
    if (tls_self_has_name(&r->self)) {
        (void)snprintf(msg, sizeof(msg),
                       "peer %s refused our certificate (alert %s): a ferry does so when the "
                       "allow list of its inbound listener matches none of our names. Our names, "
                       "which its allow entries "
                       "are matched against: %s (DNS exactly or by a \"*.\" entry one label "
                       "deep, IP as addresses, URI exactly or one path level under \"/*\"); "
                       "our CN %s counts only with its tls.cn_fallback and no DNS or IP SAN.%s",
                       r->peer, tls_alert_name(alert), r->self.sans, cn[0] != '\0' ? cn : "-", ca);
        (void)snprintf(fix, sizeof(fix),
                       "on the peer, add one of %s to the allow of its inbound listener (or "
                       "reissue %s with a name it allows: ferry certs issue --dns NAME); if the "
                       "names are right, compare both clocks (ours is valid from %s)",
                       r->self.sans, cert, r->self.not_before);
    } else {
        (void)snprintf(msg, sizeof(msg),
                       "peer %s refused our certificate (alert %s): it has no DNS, IP or URI "
                       "SAN, so the allow list of a ferry peer has nothing to match (its CN %s "
                       "counts only with the peer's tls.cn_fallback: true).%s",
                       r->peer, tls_alert_name(alert), cn[0] != '\0' ? cn : "-", ca);
        (void)snprintf(fix, sizeof(fix),
                       "reissue %s with the name the peer allows: ferry certs issue --name NAME "
                       "--dns NAME",
                       cert);
    }
    (void)certs_findings_add(&r->findings, "peer-refused-names", CERTS_SEV_ERROR, cert, 0, 0, msg,
                             fix);
}

/* The verdict: our §4 rules first (the first that fails), then the peer's alert, then OK. */
static void
judge(struct peer_report *r, int hs, unsigned long err)
{
    char who[320], why[256];

    (void)snprintf(who, sizeof(who), "peer %s", r->peer);
    r->rejected_us = r->res.alert_received || tls_alert_from_error(err) >= 0;
    if (r->res.reject != TLS_REJECT_NONE) {
        /* A peer that sent its leaf alone: which file lacks which intermediate. */
        if (tls_chain_gap_describe(r->res.reject, TLS_ROLE_CLIENT, &r->res.peer, r->self.ca_file,
                                   r->reason, sizeof(r->reason)) != 0) {
            (void)tls_reject_describe(r->res.reject, TLS_ROLE_CLIENT, &r->res.peer, r->reason,
                                      sizeof(r->reason));
        }
        return;
    }
    if (r->res.alert_received) {
        (void)tls_alert_describe(r->res.alert, who, &r->self, r->reason, sizeof(r->reason));
        infer_refusal(r, r->res.alert);
        return;
    }
    if (hs == 0) {
        if (tls_plaintext_describe(r->res.first_record, r->res.n_first_record, who, TLS_ROLE_CLIENT,
                                   r->reason, sizeof(r->reason)) == 0) {
            return;
        }
        (void)snprintf(r->reason, sizeof(r->reason),
                       "%s accepted the TCP connection but %s within %ds: it is not a TLS port "
                       "(or it waits for the client to speak a plaintext protocol)",
                       who,
                       r->res.n_first_record > 0 ? "did not finish the TLS handshake"
                                                 : "sent nothing back to our ClientHello",
                       PEER_HANDSHAKE_MS / 1000);
        return;
    }
    if (hs < 0) {
        if (tls_error_describe(err, who, &r->res, &r->self, r->reason, sizeof(r->reason)) == 0 ||
            tls_plaintext_describe(r->res.first_record, r->res.n_first_record, who, TLS_ROLE_CLIENT,
                                   r->reason, sizeof(r->reason)) == 0) {
            return;
        }
        if (err != 0) {
            ERR_error_string_n(err, why, sizeof(why));
            (void)snprintf(r->reason, sizeof(r->reason), "TLS handshake with %s failed: %s", who,
                           why);
        } else {
            (void)snprintf(r->reason, sizeof(r->reason),
                           "%s closed the connection during the TLS handshake without an alert",
                           who);
        }
        return;
    }
    if (!r->res.verified) {
        (void)snprintf(r->reason, sizeof(r->reason),
                       "%s finished the handshake but its certificate could not be checked", who);
        return;
    }
    r->ok = true;
    (void)snprintf(r->reason, sizeof(r->reason), "%s passes every rule", r->peer);
    if (!r->cert_req) {
        (void)snprintf(r->note, sizeof(r->note),
                       "%s did not ask for a client certificate: it lets any client in (a ferry "
                       "inbound listener asks, with client_cert: required)",
                       who);
    }
}

/* The state of rule ${rule} (1 chain, 2 EKU, 3 name) given the first rule that failed. */
static const char *
rule_state(const struct peer_report *r, int rule)
{
    int failed = 0;

    if (r->res.reject == TLS_REJECT_NONE) {
        return r->res.verified ? "ok" : "not checked";
    }
    if (r->res.reject < TLS_REJECT_EKU_MISSING) {
        failed = 1;
    } else if (r->res.reject < TLS_REJECT_NO_NAME) {
        failed = 2;
    } else {
        failed = 3;
    }
    return rule < failed ? "ok" : (rule == failed ? "FAIL" : "not checked");
}

/* ---- output ---- */

static const char *
or_str(const char *s, const char *dflt)
{
    return s != NULL ? s : dflt;
}

static void
print_json(const struct peer_report *r, FILE *out)
{
    struct config_json j;
    size_t i;
    int alert = r->res.alert_received ? r->res.alert : -1;

    config_json_init_file(&j, out);
    config_json_begin_object(&j);
    config_json_kv_string(&j, "peer", r->peer);
    config_json_kv_string(&j, "listener", r->listener);
    config_json_kv_string(&j, "address", r->address[0] != '\0' ? r->address : NULL);
    config_json_kv_bool(&j, "connected", r->connected);
    config_json_kv_bool(&j, "handshake", r->handshake);
    config_json_kv_string(&j, "tls_version", r->version[0] != '\0' ? r->version : NULL);
    config_json_kv_string(&j, "cipher", r->cipher[0] != '\0' ? r->cipher : NULL);
    config_json_key(&j, "chain");
    config_json_begin_array(&j);
    for (i = 0; i < r->n_chain; i++) {
        const struct peer_cert *pc = &r->chain[i];

        config_json_begin_object(&j);
        config_json_kv_string(&j, "subject", pc->info.subject);
        config_json_kv_string(&j, "issuer", pc->info.issuer);
        config_json_kv_string(&j, "sans", pc->info.sans);
        config_json_kv_string(&j, "ekus", pc->ekus);
        config_json_kv_string(&j, "not_before", pc->not_before_rfc3339);
        config_json_kv_string(&j, "not_after", pc->not_after_rfc3339);
        config_json_kv_string(&j, "key_type", pc->key_type);
        config_json_end_object(&j);
    }
    config_json_end_array(&j);
    config_json_kv_bool(&j, "client_cert_requested", r->cert_req);
    config_json_key(&j, "client_ca_names");
    config_json_begin_array(&j);
    for (i = 0; i < r->n_client_cas; i++) {
        config_json_string(&j, r->client_cas[i]);
    }
    config_json_end_array(&j);
    config_json_key(&j, "rules");
    config_json_begin_object(&j);
    config_json_kv_string(&j, "chain", rule_state(r, 1));
    config_json_kv_string(&j, "eku", rule_state(r, 2));
    config_json_kv_string(&j, "name", rule_state(r, 3));
    config_json_end_object(&j);
    config_json_kv_string(&j, "reject",
                          r->res.reject != TLS_REJECT_NONE ? tls_reject_str(r->res.reject) : NULL);
    config_json_kv_string(&j, "alert", alert >= 0 ? tls_alert_name(alert) : NULL);
    config_json_kv_bool(&j, "rejected_us", r->rejected_us);
    config_json_kv_string(&j, "note", r->note[0] != '\0' ? r->note : NULL);
    certs_findings_json(&r->findings, &j);
    config_json_kv_string(&j, "verdict", r->ok ? "OK" : "FAIL");
    config_json_kv_string(&j, "reason", r->reason);
    config_json_end_object(&j);
    (void)fputc('\n', out);
}

static void
print_text(const struct peer_report *r, FILE *out)
{
    size_t i;

    fprintf(out, "peer %s", r->peer);
    if (r->via[0] != '\0') {
        fprintf(out, " through proxy %s", r->via);
        if (r->via_status > 0) {
            fprintf(out, " (CONNECT: %d)", r->via_status);
        }
    } else if (r->address[0] != '\0') {
        fprintf(out, " (%s)", r->address);
    }
    if (r->listener != NULL) {
        fprintf(out, ", as listener %s with %s", r->listener,
                r->self.cert_file[0] != '\0' ? r->self.cert_file : "its certificate");
    }
    (void)fputc('\n', out);
    if (r->version[0] != '\0') {
        fprintf(out, "tls: %s, cipher %s\n", r->version, r->cipher);
    }
    if (r->n_chain > 0) {
        fprintf(out, "certificates presented by the peer (%zu):\n", r->n_chain);
    } else if (r->connected) {
        fprintf(out, "certificates presented by the peer: none seen\n");
    }
    for (i = 0; i < r->n_chain; i++) {
        const struct peer_cert *pc = &r->chain[i];

        fprintf(out, "  [%zu] subject: %s\n", i, pc->info.subject);
        fprintf(out, "      issuer:  %s\n", pc->info.issuer);
        fprintf(out, "      SANs:    %s\n", pc->info.sans[0] != '\0' ? pc->info.sans : "(none)");
        fprintf(out, "      EKU:     %s\n",
                pc->ekus[0] != '\0' ? pc->ekus : "(no extendedKeyUsage extension)");
        fprintf(out, "      valid:   %s to %s\n", pc->info.not_before, pc->info.not_after);
        fprintf(out, "      key:     %s\n", pc->key_type);
    }
    if (r->handshake || r->cert_req) {
        if (!r->cert_req) {
            fprintf(out, "client certificate: not requested by the peer\n");
        } else if (r->n_client_cas == 0) {
            fprintf(out, "client certificate: requested, no CA names given (any CA)\n");
        } else {
            fprintf(out, "client certificate: requested; CAs the peer accepts:\n");
            for (i = 0; i < r->n_client_cas; i++) {
                fprintf(out, "  %s\n", r->client_cas[i]);
            }
        }
    }
    if (r->connected && (r->n_chain > 0 || r->res.reject != TLS_REJECT_NONE)) {
        fprintf(out, "rules: chain %s, EKU serverAuth %s, name %s %s\n", rule_state(r, 1),
                rule_state(r, 2), r->host, rule_state(r, 3));
    }
    if (r->rejected_us) {
        fprintf(out, "the peer's verdict on us: rejected (alert %s)\n",
                r->res.alert_received ? or_str(tls_alert_name(r->res.alert), "?") : "?");
    } else if (r->handshake && r->cert_req) {
        fprintf(out, "the peer's verdict on us: accepted our certificate %s\n", r->self.cert_file);
    }
    if (r->note[0] != '\0') {
        fprintf(out, "note: %s\n", r->note);
    }
    certs_findings_print(&r->findings, false, out);
    fprintf(out, "verdict: %s — %s\n", r->ok ? "OK" : "FAIL", r->reason);
}

/*
 * certs_peer_check(cfg, o, build, out):
 * `ferry check --peer HOST:PORT`: handshake with the live peer as the outbound listener
 * ${o}->listener of ${cfg} (or its first outbound listener) would, with HOST as the peer
 * host, print what the peer presented and the verdict of CONTRACT §4 (text or JSON) to
 * ${out}.  Returns the exit code: 0 the peer passes, 1 otherwise (including a config without
 * an outbound listener, a peer that cannot be reached, and a peer that rejects us).
 */
int
certs_peer_check(const struct config *cfg, const struct certs_check_opts *o,
                 certs_tls_builder build, FILE *out)
{
    struct peer_report *r;
    const struct config_listener *src;
    struct config_listener cl;
    struct tls_ctx *t = NULL;
    SSL *ssl = NULL;
    unsigned long err = 0;
    char why[768];
    int fd = -1, hs = -1, code = 1;

    if ((r = calloc(1, sizeof(*r))) == NULL) {
        fprintf(out, "verdict: FAIL — out of memory\n");
        return 1;
    }
    (void)snprintf(r->peer, sizeof(r->peer), "%s", o != NULL && o->peer != NULL ? o->peer : "");
    if (o == NULL || build == NULL || split_peer(o->peer, r) != 0) {
        goto report;
    }
    if ((src = pick_listener(cfg, o->listener, r)) == NULL) {
        goto report;
    }
    r->listener = src->name;

    /* The listener as configured, with HOST as its peer: same files, our name check. */
    cl = *src;
    (void)snprintf(cl.peer.host, sizeof(cl.peer.host), "%s", r->host);
    cl.peer.port = port_number(r->port);
    cl.peer.is_ip = tls_name_is_ip(r->host, NULL, NULL);
    cl.peer.is_ipv6 = cl.peer.is_ip && strchr(r->host, ':') != NULL;
    why[0] = '\0';
    if (build(&cl, &t, why, sizeof(why)) != 0 || t == NULL) {
        (void)snprintf(r->reason, sizeof(r->reason),
                       "cannot load the TLS files of listener %s: %s (run `ferry check`)",
                       src->name, why);
        goto report;
    }
    tls_ctx_self_info(t, &r->self);
    /* The listener's own peer with a `connect:` address: dial that, as `ferry run` would. */
    (void)snprintf(r->dial_host, sizeof(r->dial_host), "%s", r->host);
    (void)snprintf(r->dial_port, sizeof(r->dial_port), "%s", r->port);
    if (src->has_connect && strcasecmp(src->peer.host, r->host) == 0 &&
        src->peer.port == cl.peer.port) {
        (void)snprintf(r->dial_host, sizeof(r->dial_host), "%s", src->connect.host);
        (void)snprintf(r->dial_port, sizeof(r->dial_port), "%u", (unsigned)src->connect.port);
    }

    if (src->via.enabled) {
        /* Dial the listener's proxy, then CONNECT to where ferry run would dial. */
        char ph[256], pp[8];

        config_value_addr_format(&src->via.proxy, r->via, sizeof(r->via));
        (void)snprintf(ph, sizeof(ph), "%s", r->dial_host);
        (void)snprintf(pp, sizeof(pp), "%s", r->dial_port);
        (void)snprintf(r->dial_host, sizeof(r->dial_host), "%s", src->via.proxy.host);
        (void)snprintf(r->dial_port, sizeof(r->dial_port), "%u", (unsigned)src->via.proxy.port);
        fd = dial(r);
        (void)snprintf(r->dial_host, sizeof(r->dial_host), "%s", ph);
        (void)snprintf(r->dial_port, sizeof(r->dial_port), "%s", pp);
        if (fd >= 0 && tunnel(r, fd, src) < 0) {
            r->connected = false;
            goto report;
        }
        if (fd < 0) {
            const char *cause = strrchr(r->reason, ':');
            char tmp[sizeof(r->reason)];

            (void)snprintf(tmp, sizeof(tmp), "cannot connect to proxy %s (via.proxy)%s", r->via,
                           cause != NULL ? cause : "");
            (void)snprintf(r->reason, sizeof(r->reason), "%s", tmp);
            goto report;
        }
    } else if ((fd = dial(r)) < 0) {
        goto report;
    }
    ERR_clear_error();
    if ((ssl = tls_ssl_new(t, &r->res)) == NULL || SSL_set_fd(ssl, fd) != 1) {
        (void)snprintf(r->reason, sizeof(r->reason), "out of memory");
        goto report;
    }
    SSL_set_cert_cb(ssl, cert_req_cb, &r->cert_req);
    hs = handshake(ssl, fd, now_ms() + PEER_HANDSHAKE_MS, &err);
    if (hs == 1) {
        r->handshake = true;
        tls_ssl_done(ssl, &r->res);
        read_verdict(ssl, fd, &err);
    }
    collect(ssl, r);
    judge(r, hs, err);
    code = r->ok ? 0 : 1;

report:
    if (r->reason[0] == '\0') {
        (void)snprintf(r->reason, sizeof(r->reason), "no verdict");
    }
    if (o != NULL && o->json) {
        print_json(r, out);
    } else {
        print_text(r, out);
    }
    if (ssl != NULL) {
        /* Be polite to a peer that accepted us; never block on it. */
        if (r->handshake && !r->rejected_us) {
            (void)SSL_shutdown(ssl);
        }
        SSL_free(ssl);
    }
    if (fd >= 0) {
        (void)close(fd);
    }
    tls_ctx_free(t);
    ERR_clear_error();
    certs_findings_clear(&r->findings);
    free(r);
    return code;
}
