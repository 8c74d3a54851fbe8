/*
 * certs_x509.c: keys and certificate skeletons: key generation, a new certificate with its
 * validity, extensions, signing, dates as text (certs_x509_*).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "certs.h"
#include "certs_internal.h"

/* Random bytes in a serial number: 128 bits, the top one cleared to keep it positive. */
#define SERIAL_BYTES 16

/*
 * certs_x509_check_days(days, deflt, out, err, errlen):
 * Store ${days} (or ${deflt} when it is 0) in *${out} if within CERTS_DAYS_MIN..MAX.
 * Returns 0 or -1.
 */
int
certs_x509_check_days(int days, int deflt, int *out, char *err, size_t errlen)
{
    if (days == 0) {
        days = deflt;
    }
    if (days < CERTS_DAYS_MIN || days > CERTS_DAYS_MAX) {
        certs_err(err, errlen, "validity of %d days is out of range (%d to %d)", days,
                  CERTS_DAYS_MIN, CERTS_DAYS_MAX);
        return -1;
    }
    *out = days;
    return 0;
}

/*
 * certs_x509_key_type_str(type):
 * "EC P-256" or "RSA 3072" (static text).
 */
const char *
certs_x509_key_type_str(enum certs_key_type type)
{
    return type == CERTS_KEY_RSA ? "RSA 3072" : "EC P-256";
}

/*
 * certs_x509_keygen(type, err, errlen):
 * Generate a private key of ${type}.  Returns the key (caller frees) or NULL.
 */
EVP_PKEY *
certs_x509_keygen(enum certs_key_type type, char *err, size_t errlen)
{
    EVP_PKEY *key;

    ERR_clear_error();
    switch (type) {
    case CERTS_KEY_EC:
        key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        break;
    case CERTS_KEY_RSA:
        key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072);
        break;
    default:
        certs_err(err, errlen, "unknown key type %d", (int)type);
        return NULL;
    }
    if (key == NULL) {
        certs_err_ossl(err, errlen, "cannot generate an %s key", certs_x509_key_type_str(type));
    }
    return key;
}

/* Give ${x} a random positive 128-bit serial number (RFC 5280 allows up to 20 octets). */
static int
set_random_serial(X509 *x)
{
    unsigned char rnd[SERIAL_BYTES];
    BIGNUM *bn;
    ASN1_INTEGER *serial;
    int ok;

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        return -1;
    }
    /* Clear the top bit (positive) and set the next (never a short or zero serial). */
    rnd[0] = (unsigned char)((rnd[0] & 0x7f) | 0x40);
    if ((bn = BN_bin2bn(rnd, sizeof(rnd), NULL)) == NULL) {
        return -1;
    }
    serial = BN_to_ASN1_INTEGER(bn, NULL);
    BN_free(bn);
    if (serial == NULL) {
        return -1;
    }
    ok = X509_set_serialNumber(x, serial);
    ASN1_INTEGER_free(serial);
    return ok == 1 ? 0 : -1;
}

/*
 * certs_x509_new(cn, key, days, err, errlen):
 * Start a v3 certificate: random 128-bit positive serial, subject CN=${cn}, public key of
 * ${key}, valid from now - CERTS_BACKDATE_SECONDS to now + ${days}.  The caller sets the
 * issuer, adds extensions and signs.  Returns the certificate (caller frees) or NULL.
 */
X509 *
certs_x509_new(const char *cn, EVP_PKEY *key, int days, char *err, size_t errlen)
{
    X509 *x;
    X509_NAME *subject;
    size_t cnlen = strlen(cn);

    if (cnlen == 0 || cnlen > CERTS_CN_MAX) {
        certs_err(err, errlen, "name \"%s\" must be 1 to %d characters to fit a common name", cn,
                  CERTS_CN_MAX);
        goto err0;
    }
    ERR_clear_error();
    if ((x = X509_new()) == NULL) {
        goto err1;
    }
    if (X509_set_version(x, X509_VERSION_3) != 1) {
        goto err2;
    }
    if (set_random_serial(x) != 0) {
        goto err2;
    }
    if ((subject = X509_get_subject_name(x)) == NULL) {
        goto err2;
    }
    if (X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                   0) != 1) {
        goto err2;
    }
    if (X509_set_pubkey(x, key) != 1) {
        goto err2;
    }
    if (X509_gmtime_adj(X509_getm_notBefore(x), -CERTS_BACKDATE_SECONDS) == NULL) {
        goto err2;
    }
    if (X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL) == NULL) {
        goto err2;
    }

    /* Success! */
    return x;

err2:
    X509_free(x);
err1:
    certs_err_ossl(err, errlen, "cannot build the certificate for \"%s\"", cn);
err0:
    return NULL;
}

/*
 * certs_x509_add_ext(x, issuer, nid, value, err, errlen):
 * Add the extension ${nid} written in OpenSSL's configuration syntax (${value}, e.g.
 * "critical,CA:TRUE") to ${x}; ${issuer} is the signing certificate (${x} itself when
 * self-signed), needed for the key identifiers.  Returns 0 or -1.
 */
int
certs_x509_add_ext(X509 *x, X509 *issuer, int nid, const char *value, char *err, size_t errlen)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;

    ERR_clear_error();
    memset(&ctx, 0, sizeof(ctx));
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    if ((ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value)) == NULL) {
        goto err0;
    }
    if (X509_add_ext(x, ext, -1) != 1) {
        goto err1;
    }

    /* Success!  X509_add_ext() stored a copy. */
    X509_EXTENSION_free(ext);
    return 0;

err1:
    X509_EXTENSION_free(ext);
err0:
    certs_err_ossl(err, errlen, "cannot add extension %s = %s", OBJ_nid2sn(nid), value);
    return -1;
}

/*
 * certs_x509_sign(x, key, err, errlen):
 * Sign ${x} with ${key} and SHA-256 (no digest for EdDSA keys, which hash internally).
 * Returns 0 or -1.
 */
int
certs_x509_sign(X509 *x, EVP_PKEY *key, char *err, size_t errlen)
{
    const EVP_MD *md = EVP_sha256();

    /* An existing CA may hold an Ed25519/Ed448 key; those take no separate digest. */
    if (EVP_PKEY_is_a(key, "ED25519") || EVP_PKEY_is_a(key, "ED448")) {
        md = NULL;
    }
    ERR_clear_error();
    if (X509_sign(x, key, md) <= 0) {
        certs_err_ossl(err, errlen, "cannot sign the certificate");
        return -1;
    }
    return 0;
}

/*
 * certs_x509_date_str(t, buf, len):
 * Write ${t} as YYYY-MM-DD (UTC) into ${buf}.  Returns 0 or -1.
 */
int
certs_x509_date_str(const ASN1_TIME *t, char *buf, size_t len)
{
    struct tm tm;

    if (ASN1_TIME_to_tm(t, &tm) != 1) {
        return -1;
    }
    return strftime(buf, len, "%Y-%m-%d", &tm) == 0 ? -1 : 0;
}
