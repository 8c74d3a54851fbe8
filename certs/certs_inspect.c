/*
 * certs_inspect.c: diagnose one certificate, key, CA bundle and CRL the way an operator does
 * by hand with openssl (parse, compare key and certificate, verify the chain, look at EKU,
 * SAN, dates and permissions), and `ferry certs inspect`, which shows the result.
 *
 * Every problem becomes a struct certs_finding with a stable id (docs/findings.md), the file
 * at fault and a one-line fix.  Files are read whole into memory and parsed from there, so a
 * file is classified once (PEM, DER, PKCS#12, empty, something else) and nothing prompts for
 * a passphrase.  OpenSSL reads PEM with Windows line endings as it is, so no normalisation is
 * needed here or in `ferry run`.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "config_json.h"
#include "tls.h"

#include "certs.h"
#include "certs_internal.h"

/* Files larger than this are not certificates, keys or CRLs an operator wrote by hand. */
#define DIAG_FILE_MAX (16L * 1024 * 1024)

/* Longest passphrase read from a key_passphrase_file (as tls/ does). */
#define DIAG_PASS_MAX 1024

/* A chain longer than this is a loop or a mistake. */
#define DIAG_WALK_MAX 16

/* Weak below these (CONTRACT §8: RSA < 2048; the EC equivalent is a curve under 224 bits). */
#define DIAG_RSA_MIN 2048
#define DIAG_EC_MIN  224

/* Room for one message or fix line. */
#define DIAG_MSG_MAX 1024

/* Room for a subject in RFC 2253 form. */
#define DIAG_NAME_MAX 256

/* Where a certificate of the analysis came from. */
enum diag_src {
    SRC_CERT, /* the cert file */
    SRC_CA,   /* the CA bundle */
};

/* Everything one diagnosis holds; released by diag_free(). */
struct diag {
    const struct certs_diag_params *p;
    struct certs_findings *fs;
    struct certs_diag_report *report;
    bool oom;
    STACK_OF(X509) * chain;  /* the cert file, file order */
    STACK_OF(X509) * bundle; /* the CA bundle */
    STACK_OF(X509_CRL) * crls;
    EVP_PKEY *key;
    X509 *leaf;          /* the leaf: chain[0], or the non-CA certificate found later */
    bool chain_finding;  /* a chain-* / ca-* / issuer finding was made */
    bool bundle_non_ca;  /* ca-not-a-ca: the bundle holds a leaf, which explains a broken walk */
    char cert_base[256]; /* basenames for messages */
    char ca_base[256];
};

/* The last component of ${path}. */
static const char *
base_name(const char *path)
{
    const char *s = strrchr(path, '/');

    return s != NULL && s[1] != '\0' ? s + 1 : path;
}

/* Add a finding: ${fix} is already formatted, the message is printf-style. */
static void add(struct diag *d, const char *id, enum certs_severity sev, const char *file,
                const char *fix, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void
add(struct diag *d, const char *id, enum certs_severity sev, const char *file, const char *fix,
    const char *fmt, ...)
{
    char msg[DIAG_MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (certs_findings_add(d->fs, id, sev, file, 0, 0, msg, fix) != 0) {
        d->oom = true;
    }
}

/* printf into a fixed buffer, for fix lines.  Returns ${buf}. */
static const char *fmt_buf(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static const char *
fmt_buf(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    return buf;
}

/* ---- describing certificates ---- */

/* ${name} in RFC 2253 form, printable ASCII only (a hostile name cannot forge a line). */
static const char *
name_str(const X509_NAME *name, char *buf, size_t len)
{
    BIO *bio;
    char *data = NULL;
    long n;
    size_t i, k = 0;

    buf[0] = '\0';
    if (name == NULL || (bio = BIO_new(BIO_s_mem())) == NULL) {
        return buf;
    }
    if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) >= 0 &&
        (n = BIO_get_mem_data(bio, &data)) > 0 && data != NULL) {
        for (i = 0; i < (size_t)n && k + 1 < len; i++) {
            unsigned char c = (unsigned char)data[i];

            buf[k++] = (char)((c < 0x20 || c > 0x7e) ? '?' : c);
        }
        buf[k] = '\0';
    }
    BIO_free(bio);
    ERR_clear_error();
    if (buf[0] == '\0') {
        (void)snprintf(buf, len, "(empty name)");
    }
    return buf;
}

static const char *
subj(X509 *x, char *buf, size_t len)
{
    return name_str(X509_get_subject_name(x), buf, len);
}

/* Was ${child} signed by ${parent}: issuer name = subject, and the signature verifies? */
static bool
issued_by(X509 *child, X509 *parent)
{
    EVP_PKEY *pk;
    bool ok;

    if (X509_NAME_cmp(X509_get_issuer_name(child), X509_get_subject_name(parent)) != 0) {
        return false;
    }
    if ((pk = X509_get0_pubkey(parent)) == NULL) {
        ERR_clear_error();
        return false;
    }
    ok = X509_verify(child, pk) == 1;
    ERR_clear_error();
    return ok;
}

static bool
self_issued(X509 *x)
{
    return issued_by(x, x);
}

static bool
is_ca(X509 *x)
{
    return X509_check_ca(x) != 0;
}

/* Is ${x} (the very certificate) in ${sk}? */
static bool
in_stack(STACK_OF(X509) * sk, X509 *x)
{
    int i;

    for (i = 0; sk != NULL && i < sk_X509_num(sk); i++) {
        if (X509_cmp(sk_X509_value(sk, i), x) == 0) {
            return true;
        }
    }
    return false;
}

/* The first certificate of ${sk} other than ${x} that signed ${x}, or NULL. */
static X509 *
find_issuer(STACK_OF(X509) * sk, X509 *x)
{
    X509 *c;
    int i;

    for (i = 0; sk != NULL && i < sk_X509_num(sk); i++) {
        c = sk_X509_value(sk, i);
        if (X509_cmp(c, x) != 0 && issued_by(x, c)) {
            return c;
        }
    }
    return NULL;
}

/* "EC P-256", "RSA 2048", ...; *${bits} gets the key size (0 when unknown). */
static const char *
key_desc(EVP_PKEY *pk, char *buf, size_t len, int *bits)
{
    char curve[32]; /* OpenSSL's longest group name has 23 bytes; "EC " + it fits any 64 */
    size_t clen = 0;

    *bits = pk != NULL ? EVP_PKEY_get_bits(pk) : 0;
    if (pk == NULL) {
        (void)snprintf(buf, len, "unknown");
    } else if (EVP_PKEY_is_a(pk, "RSA") || EVP_PKEY_is_a(pk, "RSA-PSS")) {
        (void)snprintf(buf, len, "RSA %d", *bits);
    } else if (EVP_PKEY_is_a(pk, "EC")) {
        if (EVP_PKEY_get_utf8_string_param(pk, "group", curve, sizeof(curve), &clen) == 1) {
            (void)snprintf(buf, len, "EC %s",
                           strcmp(curve, "prime256v1") == 0  ? "P-256"
                           : strcmp(curve, "secp384r1") == 0 ? "P-384"
                           : strcmp(curve, "secp521r1") == 0 ? "P-521"
                                                             : curve);
        } else {
            (void)snprintf(buf, len, "EC %d", *bits);
        }
    } else {
        (void)snprintf(buf, len, "%s %d", EVP_PKEY_get0_type_name(pk), *bits);
    }
    ERR_clear_error();
    return buf;
}

/* Is the key weak for CONTRACT §8 (RSA/DSA < 2048, EC < 224)? */
static bool
key_weak(EVP_PKEY *pk, int bits)
{
    if (pk == NULL || bits <= 0) {
        return false;
    }
    if (EVP_PKEY_is_a(pk, "EC")) {
        return bits < DIAG_EC_MIN;
    }
    if (EVP_PKEY_is_a(pk, "RSA") || EVP_PKEY_is_a(pk, "RSA-PSS") || EVP_PKEY_is_a(pk, "DSA")) {
        return bits < DIAG_RSA_MIN;
    }
    return false;
}

/* Signed with SHA-1 or MD5? */
static bool
sig_weak(X509 *x)
{
    int md = NID_undef, pk = NID_undef;

    if (OBJ_find_sigid_algs(X509_get_signature_nid(x), &md, &pk) != 1) {
        return false;
    }
    return md == NID_sha1 || md == NID_md5 || md == NID_md5_sha1;
}

/*
 * The DNS, IP and URI SANs of ${x} as "DNS:a,IP:b,URI:spiffe://td/x" (empty when none); *${n}
 * counts the DNS and IP ones (the names a peer dialling this host checks).
 */
static const char *
sans_str(X509 *x, char *buf, size_t len, int *n)
{
    GENERAL_NAMES *gens;
    const GENERAL_NAME *gn;
    const ASN1_STRING *v;
    char item[300], ip[INET6_ADDRSTRLEN];
    size_t used = 0;
    int i, type, vl;

    buf[0] = '\0';
    *n = 0;
    gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
        gn = sk_GENERAL_NAME_value(gens, i);
        v = GENERAL_NAME_get0_value(gn, &type);
        item[0] = '\0';
        if (type == GEN_DNS) {
            vl = ASN1_STRING_length(v);
            (void)snprintf(item, sizeof(item), "DNS:%.*s", vl > 255 ? 255 : vl,
                           (const char *)ASN1_STRING_get0_data(v));
        } else if (type == GEN_IPADD &&
                   (ASN1_STRING_length(v) == 4 || ASN1_STRING_length(v) == 16)) {
            if (inet_ntop(ASN1_STRING_length(v) == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(v),
                          ip, sizeof(ip)) != NULL) {
                (void)snprintf(item, sizeof(item), "IP:%s", ip);
            }
        } else if (type == GEN_URI) {
            vl = ASN1_STRING_length(v);
            (void)snprintf(item, sizeof(item), "URI:%.*s", vl > 255 ? 255 : vl,
                           (const char *)ASN1_STRING_get0_data(v));
        }
        if (item[0] != '\0' && used + strlen(item) + 2 < len) {
            used += (size_t)snprintf(buf + used, len - used, "%s%s", used > 0 ? "," : "", item);
            *n += type != GEN_URI;
        }
    }
    GENERAL_NAMES_free(gens);
    ERR_clear_error();
    /* Make the text printable: a SAN may hold anything. */
    for (i = 0; buf[i] != '\0'; i++) {
        if ((unsigned char)buf[i] < 0x20 || (unsigned char)buf[i] > 0x7e) {
            buf[i] = '?';
        }
    }
    return buf;
}

/* Does a DNS/IP SAN of ${x} cover ${host} (CONTRACT §4 rule 3)? */
static bool
san_covers(X509 *x, const char *host)
{
    GENERAL_NAMES *gens;
    const GENERAL_NAME *gn;
    const ASN1_STRING *v;
    unsigned char ip[16];
    size_t iplen = 0;
    char dns[256];
    bool is_ip = tls_name_is_ip(host, ip, &iplen), ok = false;
    int i, type, vl;

    gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens) && !ok; i++) {
        gn = sk_GENERAL_NAME_value(gens, i);
        v = GENERAL_NAME_get0_value(gn, &type);
        vl = ASN1_STRING_length(v);
        if (type == GEN_IPADD && is_ip) {
            ok = (size_t)vl == iplen && memcmp(ASN1_STRING_get0_data(v), ip, iplen) == 0;
        } else if (type == GEN_DNS && !is_ip && vl > 0 && vl < (int)sizeof(dns)) {
            memcpy(dns, ASN1_STRING_get0_data(v), (size_t)vl);
            dns[vl] = '\0';
            ok = strlen(dns) == (size_t)vl && tls_name_match_san(dns, host);
        }
    }
    GENERAL_NAMES_free(gens);
    ERR_clear_error();
    return ok;
}

/* "serverAuth,clientAuth" / "(none)" / "(no extension)". */
static const char *
ekus_str(X509 *x, char *buf, size_t len)
{
    uint32_t xku;
    size_t used = 0;

    if ((X509_get_extension_flags(x) & EXFLAG_XKUSAGE) == 0) {
        (void)snprintf(buf, len, "(no extendedKeyUsage extension)");
        return buf;
    }
    xku = X509_get_extended_key_usage(x);
    buf[0] = '\0';
    if (xku & XKU_SSL_SERVER) {
        used += (size_t)snprintf(buf + used, len - used, "serverAuth");
    }
    if ((xku & XKU_SSL_CLIENT) && used < len) {
        used += (size_t)snprintf(buf + used, len - used, "%sclientAuth", used > 0 ? "," : "");
    }
    if ((xku & ~(uint32_t)(XKU_SSL_SERVER | XKU_SSL_CLIENT)) && used < len) {
        (void)snprintf(buf + used, len - used, "%sother", used > 0 ? "," : "");
    }
    if (buf[0] == '\0') {
        (void)snprintf(buf, len, "(none)");
    }
    return buf;
}

/* Whole days from now until ${t} (negative when past). */
static int
days_left(const ASN1_TIME *t)
{
    int days = 0, secs = 0;

    if (ASN1_TIME_diff(&days, &secs, NULL, t) != 1) {
        return 0;
    }
    return days;
}

/* SHA-256 of the DER, "AB:CD:..." */
static const char *
fingerprint(X509 *x, char *buf, size_t len)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0, i;
    size_t used = 0;

    buf[0] = '\0';
    if (X509_digest(x, EVP_sha256(), md, &n) != 1) {
        ERR_clear_error();
        return buf;
    }
    for (i = 0; i < n && used + 3 < len; i++) {
        used += (size_t)snprintf(buf + used, len - used, "%s%02X", i > 0 ? ":" : "", md[i]);
    }
    return buf;
}

/* The serial number in hex. */
static const char *
serial_str(X509 *x, char *buf, size_t len)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;

    (void)snprintf(buf, len, "%s", hex != NULL ? hex : "?");
    OPENSSL_free(hex);
    BN_free(bn);
    ERR_clear_error();
    return buf;
}

/* ---- reading files ---- */

/* Search ${hay} (may hold NULs) for the NUL-free string ${needle}. */
static const unsigned char *
find_bytes(const unsigned char *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle), i;

    for (i = 0; k > 0 && i + k <= n; i++) {
        if (hay[i] == (unsigned char)needle[0] && memcmp(hay + i, needle, k) == 0) {
            return hay + i;
        }
    }
    return NULL;
}

/* The label of the first PEM block ("PRIVATE KEY", "CERTIFICATE REQUEST"), or "". */
static const char *
first_pem_label(const unsigned char *data, size_t n, char *buf, size_t len)
{
    const unsigned char *b = find_bytes(data, n, "-----BEGIN "), *e;
    size_t k;

    buf[0] = '\0';
    if (b == NULL) {
        return buf;
    }
    b += strlen("-----BEGIN ");
    e = find_bytes(b, n - (size_t)(b - data), "-----");
    if (e == NULL) {
        return buf;
    }
    k = (size_t)(e - b);
    if (k >= len) {
        k = len - 1;
    }
    memcpy(buf, b, k);
    buf[k] = '\0';
    for (k = 0; buf[k] != '\0'; k++) {
        if ((unsigned char)buf[k] < 0x20 || (unsigned char)buf[k] > 0x7e) {
            buf[k] = '?';
        }
    }
    return buf;
}

/* What a PEM label means, for "holds a ... , not a certificate". */
static const char *
label_meaning(const char *label)
{
    if (strstr(label, "PRIVATE KEY") != NULL) {
        return "a private key";
    }
    if (strstr(label, "CERTIFICATE REQUEST") != NULL) {
        return "a certificate signing request (CSR): it still has to be signed by the CA";
    }
    if (strcmp(label, "X509 CRL") == 0) {
        return "a CRL";
    }
    if (strstr(label, "PUBLIC KEY") != NULL) {
        return "a public key";
    }
    if (strstr(label, "CERTIFICATE") != NULL) {
        return "a certificate";
    }
    return "some other PEM data";
}

/*
 * Read ${path} whole.  Missing, unreadable and empty files become findings (${what} names
 * the role of the file: "certificate", "CA bundle", ...).  Returns the data (free with
 * OPENSSL_clear_free when it may hold a secret) or NULL.
 */
static unsigned char *
read_whole(struct diag *d, const char *path, const char *what, size_t *len)
{
    char fix[DIAG_MSG_MAX];
    unsigned char *buf = NULL, *nb;
    size_t cap = 0, n = 0;
    ssize_t r;
    struct stat st;
    int fd, e;
    bool blank = true;

    /* Non-blocking, and only a regular file: a FIFO would block `ferry check` forever. */
    if ((fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0) {
        e = errno;
        goto fail;
    }
    if (fstat(fd, &st) != 0) {
        e = errno;
        goto fail_fd;
    }
    if (S_ISDIR(st.st_mode)) {
        e = EISDIR;
        goto fail_fd;
    }
    if (!S_ISREG(st.st_mode)) {
        (void)close(fd);
        add(d, "file-unreadable", CERTS_SEV_ERROR, path,
            "point the setting at a regular file (a FIFO or device would block ferry)",
            "cannot read the %s file: not a regular file (%s)", what,
            tls_file_kind((unsigned)st.st_mode));
        return NULL;
    }
    for (;;) {
        if (n == cap) {
            if (cap >= (size_t)DIAG_FILE_MAX) {
                e = EFBIG;
                goto fail_fd;
            }
            /* Key and passphrase files pass through here: never leave a copy behind. */
            if ((nb = malloc((cap == 0 ? 8192 : cap * 2) + 1)) == NULL) {
                d->oom = true;
                OPENSSL_clear_free(buf, cap);
                (void)close(fd);
                return NULL;
            }
            if (buf != NULL) {
                memcpy(nb, buf, n);
                OPENSSL_clear_free(buf, cap);
            }
            buf = nb;
            cap = cap == 0 ? 8192 : cap * 2;
        }
        r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            e = errno;
            goto fail_fd;
        }
        if (r == 0) {
            break;
        }
        n += (size_t)r;
    }
    (void)close(fd);
    for (size_t i = 0; i < n && blank; i++) {
        blank = buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n';
    }
    if (blank) {
        OPENSSL_clear_free(buf, cap);
        add(d, "file-empty", CERTS_SEV_ERROR, path,
            fmt_buf(fix, sizeof(fix), "copy the %s into %s (PEM text)", what, base_name(path)),
            "the %s file is empty", what);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;

fail_fd:
    (void)close(fd);
fail:
    OPENSSL_clear_free(buf, cap);
    if (e == ENOENT || e == ENOTDIR) {
        add(d, "file-missing", CERTS_SEV_ERROR, path,
            "check the path in the config, or create the file", "the %s file does not exist", what);
    } else {
        add(d, "file-unreadable", CERTS_SEV_ERROR, path,
            e == EACCES ? "give ferry's user read access (chown, or chmod g+r with its group)"
                        : "point the setting at a regular, readable file",
            "cannot read the %s file: %s", what, strerror(e));
    }
    return NULL;
}

/*
 * ${data} holds no PEM block: say what it is (DER certificate, DER CRL, DER key, PKCS#12)
 * as a finding against ${path}, which should hold ${what} in PEM.
 */
static void
report_binary(struct diag *d, const char *path, const char *what, const unsigned char *data,
              size_t n, const char *pem_cmd)
{
    const unsigned char *q;
    X509 *x;
    X509_CRL *crl;
    PKCS12 *p12;
    EVP_PKEY *pk;
    X509_SIG *sig;
    char fix[DIAG_MSG_MAX], name[DIAG_NAME_MAX];
    long len = n > (size_t)DIAG_FILE_MAX ? DIAG_FILE_MAX : (long)n;

    ERR_clear_error();
    q = data;
    if ((x = d2i_X509(NULL, &q, len)) != NULL) {
        add(d, "not-pem-der", CERTS_SEV_ERROR, path,
            fmt_buf(fix, sizeof(fix),
                    "convert it to PEM: openssl x509 -inform DER -in %s -out %s.pem",
                    base_name(path), base_name(path)),
            "the %s is in DER (binary) form, ferry reads PEM; it holds the certificate %s", what,
            subj(x, name, sizeof(name)));
        X509_free(x);
        goto done;
    }
    q = data;
    if ((crl = d2i_X509_CRL(NULL, &q, len)) != NULL) {
        add(d, "not-pem-der", CERTS_SEV_ERROR, path,
            fmt_buf(fix, sizeof(fix),
                    "convert it to PEM: openssl crl -inform DER -in %s -out %s.pem",
                    base_name(path), base_name(path)),
            "the %s is a DER (binary) CRL, ferry reads PEM", what);
        X509_CRL_free(crl);
        goto done;
    }
    q = data;
    if ((p12 = d2i_PKCS12(NULL, &q, len)) != NULL) {
        add(d, "not-pem-pkcs12", CERTS_SEV_ERROR, path,
            fmt_buf(fix, sizeof(fix),
                    "extract PEM files: openssl pkcs12 -in %s -clcerts -nokeys -out node.crt; "
                    "openssl pkcs12 -in %s -nocerts -nodes -out node.key (then chmod 600 node.key)",
                    base_name(path), base_name(path)),
            "the %s is a PKCS#12 (.p12/.pfx) bundle, ferry reads PEM files", what);
        PKCS12_free(p12);
        goto done;
    }
    q = data;
    pk = d2i_AutoPrivateKey(NULL, &q, len);
    q = data;
    sig = pk == NULL ? d2i_X509_SIG(NULL, &q, len) : NULL;
    if (pk != NULL || sig != NULL) {
        add(d, "not-pem-der", CERTS_SEV_ERROR, path,
            fmt_buf(fix, sizeof(fix),
                    "convert it to PEM: openssl pkey -inform DER -in %s -out %s.pem",
                    base_name(path), base_name(path)),
            "the %s is a DER (binary) private key, ferry reads PEM", what);
        EVP_PKEY_free(pk);
        X509_SIG_free(sig);
        goto done;
    }
    add(d, "not-a-certificate", CERTS_SEV_ERROR, path,
        fmt_buf(fix, sizeof(fix), "put %s in PEM form (\"-----BEGIN ...\") in %s; %s", what,
                base_name(path), pem_cmd),
        "the file holds no PEM data and is not a DER certificate, key, CRL or PKCS#12 bundle");
done:
    ERR_clear_error();
}

/*
 * Parse every PEM certificate of ${path}.  Problems become findings against ${path}.
 * Returns the stack (possibly empty) or NULL when the file is unusable.
 */
static STACK_OF(X509) * load_certs(struct diag *d, const char *path, const char *what)
{
    STACK_OF(X509) *sk = NULL;
    unsigned char *data;
    size_t n = 0;
    BIO *bio = NULL;
    X509 *x;
    unsigned long e;
    char label[64], fix[DIAG_MSG_MAX];

    if ((data = read_whole(d, path, what, &n)) == NULL) {
        return NULL;
    }
    if (find_bytes(data, n, "-----BEGIN ") == NULL) {
        report_binary(d, path, what, data, n, "see `ferry certs inspect FILE`");
        goto done;
    }
    ERR_clear_error();
    if ((bio = BIO_new_mem_buf(data, (int)n)) == NULL || (sk = sk_X509_new_null()) == NULL) {
        d->oom = true;
        goto done;
    }
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (sk_X509_push(sk, x) <= 0) {
            X509_free(x);
            d->oom = true;
            goto done;
        }
    }
    e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) != ERR_LIB_PEM || ERR_GET_REASON(e) != PEM_R_NO_START_LINE) {
        add(d, "not-a-certificate", CERTS_SEV_ERROR, path,
            "replace the damaged block with an intact copy of the certificate",
            "certificate #%d of the %s is damaged (bad base64 or DER inside the PEM block)",
            sk_X509_num(sk) + 1, what);
        sk_X509_pop_free(sk, X509_free);
        sk = NULL;
    } else if (sk_X509_num(sk) == 0) {
        (void)first_pem_label(data, n, label, sizeof(label));
        add(d, "not-a-certificate", CERTS_SEV_ERROR, path,
            fmt_buf(fix, sizeof(fix), "point the setting at the %s (a \"BEGIN CERTIFICATE\" file)",
                    what),
            "the %s file holds %s (\"%s\"), not a certificate", what, label_meaning(label), label);
        sk_X509_pop_free(sk, X509_free);
        sk = NULL;
    }
done:
    ERR_clear_error();
    BIO_free(bio);
    free(data);
    return sk;
}

/* A passphrase callback that hands over ${u}'s passphrase, or refuses (never prompts). */
struct pass_state {
    char pass[DIAG_PASS_MAX];
    size_t len;
    bool have;
    bool asked;
};

static int
pass_cb(char *buf, int size, int rwflag, void *u)
{
    struct pass_state *st = u;

    (void)rwflag;
    st->asked = true;
    if (!st->have || size < 0 || st->len > (size_t)size) {
        return -1;
    }
    memcpy(buf, st->pass, st->len);
    return (int)st->len;
}

/*
 * certs_inspect_secret_mode(fs, path, what):
 * The one permission rule for secrets (a private key, a key passphrase file, the CouchDB
 * proxy-auth secret), on the file ferry opens: stat() follows symlinks, as a Kubernetes
 * secret volume is made of them (tls.key -> ..data/tls.key).  Readable or writable by others:
 * key-permissions, an error.  Readable or writable by its group only: key-group-readable, a
 * warning (a secret volume with fsGroup, root:ferry 0640).  ${what} names the kind of file.
 * A file that cannot be stat()ed is left to the findings that read it.  Returns 0, or -1 on
 * OOM.
 */
int
certs_inspect_secret_mode(struct certs_findings *fs, const char *path, const char *what)
{
    struct stat st;
    char fix[DIAG_MSG_MAX], msg[DIAG_MSG_MAX];
    unsigned mode;

    if (path == NULL || stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        return 0;
    }
    mode = (unsigned)(st.st_mode & 07777);
    if ((st.st_mode & (S_IROTH | S_IWOTH)) != 0) {
        (void)snprintf(fix, sizeof(fix),
                       "chmod o-rwx %s: 0600 owned by ferry's user, or 0640 with ferry's group",
                       path);
        (void)snprintf(msg, sizeof(msg), "the %s is %s by every user on this machine (mode %04o)",
                       what, (st.st_mode & S_IROTH) != 0 ? "readable" : "writable", mode);
        return certs_findings_add(fs, "key-permissions", CERTS_SEV_ERROR, path, 0, 0, msg, fix);
    }
    if ((st.st_mode & (S_IRGRP | S_IWGRP)) != 0) {
        (void)snprintf(fix, sizeof(fix),
                       "expected when the group is ferry's own (Kubernetes fsGroup, root:ferry "
                       "0640); otherwise chmod 600 %s",
                       path);
        (void)snprintf(msg, sizeof(msg), "the %s is %s by its group (mode %04o)", what,
                       (st.st_mode & S_IRGRP) != 0 ? "readable" : "writable", mode);
        return certs_findings_add(fs, "key-group-readable", CERTS_SEV_WARNING, path, 0, 0, msg,
                                  fix);
    }
    return 0;
}

/* certs_inspect_secret_mode() within a diagnosis. */
static void
check_secret_mode(struct diag *d, const char *path, const char *what)
{
    if (certs_inspect_secret_mode(d->fs, path, what) != 0) {
        d->oom = true;
    }
}

/* Read the passphrase file of ${p} into ${st}.  Returns 0, or -1 after a finding. */
static int
load_passphrase(struct diag *d, const char *path, struct pass_state *st)
{
    unsigned char *data;
    size_t n = 0, all;

    if ((data = read_whole(d, path, "key passphrase", &n)) == NULL) {
        return -1;
    }
    all = n; /* what to wipe: the newline is trimmed below */
    check_secret_mode(d, path, "key passphrase file");
    if (n > 0 && data[n - 1] == '\n') {
        n--;
        if (n > 0 && data[n - 1] == '\r') {
            n--;
        }
    }
    if (n >= sizeof(st->pass)) {
        add(d, "key-passphrase-wrong", CERTS_SEV_ERROR, path,
            "write only the passphrase into the file (one line)",
            "the passphrase file is longer than %d bytes", DIAG_PASS_MAX - 1);
        OPENSSL_clear_free(data, all);
        return -1;
    }
    memcpy(st->pass, data, n);
    st->len = n;
    st->have = true;
    OPENSSL_clear_free(data, all);
    return 0;
}

/* Load the private key of ${d}->p; problems become findings.  Sets d->key. */
static void
load_key(struct diag *d)
{
    const struct certs_diag_params *p = d->p;
    struct pass_state st;
    unsigned char *data;
    size_t n = 0;
    BIO *bio = NULL;
    char label[64], fix[DIAG_MSG_MAX];

    memset(&st, 0, sizeof(st));
    if ((data = read_whole(d, p->key, "private key", &n)) == NULL) {
        return;
    }
    check_secret_mode(d, p->key, "private key");
    if (find_bytes(data, n, "-----BEGIN ") == NULL) {
        report_binary(d, p->key, "private key", data, n, "see `ferry certs inspect`");
        goto done;
    }
    if (p->key_passphrase_file != NULL && load_passphrase(d, p->key_passphrase_file, &st) != 0) {
        goto done;
    }
    ERR_clear_error();
    if ((bio = BIO_new_mem_buf(data, (int)n)) == NULL) {
        d->oom = true;
        goto done;
    }
    /* Our own callback, never NULL: with NULL OpenSSL would prompt on the terminal. */
    d->key = PEM_read_bio_PrivateKey(bio, NULL, pass_cb, &st);
    if (d->key != NULL) {
        goto done;
    }
    /*
     * st.have <=> a passphrase file is set (load_passphrase() succeeded, or we left above):
     * test the file itself, so that the analyzer, which cannot see through pass_cb, knows that
     * p->key_passphrase_file is not NULL in the next branch.
     */
    if (st.asked && p->key_passphrase_file == NULL) {
        add(d, "key-encrypted-no-passphrase", CERTS_SEV_ERROR, p->key,
            "set tls.key_passphrase_file to a file (mode 0600) holding the passphrase, or "
            "decrypt the key: openssl pkey -in KEY -out KEY.plain",
            "the private key is encrypted and no passphrase file is set (ferry never prompts)");
    } else if (st.asked) {
        add(d, "key-passphrase-wrong", CERTS_SEV_ERROR, p->key_passphrase_file,
            fmt_buf(fix, sizeof(fix), "write the passphrase of %s into %s (one line)",
                    base_name(p->key), base_name(p->key_passphrase_file)),
            "the passphrase in this file does not decrypt %s", base_name(p->key));
    } else {
        (void)first_pem_label(data, n, label, sizeof(label));
        add(d, "not-a-key", CERTS_SEV_ERROR, p->key,
            "point tls.key at the private key (a \"BEGIN PRIVATE KEY\" file) of the certificate",
            strstr(label, "PRIVATE KEY") != NULL
                ? "the private key (\"%s\") is damaged and cannot be parsed"
                : "the key file holds %s, not a private key",
            strstr(label, "PRIVATE KEY") != NULL ? label : label_meaning(label));
    }
done:
    ERR_clear_error();
    BIO_free(bio);
    OPENSSL_cleanse(&st, sizeof(st));
    OPENSSL_clear_free(data, n);
}

/* Load every PEM CRL of ${d}->p->crl into d->crls. */
static void
load_crls(struct diag *d)
{
    const char *path = d->p->crl;
    unsigned char *data;
    size_t n = 0;
    BIO *bio = NULL;
    X509_CRL *crl;
    unsigned long e;
    char label[64];

    if ((data = read_whole(d, path, "CRL", &n)) == NULL) {
        return;
    }
    if (find_bytes(data, n, "-----BEGIN ") == NULL) {
        report_binary(d, path, "CRL", data, n, "see `openssl crl -in FILE`");
        goto done;
    }
    ERR_clear_error();
    if ((bio = BIO_new_mem_buf(data, (int)n)) == NULL ||
        (d->crls = sk_X509_CRL_new_null()) == NULL) {
        d->oom = true;
        goto done;
    }
    while ((crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL)) != NULL) {
        if (sk_X509_CRL_push(d->crls, crl) <= 0) {
            X509_CRL_free(crl);
            d->oom = true;
            goto done;
        }
    }
    e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) != ERR_LIB_PEM || ERR_GET_REASON(e) != PEM_R_NO_START_LINE ||
        sk_X509_CRL_num(d->crls) == 0) {
        (void)first_pem_label(data, n, label, sizeof(label));
        if (sk_X509_CRL_num(d->crls) > 0) {
            add(d, "not-a-crl", CERTS_SEV_ERROR, path,
                "replace the damaged block with an intact copy of the CRL",
                "CRL #%d of the file is damaged", sk_X509_CRL_num(d->crls) + 1);
        } else {
            add(d, "not-a-crl", CERTS_SEV_ERROR, path,
                "point tls.crl at the CA's CRL (a \"BEGIN X509 CRL\" file), e.g. from openssl "
                "ca -gencrl",
                "the CRL file holds %s (\"%s\"), not a CRL", label_meaning(label), label);
        }
        sk_X509_CRL_pop_free(d->crls, X509_CRL_free);
        d->crls = NULL;
    }
done:
    ERR_clear_error();
    BIO_free(bio);
    free(data);
}

/* ---- the checks ---- */

/* Validity, key strength and signature of one certificate from ${file}. */
static void
check_cert(struct diag *d, X509 *x, const char *file)
{
    char name[DIAG_NAME_MAX], when[64], kd[64], fix[DIAG_MSG_MAX];
    int bits, left;

    (void)subj(x, name, sizeof(name));
    if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0) {
        add(d, "cert-expired", CERTS_SEV_ERROR, file,
            is_ca(x) ? "renew the CA certificate (same key) and give it to every node"
                     : "issue a new certificate: ferry certs issue (or your CA's procedure)",
            "certificate %s expired on %s", name,
            tls_time_str(X509_get0_notAfter(x), when, sizeof(when)));
    } else if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0) {
        add(d, "cert-not-yet-valid", CERTS_SEV_ERROR, file,
            "check this machine's clock (NTP), or reissue the certificate with a start date in "
            "the past",
            "certificate %s is not valid before %s", name,
            tls_time_str(X509_get0_notBefore(x), when, sizeof(when)));
    } else if ((left = days_left(X509_get0_notAfter(x))) < CERTS_EXPIRING_DAYS) {
        add(d, "cert-expiring", CERTS_SEV_WARNING, file,
            is_ca(x) ? "renew the CA certificate soon and give it to every node"
                     : "issue a new certificate soon and reload ferry (SIGHUP)",
            "certificate %s expires in %d day%s (%s)", name, left, left == 1 ? "" : "s",
            tls_time_str(X509_get0_notAfter(x), when, sizeof(when)));
    }
    (void)key_desc(X509_get0_pubkey(x), kd, sizeof(kd), &bits);
    if (key_weak(X509_get0_pubkey(x), bits)) {
        add(d, "weak-key", CERTS_SEV_ERROR, file,
            fmt_buf(fix, sizeof(fix),
                    "make a new key (ECDSA P-256, or RSA 2048 or more) and a new certificate: "
                    "ferry certs %s",
                    is_ca(x) ? "init-ca" : "issue"),
            "certificate %s has a weak %s key", name, kd);
    }
    if (!self_issued(x) && sig_weak(x)) {
        add(d, "sha1-signature", CERTS_SEV_ERROR, file,
            "have the CA sign it again with SHA-256 (openssl ... -sha256; ferry certs always does)",
            "certificate %s is signed with %s, which peers refuse", name,
            OBJ_nid2sn(X509_get_signature_nid(x)));
    }
}

/* Chain order in the cert file: leaf first, then each certificate's issuer. */
static void
check_order(struct diag *d)
{
    const char *file = d->p->cert;
    int n = sk_X509_num(d->chain), i, j, leaf_at = -1;
    X509 *x;
    char a[DIAG_NAME_MAX], b[DIAG_NAME_MAX];
    bool misordered = false;

    d->leaf = sk_X509_value(d->chain, 0);
    if (is_ca(d->leaf)) {
        for (i = 1; i < n && leaf_at < 0; i++) {
            if (!is_ca(sk_X509_value(d->chain, i))) {
                leaf_at = i;
            }
        }
    }
    if (leaf_at > 0) {
        x = sk_X509_value(d->chain, leaf_at);
        add(d, "chain-order", CERTS_SEV_ERROR, file,
            "reorder the file: the node's certificate first, then its issuer, then that "
            "issuer's issuer (the root may be left out)",
            "the first certificate is the CA %s, the node's own certificate %s is #%d: ferry "
            "would present the CA as itself",
            subj(d->leaf, a, sizeof(a)), subj(x, b, sizeof(b)), leaf_at + 1);
        d->leaf = x;
        if (d->report != NULL) {
            d->report->order_ok = false;
        }
        return;
    }
    for (i = 0; i + 1 < n && !misordered; i++) {
        x = sk_X509_value(d->chain, i);
        if (issued_by(x, sk_X509_value(d->chain, i + 1))) {
            continue;
        }
        misordered = true;
        for (j = 0; j < n; j++) {
            if (j != i && j != i + 1 && issued_by(x, sk_X509_value(d->chain, j))) {
                break;
            }
        }
        if (j < n) {
            add(d, "chain-order", CERTS_SEV_WARNING, file,
                "reorder the file: the node's certificate first, then its issuer, then that "
                "issuer's issuer",
                "the issuer of %s is #%d, not the next certificate (#%d): strict peers "
                "refuse an out-of-order chain",
                subj(x, a, sizeof(a)), j + 1, i + 2);
        } else {
            /* Neither the next certificate nor any other issued #i: #i's issuer is missing
             * or #i+1 does not belong (another node's certificate, the leaf twice). */
            add(d, "chain-order", CERTS_SEV_WARNING, file,
                "put each certificate's issuer right after it, and keep in the file only the "
                "node's certificate and the intermediates above it",
                "#%d (%s) did not issue #%d (%s), and no certificate in the file did: #%d's "
                "issuer is missing or #%d does not belong, and ferry sends peers every "
                "certificate of the file",
                i + 2, subj(sk_X509_value(d->chain, i + 1), b, sizeof(b)), i + 1,
                subj(x, a, sizeof(a)), i + 1, i + 2);
        }
    }
    if (d->report != NULL) {
        d->report->order_ok = !misordered;
    }
}

/* Append " <- NAME (WHERE)" to the report's chain text. */
static void
path_append(struct diag *d, const char *name, const char *where)
{
    size_t used;

    if (d->report == NULL) {
        return;
    }
    used = strlen(d->report->chain_text);
    if (used + 1 < sizeof(d->report->chain_text)) {
        (void)snprintf(d->report->chain_text + used, sizeof(d->report->chain_text) - used,
                       "%s%s (%s)", used > 0 ? " <- " : "", name, where);
    }
}

static void
path_add(struct diag *d, X509 *x, const char *where)
{
    char name[DIAG_NAME_MAX];

    path_append(d, subj(x, name, sizeof(name)), where);
}

/* The first certificate of ${sk} whose subject is ${name}, or NULL. */
static X509 *
find_by_subject(STACK_OF(X509) * sk, const X509_NAME *name)
{
    int i;

    for (i = 0; sk != NULL && i < sk_X509_num(sk); i++) {
        if (X509_NAME_cmp(X509_get_subject_name(sk_X509_value(sk, i)), name) == 0) {
            return sk_X509_value(sk, i);
        }
    }
    return NULL;
}

/* The CA bundle alone: leaves in it, intermediates without their root, several roots. */
static void
check_bundle(struct diag *d)
{
    const char *file = d->p->ca;
    char a[DIAG_NAME_MAX], b[DIAG_NAME_MAX], roots[DIAG_MSG_MAX] = "", fix[DIAG_MSG_MAX];
    int i, n_roots = 0;
    size_t used = 0;
    X509 *x;

    for (i = 0; i < sk_X509_num(d->bundle); i++) {
        x = sk_X509_value(d->bundle, i);
        check_cert(d, x, file);
        if (!is_ca(x)) {
            /* A leaf (often the node's own certificate, or the peer's) where a CA belongs. */
            d->chain_finding = true;
            d->bundle_non_ca = true;
            add(d, "ca-not-a-ca", CERTS_SEV_ERROR, file,
                fmt_buf(fix, sizeof(fix),
                        "put in %s the CA certificate(s) that issued your nodes' certificates "
                        "(the ca.crt that ferry certs issue writes), not a node's certificate",
                        base_name(file)),
                "the CA bundle holds %s, which is not a CA (no basicConstraints CA:TRUE): no "
                "chain can be verified up to it",
                subj(x, a, sizeof(a)));
            continue;
        }
        if (self_issued(x)) {
            if (used + 4 < sizeof(roots)) {
                used += (size_t)snprintf(roots + used, sizeof(roots) - used, "%s%s",
                                         n_roots > 0 ? "; " : "", subj(x, a, sizeof(a)));
            }
            n_roots++;
            continue;
        }
        if (is_ca(x) && find_issuer(d->bundle, x) == NULL) {
            d->chain_finding = true;
            (void)subj(x, a, sizeof(a));
            (void)name_str(X509_get_issuer_name(x), b, sizeof(b));
            add(d, "ca-missing-root", CERTS_SEV_ERROR, file,
                fmt_buf(fix, sizeof(fix), "append the root CA certificate %s to %s", b,
                        base_name(file)),
                "the CA bundle holds the intermediate %s but not its root %s: chains cannot "
                "be verified up to a root",
                a, b);
        }
    }
    if (d->p->note_multiple_roots && n_roots > 1) {
        add(d, "ca-multiple-roots", CERTS_SEV_WARNING, file,
            "keep only the roots of the CAs that issue your nodes' certificates",
            "the CA bundle holds %d roots (%s): a certificate from any of them is accepted for "
            "any peer name",
            n_roots, roots);
    }
}

/* Walk from the leaf to a root of the bundle; name the exact missing or bad link. */
static void
check_chain(struct diag *d)
{
    const char *cfile = d->p->cert, *afile = d->p->ca;
    X509 *cur = d->leaf, *parent;
    bool cur_in_ca = false, parent_in_ca;
    char a[DIAG_NAME_MAX], b[DIAG_NAME_MAX], fix[DIAG_MSG_MAX];
    int steps;

    path_add(d, cur, d->cert_base);
    for (steps = 0; steps < DIAG_WALK_MAX; steps++) {
        if (self_issued(cur)) {
            if (cur == d->leaf) {
                d->chain_finding = true;
                add(d, "self-signed-leaf", CERTS_SEV_ERROR, cfile,
                    "issue the node's certificate from your CA: ferry certs issue --ca DIR "
                    "--name FQDN --out DIR",
                    "the certificate %s is self-signed: peers can only trust it by trusting "
                    "this very certificate",
                    subj(cur, a, sizeof(a)));
                return;
            }
            if (cur_in_ca || in_stack(d->bundle, cur)) {
                return; /* a trusted root: the chain is complete */
            }
            d->chain_finding = true;
            (void)subj(cur, a, sizeof(a));
            add(d, "chain-untrusted", CERTS_SEV_ERROR, cfile,
                fmt_buf(fix, sizeof(fix),
                        "get a certificate issued by a CA in %s, or add the root %s to %s on "
                        "every node that must trust it",
                        d->ca_base, a, d->ca_base),
                "the chain ends at the root %s, which is not in %s", a, d->ca_base);
            return;
        }
        parent_in_ca = true;
        if ((parent = find_issuer(d->bundle, cur)) == NULL) {
            parent_in_ca = false;
            parent = find_issuer(d->chain, cur);
        }
        if (parent == NULL) {
            d->chain_finding = true;
            (void)name_str(X509_get_issuer_name(cur), a, sizeof(a));
            (void)subj(cur, b, sizeof(b));
            path_append(d, a, "missing");
            if ((parent = find_by_subject(d->bundle, X509_get_issuer_name(cur))) != NULL ||
                (parent = find_by_subject(d->chain, X509_get_issuer_name(cur))) != NULL) {
                add(d, "chain-bad-signature", CERTS_SEV_ERROR, cur_in_ca ? afile : cfile,
                    "the certificate was altered or its CA was re-created with a new key: get "
                    "it issued again by the CA you distribute",
                    "the signature of %s does not verify with the key of %s, its issuer by "
                    "name, in %s",
                    b, a, in_stack(d->bundle, parent) ? d->ca_base : d->cert_base);
                return;
            }
            if (cur_in_ca || d->bundle_non_ca) {
                /* check_bundle() reported this link already: ca-missing-root, ca-not-a-ca. */
                return;
            }
            add(d, "chain-incomplete", CERTS_SEV_ERROR, cfile,
                fmt_buf(fix, sizeof(fix),
                        "append the intermediate CA certificate %s to %s after the node's "
                        "certificate; if it is a root you trust, add it to %s instead",
                        a, d->cert_base, d->ca_base),
                "issuer %s is neither in %s nor in %s (it signed %s)", a, d->cert_base, d->ca_base,
                b);
            return;
        }
        if (!is_ca(parent)) {
            d->chain_finding = true;
            add(d, "issuer-not-ca", CERTS_SEV_ERROR, parent_in_ca ? afile : cfile,
                "have the certificate issued by a real CA (basicConstraints CA:TRUE), e.g. "
                "ferry certs init-ca, then ferry certs issue",
                "%s, which signed %s, is not a CA (no basicConstraints CA:TRUE): peers reject "
                "the chain",
                subj(parent, a, sizeof(a)), subj(cur, b, sizeof(b)));
            return;
        }
        path_add(d, parent, parent_in_ca ? d->ca_base : d->cert_base);
        cur = parent;
        cur_in_ca = parent_in_ca;
    }
}

/* OpenSSL's own verdict on the chain, as `ferry run`'s peers would reach it. */
static void
check_chain_openssl(struct diag *d)
{
    X509_STORE *store = NULL;
    X509_STORE_CTX *sctx = NULL;
    STACK_OF(X509) *untrusted = NULL;
    char a[DIAG_NAME_MAX], fix[DIAG_MSG_MAX];
    int i, rc = -1, err;

    ERR_clear_error();
    if ((store = X509_STORE_new()) == NULL || (sctx = X509_STORE_CTX_new()) == NULL ||
        (untrusted = sk_X509_new_null()) == NULL) {
        d->oom = true;
        goto done;
    }
    for (i = 0; i < sk_X509_num(d->bundle); i++) {
        if (X509_STORE_add_cert(store, sk_X509_value(d->bundle, i)) != 1) {
            ERR_clear_error(); /* a duplicate certificate in the bundle */
        }
    }
    for (i = 0; i < sk_X509_num(d->chain); i++) {
        if (sk_X509_value(d->chain, i) != d->leaf &&
            sk_X509_push(untrusted, sk_X509_value(d->chain, i)) <= 0) {
            d->oom = true;
            goto done;
        }
    }
    if (X509_STORE_CTX_init(sctx, store, d->leaf, untrusted) != 1) {
        d->oom = true;
        goto done;
    }
    rc = X509_verify_cert(sctx);
    if (rc == 1) {
        goto done;
    }
    err = X509_STORE_CTX_get_error(sctx);
    /* Dates are findings of their own (cert-expired, cert-not-yet-valid). */
    if (!d->chain_finding && err != X509_V_ERR_CERT_HAS_EXPIRED &&
        err != X509_V_ERR_CERT_NOT_YET_VALID) {
        d->chain_finding = true;
        add(d, "chain-untrusted", CERTS_SEV_ERROR, d->p->cert,
            fmt_buf(fix, sizeof(fix), "check the chain with `ferry certs inspect %s --ca %s`",
                    d->p->cert, d->p->ca),
            "the chain does not verify against %s: %s (at %s)", d->ca_base,
            X509_verify_cert_error_string(err),
            X509_STORE_CTX_get_current_cert(sctx) != NULL
                ? subj(X509_STORE_CTX_get_current_cert(sctx), a, sizeof(a))
                : "?");
    }
done:
    if (d->report != NULL) {
        d->report->chain_state = rc == 1 ? 1 : 0;
    }
    ERR_clear_error();
    sk_X509_free(untrusted);
    X509_STORE_CTX_free(sctx);
    X509_STORE_free(store);
}

/* EKU, SAN and names of the leaf. */
static void
check_leaf(struct diag *d)
{
    const struct certs_diag_params *p = d->p;
    X509 *leaf = d->leaf;
    char a[DIAG_NAME_MAX], sans[1024], fix[DIAG_MSG_MAX];
    uint32_t xku;
    int n_sans;

    (void)subj(leaf, a, sizeof(a));
    if ((X509_get_extension_flags(leaf) & EXFLAG_XKUSAGE) == 0) {
        add(d, "eku-missing", CERTS_SEV_ERROR, p->cert,
            "reissue it with extendedKeyUsage serverAuth,clientAuth (ferry certs issue does; "
            "with openssl: extendedKeyUsage = serverAuth,clientAuth in the extensions file)",
            "certificate %s has no extendedKeyUsage extension; ferry's peers reject such a "
            "certificate",
            a);
    } else {
        xku = X509_get_extended_key_usage(leaf);
        if (p->need_server_auth && (xku & XKU_SSL_SERVER) == 0) {
            add(d, "eku-server-missing", CERTS_SEV_ERROR, p->cert,
                "reissue it with extendedKeyUsage serverAuth,clientAuth",
                "certificate %s lacks extendedKeyUsage serverAuth, which an inbound listener "
                "needs (peers check it)",
                a);
        }
        if (p->need_client_auth && (xku & XKU_SSL_CLIENT) == 0) {
            add(d, "eku-client-missing", CERTS_SEV_ERROR, p->cert,
                "reissue it with extendedKeyUsage serverAuth,clientAuth",
                "certificate %s lacks extendedKeyUsage clientAuth, which an outbound listener "
                "needs (peers check it)",
                a);
        }
    }
    (void)sans_str(leaf, sans, sizeof(sans), &n_sans);
    /* A client certificate known by its URI SAN (a SPIFFE ID) is what `allow:` patterns match. */
    if (n_sans == 0 && !p->need_server_auth && strstr(sans, "URI:") != NULL) {
        return;
    }
    if (n_sans == 0 && sans[0] != '\0') {
        add(d, "san-missing", CERTS_SEV_ERROR, p->cert,
            "reissue it with a subjectAltName holding its DNS name(s) and IP(s) (ferry certs "
            "issue --name FQDN --dns ... --ip ... [--uri ...])",
            "certificate %s has no DNS or IP subjectAltName (only %s): peers that dial it "
            "check those; a URI SAN names only a client (allow: spiffe://...)",
            a, sans);
        return;
    }
    if (n_sans == 0) {
        add(d, "san-missing", CERTS_SEV_ERROR, p->cert,
            "reissue it with a subjectAltName holding its DNS name(s) and IP(s) (ferry certs "
            "issue --name FQDN --dns ... --ip ...; openssl: subjectAltName = DNS:FQDN)",
            "certificate %s has no DNS or IP subjectAltName (CN only): peers check the SAN, "
            "not the CN",
            a);
        return;
    }
    if (p->name != NULL && !san_covers(leaf, p->name)) {
        add(d, "san-mismatch", CERTS_SEV_ERROR, p->cert,
            fmt_buf(fix, sizeof(fix), "reissue it with --dns %s (or --ip), or use a name it covers",
                    p->name),
            "certificate %s does not cover %s; it covers %s", a, p->name, sans);
    }
    if (p->hostname != NULL && p->hostname[0] != '\0' && !san_covers(leaf, p->hostname)) {
        add(d, "san-hostname", CERTS_SEV_WARNING, p->cert,
            fmt_buf(fix, sizeof(fix),
                    "reissue the certificate with --dns %s (or --ip), or have peers dial a name "
                    "it covers (%s)",
                    p->hostname, sans),
            "certificate %s does not cover %s, the name peers dial this node by; it covers %s", a,
            p->hostname, sans);
    }
}

/* The key against the leaf. */
static void
check_key(struct diag *d)
{
    char a[DIAG_NAME_MAX], fix[DIAG_MSG_MAX];
    int i, other = -1;

    ERR_clear_error();
    if (X509_check_private_key(d->leaf, d->key) == 1) {
        if (d->report != NULL) {
            d->report->key_state = 1;
        }
        ERR_clear_error();
        return;
    }
    ERR_clear_error();
    for (i = 0; i < sk_X509_num(d->chain) && other < 0; i++) {
        if (sk_X509_value(d->chain, i) != d->leaf &&
            X509_check_private_key(sk_X509_value(d->chain, i), d->key) == 1) {
            other = i;
        }
    }
    ERR_clear_error();
    if (d->report != NULL) {
        d->report->key_state = 0;
    }
    add(d, "key-mismatch", CERTS_SEV_ERROR, d->p->key,
        fmt_buf(fix, sizeof(fix),
                "use the key that was made with %s's CSR (the .key next to it), or issue a new "
                "certificate for this key",
                d->cert_base),
        "the private key does not belong to the certificate %s in %s%s",
        subj(d->leaf, a, sizeof(a)), d->cert_base,
        other >= 0 ? " (it belongs to another certificate in that file)" : "");
}

/*
 * Find the CA whose key signed ${crl} among the bundle and our own chain file, or NULL; sets
 * *${known} when a certificate there has the CRL's issuer as its subject at all.
 */
static X509 *
crl_signer(struct diag *d, X509_CRL *crl, bool *known)
{
    STACK_OF(X509) *const where[] = {d->bundle, d->chain};
    X509 *x;
    size_t k;
    int i;
    bool ok;

    *known = false;
    for (k = 0; k < sizeof(where) / sizeof(where[0]); k++) {
        for (i = 0; where[k] != NULL && i < sk_X509_num(where[k]); i++) {
            x = sk_X509_value(where[k], i);
            if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(x)) != 0) {
                continue;
            }
            *known = true;
            ok = X509_get0_pubkey(x) != NULL && X509_CRL_verify(crl, X509_get0_pubkey(x)) == 1;
            ERR_clear_error();
            if (ok) {
                return x;
            }
        }
    }
    return NULL;
}

/* Each CRL: signed by a CA of the bundle, current, and not revoking our own chain. */
static void
check_crls(struct diag *d)
{
    const char *file = d->p->crl;
    X509_CRL *crl;
    X509_REVOKED *rev;
    X509 *x;
    const ASN1_TIME *next;
    char a[DIAG_NAME_MAX], b[DIAG_NAME_MAX], when[64], fix[DIAG_MSG_MAX];
    int i, j;
    bool found, known, signed_ok;

    for (i = 0; i < sk_X509_CRL_num(d->crls); i++) {
        crl = sk_X509_CRL_value(d->crls, i);
        (void)name_str(X509_CRL_get_issuer(crl), a, sizeof(a));
        known = true;
        signed_ok = d->bundle == NULL || crl_signer(d, crl, &known) != NULL;
        if (!signed_ok && !known) {
            /* An intermediate that peers send in their chains has its CRL here, legitimately,
               and it can only be checked against the peer's copy at run time. */
            add(d, "crl-bad-signature", CERTS_SEV_WARNING, file,
                fmt_buf(fix, sizeof(fix),
                        "nothing to do if %s is an intermediate CA your peers send (add it to %s "
                        "to have this CRL checked); otherwise use the CRL of a CA in %s",
                        a, d->ca_base, d->ca_base),
                "CRL #%d is from %s, a CA that is not in %s: it applies only to peers whose "
                "chain holds that CA",
                i + 1, a, d->ca_base);
        } else if (!signed_ok) {
            add(d, "crl-bad-signature", CERTS_SEV_ERROR, file,
                fmt_buf(fix, sizeof(fix),
                        "use the CRL published by a CA in %s (openssl ca -gencrl with that CA's "
                        "key), or add its CA to %s",
                        d->ca_base, d->ca_base),
                "CRL #%d (issuer %s) is not signed by a CA in %s: ferry would reject every "
                "peer",
                i + 1, a, d->ca_base);
        }
        next = X509_CRL_get0_nextUpdate(crl);
        if (next != NULL && X509_cmp_current_time(next) < 0) {
            add(d, "crl-expired", CERTS_SEV_ERROR, file,
                "publish a fresh CRL from the CA (openssl ca -gencrl) and copy it here; ferry "
                "reloads it on change",
                "CRL #%d (issuer %s) expired on %s (nextUpdate): peers checked against it are "
                "rejected",
                i + 1, a, tls_time_str(next, when, sizeof(when)));
        }
        for (j = 0; d->chain != NULL && j < sk_X509_num(d->chain); j++) {
            x = sk_X509_value(d->chain, j);
            rev = NULL;
            if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_issuer_name(x)) == 0 &&
                X509_CRL_get0_by_cert(crl, &rev, x) == 1) {
                add(d, "crl-revokes-self", CERTS_SEV_ERROR, d->p->cert,
                    x == d->leaf ? "issue a new certificate for this node (a new serial) and "
                                   "reload ferry"
                                 : "the CA must issue a new intermediate; then reissue the "
                                   "node's certificate",
                    "certificate %s is revoked by CRL #%d of %s: peers using that CRL reject "
                    "this node",
                    subj(x, b, sizeof(b)), i + 1, base_name(file));
            }
        }
        ERR_clear_error();
    }
    /* CRL_CHECK_ALL in ferry: every CA in the bundle needs its CRL, or its peers fail. */
    for (i = 0; d->bundle != NULL && i < sk_X509_num(d->bundle); i++) {
        x = sk_X509_value(d->bundle, i);
        found = false;
        for (j = 0; j < sk_X509_CRL_num(d->crls) && !found; j++) {
            found = X509_NAME_cmp(X509_CRL_get_issuer(sk_X509_CRL_value(d->crls, j)),
                                  X509_get_subject_name(x)) == 0;
        }
        if (!found) {
            (void)subj(x, a, sizeof(a));
            add(d, "crl-missing", CERTS_SEV_WARNING, file,
                fmt_buf(fix, sizeof(fix), "append the CRL of %s to %s", a, base_name(file)),
                "no CRL from %s: with tls.crl set, every CA needs one, so peers under it are "
                "rejected",
                a);
        }
    }
}

static void
diag_free(struct diag *d)
{
    sk_X509_pop_free(d->chain, X509_free);
    sk_X509_pop_free(d->bundle, X509_free);
    sk_X509_CRL_pop_free(d->crls, X509_CRL_free);
    EVP_PKEY_free(d->key);
}

/*
 * certs_inspect_diag_run(p, fs, report):
 * Load every file of ${p}, then check: the cert file (order, each certificate), the bundle,
 * the chain from the leaf to a root of the bundle, the leaf's EKU and names, the key, the
 * CRLs.  Checks that need a file that failed to load are skipped (its finding explains).
 */
int
certs_inspect_diag_run(const struct certs_diag_params *p, struct certs_findings *fs,
                       struct certs_diag_report *report)
{
    struct diag d;
    int i;

    memset(&d, 0, sizeof(d));
    d.p = p;
    d.fs = fs;
    d.report = report;
    if (report != NULL) {
        report->key_state = -1;
        report->chain_state = -1;
        report->order_ok = true;
        report->chain_text[0] = '\0';
    }
    (void)snprintf(d.cert_base, sizeof(d.cert_base), "%s", base_name(p->cert));
    (void)snprintf(d.ca_base, sizeof(d.ca_base), "%s",
                   p->ca != NULL ? base_name(p->ca) : "the CA bundle");

    d.chain = load_certs(&d, p->cert, "certificate");
    if (p->key != NULL) {
        load_key(&d);
    }
    if (p->ca != NULL) {
        d.bundle = load_certs(&d, p->ca, "CA bundle");
    }
    if (p->crl != NULL) {
        load_crls(&d);
    }

    if (d.chain != NULL) {
        check_order(&d);
        for (i = 0; i < sk_X509_num(d.chain); i++) {
            check_cert(&d, sk_X509_value(d.chain, i), p->cert);
        }
        check_leaf(&d);
        if (d.key != NULL) {
            check_key(&d);
        }
    }
    if (d.bundle != NULL) {
        check_bundle(&d);
    }
    if (d.chain != NULL && d.bundle != NULL) {
        check_chain(&d);
        check_chain_openssl(&d);
    }
    if (d.crls != NULL) {
        check_crls(&d);
    }
    if (report != NULL && d.chain != NULL) {
        report->certs = d.chain;
        d.chain = NULL;
    }
    diag_free(&d);
    ERR_clear_error();
    return d.oom ? -1 : 0;
}

/*
 * certs_inspect_report_clear(r):
 * Free the certificates ${r} holds and zero it.
 */
void
certs_inspect_report_clear(struct certs_diag_report *r)
{
    sk_X509_pop_free(r->certs, X509_free);
    memset(r, 0, sizeof(*r));
}

/*
 * certs_inspect_diagnose(p, fs):
 * certs_inspect_diag_run() without a report.
 */
int
certs_inspect_diagnose(const struct certs_diag_params *p, struct certs_findings *fs)
{
    return certs_inspect_diag_run(p, fs, NULL);
}

/* ---- `ferry certs inspect` output ---- */

/* The fields shown for one certificate. */
struct cert_view {
    char subject[DIAG_NAME_MAX];
    char issuer[DIAG_NAME_MAX];
    char serial[128];
    char sans[1024];
    char ekus[128];
    char key[64];
    const char *sigalg;
    char not_before[64];
    char not_after[64];
    char not_before_rfc3339[32]; /* for --json */
    char not_after_rfc3339[32];
    int days_left;
    char sha256[128];
    bool ca;
    bool self_signed;
};

static void
view_fill(X509 *x, struct cert_view *v)
{
    int n, bits;

    (void)subj(x, v->subject, sizeof(v->subject));
    (void)name_str(X509_get_issuer_name(x), v->issuer, sizeof(v->issuer));
    (void)serial_str(x, v->serial, sizeof(v->serial));
    (void)sans_str(x, v->sans, sizeof(v->sans), &n);
    (void)ekus_str(x, v->ekus, sizeof(v->ekus));
    (void)key_desc(X509_get0_pubkey(x), v->key, sizeof(v->key), &bits);
    v->sigalg = OBJ_nid2sn(X509_get_signature_nid(x));
    if (v->sigalg == NULL) {
        v->sigalg = "unknown";
    }
    (void)tls_time_str(X509_get0_notBefore(x), v->not_before, sizeof(v->not_before));
    (void)tls_time_str(X509_get0_notAfter(x), v->not_after, sizeof(v->not_after));
    (void)tls_time_rfc3339(X509_get0_notBefore(x), v->not_before_rfc3339,
                           sizeof(v->not_before_rfc3339));
    (void)tls_time_rfc3339(X509_get0_notAfter(x), v->not_after_rfc3339,
                           sizeof(v->not_after_rfc3339));
    v->days_left = days_left(X509_get0_notAfter(x));
    (void)fingerprint(x, v->sha256, sizeof(v->sha256));
    v->ca = is_ca(x);
    v->self_signed = self_issued(x);
}

/* "${key}": true, false, or null when ${state} is negative (not known). */
static void
json_tristate(struct config_json *j, const char *key, int state)
{
    config_json_key(j, key);
    if (state < 0) {
        config_json_null(j);
    } else {
        config_json_bool(j, state == 1);
    }
}

/* One certificate's object, number ${index} in the file, as the next value of ${j}. */
static void
json_cert(struct config_json *j, int index, const struct cert_view *v)
{
    const struct {
        const char *key, *value;
    } text[] = {
        {"subject", v->subject},
        {"issuer", v->issuer},
        {"serial", v->serial},
        {"san", v->sans},
        {"eku", v->ekus},
        {"key", v->key},
        {"signature", v->sigalg},
        {"not_before", v->not_before_rfc3339},
        {"not_after", v->not_after_rfc3339},
    };

    config_json_begin_object(j);
    config_json_kv_int(j, "index", index);
    for (size_t k = 0; k < sizeof(text) / sizeof(text[0]); k++) {
        config_json_kv_string(j, text[k].key, text[k].value);
    }
    config_json_kv_int(j, "days_left", v->days_left);
    config_json_kv_string(j, "sha256", v->sha256);
    config_json_kv_bool(j, "ca", v->ca);
    config_json_kv_bool(j, "self_signed", v->self_signed);
    config_json_end_object(j);
}

static void
print_json(const struct certs_diag_params *p, const struct certs_diag_report *r,
           const struct certs_findings *fs, FILE *out)
{
    struct config_json j;
    struct cert_view v;
    int i;

    config_json_init_file(&j, out);
    config_json_begin_object(&j);
    config_json_kv_string(&j, "file", p->cert);
    config_json_key(&j, "certificates");
    config_json_begin_array(&j);
    for (i = 0; r->certs != NULL && i < sk_X509_num(r->certs); i++) {
        view_fill(sk_X509_value(r->certs, i), &v);
        json_cert(&j, i + 1, &v);
    }
    config_json_end_array(&j);
    config_json_kv_bool(&j, "order_ok", r->certs != NULL && r->order_ok);
    json_tristate(&j, "key_matches", r->key_state);
    json_tristate(&j, "chain_verifies", r->chain_state);
    config_json_kv_string(&j, "chain", r->chain_text);
    certs_findings_json(fs, &j);
    config_json_end_object(&j);
    (void)fputc('\n', out);
}

static void
print_text(const struct certs_diag_params *p, const struct certs_diag_report *r,
           const struct certs_findings *fs, bool color, FILE *out)
{
    struct cert_view v;
    int i, n = r->certs != NULL ? sk_X509_num(r->certs) : 0;
    size_t errors = certs_findings_count(fs, CERTS_SEV_ERROR);
    size_t warnings = certs_findings_count(fs, CERTS_SEV_WARNING);

    if (n > 0) {
        fprintf(out, "%s: %d certificate%s\n", p->cert, n, n == 1 ? "" : "s");
    }
    for (i = 0; i < n; i++) {
        view_fill(sk_X509_value(r->certs, i), &v);
        fprintf(out, "\n#%d %s\n", i + 1, v.subject);
        fprintf(out, "   issuer:      %s%s\n", v.issuer, v.self_signed ? " (self-signed)" : "");
        fprintf(out, "   serial:      %s\n", v.serial);
        fprintf(out, "   SAN:         %s\n", v.sans[0] != '\0' ? v.sans : "(none)");
        fprintf(out, "   EKU:         %s\n", v.ekus);
        fprintf(out, "   key:         %s\n", v.key);
        fprintf(out, "   signature:   %s\n", v.sigalg);
        fprintf(out, "   valid:       %s to %s (%d day%s %s)\n", v.not_before, v.not_after,
                v.days_left < 0 ? -v.days_left : v.days_left,
                (v.days_left == 1 || v.days_left == -1) ? "" : "s",
                v.days_left < 0 ? "ago" : "left");
        fprintf(out, "   SHA-256:     %s\n", v.sha256);
        fprintf(out, "   CA:          %s\n", v.ca ? "yes" : "no");
    }
    if (n > 0) {
        (void)fputc('\n', out);
        if (n > 1) {
            fprintf(out, "order:   %s\n",
                    r->order_ok ? "ok (leaf first, each next certificate its issuer)"
                                : "WRONG (see chain-order below)");
        }
        if (r->key_state >= 0) {
            fprintf(out, "key:     %s %s\n", p->key,
                    r->key_state == 1 ? "matches the certificate" : "DOES NOT match");
        }
        if (r->chain_state >= 0) {
            fprintf(out, "chain:   %s\n", r->chain_text);
            fprintf(out, "verify:  %s against %s\n", r->chain_state == 1 ? "ok" : "FAILED", p->ca);
        }
        if (p->name != NULL) {
            fprintf(out, "name:    %s %s\n", p->name,
                    certs_findings_find(fs, "san-mismatch", NULL) == NULL ? "is covered by the SAN"
                                                                          : "is NOT covered");
        }
    }
    if (fs->n > 0) {
        (void)fputc('\n', out);
        certs_findings_print(fs, color, out);
    }
    fprintf(out, "%s%zu error%s, %zu warning%s\n", fs->n > 0 ? "\n" : "", errors,
            errors == 1 ? "" : "s", warnings, warnings == 1 ? "" : "s");
}

/*
 * certs_inspect(p, json, color, out):
 * Diagnose ${p}, then print the certificates and the findings.  Returns 0 when no finding is
 * an error, else 1.
 */
int
certs_inspect(const struct certs_diag_params *p, bool json, bool color, FILE *out)
{
    struct certs_findings fs = {0};
    struct certs_diag_report r;
    int rc;

    memset(&r, 0, sizeof(r));
    if (certs_inspect_diag_run(p, &fs, &r) != 0) {
        (void)certs_findings_add(&fs, "out-of-memory", CERTS_SEV_ERROR, NULL, 0, 0,
                                 "out of memory: the diagnosis is incomplete", "");
    }
    if (json) {
        print_json(p, &r, &fs, out);
    } else {
        print_text(p, &r, &fs, color, out);
    }
    rc = certs_findings_count(&fs, CERTS_SEV_ERROR) > 0 ? 1 : 0;
    certs_inspect_report_clear(&r);
    certs_findings_clear(&fs);
    return rc;
}
