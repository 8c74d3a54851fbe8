#!/usr/bin/env bash
# Goal: issue 12, request smuggling and response poisoning on protocol: http.  In front of
# tests/support/lax_backend.py (frames requests as nginx and CouchDB's mochiweb do: lines end
# at LF, a chunk size is the hex digits its line starts with), every case is sent twice:
# inbound (mTLS client -> ferry inbound -> backend) and through an outbound pooled connection
# (plain client -> ferry outbound, pool max_idle 1 -> mTLS -> ferry inbound -> backend), each
# time followed there by a victim: a normal request on a new local connection, which takes the
# same pooled peer connection and must get the answer to its own request.
# Malformed framing (chunk lines with a bare LF/CR, CTLs or non-hex, chunk data without CRLF,
# sizes over 2^40, a malformed trailer section, header names with whitespace or obs-text,
# CL+TE, two CLs, TE other than exactly chunked, TE in HTTP/1.0) -> 400 {"error":"bad_request"}
# and a close, nothing of it forwarded, event=bad_request logged with its rule; HTTP/0.9 and
# 2.0 -> 505; dot segments (also %2f-joined) -> 400 while %2F inside a document id works;
# chunked bodies re-encoded (lower-case hex, no extensions, no trailers) both ways,
# Content-Length bodies exact; client identity headers stripped in any spelling ("_" for
# "-") and in trailers, and other spellings of the framing headers; headers named in
# Connection removed; nothing after a Connection: close request forwarded; 33, 1,000 and 5,000 pipelined
# requests in one write all answered in order, and the connection still good after a pause
# longer than backend_timeout; the name that matched `allow` is the one identity
# (X-Auth-CouchDB-UserName, access log); a HEAD answered with a body gives the head, then a
# close, never a 502; a request an access rule refuses gets 403 (event=access_denied and its
# event=request line) and is never forwarded.  After every case the oracle
# (tests/support/smuggle_judge.py) compares what the backend executed with ferry's
# event=request lines: nothing ferry did not log, no identity header but ferry's, no trailer
# field.  Includes issue 12's case literally:
# POST /patients/_bulk_docs with a "200 \n" chunk line hiding GET /_all_dbs, under an access
# rule that allows only replicate on patients.
# timeout: 240
# valgrind: yes
source "$(dirname "$0")/lib.sh"

pki_make "$T/pki"
P=$T/pki
# A client certificate whose first DNS SAN is not the name that `allow` matches.
export SAN="DNS:admin,DNS:peer.example.org"
if ! {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$P/pex.key" &&
        openssl req -new -key "$P/pex.key" -subj "/O=Ferry Test/CN=peer.example.org" \
            -config "$P/ext.cnf" -out "$P/pex.csr" &&
        openssl x509 -req -in "$P/pex.csr" -CA "$P/root.crt" -CAkey "$P/root.key" \
            -CAserial "$P/root.srl" -days 30 -sha256 -extfile "$P/ext.cnf" -extensions both \
            -out "$P/pex.crt"
} 2>"$T/pex.err"; then
    fail "cannot issue the admin/peer.example.org certificate: $(cat "$T/pex.err")"
fi
chmod 600 "$P/pex.key"
printf 'the_secret\n' >"$P/couch.secret"
chmod 600 "$P/couch.secret"

for v in PLAX PLAXID PIN PACL PID POUT POUTACL POUTID; do
    declare "$v=$(free_port)"
done
bg_run lax python3 "$SUPPORT/lax_backend.py" --port "$PLAX" --log "$T/lax.jsonl" \
    --raw-log "$T/lax.raw" --watch X-Foo --watch X-Trailer-Evil
bg_run laxid python3 "$SUPPORT/lax_backend.py" --port "$PLAXID" --log "$T/laxid.jsonl" \
    --raw-log "$T/laxid.raw"
wait_port "$PLAX"
wait_port "$PLAXID"

cat >"$P/smug.yaml" <<YAML
tls: {cert: node1.crt, key: node1.key, ca: ca.crt}
workers: 1
log: {level: info}
limits: {handshake_timeout: 10s, idle_timeout: 30s, header_timeout: 5s, backend_timeout: 5s}
listeners:
  - {name: in, mode: inbound, listen: "127.0.0.1:$PIN", backend: "127.0.0.1:$PLAX"}
  - name: acl
    mode: inbound
    listen: "127.0.0.1:$PACL"
    backend: "127.0.0.1:$PLAX"
    access:
      - peers: ["peer.test"]
        allow: replicate
        databases: ["patients"]
  - name: id
    mode: inbound
    listen: "127.0.0.1:$PID"
    backend: "127.0.0.1:$PLAXID"
    allow: ["peer.example.org"]
    couchdb_proxy_auth: {secret_file: couch.secret, hash: sha256, roles: ["replicator"]}
  - name: out
    mode: outbound
    listen: "127.0.0.1:$POUT"
    peer: "node1.test:$PIN"
    connect: "127.0.0.1:$PIN"
    tls: {cert: good.crt, key: good.key}
    pool: {max_idle: 1, idle_timeout: 60s}
  - name: outacl
    mode: outbound
    listen: "127.0.0.1:$POUTACL"
    peer: "node1.test:$PACL"
    connect: "127.0.0.1:$PACL"
    tls: {cert: good.crt, key: good.key}
    pool: {max_idle: 1, idle_timeout: 60s}
  - name: outid
    mode: outbound
    listen: "127.0.0.1:$POUTID"
    peer: "node1.test:$PID"
    connect: "127.0.0.1:$PID"
    tls: {cert: pex.crt, key: pex.key}
    pool: {max_idle: 1, idle_timeout: 60s}
YAML
ferry_start smug "$P/smug.yaml"

der_sha() { openssl x509 -in "$1" -outform DER | sha256sum | cut -d' ' -f1; }
GOOD_SHA=$(der_sha "$P/good.crt")
PEX_SHA=$(der_sha "$P/pex.crt")
PEX_TOKEN=$(python3 -c 'import hashlib, hmac; print(hmac.new(b"the_secret", b"peer.example.org", hashlib.sha256).hexdigest())')

# Bounds: how long a client waits for more bytes once they stop (a case that hangs ends
# there), the whole exchange, how fast a refusal must come, how long logs may lag.
CA=1.5 TO=10 MAXEL=3 WAIT=0.5 SETTLE=0.2
[ "$VG" = 1 ] && CA=6 TO=30 MAXEL=10 WAIT=3 SETTLE=1


# client WHERE OUTFILE HTTP_RAW_ARGS...: one connection to a listener: in/acl/id over mTLS
# (id with the admin/peer.example.org certificate, the others with `good` = peer.test),
# out/outacl/outid in plaintext.
client() {
    local where=$1 outf=$2 port cert=good
    shift 2
    case $where in
    in) port=$PIN ;;
    acl) port=$PACL ;;
    id) port=$PID cert=pex ;;
    out) port=$POUT ;;
    outacl) port=$POUTACL ;;
    outid) port=$POUTID ;;
    *) fail "client: unknown listener $where" ;;
    esac
    case $where in
    out*)
        python3 "$SUPPORT/http_raw.py" --connect "127.0.0.1:$port" --plain --timeout "$TO" \
            --close-after "$CA" "$@" >"$outf" || true
        ;;
    *)
        python3 "$SUPPORT/http_raw.py" --connect "127.0.0.1:$port" --cert "$P/$cert.crt" \
            --key "$P/$cert.key" --ca "$P/root.crt" --sni node1.test --timeout "$TO" \
            --close-after "$CA" "$@" >"$outf" || true
        ;;
    esac
}

# case_run NAME WHERE EXPECT [OPTIONS] -- HTTP_RAW_ARGS...
# Send one attack (or exchange) to listener WHERE, judge the answer by EXPECT (see
# smuggle_judge.py: refuse:STATUS:ERROR[:RULE] | echo | deny | head-close), then, on an outbound
# listener, send a victim request on a new connection (it reuses the pooled peer connection),
# and run the oracle over what the backend executed since the case began.
# OPTIONS: -m MARKER (must not reach the backend), -e LINE (an expected echo, in order),
# -E FILE (expected echoes, one per line), -H N (the first N responses answer HEAD),
# -R (check the chunk framing the client got).
case_run() {
    local name=$1 where=$2 expect=$3
    shift 3
    local jargs=() rargs=() lax=lax listeners=in,acl vpath f0 l0 r0
    while [ "$1" != -- ]; do
        case $1 in
        -m) jargs+=(--marker "$2") && shift 2 ;;
        -e) jargs+=(--want-echo "$2") && shift 2 ;;
        -E) jargs+=(--want-echo-file "$2") && shift 2 ;;
        -H) rargs+=(--head-count "$2") && shift 2 ;;
        -R) rargs+=(--raw-out "$T/case.raw") && jargs+=(--raw-resp "$T/case.raw") && shift ;;
        *) fail "case_run: bad option $1" ;;
        esac
    done
    shift
    case $where in
    id | outid)
        lax=laxid listeners=id
        jargs+=(--xfcc-hash "$PEX_SHA" --auth-user peer.example.org --auth-roles replicator
            --auth-token "$PEX_TOKEN")
        ;;
    *) jargs+=(--xfcc-hash "$GOOD_SHA") ;;
    esac
    f0=$(wc -l <"$T/smug.log")
    l0=$(wc -l <"$T/$lax.jsonl")
    r0=$(stat -c %s "$T/$lax.raw")
    client "$where" "$T/case.json" "${rargs[@]}" "$@"
    case $where in
    out*)
        vpath=/victim/$name
        [ "$where" = outacl ] && vpath=/patients/_local/victim-${name//\//-}
        sleep "$SETTLE"
        client "$where" "$T/victim.json" --send \
            "GET $vpath HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n"
        jargs+=(--victim "$T/victim.json" --victim-line "GET $vpath")
        ;;
    esac
    if python3 "$SUPPORT/smuggle_judge.py" --name "$name ($where)" --expect "$expect" \
        --resp "$T/case.json" --ferry-log "$T/smug.log" --ferry-from "$f0" \
        --listeners "$listeners" --lax-log "$T/$lax.jsonl" --lax-from "$l0" \
        --raw-log "$T/$lax.raw" --raw-from "$r0" --max-elapsed "$MAXEL" --wait "$WAIT" \
        "${jargs[@]}" >"$T/judge.out" 2>&1; then
        cat "$T/judge.out" >&2
    else
        cat "$T/judge.out" >&2
        bad "$name/$where" "judged wrong (above)"
    fi
    ferry_alive smug || fail "ferry died during $name ($where)"
}

# both NAME EXPECT ...: case_run inbound and through the outbound pool (in/out)
both() {
    local name=$1
    shift
    case_run "$name" in "$@"
    case_run "$name" out "$@"
}

H='HTTP/1.1\r\nHost: x\r\n'
TE='Transfer-Encoding: chunked\r\n'
END='GET /k/end HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'

# ---- the setup works: two clients through `out` share one peer connection ----
client out "$T/p1.json" --send "GET /k/pool-1 ${H}Connection: close\\r\\n\\r\\n"
client out "$T/p2.json" --send "GET /k/pool-2 ${H}Connection: close\\r\\n\\r\\n"
c1=$(python3 -c 'import json,sys; print(json.loads(json.load(open(sys.argv[1]))["responses"][0]["body"])["conn"])' "$T/p1.json" 2>/dev/null || echo none1)
c2=$(python3 -c 'import json,sys; print(json.loads(json.load(open(sys.argv[1]))["responses"][0]["body"])["conn"])' "$T/p2.json" 2>/dev/null || echo none2)
[ "$c1" = "$c2" ] || fail "setup: two clients through the pooled outbound listener used backend connections $c1 and $c2 (no reuse: the victim checks would prove nothing)"
pass "setup: two local clients through the outbound pool share backend connection $c1"

# ---- issue 12 literally: a "200 \n" chunk line hides GET /_all_dbs (replicate-only peer) ----
PAD='{"docs":[{"_id":"a","pad":"'
PAD=$PAD$(head -c $((0x200 - ${#PAD} - 4)) /dev/zero | tr '\0' x)'"}]}'
[ "${#PAD}" = 512 ] || fail "pad is ${#PAD} bytes"
CRIT="POST /patients/_bulk_docs ${H}${TE}\\r\\n200 \\n${PAD}\\r\\n0\\r\\n\\r\\nGET /_all_dbs HTTP/1.1\\r\\nHost: x\\r\\nX-Auth-CouchDB-UserName: admin\\r\\nX-Auth-CouchDB-Roles: _admin\\r\\n\\r\\n"
for w in acl outacl; do
    case_run issue12-all-dbs $w refuse:400:bad_request:chunk-line -m /_all_dbs \
        -m /patients/_bulk_docs -- --send "$CRIT"
done

# ---- an access rule refuses GET /_all_dbs behind an allowed request: 403, never forwarded ----
for w in acl outacl; do
    case_run access-denied $w deny -e 'GET /patients/_local/k-allowed' -m /_all_dbs -- --send \
        "GET /patients/_local/k-allowed ${H}\\r\\nGET /_all_dbs ${H}Connection: close\\r\\n\\r\\n"
done

# ---- response poisoning: ferry (old) sees one complete request, the backend two; the second
# waits for a body and swallows the next client's request ----
both poison-lf refuse:400:bad_request:chunk-line -m /k/poison -- --send \
    "POST /k/poison ${H}${TE}\\r\\n1 \\nZ\\n0\\n\\nPOST /k/poison-smug HTTP/1.1\\nHost: x\\nContent-Length: 60\\n\\nX\\r\\n0\\r\\n0\\r\\n\\r\\n"
both poison-cr refuse:400:bad_request:chunk-line -m /k/poison -- --send \
    "POST /k/poison-cr ${H}${TE}\\r\\n2\\rX{}\\r\\n0\\r\\n\\r\\nPOST /k/poison-cr-smug HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 60\\r\\n\\r\\n"

# ---- chunk-size lines ----
both lf-size refuse:400:bad_request:chunk-line -m /k/lf-size -- --send \
    "POST /k/lf-size ${H}${TE}\\r\\n5\\nhello\\r\\n0\\r\\n\\r\\n"
both lf-ext refuse:400:bad_request:chunk-line -m /k/lf-ext -- --send \
    "POST /k/lf-ext ${H}${TE}\\r\\n5;a=b\\nhello\\r\\n0\\r\\n\\r\\nGET /k/lf-ext-smug HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"
both lf-last refuse:400:bad_request:chunk-line -m /k/lf-last -- --send \
    "POST /k/lf-last ${H}${TE}\\r\\n5\\r\\nhello\\r\\n0\\n\\r\\n"
both ctl-ext refuse:400:bad_request:chunk-line -m /k/ctl-ext -- --send \
    "POST /k/ctl-ext ${H}${TE}\\r\\n5;a=\\x01b\\r\\nhello\\r\\n0\\r\\n\\r\\n"
both del-ext refuse:400:bad_request:chunk-line -m /k/del-ext -- --send \
    "POST /k/del-ext ${H}${TE}\\r\\n5;a=\"x\\x7fy\"\\r\\nhello\\r\\n0\\r\\n\\r\\n"
both nul-ext refuse:400:bad_request:chunk-line -m /k/nul-ext -- --send \
    "POST /k/nul-ext ${H}${TE}\\r\\n5;\\x00\\r\\nhello\\r\\n0\\r\\n\\r\\n"
both nonhex refuse:400:bad_request:chunk-line -m /k/nonhex -- --send \
    "POST /k/nonhex ${H}${TE}\\r\\nzz\\r\\nhello\\r\\n0\\r\\n\\r\\n"
both hex-0x refuse:400:bad_request:chunk-line -m /k/hex-0x -- --send \
    "POST /k/hex-0x ${H}${TE}\\r\\n0x5\\r\\nhello\\r\\n0\\r\\n\\r\\nGET /k/hex-0x-smug HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"
both chunk-data refuse:400:bad_request -m /k/chunk-data -- --send \
    "POST /k/chunk-data ${H}${TE}\\r\\n2\\r\\n{}XY0\\r\\n\\r\\n"
both size-2p63 refuse:400:bad_request -m /k/size-2p63 -- --send \
    "POST /k/size-2p63 ${H}${TE}\\r\\n8000000000000000\\r\\nhello\\r\\n0\\r\\n\\r\\n"
both size-2p40 refuse:400:bad_request -m /k/size-2p40 -- --send \
    "POST /k/size-2p40 ${H}${TE}\\r\\n10000000001\\r\\nhello\\r\\n0\\r\\n\\r\\n"
both trailer-lf refuse:400:bad_request -m /k/trailer-lf -- --send \
    "POST /k/trailer-lf ${H}${TE}\\r\\n3\\r\\nabc\\r\\n0\\r\\nX-T: 1\\n\\r\\n"
both trailer-end-lf refuse:400:bad_request -m /k/trailer-end-lf -- --send \
    "POST /k/trailer-end-lf ${H}${TE}\\r\\n3\\r\\nabc\\r\\n0\\r\\n\\n"

# ---- header names ----
both host-sp refuse:400:bad_request:header-name -m /k/host-sp -- --send \
    "GET /k/host-sp ${H}Host : evil\\r\\n\\r\\n"
both client-cert-sp refuse:400:bad_request:header-name -m /k/client-cert-sp -- --send \
    "GET /k/client-cert-sp ${H}Client-Cert : x\\r\\n\\r\\n"
both forwarded-sp refuse:400:bad_request:header-name -m /k/forwarded-sp -- --send \
    "GET /k/forwarded-sp ${H}Forwarded : for=6.6.6.6\\r\\n\\r\\n"
both upgrade-sp refuse:400:bad_request:header-name -m /k/upgrade-sp -- --send \
    "GET /k/upgrade-sp ${H}Upgrade : websocket\\r\\n\\r\\n"
both auth-sp refuse:400:bad_request:header-name -m /k/auth-sp -- --send \
    "GET /k/auth-sp ${H}X-Auth-CouchDB-Roles : _admin\\r\\n\\r\\n"
both name-tab refuse:400:bad_request:header-name -m /k/name-tab -- --send \
    "GET /k/name-tab ${H}X-Forwarded-For\\t: 6.6.6.6\\r\\n\\r\\n"
both name-obs-text refuse:400:bad_request:header-name -m /k/name-obs-text -- --send \
    "GET /k/name-obs-text ${H}X-\\xe9vil: 1\\r\\n\\r\\n"

# ---- Content-Length / Transfer-Encoding ----
both cl-te refuse:400:bad_request -m /k/cl-te -m /k/smug -- --send \
    "POST /k/cl-te ${H}Content-Length: 42\\r\\n${TE}\\r\\n0\\r\\n\\r\\nGET /k/smug HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"
both te-cl refuse:400:bad_request -m /k/te-cl -m /k/smug -- --send \
    "POST /k/te-cl ${H}${TE}Content-Length: 4\\r\\n\\r\\n5c\\r\\nGET /k/smug HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n\\r\\n0\\r\\n\\r\\n"
both two-cl refuse:400:bad_request -m /k/two-cl -m /k/smug -- --send \
    "POST /k/two-cl ${H}Content-Length: 0\\r\\nContent-Length: 36\\r\\n\\r\\nGET /k/smug HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"
both te-twice refuse:400:bad_request -m /k/te-twice -- --send \
    "POST /k/te-twice ${H}${TE}Transfer-Encoding: gzip\\r\\n\\r\\n3\\r\\nabc\\r\\n0\\r\\n\\r\\n"
both te-gzip-chunked refuse:400:bad_request -m /k/te-gzip-chunked -- --send \
    "POST /k/te-gzip-chunked ${H}Transfer-Encoding: gzip, chunked\\r\\n\\r\\n3\\r\\nabc\\r\\n0\\r\\n\\r\\n"
both te-http10 refuse:400:bad_request -m /k/te-http10 -- --send \
    "POST /k/te-http10 HTTP/1.0\\r\\nHost: x\\r\\n${TE}\\r\\n3\\r\\nabc\\r\\n0\\r\\n\\r\\n"

# ---- versions ----
both http09 refuse:505:http_version_not_supported:version -m /k/http09 -- --send \
    "GET /k/http09 HTTP/0.9\\r\\nHost: x\\r\\n\\r\\n"
both http20 refuse:505:http_version_not_supported:version -m /k/http20 -- --send \
    "GET /k/http20 HTTP/2.0\\r\\nHost: x\\r\\n\\r\\n"

# ---- a fragment in the target, a Host that is not host[:port]: servers split them apart ----
both fragment refuse:400:bad_request:malformed -m /k/fragment -- --send \
    "GET /k/fragment#/../../_all_dbs ${H}\\r\\n"
both host-slash refuse:400:bad_request:malformed -m /k/host-slash -- --send \
    "GET /k/host-slash HTTP/1.1\\r\\nHost: x/_all_dbs?\\r\\n\\r\\n"
both host-at refuse:400:bad_request:malformed -m /k/host-at -- --send \
    "GET /k/host-at HTTP/1.1\\r\\nHost: admin@x\\r\\n\\r\\n"
# ---- paths: dot segments refused, %2F inside a document id kept ----
both path-2f refuse:400:bad_request:path -m ..%2f..%2f_all_dbs -- --send \
    "GET /patients/doc/..%2f..%2f_all_dbs ${H}\\r\\n"
both path-2e2e refuse:400:bad_request:path -m /%2e%2e/_all_dbs -- --send \
    "GET /%2e%2e/_all_dbs ${H}\\r\\n"
both path-dotdot refuse:400:bad_request:path -m /k/../_all_dbs -- --send \
    "GET /k/../_all_dbs ${H}\\r\\n"
both path-dot refuse:400:bad_request:path -m /k/%2E/x -- --send "GET /k/%2E/x ${H}\\r\\n"
both path-5c refuse:400:bad_request:path -m /k/..%5c_all_dbs -- --send \
    "GET /k/..%5c_all_dbs ${H}\\r\\n"
both path-docid echo -e 'GET /db/_design%2Ffoo' -e 'GET /db/a%2Fb' -e 'GET /k/end' -- --send \
    "GET /db/_design%2Ffoo ${H}\\r\\nGET /db/a%2Fb ${H}\\r\\n$END"

# ---- bodies: chunked re-encoded, trailers dropped, Content-Length exact ----
both reencode echo -e 'POST /k/reencode' -e 'GET /k/end' -- --send \
    "POST /k/reencode ${H}${TE}\\r\\n0A;name=\"v a;l\"\\r\\n0123456789\\r\\n00003;x\\r\\nabc\\r\\n1;a=b;c\\r\\nZ\\r\\n0\\r\\n\\r\\n$END"
both chunk-bws echo -e 'POST /k/chunk-bws' -e 'GET /k/end' -- --send \
    "POST /k/chunk-bws ${H}${TE}\\r\\n3 ;x=y\\r\\nabc\\r\\n3\\t;q\\r\\ndef\\r\\n0\\r\\n\\r\\n$END"
both trailer-identity echo -e 'POST /k/trailer-identity' -e 'GET /k/end' -- --send \
    "POST /k/trailer-identity ${H}${TE}\\r\\n3\\r\\nabc\\r\\n0\\r\\nX-Auth-CouchDB-Roles: _admin\\r\\nX-Trailer-Evil: 1\\r\\nX_Forwarded_For: 6.6.6.6\\r\\n\\r\\n$END"
both cl-exact echo -e 'POST /k/cl-exact' -e 'PUT /k/cl-zero' -e 'GET /k/end' -- --send \
    "POST /k/cl-exact ${H}Content-Length: 5\\r\\n\\r\\nhelloPUT /k/cl-zero ${H}Content-Length: 0\\r\\n\\r\\n$END"
both chunked-response echo -R -e 'GET /k/__chunked_resp' -- --send \
    "GET /k/__chunked_resp ${H}Connection: close\\r\\n\\r\\n"

# ---- identity headers in any spelling; headers named in Connection ----
FORGED='X_Auth_CouchDB_Roles: _admin\r\nX_AUTH_COUCHDB_USERNAME: admin\r\nX_Auth_CouchDB_Token: forged\r\nX_Forwarded_Client_Cert: Hash=evil\r\nx-forwarded_for: 6.6.6.6\r\nX-Forwarded-Host: evil\r\nForwarded: for=6.6.6.6\r\nclient_cert: :ZXZpbA==:\r\nClient-Cert-Chain: :ZXZpbA==:\r\nX_SSL_Client_Cert: forged\r\nX-SSL-Client-S-DN: CN=admin\r\nSSL_CLIENT_S_DN: CN=admin\r\nX-Client-Cert: forged\r\nx-client-verify: SUCCESS\r\nX-Real-IP: 6.6.6.6\r\nX-ARR-ClientCert: forged\r\nX-Amzn-Mtls-Clientcert: forged\r\nRemote-User: admin\r\nX_Remote_User: admin\r\nX-HTTP-Method-Override: DELETE\r\nTrue_Client_IP: 6.6.6.6\r\nX-User: admin\r\nX-Auth-Request-User: admin\r\nX-TLS-Client-Cert: forged\r\n'
both underscore echo -e 'GET /k/underscore' -e 'POST /k/underscore-chunked' -e 'GET /k/end' -- --send \
    "GET /k/underscore ${H}${FORGED}\\r\\nPOST /k/underscore-chunked ${H}${FORGED}${TE}\\r\\n2\\r\\nhi\\r\\n0\\r\\n\\r\\n$END"
# Other spellings of the framing headers never reach the backend (a CGI-style backend reads
# Transfer_Encoding as Transfer-Encoding, and would frame the body as chunked).
both underscore-framing echo -e 'POST /k/underscore-framing' -e 'GET /k/end' \
    -m Transfer_Encoding -m Content_Length -- --send \
    "POST /k/underscore-framing ${H}Transfer_Encoding: chunked\\r\\nContent_Length: 999\\r\\nContent-Length: 5\\r\\n\\r\\n0\\r\\n\\r\\n$END"
# Nothing after a request with Connection: close is a request (RFC 9112 §9.6).
both after-close echo -e 'GET /k/close-first' -m /k/after-close -- --send \
    "GET /k/close-first ${H}Connection: close\\r\\n\\r\\nGET /k/after-close ${H}\\r\\n"

# ---- HTTP/1.0 clients: the connection ends after the last response, whatever the backend
# does with its own (lax_backend's __keep keeps it open), and a chunked response reaches them
# bare, ended by the close (RFC 9112 §6.1: they cannot read chunked); a request pipelined
# behind such a response gets none (the client sends it again) ----
# http10 WHERE NAME WANT SEND: one connection; exactly one response, to WANT ("GET /k/..."),
# 200, Connection: close, no Transfer-Encoding, the body exactly the backend's document,
# nothing after it, and the connection closed by ferry (not idle); then, through the outbound
# pool, a normal request on a new connection still works.
http10() {
    local where=$1 name=$2 want=$3 send=$4
    client "$where" "$T/h10.json" --send "$send"
    python3 - "$T/h10.json" "$want" >"$T/h10.out" 2>&1 <<'PY' ||
import json, sys
r = json.load(open(sys.argv[1]))
rs = r["responses"]
assert r["eof"] == "fin", "the connection was not closed after the last response (eof=%s)" % r["eof"]
assert len(rs) == 1, "%d responses" % len(rs)
h = {k.lower(): v for k, v in rs[0]["headers"]}
assert rs[0]["status"] == 200, rs[0]["status"]
assert h.get("connection", "").lower() == "close", "Connection: %r" % h.get("connection")
assert "transfer-encoding" not in h, "Transfer-Encoding: %s sent to an HTTP/1.0 client" % h["transfer-encoding"]
doc = json.loads(rs[0]["body"])
assert doc["request"] == sys.argv[2], "answer to %r" % doc["request"]
assert r["trailing"] == "", "bytes after the response: %r" % r["trailing"][:80]
PY
        bad "http10-$name/$where" "$(tail -n1 "$T/h10.out"); got $(head -c 400 "$T/h10.json")"
    case $where in
    out)
        client out "$T/h10v.json" --send "GET /k/h10-victim-$name ${H}Connection: close\\r\\n\\r\\n"
        grep -q '"status": 200' "$T/h10v.json" && grep -q "GET /k/h10-victim-$name" "$T/h10v.json" ||
            bad "http10-$name-victim/out" "$(head -c 400 "$T/h10v.json")"
        ;;
    esac
}
for w in in out; do
    http10 "$w" keep 'GET /k/__keep' 'GET /k/__keep HTTP/1.0\r\nHost: x\r\n\r\n'
    http10 "$w" chunked 'GET /k/__chunked_resp' 'GET /k/__chunked_resp HTTP/1.0\r\nHost: x\r\n\r\n'
    http10 "$w" chunked-keepalive 'GET /k/__chunked_resp/ka' \
        'GET /k/__chunked_resp/ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /k/h10-behind HTTP/1.0\r\nConnection: keep-alive\r\n\r\n'
done
[ "${#failures[@]}" = 0 ] && pass "HTTP/1.0: closed after the last response; chunked responses sent bare"

# ---- the backend breaks the exchange after a whole response (found by the black-box attack):
# bytes past its Content-Length that start a response head (lax_backend __extra) must never
# become the start of the next response, whoever asked for it; and an answer to a request
# whose body is still coming (__early) must not let the rest of that body reach the backend,
# which would read it as a request past the access rules.  Either way ferry closes that
# backend connection and the client's after the response (event=bad_response rule=unsolicited
# or early-response). ----
# Inbound: a second request on the same connection after the __extra answer gets no poisoned
# response (the connection closes after the first).
client in "$T/extra-in.json" --send "GET /k/__extra ${H}\\r\\n" --pause 0.3 \
    --send "GET /k/after-extra ${H}\\r\\n"
grep -q attacker "$T/extra-in.json" && bad extra-in "the bytes past a response reached the client: $(head -c 400 "$T/extra-in.json")"
grep -q '"eof": "fin"' "$T/extra-in.json" || bad extra-in "the connection was not closed after the response: $(head -c 400 "$T/extra-in.json")"
# Through the pool: the client that asked leaves; four others, each on a new connection
# (which may take the pooled peer connection), get their own answers and nothing else.
client out "$T/extra-out.json" --send "GET /k/__extra ${H}\\r\\n"
for i in 1 2 3 4; do
    client out "$T/extra-v$i.json" --send "GET /k/extra-victim-$i ${H}Connection: close\\r\\n\\r\\n"
    grep -q attacker "$T/extra-v$i.json" &&
        bad "extra-victim-$i" "another client's response carried the stray bytes: $(head -c 400 "$T/extra-v$i.json")"
    grep -q "GET /k/extra-victim-$i" "$T/extra-v$i.json" ||
        bad "extra-victim-$i" "no answer of its own: $(head -c 400 "$T/extra-v$i.json")"
done
expect_log smug 'event=bad_response .*rule=unsolicited' 5
# The same with a whole stray head, and with bytes that are no response at all: unsolicited
# too, not "malformed" (the stray bytes were framed in the same read as the response).
sleep "$SETTLE"
n_uns=$(log_count smug 'event=bad_response .*rule=unsolicited')
n_mal=$(log_count smug 'event=bad_response .*rule=malformed')
for x in whole junk; do
    client in "$T/extra-$x.json" --send "GET /k/__extra_$x ${H}\\r\\n"
    grep -q attacker "$T/extra-$x.json" && bad "extra-$x" "the bytes past a response reached the client: $(head -c 400 "$T/extra-$x.json")"
    grep -q '"status": 200' "$T/extra-$x.json" || bad "extra-$x" "the response itself should reach the client: $(head -c 400 "$T/extra-$x.json")"
done
sleep "$SETTLE"
[ "$(log_count smug 'event=bad_response .*rule=unsolicited')" = $((n_uns + 2)) ] &&
    [ "$(log_count smug 'event=bad_response .*rule=malformed')" = "$n_mal" ] ||
    bad extra-rules "two more rule=unsolicited lines expected, no rule=malformed: $(grep bad_response "$T/smug.log" | tail -n 3 | cut -c1-300)"
# The client's close line names it too (not reason=done).
expect_log smug 'event=conn_closed .*reason=server_error detail=.*sent bytes after its response' 5
# An early answer: the rest of the body (a DELETE head, sent after the answer) never reaches
# the backend as a request; inbound and through the pool.
for w in in out; do
    n=$(printf 'DELETE /k/early-smuggled-%s HTTP/1.1\r\nHost: x\r\n\r\n' "$w" | wc -c)
    client "$w" "$T/early-$w.json" --send "POST /k/__early ${H}Content-Length: $n\\r\\n\\r\\n" \
        --pause 0.5 --send "DELETE /k/early-smuggled-$w HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"
    sleep "$SETTLE"
    grep -q "early-smuggled-$w" "$T/lax.jsonl" &&
        bad "early-$w" "the rest of a body reached the backend as a request: $(grep "early-smuggled-$w" "$T/lax.jsonl")"
done
expect_log smug 'event=bad_response .*rule=early-response' 5
expect_log smug 'event=conn_closed .*reason=server_error detail=.*answered a request whose body' 5
# A stream cut at a chunk boundary ends at once, not after idle_timeout (found by the third
# black-box attack: the CRLF or chunk line left unframed kept both sockets open).  A response
# (lax_backend __cut closes after "5\r\nhello\r\n"): the client gets that much, then the end of
# its connection, and the log says truncated.  A request (the client closes after one chunk):
# the backend's connection ends too, and the close line says client_closed.
for w in in out; do
    client "$w" "$T/cut-resp-$w.json" --send "GET /k/__cut-$w ${H}\\r\\n"
    grep -q '"eof": "fin"' "$T/cut-resp-$w.json" ||
        bad "cut-resp-$w" "a response cut at a chunk boundary did not end the client's connection: $(head -c 400 "$T/cut-resp-$w.json")"
    # A body that runs to the end of the connection, which the backend resets: not a clean
    # end (fourth black-box attack: the TLS client got close_notify), so a reset for the client.
    if [ "$w" = in ]; then
        client in "$T/rst-eof.json" --send "GET /k/__rst_to_eof ${H}\\r\\n"
        grep -q '"eof": "reset"' "$T/rst-eof.json" ||
            bad rst-to-eof "a response cut by the backend's reset should end with a reset: $(head -c 400 "$T/rst-eof.json")"
    fi
    # The same to an HTTP/1.0 client, which gets the body bare and reads it to the end of the
    # connection: a FIN would tell it the body was whole, so it gets a reset.
    client "$w" "$T/cut-resp10-$w.json" --send "GET /k/__cut-10-$w HTTP/1.0\\r\\n\\r\\n"
    grep -q '"eof": "reset"' "$T/cut-resp10-$w.json" ||
        bad "cut-resp10-$w" "a bare response to an HTTP/1.0 client, cut, should end with a reset: $(head -c 400 "$T/cut-resp10-$w.json")"
    client "$w" "$T/cut-req-$w.json" --send "POST /k/cut-req-$w ${H}${TE}\\r\\n5\\r\\nhello\\r\\n"
    for _ in $(seq 1 200); do
        grep -q "\"where\": \"body of POST /k/cut-req-$w\"" "$T/lax.jsonl" && break
        sleep 0.1
    done
    grep -q "\"where\": \"body of POST /k/cut-req-$w\"" "$T/lax.jsonl" ||
        bad "cut-req-$w" "the backend's connection stayed open after the client closed inside a chunked body"
done
expect_log smug 'event=bad_response .*rule=truncated' 5
expect_log smug 'event=conn_closed .*reason=client_closed detail=.*in the middle of a request' 5
# An upload slower than backend_timeout (5 s here) is not the backend's delay: no 504.
client in "$T/slow-up.json" --send "POST /k/slow-upload ${H}Content-Length: 7\\r\\n\\r\\n" \
    --pause 1 --send a --pause 1 --send b --pause 1 --send c --pause 1 --send d --pause 1 \
    --send e --pause 1 --send f --pause 1 --send 'g'
grep -q '"status": 200' "$T/slow-up.json" ||
    bad slow-upload "a 6 s upload did not get its answer: $(head -c 400 "$T/slow-up.json")"

both connection-named echo -e 'GET /k/connection-named' -e 'GET /k/end' -- --send \
    "GET /k/connection-named ${H}Connection: X-Forwarded-Client-Cert, X-Auth-CouchDB-Token, X-Foo\\r\\nX-Foo: 1\\r\\n\\r\\n$END"

# ---- pipelining past ferry's queue (32): 33, 1,000 and 5,000 requests in one write ----
# (5,000 GETs are 250 KB: ferry stops reading the client while 64 KiB wait, and must read on
# from where the TLS record it stopped in was; it once left the last requests inside OpenSSL
# and answered 408.)
for n in 33 1000 5000; do
    python3 - "$n" "$T/pipe$n.send" "$T/pipe$n.echo" <<'PY'
import sys
n = int(sys.argv[1])
reqs = ["GET /k/pipe%d/%d HTTP/1.1\\r\\nHost: x\\r\\n%s\\r\\n" % (n, i, "Connection: close\\r\\n" if i == n else "") for i in range(1, n + 1)]
open(sys.argv[2], "w").write("".join(reqs))
open(sys.argv[3], "w").write("".join("GET /k/pipe%d/%d\n" % (n, i) for i in range(1, n + 1)))
PY
    both "pipeline-$n" echo -E "$T/pipe$n.echo" -- --send-file "$T/pipe$n.send"
done

# ---- a pipelined burst answered, then a pause longer than backend_timeout: the connection
# is still good (a timer armed by the burst once dropped it as "sent no response") ----
python3 - "$T/burst.send" "$T/burst.echo" <<'PY'
import sys
open(sys.argv[1], "w").write("".join("GET /k/burst/%d HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n" % i for i in range(40)))
open(sys.argv[2], "w").write("".join("GET /k/burst/%d\n" % i for i in range(40)) + "GET /k/end\n")
PY
both burst-then-idle echo -E "$T/burst.echo" -- --send-file "$T/burst.send" --pause 6 --send "$END"

# ---- one identity: the name that matched `allow`, not the first DNS SAN ----
for w in id outid; do
    case_run one-identity $w echo -e 'GET /k/one-identity' -- --send \
        "GET /k/one-identity ${H}X-Auth-CouchDB-UserName: admin\\r\\nConnection: close\\r\\n\\r\\n"
done
grep -E 'event=request listener=id .*path=/k/one-identity ' "$T/smug.log" | grep -qv 'peer=peer.example.org ' &&
    bad one-identity-log "access log: $(grep -E 'event=request listener=id .*path=/k/one-identity ' "$T/smug.log" | head -n1)"
grep -qE 'event=request listener=id .*peer=peer.example.org .*path=/k/one-identity ' "$T/smug.log" ||
    bad one-identity-log "no event=request listener=id ... peer=peer.example.org line"

# ---- a HEAD answered with a body: the head, then a close; never a 502 ----
case_run head-body in head-close -H 1 -- --send "HEAD /k/__head_body ${H}\\r\\n"
case_run head-body out head-close -H 1 -- --send "HEAD /k/__head_body ${H}Connection: close\\r\\n\\r\\n"
expect_no_log smug 'event=request .*path=/k/__head_body status=502'

ferry_stop smug
n_bad=$(log_count smug 'event=bad_request')
note "ferry logged $n_bad event=bad_request lines, $(log_count smug 'event=request ') event=request lines"
bad_report "smuggling"
pass "issue 12: every smuggling case refused or framed alike, no response poisoning"
