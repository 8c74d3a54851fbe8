/*
 * tls_tickets.c: session ticket keys shared by every inbound context of the process.
 *
 * One master secret per process; the keys of each period (TLS_TICKET_PERIOD_S) are derived
 * from it with HKDF-SHA256, so they are a pure function of (master, period): every worker's
 * context, and the contexts a reload builds, encrypt and decrypt the same tickets without
 * sharing any mutable state or taking a lock.  A ticket made in period P is accepted in P and
 * P + 1 (and renewed in P + 1); the session timeout (one period) ends it before that.
 *
 * The object is immutable after tls_tickets_new(); its reference count (atomic) only lets a
 * context outlive the caller's reference.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "tls.h"
#include "tls_internal.h"

#define MASTER_MIN 16
#define MASTER_MAX 64

/* HKDF salt (a fixed label: the master is already uniformly random) and info prefix. */
#define HKDF_SALT "ferry session tickets v1"
#define HKDF_INFO "ferry ticket"

struct tls_tickets {
    atomic_uint refs;
    EVP_KDF *hkdf;      /* fetched once: no method-store lookup per derivation */
    EVP_CIPHER *cipher; /* AES-256-CBC, fetched once, used by the ticket callback */
    size_t master_len;
    unsigned char master[MASTER_MAX];
};

/*
 * tls_tickets_new_from(master, len, err, errlen):
 * A ticket key source from the ${len}-byte secret ${master} (copied).  Returns it with one
 * reference, or NULL with ${err}.
 */
struct tls_tickets *
tls_tickets_new_from(const unsigned char *master, size_t len, char *err, size_t errlen)
{
    struct tls_tickets *t;
    char msg[256];

    if (master == NULL || len < MASTER_MIN || len > MASTER_MAX) {
        tls_errf(err, errlen, "a ticket master secret has %d to %d bytes", MASTER_MIN, MASTER_MAX);
        goto err0;
    }
    if ((t = calloc(1, sizeof(*t))) == NULL) {
        tls_errf(err, errlen, "out of memory");
        goto err0;
    }
    atomic_init(&t->refs, 1);
    ERR_clear_error();
    if ((t->hkdf = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_HKDF, NULL)) == NULL ||
        (t->cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL)) == NULL) {
        tls_errf(err, errlen, "cannot set up session ticket keys: %s",
                 tls_error_string(msg, sizeof(msg)));
        goto err1;
    }
    memcpy(t->master, master, len);
    t->master_len = len;
    return t;

err1:
    EVP_CIPHER_free(t->cipher);
    EVP_KDF_free(t->hkdf);
    free(t);
err0:
    return NULL;
}

/*
 * tls_tickets_new(err, errlen):
 * A ticket key source with a random TLS_TICKET_MASTER_LEN-byte master secret.  Returns it with
 * one reference, or NULL with ${err}.
 */
struct tls_tickets *
tls_tickets_new(char *err, size_t errlen)
{
    struct tls_tickets *t = NULL;
    unsigned char master[TLS_TICKET_MASTER_LEN];
    char msg[256];

    ERR_clear_error();
    if (RAND_priv_bytes(master, sizeof(master)) != 1) {
        tls_errf(err, errlen, "cannot make a session ticket secret: %s",
                 tls_error_string(msg, sizeof(msg)));
    } else {
        t = tls_tickets_new_from(master, sizeof(master), err, errlen);
    }
    OPENSSL_cleanse(master, sizeof(master));
    return t;
}

/*
 * tls_tickets_ref(t):
 * Take one more reference to ${t} (a context that uses it).  Returns ${t}.
 */
struct tls_tickets *
tls_tickets_ref(struct tls_tickets *t)
{
    if (t != NULL) {
        atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
    }
    return t;
}

/*
 * tls_tickets_free(t):
 * Drop one reference to ${t}; the last one wipes the master secret and frees it.
 */
void
tls_tickets_free(struct tls_tickets *t)
{
    if (t == NULL) {
        return;
    }
    /* acq_rel: every use by another thread happens before the wipe. */
    if (atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    OPENSSL_cleanse(t->master, sizeof(t->master));
    EVP_CIPHER_free(t->cipher);
    EVP_KDF_free(t->hkdf);
    free(t);
}

/*
 * tls_tickets_cipher(t):
 * The ticket cipher (AES-256-CBC) of ${t}, valid as long as ${t}.
 */
const EVP_CIPHER *
tls_tickets_cipher(const struct tls_tickets *t)
{
    return t->cipher;
}

/*
 * tls_tickets_period(now):
 * The key period of the unix time ${now}.
 */
uint64_t
tls_tickets_period(time_t now)
{
    return now > 0 ? (uint64_t)now / TLS_TICKET_PERIOD_S : 0;
}

/*
 * tls_tickets_derive(t, period, out):
 * HKDF-SHA256(ikm = master, salt = HKDF_SALT, info = HKDF_INFO || period as 8 bytes big
 * endian), 80 bytes: the key name, the AES key, the HMAC key.  Returns 0, or -1 (${out} wiped).
 */
int
tls_tickets_derive(const struct tls_tickets *t, uint64_t period, struct tls_ticket_keys *out)
{
    unsigned char info[sizeof(HKDF_INFO) - 1 + 8];
    unsigned char okm[TLS_TICKET_NAME_LEN + sizeof(out->aes_key) + sizeof(out->hmac_key)];
    unsigned char master[MASTER_MAX]; /* OSSL_PARAM wants a non-const buffer */
    char digest[] = "SHA256", salt[] = HKDF_SALT;
    OSSL_PARAM params[5], *q = params;
    EVP_KDF_CTX *kctx;
    int i, ret = -1;

    memset(out, 0, sizeof(*out));
    if (t == NULL) {
        return -1;
    }
    memcpy(info, HKDF_INFO, sizeof(HKDF_INFO) - 1);
    for (i = 0; i < 8; i++) {
        info[sizeof(HKDF_INFO) - 1 + (size_t)i] = (unsigned char)(period >> (56 - 8 * i));
    }
    memcpy(master, t->master, t->master_len);
    *q++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
    *q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, master, t->master_len);
    *q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, salt, sizeof(salt) - 1);
    *q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, sizeof(info));
    *q = OSSL_PARAM_construct_end();
    if ((kctx = EVP_KDF_CTX_new(t->hkdf)) == NULL) {
        goto err0;
    }
    if (EVP_KDF_derive(kctx, okm, sizeof(okm), params) != 1) {
        goto err1;
    }
    out->period = period;
    memcpy(out->name, okm, TLS_TICKET_NAME_LEN);
    memcpy(out->aes_key, okm + TLS_TICKET_NAME_LEN, sizeof(out->aes_key));
    memcpy(out->hmac_key, okm + TLS_TICKET_NAME_LEN + sizeof(out->aes_key), sizeof(out->hmac_key));
    ret = 0;

err1:
    EVP_KDF_CTX_free(kctx);
err0:
    OPENSSL_cleanse(okm, sizeof(okm));
    OPENSSL_cleanse(master, sizeof(master));
    if (ret != 0) {
        OPENSSL_cleanse(out, sizeof(*out));
        ERR_clear_error();
    }
    return ret;
}

/*
 * tls_tickets_cache_select(t, cache, now, name, out):
 * tls_tickets_select() through ${cache} (one context's, one thread's): keys are derived again
 * only when the period changes.  *${out} points into ${cache}.  Returns 1, 2, 0 or -1 as
 * tls_tickets_select().
 */
int
tls_tickets_cache_select(const struct tls_tickets *t, struct tls_ticket_cache *cache, time_t now,
                         const unsigned char *name, struct tls_ticket_keys **out)
{
    uint64_t period = tls_tickets_period(now);

    *out = NULL;
    if (!cache->valid || cache->cur.period != period) {
        tls_tickets_cache_clear(cache);
        if (tls_tickets_derive(t, period, &cache->cur) != 0 ||
            (period > 0 && tls_tickets_derive(t, period - 1, &cache->prev) != 0)) {
            tls_tickets_cache_clear(cache);
            return -1;
        }
        cache->has_prev = period > 0;
        cache->valid = true;
    }
    if (name == NULL || CRYPTO_memcmp(name, cache->cur.name, TLS_TICKET_NAME_LEN) == 0) {
        *out = &cache->cur;
        return 1;
    }
    if (cache->has_prev && CRYPTO_memcmp(name, cache->prev.name, TLS_TICKET_NAME_LEN) == 0) {
        *out = &cache->prev;
        return 2;
    }
    return 0;
}

/*
 * tls_tickets_cache_clear(cache):
 * Wipe the keys held in ${cache}.
 */
void
tls_tickets_cache_clear(struct tls_ticket_cache *cache)
{
    OPENSSL_cleanse(cache, sizeof(*cache));
}

/*
 * tls_tickets_select(t, now, name, out):
 * Which keys serve a ticket at ${now}: see tls.h.  Uses a cache on the stack, so every call
 * derives afresh (the handshake path uses a context's cache instead).
 */
int
tls_tickets_select(const struct tls_tickets *t, time_t now, const unsigned char *name,
                   struct tls_ticket_keys *out)
{
    struct tls_ticket_cache cache;
    struct tls_ticket_keys *k;
    int r;

    memset(&cache, 0, sizeof(cache));
    r = tls_tickets_cache_select(t, &cache, now, name, &k);
    if (r > 0) {
        *out = *k;
    } else {
        OPENSSL_cleanse(out, sizeof(*out));
    }
    tls_tickets_cache_clear(&cache);
    return r;
}
