#!/usr/bin/env bash
# Goal: CONTRACT §8 at run time: when the other side aborts OUR handshake with an alert, the
# daemon's one warn line says why in plain words, naming the file to fix.
# - outbound: a peer (`openssl s_server -Verify` trusting only an unrelated CA) rejects our
#   client certificate, under TLS 1.3 (alert after our handshake) and TLS 1.2 (alert during
#   it): the local client gets 502 JSON whose reason is the translation, and the log has
#   event=peer_rejected_us with "alert unknown_ca" and our tls.cert.
# - outbound: the peer is plain HTTP (CouchDB itself): 502 "answered in plaintext".
# - inbound: curl with a --cacert that does not hold our CA rejects our server certificate:
#   event=client_rejected_us at warn with "alert unknown_ca" (no longer an info line).
# - a peer that sends its leaf alone (issued by an intermediate; our tls.ca holds only the
#   root), both ways: `openssl s_client -cert` leaf only against an inbound listener, and
#   `openssl s_server -cert` leaf only behind an outbound one.  The rejection (and the 502)
#   says that the peer's certificate file lacks its intermediate, names it, and says to append
#   it after the leaf (issue 13 §5).
# - outbound to a ferry whose allow lists none of our names (it sends bad_certificate): the
#   warn line and the 502 list the likely causes in order, our names first, and end with the
#   exact `ferry check --peer HOST:PORT -c FILE --listener NAME` to run.
# - outbound to a TLS 1.3 peer that resets the connection once our request arrives (how a
#   refusal looks when the peer's reset destroys its alert): the warn line and the 502 say so,
#   with the same causes and the same `ferry check --peer` command.
# - inbound, the same refusal seen by a raw TLS 1.3 client that writes its request right after
#   its handshake: it reads the bad_certificate alert 20 times in 20, never ECONNRESET (ferry
#   closes lingering: FIN, then reads the request); 30 clients that neither read nor close cost
#   ferry a descriptor each only until the lingering bound, then its fd count is back.
# valgrind: yes
# timeout: 120
source "$(dirname "$0")/lib.sh"

pki_make "$T/pki"
P=$T/pki

S13=$(free_port)
S12=$(free_port)
SHTTP=$(free_port)
L13=$(free_port)
L12=$(free_port)
LHTTP=$(free_port)
LIN=$(free_port)
PB=$(free_port)
SLEAF=$(free_port)
LLEAF=$(free_port)
LSTRICT=$(free_port)
LTOSTRICT=$(free_port)
SRESET=$(free_port)
LRESET=$(free_port)
SRESETNC=$(free_port)
LRESETNC=$(free_port)

bg_run s13 openssl s_server -accept "127.0.0.1:$S13" -cert "$P/good.crt" -key "$P/good.key" \
    -Verify 1 -verify_return_error -CAfile "$P/other-ca.crt" -www -quiet -tls1_3
bg_run s12 openssl s_server -accept "127.0.0.1:$S12" -cert "$P/good.crt" -key "$P/good.key" \
    -Verify 1 -verify_return_error -CAfile "$P/other-ca.crt" -www -quiet -tls1_2
# a server whose certificate file holds its leaf alone (issued by the intermediate)
bg_run sleaf openssl s_server -accept "127.0.0.1:$SLEAF" -cert "$P/int-good.crt" \
    -key "$P/int-good.key" -www -quiet
http_backend "$SHTTP" couchdb
http_backend "$PB" backend
wait_port "$S13"
wait_port "$S12"
# a TLS 1.3 server that resets each connection once our request has arrived
bg_run sreset python3 "$SUPPORT/reset_server.py" --port "$SRESET" --cert "$P/good.crt" \
    --key "$P/good.key" --ca "$P/ca.crt"
wait_port "$SLEAF"
bg_run sresetnc python3 "$SUPPORT/reset_server.py" --port "$SRESETNC" --cert "$P/good.crt" \
    --key "$P/good.key" --ca "$P/ca.crt" --no-client-cert
wait_port "$SRESET"
wait_port "$SRESETNC"

cat >"$P/rt.yaml" <<YAML
tls: {cert: node1.crt, key: node1.key, ca: ca.crt}
limits: {handshake_timeout: 5s, idle_timeout: 30s}
listeners:
  - {name: out13, mode: outbound, listen: "127.0.0.1:$L13", peer: "peer.test:$S13", connect: "127.0.0.1:$S13"}
  - {name: out12, mode: outbound, listen: "127.0.0.1:$L12", peer: "peer.test:$S12", connect: "127.0.0.1:$S12"}
  - {name: outhttp, mode: outbound, listen: "127.0.0.1:$LHTTP", peer: "peer.test:$SHTTP", connect: "127.0.0.1:$SHTTP"}
  - {name: in, mode: inbound, listen: "127.0.0.1:$LIN", backend: "127.0.0.1:$PB", client_cert: required}
  - {name: outleaf, mode: outbound, listen: "127.0.0.1:$LLEAF", peer: "peer.test:$SLEAF", connect: "127.0.0.1:$SLEAF"}
  - {name: strict, mode: inbound, listen: "127.0.0.1:$LSTRICT", backend: "127.0.0.1:$PB", allow: ["nobody.test"]}
  - {name: tostrict, mode: outbound, listen: "127.0.0.1:$LTOSTRICT", peer: "node1.test:$LSTRICT", connect: "127.0.0.1:$LSTRICT"}
  - {name: toreset, mode: outbound, listen: "127.0.0.1:$LRESET", peer: "peer.test:$SRESET", connect: "127.0.0.1:$SRESET"}
  - {name: toresetnc, mode: outbound, listen: "127.0.0.1:$LRESETNC", peer: "peer.test:$SRESETNC", connect: "127.0.0.1:$SRESETNC"}
YAML
ferry_start rt "$P/rt.yaml"

reason_of() {
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["error"]=="bad_gateway", d; print(d["reason"])' "$T/curl.body"
}

for v in 13 12; do
    lport=L$v
    code=$(curl_code "http://127.0.0.1:${!lport}/db")
    [ "$code" = 502 ] || fail "TLS 1.$v peer rejecting us: HTTP $code, expected 502"
    reason=$(reason_of) || fail "TLS 1.$v: 502 body is not the JSON of CONTRACT §5: $(cat "$T/curl.body")"
    note "TLS 1.$v 502 reason: $reason"
    for want in "alert unknown_ca" "$P/node1.crt" "Ferry Test Root CA" "the peer's tls.ca"; do
        grep -qF -- "$want" <<<"$reason" || fail "TLS 1.$v: 502 reason lacks \"$want\": $reason"
    done
    expect_log rt " warn event=peer_rejected_us.*listener=out$v.*alert unknown_ca"
    line=$(grep "event=peer_rejected_us" "$T/rt.log" | grep "listener=out$v")
    [ "$(wc -l <<<"$line")" = 1 ] || fail "TLS 1.$v: logged more than once: $line"
    grep -q "target=" <<<"$line" || fail "TLS 1.$v: no target= in $line"
    grep -q "remote=" <<<"$line" || fail "TLS 1.$v: no remote= in $line"
    pass "outbound TLS 1.$v: peer's unknown_ca alert translated in the 502 and the warn line"
done

code=$(curl_code "http://127.0.0.1:$LHTTP/db")
[ "$code" = 502 ] || fail "plain HTTP peer: HTTP $code, expected 502"
reason=$(reason_of) || fail "plain HTTP peer: bad 502 body: $(cat "$T/curl.body")"
grep -q "answered in plaintext: it is not a TLS port" <<<"$reason" ||
    fail "plain HTTP peer: reason is not the plaintext explanation: $reason"
expect_log rt "event=peer_handshake_failed.*listener=outhttp.*answered in plaintext"
pass "outbound to a plain HTTP port: \"$reason\""

# inbound: curl does not trust our CA (only the other CA) and aborts our handshake
code=$(curl_code --cacert "$P/other-ca.crt" --cert "$P/good.crt" --key "$P/good.key" \
    --resolve "node1.test:$LIN:127.0.0.1" "https://node1.test:$LIN/db")
[ "$code" = 000 ] || fail "curl with the wrong --cacert got HTTP $code"
expect_log rt " warn event=client_rejected_us.*listener=in.*alert unknown_ca"
line=$(grep "event=client_rejected_us" "$T/rt.log")
for want in "$P/node1.crt" "Ferry Test Root CA" "curl --cacert" "alert=unknown_ca"; do
    grep -qF -- "$want" <<<"$line" || fail "client_rejected_us lacks \"$want\": $line"
done
expect_no_log rt " info event=handshake_failed.*listener=in"
pass "inbound: a client that rejects our certificate is a warn client_rejected_us line"

# ---- a peer that sent its leaf alone ----
INT="CN=Ferry Test Intermediate CA"
# outbound: the server's certificate file lacks its intermediate
code=$(curl_code "http://127.0.0.1:$LLEAF/db")
[ "$code" = 502 ] || fail "leaf-only server: HTTP $code, expected 502"
reason=$(reason_of) || fail "leaf-only server: bad 502 body: $(cat "$T/curl.body")"
for want in "came alone, without an intermediate" "issued by $INT" "the peer's certificate file (a ferry's tls.cert) lacks it: append it, so that the file holds the leaf, then the intermediate" "$P/ca.crt"; do
    grep -qF -- "$want" <<<"$reason" || fail "leaf-only server: 502 reason lacks \"$want\": $reason"
done
expect_log rt " warn event=handshake_rejected.*listener=outleaf.*reason=unknown_ca.*came alone, without an intermediate"
pass "outbound, a server that sent its leaf alone: \"$reason\""
# inbound: the client's certificate file lacks its intermediate
openssl s_client -connect "127.0.0.1:$LIN" -cert "$P/int-good.crt" -key "$P/int-good.key" \
    -CAfile "$P/ca.crt" </dev/null >"$T/s_client-leaf.out" 2>&1 || true
expect_log rt " warn event=handshake_rejected.*listener=in .*reason=unknown_ca"
line=$(grep "event=handshake_rejected" "$T/rt.log" | grep "listener=in ")
for want in "came alone, without an intermediate" "issued by $INT" "the client's certificate file" "lacks it: append it" "$P/ca.crt"; do
    grep -qF -- "$want" <<<"$line" || fail "leaf-only client: the rejection lacks \"$want\": $line"
done
pass "inbound, a client that sent its leaf alone: the log says to append $INT to its file"
# ... and with its intermediate appended, the same client passes
code=$(curl_code --cacert "$P/ca.crt" --cert "$P/int-good-chain.crt" --key "$P/int-good.key" \
    --resolve "node1.test:$LIN:127.0.0.1" "https://node1.test:$LIN/db")
[ "$code" = 200 ] || fail "the same client with leaf + intermediate: HTTP $code"
pass "the same client with leaf + intermediate passes"

# ---- the client side of an allow refusal ----
code=$(curl_code "http://127.0.0.1:$LTOSTRICT/db")
[ "$code" = 502 ] || fail "peer whose allow lacks our names: HTTP $code, expected 502"
reason=$(reason_of) || fail "allow refusal: bad 502 body: $(cat "$T/curl.body")"
expect_log rt " warn event=handshake_rejected.*listener=strict .*reason=name_not_allowed"
expect_log rt " warn event=peer_rejected_us.*listener=tostrict"
line=$(grep "event=peer_rejected_us" "$T/rt.log" | grep "listener=tostrict")
for want in "(alert bad_certificate); likely causes, most likely first: 1. its allow lists none of our names (DNS:node1.test,DNS:localhost,IP:127.0.0.1)" \
    "2. by its clock $P/node1.crt is not valid yet" "3. a CRL in its tls.crl" \
    "Run \`ferry check --peer node1.test:$LSTRICT -c $P/rt.yaml --listener tostrict\`"; do
    grep -qF -- "$want" <<<"$line" || fail "allow refusal: the warn line lacks \"$want\": $line"
    grep -qF -- "$want" <<<"$reason" || fail "allow refusal: the 502 reason lacks \"$want\": $reason"
done
# the command it names works as written, and says the same
rc=0
ferry_cmd check --peer "node1.test:$LSTRICT" -c "$P/rt.yaml" --listener tostrict >"$T/strict.check" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "peer-refused-names" "$T/strict.check" ||
    fail "the check --peer the log names: exit $rc: $(cat "$T/strict.check")"
pass "outbound refused by the peer's allow: causes in order and the check --peer to run"

# ---- the same refusal when the peer's reset destroyed its alert (TLS 1.3) ----
code=$(curl_code "http://127.0.0.1:$LRESET/db")
[ "$code" = 502 ] || fail "peer that resets after the handshake: HTTP $code, expected 502"
reason=$(reason_of) || fail "reset: bad 502 body: $(cat "$T/curl.body")"
expect_log rt " warn event=peer_failed.*listener=toreset"
line=$(grep "event=peer_failed" "$T/rt.log" | grep "listener=toreset")
for want in "peer peer.test:$SRESET reset the connection right after our TLS 1.3 handshake, before answering: this is how a peer refusing our certificate may look under TLS 1.3" \
    "likely causes, most likely first: 1. its allow lists none of our names (DNS:node1.test,DNS:localhost,IP:127.0.0.1)" \
    "4. it cannot parse $P/node1.crt" \
    "Run \`ferry check --peer peer.test:$SRESET -c $P/rt.yaml --listener toreset\`"; do
    grep -qF -- "$want" <<<"$line" || fail "reset: the warn line lacks \"$want\": $line"
    grep -qF -- "$want" <<<"$reason" || fail "reset: the 502 reason lacks \"$want\": $reason"
done
pass "outbound, a peer's reset right after the TLS 1.3 handshake: the refusal it may be, and the check --peer"
# ... but not when the peer asked for no certificate: then it cannot have refused ours
code=$(curl_code "http://127.0.0.1:$LRESETNC/db")
[ "$code" = 502 ] || fail "peer that resets, no client certificate asked: HTTP $code, expected 502"
expect_log rt " warn event=peer_failed.*listener=toresetnc"
expect_no_log rt "listener=toresetnc.*refusing our certificate"
pass "a reset from a peer that asked for no certificate is not called a refusal"

# ---- the server side of an allow refusal: a lingering close ----
# A TLS 1.3 client has sent its request before ferry refuses its certificate; ferry must not
# reset the connection with that request unread, which would destroy its bad_certificate alert.
refused() {
    python3 "$SUPPORT/refused_client.py" --connect "127.0.0.1:$LSTRICT" --cert "$P/good.crt" \
        --key "$P/good.key" --ca "$P/ca.crt" "$@"
}
out=$(refused --tries 20) || fail "refused TLS 1.3 clients, 20 in a row: $out"
pass "a client refused after its TLS 1.3 handshake reads the alert, never a reset: $out"
# The lingering is bounded: clients that never close nor read cost ferry a descriptor each for
# at most min(2 s, handshake_timeout), then ferry closes cleanly (they still read the alert).
pid=$(ferry_pid rt)
nfds() { find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
base=$(nfds)
rm -f "$T/hold.ready" "$T/hold.stop"
refused --hold 30 --ready "$T/hold.ready" --stop "$T/hold.stop" --timeout 60 >"$T/hold.out" 2>&1 &
hold_pid=$!
bg_register "$hold_pid" hold
end=$((SECONDS + 30 * (VG + 1)))
while [ ! -f "$T/hold.ready" ]; do
    [ "$SECONDS" -lt "$end" ] || fail "the 30 holding clients did not connect: $(cat "$T/hold.out")"
    sleep 0.05
done
during=$(nfds)
[ "$during" -gt "$base" ] || fail "no socket lingers for clients that did not close ($during fds, $base before)"
t0=$SECONDS
while [ "$(nfds)" -gt "$base" ]; do
    [ $((SECONDS - t0)) -lt $((5 + 20 * VG)) ] ||
        fail "ferry still holds $(nfds) fds ($base before) after the lingering bound"
    sleep 0.1
done
note "fds: $base before, $during while lingering, back to $(nfds) after $((SECONDS - t0)) s"
touch "$T/hold.stop"
wait "$hold_pid" || fail "held clients: $(cat "$T/hold.out")"
pass "lingering is bounded in time; the held clients still read the alert: $(cat "$T/hold.out")"

# and a good client still passes
code=$(curl_code --cacert "$P/ca.crt" --cert "$P/good.crt" --key "$P/good.key" \
    --resolve "node1.test:$LIN:127.0.0.1" "https://node1.test:$LIN/db")
[ "$code" = 200 ] || fail "good client: HTTP $code"
# ferry stops cleanly (valgrind: no leak) with sockets still lingering
rm -f "$T/hold.ready" "$T/hold.stop"
refused --hold 5 --ready "$T/hold.ready" --stop "$T/hold.stop" --timeout 60 >"$T/hold2.out" 2>&1 &
hold_pid=$!
bg_register "$hold_pid" hold2
end=$((SECONDS + 30 * (VG + 1)))
while [ ! -f "$T/hold.ready" ]; do
    [ "$SECONDS" -lt "$end" ] || fail "the 5 holding clients did not connect: $(cat "$T/hold2.out")"
    sleep 0.05
done
note "stopping with $(($(nfds) - base)) more fds than before the holding clients"
ferry_stop rt
touch "$T/hold.stop"
wait "$hold_pid" || true
pass "runtime alert translation"
