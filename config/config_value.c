/*
 * config_value: pure parsers for the scalar values of the configuration (durations,
 * host:port addresses, host names) and the string names of the enums.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "config_internal.h"

#include "config.h"

/*
 * config_value_parse_duration(text, ms):
 * Parse "250ms", "10s", "5m", "1h" (a non-negative integer and a unit; a bare "0" is allowed)
 * into milliseconds in ${ms}.  Returns 0, or -1 when ${text} is not a duration or overflows.
 */
int
config_value_parse_duration(const char *text, uint64_t *ms)
{
    const char *p = text;
    uint64_t n = 0;
    uint64_t mult;

    if (*p < '0' || *p > '9') {
        return (-1);
    }
    for (; *p >= '0' && *p <= '9'; p++) {
        if (n > (UINT64_MAX - (uint64_t)(*p - '0')) / 10) {
            return (-1);
        }
        n = n * 10 + (uint64_t)(*p - '0');
    }

    /* "0" needs no unit: zero is zero in every unit */
    if (strcmp(p, "ms") == 0 || (*p == '\0' && n == 0)) {
        mult = 1;
    } else if (strcmp(p, "s") == 0) {
        mult = 1000;
    } else if (strcmp(p, "m") == 0) {
        mult = (uint64_t)60 * 1000;
    } else if (strcmp(p, "h") == 0) {
        mult = (uint64_t)60 * 60 * 1000;
    } else {
        return (-1);
    }

    if (n > UINT64_MAX / mult) {
        return (-1);
    }
    *ms = n * mult;
    return (0);
}

/*
 * config_value_ip_parse(text, bytes, family):
 * Parse an IPv4 or IPv6 literal (without brackets) into ${bytes} (4 or 16 bytes used) and
 * ${family} (4 or 6).  Returns 0, or -1 when ${text} is not an IP literal.
 */
int
config_value_ip_parse(const char *text, unsigned char bytes[16], int *family)
{
    struct in_addr a4;
    struct in6_addr a6;

    if (inet_pton(AF_INET, text, &a4) == 1) {
        memset(bytes, 0, 16);
        memcpy(bytes, &a4, 4);
        *family = 4;
        return (0);
    }
    if (inet_pton(AF_INET6, text, &a6) == 1) {
        memcpy(bytes, &a6, 16);
        *family = 6;
        return (0);
    }
    return (-1);
}

/* True for an ASCII letter or digit. */
static bool
is_alnum(char c)
{
    return ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'));
}

/*
 * config_value_name_is_dns(name):
 * True when ${name} is a host name: dot-separated labels of letters, digits and "-" (1-63
 * characters, not starting or ending with "-"), 253 characters at most, and a last label that
 * is not all digits (so "1.2.3.999" is not taken for a name).
 */
bool
config_value_name_is_dns(const char *name)
{
    size_t len = strlen(name);
    size_t label = 0;
    bool all_digits = true;
    size_t i;

    if (len == 0 || len > 253) {
        return (false);
    }
    for (i = 0; i <= len; i++) {
        char c = name[i];

        if (c == '.' || c == '\0') {
            /* End of a label: not empty, not too long, no '-' at either end. */
            if (label == 0 || label > 63 || name[i - 1] == '-') {
                return (false);
            }
            if (c == '\0') {
                break;
            }
            label = 0;
            all_digits = true;
            continue;
        }
        if (!is_alnum(c) && c != '-') {
            return (false);
        }
        if (c == '-' && label == 0) {
            return (false);
        }
        if (c < '0' || c > '9') {
            all_digits = false;
        }
        label++;
    }
    return (!all_digits);
}

/* True for a character of a CouchDB database name other than the first: [a-z0-9_$()+/-]. */
static bool
is_db_char(char c)
{
    return ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr("_$()+-/", c) != NULL);
}

/*
 * config_value_db_glob_check(glob, why, whylen):
 * Check that ${glob} could match a CouchDB database name: its literal characters are those of
 * a database name (lowercase letters, digits and _$()+-/, the first a letter), and "*" and "?"
 * are wildcards.  Returns 0, or -1 with the reason in ${why} (like "database names are
 * lowercase (\"P\")").
 */
int
config_value_db_glob_check(const char *glob, char *why, size_t whylen)
{
    const unsigned char *p = (const unsigned char *)glob;
    char shown[8];

    if (*p == '\0') {
        snprintf(why, whylen, "a database name cannot be empty");
        return (-1);
    }
    for (; *p != '\0'; p++) {
        char c = (char)*p;

        if (c == '*' || c == '?') {
            continue;
        }
        if (p == (const unsigned char *)glob && !(c >= 'a' && c <= 'z')) {
            if (c >= 'A' && c <= 'Z') {
                snprintf(why, whylen, "database names are lowercase (\"%c\")", c);
            } else {
                snprintf(why, whylen, "a database name starts with a lowercase letter");
            }
            return (-1);
        }
        if (is_db_char(c)) {
            continue;
        }
        if (c >= 'A' && c <= 'Z') {
            snprintf(why, whylen, "database names are lowercase (\"%c\")", c);
            return (-1);
        }
        if (*p < 0x20 || *p >= 0x7f) {
            snprintf(shown, sizeof(shown), "\\x%02x", *p);
        } else {
            snprintf(shown, sizeof(shown), "%c", c);
        }
        snprintf(why, whylen, "\"%s\" cannot appear in a CouchDB database name", shown);
        return (-1);
    }
    return (0);
}

/* True when ${s} looks like an attempt at an IPv4 literal: only digits and dots. */
static bool
looks_ipv4(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((*s < '0' || *s > '9') && *s != '.') {
            return (false);
        }
    }
    return (true);
}

/*
 * config_value_parse_addr(text, allow_name, addr, why, whylen):
 * Parse "1.2.3.4:80", "[::1]:80" or, when ${allow_name}, "host.example.org:80" into ${addr}.
 * The port must be 1-65535.  Returns 0, or -1 with the reason in ${why}.
 */
int
config_value_parse_addr(const char *text, bool allow_name, struct config_addr *addr, char *why,
                        size_t whylen)
{
    struct config_addr a;
    const char *host;
    size_t hostlen;
    const char *port;
    unsigned char bytes[16];
    int family;
    unsigned long pn = 0;
    const char *p;

    memset(&a, 0, sizeof(a));
    if (text[0] == '\0') {
        snprintf(why, whylen, "expected host:port, got an empty string");
        goto err0;
    }

    if (text[0] == '[') {
        /* "[v6]:port" */
        const char *close = strchr(text, ']');

        if (close == NULL) {
            snprintf(why, whylen, "expected \"]\" after the IPv6 address, got \"%s\"", text);
            goto err0;
        }
        host = text + 1;
        hostlen = (size_t)(close - host);
        if (close[1] != ':') {
            snprintf(why, whylen, "expected host:port like [::1]:80, got \"%s\"%s", text,
                     close[1] == '\0' ? " (no port)" : "");
            goto err0;
        }
        port = close + 2;
        if (hostlen >= sizeof(a.host)) {
            snprintf(why, whylen, "expected an IPv6 address inside [ ], got \"%s\"", text);
            goto err0;
        }
        memcpy(a.host, host, hostlen);
        a.host[hostlen] = '\0';
        if (config_value_ip_parse(a.host, bytes, &family) != 0 || family != 6) {
            snprintf(why, whylen, "expected an IPv6 address inside [ ], got \"%s\"", a.host);
            goto err0;
        }
        a.is_ip = true;
        a.is_ipv6 = true;
    } else {
        const char *colon = strrchr(text, ':');

        if (colon == NULL) {
            snprintf(why, whylen, "expected host:port, got \"%s\" (no port)", text);
            goto err0;
        }
        host = text;
        hostlen = (size_t)(colon - text);
        port = colon + 1;
        if (hostlen == 0) {
            snprintf(why, whylen, "expected host:port, got \"%s\" (no host)", text);
            goto err0;
        }
        if (memchr(host, ':', hostlen) != NULL) {
            snprintf(why, whylen, "expected an IPv6 address in brackets like [::1]:80, got \"%s\"",
                     text);
            goto err0;
        }
        if (hostlen >= sizeof(a.host)) {
            snprintf(why, whylen, "expected a host of at most 253 characters, got %zu", hostlen);
            goto err0;
        }
        memcpy(a.host, host, hostlen);
        a.host[hostlen] = '\0';
        if (config_value_ip_parse(a.host, bytes, &family) == 0) {
            a.is_ip = true;
        } else if (looks_ipv4(a.host)) {
            snprintf(why, whylen, "expected an IPv4 address, got \"%s\"", a.host);
            goto err0;
        } else if (!allow_name) {
            snprintf(why, whylen,
                     "expected an IP address like 127.0.0.1 or [::1], got the name \"%s\" "
                     "(host names are not allowed here)",
                     a.host);
            goto err0;
        } else if (!config_value_name_is_dns(a.host)) {
            snprintf(why, whylen, "expected an IP address or a host name, got \"%s\"", a.host);
            goto err0;
        }
    }

    /* The port: 1 to 5 decimal digits, 1-65535. */
    for (p = port; *p >= '0' && *p <= '9' && p - port < 6; p++) {
        pn = pn * 10 + (unsigned long)(*p - '0');
    }
    if (*port == '\0') {
        snprintf(why, whylen, "expected host:port, got \"%s\" (no port)", text);
        goto err0;
    }
    if (*p != '\0' || pn == 0 || pn > 65535) {
        snprintf(why, whylen, "expected a port from 1 to 65535, got \"%s\"", port);
        goto err0;
    }
    a.port = (uint16_t)pn;

    *addr = a;
    return (0);

err0:
    return (-1);
}

/*
 * config_value_addr_format(addr, buf, len):
 * "host:port", with brackets around IPv6 hosts.  Returns ${buf}.
 */
const char *
config_value_addr_format(const struct config_addr *addr, char *buf, size_t len)
{
    if (addr->is_ipv6) {
        snprintf(buf, len, "[%s]:%u", addr->host, (unsigned)addr->port);
    } else {
        snprintf(buf, len, "%s:%u", addr->host, (unsigned)addr->port);
    }
    return (buf);
}

/*
 * config_value_mode_str(mode):
 * "inbound" or "outbound".
 */
const char *
config_value_mode_str(enum config_mode mode)
{
    switch (mode) {
    case CONFIG_MODE_INBOUND:
        return ("inbound");
    case CONFIG_MODE_OUTBOUND:
        return ("outbound");
    }
    return ("unknown");
}

/*
 * config_value_protocol_str(protocol):
 * "http" or "tcp".
 */
const char *
config_value_protocol_str(enum config_protocol protocol)
{
    switch (protocol) {
    case CONFIG_PROTOCOL_HTTP:
        return ("http");
    case CONFIG_PROTOCOL_TCP:
        return ("tcp");
    }
    return ("unknown");
}

/*
 * config_value_log_level_str(level):
 * "error", "warn", "info" or "debug".
 */
const char *
config_value_log_level_str(enum config_log_level level)
{
    switch (level) {
    case CONFIG_LOG_ERROR:
        return ("error");
    case CONFIG_LOG_WARN:
        return ("warn");
    case CONFIG_LOG_INFO:
        return ("info");
    case CONFIG_LOG_DEBUG:
        return ("debug");
    }
    return ("unknown");
}

/*
 * config_value_cidr_parse(text, out, why, whylen):
 * Parse ${text}, an IPv4 or IPv6 address with an optional "/prefix", into ${out}.  Host bits
 * set below the prefix ("10.1.2.3/8") are an error: the writer meant another block.  An
 * IPv4-mapped block (::ffff:10.0.0.0/104) becomes its IPv4 block (10.0.0.0/8), which is how
 * senders are matched.  Returns 0, or -1 with the reason in ${why}.
 */
int
config_value_cidr_parse(const char *text, struct config_cidr *out, char *why, size_t whylen)
{
    char addr[INET6_ADDRSTRLEN];
    const char *slash = strchr(text, '/');
    size_t alen = slash != NULL ? (size_t)(slash - text) : strlen(text);
    unsigned long prefix;
    unsigned max, i;

    memset(out, 0, sizeof(*out));
    if (alen == 0 || alen >= sizeof(addr)) {
        snprintf(why, whylen, "expected an IP address or block such as 10.0.0.0/8 or fd00::/8");
        return (-1);
    }
    memcpy(addr, text, alen);
    addr[alen] = '\0';
    if (inet_pton(AF_INET, addr, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        snprintf(why, whylen,
                 "\"%s\" is not an IP address (a load balancer is named by its address, not a "
                 "host name)",
                 addr);
        return (-1);
    }
    out->prefix = max;
    if (slash != NULL) {
        const char *p = slash + 1;

        prefix = 0;
        if (*p == '\0' || strlen(p) > 3 || (p[0] == '0' && p[1] != '\0')) {
            snprintf(why, whylen, "prefix \"/%s\" is not a number from 0 to %u", p, max);
            return (-1);
        }
        for (; *p != '\0'; p++) {
            if (*p < '0' || *p > '9') {
                snprintf(why, whylen, "prefix \"%s\" is not a number from 0 to %u", slash, max);
                return (-1);
            }
            prefix = prefix * 10 + (unsigned long)(*p - '0');
        }
        if (prefix > max) {
            snprintf(why, whylen, "prefix /%lu is longer than the %u bits of an %s address", prefix,
                     max, max == 32 ? "IPv4" : "IPv6");
            return (-1);
        }
        out->prefix = (unsigned)prefix;
    }
    if (out->family == AF_INET6 && out->prefix >= 96 &&
        memcmp(out->addr, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0) {
        /* ::ffff:a.b.c.d/N is the IPv4 block a.b.c.d/(N-96): what it is matched as. */
        memmove(out->addr, out->addr + 12, 4);
        memset(out->addr + 4, 0, 12);
        out->family = AF_INET;
        out->prefix -= 96;
        max = 32;
    }
    for (i = out->prefix; i < max; i++) {
        if (out->addr[i / 8] & (0x80u >> (i % 8))) {
            snprintf(why, whylen,
                     "%s has bits set after the first %u (the block starts at another address)",
                     text, out->prefix);
            return (-1);
        }
    }
    return (0);
}

/* True when the first ${prefix} bits of ${a} and ${b} are equal. */
static bool
prefix_equal(const unsigned char *a, const unsigned char *b, unsigned prefix)
{
    unsigned whole = prefix / 8, rest = prefix % 8;

    if (memcmp(a, b, whole) != 0) {
        return (false);
    }
    if (rest == 0) {
        return (true);
    }
    return (((a[whole] ^ b[whole]) & (0xffu << (8 - rest)) & 0xffu) == 0);
}

/*
 * config_value_cidr_match(cidrs, n, sa):
 * True when the address of ${sa} (AF_INET or AF_INET6; an IPv4-mapped IPv6 address counts as
 * its IPv4 address) lies in one of the ${n} blocks ${cidrs}.
 */
bool
config_value_cidr_match(const struct config_cidr *cidrs, size_t n, const struct sockaddr *sa)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    const unsigned char *a;
    int family;
    size_t i;

    if (sa->sa_family == AF_INET) {
        family = AF_INET;
        a = (const unsigned char *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
    } else if (sa->sa_family == AF_INET6) {
        a = (const unsigned char *)&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        family = AF_INET6;
        if (memcmp(a, mapped, sizeof(mapped)) == 0) {
            family = AF_INET;
            a += 12;
        }
    } else {
        return (false);
    }
    for (i = 0; i < n; i++) {
        if (cidrs[i].family == family && prefix_equal(a, cidrs[i].addr, cidrs[i].prefix)) {
            return (true);
        }
    }
    return (false);
}
