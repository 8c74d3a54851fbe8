/*
 * certs_issue.c: `ferry certs issue` (a leaf signed by the CA in a directory) and the
 * embedded development default, which issues through the same code.
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/safestack.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "certs.h"
#include "certs_internal.h"
#include "config.h"

/* Longest DNS name (RFC 1035 §2.3.4, without the trailing dot) and label. */
#define DNS_NAME_MAX  253
#define DNS_LABEL_MAX 63

/* Longest output base name: NAME.crt must fit one path component (NAME_MAX 255). */
#define BASE_NAME_MAX 250

/* Subject of the CA that certs_issue_ensure_dev() makes. */
#define DEV_CA_NAME "ferry development CA (do not use in production)"

/* Whether ${c} is an ASCII letter or digit (not locale-dependent, unlike isalnum()). */
static bool
is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/*
 * Why ${s} is not a DNS name ferry will put in a certificate, or NULL if it is one:
 * RFC 1123 labels (letters, digits, '-' inside), optionally "*." as the whole first label.
 */
static const char *
dns_problem(const char *s)
{
    const char *p = s;
    size_t label = 0;

    if (*s == '\0') {
        return "empty name";
    }
    if (strlen(s) > DNS_NAME_MAX) {
        return "longer than 253 characters";
    }
    if (strncmp(s, "*.", 2) == 0) {
        p += 2;
    }
    for (;; p++) {
        if (*p == '.' || *p == '\0') {
            if (label == 0) {
                return "empty label (leading, trailing or double '.')";
            }
            if (p[-1] == '-') {
                return "a label ends with '-'";
            }
            if (*p == '\0') {
                break;
            }
            label = 0;
            continue;
        }
        if (*p == '*') {
            return "a wildcard may only be the whole first label, as in \"*.example.org\"";
        }
        if (!is_alnum(*p) && *p != '-') {
            return "only letters, digits, '-' and '.' are allowed";
        }
        if (label == 0 && *p == '-') {
            return "a label starts with '-'";
        }
        if (++label > DNS_LABEL_MAX) {
            return "a label is longer than 63 characters";
        }
    }
    return NULL;
}

/* Parse an IPv4 or IPv6 literal into ${buf}; returns its length (4 or 16), or 0. */
static size_t
ip_parse(const char *s, unsigned char buf[16])
{
    if (inet_pton(AF_INET, s, buf) == 1) {
        return 4;
    }
    if (inet_pton(AF_INET6, s, buf) == 1) {
        return 16;
    }
    return 0;
}

/* Whether ${gens} already holds a name of ${type} equal to ${data} (DNS: ignoring case). */
static bool
san_has(const GENERAL_NAMES *gens, int type, const unsigned char *data, size_t len)
{
    const GENERAL_NAME *gn;
    const ASN1_STRING *v;
    const unsigned char *d;
    int gtype, i;
    size_t k;

    for (i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        gn = sk_GENERAL_NAME_value(gens, i);
        v = GENERAL_NAME_get0_value(gn, &gtype);
        if (gtype != type || (size_t)ASN1_STRING_length(v) != len) {
            continue;
        }
        d = ASN1_STRING_get0_data(v);
        for (k = 0; k < len; k++) {
            unsigned char a = d[k], b = data[k];
            if (type == GEN_DNS) {
                a = (a >= 'A' && a <= 'Z') ? (unsigned char)(a + 32) : a;
                b = (b >= 'A' && b <= 'Z') ? (unsigned char)(b + 32) : b;
            }
            if (a != b) {
                break;
            }
        }
        if (k == len) {
            return true;
        }
    }
    return false;
}

/* Append a DNS (GEN_DNS), IP (GEN_IPADD) or URI (GEN_URI) name to ${gens}, once.  Returns 0
 * or -1. */
static int
san_add(GENERAL_NAMES *gens, int type, const unsigned char *data, size_t len)
{
    GENERAL_NAME *gn;
    ASN1_STRING *v;

    if (san_has(gens, type, data, len)) {
        return 0;
    }
    if ((gn = GENERAL_NAME_new()) == NULL) {
        goto err0;
    }
    v = (type == GEN_DNS || type == GEN_URI) ? ASN1_IA5STRING_new() : ASN1_OCTET_STRING_new();
    if (v == NULL) {
        goto err1;
    }
    if (ASN1_STRING_set(v, data, (int)len) != 1) {
        goto err2;
    }
    /* ${gn} owns ${v} from here on. */
    GENERAL_NAME_set0_value(gn, type, v);
    if (sk_GENERAL_NAME_push(gens, gn) <= 0) {
        goto err1;
    }

    /* Success! */
    return 0;

err2:
    ASN1_STRING_free(v);
err1:
    GENERAL_NAME_free(gn);
err0:
    return -1;
}

/* Add the name ${s} to ${gens}: IP if it is an IP literal, else DNS.  Returns 0 or -1. */
static int
san_add_name(GENERAL_NAMES *gens, const char *s, char *err, size_t errlen)
{
    unsigned char ip[16];
    size_t iplen;
    const char *why;
    int rc;

    if ((iplen = ip_parse(s, ip)) != 0) {
        rc = san_add(gens, GEN_IPADD, ip, iplen);
    } else if ((why = dns_problem(s)) != NULL) {
        certs_err(err, errlen, "invalid name \"%s\": neither an IP address nor a DNS name (%s)", s,
                  why);
        return -1;
    } else {
        rc = san_add(gens, GEN_DNS, (const unsigned char *)s, strlen(s));
    }
    if (rc != 0) {
        certs_err_ossl(err, errlen, "cannot add \"%s\" to the subjectAltName", s);
    }
    return rc;
}

/* The subjectAltName of ${p}: name, every dns, every ip, every uri.  Returns the list or NULL. */
static GENERAL_NAMES *
build_san(const struct certs_issue_params *p, char *err, size_t errlen)
{
    GENERAL_NAMES *gens;
    unsigned char ip[16];
    size_t i, iplen;
    const char *why;

    ERR_clear_error();
    if ((gens = sk_GENERAL_NAME_new_null()) == NULL) {
        certs_err_ossl(err, errlen, "cannot build the subjectAltName");
        goto err0;
    }
    if (san_add_name(gens, p->name, err, errlen) != 0) {
        goto err1;
    }
    for (i = 0; i < p->n_dns; i++) {
        if (ip_parse(p->dns[i], ip) != 0) {
            certs_err(err, errlen, "invalid DNS name \"%s\": it is an IP address (use --ip)",
                      p->dns[i]);
            goto err1;
        }
        if ((why = dns_problem(p->dns[i])) != NULL) {
            certs_err(err, errlen, "invalid DNS name \"%s\": %s", p->dns[i], why);
            goto err1;
        }
        if (san_add(gens, GEN_DNS, (const unsigned char *)p->dns[i], strlen(p->dns[i])) != 0) {
            certs_err_ossl(err, errlen, "cannot add \"%s\" to the subjectAltName", p->dns[i]);
            goto err1;
        }
    }
    for (i = 0; i < p->n_ips; i++) {
        if ((iplen = ip_parse(p->ips[i], ip)) == 0) {
            certs_err(err, errlen,
                      "invalid IP address \"%s\": expected IPv4 (192.0.2.1) or IPv6 (2001:db8::1)",
                      p->ips[i]);
            goto err1;
        }
        if (san_add(gens, GEN_IPADD, ip, iplen) != 0) {
            certs_err_ossl(err, errlen, "cannot add \"%s\" to the subjectAltName", p->ips[i]);
            goto err1;
        }
    }
    for (i = 0; i < p->n_uris; i++) {
        if ((why = config_check_spiffe_problem(p->uris[i], false)) != NULL) {
            certs_err(err, errlen,
                      "invalid URI \"%s\": expected a SPIFFE ID (spiffe://trust-domain/path): %s",
                      p->uris[i], why);
            goto err1;
        }
        if (san_add(gens, GEN_URI, (const unsigned char *)p->uris[i], strlen(p->uris[i])) != 0) {
            certs_err_ossl(err, errlen, "cannot add \"%s\" to the subjectAltName", p->uris[i]);
            goto err1;
        }
    }

    /* Success! */
    return gens;

err1:
    GENERAL_NAMES_free(gens);
err0:
    return NULL;
}

/* Check that ${base} can name OUT/BASE.crt and OUT/BASE.key without escaping or clashing. */
static int
check_base(const char *base, char *err, size_t errlen)
{
    if (base[0] == '\0' || base[0] == '.' || strchr(base, '/') != NULL ||
        strlen(base) > BASE_NAME_MAX) {
        certs_err(err, errlen,
                  "\"%s\" cannot be used as a file name (it must not be empty, start with '.' "
                  "or hold '/')",
                  base);
        return -1;
    }
    /* BASE "ca" would make BASE.crt the root bundle and BASE.key replace a CA key. */
    if (strcmp(base, "ca") == 0) {
        certs_err(err, errlen, "\"ca\" cannot be used as a name: ca.crt and ca.key are taken");
        return -1;
    }
    return 0;
}

/*
 * Read the CA in ${dir}: the signing certificate with its issuers (*${bundle}) and its key
 * (*${key}), and check that they can sign a leaf now.  Returns 0 or -1.
 */
static int
load_ca(const char *crt_path, const char *key_path, STACK_OF(X509) * *bundle, EVP_PKEY **key,
        char *err, size_t errlen)
{
    X509 *ca;
    uint32_t flags;
    char date[32];

    if ((*bundle = certs_file_read_certs(crt_path, err, errlen)) == NULL) {
        goto err0;
    }
    if ((*key = certs_file_read_key(key_path, err, errlen)) == NULL) {
        goto err1;
    }
    ca = sk_X509_value(*bundle, 0);

    ERR_clear_error();
    if (X509_check_private_key(ca, *key) != 1) {
        ERR_clear_error();
        certs_err(err, errlen, "%s does not match the first certificate in %s", key_path, crt_path);
        goto err2;
    }
    flags = X509_get_extension_flags(ca);
    if ((flags & EXFLAG_CA) == 0) {
        certs_err(err, errlen,
                  "the first certificate in %s is not a CA (no basicConstraints CA:TRUE)",
                  crt_path);
        goto err2;
    }
    if ((flags & EXFLAG_KUSAGE) != 0 && (X509_get_key_usage(ca) & KU_KEY_CERT_SIGN) == 0) {
        certs_err(err, errlen,
                  "the first certificate in %s may not sign certificates (keyUsage lacks "
                  "keyCertSign)",
                  crt_path);
        goto err2;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(ca)) <= 0) {
        if (certs_x509_date_str(X509_get0_notAfter(ca), date, sizeof(date)) != 0) {
            strcpy(date, "?");
        }
        certs_err(err, errlen, "the CA certificate in %s expired on %s", crt_path, date);
        goto err2;
    }

    /* Success! */
    return 0;

err2:
    EVP_PKEY_free(*key);
    *key = NULL;
err1:
    sk_X509_pop_free(*bundle, X509_free);
    *bundle = NULL;
err0:
    return -1;
}

/*
 * Split the CA bundle: *${chain} gets the certificates that follow the leaf in NAME.crt
 * (the signing CA and its non-root issuers, when the signing CA is not a root), *${roots}
 * the self-signed ones for OUT/ca.crt.  Both stacks borrow from ${bundle}.
 */
static int
split_bundle(const STACK_OF(X509) * bundle, const char *crt_path, STACK_OF(X509) * *chain,
             STACK_OF(X509) * *roots, char *err, size_t errlen)
{
    X509 *ca = sk_X509_value(bundle, 0);
    X509 *x;
    int i;

    ERR_clear_error();
    *chain = sk_X509_new_null();
    *roots = sk_X509_new_null();
    if (*chain == NULL || *roots == NULL) {
        certs_err_ossl(err, errlen, "out of memory");
        goto err1;
    }
    if (X509_self_signed(ca, 0) == 1) {
        /* A root signs: there are no intermediates and the root is the trust anchor. */
        if (sk_X509_push(*roots, ca) <= 0) {
            goto err0;
        }
    } else {
        for (i = 0; i < sk_X509_num(bundle); i++) {
            x = sk_X509_value(bundle, i);
            if (sk_X509_push((i > 0 && X509_self_signed(x, 0) == 1) ? *roots : *chain, x) <= 0) {
                goto err0;
            }
        }
        if (sk_X509_num(*roots) == 0) {
            certs_err(err, errlen,
                      "%s holds an intermediate CA but not its root; append the root CA "
                      "certificate to %s",
                      crt_path, crt_path);
            goto err1;
        }
    }

    /* Success! */
    return 0;

err0:
    certs_err_ossl(err, errlen, "out of memory");
err1:
    sk_X509_free(*chain);
    *chain = NULL;
    sk_X509_free(*roots);
    *roots = NULL;
    return -1;
}

/*
 * Build, sign and return the leaf for ${p} with the key ${key}, issued by ${ca} / ${ca_key}.
 * Returns the certificate (caller frees) or NULL.
 */
static X509 *
make_leaf(const struct certs_issue_params *p, int days, EVP_PKEY *key, X509 *ca, EVP_PKEY *ca_key,
          char *err, size_t errlen)
{
    X509 *x;
    GENERAL_NAMES *san;
    const char *ku = (p->key_type == CERTS_KEY_RSA) ? "critical,digitalSignature,keyEncipherment"
                                                    : "critical,digitalSignature";

    if ((san = build_san(p, err, errlen)) == NULL) {
        goto err0;
    }
    if ((x = certs_x509_new(p->name, key, days, err, errlen)) == NULL) {
        goto err1;
    }
    ERR_clear_error();
    if (X509_set_issuer_name(x, X509_get_subject_name(ca)) != 1) {
        certs_err_ossl(err, errlen, "cannot set the issuer name");
        goto err2;
    }
    /* A leaf never outlives its CA: verification would fail from that day on. */
    if (ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(ca)) > 0 &&
        X509_set1_notAfter(x, X509_get0_notAfter(ca)) != 1) {
        certs_err_ossl(err, errlen, "cannot set the expiry date");
        goto err2;
    }
    if (certs_x509_add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE", err, errlen) != 0 ||
        certs_x509_add_ext(x, ca, NID_key_usage, ku, err, errlen) != 0 ||
        certs_x509_add_ext(x, ca, NID_ext_key_usage, "serverAuth,clientAuth", err, errlen) != 0 ||
        certs_x509_add_ext(x, ca, NID_subject_key_identifier, "hash", err, errlen) != 0 ||
        certs_x509_add_ext(x, ca, NID_authority_key_identifier, "keyid,issuer", err, errlen) != 0) {
        goto err2;
    }
    /* Not critical: the subject is not empty (it holds the CN). */
    if (X509_add1_ext_i2d(x, NID_subject_alt_name, san, 0, X509V3_ADD_DEFAULT) != 1) {
        certs_err_ossl(err, errlen, "cannot add the subjectAltName");
        goto err2;
    }
    if (certs_x509_sign(x, ca_key, err, errlen) != 0) {
        goto err2;
    }

    /* Success! */
    GENERAL_NAMES_free(san);
    return x;

err2:
    X509_free(x);
err1:
    GENERAL_NAMES_free(san);
err0:
    return NULL;
}

/*
 * The one issuing path: certs_issue() with ${base} = name, certs_issue_ensure_dev() with
 * "node".  Writes OUT/BASE.key, OUT/BASE.crt (leaf + intermediates) and OUT/ca.crt.
 */
static int
issue_as(const struct certs_issue_params *p, const char *base, char *err, size_t errlen)
{
    char ca_crt[CERTS_PATH_MAX], ca_key_path[CERTS_PATH_MAX];
    char out_crt[CERTS_PATH_MAX], out_key[CERTS_PATH_MAX], out_ca[CERTS_PATH_MAX];
    char file[BASE_NAME_MAX + 8];
    STACK_OF(X509) * bundle, *chain, *roots;
    STACK_OF(X509) *full = NULL;
    EVP_PKEY *ca_key, *key;
    X509 *leaf;
    bool write_roots = true;
    int days, i;

    if (p == NULL || p->ca_dir == NULL || p->ca_dir[0] == '\0' || p->out_dir == NULL ||
        p->out_dir[0] == '\0' || p->name == NULL) {
        certs_err(err, errlen, "the CA directory, the name and the output directory are needed");
        goto err0;
    }
    if ((p->n_dns > 0 && p->dns == NULL) || (p->n_ips > 0 && p->ips == NULL) ||
        (p->n_uris > 0 && p->uris == NULL)) {
        certs_err(err, errlen, "bad name lists");
        goto err0;
    }
    if (certs_x509_check_days(p->days, CERTS_DEFAULT_LEAF_DAYS, &days, err, errlen) != 0 ||
        check_base(base, err, errlen) != 0) {
        goto err0;
    }
    if (p->key_type != CERTS_KEY_EC && p->key_type != CERTS_KEY_RSA) {
        certs_err(err, errlen, "unknown key type %d", (int)p->key_type);
        goto err0;
    }
    /* The name lists are checked here, before any file is touched; make_leaf() rebuilds. */
    {
        GENERAL_NAMES *san = build_san(p, err, errlen);
        if (san == NULL) {
            goto err0;
        }
        GENERAL_NAMES_free(san);
    }

    snprintf(file, sizeof(file), "%s.crt", base);
    if (certs_file_path(out_crt, sizeof(out_crt), p->out_dir, file, err, errlen) != 0) {
        goto err0;
    }
    snprintf(file, sizeof(file), "%s.key", base);
    if (certs_file_path(out_key, sizeof(out_key), p->out_dir, file, err, errlen) != 0 ||
        certs_file_path(out_ca, sizeof(out_ca), p->out_dir, "ca.crt", err, errlen) != 0 ||
        certs_file_path(ca_crt, sizeof(ca_crt), p->ca_dir, "ca.crt", err, errlen) != 0 ||
        certs_file_path(ca_key_path, sizeof(ca_key_path), p->ca_dir, "ca.key", err, errlen) != 0) {
        goto err0;
    }

    if (load_ca(ca_crt, ca_key_path, &bundle, &ca_key, err, errlen) != 0) {
        goto err0;
    }
    if (split_bundle(bundle, ca_crt, &chain, &roots, err, errlen) != 0) {
        goto err1;
    }

    /*
     * Issuing into the CA directory: OUT/ca.crt is CA_DIR/ca.crt.  For a root CA it already
     * holds the root, so leave it alone; for an intermediate, writing the root alone would
     * destroy the intermediate's bundle.
     */
    if (certs_file_same(out_ca, ca_crt)) {
        if (sk_X509_num(chain) > 0) {
            certs_err(err, errlen,
                      "%s is the intermediate CA's own bundle and would be replaced by its "
                      "root; write to another directory",
                      out_ca);
            goto err2;
        }
        write_roots = false;
    }

    if (certs_file_mkdir(p->out_dir, err, errlen) != 0) {
        goto err2;
    }
    if ((key = certs_x509_keygen(p->key_type, err, errlen)) == NULL) {
        goto err2;
    }
    if ((leaf = make_leaf(p, days, key, sk_X509_value(bundle, 0), ca_key, err, errlen)) == NULL) {
        goto err3;
    }

    /* NAME.crt: the leaf, then the intermediates a peer needs to reach the root. */
    ERR_clear_error();
    if ((full = sk_X509_new_null()) == NULL || sk_X509_push(full, leaf) <= 0) {
        certs_err_ossl(err, errlen, "out of memory");
        goto err5;
    }
    for (i = 0; i < sk_X509_num(chain); i++) {
        if (sk_X509_push(full, sk_X509_value(chain, i)) <= 0) {
            certs_err_ossl(err, errlen, "out of memory");
            goto err5;
        }
    }

    /* Key first: a certificate is never on disk without the key it belongs to. */
    if (certs_file_write_key(out_key, key, err, errlen) != 0 ||
        certs_file_write_certs(out_crt, full, err, errlen) != 0) {
        goto err5;
    }
    if (write_roots && certs_file_write_certs(out_ca, roots, err, errlen) != 0) {
        goto err5;
    }

    /* Success!  ${full}, ${chain} and ${roots} only borrowed their certificates. */
    sk_X509_free(full);
    X509_free(leaf);
    EVP_PKEY_free(key);
    sk_X509_free(chain);
    sk_X509_free(roots);
    EVP_PKEY_free(ca_key);
    sk_X509_pop_free(bundle, X509_free);
    return 0;

err5:
    sk_X509_free(full);
    X509_free(leaf);
err3:
    EVP_PKEY_free(key);
err2:
    sk_X509_free(chain);
    sk_X509_free(roots);
err1:
    EVP_PKEY_free(ca_key);
    sk_X509_pop_free(bundle, X509_free);
err0:
    return -1;
}

/*
 * certs_issue(p, err, errlen):
 * Issue a leaf signed by the CA in ${p}->ca_dir: EKU serverAuth+clientAuth, SAN = name +
 * every dns + every ip + every uri, basicConstraints CA:FALSE, keyUsage digitalSignature (+
 * keyEncipherment for RSA), authority/subject key identifiers, a random 128-bit serial.
 * When CA_DIR/ca.crt holds an intermediate followed by its issuers, NAME.crt carries the
 * intermediates and OUT/ca.crt the root.  Returns 0, or -1 with the reason in ${err}.
 * Names are checked before any file is written: DNS names as RFC 1123 labels (a "*." first
 * label allowed), IPs as IPv4/IPv6 literals, URIs as SPIFFE IDs; NAME must be a safe file name
 * other than "ca". The leaf never outlives the CA (notAfter is clamped to the CA's).  Existing
 * OUT/NAME.* files are replaced.  When OUT is CA_DIR and the CA is a root, CA_DIR/ca.crt is left as
 * it is; when it is an intermediate, this is refused (its bundle would be lost).
 */
int
certs_issue(const struct certs_issue_params *p, char *err, size_t errlen)
{
    if (p == NULL || p->name == NULL) {
        certs_err(err, errlen, "no name given");
        return -1;
    }
    return issue_as(p, p->name, err, errlen);
}

/* Whether the node certificate at ${path} is still usable (readable and not expired). */
static bool
dev_node_usable(const char *path)
{
    STACK_OF(X509) * sk;
    bool ok;

    if ((sk = certs_file_read_certs(path, NULL, 0)) == NULL) {
        return false;
    }
    ok = X509_cmp_current_time(X509_get0_notAfter(sk_X509_value(sk, 0))) > 0;
    sk_X509_pop_free(sk, X509_free);
    return ok;
}

/*
 * certs_issue_ensure_dev(dir, hostname, created, err, errlen):
 * The embedded development default: make sure DIR holds a development CA (ca.crt, ca.key)
 * and a node certificate (node.crt, node.key) for ${hostname}, "localhost", 127.0.0.1 and
 * ::1.  Existing files are reused as they are; *${created} tells whether anything was made.
 * Returns 0, or -1 with the reason in ${err}.
 * A ${hostname} that is NULL or cannot be certified (e.g. "my_host") is replaced by
 * "localhost".  A missing ca.key makes a new CA and node certificate; ca.key without ca.crt
 * is an error (never guessed at).  A missing, unreadable or expired node.crt or a missing
 * node.key is reissued from the existing CA.  ${created} may be NULL.
 */
int
certs_issue_ensure_dev(const char *dir, const char *hostname, bool *created, char *err,
                       size_t errlen)
{
    static const char *const dev_dns[] = {"localhost"};
    static const char *const dev_ips[] = {"127.0.0.1", "::1"};
    char ca_crt[CERTS_PATH_MAX], ca_key[CERTS_PATH_MAX];
    char node_crt[CERTS_PATH_MAX], node_key[CERTS_PATH_MAX];
    struct certs_ca_params ca;
    struct certs_issue_params leaf;
    unsigned char ip[16];
    bool made = false;

    if (created != NULL) {
        *created = false;
    }
    if (dir == NULL || dir[0] == '\0') {
        certs_err(err, errlen, "no directory given");
        goto err0;
    }
    /* A host name that cannot go into a certificate (say "my_host") falls back to localhost. */
    if (hostname == NULL || strlen(hostname) > CERTS_CN_MAX ||
        (ip_parse(hostname, ip) == 0 && dns_problem(hostname) != NULL)) {
        hostname = "localhost";
    }

    if (certs_file_path(ca_crt, sizeof(ca_crt), dir, "ca.crt", err, errlen) != 0 ||
        certs_file_path(ca_key, sizeof(ca_key), dir, "ca.key", err, errlen) != 0 ||
        certs_file_path(node_crt, sizeof(node_crt), dir, "node.crt", err, errlen) != 0 ||
        certs_file_path(node_key, sizeof(node_key), dir, "node.key", err, errlen) != 0) {
        goto err0;
    }

    if (!certs_file_exists(ca_key)) {
        /* No CA key: any ca.crt left is useless, so make a fresh CA (and node) over it. */
        memset(&ca, 0, sizeof(ca));
        ca.dir = dir;
        ca.name = DEV_CA_NAME;
        ca.key_type = CERTS_KEY_EC;
        if (certs_ca_init(&ca, err, errlen) != 0) {
            goto err0;
        }
        made = true;
    } else if (!certs_file_exists(ca_crt)) {
        certs_err(err, errlen,
                  "%s exists but %s is missing; restore %s, or delete %s to make a new "
                  "development CA",
                  ca_key, ca_crt, ca_crt, ca_key);
        goto err0;
    }

    /* A new CA invalidates the old node certificate; an expired one is replaced too. */
    if (made || !certs_file_exists(node_crt) || !certs_file_exists(node_key) ||
        !dev_node_usable(node_crt)) {
        memset(&leaf, 0, sizeof(leaf));
        leaf.ca_dir = dir;
        leaf.name = hostname;
        leaf.dns = dev_dns;
        leaf.n_dns = sizeof(dev_dns) / sizeof(dev_dns[0]);
        leaf.ips = dev_ips;
        leaf.n_ips = sizeof(dev_ips) / sizeof(dev_ips[0]);
        leaf.key_type = CERTS_KEY_EC;
        leaf.out_dir = dir;
        if (issue_as(&leaf, "node", err, errlen) != 0) {
            goto err0;
        }
        made = true;
    }

    /* Success! */
    if (created != NULL) {
        *created = made;
    }
    return 0;

err0:
    return -1;
}
