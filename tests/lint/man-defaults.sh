#!/usr/bin/env bash
# Goal (issue 16, "defaults named once"): ferry.yaml(5) states, for each key with a default, the
# value config.h names as CONFIG_DEFAULT_*.  A default changed in config.h and not in the man
# page (or the other way round) fails here.
#
#   tests/lint/man-defaults.sh [CONFIG_H MAN_PAGE]   default: the source tree's
#
# MAP below ties each man page key to its macro and says how to read the value:
#   int     a number ("default 64")
#   dur     milliseconds; the man page's duration ("default 10s", "5m", "250ms") is converted
#   bool    true or false
#   tls     0x0303 / 0x0304, written "1.2" / "1.3"
#   enum:P  an enum constant P<WORD>, written as the lower-case word (CONFIG_LOG_INFO: info)
#   workers 0 is written auto
#   pool    the pool: line's "{ max_idle: N, idle_timeout: D }" (the macro names max_idle; the
#           idle_timeout is CONFIG_DEFAULT_POOL_IDLE_TIMEOUT_MS)
# A man page key is "tls.verify_depth" or "protocol" as tagged (.TP then .B), and "pool.max_idle"
# for a key tagged inside another's .RS block.  Every CONFIG_DEFAULT_* macro of config.h (but the
# config file paths) must have a row: a new default needs its man page line.
# Before checking the tree the script checks itself: a copy of config.h with one default
# changed must fail, so a broken pattern cannot pass silently.
set -euo pipefail

SRC=${FERRY_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
HDR=${1:-$SRC/config/config.h}
MAN=${2:-$SRC/docs/ferry.yaml.5}

MAP="
tls.min_version          CONFIG_DEFAULT_TLS_MIN_VERSION         tls
tls.verify_depth         CONFIG_DEFAULT_TLS_VERIFY_DEPTH        int
tls.cn_fallback          CONFIG_DEFAULT_TLS_CN_FALLBACK         bool
tls.session_resumption   CONFIG_DEFAULT_TLS_SESSION_RESUMPTION  bool
couchdb_proxy_auth.hash  CONFIG_DEFAULT_PROXY_AUTH_HASH         enum:CONFIG_HASH_
protocol                 CONFIG_DEFAULT_PROTOCOL                enum:CONFIG_PROTOCOL_
client_cert              CONFIG_DEFAULT_CLIENT_CERT             enum:CONFIG_CLIENT_CERT_
client_cert_header       CONFIG_DEFAULT_CLIENT_CERT_HEADER      enum:CONFIG_CLIENT_CERT_HEADER_
host_header              CONFIG_DEFAULT_HOST_HEADER             enum:CONFIG_HOST_HEADER_
pool                     CONFIG_DEFAULT_POOL_MAX_IDLE           pool
pool.max_idle            CONFIG_DEFAULT_POOL_MAX_IDLE           int
pool.idle_timeout        CONFIG_DEFAULT_POOL_IDLE_TIMEOUT_MS    dur
backend_proxy_protocol   CONFIG_DEFAULT_BACKEND_PROXY_PROTOCOL  enum:CONFIG_BACKEND_PP_
limits.max_connections   CONFIG_DEFAULT_MAX_CONNECTIONS         int
limits.handshake_timeout CONFIG_DEFAULT_HANDSHAKE_TIMEOUT_MS    dur
limits.idle_timeout      CONFIG_DEFAULT_IDLE_TIMEOUT_MS         dur
limits.header_timeout    CONFIG_DEFAULT_HEADER_TIMEOUT_MS       dur
limits.backend_timeout   CONFIG_DEFAULT_BACKEND_TIMEOUT_MS      dur
limits.drain_timeout     CONFIG_DEFAULT_DRAIN_TIMEOUT_MS        dur
admin.probe_interval     CONFIG_DEFAULT_PROBE_INTERVAL_MS       dur
log.level                CONFIG_DEFAULT_LOG_LEVEL               enum:CONFIG_LOG_
log.format               CONFIG_DEFAULT_LOG_FORMAT              enum:CONFIG_LOG_
workers                  CONFIG_DEFAULT_WORKERS                 workers
"

# The value of macro $1 in $HDR, following macros that name other macros.
macro() {
    local name=$1 v
    for _ in 1 2 3 4; do
        v=$(sed -n -E "s|^#define[[:space:]]+${name}[[:space:]]+(.*)$|\1|p" "$HDR" |
            sed -E 's|/\*.*||; s|[[:space:]]+$||')
        if [[ -z $v ]]; then
            echo "man-defaults: $HDR does not define $name" >&2
            return 1
        fi
        if [[ $v =~ ^[A-Z][A-Z0-9_]*$ ]] && grep -q -E "^#define[[:space:]]+${v}[[:space:]]" "$HDR"; then
            name=$v
            continue
        fi
        echo "$v"
        return 0
    done
    echo "man-defaults: $1: macros nest too deep" >&2
    return 1
}

# An arithmetic macro value ("(UINT64_C(60) * 1000)", "0x0303") as a decimal number.
number() {
    local v=${1//UINT64_C/}
    echo $((v))
}

# A duration as the man page writes it ("10s", "250ms", "5m", "1h") in milliseconds.
duration_ms() {
    if [[ $1 =~ ^([0-9]+)(ms|s|m|h)$ ]]; then
        case ${BASH_REMATCH[2]} in
        ms) echo "${BASH_REMATCH[1]}" ;;
        s) echo $((BASH_REMATCH[1] * 1000)) ;;
        m) echo $((BASH_REMATCH[1] * 60000)) ;;
        h) echo $((BASH_REMATCH[1] * 3600000)) ;;
        esac
    else
        echo "not a duration: $1"
    fi
}

# The man page as "key<TAB>text" lines, one per tagged item, troff requests rendered as text.
items() {
    awk '
    function render(line,   req, args, out, i, c, q, tok, ntok, toks, sep) {
        if (line !~ /^\./) { return line }
        req = line; sub(/[ \t].*/, "", req)
        args = substr(line, length(req) + 1)
        if (req !~ /^\.(B|I|BR|RB|IR|RI|BI|IB)$/) { return "" }
        ntok = 0; tok = ""; q = 0
        for (i = 1; i <= length(args); i++) {
            c = substr(args, i, 1)
            if (c == "\"") { q = !q; continue }
            if (!q && (c == " " || c == "\t")) {
                if (tok != "") { toks[++ntok] = tok; tok = "" }
                continue
            }
            tok = tok c
        }
        if (tok != "") { toks[++ntok] = tok }
        sep = (req == ".B" || req == ".I") ? " " : ""
        out = ""
        for (i = 1; i <= ntok; i++) { out = out (i > 1 ? sep : "") toks[i] }
        return out
    }
    function flush() {
        if (key != "") {
            gsub(/\\\(dq/, "\"", text); gsub(/\\\(en/, "-", text); gsub(/\\-/, "-", text)
            print key "\t" text
        }
        key = ""; text = ""
    }
    /^\.(SH|SS)/ { flush(); depth = 0; top = ""; prev = $0; next }
    /^\.RS/ { flush(); depth++; prev = $0; next }
    /^\.RE/ { flush(); depth--; prev = $0; next }
    /^\.TP/ { flush(); prev = $0; next }
    prev ~ /^\.TP/ && /^\.B / {
        tag = render($0); gsub(/\\-/, "-", tag)
        if (depth == 0) { top = tag; key = tag } else { key = top "." tag }
        prev = $0; next
    }
    { if (key != "") { text = text " " render($0) } prev = $0 }
    END { flush() }
    ' "$MAN"
}

# Check $HDR against $MAN; print each mismatch; exit status 1 when there is one.
check() {
    local all fail=0 key mac kind v text got want
    all=$(items)
    # Every default has a row.
    while read -r mac; do
        case $mac in CONFIG_DEFAULT_PATH_*) continue ;; esac
        if ! grep -q -E "[[:space:]]${mac}[[:space:]]" <<<"$MAP"; then
            echo "man-defaults: $mac has no row in MAP (which man page key states it?)"
            fail=1
        fi
    done < <(sed -n -E 's/^#define[[:space:]]+(CONFIG_DEFAULT_[A-Z0-9_]+).*/\1/p' "$HDR")
    while read -r key mac kind; do
        [[ -z $key ]] && continue
        v=$(macro "$mac") || { fail=1; continue; }
        text=$(awk -F'\t' -v k="$key" '$1 == k { print $2; exit }' <<<"$all")
        if [[ -z $text ]]; then
            echo "man-defaults: $MAN has no item for $key"
            fail=1
            continue
        fi
        if [[ $kind == pool ]]; then
            got=$(grep -o -E 'default \{[^}]*\}' <<<"$text" | head -1 | sed 's/^default //') || true
            want="{ max_idle: $(number "$v"), idle_timeout: \
$(($(number "$(macro CONFIG_DEFAULT_POOL_IDLE_TIMEOUT_MS)") / 1000))s }"
        else
            got=$(grep -o -E 'default [^ ,;)]+' <<<"$text" | head -1 | sed 's/^default //; s/"//g') ||
                true
            case $kind in
            int) want=$(number "$v") ;;
            dur) want="$(number "$v") ms"; got="$(duration_ms "$got") ms" ;;
            bool) want=$v ;;
            tls)
                case $(number "$v") in
                771) want=1.2 ;;
                772) want=1.3 ;;
                *) want="an unknown version $v" ;;
                esac
                ;;
            enum:*)
                want=${v#"${kind#enum:}"}
                want=$(tr 'A-Z_' 'a-z-' <<<"$want")
                ;;
            workers) want=$(number "$v"); [[ $want == 0 ]] && want=auto ;;
            *) want="an unknown kind $kind" ;;
            esac
        fi
        if [[ $got != "$want" ]]; then
            echo "man-defaults: $key: $MAN says default ${got:-(none)}, $HDR has $mac = $v ($want)"
            fail=1
        fi
    done <<<"$MAP"
    return $fail
}

if [[ $# -eq 0 ]]; then
    # Self-check: one changed default must be caught.
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    sed -E 's/^(#define[[:space:]]+CONFIG_DEFAULT_IDLE_TIMEOUT_MS[[:space:]]+).*/\1(UINT64_C(301) * 1000)/' \
        "$HDR" >"$tmp/config.h"
    if out=$(bash "$0" "$tmp/config.h" "$MAN"); then
        echo "man-defaults: self-check failed: idle_timeout changed to 301s in config.h passed"
        exit 1
    fi
    if ! grep -q 'limits.idle_timeout: .* says default 300000 ms' <<<"$out"; then
        echo "man-defaults: self-check failed: the changed default was not the one reported:"
        echo "$out"
        exit 1
    fi
fi

if check; then
    echo "man-defaults: $(grep -c -E '^[a-z]' <<<"$MAP") man page defaults match $HDR"
else
    exit 1
fi
