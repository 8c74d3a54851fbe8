/*
 * main: argv -> subcommand.  The only place that calls exit().
 *
 * Exit codes (CONTRACT §2): 0 success; 1 a problem was found or a runtime failure; 2 a usage
 * error.
 */
#include <errno.h>
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
            "Without -c, ferry reads ./ferry.yaml, then /etc/ferry/ferry.yaml; `ferry run`\n"
            "with neither uses an embedded development default (certificates in " DEV_DATA_DIR ",\n"
            "inbound 0.0.0.0:6984 -> 127.0.0.1:5984).\n"
            "Exit codes: 0 success, 1 a problem was found, 2 usage error.\n");
}

static int
help(int argc, char **argv)
{
    if (argc < 1) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[0], "certs") == 0) {
        certs_cli_usage(stdout);
        return 0;
    }
    if (strcmp(argv[0], "run") == 0) {
        printf("usage: ferry run [-c FILE]\n\n"
               "Serve the listeners of FILE (default ./ferry.yaml, then /etc/ferry/ferry.yaml,\n"
               "then the embedded development default) until SIGTERM or SIGINT; SIGHUP or a\n"
               "changed certificate, key, CA, CRL or secret file reloads.\n"
               "Before serving, and on every reload, ferry run applies the checks of ferry check.\n"
               "An error finding stops the start (printed as check prints it; exit 1) or the\n"
               "reload (the running configuration stays), except an expired or not yet valid\n"
               "certificate and an expired CRL, which only a renewed file fixes: ferry serves.\n"
               "Other findings are logged as event=finding (id, file, msg, fix) at start and\n"
               "after each reload (see man ferry, section FINDINGS).\n");
        return 0;
    }
    if (strcmp(argv[0], "check") == 0) {
        printf("usage: ferry check [-c FILE] [--hostname NAME] [--json]\n"
               "       ferry check --peer HOST:PORT [-c FILE] [--listener NAME] [--json]\n\n"
               "Load FILE and every certificate, key, CA, CRL and secret it names the way\n"
               "`ferry run` would, and check what each listener needs (EKU, SAN, chain, dates,\n"
               "key match and permissions, CRLs). Each problem is printed with its id, file and\n"
               "fix (man ferry, section FINDINGS); --json prints one JSON document for scripts.\n"
               "--hostname NAME: peers dial this node as NAME; warn when an inbound listener's\n"
               "certificate does not cover it (san-hostname; without it, no such warning).\n"
               "With --peer, handshake with HOST:PORT as the outbound listener NAME (default:\n"
               "the first outbound listener) would, and explain the result.\n"
               "Exit 0 when no problem is an error, 1 otherwise, 2 on a usage error.\n");
        return 0;
    }
    if (strcmp(argv[0], "version") == 0 || strcmp(argv[0], "help") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "ferry help: unknown command \"%s\"\n", argv[0]);
    usage(stderr);
    return EXIT_USAGE;
}

static int
version(void)
{
    unsigned long hp = http_parser_version();

    printf("ferry %s\n", FERRY_VERSION);
    printf("OpenSSL %s\n", OpenSSL_version(OPENSSL_VERSION_STRING));
    printf("libevent %s\n", event_get_version());
    printf("libyaml %s\n", yaml_get_version_string());
    printf("http-parser %lu.%lu.%lu\n", (hp >> 16) & 255, (hp >> 8) & 255, hp & 255);
    return 0;
}

/* Parse `[-c FILE]`; returns 0, or -1 after printing a usage error. */
static int
parse_config_opt(const char *cmd, int argc, char **argv, const char **path)
{
    *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "ferry %s: %s needs a file name\n", cmd, argv[i]);
                return -1;
            }
            *path = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            *path = argv[i] + 9;
        } else {
            fprintf(stderr, "ferry %s: unknown option \"%s\"\n", cmd, argv[i]);
            return -1;
        }
    }
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

static int
cmd_run(int argc, char **argv)
{
    struct certs_findings fs = {0};
    enum config_log_format fmt = CONFIG_LOG_TEXT;
    const char *given, *path;
    struct config *cfg;
    struct proxy *p;
    char err[1024];
    bool oom = false;
    size_t stops;
    int rc;

    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            static char word[] = "run";
            char *hv[] = {word, NULL};

            return help(1, hv);
        }
    }
    if (parse_config_opt("run", argc, argv, &given) < 0) {
        fprintf(stderr, "usage: ferry run [-c FILE]\n");
        return EXIT_USAGE;
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

/* Parse the value of option ${argv}[*i] ("--opt value" or "--opt=value") into *${out}. */
static int
check_opt_value(const char *opt, int argc, char **argv, int *i, const char **out)
{
    size_t n = strlen(opt);

    if (strncmp(argv[*i], opt, n) == 0 && argv[*i][n] == '=') {
        *out = argv[*i] + n + 1;
    } else if (*i + 1 < argc) {
        *out = argv[++*i];
    } else {
        *out = NULL;
    }
    if (*out == NULL || (*out)[0] == '\0') {
        fprintf(stderr, "ferry check: %s needs a value\n", opt);
        return -1;
    }
    return 0;
}

static bool
check_opt_is(const char *arg, const char *opt)
{
    size_t n = strlen(opt);

    return strncmp(arg, opt, n) == 0 && (arg[n] == '\0' || arg[n] == '=');
}

static int
cmd_check(int argc, char **argv)
{
    struct certs_check_opts o;
    const char *given = NULL;
    struct config *cfg;
    int rc;

    memset(&o, 0, sizeof(o));
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int bad = 0;

        if (strcmp(a, "--json") == 0) {
            o.json = true;
        } else if (strcmp(a, "-c") == 0 || check_opt_is(a, "--config")) {
            bad = check_opt_value(strcmp(a, "-c") == 0 ? "-c" : "--config", argc, argv, &i, &given);
        } else if (check_opt_is(a, "--peer")) {
            bad = check_opt_value("--peer", argc, argv, &i, &o.peer);
        } else if (check_opt_is(a, "--listener")) {
            bad = check_opt_value("--listener", argc, argv, &i, &o.listener);
        } else if (check_opt_is(a, "--hostname")) {
            bad = check_opt_value("--hostname", argc, argv, &i, &o.hostname);
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            static char word[] = "check";
            char *hv[] = {word, NULL};

            return help(1, hv);
        } else {
            fprintf(stderr, "ferry check: unknown option \"%s\"\n", a);
            bad = -1;
        }
        if (bad < 0) {
            fprintf(stderr, "usage: ferry check [-c FILE] [--hostname NAME] [--json]\n"
                            "       ferry check --peer HOST:PORT [-c FILE] [--listener NAME] "
                            "[--json]\n");
            return EXIT_USAGE;
        }
    }
    if (o.listener != NULL && o.peer == NULL) {
        fprintf(stderr, "ferry check: --listener needs --peer HOST:PORT\n");
        return EXIT_USAGE;
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

int
main(int argc, char **argv)
{
    const char *cmd;

    /* A peer that resets mid-write must cost one connection, not the process. */
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        exit(EXIT_USAGE);
    }
    cmd = argv[1];
    if (strcmp(cmd, "run") == 0) {
        exit(cmd_run(argc - 2, argv + 2));
    }
    if (strcmp(cmd, "check") == 0) {
        exit(cmd_check(argc - 2, argv + 2));
    }
    if (strcmp(cmd, "certs") == 0) {
        exit(certs_cli(argc - 2, argv + 2, stdout, stderr));
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        exit(version());
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        exit(help(argc - 2, argv + 2));
    }
    fprintf(stderr, "ferry: unknown command \"%s\"\n", cmd);
    usage(stderr);
    exit(EXIT_USAGE);
}
