/*
 * tls: OpenSSL only; no libevent, no sockets, no logging.
 *
 * One struct tls_ctx per listener wraps an SSL_CTX set up for its role, plus the policy of
 * CONTRACT.md §4 (chain, then EKU, then name).  The proxy asks it for one SSL per
 * connection (tls_ssl_new()) and, when the handshake ends, reads back why a peer was
 * rejected as an enum tls_reject and the peer's subject and SANs.  Lower layers return
 * reasons; proxy/ logs them.
 *
 * Dirty shutdown policy: a peer that closes TCP without a close_notify is treated as a
 * normal end of stream (the proxy sets allow_dirty_shutdown on its bufferevents).  The
 * database protocols ferry carries frame their own messages (HTTP Content-Length, chunked
 * encoding, CouchDB replication checkpoints), so truncation is detected above TLS, and many
 * real clients (curl, CouchDB's ibrowse) do not always send close_notify.  ferry itself always
 * sends close_notify (SSL_shutdown) before it closes a TLS connection.  tls_ctx_new() sets
 * SSL_OP_IGNORE_UNEXPECTED_EOF, so OpenSSL 3 reports such an EOF as SSL_ERROR_ZERO_RETURN (a
 * clean end) rather than as an SSL error that libevent would turn into BEV_EVENT_ERROR.
 *
 * Session resumption: inbound contexts issue session tickets; outbound contexts keep the last
 * session of their peer and offer it on the next connection.  A resumed session keeps the
 * chain verification of the full handshake that created it; rules 2 and 3 run again on its
 * peer certificate (tls_ssl_done()).  OpenSSL marks the session of an SSL freed without
 * SSL_shutdown() as not resumable, so only cleanly closed connections leave a session to
 * resume.
 * - Inbound with a struct tls_tickets (tls_ctx_params.tickets): stateless tickets only (TLS 1.2
 *   tickets and TLS 1.3 PSK tickets), encrypted with keys derived from the tickets object's
 *   master secret and the current hour (TLS_TICKET_PERIOD_S), so that every context made with
 *   the same object (one per worker thread, and the ones a reload builds) resumes the others'
 *   tickets.  There is no server-side session cache.  A ticket is valid for one period
 *   (SSL_CTX_set_timeout) and its key is accepted for the period it was made in and the next.
 * - Every inbound ticket carries the time of the full handshake that verified its chain; a
 *   session is resumed only within TLS_SESSION_AUTH_MAX_S of it and while its peer certificate
 *   is within its validity dates (tls_session_auth_fresh()), however often it was renewed.
 * - Inbound without one: OpenSSL's own per-context ticket keys and session cache (a reload or
 *   another worker does not resume them).
 * - The session id context of an inbound context is a hash of its trust policy (tls.ca and
 *   tls.crl bytes, verify_depth, client_cert, allow, cn_fallback, min_version;
 *   tls_session_id_context()): a session made under another policy (a reload that changed the
 *   CA bundle, say) is refused and the client runs a full handshake with the §4 rules.
 *
 * Threads: a struct tls_ctx, and every SSL made from it, belongs to one thread (one worker):
 * the outbound session cache and the ticket key cache inside it have no lock.  A struct
 * tls_tickets is shared read-only by every thread.
 */
#ifndef FERRY_TLS_H
#define FERRY_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

/* The side we play: SERVER for an inbound listener, CLIENT for an outbound one. */
enum tls_role {
    TLS_ROLE_SERVER,
    TLS_ROLE_CLIENT,
};

/*
 * Why a peer certificate was rejected.  One string table (tls_reject_str) feeds log lines,
 * /metrics labels and the 502 JSON reason.  Chain reasons come first (rule 1), then EKU
 * (rule 2), then name (rule 3).
 */
enum tls_reject {
    TLS_REJECT_NONE = 0,
    TLS_REJECT_NO_CERT,          /* the peer sent no certificate */
    TLS_REJECT_UNKNOWN_CA,       /* no issuer found in the peer's chain or in `ca` */
    TLS_REJECT_SELF_SIGNED,      /* a self-signed certificate that is not in `ca` */
    TLS_REJECT_NOT_CA,           /* an issuer in the chain is not a CA */
    TLS_REJECT_EXPIRED,          /* a certificate in the chain has expired */
    TLS_REJECT_NOT_YET_VALID,    /* a certificate in the chain is not valid yet */
    TLS_REJECT_REVOKED,          /* a certificate in the chain is revoked by `crl` */
    TLS_REJECT_CRL,              /* a CRL is missing for an issuer, expired, or badly signed */
    TLS_REJECT_CHAIN_TOO_LONG,   /* deeper than verify_depth */
    TLS_REJECT_BAD_SIGNATURE,    /* a signature in the chain does not verify */
    TLS_REJECT_CHAIN_OTHER,      /* any other chain error (detail has OpenSSL's text) */
    TLS_REJECT_EKU_MISSING,      /* the leaf has no extendedKeyUsage extension */
    TLS_REJECT_EKU_WRONG,        /* the leaf's EKU lacks clientAuth (inbound) / serverAuth */
    TLS_REJECT_NO_NAME,          /* no DNS/IP SAN, and CN fallback is off (or no CN) */
    TLS_REJECT_NAME_MISMATCH,    /* outbound: no SAN covers the peer host */
    TLS_REJECT_NAME_NOT_ALLOWED, /* inbound: no SAN matches an `allow` entry */
    TLS_REJECT__COUNT
};

/*
 * The sizes of the certificate texts below (each with its NUL).  A longer text is cut: a
 * distinguished name or a SAN list is shown, never matched, once it is this long.
 */
#define TLS_DN_MAX       256 /* a subject or issuer, RFC 2253 */
#define TLS_SANS_MAX     512 /* the SAN list, "DNS:a,IP:b,URI:c" */
#define TLS_NAME_MAX     256 /* one name: a SAN or the CN */
#define TLS_TIME_STR_MAX 32  /* "2025-01-31 12:00:00 UTC" */

/* What the peer presented, for logs.  Strings are always NUL-terminated (maybe empty). */
struct tls_peer_info {
    char subject[TLS_DN_MAX]; /* RFC 2253, e.g. "CN=node2.example.org,O=Site B" */
    char issuer[TLS_DN_MAX];  /* RFC 2253 */
    char sans[TLS_SANS_MAX];  /* "DNS:node2.example.org,IP:10.0.0.2,URI:spiffe://td/x" */
    char name[TLS_NAME_MAX];  /* the peer's name: first DNS SAN that is a host name, else first
                        IP SAN, else CN (only with cn_fallback, a host name or IP), else
                        first URI SAN (to name a refused certificate; tls_check_leaf()
                        keeps it only when it matched); the name that matched when one
                        did.  A SAN longer than 255 bytes is never one. */
    char not_before[TLS_TIME_STR_MAX]; /* the leaf's validity, "2025-01-31 12:00:00 UTC" */
    char not_after[TLS_TIME_STR_MAX];
    char detail[256]; /* for chain rejections: OpenSSL's verify text and the subject of the
                         certificate at fault when it is not the leaf; for NAME_MISMATCH: the
                         peer host that was checked */
    int x509_error;   /* X509_V_ERR_* for chain rejections, else 0 */
    int depth;        /* chain depth of the certificate at fault (0 = leaf) */
    int sent;         /* chain rejections: certificates the peer sent, its leaf included */
    bool gap_in_ca;   /* chain rejections: tls.ca holds a certificate named like the leaf's
                         issuer (tls_chain_note()) */
};

/* The outcome of verifying one peer; owned by the caller of tls_ssl_new(). */
struct tls_verify_result {
    enum tls_reject reject;
    bool verified; /* the §4 rules ran to the end and passed */
    struct tls_peer_info peer;
    /*
     * What the peer itself said, recorded by the context's info and message callbacks (both
     * roles).  alert_received: the peer sent us a fatal alert (its first one is in alert,
     * an SSL_AD_* / TLS AlertDescription code), during the handshake or, under TLS 1.3, as
     * the first record after it.  first_record: the first 5 bytes the peer sent (a TLS record
     * header, or the start of a plaintext answer such as "HTTP/"), n_first_record of them.
     */
    bool alert_received;
    int alert;
    unsigned char first_record[5];
    size_t n_first_record;
    /* We refused a renegotiation the peer asked for (sent it a no_renegotiation alert). */
    bool renegotiation_refused;
    /* CLIENT: we sent the server a certificate (it asked for one, and ours suited it). */
    bool cert_sent;
};

struct tls_tickets;

struct tls_ctx_params {
    enum tls_role role;
    const char *cert_file;           /* PEM: leaf first, then intermediates */
    const char *key_file;            /* PEM, possibly encrypted */
    const char *key_passphrase_file; /* NULL: an encrypted key is an error, never a prompt */
    const char *ca_file;             /* PEM bundle of trusted CAs */
    const char *crl_file;            /* NULL or a PEM file with one or more CRLs */
    int min_version;                 /* TLS1_2_VERSION or TLS1_3_VERSION */
    int verify_depth;
    bool cn_fallback;
    bool session_resumption;
    bool client_cert_required; /* SERVER: require and verify a client certificate */
    const char *peer_host;     /* CLIENT: host checked against the server's SAN; sent
                                  as SNI unless it is an IP literal */
    const char *const *allow;  /* SERVER: allowed peer names (NULL = any) */
    size_t n_allow;
    /*
     * SERVER: the process's ticket keys (see "Session resumption" above), or NULL for
     * OpenSSL's per-context keys.  The context takes its own reference (tls_tickets_free()
     * by the caller is then safe at any time).  Ignored without session_resumption.
     */
    struct tls_tickets *tickets;
};

struct tls_ctx;

/*
 * tls_ctx_new(p, err, errlen):
 * Build a context for one listener from ${p}: TLS 1.2 minimum (or ${p}->min_version), no
 * legacy ciphers, no renegotiation or compression, the certificate chain and key, the CA
 * bundle, the CRLs (every CA's CRL is then required: X509_V_FLAG_CRL_CHECK_ALL) and
 * verify_depth.  It refuses, naming the file and the reason in ${err}: unreadable or non-PEM
 * files, an encrypted key without a passphrase file or with a wrong one, a key that does not
 * match the certificate, a certificate that our own peers would reject for lacking the EKU
 * of our role (serverAuth for SERVER, clientAuth for CLIENT).  An expired or not yet valid
 * certificate is loaded: only a renewal fixes it, and refusing would crash-loop a restart
 * (ferry check reports it; ferry run logs it and /readyz is 503).
 * A verify_depth <= 0 means 4.  Strings in ${p} are copied.  Returns the context, or NULL.
 */
struct tls_ctx *tls_ctx_new(const struct tls_ctx_params *p, char *err, size_t errlen);

/*
 * tls_ctx_free(t):
 * Release ${t}.  SSL objects made from it keep the SSL_CTX alive by reference counting, so
 * it may be freed while connections still run.  tls_ctx_free(NULL) does nothing.
 */
void tls_ctx_free(struct tls_ctx *t);

/*
 * tls_ssl_new(t, result):
 * A new SSL for one connection, in the role of ${t}.  The §4 verification writes its outcome
 * to ${result} during the handshake, so ${result} must outlive the handshake (keep it in the
 * connection object).  A CLIENT SSL has SNI set and offers the last session of its peer.
 * An inbound SSL that requires client certificates records TLS_REJECT_NO_CERT from the
 * context's info callback: do not replace it with SSL_set_info_callback().
 * Returns the SSL (owned by the caller), or NULL on OOM.
 */
SSL *tls_ssl_new(struct tls_ctx *t, struct tls_verify_result *result);

/*
 * tls_ssl_set_result(ssl, result):
 * Attach ${result} (kept as it is) to the established ${ssl} in place of the one given to
 * tls_ssl_new(), when the SSL changes owner (a pooled connection); ${result} must outlive it
 * or be replaced again.
 */
void tls_ssl_set_result(SSL *ssl, struct tls_verify_result *result);

/*
 * tls_ssl_done(ssl, result):
 * Call once the handshake of ${ssl} succeeded.  Fills ${result}->peer from the peer
 * certificate when the verification callback did not run (a resumed session): rules 2 and 3
 * run again on it and set reject/verified.  After it, verified is true exactly when a peer
 * certificate passed §4; an inbound listener with client_cert: none leaves it false.
 */
void tls_ssl_done(SSL *ssl, struct tls_verify_result *result);

/* ---- tls_tickets.c: session ticket keys shared by every context of the process ---- */

/* Ticket keys rotate every period; a ticket is valid for one (session timeout). */
#define TLS_TICKET_PERIOD_S   3600
#define TLS_TICKET_MASTER_LEN 32 /* bytes of the random master secret */
#define TLS_TICKET_NAME_LEN   16 /* the key name OpenSSL writes at the start of each ticket */

/* The keys of one period, derived from the master secret (HKDF-SHA256). */
struct tls_ticket_keys {
    uint64_t period; /* unix time / TLS_TICKET_PERIOD_S */
    unsigned char name[TLS_TICKET_NAME_LEN];
    unsigned char aes_key[32];  /* AES-256-CBC */
    unsigned char hmac_key[32]; /* HMAC-SHA256 */
};

/*
 * tls_tickets_new(err, errlen):
 * A new ticket key source with a random master secret (RAND_priv_bytes), for one process: make
 * it once at start, pass it to every inbound tls_ctx_new() (all workers, every reload), free
 * it at exit.  It is immutable: threads share it without a lock.  Returns it, or NULL with
 * ${err}.
 */
struct tls_tickets *tls_tickets_new(char *err, size_t errlen);

/*
 * tls_tickets_new_from(master, len, err, errlen):
 * The same from a given master secret of ${len} bytes (16 to 64), copied: two objects made
 * from the same secret derive the same keys.  For tests (and a future shared secret file).
 */
struct tls_tickets *tls_tickets_new_from(const unsigned char *master, size_t len, char *err,
                                         size_t errlen);

/*
 * tls_tickets_free(t):
 * Drop the caller's reference to ${t}; the master secret is wiped (OPENSSL_cleanse) and freed
 * when the last context that uses it goes.  tls_tickets_free(NULL) does nothing.
 */
void tls_tickets_free(struct tls_tickets *t);

/*
 * tls_tickets_period(now):
 * The key period of the unix time ${now}: now / TLS_TICKET_PERIOD_S (0 before 1970).
 */
uint64_t tls_tickets_period(time_t now);

/*
 * tls_tickets_derive(t, period, out):
 * The keys of ${period}, a pure function of ${t}'s master secret and ${period}.  Returns 0,
 * or -1 when OpenSSL fails (then ${out} is wiped).
 */
int tls_tickets_derive(const struct tls_tickets *t, uint64_t period, struct tls_ticket_keys *out);

/*
 * tls_tickets_select(t, now, name, out):
 * The key selection of the ticket callback, at unix time ${now}.  ${name} NULL: the keys to
 * encrypt a new ticket with (the current period's), returns 1.  Else ${name} is the key name
 * read from a ticket (TLS_TICKET_NAME_LEN bytes): returns 1 for the current period's keys, 2
 * for the previous period's (accepted, but the ticket is to be renewed), 0 when it is neither
 * (older, or not ours: no resumption).  Returns -1 when OpenSSL fails.  ${out} is filled when
 * the result is 1 or 2, wiped otherwise.
 */
int tls_tickets_select(const struct tls_tickets *t, time_t now, const unsigned char *name,
                       struct tls_ticket_keys *out);

/* ---- tls_session.c: session resumption (see "Session resumption" above) ---- */

/*
 * tls_session_id_context(p, out, err, errlen):
 * The session id context of a SERVER context made from ${p}: SHA-256 over its trust policy,
 * the bytes of ${p}->ca_file and ${p}->crl_file, the effective verify_depth and min_version,
 * client_cert_required, cn_fallback and the allow list (in order).  The server's own
 * certificate and key are not part of it.  Writes TLS_SID_CTX_LEN bytes to ${out}.  Returns 0,
 * or -1 with ${err} naming the file that cannot be read.
 */
#define TLS_SID_CTX_LEN 32 /* == SSL_MAX_SID_CTX_LENGTH */
int tls_session_id_context(const struct tls_ctx_params *p, unsigned char out[TLS_SID_CTX_LEN],
                           char *err, size_t errlen);

/*
 * How long after the full handshake that verified a chain its session may still be resumed.
 * TLS 1.3 renews the ticket on every resumption (with a fresh session time), so without this
 * bound a client that keeps resuming would never have its chain verified again.
 */
#define TLS_SESSION_AUTH_MAX_S TLS_TICKET_PERIOD_S

/*
 * tls_session_auth_fresh(auth_time, now, peer):
 * May an inbound session whose chain was verified at unix time ${auth_time} be resumed at
 * ${now}?  Not when that is more than TLS_SESSION_AUTH_MAX_S ago or more than a minute ahead
 * (a clock step), nor when the peer certificate ${peer} (NULL: none) is expired or not yet
 * valid at ${now}.
 */
bool tls_session_auth_fresh(uint64_t auth_time, time_t now, X509 *peer);

/* ---- tls_verify.c: the §4 rules as pure functions ---- */

/*
 * tls_reject_from_x509(x509_err):
 * Map an X509_V_ERR_* code from chain building to the rule that failed.
 */
enum tls_reject tls_reject_from_x509(int x509_err);

/*
 * tls_check_leaf(leaf, need_server_auth, peer_host, allow, n_allow, cn_fallback, info):
 * Rules 2 and 3 of CONTRACT.md §4 on an already chain-verified ${leaf}.  EKU: the leaf must
 * have the extension and list serverAuth (${need_server_auth}) or clientAuth.  Name: when
 * ${peer_host} is set, a SAN must cover it (DNS name or IP literal); when ${allow} is set, one
 * of the leaf's names must match an entry.  The CN counts as a name only when the leaf has no
 * DNS or IP SAN and ${cn_fallback}; a leaf without any name is TLS_REJECT_NO_NAME only where
 * a name is checked (${peer_host} or ${allow} set).  Fills ${info} (see tls_peer_info_fill());
 * info->name becomes the name that matched (never a URI SAN that nothing matched), and on
 * NAME_MISMATCH info->detail = ${peer_host}.
 * Returns TLS_REJECT_NONE or the first rule that fails.
 */
enum tls_reject tls_check_leaf(X509 *leaf, bool need_server_auth, const char *peer_host,
                               const char *const *allow, size_t n_allow, bool cn_fallback,
                               struct tls_peer_info *info);

/*
 * tls_peer_info_fill(cert, cn_fallback, info):
 * Fill ${info}'s subject, issuer, sans, name, not_before and not_after from ${cert}; leaves
 * detail, x509_error and depth untouched.
 */
void tls_peer_info_fill(X509 *cert, bool cn_fallback, struct tls_peer_info *info);

/*
 * tls_time_str(t, buf, len):
 * Format ${t} as "2025-01-31 12:00:00 UTC" into ${buf}; "?" when it cannot be parsed.
 * Returns ${buf}.
 */
const char *tls_time_str(const ASN1_TIME *t, char *buf, size_t len);

/*
 * tls_time_rfc3339(t, buf, len):
 * Format ${t} as an RFC 3339 UTC timestamp, "2027-12-05T00:00:00Z", into ${buf}; "" when it
 * cannot be parsed or does not fit.  Returns ${buf}.
 */
const char *tls_time_rfc3339(const ASN1_TIME *t, char *buf, size_t len);

/*
 * tls_reject_str(r):
 * The stable snake_case label of ${r} ("eku_wrong"), for metrics and JSON.
 */
const char *tls_reject_str(enum tls_reject r);

/*
 * tls_reject_describe(r, role, info, buf, len):
 * The rule that failed in plain words, naming the peer, e.g. "certificate for node3.test
 * lacks extendedKeyUsage clientAuth" or "certificate for node2.test (CN=node2.test) was issued
 * by CN=Other CA, which is not in tls.ca".  ${role} is OUR role (SERVER checks clients).
 * Returns ${buf}.
 */
const char *tls_reject_describe(enum tls_reject r, enum tls_role role,
                                const struct tls_peer_info *info, char *buf, size_t len);

/* ---- tls_name.c ---- */

/*
 * tls_name_match_san(san, host):
 * Does the DNS SAN ${san} cover ${host}?  Case-insensitive; a wildcard only as the whole
 * left-most label ("*.example.org" covers "a.example.org", not "example.org" nor
 * "a.b.example.org"; "f*.example.org" and "*.org"-style two-label wildcards never match).
 * A trailing dot on either side is ignored.
 */
bool tls_name_match_san(const char *san, const char *host);

/*
 * tls_name_match_allow(entry, name):
 * Does the `allow` / `peers` entry ${entry} match the peer name ${name}?  Exactly
 * (case-insensitive), or "*.suffix" covering exactly one more label.  IP literals match only
 * themselves, compared as addresses ("::1" equals "0:0::1").  A URI entry (a SPIFFE ID,
 * "spiffe://site-b.example.org/ns/db/replicator") matches a URI name byte for byte (the path
 * is case-sensitive, no percent-decoding); one whose last path segment is "*" matches exactly
 * one more path segment ("spiffe://td/ns/db/" + "*" covers "spiffe://td/ns/db/x", not
 * ".../ns/db" nor ".../ns/db/a/b").  URI entries never match DNS/IP names and the other way
 * round.  A DNS name (or CN) that is not a host name (tls_name_is_host()) matches nothing.
 */
bool tls_name_match_allow(const char *entry, const char *name);

/*
 * tls_name_is_host(s):
 * Is ${s} a host name a peer may be known by: dot-separated labels of 1 to 63 letters, digits,
 * '-' and '_' ('_' for service names such as "_db.example.org"), at most 253 bytes, one
 * trailing dot allowed?  Not a wildcard, a URI, a quote, a space, a ':' nor a '/': a DNS SAN
 * that is not one is never a peer's identity nor its name in logs.
 */
bool tls_name_is_host(const char *s);

/*
 * tls_name_is_uri(s):
 * Is ${s} written as a URI ("scheme://...")?  URI entries and names are compared only with
 * each other (tls_name_match_allow()).
 */
bool tls_name_is_uri(const char *s);

/*
 * What ends a URI SAN too long to be compared (over 255 bytes) in tls_peer_info.sans: it is
 * shown cut to 250 bytes + this marker, and never matched.
 */
#define TLS_SAN_CUT "[...]"

/* The longest SPIFFE ID (SPIFFE ID standard §2.3: 2048 bytes). */
#define TLS_SPIFFE_ID_MAX 2048

/*
 * tls_name_is_ip(host, out, outlen):
 * Is ${host} an IPv4 or IPv6 literal?  When it is and ${out} is not NULL, writes its binary
 * form (4 or 16 bytes) and sets *${outlen}.
 */
bool tls_name_is_ip(const char *host, unsigned char *out, size_t *outlen);

/* ---- tls_alert.c: what the peer said, in plain words (CONTRACT.md §8) ---- */

/*
 * Our own side of a context, for explanations: which file holds our certificate, who issued
 * it, what we offer.  Filled by tls_ctx_self_info(); tests may fill it by hand.  Strings are
 * always NUL-terminated (maybe empty).
 */
struct tls_self_info {
    enum tls_role role;
    char cert_file[256];      /* tls.cert of the listener */
    char key_file[256];       /* tls.key */
    char ca_file[256];        /* tls.ca */
    char subject[TLS_DN_MAX]; /* our leaf, RFC 2253 */
    char issuer[TLS_DN_MAX];  /* our leaf's issuer, RFC 2253 */
    char sans[TLS_SANS_MAX];  /* "DNS:node1.test,IP:127.0.0.1" */
    char ekus[64];            /* "serverAuth,clientAuth", or "" when the leaf has no EKU */
    char not_before[TLS_TIME_STR_MAX];
    char not_after[TLS_TIME_STR_MAX];
    char key_type[32];   /* "EC P-256", "RSA 3072" */
    char peer_host[256]; /* CLIENT: the host we check and send as SNI */
    char versions[64];   /* "TLS 1.2 and TLS 1.3" (from tls.min_version) */
    char ciphers[512];   /* the TLS 1.2 suites we offer (TLS 1.3 uses OpenSSL's defaults) */
};

/*
 * tls_ctx_self_info(t, self):
 * Fill ${self} from ${t}: its role, files, leaf certificate, versions and ciphers.
 */
void tls_ctx_self_info(const struct tls_ctx *t, struct tls_self_info *self);

/*
 * tls_self_has_name(self):
 * Does our certificate (${self}->sans) have a DNS, IP or URI SAN, a name a peer's `allow` can
 * match?
 */
bool tls_self_has_name(const struct tls_self_info *self);

/*
 * tls_self_cn(self, buf, len):
 * The CN of our certificate's subject, or "" when it has none.  Returns ${buf}.
 */
const char *tls_self_cn(const struct tls_self_info *self, char *buf, size_t len);

/*
 * tls_alert_name(alert):
 * The RFC 8446 name of the TLS alert ${alert} ("unknown_ca", "certificate_required"), or
 * NULL for a code that is not a known alert.
 */
const char *tls_alert_name(int alert);

/*
 * tls_alert_from_error(e):
 * When the OpenSSL error code ${e} reports an alert the peer sent ("tlsv1 alert unknown ca",
 * "sslv3 alert bad certificate", "tlsv13 alert certificate required"), the alert's code;
 * else -1.
 */
int tls_alert_from_error(unsigned long e);

/*
 * tls_alert_describe(alert, who, self, buf, len):
 * The fatal alert ${alert} that ${who} ("peer node2.test:6984", "client 10.0.0.5:41234") sent
 * us, in plain words with the file to fix, e.g. "peer node2.test:6984 rejected our
 * certificate (alert unknown_ca): it does not trust the CA that issued /etc/ferry/node.crt
 * (issuer "CN=Site A CA"); add that CA to the peer's tls.ca".  ${self}->role is OUR role and
 * picks the wording (a server rejects our client certificate, a client our server
 * certificate).  ${self} may be NULL (no file is then named).  Returns ${buf}.
 */
const char *tls_alert_describe(int alert, const char *who, const struct tls_self_info *self,
                               char *buf, size_t len);

/*
 * tls_reset_describe(who, self, buf, len):
 * ${who} ("peer node2.test:6984") reset the connection right after our TLS 1.3 handshake,
 * before any byte of an answer, and we had sent it our certificate.  Under TLS 1.3 a client's
 * handshake ends before the server has judged its certificate; a server that then refuses it
 * and closes with our request unread resets the connection, and the reset destroys its alert
 * at our end.  Says so, with the likely causes of a bad_certificate alert (see
 * tls_alert_describe()).  ${self}->role is CLIENT; ${self} may be NULL.  Returns ${buf}.
 */
const char *tls_reset_describe(const char *who, const struct tls_self_info *self, char *buf,
                               size_t len);

/*
 * tls_plaintext_describe(bytes, n, who, role, buf, len):
 * Do the ${n} first bytes ${bytes} received from ${who} look like plaintext rather than a TLS
 * record?  When they do, write "peer X answered in plaintext: it is not a TLS port (is it
 * CouchDB itself rather than its ferry?)" (for an HTTP answer and ${role} CLIENT) or a
 * similar sentence to ${buf} and return 0; else return -1.
 */
int tls_plaintext_describe(const unsigned char *bytes, size_t n, const char *who,
                           enum tls_role role, char *buf, size_t len);

/*
 * tls_chain_note(sctx, info):
 * After X509_verify_cert() failed on ${sctx}: record in ${info} how many certificates the
 * peer sent (sent) and whether the trusted store, our tls.ca, holds a certificate whose
 * subject is the leaf's issuer (gap_in_ca), for tls_chain_gap_describe().
 */
void tls_chain_note(X509_STORE_CTX *sctx, struct tls_peer_info *info);

/*
 * tls_chain_gap_describe(r, role, info, ca_file, buf, len):
 * A chain rejection ${r} (TLS_REJECT_UNKNOWN_CA) of a peer that sent only its leaf, which is
 * not self-issued: the usual cause is a certificate file without its intermediate.  Writes
 * the sentence that says so, naming the missing issuer (${info}->issuer), whether our tls.ca
 * (${ca_file}, may be NULL) holds it, and what to append where; ${role} is OUR role (SERVER:
 * the peer is a client).  Returns 0 with the text in ${buf}, or -1 (${buf} untouched) when
 * the rejection is not that case (use tls_reject_describe()).
 */
int tls_chain_gap_describe(enum tls_reject r, enum tls_role role, const struct tls_peer_info *info,
                           const char *ca_file, char *buf, size_t len);

/* ---- tls_cert.c: fields of a certificate in words ---- */

/*
 * tls_cert_ekus(cert, buf, len):
 * The extendedKeyUsage purposes of ${cert} as "serverAuth,clientAuth" (other purposes by
 * their short names or OIDs); "" when it has no EKU extension.  Returns ${buf}.
 */
const char *tls_cert_ekus(X509 *cert, char *buf, size_t len);

/*
 * tls_cert_key_type(cert, buf, len):
 * The public key of ${cert} in words: "EC P-256", "RSA 2048", "Ed25519".  Returns ${buf}.
 */
const char *tls_cert_key_type(X509 *cert, char *buf, size_t len);

/* ---- tls_file.c: reading the files tls/ is given ---- */

/*
 * tls_file_open_regular(path, why, whylen):
 * Open ${path} for reading the way every file ferry reads is opened: O_NONBLOCK (a FIFO
 * swapped in for a certificate must not block the thread that reloads) and O_CLOEXEC, then
 * fstat() it (no race with a stat() before) and accept only a regular file.  Returns the
 * descriptor (the caller closes it), or -1 with the reason in ${why}: strerror(errno), or
 * "not a regular file (a FIFO)" and the like.
 */
int tls_file_open_regular(const char *path, char *why, size_t whylen);

/*
 * tls_file_kind(mode):
 * What a stat() mode that is not a regular file describes: "a FIFO", "a socket", "a
 * character device", "a block device", "a directory".
 */
const char *tls_file_kind(unsigned mode);

/* ---- tls_error.c: OpenSSL's errors in plain words ---- */

/*
 * tls_error_string(buf, len):
 * Drain this thread's OpenSSL error queue into one human-readable line in ${buf} (in queue
 * order: OpenSSL raises the innermost, most specific reason first; without OpenSSL's
 * file:line noise).  Writes "" when the queue is empty.  Returns ${buf}.
 */
const char *tls_error_string(char *buf, size_t len);

/*
 * tls_error_describe(e, who, res, self, buf, len):
 * A failed handshake with ${who}, from the first OpenSSL error ${e} of the failure, in plain
 * words: a peer alert (see tls_alert_describe()), a peer that is not speaking TLS ("wrong
 * version number"; ${res}->first_record, when ${res} is not NULL, tells a plaintext HTTP answer
 * from other bytes), no shared cipher, no shared protocol version, no shared signature
 * algorithm.  Returns 0 with the text in ${buf}, or -1 (and "" in ${buf}) when ${e} is none of
 * these, so that the caller keeps OpenSSL's own text.
 */
int tls_error_describe(unsigned long e, const char *who, const struct tls_verify_result *res,
                       const struct tls_self_info *self, char *buf, size_t len);

/* ---- tls_failure.c: a failed side of a connection as {reason, detail} (CONTRACT §4, §8) ---- */

/*
 * Where a proxied connection failed: which of its two sides (the client we accepted, or the
 * backend or peer we dialled) and how far that side had got.  The listener's role says which
 * side is TLS: the client side of an inbound listener (we are its server, TLS_ROLE_SERVER), the
 * peer side of an outbound one (we are its client, TLS_ROLE_CLIENT); the other side is plain.
 */
enum tls_fail_stage {
    TLS_FAIL_CLIENT_HANDSHAKE, /* inbound: the client's TLS handshake with us failed */
    TLS_FAIL_CLIENT_ERROR,     /* the client side failed while relaying (not a clean EOF) */
    TLS_FAIL_SERVER_CONNECT,   /* the backend's TCP connect (inbound), or the peer's TCP
                                  connect and TLS handshake (outbound), failed */
    TLS_FAIL_SERVER_CLOSED,    /* the backend/peer ended its stream with a request unanswered */
    TLS_FAIL_SERVER_ERROR,     /* the backend/peer side failed while relaying */
};

/* What a failure was, for the proxy to pick its close reason and log event. */
enum tls_fail_reason {
    TLS_FAIL_REJECTED,      /* we refused the other side's certificate: a §4 rule (the
                               verify result's reject) */
    TLS_FAIL_ALERT,         /* the other side refused us with a fatal alert */
    TLS_FAIL_RESET,         /* outbound, TLS 1.3: the peer reset the connection right after our
                               handshake, as a refusal of our certificate may look */
    TLS_FAIL_TLS,           /* TLS failed otherwise: no common version or cipher, not TLS, or
                               OpenSSL's own reason */
    TLS_FAIL_RENEGOTIATION, /* the client asked for a renegotiation, which ferry refuses */
    TLS_FAIL_CLOSED,        /* the other side closed the connection without an error */
    TLS_FAIL_SOCKET,        /* a socket error (errno), or no cause known */
};

#define TLS_FAIL_MAX_ERRORS 16   /* OpenSSL error codes kept per failure */
#define TLS_FAIL_DETAIL_LEN 1536 /* the longest detail, the causes of bad_certificate included */

/*
 * What the proxy saw of one failed side: plain data, so that tests can replay a recorded
 * failure.  Zero it, set the fields above `errors`, add the errors OpenSSL queued outside this
 * thread's queue (libevent keeps its own per bufferevent: tls_failure_add_error()), then call
 * tls_failure_collect() for the rest.  Strings are borrowed: they must outlive the report.
 */
struct tls_failure {
    enum tls_role role; /* the listener's: SERVER (inbound) or CLIENT (outbound) */
    enum tls_fail_stage stage;
    const char *remote;      /* the client's address, "10.0.0.5:41234" */
    const char *target;      /* the backend or peer as configured, "node2.test:6984" */
    const char *listener;    /* the listener's name */
    const char *config_path; /* the config file it came from; NULL: the embedded default */
    /* what tls/ recorded during the TLS side's handshake (§4 verdict, alerts, first bytes, the
       certificate we sent, a refused renegotiation); NULL: nothing */
    const struct tls_verify_result *verify;
    int sock_err;      /* errno right after the failure; 0: none */
    bool eof;          /* the side reported an end of stream (libevent's BEV_EVENT_EOF) */
    uint64_t bytes_in; /* bytes received from the backend/peer since it was connected */
    bool reused;       /* the backend/peer connection came from the pool: it served earlier
                          requests, so a reset is no verdict on our handshake */
    /* OpenSSL's packed error codes (ERR_get_error()) of the TLS side, in queue order: the most
       specific first.  Codes of library 0 (SSL_get_error() values that libevent queues among
       them) are ignored. */
    unsigned long errors[TLS_FAIL_MAX_ERRORS];
    size_t n_errors;
    int version; /* SSL_version() of the TLS side (TLS1_3_VERSION...); 0: unknown */
    /* our side of the TLS side (certificate file, issuer, what we offer), for the texts that
       name a file; its role must be ${role} */
    struct tls_self_info self;
};

/* What tls_failure_report() made of a struct tls_failure. */
struct tls_failure_report {
    enum tls_fail_reason reason;
    int alert; /* TLS_FAIL_ALERT: the alert the other side sent (tls_alert_name()); else -1 */
    char detail[TLS_FAIL_DETAIL_LEN]; /* the sentence for the log line and the 502 body */
};

/*
 * tls_failure_report(f, out):
 * Explain the failure ${f} in plain words into ${out}.  The first cause that applies wins:
 * - CLIENT_HANDSHAKE: a §4 rule we enforce (tls_chain_gap_describe(), else
 *   tls_reject_describe()), the client's alert (tls_alert_describe()), a failure tls/ can name
 *   (tls_error_describe(), tls_plaintext_describe()), OpenSSL's reasons, EOF, errno;
 * - SERVER_CONNECT: for a peer the same four, then for both kinds: no errno (or EAGAIN,
 *   EINTR) is a close, else errno ("cannot connect to ...");
 * - SERVER_CLOSED: a reset that may hide a refusal of our certificate under TLS 1.3 (outbound,
 *   not pooled, nothing answered, a certificate sent, ECONNRESET or EPIPE:
 *   tls_reset_describe()), else a close without an answer;
 * - SERVER_ERROR: the peer's alert while nothing is answered yet, OpenSSL's reasons, that TLS
 *   1.3 reset, errno;
 * - CLIENT_ERROR: a refused renegotiation, OpenSSL's reasons (inbound), errno, else "the
 *   connection failed".
 * When an outbound peer refused our certificate for who we are (bad_certificate,
 * access_denied, certificate_unknown, handshake_failure, or the reset), the detail ends with
 * the `ferry check --peer HOST:PORT -c FILE --listener NAME` to run.  Pure: reads only ${f}
 * (and the static error strings of OpenSSL and strerror()).
 */
void tls_failure_report(const struct tls_failure *f, struct tls_failure_report *out);

/*
 * tls_failure_add_error(f, e):
 * Append the packed OpenSSL error code ${e} to ${f}->errors; past TLS_FAIL_MAX_ERRORS it is
 * dropped.
 */
void tls_failure_add_error(struct tls_failure *f, unsigned long e);

/*
 * tls_failure_collect(f, t, ssl):
 * Fill what OpenSSL knows of the failure ${f} (role and stage set): append this thread's error
 * queue to ${f}->errors, emptying it; ${f}->version from ${ssl} (NULL: 0); ${f}->self from
 * the listener's context ${t} (NULL: none) when the failed side is TLS and the stage may
 * name our files (not TLS_FAIL_CLIENT_ERROR), else an empty one with ${f}->role.
 */
void tls_failure_collect(struct tls_failure *f, const struct tls_ctx *t, const SSL *ssl);

/* ---- tls_tunnel.c: the HTTP CONNECT exchange through an egress proxy (via:) ---- */

/* The longest answer head from a proxy that ferry reads. */
#define TLS_TUNNEL_HEAD_MAX 8192

enum tls_tunnel_result {
    TLS_TUNNEL_NEED_MORE,        /* no end of head yet: read more */
    TLS_TUNNEL_OK,               /* 2xx: the tunnel is open */
    TLS_TUNNEL_AUTH,             /* 407 (401): the proxy wants (other) credentials */
    TLS_TUNNEL_REFUSED,          /* 403 or any other status: its policy refuses the target */
    TLS_TUNNEL_PEER_UNREACHABLE, /* 500, 502, 503, 504: the proxy cannot open the tunnel */
    TLS_TUNNEL_BAD,              /* not an HTTP/1.x answer, or its head is too long */
    TLS_TUNNEL__COUNT
};

/*
 * tls_tunnel_request(out, cap, host, port, userpass, userpass_len):
 * Write the CONNECT request for ${host}:${port} (an IPv6 literal is bracketed) into ${out}:
 * request line, Host, and, when ${userpass} is not NULL, Proxy-Authorization: Basic of its
 * ${userpass_len} bytes ("user:password").  Returns its length, or 0 when it does not fit in
 * ${cap} bytes or ${host} holds a character a request line cannot carry.
 */
size_t tls_tunnel_request(char *out, size_t cap, const char *host, unsigned port,
                          const char *userpass, size_t userpass_len);

/*
 * tls_tunnel_answer(buf, n, head_len, status, why, whylen):
 * Read the proxy's answer to CONNECT from the ${n} bytes received so far.  NEED_MORE: no
 * end of head yet and every byte so far belongs to it.  Otherwise ${head_len} is the length
 * of the head (bytes after it belong to the tunnel), ${status} the status code (0 for BAD),
 * and ${why} the status line's reason phrase or, for BAD, what is wrong (printable only).
 * Interim 1xx answers (but 101) are skipped: the final answer after them decides, and
 * ${head_len} counts them too.  A 2xx is OK; 407 (and 401, which tinyproxy sends for wrong
 * credentials) AUTH; 500, 502, 503 and 504 PEER_UNREACHABLE (the proxy could not open the tunnel:
 * tinyproxy answers 500 when it cannot reach the peer, squid 503); any other status REFUSED; not
 * "HTTP/1.x NNN", or no end of head within TLS_TUNNEL_HEAD_MAX bytes, BAD.
 */
enum tls_tunnel_result tls_tunnel_answer(const char *buf, size_t n, size_t *head_len, int *status,
                                         char *why, size_t whylen);

/* tls_tunnel_result_str(r): a stable name of ${r}. */
const char *tls_tunnel_result_str(enum tls_tunnel_result r);

#endif /* FERRY_TLS_H */
