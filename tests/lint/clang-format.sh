#!/usr/bin/env bash
# clang-format --dry-run over every C file of ferry (the product, its unit tests, fuzz targets
# and bench helpers) with the committed .clang-format; any difference fails, naming the file
# and line.
#
#   tests/lint/clang-format.sh
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
cd "$SRC"
command -v clang-format >/dev/null || { echo "clang-format not installed (Debian: clang-format)" >&2; exit 2; }
mapfile -t files < <(find config tls certs proxy tests/unit fuzz bench -name '*.[ch]' 2>/dev/null | sort)
clang-format --dry-run --Werror "${files[@]}"
echo "clang-format: ${#files[@]} files, no differences"
