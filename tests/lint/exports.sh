#!/usr/bin/env bash
# Goal (issue 16, STYLE "a file exports only <its prefix>_*"): every function or object a
# file of ferry's static libraries exports is named after that file: its stem (proxy_listener
# for proxy_listener.c) followed by "_", or the stem itself.  log.c exports log_*; proxy.c
# exports proxy_*, as the folder's front door.
#
#   tests/lint/exports.sh BUILD_DIR      the CMake build directory (the libraries are built)
#
# It runs `nm -g --defined-only` on BUILD_DIR/{config,tls,certs,proxy}/libferry_*.a and names
# each exported symbol whose object does not own it.  ALLOW lists the deliberate exceptions as
# "file.c:symbol" (a trailing '*' matches any rest), each with its reason above it; an entry
# that matches no exported name fails too, so the list cannot outlive what it excuses.
# Before checking the build it checks itself on a listing it writes (a misfit must be named,
# an owned or allowed name must pass), so a broken pattern cannot pass silently.
set -euo pipefail

ALLOW=(
    # The findings are a collection: certs_finding.c holds struct certs_findings' functions.
    "certs_finding.c:certs_findings_*"
    # config.h's front door: config_load() returns the struct config that config_free()
    # releases and config_listener_find() searches, the error list (config_errors_*,
    # config_error_format) and the node tree (config_node_*) it is built from.
    "config_load.c:config_error_format"
    "config_load.c:config_errors_*"
    "config_load.c:config_file_kind"
    "config_load.c:config_free"
    "config_load.c:config_listener_find"
    "config_load.c:config_node_*"
    # Per connection, the other half of struct tls_ctx: they read its private struct and
    # ex_data indexes, which would otherwise be exposed to all of tls/.
    "tls_ctx.c:tls_ssl_*"
    # CONTRACT.md section 4's rules and their vocabulary (reject reasons, peer info, times),
    # called from proxy/, certs/, fuzz/ and the tests by these names.
    "tls_verify.c:tls_check_*"
    "tls_verify.c:tls_peer_info_fill"
    "tls_verify.c:tls_reject_*"
    "tls_verify.c:tls_subject_str"
    "tls_verify.c:tls_time_*"
    # tls/'s one printf-into-a-buffer helper, used by every file of the folder.
    "tls_error.c:tls_errf"
    # Explaining a failure to the operator (this file's concern): our own certificate, the
    # chain's gaps, a plaintext or reset peer.
    "tls_alert.c:tls_chain_*"
    "tls_alert.c:tls_plaintext_describe"
    "tls_alert.c:tls_reset_describe"
    "tls_alert.c:tls_self_*"
)

# misfits [STALE]: read `nm -g --defined-only` output on stdin ("lib.a:" or "file.c.o:" lines,
# then "ADDR TYPE NAME"), print "file.c: exports NAME" for each name its file does not own; with
# STALE=1 also each ALLOW entry that matched nothing.
misfits()
{
    awk -v allow="${ALLOW[*]}" -v stale="${1:-0}" '
        BEGIN { n = split(allow, a, " ") }
        function allowed(file, sym,   i, e, f, p) {
            for (i = 1; i <= n; i++) {
                e = a[i]
                f = substr(e, 1, index(e, ":") - 1)
                p = substr(e, index(e, ":") + 1)
                if (f != file) {
                    continue
                }
                if (p == sym) {
                    used[i] = 1
                    return 1
                }
                if (substr(p, length(p)) == "*" &&
                    substr(sym, 1, length(p) - 1) == substr(p, 1, length(p) - 1)) {
                    used[i] = 1
                    return 1
                }
            }
            return 0
        }
        /\.o:$/ {
            file = $0
            sub(/:$/, "", file)
            sub(/\.o$/, "", file)
            stem = file
            sub(/\.c$/, "", stem)
            next
        }
        NF == 3 && file != "" {
            sym = $3
            # Names the compiler or a sanitizer adds (ASan: __odr_asan.NAME) are none of ours.
            if (sym ~ /^__/) {
                next
            }
            if (sym == stem || index(sym, stem "_") == 1 || allowed(file, sym)) {
                next
            }
            printf "%s: exports %s\n", file, sym
        }
        END {
            for (i = 1; stale && i <= n; i++) {
                if (!used[i]) {
                    printf "ALLOW entry %s matches no exported name: remove it\n", a[i]
                }
            }
        }'
}

self_check()
{
    local out
    out=$(misfits <<'NM'

proxy_listener.c.o:
0000000000000010 T proxy_listener_bind
0000000000000020 T proxy_bind_addr
0000000000000000 B proxy_listenerx
proxy_conn.c.o:
0000000000000030 T proxy_conn
0000000000000040 T proxy_pp_outcome_str
certs_finding.c.o:
0000000000000050 T certs_findings_add
0000000000000070 T certs_json_number
proxy_stats.c.o:
0000000000000080 B __odr_asan.proxy_stats_x
NM
    )
    local want=("proxy_listener.c: exports proxy_bind_addr"
        "proxy_listener.c: exports proxy_listenerx"
        "proxy_conn.c: exports proxy_pp_outcome_str"
        "certs_finding.c: exports certs_json_number")
    local w
    for w in "${want[@]}"; do
        if ! grep -qxF "$w" <<<"$out"; then
            echo "FAIL self-check: no finding \"$w\" in:"
            echo "$out"
            return 1
        fi
    done
    if [ "$(wc -l <<<"$out")" -ne "${#want[@]}" ]; then
        echo "FAIL self-check: expected ${#want[@]} findings, got:"
        echo "$out"
        return 1
    fi
    echo "self-check ok: ${#want[@]} planted misfits found, none on owned or allowed names"
}

[ $# -eq 1 ] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
self_check
libs=()
for d in config tls certs proxy; do
    lib="$1/$d/libferry_$d.a"
    [ -f "$lib" ] || { echo "FAIL: no $lib (build first)"; exit 1; }
    libs+=("$lib")
done
out=$(nm -g --defined-only "${libs[@]}" | misfits 1)
if [ -n "$out" ]; then
    echo "FAIL: exported names that are not their file's (rename to the file's prefix, move" \
        "the function to the file it belongs to, or add it to ALLOW with a reason):"
    echo "$out"
    exit 1
fi
echo "ok: every exported name of ${libs[*]} starts with its file's stem" \
    "(${#ALLOW[@]} allowed, see ALLOW)"
