/*
 * test_tls_failure: tls_failure.c, a failed side of a proxied connection as {reason, detail}.
 * The inputs are failures recorded from the integration scripts (20, 21, 43, 71: the stage,
 * OpenSSL's packed codes as libevent handed them over, errno, the TLS version, what tls/
 * recorded during the handshake), replayed through tls_failure_report(); the words are the
 * ones the daemon logs and answers with, so they are compared exactly where a script greps them.
 * The collector runs once on this thread's error queue and on a real context.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "pki.h"
#include "tls.h"

/* A packed OpenSSL error of libssl, as ERR_get_error() returns it ("a000086"). */
#define SSLERR(r) ERR_PACK(ERR_LIB_SSL, 0, (r))
/* What libevent queues beside OpenSSL's codes: SSL_get_error()'s values (library 0). */
#define LIBEVENT_SSL_ERROR_SSL     1UL
#define LIBEVENT_SSL_ERROR_SYSCALL 5UL

#define CERT    "/etc/ferry/node.crt"
#define CONFIG  "/etc/ferry/ferry.yaml"
#define CLIENT  "127.0.0.1:34256"
#define PEER    "peer.test:6984"
#define BACKEND "127.0.0.1:5984"

/* Our side, as tls_ctx_self_info() fills it for a listener of ${role}. */
static void
self_fill(struct tls_self_info *s, enum tls_role role)
{
    memset(s, 0, sizeof(*s));
    s->role = role;
    snprintf(s->cert_file, sizeof(s->cert_file), CERT);
    snprintf(s->key_file, sizeof(s->key_file), "/etc/ferry/node.key");
    snprintf(s->ca_file, sizeof(s->ca_file), "/etc/ferry/ca.crt");
    snprintf(s->subject, sizeof(s->subject), "CN=node1.test,O=Ferry Test");
    snprintf(s->issuer, sizeof(s->issuer), "CN=Ferry Test Root CA,O=Ferry Test");
    snprintf(s->sans, sizeof(s->sans), "DNS:node1.test,DNS:localhost,IP:127.0.0.1");
    snprintf(s->ekus, sizeof(s->ekus), "serverAuth,clientAuth");
    snprintf(s->not_before, sizeof(s->not_before), "2026-12-05 03:34:27 UTC");
    snprintf(s->not_after, sizeof(s->not_after), "2027-01-04 03:34:27 UTC");
    snprintf(s->key_type, sizeof(s->key_type), "EC P-256");
    snprintf(s->peer_host, sizeof(s->peer_host), "%s", role == TLS_ROLE_CLIENT ? "peer.test" : "");
    snprintf(s->versions, sizeof(s->versions), "TLS 1.2 and TLS 1.3");
}

/* A failure of listener "out" (outbound) or "in" (inbound) at ${stage}, nothing recorded yet. */
static void
failure(struct tls_failure *f, struct tls_verify_result *v, enum tls_role role,
        enum tls_fail_stage stage)
{
    memset(f, 0, sizeof(*f));
    memset(v, 0, sizeof(*v));
    f->role = role;
    f->stage = stage;
    f->remote = CLIENT;
    f->target = role == TLS_ROLE_CLIENT ? PEER : BACKEND;
    f->listener = role == TLS_ROLE_CLIENT ? "out" : "in";
    f->config_path = CONFIG;
    f->verify = v;
    f->version = TLS1_3_VERSION;
    self_fill(&f->self, role);
}

/* The first bytes the other side sent, as tls/ records them. */
static void
first_record(struct tls_verify_result *v, const char *bytes, size_t n)
{
    memcpy(v->first_record, bytes, n);
    v->n_first_record = n;
}

static void
add(struct tls_failure *f, unsigned long e)
{
    tls_failure_add_error(f, e);
}

/* Report ${f}: the reason must be ${want}; returns the detail (static). */
static const char *
report(const struct tls_failure *f, enum tls_fail_reason want)
{
    static struct tls_failure_report r;

    memset(&r, 0x5a, sizeof(r));
    tls_failure_report(f, &r);
    if (r.reason != want) {
        fprintf(stderr, "reason %d, want %d: %s\n", (int)r.reason, (int)want, r.detail);
    }
    assert_int_equal(r.reason, want);
    assert_true(strlen(r.detail) < sizeof(r.detail));
    if (want != TLS_FAIL_ALERT) {
        assert_int_equal(r.alert, -1);
    }
    return r.detail;
}

/* The alert tls_failure_report() gives for ${f}. */
static int
report_alert(const struct tls_failure *f)
{
    struct tls_failure_report r;

    tls_failure_report(f, &r);
    return r.alert;
}

/* ${hay} contains every NULL-terminated needle. */
static void
assert_has(const char *hay, ...)
{
    va_list ap;
    const char *needle;

    va_start(ap, hay);
    while ((needle = va_arg(ap, const char *)) != NULL) {
        if (strstr(hay, needle) == NULL) {
            fprintf(stderr, "missing \"%s\" in: %s\n", needle, hay);
            fail();
        }
    }
    va_end(ap);
}

/* ---- inbound: the client's handshake ---- */

/*
 * Recorded (20-inbound-matrix): a client whose names the allow list lacks.  The rejection in
 * words is tls_reject_describe()'s; OpenSSL's "certificate verify failed" is not used.
 */
static void
test_inbound_rejected(void **state)
{
    struct tls_failure f;
    struct tls_verify_result v;
    char want[1024];

    (void)state;
    failure(&f, &v, TLS_ROLE_SERVER, TLS_FAIL_CLIENT_HANDSHAKE);
    v.reject = TLS_REJECT_NAME_NOT_ALLOWED;
    snprintf(v.peer.subject, sizeof(v.peer.subject), "CN=intruder.test");
    snprintf(v.peer.sans, sizeof(v.peer.sans), "DNS:intruder.test");
    snprintf(v.peer.name, sizeof(v.peer.name), "intruder.test");
    first_record(&v, "\x16\x03\x01\x00\xef", 5);
    add(&f, SSLERR(SSL_R_CERTIFICATE_VERIFY_FAILED));
    add(&f, LIBEVENT_SSL_ERROR_SSL);
    (void)tls_reject_describe(TLS_REJECT_NAME_NOT_ALLOWED, TLS_ROLE_SERVER, &v.peer, want,
                              sizeof(want));
    assert_string_equal(report(&f, TLS_FAIL_REJECTED), want);
    assert_has(want, "intruder.test", NULL);

    /* No client certificate: also a §4 rejection, whatever OpenSSL says. */
    failure(&f, &v, TLS_ROLE_SERVER, TLS_FAIL_CLIENT_HANDSHAKE);
    v.reject = TLS_REJECT_NO_CERT;
    add(&f, SSLERR(SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE));
    add(&f, LIBEVENT_SSL_ERROR_SSL);
    (void)tls_reject_describe(TLS_REJECT_NO_CERT, TLS_ROLE_SERVER, &v.peer, want, sizeof(want));
    assert_string_equal(report(&f, TLS_FAIL_REJECTED), want);

    /* A resumed session whose certificate fails rule 2 again: nothing queued at all. */
    failure(&f, &v, TLS_ROLE_SERVER, TLS_FAIL_CLIENT_HANDSHAKE);
    v.reject = TLS_REJECT_EKU_WRONG;
    snprintf(v.peer.name, sizeof(v.peer.name), "node3.test");
    (void)report(&f, TLS_FAIL_REJECTED);
}

/* A client that sent its leaf alone (43): which intermediate is missing, and where. */
static void
test_inbound_chain_gap(void **state)
{
    struct tls_failure f;
    struct tls_verify_result v;
    char want[1024];
    const char *d;

    (void)state;
    failure(&f, &v, TLS_ROLE_SERVER, TLS_FAIL_CLIENT_HANDSHAKE);
    v.reject = TLS_REJECT_UNKNOWN_CA;
    v.peer.sent = 1;
    snprintf(v.peer.subject, sizeof(v.peer.subject), "CN=leaf.test");
    snprintf(v.peer.issuer, sizeof(v.peer.issuer), "CN=Site B Intermediate");
    snprintf(v.peer.name, sizeof(v.peer.name), "leaf.test");
    add(&f, SSLERR(SSL_R_CERTIFICATE_VERIFY_FAILED));
    assert_int_equal(tls_chain_gap_describe(TLS_REJECT_UNKNOWN_CA, TLS_ROLE_SERVER, &v.peer,
                                            "/etc/ferry/ca.crt", want, sizeof(want)),
                     0);
    d = report(&f, TLS_FAIL_REJECTED);
    assert_string_equal(d, want);
    assert_has(d, "CN=Site B Intermediate", NULL);

    /* A chain of two that still fails is the rule in plain words. */
    v.peer.sent = 2;
    (void)tls_reject_describe(TLS_REJECT_UNKNOWN_CA, TLS_ROLE_SERVER, &v.peer, want, sizeof(want));
    assert_string_equal(report(&f, TLS_FAIL_REJECTED), want);
}

/* Recorded (43): curl without our CA refuses our server certificate with unknown_ca. */
static void
test_inbound_client_alert(void **state)
{
    struct tls_failure f;
    struct tls_verify_result v;

    (void)state;
    failure(&f, &v, TLS_ROLE_SERVER, TLS_FAIL_CLIENT_HANDSHAKE);
    v.alert_received = true;
    v.alert = SSL_AD_UNKNOWN_CA;
    first_record(&v, "\x16\x03\x01\x02\x00", 5);
    add(&f, SSLERR(SSL_R_TLSV1_ALERT_UNKNOWN_CA));
    add(&f, LIBEVENT_SSL_ERROR_SSL);
    assert_string_equal(report(&f, TLS_FAIL_ALERT),
                        "client " CLIENT " rejected our certificate (alert unknown_ca): it does "
                        "not trust the CA that issued " CERT " (issuer \"CN=Ferry Test Root "
                        "CA,O=Ferry Test\"); add that CA to the client's trusted CAs (its tls.ca, "
                        "curl --cacert)");
    assert_int_equal(report_alert(&f), SSL_AD_UNKNOWN_CA);

    /* The alert known only from OpenSSL's code (no info callback saw it) counts the same. */
    v.alert_received = false;
    v.alert = 0;
    assert_has(report(&f, TLS_FAIL_ALERT), "alert unknown_ca", NULL);
    assert_int_equal(report_alert(&f), SSL_AD_UNKNOWN_CA);
}

/* Recorded (20, 71): no common version, a client that is not TLS; then OpenSSL's own words. */
static void
test_inbound_tls(void **state)
{
    struct tls_failure f;
    struct tls_verify_result v;

    (void)state;
    failure(&f, &v, TLS_ROLE_SERVER, TLS_FAIL_CLIENT_HANDSHAKE);
    f.version = TLS1_1_VERSION;
    first_record(&v, "\x16\x03\x01\x00\x76", 5);
    add(&f, SSLERR(SSL_R_UNSUPPORTED_PROTOCOL));
    add(&f, LIBEVENT_SSL_ERROR_SSL);
    assert_string_equal(report(&f, TLS_FAIL_TLS),
                        "client " CLIENT " and we have no TLS version in common (unsupported "
                        "protocol): we accept TLS 1.2 and TLS 1.3 (tls.min_version); upgrade a "
                        "side that offers only older versions");

    failure(&f, &v, TLS_ROLE_SERVER, TLS_FAIL_CLIENT_HANDSHAKE);
    first_record(&v, "\x16\x03\x01\x50\x00", 5);
    add(&f, SSLERR(SSL_R_PACKET_LENGTH_TOO_LONG));
    add(&f, LIBEVENT_SSL_ERROR_SSL);
    assert_string_equal(report(&f, TLS_FAIL_TLS),
                        "client " CLIENT " does not speak TLS (packet length too long): it is "
                        "not a TLS client");

    /* Plaintext where a ClientHello was due, without an OpenSSL reason. */
    failure(&f, &v, TLS_ROLE_SERVER, TLS_FAIL_CLIENT_HANDSHAKE);
    first_record(&v, "GET /", 5);
    f.eof = true;
    assert_has(report(&f, TLS_FAIL_TLS), "client " CLIENT " spoke in plaintext (\"GET /...\")",
               "not a TLS client", NULL);

    /* A reason tls/ has no sentence for: OpenSSL's reasons, joined, library-0 codes skipped. */
    failure(&f, &v, TLS_ROLE_SERVER, TLS_FAIL_CLIENT_HANDSHAKE);
    add(&f, LIBEVENT_SSL_ERROR_SSL);
    add(&f, SSLERR(SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC));
    add(&f, SSLERR(SSL_R_BAD_RECORD_TYPE));
    assert_string_equal(report(&f, TLS_FAIL_TLS), "TLS handshake failed: decryption failed or "
                                                  "bad record mac: bad record type");
}

/* Nothing from OpenSSL: an end of stream is the client going away, else errno. */
static void
test_inbound_closed_and_errno(void **state)
{
    struct tls_failure f;
    struct tls_verify_result v;

    (void)state;
    failure(&f, &v, TLS_ROLE_SERVER, TLS_FAIL_CLIENT_HANDSHAKE);
    f.eof = true;
    add(&f, LIBEVENT_SSL_ERROR_SYSCALL);
    assert_string_equal(report(&f, TLS_FAIL_CLOSED),
                        "client closed the connection during the TLS handshake");

    failure(&f, &v, TLS_ROLE_SERVER, TLS_FAIL_CLIENT_HANDSHAKE);
    f.sock_err = ECONNRESET;
    assert_string_equal(report(&f, TLS_FAIL_SOCKET),
                        "TLS handshake failed: Connection reset by peer");

    /* No verify result at all (NULL): still an answer, never a crash. */
    failure(&f, &v, TLS_ROLE_SERVER, TLS_FAIL_CLIENT_HANDSHAKE);
    f.verify = NULL;
    f.eof = true;
    (void)report(&f, TLS_FAIL_CLOSED);
}

/* ---- outbound: the peer's connect and handshake ---- */

/* Recorded (21-outbound-matrix): the peer's certificate names another host. */
static void
test_outbound_rejected(void **state)
{
    struct tls_failure f;
    struct tls_verify_result v;
    char want[1024];

    (void)state;
    failure(&f, &v, TLS_ROLE_CLIENT, TLS_FAIL_SERVER_CONNECT);
    v.reject = TLS_REJECT_NAME_MISMATCH;
    snprintf(v.peer.subject, sizeof(v.peer.subject), "CN=other.test");
    snprintf(v.peer.sans, sizeof(v.peer.sans), "DNS:other.test");
    snprintf(v.peer.detail, sizeof(v.peer.detail), "peer.test");
    first_record(&v, "\x16\x03\x03\x00\x7a", 5);
    add(&f, SSLERR(SSL_R_CERTIFICATE_VERIFY_FAILED));
    add(&f, LIBEVENT_SSL_ERROR_SSL);
    (void)tls_reject_describe(TLS_REJECT_NAME_MISMATCH, TLS_ROLE_CLIENT, &v.peer, want,
                              sizeof(want));
    assert_string_equal(report(&f, TLS_FAIL_REJECTED), want);
    assert_has(want, "peer.test", NULL);
}

/* Recorded (43): a TLS 1.2 peer refuses our client certificate during the handshake. */
static void
test_outbound_alert(void **state)
{
    struct tls_failure f;
    struct tls_verify_result v;

    (void)state;
    failure(&f, &v, TLS_ROLE_CLIENT, TLS_FAIL_SERVER_CONNECT);
    f.version = TLS1_2_VERSION;
    v.alert_received = true;
    v.alert = SSL_AD_UNKNOWN_CA;
    v.cert_sent = true;
    first_record(&v, "\x16\x03\x03\x00\x41", 5);
    add(&f, SSLERR(SSL_R_TLSV1_ALERT_UNKNOWN_CA));
    add(&f, LIBEVENT_SSL_ERROR_SSL);
    /* CONTRACT §8's example; unknown_ca is no refusal of who we are: no check --peer hint. */
    assert_string_equal(report(&f, TLS_FAIL_ALERT),
                        "peer " PEER " rejected our certificate (alert unknown_ca): it does not "
                        "trust the CA that issued " CERT " (issuer \"CN=Ferry Test Root "
                        "CA,O=Ferry Test\"); add that CA to the peer's tls.ca");
    assert_int_equal(report_alert(&f), SSL_AD_UNKNOWN_CA);
}

/*
 * Recorded (43): under TLS 1.3 the alert of a ferry whose allow lacks our names arrives after
 * our handshake, while relaying, before any byte of an answer.  It ends with the exact
 * `ferry check --peer` to run.
 */
static void
test_outbound_alert_after_handshake(void **state)
{
    struct tls_failure f;
    struct tls_verify_result v;
    char want[2048], head[1536];

    (void)state;
    failure(&f, &v, TLS_ROLE_CLIENT, TLS_FAIL_SERVER_ERROR);
    f.target = "node1.test:29865";
    f.listener = "tostrict";
    v.alert_received = true;
    v.alert = SSL_AD_BAD_CERTIFICATE;
    v.cert_sent = true;
    add(&f, SSLERR(SSL_R_SSLV3_ALERT_BAD_CERTIFICATE));
    add(&f, LIBEVENT_SSL_ERROR_SSL);
    (void)tls_alert_describe(SSL_AD_BAD_CERTIFICATE, "peer node1.test:29865", &f.self, head,
                             sizeof(head));
    snprintf(want, sizeof(want),
             "%s. Run `ferry check --peer node1.test:29865 -c " CONFIG
             " --listener tostrict` for what it presented and accepts",
             head);
    assert_string_equal(report(&f, TLS_FAIL_ALERT), want);
    assert_has(want, "likely causes, most likely first: 1. its allow lists none of our names",
               NULL);

    /* The embedded default config has no file: the command has no -c. */
    f.config_path = NULL;
    assert_has(report(&f, TLS_FAIL_ALERT),
               ". Run `ferry check --peer node1.test:29865 --listener tostrict` for what it "
               "presented and accepts",
               NULL);

    /* Once the peer has answered something, an error is no verdict on our handshake. */
    f.bytes_in = 1;
    assert_string_equal(report(&f, TLS_FAIL_TLS),
                        "peer node1.test:29865: sslv3 alert bad certificate");
}

/*
 * Every alert ferry explains, both roles: the sentence is tls_alert_describe()'s; outbound, the
 * alerts that refuse who we are end with the `ferry check --peer` hint, the others do not.
 */
static void
test_alert_table(void **state)
{
    static const struct {
        int alert;
        bool hint;
    } alerts[] = {
        {SSL_AD_UNKNOWN_CA, false},
        {SSL_AD_BAD_CERTIFICATE, true},
        {SSL_AD_UNSUPPORTED_CERTIFICATE, false},
        {SSL_AD_CERTIFICATE_EXPIRED, false},
        {SSL_AD_CERTIFICATE_REVOKED, false},
        {SSL_AD_CERTIFICATE_UNKNOWN, true},
        {SSL_AD_CERTIFICATE_REQUIRED, false},
        {SSL_AD_ACCESS_DENIED, true},
        {SSL_AD_HANDSHAKE_FAILURE, true},
        {SSL_AD_PROTOCOL_VERSION, false},
        {SSL_AD_INSUFFICIENT_SECURITY, false},
        {SSL_AD_DECRYPT_ERROR, false},
        {SSL_AD_INTERNAL_ERROR, false},
        {SSL_AD_UNRECOGNIZED_NAME, false},
        {SSL_AD_DECODE_ERROR, false},
        {SSL_AD_ILLEGAL_PARAMETER, false},
    };
    static const enum tls_fail_stage outbound_stages[] = {TLS_FAIL_SERVER_CONNECT,
                                                          TLS_FAIL_SERVER_ERROR};
    struct tls_failure f;
    struct tls_verify_result v;
    char want[2048], head[1536];
    size_t i, k;

    (void)state;
    for (i = 0; i < sizeof(alerts) / sizeof(alerts[0]); i++) {
        /* Inbound: a client refused our server certificate; never a hint. */
        failure(&f, &v, TLS_ROLE_SERVER, TLS_FAIL_CLIENT_HANDSHAKE);
        v.alert_received = true;
        v.alert = alerts[i].alert;
        (void)tls_alert_describe(alerts[i].alert, "client " CLIENT, &f.self, want, sizeof(want));
        assert_string_equal(report(&f, TLS_FAIL_ALERT), want);
        assert_int_equal(report_alert(&f), alerts[i].alert);

        for (k = 0; k < sizeof(outbound_stages) / sizeof(outbound_stages[0]); k++) {
            failure(&f, &v, TLS_ROLE_CLIENT, outbound_stages[k]);
            v.alert_received = true;
            v.alert = alerts[i].alert;
            (void)tls_alert_describe(alerts[i].alert, "peer " PEER, &f.self, head, sizeof(head));
            if (alerts[i].hint) {
                snprintf(want, sizeof(want),
                         "%s. Run `ferry check --peer " PEER " -c " CONFIG
                         " --listener out` for what it presented and accepts",
                         head);
            } else {
                snprintf(want, sizeof(want), "%s", head);
            }
            assert_string_equal(report(&f, TLS_FAIL_ALERT), want);
            assert_int_equal(report_alert(&f), alerts[i].alert);
        }
    }
}

/* Recorded (43): `peer:` pointed at CouchDB itself, which answers our ClientHello in HTTP. */
static void
test_outbound_plaintext(void **state)
{
    struct tls_failure f;
    struct tls_verify_result v;

    (void)state;
    failure(&f, &v, TLS_ROLE_CLIENT, TLS_FAIL_SERVER_CONNECT);
    first_record(&v, "<!DOC", 5);
    add(&f, SSLERR(SSL_R_WRONG_VERSION_NUMBER));
    add(&f, LIBEVENT_SSL_ERROR_SSL);
    assert_string_equal(report(&f, TLS_FAIL_TLS),
                        "peer " PEER " answered in plaintext: it is not a TLS port (is it "
                        "CouchDB itself rather than its ferry?)");

    /* A reason tls/ has no sentence for: OpenSSL's, naming the peer. */
    failure(&f, &v, TLS_ROLE_CLIENT, TLS_FAIL_SERVER_CONNECT);
    add(&f, SSLERR(SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC));
    assert_string_equal(report(&f, TLS_FAIL_TLS), "TLS handshake with peer " PEER
                                                  " failed: decryption failed or bad record mac");
}

/* Recorded (21): nothing listens; then the other socket outcomes, both kinds of server. */
static void
test_connect_errno(void **state)
{
    struct tls_failure f;
    struct tls_verify_result v;

    (void)state;
    failure(&f, &v, TLS_ROLE_CLIENT, TLS_FAIL_SERVER_CONNECT);
    f.sock_err = ECONNREFUSED;
    f.eof = true;
    add(&f, LIBEVENT_SSL_ERROR_SYSCALL);
    assert_string_equal(report(&f, TLS_FAIL_SOCKET),
                        "cannot connect to peer " PEER ": Connection refused");

    /* No socket error (or a stale EAGAIN): the peer closed in the middle of our handshake. */
    f.sock_err = 0;
    assert_string_equal(report(&f, TLS_FAIL_CLOSED),
                        "peer " PEER " closed the connection during the TLS handshake");
    f.sock_err = EAGAIN;
    (void)report(&f, TLS_FAIL_CLOSED);
    f.sock_err = EINTR;
    (void)report(&f, TLS_FAIL_CLOSED);

    /* Inbound, the backend is plain TCP: no TLS words, and its errors are never TLS ones. */
    failure(&f, &v, TLS_ROLE_SERVER, TLS_FAIL_SERVER_CONNECT);
    f.sock_err = ECONNREFUSED;
    add(&f, SSLERR(SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC));
    v.reject = TLS_REJECT_EKU_WRONG; /* the client's verdict: not this side's */
    assert_string_equal(report(&f, TLS_FAIL_SOCKET),
                        "cannot connect to backend " BACKEND ": Connection refused");
    f.sock_err = 0;
    assert_string_equal(report(&f, TLS_FAIL_CLOSED),
                        "backend " BACKEND " closed the connection at once");
}

/* ---- the backend / peer while relaying ---- */

/*
 * Recorded (43): a TLS 1.3 peer that resets the connection once our request arrives, before any
 * byte of an answer, after we sent a certificate: how a refusal looks when the reset destroyed
 * the alert.  The same reset in any other circumstance is the plain sentence.
 */
static void
test_reset_after_tls13_handshake(void **state)
{
    struct tls_failure f;
    struct tls_verify_result v;
    char want[2048], head[1536];

    (void)state;
    failure(&f, &v, TLS_ROLE_CLIENT, TLS_FAIL_SERVER_CLOSED);
    f.target = "peer.test:24460";
    f.listener = "toreset";
    f.sock_err = ECONNRESET;
    f.eof = true;
    v.cert_sent = true;
    first_record(&v, "\x16\x03\x03\x00\x7a", 5);
    add(&f, LIBEVENT_SSL_ERROR_SYSCALL);
    (void)tls_reset_describe("peer peer.test:24460", &f.self, head, sizeof(head));
    snprintf(want, sizeof(want),
             "%s. Run `ferry check --peer peer.test:24460 -c " CONFIG
             " --listener toreset` for what it presented and accepts",
             head);
    assert_string_equal(report(&f, TLS_FAIL_RESET), want);
    assert_has(want,
               "peer peer.test:24460 reset the connection right after our TLS 1.3 handshake, "
               "before answering: this is how a peer refusing our certificate may look under "
               "TLS 1.3",
               NULL);
    f.sock_err = EPIPE;
    (void)report(&f, TLS_FAIL_RESET);

    /* Recorded: the same reset when we sent no certificate. */
    f.sock_err = ECONNRESET;
    v.cert_sent = false;
    assert_string_equal(report(&f, TLS_FAIL_CLOSED),
                        "peer peer.test:24460 closed the connection without answering");
    v.cert_sent = true;
    f.version = TLS1_2_VERSION; /* TLS 1.2 has judged our certificate in the handshake */
    (void)report(&f, TLS_FAIL_CLOSED);
    f.version = TLS1_3_VERSION;
    f.reused = true; /* a pooled connection served requests before */
    (void)report(&f, TLS_FAIL_CLOSED);
    f.reused = false;
    f.bytes_in = 10; /* it answered something */
    (void)report(&f, TLS_FAIL_CLOSED);
    f.bytes_in = 0;
    f.sock_err = 0; /* a clean close */
    (void)report(&f, TLS_FAIL_CLOSED);
    f.sock_err = ECONNRESET;
    (void)report(&f, TLS_FAIL_RESET);

    /* Inbound: a backend is never judged on TLS. */
    failure(&f, &v, TLS_ROLE_SERVER, TLS_FAIL_SERVER_CLOSED);
    f.sock_err = ECONNRESET;
    v.cert_sent = true;
    assert_string_equal(report(&f, TLS_FAIL_CLOSED),
                        "backend " BACKEND " closed the connection without answering");
}

/* An error on the backend / peer side while relaying: OpenSSL's reasons, a reset, errno. */
static void
test_server_error(void **state)
{
    struct tls_failure f;
    struct tls_verify_result v;

    (void)state;
    failure(&f, &v, TLS_ROLE_CLIENT, TLS_FAIL_SERVER_ERROR);
    add(&f, SSLERR(SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC));
    add(&f, LIBEVENT_SSL_ERROR_SSL);
    assert_string_equal(report(&f, TLS_FAIL_TLS),
                        "peer " PEER ": decryption failed or bad record mac");

    /* The TLS 1.3 reset, here read as an error rather than an end of stream. */
    failure(&f, &v, TLS_ROLE_CLIENT, TLS_FAIL_SERVER_ERROR);
    f.sock_err = ECONNRESET;
    v.cert_sent = true;
    assert_has(report(&f, TLS_FAIL_RESET), "reset the connection right after our TLS 1.3",
               "Run `ferry check --peer " PEER " -c " CONFIG " --listener out`", NULL);
    f.bytes_in = 100;
    assert_string_equal(report(&f, TLS_FAIL_SOCKET), "peer " PEER ": Connection reset by peer");

    /* Inbound: the verify result is the client's; an alert there says nothing of the backend. */
    failure(&f, &v, TLS_ROLE_SERVER, TLS_FAIL_SERVER_ERROR);
    f.sock_err = EPIPE;
    v.alert_received = true;
    v.alert = SSL_AD_CERTIFICATE_UNKNOWN;
    assert_string_equal(report(&f, TLS_FAIL_SOCKET), "backend " BACKEND ": Broken pipe");
}

/* ---- the client while relaying ---- */

/* Recorded (71): a client asks to renegotiate, ferry refuses, the client gives up. */
static void
test_client_error(void **state)
{
    struct tls_failure f;
    struct tls_verify_result v;

    (void)state;
    failure(&f, &v, TLS_ROLE_SERVER, TLS_FAIL_CLIENT_ERROR);
    f.version = TLS1_2_VERSION;
    f.bytes_in = 860;
    v.renegotiation_refused = true;
    v.alert_received = true;
    v.alert = SSL_AD_HANDSHAKE_FAILURE;
    add(&f, SSLERR(SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE));
    add(&f, LIBEVENT_SSL_ERROR_SSL);
    assert_string_equal(report(&f, TLS_FAIL_RENEGOTIATION),
                        "client: renegotiation refused (then: sslv3 alert handshake failure)");

    /* OpenSSL's own reasons for a refused renegotiation, without the callback's flag. */
    failure(&f, &v, TLS_ROLE_SERVER, TLS_FAIL_CLIENT_ERROR);
    add(&f, SSLERR(SSL_R_NO_RENEGOTIATION));
    assert_string_equal(report(&f, TLS_FAIL_RENEGOTIATION),
                        "client: renegotiation refused (then: no renegotiation)");
    failure(&f, &v, TLS_ROLE_SERVER, TLS_FAIL_CLIENT_ERROR);
    v.renegotiation_refused = true;
    assert_string_equal(report(&f, TLS_FAIL_RENEGOTIATION), "client: renegotiation refused");

    /* Recorded (71): garbage after the handshake. */
    failure(&f, &v, TLS_ROLE_SERVER, TLS_FAIL_CLIENT_ERROR);
    add(&f, SSLERR(SSL_R_PACKET_LENGTH_TOO_LONG));
    add(&f, LIBEVENT_SSL_ERROR_SSL);
    assert_string_equal(report(&f, TLS_FAIL_TLS), "client: TLS error: packet length too long");

    /* errno, and never "client: Success" when there is none (issue 12). */
    failure(&f, &v, TLS_ROLE_SERVER, TLS_FAIL_CLIENT_ERROR);
    f.sock_err = ECONNRESET;
    assert_string_equal(report(&f, TLS_FAIL_SOCKET), "client: Connection reset by peer");
    f.sock_err = 0;
    assert_string_equal(report(&f, TLS_FAIL_SOCKET), "client: the connection failed");

    /* Outbound, the client is plain: errors queued for it are not TLS ones. */
    failure(&f, &v, TLS_ROLE_CLIENT, TLS_FAIL_CLIENT_ERROR);
    f.sock_err = ECONNRESET;
    add(&f, SSLERR(SSL_R_PACKET_LENGTH_TOO_LONG));
    assert_string_equal(report(&f, TLS_FAIL_SOCKET), "client: Connection reset by peer");
}

/* ---- limits ---- */

/* More errors than are kept, and more text than fits: cut, never overflowing. */
static void
test_limits(void **state)
{
    struct tls_failure f;
    struct tls_verify_result v;
    const char *d;
    size_t i;

    (void)state;
    failure(&f, &v, TLS_ROLE_SERVER, TLS_FAIL_CLIENT_HANDSHAKE);
    for (i = 0; i < TLS_FAIL_MAX_ERRORS + 5; i++) {
        add(&f, SSLERR(SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC));
    }
    assert_int_equal(f.n_errors, TLS_FAIL_MAX_ERRORS);
    d = report(&f, TLS_FAIL_TLS);
    assert_has(d, "TLS handshake failed: decryption failed or bad record mac: decryption", NULL);
    assert_true(strlen(d) < 256 + sizeof("TLS handshake failed: "));

    /* An unknown code: OpenSSL has no string for it. */
    failure(&f, &v, TLS_ROLE_SERVER, TLS_FAIL_CLIENT_HANDSHAKE);
    add(&f, SSLERR(4000));
    assert_string_equal(report(&f, TLS_FAIL_TLS), "TLS handshake failed: unknown TLS error");

    /* Long names everywhere: the detail is cut, NUL-terminated. */
    {
        static char longname[3000];

        memset(longname, 'x', sizeof(longname) - 1);
        failure(&f, &v, TLS_ROLE_CLIENT, TLS_FAIL_SERVER_ERROR);
        f.target = longname;
        f.listener = longname;
        v.alert_received = true;
        v.alert = SSL_AD_BAD_CERTIFICATE;
        d = report(&f, TLS_FAIL_ALERT);
        assert_int_equal(strlen(d), TLS_FAIL_DETAIL_LEN - 1);
    }
}

/* ---- the collector ---- */

/* This thread's queue is appended after the errors libevent handed over, and emptied. */
static void
test_collect_queue(void **state)
{
    struct tls_failure f;
    struct tls_verify_result v;
    SSL_CTX *ctx;
    SSL *ssl;

    (void)state;
    failure(&f, &v, TLS_ROLE_SERVER, TLS_FAIL_CLIENT_HANDSHAKE);
    memset(&f.self, 0x5a, sizeof(f.self));
    add(&f, SSLERR(SSL_R_WRONG_VERSION_NUMBER));
    ERR_clear_error();
    ERR_raise(ERR_LIB_SSL, SSL_R_NO_SHARED_CIPHER);
    ERR_raise(ERR_LIB_SSL, SSL_R_BAD_RECORD_TYPE);
    tls_failure_collect(&f, NULL, NULL);
    assert_int_equal(ERR_peek_error(), 0);
    assert_int_equal(f.n_errors, 3);
    assert_int_equal(ERR_GET_REASON(f.errors[0]), SSL_R_WRONG_VERSION_NUMBER);
    assert_int_equal(ERR_GET_REASON(f.errors[1]), SSL_R_NO_SHARED_CIPHER);
    assert_int_equal(ERR_GET_REASON(f.errors[2]), SSL_R_BAD_RECORD_TYPE);
    assert_int_equal(f.version, 0);
    /* No context: an empty self in our role. */
    assert_int_equal(f.self.role, TLS_ROLE_SERVER);
    assert_string_equal(f.self.cert_file, "");

    ctx = SSL_CTX_new(TLS_method());
    assert_non_null(ctx);
    ssl = SSL_new(ctx);
    assert_non_null(ssl);
    tls_failure_collect(&f, NULL, ssl);
    assert_int_equal(f.version, SSL_version(ssl));
    assert_int_equal(f.n_errors, 3);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
}

/* With the listener's context: our files for the stages whose texts name them. */
static void
test_collect_self(void **state)
{
    static const char *const dns[] = {"node1.test", NULL};
    char dir[256], crt[320], key[320], ca[320], err[512] = "";
    struct pki_cert *root, *leaf;
    struct tls_ctx_params p;
    struct tls_ctx *t;
    struct tls_failure f;
    struct tls_verify_result v;

    (void)state;
    assert_non_null(pki_dir("test_tls_failure", dir, sizeof(dir)));
    root = pki_cert_new(&(struct pki_opts){.cn = "Failure Root CA", .ca = true}, NULL);
    leaf = pki_cert_new(&(struct pki_opts){.cn = "node1.test", .dns = dns}, root);
    assert_non_null(root);
    assert_non_null(leaf);
    assert_int_equal(pki_write_chain(pki_path(crt, sizeof(crt), dir, "node1.crt"), leaf, NULL), 0);
    assert_int_equal(pki_write_key(pki_path(key, sizeof(key), dir, "node1.key"), leaf, NULL), 0);
    assert_int_equal(pki_write_chain(pki_path(ca, sizeof(ca), dir, "ca.crt"), root, NULL), 0);
    memset(&p, 0, sizeof(p));
    p.role = TLS_ROLE_CLIENT;
    p.cert_file = crt;
    p.key_file = key;
    p.ca_file = ca;
    p.min_version = TLS1_2_VERSION;
    p.peer_host = "peer.test";
    t = tls_ctx_new(&p, err, sizeof(err));
    assert_non_null(t);

    failure(&f, &v, TLS_ROLE_CLIENT, TLS_FAIL_SERVER_CONNECT);
    memset(&f.self, 0, sizeof(f.self));
    tls_failure_collect(&f, t, NULL);
    assert_int_equal(f.self.role, TLS_ROLE_CLIENT);
    assert_string_equal(f.self.cert_file, crt);
    assert_string_equal(f.self.ca_file, ca);
    assert_string_equal(f.self.peer_host, "peer.test");
    assert_has(f.self.issuer, "CN=Failure Root CA", NULL);
    assert_int_equal(ERR_peek_error(), 0);
    /* ... which the alert sentence names. */
    v.alert_received = true;
    v.alert = SSL_AD_UNKNOWN_CA;
    assert_has(report(&f, TLS_FAIL_ALERT), crt, "CN=Failure Root CA", NULL);

    /* The plain side of an outbound listener: nothing of ours to name. */
    failure(&f, &v, TLS_ROLE_CLIENT, TLS_FAIL_CLIENT_ERROR);
    tls_failure_collect(&f, t, NULL);
    assert_int_equal(f.self.role, TLS_ROLE_CLIENT);
    assert_string_equal(f.self.cert_file, "");

    tls_ctx_free(t);
    pki_cert_free(leaf);
    pki_cert_free(root);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inbound_rejected),
        cmocka_unit_test(test_inbound_chain_gap),
        cmocka_unit_test(test_inbound_client_alert),
        cmocka_unit_test(test_inbound_tls),
        cmocka_unit_test(test_inbound_closed_and_errno),
        cmocka_unit_test(test_outbound_rejected),
        cmocka_unit_test(test_outbound_alert),
        cmocka_unit_test(test_outbound_alert_after_handshake),
        cmocka_unit_test(test_alert_table),
        cmocka_unit_test(test_outbound_plaintext),
        cmocka_unit_test(test_connect_errno),
        cmocka_unit_test(test_reset_after_tls13_handshake),
        cmocka_unit_test(test_server_error),
        cmocka_unit_test(test_client_error),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_collect_queue),
        cmocka_unit_test(test_collect_self),
    };

    /* OpenSSL's reason strings ("wrong version number") are loaded with libssl. */
    (void)OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS, NULL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
