#!/usr/bin/env bash
# bench/repl-trips.sh: why a CouchDB replication through the ferry-http pair is slower than
# direct (issue 14, the `repl` workload of bench/run.sh).  Three measurements:
#
#   1. trips: one replication of --docs (10,000) documents through the ferry-http pair with
#      `log: {level: info}` on A and B: the HTTP requests it makes (A's `event=request` lines),
#      by method and path kind, the bytes each way (bytes_in = request body, bytes_out =
#      response body, as logged), the client connections A accepted (`event=conn_closed`),
#      and the distribution of A's duration_ms.  Counts, load-independent.
#   2. repl: the replication timed, direct and through the pair, --reps (3) times each,
#      interleaved (wall clock: the machine is shared; medians are printed, all runs kept).
#   3. ping: added latency per round trip.  One keep-alive client connection makes --pings
#      (2,000) small GETs (86 B, Python http.client, one at a time) of an nginx backend
#      (one worker), directly and through a second ferry-http pair (B -> nginx); median and
#      p99 per run, --reps runs each, interleaved (wall clock).
#
#   client/replicator --plain--> A (outbound, http, pool) ==mTLS 1.3==> B (inbound, http) --> T
#
# The pairs are configured as bench/run.sh start_ferry (http, resumption on, pool
# {max_idle: 64, idle_timeout: 60s}, workers: auto) except for the log level (info: one line
# per request) for the counted run 1; runs 2 and 3 use --log (default warn, as run.sh).  The two
# pouchdb-server 4.2.0 nodes (in memory) are started as bench/run.sh launch_pouch does, from
# --tests DIR (a tests/ directory with node_modules installed; default: this repo's tests/).
#
#   bench/repl-trips.sh [--ferry build/ferry] [--docs N] [--reps R] [--pings N]
#                       [--port P] [--tests DIR] [--out DIR] [--log warn|info]
#                       [--steps trips,repl,ping]
#
# --steps: which of the three to run (default all; the pouchdb-server nodes are started and
#   seeded unless the steps are only ping).
# ping, "close" mode: each GET on a new TCP connection with Connection: close, timed from
#   connect() to the end of the body: the shape of the replicator's requests (trips shows one
#   client connection per request), so its added latency is the one that multiplies.
#
# Ports: P .. P+9 on 127.0.0.1 (default 25600).  Every client run is bounded by timeout.
# --out DIR keeps the logs (a-repl.log: A's access log of the counted replication, ...).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=$REPO/bench
FERRY=$REPO/build/ferry
DOCS=10000
REPS=3
PINGS=2000
PORT=25600
TESTS=$REPO/tests
KEEP=""
LOG=warn
STEPS=trips,repl,ping
while [ $# -gt 0 ]; do
    case $1 in
    --ferry) FERRY=$(realpath "$2"); shift 2 ;;
    --docs) DOCS=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --pings) PINGS=$2; shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --tests) TESTS=$(realpath "$2"); shift 2 ;;
    --out) KEEP=$(mkdir -p "$2" && realpath "$2"); shift 2 ;;
    --log) LOG=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    *) echo "usage: $0 [--ferry PATH] [--docs N] [--reps R] [--pings N] [--port P] [--tests DIR] [--out DIR] [--log warn|info] [--steps trips,repl,ping]" >&2; exit 2 ;;
    esac
done
S_PORT=$PORT T_PORT=$((PORT + 1)) A_PORT=$((PORT + 2)) B_PORT=$((PORT + 3))
NGX_PORT=$((PORT + 4)) PA_PORT=$((PORT + 5)) PB_PORT=$((PORT + 6))
POUCH=$BENCH_DIR/pouch.js
has_step() { case ,$STEPS, in *,$1,*) return 0 ;; esac; return 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-repl.XXXXXX")
OUT=${KEEP:-$WORK/out}
mkdir -p "$OUT"
PIDS=()
cleanup()
{
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_port()
{
    local i
    for i in $(seq 1 600); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "port $1 did not open" >&2
    return 1
}

"$FERRY" certs init-ca --dir "$WORK/ca" --name "repl CA" --key-type ec >/dev/null
for n in a b; do
    "$FERRY" certs issue --ca "$WORK/ca" --name "$n.repl.test" --ip 127.0.0.1 --key-type ec \
        --out "$WORK/$n" >/dev/null
done

# pair_yaml NAME OUT IN BACKEND: A's and B's configs (bench/run.sh start_ferry, http).
pair_yaml()
{
    local name=$1 out=$2 in=$3 backend=$4 level=${5:-$LOG}
    cat >"$WORK/$name-a.yaml" <<EOF
workers: auto
tls:
  cert: $WORK/a/a.repl.test.crt
  key: $WORK/a/a.repl.test.key
  ca: $WORK/ca/ca.crt
  min_version: "1.3"
  session_resumption: true
listeners:
  - name: out
    mode: outbound
    listen: "127.0.0.1:$out"
    peer: "b.repl.test:$in"
    connect: "127.0.0.1:$in"
    protocol: http
    pool: {max_idle: 64, idle_timeout: 60s}
log:
  level: $level
EOF
    cat >"$WORK/$name-b.yaml" <<EOF
workers: auto
tls:
  cert: $WORK/b/b.repl.test.crt
  key: $WORK/b/b.repl.test.key
  ca: $WORK/ca/ca.crt
  min_version: "1.3"
  session_resumption: true
listeners:
  - name: in
    mode: inbound
    listen: "127.0.0.1:$in"
    backend: "127.0.0.1:$backend"
    protocol: http
    allow: ["a.repl.test"]
log:
  level: $level
EOF
}

# start_pair NAME OUT IN: start B and A of pair NAME, their logs in $OUT/NAME-{a,b}.log.
PAIR_PIDS=()
start_pair()
{
    local name=$1
    "$FERRY" run -c "$WORK/$name-b.yaml" 2>"$OUT/$name-b.log" &
    PIDS+=($!) PAIR_PIDS+=($!)
    "$FERRY" run -c "$WORK/$name-a.yaml" 2>"$OUT/$name-a.log" &
    PIDS+=($!) PAIR_PIDS+=($!)
    wait_port "$3"
    wait_port "$2"
}
stop_pair()
{
    local p
    for p in "${PAIR_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    PAIR_PIDS=()
}

# ---- pouchdb-server S (source, seeded) and T (target), as bench/run.sh launch_pouch.
if has_step trips || has_step repl; then
for n in s t; do
    mkdir -p "$WORK/pouch-$n"
    p=$S_PORT
    [ $n = t ] && p=$T_PORT
    env -C "$WORK/pouch-$n" node "$TESTS/support/pouchdb-node.js" --in-memory --host 127.0.0.1 \
        --port "$p" --config "$WORK/pouch-$n/config.json" --no-stdout-logs \
        >"$WORK/pouch-$n/server.log" 2>&1 &
    PIDS+=($!)
done
wait_port "$S_PORT"
wait_port "$T_PORT"
curl -sf --retry 20 --retry-connrefused --retry-delay 0 --max-time 5 -o /dev/null "http://127.0.0.1:$S_PORT/"
curl -sf --retry 20 --retry-connrefused --retry-delay 0 --max-time 5 -o /dev/null "http://127.0.0.1:$T_PORT/"
timeout 300 node "$POUCH" seed --url "http://127.0.0.1:$S_PORT" --db src --count "$DOCS" >&2
# Warm-up, direct, not measured (bench/run.sh does the same).
timeout 300 node "$POUCH" replicate --url "http://127.0.0.1:$S_PORT" --source src \
    --target "http://127.0.0.1:$T_PORT/warm" --count "$DOCS" >/dev/null
node "$POUCH" delete --url "http://127.0.0.1:$T_PORT" --db warm >/dev/null || true
fi

# repl_once TARGET_PORT DB: one replication to http://127.0.0.1:TARGET_PORT/DB; prints ms.
repl_once()
{
    local line
    line=$(timeout 600 node "$POUCH" replicate --url "http://127.0.0.1:$S_PORT" --source src \
        --target "http://127.0.0.1:$1/$2" --count "$DOCS")
    case $line in *'"ok":true'*) ;; *) echo "replication failed: $line" >&2; exit 1 ;; esac
    node "$POUCH" delete --url "http://127.0.0.1:$T_PORT" --db "$2" >/dev/null || true
    python3 -c 'import json,sys; print(json.loads(sys.argv[1])["ms"])' "$line"
}

# ---- 1. trips: one replication through the pair, counted from A's and B's access logs.
if has_step trips; then
pair_yaml trips "$A_PORT" "$B_PORT" "$T_PORT" info
start_pair trips "$A_PORT" "$B_PORT"
ms=$(repl_once "$A_PORT" counted)
stop_pair
echo "== 1. one replication of $DOCS docs through the ferry-http pair ($ms ms, log: info)"
python3 - "$OUT/trips-a.log" "$OUT/trips-b.log" <<'PY'
import collections, re, sys, statistics
def lines(path, ev):
    out = []
    for l in open(path):
        if f" event={ev} " not in l:
            continue
        out.append(dict(re.findall(r"(\w+)=(\S+)", l)))
    return out
a, b = lines(sys.argv[1], "request"), lines(sys.argv[2], "request")
conns = lines(sys.argv[1], "conn_closed")
def kind(r):
    p = r["path"].split("?")[0]
    parts = [x for x in p.split("/") if x]
    if not parts:
        return r["method"] + " /"
    if len(parts) == 1:
        return r["method"] + " /db"
    k = parts[1]
    if k.startswith("_"):
        return r["method"] + " /db/" + k + ("/..." if len(parts) > 2 else "")
    return r["method"] + " /db/doc"
by = collections.OrderedDict()
for r in a:
    k = kind(r)
    e = by.setdefault(k, [0, 0, 0, []])
    e[0] += 1; e[1] += int(r["bytes_in"]); e[2] += int(r["bytes_out"]); e[3].append(int(r["duration_ms"]))
print(f"requests logged by A: {len(a)}, by B: {len(b)}; client connections A accepted: {len(conns)}")
print("| request | count | request bytes (sum) | response bytes (sum) | A duration_ms median / max |")
print("|---|---:|---:|---:|---:|")
for k, (n, bi, bo, d) in sorted(by.items(), key=lambda x: -x[1][0]):
    print(f"| {k} | {n} | {bi:,} | {bo:,} | {statistics.median(d)} / {max(d)} |")
tin = sum(int(r["bytes_in"]) for r in a); tout = sum(int(r["bytes_out"]) for r in a)
d = [int(r["duration_ms"]) for r in a]
print(f"| **total** | **{len(a)}** | **{tin:,}** | **{tout:,}** | {statistics.median(d)} / {max(d)} |")
print(f"sum of A's duration_ms over all requests: {sum(d)} ms")
reasons = collections.Counter(c.get("reason", "?") for c in conns)
print("A's client connections by close reason:", dict(reasons))
PY
fi

# ---- 2. repl timed, direct and through the pair, interleaved (log: --log, warn as run.sh).
if has_step repl; then
pair_yaml repl "$A_PORT" "$B_PORT" "$T_PORT"
echo "== 2. replication of $DOCS docs, wall clock (ms), $REPS reps interleaved"
: >"$OUT/repl-times.txt"
for rep in $(seq 1 "$REPS"); do
    d=$(repl_once "$T_PORT" "d$rep")
    start_pair repl "$A_PORT" "$B_PORT"
    f=$(repl_once "$A_PORT" "f$rep")
    stop_pair
    echo "rep $rep: direct $d ms   ferry-http $f ms" | tee -a "$OUT/repl-times.txt"
done
python3 - "$OUT/repl-times.txt" <<'PY'
import statistics, sys
d, f = [], []
for l in open(sys.argv[1]):
    p = l.split()
    d.append(float(p[3])); f.append(float(p[6]))
md, mf = statistics.median(d), statistics.median(f)
print("median: direct %.0f ms, ferry-http %.0f ms, ratio direct/ferry %.3f, ferry - direct %.0f ms"
      % (md, mf, md / mf, mf - md))
PY
fi

# ---- 3. ping: small GETs on one keep-alive connection, direct vs through a pair.
has_step ping || exit 0
mkdir -p "$WORK/www" "$WORK/ngx"
head -c 85 /dev/zero | tr '\0' x >"$WORK/www/86"
echo >>"$WORK/www/86"
chmod 755 "$WORK" "$WORK/www"
NGX_USER=""
[ "$(id -u)" = 0 ] && NGX_USER="user root;"
cat >"$WORK/ngx/nginx.conf" <<EOF
$NGX_USER
worker_processes 1;
daemon off;
pid $WORK/ngx/nginx.pid;
error_log $WORK/ngx/error.log warn;
events { worker_connections 1024; }
http {
    client_body_temp_path $WORK/ngx/client_body;
    proxy_temp_path $WORK/ngx/proxy;
    fastcgi_temp_path $WORK/ngx/fastcgi;
    uwsgi_temp_path $WORK/ngx/uwsgi;
    scgi_temp_path $WORK/ngx/scgi;
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server {
        listen 127.0.0.1:$NGX_PORT;
        root $WORK/www;
    }
}
EOF
nginx -p "$WORK/ngx" -c "$WORK/ngx/nginx.conf" -e "$WORK/ngx/error.log" &
PIDS+=($!)
wait_port "$NGX_PORT"
cat >"$WORK/ping.py" <<'PY'
import http.client, sys, time
# ping.py PORT N MODE: ka = N GETs on one keep-alive connection; close = each GET on a new
# connection with Connection: close (as the replicator does: one connection per request),
# timed from connect() to the end of the body.
port, n, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
hdr = {"Connection": "close"} if mode == "close" else {}
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
def one():
    global c
    if mode == "close":
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", "/86", headers=hdr)
    r = c.getresponse()
    r.read()
    if mode == "close":
        c.close()
    if r.status != 200:
        sys.exit("status %d" % r.status)
for _ in range(50):  # warm up (and A's pooled peer connection)
    one()
t = []
for _ in range(n):
    t0 = time.perf_counter()
    one()
    t.append(time.perf_counter() - t0)
t.sort()
print("%.1f %.1f" % (t[len(t) // 2] * 1e6, t[int(len(t) * 0.99)] * 1e6))
PY
echo "== 3. ping: $PINGS small GETs (us per round trip: median, p99); ka: one keep-alive connection, close: a new connection with Connection: close per GET"
pair_yaml ping "$PA_PORT" "$PB_PORT" "$NGX_PORT"
: >"$OUT/ping.txt"
for rep in $(seq 1 "$REPS"); do
    start_pair ping "$PA_PORT" "$PB_PORT"
    for mode in ka close; do
        read -r dm dp < <(timeout 300 python3 "$WORK/ping.py" "$NGX_PORT" "$PINGS" $mode)
        read -r fm fp < <(timeout 300 python3 "$WORK/ping.py" "$PA_PORT" "$PINGS" $mode)
        echo "rep $rep $mode: direct $dm $dp   ferry-http $fm $fp   added: median $(awk -v a="$fm" -v b="$dm" 'BEGIN {printf "%.1f", a - b}') p99 $(awk -v a="$fp" -v b="$dp" 'BEGIN {printf "%.1f", a - b}')" | tee -a "$OUT/ping.txt"
    done
    stop_pair
done
