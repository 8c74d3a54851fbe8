#!/usr/bin/env bash
# Goal: a flood of connections that never pass their TLS handshake (anyone who reaches the
# port can make them) cannot flood the log: the third black-box attack wrote 8,000 warn lines
# in 5 s from two loops.  An inbound listener (one worker) gets 300 TLS 1.3 connections with no
# client certificate from 4 threads as fast as they go; then:
# - /metrics counts every one: ferry_handshakes_total{outcome="rejected",reason="no_cert"} 300;
# - each is logged in full (handshake_rejected and conn_closed) or not at all, at most 20 a
#   second after a burst of 100, and the event=log_suppressed lines count every one not
#   logged: logged + suppressed = 300, exactly;
# - a client with a good certificate afterwards is served and logged in full (its lines are
#   never held back), and so is one in the middle of the flood.
# timeout: 90
source "$(dirname "$0")/lib.sh"

pki_make "$T/pki"
P=$T/pki
PB=$(free_port)
PIN=$(free_port)
PADM=$(free_port)
N=300
[ "$VG" = 1 ] && N=60
http_backend "$PB" backend

cat >"$P/in.yaml" <<YAML
tls: {cert: node1.crt, key: node1.key, ca: ca.crt}
workers: 1
admin: {listen: "127.0.0.1:$PADM"}
listeners:
  - name: in
    mode: inbound
    listen: "127.0.0.1:$PIN"
    backend: "127.0.0.1:$PB"
    protocol: http
    allow: ["*.test"]
YAML
ferry_start in "$P/in.yaml"

good() {
    curl -sS --max-time 10 -o /dev/null -w '%{http_code}' --cacert "$P/root.crt" \
        --cert "$P/good.crt" --key "$P/good.key" --resolve "node1.test:$PIN:127.0.0.1" \
        "https://node1.test:$PIN/flood/$1"
}

# The flood, and one good client in its middle.
start=$SECONDS
timeout 60 python3 - "$PIN" "$P/root.crt" "$N" >"$T/flood.out" 2>&1 <<'PY' &
import socket, ssl, sys, threading
port, ca, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(ca)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
done = [0]
lock = threading.Lock()
def one():
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    t = ctx.wrap_socket(s, server_hostname="node1.test")
    try:
        t.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        t.recv(100)  # the alert: certificate required
    except (OSError, ssl.SSLError):
        pass
    t.close()
def loop(k):
    for _ in range(k):
        one()
        with lock:
            done[0] += 1
ts = [threading.Thread(target=loop, args=(n // 4,)) for _ in range(4)]
[t.start() for t in ts]
[t.join() for t in ts]
print("done", done[0])
PY
flood=$!
sleep 0.5
code=$(good middle) || true
wait "$flood" || fail "the flood failed: $(cat "$T/flood.out")"
secs=$((SECONDS - start + 1))
grep -q "^done $N$" "$T/flood.out" || fail "the flood made fewer connections: $(cat "$T/flood.out")"
[ "$code" = 200 ] || fail "a good client in the middle of the flood: HTTP $code"
note "$N refused connections in about $secs s"

# Every connection counted.
for _ in $(seq 1 50); do
    curl -s --max-time 5 "http://127.0.0.1:$PADM/metrics" >"$T/metrics.txt" || true
    grep -q "^ferry_handshakes_total{listener=\"in\",outcome=\"rejected\",reason=\"no_cert\"} $N$" \
        "$T/metrics.txt" && break
    sleep 0.2
done
grep -q "^ferry_handshakes_total{listener=\"in\",outcome=\"rejected\",reason=\"no_cert\"} $N$" \
    "$T/metrics.txt" ||
    fail "metrics should count all $N refusals: $(grep 'handshakes_total.*rejected.*no_cert' "$T/metrics.txt")"

# Connections logged + connections suppressed = N, once the last second was reported; each
# logged one has both its lines.
sleep 2.5
written=$(log_count in 'event=handshake_rejected .*reason=no_cert')
closed=$(log_count in 'event=conn_closed .*reason=rejected')
suppressed=$(sed -n 's/.*event=log_suppressed count=\([0-9]*\) .*/\1/p' "$T/in.log" | paste -sd+ | bc)
suppressed=${suppressed:-0}
note "connections logged $written (close lines $closed), suppressed $suppressed (log_suppressed lines: $(log_count in 'event=log_suppressed'))"
[ "$written" = "$closed" ] || fail "a connection logged in part: $written handshake_rejected lines, $closed close lines"
[ "$((written + suppressed))" = "$N" ] || fail "logged $written + suppressed $suppressed should be $N"
[ "$VG" = 1 ] || [ "$suppressed" -gt 0 ] || fail "nothing was suppressed: the flood was too slow to test ($secs s)"
[ "$written" -le $((100 + 20 * (secs + 2))) ] || fail "$written connections logged in about $secs s: more than a burst of 100 and 20 a second"
grep -q 'event=log_suppressed count=[0-9]* msg=.*never passed their TLS handshake' "$T/in.log" ||
    fail "the log_suppressed line does not say what it held back: $(grep log_suppressed "$T/in.log" | head -n 1)"

# Plaintext on the TLS port: ferry answers 400 and writes a request line; those count in the
# same bounds (fourth black-box attack: 64,000 request lines in 4 s), each connection in full
# (its request line and its close line) or not at all.
sleep 6 # let the bucket fill again
start=$SECONDS
timeout 60 python3 - "$PIN" "$N" >"$T/plain.out" 2>&1 <<'PY'
import socket, sys, threading
port, n = int(sys.argv[1]), int(sys.argv[2])
def loop(k):
    for _ in range(k):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            s.recv(1000)
        except OSError:
            pass
        s.close()
ts = [threading.Thread(target=loop, args=(n // 4,)) for _ in range(4)]
[t.start() for t in ts]
[t.join() for t in ts]
print("done")
PY
psecs=$((SECONDS - start + 1))
sleep 2.5
plain_req=$(log_count in 'event=request .*path=/plain status=400')
plain_closed=$(log_count in 'event=conn_closed .*reason=not_tls')
note "plaintext: $plain_req request lines, $plain_closed close lines for $N connections in about $psecs s"
[ "$plain_req" = "$plain_closed" ] || fail "plaintext connections logged in part: $plain_req request lines, $plain_closed close lines"
[ "$VG" = 1 ] || [ "$plain_req" -lt "$N" ] || fail "every plaintext connection was logged: no bound"
[ "$plain_req" -le $((100 + 20 * (psecs + 2))) ] || fail "$plain_req plaintext connections logged in about $psecs s"

# Authenticated connections are never held back: the one in the middle and one after.
[ "$(good after)" = 200 ] || fail "a good client after the flood"
expect_log in 'event=request .*path=/flood/middle status=200'
expect_log in 'event=request .*path=/flood/after status=200'
[ "$(log_count in 'event=conn_closed .*peer=peer.test .*reason=done')" = 2 ] || fail "both good clients' close lines should be there"
pass "$N refused handshakes: $written logged, $suppressed counted in log_suppressed, every one in /metrics"
ferry_stop in
