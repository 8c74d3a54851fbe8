#!/usr/bin/env bash
# Goal (issue 8 item 2): Debian's testssl.sh (3.0) finds nothing rated MEDIUM or worse on an
# inbound listener, apart from what a private CA implies by design.
# testssl 3.0 cannot present a client certificate: against `client_cert: required` it scans
# protocols, ciphers, server defaults and the TLS-level vulnerabilities, but skips every HTTP
# check ("Couldn't determine service").  So a second inbound listener with the same TLS
# settings and `client_cert: none` is scanned too; there the HTTP checks run as well.
# Both scans are full (no --fast; 60-80s each on an idle machine, ~180s on a loaded 2-core
# one), run side by side under nice, each bounded by `timeout 420`, with --severity MEDIUM
# --jsonfile: every JSON entry is a finding to fail on unless it is in ALLOWED below.  The
# screen output is also checked for the properties issue 8 names: no TLS < 1.2, a server
# cipher order, client-initiated renegotiation refused, no TLS compression (CRIME) and no HTTP
# compression (BREACH).
# timeout: 540
source "$(dirname "$0")/lib.sh"

TESTSSL=$(command -v testssl || command -v testssl.sh || true)
[ -n "$TESTSSL" ] || fail "testssl.sh is required (Debian package testssl.sh; deploy/install-deps.sh --test)"

# Findings allowed at MEDIUM or worse, as "id<TAB>ERE the finding must match<TAB>reason".
# Anything else, or one of these ids with another finding, fails the test.
ALLOWED=$(cat <<'EOF'
cert_chain_of_trust	self signed CA in chain|chain incomplete	the peers' CA is a private root, not in a public trust store (by design); ferry does not send it (a peer must already trust it), so testssl.sh, looking in public stores, finds the chain incomplete
cert_trust	.	trust is judged against public roots; ferry's CA is private (by design)
cert_revocation	Neither CRL nor OCSP URI provided	a private CA publishes no CRL/OCSP URI; ferry takes revocation from tls.crl
cert_crlDistributionPoints	.	no CRL URI in a private-CA leaf; revocation comes from tls.crl
cert_ocspURL	.	no OCSP responder for a private CA
OCSP_stapling	.	no OCSP responder for a private CA, so nothing to staple
DNS_CAArecord	.	CAA records govern public CAs issuing for public names; not applicable
cert_validityPeriod	.	short-lived test certificates are fine for a private CA
cert_expirationStatus	expires < 	short-lived test certificates are fine for a private CA
security_headers	.	HTTP response headers (CSP, X-Frame-Options...) are the backend's: ferry relays them unchanged (client_cert: none listener only)
HSTS	.	HSTS is the backend's response header, relayed unchanged (client_cert: none listener only)
EOF
)

pki_make "$T/pki"
P=$T/pki
PB=$(free_port)
PREQ=$(free_port)
PNONE=$(free_port)
http_backend "$PB" backend

cat >"$T/testssl.yaml" <<YAML
tls: {cert: $P/node1.crt, key: $P/node1.key, ca: $P/ca.crt}
limits: {handshake_timeout: 10s, idle_timeout: 30s}
listeners:
  - {name: in-mtls, mode: inbound, listen: "127.0.0.1:$PREQ", backend: "127.0.0.1:$PB", client_cert: required}
  - {name: in-open, mode: inbound, listen: "127.0.0.1:$PNONE", backend: "127.0.0.1:$PB", client_cert: none}
YAML
ferry_start scan "$T/testssl.yaml"

scan() { # scan NAME PORT: testssl into $T/NAME.{json,txt}; status of testssl
    local t0=$SECONDS rc=0
    timeout -k 5 420 nice -n 10 "$TESTSSL" --quiet --color 0 --warnings off --severity MEDIUM \
        --jsonfile "$T/$1.json" "127.0.0.1:$2" >"$T/$1.txt" 2>&1 || rc=$?
    echo "$1: testssl exit $rc after $((SECONDS - t0))s" >"$T/$1.time"
    [ "$rc" != 124 ] && [ "$rc" != 137 ]
}
scan mtls "$PREQ" & s1=$!
scan open "$PNONE" & s2=$!
ok=1
wait "$s1" || ok=0
wait "$s2" || ok=0
cat "$T/mtls.time" "$T/open.time" >&2
[ "$ok" = 1 ] || fail "testssl.sh ran longer than 420s"
ferry_alive scan || fail "ferry died under the testssl.sh scans"

for n in mtls open; do
    [ -s "$T/$n.json" ] || fail "testssl.sh wrote no $n.json (see $n.txt)"
    grep -q 'Done ' "$T/$n.txt" || fail "testssl.sh scan $n did not finish (see $n.txt)"
    python3 - "$T/$n.json" "$n" "$ALLOWED" <<'PY' || fail "testssl.sh: findings rated MEDIUM or worse on $n (above)"
import json, re, sys
path, name, allowed = sys.argv[1], sys.argv[2], sys.argv[3]
rules = {}
for line in allowed.splitlines():
    fid, pat, why = line.split("\t")
    rules[fid] = (re.compile(pat), why)
bad = 0
for f in json.load(open(path)):
    sev, fid, text = f.get("severity", ""), f.get("id", ""), f.get("finding", "")
    if sev not in ("MEDIUM", "HIGH", "CRITICAL"):
        continue
    rule = rules.get(fid)
    if rule and rule[0].search(text):
        print(f"   allowed {name}: {fid} {sev} \"{text}\" -- {rule[1]}", file=sys.stderr)
        continue
    print(f"   FINDING {name}: {fid} {sev} \"{text}\"", file=sys.stderr)
    bad += 1
sys.exit(1 if bad else 0)
PY
    # The properties issue 8 names, from the screen output.
    for want in 'TLS 1 +not offered' 'TLS 1\.1 +not offered' 'SSLv3 +not offered' \
        'Has server cipher order\? +yes' \
        'CRIME, TLS.*not vulnerable' 'TLS 1\.3 +offered'; do
        grep -Eq -- "$want" "$T/$n.txt" || fail "testssl.sh $n: no line matching '$want' (see $n.txt)"
    done
done
# On the mTLS listener testssl cannot renegotiate without a client certificate ("client
# x509-based authentication prevents this from being tested"); 71-tls-edge.sh does it with one.
grep -Eq 'Secure Client-Initiated Renegotiation +not vulnerable' "$T/open.txt" ||
    fail "testssl.sh open: client-initiated renegotiation not reported 'not vulnerable' (see open.txt)"
grep -Eq 'Secure Client-Initiated Renegotiation +(not vulnerable|client x509-based authentication prevents)' \
    "$T/mtls.txt" || fail "testssl.sh mtls: client-initiated renegotiation line unexpected (see mtls.txt)"
grep -q "Couldn't determine service" "$T/mtls.txt" ||
    note "testssl.sh ran the HTTP checks on the client_cert: required listener too"
grep -Eq 'BREACH.*no HTTP compression' "$T/open.txt" ||
    fail "testssl.sh open: BREACH line does not say 'no HTTP compression' (see open.txt)"
pass "testssl.sh: no finding MEDIUM or worse beyond the private-CA ones, on client_cert required and none"

ferry_stop scan
pass "70-testssl"
