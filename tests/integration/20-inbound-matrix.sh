#!/usr/bin/env bash
# Goal: CONTRACT §4 on inbound listeners (client_cert: required): curl presents each client
# certificate of the test PKI; a good one reaches the HTTP backend (200), each bad one is
# refused in the handshake, never reaches the backend, and is logged once as
# event=handshake_rejected with reason=<label>.  Covers allow lists, cn_fallback,
# intermediates sent or not sent, CRLs, verify_depth, RSA and ECDSA on both sides.
# valgrind: yes
# timeout: 300
source "$(dirname "$0")/lib.sh"

pki_make "$T/pki"
P=$T/pki

PB=$(free_port)
http_backend "$PB" backend
declare -A PORT
for l in main crl crlroot crlexp intca depth allowhit allowwild allowmiss allowip cnfb cnfballow rsa; do
    PORT[$l]=$(free_port)
done
cat >"$P/in.yaml" <<YAML
tls:
  cert: node1.crt
  key: node1.key
  ca: ca.crt
log: {level: debug}
limits: {handshake_timeout: 5s, idle_timeout: 30s}
listeners:
  - {name: main, mode: inbound, listen: "127.0.0.1:${PORT[main]}", backend: "127.0.0.1:$PB", protocol: http, client_cert: required}
  - name: crl
    mode: inbound
    listen: "127.0.0.1:${PORT[crl]}"
    backend: "127.0.0.1:$PB"
    tls: {ca: ca.crt, crl: crl.pem}
  - name: crlroot
    mode: inbound
    listen: "127.0.0.1:${PORT[crlroot]}"
    backend: "127.0.0.1:$PB"
    tls: {crl: crl-root-only.pem}
  - name: crlexp
    mode: inbound
    listen: "127.0.0.1:${PORT[crlexp]}"
    backend: "127.0.0.1:$PB"
    tls: {crl: crl-expired.pem}
  - name: intca
    mode: inbound
    listen: "127.0.0.1:${PORT[intca]}"
    backend: "127.0.0.1:$PB"
    tls: {ca: ca-int.crt}
  - name: depth
    mode: inbound
    listen: "127.0.0.1:${PORT[depth]}"
    backend: "127.0.0.1:$PB"
    tls: {verify_depth: 1}
  - name: allowhit
    mode: inbound
    listen: "127.0.0.1:${PORT[allowhit]}"
    backend: "127.0.0.1:$PB"
    allow: ["nothere.test", "alt.peer.test"]
  - name: allowwild
    mode: inbound
    listen: "127.0.0.1:${PORT[allowwild]}"
    backend: "127.0.0.1:$PB"
    allow: ["*.peer.test"]
  - name: allowmiss
    mode: inbound
    listen: "127.0.0.1:${PORT[allowmiss]}"
    backend: "127.0.0.1:$PB"
    allow: ["node7.test", "*.other.test", "*.alt.peer.test", "10.0.0.1"]
  - name: allowip
    mode: inbound
    listen: "127.0.0.1:${PORT[allowip]}"
    backend: "127.0.0.1:$PB"
    allow: ["127.0.0.1"]
  - name: cnfb
    mode: inbound
    listen: "127.0.0.1:${PORT[cnfb]}"
    backend: "127.0.0.1:$PB"
    allow: ["peer.test"]
  - name: cnfballow
    mode: inbound
    listen: "127.0.0.1:${PORT[cnfballow]}"
    backend: "127.0.0.1:$PB"
    allow: ["peer.test"]
    tls: {cn_fallback: true}
  - name: rsa
    mode: inbound
    listen: "127.0.0.1:${PORT[rsa]}"
    backend: "127.0.0.1:$PB"
    tls: {cert: node1-rsa.crt, key: node1-rsa.key}
YAML
ferry_start in "$P/in.yaml"
for l in "${!PORT[@]}"; do
    expect_log in "event=listening.*${PORT[$l]}"
done

# try LISTENER CERTFILE KEYFILE TAG: curl https://node1.test:PORT/m/TAG with that client cert
try() {
    local l=$1 cert=$2 key=$3 tag=$4
    local args=(--cacert "$P/root.crt" --resolve "node1.test:${PORT[$l]}:127.0.0.1")
    [ -n "$cert" ] && args+=(--cert "$P/$cert" --key "$P/$key")
    curl_code "${args[@]}" "https://node1.test:${PORT[$l]}/m/$tag"
}

# accept LISTENER CERT [KEY]: expect 200 from the backend, echoing the path
accept() {
    local l=$1 c=$2 k=${3:-${2%-chain}}
    local tag="$l-$c" code
    code=$(try "$l" "$c.crt" "$k.key" "$tag")
    [ "$code" = 200 ] || fail "$l with $c: HTTP $code, expected 200"
    grep -q "\"/m/$tag\"" "$T/curl.body" || fail "$l with $c: backend did not see /m/$tag"
    pass "$l accepts $c"
}

# reject LISTENER CERT LABEL [KEY]: refused, logged once with reason=LABEL, backend not reached
reject() {
    local l=$1 c=$2 label=$3 k=${4:-${2%-chain}}
    local tag="$l-$c" code before after lines closed
    before=$(wc -l <"$T/in.log")
    if [ "$c" = none ]; then
        code=$(try "$l" "" "" "$tag")
    else
        code=$(try "$l" "$c.crt" "$k.key" "$tag")
    fi
    [ "$code" = 000 ] || fail "$l with $c: HTTP $code, expected the handshake to be refused"
    grep -q " /m/$tag$" "$T/backend.log" && fail "$l with $c: the request reached the backend"
    local end=$((SECONDS + (VG == 1 ? 20 : 5)))
    while :; do
        lines=$(tail -n +"$((before + 1))" "$T/in.log" | grep 'event=handshake_rejected' |
            grep -E "listener=\"?$l\"?( |$)" || true)
        [ -n "$lines" ] && break
        [ "$SECONDS" -ge "$end" ] && break
        sleep 0.1
    done
    [ -n "$lines" ] || fail "$l with $c: no event=handshake_rejected listener=$l logged"
    grep -Eq "reason=\"?$label\"?( |$)" <<<"$lines" ||
        fail "$l with $c: expected reason=$label, got: $lines"
    [ "$(wc -l <<<"$lines")" = 1 ] || fail "$l with $c: rejection logged more than once: $lines"
    grep -q 'level=warn\| warn ' <<<"$lines" || fail "$l with $c: rejection not at warn: $lines"
    grep -q 'remote=127\.0\.0\.1:' <<<"$lines" || fail "$l with $c: no remote=: $lines"
    grep -q 'msg=' <<<"$lines" || fail "$l with $c: no msg= in plain words: $lines"
    if [ "$c" != none ]; then
        grep -q 'subject=' <<<"$lines" || fail "$l with $c: no subject=: $lines"
    fi
    # Its close line names no peer: a refused certificate's name is nobody's identity (the
    # warn line above names the certificate).
    expect_log in "event=conn_closed listener=\"?$l\"? .*reason=rejected"
    closed=$(tail -n +"$((before + 1))" "$T/in.log" | grep 'event=conn_closed' | grep 'reason=rejected' |
        grep -E "listener=\"?$l\"?( |$)" | tail -n 1)
    [ -n "$closed" ] && ! grep -q ' peer=' <<<"$closed" ||
        fail "$l with $c: the close line of a refused handshake names a peer: $closed"
    pass "$l rejects $c: $label"
}

# ---- good certificates ----
accept main good
accept main good-rsa
accept main int-good-chain int-good        # intermediate sent by the client
accept intca int-good                      # intermediate only in ferry's CA bundle
accept intca good
accept crl good
accept crl int-good-chain int-good
accept rsa good
accept rsa good-rsa
accept allowhit good                       # second SAN alt.peer.test is listed
accept allowwild good                      # *.peer.test covers alt.peer.test
accept allowip ip-only                     # IP SAN 127.0.0.1
accept allowip good
accept cnfballow cn-only                   # no SAN, CN=peer.test, cn_fallback: true
accept cnfballow good
accept main wild

# ---- rule 1: chain ----
reject main none no_cert
reject main other unknown_ca
reject main int-good unknown_ca            # intermediate neither sent nor in the bundle
reject main self self_signed
reject main nonca-chain not_ca nonca
reject main expired expired
reject main not-yet not_yet_valid
reject crl revoked revoked
reject crl int-revoked-chain revoked int-revoked
reject crlroot int-good-chain crl int-good # no CRL for the intermediate
reject crlexp good crl                     # the root's CRL has expired
accept main deep-chain deep               # 2 intermediates, default verify_depth 4
reject depth deep-chain chain_too_long deep  # levels 0..3 with verify_depth: 1
reject main bad-sig bad_signature
reject main critx chain_other
# ---- rule 2: EKU ----
reject main no-eku eku_missing
reject main server-only eku_wrong
# ---- rule 3: name ----
reject cnfb cn-only no_name                # allow set, no SAN, cn_fallback off
reject allowmiss good name_not_allowed     # *.alt.peer.test must not cover alt.peer.test
reject allowmiss ip-only name_not_allowed
reject allowhit wild name_not_allowed
# the order of the rules: a chain failure wins over EKU and name failures
reject allowmiss other unknown_ca
reject allowmiss no-eku eku_missing

# ---- still serving, nothing crashed ----
accept main good
ferry_stop in
n=$(log_count in 'event=handshake_rejected')
note "$n rejections logged"
