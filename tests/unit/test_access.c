/*
 * test_access: proxy/proxy_access.c (CONTRACT §6 identity headers, §7 access rules).
 *
 * Access rules are built by hand in C (no YAML).  The replication tables list the requests
 * that CouchDB's replicator (couch_replicator_api_wrap) and PouchDB's (pouchdb-replication
 * over pouchdb-adapter-http) send to a source and to a target; each must be allowed under
 * `replicate` for a listed database and refused for an unlisted one.  Certificates for the
 * XFCC and RFC 9440 tests come from the in-process test PKI.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "config.h"
#include "pki.h"

#include "proxy_access.h"
#include "tls.h"

/* ---- rules built by hand; every string is owned by the pool below ---- */

#define MAX_RULES 16

static struct config_access_rule rules[MAX_RULES];
static size_t n_rules;

/* Split "a,b,c" into a new NULL-free array of strdup'ed strings. */
static char **
split(const char *list, size_t *n)
{
    char **v = calloc(32, sizeof(*v));
    const char *p = list;

    assert_non_null(v);
    *n = 0;
    while (*p != '\0') {
        size_t len = strcspn(p, ",");

        assert_true(*n < 32);
        v[*n] = strndup(p, len);
        assert_non_null(v[*n]);
        (*n)++;
        p += len;
        p += *p == ',';
    }
    return v;
}

/* Append a rule: ${peers} and ${dbs} comma-separated, ${dbs} NULL = every database. */
static void
rule_add(unsigned line, const char *peers, enum config_allow allow, const char *dbs)
{
    struct config_access_rule *r;

    assert_true(n_rules < MAX_RULES);
    r = &rules[n_rules++];
    memset(r, 0, sizeof(*r));
    r->pos.line = line;
    r->pos.col = 9;
    r->peers = split(peers, &r->n_peers);
    r->allow = allow;
    if (dbs != NULL) {
        r->databases = split(dbs, &r->n_databases);
    }
}

static void
free_strings(char **v, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        free(v[i]);
    }
    free(v);
}

static int
rules_reset(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < n_rules; i++) {
        free_strings(rules[i].peers, rules[i].n_peers);
        free_strings(rules[i].databases, rules[i].n_databases);
    }
    memset(rules, 0, sizeof(rules));
    n_rules = 0;
    return 0;
}

/* The decision for peer ${sans} (a tls_peer_info.sans string). */
static int
decide(const char *sans, const char *method, const char *target, char *why, size_t whylen)
{
    struct proxy_peer_names names;
    char dummy[512];

    proxy_access_names_parse(sans, NULL, &names);
    return proxy_access_check(rules, n_rules, &names, method, target, why != NULL ? why : dummy,
                              why != NULL ? whylen : sizeof(dummy), NULL);
}

/* "{db}" in ${tmpl} replaced by ${db}, into ${out}. */
static const char *
expand(const char *tmpl, const char *db, char *out, size_t len)
{
    size_t o = 0;

    while (*tmpl != '\0') {
        if (strncmp(tmpl, "{db}", 4) == 0) {
            size_t n = strlen(db);

            assert_true(o + n < len);
            memcpy(out + o, db, n);
            o += n;
            tmpl += 4;
        } else {
            assert_true(o + 1 < len);
            out[o++] = *tmpl++;
        }
    }
    out[o] = '\0';
    return out;
}

struct reqt {
    const char *method;
    const char *target; /* "{db}" stands for the database */
};

/* Assert ${want} (0 allowed, -1 refused) for every request of ${t} on ${db} by ${sans}. */
static void
expect_table(const char *sans, const struct reqt *t, size_t n, const char *db, int want)
{
    char target[2048], why[512];
    size_t i;
    int rc;

    for (i = 0; i < n; i++) {
        expand(t[i].target, db, target, sizeof(target));
        why[0] = '\0';
        rc = decide(sans, t[i].method, target, why, sizeof(why));
        if (rc != want) {
            print_error("%s %s by %s: expected %s, got %s (%s)\n", t[i].method, target, sans,
                        want == 0 ? "allowed" : "refused", rc == 0 ? "allowed" : "refused", why);
        }
        assert_int_equal(rc, want);
        if (rc != 0) {
            assert_true(why[0] != '\0');
        }
    }
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

/*
 * ---- the replication protocol, as CouchDB's and PouchDB's replicators speak it ----
 *
 * Split by the role of this node: what a replicator sends to the source, to the target, or to
 * both.  Every request of these tables names a database ("GET /" is checked on its own).
 */

/* Sent to the source and to the target alike. */
static const struct reqt repl_both[] = {
    /* CouchDB replicator: db_open, checkpoints, commit_to_both */
    {"HEAD", "/{db}/"},
    {"HEAD", "/{db}"},
    {"GET", "/{db}/"},
    {"GET", "/{db}"},
    {"GET", "/{db}/_local/4cf2d5c1e5b8b4c0b9ad1b0c5e3a2f01%2Bcontinuous"},
    {"PUT", "/{db}/_local/4cf2d5c1e5b8b4c0b9ad1b0c5e3a2f01%2Bcontinuous"},
    {"GET", "/{db}/_local/4cf2d5c1e5b8b4c0b9ad1b0c5e3a2f01%2Bcontinuous%2Bcreate_target"},
    {"HEAD", "/{db}/_local/4cf2d5c1e5b8b4c0b9ad1b0c5e3a2f01"},
    {"POST", "/{db}/_ensure_full_commit"},
    /* PouchDB (pouchdb-adapter-http) */
    {"GET", "/{db}/_local/0uh3GhqvhYg7DwGBt0SbBQ%3D%3D"},
    {"PUT", "/{db}/_local/0uh3GhqvhYg7DwGBt0SbBQ%3D%3D"},
    {"GET", "/{db}/_local%2F0uh3GhqvhYg7DwGBt0SbBQ%3D%3D"},
};

/* Sent to the source only. */
static const struct reqt repl_source[] = {
    /* CouchDB replicator: changes reader, workers, filters */
    {"GET", "/{db}/_changes?feed=normal&style=all_docs&since=0&timeout=10000"},
    {"GET", "/{db}/_changes?feed=continuous&style=all_docs&since=%2212-g1AAAA%22&heartbeat=10000"},
    {"GET", "/{db}/_changes?feed=normal&style=all_docs&filter=app%2Fby_type&since=0"},
    {"GET", "/{db}/_changes?since=0&limit=0"}, /* get_pending_count */
    {"POST", "/{db}/_changes?filter=_doc_ids&feed=normal&style=all_docs&since=0"},
    {"POST", "/{db}/_changes?filter=_selector&feed=normal&style=all_docs&since=0"},
    {"POST", "/{db}/_bulk_get?revs=true&attachments=true&latest=true"},
    {"GET", "/{db}/doc1?revs=true&open_revs=%5B%221-967a00dff5e02add41819138abb3284d%22%5D"
            "&latest=true"},
    {"GET", "/{db}/doc1?revs=true&open_revs=%5B%222-abc%22%5D&latest=true"
            "&atts_since=%5B%221-xyz%22%5D"},
    {"GET", "/{db}/a%2Fb%20c?revs=true&open_revs=all"},
    {"GET", "/{db}/_design/app?revs=true&open_revs=%5B%221-abc%22%5D&latest=true"},
    {"GET", "/{db}/_design%2Fapp?revs=true&open_revs=all"},
    {"GET", "/{db}/_design/app"}, /* the filter function of a filtered replication */
    {"GET", "/{db}/_design%2Fapp"},
    /* PouchDB (pouchdb-adapter-http) */
    {"GET", "/{db}/_changes?style=all_docs&since=0&limit=100"},
    {"GET", "/{db}/_changes?timeout=25000&style=all_docs&feed=longpoll&heartbeat=10000"
            "&since=12&limit=100"},
    {"POST", "/{db}/_changes?style=all_docs&filter=_doc_ids&since=0&limit=100"},
    {"GET", "/{db}/doc1?revs=true&open_revs=%5B%221-abc%22%5D&latest=true&attachments=true"},
    {"GET", "/{db}/doc1?open_revs=%5B%221-abc%22%5D"},
    {"HEAD", "/{db}/doc1?revs=true"},
    {"GET", "/{db}/doc1/photo.jpg?rev=1-abc"},
    {"GET", "/{db}/doc1/dir%2Fphoto.jpg?rev=1-abc"},
    {"GET", "/{db}/doc1/dir/photo.jpg?rev=1-abc"},
    {"GET", "/{db}/_design/app/icon.png?rev=1-abc"},
    {"POST", "/{db}/_all_docs?conflicts=true&include_docs=true"},
    {"GET", "/{db}/_all_docs?keys=%5B%22a%22%5D"},
    /* query parameters decoded before they are checked */
    {"GET", "/{db}/doc1?re%76s=tru%65"},
};

/* Sent to the target only: everything but creating it. */
static const struct reqt repl_target[] = {
    /* CouchDB replicator: get_missing_revs, update_docs, update_doc */
    {"POST", "/{db}/_revs_diff"},
    {"POST", "/{db}/_bulk_docs"},
    {"PUT", "/{db}/doc1?new_edits=false"}, /* multipart/related with attachments */
    {"PUT", "/{db}/_design/app?new_edits=false"},
    {"PUT", "/{db}/_design%2Fapp?new_edits=false"},
    {"PUT", "/{db}/a%2Fb?new_edits=false"},
    /* query parameters decoded before they are checked */
    {"PUT", "/{db}/doc1?new%5Fedits=%66alse"},
};

/* create_target: the replicator creates the target database (sharding and partitioning). */
static const struct reqt repl_create[] = {
    {"PUT", "/{db}/"},
    {"PUT", "/{db}"},
    {"PUT", "/{db}?q=8&n=3&partitioned=false"},
    {"PUT", "/{db}/?q=8&n=3&partitioned=false"},
    {"PUT", "/{db}/?partitioned=true"},
};

/*
 * Assert the decision on every replication request on ${db} by ${sans}: ${source} (0 allowed,
 * -1 refused) for the requests only a source gets, ${target} for those only a target gets
 * (creating it included); the requests both get are allowed when either is.
 */
static void
expect_replication(const char *sans, const char *db, int source, int target)
{
    int both = source == 0 || target == 0 ? 0 : -1;

    expect_table(sans, repl_both, N(repl_both), db, both);
    expect_table(sans, repl_source, N(repl_source), db, source);
    expect_table(sans, repl_target, N(repl_target), db, target);
    expect_table(sans, repl_create, N(repl_create), db, target);
}

/* Everything a replicate peer must not do, even on a listed database. */
static const struct reqt not_replication[] = {
    {"GET", "/_all_dbs"},
    {"GET", "/_config"},
    {"GET", "/_config/admins"},
    {"PUT", "/_config/admins/eve"},
    {"GET", "/_session"},
    {"POST", "/_session"},
    {"DELETE", "/_session"},
    {"GET", "/_node/_local/_config"},
    {"GET", "/_node/nonode@nohost/_stats"},
    {"GET", "/_users"},
    {"GET", "/_users/org.couchdb.user:bob"},
    {"PUT", "/_users/org.couchdb.user:eve"},
    {"GET", "/_replicator"},
    {"POST", "/_replicate"},
    {"GET", "/_active_tasks"},
    {"GET", "/_uuids"},
    {"GET", "/_utils/"},
    {"GET", "/_scheduler/jobs"},
    {"GET", "/%5Fall_dbs"},
    {"GET", "/%5fconfig"},
    {"GET", "/{db}/doc1"},
    {"GET", "/{db}/doc1?revs=false"},
    {"GET", "/{db}/doc1?rev=1-abc"},
    {"GET", "/{db}/doc1?revs=true&revs=false"},
    {"GET", "/{db}/doc1?revs=false&revs=true"},
    {"GET", "/{db}/doc1?x=1;revs=true"},
    {"GET", "/{db}/doc1?open_revs="},
    {"GET", "/{db}/doc1?revs=%GG"},
    {"GET", "/{db}/doc1#?revs=true"},
    {"GET", "/{db}/doc1/att"},
    {"GET", "/{db}/doc1/att?rev="},
    {"HEAD", "/{db}/doc1"},
    {"DELETE", "/{db}/doc1?rev=1-abc"},
    {"DELETE", "/{db}"},
    {"DELETE", "/{db}/"},
    {"DELETE", "/{db}/_local/x"},
    {"PUT", "/{db}/doc1"},
    {"PUT", "/{db}/doc1?new_edits=true"},
    {"PUT", "/{db}/doc1?new_edits=false&new_edits=true"},
    {"PUT", "/{db}/doc1/att?rev=1-abc"},
    {"PUT", "/{db}/_design/app"},
    {"POST", "/{db}"},
    {"POST", "/{db}/"},
    {"POST", "/{db}/doc1"},
    {"COPY", "/{db}/doc1"},
    {"PATCH", "/{db}/doc1"},
    {"OPTIONS", "/{db}/"},
    {"get", "/{db}/"},
    {"Get", "/"},
    {"put", "/{db}/_local/x"},
    {"POST", "/{db}/_find"},
    {"POST", "/{db}/_explain"},
    {"GET", "/{db}/_design/app/_view/v"},
    {"GET", "/{db}/_design/app/_view/v?revs=true"},
    {"POST", "/{db}/_design/app/_view/v"},
    {"GET", "/{db}/_design%2Fapp/_view/v"},
    {"GET", "/{db}/_design/app/_info"},
    {"GET", "/{db}/_design/app/_show/s/doc1"},
    {"GET", "/{db}/_design/app/_rewrite/x"},
    {"POST", "/{db}/_design/app/_update/fn/doc1"},
    {"GET", "/{db}/_design/app/_view?rev=1"},
    {"GET", "/{db}/_security"},
    {"PUT", "/{db}/_security"},
    {"POST", "/{db}/_compact"},
    {"POST", "/{db}/_purge"},
    {"POST", "/{db}/_view_cleanup"},
    {"GET", "/{db}/_revs_limit"},
    {"PUT", "/{db}/_revs_limit"},
    {"GET", "/{db}/_index"},
    {"POST", "/{db}/_index"},
    {"GET", "/{db}/_design_docs"},
    {"GET", "/{db}/_local_docs"},
    {"GET", "/{db}/_shards"},
    {"POST", "/{db}/_missing_revs"},
    {"POST", "/{db}/_all_docs/queries"},
    {"GET", "/{db}/_changes/x"},
    {"POST", "/{db}/_local/x"},
    {"GET", "/{db}/_local/x/y"},
    {"GET", "/{db}/_design"},
    {"GET", "/{db}/_local"},
    {"GET", "/{db}/_partition/p/_all_docs"},
    /* path tricks: cannot reach another path than the one matched */
    {"GET", "/{db}//_all_docs"},
    {"GET", "//{db}/"},
    {"GET", "/{db}/%00"},
    {"GET", "/{db}/doc%0a?revs=true"},
    {"GET", "/{db}/doc%G1?revs=true"},
    {"GET", "/{db}/doc%4?revs=true"},
    {"GET", "http://127.0.0.1:5984/{db}/"},
    {"GET", "*"},
    {"GET", ""},
};

/* "GET /" (and HEAD): every level, whatever the databases. */
static void
expect_root(const char *sans, int want)
{
    static const struct reqt root[] = {{"GET", "/"}, {"HEAD", "/"}, {"GET", "/?x=1"}};

    expect_table(sans, root, N(root), "", want);
}

/* Dot segments, plain or hidden in one segment: no rule allows them (proxy_access_path_hygiene()).
 */
static const struct reqt dot_tricks[] = {
    {"GET", "/{db}/..%2F_config"},
    {"GET", "/{db}/%2e%2e/_all_dbs"},
    {"GET", "/{db}/%2E./_all_dbs"},
    {"GET", "/{db}/../_all_dbs"},
    {"GET", "/{db}/./"},
    {"GET", "/{db}/doc1/..%2f..%2f_all_dbs?revs=true"},
    {"GET", "/{db}/_design%2F..%2F..%2F_config"},
    {"PUT", "/{db}/_local/..%5C..%5C_users?new_edits=false"},
    {"POST", "/{db}/..%2F_bulk_docs"},
    {"GET", "/{db}/_changes/..%2F..?since=0"},
    {"GET", "/{db}%2F..%2F_users/"},
    {"GET", "/{db}/a\\..\\_all_dbs"},
};

static void
test_replicate_table(void **state)
{
    (void)state;
    rule_add(14, "node2.example.org", CONFIG_ALLOW_REPLICATE, "patients,visits*");

    expect_root("DNS:node2.example.org", 0);
    expect_replication("DNS:node2.example.org", "patients", 0, 0);
    expect_replication("DNS:node2.example.org", "visits", 0, 0);
    expect_replication("DNS:node2.example.org", "visits-2025", 0, 0);
    expect_table("DNS:node2.example.org", not_replication, N(not_replication), "patients", -1);
    expect_table("DNS:node2.example.org", dot_tricks, N(dot_tricks), "patients", -1);

    /* The same requests on a database the rule does not list, or by another peer. */
    {
        static const struct reqt only_db[] = {
            {"GET", "/{db}/"},
            {"PUT", "/{db}"},
            {"GET", "/{db}/_changes?since=0"},
            {"POST", "/{db}/_revs_diff"},
            {"POST", "/{db}/_bulk_docs"},
            {"POST", "/{db}/_bulk_get"},
            {"GET", "/{db}/_local/x"},
            {"PUT", "/{db}/_local/x"},
            {"GET", "/{db}/doc1?revs=true&open_revs=all"},
            {"PUT", "/{db}/doc1?new_edits=false"},
            {"GET", "/{db}/doc1/att?rev=1-a"},
            {"POST", "/{db}/_ensure_full_commit"},
            {"GET", "/{db}/_all_docs"},
        };

        expect_replication("DNS:node2.example.org", "other", -1, -1);
        expect_replication("DNS:node2.example.org", "patients2", -1, -1);
        expect_replication("DNS:node2.example.org", "Patients", -1, -1);
        expect_replication("DNS:node2.example.org", "visit", -1, -1);
        expect_replication("DNS:node3.example.org", "patients", -1, -1);
        expect_root("DNS:node3.example.org", -1);
        expect_table("DNS:node2.example.org", only_db, N(only_db), "patients%2Fx", -1);
        /* '*' does not match '/': "visits*" covers visits-2025, not visits/x */
        expect_table("DNS:node2.example.org", only_db, N(only_db), "visits%2Fx", -1);
        expect_table("DNS:node2.example.org", only_db, N(only_db), "visits-2025", 0);
        expect_table("DNS:node2.example.org", only_db, N(only_db), "_users", -1);
        expect_table("DNS:node2.example.org", only_db, N(only_db), "_replicator", -1);
    }
}

static void
test_replicate_every_db(void **state)
{
    (void)state;
    rule_add(3, "*.site-b.example.org", CONFIG_ALLOW_REPLICATE, NULL);
    expect_root("DNS:n1.site-b.example.org", 0);
    expect_replication("DNS:n1.site-b.example.org", "anything", 0, 0);
    expect_replication("DNS:n1.site-b.example.org", "site%2Fdb", 0, 0);
    expect_table("DNS:n1.site-b.example.org", not_replication, N(not_replication), "anything", -1);
    /* Server-wide paths stay closed: a leading '_' is never an ordinary database. */
    expect_replication("DNS:n1.site-b.example.org", "_users", -1, -1);
    expect_replication("DNS:n1.site-b.example.org", "_replicator", -1, -1);
}

/* This node as the source only: the target's requests are refused, and the other way round. */
static void
test_replicate_by_direction(void **state)
{
    static const struct reqt from_not_to[] = {
        {"POST", "/{db}/_bulk_docs"},
        {"POST", "/{db}/_revs_diff"},
        {"PUT", "/{db}"},
        {"PUT", "/{db}/?q=8&n=3&partitioned=false"},
        {"PUT", "/{db}/doc1?new_edits=false"},
        {"PUT", "/{db}/_design/app?new_edits=false"},
    };
    static const struct reqt to_not_from[] = {
        {"POST", "/{db}/_bulk_get"},
        {"GET", "/{db}/_changes?since=0"},
        {"POST", "/{db}/_changes?filter=_doc_ids"},
        {"GET", "/{db}/_all_docs"},
        {"POST", "/{db}/_all_docs"},
        {"GET", "/{db}/doc1?revs=true&open_revs=all"},
        {"GET", "/{db}/_design/app"},
        {"GET", "/{db}/_design/app?open_revs=all"},
        {"GET", "/{db}/doc1/att?rev=1-a"},
    };

    (void)state;
    rule_add(1, "src.example.org", CONFIG_ALLOW_REPLICATE_FROM, "patients,site/**");
    rule_add(2, "dst.example.org", CONFIG_ALLOW_REPLICATE_TO, "patients,site/**");
    rule_add(3, "*.every.example.org", CONFIG_ALLOW_REPLICATE_FROM, NULL);
    rule_add(4, "*.every.example.org", CONFIG_ALLOW_ALL, NULL); /* never reached */
    rule_add(5, "*.all.example.org", CONFIG_ALLOW_REPLICATE_TO, NULL);

    /* replicate-from: the source's requests and those of both roles */
    expect_root("DNS:src.example.org", 0);
    expect_replication("DNS:src.example.org", "patients", 0, -1);
    expect_replication("DNS:src.example.org", "site%2Fa%2Fb", 0, -1);
    expect_table("DNS:src.example.org", from_not_to, N(from_not_to), "patients", -1);
    expect_table("DNS:src.example.org", not_replication, N(not_replication), "patients", -1);
    expect_table("DNS:src.example.org", dot_tricks, N(dot_tricks), "patients", -1);
    expect_replication("DNS:src.example.org", "other", -1, -1);
    expect_replication("DNS:src.example.org", "_users", -1, -1);

    /* replicate-to: the target's requests and those of both roles */
    expect_root("DNS:dst.example.org", 0);
    expect_replication("DNS:dst.example.org", "patients", -1, 0);
    expect_replication("DNS:dst.example.org", "site%2Fa", -1, 0);
    expect_table("DNS:dst.example.org", to_not_from, N(to_not_from), "patients", -1);
    expect_table("DNS:dst.example.org", not_replication, N(not_replication), "patients", -1);
    expect_table("DNS:dst.example.org", dot_tricks, N(dot_tricks), "patients", -1);
    expect_replication("DNS:dst.example.org", "other", -1, -1);
    expect_replication("DNS:dst.example.org", "_replicator", -1, -1);

    /* without databases: every database, still no server-wide path */
    expect_replication("DNS:n.every.example.org", "x", 0, -1);
    expect_table("DNS:n.every.example.org", from_not_to, N(from_not_to), "x", -1);
    expect_table("DNS:n.every.example.org", not_replication, N(not_replication), "x", -1);
    expect_replication("DNS:n.all.example.org", "x", -1, 0);
    expect_table("DNS:n.all.example.org", to_not_from, N(to_not_from), "x", -1);
    expect_table("DNS:n.all.example.org", not_replication, N(not_replication), "x", -1);
}

/* ---- read, write, all ---- */

static const struct reqt reads[] = {
    {"GET", "/"},
    {"HEAD", "/"},
    {"GET", "/{db}"},
    {"HEAD", "/{db}/"},
    {"GET", "/{db}/doc1"},
    {"GET", "/{db}/doc1?rev=1-abc"},
    {"HEAD", "/{db}/doc1"},
    {"GET", "/{db}/doc1/att.txt"},
    {"GET", "/{db}/_design/app"},
    {"GET", "/{db}/_design/app/att.js"},
    {"GET", "/{db}/_design/app/_view/by_date?limit=10"},
    {"POST", "/{db}/_design/app/_view/by_date"},
    {"POST", "/{db}/_design/app/_view/by_date/queries"},
    {"GET", "/{db}/_design/app/_info"},
    {"GET", "/{db}/_design/app/_show/s/doc1"},
    {"GET", "/{db}/_design/app/_list/l/v"},
    {"GET", "/{db}/_local/x"},
    {"GET", "/{db}/_changes?since=now"},
    {"GET", "/{db}/_all_docs"},
    {"GET", "/{db}/_design_docs"},
    {"GET", "/{db}/_local_docs"},
    {"GET", "/{db}/_index"},
    {"POST", "/{db}/_all_docs"},
    {"POST", "/{db}/_all_docs/queries"},
    {"POST", "/{db}/_bulk_get"},
    {"POST", "/{db}/_revs_diff"},
    {"POST", "/{db}/_changes"},
    {"POST", "/{db}/_find"},
    {"POST", "/{db}/_explain"},
    {"POST", "/{db}/_missing_revs"},
    {"GET", "/{db}/doc1?revs=true&open_revs=all"},
};

static const struct reqt writes_only[] = {
    {"POST", "/{db}"},
    {"POST", "/{db}/"},
    {"POST", "/{db}/_bulk_docs"},
    {"POST", "/{db}/_ensure_full_commit"},
    {"POST", "/{db}/_index"},
    {"DELETE", "/{db}/_index/_design/a/json/idx"},
    {"PUT", "/{db}/doc1"},
    {"PUT", "/{db}/doc1?new_edits=false"},
    {"POST", "/{db}/doc1"},
    {"DELETE", "/{db}/doc1?rev=1-abc"},
    {"COPY", "/{db}/doc1"},
    {"PUT", "/{db}/doc1/att.txt?rev=1-abc"},
    {"DELETE", "/{db}/doc1/att.txt?rev=2-abc"},
    {"PUT", "/{db}/_design/app"},
    {"DELETE", "/{db}/_design/app?rev=1-abc"},
    {"COPY", "/{db}/_design/app"},
    {"PUT", "/{db}/_design/app/att.js"},
    {"POST", "/{db}/_design/app/_update/fn/doc1"},
    {"PUT", "/{db}/_design/app/_update/fn/doc1"},
    {"PUT", "/{db}/_local/x"},
    {"DELETE", "/{db}/_local/x"},
};

/* Administration: neither read nor write, only all. */
static const struct reqt admin_only[] = {
    {"PUT", "/{db}"},
    {"PUT", "/{db}/"},
    {"DELETE", "/{db}"},
    {"GET", "/{db}/_security"},
    {"PUT", "/{db}/_security"},
    {"POST", "/{db}/_compact"},
    {"POST", "/{db}/_compact/app"},
    {"POST", "/{db}/_purge"},
    {"POST", "/{db}/_view_cleanup"},
    {"GET", "/{db}/_revs_limit"},
    {"PUT", "/{db}/_revs_limit"},
    {"GET", "/{db}/_shards"},
    {"GET", "/{db}/_design/app/_rewrite/x"},
    {"PUT", "/"},
    {"PATCH", "/{db}/doc1"},
    {"OPTIONS", "/{db}/"},
};

static const struct reqt server_wide[] = {
    {"GET", "/_all_dbs"},
    {"GET", "/_config"},
    {"POST", "/_session"},
    {"GET", "/_users"},
    {"GET", "/_users/org.couchdb.user:bob"},
    {"GET", "/_replicator"},
    {"GET", "/_node/_local/_stats"},
    {"GET", "/%5Fall_dbs"},
};

static void
test_read_write_all(void **state)
{
    (void)state;
    rule_add(1, "reader.example.org", CONFIG_ALLOW_READ, "patients");
    rule_add(2, "writer.example.org", CONFIG_ALLOW_WRITE, "patients");
    rule_add(3, "admin.example.org", CONFIG_ALLOW_ALL, "patients");
    rule_add(4, "root.example.org", CONFIG_ALLOW_ALL, NULL);

    expect_table("DNS:reader.example.org", reads, N(reads), "patients", 0);
    expect_table("DNS:reader.example.org", writes_only, N(writes_only), "patients", -1);
    expect_table("DNS:reader.example.org", admin_only, N(admin_only), "patients", -1);
    expect_table("DNS:reader.example.org", server_wide, N(server_wide), "patients", -1);
    expect_table("DNS:reader.example.org", reads + 2, N(reads) - 2, "other", -1);

    expect_table("DNS:writer.example.org", reads, N(reads), "patients", 0);
    expect_table("DNS:writer.example.org", writes_only, N(writes_only), "patients", 0);
    expect_table("DNS:writer.example.org", admin_only, N(admin_only), "patients", -1);
    expect_table("DNS:writer.example.org", server_wide, N(server_wide), "patients", -1);
    expect_table("DNS:writer.example.org", writes_only, N(writes_only), "other", -1);
    /* write covers a replication from the database, and into it when it exists */
    expect_table("DNS:writer.example.org", repl_both, N(repl_both), "patients", 0);
    expect_table("DNS:writer.example.org", repl_source, N(repl_source), "patients", 0);
    expect_table("DNS:writer.example.org", repl_target, N(repl_target), "patients", 0);
    expect_table("DNS:writer.example.org", repl_create, N(repl_create), "patients", -1);

    expect_table("DNS:admin.example.org", reads, N(reads), "patients", 0);
    expect_table("DNS:admin.example.org", writes_only, N(writes_only), "patients", 0);
    expect_table("DNS:admin.example.org", admin_only, N(admin_only), "patients", 0);
    expect_replication("DNS:admin.example.org", "patients", 0, 0);
    /* all with databases: only those databases; server-wide paths need a literal '_' glob */
    expect_table("DNS:admin.example.org", server_wide, N(server_wide), "patients", -1);
    expect_table("DNS:admin.example.org", admin_only, 3, "other", -1);
    assert_int_equal(decide("DNS:admin.example.org", "GET", "/patients/../x", NULL, 0), -1);

    expect_table("DNS:root.example.org", server_wide, N(server_wide), "x", 0);
    expect_table("DNS:root.example.org", admin_only, N(admin_only), "other", 0);
    expect_table("DNS:root.example.org", not_replication, N(not_replication), "x", 0);
    /* except dot segments: the HTTP layer refuses them with 400, and no rule allows them */
    expect_table("DNS:root.example.org", dot_tricks, N(dot_tricks), "x", -1);
    expect_table("DNS:admin.example.org", dot_tricks, N(dot_tricks), "patients", -1);
    expect_table("DNS:writer.example.org", dot_tricks, N(dot_tricks), "patients", -1);
    expect_table("DNS:reader.example.org", dot_tricks, N(dot_tricks), "patients", -1);
}

static void
test_all_database_globs(void **state)
{
    (void)state;
    rule_add(1, "a.example.org", CONFIG_ALLOW_ALL, "*");
    rule_add(2, "b.example.org", CONFIG_ALLOW_ALL, "_users,_all_dbs,app-*");
    rule_add(3, "c.example.org", CONFIG_ALLOW_READ, "_users,?atients,p*s,*");
    rule_add(4, "d.example.org", CONFIG_ALLOW_ALL, "**");

    assert_int_equal(decide("DNS:a.example.org", "DELETE", "/anything", NULL, 0), 0);
    assert_int_equal(decide("DNS:a.example.org", "GET", "/a%2Fb/c", NULL, 0), -1);
    assert_int_equal(decide("DNS:d.example.org", "GET", "/a%2Fb/c", NULL, 0), 0);
    assert_int_equal(decide("DNS:a.example.org", "GET", "/", NULL, 0), 0);
    assert_int_equal(decide("DNS:a.example.org", "GET", "/_all_dbs", NULL, 0), -1);
    assert_int_equal(decide("DNS:a.example.org", "GET", "/_users/x", NULL, 0), -1);

    assert_int_equal(decide("DNS:b.example.org", "GET", "/_users/org.couchdb.user:x", NULL, 0), 0);
    assert_int_equal(decide("DNS:b.example.org", "GET", "/_all_dbs", NULL, 0), 0);
    assert_int_equal(decide("DNS:b.example.org", "GET", "/_config", NULL, 0), -1);
    assert_int_equal(decide("DNS:b.example.org", "PUT", "/app-1", NULL, 0), 0);
    assert_int_equal(decide("DNS:b.example.org", "PUT", "/app", NULL, 0), -1);
    assert_int_equal(decide("DNS:b.example.org", "PUT", "/xapp-1", NULL, 0), -1);

    /* read never reaches a server-wide path, even one its globs name */
    assert_int_equal(decide("DNS:c.example.org", "GET", "/_users/x", NULL, 0), -1);
    assert_int_equal(decide("DNS:c.example.org", "GET", "/patients", NULL, 0), 0);
    assert_int_equal(decide("DNS:c.example.org", "GET", "/anything", NULL, 0), 0);
}

static void
test_glob_patterns(void **state)
{
    static const struct {
        const char *glob, *db;
        int want;
    } cases[] = {
        {"patients", "patients", 0},
        {"patients", "patient", -1},
        {"patients", "patientsx", -1},
        {"visits*", "visits", 0},
        {"visits*", "visits-1", 0},
        {"visits*", "visit", -1},
        {"*-prod", "a-prod", 0},
        {"*-prod", "a-prod-x", -1},
        {"a*b*c", "aXbYc", 0},
        {"a*b*c", "abc", 0},
        {"a*b*c", "acb", -1},
        {"a?c", "abc", 0},
        {"a?c", "ac", -1},
        {"*", "x", 0},
        {"**", "x", 0},
        {"site/*", "site%2Fdb", 0},
        {"site/*", "other%2Fdb", -1},
        {"P*", "patients", -1},
        {"*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", -1},
        /* '*' and '?' never match '/'; "**" does */
        {"pat*", "pat-2024", 0},
        {"pat*", "pat-2024%2Fx", -1},
        {"pat*", "pat-2024%2F..%2F_users", -1},
        {"pat*", "pat%2F", -1},
        {"pat**", "pat-2024%2Fx", 0},
        {"pat**", "pat-2024%2Fx%2Fy", 0},
        {"pat**", "pat", 0},
        {"pat***", "pat%2Fx", 0},
        {"*", "a%2Fb", -1},
        {"**", "a%2Fb", 0},
        {"**", "a%2Fb%2Fc", 0},
        {"*/*", "a%2Fb", 0},
        {"*/*", "a%2Fb%2Fc", -1},
        {"**/*", "a%2Fb%2Fc", 0},
        {"*/**", "a%2Fb%2Fc", 0},
        {"*/**", "ab", -1},
        {"site/*", "site%2Fa%2Fb", -1},
        {"site/**", "site%2Fa%2Fb", 0},
        {"site/**", "sitex%2Fa", -1},
        {"**/db", "a%2Fb%2Fdb", 0},
        {"**/db", "a%2Fb%2Fdbx", -1},
        {"a*b**c", "axb%2Fyc", 0},
        {"a*b**c", "a%2Fb%2Fc", -1},
        {"a**b*c", "a%2Fb%2Fc", -1},
        {"a**b*c", "a%2Fbxc", 0},
        {"a**b*c", "a%2Fb%2Fbxc", 0},
        {"a?c", "a%2Fc", -1},
        {"a??c", "a%2F%2Fc", -1},
        {"a?", "a%2F", -1},
        {"a**", "a%2F", 0},
        /* a wildcard never matches a leading '_', not even "**" */
        {"**", "_users", -1},
        {"*users", "_users", -1},
        {"?users", "_users", -1},
        {"**", "a%2F_users", 0},
        {"a/*", "a%2F_x", 0},
        {"*a**a**a**a**b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", -1},
    };
    size_t i;
    char target[256];

    (void)state;
    for (i = 0; i < N(cases); i++) {
        rules_reset(NULL);
        rule_add(1, "x.example.org", CONFIG_ALLOW_READ, cases[i].glob);
        (void)snprintf(target, sizeof(target), "/%s/", cases[i].db);
        if (decide("DNS:x.example.org", "GET", target, NULL, 0) != cases[i].want) {
            print_error("glob %s on %s\n", cases[i].glob, cases[i].db);
        }
        assert_int_equal(decide("DNS:x.example.org", "GET", target, NULL, 0), cases[i].want);
    }
}

/* ---- peers ---- */

static void
test_first_match_wins(void **state)
{
    const struct config_access_rule *m = NULL;
    struct proxy_peer_names names;
    char why[256];

    (void)state;
    rule_add(10, "node2.example.org", CONFIG_ALLOW_REPLICATE, "patients");
    rule_add(20, "*.example.org", CONFIG_ALLOW_ALL, NULL);
    rule_add(30, "node2.example.org", CONFIG_ALLOW_ALL, NULL);

    /* node2 matches rule 1 first; the broader rules after it do not widen it */
    proxy_access_names_parse("DNS:node2.example.org", NULL, &names);
    assert_int_equal(
        proxy_access_check(rules, n_rules, &names, "GET", "/_all_dbs", why, sizeof(why), &m), -1);
    assert_ptr_equal(m, &rules[0]);
    assert_int_equal(
        proxy_access_check(rules, n_rules, &names, "GET", "/patients/", why, sizeof(why), &m), 0);
    assert_ptr_equal(m, &rules[0]);

    /* node3 falls to rule 2 */
    proxy_access_names_parse("DNS:node3.example.org", NULL, &names);
    assert_int_equal(
        proxy_access_check(rules, n_rules, &names, "GET", "/_all_dbs", why, sizeof(why), &m), 0);
    assert_ptr_equal(m, &rules[1]);

    /* a peer whose second name matches an earlier rule than its first */
    proxy_access_names_parse("DNS:x.other.org,DNS:node2.example.org", NULL, &names);
    assert_int_equal(
        proxy_access_check(rules, n_rules, &names, "DELETE", "/patients", why, sizeof(why), &m),
        -1);
    assert_ptr_equal(m, &rules[0]);

    /* no rule */
    proxy_access_names_parse("DNS:x.other.org", NULL, &names);
    assert_int_equal(proxy_access_check(rules, n_rules, &names, "GET", "/", why, sizeof(why), &m),
                     -1);
    assert_null(m);

    /* no access: at all (rules NULL) allows anything, even a malformed path */
    assert_int_equal(proxy_access_check(NULL, 0, &names, "DELETE", "/../x", why, sizeof(why), &m),
                     0);
    assert_null(m);
}

static void
test_wildcard_and_ip_peers(void **state)
{
    (void)state;
    rule_add(1, "*.site-b.example.org,10.0.0.7,::1", CONFIG_ALLOW_REPLICATE, "db");

    assert_int_equal(decide("DNS:n1.site-b.example.org", "GET", "/db/", NULL, 0), 0);
    assert_int_equal(decide("DNS:N1.SITE-B.example.org", "GET", "/db/", NULL, 0), 0);
    assert_int_equal(decide("DNS:site-b.example.org", "GET", "/db/", NULL, 0), -1);
    assert_int_equal(decide("DNS:a.n1.site-b.example.org", "GET", "/db/", NULL, 0), -1);
    assert_int_equal(decide("IP:10.0.0.7", "GET", "/db/", NULL, 0), 0);
    assert_int_equal(decide("IP:10.0.0.8", "GET", "/db/", NULL, 0), -1);
    assert_int_equal(decide("IP:0:0:0:0:0:0:0:1", "GET", "/db/", NULL, 0), 0);
    /* any of the peer's names may match */
    assert_int_equal(decide("DNS:other.org,IP:10.0.0.7", "GET", "/db/", NULL, 0), 0);
    /* a URI SAN never matches a DNS entry (however it is spelled); email SANs are no names */
    assert_int_equal(
        decide("URI:spiffe://n1.site-b.example.org/x,email:10.0.0.7", "GET", "/db/", NULL, 0), -1);
}

/* peers: entries that are SPIFFE IDs match URI SANs only (CONTRACT §7, rules as allow:). */
static void
test_spiffe_peers(void **state)
{
    char why[512];

    (void)state;
    rule_add(1, "spiffe://site-b.example.org/ns/db/*", CONFIG_ALLOW_REPLICATE, "db");
    rule_add(2, "spiffe://site-b.example.org/ns/ops/admin", CONFIG_ALLOW_ALL, NULL);

    assert_int_equal(
        decide("URI:spiffe://site-b.example.org/ns/db/replicator", "GET", "/db/", NULL, 0), 0);
    assert_int_equal(decide("URI:spiffe://site-b.example.org/ns/db/replicator", "GET", "/_all_dbs",
                            why, sizeof(why)),
                     -1);
    assert_non_null(strstr(why, "spiffe://site-b.example.org/ns/db/replicator"));
    assert_int_equal(
        decide("URI:spiffe://site-b.example.org/ns/ops/admin", "GET", "/_all_dbs", NULL, 0), 0);
    /* one level only, case-sensitive, no decoding, no DNS look-alike */
    assert_int_equal(decide("URI:spiffe://site-b.example.org/ns/db", "GET", "/db/", NULL, 0), -1);
    assert_int_equal(decide("URI:spiffe://site-b.example.org/ns/db/a/b", "GET", "/db/", NULL, 0),
                     -1);
    assert_int_equal(
        decide("URI:spiffe://site-b.example.org/ns/ops/Admin", "GET", "/_all_dbs", NULL, 0), -1);
    assert_int_equal(
        decide("URI:spiffe://site-b.example.org/ns/ops/%61dmin", "GET", "/_all_dbs", NULL, 0), -1);
    assert_int_equal(decide("DNS:site-b.example.org", "GET", "/db/", NULL, 0), -1);
    /* a peer with a DNS SAN and a matching URI SAN is allowed by the URI */
    assert_int_equal(decide("DNS:n1.example.org,URI:spiffe://site-b.example.org/ns/db/n1", "GET",
                            "/db/", NULL, 0),
                     0);
    assert_int_equal(
        decide("URI:spiffe://site-b.example.org/ns/web/x", "GET", "/db/", why, sizeof(why)), -1);
    assert_string_equal(why, "no access rule matches peer spiffe://site-b.example.org/ns/web/x");
}

/* The one identity (CONTRACT §6): first access rule's match, else allow's, else first DNS. */
static void
test_identity_choose(void **state)
{
    struct proxy_peer_names names;

    (void)state;
    proxy_access_names_parse("DNS:n1.example.org,IP:10.0.0.7,URI:spiffe://td/ns/db/n1", NULL,
                             &names);
    /* no rules, no allow: the first DNS SAN (never an IP or URI that matched nothing) */
    assert_string_equal(proxy_access_identity_choose(NULL, 0, NULL, &names), "n1.example.org");
    /* allow matched the URI: the URI */
    assert_string_equal(proxy_access_identity_choose(NULL, 0, "spiffe://td/ns/db/n1", &names),
                        "spiffe://td/ns/db/n1");
    /* a rule matching the URI wins over allow's name */
    rule_add(1, "other.example.org", CONFIG_ALLOW_ALL, NULL);
    rule_add(2, "spiffe://td/ns/db/*", CONFIG_ALLOW_READ, NULL);
    rule_add(3, "n1.example.org", CONFIG_ALLOW_ALL, NULL);
    assert_string_equal(proxy_access_identity_choose(rules, n_rules, "n1.example.org", &names),
                        "spiffe://td/ns/db/n1");
    /* no rule matches: allow's name, else the first DNS SAN */
    assert_string_equal(proxy_access_identity_choose(rules, 1, "10.0.0.7", &names), "10.0.0.7");
    assert_string_equal(proxy_access_identity_choose(rules, 1, "", &names), "n1.example.org");
    /* a URI-only peer that matched nothing has no identity */
    proxy_access_names_parse("URI:spiffe://td/ns/db/n1", NULL, &names);
    assert_null(proxy_access_identity_choose(rules, 1, NULL, &names));
    assert_string_equal(proxy_access_identity_choose(rules, n_rules, NULL, &names),
                        "spiffe://td/ns/db/n1");
    proxy_access_names_parse("IP:10.0.0.7", NULL, &names);
    assert_null(proxy_access_identity_choose(NULL, 0, NULL, &names));
    assert_null(proxy_access_identity_choose(NULL, 0, NULL, NULL));
    /* a DNS SAN that is no host name is no name at all: no identity, no rule matches it */
    proxy_access_names_parse("DNS:spiffe://site-b.example.org/ns/db/replicator", NULL, &names);
    assert_int_equal(names.n, 0);
    assert_null(proxy_access_identity_choose(NULL, 0, NULL, &names));
    proxy_access_names_parse("DNS:a\".example.org,DNS:a b.example.org,DNS:*.example.org,"
                             "DNS:b.example.org",
                             NULL, &names);
    assert_int_equal(names.n, 1);
    assert_string_equal(proxy_access_identity_choose(NULL, 0, NULL, &names), "b.example.org");
    /* nor is a CN that is neither a host name nor an IP address */
    proxy_access_names_parse("", "Jane Doe", &names);
    assert_int_equal(names.n, 0);
    proxy_access_names_parse("", "10.0.0.9", &names);
    assert_int_equal(names.n, 1);
    /* a URI SAN shown cut (over 255 bytes) is no name */
    proxy_access_names_parse("URI:spiffe://td/aaaa" TLS_SAN_CUT ",DNS:b.example.org", NULL, &names);
    assert_int_equal(names.n, 1);
    assert_string_equal(names.v[0], "b.example.org");
    /* a URI SAN that matched nothing is not the identity, well-formed or not */
    proxy_access_names_parse("URI:spiffe://td/x;DNS=admin?URI=spiffe://x", NULL, &names);
    assert_null(proxy_access_identity_choose(NULL, 0, NULL, &names));
}

/* The identity as CouchDB gets it: a host name folded, a SPIFFE ID as it is, else nothing. */
static void
test_identity_canonical(void **state)
{
    static const struct {
        const char *in, *out; /* out NULL: refused */
    } cases[] = {
        {"CLIENT.Test.", "client.test"},
        {"10.0.0.7", "10.0.0.7"},
        {"::1", "::1"},
        {"spiffe://site-b.example.org/ns/DB/Replicator_1.x-y",
         "spiffe://site-b.example.org/ns/DB/Replicator_1.x-y"},
        {"spiffe://td", "spiffe://td"},
        {"spiffe://", NULL},
        {"spiffe://td/a b", NULL},
        {"spiffe://td/a\r\nX-Auth-CouchDB-Roles: _admin", NULL},
        {"spiffe://td/a?DNS:x", NULL},
        {"spiffe://td/a%0d", NULL},
        {"spiffe://td/a\"b", NULL},
        {"spiffe://td/a,b", NULL},
        {"admin??X-Auth", NULL},
        {"a b", NULL},
        {"", NULL},
    };
    char buf[128];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(buf, sizeof(buf), "%s", cases[i].in);
        if (cases[i].out == NULL) {
            assert_false(proxy_access_identity_canonical(buf));
            assert_string_equal(buf, cases[i].in);
        } else {
            assert_true(proxy_access_identity_canonical(buf));
            assert_string_equal(buf, cases[i].out);
        }
    }
}

static void
test_cn_fallback(void **state)
{
    struct proxy_peer_names names;

    (void)state;
    rule_add(1, "legacy-node", CONFIG_ALLOW_READ, NULL);

    /* cn_fallback on: the CN is the name when there is no DNS/IP SAN */
    proxy_access_names_parse("URI:spiffe://x", "legacy-node", &names);
    assert_int_equal(names.n, 2);
    assert_string_equal(names.v[0], "legacy-node");
    assert_string_equal(names.v[1], "spiffe://x");
    assert_int_equal(proxy_access_check(rules, n_rules, &names, "GET", "/db", NULL, 0, NULL), 0);

    /* cn_fallback off (cn NULL): no name, no rule */
    proxy_access_names_parse("", NULL, &names);
    assert_int_equal(names.n, 0);
    assert_int_equal(proxy_access_check(rules, n_rules, &names, "GET", "/db", NULL, 0, NULL), -1);

    /* a DNS SAN wins over the CN */
    proxy_access_names_parse("DNS:n.example.org", "legacy-node", &names);
    assert_int_equal(names.n, 1);
    assert_string_equal(names.v[0], "n.example.org");
    assert_int_equal(proxy_access_check(rules, n_rules, &names, "GET", "/db", NULL, 0, NULL), -1);
}

static void
test_peer_names_parse(void **state)
{
    struct proxy_peer_names names;
    char sans[4096];
    size_t i, pos = 0;

    (void)state;
    proxy_access_names_parse("DNS:a.example.org,IP:127.0.0.1,URI:spiffe://x/y,email:a@b,"
                             "IP:::1,DNS:b.example.org",
                             "cn", &names);
    assert_int_equal(names.n, 5);
    assert_string_equal(names.v[0], "a.example.org");
    assert_string_equal(names.v[1], "127.0.0.1");
    assert_string_equal(names.v[2], "spiffe://x/y");
    assert_string_equal(names.v[3], "::1");
    assert_string_equal(names.v[4], "b.example.org");

    /* each kind keeps its names: a DNS SAN spelt as a URI, a URI SAN without a scheme: none */
    proxy_access_names_parse("DNS:spiffe://td/x,URI:node2.example.org,URI:spiffe://td/y,IP:a://b",
                             "cn", &names);
    assert_int_equal(names.n, 1);
    assert_string_equal(names.v[0], "spiffe://td/y");
    /* ... and a CN spelt as a URI is none either */
    proxy_access_names_parse("URI:spiffe://td/y", "spiffe://td/cn", &names);
    assert_int_equal(names.n, 1);
    assert_string_equal(names.v[0], "spiffe://td/y");

    proxy_access_names_parse(NULL, NULL, &names);
    assert_int_equal(names.n, 0);
    proxy_access_names_parse("DNS:,IP:,,", "", &names);
    assert_int_equal(names.n, 0);

    /* more names than fit: the first PROXY_ACCESS_MAX_NAMES are kept */
    for (i = 0; i < 40; i++) {
        pos += (size_t)snprintf(sans + pos, sizeof(sans) - pos, "%sDNS:n%zu.example.org",
                                i > 0 ? "," : "", i);
    }
    proxy_access_names_parse(sans, NULL, &names);
    assert_int_equal(names.n, PROXY_ACCESS_MAX_NAMES);
    assert_string_equal(names.v[0], "n0.example.org");
    assert_string_equal(names.v[PROXY_ACCESS_MAX_NAMES - 1], "n15.example.org");
}

/* ---- refusal text ---- */

static void
test_why(void **state)
{
    char why[512];
    struct proxy_peer_names names;

    (void)state;
    rule_add(14, "node2.example.org", CONFIG_ALLOW_REPLICATE, "patients,visits*");
    rule_add(20, "ops.example.org", CONFIG_ALLOW_READ, NULL);
    rule_add(22, "adm.example.org", CONFIG_ALLOW_ALL, "patients");
    rule_add(23, "w.example.org", CONFIG_ALLOW_WRITE, "x");
    rule_add(24, "src.example.org", CONFIG_ALLOW_REPLICATE_FROM, "patients");
    rule_add(25, "dst.example.org", CONFIG_ALLOW_REPLICATE_TO, "patients,site/**");

    assert_int_equal(
        decide("DNS:node2.example.org", "DELETE", "/patients/doc1?rev=1-a", why, sizeof(why)), -1);
    assert_string_equal(why, "rule 1 (line 14) allows node2.example.org to replicate patients, "
                             "visits*, not DELETE /patients/doc1");
    assert_int_equal(decide("DNS:node2.example.org", "GET", "/_all_dbs", why, sizeof(why)), -1);
    assert_string_equal(why, "rule 1 (line 14) allows node2.example.org to replicate patients, "
                             "visits*, not GET /_all_dbs (server-wide paths need allow: all)");
    assert_int_equal(decide("DNS:node2.example.org", "GET", "/other/", why, sizeof(why)), -1);
    assert_string_equal(why, "rule 1 (line 14) allows node2.example.org to replicate patients, "
                             "visits*, not GET /other/ (database other is not listed)");
    assert_int_equal(decide("DNS:node2.example.org", "GET", "/patients/%2e%2e", why, sizeof(why)),
                     -1);
    assert_string_equal(why, "rule 1 (line 14) allows node2.example.org to replicate patients, "
                             "visits*, not GET /patients/%2e%2e (a \".\" or \"..\" path segment, "
                             "raw, encoded or behind an encoded \"/\" or a \"\\\")");
    assert_int_equal(decide("DNS:node2.example.org", "GET", "/patients/doc%zz", why, sizeof(why)),
                     -1);
    assert_true(strstr(why, "not GET /patients/doc%zz (malformed path") != NULL);
    assert_int_equal(decide("DNS:ops.example.org", "PUT", "/db/x", why, sizeof(why)), -1);
    assert_string_equal(why, "rule 2 (line 20) allows ops.example.org to read every database, "
                             "not PUT /db/x");
    assert_int_equal(decide("DNS:adm.example.org", "PUT", "/db", why, sizeof(why)), -1);
    assert_string_equal(why, "rule 3 (line 22) allows adm.example.org to do anything with "
                             "patients, not PUT /db (database db is not listed)");
    assert_int_equal(decide("DNS:w.example.org", "DELETE", "/x", why, sizeof(why)), -1);
    assert_string_equal(why, "rule 4 (line 23) allows w.example.org to read and write x, not "
                             "DELETE /x");
    assert_int_equal(
        decide("DNS:src.example.org", "POST", "/patients/_bulk_docs?x=1", why, sizeof(why)), -1);
    assert_string_equal(why, "rule 5 (line 24) allows src.example.org to replicate from patients, "
                             "not POST /patients/_bulk_docs");
    assert_int_equal(decide("DNS:dst.example.org", "POST", "/patients/_bulk_get", why, sizeof(why)),
                     -1);
    assert_string_equal(why, "rule 6 (line 25) allows dst.example.org to replicate to patients, "
                             "site/**, not POST /patients/_bulk_get");

    assert_int_equal(decide("DNS:x.example.org", "GET", "/", why, sizeof(why)), -1);
    assert_string_equal(why, "no access rule matches peer x.example.org");
    assert_int_equal(decide("DNS:x.example.org,IP:10.1.1.1", "GET", "/", why, sizeof(why)), -1);
    assert_string_equal(why,
                        "no access rule matches peer x.example.org (nor its other names 10.1.1.1)");
    proxy_access_names_parse("", NULL, &names);
    assert_int_equal(proxy_access_check(rules, n_rules, &names, "GET", "/", why, sizeof(why), NULL),
                     -1);
    assert_string_equal(why, "no access rule matches this peer: it has no verified name");

    /* control characters never reach the log; a short buffer is cut, not overrun */
    assert_int_equal(decide("DNS:ops.example.org", "PUT\x01", "/db/\x1b[31m", why, sizeof(why)),
                     -1);
    assert_null(strchr(why, '\x1b'));
    assert_null(strchr(why, '\x01'));
    assert_int_equal(decide("DNS:ops.example.org", "PUT", "/db/x", why, 20), -1);
    assert_int_equal(strlen(why), 19);
    assert_string_equal(why + 16, "...");
}

/* ---- path parsing ---- */

static void
expect_path(const char *target, size_t n, ...)
{
    struct proxy_path p;
    va_list ap;
    size_t i;

    if (proxy_access_path_parse(target, &p) != 0) {
        print_error("%s: refused\n", target);
        fail();
    }
    assert_int_equal(p.n, n);
    va_start(ap, n);
    for (i = 0; i < n; i++) {
        assert_string_equal(p.seg[i], va_arg(ap, const char *));
    }
    va_end(ap);
}

static void
test_path_parse(void **state)
{
    static const char *const refused[] = {
        "",
        "*",
        "db",
        "http://x/",
        "https://127.0.0.1:5984/db/",
        "//",
        "//db",
        "/db//doc",
        "/db/doc//",
        "/.",
        "/..",
        "/db/..",
        "/db/../x",
        "/db/./x",
        "/db/%2e%2e",
        "/db/%2E%2e/x",
        "/db/%2E./x",
        "/db/.%2e",
        "/db/%2e",
        "/db/%2e%2e%2F",
        "/db/..%2F_config",
        "/db/a%2F..",
        "/db/a%2F.%2Fb",
        "/db/..%5Cx",
        "/db/..%5cx",
        "/db/..\\x",
        "/db/x\\.",
        "/db/%2E%2E%5Cx",
        "/db%2F..%2F_users/x",
        "/db/%00",
        "/db/a%00b",
        "/db/%0a",
        "/db/%1F",
        "/db/%7f",
        "/db/a\tb",
        "/db/a b",
        "/db/a\x7f",
        "/db/%G1",
        "/db/%4",
        "/db/%",
        "/db/%%41",
        "/db/%4g",
        "/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/17",
    };
    struct proxy_path p;
    char *big;
    size_t i;

    (void)state;
    expect_path("/", 0);
    expect_path("/?x=1", 0);
    expect_path("/#frag", 0);
    expect_path("/db", 1, "db");
    expect_path("/db/", 1, "db");
    expect_path("/db?x=/..//", 1, "db");
    expect_path("/db/doc#a/../b", 2, "db", "doc");
    expect_path("/a%2Fb/c%2fd", 2, "a/b", "c/d");
    expect_path("/db/a%2F..b", 2, "db", "a/..b");
    expect_path("/db/_design%2Ffoo", 2, "db", "_design/foo");
    expect_path("/db/a%5Cb\\c", 2, "db", "a\\b\\c");
    expect_path("/db/..a%2F.b%5C...", 2, "db", "..a/.b\\...");
    expect_path("/db/...", 2, "db", "...");
    expect_path("/db/.x", 2, "db", ".x");
    expect_path("/db/a+b%2B", 2, "db", "a+b+");
    expect_path("/db/%25%32%46", 2, "db", "%2F"); /* decoded exactly once */
    expect_path("/db/%20x%20", 2, "db", " x ");
    expect_path("/db/caf%C3%A9", 2, "db", "caf\xc3\xa9");
    expect_path("/%5Fall_dbs", 1, "_all_dbs");
    expect_path("/db/_design/app/_view/v", 5, "db", "_design", "app", "_view", "v");
    expect_path("/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16", 16, "1", "2", "3", "4", "5", "6", "7",
                "8", "9", "10", "11", "12", "13", "14", "15", "16");
    expect_path("/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/", 16, "1", "2", "3", "4", "5", "6", "7",
                "8", "9", "10", "11", "12", "13", "14", "15", "16");

    for (i = 0; i < N(refused); i++) {
        if (proxy_access_path_parse(refused[i], &p) != -1) {
            print_error("%s: accepted\n", refused[i]);
        }
        assert_int_equal(proxy_access_path_parse(refused[i], &p), -1);
        assert_int_equal(p.n, 0);
    }
    assert_int_equal(proxy_access_path_parse(NULL, &p), -1);

    /* Length: exactly what fits in buf (segments and their NULs), and one byte more. */
    big = malloc(sizeof(p.buf) + 16);
    assert_non_null(big);
    big[0] = '/';
    memset(big + 1, 'a', sizeof(p.buf) - 1);
    big[sizeof(p.buf)] = '\0';
    assert_int_equal(proxy_access_path_parse(big, &p), 0);
    assert_int_equal(strlen(p.seg[0]), sizeof(p.buf) - 1);
    big[sizeof(p.buf)] = 'a';
    big[sizeof(p.buf) + 1] = '\0';
    assert_int_equal(proxy_access_path_parse(big, &p), -1);
    /* an over-long query does not matter to the path */
    memcpy(big, "/db?", 4);
    assert_int_equal(proxy_access_path_parse(big, &p), 0);
    assert_int_equal(p.n, 1);
    free(big);
}

/* ---- path hygiene ---- */

/* The rule proxy_access_path_hygiene() names at the end of every reason. */
#define RFC3986 "(RFC 3986 §5.2.4)"

/* Targets proxy_access_path_hygiene() refuses, with the reason it gives. */
static const struct {
    const char *target, *why;
} dirty[] = {
    {"/db/..", "path segment \"..\" is a dot segment (\"..\") " RFC3986},
    {"/db/.", "path segment \".\" is a dot segment (\".\") " RFC3986},
    {"/db/%2e%2E", "path segment \"%2e%2E\" decodes to a dot segment (\"..\") " RFC3986},
    {"/patients/doc/..%2f..%2f_all_dbs", "path segment \"..%2f..%2f_all_dbs\" holds a dot segment "
                                         "(\"..\") behind an encoded \"/\" " RFC3986},
    {"/db/%2E%2E%5Cx", "path segment \"%2E%2E%5Cx\" holds a dot segment (\"..\") behind an "
                       "encoded \"\\\" (some servers read it as \"/\") " RFC3986},
    {"/db/a%2F.%2Fb", "path segment \"a%2F.%2Fb\" holds a dot segment (\".\") behind an encoded "
                      "\"/\" " RFC3986},
    {"/db/..%5c_users", "path segment \"..%5c_users\" holds a dot segment (\"..\") behind an "
                        "encoded \"\\\" (some servers read it as \"/\") " RFC3986},
    {"/db/..\\x", "path segment \"..\\x\" holds a dot segment (\"..\") behind a \"\\\" (some "
                  "servers read it as \"/\") " RFC3986},
    /* reasons checked above; these by their verdict only */
    {"/..", NULL},
    {"/.", NULL},
    {"/%2e", NULL},
    {"/%2E%2e/_config", NULL},
    {"/db/../_all_dbs", NULL},
    {"/db/./", NULL},
    {"/db/.%2e", NULL},
    {"/db/%2e.", NULL},
    {"/db/doc/..", NULL},
    {"/db/doc/att/%2e%2e?rev=1", NULL},
    {"/db/..?x=1", NULL},
    {"/db/..#f", NULL},
    {"/db/..%2F", NULL},
    {"/db/..%2f_config", NULL},
    {"/db/x%2F..", NULL},
    {"/db/x%2F..%2F", NULL},
    {"/db/x%2F.", NULL},
    {"/db/.%2Fx", NULL},
    {"/db%2F..%2F_users", NULL},
    {"/db/%2F..%2F", NULL},
    {"/db/%2F%2F..", NULL},
    {"/db/%2E%2E%2F%2E%2E%2F_config", NULL},
    {"/db/a\\..\\b", NULL},
    {"/db/.\\x", NULL},
    {"/db/x\\.", NULL},
    {"/db/%5C..", NULL},
    {"/db/..%5C", NULL},
    {"/db/a%5C.%2Fb", NULL},
    {"/db/a%2F..%5Cb", NULL},
    {"/db/_design%2F..%2F..%2F_config", NULL},
    {"/db/_local%2F..", NULL},
    {"//..", NULL},
    {"/db//..", NULL},
    {"/db/ok/fine/..%2F", NULL},
    /* only the first bad escape is literal: the segment is still judged */
    {"/db/%zz/..%2f_all_dbs", NULL},
    {"/db/..%2f%zz", NULL},
    {"/db/..%2f%", NULL},
    {"/db/%%2e%2e%2f..", NULL},
};

/* Targets it lets pass: ids with %2F that are not dot segments, and what is not its business. */
static const char *const clean[] = {
    "/",
    "/db",
    "/db/",
    "/db/doc",
    "/db/_design%2Ffoo",
    "/db/_design/foo",
    "/db/_local%2Fcheckpoint",
    "/db/a%2Fb",
    "/db/a.b",
    "/db/...",
    "/db/....",
    "/db/.hidden",
    "/db/..hidden",
    "/db/hidden..",
    "/db/a%2F..b",
    "/db/a%2F...%2Fb",
    "/db/a%2F.b%2F..c",
    "/db/a%5Cb",
    "/db/a\\b",
    "/db/%2e%2e%2e",
    "/db/.%2e.",
    "/db/%252e%252e",     /* decoded once: "%2e%2e" */
    "/db/%252F..%252F",   /* decoded once: "%2F..%2F" */
    "/db/..%252F_config", /* decoded once: "..%2F_config" */
    "/db/doc?x=/../..",   /* the query is not the path */
    "/db/doc?x=%2e%2e",
    "/db/doc#/../x",
    "/db/doc?",
    "/db//doc", /* empty segments: the access rules' business */
    "//",
    "/db/%zz", /* bad escapes: likewise */
    "/db/%",
    "/db/%2",
    "/db/.%",
    "/db/..%zz",
    "/db/%00", /* control bytes: likewise */
    "/db/a%0a",
    "/db/ .. ",
    "/db/%20..",
    "/db/..%20",
    "/db/..+",
    "/db/.%2Bx",
    "/db/%C3%A9..",
    "/db/doc/att.txt?rev=1-a",
    "*", /* not origin-form */
    "http://127.0.0.1:5984/db/../_config",
    "",
    "..",
    "db/..",
};

static void
test_path_hygiene(void **state)
{
    struct proxy_path p;
    char why[512], big[600];
    size_t i, n;

    (void)state;
    rule_add(1, "root.example.org", CONFIG_ALLOW_ALL, NULL);
    rule_add(2, "star.example.org", CONFIG_ALLOW_ALL, "**");
    rule_add(3, "repl.example.org", CONFIG_ALLOW_REPLICATE, NULL);
    for (i = 0; i < N(dirty); i++) {
        memset(why, 'X', sizeof(why));
        if (proxy_access_path_hygiene(dirty[i].target, why, sizeof(why)) != -1) {
            print_error("%s: accepted\n", dirty[i].target);
        }
        assert_int_equal(proxy_access_path_hygiene(dirty[i].target, why, sizeof(why)), -1);
        assert_true(strlen(why) > 0);
        if (dirty[i].why != NULL) {
            assert_string_equal(why, dirty[i].why);
        }
        assert_int_equal(proxy_access_path_hygiene(dirty[i].target, NULL, 0), -1);
        assert_int_equal(proxy_access_path_hygiene(dirty[i].target, why, 0), -1);
        /* no rule allows it, not even all for every database; no rules at all do */
        if (proxy_access_path_parse(dirty[i].target, &p) != -1) {
            print_error("%s: parsed\n", dirty[i].target);
        }
        assert_int_equal(proxy_access_path_parse(dirty[i].target, &p), -1);
        assert_int_equal(decide("DNS:root.example.org", "GET", dirty[i].target, NULL, 0), -1);
        assert_int_equal(decide("DNS:star.example.org", "GET", dirty[i].target, NULL, 0), -1);
        assert_int_equal(decide("DNS:repl.example.org", "PUT", dirty[i].target, NULL, 0), -1);
    }
    for (i = 0; i < N(clean); i++) {
        strcpy(why, "stale");
        if (proxy_access_path_hygiene(clean[i], why, sizeof(why)) != 0) {
            print_error("%s: refused (%s)\n", clean[i], why);
        }
        assert_int_equal(proxy_access_path_hygiene(clean[i], why, sizeof(why)), 0);
        assert_string_equal(why, "");
        assert_int_equal(decide("DNS:root.example.org", "GET", clean[i], NULL, 0), 0);
    }
    assert_int_equal(proxy_access_path_hygiene(NULL, why, sizeof(why)), 0);
    assert_int_equal(proxy_access_path_hygiene(NULL, NULL, 0), 0);
    assert_int_equal(decide("DNS:star.example.org", "GET", "/db/a%2F..b", NULL, 0), 0);
    assert_int_equal(decide("DNS:repl.example.org", "GET", "/db/_design%2Ffoo", NULL, 0), 0);

    /* The quoted segment: control bytes, non-ASCII and '"' as '?'; long ones cut at 64. */
    assert_int_equal(proxy_access_path_hygiene("/db/%2e%2e%2f\x1b[31m\"\xc3\xa9", why, sizeof(why)),
                     -1);
    assert_string_equal(why, "path segment \"%2e%2e%2f?[31m???\" holds a dot segment (\"..\") "
                             "behind an encoded \"/\" " RFC3986);
    memcpy(big, "/db/..%2F", 9);
    memset(big + 9, 'a', 200);
    big[209] = '\0';
    assert_int_equal(proxy_access_path_hygiene(big, why, sizeof(why)), -1);
    /* the first 61 bytes of the segment, then "..." */
    n = strlen("path segment \"") + 61;
    assert_memory_equal(why + n - 3, "aaa...\" holds", 13);
    assert_int_equal(strspn(why + strlen("path segment \"..%2F"), "a"), 61 - 5);
    assert_non_null(strstr(why, "\" holds a dot segment (\"..\") behind an encoded \"/\""));
    /* only the segment that holds it is quoted */
    assert_int_equal(proxy_access_path_hygiene("/aaaa/bbbb/cc%2F..%2Fdd/eeee?x", why, sizeof(why)),
                     -1);
    assert_true(strncmp(why, "path segment \"cc%2F..%2Fdd\" holds", 33) == 0);

    /* A short buffer: cut with "...", never a lone first byte of the "§" */
    for (n = 1; n < 120; n++) {
        char small[120];
        size_t len;

        memset(small, 'X', sizeof(small));
        assert_int_equal(proxy_access_path_hygiene("/db/..%2Fx", small, n), -1);
        len = strlen(small);
        assert_true(len < n);
        assert_int_equal(small[n], 'X');
        if (n > 4 && len + 1 < strlen("path segment \"..%2Fx\" holds a dot segment (\"..\") "
                                      "behind an encoded \"/\" " RFC3986) +
                                   1) {
            assert_string_equal(small + len - 3, "...");
            assert_true((unsigned char)small[len - 4] < 0xc0);
        }
    }
}

/* ---- identity headers ---- */

static struct pki_cert *ca, *leaf, *leaf_bs;

static int
setup_pki(void **state)
{
    (void)state;
    ca = pki_cert_new(&(struct pki_opts){.cn = "Test CA", .ca = true}, NULL);
    leaf = pki_cert_new(
        &(struct pki_opts){.cn = "node1.test",
                           .org = "Site \"B\"",
                           .dns = (const char *[]){"node1.test", "alt.node1.test", NULL},
                           .ips = (const char *[]){"10.0.0.1", NULL},
                           .eku = PKI_EKU_CLIENT},
        ca);
    leaf_bs = pki_cert_new(&(struct pki_opts){.cn = "a\\b,c", .eku = PKI_EKU_CLIENT}, ca);
    return ca != NULL && leaf != NULL && leaf_bs != NULL ? 0 : -1;
}

static int
teardown_pki(void **state)
{
    (void)state;
    pki_cert_free(leaf_bs);
    pki_cert_free(leaf);
    pki_cert_free(ca);
    return 0;
}

/* The lowercase hex SHA-256 of ${cert}'s DER, computed here independently. */
static void
der_sha256_hex(X509 *cert, char *hex)
{
    unsigned char *der = NULL, md[32];
    unsigned int mdlen = 0, i;
    int n = i2d_X509(cert, &der);

    assert_true(n > 0);
    assert_int_equal(EVP_Digest(der, (size_t)n, md, &mdlen, EVP_sha256(), NULL), 1);
    OPENSSL_free(der);
    assert_int_equal(mdlen, 32);
    for (i = 0; i < mdlen; i++) {
        (void)snprintf(hex + 2 * (size_t)i, 3, "%02x", md[i]);
    }
}

static void
test_xfcc(void **state)
{
    char buf[1024], want[1024], hash[65];
    size_t need;

    (void)state;
    der_sha256_hex(leaf->x509, hash);
    (void)snprintf(want, sizeof(want),
                   "Hash=%s;Subject=\"CN=node1.test,O=Site \\\\\\\"B\\\\\\\"\";DNS=node1.test;"
                   "DNS=alt.node1.test",
                   hash);
    assert_int_equal(proxy_access_xfcc_value(leaf->x509, buf, sizeof(buf)), 0);
    assert_string_equal(buf, want);

    /* exact fit, one byte short */
    need = strlen(want) + 1;
    assert_int_equal(proxy_access_xfcc_value(leaf->x509, buf, need), 0);
    assert_string_equal(buf, want);
    assert_int_equal(proxy_access_xfcc_value(leaf->x509, buf, need - 1), -1);
    assert_string_equal(buf, "");
    assert_int_equal(proxy_access_xfcc_value(leaf->x509, buf, 10), -1);

    /* RFC 2253 escapes '\' and ','; XFCC escapes the backslashes again */
    der_sha256_hex(leaf_bs->x509, hash);
    (void)snprintf(want, sizeof(want), "Hash=%s;Subject=\"CN=a\\\\\\\\b\\\\,c\"", hash);
    assert_int_equal(proxy_access_xfcc_value(leaf_bs->x509, buf, sizeof(buf)), 0);
    assert_string_equal(buf, want);
}

static void
test_rfc9440(void **state)
{
    char buf[4096];
    unsigned char *der = NULL, dec[4096];
    int n, m;
    size_t len, b64len;

    (void)state;
    n = i2d_X509(leaf->x509, &der);
    assert_true(n > 0);
    assert_int_equal(proxy_access_rfc9440_value(leaf->x509, buf, sizeof(buf)), 0);
    len = strlen(buf);
    b64len = 4 * (((size_t)n + 2) / 3);
    assert_int_equal(len, b64len + 2);
    assert_int_equal(buf[0], ':');
    assert_int_equal(buf[len - 1], ':');
    assert_null(strchr(buf, '\n'));
    m = EVP_DecodeBlock(dec, (const unsigned char *)buf + 1, (int)b64len);
    /* EVP_DecodeBlock counts padding bytes as zeros */
    assert_true(m >= n && m - n <= 2);
    assert_memory_equal(dec, der, (size_t)n);

    /* every DER length modulo 3, with the output in a buffer that fits exactly */
    assert_int_equal(proxy_access_rfc9440_value(leaf->x509, buf, b64len + 3), 0);
    assert_int_equal(strlen(buf), b64len + 2);
    assert_int_equal(proxy_access_rfc9440_value(leaf->x509, buf, b64len + 2), -1);
    assert_int_equal(proxy_access_rfc9440_value(leaf->x509, buf, 0), -1);
    OPENSSL_free(der);

    {
        struct pki_cert *c[3];
        size_t i;

        c[0] = leaf_bs;
        c[1] = ca;
        c[2] = leaf;
        for (i = 0; i < 3; i++) {
            char exact[4096];

            der = NULL;
            n = i2d_X509(c[i]->x509, &der);
            b64len = 4 * (((size_t)n + 2) / 3);
            assert_int_equal(proxy_access_rfc9440_value(c[i]->x509, exact, b64len + 3), 0);
            m = EVP_DecodeBlock(dec, (const unsigned char *)exact + 1, (int)b64len);
            assert_true(m >= n);
            assert_memory_equal(dec, der, (size_t)n);
            OPENSSL_free(der);
        }
    }
}

static void
test_couchdb_token(void **state)
{
    static const unsigned char secret[] = "the_secret";
    char hex[128];

    (void)state;
    assert_int_equal(proxy_access_couchdb_token(CONFIG_HASH_SHA256, secret, sizeof(secret) - 1,
                                                "foo", hex, sizeof(hex)),
                     0);
    assert_string_equal(hex, "3f0786e96b20b0102b77f1a49c041be6977cfb3bf78c41a12adc121cd9b4e68a");
    /* python3: hmac.new(b"the_secret", b"foo", hashlib.sha1).hexdigest() */
    assert_int_equal(proxy_access_couchdb_token(CONFIG_HASH_SHA1, secret, sizeof(secret) - 1, "foo",
                                                hex, sizeof(hex)),
                     0);
    assert_string_equal(hex, "22047ebd7c4ec67dfbcbad7213a693249dbfbf86");

    assert_int_equal(
        proxy_access_couchdb_token(CONFIG_HASH_SHA256, secret, sizeof(secret) - 1, "foo", hex, 65),
        0);
    assert_int_equal(strlen(hex), 64);
    assert_int_equal(
        proxy_access_couchdb_token(CONFIG_HASH_SHA256, secret, sizeof(secret) - 1, "foo", hex, 64),
        -1);
    assert_int_equal(
        proxy_access_couchdb_token(CONFIG_HASH_SHA1, secret, sizeof(secret) - 1, "foo", hex, 41),
        0);
    assert_int_equal(
        proxy_access_couchdb_token(CONFIG_HASH_SHA1, secret, sizeof(secret) - 1, "foo", hex, 40),
        -1);
    /* python3: hmac.new(b"", b"foo", hashlib.sha256).hexdigest() */
    assert_int_equal(
        proxy_access_couchdb_token(CONFIG_HASH_SHA256, NULL, 0, "foo", hex, sizeof(hex)), 0);
    assert_string_equal(hex, "0c0d98f7e3d9d45e72e8877bc1b104327efb9c07b18f2ffeced76d81307f1fff");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_replicate_table, rules_reset),
        cmocka_unit_test_teardown(test_spiffe_peers, rules_reset),
        cmocka_unit_test_teardown(test_identity_choose, rules_reset),
        cmocka_unit_test_teardown(test_identity_canonical, rules_reset),
        cmocka_unit_test_teardown(test_replicate_every_db, rules_reset),
        cmocka_unit_test_teardown(test_replicate_by_direction, rules_reset),
        cmocka_unit_test_teardown(test_read_write_all, rules_reset),
        cmocka_unit_test_teardown(test_all_database_globs, rules_reset),
        cmocka_unit_test_teardown(test_glob_patterns, rules_reset),
        cmocka_unit_test_teardown(test_first_match_wins, rules_reset),
        cmocka_unit_test_teardown(test_wildcard_and_ip_peers, rules_reset),
        cmocka_unit_test_teardown(test_cn_fallback, rules_reset),
        cmocka_unit_test(test_peer_names_parse),
        cmocka_unit_test_teardown(test_why, rules_reset),
        cmocka_unit_test(test_path_parse),
        cmocka_unit_test_teardown(test_path_hygiene, rules_reset),
        cmocka_unit_test(test_xfcc),
        cmocka_unit_test(test_rfc9440),
        cmocka_unit_test(test_couchdb_token),
    };

    return cmocka_run_group_tests(tests, setup_pki, teardown_pki);
}
