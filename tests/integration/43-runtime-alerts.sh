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

bg_run s13 openssl s_server -accept "127.0.0.1:$S13" -cert "$P/good.crt" -key "$P/good.key" \
    -Verify 1 -verify_return_error -CAfile "$P/other-ca.crt" -www -quiet -tls1_3
bg_run s12 openssl s_server -accept "127.0.0.1:$S12" -cert "$P/good.crt" -key "$P/good.key" \
    -Verify 1 -verify_return_error -CAfile "$P/other-ca.crt" -www -quiet -tls1_2
http_backend "$SHTTP" couchdb
http_backend "$PB" backend
wait_port "$S13"
wait_port "$S12"

cat >"$P/rt.yaml" <<YAML
tls: {cert: node1.crt, key: node1.key, ca: ca.crt}
limits: {handshake_timeout: 5s, idle_timeout: 30s}
listeners:
  - {name: out13, mode: outbound, listen: "127.0.0.1:$L13", peer: "peer.test:$S13", connect: "127.0.0.1:$S13"}
  - {name: out12, mode: outbound, listen: "127.0.0.1:$L12", peer: "peer.test:$S12", connect: "127.0.0.1:$S12"}
  - {name: outhttp, mode: outbound, listen: "127.0.0.1:$LHTTP", peer: "peer.test:$SHTTP", connect: "127.0.0.1:$SHTTP"}
  - {name: in, mode: inbound, listen: "127.0.0.1:$LIN", backend: "127.0.0.1:$PB", client_cert: required}
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

# and a good client still passes
code=$(curl_code --cacert "$P/ca.crt" --cert "$P/good.crt" --key "$P/good.key" \
    --resolve "node1.test:$LIN:127.0.0.1" "https://node1.test:$LIN/db")
[ "$code" = 200 ] || fail "good client: HTTP $code"
ferry_stop rt
pass "runtime alert translation"
