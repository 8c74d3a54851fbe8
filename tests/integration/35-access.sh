#!/usr/bin/env bash
# Goal: CONTRACT §7 access rules on an inbound protocol: http listener, with curl and three
# client certificates (peer.test, node1.test, wrong.test).  `allow: read` may GET a document
# and POST _all_docs but a PUT gets 403 {"error":"forbidden","reason":"peer <name> may not
# PUT <path>"} with a warn event=access_denied naming the rule; `databases` globs; first match
# wins (a later `all` rule for the same peer does not help); a peer with no rule gets 403;
# server-wide paths need `all` (GET / is allowed to read); path tricks (%2F, %2e%2e, //, ../ with --path-as-is) get 403
# or 400.  No refused request ever reaches the backend (its raw byte log is checked).
# valgrind: yes
# timeout: 120
source "$(dirname "$0")/lib.sh"

pki_make "$T/pki"
P=$T/pki
PB=$(free_port)
PIN=$(free_port)
bg_run backend python3 "$SUPPORT/http_backend.py" --port "$PB" --name backend --raw-log "$T/backend.raw"
wait_port "$PB"
: >"$T/backend.raw"
cat >"$P/acc.yaml" <<YAML
tls: {cert: node1.crt, key: node1.key, ca: ca.crt}
log: {level: info}
listeners:
  - name: in
    mode: inbound
    listen: "127.0.0.1:$PIN"
    backend: "127.0.0.1:$PB"
    access:
      - peers: ["peer.test"]
        allow: read
        databases: ["patients", "visits*"]
      - peers: ["peer.test"]
        allow: all
      - peers: ["node1.test"]
        allow: write
        databases: ["notes"]
YAML
ferry_start acc "$P/acc.yaml"

# req CERT EXPECT METHOD PATH [curl args]: expect HTTP EXPECT; for 2xx the backend saw exactly
# this request, otherwise the path never reached the backend.
req() {
    local cert=$1 want=$2 method=$3 path=$4 code
    shift 4
    code=$(curl_code --cacert "$P/root.crt" --cert "$P/$cert.crt" --key "$P/$cert.key" \
        --resolve "node1.test:$PIN:127.0.0.1" --path-as-is -X "$method" "$@" "https://node1.test:$PIN$path")
    sleep 0.05
    case "$want" in
    2*)
        if [ "$method" = HEAD ] && [ "$code" = "$want" ] && grep -q " HEAD $path\$" "$T/backend.log"; then
            :
        elif [ "$code" != "$want" ] || [ "$(jq -r .path "$T/curl.body" 2>/dev/null)" != "$path" ]; then
            bad "$cert $method $path" "expected $want from the backend, got $code $(head -c 300 "$T/curl.body" 2>/dev/null)"
            return
        fi
        ;;
    *)
        if [ "$code" != "$want" ]; then
            bad "$cert $method $path" "expected $want, got $code $(head -c 300 "$T/curl.body" 2>/dev/null)"
            return
        fi
        if grep -aqF -- "$method $path HTTP/" "$T/backend.raw"; then
            bad "$cert $method $path" "the refused request reached the backend"
            return
        fi
        ;;
    esac
    pass "$cert: $method $path -> $code"
}

# ---- allow: read, databases ----
req good 200 GET /patients/doc1
req good 200 HEAD /patients/doc1 -o /dev/null -I
req good 200 GET /patients
req good 200 GET '/patients/_all_docs?include_docs=true'
req good 200 POST /patients/_all_docs -H 'Content-Type: application/json' -d '{"keys":["a"]}'
req good 200 POST /patients/_bulk_get -H 'Content-Type: application/json' -d '{"docs":[]}'
req good 200 GET /visits2024/doc
req good 200 GET /visits
req good 403 PUT /patients/doc1 -H 'Content-Type: application/json' -d '{}'
body=$(cat "$T/curl.body")
[ "$body" = '{"error":"forbidden","reason":"peer peer.test may not PUT /patients/doc1"}' ] ||
    bad forbidden-body "403 body: $body"
expect_log acc 'warn event=access_denied .*peer=peer.test method=PUT path=/patients/doc1 rule="rule 1 \(line [0-9]+\) allows peer.test to read patients, visits\*, not PUT /patients/doc1"'
pass "403 body and warn event=access_denied with the rule: $(grep -m1 'event=access_denied' "$T/acc.log" | sed 's/.*rule=/rule=/')"
req good 403 POST /patients/_bulk_docs -H 'Content-Type: application/json' -d '{"docs":[]}'
req good 403 POST /patients -H 'Content-Type: application/json' -d '{}'
req good 403 DELETE /patients/doc1
req good 403 PUT /patients
req good 403 GET /other/doc1
req good 403 GET /patientsX/doc1
req good 403 GET /PATIENTS/doc1
req good 403 GET /_all_dbs
req good 403 GET /_config
req good 403 GET /_node/_local/_config
req good 403 GET /_users/org.couchdb.user:admin
req good 403 POST /_replicate -H 'Content-Type: application/json' -d '{}'
req good 200 GET /
# ---- path tricks: decoded once, never escaping a rule ----
# A dot segment hidden behind an encoded '/' is refused by the HTTP layer itself (400, rule
# path) before any access rule is asked; a document id with %2F is not a trick.
req good 400 GET '/patients%2F..%2F_config'
req good 400 GET '/db%2F..%2F_config'
req good 400 GET '/patients/doc/..%2f..%2f_all_dbs'
expect_log acc 'warn event=bad_request .*status=400 rule=path .*path=/patients/doc/\.\.%2f\.\.%2f_all_dbs'
req good 200 GET '/patients/_design%2Ffoo'
for p in '/%2e%2e/_config' '/patients/%2e%2e/%2e%2e/_config' '/patients/../_config' '/patients/./../_config' \
    '//_config' '/patients//_config' '/patients/%00/x' '/patients/doc%zz' '/%2e/_config'; do
    code=$(curl_code --cacert "$P/root.crt" --cert "$P/good.crt" --key "$P/good.key" \
        --resolve "node1.test:$PIN:127.0.0.1" --path-as-is "https://node1.test:$PIN$p")
    sleep 0.05
    case "$code" in
    400 | 403)
        if grep -aqF -- "GET $p HTTP/" "$T/backend.raw"; then
            bad "trick $p" "reached the backend"
        else
            pass "path trick $p -> $code $(jq -r .error "$T/curl.body" 2>/dev/null), not forwarded"
        fi
        ;;
    *) bad "trick $p" "expected 403 or 400, got $code $(head -c 200 "$T/curl.body" 2>/dev/null)" ;;
    esac
done

# ---- first match wins: the later `allow: all` rule for peer.test is never used ----
grep -q 'DELETE /patients/doc1' "$T/backend.log" && bad first-match "DELETE reached the backend"
grep -E 'event=access_denied .*method=DELETE path=/patients/doc1 ' "$T/acc.log" | grep -q 'rule="rule 1' ||
    bad first-match "the DELETE was not refused by rule 1"

# ---- node1.test: write on notes only ----
req node1 200 PUT /notes/n1 -H 'Content-Type: application/json' -d '{"a":1}'
req node1 200 GET /notes/n1
req node1 200 DELETE '/notes/n1?rev=1-abc'
req node1 403 GET /patients/doc-node1
req node1 403 GET /_config

# ---- a peer with no rule ----
req wrong-san 403 GET /patients/doc-wrong
body=$(cat "$T/curl.body")
[ "$body" = '{"error":"forbidden","reason":"peer wrong.test may not GET /patients/doc-wrong"}' ] ||
    bad no-rule-body "403 body: $body"
grep -E 'event=access_denied .*peer=wrong.test' "$T/acc.log" >/dev/null || bad no-rule-log "no access_denied for wrong.test"

# ---- the backend never saw a server-wide path; each refusal has an access-log line ----
sleep 0.3
for s in _config _all_dbs _users _replicate _bulk_docs; do
    grep -aqF "$s" "$T/backend.raw" && bad backend-raw "the backend received a request for $s"
done
n403=$(grep -c 'event=request .*status=403' "$T/acc.log" || true)
nden=$(log_count acc 'event=access_denied')
[ "$nden" -ge 20 ] || bad log-count "only $nden access_denied lines"
[ "$n403" = "$nden" ] || bad log-count "$nden access_denied lines but $n403 event=request status=403 lines"
pass "$nden refusals logged (event=access_denied), each with its event=request status=403 line"
ferry_alive acc || fail "ferry died"
ferry_stop acc
bad_report "access rules"
