/*
 * tls_cert.c: fields of a certificate in words, for explanations and `ferry certs`: its
 * extendedKeyUsage purposes and its key type.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls.h"
#include "tls_internal.h"

/*
 * tls_cert_ekus(cert, buf, len):
 * The EKU purposes of ${cert}, comma-separated ("" without the extension).  Returns ${buf}.
 */
const char *
tls_cert_ekus(X509 *cert, char *buf, size_t len)
{
    EXTENDED_KEY_USAGE *eku;
    size_t used = 0;
    int i;

    if (buf == NULL || len == 0) {
        return buf;
    }
    buf[0] = '\0';
    if (cert == NULL || (eku = X509_get_ext_d2i(cert, NID_ext_key_usage, NULL, NULL)) == NULL) {
        ERR_clear_error();
        return buf;
    }
    for (i = 0; i < sk_ASN1_OBJECT_num(eku); i++) {
        ASN1_OBJECT *o = sk_ASN1_OBJECT_value(eku, i);
        char oid[80];
        int nid = OBJ_obj2nid(o);
        int n;

        if (nid != NID_undef) {
            tls_errf(oid, sizeof(oid), "%s", OBJ_nid2sn(nid));
        } else if (OBJ_obj2txt(oid, sizeof(oid), o, 1) <= 0) {
            tls_errf(oid, sizeof(oid), "?");
        }
        n = snprintf(buf + used, len - used, "%s%s", used > 0 ? "," : "", oid);
        if (n < 0 || (size_t)n >= len - used) {
            break;
        }
        used += (size_t)n;
    }
    EXTENDED_KEY_USAGE_free(eku);
    return buf;
}

/*
 * tls_cert_key_type(cert, buf, len):
 * "EC P-256", "RSA 2048", "ED25519"; "?" when ${cert} has no readable key.  Returns ${buf}.
 */
const char *
tls_cert_key_type(X509 *cert, char *buf, size_t len)
{
    EVP_PKEY *pk;
    char group[64];
    const char *nist;
    int id;

    tls_errf(buf, len, "?");
    if (cert == NULL || (pk = X509_get0_pubkey(cert)) == NULL) {
        ERR_clear_error();
        return buf;
    }
    id = EVP_PKEY_get_base_id(pk);
    if (id == EVP_PKEY_EC) {
        if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                           NULL) != 1) {
            tls_errf(group, sizeof(group), "?");
        }
        nist = EC_curve_nid2nist(OBJ_sn2nid(group));
        tls_errf(buf, len, "EC %s", nist != NULL ? nist : group);
    } else if (id == EVP_PKEY_RSA || id == EVP_PKEY_RSA_PSS) {
        tls_errf(buf, len, "RSA %d", EVP_PKEY_get_bits(pk));
    } else if (id != NID_undef) {
        tls_errf(buf, len, "%s", OBJ_nid2sn(id));
    }
    ERR_clear_error();
    return buf;
}
