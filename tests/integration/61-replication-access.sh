#!/usr/bin/env bash
# Goal: issue 5 end to end: two pouchdb-server nodes A and B, each behind an inbound ferry
# (protocol http) whose only access rule is
#   access: [{peers: [<the other node>], allow: replicate, databases: ["patients"]}]
# Continuous two-way replication of `patients` (A pushes through ferry A's outbound listener,
# B through ferry B's) of ~2,000 documents with attachments (some over 1 MiB) plus documents
# edited differently on both nodes before replication (conflicts): both nodes end with every
# document identical to what was written, the same winning revs and the same _conflicts; new
# writes on either side arrive through the running continuous replications; a one-shot pull
# (the source side of the protocol) through ferry passes the rules too.  Then the other node's
# certificate, used by curl straight on an inbound port, gets 403 for GET /_all_dbs,
# /_config, another database, ... and the database never sees those requests (its request
# log).  Prints "replication: N docs, M MiB, direct X s, through ferry Y s" where "direct" is
# the same replication node to node without ferry.
# timeout: 900
source "$(dirname "$0")/lib.sh"

TESTS=$FERRY_SRC/tests
NM=$TESTS/node_modules
REPL=$SUPPORT/replicate.js
N_SIDE=1000      # docs per node (std profile: unicode, nested JSON, attachments up to ~1 MiB)
N_CONF=60        # docs written on both nodes (every 10th with a 1.25 MiB attachment)

command -v node >/dev/null || fail "node is required (node >= 20)"
want=$(node -p 'require(process.argv[1]).dependencies["pouchdb-server"]' "$TESTS/package.json")
have=$(node -p 'try { require(process.argv[1]).version } catch (e) { "" }' \
    "$NM/pouchdb-server/package.json" 2>/dev/null || true)
if [ "$have" != "$want" ]; then
    note "installing node test dependencies: npm ci --prefix $TESTS (log: $T/npm.log)"
    timeout -k 5 600 npm ci --prefix "$TESTS" --no-audit --no-fund >"$T/npm.log" 2>&1 || {
        tail -n 30 "$T/npm.log" >&2
        fail "npm ci --prefix $TESTS failed"
    }
fi

repl() { # repl ARGS...: replicate.js with a time bound; output to stderr and replicate.log
    timeout -k 5 "${REPL_SECS:-300}" node "$REPL" "$@" 2>&1 | tee -a "$T/replicate.log" >&2
    return "${PIPESTATUS[0]}"
}

PA=$(free_port)
PB=$(free_port)
FA_IN=$(free_port)
FA_OUT=$(free_port)
FB_IN=$(free_port)
FB_OUT=$(free_port)
A=http://127.0.0.1:$PA
B=http://127.0.0.1:$PB

# ---- PKI ----
P=$T/pki
out=$(ferry_cmd certs init-ca --dir "$P/ca" --name "Ferry Access Test CA" 2>&1) || fail "init-ca: $out"
for n in a b; do
    out=$(ferry_cmd certs issue --ca "$P/ca" --name "node$n.test" --ip 127.0.0.1 --out "$P/$n" 2>&1) ||
        fail "certs issue node$n.test: $out"
done

# ---- nodes, with a log of every request they receive ----
start_node() { # start_node NAME PORT
    mkdir -p "$T/$1"
    : >"$T/$1.requests"
    bg_run "$1" env -C "$T/$1" FERRY_POUCH_REQUEST_LOG="$T/$1.requests" node "$SUPPORT/pouchdb-node.js" \
        --in-memory --host 127.0.0.1 --port "$2" --config "$T/$1/config.json" --no-stdout-logs
    wait_port "$2" 30
}
start_node pouch-a "$PA"
start_node pouch-b "$PB"

write_config() { # write_config FILE n peer_n node_port in out peer_in
    cat >"$1" <<EOF
tls: {cert: $P/$2/node$2.test.crt, key: $P/$2/node$2.test.key, ca: $P/$2/ca.crt}
limits: {idle_timeout: 600s}
listeners:
  - name: from-peers
    mode: inbound
    listen: "127.0.0.1:$5"
    backend: "127.0.0.1:$4"
    protocol: http
    access:
      - {peers: ["node$3.test"], allow: replicate, databases: ["patients"]}
  - {name: to-node$3, mode: outbound, listen: "127.0.0.1:$6", peer: "node$3.test:$7", connect: "127.0.0.1:$7", protocol: http}
EOF
}
write_config "$T/ferry-a.yaml" a b "$PA" "$FA_IN" "$FA_OUT" "$FB_IN"
write_config "$T/ferry-b.yaml" b a "$PB" "$FB_IN" "$FB_OUT" "$FA_IN"
ferry_start fa "$T/ferry-a.yaml"
ferry_start fb "$T/ferry-b.yaml"
pass "pouchdb-server $want nodes A and B, each behind ferry with access: replicate patients"

# ---- the same data in `direct` (replicated without ferry) and `patients` (through ferry) ----
t0=$SECONDS
for db in direct patients; do
    repl seed --url "$A" --db "$db" --side a --count "$N_SIDE" & s1=$!
    repl seed --url "$B" --db "$db" --side b --count "$N_SIDE" & s2=$!
    wait "$s1" || fail "seeding $db on A failed"
    wait "$s2" || fail "seeding $db on B failed"
    repl conflicts --url "$A" --db "$db" --side a --count "$N_CONF" || fail "conflict docs on A ($db)"
    repl conflicts --url "$B" --db "$db" --side b --count "$N_CONF" || fail "conflict docs on B ($db)"
done
live=$(( $(node "$REPL" count --url "$A" --db patients) + $(node "$REPL" count --url "$B" --db patients) - N_CONF ))
pass "seeded both databases on both nodes ($((SECONDS - t0))s); $live live docs expected after sync"

# ---- direct: continuous two-way replication node to node ----
repl replicate --url "$A" --source direct --target "$B/direct" --continuous yes || fail "direct A -> B"
repl replicate --url "$B" --source direct --target "$A/direct" --continuous yes || fail "direct B -> A"
direct_s=$(timeout -k 5 400 node "$REPL" wait-sync --url "$A" --url "$B" --db direct --live "$live" --conflicts "$N_CONF" --timeout 390) ||
    fail "direct replication did not converge: $direct_s"
pass "direct (no ferry): converged in ${direct_s}s"

# ---- through ferry: continuous two-way replication via the outbound listeners ----
mark_a=$(wc -l <"$T/fa.log")
mark_b=$(wc -l <"$T/fb.log")
repl replicate --url "$A" --source patients --target "http://127.0.0.1:$FA_OUT/patients" --continuous yes ||
    fail "starting A -> ferry A -> ferry B -> B"
repl replicate --url "$B" --source patients --target "http://127.0.0.1:$FB_OUT/patients" --continuous yes ||
    fail "starting B -> ferry B -> ferry A -> A"
ferry_s=$(timeout -k 5 400 node "$REPL" wait-sync --url "$A" --url "$B" --db patients --live "$live" --conflicts "$N_CONF" --timeout 390) || {
    echo "$ferry_s" >&2
    grep -E 'access_denied|status=(4|5)[0-9][0-9]' "$T/fa.log" "$T/fb.log" | tail -n 20 >&2
    fail "replication through ferry did not converge"
}
pass "through ferry: converged in ${ferry_s}s"
denied=$(cat "$T/fa.log" "$T/fb.log" | grep -c 'event=access_denied' || true)
[ "$denied" = 0 ] || {
    grep -h 'event=access_denied' "$T/fa.log" "$T/fb.log" | head -n 20 >&2
    fail "the replicate rule refused $denied request(s) of a real replication"
}
bytes=$( (tail -n +"$((mark_a + 1))" "$T/fa.log"; tail -n +"$((mark_b + 1))" "$T/fb.log") |
    grep 'event=request listener=from-peers' |
    sed -n 's/.* bytes_in=\([0-9]*\) bytes_out=\([0-9]*\) .*/\1 \2/p' | awk '{s += $1 + $2} END {print s + 0}')

# ---- every document compared ----
repl verify --url "$A" --url "$B" --db patients --set "a:$N_SIDE" --set "b:$N_SIDE" --skip-prefix x- ||
    fail "patients: the nodes do not hold the identical union"
repl verify-conflicts --url "$A" --url "$B" --db patients --count "$N_CONF" --sides a,b ||
    fail "patients: conflicts differ"
pass "every doc identical on A and B; $N_CONF conflicted docs with the same winner and _conflicts"

# ---- the running continuous replications carry new writes both ways ----
repl seed --url "$A" --db patients --side na --count 25 >/dev/null || fail "new docs on A"
repl seed --url "$B" --db patients --side nb --count 25 >/dev/null || fail "new docs on B"
live2=$(( live + 2 * $(node -e '
let n = 0; for (let i = 0; i < 25; i++) if (i % 97 !== 5) n++; console.log(n)') ))
REPL_SECS=200 repl wait-sync --url "$A" --url "$B" --db patients --live "$live2" --conflicts "$N_CONF" --timeout 190 >/dev/null ||
    fail "new writes did not cross through the continuous replications"
repl verify --url "$A" --url "$B" --db patients --set "a:$N_SIDE" --set "b:$N_SIDE" --set na:25 --set nb:25 --skip-prefix x- ||
    fail "patients differ after the new writes"
pass "new writes on both nodes crossed through the running continuous replications"

# ---- the source side of the protocol: a one-shot pull through ferry ----
repl replicate --url "$A" --source "http://127.0.0.1:$FA_OUT/patients" --target patients --expect-written 0 ||
    fail "a pull replication (B as the source) through ferry failed"
pass "pull (_changes, revs_diff, document/bulk_get reads on B) through ferry passes the replicate rule"

# ---- a peer trying anything else gets 403 (400 for a hidden dot segment), and the database
# never sees it ----
sleep 1
req_mark_a=$(wc -l <"$T/pouch-a.requests")
req_mark_b=$(wc -l <"$T/pouch-b.requests")
curl_peer() { # curl_peer NODE_DIR PORT METHOD PATH: with node<dir>.test's certificate
    curl_code --cacert "$P/$1/ca.crt" --cert "$P/$1/node$1.test.crt" --key "$P/$1/node$1.test.key" \
        -X "$3" "https://127.0.0.1:$2$4"
}
for c in "GET /_all_dbs" "GET /_config" "GET /otherdb" "GET /otherdb/doc" "PUT /otherdb" \
    "GET /_users/_all_docs" "GET /_node/_local/_config" "DELETE /patients" "GET /patients/_security" \
    "GET /patients%2F..%2F_config" "POST /_replicate"; do
    m=${c%% *}
    p=${c#* }
    for side in "b $FA_IN pouch-a" "a $FB_IN pouch-b"; do
        read -r who port node <<<"$side"
        code=$(curl_peer "$who" "$port" "$m" "$p")
        want=403 err=forbidden
        case $p in *%2F..%2F*) want=400 err=bad_request ;; esac # a hidden dot segment: rule path
        [ "$code" = "$want" ] || fail "node$who.test: $m $p -> $code (expected $want): $(cat "$T/curl.body")"
        grep -q "\"error\":\"$err\"" "$T/curl.body" || fail "$want body: $(cat "$T/curl.body")"
    done
done
# the peer's replication requests did reach the node; none of the refused ones did
sleep 0.5
for node in pouch-a:$req_mark_a pouch-b:$req_mark_b; do
    mark=${node#*:}
    node=${node%%:*}
    grep -q '^POST /patients/_bulk_docs' "$T/$node.requests" || fail "$node.requests has no _bulk_docs: the request log is not working"
    tail -n +"$((mark + 1))" "$T/$node.requests" >"$T/$node.after"
    if [ -s "$T/$node.after" ]; then
        cat "$T/$node.after" >&2
        fail "$node received request(s) while only refused ones were sent"
    fi
    # and over the whole run: none of these ever came through a ferry (the test itself only
    # POSTs /_replicate and touches /patients, /direct on the nodes directly)
    if grep -E '^[A-Z]+ /(_all_dbs|_config|otherdb|_users|_node|patients%2F|patients/_security)' "$T/$node.requests" >&2 ||
        grep -E '^DELETE /patients' "$T/$node.requests" >&2; then
        fail "$node received a request that ferry should have refused"
    fi
done
code=$(curl_peer b "$FA_IN" GET /patients)
[ "$code" = 200 ] || fail "GET /patients with nodeb's certificate: $code"
pass "the other node's certificate: 403 for /_all_dbs, /_config, other databases, ...; the nodes never saw them"

ferry_alive fa || fail "ferry A died"
ferry_alive fb || fail "ferry B died"
mib=$(awk -v b="$bytes" 'BEGIN {printf "%.1f", b / 1048576}')
echo "replication: $live docs, $mib MiB, direct $direct_s s, through ferry $ferry_s s" | tee "$T/numbers.txt" >&2
ferry_stop fa
ferry_stop fb
