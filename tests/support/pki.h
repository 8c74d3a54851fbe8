/*
 * pki: an in-process test PKI built with the OpenSSL API (no openssl CLI, no network).
 *
 * Make keys, CAs, intermediates and leaves with chosen EKU, SANs, validity and
 * basicConstraints, CRLs, and write them as PEM (or DER) files.  Certificates are always
 * made at run time into a scratch directory (pki_dir()), never committed.
 *
 *     struct pki_cert *root = pki_cert_new(&(struct pki_opts){.cn = "Root CA", .ca = true}, NULL);
 *     struct pki_cert *leaf = pki_cert_new(&(struct pki_opts){
 *         .cn = "node1.test", .dns = (const char *[]){"node1.test", NULL}}, root);
 *     pki_write_chain(path, leaf, NULL);
 *     pki_write_key(keypath, leaf, NULL);
 *
 * Errors: functions return NULL / -1 and leave OpenSSL's reasons on the error queue; tests
 * assert on the return value.  Everything a function returns is owned by the caller.
 */
#ifndef FERRY_TEST_PKI_H
#define FERRY_TEST_PKI_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

enum pki_key_type {
    PKI_KEY_EC = 0,  /* ECDSA P-256 (default) */
    PKI_KEY_RSA2048, /* RSA 2048 */
    PKI_KEY_RSA1024, /* RSA 1024: a weak key, for checks that must refuse it */
};

/* extendedKeyUsage of a leaf.  CAs (pki_opts.ca) never get one. */
enum pki_eku {
    PKI_EKU_BOTH = 0, /* serverAuth, clientAuth (default, like `ferry certs issue`) */
    PKI_EKU_SERVER,   /* serverAuth only */
    PKI_EKU_CLIENT,   /* clientAuth only */
    PKI_EKU_NONE,     /* no extendedKeyUsage extension at all */
};

struct pki_opts {
    const char *cn;          /* subject commonName; NULL = none */
    const char *org;         /* subject organizationName; NULL = none */
    const char *const *dns;  /* NULL-terminated DNS SANs, or NULL */
    const char *const *ips;  /* NULL-terminated IP SANs ("10.0.0.1", "::1"), or NULL */
    const char *const *uris; /* NULL-terminated URI SANs ("spiffe://td/x"), or NULL */
    enum pki_eku eku;
    bool ca;                   /* CA:TRUE (critical) and keyUsage keyCertSign, cRLSign */
    bool no_basic_constraints; /* omit basicConstraints (CA or not) */
    long not_before;           /* seconds from now; 0 = -3600 (one hour ago) */
    long not_after;            /* seconds from now; 0 = +30 days */
    enum pki_key_type key_type;
    EVP_PKEY *key; /* sign this key (a reference is taken) instead of making a new one */
};

/* A certificate and its private key. */
struct pki_cert {
    X509 *x509;
    EVP_PKEY *key;
};

/*
 * pki_key_new(type):
 * A new private key of ${type}.  Returns it (free with EVP_PKEY_free()), or NULL.
 */
EVP_PKEY *pki_key_new(enum pki_key_type type);

/*
 * pki_cert_new(o, issuer):
 * A certificate described by ${o}, signed (SHA-256) by ${issuer}, or self-signed when
 * ${issuer} is NULL.  ${issuer} need not be a CA (to test "issuer is not a CA").  It gets a
 * random serial, subject/authority key identifiers, and for leaves keyUsage
 * digitalSignature (+ keyEncipherment for RSA).  Returns it (free with pki_cert_free()), or
 * NULL.
 */
struct pki_cert *pki_cert_new(const struct pki_opts *o, const struct pki_cert *issuer);

/* pki_cert_free(c): free ${c}; NULL is a no-op. */
void pki_cert_free(struct pki_cert *c);

/*
 * pki_crl_new(ca, last_update, next_update, revoked...):
 * A CRL signed by ${ca}, lastUpdate/nextUpdate in seconds from now (use a negative
 * next_update for an expired CRL), revoking each struct pki_cert * of the NULL-terminated
 * list.  Returns it (free with X509_CRL_free()), or NULL.
 */
X509_CRL *pki_crl_new(const struct pki_cert *ca, long last_update, long next_update, ...);

/*
 * pki_dir(name, buf, len):
 * Create (mkdir -p) the scratch directory $FERRY_TEST_TMP/${name}, or
 * /tmp/ferry-test-${name}-<pid> when FERRY_TEST_TMP is unset, and write its path to ${buf}.
 * Returns ${buf}, or NULL.
 */
const char *pki_dir(const char *name, char *buf, size_t len);

/*
 * pki_path(buf, len, dir, file):
 * "${dir}/${file}" into ${buf}.  Returns ${buf} (truncation aborts the test run via NULL).
 */
const char *pki_path(char *buf, size_t len, const char *dir, const char *file);

/*
 * pki_write_chain(path, cert...):
 * Write the NULL-terminated list of struct pki_cert * as PEM certificates to ${path}, in
 * order (leaf first, then intermediates; or a CA bundle).  Returns 0 or -1.
 */
int pki_write_chain(const char *path, ...);

/*
 * pki_write_key(path, c, passphrase):
 * Write ${c}'s private key to ${path} as PKCS#8 PEM, encrypted with AES-256-CBC under
 * ${passphrase} unless it is NULL.  Mode 0600.  Returns 0 or -1.
 */
int pki_write_key(const char *path, const struct pki_cert *c, const char *passphrase);

/*
 * pki_write_der(path, c):
 * Write ${c}'s certificate to ${path} as DER (for "not PEM" tests).  Returns 0 or -1.
 */
int pki_write_der(const char *path, const struct pki_cert *c);

/*
 * pki_write_crls(path, crl...):
 * Write the NULL-terminated list of X509_CRL * to ${path} as PEM.  Returns 0 or -1.
 */
int pki_write_crls(const char *path, ...);

/*
 * pki_write_text(path, text):
 * Write ${text} to ${path} as is (passphrase files, garbage files).  Mode 0600.
 * Returns 0 or -1.
 */
int pki_write_text(const char *path, const char *text);

#endif /* FERRY_TEST_PKI_H */
