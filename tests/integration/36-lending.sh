#!/usr/bin/env bash
# Goal: issue 14, peer connections lent per request, not per client (outbound protocol: http,
# pool on).  clients -> outbound ferry (pool max_idle 16) -> inbound ferry (protocol tcp, so one
# mTLS connection = one backend connection) -> pool_backend.py, which numbers its connections.
# 50 idle keep-alive clients, after one request each, hold at most max_idle mTLS connections
# (ss and /metrics) and are served again when they speak; 20 clients x 10 keep-alive requests
# make far fewer than 200 connections; pipelined requests come back in order; a 1 MiB request
# body and a 1 MiB response cross a lent connection byte-exact; the peer closing an idle pooled
# connection costs the next request nothing, and a stale one is retried once for a GET and for
# two GETs pipelined on it.  (f) A peer connection that carried a 103 (never reused) is closed
# when its response ends, not kept by the client: the client's next request goes on another
# connection.
# timeout: 90
source "$(dirname "$0")/lib.sh"

pki_make "$T/pki"
P=$T/pki
PB=$(free_port)
PIN=$(free_port)
POUT=$(free_port)
PADM=$(free_port)
bg_run backend python3 "$SUPPORT/pool_backend.py" --port "$PB" --log "$T/backend.log"
wait_port "$PB"

cat >"$P/in.yaml" <<YAML
tls: {cert: node1.crt, key: node1.key, ca: ca.crt}
workers: 1
listeners:
  - {name: in, mode: inbound, listen: "127.0.0.1:$PIN", backend: "127.0.0.1:$PB", protocol: tcp}
YAML
cat >"$P/out.yaml" <<YAML
tls: {cert: node1.crt, key: node1.key, ca: ca.crt}
workers: 1
log: {level: debug}
admin: {listen: "127.0.0.1:$PADM"}
listeners:
  - name: lend
    mode: outbound
    listen: "127.0.0.1:$POUT"
    peer: "node1.test:$PIN"
    connect: "127.0.0.1:$PIN"
    pool: {max_idle: 16, idle_timeout: 60s}
limits: {header_timeout: 3s}
YAML
ferry_start in "$P/in.yaml"
ferry_start out "$P/out.yaml"

# metric NAME: the value of NAME{listener="lend"} in the outbound ferry's /metrics.
metric() {
    curl -s --max-time 10 "http://127.0.0.1:$PADM/metrics" | sed -n "s/^$1{listener=\"lend\"} //p"
}
# peer_conns: mTLS connections from the outbound ferry to the peer, established now.
peer_conns() {
    ss -Htn state established "( dport = :$PIN )" | wc -l
}
client() {
    timeout 60 python3 "$SUPPORT/lending_client.py" "$@"
}

# (a) 50 idle keep-alive clients after one request each (sent at once, so up to 50 peer
# connections were lent) hold at most max_idle peer connections, and are served again.
client idle "$POUT" 50 "$T/idle.flag" >"$T/idle.out" 2>&1 &
idle=$!
bg_register "$idle" idle-clients
for _ in $(seq 1 200); do grep -q READY "$T/idle.out" && break; sleep 0.1; done
grep -q READY "$T/idle.out" || fail "50 idle clients: $(cat "$T/idle.out")"
sleep 0.3
held=$(peer_conns)
open=$(metric ferry_connections_open)
note "50 idle keep-alive clients: $open client connections open, $held mTLS connections to the peer"
[ "$open" = 50 ] || fail "ferry_connections_open: '$open', expected the 50 idle clients"
[ "$held" -le 16 ] || fail "50 idle clients hold $held peer connections; at most max_idle (16) may stay"
: >"$T/idle.flag"
wait "$idle" || fail "idle clients, second request: $(cat "$T/idle.out")"
grep -q '^OK 50' "$T/idle.out" || fail "idle clients: $(cat "$T/idle.out")"
[ "$(peer_conns)" -le 16 ] || fail "after the second requests: $(peer_conns) peer connections"

# (b) 20 clients x 10 sequential keep-alive requests are served by few peer connections.
c0=$(metric ferry_pool_connects_total)
r0=$(metric ferry_pool_reused_total)
client seq "$POUT" 20 10 >"$T/seq.out" 2>&1 || fail "20 x 10 requests: $(cat "$T/seq.out")"
connects=$(($(metric ferry_pool_connects_total) - c0))
reused=$(($(metric ferry_pool_reused_total) - r0))
note "20 clients x 10 keep-alive requests: $connects new peer connections, $reused lent from the pool"
[ "$connects" -le 40 ] || fail "200 requests of 20 keep-alive clients made $connects peer connections"
[ $((connects + reused)) -ge 200 ] || fail "200 requests: $connects connects + $reused reused < 200"

# (c) Pipelined requests of one client come back in order, byte-exact, nothing more.
client pipeline "$POUT" 10 >"$T/pipe.out" 2>&1 || fail "pipelined requests: $(cat "$T/pipe.out")"
note "10 pipelined requests: $(cat "$T/pipe.out")"

# (d) A 1 MiB request body and a 1 MiB response through a lent connection, byte-exact.
client big "$POUT" >"$T/big.out" 2>&1 || fail "1 MiB bodies: $(cat "$T/big.out")"

# (e) The peer closes an idle pooled connection: the client's next request still succeeds.
python3 - "$POUT" "$T/e.flag" >"$T/e.out" 2>&1 <<'PY' &
import os, socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
f = s.makefile("rb")
def ask(path):
    s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    read()
def read():
    status = f.readline().split()[1].decode()
    n = 0
    while True:
        h = f.readline()
        if h in (b"\r\n", b""):
            break
        if h.lower().startswith(b"content-length:"):
            n = int(h.split(b":")[1])
    print(status, f.read(n).decode().strip(), flush=True)
ask(b"/idle-close/1")
while not os.path.exists(sys.argv[2]):
    time.sleep(0.05)
ask(b"/after-close")
ask(b"/flaky/1")
ask(b"/flaky/2")
# Two GETs pipelined in one write onto a stale lent connection: both are sent again.
s.sendall(b"GET /flaky/3 HTTP/1.1\r\nHost: x\r\n\r\nGET /small HTTP/1.1\r\nHost: x\r\n\r\n")
read()
read()
PY
ek=$!
bg_register "$ek" close-client
n0=$(log_count out 'event=pool_closed.*listener=lend.*reason=peer_closed')
for _ in $(seq 1 60); do
    [ "$(log_count out 'event=pool_closed.*listener=lend.*reason=peer_closed')" -gt "$n0" ] && break
    sleep 0.1
done
[ "$(log_count out 'event=pool_closed.*listener=lend.*reason=peer_closed')" -gt "$n0" ] ||
    fail "the peer closed an idle pooled connection and the pool did not see it"
: >"$T/e.flag"
wait "$ek" || fail "client of a closed pooled connection: $(cat "$T/e.out")"
grep -q '^200 hello GET /after-close' "$T/e.out" ||
    fail "the request after the peer closed the pooled connection: $(cat "$T/e.out")"
# /flaky/2 went on the connection /flaky/1 came back on, which the far end then closed unread.
grep -q '^200 hello GET /flaky/2' "$T/e.out" || fail "GET on a stale lent connection: $(cat "$T/e.out")"
expect_log out 'event=pool_retry.*listener=lend' 5
[ "$(grep -c '^GET /flaky/2 ' "$T/backend.log")" = 2 ] ||
    fail "GET /flaky/2 should reach the backend twice (stale, retry): $(grep flaky "$T/backend.log")"
# Before: the first of the two got a 502 and the second nothing.
grep -q '^200 hello GET /flaky/3' "$T/e.out" && grep -q '^200 hello GET /small' "$T/e.out" ||
    fail "two GETs pipelined on a stale lent connection: $(cat "$T/e.out")"
[ "$(grep -c '^GET /flaky/3 ' "$T/backend.log")" = 2 ] ||
    fail "GET /flaky/3 should reach the backend twice (stale, retry): $(grep flaky "$T/backend.log")"

# (f) A response with a 103 before it: the connection it came on may not carry another request
# (framing ferry does not reuse after a 102/103), so its lend ends by closing it; the same
# client's next request goes on another one (before: the client kept it for good).
out=$(timeout 30 python3 - "$POUT" <<'PY'
import re, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
def ask(path):
    s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    buf = b""
    while not buf.endswith(b"hello GET " + path + b"\n"):
        d = s.recv(65536)
        if not d:
            raise SystemExit("EOF after %r" % buf)
        buf += d
    return re.findall(rb"X-Conn: (\d+)", buf)[-1].decode(), buf.count(b" 103 ")
for _ in range(3):
    (c1, hints), (c2, _) = ask(b"/hints"), ask(b"/small")
    print(c1, hints, c2)
PY
) || fail "103 then a request on one client: $out"
note "103 then /small on one keep-alive client (conn hints conn): $(echo $out)"
while read -r c1 hints c2; do
    [ "$hints" = 1 ] || fail "the 103 did not reach the client: $out"
    [ "$c1" != "$c2" ] || fail "the connection that carried a 103 served the client's next request: $out"
    last=$(grep " conn=$c1 " "$T/backend.log" | tail -n 1)
    case "$last" in
    "GET /hints "*) ;;
    *) fail "the connection that carried a 103 was reused: $(grep " conn=$c1 " "$T/backend.log")" ;;
    esac
done <<<"$out"

# (f2) The same 103 to an HTTP/1.0 client: never sent (RFC 9110 §15.2: it would take the 103
# for its answer); the 200 is (before: the 103 went out first).
timeout 30 python3 "$SUPPORT/http_raw.py" --plain --connect "127.0.0.1:$POUT" \
    --send 'GET /hints HTTP/1.0\r\n\r\n' >"$T/hints10.json" || fail "103 to an HTTP/1.0 client: $(cat "$T/hints10.json")"
out=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print([x["status"] for x in r["responses"]], r["responses"][-1]["body"].strip(), r["eof"])' "$T/hints10.json")
note "HTTP/1.0 client, /hints: $out"
[ "$out" = "[200] hello GET /hints fin" ] || fail "an HTTP/1.0 client should get the 200 alone, no 103: $out"

# (g) A partial head pipelined behind a whole request: the first is answered, then the half
# head gets 408 after header_timeout (3 s here), counted from its first byte, and the client's
# connection closes; it does not wait for idle_timeout, and the half head never reaches the peer.
out=$(timeout 30 python3 - "$POUT" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
t0 = time.time()
s.sendall(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\nGET /half-head HTTP/1.1\r\nHo")
buf = b""
while True:
    d = s.recv(65536)
    if not d:
        break
    buf += d
print("%.1f" % (time.time() - t0), buf.count(b"hello GET /small"), buf.count(b" 408 "))
PY
) || fail "(g) a partial head behind a request: $out"
note "(g) partial head behind a request: seconds, answers, 408s: $out"
read -r secs answered timeouts <<<"$out"
[ "$answered" = 1 ] && [ "$timeouts" = 1 ] || fail "(g) expected the answer then a 408: $out"
python3 -c "import sys; sys.exit(0 if 2.5 <= $secs <= 8 else 1)" ||
    fail "(g) the 408 came after ${secs}s, not after header_timeout (3 s)"
grep -q "half-head" "$T/backend.log" && fail "(g) the half head reached the peer"

ferry_stop out
ferry_stop in
pass
