/*
 * test_pp: the PROXY protocol parser and v2 builder of proxy/proxy_pp.h.  Good v1 lines (TCP4,
 * TCP6, UNKNOWN) and v2 headers (TCP4, TCP6, LOCAL, UNSPEC, AF_UNIX, with TLVs); every
 * malformation of the rules in proxy_pp.h, each decided as early as the bytes allow; the
 * 107-byte and PROXY_PP_MAX limits; NEED_MORE for every prefix of a good header and OK with
 * the header's own length once it is whole, whatever follows it; MISSING for TLS and plain
 * HTTP; reasons that show wire bytes only as printable text.  The builder: round trips
 * through the parser for IPv4, IPv6 and mixed families, its TLV bytes, and too small a buffer.
 * Each prefix is parsed from a buffer of exactly its size, so valgrind or ASan catch a read
 * past n.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cmocka.h>

#include "proxy_pp.h"

/* The v2 signature. */
static const unsigned char sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* The start of a TLS 1.2+ ClientHello record, as a client sends it after the header. */
static const unsigned char hello[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01,
                                      0x00, 0x01, 0xfc, 0x03, 0x03};

/* Parse ${b}[0..n) copied into a buffer of exactly n bytes (a read past it is caught). */
static enum proxy_pp_result
parse(const void *b, size_t n, struct proxy_pp_header *h, char *why, size_t whylen)
{
    unsigned char *copy = malloc(n > 0 ? n : 1);
    enum proxy_pp_result r;

    assert_non_null(copy);
    if (n > 0) {
        memcpy(copy, b, n);
    }
    r = proxy_pp_parse(copy, n, h, why, whylen);
    free(copy);
    return r;
}

/* Is ${s} printable ASCII only? */
static void
assert_printable(const char *s)
{
    for (; *s != '\0'; s++) {
        assert_true(*s >= 0x20 && *s < 0x7f);
    }
}

/*
 * Parse ${b}[0..n): the result must be ${want}, and the reason must hold ${part} (when not
 * NULL), be printable, and be empty for OK and NEED_MORE.  ${h} gets the header.
 */
static void
expect_h(const void *b, size_t n, enum proxy_pp_result want, const char *part,
         struct proxy_pp_header *h)
{
    char why[256];
    enum proxy_pp_result r;

    memset(h, 0xa5, sizeof(*h));
    r = parse(b, n, h, why, sizeof(why));
    if (r != want || (part != NULL && strstr(why, part) == NULL)) {
        print_message("input of %zu bytes: %s, \"%s\"; expected %s with \"%s\"\n", n,
                      proxy_pp_result_str(r), why, proxy_pp_result_str(want),
                      part != NULL ? part : "");
    }
    assert_int_equal(r, want);
    assert_printable(why);
    if (want == PROXY_PP_OK || want == PROXY_PP_NEED_MORE) {
        assert_string_equal(why, "");
    } else {
        assert_true(why[0] != '\0');
    }
    if (part != NULL) {
        assert_non_null(strstr(why, part));
    }
    if (want != PROXY_PP_OK) {
        /* Not filled: all zero. */
        static const struct proxy_pp_header zero;

        assert_memory_equal(h, &zero, sizeof(zero));
    }
}

static void
expect(const void *b, size_t n, enum proxy_pp_result want, const char *part)
{
    struct proxy_pp_header h;

    expect_h(b, n, want, part, &h);
}

/* expect() for a text: its strlen. */
static void
expect_s(const char *s, enum proxy_pp_result want, const char *part)
{
    expect(s, strlen(s), want, part);
}

/*
 * ${b}[0..n) is one whole header: every shorter prefix is NEED_MORE; the whole, and the whole
 * followed by any part of a ClientHello, is OK with h.len = n.  ${h} gets the header.
 */
static void
expect_whole(const void *b, size_t n, struct proxy_pp_header *h)
{
    unsigned char buf[PROXY_PP_MAX + sizeof(hello)];
    struct proxy_pp_header more;

    assert_true(n <= PROXY_PP_MAX);
    memcpy(buf, b, n);
    memcpy(buf + n, hello, sizeof(hello));
    for (size_t k = 0; k < n; k++) {
        expect(buf, k, PROXY_PP_NEED_MORE, NULL);
    }
    expect_h(buf, n, PROXY_PP_OK, NULL, h);
    assert_int_equal(h->len, n);
    for (size_t k = n + 1; k <= n + sizeof(hello); k++) {
        expect_h(buf, k, PROXY_PP_OK, NULL, &more);
        assert_int_equal(more.len, n);
        assert_int_equal(more.version, h->version);
        assert_int_equal(more.local, h->local);
        assert_memory_equal(&more.src, &h->src, sizeof(more.src));
        assert_memory_equal(&more.dst, &h->dst, sizeof(more.dst));
    }
}

/* expect_whole() for a text. */
static void
expect_whole_s(const char *s, struct proxy_pp_header *h)
{
    expect_whole(s, strlen(s), h);
}

/* ${ss} is ${family} address ${addr} with port ${port}. */
static void
assert_addr(const struct sockaddr_storage *ss, int family, const char *addr, unsigned port)
{
    char text[INET6_ADDRSTRLEN];

    assert_int_equal(ss->ss_family, family);
    if (family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

        assert_non_null(inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text)));
        assert_int_equal(ntohs(sin->sin_port), port);
    } else {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

        assert_non_null(inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text)));
        assert_int_equal(ntohs(sin6->sin6_port), port);
    }
    assert_string_equal(text, addr);
}

/* ${h} is a v${version} header from ${src}:${sport} to ${dst}:${dport}, both ${family}. */
static void
assert_proxied(const struct proxy_pp_header *h, int version, int family, const char *src,
               unsigned sport, const char *dst, unsigned dport)
{
    assert_int_equal(h->version, version);
    assert_false(h->local);
    assert_addr(&h->src, family, src, sport);
    assert_addr(&h->dst, family, dst, dport);
}

/* The 16 bytes a v2 header starts with into ${b}; returns 16. */
static size_t
v2_head(unsigned char *b, unsigned ver_cmd, unsigned fam, size_t len)
{
    memcpy(b, sig, sizeof(sig));
    b[12] = (unsigned char)ver_cmd;
    b[13] = (unsigned char)fam;
    b[14] = (unsigned char)(len >> 8);
    b[15] = (unsigned char)len;
    return 16;
}

/*
 * A v2 PROXY TCP4 header 10.0.0.1:12345 -> 10.0.0.2:443 into ${b}, whose length field counts
 * ${extra} bytes of TLVs that the caller writes after the 28 returned.
 */
static size_t
v2_tcp4(unsigned char *b, size_t extra)
{
    static const unsigned char addrs[12] = {10, 0, 0, 1, 10, 0, 0, 2, 0x30, 0x39, 0x01, 0xbb};

    v2_head(b, 0x21, 0x11, sizeof(addrs) + extra);
    memcpy(b + 16, addrs, sizeof(addrs));
    return 16 + sizeof(addrs);
}

/* A TLV of ${type} with ${len} bytes of value ${fill} at ${b}; returns its size. */
static size_t
tlv(unsigned char *b, unsigned type, size_t len, unsigned char fill)
{
    b[0] = (unsigned char)type;
    b[1] = (unsigned char)(len >> 8);
    b[2] = (unsigned char)len;
    memset(b + 3, fill, len);
    return 3 + len;
}

/* ---- v1 ---- */

static void
test_v1_tcp4(void **state)
{
    struct proxy_pp_header h;

    (void)state;
    expect_whole_s("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", &h);
    assert_proxied(&h, 1, AF_INET, "192.168.0.1", 56324, "192.168.0.11", 443);
    /* The extremes: 0 and 65535, 0.0.0.0 and the spec's longest TCP4 line (56 bytes). */
    expect_whole_s("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n", &h);
    assert_proxied(&h, 1, AF_INET, "0.0.0.0", 0, "255.255.255.255", 65535);
    expect_whole_s("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n", &h);
    assert_int_equal(h.len, 56);
    expect_whole_s("PROXY TCP4 10.0.0.1 10.0.0.2 1 10\r\n", &h);
    assert_proxied(&h, 1, AF_INET, "10.0.0.1", 1, "10.0.0.2", 10);
}

static void
test_v1_tcp6(void **state)
{
    static const char longest[] = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                                  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    struct proxy_pp_header h;

    (void)state;
    expect_whole_s("PROXY TCP6 2001:db8::1 ::ffff:192.0.2.1 40000 6984\r\n", &h);
    assert_proxied(&h, 1, AF_INET6, "2001:db8::1", 40000, "::ffff:192.0.2.1", 6984);
    /* The spec's longest TCP6 line: 104 bytes. */
    assert_int_equal(strlen(longest), 104);
    expect_whole_s(longest, &h);
    assert_addr(&h.src, AF_INET6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
}

/*
 * IPv6 literals in every form inet_pton() takes, each a whole valid line (so every prefix
 * of each address asks for more), and forms it refuses, each malformed.
 */
static void
test_v1_ipv6_forms(void **state)
{
    static const char *const good[] = {
        "::",
        "::1",
        "1::",
        "1:2:3:4:5:6:7:8",
        "1:2:3:4:5:6:7::",
        "::2:3:4:5:6:7:8",
        "1::8",
        "fe80::1:2",
        "ABCD:ef01:0000:0:00:000:1:abcd",
        "::ffff:1.2.3.4",
        "::1.2.3.4",
        "1:2:3:4:5:6:1.2.3.4",
        "1::5:6:255.255.255.255",
        "64:ff9b::192.0.2.33",
    };
    static const char *const bad[] = {
        ":",
        ":1",
        ":::",
        "1:::2",
        "1::2::3",
        "12345::",
        "1:2:3:4:5:6:7:8:9",
        "1:2:3:4:5:6:7:8::",
        "1:2:3:4:5:6:7::8",
        "1:2:3:4:5:6:7",
        "1:",
        "g::",
        "1.2.3.4",
        "::1.2.3",
        "::01.2.3.4",
        "::1.2.3.256",
        "1:2:3:4:5:6:7:1.2.3.4",
        "::1.2.3.4:1",
        "::a1.2.3.4",
        "::1%eth0",
        "[::1]",
    };
    char line[160];
    struct proxy_pp_header h;
    unsigned char a[16];

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(inet_pton(AF_INET6, good[i], a), 1);
        snprintf(line, sizeof(line), "PROXY TCP6 %s %s 1 2\r\n", good[i], good[i]);
        expect_whole_s(line, &h);
        assert_int_equal(h.src.ss_family, AF_INET6);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_not_equal(inet_pton(AF_INET6, bad[i], a), 1);
        snprintf(line, sizeof(line), "PROXY TCP6 %s ::1 1 2\r\n", bad[i]);
        expect_s(line, PROXY_PP_MALFORMED, "source address");
        snprintf(line, sizeof(line), "PROXY TCP6 ::1 %s 1 2\r\n", bad[i]);
        expect_s(line, PROXY_PP_MALFORMED, "destination address");
    }
}

static void
test_v1_unknown(void **state)
{
    static const char longest[] = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                                  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    struct proxy_pp_header h;

    (void)state;
    expect_whole_s("PROXY UNKNOWN\r\n", &h);
    assert_int_equal(h.len, 15);
    assert_int_equal(h.version, 1);
    assert_true(h.local);
    assert_int_equal(h.src.ss_family, 0);
    /* The spec's worst case, exactly 107 bytes: anything before CRLF is ignored. */
    assert_int_equal(strlen(longest), PROXY_PP_V1_MAX);
    expect_whole_s(longest, &h);
    assert_true(h.local);
    expect_whole_s("PROXY UNKNOWN \r\n", &h);
    expect_whole_s("PROXY UNKNOWN not even \x01 text \r here\r\n", &h);
    assert_true(h.local);

    expect_s("PROXY UNKNOWNX\r\n", PROXY_PP_MALFORMED, "unknown protocol \"UNKNOWNX\" at byte 6");
    expect_s("PROXY UNKNOWN\n", PROXY_PP_MALFORMED, "bare LF at byte 13");
    expect_s("PROXY UNKNOWN junk\n", PROXY_PP_MALFORMED, "bare LF at byte 18");
    expect_s("PROXY UNKNOWN\rX\r\n", PROXY_PP_MALFORMED, "CR at byte 13 is not followed by LF");
    expect_s("PROXY UNKNOWN\r\r\n", PROXY_PP_MALFORMED, "CR at byte 13 is not followed by LF");
    expect_s("PROXY unknown\r\n", PROXY_PP_MALFORMED, "unknown protocol");
}

/* One malformed input and the words its reason must hold. */
struct bad_case {
    const char *in;
    const char *why;
};

static void
test_v1_malformed(void **state)
{
    static const struct bad_case cases[] = {
        /* the protocol */
        {"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "v1 header: unknown protocol \"TCP5\" at byte 6"},
        {"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "unknown protocol \"tcp4\""},
        {"PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n", "unknown protocol \"TCP4\\x091.2.3.4\""},
        {"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "empty protocol at byte 6"},
        {"PROXY \r\n", "empty protocol at byte 6"},
        {"PROXY TCP4\r\n", "the line ends at byte 10 after the protocol"},
        {"PROXY TCP4\n", "the line ends at byte 10 after the protocol"},
        /* spaces */
        {"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "empty source address at byte 11"},
        {"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "empty destination address at byte 19"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n", "empty source port at byte 27"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n", "empty destination port at byte 29"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n", "empty destination port at byte 29"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "space at byte 30 after the last field"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "space at byte 30 after the last field"},
        /* missing fields */
        {"PROXY TCP4 1.2.3.4\r\n", "the line ends at byte 18 after the source address: the "
                                   "destination address is missing"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8\r\n", "after the destination address"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "after the source port: the destination port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1\n", "the line ends at byte 28 after the source port"},
        /* line ends */
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "bare LF at byte 30 (the line must end with CRLF)"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX\r\n", "CR at byte 30 is not followed by LF"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", "CR at byte 30 is not followed by LF"},
        /* addresses */
        {"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "source address \"::1\" at byte 11 is not an IPv4"},
        {"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "source address \"1.2.3.4\" at byte 11 is not an IPv6"},
        {"PROXY TCP6 ::1 5.6.7.8 1 2\r\n", "destination address \"5.6.7.8\" at byte 15 is not an "
                                           "IPv6"},
        {"PROXY TCP4 1.2.3.4 ::1 1 2\r\n", "destination address \"::1\" at byte 19 is not an "
                                           "IPv4"},
        {"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "source address \"1.2.3\""},
        {"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "source address \"01.2.3.4\""},
        {"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "source address \"1.2.3.256\""},
        {"PROXY TCP4 1.2.3.4. 5.6.7.8 1 2\r\n", "source address \"1.2.3.4.\""},
        {"PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n", "source address \"1..3.4\""},
        {"PROXY TCP4 0x1.2.3.4 5.6.7.8 1 2\r\n", "source address \"0x1.2.3.4\""},
        {"PROXY TCP4 localhost 5.6.7.8 1 2\r\n", "source address \"localhost\""},
        /* ports */
        {"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", "v1 header: source port \"080\" at byte 27 has a "
                                                 "leading zero"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n", "destination port \"00\" at byte 29 has a leading "
                                                "zero"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
         "source port \"65536\" at byte 27 is over 65535"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", "destination port \"99999\" at byte 29 is over"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 1000000\r\n", "is over 65535"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "source port \"+1\" at byte 27 is not a decimal"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "source port \"-1\" at byte 27 is not a decimal"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 0x10\r\n", "destination port \"0x10\" at byte 29 is not"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2a\r\n", "destination port \"2a\" at byte 29 is not"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        expect_s(cases[i].in, PROXY_PP_MALFORMED, cases[i].why);
    }
    /* A NUL inside a field does not end it for inet_pton(). */
    expect("PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n", 33, PROXY_PP_MALFORMED,
           "source address \"1.2.3.4\\x00\" at byte 11 is not an IPv4 address");
    expect("PROXY TCP4 1.2.3.4 5.6.7.8 1\0 2\r\n", 33, PROXY_PP_MALFORMED,
           "source port \"1\\x00\" at byte 27 is not a decimal number");
}

/*
 * Decided before the CRLF: a field that no more bytes could make valid is MALFORMED as soon
 * as it arrives, and so is a bad completed field (the spec asks to abort early).
 */
static void
test_v1_early(void **state)
{
    static const struct bad_case cases[] = {
        {"PROXY X", "protocol \"X\" at byte 6 cannot become valid"},
        {"PROXY TCP5", "protocol \"TCP5\" at byte 6 cannot become valid"},
        {"PROXY UNKNOWNN", "protocol \"UNKNOWNN\""},
        {"PROXY TCP4 256", "source address \"256\" at byte 11 cannot become valid"},
        {"PROXY TCP4 01", "source address \"01\""},
        {"PROXY TCP4 1.2.3.4.", "source address \"1.2.3.4.\""},
        {"PROXY TCP4 1.2.3 ", "source address \"1.2.3\" at byte 11 is not an IPv4 address"},
        {"PROXY TCP4 ::", "source address \"::\""},
        {"PROXY TCP6 1.", "source address \"1.\""},
        {"PROXY TCP6 :::", "source address \":::\""},
        {"PROXY TCP6 1:2:3:4:5:6:7:8:", "source address"},
        {"PROXY TCP6 ::1 1:2:3:4:5:6:7::8", "destination address"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 08", "source port \"08\" at byte 27 cannot become valid"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 65536", "source port \"65536\""},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 655350", "source port \"655350\""},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 -", "destination port \"-\""},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 ", "space at byte 30"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", "CR at byte 30 is not followed by LF"},
        {"PROXY TCP4\r", "the line ends at byte 10 after the protocol"},
        {"PROXY UNKNOWN\rX", "CR at byte 13 is not followed by LF"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        expect_s(cases[i].in, PROXY_PP_MALFORMED, cases[i].why);
    }
    /* Still a valid beginning: more is needed. */
    expect_s("PROXY TCP4 1.2.3.4 5.6.7.8 6553", PROXY_PP_NEED_MORE, NULL);
    expect_s("PROXY TCP4 1.2.3.4 5.6.7.8 1 0", PROXY_PP_NEED_MORE, NULL);
    expect_s("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r", PROXY_PP_NEED_MORE, NULL);
    expect_s("PROXY TCP6 1:2:3:4:5:6:7", PROXY_PP_NEED_MORE, NULL);
    expect_s("PROXY UNKNOWN whatever", PROXY_PP_NEED_MORE, NULL);
}

static void
test_v1_oversized(void **state)
{
    char line[PROXY_PP_MAX];
    struct proxy_pp_header h;

    (void)state;
    /* "PROXY UNKNOWN " and filler: 107 bytes without LF is too long, 106 may still end. */
    memset(line, 'a', sizeof(line));
    memcpy(line, "PROXY UNKNOWN ", 14);
    expect(line, 106, PROXY_PP_NEED_MORE, NULL);
    expect(line, 107, PROXY_PP_OVERSIZED, "v1 header has no CRLF within 107 bytes");
    expect(line, sizeof(line), PROXY_PP_OVERSIZED, "v1 header has no CRLF within 107 bytes");
    /* CRLF ending at byte 107 is the longest line; one byte later is too long. */
    memcpy(line + 105, "\r\n", 2);
    expect_whole(line, 107, &h);
    memset(line + 105, 'a', 2);
    memcpy(line + 106, "\r\n", 2);
    expect(line, 108, PROXY_PP_OVERSIZED, "no CRLF within 107 bytes");
    /* The CR as byte 107: its LF would be byte 108. */
    expect(line, 107, PROXY_PP_OVERSIZED, "no CRLF within 107 bytes");
    /* A TCP6 line with valid fields that takes more than 107 bytes. */
    expect_s("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 "
             "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 65535 65535\r\n",
             PROXY_PP_OVERSIZED, "no CRLF within 107 bytes");
    /* A malformation before byte 107 is reported as such. */
    memset(line, 'a', sizeof(line));
    memcpy(line, "PROXY TCP4 ", 11);
    expect(line, 200, PROXY_PP_MALFORMED, "source address \"aaaa");
}

/* ---- v2 ---- */

static void
test_v2_tcp4(void **state)
{
    unsigned char b[64];
    struct proxy_pp_header h;
    size_t n = v2_tcp4(b, 0);

    (void)state;
    expect_whole(b, n, &h);
    assert_int_equal(h.len, 28);
    assert_proxied(&h, 2, AF_INET, "10.0.0.1", 12345, "10.0.0.2", 443);
}

static void
test_v2_tcp6(void **state)
{
    unsigned char b[64];
    struct proxy_pp_header h;
    size_t n = v2_head(b, 0x21, 0x21, 36);

    (void)state;
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::7", b + n), 1);
    assert_int_equal(inet_pton(AF_INET6, "::ffff:198.51.100.1", b + n + 16), 1);
    memcpy(b + n + 32, "\xff\xff\x00\x00", 4);
    n += 36;
    expect_whole(b, n, &h);
    assert_int_equal(h.len, 52);
    assert_proxied(&h, 2, AF_INET6, "2001:db8::7", 65535, "::ffff:198.51.100.1", 0);
}

/* LOCAL (health checks): any family, any body, skipped; the sender's address stays. */
static void
test_v2_local(void **state)
{
    unsigned char b[PROXY_PP_MAX];
    struct proxy_pp_header h;
    size_t n;

    (void)state;
    n = v2_head(b, 0x20, 0x00, 0);
    expect_whole(b, n, &h);
    assert_int_equal(h.len, 16);
    assert_int_equal(h.version, 2);
    assert_true(h.local);
    assert_int_equal(h.src.ss_family, 0);
    /* The spec: the family is ignored and the length always honoured. */
    n = v2_head(b, 0x20, 0x12, 7);
    memcpy(b + n, "\x03\xff\xff\x00\x00\x00\x00", 7); /* not walked as TLVs */
    expect_whole(b, n + 7, &h);
    assert_true(h.local);
    n = v2_head(b, 0x20, 0xff, 12);
    memset(b + n, 0xee, 12);
    expect_whole(b, n + 12, &h);
    assert_true(h.local);
    /* The largest header ferry reads. */
    n = v2_head(b, 0x20, 0x11, PROXY_PP_MAX - 16);
    memset(b + n, 0, PROXY_PP_MAX - 16);
    expect_whole(b, PROXY_PP_MAX, &h);
    assert_int_equal(h.len, PROXY_PP_MAX);
}

/* PROXY with AF_UNSPEC or AF_UNIX: no address ferry can use, taken as local. */
static void
test_v2_unspec_unix(void **state)
{
    unsigned char b[PROXY_PP_MAX];
    struct proxy_pp_header h;
    size_t n;

    (void)state;
    n = v2_head(b, 0x21, 0x00, 0);
    expect_whole(b, n, &h);
    assert_true(h.local);
    n = v2_head(b, 0x21, 0x00, 5);
    memset(b + n, 0xff, 5);
    expect_whole(b, n + 5, &h);
    assert_true(h.local);
    assert_int_equal(h.len, 21);
    n = v2_head(b, 0x21, 0x31, 216);
    memset(b + n, 0, 216);
    memcpy(b + n, "/run/lb.sock", 12);
    expect_whole(b, n + 216, &h);
    assert_true(h.local);
    assert_int_equal(h.src.ss_family, 0);
    n = v2_head(b, 0x21, 0x32, 216);
    expect_whole(b, n + 216, &h);
    assert_true(h.local);
}

static void
test_v2_tlvs(void **state)
{
    unsigned char b[PROXY_PP_MAX];
    struct proxy_pp_header h;
    size_t n, t;

    (void)state;
    /* NOOP empty, SSL with two sub-TLVs, ALPN, a custom one, the header's end exactly. */
    n = v2_tcp4(b, 0);
    t = tlv(b + n, 0x04, 0, 0);
    t += tlv(b + n + t, 0x20, 5 + 3 + 7 + 3 + 4, 0);
    memcpy(b + n + t - 22, "\x03\x00\x00\x00\x00\x21\x00\x07TLSv1.3\x22\x00\x04node", 22);
    t += tlv(b + n + t, 0x01, 2, 'h');
    t += tlv(b + n + t, 0xE0, 300, 'p');
    v2_tcp4(b, t);
    expect_whole(b, n + t, &h);
    assert_int_equal(h.len, n + t);
    assert_false(h.local);
    assert_addr(&h.src, AF_INET, "10.0.0.1", 12345);
    /* TCP6 with one TLV. */
    n = v2_head(b, 0x21, 0x21, 36 + 8);
    memset(b + n, 0, 36);
    b[n + 15] = 1;
    t = tlv(b + n + 36, 0x05, 5, 'u');
    expect_whole(b, n + 36 + t, &h);
    assert_addr(&h.src, AF_INET6, "::1", 0);
}

static void
test_v2_bad_tlv(void **state)
{
    unsigned char b[PROXY_PP_MAX] = {0};
    size_t n, t;

    (void)state;
    /* A TLV one byte longer than the header: decided when the TLV's own head arrives. */
    n = v2_tcp4(b, 0);
    t = tlv(b + n, 0x20, 10, 0);
    v2_tcp4(b, t - 1);
    expect(b, n + t - 1, PROXY_PP_MALFORMED,
           "v2 header: TLV 0x20 at byte 28 holds 10 bytes, 1 past the end of the header");
    expect(b, n + 3, PROXY_PP_MALFORMED, "TLV 0x20 at byte 28");
    expect(b, n + 2, PROXY_PP_NEED_MORE, NULL);
    /* The second TLV overruns. */
    t = tlv(b + n, 0x04, 2, 0);
    memcpy(b + n + t, "\x01\xff\xff", 3);
    t += 3;
    v2_tcp4(b, t + 4);
    expect(b, n + t + 4, PROXY_PP_MALFORMED, "TLV 0x01 at byte 33 holds 65535 bytes");
    /* One or two bytes left over: too few for a TLV. */
    t = tlv(b + n, 0x04, 1, 0);
    b[n + t] = 0x04;
    v2_tcp4(b, t + 1);
    expect(b, n + t + 1, PROXY_PP_MALFORMED,
           "v2 header: 1 stray byte(s) at byte 32, too few for a TLV (3 bytes)");
    b[n + t + 1] = 0x00;
    v2_tcp4(b, t + 2);
    expect(b, n + t + 2, PROXY_PP_MALFORMED, "2 stray byte(s) at byte 32");
    expect(b, n + t + 1, PROXY_PP_NEED_MORE, NULL);
    /* TCP6: the walk starts after 36 address bytes. */
    n = v2_head(b, 0x21, 0x21, 36 + 3);
    memset(b + n, 0, 36);
    tlv(b + n + 36, 0xE0, 1, 0);
    expect(b, n + 36 + 3, PROXY_PP_MALFORMED, "TLV 0xe0 at byte 52 holds 1 bytes");
}

static void
test_v2_version_command(void **state)
{
    unsigned char b[64];
    size_t n;

    (void)state;
    v2_tcp4(b, 0);
    b[12] = 0x31;
    /* Decided by byte 12 alone. */
    expect(b, 13, PROXY_PP_MALFORMED, "v2 header: version 3 at byte 12 (only 2 exists)");
    expect(b, 28, PROXY_PP_MALFORMED, "version 3");
    b[12] = 0x11;
    expect(b, 28, PROXY_PP_MALFORMED, "version 1");
    b[12] = 0x01;
    expect(b, 13, PROXY_PP_MALFORMED, "version 0");
    b[12] = 0xf1;
    expect(b, 13, PROXY_PP_MALFORMED, "version 15");
    b[12] = 0x22;
    expect(b, 13, PROXY_PP_MALFORMED,
           "v2 header: command 2 at byte 12 (only 0 LOCAL and 1 PROXY exist)");
    b[12] = 0x2f;
    expect(b, 28, PROXY_PP_MALFORMED, "command 15");
    /* Good byte 12: the rest is awaited. */
    n = v2_tcp4(b, 0);
    expect(b, 13, PROXY_PP_NEED_MORE, NULL);
    b[12] = 0x20;
    expect(b, 13, PROXY_PP_NEED_MORE, NULL);
    expect(b, n, PROXY_PP_OK, NULL);
}

static void
test_v2_family(void **state)
{
    static const unsigned char bad[] = {0x01, 0x02, 0x10, 0x13, 0x20, 0x23,
                                        0x30, 0x33, 0x41, 0xff, 0x03, 0x0f};
    unsigned char b[64];
    char want[80];

    (void)state;
    v2_tcp4(b, 0);
    b[13] = 0x12;
    expect(b, 14, PROXY_PP_MALFORMED,
           "v2 header: UDP over IPv4 (0x12 at byte 13): ferry relays TCP");
    expect(b, 28, PROXY_PP_MALFORMED, "ferry relays TCP");
    b[13] = 0x22;
    expect(b, 14, PROXY_PP_MALFORMED, "UDP over IPv6 (0x22 at byte 13): ferry relays TCP");
    for (size_t i = 0; i < sizeof(bad); i++) {
        b[13] = bad[i];
        snprintf(want, sizeof(want),
                 "v2 header: unknown address family and transport 0x%02x at byte 13", bad[i]);
        expect(b, 14, PROXY_PP_MALFORMED, want);
        /* LOCAL ignores the family. */
        b[12] = 0x20;
        expect(b, 28, PROXY_PP_OK, NULL);
        b[12] = 0x21;
    }
}

static void
test_v2_short_addresses(void **state)
{
    unsigned char b[64];

    (void)state;
    memset(b, 0, sizeof(b));
    /* Decided by the length field: the body need not have arrived. */
    v2_head(b, 0x21, 0x11, 11);
    expect(b, 16, PROXY_PP_MALFORMED,
           "v2 header: length 11 at byte 14 is too short for the TCP over IPv4 addresses (12 "
           "bytes)");
    v2_head(b, 0x21, 0x11, 0);
    expect(b, 16, PROXY_PP_MALFORMED, "length 0 at byte 14");
    v2_head(b, 0x21, 0x21, 35);
    expect(b, 51, PROXY_PP_MALFORMED, "length 35 at byte 14 is too short for the TCP over IPv6");
    v2_head(b, 0x21, 0x21, 12);
    expect(b, 28, PROXY_PP_MALFORMED, "TCP over IPv6 addresses (36 bytes)");
    v2_head(b, 0x21, 0x11, 12);
    expect(b, 16, PROXY_PP_NEED_MORE, NULL);
}

static void
test_v2_oversized(void **state)
{
    unsigned char b[64];

    (void)state;
    memset(b, 0, sizeof(b));
    v2_head(b, 0x21, 0x11, PROXY_PP_MAX - 16 + 1);
    expect(b, 16, PROXY_PP_OVERSIZED,
           "v2 header: length 1009 at byte 14 makes a 1025-byte header, over ferry's limit of "
           "1024 bytes");
    expect(b, sizeof(b), PROXY_PP_OVERSIZED, "length 1009");
    v2_head(b, 0x20, 0x00, 0xffff);
    expect(b, 16, PROXY_PP_OVERSIZED, "length 65535 at byte 14 makes a 65551-byte header");
    v2_head(b, 0x21, 0x11, PROXY_PP_MAX - 16);
    expect(b, sizeof(b), PROXY_PP_NEED_MORE, NULL);
}

/* ---- signatures ---- */

static void
test_missing(void **state)
{
    static const unsigned char v2_bad[] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55};
    unsigned char b[32];

    (void)state;
    /* TLS: decided by the first byte. */
    expect(hello, 1, PROXY_PP_MISSING,
           "starts with 0x16 (a TLS ClientHello), not a PROXY protocol header");
    expect(hello, sizeof(hello), PROXY_PP_MISSING, "starts with 0x16 (a TLS ClientHello)");
    expect_s("G", PROXY_PP_MISSING, "starts with \"G\", not a PROXY protocol header (byte 0");
    expect_s("GET / HTTP/1.1\r\nHost: x\r\n\r\n", PROXY_PP_MISSING,
             "starts with \"GET / HTTP/1.1\\x0d\\x0a\", not a PROXY protocol header (byte 0 "
             "differs from \"PROXY \" and the v2 signature)");
    expect_s("POST / HTTP/1.1\r\n", PROXY_PP_MISSING, "byte 1 differs from \"PROXY \"");
    expect_s("PRX", PROXY_PP_MISSING, "starts with \"PRX\", not a PROXY protocol header (byte 2");
    expect_s("PROXYX", PROXY_PP_MALFORMED, "v1 header: signature \"PROXYX\" corrupt at byte 5");
    expect_s("PROXY\tTCP4", PROXY_PP_MALFORMED, "corrupt at byte 5");
    expect_s("proxy TCP4", PROXY_PP_MISSING, "byte 0");
    expect_s(" PROXY TCP4", PROXY_PP_MISSING, "byte 0");
    /* "PROXY" or "\r\n\r\n" matched, then a wrong byte: a header meant, corrupted. */
    expect_s("\r\n\r\nQUIT\r\n", PROXY_PP_MALFORMED,
             "v2 header: signature \"\\x0d\\x0a\\x0d\\x0aQUIT\\x0d\\x0a\" corrupt at byte 4 "
             "(differs from "
             "the v2 signature)");
    expect_s("\r\n\r", PROXY_PP_NEED_MORE, NULL);
    expect_s("\r\n\rX", PROXY_PP_MISSING, "byte 3 differs from the v2 signature");
    expect_s("PROXX", PROXY_PP_MISSING, "byte 4 differs from \"PROXY \"");
    expect_s("SSH-2.0-OpenSSH\r\n", PROXY_PP_MISSING, NULL);
    /* Prefixes of a signature. */
    expect("", 0, PROXY_PP_NEED_MORE, NULL);
    expect(NULL, 0, PROXY_PP_NEED_MORE, NULL);
    expect_s("P", PROXY_PP_NEED_MORE, NULL);
    expect_s("PRO", PROXY_PP_NEED_MORE, NULL);
    expect_s("PROXY", PROXY_PP_NEED_MORE, NULL);
    expect_s("PROXY ", PROXY_PP_NEED_MORE, NULL);
    expect_s("\r", PROXY_PP_NEED_MORE, NULL);
    expect_s("\r\n", PROXY_PP_NEED_MORE, NULL);
    for (size_t k = 1; k <= sizeof(sig); k++) {
        expect(sig, k, PROXY_PP_NEED_MORE, NULL);
    }
    memcpy(b, sig, sizeof(sig));
    b[11] = 0x0B;
    expect(b, 12, PROXY_PP_MALFORMED, "corrupt at byte 11 (differs from the v2 signature)");
    expect(v2_bad, sizeof(v2_bad), PROXY_PP_NEED_MORE, NULL);
    memcpy(b, v2_bad, sizeof(v2_bad));
    b[sizeof(v2_bad)] = 'X';
    expect(b, sizeof(v2_bad) + 1, PROXY_PP_MALFORMED, "corrupt at byte 9");
}

/* ---- reasons ---- */

static void
test_why(void **state)
{
    static const unsigned char bin[] = {0x01, 0x02, 0xff, 'A', '"', '\\', 0x7f};
    struct proxy_pp_header h;
    char why[256], small[8], full[256];
    char line[200];

    (void)state;
    expect(bin, sizeof(bin), PROXY_PP_MISSING,
           "starts with \"\\x01\\x02\\xffA\\x22\\x5c\\x7f\", not a PROXY protocol header");
    expect_s("PROXY TCP4 1.2.3.4\x1b[31m 5.6.7.8 1 2\r\n", PROXY_PP_MALFORMED,
             "source address \"1.2.3.4\\x1b[31m\" at byte 11");
    expect_s("PROXY TC\xc3\xa9 1.2.3.4 5.6.7.8 1 2\r\n", PROXY_PP_MALFORMED,
             "protocol \"TC\\xc3\\xa9\"");
    /* A long field is cut after 32 bytes. */
    memset(line, 0, sizeof(line));
    memcpy(line, "PROXY UNKNOWN", 13);
    memset(line + 13, 'X', 60);
    memcpy(line + 73, "\r\n", 2);
    expect_s(line, PROXY_PP_MALFORMED,
             "unknown protocol \"UNKNOWNXXXXXXXXXXXXXXXXXXXXXXXXX...\" at byte 6");

    /* Truncated to fit, always terminated; NULL or empty buffers are left alone. */
    assert_int_equal(proxy_pp_parse(hello, 1, &h, full, sizeof(full)), PROXY_PP_MISSING);
    assert_int_equal(proxy_pp_parse(hello, 1, &h, small, sizeof(small)), PROXY_PP_MISSING);
    assert_int_equal(strlen(small), sizeof(small) - 1);
    assert_memory_equal(small, full, sizeof(small) - 1);
    assert_int_equal(proxy_pp_parse(hello, 1, &h, NULL, 0), PROXY_PP_MISSING);
    assert_int_equal(proxy_pp_parse(hello, 1, &h, NULL, 100), PROXY_PP_MISSING);
    why[0] = 'Z';
    assert_int_equal(proxy_pp_parse(hello, 1, &h, why, 0), PROXY_PP_MISSING);
    assert_int_equal(why[0], 'Z');
    assert_int_equal(proxy_pp_parse((const unsigned char *)"PROXY TCP4 1", 12, &h, NULL, 0),
                     PROXY_PP_NEED_MORE);
    /* A reason from an earlier call does not survive a NEED_MORE or OK. */
    assert_int_equal(proxy_pp_parse((const unsigned char *)"PROXY", 5, &h, full, sizeof(full)),
                     PROXY_PP_NEED_MORE);
    assert_string_equal(full, "");

    assert_string_equal(proxy_pp_result_str(PROXY_PP_OK), "ok");
    assert_string_equal(proxy_pp_result_str(PROXY_PP_NEED_MORE), "need_more");
    assert_string_equal(proxy_pp_result_str(PROXY_PP_MISSING), "missing");
    assert_string_equal(proxy_pp_result_str(PROXY_PP_MALFORMED), "malformed");
    assert_string_equal(proxy_pp_result_str(PROXY_PP_OVERSIZED), "oversized");
    assert_string_equal(proxy_pp_result_str((enum proxy_pp_result)42), "unknown");
}

/* ---- builder ---- */

static struct sockaddr_in
sa4(const char *addr, unsigned port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};

    assert_int_equal(inet_pton(AF_INET, addr, &sin.sin_addr), 1);
    return sin;
}

static struct sockaddr_in6
sa6(const char *addr, unsigned port)
{
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};

    assert_int_equal(inet_pton(AF_INET6, addr, &sin6.sin6_addr), 1);
    return sin6;
}

/* Build with ${src}, ${dst} and the strings, parse it back; returns the length. */
static size_t
round_trip(unsigned char *out, const void *src, const void *dst, const char *tls_version,
           const char *cn, const char *peer_name, struct proxy_pp_header *h)
{
    size_t n = proxy_pp_v2_build(out, PROXY_PP_MAX, src, dst, tls_version, cn, peer_name);

    assert_true(n >= 28);
    expect_whole(out, n, h);
    assert_int_equal(h->version, 2);
    assert_false(h->local);
    return n;
}

/*
 * The value of the TLV of ${type} among those at ${b}[off..n), or NULL; its length into
 * ${len}.
 */
static const unsigned char *
find_tlv(const unsigned char *b, size_t n, size_t off, unsigned type, size_t *len)
{
    while (off + 3 <= n) {
        size_t l = (size_t)b[off + 1] << 8 | b[off + 2];

        assert_true(off + 3 + l <= n);
        if (b[off] == type) {
            *len = l;
            return b + off + 3;
        }
        off += 3 + l;
    }
    return NULL;
}

static void
test_build_v4(void **state)
{
    static const unsigned char want[28] = {
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x11,
        0x00, 0x0C, 192,  0,    2,    1,    198,  51,   100,  2,    0x9c, 0x40, 0x1b, 0x48};
    struct sockaddr_in src = sa4("192.0.2.1", 40000), dst = sa4("198.51.100.2", 6984);
    unsigned char out[PROXY_PP_MAX];
    struct proxy_pp_header h;

    (void)state;
    assert_int_equal(round_trip(out, &src, &dst, NULL, NULL, NULL, &h), 28);
    assert_memory_equal(out, want, sizeof(want));
    assert_proxied(&h, 2, AF_INET, "192.0.2.1", 40000, "198.51.100.2", 6984);
    /* A CN alone adds nothing. */
    assert_int_equal(round_trip(out, &src, &dst, NULL, "node1", NULL, &h), 28);
}

static void
test_build_v6(void **state)
{
    struct sockaddr_in6 src = sa6("2001:db8::1", 1), dst = sa6("2001:db8::2", 65535);
    struct sockaddr_in v4 = sa4("192.0.2.1", 40000);
    unsigned char out[PROXY_PP_MAX];
    struct proxy_pp_header h;

    (void)state;
    assert_int_equal(round_trip(out, &src, &dst, NULL, NULL, NULL, &h), 52);
    assert_int_equal(out[13], 0x21);
    assert_proxied(&h, 2, AF_INET6, "2001:db8::1", 1, "2001:db8::2", 65535);
    /* Mixed families: the IPv4 one becomes IPv4-mapped IPv6, either way round. */
    assert_int_equal(round_trip(out, &v4, &dst, NULL, NULL, NULL, &h), 52);
    assert_proxied(&h, 2, AF_INET6, "::ffff:192.0.2.1", 40000, "2001:db8::2", 65535);
    assert_int_equal(round_trip(out, &src, &v4, NULL, NULL, NULL, &h), 52);
    assert_proxied(&h, 2, AF_INET6, "2001:db8::1", 1, "::ffff:192.0.2.1", 40000);
}

static void
test_build_tlvs(void **state)
{
    static const unsigned char want[] = "\x20\x00\x23"         /* SSL, 35 bytes */
                                        "\x03\x00\x00\x00\x00" /* client SSL|CERT_CONN, 0 */
                                        "\x21\x00\x07TLSv1.3"  /* version */
                                        "\x22\x00\x11node1.example.org" /* CN */
                                        "\xE0\x00\x0dsite-b.peers.";    /* peer name */
    struct sockaddr_in src = sa4("192.0.2.1", 40000), dst = sa4("198.51.100.2", 6984);
    struct sockaddr_in6 src6 = sa6("2001:db8::1", 1);
    unsigned char out[PROXY_PP_MAX];
    struct proxy_pp_header h;
    const unsigned char *v;
    size_t n, len;

    (void)state;
    n = round_trip(out, &src, &dst, "TLSv1.3", "node1.example.org", "site-b.peers.", &h);
    assert_int_equal(n, 28 + sizeof(want) - 1);
    assert_int_equal(out[14] << 8 | out[15], n - 16);
    assert_memory_equal(out + 28, want, sizeof(want) - 1);
    assert_addr(&h.src, AF_INET, "192.0.2.1", 40000);

    /* A peer name without TLS version or CN: the SSL TLV holds client and verify only. */
    n = round_trip(out, &src6, &dst, NULL, NULL, "peer", &h);
    assert_int_equal(n, 52 + 3 + 5 + 3 + 4);
    v = find_tlv(out, n, 52, 0x20, &len);
    assert_non_null(v);
    assert_int_equal(len, 5);
    assert_memory_equal(v, "\x03\x00\x00\x00\x00", 5);
    v = find_tlv(out, n, 52, PROXY_PP_TLV_PEER_NAME, &len);
    assert_non_null(v);
    assert_int_equal(len, 4);
    assert_memory_equal(v, "peer", 4);

    /* A TLS version alone: the SSL TLV with its version, no peer name. */
    n = round_trip(out, &src, &dst, "TLSv1.2", NULL, NULL, &h);
    assert_int_equal(n, 28 + 3 + 5 + 3 + 7);
    v = find_tlv(out, n, 28, 0x20, &len);
    assert_non_null(v);
    assert_int_equal(len, 15);
    /* No verified peer (client_cert: none): TLS only, verify non-zero. */
    assert_memory_equal(v, "\x01\x00\x00\x00\x01", 5);
    assert_memory_equal(v + 5, "\x21\x00\x07TLSv1.2", 10);
    assert_null(find_tlv(out, n, 28, PROXY_PP_TLV_PEER_NAME, &len));

    /* Empty strings are empty TLVs. */
    n = round_trip(out, &src, &dst, "", "", "", &h);
    assert_int_equal(n, 28 + 3 + 5 + 3 + 3 + 3);
}

static void
test_build_limits(void **state)
{
    struct sockaddr_in src = sa4("192.0.2.1", 40000), dst = sa4("198.51.100.2", 6984);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    unsigned char out[PROXY_PP_MAX + 64];
    struct proxy_pp_header h;
    char *big;
    size_t n;

    (void)state;
    n = proxy_pp_v2_build(out, sizeof(out), (struct sockaddr *)&src, (struct sockaddr *)&dst,
                          "TLSv1.3", "cn", "peer");
    assert_int_equal(n, 28 + 3 + 5 + 3 + 7 + 3 + 2 + 3 + 4);
    /* Exactly the room needed works; one byte less writes nothing. */
    memset(out, 0xaa, sizeof(out));
    assert_int_equal(proxy_pp_v2_build(out, n, (struct sockaddr *)&src, (struct sockaddr *)&dst,
                                       "TLSv1.3", "cn", "peer"),
                     n);
    assert_int_equal(out[n], 0xaa);
    memset(out, 0xaa, sizeof(out));
    assert_int_equal(proxy_pp_v2_build(out, n - 1, (struct sockaddr *)&src, (struct sockaddr *)&dst,
                                       "TLSv1.3", "cn", "peer"),
                     0);
    for (size_t i = 0; i < sizeof(out); i++) {
        assert_int_equal(out[i], 0xaa);
    }
    assert_int_equal(proxy_pp_v2_build(out, 27, (struct sockaddr *)&src, (struct sockaddr *)&dst,
                                       NULL, NULL, NULL),
                     0);
    assert_int_equal(proxy_pp_v2_build(out, 0, (struct sockaddr *)&src, (struct sockaddr *)&dst,
                                       NULL, NULL, NULL),
                     0);
    /* Bad arguments. */
    assert_int_equal(proxy_pp_v2_build(NULL, 100, (struct sockaddr *)&src, (struct sockaddr *)&dst,
                                       NULL, NULL, NULL),
                     0);
    assert_int_equal(proxy_pp_v2_build(out, 100, NULL, (struct sockaddr *)&dst, NULL, NULL, NULL),
                     0);
    assert_int_equal(proxy_pp_v2_build(out, 100, (struct sockaddr *)&src, NULL, NULL, NULL, NULL),
                     0);
    assert_int_equal(proxy_pp_v2_build(out, 100, (struct sockaddr *)&un, (struct sockaddr *)&dst,
                                       NULL, NULL, NULL),
                     0);
    assert_int_equal(proxy_pp_v2_build(out, 100, (struct sockaddr *)&src, (struct sockaddr *)&un,
                                       NULL, NULL, NULL),
                     0);
    /* A peer name that fills ferry's limit exactly, one more byte, and one too long for v2. */
    big = malloc(70000);
    assert_non_null(big);
    memset(big, 'n', 70000);
    big[PROXY_PP_MAX - 28 - 3 - 5 - 3] = '\0';
    n = proxy_pp_v2_build(out, PROXY_PP_MAX, (struct sockaddr *)&src, (struct sockaddr *)&dst, NULL,
                          NULL, big);
    assert_int_equal(n, PROXY_PP_MAX);
    expect_h(out, n, PROXY_PP_OK, NULL, &h);
    big[PROXY_PP_MAX - 28 - 3 - 5 - 3] = 'n';
    big[PROXY_PP_MAX - 28 - 3 - 5 - 3 + 1] = '\0';
    assert_int_equal(proxy_pp_v2_build(out, PROXY_PP_MAX, (struct sockaddr *)&src,
                                       (struct sockaddr *)&dst, NULL, NULL, big),
                     0);
    big[PROXY_PP_MAX - 28 - 3 - 5 - 3 + 1] = 'n';
    big[69999] = '\0';
    assert_int_equal(proxy_pp_v2_build(out, sizeof(out), (struct sockaddr *)&src,
                                       (struct sockaddr *)&dst, NULL, NULL, big),
                     0);
    free(big);
}

/* proxy_pp_v2_local: the 16-byte LOCAL header parses back as local, cap checked. */
static void
test_v2_local_builder(void **state)
{
    unsigned char out[16];
    struct proxy_pp_header h;
    char why[128];

    (void)state;
    assert_int_equal(proxy_pp_v2_local(out, sizeof(out) - 1), 0);
    assert_int_equal(proxy_pp_v2_local(out, sizeof(out)), 16);
    assert_int_equal(proxy_pp_parse(out, 16, &h, why, sizeof(why)), PROXY_PP_OK);
    assert_true(h.local);
    assert_int_equal(h.version, 2);
    assert_int_equal(h.len, 16);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_tcp4),          cmocka_unit_test(test_v1_tcp6),
        cmocka_unit_test(test_v1_ipv6_forms),    cmocka_unit_test(test_v1_unknown),
        cmocka_unit_test(test_v1_malformed),     cmocka_unit_test(test_v1_early),
        cmocka_unit_test(test_v1_oversized),     cmocka_unit_test(test_v2_tcp4),
        cmocka_unit_test(test_v2_tcp6),          cmocka_unit_test(test_v2_local),
        cmocka_unit_test(test_v2_unspec_unix),   cmocka_unit_test(test_v2_tlvs),
        cmocka_unit_test(test_v2_bad_tlv),       cmocka_unit_test(test_v2_version_command),
        cmocka_unit_test(test_v2_family),        cmocka_unit_test(test_v2_short_addresses),
        cmocka_unit_test(test_v2_oversized),     cmocka_unit_test(test_missing),
        cmocka_unit_test(test_v2_local_builder), cmocka_unit_test(test_why),
        cmocka_unit_test(test_build_v4),         cmocka_unit_test(test_build_v6),
        cmocka_unit_test(test_build_tlvs),       cmocka_unit_test(test_build_limits),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
