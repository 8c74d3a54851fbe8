/*
 * pki.c: the in-process test PKI (see pki.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "pki.h"

#define DEFAULT_NOT_BEFORE (-3600L)
#define DEFAULT_NOT_AFTER  (30L * 24 * 3600)

/*
 * pki_key_new(type):
 * A new private key of ${type}.  Returns it (free with EVP_PKEY_free()), or NULL.
 */
EVP_PKEY *
pki_key_new(enum pki_key_type type)
{
    switch (type) {
    case PKI_KEY_RSA2048:
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    case PKI_KEY_RSA1024:
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    case PKI_KEY_EC:
    default:
        return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    }
}

/* Add extension ${nid} with OpenSSL's config syntax ${value} ("critical,CA:TRUE"). */
static int
add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, v3, nid, value);
    int ok;

    if (ext == NULL) {
        return -1;
    }
    ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? 0 : -1;
}

/* Append "PREFIX:item" for each item of the NULL-terminated ${list} to buf, comma-separated. */
static int
san_append(char *buf, size_t len, const char *prefix, const char *const *list)
{
    size_t pos = strlen(buf);
    int n;

    for (; list != NULL && *list != NULL; list++) {
        n = snprintf(buf + pos, len - pos, "%s%s:%s", pos > 0 ? "," : "", prefix, *list);
        if (n < 0 || (size_t)n >= len - pos) {
            return -1;
        }
        pos += (size_t)n;
    }
    return 0;
}

/* A random positive 63-bit serial number. */
static int
set_serial(X509 *x)
{
    unsigned char rnd[8];
    BIGNUM *bn;
    int ok = -1;

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        return -1;
    }
    rnd[0] &= 0x7f;
    rnd[0] |= 0x01;
    if ((bn = BN_bin2bn(rnd, sizeof(rnd), NULL)) != NULL &&
        BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL) {
        ok = 0;
    }
    BN_free(bn);
    return ok;
}

static int
set_name(X509_NAME *name, const struct pki_opts *o)
{
    if (o->org != NULL &&
        X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)o->org, -1, -1,
                                   0) != 1) {
        return -1;
    }
    if (o->cn != NULL && X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                                    (const unsigned char *)o->cn, -1, -1, 0) != 1) {
        return -1;
    }
    return 0;
}

/*
 * pki_cert_new(o, issuer):
 * A certificate described by ${o}, signed by ${issuer} (self-signed when NULL).  Returns it,
 * or NULL.
 */
struct pki_cert *
pki_cert_new(const struct pki_opts *o, const struct pki_cert *issuer)
{
    static const char *const eku_values[] = {
        [PKI_EKU_BOTH] = "serverAuth,clientAuth",
        [PKI_EKU_SERVER] = "serverAuth",
        [PKI_EKU_CLIENT] = "clientAuth",
        [PKI_EKU_NONE] = NULL,
    };
    struct pki_cert *c;
    X509V3_CTX v3;
    X509 *x;
    char san[2048] = "";
    long nb = o->not_before != 0 ? o->not_before : DEFAULT_NOT_BEFORE;
    long na = o->not_after != 0 ? o->not_after : DEFAULT_NOT_AFTER;
    bool rsa;

    if ((c = calloc(1, sizeof(*c))) == NULL) {
        goto err0;
    }
    if (o->key != NULL) {
        if (EVP_PKEY_up_ref(o->key) != 1) {
            goto err1;
        }
        c->key = o->key;
    } else if ((c->key = pki_key_new(o->key_type)) == NULL) {
        goto err1;
    }
    rsa = EVP_PKEY_is_a(c->key, "RSA");
    if ((c->x509 = x = X509_new()) == NULL) {
        goto err1;
    }
    if (X509_set_version(x, X509_VERSION_3) != 1 || set_serial(x) != 0 ||
        X509_time_adj_ex(X509_getm_notBefore(x), 0, nb, NULL) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(x), 0, na, NULL) == NULL ||
        X509_set_pubkey(x, c->key) != 1 || set_name(X509_get_subject_name(x), o) != 0 ||
        X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer->x509)
                                               : X509_get_subject_name(x)) != 1) {
        goto err1;
    }

    X509V3_set_ctx(&v3, issuer != NULL ? issuer->x509 : x, x, NULL, NULL, 0);
    if (!o->no_basic_constraints &&
        add_ext(x, &v3, NID_basic_constraints, o->ca ? "critical,CA:TRUE" : "critical,CA:FALSE") !=
            0) {
        goto err1;
    }
    if (add_ext(x, &v3, NID_key_usage,
                o->ca ? "critical,keyCertSign,cRLSign"
                : rsa ? "critical,digitalSignature,keyEncipherment"
                      : "critical,digitalSignature") != 0) {
        goto err1;
    }
    if (!o->ca && (unsigned)o->eku < sizeof(eku_values) / sizeof(eku_values[0]) &&
        eku_values[o->eku] != NULL && add_ext(x, &v3, NID_ext_key_usage, eku_values[o->eku]) != 0) {
        goto err1;
    }
    if (san_append(san, sizeof(san), "DNS", o->dns) != 0 ||
        san_append(san, sizeof(san), "IP", o->ips) != 0 ||
        san_append(san, sizeof(san), "URI", o->uris) != 0 ||
        (san[0] != '\0' && add_ext(x, &v3, NID_subject_alt_name, san) != 0)) {
        goto err1;
    }
    if (add_ext(x, &v3, NID_subject_key_identifier, "hash") != 0 ||
        (issuer != NULL && add_ext(x, &v3, NID_authority_key_identifier, "keyid:always") != 0)) {
        goto err1;
    }
    if (X509_sign(x, issuer != NULL ? issuer->key : c->key, EVP_sha256()) <= 0) {
        goto err1;
    }
    return c;

err1:
    pki_cert_free(c);
err0:
    return NULL;
}

/* pki_cert_free(c): free ${c}; NULL is a no-op. */
void
pki_cert_free(struct pki_cert *c)
{
    if (c == NULL) {
        return;
    }
    X509_free(c->x509);
    EVP_PKEY_free(c->key);
    free(c);
}

/* Add one revoked entry for ${c}'s serial to ${crl}, dated ${when}. */
static int
revoke(X509_CRL *crl, const struct pki_cert *c, ASN1_TIME *when)
{
    X509_REVOKED *r;
    ASN1_INTEGER *serial;
    int ok = -1;

    if ((r = X509_REVOKED_new()) == NULL) {
        return -1;
    }
    /* X509_REVOKED_set_serialNumber() takes a non-const serial: give it a copy. */
    if ((serial = ASN1_INTEGER_dup(X509_get0_serialNumber(c->x509))) != NULL &&
        X509_REVOKED_set_serialNumber(r, serial) == 1 &&
        X509_REVOKED_set_revocationDate(r, when) == 1 && X509_CRL_add0_revoked(crl, r) == 1) {
        r = NULL;
        ok = 0;
    }
    ASN1_INTEGER_free(serial);
    X509_REVOKED_free(r);
    return ok;
}

/*
 * pki_crl_new(ca, last_update, next_update, revoked...):
 * A CRL signed by ${ca}, revoking each struct pki_cert * of the NULL-terminated list.
 * Returns it, or NULL.
 */
X509_CRL *
pki_crl_new(const struct pki_cert *ca, long last_update, long next_update, ...)
{
    const struct pki_cert *c;
    X509_CRL *crl;
    ASN1_TIME *last = NULL, *next = NULL;
    va_list ap;
    int ok = 0;

    if ((crl = X509_CRL_new()) == NULL) {
        return NULL;
    }
    if ((last = X509_time_adj_ex(NULL, 0, last_update, NULL)) == NULL ||
        (next = X509_time_adj_ex(NULL, 0, next_update, NULL)) == NULL ||
        X509_CRL_set_version(crl, X509_CRL_VERSION_2) != 1 ||
        X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca->x509)) != 1 ||
        X509_CRL_set1_lastUpdate(crl, last) != 1 || X509_CRL_set1_nextUpdate(crl, next) != 1) {
        goto done;
    }
    va_start(ap, next_update);
    ok = 1;
    while (ok && (c = va_arg(ap, struct pki_cert *)) != NULL) {
        ok = revoke(crl, c, last) == 0;
    }
    va_end(ap);
    if (ok && (X509_CRL_sort(crl) != 1 || X509_CRL_sign(crl, ca->key, EVP_sha256()) <= 0)) {
        ok = 0;
    }

done:
    ASN1_TIME_free(last);
    ASN1_TIME_free(next);
    if (!ok) {
        X509_CRL_free(crl);
        crl = NULL;
    }
    return crl;
}

/* mkdir -p ${path} (mode 0700). */
static int
mkdir_p(const char *path)
{
    char tmp[1024];
    size_t i, n = strlen(path);

    if (n == 0 || n >= sizeof(tmp)) {
        return -1;
    }
    memcpy(tmp, path, n + 1);
    for (i = 1; i <= n; i++) {
        if (tmp[i] == '/' || tmp[i] == '\0') {
            char saved = tmp[i];

            tmp[i] = '\0';
            if (mkdir(tmp, 0700) != 0 && errno != EEXIST) {
                return -1;
            }
            tmp[i] = saved;
        }
    }
    return 0;
}

/*
 * pki_dir(name, buf, len):
 * Create the scratch directory for ${name} and write its path to ${buf}.  Returns ${buf}, or
 * NULL.
 */
const char *
pki_dir(const char *name, char *buf, size_t len)
{
    const char *base = getenv("FERRY_TEST_TMP");
    int n;

    if (base != NULL && base[0] != '\0') {
        n = snprintf(buf, len, "%s/%s", base, name);
    } else {
        n = snprintf(buf, len, "/tmp/ferry-test-%s-%ld", name, (long)getpid());
    }
    if (n < 0 || (size_t)n >= len || mkdir_p(buf) != 0) {
        return NULL;
    }
    return buf;
}

/*
 * pki_path(buf, len, dir, file):
 * "${dir}/${file}" into ${buf}.  Returns ${buf}, or NULL when it does not fit.
 */
const char *
pki_path(char *buf, size_t len, const char *dir, const char *file)
{
    int n = snprintf(buf, len, "%s/%s", dir, file);

    return (n < 0 || (size_t)n >= len) ? NULL : buf;
}

/* Open ${path} for writing, truncated, with ${mode}, as a BIO. */
static BIO *
open_out(const char *path, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    BIO *bio;

    if (fd < 0) {
        return NULL;
    }
    if ((bio = BIO_new_fd(fd, BIO_CLOSE)) == NULL) {
        (void)close(fd);
    }
    return bio;
}

/*
 * pki_write_chain(path, cert...):
 * Write the NULL-terminated list of struct pki_cert * as PEM to ${path}.  Returns 0 or -1.
 */
int
pki_write_chain(const char *path, ...)
{
    const struct pki_cert *c;
    BIO *bio;
    va_list ap;
    int ok = 1;

    if ((bio = open_out(path, 0644)) == NULL) {
        return -1;
    }
    va_start(ap, path);
    while (ok && (c = va_arg(ap, struct pki_cert *)) != NULL) {
        ok = PEM_write_bio_X509(bio, c->x509) == 1;
    }
    va_end(ap);
    BIO_free(bio);
    return ok ? 0 : -1;
}

/*
 * pki_write_key(path, c, passphrase):
 * Write ${c}'s key as PKCS#8 PEM, encrypted under ${passphrase} unless NULL.  Returns 0 or -1.
 */
int
pki_write_key(const char *path, const struct pki_cert *c, const char *passphrase)
{
    BIO *bio;
    int ok;

    if ((bio = open_out(path, 0600)) == NULL) {
        return -1;
    }
    if (passphrase != NULL) {
        ok = PEM_write_bio_PrivateKey(bio, c->key, EVP_aes_256_cbc(),
                                      (const unsigned char *)passphrase, (int)strlen(passphrase),
                                      NULL, NULL);
    } else {
        ok = PEM_write_bio_PrivateKey(bio, c->key, NULL, NULL, 0, NULL, NULL);
    }
    BIO_free(bio);
    return ok == 1 ? 0 : -1;
}

/*
 * pki_write_der(path, c):
 * Write ${c}'s certificate as DER.  Returns 0 or -1.
 */
int
pki_write_der(const char *path, const struct pki_cert *c)
{
    BIO *bio;
    int ok;

    if ((bio = open_out(path, 0644)) == NULL) {
        return -1;
    }
    ok = i2d_X509_bio(bio, c->x509);
    BIO_free(bio);
    return ok == 1 ? 0 : -1;
}

/*
 * pki_write_crls(path, crl...):
 * Write the NULL-terminated list of X509_CRL * as PEM.  Returns 0 or -1.
 */
int
pki_write_crls(const char *path, ...)
{
    X509_CRL *crl;
    BIO *bio;
    va_list ap;
    int ok = 1;

    if ((bio = open_out(path, 0644)) == NULL) {
        return -1;
    }
    va_start(ap, path);
    while (ok && (crl = va_arg(ap, X509_CRL *)) != NULL) {
        ok = PEM_write_bio_X509_CRL(bio, crl) == 1;
    }
    va_end(ap);
    BIO_free(bio);
    return ok ? 0 : -1;
}

/*
 * pki_write_text(path, text):
 * Write ${text} to ${path} as is, mode 0600.  Returns 0 or -1.
 */
int
pki_write_text(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    size_t len = strlen(text), off = 0;
    ssize_t n;

    if (fd < 0) {
        return -1;
    }
    while (off < len) {
        n = write(fd, text + off, len - off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            (void)close(fd);
            return -1;
        }
        off += (size_t)n;
    }
    return close(fd) == 0 ? 0 : -1;
}
