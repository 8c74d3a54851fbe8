#!/usr/bin/env bash
# Goal: CONTRACT §5 on the wire: plain HTTP to a TLS port gets a plaintext 400 naming the
# https URL; garbage is closed without harm; a stalled handshake is closed after
# handshake_timeout; an idle relayed connection after idle_timeout; a dead backend gives a
# 502 JSON (http) or a close (tcp); half-close is relayed both ways (TLS close_notify + FIN
# and plain FIN); at max_connections a further connection waits and then proceeds.
# valgrind: yes
# timeout: 240
source "$(dirname "$0")/lib.sh"

pki_make "$T/pki"
P=$T/pki
CLI=(--cert "$P/good.crt" --key "$P/good.key" --ca "$P/root.crt" --sni node1.test)

PHTTP=$(free_port)
PSINK=$(free_port)
PECHO=$(free_port)
PDEAD=$(free_port)
for l in in sink echo deadhttp deadtcp out; do
    declare "P_$l=$(free_port)"
done
http_backend "$PHTTP" backend
tcp_backend "$PSINK" sink sink
tcp_backend "$PECHO" echo echo

HS=1
IDLE=2
[ "$VG" = 1 ] && { HS=3; IDLE=5; }
cat >"$P/wire.yaml" <<YAML
tls: {cert: node1.crt, key: node1.key, ca: ca.crt}
log: {level: debug}
limits: {handshake_timeout: ${HS}s, idle_timeout: ${IDLE}s}
listeners:
  - {name: in, mode: inbound, listen: "127.0.0.1:$P_in", backend: "127.0.0.1:$PHTTP", protocol: http}
  - {name: sink, mode: inbound, listen: "127.0.0.1:$P_sink", backend: "127.0.0.1:$PSINK", protocol: tcp}
  - {name: echo, mode: inbound, listen: "127.0.0.1:$P_echo", backend: "127.0.0.1:$PECHO", protocol: tcp}
  - {name: deadhttp, mode: inbound, listen: "127.0.0.1:$P_deadhttp", backend: "127.0.0.1:$PDEAD", protocol: http}
  - {name: deadtcp, mode: inbound, listen: "127.0.0.1:$P_deadtcp", backend: "127.0.0.1:$PDEAD", protocol: tcp}
  - {name: out, mode: outbound, listen: "127.0.0.1:$P_out", peer: "node1.test:$P_sink", connect: "127.0.0.1:$P_sink", protocol: tcp}
YAML
ferry_start wire "$P/wire.yaml"

good_request() {
    local code
    code=$(curl_code --cacert "$P/root.crt" --cert "$P/good.crt" --key "$P/good.key" \
        --resolve "node1.test:$P_in:127.0.0.1" "https://node1.test:$P_in/$1")
    [ "$code" = 200 ] || fail "good request ($1): HTTP $code"
}
good_request start

# ---- plain HTTP to the TLS port ----
resp=$(curl -s -i --max-time 10 "http://127.0.0.1:$P_in/plain" || true)
head -n1 <<<"$resp" | grep -q '^HTTP/1\.1 400' || fail "plain HTTP to TLS port: got: $(head -c 300 <<<"$resp")"
grep -q 'https://' <<<"$resp" || fail "plain HTTP 400 does not name the https:// URL: $resp"
grep -q '/plain' "$T/backend.log" && fail "plain HTTP request reached the backend"
pass "plain HTTP -> 400 naming https://"

# ---- garbage ----
for raw in '\x00\x01\x02\x03garbage\r\n\r\n' '\x16\x03\x01\x00\x05hello-not-tls' \
    '\x16\x03\x03\xff\xff\x01\x00\x00\x00' 'GET / HTTP/1.1\r\n\x00\x00\r\n\r\n'; do
    out=$(tls_client --connect "127.0.0.1:$P_in" --raw "$raw" --timeout 10) || rc=$?
    grep -q 'eof=' <<<"$out" || fail "garbage $raw: $out"
    grep -q 'eof=timeout' <<<"$out" && fail "garbage $raw: connection not closed: $out"
    ferry_alive wire || fail "ferry died after garbage $raw"
done
good_request after-garbage
pass "garbage closed, ferry still serves"

# ---- stalled handshakes ----
for raw in '' '\x16\x03\x01'; do
    out=$(tls_client --connect "127.0.0.1:$P_in" --raw "$raw" --shut none --timeout 20) || true
    el=$(sed -n 's/.*elapsed=\([0-9.]*\).*/\1/p' <<<"$out")
    [ -n "$el" ] || fail "stalled handshake ('$raw'): $out"
    python3 -c "import sys; e=float('$el'); sys.exit(0 if $HS*0.8 <= e <= $HS+3+($VG*10) else 1)" ||
        fail "stalled handshake ('$raw') closed after ${el}s, handshake_timeout is ${HS}s"
done
pass "stalled handshake closed after handshake_timeout"

# ---- idle timeout on a relayed connection ----
out=$(tls_client --tls "${CLI[@]}" --connect "127.0.0.1:$P_echo" --raw 'ping\n' --shut none \
    --timeout 30) || fail "idle: $out"
grep -q 'reply_len=5 ' <<<"$out" || fail "idle: echo not relayed: $out"
el=$(sed -n 's/.*elapsed=\([0-9.]*\).*/\1/p' <<<"$out")
python3 -c "import sys; e=float('$el'); sys.exit(0 if $IDLE*0.8 <= e <= $IDLE+4+($VG*15) else 1)" ||
    fail "idle connection closed after ${el}s, idle_timeout is ${IDLE}s"
expect_log wire 'event=conn_closed.*listener=echo|listener=echo.*event=conn_closed'
pass "idle connection closed after idle_timeout (${el}s)"

# ---- dead backends ----
code=$(curl_code -D "$T/hdrs" --cacert "$P/root.crt" --cert "$P/good.crt" --key "$P/good.key" \
    --resolve "node1.test:$P_deadhttp:127.0.0.1" "https://node1.test:$P_deadhttp/dead")
[ "$code" = 502 ] || fail "dead backend (http): HTTP $code, expected 502"
python3 -c "
import json,sys
d=json.load(open('$T/curl.body'))
assert set(d)=={'error','reason'} and d['error']=='bad_gateway' and d['reason'], d
" || fail "dead backend: body $(cat "$T/curl.body")"
grep -iq '^content-type: *application/json' "$T/hdrs" || fail "dead backend 502 without JSON content type"
grep -iq '^connection: *close' "$T/hdrs" || fail "dead backend 502 without Connection: close"
expect_log wire 'event=backend_unreachable'
pass "dead backend (http) -> 502 JSON"

out=$(tls_client --tls "${CLI[@]}" --connect "127.0.0.1:$P_deadtcp" --raw 'x' --shut none \
    --timeout 10) || true
grep -q 'eof=timeout' <<<"$out" && fail "dead backend (tcp): connection not closed: $out"
grep -q 'reply_len=0 ' <<<"$out" || grep -q 'handshake=failed' <<<"$out" || fail "dead backend (tcp): $out"
ferry_alive wire || fail "ferry died on a dead tcp backend"
pass "dead backend (tcp) -> closed"

# ---- half-close ----
N=300000
out=$(tls_client --tls "${CLI[@]}" --connect "127.0.0.1:$P_sink" --send $N --shut wr \
    --expect-sink --timeout 30) || fail "half-close via TLS close_notify: $out"
grep -q 'eof=close_notify' <<<"$out" || fail "half-close: ferry did not end the TLS stream with close_notify: $out"
pass "TLS half-close: reply after close_notify+FIN ($out)"
out=$(tls_client --connect "127.0.0.1:$P_out" --send $N --shut wr --expect-sink --timeout 30) ||
    fail "half-close via outbound plain FIN: $out"
pass "plain half-close through outbound -> inbound -> sink"
out=$(tls_client --tls "${CLI[@]}" --connect "127.0.0.1:$P_sink" --send 0 --shut wr \
    --expect-sink --timeout 30) || fail "half-close with nothing sent: $out"
pass "empty upload half-close"
ferry_alive wire || fail "ferry died"
good_request end
ferry_stop wire

# ---- max_connections ----
PMC=$(free_port)
cat >"$P/mc.yaml" <<YAML
tls: {cert: node1.crt, key: node1.key, ca: ca.crt}
log: {level: debug}
limits: {max_connections: 2, handshake_timeout: 30s, idle_timeout: 60s}
listeners:
  - {name: mc, mode: inbound, listen: "127.0.0.1:$PMC", backend: "127.0.0.1:$PECHO", protocol: tcp}
YAML
ferry_start mc "$P/mc.yaml"
W=2
[ "$VG" = 1 ] && W=6
out=$(timeout 90 python3 "$SUPPORT/maxconn.py" --connect "127.0.0.1:$PMC" --cert "$P/good.crt" \
    --key "$P/good.key" --ca "$P/root.crt" --wait $W) || fail "max_connections: $out"
pass "max_connections: $out"
ferry_stop mc
