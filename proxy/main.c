/*
 * main: argv -> subcommand.  The only place that calls exit().
 *
 * Exit codes (CONTRACT §2): 0 success; 1 a problem was found or a runtime failure; 2 a usage
 * error.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <http_parser.h>
#include <openssl/crypto.h>
#include <yaml.h>

#include "certs.h"
#include "config.h"
#include "log.h"
#include "proxy.h"

#define EXIT_PROBLEM 1
#define EXIT_USAGE   2

#define DEV_DATA_DIR "./ferry-data"

static const char embedded_config[] = "# ferry's embedded development default (no ferry.yaml)\n"
                                      "tls:\n"
                                      "  cert: " DEV_DATA_DIR "/node.crt\n"
                                      "  key: " DEV_DATA_DIR "/node.key\n"
                                      "  ca: " DEV_DATA_DIR "/ca.crt\n"
                                      "listeners:\n"
                                      "  - name: inbound\n"
                                      "    mode: inbound\n"
                                      "    listen: \"0.0.0.0:6984\"\n"
                                      "    backend: \"127.0.0.1:5984\"\n";

/* The synopsis of each command: the first lines of its help and of its usage errors. */
#define SYN_RUN "usage: ferry run [-c FILE]\n"
#define SYN_CHECK                                               \
    "usage: ferry check [-c FILE] [--hostname NAME] [--json]\n" \
    "       ferry check --peer HOST:PORT [-c FILE] [--listener NAME] [--json]\n"
#define SYN_VERSION "usage: ferry version\n"
#define SYN_HELP    "usage: ferry help [COMMAND [SUBCOMMAND]]\n"

/* One command of the top level: its name, synopsis and the rest of its help. */
struct cmd_doc {
    const char *name;
    const char *synopsis;
    const char *text;
};

static const struct cmd_doc cmd_docs[] = {
    {"run", SYN_RUN,
     "Serve the listeners of FILE (default ./ferry.yaml, then /etc/ferry/ferry.yaml,\n"
     "then the embedded development default) until SIGTERM or SIGINT; SIGHUP or a\n"
     "changed certificate, key, CA, CRL or secret file reloads.\n"
     "Before serving, and on every reload, ferry run applies the checks of ferry check.\n"
     "An error finding stops the start (printed as check prints it; exit 1) or the\n"
     "reload (the running configuration stays), except an expired or not yet valid\n"
     "certificate and an expired CRL, which only a renewed file fixes: ferry serves.\n"
     "Other findings are logged as event=finding (id, file, msg, fix) at start and\n"
     "after each reload (see man ferry, section FINDINGS).\n"},
    {"check", SYN_CHECK,
     "Load FILE and every certificate, key, CA, CRL and secret it names the way\n"
     "`ferry run` would, and check what each listener needs (EKU, SAN, chain, dates,\n"
     "key match and permissions, CRLs). Each problem is printed with its id, file and\n"
     "fix (man ferry, section FINDINGS); --json prints one JSON document for scripts.\n"
     "--hostname NAME: peers dial this node as NAME; warn when an inbound listener's\n"
     "certificate does not cover it (san-hostname; without it, no such warning).\n"
     "With --peer, handshake with HOST:PORT as the outbound listener NAME (default:\n"
     "the first outbound listener) would, and explain the result.\n"
     "Exit 0 when no problem is an error, 1 otherwise, 2 on a usage error.\n"},
    {"version", SYN_VERSION, "Print the versions of ferry and of the libraries it runs with.\n"},
    {"help", SYN_HELP,
     "Print the usage of every command, or the help of COMMAND (run, check, certs,\n"
     "version, help) or of `ferry certs SUBCOMMAND` (init-ca, issue, inspect).\n"},
};

static void
usage(FILE *out)
{
    fprintf(out,
            "usage: ferry COMMAND [OPTIONS]\n"
            "\n"
            "  run   [-c FILE]      run in the foreground until SIGTERM/SIGINT\n"
            "  check [-c FILE] [--hostname NAME] [--json]\n"
            "                       validate the config and every file it names, then exit\n"
            "  check --peer HOST:PORT [-c FILE] [--listener NAME]\n"
            "                       handshake with a live peer and explain the result\n"
            "  certs inspect CERT [--key KEY] [--ca BUNDLE] [--name NAME] [--json]\n"
            "                       explain a certificate, its key and its chain\n"
            "  certs init-ca --dir DIR [--name NAME] [--days N] [--key-type ec|rsa]\n"
            "  certs issue   --ca DIR --name FQDN [--dns NAME]... [--ip ADDR]...\n"
            "                [--days N] [--key-type ec|rsa] --out DIR\n"
            "  version              print the versions of ferry and its libraries\n"
            "  help [COMMAND]       this text, or the help of COMMAND\n"
            "\n"
            "Every command takes -h or --help (its help), \"--opt value\" or \"--opt=value\",\n"
            "and -- to end its options.\n"
            "Without -c, ferry reads ./ferry.yaml, then /etc/ferry/ferry.yaml; `ferry run`\n"
            "with neither uses an embedded development default (certificates in " DEV_DATA_DIR ",\n"
            "inbound 0.0.0.0:6984 -> 127.0.0.1:5984).\n"
            "Exit codes: 0 success, 1 a problem was found, 2 usage error.\n");
}

/* The doc of command ${name}, or NULL. */
static const struct cmd_doc *
cmd_doc_of(const char *name)
{
    for (size_t i = 0; i < sizeof(cmd_docs) / sizeof(cmd_docs[0]); i++) {
        if (strcmp(cmd_docs[i].name, name) == 0) {
            return &cmd_docs[i];
        }
    }
    return NULL;
}

/* Print the help of command ${name} (one of cmd_docs) to stdout; returns 0. */
static int
cmd_help_of(const char *name)
{
    const struct cmd_doc *d = cmd_doc_of(name);

    printf("%s\n%s", d->synopsis, d->text);
    return 0;
}

/* After a usage error that certs_cli_next() reported: the synopsis of ${name}; EXIT_USAGE. */
static int
usage_hint(const char *name)
{
    (void)fputs(cmd_doc_of(name)->synopsis, stderr);
    return EXIT_USAGE;
}

/*
 * The options every command takes (-h/--help); the parse of ${argv} (argv[0] = the command)
 * as command ${name} with ${longopts}, ${shortopts} and up to ${max_args} arguments.
 */
static struct certs_cli_parse
cmd_parse(const char *name, int argc, char **argv, const char *shortopts,
          const struct option *longopts, size_t max_args)
{
    struct certs_cli_parse p = {
        .argc = argc,
        .argv = argv,
        .cmd = name,
        .shortopts = shortopts,
        .longopts = longopts,
        .max_args = max_args,
        .err = stderr,
    };

    return p;
}

static const struct option help_opts[] = {
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* `ferry help [COMMAND [SUBCOMMAND]]` (also `ferry -h`, `ferry --help`). */
static int
cmd_help(int argc, char **argv)
{
    struct certs_cli_parse p = cmd_parse("help", argc, argv, "-:h", help_opts, 2);
    const char *words[2] = {NULL, NULL}, *value;
    int c;

    while ((c = certs_cli_next(&p, &value)) != CERTS_CLI_DONE) {
        if (c == CERTS_CLI_BAD) {
            return usage_hint("help");
        }
        if (c == 'h') {
            return cmd_help_of("help");
        }
        words[p.n_args - 1] = value;
    }
    if (words[0] == NULL) {
        usage(stdout);
        return 0;
    }
    if (strcmp(words[0], "certs") == 0) {
        if (certs_cli_help(words[1], stdout) < 0) {
            fprintf(stderr, "ferry help: unknown command \"certs %s\"\n", words[1]);
            certs_cli_usage(stderr);
            return EXIT_USAGE;
        }
        return 0;
    }
    if (cmd_doc_of(words[0]) == NULL || words[1] != NULL) {
        fprintf(stderr, "ferry help: unknown command \"%s%s%s\"\n", words[0],
                words[1] != NULL ? " " : "", words[1] != NULL ? words[1] : "");
        usage(stderr);
        return EXIT_USAGE;
    }
    return cmd_help_of(words[0]);
}

/* `ferry version` (also `ferry --version`). */
static int
cmd_version(int argc, char **argv)
{
    struct certs_cli_parse p = cmd_parse("version", argc, argv, "-:h", help_opts, 0);
    unsigned long hp = http_parser_version();
    const char *value;
    int c;

    if ((c = certs_cli_next(&p, &value)) != CERTS_CLI_DONE) {
        return c == 'h' ? cmd_help_of("version") : usage_hint("version");
    }
    printf("ferry %s\n", FERRY_VERSION);
    printf("OpenSSL %s\n", OpenSSL_version(OPENSSL_VERSION_STRING));
    printf("libevent %s\n", event_get_version());
    printf("libyaml %s\n", yaml_get_version_string());
    printf("http-parser %lu.%lu.%lu\n", (hp >> 16) & 255, (hp >> 8) & 255, hp & 255);
    return 0;
}

static bool
file_exists(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0;
}

/* The config file to use: -c, else ./ferry.yaml, else /etc/ferry/ferry.yaml, else NULL. */
static const char *
find_config(const char *given)
{
    if (given != NULL) {
        return given;
    }
    if (file_exists(CONFIG_DEFAULT_PATH_LOCAL)) {
        return CONFIG_DEFAULT_PATH_LOCAL;
    }
    if (file_exists(CONFIG_DEFAULT_PATH_SYSTEM)) {
        return CONFIG_DEFAULT_PATH_SYSTEM;
    }
    return NULL;
}

static void
print_config_errors(const struct config_errors *errs, const char *path)
{
    char line[1024];

    for (size_t i = 0; i < errs->n; i++) {
        fprintf(stderr, "%s\n", config_error_format(&errs->v[i], line, sizeof(line)));
    }
    fprintf(stderr, "ferry: %zu error%s in %s\n", errs->n, errs->n == 1 ? "" : "s", path);
}

/* The embedded default: make or reuse the development PKI, then load the built-in YAML. */
static struct config *
load_embedded(void)
{
    struct config_errors errs = {0};
    struct config *cfg;
    char host[256], err[512];
    bool created = false;

    if (gethostname(host, sizeof(host)) != 0 || host[0] == '\0') {
        snprintf(host, sizeof(host), "localhost");
    }
    host[sizeof(host) - 1] = '\0';
    if (certs_issue_ensure_dev(DEV_DATA_DIR, host, &created, err, sizeof(err)) < 0) {
        fprintf(stderr, "ferry: cannot prepare the development certificates in %s: %s\n",
                DEV_DATA_DIR, err);
        return NULL;
    }
    fprintf(stderr,
            "ferry: WARNING: no ferry.yaml found (looked for %s and %s); running the embedded\n"
            "  development default: inbound 0.0.0.0:6984 -> 127.0.0.1:5984 with a development\n"
            "  CA and node certificate %s in %s/ (keys mode 0600).\n"
            "  These certificates are for development only. For production, make your own:\n"
            "    ferry certs init-ca --dir /etc/ferry/ca --name \"Site A CA\"\n"
            "    ferry certs issue --ca /etc/ferry/ca --name node1.example.org --out /etc/ferry\n"
            "  and write /etc/ferry/ferry.yaml (every key: man ferry.yaml).\n",
            CONFIG_DEFAULT_PATH_LOCAL, CONFIG_DEFAULT_PATH_SYSTEM,
            created ? "(just created)" : "(reused)", DEV_DATA_DIR);
    cfg = config_load_string("<embedded default>", embedded_config, strlen(embedded_config), &errs);
    if (cfg == NULL) {
        print_config_errors(&errs, "<embedded default>");
        config_errors_clear(&errs);
    }
    return cfg;
}

static struct config *
load_config(const char *path)
{
    struct config_errors errs = {0};
    struct config *cfg = config_load(path, &errs);

    if (cfg == NULL) {
        print_config_errors(&errs, path);
        config_errors_clear(&errs);
    }
    return cfg;
}

/*
 * Log one finding the way `ferry check` words it: event=finding at level error or warn, with
 * id, file (FILE:LINE:COL for a config line), msg and fix.
 */
static void
log_finding(const struct certs_finding *f)
{
    char where[1200];
    const char *file = f->file;

    if (file != NULL && f->line > 0) {
        snprintf(where, sizeof(where), "%s:%u:%u", f->file, f->line, f->col);
        file = where;
    }
    log_kv(f->severity == CERTS_SEV_ERROR ? LOG_ERROR : LOG_WARN, "finding", "id", f->id, "file",
           file, "msg", f->message, "fix", f->fix, (const char *)NULL);
}

/* How many findings of ${fs} stop run (certs_check_stops_run). */
static size_t
count_stops(const struct certs_findings *fs)
{
    size_t stops = 0;

    for (size_t i = 0; i < fs->n; i++) {
        stops += certs_check_stops_run(&fs->v[i]) ? 1 : 0;
    }
    return stops;
}

/* Log every finding of ${fs}; returns count_stops(). */
static size_t
log_findings(const struct certs_findings *fs)
{
    for (size_t i = 0; i < fs->n; i++) {
        log_finding(&fs->v[i]);
    }
    return count_stops(fs);
}

/* "N error findings (above); `ferry check -c PATH` lists the same" (or OOM) into ${err}. */
static void
findings_refusal(char *err, size_t errlen, size_t stops, bool oom, const char *path)
{
    if (oom) {
        snprintf(err, errlen, "out of memory while checking the configuration");
        return;
    }
    snprintf(err, errlen, "%zu error finding%s (above); `ferry check%s%s` lists the same", stops,
             stops == 1 ? "" : "s", path != NULL ? " -c " : "", path != NULL ? path : "");
}

/*
 * The judge of every reload (proxy_vet_fn): the findings of `ferry check` for ${cfg}, each
 * logged; an error that stops run keeps the running configuration.
 */
static int
vet_reload(const struct config *cfg, void *arg, char *err, size_t errlen)
{
    struct certs_findings fs = {0};
    bool oom;
    size_t stops;

    (void)arg;
    oom = certs_check_vet_config(cfg, NULL, proxy_listener_tls, &fs) != 0;
    stops = log_findings(&fs);
    certs_findings_clear(&fs);
    if (stops == 0 && !oom) {
        return 0;
    }
    findings_refusal(err, errlen, stops, oom, cfg->path);
    return -1;
}

/*
 * The loader of every reload (proxy_load_fn): certs_check_config_load(), as `ferry check` loads,
 * each config error logged as its event=finding (config-invalid, file-missing,
 * file-unreadable) with file and fix.  Returns the config, or NULL with the reason in ${err}.
 */
static struct config *
load_reload(const char *path, void *arg, char *err, size_t errlen)
{
    struct certs_findings fs = {0};
    struct config *cfg;
    bool oom = false;
    size_t stops;

    (void)arg;
    cfg = certs_check_config_load(path, &fs, &oom, NULL);
    if (cfg != NULL && !oom) {
        /* Nothing to say yet: vet_reload() logs the findings of the files. */
        certs_findings_clear(&fs);
        return cfg;
    }
    stops = log_findings(&fs);
    certs_findings_clear(&fs);
    config_free(cfg);
    findings_refusal(err, errlen, stops, oom, path);
    return NULL;
}

static const struct option run_opts[] = {
    {"config", required_argument, NULL, 'c'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* `ferry run [-c FILE]`. */
static int
cmd_run(int argc, char **argv)
{
    struct certs_findings fs = {0};
    struct certs_cli_parse cp = cmd_parse("run", argc, argv, "-:hc:", run_opts, 0);
    enum config_log_format fmt = CONFIG_LOG_TEXT;
    const char *given = NULL, *path, *value;
    struct config *cfg;
    struct proxy *p;
    char err[1024];
    bool oom = false;
    size_t stops;
    int rc, c;

    while ((c = certs_cli_next(&cp, &value)) != CERTS_CLI_DONE) {
        if (c == CERTS_CLI_BAD) {
            return usage_hint("run");
        }
        if (c == 'h') {
            return cmd_help_of("run");
        }
        if (given != NULL) { /* -c FILE */
            (void)fprintf(stderr, "ferry run: option given twice: -c/--config\n");
            return usage_hint("run");
        }
        given = value;
    }
    path = find_config(given);
    /* The same findings as `ferry check`, from the same code (certs_check_vet_config). */
    cfg = path != NULL ? certs_check_config_load(path, &fs, &oom, &fmt) : load_embedded();
    if (cfg != NULL) {
        log_setup((enum log_level)cfg->log_level, (enum log_format)cfg->log_format, NULL);
        oom |= certs_check_vet_config(cfg, NULL, proxy_listener_tls, &fs) != 0;
    } else {
        /* Not loaded (a file it names is bad), but its log.format was read: follow it. */
        log_setup(LOG_INFO, (enum log_format)fmt, NULL);
    }
    stops = count_stops(&fs);
    if (cfg == NULL || stops > 0 || oom) {
        /* Refused: the findings exactly as `ferry check` prints them, for the operator. */
        certs_findings_print(&fs, isatty(fileno(stderr)) && getenv("NO_COLOR") == NULL, stderr);
        certs_findings_clear(&fs);
        if (cfg == NULL && stops == 0 && !oom) {
            snprintf(err, sizeof(err), "the embedded development default does not load");
        } else {
            findings_refusal(err, sizeof(err), stops, oom, path);
        }
        log_kv(LOG_ERROR, "start_failed", "msg", err, (const char *)NULL);
        fprintf(stderr, "ferry: cannot start: %s\n", err);
        config_free(cfg);
        return EXIT_PROBLEM;
    }
    /* Starting: warnings (and the clock's errors) once, as event=finding log lines. */
    (void)log_findings(&fs);
    certs_findings_clear(&fs);
    /* proxy_new() owns cfg from here on, also when it fails. */
    p = proxy_new(cfg, path, err, sizeof(err));
    if (p == NULL || proxy_start(p, err, sizeof(err)) < 0) {
        log_kv(LOG_ERROR, "start_failed", "msg", err, (const char *)NULL);
        fprintf(stderr, "ferry: cannot start: %s\n", err);
        proxy_free(p);
        return EXIT_PROBLEM;
    }
    proxy_set_vet(p, vet_reload, NULL);
    proxy_set_load(p, load_reload);
    rc = proxy_run(p);
    proxy_free(p);
    return rc == 0 ? 0 : EXIT_PROBLEM;
}

enum check_opt {
    CHECK_PEER = 256,
    CHECK_LISTENER,
    CHECK_HOSTNAME,
    CHECK_JSON,
};

static const struct option check_opts[] = {
    {"config", required_argument, NULL, 'c'},
    {"peer", required_argument, NULL, CHECK_PEER},
    {"listener", required_argument, NULL, CHECK_LISTENER},
    {"hostname", required_argument, NULL, CHECK_HOSTNAME},
    {"json", no_argument, NULL, CHECK_JSON},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* `ferry check [-c FILE] [--hostname NAME] [--json]`, `ferry check --peer HOST:PORT ...`. */
static int
cmd_check(int argc, char **argv)
{
    struct certs_cli_parse cp = cmd_parse("check", argc, argv, "-:hc:", check_opts, 0);
    struct certs_check_opts o;
    const char *given = NULL, *value;
    struct config *cfg;
    int rc, c;

    memset(&o, 0, sizeof(o));
    while ((c = certs_cli_next(&cp, &value)) != CERTS_CLI_DONE) {
        switch (c) {
        case 'h':
            return cmd_help_of("check");
        case 'c':
            if (given != NULL) {
                (void)fprintf(stderr, "ferry check: option given twice: -c/--config\n");
                return usage_hint("check");
            }
            given = value;
            break;
        case CHECK_PEER:
            o.peer = value;
            break;
        case CHECK_LISTENER:
            o.listener = value;
            break;
        case CHECK_HOSTNAME:
            o.hostname = value;
            break;
        case CHECK_JSON:
            o.json = true;
            break;
        default: /* CERTS_CLI_BAD, reported */
            return usage_hint("check");
        }
    }
    if (o.listener != NULL && o.peer == NULL) {
        (void)fprintf(stderr, "ferry check: --listener needs --peer HOST:PORT\n");
        return usage_hint("check");
    }
    if (o.hostname != NULL && o.peer != NULL) {
        (void)fprintf(stderr, "ferry check: --hostname is for the files alone; with --peer the "
                              "name checked is the peer's HOST\n");
        return usage_hint("check");
    }
    o.config_path = find_config(given);
    o.color = !o.json && isatty(fileno(stdout)) && getenv("NO_COLOR") == NULL;
    if (o.peer == NULL) {
        return certs_check_run(&o, proxy_listener_tls, stdout, stderr);
    }
    if (o.config_path == NULL) {
        fprintf(stderr, "ferry check: no config file: looked for %s and %s (use -c FILE)\n",
                CONFIG_DEFAULT_PATH_LOCAL, CONFIG_DEFAULT_PATH_SYSTEM);
        return EXIT_PROBLEM;
    }
    if ((cfg = load_config(o.config_path)) == NULL) {
        return EXIT_PROBLEM;
    }
    rc = certs_peer_check(cfg, &o, proxy_listener_tls, stdout);
    config_free(cfg);
    return rc;
}

static const struct option main_opts[] = {
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

/*
 * What a command printed must have reached stdout: a report written to a full disk or a closed
 * pipe (`check --json > /dev/full`) is a failure, not exit 0 with nothing written.  Returns
 * ${rc}, or EXIT_PROBLEM when stdout could not be written.
 */
static int
finish(int rc)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        (void)fprintf(stderr, "ferry: cannot write to standard output: %s\n", strerror(errno));
        return EXIT_PROBLEM;
    }
    return rc;
}

int
main(int argc, char **argv)
{
    struct certs_cli_parse p = cmd_parse("", argc, argv, "-:h", main_opts, 1);
    const char *cmd = NULL;
    char **sub;
    int c, n;

    /* A peer that resets mid-write must cost one connection, not the process. */
    (void)signal(SIGPIPE, SIG_IGN);
    /* Options before COMMAND: -h/--help [COMMAND], --version; then COMMAND parses the rest. */
    while (cmd == NULL && (c = certs_cli_next(&p, &cmd)) != CERTS_CLI_DONE) {
        if (c == CERTS_CLI_BAD) {
            usage(stderr);
            exit(EXIT_USAGE);
        }
        if (c == 'h' || c == 'V') {
            /* The option's word stands for the command's name in argv[0]. */
            sub = argv + optind - 1;
            n = argc - optind + 1;
            exit(finish(c == 'h' ? cmd_help(n, sub) : cmd_version(n, sub)));
        }
    }
    if (cmd == NULL) {
        usage(stderr);
        exit(EXIT_USAGE);
    }
    /* certs_cli_next() has just consumed COMMAND: it is argv[optind - 1]. */
    sub = argv + optind - 1;
    n = argc - optind + 1;
    if (strcmp(cmd, "run") == 0) {
        exit(cmd_run(n, sub));
    }
    if (strcmp(cmd, "check") == 0) {
        exit(finish(cmd_check(n, sub)));
    }
    if (strcmp(cmd, "certs") == 0) {
        exit(finish(certs_cli(n - 1, sub + 1, stdout, stderr)));
    }
    if (strcmp(cmd, "version") == 0) {
        exit(finish(cmd_version(n, sub)));
    }
    if (strcmp(cmd, "help") == 0) {
        exit(finish(cmd_help(n, sub)));
    }
    fprintf(stderr, "ferry: unknown command \"%s\"\n", cmd);
    usage(stderr);
    exit(EXIT_USAGE);
}
