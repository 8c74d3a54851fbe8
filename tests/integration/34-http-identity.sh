#!/usr/bin/env bash
# Goal: CONTRACT §6 and issue 5 on inbound protocol: http.  Identity headers the client sends
# (X-Forwarded-*, Forwarded, X-Forwarded-Client-Cert, Client-Cert, Client-Cert-Chain,
# X-Auth-CouchDB-*, in any letter case) never reach the backend; ferry adds X-Forwarded-For,
# X-Forwarded-Proto: https and X-Forwarded-Client-Cert (Hash/Subject/DNS, checked against
# openssl), or RFC 9440 Client-Cert (+ Client-Cert-Chain under the intermediate), or none.
# couchdb_proxy_auth (sha256 and sha1, roles) is accepted by a backend that checks the headers
# exactly as CouchDB's proxy_authentication_handler does, which itself refuses a forged or a
# missing token; ferry refuses to start with the secret file missing, empty or mode 0644.
# A DNS SAN that is no host name (DNS:spiffe://..., DNS:a".example.org) is no identity: peer=-,
# no X-Auth-CouchDB-* header at all, and `allow: ["*.example.org"]` does not cover it.
# HTTP/1.1 behaviour: keep-alive (curl, several URLs), a pipelined burst of 5 requests in one
# write answered in order, Expect: 100-continue, HTTP/1.0, a chunked upload byte-exact, HEAD
# then GET on one connection; one access-log line per request; outbound host_header peer|keep.
# valgrind: yes
# timeout: 180
source "$(dirname "$0")/lib.sh"

pki_make "$T/pki"
P=$T/pki
RAW=(python3 "$SUPPORT/http_raw.py" --cert "$P/good.crt" --key "$P/good.key" --ca "$P/root.crt"
    --sni node1.test)
for v in PB PA256 PA1 P_xfcc P_rfc P_none P_auth256 P_auth1 P_outpeer P_outkeep P_authecho P_wild; do
    declare "$v=$(free_port)"
done
bg_run backend python3 "$SUPPORT/http_backend.py" --port "$PB" --name backend --raw-log "$T/backend.raw"
wait_port "$PB"
printf 'the_secret\n' >"$P/couch.secret"
chmod 600 "$P/couch.secret"
bg_run couch256 python3 "$SUPPORT/couch_proxy_auth.py" --port "$PA256" --secret-file "$P/couch.secret" --hash sha256
bg_run couch1 python3 "$SUPPORT/couch_proxy_auth.py" --port "$PA1" --secret-file "$P/couch.secret" --hash sha1
wait_port "$PA256"
wait_port "$PA1"

jf() { # jf JSON EXPR
    python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"
}

# ---- the proxy-auth backend itself behaves like CouchDB (proxy_use_secret = true) ----
A256=http://127.0.0.1:$PA256
tok_foo=3f0786e96b20b0102b77f1a49c041be6977cfb3bf78c41a12adc121cd9b4e68a  # CONTRACT §6 vector
code=$(curl_code -H 'X-Auth-CouchDB-UserName: foo' -H 'X-Auth-CouchDB-Roles: a,b' \
    -H "X-Auth-CouchDB-Token: $tok_foo" "$A256/_session")
[ "$code" = 200 ] && [ "$(jq -c .userCtx "$T/curl.body")" = '{"name":"foo","roles":["a","b"]}' ] ||
    fail "couch_proxy_auth.py refuses the known vector (foo/the_secret): $code $(cat "$T/curl.body")"
code=$(curl_code -H 'X-Auth-CouchDB-UserName: foo' -H 'X-Auth-CouchDB-Token: 3f0786e96b20b0102b77f1a49c041be6977cfb3bf78c41a12adc121cd9b4e68b' "$A256/")
[ "$code" = 401 ] || fail "couch_proxy_auth.py accepted a forged token: $code"
code=$(curl_code -H 'X-Auth-CouchDB-UserName: foo' "$A256/")
[ "$code" = 401 ] || fail "couch_proxy_auth.py accepted a missing token: $code"
code=$(curl_code -H 'X-Auth-CouchDB-UserName: foo' -H "X-Auth-CouchDB-Token: ${tok_foo^^}" "$A256/")
[ "$code" = 401 ] || fail "couch_proxy_auth.py accepted an upper-case token: $code"
pass "couch_proxy_auth.py: the known vector is accepted; forged, missing, upper-case tokens get 401"

# ---- ferry refuses to start with a bad secret file ----
write_cfg() { # write_cfg FILE SECRET_PATH
    cat >"$1" <<YAML
tls: {cert: $P/node1.crt, key: $P/node1.key, ca: $P/ca.crt}
listeners:
  - name: auth
    mode: inbound
    listen: "127.0.0.1:$P_auth256"
    backend: "127.0.0.1:$PA256"
    couchdb_proxy_auth: {secret_file: "$2", hash: sha256, roles: ["replicator"]}
YAML
}
: >"$P/empty.secret"
chmod 600 "$P/empty.secret"
printf 'the_secret\n' >"$P/open.secret"
chmod 644 "$P/open.secret"
for c in "missing:$P/no-such.secret" "empty:$P/empty.secret" "mode0644:$P/open.secret"; do
    name=${c%%:*}
    f=${c#*:}
    write_cfg "$T/bad-$name.yaml" "$f"
    ferry_expect_exit 1 "start-$name" "$T/bad-$name.yaml"
    grep -qF "$f" "$T/start-$name.log" || fail "start with a $name secret file: message does not name $f: $(cat "$T/start-$name.log")"
    pass "secret file $name -> exit 1: $(grep -F "$f" "$T/start-$name.log" | head -n1)"
done

# ---- the ferry under test ----
cat >"$P/id.yaml" <<YAML
tls: {cert: node1.crt, key: node1.key, ca: ca.crt}
log: {level: info}
limits: {idle_timeout: 20s}
listeners:
  - {name: xfcc, mode: inbound, listen: "127.0.0.1:$P_xfcc", backend: "127.0.0.1:$PB"}
  - {name: rfc, mode: inbound, listen: "127.0.0.1:$P_rfc", backend: "127.0.0.1:$PB", client_cert_header: rfc9440}
  - {name: none, mode: inbound, listen: "127.0.0.1:$P_none", backend: "127.0.0.1:$PB", client_cert_header: none}
  - name: auth256
    mode: inbound
    listen: "127.0.0.1:$P_auth256"
    backend: "127.0.0.1:$PA256"
    couchdb_proxy_auth: {secret_file: couch.secret, hash: sha256, roles: ["replicator", "reader"]}
  - name: auth1
    mode: inbound
    listen: "127.0.0.1:$P_auth1"
    backend: "127.0.0.1:$PA1"
    couchdb_proxy_auth: {secret_file: couch.secret, hash: sha1, roles: ["replicator"]}
  - name: authecho
    mode: inbound
    listen: "127.0.0.1:$P_authecho"
    backend: "127.0.0.1:$PB"
    client_cert_header: none
    couchdb_proxy_auth: {secret_file: couch.secret, hash: sha256, roles: ["replicator"]}
  - {name: wild, mode: inbound, listen: "127.0.0.1:$P_wild", backend: "127.0.0.1:$PB", allow: ["*.example.org"]}
  - {name: outpeer, mode: outbound, listen: "127.0.0.1:$P_outpeer", peer: "node1.test:$P_xfcc", connect: "127.0.0.1:$P_xfcc", host_header: peer}
  - {name: outkeep, mode: outbound, listen: "127.0.0.1:$P_outkeep", peer: "node1.test:$P_xfcc", connect: "127.0.0.1:$P_xfcc", host_header: keep}
YAML
ferry_start id "$P/id.yaml"

# curl_in PORT PATH [curl args...]: mTLS to an inbound listener with the `good` certificate
curl_in() {
    local port=$1 path=$2
    shift 2
    curl_code --cacert "$P/root.crt" --cert "$P/good.crt" --key "$P/good.key" \
        --resolve "node1.test:$port:127.0.0.1" "$@" "https://node1.test:$port$path"
}
FORGED=(-H 'X-Forwarded-For: 6.6.6.6' -H 'x-forwarded-for: 7.7.7.7' -H 'X-Forwarded-Proto: http'
    -H 'X-FORWARDED-CLIENT-CERT: Hash=forged;Subject="CN=admin"' -H 'x-Forwarded-Host: evil.test'
    -H 'Forwarded: for=6.6.6.6;proto=http' -H 'Client-Cert: :ZXZpbA==:' -H 'CLIENT-CERT-CHAIN: :ZXZpbA==:'
    -H 'X-Auth-CouchDB-UserName: admin' -H 'x-auth-couchdb-roles: _admin' -H 'X-AUTH-COUCHDB-TOKEN: forged'
    -H 'X-SSL-Client-Cert: forged' -H 'X-SSL-Client-S-DN: CN=forged' -H 'SSL_CLIENT_S_DN: CN=forged'
    -H 'X-Client-Cert: forged' -H 'X-Client-Verify: forged' -H 'X-Real-IP: 6.6.6.6'
    -H 'Remote-User: forged' -H 'X_Remote_User: forged' -H 'X-Amzn-Mtls-Clientcert: forged'
    -H 'Client-IP: 6.6.6.6' -H 'WL-Proxy-Client-IP: 6.6.6.6' -H 'X-Remote-Addr: 6.6.6.6'
    -H 'Fastly-Client-IP: 6.6.6.6' -H 'X-Originating-IP: 6.6.6.6' -H 'Remote_Addr: 6.6.6.6'
    -H 'X-Keep-Me: yes')

# headers_check FILE EXPECT_JSON: the backend's header_list has, among identity headers
# (x-forwarded-*, forwarded, client-cert*, x-auth-couchdb-*), exactly EXPECT (lower-case name
# -> value) and keeps X-Keep-Me.
headers_check() {
    python3 - "$1" "$2" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
want = json.loads(sys.argv[2])
got = {}
for k, v in doc["header_list"]:
    lk = k.lower()
    if lk.startswith("x-forwarded-") or lk == "forwarded" or lk.startswith("client-cert") \
            or lk.startswith("x-auth-couchdb-"):
        if lk in got:
            sys.exit("header %s sent twice: %r and %r" % (k, got[lk], v))
        got[lk] = v
if got != want:
    sys.exit("identity headers differ:\n got  %s\n want %s" % (json.dumps(got, indent=1), json.dumps(want, indent=1)))
if doc["headers"].get("X-Keep-Me") != "yes":
    sys.exit("X-Keep-Me was not kept: %r" % doc["header_list"])
PY
}

der_sha() { openssl x509 -in "$1" -outform DER | sha256sum | cut -d' ' -f1; }
der_b64() { openssl x509 -in "$1" -outform DER | base64 -w0; }
subj=$(openssl x509 -in "$P/good.crt" -noout -subject -nameopt RFC2253 | sed 's/^subject=//')
XFCC="Hash=$(der_sha "$P/good.crt");Subject=\"$subj\";DNS=peer.test;DNS=alt.peer.test"

# ---- XFCC (default) ----
code=$(curl_in "$P_xfcc" /xfcc "${FORGED[@]}")
[ "$code" = 200 ] || fail "xfcc listener: HTTP $code"
want=$(python3 -c 'import json,sys; print(json.dumps({"x-forwarded-for":"127.0.0.1","x-forwarded-proto":"https","x-forwarded-client-cert":sys.argv[1]}))' "$XFCC")
if why=$(headers_check "$T/curl.body" "$want" 2>&1); then
    pass "xfcc: forged identity headers (any case) stripped; added XFF 127.0.0.1, proto https, XFCC $XFCC"
else
    bad xfcc "$why"
fi
grep -aqiE 'forged|ZXZpbA|6\.6\.6\.6|7\.7\.7\.7|evil\.test|_admin' "$T/backend.raw" &&
    bad xfcc-raw "a forged header value reached the backend (raw log)"

# ---- RFC 9440 ----
code=$(curl_in "$P_rfc" /rfc "${FORGED[@]}")
[ "$code" = 200 ] || fail "rfc9440 listener: HTTP $code"
# curl (OpenSSL auto-chain) may send the root after a root-issued leaf: Client-Cert-Chain is
# then exactly that root, else absent.
want=$(python3 -c 'import json,sys; print(json.dumps({"x-forwarded-for":"127.0.0.1","x-forwarded-proto":"https","client-cert":":"+sys.argv[1]+":"}))' "$(der_b64 "$P/good.crt")")
want_root=$(python3 -c 'import json,sys; print(json.dumps({"x-forwarded-for":"127.0.0.1","x-forwarded-proto":"https","client-cert":":"+sys.argv[1]+":","client-cert-chain":":"+sys.argv[2]+":"}))' \
    "$(der_b64 "$P/good.crt")" "$(der_b64 "$P/root.crt")")
if why=$(headers_check "$T/curl.body" "$want" 2>&1) || why=$(headers_check "$T/curl.body" "$want_root" 2>&1); then
    pass "rfc9440: Client-Cert is :base64(DER): of the leaf (Client-Cert-Chain: what the client sent after it)"
else
    bad rfc9440 "$why"
fi
code=$(curl_code --cacert "$P/root.crt" --cert "$P/int-good-chain.crt" --key "$P/int-good.key" \
    --resolve "node1.test:$P_rfc:127.0.0.1" "${FORGED[@]}" "https://node1.test:$P_rfc/rfc-chain")
[ "$code" = 200 ] || fail "rfc9440 listener with the intermediate chain: HTTP $code"
want=$(python3 -c 'import json,sys; print(json.dumps({"x-forwarded-for":"127.0.0.1","x-forwarded-proto":"https","client-cert":":"+sys.argv[1]+":","client-cert-chain":":"+sys.argv[2]+":"}))' \
    "$(der_b64 "$P/int-good.crt")" "$(der_b64 "$P/int.crt")")
if why=$(headers_check "$T/curl.body" "$want" 2>&1); then
    pass "rfc9440: a leaf under the intermediate gets Client-Cert-Chain :base64(intermediate DER):"
else
    bad rfc9440-chain "$why"
fi

# ---- none ----
code=$(curl_in "$P_none" /none "${FORGED[@]}")
[ "$code" = 200 ] || fail "none listener: HTTP $code"
if why=$(headers_check "$T/curl.body" '{"x-forwarded-for":"127.0.0.1","x-forwarded-proto":"https"}' 2>&1); then
    pass "client_cert_header none: no certificate header, forged ones still stripped"
else
    bad none "$why"
fi

# ---- couchdb_proxy_auth ----
for h in 256 1; do
    port_var=P_auth$h
    roles='["replicator","reader"]'
    [ "$h" = 1 ] && roles='["replicator"]'
    code=$(curl_in "${!port_var}" "/_session" "${FORGED[@]}")
    got=$(jq -c .userCtx "$T/curl.body" 2>/dev/null || true)
    if [ "$code" = 200 ] && [ "$got" = "{\"name\":\"peer.test\",\"roles\":$roles}" ]; then
        pass "couchdb_proxy_auth sha$h: the CouchDB-style check accepts ferry's headers: $got (forged ones replaced)"
    else
        bad "proxy-auth-sha$h" "expected 200 userCtx peer.test $roles, got $code $(cat "$T/curl.body" 2>/dev/null)"
    fi
done
grep -q '^200 GET /_session user=peer.test$' "$T/couch256.log" || bad proxy-auth-log "couch256 did not log the accepted request"

# ---- a DNS SAN that is no host name is no identity: peer=-, no proxy-auth header at all ----
# (odd-spiffe: only DNS:spiffe://...; odd-quote: only DNS:a".example.org, which "*.example.org"
# must not cover)
for o in 'odd-spiffe:DNS:spiffe://site-b.example.org/ns/db/replicator' 'odd-quote:DNS:a\".example.org'; do
    n=${o%%:*}
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$P/$n.key" \
        -subj "/O=Ferry Test/OU=$n" -out "$P/$n.csr" 2>/dev/null &&
        openssl x509 -req -in "$P/$n.csr" -CA "$P/root.crt" -CAkey "$P/root.key" -days 2 \
            -extfile <(printf 'extendedKeyUsage=clientAuth\nsubjectAltName=%s\n' "${o#*:}") \
            -out "$P/$n.crt" 2>/dev/null || fail "openssl: leaf $n"
done
code=$(curl_code --cacert "$P/root.crt" --cert "$P/odd-spiffe.crt" --key "$P/odd-spiffe.key" \
    --resolve "node1.test:$P_authecho:127.0.0.1" "${FORGED[@]}" "https://node1.test:$P_authecho/odd-spiffe")
if [ "$code" = 200 ] &&
    why=$(headers_check "$T/curl.body" '{"x-forwarded-for":"127.0.0.1","x-forwarded-proto":"https"}' 2>&1) &&
    expect_log id 'event=request listener=authecho .*peer=- .*path=/odd-spiffe status=200 .*subject="OU=odd-spiffe' 5; then
    pass "DNS:spiffe://... is no identity: peer=- (subject logged), no X-Auth-CouchDB-* header, not even Roles"
else
    bad odd-spiffe "HTTP $code ${why:-} $(grep -a 'odd-spiffe' "$T/id.log" | tail -n2)"
fi
code=$(curl_code --cacert "$P/root.crt" --cert "$P/odd-quote.crt" --key "$P/odd-quote.key" \
    --resolve "node1.test:$P_wild:127.0.0.1" "https://node1.test:$P_wild/odd-quote")
if [ "$code" != 200 ] && expect_log id 'handshake_rejected listener=wild .*reason=name_not_allowed' 5; then
    pass "allow [\"*.example.org\"] refuses DNS:a\".example.org (HTTP $code)"
else
    bad odd-quote "HTTP $code $(grep -a 'listener=wild' "$T/id.log" | tail -n2)"
fi

# ---- keep-alive: curl with several URLs reuses one connection ----
u="https://node1.test:$P_xfcc"
out=$(curl -s --max-time 10 --cacert "$P/root.crt" --cert "$P/good.crt" --key "$P/good.key" \
    --resolve "node1.test:$P_xfcc:127.0.0.1" -w '%{http_code}/%{num_connects} ' -o /dev/null \
    "$u/ka1" -o /dev/null "$u/ka2" -o /dev/null "$u/ka3") || true
[ "$out" = "200/1 200/0 200/0 " ] || bad keepalive "curl with 3 URLs: expected '200/1 200/0 200/0', got '$out'"
[ "$out" = "200/1 200/0 200/0 " ] && pass "keep-alive: 3 requests over one connection"

# ---- a pipelined burst of 5 requests in one write ----
burst=""
for i in 1 2 3 4; do burst="${burst}GET /pipe$i HTTP/1.1\r\nHost: x\r\n\r\n"; done
burst="${burst}POST /pipe5 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
out=$("${RAW[@]}" --connect "127.0.0.1:$P_xfcc" --timeout 10 --send "$burst")
paths=$(jf "$out" '",".join("%d:%s" % (r["status"], json.loads(r["body"])["path"]) for r in j["responses"])' 2>&1 || true)
if [ "$paths" = "200:/pipe1,200:/pipe2,200:/pipe3,200:/pipe4,200:/pipe5" ] && [ "$(jf "$out" 'j["eof"]')" = fin ]; then
    pass "pipelining: 5 requests in one write -> 5 responses in order, then close"
else
    bad pipeline "expected /pipe1..5 in order: $paths ${out:0:400}"
fi

# ---- Expect: 100-continue ----
head -c 300000 /dev/urandom >"$T/body.bin"
want_sha=$(sha256_of "$T/body.bin")
code=$(curl_in "$P_xfcc" /expect -H 'Expect: 100-continue' --data-binary @"$T/body.bin")
if [ "$code" = 200 ] && [ "$(jq -r .body_sha256 "$T/curl.body")" = "$want_sha" ] &&
    [ "$(jq -r '.headers.Expect' "$T/curl.body")" = 100-continue ]; then
    pass "Expect: 100-continue (curl): the body arrives byte-exact"
else
    bad expect-curl "HTTP $code $(head -c 300 "$T/curl.body")"
fi
out=$("${RAW[@]}" --connect "127.0.0.1:$P_xfcc" --timeout 10 --send \
    'PUT /expect-raw HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n' \
    --pause 1 --send 'hello')
st=$(jf "$out" '",".join(str(r["status"]) for r in j["responses"])')
if [ "$st" = "100,200" ] && [ "$(jf "$out" 'json.loads(j["responses"][1]["body"])["body_len"]')" = 5 ]; then
    pass "Expect: 100-continue (raw): 100 Continue relayed before the body was sent, then 200"
else
    bad expect-raw "expected 100 then 200: ${out:0:500}"
fi

# ---- HTTP/1.0 ----
out=$("${RAW[@]}" --connect "127.0.0.1:$P_xfcc" --timeout 10 --send 'GET /h10 HTTP/1.0\r\nHost: x\r\n\r\n')
if [ "$(jf "$out" 'j["responses"][0]["status"]')" = 200 ] &&
    [ "$(jf "$out" 'json.loads(j["responses"][0]["body"])["path"]')" = /h10 ] && [ "$(jf "$out" 'j["eof"]')" = fin ]; then
    pass "HTTP/1.0 request answered, then the connection closed"
else
    bad http10 "${out:0:400}"
fi

# ---- chunked upload, byte-exact ----
head -c 5000000 /dev/urandom >"$T/chunked.bin"
code=$(curl_in "$P_xfcc" /upload -H 'Transfer-Encoding: chunked' --data-binary @"$T/chunked.bin")
if [ "$code" = 200 ] && [ "$(jq -r .body_sha256 "$T/curl.body")" = "$(sha256_of "$T/chunked.bin")" ] &&
    [ "$(jq -r .body_len "$T/curl.body")" = 5000000 ]; then
    pass "chunked upload of 5 MB reaches the backend byte-exact"
else
    bad chunked "HTTP $code $(head -c 300 "$T/curl.body")"
fi

# ---- HEAD, then GET on the same connection ----
out=$("${RAW[@]}" --connect "127.0.0.1:$P_xfcc" --timeout 10 --head-count 1 --send \
    'HEAD /head1 HTTP/1.1\r\nHost: x\r\n\r\nGET /after-head HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
if [ "$(jf "$out" '",".join(str(r["status"]) for r in j["responses"])')" = "200,200" ] &&
    [ "$(jf "$out" 'j["responses"][0]["body_len"]')" = 0 ] &&
    [ "$(jf "$out" 'json.loads(j["responses"][1]["body"])["path"]')" = /after-head ]; then
    pass "HEAD (Content-Length, no body) then GET on one connection"
else
    bad head "${out:0:500}"
fi
code=$(curl_in "$P_xfcc" /head2 -I)
[ "$code" = 200 ] || bad head-curl "curl -I: HTTP $code"

# ---- access log: one event=request line per request ----
sleep 0.5
for pat in 'listener=xfcc .*method=GET path=/xfcc status=200' \
    'listener=xfcc .*method=POST path=/upload status=200 bytes_in=5000[0-9]{3} bytes_out=[0-9]+' \
    'listener=xfcc .*method=PUT path=/expect-raw status=200 bytes_in=5 ' \
    'listener=xfcc .*method=HEAD path=/head1 status=200 bytes_in=0 bytes_out=0 ' \
    'listener=auth256 .*peer=peer.test method=GET path=/_session status=200' \
    'listener=rfc .*path=/rfc-chain status=200'; do
    grep -Eq "event=request $pat" "$T/id.log" || grep -Eq "event=request.*$pat" "$T/id.log" ||
        bad access-log "no access-log line matching: $pat"
done
for p in /ka1 /ka2 /ka3 /pipe1 /pipe2 /pipe3 /pipe4 /pipe5 /h10 /after-head; do
    n=$(grep -c "event=request .*path=$p status=200 " "$T/id.log" || true)
    [ "$n" = 1 ] || bad access-log "path $p has $n access-log lines, expected 1"
done
total=$(log_count id 'event=request ')
pass "access log: $total event=request lines, one per request, with method, path, status, bytes"

# ---- outbound host_header ----
code=$(curl_code "http://127.0.0.1:$P_outpeer/host-peer")
got=$(jq -r .headers.Host "$T/curl.body" 2>/dev/null || true)
[ "$code" = 200 ] && [ "$got" = "node1.test:$P_xfcc" ] || bad host-peer "expected Host node1.test:$P_xfcc, got $code '$got'"
code=$(curl_code "http://127.0.0.1:$P_outkeep/host-keep")
got=$(jq -r .headers.Host "$T/curl.body" 2>/dev/null || true)
[ "$code" = 200 ] && [ "$got" = "127.0.0.1:$P_outkeep" ] || bad host-keep "expected Host 127.0.0.1:$P_outkeep, got $code '$got'"
# The inbound side saw ferry's own client certificate (node1) through the outbound listener.
grep -q "DNS=node1.test" "$T/curl.body" || bad outbound-xfcc "no node1.test XFCC through the outbound listener: $(cat "$T/curl.body")"
pass "outbound host_header: peer -> Host node1.test:$P_xfcc; keep -> Host 127.0.0.1:$P_outkeep"

ferry_stop id
bad_report "identity/HTTP behaviour"
