/*
 * fuzz_input.c: the line format of fuzz_input.h and the certificate built from it.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "fuzz_input.h"

/* The signing key, made on first use and kept for the life of the process. */
static EVP_PKEY *fz_key;

/* fz_check(cond, what): see fuzz_input.h. */
void
fz_check(bool cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz invariant broken: %s\n", what);
        abort();
    }
}

/* fz_printable(s, n): see fuzz_input.h. */
bool
fz_printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e) {
            return false;
        }
    }
    return true;
}

/* fz_input_parse(data, size, in): see fuzz_input.h. */
int
fz_input_parse(const uint8_t *data, size_t size, struct fz_input *in)
{
    size_t i = 0, out = 0;

    memset(in, 0, sizeof(*in));
    /* Decoding never makes a payload longer; one NUL per line at most. */
    if ((in->store = malloc(size + FZ_MAX_LINES + 1)) == NULL) {
        return -1;
    }
    while (i < size && in->n < FZ_MAX_LINES) {
        struct fz_line *l = &in->v[in->n++];

        l->tag = (char)data[i++];
        l->s = in->store + out;
        while (i < size && data[i] != '\n') {
            char c = (char)data[i++];

            if (c == '\\' && i < size && (data[i] == 'n' || data[i] == '0' || data[i] == '\\')) {
                c = data[i] == 'n' ? '\n' : data[i] == '0' ? '\0' : '\\';
                i++;
            }
            in->store[out++] = c;
        }
        l->len = (size_t)(in->store + out - l->s);
        in->store[out++] = '\0';
        i++; /* the newline */
    }
    return 0;
}

/* fz_input_free(in): see fuzz_input.h. */
void
fz_input_free(struct fz_input *in)
{
    free(in->store);
    in->store = NULL;
    in->n = 0;
}

/* fz_input_has(in, tag, c): see fuzz_input.h. */
bool
fz_input_has(const struct fz_input *in, char tag, char c)
{
    for (size_t i = 0; i < in->n; i++) {
        if (in->v[i].tag == tag && memchr(in->v[i].s, c, in->v[i].len) != NULL) {
            return true;
        }
    }
    return false;
}

/* Append a GENERAL_NAME of ${type} holding ${s} (an IA5String or an OCTET STRING). */
static int
add_gen(GENERAL_NAMES *gens, int type, const void *s, size_t n)
{
    GENERAL_NAME *g = GENERAL_NAME_new();
    ASN1_STRING *v = type == GEN_IPADD ? ASN1_OCTET_STRING_new() : ASN1_IA5STRING_new();

    if (g == NULL || v == NULL || ASN1_STRING_set(v, s, (int)n) != 1) {
        GENERAL_NAME_free(g);
        ASN1_STRING_free(v);
        return -1;
    }
    GENERAL_NAME_set0_value(g, type, v);
    if (sk_GENERAL_NAME_push(gens, g) <= 0) {
        GENERAL_NAME_free(g);
        return -1;
    }
    return 0;
}

/* Add the EKU extension of the K line (or the default serverAuth + clientAuth). */
static int
add_eku(X509 *x, const struct fz_input *in)
{
    static const char deflt[] = "sc";
    EXTENDED_KEY_USAGE *eku;
    const char *flags = deflt;
    size_t n = 2;
    int rc = -1;

    for (size_t i = 0; i < in->n; i++) {
        if (in->v[i].tag == 'K') {
            flags = in->v[i].s;
            n = in->v[i].len;
        }
    }
    if (n == 1 && flags[0] == 'n') {
        return 0;
    }
    if ((eku = sk_ASN1_OBJECT_new_null()) == NULL) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        int nid = flags[i] == 's'   ? NID_server_auth
                  : flags[i] == 'c' ? NID_client_auth
                  : flags[i] == 'a' ? NID_anyExtendedKeyUsage
                  : flags[i] == 'x' ? NID_code_sign
                                    : NID_undef;

        if (nid != NID_undef && sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(nid)) <= 0) {
            goto done;
        }
    }
    rc = X509_add1_ext_i2d(x, NID_ext_key_usage, eku, 0, 0) == 1 ? 0 : -1;
done:
    sk_ASN1_OBJECT_free(eku); /* the objects are OpenSSL's static ones */
    return rc;
}

/* fz_cert_build(in): see fuzz_input.h. */
X509 *
fz_cert_build(const struct fz_input *in)
{
    X509 *x = X509_new();
    X509_NAME *subj = X509_NAME_new();
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    unsigned char ip[16];

    if (fz_key == NULL && (fz_key = EVP_EC_gen("P-256")) == NULL) {
        goto fail;
    }
    if (x == NULL || subj == NULL || gens == NULL || X509_set_version(x, 2) != 1 ||
        ASN1_INTEGER_set(X509_get_serialNumber(x), 1) != 1 ||
        X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(x), 3600) == NULL || X509_set_pubkey(x, fz_key) != 1) {
        goto fail;
    }
    for (size_t i = 0; i < in->n; i++) {
        const struct fz_line *l = &in->v[i];
        const unsigned char *s = (const unsigned char *)l->s;
        int len = (int)l->len;
        int rc = 0;

        switch (l->tag) {
        case 'C':
            rc = X509_NAME_add_entry_by_NID(subj, NID_commonName, V_ASN1_UTF8STRING, s, len, -1, 0);
            break;
        case 'c':
            rc = X509_NAME_add_entry_by_NID(subj, NID_commonName, V_ASN1_BMPSTRING, s, len, -1, 0);
            break;
        case 'T':
            rc = X509_NAME_add_entry_by_NID(subj, NID_commonName, V_ASN1_T61STRING, s, len, -1, 0);
            break;
        case 'O':
            rc = X509_NAME_add_entry_by_NID(subj, NID_organizationName, V_ASN1_UTF8STRING, s, len,
                                            -1, 0);
            break;
        case 'D':
            rc = add_gen(gens, GEN_DNS, s, l->len) == 0;
            break;
        case 'U':
            rc = add_gen(gens, GEN_URI, s, l->len) == 0;
            break;
        case 'E':
            rc = add_gen(gens, GEN_EMAIL, s, l->len) == 0;
            break;
        case 'I':
            if (inet_pton(AF_INET, l->s, ip) == 1) {
                rc = add_gen(gens, GEN_IPADD, ip, 4) == 0;
            } else if (inet_pton(AF_INET6, l->s, ip) == 1) {
                rc = add_gen(gens, GEN_IPADD, ip, 16) == 0;
            } else {
                rc = add_gen(gens, GEN_IPADD, s, l->len) == 0;
            }
            break;
        default:
            rc = 1;
            break;
        }
        if (rc != 1) {
            goto fail;
        }
    }
    if (X509_set_subject_name(x, subj) != 1 || X509_set_issuer_name(x, subj) != 1 ||
        (sk_GENERAL_NAME_num(gens) > 0 &&
         X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, 0) != 1) ||
        add_eku(x, in) != 0 || X509_sign(x, fz_key, EVP_sha256()) <= 0) {
        goto fail;
    }
    X509_NAME_free(subj);
    GENERAL_NAMES_free(gens);
    return x;

fail:
    ERR_clear_error();
    X509_free(x);
    X509_NAME_free(subj);
    GENERAL_NAMES_free(gens);
    return NULL;
}
