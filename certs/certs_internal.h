/*
 * certs_internal.h: helpers shared by the files of certs/ (not part of the module interface).
 *
 * Everything here follows certs.h: 0/-1 (or pointer/NULL) with the reason in the caller's
 * ${err} buffer, no printing, no exit().  OpenSSL objects returned are owned by the caller.
 */
#ifndef FERRY_CERTS_INTERNAL_H
#define FERRY_CERTS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "certs.h"

/* Room for any path we build: DIR + "/" + NAME + ".crt". */
#define CERTS_PATH_MAX 4096

/* Longest certificate common name (RFC 5280 ub-common-name). */
#define CERTS_CN_MAX 64

/* Allowed --days range. */
#define CERTS_DAYS_MIN 1
#define CERTS_DAYS_MAX 36500

/* Certificates start five minutes in the past to absorb clock skew between nodes. */
#define CERTS_BACKDATE_SECONDS (5 * 60)

/* ---- errors (certs_err.c) ---- */

/*
 * certs_err(err, errlen, fmt, ...):
 * Format a reason into ${err} (if not NULL).
 */
void certs_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * certs_err_ossl(err, errlen, fmt, ...):
 * Like certs_err(), then append the reasons on OpenSSL's error queue (oldest first) and
 * empty the queue, so a stale entry never blames a later step.
 */
void certs_err_ossl(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- files: paths, directories, atomic writes, PEM (certs_file.c) ---- */

/*
 * certs_file_path(buf, len, dir, file, err, errlen):
 * Join ${dir} and ${file} with one '/' into ${buf}.  Returns 0, or -1 if it does not fit.
 */
int certs_file_path(char *buf, size_t len, const char *dir, const char *file, char *err,
                    size_t errlen);

/*
 * certs_file_mkdir(dir, err, errlen):
 * Make sure ${dir} is a directory, creating it and any missing parents with mode 0700.
 * Existing directories keep their mode.  Returns 0 or -1.
 */
int certs_file_mkdir(const char *dir, char *err, size_t errlen);

/*
 * certs_file_exists(path):
 * Whether something (file, link, directory) exists at ${path}.
 */
bool certs_file_exists(const char *path);

/*
 * certs_file_same(a, b):
 * Whether ${a} and ${b} both exist and name the same file.
 */
bool certs_file_same(const char *a, const char *b);

/*
 * certs_file_write_key(path, key, err, errlen):
 * Write ${key} as an unencrypted PKCS#8 PEM file, mode 0600, atomically.  The PEM text is
 * cleansed from memory afterwards.  Returns 0 or -1.
 */
int certs_file_write_key(const char *path, EVP_PKEY *key, char *err, size_t errlen);

/*
 * certs_file_write_certs(path, certs, err, errlen):
 * Write the certificates ${certs} as PEM, in order, mode 0644, atomically.
 * Returns 0 or -1.
 */
int certs_file_write_certs(const char *path, const STACK_OF(X509) * certs, char *err,
                           size_t errlen);

/*
 * certs_file_read_certs(path, err, errlen):
 * Read every PEM certificate in ${path}, in file order.  Fails when there is none.
 * Returns the stack (caller frees with sk_X509_pop_free(.., X509_free)) or NULL.
 */
STACK_OF(X509) * certs_file_read_certs(const char *path, char *err, size_t errlen);

/*
 * certs_file_read_key(path, err, errlen):
 * Read an unencrypted PEM private key from ${path}; never prompts for a passphrase.
 * Returns the key (caller frees) or NULL.
 */
EVP_PKEY *certs_file_read_key(const char *path, char *err, size_t errlen);

/* ---- keys and certificates (certs_x509.c) ---- */

/*
 * certs_x509_check_days(days, deflt, out, err, errlen):
 * Store ${days} (or ${deflt} when it is 0) in *${out} if within CERTS_DAYS_MIN..MAX.
 * Returns 0 or -1.
 */
int certs_x509_check_days(int days, int deflt, int *out, char *err, size_t errlen);

/*
 * certs_x509_key_type_str(type):
 * "EC P-256" or "RSA 3072" (static text).
 */
const char *certs_x509_key_type_str(enum certs_key_type type);

/*
 * certs_x509_keygen(type, err, errlen):
 * Generate a private key of ${type}.  Returns the key (caller frees) or NULL.
 */
EVP_PKEY *certs_x509_keygen(enum certs_key_type type, char *err, size_t errlen);

/*
 * certs_x509_new(cn, key, days, err, errlen):
 * Start a v3 certificate: random 128-bit positive serial, subject CN=${cn}, public key of
 * ${key}, valid from now - CERTS_BACKDATE_SECONDS to now + ${days}.  The caller sets the
 * issuer, adds extensions and signs.  Returns the certificate (caller frees) or NULL.
 */
X509 *certs_x509_new(const char *cn, EVP_PKEY *key, int days, char *err, size_t errlen);

/*
 * certs_x509_add_ext(x, issuer, nid, value, err, errlen):
 * Add the extension ${nid} written in OpenSSL's configuration syntax (${value}, e.g.
 * "critical,CA:TRUE") to ${x}; ${issuer} is the signing certificate (${x} itself when
 * self-signed), needed for the key identifiers.  Returns 0 or -1.
 */
int certs_x509_add_ext(X509 *x, X509 *issuer, int nid, const char *value, char *err, size_t errlen);

/*
 * certs_x509_sign(x, key, err, errlen):
 * Sign ${x} with ${key} and SHA-256 (no digest for EdDSA keys, which hash internally).
 * Returns 0 or -1.
 */
int certs_x509_sign(X509 *x, EVP_PKEY *key, char *err, size_t errlen);

/*
 * certs_x509_date_str(t, buf, len):
 * Write ${t} as YYYY-MM-DD (UTC) into ${buf}.  Returns 0 or -1.
 */
int certs_x509_date_str(const ASN1_TIME *t, char *buf, size_t len);

/* ---- diagnosis (certs_finding.c, certs_inspect.c) ---- */

/* Days before expiry from which a certificate is reported as `cert-expiring`. */
#define CERTS_EXPIRING_DAYS 30

/*
 * What certs_inspect_diag_run() learnt besides the findings, for `certs inspect` to show.
 * Zero-initialise; release with certs_inspect_report_clear().
 */
struct certs_diag_report {
    STACK_OF(X509) * certs; /* the certificates of the cert file, in file order (owned) */
    bool order_ok;          /* leaf first, each next certificate the issuer of the one before */
    int key_state;          /* -1 not checked, 0 does not match, 1 matches */
    int chain_state;        /* -1 not checked (no CA bundle), 0 does not verify, 1 verifies */
    char chain_text[1024];  /* the path found: "CN=leaf <- CN=int (node.crt) <- CN=root
                               (ca.crt)", or why it stops */
};

/*
 * certs_inspect_diag_run(p, fs, report):
 * certs_inspect_diagnose() that also fills ${report} (may be NULL).  Returns 0, or -1 on OOM.
 */
int certs_inspect_diag_run(const struct certs_diag_params *p, struct certs_findings *fs,
                           struct certs_diag_report *report);

/*
 * certs_inspect_report_clear(r):
 * Free what ${r} owns and zero it.
 */
void certs_inspect_report_clear(struct certs_diag_report *r);

/*
 * certs_inspect_secret_mode(fs, path, what):
 * The one permission rule for a private key, a key passphrase file and the CouchDB
 * proxy-auth secret (${what} names which), stat()ed through symlinks: readable or writable
 * by others is key-permissions (error), by its group only key-group-readable (warning).
 * Appends at most one finding to ${fs}; NULL ${path} or a file that cannot be stat()ed adds
 * none.  Returns 0, or -1 on OOM.
 */
int certs_inspect_secret_mode(struct certs_findings *fs, const char *path, const char *what);

#endif /* FERRY_CERTS_INTERNAL_H */
