/*
 * tls_internal.h: helpers shared by the files of tls/ (not part of the public API).
 */
#ifndef FERRY_TLS_INTERNAL_H
#define FERRY_TLS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/asn1.h>
#include <openssl/x509.h>

#include "tls.h"

/*
 * tls_time_str(t, buf, len):
 * Format ${t} as "2025-01-31 12:00:00 UTC" into ${buf}; "?" when it cannot be parsed.
 * Returns ${buf}.
 */
const char *tls_time_str(const ASN1_TIME *t, char *buf, size_t len);

/*
 * tls_subject_str(cert, buf, len):
 * The subject of ${cert} in RFC 2253 form, printable ASCII, into ${buf} ("" for NULL).
 * Returns ${buf}.
 */
const char *tls_subject_str(X509 *cert, char *buf, size_t len);

/*
 * tls_check_eku(cert, need_server_auth):
 * Rule 2 of CONTRACT.md §4 alone: TLS_REJECT_EKU_MISSING when ${cert} has no
 * extendedKeyUsage extension, TLS_REJECT_EKU_WRONG when it does not list serverAuth
 * (${need_server_auth}) or clientAuth, else TLS_REJECT_NONE.
 */
enum tls_reject tls_check_eku(X509 *cert, bool need_server_auth);

#endif /* FERRY_TLS_INTERNAL_H */
