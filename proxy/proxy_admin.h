/*
 * proxy_admin: the admin endpoint (GET /livez, /readyz, /healthz, /metrics), as the control
 * thread sees it: its lifetime (proxy.c only; worker-side files count through proxy_stats.h
 * and never include this header), and the pure decisions behind /livez and /readyz and the
 * admin request line, apart from the event loop so that unit tests can reach them
 * (tests/unit/test_admin.c).
 */
#ifndef FERRY_PROXY_ADMIN_H
#define FERRY_PROXY_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct proxy;

/*
 * proxy_admin_open(p, err, errlen):
 * Start the admin listener of ${p}'s current configuration when `admin.listen` is set, and its
 * backend probes.  Returns 0, or -1 with ${err} naming the address.
 */
int proxy_admin_open(struct proxy *p, char *err, size_t errlen);

/*
 * proxy_admin_free(p):
 * Stop the admin listener of ${p}, if any: its socket, open admin connections and probes.
 */
void proxy_admin_free(struct proxy *p);

/*
 * proxy_admin_refresh(p):
 * At start and after each reload: re-read the expiry of every certificate and CA file of the
 * current configuration, forget the state of a backend or peer that a listener no longer
 * points at, and rebuild the backend probes.
 */
void proxy_admin_refresh(struct proxy *p);

/*
 * proxy_admin_same(p):
 * Does the running admin listener already serve what ${p}'s current configuration asks for?
 */
bool proxy_admin_same(const struct proxy *p);

/* A backend or peer is down after this many failed attempts in a row (or one failed probe). */
#define PROXY_UPSTREAM_DOWN_AFTER 3

/* /livez is 503 when a worker's loop has not beaten (PROXY_BEAT_MS) for this long. */
#define PROXY_LIVE_STALL_MS 5000

/* What the recorded outcomes say about a backend or peer. */
enum proxy_reach {
    PROXY_REACH_UNKNOWN, /* no success yet and not enough failures to call it down */
    PROXY_REACH_UP,      /* the last attempt (or probe) succeeded, or fewer than 3 failed since */
    PROXY_REACH_DOWN,    /* 3 attempts failed in a row, or the last probe failed */
};

/*
 * proxy_admin_reach_of(oks, fails, probe_failed):
 * The state of a backend or peer with ${oks} successes ever, ${fails} failed attempts since
 * the last success and ${probe_failed} (the last probe failed, nothing succeeded since):
 * DOWN after PROXY_UPSTREAM_DOWN_AFTER failures in a row or a failed probe; UP after one
 * success; UNKNOWN before any success.
 */
enum proxy_reach proxy_admin_reach_of(uint64_t oks, unsigned fails, bool probe_failed);

/*
 * proxy_admin_reach_ready(inbound, r):
 * Does a listener whose backend (${inbound}) or peer is in state ${r} let /readyz answer 200?
 * DOWN never does.  UNKNOWN: an inbound backend is probed at start, so it is not ready until
 * the first probe or connection says it answers; an outbound peer is not probed (a probe would
 * be a TLS handshake with another site), so no traffic yet is no evidence against it: ready.
 */
bool proxy_admin_reach_ready(bool inbound, enum proxy_reach r);

/*
 * proxy_admin_loop_stalled(now_ms, beat_ms):
 * Has an event loop whose last beat was at ${beat_ms} (monotonic ms) stalled at ${now_ms}:
 * more than PROXY_LIVE_STALL_MS without a beat?
 */
bool proxy_admin_loop_stalled(long long now_ms, long long beat_ms);

/* A parsed admin request line: "METHOD /path?query HTTP/1.x". */
struct proxy_admin_req {
    char method[16];
    char path[256];
    char query[256];
    bool http10;
};

/*
 * proxy_admin_parse(line, len, req, why):
 * Parse the request line ${line} (${len} bytes, without its CRLF) into ${req}.  Returns 0, or
 * the HTTP status to refuse it with (400 malformed, 414 target too long, 505 a version other
 * than HTTP/1.0 and 1.1) and ${why} pointing at a static explanation.
 */
int proxy_admin_parse(const char *line, size_t len, struct proxy_admin_req *req, const char **why);

/* What /readyz may leave out of its verdict (?exclude=). */
#define PROXY_EXCLUDE_BACKENDS 1u
#define PROXY_EXCLUDE_PEERS    2u

/*
 * proxy_admin_exclude(query, out, why, whylen):
 * Parse the /readyz query ${query} ("exclude=peers", "exclude=backends", both comma-separated
 * or repeated) into PROXY_EXCLUDE_* bits in *${out}.  Returns 0, or -1 with ${why} naming the
 * unknown parameter, the unknown value or the empty value.
 */
int proxy_admin_exclude(const char *query, unsigned *out, char *why, size_t whylen);

/* The files /readyz watches: tls.cert, tls.ca and tls.crl of every listener. */
enum proxy_file_kind {
    PROXY_FILE_CERT,
    PROXY_FILE_CA,
    PROXY_FILE_CRL,
};

/* What a watched file says about the handshakes that depend on it. */
enum proxy_file_state {
    PROXY_FILE_OK,
    PROXY_FILE_UNREADABLE,    /* missing, unreadable, or no PEM certificate (CRL) in it */
    PROXY_FILE_EXPIRED,       /* a certificate past notAfter, a CRL past nextUpdate */
    PROXY_FILE_NOT_YET_VALID, /* a certificate before its notBefore */
};

/*
 * proxy_admin_file_state(readable, not_before, not_after, now):
 * The state of a file that is ${readable}, whose certificates' latest notBefore is
 * ${not_before} (0: not checked) and whose earliest notAfter (CRLs: nextUpdate) is
 * ${not_after} (0: none), at Unix time ${now}.  Only PROXY_FILE_OK lets /readyz say 200.
 */
enum proxy_file_state proxy_admin_file_state(bool readable, long long not_before,
                                             long long not_after, long long now);

#endif /* FERRY_PROXY_ADMIN_H */
