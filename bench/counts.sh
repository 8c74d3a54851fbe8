#!/usr/bin/env bash
# bench/counts.sh: load-independent costs of one request through an inbound http listener,
# for before/after comparisons on a shared machine where wall-clock timings are noise.
#
# Runs ferry (workers: 1, log level warn) under valgrind twice, once with one mTLS client that
# sends N small GETs and once with 0, against tests/support/http_backend.py, and prints the
# difference divided by N:
#   --tool memcheck   heap allocations and bytes allocated ("total heap usage")
#   --tool callgrind  instructions (Ir) of the whole process
# --mode keepalive (default): one keep-alive connection carries the N requests;
# --mode close: N connections of one request each (Connection: close): per-connection costs,
# full handshakes included.
#
# Usage: bench/counts.sh [--ferry PATH] [--requests N] [--tool memcheck|callgrind]
#                        [--mode keepalive|close]
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FERRY=$REPO/build/ferry
N=1000
TOOL=memcheck
MODE=keepalive
while [ $# -gt 0 ]; do
    case "$1" in
    --ferry) FERRY=$2; shift 2 ;;
    --requests) N=$2; shift 2 ;;
    --tool) TOOL=$2; shift 2 ;;
    --mode) MODE=$2; shift 2 ;;
    *) sed -n '2,16p' "$0" >&2; exit 2 ;;
    esac
done
case "$TOOL/$MODE" in memcheck/keepalive | memcheck/close | callgrind/keepalive | callgrind/close) ;;
*) echo "bad --tool or --mode" >&2; exit 2 ;;
esac

T=$(mktemp -d)
BACKEND=
trap '[ -n "$BACKEND" ] && kill "$BACKEND" 2>/dev/null; rm -rf "$T"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 150); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.2; done; return 1; }

"$FERRY" certs init-ca --dir "$T/ca" --name "Counts CA" >/dev/null
"$FERRY" certs issue --ca "$T/ca" --name node1.test --ip 127.0.0.1 --out "$T/n" >/dev/null
PB=$(free_port)
python3 "$REPO/tests/support/http_backend.py" --port "$PB" --name b >/dev/null 2>&1 &
BACKEND=$!
wait_port "$PB"

cat >"$T/client.py" <<'PY'
import http.client, ssl, sys
port, n, d, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=d + "/n/ca.crt")
ctx.load_cert_chain(d + "/n/node1.test.crt", d + "/n/node1.test.key")
def conn():
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=60)
    c.connect()
    return c
ok = 0
c = conn() if mode == "keepalive" else None
for i in range(n):
    k = c or conn()
    k.request("GET", "/db/doc", headers={"Host": "node1.test"} if c else {"Host": "node1.test", "Connection": "close"})
    r = k.getresponse()
    r.read()
    ok += r.status == 200
    if not c:
        k.close()
if c:
    c.close()
if ok != n:
    sys.exit("%d of %d requests answered 200" % (ok, n))
PY

# run COUNT: ferry under valgrind for one client sending COUNT requests; prints the count
run() {
    local count=$1 pin out
    pin=$(free_port)
    cat >"$T/f.yaml" <<YAML
tls: {cert: $T/n/node1.test.crt, key: $T/n/node1.test.key, ca: $T/n/ca.crt}
workers: 1
log: {level: warn}
listeners:
  - {name: in, mode: inbound, listen: "127.0.0.1:$pin", backend: "127.0.0.1:$PB"}
YAML
    out=$T/vg.$count
    if [ "$TOOL" = memcheck ]; then
        valgrind --tool=memcheck --log-file="$out" "$FERRY" run -c "$T/f.yaml" 2>"$T/ferry.log" &
    else
        valgrind --tool=callgrind --callgrind-out-file="$out.cg" --log-file="$out" "$FERRY" run \
            -c "$T/f.yaml" 2>"$T/ferry.log" &
    fi
    local pid=$!
    wait_port "$pin" || { cat "$T/ferry.log" >&2; exit 1; }
    python3 "$T/client.py" "$pin" "$count" "$T" "$MODE"
    sleep 0.5
    kill -TERM "$pid"
    wait "$pid" || true
    if [ "$TOOL" = memcheck ]; then
        awk '/total heap usage/ {gsub(",", ""); print $5, $9}' "$out"
    else
        awk '/^summary:/ {print $2}' "$out.cg"
    fi
}

read -r a0 b0 <<<"$(run 0)"
read -r a1 b1 <<<"$(run "$N")"
if [ "$TOOL" = memcheck ]; then
    awk -v a0="$a0" -v a1="$a1" -v b0="$b0" -v b1="$b1" -v n="$N" -v m="$MODE" 'BEGIN {
        printf "%s, %d requests: %.2f allocs and %.0f bytes allocated per request\n", m, n,
               (a1 - a0) / n, (b1 - b0) / n }'
else
    awk -v a0="$a0" -v a1="$a1" -v n="$N" -v m="$MODE" 'BEGIN {
        printf "%s, %d requests: %.0f Ir per request\n", m, n, (a1 - a0) / n }'
fi
