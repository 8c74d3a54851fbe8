#!/usr/bin/env bash
# Goal: issue 7 item 3, pooled peer connections on an outbound `protocol: http` listener.
# curl -> outbound ferry (pool) -> inbound ferry (protocol tcp, so one mTLS connection = one
# backend connection) -> pool_backend.py, which numbers its connections (X-Conn).
# Clients that send Connection: close share a few mTLS connections instead of one each; the
# close token is not forwarded and the client still gets Connection: close; bodies (small,
# 1 MiB) are intact; a response cut short is never reused; idle_timeout closes idle ones; the
# peer restarting between requests costs nothing; a stale pooled connection is retried once
# for a GET and never for a POST (502, sent once); a client that has not spoken holds no peer
# connection (lent per request: 36-lending.sh); max_idle: 0 makes one connection per
# request; pool on a tcp listener is a config error.  The outbound ferry runs one
# worker (each worker has its own pool, so connection numbers are only predictable with one);
# 54-workers checks pooling across workers.
# timeout: 180
# valgrind: yes
source "$(dirname "$0")/lib.sh"

pki_make "$T/pki"
P=$T/pki
PB=$(free_port)
PIN=$(free_port)
POUT=$(free_port)
PSHORT=$(free_port)
PNONE=$(free_port)
PADM=$(free_port)
PIN2=$(free_port)
PRST=$(free_port)
bg_run backend python3 "$SUPPORT/pool_backend.py" --port "$PB" --log "$T/backend.log"
wait_port "$PB"

cat >"$P/in.yaml" <<YAML
tls: {cert: node1.crt, key: node1.key, ca: ca.crt}
listeners:
  - {name: in, mode: inbound, listen: "127.0.0.1:$PIN", backend: "127.0.0.1:$PB", protocol: tcp}
YAML
cat >"$P/out.yaml" <<YAML
tls: {cert: node1.crt, key: node1.key, ca: ca.crt}
workers: 1
log: {level: debug}
admin: {listen: "127.0.0.1:$PADM"}
listeners:
  - name: pooled
    mode: outbound
    listen: "127.0.0.1:$POUT"
    peer: "node1.test:$PIN"
    connect: "127.0.0.1:$PIN"
    pool: {max_idle: 4, idle_timeout: 60s}
  - name: short
    mode: outbound
    listen: "127.0.0.1:$PSHORT"
    peer: "node1.test:$PIN"
    connect: "127.0.0.1:$PIN"
    pool: {idle_timeout: 1s}
  - name: nopool
    mode: outbound
    listen: "127.0.0.1:$PNONE"
    peer: "node1.test:$PIN"
    connect: "127.0.0.1:$PIN"
    pool: {max_idle: 0}
YAML
# The peer that restarts speaks http: its drain closes idle keep-alive connections at once.
cat >"$P/in2.yaml" <<YAML
tls: {cert: node1.crt, key: node1.key, ca: ca.crt}
listeners:
  - {name: in2, mode: inbound, listen: "127.0.0.1:$PIN2", backend: "127.0.0.1:$PB"}
YAML
cat >>"$P/out.yaml" <<YAML
  - name: restart
    mode: outbound
    listen: "127.0.0.1:$PRST"
    peer: "node1.test:$PIN2"
    connect: "127.0.0.1:$PIN2"
YAML
ferry_start in "$P/in.yaml"
ferry_start in2 "$P/in2.yaml"
ferry_start out "$P/out.yaml"

# get PORT PATH [CURL ARGS...]: one request with Connection: close; the status in $code, the
# backend's connection number in $conn, the response headers in $T/h, the body in $T/b.
get() {
    local port=$1 path=$2
    shift 2
    code=$(curl -s -o "$T/b" -D "$T/h" -w '%{http_code}' --max-time 20 -H 'Connection: close' \
        "$@" "http://127.0.0.1:$port$path") || true
    conn=$(tr -d '\r' <"$T/h" | sed -n 's/^X-Conn: //p')
}
sha() { sha256sum "$1" | cut -d' ' -f1; }
BIG_SHA=$(python3 -c '
import hashlib
print(hashlib.sha256(bytes((i * 7 + (i >> 10)) & 0xFF for i in range(1 << 20))).hexdigest())')

# 1. 50 sequential Connection: close clients share the pooled connections.
declare -A seen=()
for i in $(seq 1 50); do
    get "$POUT" "/small/$i"
    [ "$code" = 200 ] || fail "request $i: HTTP $code"
    [ "$(cat "$T/b")" = "hello GET /small/$i" ] || fail "request $i: body $(cat "$T/b")"
    grep -qi '^Connection: close' "$T/h" || fail "request $i: no Connection: close in the response"
    seen[$conn]=1
done
n=${#seen[@]}
note "50 Connection: close requests used $n mTLS connection(s)"
[ "$n" -le 3 ] || fail "50 requests used $n peer connections; the pool should have reused them"
# The close token never reached the peer: the backend saw keep-alive requests.
grep -q 'GET /small/50 .*connection=-' "$T/backend.log" ||
    fail "Connection: close was forwarded: $(grep 'small/50 ' "$T/backend.log")"

# Clients that connect and close without a request hand the pooled connection back unharmed.
last=$conn
for i in 1 2 3; do
    python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1]))).close()' "$POUT"
done
sleep 0.5
get "$POUT" /after-empty
[ "$code" = 200 ] && [ "$conn" = "$last" ] ||
    fail "after clients that sent nothing: HTTP $code on X-Conn $conn, expected the pooled $last"

# 2. 1 MiB bodies through reused connections, intact.
for i in 1 2 3; do
    get "$POUT" /big
    [ "$code" = 200 ] && [ "$(sha "$T/b")" = "$BIG_SHA" ] || fail "1 MiB body $i: HTTP $code, sha $(sha "$T/b")"
done
# A HEAD and a keep-alive client (no Connection: close) that closes itself.
get "$POUT" /small -I
[ "$code" = 200 ] || fail "HEAD: HTTP $code"
code=$(curl -s -o "$T/b" -w '%{http_code}' --max-time 20 "http://127.0.0.1:$POUT/small/ka") || true
[ "$code" = 200 ] || fail "keep-alive client: HTTP $code"

# 3. A response cut short by the backend: its connection is never reused.
get "$POUT" /cut
cut_conn=$(sed -n 's|^GET /cut conn=\([0-9]*\) .*|\1|p' "$T/backend.log" | tail -n 1)
[ -n "$cut_conn" ] || fail "the backend did not see GET /cut"
for i in 1 2 3; do
    get "$POUT" "/after-cut/$i"
    [ "$code" = 200 ] || fail "request after a cut response: HTTP $code"
    [ "$conn" != "$cut_conn" ] || fail "the connection of a cut response (X-Conn $cut_conn) was reused"
done

# 4. idle_timeout: reused within it, closed after it.
get "$PSHORT" /short/1
c1=$conn
get "$PSHORT" /short/2
[ "$conn" = "$c1" ] || fail "short pool: an immediate second request did not reuse ($c1, $conn)"
sleep 2.5
expect_log out 'event=pool_closed.*listener=short.*reason=idle_timeout' 5
get "$PSHORT" /short/3
[ "$code" = 200 ] || fail "after idle_timeout: HTTP $code"
[ "$conn" != "$c1" ] || fail "a connection idle for longer than idle_timeout was reused"

# 5. The peer restarts between requests: the next GET still succeeds.
get "$PRST" /before-restart
[ "$code" = 200 ] || fail "before restart: HTTP $code"
ferry_stop in2
ferry_start in2b "$P/in2.yaml" # a new name: a new log, so ferry_start waits for this one
get "$PRST" /after-restart
[ "$code" = 200 ] || fail "GET after the peer restarted: HTTP $code $(cat "$T/b")"
get "$PRST" /after-restart-post -X POST --data-binary 'x'
[ "$code" = 200 ] || fail "POST after the peer restarted: HTTP $code $(cat "$T/b")"

# 6. A stale pooled connection (the far end closes it on the next request without a byte):
# a GET is retried once on a new connection; a POST gets 502 and reaches the backend once.
get "$POUT" /flaky/1
[ "$code" = 200 ] || fail "flaky/1: HTTP $code"
get "$POUT" /flaky/2
[ "$code" = 200 ] || fail "GET on a stale pooled connection: HTTP $code $(cat "$T/b")"
expect_log out 'event=pool_retry.*listener=pooled' 5
[ "$(grep -c '^GET /flaky/2 ' "$T/backend.log")" = 2 ] ||
    fail "GET /flaky/2 should reach the backend twice (stale, retry): $(grep flaky "$T/backend.log")"
retries=$(log_count out 'event=pool_retry')
get "$POUT" /flaky/3 -X POST --data-binary 'do-once'
[ "$code" = 502 ] || [ "$code" = 200 ] || fail "POST on a stale pooled connection: HTTP $code"
[ "$(grep -c '^POST /flaky/3 ' "$T/backend.log")" = 1 ] ||
    fail "POST /flaky/3 reached the backend more than once: $(grep 'flaky/3' "$T/backend.log")"
[ "$(log_count out 'event=pool_retry')" = "$retries" ] || fail "a POST was retried"
note "POST on a stale pooled connection: HTTP $code, sent once"

# A client that connected but has not spoken yet holds no peer connection (they are lent per
# request): the far end closes the idle pooled one, in the pool; the client's request later
# gets a new connection and its answer, with no retry.
n0=$(log_count out 'event=pool_closed.*listener=pooled.*reason=peer_closed')
r0=$(log_count out 'event=pool_retry')
get "$POUT" /idle-close/3
[ "$code" = 200 ] || fail "idle-close: HTTP $code"
python3 - "$POUT" "$T/silent.flag" >"$T/silent.out" 2>&1 <<'PY' &
import os, socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=60)
print("connected", flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.1)
s.sendall(b"GET /silent HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
data = b""
while True:
    d = s.recv(65536)
    if not d:
        break
    data += d
print(data.split(b"\r\n")[0].decode(), flush=True)
PY
silent=$!
bg_register "$silent" silent-client
for _ in $(seq 1 100); do
    [ "$(log_count out 'event=pool_closed.*listener=pooled.*reason=peer_closed')" -gt "$n0" ] && break
    sleep 0.1
done
[ "$(log_count out 'event=pool_closed.*listener=pooled.*reason=peer_closed')" -gt "$n0" ] ||
    fail "the far end closed an idle pooled connection and the pool did not see it"
: >"$T/silent.flag"
wait "$silent" || fail "silent client: $(cat "$T/silent.out")"
grep -q '^HTTP/1.1 200' "$T/silent.out" || fail "silent client, its pooled connection closed: $(cat "$T/silent.out")"
[ "$(log_count out 'event=pool_retry')" = "$r0" ] ||
    fail "a client that held no peer connection went through a pool retry"

# 7. max_idle: 0: one connection per request.
declare -A none=()
for i in $(seq 1 6); do
    get "$PNONE" "/none/$i"
    [ "$code" = 200 ] || fail "nopool request $i: HTTP $code"
    none[$conn]=1
done
[ "${#none[@]}" = 6 ] || fail "max_idle: 0: 6 requests used ${#none[@]} connections, expected 6"

# 8. Metrics.
m=$(curl -s --max-time 10 "http://127.0.0.1:$PADM/metrics")
reused=$(sed -n 's/^ferry_pool_reused_total{listener="pooled"} //p' <<<"$m")
connects=$(sed -n 's/^ferry_pool_connects_total{listener="pooled"} //p' <<<"$m")
note "pooled listener: $reused reused, $connects connects"
[ -n "$reused" ] && [ "$reused" -ge 50 ] || fail "ferry_pool_reused_total: '$reused'"
[ -n "$connects" ] && [ "$connects" -ge 1 ] && [ "$connects" -le 12 ] ||
    fail "ferry_pool_connects_total: '$connects'"

ferry_stop out
ferry_stop in
ferry_stop in2b

# 9. pool on a tcp listener, inbound or outbound, is refused with the place and the reason (on
# an inbound http listener it pools backend connections: 36-inbound-lending).
cat >"$P/bad.yaml" <<YAML
tls: {cert: node1.crt, key: node1.key, ca: ca.crt}
listeners:
  - name: in
    mode: inbound
    listen: "127.0.0.1:$PIN"
    backend: "127.0.0.1:$PB"
    protocol: tcp
    pool: {max_idle: 4}
  - name: raw
    mode: outbound
    listen: "127.0.0.1:$POUT"
    peer: "node1.test:$PIN"
    protocol: tcp
    pool: {max_idle: 4}
YAML
ferry_expect_exit 1 bad "$P/bad.yaml" 15
grep -q 'bad.yaml:8:5: pool needs protocol: http.*listeners\[0\] (in) has protocol: tcp' "$T/bad.log" ||
    fail "no error for pool on an inbound tcp listener: $(cat "$T/bad.log")"
grep -q 'bad.yaml:14:5: pool needs protocol: http.*listeners\[1\] (raw) has protocol: tcp' "$T/bad.log" ||
    fail "no error for pool on an outbound tcp listener: $(cat "$T/bad.log")"
pass
