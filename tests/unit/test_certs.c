/*
 * test_certs: certs/ (init-ca, issue, the development default, atomic writes, the CLI).
 *
 * Every file is generated at run time under $FERRY_TEST_TMP (or a fresh /tmp directory) and
 * read back with the OpenSSL API, as a peer would: extensions, chain verification, key
 * match, file modes.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "certs.h"
#include "certs_internal.h"
#include "tls.h"

#define PATH_LEN 4096
#define DAY      (24L * 60 * 60)

/* The per-run directory; everything else lives below it. */
static char tmp_root[PATH_LEN];

/* The CA most tests issue from (made once in the group setup). */
static char ca_dir[PATH_LEN];

/* Build "tmp_root/a[/b]" into ${buf}. */
static const char *
path_in(char *buf, const char *a, const char *b)
{
    int n;

    if (b != NULL) {
        n = snprintf(buf, PATH_LEN, "%s/%s/%s", tmp_root, a, b);
    } else {
        n = snprintf(buf, PATH_LEN, "%s/%s", tmp_root, a);
    }
    assert_true(n > 0 && n < PATH_LEN);
    return buf;
}

/* Build "dir/file" into ${buf}. */
static const char *
join(char *buf, const char *dir, const char *file)
{
    int n = snprintf(buf, PATH_LEN, "%s/%s", dir, file);

    assert_true(n > 0 && n < PATH_LEN);
    return buf;
}

/* Remove ${path} and everything below it. */
static void
rm_rf(const char *path)
{
    struct stat st;
    DIR *d;
    struct dirent *e;
    char sub[PATH_LEN];

    if (lstat(path, &st) != 0) {
        return;
    }
    if (S_ISDIR(st.st_mode) && (d = opendir(path)) != NULL) {
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
                continue;
            }
            rm_rf(join(sub, path, e->d_name));
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* Number of directory entries in ${dir} (without . and ..). */
static int
count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    if (d == NULL) {
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            n++;
        }
    }
    closedir(d);
    return n;
}

/* Permission bits of ${path}, or -1. */
static int
file_mode(const char *path)
{
    struct stat st;

    if (stat(path, &st) != 0) {
        return -1;
    }
    return (int)(st.st_mode & 07777);
}

/* Whole contents of ${path} (caller frees), length in *${len}. */
static unsigned char *
slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    unsigned char *buf;
    long n;

    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    n = ftell(fp);
    assert_true(n >= 0);
    rewind(fp);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

/* Whether files ${a} and ${b} hold the same bytes. */
static bool
same_bytes(const char *a, const char *b)
{
    size_t la, lb;
    unsigned char *da = slurp(a, &la), *db = slurp(b, &lb);
    bool same = la == lb && memcmp(da, db, la) == 0;

    free(da);
    free(db);
    return same;
}

/* Every certificate in ${path}. */
static STACK_OF(X509) * load_certs(const char *path)
{
    STACK_OF(X509) *sk = sk_X509_new_null();
    BIO *bio = BIO_new_file(path, "r");
    X509 *x;

    assert_non_null(sk);
    assert_non_null(bio);
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        assert_true(sk_X509_push(sk, x) > 0);
    }
    ERR_clear_error();
    BIO_free(bio);
    assert_true(sk_X509_num(sk) > 0);
    return sk;
}

/* The first certificate in ${path}. */
static X509 *
load_cert(const char *path)
{
    STACK_OF(X509) *sk = load_certs(path);
    X509 *x = sk_X509_shift(sk);

    sk_X509_pop_free(sk, X509_free);
    return x;
}

static EVP_PKEY *
load_key(const char *path)
{
    BIO *bio = BIO_new_file(path, "r");
    EVP_PKEY *key;

    assert_non_null(bio);
    key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    assert_non_null(key);
    return key;
}

/* Whether ${x} has a DNS SAN ${dns} (when ${ip} is NULL) or an IP SAN ${ip}. */
static bool
has_san(X509 *x, const char *dns, const char *ip)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    ASN1_OCTET_STRING *want = ip != NULL ? a2i_IPADDRESS(ip) : NULL;
    bool found = false;
    int i, type;

    for (i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
        const ASN1_STRING *v = GENERAL_NAME_get0_value(sk_GENERAL_NAME_value(gens, i), &type);
        if (dns != NULL && type == GEN_DNS && ASN1_STRING_length(v) == (int)strlen(dns) &&
            memcmp(ASN1_STRING_get0_data(v), dns, strlen(dns)) == 0) {
            found = true;
        }
        if (want != NULL && type == GEN_IPADD && ASN1_STRING_cmp(v, want) == 0) {
            found = true;
        }
    }
    GENERAL_NAMES_free(gens);
    ASN1_OCTET_STRING_free(want);
    return found;
}

/* Number of SAN entries in ${x}. */
static int
san_count(X509 *x)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int n = gens != NULL ? sk_GENERAL_NAME_num(gens) : 0;

    GENERAL_NAMES_free(gens);
    return n;
}

/* Whether the extension ${nid} of ${x} is present and critical. */
static bool
ext_critical(X509 *x, int nid)
{
    int i = X509_get_ext_by_NID(x, nid, -1);

    return i >= 0 && X509_EXTENSION_get_critical(X509_get_ext(x, i)) == 1;
}

/* The CN of ${x} into ${buf}. */
static const char *
cn_of(X509 *x, char *buf, size_t len)
{
    buf[0] = '\0';
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, (int)len);
    return buf;
}

/* Seconds from now until ${t} (negative when in the past). */
static long
seconds_from_now(const ASN1_TIME *t)
{
    int days, secs;

    assert_int_equal(ASN1_TIME_diff(&days, &secs, NULL, t), 1);
    return (long)days * DAY + secs;
}

/*
 * Verify the leaf in ${leaf_path} (with the intermediates that follow it) against the roots
 * in ${ca_path}, for TLS server and client use.  Returns X509_V_OK or the error.
 */
static int
verify_chain(const char *leaf_path, const char *ca_path)
{
    STACK_OF(X509) *chain = load_certs(leaf_path);
    STACK_OF(X509) *roots = load_certs(ca_path);
    X509 *leaf = sk_X509_shift(chain);
    int purposes[] = {X509_PURPOSE_SSL_SERVER, X509_PURPOSE_SSL_CLIENT};
    int result = X509_V_OK;
    size_t p;
    int i;

    for (p = 0; p < sizeof(purposes) / sizeof(purposes[0]) && result == X509_V_OK; p++) {
        X509_STORE *store = X509_STORE_new();
        X509_STORE_CTX *ctx = X509_STORE_CTX_new();
        assert_non_null(store);
        assert_non_null(ctx);
        for (i = 0; i < sk_X509_num(roots); i++) {
            assert_int_equal(X509_STORE_add_cert(store, sk_X509_value(roots, i)), 1);
        }
        assert_int_equal(X509_STORE_CTX_init(ctx, store, leaf, chain), 1);
        X509_STORE_CTX_set_purpose(ctx, purposes[p]);
        if (X509_verify_cert(ctx) != 1) {
            result = X509_STORE_CTX_get_error(ctx);
        }
        X509_STORE_CTX_free(ctx);
        X509_STORE_free(store);
    }
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    sk_X509_pop_free(roots, X509_free);
    return result;
}

/* Issue ${name} from ${ca} into ${out} with defaults; asserts success. */
static void
issue_simple(const char *ca, const char *name, const char *out)
{
    struct certs_issue_params p;
    char err[1024] = "";

    memset(&p, 0, sizeof(p));
    p.ca_dir = ca;
    p.name = name;
    p.out_dir = out;
    if (certs_issue(&p, err, sizeof(err)) != 0) {
        fail_msg("certs_issue: %s", err);
    }
}

/* Run certs_cli() on the NULL-terminated arguments ${ap}; output in ${out}/${err} (caller frees).
 */
static int
run_cliv(char **out, char **err, va_list ap)
{
    char *argv[32];
    int argc = 0;
    size_t olen, elen;
    FILE *fo = open_memstream(out, &olen);
    FILE *fe = open_memstream(err, &elen);
    int rc;

    assert_non_null(fo);
    assert_non_null(fe);
    while (argc < 31 && (argv[argc] = va_arg(ap, char *)) != NULL) {
        argc++;
    }
    argv[argc] = NULL;
    rc = certs_cli(argc, argv, fo, fe);
    fclose(fo);
    fclose(fe);
    return rc;
}

/* Run certs_cli() on a NULL-terminated argument list; output in ${out}/${err} (caller frees). */
static int
run_cli(char **out, char **err, ...)
{
    va_list ap;
    int rc;

    va_start(ap, err);
    rc = run_cliv(out, err, ap);
    va_end(ap);
    return rc;
}

/*
 * Make an intermediate CA under the root in ${root_dir} and store it in ${dir} as a CA
 * directory: ca.crt = intermediate then root, ca.key = the intermediate's key.
 */
static void
make_intermediate(const char *root_dir, const char *dir)
{
    char p[PATH_LEN];
    X509 *root = load_cert(join(p, root_dir, "ca.crt"));
    EVP_PKEY *root_key = load_key(join(p, root_dir, "ca.key"));
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = X509_new();
    X509V3_CTX ctx;
    const char *exts[][2] = {{"basicConstraints", "critical,CA:TRUE,pathlen:0"},
                             {"keyUsage", "critical,keyCertSign,cRLSign"},
                             {"subjectKeyIdentifier", "hash"},
                             {"authorityKeyIdentifier", "keyid:always"}};
    ASN1_INTEGER *serial = ASN1_INTEGER_new();
    X509_EXTENSION *ext;
    BIO *bio;
    size_t i;

    assert_non_null(key);
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    assert_int_equal(ASN1_INTEGER_set(serial, 4242), 1);
    assert_int_equal(X509_set_serialNumber(x, serial), 1);
    ASN1_INTEGER_free(serial);
    assert_int_equal(X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
                                                (const unsigned char *)"Test Intermediate CA", -1,
                                                -1, 0),
                     1);
    assert_int_equal(X509_set_issuer_name(x, X509_get_subject_name(root)), 1);
    assert_int_equal(X509_set_pubkey(x, key), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -3600));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 1000 * DAY));
    for (i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
        memset(&ctx, 0, sizeof(ctx));
        X509V3_set_ctx(&ctx, root, x, NULL, NULL, 0);
        ext = X509V3_EXT_nconf(NULL, &ctx, exts[i][0], exts[i][1]);
        assert_non_null(ext);
        assert_int_equal(X509_add_ext(x, ext, -1), 1);
        X509_EXTENSION_free(ext);
    }
    assert_true(X509_sign(x, root_key, EVP_sha256()) > 0);

    assert_int_equal(mkdir(dir, 0700), 0);
    bio = BIO_new_file(join(p, dir, "ca.crt"), "w");
    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_X509(bio, x), 1);
    assert_int_equal(PEM_write_bio_X509(bio, root), 1);
    BIO_free(bio);
    bio = BIO_new_file(join(p, dir, "ca.key"), "w");
    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL), 1);
    BIO_free(bio);

    X509_free(x);
    EVP_PKEY_free(key);
    EVP_PKEY_free(root_key);
    X509_free(root);
}

/* ---- atomic writes ---- */

static void
test_write_file_modes(void **state)
{
    char dir[PATH_LEN], p[PATH_LEN], err[256];
    mode_t old;
    size_t len;
    unsigned char *data;

    (void)state;
    path_in(dir, "write", NULL);
    assert_int_equal(mkdir(dir, 0700), 0);

    /* A permissive umask must not widen a key file ... */
    old = umask(0);
    assert_int_equal(certs_file_write(join(p, dir, "k"), "secret", 6, 0600, err, sizeof(err)), 0);
    assert_int_equal(file_mode(p), 0600);
    /* ... and a strict one must not narrow a certificate. */
    umask(077);
    assert_int_equal(certs_file_write(join(p, dir, "c"), "cert", 4, 0644, err, sizeof(err)), 0);
    assert_int_equal(file_mode(p), 0644);
    umask(old);

    /* Replacing a file swaps the whole content and leaves no temporary file behind. */
    assert_int_equal(certs_file_write(join(p, dir, "k"), "new secret", 10, 0600, err, sizeof(err)),
                     0);
    data = slurp(p, &len);
    assert_int_equal(len, 10);
    assert_memory_equal(data, "new secret", 10);
    free(data);
    assert_int_equal(count_entries(dir), 2);

    /* An empty file is fine too. */
    assert_int_equal(certs_file_write(join(p, dir, "empty"), "", 0, 0600, err, sizeof(err)), 0);
    assert_int_equal(file_mode(p), 0600);
}

static void
test_write_file_error(void **state)
{
    char p[PATH_LEN], err[256] = "";

    (void)state;
    assert_int_equal(
        certs_file_write(path_in(p, "no-such-dir", "f"), "x", 1, 0600, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "No such file or directory"));
}

/* ---- init-ca ---- */

static void
test_init_ca(void **state)
{
    char p[PATH_LEN], cn[128];
    X509 *x;
    EVP_PKEY *key, *pub;
    const ASN1_INTEGER *serial;
    BIGNUM *bn;
    long left;

    (void)state;
    /* ca_dir was made by the group setup with the defaults. */
    assert_int_equal(file_mode(ca_dir), 0700);
    assert_int_equal(file_mode(join(p, ca_dir, "ca.key")), 0600);
    assert_int_equal(file_mode(join(p, ca_dir, "ca.crt")), 0644);

    x = load_cert(join(p, ca_dir, "ca.crt"));
    key = load_key(join(p, ca_dir, "ca.key"));
    assert_string_equal(cn_of(x, cn, sizeof(cn)), CERTS_DEFAULT_CA_NAME);
    assert_int_equal(X509_get_version(x), X509_VERSION_3);

    /* basicConstraints critical CA:TRUE; keyUsage critical keyCertSign,cRLSign; SKI. */
    assert_true(X509_get_extension_flags(x) & EXFLAG_CA);
    assert_true(ext_critical(x, NID_basic_constraints));
    assert_true(ext_critical(x, NID_key_usage));
    assert_int_equal(X509_get_key_usage(x), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    assert_non_null(X509_get0_subject_key_id(x));
    assert_int_equal(X509_check_ca(x), 1);

    /* Self-signed with SHA-256, and the key on disk is the one that signed it. */
    assert_int_equal(X509_self_signed(x, 1), 1);
    pub = X509_get0_pubkey(x);
    assert_int_equal(X509_verify(x, pub), 1);
    assert_int_equal(X509_check_private_key(x, key), 1);
    assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
    assert_true(EVP_PKEY_is_a(key, "EC"));

    /* Ten years, backdated a little; a positive serial of more than 64 bits. */
    left = seconds_from_now(X509_get0_notAfter(x));
    assert_true(labs(left - CERTS_DEFAULT_CA_DAYS * DAY) < DAY);
    assert_true(seconds_from_now(X509_get0_notBefore(x)) < 0);
    serial = X509_get0_serialNumber(x);
    bn = ASN1_INTEGER_to_BN(serial, NULL);
    assert_non_null(bn);
    assert_false(BN_is_negative(bn));
    assert_true(BN_num_bits(bn) > 64);
    BN_free(bn);

    X509_free(x);
    EVP_PKEY_free(key);
}

static void
test_init_ca_refuses_overwrite(void **state)
{
    struct certs_ca_params ca;
    char p[PATH_LEN], q[PATH_LEN], err[1024] = "", want[PATH_LEN + 64];
    unsigned char *before, *after;
    size_t lb, la;

    (void)state;
    before = slurp(join(p, ca_dir, "ca.key"), &lb);
    memset(&ca, 0, sizeof(ca));
    ca.dir = ca_dir;
    assert_int_equal(certs_ca_init(&ca, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s already exists; refusing to overwrite a CA key", p);
    assert_string_equal(err, want);
    after = slurp(p, &la);
    assert_int_equal(la, lb);
    assert_memory_equal(after, before, la);
    free(before);
    free(after);

    /* Bad parameters. */
    ca.dir = path_in(q, "ca-bad-days", NULL);
    ca.days = 36501;
    assert_int_equal(certs_ca_init(&ca, err, sizeof(err)), -1);
    ca.days = -1;
    assert_int_equal(certs_ca_init(&ca, err, sizeof(err)), -1);
    ca.days = 0;
    ca.name = "";
    assert_int_equal(certs_ca_init(&ca, err, sizeof(err)), -1);
    ca.name = NULL;
    ca.dir = NULL;
    assert_int_equal(certs_ca_init(&ca, err, sizeof(err)), -1);
}

static void
test_init_ca_rsa_named(void **state)
{
    struct certs_ca_params ca;
    char dir[PATH_LEN], p[PATH_LEN], cn[128], err[1024] = "";
    X509 *x;
    EVP_PKEY *key;

    (void)state;
    memset(&ca, 0, sizeof(ca));
    /* A nested directory: its parents are created as well. */
    ca.dir = path_in(dir, "rsa-parent", "ca");
    ca.name = "Site A CA";
    ca.days = 30;
    ca.key_type = CERTS_KEY_RSA;
    if (certs_ca_init(&ca, err, sizeof(err)) != 0) {
        fail_msg("certs_ca_init: %s", err);
    }

    x = load_cert(join(p, dir, "ca.crt"));
    key = load_key(join(p, dir, "ca.key"));
    assert_string_equal(cn_of(x, cn, sizeof(cn)), "Site A CA");
    assert_true(EVP_PKEY_is_a(key, "RSA"));
    assert_int_equal(EVP_PKEY_get_bits(key), 3072);
    assert_int_equal(X509_get_signature_nid(x), NID_sha256WithRSAEncryption);
    assert_true(labs(seconds_from_now(X509_get0_notAfter(x)) - 30 * DAY) < DAY);
    assert_int_equal(file_mode(join(p, dir, "ca.key")), 0600);

    /* An RSA CA signs an EC leaf, which verifies. */
    issue_simple(dir, "rsa-issued.example.org", path_in(p, "rsa-out", NULL));
    {
        char leaf[PATH_LEN], root[PATH_LEN];
        assert_int_equal(verify_chain(path_in(leaf, "rsa-out", "rsa-issued.example.org.crt"),
                                      path_in(root, "rsa-out", "ca.crt")),
                         X509_V_OK);
    }
    X509_free(x);
    EVP_PKEY_free(key);
}

/* ---- issue ---- */

static void
test_issue_default(void **state)
{
    static const char *const dns[] = {"alt.example.org", "*.site-b.example.org", "ALT.example.org"};
    static const char *const ips[] = {"127.0.0.1", "::1", "2001:db8::7"};
    struct certs_issue_params ip;
    char out[PATH_LEN], p[PATH_LEN], q[PATH_LEN], cn[128], err[1024] = "";
    char group[64];
    STACK_OF(X509) * sk;
    X509 *x, *ca, *root_out;
    EVP_PKEY *key;

    (void)state;
    memset(&ip, 0, sizeof(ip));
    ip.ca_dir = ca_dir;
    ip.name = "node1.example.org";
    ip.dns = dns;
    ip.n_dns = 3;
    ip.ips = ips;
    ip.n_ips = 3;
    ip.out_dir = path_in(out, "issue", NULL);
    if (certs_issue(&ip, err, sizeof(err)) != 0) {
        fail_msg("certs_issue: %s", err);
    }

    assert_int_equal(file_mode(out), 0700);
    assert_int_equal(file_mode(join(p, out, "node1.example.org.key")), 0600);
    assert_int_equal(file_mode(join(p, out, "node1.example.org.crt")), 0644);
    assert_int_equal(file_mode(join(p, out, "ca.crt")), 0644);
    assert_int_equal(count_entries(out), 3);

    /* A root CA: NAME.crt is the leaf alone; ca.crt is the CA's certificate. */
    sk = load_certs(join(p, out, "node1.example.org.crt"));
    assert_int_equal(sk_X509_num(sk), 1);
    x = sk_X509_value(sk, 0);
    ca = load_cert(join(q, ca_dir, "ca.crt"));
    root_out = load_cert(join(p, out, "ca.crt"));
    assert_int_equal(X509_cmp(ca, root_out), 0);

    /* Subject and SANs: name, each --dns once (case-insensitive duplicates dropped), each IP. */
    assert_string_equal(cn_of(x, cn, sizeof(cn)), "node1.example.org");
    assert_true(has_san(x, "node1.example.org", NULL));
    assert_true(has_san(x, "alt.example.org", NULL));
    assert_true(has_san(x, "*.site-b.example.org", NULL));
    assert_true(has_san(x, NULL, "127.0.0.1"));
    assert_true(has_san(x, NULL, "::1"));
    assert_true(has_san(x, NULL, "2001:db8::7"));
    assert_int_equal(san_count(x), 6);
    assert_int_equal(X509_check_host(x, "node1.example.org", 0, 0, NULL), 1);
    assert_int_equal(X509_check_host(x, "x.site-b.example.org", 0, 0, NULL), 1);

    /* EKU both ways, CA:FALSE critical, keyUsage critical digitalSignature, SKI + AKI. */
    assert_true(X509_get_extension_flags(x) & EXFLAG_XKUSAGE);
    assert_int_equal(X509_get_extended_key_usage(x), XKU_SSL_SERVER | XKU_SSL_CLIENT);
    assert_true(X509_get_extension_flags(x) & EXFLAG_BCONS);
    assert_false(X509_get_extension_flags(x) & EXFLAG_CA);
    assert_true(ext_critical(x, NID_basic_constraints));
    assert_true(ext_critical(x, NID_key_usage));
    assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE);
    assert_non_null(X509_get0_subject_key_id(x));
    assert_non_null(X509_get0_authority_key_id(x));
    assert_int_equal(
        ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(x), X509_get0_subject_key_id(ca)), 0);
    assert_int_equal(X509_check_issued(ca, x), X509_V_OK);
    assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);

    /* 397 days by default; EC P-256; the key matches; the chain verifies. */
    assert_true(labs(seconds_from_now(X509_get0_notAfter(x)) - 397 * DAY) <= DAY);
    assert_true(seconds_from_now(X509_get0_notBefore(x)) < 0);
    key = load_key(join(p, out, "node1.example.org.key"));
    assert_true(EVP_PKEY_is_a(key, "EC"));
    assert_int_equal(
        EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), NULL),
        1);
    assert_string_equal(group, "prime256v1");
    assert_int_equal(X509_check_private_key(x, key), 1);
    assert_int_equal(verify_chain(join(p, out, "node1.example.org.crt"), join(q, out, "ca.crt")),
                     X509_V_OK);

    /* Serials are random: a second certificate differs. */
    issue_simple(ca_dir, "node2.example.org", out);
    {
        X509 *y = load_cert(join(p, out, "node2.example.org.crt"));
        assert_int_not_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(x), X509_get0_serialNumber(y)),
                             0);
        X509_free(y);
    }

    EVP_PKEY_free(key);
    X509_free(root_out);
    X509_free(ca);
    sk_X509_pop_free(sk, X509_free);
}

static void
test_issue_rsa_ip_name(void **state)
{
    struct certs_issue_params ip;
    char out[PATH_LEN], p[PATH_LEN], q[PATH_LEN], err[1024] = "";
    X509 *x;
    EVP_PKEY *key;

    (void)state;
    memset(&ip, 0, sizeof(ip));
    ip.ca_dir = ca_dir;
    ip.name = "10.0.0.5"; /* an IP literal as the name becomes an IP SAN */
    ip.days = 10;
    ip.key_type = CERTS_KEY_RSA;
    ip.out_dir = path_in(out, "issue-rsa", NULL);
    if (certs_issue(&ip, err, sizeof(err)) != 0) {
        fail_msg("certs_issue: %s", err);
    }

    x = load_cert(join(p, out, "10.0.0.5.crt"));
    key = load_key(join(p, out, "10.0.0.5.key"));
    assert_true(EVP_PKEY_is_a(key, "RSA"));
    assert_int_equal(EVP_PKEY_get_bits(key), 3072);
    assert_int_equal(X509_check_private_key(x, key), 1);
    assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT);
    assert_true(has_san(x, NULL, "10.0.0.5"));
    assert_false(has_san(x, "10.0.0.5", NULL));
    assert_int_equal(san_count(x), 1);
    assert_int_equal(X509_check_ip_asc(x, "10.0.0.5", 0), 1);
    assert_true(labs(seconds_from_now(X509_get0_notAfter(x)) - 10 * DAY) <= DAY);
    assert_int_equal(verify_chain(join(p, out, "10.0.0.5.crt"), join(q, out, "ca.crt")), X509_V_OK);
    X509_free(x);
    EVP_PKEY_free(key);
}

/* --uri: SPIFFE IDs become URI SANs, once each; a bad one is refused before any file. */
static void
test_issue_uri(void **state)
{
    static const char *const uris[] = {"spiffe://site-b.example.org/ns/db/replicator",
                                       "spiffe://site-b.example.org/ns/db/replicator",
                                       "spiffe://site-b.example.org/ns/DB/Other"};
    static const struct {
        const char *uri, *want;
    } bad[] = {
        {"spiffe://site-b.example.org/ns/db/*", "names one workload: no '*'"},
        {"https://site-b.example.org/x", "the scheme must be spiffe"},
        {"spiffe://Site-B.example.org/x", "the trust domain must be lower case"},
        {"spiffe://site-b.example.org/x/", "does not end in '/'"},
        {"spiffe://site-b.example.org/a/../b", "\"..\" path segment"},
        {"spiffe://site-b.example.org/a%20b", "percent-encoding"},
        {"spiffe://site-b.example.org", "a trust domain alone names no workload"},
        {"spiffe://site-b..example.org/x", "the trust domain has an empty label"},
    };
    struct certs_issue_params ip;
    struct tls_peer_info info;
    char out[PATH_LEN], p[PATH_LEN], err[1024] = "";
    X509 *x;

    (void)state;
    memset(&ip, 0, sizeof(ip));
    ip.ca_dir = ca_dir;
    ip.name = "n1.site-b.example.org";
    ip.uris = uris;
    ip.n_uris = 3;
    ip.out_dir = path_in(out, "issue-uri", NULL);
    if (certs_issue(&ip, err, sizeof(err)) != 0) {
        fail_msg("certs_issue: %s", err);
    }
    x = load_cert(join(p, out, "n1.site-b.example.org.crt"));
    memset(&info, 0, sizeof(info));
    tls_peer_info_fill(x, false, &info);
    assert_string_equal(info.sans, "DNS:n1.site-b.example.org,"
                                   "URI:spiffe://site-b.example.org/ns/db/replicator,"
                                   "URI:spiffe://site-b.example.org/ns/DB/Other");
    X509_free(x);

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *one[1] = {bad[i].uri};

        ip.uris = one;
        ip.n_uris = 1;
        ip.out_dir = path_in(out, "rejected-uri", NULL);
        assert_int_equal(certs_issue(&ip, err, sizeof(err)), -1);
        if (strstr(err, "invalid URI \"") == NULL || strstr(err, bad[i].want) == NULL) {
            fail_msg("%s: got \"%s\", want \"%s\"", bad[i].uri, err, bad[i].want);
        }
        assert_int_equal(file_mode(out), -1);
    }
}

/* The dates of every --json output: RFC 3339, UTC, from the certificate's own time. */
static void
test_time_rfc3339(void **state)
{
    ASN1_TIME *t = ASN1_TIME_new();
    char buf[32];

    (void)state;
    assert_int_equal(ASN1_TIME_set_string(t, "20271205000000Z"), 1);
    assert_string_equal(tls_time_rfc3339(t, buf, sizeof(buf)), "2027-12-05T00:00:00Z");
    assert_int_equal(ASN1_TIME_set_string(t, "491231235959Z"), 1); /* UTCTime */
    assert_string_equal(tls_time_rfc3339(t, buf, sizeof(buf)), "2049-12-31T23:59:59Z");
    assert_string_equal(tls_time_rfc3339(NULL, buf, sizeof(buf)), "");
    assert_string_equal(tls_time_rfc3339(t, buf, 5), "");
    ASN1_TIME_free(t);
}

/* certs_issue() with one bad input must fail with ${want} in the reason and write nothing. */
static void
expect_issue_error(const char *name, const char *dns, const char *ipaddr, const char *want)
{
    struct certs_issue_params ip;
    char out[PATH_LEN], err[1024] = "";
    const char *dnsv[1] = {dns};
    const char *ipv[1] = {ipaddr};

    memset(&ip, 0, sizeof(ip));
    ip.ca_dir = ca_dir;
    ip.name = name;
    ip.dns = dnsv;
    ip.n_dns = dns != NULL ? 1 : 0;
    ip.ips = ipv;
    ip.n_ips = ipaddr != NULL ? 1 : 0;
    ip.out_dir = path_in(out, "rejected", NULL);
    assert_int_equal(certs_issue(&ip, err, sizeof(err)), -1);
    if (strstr(err, want) == NULL) {
        fail_msg("name=%s dns=%s ip=%s: got \"%s\", want \"%s\"", name, dns ? dns : "-",
                 ipaddr ? ipaddr : "-", err, want);
    }
    /* Nothing was created: validation comes before any file. */
    assert_int_equal(file_mode(out), -1);
}

static void
test_issue_rejects_bad_input(void **state)
{
    char long_label[80];

    (void)state;
    expect_issue_error("n.example.org", NULL, "300.1.1.1", "invalid IP address \"300.1.1.1\"");
    expect_issue_error("n.example.org", NULL, "1.2.3", "invalid IP address");
    expect_issue_error("n.example.org", NULL, "fe80::1%eth0", "invalid IP address");
    expect_issue_error("n.example.org", NULL, "node1.example.org", "invalid IP address");
    expect_issue_error("n.example.org", "a_b.example.org", NULL,
                       "invalid DNS name \"a_b.example.org\"");
    expect_issue_error("n.example.org", "-a.example.org", NULL, "starts with '-'");
    expect_issue_error("n.example.org", "a-.example.org", NULL, "ends with '-'");
    expect_issue_error("n.example.org", "a..example.org", NULL, "empty label");
    expect_issue_error("n.example.org", "example.org.", NULL, "empty label");
    expect_issue_error("n.example.org", "foo.*.example.org", NULL, "wildcard");
    expect_issue_error("n.example.org", "f*.example.org", NULL, "wildcard");
    expect_issue_error("n.example.org", "*", NULL, "wildcard");
    expect_issue_error("n.example.org", "", NULL, "empty");
    expect_issue_error("n.example.org", "10.1.2.3", NULL, "use --ip");
    memset(long_label, 'a', 64);
    strcpy(long_label + 64, ".org");
    expect_issue_error("n.example.org", long_label, NULL, "longer than 63");
    expect_issue_error("bad name", NULL, NULL, "invalid name \"bad name\"");
    expect_issue_error("../evil", NULL, NULL, "cannot be used as a file name");
    expect_issue_error(".hidden", NULL, NULL, "cannot be used as a file name");
    expect_issue_error("a/b", NULL, NULL, "cannot be used as a file name");
    expect_issue_error("ca", NULL, NULL, "\"ca\" cannot be used as a name");
    expect_issue_error("", NULL, NULL, "cannot be used as a file name");
}

static void
test_issue_intermediate(void **state)
{
    struct certs_issue_params ip;
    char inter[PATH_LEN], out[PATH_LEN], p[PATH_LEN], q[PATH_LEN];
    char err[1024] = "";
    STACK_OF(X509) * leaf_chain, *inter_bundle, *roots;

    (void)state;
    make_intermediate(ca_dir, path_in(inter, "inter", NULL));

    memset(&ip, 0, sizeof(ip));
    ip.ca_dir = inter;
    ip.name = "node3.example.org";
    ip.out_dir = path_in(out, "inter-out", NULL);
    if (certs_issue(&ip, err, sizeof(err)) != 0) {
        fail_msg("certs_issue: %s", err);
    }

    /* NAME.crt = leaf + intermediate; ca.crt = the root only. */
    leaf_chain = load_certs(join(p, out, "node3.example.org.crt"));
    inter_bundle = load_certs(join(q, inter, "ca.crt"));
    roots = load_certs(join(p, out, "ca.crt"));
    assert_int_equal(sk_X509_num(leaf_chain), 2);
    assert_int_equal(sk_X509_num(roots), 1);
    assert_int_equal(X509_cmp(sk_X509_value(leaf_chain, 1), sk_X509_value(inter_bundle, 0)), 0);
    assert_int_equal(X509_cmp(sk_X509_value(roots, 0), sk_X509_value(inter_bundle, 1)), 0);
    assert_int_equal(
        X509_check_issued(sk_X509_value(inter_bundle, 0), sk_X509_value(leaf_chain, 0)), X509_V_OK);
    assert_int_equal(verify_chain(join(p, out, "node3.example.org.crt"), join(q, out, "ca.crt")),
                     X509_V_OK);

    /* Issuing into the intermediate's own directory would replace its bundle: refused. */
    ip.out_dir = inter;
    assert_int_equal(certs_issue(&ip, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "intermediate CA's own bundle"));
    assert_true(same_bytes(join(p, inter, "ca.crt"), join(q, inter, "ca.crt")));
    assert_int_equal(count_entries(inter), 2);

    /* An intermediate without its root cannot give OUT/ca.crt: refused with the fix. */
    {
        char lone[PATH_LEN];
        BIO *bio;
        path_in(lone, "inter-lone", NULL);
        assert_int_equal(mkdir(lone, 0700), 0);
        bio = BIO_new_file(join(p, lone, "ca.crt"), "w");
        assert_non_null(bio);
        assert_int_equal(PEM_write_bio_X509(bio, sk_X509_value(inter_bundle, 0)), 1);
        BIO_free(bio);
        {
            size_t len;
            unsigned char *k = slurp(join(q, inter, "ca.key"), &len);
            assert_int_equal(
                certs_file_write(join(p, lone, "ca.key"), k, len, 0600, err, sizeof(err)), 0);
            free(k);
        }
        ip.ca_dir = lone;
        ip.out_dir = path_in(p, "inter-lone-out", NULL);
        assert_int_equal(certs_issue(&ip, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "but not its root"));
    }

    sk_X509_pop_free(leaf_chain, X509_free);
    sk_X509_pop_free(inter_bundle, X509_free);
    sk_X509_pop_free(roots, X509_free);
}

static void
test_issue_clamps_to_ca(void **state)
{
    struct certs_ca_params ca;
    char dir[PATH_LEN], p[PATH_LEN], err[1024] = "";
    X509 *c, *x;

    (void)state;
    memset(&ca, 0, sizeof(ca));
    ca.dir = path_in(dir, "short-ca", NULL);
    ca.days = 30;
    if (certs_ca_init(&ca, err, sizeof(err)) != 0) {
        fail_msg("certs_ca_init: %s", err);
    }
    /* Issue into the CA's own directory: allowed for a root, whose ca.crt stays as it is. */
    {
        size_t len;
        unsigned char *before = slurp(join(p, dir, "ca.crt"), &len);
        issue_simple(dir, "short.example.org", dir);
        {
            size_t len2;
            unsigned char *after = slurp(join(p, dir, "ca.crt"), &len2);
            assert_int_equal(len2, len);
            assert_memory_equal(after, before, len);
            free(after);
        }
        free(before);
    }
    c = load_cert(join(p, dir, "ca.crt"));
    x = load_cert(join(p, dir, "short.example.org.crt"));
    assert_int_equal(ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(c)), 0);
    X509_free(c);
    X509_free(x);
}

static void
test_issue_bad_ca(void **state)
{
    struct certs_ca_params ca;
    struct certs_issue_params ip;
    char a[PATH_LEN], b[PATH_LEN], p[PATH_LEN], q[PATH_LEN], err[1024] = "";
    size_t len;
    unsigned char *data;

    (void)state;
    /* A CA directory whose key belongs to another CA. */
    memset(&ca, 0, sizeof(ca));
    ca.dir = path_in(a, "mismatch", NULL);
    if (certs_ca_init(&ca, err, sizeof(err)) != 0) {
        fail_msg("certs_ca_init: %s", err);
    }
    data = slurp(join(q, ca_dir, "ca.key"), &len);
    assert_int_equal(certs_file_write(join(p, a, "ca.key"), data, len, 0600, err, sizeof(err)), 0);
    free(data);
    memset(&ip, 0, sizeof(ip));
    ip.ca_dir = a;
    ip.name = "n.example.org";
    ip.out_dir = path_in(b, "mismatch-out", NULL);
    assert_int_equal(certs_issue(&ip, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "does not match the first certificate"));

    /* A "CA" that is a leaf. */
    issue_simple(ca_dir, "leafca.example.org", path_in(a, "leafca", NULL));
    assert_int_equal(rename(join(p, a, "leafca.example.org.crt"), join(q, a, "ca.crt")), 0);
    assert_int_equal(rename(join(p, a, "leafca.example.org.key"), join(q, a, "ca.key")), 0);
    ip.ca_dir = a;
    assert_int_equal(certs_issue(&ip, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "is not a CA"));

    /* No CA at all. */
    ip.ca_dir = path_in(a, "no-such-ca", NULL);
    assert_int_equal(certs_issue(&ip, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cannot open"));
    assert_int_equal(file_mode(b), -1);
}

/* ---- the development default ---- */

static void
test_ensure_dev(void **state)
{
    static const char *const files[] = {"ca.crt", "ca.key", "node.crt", "node.key"};
    char dir[PATH_LEN], copy[PATH_LEN], p[PATH_LEN], q[PATH_LEN], cn[128], err[1024] = "";
    bool created = false;
    X509 *x, *c;
    size_t i, len;
    unsigned char *data;

    (void)state;
    path_in(dir, "dev/ferry-data", NULL);
    assert_int_equal(certs_issue_ensure_dev(dir, "devhost.example.org", &created, err, sizeof(err)),
                     0);
    assert_true(created);
    assert_int_equal(file_mode(dir), 0700);
    assert_int_equal(file_mode(join(p, dir, "ca.key")), 0600);
    assert_int_equal(file_mode(join(p, dir, "node.key")), 0600);
    assert_int_equal(count_entries(dir), 4);

    c = load_cert(join(p, dir, "ca.crt"));
    x = load_cert(join(p, dir, "node.crt"));
    assert_string_equal(cn_of(c, cn, sizeof(cn)),
                        "ferry development CA (do not use in production)");
    assert_string_equal(cn_of(x, cn, sizeof(cn)), "devhost.example.org");
    assert_true(has_san(x, "devhost.example.org", NULL));
    assert_true(has_san(x, "localhost", NULL));
    assert_true(has_san(x, NULL, "127.0.0.1"));
    assert_true(has_san(x, NULL, "::1"));
    assert_int_equal(X509_get_extended_key_usage(x), XKU_SSL_SERVER | XKU_SSL_CLIENT);
    assert_int_equal(verify_chain(join(p, dir, "node.crt"), join(q, dir, "ca.crt")), X509_V_OK);
    X509_free(x);
    X509_free(c);

    /* Second start: everything is reused byte for byte. */
    path_in(copy, "dev-copy", NULL);
    assert_int_equal(mkdir(copy, 0700), 0);
    for (i = 0; i < 4; i++) {
        data = slurp(join(p, dir, files[i]), &len);
        assert_int_equal(
            certs_file_write(join(q, copy, files[i]), data, len, 0600, err, sizeof(err)), 0);
        free(data);
    }
    assert_int_equal(certs_issue_ensure_dev(dir, "devhost.example.org", &created, err, sizeof(err)),
                     0);
    assert_false(created);
    for (i = 0; i < 4; i++) {
        assert_true(same_bytes(join(p, dir, files[i]), join(q, copy, files[i])));
    }

    /* A lost node key: the node certificate is remade, the CA kept. */
    assert_int_equal(unlink(join(p, dir, "node.key")), 0);
    assert_int_equal(certs_issue_ensure_dev(dir, "devhost.example.org", &created, err, sizeof(err)),
                     0);
    assert_true(created);
    assert_true(same_bytes(join(p, dir, "ca.key"), join(q, copy, "ca.key")));
    assert_true(same_bytes(join(p, dir, "ca.crt"), join(q, copy, "ca.crt")));
    assert_false(same_bytes(join(p, dir, "node.crt"), join(q, copy, "node.crt")));
    assert_int_equal(verify_chain(join(p, dir, "node.crt"), join(q, dir, "ca.crt")), X509_V_OK);

    /* A CA key without its certificate is not guessed at. */
    assert_int_equal(unlink(join(p, dir, "ca.crt")), 0);
    assert_int_equal(certs_issue_ensure_dev(dir, "devhost.example.org", &created, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "is missing"));

    /* A host name that cannot be certified falls back to localhost. */
    path_in(dir, "dev2", NULL);
    assert_int_equal(certs_issue_ensure_dev(dir, "my_host", &created, err, sizeof(err)), 0);
    assert_true(created);
    x = load_cert(join(p, dir, "node.crt"));
    assert_string_equal(cn_of(x, cn, sizeof(cn)), "localhost");
    assert_int_equal(san_count(x), 3);
    X509_free(x);
}

/* ---- the command line ---- */

/*
 * certs_cli() on the NULL-terminated arguments after ${what} (the same words, for the failure
 * message) must return 2 with the usage on stderr and nothing on stdout.
 */
static void
expect_usage(const char *what, ...)
{
    char *out, *err;
    va_list ap;
    int rc;

    va_start(ap, what);
    rc = run_cliv(&out, &err, ap);
    va_end(ap);
    if (rc != 2) {
        fail_msg("`ferry certs %s`: rc %d, err: %s", what, rc, err);
    }
    assert_string_equal(out, "");
    assert_non_null(strstr(err, "usage: ferry certs init-ca"));
    assert_non_null(strstr(err, "ferry certs issue --ca DIR"));
    free(out);
    free(err);
}

static void
test_cli_usage_errors(void **state)
{
    char *o, *e;

    (void)state;
    expect_usage("(nothing)", NULL);
    expect_usage("bogus", "bogus", NULL);
    expect_usage("inspect", "inspect", NULL);
    expect_usage("init-ca", "init-ca", NULL);
    expect_usage("init-ca --dir", "init-ca", "--dir", NULL);
    expect_usage("init-ca --dir=", "init-ca", "--dir=", NULL);
    expect_usage("init-ca --dir --name x", "init-ca", "--dir", "--name", "x", NULL);
    expect_usage("init-ca --dir d --days 0", "init-ca", "--dir", "d", "--days", "0", NULL);
    expect_usage("init-ca --dir d --days 36501", "init-ca", "--dir", "d", "--days", "36501", NULL);
    expect_usage("init-ca --dir d --days 12x", "init-ca", "--dir", "d", "--days", "12x", NULL);
    expect_usage("init-ca --dir d --key-type dsa", "init-ca", "--dir", "d", "--key-type", "dsa",
                 NULL);
    expect_usage("init-ca --dir d --out o", "init-ca", "--dir", "d", "--out", "o", NULL);
    expect_usage("init-ca --dir a --dir b", "init-ca", "--dir", "a", "--dir", "b", NULL);
    expect_usage("init-ca d", "init-ca", "d", NULL);
    expect_usage("issue --ca c --name n", "issue", "--ca", "c", "--name", "n", NULL);
    expect_usage("issue --ca c --out o", "issue", "--ca", "c", "--out", "o", NULL);
    expect_usage("issue --name n --out o", "issue", "--name", "n", "--out", "o", NULL);
    expect_usage("issue --ca c --name n --out o --dir x", "issue", "--ca", "c", "--name", "n",
                 "--out", "o", "--dir", "x", NULL);
    expect_usage("issue --ca c --name n --out o extra", "issue", "--ca", "c", "--name", "n",
                 "--out", "o", "extra", NULL);

    /* --help is not an error: usage on stdout, exit 0. */
    assert_int_equal(run_cli(&o, &e, "issue", "--help", NULL), 0);
    assert_non_null(strstr(o, "usage: ferry certs"));
    assert_string_equal(e, "");
    free(o);
    free(e);

    /* certs_cli_usage() on its own. */
    {
        size_t ol;
        FILE *fo = open_memstream(&o, &ol);
        certs_cli_usage(fo);
        fclose(fo);
        assert_non_null(strstr(o, "--key-type ec|rsa"));
        free(o);
    }
}

static void
test_cli_runs(void **state)
{
    char dir[PATH_LEN], out[PATH_LEN], p[PATH_LEN], want[4 * PATH_LEN], dirarg[PATH_LEN + 8];
    char *o, *e;
    X509 *x;

    (void)state;
    path_in(dir, "cli-ca", NULL);
    path_in(out, "cli-out", NULL);
    snprintf(dirarg, sizeof(dirarg), "--dir=%s", dir);

    assert_int_equal(run_cli(&o, &e, "init-ca", dirarg, "--name", "CLI CA", "--days=100",
                             "--key-type", "ec", NULL),
                     0);
    snprintf(want, sizeof(want), "wrote %s/ca.crt\nwrote %s/ca.key (mode 0600)\n", dir, dir);
    assert_true(strncmp(o, want, strlen(want)) == 0);
    assert_non_null(strstr(o, "created CA \"CLI CA\": key EC P-256; expires "));
    assert_string_equal(e, "");
    free(o);
    free(e);
    x = load_cert(join(p, dir, "ca.crt"));
    assert_true(labs(seconds_from_now(X509_get0_notAfter(x)) - 100 * DAY) < DAY);
    X509_free(x);

    /* Again: refused, exit 1, reason on stderr. */
    assert_int_equal(run_cli(&o, &e, "init-ca", "--dir", dir, NULL), 1);
    assert_string_equal(o, "");
    assert_non_null(strstr(e, "ferry certs init-ca: "));
    assert_non_null(strstr(e, "already exists; refusing to overwrite a CA key"));
    free(o);
    free(e);

    assert_int_equal(run_cli(&o, &e, "issue", "--ca", dir, "--name", "node1.example.org",
                             "--dns=alt.example.org", "--ip", "127.0.0.1", "--ip=::1", "--out", out,
                             NULL),
                     0);
    snprintf(want, sizeof(want),
             "wrote %s/node1.example.org.crt\nwrote %s/node1.example.org.key (mode 0600)\n"
             "wrote %s/ca.crt\n"
             "issued node1.example.org: SAN DNS:node1.example.org,DNS:alt.example.org,"
             "IP:127.0.0.1,IP:::1; EKU serverAuth,clientAuth; expires ",
             out, out, out);
    if (strncmp(o, want, strlen(want)) != 0) {
        fail_msg("got:\n%s\nwant:\n%s", o, want);
    }
    assert_string_equal(e, "");
    free(o);
    free(e);
    assert_int_equal(verify_chain(join(p, out, "node1.example.org.crt"), join(want, out, "ca.crt")),
                     X509_V_OK);

    /* A bad --ip is a failure (1), explained. */
    assert_int_equal(run_cli(&o, &e, "issue", "--ca", dir, "--name", "n.example.org", "--ip",
                             "999.0.0.1", "--out", out, NULL),
                     1);
    {
        const char *lit = "ferry certs issue: invalid IP address \"999.0.0.1\"";
        assert_true(strncmp(e, lit, strlen(lit)) == 0);
    }
    free(o);
    free(e);

    /* Into the CA's own directory: the CA's ca.crt is kept and said so. */
    assert_int_equal(run_cli(&o, &e, "issue", "--ca", dir, "--name", "self.example.org", "--out",
                             dir, "--key-type=ec", "--days", "5", NULL),
                     0);
    snprintf(want, sizeof(want), "kept %s/ca.crt (the CA's own certificate)\n", dir);
    assert_non_null(strstr(o, want));
    free(o);
    free(e);
}

/* The template tail mkdtemp() expects, built so that no literal run of X stands in code. */
static const char mkdtemp_suffix[] = {'X', 'X', 'X', 'X', 'X', 'X', '\0'};

static int
group_setup(void **state)
{
    const char *base = getenv("FERRY_TEST_TMP");
    struct certs_ca_params ca;
    char err[1024] = "";
    char tmpl[PATH_LEN];

    (void)state;
    if (base == NULL || base[0] == '\0') {
        base = "/tmp";
    }
    if (mkdir(base, 0755) != 0 && errno != EEXIST) {
        return -1;
    }
    /* mkdtemp() replaces the six trailing 'X's of the template. */
    snprintf(tmpl, sizeof(tmpl), "%s/test_certs.%.6s", base, mkdtemp_suffix);
    if (mkdtemp(tmpl) == NULL) {
        return -1;
    }
    snprintf(tmp_root, sizeof(tmp_root), "%s", tmpl);

    memset(&ca, 0, sizeof(ca));
    ca.dir = path_in(ca_dir, "ca", NULL);
    if (certs_ca_init(&ca, err, sizeof(err)) != 0) {
        fprintf(stderr, "certs_ca_init: %s\n", err);
        return -1;
    }
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    if (getenv("FERRY_TEST_KEEP") == NULL) {
        rm_rf(tmp_root);
    }
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_file_modes),
        cmocka_unit_test(test_write_file_error),
        cmocka_unit_test(test_init_ca),
        cmocka_unit_test(test_init_ca_refuses_overwrite),
        cmocka_unit_test(test_init_ca_rsa_named),
        cmocka_unit_test(test_issue_default),
        cmocka_unit_test(test_issue_rsa_ip_name),
        cmocka_unit_test(test_issue_uri),
        cmocka_unit_test(test_time_rfc3339),
        cmocka_unit_test(test_issue_rejects_bad_input),
        cmocka_unit_test(test_issue_intermediate),
        cmocka_unit_test(test_issue_clamps_to_ca),
        cmocka_unit_test(test_issue_bad_ca),
        cmocka_unit_test(test_ensure_dev),
        cmocka_unit_test(test_cli_usage_errors),
        cmocka_unit_test(test_cli_runs),
    };

    return cmocka_run_group_tests_name("certs", tests, group_setup, group_teardown);
}
