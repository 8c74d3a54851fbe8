#!/usr/bin/env bash
# Informational (issue 16): every function in config/ tls/ certs/ proxy/ longer than N lines
# (default 100), longest first, one per line as "LINES FILE:LINE FUNCTION".
#
#   tests/lint/long-functions.sh [N]
#
# House style (STYLE.md): the return type on its own line, the function's name at column 0
# followed by "(", the body's "{" and "}" each alone at column 0.  LINES counts from the name's
# line through the closing "}" (the signature's continuation lines and the braces included);
# FILE:LINE is where the name is.  Not a test: it always exits 0 unless N is not a number.
set -euo pipefail

N=${1:-100}
case $N in
'' | *[!0-9]*)
    echo "usage: $0 [N]   (N: a line count, default 100)" >&2
    exit 2
    ;;
esac
SRC=${FERRY_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$SRC"

find config tls certs proxy -name '*.[ch]' -type f -print0 | sort -z |
    xargs -0 awk -v n="$N" '
        FNR == 1 { name = ""; body = 0 }
        # A name at column 0 followed by "(" outside a body: a function signature starts.
        !body && /^[A-Za-z_][A-Za-z0-9_]*\(/ {
            name = $0
            sub(/\(.*/, "", name)
            start = FNR
            next
        }
        !body && name != "" && /^\{/ { body = 1; next }
        # A ";" ending a line at column 0 level before the body: a prototype, not a definition.
        !body && name != "" && /;[[:space:]]*$/ { name = "" ; next }
        body && /^\}/ {
            len = FNR - start + 1
            if (len > n) {
                printf "%d %s:%d %s\n", len, FILENAME, start, name
            }
            body = 0
            name = ""
        }
    ' | sort -k1,1nr -k2,2
