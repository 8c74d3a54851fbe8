/*
 * fuzz_pp: libFuzzer target for the PROXY protocol parser and v2 builder (proxy/proxy_pp.h).
 *
 * Input: the bytes a load balancer might send first.  They go to proxy_pp_parse() whole and
 * cut at every length below (each ending where its heap buffer ends, so ASan sees a read
 * past n).  Checked besides crashes, leaks and UB:
 *   - the answer never changes as bytes arrive: once a prefix gets an answer other than
 *     NEED_MORE, every longer input gets the same one (and the same header for OK); if the
 *     whole input is OK with length L, every prefix shorter than L is NEED_MORE and every
 *     longer one OK with length L;
 *   - NEED_MORE only while all bytes belong to the header (v1: no LF yet and fewer than 107
 *     bytes; v2: fewer than 16, or than 16 + its length), OK never with len > n nor over the
 *     limits (107 for v1, PROXY_PP_MAX for v2), and an OK header is local or has two
 *     addresses of one family, AF_INET or AF_INET6;
 *   - a reason for MISSING, MALFORMED and OVERSIZED, printable ASCII only, the same cut to fit
 *     any buffer size; none for OK and NEED_MORE; h all zero unless OK.
 * Then the builder, on addresses, ports, a buffer size and three optional strings taken from
 * the input (see fz_build): the header it writes parses back OK with its own length, the same
 * addresses (an IPv4 one mapped when the families differ) and TLVs that say exactly what was
 * asked; it fits any buffer at least that large and writes nothing into a smaller one.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>

#include "proxy_pp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Room for a reason: enough for the longest, so that a cut one can be compared with it. */
#define FZ_WHY 512

static void
fz_fail(const char *what, size_t n)
{
    fprintf(stderr, "fuzz_pp: %s (input of %zu bytes)\n", what, n);
    abort();
}

/*
 * One parse of ${d}[0..n), copied to the end of ${room} (${room_len} >= n bytes of heap), so
 * that the byte after it is ASan's redzone; ${room} NULL: a buffer of its own.
 */
static enum proxy_pp_result
fz_parse_in(unsigned char *room, size_t room_len, const uint8_t *d, size_t n,
            struct proxy_pp_header *h, char *why, size_t whylen)
{
    unsigned char *own = NULL, *at;
    enum proxy_pp_result r;

    if (room == NULL) {
        if ((own = malloc(n > 0 ? n : 1)) == NULL) {
            fz_fail("out of memory", n);
        }
        room = own;
        room_len = n;
    }
    at = room + room_len - n;
    if (n > 0) {
        memcpy(at, d, n);
    }
    r = proxy_pp_parse(at, n, h, why, whylen);
    free(own);
    return r;
}

/* One parse of ${d}[0..n), from a buffer of exactly n bytes. */
static enum proxy_pp_result
fz_parse(const uint8_t *d, size_t n, struct proxy_pp_header *h, char *why, size_t whylen)
{
    return fz_parse_in(NULL, 0, d, n, h, why, whylen);
}

static bool
fz_same_header(const struct proxy_pp_header *a, const struct proxy_pp_header *b)
{
    return a->len == b->len && a->version == b->version && a->local == b->local &&
           memcmp(&a->src, &b->src, sizeof(a->src)) == 0 &&
           memcmp(&a->dst, &b->dst, sizeof(a->dst)) == 0;
}

/* The rules every single answer for ${d}[0..n) obeys. */
static void
fz_check_one(const uint8_t *d, size_t n, enum proxy_pp_result r, const struct proxy_pp_header *h,
             const char *why)
{
    static const struct proxy_pp_header zero;

    switch (r) {
    case PROXY_PP_NEED_MORE:
        if (n > 0 && d[0] == 'P' && (n >= PROXY_PP_V1_MAX || memchr(d, '\n', n) != NULL)) {
            fz_fail("v1 NEED_MORE with a LF or 107 bytes in", n);
        }
        if (n >= 16 && d[0] == 0x0D && n >= 16 + ((size_t)d[14] << 8 | d[15])) {
            fz_fail("v2 NEED_MORE with the whole header in", n);
        }
        break;
    case PROXY_PP_OK:
        if (h->len == 0 || h->len > n || h->len > PROXY_PP_MAX ||
            (h->version == 1 && h->len > PROXY_PP_V1_MAX) || (h->version != 1 && h->version != 2)) {
            fz_fail("OK with a bad length or version", n);
        }
        if (h->version == 1 && (h->len < 2 || memcmp(d + h->len - 2, "\r\n", 2) != 0 ||
                                memchr(d, '\n', h->len - 1) != NULL)) {
            fz_fail("v1 OK not ending at the first LF, after a CR", n);
        }
        if (h->local ? h->src.ss_family != 0 || h->dst.ss_family != 0
                     : (h->src.ss_family != AF_INET && h->src.ss_family != AF_INET6) ||
                           h->src.ss_family != h->dst.ss_family) {
            fz_fail("OK with addresses that do not fit local", n);
        }
        break;
    case PROXY_PP_MISSING:
    case PROXY_PP_MALFORMED:
    case PROXY_PP_OVERSIZED:
        if (why[0] == '\0') {
            fz_fail("a refusal without a reason", n);
        }
        break;
    default:
        fz_fail("a result outside the enum", n);
    }
    if (r != PROXY_PP_OK && memcmp(h, &zero, sizeof(zero)) != 0) {
        fz_fail("h not zeroed", n);
    }
    if ((r == PROXY_PP_OK || r == PROXY_PP_NEED_MORE) && why[0] != '\0') {
        fz_fail("a reason for OK or NEED_MORE", n);
    }
    for (const char *p = why; *p != '\0'; p++) {
        if (*p < 0x20 || *p > 0x7e) {
            fz_fail("a reason with a byte that is not printable", n);
        }
    }
}

/* The parser on ${d}[0..n) and all its prefixes. */
static void
fz_parser(const uint8_t *d, size_t n)
{
    struct proxy_pp_header whole, h;
    char why[FZ_WHY], cut[FZ_WHY];
    enum proxy_pp_result r, rk, first = PROXY_PP_NEED_MORE;
    size_t whylen, cut_len;
    unsigned char *room;

    r = fz_parse(d, n, &whole, why, sizeof(why));
    fz_check_one(d, n, r, &whole, why);
    if (strlen(why) + 1 >= sizeof(why)) {
        fz_fail("a reason longer than FZ_WHY", n);
    }
    /* The same reason, cut to any buffer; none written with NULL. */
    whylen = n > 0 ? (size_t)d[n - 1] % 64 + 1 : 1;
    cut_len = strlen(why) < whylen ? strlen(why) : whylen - 1;
    if (fz_parse(d, n, &h, cut, whylen) != r || strlen(cut) != cut_len ||
        memcmp(cut, why, cut_len) != 0) {
        fz_fail("a reason cut to fit differs", n);
    }
    if (fz_parse(d, n, &h, NULL, 0) != r) {
        fz_fail("the result depends on why", n);
    }

    if ((room = malloc(n > 0 ? n : 1)) == NULL) {
        fz_fail("out of memory", n);
    }
    for (size_t k = 0; k < n; k++) {
        rk = fz_parse_in(room, n, d, k, &h, cut, sizeof(cut));
        fz_check_one(d, k, rk, &h, cut);
        if (r == PROXY_PP_OK) {
            if (k < whole.len ? rk != PROXY_PP_NEED_MORE
                              : rk != PROXY_PP_OK || !fz_same_header(&h, &whole)) {
                fz_fail("a prefix of an OK header answers otherwise", k);
            }
        } else if (rk != PROXY_PP_NEED_MORE && rk != r) {
            fz_fail("a prefix answers otherwise than the whole input", k);
        }
        /* Once decided, decided: nothing later changes it. */
        if (first != PROXY_PP_NEED_MORE && rk != first) {
            fz_fail("an answer changed as bytes arrived", k);
        }
        if (first == PROXY_PP_NEED_MORE && rk != PROXY_PP_NEED_MORE) {
            first = rk;
        }
    }
    free(room);
    if (first != PROXY_PP_NEED_MORE && r != first) {
        fz_fail("the whole input answers otherwise than a prefix", n);
    }
}

/* Bytes ${off}.. of the input, or zeros past its end. */
static void
fz_take(const uint8_t *d, size_t n, size_t off, void *out, size_t len)
{
    memset(out, 0, len);
    if (off < n) {
        memcpy(out, d + off, n - off < len ? n - off : len);
    }
}

/* ${ss}: an IPv6 (${v6}) or IPv4 address from the bytes at ${a}, with the port at ${port}. */
static void
fz_addr(struct sockaddr_storage *ss, bool v6, const unsigned char *a, const unsigned char *port)
{
    memset(ss, 0, sizeof(*ss));
    if (v6) {
        struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};

        memcpy(&sin6.sin6_addr, a, 16);
        memcpy(&sin6.sin6_port, port, 2);
        memcpy(ss, &sin6, sizeof(sin6));
    } else {
        struct sockaddr_in sin = {.sin_family = AF_INET};

        memcpy(&sin.sin_addr, a, 4);
        memcpy(&sin.sin_port, port, 2);
        memcpy(ss, &sin, sizeof(sin));
    }
}

/* The 16-byte form of ${ss} as a v6 header carries it (IPv4 mapped), and its port. */
static void
fz_addr16(const struct sockaddr_storage *ss, unsigned char a[16], unsigned char port[2])
{
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

        memcpy(a, &sin6->sin6_addr, 16);
        memcpy(port, &sin6->sin6_port, 2);
    } else {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

        memcpy(a, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12);
        memcpy(a + 12, &sin->sin_addr, 4);
        memcpy(port, &sin->sin_port, 2);
    }
}

/* The TLV ${type} among ${b}[off..end), or NULL; its length into ${len}. */
static const unsigned char *
fz_tlv(const unsigned char *b, size_t off, size_t end, unsigned type, size_t *len)
{
    while (off + 3 <= end) {
        size_t l = (size_t)b[off + 1] << 8 | b[off + 2];

        if (off + 3 + l > end) {
            fz_fail("the builder wrote a TLV past the header", end);
        }
        if (b[off] == type) {
            *len = l;
            return b + off + 3;
        }
        off += 3 + l;
    }
    return NULL;
}

/* Does TLV value ${v} (${len} bytes) hold exactly the string ${s}? */
static bool
fz_tlv_is(const unsigned char *v, size_t len, const char *s)
{
    return v != NULL && len == strlen(s) && memcmp(v, s, len) == 0;
}

/*
 * The builder.  Input bytes: [0] flags (1 src IPv6, 2 dst IPv6, 4 TLS version, 8 CN, 16 peer
 * name), [1..17) source address, [17..33) destination address, [33..37) ports, [37..39) the
 * buffer size (0..PROXY_PP_MAX + 63), then the strings that the flags ask for, in that order,
 * each ending at a NUL (or at the end of the input).
 */
static void
fz_build(const uint8_t *d, size_t n)
{
    unsigned char hdr[39], full[PROXY_PP_MAX], *out;
    unsigned char a[16], port[2];
    struct sockaddr_storage src, dst;
    struct proxy_pp_header h;
    char why[FZ_WHY];
    char *strs[3] = {NULL, NULL, NULL};
    size_t off = sizeof(hdr), built, cap, want, alen, len;
    bool v6;
    const unsigned char *v;

    fz_take(d, n, 0, hdr, sizeof(hdr));
    fz_addr(&src, (hdr[0] & 1) != 0, hdr + 1, hdr + 33);
    fz_addr(&dst, (hdr[0] & 2) != 0, hdr + 17, hdr + 35);
    cap = ((size_t)hdr[37] << 8 | hdr[38]) % (PROXY_PP_MAX + 64);
    for (int i = 0; i < 3; i++) {
        size_t slen = 0;

        if ((hdr[0] & (4 << i)) == 0) {
            continue;
        }
        while (off + slen < n && d[off + slen] != 0) {
            slen++;
        }
        if ((strs[i] = malloc(slen + 1)) == NULL) {
            fz_fail("out of memory", n);
        }
        if (slen > 0) {
            memcpy(strs[i], d + off, slen);
        }
        strs[i][slen] = '\0';
        off += slen + 1;
    }

    v6 = src.ss_family == AF_INET6 || dst.ss_family == AF_INET6;
    alen = v6 ? 36 : 12;
    want = 16 + alen;
    if (strs[0] != NULL || strs[2] != NULL) {
        want += 3 + 5 + (strs[0] != NULL ? 3 + strlen(strs[0]) : 0) +
                (strs[1] != NULL ? 3 + strlen(strs[1]) : 0);
    }
    if (strs[2] != NULL) {
        want += 3 + strlen(strs[2]);
    }
    built = proxy_pp_v2_build(full, sizeof(full), (const struct sockaddr *)&src,
                              (const struct sockaddr *)&dst, strs[0], strs[1], strs[2]);
    if (built != (want <= sizeof(full) ? want : 0)) {
        fz_fail("the builder's length is not the one the spec gives", n);
    }

    /* Any buffer: exactly the same bytes when it fits, nothing written when not. */
    if ((out = malloc(cap > 0 ? cap : 1)) == NULL) {
        fz_fail("out of memory", n);
    }
    memset(out, 0x5a, cap > 0 ? cap : 1);
    len = proxy_pp_v2_build(out, cap, (const struct sockaddr *)&src, (const struct sockaddr *)&dst,
                            strs[0], strs[1], strs[2]);
    if (built > 0 && cap >= built ? len != built || memcmp(out, full, built) != 0 : len != 0) {
        fz_fail("the builder's result depends on cap beyond fitting", n);
    }
    for (size_t i = 0; len == 0 && i < cap; i++) {
        if (out[i] != 0x5a) {
            fz_fail("the builder wrote into a buffer too small", n);
        }
    }
    free(out);

    if (built > 0) {
        if (fz_parse(full, built, &h, why, sizeof(why)) != PROXY_PP_OK || h.len != built ||
            h.version != 2 || h.local) {
            fz_fail("the builder's header does not parse back", n);
        }
        if (v6) {
            unsigned char b[16], bp[2];

            fz_addr16(&src, a, port);
            fz_addr16(&h.src, b, bp);
            if (memcmp(a, b, 16) != 0 || memcmp(port, bp, 2) != 0) {
                fz_fail("source address changed", n);
            }
            fz_addr16(&dst, a, port);
            fz_addr16(&h.dst, b, bp);
            if (memcmp(a, b, 16) != 0 || memcmp(port, bp, 2) != 0) {
                fz_fail("destination address changed", n);
            }
        } else if (memcmp(&h.src, &src, sizeof(src)) != 0 ||
                   memcmp(&h.dst, &dst, sizeof(dst)) != 0) {
            fz_fail("IPv4 addresses changed", n);
        }
        /* The TLVs say what was asked, and nothing else. */
        v = fz_tlv(full, 16 + alen, built, 0x20, &len);
        if ((v != NULL) != (strs[0] != NULL || strs[2] != NULL)) {
            fz_fail("SSL TLV present or absent wrongly", n);
        }
        if (v != NULL) {
            const unsigned char *sub;
            size_t sublen;

            if (len < 5 ||
                memcmp(v, strs[2] != NULL ? "\x03\x00\x00\x00\x00" : "\x01\x00\x00\x00\x01", 5) !=
                    0) {
                fz_fail("SSL TLV client or verify", n);
            }
            sub = fz_tlv(v, 5, len, 0x21, &sublen);
            if (strs[0] != NULL ? !fz_tlv_is(sub, sublen, strs[0]) : sub != NULL) {
                fz_fail("SSL version sub-TLV", n);
            }
            sub = fz_tlv(v, 5, len, 0x22, &sublen);
            if (strs[1] != NULL ? !fz_tlv_is(sub, sublen, strs[1]) : sub != NULL) {
                fz_fail("SSL CN sub-TLV", n);
            }
        }
        v = fz_tlv(full, 16 + alen, built, PROXY_PP_TLV_PEER_NAME, &len);
        if (strs[2] != NULL ? !fz_tlv_is(v, len, strs[2]) : v != NULL) {
            fz_fail("peer name TLV", n);
        }
    }
    for (int i = 0; i < 3; i++) {
        free(strs[i]);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_parser(data, size);
    fz_build(data, size);
    return 0;
}
