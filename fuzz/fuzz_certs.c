/*
 * fuzz_certs: libFuzzer target for `ferry certs inspect` (certs_inspect() in
 * certs/certs_inspect.c): the certificate, key, CA bundle and CRL files an operator points
 * it at, in PEM, DER or PKCS#12, whole or damaged.
 *
 * certs_inspect() reads paths, so each input is written to in-memory files (memfd, one per
 * role, rewritten for every input) named /proc/self/fd/N.  Input: one control byte, then
 * the files separated by "@@@@": the certificate file, then (each when its bit is set) the
 * CA bundle, the private key and the CRL file.  Control bits: 1 JSON output, 2 CA bundle,
 * 4 key, 8 CRL, 16 a name the SAN must cover, 32 this machine's host name.
 * Checked besides crashes, leaks and undefined behaviour:
 *   - the text output holds no control byte but newlines (a hostile subject or SAN cannot
 *     forge a line);
 *   - the JSON output is one well-formed JSON document followed by a newline.
 * FUZZ_CERTS_PRINT=1 in the environment prints the output of each input to stderr.
 */
#define _GNU_SOURCE
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>

#include "certs.h"
#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { FZ_CERT, FZ_CA, FZ_KEY, FZ_CRL, FZ_FILES };

static int fz_fd[FZ_FILES] = {-1, -1, -1, -1};
static char fz_path[FZ_FILES][64];

/* Make the in-memory files once. */
static void
fz_files_open(void)
{
    static const char *const names[FZ_FILES] = {"cert.pem", "ca.pem", "key.pem", "crl.pem"};

    if (fz_fd[0] >= 0) {
        return;
    }
    for (int i = 0; i < FZ_FILES; i++) {
        fz_fd[i] = memfd_create(names[i], MFD_CLOEXEC);
        fz_check(fz_fd[i] >= 0, "memfd_create");
        /* As a key file should be: otherwise every input gets a key-permissions finding. */
        fz_check(fchmod(fz_fd[i], 0600) == 0, "fchmod");
        snprintf(fz_path[i], sizeof(fz_path[i]), "/proc/self/fd/%d", fz_fd[i]);
    }
}

/* Replace the contents of file ${i} with d[0..n). */
static void
fz_file_set(int i, const uint8_t *d, size_t n)
{
    fz_check(ftruncate(fz_fd[i], 0) == 0, "ftruncate");
    fz_check(n == 0 || pwrite(fz_fd[i], d, n, 0) == (ssize_t)n, "pwrite");
}

/* ---- a small JSON checker (RFC 8259 syntax, no semantics) ---- */

static const char *fz_json_value(const char *p, int depth);

static const char *
fz_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
        p++;
    }
    return p;
}

static const char *
fz_json_string(const char *p)
{
    if (*p++ != '"') {
        return NULL;
    }
    while (*p != '"') {
        if ((unsigned char)*p < 0x20) {
            return NULL; /* includes the NUL at the end */
        }
        if (*p == '\\') {
            p++;
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++) {
                    if (strchr("0123456789abcdefABCDEF", p[i]) == NULL || p[i] == '\0') {
                        return NULL;
                    }
                }
                p += 4;
            } else if (*p == '\0' || strchr("\"\\/bfnrt", *p) == NULL) {
                return NULL;
            }
        }
        p++;
    }
    return p + 1;
}

static const char *
fz_json_value(const char *p, int depth)
{
    p = fz_ws(p);
    if (depth > 32) {
        return NULL;
    }
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        bool obj = *p == '{';

        p = fz_ws(p + 1);
        if (*p == close) {
            return p + 1;
        }
        for (;;) {
            if (obj) {
                if ((p = fz_json_string(fz_ws(p))) == NULL) {
                    return NULL;
                }
                p = fz_ws(p);
                if (*p++ != ':') {
                    return NULL;
                }
            }
            if ((p = fz_json_value(p, depth + 1)) == NULL) {
                return NULL;
            }
            p = fz_ws(p);
            if (*p == close) {
                return p + 1;
            }
            if (*p++ != ',') {
                return NULL;
            }
        }
    }
    if (*p == '"') {
        return fz_json_string(p);
    }
    if (strncmp(p, "true", 4) == 0 || strncmp(p, "null", 4) == 0) {
        return p + 4;
    }
    if (strncmp(p, "false", 5) == 0) {
        return p + 5;
    }
    if (*p == '-' || (*p >= '0' && *p <= '9')) {
        p += *p == '-';
        if (!(*p >= '0' && *p <= '9')) {
            return NULL;
        }
        while (*p >= '0' && *p <= '9') {
            p++;
        }
        return p;
    }
    return NULL;
}

/* Find "@@@@" in d[0..n); returns its offset or n. */
static size_t
fz_split(const uint8_t *d, size_t n)
{
    for (size_t i = 0; i + 4 <= n; i++) {
        if (memcmp(d + i, "@@@@", 4) == 0) {
            return i;
        }
    }
    return n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct certs_diag_params p;
    unsigned ctl;
    const uint8_t *d;
    size_t n, k;
    char *out = NULL;
    size_t out_len = 0;
    FILE *f;
    bool json;

    if (size < 1) {
        return 0;
    }
    fz_files_open();
    ctl = data[0];
    json = (ctl & 1) != 0;
    d = data + 1;
    n = size - 1;
    memset(&p, 0, sizeof(p));
    p.need_server_auth = p.need_client_auth = true;
    p.note_multiple_roots = true;
    for (int i = FZ_CERT; i < FZ_FILES; i++) {
        const char **slot = i == FZ_CERT  ? &p.cert
                            : i == FZ_CA  ? &p.ca
                            : i == FZ_KEY ? &p.key
                                          : &p.crl;

        if (i != FZ_CERT && (ctl & (1u << i)) == 0) {
            continue;
        }
        k = fz_split(d, n);
        fz_file_set(i, d, k);
        *slot = fz_path[i];
        d += k < n ? k + 4 : k;
        n -= k < n ? k + 4 : k;
    }
    p.name = (ctl & 16) != 0 ? "node1.example.org" : NULL;
    p.hostname = (ctl & 32) != 0 ? "node1" : NULL;

    f = open_memstream(&out, &out_len);
    fz_check(f != NULL, "open_memstream");
    (void)certs_inspect(&p, json, false, f);
    fz_check(fclose(f) == 0, "fclose");
    /* FUZZ_CERTS_PRINT=1 shows the output, to look at a reproducer. */
    if (getenv("FUZZ_CERTS_PRINT") != NULL) {
        fputs(out, stderr);
    }
    if (json) {
        const char *end = fz_json_value(out, 0);

        fz_check(end != NULL && strcmp(end, "\n") == 0,
                 "certs inspect --json: not one JSON document");
    } else {
        for (size_t i = 0; i < out_len; i++) {
            fz_check(out[i] == '\n' ||
                         ((unsigned char)out[i] >= 0x20 && (unsigned char)out[i] < 0x7f),
                     "certs inspect: a control or non-ASCII byte in the text output");
        }
    }
    free(out);
    ERR_clear_error();
    return 0;
}
