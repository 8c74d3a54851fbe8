#!/usr/bin/env bash
# deploy/systemd/verify.sh FERRY_BINARY: check deploy/systemd/ferry.service with
# `systemd-analyze verify` (CI runs it with build/ferry).
#
# The unit names /usr/local/bin/ferry and man:ferry(1), man:ferry.yaml(5); verify fails when the
# ExecStart binary or a Documentation= man page is missing.  So the check works on a copy in a
# temporary directory whose ExecStart points at FERRY_BINARY, with MANPATH at a temporary man
# tree made of docs/ferry.1 and docs/ferry.yaml.5.  Any line of output (warning or error)
# fails the check, as does a non-zero exit of systemd-analyze.
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
unit=$src/deploy/systemd/ferry.service

if [ $# -ne 1 ]; then
    echo "usage: $0 FERRY_BINARY" >&2
    exit 2
fi
bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
[ -x "$bin" ] || { echo "verify.sh: $1 is not an executable" >&2; exit 1; }
command -v systemd-analyze >/dev/null ||
    { echo "verify.sh: systemd-analyze not found (apt-get install systemd)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The unit must still name the installed path: the copy is the only thing rewritten.
grep -q '^ExecStart=/usr/local/bin/ferry run -c /etc/ferry/ferry.yaml$' "$unit" ||
    { echo "verify.sh: ExecStart in $unit is not the documented one" >&2; exit 1; }
mkdir -p "$tmp/unit" "$tmp/man/man1" "$tmp/man/man5"
sed "s#/usr/local/bin/ferry#$bin#g" "$unit" >"$tmp/unit/ferry.service"
cp "$src/docs/ferry.1" "$tmp/man/man1/ferry.1"
cp "$src/docs/ferry.yaml.5" "$tmp/man/man5/ferry.yaml.5"

# Without man(1) (a minimal container), systemd-analyze cannot resolve man: links; the copies
# above still prove that both pages exist.
man_opt=--man=yes
if ! command -v man >/dev/null 2>&1; then
    echo "verify.sh: man(1) not installed: Documentation=man: links not checked" >&2
    man_opt=--man=no
fi

rc=0
out=$(cd "$tmp/unit" && MANPATH="$tmp/man" SYSTEMD_LOG_LEVEL=notice \
    systemd-analyze verify "$man_opt" --recursive-errors=no "$tmp/unit/ferry.service" 2>&1) || rc=$?
if [ "$rc" != 0 ] || [ -n "$out" ]; then
    printf '%s\n' "$out" >&2
    echo "FAIL: systemd-analyze verify $unit (exit $rc)" >&2
    exit 1
fi
echo "ok: systemd-analyze verify $unit"
