/*
 * certs_util.c: what the rest of certs/ shares: error text, paths and directories, atomic
 * file writes, key generation, certificate skeletons, PEM reading and writing.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls.h"

#include "certs.h"
#include "certs_internal.h"

/* At most this many OpenSSL reasons are appended to one message. */
#define ERR_REASONS_MAX 3

/* Random bytes in a serial number: 128 bits, the top one cleared to keep it positive. */
#define SERIAL_BYTES 16

/*
 * certs_err(err, errlen, fmt, ...):
 * Format a reason into ${err} (if not NULL).
 */
void
certs_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/*
 * certs_err_ossl(err, errlen, fmt, ...):
 * Like certs_err(), then append the reasons on OpenSSL's error queue (oldest first) and
 * empty the queue, so a stale entry never blames a later step.
 */
void
certs_err_ossl(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    unsigned long e;
    const char *sep = ": ";
    const char *reason;
    char buf[256];
    size_t used;
    int n = 0;

    if (err == NULL || errlen == 0) {
        ERR_clear_error();
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);

    /* The oldest entry is the root cause; the next ones say where it surfaced. */
    while ((e = ERR_get_error()) != 0 && n < ERR_REASONS_MAX) {
        reason = ERR_reason_error_string(e);
        if (reason == NULL) {
            ERR_error_string_n(e, buf, sizeof(buf));
            reason = buf;
        }
        used = strlen(err);
        snprintf(err + used, errlen - used, "%s%s", sep, reason);
        sep = "; ";
        n++;
    }
    ERR_clear_error();
}

/*
 * certs_path(buf, len, dir, file, err, errlen):
 * Join ${dir} and ${file} with one '/' into ${buf}.  Returns 0, or -1 if it does not fit.
 */
int
certs_path(char *buf, size_t len, const char *dir, const char *file, char *err, size_t errlen)
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
 * certs_mkdir(dir, err, errlen):
 * Make sure ${dir} is a directory, creating it and any missing parents with mode 0700.
 * Existing directories keep their mode.  Returns 0 or -1.
 */
int
certs_mkdir(const char *dir, char *err, size_t errlen)
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
 * certs_exists(path):
 * Whether something (file, link, directory) exists at ${path}.
 */
bool
certs_exists(const char *path)
{
    struct stat st;

    /* Anything but "no such file" counts as present: we never overwrite what we cannot see. */
    return lstat(path, &st) == 0 || errno != ENOENT;
}

/*
 * certs_same_file(a, b):
 * Whether ${a} and ${b} both exist and name the same file.
 */
bool
certs_same_file(const char *a, const char *b)
{
    struct stat sa, sb;

    if (stat(a, &sa) != 0 || stat(b, &sb) != 0) {
        return false;
    }
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/*
 * certs_check_days(days, deflt, out, err, errlen):
 * Store ${days} (or ${deflt} when it is 0) in *${out} if within CERTS_DAYS_MIN..MAX.
 * Returns 0 or -1.
 */
int
certs_check_days(int days, int deflt, int *out, char *err, size_t errlen)
{
    if (days == 0) {
        days = deflt;
    }
    if (days < CERTS_DAYS_MIN || days > CERTS_DAYS_MAX) {
        certs_err(err, errlen, "validity of %d days is out of range (%d to %d)", days,
                  CERTS_DAYS_MIN, CERTS_DAYS_MAX);
        return -1;
    }
    *out = days;
    return 0;
}

/*
 * certs_key_type_str(type):
 * "EC P-256" or "RSA 3072" (static text).
 */
const char *
certs_key_type_str(enum certs_key_type type)
{
    return type == CERTS_KEY_RSA ? "RSA 3072" : "EC P-256";
}

/*
 * certs_keygen(type, err, errlen):
 * Generate a private key of ${type}.  Returns the key (caller frees) or NULL.
 */
EVP_PKEY *
certs_keygen(enum certs_key_type type, char *err, size_t errlen)
{
    EVP_PKEY *key;

    ERR_clear_error();
    switch (type) {
    case CERTS_KEY_EC:
        key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        break;
    case CERTS_KEY_RSA:
        key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072);
        break;
    default:
        certs_err(err, errlen, "unknown key type %d", (int)type);
        return NULL;
    }
    if (key == NULL) {
        certs_err_ossl(err, errlen, "cannot generate an %s key", certs_key_type_str(type));
    }
    return key;
}

/* Give ${x} a random positive 128-bit serial number (RFC 5280 allows up to 20 octets). */
static int
set_random_serial(X509 *x)
{
    unsigned char rnd[SERIAL_BYTES];
    BIGNUM *bn;
    ASN1_INTEGER *serial;
    int ok;

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        return -1;
    }
    /* Clear the top bit (positive) and set the next (never a short or zero serial). */
    rnd[0] = (unsigned char)((rnd[0] & 0x7f) | 0x40);
    if ((bn = BN_bin2bn(rnd, sizeof(rnd), NULL)) == NULL) {
        return -1;
    }
    serial = BN_to_ASN1_INTEGER(bn, NULL);
    BN_free(bn);
    if (serial == NULL) {
        return -1;
    }
    ok = X509_set_serialNumber(x, serial);
    ASN1_INTEGER_free(serial);
    return ok == 1 ? 0 : -1;
}

/*
 * certs_new_cert(cn, key, days, err, errlen):
 * Start a v3 certificate: random 128-bit positive serial, subject CN=${cn}, public key of
 * ${key}, valid from now - CERTS_BACKDATE_SECONDS to now + ${days}.  The caller sets the
 * issuer, adds extensions and signs.  Returns the certificate (caller frees) or NULL.
 */
X509 *
certs_new_cert(const char *cn, EVP_PKEY *key, int days, char *err, size_t errlen)
{
    X509 *x;
    X509_NAME *subject;
    size_t cnlen = strlen(cn);

    if (cnlen == 0 || cnlen > CERTS_CN_MAX) {
        certs_err(err, errlen, "name \"%s\" must be 1 to %d characters to fit a common name", cn,
                  CERTS_CN_MAX);
        goto err0;
    }
    ERR_clear_error();
    if ((x = X509_new()) == NULL) {
        goto err1;
    }
    if (X509_set_version(x, X509_VERSION_3) != 1) {
        goto err2;
    }
    if (set_random_serial(x) != 0) {
        goto err2;
    }
    if ((subject = X509_get_subject_name(x)) == NULL) {
        goto err2;
    }
    if (X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                   0) != 1) {
        goto err2;
    }
    if (X509_set_pubkey(x, key) != 1) {
        goto err2;
    }
    if (X509_gmtime_adj(X509_getm_notBefore(x), -CERTS_BACKDATE_SECONDS) == NULL) {
        goto err2;
    }
    if (X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL) == NULL) {
        goto err2;
    }

    /* Success! */
    return x;

err2:
    X509_free(x);
err1:
    certs_err_ossl(err, errlen, "cannot build the certificate for \"%s\"", cn);
err0:
    return NULL;
}

/*
 * certs_add_ext(x, issuer, nid, value, err, errlen):
 * Add the extension ${nid} written in OpenSSL's configuration syntax (${value}, e.g.
 * "critical,CA:TRUE") to ${x}; ${issuer} is the signing certificate (${x} itself when
 * self-signed), needed for the key identifiers.  Returns 0 or -1.
 */
int
certs_add_ext(X509 *x, X509 *issuer, int nid, const char *value, char *err, size_t errlen)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;

    ERR_clear_error();
    memset(&ctx, 0, sizeof(ctx));
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    if ((ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value)) == NULL) {
        goto err0;
    }
    if (X509_add_ext(x, ext, -1) != 1) {
        goto err1;
    }

    /* Success!  X509_add_ext() stored a copy. */
    X509_EXTENSION_free(ext);
    return 0;

err1:
    X509_EXTENSION_free(ext);
err0:
    certs_err_ossl(err, errlen, "cannot add extension %s = %s", OBJ_nid2sn(nid), value);
    return -1;
}

/*
 * certs_sign(x, key, err, errlen):
 * Sign ${x} with ${key} and SHA-256 (no digest for EdDSA keys, which hash internally).
 * Returns 0 or -1.
 */
int
certs_sign(X509 *x, EVP_PKEY *key, char *err, size_t errlen)
{
    const EVP_MD *md = EVP_sha256();

    /* An existing CA may hold an Ed25519/Ed448 key; those take no separate digest. */
    if (EVP_PKEY_is_a(key, "ED25519") || EVP_PKEY_is_a(key, "ED448")) {
        md = NULL;
    }
    ERR_clear_error();
    if (X509_sign(x, key, md) <= 0) {
        certs_err_ossl(err, errlen, "cannot sign the certificate");
        return -1;
    }
    return 0;
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
 * certs_write_file(path, data, len, mode, err, errlen):
 * Write ${data} to ${path} atomically with permissions ${mode} (temporary file created with
 * ${mode} from the start, fsync, rename).  Returns 0, or -1 with the reason in ${err}.
 */
int
certs_write_file(const char *path, const void *data, size_t len, mode_t mode, char *err,
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
    n = close(fd);
    fd = -1;
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
 * certs_write_key(path, key, err, errlen):
 * Write ${key} as an unencrypted PKCS#8 PEM file, mode 0600, atomically.  The PEM text is
 * cleansed from memory afterwards.  Returns 0 or -1.
 */
int
certs_write_key(const char *path, EVP_PKEY *key, char *err, size_t errlen)
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
    if (certs_write_file(path, pem, (size_t)len, 0600, err, errlen) != 0) {
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
 * certs_write_certs(path, certs, err, errlen):
 * Write the certificates ${certs} as PEM, in order, mode 0644, atomically.
 * Returns 0 or -1.
 */
int
certs_write_certs(const char *path, const STACK_OF(X509) * certs, char *err, size_t errlen)
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
    if (certs_write_file(path, pem, (size_t)len, 0644, err, errlen) != 0) {
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

    if ((fd = tls_open_regular(path, why, sizeof(why))) < 0) {
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
 * certs_read_certs(path, err, errlen):
 * Read every PEM certificate in ${path}, in file order.  Fails when there is none.
 * Returns the stack (caller frees with sk_X509_pop_free(.., X509_free)) or NULL.
 */
STACK_OF(X509) * certs_read_certs(const char *path, char *err, size_t errlen)
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
 * certs_read_key(path, err, errlen):
 * Read an unencrypted PEM private key from ${path}; never prompts for a passphrase.
 * Returns the key (caller frees) or NULL.
 */
EVP_PKEY *
certs_read_key(const char *path, char *err, size_t errlen)
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

/*
 * certs_date_str(t, buf, len):
 * Write ${t} as YYYY-MM-DD (UTC) into ${buf}.  Returns 0 or -1.
 */
int
certs_date_str(const ASN1_TIME *t, char *buf, size_t len)
{
    struct tm tm;

    if (ASN1_TIME_to_tm(t, &tm) != 1) {
        return -1;
    }
    return strftime(buf, len, "%Y-%m-%d", &tm) == 0 ? -1 : 0;
}
