/*
 * certs_ca.c: `ferry certs init-ca`: a self-signed private CA.
 */
#include <stddef.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/safestack.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "certs.h"
#include "certs_internal.h"

/*
 * certs_ca_init(p, err, errlen):
 * Make a self-signed CA (basicConstraints critical CA:TRUE, keyUsage keyCertSign+cRLSign,
 * subject key identifier).  Refuses to overwrite an existing DIR/ca.key.
 * Returns 0, or -1 with the reason in ${err}.
 */
int
certs_ca_init(const struct certs_ca_params *p, char *err, size_t errlen)
{
    char crt_path[CERTS_PATH_MAX];
    char key_path[CERTS_PATH_MAX];
    const char *name;
    EVP_PKEY *key;
    X509 *x;
    STACK_OF(X509) *one = NULL;
    int days;

    if (p == NULL || p->dir == NULL || p->dir[0] == '\0') {
        certs_err(err, errlen, "no CA directory given");
        goto err0;
    }
    name = (p->name != NULL) ? p->name : CERTS_DEFAULT_CA_NAME;
    if (certs_x509_check_days(p->days, CERTS_DEFAULT_CA_DAYS, &days, err, errlen) != 0) {
        goto err0;
    }
    if (certs_file_path(crt_path, sizeof(crt_path), p->dir, "ca.crt", err, errlen) != 0 ||
        certs_file_path(key_path, sizeof(key_path), p->dir, "ca.key", err, errlen) != 0) {
        goto err0;
    }

    /* A CA key is the root of every certificate it signed: never replace one silently. */
    if (certs_file_exists(key_path)) {
        certs_err(err, errlen, "%s already exists; refusing to overwrite a CA key", key_path);
        goto err0;
    }
    if (certs_file_mkdir(p->dir, err, errlen) != 0) {
        goto err0;
    }

    if ((key = certs_x509_keygen(p->key_type, err, errlen)) == NULL) {
        goto err0;
    }
    if ((x = certs_x509_new(name, key, days, err, errlen)) == NULL) {
        goto err1;
    }
    if (X509_set_issuer_name(x, X509_get_subject_name(x)) != 1) {
        certs_err_ossl(err, errlen, "cannot set the CA's issuer name");
        goto err2;
    }
    if (certs_x509_add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE", err, errlen) != 0 ||
        certs_x509_add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign", err, errlen) != 0 ||
        certs_x509_add_ext(x, x, NID_subject_key_identifier, "hash", err, errlen) != 0) {
        goto err2;
    }
    if (certs_x509_sign(x, key, err, errlen) != 0) {
        goto err2;
    }

    /*
     * Certificate first: if writing the key then fails, the stray ca.crt is useless but
     * harmless, and a rerun replaces it (only ca.key is protected from overwriting).
     */
    if ((one = sk_X509_new_null()) == NULL || sk_X509_push(one, x) <= 0) {
        certs_err_ossl(err, errlen, "out of memory");
        goto err3;
    }
    if (certs_file_write_certs(crt_path, one, err, errlen) != 0) {
        goto err3;
    }
    if (certs_file_write_key(key_path, key, err, errlen) != 0) {
        goto err3;
    }

    /* Success!  ${one} only borrowed ${x}. */
    sk_X509_free(one);
    X509_free(x);
    EVP_PKEY_free(key);
    return 0;

err3:
    sk_X509_free(one);
err2:
    X509_free(x);
err1:
    EVP_PKEY_free(key);
err0:
    return -1;
}
