#!/usr/bin/env bash
# Goal: `ferry certs inspect` on every input format operators hand it (PEM, DER, PKCS#12, a
# chain in the wrong order, a bundle with Windows line endings, an empty file, a file that is
# not a certificate), each asserting the finding id, the file and the exit code; and
# interoperability with the openssl CLI: certificates made the way operators make them
# (`openssl req -x509` CA, CSRs signed with `openssl x509 -req` and `openssl ca`, with and
# without an extensions file) are inspected correctly, and ferry's own `certs issue` output
# passes `openssl verify -purpose sslserver` and `-purpose sslclient`.
# valgrind: yes
# timeout: 120
source "$(dirname "$0")/lib.sh"

pki_make "$T/pki"
P=$T/pki
W=$T/work
mkdir -p "$W"

# inspect_json EXPECTED_RC ARGS...: run `ferry certs inspect ARGS... --json` into $W/out.json
inspect_json() {
    local want=$1 rc=0
    shift
    ferry_cmd certs inspect "$@" --json >"$W/out.json" 2>"$W/err.txt" || rc=$?
    [ "$rc" = "$want" ] || { cat "$W/out.json" "$W/err.txt" >&2; fail "inspect $*: exit $rc, expected $want"; }
}

# has ID SEVERITY FILE: the last JSON output holds that finding
has() {
    python3 - "$W/out.json" "$1" "$2" "$3" <<'PY' || { cat "$W/out.json" >&2; fail "no finding $1 ($2) for $3"; }
import json, sys
d = json.load(open(sys.argv[1]))
want = (sys.argv[2], sys.argv[3], sys.argv[4])
got = [(f["id"], f["severity"], f["file"]) for f in d["findings"]]
assert want in got, got
assert d["errors"] == sum(1 for f in d["findings"] if f["severity"] == "error")
for f in d["findings"]:
    assert f["message"] and f["fix"], f
PY
}

# jq_py EXPR: evaluate a python expression over the JSON as d, must be true
jq_py() {
    python3 -c "import json,sys; d=json.load(open('$W/out.json')); sys.exit(0 if ($1) else 1)" ||
        { cat "$W/out.json" >&2; fail "assertion failed: $1"; }
}

# ---- PEM: a correct set ----
inspect_json 0 "$P/node1.crt" --key "$P/node1.key" --ca "$P/ca.crt" --name node1.test
jq_py 'd["errors"] == 0 and d["key_matches"] is True and d["chain_verifies"] is True'
jq_py 'len(d["certificates"]) == 1 and "DNS:node1.test" in d["certificates"][0]["san"]'
jq_py '"serverAuth" in d["certificates"][0]["eku"] and "clientAuth" in d["certificates"][0]["eku"]'
jq_py 'd["certificates"][0]["key"] == "EC P-256" and not d["certificates"][0]["ca"]'
jq_py 'len(d["certificates"][0]["sha256"]) == 95 and d["certificates"][0]["days_left"] > 30'
want=$(openssl x509 -in "$P/node1.crt" -noout -fingerprint -sha256 | sed 's/.*=//')
jq_py "d['certificates'][0]['sha256'] == '$want'"
# --json dates are RFC 3339 UTC, the instants openssl reads
nb=$(date -u -d "$(openssl x509 -in "$P/node1.crt" -noout -startdate | cut -d= -f2)" +%Y-%m-%dT%H:%M:%SZ)
na=$(date -u -d "$(openssl x509 -in "$P/node1.crt" -noout -enddate | cut -d= -f2)" +%Y-%m-%dT%H:%M:%SZ)
jq_py "d['certificates'][0]['not_before'] == '$nb' and d['certificates'][0]['not_after'] == '$na'"
out=$(ferry_cmd certs inspect "$P/node1.crt" --key "$P/node1.key" --ca "$P/ca.crt") ||
    fail "text inspect of a good set failed: $out"
for w in 'issuer:' 'serial:' 'SAN:' 'EKU:' 'key:' 'signature:' 'valid:' 'SHA-256:' 'CA:' \
    'matches the certificate' 'verify:  ok' '0 errors'; do
    grep -q -- "$w" <<<"$out" || fail "text inspect lacks '$w': $out"
done
grep -q $'\033' <<<"$out" && fail "colour codes when stdout is not a terminal"
pass "PEM set: details, key match, chain, fingerprint as openssl computes it; --json dates $nb .. $na"

# ---- URI SANs (a SPIFFE ID, no DNS SAN): shown in text and JSON ----
inspect_json 1 "$P/spiffe.crt" --ca "$P/ca.crt"
jq_py 'd["certificates"][0]["san"] == "URI:spiffe://site-b.example.org/ns/db/replicator"'
has san-missing error "$P/spiffe.crt"
out=$(ferry_cmd certs inspect "$P/spiffe.crt") || true
grep -qE 'SAN: +URI:spiffe://site-b.example.org/ns/db/replicator' <<<"$out" ||
    fail "text inspect does not show the URI SAN: $out"
pass "URI SAN shown in text and JSON (a URI-only leaf is still san-missing for a node certificate)"

# ---- DER where PEM is expected ----
openssl x509 -in "$P/node1.crt" -outform DER -out "$W/node1.der"
inspect_json 1 "$W/node1.der"
has not-pem-der error "$W/node1.der"
grep -q 'openssl x509 -inform DER' "$W/out.json" || fail "the DER fix does not show the conversion"
pass "DER certificate: not-pem-der"

# ---- PKCS#12 ----
openssl pkcs12 -export -in "$P/node1.crt" -inkey "$P/node1.key" -passout pass:secret \
    -out "$W/node1.p12" 2>/dev/null
chmod 600 "$W/node1.p12"
inspect_json 1 "$W/node1.p12"
has not-pem-pkcs12 error "$W/node1.p12"
inspect_json 1 "$P/node1.crt" --key "$W/node1.p12"
has not-pem-pkcs12 error "$W/node1.p12"
pass "PKCS#12 as certificate and as key: not-pem-pkcs12"

# ---- chain file in the wrong order ----
cat "$P/int.crt" "$P/int-good.crt" >"$W/wrong-order.crt"
inspect_json 1 "$W/wrong-order.crt" --key "$P/int-good.key" --ca "$P/ca.crt"
has chain-order error "$W/wrong-order.crt"
jq_py 'd["order_ok"] is False'
pass "chain in the wrong order: chain-order"

# ---- missing intermediate: the exact missing link ----
inspect_json 1 "$P/int-good.crt" --ca "$P/ca.crt"
has chain-incomplete error "$P/int-good.crt"
jq_py 'any("neither in int-good.crt nor in ca.crt" in f["message"] for f in d["findings"])'
inspect_json 1 "$P/int-good.crt" --ca "$P/int.crt"
has ca-missing-root error "$P/int.crt"
pass "missing intermediate / missing root named"

# ---- CA bundle with Windows line endings (and a chain file with them) ----
sed 's/$/\r/' "$P/ca-int.crt" >"$W/ca-crlf.crt"
sed 's/$/\r/' "$P/int-good-chain.crt" >"$W/chain-crlf.crt"
grep -q $'\r' "$W/ca-crlf.crt" || fail "sed did not add CRs"
inspect_json 0 "$W/chain-crlf.crt" --key "$P/int-good.key" --ca "$W/ca-crlf.crt"
jq_py 'd["chain_verifies"] is True and d["key_matches"] is True and d["errors"] == 0'
pass "CRLF bundle and chain accepted"

# ---- empty, and not a certificate ----
: >"$W/empty.crt"
inspect_json 1 "$W/empty.crt"
has file-empty error "$W/empty.crt"
echo "this is not a certificate" >"$W/junk.crt"
inspect_json 1 "$W/junk.crt"
has not-a-certificate error "$W/junk.crt"
inspect_json 1 "$P/node1.key"
has not-a-certificate error "$P/node1.key"
inspect_json 1 "$W/no-such.crt"
has file-missing error "$W/no-such.crt"
pass "empty file, junk, key as certificate, missing file"

# ---- key problems ----
inspect_json 1 "$P/mismatch.crt" --key "$P/mismatch.key"
has key-mismatch error "$P/mismatch.key"
inspect_json 1 "$P/node1.crt" --key "$P/node1-enc.key"
has key-encrypted-no-passphrase error "$P/node1-enc.key"
cp "$P/node1.key" "$W/open.key"
chmod 644 "$W/open.key"
inspect_json 1 "$P/node1.crt" --key "$W/open.key"
has key-permissions error "$W/open.key"
pass "key mismatch, encrypted key, key readable by others"

# ---- usage errors ----
rc=0
ferry_cmd certs inspect >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "inspect without CERT: exit $rc, expected 2"
rc=0
ferry_cmd certs inspect "$P/node1.crt" --bogus >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "inspect --bogus: exit $rc, expected 2"
rc=0
ferry_cmd certs inspect "$P/node1.crt" --key >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "inspect --key without value: exit $rc, expected 2"
pass "usage errors exit 2"

# ---- interoperability: the openssl CLI as operators use it ----
O=$W/ossl
mkdir -p "$O/newcerts"
cd "$O"
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -sha256 \
    -subj "/CN=Operator Private CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
cat >ext.cnf <<'CNF'
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:db1.example.org, DNS:localhost, IP:127.0.0.1
CNF
for n in signed plain viaca; do
    openssl req -new -newkey rsa:2048 -nodes -keyout $n.key -out $n.csr \
        -subj "/CN=db1.example.org" 2>/dev/null
done
chmod 600 ./*.key
# 1. openssl x509 -req with an extensions file: correct
openssl x509 -req -in signed.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 -sha256 \
    -extfile ext.cnf -out signed.crt 2>/dev/null
inspect_json 0 "$O/signed.crt" --key "$O/signed.key" --ca "$O/ca.crt" --name db1.example.org
jq_py 'd["errors"] == 0 and d["chain_verifies"] is True and d["certificates"][0]["key"] == "RSA 2048"'
# 2. without an extensions file: no EKU, no SAN
openssl x509 -req -in plain.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 -sha256 \
    -out plain.crt 2>/dev/null
inspect_json 1 "$O/plain.crt" --key "$O/plain.key" --ca "$O/ca.crt"
has eku-missing error "$O/plain.crt"
has san-missing error "$O/plain.crt"
# 3. openssl ca with a config and the same extensions
cat >ca.cnf <<CNF
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
copy_extensions = none
x509_extensions = node_ext
[ anything ]
commonName = supplied
[ node_ext ]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:db1.example.org, IP:127.0.0.1
CNF
: >index.txt
echo 1000 >serial
openssl ca -batch -config ca.cnf -in viaca.csr -out viaca.crt -notext 2>/dev/null
inspect_json 0 "$O/viaca.crt" --key "$O/viaca.key" --ca "$O/ca.crt" --name 127.0.0.1
jq_py 'd["errors"] == 0 and d["key_matches"] is True'
cd - >/dev/null
pass "openssl req -x509 CA, x509 -req with/without extfile, openssl ca: inspected correctly"

# ---- ferry's own output verifies with openssl for both purposes ----
ferry_cmd certs init-ca --dir "$W/fca" --name "Interop CA" >/dev/null
ferry_cmd certs issue --ca "$W/fca" --name node7.test --ip 127.0.0.1 --out "$W/fout" >/dev/null
for purpose in sslserver sslclient; do
    openssl verify -purpose $purpose -CAfile "$W/fout/ca.crt" "$W/fout/node7.test.crt" >/dev/null ||
        fail "openssl verify -purpose $purpose refuses ferry's certificate"
done
inspect_json 0 "$W/fout/node7.test.crt" --key "$W/fout/node7.test.key" --ca "$W/fout/ca.crt" --name node7.test
pass "ferry certs issue output: openssl verify sslserver + sslclient, inspect clean"
