/*
 * test_regress: one test per problem the fuzzers (fuzz/) found, so that it stays fixed.
 *
 * Each test names its target and what broke.  Certificates are built here with the OpenSSL
 * API (names no CA tool would write: a CN with CR LF, a SAN holding ",DNS:", an IP SAN of
 * five bytes), signed with a throwaway key; nothing checks their signature.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "proxy_access.h"
#include "tls.h"

/* One SAN for cert_new(): a GEN_* type and its raw bytes. */
struct san {
    int type;
    const char *v;
    size_t len; /* 0 = strlen(v) */
};

static EVP_PKEY *key;

/* One signing key for every certificate of this file. */
static int
setup(void **state)
{
    (void)state;
    key = EVP_EC_gen("P-256");
    return key != NULL ? 0 : -1;
}

/* Free the key. */
static int
teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(key);
    return 0;
}

/* A leaf (EKU serverAuth + clientAuth) with the CNs ${cns} (NULL-terminated) and SANs. */
static X509 *
cert_new(const char *const *cns, const struct san *sans, size_t n_sans)
{
    X509 *x = X509_new();
    X509_NAME *subj = X509_NAME_new();
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();

    assert_non_null(x);
    assert_non_null(subj);
    assert_non_null(gens);
    assert_non_null(eku);
    assert_int_equal(X509_set_version(x, 2), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 7), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -3600));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
    assert_int_equal(X509_set_pubkey(x, key), 1);
    for (; cns != NULL && *cns != NULL; cns++) {
        assert_int_equal(X509_NAME_add_entry_by_NID(subj, NID_commonName, V_ASN1_UTF8STRING,
                                                    (const unsigned char *)*cns, -1, -1, 0),
                         1);
    }
    assert_int_equal(X509_set_subject_name(x, subj), 1);
    assert_int_equal(X509_set_issuer_name(x, subj), 1);
    for (size_t i = 0; i < n_sans; i++) {
        GENERAL_NAME *g = GENERAL_NAME_new();
        ASN1_STRING *v = sans[i].type == GEN_IPADD ? ASN1_OCTET_STRING_new() : ASN1_IA5STRING_new();
        size_t len = sans[i].len != 0 ? sans[i].len : strlen(sans[i].v);

        assert_non_null(g);
        assert_non_null(v);
        assert_int_equal(ASN1_STRING_set(v, sans[i].v, (int)len), 1);
        GENERAL_NAME_set0_value(g, sans[i].type, v);
        assert_true(sk_GENERAL_NAME_push(gens, g) > 0);
    }
    if (n_sans > 0) {
        assert_int_equal(X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, 0), 1);
    }
    assert_true(sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_server_auth)) > 0);
    assert_true(sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_client_auth)) > 0);
    assert_int_equal(X509_add1_ext_i2d(x, NID_ext_key_usage, eku, 0, 0), 1);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    sk_ASN1_OBJECT_free(eku);
    GENERAL_NAMES_free(gens);
    X509_NAME_free(subj);
    return x;
}

/* The peer names proxy/ derives from ${x} (proxy_exchange_start() with cn_fallback). */
static void
names_of(X509 *x, struct tls_peer_info *info, struct proxy_peer_names *names)
{
    memset(info, 0, sizeof(*info));
    tls_peer_info_fill(x, true, info);
    proxy_access_names_parse(info->sans, info->name[0] != '\0' ? info->name : NULL, names);
}

/* Is ${s} one of ${names}? */
static bool
has_name(const struct proxy_peer_names *names, const char *s)
{
    for (size_t i = 0; i < names->n; i++) {
        if (strcmp(names->v[i], s) == 0) {
            return true;
        }
    }
    return false;
}

/*
 * fuzz_ident, "a peer name that is not printable": a raw CN with CR LF became a peer name,
 * then X-Auth-CouchDB-UserName, splitting the head sent to CouchDB (a forged
 * X-Auth-CouchDB-Roles).  Fixed in proxy_access_names_parse() (bytes outside printable ASCII
 * become '?') and proxy_exchange.c (the CN tls/ verified, not the raw first CN).
 */
static void
test_cn_crlf_is_not_a_header(void **state)
{
    struct proxy_peer_names names;
    struct tls_peer_info info;
    X509 *x = cert_new((const char *[]){"admin\r\nX-Auth-CouchDB-Roles: _admin", NULL}, NULL, 0);

    (void)state;
    /* Since a name must also be a host name (tls_name_is_host()), such a CN or SAN is no
     * name at all: printable or not, it can never reach a header. */
    proxy_access_names_parse("", "admin\r\nX-Auth-CouchDB-Roles: _admin", &names);
    assert_int_equal(names.n, 0);
    proxy_access_names_parse("DNS:a\x01"
                             "b",
                             NULL, &names);
    assert_int_equal(names.n, 0);

    names_of(x, &info, &names);
    for (size_t i = 0; i < names.n; i++) {
        assert_null(strpbrk(names.v[i], "\r\n"));
    }
    assert_int_equal(names.n, 0);
    X509_free(x);
}

/*
 * fuzz_ident, "a peer name that is none of the certificate's SANs": a SAN holding
 * ",DNS:admin.example.org" (a URI may hold a ',') was listed as is in tls_peer_info.sans,
 * which proxy_access_names_parse() split into two names, so access rules for
 * admin.example.org applied.  Fixed in tls_peer_info_fill(): ',' in a SAN is shown as '?'.
 */
static void
test_comma_in_san_is_one_name(void **state)
{
    static const struct san sans[] = {
        {GEN_DNS, "x,DNS:admin.example.org", 0},
        {GEN_URI, "spiffe://example.org/a,DNS:root.example.org", 0},
        {GEN_DNS, "node3.example.org", 0},
    };
    struct proxy_peer_names names;
    struct tls_peer_info info;
    X509 *x = cert_new(NULL, sans, 3);

    (void)state;
    names_of(x, &info, &names);
    assert_false(has_name(&names, "admin.example.org"));
    assert_false(has_name(&names, "root.example.org"));
    /* The URI SAN is a name too (it matches only spiffe:// entries), whole, with its '?'; the
     * DNS SAN "x?DNS:admin.example.org" is no host name, so no name. */
    assert_int_equal(names.n, 2);
    assert_string_equal(names.v[0], "spiffe://example.org/a?DNS:root.example.org");
    assert_string_equal(names.v[1], "node3.example.org");
    X509_free(x);
}

/*
 * fuzz_ident, "a peer name that is none of the certificate's SANs": tls_peer_info.sans is
 * 512 bytes and was cut anywhere, so "DNS:admin.example.org.evil.net" at its end could be
 * read as admin.example.org.  Fixed in tls_peer_info_fill(): an entry goes in whole or not
 * at all.  Every cut point is tried.
 */
static void
test_cut_san_is_no_name(void **state)
{
    char pad1[256], pad2[256];
    struct proxy_peer_names names;
    struct tls_peer_info info;

    (void)state;
    for (size_t cut = 0; cut < 40; cut++) {
        struct san sans[] = {
            {GEN_DNS, pad1, 0},
            {GEN_DNS, pad2, 0},
            {GEN_DNS, "admin.example.org.evil.net", 0},
        };
        X509 *x;

        /* "DNS:" pad1 ",DNS:" pad2 ",DNS:admin..." reaches the end of the 511 bytes. */
        memset(pad1, 'a', 230);
        memcpy(pad1 + 230, ".example.org", 13);
        memset(pad2, 'b', 200 + cut);
        memcpy(pad2 + 200 + cut, ".example.org", 13);
        x = cert_new(NULL, sans, 3);
        names_of(x, &info, &names);
        assert_true(strlen(info.sans) < sizeof(info.sans));
        for (size_t i = 0; i < names.n; i++) {
            assert_true(strcmp(names.v[i], pad1) == 0 || strcmp(names.v[i], pad2) == 0 ||
                        strcmp(names.v[i], "admin.example.org.evil.net") == 0);
        }
        X509_free(x);
    }
}

/*
 * fuzz_ident, "a peer name that is none of the certificate's SANs": with cn_fallback, a
 * leaf whose only SAN cannot be shown (an IP SAN of 5 bytes, a DNS SAN of 300) got its CN
 * as peer name, though tls_check_leaf() never counts the CN of a leaf with a DNS or IP SAN.
 * Fixed in tls_peer_info_fill() (no CN name then) and proxy_exchange.c (uses that name).
 */
static void
test_cn_ignored_with_unshown_san(void **state)
{
    static const struct san ip5[] = {{GEN_IPADD, "\x0a\x00\x00\x01\x02", 5}};
    char long_dns[301];
    struct san dns300[] = {{GEN_DNS, long_dns, 0}};
    const char *allow[] = {"admin.example.org"};
    struct proxy_peer_names names;
    struct tls_peer_info info;
    X509 *x;

    (void)state;
    memset(long_dns, 'a', 300);
    long_dns[300] = '\0';
    x = cert_new((const char *[]){"admin.example.org", NULL}, ip5, 1);
    assert_int_equal(tls_check_leaf(x, false, NULL, allow, 1, true, &info),
                     TLS_REJECT_NAME_NOT_ALLOWED);
    names_of(x, &info, &names);
    assert_string_equal(info.name, "");
    assert_int_equal(names.n, 0);
    X509_free(x);

    x = cert_new((const char *[]){"admin.example.org", NULL}, dns300, 1);
    names_of(x, &info, &names);
    assert_int_equal(names.n, 0);
    X509_free(x);

    /* Without any SAN the CN still counts: the last one, as tls_check_leaf() checks it. */
    x = cert_new((const char *[]){"admin.example.org", "node2.example.org", NULL}, NULL, 0);
    assert_int_equal(
        tls_check_leaf(x, false, NULL, (const char *[]){"node2.example.org"}, 1, true, &info),
        TLS_REJECT_NONE);
    names_of(x, &info, &names);
    assert_int_equal(names.n, 1);
    assert_string_equal(names.v[0], "node2.example.org");
    X509_free(x);
}

/*
 * fuzz_ident, "a peer name that is not the last CN": a leaf with no CN and one URI SAN that is
 * no URI ("edonc"), with cn_fallback, had that SAN as tls_peer_info.name, which
 * proxy_exchange.c hands over as the CN: a URI SAN became a host name for the access rules.
 * Fixed in tls_peer_info_fill(): only a URI SAN written as a URI may stand in as the name.
 */
static void
test_uri_san_is_no_cn(void **state)
{
    static const struct san odd[] = {{GEN_URI, "edonc", 0}};
    static const struct san spiffe[] = {{GEN_URI, "spiffe://td/ns/db/x", 0}};
    struct proxy_peer_names names;
    struct tls_peer_info info;
    X509 *x = cert_new(NULL, odd, 1);

    (void)state;
    names_of(x, &info, &names);
    assert_string_equal(info.name, "");
    assert_int_equal(names.n, 0);
    X509_free(x);

    /* a SPIFFE ID stands in as the name shown, and is a URI name, never the CN */
    x = cert_new(NULL, spiffe, 1);
    names_of(x, &info, &names);
    assert_string_equal(info.name, "spiffe://td/ns/db/x");
    assert_int_equal(names.n, 1);
    assert_string_equal(names.v[0], "spiffe://td/ns/db/x");
    X509_free(x);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cn_crlf_is_not_a_header),
        cmocka_unit_test(test_comma_in_san_is_one_name),
        cmocka_unit_test(test_cut_san_is_no_name),
        cmocka_unit_test(test_cn_ignored_with_unshown_san),
        cmocka_unit_test(test_uri_san_is_no_cn),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
