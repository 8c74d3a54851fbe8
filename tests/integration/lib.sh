# shellcheck shell=bash
# lib.sh: sourced by every tests/integration/NN-*.sh script.
#
# Runs the REAL ferry binary on 127.0.0.1 against real peers (curl, openssl s_client/s_server,
# python3 helpers in tests/support/).  Only bash, coreutils, python3 (stdlib), curl and the
# openssl CLI are used.
#
# Environment (CTest sets the first four; by hand they default as shown):
#   FERRY_BIN        the binary                     (default: $FERRY_SRC/build/ferry)
#   FERRY_SRC        the source tree                (default: two levels above this file)
#   FERRY_TEST_TMP   parent of per-test work dirs   (default: a fresh mktemp -d)
#   FERRY_TEST_NAME  this test's name               (default: basename of the script)
#   FERRY_VALGRIND=1 run ferry under valgrind memcheck (slower; scripts scale work down)
#
# Variables set for the script:
#   T            the per-test work dir $FERRY_TEST_TMP/$FERRY_TEST_NAME (emptied at start)
#   SUPPORT      $FERRY_SRC/tests/support
#   VG           1 under valgrind, else 0
#   READY_SECS   how long ferry may take to become ready (10, or 90 under valgrind)
#
# Functions (stable API; other scripts, e.g. 60-replication.sh, rely on these names):
#   fail MSG...                  print "FAIL: MSG" and exit 1 (the EXIT trap cleans up)
#   note MSG...                  print a progress line to stderr
#   pass MSG...                  print "ok: MSG"
#   free_port                    print a free TCP port on 127.0.0.1 in 20000-32000 (below the
#                                ephemeral range), never the same twice within one script
#   ports VAR...                 set each shell variable VAR to a free_port
#   wait_port PORT [SECS]        wait until 127.0.0.1:PORT accepts connections (default 10s)
#   wait_port_closed PORT [SECS] wait until nothing listens on 127.0.0.1:PORT
#   bg_register PID NAME         have the EXIT trap stop PID (TERM, then KILL)
#   bg_run NAME CMD...           run CMD in the background, stdout+stderr to $T/NAME.log,
#                                registered for cleanup; sets BG_PID
#   ferry_spawn NAME CONFIG [ARGS...]
#                                start `$FERRY_BIN run -c CONFIG ARGS...` in the background
#                                (stdin </dev/null, stderr to $T/NAME.log, stdout to
#                                $T/NAME.out), under valgrind when FERRY_VALGRIND=1; no wait
#   ferry_start NAME CONFIG [ARGS...]
#                                ferry_spawn, then wait for `event=ready` in the log (fails if
#                                ferry exits first or is not ready within READY_SECS)
#   ferry_pid NAME               print the pid of a started ferry
#   ferry_alive NAME             status 0 when that ferry still runs
#   ferry_stop NAME              SIGTERM, wait (bounded), require exit status 0 (under
#                                valgrind: fail on 99 = memcheck errors, showing the log)
#   ferry_expect_exit CODE NAME CONFIG [SECS] [ARGS...]
#                                run `ferry run -c CONFIG` in the foreground with </dev/null
#                                and a time bound (default 15s; valgrind x6); fail unless it
#                                exits with CODE; output in $T/NAME.log
#   ferry_cmd ARGS...            run `$FERRY_BIN ARGS...` (under valgrind when enabled) with a
#                                time bound; status is the binary's status
#   expect_log NAME PATTERN [SECS]   wait until $T/NAME.log matches the ERE PATTERN
#   expect_no_log NAME PATTERN       fail if $T/NAME.log matches PATTERN
#   log_count NAME PATTERN       print how many lines of $T/NAME.log match PATTERN
#   http_backend PORT [NAME]     python3 HTTP/1.1 backend on 127.0.0.1:PORT: answers every
#                                request 200 with JSON {"backend":NAME,"method","path","headers",
#                                "body_sha256","body_len"}; waits until it listens
#   tcp_backend PORT MODE [NAME] python3 TCP backend (tests/support/tcp_backend.py):
#                                MODE echo | sink | cmd; sink reads to EOF, then replies the
#                                sha256 hex of what it got + "\n" and appends it to
#                                $T/NAME.sha256; cmd reads a first line "SINK" or "SOURCE <n>"
#   pki_make DIR                 build the test PKI (tests/support/pki.sh) into DIR once
#   node1_pki CA_NAME            `ferry certs init-ca` (named CA_NAME) in $T/pki/ca, then
#                                `ferry certs issue` node1.test (IP 127.0.0.1) into $T/pki/n;
#                                sets P=$T/pki, CRT, KEY and CA (the node's bundle copy)
#   tls_client ARGS...           python3 tests/support/tls_client.py ARGS... (see its --help)
#   curl_code ARGS...            curl -s -o $T/curl.body -w '%{http_code}' --max-time 10 ARGS...;
#                                prints the code (000 when no HTTP answer); body in $T/curl.body
#   sha256_of FILE               print the sha256 hex of FILE
#   ca_sign_dated CA_DIR KEY CN SAN START END OUT
#                                sign a leaf for KEY with the `ferry certs` CA in CA_DIR
#                                (ca.crt, ca.key) using `openssl ca` with explicit dates
#                                (START/END as YYMMDDHHMMSSZ or YYYYMMDDHHMMSSZ), both EKUs,
#                                CN and subjectAltName SAN (e.g. "DNS:a.test,IP:127.0.0.1");
#                                writes OUT (the certificate)
#   same_findings NAME CONFIG [ID...]
#                                the refused `ferry run` of $T/NAME.log printed the findings
#                                of `ferry check -c CONFIG` verbatim (id, file, text, fix),
#                                including every ID given as an error
#   k8s_configmap_yaml OUT       the ferry.yaml inside deploy/kubernetes's ConfigMap, as shipped
#   bad NAME WHY                 record a failed case without stopping the script: print
#                                "FAIL: NAME: WHY" and add NAME (once) to the array `failures`
#   bad_report WHAT              at the end of a script that uses bad: fail with
#                                "WHAT: N case(s) failed: NAME..." if any case failed
#   skip REASON                  print "SKIP: REASON" to stderr and exit 77 (CTest's
#                                SKIP_RETURN_CODE: reported as skipped, never as passed)
#
# python3: when the python3 on PATH is a launcher script (a pyenv shim costs ~0.5 s a start),
# lib.sh puts the interpreter it runs first on PATH for the script and everything it starts.
#
# A watchdog kills the script (and everything it started) when it runs longer than its
# "# timeout: N" header (default 300s; x3 under valgrind), a few seconds before CTest would.
# On exit every started process is stopped; when the script fails, the tail of every log in
# $T is printed.

set -euo pipefail

_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${FERRY_SRC:=$(cd "$_LIB_DIR/../.." && pwd)}"
: "${FERRY_BIN:=$FERRY_SRC/build/ferry}"
: "${FERRY_TEST_NAME:=$(basename "$0" .sh)}"
: "${FERRY_VALGRIND:=0}"
if [ -z "${FERRY_TEST_TMP:-}" ]; then
    FERRY_TEST_TMP=$(mktemp -d /tmp/ferry-it.XXXXXX)
fi
export FERRY_SRC FERRY_BIN FERRY_TEST_NAME FERRY_VALGRIND FERRY_TEST_TMP

SUPPORT=$FERRY_SRC/tests/support
T=$FERRY_TEST_TMP/$FERRY_TEST_NAME
if [ "$FERRY_VALGRIND" = 1 ]; then VG=1; else VG=0; fi
READY_SECS=10
[ "$VG" = 1 ] && READY_SECS=90
export T SUPPORT VG

case "$T" in
*/) echo "lib.sh: bad work dir '$T'" >&2; exit 1 ;;
esac
rm -rf -- "$T"
mkdir -p -- "$T"
: >"$T/.pids"
: >"$T/.ports"

# A python3 that is a script (a pyenv shim re-resolves the version at every start) is replaced,
# for this script and its children, by the interpreter it runs (found once per $FERRY_TEST_TMP).
_lib_python() {
    local shim real cache=$FERRY_TEST_TMP/.python3
    shim=$(command -v python3) || return 0
    [ "$(head -c 2 "$shim" 2>/dev/null)" = '#!' ] || return 0
    if [ -s "$cache" ] && [ "$(sed -n 1p "$cache")" = "$shim" ]; then
        real=$(sed -n 2p "$cache")
    fi
    if [ -z "${real:-}" ] || [ ! -x "$real" ]; then
        real=$(python3 -c 'import sys; print(sys.executable)') || return 0
        printf '%s\n%s\n' "$shim" "$real" >"$cache.$$" && mv -f "$cache.$$" "$cache"
    fi
    mkdir -p "$T/.bin"
    ln -sf "$real" "$T/.bin/python3"
    PATH=$T/.bin:$PATH
    export PATH
}
_lib_python

declare -A _FERRY_PIDS=()
_LIB_TOP_PID=$$

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

note() {
    echo "-- $*" >&2
}

skip() {
    echo "SKIP: $*" >&2
    exit 77
}

failures=()
bad() {
    echo "FAIL: $1: $2" >&2
    case " ${failures[*]} " in
    *" $1 "*) ;;
    *) failures+=("$1") ;;
    esac
}

bad_report() {
    [ "${#failures[@]}" = 0 ] || fail "$1: ${#failures[@]} case(s) failed: ${failures[*]}"
}

pass() {
    echo "ok: $*" >&2
}

sha256_of() {
    sha256sum "$1" | cut -d' ' -f1
}

# ---- processes and cleanup ----

bg_register() {
    echo "$1 $2" >>"$T/.pids"
}

bg_run() {
    local name=$1
    shift
    "$@" </dev/null >"$T/$name.log" 2>&1 &
    BG_PID=$!
    bg_register "$BG_PID" "$name"
}

# All descendants of PID (children first-level last), one per line.
_descendants() {
    local pid=$1 c
    for c in $(ps -o pid= --ppid "$pid" 2>/dev/null); do
        _descendants "$c"
        echo "$c"
    done
}

_stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

_lib_cleanup() {
    local rc=$?
    set +e
    trap - EXIT TERM INT
    local pid name
    while read -r pid name; do
        [ -n "$pid" ] && _stop_pid "$pid"
    done <"$T/.pids"
    if [ -n "${_WATCHDOG_PID:-}" ]; then
        kill -TERM "$_WATCHDOG_PID" 2>/dev/null
        [ -s "$T/.wd_sleep" ] && kill -TERM "$(cat "$T/.wd_sleep")" 2>/dev/null
    fi
    wait 2>/dev/null
    if [ "$rc" = 77 ]; then
        echo "==== $FERRY_TEST_NAME skipped ====" >&2
    elif [ "$rc" != 0 ]; then
        echo "==== $FERRY_TEST_NAME failed (status $rc); logs in $T ====" >&2
        local f
        for f in "$T"/*.log; do
            [ -f "$f" ] || continue
            echo "---- $(basename "$f") (last 40 lines) ----" >&2
            tail -n 40 "$f" >&2
        done
    else
        echo "==== $FERRY_TEST_NAME passed ====" >&2
    fi
    exit "$rc"
}
trap _lib_cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# ---- watchdog ----

_lib_timeout() {
    local t
    t=$(sed -n 's/^# timeout: \([0-9][0-9]*\).*/\1/p' "$0" 2>/dev/null | head -n1)
    [ -n "$t" ] || t=300
    [ "$VG" = 1 ] && t=$((t * 3))
    if [ "$t" -gt 30 ]; then t=$((t - 5)); fi
    echo "$t"
}
FERRY_TEST_TIMEOUT=${FERRY_TEST_TIMEOUT:-$(_lib_timeout)}
(
    set +e
    trap 'exit 0' TERM
    sleep "$FERRY_TEST_TIMEOUT" </dev/null >/dev/null 2>&1 &
    echo $! >"$T/.wd_sleep"
    wait $! || exit 0
    echo "FAIL: watchdog: $FERRY_TEST_NAME ran longer than ${FERRY_TEST_TIMEOUT}s" >&2
    # TERM the script first (its trap runs once the foreground child ends), then the
    # children it started so that a blocked foreground command returns.
    kill -TERM "$_LIB_TOP_PID" 2>/dev/null
    for p in $(_descendants "$_LIB_TOP_PID"); do
        [ "$p" = "$BASHPID" ] && continue
        kill -TERM "$p" 2>/dev/null || true
    done
    exit 0
) </dev/null >/dev/null &
_WATCHDOG_PID=$!

# ---- ports ----

free_port() {
    local p
    # Below the kernel's ephemeral range (a client socket elsewhere on the machine can never
    # take the port between this pick and the bind of the test's server), not used by any TCP
    # socket (listening, connected or TIME_WAIT: /proc/net/tcp and tcp6) nor given out before.
    p=$(awk -v seed="$RANDOM$RANDOM" '
        function hex(h, i, n) {
            n = 0
            for (i = 1; i <= length(h); i++) { n = n * 16 + index("0123456789ABCDEF", substr(h, i, 1)) - 1 }
            return n
        }
        FILENAME ~ /ip_local_port_range$/ { first = $1; next }
        FILENAME ~ /\/tcp6?$/ {
            if (FNR > 1) { split($2, a, ":"); used[hex(a[2])] = 1 }
            next
        }
        { used[$1] = 1 }
        END {
            lo = 20000; hi = 32000
            if (first != "" && first - 1 < hi) { hi = first - 1 }
            srand(seed)
            for (i = 0; i < 2000; i++) {
                p = lo + int(rand() * (hi - lo + 1))
                if (!(p in used)) { print p; exit 0 }
            }
            exit 1
        }' "$T/.ports" /proc/net/tcp /proc/net/tcp6 /proc/sys/net/ipv4/ip_local_port_range \
        2>/dev/null) || fail "no free port"
    echo "$p" >>"$T/.ports"
    echo "$p"
}

ports() {
    local v
    for v in "$@"; do
        printf -v "$v" '%s' "$(free_port)"
    done
}

# Status 0 when 127.0.0.1:PORT accepts a connection within a second.
_port_open() {
    timeout 1 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

wait_port() {
    local port=$1 secs=${2:-10} end
    [ "$VG" = 1 ] && [ "${2:-}" = "" ] && secs=$READY_SECS
    end=$((SECONDS + secs))
    while ! _port_open "$port"; do
        [ "$SECONDS" -ge "$end" ] && fail "nothing listens on 127.0.0.1:$port after ${secs}s"
        sleep 0.1
    done
}

wait_port_closed() {
    local port=$1 secs=${2:-10} end
    end=$((SECONDS + secs))
    while _port_open "$port"; do
        [ "$SECONDS" -ge "$end" ] && fail "127.0.0.1:$port still listening after ${secs}s"
        sleep 0.1
    done
}

# ---- ferry ----

_ferry_prefix() {
    if [ "$VG" = 1 ]; then
        echo valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
            --track-fds=no -q
    fi
}

ferry_spawn() {
    local name=$1 config=$2
    shift 2
    [ -x "$FERRY_BIN" ] || fail "no ferry binary at $FERRY_BIN"
    # shellcheck disable=SC2046
    $(_ferry_prefix) "$FERRY_BIN" run -c "$config" "$@" </dev/null >"$T/$name.out" \
        2>"$T/$name.log" &
    _FERRY_PIDS[$name]=$!
    bg_register "$!" "ferry:$name"
}

ferry_pid() {
    local p=${_FERRY_PIDS[$1]:-}
    [ -n "$p" ] || fail "no ferry named $1"
    echo "$p"
}

ferry_alive() {
    kill -0 "$(ferry_pid "$1")" 2>/dev/null
}

ferry_start() {
    local name=$1 end
    ferry_spawn "$@"
    end=$((SECONDS + READY_SECS))
    while ! grep -q 'event=ready' "$T/$name.log" 2>/dev/null; do
        if ! ferry_alive "$name"; then
            local rc=0
            wait "$(ferry_pid "$name")" || rc=$?
            echo "---- $name.log ----" >&2
            cat "$T/$name.log" >&2
            fail "ferry $name exited with status $rc before event=ready"
        fi
        [ "$SECONDS" -ge "$end" ] && fail "ferry $name not ready after ${READY_SECS}s"
        sleep 0.1
    done
}

ferry_stop() {
    local name=$1 pid rc=0 i secs=10
    pid=$(ferry_pid "$name")
    [ "$VG" = 1 ] && secs=60
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 $((secs * 10))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        fail "ferry $name did not exit within ${secs}s of SIGTERM"
    fi
    wait "$pid" || rc=$?
    unset "_FERRY_PIDS[$name]"
    if [ "$rc" = 99 ] && [ "$VG" = 1 ]; then
        echo "---- $name.log (valgrind) ----" >&2
        cat "$T/$name.log" >&2
        fail "valgrind memcheck reported errors in ferry $name"
    fi
    # A sanitizer build reports in the log; ThreadSanitizer's halt_on_error (.ci/run) makes the
    # exit status say so too, but a report must fail the test even without it.
    if grep -q 'WARNING: ThreadSanitizer\|ERROR: AddressSanitizer' "$T/$name.log" 2>/dev/null; then
        cat "$T/$name.log" >&2
        fail "a sanitizer reported errors in ferry $name"
    fi
    [ "$rc" = 0 ] || fail "ferry $name exited with status $rc after SIGTERM (expected 0)"
}

ferry_expect_exit() {
    local want=$1 name=$2 config=$3 secs=${4:-15} rc=0
    shift 3
    [ $# -gt 0 ] && shift
    [ "$VG" = 1 ] && secs=$((secs * 6))
    # shellcheck disable=SC2046
    timeout -k 2 "$secs" $(_ferry_prefix) "$FERRY_BIN" run -c "$config" "$@" \
        </dev/null >"$T/$name.log" 2>&1 || rc=$?
    [ "$rc" = 124 ] && fail "ferry run ($name) still running after ${secs}s (expected exit $want)"
    if [ "$rc" = 99 ] && [ "$VG" = 1 ]; then
        cat "$T/$name.log" >&2
        fail "valgrind memcheck reported errors in ferry $name"
    fi
    if [ "$rc" != "$want" ]; then
        cat "$T/$name.log" >&2
        fail "ferry run ($name) exited $rc, expected $want"
    fi
}

ferry_cmd() {
    local secs=30
    [ "$VG" = 1 ] && secs=180
    # shellcheck disable=SC2046
    timeout -k 2 "$secs" $(_ferry_prefix) "$FERRY_BIN" "$@" </dev/null
}

# ---- logs ----

expect_log() {
    local name=$1 pat=$2 secs=${3:-5} end
    [ "$VG" = 1 ] && secs=$((secs * 4))
    end=$((SECONDS + secs))
    while ! grep -Eq -- "$pat" "$T/$name.log" 2>/dev/null; do
        if [ "$SECONDS" -ge "$end" ]; then
            echo "---- $name.log ----" >&2
            tail -n 30 "$T/$name.log" >&2 || true
            fail "$name.log has no line matching: $pat"
        fi
        sleep 0.1
    done
}

expect_no_log() {
    local name=$1 pat=$2
    if grep -E -- "$pat" "$T/$name.log" >&2; then
        fail "$name.log unexpectedly matches: $pat"
    fi
}

log_count() {
    grep -Ec -- "$2" "$T/$1.log" 2>/dev/null || true
}

# ---- helper backends and clients ----

http_backend() {
    local port=$1 name=${2:-http-$1}
    bg_run "$name" python3 "$SUPPORT/http_backend.py" --port "$port" --name "$name"
    wait_port "$port" 10
}

tcp_backend() {
    local port=$1 mode=$2 name=${3:-tcp-$1}
    bg_run "$name" python3 "$SUPPORT/tcp_backend.py" --port "$port" --mode "$mode" \
        --record "$T/$name.sha256"
    wait_port "$port" 10
}

tls_client() {
    python3 "$SUPPORT/tls_client.py" "$@"
}

curl_code() {
    local code=000
    rm -f "$T/curl.body"
    code=$(curl -s -o "$T/curl.body" -w '%{http_code}' --max-time 10 "$@") || true
    [ -n "$code" ] || code=000
    echo "$code"
}

pki_make() {
    local dir=$1
    if [ ! -f "$dir/.done" ]; then
        bash "$SUPPORT/pki.sh" "$dir" >"$T/pki.log" 2>&1 || {
            tail -n 30 "$T/pki.log" >&2
            fail "pki.sh failed"
        }
    fi
}

node1_pki() {
    local out
    P=$T/pki
    out=$(ferry_cmd certs init-ca --dir "$P/ca" --name "$1" 2>&1) || fail "init-ca: $out"
    out=$(ferry_cmd certs issue --ca "$P/ca" --name node1.test --ip 127.0.0.1 --out "$P/n" 2>&1) ||
        fail "issue: $out"
    CRT=$P/n/node1.test.crt KEY=$P/n/node1.test.key CA=$P/n/ca.crt
}

# Expired or short-lived leaves need explicit dates, which only `openssl ca` offers in 3.0.
ca_sign_dated() {
    local cadir=$1 key=$2 cn=$3 san=$4 start=$5 end=$6 out=$7 db
    db=$(mktemp -d "$T/cadb.XXXXXX")
    mkdir -p "$db/new"
    : >"$db/index.txt"
    openssl rand -hex 16 >"$db/serial"
    cat >"$db/ca.cnf" <<CNF
[ ca ]
default_ca = CA_default
[ CA_default ]
database = $db/index.txt
new_certs_dir = $db/new
certificate = $cadir/ca.crt
private_key = $cadir/ca.key
serial = $db/serial
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
[ policy_any ]
commonName = supplied
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = $cn
[ both ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = $san
CNF
    openssl req -new -key "$key" -config "$db/ca.cnf" -out "$db/leaf.csr" 2>/dev/null ||
        fail "openssl req for $cn"
    openssl ca -batch -notext -config "$db/ca.cnf" -in "$db/leaf.csr" -out "$out" \
        -startdate "$start" -enddate "$end" -extfile "$db/ca.cnf" -extensions both \
        >"$db/openssl-ca.log" 2>&1 || { cat "$db/openssl-ca.log" >&2; fail "openssl ca for $cn"; }
}

# ---- findings (ferry check and ferry run agree) ----

# same_findings NAME CONFIG [ID...]: $T/NAME.log (a `ferry run` that refused to start) holds
# the findings `ferry check -c CONFIG` prints (into $T/check-NAME.txt) verbatim: the same id,
# file, text and fix; at least the ids given are error findings.  Prints the error ids.
same_findings() {
    local name=$1 config=$2
    shift 2
    ferry_cmd check -c "$config" >"$T/check-$name.txt" 2>"$T/check-$name.err" || true
    python3 "$SUPPORT/findings.py" same "$T/$name.log" "$T/check-$name.txt" "$@" ||
        fail "$name: ferry run and ferry check disagree"
}

# k8s_configmap_yaml OUT: the ferry.yaml of the ConfigMap in deploy/kubernetes/ferry-sidecar.yaml
# (its "ferry.yaml: |" block, dedented) as shipped, into OUT.
k8s_configmap_yaml() {
    awk '
        /^  ferry\.yaml: \|$/ { on = 1; next }
        on && /^    / { print substr($0, 5); next }
        on && /^[[:space:]]*$/ { print ""; next }
        on { exit }
    ' "$FERRY_SRC/deploy/kubernetes/ferry-sidecar.yaml" >"$1"
    grep -q '^listeners:' "$1" || fail "no ferry.yaml found in the ConfigMap of ferry-sidecar.yaml"
}
