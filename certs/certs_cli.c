/*
 * certs_cli.c: the command line of `ferry certs init-ca`, `ferry certs issue` and
 * `ferry certs inspect` (CONTRACT.md §2).  Parsing is by hand: getopt_long() is a GNU extension.
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
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

/* The options of both subcommands; each subcommand accepts its own subset. */
enum cli_opt {
    OPT_DIR,
    OPT_NAME,
    OPT_DAYS,
    OPT_KEY_TYPE,
    OPT_CA,
    OPT_DNS,
    OPT_IP,
    OPT_URI,
    OPT_OUT,
};

struct cli_spec {
    const char *name;
    enum cli_opt opt;
    bool init_ca; /* accepted by init-ca */
    bool issue;   /* accepted by issue */
};

static const struct cli_spec cli_specs[] = {
    {"dir", OPT_DIR, true, false},  {"name", OPT_NAME, true, true},
    {"days", OPT_DAYS, true, true}, {"key-type", OPT_KEY_TYPE, true, true},
    {"ca", OPT_CA, false, true},    {"dns", OPT_DNS, false, true},
    {"ip", OPT_IP, false, true},    {"uri", OPT_URI, false, true},
    {"out", OPT_OUT, false, true},
};

struct cli_args {
    const char *dir;
    const char *name;
    const char *ca;
    const char *out;
    int days;
    enum certs_key_type key_type;
    bool seen[OPT_OUT + 1];
    const char **dns; /* points into argv; the array is ours */
    size_t n_dns;
    const char **ips;
    size_t n_ips;
    const char **uris;
    size_t n_uris;
};

/*
 * certs_cli_usage(out):
 * Print the usage of `ferry certs` to ${out} (for `ferry help certs`).
 */
void
certs_cli_usage(FILE *out)
{
    fputs("usage: ferry certs init-ca --dir DIR [--name NAME] [--days N] [--key-type ec|rsa]\n"
          "       ferry certs issue --ca DIR --name FQDN [--dns NAME]... [--ip ADDR]...\n"
          "                         [--uri SPIFFE-ID]... [--days N] [--key-type ec|rsa]\n"
          "                         --out DIR\n"
          "       ferry certs inspect CERT [--key KEY] [--ca BUNDLE] [--name NAME] [--json]\n"
          "\n"
          "init-ca  make a private CA: DIR/ca.crt and DIR/ca.key (mode 0600).\n"
          "         NAME is its common name (default \"" CERTS_DEFAULT_CA_NAME "\");\n"
          "         valid for N days (default 3650).  An existing DIR/ca.key is never\n"
          "         overwritten.\n"
          "issue    make a node certificate signed by the CA in DIR (its ca.crt and ca.key),\n"
          "         for both server and client use (EKU serverAuth, clientAuth).  The SAN\n"
          "         holds FQDN (or the IP address it spells), every --dns, every --ip and\n"
          "         every --uri (a SPIFFE ID, spiffe://trust-domain/path, for allow: and\n"
          "         access peers: entries that name workloads).\n"
          "         Writes OUT/FQDN.crt (certificate, then any intermediates), OUT/FQDN.key\n"
          "         (mode 0600) and OUT/ca.crt (the root to trust); valid for N days\n"
          "         (default 397, never past the CA's own expiry).\n"
          "inspect  show every certificate of CERT (subject, issuer, serial, SAN, EKU, key,\n"
          "         signature, validity, SHA-256 fingerprint, CA or not) and whether the\n"
          "         chain is in order; with --key whether KEY matches, with --ca whether the\n"
          "         chain verifies against BUNDLE (and the missing link if not), with --name\n"
          "         whether the SAN covers NAME.  Then every problem found, with its id and\n"
          "         fix (man ferry, section FINDINGS); --json for scripts.  Exit 0 when no\n"
          "         problem is an error, 1 otherwise.\n"
          "\n"
          "Keys are ECDSA P-256 by default, or RSA 3072 with --key-type rsa.  Options take\n"
          "their value as \"--opt value\" or \"--opt=value\"; N is 1 to 36500.\n",
          out);
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
parse_args(enum cli_cmd cmd, const char *cmdname, int argc, char **argv, struct cli_args *a,
           FILE *err)
{
    const struct cli_spec *spec;
    const char *arg, *opt, *eq, *value;
    size_t namelen, k;
    int i;

    for (i = 1; i < argc; i++) {
        arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            return -1;
        }
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            return usage_error(err, cmdname, "unexpected argument ", arg);
        }

        /* "--opt=value" or "--opt value". */
        opt = arg + 2;
        eq = strchr(opt, '=');
        namelen = (eq != NULL) ? (size_t)(eq - opt) : strlen(opt);
        spec = NULL;
        for (k = 0; k < sizeof(cli_specs) / sizeof(cli_specs[0]); k++) {
            if (strlen(cli_specs[k].name) == namelen &&
                strncmp(cli_specs[k].name, opt, namelen) == 0 &&
                (cmd == CLI_INIT_CA ? cli_specs[k].init_ca : cli_specs[k].issue)) {
                spec = &cli_specs[k];
                break;
            }
        }
        if (spec == NULL) {
            return usage_error(err, cmdname, "unknown option ", arg);
        }
        if (eq != NULL) {
            value = eq + 1;
        } else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
            value = argv[++i];
        } else {
            value = NULL;
        }
        if (value == NULL || value[0] == '\0') {
            return usage_error(err, cmdname, "missing value for --", spec->name);
        }

        /* Repeating a single-valued option is most likely a mistake: say so. */
        if (spec->opt != OPT_DNS && spec->opt != OPT_IP && spec->opt != OPT_URI &&
            a->seen[spec->opt]) {
            return usage_error(err, cmdname, "option given twice: --", spec->name);
        }
        a->seen[spec->opt] = true;

        switch (spec->opt) {
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
        case OPT_URI:
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
    static const char *const with_value[] = {"key", "ca", "name"};
    struct certs_diag_params p;
    const char **slot[3];
    const char *arg, *opt, *eq, *value;
    size_t namelen, k;
    bool json = false, color;
    int i;

    memset(&p, 0, sizeof(p));
    slot[0] = &p.key;
    slot[1] = &p.ca;
    slot[2] = &p.name;
    for (i = 1; i < argc; i++) {
        arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            certs_cli_usage(out);
            return CLI_OK;
        }
        if (strcmp(arg, "--json") == 0) {
            json = true;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            if (p.cert != NULL) {
                return usage_error(err, "inspect", "more than one certificate file: ", arg);
            }
            p.cert = arg;
            continue;
        }
        opt = arg + 2;
        eq = strchr(opt, '=');
        namelen = (eq != NULL) ? (size_t)(eq - opt) : strlen(opt);
        for (k = 0; k < 3; k++) {
            if (strlen(with_value[k]) == namelen && strncmp(with_value[k], opt, namelen) == 0) {
                break;
            }
        }
        if (k == 3) {
            return usage_error(err, "inspect", "unknown option ", arg);
        }
        if (eq != NULL) {
            value = eq + 1;
        } else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
            value = argv[++i];
        } else {
            value = NULL;
        }
        if (value == NULL || value[0] == '\0') {
            return usage_error(err, "inspect", "missing value for --", with_value[k]);
        }
        if (*slot[k] != NULL) {
            return usage_error(err, "inspect", "option given twice: --", with_value[k]);
        }
        *slot[k] = value;
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
 * options of CONTRACT.md §2 ("--opt value" or "--opt=value"), run, print results to ${out}
 * and problems to ${err}.  -h/--help prints the usage to ${out} and returns 0.  Returns the
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

    rc = parse_args(cmd, cmdname, argc, argv, &a, err);
    if (rc == -1) {
        certs_cli_usage(out);
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
