/*
 * certs_cli.c: the command line of `ferry certs init-ca`, `ferry certs issue` and
 * `ferry certs inspect` (CONTRACT.md §2), and the option parser of every ferry command
 * (certs_cli_next(), over glibc's getopt_long(), which <getopt.h> declares without _GNU_SOURCE).
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/safestack.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "certs.h"
#include "certs_internal.h"

/* Exit codes of CONTRACT.md §2. */
#define CLI_OK    0
#define CLI_FAIL  1
#define CLI_USAGE 2

/* Room for one reason from the library. */
#define CLI_ERR_MAX 1024

/* Room for the one-line summary of an issued certificate. */
#define CLI_SUMMARY_MAX 2048

enum cli_cmd {
    CLI_INIT_CA,
    CLI_ISSUE,
};

/* The options of `certs init-ca` and `certs issue`: getopt_long() values past any char. */
enum cli_opt {
    OPT_DIR = 256,
    OPT_NAME,
    OPT_DAYS,
    OPT_KEY_TYPE,
    OPT_CA,
    OPT_DNS,
    OPT_IP,
    OPT_URI,
    OPT_OUT,
    OPT_KEY,
    OPT_JSON,
    OPT_END,
};

/* Every certs subcommand takes -h/--help and nothing else without a value. */
#define CLI_SHORTOPTS "-:h"

static const struct option init_ca_opts[] = {
    {"dir", required_argument, NULL, OPT_DIR},
    {"name", required_argument, NULL, OPT_NAME},
    {"days", required_argument, NULL, OPT_DAYS},
    {"key-type", required_argument, NULL, OPT_KEY_TYPE},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static const struct option issue_opts[] = {
    {"ca", required_argument, NULL, OPT_CA},
    {"name", required_argument, NULL, OPT_NAME},
    {"dns", required_argument, NULL, OPT_DNS},
    {"ip", required_argument, NULL, OPT_IP},
    {"uri", required_argument, NULL, OPT_URI},
    {"days", required_argument, NULL, OPT_DAYS},
    {"key-type", required_argument, NULL, OPT_KEY_TYPE},
    {"out", required_argument, NULL, OPT_OUT},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static const struct option inspect_opts[] = {
    {"key", required_argument, NULL, OPT_KEY},
    {"ca", required_argument, NULL, OPT_CA},
    {"name", required_argument, NULL, OPT_NAME},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

struct cli_args {
    const char *dir;
    const char *name;
    const char *ca;
    const char *out;
    int days;
    enum certs_key_type key_type;
    bool seen[OPT_END - OPT_DIR];
    const char **dns; /* points into argv; the array is ours */
    size_t n_dns;
    const char **ips;
    size_t n_ips;
    const char **uris;
    size_t n_uris;
};

/* The synopsis of each subcommand, after "usage: " or 7 spaces. */
#define CLI_SYN_INIT_CA \
    "ferry certs init-ca --dir DIR [--name NAME] [--days N] [--key-type ec|rsa]\n"
#define CLI_SYN_ISSUE                                                                \
    "ferry certs issue --ca DIR --name FQDN [--dns NAME]... [--ip ADDR]...\n"        \
    "                         [--uri SPIFFE-ID]... [--days N] [--key-type ec|rsa]\n" \
    "                         --out DIR\n"
#define CLI_SYN_INSPECT \
    "ferry certs inspect CERT [--key KEY] [--ca BUNDLE] [--name NAME] [--json]\n"

/* What each subcommand does. */
#define CLI_DOC_INIT_CA                                                            \
    "init-ca  make a private CA: DIR/ca.crt and DIR/ca.key (mode 0600).\n"         \
    "         NAME is its common name (default \"" CERTS_DEFAULT_CA_NAME "\");\n"  \
    "         valid for N days (default 3650).  An existing DIR/ca.key is never\n" \
    "         overwritten.\n"
#define CLI_DOC_ISSUE                                                                     \
    "issue    make a node certificate signed by the CA in DIR (its ca.crt and ca.key),\n" \
    "         for both server and client use (EKU serverAuth, clientAuth).  The SAN\n"    \
    "         holds FQDN (or the IP address it spells), every --dns, every --ip and\n"    \
    "         every --uri (a SPIFFE ID, spiffe://trust-domain/path, for allow: and\n"     \
    "         access peers: entries that name workloads).\n"                              \
    "         Writes OUT/FQDN.crt (certificate, then any intermediates), OUT/FQDN.key\n"  \
    "         (mode 0600) and OUT/ca.crt (the root to trust); valid for N days\n"         \
    "         (default 397, never past the CA's own expiry).\n"
#define CLI_DOC_INSPECT                                                                   \
    "inspect  show every certificate of CERT (subject, issuer, serial, SAN, EKU, key,\n"  \
    "         signature, validity, SHA-256 fingerprint, CA or not) and whether the\n"     \
    "         chain is in order; with --key whether KEY matches, with --ca whether the\n" \
    "         chain verifies against BUNDLE (and the missing link if not), with --name\n" \
    "         whether the SAN covers NAME.  Then every problem found, with its id and\n"  \
    "         fix (man ferry, section FINDINGS); --json for scripts.  Exit 0 when no\n"   \
    "         problem is an error, 1 otherwise.\n"
#define CLI_DOC_COMMON                                                                  \
    "Keys are ECDSA P-256 by default, or RSA 3072 with --key-type rsa.  Options take\n" \
    "their value as \"--opt value\" or \"--opt=value\"; N is 1 to 36500; -- ends the options.\n"

/*
 * certs_cli_usage(out):
 * Print the usage of `ferry certs` to ${out} (for `ferry help certs`).
 */
void
certs_cli_usage(FILE *out)
{
    (void)fputs("usage: " CLI_SYN_INIT_CA "       " CLI_SYN_ISSUE "       " CLI_SYN_INSPECT
                "\n" CLI_DOC_INIT_CA CLI_DOC_ISSUE CLI_DOC_INSPECT "\n" CLI_DOC_COMMON,
                out);
}

/*
 * certs_cli_help(sub, out):
 * Print the usage of `ferry certs ${sub}` ("init-ca", "issue" or "inspect") to ${out}, or
 * that of `ferry certs` (certs_cli_usage()) when ${sub} is NULL.  Returns 0, or -1 for an
 * unknown ${sub} (nothing printed).
 */
int
certs_cli_help(const char *sub, FILE *out)
{
    if (sub == NULL) {
        certs_cli_usage(out);
    } else if (strcmp(sub, "init-ca") == 0) {
        (void)fputs("usage: " CLI_SYN_INIT_CA "\n" CLI_DOC_INIT_CA "\n" CLI_DOC_COMMON, out);
    } else if (strcmp(sub, "issue") == 0) {
        (void)fputs("usage: " CLI_SYN_ISSUE "\n" CLI_DOC_ISSUE "\n" CLI_DOC_COMMON, out);
    } else if (strcmp(sub, "inspect") == 0) {
        (void)fputs("usage: " CLI_SYN_INSPECT "\n" CLI_DOC_INSPECT "\n" CLI_DOC_COMMON, out);
    } else {
        return -1;
    }
    return 0;
}

/* Report "ferry CMD: ${pre}${name, ${len} bytes}${post}" for ${p}.  Returns CERTS_CLI_BAD. */
static int
cli_bad(const struct certs_cli_parse *p, const char *pre, const char *name, size_t len,
        const char *post)
{
    fprintf(p->err, "ferry%s%s: %s%.*s%s\n", p->cmd[0] != '\0' ? " " : "", p->cmd, pre, (int)len,
            name, post);
    return CERTS_CLI_BAD;
}

/* The long option of ${p} whose `val` is ${val}, or NULL. */
static const struct option *
cli_long_by_val(const struct certs_cli_parse *p, int val)
{
    for (const struct option *o = p->longopts; o->name != NULL; o++) {
        if (o->val == val) {
            return o;
        }
    }
    return NULL;
}

/* getopt_long() said '?' for the word before argv[optind]: an unknown option or a value. */
static int
cli_unknown(const struct certs_cli_parse *p)
{
    const char *word = p->argv[optind - 1];
    const struct option *o = cli_long_by_val(p, optopt);
    size_t n = o != NULL ? strlen(o->name) : 0;
    char letter[3] = {'-', (char)optopt, '\0'};

    if (o != NULL && strncmp(word, "--", 2) == 0 && strncmp(word + 2, o->name, n) == 0 &&
        word[2 + n] == '=') {
        return cli_bad(p, "", word, n + 2, " takes no value");
    }
    if (optopt != 0 && optopt < 256) {
        /* An unknown letter: getopt_long() may still be inside the word (-xy). */
        return cli_bad(p, "unknown option \"", letter, 2, "\"");
    }
    return cli_bad(p, "unknown option \"", word, strlen(word), "\"");
}

/*
 * getopt_long() matched option ${c} (long option ${idx}, or -1) with ${optarg}: refuse an
 * abbreviated long name (the next option added would change what it means), an empty value
 * and a separate value that is another option ("--dir --name x").
 */
static int
cli_check_match(struct certs_cli_parse *p, int c, int idx)
{
    bool separate = optarg != NULL && optarg == p->argv[optind - 1];
    const char *word = p->argv[optind - (separate ? 2 : 1)];
    const char *name = idx >= 0 ? p->longopts[idx].name : NULL;
    char letter[3] = {'-', (char)c, '\0'};
    size_t n = name != NULL ? strlen(name) : 0;

    p->name = name;
    if (name != NULL &&
        (strncmp(word + 2, name, n) != 0 || (word[2 + n] != '\0' && word[2 + n] != '='))) {
        return cli_bad(p, "unknown option \"", word, strcspn(word, "="), "\"");
    }
    if (optarg != NULL && (optarg[0] == '\0' || (separate && strncmp(optarg, "--", 2) == 0))) {
        return name != NULL ? cli_bad(p, "--", name, n, " needs a value")
                            : cli_bad(p, "", letter, 2, " needs a value");
    }
    return c;
}

/*
 * certs_cli_next(p, value):
 * The next option or argument of ${p}, through getopt_long() (reset by the first call, so
 * every command parses from a clean state): the option's `val` with its value (never empty,
 * never a separate word beginning with "--") in *${value}; CERTS_CLI_ARG with the argument
 * in *${value}, also for every word after "--"; CERTS_CLI_DONE at the end; or CERTS_CLI_BAD
 * after printing "ferry CMD: ..." on ${p}->err for an unknown option, a missing or unwanted
 * value, or more than ${p}->max_args arguments (the caller prints its usage and exits 2).
 */
int
certs_cli_next(struct certs_cli_parse *p, const char **value)
{
    int c, idx = -1;

    *value = NULL;
    p->name = NULL;
    if (!p->started) {
        /* glibc: optind 0 re-initialises getopt completely (a previous parse's state too). */
        optind = 0;
        opterr = 0;
        p->started = true;
    }
    if (!p->ended) {
        c = getopt_long(p->argc, p->argv, p->shortopts, p->longopts, &idx);
        if (c == ':') {
            return cli_bad(p, "", p->argv[optind - 1], strcspn(p->argv[optind - 1], "="),
                           " needs a value");
        }
        if (c == '?') {
            return cli_unknown(p);
        }
        if (c != -1) {
            *value = optarg;
        }
        if (c != -1 && c != CERTS_CLI_ARG) {
            return cli_check_match(p, c, idx);
        }
        /* -1: the end, or "--", after which every word is an argument. */
        p->ended = c == -1;
    }
    if (*value == NULL && optind < p->argc) {
        *value = p->argv[optind++];
    }
    if (*value == NULL) {
        return CERTS_CLI_DONE;
    }
    if (++p->n_args > p->max_args) {
        return cli_bad(p, "unexpected argument \"", *value, strlen(*value), "\"");
    }
    return CERTS_CLI_ARG;
}

/* Report a usage error of ${cmd}: "${msg}${arg}", then the usage text.  Returns CLI_USAGE. */
static int
usage_error(FILE *err, const char *cmd, const char *msg, const char *arg)
{
    fprintf(err, "ferry certs%s%s: %s%s\n", cmd != NULL ? " " : "", cmd != NULL ? cmd : "", msg,
            arg != NULL ? arg : "");
    certs_cli_usage(err);
    return CLI_USAGE;
}

/* Parse the number of days in ${s}: a whole number in CERTS_DAYS_MIN..MAX.  0 or -1. */
static int
parse_days(const char *s, int *days)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < CERTS_DAYS_MIN || v > CERTS_DAYS_MAX) {
        return -1;
    }
    *days = (int)v;
    return 0;
}

/*
 * Parse argv[1..] of ${cmd} into ${a}.  Returns CLI_OK, CLI_USAGE (reported on ${err}) or,
 * for -h/--help, -1.
 */
static int
parse_args(enum cli_cmd cmd, int argc, char **argv, struct cli_args *a, FILE *err)
{
    const char *cmdname = cmd == CLI_INIT_CA ? "init-ca" : "issue";
    struct certs_cli_parse p = {
        .argc = argc,
        .argv = argv,
        .cmd = cmd == CLI_INIT_CA ? "certs init-ca" : "certs issue",
        .shortopts = CLI_SHORTOPTS,
        .longopts = cmd == CLI_INIT_CA ? init_ca_opts : issue_opts,
        .err = err,
    };
    const char *value;
    int c;

    while ((c = certs_cli_next(&p, &value)) != CERTS_CLI_DONE) {
        if (c == 'h') {
            return -1;
        }
        if (c < OPT_DIR || c >= OPT_END) {
            /* CERTS_CLI_BAD (reported), or an argument: neither subcommand takes one. */
            certs_cli_usage(err);
            return CLI_USAGE;
        }
        /* Repeating a single-valued option is most likely a mistake: say so. */
        if (c != OPT_DNS && c != OPT_IP && c != OPT_URI && a->seen[c - OPT_DIR]) {
            return usage_error(err, cmdname, "option given twice: --", p.name);
        }
        a->seen[c - OPT_DIR] = true;

        switch (c) {
        case OPT_DIR:
            a->dir = value;
            break;
        case OPT_NAME:
            a->name = value;
            break;
        case OPT_CA:
            a->ca = value;
            break;
        case OPT_OUT:
            a->out = value;
            break;
        case OPT_DAYS:
            if (parse_days(value, &a->days) != 0) {
                return usage_error(err, cmdname,
                                   "--days needs a whole number from 1 to 36500, got ", value);
            }
            break;
        case OPT_KEY_TYPE:
            if (strcmp(value, "ec") == 0) {
                a->key_type = CERTS_KEY_EC;
            } else if (strcmp(value, "rsa") == 0) {
                a->key_type = CERTS_KEY_RSA;
            } else {
                return usage_error(err, cmdname, "--key-type must be ec or rsa, got ", value);
            }
            break;
        case OPT_DNS:
            a->dns[a->n_dns++] = value;
            break;
        case OPT_IP:
            a->ips[a->n_ips++] = value;
            break;
        default: /* OPT_URI */
            a->uris[a->n_uris++] = value;
            break;
        }
    }
    return CLI_OK;
}

/* Print "wrote PATH" (+ ${note}) for DIR/FILE. */
static void
print_wrote(FILE *out, const char *dir, const char *file, const char *note)
{
    char path[CERTS_PATH_MAX];

    if (certs_file_path(path, sizeof(path), dir, file, NULL, 0) != 0) {
        return;
    }
    fprintf(out, "wrote %s%s\n", path, note);
}

/* Append to ${buf} (of ${len}) like snprintf, never overrunning. */
static void
append(char *buf, size_t len, const char *a, const char *b)
{
    size_t used = strlen(buf);

    if (used < len) {
        snprintf(buf + used, len - used, "%s%s", a, b);
    }
}

/* Summarise ${x}: "SAN DNS:a,IP:b; EKU serverAuth,clientAuth; expires YYYY-MM-DD". */
static void
describe_leaf(X509 *x, char *buf, size_t len)
{
    GENERAL_NAMES *gens;
    const GENERAL_NAME *gn;
    const ASN1_STRING *v;
    const char *sep = "";
    char text[256 + 8];
    char date[32];
    uint32_t xku;
    int i, type, n;

    buf[0] = '\0';
    append(buf, len, "SAN ", "");
    gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
        gn = sk_GENERAL_NAME_value(gens, i);
        v = GENERAL_NAME_get0_value(gn, &type);
        text[0] = '\0';
        if (type == GEN_DNS) {
            n = ASN1_STRING_length(v);
            snprintf(text, sizeof(text), "DNS:%.*s", n > 255 ? 255 : n,
                     (const char *)ASN1_STRING_get0_data(v));
        } else if (type == GEN_URI) {
            n = ASN1_STRING_length(v);
            snprintf(text, sizeof(text), "URI:%.*s", n > 255 ? 255 : n,
                     (const char *)ASN1_STRING_get0_data(v));
        } else if (type == GEN_IPADD) {
            char ip[INET6_ADDRSTRLEN];
            int af = ASN1_STRING_length(v) == 4 ? AF_INET : AF_INET6;
            if (inet_ntop(af, ASN1_STRING_get0_data(v), ip, sizeof(ip)) != NULL) {
                snprintf(text, sizeof(text), "IP:%s", ip);
            }
        }
        if (text[0] != '\0') {
            append(buf, len, sep, text);
            sep = ",";
        }
    }
    GENERAL_NAMES_free(gens);

    append(buf, len, "; EKU ", "");
    xku = X509_get_extended_key_usage(x);
    sep = "";
    if (xku & XKU_SSL_SERVER) {
        append(buf, len, sep, "serverAuth");
        sep = ",";
    }
    if (xku & XKU_SSL_CLIENT) {
        append(buf, len, sep, "clientAuth");
    }
    if (certs_x509_date_str(X509_get0_notAfter(x), date, sizeof(date)) == 0) {
        append(buf, len, "; expires ", date);
    }
}

/* `ferry certs init-ca`. */
static int
run_init_ca(const struct cli_args *a, FILE *out, FILE *err)
{
    struct certs_ca_params p;
    char reason[CLI_ERR_MAX];
    char path[CERTS_PATH_MAX];
    char date[32];
    STACK_OF(X509) * sk;

    memset(&p, 0, sizeof(p));
    p.dir = a->dir;
    p.name = a->name;
    p.days = a->days;
    p.key_type = a->key_type;
    if (certs_ca_init(&p, reason, sizeof(reason)) != 0) {
        fprintf(err, "ferry certs init-ca: %s\n", reason);
        return CLI_FAIL;
    }
    print_wrote(out, a->dir, "ca.crt", "");
    print_wrote(out, a->dir, "ca.key", " (mode 0600)");

    /* Read the result back for the summary: what a later `inspect` would show. */
    if (certs_file_path(path, sizeof(path), a->dir, "ca.crt", NULL, 0) == 0 &&
        (sk = certs_file_read_certs(path, NULL, 0)) != NULL) {
        if (certs_x509_date_str(X509_get0_notAfter(sk_X509_value(sk, 0)), date, sizeof(date)) ==
            0) {
            fprintf(out, "created CA \"%s\": key %s; expires %s\n",
                    a->name != NULL ? a->name : CERTS_DEFAULT_CA_NAME,
                    certs_x509_key_type_str(a->key_type), date);
        }
        sk_X509_pop_free(sk, X509_free);
    }
    return CLI_OK;
}

/* `ferry certs issue`. */
static int
run_issue(const struct cli_args *a, FILE *out, FILE *err)
{
    struct certs_issue_params p;
    char reason[CLI_ERR_MAX];
    char file[CERTS_PATH_MAX], path[CERTS_PATH_MAX], ca_crt[CERTS_PATH_MAX];
    char summary[CLI_SUMMARY_MAX];
    char note[64];
    STACK_OF(X509) * sk;
    bool same_ca;
    int n;

    memset(&p, 0, sizeof(p));
    p.ca_dir = a->ca;
    p.name = a->name;
    p.dns = a->dns;
    p.n_dns = a->n_dns;
    p.ips = a->ips;
    p.n_ips = a->n_ips;
    p.uris = a->uris;
    p.n_uris = a->n_uris;
    p.days = a->days;
    p.key_type = a->key_type;
    p.out_dir = a->out;

    /* Issuing into the CA's own directory leaves its ca.crt as it is (see certs_issue()). */
    same_ca = certs_file_path(path, sizeof(path), a->out, "ca.crt", NULL, 0) == 0 &&
              certs_file_path(ca_crt, sizeof(ca_crt), a->ca, "ca.crt", NULL, 0) == 0 &&
              certs_file_same(path, ca_crt);

    if (certs_issue(&p, reason, sizeof(reason)) != 0) {
        fprintf(err, "ferry certs issue: %s\n", reason);
        return CLI_FAIL;
    }

    snprintf(file, sizeof(file), "%s.crt", a->name);
    note[0] = '\0';
    summary[0] = '\0';
    if (certs_file_path(path, sizeof(path), a->out, file, NULL, 0) == 0 &&
        (sk = certs_file_read_certs(path, NULL, 0)) != NULL) {
        n = sk_X509_num(sk) - 1;
        if (n > 0) {
            snprintf(note, sizeof(note), " (certificate + %d intermediate%s)", n,
                     n == 1 ? "" : "s");
        }
        describe_leaf(sk_X509_value(sk, 0), summary, sizeof(summary));
        sk_X509_pop_free(sk, X509_free);
    }
    print_wrote(out, a->out, file, note);
    snprintf(file, sizeof(file), "%s.key", a->name);
    print_wrote(out, a->out, file, " (mode 0600)");
    if (same_ca) {
        if (certs_file_path(path, sizeof(path), a->out, "ca.crt", NULL, 0) == 0) {
            fprintf(out, "kept %s (the CA's own certificate)\n", path);
        }
    } else {
        print_wrote(out, a->out, "ca.crt", "");
    }
    if (summary[0] != '\0') {
        fprintf(out, "issued %s: %s\n", a->name, summary);
    }
    return CLI_OK;
}

/* `ferry certs inspect CERT [--key KEY] [--ca BUNDLE] [--name NAME] [--json]`. */
static int
run_inspect(int argc, char **argv, FILE *out, FILE *err)
{
    struct certs_cli_parse cp = {
        .argc = argc,
        .argv = argv,
        .cmd = "certs inspect",
        .shortopts = CLI_SHORTOPTS,
        .longopts = inspect_opts,
        .max_args = SIZE_MAX, /* a second CERT gets its own message below */
        .err = err,
    };
    struct certs_diag_params p;
    const char **slot;
    const char *value;
    bool json = false, color;
    int c;

    memset(&p, 0, sizeof(p));
    while ((c = certs_cli_next(&cp, &value)) != CERTS_CLI_DONE) {
        slot = NULL;
        if (c == CERTS_CLI_BAD) {
            certs_cli_usage(err);
            return CLI_USAGE;
        }
        if (c == 'h') {
            (void)certs_cli_help("inspect", out);
            return CLI_OK;
        }
        if (c == OPT_JSON) {
            json = true;
        } else if (c == CERTS_CLI_ARG) {
            if (p.cert != NULL) {
                return usage_error(err, "inspect", "more than one certificate file: ", value);
            }
            p.cert = value;
        } else {
            slot = c == OPT_KEY ? &p.key : c == OPT_CA ? &p.ca : &p.name;
        }
        if (slot != NULL && *slot != NULL) {
            return usage_error(err, "inspect", "option given twice: --", cp.name);
        }
        if (slot != NULL) {
            *slot = value;
        }
    }
    if (p.cert == NULL) {
        return usage_error(err, "inspect", "missing the certificate file (CERT)", NULL);
    }
    /* A certificate for ferry serves both roles (certs issue gives both EKUs). */
    p.need_server_auth = true;
    p.need_client_auth = true;
    color = !json && isatty(fileno(out)) && getenv("NO_COLOR") == NULL;
    return certs_inspect(&p, json, color, out);
}

/*
 * certs_cli(argc, argv, out, err):
 * `ferry certs SUBCOMMAND ...` with ${argv}[0] = "init-ca" | "issue" | "inspect": parse the
 * options of CONTRACT.md §2 ("--opt value" or "--opt=value"; "--" ends the options) with
 * certs_cli_next(), run, print results to ${out} and problems to ${err}.  -h/--help prints
 * the subcommand's usage (certs_cli_help()) to ${out} and returns 0.  Returns the
 * exit code: 0 success (inspect: no error finding), 1 failure, 2 usage error.
 */
int
certs_cli(int argc, char **argv, FILE *out, FILE *err)
{
    struct cli_args a;
    enum cli_cmd cmd;
    const char *cmdname;
    int rc;

    if (argc < 1 || argv == NULL || argv[0] == NULL) {
        return usage_error(err, NULL, "missing subcommand (init-ca, issue or inspect)", NULL);
    }
    cmdname = argv[0];
    if (strcmp(cmdname, "init-ca") == 0) {
        cmd = CLI_INIT_CA;
    } else if (strcmp(cmdname, "issue") == 0) {
        cmd = CLI_ISSUE;
    } else if (strcmp(cmdname, "inspect") == 0) {
        return run_inspect(argc, argv, out, err);
    } else if (strcmp(cmdname, "-h") == 0 || strcmp(cmdname, "--help") == 0 ||
               strcmp(cmdname, "help") == 0) {
        certs_cli_usage(out);
        return CLI_OK;
    } else {
        return usage_error(err, NULL,
                           "unknown subcommand (expected init-ca, issue or inspect): ", cmdname);
    }

    memset(&a, 0, sizeof(a));
    a.key_type = CERTS_KEY_EC;
    /* Each --dns/--ip/--uri uses an argument, so argc entries are always enough. */
    a.dns = calloc((size_t)argc, sizeof(*a.dns));
    a.ips = calloc((size_t)argc, sizeof(*a.ips));
    a.uris = calloc((size_t)argc, sizeof(*a.uris));
    if (a.dns == NULL || a.ips == NULL || a.uris == NULL) {
        fprintf(err, "ferry certs %s: out of memory\n", cmdname);
        rc = CLI_FAIL;
        goto done;
    }

    rc = parse_args(cmd, argc, argv, &a, err);
    if (rc == -1) {
        (void)certs_cli_help(cmdname, out);
        rc = CLI_OK;
        goto done;
    }
    if (rc != CLI_OK) {
        goto done;
    }

    if (cmd == CLI_INIT_CA) {
        if (a.dir == NULL) {
            rc = usage_error(err, cmdname, "missing --", "dir");
            goto done;
        }
        rc = run_init_ca(&a, out, err);
    } else {
        if (a.ca == NULL || a.name == NULL || a.out == NULL) {
            rc = usage_error(err, cmdname, "missing --",
                             a.ca == NULL     ? "ca"
                             : a.name == NULL ? "name"
                                              : "out");
            goto done;
        }
        rc = run_issue(&a, out, err);
    }

done:
    free(a.dns);
    free(a.ips);
    free(a.uris);
    return rc;
}
