/*
 * certs_file.c: paths and directories, atomic file writes, PEM reading and writing
 * (certs_file_*).
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "tls.h"

#include "certs.h"
#include "certs_internal.h"

/*
 * certs_file_path(buf, len, dir, file, err, errlen):
 * Join ${dir} and ${file} with one '/' into ${buf}.  Returns 0, or -1 if it does not fit.
 */
int
certs_file_path(char *buf, size_t len, const char *dir, const char *file, char *err, size_t errlen)
{
    size_t dlen = strlen(dir);
    const char *sep = (dlen > 0 && dir[dlen - 1] == '/') ? "" : "/";
    int n;

    n = snprintf(buf, len, "%s%s%s", dir, sep, file);
    if (n < 0 || (size_t)n >= len) {
        certs_err(err, errlen, "path too long: %s%s%s", dir, sep, file);
        return -1;
    }
    return 0;
}

/*
 * certs_file_mkdir(dir, err, errlen):
 * Make sure ${dir} is a directory, creating it and any missing parents with mode 0700.
 * Existing directories keep their mode.  Returns 0 or -1.
 */
int
certs_file_mkdir(const char *dir, char *err, size_t errlen)
{
    char buf[CERTS_PATH_MAX];
    struct stat st;
    size_t len = strlen(dir);
    size_t i;

    if (len == 0 || len >= sizeof(buf)) {
        certs_err(err, errlen, "bad directory name \"%s\"", dir);
        return -1;
    }
    memcpy(buf, dir, len + 1);

    /* Create each missing component in turn ("mkdir -p"); EEXIST is checked below. */
    for (i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0') {
            continue;
        }
        buf[i] = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
            certs_err(err, errlen, "cannot create directory %s: %s", buf, strerror(errno));
            return -1;
        }
        if (i < len) {
            buf[i] = '/';
        }
    }
    if (stat(dir, &st) != 0) {
        certs_err(err, errlen, "cannot create directory %s: %s", dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        certs_err(err, errlen, "%s exists and is not a directory", dir);
        return -1;
    }
    return 0;
}

/*
 * certs_file_exists(path):
 * Whether something (file, link, directory) exists at ${path}.
 */
bool
certs_file_exists(const char *path)
{
    struct stat st;

    /* Anything but "no such file" counts as present: we never overwrite what we cannot see. */
    return lstat(path, &st) == 0 || errno != ENOENT;
}

/*
 * certs_file_same(a, b):
 * Whether ${a} and ${b} both exist and name the same file.
 */
bool
certs_file_same(const char *a, const char *b)
{
    struct stat sa, sb;

    if (stat(a, &sa) != 0 || stat(b, &sb) != 0) {
        return false;
    }
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* Build "DIR/.BASE.tmp-<12 random hex digits>" next to ${path}, so rename() stays in one
 * filesystem. */
static int
tmp_name(char *buf, size_t len, const char *path)
{
    unsigned char rnd[6];
    const char *slash = strrchr(path, '/');
    const char *base = slash != NULL ? slash + 1 : path;
    int dirlen = slash != NULL ? (int)(slash - path + 1) : 0;
    int n;

    if (*base == '\0' || RAND_bytes(rnd, sizeof(rnd)) != 1) {
        return -1;
    }
    n = snprintf(buf, len, "%.*s.%s.tmp-%02x%02x%02x%02x%02x%02x", dirlen, path, base, rnd[0],
                 rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
    return (n < 0 || (size_t)n >= len) ? -1 : 0;
}

/* fsync the directory holding ${path} so the rename itself survives a crash. */
static void
sync_parent(const char *path)
{
    char dir[CERTS_PATH_MAX];
    const char *slash = strrchr(path, '/');
    size_t len;
    int fd;

    if (slash == NULL) {
        strcpy(dir, ".");
    } else {
        len = (size_t)(slash - path);
        if (len == 0) {
            len = 1; /* "/file": the root directory */
        }
        if (len >= sizeof(dir)) {
            return;
        }
        memcpy(dir, path, len);
        dir[len] = '\0';
    }
    /* Best effort: some filesystems refuse fsync on directories; the data is already safe. */
    if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        return;
    }
    (void)fsync(fd);
    (void)close(fd);
}

/*
 * certs_file_write(path, data, len, mode, err, errlen):
 * Write ${data} to ${path} atomically with permissions ${mode} (temporary file created with
 * ${mode} from the start, fsync, rename).  Returns 0, or -1 with the reason in ${err}.
 */
int
certs_file_write(const char *path, const void *data, size_t len, mode_t mode, char *err,
                 size_t errlen)
{
    char tmp[CERTS_PATH_MAX];
    const unsigned char *p = data;
    size_t off = 0;
    ssize_t n;
    int fd = -1;
    int tries;

    /*
     * Create the temporary file with ${mode} itself (never wider: the umask can only remove
     * bits), so a key is not readable by others even for a moment.  O_EXCL refuses an
     * existing file or a planted symlink; retry a few names on a clash.
     */
    for (tries = 0; tries < 8; tries++) {
        if (tmp_name(tmp, sizeof(tmp), path) != 0) {
            certs_err(err, errlen, "cannot write %s: bad path or no randomness", path);
            goto err0;
        }
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
        if (fd >= 0 || errno != EEXIST) {
            break;
        }
    }
    if (fd < 0) {
        certs_err(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        goto err0;
    }

    /* The umask may have removed bits we want (0644 under umask 077): set them exactly. */
    if (fchmod(fd, mode) != 0) {
        certs_err(err, errlen, "cannot set the mode of %s: %s", tmp, strerror(errno));
        goto err1;
    }
    while (off < len) {
        n = write(fd, p + off, len - off);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            certs_err(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
            goto err1;
        }
        off += (size_t)n;
    }
    /* The data must be on disk before the rename makes it visible under ${path}. */
    if (fsync(fd) != 0) {
        certs_err(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        goto err1;
    }
    n = close(fd); /* closed either way: from here on, errors go to err2, which leaves fd be */
    if (n != 0) {
        certs_err(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        goto err2;
    }
    if (rename(tmp, path) != 0) {
        certs_err(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        goto err2;
    }
    sync_parent(path);

    /* Success! */
    return 0;

err1:
    (void)close(fd);
err2:
    (void)unlink(tmp);
err0:
    return -1;
}

/* Wipe whatever a memory BIO holds (key text), then free it. */
static void
cleanse_free_bio(BIO *bio)
{
    char *data = NULL;
    long len = BIO_get_mem_data(bio, &data);

    if (len > 0 && data != NULL) {
        OPENSSL_cleanse(data, (size_t)len);
    }
    BIO_free(bio);
}

/*
 * certs_file_write_key(path, key, err, errlen):
 * Write ${key} as an unencrypted PKCS#8 PEM file, mode 0600, atomically.  The PEM text is
 * cleansed from memory afterwards.  Returns 0 or -1.
 */
int
certs_file_write_key(const char *path, EVP_PKEY *key, char *err, size_t errlen)
{
    BIO *bio;
    char *pem = NULL;
    long len;

    ERR_clear_error();
    if ((bio = BIO_new(BIO_s_mem())) == NULL) {
        certs_err_ossl(err, errlen, "cannot encode the private key for %s", path);
        goto err0;
    }
    if (PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) != 1 ||
        (len = BIO_get_mem_data(bio, &pem)) <= 0 || pem == NULL) {
        certs_err_ossl(err, errlen, "cannot encode the private key for %s", path);
        goto err1;
    }
    if (certs_file_write(path, pem, (size_t)len, 0600, err, errlen) != 0) {
        goto err1;
    }

    /* Success!  The key text must not linger in freed memory. */
    cleanse_free_bio(bio);
    return 0;

err1:
    cleanse_free_bio(bio);
err0:
    return -1;
}

/*
 * certs_file_write_certs(path, certs, err, errlen):
 * Write the certificates ${certs} as PEM, in order, mode 0644, atomically.
 * Returns 0 or -1.
 */
int
certs_file_write_certs(const char *path, const STACK_OF(X509) * certs, char *err, size_t errlen)
{
    BIO *bio;
    char *pem = NULL;
    long len;
    int i;

    ERR_clear_error();
    if ((bio = BIO_new(BIO_s_mem())) == NULL) {
        certs_err_ossl(err, errlen, "cannot encode the certificates for %s", path);
        goto err0;
    }
    for (i = 0; i < sk_X509_num(certs); i++) {
        if (PEM_write_bio_X509(bio, sk_X509_value(certs, i)) != 1) {
            certs_err_ossl(err, errlen, "cannot encode the certificates for %s", path);
            goto err1;
        }
    }
    if ((len = BIO_get_mem_data(bio, &pem)) <= 0 || pem == NULL) {
        certs_err(err, errlen, "no certificate to write to %s", path);
        goto err1;
    }
    if (certs_file_write(path, pem, (size_t)len, 0644, err, errlen) != 0) {
        goto err1;
    }

    /* Success! */
    BIO_free(bio);
    return 0;

err1:
    BIO_free(bio);
err0:
    return -1;
}

/* Open ${path} for reading as a BIO; errno explains a failure. */
static BIO *
open_bio(const char *path, char *err, size_t errlen)
{
    char why[256];
    FILE *fp;
    BIO *bio;
    int fd;

    if ((fd = tls_file_open_regular(path, why, sizeof(why))) < 0) {
        certs_err(err, errlen, "cannot open %s: %s", path, why);
        return NULL;
    }
    if ((fp = fdopen(fd, "r")) == NULL) {
        certs_err(err, errlen, "cannot open %s: %s", path, strerror(errno));
        (void)close(fd);
        return NULL;
    }
    ERR_clear_error();
    if ((bio = BIO_new_fp(fp, BIO_CLOSE)) == NULL) {
        (void)fclose(fp);
        certs_err_ossl(err, errlen, "cannot read %s", path);
        return NULL;
    }
    return bio;
}

/*
 * certs_file_read_certs(path, err, errlen):
 * Read every PEM certificate in ${path}, in file order.  Fails when there is none.
 * Returns the stack (caller frees with sk_X509_pop_free(.., X509_free)) or NULL.
 */
STACK_OF(X509) * certs_file_read_certs(const char *path, char *err, size_t errlen)
{
    STACK_OF(X509) * sk;
    BIO *bio;
    X509 *x;
    unsigned long e;

    if ((bio = open_bio(path, err, errlen)) == NULL) {
        goto err0;
    }
    if ((sk = sk_X509_new_null()) == NULL) {
        certs_err_ossl(err, errlen, "cannot read %s", path);
        goto err1;
    }
    for (;;) {
        ERR_clear_error();
        if ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) == NULL) {
            break;
        }
        if (sk_X509_push(sk, x) <= 0) {
            X509_free(x);
            certs_err_ossl(err, errlen, "cannot read %s", path);
            goto err2;
        }
    }
    /* "No start line" after at least one certificate is the normal end of the file. */
    e = ERR_peek_last_error();
    if (sk_X509_num(sk) == 0 || ERR_GET_LIB(e) != ERR_LIB_PEM ||
        ERR_GET_REASON(e) != PEM_R_NO_START_LINE) {
        if (sk_X509_num(sk) == 0 && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
            ERR_clear_error();
            certs_err(err, errlen, "%s holds no PEM certificate", path);
        } else {
            certs_err_ossl(err, errlen, "bad PEM certificate %d in %s", sk_X509_num(sk) + 1, path);
        }
        goto err2;
    }
    ERR_clear_error();

    /* Success! */
    BIO_free(bio);
    return sk;

err2:
    sk_X509_pop_free(sk, X509_free);
err1:
    BIO_free(bio);
err0:
    return NULL;
}

/* Passphrase callback that refuses: an encrypted key fails instead of prompting. */
static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    *(int *)u = 1;
    return -1;
}

/*
 * certs_file_read_key(path, err, errlen):
 * Read an unencrypted PEM private key from ${path}; never prompts for a passphrase.
 * Returns the key (caller frees) or NULL.
 */
EVP_PKEY *
certs_file_read_key(const char *path, char *err, size_t errlen)
{
    BIO *bio;
    EVP_PKEY *key;
    int asked = 0;

    if ((bio = open_bio(path, err, errlen)) == NULL) {
        return NULL;
    }
    ERR_clear_error();
    key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, &asked);
    if (key == NULL) {
        if (asked) {
            ERR_clear_error();
            certs_err(err, errlen, "%s is encrypted; ferry certs needs an unencrypted CA key",
                      path);
        } else {
            certs_err_ossl(err, errlen, "%s holds no usable PEM private key", path);
        }
    }
    BIO_free(bio);
    return key;
}
