/*
 * tls_tunnel: the HTTP CONNECT exchange that opens a tunnel through an egress proxy before
 * ferry's TLS to the peer runs through it (RFC 9110 §9.3.6): the request ferry sends, and what
 * the proxy's answer head means.  Pure functions: the daemon (proxy/) and `ferry check --peer`
 * (certs/) do their own I/O and share these.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "tls.h"

static const char *const tunnel_result_names[TLS_TUNNEL__COUNT] = {
    [TLS_TUNNEL_NEED_MORE] = "need_more",
    [TLS_TUNNEL_OK] = "ok",
    [TLS_TUNNEL_AUTH] = "auth",
    [TLS_TUNNEL_REFUSED] = "refused",
    [TLS_TUNNEL_PEER_UNREACHABLE] = "peer_unreachable",
    [TLS_TUNNEL_BAD] = "bad_answer",
};

/*
 * tls_tunnel_result_str(r):
 * A stable name of ${r}.
 */
const char *
tls_tunnel_result_str(enum tls_tunnel_result r)
{
    if ((unsigned)r >= TLS_TUNNEL__COUNT) {
        return "unknown";
    }
    return tunnel_result_names[r];
}

/*
 * tls_tunnel_request(out, cap, host, port, userpass, userpass_len):
 * Write the CONNECT request for ${host}:${port} (an IPv6 literal is bracketed) into ${out}:
 * request line, Host, and, when ${userpass} is not NULL, Proxy-Authorization: Basic of its
 * ${userpass_len} bytes ("user:password").  Returns its length, or 0 when it does not fit in
 * ${cap} bytes or ${host} holds a character a request line cannot carry.
 */
size_t
tls_tunnel_request(char *out, size_t cap, const char *host, unsigned port, const char *userpass,
                   size_t userpass_len)
{
    char authority[300];
    unsigned char b64[1400];
    bool v6 = strchr(host, ':') != NULL;
    int n;

    for (const char *p = host; *p != '\0'; p++) {
        if (!isalnum((unsigned char)*p) && strchr(".-:_%", *p) == NULL) {
            return 0;
        }
    }
    if (port == 0 || port > 65535 || host[0] == '\0' ||
        snprintf(authority, sizeof(authority), v6 ? "[%s]:%u" : "%s:%u", host, port) >=
            (int)sizeof(authority)) {
        return 0;
    }
    if (userpass != NULL) {
        if (userpass_len == 0 || 4 * ((userpass_len + 2) / 3) + 1 > sizeof(b64)) {
            return 0;
        }
        (void)EVP_EncodeBlock(b64, (const unsigned char *)userpass, (int)userpass_len);
    }
    n = snprintf(out, cap, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s%s%sUser-Agent: ferry\r\n\r\n",
                 authority, authority, userpass != NULL ? "Proxy-Authorization: Basic " : "",
                 userpass != NULL ? (const char *)b64 : "", userpass != NULL ? "\r\n" : "");
    if (userpass != NULL) {
        OPENSSL_cleanse(b64, sizeof(b64));
    }
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0) {
            OPENSSL_cleanse(out, cap);
        }
        return 0;
    }
    return (size_t)n;
}

/*
 * ${n} bytes of ${s} as printable text in ${out} (others as \xNN), cut to fit.  Quotes and
 * backslashes stay: the log and the 502 body escape them once, where they are written.
 */
static void
printable(const char *s, size_t n, char *out, size_t len)
{
    size_t o = 0;

    for (size_t i = 0; i < n && o + 5 < len; i++) {
        unsigned char ch = (unsigned char)s[i];

        if (ch >= 0x20 && ch < 0x7f) {
            out[o++] = (char)ch;
        } else {
            o += (size_t)snprintf(out + o, len - o, "\\x%02x", ch);
        }
    }
    out[o] = '\0';
}

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
enum tls_tunnel_result
tls_tunnel_answer(const char *buf, size_t n, size_t *head_len, int *status, char *why,
                  size_t whylen)
{
    static const char proto[] = "HTTP/1.";
    const char *eol, *end = NULL, *reason, *rend;
    size_t i, cmp = n < sizeof(proto) - 1 ? n : sizeof(proto) - 1;

    *head_len = 0;
    *status = 0;
    if (whylen > 0) {
        why[0] = '\0';
    }
    if (memcmp(buf, proto, cmp) != 0 || (n > 7 && buf[7] != '0' && buf[7] != '1')) {
        char got[64];

        printable(buf, n < 12 ? n : 12, got, sizeof(got));
        snprintf(why, whylen, "the answer does not start with HTTP/1.0 or HTTP/1.1 but \"%s\"",
                 got);
        return TLS_TUNNEL_BAD;
    }
    for (i = 0; i + 1 < n; i++) {
        if (buf[i] == '\n' && buf[i + 1] == '\n') {
            end = buf + i + 2;
            break;
        }
        if (i + 3 < n && memcmp(buf + i, "\r\n\r\n", 4) == 0) {
            end = buf + i + 4;
            break;
        }
    }
    eol = memchr(buf, '\n', n);
    if (eol != NULL) {
        /* "HTTP/1.x SSS reason": a space, three digits, then a space or the end of line. */
        const char *p = buf + 8;

        if (eol - buf < 12 || p[0] != ' ' || !isdigit((unsigned char)p[1]) ||
            !isdigit((unsigned char)p[2]) || !isdigit((unsigned char)p[3]) ||
            (p[4] != ' ' && p[4] != '\r' && p[4] != '\n') || p[1] == '0') {
            char got[80];

            printable(buf, (size_t)(eol - buf) < 40 ? (size_t)(eol - buf) : 40, got, sizeof(got));
            snprintf(why, whylen, "malformed status line \"%s\"", got);
            return TLS_TUNNEL_BAD;
        }
        *status = (p[1] - '0') * 100 + (p[2] - '0') * 10 + (p[3] - '0');
    }
    if (end == NULL) {
        *status = 0;
        if (n >= TLS_TUNNEL_HEAD_MAX) {
            snprintf(why, whylen, "the answer's head is longer than %d bytes", TLS_TUNNEL_HEAD_MAX);
            return TLS_TUNNEL_BAD;
        }
        return TLS_TUNNEL_NEED_MORE;
    }
    if (eol == NULL) {
        return TLS_TUNNEL_BAD; /* not reached: an end of head holds a '\n' */
    }
    *head_len = (size_t)(end - buf);
    rend = eol[-1] == '\r' ? eol - 1 : eol; /* eol - buf >= 12 */
    reason = buf + 13 <= rend ? buf + 13 : rend;
    printable(reason, (size_t)(rend - reason), why, whylen);
    if (*status >= 100 && *status <= 199 && *status != 101) {
        /* An interim answer (100 Continue, 102, 103): the final one follows it. */
        size_t rest_len;
        enum tls_tunnel_result r;

        r = tls_tunnel_answer(end, n - *head_len, &rest_len, status, why, whylen);
        if (r == TLS_TUNNEL_NEED_MORE && n >= TLS_TUNNEL_HEAD_MAX) {
            snprintf(why, whylen, "the answer's head is longer than %d bytes", TLS_TUNNEL_HEAD_MAX);
            r = TLS_TUNNEL_BAD;
        }
        if (r == TLS_TUNNEL_NEED_MORE || r == TLS_TUNNEL_BAD) {
            *head_len = 0;
            *status = 0;
        } else {
            *head_len += rest_len;
        }
        return r;
    }
    if (*status >= 200 && *status <= 299) {
        return TLS_TUNNEL_OK;
    }
    if (*status == 407 || *status == 401) {
        return TLS_TUNNEL_AUTH;
    }
    if (*status == 500 || *status == 502 || *status == 503 || *status == 504) {
        return TLS_TUNNEL_PEER_UNREACHABLE;
    }
    return TLS_TUNNEL_REFUSED;
}
