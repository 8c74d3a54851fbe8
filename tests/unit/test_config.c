/*
 * Unit tests for config/: YAML -> struct config, every error class with its exact
 * file:line:col, and the value parsers (durations, addresses).
 *
 * The tests run inside $FERRY_TEST_TMP/config-unit, where the group setup writes stand-in
 * certificate files (config/ only checks that they are readable), so the YAML below can name
 * them with short relative paths and keep its columns easy to count.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "config_internal.h"

#include "config.h"

static char tmpdir[4096];

/* mkdir -p ${path}. */
static int
mkdir_p(const char *path)
{
    char buf[4096];
    char *p;

    snprintf(buf, sizeof(buf), "%s", path);
    for (p = buf + 1; *p != '\0'; p++) {
        if (*p != '/') {
            continue;
        }
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
            return (-1);
        }
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
        return (-1);
    }
    return (0);
}

/* Write ${text} to ${path}. */
static void
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* Write ${text} to ${path} with permissions ${mode} (whatever the umask). */
static void
write_file_mode(const char *path, const char *text, mode_t mode)
{
    write_file(path, text);
    assert_int_equal(chmod(path, mode), 0);
}

static int
group_setup(void **state)
{
    const char *t = getenv("FERRY_TEST_TMP");
    static const char *const files[] = {"node.crt", "node.key",   "ca.crt",    "ca.crl",
                                        "key.pass", "site-a.crt", "site-a.key"};
    size_t i;

    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "%s/config-unit", t != NULL ? t : "/tmp/ferry-test-tmp");
    if (mkdir_p(tmpdir) != 0 || chdir(tmpdir) != 0) {
        return (-1);
    }
    for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        write_file(files[i], "stand-in\n");
    }
    if (mkdir_p("a-directory") != 0) {
        return (-1);
    }
    /* couchdb_proxy_auth secrets: only the owner may read a good one. */
    write_file("couchdb.secret", "the_secret");
    if (chmod("couchdb.secret", 0600) != 0) {
        return (-1);
    }
    return (0);
}

/* Print every error (shown by cmocka only when a test fails). */
static void
dump(const struct config_errors *errs)
{
    char buf[1200];
    size_t i;

    for (i = 0; i < errs->n; i++) {
        print_message("  error %zu: %s\n", i, config_error_format(&errs->v[i], buf, sizeof(buf)));
    }
}

/* Load ${yaml} as "t.yaml"; the config must load without error. */
static struct config *
load_ok(const char *yaml)
{
    struct config_errors errs = {0};
    struct config *cfg;

    cfg = config_load_string("t.yaml", yaml, strlen(yaml), &errs);
    dump(&errs);
    assert_int_equal(errs.n, 0);
    assert_non_null(cfg);
    return (cfg);
}

/* Load ${yaml} as "t.yaml"; it must fail with exactly ${n} errors (any number when n < 0). */
static void
load_bad(const char *yaml, int n, struct config_errors *errs)
{
    struct config *cfg;

    memset(errs, 0, sizeof(*errs));
    cfg = config_load_string("t.yaml", yaml, strlen(yaml), errs);
    dump(errs);
    assert_null(cfg);
    assert_true(errs->n > 0);
    if (n >= 0) {
        assert_int_equal(errs->n, (size_t)n);
    }
}

/* Error ${i} of ${errs} is at ${line}:${col} and its message contains ${sub}. */
static void
expect_err(const struct config_errors *errs, size_t i, unsigned line, unsigned col, const char *sub)
{
    char buf[1200];

    assert_true(i < errs->n);
    config_error_format(&errs->v[i], buf, sizeof(buf));
    if (errs->v[i].line != line || errs->v[i].col != col || strstr(errs->v[i].msg, sub) == NULL) {
        print_message("want %u:%u containing [%s]\n got %s\n", line, col, sub, buf);
    }
    assert_int_equal(errs->v[i].line, line);
    assert_int_equal(errs->v[i].col, col);
    assert_non_null(strstr(errs->v[i].msg, sub));
}

/* Load ${yaml}; expect exactly one error, at ${line}:${col}, containing ${sub}. */
static void
one_err(const char *yaml, unsigned line, unsigned col, const char *sub)
{
    struct config_errors errs;

    load_bad(yaml, 1, &errs);
    expect_err(&errs, 0, line, col, sub);
    config_errors_clear(&errs);
}

#define TLS_OK           \
    "tls:\n"             \
    "  cert: node.crt\n" \
    "  key: node.key\n"  \
    "  ca: ca.crt\n"

/* One inbound listener, lines 5-9 (the listener mapping starts at 6:5). */
#define INBOUND_OK                   \
    "listeners:\n"                   \
    "  - name: in\n"                 \
    "    mode: inbound\n"            \
    "    listen: \"0.0.0.0:6984\"\n" \
    "    backend: \"127.0.0.1:5984\"\n"

/* One outbound listener with the top-level TLS, lines 1-9 (the listener mapping starts at 6:5). */
#define OUTBOUND_OK                       \
    TLS_OK "listeners:\n"                 \
           "  - name: out\n"              \
           "    mode: outbound\n"         \
           "    listen: 127.0.0.1:7001\n" \
           "    peer: node2.example.org:6984\n"

/* ---- good files ---- */

static void
test_minimal_defaults(void **state)
{
    struct config *cfg;
    const struct config_listener *l;

    (void)state;
    cfg = load_ok(TLS_OK INBOUND_OK);
    assert_string_equal(cfg->path, "t.yaml");
    assert_int_equal(cfg->n_listeners, 1);
    assert_int_equal(cfg->log_level, CONFIG_LOG_INFO);
    assert_int_equal(cfg->log_format, CONFIG_LOG_TEXT);
    assert_int_equal(cfg->limits.max_connections, 10000);
    assert_int_equal(cfg->limits.handshake_timeout_ms, 10000);
    assert_int_equal(cfg->limits.idle_timeout_ms, 300000);
    assert_int_equal(cfg->limits.header_timeout_ms, 15000);
    assert_int_equal(cfg->limits.backend_timeout_ms, 60000);
    assert_int_equal(cfg->limits.drain_timeout_ms, 30000);
    assert_false(cfg->admin.enabled);
    assert_null(cfg->user);

    l = config_listener_find(cfg, "in");
    assert_ptr_equal(l, &cfg->listeners[0]);
    assert_null(config_listener_find(cfg, "out"));
    assert_string_equal(l->name, "in");
    assert_int_equal(l->pos.line, 6);
    assert_int_equal(l->pos.col, 5);
    assert_int_equal(l->mode, CONFIG_MODE_INBOUND);
    assert_string_equal(l->listen.host, "0.0.0.0");
    assert_int_equal(l->listen.port, 6984);
    assert_true(l->listen.is_ip);
    assert_false(l->listen.is_ipv6);
    assert_string_equal(l->backend.host, "127.0.0.1");
    assert_int_equal(l->backend.port, 5984);
    assert_false(l->has_connect);
    assert_int_equal(l->protocol, CONFIG_PROTOCOL_HTTP);
    assert_int_equal(l->client_cert, CONFIG_CLIENT_CERT_REQUIRED);
    assert_null(l->allow);
    assert_int_equal(l->n_allow, 0);
    assert_null(l->access);
    assert_int_equal(l->n_access, 0);
    assert_int_equal(l->client_cert_header, CONFIG_CLIENT_CERT_HEADER_XFCC);
    assert_int_equal(l->host_header, CONFIG_HOST_HEADER_KEEP);
    assert_false(l->proxy_auth.enabled);
    assert_null(l->proxy_auth.secret_file.path);
    assert_null(l->proxy_auth.roles);
    assert_int_equal(l->proxy_auth.n_roles, 0);

    assert_string_equal(l->tls.cert.path, "node.crt");
    assert_int_equal(l->tls.cert.pos.line, 2);
    assert_int_equal(l->tls.cert.pos.col, 9);
    assert_string_equal(l->tls.key.path, "node.key");
    assert_string_equal(l->tls.ca.path, "ca.crt");
    assert_null(l->tls.crl.path);
    assert_null(l->tls.key_passphrase_file.path);
    assert_int_equal(l->tls.min_version, 0x0303);
    assert_int_equal(l->tls.verify_depth, 4);
    assert_false(l->tls.cn_fallback);
    assert_true(l->tls.session_resumption);
    config_free(cfg);
}

static void
test_full_file(void **state)
{
    static const char yaml[] =
        "# every key of this release\n"
        "tls:\n"
        "  cert: node.crt\n"
        "  key: node.key\n"
        "  key_passphrase_file: key.pass\n"
        "  ca: ca.crt\n"
        "  crl: ca.crl\n"
        "  min_version: \"1.3\"\n"
        "  verify_depth: 7\n"
        "  cn_fallback: true\n"
        "  session_resumption: false\n"
        "listeners:\n"
        "  - name: from-peers\n"
        "    mode: inbound\n"
        "    listen: \"[::]:6984\"\n"
        "    backend: \"localhost:5984\"\n"
        "    protocol: tcp\n"
        "    client_cert: required\n"
        "    allow: [\"node2.example.org\", \"*.site-b.example.org\", 10.0.0.1, \"::1\"]\n"
        "  - name: to_node2.x\n"
        "    mode: outbound\n"
        "    listen: 127.0.0.1:7001\n"
        "    peer: node2.example.org:6984\n"
        "    connect: \"[2001:db8::1]:6984\"\n"
        "    protocol: http\n"
        "log:\n"
        "  level: debug\n"
        "  format: json\n"
        "limits:\n"
        "  max_connections: 1000000\n"
        "  handshake_timeout: 500ms\n"
        "  idle_timeout: 2h\n";
    struct config *cfg;
    const struct config_listener *in;
    const struct config_listener *out;

    (void)state;
    cfg = load_ok(yaml);
    assert_int_equal(cfg->log_level, CONFIG_LOG_DEBUG);
    assert_int_equal(cfg->log_format, CONFIG_LOG_JSON);
    assert_int_equal(cfg->limits.max_connections, 1000000);
    assert_int_equal(cfg->limits.handshake_timeout_ms, 500);
    assert_int_equal(cfg->limits.idle_timeout_ms, 2 * 3600 * 1000);

    assert_non_null(in = config_listener_find(cfg, "from-peers"));
    assert_non_null(out = config_listener_find(cfg, "to_node2.x"));
    assert_string_equal(in->listen.host, "::");
    assert_true(in->listen.is_ipv6);
    assert_string_equal(in->backend.host, "localhost");
    assert_false(in->backend.is_ip);
    assert_int_equal(in->protocol, CONFIG_PROTOCOL_TCP);
    assert_int_equal(in->client_cert, CONFIG_CLIENT_CERT_REQUIRED);
    assert_int_equal(in->n_allow, 4);
    assert_string_equal(in->allow[0], "node2.example.org");
    assert_string_equal(in->allow[1], "*.site-b.example.org");
    assert_string_equal(in->allow[2], "10.0.0.1");
    assert_string_equal(in->allow[3], "::1");

    assert_int_equal(out->mode, CONFIG_MODE_OUTBOUND);
    assert_string_equal(out->peer.host, "node2.example.org");
    assert_int_equal(out->peer.port, 6984);
    assert_false(out->peer.is_ip);
    assert_true(out->has_connect);
    assert_string_equal(out->connect.host, "2001:db8::1");
    assert_true(out->connect.is_ipv6);
    assert_int_equal(out->protocol, CONFIG_PROTOCOL_HTTP);

    assert_string_equal(out->tls.key_passphrase_file.path, "key.pass");
    assert_string_equal(out->tls.crl.path, "ca.crl");
    assert_int_equal(out->tls.min_version, 0x0304);
    assert_int_equal(out->tls.verify_depth, 7);
    assert_true(out->tls.cn_fallback);
    assert_false(out->tls.session_resumption);
    config_free(cfg);
}

static void
test_min_version_plain(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = load_ok(TLS_OK "  min_version: 1.2\n" INBOUND_OK);
    assert_int_equal(cfg->listeners[0].tls.min_version, 0x0303);
    config_free(cfg);
    cfg = load_ok(TLS_OK "  min_version: 1.3\n" INBOUND_OK);
    assert_int_equal(cfg->listeners[0].tls.min_version, 0x0304);
    config_free(cfg);
    one_err(TLS_OK "  min_version: 1.1\n" INBOUND_OK, 5, 16,
            "tls.min_version: expected \"1.2\" or \"1.3\", got \"1.1\"");
    one_err(TLS_OK "  min_version: 1.20\n" INBOUND_OK, 5, 16, "got \"1.20\"");
}

static void
test_tls_override_merge(void **state)
{
    static const char yaml[] = "tls:\n"
                               "  cert: node.crt\n"
                               "  key: node.key\n"
                               "  ca: ca.crt\n"
                               "  verify_depth: 2\n"
                               "  session_resumption: false\n"
                               "listeners:\n"
                               "  - name: in\n"
                               "    mode: inbound\n"
                               "    listen: 0.0.0.0:6984\n"
                               "    backend: 127.0.0.1:5984\n"
                               "  - name: out\n"
                               "    mode: outbound\n"
                               "    listen: 127.0.0.1:7001\n"
                               "    peer: node2.example.org:6984\n"
                               "    tls: { cert: site-a.crt, key: site-a.key, "
                               "session_resumption: true, min_version: \"1.3\" }\n";
    struct config *cfg;
    const struct config_listener *in;
    const struct config_listener *out;

    (void)state;
    cfg = load_ok(yaml);
    in = config_listener_find(cfg, "in");
    out = config_listener_find(cfg, "out");
    assert_non_null(in);
    assert_non_null(out);

    /* The inbound listener has the defaults only. */
    assert_string_equal(in->tls.cert.path, "node.crt");
    assert_string_equal(in->tls.key.path, "node.key");
    assert_false(in->tls.session_resumption);
    assert_int_equal(in->tls.verify_depth, 2);
    assert_int_equal(in->tls.min_version, 0x0303);

    /* The outbound one replaces exactly the keys its tls: sets. */
    assert_string_equal(out->tls.cert.path, "site-a.crt");
    assert_int_equal(out->tls.cert.pos.line, 16);
    assert_int_equal(out->tls.cert.pos.col, 18);
    assert_string_equal(out->tls.key.path, "site-a.key");
    assert_string_equal(out->tls.ca.path, "ca.crt");
    assert_int_equal(out->tls.ca.pos.line, 4);
    assert_true(out->tls.session_resumption);
    assert_int_equal(out->tls.verify_depth, 2);
    assert_int_equal(out->tls.min_version, 0x0304);
    config_free(cfg);
}

static void
test_tls_only_in_listeners(void **state)
{
    /* No top-level tls: at all; each listener brings its own. */
    static const char yaml[] = "listeners:\n"
                               "  - name: in\n"
                               "    mode: inbound\n"
                               "    listen: 0.0.0.0:6984\n"
                               "    backend: 127.0.0.1:5984\n"
                               "    client_cert: none\n"
                               "    tls:\n"
                               "      cert: node.crt\n"
                               "      key: node.key\n";
    struct config *cfg;

    (void)state;
    cfg = load_ok(yaml);
    assert_string_equal(cfg->listeners[0].tls.cert.path, "node.crt");
    assert_null(cfg->listeners[0].tls.ca.path);
    assert_int_equal(cfg->listeners[0].tls.verify_depth, 4);
    config_free(cfg);
}

static void
test_relative_paths(void **state)
{
    char dir[4200];
    char path[4300];
    char want[4300];
    struct config_errors errs = {0};
    struct config *cfg;

    (void)state;
    /* Relative to the config file's directory, made absolute. */
    snprintf(dir, sizeof(dir), "%s/rel/certs", tmpdir);
    assert_int_equal(mkdir_p(dir), 0);
    snprintf(path, sizeof(path), "%s/rel/certs/node.crt", tmpdir);
    write_file(path, "stand-in\n");
    snprintf(path, sizeof(path), "%s/rel/ferry.yaml", tmpdir);
    write_file(path, "tls:\n"
                     "  cert: certs/node.crt\n"
                     "  key: ./certs/node.crt\n"
                     "  ca: ../ca.crt\n" INBOUND_OK);
    cfg = config_load(path, &errs);
    dump(&errs);
    assert_non_null(cfg);
    assert_string_equal(cfg->path, path);
    snprintf(want, sizeof(want), "%s/rel/certs/node.crt", tmpdir);
    assert_string_equal(cfg->listeners[0].tls.cert.path, want);
    assert_string_equal(cfg->listeners[0].tls.key.path, want);
    snprintf(want, sizeof(want), "%s/rel/../ca.crt", tmpdir);
    assert_string_equal(cfg->listeners[0].tls.ca.path, want);
    config_free(cfg);

    /* A relative config path: still absolute results (the cwd is tmpdir). */
    cfg = config_load("./rel/ferry.yaml", &errs);
    dump(&errs);
    assert_non_null(cfg);
    snprintf(want, sizeof(want), "%s/rel/certs/node.crt", tmpdir);
    assert_string_equal(cfg->listeners[0].tls.cert.path, want);
    config_free(cfg);

    /* config_load_string() takes them as they are. */
    cfg = load_ok("tls:\n"
                  "  cert: ./node.crt\n"
                  "  key: rel/certs/node.crt\n"
                  "  ca: ca.crt\n" INBOUND_OK);
    assert_string_equal(cfg->listeners[0].tls.cert.path, "./node.crt");
    assert_string_equal(cfg->listeners[0].tls.key.path, "rel/certs/node.crt");
    config_free(cfg);
}

static void
test_load_from_data_dir(void **state)
{
    const char *data = getenv("FERRY_TEST_DATA");
    char path[4096];
    struct config_errors errs = {0};
    struct config *cfg;

    (void)state;
    if (data == NULL) {
        skip();
    }
    snprintf(path, sizeof(path), "%s/config/syntax-error.yaml", data);
    cfg = config_load(path, &errs);
    dump(&errs);
    assert_null(cfg);
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.v[0].file, path);
    expect_err(&errs, 0, 6, 1,
               "YAML syntax error: found unexpected end of stream (while scanning a quoted "
               "scalar at 4:13)");
    config_errors_clear(&errs);
}

/*
 * CONTRACT.md §3 as written: every key is accepted (admin, user, workers, pool,
 * limits.drain_timeout); only the missing /etc/ferry files are refused.
 */
static void
test_contract_example(void **state)
{
    const char *data = getenv("FERRY_TEST_DATA");
    char path[4096];
    struct config_errors errs = {0};
    struct config *cfg;
    struct stat st;

    (void)state;
    if (data == NULL || stat("/etc/ferry", &st) == 0) {
        skip();
    }
    snprintf(path, sizeof(path), "%s/config/contract-example.yaml", data);
    cfg = config_load(path, &errs);
    dump(&errs);
    assert_null(cfg);
    assert_int_equal(errs.n, 7);
    expect_err(&errs, 0, 2, 9, "tls.cert: cannot read /etc/ferry/node.crt: No such file or");
    expect_err(&errs, 1, 3, 8, "tls.key: cannot read /etc/ferry/node.key");
    expect_err(&errs, 2, 4, 24, "tls.key_passphrase_file: cannot read /etc/ferry/key.pass");
    expect_err(&errs, 3, 5, 7, "tls.ca: cannot read /etc/ferry/ca.crt");
    expect_err(&errs, 4, 6, 8, "tls.crl: cannot read /etc/ferry/ca.crl");
    expect_err(&errs, 5, 24, 18, "listeners[1].tls.cert: cannot read /etc/ferry/site-a.crt");
    expect_err(&errs, 6, 24, 46, "listeners[1].tls.key: cannot read /etc/ferry/site-a.key");
    /* pool (25), admin (26-28), header_timeout (36), backend_timeout (37), drain_timeout (38),
     * user (39) and workers (40) are accepted. */
    config_errors_clear(&errs);
}

static void
test_load_unreadable(void **state)
{
    struct config_errors errs = {0};
    char buf[512];

    (void)state;
    assert_null(config_load("does-not-exist.yaml", &errs));
    assert_int_equal(errs.n, 1);
    assert_int_equal(errs.v[0].line, 0);
    assert_string_equal(config_error_format(&errs.v[0], buf, sizeof(buf)),
                        "does-not-exist.yaml: cannot read: No such file or directory");
    config_errors_clear(&errs);
    assert_int_equal(errs.n, 0);
    assert_null(errs.v);

    assert_null(config_load("a-directory", &errs));
    assert_int_equal(errs.n, 1);
    assert_non_null(strstr(errs.v[0].msg, "got a directory"));
    config_errors_clear(&errs);
}

/* ---- YAML-level errors ---- */

static void
test_syntax_error(void **state)
{
    struct config_errors errs;

    (void)state;
    load_bad("tls:\n  cert: [a, b\n", 1, &errs);
    assert_int_equal(errs.v[0].line, 3);
    assert_non_null(strstr(errs.v[0].msg, "YAML syntax error: did not find expected ',' or ']'"));
    assert_non_null(strstr(errs.v[0].msg, "while parsing a flow sequence at 2:9"));
    config_errors_clear(&errs);

    one_err("tls:\n  cert: a\n key: b\n", 3, 2, "YAML syntax error");
    one_err("a: b: c\n", 1, 5, "mapping values are not allowed");
    one_err("\t- x\n", 1, 1, "YAML syntax error");
}

/* The usual causes of a YAML syntax error get a hint, at the line of the mistake. */
static void
test_syntax_hints(void **state)
{
    static const char ind[] = "; the keys of one mapping line up, a nested mapping goes under a "
                              "key that ends in ':'";
    char want[512];

    (void)state;
    /* a key indented more than its sibling: libyaml sees it on that line */
    snprintf(want, sizeof(want),
             "YAML syntax error: mapping values are not allowed in this context; hint: \"key:\" "
             "is indented 3 spaces but \"cert:\" on line 2 by 2%s",
             ind);
    one_err("tls:\n  cert: a\n   key: b\n  ca: c\n", 3, 4, want);
    /* ... less */
    snprintf(want, sizeof(want),
             "YAML syntax error: did not find expected key (while parsing a block mapping at "
             "1:1); hint: \"key:\" is indented 1 space but \"cert:\" on line 2 by 2%s",
             ind);
    one_err("tls:\n  cert: a\n key: b\n  ca: c\n", 3, 2, want);
    /* ... in a list item, either way */
    snprintf(want, sizeof(want),
             "hint: \"listen:\" is indented 3 spaces but \"mode:\" on line 3 by 4%s", ind);
    one_err("listeners:\n  - name: a\n    mode: inbound\n   listen: x\n", 4, 4, want);
    snprintf(want, sizeof(want),
             "hint: \"mode:\" is indented 5 spaces but \"name:\" on line 2 by 4%s", ind);
    one_err("listeners:\n  - name: a\n     mode: inbound\n    listen: x\n", 3, 6, want);

    /* a missing space after ':': libyaml notices it on the next line, the hint names this one */
    one_err("tls:\n  cert:a\n  key: b\n", 2, 7,
            "YAML syntax error: mapping values are not allowed in this context (noticed at 3:6); "
            "hint: a space is missing after ':' in \"cert:a\" (write \"cert: a\")");
    one_err("user:ferry\nworkers: 2\n", 1, 5,
            "(noticed at 2:8); hint: a space is missing after ':' in \"user:ferry\" (write "
            "\"user: ferry\")");
    one_err("log:\n  level:info\n\n  # a comment\n  format: text\n", 2, 8,
            "YAML syntax error: did not find expected key (while parsing a block mapping at 1:1) "
            "(noticed at 5:3); hint: a space is missing after ':' in \"level:info\" (write "
            "\"level: info\")");
    one_err("listeners:\n  - name: x\n    peer:node2.example.org:6984\n    mode: outbound\n", 3, 9,
            "hint: a space is missing after ':' in \"peer:node2.example.org:6984\" (write "
            "\"peer: node2.example.org:6984\")");

    /* a tab in the indentation, wherever it stands in it */
    one_err("tls:\n\tcert: a\n  key: b\n", 2, 1,
            "YAML syntax error: found character that cannot start any token (while scanning for "
            "the next token at 2:1); hint: a tab in the indentation of line 2; YAML indents with "
            "spaces only");
    one_err("tls:\n  cert: a\n\tkey: b\n", 3, 1,
            "hint: a tab in the indentation of line 3; YAML indents with spaces only");
    one_err("listeners:\n  - name: a\n  \tmode: x\n", 3, 3,
            "hint: a tab in the indentation of line 3; YAML indents with spaces only");

    /* other syntax errors keep libyaml's words and place, without a hint */
    {
        struct config_errors errs;

        load_bad("a: b: c\n", 1, &errs);
        assert_null(strstr(errs.v[0].msg, "hint"));
        config_errors_clear(&errs);
        load_bad("allow:\n  - 127.0.0.1:80\n   x: y\n", -1, &errs);
        assert_null(strstr(errs.v[0].msg, "a space is missing"));
        config_errors_clear(&errs);
    }
    one_err("a: b: c\n", 1, 5, "YAML syntax error: mapping values are not allowed in this context");
    one_err("tls:\n  cert: [a, b\n", 3, 1,
            "YAML syntax error: did not find expected ',' or ']' (while parsing a flow sequence "
            "at 2:9)");
}

static void
test_empty(void **state)
{
    struct config_errors errs;

    (void)state;
    load_bad("", 1, &errs);
    assert_int_equal(errs.v[0].line, 0);
    assert_non_null(strstr(errs.v[0].msg, "the configuration is empty"));
    config_errors_clear(&errs);
    load_bad("# only a comment\n---\n", 1, &errs);
    assert_int_equal(errs.v[0].line, 0);
    config_errors_clear(&errs);
    one_err("- a\n- b\n", 1, 1,
            "expected a mapping at the top level (with listeners:), got a sequence");
    one_err("hello\n", 1, 1,
            "expected a mapping at the top level (with listeners:), got \"hello\"");
}

static void
test_anchor_alias(void **state)
{
    struct config_errors errs;

    (void)state;
    load_bad("tls: &t\n  cert: node.crt\nlisteners:\n  - tls: *t\n", 2, &errs);
    expect_err(&errs, 0, 1, 6, "YAML anchors (&t) are not supported");
    expect_err(&errs, 1, 4, 10, "YAML aliases (*t) are not supported");
    config_errors_clear(&errs);
    one_err("a: &x b\n", 1, 4, "anchors (&x)");
}

static void
test_multiple_documents(void **state)
{
    (void)state;
    one_err(TLS_OK INBOUND_OK "---\n" TLS_OK, 10, 1,
            "expected one YAML document, got a second one");
}

static void
test_nul_and_bad_utf8(void **state)
{
    struct config_errors errs;

    (void)state;
    one_err(TLS_OK "  crl: \"a\\0b\"\n" INBOUND_OK, 5, 8, "NUL byte");
    load_bad("tls: \"\xff\"\n", 1, &errs);
    assert_int_equal(errs.v[0].line, 0);
    assert_non_null(strstr(errs.v[0].msg, "YAML error at byte 6"));
    config_errors_clear(&errs);
}

static void
test_too_deep(void **state)
{
    char yaml[400];
    size_t i;

    (void)state;
    for (i = 0; i < 70; i++) {
        yaml[i] = '[';
    }
    yaml[i] = '\0';
    one_err(yaml, 1, 65, "expected at most 64 nested levels");
}

/* ---- schema errors ---- */

static void
test_unknown_keys(void **state)
{
    struct config_errors errs;

    (void)state;
    one_err(TLS_OK INBOUND_OK "    foo: 1\n", 10, 5,
            "unknown key \"foo\" in listeners[0] (in); expected one of: name, mode, listen, "
            "backend, peer, connect, protocol, client_cert, allow, tls, pool, access, "
            "couchdb_proxy_auth, client_cert_header, host_header, proxy_protocol, "
            "backend_proxy_protocol, via");
    one_err("bar: 1\n" TLS_OK INBOUND_OK, 1, 1,
            "unknown key \"bar\" at the top level; expected one of: tls, listeners, log, limits, "
            "admin, user");
    one_err(TLS_OK "  certificate: x\n" INBOUND_OK, 5, 3,
            "unknown key \"certificate\" in tls; expected one of: cert, key, key_passphrase_file, "
            "ca, crl, min_version, verify_depth, cn_fallback, session_resumption");
    one_err(TLS_OK INBOUND_OK "    tls: { crt: x }\n", 10, 12,
            "unknown key \"crt\" in listeners[0].tls; expected one of: cert,");
    one_err(TLS_OK INBOUND_OK "log: { levle: info }\n", 10, 8, "unknown key \"levle\" in log");
    one_err(TLS_OK INBOUND_OK "limits: { max_conn: 1 }\n", 10, 11,
            "unknown key \"max_conn\" in limits; expected one of: max_connections, "
            "handshake_timeout, idle_timeout, header_timeout, backend_timeout, drain_timeout");

    /* A key that is not a string. */
    load_bad(TLS_OK INBOUND_OK "? [a]\n: b\n", 1, &errs);
    expect_err(&errs, 0, 10, 3, "expected a key name at the top level, got a sequence");
    config_errors_clear(&errs);
}

static void
test_duplicate_keys(void **state)
{
    one_err(TLS_OK INBOUND_OK "    mode: outbound\n", 10, 5,
            "duplicate key \"mode\" in listeners[0] (in); the first is at 7:5");
    (void)state;
}

static void
test_not_supported_yet(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = load_ok("admin:\n"
                  "  listen: \"127.0.0.1:9901\"\n"
                  "user: ferry\n"
                  "workers: auto\n" TLS_OK INBOUND_OK "    pool: { max_idle: 64 }\n"
                  "    client_cert_header: xfcc\n"
                  "limits:\n"
                  "  drain_timeout: 30s\n"
                  "  backend_timeout: 60s\n"
                  "  header_timeout: 15s\n");
    /* admin, user, workers, limits.drain_timeout and pool (http, either mode) are accepted. */
    assert_int_equal(cfg->listeners[0].pool_max_idle, 64);
    config_free(cfg);
}

static void
test_wrong_types(void **state)
{
    (void)state;
    one_err("tls: [a]\n" INBOUND_OK, 1, 6, "tls: expected a mapping, got a sequence");
    one_err("tls:\n" INBOUND_OK, 1, 5, "tls: expected a mapping, got nothing");
    one_err(TLS_OK "listeners: {a: b}\n", 5, 12, "listeners: expected a sequence, got a mapping");
    one_err(TLS_OK "listeners:\n  - in\n", 6, 5, "listeners[0]: expected a mapping, got \"in\"");
    one_err(TLS_OK "  cert: [a]\n" INBOUND_OK, 5, 3,
            "duplicate key \"cert\" in tls; the first is at 2:3");
    one_err("tls:\n  cert: [a]\n  key: node.key\n  ca: ca.crt\n" INBOUND_OK, 2, 9,
            "tls.cert: expected a file path, got a sequence");
    one_err(TLS_OK "  verify_depth: four\n" INBOUND_OK, 5, 17,
            "tls.verify_depth: expected an integer from 1 to 32, got \"four\"");
    one_err(TLS_OK "  verify_depth: 33\n" INBOUND_OK, 5, 17,
            "tls.verify_depth: expected an integer from 1 to 32, got \"33\"");
    one_err(TLS_OK "  verify_depth: 0\n" INBOUND_OK, 5, 17, "from 1 to 32, got \"0\"");
    one_err(TLS_OK "  verify_depth: -1\n" INBOUND_OK, 5, 17, "from 1 to 32, got \"-1\"");
    one_err(TLS_OK "  verify_depth: 99999999999999999999999\n" INBOUND_OK, 5, 17,
            "from 1 to 32, got \"99999999999999999999999\"");
    one_err(TLS_OK "  cn_fallback: yes\n" INBOUND_OK, 5, 16,
            "tls.cn_fallback: expected true or false, got \"yes\"");
    one_err(TLS_OK "  session_resumption: On\n" INBOUND_OK, 5, 23,
            "expected true or false, got \"On\"");
    one_err(TLS_OK "  session_resumption: TRUE\n" INBOUND_OK, 5, 23,
            "expected true or false, got \"TRUE\"");
    one_err(TLS_OK "  cn_fallback:\n" INBOUND_OK, 5, 15, "expected true or false, got nothing");
    one_err(TLS_OK INBOUND_OK "    protocol: udp\n", 10, 15,
            "listeners[0].protocol: expected http or tcp, got \"udp\"");
    one_err(TLS_OK INBOUND_OK "    client_cert: optional\n", 10, 18,
            "listeners[0].client_cert: expected required or none, got \"optional\"");
    one_err(TLS_OK INBOUND_OK "log:\n  level: trace\n", 11, 10,
            "log.level: expected error, warn, info or debug, got \"trace\"");
    one_err(TLS_OK INBOUND_OK "log:\n  format: xml\n", 11, 11,
            "log.format: expected text or json, got \"xml\"");
    one_err(TLS_OK INBOUND_OK "log: info\n", 10, 6, "log: expected a mapping, got \"info\"");
    one_err(TLS_OK INBOUND_OK "    name2: x\n", 10, 5, "unknown key \"name2\"");
}

static void
test_listener_values(void **state)
{
    (void)state;
    one_err(TLS_OK "listeners:\n"
                   "  - name: \"a b\"\n"
                   "    mode: inbound\n"
                   "    listen: 0.0.0.0:6984\n"
                   "    backend: 127.0.0.1:5984\n",
            6, 11,
            "listeners[0].name: expected a name of letters, digits, \"_\", \".\" and \"-\", got "
            "\"a b\"");
    one_err(TLS_OK "listeners:\n"
                   "  - name: in\n"
                   "    mode: both\n"
                   "    listen: 0.0.0.0:6984\n",
            7, 11, "listeners[0].mode: expected inbound or outbound, got \"both\"");
    one_err(TLS_OK "listeners:\n"
                   "  - name: in\n"
                   "    mode: inbound\n"
                   "    listen: localhost:6984\n"
                   "    backend: 127.0.0.1:5984\n",
            8, 13,
            "listeners[0].listen: expected an IP address like 127.0.0.1 or [::1], got the name "
            "\"localhost\"");
    one_err(TLS_OK "listeners:\n"
                   "  - name: in\n"
                   "    mode: inbound\n"
                   "    listen: 0.0.0.0:0\n"
                   "    backend: 127.0.0.1:5984\n",
            8, 13, "listeners[0].listen: expected a port from 1 to 65535, got \"0\"");
    one_err(TLS_OK "listeners:\n"
                   "  - name: in\n"
                   "    mode: inbound\n"
                   "    listen: 0.0.0.0:6984\n"
                   "    backend: 127.0.0.1\n",
            9, 14, "listeners[0].backend: expected host:port, got \"127.0.0.1\" (no port)");
    one_err(TLS_OK "listeners:\n"
                   "  - name: out\n"
                   "    mode: outbound\n"
                   "    listen: 127.0.0.1:7001\n"
                   "    peer: node2.example.org:6984\n"
                   "    connect: node2.example.org:6984\n",
            10, 14, "listeners[0].connect: expected an IP address like 127.0.0.1");
    one_err(TLS_OK "listeners:\n"
                   "  - name: out\n"
                   "    mode: outbound\n"
                   "    listen: 127.0.0.1:7001\n"
                   "    peer: node2_example.org:6984\n",
            9, 11,
            "listeners[0].peer: expected an IP address or a host name, got \"node2_example.org\"");
}

static void
test_allow_entries(void **state)
{
    (void)state;
    one_err(TLS_OK INBOUND_OK "    allow: [good.example.org, \"*.ok.example\", \"bad name\"]\n", 10,
            47,
            "listeners[0].allow[2]: expected a host name, a *.domain wildcard, an IP address or a "
            "spiffe:// ID, "
            "got \"bad name\"");
    one_err(TLS_OK INBOUND_OK "    allow: [\"*\"]\n", 10, 13, "got \"*\"");
    one_err(TLS_OK INBOUND_OK "    allow: [\"a.*.example\"]\n", 10, 13, "got \"a.*.example\"");
    one_err(TLS_OK INBOUND_OK "    allow: []\n", 10, 12,
            "listeners[0].allow: expected at least one name, got an empty sequence");
    one_err(TLS_OK INBOUND_OK "    allow: node2.example.org\n", 10, 12,
            "listeners[0].allow: expected a sequence, got \"node2.example.org\"");
    one_err(TLS_OK INBOUND_OK "    allow: [[a]]\n", 10, 13,
            "listeners[0].allow[0]: expected a host name, a *.domain wildcard, an IP address or a "
            "spiffe:// ID, "
            "got a sequence");
}

/* allow: takes SPIFFE IDs, exact or with a last "*" segment; each rule has its own error. */
static void
test_allow_spiffe(void **state)
{
    static const struct {
        const char *entry;
        const char *why;
    } bad[] = {
        {"SPIFFE://td/x", "the scheme must be spiffe, in lower case"},
        {"https://td/x", "the scheme must be spiffe, in lower case"},
        {"spiffe://TD.example.org/x", "the trust domain must be lower case"},
        {"spiffe://td:8443/x", "a SPIFFE ID has no port in its trust domain"},
        {"spiffe://user@td/x", "a SPIFFE ID has no user info (@) in its trust domain"},
        {"spiffe://td!/x", "the trust domain may hold only a-z, 0-9, '.', '-' and '_'"},
        {"spiffe:///x", "the trust domain is empty"},
        {"spiffe://", "the trust domain is empty"},
        {"spiffe://td/ns/db/", "a SPIFFE ID does not end in '/'"},
        {"spiffe://td/", "a SPIFFE ID does not end in '/'"},
        {"spiffe://td/ns//db", "a SPIFFE ID has no empty path segment (//)"},
        {"spiffe://td/ns/../db", "a SPIFFE ID has no \".\" or \"..\" path segment"},
        {"spiffe://td/ns/./db", "path segment"},
        {"spiffe://td/ns/db?x=1", "a SPIFFE ID has no query (?) or fragment (#)"},
        {"spiffe://td/ns/db#f", "a SPIFFE ID has no query (?) or fragment (#)"},
        {"spiffe://td/ns/d%62", "no percent-encoding (%)"},
        {"spiffe://td/ns/d b", "a path segment may hold only A-Z, a-z, 0-9, '.', '-' and '_'"},
        {"spiffe://td/ns/db*", "'*' may stand only for the whole last path segment"},
        {"spiffe://td/*/db", "'*' may stand only for the whole last path segment"},
        {"spiffe://*.td/db", "the trust domain may hold only"},
        {"spiffe://a..b/x", "the trust domain has an empty label"},
        {"spiffe://.td/x", "the trust domain has an empty label"},
        {"spiffe://td./x", "the trust domain has an empty label"},
        {"spiffe://.", "the trust domain has an empty label"},
        {"spiffe://site.example.org", "a trust domain alone names no workload"},
    };
    char yaml[4096], sub[512];
    struct config *cfg;
    char long_id[2100];

    (void)state;
    cfg = load_ok(TLS_OK INBOUND_OK "    allow: [node2.example.org, "
                                    "\"spiffe://site-b.example.org/ns/db/*\", "
                                    "\"spiffe://site-b.example.org/ns/Ops_1.x-y/admin\", "
                                    "\"spiffe://site-b.example.org/*\"]\n");
    assert_int_equal(cfg->listeners[0].n_allow, 4);
    assert_string_equal(cfg->listeners[0].allow[1], "spiffe://site-b.example.org/ns/db/*");
    config_free(cfg);

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(yaml, sizeof(yaml), "%s%s    allow: [a.example, \"%s\"]\n", TLS_OK, INBOUND_OK,
                 bad[i].entry);
        snprintf(sub, sizeof(sub),
                 "listeners[0].allow[1]: expected a SPIFFE ID (spiffe://trust-domain/path, or "
                 ".../* for one more path segment), got \"%s\": ",
                 bad[i].entry);
        print_message("%s\n", bad[i].entry);
        one_err(yaml, 10, 24, sub);
        one_err(yaml, 10, 24, bad[i].why);
    }

    /* 2048 bytes is the most a SPIFFE ID may have */
    memcpy(long_id, "spiffe://td/", 12);
    memset(long_id + 12, 'a', 2048 - 12);
    long_id[2048] = '\0';
    snprintf(yaml, sizeof(yaml), "%s%s    allow: [\"%s\"]\n", TLS_OK, INBOUND_OK, long_id);
    config_free(load_ok(yaml));
    long_id[2048] = 'a';
    long_id[2049] = '\0';
    snprintf(yaml, sizeof(yaml), "%s%s    allow: [\"%s\"]\n", TLS_OK, INBOUND_OK, long_id);
    one_err(yaml, 10, 13, "a SPIFFE ID is at most 2048 bytes");

    /* the same rules, as a pure function */
    assert_null(config_check_spiffe_problem("spiffe://td/ns/db/x", false));
    assert_non_null(config_check_spiffe_problem("spiffe://td/ns/db/*", false));
    assert_null(config_check_spiffe_problem("spiffe://td/ns/db/*", true));
    assert_non_null(config_check_spiffe_problem("spiffe://td", false));
    assert_non_null(config_check_spiffe_problem("spiffe://td", true));
    assert_non_null(config_check_spiffe_problem("spiffe://a..b/x", false));
    assert_null(config_check_spiffe_problem("spiffe://a.b/x", false));
    assert_null(config_check_spiffe_problem("spiffe://td/*", true));
    assert_non_null(config_check_spiffe_problem("node2.example.org", false));
}

static void
test_missing_required(void **state)
{
    struct config_errors errs;

    (void)state;
    one_err(TLS_OK, 1, 1, "missing required key \"listeners\" at the top level");
    one_err(TLS_OK "listeners: []\n", 5, 12,
            "listeners: expected at least one listener, got an empty sequence");
    one_err(TLS_OK "listeners:\n"
                   "  - name: in\n"
                   "    listen: 0.0.0.0:6984\n",
            6, 5, "missing required key \"mode\" in listeners[0] (in)");
    one_err(TLS_OK "listeners:\n"
                   "  - mode: inbound\n"
                   "    listen: 0.0.0.0:6984\n"
                   "    backend: 127.0.0.1:5984\n",
            6, 5, "missing required key \"name\" in listeners[0]");
    one_err(TLS_OK "listeners:\n"
                   "  - name: in\n"
                   "    mode: inbound\n"
                   "    listen: 0.0.0.0:6984\n",
            6, 5, "missing required key \"backend\" in listeners[0] (in)");
    one_err(TLS_OK "listeners:\n"
                   "  - name: out\n"
                   "    mode: outbound\n"
                   "    listen: 0.0.0.0:7001\n",
            6, 5, "missing required key \"peer\" in listeners[0] (out)");

    /* An empty listener mapping: three missing keys, all at the mapping. */
    load_bad(TLS_OK "listeners:\n  - {}\n", 3, &errs);
    expect_err(&errs, 0, 6, 5, "missing required key \"name\"");
    expect_err(&errs, 1, 6, 5, "missing required key \"mode\"");
    expect_err(&errs, 2, 6, 5, "missing required key \"listen\"");
    config_errors_clear(&errs);
}

static void
test_mode_keys(void **state)
{
    static const char out[] = TLS_OK "listeners:\n"
                                     "  - name: out\n"
                                     "    mode: outbound\n"
                                     "    listen: 127.0.0.1:7001\n"
                                     "    peer: node2.example.org:6984\n";
    char yaml[1024];
    struct config_errors errs;

    (void)state;
    snprintf(yaml, sizeof(yaml), "%s    backend: 127.0.0.1:5984\n", out);
    one_err(yaml, 10, 5,
            "backend applies only to inbound listeners; an outbound listener uses peer");
    snprintf(yaml, sizeof(yaml), "%s    client_cert: none\n", out);
    one_err(yaml, 10, 5, "client_cert applies only to inbound listeners");
    snprintf(yaml, sizeof(yaml), "%s    allow: [a.example]\n", out);
    one_err(yaml, 10, 5, "allow applies only to inbound listeners");
    one_err(TLS_OK INBOUND_OK "    peer: node2.example.org:6984\n", 10, 5,
            "peer applies only to outbound listeners; an inbound listener uses backend");
    one_err(TLS_OK INBOUND_OK "    connect: 10.1.2.3:6984\n", 10, 5,
            "connect applies only to outbound listeners");

    /* A bad mode: no mode-specific errors on top of it. */
    load_bad(TLS_OK "listeners:\n"
                    "  - name: x\n"
                    "    mode: sideways\n"
                    "    listen: 127.0.0.1:7001\n"
                    "    peer: a.example:1\n"
                    "    backend: 127.0.0.1:2\n",
             1, &errs);
    expect_err(&errs, 0, 7, 11, "expected inbound or outbound");
    config_errors_clear(&errs);
}

static void
test_missing_tls(void **state)
{
    static const char two[] = "listeners:\n"
                              "  - name: in\n"
                              "    mode: inbound\n"
                              "    listen: 0.0.0.0:6984\n"
                              "    backend: 127.0.0.1:5984\n"
                              "    tls: { cert: node.crt, key: node.key, ca: ca.crt }\n"
                              "  - name: to-node2\n"
                              "    mode: outbound\n"
                              "    listen: 127.0.0.1:7001\n"
                              "    peer: node2.example.org:6984\n";
    struct config_errors errs;
    struct config *cfg;

    (void)state;
    load_bad(two, 3, &errs);
    expect_err(&errs, 0, 7, 5,
               "listeners[1] (to-node2): no tls.cert: set it under tls: or in the listener's "
               "tls:");
    expect_err(&errs, 1, 7, 5, "listeners[1] (to-node2): no tls.key:");
    expect_err(&errs, 2, 7, 5, "listeners[1] (to-node2): no tls.ca: set it under tls:");
    config_errors_clear(&errs);

    /* ca is required for inbound with client_cert: required (the default)... */
    one_err("tls: { cert: node.crt, key: node.key }\n" INBOUND_OK, 3, 5,
            "listeners[0] (in): no tls.ca: set it under tls: or in the listener's tls: (an "
            "inbound listener with client_cert: required verifies clients against it)");
    /* ...and not with client_cert: none. */
    cfg = load_ok("tls: { cert: node.crt, key: node.key }\n" INBOUND_OK "    client_cert: none\n");
    config_free(cfg);

    /* A tls.cert that is set but unreadable is one error, not two. */
    one_err("tls: { cert: nope.crt, key: node.key, ca: ca.crt }\n" INBOUND_OK, 1, 14,
            "tls.cert: cannot read nope.crt: No such file or directory");
}

static void
test_files(void **state)
{
    struct config_errors errs;

    (void)state;
    one_err("tls:\n"
            "  cert: /nonexistent/ferry/node.crt\n"
            "  key: node.key\n"
            "  ca: ca.crt\n" INBOUND_OK,
            2, 9, "tls.cert: cannot read /nonexistent/ferry/node.crt: No such file or directory");
    one_err(TLS_OK "  crl: a-directory\n" INBOUND_OK, 5, 8,
            "tls.crl: expected a file, got the directory a-directory");
    one_err(TLS_OK "  crl: \"\"\n" INBOUND_OK, 5, 8,
            "tls.crl: cannot read : No such file or directory");
    one_err(TLS_OK INBOUND_OK "    tls:\n      key_passphrase_file: nope.pass\n", 11, 28,
            "listeners[0].tls.key_passphrase_file: cannot read nope.pass: No such file");

    /* Unreadable (root reads everything, so only as another user). */
    if (geteuid() != 0) {
        write_file("unreadable.key", "x\n");
        assert_int_equal(chmod("unreadable.key", 0), 0);
        load_bad("tls:\n  cert: node.crt\n  key: unreadable.key\n  ca: ca.crt\n" INBOUND_OK, 1,
                 &errs);
        expect_err(&errs, 0, 3, 8, "tls.key: cannot read unreadable.key: Permission denied");
        config_errors_clear(&errs);
    }
}

static void
test_limits(void **state)
{
    (void)state;
    one_err(TLS_OK INBOUND_OK "limits:\n  handshake_timeout: 10 seconds\n", 11, 22,
            "limits.handshake_timeout: expected a duration like 10s or 500ms, got \"10 seconds\"");
    one_err(TLS_OK INBOUND_OK "limits:\n  idle_timeout: 0s\n", 11, 17,
            "limits.idle_timeout: expected a duration greater than 0, got \"0s\"");
    one_err(TLS_OK INBOUND_OK "limits:\n  idle_timeout: 0\n", 11, 17,
            "expected a duration greater than 0, got \"0\"");
    one_err(TLS_OK INBOUND_OK "limits:\n  idle_timeout: -5s\n", 11, 17,
            "expected a duration like 10s or 500ms, got \"-5s\"");
    one_err(TLS_OK INBOUND_OK "limits:\n  max_connections: 0\n", 11, 20,
            "limits.max_connections: expected an integer from 1 to 1000000, got \"0\"");
    one_err(TLS_OK INBOUND_OK "limits:\n  max_connections: 1000001\n", 11, 20,
            "expected an integer from 1 to 1000000, got \"1000001\"");
    one_err(TLS_OK INBOUND_OK "limits:\n  max_connections: 1e4\n", 11, 20, "got \"1e4\"");
    one_err(TLS_OK INBOUND_OK "limits:\n  header_timeout: 0s\n", 11, 19,
            "limits.header_timeout: expected a duration greater than 0, got \"0s\"");
    one_err(TLS_OK INBOUND_OK "limits:\n  header_timeout: 15\n", 11, 19,
            "limits.header_timeout: expected a duration like 10s or 500ms, got \"15\"");
    one_err(TLS_OK INBOUND_OK "limits:\n  backend_timeout: 1 min\n", 11, 20,
            "limits.backend_timeout: expected a duration like 10s or 500ms, got \"1 min\"");
    one_err(TLS_OK INBOUND_OK "limits:\n  backend_timeout: 0\n", 11, 20,
            "limits.backend_timeout: expected a duration greater than 0, got \"0\"");
}

/* ---- operations keys: admin, user, limits.drain_timeout (CONTRACT §3, §9) ---- */

static void
test_ops_keys(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = load_ok(TLS_OK INBOUND_OK "admin:\n"
                                    "  listen: \"127.0.0.1:9901\"\n"
                                    "user: ferry\n"
                                    "limits:\n"
                                    "  drain_timeout: 90s\n");
    assert_true(cfg->admin.enabled);
    assert_string_equal(cfg->admin.listen.host, "127.0.0.1");
    assert_int_equal(cfg->admin.listen.port, 9901);
    assert_true(cfg->admin.listen.is_ip);
    assert_false(cfg->admin.listen.is_ipv6);
    assert_string_equal(cfg->user, "ferry");
    assert_int_equal(cfg->user_pos.line, 12);
    assert_int_equal(cfg->user_pos.col, 7);
    assert_int_equal(cfg->limits.drain_timeout_ms, 90000);
    /* The other limits keep their defaults. */
    assert_int_equal(cfg->limits.idle_timeout_ms, 300000);
    config_free(cfg);

    /* IPv6, a flow mapping, 500ms, and the other characters of a user name. */
    cfg = load_ok(TLS_OK INBOUND_OK "admin: { listen: \"[::1]:9901\" }\n"
                                    "user: _ferry-2.svc\n"
                                    "limits: { drain_timeout: 500ms }\n");
    assert_true(cfg->admin.enabled);
    assert_string_equal(cfg->admin.listen.host, "::1");
    assert_true(cfg->admin.listen.is_ipv6);
    assert_int_equal(cfg->admin.probe_interval_ms, 5000); /* the default */
    assert_string_equal(cfg->user, "_ferry-2.svc");
    assert_int_equal(cfg->limits.drain_timeout_ms, 500);
    config_free(cfg);

    /* Same port as a listener on another address: no conflict. */
    cfg = load_ok(TLS_OK "listeners:\n"
                         "  - name: in\n"
                         "    mode: inbound\n"
                         "    listen: \"127.0.0.2:6984\"\n"
                         "    backend: \"127.0.0.1:5984\"\n"
                         "admin:\n"
                         "  listen: \"127.0.0.1:6984\"\n");
    assert_true(cfg->admin.enabled);
    config_free(cfg);
}

/* admin.probe_interval: a duration from 100ms to 1h, default 5s (CONTRACT §3). */
static void
test_admin_probe_interval(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = load_ok(TLS_OK INBOUND_OK "admin:\n"
                                    "  listen: \"127.0.0.1:9901\"\n"
                                    "  probe_interval: 1s\n");
    assert_int_equal(cfg->admin.probe_interval_ms, 1000);
    config_free(cfg);
    /* The bounds themselves are accepted. */
    cfg =
        load_ok(TLS_OK INBOUND_OK "admin: { listen: \"127.0.0.1:9901\", probe_interval: 100ms }\n");
    assert_int_equal(cfg->admin.probe_interval_ms, 100);
    config_free(cfg);
    cfg = load_ok(TLS_OK INBOUND_OK "admin: { listen: \"127.0.0.1:9901\", probe_interval: 1h }\n");
    assert_int_equal(cfg->admin.probe_interval_ms, 3600000);
    config_free(cfg);
    /* Without admin: the default, unused. */
    cfg = load_ok(TLS_OK INBOUND_OK);
    assert_int_equal(cfg->admin.probe_interval_ms, 5000);
    config_free(cfg);

    one_err(TLS_OK INBOUND_OK "admin:\n  listen: \"127.0.0.1:9901\"\n  probe_interval: 99ms\n", 12,
            19, "admin.probe_interval: expected a duration from 100ms to 1h, got \"99ms\"");
    one_err(TLS_OK INBOUND_OK "admin:\n  listen: \"127.0.0.1:9901\"\n  probe_interval: 61m\n", 12,
            19, "admin.probe_interval: expected a duration from 100ms to 1h, got \"61m\"");
    one_err(TLS_OK INBOUND_OK "admin:\n  listen: \"127.0.0.1:9901\"\n  probe_interval: 0s\n", 12,
            19, "admin.probe_interval: expected a duration greater than 0, got \"0s\"");
    one_err(TLS_OK INBOUND_OK "admin:\n  listen: \"127.0.0.1:9901\"\n  probe_interval: 5\n", 12, 19,
            "admin.probe_interval: expected a duration like 10s or 500ms, got \"5\"");
    one_err(TLS_OK INBOUND_OK "admin:\n  listen: \"127.0.0.1:9901\"\n  probe_interval: [1s]\n", 12,
            19, "admin.probe_interval: expected a duration like 10s or 500ms, got a sequence");
}

static void
test_admin_errors(void **state)
{
    struct config_errors errs;

    (void)state;
    one_err(TLS_OK INBOUND_OK "admin: \"127.0.0.1:9901\"\n", 10, 8,
            "admin: expected a mapping, got \"127.0.0.1:9901\"");
    one_err(TLS_OK INBOUND_OK "admin: [a]\n", 10, 8, "admin: expected a mapping, got a sequence");
    one_err(TLS_OK INBOUND_OK "admin:\n", 10, 7, "admin: expected a mapping, got nothing");
    one_err(TLS_OK INBOUND_OK "admin: {}\n", 10, 8, "missing required key \"listen\" in admin");
    one_err(TLS_OK INBOUND_OK "admin:\n  listen: \"127.0.0.1:9901\"\n  metrics: true\n", 12, 3,
            "unknown key \"metrics\" in admin; expected one of: listen, probe_interval");

    /* A key other than listen alone: both errors, unknown key first. */
    load_bad(TLS_OK INBOUND_OK "admin:\n  port: 9901\n", 2, &errs);
    expect_err(&errs, 0, 11, 3,
               "unknown key \"port\" in admin; expected one of: listen, probe_interval");
    expect_err(&errs, 1, 11, 3, "missing required key \"listen\" in admin");
    config_errors_clear(&errs);

    one_err(TLS_OK INBOUND_OK "admin:\n  listen: \"127.0.0.1:99999\"\n", 11, 11,
            "admin.listen: expected a port from 1 to 65535, got \"99999\"");
    one_err(TLS_OK INBOUND_OK "admin:\n  listen: \"127.0.0.1\"\n", 11, 11,
            "admin.listen: expected host:port, got \"127.0.0.1\" (no port)");
    one_err(TLS_OK INBOUND_OK "admin:\n  listen: \"localhost:9901\"\n", 11, 11,
            "admin.listen: expected an IP address like 127.0.0.1 or [::1], got the name "
            "\"localhost\" (host names are not allowed here)");
    one_err(TLS_OK INBOUND_OK "admin:\n  listen:\n", 11, 10,
            "admin.listen: expected an IP address and port like 127.0.0.1:7001, got nothing");

    /* The admin port collides with a listener's: positioned at admin.listen. */
    one_err(TLS_OK INBOUND_OK "admin:\n  listen: \"127.0.0.1:6984\"\n", 11, 11,
            "admin.listen: 127.0.0.1:6984 conflicts with 0.0.0.0:6984 of listeners[0] (in) at "
            "8:13; the admin listener needs its own port");
    one_err(TLS_OK INBOUND_OK "admin: { listen: \"[::]:6984\" }\n", 10, 18,
            "admin.listen: [::]:6984 conflicts with 0.0.0.0:6984 of listeners[0] (in)");

    /* Colliding with two listeners: one error, about the first. */
    load_bad(TLS_OK "listeners:\n"
                    "  - name: a\n"
                    "    mode: inbound\n"
                    "    listen: \"127.0.0.1:7000\"\n"
                    "    backend: \"127.0.0.1:5984\"\n"
                    "  - name: b\n"
                    "    mode: inbound\n"
                    "    listen: \"127.0.0.2:7000\"\n"
                    "    backend: \"127.0.0.1:5984\"\n"
                    "admin:\n"
                    "  listen: \"0.0.0.0:7000\"\n",
             1, &errs);
    expect_err(&errs, 0, 15, 11,
               "admin.listen: 0.0.0.0:7000 conflicts with 127.0.0.1:7000 of listeners[0] (a) at "
               "8:13");
    config_errors_clear(&errs);

    /* A listener with a bad listen is not compared (only its own error). */
    one_err(TLS_OK "listeners:\n"
                   "  - name: in\n"
                   "    mode: inbound\n"
                   "    listen: \"0.0.0.0:0\"\n"
                   "    backend: \"127.0.0.1:5984\"\n"
                   "admin:\n"
                   "  listen: \"127.0.0.1:9901\"\n",
            8, 13, "listeners[0].listen: expected a port from 1 to 65535");
}

static void
test_user_errors(void **state)
{
    static const char expected[] = "user: expected a user name (a letter or \"_\", then letters, "
                                   "digits, \"_\", \".\" and \"-\"), got ";

    (void)state;
    one_err(TLS_OK INBOUND_OK "user: \"\"\n", 10, 7, "user: expected a user name");
    one_err(TLS_OK INBOUND_OK "user: \"\"\n", 10, 7, "got \"\"");
    one_err(TLS_OK INBOUND_OK "user: 1abc\n", 10, 7, expected);
    one_err(TLS_OK INBOUND_OK "user: 1abc\n", 10, 7, "got \"1abc\"");
    one_err(TLS_OK INBOUND_OK "user: \"a b\"\n", 10, 7, "got \"a b\"");
    one_err(TLS_OK INBOUND_OK "user: -ferry\n", 10, 7, "got \"-ferry\"");
    one_err(TLS_OK INBOUND_OK "user: ferry/x\n", 10, 7, "got \"ferry/x\"");
    one_err(TLS_OK INBOUND_OK "user: \"f\\x01\"\n", 10, 7, "got \"f\\x01\"");
    one_err(TLS_OK INBOUND_OK "user:\n", 10, 6, "user: expected a user name");
    one_err(TLS_OK INBOUND_OK "user:\n", 10, 6, "got nothing");
    one_err(TLS_OK INBOUND_OK "user: [ferry]\n", 10, 7, "user: expected a user name");
    one_err(TLS_OK INBOUND_OK "user: { name: ferry }\n", 10, 7, "got a mapping");
}

/* workers: "auto" (0, the default) or 1..256; anything else names the key and the range. */
static void
test_workers(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = load_ok(TLS_OK INBOUND_OK);
    assert_int_equal(cfg->workers, 0);
    config_free(cfg);
    cfg = load_ok(TLS_OK INBOUND_OK "workers: auto\n");
    assert_int_equal(cfg->workers, 0);
    config_free(cfg);
    cfg = load_ok(TLS_OK INBOUND_OK "workers: 3\n");
    assert_int_equal(cfg->workers, 3);
    config_free(cfg);
    cfg = load_ok(TLS_OK INBOUND_OK "workers: 256\n");
    assert_int_equal(cfg->workers, 256);
    config_free(cfg);
    one_err(TLS_OK INBOUND_OK "workers: 0\n", 10, 10,
            "workers: expected an integer from 1 to 256, got \"0\"");
    one_err(TLS_OK INBOUND_OK "workers: 257\n", 10, 10, "got \"257\"");
    one_err(TLS_OK INBOUND_OK "workers: many\n", 10, 10,
            "workers: expected \"auto\" or an integer from 1 to 256, got \"many\"");
    one_err(TLS_OK INBOUND_OK "workers: -1\n", 10, 10, "got \"-1\"");
    one_err(TLS_OK INBOUND_OK "workers: [2]\n", 10, 10, "workers: expected \"auto\" or an");
}

static void
test_drain_timeout_errors(void **state)
{
    (void)state;
    one_err(TLS_OK INBOUND_OK "limits:\n  drain_timeout: 0s\n", 11, 18,
            "limits.drain_timeout: expected a duration greater than 0, got \"0s\"");
    one_err(TLS_OK INBOUND_OK "limits:\n  drain_timeout: 0\n", 11, 18,
            "limits.drain_timeout: expected a duration greater than 0, got \"0\"");
    one_err(TLS_OK INBOUND_OK "limits:\n  drain_timeout: abc\n", 11, 18,
            "limits.drain_timeout: expected a duration like 10s or 500ms, got \"abc\"");
    one_err(TLS_OK INBOUND_OK "limits:\n  drain_timeout: 30\n", 11, 18,
            "limits.drain_timeout: expected a duration like 10s or 500ms, got \"30\"");
    one_err(TLS_OK INBOUND_OK "limits:\n  drain_timeout:\n", 11, 17,
            "limits.drain_timeout: expected a duration like 10s or 500ms, got nothing");
}

static void
test_duplicate_listeners(void **state)
{
    static const char head[] = TLS_OK "listeners:\n"
                                      "  - name: a\n"
                                      "    mode: inbound\n"
                                      "    listen: %s\n"
                                      "    backend: 127.0.0.1:5984\n"
                                      "  - name: %s\n"
                                      "    mode: inbound\n"
                                      "    listen: %s\n"
                                      "    backend: 127.0.0.1:5984\n";
    static const struct {
        const char *a;
        const char *b;
        bool conflict;
    } cases[] = {
        {"127.0.0.1:6984", "127.0.0.1:6984", true},  {"0.0.0.0:6984", "127.0.0.1:6984", true},
        {"127.0.0.1:6984", "0.0.0.0:6984", true},    {"\"[::]:6984\"", "127.0.0.1:6984", true},
        {"\"[::1]:6984\"", "\"[::]:6984\"", true},   {"\"[::1]:6984\"", "\"[0::1]:6984\"", true},
        {"127.0.0.1:6984", "127.0.0.2:6984", false}, {"127.0.0.1:6984", "\"[::1]:6984\"", false},
        {"0.0.0.0:6984", "0.0.0.0:6985", false},
    };
    char yaml[1024];
    struct config_errors errs;
    struct config *cfg;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(yaml, sizeof(yaml), head, cases[i].a, "b", cases[i].b);
        if (cases[i].conflict) {
            one_err(yaml, 12, 13, "listeners[1].listen: ");
            load_bad(yaml, 1, &errs);
            assert_non_null(strstr(errs.v[0].msg, "of listeners[0] (a) at 8:13; each listener "
                                                  "needs its own port"));
            config_errors_clear(&errs);
        } else {
            cfg = load_ok(yaml);
            config_free(cfg);
        }
    }

    /* Same name, different ports. */
    snprintf(yaml, sizeof(yaml), head, "127.0.0.1:1", "a", "127.0.0.1:2");
    one_err(yaml, 10, 11,
            "listeners[1].name: duplicate listener name \"a\"; listeners[0] at 6:11 already has "
            "it");

    /* Same name and same port: two errors. */
    snprintf(yaml, sizeof(yaml), head, "127.0.0.1:1", "a", "127.0.0.1:1");
    load_bad(yaml, 2, &errs);
    expect_err(&errs, 0, 10, 11, "duplicate listener name \"a\"");
    expect_err(&errs, 1, 12, 13,
               "listeners[1].listen: 127.0.0.1:1 conflicts with 127.0.0.1:1 of listeners[0] (a)");
    config_errors_clear(&errs);
}

/* Three unrelated mistakes give three errors, in file order. */
static void
test_all_errors_at_once(void **state)
{
    struct config_errors errs;

    (void)state;
    load_bad("tls:\n"
             "  cert: node.crt\n"
             "  key: node.key\n"
             "  ca: ca.crt\n"
             "  verify_depth: 64\n"
             "listeners:\n"
             "  - name: in\n"
             "    mode: inbound\n"
             "    listen: \"0.0.0.0:65536\"\n"
             "    backend: \"127.0.0.1:5984\"\n"
             "limits:\n"
             "  idle_timeout: 5 min\n",
             3, &errs);
    expect_err(&errs, 0, 5, 17, "tls.verify_depth: expected an integer from 1 to 32, got \"64\"");
    expect_err(&errs, 1, 9, 13,
               "listeners[0].listen: expected a port from 1 to 65535, got \"65536\"");
    expect_err(&errs, 2, 12, 17, "limits.idle_timeout: expected a duration like 10s or 500ms");
    config_errors_clear(&errs);

    /* Errors append to a list that already holds some. */
    load_bad("x: 1\n", 2, &errs);
    assert_null(config_load_string("u.yaml", "y: 1\n", 5, &errs));
    assert_int_equal(errs.n, 4);
    assert_string_equal(errs.v[2].file, "u.yaml");
    config_errors_clear(&errs);
}

/* ---- protocol http keys (CONTRACT §6, §7) ---- */

/* Every key of §6/§7 on a good file: parsed values, positions and defaults. */
static void
test_http_keys(void **state)
{
    static const char yaml[] =
        TLS_OK "listeners:\n"
               "  - name: from-peers\n"
               "    mode: inbound\n"
               "    listen: 0.0.0.0:6984\n"
               "    backend: 127.0.0.1:5984\n"
               "    protocol: http\n"
               "    client_cert_header: rfc9440\n"
               "    access:                     # first match wins\n"
               "      - peers: [\"node2.example.org\", \"*.site-b.example.org\"]\n"
               "        allow: replicate\n"
               "        databases: [\"patients\", \"visits*\"]\n"
               "      - peers: [ops.example.org, 10.0.0.7, \"::1\"]\n"
               "        allow: all\n"
               "      - { peers: [\"*.ro.example\"], allow: read, databases: [\"a?c\", \"*\", "
               "\"x(1)+y$_-/z9\"] }\n"
               "      - peers: [w.example]\n"
               "        allow: write\n"
               "    couchdb_proxy_auth:\n"
               "      secret_file: couchdb.secret\n"
               "      hash: sha1\n"
               "      roles: [\"replicator\", \"_admin\", \"r 2\"]\n"
               "  - name: to-node2\n"
               "    mode: outbound\n"
               "    listen: 127.0.0.1:7001\n"
               "    peer: node2.example.org:6984\n"
               "    host_header: peer\n"
               "limits:\n"
               "  header_timeout: 500ms\n"
               "  backend_timeout: 2m\n";
    struct config *cfg;
    const struct config_listener *in;
    const struct config_listener *out;
    const struct config_access_rule *r;

    (void)state;
    cfg = load_ok(yaml);
    assert_int_equal(cfg->limits.header_timeout_ms, 500);
    assert_int_equal(cfg->limits.backend_timeout_ms, 120000);
    assert_non_null(in = config_listener_find(cfg, "from-peers"));
    assert_non_null(out = config_listener_find(cfg, "to-node2"));

    assert_int_equal(in->client_cert_header, CONFIG_CLIENT_CERT_HEADER_RFC9440);
    assert_int_equal(in->n_access, 4);
    r = &in->access[0];
    assert_int_equal(r->pos.line, 13);
    assert_int_equal(r->pos.col, 9);
    assert_int_equal(r->n_peers, 2);
    assert_string_equal(r->peers[0], "node2.example.org");
    assert_string_equal(r->peers[1], "*.site-b.example.org");
    assert_int_equal(r->allow, CONFIG_ALLOW_REPLICATE);
    assert_int_equal(r->n_databases, 2);
    assert_string_equal(r->databases[0], "patients");
    assert_string_equal(r->databases[1], "visits*");
    r = &in->access[1];
    assert_int_equal(r->pos.line, 16);
    assert_int_equal(r->pos.col, 9);
    assert_int_equal(r->n_peers, 3);
    assert_string_equal(r->peers[1], "10.0.0.7");
    assert_string_equal(r->peers[2], "::1");
    assert_int_equal(r->allow, CONFIG_ALLOW_ALL);
    assert_null(r->databases);
    assert_int_equal(r->n_databases, 0);
    r = &in->access[2];
    assert_int_equal(r->pos.line, 18);
    assert_int_equal(r->pos.col, 9);
    assert_int_equal(r->allow, CONFIG_ALLOW_READ);
    assert_int_equal(r->n_databases, 3);
    assert_string_equal(r->databases[0], "a?c");
    assert_string_equal(r->databases[1], "*");
    assert_string_equal(r->databases[2], "x(1)+y$_-/z9");
    r = &in->access[3];
    assert_int_equal(r->pos.line, 19);
    assert_int_equal(r->allow, CONFIG_ALLOW_WRITE);

    assert_true(in->proxy_auth.enabled);
    assert_string_equal(in->proxy_auth.secret_file.path, "couchdb.secret");
    assert_int_equal(in->proxy_auth.secret_file.pos.line, 22);
    assert_int_equal(in->proxy_auth.secret_file.pos.col, 20);
    assert_int_equal(in->proxy_auth.hash, CONFIG_HASH_SHA1);
    assert_int_equal(in->proxy_auth.n_roles, 3);
    assert_string_equal(in->proxy_auth.roles[0], "replicator");
    assert_string_equal(in->proxy_auth.roles[1], "_admin");
    assert_string_equal(in->proxy_auth.roles[2], "r 2");
    assert_int_equal(in->host_header, CONFIG_HOST_HEADER_KEEP);

    assert_int_equal(out->host_header, CONFIG_HOST_HEADER_PEER);
    assert_int_equal(out->client_cert_header, CONFIG_CLIENT_CERT_HEADER_XFCC);
    assert_null(out->access);
    assert_false(out->proxy_auth.enabled);
    config_free(cfg);
}

/* The §6 and §7 examples as written (with a secret file that exists), and the other values. */
static void
test_http_keys_defaults(void **state)
{
    struct config *cfg;
    const struct config_listener *l;

    (void)state;
    cfg = load_ok(TLS_OK INBOUND_OK
                  "    couchdb_proxy_auth:\n"
                  "      secret_file: couchdb.secret   # CouchDB's [chttpd_auth] secret\n"
                  "      hash: sha256                # sha256 (CouchDB >= 3.3.2) | sha1\n"
                  "      roles: [\"replicator\"]       # sent as X-Auth-CouchDB-Roles\n"
                  "    access:                     # first match wins\n"
                  "      - peers: [\"node2.example.org\", \"*.site-b.example.org\"]\n"
                  "        allow: replicate        # replicate | read | write | all\n"
                  "        databases: [\"patients\", \"visits*\"]   # globs\n"
                  "      - peers: [\"ops.example.org\"]\n"
                  "        allow: all\n"
                  "    client_cert_header: none\n");
    l = &cfg->listeners[0];
    assert_int_equal(l->proxy_auth.hash, CONFIG_HASH_SHA256);
    assert_int_equal(l->proxy_auth.n_roles, 1);
    assert_int_equal(l->n_access, 2);
    assert_int_equal(l->client_cert_header, CONFIG_CLIENT_CERT_HEADER_NONE);
    config_free(cfg);

    /* hash defaults to sha256; roles: [] is no roles; client_cert_header: xfcc. */
    cfg = load_ok(TLS_OK INBOUND_OK "    couchdb_proxy_auth: { secret_file: couchdb.secret, "
                                    "roles: [] }\n"
                                    "    client_cert_header: xfcc\n");
    l = &cfg->listeners[0];
    assert_true(l->proxy_auth.enabled);
    assert_int_equal(l->proxy_auth.hash, CONFIG_HASH_SHA256);
    assert_null(l->proxy_auth.roles);
    assert_int_equal(l->proxy_auth.n_roles, 0);
    assert_int_equal(l->client_cert_header, CONFIG_CLIENT_CERT_HEADER_XFCC);
    config_free(cfg);

    /* host_header: keep, written out, on an outbound listener with protocol: http. */
    cfg = load_ok(TLS_OK "listeners:\n"
                         "  - name: out\n"
                         "    mode: outbound\n"
                         "    listen: 127.0.0.1:7001\n"
                         "    peer: node2.example.org:6984\n"
                         "    protocol: http\n"
                         "    host_header: keep\n");
    assert_int_equal(cfg->listeners[0].host_header, CONFIG_HOST_HEADER_KEEP);
    config_free(cfg);

    /* A secret file readable by its owner only: 0400 is as good as 0600. */
    write_file_mode("secret-0400", "s", 0400);
    cfg = load_ok(TLS_OK INBOUND_OK "    couchdb_proxy_auth: { secret_file: secret-0400 }\n");
    config_free(cfg);
}

static void
test_access_errors(void **state)
{
    struct config_errors errs;

    (void)state;
    one_err(TLS_OK INBOUND_OK "    access: []\n", 10, 13,
            "listeners[0].access: expected at least one rule, got an empty sequence; remove "
            "access: to let every verified peer do anything");
    one_err(TLS_OK INBOUND_OK "    access: replicate\n", 10, 13,
            "listeners[0].access: expected a sequence, got \"replicate\"");
    one_err(TLS_OK INBOUND_OK "    access: [replicate]\n", 10, 14,
            "listeners[0].access[0]: expected a mapping, got \"replicate\"");
    one_err(TLS_OK INBOUND_OK "    access:\n      - allow: read\n", 11, 9,
            "missing required key \"peers\" in listeners[0].access[0]");
    one_err(TLS_OK INBOUND_OK "    access:\n      - peers: [a.example]\n", 11, 9,
            "missing required key \"allow\" in listeners[0].access[0]");
    one_err(TLS_OK INBOUND_OK "    access:\n"
                              "      - peers: [a.example]\n"
                              "        allow: read\n"
                              "        database: [x]\n",
            13, 9,
            "unknown key \"database\" in listeners[0].access[0]; expected one of: peers, allow, "
            "databases");

    /* peers */
    one_err(TLS_OK INBOUND_OK "    access:\n      - peers: []\n        allow: read\n", 11, 16,
            "listeners[0].access[0].peers: expected at least one name, got an empty sequence");
    one_err(TLS_OK INBOUND_OK "    access:\n      - peers: a.example\n        allow: read\n", 11,
            16, "listeners[0].access[0].peers: expected a sequence, got \"a.example\"");
    one_err(TLS_OK INBOUND_OK "    access:\n      - peers: [\"bad name\"]\n        allow: read\n",
            11, 17,
            "listeners[0].access[0].peers[0]: expected a host name, a *.domain wildcard, an IP "
            "address or a spiffe:// ID, got \"bad name\"");
    one_err(TLS_OK INBOUND_OK "    access:\n      - peers: [\"*\"]\n        allow: read\n", 11, 17,
            "listeners[0].access[0].peers[0]: expected a host name, a *.domain wildcard, an IP "
            "address or a spiffe:// ID, got \"*\"");
    /* a SPIFFE ID pattern is checked where it is written */
    one_err(TLS_OK INBOUND_OK "    access:\n      - peers: [\"spiffe://td/a/*/b\"]\n"
                              "        allow: read\n",
            11, 17,
            "listeners[0].access[0].peers[0]: expected a SPIFFE ID (spiffe://trust-domain/path, "
            "or .../* for one more path segment), got \"spiffe://td/a/*/b\": '*' may stand only "
            "for the whole last path segment (.../ns/db/*)");

    /* allow */
    one_err(TLS_OK INBOUND_OK "    access:\n      - peers: [a.example]\n        allow: replicat\n",
            12, 16,
            "listeners[0].access[0].allow: expected replicate, replicate-from, replicate-to, "
            "read, write or all, got \"replicat\"");
    one_err(TLS_OK INBOUND_OK "    access:\n      - peers: [a.example]\n        allow: ALL\n", 12,
            16,
            "expected replicate, replicate-from, replicate-to, read, write or all, got \"ALL\"");
    one_err(TLS_OK INBOUND_OK "    access:\n      - peers: [a.example]\n        allow: [read]\n",
            12, 16,
            "listeners[0].access[0].allow: expected replicate, replicate-from, replicate-to, "
            "read, write or all, got a sequence");
    /* the direction is spelt with a '-', in lowercase, and nothing else */
    one_err(TLS_OK INBOUND_OK "    access:\n      - peers: [a.example]\n        allow: "
                              "replicate_from\n",
            12, 16,
            "listeners[0].access[0].allow: expected replicate, replicate-from, replicate-to, "
            "read, write or all, got \"replicate_from\"");
    one_err(TLS_OK INBOUND_OK "    access:\n      - peers: [a.example]\n        allow: "
                              "replicate-To\n",
            12, 16, "got \"replicate-To\"");
    one_err(TLS_OK INBOUND_OK "    access:\n      - peers: [a.example]\n        allow: "
                              "replicate-both\n",
            12, 16, "got \"replicate-both\"");
    one_err(TLS_OK INBOUND_OK "    access:\n      - peers: [a.example]\n        allow: "
                              "\"replicate-from \"\n",
            12, 16, "got \"replicate-from \"");

    /* Two bad rules: both reported, in file order. */
    load_bad(TLS_OK INBOUND_OK "    access:\n"
                               "      - peers: [a.example]\n"
                               "        allow: everything\n"
                               "      - peers: [b.example]\n",
             2, &errs);
    expect_err(&errs, 0, 12, 16, "listeners[0].access[0].allow: expected replicate");
    expect_err(&errs, 1, 13, 9, "missing required key \"allow\" in listeners[0].access[1]");
    config_errors_clear(&errs);
}

/* Every allow: value, each parsed to its enum config_allow. */
static void
test_access_allow_values(void **state)
{
    static const struct {
        const char *text;
        enum config_allow allow;
    } cases[] = {
        {"read", CONFIG_ALLOW_READ},
        {"write", CONFIG_ALLOW_WRITE},
        {"replicate", CONFIG_ALLOW_REPLICATE},
        {"replicate-from", CONFIG_ALLOW_REPLICATE_FROM},
        {"replicate-to", CONFIG_ALLOW_REPLICATE_TO},
        {"all", CONFIG_ALLOW_ALL},
    };
    char yaml[1024];
    struct config *cfg;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(yaml, sizeof(yaml),
                 TLS_OK INBOUND_OK "    access:\n"
                                   "      - peers: [a.example]\n"
                                   "        allow: %s\n"
                                   "        databases: [\"patients\", \"site/**\"]\n"
                                   "      - { peers: [b.example], allow: \"%s\" }\n",
                 cases[i].text, cases[i].text);
        cfg = load_ok(yaml);
        assert_int_equal(cfg->listeners[0].n_access, 2);
        assert_int_equal(cfg->listeners[0].access[0].allow, cases[i].allow);
        assert_int_equal(cfg->listeners[0].access[0].n_databases, 2);
        assert_string_equal(cfg->listeners[0].access[0].databases[1], "site/**");
        assert_int_equal(cfg->listeners[0].access[1].allow, cases[i].allow);
        config_free(cfg);
    }
}

static void
test_access_databases(void **state)
{
#define DB_RULE TLS_OK INBOUND_OK "    access:\n      - peers: [a.example]\n        allow: read\n"
    static const char expected[] =
        "listeners[0].access[0].databases[0]: expected a database name or glob (a lowercase "
        "letter, then lowercase letters, digits and _$()+-/; * and ? as wildcards within a name, "
        "** across /), got ";

    (void)state;
    one_err(DB_RULE "        databases: []\n", 13, 20,
            "listeners[0].access[0].databases: expected at least one database name or glob, got "
            "an empty sequence; remove databases: to cover every database");
    one_err(DB_RULE "        databases: patients\n", 13, 20,
            "listeners[0].access[0].databases: expected a sequence, got \"patients\"");
    one_err(DB_RULE "        databases: [Patients]\n", 13, 21, expected);
    one_err(DB_RULE "        databases: [Patients]\n", 13, 21,
            "got \"Patients\": database names are lowercase (\"P\")");
    one_err(DB_RULE "        databases: [\"*User*\"]\n", 13, 21,
            "got \"*User*\": database names are lowercase (\"U\")");
    one_err(DB_RULE "        databases: [ok, _users]\n", 13, 25,
            "listeners[0].access[0].databases[1]: expected a database name or glob");
    one_err(DB_RULE "        databases: [ok, _users]\n", 13, 25,
            "got \"_users\": a database name starts with a lowercase letter");
    one_err(DB_RULE "        databases: [\"1db\"]\n", 13, 21, "starts with a lowercase letter");
    one_err(DB_RULE "        databases: [\"a b\"]\n", 13, 21,
            "got \"a b\": \" \" cannot appear in a CouchDB database name");
    one_err(DB_RULE "        databases: [\"a.b\"]\n", 13, 21,
            "\".\" cannot appear in a CouchDB database name");
    one_err(DB_RULE "        databases: [\"a\\tb\"]\n", 13, 21,
            "got \"a\\x09b\": \"\\x09\" cannot appear in a CouchDB database name");
    one_err(DB_RULE "        databases: [\"caf\xc3\xa9\"]\n", 13, 21,
            "\"\\xc3\" cannot appear in a CouchDB database name");
    one_err(DB_RULE "        databases: [\"\"]\n", 13, 21,
            "got \"\": a database name cannot be empty");
    one_err(DB_RULE "        databases: [[a]]\n", 13, 21, "got a sequence");
#undef DB_RULE
}

static void
test_db_glob_check(void **state)
{
    static const struct {
        const char *glob;
        const char *why; /* NULL: accepted */
    } cases[] = {
        {"patients", NULL},
        {"visits*", NULL},
        {"*", NULL},
        {"?", NULL},
        {"**", NULL},
        {"*_users", NULL},
        {"a0_$()+-/z", NULL},
        {"?b", NULL},
        {"", "a database name cannot be empty"},
        {"_users", "a database name starts with a lowercase letter"},
        {"0a", "a database name starts with a lowercase letter"},
        {"$a", "a database name starts with a lowercase letter"},
        {"Abc", "database names are lowercase (\"A\")"},
        {"aBc", "database names are lowercase (\"B\")"},
        {"a b", "\" \" cannot appear in a CouchDB database name"},
        {"a,b", "\",\" cannot appear"},
        {"a%2Fb", "\"%\" cannot appear"},
        {"a[bc]", "\"[\" cannot appear"},
        {"a\\b", "\"\\\" cannot appear"},
        {"a\x7f", "\"\\x7f\" cannot appear"},
    };
    char why[128];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc;

        why[0] = '\0';
        rc = config_value_db_glob_check(cases[i].glob, why, sizeof(why));
        if ((rc == 0) != (cases[i].why == NULL) ||
            (cases[i].why != NULL && strstr(why, cases[i].why) == NULL)) {
            print_message("glob \"%s\": rc %d why [%s]\n", cases[i].glob, rc, why);
        }
        assert_int_equal(rc, cases[i].why == NULL ? 0 : -1);
        if (cases[i].why != NULL) {
            assert_non_null(strstr(why, cases[i].why));
        }
    }
}

#define PROXY_AUTH TLS_OK INBOUND_OK "    couchdb_proxy_auth:\n      secret_file: "

static void
test_proxy_auth_secret_file(void **state)
{
    struct config_errors errs;
    char buf[1200];
    size_t i;

    (void)state;
    /* Permissions are not the config's business: they are findings of certs/ (the one rule
       for keys and secrets, applied by check and run), so every mode loads here. */
    write_file_mode("secret-0644", "TOPSECRET-0644", 0644);
    config_free(load_ok(PROXY_AUTH "secret-0644\n"));
    write_file_mode("secret-0640", "s", 0640);
    config_free(load_ok(PROXY_AUTH "secret-0640\n"));
    write_file_mode("secret-0600", "s", 0600);
    config_free(load_ok(PROXY_AUTH "secret-0600\n"));
    /* A Kubernetes secret volume: the file is a symlink into ..data, followed. */
    (void)unlink("secret-link");
    assert_int_equal(symlink("secret-0640", "secret-link"), 0);
    config_free(load_ok(PROXY_AUTH "secret-link\n"));

    /* The secret itself never reaches a message. */
    load_bad(PROXY_AUTH "secret-0644\n      hash: md5\n", 1, &errs);
    for (i = 0; i < errs.n; i++) {
        assert_null(strstr(config_error_format(&errs.v[i], buf, sizeof(buf)), "TOPSECRET"));
    }
    config_errors_clear(&errs);

    write_file_mode("secret-empty", "", 0600);
    one_err(PROXY_AUTH "secret-empty\n", 11, 20,
            "listeners[0].couchdb_proxy_auth.secret_file: secret file secret-empty is empty; "
            "write CouchDB's [chttpd_auth] secret in it");
    one_err(PROXY_AUTH "nope.secret\n", 11, 20,
            "listeners[0].couchdb_proxy_auth.secret_file: cannot read nope.secret: No such file "
            "or directory");
    one_err(PROXY_AUTH "a-directory\n", 11, 20,
            "listeners[0].couchdb_proxy_auth.secret_file: expected a file, got the directory "
            "a-directory");
    one_err(PROXY_AUTH "/dev/null\n", 11, 20,
            "listeners[0].couchdb_proxy_auth.secret_file: cannot read /dev/null: not a regular "
            "file (a character device)");
    /* A FIFO would block whoever opens it: refused from its metadata, never opened. */
    (void)unlink("secret-fifo");
    assert_int_equal(mkfifo("secret-fifo", 0600), 0);
    one_err(PROXY_AUTH "secret-fifo\n", 11, 20,
            "listeners[0].couchdb_proxy_auth.secret_file: cannot read secret-fifo: not a regular "
            "file (a FIFO)");
    one_err("tls:\n  cert: node.crt\n  key: secret-fifo\n  ca: ca.crt\n" INBOUND_OK, 3, 8,
            "tls.key: cannot read secret-fifo: not a regular file (a FIFO)");
    /* The config file itself: config_load() opens it non-blocking and refuses it. */
    memset(&errs, 0, sizeof(errs));
    assert_null(config_load("secret-fifo", &errs));
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.v[0].msg, "cannot read: not a regular file (a FIFO)");
    config_errors_clear(&errs);
    one_err(PROXY_AUTH "[a]\n", 11, 20,
            "listeners[0].couchdb_proxy_auth.secret_file: expected a file path, got a sequence");
}

static void
test_proxy_auth_errors(void **state)
{
    (void)state;
    one_err(TLS_OK INBOUND_OK "    couchdb_proxy_auth: {}\n", 10, 25,
            "missing required key \"secret_file\" in listeners[0].couchdb_proxy_auth");
    one_err(TLS_OK INBOUND_OK "    couchdb_proxy_auth: couchdb.secret\n", 10, 25,
            "listeners[0].couchdb_proxy_auth: expected a mapping, got \"couchdb.secret\"");
    one_err(PROXY_AUTH "couchdb.secret\n      secret: x\n", 12, 7,
            "unknown key \"secret\" in listeners[0].couchdb_proxy_auth; expected one of: "
            "secret_file, hash, roles");
    one_err(PROXY_AUTH "couchdb.secret\n      hash: md5\n", 12, 13,
            "listeners[0].couchdb_proxy_auth.hash: expected sha256 or sha1, got \"md5\"");
    one_err(PROXY_AUTH "couchdb.secret\n      hash: SHA256\n", 12, 13,
            "expected sha256 or sha1, got \"SHA256\"");
    one_err(PROXY_AUTH "couchdb.secret\n      roles: replicator\n", 12, 14,
            "listeners[0].couchdb_proxy_auth.roles: expected a sequence, got \"replicator\"");
    one_err(PROXY_AUTH "couchdb.secret\n      roles: [\"a,b\"]\n", 12, 15,
            "listeners[0].couchdb_proxy_auth.roles[0]: expected a role name (not empty; no commas "
            "or control characters), got \"a,b\": X-Auth-CouchDB-Roles separates roles with "
            "commas");
    one_err(PROXY_AUTH "couchdb.secret\n      roles: [ok, \"\"]\n", 12, 19,
            "listeners[0].couchdb_proxy_auth.roles[1]: expected a role name (not empty; no "
            "commas or control characters), got \"\": a role name cannot be empty");
    one_err(PROXY_AUTH "couchdb.secret\n      roles: [\"a\\r\\nX-Evil: 1\"]\n", 12, 15,
            "got \"a\\x0d\\x0aX-Evil: 1\": a header value cannot hold control characters");
    one_err(PROXY_AUTH "couchdb.secret\n      roles: [~]\n", 12, 15,
            "listeners[0].couchdb_proxy_auth.roles[0]: expected a role name (not empty; no "
            "commas or control characters), got nothing");
}

/* The http keys on the wrong mode, on protocol: tcp, and without client certificates. */
static void
test_http_keys_misplaced(void **state)
{
    struct config_errors errs;
    struct config *cfg;

    (void)state;
    /* protocol: tcp, inbound: each key is one error naming the protocol. */
    load_bad(TLS_OK INBOUND_OK "    protocol: tcp\n"
                               "    access:\n"
                               "      - { peers: [a.example], allow: all }\n"
                               "    couchdb_proxy_auth: { secret_file: couchdb.secret }\n"
                               "    client_cert_header: none\n",
             3, &errs);
    expect_err(&errs, 0, 11, 5,
               "access rules need protocol: http: ferry must read the request to apply them, "
               "and listeners[0] (in) has protocol: tcp");
    expect_err(&errs, 1, 13, 5,
               "couchdb_proxy_auth needs protocol: http: ferry must add X-Auth-CouchDB-* headers "
               "to each request, and listeners[0] (in) has protocol: tcp");
    expect_err(&errs, 2, 14, 5,
               "client_cert_header needs protocol: http: ferry must add the header to each "
               "request, and listeners[0] (in) has protocol: tcp");
    config_errors_clear(&errs);

    /* protocol: tcp, outbound. */
    one_err(OUTBOUND_OK "    protocol: tcp\n    host_header: peer\n", 11, 5,
            "host_header needs protocol: http: ferry must rewrite the Host header of each "
            "request, and listeners[0] (out) has protocol: tcp");

    /* The wrong mode (only that error when the protocol is wrong too). */
    load_bad(OUTBOUND_OK "    access: [{ peers: [a.example], allow: all }]\n"
                         "    couchdb_proxy_auth: { secret_file: couchdb.secret }\n"
                         "    client_cert_header: xfcc\n"
                         "    protocol: tcp\n",
             3, &errs);
    expect_err(&errs, 0, 10, 5,
               "access applies only to inbound listeners: its rules limit what connecting peers "
               "may do; set them on the peer's inbound listener");
    expect_err(&errs, 1, 11, 5, "couchdb_proxy_auth applies only to inbound listeners");
    expect_err(&errs, 2, 12, 5, "client_cert_header applies only to inbound listeners");
    config_errors_clear(&errs);
    one_err(TLS_OK INBOUND_OK "    host_header: peer\n", 10, 5,
            "host_header applies only to outbound listeners: an inbound listener forwards Host "
            "as the peer sent it");

    /* A bad protocol: no protocol errors on top, yet the values are still checked. */
    load_bad(TLS_OK INBOUND_OK "    protocol: udp\n    client_cert_header: XFCC\n", 2, &errs);
    expect_err(&errs, 0, 10, 15, "listeners[0].protocol: expected http or tcp, got \"udp\"");
    expect_err(&errs, 1, 11, 25, "listeners[0].client_cert_header: expected xfcc, rfc9440");
    config_errors_clear(&errs);

    /* Peer names come from client certificates (attack 7 F1: allow was accepted, then ignored). */
    load_bad(TLS_OK INBOUND_OK "    client_cert: none\n"
                               "    allow: [a.example]\n"
                               "    access: [{ peers: [a.example], allow: all }]\n"
                               "    couchdb_proxy_auth: { secret_file: couchdb.secret }\n",
             3, &errs);
    expect_err(&errs, 0, 11, 5,
               "allow matches the names of verified peers, and with client_cert: none no "
               "certificate is asked for, so allow would refuse nobody; set client_cert: "
               "required or remove allow:");
    expect_err(&errs, 1, 12, 5,
               "access rules match the names of verified peers, and with client_cert: none no "
               "peer is verified, so every request would be refused; set client_cert: required "
               "or remove access:");
    expect_err(&errs, 2, 13, 5,
               "couchdb_proxy_auth takes the CouchDB user name from the peer's certificate, and "
               "with client_cert: none there is none; set client_cert: required or remove "
               "couchdb_proxy_auth:");
    config_errors_clear(&errs);
    cfg = load_ok(TLS_OK INBOUND_OK "    client_cert: none\n    client_cert_header: none\n");
    config_free(cfg);
}

/* pool: defaults on outbound http, values, max_idle 0, and the errors of CONTRACT §3. */
static void
test_pool(void **state)
{
    struct config_errors errs;
    struct config *cfg;

    (void)state;
    /* Absent on http, either mode: on, 64 and 60s; never on tcp. */
    cfg = load_ok(OUTBOUND_OK);
    assert_int_equal(cfg->listeners[0].pool_max_idle, 64);
    assert_int_equal(cfg->listeners[0].pool_idle_timeout_ms, 60000);
    config_free(cfg);
    cfg = load_ok(OUTBOUND_OK "    protocol: tcp\n");
    assert_int_equal(cfg->listeners[0].pool_max_idle, 0);
    config_free(cfg);
    cfg = load_ok(TLS_OK INBOUND_OK);
    assert_int_equal(cfg->listeners[0].pool_max_idle, 64);
    assert_int_equal(cfg->listeners[0].pool_idle_timeout_ms, 60000);
    config_free(cfg);
    cfg = load_ok(TLS_OK INBOUND_OK "    protocol: tcp\n");
    assert_int_equal(cfg->listeners[0].pool_max_idle, 0);
    config_free(cfg);
    cfg = load_ok(TLS_OK INBOUND_OK "    pool: { max_idle: 4, idle_timeout: 5s }\n");
    assert_int_equal(cfg->listeners[0].pool_max_idle, 4);
    assert_int_equal(cfg->listeners[0].pool_idle_timeout_ms, 5000);
    config_free(cfg);

    cfg = load_ok(OUTBOUND_OK "    pool: { max_idle: 8, idle_timeout: 1500ms }\n");
    assert_int_equal(cfg->listeners[0].pool_max_idle, 8);
    assert_int_equal(cfg->listeners[0].pool_idle_timeout_ms, 1500);
    config_free(cfg);
    cfg = load_ok(OUTBOUND_OK "    pool: { max_idle: 0 }\n");
    assert_int_equal(cfg->listeners[0].pool_max_idle, 0);
    assert_int_equal(cfg->listeners[0].pool_idle_timeout_ms, 60000);
    config_free(cfg);
    cfg = load_ok(OUTBOUND_OK "    pool: {}\n");
    assert_int_equal(cfg->listeners[0].pool_max_idle, 64);
    config_free(cfg);

    one_err(TLS_OK INBOUND_OK "    protocol: tcp\n    pool: { max_idle: 4 }\n", 11, 5,
            "pool needs protocol: http: ferry must see where each response ends to reuse a "
            "connection, and listeners[0] (in) has protocol: tcp");
    one_err(OUTBOUND_OK "    protocol: tcp\n    pool: { max_idle: 4 }\n", 11, 5,
            "pool needs protocol: http: ferry must see where each response ends to reuse a "
            "connection, and listeners[0] (out) has protocol: tcp");
    one_err(OUTBOUND_OK "    pool: { max_idle: -1 }\n", 10, 23,
            "listeners[0].pool.max_idle: expected an integer from 0 to 100000, got \"-1\"");
    one_err(OUTBOUND_OK "    pool: { idle_timeout: 0s }\n", 10, 27,
            "listeners[0].pool.idle_timeout: expected a duration greater than 0, got \"0s\"");
    one_err(OUTBOUND_OK "    pool: { idle_timeout: soon }\n", 10, 27,
            "listeners[0].pool.idle_timeout: expected a duration like 10s or 500ms");
    one_err(OUTBOUND_OK "    pool: { max_conns: 4 }\n", 10, 13,
            "unknown key \"max_conns\" in listeners[0].pool; expected one of: max_idle, "
            "idle_timeout");
    one_err(OUTBOUND_OK "    pool: 64\n", 10, 11,
            "listeners[0].pool: expected a mapping, got \"64\"");
    load_bad(OUTBOUND_OK "    pool: { max_idle: x, idle_timeout: 1 }\n", 2, &errs);
    expect_err(&errs, 0, 10, 23, "listeners[0].pool.max_idle: expected an integer");
    expect_err(&errs, 1, 10, 40, "listeners[0].pool.idle_timeout: expected a duration");
    config_errors_clear(&errs);
}

/* config_value_cidr_parse and config_value_cidr_match: blocks, single addresses, IPv4-mapped
 * senders. */
static void
test_cidr(void **state)
{
    struct config_cidr c[3];
    struct sockaddr_in a4 = {.sin_family = AF_INET};
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    char why[160];

    (void)state;
    assert_int_equal(config_value_cidr_parse("10.0.0.0/8", &c[0], why, sizeof(why)), 0);
    assert_int_equal(c[0].family, AF_INET);
    assert_int_equal(c[0].prefix, 8);
    assert_int_equal(config_value_cidr_parse("fd00::/8", &c[1], why, sizeof(why)), 0);
    assert_int_equal(c[1].family, AF_INET6);
    assert_int_equal(config_value_cidr_parse("192.0.2.7", &c[2], why, sizeof(why)), 0);
    assert_int_equal(c[2].prefix, 32);

    inet_pton(AF_INET, "10.200.3.4", &a4.sin_addr);
    assert_true(config_value_cidr_match(c, 3, (struct sockaddr *)&a4));
    inet_pton(AF_INET, "11.0.0.1", &a4.sin_addr);
    assert_false(config_value_cidr_match(c, 3, (struct sockaddr *)&a4));
    inet_pton(AF_INET, "192.0.2.7", &a4.sin_addr);
    assert_true(config_value_cidr_match(c, 3, (struct sockaddr *)&a4));
    inet_pton(AF_INET, "192.0.2.8", &a4.sin_addr);
    assert_false(config_value_cidr_match(c, 3, (struct sockaddr *)&a4));
    assert_false(config_value_cidr_match(c, 2, (struct sockaddr *)&un));
    inet_pton(AF_INET6, "fd12::1", &a6.sin6_addr);
    assert_true(config_value_cidr_match(c, 3, (struct sockaddr *)&a6));
    inet_pton(AF_INET6, "fe80::1", &a6.sin6_addr);
    assert_false(config_value_cidr_match(c, 3, (struct sockaddr *)&a6));
    /* A dual-stack listener sees an IPv4 sender as ::ffff:a.b.c.d. */
    inet_pton(AF_INET6, "::ffff:10.1.1.1", &a6.sin6_addr);
    assert_true(config_value_cidr_match(c, 1, (struct sockaddr *)&a6));
    assert_false(config_value_cidr_match(&c[1], 1, (struct sockaddr *)&a6));
    /* Partial-byte prefixes: 172.16.0.0/12 holds 172.31.x, not 172.32.x. */
    assert_int_equal(config_value_cidr_parse("172.16.0.0/12", &c[0], why, sizeof(why)), 0);
    inet_pton(AF_INET, "172.31.255.255", &a4.sin_addr);
    assert_true(config_value_cidr_match(c, 1, (struct sockaddr *)&a4));
    inet_pton(AF_INET, "172.32.0.0", &a4.sin_addr);
    assert_false(config_value_cidr_match(c, 1, (struct sockaddr *)&a4));
    assert_int_equal(config_value_cidr_parse("0.0.0.0/0", &c[0], why, sizeof(why)), 0);
    assert_true(config_value_cidr_match(c, 1, (struct sockaddr *)&a4));

    /* IPv4-mapped entries are their IPv4 blocks: they match IPv4 senders. */
    assert_int_equal(config_value_cidr_parse("::ffff:127.0.0.2", &c[0], why, sizeof(why)), 0);
    assert_int_equal(c[0].family, AF_INET);
    assert_int_equal(c[0].prefix, 32);
    inet_pton(AF_INET, "127.0.0.2", &a4.sin_addr);
    assert_true(config_value_cidr_match(c, 1, (struct sockaddr *)&a4));
    assert_int_equal(config_value_cidr_parse("::ffff:10.0.0.0/104", &c[0], why, sizeof(why)), 0);
    assert_int_equal(c[0].family, AF_INET);
    assert_int_equal(c[0].prefix, 8);
    assert_int_equal(config_value_cidr_parse("::ffff:0:0/96", &c[0], why, sizeof(why)), 0);
    assert_int_equal(c[0].prefix, 0);
    assert_int_equal(config_value_cidr_parse("10.0.0.0/33", &c[0], why, sizeof(why)), -1);
    assert_non_null(strstr(why, "longer than the 32 bits of an IPv4 address"));
    assert_int_equal(config_value_cidr_parse("fd00::/129", &c[0], why, sizeof(why)), -1);
    assert_int_equal(config_value_cidr_parse("10.1.2.3/8", &c[0], why, sizeof(why)), -1);
    assert_non_null(strstr(why, "bits set after the first 8"));
    assert_int_equal(config_value_cidr_parse("lb.example.org", &c[0], why, sizeof(why)), -1);
    assert_non_null(strstr(why, "not an IP address"));
    assert_int_equal(config_value_cidr_parse("10.0.0.0/", &c[0], why, sizeof(why)), -1);
    assert_int_equal(config_value_cidr_parse("10.0.0.0/08", &c[0], why, sizeof(why)), -1);
    assert_int_equal(config_value_cidr_parse("10.0.0.0/+8", &c[0], why, sizeof(why)), -1);
    assert_int_equal(config_value_cidr_parse("/8", &c[0], why, sizeof(why)), -1);
    assert_int_equal(config_value_cidr_parse("", &c[0], why, sizeof(why)), -1);
}

/* proxy_protocol and backend_proxy_protocol: values and the errors. */
static void
test_proxy_protocol(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = load_ok(TLS_OK INBOUND_OK);
    assert_false(cfg->listeners[0].pp_accept);
    assert_int_equal(cfg->listeners[0].n_pp_from, 0);
    assert_int_equal(cfg->listeners[0].backend_pp, CONFIG_BACKEND_PP_NONE);
    config_free(cfg);
    cfg = load_ok(TLS_OK INBOUND_OK
                  "    proxy_protocol: { accept: true, from: [10.0.0.0/8, \"::1\"] }\n");
    assert_true(cfg->listeners[0].pp_accept);
    assert_int_equal(cfg->listeners[0].n_pp_from, 2);
    assert_int_equal(cfg->listeners[0].pp_from[1].family, AF_INET6);
    config_free(cfg);
    /* accept: false keeps the list (to turn it off and on again): nothing is read. */
    cfg = load_ok(TLS_OK INBOUND_OK "    proxy_protocol: { accept: false, from: [10.0.0.1] }\n");
    assert_false(cfg->listeners[0].pp_accept);
    config_free(cfg);
    cfg = load_ok(TLS_OK INBOUND_OK "    protocol: tcp\n    backend_proxy_protocol: v2\n"
                                    "    proxy_protocol: { accept: true, from: [10.0.0.1] }\n");
    assert_int_equal(cfg->listeners[0].backend_pp, CONFIG_BACKEND_PP_V2);
    assert_true(cfg->listeners[0].pp_accept);
    config_free(cfg);

    one_err(TLS_OK INBOUND_OK "    proxy_protocol: { accept: true }\n", 10, 23,
            "listeners[0].proxy_protocol: accept: true needs from: the addresses of the load "
            "balancers");
    one_err(TLS_OK INBOUND_OK "    proxy_protocol: { accept: true, from: [] }\n", 10, 43,
            "listeners[0].proxy_protocol.from: expected at least one address or block");
    one_err(TLS_OK INBOUND_OK "    proxy_protocol: { accept: true, from: [10.0.0.0/33] }\n", 10, 44,
            "listeners[0].proxy_protocol.from[0]: got \"10.0.0.0/33\": prefix /33 is longer than "
            "the 32 bits of an IPv4 address");
    one_err(TLS_OK INBOUND_OK "    proxy_protocol: { accept: true, from: [lb.local] }\n", 10, 44,
            "listeners[0].proxy_protocol.from[0]: got \"lb.local\": \"lb.local\" is not an IP "
            "address");
    one_err(TLS_OK INBOUND_OK "    proxy_protocol: { accept: yes please, from: [10.0.0.1] }\n", 10,
            31, "listeners[0].proxy_protocol.accept: expected true or false");
    one_err(TLS_OK INBOUND_OK "    proxy_protocol: { accept: true, from: 10.0.0.1 }\n", 10, 43,
            "listeners[0].proxy_protocol.from: expected a sequence");
    one_err(TLS_OK INBOUND_OK "    proxy_protocol: { version: 2 }\n", 10, 23,
            "unknown key \"version\" in listeners[0].proxy_protocol; expected one of: accept, "
            "from");
    one_err(TLS_OK INBOUND_OK "    proxy_protocol: true\n", 10, 21,
            "listeners[0].proxy_protocol: expected a mapping");
    one_err(OUTBOUND_OK "    proxy_protocol: { accept: true, from: [10.0.0.1] }\n", 10, 5,
            "proxy_protocol applies only to inbound listeners: a load balancer in front of "
            "ferry passes the client's address in it");
    one_err(OUTBOUND_OK "    backend_proxy_protocol: v2\n", 10, 5,
            "backend_proxy_protocol applies only to inbound listeners");
    one_err(TLS_OK INBOUND_OK "    backend_proxy_protocol: v2\n", 10, 5,
            "listeners[0].backend_proxy_protocol needs protocol: tcp: on protocol: http the "
            "backend gets the client's address in X-Forwarded-For");
    one_err(TLS_OK INBOUND_OK "    protocol: tcp\n    backend_proxy_protocol: v1\n", 11, 29,
            "listeners[0].backend_proxy_protocol: expected none or v2, got \"v1\"");
}

/* via: the proxy address forms, auth_file's checks, connect_timeout, and where it may go. */
static void
test_via(void **state)
{
    struct config *cfg;

    (void)state;
    write_file_mode("proxy.auth", "replicator:s3cret pass\n", 0600);
    write_file_mode("proxy-nocolon.auth", "replicator\n", 0600);
    write_file_mode("proxy-nouser.auth", ":secret\n", 0600);
    write_file_mode("proxy-twolines.auth", "a:b\nc:d\n", 0600);
    write_file_mode("proxy-empty.auth", "\n", 0600);

    cfg = load_ok(OUTBOUND_OK);
    assert_false(cfg->listeners[0].via.enabled);
    config_free(cfg);
    cfg = load_ok(OUTBOUND_OK "    via: { proxy: \"http://proxy.hospital.local:3128\" }\n");
    assert_true(cfg->listeners[0].via.enabled);
    assert_string_equal(cfg->listeners[0].via.proxy.host, "proxy.hospital.local");
    assert_int_equal(cfg->listeners[0].via.proxy.port, 3128);
    assert_false(cfg->listeners[0].via.proxy.is_ip);
    assert_null(cfg->listeners[0].via.auth_file.path);
    assert_int_equal(cfg->listeners[0].via.connect_timeout_ms, 0);
    config_free(cfg);
    cfg = load_ok(OUTBOUND_OK "    via: { proxy: \"[::1]:3128\", auth_file: proxy.auth, "
                              "connect_timeout: 3s }\n");
    assert_true(cfg->listeners[0].via.proxy.is_ipv6);
    assert_non_null(strstr(cfg->listeners[0].via.auth_file.path, "proxy.auth"));
    assert_int_equal(cfg->listeners[0].via.connect_timeout_ms, 3000);
    config_free(cfg);
    cfg = load_ok(OUTBOUND_OK "    via: { proxy: \"HTTP://10.0.0.1:8080/\" }\n");
    assert_true(cfg->listeners[0].via.proxy.is_ip);
    config_free(cfg);

    one_err(TLS_OK INBOUND_OK "    via: { proxy: \"10.0.0.1:3128\" }\n", 10, 5,
            "via applies only to outbound listeners: it names the egress proxy");
    one_err(OUTBOUND_OK "    via: {}\n", 10, 10,
            "missing required key \"proxy\" in listeners[0].via");
    one_err(OUTBOUND_OK "    via: { proxy: \"https://proxy:3128\" }\n", 10, 19,
            "listeners[0].via.proxy: expected an http://host:port proxy address, got "
            "\"https://proxy:3128\": ferry speaks plain HTTP to the proxy");
    /* The proxy is one of ferry's own listeners: CONNECT to itself, for ever. */
    one_err(OUTBOUND_OK "    via: { proxy: \"127.0.0.1:7001\" }\n", 10, 19,
            "listeners[0].via.proxy: 127.0.0.1:7001 is the listen address of listeners[0] (out) at "
            "8:13: ferry would send CONNECT to itself");
    one_err(OUTBOUND_OK "    via: { proxy: \"localhost:6984\" }\n"
                        "  - name: in\n"
                        "    mode: inbound\n"
                        "    listen: \"0.0.0.0:6984\"\n"
                        "    backend: \"127.0.0.1:5984\"\n",
            10, 19, "localhost:6984 is the listen address of listeners[1] (in) at 13:13");
    /* A remote proxy on the port number of a wildcard listener is someone else. */
    cfg = load_ok(OUTBOUND_OK "    via: { proxy: \"10.0.0.3:6984\" }\n"
                              "  - name: in\n"
                              "    mode: inbound\n"
                              "    listen: \"0.0.0.0:6984\"\n"
                              "    backend: \"127.0.0.1:5984\"\n");
    config_free(cfg);
    /* Credentials in the URL: refused without quoting them. */
    {
        struct config_errors errs;
        char buf[1200];

        load_bad(OUTBOUND_OK "    via: { proxy: \"http://ali:Secr3t@proxy:3128\" }\n", 1, &errs);
        expect_err(&errs, 0, 10, 19,
                   "listeners[0].via.proxy: credentials in the proxy address are not accepted");
        assert_null(strstr(config_error_format(&errs.v[0], buf, sizeof(buf)), "Secr3t"));
        config_errors_clear(&errs);
    }
    one_err(OUTBOUND_OK "    via: { proxy: \"socks5://proxy:1080\" }\n", 10, 19,
            "expected an http://host:port proxy address");
    one_err(OUTBOUND_OK "    via: { proxy: \"http://proxy:3128/path\" }\n", 10, 19,
            "a proxy address has no path");
    one_err(OUTBOUND_OK "    via: { proxy: \"http://proxy\" }\n", 10, 19,
            "listeners[0].via.proxy:");
    one_err(OUTBOUND_OK "    via: { proxy: \"p:3128\", auth_file: missing.auth }\n", 10, 40,
            "listeners[0].via.auth_file: cannot read");
    one_err(OUTBOUND_OK "    via: { proxy: \"p:3128\", auth_file: proxy-nocolon.auth }\n", 10, 40,
            "expected one line \"user:password\" for the proxy's Basic authentication, but it has "
            "no \":\" between the user and the password");
    one_err(OUTBOUND_OK "    via: { proxy: \"p:3128\", auth_file: proxy-nouser.auth }\n", 10, 40,
            "the user name before \":\" is empty");
    one_err(OUTBOUND_OK "    via: { proxy: \"p:3128\", auth_file: proxy-twolines.auth }\n", 10, 40,
            "it holds more than one line");
    one_err(OUTBOUND_OK "    via: { proxy: \"p:3128\", auth_file: proxy-empty.auth }\n", 10, 40,
            "it is empty");
    one_err(OUTBOUND_OK "    via: { proxy: \"p:3128\", connect_timeout: 0s }\n", 10, 46,
            "listeners[0].via.connect_timeout: expected a duration greater than 0");
    one_err(OUTBOUND_OK "    via: { proxy: \"p:3128\", user: x }\n", 10, 29,
            "unknown key \"user\" in listeners[0].via; expected one of: proxy, auth_file, "
            "connect_timeout");
    one_err(OUTBOUND_OK "    via: \"http://p:3128\"\n", 10, 10,
            "listeners[0].via: expected a mapping");
}

static void
test_http_enum_values(void **state)
{
    (void)state;
    one_err(TLS_OK INBOUND_OK "    client_cert_header: XFCC\n", 10, 25,
            "listeners[0].client_cert_header: expected xfcc, rfc9440 or none, got \"XFCC\"");
    one_err(TLS_OK INBOUND_OK "    client_cert_header: rfc8446\n", 10, 25,
            "expected xfcc, rfc9440 or none, got \"rfc8446\"");
    one_err(TLS_OK INBOUND_OK "    client_cert_header:\n", 10, 24,
            "listeners[0].client_cert_header: expected xfcc, rfc9440 or none, got nothing");
    one_err(TLS_OK "listeners:\n"
                   "  - name: out\n"
                   "    mode: outbound\n"
                   "    listen: 127.0.0.1:7001\n"
                   "    peer: node2.example.org:6984\n"
                   "    host_header: Peer\n",
            10, 18, "listeners[0].host_header: expected keep or peer, got \"Peer\"");
    one_err(TLS_OK "listeners:\n"
                   "  - name: out\n"
                   "    mode: outbound\n"
                   "    listen: 127.0.0.1:7001\n"
                   "    peer: node2.example.org:6984\n"
                   "    host_header: [peer]\n",
            10, 18, "listeners[0].host_header: expected keep or peer, got a sequence");
}

/* ---- values ---- */

static void
test_parse_duration(void **state)
{
    static const struct {
        const char *text;
        int rc;
        uint64_t ms;
    } cases[] = {
        {"0", 0, 0},
        {"0ms", 0, 0},
        {"0s", 0, 0},
        {"1ms", 0, 1},
        {"250ms", 0, 250},
        {"10s", 0, 10000},
        {"5m", 0, 300000},
        {"1h", 0, 3600000},
        {"48h", 0, 48ull * 3600000},
        {"007s", 0, 7000},
        {"18446744073709551615ms", 0, UINT64_MAX},
        {"18446744073709551616ms", -1, 0},
        {"18446744073709551615s", -1, 0},
        {"5124095576031h", -1, 0},
        {"5124095576030h", 0, 5124095576030ull * 3600000},
        {"", -1, 0},
        {"10", -1, 0},
        {"s", -1, 0},
        {"-1s", -1, 0},
        {"+1s", -1, 0},
        {"1.5s", -1, 0},
        {"10 s", -1, 0},
        {" 10s", -1, 0},
        {"10s ", -1, 0},
        {"10S", -1, 0},
        {"10d", -1, 0},
        {"10us", -1, 0},
        {"10sec", -1, 0},
        {"1h30m", -1, 0},
    };
    uint64_t ms;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ms = 12345;
        if (config_value_parse_duration(cases[i].text, &ms) != cases[i].rc) {
            print_message("duration \"%s\"\n", cases[i].text);
        }
        assert_int_equal(config_value_parse_duration(cases[i].text, &ms), cases[i].rc);
        if (cases[i].rc == 0) {
            assert_true(ms == cases[i].ms);
        } else {
            assert_true(ms == 12345);
        }
    }
}

static void
test_parse_addr(void **state)
{
    static const struct {
        const char *text;
        bool allow_name;
        int rc;
        const char *host;
        unsigned port;
        bool is_ip;
        bool is_ipv6;
        const char *why;
    } cases[] = {
        {"127.0.0.1:5984", false, 0, "127.0.0.1", 5984, true, false, NULL},
        {"0.0.0.0:1", false, 0, "0.0.0.0", 1, true, false, NULL},
        {"10.1.2.3:65535", false, 0, "10.1.2.3", 65535, true, false, NULL},
        {"[::1]:7001", false, 0, "::1", 7001, true, true, NULL},
        {"[::]:6984", false, 0, "::", 6984, true, true, NULL},
        {"[2001:db8::1]:443", false, 0, "2001:db8::1", 443, true, true, NULL},
        {"[::ffff:10.0.0.1]:80", false, 0, "::ffff:10.0.0.1", 80, true, true, NULL},
        {"node2.example.org:6984", true, 0, "node2.example.org", 6984, false, false, NULL},
        {"localhost:5984", true, 0, "localhost", 5984, false, false, NULL},
        {"Node-2.Example.ORG:1", true, 0, "Node-2.Example.ORG", 1, false, false, NULL},
        {"127.0.0.1:5984", true, 0, "127.0.0.1", 5984, true, false, NULL},
        {"node2.example.org:6984", false, -1, NULL, 0, false, false,
         "expected an IP address like 127.0.0.1 or [::1], got the name \"node2.example.org\""},
        {"127.0.0.1:0", false, -1, NULL, 0, false, false,
         "expected a port from 1 to 65535, got \"0\""},
        {"127.0.0.1:65536", false, -1, NULL, 0, false, false,
         "expected a port from 1 to 65535, got \"65536\""},
        {"127.0.0.1:99999999999", false, -1, NULL, 0, false, false,
         "expected a port from 1 to 65535, got \"99999999999\""},
        {"127.0.0.1:-1", false, -1, NULL, 0, false, false, "expected a port from 1 to 65535"},
        {"127.0.0.1:80a", false, -1, NULL, 0, false, false, "got \"80a\""},
        {"127.0.0.1", false, -1, NULL, 0, false, false,
         "expected host:port, got \"127.0.0.1\" (no port)"},
        {"127.0.0.1:", false, -1, NULL, 0, false, false,
         "expected host:port, got \"127.0.0.1:\" (no port)"},
        {":80", false, -1, NULL, 0, false, false, "expected host:port, got \":80\" (no host)"},
        {"", false, -1, NULL, 0, false, false, "expected host:port, got an empty string"},
        {"::1:80", false, -1, NULL, 0, false, false,
         "expected an IPv6 address in brackets like [::1]:80, got \"::1:80\""},
        {"[::1]", false, -1, NULL, 0, false, false, "got \"[::1]\" (no port)"},
        {"[::1]80", false, -1, NULL, 0, false, false, "expected host:port like [::1]:80"},
        {"[::1:80", false, -1, NULL, 0, false, false, "expected \"]\" after the IPv6 address"},
        {"[1.2.3.4]:80", false, -1, NULL, 0, false, false,
         "expected an IPv6 address inside [ ], got \"1.2.3.4\""},
        {"[fe80::1%eth0]:80", false, -1, NULL, 0, false, false, "inside [ ]"},
        {"1.2.3.256:80", true, -1, NULL, 0, false, false,
         "expected an IPv4 address, got \"1.2.3.256\""},
        {"1.2.3:80", true, -1, NULL, 0, false, false, "expected an IPv4 address"},
        {"bad_name:80", true, -1, NULL, 0, false, false,
         "expected an IP address or a host name, got \"bad_name\""},
        {"-a.example:80", true, -1, NULL, 0, false, false, "host name"},
        {"a..example:80", true, -1, NULL, 0, false, false, "host name"},
        {"a.example.:80", true, -1, NULL, 0, false, false, "host name"},
        {"*.example:80", true, -1, NULL, 0, false, false, "host name"},
    };
    struct config_addr a;
    char why[512];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc;

        why[0] = '\0';
        rc = config_value_parse_addr(cases[i].text, cases[i].allow_name, &a, why, sizeof(why));
        if (rc != cases[i].rc || (cases[i].why != NULL && strstr(why, cases[i].why) == NULL)) {
            print_message("addr \"%s\": rc %d why [%s]\n", cases[i].text, rc, why);
        }
        assert_int_equal(rc, cases[i].rc);
        if (rc != 0) {
            assert_non_null(strstr(why, cases[i].why));
            continue;
        }
        assert_string_equal(a.host, cases[i].host);
        assert_int_equal(a.port, cases[i].port);
        assert_int_equal(a.is_ip, cases[i].is_ip);
        assert_int_equal(a.is_ipv6, cases[i].is_ipv6);
    }

    /* A host name of 253 characters is accepted, 254 is not. */
    {
        char text[300];
        size_t n = 0;

        /* Three labels of 63 and one of 61: 253 characters. */
        for (i = 0; i < 3; i++) {
            memset(text + n, 'a', 63);
            n += 63;
            text[n++] = '.';
        }
        memset(text + n, 'b', 61);
        n += 61;
        memcpy(text + n, ":80", 4);
        assert_int_equal(config_value_parse_addr(text, true, &a, why, sizeof(why)), 0);
        assert_int_equal(strlen(a.host), 253);
        memcpy(text + n, "c:80", 5);
        assert_int_equal(config_value_parse_addr(text, true, &a, why, sizeof(why)), -1);
    }
}

static void
test_addr_format(void **state)
{
    struct config_addr a;
    char why[256];
    char buf[300];

    (void)state;
    assert_int_equal(config_value_parse_addr("[::1]:7001", false, &a, why, sizeof(why)), 0);
    assert_string_equal(config_value_addr_format(&a, buf, sizeof(buf)), "[::1]:7001");
    assert_int_equal(config_value_parse_addr("10.0.0.1:80", false, &a, why, sizeof(why)), 0);
    assert_string_equal(config_value_addr_format(&a, buf, sizeof(buf)), "10.0.0.1:80");
    assert_int_equal(config_value_parse_addr("node2.test:6984", true, &a, why, sizeof(why)), 0);
    assert_string_equal(config_value_addr_format(&a, buf, sizeof(buf)), "node2.test:6984");
}

static void
test_dns_names(void **state)
{
    (void)state;
    assert_true(config_value_name_is_dns("a"));
    assert_true(config_value_name_is_dns("node2.example.org"));
    assert_true(config_value_name_is_dns("x-1.y2"));
    assert_true(config_value_name_is_dns("1.2.3.a"));
    assert_false(config_value_name_is_dns(""));
    assert_false(config_value_name_is_dns("1.2.3.4"));
    assert_false(config_value_name_is_dns("a-.b"));
    assert_false(config_value_name_is_dns("-a.b"));
    assert_false(config_value_name_is_dns("a.b."));
    assert_false(config_value_name_is_dns(".a"));
    assert_false(config_value_name_is_dns("a b"));
    assert_false(config_value_name_is_dns("a_b"));
    assert_false(config_value_name_is_dns("*.a"));
    assert_true(config_value_name_is_dns(
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
    assert_false(config_value_name_is_dns(
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
}

static void
test_enum_strings(void **state)
{
    (void)state;
    assert_string_equal(config_value_mode_str(CONFIG_MODE_INBOUND), "inbound");
    assert_string_equal(config_value_mode_str(CONFIG_MODE_OUTBOUND), "outbound");
    assert_string_equal(config_value_protocol_str(CONFIG_PROTOCOL_HTTP), "http");
    assert_string_equal(config_value_protocol_str(CONFIG_PROTOCOL_TCP), "tcp");
    assert_string_equal(config_value_log_level_str(CONFIG_LOG_ERROR), "error");
    assert_string_equal(config_value_log_level_str(CONFIG_LOG_WARN), "warn");
    assert_string_equal(config_value_log_level_str(CONFIG_LOG_INFO), "info");
    assert_string_equal(config_value_log_level_str(CONFIG_LOG_DEBUG), "debug");
}

static void
test_error_format(void **state)
{
    struct config_error e = {0};
    char buf[64];
    char small[12];

    (void)state;
    e.file = (char[]){"ferry.yaml"};
    e.line = 4;
    e.col = 9;
    e.msg = (char[]){"tls.cert: cannot read"};
    assert_string_equal(config_error_format(&e, buf, sizeof(buf)),
                        "ferry.yaml:4:9: tls.cert: cannot read");
    assert_string_equal(config_error_format(&e, small, sizeof(small)), "ferry.yaml:");
    e.line = 0;
    assert_string_equal(config_error_format(&e, buf, sizeof(buf)),
                        "ferry.yaml: tls.cert: cannot read");

    config_free(NULL);
}

/* Control characters in a value are escaped in messages. */
static void
test_message_escaping(void **state)
{
    (void)state;
    one_err(TLS_OK INBOUND_OK "    protocol: \"ht\\ttp\\\"\"\n", 10, 15,
            "expected http or tcp, got \"ht\\x09tp\\\"\"");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal_defaults),
        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_min_version_plain),
        cmocka_unit_test(test_tls_override_merge),
        cmocka_unit_test(test_tls_only_in_listeners),
        cmocka_unit_test(test_relative_paths),
        cmocka_unit_test(test_load_from_data_dir),
        cmocka_unit_test(test_contract_example),
        cmocka_unit_test(test_load_unreadable),
        cmocka_unit_test(test_syntax_error),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_anchor_alias),
        cmocka_unit_test(test_multiple_documents),
        cmocka_unit_test(test_nul_and_bad_utf8),
        cmocka_unit_test(test_too_deep),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_not_supported_yet),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_listener_values),
        cmocka_unit_test(test_allow_entries),
        cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_mode_keys),
        cmocka_unit_test(test_missing_tls),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_ops_keys),
        cmocka_unit_test(test_admin_errors),
        cmocka_unit_test(test_admin_probe_interval),
        cmocka_unit_test(test_user_errors),
        cmocka_unit_test(test_workers),
        cmocka_unit_test(test_drain_timeout_errors),
        cmocka_unit_test(test_duplicate_listeners),
        cmocka_unit_test(test_all_errors_at_once),
        cmocka_unit_test(test_http_keys),
        cmocka_unit_test(test_http_keys_defaults),
        cmocka_unit_test(test_access_errors),
        cmocka_unit_test(test_syntax_hints),
        cmocka_unit_test(test_allow_spiffe),
        cmocka_unit_test(test_access_allow_values),
        cmocka_unit_test(test_access_databases),
        cmocka_unit_test(test_db_glob_check),
        cmocka_unit_test(test_proxy_auth_secret_file),
        cmocka_unit_test(test_proxy_auth_errors),
        cmocka_unit_test(test_http_keys_misplaced),
        cmocka_unit_test(test_http_enum_values),
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_cidr),
        cmocka_unit_test(test_proxy_protocol),
        cmocka_unit_test(test_via),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_addr),
        cmocka_unit_test(test_addr_format),
        cmocka_unit_test(test_dns_names),
        cmocka_unit_test(test_enum_strings),
        cmocka_unit_test(test_error_format),
        cmocka_unit_test(test_message_escaping),
    };

    return (cmocka_run_group_tests(tests, group_setup, NULL));
}
