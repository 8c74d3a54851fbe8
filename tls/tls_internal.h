/*
 * tls_internal.h: helpers shared by the files of tls/ (not part of the public API).
 */
#ifndef FERRY_TLS_INTERNAL_H
#define FERRY_TLS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tls.h"

/* The verify_depth of a context whose tls_ctx_params.verify_depth is <= 0. */
#define TLS_DEFAULT_VERIFY_DEPTH 4

/*
 * tls_errf(err, errlen, fmt, ...):
 * Write a message to ${err} when there is room for one (${err} may be NULL).
 */
void tls_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

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

/* ---- tls_file.c ---- */

/*
 * tls_file_fopen(path, why, whylen):
 * tls_file_open_regular() as a stdio stream ("rb"), or NULL with the reason in ${why}.
 */
FILE *tls_file_fopen(const char *path, char *why, size_t whylen);

/*
 * tls_file_read_bio(what, path, err, errlen):
 * The whole file ${path} (the setting ${what}, for messages) in a memory BIO, read through
 * tls_file_open_regular() and bounded in size, so that OpenSSL parses memory and never opens the
 * path itself.  Returns the BIO (caller frees; its buffer is cleared when freed), or NULL with
 * the reason in ${err}.
 */
BIO *tls_file_read_bio(const char *what, const char *path, char *err, size_t errlen);

/*
 * tls_file_is_pem(path):
 * Does ${path} look like PEM (a "-----BEGIN " line early on)?  DER and PKCS#12 do not.
 */
bool tls_file_is_pem(const char *path);

/* ---- tls_tickets.c ---- */

/*
 * The ticket keys of the current and the previous period, kept by one inbound context for its
 * one thread (no lock): derived again when the period changes, wiped when the context goes.
 */
struct tls_ticket_cache {
    bool valid;
    bool has_prev; /* false in period 0 */
    struct tls_ticket_keys cur;
    struct tls_ticket_keys prev;
};

/*
 * tls_tickets_cache_select(t, cache, now, name, out):
 * tls_tickets_select() through ${cache}: keys are derived again only when the period changes.
 * *${out} points into ${cache}.  Returns 1 (current), 2 (previous: renew), 0 (unknown) or -1.
 */
int tls_tickets_cache_select(const struct tls_tickets *t, struct tls_ticket_cache *cache,
                             time_t now, const unsigned char *name, struct tls_ticket_keys **out);

/* tls_tickets_cache_clear(cache): wipe the keys held in ${cache}. */
void tls_tickets_cache_clear(struct tls_ticket_cache *cache);

/* tls_tickets_ref(t): one more reference to ${t} (NULL stays NULL).  Returns ${t}. */
struct tls_tickets *tls_tickets_ref(struct tls_tickets *t);

/* tls_tickets_cipher(t): the ticket cipher of ${t} (AES-256-CBC), valid as long as ${t}. */
const EVP_CIPHER *tls_tickets_cipher(const struct tls_tickets *t);

/* ---- tls_session.c ---- */

/*
 * The session state of one context (tls_ctx.c), used by its one worker thread (no lock).
 * CLIENT: the newest session of our one peer, offered by tls_ssl_new().  SERVER with session
 * resumption: the process's ticket keys (one reference) and this context's cache of the
 * current and previous period's keys.
 */
struct tls_session_state {
    SSL_SESSION *session;
    struct tls_tickets *tickets;
    struct tls_ticket_cache ticket_cache;
};

/*
 * tls_session_setup(ctx, p, st, err, errlen):
 * Set up session resumption on ${ctx} for the role and settings of ${p}, with ${st} (the
 * context's session state; its tickets already referenced): the session id context of a
 * server, stateless tickets or OpenSSL's cache, the ticket age bound, the client's one-session
 * cache.  The callbacks find ${st} through tls_ctx_session_state().  Returns 0, or -1 with
 * ${err}.
 */
int tls_session_setup(SSL_CTX *ctx, const struct tls_ctx_params *p,
                      const struct tls_session_state *st, char *err, size_t errlen);

/* tls_session_state_clear(st): free what ${st} holds (session, ticket keys and cache). */
void tls_session_state_clear(struct tls_session_state *st);

/* ---- tls_ctx.c ---- */

/*
 * tls_ctx_session_state(ssl):
 * The session state of the context ${ssl} was made from, or NULL when it is not one of ours.
 */
struct tls_session_state *tls_ctx_session_state(const SSL *ssl);

/*
 * tls_ctx_result(ssl):
 * The struct tls_verify_result attached to ${ssl} (tls_ssl_new(), tls_ssl_set_result()), or
 * NULL.
 */
struct tls_verify_result *tls_ctx_result(const SSL *ssl);

#endif /* FERRY_TLS_INTERNAL_H */
