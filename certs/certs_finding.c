/*
 * certs_finding.c: the list of findings of `ferry check` and `ferry certs inspect`, and its
 * two renderings: text for people and JSON for scripts (the same findings in both).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_json.h"

#include "certs.h"
#include "certs_internal.h"

#define COLOR_RED    "\033[31m"
#define COLOR_YELLOW "\033[33m"
#define COLOR_BOLD   "\033[1m"
#define COLOR_RESET  "\033[0m"

static bool
str_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }
    return strcmp(a, b) == 0;
}

static char *
dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

/*
 * certs_findings_add(fs, id, sev, file, line, col, message, fix):
 * Append a copy of the finding unless an equal one (id, file, message) is already listed.
 * Returns 0, or -1 on OOM.
 */
int
certs_findings_add(struct certs_findings *fs, const char *id, enum certs_severity sev,
                   const char *file, unsigned line, unsigned col, const char *message,
                   const char *fix)
{
    struct certs_finding *v, *f;
    size_t i;

    for (i = 0; i < fs->n; i++) {
        f = &fs->v[i];
        if (strcmp(f->id, id) == 0 && str_eq(f->file, file) && str_eq(f->message, message)) {
            return 0;
        }
    }
    if ((v = realloc(fs->v, (fs->n + 1) * sizeof(*v))) == NULL) {
        goto err0;
    }
    fs->v = v;
    f = &v[fs->n];
    memset(f, 0, sizeof(*f));
    f->id = id;
    f->severity = sev;
    f->line = line;
    f->col = col;
    if ((file != NULL && (f->file = strdup(file)) == NULL) ||
        (f->message = dup_or_null(message != NULL ? message : "")) == NULL ||
        (f->fix = dup_or_null(fix != NULL ? fix : "")) == NULL) {
        goto err1;
    }
    fs->n++;
    return 0;

err1:
    free(f->file);
    free(f->message);
    free(f->fix);
err0:
    return -1;
}

/*
 * certs_findings_clear(fs):
 * Free every finding and reset ${fs} to empty.
 */
void
certs_findings_clear(struct certs_findings *fs)
{
    size_t i;

    for (i = 0; i < fs->n; i++) {
        free(fs->v[i].file);
        free(fs->v[i].message);
        free(fs->v[i].fix);
    }
    free(fs->v);
    fs->v = NULL;
    fs->n = 0;
}

/*
 * certs_findings_count(fs, sev):
 * How many findings of ${fs} have severity ${sev}.
 */
size_t
certs_findings_count(const struct certs_findings *fs, enum certs_severity sev)
{
    size_t i, n = 0;

    for (i = 0; i < fs->n; i++) {
        if (fs->v[i].severity == sev) {
            n++;
        }
    }
    return n;
}

/*
 * certs_findings_find(fs, id, file):
 * The first finding with ${id} (and ${file} unless NULL), or NULL.
 */
const struct certs_finding *
certs_findings_find(const struct certs_findings *fs, const char *id, const char *file)
{
    size_t i;

    for (i = 0; i < fs->n; i++) {
        if (strcmp(fs->v[i].id, id) == 0 && (file == NULL || str_eq(fs->v[i].file, file))) {
            return &fs->v[i];
        }
    }
    return NULL;
}

/*
 * certs_findings_print(fs, color, out):
 * One block per finding: severity, id, file (with line:col for config lines), the problem,
 * then the fix indented below.
 */
void
certs_findings_print(const struct certs_findings *fs, bool color, FILE *out)
{
    const struct certs_finding *f;
    const char *sev, *on;
    size_t i;

    for (i = 0; i < fs->n; i++) {
        f = &fs->v[i];
        sev = f->severity == CERTS_SEV_ERROR ? "error" : "warning";
        on = f->severity == CERTS_SEV_ERROR ? COLOR_RED : COLOR_YELLOW;
        fprintf(out, "%s%-7s%s  %s%s%s  ", color ? on : "", sev, color ? COLOR_RESET : "",
                color ? COLOR_BOLD : "", f->id, color ? COLOR_RESET : "");
        if (f->file != NULL && f->line > 0) {
            fprintf(out, "%s:%u:%u: ", f->file, f->line, f->col);
        } else if (f->file != NULL) {
            fprintf(out, "%s: ", f->file);
        }
        fprintf(out, "%s\n", f->message);
        if (f->fix[0] != '\0') {
            fprintf(out, "         fix: %s\n", f->fix);
        }
    }
}

/*
 * certs_findings_json(fs, j):
 * "findings":[...],"errors":N,"warnings":N in the object open in ${j}.
 */
void
certs_findings_json(const struct certs_findings *fs, struct config_json *j)
{
    const struct certs_finding *f;
    size_t i;

    config_json_key(j, "findings");
    config_json_begin_array(j);
    for (i = 0; i < fs->n; i++) {
        f = &fs->v[i];
        config_json_begin_object(j);
        config_json_kv_string(j, "id", f->id);
        config_json_kv_string(j, "severity", f->severity == CERTS_SEV_ERROR ? "error" : "warning");
        config_json_kv_string(j, "file", f->file);
        config_json_kv_uint(j, "line", f->line);
        config_json_kv_uint(j, "col", f->col);
        config_json_kv_string(j, "message", f->message);
        config_json_kv_string(j, "fix", f->fix);
        config_json_end_object(j);
    }
    config_json_end_array(j);
    config_json_kv_uint(j, "errors", certs_findings_count(fs, CERTS_SEV_ERROR));
    config_json_kv_uint(j, "warnings", certs_findings_count(fs, CERTS_SEV_WARNING));
}
