/*
 * test_tls: tls/ (name matching, the §4 rules, context start checks, and real handshakes).
 *
 * The PKI is built in process (tests/support/pki.c) at run time into $FERRY_TEST_TMP/tls (or
 * /tmp/ferry-test-tls-<pid>).  Handshakes run in memory: a server SSL and a client SSL from
 * two struct tls_ctx, joined by a BIO pair and pumped in a bounded loop, so no socket or
 * network is used.  Each end-to-end test asserts the exact enum tls_reject on the verifying
 * side.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "pki.h"
#include "tls.h"

#define DAY        (24L * 3600)
#define PASSPHRASE "correct horse battery"

/* Bounded handshake pumping: a TLS 1.2/1.3 handshake needs well under 10 round trips. */
#define PUMP_ROUNDS 64

/* ---- fixture: the PKI, written once for the whole run ---- */

static char dir[1024];
/* A file of the test PKI: ${dir}, '/' and a short name ("rsa_server.key"). */
#define PKI_PATH_MAX (sizeof(dir) + 64)
static struct pki_cert *all_certs[64];
static size_t n_certs;
static X509_CRL *all_crls[8];
static size_t n_crls;

/* The certificates the in-memory tests (tls_check_leaf, peer info) use directly. */
static struct pki_cert *root, *inter, *server_leaf, *client_leaf, *srvonly_leaf, *noeku_leaf,
    *cnonly_leaf, *ip_leaf, *wild_leaf, *expired_leaf, *notyet_leaf, *uri_leaf, *uri_dns_leaf,
    *uri_cn_leaf, *uri_mixup_leaf;

/* "dir/name" in one of 16 rotating buffers: enough for one params struct at a time. */
static const char *
F(const char *name)
{
    static char bufs[16][1200];
    static unsigned next;
    char *b = bufs[next++ % 16];

    assert_non_null(pki_path(b, sizeof(bufs[0]), dir, name));
    return b;
}

/* A certificate that the group teardown frees. */
static struct pki_cert *
mk(const struct pki_opts *o, const struct pki_cert *issuer)
{
    struct pki_cert *c = pki_cert_new(o, issuer);

    assert_non_null(c);
    assert_true(n_certs < sizeof(all_certs) / sizeof(all_certs[0]));
    all_certs[n_certs++] = c;
    return c;
}

static X509_CRL *
keep_crl(X509_CRL *crl)
{
    assert_non_null(crl);
    assert_true(n_crls < sizeof(all_crls) / sizeof(all_crls[0]));
    all_crls[n_crls++] = crl;
    return crl;
}

/* Write NAME.crt (leaf, then up to two chain certificates) and NAME.key. */
static void
save(const char *name, struct pki_cert *leaf, struct pki_cert *ch1, struct pki_cert *ch2)
{
    char file[256];

    (void)snprintf(file, sizeof(file), "%s.crt", name);
    assert_int_equal(pki_write_chain(F(file), leaf, ch1, ch2, NULL), 0);
    (void)snprintf(file, sizeof(file), "%s.key", name);
    assert_int_equal(pki_write_key(F(file), leaf, NULL), 0);
}

#define DNS(...) ((const char *const[]){__VA_ARGS__, NULL})

static int
setup_pki(void **state)
{
    struct pki_cert *other_ca, *i1, *i2, *nonca, *revoked, *c, *rsa_srv;
    EVP_PKEY *rsa;
    X509_CRL *root_crl, *inter_crl, *expired_crl, *other_crl;

    (void)state;
    assert_non_null(pki_dir("tls", dir, sizeof(dir)));

    root = mk(
        &(struct pki_opts){
            .cn = "Ferry Test Root CA", .org = "Ferry Test", .ca = true, .not_after = 365 * DAY},
        NULL);
    inter = mk(&(struct pki_opts){.cn = "Ferry Test Intermediate CA", .ca = true}, root);
    other_ca = mk(&(struct pki_opts){.cn = "Other CA", .ca = true}, NULL);
    i1 = mk(&(struct pki_opts){.cn = "Deep CA 1", .ca = true}, root);
    i2 = mk(&(struct pki_opts){.cn = "Deep CA 2", .ca = true}, i1);

    assert_int_equal(pki_write_chain(F("ca.crt"), root, NULL), 0);
    assert_int_equal(pki_write_chain(F("ca_inter.crt"), root, inter, NULL), 0);
    assert_int_equal(pki_write_chain(F("other_ca.crt"), other_ca, NULL), 0);
    assert_int_equal(pki_write_chain(F("ca_copy.crt"), root, NULL), 0);
    assert_int_equal(pki_write_chain(F("ca_plus_other.crt"), root, other_ca, NULL), 0);

    /* The two good nodes: node1 serves, node2 connects; both EKUs, like `ferry certs issue`. */
    server_leaf = mk(&(struct pki_opts){.cn = "node1.test",
                                        .dns = DNS("node1.test", "*.site-a.test"),
                                        .ips = DNS("127.0.0.1", "::1")},
                     root);
    save("server", server_leaf, NULL, NULL);
    assert_int_equal(pki_write_key(F("server_enc.key"), server_leaf, PASSPHRASE), 0);
    assert_int_equal(pki_write_text(F("key.pass"), PASSPHRASE "\n"), 0);
    assert_int_equal(pki_write_text(F("key_crlf.pass"), PASSPHRASE "\r\n"), 0);
    assert_int_equal(pki_write_text(F("wrong.pass"), "not the passphrase\n"), 0);
    assert_int_equal(pki_write_der(F("server.der"), server_leaf), 0);
    assert_int_equal(pki_write_text(F("empty.pem"), "nothing here\n"), 0);

    client_leaf = mk(&(struct pki_opts){.cn = "node2.test",
                                        .org = "Site B",
                                        .dns = DNS("node2.test", "node2.site-b.test")},
                     root);
    save("client", client_leaf, NULL, NULL);

    srvonly_leaf =
        mk(&(struct pki_opts){.cn = "node3.test", .dns = DNS("node3.test"), .eku = PKI_EKU_SERVER},
           root);
    save("client_srvonly", srvonly_leaf, NULL, NULL);
    save("server_srvonly", srvonly_leaf, NULL, NULL);
    c = mk(&(struct pki_opts){.cn = "node1.test", .dns = DNS("node1.test"), .eku = PKI_EKU_CLIENT},
           root);
    save("server_clionly", c, NULL, NULL);
    noeku_leaf = mk(&(struct pki_opts){.cn = "node3.test",
                                       .dns = DNS("node3.test", "node1.test"),
                                       .eku = PKI_EKU_NONE},
                    root);
    save("noeku", noeku_leaf, NULL, NULL);
    cnonly_leaf = mk(&(struct pki_opts){.cn = "node1.test"}, root);
    /* As csi-driver-spiffe mints them: no subject, one URI SAN. */
    uri_leaf =
        mk(&(struct pki_opts){.uris = DNS("spiffe://site-b.example.org/ns/db/replicator")}, root);
    uri_dns_leaf = mk(&(struct pki_opts){.cn = "node2.test",
                                         .dns = DNS("node2.test"),
                                         .uris = DNS("spiffe://site-b.example.org/ns/db/node2")},
                      root);
    /* A DNS SAN spelt as a SPIFFE ID, a URI SAN spelt as a host name: neither kind crosses. */
    uri_mixup_leaf = mk(&(struct pki_opts){.dns = DNS("spiffe://site-b.example.org/ns/db/dns"),
                                           .uris = DNS("node2.test")},
                        root);
    /* A CN written as a URI is no URI SAN. */
    uri_cn_leaf = mk(&(struct pki_opts){.cn = "spiffe://site-b.example.org/ns/db/cn"}, root);
    save("cnonly", cnonly_leaf, NULL, NULL);
    ip_leaf = mk(&(struct pki_opts){.cn = "10.0.0.2", .ips = DNS("10.0.0.2")}, root);
    wild_leaf = mk(&(struct pki_opts){.cn = "wild", .dns = DNS("*.example.org")}, root);

    c = mk(&(struct pki_opts){.cn = "node2.test",
                              .dns = DNS("node2.test"),
                              .not_before = -10 * DAY,
                              .not_after = -DAY},
           root);
    save("expired", c, NULL, NULL);
    expired_leaf = c;
    c = mk(
        &(struct pki_opts){
            .cn = "node2.test", .dns = DNS("node2.test"), .not_before = DAY, .not_after = 30 * DAY},
        root);
    save("notyet", c, NULL, NULL);
    notyet_leaf = c;
    c = mk(&(struct pki_opts){.cn = "node2.test", .dns = DNS("node2.test")}, other_ca);
    save("other", c, NULL, NULL);
    c = mk(&(struct pki_opts){.cn = "node2.test", .dns = DNS("node2.test")}, NULL);
    save("self", c, NULL, NULL);
    nonca = mk(&(struct pki_opts){.cn = "not a CA", .dns = DNS("notca.test")}, root);
    c = mk(&(struct pki_opts){.cn = "node2.test", .dns = DNS("node2.test")}, nonca);
    save("nonca", c, nonca, NULL);
    c = mk(&(struct pki_opts){.cn = "node2.test", .dns = DNS("node2.test")}, inter);
    save("inter_leaf", c, NULL, NULL);
    save("inter_chain", c, inter, NULL);
    c = mk(&(struct pki_opts){.cn = "node2.test", .dns = DNS("node2.test")}, i2);
    save("deep", c, i2, i1);
    revoked = mk(&(struct pki_opts){.cn = "node2.test", .dns = DNS("node2.test")}, root);
    save("revoked", revoked, NULL, NULL);

    /* One RSA key (slow under valgrind) serves both RSA leaves. */
    rsa = pki_key_new(PKI_KEY_RSA2048);
    assert_non_null(rsa);
    rsa_srv =
        mk(&(struct pki_opts){.cn = "node1.test", .dns = DNS("node1.test"), .key = rsa}, root);
    save("rsa_server", rsa_srv, NULL, NULL);
    c = mk(&(struct pki_opts){.cn = "node2.test", .dns = DNS("node2.test"), .key = rsa}, root);
    save("rsa_client", c, NULL, NULL);
    EVP_PKEY_free(rsa);

    root_crl = keep_crl(pki_crl_new(root, -3600, DAY, revoked, NULL));
    inter_crl = keep_crl(pki_crl_new(inter, -3600, DAY, NULL));
    other_crl = keep_crl(pki_crl_new(other_ca, -3600, DAY, NULL));
    expired_crl = keep_crl(pki_crl_new(root, -2 * DAY, -DAY, NULL));
    assert_int_equal(pki_write_crls(F("root.crl"), root_crl, NULL), 0);
    assert_int_equal(pki_write_crls(F("all.crl"), other_crl, root_crl, inter_crl, NULL), 0);
    assert_int_equal(pki_write_crls(F("expired.crl"), expired_crl, NULL), 0);
    return 0;
}

static int
teardown_pki(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < n_certs; i++) {
        pki_cert_free(all_certs[i]);
    }
    for (i = 0; i < n_crls; i++) {
        X509_CRL_free(all_crls[i]);
    }
    return 0;
}

/* ---- context helpers ---- */

/* Inbound defaults: client certs required, CA = root, no CRL, no allow list. */
static struct tls_ctx_params
server_params(const char *name)
{
    static char crt[PKI_PATH_MAX], key[PKI_PATH_MAX];

    (void)snprintf(crt, sizeof(crt), "%s/%s.crt", dir, name);
    (void)snprintf(key, sizeof(key), "%s/%s.key", dir, name);
    return (struct tls_ctx_params){
        .role = TLS_ROLE_SERVER,
        .cert_file = crt,
        .key_file = key,
        .ca_file = F("ca.crt"),
        .min_version = TLS1_2_VERSION,
        .verify_depth = 4,
        .session_resumption = true,
        .client_cert_required = true,
    };
}

/* Outbound defaults: peer host node1.test, CA = root. */
static struct tls_ctx_params
client_params(const char *name)
{
    static char crt[PKI_PATH_MAX], key[PKI_PATH_MAX];

    (void)snprintf(crt, sizeof(crt), "%s/%s.crt", dir, name);
    (void)snprintf(key, sizeof(key), "%s/%s.key", dir, name);
    return (struct tls_ctx_params){
        .role = TLS_ROLE_CLIENT,
        .cert_file = crt,
        .key_file = key,
        .ca_file = F("ca.crt"),
        .min_version = TLS1_2_VERSION,
        .verify_depth = 4,
        .session_resumption = true,
        .peer_host = "node1.test",
    };
}

static struct tls_ctx *
ctx_ok(const struct tls_ctx_params *p)
{
    char err[512] = "";
    struct tls_ctx *t = tls_ctx_new(p, err, sizeof(err));

    if (t == NULL) {
        print_error("tls_ctx_new: %s\n", err);
    }
    assert_non_null(t);
    assert_string_equal(err, "");
    return t;
}

/* tls_ctx_new() must fail with exactly ${want} in its message. */
static void
ctx_fails(const struct tls_ctx_params *p, const char *want)
{
    char err[512] = "";
    struct tls_ctx *t = tls_ctx_new(p, err, sizeof(err));

    assert_null(t);
    if (strcmp(err, want) != 0) {
        print_error("want: %s\ngot:  %s\n", want, err);
    }
    assert_string_equal(err, want);
    /* Nothing stale may be left to blame the next connection. */
    assert_int_equal(ERR_peek_error(), 0);
}

/* ---- in-memory handshakes ---- */

struct side {
    SSL *ssl;
    struct tls_verify_result res;
    int state;          /* 0 running, 1 handshake done, -1 failed */
    int ssl_error;      /* SSL_get_error() of the failure */
    unsigned long err;  /* the last (most general) OpenSSL error of the failure */
    unsigned long err0; /* the first (most specific) one */
};

struct hs {
    struct side s; /* server */
    struct side c; /* client */
};

/* One handshake step of ${sd}; after the handshake, read to take in tickets and alerts. */
static void
step(struct side *sd)
{
    unsigned char byte;
    int r, e;

    if (sd->state == -1) {
        return;
    }
    ERR_clear_error();
    r = sd->state == 0 ? SSL_do_handshake(sd->ssl) : SSL_read(sd->ssl, &byte, 1);
    if (r == 1 && sd->state == 0) {
        sd->state = 1;
        return;
    }
    e = SSL_get_error(sd->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        return;
    }
    sd->state = -1;
    sd->ssl_error = e;
    sd->err0 = ERR_peek_error();
    sd->err = ERR_peek_last_error();
    ERR_clear_error();
}

static void
hs_start(struct hs *h, SSL *s, SSL *c)
{
    BIO *sb = NULL, *cb = NULL;

    h->s.ssl = s;
    h->c.ssl = c;
    assert_non_null(s);
    assert_non_null(c);
    assert_int_equal(BIO_new_bio_pair(&sb, 0, &cb, 0), 1);
    SSL_set_bio(s, sb, sb);
    SSL_set_bio(c, cb, cb);
}

/* Pump both sides until each is done or failed, within PUMP_ROUNDS, then call tls_ssl_done. */
static void
hs_pump(struct hs *h)
{
    int i, s_done_at = -1, c_done_at = -1;

    for (i = 0; i < PUMP_ROUNDS; i++) {
        step(&h->c);
        step(&h->s);
        /* Once a side is done, a few more rounds let post-handshake alerts/tickets arrive. */
        if (h->s.state != 0 && s_done_at < 0) {
            s_done_at = i;
        }
        if (h->c.state != 0 && c_done_at < 0) {
            c_done_at = i;
        }
        if (s_done_at >= 0 && c_done_at >= 0 && i >= s_done_at + 3 && i >= c_done_at + 3) {
            break;
        }
    }
    if (h->s.state == 1) {
        tls_ssl_done(h->s.ssl, &h->s.res);
    }
    if (h->c.state == 1) {
        tls_ssl_done(h->c.ssl, &h->c.res);
    }
}

static void
hs_run(struct hs *h, struct tls_ctx *server, struct tls_ctx *client)
{
    memset(h, 0, sizeof(*h));
    hs_start(h, tls_ssl_new(server, &h->s.res), tls_ssl_new(client, &h->c.res));
    hs_pump(h);
}

/*
 * Close like the proxy does: SSL_shutdown() (close_notify) after a completed handshake.
 * OpenSSL marks the session of an SSL freed without it as not resumable.
 */
static void
hs_free(struct hs *h)
{
    if (h->s.state == 1) {
        (void)SSL_shutdown(h->s.ssl);
    }
    if (h->c.state == 1) {
        (void)SSL_shutdown(h->c.ssl);
    }
    ERR_clear_error();
    SSL_free(h->s.ssl);
    SSL_free(h->c.ssl);
    h->s.ssl = h->c.ssl = NULL;
}

/*
 * Check a finished exchange: the verifying side (the server when ${server_verifies}) either
 * accepted and both handshakes completed, or rejected, failed its handshake with "certificate
 * verify failed" and made the other side fail through the alert.  Copies its result to
 * ${out} (when not NULL) and returns its reject.
 */
static enum tls_reject
outcome(const struct hs *h, bool server_verifies, struct tls_verify_result *out)
{
    const struct side *v = server_verifies ? &h->s : &h->c;
    const struct side *o = server_verifies ? &h->c : &h->s;

    if (v->res.reject == TLS_REJECT_NONE) {
        assert_int_equal(h->s.state, 1);
        assert_int_equal(h->c.state, 1);
        assert_true(v->res.verified);
    } else {
        assert_int_equal(v->state, -1);
        assert_false(v->res.verified);
        assert_int_equal(ERR_GET_REASON(v->err), SSL_R_CERTIFICATE_VERIFY_FAILED);
        assert_int_equal(o->state, -1);
    }
    if (out != NULL) {
        *out = v->res;
    }
    return v->res.reject;
}

/* Handshake a server made from ${sp} with a client made from ${cp}; see outcome(). */
static enum tls_reject
verify_pair(const struct tls_ctx_params *sp, const struct tls_ctx_params *cp, bool server_verifies,
            struct tls_verify_result *out)
{
    struct tls_ctx *s = ctx_ok(sp), *c = ctx_ok(cp);
    enum tls_reject r;
    struct hs h;

    hs_run(&h, s, c);
    r = outcome(&h, server_verifies, out);
    hs_free(&h);
    tls_ctx_free(s);
    tls_ctx_free(c);
    return r;
}

/*
 * A plain OpenSSL peer presenting NAME.crt ("" = no certificate) and verifying nothing: it
 * can present what tls_ctx_new() refuses as our own certificate (expired, wrong EKU).
 */
static SSL *
raw_ssl(const char *name, bool server)
{
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    SSL *ssl;
    char crt[PKI_PATH_MAX], key[PKI_PATH_MAX];

    assert_non_null(ctx);
    (void)snprintf(crt, sizeof(crt), "%s/%s.crt", dir, name);
    (void)snprintf(key, sizeof(key), "%s/%s.key", dir, name);
    if (name[0] != '\0') {
        assert_int_equal(SSL_CTX_use_certificate_chain_file(ctx, crt), 1);
        assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM), 1);
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    ssl = SSL_new(ctx);
    SSL_CTX_free(ctx); /* the SSL keeps its own reference */
    assert_non_null(ssl);
    if (server) {
        SSL_set_accept_state(ssl);
    } else {
        SSL_set_connect_state(ssl);
    }
    return ssl;
}

/* The default inbound listener verifying a plain client that presents ${client}. */
static enum tls_reject
inbound(const char *client, struct tls_verify_result *out)
{
    struct tls_ctx_params sp = server_params("server");
    struct tls_ctx *s = ctx_ok(&sp);
    enum tls_reject r;
    struct hs h;

    memset(&h, 0, sizeof(h));
    hs_start(&h, tls_ssl_new(s, &h.s.res), raw_ssl(client, false));
    hs_pump(&h);
    r = outcome(&h, true, out);
    hs_free(&h);
    tls_ctx_free(s);
    return r;
}

/* The default outbound listener (peer node1.test) verifying a plain server with ${server}. */
static enum tls_reject
outbound(const char *server, struct tls_verify_result *out)
{
    struct tls_ctx_params cp = client_params("client");
    struct tls_ctx *c = ctx_ok(&cp);
    enum tls_reject r;
    struct hs h;

    memset(&h, 0, sizeof(h));
    hs_start(&h, raw_ssl(server, true), tls_ssl_new(c, &h.c.res));
    hs_pump(&h);
    r = outcome(&h, false, out);
    hs_free(&h);
    tls_ctx_free(c);
    return r;
}

/* ---- tls_name.c ---- */

/* DNS SAN, host, and whether the SAN covers the host (tls_name_match_san() and rule 3). */
static const struct {
    const char *san, *host;
    bool want;
} san_cases[] = {
    {"node1.test", "node1.test", true},
    {"NODE1.Test", "node1.TEST", true},
    {"node1.test.", "node1.test", true},
    {"node1.test", "node1.test.", true},
    {"node1.test", "node2.test", false},
    {"node1.test", "node1.test.evil", false},
    {"node1.test", "xnode1.test", false},
    {"*.example.org", "a.example.org", true},
    {"*.example.org", "A.EXAMPLE.ORG", true},
    {"*.example.org.", "a.example.org", true},
    {"*.example.org", "a.example.org.", true},
    {"*.example.org", "example.org", false},
    {"*.example.org", "a.b.example.org", false},
    {"*.example.org", ".example.org", false},
    {"*.example.org", "*.example.org", false},
    {"*.org", "example.org", false},
    {"*.", "a.", false},
    {"*", "a", false},
    {"f*.example.org", "foo.example.org", false},
    {"*oo.example.org", "foo.example.org", false},
    {"a.*.example.org", "a.b.example.org", false},
    {"*.*.example.org", "a.b.example.org", false},
    {"127.0.0.1", "127.0.0.1", false}, /* an IP host never matches a DNS SAN */
    {"*.0.0.1", "127.0.0.1", false},
    {"::1", "::1", false},
    {"", "", false},
    {"node1.test", "", false},
    {"", "node1.test", false},
    {"xn--bcher-kva.example", "XN--BCHER-KVA.example", true},
};

static void
test_name_match_san(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(san_cases) / sizeof(san_cases[0]); i++) {
        if (tls_name_match_san(san_cases[i].san, san_cases[i].host) != san_cases[i].want) {
            fail_msg("san %s host %s: want %d", san_cases[i].san, san_cases[i].host,
                     san_cases[i].want);
        }
    }
    assert_false(tls_name_match_san(NULL, "a"));
    assert_false(tls_name_match_san("a", NULL));
}

static void
test_name_match_allow(void **state)
{
    static const struct {
        const char *entry, *name;
        bool want;
    } cases[] = {
        {"node2.example.org", "node2.example.org", true},
        {"NODE2.example.org", "node2.EXAMPLE.org.", true},
        {"node2.example.org", "node3.example.org", false},
        {"*.site-b.example.org", "a.site-b.example.org", true},
        {"*.site-b.example.org", "A.Site-B.example.org", true},
        {"*.site-b.example.org", "a.b.site-b.example.org", false},
        {"*.site-b.example.org", "site-b.example.org", false},
        {"*.site-b.example.org", "*.site-b.example.org", false},
        {"f*.example.org", "foo.example.org", false},
        {"10.0.0.2", "10.0.0.2", true},
        {"10.0.0.2", "10.0.0.3", false},
        {"::1", "0:0::1", true},
        {"[::1]", "::1", true},
        {"::1", "127.0.0.1", false},
        {"::ffff:10.0.0.2", "10.0.0.2", false},
        {"*.0.0.2", "10.0.0.2", false},
        {"10.0.0.2", "node.test", false},
        {"node.test", "10.0.0.2", false},
        {"", "", false},
        /* SPIFFE IDs: byte for byte, or one more path segment under a last "*" segment */
        {"spiffe://site-b.example.org/ns/db/replicator",
         "spiffe://site-b.example.org/ns/db/replicator", true},
        {"spiffe://site-b.example.org/ns/db/*", "spiffe://site-b.example.org/ns/db/replicator",
         true},
        {"spiffe://site-b.example.org/ns/db/*", "spiffe://site-b.example.org/ns/db/a.b-c_D9", true},
        {"spiffe://site-b.example.org/ns/db/*", "spiffe://site-b.example.org/ns/db", false},
        {"spiffe://site-b.example.org/ns/db/*", "spiffe://site-b.example.org/ns/db/", false},
        {"spiffe://site-b.example.org/ns/db/*", "spiffe://site-b.example.org/ns/db/a/b", false},
        {"spiffe://site-b.example.org/ns/db/*", "spiffe://site-b.example.org/ns/dbx/a", false},
        {"spiffe://site-b.example.org/ns/db/*", "spiffe://site-b.example.org/ns/db/..", false},
        {"spiffe://site-b.example.org/ns/db/*", "spiffe://site-b.example.org/ns/db/.", false},
        {"spiffe://site-b.example.org/ns/db/*", "spiffe://site-b.example.org/ns/db/*", false},
        {"spiffe://site-b.example.org/ns/db/*", "spiffe://site-b.example.org/ns/db/a?b", false},
        {"spiffe://site-b.example.org/ns/db/*", "spiffe://site-b.example.org/ns/db/a%2Fb", false},
        {"spiffe://site-b.example.org/ns/db/*", "spiffe://other.example.org/ns/db/x", false},
        {"spiffe://site-b.example.org/ns/db/*", "spiffe://site-b.example.org.evil/ns/db/x", false},
        /* the path is case-sensitive, and nothing is decoded or normalised */
        {"spiffe://site-b.example.org/ns/db/replicator",
         "spiffe://site-b.example.org/ns/db/Replicator", false},
        {"spiffe://site-b.example.org/ns/db/*", "spiffe://site-b.example.org/NS/db/x", false},
        {"spiffe://site-b.example.org/ns/db/replicator",
         "spiffe://SITE-B.example.org/ns/db/replicator", false},
        {"spiffe://site-b.example.org/ns/db/r", "spiffe://site-b.example.org/ns/db/%72", false},
        {"spiffe://site-b.example.org/ns/db/r", "spiffe://site-b.example.org/ns/db/r/", false},
        {"spiffe://site-b.example.org/ns/db/r", "spiffe://site-b.example.org/ns/x/../db/r", false},
        {"spiffe://site-b.example.org/ns/db/r", "spiffe://site-b.example.org/ns/db/r?x", false},
        /* URI entries and DNS names never meet, whichever way round */
        {"*.example.org", "spiffe://a.example.org", false},
        {"*.site-b.example.org", "spiffe://n1.site-b.example.org/x", false},
        {"spiffe://site-b.example.org", "site-b.example.org", false},
        {"spiffe://site-b.example.org/*", "site-b.example.org", false},
        {"spiffe://10.0.0.2", "10.0.0.2", false},
        {"https://site-b.example.org/x", "https://site-b.example.org/x", false},
        {"spiffe://site-b.example.org", "spiffe://site-b.example.org", true},
        {"spiffe://site-b.example.org/*", "spiffe://site-b.example.org/x", true},
        /* a DNS name that is not a host name matches nothing, not even exactly */
        {"*.example.org", "a\".example.org", false},
        {"a\".example.org", "a\".example.org", false},
        {"*.example.org", "a b.example.org", false},
        {"*.example.org", "a:1.example.org", false},
        {"*.example.org", "a/b.example.org", false},
        {"*.example.org", "a..example.org", false},
        {"example.org", ".example.org", false},
        {"*.example.org", "_db.example.org", true},
        {"node_1.test", "node_1.test", true},
    };
    char long_id[TLS_SPIFFE_ID_MAX + 2];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (tls_name_match_allow(cases[i].entry, cases[i].name) != cases[i].want) {
            fail_msg("entry %s name %s: want %d", cases[i].entry, cases[i].name, cases[i].want);
        }
    }
    /* A SPIFFE ID is at most 2048 bytes: a longer name matches nothing, not even itself. */
    memcpy(long_id, "spiffe://td/", 12);
    memset(long_id + 12, 'a', TLS_SPIFFE_ID_MAX - 12);
    long_id[TLS_SPIFFE_ID_MAX] = '\0';
    assert_true(tls_name_match_allow(long_id, long_id));
    assert_true(tls_name_match_allow("spiffe://td/*", long_id));
    long_id[TLS_SPIFFE_ID_MAX] = 'a';
    long_id[TLS_SPIFFE_ID_MAX + 1] = '\0';
    assert_false(tls_name_match_allow(long_id, long_id));
    assert_false(tls_name_match_allow("spiffe://td/*", long_id));
    assert_true(tls_name_is_uri("spiffe://x"));
    assert_false(tls_name_is_uri("x.example.org"));
    assert_false(tls_name_is_uri(NULL));
}

/* A URI SAN over 255 bytes: shown cut with "[...]", never a name, never matched. */
static void
test_long_uri_shown_cut(void **state)
{
    char uri[320], want[300];
    const char *uris[] = {uri, NULL};
    const char *const allow[] = {uri, "spiffe://td/*"};
    struct tls_peer_info info;
    struct pki_cert *c;

    (void)state;
    memcpy(uri, "spiffe://td/", 12);
    memset(uri + 12, 'a', 300 - 12);
    uri[300] = '\0';
    c = mk(&(struct pki_opts){.uris = uris}, root);
    memset(&info, 0, sizeof(info));
    tls_peer_info_fill(c->x509, false, &info);
    snprintf(want, sizeof(want), "URI:%.250s[...]", uri);
    assert_string_equal(info.sans, want);
    assert_string_equal(info.name, "");
    assert_int_equal(tls_check_leaf(c->x509, false, NULL, allow, 2, false, &info),
                     TLS_REJECT_NAME_NOT_ALLOWED);
    assert_false(tls_name_match_allow("spiffe://td/*", info.sans + 4));
}

static void
test_name_is_host(void **state)
{
    char label[80], name[300];

    (void)state;
    assert_true(tls_name_is_host("node1.test"));
    assert_true(tls_name_is_host("node1.test."));
    assert_true(tls_name_is_host("localhost"));
    assert_true(tls_name_is_host("xn--bcher-kva.example"));
    assert_true(tls_name_is_host("_db._tcp.example.org"));
    assert_true(tls_name_is_host("10.0.0.2"));
    assert_false(tls_name_is_host(NULL));
    assert_false(tls_name_is_host(""));
    assert_false(tls_name_is_host("."));
    assert_false(tls_name_is_host("a..b"));
    assert_false(tls_name_is_host(".a"));
    assert_false(tls_name_is_host("a.."));
    assert_false(tls_name_is_host("*.example.org"));
    assert_false(tls_name_is_host("spiffe://site-b.example.org/ns/db/replicator"));
    assert_false(tls_name_is_host("a\".example.org"));
    assert_false(tls_name_is_host("a b"));
    assert_false(tls_name_is_host("a:b"));
    assert_false(tls_name_is_host("::1"));
    assert_false(tls_name_is_host("a/b"));
    assert_false(tls_name_is_host("caf\xc3\xa9.example"));
    /* a label of 63 bytes is one, of 64 none; 253 bytes in all, not 254 */
    memset(label, 'a', 64);
    label[63] = '\0';
    assert_true(tls_name_is_host(label));
    label[63] = 'a';
    label[64] = '\0';
    assert_false(tls_name_is_host(label));
    memset(name, 'a', 253);
    for (size_t i = 50; i < 253; i += 50) {
        name[i] = '.';
    }
    name[253] = '\0';
    assert_true(tls_name_is_host(name));
    name[253] = 'a';
    name[254] = '\0';
    assert_false(tls_name_is_host(name));
}

static void
test_name_is_ip(void **state)
{
    unsigned char bin[16];
    size_t len = 0;

    (void)state;
    assert_true(tls_name_is_ip("127.0.0.1", bin, &len));
    assert_int_equal(len, 4);
    assert_memory_equal(bin, "\x7f\x00\x00\x01", 4);
    assert_true(tls_name_is_ip("::1", bin, &len));
    assert_int_equal(len, 16);
    assert_int_equal(bin[15], 1);
    assert_true(tls_name_is_ip("[fe80::1]", bin, &len));
    assert_int_equal(len, 16);
    assert_true(tls_name_is_ip("::ffff:1.2.3.4", NULL, NULL));
    assert_false(tls_name_is_ip("1.2.3", NULL, NULL));
    assert_false(tls_name_is_ip("1.2.3.4 ", NULL, NULL));
    assert_false(tls_name_is_ip("node1.test", NULL, NULL));
    assert_false(tls_name_is_ip("", NULL, NULL));
    assert_false(tls_name_is_ip(NULL, NULL, NULL));
    assert_false(tls_name_is_ip("[::1", NULL, NULL));
}

/* ---- tls_verify.c: pure functions ---- */

static void
test_reject_from_x509(void **state)
{
    static const struct {
        int err;
        enum tls_reject want;
    } cases[] = {
        {X509_V_OK, TLS_REJECT_NONE},
        {X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT, TLS_REJECT_UNKNOWN_CA},
        {X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, TLS_REJECT_UNKNOWN_CA},
        {X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE, TLS_REJECT_UNKNOWN_CA},
        {X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, TLS_REJECT_SELF_SIGNED},
        {X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN, TLS_REJECT_SELF_SIGNED},
        {X509_V_ERR_INVALID_CA, TLS_REJECT_NOT_CA},
        {X509_V_ERR_CERT_HAS_EXPIRED, TLS_REJECT_EXPIRED},
        {X509_V_ERR_CERT_NOT_YET_VALID, TLS_REJECT_NOT_YET_VALID},
        {X509_V_ERR_CERT_REVOKED, TLS_REJECT_REVOKED},
        {X509_V_ERR_UNABLE_TO_GET_CRL, TLS_REJECT_CRL},
        {X509_V_ERR_CRL_HAS_EXPIRED, TLS_REJECT_CRL},
        {X509_V_ERR_CRL_NOT_YET_VALID, TLS_REJECT_CRL},
        {X509_V_ERR_CRL_SIGNATURE_FAILURE, TLS_REJECT_CRL},
        {X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE, TLS_REJECT_CRL},
        {X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER, TLS_REJECT_CRL},
        {X509_V_ERR_CERT_CHAIN_TOO_LONG, TLS_REJECT_CHAIN_TOO_LONG},
        {X509_V_ERR_CERT_SIGNATURE_FAILURE, TLS_REJECT_BAD_SIGNATURE},
        {X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE, TLS_REJECT_BAD_SIGNATURE},
        {X509_V_ERR_PATH_LENGTH_EXCEEDED, TLS_REJECT_CHAIN_OTHER},
        {X509_V_ERR_UNSPECIFIED, TLS_REJECT_CHAIN_OTHER},
        {X509_V_ERR_INVALID_PURPOSE, TLS_REJECT_CHAIN_OTHER},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (tls_reject_from_x509(cases[i].err) != cases[i].want) {
            fail_msg("x509 error %d: want %s, got %s", cases[i].err, tls_reject_str(cases[i].want),
                     tls_reject_str(tls_reject_from_x509(cases[i].err)));
        }
    }
}

static void
test_reject_str(void **state)
{
    static const char *const want[TLS_REJECT__COUNT] = {
        "none",          "no_cert",          "unknown_ca",  "self_signed", "not_ca",
        "expired",       "not_yet_valid",    "revoked",     "crl",         "chain_too_long",
        "bad_signature", "chain_other",      "eku_missing", "eku_wrong",   "no_name",
        "name_mismatch", "name_not_allowed",
    };
    int i;

    (void)state;
    for (i = 0; i < TLS_REJECT__COUNT; i++) {
        assert_string_equal(tls_reject_str((enum tls_reject)i), want[i]);
    }
    assert_string_equal(tls_reject_str(TLS_REJECT__COUNT), "unknown");
}

static void
test_peer_info_fill(void **state)
{
    struct tls_peer_info info;

    (void)state;
    memset(&info, 0, sizeof(info));
    (void)snprintf(info.detail, sizeof(info.detail), "kept");
    tls_peer_info_fill(server_leaf->x509, false, &info);
    assert_string_equal(info.subject, "CN=node1.test");
    assert_string_equal(info.issuer, "CN=Ferry Test Root CA,O=Ferry Test");
    assert_string_equal(info.sans, "DNS:node1.test,DNS:*.site-a.test,IP:127.0.0.1,IP:::1");
    assert_string_equal(info.name, "node1.test");
    assert_string_equal(info.detail, "kept");
    assert_int_equal(strlen(info.not_after), strlen("2025-01-31 12:00:00 UTC"));

    tls_peer_info_fill(client_leaf->x509, false, &info);
    assert_string_equal(info.subject, "CN=node2.test,O=Site B");

    tls_peer_info_fill(ip_leaf->x509, true, &info);
    assert_string_equal(info.name, "10.0.0.2");
    assert_string_equal(info.sans, "IP:10.0.0.2");

    /* CN only with cn_fallback, and only without DNS/IP SANs. */
    tls_peer_info_fill(cnonly_leaf->x509, false, &info);
    assert_string_equal(info.name, "");
    assert_string_equal(info.sans, "");
    tls_peer_info_fill(cnonly_leaf->x509, true, &info);
    assert_string_equal(info.name, "node1.test");

    tls_peer_info_fill(NULL, true, &info);
    assert_string_equal(info.subject, "");
}

/*
 * tls_check_leaf() decodes the SANs once for the names it shows and the names it matches: what
 * it shows is what tls_peer_info_fill() shows, whichever rule ends the check (EKU failure,
 * no name rule, a match, a mismatch), and a NULL leaf leaves every string empty.
 */
static void
test_check_leaf_info_as_fill(void **state)
{
    X509 *leaves[] = {server_leaf->x509, client_leaf->x509,  ip_leaf->x509,
                      cnonly_leaf->x509, uri_dns_leaf->x509, noeku_leaf->x509};
    const char *const allow[] = {"node2.test"};
    struct tls_peer_info want, got;
    size_t i, k;

    (void)state;
    for (i = 0; i < sizeof(leaves) / sizeof(leaves[0]); i++) {
        for (k = 0; k < 3; k++) {
            memset(&want, 0, sizeof(want));
            memset(&got, 0, sizeof(got));
            tls_peer_info_fill(leaves[i], true, &want);
            (void)tls_check_leaf(leaves[i], k == 1, k == 1 ? "node1.test" : NULL,
                                 k == 2 ? allow : NULL, k == 2 ? 1 : 0, true, &got);
            assert_string_equal(got.subject, want.subject);
            assert_string_equal(got.issuer, want.issuer);
            assert_string_equal(got.sans, want.sans);
            assert_string_equal(got.not_before, want.not_before);
            assert_string_equal(got.not_after, want.not_after);
        }
    }
    memset(&got, 0x41, sizeof(got));
    got.subject[sizeof(got.subject) - 1] = '\0';
    assert_int_equal(tls_check_leaf(NULL, false, NULL, NULL, 0, false, &got), TLS_REJECT_NO_CERT);
    assert_string_equal(got.subject, "");
    assert_string_equal(got.sans, "");
    assert_string_equal(got.name, "");
}

static void
test_check_leaf_eku(void **state)
{
    struct tls_peer_info info;

    (void)state;
    /* need_server_auth = true: we are the client checking a server. */
    assert_int_equal(tls_check_leaf(server_leaf->x509, true, NULL, NULL, 0, false, &info),
                     TLS_REJECT_NONE);
    assert_int_equal(tls_check_leaf(server_leaf->x509, false, NULL, NULL, 0, false, &info),
                     TLS_REJECT_NONE);
    assert_int_equal(tls_check_leaf(srvonly_leaf->x509, true, NULL, NULL, 0, false, &info),
                     TLS_REJECT_NONE);
    assert_int_equal(tls_check_leaf(srvonly_leaf->x509, false, NULL, NULL, 0, false, &info),
                     TLS_REJECT_EKU_WRONG);
    assert_int_equal(tls_check_leaf(noeku_leaf->x509, true, NULL, NULL, 0, false, &info),
                     TLS_REJECT_EKU_MISSING);
    assert_int_equal(tls_check_leaf(noeku_leaf->x509, false, NULL, NULL, 0, false, &info),
                     TLS_REJECT_EKU_MISSING);
    /* EKU comes before the name: a wrong host does not hide the EKU problem. */
    assert_int_equal(tls_check_leaf(noeku_leaf->x509, true, "node9.test", NULL, 0, false, &info),
                     TLS_REJECT_EKU_MISSING);
}

static void
test_check_leaf_names(void **state)
{
    const char *const allow[] = {"node9.test", "*.site-b.test", "10.0.0.2"};
    const char *const allow_exact[] = {"node2.test"};
    struct tls_peer_info info;

    (void)state;
    /* Outbound: SAN against the peer host. */
    memset(&info, 0, sizeof(info));
    assert_int_equal(tls_check_leaf(server_leaf->x509, true, "NODE1.test.", NULL, 0, false, &info),
                     TLS_REJECT_NONE);
    assert_string_equal(info.name, "node1.test");
    assert_int_equal(
        tls_check_leaf(server_leaf->x509, true, "db.site-a.test", NULL, 0, false, &info),
        TLS_REJECT_NONE);
    assert_string_equal(info.name, "*.site-a.test");
    assert_int_equal(
        tls_check_leaf(server_leaf->x509, true, "a.db.site-a.test", NULL, 0, false, &info),
        TLS_REJECT_NAME_MISMATCH);
    assert_int_equal(tls_check_leaf(server_leaf->x509, true, "node9.test", NULL, 0, false, &info),
                     TLS_REJECT_NAME_MISMATCH);
    assert_string_equal(info.detail, "node9.test");
    /* IP literals against IP SANs only, compared as addresses. */
    assert_int_equal(tls_check_leaf(server_leaf->x509, true, "127.0.0.1", NULL, 0, false, &info),
                     TLS_REJECT_NONE);
    assert_string_equal(info.name, "127.0.0.1");
    assert_int_equal(tls_check_leaf(server_leaf->x509, true, "0:0::1", NULL, 0, false, &info),
                     TLS_REJECT_NONE);
    assert_int_equal(tls_check_leaf(server_leaf->x509, true, "[::1]", NULL, 0, false, &info),
                     TLS_REJECT_NONE);
    assert_int_equal(tls_check_leaf(server_leaf->x509, true, "127.0.0.2", NULL, 0, false, &info),
                     TLS_REJECT_NAME_MISMATCH);
    /* A wildcard SAN covers exactly one label. */
    assert_int_equal(tls_check_leaf(wild_leaf->x509, true, "10.example.org", NULL, 0, false, &info),
                     TLS_REJECT_NONE);
    assert_int_equal(tls_check_leaf(wild_leaf->x509, true, "example.org", NULL, 0, false, &info),
                     TLS_REJECT_NAME_MISMATCH);

    /* CN fallback: off -> no name; on -> the CN is the name; never used when SANs exist. */
    assert_int_equal(tls_check_leaf(cnonly_leaf->x509, true, "node1.test", NULL, 0, false, &info),
                     TLS_REJECT_NO_NAME);
    assert_int_equal(tls_check_leaf(cnonly_leaf->x509, true, "node1.test", NULL, 0, true, &info),
                     TLS_REJECT_NONE);
    assert_string_equal(info.name, "node1.test");
    assert_int_equal(tls_check_leaf(cnonly_leaf->x509, true, "node2.test", NULL, 0, true, &info),
                     TLS_REJECT_NAME_MISMATCH);
    assert_int_equal(tls_check_leaf(ip_leaf->x509, true, "10.0.0.2", NULL, 0, true, &info),
                     TLS_REJECT_NONE);
    /* Inbound without allow: no name rule, even for a CN-only certificate. */
    assert_int_equal(tls_check_leaf(cnonly_leaf->x509, false, NULL, NULL, 0, false, &info),
                     TLS_REJECT_NONE);

    /* Inbound allow lists. */
    assert_int_equal(tls_check_leaf(client_leaf->x509, false, NULL, allow, 3, false, &info),
                     TLS_REJECT_NONE);
    assert_string_equal(info.name, "node2.site-b.test");
    assert_int_equal(tls_check_leaf(client_leaf->x509, false, NULL, allow_exact, 1, false, &info),
                     TLS_REJECT_NONE);
    assert_string_equal(info.name, "node2.test");
    assert_int_equal(tls_check_leaf(ip_leaf->x509, false, NULL, allow, 3, false, &info),
                     TLS_REJECT_NONE);
    assert_string_equal(info.name, "10.0.0.2");
    assert_int_equal(tls_check_leaf(server_leaf->x509, false, NULL, allow, 3, false, &info),
                     TLS_REJECT_NAME_NOT_ALLOWED);
    assert_int_equal(tls_check_leaf(client_leaf->x509, false, NULL, allow, 0, false, &info),
                     TLS_REJECT_NAME_NOT_ALLOWED);
    assert_int_equal(tls_check_leaf(cnonly_leaf->x509, false, NULL, allow, 3, false, &info),
                     TLS_REJECT_NO_NAME);
}

/*
 * A leaf for rule 3 alone (never signed: tls_check_leaf() looks at names and EKU only): EKU
 * serverAuth, the DNS SAN ${dns} when not NULL (it may be ""), the CN ${cn} when not NULL nor ""
 * (an empty CN is no CN).
 */
static X509 *
name_leaf(const char *dns, const char *cn)
{
    X509 *x = X509_new();
    X509_EXTENSION *eku = X509V3_EXT_conf_nid(NULL, NULL, NID_ext_key_usage, "serverAuth");
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    GENERAL_NAME *g = GENERAL_NAME_new();
    ASN1_IA5STRING *v = ASN1_IA5STRING_new();

    assert_non_null(x);
    assert_non_null(eku);
    assert_non_null(gens);
    assert_non_null(g);
    assert_non_null(v);
    assert_int_equal(X509_set_version(x, 2), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -3600));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
    assert_int_equal(X509_add_ext(x, eku, -1), 1);
    X509_EXTENSION_free(eku);
    if (cn != NULL && cn[0] != '\0') {
        assert_int_equal(X509_NAME_add_entry_by_NID(X509_get_subject_name(x), NID_commonName,
                                                    MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
                                                    0),
                         1);
    }
    if (dns != NULL) {
        assert_int_equal(ASN1_STRING_set(v, dns, (int)strlen(dns)), 1);
        GENERAL_NAME_set0_value(g, GEN_DNS, v);
        assert_true(sk_GENERAL_NAME_push(gens, g) > 0);
        assert_int_equal(X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, 0), 1);
    } else {
        ASN1_IA5STRING_free(v);
        GENERAL_NAME_free(g);
    }
    GENERAL_NAMES_free(gens);
    return x;
}

/*
 * Rule 3 on real certificates gives the verdict of tls_name_match_san() for each row of
 * san_cases (a DNS SAN), and the same for a CN-only leaf with cn_fallback (but an IP literal
 * host is compared with a CN that is an IP literal as an address).  The extra rows pin what
 * ferry's rule says where OpenSSL's X509_check_host() says otherwise: a trailing dot on the
 * SAN, a wildcard over a label that is not letters, digits and '-', a literal "*" host.
 */
static void
test_check_leaf_san_table(void **state)
{
    static const struct {
        const char *san, *host;
        bool want;
    } more[] = {
        {"*.example.org", "a_b.example.org", true},  {"*.a_b.test", "x.a_b.test", true},
        {"*.example.org.", "a.example.org.", true},  {"example.org", "example.org..", false},
        {"f*.example.org", "f*.example.org", false},
    };
    const size_t n = sizeof(san_cases) / sizeof(san_cases[0]);
    struct tls_peer_info info;
    size_t i;

    (void)state;
    for (i = 0; i < n + sizeof(more) / sizeof(more[0]); i++) {
        const char *san = i < n ? san_cases[i].san : more[i - n].san;
        const char *host = i < n ? san_cases[i].host : more[i - n].host;
        bool want = i < n ? san_cases[i].want : more[i - n].want;
        unsigned char hb[16], cb[16];
        size_t hl = 0, cl = 0;
        bool want_cn = tls_name_is_ip(host, hb, &hl)
                           ? tls_name_is_ip(san, cb, &cl) && cl == hl && memcmp(cb, hb, hl) == 0
                           : want;
        X509 *x = name_leaf(san, "cn.invalid");
        X509 *c = name_leaf(NULL, san);
        enum tls_reject r;

        memset(&info, 0, sizeof(info));
        r = tls_check_leaf(x, true, host, NULL, 0, true, &info);
        if ((r == TLS_REJECT_NONE) != want || (!want && r != TLS_REJECT_NAME_MISMATCH)) {
            fail_msg("SAN %s host %s: reject %s, want match %d", san, host, tls_reject_str(r),
                     want);
        }
        if (want) {
            assert_string_equal(info.name, san);
        }
        r = tls_check_leaf(c, true, host, NULL, 0, true, &info);
        if ((r == TLS_REJECT_NONE) != want_cn) {
            fail_msg("CN %s host %s: reject %s, want match %d", san, host, tls_reject_str(r),
                     want_cn);
        }
        if (want_cn) {
            assert_string_equal(info.name, san);
        }
        /* Without cn_fallback the CN names nothing. */
        assert_int_equal(tls_check_leaf(c, true, host, NULL, 0, false, &info), TLS_REJECT_NO_NAME);
        X509_free(x);
        X509_free(c);
    }
}

/* Rule 3 with URI SANs: allow entries that are SPIFFE IDs (CONTRACT §4). */
static void
test_check_leaf_uri(void **state)
{
    const char *const allow_uri[] = {"node9.test", "spiffe://site-b.example.org/ns/db/*"};
    const char *const allow_dns[] = {"node2.test", "spiffe://site-b.example.org/ns/db/*"};
    const char *const allow_other[] = {"spiffe://site-b.example.org/ns/web/*",
                                       "spiffe://site-b.example.org/ns/db"};
    struct tls_peer_info info;
    char buf[512];

    (void)state;
    memset(&info, 0, sizeof(info));
    /* A URI-only leaf: accepted by a matching pattern, and the URI becomes its name. */
    assert_int_equal(tls_check_leaf(uri_leaf->x509, false, NULL, allow_uri, 2, false, &info),
                     TLS_REJECT_NONE);
    assert_string_equal(info.name, "spiffe://site-b.example.org/ns/db/replicator");
    assert_string_equal(info.sans, "URI:spiffe://site-b.example.org/ns/db/replicator");
    /* ... refused by patterns that do not match, naming the peer by its URI. */
    assert_int_equal(tls_check_leaf(uri_leaf->x509, false, NULL, allow_other, 2, false, &info),
                     TLS_REJECT_NAME_NOT_ALLOWED);
    assert_string_equal(
        tls_reject_describe(TLS_REJECT_NAME_NOT_ALLOWED, TLS_ROLE_SERVER, &info, buf, sizeof(buf)),
        "certificate for spiffe://site-b.example.org/ns/db/replicator is not in allow list");
    /* ... never taken for a host name, and without allow no name rule applies at all: nothing
     * matched the URI, so it is no name (shown in sans only). */
    assert_int_equal(tls_check_leaf(uri_leaf->x509, false, NULL, NULL, 0, false, &info),
                     TLS_REJECT_NONE);
    assert_string_equal(info.name, "");
    assert_string_equal(info.sans, "URI:spiffe://site-b.example.org/ns/db/replicator");
    assert_int_equal(
        tls_check_leaf(uri_leaf->x509, true, "site-b.example.org", NULL, 0, true, &info),
        TLS_REJECT_NO_NAME);
    /* DNS and URI SANs: the first SAN in the certificate's order that matches is the name. */
    assert_int_equal(tls_check_leaf(uri_dns_leaf->x509, false, NULL, allow_dns, 2, false, &info),
                     TLS_REJECT_NONE);
    assert_string_equal(info.name, "node2.test");
    assert_int_equal(tls_check_leaf(uri_dns_leaf->x509, false, NULL, allow_uri, 2, false, &info),
                     TLS_REJECT_NONE);
    assert_string_equal(info.name, "spiffe://site-b.example.org/ns/db/node2");
    /* A DNS SAN spelt "spiffe://..." matches no URI entry, a URI SAN "node2.test" no host. */
    assert_int_equal(tls_check_leaf(uri_mixup_leaf->x509, false, NULL, allow_uri, 2, false, &info),
                     TLS_REJECT_NAME_NOT_ALLOWED);
    assert_int_equal(tls_check_leaf(uri_mixup_leaf->x509, false, NULL, allow_dns, 2, false, &info),
                     TLS_REJECT_NAME_NOT_ALLOWED);
    /* A CN that looks like a SPIFFE ID is not one, even with cn_fallback. */
    assert_int_equal(tls_check_leaf(uri_cn_leaf->x509, false, NULL, allow_uri, 2, true, &info),
                     TLS_REJECT_NO_NAME);
    assert_string_equal(info.name, "");
}

static void
test_reject_describe(void **state)
{
    struct tls_peer_info info;
    char buf[512];

    (void)state;
    memset(&info, 0, sizeof(info));
    tls_peer_info_fill(srvonly_leaf->x509, false, &info);
    assert_string_equal(
        tls_reject_describe(TLS_REJECT_EKU_WRONG, TLS_ROLE_SERVER, &info, buf, sizeof(buf)),
        "certificate for node3.test lacks extendedKeyUsage clientAuth");
    assert_string_equal(
        tls_reject_describe(TLS_REJECT_EKU_MISSING, TLS_ROLE_SERVER, &info, buf, sizeof(buf)),
        "certificate for node3.test has no extendedKeyUsage extension; ferry requires clientAuth");
    assert_string_equal(
        tls_reject_describe(TLS_REJECT_EKU_WRONG, TLS_ROLE_CLIENT, &info, buf, sizeof(buf)),
        "certificate for node3.test lacks extendedKeyUsage serverAuth");

    memset(&info, 0, sizeof(info));
    assert_int_equal(tls_check_leaf(client_leaf->x509, true, "node9.test", NULL, 0, false, &info),
                     TLS_REJECT_NAME_MISMATCH);
    assert_string_equal(
        tls_reject_describe(TLS_REJECT_NAME_MISMATCH, TLS_ROLE_CLIENT, &info, buf, sizeof(buf)),
        "certificate for node2.test does not cover peer host node9.test (SANs: "
        "DNS:node2.test,DNS:node2.site-b.test)");
    assert_string_equal(
        tls_reject_describe(TLS_REJECT_NAME_NOT_ALLOWED, TLS_ROLE_SERVER, &info, buf, sizeof(buf)),
        "certificate for node2.test is not in allow list");

    memset(&info, 0, sizeof(info));
    (void)snprintf(info.name, sizeof(info.name), "node2.test");
    (void)snprintf(info.issuer, sizeof(info.issuer), "CN=Other CA");
    (void)snprintf(info.detail, sizeof(info.detail), "unable to get local issuer certificate");
    assert_string_equal(
        tls_reject_describe(TLS_REJECT_UNKNOWN_CA, TLS_ROLE_SERVER, &info, buf, sizeof(buf)),
        "certificate for node2.test was issued by CN=Other CA, which is not in tls.ca (unable to "
        "get local issuer certificate)");
    (void)snprintf(info.not_after, sizeof(info.not_after), "2024-01-02 03:04:05 UTC");
    assert_string_equal(
        tls_reject_describe(TLS_REJECT_EXPIRED, TLS_ROLE_SERVER, &info, buf, sizeof(buf)),
        "certificate for node2.test expired on 2024-01-02 03:04:05 UTC");
    assert_string_equal(
        tls_reject_describe(TLS_REJECT_NO_CERT, TLS_ROLE_SERVER, &info, buf, sizeof(buf)),
        "client sent no certificate (client_cert: required)");

    /* No name: the subject names the peer. */
    memset(&info, 0, sizeof(info));
    tls_peer_info_fill(cnonly_leaf->x509, false, &info);
    assert_string_equal(
        tls_reject_describe(TLS_REJECT_NO_NAME, TLS_ROLE_CLIENT, &info, buf, sizeof(buf)),
        "certificate for CN=node1.test has no DNS or IP subjectAltName (its CN is used only "
        "with tls.cn_fallback: true)");

    /* Every reason has words, and a short buffer stays terminated. */
    for (int r = 0; r < TLS_REJECT__COUNT; r++) {
        assert_true(strlen(tls_reject_describe((enum tls_reject)r, TLS_ROLE_SERVER, &info, buf,
                                               sizeof(buf))) > 10);
    }
    assert_int_equal(
        strlen(tls_reject_describe(TLS_REJECT_EKU_WRONG, TLS_ROLE_SERVER, &info, buf, 8)), 7);
}

/* ---- tls_error.c ---- */

static void
test_error_string(void **state)
{
    char buf[512];
    BIO *bio;

    (void)state;
    ERR_clear_error();
    assert_string_equal(tls_error_string(buf, sizeof(buf)), "");
    bio = BIO_new_file("/nonexistent/ferry", "r");
    assert_null(bio);
    (void)tls_error_string(buf, sizeof(buf));
    assert_non_null(strstr(buf, "No such file or directory"));
    assert_null(strstr(buf, ".c:"));
    assert_int_equal(ERR_peek_error(), 0);
    /* Truncation keeps the string terminated. */
    (void)BIO_new_file("/nonexistent/ferry", "r");
    assert_int_equal(strlen(tls_error_string(buf, 10)), 9);
    assert_int_equal(ERR_peek_error(), 0);
}

/* ---- tls_ctx_new: start checks ---- */

static void
test_ctx_good(void **state)
{
    struct tls_ctx_params sp = server_params("server");
    struct tls_ctx_params cp = client_params("client");

    (void)state;
    tls_ctx_free(ctx_ok(&sp));
    tls_ctx_free(ctx_ok(&cp));
    sp.crl_file = F("all.crl");
    tls_ctx_free(ctx_ok(&sp));
    tls_ctx_free(NULL);
}

static void
test_ctx_key_mismatch(void **state)
{
    struct tls_ctx_params sp = server_params("server");
    char want[3 * PKI_PATH_MAX], key[PKI_PATH_MAX];

    (void)state;
    (void)snprintf(key, sizeof(key), "%s/client.key", dir);
    sp.key_file = key;
    (void)snprintf(want, sizeof(want), "tls.key %s does not match the certificate in %s", key,
                   sp.cert_file);
    ctx_fails(&sp, want);
    /* An RSA key with an EC certificate. */
    (void)snprintf(key, sizeof(key), "%s/rsa_server.key", dir);
    (void)snprintf(want, sizeof(want), "tls.key %s does not match the certificate in %s", key,
                   sp.cert_file);
    ctx_fails(&sp, want);
}

/*
 * A FIFO, a device or a file over 1 MiB as any file: refused at once by its metadata or size
 * (never a blocking open), with the setting and the reason; a good context loads from memory.
 */
static void
test_ctx_non_regular_files(void **state)
{
    struct tls_ctx_params sp;
    char want[3 * PKI_PATH_MAX], pipe[PKI_PATH_MAX], big[PKI_PATH_MAX];
    const char *sel[] = {"tls.cert", "tls.key", "tls.ca", "tls.crl", "tls.key_passphrase_file"};
    FILE *f;

    (void)state;
    (void)snprintf(pipe, sizeof(pipe), "%s/unit.fifo", dir);
    (void)unlink(pipe);
    assert_int_equal(mkfifo(pipe, 0600), 0);
    for (size_t i = 0; i < sizeof(sel) / sizeof(sel[0]); i++) {
        sp = server_params("server");
        *(i == 0   ? &sp.cert_file
          : i == 1 ? &sp.key_file
          : i == 2 ? &sp.ca_file
          : i == 3 ? &sp.crl_file
                   : &sp.key_passphrase_file) = pipe;
        (void)snprintf(want, sizeof(want), "cannot read %s %s: not a regular file (a FIFO)", sel[i],
                       pipe);
        ctx_fails(&sp, want);
    }
    sp = server_params("server");
    sp.ca_file = "/dev/zero";
    ctx_fails(&sp, "cannot read tls.ca /dev/zero: not a regular file (a character device)");
    (void)snprintf(big, sizeof(big), "%s/big.crt", dir);
    assert_non_null(f = fopen(big, "wb"));
    assert_int_equal(fseek(f, 1024 * 1024, SEEK_SET), 0);
    assert_int_equal(fputc('\n', f), '\n');
    assert_int_equal(fclose(f), 0);
    sp.ca_file = big;
    (void)snprintf(want, sizeof(want), "tls.ca %s is larger than 1048576 bytes", big);
    ctx_fails(&sp, want);
    (void)unlink(pipe);
    (void)unlink(big);
}

static void
test_ctx_encrypted_key_no_passphrase(void **state)
{
    struct tls_ctx_params sp = server_params("server");
    char want[1024];
    int saved;

    (void)state;
    sp.key_file = F("server_enc.key");
    (void)snprintf(want, sizeof(want),
                   "tls.key %s is encrypted and no tls.key_passphrase_file is set", sp.key_file);
    /* No prompt: with stdin closed and a watchdog, a prompt would fail or hang the test. */
    saved = dup(STDIN_FILENO);
    assert_true(saved >= 0);
    assert_int_equal(close(STDIN_FILENO), 0);
    (void)alarm(60);
    ctx_fails(&sp, want);
    (void)alarm(0);
    assert_int_equal(dup2(saved, STDIN_FILENO), STDIN_FILENO);
    (void)close(saved);
}

static void
test_ctx_passphrase(void **state)
{
    struct tls_ctx_params sp = server_params("server");
    char want[1024];

    (void)state;
    sp.key_file = F("server_enc.key");
    sp.key_passphrase_file = F("wrong.pass");
    (void)snprintf(want, sizeof(want), "wrong passphrase in %s for %s", sp.key_passphrase_file,
                   sp.key_file);
    ctx_fails(&sp, want);

    sp.key_passphrase_file = F("key.pass");
    tls_ctx_free(ctx_ok(&sp));
    sp.key_passphrase_file = F("key_crlf.pass");
    tls_ctx_free(ctx_ok(&sp));

    sp.key_passphrase_file = F("nope.pass");
    (void)snprintf(want, sizeof(want),
                   "cannot read tls.key_passphrase_file %s: No such file or directory",
                   sp.key_passphrase_file);
    ctx_fails(&sp, want);

    /* A passphrase file with a plain key is harmless. */
    sp = server_params("server");
    sp.key_passphrase_file = F("key.pass");
    tls_ctx_free(ctx_ok(&sp));
}

static void
test_ctx_own_cert_checks(void **state)
{
    struct tls_ctx_params p;
    char want[1024];
    struct tls_ctx *t;
    char err[512];

    (void)state;
    /* Dates are loaded: a restart must not crash-loop on what only a renewal fixes (the
       checks of certs/ report them; /readyz is 503 meanwhile). */
    p = server_params("expired");
    t = tls_ctx_new(&p, err, sizeof(err));
    assert_non_null(t);
    tls_ctx_free(t);

    p = client_params("notyet");
    t = tls_ctx_new(&p, err, sizeof(err));
    assert_non_null(t);
    tls_ctx_free(t);

    p = server_params("server_clionly");
    (void)snprintf(want, sizeof(want),
                   "%s: certificate lacks extendedKeyUsage serverAuth, which an inbound listener "
                   "needs (peers check it); reissue it with both serverAuth and clientAuth",
                   p.cert_file);
    ctx_fails(&p, want);

    p = client_params("client_srvonly");
    (void)snprintf(want, sizeof(want),
                   "%s: certificate lacks extendedKeyUsage clientAuth, which an outbound listener "
                   "needs (peers check it); reissue it with both serverAuth and clientAuth",
                   p.cert_file);
    ctx_fails(&p, want);
    /* The same certificate is fine for the role it has. */
    p = server_params("server_srvonly");
    tls_ctx_free(ctx_ok(&p));

    p = server_params("noeku");
    (void)snprintf(want, sizeof(want),
                   "%s: certificate has no extendedKeyUsage extension; ferry's peers require "
                   "serverAuth for an inbound listener; reissue it with both serverAuth and "
                   "clientAuth",
                   p.cert_file);
    ctx_fails(&p, want);
}

static void
test_ctx_bad_files(void **state)
{
    struct tls_ctx_params p;
    char want[1024];

    (void)state;
    p = server_params("missing");
    (void)snprintf(want, sizeof(want), "cannot read tls.cert %s: No such file or directory",
                   p.cert_file);
    ctx_fails(&p, want);

    p = server_params("server");
    p.cert_file = F("server.der");
    (void)snprintf(want, sizeof(want),
                   "%s is not a PEM certificate (DER or PKCS#12? convert it to PEM)", p.cert_file);
    ctx_fails(&p, want);

    p = server_params("server");
    p.key_file = F("missing.key");
    (void)snprintf(want, sizeof(want), "cannot read tls.key %s: No such file or directory",
                   p.key_file);
    ctx_fails(&p, want);

    p = server_params("server");
    p.key_file = F("server.der");
    (void)snprintf(want, sizeof(want),
                   "tls.key %s is not a PEM private key (DER or PKCS#12? convert it to PEM)",
                   p.key_file);
    ctx_fails(&p, want);

    p = server_params("server");
    p.ca_file = F("missing-ca.crt");
    (void)snprintf(want, sizeof(want), "cannot read tls.ca %s: No such file or directory",
                   p.ca_file);
    ctx_fails(&p, want);

    p = server_params("server");
    p.ca_file = F("root.crl");
    (void)snprintf(want, sizeof(want), "tls.ca %s holds no certificate", p.ca_file);
    ctx_fails(&p, want);

    p = server_params("server");
    p.crl_file = F("ca.crt");
    (void)snprintf(want, sizeof(want), "tls.crl %s holds no CRL", p.crl_file);
    ctx_fails(&p, want);

    p = server_params("server");
    p.crl_file = F("empty.pem");
    (void)snprintf(want, sizeof(want), "tls.crl %s is not a PEM CRL (DER? convert it to PEM)",
                   p.crl_file);
    ctx_fails(&p, want);

    p = client_params("client");
    p.cert_file = NULL;
    ctx_fails(&p, "tls.cert is not set");
}

/*
 * The chain of a tls.cert holding the leaf alone is built once, in tls_ctx_new(), from tls.ca:
 * the SSL carries it, so OpenSSL does not build it again for every handshake.  What goes on
 * the wire: the issuers found in tls.ca without the root (the peer must already trust it); a
 * tls.cert with its intermediates is sent as it is.
 */
static size_t
own_chain_len(const struct tls_ctx_params *p)
{
    struct tls_verify_result r;
    struct tls_ctx *t = ctx_ok(p);
    SSL *ssl = tls_ssl_new(t, &r);
    STACK_OF(X509) *chain = NULL;
    size_t n;

    assert_non_null(ssl);
    assert_int_equal(SSL_get0_chain_certs(ssl, &chain), 1);
    /* NULL would mean "build it on every handshake". */
    assert_non_null(chain);
    n = (size_t)sk_X509_num(chain);
    SSL_free(ssl);
    tls_ctx_free(t);
    return n;
}

static void
test_ctx_own_chain_built_once(void **state)
{
    struct tls_ctx_params p;
    struct hs h;
    struct tls_ctx *s, *c;
    STACK_OF(X509) * sent;
    char subj[256];

    (void)state;
    p = server_params("server");
    assert_int_equal(own_chain_len(&p), 0); /* issued by the root: nothing to send */
    p = client_params("inter_leaf");
    p.ca_file = F("ca_inter.crt");
    assert_int_equal(own_chain_len(&p), 1); /* the intermediate, not the root */
    p = client_params("inter_chain");
    assert_int_equal(own_chain_len(&p), 1); /* the file's intermediate only */
    p = client_params("other");             /* its CA is not in tls.ca: nothing to add */
    assert_int_equal(own_chain_len(&p), 0);
    p = server_params("server");
    p.crl_file = F("all.crl");
    assert_int_equal(own_chain_len(&p), 0);
    assert_int_equal(ERR_peek_error(), 0);

    /* On the wire: the leaf alone, never the root. */
    p = server_params("server");
    s = ctx_ok(&p);
    p = client_params("client");
    c = ctx_ok(&p);
    hs_run(&h, s, c);
    assert_int_equal(h.s.state, 1);
    assert_int_equal(h.c.state, 1);
    sent = SSL_get_peer_cert_chain(h.c.ssl);
    assert_non_null(sent);
    assert_int_equal(sk_X509_num(sent), 1);
    hs_free(&h);
    tls_ctx_free(c);

    /* A client issued by an intermediate found in tls.ca: leaf and intermediate. */
    p = client_params("inter_leaf");
    p.ca_file = F("ca_inter.crt");
    c = ctx_ok(&p);
    hs_run(&h, s, c);
    assert_int_equal(h.s.state, 1);
    assert_int_equal(h.c.state, 1);
    sent = SSL_get_peer_cert_chain(h.s.ssl); /* a server's view leaves the leaf out */
    assert_non_null(sent);
    assert_int_equal(sk_X509_num(sent), 1);
    assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(sk_X509_value(sent, 0)),
                                          NID_commonName, subj, sizeof(subj)) > 0);
    assert_string_not_equal(subj, "Ferry Test Root CA");
    hs_free(&h);
    tls_ctx_free(s);
    tls_ctx_free(c);
}

/* ---- end to end: inbound (the server verifies the client) ---- */

static void
test_hs_good(void **state)
{
    struct tls_verify_result r;

    (void)state;
    assert_int_equal(inbound("client", &r), TLS_REJECT_NONE);
    assert_string_equal(r.peer.name, "node2.test");
    assert_string_equal(r.peer.subject, "CN=node2.test,O=Site B");
    assert_string_equal(r.peer.sans, "DNS:node2.test,DNS:node2.site-b.test");
    assert_int_equal(outbound("server", &r), TLS_REJECT_NONE);
    assert_string_equal(r.peer.name, "node1.test");
}

static void
test_hs_intermediate(void **state)
{
    struct tls_ctx_params sp = server_params("server");
    struct tls_ctx_params cp = client_params("inter_chain");
    struct tls_verify_result r;

    (void)state;
    /* Sent by the peer: root in tls.ca is enough. */
    assert_int_equal(verify_pair(&sp, &cp, true, NULL), TLS_REJECT_NONE);
    /* Not sent, but in the bundle. */
    cp = client_params("inter_leaf");
    sp = server_params("server");
    sp.ca_file = F("ca_inter.crt");
    assert_int_equal(verify_pair(&sp, &cp, true, NULL), TLS_REJECT_NONE);
    /* Nowhere. */
    sp = server_params("server");
    cp = client_params("inter_leaf");
    assert_int_equal(verify_pair(&sp, &cp, true, &r), TLS_REJECT_UNKNOWN_CA);
    assert_int_equal(r.peer.x509_error, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
    assert_int_equal(r.peer.depth, 0);
    assert_string_equal(r.peer.issuer, "CN=Ferry Test Intermediate CA");
    assert_string_equal(r.peer.name, "node2.test");
}

static void
test_hs_eku(void **state)
{
    struct tls_verify_result r;
    char buf[512];

    (void)state;
    /* A serverAuth-only client: the chain is fine, rule 2 rejects it (not OpenSSL's purpose). */
    assert_int_equal(inbound("client_srvonly", &r), TLS_REJECT_EKU_WRONG);
    assert_int_equal(r.peer.x509_error, 0);
    assert_string_equal(tls_reject_describe(r.reject, TLS_ROLE_SERVER, &r.peer, buf, sizeof(buf)),
                        "certificate for node3.test lacks extendedKeyUsage clientAuth");
    assert_int_equal(inbound("noeku", &r), TLS_REJECT_EKU_MISSING);
    /* A clientAuth-only server. */
    assert_int_equal(outbound("server_clionly", &r), TLS_REJECT_EKU_WRONG);
    assert_int_equal(outbound("noeku", &r), TLS_REJECT_EKU_MISSING);
}

static void
test_hs_names(void **state)
{
    struct tls_ctx_params sp, cp;
    const char *const allow_miss[] = {"node9.test", "*.site-c.test"};
    const char *const allow_hit[] = {"node9.test", "*.site-b.test"};
    struct tls_verify_result r;
    char buf[512];

    (void)state;
    /* Outbound: wrong SAN. */
    sp = server_params("server");
    cp = client_params("client");
    cp.peer_host = "node9.test";
    assert_int_equal(verify_pair(&sp, &cp, false, &r), TLS_REJECT_NAME_MISMATCH);
    assert_string_equal(tls_reject_describe(r.reject, TLS_ROLE_CLIENT, &r.peer, buf, sizeof(buf)),
                        "certificate for node1.test does not cover peer host node9.test (SANs: "
                        "DNS:node1.test,DNS:*.site-a.test,IP:127.0.0.1,IP:::1)");
    /* Outbound by IP literal: matches the IP SAN. */
    sp = server_params("server");
    cp = client_params("client");
    cp.peer_host = "127.0.0.1";
    assert_int_equal(verify_pair(&sp, &cp, false, &r), TLS_REJECT_NONE);
    assert_string_equal(r.peer.name, "127.0.0.1");

    /* Inbound allow lists. */
    sp = server_params("server");
    sp.allow = allow_miss;
    sp.n_allow = 2;
    cp = client_params("client");
    assert_int_equal(verify_pair(&sp, &cp, true, &r), TLS_REJECT_NAME_NOT_ALLOWED);
    assert_string_equal(tls_reject_describe(r.reject, TLS_ROLE_SERVER, &r.peer, buf, sizeof(buf)),
                        "certificate for node2.test is not in allow list");
    sp = server_params("server");
    sp.allow = allow_hit;
    sp.n_allow = 2;
    cp = client_params("client");
    assert_int_equal(verify_pair(&sp, &cp, true, &r), TLS_REJECT_NONE);
    assert_string_equal(r.peer.name, "node2.site-b.test");

    /* CN-only server certificate: no name without cn_fallback, accepted with it. */
    sp = server_params("cnonly");
    cp = client_params("client");
    assert_int_equal(verify_pair(&sp, &cp, false, &r), TLS_REJECT_NO_NAME);
    sp = server_params("cnonly");
    cp = client_params("client");
    cp.cn_fallback = true;
    assert_int_equal(verify_pair(&sp, &cp, false, &r), TLS_REJECT_NONE);
    assert_string_equal(r.peer.name, "node1.test");
    /* CN-only client against an allow list. */
    sp = server_params("server");
    sp.allow = (const char *const[]){"node1.test"};
    sp.n_allow = 1;
    cp = client_params("cnonly");
    assert_int_equal(verify_pair(&sp, &cp, true, &r), TLS_REJECT_NO_NAME);
    sp = server_params("server");
    sp.allow = (const char *const[]){"node1.test"};
    sp.n_allow = 1;
    sp.cn_fallback = true;
    cp = client_params("cnonly");
    assert_int_equal(verify_pair(&sp, &cp, true, &r), TLS_REJECT_NONE);
    assert_string_equal(r.peer.name, "node1.test");
}

static void
test_hs_chain_failures(void **state)
{
    struct tls_verify_result r;
    char buf[512];

    (void)state;
    /* Certificates tls_ctx_new would refuse as our own, presented by a plain OpenSSL client. */
    assert_int_equal(inbound("expired", &r), TLS_REJECT_EXPIRED);
    assert_int_equal(r.peer.x509_error, X509_V_ERR_CERT_HAS_EXPIRED);
    (void)tls_reject_describe(r.reject, TLS_ROLE_SERVER, &r.peer, buf, sizeof(buf));
    assert_memory_equal(buf, "certificate for node2.test expired on ", 38);
    assert_int_equal(inbound("notyet", &r), TLS_REJECT_NOT_YET_VALID);
    assert_int_equal(outbound("expired", &r), TLS_REJECT_EXPIRED);

    assert_int_equal(inbound("other", &r), TLS_REJECT_UNKNOWN_CA);
    assert_string_equal(tls_reject_describe(r.reject, TLS_ROLE_SERVER, &r.peer, buf, sizeof(buf)),
                        "certificate for node2.test was issued by CN=Other CA, which is not in "
                        "tls.ca (unable to get local issuer certificate)");

    assert_int_equal(inbound("self", &r), TLS_REJECT_SELF_SIGNED);
    assert_int_equal(r.peer.x509_error, X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT);

    assert_int_equal(inbound("nonca", &r), TLS_REJECT_NOT_CA);
    assert_int_equal(r.peer.depth, 1);
    assert_string_equal(r.peer.detail, "invalid CA certificate; at depth 1: CN=not a CA");
}

static void
test_hs_crl(void **state)
{
    struct tls_ctx_params sp, cp;
    struct tls_verify_result r;

    (void)state;
    sp = server_params("server");
    sp.crl_file = F("root.crl");
    cp = client_params("revoked");
    assert_int_equal(verify_pair(&sp, &cp, true, &r), TLS_REJECT_REVOKED);
    sp = server_params("server");
    sp.crl_file = F("root.crl");
    cp = client_params("client");
    assert_int_equal(verify_pair(&sp, &cp, true, &r), TLS_REJECT_NONE);

    /* CRL_CHECK_ALL: the intermediate needs its own CRL. */
    sp = server_params("server");
    sp.crl_file = F("root.crl");
    cp = client_params("inter_chain");
    assert_int_equal(verify_pair(&sp, &cp, true, &r), TLS_REJECT_CRL);
    assert_int_equal(r.peer.x509_error, X509_V_ERR_UNABLE_TO_GET_CRL);
    /* The file with several CRLs covers both. */
    sp = server_params("server");
    sp.crl_file = F("all.crl");
    cp = client_params("inter_chain");
    assert_int_equal(verify_pair(&sp, &cp, true, &r), TLS_REJECT_NONE);
    sp = server_params("server");
    sp.crl_file = F("all.crl");
    cp = client_params("revoked");
    assert_int_equal(verify_pair(&sp, &cp, true, &r), TLS_REJECT_REVOKED);

    /* An expired CRL rejects everyone it covers. */
    sp = server_params("server");
    sp.crl_file = F("expired.crl");
    cp = client_params("client");
    assert_int_equal(verify_pair(&sp, &cp, true, &r), TLS_REJECT_CRL);
    assert_int_equal(r.peer.x509_error, X509_V_ERR_CRL_HAS_EXPIRED);
}

static void
test_hs_rsa(void **state)
{
    struct tls_ctx_params sp = server_params("rsa_server");
    struct tls_ctx_params cp = client_params("rsa_client");
    struct tls_ctx *s, *c;
    struct hs h;

    (void)state;
    s = ctx_ok(&sp);
    c = ctx_ok(&cp);
    hs_run(&h, s, c);
    assert_int_equal(h.s.state, 1);
    assert_int_equal(h.c.state, 1);
    assert_true(h.s.res.verified);
    assert_true(h.c.res.verified);
    hs_free(&h);
    /* TLS 1.2 picks an ECDHE-RSA suite from our list. */
    memset(&h, 0, sizeof(h));
    hs_start(&h, tls_ssl_new(s, &h.s.res), tls_ssl_new(c, &h.c.res));
    assert_int_equal(SSL_set_max_proto_version(h.c.ssl, TLS1_2_VERSION), 1);
    hs_pump(&h);
    assert_int_equal(h.c.state, 1);
    assert_true(h.s.res.verified);
    assert_string_equal(SSL_get_cipher_name(h.c.ssl), "ECDHE-RSA-AES128-GCM-SHA256");
    hs_free(&h);
    tls_ctx_free(s);
    tls_ctx_free(c);

    /* Mixed: ECDSA server, RSA client. */
    sp = server_params("server");
    cp = client_params("rsa_client");
    assert_int_equal(verify_pair(&sp, &cp, true, NULL), TLS_REJECT_NONE);
}

static void
test_hs_verify_depth(void **state)
{
    struct tls_ctx_params sp, cp;
    struct tls_verify_result r;

    (void)state;
    /* leaf <- Deep CA 2 <- Deep CA 1 <- root: two intermediates. */
    sp = server_params("server");
    sp.verify_depth = 2;
    cp = client_params("deep");
    assert_int_equal(verify_pair(&sp, &cp, true, &r), TLS_REJECT_NONE);
    sp = server_params("server");
    sp.verify_depth = 1;
    cp = client_params("deep");
    assert_int_equal(verify_pair(&sp, &cp, true, &r), TLS_REJECT_CHAIN_TOO_LONG);
    assert_int_equal(r.peer.x509_error, X509_V_ERR_CERT_CHAIN_TOO_LONG);
}

/* The default inbound listener against a plain client sending no certificate. */
static void
no_client_cert_case(int max_version)
{
    struct tls_ctx_params sp = server_params("server");
    struct tls_ctx *s = ctx_ok(&sp);
    struct hs h;
    char buf[256];

    memset(&h, 0, sizeof(h));
    hs_start(&h, tls_ssl_new(s, &h.s.res), raw_ssl("", false));
    assert_int_equal(SSL_set_max_proto_version(h.c.ssl, max_version), 1);
    hs_pump(&h);
    assert_int_equal(h.s.state, -1);
    assert_int_equal(h.c.state, -1);
    assert_int_equal(h.s.ssl_error, SSL_ERROR_SSL);
    assert_int_equal(ERR_GET_REASON(h.s.err), SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE);
    assert_int_equal(h.s.res.reject, TLS_REJECT_NO_CERT);
    assert_false(h.s.res.verified);
    assert_string_equal(
        tls_reject_describe(h.s.res.reject, TLS_ROLE_SERVER, &h.s.res.peer, buf, sizeof(buf)),
        "client sent no certificate (client_cert: required)");
    hs_free(&h);
    tls_ctx_free(s);
}

static void
test_hs_no_client_cert(void **state)
{
    (void)state;
    no_client_cert_case(TLS1_3_VERSION);
    no_client_cert_case(TLS1_2_VERSION);
}

static void
test_hs_client_cert_none(void **state)
{
    struct tls_ctx_params sp = server_params("server");
    struct tls_ctx *s;
    struct hs h;

    (void)state;
    sp.client_cert_required = false;
    s = ctx_ok(&sp);
    memset(&h, 0, sizeof(h));
    hs_start(&h, tls_ssl_new(s, &h.s.res), raw_ssl("", false));
    hs_pump(&h);
    assert_int_equal(h.s.state, 1);
    assert_int_equal(h.s.res.reject, TLS_REJECT_NONE);
    assert_false(h.s.res.verified);
    assert_null(SSL_get0_peer_certificate(h.s.ssl));
    hs_free(&h);
    tls_ctx_free(s);
}

static void
test_hs_versions(void **state)
{
    struct tls_ctx_params sp = server_params("server");
    struct tls_ctx_params cp = client_params("client");
    struct tls_ctx *s, *c;
    struct hs h;

    (void)state;
    c = ctx_ok(&cp);
    /* min_version 1.3: a 1.3 handshake; a TLS 1.2-only client is refused. */
    sp.min_version = TLS1_3_VERSION;
    s = ctx_ok(&sp);
    hs_run(&h, s, c);
    assert_int_equal(h.c.state, 1);
    assert_int_equal(SSL_version(h.c.ssl), TLS1_3_VERSION);
    hs_free(&h);
    memset(&h, 0, sizeof(h));
    hs_start(&h, tls_ssl_new(s, &h.s.res), tls_ssl_new(c, &h.c.res));
    assert_int_equal(SSL_set_max_proto_version(h.c.ssl, TLS1_2_VERSION), 1);
    hs_pump(&h);
    assert_int_equal(h.s.state, -1);
    assert_int_equal(h.c.state, -1);
    assert_int_equal(ERR_GET_REASON(h.s.err0), SSL_R_UNSUPPORTED_PROTOCOL);
    assert_int_equal(h.s.res.reject, TLS_REJECT_NONE); /* not a certificate problem */
    hs_free(&h);
    tls_ctx_free(s);

    /* min_version 1.2: a 1.2 client is verified as usual, a TLS 1.1 client never gets in. */
    sp = server_params("server");
    s = ctx_ok(&sp);
    memset(&h, 0, sizeof(h));
    hs_start(&h, tls_ssl_new(s, &h.s.res), tls_ssl_new(c, &h.c.res));
    assert_int_equal(SSL_set_max_proto_version(h.c.ssl, TLS1_2_VERSION), 1);
    hs_pump(&h);
    assert_int_equal(h.c.state, 1);
    assert_int_equal(SSL_version(h.c.ssl), TLS1_2_VERSION);
    assert_true(h.s.res.verified);
    assert_true(h.c.res.verified);
    hs_free(&h);
    memset(&h, 0, sizeof(h));
    hs_start(&h, tls_ssl_new(s, &h.s.res), raw_ssl("client", false));
    SSL_set_security_level(h.c.ssl, 0);
    assert_int_equal(SSL_set_min_proto_version(h.c.ssl, TLS1_VERSION), 1);
    assert_int_equal(SSL_set_max_proto_version(h.c.ssl, TLS1_1_VERSION), 1);
    hs_pump(&h);
    assert_true(h.s.state != 1 && h.c.state != 1);
    hs_free(&h);

    /* An EKU rejection under TLS 1.2 reads the same as under 1.3. */
    memset(&h, 0, sizeof(h));
    hs_start(&h, tls_ssl_new(s, &h.s.res), raw_ssl("client_srvonly", false));
    assert_int_equal(SSL_set_max_proto_version(h.c.ssl, TLS1_2_VERSION), 1);
    hs_pump(&h);
    assert_int_equal(outcome(&h, true, NULL), TLS_REJECT_EKU_WRONG);
    hs_free(&h);
    tls_ctx_free(s);
    tls_ctx_free(c);
}

/* Two handshakes with the same client ctx: the second resumes, and tls_ssl_done fills it. */
static void
resume_case(int max_version, bool resumption, bool want_reused)
{
    struct tls_ctx_params sp = server_params("server");
    struct tls_ctx_params cp = client_params("client");
    struct tls_ctx *s, *c;
    struct hs h;
    int round;

    sp.session_resumption = resumption;
    cp.session_resumption = resumption;
    s = ctx_ok(&sp);
    c = ctx_ok(&cp);
    for (round = 0; round < 2; round++) {
        memset(&h, 0, sizeof(h));
        hs_start(&h, tls_ssl_new(s, &h.s.res), tls_ssl_new(c, &h.c.res));
        assert_int_equal(SSL_set_max_proto_version(h.c.ssl, max_version), 1);
        hs_pump(&h);
        assert_int_equal(h.s.state, 1);
        assert_int_equal(h.c.state, 1);
        assert_int_equal(SSL_session_reused(h.c.ssl), round == 1 && want_reused);
        assert_int_equal(SSL_session_reused(h.s.ssl), round == 1 && want_reused);
        assert_true(h.c.res.verified);
        assert_int_equal(h.c.res.reject, TLS_REJECT_NONE);
        assert_string_equal(h.c.res.peer.name, "node1.test");
        assert_string_equal(h.c.res.peer.subject, "CN=node1.test");
        assert_true(h.s.res.verified);
        assert_string_equal(h.s.res.peer.name, "node2.test");
        hs_free(&h);
    }
    tls_ctx_free(s);
    tls_ctx_free(c);
}

static void
test_hs_resumption(void **state)
{
    (void)state;
    resume_case(TLS1_3_VERSION, true, true);
    resume_case(TLS1_2_VERSION, true, true);
    resume_case(TLS1_3_VERSION, false, false);
    resume_case(TLS1_2_VERSION, false, false);
}

/* ---- session tickets and the session id context ---- */

/* A fixed master secret: the byte i is ${seed} + i. */
static struct tls_tickets *
tickets_from_seed(unsigned char seed)
{
    unsigned char master[TLS_TICKET_MASTER_LEN];
    char err[256] = "";
    struct tls_tickets *t;
    size_t i;

    for (i = 0; i < sizeof(master); i++) {
        master[i] = (unsigned char)(seed + i);
    }
    t = tls_tickets_new_from(master, sizeof(master), err, sizeof(err));
    if (t == NULL) {
        print_error("tls_tickets_new_from: %s\n", err);
    }
    assert_non_null(t);
    return t;
}

static bool
keys_equal(const struct tls_ticket_keys *a, const struct tls_ticket_keys *b)
{
    return a->period == b->period && memcmp(a->name, b->name, sizeof(a->name)) == 0 &&
           memcmp(a->aes_key, b->aes_key, sizeof(a->aes_key)) == 0 &&
           memcmp(a->hmac_key, b->hmac_key, sizeof(a->hmac_key)) == 0;
}

/* Key derivation: a pure function of master and period; name, AES and HMAC keys all differ. */
static void
test_tickets_derive(void **state)
{
    struct tls_tickets *a = tickets_from_seed(1), *b = tickets_from_seed(1);
    struct tls_tickets *other = tickets_from_seed(2), *r1, *r2;
    struct tls_ticket_keys ka, kb, kc;
    unsigned char m[TLS_TICKET_MASTER_LEN] = {0};
    char err[256] = "";

    (void)state;
    assert_int_equal(tls_tickets_derive(a, 490000, &ka), 0);
    assert_int_equal(tls_tickets_derive(b, 490000, &kb), 0);
    assert_true(keys_equal(&ka, &kb));
    assert_int_equal(ka.period, 490000);
    assert_memory_not_equal(ka.aes_key, ka.hmac_key, sizeof(ka.aes_key));
    assert_memory_not_equal(ka.name, ka.aes_key, sizeof(ka.name));
    /* The next period, or another master: every part differs. */
    assert_int_equal(tls_tickets_derive(a, 490001, &kc), 0);
    assert_memory_not_equal(ka.name, kc.name, sizeof(ka.name));
    assert_memory_not_equal(ka.aes_key, kc.aes_key, sizeof(ka.aes_key));
    assert_memory_not_equal(ka.hmac_key, kc.hmac_key, sizeof(ka.hmac_key));
    assert_int_equal(tls_tickets_derive(other, 490000, &kc), 0);
    assert_memory_not_equal(ka.name, kc.name, sizeof(ka.name));
    assert_memory_not_equal(ka.aes_key, kc.aes_key, sizeof(ka.aes_key));
    assert_memory_not_equal(ka.hmac_key, kc.hmac_key, sizeof(ka.hmac_key));

    /* Two random masters differ. */
    r1 = tls_tickets_new(err, sizeof(err));
    r2 = tls_tickets_new(err, sizeof(err));
    assert_non_null(r1);
    assert_non_null(r2);
    assert_int_equal(tls_tickets_derive(r1, 7, &ka), 0);
    assert_int_equal(tls_tickets_derive(r2, 7, &kb), 0);
    assert_memory_not_equal(ka.aes_key, kb.aes_key, sizeof(ka.aes_key));

    /* A master of the wrong size is refused. */
    assert_null(tls_tickets_new_from(m, 8, err, sizeof(err)));
    assert_string_equal(err, "a ticket master secret has 16 to 64 bytes");
    assert_null(tls_tickets_new_from(NULL, sizeof(m), err, sizeof(err)));

    tls_tickets_free(r1);
    tls_tickets_free(r2);
    tls_tickets_free(a);
    tls_tickets_free(b);
    tls_tickets_free(other);
    tls_tickets_free(NULL);
}

/* Rotation with injected times: current and previous period accepted, older or unknown not. */
static void
test_tickets_rotation(void **state)
{
    const time_t p0 = (time_t)490000 * TLS_TICKET_PERIOD_S; /* the start of period 490000 */
    struct tls_tickets *a = tickets_from_seed(1), *b = tickets_from_seed(1);
    struct tls_tickets *other = tickets_from_seed(2);
    struct tls_ticket_keys enc, dec, tmp;
    unsigned char unknown[TLS_TICKET_NAME_LEN];

    (void)state;
    assert_int_equal(tls_tickets_period(p0), 490000);
    assert_int_equal(tls_tickets_period(p0 - 1), 489999);
    assert_int_equal(tls_tickets_period(p0 + TLS_TICKET_PERIOD_S - 1), 490000);
    assert_int_equal(tls_tickets_period(-5), 0);

    /* Encrypt at some time in period 490000: its keys. */
    assert_int_equal(tls_tickets_select(a, p0 + 1234, NULL, &enc), 1);
    assert_int_equal(enc.period, 490000);
    assert_int_equal(tls_tickets_derive(a, 490000, &tmp), 0);
    assert_true(keys_equal(&enc, &tmp));

    /* Another object from the same master (another worker, or after a reload) decrypts it. */
    assert_int_equal(tls_tickets_select(b, p0 + 1234, enc.name, &dec), 1);
    assert_true(keys_equal(&enc, &dec));
    assert_int_equal(tls_tickets_select(b, p0, enc.name, &dec), 1);
    assert_int_equal(tls_tickets_select(b, p0 + TLS_TICKET_PERIOD_S - 1, enc.name, &dec), 1);
    /* The next period: still accepted, to be renewed. */
    assert_int_equal(tls_tickets_select(b, p0 + TLS_TICKET_PERIOD_S, enc.name, &dec), 2);
    assert_true(keys_equal(&enc, &dec));
    assert_int_equal(tls_tickets_select(b, p0 + 2 * TLS_TICKET_PERIOD_S - 1, enc.name, &dec), 2);
    /* Two periods on: refused (full handshake); and a ticket from the future too. */
    assert_int_equal(tls_tickets_select(b, p0 + 2 * TLS_TICKET_PERIOD_S, enc.name, &dec), 0);
    assert_int_equal(tls_tickets_select(b, p0 + 5 * TLS_TICKET_PERIOD_S, enc.name, &dec), 0);
    assert_int_equal(tls_tickets_select(b, p0 - 1, enc.name, &dec), 0);
    /* Encryption always uses the current period. */
    assert_int_equal(tls_tickets_select(b, p0 + TLS_TICKET_PERIOD_S + 5, NULL, &tmp), 1);
    assert_int_equal(tmp.period, 490001);

    /* An unknown key name, or one of another master: refused, and the output wiped. */
    memset(unknown, 0xa5, sizeof(unknown));
    assert_int_equal(tls_tickets_select(a, p0 + 10, unknown, &dec), 0);
    assert_int_equal(dec.period, 0);
    assert_int_equal(tls_tickets_select(other, p0 + 10, enc.name, &dec), 0);

    /* Period 0 has no previous period. */
    assert_int_equal(tls_tickets_select(a, 5, NULL, &tmp), 1);
    assert_int_equal(tmp.period, 0);
    assert_int_equal(tls_tickets_select(a, 5, unknown, &dec), 0);

    tls_tickets_free(a);
    tls_tickets_free(b);
    tls_tickets_free(other);
}

/* Resumption needs a chain verified at most TLS_SESSION_AUTH_MAX_S ago, and a valid peer. */
static void
test_session_auth_fresh(void **state)
{
    time_t now = time(NULL);
    uint64_t t = (uint64_t)now;

    (void)state;
    assert_true(tls_session_auth_fresh(t, now, NULL));
    assert_true(tls_session_auth_fresh(t - TLS_SESSION_AUTH_MAX_S, now, NULL));
    assert_false(tls_session_auth_fresh(t - TLS_SESSION_AUTH_MAX_S - 1, now, NULL));
    assert_false(tls_session_auth_fresh(0, now, NULL));
    /* A little clock skew is tolerated, a session from the future is not. */
    assert_true(tls_session_auth_fresh(t + 30, now, NULL));
    assert_false(tls_session_auth_fresh(t + 3600, now, NULL));
    /* The peer certificate must be valid now. */
    assert_true(tls_session_auth_fresh(t, now, client_leaf->x509));
    assert_false(tls_session_auth_fresh(t, now, expired_leaf->x509));
    assert_false(tls_session_auth_fresh(t, now, notyet_leaf->x509));
}

/* The session id context of ${p}, which must succeed. */
static void
sid_of(const struct tls_ctx_params *p, unsigned char out[TLS_SID_CTX_LEN])
{
    char err[512] = "";

    if (tls_session_id_context(p, out, err, sizeof(err)) != 0) {
        print_error("tls_session_id_context: %s\n", err);
        fail();
    }
}

/* Copy the file ${from} to ${to} and append ${extra}. */
static void
copy_plus(const char *from, const char *to, const char *extra)
{
    char buf[16384];
    FILE *in = fopen(from, "rb"), *out;
    size_t n;

    assert_non_null(in);
    n = fread(buf, 1, sizeof(buf), in);
    (void)fclose(in);
    out = fopen(to, "wb");
    assert_non_null(out);
    assert_int_equal(fwrite(buf, 1, n, out), n);
    assert_true(fputs(extra, out) >= 0);
    assert_int_equal(fclose(out), 0);
}

/* The session id context hashes the trust policy, not the file names nor our own cert. */
static void
test_sid_ctx(void **state)
{
    static const char *const allow1[] = {"node2.test", "*.site-b.test"};
    static const char *const allow2[] = {"node2.test", "*.site-c.test"};
    static const char *const allow3[] = {"node2.test"};
    struct tls_ctx_params p = server_params("server"), q;
    unsigned char base[TLS_SID_CTX_LEN], x[TLS_SID_CTX_LEN];
    char err[512] = "";

    (void)state;
    p.allow = allow1;
    p.n_allow = 2;
    sid_of(&p, base);
    sid_of(&p, x);
    assert_memory_equal(base, x, sizeof(x));

    /* Same inputs under other names, another own certificate, depth 0 meaning 4: same. */
    q = p;
    q.ca_file = F("ca_copy.crt");
    sid_of(&q, x);
    assert_memory_equal(base, x, sizeof(x));
    q = server_params("rsa_server");
    q.allow = allow1;
    q.n_allow = 2;
    q.verify_depth = 0;
    q.session_resumption = false;
    sid_of(&q, x);
    assert_memory_equal(base, x, sizeof(x));

    /* One more byte in the CA bundle, another CA added: different. */
    copy_plus(F("ca.crt"), F("ca_plus_byte.crt"), "\n");
    q = p;
    q.ca_file = F("ca_plus_byte.crt");
    sid_of(&q, x);
    assert_memory_not_equal(base, x, sizeof(x));
    q.ca_file = F("ca_plus_other.crt");
    sid_of(&q, x);
    assert_memory_not_equal(base, x, sizeof(x));

    /* Each other input of the policy. */
    q = p;
    q.allow = allow2;
    sid_of(&q, x);
    assert_memory_not_equal(base, x, sizeof(x));
    q.allow = allow3;
    q.n_allow = 1;
    sid_of(&q, x);
    assert_memory_not_equal(base, x, sizeof(x));
    q.allow = NULL;
    q.n_allow = 0;
    sid_of(&q, x);
    assert_memory_not_equal(base, x, sizeof(x));
    q = p;
    q.crl_file = F("root.crl");
    sid_of(&q, x);
    assert_memory_not_equal(base, x, sizeof(x));
    q = p;
    q.verify_depth = 2;
    sid_of(&q, x);
    assert_memory_not_equal(base, x, sizeof(x));
    q = p;
    q.min_version = TLS1_3_VERSION;
    sid_of(&q, x);
    assert_memory_not_equal(base, x, sizeof(x));
    q = p;
    q.cn_fallback = true;
    sid_of(&q, x);
    assert_memory_not_equal(base, x, sizeof(x));
    q = p;
    q.client_cert_required = false;
    sid_of(&q, x);
    assert_memory_not_equal(base, x, sizeof(x));

    /* An unreadable CRL is named. */
    q = p;
    q.crl_file = "/nonexistent/x.crl";
    assert_int_equal(tls_session_id_context(&q, x, err, sizeof(err)), -1);
    assert_string_equal(err, "cannot read tls.crl /nonexistent/x.crl: No such file or directory");
}

/*
 * One handshake of a fresh client SSL from ${c} with ${s}, TLS version at most ${max_version}:
 * it must succeed with both sides verified.  Returns whether the session was resumed.
 */
static bool
hs_resumed(struct tls_ctx *s, struct tls_ctx *c, int max_version)
{
    struct hs h;
    bool reused;

    memset(&h, 0, sizeof(h));
    hs_start(&h, tls_ssl_new(s, &h.s.res), tls_ssl_new(c, &h.c.res));
    assert_int_equal(SSL_set_max_proto_version(h.c.ssl, max_version), 1);
    hs_pump(&h);
    assert_int_equal(h.s.state, 1);
    assert_int_equal(h.c.state, 1);
    assert_true(h.s.res.verified);
    assert_true(h.c.res.verified);
    assert_string_equal(h.s.res.peer.name, "node2.test");
    reused = SSL_session_reused(h.s.ssl) != 0;
    assert_int_equal(SSL_session_reused(h.c.ssl) != 0, reused);
    hs_free(&h);
    return reused;
}

/* A server context with tickets ${tk}, from ${sp}. */
static struct tls_ctx *
server_with(struct tls_ctx_params sp, struct tls_tickets *tk)
{
    sp.tickets = tk;
    return ctx_ok(&sp);
}

/*
 * Shared ticket keys, per TLS version: a ticket from one server context resumes on another
 * made with the same tickets object (another worker, or the contexts of a reload), also when
 * only the server's own certificate changed; not with other keys, nor under a changed trust
 * policy (CA bundle, allow list), where a full handshake runs; never without resumption.
 */
static void
tickets_case(int max_version)
{
    static const char *const allow[] = {"node2.test"};
    struct tls_tickets *tk = tickets_from_seed(9), *tk_other = tickets_from_seed(10);
    struct tls_ctx_params sp = server_params("server"), sp2;
    struct tls_ctx_params cp = client_params("client");
    struct tls_ctx *a, *b, *c, *x;

    a = server_with(sp, tk);
    b = server_with(sp, tk);
    c = ctx_ok(&cp);
    assert_false(hs_resumed(a, c, max_version));
    assert_true(hs_resumed(b, c, max_version));
    assert_true(hs_resumed(a, c, max_version));

    /* The server's own certificate changed (same CA, same policy): still resumed. */
    x = server_with(server_params("rsa_server"), tk);
    assert_true(hs_resumed(x, c, max_version));
    tls_ctx_free(x);

    /* Other ticket keys (a restart): full handshake, then resumption with the new keys. */
    x = server_with(sp, tk_other);
    assert_false(hs_resumed(x, c, max_version));
    assert_true(hs_resumed(x, c, max_version));
    assert_false(hs_resumed(a, c, max_version));
    tls_ctx_free(x);

    /* A CA bundle that gained a CA: the old session is refused, the full handshake passes. */
    assert_true(hs_resumed(a, c, max_version));
    sp2 = sp;
    sp2.ca_file = F("ca_plus_other.crt");
    x = server_with(sp2, tk);
    assert_false(hs_resumed(x, c, max_version));
    assert_true(hs_resumed(x, c, max_version));
    tls_ctx_free(x);

    /* An allow list that appeared: the same. */
    assert_false(hs_resumed(a, c, max_version));
    sp2 = sp;
    sp2.allow = allow;
    sp2.n_allow = 1;
    x = server_with(sp2, tk);
    assert_false(hs_resumed(x, c, max_version));
    assert_true(hs_resumed(x, c, max_version));
    tls_ctx_free(x);

    /* session_resumption: false with tickets: never resumed. */
    sp2 = sp;
    sp2.session_resumption = false;
    x = server_with(sp2, tk);
    assert_false(hs_resumed(x, c, max_version));
    assert_false(hs_resumed(x, c, max_version));
    tls_ctx_free(x);

    /* The contexts keep their own reference: the caller may free the tickets first. */
    tls_tickets_free(tk);
    tls_tickets_free(tk_other);
    assert_false(hs_resumed(a, c, max_version));
    assert_true(hs_resumed(b, c, max_version));
    tls_ctx_free(a);
    tls_ctx_free(b);
    tls_ctx_free(c);
}

static void
test_hs_tickets(void **state)
{
    (void)state;
    tickets_case(TLS1_3_VERSION);
    tickets_case(TLS1_2_VERSION);
}

/* The verification time a server session carries in its ticket (8 bytes, big endian). */
static uint64_t
server_auth_time(SSL *ssl)
{
    SSL_SESSION *sess = SSL_get_session(ssl);
    const unsigned char *b;
    void *data = NULL;
    size_t len = 0, i;
    uint64_t t = 0;

    assert_non_null(sess);
    assert_int_equal(SSL_SESSION_get0_ticket_appdata(sess, &data, &len), 1);
    assert_int_equal(len, 8);
    b = data;
    for (i = 0; i < len; i++) {
        t = (t << 8) | b[i];
    }
    return t;
}

/*
 * A ticket carries the time of the full handshake that verified the chain, and a renewed
 * ticket (TLS 1.3 renews on every resumption) keeps it: resumption cannot extend it.
 */
static void
test_hs_ticket_auth_time(void **state)
{
    struct tls_tickets *tk = tickets_from_seed(4);
    struct tls_ctx_params cp = client_params("client");
    struct tls_ctx *s, *c;
    struct hs h;
    uint64_t t0, t1;
    int round;

    (void)state;
    s = server_with(server_params("server"), tk);
    c = ctx_ok(&cp);
    for (round = 0; round < 3; round++) {
        memset(&h, 0, sizeof(h));
        hs_start(&h, tls_ssl_new(s, &h.s.res), tls_ssl_new(c, &h.c.res));
        hs_pump(&h);
        assert_int_equal(h.s.state, 1);
        assert_int_equal(SSL_session_reused(h.s.ssl) != 0, round > 0);
        assert_true(h.s.res.verified);
        t1 = server_auth_time(h.s.ssl);
        if (round == 0) {
            t0 = t1;
            assert_true(t0 + 2 >= (uint64_t)time(NULL) && t0 <= (uint64_t)time(NULL));
            /* The next ticket is issued in a later second. */
            (void)sleep(1);
        } else {
            assert_true(t1 == t0);
        }
        hs_free(&h);
    }
    tls_ctx_free(s);
    tls_ctx_free(c);
    tls_tickets_free(tk);
}

/* With tickets a server context keeps no session cache: stateless tickets only. */
static void
test_hs_tickets_stateless(void **state)
{
    struct tls_tickets *tk = tickets_from_seed(3);
    struct tls_ctx_params sp = server_params("server");
    struct tls_ctx *s, *s0;
    SSL *ssl;
    struct tls_verify_result res;

    (void)state;
    s = server_with(sp, tk);
    ssl = tls_ssl_new(s, &res);
    assert_non_null(ssl);
    assert_int_equal(SSL_CTX_get_session_cache_mode(SSL_get_SSL_CTX(ssl)), SSL_SESS_CACHE_OFF);
    assert_int_equal(SSL_get_options(ssl) & SSL_OP_NO_TICKET, 0);
    assert_int_equal(SSL_CTX_get_timeout(SSL_get_SSL_CTX(ssl)), TLS_TICKET_PERIOD_S);
    SSL_free(ssl);
    /* Without tickets: as before, OpenSSL's server cache. */
    s0 = ctx_ok(&sp);
    ssl = tls_ssl_new(s0, &res);
    assert_non_null(ssl);
    assert_int_equal(SSL_CTX_get_session_cache_mode(SSL_get_SSL_CTX(ssl)), SSL_SESS_CACHE_SERVER);
    SSL_free(ssl);
    tls_ctx_free(s);
    tls_ctx_free(s0);
    tls_tickets_free(tk);
}

/* A reload frees the tls_ctx while a connection still handshakes: the policy must survive. */
static void
test_hs_ctx_freed_midway(void **state)
{
    struct tls_ctx_params sp = server_params("server");
    struct tls_ctx_params cp = client_params("client");
    struct tls_ctx *s = ctx_ok(&sp), *c = ctx_ok(&cp);
    struct hs h;

    (void)state;
    memset(&h, 0, sizeof(h));
    hs_start(&h, tls_ssl_new(s, &h.s.res), tls_ssl_new(c, &h.c.res));
    tls_ctx_free(s);
    tls_ctx_free(c);
    hs_pump(&h);
    assert_int_equal(h.s.state, 1);
    assert_int_equal(h.c.state, 1);
    assert_true(h.s.res.verified);
    assert_true(h.c.res.verified);
    assert_string_equal(h.c.res.peer.name, "node1.test");
    hs_free(&h);
}

static void
test_sni(void **state)
{
    struct tls_ctx_params sp = server_params("server");
    struct tls_ctx_params cp = client_params("client");
    struct tls_ctx *s, *c;
    struct hs h;

    (void)state;
    s = ctx_ok(&sp);
    cp.peer_host = "node1.test.";
    c = ctx_ok(&cp);
    hs_run(&h, s, c);
    assert_int_equal(h.c.state, 1);
    assert_string_equal(SSL_get_servername(h.s.ssl, TLSEXT_NAMETYPE_host_name), "node1.test");
    hs_free(&h);
    tls_ctx_free(c);
    cp.peer_host = "::1";
    c = ctx_ok(&cp);
    hs_run(&h, s, c);
    assert_int_equal(h.c.state, 1);
    assert_null(SSL_get_servername(h.s.ssl, TLSEXT_NAMETYPE_host_name));
    assert_string_equal(h.c.res.peer.name, "::1");
    hs_free(&h);
    tls_ctx_free(c);
    tls_ctx_free(s);
}

/* tls_tunnel_request: request line, Host, Basic credentials, IPv6 brackets, refusals. */
static void
test_tunnel_request(void **state)
{
    char out[512];
    size_t n;

    (void)state;
    n = tls_tunnel_request(out, sizeof(out), "couch.site-b.example.org", 6984, NULL, 0);
    assert_int_equal(n, strlen(out));
    assert_string_equal(out, "CONNECT couch.site-b.example.org:6984 HTTP/1.1\r\n"
                             "Host: couch.site-b.example.org:6984\r\n"
                             "User-Agent: ferry\r\n\r\n");
    n = tls_tunnel_request(out, sizeof(out), "2001:db8::7", 443, "ali:open sesame", 15);
    assert_true(n > 0);
    assert_non_null(strstr(out, "CONNECT [2001:db8::7]:443 HTTP/1.1\r\n"));
    assert_non_null(strstr(out, "\r\nHost: [2001:db8::7]:443\r\n"));
    /* base64("ali:open sesame") */
    assert_non_null(strstr(out, "\r\nProxy-Authorization: Basic YWxpOm9wZW4gc2VzYW1l\r\n"));
    assert_non_null(strstr(out, "\r\n\r\n"));
    /* Too small, a port out of range, a host that would split the request line. */
    assert_int_equal(tls_tunnel_request(out, 20, "a.example", 1, NULL, 0), 0);
    assert_int_equal(tls_tunnel_request(out, sizeof(out), "a.example", 0, NULL, 0), 0);
    assert_int_equal(tls_tunnel_request(out, sizeof(out), "a.example", 65536, NULL, 0), 0);
    assert_int_equal(tls_tunnel_request(out, sizeof(out), "a b", 80, NULL, 0), 0);
    assert_int_equal(tls_tunnel_request(out, sizeof(out), "a\r\nX: y", 80, NULL, 0), 0);
    assert_int_equal(tls_tunnel_request(out, sizeof(out), "", 80, NULL, 0), 0);
    assert_int_equal(tls_tunnel_request(out, sizeof(out), "a", 80, "x", 0), 0);
}

/* tls_tunnel_answer on ${text}: its result, and ${status}/${head_len} when given. */
static enum tls_tunnel_result
answer(const char *text, int *status, size_t *head_len, char *why, size_t whylen)
{
    return tls_tunnel_answer(text, strlen(text), head_len, status, why, whylen);
}

/* tls_tunnel_answer: every status class, the head's end, prefixes, malformed answers. */
static void
test_tunnel_answer(void **state)
{
    static const char ok[] = "HTTP/1.1 200 Connection established\r\nVia: tinyproxy\r\n\r\n";
    char why[160], buf[TLS_TUNNEL_HEAD_MAX + 16], tls[sizeof(ok) + 8];
    size_t head = 99;
    int status = -1;

    (void)state;
    assert_int_equal(answer(ok, &status, &head, why, sizeof(why)), TLS_TUNNEL_OK);
    assert_int_equal(status, 200);
    assert_int_equal(head, strlen(ok));
    assert_string_equal(why, "Connection established");
    /* Bytes after the head are the tunnel's: not part of the head. */
    snprintf(tls, sizeof(tls), "%s\x16\x03\x03", ok);
    assert_int_equal(answer(tls, &status, &head, why, sizeof(why)), TLS_TUNNEL_OK);
    assert_int_equal(head, strlen(ok));
    /* Every shorter prefix needs more. */
    for (size_t i = 0; i < strlen(ok); i++) {
        assert_int_equal(tls_tunnel_answer(ok, i, &head, &status, why, sizeof(why)),
                         TLS_TUNNEL_NEED_MORE);
    }
    assert_int_equal(answer("HTTP/1.0 200\n\n", &status, &head, why, sizeof(why)), TLS_TUNNEL_OK);
    assert_int_equal(head, 14);
    assert_string_equal(why, "");
    assert_int_equal(answer("HTTP/1.1 200\r\n\r\n", &status, &head, why, sizeof(why)),
                     TLS_TUNNEL_OK);
    assert_string_equal(why, "");
    assert_int_equal(
        answer("HTTP/1.1 407 Proxy Authentication Required\r\n"
               "Proxy-Authenticate: Basic realm=\"x\"\r\nContent-Length: 5\r\n\r\nabcde",
               &status, &head, why, sizeof(why)),
        TLS_TUNNEL_AUTH);
    assert_int_equal(status, 407);
    assert_string_equal(why, "Proxy Authentication Required");
    assert_int_equal(
        answer("HTTP/1.1 403 Access violation\r\n\r\n", &status, &head, why, sizeof(why)),
        TLS_TUNNEL_REFUSED);
    assert_int_equal(
        answer("HTTP/1.1 405 Method Not Allowed\r\n\r\n", &status, &head, why, sizeof(why)),
        TLS_TUNNEL_REFUSED);
    assert_int_equal(answer("HTTP/1.1 502 Bad Gateway\r\n\r\n", &status, &head, why, sizeof(why)),
                     TLS_TUNNEL_PEER_UNREACHABLE);
    assert_int_equal(
        answer("HTTP/1.1 503 Service Unavailable\r\n\r\n", &status, &head, why, sizeof(why)),
        TLS_TUNNEL_PEER_UNREACHABLE);
    assert_int_equal(
        answer("HTTP/1.1 504 Gateway Timeout\r\n\r\n", &status, &head, why, sizeof(why)),
        TLS_TUNNEL_PEER_UNREACHABLE);
    assert_int_equal(status, 504);
    /* Malformed: decided as soon as the bytes show it, reason printable. */
    assert_int_equal(answer("SSH-2.0-OpenSSH", &status, &head, why, sizeof(why)), TLS_TUNNEL_BAD);
    assert_non_null(strstr(why, "does not start with HTTP/1.0 or HTTP/1.1"));
    assert_int_equal(answer("\x16\x03\x01", &status, &head, why, sizeof(why)), TLS_TUNNEL_BAD);
    assert_non_null(strstr(why, "\\x16\\x03\\x01"));
    assert_int_equal(answer("HTTP/2 200\r\n\r\n", &status, &head, why, sizeof(why)),
                     TLS_TUNNEL_BAD);
    assert_int_equal(answer("HTTP/1.1 20\r\n\r\n", &status, &head, why, sizeof(why)),
                     TLS_TUNNEL_BAD);
    assert_int_equal(answer("HTTP/1.1 2000 x\r\n\r\n", &status, &head, why, sizeof(why)),
                     TLS_TUNNEL_BAD);
    assert_int_equal(answer("HTTP/1.1 099 x\r\n\r\n", &status, &head, why, sizeof(why)),
                     TLS_TUNNEL_BAD);
    assert_int_equal(answer("HTTP/1.1  200 x\r\n\r\n", &status, &head, why, sizeof(why)),
                     TLS_TUNNEL_BAD);
    assert_int_equal(status, 0);
    assert_non_null(strstr(why, "malformed status line"));
    /* No end of head within TLS_TUNNEL_HEAD_MAX bytes. */
    memset(buf, 'a', sizeof(buf));
    memcpy(buf, "HTTP/1.1 200 OK\r\nX: ", 20);
    assert_int_equal(
        tls_tunnel_answer(buf, TLS_TUNNEL_HEAD_MAX - 1, &head, &status, why, sizeof(why)),
        TLS_TUNNEL_NEED_MORE);
    assert_int_equal(tls_tunnel_answer(buf, TLS_TUNNEL_HEAD_MAX, &head, &status, why, sizeof(why)),
                     TLS_TUNNEL_BAD);
    assert_non_null(strstr(why, "longer than 8192 bytes"));
    /* Interim answers are skipped: the final one decides, the head covers them all. */
    assert_int_equal(answer("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n\x16", &status,
                            &head, why, sizeof(why)),
                     TLS_TUNNEL_OK);
    assert_int_equal(status, 200);
    assert_int_equal(head, 25 + 19);
    assert_int_equal(answer("HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 403 No\r\n\r\n",
                            &status, &head, why, sizeof(why)),
                     TLS_TUNNEL_REFUSED);
    assert_int_equal(status, 403);
    assert_int_equal(
        answer("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2", &status, &head, why, sizeof(why)),
        TLS_TUNNEL_NEED_MORE);
    assert_int_equal(
        answer("HTTP/1.1 100 Continue\r\n\r\nSSH-2.0", &status, &head, why, sizeof(why)),
        TLS_TUNNEL_BAD);
    assert_int_equal(
        answer("HTTP/1.1 101 Switching Protocols\r\n\r\n", &status, &head, why, sizeof(why)),
        TLS_TUNNEL_REFUSED);
    /* Interim heads filling the limit: too long, not "need more". */
    for (size_t o = 0; o + 25 <= sizeof(buf); o += 25) {
        memcpy(buf + o, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    }
    assert_int_equal(tls_tunnel_answer(buf, TLS_TUNNEL_HEAD_MAX, &head, &status, why, sizeof(why)),
                     TLS_TUNNEL_BAD);
    assert_string_equal(tls_tunnel_result_str(TLS_TUNNEL_PEER_UNREACHABLE), "peer_unreachable");
    assert_string_equal(tls_tunnel_result_str(TLS_TUNNEL__COUNT), "unknown");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_match_san),
        cmocka_unit_test(test_name_match_allow),
        cmocka_unit_test(test_name_is_host),
        cmocka_unit_test(test_long_uri_shown_cut),
        cmocka_unit_test(test_check_leaf_uri),
        cmocka_unit_test(test_name_is_ip),
        cmocka_unit_test(test_reject_from_x509),
        cmocka_unit_test(test_reject_str),
        cmocka_unit_test(test_peer_info_fill),
        cmocka_unit_test(test_check_leaf_info_as_fill),
        cmocka_unit_test(test_check_leaf_eku),
        cmocka_unit_test(test_check_leaf_names),
        cmocka_unit_test(test_check_leaf_san_table),
        cmocka_unit_test(test_reject_describe),
        cmocka_unit_test(test_error_string),
        cmocka_unit_test(test_ctx_good),
        cmocka_unit_test(test_ctx_key_mismatch),
        cmocka_unit_test(test_ctx_non_regular_files),
        cmocka_unit_test(test_ctx_encrypted_key_no_passphrase),
        cmocka_unit_test(test_ctx_passphrase),
        cmocka_unit_test(test_ctx_own_cert_checks),
        cmocka_unit_test(test_ctx_bad_files),
        cmocka_unit_test(test_ctx_own_chain_built_once),
        cmocka_unit_test(test_hs_good),
        cmocka_unit_test(test_hs_intermediate),
        cmocka_unit_test(test_hs_eku),
        cmocka_unit_test(test_hs_names),
        cmocka_unit_test(test_hs_chain_failures),
        cmocka_unit_test(test_hs_crl),
        cmocka_unit_test(test_hs_rsa),
        cmocka_unit_test(test_hs_verify_depth),
        cmocka_unit_test(test_hs_no_client_cert),
        cmocka_unit_test(test_hs_client_cert_none),
        cmocka_unit_test(test_hs_versions),
        cmocka_unit_test(test_hs_resumption),
        cmocka_unit_test(test_tickets_derive),
        cmocka_unit_test(test_tickets_rotation),
        cmocka_unit_test(test_session_auth_fresh),
        cmocka_unit_test(test_sid_ctx),
        cmocka_unit_test(test_hs_tickets),
        cmocka_unit_test(test_hs_tickets_stateless),
        cmocka_unit_test(test_hs_ticket_auth_time),
        cmocka_unit_test(test_hs_ctx_freed_midway),
        cmocka_unit_test(test_sni),
        cmocka_unit_test(test_tunnel_request),
        cmocka_unit_test(test_tunnel_answer),
    };

    /* A peer that drops the connection must not kill the test run with SIGPIPE. */
    (void)signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, setup_pki, teardown_pki);
}
