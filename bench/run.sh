#!/usr/bin/env bash
# bench/run.sh: ferry against stunnel, HAProxy and nginx, side by side, in one run (issues 7, 14).
#
# Topology, for every peer: a "pair" = an outbound proxy A and an inbound proxy B, both on
# 127.0.0.1, TLS 1.3, ECDSA P-256 certificates made at run time with `ferry certs`:
#
#   wrk / idle.py --plain--> A (outbound) ==mTLS==> B (inbound) --plain--> nginx backend
#
# B requires and verifies A's client certificate and checks its name; A verifies B's chain and
# host name.  The backend is one nginx worker serving static files of 86 B, 16 KiB and 1 MiB,
# the last two also chunked (Transfer-Encoding: chunked, the same bytes).
# Workloads run interleaved by repetition (rep 1: every peer, rep 2: every peer, ...); the
# report gives medians, the spread (min-max), proxy CPU time per request from /proc, memory
# per idle connection pair at 1k and 10k connections, CouchDB replication (pouchdb-server)
# direct and through the pair, and the ratio of ferry to the best peer against the goals of
# issue 14.  With --ferry-base PATH, an earlier ferry build runs beside the current one as the
# peers ferry-tcp-base and ferry-http-base (configured exactly like ferry-tcp and ferry-http),
# and the report compares the two builds.
#
# Usage: bench/run.sh [--quick | --smoke] [options]; bench/run.sh --help
# See bench/README.md.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
COMMAND_LINE="bench/run.sh $*"

ALL_PEERS="direct ferry-tcp ferry-http stunnel haproxy nginx-stream nginx-http"
# The same two pairs running the binary of --ferry-base (and only with it).
BASE_PEERS="ferry-tcp-base ferry-http-base"
ALL_WORKLOADS="small k16 m1 k16c m1c conn_full conn_resumed pooled idle repl"
# The workloads wrk runs with resumption on (conn_full runs in a pair with resumption off).
# k16c, m1c: the bodies of k16, m1 sent chunked by the backend (no Content-Length).
ON_WORKLOADS="small k16 m1 k16c m1c conn_resumed pooled"
# pooled: client Connection: close through the HTTP proxies that pool their peer connections.
POOLED_PEERS="ferry-http ferry-http-base nginx-http"

# Defaults (the full run): 5 s per measurement, 3 reps, idle at 1,000 and 10,000 connections.
DURATION=5
REPS=3
IDLE_LIST="1000 10000"
REPL_DOCS=10000
REPL_PEERS="ferry-http ferry-tcp"
PEERS=""   # --peers, or ALL_PEERS (+ BASE_PEERS with --ferry-base)
WORKLOADS=$ALL_WORKLOADS
BASE_PORT=24100
OUT_DIR=""
FERRY=""
FERRY_BASE=""
FERRY_WORKERS=auto
FERRY_POOL="64,60s"
INSTALL=1
KEEP=0
MODE=full
CONNS_SMALL=64
CONNS_K16=64
CONNS_M1=16
CONNS_CONN=32

usage()
{
    cat <<EOF
usage: bench/run.sh [--quick | --smoke] [options]

  (default)          the full run: 5 s per measurement, 3 reps, idle 1,000 and 10,000
                     connections, replication of 10,000 docs (about 20 minutes on 2 cores)
  --quick            2 s, 1 rep, idle 1,000, replication of 10,000 docs (a few minutes)
  --smoke            every workload once and briefly (1 s, idle 20, 300 docs), plus checks:
                     every pair carries the exact bytes, refuses a missing or wrongly named
                     client certificate, and resumes only when told; exits 1 on any failure
  --duration S       seconds per measurement (default $DURATION)
  --reps N           repetitions, interleaved across peers (default $REPS)
  --idle LIST        comma-separated idle connection counts (default ${IDLE_LIST// /,})
  --repl-docs N      documents replicated by the repl workload (default $REPL_DOCS)
  --repl-peers LIST  pairs the replication goes through besides direct (default ${REPL_PEERS// /,})
  --peers LIST       comma-separated subset of: ${ALL_PEERS// /,}
                     (and ${BASE_PEERS// /,} with --ferry-base; default: all of them)
  --workloads LIST   comma-separated subset of: ${ALL_WORKLOADS// /,}
  --conns-small N / --conns-k16 N / --conns-m1 N / --conns-conn N
                     wrk connections (defaults $CONNS_SMALL / $CONNS_K16 / $CONNS_M1 / $CONNS_CONN;
                     k16c and m1c use those of k16 and m1)
  --ferry PATH       ferry binary (default: Release build in build-bench/, built if needed)
  --ferry-base PATH  an earlier ferry binary: adds the peers ${BASE_PEERS// /, }
                     (set up like ferry-tcp, ferry-http) and a table of ferry against it
  --ferry-workers W  ferry's \`workers:\` (auto, a number, or none to leave the key out;
                     default $FERRY_WORKERS, left out when this ferry does not accept the key)
  --ferry-pool M,T   ferry-http's outbound \`pool: {max_idle: M, idle_timeout: T}\` (default
                     $FERRY_POOL; none to leave it out; left out when not accepted)
  --base-port P      first of the 127.0.0.1 ports used (default $BASE_PORT; P .. P+91)
  --out DIR          where results.json, results.jsonl and report.md go
                     (default \${TMPDIR:-/tmp}/ferry-bench-results/<time>)
  --no-install       do not apt-get / npm install what is missing
  --keep             keep the work dir (configs, logs of every server)
EOF
}

die()
{
    echo "bench: $*" >&2
    exit 1
}

note()
{
    echo "bench: [${SECONDS}s] $*" >&2
}

FAILS=0
# fail_note MSG: a check failed; the run goes on, and exits 1 at the end.
fail_note()
{
    FAILS=$((FAILS + 1))
    echo "bench: [${SECONDS}s] FAIL: $*" >&2
}

while [ $# -gt 0 ]; do
    case "$1" in
    --quick) MODE=quick; DURATION=2; REPS=1; IDLE_LIST=1000 ;;
    --smoke) MODE=smoke; DURATION=1; REPS=1; IDLE_LIST=20; REPL_DOCS=300; REPL_PEERS=ferry-http ;;
    --duration) DURATION=${2:?}; shift ;;
    --reps) REPS=${2:?}; shift ;;
    --idle) IDLE_LIST=${2//,/ }; shift ;;
    --repl-docs) REPL_DOCS=${2:?}; shift ;;
    --repl-peers) REPL_PEERS=${2//,/ }; shift ;;
    --peers) PEERS=${2//,/ }; shift ;;
    --workloads) WORKLOADS=${2//,/ }; shift ;;
    --conns-small) CONNS_SMALL=${2:?}; shift ;;
    --conns-k16) CONNS_K16=${2:?}; shift ;;
    --conns-m1) CONNS_M1=${2:?}; shift ;;
    --conns-conn) CONNS_CONN=${2:?}; shift ;;
    --ferry) FERRY=${2:?}; shift ;;
    --ferry-base) FERRY_BASE=${2:?}; shift ;;
    --ferry-workers) FERRY_WORKERS=${2:?}; shift ;;
    --ferry-pool) FERRY_POOL=${2:?}; shift ;;
    --base-port) BASE_PORT=${2:?}; shift ;;
    --out) OUT_DIR=${2:?}; shift ;;
    --no-install) INSTALL=0 ;;
    --keep) KEEP=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
    shift
done

KNOWN_PEERS=$ALL_PEERS
[ -z "$FERRY_BASE" ] || KNOWN_PEERS="$ALL_PEERS $BASE_PEERS"
if [ -z "$PEERS" ]; then
    # every peer; each base pair right after its counterpart, so they run close in time
    for p in $KNOWN_PEERS; do
        case " $BASE_PEERS " in *" $p "*) continue ;; esac
        PEERS="$PEERS $p"
        case " $KNOWN_PEERS " in *" $p-base "*) PEERS="$PEERS $p-base" ;; esac
    done
    PEERS=${PEERS# }
fi
for p in $PEERS $REPL_PEERS; do
    case " $KNOWN_PEERS " in
    *" $p "*) ;;
    *)
        case " $BASE_PEERS " in *" $p "*) die "peer '$p' needs --ferry-base PATH" ;; esac
        die "unknown peer '$p' (known: $KNOWN_PEERS)"
        ;;
    esac
done
for w in $WORKLOADS; do
    case " $ALL_WORKLOADS " in *" $w "*) ;; *) die "unknown workload '$w' (known: $ALL_WORKLOADS)" ;; esac
done
for v in "$DURATION" "$REPS" "$REPL_DOCS" "$BASE_PORT" "$CONNS_SMALL" "$CONNS_K16" "$CONNS_M1" \
    "$CONNS_CONN" $IDLE_LIST; do
    case "$v" in '' | *[!0-9]* | 0) die "not a positive integer: '$v'" ;; esac
done
case "$FERRY_WORKERS" in auto | none | [1-9] | [1-9][0-9]) ;; *) die "--ferry-workers: auto, none or 1..99" ;; esac
case "$FERRY_POOL" in none | [0-9]*,[0-9]*) ;; *) die "--ferry-pool: M,T (e.g. 64,60s) or none" ;; esac

has_wl()
{
    case " $WORKLOADS " in *" $1 "*) return 0 ;; *) return 1 ;; esac
}

# ---------------------------------------------------------------------------------------------
# Tools: install what is missing (Debian packages, the pinned npm packages of tests/), build
# ferry in Release.

need_install()
{
    local missing=""
    command -v nginx >/dev/null || missing="$missing nginx"
    [ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || missing="$missing libnginx-mod-stream"
    command -v stunnel4 >/dev/null || command -v stunnel >/dev/null || missing="$missing stunnel4"
    command -v haproxy >/dev/null || missing="$missing haproxy"
    command -v wrk >/dev/null || missing="$missing wrk"
    command -v curl >/dev/null || missing="$missing curl"
    command -v python3 >/dev/null || missing="$missing python3"
    command -v ss >/dev/null || missing="$missing iproute2"
    command -v pgrep >/dev/null || missing="$missing procps"
    if has_wl repl; then
        command -v node >/dev/null || missing="$missing nodejs"
        command -v npm >/dev/null || missing="$missing npm"
    fi
    echo "$missing"
}

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
missing=$(need_install)
if [ -n "$missing" ]; then
    [ "$INSTALL" = 1 ] || die "missing:$missing (run without --no-install, or apt-get install them)"
    note "installing:$missing (apt-get update first)"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
    # shellcheck disable=SC2086
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        $missing >&2 || die "apt-get install failed"
    missing=$(need_install)
    [ -z "$missing" ] || die "still missing:$missing"
fi
STUNNEL=$(command -v stunnel4 || command -v stunnel)
NGINX_STREAM_MODULE=/usr/lib/nginx/modules/ngx_stream_module.so

# pouchdb-server, pinned by tests/package-lock.json (as tests/integration/60-replication.sh).
POUCH_NODE=$REPO/tests/support/pouchdb-node.js
if has_wl repl; then
    node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' ||
        die "the repl workload needs node >= 20, found $(node --version)"
    want=$(node -p 'require(process.argv[1]).dependencies["pouchdb-server"]' "$REPO/tests/package.json")
    have=$(node -p 'try { require(process.argv[1]).version } catch (e) { "" }' \
        "$REPO/tests/node_modules/pouchdb-server/package.json" 2>/dev/null || true)
    if [ "$have" != "$want" ]; then
        [ "$INSTALL" = 1 ] || die "no pouchdb-server $want in tests/node_modules (npm ci --prefix tests)"
        note "installing pouchdb-server $want: npm ci --prefix tests"
        timeout -k 5 600 npm ci --prefix "$REPO/tests" --no-audit --no-fund --loglevel=error >&2 ||
            die "npm ci --prefix tests failed"
    fi
fi

if [ -z "$FERRY" ]; then
    FERRY=$REPO/build-bench/ferry
    note "building ferry (Release) in $REPO/build-bench"
    { cmake -S "$REPO" -B "$REPO/build-bench" -DCMAKE_BUILD_TYPE=Release &&
        cmake --build "$REPO/build-bench" -j"$(nproc)" --target ferry; } >"${TMPDIR:-/tmp}/ferry-bench-build.log" 2>&1 ||
        die "ferry build failed, see ${TMPDIR:-/tmp}/ferry-bench-build.log"
fi
[ -x "$FERRY" ] || die "no ferry binary at $FERRY"
FERRY=$(cd "$(dirname "$FERRY")" && pwd)/$(basename "$FERRY")
if [ -n "$FERRY_BASE" ]; then
    [ -x "$FERRY_BASE" ] || die "no ferry binary at $FERRY_BASE (--ferry-base)"
    FERRY_BASE=$(cd "$(dirname "$FERRY_BASE")" && pwd)/$(basename "$FERRY_BASE")
fi

# ---------------------------------------------------------------------------------------------
# Work dir, output dir, cleanup.

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench.XXXXXX")
if [ -z "$OUT_DIR" ]; then
    OUT_DIR=${TMPDIR:-/tmp}/ferry-bench-results/$(date +%Y%m%d-%H%M%S)
fi
mkdir -p "$OUT_DIR"
RESULTS=$OUT_DIR/results.jsonl
: >"$RESULTS"

ALL_PIDS=()   # every server this script started, for the trap
CUR_PIDS=()   # the servers of the pair now running
CUR_A=()      # ... its outbound side
CUR_B=()      # ... its inbound side

kill_pids()
{
    local p n
    [ $# -gt 0 ] || return 0
    for p in "$@"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for n in $(seq 1 50); do
        local alive=0
        for p in "$@"; do
            kill -0 "$p" 2>/dev/null && alive=1
        done
        [ "$alive" = 0 ] && break
        [ "$n" = 50 ] || sleep 0.1
    done
    for p in "$@"; do
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}

cleanup()
{
    local rc=$?
    trap - EXIT INT TERM
    kill_pids "${ALL_PIDS[@]}"
    if [ "$KEEP" = 1 ]; then
        note "work dir kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Open files: every proxy process holds two descriptors per connection pair (client side and
# peer side), so N idle pairs need about 2N + 200 in one process.  Raise the soft limit to the
# hard one; an idle count the limit cannot hold is lowered to what it can, and the report says so.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
[ "$NOFILE" = unlimited ] && NOFILE=1048576
IDLE_MAX=$(((NOFILE - 200) / 2))
idle_list=""
for n in $IDLE_LIST; do
    if [ "$n" -gt "$IDLE_MAX" ]; then
        note "open-file limit $NOFILE (ulimit -Hn): idle $n lowered to $IDLE_MAX connections"
        n=$IDLE_MAX
    fi
    idle_list="$idle_list $n"
done
IDLE_LIST=${idle_list# }
IDLE_TOP=0
for n in $IDLE_LIST; do [ "$n" -le "$IDLE_TOP" ] || IDLE_TOP=$n; done
MAXCONN=$((IDLE_TOP * 2 + 4096))
PROC_MAXCONN=$(((NOFILE - 200) / 2))   # connections (pairs) one HAProxy process can hold
[ "$PROC_MAXCONN" -le "$MAXCONN" ] || PROC_MAXCONN=$MAXCONN
NGINX_WC=$((NOFILE - 100))             # nginx worker_connections counts both sides
[ "$NGINX_WC" -le $((MAXCONN * 2)) ] || NGINX_WC=$((MAXCONN * 2))

# spawn ROLE LOG CMD...: start one server in the background, remember its pid (ROLE a: the
# outbound side of the pair, b: its inbound side, x: neither).
spawn()
{
    local role=$1 log=$2
    shift 2
    "$@" >"$log" 2>&1 &
    ALL_PIDS+=("$!")
    CUR_PIDS+=("$!")
    case "$role" in
    a) CUR_A+=("$!") ;;
    b) CUR_B+=("$!") ;;
    esac
}

port_busy()
{
    [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
}

# wait_port PORT [TENTHS]: until something listens there (10 s by default).
wait_port()
{
    local i
    for i in $(seq 1 "${2:-100}"); do
        port_busy "$1" && return 0
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------------------------------------
# Ports: backend P; pair i (1..8): outbound P+10i, inbound P+10i+1, tlspeek P+10i+5;
# pouchdb-server source P+90, target P+91.

BACKEND_PORT=$BASE_PORT
PAIR_BACKEND=$BACKEND_PORT   # where B forwards to: the nginx backend, or pouchdb-server (repl)
CHECK_PATH=/86               # what start_pair GETs through a new pair
POUCH_S_PORT=$((BASE_PORT + 90))
POUCH_T_PORT=$((BASE_PORT + 91))
peer_index()
{
    case "$1" in
    direct) echo 0 ;; ferry-tcp) echo 1 ;; ferry-http) echo 2 ;; stunnel) echo 3 ;;
    haproxy) echo 4 ;; nginx-stream) echo 5 ;; nginx-http) echo 6 ;;
    ferry-tcp-base) echo 7 ;; ferry-http-base) echo 8 ;;
    esac
}
out_port()
{
    local i
    i=$(peer_index "$1")
    if [ "$i" = 0 ]; then echo "$PAIR_BACKEND"; else echo $((BASE_PORT + 10 * i)); fi
}
in_port()
{
    echo $(($(out_port "$1") + 1))
}

for p in $PEERS $REPL_PEERS; do
    [ "$p" = direct ] && continue
    for port in $(out_port "$p") $(in_port "$p") $(($(out_port "$p") + 5)); do
        port_busy "$port" && die "127.0.0.1:$port is in use (choose another --base-port)"
    done
done
for port in "$BACKEND_PORT" "$POUCH_S_PORT" "$POUCH_T_PORT"; do
    port_busy "$port" && die "127.0.0.1:$port is in use (choose another --base-port)"
done

# ---------------------------------------------------------------------------------------------
# PKI: a private CA, a (outbound side), b (inbound side), c (same CA, a name B must refuse).

PKI=$WORK/pki
"$FERRY" certs init-ca --dir "$PKI/ca" --name "ferry bench CA" --key-type ec >/dev/null
for n in a b c; do
    "$FERRY" certs issue --ca "$PKI/ca" --name "$n.bench.test" --ip 127.0.0.1 --key-type ec \
        --out "$PKI/$n" >/dev/null
    cat "$PKI/$n/$n.bench.test.crt" "$PKI/$n/$n.bench.test.key" >"$PKI/$n/$n.pem"
    chmod 600 "$PKI/$n/$n.pem"
done
CA=$PKI/ca/ca.crt
A_CRT=$PKI/a/a.bench.test.crt A_KEY=$PKI/a/a.bench.test.key A_PEM=$PKI/a/a.pem
B_CRT=$PKI/b/b.bench.test.crt B_KEY=$PKI/b/b.bench.test.key B_PEM=$PKI/b/b.pem

# ---------------------------------------------------------------------------------------------
# ferry's newer keys: `workers:` (top level) and `pool:` (outbound http listener) are written
# only when a ferry binary accepts them (`ferry check` on a probe config), so the bench runs with
# ferry before and after they land.  Each binary is probed on its own: with --ferry-base, the
# earlier build may accept fewer keys than the current one.

# ferry_accepts BIN YAML_TOP LISTENER_EXTRA: whether `BIN check` passes a config with those lines.
ferry_accepts()
{
    local f=$WORK/probe.yaml
    cat >"$f" <<EOF
tls: {cert: $A_CRT, key: $A_KEY, ca: $CA}
$2
listeners:
  - name: probe
    mode: outbound
    listen: "127.0.0.1:$(out_port ferry-http)"
    peer: "b.bench.test:$(in_port ferry-http)"
    protocol: http
$3
EOF
    "$1" check -c "$f" >"$WORK/probe.log" 2>&1
}

# ferry_probe BIN NAME: the `workers:` and `pool:` lines BIN accepts, in PROBE_WORKERS_LINE,
# PROBE_POOL_LINE, and what the report says about them in PROBE_WORKERS_USED, PROBE_POOL_USED.
ferry_probe()
{
    local bin=$1 name=$2 pool
    PROBE_WORKERS_LINE=""
    PROBE_WORKERS_USED="not set (ferry's default)"
    if [ "$FERRY_WORKERS" != none ]; then
        if ferry_accepts "$bin" "workers: $FERRY_WORKERS" ""; then
            PROBE_WORKERS_LINE="workers: $FERRY_WORKERS"
            PROBE_WORKERS_USED=$FERRY_WORKERS
        else
            note "$name does not accept 'workers: $FERRY_WORKERS' ($(grep -m1 -o '"workers".*' "$WORK/probe.log" || true)); left out"
            PROBE_WORKERS_USED="not set (ferry does not accept workers: yet)"
        fi
    fi
    PROBE_POOL_LINE=""
    PROBE_POOL_USED="not set"
    if [ "$FERRY_POOL" != none ]; then
        pool="pool: {max_idle: ${FERRY_POOL%%,*}, idle_timeout: ${FERRY_POOL#*,}}"
        if ferry_accepts "$bin" "" "    $pool"; then
            PROBE_POOL_LINE="    $pool"
            PROBE_POOL_USED="{max_idle: ${FERRY_POOL%%,*}, idle_timeout: ${FERRY_POOL#*,}}"
        else
            note "$name does not accept '$pool' ($(grep -m1 -o '"pool".*' "$WORK/probe.log" || true)); left out"
            PROBE_POOL_USED="not set (ferry does not accept pool: yet)"
        fi
    fi
}

ferry_probe "$FERRY" "this ferry"
FERRY_WORKERS_LINE=$PROBE_WORKERS_LINE FERRY_WORKERS_USED=$PROBE_WORKERS_USED
FERRY_POOL_LINE=$PROBE_POOL_LINE FERRY_POOL_USED=$PROBE_POOL_USED
BASE_WORKERS_LINE="" BASE_WORKERS_USED="" BASE_POOL_LINE="" BASE_POOL_USED=""
if [ -n "$FERRY_BASE" ]; then
    ferry_probe "$FERRY_BASE" "the base ferry ($FERRY_BASE)"
    BASE_WORKERS_LINE=$PROBE_WORKERS_LINE BASE_WORKERS_USED=$PROBE_WORKERS_USED
    BASE_POOL_LINE=$PROBE_POOL_LINE BASE_POOL_USED=$PROBE_POOL_USED
fi

NGINX_USER=""
[ "$(id -u)" = 0 ] && NGINX_USER="user root;"

# nginx_common DIR: the main-context lines every nginx here shares.
nginx_common()
{
    cat <<EOF
$NGINX_USER
daemon off;
master_process on;
pid $1/nginx.pid;
error_log $1/error.log warn;
worker_rlimit_nofile $NOFILE;
events { worker_connections $NGINX_WC; }
EOF
}

# nginx_http_paths DIR: temp paths inside DIR (inside an http block).
nginx_http_paths()
{
    cat <<EOF
    client_body_temp_path $1/client_body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_max_body_size 0;
EOF
}

# start_nginx ROLE DIR
start_nginx()
{
    local role=$1 dir=$2
    spawn "$role" "$dir/stdout.log" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
}

# ---------------------------------------------------------------------------------------------
# Backend: one nginx worker, static files of 86 B, 16 KiB and 1 MiB; under /c/ the same files
# chunked.  nginx sends a static file with Content-Length; a body filter that may change the
# length drops it, and nginx then answers an HTTP/1.1 request with Transfer-Encoding: chunked.
# The filter is sub_filter (built into Debian's nginx) with a pattern that cannot occur in the
# files (ASCII text in random bytes), so the body is the file byte for byte; it costs the
# backend less CPU than `ssi on` would (a scan for the pattern instead of the SSI parser).
# start_backend checks both with curl before anything is measured.

WWW=$WORK/backend/www
CHUNKED_PATTERN="ferry-bench: this text is not in any served file"
start_backend()
{
    local dir=$WORK/backend f
    mkdir -p "$WWW"
    head -c 85 /dev/zero | tr '\0' 'x' >"$WWW/86"
    echo >>"$WWW/86"
    head -c 16384 /dev/urandom >"$WWW/16k"
    head -c 1048576 /dev/urandom >"$WWW/1m"
    {
        echo "worker_processes 1;"
        nginx_common "$dir"
        cat <<EOF
http {
$(nginx_http_paths "$dir")
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    open_file_cache max=16;
    server {
        listen 127.0.0.1:$BACKEND_PORT backlog=4096;
        root $WWW;
        location /c/ {
            alias $WWW/;
            sub_filter_types *;
            sub_filter "$CHUNKED_PATTERN" "";
            sub_filter_once on;
        }
    }
}
EOF
    } >"$dir/nginx.conf"
    start_nginx x "$dir"
    CUR_PIDS=()
    wait_port "$BACKEND_PORT" || die "backend nginx did not start: $(tail -3 "$dir/error.log")"
    # /c/: chunked, without Content-Length, and the bytes of the file.
    for f in 16k 1m; do
        rm -f "$WORK/got" "$WORK/got.head"
        curl -sf --max-time 10 -D "$WORK/got.head" -o "$WORK/got" \
            "http://127.0.0.1:$BACKEND_PORT/c/$f" || die "backend: GET /c/$f failed"
        grep -qi '^transfer-encoding: *chunked' "$WORK/got.head" ||
            die "backend: /c/$f is not chunked: $(tr '\r\n' '  ' <"$WORK/got.head")"
        ! grep -qi '^content-length:' "$WORK/got.head" ||
            die "backend: /c/$f has a Content-Length: $(tr '\r\n' '  ' <"$WORK/got.head")"
        cmp -s "$WORK/got" "$WWW/$f" || die "backend: /c/$f is not the file $f byte for byte"
    done
}

# ---------------------------------------------------------------------------------------------
# The pairs.  start_<peer> RESUME(on|off) DIR OUT IN ACON: start A (listening on OUT, dialling
# ACON: B's port IN, or the tlspeek relay in front of it) and B (forwarding to PAIR_BACKEND).

# start_ferry BUILD(new|base) PROTO RESUME DIR OUT IN ACON: the base pairs differ only in the
# binary and in the keys it accepts (ferry_probe).
start_ferry()
{
    local build=$1 proto=$2 resume=$3 dir=$4 out=$5 in=$6 acon=$7 r=true pool=""
    local bin=$FERRY workers=$FERRY_WORKERS_LINE pool_line=$FERRY_POOL_LINE
    if [ "$build" = base ]; then
        bin=$FERRY_BASE workers=$BASE_WORKERS_LINE pool_line=$BASE_POOL_LINE
    fi
    [ "$resume" = on ] || r=false
    [ "$proto" = http ] && pool=$pool_line
    cat >"$dir/a.yaml" <<EOF
$workers
tls:
  cert: $A_CRT
  key: $A_KEY
  ca: $CA
  min_version: "1.3"
  session_resumption: $r
listeners:
  - name: out
    mode: outbound
    listen: "127.0.0.1:$out"
    peer: "b.bench.test:$in"
    connect: "127.0.0.1:$acon"
    protocol: $proto
$pool
log:
  level: warn
limits:
  max_connections: $MAXCONN
EOF
    cat >"$dir/b.yaml" <<EOF
$workers
tls:
  cert: $B_CRT
  key: $B_KEY
  ca: $CA
  min_version: "1.3"
  session_resumption: $r
listeners:
  - name: in
    mode: inbound
    listen: "127.0.0.1:$in"
    backend: "127.0.0.1:$PAIR_BACKEND"
    protocol: $proto
    allow: ["a.bench.test"]
log:
  level: warn
limits:
  max_connections: $MAXCONN
EOF
    spawn b "$dir/b.log" "$bin" run -c "$dir/b.yaml"
    spawn a "$dir/a.log" "$bin" run -c "$dir/a.yaml"
}

start_stunnel()
{
    local resume=$1 dir=$2 out=$3 in=$4 acon=$5 r=yes ticket=""
    [ "$resume" = on ] || { r=no; ticket="options = NO_TICKET"; }
    cat >"$dir/a.conf" <<EOF
foreground = yes
pid =
debug = 3
[out]
client = yes
accept = 127.0.0.1:$out
connect = 127.0.0.1:$acon
cert = $A_CRT
key = $A_KEY
CAfile = $CA
verifyChain = yes
checkHost = b.bench.test
sni = b.bench.test
sslVersionMin = TLSv1.3
sessionResume = $r
TIMEOUTclose = 0
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
EOF
    cat >"$dir/b.conf" <<EOF
foreground = yes
pid =
debug = 3
[in]
accept = 127.0.0.1:$in
connect = 127.0.0.1:$PAIR_BACKEND
cert = $B_CRT
key = $B_KEY
CAfile = $CA
verifyChain = yes
checkHost = a.bench.test
sslVersionMin = TLSv1.3
sessionResume = $r
$ticket
TIMEOUTclose = 0
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
EOF
    spawn b "$dir/b.log" "$STUNNEL" "$dir/b.conf"
    spawn a "$dir/a.log" "$STUNNEL" "$dir/a.conf"
}

start_haproxy()
{
    local resume=$1 dir=$2 out=$3 in=$4 acon=$5 reuse="" tickets="" cache=""
    if [ "$resume" = off ]; then
        reuse="no-ssl-reuse"
        tickets="no-tls-tickets"
        cache="tune.ssl.cachesize 0"
    fi
    cat >"$dir/a.cfg" <<EOF
global
    maxconn $PROC_MAXCONN
defaults
    mode tcp
    timeout connect 5s
    timeout client 300s
    timeout server 300s
frontend out
    bind 127.0.0.1:$out
    default_backend peer
backend peer
    server b 127.0.0.1:$acon ssl crt $A_PEM ca-file $CA verify required verifyhost b.bench.test sni str(b.bench.test) ssl-min-ver TLSv1.3 $reuse
EOF
    cat >"$dir/b.cfg" <<EOF
global
    maxconn $PROC_MAXCONN
    $cache
defaults
    mode tcp
    timeout connect 5s
    timeout client 300s
    timeout server 300s
frontend in
    bind 127.0.0.1:$in ssl crt $B_PEM ca-file $CA verify required ssl-min-ver TLSv1.3 $tickets
    # the client certificate's name (CN: HAProxy 2.6 has no SAN fetch)
    tcp-request session reject unless { ssl_c_s_dn(CN) -m str a.bench.test }
    default_backend db
backend db
    server db 127.0.0.1:$PAIR_BACKEND
EOF
    spawn b "$dir/b.log" haproxy -db -f "$dir/b.cfg"
    spawn a "$dir/a.log" haproxy -db -f "$dir/a.cfg"
}

start_nginx_stream()
{
    local resume=$1 dir=$2 out=$3 in=$4 acon=$5 server_resume
    if [ "$resume" = on ]; then
        server_resume="ssl_session_tickets on;"
    else
        server_resume="ssl_session_tickets off; ssl_session_cache off;"
    fi
    mkdir -p "$dir/a" "$dir/b"
    {
        echo "load_module $NGINX_STREAM_MODULE;"
        echo "worker_processes auto;"
        nginx_common "$dir/a"
        cat <<EOF
stream {
    server {
        listen 127.0.0.1:$out backlog=4096;
        proxy_pass 127.0.0.1:$acon;
        proxy_ssl on;
        proxy_ssl_certificate $A_CRT;
        proxy_ssl_certificate_key $A_KEY;
        proxy_ssl_trusted_certificate $CA;
        proxy_ssl_verify on;
        proxy_ssl_name b.bench.test;
        proxy_ssl_server_name on;
        proxy_ssl_protocols TLSv1.3;
        proxy_ssl_session_reuse $resume;
    }
}
EOF
    } >"$dir/a/nginx.conf"
    {
        echo "load_module $NGINX_STREAM_MODULE;"
        echo "worker_processes auto;"
        nginx_common "$dir/b"
        cat <<EOF
stream {
    # the client certificate's name: anything but a.bench.test goes to a closed port
    map \$ssl_client_s_dn \$bench_upstream {
        "CN=a.bench.test" db;
        default refuse;
    }
    upstream db { server 127.0.0.1:$PAIR_BACKEND; }
    upstream refuse { server 127.0.0.1:9; }
    server {
        listen 127.0.0.1:$in ssl backlog=4096;
        ssl_certificate $B_CRT;
        ssl_certificate_key $B_KEY;
        ssl_client_certificate $CA;
        ssl_verify_client on;
        ssl_protocols TLSv1.3;
        $server_resume
        proxy_pass \$bench_upstream;
    }
}
EOF
    } >"$dir/b/nginx.conf"
    start_nginx b "$dir/b"
    start_nginx a "$dir/a"
}

start_nginx_http()
{
    local resume=$1 dir=$2 out=$3 in=$4 acon=$5 server_resume
    if [ "$resume" = on ]; then
        server_resume="ssl_session_tickets on;"
    else
        server_resume="ssl_session_tickets off; ssl_session_cache off;"
    fi
    mkdir -p "$dir/a" "$dir/b"
    {
        echo "worker_processes auto;"
        nginx_common "$dir/a"
        cat <<EOF
http {
$(nginx_http_paths "$dir/a")
    upstream peer {
        server 127.0.0.1:$acon;
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:$out backlog=4096;
        location / {
            proxy_pass https://peer;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_max_temp_file_size 0;
            proxy_ssl_certificate $A_CRT;
            proxy_ssl_certificate_key $A_KEY;
            proxy_ssl_trusted_certificate $CA;
            proxy_ssl_verify on;
            proxy_ssl_name b.bench.test;
            proxy_ssl_server_name on;
            proxy_ssl_protocols TLSv1.3;
            proxy_ssl_session_reuse $resume;
        }
    }
}
EOF
    } >"$dir/a/nginx.conf"
    {
        echo "worker_processes auto;"
        nginx_common "$dir/b"
        cat <<EOF
http {
$(nginx_http_paths "$dir/b")
    upstream db {
        server 127.0.0.1:$PAIR_BACKEND;
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:$in ssl backlog=4096;
        ssl_certificate $B_CRT;
        ssl_certificate_key $B_KEY;
        ssl_client_certificate $CA;
        ssl_verify_client on;
        ssl_protocols TLSv1.3;
        $server_resume
        if (\$ssl_client_s_dn != "CN=a.bench.test") {
            return 403;
        }
        location / {
            proxy_pass http://db;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_max_temp_file_size 0;
        }
    }
}
EOF
    } >"$dir/b/nginx.conf"
    start_nginx b "$dir/b"
    start_nginx a "$dir/a"
}

# start_pair PEER RESUME: start both sides, wait for them, check one request goes through.
# Returns 1 (after stopping what it started) when the pair does not answer.
start_pair()
{
    local peer=$1 resume=$2 out in dir
    out=$(out_port "$peer")
    in=$(in_port "$peer")
    CUR_PIDS=()
    CUR_A=()
    CUR_B=()
    [ "$peer" = direct ] && return 0
    dir=$WORK/$peer-$resume-$RANDOM
    mkdir -p "$dir"
    # --smoke: A dials tlspeek.py, which relays to B and logs whether A offers resumption.
    local acon=$in
    if [ "$MODE" = smoke ]; then
        acon=$((out + 5))
        PEEK_LOG=$dir/peek.log
        : >"$PEEK_LOG"
        spawn x "$dir/tlspeek.log" python3 "$BENCH_DIR/tlspeek.py" "$acon" "$in" "$PEEK_LOG"
    fi
    case "$peer" in
    ferry-tcp) start_ferry new tcp "$resume" "$dir" "$out" "$in" "$acon" ;;
    ferry-http) start_ferry new http "$resume" "$dir" "$out" "$in" "$acon" ;;
    ferry-tcp-base) start_ferry base tcp "$resume" "$dir" "$out" "$in" "$acon" ;;
    ferry-http-base) start_ferry base http "$resume" "$dir" "$out" "$in" "$acon" ;;
    stunnel) start_stunnel "$resume" "$dir" "$out" "$in" "$acon" ;;
    haproxy) start_haproxy "$resume" "$dir" "$out" "$in" "$acon" ;;
    nginx-stream) start_nginx_stream "$resume" "$dir" "$out" "$in" "$acon" ;;
    nginx-http) start_nginx_http "$resume" "$dir" "$out" "$in" "$acon" ;;
    esac
    if wait_port "$in" && wait_port "$acon" && wait_port "$out" &&
        curl -sf --retry 5 --retry-connrefused --retry-delay 0 --max-time 5 -o /dev/null \
            "http://127.0.0.1:$out$CHECK_PATH"; then
        return 0
    fi
    fail_note "$peer (resumption $resume) did not start or does not answer; its logs:"
    find "$dir" -name '*.log' -exec tail -n 5 {} + >&2 2>/dev/null || true
    stop_pair
    return 1
}

stop_pair()
{
    kill_pids "${CUR_PIDS[@]}"
    CUR_PIDS=()
    CUR_A=()
    CUR_B=()
}

# side_pids SIDE(a|b): the processes of one side of the running pair, with their children
# (nginx workers).
side_pids()
{
    local p
    if [ "$1" = a ]; then set -- "${CUR_A[@]}"; else set -- "${CUR_B[@]}"; fi
    for p in "$@"; do
        echo "$p"
        pgrep -P "$p" || true
    done
}

# cpu_ticks SIDE: user+system clock ticks of one side's processes (every thread, the exited
# ones included: /proc/PID/stat fields 14 and 15).
cpu_ticks()
{
    local p sum=0 t
    for p in $(side_pids "$1"); do
        t=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') || t=0
        sum=$((sum + ${t:-0}))
    done
    echo "$sum"
}

# rss_kib SIDE: resident set of one side's processes.
rss_kib()
{
    local p sum=0 t
    for p in $(side_pids "$1"); do
        t=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null) || t=0
        sum=$((sum + ${t:-0}))
    done
    echo "$sum"
}

# ---------------------------------------------------------------------------------------------
# Workloads.

# check_wrk PEER WORKLOAD CONNS LINE: print a one-line summary of the wrk result and check it:
# requests done, no non-2xx answer, and bytes per response between the body's size and the
# body plus 600 bytes of head (so a pair that truncates or pads bodies fails); a chunked body
# (k16c, m1c) may add body/64 of chunk lines (chunks of 512 B or more: the backend sends 32 KiB
# chunks, and a proxy may re-chunk in its buffer size).  Connection errors and timeouts fail
# only --smoke.  Returns 1 (after fail_note) on a problem.
check_wrk()
{
    local peer=$1 wl=$2 out
    out=$(python3 - "$4" "$wl" "$MODE" "$3" <<'EOF'
import json, sys
w = json.loads(sys.argv[1]); wl = sys.argv[2]; smoke = sys.argv[3] == "smoke"
conns = int(sys.argv[4])
body = {"m1": 1048576, "k16": 16384, "m1c": 1048576, "k16c": 16384}.get(wl, 86)
head = 600 + (body // 64 if wl in ("k16c", "m1c") else 0)
out = []
if not w:
    print("no result")
    out.append("wrk gave no result")
else:
    s = w["duration_us"] / 1e6
    errs = w["err_connect"] + w["err_read"] + w["err_write"] + w["err_timeout"]
    if wl in ("m1", "m1c"):
        print("%.1f MB/s, %d errors" % (w["bytes"] / s / 1e6, errs + w["err_status"]))
    else:
        print("%.0f /s, %d errors" % (w["requests"] / s, errs + w["err_status"]))
    if not w["requests"]:
        out.append("no request completed")
    else:
        if w["err_status"]:
            out.append("%d non-2xx answers" % w["err_status"])
        per = w["bytes"] / w["requests"]
        # wrk counts every byte read, also those of the responses still running when it stops
        if per < body or per > body + head + conns * (body + head) / w["requests"]:
            out.append("%.0f bytes per response, want %d + head" % (per, body))
        if errs and smoke:
            out.append("%d connect/read/write/timeout errors" % errs)
print("; ".join(out))
EOF
    )
    note "$(printf '%-12s %-13s rep %d: %s' "$peer" "$wl" "$rep" "$(sed -n 1p <<<"$out")")"
    out=$(sed -n 2p <<<"$out")
    [ -z "$out" ] && return 0
    fail_note "$peer $wl: $out"
    return 1
}

# run_wrk PEER WORKLOAD REP RESUME
run_wrk()
{
    local peer=$1 wl=$2 rep=$3 resume=$4 out path conns hdr=() a0 a1 b0 b1 log line threads
    out=$(out_port "$peer")
    case "$wl" in
    small) path=/86 conns=$CONNS_SMALL ;;
    k16) path=/16k conns=$CONNS_K16 ;;
    m1) path=/1m conns=$CONNS_M1 ;;
    k16c) path=/c/16k conns=$CONNS_K16 ;;
    m1c) path=/c/1m conns=$CONNS_M1 ;;
    conn_resumed | conn_full | pooled) path=/86 conns=$CONNS_CONN hdr=(-H "Connection: close") ;;
    esac
    threads=$(nproc)
    [ "$threads" -le "$conns" ] || threads=$conns
    log=$WORK/wrk-$peer-$wl-$rep.txt
    a0=$(cpu_ticks a)
    b0=$(cpu_ticks b)
    wrk -t"$threads" -c"$conns" -d"${DURATION}s" --timeout 5s -s "$BENCH_DIR/wrk-report.lua" \
        "${hdr[@]}" "http://127.0.0.1:$out$path" >"$log" 2>&1 || true
    a1=$(cpu_ticks a)
    b1=$(cpu_ticks b)
    line=$(sed -n 's/^WRKJSON //p' "$log")
    if [ -z "$line" ]; then
        note "$peer $wl rep $rep: wrk gave no result: $(tail -n 3 "$log" | tr '\n' ' ')"
        line=null
    fi
    printf '{"peer":"%s","workload":"%s","rep":%d,"resumption":"%s","conns":%d,"path":"%s","cpu_ticks":%d,"cpu_ticks_a":%d,"cpu_ticks_b":%d,"wrk":%s}\n' \
        "$peer" "$wl" "$rep" "$resume" "$conns" "$path" $((a1 - a0 + b1 - b0)) $((a1 - a0)) \
        $((b1 - b0)) "$line" >>"$RESULTS"
    check_wrk "$peer" "$wl" "$conns" "$line" || true
}

# run_idle PEER N: hold N keep-alive connections open through the pair, measure the RSS of
# both sides before and after.
run_idle()
{
    local peer=$1 n=$2 out a0 a1 b0 b1 stop log pid i ready srcs=1
    out=$(out_port "$peer")
    stop=$WORK/idle-stop-$peer-$n
    log=$WORK/idle-$peer-$n.txt
    rm -f "$stop"
    # more than 20,000 client connections to one port: spread them over 127.0.0.x sources
    [ "$n" -le 20000 ] || srcs=$(((n + 19999) / 20000))
    [ "$MODE" = smoke ] || sleep 0.5
    a0=$(rss_kib a)
    b0=$(rss_kib b)
    python3 "$BENCH_DIR/idle.py" --port "$out" --n "$n" --stop "$stop" --hold 300 \
        --sources "$srcs" >"$log" 2>&1 &
    pid=$!
    ready=""
    for i in $(seq 1 3000); do
        ready=$(sed -n 's/^READY //p' "$log")
        [ -n "$ready" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    [ "$MODE" = smoke ] || sleep 1
    a1=$(rss_kib a)
    b1=$(rss_kib b)
    touch "$stop"
    wait "$pid" 2>/dev/null || true
    local ok=0 failed=0
    if [ -n "$ready" ]; then
        ok=${ready#ok=}
        ok=${ok%% *}
        failed=${ready##*failed=}
    fi
    printf '{"peer":"%s","workload":"idle","rep":1,"n":%d,"ok":%d,"failed":%d,"rss0_kib":%d,"rss1_kib":%d,"rss0_a_kib":%d,"rss1_a_kib":%d,"rss0_b_kib":%d,"rss1_b_kib":%d}\n' \
        "$peer" "$n" "$ok" "$failed" $((a0 + b0)) $((a1 + b1)) "$a0" "$a1" "$b0" "$b1" >>"$RESULTS"
    if [ "$ok" -gt 0 ]; then
        note "$(printf '%-12s %-13s %6d: %d held (%d failed), %d -> %d KiB, %.1f KiB/pair' \
            "$peer" idle "$n" "$ok" "$failed" $((a0 + b0)) $((a1 + b1)) \
            "$(awk -v a=$((a0 + b0)) -v b=$((a1 + b1)) -v n="$ok" 'BEGIN {print (b - a) / n}')")"
    else
        note "$peer idle $n: no connection held ($(tr '\n' ' ' <"$log"))"
    fi
    # A peer may cap its connections below N by its own rule (stunnel: 125/256 of its open-file
    # limit): the report shows how many were held; only --smoke, with a handful, fails on it.
    if [ "$ok" != "$n" ]; then
        if [ "$MODE" = smoke ] || [ "$ok" = 0 ]; then
            fail_note "$peer idle: $ok of $n connections held, $failed failed"
        else
            note "$peer idle: $ok of $n connections held, $failed failed (KiB/pair is over the $ok held)"
        fi
    fi
}

# ---------------------------------------------------------------------------------------------
# Replication: two pouchdb-server nodes (in memory), S seeded with REPL_DOCS documents; S's
# replicator pushes them to an empty database of T, directly or through a pair whose B forwards
# to T.  One fresh target database per run, dropped afterwards.

POUCH=$BENCH_DIR/pouch.js

# launch_pouch NAME PORT: start one pouchdb-server node (wait_pouch waits for it).
launch_pouch()
{
    local name=$1 port=$2 dir=$WORK/pouch-$1
    mkdir -p "$dir"
    spawn x "$dir/server.log" env -C "$dir" node "$POUCH_NODE" --in-memory --host 127.0.0.1 \
        --port "$port" --config "$dir/config.json" --no-stdout-logs
    CUR_PIDS=()
}

wait_pouch()
{
    local name=$1 port=$2 dir=$WORK/pouch-$1
    wait_port "$port" 300 || die "pouchdb-server $name did not start: $(tail -n 5 "$dir/server.log")"
    curl -sf --retry 20 --retry-connrefused --retry-delay 0 --max-time 5 -o /dev/null \
        "http://127.0.0.1:$port/" || die "pouchdb-server $name does not answer"
}

# run_repl PEER REP: one timed replication (the pair, if any, is running).
run_repl()
{
    local peer=$1 rep=$2 db target line a0 a1 b0 b1
    db=dst-$peer-$rep
    target=http://127.0.0.1:$(out_port "$peer")/$db
    a0=$(cpu_ticks a)
    b0=$(cpu_ticks b)
    line=$(timeout -k 5 900 node "$POUCH" replicate --url "http://127.0.0.1:$POUCH_S_PORT" \
        --source src --target "$target" --count "$REPL_DOCS") || true
    a1=$(cpu_ticks a)
    b1=$(cpu_ticks b)
    case "$line" in '{'*) ;; *) line='{"ok":false,"error":"no answer from pouch.js"}' ;; esac
    printf '{"peer":"%s","workload":"repl","rep":%d,"docs":%d,"cpu_ticks":%d,"cpu_ticks_a":%d,"cpu_ticks_b":%d,"result":%s}\n' \
        "$peer" "$rep" "$REPL_DOCS" $((a1 - a0 + b1 - b0)) $((a1 - a0)) $((b1 - b0)) "$line" >>"$RESULTS"
    note "$(printf '%-12s %-13s rep %d: %s' "$peer" repl "$rep" "$line")"
    case "$line" in *'"ok":true'*) ;; *) fail_note "$peer repl: $line" ;; esac
    node "$POUCH" delete --url "http://127.0.0.1:$POUCH_T_PORT" --db "$db" >/dev/null || true
}

# ---------------------------------------------------------------------------------------------
# Smoke checks: every pair carries each file byte for byte, Connection: close, and refuses bad
# client certificates; resumption happens only when it is on.

smoke_peer()
{
    local peer=$1 out in f got
    out=$(out_port "$peer")
    in=$(in_port "$peer")
    for f in 86 16k 1m c/16k c/1m; do
        rm -f "$WORK/got"
        curl -sf --max-time 10 -o "$WORK/got" "http://127.0.0.1:$out/$f" || true
        cmp -s "$WORK/got" "$WWW/${f#c/}" || fail_note "$peer: /$f did not arrive byte for byte"
    done
    rm -f "$WORK/got"
    curl -sf --max-time 10 -H 'Connection: close' -o "$WORK/got" "http://127.0.0.1:$out/86" || true
    cmp -s "$WORK/got" "$WWW/86" || fail_note "$peer: /86 with Connection: close did not arrive"
    [ "$peer" = direct ] && return 0
    # B must refuse TLS without a client certificate, and with a certificate of another name.
    local tls=(-s --max-time 5 -o /dev/null -w '%{http_code}' --cacert "$CA"
        --resolve "b.bench.test:$in:127.0.0.1" "https://b.bench.test:$in/86")
    got=$(curl "${tls[@]}") || true
    [ "$got" != 200 ] || fail_note "$peer: inbound answered 200 without a client cert"
    got=$(curl --cert "$PKI/c/c.bench.test.crt" --key "$PKI/c/c.bench.test.key" "${tls[@]}") || true
    [ "$got" != 200 ] || fail_note "$peer: inbound answered 200 to c.bench.test"
    got=$(curl --cert "$A_CRT" --key "$A_KEY" "${tls[@]}") || true
    [ "$got" = 200 ] || fail_note "$peer: inbound refused a.bench.test ($got)"
    return 0
}

# smoke_resumption PEER RESUME: four new client connections (Connection: close) through A;
# count the ClientHellos A sent to B and those offering resumption (tlspeek.py).
smoke_resumption()
{
    local peer=$1 resume=$2 out i hellos psk accepted
    out=$(out_port "$peer")
    : >"$PEEK_LOG"
    for i in 1 2 3 4; do
        curl -sf --max-time 5 -H 'Connection: close' -o /dev/null "http://127.0.0.1:$out/86" || true
        sleep 0.05
    done
    hellos=$(grep -c '^hello' "$PEEK_LOG" || true)
    psk=$(grep -c '^hello psk=1' "$PEEK_LOG" || true)
    accepted=$(grep -c 'accepted=1' "$PEEK_LOG" || true)
    note "$peer ($resume): 4 client connections -> $hellos TLS handshakes A->B, $psk offering resumption, $accepted resumed"
    if [ "$resume" = off ] && [ "$psk" -gt 0 ]; then
        fail_note "$peer: resumption off, yet A offered a session"
    fi
    if [ "$resume" = on ] && [ "$hellos" -gt 1 ] && [ "$accepted" = 0 ]; then
        note "SMOKE WARN $peer: resumption on, yet no handshake A->B was resumed"
    fi
    return 0
}

# ---------------------------------------------------------------------------------------------
# Main.

T_START=$(date +%s)
start_backend

STUNNEL_V=$("$STUNNEL" -version 2>&1 | sed -n 's/^\(stunnel [0-9.]*\).*/\1/p' | head -n 1)
python3 - "$OUT_DIR/meta.json" <<EOF
import json, sys, subprocess
def out(cmd):
    try:
        r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10)
        return (r.stdout + r.stderr).strip().splitlines()[0]
    except Exception as e:
        return "unknown (%s)" % e
meta = {
    "mode": "$MODE", "command": "$COMMAND_LINE", "duration_s": $DURATION, "reps": $REPS,
    "idle_n": [int(n) for n in "$IDLE_LIST".split()], "open_files": $NOFILE,
    "repl_docs": $REPL_DOCS, "repl_peers": "$REPL_PEERS".split(),
    "conns": {"small": $CONNS_SMALL, "k16": $CONNS_K16, "m1": $CONNS_M1,
              "k16c": $CONNS_K16, "m1c": $CONNS_M1,
              "conn_full": $CONNS_CONN, "conn_resumed": $CONNS_CONN, "pooled": $CONNS_CONN},
    "peers": "$PEERS".split(), "workloads": "$WORKLOADS".split(),
    "nproc": int(out("nproc")), "cpu": out("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-").strip(),
    "memory": out("free -h | awk '/^Mem:/ {print \$2}'"),
    "kernel": out("uname -r"), "clk_tck": int(out("getconf CLK_TCK")), "date": out("date -u +%Y-%m-%dT%H:%M:%SZ"),
    "versions": {
        "ferry": out("'$FERRY' version"), "ferry_git": out("git -C '$REPO' describe --always --dirty"),
        "openssl": out("openssl version"), "stunnel": "$STUNNEL_V",
        "haproxy": out("haproxy -v"), "nginx": out("nginx -v"), "wrk": out("wrk -v"),
        "node": out("node --version 2>/dev/null || echo none"),
        "pouchdb_server": out("node -p 'require(\"$REPO/tests/node_modules/pouchdb-server/package.json\").version' 2>/dev/null || echo none"),
    },
    "ferry_config": {"workers": "$FERRY_WORKERS_USED", "pool": "$FERRY_POOL_USED"},
    "ferry_base": None if not "$FERRY_BASE" else {
        "path": "$FERRY_BASE", "version": out("'$FERRY_BASE' version"),
        "git": out("git -C '$(dirname "${FERRY_BASE:-/}")' describe --always --dirty 2>/dev/null || echo unknown"),
        "workers": "$BASE_WORKERS_USED", "pool": "$BASE_POOL_USED"},
    "threads": {"ferry": "workers: $FERRY_WORKERS_USED", "stunnel": "thread per connection",
                "haproxy": "nbthread default = nproc", "nginx": "worker_processes auto",
                "backend nginx": "1 worker"},
}
json.dump(meta, open(sys.argv[1], "w"), indent=2)
EOF

note "$MODE run: nproc $(nproc); $DURATION s per measurement, $REPS rep(s), idle ${IDLE_LIST// /,}; ferry workers: $FERRY_WORKERS_USED, pool: $FERRY_POOL_USED; results in $OUT_DIR"
[ -z "$FERRY_BASE" ] ||
    note "base ferry $FERRY_BASE ($(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["ferry_base"]["git"])' "$OUT_DIR/meta.json")): workers: $BASE_WORKERS_USED, pool: $BASE_POOL_USED"

# --smoke: the pouchdb-server nodes start now, while the pairs are checked (a measurement
# would not want their start-up beside it).
if has_wl repl && [ "$MODE" = smoke ]; then
    launch_pouch source "$POUCH_S_PORT"
    launch_pouch target "$POUCH_T_PORT"
fi

# Load workloads, interleaved: rep 1: every peer, rep 2: every peer, ...  A pair starts with
# resumption on for small, k16, m1, conn_resumed (and pooled for the HTTP proxies), then again
# with resumption off for conn_full.
any_on=0
for wl in $ON_WORKLOADS; do has_wl "$wl" && any_on=1; done
for rep in $(seq 1 "$REPS"); do
    for peer in $PEERS; do
        if [ "$any_on" = 1 ] || [ "$MODE" = smoke ]; then
            if start_pair "$peer" on; then
                if [ "$MODE" = smoke ]; then
                    smoke_peer "$peer"
                    [ "$peer" = direct ] || smoke_resumption "$peer" on
                fi
                for wl in $ON_WORKLOADS; do
                    has_wl "$wl" || continue
                    if [ "$wl" = pooled ]; then
                        case " $POOLED_PEERS " in *" $peer "*) ;; *) continue ;; esac
                    fi
                    run_wrk "$peer" "$wl" "$rep" on
                done
                # --smoke: a few idle connections in the same pair (no fresh pair: it is a check)
                if [ "$MODE" = smoke ] && has_wl idle && [ "$peer" != direct ]; then
                    run_idle "$peer" "$IDLE_TOP"
                fi
                stop_pair
            fi
        fi
        if has_wl conn_full || { [ "$MODE" = smoke ] && [ "$peer" != direct ]; }; then
            if start_pair "$peer" off; then
                if [ "$MODE" = smoke ] && [ "$peer" != direct ]; then
                    smoke_peer "$peer"
                    smoke_resumption "$peer" off
                fi
                has_wl conn_full && run_wrk "$peer" conn_full "$rep" off
                stop_pair
            fi
        fi
    done
done

# Idle connections: a fresh pair per peer and count, so that the heap of the load runs does
# not hide the cost of a connection.
if has_wl idle && [ "$MODE" != smoke ]; then
    for n in $IDLE_LIST; do
        for peer in $PEERS; do
            [ "$peer" = direct ] && continue
            if start_pair "$peer" on; then
                run_idle "$peer" "$n"
                stop_pair
            fi
        done
    done
fi

# Replication, interleaved the same way: rep 1: direct, each pair; rep 2: ...
if has_wl repl; then
    if [ "$MODE" != smoke ]; then
        launch_pouch source "$POUCH_S_PORT"
        launch_pouch target "$POUCH_T_PORT"
    fi
    wait_pouch source "$POUCH_S_PORT"
    wait_pouch target "$POUCH_T_PORT"
    line=$(node "$POUCH" seed --url "http://127.0.0.1:$POUCH_S_PORT" --db src --count "$REPL_DOCS") ||
        die "seeding pouchdb-server failed: $line"
    note "pouchdb-server: $line"
    # Warm-up (not measured, not in --smoke): the first replication between fresh nodes is
    # much slower (JIT, heap growth), so the whole database is replicated once, directly.
    if [ "$MODE" != smoke ]; then
        node "$POUCH" replicate --url "http://127.0.0.1:$POUCH_S_PORT" --source src \
            --target "http://127.0.0.1:$POUCH_T_PORT/warm" --count "$REPL_DOCS" >/dev/null ||
            fail_note "pouchdb-server warm-up replication failed"
        node "$POUCH" delete --url "http://127.0.0.1:$POUCH_T_PORT" --db warm || true
    fi
    PAIR_BACKEND=$POUCH_T_PORT
    CHECK_PATH=/
    for rep in $(seq 1 "$REPS"); do
        for peer in direct $REPL_PEERS; do
            if start_pair "$peer" on; then
                run_repl "$peer" "$rep"
                stop_pair
            fi
        done
    done
    PAIR_BACKEND=$BACKEND_PORT
    CHECK_PATH=/86
fi

ELAPSED=$(($(date +%s) - T_START))
python3 "$BENCH_DIR/report.py" "$OUT_DIR" "$ELAPSED" >"$OUT_DIR/report.md" || die "report.py failed"
cat "$OUT_DIR/report.md"
note "results: $OUT_DIR/results.json, $OUT_DIR/report.md ($ELAPSED s)"
if [ "$FAILS" -gt 0 ]; then
    die "$MODE: $FAILS check(s) failed (see FAIL lines above)"
fi
[ "$MODE" = smoke ] && note "smoke: every pair passed every check"
exit 0
