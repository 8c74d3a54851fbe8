#!/usr/bin/env bash
# clang-tidy over ferry's own code with the committed .clang-tidy (checks and the reason for each
# one left out are there).  Any finding fails.
#
#   tests/lint/clang-tidy.sh BUILD_DIR     BUILD_DIR has compile_commands.json (every build
#                                          exports it: CMAKE_EXPORT_COMPILE_COMMANDS)
#
# The compile commands are gcc's: -Wno-unknown-warning-option keeps clang from refusing gcc-only
# warning flags.  Runs on 2 jobs (CI's machine has 2 cores); about 70 s there.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:?usage: clang-tidy.sh BUILD_DIR}
[ -f "$BUILD/compile_commands.json" ] || { echo "no $BUILD/compile_commands.json" >&2; exit 2; }
command -v run-clang-tidy >/dev/null || { echo "run-clang-tidy not installed (Debian: clang-tidy)" >&2; exit 2; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# run-clang-tidy's exit status is non-zero when any file has a finding (WarningsAsErrors).
if run-clang-tidy -p "$BUILD" -j2 -quiet -extra-arg=-Wno-unknown-warning-option \
    "^$SRC/(config|tls|certs|proxy)/" >"$out" 2>&1; then
    echo "clang-tidy: no findings ($(grep -c '"file"' "$BUILD/compile_commands.json") compile commands)"
    exit 0
fi
grep -E '(warning|error):' "$out" | sed 's/\x1b\[[0-9;]*m//g' | sort -u >&2 || true
echo "clang-tidy: findings above (full output: rerun $0 $BUILD)" >&2
exit 1
