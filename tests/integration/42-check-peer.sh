#!/usr/bin/env bash
# Goal: `ferry check --peer HOST:PORT` (CONTRACT §2, §8): it handshakes as the config's
# outbound listener would, shows what the peer presented, applies §4 and ends with one
# verdict line and exit 0/1.  Peers: ferry itself (an inbound listener) -> OK; openssl
# s_server with each defective server certificate (no serverAuth, wrong SAN, expired, other
# CA, self-signed) -> FAIL with the rule; a server that asks for no client certificate -> OK
# with a note; a server that does not trust our CA -> FAIL with the unknown_ca translation; a
# plain HTTP server -> "not a TLS port"; a port that accepts and says nothing -> FAIL within
# the handshake bound; --json gives one document with the same facts; --listener and a config
# without an outbound listener; a ferry whose allow lists none of our names -> FAIL with the
# finding peer-refused-names (the alert, our names against what its allow can match).
# valgrind: yes
# timeout: 180
source "$(dirname "$0")/lib.sh"

pki_make "$T/pki"
P=$T/pki

# ferry itself: an inbound listener presenting node1 (SAN 127.0.0.1), requiring client certs
LIN=$(free_port)
LSTRICT=$(free_port)
PB=$(free_port)
http_backend "$PB" backend
cat >"$P/in.yaml" <<YAML
tls: {cert: node1.crt, key: node1.key, ca: ca.crt}
listeners:
  - {name: in, mode: inbound, listen: "127.0.0.1:$LIN", backend: "127.0.0.1:$PB", client_cert: required}
  - {name: strict, mode: inbound, listen: "127.0.0.1:$LSTRICT", backend: "127.0.0.1:$PB", allow: ["nobody.test", "*.elsewhere.test"]}
YAML
ferry_start in "$P/in.yaml"

# the config `check --peer` acts from: two outbound listeners (the second with another cert)
cat >"$P/out.yaml" <<YAML
tls: {cert: node1.crt, key: node1.key, ca: ca.crt}
listeners:
  - {name: in-too, mode: inbound, listen: "127.0.0.1:$(free_port)", backend: "127.0.0.1:$PB"}
  - {name: to-peer, mode: outbound, listen: "127.0.0.1:$(free_port)", peer: "peer.test:6984"}
  - name: as-good
    mode: outbound
    listen: "127.0.0.1:$(free_port)"
    peer: "peer.test:6984"
    tls: {cert: good.crt, key: good.key}
YAML
cat >"$P/noout.yaml" <<YAML
tls: {cert: node1.crt, key: node1.key, ca: ca.crt}
listeners:
  - {name: only-in, mode: inbound, listen: "127.0.0.1:$(free_port)", backend: "127.0.0.1:$PB"}
YAML

# check WANT_RC NAME HOST:PORT [ARGS...]: run it, keep the output in $T/NAME.check
check() {
    local want=$1 name=$2 peer=$3 rc=0
    shift 3
    ferry_cmd check --peer "$peer" -c "$P/out.yaml" "$@" >"$T/$name.check" 2>&1 || rc=$?
    if [ "$rc" != "$want" ]; then
        cat "$T/$name.check" >&2
        fail "$name: ferry check --peer $peer exited $rc, expected $want"
    fi
    [ "$(grep -c '^verdict: ' "$T/$name.check")" = 1 ] || [ "${JSON:-0}" = 1 ] ||
        fail "$name: not exactly one verdict line: $(cat "$T/$name.check")"
}
has() { # has NAME TEXT...
    local name=$1 t
    shift
    for t in "$@"; do
        grep -qF -- "$t" "$T/$name.check" || {
            cat "$T/$name.check" >&2
            fail "$name: output lacks \"$t\""
        }
    done
}

check 0 ferry "127.0.0.1:$LIN"
has ferry "verdict: OK — 127.0.0.1:$LIN passes every rule" "subject: CN=node1.test" \
    "EKU:     serverAuth,clientAuth" "client certificate: requested; CAs the peer accepts:" \
    "Ferry Test Root CA" "chain ok, EKU serverAuth ok, name 127.0.0.1 ok" "key:     EC P-256" \
    "the peer's verdict on us: accepted"
grep -q '^tls: TLSv1\.[23], cipher ' "$T/ferry.check" || fail "ferry: no TLS version/cipher line"
pass "ferry itself: OK, with the chain, the CAs it accepts and the version"

# the same peer, acting as --listener as-good (good.crt: also issued by our root) -> OK too
check 0 ferry-listener "127.0.0.1:$LIN" --listener as-good
has ferry-listener "as listener as-good" "good.crt"
pass "--listener picks the listener whose files are used"

# s_server with each defective server certificate: NAME CERT EXPECTED-TEXT
declare -a BAD=(
    "noserverauth|client-only|lacks extendedKeyUsage serverAuth"
    "noeku|no-eku|has no extendedKeyUsage extension"
    "wrongsan|wrong-san|does not cover peer host 127.0.0.1"
    "expired|expired|expired on 2020-02-01"
    "otherca|other|which is not in tls.ca"
    "self|self|self-signed"
)
for c in "${BAD[@]}"; do
    IFS='|' read -r name cert want <<<"$c"
    port=$(free_port)
    bg_run "s-$name" openssl s_server -accept "127.0.0.1:$port" -cert "$P/$cert.crt" \
        -key "$P/$cert.key" -www -quiet
    wait_port "$port"
    check 1 "$name" "127.0.0.1:$port"
    has "$name" "verdict: FAIL — " "$want" "[0] subject: " "issuer:  CN=" "rules: chain "
    pass "$cert: FAIL ($want)"
done

# a server that wants no client certificate: OK, and says so
port=$(free_port)
bg_run s-nocert openssl s_server -accept "127.0.0.1:$port" -cert "$P/good.crt" \
    -key "$P/good.key" -www -quiet
wait_port "$port"
check 0 nocert "127.0.0.1:$port"
has nocert "verdict: OK" "client certificate: not requested by the peer" \
    "did not ask for a client certificate"
pass "no client certificate asked for: OK with a note"

# a server whose CA does not trust our certificate, TLS 1.3 (alert after the handshake) and 1.2
for v in 1_3 1_2; do
    port=$(free_port)
    bg_run "s-untrusted$v" openssl s_server -accept "127.0.0.1:$port" -cert "$P/good.crt" \
        -key "$P/good.key" -Verify 1 -verify_return_error -CAfile "$P/other-ca.crt" -www \
        -quiet "-tls$v"
    wait_port "$port"
    check 1 "untrusted$v" "127.0.0.1:$port"
    has "untrusted$v" "the peer's verdict on us: rejected (alert unknown_ca)" \
        "verdict: FAIL — peer 127.0.0.1:$port rejected our certificate (alert unknown_ca): it does not trust the CA that issued $P/node1.crt (issuer \"CN=Ferry Test Root CA,O=Ferry Test\"); add that CA to the peer's tls.ca" \
        "Ferry Test Other CA"
    pass "TLS ${v/_/.} server not trusting our CA: unknown_ca translated"
done

# a plain HTTP server
port=$(free_port)
bg_run plainhttp python3 -m http.server --bind 127.0.0.1 "$port" --directory "$T"
wait_port "$port"
check 1 plainhttp "127.0.0.1:$port"
has plainhttp "verdict: FAIL — peer 127.0.0.1:$port answered in plaintext: it is not a TLS port"
pass "plain HTTP: not a TLS port"

# a port that accepts and says nothing: FAIL within the 10s handshake bound
port=$(free_port)
bg_run silent python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8)
conns = []
while True:
    c, _ = s.accept(); conns.append(c)
' "$port"
wait_port "$port"
start=$SECONDS
check 1 silent "127.0.0.1:$port"
took=$((SECONDS - start))
has silent "sent nothing back to our ClientHello within 10s" "not a TLS port"
[ "$took" -le $((VG == 1 ? 40 : 14)) ] || fail "silent port: took ${took}s"
pass "silent port: FAIL after ${took}s"

# nothing listening
port=$(free_port)
check 1 refused "127.0.0.1:$port"
has refused "verdict: FAIL — cannot connect to 127.0.0.1:$port" "refused"
pass "closed port: connection refused"

# --json: one document with the same facts
JSON=1 check 0 json "127.0.0.1:$LIN" --json
na=$(date -u -d "$(openssl x509 -in "$P/node1.crt" -noout -enddate | cut -d= -f2)" +%Y-%m-%dT%H:%M:%SZ)
python3 - "$T/json.check" "$LIN" "$na" <<'PY' || fail "--json: bad document: $(cat "$T/json.check")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["verdict"] == "OK", d
assert d["peer"] == "127.0.0.1:" + sys.argv[2], d
assert d["listener"] == "to-peer", d
assert d["client_cert_requested"] is True, d
assert any("Ferry Test Root CA" in n for n in d["client_ca_names"]), d
assert d["chain"][0]["subject"].startswith("CN=node1.test"), d
assert "serverAuth" in d["chain"][0]["ekus"], d
assert d["rules"] == {"chain": "ok", "eku": "ok", "name": "ok"}, d
assert d["tls_version"].startswith("TLSv1."), d
assert d["chain"][0]["not_after"] == sys.argv[3], (d["chain"][0]["not_after"], sys.argv[3])
PY
port=$(free_port)
bg_run s-json-bad openssl s_server -accept "127.0.0.1:$port" -cert "$P/good.crt" \
    -key "$P/good.key" -Verify 1 -verify_return_error -CAfile "$P/other-ca.crt" -www -quiet
wait_port "$port"
JSON=1 check 1 jsonbad "127.0.0.1:$port" --json
python3 - "$T/jsonbad.check" <<'PY' || fail "--json (rejected): bad document: $(cat "$T/jsonbad.check")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["verdict"] == "FAIL" and d["alert"] == "unknown_ca" and d["rejected_us"] is True, d
assert "alert unknown_ca" in d["reason"], d
PY
pass "--json: one document, OK and FAIL"

# a ferry whose allow lists none of our names: the finding peer-refused-names
check 1 allow "127.0.0.1:$LSTRICT"
has allow "the peer's verdict on us: rejected (alert bad_certificate)" "error    peer-refused-names" \
    "$P/node1.crt: peer 127.0.0.1:$LSTRICT refused our certificate (alert bad_certificate)" \
    "allow list of its inbound listener matches none of our names" \
    "DNS:node1.test,DNS:localhost,IP:127.0.0.1" "our CN node1.test counts only with its tls.cn_fallback" \
    "It names our issuer \"CN=Ferry Test Root CA,O=Ferry Test\" among the CAs it accepts" \
    "fix: on the peer, add one of DNS:node1.test,DNS:localhost,IP:127.0.0.1 to the allow" \
    "verdict: FAIL — peer 127.0.0.1:$LSTRICT rejected our certificate (alert bad_certificate); likely causes, most likely first: 1. its allow lists none of our names"
JSON=1 check 1 allowjson "127.0.0.1:$LSTRICT" --json
python3 - "$T/allowjson.check" <<'PY' || fail "--json (allow): bad document: $(cat "$T/allowjson.check")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["verdict"] == "FAIL" and d["alert"] == "bad_certificate", d
f = d["findings"]
assert [x["id"] for x in f] == ["peer-refused-names"] and f[0]["severity"] == "error", f
assert "DNS:node1.test" in f[0]["message"] and f[0]["file"].endswith("node1.crt"), f
assert d["errors"] == 1, d
PY
# ... and a peer that accepts us has no finding
grep -q 'peer-refused' "$T/ferry.check" && fail "a peer that accepted us has a peer-refused finding"
pass "a ferry whose allow lacks our names: FAIL with peer-refused-names, our names and the fix"

# no outbound listener: a clear error, exit 1
rc=0
ferry_cmd check --peer "127.0.0.1:$LIN" -c "$P/noout.yaml" >"$T/noout.check" 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "no outbound listener: exit $rc: $(cat "$T/noout.check")"
grep -q "has no outbound listener" "$T/noout.check" || fail "no outbound listener: $(cat "$T/noout.check")"
rc=0
ferry_cmd check --peer "127.0.0.1:$LIN" -c "$P/out.yaml" --listener in-too >"$T/inb.check" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "is inbound" "$T/inb.check" || fail "--listener inbound: exit $rc: $(cat "$T/inb.check")"
pass "no outbound listener / inbound --listener: exit 1 with the reason"

ferry_stop in
