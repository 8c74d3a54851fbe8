/*
 * tls_session.c: session resumption for the contexts of tls_ctx.c (see "Session resumption"
 * in tls.h).  The session id context that binds a server's sessions to its trust policy, the
 * SSL_CTX settings of each role, the client's one-session cache, the server's ticket key
 * callback (keys from tls_tickets.c) and the ticket data that bounds the age of the chain
 * verification a resumed session carries.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tls.h"
#include "tls_internal.h"

/* The first bytes hashed into a session id context (tls_session_id_context()). */
#define SID_CTX_LABEL "ferry session id context v1"

_Static_assert(TLS_SID_CTX_LEN == SSL_MAX_SID_CTX_LENGTH, "session id context length");

/*
 * CLIENT session cache (SSL_SESS_CACHE_NO_INTERNAL_STORE): keep only the newest session of
 * our peer, and only from a handshake that passed our rules.  Returning 1 keeps the
 * reference OpenSSL hands us.
 */
static int
new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    struct tls_session_state *st = tls_ctx_session_state(ssl);
    struct tls_verify_result *res = tls_ctx_result(ssl);

    if (st == NULL || (res != NULL && !res->verified && !SSL_session_reused(ssl))) {
        return 0;
    }
    SSL_SESSION_free(st->session);
    st->session = sess;
    return 1;
}

/*
 * The session ticket callback of inbound contexts made with a struct tls_tickets
 * (SSL_CTX_set_tlsext_ticket_key_evp_cb).  ${enc} 1: a new ticket, under the current period's
 * keys and a random IV.  ${enc} 0: the ticket named ${key_name} is decrypted with the current
 * period's keys (returns 1) or the previous one's (returns 2: OpenSSL sends a fresh ticket;
 * under TLS 1.3 always 2); any other ticket, or a failure, returns 0: no ticket is issued, or
 * the client gets a full handshake.  Never -1, which would fail the handshake itself.
 */
static int
ticket_key_cb(SSL *ssl, unsigned char key_name[TLS_TICKET_NAME_LEN], unsigned char *iv,
              EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    struct tls_session_state *st = tls_ctx_session_state(ssl);
    struct tls_ticket_keys *k;
    const EVP_CIPHER *cipher;
    OSSL_PARAM params[3];
    char digest[] = "SHA256";
    int r, ivlen;

    if (st == NULL || st->tickets == NULL) {
        return 0;
    }
    cipher = tls_tickets_cipher(st->tickets);
    ivlen = EVP_CIPHER_get_iv_length(cipher);
    r = tls_tickets_cache_select(st->tickets, &st->ticket_cache, time(NULL), enc ? NULL : key_name,
                                 &k);
    if (r <= 0 || ivlen <= 0 || ivlen > EVP_MAX_IV_LENGTH) {
        goto err;
    }
    params[0] =
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k->hmac_key, sizeof(k->hmac_key));
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
    params[2] = OSSL_PARAM_construct_end();
    if (enc) {
        memcpy(key_name, k->name, TLS_TICKET_NAME_LEN);
        if (RAND_bytes(iv, ivlen) != 1 ||
            EVP_EncryptInit_ex2(cctx, cipher, k->aes_key, iv, NULL) != 1 ||
            EVP_MAC_CTX_set_params(hctx, params) != 1) {
            goto err;
        }
        return 1;
    }
    /* OpenSSL checks the HMAC over the ticket before it decrypts anything. */
    if (EVP_MAC_CTX_set_params(hctx, params) != 1 ||
        EVP_DecryptInit_ex2(cctx, cipher, k->aes_key, iv, NULL) != 1) {
        goto err;
    }
    /*
     * TLS 1.3: always 2, as OpenSSL's own keys do: the client uses a TLS 1.3 ticket once
     * (RFC 8446 C.4), so without a fresh one its next connection would be a full handshake.
     */
    return SSL_version(ssl) >= TLS1_3_VERSION ? 2 : r;

err:
    ERR_clear_error();
    return 0;
}

/*
 * The ticket generation callback of inbound contexts (SSL_CTX_set_session_ticket_cb): every
 * ticket carries, as its application data, the time of the full handshake that verified the
 * chain (8 bytes, big endian).  A renewed ticket (a resumed session) keeps the time it came
 * with.  Returns 1, or 0 (out of memory: the handshake fails).
 */
static int
ticket_gen_cb(SSL *ssl, void *arg)
{
    SSL_SESSION *sess = SSL_get_session(ssl);
    unsigned char b[8];
    void *data = NULL;
    size_t len = 0;
    uint64_t now = (uint64_t)time(NULL);
    int i;

    (void)arg;
    if (sess == NULL) {
        return 0;
    }
    if (SSL_session_reused(ssl) && SSL_SESSION_get0_ticket_appdata(sess, &data, &len) == 1 &&
        len == sizeof(b)) {
        return 1;
    }
    for (i = 0; i < 8; i++) {
        b[i] = (unsigned char)(now >> (56 - 8 * i));
    }
    return SSL_SESSION_set1_ticket_appdata(sess, b, sizeof(b)) == 1 ? 1 : 0;
}

/*
 * The ticket decryption callback of inbound contexts: a ticket that decrypted is used only
 * when the chain verification it carries is fresh (tls_session_auth_fresh()); else, and for
 * a ticket that did not decrypt, the client gets a full handshake and a new ticket.
 */
static SSL_TICKET_RETURN
ticket_dec_cb(SSL *ssl, SSL_SESSION *sess, const unsigned char *keyname, size_t keyname_len,
              SSL_TICKET_STATUS status, void *arg)
{
    const unsigned char *b;
    void *data = NULL;
    size_t len = 0;
    uint64_t auth = 0;
    int i;

    (void)ssl;
    (void)keyname;
    (void)keyname_len;
    (void)arg;
    if ((status != SSL_TICKET_SUCCESS && status != SSL_TICKET_SUCCESS_RENEW) || sess == NULL ||
        SSL_SESSION_get0_ticket_appdata(sess, &data, &len) != 1 || len != 8) {
        return SSL_TICKET_RETURN_IGNORE_RENEW;
    }
    b = data;
    for (i = 0; i < 8; i++) {
        auth = (auth << 8) | b[i];
    }
    if (!tls_session_auth_fresh(auth, time(NULL), SSL_SESSION_get0_peer(sess))) {
        return SSL_TICKET_RETURN_IGNORE_RENEW;
    }
    return status == SSL_TICKET_SUCCESS ? SSL_TICKET_RETURN_USE : SSL_TICKET_RETURN_USE_RENEW;
}

/*
 * Hash the bytes of the file ${path} (or "absent" for NULL) into ${md} as one fixed-size
 * field: a presence byte and the file's own SHA-256.  ${what} names the setting for ${err}.
 */
static int
sid_hash_file(EVP_MD_CTX *md, const char *what, const char *path, char *err, size_t errlen)
{
    unsigned char buf[4096], digest[EVP_MAX_MD_SIZE], present = path != NULL;
    unsigned int dlen = 0;
    EVP_MD_CTX *fmd = NULL;
    FILE *f = NULL;
    size_t n;
    int ret = -1;
    char why[256];

    memset(digest, 0, sizeof(digest));
    if (path != NULL) {
        if ((f = tls_file_fopen(path, why, sizeof(why))) == NULL) {
            tls_errf(err, errlen, "cannot read %s %s: %s", what, path, why);
            goto done;
        }
        if ((fmd = EVP_MD_CTX_new()) == NULL || EVP_DigestInit_ex(fmd, EVP_sha256(), NULL) != 1) {
            tls_errf(err, errlen, "out of memory");
            goto done;
        }
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
            if (EVP_DigestUpdate(fmd, buf, n) != 1) {
                tls_errf(err, errlen, "cannot hash %s %s", what, path);
                goto done;
            }
        }
        if (ferror(f) || EVP_DigestFinal_ex(fmd, digest, &dlen) != 1) {
            tls_errf(err, errlen, "cannot read %s %s", what, path);
            goto done;
        }
    }
    if (EVP_DigestUpdate(md, &present, 1) != 1 || EVP_DigestUpdate(md, digest, 32) != 1) {
        tls_errf(err, errlen, "cannot hash %s", what);
        goto done;
    }
    ret = 0;

done:
    EVP_MD_CTX_free(fmd);
    if (f != NULL) {
        (void)fclose(f);
    }
    return ret;
}

/* Hash ${v} into ${md} as 4 bytes, big endian. */
static int
sid_hash_u32(EVP_MD_CTX *md, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};

    return EVP_DigestUpdate(md, b, sizeof(b)) == 1 ? 0 : -1;
}

/*
 * tls_session_id_context(p, out, err, errlen):
 * SHA-256 over the trust policy of ${p} (see tls.h), each field with a fixed size or a length
 * prefix so that no two policies hash the same input.  Returns 0, or -1 with ${err}.
 */
int
tls_session_id_context(const struct tls_ctx_params *p, unsigned char out[TLS_SID_CTX_LEN],
                       char *err, size_t errlen)
{
    unsigned char digest[EVP_MAX_MD_SIZE], has_allow, flags;
    unsigned int dlen = 0;
    EVP_MD_CTX *md;
    size_t i;
    int ret = -1;

    if ((md = EVP_MD_CTX_new()) == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(md, SID_CTX_LABEL, sizeof(SID_CTX_LABEL)) != 1) {
        tls_errf(err, errlen, "out of memory");
        goto done;
    }
    if (sid_hash_file(md, "tls.ca", p->ca_file, err, errlen) != 0 ||
        sid_hash_file(md, "tls.crl", p->crl_file, err, errlen) != 0) {
        goto done;
    }
    /* The effective values: what the handshake enforces, not how the config spelled it. */
    flags = (unsigned char)((p->client_cert_required ? 1 : 0) | (p->cn_fallback ? 2 : 0));
    has_allow = p->allow != NULL;
    if (sid_hash_u32(md, (uint32_t)(p->verify_depth > 0 ? p->verify_depth
                                                        : TLS_DEFAULT_VERIFY_DEPTH)) != 0 ||
        sid_hash_u32(md, p->min_version >= TLS1_3_VERSION ? TLS1_3_VERSION : TLS1_2_VERSION) != 0 ||
        EVP_DigestUpdate(md, &flags, 1) != 1 || EVP_DigestUpdate(md, &has_allow, 1) != 1 ||
        sid_hash_u32(md, has_allow ? (uint32_t)p->n_allow : 0) != 0) {
        tls_errf(err, errlen, "cannot hash the trust policy");
        goto done;
    }
    for (i = 0; has_allow && i < p->n_allow; i++) {
        size_t n = strlen(p->allow[i]);

        if (sid_hash_u32(md, (uint32_t)n) != 0 || EVP_DigestUpdate(md, p->allow[i], n) != 1) {
            tls_errf(err, errlen, "cannot hash the trust policy");
            goto done;
        }
    }
    if (EVP_DigestFinal_ex(md, digest, &dlen) != 1 || dlen < TLS_SID_CTX_LEN) {
        tls_errf(err, errlen, "cannot hash the trust policy");
        goto done;
    }
    memcpy(out, digest, TLS_SID_CTX_LEN);
    ret = 0;

done:
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    return ret;
}

/*
 * tls_session_auth_fresh(auth_time, now, peer):
 * The age bound of resumed inbound sessions: see tls.h.
 */
bool
tls_session_auth_fresh(uint64_t auth_time, time_t now, X509 *peer)
{
    uint64_t t = now > 0 ? (uint64_t)now : 0;

    if (auth_time > t ? auth_time - t > 60 : t - auth_time > TLS_SESSION_AUTH_MAX_S) {
        return false;
    }
    /* X509_cmp_time: -1 before ${now}, 1 after, 0 on a malformed time (refused too). */
    if (peer != NULL && (X509_cmp_time(X509_get0_notAfter(peer), &now) <= 0 ||
                         X509_cmp_time(X509_get0_notBefore(peer), &now) >= 0)) {
        return false;
    }
    return true;
}

/*
 * tls_session_setup(ctx, p, st, err, errlen):
 * Set up session resumption on ${ctx} for the role and settings of ${p}, with ${st} (the
 * context's session state; its tickets already referenced): see "Session resumption" in
 * tls.h.  Returns 0, or -1 with ${err}.
 */
int
tls_session_setup(SSL_CTX *ctx, const struct tls_ctx_params *p, const struct tls_session_state *st,
                  char *err, size_t errlen)
{
    unsigned char sid_ctx[TLS_SID_CTX_LEN];
    char msg[256];

    if (p->role == TLS_ROLE_SERVER) {
        /*
         * Without a session id context, OpenSSL refuses to resume a session with a client
         * cert.  OpenSSL resumes only a session whose context equals ours: hashing the trust
         * policy into it makes a session from another policy run a full handshake.
         */
        if (tls_session_id_context(p, sid_ctx, err, errlen) != 0) {
            return -1;
        }
        if (SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx)) != 1) {
            tls_errf(err, errlen, "cannot set the session id context: %s",
                     tls_error_string(msg, sizeof(msg)));
            return -1;
        }
        if (!p->session_resumption) {
            SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
            (void)SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
            (void)SSL_CTX_set_num_tickets(ctx, 0);
        } else if (st->tickets != NULL) {
            /*
             * Stateless tickets only, TLS 1.2 and 1.3 alike (no SSL_OP_NO_TICKET, so 1.3 PSK
             * tickets are stateless too): a per-context cache would not be shared by the other
             * workers nor survive a reload, the ticket keys are.  A ticket lives one period.
             */
            (void)SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
            (void)SSL_CTX_set_timeout(ctx, TLS_TICKET_PERIOD_S);
            /* One TLS 1.3 ticket, not OpenSSL's two: peers like ours keep only the newest. */
            (void)SSL_CTX_set_num_tickets(ctx, 1);
            if (SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key_cb) != 1) {
                tls_errf(err, errlen, "cannot set the session ticket callback: %s",
                         tls_error_string(msg, sizeof(msg)));
                return -1;
            }
        } else {
            (void)SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
        }
        /* Tickets with either kind of keys: bound the age of the verification they carry. */
        if (p->session_resumption &&
            SSL_CTX_set_session_ticket_cb(ctx, ticket_gen_cb, ticket_dec_cb, NULL) != 1) {
            tls_errf(err, errlen, "cannot set the session ticket callbacks: %s",
                     tls_error_string(msg, sizeof(msg)));
            return -1;
        }
    } else if (p->session_resumption) {
        (void)SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
                                                      SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
    } else {
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        (void)SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    return 0;
}

/*
 * tls_session_state_clear(st):
 * Free what ${st} holds: the client's session, the ticket keys' reference and cache.
 */
void
tls_session_state_clear(struct tls_session_state *st)
{
    SSL_SESSION_free(st->session);
    st->session = NULL;
    tls_tickets_cache_clear(&st->ticket_cache);
    tls_tickets_free(st->tickets);
    st->tickets = NULL;
}
