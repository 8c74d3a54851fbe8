#!/usr/bin/env bash
# deploy/two-sites.sh: the two-site topology of deploy/docker/docker-compose.yml on one
# machine, without containers, and a two-way replication through it.
#
#   node A --> ferry A (to-site-b, outbound) ==mTLS==> ferry B (from-site-a, inbound) --> node B
#   node A <-- ferry A (from-site-b, inbound) <==mTLS== ferry B (to-site-a, outbound) <-- node B
#
# The nodes are two in-memory pouchdb-server processes (CouchDB's HTTP API) run by
# tests/support/pouchdb-node.js, each reachable only on 127.0.0.1; the four ferry listeners
# are two ferry processes, one per site, with certificates made by `ferry certs` (one private
# CA, site-a.example and site-b.example).  Each inbound listener admits only the other site's
# certificate, and only to replicate (an `access` rule).  The script writes documents (one with
# an attachment) on both nodes, asks node A to replicate to http://127.0.0.1:<A's outbound
# listener>/demo and node B the same towards A, then checks that both nodes hold the same
# documents and revisions, that the attachment arrived intact, and that the traffic crossed
# ferry (its /metrics) while a plaintext or unauthenticated request to an inbound port does not
# reach a node.  Exit 0 when all of that holds; everything started is stopped on exit.
#
# Usage: deploy/two-sites.sh [--dir DIR] [--docs N] [--keep]
#   --dir DIR   work directory (certificates, configs, logs); default: a new mktemp -d
#   --docs N    documents written on each side (default 200)
#   --keep      leave DIR in place on success too (it is always kept on failure)
# Environment:
#   FERRY          the ferry binary (default: `ferry` on PATH, else build/ferry of this tree)
#   NODE_MODULES   where pouchdb-server is installed (default: tests/node_modules of this
#                  tree; installed there with `npm ci --prefix tests` when missing)
# Needs: bash, curl, node >= 20 (and npm the first time), coreutils.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=""
DOCS=200
KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
    --dir) DIR=${2:?--dir needs a value}; shift 2 ;;
    --dir=*) DIR=${1#--dir=}; shift ;;
    --docs) DOCS=${2:?--docs needs a value}; shift 2 ;;
    --docs=*) DOCS=${1#--docs=}; shift ;;
    --keep) KEEP=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "two-sites.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done
case "$DOCS" in '' | *[!0-9]*) echo "two-sites.sh: --docs needs a number" >&2; exit 2 ;; esac

say() { echo "two-sites: $*" >&2; }
die() {
    echo "two-sites: FAILED: $*" >&2
    exit 1
}

# ---- tools ----
FERRY=${FERRY:-}
if [ -z "$FERRY" ]; then
    if command -v ferry >/dev/null 2>&1; then
        FERRY=$(command -v ferry)
    elif [ -x "$ROOT/build/ferry" ]; then
        FERRY=$ROOT/build/ferry
    else
        die "no ferry binary: build it (cmake --build build) or set FERRY="
    fi
fi
command -v curl >/dev/null || die "curl is required"
command -v node >/dev/null || die "node (>= 20) is required"
node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' ||
    die "node >= 20 is required, found $(node --version)"
NODE_MODULES=${NODE_MODULES:-$ROOT/tests/node_modules}
POUCH=$ROOT/tests/support/pouchdb-node.js
if [ ! -f "$NODE_MODULES/pouchdb-server/lib/index.js" ]; then
    [ "$NODE_MODULES" = "$ROOT/tests/node_modules" ] ||
        die "no pouchdb-server in NODE_MODULES=$NODE_MODULES"
    command -v npm >/dev/null || die "npm is required to install pouchdb-server (tests/package.json)"
    say "installing pouchdb-server: npm ci --prefix $ROOT/tests"
    timeout 600 npm ci --prefix "$ROOT/tests" --no-audit --no-fund >&2 || die "npm ci failed"
fi

if [ -z "$DIR" ]; then
    DIR=$(mktemp -d /tmp/ferry-two-sites.XXXXXX)
else
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd)
fi

# ---- processes: everything started is stopped on exit ----
PIDS=()
cleanup() {
    local rc=$? pid i
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for i in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [ "$rc" != 0 ]; then
        for f in "$DIR"/*.log; do
            [ -f "$f" ] || continue
            echo "---- $f (last 20 lines) ----" >&2
            tail -n 20 "$f" >&2
        done
        say "work directory kept: $DIR"
    elif [ "$KEEP" = 1 ]; then
        say "work directory kept: $DIR"
    else
        rm -rf -- "$DIR"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

USED=" "
free_port() { # a free TCP port on 127.0.0.1 (20000-40000), never the same twice here
    local p
    while :; do
        p=$((20000 + RANDOM % 20000))
        case "$USED" in *" $p "*) continue ;; esac
        if node -e 'const s=require("net").createServer();s.once("error",()=>process.exit(1));
            s.listen(+process.argv[1],"127.0.0.1",()=>s.close(()=>process.exit(0)))' "$p" 2>/dev/null; then
            USED="$USED$p "
            echo "$p"
            return
        fi
    done
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # wait_port PORT SECS NAME PID
    local end=$((SECONDS + $2))
    until port_open "$1"; do
        kill -0 "$4" 2>/dev/null || die "$3 exited (see $DIR/$3.log)"
        [ "$SECONDS" -lt "$end" ] || die "$3 does not listen on 127.0.0.1:$1 after $2s"
        sleep 0.1
    done
}
# json EXPR: evaluate EXPR on the JSON document read from stdin (bound to j)
json() { node -e 'const j=JSON.parse(require("fs").readFileSync(0,"utf8"));
    const v=('"$1"'); console.log(typeof v==="object"?JSON.stringify(v):v)'; }
http() { curl -sS --fail-with-body --max-time 120 "$@"; }

# ---- certificates: one private CA, one certificate per site ----
P=$DIR/pki
if [ ! -f "$P/ca/ca.crt" ]; then
    "$FERRY" certs init-ca --dir "$P/ca" --name "ferry two-sites CA" >"$DIR/certs.log" 2>&1 ||
        die "ferry certs init-ca (see $DIR/certs.log)"
fi
for s in a b; do
    if [ ! -f "$P/site-$s/site-$s.example.crt" ]; then
        "$FERRY" certs issue --ca "$P/ca" --name "site-$s.example" --ip 127.0.0.1 \
            --out "$P/site-$s" >>"$DIR/certs.log" 2>&1 || die "ferry certs issue site-$s.example"
    fi
done
say "certificates from ferry certs in $P: site-a.example, site-b.example"

# ---- ports ----
NODE_A=$(free_port) NODE_B=$(free_port)
IN_A=$(free_port) OUT_A=$(free_port) ADM_A=$(free_port)
IN_B=$(free_port) OUT_B=$(free_port) ADM_B=$(free_port)

# ---- the two database nodes ----
start_node() { # start_node NAME PORT
    mkdir -p "$DIR/$1"
    (cd "$DIR/$1" && exec node "$POUCH" --in-memory --host 127.0.0.1 --port "$2" \
        --config "$DIR/$1/config.json" --no-stdout-logs) </dev/null >"$DIR/$1.log" 2>&1 &
    PIDS+=($!)
    wait_port "$2" 60 "$1" "$!"
}
start_node node-a "$NODE_A"
start_node node-b "$NODE_B"
A=http://127.0.0.1:$NODE_A
B=http://127.0.0.1:$NODE_B
say "nodes: A on $A, B on $B (pouchdb-server, in memory)"

# ---- the two ferries (same shape as deploy/docker/site-*.yaml) ----
write_ferry() { # write_ferry SITE OTHER NODE_PORT IN OUT ADMIN OTHER_IN
    cat >"$DIR/ferry-$1.yaml" <<EOF
# ferry for $1: its node listens on 127.0.0.1:$3 only
tls:
  cert: $P/$1/$1.example.crt
  key: $P/$1/$1.example.key
  ca: $P/$1/ca.crt
listeners:
  - name: from-$2                  # $2's replicator reaches the node of $1 here
    mode: inbound
    listen: "127.0.0.1:$4"
    backend: "127.0.0.1:$3"
    allow: ["$2.example"]
    access:
      - peers: ["$2.example"]
        allow: replicate
  - name: to-$2                    # the node of $1 replicates to http://127.0.0.1:$5/DB
    mode: outbound
    listen: "127.0.0.1:$5"
    peer: "$2.example:$7"
    connect: "127.0.0.1:$7"        # no DNS here: $2.example is this machine
admin:
  listen: "127.0.0.1:$6"
log:
  level: info
limits:
  drain_timeout: 10s
EOF
}
write_ferry site-a site-b "$NODE_A" "$IN_A" "$OUT_A" "$ADM_A" "$IN_B"
write_ferry site-b site-a "$NODE_B" "$IN_B" "$OUT_B" "$ADM_B" "$IN_A"
FERRY_PIDS=()
for s in site-a site-b; do
    "$FERRY" check -c "$DIR/ferry-$s.yaml" >"$DIR/check-$s.log" 2>&1 ||
        die "ferry check -c $DIR/ferry-$s.yaml (see $DIR/check-$s.log)"
    "$FERRY" run -c "$DIR/ferry-$s.yaml" </dev/null >/dev/null 2>"$DIR/ferry-$s.log" &
    PIDS+=($!)
    FERRY_PIDS+=($!)
done
for i in 0 1; do
    s=$([ "$i" = 0 ] && echo site-a || echo site-b)
    end=$((SECONDS + 30))
    until grep -q 'event=ready' "$DIR/ferry-$s.log" 2>/dev/null; do
        kill -0 "${FERRY_PIDS[$i]}" 2>/dev/null || die "ferry $s exited (see $DIR/ferry-$s.log)"
        [ "$SECONDS" -lt "$end" ] || die "ferry $s not ready after 30s"
        sleep 0.1
    done
done
for adm in "$ADM_A" "$ADM_B"; do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "http://127.0.0.1:$adm/healthz")" = 200 ] ||
        die "ferry admin 127.0.0.1:$adm/healthz is not 200"
done
say "ferry A: from-site-b 127.0.0.1:$IN_A, to-site-b 127.0.0.1:$OUT_A; ferry B: from-site-a 127.0.0.1:$IN_B, to-site-a 127.0.0.1:$OUT_B"

# Each outbound listener reaches the OTHER node.
uuid() { http "$1/" | json 'j.uuid'; }
ua=$(uuid "$A") ub=$(uuid "$B")
if [ -z "$ua" ] || [ "$ua" = "$ub" ]; then die "nodes answer no distinct uuids ($ua, $ub)"; fi
[ "$(uuid "http://127.0.0.1:$OUT_A")" = "$ub" ] || die "ferry A's outbound listener does not reach node B"
[ "$(uuid "http://127.0.0.1:$OUT_B")" = "$ua" ] || die "ferry B's outbound listener does not reach node A"
# Nothing reaches a node through an inbound port without the other site's certificate.
if curl -s --max-time 5 "http://127.0.0.1:$IN_B/" 2>/dev/null | grep -q "$ub"; then
    die "plain HTTP to ferry B's inbound port reached node B"
fi
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 --cacert "$P/ca/ca.crt" \
    --resolve "site-b.example:$IN_B:127.0.0.1" "https://site-b.example:$IN_B/" || true)
[ "$code" = 000 ] || die "a client without a certificate got HTTP $code from ferry B's inbound port"
# The access rule: replication only, so a database cannot be deleted through ferry.
http -X PUT "$B/guard" >/dev/null
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X DELETE "http://127.0.0.1:$OUT_A/guard")
[ "$code" = 403 ] || die "DELETE /guard through ferry answered $code (expected 403 from the access rule)"
http "$B/guard" >/dev/null || die "database guard on B is gone"
say "outbound listeners reach the other node; inbound ports refuse plaintext, certificate-less clients and non-replication requests"

# ---- data on both sides ----
seed() { # seed URL SIDE: N docs (unicode, nested) + one with an attachment
    local url=$1 side=$2
    http -X PUT "$url/demo" >/dev/null
    # shellcheck disable=SC2016 # JavaScript, not shell
    node -e '
      const [side, n] = [process.argv[1], +process.argv[2]];
      const docs = [];
      for (let i = 0; i < n; i++)
        docs.push({_id: `${side}-${String(i).padStart(5, "0")}`, side, i,
                   text: `doc ${i} from site ${side}: grüße, 東京, 🚀`,
                   nested: {tags: [side, `t${i % 7}`], n: {deep: i * 3}}});
      process.stdout.write(JSON.stringify({docs}));' "$side" "$DOCS" >"$DIR/seed-$side.json"
    http -X POST -H 'Content-Type: application/json' --data-binary "@$DIR/seed-$side.json" \
        "$url/demo/_bulk_docs" | json 'j.filter(r => !r.ok).length' | grep -qx 0 ||
        die "_bulk_docs on site $side failed"
    head -c 300000 /dev/urandom >"$DIR/att-$side.bin"
    http -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$DIR/att-$side.bin" \
        "$url/demo/att-$side/blob.bin" >/dev/null || die "attachment upload on site $side failed"
}
seed "$A" a
seed "$B" b
say "wrote $DOCS documents and one 300 kB attachment on each node"

# ---- two-way replication through ferry ----
replicate() { # replicate NODE_URL OUTBOUND_PORT: POST /_replicate demo -> peer's demo via ferry
    local r
    r=$(http -X POST -H 'Content-Type: application/json' \
        -d "{\"source\":\"demo\",\"target\":\"http://127.0.0.1:$2/demo\"}" "$1/_replicate") ||
        die "POST $1/_replicate failed: $r"
    echo "$r" | json 'j.ok === true' | grep -qx true || die "replication from $1 not ok: $r"
    echo "$r" | json '[j.docs_written, j.doc_write_failures].join(" ")'
}
t0=$SECONDS
wa=$(replicate "$A" "$OUT_A") &&
    say "A -> B through ferry: docs_written doc_write_failures = $wa"
wb=$(replicate "$B" "$OUT_B") &&
    say "B -> A through ferry: docs_written doc_write_failures = $wb"
[ "$wa" = "$((DOCS + 1)) 0" ] || die "A -> B wrote '$wa', expected '$((DOCS + 1)) 0'"
[ "$wb" = "$((DOCS + 1)) 0" ] || die "B -> A wrote '$wb', expected '$((DOCS + 1)) 0'"

# ---- verify: identical documents and revisions, attachments intact ----
want=$((2 * DOCS + 2))
for u in "$A" "$B"; do
    n=$(http "$u/demo" | json 'j.doc_count')
    [ "$n" = "$want" ] || die "$u/demo holds $n documents, expected $want"
done
revs() { http "$1/demo/_all_docs" | json 'j.rows.map(r => r.id + " " + r.value.rev).join("\n")'; }
revs "$A" >"$DIR/revs-a.txt"
revs "$B" >"$DIR/revs-b.txt"
cmp -s "$DIR/revs-a.txt" "$DIR/revs-b.txt" || die "ids/revisions differ between A and B (see $DIR/revs-*.txt)"
for d in a-00000 "b-$(printf %05d $((DOCS - 1)))"; do
    [ "$(http "$A/demo/$d")" = "$(http "$B/demo/$d")" ] || die "document $d differs between A and B"
done
http "$B/demo/b-00000" | json 'j.text' | grep -q '東京, 🚀' || die "unicode text did not survive"
for s in a b; do
    for u in "$A" "$B"; do
        http -o "$DIR/got-$s.bin" "$u/demo/att-$s/blob.bin"
        cmp -s "$DIR/got-$s.bin" "$DIR/att-$s.bin" || die "attachment att-$s differs on $u"
    done
done
say "both nodes hold the same $want documents and revisions; attachments identical ($((SECONDS - t0))s)"

# ---- the traffic crossed ferry ----
metric() { # metric ADMIN_PORT SAMPLE
    curl -s --max-time 10 "http://127.0.0.1:$1/metrics" | awk -v k="$2" '$1 == k { print $2 }'
}
for x in "$ADM_A from-site-b" "$ADM_B from-site-a"; do
    adm=${x% *} lname=${x#* }
    n=$(metric "$adm" "ferry_requests_total{listener=\"$lname\",class=\"2xx\"}")
    [ "${n:-0}" -gt 0 ] || die "ferry's /metrics shows no 2xx request on $lname"
    say "ferry listener $lname: $n requests answered 2xx"
done
for i in 0 1; do
    kill -TERM "${FERRY_PIDS[$i]}"
    rc=0
    wait "${FERRY_PIDS[$i]}" || rc=$?
    [ "$rc" = 0 ] || die "ferry exited $rc on SIGTERM"
done
say "OK: two-way replication between two sites through four ferry listeners"
