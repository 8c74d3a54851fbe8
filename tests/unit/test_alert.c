/*
 * test_alert: tls_alert.c, the translation of TLS alerts and OpenSSL handshake errors into
 * plain words (CONTRACT.md §8).  Pure functions: no PKI, no handshake, no network.
 */
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

#include "tls.h"

/* Our side as an outbound listener of CONTRACT §8's example. */
static void
self_client(struct tls_self_info *s)
{
    memset(s, 0, sizeof(*s));
    s->role = TLS_ROLE_CLIENT;
    snprintf(s->cert_file, sizeof(s->cert_file), "/etc/ferry/node.crt");
    snprintf(s->key_file, sizeof(s->key_file), "/etc/ferry/node.key");
    snprintf(s->ca_file, sizeof(s->ca_file), "/etc/ferry/ca.crt");
    snprintf(s->subject, sizeof(s->subject), "CN=node1.test");
    snprintf(s->issuer, sizeof(s->issuer), "CN=Site A CA");
    snprintf(s->sans, sizeof(s->sans), "DNS:node1.test");
    snprintf(s->ekus, sizeof(s->ekus), "serverAuth");
    snprintf(s->not_before, sizeof(s->not_before), "2020-01-01 00:00:00 UTC");
    snprintf(s->not_after, sizeof(s->not_after), "2021-01-01 00:00:00 UTC");
    snprintf(s->key_type, sizeof(s->key_type), "EC P-256");
    snprintf(s->peer_host, sizeof(s->peer_host), "node2.test");
    snprintf(s->versions, sizeof(s->versions), "TLS 1.2 and TLS 1.3");
    snprintf(s->ciphers, sizeof(s->ciphers), "ECDHE-ECDSA-AES128-GCM-SHA256");
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

static void
test_names(void **state)
{
    (void)state;
    assert_string_equal(tls_alert_name(SSL_AD_UNKNOWN_CA), "unknown_ca");
    assert_string_equal(tls_alert_name(SSL_AD_CERTIFICATE_REQUIRED), "certificate_required");
    assert_string_equal(tls_alert_name(SSL_AD_HANDSHAKE_FAILURE), "handshake_failure");
    assert_string_equal(tls_alert_name(SSL_AD_UNRECOGNIZED_NAME), "unrecognized_name");
    assert_string_equal(tls_alert_name(0), "close_notify");
    assert_null(tls_alert_name(7));
    assert_null(tls_alert_name(-1));
}

static void
test_from_error(void **state)
{
    (void)state;
    assert_int_equal(tls_alert_from_error(ERR_PACK(ERR_LIB_SSL, 0, SSL_R_TLSV1_ALERT_UNKNOWN_CA)),
                     SSL_AD_UNKNOWN_CA);
    assert_int_equal(
        tls_alert_from_error(ERR_PACK(ERR_LIB_SSL, 0, SSL_R_SSLV3_ALERT_BAD_CERTIFICATE)),
        SSL_AD_BAD_CERTIFICATE);
    assert_int_equal(
        tls_alert_from_error(ERR_PACK(ERR_LIB_SSL, 0, SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED)),
        SSL_AD_CERTIFICATE_REQUIRED);
    assert_int_equal(tls_alert_from_error(ERR_PACK(ERR_LIB_SSL, 0, SSL_R_WRONG_VERSION_NUMBER)),
                     -1);
    assert_int_equal(tls_alert_from_error(ERR_PACK(ERR_LIB_X509, 0, 1048)), -1);
    assert_int_equal(tls_alert_from_error(0), -1);
}

/* CONTRACT §8's example, word for word. */
static void
test_contract_example(void **state)
{
    struct tls_self_info s;
    char buf[1024];

    (void)state;
    self_client(&s);
    assert_string_equal(
        tls_alert_describe(SSL_AD_UNKNOWN_CA, "peer node2.test:6984", &s, buf, sizeof(buf)),
        "peer node2.test:6984 rejected our certificate (alert unknown_ca): it does not trust "
        "the CA that issued /etc/ferry/node.crt (issuer \"CN=Site A CA\"); add that CA to the "
        "peer's tls.ca");
}

/* Every alert of the brief: its name, and the fact or file that fixes it. */
static void
test_alert_table(void **state)
{
    struct tls_self_info s;
    char b[1024];
    const char *who = "peer node2.test:6984";

    (void)state;
    self_client(&s);
    s.role = TLS_ROLE_SERVER; /* a client refused our server certificate */
    assert_has(tls_alert_describe(SSL_AD_BAD_CERTIFICATE, who, &s, b, sizeof(b)), who,
               "alert bad_certificate", "/etc/ferry/node.crt", "intermediate", NULL);
    /* Our role CLIENT: a ferry's allow refusal, the causes in order, our names. */
    s.role = TLS_ROLE_CLIENT;
    assert_string_equal(
        tls_alert_describe(SSL_AD_BAD_CERTIFICATE, who, &s, b, sizeof(b)),
        "peer node2.test:6984 rejected our certificate (alert bad_certificate); likely causes, "
        "most likely first: 1. its allow lists none of our names (DNS:node1.test): add one to "
        "the allow of its inbound listener, or reissue /etc/ferry/node.crt with a name it "
        "allows; 2. by its clock /etc/ferry/node.crt is not valid yet (valid from 2020-01-01 "
        "00:00:00 UTC): fix the clock that is wrong; 3. a CRL in its tls.crl is not valid yet; "
        "4. it cannot parse /etc/ferry/node.crt (subject \"CN=node1.test\"), or, if it is not "
        "a ferry, a rule of its own: see its log");
    /* No name its allow could match: that comes first. */
    s.sans[0] = '\0';
    assert_has(tls_alert_describe(SSL_AD_BAD_CERTIFICATE, who, &s, b, sizeof(b)),
               "1. /etc/ferry/node.crt has no DNS, IP or URI SAN for its allow to match (its CN "
               "node1.test counts only with the peer's tls.cn_fallback: true)",
               NULL);
    self_client(&s);
    assert_has(tls_alert_describe(SSL_AD_UNSUPPORTED_CERTIFICATE, who, &s, b, sizeof(b)),
               "alert unsupported_certificate", "clientAuth", "it has: serverAuth",
               "/etc/ferry/node.crt", NULL);
    assert_has(tls_alert_describe(SSL_AD_CERTIFICATE_EXPIRED, who, &s, b, sizeof(b)),
               "alert certificate_expired", "2021-01-01 00:00:00 UTC", "clock", NULL);
    assert_has(tls_alert_describe(SSL_AD_CERTIFICATE_REVOKED, who, &s, b, sizeof(b)),
               "alert certificate_revoked", "CRL", "CN=node1.test", NULL);
    assert_has(tls_alert_describe(SSL_AD_CERTIFICATE_REQUIRED, who, &s, b, sizeof(b)),
               "alert certificate_required", "got none", "/etc/ferry/node.crt", NULL);
    assert_has(tls_alert_describe(SSL_AD_ACCESS_DENIED, who, &s, b, sizeof(b)),
               "alert access_denied", "DNS:node1.test", "allow", NULL);
    assert_has(tls_alert_describe(SSL_AD_HANDSHAKE_FAILURE, who, &s, b, sizeof(b)),
               "alert handshake_failure", "TLS 1.2 and TLS 1.3", "ECDHE-ECDSA-AES128-GCM-SHA256",
               NULL);
    assert_has(tls_alert_describe(SSL_AD_PROTOCOL_VERSION, who, &s, b, sizeof(b)),
               "alert protocol_version", "TLS 1.2 and TLS 1.3", "tls.min_version", NULL);
    assert_has(tls_alert_describe(SSL_AD_DECRYPT_ERROR, who, &s, b, sizeof(b)),
               "alert decrypt_error", "/etc/ferry/node.key", "EC P-256", NULL);
    assert_has(tls_alert_describe(SSL_AD_INTERNAL_ERROR, who, &s, b, sizeof(b)),
               "alert internal_error", "peer's log", NULL);
    assert_has(tls_alert_describe(SSL_AD_UNRECOGNIZED_NAME, who, &s, b, sizeof(b)),
               "alert unrecognized_name", "SNI \"node2.test\"", NULL);
    assert_has(tls_alert_describe(SSL_AD_CERTIFICATE_UNKNOWN, who, &s, b, sizeof(b)),
               "alert certificate_unknown", NULL);
    assert_has(tls_alert_describe(SSL_AD_DECODE_ERROR, who, &s, b, sizeof(b)), "alert decode_error",
               "malformed", NULL);
    assert_has(tls_alert_describe(SSL_AD_INAPPROPRIATE_FALLBACK, who, &s, b, sizeof(b)),
               "alert inappropriate_fallback", NULL);
    assert_has(tls_alert_describe(250, who, &s, b, sizeof(b)), "alert 250", NULL);
}

/* A reset right after our TLS 1.3 handshake: the refusal it may be, bad_certificate's causes. */
static void
test_reset(void **state)
{
    struct tls_self_info s;
    char b[1536], alert[1536];
    const char *causes;

    (void)state;
    self_client(&s);
    assert_string_equal(
        tls_reset_describe("peer node2.test:6984", &s, b, sizeof(b)),
        "peer node2.test:6984 reset the connection right after our TLS 1.3 handshake, before "
        "answering: this is how a peer refusing our certificate may look under TLS 1.3 (its "
        "alert lost to the reset); likely causes, most likely first: 1. its allow lists none of "
        "our names (DNS:node1.test): add one to the allow of its inbound listener, or reissue "
        "/etc/ferry/node.crt with a name it allows; 2. by its clock /etc/ferry/node.crt is not "
        "valid yet (valid from 2020-01-01 00:00:00 UTC): fix the clock that is wrong; 3. a CRL "
        "in its tls.crl is not valid yet; 4. it cannot parse /etc/ferry/node.crt (subject "
        "\"CN=node1.test\"), or, if it is not a ferry, a rule of its own: see its log");
    /* The causes are the alert's, word for word. */
    tls_alert_describe(SSL_AD_BAD_CERTIFICATE, "peer node2.test:6984", &s, alert, sizeof(alert));
    causes = strstr(alert, "likely causes");
    assert_non_null(causes);
    assert_non_null(strstr(b, causes));
    /* No SAN: the first cause says so, as for the alert. */
    s.sans[0] = '\0';
    assert_has(tls_reset_describe("peer x:1", &s, b, sizeof(b)),
               "1. /etc/ferry/node.crt has no DNS, IP or URI SAN", NULL);
    /* No self, no who, a short buffer: still a sentence, never past the end. */
    assert_has(tls_reset_describe(NULL, NULL, b, sizeof(b)), "the peer reset the connection",
               "our certificate", NULL);
    assert_int_equal(strlen(tls_reset_describe("peer x:1", &s, b, 16)), 15);
}

/* Our role SERVER: a client judged our server certificate. */
static void
test_alert_server_role(void **state)
{
    struct tls_self_info s;
    char b[1024];

    (void)state;
    self_client(&s);
    s.role = TLS_ROLE_SERVER;
    assert_has(tls_alert_describe(SSL_AD_UNKNOWN_CA, "client 127.0.0.1:5555", &s, b, sizeof(b)),
               "client 127.0.0.1:5555 rejected our certificate (alert unknown_ca)",
               "/etc/ferry/node.crt", "client's trusted CAs", "curl --cacert", NULL);
    assert_has(tls_alert_describe(SSL_AD_UNSUPPORTED_CERTIFICATE, "client x", &s, b, sizeof(b)),
               "serverAuth", NULL);
}

/* No self info, tiny buffers: never crash, always NUL-terminated. */
static void
test_alert_edges(void **state)
{
    char b[16];

    (void)state;
    tls_alert_describe(SSL_AD_UNKNOWN_CA, NULL, NULL, b, sizeof(b));
    assert_int_equal(strlen(b), sizeof(b) - 1);
    tls_alert_describe(SSL_AD_UNKNOWN_CA, "peer x", NULL, b, 0);
    {
        char big[512];

        tls_alert_describe(SSL_AD_UNKNOWN_CA, "peer x", NULL, big, sizeof(big));
        assert_has(big, "peer x rejected our certificate", "our certificate", NULL);
        assert_null(strstr(big, "(null)"));
    }
}

static void
test_plaintext(void **state)
{
    char b[512];

    (void)state;
    assert_int_equal(tls_plaintext_describe((const unsigned char *)"HTTP/", 5, "peer h:1",
                                            TLS_ROLE_CLIENT, b, sizeof(b)),
                     0);
    assert_string_equal(b, "peer h:1 answered in plaintext: it is not a TLS port (is it CouchDB "
                           "itself rather than its ferry?)");
    assert_int_equal(tls_plaintext_describe((const unsigned char *)"<!DOC", 5, "peer h:1",
                                            TLS_ROLE_CLIENT, b, sizeof(b)),
                     0);
    assert_has(b, "answered in plaintext: it is not a TLS port", NULL);
    assert_int_equal(tls_plaintext_describe((const unsigned char *)"SSH-2", 5, "peer h:1",
                                            TLS_ROLE_CLIENT, b, sizeof(b)),
                     0);
    assert_has(b, "\"SSH-2...\"", "not a TLS port", NULL);
    /* A TLS record header (handshake, alert) is not plaintext. */
    assert_int_equal(tls_plaintext_describe((const unsigned char *)"\x16\x03\x03\x00\x50", 5,
                                            "peer h:1", TLS_ROLE_CLIENT, b, sizeof(b)),
                     -1);
    assert_int_equal(tls_plaintext_describe((const unsigned char *)"\x15\x03\x03\x00\x02", 5,
                                            "peer h:1", TLS_ROLE_CLIENT, b, sizeof(b)),
                     -1);
    assert_int_equal(tls_plaintext_describe(NULL, 0, "peer h:1", TLS_ROLE_CLIENT, b, sizeof(b)),
                     -1);
    assert_int_equal(tls_plaintext_describe((const unsigned char *)"\x00\x01\x02\x03\x04", 5,
                                            "peer h:1", TLS_ROLE_CLIENT, b, sizeof(b)),
                     0);
    assert_has(b, "not TLS", "0x00", NULL);
    assert_int_equal(tls_plaintext_describe((const unsigned char *)"GET /", 5, "client c:2",
                                            TLS_ROLE_SERVER, b, sizeof(b)),
                     0);
    assert_has(b, "client c:2 spoke in plaintext", "not a TLS client", NULL);
}

static void
test_error_table(void **state)
{
    struct tls_self_info s;
    struct tls_verify_result res;
    char b[1024];
    const char *who = "peer node2.test:6984";

    (void)state;
    self_client(&s);
    memset(&res, 0, sizeof(res));
    /* wrong version number after an HTTP answer: plaintext */
    memcpy(res.first_record, "HTTP/", 5);
    res.n_first_record = 5;
    assert_int_equal(tls_error_describe(ERR_PACK(ERR_LIB_SSL, 0, SSL_R_WRONG_VERSION_NUMBER), who,
                                        &res, &s, b, sizeof(b)),
                     0);
    assert_has(b, "answered in plaintext", "CouchDB itself", NULL);
    /* ... and without the bytes */
    assert_int_equal(tls_error_describe(ERR_PACK(ERR_LIB_SSL, 0, SSL_R_WRONG_VERSION_NUMBER), who,
                                        NULL, &s, b, sizeof(b)),
                     0);
    assert_has(b, "does not speak TLS", "wrong version number", NULL);
    /* an alert reported through the error queue */
    assert_int_equal(tls_error_describe(ERR_PACK(ERR_LIB_SSL, 0, SSL_R_TLSV1_ALERT_UNKNOWN_CA), who,
                                        NULL, &s, b, sizeof(b)),
                     0);
    assert_has(b, "alert unknown_ca", "CN=Site A CA", NULL);
    assert_int_equal(tls_error_describe(ERR_PACK(ERR_LIB_SSL, 0, SSL_R_NO_SHARED_CIPHER), who, NULL,
                                        &s, b, sizeof(b)),
                     0);
    assert_has(b, "no shared cipher", "ECDHE-ECDSA-AES128-GCM-SHA256", NULL);
    assert_int_equal(tls_error_describe(ERR_PACK(ERR_LIB_SSL, 0, SSL_R_UNSUPPORTED_PROTOCOL), who,
                                        NULL, &s, b, sizeof(b)),
                     0);
    assert_has(b, "no TLS version in common", "TLS 1.2 and TLS 1.3", NULL);
    assert_int_equal(tls_error_describe(ERR_PACK(ERR_LIB_SSL, 0, SSL_R_VERSION_TOO_LOW), who, NULL,
                                        &s, b, sizeof(b)),
                     0);
    assert_int_equal(tls_error_describe(ERR_PACK(ERR_LIB_SSL, 0, SSL_R_HTTP_REQUEST), "client c:1",
                                        NULL, NULL, b, sizeof(b)),
                     0);
    assert_has(b, "plaintext HTTP request", "https://", NULL);
    assert_int_equal(
        tls_error_describe(ERR_PACK(ERR_LIB_SSL, 0, SSL_R_NO_SHARED_SIGNATURE_ALGORITHMS), who,
                           NULL, &s, b, sizeof(b)),
        0);
    assert_has(b, "signature algorithm", "EC P-256", NULL);
    /* not ours to explain: the caller keeps OpenSSL's text */
    assert_int_equal(tls_error_describe(ERR_PACK(ERR_LIB_SSL, 0, SSL_R_CERTIFICATE_VERIFY_FAILED),
                                        who, NULL, &s, b, sizeof(b)),
                     -1);
    assert_string_equal(b, "");
    assert_int_equal(tls_error_describe(0, who, NULL, &s, b, sizeof(b)), -1);
    assert_int_equal(tls_error_describe(ERR_PACK(ERR_LIB_X509, 0, 1), who, NULL, &s, b, sizeof(b)),
                     -1);
}

/* A peer that sent its leaf alone (issue 13 §5): which file lacks which intermediate. */
static void
test_chain_gap(void **state)
{
    struct tls_peer_info info;
    char buf[600];

    (void)state;
    memset(&info, 0, sizeof(info));
    snprintf(info.name, sizeof(info.name), "node2.test");
    snprintf(info.subject, sizeof(info.subject), "CN=node2.test");
    snprintf(info.issuer, sizeof(info.issuer), "CN=Site B Issuing CA");
    info.sent = 1;
    assert_int_equal(tls_chain_gap_describe(TLS_REJECT_UNKNOWN_CA, TLS_ROLE_SERVER, &info,
                                            "/etc/ferry/ca.crt", buf, sizeof(buf)),
                     0);
    assert_string_equal(
        buf, "certificate for node2.test was issued by CN=Site B Issuing CA, which is not in "
             "tls.ca (/etc/ferry/ca.crt), and came alone, without an intermediate: if that "
             "issuer is an intermediate CA, the client's certificate file (curl --cert, a "
             "ferry's tls.cert) lacks it: append it, so that the file holds the leaf, then the "
             "intermediate; if it is the client's root CA, add it to tls.ca instead");
    assert_int_equal(tls_chain_gap_describe(TLS_REJECT_UNKNOWN_CA, TLS_ROLE_CLIENT, &info, NULL,
                                            buf, sizeof(buf)),
                     0);
    assert_non_null(strstr(buf, "which is not in tls.ca (tls.ca), and came alone, without an "
                                "intermediate: if that issuer is an intermediate CA, the peer's "
                                "certificate file (a ferry's tls.cert) lacks it: append it"));
    /* tls.ca holds the intermediate but not the root above it. */
    info.gap_in_ca = true;
    snprintf(info.detail, sizeof(info.detail),
             "unable to get issuer certificate; at depth 1: CN=Site B Issuing CA");
    assert_int_equal(tls_chain_gap_describe(TLS_REJECT_UNKNOWN_CA, TLS_ROLE_CLIENT, &info,
                                            "/etc/ferry/ca.crt", buf, sizeof(buf)),
                     0);
    assert_non_null(strstr(buf, "came without its intermediate \"CN=Site B Issuing CA\", which "
                                "our tls.ca (/etc/ferry/ca.crt) holds, but not the root CA above "
                                "it (unable to get issuer certificate; at depth 1: CN=Site B "
                                "Issuing CA): add that root to tls.ca, and append the "
                                "intermediate to the peer's certificate file"));
    /* Not the case: a chain was sent, another rule, a self-issued leaf, no info. */
    snprintf(buf, sizeof(buf), "kept");
    info.sent = 2;
    assert_int_equal(tls_chain_gap_describe(TLS_REJECT_UNKNOWN_CA, TLS_ROLE_CLIENT, &info, NULL,
                                            buf, sizeof(buf)),
                     -1);
    info.sent = 1;
    assert_int_equal(
        tls_chain_gap_describe(TLS_REJECT_EXPIRED, TLS_ROLE_CLIENT, &info, NULL, buf, sizeof(buf)),
        -1);
    snprintf(info.issuer, sizeof(info.issuer), "CN=node2.test");
    assert_int_equal(tls_chain_gap_describe(TLS_REJECT_UNKNOWN_CA, TLS_ROLE_CLIENT, &info, NULL,
                                            buf, sizeof(buf)),
                     -1);
    assert_int_equal(tls_chain_gap_describe(TLS_REJECT_UNKNOWN_CA, TLS_ROLE_CLIENT, NULL, NULL, buf,
                                            sizeof(buf)),
                     -1);
    assert_string_equal(buf, "kept");
}

static void
test_self_names(void **state)
{
    struct tls_self_info s;
    char cn[64];

    (void)state;
    self_client(&s);
    assert_true(tls_self_has_name(&s));
    snprintf(s.sans, sizeof(s.sans), "IP:10.0.0.1");
    assert_true(tls_self_has_name(&s));
    snprintf(s.sans, sizeof(s.sans), "URI:spiffe://a.example/ns/db/sa/x");
    assert_true(tls_self_has_name(&s));
    snprintf(s.sans, sizeof(s.sans), "email:a@b");
    assert_false(tls_self_has_name(&s));
    assert_string_equal(tls_self_cn(&s, cn, sizeof(cn)), "node1.test");
    snprintf(s.subject, sizeof(s.subject), "O=Site A,CN=db.site-a.test,OU=x");
    assert_string_equal(tls_self_cn(&s, cn, sizeof(cn)), "db.site-a.test");
    snprintf(s.subject, sizeof(s.subject), "O=Site A");
    assert_string_equal(tls_self_cn(&s, cn, sizeof(cn)), "");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_from_error),
        cmocka_unit_test(test_contract_example),
        cmocka_unit_test(test_alert_table),
        cmocka_unit_test(test_alert_server_role),
        cmocka_unit_test(test_alert_edges),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_plaintext),
        cmocka_unit_test(test_error_table),
        cmocka_unit_test(test_chain_gap),
        cmocka_unit_test(test_self_names),
    };

    /* OpenSSL's reason strings ("wrong version number") are loaded with libssl. */
    (void)OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS, NULL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
