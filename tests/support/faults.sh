# shellcheck shell=bash
# faults.sh: sourced by tests/faults/*.sh (it sources tests/integration/lib.sh first, once).
# The common start of a fault script:
#
#   source "$(dirname "$0")/../support/faults.sh"
#   fault_setup PB PIN [VAR...]        (then e.g. fault_backend "$PB" backend)
#
#   fault_setup VAR...                 build the test PKI into $P (= $T/pki) and set each
#                                      shell variable VAR to a free port (lib.sh's ports)
#   fault_row FAULT EXPECTED OUTCOME   print one line of the fault table to stdout and
#                                      append it to $FERRY_TEST_TMP/faults-table.txt
#   fault_backend PORT [NAME]          start tests/support/fault_backend.py on PORT, wait
#   load ARGS...                       python3 tests/support/load.py ARGS... (time-bounded)
#   fetch_ok URL_PATH SIZE CURLARGS... GET through ferry; fail unless 200 with the SIZE-byte
#                                      deterministic stream (sha256 compared)
#   cpu_ms PID                         user+system CPU milliseconds used so far by PID
#   fd_count PID / rss_kb PID          open descriptors / resident set size (KiB) of PID
#   low_port                           a free port below the ephemeral range (see below)

if ! declare -F ferry_start >/dev/null; then
    # shellcheck source=../integration/lib.sh
    source "$(dirname "${BASH_SOURCE[0]}")/../integration/lib.sh"
fi

fault_setup() {
    pki_make "$T/pki"
    P=$T/pki
    ports "$@"
}

fault_row() {
    local line
    line=$(printf '%-34s | %-58s | %s' "$1" "$2" "$3")
    echo "FAULT $line"
    echo "$line" >>"$FERRY_TEST_TMP/faults-table.txt"
}

fault_backend() {
    local port=$1 name=${2:-fault-$1}
    bg_run "$name" python3 "$SUPPORT/fault_backend.py" --port "$port"
    wait_port "$port" 10
}

load() {
    timeout -k 5 "${LOAD_SECS:-120}" python3 "$SUPPORT/load.py" "$@"
}

# The sha256 hex of the N-byte deterministic stream (cached per N).
stream_sha() {
    if [ ! -f "$T/.sha-$1" ]; then
        python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import stream; print(stream.expected_sha256(int(sys.argv[2])))' \
            "$SUPPORT" "$1" >"$T/.sha-$1"
    fi
    cat "$T/.sha-$1"
}

fetch_ok() {
    local path=$1 size=$2 code
    shift 2
    code=$(curl_code "$@" "$path")
    [ "$code" = 200 ] || fail "GET $path: HTTP $code, expected 200"
    [ "$(sha256_of "$T/curl.body")" = "$(stream_sha "$size")" ] ||
        fail "GET $path: body differs from the $size-byte stream"
}

cpu_ms() {
    local hz
    hz=$(getconf CLK_TCK)
    awk -v hz="$hz" '{print int(($14 + $15) * 1000 / hz)}' "/proc/$1/stat"
}

fd_count() {
    ls "/proc/$1/fd" 2>/dev/null | wc -l
}

rss_kb() {
    awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
}

# low_port: free_port, but below the kernel's ephemeral range (ip_local_port_range), so that
# the many outgoing connections of a long test cannot take it before ferry binds it.
low_port() {
    local lo p i
    lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    for i in $(seq 1 50); do
        p=$(free_port)
        if [ "$p" -lt "$lo" ]; then
            echo "$p"
            return 0
        fi
    done
    fail "no free port below $lo"
}
