#!/usr/bin/env bash
# bench/spike/run.sh: issue 14's I/O spike.  Builds tlsrelay (bench/spike/tlsrelay.c) and,
# for each design (bev: libevent bufferevents, public API; raw: ferry-owned sockets with
# non-blocking SSL_read_ex/SSL_write_ex and libevent events; io: raw's design as ferry's module
# proxy/proxy_io.c, relayed like bev), relays MIB MiB each way at once
# between a Python TLS client and a Python plain backend on 127.0.0.1, under
# `valgrind --tool=callgrind` and under `strace -c -f`, and prints the relay's Ir and system
# calls per MiB relayed (both directions counted: 2 x MIB MiB).  The handshake and start-up are
# included; at 64 MiB they are under 1% of the total.
#
#   bench/spike/run.sh [MIB] [DESIGN...]   (default 64, bev raw io; needs cc, libevent 2.1,
#                                            OpenSSL 3, build/ferry)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
MIB=${1:-64}
shift || true
DESIGNS=${*:-bev raw io}
FERRY=${FERRY:-$REPO/build/ferry}
PORT=${SPIKE_PORT:-24750}
W=$(mktemp -d "${TMPDIR:-/tmp}/ferry-spike.XXXXXX")
trap 'rm -rf "$W"' EXIT

cc -std=c11 -O2 -g -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -DTLSRELAY_IO \
    -I"$REPO/proxy" -o "$W/tlsrelay" "$REPO/bench/spike/tlsrelay.c" "$REPO/proxy/proxy_io.c" \
    $(pkg-config --cflags --libs libevent_openssl openssl)
"$FERRY" certs init-ca --dir "$W/ca" --name "spike CA" --key-type ec >/dev/null
"$FERRY" certs issue --ca "$W/ca" --name relay.spike.test --ip 127.0.0.1 --key-type ec \
    --out "$W/relay" >/dev/null

cat >"$W/drive.py" <<'PY'
# drive.py ROLE PORT NBYTES: ROLE client (TLS) or backend (plain); sends NBYTES while it reads
# NBYTES, then closes; exits 1 unless it read NBYTES.
import socket, ssl, sys, threading
role, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
chunk = bytes(range(256)) * 256
if role == "backend":
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(1)
    print("listening", flush=True)
    s, _ = ls.accept()
else:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)))
def send():
    left = n
    while left > 0:
        k = min(left, len(chunk))
        s.sendall(chunk[:k])
        left -= k
got = 0
t = threading.Thread(target=send)
t.start()
while got < n:
    b = s.recv(1 << 16)
    if not b:
        break
    got += len(b)
t.join()
s.close()
sys.exit(0 if got == n else 1)
PY

# run DESIGN TOOL: one relay of MIB MiB each way; prints the count.
run()
{
    local design=$1 tool=$2 n=$((MIB * 1024 * 1024)) bpid rpid
    python3 "$W/drive.py" backend "$((PORT + 1))" "$n" >"$W/backend.out" &
    bpid=$!
    until grep -q listening "$W/backend.out" 2>/dev/null; do sleep 0.1; done
    case $tool in
    callgrind) valgrind --tool=callgrind --callgrind-out-file="$W/cg" "$W/tlsrelay" "$design" \
        "$PORT" "$((PORT + 1))" "$W/relay/relay.spike.test.crt" "$W/relay/relay.spike.test.key" \
        >"$W/relay.out" 2>"$W/relay.err" & ;;
    strace) strace -f -c -o "$W/st" "$W/tlsrelay" "$design" "$PORT" "$((PORT + 1))" \
        "$W/relay/relay.spike.test.crt" "$W/relay/relay.spike.test.key" >"$W/relay.out" \
        2>"$W/relay.err" & ;;
    esac
    rpid=$!
    until grep -q listening "$W/relay.out" 2>/dev/null; do sleep 0.1; done
    python3 "$W/drive.py" client "$PORT" "$n" || { echo "client failed" >&2; exit 1; }
    wait "$bpid" || { echo "backend failed" >&2; exit 1; }
    wait "$rpid" || { echo "relay failed: $(cat "$W/relay.err")" >&2; exit 1; }
    case $tool in
    callgrind) awk '/^(summary|totals):/ {print $2; exit}' "$W/cg" ;;
    strace) awk '$NF == "total" {print $4}' "$W/st"
        awk 'NR > 2 && $NF != "total" && $1 !~ /^-/' "$W/st" | sort -k4 -n -r | head -6 >"$W/st.top.$design" ;;
    esac
}

for design in $DESIGNS; do
    for tool in callgrind strace; do
        c=$(run "$design" "$tool")
        what=Ir
        [ "$tool" = strace ] && what=syscalls
        awk -v d="$design" -v w="$what" -v c="$c" -v m="$MIB" \
            'BEGIN { printf "%-4s %-9s per MiB relayed %12.0f   (%d MiB each way)\n", d, w, c / (2 * m), m }'
        [ "$tool" = strace ] && sed 's/^/      /' "$W/st.top.$design"
    done
done
