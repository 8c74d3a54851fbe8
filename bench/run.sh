#!/usr/bin/env bash
# bench/run.sh: ferry against stunnel, HAProxy and nginx, side by side, in one run (issue 7).
#
# Topology, for every peer: a "pair" = an outbound proxy A and an inbound proxy B, both on
# 127.0.0.1, TLS 1.3, ECDSA P-256 certificates made at run time with `ferry certs`:
#
#   wrk / idle.py --plain--> A (outbound) ==mTLS==> B (inbound) --plain--> nginx backend
#
# B requires and verifies A's client certificate and checks its name; A verifies B's chain and
# host name.  The backend is one nginx worker serving static files of 86 B, 16 KiB and 1 MiB.
# Workloads run interleaved by repetition (rep 1: every peer, rep 2: every peer, ...); the
# report gives medians, the spread (min-max), proxy CPU time per request from /proc, and the
# ratio of ferry to the best L4 peer (stunnel, HAProxy mode tcp, nginx stream).
#
# Usage: bench/run.sh [--quick | --smoke] [options]; bench/run.sh --help
# See bench/README.md.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)

ALL_PEERS="direct ferry-tcp ferry-http stunnel haproxy nginx-stream nginx-http"
ALL_WORKLOADS="small k16 m1 conn_resumed conn_full idle"

# Defaults: about 7 minutes on 2 cores (7 peers x 5 load workloads x 5 s x 2 reps + idle).
DURATION=5
REPS=2
IDLE_N=1000
PEERS=$ALL_PEERS
WORKLOADS=$ALL_WORKLOADS
BASE_PORT=24100
OUT_DIR=""
FERRY=""
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

  --quick            duration 2 s, 1 rep, 200 idle connections (under 2 minutes)
  --smoke            no load: check every pair answers 86 B / 16 KiB / 1 MiB, Connection: close,
                     one idle connection, and refuses a missing or wrongly named client cert
  --duration S       seconds per measurement (default $DURATION)
  --reps N           repetitions, interleaved across peers (default $REPS)
  --idle N           idle connections for the memory workload (default $IDLE_N)
  --peers LIST       comma-separated subset of: ${ALL_PEERS// /,}
  --workloads LIST   comma-separated subset of: ${ALL_WORKLOADS// /,}
  --conns-small N / --conns-k16 N / --conns-m1 N / --conns-conn N
                     wrk connections (defaults $CONNS_SMALL / $CONNS_K16 / $CONNS_M1 / $CONNS_CONN)
  --ferry PATH       ferry binary (default: Release build in build-bench/, built if needed)
  --base-port P      first of the 127.0.0.1 ports used (default $BASE_PORT; P .. P+71)
  --out DIR          where results.json, results.jsonl and report.md go
                     (default \${TMPDIR:-/tmp}/ferry-bench-results/<time>)
  --no-install       do not apt-get install missing peers
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
    echo "bench: $*" >&2
}

while [ $# -gt 0 ]; do
    case "$1" in
    --quick) MODE=quick; DURATION=2; REPS=1; IDLE_N=200 ;;
    --smoke) MODE=smoke; REPS=1; IDLE_N=1 ;;
    --duration) DURATION=${2:?}; shift ;;
    --reps) REPS=${2:?}; shift ;;
    --idle) IDLE_N=${2:?}; shift ;;
    --peers) PEERS=${2//,/ }; shift ;;
    --workloads) WORKLOADS=${2//,/ }; shift ;;
    --conns-small) CONNS_SMALL=${2:?}; shift ;;
    --conns-k16) CONNS_K16=${2:?}; shift ;;
    --conns-m1) CONNS_M1=${2:?}; shift ;;
    --conns-conn) CONNS_CONN=${2:?}; shift ;;
    --ferry) FERRY=${2:?}; shift ;;
    --base-port) BASE_PORT=${2:?}; shift ;;
    --out) OUT_DIR=${2:?}; shift ;;
    --no-install) INSTALL=0 ;;
    --keep) KEEP=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
    shift
done

for p in $PEERS; do
    case " $ALL_PEERS " in *" $p "*) ;; *) die "unknown peer '$p' (known: $ALL_PEERS)" ;; esac
done
for w in $WORKLOADS; do
    case " $ALL_WORKLOADS " in *" $w "*) ;; *) die "unknown workload '$w'" ;; esac
done
for v in "$DURATION" "$REPS" "$IDLE_N" "$BASE_PORT" "$CONNS_SMALL" "$CONNS_K16" "$CONNS_M1" \
    "$CONNS_CONN"; do
    case "$v" in '' | *[!0-9]*) die "not a positive integer: '$v'" ;; esac
done

# ---------------------------------------------------------------------------------------------
# Tools: install what is missing (Debian packages), build ferry in Release.

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
    echo "$missing"
}

missing=$(need_install)
if [ -n "$missing" ]; then
    [ "$INSTALL" = 1 ] || die "missing:$missing (run without --no-install, or apt-get install them)"
    note "installing:$missing"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    # shellcheck disable=SC2086
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing \
        >&2 || die "apt-get install failed"
    missing=$(need_install)
    [ -z "$missing" ] || die "still missing:$missing"
fi
STUNNEL=$(command -v stunnel4 || command -v stunnel)
NGINX_STREAM_MODULE=/usr/lib/nginx/modules/ngx_stream_module.so

if [ -z "$FERRY" ]; then
    FERRY=$REPO/build-bench/ferry
    note "building ferry (Release) in $REPO/build-bench"
    { cmake -S "$REPO" -B "$REPO/build-bench" -DCMAKE_BUILD_TYPE=Release &&
        cmake --build "$REPO/build-bench" -j"$(nproc)" --target ferry; } >"${TMPDIR:-/tmp}/ferry-bench-build.log" 2>&1 ||
        die "ferry build failed, see ${TMPDIR:-/tmp}/ferry-bench-build.log"
fi
[ -x "$FERRY" ] || die "no ferry binary at $FERRY"

# ---------------------------------------------------------------------------------------------
# Work dir, output dir, cleanup.

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench.XXXXXX")
if [ -z "$OUT_DIR" ]; then
    OUT_DIR=${TMPDIR:-/tmp}/ferry-bench-results/$(date +%Y%m%d-%H%M%S)
fi
mkdir -p "$OUT_DIR"
RESULTS=$OUT_DIR/results.jsonl
: >"$RESULTS"

ALL_PIDS=()  # every server this script started, for the trap
CUR_PIDS=()  # the servers of the peer now running

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

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if [ "$NOFILE" != unlimited ] && [ "$NOFILE" -lt $((IDLE_N * 6 + 1000)) ]; then
    die "open-file limit $NOFILE is too low for --idle $IDLE_N (need about $((IDLE_N * 6 + 1000)))"
fi
MAXCONN=$((IDLE_N * 2 + 4096))

# spawn LOG CMD...: start one server in the background, remember its pid.
spawn()
{
    local log=$1
    shift
    "$@" >"$log" 2>&1 &
    ALL_PIDS+=("$!")
    CUR_PIDS+=("$!")
}

port_busy()
{
    [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
}

# wait_port PORT: until something listens there (10 s at most).
wait_port()
{
    local i
    for i in $(seq 1 100); do
        port_busy "$1" && return 0
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------------------------------------
# Ports: backend P; pair i (1..6): outbound P+10i, inbound P+10i+1.

BACKEND_PORT=$BASE_PORT
peer_index()
{
    case "$1" in
    direct) echo 0 ;; ferry-tcp) echo 1 ;; ferry-http) echo 2 ;; stunnel) echo 3 ;;
    haproxy) echo 4 ;; nginx-stream) echo 5 ;; nginx-http) echo 6 ;;
    esac
}
out_port()
{
    local i
    i=$(peer_index "$1")
    if [ "$i" = 0 ]; then echo "$BACKEND_PORT"; else echo $((BASE_PORT + 10 * i)); fi
}
in_port()
{
    echo $(($(out_port "$1") + 1))
}

for p in direct $PEERS; do
    for port in $(out_port "$p") $(in_port "$p"); do
        [ "$p" = direct ] && [ "$port" != "$BACKEND_PORT" ] && continue
        port_busy "$port" && die "127.0.0.1:$port is in use (choose another --base-port)"
    done
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
worker_rlimit_nofile $((MAXCONN * 2));
events { worker_connections $MAXCONN; }
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
EOF
}

start_nginx()
{
    local dir=$1
    spawn "$dir/stdout.log" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
}

# ---------------------------------------------------------------------------------------------
# Backend: one nginx worker, static files of 86 B, 16 KiB and 1 MiB.

start_backend()
{
    local dir=$WORK/backend
    mkdir -p "$dir/www"
    head -c 85 /dev/zero | tr '\0' 'x' >"$dir/www/86"
    echo >>"$dir/www/86"
    head -c 16384 /dev/urandom >"$dir/www/16k"
    head -c 1048576 /dev/urandom >"$dir/www/1m"
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
        root $dir/www;
    }
}
EOF
    } >"$dir/nginx.conf"
    CUR_PIDS=()
    start_nginx "$dir"
    CUR_PIDS=()
    wait_port "$BACKEND_PORT" || die "backend nginx did not start: $(tail -3 "$dir/error.log")"
}

# ---------------------------------------------------------------------------------------------
# The pairs.  start_pair PEER RESUME(on|off) DIR: start A and B of PEER into CUR_PIDS.

start_ferry()
{
    local proto=$1 resume=$2 dir=$3 out=$4 in=$5 acon=$6 r=true
    [ "$resume" = on ] || r=false
    cat >"$dir/a.yaml" <<EOF
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
log:
  level: warn
limits:
  max_connections: $MAXCONN
EOF
    cat >"$dir/b.yaml" <<EOF
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
    backend: "127.0.0.1:$BACKEND_PORT"
    protocol: $proto
    allow: ["a.bench.test"]
log:
  level: warn
limits:
  max_connections: $MAXCONN
EOF
    spawn "$dir/b.log" "$FERRY" run -c "$dir/b.yaml"
    spawn "$dir/a.log" "$FERRY" run -c "$dir/a.yaml"
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
connect = 127.0.0.1:$BACKEND_PORT
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
    spawn "$dir/b.log" "$STUNNEL" "$dir/b.conf"
    spawn "$dir/a.log" "$STUNNEL" "$dir/a.conf"
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
    maxconn $MAXCONN
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
    maxconn $MAXCONN
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
    server db 127.0.0.1:$BACKEND_PORT
EOF
    spawn "$dir/b.log" haproxy -db -f "$dir/b.cfg"
    spawn "$dir/a.log" haproxy -db -f "$dir/a.cfg"
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
    upstream db { server 127.0.0.1:$BACKEND_PORT; }
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
    start_nginx "$dir/b"
    start_nginx "$dir/a"
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
        server 127.0.0.1:$BACKEND_PORT;
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
    start_nginx "$dir/b"
    start_nginx "$dir/a"
}

# start_pair PEER RESUME: start both sides, wait for them, check one request goes through.
# Returns 1 (after stopping what it started) when the pair does not answer.
start_pair()
{
    local peer=$1 resume=$2 out in dir
    out=$(out_port "$peer")
    in=$(in_port "$peer")
    CUR_PIDS=()
    [ "$peer" = direct ] && return 0
    dir=$WORK/$peer-$resume-$RANDOM
    mkdir -p "$dir"
    # --smoke: A dials tlspeek.py, which relays to B and logs whether A offers resumption.
    local acon=$in
    if [ "$MODE" = smoke ]; then
        acon=$((out + 5))
        PEEK_LOG=$dir/peek.log
        : >"$PEEK_LOG"
        spawn "$dir/tlspeek.log" python3 "$BENCH_DIR/tlspeek.py" "$acon" "$in" "$PEEK_LOG"
    fi
    case "$peer" in
    ferry-tcp) start_ferry tcp "$resume" "$dir" "$out" "$in" "$acon" ;;
    ferry-http) start_ferry http "$resume" "$dir" "$out" "$in" "$acon" ;;
    stunnel) start_stunnel "$resume" "$dir" "$out" "$in" "$acon" ;;
    haproxy) start_haproxy "$resume" "$dir" "$out" "$in" "$acon" ;;
    nginx-stream) start_nginx_stream "$resume" "$dir" "$out" "$in" "$acon" ;;
    nginx-http) start_nginx_http "$resume" "$dir" "$out" "$in" "$acon" ;;
    esac
    if wait_port "$in" && wait_port "$acon" && wait_port "$out" &&
        curl -sf --retry 5 --retry-connrefused --retry-delay 0 --max-time 5 -o /dev/null \
            "http://127.0.0.1:$out/86"; then
        return 0
    fi
    note "$peer ($resume) did not start or does not answer; its logs:"
    find "$dir" -name '*.log' -exec tail -n 5 {} + >&2 2>/dev/null || true
    stop_pair
    return 1
}

stop_pair()
{
    kill_pids "${CUR_PIDS[@]}"
    CUR_PIDS=()
}

# pair_pids: the processes of the running pair, with their children (nginx workers).
pair_pids()
{
    local p
    for p in "${CUR_PIDS[@]}"; do
        echo "$p"
        pgrep -P "$p" || true
    done
}

# cpu_ticks: user+system clock ticks of the pair's processes (all threads).
cpu_ticks()
{
    local p sum=0 t
    for p in $(pair_pids); do
        t=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') || t=0
        sum=$((sum + ${t:-0}))
    done
    echo "$sum"
}

# rss_kib: resident set of the pair's processes.
rss_kib()
{
    local p sum=0 t
    for p in $(pair_pids); do
        t=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null) || t=0
        sum=$((sum + ${t:-0}))
    done
    echo "$sum"
}

# ---------------------------------------------------------------------------------------------
# Workloads.

# run_wrk PEER WORKLOAD REP RESUME
run_wrk()
{
    local peer=$1 wl=$2 rep=$3 resume=$4 out path conns hdr=() c0 c1 log line
    out=$(out_port "$peer")
    case "$wl" in
    small) path=/86 conns=$CONNS_SMALL ;;
    k16) path=/16k conns=$CONNS_K16 ;;
    m1) path=/1m conns=$CONNS_M1 ;;
    conn_resumed | conn_full) path=/86 conns=$CONNS_CONN hdr=(-H "Connection: close") ;;
    esac
    local threads
    threads=$(nproc)
    [ "$threads" -le "$conns" ] || threads=$conns
    log=$WORK/wrk-$peer-$wl-$rep.txt
    c0=$(cpu_ticks)
    wrk -t"$threads" -c"$conns" -d"${DURATION}s" --timeout 5s -s "$BENCH_DIR/wrk-report.lua" \
        "${hdr[@]}" "http://127.0.0.1:$out$path" >"$log" 2>&1 || true
    c1=$(cpu_ticks)
    line=$(sed -n 's/^WRKJSON //p' "$log")
    if [ -z "$line" ]; then
        note "$peer $wl rep $rep: wrk gave no result: $(tail -n 3 "$log" | tr '\n' ' ')"
        line=null
    fi
    printf '{"peer":"%s","workload":"%s","rep":%d,"resumption":"%s","conns":%d,"path":"%s","cpu_ticks":%d,"wrk":%s}\n' \
        "$peer" "$wl" "$rep" "$resume" "$conns" "$path" $((c1 - c0)) "$line" >>"$RESULTS"
    note "$(printf '%-12s %-13s rep %d: %s' "$peer" "$wl" "$rep" "$(summary_of "$line" "$wl")")"
}

summary_of()
{
    python3 - "$1" "$2" <<'EOF'
import json, sys
w = json.loads(sys.argv[1])
if not w:
    print("no result"); sys.exit()
s = w["duration_us"] / 1e6
errs = sum(w[k] for k in w if k.startswith("err_"))
if sys.argv[2] == "m1":
    print("%.1f MB/s, %d errors" % (w["bytes"] / s / 1e6, errs))
else:
    print("%.0f /s, %d errors" % (w["requests"] / s, errs))
EOF
}

# run_idle PEER: hold IDLE_N keep-alive connections open through the pair, measure RSS.
run_idle()
{
    local peer=$1 out r0 r1 stop log pid i ready
    out=$(out_port "$peer")
    stop=$WORK/idle-stop-$peer
    log=$WORK/idle-$peer.txt
    rm -f "$stop"
    sleep 0.5
    r0=$(rss_kib)
    python3 "$BENCH_DIR/idle.py" --port "$out" --n "$IDLE_N" --stop "$stop" --hold 120 >"$log" 2>&1 &
    pid=$!
    ready=""
    for i in $(seq 1 600); do
        ready=$(sed -n 's/^READY //p' "$log")
        [ -n "$ready" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    sleep 1
    r1=$(rss_kib)
    touch "$stop"
    wait "$pid" 2>/dev/null || true
    local ok=0 failed=0
    if [ -n "$ready" ]; then
        ok=${ready#ok=}
        ok=${ok%% *}
        failed=${ready##*failed=}
    fi
    printf '{"peer":"%s","workload":"idle","rep":1,"n":%d,"ok":%d,"failed":%d,"rss0_kib":%d,"rss1_kib":%d}\n' \
        "$peer" "$IDLE_N" "$ok" "$failed" "$r0" "$r1" >>"$RESULTS"
    if [ "$ok" -gt 0 ]; then
        note "$(printf '%-12s %-13s      : %d conns (%d failed), %d -> %d KiB, %.1f KiB/pair' \
            "$peer" idle "$ok" "$failed" "$r0" "$r1" "$(awk -v a="$r0" -v b="$r1" -v n="$ok" 'BEGIN {print (b - a) / n}')")"
    else
        note "$peer idle: no connection held ($(tr '\n' ' ' <"$log"))"
    fi
}

has_wl()
{
    case " $WORKLOADS " in *" $1 "*) return 0 ;; *) return 1 ;; esac
}

# ---------------------------------------------------------------------------------------------
# Smoke: every pair carries each file, Connection: close, and refuses bad client certificates.

smoke_peer()
{
    local peer=$1 out in f size got fails=0
    out=$(out_port "$peer")
    in=$(in_port "$peer")
    for f in 86:86 16k:16384 1m:1048576; do
        size=${f#*:}
        got=$(curl -sf --max-time 10 -o /dev/null -w '%{size_download}' "http://127.0.0.1:$out/${f%%:*}") || got=fail
        [ "$got" = "$size" ] || { note "SMOKE FAIL $peer: /${f%%:*} gave $got, want $size"; fails=$((fails + 1)); }
    done
    got=$(curl -sf --max-time 10 -H 'Connection: close' -o /dev/null -w '%{size_download}' \
        "http://127.0.0.1:$out/86") || got=fail
    [ "$got" = 86 ] || { note "SMOKE FAIL $peer: Connection: close gave $got"; fails=$((fails + 1)); }
    [ "$peer" = direct ] && return "$fails"
    # B must refuse TLS without a client certificate, and with a certificate of another name.
    local tls=(-s --max-time 5 -o /dev/null -w '%{http_code}' --cacert "$CA"
        --resolve "b.bench.test:$in:127.0.0.1" "https://b.bench.test:$in/86")
    got=$(curl "${tls[@]}") || true
    [ "$got" != 200 ] || { note "SMOKE FAIL $peer: inbound answered 200 without a client cert"; fails=$((fails + 1)); }
    got=$(curl --cert "$PKI/c/c.bench.test.crt" --key "$PKI/c/c.bench.test.key" "${tls[@]}") || true
    [ "$got" != 200 ] || { note "SMOKE FAIL $peer: inbound answered 200 to c.bench.test"; fails=$((fails + 1)); }
    got=$(curl --cert "$A_CRT" --key "$A_KEY" "${tls[@]}") || true
    [ "$got" = 200 ] || { note "SMOKE FAIL $peer: inbound refused a.bench.test ($got)"; fails=$((fails + 1)); }
    return "$fails"
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
        sleep 0.2
    done
    hellos=$(grep -c '^hello' "$PEEK_LOG" || true)
    psk=$(grep -c '^hello psk=1' "$PEEK_LOG" || true)
    accepted=$(grep -c 'accepted=1' "$PEEK_LOG" || true)
    note "$peer ($resume): 4 client connections -> $hellos TLS handshakes A->B, $psk offering resumption, $accepted resumed"
    if [ "$resume" = off ] && [ "$psk" -gt 0 ]; then
        note "SMOKE FAIL $peer: resumption off, yet A offered a session"
        return 1
    fi
    if [ "$resume" = on ] && [ "$hellos" -gt 1 ] && [ "$accepted" = 0 ]; then
        note "SMOKE WARN $peer: resumption on, yet no handshake A->B was resumed"
    fi
    return 0
}

# ---------------------------------------------------------------------------------------------
# Main.

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
    "mode": "$MODE", "duration_s": $DURATION, "reps": $REPS, "idle_n": $IDLE_N,
    "conns": {"small": $CONNS_SMALL, "k16": $CONNS_K16, "m1": $CONNS_M1,
              "conn_resumed": $CONNS_CONN, "conn_full": $CONNS_CONN},
    "peers": "$PEERS".split(), "workloads": "$WORKLOADS".split(),
    "nproc": int(out("nproc")), "cpu": out("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-").strip(),
    "kernel": out("uname -r"), "clk_tck": int(out("getconf CLK_TCK")), "date": out("date -u +%Y-%m-%dT%H:%M:%SZ"),
    "versions": {
        "ferry": out("'$FERRY' version"), "ferry_git": out("git -C '$REPO' describe --always --dirty"),
        "openssl": out("openssl version"), "stunnel": "$STUNNEL_V",
        "haproxy": out("haproxy -v"), "nginx": out("nginx -v"), "wrk": out("wrk -v"),
    },
    "threads": {"ferry": "1 (single event loop)", "stunnel": "thread per connection",
                "haproxy": "nbthread default = nproc", "nginx": "worker_processes auto",
                "backend nginx": "1 worker"},
}
json.dump(meta, open(sys.argv[1], "w"), indent=2)
EOF

if [ "$MODE" = smoke ]; then
    fails=0
    for peer in $PEERS; do
        for resume in on off; do
            [ "$peer" = direct ] && [ "$resume" = off ] && continue
            if ! start_pair "$peer" "$resume"; then
                fails=$((fails + 1))
                continue
            fi
            smoke_peer "$peer" || fails=$((fails + 1))
            [ "$peer" = direct ] || smoke_resumption "$peer" "$resume" || fails=$((fails + 1))
            if [ "$resume" = on ] && has_wl idle && [ "$peer" != direct ]; then
                run_idle "$peer"
            fi
            stop_pair
            note "smoke $peer ($resume) done"
        done
    done
    [ "$fails" = 0 ] || die "smoke: $fails failures"
    note "smoke: every pair passed"
    exit 0
fi

note "nproc $(nproc); $DURATION s per measurement, $REPS reps, $IDLE_N idle connections; results in $OUT_DIR"
for rep in $(seq 1 "$REPS"); do
    for peer in $PEERS; do
        if has_wl small || has_wl k16 || has_wl m1 || has_wl conn_resumed; then
            if start_pair "$peer" on; then
                for wl in small k16 m1 conn_resumed; do
                    has_wl "$wl" && run_wrk "$peer" "$wl" "$rep" on
                done
                stop_pair
            fi
        fi
        if has_wl conn_full; then
            if start_pair "$peer" off; then
                run_wrk "$peer" conn_full "$rep" off
                stop_pair
            fi
        fi
    done
done
if has_wl idle; then
    for peer in $PEERS; do
        [ "$peer" = direct ] && continue
        if start_pair "$peer" on; then
            run_idle "$peer"
            stop_pair
        fi
    done
fi

python3 "$BENCH_DIR/report.py" "$OUT_DIR" | tee "$OUT_DIR/report.md"
note "results: $OUT_DIR/results.json, $OUT_DIR/report.md"
