/*
 * tls_file.c: how tls/ reads the files it is given (certificates, keys, CAs, CRLs and what is
 * hashed into a session id context): regular files only, opened non-blocking, read whole into
 * memory with a size bound, so that a FIFO or a device swapped in for a file cannot block the
 * thread that reloads.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>

#include "tls.h"
#include "tls_internal.h"

/* How much of a file we look at to tell PEM from DER or PKCS#12. */
#define PEM_SNIFF_MAX 65536

/* The largest certificate, key, CA or CRL file ferry reads (a /dev/zero-like file stops here). */
#define TLS_FILE_MAX (1024 * 1024)

/*
 * tls_file_kind(mode):
 * What kind of file ${mode} says, for "not a regular file (...)".
 */
const char *
tls_file_kind(unsigned mode)
{
    return S_ISDIR(mode)    ? "a directory"
           : S_ISFIFO(mode) ? "a FIFO"
           : S_ISSOCK(mode) ? "a socket"
           : S_ISCHR(mode)  ? "a character device"
           : S_ISBLK(mode)  ? "a block device"
                            : "not a plain file";
}

/*
 * tls_file_open_regular(path, why, whylen):
 * Open ${path} read-only, non-blocking, close-on-exec, and accept only a regular file.
 * Returns the descriptor, or -1 with the reason in ${why}.
 */
int
tls_file_open_regular(const char *path, char *why, size_t whylen)
{
    struct stat st;
    int fd;

    if ((fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0) {
        tls_errf(why, whylen, "%s", strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0) {
        tls_errf(why, whylen, "%s", strerror(errno));
        (void)close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        tls_errf(why, whylen, "not a regular file (%s)", tls_file_kind((unsigned)st.st_mode));
        (void)close(fd);
        return -1;
    }
    return fd;
}

/*
 * tls_file_fopen(path, why, whylen):
 * tls_file_open_regular() as a stdio stream, or NULL with the reason in ${why}.
 */
FILE *
tls_file_fopen(const char *path, char *why, size_t whylen)
{
    FILE *f;
    int fd;

    if ((fd = tls_file_open_regular(path, why, whylen)) < 0) {
        return NULL;
    }
    if ((f = fdopen(fd, "rb")) == NULL) {
        tls_errf(why, whylen, "%s", strerror(errno));
        (void)close(fd);
    }
    return f;
}

/*
 * tls_file_read_bio(what, path, err, errlen):
 * Read the whole file ${path} (setting ${what}) into a memory BIO: opened by
 * tls_file_open_regular() (non-blocking, regular files only), at most TLS_FILE_MAX bytes.  OpenSSL
 * then parses memory and never opens the path itself, so a file swapped for a FIFO between our
 * check and its open cannot block the reloading thread.  Returns the BIO (caller frees; its
 * buffer is cleared when freed), or NULL with the reason in ${err}.
 */
BIO *
tls_file_read_bio(const char *what, const char *path, char *err, size_t errlen)
{
    char why[256];
    unsigned char *buf;
    size_t len = 0;
    ssize_t n;
    BIO *bio = NULL;
    int fd;

    if (path == NULL || path[0] == '\0') {
        tls_errf(err, errlen, "%s is not set", what);
        return NULL;
    }
    if ((fd = tls_file_open_regular(path, why, sizeof(why))) < 0) {
        tls_errf(err, errlen, "cannot read %s %s: %s", what, path, why);
        return NULL;
    }
    if ((buf = malloc(TLS_FILE_MAX + 1)) == NULL) {
        tls_errf(err, errlen, "out of memory reading %s %s", what, path);
        (void)close(fd);
        return NULL;
    }
    /* One byte more than we accept, to tell "too large" from "exactly the limit". */
    while (len < TLS_FILE_MAX + 1) {
        n = read(fd, buf + len, TLS_FILE_MAX + 1 - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            tls_errf(err, errlen, "cannot read %s %s: %s", what, path, strerror(errno));
            goto done;
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;
    }
    if (len > (size_t)TLS_FILE_MAX) {
        tls_errf(err, errlen, "%s %s is larger than %d bytes", what, path, TLS_FILE_MAX);
        goto done;
    }
    ERR_clear_error();
    if ((bio = BIO_new(BIO_s_mem())) == NULL || BIO_write(bio, buf, (int)len) != (int)len) {
        tls_errf(err, errlen, "out of memory reading %s %s", what, path);
        BIO_free(bio);
        bio = NULL;
    }

done:
    /* Key files pass through here: leave no copy behind. */
    OPENSSL_clear_free(buf, TLS_FILE_MAX + 1);
    (void)close(fd);
    return bio;
}

/*
 * tls_file_is_pem(path):
 * Does ${path} look like PEM (a "-----BEGIN " line early on)?  DER and PKCS#12 do not.
 */
bool
tls_file_is_pem(const char *path)
{
    char *buf;
    FILE *f;
    size_t n;
    bool pem = false;
    char why[256];

    if ((f = tls_file_fopen(path, why, sizeof(why))) == NULL) {
        return false;
    }
    if ((buf = malloc(PEM_SNIFF_MAX + 1)) != NULL) {
        n = fread(buf, 1, PEM_SNIFF_MAX, f);
        buf[n] = '\0';
        /* Binary files may hold NULs: search every NUL-separated piece. */
        for (size_t off = 0; off < n && !pem; off += strlen(buf + off) + 1) {
            pem = strstr(buf + off, "-----BEGIN ") != NULL;
        }
        free(buf);
    }
    (void)fclose(f);
    return pem;
}
