/*
 * fuzz_ident: libFuzzer target for the identity headers of CONTRACT §6, built from the pure
 * pieces proxy/proxy_exchange.c calls for each inbound connection:
 * tls_peer_info_fill() -> proxy_access_names_parse() (peer names for access rules and the
 * CouchDB user), proxy_access_xfcc_value(), proxy_access_rfc9440_value(),
 * proxy_access_couchdb_token(), then proxy_http_write_head() adding them to a request head.
 *
 * Input: a DER certificate (first byte 0x30), or the lines of fuzz_input.h describing one
 * (F 'f' = cn_fallback, S = secret, L = a buffer length for the header values).  As
 * proxy_exchange.c does, the CN given to proxy_access_names_parse() is the name
 * tls_peer_info_fill() found.  Checked besides crashes, leaks and UB:
 *   - every peer name is one of the certificate's DNS or IP SANs as tls_check_leaf()
 *     compares them (printable text), or one of its URI SANs (a URI name, which only
 *     spiffe:// entries match), or with no DNS/IP SAN and cn_fallback its last CN (never one
 *     written as a URI): nothing else can reach an access rule, and every name is printable
 *     (it may become X-Auth-CouchDB-UserName);
 *   - the identity proxy_access_identity_choose() picks without rules is a DNS name (or the CN),
 *     never an IP or a URI; a name proxy_access_identity_canonical() accepts holds no byte a header
 *     value or a log field could be split at (control, space, '"', ',', ';', '\');
 *   - XFCC is printable, its elements are Hash, Subject, then one URI / DNS per SAN of
 *     that type, in order, with the SAN's text as value once unquoted (no injected key);
 *   - the RFC 9440 value is ":" base64(DER) ":" and decodes back to the DER, for any
 *     buffer length at or above what it needs, and fails cleanly below;
 *   - the rewritten head parses again with every added header present once, unchanged.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <event2/buffer.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "fuzz_input.h"
#include "proxy_access.h"
#include "proxy_http.h"
#include "tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_MAX_SANS 64

/* The certificate's names as ferry compares them. */
struct fz_names {
    char *v[FZ_MAX_SANS];
    size_t n;
};

/* Printable copy of s[0..n) as tls/ makes it ('?' for other bytes); NULL when >= 256. */
static char *
fz_text(const unsigned char *s, int n)
{
    char *t;

    if (n < 0 || n >= 256 || (t = malloc((size_t)n + 1)) == NULL) {
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        t[i] = (s[i] < 0x20 || s[i] > 0x7e) ? '?' : (char)s[i];
    }
    t[n] = '\0';
    return t;
}

/* Free the names of ${fn}. */
static void
fz_names_free(struct fz_names *fn)
{
    for (size_t i = 0; i < fn->n; i++) {
        free(fn->v[i]);
    }
    fn->n = 0;
}

/* Collect the SANs of ${type} (GEN_DNS and GEN_IPADD: both with ${type} < 0) as text. */
static void
fz_sans(X509 *x, int type, struct fz_names *fn)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);

    fn->n = 0;
    for (int i = 0; i < sk_GENERAL_NAME_num(gens) && fn->n < FZ_MAX_SANS; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        char ip[64], *t = NULL;

        if (type >= 0 && g->type != type) {
            continue;
        }
        if (g->type == GEN_DNS) {
            t = fz_text(ASN1_STRING_get0_data(g->d.dNSName), ASN1_STRING_length(g->d.dNSName));
            if (t == NULL && type == GEN_DNS) {
                /* XFCC sends long names whole: keep a marker that matches nothing. */
                t = strdup("\x01");
            }
        } else if (g->type == GEN_URI && type == GEN_URI) {
            t = fz_text(ASN1_STRING_get0_data(g->d.uniformResourceIdentifier),
                        ASN1_STRING_length(g->d.uniformResourceIdentifier));
            if (t == NULL) {
                /* XFCC sends long URIs whole: keep a marker that matches nothing. */
                t = strdup("\x01");
            }
        } else if (g->type == GEN_IPADD && (ASN1_STRING_length(g->d.iPAddress) == 4 ||
                                            ASN1_STRING_length(g->d.iPAddress) == 16)) {
            if (inet_ntop(ASN1_STRING_length(g->d.iPAddress) == 4 ? AF_INET : AF_INET6,
                          ASN1_STRING_get0_data(g->d.iPAddress), ip, sizeof(ip)) != NULL) {
                t = strdup(ip);
            }
        }
        if (t != NULL) {
            fn->v[fn->n++] = t;
        }
    }
    GENERAL_NAMES_free(gens);
    ERR_clear_error();
}

/* Has ${x} a DNS or IP SAN, of any length (then tls/ never looks at the CN)? */
static bool
fz_has_dns_ip(X509 *x)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    bool has = false;

    for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        int t = sk_GENERAL_NAME_value(gens, i)->type;

        has = has || t == GEN_DNS || t == GEN_IPADD;
    }
    GENERAL_NAMES_free(gens);
    ERR_clear_error();
    return has;
}

/* Is ${s} one of ${fn}? */
static bool
fz_names_has(const struct fz_names *fn, const char *s)
{
    for (size_t i = 0; i < fn->n; i++) {
        if (strcmp(fn->v[i], s) == 0) {
            return true;
        }
    }
    return false;
}

/* The last CN of ${x} as tls/ compares it (printable, < 256 bytes), or NULL. */
static char *
fz_last_cn(X509 *x)
{
    const X509_NAME *subj = X509_get_subject_name(x);
    unsigned char *utf8 = NULL;
    char *t = NULL;
    int i, last = -1, n;

    while ((i = X509_NAME_get_index_by_NID(subj, NID_commonName, last)) >= 0) {
        last = i;
    }
    if (last >= 0) {
        n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, last)));
        t = n > 0 ? fz_text(utf8, n) : NULL;
        OPENSSL_free(utf8);
    }
    ERR_clear_error();
    return t;
}

/*
 * Peer names: proxy_exchange_identity()'s sequence (its cn_fallback_name() hands over the name
 * tls_peer_info_fill() found, when there is one).  Returns the CouchDB user as
 * proxy_access_identity_choose() picks it without access rules or allow (the first DNS name), or
 * NULL.
 */
static const char *
fz_peer_names(X509 *x, bool cn_fallback, struct proxy_peer_names *names)
{
    struct tls_peer_info info;
    struct fz_names sans, uris;
    bool has_dns_ip = fz_has_dns_ip(x);
    char *cn = NULL;
    const char *user = NULL;

    memset(&info, 0, sizeof(info));
    tls_peer_info_fill(x, cn_fallback, &info);
    proxy_access_names_parse(info.sans, cn_fallback && info.name[0] != '\0' ? info.name : NULL,
                             names);
    fz_check(names->n <= PROXY_ACCESS_MAX_NAMES, "too many peer names");
    fz_sans(x, -1, &sans);
    fz_sans(x, GEN_URI, &uris);
    for (size_t i = 0; i < sans.n + uris.n; i++) {
        /* One SAN must not read as two in the "DNS:a,IP:b" list: tls/ shows ',' as '?'. */
        for (char *c = i < sans.n ? sans.v[i] : uris.v[i - sans.n]; *c != '\0'; c++) {
            *c = *c == ',' ? '?' : *c;
        }
    }
    if (!has_dns_ip) {
        cn = fz_last_cn(x);
    }
    for (size_t i = 0; i < names->n; i++) {
        const char *s = names->v[i];

        fz_check(s >= names->storage && s < names->storage + sizeof(names->storage),
                 "peer name outside its storage");
        fz_check(s[0] != '\0', "an empty peer name");
        fz_check(fz_printable(s, strlen(s)), "a peer name that is not printable");
        if (tls_name_is_uri(s)) {
            /* Only a URI SAN may be a URI name (it can match only a spiffe:// entry). */
            fz_check(fz_names_has(&uris, s), "a URI peer name that is no URI SAN");
        } else if (has_dns_ip) {
            if (!fz_names_has(&sans, s)) {
                fprintf(stderr, "peer name \"%s\" from SANs \"%s\"\n", s, info.sans);
            }
            fz_check(fz_names_has(&sans, s), "a peer name that is none of the certificate's SANs");
        } else {
            fz_check(cn_fallback && cn != NULL && strcmp(s, cn) == 0 && !tls_name_is_uri(cn),
                     "a peer name that is not the last CN (or without cn_fallback)");
        }
        {
            char canon[1024];

            snprintf(canon, sizeof(canon), "%s", s);
            fz_check(!proxy_access_identity_canonical(canon) || strpbrk(canon, " \"\\,;") == NULL,
                     "an identity a header or log field could be split at");
            fz_check(fz_printable(canon, strlen(canon)), "an identity that is not printable");
        }
    }
    user = proxy_access_identity_choose(NULL, 0, NULL, names);
    fz_check(user == NULL || (!tls_name_is_ip(user, NULL, NULL) && !tls_name_is_uri(user)),
             "an identity without rules that is an IP or a URI");
    free(cn);
    fz_names_free(&sans);
    fz_names_free(&uris);
    return user;
}

/* Read one XFCC value at ${p} (quoted or not) into ${out}; returns the end, or NULL. */
static const char *
fz_xfcc_value(const char *p, char *out, size_t outlen)
{
    size_t k = 0;

    if (*p == '"') {
        for (p++; *p != '"'; p++) {
            if (*p == '\0') {
                return NULL;
            }
            if (*p == '\\') {
                p++;
                fz_check(*p == '"' || *p == '\\', "XFCC: a stray backslash in quotes");
            }
            if (k + 1 < outlen) {
                out[k++] = *p;
            }
        }
        p++;
    } else {
        for (; *p != '\0' && *p != ';'; p++) {
            fz_check(strchr(",=\"\\", *p) == NULL, "XFCC: a special character unquoted");
            if (k + 1 < outlen) {
                out[k++] = *p;
            }
        }
    }
    out[k] = '\0';
    return p;
}

/* Parse ${v} as Envoy's XFCC and compare it with the certificate's SANs. */
static void
fz_xfcc_check(X509 *x, const char *v)
{
    static char val[20000];
    struct fz_names uris, dns;
    size_t n_uri = 0, n_dns = 0;
    const char *p = v;
    int step = 0;

    fz_check(fz_printable(v, strlen(v)), "XFCC not printable");
    fz_sans(x, GEN_URI, &uris);
    fz_sans(x, GEN_DNS, &dns);
    while (*p != '\0') {
        const char *eq = strchr(p, '=');
        size_t klen;

        fz_check(eq != NULL, "XFCC: an element without '='");
        klen = (size_t)(eq - p);
        p = fz_xfcc_value(eq + 1, val, sizeof(val));
        fz_check(p != NULL, "XFCC: an unterminated quoted value");
        if (klen == 4 && memcmp(eq - 4, "Hash", 4) == 0) {
            fz_check(step == 0 && strlen(val) == 64, "XFCC: Hash not first or not 64 digits");
            step = 1;
        } else if (klen == 7 && memcmp(eq - 7, "Subject", 7) == 0) {
            fz_check(step == 1, "XFCC: Subject not second");
            step = 2;
        } else if (klen == 3 && memcmp(eq - 3, "URI", 3) == 0) {
            fz_check(step == 2 && n_uri < uris.n, "XFCC: an extra URI");
            fz_check(uris.v[n_uri][0] == '\x01' || strcmp(val, uris.v[n_uri]) == 0,
                     "XFCC: a URI that differs from the SAN");
            n_uri++;
        } else if (klen == 3 && memcmp(eq - 3, "DNS", 3) == 0) {
            fz_check(step == 2 && n_uri == uris.n && n_dns < dns.n, "XFCC: an extra DNS");
            fz_check(dns.v[n_dns][0] == '\x01' || strcmp(val, dns.v[n_dns]) == 0,
                     "XFCC: a DNS name that differs from the SAN");
            n_dns++;
        } else {
            fz_check(false, "XFCC: an unknown key");
        }
        fz_check(*p == '\0' || *p == ';', "XFCC: garbage after a value");
        if (*p == ';') {
            p++;
        }
    }
    fz_check(step == 2, "XFCC without Hash and Subject");
    fz_names_free(&uris);
    fz_names_free(&dns);
}

/* Decode ":base64:" and compare it with the DER of ${x}. */
static void
fz_rfc9440_check(X509 *x, const char *v)
{
    unsigned char *der = NULL, *dec;
    size_t vl = strlen(v);
    int n = i2d_X509(x, &der), m;

    fz_check(n > 0 && vl >= 2 && v[0] == ':' && v[vl - 1] == ':', "RFC 9440: not :...:");
    dec = malloc(vl);
    fz_check(dec != NULL, "out of memory");
    m = EVP_DecodeBlock(dec, (const unsigned char *)v + 1, (int)(vl - 2));
    /* EVP_DecodeBlock counts the padding as zero bytes. */
    m -= (vl >= 4 && v[vl - 2] == '=') + (vl >= 4 && v[vl - 3] == '=');
    fz_check(m == n && memcmp(dec, der, (size_t)n) == 0, "RFC 9440: does not decode to the DER");
    free(dec);
    OPENSSL_free(der);
}

/* What a re-parsed head held: the headers ferry added. */
struct fz_seen {
    const struct proxy_http_add *add;
    size_t n_add;
    size_t heads;
    bool ok;
};

/* on_head of the re-parse: is every added header there once, unchanged? */
static enum proxy_http_verdict
fz_on_seen(void *arg, const struct proxy_http_head *h, struct evbuffer *out, bool *skip_body)
{
    struct fz_seen *s = arg;

    (void)out;
    (void)skip_body;
    s->heads++;
    for (size_t i = 0; i < s->n_add; i++) {
        size_t count = 0;

        if (s->add[i].value == NULL) {
            continue;
        }
        const char *v = s->add[i].value;
        size_t vl = strlen(v);

        /*
         * A field value has no surrounding whitespace (RFC 9110 5.5): a peer name " x" arrives
         * as "x" (and its token, made for " x", does not match: CouchDB refuses it).
         */
        while (vl > 0 && (*v == ' ' || *v == '\t')) {
            v++;
            vl--;
        }
        while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) {
            vl--;
        }
        for (size_t j = 0; j < h->n_headers; j++) {
            if (proxy_http_header_is(&h->headers[j], s->add[i].name)) {
                size_t hl = h->headers[j].value_len;

                /* http-parser leaves trailing whitespace in the value. */
                while (hl > 0 && (h->headers[j].value[hl - 1] == ' ' ||
                                  h->headers[j].value[hl - 1] == '\t')) {
                    hl--;
                }
                count++;
                if (hl != vl || memcmp(h->headers[j].value, v, vl) != 0) {
                    fprintf(stderr, "%s: \"%.*s\", added \"%s\"\n", s->add[i].name,
                            (int)h->headers[j].value_len, h->headers[j].value, s->add[i].value);
                    s->ok = false;
                }
            }
        }
        if (count != 1) {
            fprintf(stderr, "%s: %zu times\n", s->add[i].name, count);
        }
        if (count != 1) {
            s->ok = false;
        }
    }
    return PROXY_HTTP_FORWARD;
}

/* on_done: nothing to record. */
static void
fz_on_done(void *arg, enum proxy_http_kind kind, uint64_t body)
{
    (void)arg;
    (void)kind;
    (void)body;
}

/* The head proxy_exchange.c on_request() writes, parsed again. */
struct fz_write {
    const struct proxy_http_add *add;
    size_t n_add;
};

/* on_head of the first pass: write the head as on_request() does for an inbound listener. */
static enum proxy_http_verdict
fz_on_write(void *arg, const struct proxy_http_head *h, struct evbuffer *out, bool *skip_body)
{
    static const char *const drop[] = {"x-forwarded-*", "forwarded", "x-auth-couchdb-*",
                                       "client-cert", "client-cert-chain"};
    struct fz_write *w = arg;
    const struct proxy_http_rewrite rw = {
        .drop = drop,
        .n_drop = sizeof(drop) / sizeof(drop[0]),
        .add = w->add,
        .n_add = w->n_add,
        .conn = PROXY_HTTP_CONN_KEEP,
    };

    (void)skip_body;
    fz_check(proxy_http_write_head(h, &rw, out) == 0, "proxy_http_write_head failed");
    return PROXY_HTTP_FORWARD;
}

/* Run ${text} through a request framer with ${cb}; returns the result. */
static enum proxy_http_result
fz_frame(const char *text, size_t len, proxy_http_head_cb cb, void *arg, struct evbuffer *out)
{
    struct proxy_http *h = proxy_http_new(PROXY_HTTP_REQUEST, cb, fz_on_done, arg);
    struct evbuffer *in = evbuffer_new();
    enum proxy_http_result r;

    fz_check(h != NULL && in != NULL, "out of memory");
    evbuffer_add(in, text, len);
    r = proxy_http_pump(h, in, out);
    evbuffer_free(in);
    proxy_http_free(h);
    return r;
}

/* Add the identity headers to a request head, then parse the result again. */
static void
fz_headers(const char *xfcc, const char *cc, const char *user, const char *token)
{
    static const char req[] = "GET /db/doc HTTP/1.1\r\nHost: backend\r\n"
                              "X-Auth-CouchDB-Roles: _admin\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n";
    struct proxy_http_add add[] = {
        {"X-Forwarded-For", "192.0.2.7"},  {"X-Forwarded-Proto", "https"},
        {"X-Forwarded-Client-Cert", xfcc}, {"Client-Cert", cc},
        {"X-Auth-CouchDB-UserName", user}, {"X-Auth-CouchDB-Roles", "reader"},
        {"X-Auth-CouchDB-Token", token},
    };
    struct fz_write w = {add, sizeof(add) / sizeof(add[0])};
    struct fz_seen s = {add, sizeof(add) / sizeof(add[0]), 0, true};
    struct evbuffer *out = evbuffer_new(), *again = evbuffer_new();

    fz_check(out != NULL && again != NULL, "out of memory");
    fz_check(fz_frame(req, sizeof(req) - 1, fz_on_write, &w, out) == PROXY_HTTP_OK,
             "the request head is refused");
    fz_check(fz_frame((const char *)evbuffer_pullup(out, -1), evbuffer_get_length(out), fz_on_seen,
                      &s, again) == PROXY_HTTP_OK,
             "the head with identity headers does not parse");
    fz_check(s.heads == 1 && s.ok, "identity headers changed, missing or injected");
    evbuffer_free(out);
    evbuffer_free(again);
}

/* Every identity value of ${x}. */
static void
fz_identity(X509 *x, bool cn_fallback, const char *secret, size_t small)
{
    static char xfcc[16384], cc[16384];
    struct proxy_peer_names names;
    const char *user;
    char token[129], *buf;
    int xr, cr;

    user = fz_peer_names(x, cn_fallback, &names);

    xr = proxy_access_xfcc_value(x, xfcc, sizeof(xfcc));
    if (xr == 0) {
        fz_xfcc_check(x, xfcc);
    }
    cr = proxy_access_rfc9440_value(x, cc, sizeof(cc));
    if (cr == 0) {
        fz_rfc9440_check(x, cc);
    }
    /* A buffer of exactly ${small} bytes: fits or fails, never overflows (ASan). */
    if (small > 0 && (buf = malloc(small)) != NULL) {
        if (proxy_access_xfcc_value(x, buf, small) == 0) {
            fz_check(xr == 0 && strcmp(buf, xfcc) == 0, "XFCC differs with a smaller buffer");
        }
        if (proxy_access_rfc9440_value(x, buf, small) == 0) {
            fz_check(cr == 0 && strcmp(buf, cc) == 0, "RFC 9440 differs with a smaller buffer");
        } else if (cr == 0) {
            fz_check(strlen(cc) + 1 > small, "RFC 9440 fails in a buffer large enough");
        }
        free(buf);
    }
    token[0] = '\0';
    if (user != NULL) {
        fz_check(proxy_access_couchdb_token(CONFIG_HASH_SHA256, (const unsigned char *)secret,
                                            strlen(secret), user, token, sizeof(token)) == 0 &&
                     strlen(token) == 64,
                 "proxy_access_couchdb_token");
    }
    fz_headers(xr == 0 ? xfcc : NULL, cr == 0 ? cc : NULL, user, user != NULL ? token : NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz_input in;
    X509 *x = NULL;
    const char *secret = "the_secret";
    bool cn_fallback = true;
    size_t small = 0;

    if (size == 0) {
        return 0;
    }
    if (fz_input_parse(data, size, &in) != 0) {
        return 0;
    }
    if (data[0] == 0x30) {
        const unsigned char *p = data;

        x = d2i_X509(NULL, &p, (long)size);
        small = size % 4096;
    } else {
        for (size_t i = 0; i < in.n; i++) {
            if (in.v[i].tag == 'S') {
                secret = in.v[i].s;
            } else if (in.v[i].tag == 'L') {
                small = strtoul(in.v[i].s, NULL, 10) % 20000;
            }
        }
        cn_fallback = fz_input_has(&in, 'F', 'f');
        x = fz_cert_build(&in);
    }
    ERR_clear_error();
    if (x != NULL) {
        fz_identity(x, cn_fallback, secret, small);
    }
    X509_free(x);
    fz_input_free(&in);
    ERR_clear_error();
    return 0;
}
