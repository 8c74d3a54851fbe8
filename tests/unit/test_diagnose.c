/*
 * test_diagnose: certs/ diagnosis (`ferry certs inspect`, `ferry check`).
 *
 * One test per finding id: each builds a certificate set that breaks exactly that rule with
 * the in-process PKI (tests/support/pki.c) and asserts the id, the severity and the file.
 * A clean set must give no finding at all, so a check that fires too eagerly fails too.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>

#include "certs.h"
#include "certs_internal.h"
#include "config.h"
#include "config_json.h"
#include "pki.h"
#include "tls.h"

#define DAY        (24L * 3600)
#define PASSPHRASE "correct horse battery"

static char dir[1024];
static struct pki_cert *all_certs[64];
static size_t n_certs;

static struct pki_cert *root, *inter, *leaf, *other_root;

/* "dir/name" in one of 32 rotating buffers. */
static const char *
F(const char *name)
{
    static char bufs[32][1200];
    static unsigned next;
    char *b = bufs[next++ % 32];

    assert_non_null(pki_path(b, sizeof(bufs[0]), dir, name));
    return b;
}

static struct pki_cert *
mk(const struct pki_opts *o, const struct pki_cert *issuer)
{
    struct pki_opts oo = *o;
    struct pki_cert *c;

    /* pki's default of 30 days would read as cert-expiring (under 30 days) a moment later. */
    if (oo.not_after == 0) {
        oo.not_after = 90 * DAY;
    }
    c = pki_cert_new(&oo, issuer);

    assert_non_null(c);
    assert_true(n_certs < sizeof(all_certs) / sizeof(all_certs[0]));
    all_certs[n_certs++] = c;
    return c;
}

#define DNS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* A node certificate like `ferry certs issue` makes, issued by ${issuer}. */
static struct pki_cert *
node(const struct pki_opts *extra, const struct pki_cert *issuer)
{
    struct pki_opts o = {.cn = "node1.test", .dns = DNS("node1.test", "localhost")};

    if (extra != NULL) {
        o = *extra;
        if (o.cn == NULL) {
            o.cn = "node1.test";
        }
    }
    return mk(&o, issuer);
}

static int
setup(void **state)
{
    (void)state;
    assert_non_null(pki_dir("diagnose", dir, sizeof(dir)));
    root =
        mk(&(struct pki_opts){.cn = "Site A Root CA", .ca = true, .not_after = 3650 * DAY}, NULL);
    inter = mk(&(struct pki_opts){.cn = "Site A Intermediate", .ca = true, .not_after = 365 * DAY},
               root);
    other_root = mk(&(struct pki_opts){.cn = "Other Root CA", .ca = true}, NULL);
    leaf = node(NULL, root);
    assert_int_equal(pki_write_chain(F("ca.crt"), root, NULL), 0);
    assert_int_equal(pki_write_chain(F("node.crt"), leaf, NULL), 0);
    assert_int_equal(pki_write_key(F("node.key"), leaf, NULL), 0);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < n_certs; i++) {
        pki_cert_free(all_certs[i]);
    }
    return 0;
}

/* Diagnose with both EKUs needed (like inspect); extra fields via ${p} when given. */
static void
run(struct certs_findings *fs, const char *cert, const char *key, const char *ca,
    const struct certs_diag_params *extra)
{
    struct certs_diag_params p;

    memset(&p, 0, sizeof(p));
    if (extra != NULL) {
        p = *extra;
    } else {
        p.need_server_auth = p.need_client_auth = true;
    }
    p.cert = cert;
    p.key = key;
    p.ca = ca;
    memset(fs, 0, sizeof(*fs));
    assert_int_equal(certs_inspect_diagnose(&p, fs), 0);
}

static void
dump(const struct certs_findings *fs)
{
    certs_findings_print(fs, false, stderr);
}

/* Assert that ${fs} holds ${id} with ${sev} against ${file}. */
static void
expect(const struct certs_findings *fs, const char *id, enum certs_severity sev, const char *file)
{
    const struct certs_finding *f = certs_findings_find(fs, id, NULL);

    if (f == NULL) {
        dump(fs);
        fail_msg("no finding %s", id);
    }
    if (f->severity != sev || f->file == NULL || strcmp(f->file, file) != 0) {
        dump(fs);
    }
    assert_int_equal(f->severity, sev);
    assert_non_null(f->file);
    assert_string_equal(f->file, file);
    assert_true(f->message[0] != '\0');
    assert_true(f->fix[0] != '\0');
}

/* Assert that ${fs} holds exactly one finding, ${id}. */
static void
expect_only(struct certs_findings *fs, const char *id, enum certs_severity sev, const char *file)
{
    expect(fs, id, sev, file);
    if (fs->n != 1) {
        dump(fs);
    }
    assert_int_equal(fs->n, 1);
    certs_findings_clear(fs);
}

/* Write leaf ${c} (chain ${...}) to NAME.crt and its key to NAME.key. */
static void
save(const char *name, struct pki_cert *c, struct pki_cert *ch1, struct pki_cert *ch2)
{
    char file[256];

    (void)snprintf(file, sizeof(file), "%s.crt", name);
    assert_int_equal(pki_write_chain(F(file), c, ch1, ch2, NULL), 0);
    (void)snprintf(file, sizeof(file), "%s.key", name);
    assert_int_equal(pki_write_key(F(file), c, NULL), 0);
}

/* ---- a clean set, and formats ---- */

static void
test_clean(void **state)
{
    struct certs_findings fs;

    (void)state;
    run(&fs, F("node.crt"), F("node.key"), F("ca.crt"), NULL);
    if (fs.n != 0) {
        dump(&fs);
    }
    assert_int_equal(fs.n, 0);
    certs_findings_clear(&fs);
}

static void
test_crlf_accepted(void **state)
{
    struct certs_findings fs;
    FILE *in, *out;
    int c;

    (void)state;
    assert_int_equal(pki_write_chain(F("bundle2.crt"), root, other_root, NULL), 0);
    assert_non_null(in = fopen(F("bundle2.crt"), "r"));
    assert_non_null(out = fopen(F("bundle-crlf.crt"), "w"));
    while ((c = fgetc(in)) != EOF) {
        if (c == '\n') {
            fputc('\r', out);
        }
        fputc(c, out);
    }
    fclose(in);
    fclose(out);
    run(&fs, F("node.crt"), F("node.key"), F("bundle-crlf.crt"), NULL);
    if (fs.n != 0) {
        dump(&fs);
    }
    assert_int_equal(fs.n, 0); /* no ca-multiple-roots: only `ferry check` asks for it */
    certs_findings_clear(&fs);
}

static void
test_file_missing(void **state)
{
    struct certs_findings fs;

    (void)state;
    run(&fs, F("no-such.crt"), NULL, NULL, NULL);
    expect_only(&fs, "file-missing", CERTS_SEV_ERROR, F("no-such.crt"));
    run(&fs, F("node.crt"), F("no-such.key"), F("ca.crt"), NULL);
    expect_only(&fs, "file-missing", CERTS_SEV_ERROR, F("no-such.key"));
}

static void
test_file_unreadable(void **state)
{
    struct certs_findings fs;

    (void)state;
    run(&fs, F("node.crt"), NULL, dir, NULL); /* a directory: EISDIR even for root */
    expect_only(&fs, "file-unreadable", CERTS_SEV_ERROR, dir);
}

static void
test_file_empty(void **state)
{
    struct certs_findings fs;

    (void)state;
    assert_int_equal(pki_write_text(F("empty.crt"), ""), 0);
    assert_int_equal(pki_write_text(F("blank.crt"), "\r\n  \n"), 0);
    run(&fs, F("empty.crt"), NULL, NULL, NULL);
    expect_only(&fs, "file-empty", CERTS_SEV_ERROR, F("empty.crt"));
    run(&fs, F("node.crt"), NULL, F("blank.crt"), NULL);
    expect_only(&fs, "file-empty", CERTS_SEV_ERROR, F("blank.crt"));
}

static void
test_not_pem_der(void **state)
{
    struct certs_findings fs;

    (void)state;
    assert_int_equal(pki_write_der(F("node.der"), leaf), 0);
    run(&fs, F("node.der"), NULL, NULL, NULL);
    expect_only(&fs, "not-pem-der", CERTS_SEV_ERROR, F("node.der"));
    assert_int_equal(pki_write_der(F("ca.der"), root), 0);
    run(&fs, F("node.crt"), NULL, F("ca.der"), NULL);
    expect_only(&fs, "not-pem-der", CERTS_SEV_ERROR, F("ca.der"));
}

static void
test_not_pem_pkcs12(void **state)
{
    struct certs_findings fs;
    PKCS12 *p12;
    FILE *fp;

    (void)state;
    p12 = PKCS12_create("secret", "node", leaf->key, leaf->x509, NULL, 0, 0, 0, 0, 0);
    assert_non_null(p12);
    assert_non_null(fp = fopen(F("node.p12"), "wb"));
    assert_int_equal(i2d_PKCS12_fp(fp, p12), 1);
    fclose(fp);
    PKCS12_free(p12);
    assert_int_equal(chmod(F("node.p12"), 0600), 0); /* it holds a key */
    run(&fs, F("node.p12"), NULL, NULL, NULL);
    expect_only(&fs, "not-pem-pkcs12", CERTS_SEV_ERROR, F("node.p12"));
    run(&fs, F("node.crt"), F("node.p12"), NULL, NULL);
    expect_only(&fs, "not-pem-pkcs12", CERTS_SEV_ERROR, F("node.p12"));
}

static void
test_not_a_certificate(void **state)
{
    struct certs_findings fs;

    (void)state;
    assert_int_equal(pki_write_text(F("garbage.crt"), "hello, this is not a certificate\n"), 0);
    run(&fs, F("garbage.crt"), NULL, NULL, NULL);
    expect_only(&fs, "not-a-certificate", CERTS_SEV_ERROR, F("garbage.crt"));
    /* The key given as the certificate: PEM, but no CERTIFICATE block. */
    run(&fs, F("node.key"), NULL, NULL, NULL);
    expect_only(&fs, "not-a-certificate", CERTS_SEV_ERROR, F("node.key"));
}

static void
test_not_a_key(void **state)
{
    struct certs_findings fs;

    (void)state;
    assert_int_equal(chmod(F("ca.crt"), 0600), 0);
    run(&fs, F("node.crt"), F("ca.crt"), F("ca.crt"), NULL);
    expect_only(&fs, "not-a-key", CERTS_SEV_ERROR, F("ca.crt"));
    assert_int_equal(chmod(F("ca.crt"), 0644), 0);
}

static void
test_not_a_crl(void **state)
{
    struct certs_findings fs;
    struct certs_diag_params p = {.crl = NULL};

    (void)state;
    p.crl = F("node.crt");
    run(&fs, F("node.crt"), NULL, F("ca.crt"), &p);
    expect_only(&fs, "not-a-crl", CERTS_SEV_ERROR, F("node.crt"));
}

/* ---- key ---- */

static void
test_key_mismatch(void **state)
{
    struct certs_findings fs;
    struct pki_cert *other = node(NULL, root);

    (void)state;
    assert_int_equal(pki_write_key(F("other.key"), other, NULL), 0);
    run(&fs, F("node.crt"), F("other.key"), F("ca.crt"), NULL);
    expect_only(&fs, "key-mismatch", CERTS_SEV_ERROR, F("other.key"));
}

static void
test_key_encrypted_no_passphrase(void **state)
{
    struct certs_findings fs;

    (void)state;
    assert_int_equal(pki_write_key(F("enc.key"), leaf, PASSPHRASE), 0);
    run(&fs, F("node.crt"), F("enc.key"), F("ca.crt"), NULL);
    expect_only(&fs, "key-encrypted-no-passphrase", CERTS_SEV_ERROR, F("enc.key"));
}

static void
test_key_passphrase(void **state)
{
    struct certs_findings fs;
    struct certs_diag_params p = {.need_server_auth = true, .need_client_auth = true};

    (void)state;
    assert_int_equal(pki_write_key(F("enc.key"), leaf, PASSPHRASE), 0);
    assert_int_equal(pki_write_text(F("good.pass"), PASSPHRASE "\r\n"), 0);
    assert_int_equal(pki_write_text(F("wrong.pass"), "wrong\n"), 0);
    p.key_passphrase_file = F("good.pass");
    run(&fs, F("node.crt"), F("enc.key"), F("ca.crt"), &p);
    if (fs.n != 0) {
        dump(&fs);
    }
    assert_int_equal(fs.n, 0);
    p.key_passphrase_file = F("wrong.pass");
    run(&fs, F("node.crt"), F("enc.key"), F("ca.crt"), &p);
    expect_only(&fs, "key-passphrase-wrong", CERTS_SEV_ERROR, F("wrong.pass"));
}

static void
test_key_permissions(void **state)
{
    struct certs_findings fs;

    (void)state;
    assert_int_equal(pki_write_key(F("open.key"), leaf, NULL), 0);
    assert_int_equal(chmod(F("open.key"), 0644), 0);
    run(&fs, F("node.crt"), F("open.key"), F("ca.crt"), NULL);
    expect_only(&fs, "key-permissions", CERTS_SEV_ERROR, F("open.key"));
    assert_int_equal(chmod(F("open.key"), 0602), 0);
    run(&fs, F("node.crt"), F("open.key"), F("ca.crt"), NULL);
    expect_only(&fs, "key-permissions", CERTS_SEV_ERROR, F("open.key"));
    assert_int_equal(chmod(F("open.key"), 0640), 0);
    run(&fs, F("node.crt"), F("open.key"), F("ca.crt"), NULL);
    expect_only(&fs, "key-group-readable", CERTS_SEV_WARNING, F("open.key"));
    assert_int_equal(chmod(F("open.key"), 0620), 0);
    run(&fs, F("node.crt"), F("open.key"), F("ca.crt"), NULL);
    expect_only(&fs, "key-group-readable", CERTS_SEV_WARNING, F("open.key"));
    assert_int_equal(chmod(F("open.key"), 0400), 0);
    run(&fs, F("node.crt"), F("open.key"), F("ca.crt"), NULL);
    assert_int_equal(fs.n, 0);

    /* A Kubernetes secret volume: tls.key -> ..data/tls.key -> ..TIMESTAMP/tls.key, 0440.
       The mode of the file ferry opens counts (stat through the links), named as configured. */
    assert_int_equal(mkdir(F("k8s"), 0755) == 0 || errno == EEXIST, 1);
    assert_int_equal(mkdir(F("k8s/..2026_12_05_00_00_00.1"), 0755) == 0 || errno == EEXIST, 1);
    assert_int_equal(pki_write_key(F("k8s/..2026_12_05_00_00_00.1/tls.key"), leaf, NULL), 0);
    assert_int_equal(chmod(F("k8s/..2026_12_05_00_00_00.1/tls.key"), 0440), 0);
    (void)unlink(F("k8s/..data"));
    (void)unlink(F("k8s/tls.key"));
    assert_int_equal(symlink("..2026_12_05_00_00_00.1", F("k8s/..data")), 0);
    assert_int_equal(symlink("..data/tls.key", F("k8s/tls.key")), 0);
    run(&fs, F("node.crt"), F("k8s/tls.key"), F("ca.crt"), NULL);
    expect_only(&fs, "key-group-readable", CERTS_SEV_WARNING, F("k8s/tls.key"));
    assert_int_equal(chmod(F("k8s/..2026_12_05_00_00_00.1/tls.key"), 0444), 0);
    run(&fs, F("node.crt"), F("k8s/tls.key"), F("ca.crt"), NULL);
    expect_only(&fs, "key-permissions", CERTS_SEV_ERROR, F("k8s/tls.key"));

    /* The same rule for a passphrase file and (through certs_inspect_secret_mode) any secret. */
    assert_int_equal(pki_write_text(F("open.pass"), "x\n"), 0);
    assert_int_equal(chmod(F("open.pass"), 0644), 0);
    memset(&fs, 0, sizeof(fs));
    assert_int_equal(
        certs_inspect_secret_mode(&fs, F("open.pass"), "CouchDB proxy-auth secret file"), 0);
    expect(&fs, "key-permissions", CERTS_SEV_ERROR, F("open.pass"));
    assert_non_null(strstr(fs.v[0].message, "CouchDB proxy-auth secret file is readable by every"));
    assert_non_null(strstr(fs.v[0].fix, "chmod o-rwx "));
    certs_findings_clear(&fs);
    assert_int_equal(certs_inspect_secret_mode(&fs, F("no-such.pass"), "key passphrase file"), 0);
    assert_int_equal(certs_inspect_secret_mode(&fs, NULL, "key passphrase file"), 0);
    assert_int_equal(fs.n, 0);
}

/* ---- chain ---- */

static void
test_chain_order(void **state)
{
    struct certs_findings fs;
    struct pki_cert *l = node(NULL, inter), *i2, *l2;

    (void)state;
    /* CA first: ferry would present the CA as its own certificate. */
    assert_int_equal(pki_write_chain(F("ca-first.crt"), inter, l, NULL), 0);
    assert_int_equal(pki_write_key(F("ca-first.key"), l, NULL), 0);
    run(&fs, F("ca-first.crt"), F("ca-first.key"), F("ca.crt"), NULL);
    expect_only(&fs, "chain-order", CERTS_SEV_ERROR, F("ca-first.crt"));
    /* Leaf first, intermediates swapped: a warning. */
    i2 = mk(&(struct pki_opts){.cn = "Site A Issuing CA", .ca = true}, inter);
    l2 = node(NULL, i2);
    save("swapped", l2, inter, i2);
    run(&fs, F("swapped.crt"), F("swapped.key"), F("ca.crt"), NULL);
    expect_only(&fs, "chain-order", CERTS_SEV_WARNING, F("swapped.crt"));
    /* The leaf twice, or another node's certificate after it: not part of the chain, yet
     * ferry would send it (attack 7 F3: "order: ok" before). */
    save("twice", l, l, NULL);
    run(&fs, F("twice.crt"), F("twice.key"), F("ca.crt"), NULL);
    expect(&fs, "chain-order", CERTS_SEV_WARNING, F("twice.crt"));
    assert_non_null(
        strstr(certs_findings_find(&fs, "chain-order", NULL)->message, "and no certificate in"));
    certs_findings_clear(&fs);
    /* The right order is clean. */
    save("ordered", l2, i2, inter);
    run(&fs, F("ordered.crt"), F("ordered.key"), F("ca.crt"), NULL);
    if (fs.n != 0) {
        dump(&fs);
    }
    assert_int_equal(fs.n, 0);
}

static void
test_chain_incomplete(void **state)
{
    struct certs_findings fs;
    struct pki_cert *l = node(NULL, inter);

    (void)state;
    save("noint", l, NULL, NULL);
    run(&fs, F("noint.crt"), F("noint.key"), F("ca.crt"), NULL);
    expect(&fs, "chain-incomplete", CERTS_SEV_ERROR, F("noint.crt"));
    /* The exact missing link, named as in issue 4. */
    assert_non_null(strstr(fs.v[0].message,
                           "issuer CN=Site A Intermediate is neither in noint.crt nor in "
                           "ca.crt"));
    expect_only(&fs, "chain-incomplete", CERTS_SEV_ERROR, F("noint.crt"));
}

static void
test_ca_missing_root(void **state)
{
    struct certs_findings fs;
    struct pki_cert *l = node(NULL, inter);

    (void)state;
    save("int-leaf", l, NULL, NULL);
    assert_int_equal(pki_write_chain(F("int-only.crt"), inter, NULL), 0);
    run(&fs, F("int-leaf.crt"), F("int-leaf.key"), F("int-only.crt"), NULL);
    expect_only(&fs, "ca-missing-root", CERTS_SEV_ERROR, F("int-only.crt"));
}

static void
test_chain_untrusted(void **state)
{
    struct certs_findings fs;
    struct pki_cert *l = node(NULL, other_root);

    (void)state;
    save("foreign", l, other_root, NULL);
    run(&fs, F("foreign.crt"), F("foreign.key"), F("ca.crt"), NULL);
    expect_only(&fs, "chain-untrusted", CERTS_SEV_ERROR, F("foreign.crt"));
}

/* tls.ca holding a leaf (here a peer's certificate) instead of the CA that issued it. */
static void
test_ca_not_a_ca(void **state)
{
    struct certs_findings fs;

    (void)state;
    assert_int_equal(pki_write_chain(F("leaf-as-ca.crt"), leaf, NULL), 0);
    run(&fs, F("node.crt"), F("node.key"), F("leaf-as-ca.crt"), NULL);
    expect_only(&fs, "ca-not-a-ca", CERTS_SEV_ERROR, F("leaf-as-ca.crt"));
    /* Next to the right root it is still wrong, and named alone. */
    assert_int_equal(pki_write_chain(F("root-and-leaf.crt"), root, leaf, NULL), 0);
    run(&fs, F("node.crt"), F("node.key"), F("root-and-leaf.crt"), NULL);
    expect_only(&fs, "ca-not-a-ca", CERTS_SEV_ERROR, F("root-and-leaf.crt"));
}

static void
test_chain_bad_signature(void **state)
{
    struct certs_findings fs;
    /* Same name as the real root, another key: the CA was re-created. */
    struct pki_cert *fake = mk(&(struct pki_opts){.cn = "Site A Root CA", .ca = true}, NULL);
    struct pki_cert *l = node(NULL, fake);

    (void)state;
    save("resigned", l, NULL, NULL);
    run(&fs, F("resigned.crt"), F("resigned.key"), F("ca.crt"), NULL);
    expect_only(&fs, "chain-bad-signature", CERTS_SEV_ERROR, F("resigned.crt"));
}

static void
test_self_signed_leaf(void **state)
{
    struct certs_findings fs;
    struct pki_cert *l = node(NULL, NULL);

    (void)state;
    save("self", l, NULL, NULL);
    run(&fs, F("self.crt"), F("self.key"), F("ca.crt"), NULL);
    expect_only(&fs, "self-signed-leaf", CERTS_SEV_ERROR, F("self.crt"));
}

static void
test_issuer_not_ca(void **state)
{
    struct certs_findings fs;
    struct pki_cert *l = node(&(struct pki_opts){.dns = DNS("sub.test")}, leaf);

    (void)state;
    save("sub", l, leaf, NULL);
    run(&fs, F("sub.crt"), F("sub.key"), F("ca.crt"), NULL);
    expect_only(&fs, "issuer-not-ca", CERTS_SEV_ERROR, F("sub.crt"));
}

/* ---- leaf ---- */

static void
test_eku(void **state)
{
    struct certs_findings fs;
    struct certs_diag_params p = {.need_server_auth = true};

    (void)state;
    save("noeku", node(&(struct pki_opts){.dns = DNS("node1.test"), .eku = PKI_EKU_NONE}, root),
         NULL, NULL);
    run(&fs, F("noeku.crt"), F("noeku.key"), F("ca.crt"), NULL);
    expect_only(&fs, "eku-missing", CERTS_SEV_ERROR, F("noeku.crt"));

    save("clionly", node(&(struct pki_opts){.dns = DNS("node1.test"), .eku = PKI_EKU_CLIENT}, root),
         NULL, NULL);
    run(&fs, F("clionly.crt"), F("clionly.key"), F("ca.crt"), &p); /* inbound */
    expect_only(&fs, "eku-server-missing", CERTS_SEV_ERROR, F("clionly.crt"));

    save("srvonly", node(&(struct pki_opts){.dns = DNS("node1.test"), .eku = PKI_EKU_SERVER}, root),
         NULL, NULL);
    run(&fs, F("srvonly.crt"), F("srvonly.key"), F("ca.crt"), &p);
    assert_int_equal(fs.n, 0); /* inbound needs serverAuth only */
    p.need_server_auth = false;
    p.need_client_auth = true; /* outbound */
    run(&fs, F("srvonly.crt"), F("srvonly.key"), F("ca.crt"), &p);
    expect_only(&fs, "eku-client-missing", CERTS_SEV_ERROR, F("srvonly.crt"));
}

static void
test_san(void **state)
{
    struct certs_findings fs;
    struct certs_diag_params p = {.need_server_auth = true, .need_client_auth = true};

    (void)state;
    save("cnonly", node(&(struct pki_opts){.cn = "node1.test"}, root), NULL, NULL);
    run(&fs, F("cnonly.crt"), F("cnonly.key"), F("ca.crt"), NULL);
    expect_only(&fs, "san-missing", CERTS_SEV_ERROR, F("cnonly.crt"));

    p.name = "node2.test";
    run(&fs, F("node.crt"), F("node.key"), F("ca.crt"), &p);
    expect_only(&fs, "san-mismatch", CERTS_SEV_ERROR, F("node.crt"));
    p.name = "NODE1.test";
    run(&fs, F("node.crt"), F("node.key"), F("ca.crt"), &p);
    assert_int_equal(fs.n, 0);

    p.name = NULL;
    p.hostname = "db7.example.org";
    run(&fs, F("node.crt"), F("node.key"), F("ca.crt"), &p);
    expect_only(&fs, "san-hostname", CERTS_SEV_WARNING, F("node.crt"));
    /* A name peers dial must be in the SAN as dialled: a short name is not node1.test. */
    p.hostname = "node1";
    run(&fs, F("node.crt"), F("node.key"), F("ca.crt"), &p);
    expect_only(&fs, "san-hostname", CERTS_SEV_WARNING, F("node.crt"));
    p.hostname = "NODE1.test";
    run(&fs, F("node.crt"), F("node.key"), F("ca.crt"), &p);
    assert_int_equal(fs.n, 0);
}

static void
test_dates(void **state)
{
    struct certs_findings fs;

    (void)state;
    save("expired",
         node(&(struct pki_opts){.dns = DNS("node1.test"),
                                 .not_before = -10 * DAY,
                                 .not_after = -DAY},
              root),
         NULL, NULL);
    run(&fs, F("expired.crt"), F("expired.key"), F("ca.crt"), NULL);
    expect_only(&fs, "cert-expired", CERTS_SEV_ERROR, F("expired.crt"));

    save("expiring",
         node(&(struct pki_opts){.dns = DNS("node1.test"), .not_after = 10 * DAY}, root), NULL,
         NULL);
    run(&fs, F("expiring.crt"), F("expiring.key"), F("ca.crt"), NULL);
    expect_only(&fs, "cert-expiring", CERTS_SEV_WARNING, F("expiring.crt"));

    save(
        "future",
        node(&(struct pki_opts){.dns = DNS("node1.test"), .not_before = DAY, .not_after = 90 * DAY},
             root),
        NULL, NULL);
    run(&fs, F("future.crt"), F("future.key"), F("ca.crt"), NULL);
    expect_only(&fs, "cert-not-yet-valid", CERTS_SEV_ERROR, F("future.crt"));
}

static void
test_weak_key(void **state)
{
    struct certs_findings fs;

    (void)state;
    save("weak",
         node(&(struct pki_opts){.dns = DNS("node1.test"), .key_type = PKI_KEY_RSA1024}, root),
         NULL, NULL);
    run(&fs, F("weak.crt"), F("weak.key"), F("ca.crt"), NULL);
    expect_only(&fs, "weak-key", CERTS_SEV_ERROR, F("weak.crt"));
}

static void
test_sha1_signature(void **state)
{
    struct certs_findings fs;
    struct pki_cert *l = node(NULL, root);

    (void)state;
    assert_true(X509_sign(l->x509, root->key, EVP_sha1()) > 0);
    save("sha1", l, NULL, NULL);
    run(&fs, F("sha1.crt"), F("sha1.key"), F("ca.crt"), NULL);
    expect(&fs, "sha1-signature", CERTS_SEV_ERROR, F("sha1.crt"));
    /* OpenSSL's verification may refuse the digest too; nothing else may appear. */
    for (size_t i = 0; i < fs.n; i++) {
        assert_true(strcmp(fs.v[i].id, "sha1-signature") == 0 ||
                    strcmp(fs.v[i].id, "chain-untrusted") == 0);
    }
    certs_findings_clear(&fs);
}

/* ---- CRL ---- */

static void
run_crl(struct certs_findings *fs, const char *crl)
{
    struct certs_diag_params p = {.need_server_auth = true, .need_client_auth = true};

    p.crl = crl;
    run(fs, F("node.crt"), F("node.key"), F("ca.crt"), &p);
}

static void
test_crl(void **state)
{
    struct certs_findings fs;
    struct pki_cert *fake = mk(&(struct pki_opts){.cn = "Site A Root CA", .ca = true}, NULL);
    X509_CRL *good = pki_crl_new(root, -DAY, 7 * DAY, NULL);
    X509_CRL *expired = pki_crl_new(root, -10 * DAY, -DAY, NULL);
    X509_CRL *forged = pki_crl_new(fake, -DAY, 7 * DAY, NULL);
    X509_CRL *self = pki_crl_new(root, -DAY, 7 * DAY, leaf, NULL);
    X509_CRL *other = pki_crl_new(other_root, -DAY, 7 * DAY, NULL);

    (void)state;
    assert_non_null(good);
    assert_non_null(expired);
    assert_non_null(forged);
    assert_non_null(self);
    assert_non_null(other);
    assert_int_equal(pki_write_crls(F("good.crl"), good, NULL), 0);
    assert_int_equal(pki_write_crls(F("expired.crl"), expired, NULL), 0);
    assert_int_equal(pki_write_crls(F("forged.crl"), forged, NULL), 0);
    assert_int_equal(pki_write_crls(F("self.crl"), self, NULL), 0);
    assert_int_equal(pki_write_crls(F("other.crl"), good, other, NULL), 0);

    run_crl(&fs, F("good.crl"));
    if (fs.n != 0) {
        dump(&fs);
    }
    assert_int_equal(fs.n, 0);
    run_crl(&fs, F("expired.crl"));
    expect_only(&fs, "crl-expired", CERTS_SEV_ERROR, F("expired.crl"));
    run_crl(&fs, F("forged.crl"));
    expect_only(&fs, "crl-bad-signature", CERTS_SEV_ERROR, F("forged.crl"));
    /* A CRL of a CA that is not in tls.ca (nor in our chain): it can only apply to peers that
       send that CA as an intermediate, which is legitimate: a warning, never an error (ferry
       run would refuse to start on it). */
    run_crl(&fs, F("other.crl"));
    expect_only(&fs, "crl-bad-signature", CERTS_SEV_WARNING, F("other.crl"));
    run_crl(&fs, F("self.crl"));
    expect_only(&fs, "crl-revokes-self", CERTS_SEV_ERROR, F("node.crt"));

    /* The CRL of our own intermediate (in the chain file, not in tls.ca) is checked against
       that intermediate: intact, it gives no finding. */
    {
        struct certs_diag_params p = {.need_server_auth = true, .need_client_auth = true};
        X509_CRL *inter_crl = pki_crl_new(inter, -DAY, 7 * DAY, NULL);
        X509_CRL *root_crl = pki_crl_new(root, -DAY, 7 * DAY, NULL);

        assert_non_null(inter_crl);
        assert_non_null(root_crl);
        save("viaint", node(NULL, inter), inter, NULL);
        assert_int_equal(pki_write_crls(F("both.crl"), root_crl, inter_crl, NULL), 0);
        p.crl = F("both.crl");
        run(&fs, F("viaint.crt"), F("viaint.key"), F("ca.crt"), &p);
        if (fs.n != 0) {
            dump(&fs);
        }
        assert_int_equal(fs.n, 0);
        X509_CRL_free(inter_crl);
        X509_CRL_free(root_crl);
    }

    /* A second CA in the bundle without its CRL. */
    {
        struct certs_diag_params p = {.need_server_auth = true, .need_client_auth = true};

        assert_int_equal(pki_write_chain(F("two-roots.crt"), root, other_root, NULL), 0);
        p.crl = F("good.crl");
        run(&fs, F("node.crt"), F("node.key"), F("two-roots.crt"), &p);
        expect_only(&fs, "crl-missing", CERTS_SEV_WARNING, F("good.crl"));
    }
    X509_CRL_free(good);
    X509_CRL_free(expired);
    X509_CRL_free(forged);
    X509_CRL_free(self);
    X509_CRL_free(other);
}

static void
test_ca_multiple_roots(void **state)
{
    struct certs_findings fs;
    struct certs_diag_params p = {.need_server_auth = true, .note_multiple_roots = true};

    (void)state;
    assert_int_equal(pki_write_chain(F("two-roots.crt"), root, other_root, NULL), 0);
    run(&fs, F("node.crt"), F("node.key"), F("two-roots.crt"), &p);
    expect_only(&fs, "ca-multiple-roots", CERTS_SEV_WARNING, F("two-roots.crt"));
}

/* ---- ferry check: config and start checks ---- */

static int builder_calls;

/* Stands in for proxy_listener_tls(): the real start checks of tls/, or a forced refusal. */
static int
real_builder(const struct config_listener *cl, struct tls_ctx **out, char *err, size_t errlen)
{
    struct tls_ctx_params tp;

    builder_calls++;
    memset(&tp, 0, sizeof(tp));
    tp.role = cl->mode == CONFIG_MODE_INBOUND ? TLS_ROLE_SERVER : TLS_ROLE_CLIENT;
    tp.cert_file = cl->tls.cert.path;
    tp.key_file = cl->tls.key.path;
    tp.key_passphrase_file = cl->tls.key_passphrase_file.path;
    tp.ca_file = cl->tls.ca.path;
    tp.crl_file = cl->tls.crl.path;
    tp.client_cert_required = true;
    tp.peer_host = cl->peer.host;
    *out = tls_ctx_new(&tp, err, errlen);
    return *out != NULL ? 0 : -1;
}

static int
refusing_builder(const struct config_listener *cl, struct tls_ctx **out, char *err, size_t errlen)
{
    (void)cl;
    builder_calls++;
    *out = NULL;
    (void)snprintf(err, errlen, "listener in: something only run checks");
    return -1;
}

/* Run certs_check_run() on YAML ${yaml} (written to NAME.yaml); output into ${buf}. */
static int
check(const char *name, const char *yaml, certs_tls_builder b, bool json, char **buf)
{
    struct certs_check_opts o;
    char file[256];
    size_t len = 0;
    FILE *out;
    int rc;

    (void)snprintf(file, sizeof(file), "%s.yaml", name);
    assert_int_equal(pki_write_text(F(file), yaml), 0);
    memset(&o, 0, sizeof(o));
    o.config_path = F(file);
    o.json = json;
    o.hostname = "node1.test";
    assert_non_null(out = open_memstream(buf, &len));
    rc = certs_check_run(&o, b, out, stderr);
    fclose(out);
    return rc;
}

#define GOOD_YAML(extra)                                                                        \
    "tls:\n  cert: node.crt\n  key: node.key\n  ca: ca.crt\n" extra "listeners:\n"              \
    "  - {name: in, mode: inbound, listen: \"127.0.0.1:16984\", backend: \"127.0.0.1:5984\"}\n" \
    "  - {name: out, mode: outbound, listen: \"127.0.0.1:17001\", peer: \"node2.test:6984\"}\n"

static void
test_check_ok(void **state)
{
    char *buf = NULL;

    (void)state;
    builder_calls = 0;
    assert_int_equal(check("ok", GOOD_YAML(""), real_builder, false, &buf), 0);
    assert_int_equal(builder_calls, 2);
    assert_non_null(strstr(buf, "ok: "));
    assert_null(strstr(buf, "error"));
    free(buf);
    assert_int_equal(check("ok", GOOD_YAML(""), real_builder, true, &buf), 0);
    assert_non_null(strstr(buf, "\"findings\":[],\"errors\":0,\"warnings\":0"));
    free(buf);
}

static void
test_check_config_invalid(void **state)
{
    char *buf = NULL;

    (void)state;
    assert_int_equal(
        check("bad", "tls:\n  cert: node.crt\n  bogus_key: 1\n", real_builder, true, &buf), 1);
    assert_non_null(strstr(buf, "\"id\":\"config-invalid\",\"severity\":\"error\""));
    assert_non_null(strstr(buf, "bad.yaml\",\"line\":3,\"col\":3"));
    free(buf);
    /* A missing file named by the config is file-missing against that file. */
    assert_int_equal(check("miss",
                           "tls:\n  cert: node.crt\n  key: node.key\n  ca: no-such-ca.crt\n"
                           "listeners:\n  - {name: in, mode: inbound, listen: \"127.0.0.1:16984\", "
                           "backend: \"127.0.0.1:5984\"}\n",
                           real_builder, true, &buf),
                     1);
    assert_non_null(strstr(buf, "\"id\":\"file-missing\""));
    assert_non_null(strstr(buf, "no-such-ca.crt\",\"line\":0"));
    assert_non_null(strstr(buf, "miss.yaml:4:7"));
    free(buf);
}

/* A FIFO named by the config, or as the config: file-unreadable at once, never opened. */
static void
test_check_fifo(void **state)
{
    struct certs_check_opts o;
    char *buf = NULL;
    size_t len = 0;
    FILE *out;

    (void)state;
    (void)unlink(F("ca.fifo"));
    assert_int_equal(mkfifo(F("ca.fifo"), 0600), 0);
    assert_int_equal(check("fifo",
                           "tls:\n  cert: node.crt\n  key: node.key\n  ca: ca.fifo\n"
                           "listeners:\n  - {name: in, mode: inbound, listen: \"127.0.0.1:16984\", "
                           "backend: \"127.0.0.1:5984\"}\n",
                           real_builder, true, &buf),
                     1);
    assert_non_null(strstr(buf, "\"id\":\"file-unreadable\""));
    assert_non_null(strstr(buf, "ca.fifo\",\"line\":0"));
    assert_non_null(strstr(buf, "tls.ca (/"));
    assert_non_null(strstr(buf, "not a regular file (a FIFO)"));
    assert_non_null(strstr(buf, "point the setting at a regular file"));
    free(buf);
    buf = NULL;
    memset(&o, 0, sizeof(o));
    o.config_path = F("ca.fifo");
    o.json = true;
    assert_non_null(out = open_memstream(&buf, &len));
    assert_int_equal(certs_check_run(&o, real_builder, out, stderr), 1);
    fclose(out);
    assert_non_null(strstr(buf, "\"id\":\"file-unreadable\""));
    assert_non_null(strstr(buf, "cannot read the config file: not a regular file (a FIFO)"));
    free(buf);
    (void)unlink(F("ca.fifo"));
}

/*
 * user: nobody, checked as root: a 0600 root key is file-unreadable-after-drop (a warning:
 * check exits 0); readable by nobody's primary group, it is not.  Skipped unless root.
 */
static void
test_check_after_drop(void **state)
{
    const struct passwd *pw = getpwnam("nobody");
    char *buf = NULL;
    const char *yaml = GOOD_YAML("user: nobody\n");
    gid_t gid;

    (void)state;
    if (geteuid() != 0 || pw == NULL) {
        skip();
        return;
    }
    /* getpwnam()'s buffer is reused by the check itself: keep the group now. */
    gid = pw->pw_gid;
    assert_int_equal(chmod(F("node.key"), 0600), 0);
    assert_int_equal(chown(F("node.key"), 0, 0), 0);
    assert_int_equal(check("drop", yaml, real_builder, true, &buf), 0);
    assert_non_null(strstr(buf, "\"id\":\"file-unreadable-after-drop\",\"severity\":\"warning\""));
    assert_non_null(strstr(buf, "the file is mode 0600, owned by uid 0 gid 0"));
    free(buf);
    buf = NULL;
    assert_int_equal(chown(F("node.key"), 0, gid), 0);
    assert_int_equal(chmod(F("node.key"), 0640), 0);
    assert_int_equal(check("drop", yaml, real_builder, true, &buf), 0);
    /* Only a directory on the way could still stop nobody: never the key's own mode. */
    assert_null(strstr(buf, "the file is mode 0640"));
    free(buf);
    assert_int_equal(chown(F("node.key"), 0, 0), 0);
    assert_int_equal(chmod(F("node.key"), 0600), 0);
}

static void
test_check_roles(void **state)
{
    char *buf = NULL;

    (void)state;
    /* Outbound with a serverAuth-only certificate: eku-client-missing, and the builder's
       refusal is not repeated as start-refused (the finding explains it). */
    assert_int_equal(check("roles",
                           "tls:\n  cert: srvonly.crt\n  key: srvonly.key\n  ca: ca.crt\n"
                           "listeners:\n  - {name: out, mode: outbound, listen: "
                           "\"127.0.0.1:17001\", peer: \"node2.test:6984\"}\n",
                           real_builder, true, &buf),
                     1);
    assert_non_null(strstr(buf, "\"id\":\"eku-client-missing\""));
    assert_null(strstr(buf, "start-refused"));
    assert_null(strstr(buf, "eku-server-missing"));
    free(buf);
}

static void
test_check_start_refused(void **state)
{
    char *buf = NULL;

    (void)state;
    assert_int_equal(check("refused", GOOD_YAML(""), refusing_builder, true, &buf), 1);
    assert_non_null(strstr(buf, "\"id\":\"start-refused\",\"severity\":\"error\""));
    assert_non_null(strstr(buf, "something only run checks"));
    assert_non_null(strstr(buf, "refused.yaml\",\"line\":6"));
    free(buf);
}

static void
test_check_multiple_roots(void **state)
{
    char *buf = NULL;

    (void)state;
    assert_int_equal(pki_write_chain(F("two-roots.crt"), root, other_root, NULL), 0);
    assert_int_equal(check("roots",
                           "tls:\n  cert: node.crt\n  key: node.key\n  ca: two-roots.crt\n"
                           "listeners:\n  - {name: out, mode: outbound, listen: "
                           "\"127.0.0.1:17001\", peer: \"node2.test:6984\"}\n",
                           real_builder, false, &buf),
                     0);
    assert_non_null(strstr(buf, "warning  ca-multiple-roots  "));
    assert_non_null(strstr(buf, "fix: "));
    free(buf);
}

/* certs_check_vet_config() on YAML ${yaml} (written to NAME.yaml) with ${hostname}. */
static void
vet(const char *name, const char *yaml, const char *hostname, struct certs_findings *fs)
{
    struct config_errors errs = {0};
    struct config *cfg;
    char file[256];

    (void)snprintf(file, sizeof(file), "%s.yaml", name);
    assert_int_equal(pki_write_text(F(file), yaml), 0);
    cfg = config_load(F(file), &errs);
    config_errors_clear(&errs);
    assert_non_null(cfg);
    memset(fs, 0, sizeof(*fs));
    assert_int_equal(certs_check_vet_config(cfg, hostname, real_builder, fs), 0);
    config_free(cfg);
}

/* san-hostname only when told how peers dial this node, and only for inbound listeners. */
static void
test_vet_hostname(void **state)
{
    struct certs_findings fs;

    (void)state;
    /* Without --hostname: this machine's own name is no evidence (it was noise). */
    vet("host", GOOD_YAML(""), NULL, &fs);
    assert_int_equal(fs.n, 0);
    vet("host", GOOD_YAML(""), "db7.example.org", &fs);
    expect_only(&fs, "san-hostname", CERTS_SEV_WARNING, F("node.crt"));
    vet("host", GOOD_YAML(""), "node1.test", &fs);
    assert_int_equal(fs.n, 0);
    /* An outbound-only config: nobody dials it. */
    vet("host-out",
        "tls:\n  cert: node.crt\n  key: node.key\n  ca: ca.crt\nlisteners:\n"
        "  - {name: out, mode: outbound, listen: \"127.0.0.1:17001\", peer: \"node2.test:6984\"}\n",
        "db7.example.org", &fs);
    assert_int_equal(fs.n, 0);
}

#define SECRET_YAML(file)                                                 \
    "tls:\n  cert: node.crt\n  key: node.key\n  ca: ca.crt\nlisteners:\n" \
    "  - name: in\n    mode: inbound\n    listen: \"127.0.0.1:16984\"\n"  \
    "    backend: \"127.0.0.1:5984\"\n    couchdb_proxy_auth: {secret_file: " file "}\n"

/* The proxy-auth secret under the rule of keys: others error, group warning. */
static void
test_vet_secret(void **state)
{
    struct certs_findings fs;

    (void)state;
    assert_int_equal(pki_write_text(F("couch.secret"), "TOPSECRET\n"), 0);
    assert_int_equal(chmod(F("couch.secret"), 0600), 0);
    vet("secret", SECRET_YAML("couch.secret"), NULL, &fs);
    assert_int_equal(fs.n, 0);
    assert_int_equal(chmod(F("couch.secret"), 0640), 0);
    vet("secret", SECRET_YAML("couch.secret"), NULL, &fs);
    assert_false(certs_check_stops_run(&fs.v[0]));
    expect_only(&fs, "key-group-readable", CERTS_SEV_WARNING, F("couch.secret"));
    assert_int_equal(chmod(F("couch.secret"), 0644), 0);
    vet("secret", SECRET_YAML("couch.secret"), NULL, &fs);
    assert_true(certs_check_stops_run(&fs.v[0]));
    assert_null(strstr(fs.v[0].message, "TOPSECRET"));
    expect_only(&fs, "key-permissions", CERTS_SEV_ERROR, F("couch.secret"));
    (void)unlink(F("couch.link"));
    assert_int_equal(symlink("couch.secret", F("couch.link")), 0);
    vet("secret", SECRET_YAML("couch.link"), NULL, &fs);
    expect_only(&fs, "key-permissions", CERTS_SEV_ERROR, F("couch.link"));
    assert_int_equal(chmod(F("couch.secret"), 0600), 0);
}

/* Which errors stop `ferry run`: all but those the clock alone causes. */
static void
test_stops_run(void **state)
{
    static const char *const clock_only[] = {"cert-expired", "cert-not-yet-valid", "crl-expired"};
    static const char *const stopping[] = {"key-permissions", "chain-incomplete", "chain-untrusted",
                                           "issuer-not-ca",   "config-invalid",   "start-refused"};
    struct certs_finding f;
    size_t i;

    (void)state;
    memset(&f, 0, sizeof(f));
    f.severity = CERTS_SEV_ERROR;
    for (i = 0; i < sizeof(clock_only) / sizeof(clock_only[0]); i++) {
        f.id = clock_only[i];
        assert_false(certs_check_stops_run(&f));
    }
    for (i = 0; i < sizeof(stopping) / sizeof(stopping[0]); i++) {
        f.id = stopping[i];
        assert_true(certs_check_stops_run(&f));
    }
    f.id = "key-group-readable";
    f.severity = CERTS_SEV_WARNING;
    assert_false(certs_check_stops_run(&f));
    f.id = "cert-expiring";
    assert_false(certs_check_stops_run(&f));
}

static void
test_findings_list(void **state)
{
    struct certs_findings fs = {0};
    char *buf = NULL;
    size_t len = 0;
    FILE *out;
    struct config_json j;

    (void)state;
    assert_int_equal(certs_findings_add(&fs, "key-mismatch", CERTS_SEV_ERROR, "/a \"b\".key", 0, 0,
                                        "tab\there", "fix it"),
                     0);
    /* The same finding twice (a file shared by two listeners) is listed once. */
    assert_int_equal(certs_findings_add(&fs, "key-mismatch", CERTS_SEV_ERROR, "/a \"b\".key", 0, 0,
                                        "tab\there", "fix it"),
                     0);
    assert_int_equal(fs.n, 1);
    assert_non_null(out = open_memstream(&buf, &len));
    config_json_init_file(&j, out);
    config_json_begin_object(&j);
    certs_findings_json(&fs, &j);
    config_json_end_object(&j);
    fclose(out);
    assert_string_equal(buf, "{\"findings\":[{\"id\":\"key-mismatch\",\"severity\":\"error\","
                             "\"file\":\"/a \\\"b\\\".key\",\"line\":0,\"col\":0,\"message\":"
                             "\"tab\\there\",\"fix\":\"fix it\"}],\"errors\":1,\"warnings\":0}");
    free(buf);
    certs_findings_clear(&fs);
}

/* tls_chain_note(): what a failed chain verification tells about a leaf sent alone. */
static int
chain_note(X509 *x, STACK_OF(X509) * sent, X509 *trusted, struct tls_peer_info *info)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int ok;

    assert_non_null(store);
    assert_non_null(ctx);
    assert_int_equal(X509_STORE_add_cert(store, trusted), 1);
    assert_int_equal(X509_STORE_CTX_init(ctx, store, x, sent), 1);
    ok = X509_verify_cert(ctx);
    memset(info, 0, sizeof(*info));
    if (ok != 1) {
        tls_chain_note(ctx, info);
    }
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return ok;
}

static void
test_chain_note(void **state)
{
    struct pki_opts ca = {.cn = "Note Root", .ca = true};
    struct pki_opts io = {.cn = "Note Int", .ca = true};
    struct pki_cert *nr = mk(&ca, NULL), *ni = mk(&io, nr);
    struct pki_cert *nl = node(NULL, ni);
    STACK_OF(X509) *alone = sk_X509_new_null(), *chain = sk_X509_new_null();
    struct tls_peer_info info;

    (void)state;
    assert_true(alone != NULL && chain != NULL);
    assert_true(sk_X509_push(alone, nl->x509) > 0);
    assert_true(sk_X509_push(chain, nl->x509) > 0 && sk_X509_push(chain, ni->x509) > 0);
    /* The leaf alone, tls.ca the root only: one certificate sent, its issuer unknown here. */
    assert_int_not_equal(chain_note(nl->x509, alone, nr->x509, &info), 1);
    assert_int_equal(info.sent, 1);
    assert_false(info.gap_in_ca);
    /* tls.ca holds the intermediate but not the root: it knows the leaf's issuer. */
    assert_int_not_equal(chain_note(nl->x509, alone, ni->x509, &info), 1);
    assert_int_equal(info.sent, 1);
    assert_true(info.gap_in_ca);
    /* Leaf and intermediate sent against another root: two certificates sent. */
    assert_int_not_equal(chain_note(nl->x509, chain, mk(&ca, NULL)->x509, &info), 1);
    assert_int_equal(info.sent, 2);
    /* With the chain and the root, it verifies (nothing to note). */
    assert_int_equal(chain_note(nl->x509, chain, nr->x509, &info), 1);
    sk_X509_free(alone);
    sk_X509_free(chain);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean),
        cmocka_unit_test(test_chain_note),
        cmocka_unit_test(test_crlf_accepted),
        cmocka_unit_test(test_file_missing),
        cmocka_unit_test(test_file_unreadable),
        cmocka_unit_test(test_file_empty),
        cmocka_unit_test(test_not_pem_der),
        cmocka_unit_test(test_not_pem_pkcs12),
        cmocka_unit_test(test_not_a_certificate),
        cmocka_unit_test(test_not_a_key),
        cmocka_unit_test(test_not_a_crl),
        cmocka_unit_test(test_key_mismatch),
        cmocka_unit_test(test_key_encrypted_no_passphrase),
        cmocka_unit_test(test_key_passphrase),
        cmocka_unit_test(test_key_permissions),
        cmocka_unit_test(test_chain_order),
        cmocka_unit_test(test_chain_incomplete),
        cmocka_unit_test(test_ca_missing_root),
        cmocka_unit_test(test_chain_untrusted),
        cmocka_unit_test(test_ca_not_a_ca),
        cmocka_unit_test(test_chain_bad_signature),
        cmocka_unit_test(test_self_signed_leaf),
        cmocka_unit_test(test_issuer_not_ca),
        cmocka_unit_test(test_eku),
        cmocka_unit_test(test_san),
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_weak_key),
        cmocka_unit_test(test_sha1_signature),
        cmocka_unit_test(test_crl),
        cmocka_unit_test(test_ca_multiple_roots),
        cmocka_unit_test(test_check_ok),
        cmocka_unit_test(test_check_config_invalid),
        cmocka_unit_test(test_check_fifo),
        cmocka_unit_test(test_check_after_drop),
        cmocka_unit_test(test_check_roles),
        cmocka_unit_test(test_check_start_refused),
        cmocka_unit_test(test_check_multiple_roots),
        cmocka_unit_test(test_vet_hostname),
        cmocka_unit_test(test_vet_secret),
        cmocka_unit_test(test_stops_run),
        cmocka_unit_test(test_findings_list),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
