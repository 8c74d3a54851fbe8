/*
 * tls_ctx.c: one SSL_CTX per listener, set up for its role, and the hooks that apply the
 * rules of CONTRACT.md §4 during the handshake.
 *
 * Lifetime: struct tls_ctx hangs off its SSL_CTX as ex_data and is freed by the ex_data free
 * callback when the last reference to the SSL_CTX goes (tls_ctx_free() drops ours, every SSL
 * holds one).  The verification and session callbacks therefore always see a live policy,
 * even when a reload freed the tls_ctx while old connections still handshake.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "tls.h"
#include "tls_internal.h"

/* TLS 1.2 suites: ECDHE with AEAD only.  TLS 1.3 keeps OpenSSL's default suites. */
#define TLS12_CIPHERS                                            \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* Longest passphrase we read from tls.key_passphrase_file. */
#define PASSPHRASE_MAX 1024

struct tls_ctx {
    SSL_CTX *ssl_ctx; /* holds this struct as ex_data: see the comment at the top */
    enum tls_role role;
    bool cn_fallback;
    bool client_cert_required;
    bool session_resumption;
    char *peer_host;    /* CLIENT: the host checked against the server's SAN */
    char *sni;          /* CLIENT: peer_host as sent in SNI; NULL for an IP literal */
    const char **allow; /* SERVER: n_allow entries pointing into allow_buf; NULL = any */
    char *allow_buf;
    size_t n_allow;
    struct tls_session_state sessions; /* the session and tickets of this context */
    /* For explanations only (tls_ctx_self_info()): our files and the lowest version. */
    char *cert_file;
    char *key_file;
    char *ca_file;
    int min_version;
};

/* What the passphrase callback needs: set up before the key is read, wiped after. */
struct passwd_state {
    char pass[PASSPHRASE_MAX];
    size_t passlen;
    bool have;  /* a tls.key_passphrase_file was read */
    bool asked; /* OpenSSL asked for a passphrase: the key is encrypted */
};

static CRYPTO_ONCE idx_once = CRYPTO_ONCE_STATIC_INIT;
static int ctx_idx = -1; /* SSL_CTX ex_data: struct tls_ctx, freed with the SSL_CTX */
static int ssl_idx = -1; /* SSL ex_data: struct tls_verify_result, owned by the caller */

static void
ctx_free_policy(struct tls_ctx *t)
{
    tls_session_state_clear(&t->sessions);
    free(t->cert_file);
    free(t->key_file);
    free(t->ca_file);
    free(t->allow);
    free(t->allow_buf);
    free(t->sni);
    free(t->peer_host);
    free(t);
}

/* CRYPTO_EX_free for ctx_idx: the SSL_CTX is going away, and our policy with it. */
static void
ctx_exdata_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    if (ptr != NULL) {
        ctx_free_policy(ptr);
    }
}

static void
idx_init(void)
{
    ctx_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, ctx_exdata_free);
    ssl_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/*
 * The passphrase callback of every context.  It hands OpenSSL the passphrase read from
 * tls.key_passphrase_file, or fails: OpenSSL must never fall back to prompting on a
 * terminal, which would hang a daemon.
 */
static int
passwd_cb(char *buf, int size, int rwflag, void *u)
{
    struct passwd_state *st = u;

    (void)rwflag;
    if (st == NULL) {
        return -1;
    }
    st->asked = true;
    if (!st->have || size < 0 || st->passlen > (size_t)size) {
        return -1;
    }
    memcpy(buf, st->pass, st->passlen);
    return (int)st->passlen;
}

/*
 * SSL_CTX_use_certificate_chain_file() from ${bio}: the first certificate is the leaf, every
 * following one goes into the chain.  Returns 1 or 0 (the reason on the error queue).
 */
static int
use_chain_bio(SSL_CTX *ctx, BIO *bio)
{
    X509 *x;
    unsigned long e;

    if ((x = PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL)) == NULL) {
        return 0;
    }
    if (SSL_CTX_use_certificate(ctx, x) != 1) {
        X509_free(x);
        return 0;
    }
    X509_free(x);
    if (SSL_CTX_clear_chain_certs(ctx) != 1) {
        return 0;
    }
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        /* add0: the context owns x from here on. */
        if (SSL_CTX_add0_chain_cert(ctx, x) != 1) {
            X509_free(x);
            return 0;
        }
    }
    /* The loop ends at end of file ("no start line") or on a damaged certificate. */
    e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) != ERR_LIB_PEM || ERR_GET_REASON(e) != PEM_R_NO_START_LINE) {
        return 0;
    }
    ERR_clear_error();
    return 1;
}

/*
 * Read the passphrase from ${path} into ${st}: the whole file, less one trailing "\n" or
 * "\r\n".  read(2), not stdio, so no copy stays behind in a stdio buffer.
 */
static int
read_passphrase(const char *path, struct passwd_state *st, char *err, size_t errlen)
{
    int fd;
    ssize_t n;
    size_t len = 0;
    char why[256];

    if ((fd = tls_file_open_regular(path, why, sizeof(why))) < 0) {
        tls_errf(err, errlen, "cannot read tls.key_passphrase_file %s: %s", path, why);
        goto err0;
    }
    /* One byte more than we accept, to tell "too long" from "exactly the limit". */
    while (len < sizeof(st->pass)) {
        n = read(fd, st->pass + len, sizeof(st->pass) - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            tls_errf(err, errlen, "cannot read tls.key_passphrase_file %s: %s", path,
                     strerror(errno));
            goto err1;
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;
    }
    if (len == sizeof(st->pass)) {
        tls_errf(err, errlen, "tls.key_passphrase_file %s is longer than %d bytes", path,
                 PASSPHRASE_MAX - 1);
        goto err1;
    }
    if (len > 0 && st->pass[len - 1] == '\n') {
        len--;
        if (len > 0 && st->pass[len - 1] == '\r') {
            len--;
        }
    }
    if (len == 0) {
        tls_errf(err, errlen, "tls.key_passphrase_file %s is empty", path);
        goto err1;
    }
    st->passlen = len;
    st->have = true;
    (void)close(fd);
    return 0;

err1:
    (void)close(fd);
    OPENSSL_cleanse(st->pass, sizeof(st->pass));
err0:
    return -1;
}

/* Copy the parameters our callbacks need into ${t}. */
static int
copy_policy(struct tls_ctx *t, const struct tls_ctx_params *p)
{
    size_t i, total = 0, off = 0;

    t->role = p->role;
    t->cn_fallback = p->cn_fallback;
    t->client_cert_required = p->client_cert_required;
    t->session_resumption = p->session_resumption;
    t->min_version = p->min_version >= TLS1_3_VERSION ? TLS1_3_VERSION : TLS1_2_VERSION;
    if (p->role == TLS_ROLE_SERVER && p->session_resumption) {
        t->sessions.tickets = tls_tickets_ref(p->tickets);
    }
    if ((p->cert_file != NULL && (t->cert_file = strdup(p->cert_file)) == NULL) ||
        (p->key_file != NULL && (t->key_file = strdup(p->key_file)) == NULL) ||
        (p->ca_file != NULL && (t->ca_file = strdup(p->ca_file)) == NULL)) {
        return -1;
    }
    if (p->role == TLS_ROLE_CLIENT && p->peer_host != NULL) {
        size_t n;

        if ((t->peer_host = strdup(p->peer_host)) == NULL) {
            return -1;
        }
        /* SNI carries a DNS name only, without the trailing dot of an absolute name. */
        if (!tls_name_is_ip(p->peer_host, NULL, NULL)) {
            if ((t->sni = strdup(p->peer_host)) == NULL) {
                return -1;
            }
            n = strlen(t->sni);
            if (n > 0 && t->sni[n - 1] == '.') {
                t->sni[n - 1] = '\0';
            }
        }
    }
    if (p->role == TLS_ROLE_SERVER && p->allow != NULL) {
        /* One block for the strings, one array of pointers into it (+1: never malloc(0)). */
        for (i = 0; i < p->n_allow; i++) {
            total += strlen(p->allow[i]) + 1;
        }
        if ((t->allow_buf = malloc(total + 1)) == NULL ||
            (t->allow = calloc(p->n_allow + 1, sizeof(*t->allow))) == NULL) {
            return -1;
        }
        for (i = 0; i < p->n_allow; i++) {
            size_t n = strlen(p->allow[i]) + 1;

            memcpy(t->allow_buf + off, p->allow[i], n);
            t->allow[i] = t->allow_buf + off;
            off += n;
        }
        t->n_allow = p->n_allow;
    }
    return 0;
}

/*
 * tls_ctx_session_state(ssl):
 * The session state of the context ${ssl} was made from, or NULL when it is not ours.
 */
struct tls_session_state *
tls_ctx_session_state(const SSL *ssl)
{
    struct tls_ctx *t = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_idx);

    return t != NULL ? &t->sessions : NULL;
}

/*
 * tls_ctx_result(ssl):
 * The struct tls_verify_result attached to ${ssl} (tls_ssl_new(), tls_ssl_set_result()), or
 * NULL.
 */
struct tls_verify_result *
tls_ctx_result(const SSL *ssl)
{
    return SSL_get_ex_data(ssl, ssl_idx);
}

/*
 * The chain check of every handshake (SSL_CTX_set_cert_verify_callback): OpenSSL's chain
 * building, then rules 2 and 3 on the leaf, in the order of CONTRACT.md §4.  The outcome goes
 * to the struct tls_verify_result attached by tls_ssl_new().  On a rejection the store's
 * error is set so that OpenSSL sends the fitting alert (bad_certificate, unsupported_
 * certificate, ...).  Returns 1 to accept, 0 to reject.
 */
static int
verify_cb(X509_STORE_CTX *sctx, void *arg)
{
    struct tls_ctx *t = arg;
    struct tls_verify_result scratch, *res = NULL;
    SSL *ssl = X509_STORE_CTX_get_ex_data(sctx, SSL_get_ex_data_X509_STORE_CTX_idx());
    X509 *leaf = X509_STORE_CTX_get0_cert(sctx);
    enum tls_reject r;
    int ok, err, depth;
    char subj[256], why[200];

    if (ssl != NULL) {
        res = SSL_get_ex_data(ssl, ssl_idx);
    }
    if (res == NULL) {
        res = &scratch;
        memset(res, 0, sizeof(*res));
    }
    /* A fresh verdict; what the peer said so far (first record, alerts) stays. */
    res->reject = TLS_REJECT_NONE;
    res->verified = false;
    memset(&res->peer, 0, sizeof(res->peer));

    /* Rule 1: the chain.  The SSL layer set up purpose ANY, so EKU is left to rule 2. */
    ERR_clear_error();
    ok = X509_verify_cert(sctx);
    if (ok <= 0) {
        err = X509_STORE_CTX_get_error(sctx);
        depth = X509_STORE_CTX_get_error_depth(sctx);
        if (ok < 0 || err == X509_V_OK) {
            /* An internal failure (OOM, no certificate): never let it pass as success. */
            (void)tls_error_string(why, sizeof(why));
            err = X509_V_ERR_UNSPECIFIED;
            X509_STORE_CTX_set_error(sctx, err);
        } else {
            (void)snprintf(why, sizeof(why), "%s", X509_verify_cert_error_string(err));
        }
        tls_peer_info_fill(leaf, t->cn_fallback, &res->peer);
        if (depth > 0) {
            (void)snprintf(
                res->peer.detail, sizeof(res->peer.detail), "%s; at depth %d: %s", why, depth,
                tls_subject_str(X509_STORE_CTX_get_current_cert(sctx), subj, sizeof(subj)));
        } else {
            (void)snprintf(res->peer.detail, sizeof(res->peer.detail), "%s", why);
        }
        res->peer.x509_error = err;
        res->peer.depth = depth > 0 ? depth : 0;
        tls_chain_note(sctx, &res->peer); /* a leaf sent alone: tls_chain_gap_describe() */
        res->reject = tls_reject_from_x509(err);
        return 0;
    }

    /* Rules 2 and 3 on the leaf: a client checks the server (serverAuth, peer host). */
    r = tls_check_leaf(
        leaf, t->role == TLS_ROLE_CLIENT, t->role == TLS_ROLE_CLIENT ? t->peer_host : NULL,
        t->role == TLS_ROLE_SERVER ? t->allow : NULL, t->n_allow, t->cn_fallback, &res->peer);
    res->reject = r;
    if (r != TLS_REJECT_NONE) {
        /* INVALID_PURPOSE -> unsupported_certificate alert; HOSTNAME_MISMATCH -> handshake_failure.
         */
        X509_STORE_CTX_set_current_cert(sctx, leaf);
        X509_STORE_CTX_set_error_depth(sctx, 0);
        X509_STORE_CTX_set_error(sctx, (r == TLS_REJECT_EKU_MISSING || r == TLS_REJECT_EKU_WRONG)
                                           ? X509_V_ERR_INVALID_PURPOSE
                                           : X509_V_ERR_HOSTNAME_MISMATCH);
        return 0;
    }
    res->verified = true;
    return 1;
}

/*
 * The info callback of every context, both roles.
 * - A fatal alert the peer sends us (SSL_CB_READ_ALERT) is recorded in the result, so that
 *   proxy/ and `ferry check --peer` can say why the peer rejected us (tls_alert_describe()).
 *   Only the first one counts: it is the cause, anything after it is noise.
 * - Inbound with client_cert: required: a client that sends no certificate never reaches
 *   verify_cb().  OpenSSL fails the handshake with "peer did not return a certificate" and
 *   sends a fatal alert; we see the alert leave and record TLS_REJECT_NO_CERT.
 * - A no_renegotiation alert we send (the peer asked to renegotiate) is recorded too, so that
 *   the connection's end is explained as such rather than by the alert the peer answers.
 */
static void
info_cb(const SSL *ssl, int where, int ret)
{
    struct tls_verify_result *res;
    struct tls_ctx *t;
    unsigned long e;

    if ((where & SSL_CB_ALERT) == 0) {
        return;
    }
    res = SSL_get_ex_data(ssl, ssl_idx);
    if (res == NULL) {
        return;
    }
    if ((where & SSL_CB_WRITE) != 0 && (ret & 0xff) == SSL_AD_NO_RENEGOTIATION) {
        /* SSL_OP_NO_RENEGOTIATION answers a renegotiation with this (warning) alert. */
        res->renegotiation_refused = true;
        return;
    }
    if ((ret >> 8) != SSL3_AL_FATAL) {
        return;
    }
    if ((where & SSL_CB_READ) != 0) {
        if (!res->alert_received) {
            res->alert_received = true;
            res->alert = ret & 0xff;
        }
        return;
    }
    t = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_idx);
    if (t == NULL || t->role != TLS_ROLE_SERVER || !t->client_cert_required ||
        res->reject != TLS_REJECT_NONE || res->verified || SSL_get0_peer_certificate(ssl) != NULL) {
        return;
    }
    e = ERR_peek_last_error();
    if ((ERR_GET_LIB(e) == ERR_LIB_SSL &&
         ERR_GET_REASON(e) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) ||
        (ret & 0xff) == SSL_AD_CERTIFICATE_REQUIRED) {
        res->reject = TLS_REJECT_NO_CERT;
    }
}

/*
 * The message callback of every context: keep the first 5 bytes the peer sends (and, as a
 * client, whether our Certificate message held one).  OpenSSL
 * reports each record header it reads (SSL3_RT_HEADER) before it checks the version, so a
 * peer that answers "HTTP/1.1 400" to our ClientHello is seen here before the handshake
 * fails with "wrong version number".
 */
static void
msg_cb(int write_p, int version, int content_type, const void *buf, size_t len, SSL *ssl, void *arg)
{
    struct tls_verify_result *res;

    (void)arg;
    res = SSL_get_ex_data(ssl, ssl_idx);
    if (write_p != 0 && content_type == SSL3_RT_HANDSHAKE && res != NULL && len >= 4 &&
        ((const unsigned char *)buf)[0] == SSL3_MT_CERTIFICATE && !SSL_is_server(ssl)) {
        /*
         * Our Certificate message: type and length (4 bytes), under TLS 1.3 a context (1 byte
         * of length, empty in a handshake), then the list's 3-byte length.  Longer than that
         * when the list holds our certificate; OpenSSL sends it empty when it withholds ours.
         */
        res->cert_sent = len > (version == TLS1_3_VERSION ? 8u : 7u);
        return;
    }
    if (write_p != 0 || content_type != SSL3_RT_HEADER || buf == NULL || len == 0) {
        return;
    }
    if (res == NULL || res->n_first_record > 0) {
        return;
    }
    if (len > sizeof(res->first_record)) {
        len = sizeof(res->first_record);
    }
    memcpy(res->first_record, buf, len);
    res->n_first_record = len;
}

/* Load the certificate chain and the key of ${p} into ${ctx}, with their own checks. */
static int
load_cert_and_key(SSL_CTX *ctx, const struct tls_ctx_params *p, char *err, size_t errlen)
{
    struct passwd_state st;
    EVP_PKEY *pkey = NULL;
    X509 *leaf;
    BIO *bio = NULL;
    char msg[256];
    enum tls_reject eku;
    bool server = p->role == TLS_ROLE_SERVER;
    int ret = -1;

    memset(&st, 0, sizeof(st));
    if ((bio = tls_file_read_bio("tls.cert", p->cert_file, err, errlen)) == NULL) {
        goto done;
    }
    if (!tls_file_is_pem(p->cert_file)) {
        tls_errf(err, errlen, "%s is not a PEM certificate (DER or PKCS#12? convert it to PEM)",
                 p->cert_file);
        goto done;
    }
    ERR_clear_error();
    if (use_chain_bio(ctx, bio) != 1) {
        tls_errf(err, errlen, "cannot load tls.cert %s: %s", p->cert_file,
                 tls_error_string(msg, sizeof(msg)));
        goto done;
    }
    leaf = SSL_CTX_get0_certificate(ctx);
    BIO_free(bio);
    bio = NULL;

    if ((bio = tls_file_read_bio("tls.key", p->key_file, err, errlen)) == NULL) {
        goto done;
    }
    if (!tls_file_is_pem(p->key_file)) {
        tls_errf(err, errlen,
                 "tls.key %s is not a PEM private key (DER or PKCS#12? convert it to PEM)",
                 p->key_file);
        goto done;
    }
    if (p->key_passphrase_file != NULL &&
        read_passphrase(p->key_passphrase_file, &st, err, errlen) != 0) {
        goto done;
    }
    ERR_clear_error();
    /* Our own callback, never NULL: with NULL OpenSSL would prompt on the terminal. */
    pkey = PEM_read_bio_PrivateKey(bio, NULL, passwd_cb, &st);
    OPENSSL_cleanse(st.pass, sizeof(st.pass));
    if (pkey == NULL) {
        if (st.asked && !st.have) {
            tls_errf(err, errlen, "tls.key %s is encrypted and no tls.key_passphrase_file is set",
                     p->key_file);
        } else if (st.asked) {
            tls_errf(err, errlen, "wrong passphrase in %s for %s", p->key_passphrase_file,
                     p->key_file);
        } else {
            tls_errf(err, errlen, "cannot load tls.key %s: %s", p->key_file,
                     tls_error_string(msg, sizeof(msg)));
        }
        ERR_clear_error();
        goto done;
    }
    if (X509_check_private_key(leaf, pkey) != 1 || SSL_CTX_use_PrivateKey(ctx, pkey) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        tls_errf(err, errlen, "tls.key %s does not match the certificate in %s", p->key_file,
                 p->cert_file);
        goto done;
    }

    /*
     * Refuse what our peers would refuse, at start rather than on every handshake.  Not the
     * dates: an own certificate that expired (or is not valid yet) is loaded, so that a
     * restart does not crash-loop on what only a renewal can fix; the checks of certs/
     * report it (cert-expired, logged at error) and /readyz answers 503 meanwhile.
     */
    eku = tls_check_eku(leaf, server);
    if (eku == TLS_REJECT_EKU_MISSING) {
        tls_errf(
            err, errlen,
            "%s: certificate has no extendedKeyUsage extension; ferry's peers require %s for an "
            "%s listener; reissue it with both serverAuth and clientAuth",
            p->cert_file, server ? "serverAuth" : "clientAuth", server ? "inbound" : "outbound");
        goto done;
    }
    if (eku == TLS_REJECT_EKU_WRONG) {
        tls_errf(
            err, errlen,
            "%s: certificate lacks extendedKeyUsage %s, which an %s listener needs (peers check "
            "it); reissue it with both serverAuth and clientAuth",
            p->cert_file, server ? "serverAuth" : "clientAuth", server ? "inbound" : "outbound");
        goto done;
    }
    ret = 0;

done:
    EVP_PKEY_free(pkey);
    BIO_free(bio);
    OPENSSL_cleanse(&st, sizeof(st));
    return ret;
}

/* Load the CA bundle (and for inbound the list of acceptable client CAs) into ${ctx}. */
static int
load_ca(SSL_CTX *ctx, const struct tls_ctx_params *p, char *err, size_t errlen)
{
    STACK_OF(X509_OBJECT) * objs;
    STACK_OF(X509_INFO) * infos;
    /* Sent in CertificateRequest, so that clients with several certs pick the right one. */
    bool client_cas = p->role == TLS_ROLE_SERVER && p->client_cert_required;
    BIO *bio;
    int i, n_certs = 0;
    char msg[256];

    if (p->role == TLS_ROLE_SERVER && !p->client_cert_required && p->ca_file == NULL) {
        /* client_cert: none (plain TLS termination): there is no peer chain to verify. */
        return 0;
    }
    if ((bio = tls_file_read_bio("tls.ca", p->ca_file, err, errlen)) == NULL) {
        return -1;
    }
    if (!tls_file_is_pem(p->ca_file)) {
        tls_errf(err, errlen, "tls.ca %s is not a PEM certificate bundle (DER? convert it to PEM)",
                 p->ca_file);
        BIO_free(bio);
        return -1;
    }
    /* SSL_CTX_load_verify_locations() from memory: every certificate and CRL of the bundle. */
    ERR_clear_error();
    infos = PEM_X509_INFO_read_bio(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (infos == NULL) {
        tls_errf(err, errlen, "cannot load tls.ca %s: %s", p->ca_file,
                 tls_error_string(msg, sizeof(msg)));
        return -1;
    }
    for (i = 0; i < sk_X509_INFO_num(infos); i++) {
        X509_INFO *xi = sk_X509_INFO_value(infos, i);

        if ((xi->x509 != NULL && X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), xi->x509) != 1) ||
            (xi->crl != NULL && X509_STORE_add_crl(SSL_CTX_get_cert_store(ctx), xi->crl) != 1) ||
            (xi->x509 != NULL && client_cas && SSL_CTX_add_client_CA(ctx, xi->x509) != 1)) {
            tls_errf(err, errlen, "cannot load tls.ca %s: %s", p->ca_file,
                     tls_error_string(msg, sizeof(msg)));
            sk_X509_INFO_pop_free(infos, X509_INFO_free);
            return -1;
        }
    }
    sk_X509_INFO_pop_free(infos, X509_INFO_free);
    objs = X509_STORE_get0_objects(SSL_CTX_get_cert_store(ctx));
    for (i = 0; i < sk_X509_OBJECT_num(objs); i++) {
        if (X509_OBJECT_get_type(sk_X509_OBJECT_value(objs, i)) == X509_LU_X509) {
            n_certs++;
        }
    }
    if (n_certs == 0) {
        tls_errf(err, errlen, "tls.ca %s holds no certificate", p->ca_file);
        return -1;
    }
    return 0;
}

/* Load every CRL of ${p}->crl_file into the store and require a CRL for every CA. */
static int
load_crl(SSL_CTX *ctx, const struct tls_ctx_params *p, char *err, size_t errlen)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    X509_CRL *crl;
    BIO *bio;
    unsigned long e;
    int n = 0, ret = -1;
    char msg[256];

    if ((bio = tls_file_read_bio("tls.crl", p->crl_file, err, errlen)) == NULL) {
        goto err0;
    }
    if (!tls_file_is_pem(p->crl_file)) {
        tls_errf(err, errlen, "tls.crl %s is not a PEM CRL (DER? convert it to PEM)", p->crl_file);
        goto err1;
    }
    ERR_clear_error();
    while ((crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL)) != NULL) {
        if (X509_STORE_add_crl(store, crl) != 1) {
            X509_CRL_free(crl);
            tls_errf(err, errlen, "cannot add a CRL of tls.crl %s: %s", p->crl_file,
                     tls_error_string(msg, sizeof(msg)));
            goto err1;
        }
        X509_CRL_free(crl);
        n++;
    }
    /* The loop ends at end of file ("no start line") or on a damaged CRL. */
    e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) != ERR_LIB_PEM || ERR_GET_REASON(e) != PEM_R_NO_START_LINE) {
        tls_errf(err, errlen, "cannot parse CRL #%d of tls.crl %s: %s", n + 1, p->crl_file,
                 tls_error_string(msg, sizeof(msg)));
        goto err1;
    }
    ERR_clear_error();
    if (n == 0) {
        tls_errf(err, errlen, "tls.crl %s holds no CRL", p->crl_file);
        goto err1;
    }
    /* CRL_CHECK_ALL: every CA in the chain needs a current CRL, not only the leaf's issuer. */
    if (X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL) != 1) {
        tls_errf(err, errlen, "cannot enable CRL checks: %s", tls_error_string(msg, sizeof(msg)));
        goto err1;
    }
    ret = 0;

err1:
    BIO_free(bio);
err0:
    return ret;
}

/*
 * Our own chain, built once here instead of on every handshake.  A tls.cert holding the leaf
 * alone leaves the SSL_CTX without a chain, and OpenSSL then builds one from the CA store for
 * each Certificate message it sends (ssl_add_cert_chain(): X509_STORE_CTX_new, a full
 * X509_verify_cert with its signature checks and CRL lookups, errors ignored), about 0.9
 * million instructions per handshake, 11 % of a full mTLS handshake (bench/handshake-
 * profile.md).  SSL_CTX_build_cert_chain() makes the chain from the same store now: the
 * issuers found in tls.ca up to the root, without the root itself (NO_ROOT).  A verifier never
 * uses a root the peer sends (it must already trust it), but OpenSSL 3.0 still decodes it:
 * 1.6 million instructions and ~1,560 mallocs per handshake on the receiving side, nginx and
 * HAProxy only send what their certificate file holds, and RFC 8446 4.4.2 lets the root be
 * left out.  A chain that does not verify (our issuer is not in tls.ca) keeps what was found,
 * as OpenSSL did per handshake.  A tls.cert that carries its intermediates (or a root) is sent
 * as it is (OpenSSL never builds one then).
 * Should the build fail outright, OpenSSL's per-handshake building stays: slower, not wrong.
 */
static void
build_own_chain(SSL_CTX *ctx)
{
    STACK_OF(X509) *chain = NULL;

    if (SSL_CTX_get0_chain_certs(ctx, &chain) == 1 && chain != NULL && sk_X509_num(chain) > 0) {
        return;
    }
    ERR_clear_error();
    if (SSL_CTX_build_cert_chain(ctx, SSL_BUILD_CHAIN_FLAG_NO_ROOT |
                                          SSL_BUILD_CHAIN_FLAG_IGNORE_ERROR |
                                          SSL_BUILD_CHAIN_FLAG_CLEAR_ERROR) <= 0) {
        (void)SSL_CTX_clear_chain_certs(ctx);
    }
    ERR_clear_error();
}

/*
 * tls_ctx_new(p, err, errlen):
 * Build a context for one listener from ${p}: TLS 1.2 minimum (or ${p}->min_version), no
 * legacy ciphers, no renegotiation or compression, the certificate chain and key, the CA
 * bundle, the CRLs (X509_V_FLAG_CRL_CHECK_ALL) and verify_depth (<= 0 means 4).  Unexpected
 * EOF from a peer reads as a clean end of stream (SSL_OP_IGNORE_UNEXPECTED_EOF, see the dirty
 * shutdown policy in tls.h).  Refuses, naming the file and the reason in ${err}, files that
 * are unreadable or not PEM, an encrypted key without a passphrase file or with a wrong one,
 * a key that does not match the certificate, and a certificate that our peers would reject.
 * Strings in ${p} are copied.  Returns the context, or NULL.
 */
struct tls_ctx *
tls_ctx_new(const struct tls_ctx_params *p, char *err, size_t errlen)
{
    struct tls_ctx *t;
    SSL_CTX *ctx;
    bool server;
    char msg[256];

    tls_errf(err, errlen, "%s", "");
    if (p == NULL) {
        tls_errf(err, errlen, "no TLS parameters");
        goto err0;
    }
    server = p->role == TLS_ROLE_SERVER;
    if (!CRYPTO_THREAD_run_once(&idx_once, idx_init) || ctx_idx < 0 || ssl_idx < 0) {
        tls_errf(err, errlen, "cannot set up OpenSSL ex_data indexes");
        goto err0;
    }
    if ((t = calloc(1, sizeof(*t))) == NULL) {
        tls_errf(err, errlen, "out of memory");
        goto err0;
    }
    if (copy_policy(t, p) != 0) {
        tls_errf(err, errlen, "out of memory");
        goto err1;
    }
    ERR_clear_error();
    if ((ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method())) == NULL) {
        tls_errf(err, errlen, "cannot create an SSL_CTX: %s", tls_error_string(msg, sizeof(msg)));
        goto err1;
    }
    if (SSL_CTX_set_ex_data(ctx, ctx_idx, t) != 1) {
        tls_errf(err, errlen, "out of memory");
        SSL_CTX_free(ctx);
        goto err1;
    }
    /* From here on the SSL_CTX owns t: freeing it frees t (ctx_exdata_free). */
    t->ssl_ctx = ctx;

    ERR_clear_error();
    if (SSL_CTX_set_min_proto_version(
            ctx, p->min_version >= TLS1_3_VERSION ? TLS1_3_VERSION : TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1) {
        tls_errf(err, errlen, "cannot set TLS versions or ciphers: %s",
                 tls_error_string(msg, sizeof(msg)));
        goto err2;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Idle connections give their read/write buffers back (about 34 KiB each). */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* No path to a terminal prompt, whatever later loads a key through this context. */
    SSL_CTX_set_default_passwd_cb(ctx, passwd_cb);
    SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);

    if (load_cert_and_key(ctx, p, err, errlen) != 0 || load_ca(ctx, p, err, errlen) != 0 ||
        (p->crl_file != NULL && load_crl(ctx, p, err, errlen) != 0)) {
        goto err2;
    }
    /* After the CA store (and its CRLs) is complete: the chain is built from it. */
    build_own_chain(ctx);

    /*
     * Verification is ours (verify_cb): purpose ANY keeps OpenSSL's "ssl_client"/"ssl_server"
     * purpose check, which accepts a leaf without EKU and runs before the chain is complete,
     * out of the way; rule 2 then checks EKU on the leaf only.
     */
    SSL_CTX_set_verify_depth(ctx, p->verify_depth > 0 ? p->verify_depth : TLS_DEFAULT_VERIFY_DEPTH);
    ERR_clear_error();
    if (SSL_CTX_set_purpose(ctx, X509_PURPOSE_ANY) != 1) {
        tls_errf(err, errlen, "cannot set the verify purpose: %s",
                 tls_error_string(msg, sizeof(msg)));
        goto err2;
    }
    SSL_CTX_set_cert_verify_callback(ctx, verify_cb, t);
    if (server) {
        SSL_CTX_set_verify(ctx,
                           p->client_cert_required
                               ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                               : SSL_VERIFY_NONE,
                           NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    /* Both roles: record the peer's alerts and its first bytes (see info_cb, msg_cb). */
    SSL_CTX_set_info_callback(ctx, info_cb);
    SSL_CTX_set_msg_callback(ctx, msg_cb);

    /* Sessions: see "Session resumption" in tls.h. */
    if (tls_session_setup(ctx, p, &t->sessions, err, errlen) != 0) {
        goto err2;
    }
    ERR_clear_error();
    return t;

err2:
    ERR_clear_error();
    SSL_CTX_free(ctx); /* frees t too */
    return NULL;
err1:
    ctx_free_policy(t);
err0:
    return NULL;
}

/*
 * tls_ctx_free(t):
 * Drop the listener's reference to ${t}'s SSL_CTX.  The tls_ctx itself goes with the last
 * reference (SSLs still running keep it), so callbacks never see freed policy.
 * tls_ctx_free(NULL) does nothing.
 */
void
tls_ctx_free(struct tls_ctx *t)
{
    if (t == NULL) {
        return;
    }
    SSL_CTX_free(t->ssl_ctx);
}

/*
 * tls_ssl_new(t, result):
 * A new SSL for one connection, in the role of ${t} (accept or connect state set).  ${result}
 * is zeroed and attached; the §4 verification writes it during the handshake.  A CLIENT SSL
 * has SNI set (unless the peer host is an IP literal) and offers the last session of its
 * peer.  Returns the SSL (owned by the caller), or NULL on OOM.
 */
SSL *
tls_ssl_new(struct tls_ctx *t, struct tls_verify_result *result)
{
    SSL *ssl;

    if (t == NULL || result == NULL) {
        goto err0;
    }
    memset(result, 0, sizeof(*result));
    ERR_clear_error();
    if ((ssl = SSL_new(t->ssl_ctx)) == NULL) {
        goto err0;
    }
    if (SSL_set_ex_data(ssl, ssl_idx, result) != 1) {
        goto err1;
    }
    if (t->role == TLS_ROLE_CLIENT) {
        if (t->sni != NULL && SSL_set_tlsext_host_name(ssl, t->sni) != 1) {
            goto err1;
        }
        /* SSL_set_session() takes its own reference; an expired session is just not offered. */
        if (t->sessions.session != NULL && SSL_set_session(ssl, t->sessions.session) != 1) {
            goto err1;
        }
        SSL_set_connect_state(ssl);
    } else {
        SSL_set_accept_state(ssl);
    }
    return ssl;

err1:
    SSL_free(ssl);
err0:
    ERR_clear_error();
    return NULL;
}

/*
 * tls_ssl_set_result(ssl, result):
 * Attach ${result} (not zeroed) to ${ssl} in place of the one tls_ssl_new() attached: an
 * established SSL that moves to another owner (a pooled connection) reports there from now on.
 */
void
tls_ssl_set_result(SSL *ssl, struct tls_verify_result *result)
{
    if (ssl != NULL) {
        (void)SSL_set_ex_data(ssl, ssl_idx, result);
    }
}

/*
 * tls_ssl_done(ssl, result):
 * Call once the handshake of ${ssl} succeeded.  On a resumed session verify_cb did not run:
 * rules 2 and 3 run again on the session's peer certificate (the chain was verified when the
 * session was made), which fills ${result}->peer and sets verified.  A server that does not
 * ask for client certificates leaves ${result} with verified false and reject NONE.
 */
void
tls_ssl_done(SSL *ssl, struct tls_verify_result *result)
{
    struct tls_ctx *t;
    X509 *peer;

    if (ssl == NULL || result == NULL || result->verified || result->reject != TLS_REJECT_NONE) {
        return;
    }
    peer = SSL_get0_peer_certificate(ssl);
    t = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_idx);
    if (peer == NULL || t == NULL) {
        return;
    }
    result->reject = tls_check_leaf(
        peer, t->role == TLS_ROLE_CLIENT, t->role == TLS_ROLE_CLIENT ? t->peer_host : NULL,
        t->role == TLS_ROLE_SERVER ? t->allow : NULL, t->n_allow, t->cn_fallback, &result->peer);
    result->verified = result->reject == TLS_REJECT_NONE;
}

/*
 * tls_ctx_self_info(t, self):
 * Fill ${self} from ${t}: role, files, our leaf (subject, issuer, SANs, EKUs, validity, key),
 * the peer host (CLIENT), the versions and TLS 1.2 ciphers we offer.
 */
void
tls_ctx_self_info(const struct tls_ctx *t, struct tls_self_info *self)
{
    struct tls_peer_info leaf_info;
    STACK_OF(SSL_CIPHER) * ciphers;
    X509 *leaf;
    size_t used = 0;
    int i;

    memset(self, 0, sizeof(*self));
    if (t == NULL) {
        return;
    }
    self->role = t->role;
    (void)snprintf(self->cert_file, sizeof(self->cert_file), "%s",
                   t->cert_file != NULL ? t->cert_file : "");
    (void)snprintf(self->key_file, sizeof(self->key_file), "%s",
                   t->key_file != NULL ? t->key_file : "");
    (void)snprintf(self->ca_file, sizeof(self->ca_file), "%s",
                   t->ca_file != NULL ? t->ca_file : "");
    (void)snprintf(self->peer_host, sizeof(self->peer_host), "%s",
                   t->peer_host != NULL ? t->peer_host : "");
    (void)snprintf(self->versions, sizeof(self->versions), "%s",
                   t->min_version >= TLS1_3_VERSION ? "TLS 1.3 only" : "TLS 1.2 and TLS 1.3");
    if ((leaf = SSL_CTX_get0_certificate(t->ssl_ctx)) != NULL) {
        memset(&leaf_info, 0, sizeof(leaf_info));
        tls_peer_info_fill(leaf, t->cn_fallback, &leaf_info);
        (void)snprintf(self->subject, sizeof(self->subject), "%s", leaf_info.subject);
        (void)snprintf(self->issuer, sizeof(self->issuer), "%s", leaf_info.issuer);
        (void)snprintf(self->sans, sizeof(self->sans), "%s", leaf_info.sans);
        (void)snprintf(self->not_before, sizeof(self->not_before), "%s", leaf_info.not_before);
        (void)snprintf(self->not_after, sizeof(self->not_after), "%s", leaf_info.not_after);
        (void)tls_cert_ekus(leaf, self->ekus, sizeof(self->ekus));
        (void)tls_cert_key_type(leaf, self->key_type, sizeof(self->key_type));
    }
    /* TLS 1.2 suites only: the TLS 1.3 ones are not configurable and every peer has them. */
    ciphers = SSL_CTX_get_ciphers(t->ssl_ctx);
    for (i = 0; ciphers != NULL && i < sk_SSL_CIPHER_num(ciphers); i++) {
        const SSL_CIPHER *c = sk_SSL_CIPHER_value(ciphers, i);
        int n;

        if (strcmp(SSL_CIPHER_get_version(c), "TLSv1.3") == 0) {
            continue;
        }
        n = snprintf(self->ciphers + used, sizeof(self->ciphers) - used, "%s%s",
                     used > 0 ? ":" : "", SSL_CIPHER_get_name(c));
        if (n < 0 || (size_t)n >= sizeof(self->ciphers) - used) {
            break;
        }
        used += (size_t)n;
    }
}
