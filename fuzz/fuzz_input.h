/*
 * fuzz_input: the line format shared by fuzz_name and fuzz_ident, and a certificate built
 * from it in memory.
 *
 * An input is a list of lines; the first byte of a line is its tag, the rest its payload.
 * In a payload "\n", "\0" and "\\" stand for a newline, a NUL and a backslash, so any byte
 * can appear; every other byte is taken as it is.
 *   H host      the peer host to check (fuzz_name)       A entry   an allow / peers entry
 *   C text      a CN as UTF8String (raw bytes)            c / T     a CN as BMPString / T61String
 *   O text      an O attribute                            D name    a DNS SAN (raw IA5String)
 *   I ip        an IP SAN: an IPv4/IPv6 literal, else the raw bytes (any length)
 *   U uri       a URI SAN                                 E mail    an email SAN
 *   K flags     extendedKeyUsage: 's' serverAuth, 'c' clientAuth, 'a' any, 'x' codeSigning,
 *               "n" no extension (default: serverAuth and clientAuth)
 *   F flags     'f' cn_fallback, 's' need serverAuth (fuzz_name)
 *   S secret    the CouchDB proxy-auth secret (fuzz_ident)
 *   L number    a buffer length for the header values (fuzz_ident)
 * Unknown tags are ignored.  The certificate is signed with a key made once per process, so
 * that it encodes like a real one (the signature is never checked by the code under test).
 */
#ifndef FERRY_FUZZ_INPUT_H
#define FERRY_FUZZ_INPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#define FZ_MAX_LINES 64

/* One decoded line: its tag and payload (payload is NUL-terminated, may hold NULs). */
struct fz_line {
    char tag;
    char *s;
    size_t len;
};

struct fz_input {
    struct fz_line v[FZ_MAX_LINES];
    size_t n;
    char *store; /* every payload, owned */
};

/*
 * fz_input_parse(data, size, in):
 * Split ${data} into lines and decode each payload.  Returns 0, or -1 on OOM.
 * Free with fz_input_free().
 */
int fz_input_parse(const uint8_t *data, size_t size, struct fz_input *in);

/* fz_input_free(in): release what fz_input_parse() allocated. */
void fz_input_free(struct fz_input *in);

/*
 * fz_input_has(in, tag, c):
 * Does a line tagged ${tag} hold the byte ${c} in its payload?
 */
bool fz_input_has(const struct fz_input *in, char tag, char c);

/*
 * fz_cert_build(in):
 * A signed X.509 certificate with the subject, SANs and EKU the lines of ${in} describe, or
 * NULL when OpenSSL refuses them.  The caller frees it.
 */
X509 *fz_cert_build(const struct fz_input *in);

/*
 * fz_printable(s, n):
 * Is s[0..n) printable ASCII only (0x20..0x7e)?
 */
bool fz_printable(const char *s, size_t n);

/*
 * fz_check(cond, what):
 * Abort with ${what} on stderr when ${cond} is false (an invariant the fuzzer broke).
 */
void fz_check(bool cond, const char *what);

#endif /* FERRY_FUZZ_INPUT_H */
