#!/usr/bin/env bash
# bench/pair-counts.sh: load-independent cost counts of ferry's data path (issue 14).
#
#   client --plain--> A (outbound tcp) ==mTLS 1.3==> B (inbound tcp) --plain--> backend
#
# Runs A and B (workers: 1) under `valgrind --tool=callgrind` (instructions, Ir) or
# `strace -c -f` (system calls) while one keep-alive client connection makes N GETs, once
# with N = N1 and once with N = N2, and prints (count(N2) - count(N1)) / (N2 - N1) per side:
# the cost of one more request, with start-up, the handshake and exit taken out.
#   bulk:  GET /1m (1 MiB body): the cost per MiB relayed
#   small: GET /86 (86 B body): the cost per small keep-alive request
#   idle:  (no tool) 400 connections, one small GET each, then held idle: A's and B's RSS
#          growth per connection in KiB (malloc's arenas make it coarse; compare builds)
#   idle-in: (no tool) the same through the ferry-http pair with A's pool off, so that A holds
#          one mTLS connection to B per client: B's RSS growth per idle peer connection after
#          one request each (inbound lending: it holds no backend connection), and how many
#          backend connections B holds then
#   pooled: GET /86, each request on a NEW client TCP connection with `Connection: close`
#          (the bench/run.sh workload "pooled"), N = 50 and 450: the cost of one more client
#          connection + request + close, while A lends one pooled mTLS connection to B per
#          request.  Only for the HTTP pairs (--server ferry-http,nginx-http); the tcp pairs
#          would make a new mTLS connection (a full handshake) per request.
# The backend is a small Python HTTP/1.1 server (not counted).  Only 127.0.0.1.
#
#   bench/pair-counts.sh [--ferry build/ferry] [--tools callgrind,strace,malloc]
#                        [--workloads bulk,small,pooled,idle,idle-in] [--server ferry,haproxy,ferry-http,nginx-http]
#                        [--out DIR] [--port P]
#
# --server LIST: the pairs to measure, in order (default ferry).  haproxy: the same shape with
#   HAProxy 2.6 on both sides, the configs of bench/run.sh start_haproxy with resumption on
#   (A: `server ... ssl crt ... ca-file ... verify required verifyhost`, B: `bind ... ssl crt
#   ... ca-file ... verify required` and the CN check) plus `nbthread 1`: one thread, as
#   ferry's `workers: 1` here.  With more than one server, or with --out, the per-request
#   numbers of every server and side are also printed side by side (bench/pair_diff.py table):
#   callgrind: total Ir, self Ir by object, calls and inclusive Ir of chosen functions
#   (malloc, SSL_read, epoll_ctl, ...), calls into malloc/free/CRYPTO_malloc by the caller's
#   object (libssl = OpenSSL's record buffers and per-record state), the top --top (15) functions
#   by self Ir; strace: calls per syscall name; malloc: the counters of bench/malloc_count.c.
#   ferry-http: ferry with `protocol: http` on both listeners and A's pool set as bench/run.sh
#   does (`pool: {max_idle: 64, idle_timeout: 60s}`), `workers: 1`.  nginx-http: the configs of
#   bench/run.sh start_nginx_http with resumption on (A: `proxy_pass https://peer` to an
#   upstream with `keepalive 64`, proxy_ssl_* verify on; B: `listen ... ssl`,
#   `ssl_verify_client on`, the CN check, `proxy_pass http://db` to an upstream with
#   `keepalive 64`), plus `worker_processes 1; master_process off; daemon off;` (one process,
#   so that callgrind/strace/malloc_count see all of the work), access_log off.
# --tools malloc: A and B run with bench/malloc_count.c preloaded (built here with cc): malloc,
#   calloc, realloc, free calls, new blocks by size class, and blocks of 16000 bytes or more by
#   the object that asked for them (libssl: record buffers).
# --out DIR: keep the raw files there (WORKLOAD/SERVER-SIDE.TOOL.N: callgrind, strace -c,
#   malloc counts; WORKLOAD.table.txt: the side-by-side table).
# Bounded: `--workloads small --server ferry,haproxy --tools callgrind,strace,malloc` takes
# about 4 minutes on 2 cores (callgrind most of it); every client run has a 300 s timeout.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
FERRY=$REPO/build/ferry
TOOLS=callgrind,strace
WORKLOADS=bulk,small
PORT=${COUNTS_PORT:-24700}
SERVERS=ferry
KEEP=""
TOP=15
while [ $# -gt 0 ]; do
    case $1 in
    --ferry) FERRY=$(realpath "$2"); shift 2 ;;
    --tools) TOOLS=$2; shift 2 ;;
    --workloads) WORKLOADS=$2; shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --server | --servers) SERVERS=$2; shift 2 ;;
    --out) KEEP=$(mkdir -p "$2" && realpath "$2"); shift 2 ;;
    --top) TOP=$2; shift 2 ;;
    *) echo "usage: $0 [--ferry PATH] [--tools callgrind,strace,malloc] [--workloads bulk,small,pooled,idle] [--server ferry,haproxy,ferry-http,nginx-http] [--out DIR] [--port P] [--top K]" >&2; exit 2 ;;
    esac
done
BENCH_DIR=$REPO/bench
BACKEND=$PORT OUT=$((PORT + 1)) IN=$((PORT + 2))

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-counts.XXXXXX")
RAW=${KEEP:-$WORK/raw}
mkdir -p "$RAW"
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
    for i in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "port $1 did not open" >&2
    return 1
}

"$FERRY" certs init-ca --dir "$WORK/ca" --name "counts CA" --key-type ec >/dev/null
for n in a b; do
    "$FERRY" certs issue --ca "$WORK/ca" --name "$n.counts.test" --ip 127.0.0.1 --key-type ec \
        --out "$WORK/$n" >/dev/null
done

for n in a b; do
    cat "$WORK/$n/$n.counts.test.crt" "$WORK/$n/$n.counts.test.key" >"$WORK/$n.pem"
    chmod 600 "$WORK/$n.pem"
done
case ,$TOOLS, in
*,malloc,*) cc -O2 -shared -fPIC -o "$WORK/malloc_count.so" "$BENCH_DIR/malloc_count.c" -ldl ;;
esac

mkdir -p "$WORK/www"
head -c 86 /dev/zero | tr '\0' x >"$WORK/www/86"
head -c 1048576 /dev/urandom >"$WORK/www/1m"
cat >"$WORK/backend.py" <<'EOF'
import http.server, sys, os
class H(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
os.chdir(sys.argv[2])
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
cat >"$WORK/client.py" <<'EOF'
import http.client, sys
port, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
total = 0
for _ in range(n):
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    if r.status != 200:
        sys.exit("status %d" % r.status)
    total += len(body)
c.close()
print(total)
EOF
# client_close.py PORT PATH N: N GETs, each on a new connection with Connection: close.
cat >"$WORK/client_close.py" <<'EOF'
import http.client, sys
port, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
total = 0
for _ in range(n):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("GET", path, headers={"Connection": "close"})
    r = c.getresponse()
    body = r.read()
    if r.status != 200:
        sys.exit("status %d" % r.status)
    total += len(body)
    c.close()
print(total)
EOF
python3 "$WORK/backend.py" "$BACKEND" "$WORK/www" &
PIDS+=($!)
wait_port "$BACKEND"

cat >"$WORK/a.yaml" <<EOF
workers: 1
tls:
  cert: $WORK/a/a.counts.test.crt
  key: $WORK/a/a.counts.test.key
  ca: $WORK/ca/ca.crt
  min_version: "1.3"
listeners:
  - name: out
    mode: outbound
    listen: "127.0.0.1:$OUT"
    peer: "b.counts.test:$IN"
    connect: "127.0.0.1:$IN"
    protocol: tcp
log:
  level: warn
EOF
cat >"$WORK/b.yaml" <<EOF
workers: 1
tls:
  cert: $WORK/b/b.counts.test.crt
  key: $WORK/b/b.counts.test.key
  ca: $WORK/ca/ca.crt
  min_version: "1.3"
listeners:
  - name: in
    mode: inbound
    listen: "127.0.0.1:$IN"
    backend: "127.0.0.1:$BACKEND"
    protocol: tcp
    allow: ["a.counts.test"]
log:
  level: warn
EOF

# The ferry-http pair: the same with protocol: http and A's pool as bench/run.sh sets it.
sed -e 's/protocol: tcp/protocol: http/' \
    -e 's/^\(    protocol: http\)$/\1/' "$WORK/a.yaml" >"$WORK/a-http.yaml"
sed -i -e '/^    protocol: http$/a\    pool: {max_idle: 64, idle_timeout: 60s}' "$WORK/a-http.yaml"
sed -e 's/protocol: tcp/protocol: http/' "$WORK/b.yaml" >"$WORK/b-http.yaml"
# idle-in: A keeps one peer connection per client (pool off); B as always.
sed -e 's/max_idle: 64, idle_timeout: 60s/max_idle: 0/' "$WORK/a-http.yaml" >"$WORK/a-own.yaml"

# The nginx-http pair: bench/run.sh start_nginx_http with resumption on, one process.
for side in a b; do
    mkdir -p "$WORK/ngx-$side"
    cat >"$WORK/ngx-$side/nginx.conf" <<EOF
worker_processes 1;
master_process off;
daemon off;
# nginx clears the environment: keep bench/malloc_count.c's output path.
env MALLOC_COUNT_OUT;
pid $WORK/ngx-$side/nginx.pid;
error_log $WORK/ngx-$side/error.log warn;
events { worker_connections 4096; }
http {
    client_body_temp_path $WORK/ngx-$side/client_body;
    proxy_temp_path $WORK/ngx-$side/proxy;
    fastcgi_temp_path $WORK/ngx-$side/fastcgi;
    uwsgi_temp_path $WORK/ngx-$side/uwsgi;
    scgi_temp_path $WORK/ngx-$side/scgi;
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_max_body_size 0;
EOF
done
cat >>"$WORK/ngx-a/nginx.conf" <<EOF
    upstream peer {
        server 127.0.0.1:$IN;
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:$OUT backlog=4096;
        location / {
            proxy_pass https://peer;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_max_temp_file_size 0;
            proxy_ssl_certificate $WORK/a/a.counts.test.crt;
            proxy_ssl_certificate_key $WORK/a/a.counts.test.key;
            proxy_ssl_trusted_certificate $WORK/ca/ca.crt;
            proxy_ssl_verify on;
            proxy_ssl_name b.counts.test;
            proxy_ssl_server_name on;
            proxy_ssl_protocols TLSv1.3;
            proxy_ssl_session_reuse on;
        }
    }
}
EOF
cat >>"$WORK/ngx-b/nginx.conf" <<EOF
    upstream db {
        server 127.0.0.1:$BACKEND;
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:$IN ssl backlog=4096;
        ssl_certificate $WORK/b/b.counts.test.crt;
        ssl_certificate_key $WORK/b/b.counts.test.key;
        ssl_client_certificate $WORK/ca/ca.crt;
        ssl_verify_client on;
        ssl_protocols TLSv1.3;
        ssl_session_tickets on;
        if (\$ssl_client_s_dn != "CN=a.counts.test") {
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

# The HAProxy pair: bench/run.sh start_haproxy with resumption on, plus nbthread 1.
cat >"$WORK/a.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 300s
    timeout server 300s
frontend out
    bind 127.0.0.1:$OUT
    default_backend peer
backend peer
    server b 127.0.0.1:$IN ssl crt $WORK/a.pem ca-file $WORK/ca/ca.crt verify required verifyhost b.counts.test sni str(b.counts.test) ssl-min-ver TLSv1.3
EOF
cat >"$WORK/b.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 300s
    timeout server 300s
frontend in
    bind 127.0.0.1:$IN ssl crt $WORK/b.pem ca-file $WORK/ca/ca.crt verify required ssl-min-ver TLSv1.3
    tcp-request session reject unless { ssl_c_s_dn(CN) -m str a.counts.test }
    default_backend db
backend db
    server db 127.0.0.1:$BACKEND
EOF

# server_cmd SERVER SIDE: the command line of SERVER's side SIDE (a or b).
server_cmd()
{
    case $1 in
    ferry) echo "$FERRY run -c $WORK/$2.yaml" ;;
    haproxy) echo "haproxy -db -f $WORK/$2.cfg" ;;
    ferry-http) echo "$FERRY run -c $WORK/$2-http.yaml" ;;
    nginx-http) echo "nginx -p $WORK/ngx-$2 -c $WORK/ngx-$2/nginx.conf -e $WORK/ngx-$2/error.log" ;;
    *) echo "unknown server $1" >&2; exit 2 ;;
    esac
}

# run_once SERVER TOOL PATH N: start B and A under TOOL, make N GETs of PATH on one connection,
# stop both (SIGTERM: they exit), print "A_count B_count"; the raw files go to
# $RAW/SERVER-SIDE.TOOL.N.
run_once()
{
    local server=$1 tool=$2 path=$3 n=$4 side pid f
    local -A spid
    for side in b a; do
        # shellcheck disable=SC2046
        case $tool in
        callgrind) valgrind --tool=callgrind --callgrind-out-file="$WORK/$side.cg" \
            $(server_cmd "$server" "$side") 2>"$WORK/$side.err" & ;;
        strace) strace -f -c -o "$WORK/$side.st" \
            $(server_cmd "$server" "$side") 2>"$WORK/$side.err" & ;;
        malloc) rm -f "$WORK/$side.mc".*
            env LD_PRELOAD="$WORK/malloc_count.so" MALLOC_COUNT_OUT="$WORK/$side.mc" \
                $(server_cmd "$server" "$side") 2>"$WORK/$side.err" & ;;
        esac
        spid[$side]=$!
        PIDS+=($!)
    done
    wait_port "$IN"
    wait_port "$OUT"
    timeout 300 python3 "$WORK/$CLIENT" "$OUT" "$path" "$n" >/dev/null
    for side in a b; do
        # Signal the server itself: strace does not pass a SIGTERM on to the program it runs.
        pid=${spid[$side]}
        [ "$tool" = strace ] && pid=$(pgrep -P "$pid")
        # HAProxy: SIGUSR1 (soft stop: exit() once idle, so that the malloc counts are written;
        # on SIGTERM it dies by the signal).
        if [ "$server" = haproxy ]; then kill -USR1 "$pid"; else kill -TERM "$pid"; fi
        timeout 60 tail --pid="$pid" -f /dev/null || kill -KILL "$pid"
        wait "${spid[$side]}" || true
    done
    for side in a b; do
        f=$RAW/$server-$side
        case $tool in
        callgrind) cp "$WORK/$side.cg" "$f.cg.$n"
            awk '/^(summary|totals):/ {print $2; exit}' "$WORK/$side.cg" ;;
        strace) cp "$WORK/$side.st" "$f.strace.$n"
            awk '$NF == "total" {print $4}' "$WORK/$side.st" ;;
        malloc) cat "$WORK/$side.mc".* >"$f.malloc.$n"
            awk '$1 ~ /^(malloc|calloc|realloc|memalign)$/ {s += $2} END {print s}' "$f.malloc.$n" ;;
        esac
    done | paste -sd' '
}

cat >"$WORK/idle.py" <<'PY'
import http.client, subprocess, sys, time
port, n, pa, pb, backend = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
def rss(pid):
    for line in open("/proc/%s/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
time.sleep(0.5)
a0, b0 = rss(pa), rss(pb)
conns = []
for _ in range(n):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", "/86")
    r = c.getresponse()
    r.read()
    conns.append(c)
time.sleep(1)
a1, b1 = rss(pa), rss(pb)
held = subprocess.run(["ss", "-Htn", "state", "established", "( dport = :%s )" % backend],
                      capture_output=True, text=True).stdout.count("\n")
print("%.1f %.1f %d" % ((a1 - a0) / n, (b1 - b0) / n, held))
PY

# run_idle N [A-CONFIG B-CONFIG]: A and B (default a, b: the tcp pair) without a tool; N
# keep-alive connections, one small GET each, then held idle; prints the growth of A's and B's
# RSS per connection in KiB, then B's established connections to the backend.
run_idle()
{
    local n=$1 side
    local -A spid conf=([a]=${2:-a} [b]=${3:-b})
    for side in b a; do
        "$FERRY" run -c "$WORK/${conf[$side]}.yaml" 2>"$WORK/$side.err" &
        spid[$side]=$!
        PIDS+=($!)
    done
    wait_port "$IN"
    wait_port "$OUT"
    python3 "$WORK/idle.py" "$OUT" "$n" "${spid[a]}" "${spid[b]}" "$BACKEND" || {
        tail -n 5 "$WORK/a.err" "$WORK/b.err" >&2
        return 1
    }
    for side in a b; do
        kill -TERM "${spid[$side]}"
        wait "${spid[$side]}" || true
    done
}

IFS=, read -r -a tools <<<"$TOOLS"
IFS=, read -r -a workloads <<<"$WORKLOADS"
IFS=, read -r -a servers <<<"$SERVERS"
for w in "${workloads[@]}"; do
    if [ "$w" = idle ]; then
        # Not `read < <(run_idle)`: read returns at the first line, while run_idle still stops
        # its ferries, and the next workload would find their ports taken.
        run_idle 400 >"$WORK/idle.out"
        read -r a b _ <"$WORK/idle.out"
        echo "idle   RSS KiB   per idle connection (400, one small GET each)  A $a   B $b"
        continue
    fi
    if [ "$w" = idle-in ]; then
        run_idle 400 a-own b-http >"$WORK/idle.out"
        read -r a b held <"$WORK/idle.out"
        echo "idle-in RSS KiB  per idle peer connection at B (400, one small GET each)  B $b;" \
            "backend connections B holds: $held"
        continue
    fi
    case $w in
    bulk) path=/1m n1=2 n2=18 unit="MiB" CLIENT=client.py ;;
    small) path=/86 n1=50 n2=450 unit="request" CLIENT=client.py ;;
    pooled) path=/86 n1=50 n2=450 unit="request" CLIENT=client_close.py ;;
    *) echo "unknown workload $w" >&2; exit 2 ;;
    esac
    for server in "${servers[@]}"; do
        for t in "${tools[@]}"; do
            read -r a1 b1 < <(run_once "$server" "$t" "$path" "$n1")
            read -r a2 b2 < <(run_once "$server" "$t" "$path" "$n2")
            what=Ir
            [ "$t" = strace ] && what=syscalls
            [ "$t" = malloc ] && what=allocs
            awk -v s="$server" -v w="$w" -v t="$what" -v u="$unit" -v a1="$a1" -v a2="$a2" \
                -v b1="$b1" -v b2="$b2" -v d=$((n2 - n1)) 'BEGIN {
                printf "%-7s %-6s %-9s per %-8s A (outbound) %12.2f   B (inbound) %12.2f\n",
                    s, w, t, u, (a2 - a1) / d, (b2 - b1) / d }'
            if [ "$t" = strace ]; then
                # The per-call breakdown of the larger run, for the report.
                for side in a b; do
                    echo "  $side, N=$n2:"
                    awk 'NR > 2 && $NF != "total" && $1 !~ /^-/ {print "    " $0}' \
                        "$RAW/$server-$side.strace.$n2" | sort -k4 -n -r | head -8
                done
            fi
        done
    done
    if [ ${#servers[@]} -gt 1 ] || [ -n "$KEEP" ]; then
        python3 "$BENCH_DIR/pair_diff.py" table "$RAW" $((n2 - n1)) "$SERVERS" a,b --top "$TOP" |
            tee "$RAW/$w.table.txt"
    fi
    # The next workload writes the same file names: keep this one's apart.
    mkdir -p "$RAW/$w"
    mv "$RAW"/*.cg.* "$RAW"/*.strace.* "$RAW"/*.malloc.* "$RAW/$w/" 2>/dev/null || true
done
