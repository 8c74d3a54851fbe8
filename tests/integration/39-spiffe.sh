#!/usr/bin/env bash
# Goal: issue 13 part 6, peer identities from SPIFFE IDs (URI SANs), with curl against a
# backend that checks CouchDB proxy authentication as CouchDB does.
# - `allow: ["spiffe://site-b.example.org/ns/db/*", ...]` accepts a leaf that has only a URI
#   SAN (no DNS SAN, no CN: as csi-driver-spiffe mints them; made by tests/support/pki.sh) and
#   one made by `ferry certs issue --uri`; refuses a URI one level deeper and one in another
#   namespace with a warn line naming the peer's SANs; a ferry outbound listener presenting the
#   URI-only leaf is accepted too (and `ferry check` does not call that leaf san-missing).
# - The URI that matched is the identity: peer= of the access log, X-Auth-CouchDB-UserName
#   with its HMAC token (the backend recomputes it), the 403 reason of an access rule.
# - `access[].peers` with a SPIFFE pattern: the first rule that matches decides, and names the
#   identity (a certificate with a DNS and a URI SAN is known by the one that matched).
# - A URI SAN that matched nothing is no identity (peer=-, no proxy-auth header); one over
#   255 bytes is never matched and is shown cut with "[...]".
# - `ferry check` refuses a bad pattern at file:line:col with the SPIFFE rule it breaks;
#   `ferry certs issue --uri` refuses a '*', a trust domain alone and an empty label.
# timeout: 60
source "$(dirname "$0")/lib.sh"

pki_make "$T/pki"
P=$T/pki
FCA=$T/fca
PA=$(free_port)
PALLOW=$(free_port)
PACC=$(free_port)
POPEN=$(free_port)
POUT=$(free_port)
TD=spiffe://site-b.example.org

# ---- certificates from `ferry certs issue --uri` (a second CA, trusted alongside pki.sh's) ----
ferry_cmd certs init-ca --dir "$FCA" --name "Site B Mesh CA" >/dev/null ||
    fail "certs init-ca"
issue() { # issue NAME URI: a leaf NAME (DNS SAN) with the URI SAN
    ferry_cmd certs issue --ca "$FCA" --name "$1" --uri "$2" --out "$FCA" >"$T/issue-$1.out" 2>&1 ||
        fail "certs issue --name $1 --uri $2: $(cat "$T/issue-$1.out")"
}
issue n2.site-b.example.org "$TD/ns/ops/admin"
issue web.site-b.example.org "$TD/ns/web/frontend"
issue deep.site-b.example.org "$TD/ns/db/a/b"
grep -qF "SAN DNS:n2.site-b.example.org,URI:$TD/ns/ops/admin;" "$T/issue-n2.site-b.example.org.out" ||
    fail "certs issue --uri: summary $(cat "$T/issue-n2.site-b.example.org.out")"
san=$(openssl x509 -in "$FCA/n2.site-b.example.org.crt" -noout -ext subjectAltName | tail -n1)
[ "$(echo $san)" = "DNS:n2.site-b.example.org, URI:$TD/ns/ops/admin" ] ||
    fail "certs issue --uri: openssl reads the SAN as: $san"
rc=0
ferry_cmd certs issue --ca "$FCA" --name x.example.org --uri "$TD/ns/db/*" --out "$T/nope" \
    >/dev/null 2>"$T/issue-star.err" || rc=$?
[ "$rc" = 1 ] && grep -qF "invalid URI \"$TD/ns/db/*\": expected a SPIFFE ID" "$T/issue-star.err" &&
    [ ! -e "$T/nope" ] || fail "certs issue --uri with '*': exit $rc, $(cat "$T/issue-star.err")"
for u in "spiffe://site-b.example.org" "spiffe://site-b..example.org/x"; do
    rc=0
    ferry_cmd certs issue --ca "$FCA" --name x.example.org --uri "$u" --out "$T/nope" \
        >/dev/null 2>"$T/issue-td.err" || rc=$?
    [ "$rc" = 1 ] && grep -qF "invalid URI \"$u\": expected a SPIFFE ID" "$T/issue-td.err" &&
        [ ! -e "$T/nope" ] || fail "certs issue --uri $u: exit $rc, $(cat "$T/issue-td.err")"
done
pass "certs issue --uri: URI SAN as openssl reads it ($(echo $san)); '*', a trust domain alone, an empty label refused, nothing written"
cat "$P/ca.crt" "$FCA/ca.crt" >"$P/both-ca.crt"

# ---- ferry check: a pattern that breaks a SPIFFE rule, at its line and column ----
cat >"$T/bad.yaml" <<YAML
tls: {cert: $P/node1.crt, key: $P/node1.key, ca: $P/both-ca.crt}
listeners:
  - name: in
    mode: inbound
    listen: "127.0.0.1:$PALLOW"
    backend: "127.0.0.1:$PA"
    allow: ["node2.example.org", "spiffe://Site-B.example.org/ns/db/*"]
YAML
rc=0
ferry_cmd check -c "$T/bad.yaml" >"$T/check-bad.out" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -qF "$T/bad.yaml:7:34" "$T/check-bad.out" &&
    grep -qF 'listeners[0].allow[1]: expected a SPIFFE ID' "$T/check-bad.out" &&
    grep -qF 'the trust domain must be lower case' "$T/check-bad.out" ||
    fail "check with a bad SPIFFE pattern: exit $rc, $(cat "$T/check-bad.out")"
pass "check: $(grep -F 'trust domain' "$T/check-bad.out" | head -n1)"

# ---- the ferry under test ----
printf 'the_secret\n' >"$P/couch.secret"
chmod 600 "$P/couch.secret"
bg_run couch python3 "$SUPPORT/couch_proxy_auth.py" --port "$PA" --secret-file "$P/couch.secret" --hash sha256
wait_port "$PA"
cat >"$P/spiffe.yaml" <<YAML
tls: {cert: node1.crt, key: node1.key, ca: both-ca.crt}
log: {level: info}
listeners:
  - name: allow
    mode: inbound
    listen: "127.0.0.1:$PALLOW"
    backend: "127.0.0.1:$PA"
    allow: ["node9.example.org", "$TD/ns/db/*", "$TD/ns/ops/admin"]
    couchdb_proxy_auth: {secret_file: couch.secret, hash: sha256, roles: ["replicator"]}
  - name: access
    mode: inbound
    listen: "127.0.0.1:$PACC"
    backend: "127.0.0.1:$PA"
    couchdb_proxy_auth: {secret_file: couch.secret, hash: sha256, roles: ["replicator"]}
    access:
      - peers: ["$TD/ns/db/*"]
        allow: read
        databases: ["patients"]
      - peers: ["n2.site-b.example.org"]
        allow: all
  - name: open
    mode: inbound
    listen: "127.0.0.1:$POPEN"
    backend: "127.0.0.1:$PA"
    couchdb_proxy_auth: {secret_file: couch.secret, hash: sha256, roles: ["replicator"]}
  - name: mesh-out
    mode: outbound
    listen: "127.0.0.1:$POUT"
    peer: "node1.test:$PALLOW"
    connect: "127.0.0.1:$PALLOW"
    tls: {cert: spiffe.crt, key: spiffe.key}
YAML
# A URI-only client certificate is fine for an outbound listener (no san-missing)
rc=0
ferry_cmd check -c "$P/spiffe.yaml" >"$T/check-good.out" 2>&1 || rc=$?
[ "$rc" = 0 ] && ! grep -q san-missing "$T/check-good.out" ||
    fail "check of the SPIFFE config: exit $rc, $(cat "$T/check-good.out")"
ferry_start spiffe "$P/spiffe.yaml"

# get CRT KEY PORT METHOD PATH: the HTTP code; body in $T/curl.body
get() {
    curl_code --cacert "$P/root.crt" --cert "$1" --key "$2" --resolve "node1.test:$3:127.0.0.1" \
        -X "$4" "https://node1.test:$3$5"
}
user_of() { jq -r .userCtx.name "$T/curl.body" 2>/dev/null; }

# ---- no allow, no access: a URI SAN that matched nothing is no identity ----
code=$(get "$P/spiffe.crt" "$P/spiffe.key" "$POPEN" GET /open1)
if [ "$code" = 401 ] && grep -qF 'no X-Auth-CouchDB-UserName' "$T/curl.body" &&
    expect_log spiffe 'event=request listener=open .*peer=- .*path=/open1 status=401 .*subject="O=Ferry Test"' 5; then
    pass "no allow/access: the URI-only leaf is peer=-, no proxy-auth headers (CouchDB: 401)"
else
    bad open-uri "expected 401 without headers and peer=-, got $code $(cat "$T/curl.body" 2>/dev/null)"
fi

# ---- allow: a URI-only leaf (pki.sh) and a DNS+URI leaf (ferry certs issue --uri) ----
code=$(get "$P/spiffe.crt" "$P/spiffe.key" "$PALLOW" GET /patients/doc1)
if [ "$code" = 200 ] && [ "$(user_of)" = "$TD/ns/db/replicator" ]; then
    pass "allow $TD/ns/db/*: URI-only leaf accepted; CouchDB user $(user_of) (token verified)"
else
    bad uri-only "expected 200 as $TD/ns/db/replicator, got $code $(cat "$T/curl.body" 2>/dev/null)"
fi
expect_log spiffe "event=request listener=allow .*peer=$TD/ns/db/replicator .*path=/patients/doc1 status=200" 5
code=$(get "$FCA/n2.site-b.example.org.crt" "$FCA/n2.site-b.example.org.key" "$PALLOW" GET /x)
if [ "$code" = 200 ] && [ "$(user_of)" = "$TD/ns/ops/admin" ]; then
    pass "allow: the DNS+URI leaf is known by the URI that matched allow, not its DNS SAN"
else
    bad dns-uri "expected 200 as $TD/ns/ops/admin, got $code $(cat "$T/curl.body" 2>/dev/null)"
fi
expect_log spiffe "event=request listener=allow .*peer=$TD/ns/ops/admin .*status=200" 5

# ferry to ferry: an outbound listener presenting the URI-only leaf
code=$(curl_code "http://127.0.0.1:$POUT/patients/doc2")
[ "$code" = 200 ] && [ "$(user_of)" = "$TD/ns/db/replicator" ] ||
    bad mesh-out "outbound with the URI-only leaf: expected 200 as $TD/ns/db/replicator, got $code $(cat "$T/curl.body" 2>/dev/null)"
pass "ferry outbound presenting a URI-only leaf: accepted by the inbound allow, CouchDB user $(user_of)"

# ---- allow refuses: one path level too deep, another namespace ----
for who in deep web; do
    code=$(get "$FCA/$who.site-b.example.org.crt" "$FCA/$who.site-b.example.org.key" "$PALLOW" GET /x)
    case "$code" in
    000 | 403) ;; # TLS 1.3: the refusal may come after curl sent its request
    *) bad "refuse-$who" "expected the handshake refused, got HTTP $code" ;;
    esac
done
expect_log spiffe "warn .*listener=allow .*URI:$TD/ns/db/a/b.*not in allow list" 5
# A URI SAN over 255 bytes is never matched, though $TD/ns/db/* would cover it, and is shown
# cut to 250 bytes + "[...]" in the refusal's sans=.
long="$TD/ns/db/$(printf 'a%.0s' $(seq 1 266))"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/long.key" \
    -subj "/O=Ferry Test/OU=long" -out "$T/long.csr" 2>/dev/null &&
    openssl x509 -req -in "$T/long.csr" -CA "$P/root.crt" -CAkey "$P/root.key" -days 2 \
        -extfile <(printf 'extendedKeyUsage=clientAuth\nsubjectAltName=URI:%s\n' "$long") \
        -out "$T/long.crt" 2>/dev/null || fail "openssl: the long-URI leaf"
code=$(get "$T/long.crt" "$T/long.key" "$PALLOW" GET /x)
case "$code" in
000 | 403) ;;
*) bad refuse-long "a ${#long}-byte URI SAN: expected the handshake refused, got HTTP $code" ;;
esac
expect_log spiffe "warn .*listener=allow .*subject=\"OU=long,O=Ferry Test\" sans=URI:${long:0:250}\\[\\.\\.\\.\\] reason=name_not_allowed" 5
pass "allow refuses a ${#long}-byte URI SAN under $TD/ns/db/*, shown cut to 250 bytes + [...]"
expect_log spiffe "warn .*listener=allow .*URI:$TD/ns/web/frontend.*not in allow list" 5
pass "allow refuses $TD/ns/db/a/b and $TD/ns/web/frontend: $(grep -m1 -F "URI:$TD/ns/db/a/b" "$T/spiffe.log")"

# ---- access rules: peers with a SPIFFE pattern; the first rule that matches names the peer ----
code=$(get "$P/spiffe.crt" "$P/spiffe.key" "$PACC" GET /patients/doc1)
[ "$code" = 200 ] && [ "$(user_of)" = "$TD/ns/db/replicator" ] ||
    bad access-read "expected 200 as $TD/ns/db/replicator, got $code $(cat "$T/curl.body" 2>/dev/null)"
code=$(get "$P/spiffe.crt" "$P/spiffe.key" "$PACC" PUT /patients/doc1)
body=$(cat "$T/curl.body")
[ "$code" = 403 ] && [ "$body" = "{\"error\":\"forbidden\",\"reason\":\"peer $TD/ns/db/replicator may not PUT /patients/doc1\"}" ] ||
    bad access-put "expected 403 naming the URI, got $code $body"
expect_log spiffe "warn event=access_denied listener=access .*peer=$TD/ns/db/replicator method=PUT path=/patients/doc1 rule=\"rule 1 " 5
code=$(get "$FCA/n2.site-b.example.org.crt" "$FCA/n2.site-b.example.org.key" "$PACC" GET /_all_dbs)
[ "$code" = 200 ] && [ "$(user_of)" = n2.site-b.example.org ] ||
    bad access-dns "expected 200 as n2.site-b.example.org (rule 2), got $code $(cat "$T/curl.body" 2>/dev/null)"
code=$(get "$FCA/web.site-b.example.org.crt" "$FCA/web.site-b.example.org.key" "$PACC" GET /patients/doc1)
[ "$code" = 403 ] || bad access-none "a peer no rule names: expected 403, got $code"
expect_log spiffe "event=request listener=access .*peer=$TD/ns/db/replicator .*method=PUT path=/patients/doc1 status=403" 5
pass "access: peers $TD/ns/db/* may read patients, not PUT (403 names the URI); n2 (DNS+URI) is known by the rule 2 name; an unnamed peer gets 403"

ferry_alive spiffe || fail "ferry died"
ferry_stop spiffe
bad_report "SPIFFE identities"
