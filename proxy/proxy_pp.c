/*
 * proxy_pp: the PROXY protocol v1/v2 parser and v2 builder (see proxy_pp.h).
 *
 * v1 is scanned field by field up to the first LF (at most 107 bytes).  A complete field is
 * checked in full (inet_pton() for addresses); the field cut off by the end of what has
 * arrived is checked as a prefix: could more bytes still make it valid?  That is what lets
 * "PROXY TCP4 256" fail before its CRLF while every prefix of a good line asks for more.
 * v2 is checked byte by byte in header order, and its TLVs as far as they have arrived.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "proxy_pp.h"

static const unsigned char pp_v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                            0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char pp_v1_sig[] = "PROXY ";
#define PP_V1_SIG_LEN (sizeof(pp_v1_sig) - 1)
#define PP_V2_HEAD    16 /* signature, version/command, family/transport, length */

/* v2 byte 13: version 2 in the high nibble, the command in the low one. */
#define PP_V2_LOCAL 0x0
#define PP_V2_PROXY 0x1
/* v2 byte 14: family (high nibble) and transport (low nibble), the combinations of §2.2. */
#define PP_V2_UNSPEC      0x00
#define PP_V2_TCP4        0x11
#define PP_V2_UDP4        0x12
#define PP_V2_TCP6        0x21
#define PP_V2_UDP6        0x22
#define PP_V2_UNIX_STREAM 0x31
#define PP_V2_UNIX_DGRAM  0x32
#define PP_V2_ADDR4       12 /* 2 x 4 address bytes, 2 x 2 port bytes */
#define PP_V2_ADDR6       36 /* 2 x 16 address bytes, 2 x 2 port bytes */
#define PP_V2_TLV_HEAD    3  /* type, length (big endian) */
#define PP_V2_LEN_MAX     0xFFFF

/* The TLS TLV of §2.2.6 and its sub-TLVs. */
#define PP2_TYPE_SSL            0x20
#define PP2_CLIENT_SSL          0x01
#define PP2_CLIENT_CERT_CONN    0x02
#define PP2_SUBTYPE_SSL_VERSION 0x21
#define PP2_SUBTYPE_SSL_CN      0x22
#define PP2_SSL_HEAD            5 /* client (1 byte), verify (4 bytes) */

/* Wire bytes shown in a reason: at most this many, then "...". */
#define PP_QUOTE_BYTES 32
#define PP_QUOTE_SIZE  ((size_t)PP_QUOTE_BYTES * 4 + sizeof("..."))

/* The fields of a v1 TCP line, in order. */
enum pp_field {
    PP_PROTO,
    PP_SRC,
    PP_DST,
    PP_SPORT,
    PP_DPORT,
};

static const char *const pp_field_name[] = {"protocol", "source address", "destination address",
                                            "source port", "destination port"};

static enum proxy_pp_result pp_fail(enum proxy_pp_result r, char *why, size_t whylen,
                                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Return ${r} with its reason written into ${why} (when not NULL). */
static enum proxy_pp_result
pp_fail(enum proxy_pp_result r, char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;

    if (why != NULL && whylen > 0) {
        va_start(ap, fmt);
        (void)vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return r;
}

/*
 * ${s}[0..n) as text for a reason, into ${q}: printable ASCII as it is, anything else (and
 * '"', '\') as \xNN, so that no byte from the wire reaches a log raw.  Returns ${q}.
 */
static const char *
pp_quote(char q[PP_QUOTE_SIZE], const unsigned char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    for (size_t i = 0; i < n && i < PP_QUOTE_BYTES; i++) {
        if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\') {
            q[o++] = (char)s[i];
        } else {
            q[o++] = '\\';
            q[o++] = 'x';
            q[o++] = hex[s[i] >> 4];
            q[o++] = hex[s[i] & 0xf];
        }
    }
    if (n > PP_QUOTE_BYTES) {
        memcpy(q + o, "...", 3);
        o += 3;
    }
    q[o] = '\0';
    return q;
}

/* Is ${c} a decimal digit (not isdigit(): no locale)? */
static bool
pp_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* Is ${c} a hexadecimal digit? */
static bool
pp_xdigit(unsigned char c)
{
    return pp_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/*
 * Can ${s}[0..n) still become an IPv4 dotted quad as inet_pton() reads it: four numbers
 * 0..255 without leading zeros, separated by single dots?  A whole address passes too.
 */
static bool
pp_v4_prefix(const unsigned char *s, size_t n)
{
    unsigned dots = 0, value = 0;
    size_t digits = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.') {
            if (digits == 0 || ++dots > 3) {
                return false;
            }
            digits = 0;
            value = 0;
        } else if (pp_digit(s[i])) {
            if (digits == 1 && value == 0) {
                return false; /* a leading zero */
            }
            value = value * 10 + (unsigned)(s[i] - '0');
            if (++digits > 3 || value > 255) {
                return false;
            }
        } else {
            return false;
        }
    }
    return true;
}

/*
 * Can ${s}[0..n) still become an IPv6 address as inet_pton() reads it: groups of 1..4 hex
 * digits separated by ':', at most one "::" standing for at least one zero group, eight
 * groups in all, the last two of which may be written as a dotted quad?  A whole address
 * passes too.
 */
static bool
pp_v6_prefix(const unsigned char *s, size_t n)
{
    size_t groups = 0;  /* groups ended by a ':' */
    size_t cur = 0;     /* hex digits of the group being read */
    bool dbl = false;   /* a "::" seen */
    bool colon = false; /* the last byte is a single ':' after a group */
    size_t i = 0;

    if (n > 0 && s[0] == ':') {
        if (n == 1) {
            return true;
        }
        if (s[1] != ':') {
            return false;
        }
        dbl = true;
        i = 2;
    }
    for (; i < n; i++) {
        if (pp_xdigit(s[i])) {
            if (++cur > 4) {
                return false;
            }
            colon = false;
        } else if (s[i] == ':') {
            if (cur > 0) {
                groups++;
                cur = 0;
                colon = true;
            } else if (colon && !dbl) {
                dbl = true;
                colon = false;
            } else {
                return false; /* ":::" or a second "::" */
            }
        } else if (s[i] == '.') {
            /* The group being read starts a dotted quad: the address's last 32 bits. */
            if (cur == 0 || !pp_v4_prefix(s + i - cur, n - (i - cur))) {
                return false;
            }
            return dbl ? groups + 2 <= 7 : groups + 2 == 8;
        } else {
            return false;
        }
    }
    /* One more group is due after a group's ':' or within one; "::" needs room for a zero. */
    return groups + (cur > 0 || colon ? 1 : 0) <= (dbl ? 7u : 8u);
}

/*
 * Can ${s}[0..n) still become a v1 port: 0..65535 in decimal, no sign, no leading zero?
 * A whole port passes too.
 */
static bool
pp_port_prefix(const unsigned char *s, size_t n)
{
    unsigned long value = 0;

    if (n > 5 || (n > 1 && s[0] == '0')) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!pp_digit(s[i])) {
            return false;
        }
        value = value * 10 + (unsigned long)(s[i] - '0');
    }
    return value <= 65535;
}

/* Can ${s}[0..n) still become the v1 protocol "TCP4", "TCP6" or "UNKNOWN"? */
static bool
pp_proto_prefix(const unsigned char *s, size_t n)
{
    return (n <= 4 && (memcmp(s, "TCP4", n) == 0 || memcmp(s, "TCP6", n) == 0)) ||
           (n <= 7 && memcmp(s, "UNKNOWN", n) == 0);
}

/*
 * Can field ${f} of a v1 line, cut off at ${s}[0..n) by the end of what has arrived, still
 * become valid?  ${family} is the line's (AF_INET or AF_INET6) once the protocol is read.
 */
static bool
pp_v1_prefix(enum pp_field f, int family, const unsigned char *s, size_t n)
{
    switch (f) {
    case PP_PROTO:
        return pp_proto_prefix(s, n);
    case PP_SRC:
    case PP_DST:
        return family == AF_INET ? pp_v4_prefix(s, n) : pp_v6_prefix(s, n);
    case PP_SPORT:
    case PP_DPORT:
        return pp_port_prefix(s, n);
    }
    return false;
}

/* A sockaddr of ${family} for ${addr} (4 or 16 bytes) and ${port} (host order) into ${ss}. */
static void
pp_sockaddr(struct sockaddr_storage *ss, int family, const unsigned char *addr, unsigned port)
{
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET) {
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};

        memcpy(&sin.sin_addr, addr, 4);
        memcpy(ss, &sin, sizeof(sin));
    } else {
        struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};

        memcpy(&sin6.sin6_addr, addr, 16);
        memcpy(ss, &sin6, sizeof(sin6));
    }
}

/* What a v1 TCP line says so far. */
struct pp_v1 {
    int family;                /* AF_INET (TCP4), AF_INET6 (TCP6), 0 (UNKNOWN) */
    unsigned char addr[2][16]; /* source, destination */
    unsigned port[2];
};

/*
 * Check the whole field ${f} at ${buf}[start..start + n) of a v1 line and note its value in
 * ${v}.  PROXY_PP_OK, or PROXY_PP_MALFORMED with the reason.
 */
static enum proxy_pp_result
pp_v1_field(struct pp_v1 *v, enum pp_field f, const unsigned char *buf, size_t start, size_t n,
            char *why, size_t whylen)
{
    const unsigned char *s = buf + start;
    const char *name = pp_field_name[f];
    char q[PP_QUOTE_SIZE];
    char text[PROXY_PP_V1_MAX + 1];
    unsigned long value = 0;

    switch (f) {
    case PP_PROTO:
        if (n == 4 && memcmp(s, "TCP4", 4) == 0) {
            v->family = AF_INET;
        } else if (n == 4 && memcmp(s, "TCP6", 4) == 0) {
            v->family = AF_INET6;
        } else if (n == 7 && memcmp(s, "UNKNOWN", 7) == 0) {
            v->family = 0;
        } else {
            return pp_fail(PROXY_PP_MALFORMED, why, whylen,
                           "v1 header: unknown protocol \"%s\" at byte %zu (TCP4, TCP6 or UNKNOWN)",
                           pp_quote(q, s, n), start);
        }
        return PROXY_PP_OK;
    case PP_SRC:
    case PP_DST:
        /* inet_pton() reads up to a NUL: one inside the field must not cut it short. */
        memcpy(text, s, n);
        text[n] = '\0';
        if (memchr(s, '\0', n) != NULL || inet_pton(v->family, text, v->addr[f - PP_SRC]) != 1) {
            return pp_fail(PROXY_PP_MALFORMED, why, whylen,
                           "v1 header: %s \"%s\" at byte %zu is not an %s address", name,
                           pp_quote(q, s, n), start, v->family == AF_INET ? "IPv4" : "IPv6");
        }
        return PROXY_PP_OK;
    case PP_SPORT:
    case PP_DPORT:
        for (size_t i = 0; i < n; i++) {
            if (!pp_digit(s[i])) {
                return pp_fail(PROXY_PP_MALFORMED, why, whylen,
                               "v1 header: %s \"%s\" at byte %zu is not a decimal number", name,
                               pp_quote(q, s, n), start);
            }
        }
        if (n > 1 && s[0] == '0') {
            return pp_fail(PROXY_PP_MALFORMED, why, whylen,
                           "v1 header: %s \"%s\" at byte %zu has a leading zero", name,
                           pp_quote(q, s, n), start);
        }
        for (size_t i = 0; i < n && value <= 65535; i++) {
            value = value * 10 + (unsigned long)(s[i] - '0');
        }
        if (value > 65535) {
            return pp_fail(PROXY_PP_MALFORMED, why, whylen,
                           "v1 header: %s \"%s\" at byte %zu is over 65535", name,
                           pp_quote(q, s, n), start);
        }
        v->port[f - PP_SPORT] = (unsigned)value;
        return PROXY_PP_OK;
    }
    return PROXY_PP_MALFORMED;
}

/* A v1 line that has not ended in ${n} bytes: NEED_MORE, or OVERSIZED at 107 bytes. */
static enum proxy_pp_result
pp_v1_unended(size_t n, char *why, size_t whylen)
{
    if (n >= PROXY_PP_V1_MAX) {
        return pp_fail(PROXY_PP_OVERSIZED, why, whylen, "v1 header has no CRLF within %d bytes",
                       PROXY_PP_V1_MAX);
    }
    return PROXY_PP_NEED_MORE;
}

/*
 * The end of a v1 line at ${buf}[p]: CR, then the LF at ${lim} (when ${lf}).  OK with the
 * header's length, NEED_MORE / OVERSIZED when the line goes on past what has arrived, else
 * MALFORMED.
 */
static enum proxy_pp_result
pp_v1_crlf(const unsigned char *buf, size_t n, size_t p, size_t lim, bool lf,
           struct proxy_pp_header *h, char *why, size_t whylen)
{
    if (p == lim && lf) {
        return pp_fail(PROXY_PP_MALFORMED, why, whylen,
                       "v1 header: bare LF at byte %zu (the line must end with CRLF)", p);
    }
    if (buf[p] != '\r') {
        return pp_fail(PROXY_PP_MALFORMED, why, whylen,
                       "v1 header: space at byte %zu after the last field (only CRLF may follow)",
                       p);
    }
    if (p + 1 == lim) {
        if (!lf) {
            return pp_v1_unended(n, why, whylen);
        }
        h->len = lim + 1;
        return PROXY_PP_OK;
    }
    return pp_fail(PROXY_PP_MALFORMED, why, whylen,
                   "v1 header: CR at byte %zu is not followed by LF", p);
}

/*
 * The rest of "PROXY UNKNOWN" from ${buf}[p] (just past the word): CRLF, or a space and
 * anything up to CRLF, which the spec says to ignore.
 */
static enum proxy_pp_result
pp_v1_unknown(const unsigned char *buf, size_t n, size_t p, size_t lim, bool lf,
              struct proxy_pp_header *h, char *why, size_t whylen)
{
    h->local = true;
    if (p == lim || buf[p] == '\r') {
        return pp_v1_crlf(buf, n, p, lim, lf, h, why, whylen);
    }
    if (!lf) {
        return pp_v1_unended(n, why, whylen);
    }
    if (buf[lim - 1] != '\r') {
        return pp_fail(PROXY_PP_MALFORMED, why, whylen,
                       "v1 header: bare LF at byte %zu (the line must end with CRLF)", lim);
    }
    h->len = lim + 1;
    return PROXY_PP_OK;
}

/* A v1 header: "PROXY " has been seen at ${buf}. */
static enum proxy_pp_result
pp_v1_parse(const unsigned char *buf, size_t n, struct proxy_pp_header *h, char *why, size_t whylen)
{
    size_t max = n < PROXY_PP_V1_MAX ? n : PROXY_PP_V1_MAX;
    const unsigned char *nl = memchr(buf, '\n', max);
    bool lf = nl != NULL;
    size_t lim = lf ? (size_t)(nl - buf) : max; /* the LF, or the end of what is looked at */
    size_t p = PP_V1_SIG_LEN;
    struct pp_v1 v = {0};
    char q[PP_QUOTE_SIZE];
    enum proxy_pp_result r;

    h->version = 1;
    for (enum pp_field f = PP_PROTO; f <= PP_DPORT; f++) {
        size_t start = p;

        while (p < lim && buf[p] != ' ' && buf[p] != '\r') {
            p++;
        }
        if (p == lim && !lf) {
            /* The field goes on past what has arrived: is it still a valid beginning? */
            if (!pp_v1_prefix(f, v.family, buf + start, p - start)) {
                return pp_fail(PROXY_PP_MALFORMED, why, whylen,
                               "v1 header: %s \"%s\" at byte %zu cannot become valid",
                               pp_field_name[f], pp_quote(q, buf + start, p - start), start);
            }
            return pp_v1_unended(n, why, whylen);
        }
        if (p == start) {
            return pp_fail(PROXY_PP_MALFORMED, why, whylen,
                           "v1 header: empty %s at byte %zu (fields are separated by one space)",
                           pp_field_name[f], start);
        }
        r = pp_v1_field(&v, f, buf, start, p - start, why, whylen);
        if (r != PROXY_PP_OK) {
            return r;
        }
        if (f == PP_PROTO && v.family == 0) {
            return pp_v1_unknown(buf, n, p, lim, lf, h, why, whylen);
        }
        if (f == PP_DPORT) {
            break;
        }
        if (p == lim || buf[p] != ' ') {
            return pp_fail(PROXY_PP_MALFORMED, why, whylen,
                           "v1 header: the line ends at byte %zu after the %s: the %s is missing",
                           p, pp_field_name[f], pp_field_name[f + 1]);
        }
        p++;
    }
    r = pp_v1_crlf(buf, n, p, lim, lf, h, why, whylen);
    if (r == PROXY_PP_OK) {
        pp_sockaddr(&h->src, v.family, v.addr[0], v.port[0]);
        pp_sockaddr(&h->dst, v.family, v.addr[1], v.port[1]);
    }
    return r;
}

/* The address block's size for v2 PROXY family/transport ${fam}; 0 for local ones, -1 bad. */
static int
pp_v2_addr_len(unsigned fam, char *why, size_t whylen)
{
    switch (fam) {
    case PP_V2_TCP4:
        return PP_V2_ADDR4;
    case PP_V2_TCP6:
        return PP_V2_ADDR6;
    case PP_V2_UNSPEC:
    case PP_V2_UNIX_STREAM:
    case PP_V2_UNIX_DGRAM:
        /* No address ferry can use: the spec's UNSPEC mode, the body is skipped. */
        return 0;
    case PP_V2_UDP4:
    case PP_V2_UDP6:
        (void)pp_fail(PROXY_PP_MALFORMED, why, whylen,
                      "v2 header: UDP over %s (0x%02x at byte 13): ferry relays TCP",
                      fam == PP_V2_UDP4 ? "IPv4" : "IPv6", fam);
        return -1;
    }
    (void)pp_fail(PROXY_PP_MALFORMED, why, whylen,
                  "v2 header: unknown address family and transport 0x%02x at byte 13", fam);
    return -1;
}

/* A v2 header: the 12-byte signature (or as much of it as has arrived) is at ${buf}. */
static enum proxy_pp_result
pp_v2_parse(const unsigned char *buf, size_t n, struct proxy_pp_header *h, char *why, size_t whylen)
{
    unsigned cmd, len;
    int addr_len = 0;
    size_t total, avail, p;

    if (n <= sizeof(pp_v2_sig)) {
        return PROXY_PP_NEED_MORE;
    }
    if (buf[12] >> 4 != 2) {
        return pp_fail(PROXY_PP_MALFORMED, why, whylen,
                       "v2 header: version %u at byte 12 (only 2 exists)",
                       (unsigned)(buf[12] >> 4));
    }
    cmd = buf[12] & 0x0fu;
    if (cmd != PP_V2_LOCAL && cmd != PP_V2_PROXY) {
        return pp_fail(PROXY_PP_MALFORMED, why, whylen,
                       "v2 header: command %u at byte 12 (only 0 LOCAL and 1 PROXY exist)", cmd);
    }
    if (n < 14) {
        return PROXY_PP_NEED_MORE;
    }
    /* LOCAL: the spec says to ignore the family, whatever it is. */
    if (cmd == PP_V2_PROXY && (addr_len = pp_v2_addr_len(buf[13], why, whylen)) < 0) {
        return PROXY_PP_MALFORMED;
    }
    if (n < PP_V2_HEAD) {
        return PROXY_PP_NEED_MORE;
    }
    len = (unsigned)buf[14] << 8 | buf[15];
    total = PP_V2_HEAD + len;
    if (total > PROXY_PP_MAX) {
        return pp_fail(PROXY_PP_OVERSIZED, why, whylen,
                       "v2 header: length %u at byte 14 makes a %zu-byte header, over ferry's "
                       "limit of %d bytes",
                       len, total, PROXY_PP_MAX);
    }
    if (len < (unsigned)addr_len) {
        return pp_fail(PROXY_PP_MALFORMED, why, whylen,
                       "v2 header: length %u at byte 14 is too short for the TCP over %s "
                       "addresses (%d bytes)",
                       len, addr_len == PP_V2_ADDR4 ? "IPv4" : "IPv6", addr_len);
    }
    /* TLVs follow TCP addresses: each must end within the header; check those in already. */
    avail = n < total ? n : total;
    p = PP_V2_HEAD + (size_t)addr_len;
    while (addr_len > 0 && p + PP_V2_TLV_HEAD <= avail) {
        size_t tlen = (size_t)buf[p + 1] << 8 | buf[p + 2];

        if (p + PP_V2_TLV_HEAD + tlen > total) {
            return pp_fail(PROXY_PP_MALFORMED, why, whylen,
                           "v2 header: TLV 0x%02x at byte %zu holds %zu bytes, %zu past the end "
                           "of the header",
                           buf[p], p, tlen, p + PP_V2_TLV_HEAD + tlen - total);
        }
        p += PP_V2_TLV_HEAD + tlen;
    }
    if (n < total) {
        return PROXY_PP_NEED_MORE;
    }
    if (addr_len > 0 && p != total) {
        return pp_fail(PROXY_PP_MALFORMED, why, whylen,
                       "v2 header: %zu stray byte(s) at byte %zu, too few for a TLV (3 bytes)",
                       total - p, p);
    }
    h->len = total;
    h->version = 2;
    h->local = addr_len == 0;
    if (addr_len == PP_V2_ADDR4) {
        pp_sockaddr(&h->src, AF_INET, buf + 16, (unsigned)buf[24] << 8 | buf[25]);
        pp_sockaddr(&h->dst, AF_INET, buf + 20, (unsigned)buf[26] << 8 | buf[27]);
    } else if (addr_len == PP_V2_ADDR6) {
        pp_sockaddr(&h->src, AF_INET6, buf + 16, (unsigned)buf[48] << 8 | buf[49]);
        pp_sockaddr(&h->dst, AF_INET6, buf + 32, (unsigned)buf[50] << 8 | buf[51]);
    }
    return PROXY_PP_OK;
}

/* Which signature ${buf}[0..n) starts with, or MISSING with the reason. */
static enum proxy_pp_result
pp_signature(const unsigned char *buf, size_t n, int *version, char *why, size_t whylen)
{
    const unsigned char *sig = (const unsigned char *)pp_v1_sig;
    size_t sig_len = PP_V1_SIG_LEN, i;
    const char *expected = "the v2 signature";
    char q[PP_QUOTE_SIZE];

    *version = 1;
    if (buf[0] == pp_v2_sig[0]) {
        sig = pp_v2_sig;
        sig_len = sizeof(pp_v2_sig);
        *version = 2;
    }
    for (i = 0; i < n && i < sig_len; i++) {
        if (buf[i] != sig[i]) {
            break;
        }
    }
    if (i == n || i == sig_len) {
        return PROXY_PP_OK;
    }
    if (buf[0] == 0x16) {
        return pp_fail(PROXY_PP_MISSING, why, whylen,
                       "starts with 0x16 (a TLS ClientHello), not a PROXY protocol header");
    }
    if (i == 0) {
        expected = "\"PROXY \" and the v2 signature";
    } else if (*version == 1) {
        expected = "\"PROXY \"";
    }
    /* "PROXY" or "\r\n\r\n" matched: a header the sender meant to send, corrupted. */
    if ((*version == 1 && i >= 5) || (*version == 2 && i >= 4)) {
        return pp_fail(PROXY_PP_MALFORMED, why, whylen,
                       "v%d header: signature \"%s\" corrupt at byte %zu (differs from %s)",
                       *version, pp_quote(q, buf, n < sig_len ? n : sig_len), i, expected);
    }
    return pp_fail(PROXY_PP_MISSING, why, whylen,
                   "starts with \"%s\", not a PROXY protocol header (byte %zu differs from %s)",
                   pp_quote(q, buf, n < 16 ? n : 16), i, expected);
}

/*
 * proxy_pp_parse(buf, n, h, why, whylen):
 * The signature picks the version; each version's parser fills ${h} as it goes, so ${h} is
 * cleared again unless the whole header is there.
 */
enum proxy_pp_result
proxy_pp_parse(const unsigned char *buf, size_t n, struct proxy_pp_header *h, char *why,
               size_t whylen)
{
    enum proxy_pp_result r;
    int version;

    memset(h, 0, sizeof(*h));
    if (why != NULL && whylen > 0) {
        why[0] = '\0';
    }
    if (n == 0) {
        return PROXY_PP_NEED_MORE;
    }
    r = pp_signature(buf, n, &version, why, whylen);
    if (r != PROXY_PP_OK) {
        return r;
    }
    if (version == 1) {
        r = n < PP_V1_SIG_LEN ? PROXY_PP_NEED_MORE : pp_v1_parse(buf, n, h, why, whylen);
    } else {
        r = pp_v2_parse(buf, n, h, why, whylen);
    }
    if (r != PROXY_PP_OK) {
        memset(h, 0, sizeof(*h));
    }
    return r;
}

/* proxy_pp_result_str(r): one name per result. */
const char *
proxy_pp_result_str(enum proxy_pp_result r)
{
    switch (r) {
    case PROXY_PP_NEED_MORE:
        return "need_more";
    case PROXY_PP_OK:
        return "ok";
    case PROXY_PP_MISSING:
        return "missing";
    case PROXY_PP_MALFORMED:
        return "malformed";
    case PROXY_PP_OVERSIZED:
        return "oversized";
    }
    return "unknown";
}

/*
 * The address (16 bytes when ${v6}, else 4) and port (network order) of ${sa} into ${addr}
 * and ${port}; an IPv4 address becomes ::ffff:a.b.c.d when ${v6}.
 */
static void
pp_build_addr(const struct sockaddr *sa, bool v6, unsigned char *addr, unsigned char port[2])
{
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

        memcpy(addr, &sin6->sin6_addr, 16);
        memcpy(port, &sin6->sin6_port, 2);
    } else {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

        if (v6) {
            memset(addr, 0, 10);
            memset(addr + 10, 0xff, 2);
            addr += 12;
        }
        memcpy(addr, &sin->sin_addr, 4);
        memcpy(port, &sin->sin_port, 2);
    }
}

/* Write a TLV header of ${type} and ${len} bytes at ${p}; returns the byte after it. */
static unsigned char *
pp_tlv_head(unsigned char *p, unsigned type, size_t len)
{
    p[0] = (unsigned char)type;
    p[1] = (unsigned char)(len >> 8);
    p[2] = (unsigned char)len;
    return p + PP_V2_TLV_HEAD;
}

/* Write the TLV ${type} holding string ${s} (${len} bytes) at ${p}; the byte after it. */
static unsigned char *
pp_tlv_str(unsigned char *p, unsigned type, const char *s, size_t len)
{
    p = pp_tlv_head(p, type, len);
    memcpy(p, s, len);
    return p + len;
}

/*
 * proxy_pp_v2_build(out, cap, src, dst, tls_version, cn, peer_name):
 * Sizes first (every length must fit a 16-bit field and the whole in ${cap}), then one pass
 * that writes.
 */
size_t
proxy_pp_v2_build(unsigned char *out, size_t cap, const struct sockaddr *src,
                  const struct sockaddr *dst, const char *tls_version, const char *cn,
                  const char *peer_name)
{
    size_t ver_len = tls_version != NULL ? strlen(tls_version) : 0;
    size_t cn_len = cn != NULL ? strlen(cn) : 0;
    size_t peer_len = peer_name != NULL ? strlen(peer_name) : 0;
    bool ssl = tls_version != NULL || peer_name != NULL;
    size_t ssl_len = 0, body, total;
    unsigned char *p;
    bool v6;

    if (out == NULL || src == NULL || dst == NULL ||
        (src->sa_family != AF_INET && src->sa_family != AF_INET6) ||
        (dst->sa_family != AF_INET && dst->sa_family != AF_INET6) || ver_len > PP_V2_LEN_MAX ||
        cn_len > PP_V2_LEN_MAX || peer_len > PP_V2_LEN_MAX) {
        return 0;
    }
    v6 = src->sa_family == AF_INET6 || dst->sa_family == AF_INET6;
    body = v6 ? PP_V2_ADDR6 : PP_V2_ADDR4;
    if (ssl) {
        ssl_len = PP2_SSL_HEAD + (tls_version != NULL ? PP_V2_TLV_HEAD + ver_len : 0) +
                  (cn != NULL ? PP_V2_TLV_HEAD + cn_len : 0);
        body += PP_V2_TLV_HEAD + ssl_len;
    }
    if (peer_name != NULL) {
        body += PP_V2_TLV_HEAD + peer_len;
    }
    total = PP_V2_HEAD + body;
    if (ssl_len > PP_V2_LEN_MAX || body > PP_V2_LEN_MAX || total > cap) {
        return 0;
    }

    memcpy(out, pp_v2_sig, sizeof(pp_v2_sig));
    out[12] = 0x20 | PP_V2_PROXY;
    out[13] = v6 ? PP_V2_TCP6 : PP_V2_TCP4;
    out[14] = (unsigned char)(body >> 8);
    out[15] = (unsigned char)body;
    p = out + PP_V2_HEAD;
    /* Source address, destination address, source port, destination port. */
    {
        size_t alen = v6 ? 16 : 4;
        unsigned char sport[2], dport[2];

        pp_build_addr(src, v6, p, sport);
        pp_build_addr(dst, v6, p + alen, dport);
        memcpy(p + 2 * alen, sport, 2);
        memcpy(p + 2 * alen + 2, dport, 2);
        p += 2 * alen + 4;
    }
    if (ssl) {
        p = pp_tlv_head(p, PP2_TYPE_SSL, ssl_len);
        /* A certificate on this connection, verified (verify 0), only with a verified peer
         * name; else TLS alone and verify non-zero (the spec's "not verified"). */
        *p++ = peer_name != NULL ? PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN : PP2_CLIENT_SSL;
        memset(p, 0, 4);
        p[3] = peer_name != NULL ? 0 : 1;
        p += 4;
        if (tls_version != NULL) {
            p = pp_tlv_str(p, PP2_SUBTYPE_SSL_VERSION, tls_version, ver_len);
        }
        if (cn != NULL) {
            p = pp_tlv_str(p, PP2_SUBTYPE_SSL_CN, cn, cn_len);
        }
    }
    if (peer_name != NULL) {
        p = pp_tlv_str(p, PROXY_PP_TLV_PEER_NAME, peer_name, peer_len);
    }
    return (size_t)(p - out);
}

/*
 * proxy_pp_v2_local(out, cap):
 * A PROXY v2 header with the LOCAL command and no address (16 bytes): what a health check
 * that is not relaying a client sends first, as HAProxy's checks do.  Returns 16, or 0 when
 * ${cap} is smaller.
 */
size_t
proxy_pp_v2_local(unsigned char *out, size_t cap)
{
    if (cap < sizeof(pp_v2_sig) + 4) {
        return 0;
    }
    memcpy(out, pp_v2_sig, sizeof(pp_v2_sig));
    out[12] = 0x20; /* version 2, command LOCAL */
    out[13] = 0x00; /* AF_UNSPEC, UNSPEC */
    out[14] = 0;
    out[15] = 0; /* no address block */
    return sizeof(pp_v2_sig) + 4;
}
