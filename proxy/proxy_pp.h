/*
 * proxy_pp: the PROXY protocol (haproxy's doc/proxy-protocol.txt), version 1 (one text line)
 * and version 2 (binary): a strict parser for the header a load balancer puts before a
 * connection's first byte, and a builder for the v2 header ferry sends to a backend.
 *
 * The parser is a pure function of the bytes that have arrived so far: it allocates nothing,
 * keeps no state between calls and never reads past what it is given.  It decides as soon as
 * the bytes allow (a TLS ClientHello's first byte 0x16 is MISSING at once, "PROXY TCP5" is
 * MALFORMED before its CRLF), and asks for more only while every byte so far is part of the
 * header, so that a caller that reads from a socket may consume what it has read on NEED_MORE.
 * Reasons name what was wrong and at which byte (offsets count from 0); bytes from the wire
 * appear in them only as printable ASCII, anything else as \xNN.
 *
 * The caller decides whether a listener expects a header at all (the spec forbids guessing)
 * and logs the reason; nothing here logs.
 */
#ifndef FERRY_PROXY_PP_H
#define FERRY_PROXY_PP_H

#include <stdbool.h>
#include <stddef.h>

#include <sys/socket.h>

#define PROXY_PP_MAX    1024 /* bytes: the largest header ferry reads (v2 with TLVs included) */
#define PROXY_PP_V1_MAX 107  /* bytes: the longest v1 line, "PROXY ... \r\n" (spec §2.1) */

/* The custom v2 TLV (spec §2.2.8, 0xE0..0xEF) carrying ferry's verified peer name. */
#define PROXY_PP_TLV_PEER_NAME 0xE0

enum proxy_pp_result {
    PROXY_PP_NEED_MORE, /* every byte so far is a valid prefix of a header: read more */
    PROXY_PP_OK,        /* a whole header; h filled */
    PROXY_PP_MISSING,   /* the bytes do not start like a header: neither "PROXY" nor the
                           v2 signature's "\r\n\r\n" (after those: MALFORMED)
                           (e.g. a TLS ClientHello, 0x16, or "GET ") */
    PROXY_PP_MALFORMED, /* starts like a header but breaks the spec */
    PROXY_PP_OVERSIZED, /* v1 line without CRLF within 107 bytes,
                           or v2 length > PROXY_PP_MAX - 16 */
};

/* One parsed header. */
struct proxy_pp_header {
    size_t len;  /* bytes the header takes on the wire (consume exactly these) */
    int version; /* 1 or 2 */
    bool local;  /* v2 LOCAL command, or v1 "UNKNOWN", or v2 PROXY with family
                    AF_UNSPEC / AF_UNIX: no usable address, keep the sender's */
    struct sockaddr_storage src, dst; /* the client and the address it reached, when !local:
                                         AF_INET or AF_INET6 with port, network order inside */
};

/*
 * proxy_pp_parse(buf, n, h, why, whylen):
 * Read a PROXY protocol header (v1 or v2) from the ${n} bytes at ${buf}, all that has arrived
 * on the connection so far (${n} may be 0).  Returns
 *   PROXY_PP_OK         ${h} holds the header; it takes the first h->len bytes, the rest is
 *                       the connection's own data;
 *   PROXY_PP_NEED_MORE  all ${n} bytes are part of a header that has not ended yet (v1: no LF
 *                       yet and n < 107; v2: n < 16 + its length): read more and call again
 *                       with everything;
 *   PROXY_PP_MISSING, PROXY_PP_MALFORMED, PROXY_PP_OVERSIZED (see the enum): drop the
 *                       connection; the answer stays the same whatever bytes follow.
 * ${h} is zeroed unless the result is PROXY_PP_OK.  ${why} (${whylen} bytes, may be NULL)
 * gets a one-line reason for MISSING, MALFORMED and OVERSIZED, "" otherwise, truncated to fit
 * and always NUL-terminated.  Strict: v1 fields are separated by exactly one space, end in
 * CRLF, addresses are what inet_pton() accepts for TCP4 / TCP6, ports are 0..65535 in decimal
 * without sign or leading zero; v2 is version 2, command LOCAL or PROXY, TCP (UDP is refused,
 * AF_UNSPEC and AF_UNIX are taken as local), an address block as long as its family needs
 * and TLVs that fit in the header (their contents are not read).  Pure: no allocation.
 */
enum proxy_pp_result proxy_pp_parse(const unsigned char *buf, size_t n, struct proxy_pp_header *h,
                                    char *why, size_t whylen);

/*
 * proxy_pp_result_str(r):
 * The name of ${r} for logs and metrics: "ok", "need_more", "missing", "malformed",
 * "oversized" ("unknown" for a value outside the enum).  A static string.
 */
const char *proxy_pp_result_str(enum proxy_pp_result r);

/*
 * proxy_pp_v2_build(out, cap, src, dst, tls_version, cn, peer_name):
 * Write into ${out} a PROXY v2 header (command PROXY, TCP over IPv4 or IPv6 from ${src}'s
 * family; src and dst must be the same family, else map an IPv4 one to IPv4-mapped IPv6)
 * with, when ${peer_name} is not NULL or ${tls_version} not NULL, one PP2_TYPE_SSL TLV
 * (0x20): client = PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN (0x01|0x02) and verify = 0 (uint32
 * big endian: verified) with a ${peer_name}, else client = PP2_CLIENT_SSL and verify = 1 (no
 * verified certificate on the connection), then sub-TLVs PP2_SUBTYPE_SSL_VERSION (0x21) =
 * ${tls_version} and PP2_SUBTYPE_SSL_CN (0x22) = ${cn}, each when not NULL; and, when ${peer_name}
 * is not NULL, a custom TLV type PROXY_PP_TLV_PEER_NAME (0xE0) = peer_name (ferry's verified peer
 * name).
 * ${cn} alone (no TLS version, no peer name) adds nothing.  Strings go without their NUL.
 * ${src} and ${dst} are AF_INET (struct sockaddr_in) or AF_INET6 (struct sockaddr_in6).
 * Writes at most ${cap} bytes (with cap = PROXY_PP_MAX ferry's own parser reads the result);
 * returns the length, or 0 if it does not fit or an argument is bad (NULL out, src or dst,
 * another family, a string or the header longer than a v2 length field holds).
 */
size_t proxy_pp_v2_build(unsigned char *out, size_t cap, const struct sockaddr *src,
                         const struct sockaddr *dst, const char *tls_version, const char *cn,
                         const char *peer_name);

/*
 * proxy_pp_v2_local(out, cap):
 * A PROXY v2 header with the LOCAL command and no address (16 bytes): what a health check
 * that is not relaying a client sends first, as HAProxy's checks do.  Returns 16, or 0 when
 * ${cap} is smaller.
 */
size_t proxy_pp_v2_local(unsigned char *out, size_t cap);

#endif /* FERRY_PROXY_PP_H */
