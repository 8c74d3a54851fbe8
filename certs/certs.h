/*
 * certs: `ferry certs ...` and `ferry check` (CONTRACT.md §2).  Uses tls/ and config/ only.
 *
 * Everything goes through the OpenSSL library; nothing shells out.  Private keys are written
 * 0600, atomically (temporary file in the same directory, fsync, rename), so a crash never
 * leaves a half-written or world-readable key.  Functions return 0/-1 and describe a failure
 * in the caller's buffer; they never print or exit.
 */
#ifndef FERRY_CERTS_H
#define FERRY_CERTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "config.h"

enum certs_key_type {
    CERTS_KEY_EC,  /* ECDSA P-256 (default) */
    CERTS_KEY_RSA, /* RSA 3072 */
};

#define CERTS_DEFAULT_CA_DAYS   3650
#define CERTS_DEFAULT_LEAF_DAYS 397
#define CERTS_DEFAULT_CA_NAME   "ferry private CA"

struct certs_ca_params {
    const char *dir;  /* writes DIR/ca.crt and DIR/ca.key (0600); DIR is created (0700) */
    const char *name; /* the CA's CN; NULL = CERTS_DEFAULT_CA_NAME */
    int days;         /* 0 = CERTS_DEFAULT_CA_DAYS */
    enum certs_key_type key_type;
};

struct certs_issue_params {
    const char *ca_dir; /* reads CA_DIR/ca.crt and CA_DIR/ca.key */
    const char *name;   /* FQDN: the CN and the first DNS SAN (an IP literal becomes an IP SAN) */
    const char *const *dns;
    size_t n_dns;
    const char *const *ips;
    size_t n_ips;
    const char *const *uris; /* SPIFFE IDs (config_check_spiffe_problem() rules), as URI SANs */
    size_t n_uris;
    int days; /* 0 = CERTS_DEFAULT_LEAF_DAYS */
    enum certs_key_type key_type;
    const char *out_dir; /* writes OUT/NAME.crt (leaf + intermediates), OUT/NAME.key (0600)
                            and OUT/ca.crt (the root); OUT is created (0700) */
};

/*
 * certs_ca_init(p, err, errlen):
 * Make a self-signed CA (basicConstraints critical CA:TRUE, keyUsage keyCertSign+cRLSign,
 * subject key identifier).  Refuses to overwrite an existing DIR/ca.key.
 * Returns 0, or -1 with the reason in ${err}.
 */
int certs_ca_init(const struct certs_ca_params *p, char *err, size_t errlen);

/*
 * certs_issue(p, err, errlen):
 * Issue a leaf signed by the CA in ${p}->ca_dir: EKU serverAuth+clientAuth, SAN = name +
 * every dns + every ip + every uri, basicConstraints CA:FALSE, keyUsage digitalSignature (+
 * keyEncipherment for RSA), authority/subject key identifiers, a random 128-bit serial.
 * When CA_DIR/ca.crt holds an intermediate followed by its issuers, NAME.crt carries the
 * intermediates and OUT/ca.crt the root.  Returns 0, or -1 with the reason in ${err}.
 * Names are checked before any file is written: DNS names as RFC 1123 labels (a "*." first
 * label allowed), IPs as IPv4/IPv6 literals; NAME must be a safe file name other than "ca".
 * The leaf never outlives the CA (notAfter is clamped to the CA's).  Existing OUT/NAME.*
 * files are replaced.  When OUT is CA_DIR and the CA is a root, CA_DIR/ca.crt is left as it
 * is; when it is an intermediate, this is refused (its bundle would be lost).
 */
int certs_issue(const struct certs_issue_params *p, char *err, size_t errlen);

/*
 * certs_issue_ensure_dev(dir, hostname, created, err, errlen):
 * The embedded development default: make sure DIR holds a development CA (ca.crt, ca.key)
 * and a node certificate (node.crt, node.key) for ${hostname}, "localhost", 127.0.0.1 and
 * ::1.  Existing files are reused as they are; *${created} tells whether anything was made.
 * Returns 0, or -1 with the reason in ${err}.
 * A ${hostname} that is NULL or cannot be certified (e.g. "my_host") is replaced by
 * "localhost".  A missing ca.key makes a new CA and node certificate; ca.key without ca.crt
 * is an error (never guessed at).  A missing, unreadable or expired node.crt or a missing
 * node.key is reissued from the existing CA.  ${created} may be NULL.
 */
int certs_issue_ensure_dev(const char *dir, const char *hostname, bool *created, char *err,
                           size_t errlen);

/*
 * certs_file_write(path, data, len, mode, err, errlen):
 * Write ${data} to ${path} atomically with permissions ${mode} (temporary file created with
 * ${mode} from the start, fsync, rename).  Returns 0, or -1 with the reason in ${err}.
 */
int certs_file_write(const char *path, const void *data, size_t len, mode_t mode, char *err,
                     size_t errlen);

/*
 * certs_cli(argc, argv, out, err):
 * `ferry certs SUBCOMMAND ...` with ${argv}[0] = "init-ca" | "issue" | "inspect": parse the
 * options of CONTRACT.md §2 ("--opt value" or "--opt=value"; "--" ends the options) with
 * certs_cli_next(), run, print results to ${out} and problems to ${err}.  -h/--help prints
 * the subcommand's usage (certs_cli_help()) to ${out} and returns 0.  Returns the
 * exit code: 0 success (inspect: no error finding), 1 failure, 2 usage error.
 */
int certs_cli(int argc, char **argv, FILE *out, FILE *err);

/*
 * certs_cli_usage(out):
 * Print the usage of `ferry certs` to ${out} (for `ferry help certs`).
 */
void certs_cli_usage(FILE *out);

/*
 * certs_cli_help(sub, out):
 * Print the usage of `ferry certs ${sub}` ("init-ca", "issue" or "inspect") to ${out}, or
 * that of `ferry certs` (certs_cli_usage()) when ${sub} is NULL.  Returns 0, or -1 for an
 * unknown ${sub} (nothing printed).
 */
int certs_cli_help(const char *sub, FILE *out);

/* ---- the option parser of every ferry command (getopt_long) ---- */

struct option; /* <getopt.h> */

/* What certs_cli_next() returns besides the `val` of an option of ${longopts}. */
#define CERTS_CLI_ARG  1    /* a positional argument, in *${value} */
#define CERTS_CLI_DONE (-1) /* no arguments left */
#define CERTS_CLI_BAD  (-2) /* a usage error, already reported on ${err} */

/*
 * One parse of a command's argv by certs_cli_next(): fill the first six fields, zero the rest.
 * ${shortopts} must begin with "-:" (options and arguments in the order given, getopt's own
 * messages off); ${longopts} ends with a zeroed entry.  Options without a short form use a
 * `val` of 256 or more.
 */
struct certs_cli_parse {
    int argc;
    char **argv;                   /* argv[0] is the command's name (skipped) */
    const char *cmd;               /* "check", "certs issue" ("" for ferry itself): in messages */
    const char *shortopts;         /* "-:hc:" */
    const struct option *longopts; /* exact names only: no abbreviations */
    size_t max_args;               /* positional arguments allowed */
    FILE *err;                     /* where usage errors go */
    const char *name;              /* out: the long name of the last option, or NULL */
    size_t n_args;                 /* positional arguments seen so far */
    bool started, ended;
};

/*
 * certs_cli_next(p, value):
 * The next option or argument of ${p}, through getopt_long() (reset by the first call, so
 * every command parses from a clean state): the option's `val` with its value (never empty,
 * never a separate word beginning with "--") in *${value}; CERTS_CLI_ARG with the argument
 * in *${value}, also for every word after "--"; CERTS_CLI_DONE at the end; or CERTS_CLI_BAD
 * after printing "ferry CMD: ..." on ${p}->err for an unknown option, a missing or unwanted
 * value, or more than ${p}->max_args arguments (the caller prints its usage and exits 2).
 */
int certs_cli_next(struct certs_cli_parse *p, const char **value);

/* ---- diagnosis: `ferry check` and `ferry certs inspect` (CONTRACT §2, §8) ---- */

struct config;
struct config_listener;
struct tls_ctx;

/*
 * The one mapping from a listener's config to its TLS context lives in proxy/
 * (proxy_listener_tls); main.c hands it to the checks so that `ferry check` loads files
 * exactly as `ferry run` does, without certs/ depending on proxy/.
 */
typedef int (*certs_tls_builder)(const struct config_listener *cl, struct tls_ctx **out, char *err,
                                 size_t errlen);

/* Options of `ferry check`, parsed by main.c. */
struct certs_check_opts {
    const char *config_path; /* resolved: -c, ./ferry.yaml or /etc/ferry/ferry.yaml */
    const char *peer;        /* --peer HOST:PORT, or NULL */
    const char *listener;    /* --listener NAME, or NULL (the first outbound listener) */
    bool json;               /* --json: one JSON document on out */
    bool color;              /* out is a terminal and NO_COLOR is unset */
    const char *hostname;    /* --hostname: the name peers dial this node by (san-hostname on
                                every inbound listener), or NULL: no san-hostname check */
};

/*
 * certs_check_run(o, build, out, err):
 * `ferry check` without --peer: certs_check_config_load() then certs_check_vet_config(), the
 * findings printed (text or JSON) to ${out}.  Returns the exit code: 0 no error, 1 any error.
 */
int certs_check_run(const struct certs_check_opts *o, certs_tls_builder build, FILE *out,
                    FILE *err);

/*
 * certs_peer_check(cfg, o, build, out):
 * `ferry check --peer HOST:PORT`: handshake with the live peer as the outbound listener
 * ${o}->listener of ${cfg} would, print what the peer presented and the verdict of
 * CONTRACT §4 (text or JSON).  Returns the exit code: 0 the peer passes, 1 otherwise.
 */
int certs_peer_check(const struct config *cfg, const struct certs_check_opts *o,
                     certs_tls_builder build, FILE *out);

/* ---- findings: one diagnosed problem each (certs_finding.c) ---- */

enum certs_severity {
    CERTS_SEV_ERROR,   /* ferry would not start, or its peers would reject it */
    CERTS_SEV_WARNING, /* works today, but is likely to break or to surprise */
};

/*
 * One finding: a stable id listed in ferry(1), section FINDINGS ("key-mismatch"), a
 * severity, the file at fault (NULL when none), its line/column (0 unless the finding is
 * about a config line), the problem in one line and the fix in one line.  Strings are owned
 * by the list.
 */
struct certs_finding {
    const char *id; /* static text */
    enum certs_severity severity;
    char *file;
    unsigned line;
    unsigned col;
    char *message;
    char *fix;
};

/* A list of findings in the order found; zero-initialise before the first use. */
struct certs_findings {
    struct certs_finding *v;
    size_t n;
};

/*
 * certs_findings_add(fs, id, sev, file, line, col, message, fix):
 * Append a finding to ${fs}, copying the strings (${id} must be static text).  A finding
 * equal to one already in the list (same id, file and message) is not added twice, so
 * files shared by several listeners are reported once.  Returns 0, or -1 on OOM.
 */
int certs_findings_add(struct certs_findings *fs, const char *id, enum certs_severity sev,
                       const char *file, unsigned line, unsigned col, const char *message,
                       const char *fix);

/*
 * certs_findings_clear(fs):
 * Free every finding of ${fs} and reset it to empty.
 */
void certs_findings_clear(struct certs_findings *fs);

/*
 * certs_findings_count(fs, sev):
 * How many findings of ${fs} have severity ${sev}.
 */
size_t certs_findings_count(const struct certs_findings *fs, enum certs_severity sev);

/*
 * certs_findings_find(fs, id, file):
 * The first finding with ${id} (and, when ${file} is not NULL, that file), or NULL.
 */
const struct certs_finding *certs_findings_find(const struct certs_findings *fs, const char *id,
                                                const char *file);

/*
 * certs_findings_print(fs, color, out):
 * The findings as text for people, one block each:
 * "error    key-mismatch  FILE[:LINE:COL]: problem" then "         fix: ...".
 * ANSI colour on the severity only when ${color}.
 */
void certs_findings_print(const struct certs_findings *fs, bool color, FILE *out);

/*
 * certs_findings_json(fs, j):
 * The findings as members of the object open in the writer ${j} (config_json.h):
 * "findings":[{"id","severity","file","line","col","message","fix"},...],"errors":N,
 * "warnings":N (file is null when the finding names none; line is 0 unless it names a config
 * line).
 */
struct config_json;
void certs_findings_json(const struct certs_findings *fs, struct config_json *j);

/* ---- the findings of a configuration: `ferry check` and `ferry run` (certs_check.c) ---- */

/*
 * certs_check_config_load(path, fs, oom, fmt):
 * config_load(${path}); when it fails, each config error becomes a finding of ${fs} the way
 * `ferry check` reports it: file-missing / file-unreadable against a file the config names,
 * config-invalid at file:line:col otherwise, and *${fmt} (when not NULL) is the file's
 * log.format if it could be read (else text).  Sets *${oom} when a finding could not be
 * added.  Returns the config (caller frees) or NULL.
 */
struct config *certs_check_config_load(const char *path, struct certs_findings *fs, bool *oom,
                                       enum config_log_format *fmt);

/*
 * certs_check_vet_config(cfg, hostname, build, fs):
 * Append to ${fs} every finding of the loaded ${cfg}: per listener, its certificate, key,
 * passphrase, CA and CRL files diagnosed for its role (certs_inspect_diagnose()), the permission
 * rule on its proxy-auth secret (certs_inspect_secret_mode() in certs_internal.h), san-hostname
 * for inbound listeners against ${hostname} (NULL: none, as `ferry run` does), and
 * `ferry run`'s own start checks through ${build} (NULL skips them).  The one computation
 * behind `ferry check`, `ferry run` and every reload.  Returns 0, or -1 on OOM.
 */
int certs_check_vet_config(const struct config *cfg, const char *hostname, certs_tls_builder build,
                           struct certs_findings *fs);

/*
 * certs_check_stops_run(f):
 * Whether ${f} stops `ferry run` from starting (and makes a reload keep the old config):
 * every error except cert-expired, cert-not-yet-valid and crl-expired.  Those three come
 * from the clock alone, in files that were fine the day before: refusing them would turn a
 * restart (a rescheduled pod, a reboot) into a crash loop that no renewal can end, since
 * nothing would run to pick the renewed file up, while a running ferry keeps serving with
 * the same files.  `ferry run` logs them at level error and starts; /readyz answers 503
 * while its own certificate is expired; the file watcher applies the renewal.
 */
bool certs_check_stops_run(const struct certs_finding *f);

/* ---- diagnosing one set of files (certs_inspect.c) ---- */

/* What to check for one certificate, key, CA bundle and CRL. */
struct certs_diag_params {
    const char *cert;                /* PEM: leaf first, then intermediates (required) */
    const char *key;                 /* the private key, or NULL */
    const char *key_passphrase_file; /* or NULL: an encrypted key is then a finding */
    const char *ca;                  /* the CA bundle the chain must verify against, or NULL */
    const char *crl;                 /* PEM CRLs, or NULL */
    bool need_server_auth;           /* EKU serverAuth required (inbound, or inspect) */
    bool need_client_auth;           /* EKU clientAuth required (outbound, or inspect) */
    const char *name;                /* a name the SAN must cover (error), or NULL */
    const char *hostname;            /* a name peers dial (san-hostname warning when uncovered),
                                        or NULL */
    bool note_multiple_roots;        /* warn when ${ca} holds more than one root */
};

/*
 * certs_inspect_diagnose(p, fs):
 * Read the files of ${p} the way `ferry run` would and append to ${fs} every problem of
 * ferry(1) FINDINGS they show: unreadable, empty, DER or PKCS#12 instead of PEM, not a
 * certificate; key mismatch, encryption, passphrase and permissions; chain order, missing
 * intermediate or root, untrusted root, self-signed leaf, issuer that is not a CA; EKU, SAN,
 * validity, weak key, SHA-1 signature; CRL expiry, signature and self-revocation.  Never
 * prompts for a passphrase.  Returns 0, or -1 on OOM (${fs} then holds what was found).
 */
int certs_inspect_diagnose(const struct certs_diag_params *p, struct certs_findings *fs);

/*
 * certs_inspect(p, json, color, out):
 * `ferry certs inspect`: describe every certificate of ${p}->cert (subject, issuer, serial,
 * SANs, EKUs, key, signature, validity, SHA-256 fingerprint, CA or not) and whether the
 * chain is in order, whether ${p}->key matches and whether the chain verifies against
 * ${p}->ca, then the findings of certs_inspect_diagnose(); as text, or one JSON document with
 * ${json}.  Returns the exit code: 0 no error finding, 1 otherwise.
 */
int certs_inspect(const struct certs_diag_params *p, bool json, bool color, FILE *out);

#endif /* FERRY_CERTS_H */
