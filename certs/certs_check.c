/*
 * certs_check.c: the findings of a configuration, the one computation behind `ferry check`
 * (without --peer) and `ferry run` (at start and on every reload).  The config first (every
 * error becomes a finding with file:line:col), then every file it names, diagnosed for what
 * each listener needs (certs_inspect_diagnose()) and the permission rule for secrets, then the
 * exact start checks of `ferry run` through the builder main.c hands in, so that check and run can
 * never disagree about whether ferry starts.
 */
#define _DEFAULT_SOURCE 1 /* realpath() is XSI, not in _POSIX_C_SOURCE alone */

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "config.h"
#include "config_json.h"
#include "tls.h"

#include "certs.h"
#include "certs_internal.h"

/* Room for one message. */
#define CHECK_MSG_MAX 1024

/* The text config_check.c uses for a file it cannot open: "KEY: cannot read PATH: WHY". */
#define CANNOT_READ ": cannot read "

/* The text config_load() uses for a config file that is a FIFO, a device or a socket. */
#define CONFIG_NOT_REGULAR "cannot read: not a regular file"

/* The fix for a file ferry cannot read because of ${why}. */
static const char *
unreadable_fix(const char *why)
{
    if (strncmp(why, "not a regular file", strlen("not a regular file")) == 0) {
        return "point the setting at a regular file (a FIFO or device would block ferry; a "
               "symlink to a regular file is fine)";
    }
    return "give ferry's user read access (chown, or chmod g+r with its group)";
}

/*
 * A config error about a file named by the config becomes file-missing / file-unreadable
 * against that file (the config position goes into the message); any other error is
 * config-invalid at its file:line:col.  Returns 0 or -1 on OOM.
 */
static int
add_config_error(struct certs_findings *fs, const struct config_error *e)
{
    char msg[CHECK_MSG_MAX], path[CHECK_MSG_MAX], key[128];
    const char *p = strstr(e->msg, CANNOT_READ), *why;
    size_t klen, plen;

    if (p != NULL && e->line > 0) {
        klen = (size_t)(p - e->msg);
        p += strlen(CANNOT_READ);
        why = strrchr(p, ':');
        if (why != NULL && why[1] == ' ' && klen < sizeof(key) && (plen = (size_t)(why - p)) > 0 &&
            plen < sizeof(path)) {
            memcpy(key, e->msg, klen);
            key[klen] = '\0';
            memcpy(path, p, plen);
            path[plen] = '\0';
            why += 2;
            if (strcmp(why, strerror(ENOENT)) == 0 || strcmp(why, strerror(ENOTDIR)) == 0) {
                (void)snprintf(msg, sizeof(msg), "the file named by %s (%s:%u:%u) does not exist",
                               key, e->file, e->line, e->col);
                return certs_findings_add(fs, "file-missing", CERTS_SEV_ERROR, path, 0, 0, msg,
                                          "check the path in the config, or create the file");
            }
            (void)snprintf(msg, sizeof(msg), "cannot read the file named by %s (%s:%u:%u): %s", key,
                           e->file, e->line, e->col, why);
            return certs_findings_add(fs, "file-unreadable", CERTS_SEV_ERROR, path, 0, 0, msg,
                                      unreadable_fix(why));
        }
    }
    /* The config file itself is a FIFO or device (config_load(): "cannot read: not a ..."). */
    if (e->line == 0 && strncmp(e->msg, CONFIG_NOT_REGULAR, strlen(CONFIG_NOT_REGULAR)) == 0) {
        why = e->msg + strlen("cannot read: ");
        (void)snprintf(msg, sizeof(msg), "cannot read the config file: %s", why);
        return certs_findings_add(fs, "file-unreadable", CERTS_SEV_ERROR, e->file, 0, 0, msg,
                                  unreadable_fix(why));
    }
    return certs_findings_add(fs, "config-invalid", CERTS_SEV_ERROR, e->file, e->line, e->col,
                              e->msg,
                              e->line > 0 ? "correct this line of the config (every key is "
                                            "described in ferry.yaml(5): man ferry.yaml)"
                                          : "give ferry a readable YAML config (-c FILE)");
}

/* Is there an error finding against one of the files of ${t}? */
static bool
files_explained(const struct certs_findings *fs, const struct config_tls *t)
{
    const char *files[] = {t->cert.path, t->key.path, t->key_passphrase_file.path, t->ca.path,
                           t->crl.path};
    size_t i, k;

    for (i = 0; i < fs->n; i++) {
        if (fs->v[i].severity != CERTS_SEV_ERROR || fs->v[i].file == NULL) {
            continue;
        }
        for (k = 0; k < sizeof(files) / sizeof(files[0]); k++) {
            if (files[k] != NULL && strcmp(files[k], fs->v[i].file) == 0) {
                return true;
            }
        }
    }
    return false;
}

/*
 * The name peers dial listener ${cl} by, which its certificate should cover (san-hostname):
 * ${hostname} (check --hostname) on an inbound listener, else NULL.  Nothing else in a config
 * says it (listen: is an IP address; outbound listeners are dialled by nobody), and this
 * machine's gethostname() is no evidence: warning about it was noise every operator saw.
 */
static const char *
dialled_name(const struct config_listener *cl, const char *hostname)
{
    return cl->mode == CONFIG_MODE_INBOUND ? hostname : NULL;
}

/* Diagnose the files of one listener, then run `ferry run`'s own start checks on them. */
static int
check_listener(const struct config *cfg, const struct config_listener *cl, const char *hostname,
               certs_tls_builder build, struct certs_findings *fs)
{
    struct certs_diag_params p;
    struct tls_ctx *t = NULL;
    char why[CHECK_MSG_MAX], msg[CHECK_MSG_MAX + 128];
    int rc = 0;

    memset(&p, 0, sizeof(p));
    p.cert = cl->tls.cert.path;
    p.key = cl->tls.key.path;
    p.key_passphrase_file = cl->tls.key_passphrase_file.path;
    p.ca = cl->tls.ca.path;
    p.crl = cl->tls.crl.path;
    p.need_server_auth = cl->mode == CONFIG_MODE_INBOUND;
    p.need_client_auth = cl->mode == CONFIG_MODE_OUTBOUND;
    p.hostname = dialled_name(cl, hostname);
    p.note_multiple_roots = true;
    if (p.cert != NULL && certs_inspect_diagnose(&p, fs) != 0) {
        rc = -1;
    }
    if (certs_inspect_secret_mode(fs, cl->proxy_auth.secret_file.path,
                                  "CouchDB proxy-auth secret file") != 0) {
        rc = -1;
    }
    for (size_t k = 0; cl->pp_accept && k < cl->n_pp_from; k++) {
        /* Wider than a /8 (IPv4) or a /16 (IPv6): not a set of load balancers. */
        const struct config_cidr *b = &cl->pp_from[k];
        char a[64], wide[CHECK_MSG_MAX];

        if (b->prefix >= (b->family == AF_INET ? 8u : 16u) ||
            inet_ntop(b->family, b->addr, a, sizeof(a)) == NULL) {
            continue;
        }
        (void)snprintf(wide, sizeof(wide),
                       "proxy_protocol.from holds %s/%u, wider than a %s: nearly any sender may "
                       "send a PROXY header and claim any client address",
                       a, b->prefix, b->family == AF_INET ? "/8" : "/16");
        if (certs_findings_add(fs, "proxy-protocol-from-any", CERTS_SEV_WARNING, cfg->path,
                               cl->pos.line, cl->pos.col, wide,
                               "list only the load balancers' addresses in proxy_protocol.from "
                               "(their subnet at the widest)") != 0) {
            rc = -1;
        }
    }
    if (certs_inspect_secret_mode(fs, cl->via.auth_file.path,
                                  "proxy credentials file (via.auth_file)") != 0) {
        rc = -1;
    }
    if (build == NULL) {
        return rc;
    }
    why[0] = '\0';
    if (build(cl, &t, why, sizeof(why)) != 0) {
        /* A finding above already names the file and the fix: do not say it twice. */
        if (!files_explained(fs, &cl->tls)) {
            (void)snprintf(msg, sizeof(msg), "ferry run cannot start: %s", why);
            if (certs_findings_add(fs, "start-refused", CERTS_SEV_ERROR, cfg->path, cl->pos.line,
                                   cl->pos.col, msg,
                                   "fix the file named in the message; `ferry certs inspect "
                                   "FILE` shows it in detail") != 0) {
                rc = -1;
            }
        }
    } else {
        tls_ctx_free(t);
    }
    return rc;
}

/* ---- files the user of `user:` must read after the privilege drop ---- */

/*
 * The identity ferry runs as after `user:`: the user's uid and primary group, and no
 * supplementary groups (proxy_privs.c drops them: setgroups(1, &gid)).
 */
struct drop_user {
    const char *name;
    uid_t uid;
    gid_t gid;
};

/* May ${u} use permission ${bits} (4 read, 1 search) on a file of ${st}?  Ignores ACLs. */
static bool
drop_may(const struct drop_user *u, const struct stat *st, unsigned bits)
{
    if (u->uid == 0) {
        return true;
    }
    if (st->st_uid == u->uid) {
        return ((st->st_mode >> 6) & bits) == bits;
    }
    if (st->st_gid == u->gid) {
        return ((st->st_mode >> 3) & bits) == bits;
    }
    return (st->st_mode & bits) == bits;
}

/*
 * Can ${u} reach and read ${path}?  Every directory on the way must be searchable (those of
 * ${path} as written and those of the file it leads to, for a symlink), the file readable.
 * Returns true, or false with what stops it in ${why}.  A path that cannot be stat()ed now is
 * left to the other findings.
 */
static bool
drop_can_read(const struct drop_user *u, const char *path, char *why, size_t whylen)
{
    char dirs[2][PATH_MAX], *real, *slash;
    struct stat st;

    if (stat(path, &st) != 0) {
        return true;
    }
    if (!drop_may(u, &st, 4)) {
        (void)snprintf(why, whylen, "the file is mode %04o, owned by uid %u gid %u",
                       (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid, (unsigned)st.st_gid);
        return false;
    }
    (void)snprintf(dirs[0], sizeof(dirs[0]), "%s", path);
    real = realpath(path, NULL);
    (void)snprintf(dirs[1], sizeof(dirs[1]), "%s", real != NULL ? real : path);
    free(real);
    for (int k = 0; k < 2; k++) {
        /* Each parent, from the nearest to "/": cut at the last '/' each time. */
        while ((slash = strrchr(dirs[k], '/')) != NULL) {
            if (slash == dirs[k]) {
                slash[1] = '\0';
            } else {
                *slash = '\0';
            }
            if (stat(dirs[k], &st) == 0 && S_ISDIR(st.st_mode) && !drop_may(u, &st, 1)) {
                int n = snprintf(why, whylen,
                                 "the directory %s is mode %04o, owned by uid %u gid %u, and "
                                 "%s cannot search it",
                                 dirs[k], (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid,
                                 (unsigned)st.st_gid, u->name);

                /* A long path may not fit: the message is cut, and says so. */
                if (n >= 0 && (size_t)n >= whylen && whylen > 3) {
                    memcpy(why + whylen - 4, "...", 4);
                }
                return false;
            }
            if (slash == dirs[k]) {
                break;
            }
        }
    }
    return true;
}

/* Is there a finding ${id} against ${file} already (files shared by listeners)? */
static bool
finding_exists(const struct certs_findings *fs, const char *id, const char *file)
{
    for (size_t i = 0; i < fs->n; i++) {
        if (strcmp(fs->v[i].id, id) == 0 && fs->v[i].file != NULL &&
            strcmp(fs->v[i].file, file) == 0) {
            return true;
        }
    }
    return false;
}

/*
 * With `user: NAME`, run as root: every file a reload reads again (the config, certificates,
 * keys, passphrase files, CAs, CRLs, proxy-auth secrets) must stay readable by NAME after the
 * privilege drop, or every reload fails with "Permission denied" and renewals never apply.
 * A warning (file-unreadable-after-drop) per file that NAME cannot read, computed from the
 * modes, owners and groups of the file and its directories against NAME's uid and primary
 * group (the drop keeps no supplementary group); nothing is opened as NAME.
 * Returns 0, or -1 on OOM.
 */
static int
check_after_drop(const struct config *cfg, struct certs_findings *fs)
{
    struct drop_user u;
    struct passwd *pw;
    char why[PATH_MAX + 256], msg[CHECK_MSG_MAX + PATH_MAX + 256], fix[CHECK_MSG_MAX];
    int rc = 0;

    if (cfg->user == NULL || geteuid() != 0 || (pw = getpwnam(cfg->user)) == NULL) {
        return 0;
    }
    memset(&u, 0, sizeof(u));
    u.name = cfg->user;
    u.uid = pw->pw_uid;
    u.gid = pw->pw_gid;
    (void)snprintf(fix, sizeof(fix),
                   "let %s read it: chgrp it (and its directories) to %s's primary group (gid "
                   "%u; ferry keeps no supplementary group) and chmod g+r (0640; g+x on "
                   "directories), or chown %s",
                   cfg->user, cfg->user, (unsigned)pw->pw_gid, cfg->user);
    for (size_t i = 0; i <= cfg->n_listeners; i++) {
        const struct config_listener *cl = i < cfg->n_listeners ? &cfg->listeners[i] : NULL;
        const char *files[] = {
            cl != NULL ? cl->tls.cert.path : cfg->path,
            cl != NULL ? cl->tls.key.path : NULL,
            cl != NULL ? cl->tls.key_passphrase_file.path : NULL,
            cl != NULL ? cl->tls.ca.path : NULL,
            cl != NULL ? cl->tls.crl.path : NULL,
            cl != NULL && cl->proxy_auth.enabled ? cl->proxy_auth.secret_file.path : NULL,
            cl != NULL ? cl->via.auth_file.path : NULL};

        for (size_t k = 0; k < sizeof(files) / sizeof(files[0]); k++) {
            if (files[k] == NULL || finding_exists(fs, "file-unreadable-after-drop", files[k]) ||
                drop_can_read(&u, files[k], why, sizeof(why))) {
                continue;
            }
            (void)snprintf(msg, sizeof(msg),
                           "user %s (user:, uid %u), whom ferry runs as after start, cannot read "
                           "this file: %s; every reload (SIGHUP, a renewed certificate) would "
                           "fail with Permission denied",
                           cfg->user, (unsigned)u.uid, why);
            if (certs_findings_add(fs, "file-unreadable-after-drop", CERTS_SEV_WARNING, files[k], 0,
                                   0, msg, fix) != 0) {
                rc = -1;
            }
        }
    }
    return rc;
}

/*
 * certs_check_vet_config(cfg, hostname, build, fs):
 * Every listener of ${cfg}: its files diagnosed for its role (inbound: serverAuth; outbound:
 * clientAuth), the permission rule on its proxy-auth secret, san-hostname against the name
 * peers dial (dialled_name()), then its TLS context built with ${build} (ferry run's own start
 * checks; NULL skips them), a refusal no earlier finding explains becoming start-refused.
 */
int
certs_check_vet_config(const struct config *cfg, const char *hostname, certs_tls_builder build,
                       struct certs_findings *fs)
{
    int rc = 0;

    for (size_t i = 0; i < cfg->n_listeners; i++) {
        if (check_listener(cfg, &cfg->listeners[i], hostname, build, fs) != 0) {
            rc = -1;
        }
    }
    if (check_after_drop(cfg, fs) != 0) {
        rc = -1;
    }
    return rc;
}

/*
 * certs_check_config_load(path, fs, oom, fmt):
 * config_load(${path}); each config error becomes a finding (add_config_error()).
 */
struct config *
certs_check_config_load(const char *path, struct certs_findings *fs, bool *oom,
                        enum config_log_format *fmt)
{
    struct config_errors errs = {0};
    struct config *cfg;

    if ((cfg = config_load(path, &errs)) != NULL) {
        return cfg;
    }
    if (fmt != NULL) {
        *fmt = errs.log_format;
    }
    for (size_t i = 0; i < errs.n; i++) {
        *oom |= add_config_error(fs, &errs.v[i]) != 0;
    }
    if (errs.n == 0) {
        *oom |= certs_findings_add(fs, "config-invalid", CERTS_SEV_ERROR, path, 0, 0,
                                   "the config cannot be loaded",
                                   "check that the file is readable YAML") != 0;
    }
    config_errors_clear(&errs);
    return NULL;
}

/*
 * certs_check_stops_run(f):
 * Every error stops `ferry run` but those the clock alone causes in files that were fine
 * before: see certs.h for why.
 */
bool
certs_check_stops_run(const struct certs_finding *f)
{
    static const char *const clock_only[] = {"cert-expired", "cert-not-yet-valid", "crl-expired"};

    if (f->severity != CERTS_SEV_ERROR) {
        return false;
    }
    for (size_t i = 0; i < sizeof(clock_only) / sizeof(clock_only[0]); i++) {
        if (strcmp(f->id, clock_only[i]) == 0) {
            return false;
        }
    }
    return true;
}

static void
print_result(const struct certs_check_opts *o, const struct config *cfg,
             const struct certs_findings *fs, FILE *out)
{
    size_t errors = certs_findings_count(fs, CERTS_SEV_ERROR);
    size_t warnings = certs_findings_count(fs, CERTS_SEV_WARNING);
    size_t n = cfg != NULL ? cfg->n_listeners : 0;

    if (o->json) {
        struct config_json j;

        config_json_init_file(&j, out);
        config_json_begin_object(&j);
        config_json_kv_string(&j, "config", o->config_path);
        config_json_kv_uint(&j, "listeners", n);
        certs_findings_json(fs, &j);
        config_json_end_object(&j);
        (void)fputc('\n', out);
        return;
    }
    certs_findings_print(fs, o->color, out);
    if (errors == 0) {
        fprintf(out, "ok: %s: configuration is valid (%zu listener%s); %zu warning%s\n",
                o->config_path, n, n == 1 ? "" : "s", warnings, warnings == 1 ? "" : "s");
    } else {
        fprintf(out,
                "%s: %zu error%s, %zu warning%s: ferry would not start or its peers would "
                "reject it\n",
                o->config_path != NULL ? o->config_path : "ferry check", errors,
                errors == 1 ? "" : "s", warnings, warnings == 1 ? "" : "s");
    }
}

/*
 * certs_check_run(o, build, out, err):
 * Load ${o}->config_path (certs_check_config_load()), vet it (certs_check_vet_config()) with
 * ${build} and ${o}->hostname, print the findings to ${out}; ${err} gets only an out-of-memory
 * note. Returns 0 when no finding is an error, else 1.
 */
int
certs_check_run(const struct certs_check_opts *o, certs_tls_builder build, FILE *out, FILE *err)
{
    struct certs_findings fs = {0};
    struct config *cfg = NULL;
    bool oom = false;
    int rc;

    if (o->config_path == NULL) {
        oom |= certs_findings_add(&fs, "config-invalid", CERTS_SEV_ERROR, NULL, 0, 0,
                                  "no config file: looked for " CONFIG_DEFAULT_PATH_LOCAL
                                  " and " CONFIG_DEFAULT_PATH_SYSTEM,
                                  "give the config with -c FILE") != 0;
    } else if ((cfg = certs_check_config_load(o->config_path, &fs, &oom, NULL)) != NULL) {
        oom |= certs_check_vet_config(cfg, o->hostname, build, &fs) != 0;
    }
    if (oom && err != NULL) {
        fprintf(err, "ferry check: out of memory; the findings below are incomplete\n");
    }
    print_result(o, cfg, &fs, out);
    rc = (oom || certs_findings_count(&fs, CERTS_SEV_ERROR) > 0) ? 1 : 0;
    certs_findings_clear(&fs);
    config_free(cfg);
    return rc;
}
