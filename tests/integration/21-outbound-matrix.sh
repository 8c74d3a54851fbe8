#!/usr/bin/env bash
# Goal: CONTRACT §4 and §5 on outbound listeners: plain curl -> ferry (outbound) -> mTLS ->
# `openssl s_server -Verify 1 -www` presenting each server certificate of the test PKI.
# A good server gives 200; each bad one gives HTTP 502 with the JSON body
# {"error":"bad_gateway","reason":...} and event=handshake_rejected reason=<label>;
# host names (case, wildcards, IP literals against IP SANs only); protocol: tcp just closes.
# valgrind: yes
# timeout: 300
source "$(dirname "$0")/lib.sh"

pki_make "$T/pki"
P=$T/pki

# Each case: NAME|SERVER CERT|CHAIN FILE or -|PEER HOST|extra listener yaml|protocol|expect
# expect is 200 or a reject label, or "close" (protocol tcp: the connection just closes).
CASES=(
    "good|good|-|peer.test||http|200"
    "rsa|good-rsa|-|peer.test||http|200"
    "altname|good|-|alt.peer.test||http|200"
    "case|good|-|PEER.Test||http|200"
    "ip|good|-|127.0.0.1||http|200"
    "intchain|int-good|int.crt|peer.test||http|200"
    "intbundle|int-good|-|peer.test|ca: ca-int.crt|http|200"
    "intnone|int-good|-|peer.test||http|unknown_ca"
    "wild|wild|-|a.wild.test||http|200"
    "wild2|wild|-|a.b.wild.test||http|name_mismatch"
    "wild0|wild|-|wild.test||http|name_mismatch"
    "cnfb|cn-only|-|peer.test|cn_fallback: true|http|200"
    "other|other|-|peer.test||http|unknown_ca"
    "self|self|-|peer.test||http|self_signed"
    "nonca|nonca|good.crt|peer.test||http|not_ca"
    "expired|expired|-|peer.test||http|expired"
    "notyet|not-yet|-|peer.test||http|not_yet_valid"
    "revoked|revoked|-|peer.test|crl: crl.pem|http|revoked"
    "crlmiss|int-good|int.crt|peer.test|crl: crl-root-only.pem|http|crl"
    "deep|deep|deep-ints.crt|peer.test||http|200"
    "depth|deep|deep-ints.crt|peer.test|verify_depth: 1|http|chain_too_long"
    "badsig|bad-sig|-|peer.test||http|bad_signature"
    "critx|critx|-|peer.test||http|chain_other"
    "noeku|no-eku|-|peer.test||http|eku_missing"
    "clientonly|client-only|-|peer.test||http|eku_wrong"
    "wrongsan|wrong-san|-|peer.test||http|name_mismatch"
    "cnonly|cn-only|-|peer.test||http|no_name"
    "ipdns|dns-ip|-|127.0.0.1||http|name_mismatch"
    "ipwrong|wrong-san|-|127.0.0.1||http|name_mismatch"
    "tcpgood|good|-|peer.test||tcp|200"
    "tcpbad|client-only|-|peer.test||tcp|close"
)

declare -A LPORT SPORT
cfg=$P/out.yaml
cat >"$cfg" <<YAML
tls: {cert: node1.crt, key: node1.key, ca: ca.crt}
log: {level: debug}
limits: {handshake_timeout: 5s, idle_timeout: 30s}
listeners:
YAML
for c in "${CASES[@]}"; do
    IFS='|' read -r name cert chain host extra proto expect <<<"$c"
    LPORT[$name]=$(free_port)
    SPORT[$name]=$(free_port)
    {
        echo "  - name: $name"
        echo "    mode: outbound"
        echo "    listen: \"127.0.0.1:${LPORT[$name]}\""
        echo "    peer: \"$host:${SPORT[$name]}\""
        echo "    connect: \"127.0.0.1:${SPORT[$name]}\""
        echo "    protocol: $proto"
        [ -n "$extra" ] && echo "    tls: {$extra}"
    } >>"$cfg"
    args=(-accept "127.0.0.1:${SPORT[$name]}" -cert "$P/$cert.crt" -key "$P/$cert.key"
        -Verify 1 -verify_return_error -CAfile "$P/root.crt" -www -quiet)
    [ "$chain" != - ] && args+=(-cert_chain "$P/$chain")
    bg_run "s_server-$name" openssl s_server "${args[@]}"
done
# unreachable peer: nothing listens there
DEAD=$(free_port)
LPORT[dead]=$(free_port)
cat >>"$cfg" <<YAML
  - {name: dead, mode: outbound, listen: "127.0.0.1:${LPORT[dead]}", peer: "peer.test:$DEAD", connect: "127.0.0.1:$DEAD"}
YAML
for c in "${CASES[@]}"; do
    IFS='|' read -r name _ <<<"$c"
    wait_port "${SPORT[$name]}"
done
ferry_start out "$cfg"

check_502_body() {
    local what=$1 hdrs=$2
    python3 - "$T/curl.body" "$what" <<'PY' || fail "$what: bad 502 body: $(cat "$T/curl.body")"
import json, sys
body = open(sys.argv[1], "rb").read()
doc = json.loads(body)
assert set(doc) == {"error", "reason"}, doc
assert doc["error"] == "bad_gateway", doc
assert isinstance(doc["reason"], str) and doc["reason"], doc
print("%s: 502 reason: %s" % (sys.argv[2], doc["reason"]), file=sys.stderr)
PY
    grep -iq '^content-type: *application/json' "$hdrs" || fail "$what: 502 without Content-Type: application/json"
    grep -iq '^connection: *close' "$hdrs" || fail "$what: 502 without Connection: close"
}

for c in "${CASES[@]}"; do
    IFS='|' read -r name cert chain host extra proto expect <<<"$c"
    before=$(wc -l <"$T/out.log")
    code=$(curl_code -D "$T/hdrs" "http://127.0.0.1:${LPORT[$name]}/o/$name")
    case "$expect" in
    200)
        [ "$code" = 200 ] || fail "$name ($cert as $host, $proto): HTTP $code, expected 200"
        grep -q 's_server' "$T/curl.body" || fail "$name: 200 but not from s_server"
        ;;
    close)
        [ "$code" = 000 ] || fail "$name ($cert, tcp): HTTP $code, expected the connection closed"
        [ ! -s "$T/curl.body" ] || fail "$name (tcp): got bytes: $(head -c 200 "$T/curl.body")"
        ;;
    *)
        [ "$code" = 502 ] || fail "$name ($cert as $host): HTTP $code, expected 502 ($expect)"
        check_502_body "$name" "$T/hdrs"
        ;;
    esac
    if [ "$expect" != 200 ]; then
        label=$expect
        [ "$expect" = close ] && label=eku_wrong
        sleep 0.2
        end=$((SECONDS + (VG == 1 ? 20 : 5)))
        while :; do
            lines=$(tail -n +"$((before + 1))" "$T/out.log" | grep 'event=handshake_rejected' |
                grep -E "listener=\"?$name\"?( |$)" || true)
            [ -n "$lines" ] || [ "$SECONDS" -ge "$end" ] && break
            sleep 0.1
        done
        [ -n "$lines" ] || fail "$name: no event=handshake_rejected listener=$name logged"
        grep -Eq "reason=\"?$label\"?( |$)" <<<"$lines" || fail "$name: expected reason=$label, got: $lines"
        [ "$(wc -l <<<"$lines")" = 1 ] || fail "$name: rejection logged more than once: $lines"
        grep -q 'msg=' <<<"$lines" || fail "$name: no msg=: $lines"
    fi
    pass "$name: $cert as $host ($proto) -> $expect"
done

code=$(curl_code -D "$T/hdrs" "http://127.0.0.1:${LPORT[dead]}/o/dead")
[ "$code" = 502 ] || fail "unreachable peer: HTTP $code, expected 502"
check_502_body dead "$T/hdrs"
expect_log out 'event=peer_unreachable'
pass "unreachable peer -> 502 + peer_unreachable"

# still serving
code=$(curl_code "http://127.0.0.1:${LPORT[good]}/o/again")
[ "$code" = 200 ] || fail "after the matrix: HTTP $code"
ferry_stop out
