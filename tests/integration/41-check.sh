#!/usr/bin/env bash
# Goal: `ferry check` names the finding, the file and the exit code for each input format
# problem in a config (DER, PKCS#12, chain in the wrong order, empty file, not a certificate,
# key readable by others, an invalid config line) and accepts a CA bundle with Windows line
# endings; certificates made with the openssl CLI (private CA from `openssl req -x509`, CSR
# signed with `openssl ca` and an extensions file) pass `ferry check`, and `ferry run` serves
# with them: one curl request through an inbound listener with an openssl-made client cert.
# As root, `user: nobody` gives a warning file-unreadable-after-drop for each file nobody
# could not read after the privilege drop (a 0600 root key, a CA in a 0700 directory), and
# none once group-readable.
# valgrind: yes
# timeout: 120
source "$(dirname "$0")/lib.sh"

pki_make "$T/pki"
P=$T/pki
W=$T/work
mkdir -p "$W"
PIN=$(free_port)
PB=$(free_port)

# conf NAME "tls settings" [inbound|outbound]: write $W/NAME.yaml
conf() {
    local name=$1 tls=$2 mode=${3:-inbound}
    {
        echo "tls: {$tls}"
        echo "listeners:"
        if [ "$mode" = inbound ]; then
            echo "  - {name: in, mode: inbound, listen: \"127.0.0.1:$PIN\", backend: \"127.0.0.1:$PB\"}"
        else
            echo "  - {name: out, mode: outbound, listen: \"127.0.0.1:$PIN\", peer: \"node2.test:$PB\"}"
        fi
    } >"$W/$name.yaml"
}

# check_json NAME EXPECTED_RC: `ferry check -c $W/NAME.yaml --json` into $W/NAME.json
check_json() {
    local name=$1 want=$2 rc=0
    ferry_cmd check -c "$W/$name.yaml" --json >"$W/$name.json" 2>"$W/$name.err" || rc=$?
    [ "$rc" = "$want" ] || { cat "$W/$name.json" "$W/$name.err" >&2; fail "check $name: exit $rc, expected $want"; }
}

# has NAME ID SEVERITY FILE [LINE]
has() {
    python3 - "$W/$1.json" "$2" "$3" "$4" "${5:-}" <<'PY' || { cat "$W/$1.json" >&2; fail "$1: no finding $2 ($3) for $4"; }
import json, sys
d = json.load(open(sys.argv[1]))
hit = [f for f in d["findings"] if (f["id"], f["severity"], f["file"]) == tuple(sys.argv[2:5])]
assert hit, d["findings"]
if sys.argv[5]:
    assert hit[0]["line"] == int(sys.argv[5]), hit
assert d["errors"] == sum(1 for f in d["findings"] if f["severity"] == "error")
PY
}

# ---- proxy_protocol.from with a /0 block: a warning (anyone could claim any address) ----
{
    echo "tls: {cert: $P/node1.crt, key: $P/node1.key, ca: $P/ca.crt}"
    echo "listeners:"
    echo "  - {name: lb, mode: inbound, listen: \"127.0.0.1:$PIN\", backend: \"127.0.0.1:$PB\","
    echo "     proxy_protocol: {accept: true, from: [\"10.0.0.0/8\", \"0.0.0.0/0\"]}}"
} >"$W/ppany.yaml"
check_json ppany 0
has ppany proxy-protocol-from-any warning "$W/ppany.yaml" 3
sed -i 's#, "0.0.0.0/0"##' "$W/ppany.yaml"
grep -q '0.0.0.0/0' "$W/ppany.yaml" && fail "ppany.yaml still holds 0.0.0.0/0"
check_json ppany 0
python3 -c "import json; d=json.load(open('$W/ppany.json')); assert not d['findings'], d"
pass "proxy_protocol.from 0.0.0.0/0: warning proxy-protocol-from-any at the listener; 10.0.0.0/8 alone: none"

# ---- a good config, text and JSON agree ----
conf good "cert: $P/node1.crt, key: $P/node1.key, ca: $P/ca.crt"
check_json good 0
python3 -c "import json; d=json.load(open('$W/good.json')); assert d['errors']==0 and d['listeners']==1, d"
out=$(ferry_cmd check -c "$W/good.yaml") || fail "text check of good.yaml failed: $out"
grep -q '^ok: ' <<<"$out" || fail "no ok summary: $out"
pass "good config: exit 0, ok summary"

# ---- san-hostname: only with --hostname (how peers dial this node), never from gethostname ----
python3 -c "import json; d=json.load(open('$W/good.json')); assert not any(f['id']=='san-hostname' for f in d['findings']), d"
rc=0
ferry_cmd check -c "$W/good.yaml" --hostname db7.example.org --json >"$W/host.json" || rc=$?
[ "$rc" = 0 ] || fail "check --hostname: exit $rc, expected 0 (a warning)"
python3 - "$W/host.json" <<'PY' || { cat "$W/host.json" >&2; fail "check --hostname db7.example.org: no san-hostname warning"; }
import json, sys
d = json.load(open(sys.argv[1]))
assert [f["id"] for f in d["findings"]] == ["san-hostname"], d["findings"]
assert d["findings"][0]["severity"] == "warning" and "db7.example.org" in d["findings"][0]["message"]
PY
ferry_cmd check -c "$W/good.yaml" --hostname node1.test --json >"$W/host-ok.json" || fail "check --hostname node1.test failed"
python3 -c "import json; d=json.load(open('$W/host-ok.json')); assert d['findings']==[], d"
pass "san-hostname: none without --hostname, a warning for a name the certificate lacks"

# ---- DER certificate ----
openssl x509 -in "$P/node1.crt" -outform DER -out "$W/node1.der"
conf der "cert: $W/node1.der, key: $P/node1.key, ca: $P/ca.crt"
check_json der 1
has der not-pem-der error "$W/node1.der"
python3 -c "import json; d=json.load(open('$W/der.json')); assert not any(f['id']=='start-refused' for f in d['findings']), d"
pass "DER certificate: not-pem-der (and no redundant start-refused)"

# ---- PKCS#12 as the key ----
openssl pkcs12 -export -in "$P/node1.crt" -inkey "$P/node1.key" -passout pass:secret \
    -out "$W/node1.p12" 2>/dev/null
chmod 600 "$W/node1.p12"
conf p12 "cert: $P/node1.crt, key: $W/node1.p12, ca: $P/ca.crt"
check_json p12 1
has p12 not-pem-pkcs12 error "$W/node1.p12"
pass "PKCS#12 key: not-pem-pkcs12"

# ---- chain file in the wrong order ----
cat "$P/int.crt" "$P/int-good.crt" >"$W/wrong-order.crt"
conf order "cert: $W/wrong-order.crt, key: $P/int-good.key, ca: $P/ca.crt"
check_json order 1
has order chain-order error "$W/wrong-order.crt"
pass "wrong chain order: chain-order"

# ---- CA bundle with Windows line endings: accepted by check and by run ----
sed 's/$/\r/' "$P/ca.crt" >"$W/ca-crlf.crt"
conf crlf "cert: $P/node1.crt, key: $P/node1.key, ca: $W/ca-crlf.crt"
check_json crlf 0
pass "CRLF CA bundle accepted"

# ---- empty file, not a certificate, key readable by others ----
: >"$W/empty.crt"
conf empty "cert: $W/empty.crt, key: $P/node1.key, ca: $P/ca.crt"
check_json empty 1
has empty file-empty error "$W/empty.crt"
echo "not a certificate" >"$W/junk.crt"
conf junk "cert: $P/node1.crt, key: $P/node1.key, ca: $W/junk.crt"
check_json junk 1
has junk not-a-certificate error "$W/junk.crt"
cp "$P/node1.key" "$W/open.key"
chmod 644 "$W/open.key"
conf perms "cert: $P/node1.crt, key: $W/open.key, ca: $P/ca.crt"
check_json perms 1
has perms key-permissions error "$W/open.key"
pass "empty file, junk CA bundle, world-readable key"

# ---- role checks, missing file, invalid config line ----
conf srvonly "cert: $P/node1-server.crt, key: $P/node1-server.key, ca: $P/ca.crt" outbound
check_json srvonly 1
has srvonly eku-client-missing error "$P/node1-server.crt"
conf missing "cert: $P/node1.crt, key: $P/node1.key, ca: $W/no-such-ca.crt"
check_json missing 1
has missing file-missing error "$W/no-such-ca.crt"
printf 'tls: {cert: %s, key: %s, ca: %s}\nlisteners:\n  - {name: in, mode: sideways}\n' \
    "$P/node1.crt" "$P/node1.key" "$P/ca.crt" >"$W/invalid.yaml"
check_json invalid 1
has invalid config-invalid error "$W/invalid.yaml" 3
pass "outbound without clientAuth, missing CA file, invalid config line"

# ---- allow with client_cert: none: refused at its line (attack 7 F1: it was accepted, then
# ignored, so a listener the operator meant to limit let every client through) ----
printf 'tls: {cert: %s, key: %s, ca: %s}\nlisteners:\n  - {name: in, mode: inbound, listen: "127.0.0.1:%s", backend: "127.0.0.1:%s",\n     client_cert: none,\n     allow: [a.example]}\n' \
    "$P/node1.crt" "$P/node1.key" "$P/ca.crt" "$PIN" "$PB" >"$W/allow-none.yaml"
check_json allow-none 1
has allow-none config-invalid error "$W/allow-none.yaml" 5
grep -q 'with client_cert: none no certificate is asked for' "$W/allow-none.json" ||
    { cat "$W/allow-none.json" >&2; fail "allow-none: not the allow rule"; }
pass "allow with client_cert: none is a config error at its line"

# ---- user: NAME who cannot read, after the privilege drop, what a reload reads again ----
# (as root only: file modes, owners and groups against nobody's uid and groups; nothing is
# opened as nobody by ferry, runuser only confirms the premise)
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
    D=$W/drop
    mkdir -p "$D/locked"
    chmod 755 "$D"
    chmod 700 "$D/locked"
    cp "$P/node1.crt" "$D/node.crt" && chmod 644 "$D/node.crt"
    cp "$P/node1.key" "$D/node.key" && chmod 600 "$D/node.key"
    cp "$P/ca.crt" "$D/locked/ca.crt" && chmod 644 "$D/locked/ca.crt"
    if runuser -u nobody -- test -r "$D/node.crt"; then
        nobody_count() { # nobody_count NAME: the file-unreadable-after-drop findings of NAME
            python3 -c 'import json,sys; print(sum(1 for f in json.load(open(sys.argv[1]))["findings"] if f["id"] == "file-unreadable-after-drop" and f["severity"] == "warning"))' "$W/$1.json"
        }
        conf drop "cert: $D/node.crt, key: $D/node.key, ca: $D/locked/ca.crt"
        echo "user: nobody" >>"$W/drop.yaml"
        chmod 644 "$W/drop.yaml"
        check_json drop 0
        has drop file-unreadable-after-drop warning "$D/node.key"
        has drop file-unreadable-after-drop warning "$D/locked/ca.crt"
        grep -q 'mode 0600' "$W/drop.json" || fail "drop: the key's mode is not named"
        grep -q "directory $D/locked is mode 0700" "$W/drop.json" || fail "drop: the directory is not named"
        [ "$(nobody_count drop)" = 2 ] || fail "drop: expected 2 findings, got $(nobody_count drop)"
        # the group way: the key 0640 with nobody's group, the CA directory searchable
        chgrp "$(id -gn nobody)" "$D/node.key" && chmod 640 "$D/node.key"
        chmod 711 "$D/locked"
        runuser -u nobody -- test -r "$D/node.key" || fail "the premise: nobody cannot read the 0640 key"
        check_json drop 0
        [ "$(nobody_count drop)" = 0 ] || fail "drop: findings left after chgrp/chmod: $(cat "$W/drop.json")"
        # without user: no such finding
        conf drop2 "cert: $D/node.crt, key: $D/node.key, ca: $D/locked/ca.crt"
        chmod 600 "$D/node.key"
        check_json drop2 0
        [ "$(nobody_count drop2)" = 0 ] || fail "drop2: a finding without user:"
        pass "user: nobody: file-unreadable-after-drop for a 0600 root key and a 0700 directory, none once readable"
    else
        note "skipped user: nobody check: nobody cannot reach $D (a parent directory is closed)"
    fi
else
    note "skipped user: nobody check: needs root and a user nobody"
fi

# ---- usage errors ----
for args in "--bogus" "-c" "--listener x -c $W/good.yaml" "--peer"; do
    rc=0
    # shellcheck disable=SC2086
    ferry_cmd check $args >/dev/null 2>&1 || rc=$?
    [ "$rc" = 2 ] || fail "check $args: exit $rc, expected 2"
done
pass "usage errors exit 2"

# ---- certificates made with the openssl CLI: check passes, run serves ----
O=$W/ossl
mkdir -p "$O/newcerts"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$O/ca.key" \
    -out "$O/ca.crt" -days 3650 -subj "/CN=Operator CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
cat >"$O/ca.cnf" <<CNF
[ ca ]
default_ca = local
[ local ]
dir = $O
database = $O/index.txt
new_certs_dir = $O/newcerts
certificate = $O/ca.crt
private_key = $O/ca.key
serial = $O/serial
default_days = 365
default_md = sha256
policy = anything
x509_extensions = node_ext
[ anything ]
commonName = supplied
[ node_ext ]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:db1.example.org, DNS:client.example.org, IP:127.0.0.1
CNF
: >"$O/index.txt"
echo 1000 >"$O/serial"
for n in server client; do
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$O/$n.key" \
        -out "$O/$n.csr" -subj "/CN=$n.example.org" 2>/dev/null
    chmod 600 "$O/$n.key"
    openssl ca -batch -config "$O/ca.cnf" -in "$O/$n.csr" -out "$O/$n.crt" -notext 2>/dev/null
done
conf ossl "cert: $O/server.crt, key: $O/server.key, ca: $O/ca.crt"
check_json ossl 0
http_backend "$PB"
ferry_start ossl "$W/ossl.yaml"
code=$(curl_code --cacert "$O/ca.crt" --cert "$O/client.crt" --key "$O/client.key" \
    --resolve "db1.example.org:$PIN:127.0.0.1" "https://db1.example.org:$PIN/interop")
[ "$code" = 200 ] || fail "curl through ferry with openssl-made certificates: HTTP $code"
grep -q '/interop' "$T/curl.body" || fail "backend did not see the request: $(cat "$T/curl.body")"
ferry_stop ossl
pass "openssl ca certificates: ferry check ok, ferry run serves a curl request"
