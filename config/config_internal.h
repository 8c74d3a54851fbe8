/*
 * config internals shared by config_load.c, config_check.c and config_value.c (and the unit
 * tests).  Not part of the public interface: other layers include config.h only.
 */
#ifndef FERRY_CONFIG_INTERNAL_H
#define FERRY_CONFIG_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"

#if defined(__GNUC__)
#define CONFIG_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CONFIG_PRINTF(f, a)
#endif

/* Deepest nesting of sequences and mappings accepted; ferry's schema needs four. */
#define CONFIG_MAX_DEPTH 64

/* Largest configuration file config_load() reads. */
#define CONFIG_MAX_FILE_SIZE (1024 * 1024)

enum config_node_type {
    CONFIG_NODE_SCALAR,
    CONFIG_NODE_SEQUENCE,
    CONFIG_NODE_MAPPING,
    CONFIG_NODE_INVALID, /* an alias: already reported, skipped by the schema walk */
};

/*
 * One YAML node.  A scalar has ${text} (NUL-terminated, never containing NUL); a sequence has
 * its elements in ${items}; a mapping has keys and values alternately in ${items}
 * (n_items is twice the number of pairs).  A node owns its children.
 */
struct config_node {
    enum config_node_type type;
    struct config_pos pos;
    char *text;
    bool plain; /* scalar written without quotes (only those can be null) */
    struct config_node **items;
    size_t n_items;
};

/*
 * config_node_parse(file, text, len, errs):
 * Parse ${len} bytes of YAML at ${text} into a node tree, using libyaml's event API.
 * Aliases, anchors, several documents, nesting deeper than CONFIG_MAX_DEPTH and syntax
 * errors are appended to ${errs} as "file:line:col" errors.  Returns the root node (owned by
 * the caller, released with config_node_free()), or NULL after appending at least one error.
 */
struct config_node *config_node_parse(const char *file, const char *text, size_t len,
                                      struct config_errors *errs);

/*
 * config_node_free(node):
 * Release ${node} and its children.  config_node_free(NULL) does nothing.
 */
void config_node_free(struct config_node *node);

/*
 * config_node_is_null(node):
 * True when ${node} is a plain scalar "", "~", "null", "Null" or "NULL".
 */
bool config_node_is_null(const struct config_node *node);

/*
 * config_check(root, file, basedir, errs):
 * Walk ${root} against the schema of CONTRACT.md §3 and build a struct config.  Relative
 * file paths are joined to ${basedir} (taken as they are when ${basedir} is NULL).  Every
 * problem is appended to ${errs} with ${file} as its file name.  Returns a new config owned
 * by the caller, or NULL after appending at least one error.
 */
struct config *config_check(const struct config_node *root, const char *file, const char *basedir,
                            struct config_errors *errs);

/*
 * config_errors_add(errs, file, line, col, fmt, ...):
 * Append one error to ${errs} with a printf-formatted message.  Returns 0, or -1 when out of
 * memory (then ${errs} is unchanged).
 */
int config_errors_add(struct config_errors *errs, const char *file, unsigned line, unsigned col,
                      const char *fmt, ...) CONFIG_PRINTF(5, 6);

/*
 * config_errors_addv(errs, file, line, col, fmt, ap):
 * As config_errors_add(), with a va_list.
 */
int config_errors_addv(struct config_errors *errs, const char *file, unsigned line, unsigned col,
                       const char *fmt, va_list ap) CONFIG_PRINTF(5, 0);

/*
 * config_value_name_is_dns(name):
 * True when ${name} is a host name: dot-separated labels of letters, digits and "-" (1-63
 * characters, not starting or ending with "-"), 253 characters at most, and a last label that
 * is not all digits (so "1.2.3.999" is not taken for a name).
 */
bool config_value_name_is_dns(const char *name);

/*
 * config_value_db_glob_check(glob, why, whylen):
 * Check that ${glob} could match a CouchDB database name: its literal characters are those of
 * a database name (lowercase letters, digits and _$()+-/, the first a letter), and "*" and "?"
 * are wildcards.  Returns 0, or -1 with the reason in ${why} (like "database names are
 * lowercase (\"P\")").
 */
int config_value_db_glob_check(const char *glob, char *why, size_t whylen);

/*
 * config_value_ip_parse(text, bytes, family):
 * Parse an IPv4 or IPv6 literal (without brackets) into ${bytes} (4 or 16 bytes used) and
 * ${family} (4 or 6).  Returns 0, or -1 when ${text} is not an IP literal.
 */
int config_value_ip_parse(const char *text, unsigned char bytes[16], int *family);

/*
 * config_file_kind(mode):
 * What a file that is not a regular one is, for messages: "a FIFO", "a socket", "a character
 * device", "a block device", "a directory".
 */
const char *config_file_kind(unsigned mode);

#endif /* FERRY_CONFIG_INTERNAL_H */
