#!/usr/bin/env bash
# Goal (issue 8 item 2): misbehaving TLS clients against an inbound listener cost only their
# own connection.
# - `openssl s_client -tls1_1` is refused with a protocol_version alert.
# - renegotiation (`R` typed into `s_client -tls1_2` after one good request) is refused, and a
#   request sent after it gets no answer on that connection; the close is logged as
#   "renegotiation refused".
# - an oversized record (20 KiB ClientHello record; an 18 KiB application_data record after
#   the handshake, > 16 KiB + 2048) is closed at once; a handshake and request written one
#   byte per send(), and a ClientHello re-cut into 1-byte TLS records, are served (200).
# - a TLS 1.2 client that sends its Certificate but never finishes the handshake is closed
#   after limits.handshake_timeout (3s; 12s under valgrind) while other clients are served
#   meanwhile.
# After every case ferry is alive and serves the next client.
# valgrind: yes
# timeout: 120
source "$(dirname "$0")/lib.sh"

pki_make "$T/pki"
P=$T/pki
PB=$(free_port)
PIN=$(free_port)
http_backend "$PB" backend

HS=3 # limits.handshake_timeout (it also bounds the backend connect); more under valgrind
[ "$VG" = 1 ] && HS=12
cat >"$T/edge.yaml" <<YAML
tls: {cert: $P/node1.crt, key: $P/node1.key, ca: $P/ca.crt}
limits: {handshake_timeout: ${HS}s, idle_timeout: 30s}
listeners:
  - {name: in, mode: inbound, listen: "127.0.0.1:$PIN", backend: "127.0.0.1:$PB", client_cert: required}
YAML
ferry_start edge "$T/edge.yaml"

CLIENT=(--cacert "$P/root.crt" --cert "$P/good.crt" --key "$P/good.key"
    --resolve "node1.test:$PIN:127.0.0.1")
serves() { # serves WHAT: ferry is alive and a good client gets 200 for /WHAT
    ferry_alive edge || fail "ferry died after: $1"
    local code
    code=$(curl_code "${CLIENT[@]}" "https://node1.test:$PIN/$1")
    [ "$code" = 200 ] || fail "after $1: a good client got HTTP $code, expected 200"
    grep -q "\"path\": \"/$1\"" "$T/curl.body" || fail "after $1: wrong body: $(cat "$T/curl.body")"
}
S_CLIENT=(openssl s_client -connect "127.0.0.1:$PIN" -servername node1.test
    -cert "$P/good.crt" -key "$P/good.key" -CAfile "$P/root.crt")
attack() { # attack MODE [ARGS...]: tests/support/tls_attack.py with the good client identity
    local mode=$1
    shift
    timeout -k 2 60 python3 "$SUPPORT/tls_attack.py" "$mode" --connect "127.0.0.1:$PIN" \
        --cert "$P/good.crt" --key "$P/good.key" --ca "$P/root.crt" "$@"
}

# ---- TLS 1.1 ----
rc=0
timeout -k 2 15 "${S_CLIENT[@]}" -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0' </dev/null \
    >"$T/tls11.log" 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "s_client -tls1_1 succeeded (see tls11.log)"
grep -q 'alert protocol version' "$T/tls11.log" ||
    fail "s_client -tls1_1: no protocol_version alert from ferry (see tls11.log)"
grep -q 'Cipher is (NONE)' "$T/tls11.log" || fail "s_client -tls1_1 negotiated a cipher"
serves tls11
pass "TLS 1.1 refused (alert protocol_version)"

# ---- renegotiation ----
rc=0
{
    printf 'GET /before-reneg HTTP/1.1\r\nHost: node1.test\r\n\r\n'
    sleep 1
    printf 'R\n'
    sleep 1
    printf 'GET /after-reneg HTTP/1.1\r\nHost: node1.test\r\n\r\n'
    sleep 2
} | timeout -k 2 20 "${S_CLIENT[@]}" -tls1_2 >"$T/reneg.log" 2>&1 || rc=$?
grep -q '"path": "/before-reneg"' "$T/reneg.log" ||
    fail "renegotiation case: the first request was not served (see reneg.log)"
grep -q 'RENEGOTIATING' "$T/reneg.log" || fail "s_client did not try to renegotiate"
if grep -q '/after-reneg' "$T/reneg.log"; then
    fail "the connection kept working after a refused renegotiation (see reneg.log)"
fi
grep -qi 'no renegotiation\|alert' "$T/reneg.log" ||
    fail "renegotiation was not refused with an alert (see reneg.log)"
[ "$rc" != 0 ] || fail "s_client exited 0 after renegotiating"
serves reneg
# The summary line says why the connection ended (not "client: Success", issue 12).
expect_log edge 'event=conn_closed .*reason=client_error detail="client: renegotiation refused' 5
pass "client-initiated renegotiation refused; the connection does not continue; logged as such"

# ---- oversized records ----
attack oversized-hello >"$T/oversized-hello.log" 2>&1 ||
    fail "20 KiB ClientHello record not closed: $(cat "$T/oversized-hello.log")"
serves oversized-hello
attack oversized-app >"$T/oversized-app.log" 2>&1 ||
    fail "18 KiB application_data record not closed: $(cat "$T/oversized-app.log")"
serves oversized-app
# Whether the record arrives while the backend is still being dialled or once relaying, the
# summary says what the client did wrong, never errno's "client: Success".
expect_log edge 'event=conn_closed .*reason=client_error detail="client: TLS error: packet length too long"'
expect_no_log edge 'detail="client: Success"'
pass "oversized records closed at once; next client served"

# ---- fragmentation ----
attack fragment-tcp >"$T/fragment-tcp.log" 2>&1 ||
    fail "byte-by-byte TLS client not served: $(cat "$T/fragment-tcp.log")"
attack fragment-records >"$T/fragment-records.log" 2>&1 ||
    fail "ClientHello in 1-byte records not served: $(cat "$T/fragment-records.log")"
serves fragmented
pass "byte-by-byte writes and 1-byte TLS records: served 200"

# ---- certificate sent, handshake never finished ----
attack stall-cert --hold $((HS + 12)) >"$T/stall.log" 2>&1 &
stall=$!
bg_register "$stall" stall
sleep 0.5
t0=$(date +%s%N)
for i in 1 2 3 4 5; do
    serves "meanwhile-$i"
done
ms=$((($(date +%s%N) - t0) / 1000000))
max_ms=2500
[ "$VG" = 1 ] && max_ms=15000
[ "$ms" -lt "$max_ms" ] || fail "5 requests took ${ms}ms while a handshake was stalled"
rc=0
wait "$stall" || rc=$?
[ "$rc" = 0 ] || fail "stalled handshake not closed within $((HS + 12))s: $(cat "$T/stall.log")"
took=$(sed -n 's/.*closed_after=\([0-9.]*\).*/\1/p' "$T/stall.log")
python3 -c 'import sys; t, hs = float(sys.argv[1]), int(sys.argv[2]); sys.exit(0 if hs - 0.5 <= t <= hs + 3 else 1)' "$took" "$HS" ||
    fail "stalled handshake closed after ${took}s, expected ~${HS}s (handshake_timeout)"
expect_log edge 'reason=handshake_timeout'
serves stall
pass "client stalled after its Certificate: closed after ${took}s; 5 others served in ${ms}ms meanwhile"

ferry_stop edge
pass "71-tls-edge"
