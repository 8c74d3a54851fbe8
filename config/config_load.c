/*
 * config_load: read the file, turn libyaml events into a node tree that remembers
 * file:line:column, hand the tree to the schema walk (config_check.c), and manage the error
 * list.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "config_internal.h"

#include "config.h"

/*
 * config_errors_addv(errs, file, line, col, fmt, ap):
 * As config_errors_add(), with a va_list.
 */
int
config_errors_addv(struct config_errors *errs, const char *file, unsigned line, unsigned col,
                   const char *fmt, va_list ap)
{
    struct config_error *v;
    char msg[1024];
    char *f;
    char *m;

    (void)vsnprintf(msg, sizeof(msg), fmt, ap);
    if ((f = strdup(file)) == NULL) {
        goto err0;
    }
    if ((m = strdup(msg)) == NULL) {
        goto err1;
    }
    if ((v = realloc(errs->v, (errs->n + 1) * sizeof(*v))) == NULL) {
        goto err2;
    }
    errs->v = v;
    v[errs->n].file = f;
    v[errs->n].line = line;
    v[errs->n].col = col;
    v[errs->n].msg = m;
    errs->n++;
    return (0);

err2:
    free(m);
err1:
    free(f);
err0:
    return (-1);
}

/*
 * config_errors_add(errs, file, line, col, fmt, ...):
 * Append one error to ${errs} with a printf-formatted message.  Returns 0, or -1 when out of
 * memory (then ${errs} is unchanged).
 */
int
config_errors_add(struct config_errors *errs, const char *file, unsigned line, unsigned col,
                  const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = config_errors_addv(errs, file, line, col, fmt, ap);
    va_end(ap);
    return (rc);
}

/*
 * config_errors_clear(errs):
 * Free every error in ${errs} and reset it to empty.
 */
void
config_errors_clear(struct config_errors *errs)
{
    size_t i;

    for (i = 0; i < errs->n; i++) {
        free(errs->v[i].file);
        free(errs->v[i].msg);
    }
    free(errs->v);
    errs->v = NULL;
    errs->n = 0;
}

/*
 * config_error_format(err, buf, len):
 * Write "file:line:col: msg" (or "file: msg" when line is 0) into ${buf}.  Returns ${buf}.
 */
const char *
config_error_format(const struct config_error *err, char *buf, size_t len)
{
    if (err->line == 0) {
        snprintf(buf, len, "%s: %s", err->file, err->msg);
    } else {
        snprintf(buf, len, "%s:%u:%u: %s", err->file, err->line, err->col, err->msg);
    }
    return (buf);
}

/*
 * config_node_free(node):
 * Release ${node} and its children.  config_node_free(NULL) does nothing.
 */
void
config_node_free(struct config_node *node)
{
    size_t i;

    if (node == NULL) {
        return;
    }
    /* Recursion is bounded by CONFIG_MAX_DEPTH, enforced while parsing. */
    for (i = 0; i < node->n_items; i++) {
        config_node_free(node->items[i]);
    }
    free(node->items);
    free(node->text);
    free(node);
}

/*
 * config_node_is_null(node):
 * True when ${node} is a plain scalar "", "~", "null", "Null" or "NULL".
 */
bool
config_node_is_null(const struct config_node *node)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    size_t i;

    if (node->type != CONFIG_NODE_SCALAR || !node->plain) {
        return (false);
    }
    for (i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++) {
        if (strcmp(node->text, nulls[i]) == 0) {
            return (true);
        }
    }
    return (false);
}

/* The tree being built from the event stream. */
struct builder {
    const char *file;
    struct config_errors *errs;
    struct config_node *root;
    struct config_node *stack[CONFIG_MAX_DEPTH]; /* open sequences and mappings */
    size_t depth;
    size_t n_errors; /* errors appended by this parse */
};

static void build_err(struct builder *b, yaml_mark_t mark, const char *fmt, ...)
    CONFIG_PRINTF(3, 4);

/* Append an error at libyaml's 0-based ${mark}. */
static void
build_err(struct builder *b, yaml_mark_t mark, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    config_errors_addv(b->errs, b->file, (unsigned)mark.line + 1, (unsigned)mark.column + 1, fmt,
                       ap);
    va_end(ap);
    b->n_errors++;
}

/* A new node of ${type} at ${mark}, or NULL when out of memory. */
static struct config_node *
node_new(enum config_node_type type, yaml_mark_t mark)
{
    struct config_node *n;

    if ((n = calloc(1, sizeof(*n))) == NULL) {
        return (NULL);
    }
    n->type = type;
    n->pos.line = (unsigned)mark.line + 1;
    n->pos.col = (unsigned)mark.column + 1;
    return (n);
}

/*
 * Attach ${n} to the innermost open container, or make it the root.  On failure ${n} is
 * freed.  Returns 0 or -1 (out of memory).
 */
static int
attach(struct builder *b, struct config_node *n)
{
    struct config_node *parent;
    struct config_node **items;

    if (b->depth == 0) {
        /* One document has one root; config_node_parse() stops at a second document. */
        config_node_free(b->root);
        b->root = n;
        return (0);
    }
    parent = b->stack[b->depth - 1];
    if ((items = realloc(parent->items, (parent->n_items + 1) * sizeof(struct config_node *))) ==
        NULL) {
        config_node_free(n);
        return (-1);
    }
    parent->items = items;
    parent->items[parent->n_items++] = n;
    return (0);
}

/* Handle one event.  Returns 0 to go on, 1 at the end of the stream, -1 to stop. */
static int
build_event(struct builder *b, const yaml_event_t *ev, int *docs)
{
    struct config_node *n;
    const yaml_char_t *anchor = NULL;

    switch (ev->type) {
    case YAML_STREAM_END_EVENT:
        return (1);
    case YAML_DOCUMENT_START_EVENT:
        if (++*docs > 1) {
            build_err(b, ev->start_mark,
                      "expected one YAML document, got a second one (\"---\"); ferry reads "
                      "its whole configuration from one document");
            return (-1);
        }
        return (0);
    case YAML_ALIAS_EVENT:
        build_err(b, ev->start_mark, "YAML aliases (*%s) are not supported; write the value out",
                  (const char *)ev->data.alias.anchor);
        if ((n = node_new(CONFIG_NODE_INVALID, ev->start_mark)) == NULL) {
            goto oom;
        }
        return (attach(b, n) == 0 ? 0 : -1);
    case YAML_SCALAR_EVENT:
        anchor = ev->data.scalar.anchor;
        if (anchor != NULL) {
            build_err(b, ev->start_mark, "YAML anchors (&%s) are not supported",
                      (const char *)anchor);
        }
        if (memchr(ev->data.scalar.value, '\0', ev->data.scalar.length) != NULL) {
            build_err(b, ev->start_mark, "expected text, got a string containing a NUL byte");
            if ((n = node_new(CONFIG_NODE_INVALID, ev->start_mark)) == NULL) {
                goto oom;
            }
            return (attach(b, n) == 0 ? 0 : -1);
        }
        if ((n = node_new(CONFIG_NODE_SCALAR, ev->start_mark)) == NULL) {
            goto oom;
        }
        if ((n->text = malloc(ev->data.scalar.length + 1)) == NULL) {
            config_node_free(n);
            goto oom;
        }
        memcpy(n->text, ev->data.scalar.value, ev->data.scalar.length);
        n->text[ev->data.scalar.length] = '\0';
        n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        return (attach(b, n) == 0 ? 0 : -1);
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
        anchor = ev->type == YAML_SEQUENCE_START_EVENT ? ev->data.sequence_start.anchor
                                                       : ev->data.mapping_start.anchor;
        if (anchor != NULL) {
            build_err(b, ev->start_mark, "YAML anchors (&%s) are not supported",
                      (const char *)anchor);
        }
        if (b->depth == CONFIG_MAX_DEPTH) {
            build_err(b, ev->start_mark, "expected at most %d nested levels, got more",
                      CONFIG_MAX_DEPTH);
            return (-1);
        }
        n = node_new(ev->type == YAML_SEQUENCE_START_EVENT ? CONFIG_NODE_SEQUENCE
                                                           : CONFIG_NODE_MAPPING,
                     ev->start_mark);
        if (n == NULL) {
            goto oom;
        }
        if (attach(b, n) != 0) {
            goto oom;
        }
        b->stack[b->depth++] = n;
        return (0);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        if (b->depth > 0) {
            b->depth--;
        }
        return (0);
    case YAML_NO_EVENT:
    case YAML_STREAM_START_EVENT:
    case YAML_DOCUMENT_END_EVENT:
        return (0);
    }
    return (0);

oom:
    build_err(b, ev->start_mark, "out of memory");
    return (-1);
}

/* ---- hints for YAML syntax errors ---- */

/* One line of the source: its bytes [start, end) without the newline. */
struct src_line {
    const char *start, *end;
};

/* Line ${n} (1-based) of text[0..len) into *${out}.  Returns false past the last line. */
static bool
src_line(const char *text, size_t len, unsigned n, struct src_line *out)
{
    const char *p = text, *end = text + len, *nl;
    unsigned i;

    for (i = 1; i < n; i++) {
        if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL) {
            return (false);
        }
        p = nl + 1;
    }
    if (p > end || (p == end && n > 1 && p[-1] == '\n')) {
        return (false);
    }
    nl = memchr(p, '\n', (size_t)(end - p));
    out->start = p;
    out->end = nl != NULL ? nl : end;
    if (out->end > out->start && out->end[-1] == '\r') {
        out->end--;
    }
    return (true);
}

/* Is ${l} blank or a comment? */
static bool
src_blank(const struct src_line *l)
{
    const char *p = l->start;

    while (p < l->end && (*p == ' ' || *p == '\t')) {
        p++;
    }
    return (p == l->end || *p == '#');
}

/*
 * Where the key of ${l} starts (0-based column, after the indentation and any "- "), and the
 * column of its ':' in *${colon} (-1 when the line is no "key:" line).  A key here is a letter
 * then letters, digits, '_' and '-': the keys of ferry.yaml, not "127.0.0.1:80".
 */
static int
src_key(const struct src_line *l, int *colon)
{
    const char *p = l->start, *k;

    *colon = -1;
    while (p < l->end && *p == ' ') {
        p++;
    }
    while (p + 1 < l->end && *p == '-' && p[1] == ' ') {
        p += 2;
        while (p < l->end && *p == ' ') {
            p++;
        }
    }
    k = p;
    if (p < l->end && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))) {
        while (p < l->end && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                              (*p >= '0' && *p <= '9') || *p == '_' || *p == '-')) {
            p++;
        }
        if (p < l->end && *p == ':') {
            *colon = (int)(p - l->start);
        }
    }
    return ((int)(k - l->start));
}

/*
 * The usual causes of a libyaml syntax error reported at *${line}:*${col} (1-based) in
 * text[0..len), for a human: a tab in the indentation, a "key:value" without a space (libyaml
 * sees it only on the next line, as part of a multi-line scalar), a key indented unlike the
 * one before it.  When one applies, moves the position in ${line} and ${col} to the mistake and
 * writes the hint to ${hint}; else writes "".
 */
static void
yaml_hint(const char *text, size_t len, const char *problem, unsigned *line, unsigned *col,
          char *hint, size_t hintlen)
{
    struct src_line l, prev;
    unsigned n, pn = 0;
    int key, colon, pkey, pcolon;
    const char *p;

    hint[0] = '\0';
    if (text == NULL || *line == 0 || !src_line(text, len, *line, &l)) {
        return;
    }

    /* A tab where the indentation is. */
    for (p = l.start; p < l.end && (*p == ' ' || *p == '\t'); p++) {
        if (*p == '\t') {
            *col = (unsigned)(p - l.start) + 1;
            snprintf(hint, hintlen,
                     "hint: a tab in the indentation of line %u; YAML indents with spaces only",
                     *line);
            return;
        }
    }

    /* The nearest line above that is not blank or a comment. */
    for (n = *line - 1; n > 0; n--) {
        if (src_line(text, len, n, &prev) && !src_blank(&prev)) {
            pn = n;
            break;
        }
    }

    /*
     * "key:value" on the line above: libyaml reads it as a plain scalar that runs on into this
     * line, and fails here ("mapping values are not allowed", "could not find expected ':'",
     * "did not find expected key").
     */
    if (pn > 0) {
        (void)src_key(&prev, &pcolon);
        if (pcolon >= 0 && prev.start + pcolon + 1 < prev.end && prev.start[pcolon + 1] != ' ' &&
            prev.start[pcolon + 1] != '\t') {
            int kcol = src_key(&prev, &pcolon);
            int vlen = (int)(prev.end - prev.start) - pcolon - 1;

            *line = pn;
            *col = (unsigned)pcolon + 1;
            snprintf(hint, hintlen,
                     "hint: a space is missing after ':' in \"%.*s\" (write \"%.*s: %.*s\")",
                     (int)(prev.end - prev.start) - kcol, prev.start + kcol, pcolon - kcol,
                     prev.start + kcol, vlen > 40 ? 40 : vlen, prev.start + pcolon + 1);
            return;
        }
    }

    /* A key indented unlike the key above it. */
    key = src_key(&l, &colon);
    if (pn > 0 && colon >= 0) {
        pkey = src_key(&prev, &pcolon);
        if (pcolon >= 0 && key != pkey &&
            (key > pkey || strstr(problem != NULL ? problem : "", "expected") != NULL)) {
            *col = (unsigned)key + 1;
            snprintf(hint, hintlen,
                     "hint: \"%.*s:\" is indented %d space%s but \"%.*s:\" on line %u by %d; "
                     "the keys of one mapping line up, a nested mapping goes under a key "
                     "that ends in ':'",
                     colon - key, l.start + key, key, key == 1 ? "" : "s", pcolon - pkey,
                     prev.start + pkey, pn, pkey);
        }
    }
}

/*
 * The libyaml syntax error of ${parser} as one error, with a hint at the line of the mistake
 * when yaml_hint() finds one (and where libyaml noticed it, when that is elsewhere).
 */
static void
syntax_error(const char *file, const char *text, size_t len, const yaml_parser_t *parser,
             struct config_errors *errs)
{
    const char *problem = parser->problem != NULL ? parser->problem : "unknown problem";
    unsigned pl = (unsigned)parser->problem_mark.line + 1,
             pc = (unsigned)parser->problem_mark.column + 1;
    unsigned line = pl, col = pc;
    char ctx[96] = "", hint[320], noticed[48] = "";

    yaml_hint(text, len, problem, &line, &col, hint, sizeof(hint));
    if (parser->context != NULL) {
        snprintf(ctx, sizeof(ctx), " (%s at %u:%u)", parser->context,
                 (unsigned)parser->context_mark.line + 1,
                 (unsigned)parser->context_mark.column + 1);
    }
    if (line != pl) {
        snprintf(noticed, sizeof(noticed), " (noticed at %u:%u)", pl, pc);
    }
    config_errors_add(errs, file, line, col, "YAML syntax error: %s%s%s%s%s", problem, ctx, noticed,
                      hint[0] != '\0' ? "; " : "", hint);
}

/*
 * config_node_parse(file, text, len, errs):
 * Parse ${len} bytes of YAML at ${text} into a node tree, using libyaml's event API.
 * Aliases, anchors, several documents, nesting deeper than CONFIG_MAX_DEPTH and syntax
 * errors are appended to ${errs} as "file:line:col" errors.  Returns the root node (owned by
 * the caller, released with config_node_free()), or NULL after appending at least one error.
 */
struct config_node *
config_node_parse(const char *file, const char *text, size_t len, struct config_errors *errs)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    struct builder b;
    int docs = 0;
    int rc;

    memset(&b, 0, sizeof(b));
    b.file = file;
    b.errs = errs;

    if (!yaml_parser_initialize(&parser)) {
        config_errors_add(errs, file, 0, 0, "out of memory");
        goto err0;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);

    for (;;) {
        if (!yaml_parser_parse(&parser, &ev)) {
            if (parser.error == YAML_MEMORY_ERROR) {
                config_errors_add(errs, file, 0, 0, "out of memory");
            } else if (parser.error == YAML_READER_ERROR) {
                /* The reader knows only a byte offset: bad UTF-8 or a control character. */
                config_errors_add(errs, file, 0, 0, "YAML error at byte %zu: %s",
                                  parser.problem_offset,
                                  parser.problem != NULL ? parser.problem : "unreadable input");
            } else {
                syntax_error(file, text, len, &parser, errs);
            }
            b.n_errors++;
            goto err1;
        }
        rc = build_event(&b, &ev, &docs);
        yaml_event_delete(&ev);
        if (rc < 0) {
            goto err1;
        }
        if (rc > 0) {
            break;
        }
    }

    if (b.n_errors > 0) {
        goto err1;
    }
    if (b.root == NULL || config_node_is_null(b.root)) {
        config_errors_add(errs, file, 0, 0,
                          "the configuration is empty; expected a mapping with at least "
                          "listeners:");
        goto err1;
    }

    yaml_parser_delete(&parser);
    return (b.root);

err1:
    config_node_free(b.root);
    yaml_parser_delete(&parser);
err0:
    return (NULL);
}

/* Sort errors ${from}.. of ${errs} by position, keeping the order of equal positions. */
static void
sort_errors(struct config_errors *errs, size_t from)
{
    size_t i;
    size_t j;

    for (i = from + 1; i < errs->n; i++) {
        struct config_error e = errs->v[i];

        for (j = i; j > from; j--) {
            const struct config_error *p = &errs->v[j - 1];

            if (p->line < e.line || (p->line == e.line && p->col <= e.col)) {
                break;
            }
            errs->v[j] = errs->v[j - 1];
        }
        errs->v[j] = e;
    }
}

/* Parse and check ${text}; see config_load_string(). */
static struct config *
load_text(const char *name, const char *text, size_t len, const char *basedir,
          struct config_errors *errs)
{
    struct config_node *root;
    struct config *cfg;
    size_t first = errs->n;

    if ((root = config_node_parse(name, text, len, errs)) == NULL) {
        goto err0;
    }
    cfg = config_check(root, name, basedir, errs);
    config_node_free(root);
    if (cfg == NULL) {
        goto err0;
    }
    return (cfg);

err0:
    /* Report like a compiler: in the order of the file. */
    sort_errors(errs, first);
    return (NULL);
}

/*
 * config_load_string(name, text, len, errs):
 * As config_load(), from memory; ${name} is used in error messages and relative file paths
 * are taken as they are (relative to the working directory).
 */
struct config *
config_load_string(const char *name, const char *text, size_t len, struct config_errors *errs)
{
    return (load_text(name, text, len, NULL, errs));
}

/*
 * The directory relative paths of ${path} resolve against: absolute (the working directory is
 * prepended to a relative ${path}), so that a later chdir() does not change its meaning.
 * Returns a new string, or NULL when out of memory or the working directory is unknown.
 */
static char *
config_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t dirlen = slash == NULL ? 0 : (size_t)(slash - path);
    char cwd[4096];
    char *dir;
    size_t cwdlen = 0;

    if (slash == path) {
        return (strdup("/"));
    }
    if (path[0] != '/') {
        if (getcwd(cwd, sizeof(cwd)) == NULL) {
            return (NULL);
        }
        cwdlen = strlen(cwd);
    }
    if ((dir = malloc(cwdlen + 1 + dirlen + 1)) == NULL) {
        return (NULL);
    }
    memcpy(dir, cwd, cwdlen);
    if (cwdlen > 0 && dirlen > 0) {
        dir[cwdlen++] = '/';
    }
    memcpy(dir + cwdlen, path, dirlen);
    dir[cwdlen + dirlen] = '\0';
    return (dir);
}

/*
 * config_file_kind(mode):
 * What kind of file ${mode} describes, for "not a regular file (...)".
 */
const char *
config_file_kind(unsigned mode)
{
    mode_t m = (mode_t)mode;

    return (S_ISDIR(m)    ? "a directory"
            : S_ISFIFO(m) ? "a FIFO"
            : S_ISSOCK(m) ? "a socket"
            : S_ISCHR(m)  ? "a character device"
            : S_ISBLK(m)  ? "a block device"
                          : "not a plain file");
}

/* Thread-safe strerror(): a reload may run beside other threads. */
static const char *
errstr(int e, char *buf, size_t len)
{
    if (strerror_r(e, buf, len) != 0) {
        snprintf(buf, len, "error %d", e);
    }
    return (buf);
}

/*
 * config_load(path, errs):
 * Read and validate the YAML file ${path}.  Every key of CONTRACT.md §3 is checked: unknown
 * keys, wrong types, bad durations/addresses/enums, missing required keys, duplicate listener
 * names or listen ports, and files that do not exist or cannot be read are errors.  Keys that
 * a later release brings are errors saying "not supported yet".
 * Returns a new config, or NULL with every problem appended to ${errs} (which the caller
 * frees with config_errors_clear()).  Relative file paths in the config are resolved
 * against the directory of ${path}.
 */
struct config *
config_load(const char *path, struct config_errors *errs)
{
    struct config *cfg;
    struct stat st;
    char ebuf[128];
    FILE *f;
    char *text;
    char *dir;
    size_t len;
    int fd;

    /* Non-blocking: a FIFO named as the config must be refused, not waited on. */
    if ((fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0 || fstat(fd, &st) != 0) {
        config_errors_add(errs, path, 0, 0, "cannot read: %s", errstr(errno, ebuf, sizeof(ebuf)));
        if (fd >= 0) {
            (void)close(fd);
        }
        goto err0;
    }
    if (S_ISDIR(st.st_mode)) {
        config_errors_add(errs, path, 0, 0, "expected a YAML file, got a directory");
        (void)close(fd);
        goto err0;
    }
    if (!S_ISREG(st.st_mode)) {
        config_errors_add(errs, path, 0, 0, "cannot read: not a regular file (%s)",
                          config_file_kind(st.st_mode));
        (void)close(fd);
        goto err0;
    }
    if ((f = fdopen(fd, "rb")) == NULL) {
        config_errors_add(errs, path, 0, 0, "cannot read: %s", errstr(errno, ebuf, sizeof(ebuf)));
        (void)close(fd);
        goto err0;
    }
    if ((text = malloc(CONFIG_MAX_FILE_SIZE + 1)) == NULL) {
        config_errors_add(errs, path, 0, 0, "out of memory");
        goto err1;
    }
    len = fread(text, 1, CONFIG_MAX_FILE_SIZE + 1, f);
    if (ferror(f)) {
        config_errors_add(errs, path, 0, 0, "cannot read: %s", errstr(errno, ebuf, sizeof(ebuf)));
        goto err2;
    }
    if (len > (size_t)CONFIG_MAX_FILE_SIZE) {
        config_errors_add(errs, path, 0, 0, "expected a file of at most %d bytes, got a larger one",
                          CONFIG_MAX_FILE_SIZE);
        goto err2;
    }
    if ((dir = config_dir(path)) == NULL) {
        config_errors_add(errs, path, 0, 0, "cannot find the directory of the file: %s",
                          errstr(errno, ebuf, sizeof(ebuf)));
        goto err2;
    }

    if ((cfg = load_text(path, text, len, dir, errs)) == NULL) {
        goto err3;
    }

    free(dir);
    free(text);
    (void)fclose(f); /* opened read-only: nothing to lose on close */
    return (cfg);

err3:
    free(dir);
err2:
    free(text);
err1:
    fclose(f);
err0:
    return (NULL);
}

/*
 * config_free(cfg):
 * Release ${cfg} and everything it owns.  config_free(NULL) does nothing.
 */
void
config_free(struct config *cfg)
{
    size_t i;
    size_t j;
    size_t k;

    if (cfg == NULL) {
        return;
    }
    for (i = 0; i < cfg->n_listeners; i++) {
        struct config_listener *l = &cfg->listeners[i];

        free(l->name);
        for (j = 0; j < l->n_allow; j++) {
            free(l->allow[j]);
        }
        free(l->allow);
        free(l->pp_from);
        free(l->via.auth_file.path);
        free(l->tls.cert.path);
        free(l->tls.key.path);
        free(l->tls.key_passphrase_file.path);
        free(l->tls.ca.path);
        free(l->tls.crl.path);
        for (j = 0; j < l->n_access; j++) {
            struct config_access_rule *r = &l->access[j];

            for (k = 0; k < r->n_peers; k++) {
                free(r->peers[k]);
            }
            free(r->peers);
            for (k = 0; k < r->n_databases; k++) {
                free(r->databases[k]);
            }
            free(r->databases);
        }
        free(l->access);
        free(l->proxy_auth.secret_file.path);
        for (j = 0; j < l->proxy_auth.n_roles; j++) {
            free(l->proxy_auth.roles[j]);
        }
        free(l->proxy_auth.roles);
    }
    free(cfg->listeners);
    free(cfg->user);
    free(cfg->path);
    free(cfg);
}

/*
 * config_listener_find(cfg, name):
 * The listener called ${name}, or NULL.
 */
const struct config_listener *
config_listener_find(const struct config *cfg, const char *name)
{
    size_t i;

    for (i = 0; i < cfg->n_listeners; i++) {
        if (cfg->listeners[i].name != NULL && strcmp(cfg->listeners[i].name, name) == 0) {
            return (&cfg->listeners[i]);
        }
    }
    return (NULL);
}
