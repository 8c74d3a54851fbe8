/*
 * fuzz_config: libFuzzer target for config_load_string() (config/config.h).
 *
 * Any bytes are a possible configuration file.  The loader must never crash, leak or read out
 * of bounds, and it must either return a config with no error or NULL with at least one error
 * (an operator is never left with a failure and nothing to read).  Paths named by the input
 * are only stat()ed by config/, so the working directory does not matter.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Touch every string of ${cfg} so that ASan sees a dangling or unterminated one. */
static void
walk_config(const struct config *cfg)
{
    char buf[600];
    size_t sum = 0;

    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct config_listener *l = &cfg->listeners[i];

        if (config_listener_find(cfg, l->name) == NULL) {
            fprintf(stderr, "fuzz_config: listener %s not found by its own name\n", l->name);
            abort();
        }
        sum += snprintf(buf, sizeof(buf), "%s %s %s", l->name, config_value_mode_str(l->mode),
                        config_value_protocol_str(l->protocol)) > 0;
        sum += config_value_addr_format(&l->listen, buf, sizeof(buf))[0] != '\0';
        sum += config_value_addr_format(&l->backend, buf, sizeof(buf))[0] != '\0';
        sum += config_value_addr_format(&l->peer, buf, sizeof(buf))[0] != '\0';
        for (size_t j = 0; j < l->n_allow; j++) {
            sum += snprintf(buf, sizeof(buf), "%s", l->allow[j]) > 0;
        }
        for (size_t j = 0; j < l->n_access; j++) {
            const struct config_access_rule *r = &l->access[j];

            for (size_t k = 0; k < r->n_peers; k++) {
                sum += snprintf(buf, sizeof(buf), "%s", r->peers[k]) > 0;
            }
            for (size_t k = 0; k < r->n_databases; k++) {
                sum += snprintf(buf, sizeof(buf), "%s", r->databases[k]) > 0;
            }
        }
        for (size_t j = 0; j < l->proxy_auth.n_roles; j++) {
            sum += snprintf(buf, sizeof(buf), "%s", l->proxy_auth.roles[j]) > 0;
        }
    }
    sum += snprintf(buf, sizeof(buf), "%s %s", cfg->path,
                    config_value_log_level_str(cfg->log_level)) > 0;
    /* Keep the loop from being optimised away. */
    if (sum == (size_t)-1) {
        abort();
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config_errors errs = {0};
    struct config *cfg;
    char buf[1400];

    cfg = config_load_string("fuzz.yaml", (const char *)data, size, &errs);
    if (cfg == NULL && errs.n == 0) {
        fprintf(stderr, "fuzz_config: NULL without an error\n");
        abort();
    }
    if (cfg != NULL && errs.n != 0) {
        fprintf(stderr, "fuzz_config: a config and %zu errors\n", errs.n);
        abort();
    }
    for (size_t i = 0; i < errs.n; i++) {
        (void)config_error_format(&errs.v[i], buf, sizeof(buf));
    }
    if (cfg != NULL) {
        walk_config(cfg);
    }
    config_free(cfg);
    config_errors_clear(&errs);
    return 0;
}
