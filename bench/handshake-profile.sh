#!/usr/bin/env bash
# bench/handshake-profile.sh: what one full mTLS handshake costs the server side of ferry and of
# HAProxy, in counts that do not depend on the machine's load (issue 14, "Handshake cost").
#
# The same workload for both: an inbound listener (`protocol: tcp`, client certificate
# required and verified, resumption off, one worker / nbthread 1) in front of an echo backend;
# bench/hs_client.py makes N full handshakes one after the other (ECDSA P-256 certificates
# from tests/support/pki.sh, no session offered), sends one byte and reads its echo.
# For each server and TLS version:
#   callgrind: total Ir per handshake, self Ir by library, calls and inclusive Ir of chosen
#              libssl/libcrypto entry points, malloc and lock calls (bench/cg_calls.py); the
#              counters are zeroed after a warm-up (callgrind_control -z), so start-up and
#              configuration loading are not counted;
#   strace -c: syscalls per handshake (every thread), in a second run without valgrind.
# --leaf-only: the client sends its leaf alone (by default OpenSSL's auto chain makes it send
# leaf + root, as ferry's outbound side does): what a peer's extra root costs the server.
# --threads: instead of the above, the threads question: each server with 1 and 2 threads
# (ferry `workers:`, HAProxy `nbthread`), CLIENTS (2) clients in parallel making N handshakes
# in all: server CPU time per handshake (utime + stime from /proc, a wall-clock-free but
# load-sensitive number: run it on a quiet machine) and futex calls per handshake (strace -c -f:
# lock contention that made a thread sleep), plus callgrind's lock calls per handshake; the
# row "2L" runs 2 threads with bench/lightlock.c preloaded (lighter rwlocks for OpenSSL).
# --outbound: the client side instead: an outbound listener (ferry `mode: outbound`, HAProxy
# `server ... ssl crt ... verify required verifyhost`) makes the handshake to one HAProxy inbound
# server (not profiled) in front of the echo backend; hs_client.py --plain connects to it.
# --resumed: resumed handshakes instead of full ones, resumption on in every server: ferry
# `session_resumption: true`; HAProxy as bench/run.sh configures it for conn_resumed (TLS
# tickets on, no `no-tls-tickets`, the default session cache, `ssl-reuse` on an outbound
# server).  Inbound: hs_client.py --resume offers the session of the previous connection and
# fails unless every connection but its first is resumed (ssl session_reused), so each client
# run is 1 full + N-1 resumed handshakes; the numbers are per resumed handshake, the
# difference of two windows on the same server, 1 + 10 and 1 + 10 + N connections (callgrind
# dumps, or strace -c attaches), divided by N: the one full handshake cancels out.  With
# --outbound the outbound server resumes its own sessions to the HAProxy peer, which logs
# ssl_fc_is_resumed per connection: the summary says how many of the counted connections
# the peer saw resumed.
# Not run by CI.  Bounded: about 2 minutes with the defaults on 2 cores (--threads: about 1;
# --resumed --tls 1.3: about 1.5).
#
# Usage: bench/handshake-profile.sh [--ferry PATH] [-n N] [--tls 1.3,1.2] [--servers ferry,haproxy]
#                                   [--workers N] [--out DIR] [--no-strace] [--leaf-only]
#                                   [--threads [--clients C]] [--outbound] [--resumed]
# Needs valgrind (callgrind_control), strace, haproxy, python3, openssl.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
FERRY=$REPO/build/ferry
N=200
TLS_LIST="1.3 1.2"
SERVERS="ferry haproxy"
WORKERS=1
OUT=""
STRACE=1
BASE_PORT=24300
LEAF_ONLY=""
THREADS=0
PRELOAD=""
CLIENTS=2
OUTBOUND=0
RESUMED=0

while [ $# -gt 0 ]; do
    case "$1" in
    --ferry) FERRY=${2:?}; shift ;;
    -n) N=${2:?}; shift ;;
    --tls) TLS_LIST=${2//,/ }; shift ;;
    --servers) SERVERS=${2//,/ }; shift ;;
    --workers) WORKERS=${2:?}; shift ;;
    --out) OUT=${2:?}; shift ;;
    --no-strace) STRACE=0 ;;
    --leaf-only) LEAF_ONLY=--leaf-only ;;
    --threads) THREADS=1 ;;
    --clients) CLIENTS=${2:?}; shift ;;
    --outbound) OUTBOUND=1 ;;
    --resumed) RESUMED=1 ;;
    --base-port) BASE_PORT=${2:?}; shift ;;
    -h | --help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
for t in valgrind callgrind_control strace haproxy python3 openssl; do
    command -v "$t" >/dev/null || { echo "handshake-profile: $t is missing" >&2; exit 1; }
done
[ -x "$FERRY" ] || { echo "handshake-profile: no ferry binary at $FERRY" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/hs-profile.XXXXXX")
[ -n "$OUT" ] || OUT=$WORK/out
mkdir -p "$OUT"
PIDS=()
cleanup()
{
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$WORK/pki"
}
trap cleanup EXIT

wait_port()
{
    local i
    for i in $(seq 1 600); do
        if python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$1" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "handshake-profile: nothing listens on 127.0.0.1:$1" >&2
    return 1
}

bash "$REPO/tests/support/pki.sh" "$WORK/pki" >/dev/null 2>&1
P=$WORK/pki
cat "$P/node1.crt" "$P/node1.key" >"$WORK/node1.pem"
chmod 600 "$WORK/node1.pem"

BACKEND=$BASE_PORT
python3 "$REPO/tests/support/tcp_backend.py" --port "$BACKEND" --mode echo >/dev/null 2>&1 &
PIDS+=("$!")
wait_port "$BACKEND"

# ferry_yaml FILE NAME TLS WORKERS LISTENER: a ferry config with pki.sh's NAME.crt/.key, the root
# as CA, resumption off, and the listener LISTENER (YAML list item).
ferry_yaml()
{
    cat >"$1" <<EOF
workers: $4
tls:
  cert: $P/$2.crt
  key: $P/$2.key
  ca: $P/ca.crt
  min_version: "$3"
  session_resumption: $([ "$RESUMED" = 1 ] && echo true || echo false)
listeners:
$5
log:
  level: warn
EOF
}

# haproxy_head THREADS: the global and defaults sections of every HAProxy config here.
haproxy_head()
{
    cat <<EOF
global
    nbthread $1
$([ "$RESUMED" = 1 ] || echo "    tune.ssl.cachesize 0")
$([ "$RESUMED" = 1 ] && [ "$OUTBOUND" = 1 ] && echo "    log stderr format raw local0")
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
EOF
}

# config SERVER TLS PORT [WORKERS]: write the server's config, print its command line.
config()
{
    local server=$1 v=$2 port=$3 WORKERS=${4:-$WORKERS}
    if [ "$OUTBOUND" = 1 ] && [ "$port" != "$PEER_PORT" ]; then
        config_out "$server" "$v" "$port" "$WORKERS"
        return
    fi
    case "$server" in
    ferry)
        ferry_yaml "$WORK/ferry-$v.yaml" node1 "$v" "$WORKERS" "  - name: in
    mode: inbound
    listen: \"127.0.0.1:$port\"
    backend: \"127.0.0.1:$BACKEND\"
    protocol: tcp
    client_cert: required
    allow: [peer.test]"
        echo "$FERRY run -c $WORK/ferry-$v.yaml"
        ;;
    haproxy)
        local ver=TLSv1.3
        # TLS 1.2: one suite, the one ferry prefers (HAProxy's default order picks AES256-GCM-SHA384).
        [ "$v" = 1.2 ] && ver="TLSv1.2 ssl-max-ver TLSv1.2 ciphers ECDHE-ECDSA-AES128-GCM-SHA256"
        {
            haproxy_head "$WORKERS"
            cat <<EOF
frontend in
    bind 127.0.0.1:$port ssl crt $WORK/node1.pem ca-file $P/ca.crt verify required ssl-min-ver $ver $([ "$RESUMED" = 1 ] || echo no-tls-tickets)
$([ "$RESUMED" = 1 ] && [ "$OUTBOUND" = 1 ] && printf '    log global\n    log-format "hs resumed=%%[ssl_fc_is_resumed]"')
    tcp-request session reject unless { ssl_c_s_dn(CN) -m str peer.test }
    default_backend echo
backend echo
    server echo 127.0.0.1:$BACKEND
EOF
        } >"$WORK/haproxy-$v.cfg"
        echo "haproxy -db -f $WORK/haproxy-$v.cfg"
        ;;
    esac
}

# config_out SERVER TLS PORT WORKERS: an outbound listener on PORT dialling PEER_PORT.
config_out()
{
    local server=$1 v=$2 port=$3 w=$4 ver=TLSv1.3
    case "$server" in
    ferry)
        ferry_yaml "$WORK/ferry-out-$v.yaml" good "$v" "$w" "  - name: out
    mode: outbound
    listen: \"127.0.0.1:$port\"
    peer: \"node1.test:$PEER_PORT\"
    connect: \"127.0.0.1:$PEER_PORT\"
    protocol: tcp"
        echo "$FERRY run -c $WORK/ferry-out-$v.yaml"
        ;;
    haproxy)
        [ "$v" = 1.2 ] && ver="TLSv1.2 ssl-max-ver TLSv1.2 ciphers ECDHE-ECDSA-AES128-GCM-SHA256"
        cat "$P/good.crt" "$P/good.key" >"$WORK/good.pem"
        chmod 600 "$WORK/good.pem"
        {
            haproxy_head "$w"
            cat <<EOF
frontend out
    bind 127.0.0.1:$port
    default_backend peer
backend peer
    server b 127.0.0.1:$PEER_PORT ssl crt $WORK/good.pem ca-file $P/ca.crt verify required verifyhost node1.test sni str(node1.test) ssl-min-ver $ver $([ "$RESUMED" = 1 ] || echo no-ssl-reuse)
EOF
        } >"$WORK/haproxy-out-$v.cfg"
        echo "haproxy -db -f $WORK/haproxy-out-$v.cfg"
        ;;
    esac
}

client()
{
    if [ "$OUTBOUND" = 1 ]; then
        python3 "$BENCH_DIR/hs_client.py" --plain --connect "127.0.0.1:$1" -n "$3" >/dev/null
        return
    fi
    python3 "$BENCH_DIR/hs_client.py" --connect "127.0.0.1:$1" --cert "$P/good.crt" \
        --key "$P/good.key" --ca "$P/ca.crt" --sni node1.test --tls "$2" -n "$3" $LEAF_ONLY \
        $([ "$RESUMED" = 1 ] && echo --resume) >/dev/null
}

# resumed_run PORT TLS N TAG CMD...: --resumed.  Start CMD under callgrind, make 5 connections
# (warm-up), then two windows of 1 + 10 and 1 + 10 + N connections (each client run: one full
# handshake, the rest resumed), zeroing the counters before and dumping after each; then, unless
# --no-strace, the same two windows on a second server under strace -c -f.  Writes
# $OUT/TAG.callgrind.txt and $OUT/TAG.strace.txt: per resumed handshake, the difference of the
# two windows divided by N (bench/pair_diff.py).
resumed_run()
{
    local port=$1 v=$2 n=$3 tag=$4 vpid stpid w f1 f2 m=10
    shift 4
    valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.$tag" --dump-instr=no "$@" \
        >"$OUT/$tag.log" 2>&1 &
    vpid=$!
    PIDS+=("$vpid")
    wait_port "$port"
    client "$port" "$v" 5
    for w in 1 2; do
        callgrind_control -z "$vpid" >/dev/null 2>&1
        peer_mark
        client "$port" "$v" $((1 + m + (w - 1) * n))
        callgrind_control -d "$vpid" >/dev/null 2>&1
        peer_count "$tag.w$w"
    done
    kill "$vpid"
    wait "$vpid" 2>/dev/null || true
    # The dumps are cg.TAG.1 and cg.TAG.2 (in that order).
    f1=$OUT/cg.$tag.1 f2=$OUT/cg.$tag.2
    # shellcheck disable=SC2046,SC2086
    python3 "$BENCH_DIR/pair_diff.py" callgrind "$f1" "$f2" "$n" --top 20 \
        $(printf -- '--fn %s ' $FNS $RFNS) >"$OUT/$tag.callgrind.txt"
    [ "$STRACE" = 1 ] || return 0
    port=$((port + 100))
    # "$@" listens on the old port: make a second config on the new one.
    # shellcheck disable=SC2046
    set -- $(config "${tag%%-*}" "$v" "$port")
    "$@" >"$OUT/$tag.strace.log" 2>&1 &
    vpid=$!
    PIDS+=("$vpid")
    wait_port "$port"
    client "$port" "$v" 5
    for w in 1 2; do
        strace -c -f -p "$vpid" -o "$OUT/$tag.strace.w$w" 2>/dev/null &
        stpid=$!
        sleep 1
        client "$port" "$v" $((1 + m + (w - 1) * n))
        kill -INT "$stpid"
        wait "$stpid" 2>/dev/null || true
    done
    kill "$vpid"
    wait "$vpid" 2>/dev/null || true
    python3 "$BENCH_DIR/pair_diff.py" strace "$OUT/$tag.strace.w1" "$OUT/$tag.strace.w2" "$n" \
        >"$OUT/$tag.strace.txt"
}

# peer_mark / peer_count TAG: --resumed --outbound: the lines "hs resumed=0|1" the HAProxy peer
# logged during one window, counted into $OUT/TAG.peer.
peer_mark()
{
    PEER_LINES=0
    [ -n "${PEER_LOG:-}" ] && PEER_LINES=$(wc -l <"$PEER_LOG")
    return 0
}
peer_count()
{
    [ -n "${PEER_LOG:-}" ] || return 0
    sleep 0.5
    tail -n +$((PEER_LINES + 1)) "$PEER_LOG" |
        awk '/hs resumed=1/ { r++ } /hs resumed=0/ { f++ } END { printf "%d resumed, %d full\n", r, f }' \
            >"$OUT/$1.peer"
}

# cpu_ticks PID: utime + stime of every thread of PID, in clock ticks.
cpu_ticks()
{
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# clients PORT TLS N: CLIENTS clients in parallel, N handshakes in all.
clients()
{
    local i pids=()
    for i in $(seq 1 "$CLIENTS"); do
        client "$1" "$2" $(($3 / CLIENTS)) &
        pids+=($!)
    done
    for i in "${pids[@]}"; do
        wait "$i"
    done
}

# cg_run DRIVER PORT TLS WARM N TAG CMD...: start CMD under callgrind, make WARM handshakes with
# DRIVER (client or clients), zero the counters, make N, dump; prints the dump's path.
cg_run()
{
    local driver=$1 port=$2 v=$3 warm=$4 n=$5 tag=$6 vpid
    shift 6
    env ${PRELOAD:+LD_PRELOAD="$PRELOAD"} valgrind --tool=callgrind \
        --callgrind-out-file="$OUT/cg.$tag" --dump-instr=no "$@" \
        >"$OUT/$tag.log" 2>&1 &
    vpid=$!
    PIDS+=("$vpid")
    wait_port "$port"
    "$driver" "$port" "$v" "$warm"
    callgrind_control -z "$vpid" >/dev/null 2>&1
    "$driver" "$port" "$v" "$n"
    callgrind_control -d "$vpid" >/dev/null 2>&1
    kill "$vpid"
    wait "$vpid" 2>/dev/null || true
    ls "$OUT/cg.$tag".* | head -1
}

# strace_run DRIVER PORT TLS N OUTFILE CMD...: start CMD, warm up, then strace -c -f (every thread
# of it, and any it starts) over N handshakes made by DRIVER, into OUTFILE.  Before that, the
# server's CPU ticks over another N handshakes go to CPU_TICKS.
strace_run()
{
    local driver=$1 port=$2 v=$3 n=$4 outfile=$5 spid stpid t0
    shift 5
    env ${PRELOAD:+LD_PRELOAD="$PRELOAD"} "$@" >"$outfile.log" 2>&1 &
    spid=$!
    PIDS+=("$spid")
    wait_port "$port"
    "$driver" "$port" "$v" 10
    t0=$(cpu_ticks "$spid")
    "$driver" "$port" "$v" "$n"
    CPU_TICKS=$(($(cpu_ticks "$spid") - t0))
    strace -c -f -p "$spid" -o "$outfile" 2>/dev/null &
    stpid=$!
    sleep 1
    "$driver" "$port" "$v" "$n"
    kill -INT "$stpid"
    wait "$stpid" 2>/dev/null || true
    kill "$spid"
    wait "$spid" 2>/dev/null || true
}

if [ "$THREADS" = 1 ]; then
    port=$((BASE_PORT + 1))
    hz=$(getconf CLK_TCK)
    v=${TLS_LIST%% *}
    echo "threads: TLS $v, $CLIENTS clients in parallel, $N handshakes per measurement; load: $(cut -d' ' -f1-3 /proc/loadavg)" |
        tee "$OUT/threads.txt"
    printf '%-8s %7s %10s %10s %10s %10s %12s\n' server threads "cpu_us/hs" "futex/hs" \
        "locks/hs" "lock_Ir/hs" "Ir/hs" |
        tee -a "$OUT/threads.txt"
    cc -O2 -shared -fPIC -o "$WORK/lightlock.so" "$BENCH_DIR/lightlock.c"
    for s in $SERVERS; do
        for wl in 1 2 2L; do
            w=${wl%L}
            PRELOAD=""
            [ "$wl" = "$w" ] || PRELOAD=$WORK/lightlock.so
            tag=$s-tls$v-threads$wl
            # CPU time and futex calls per handshake, then (a second server) callgrind's lock
            # calls over N / 4 handshakes.
            port=$((port + 1))
            # shellcheck disable=SC2046
            strace_run clients "$port" "$v" "$N" "$OUT/$tag.strace.txt" $(config "$s" "$v" "$port" "$w")
            futex=$(awk '$NF == "futex" { print $4 }' "$OUT/$tag.strace.txt")
            port=$((port + 1))
            # shellcheck disable=SC2046
            dump=$(cg_run clients "$port" "$v" 4 $((N / 4)) "$tag" $(config "$s" "$v" "$port" "$w"))
            python3 "$BENCH_DIR/cg_calls.py" "$dump" $((N / 4)) --top 0 \
                --fn CRYPTO_THREAD_read_lock --fn CRYPTO_THREAD_write_lock --fn CRYPTO_THREAD_unlock \
                >"$OUT/$tag.locks.txt"
            total=$(awk '/^total Ir/ { gsub(",", "", $NF); print $NF }' "$OUT/$tag.locks.txt")
            awk -v s="$s" -v w="$wl" -v tot="$total" -v n="$N" -v hz="$hz" -v t="$CPU_TICKS" -v f="${futex:-0}" '
                / CRYPTO_THREAD_(read|write)_lock$/ { locks += $1 }
                / CRYPTO_THREAD_/ { x = $3; gsub(",", "", x); lir += x }
                END { printf "%-8s %7s %10.0f %10.2f %10.0f %10.0f %12.0f\n", s, w,
                      t * 1e6 / hz / n, f / n, locks, lir, tot }' "$OUT/$tag.locks.txt" |
                tee -a "$OUT/threads.txt"
        done
    done
    echo "handshake-profile: results in $OUT"
    exit 0
fi

FNS="malloc free realloc CRYPTO_malloc CRYPTO_zalloc pthread_rwlock_rdlock pthread_rwlock_wrlock
pthread_rwlock_unlock pthread_mutex_lock CRYPTO_THREAD_read_lock CRYPTO_THREAD_write_lock
CRYPTO_THREAD_unlock SSL_new SSL_free SSL_do_handshake SSL_read SSL_write X509_verify_cert
EVP_MD_fetch EVP_CIPHER_fetch EVP_KEYMGMT_fetch EVP_SIGNATURE_fetch EVP_KEYEXCH_fetch
EVP_MAC_fetch EVP_KDF_fetch ossl_method_store_fetch ossl_method_store_cache_get
ERR_new ERR_clear_error ERR_set_debug ERR_peek_last_error X509_NAME_print_ex X509_get_ext_d2i
BIO_new tls_check_leaf tls_peer_info_fill verify_cb info_cb msg_cb
bufferevent_openssl_socket_new bufferevent_openssl_filter_new epoll_ctl"

RFNS="SSL_SESSION_free SSL_SESSION_new ssl_session_dup SSL_SESSION_get_peer SSL_CTX_add_session
SSL_CTX_remove_session SSL_get1_session SSL_get_session EVP_MAC_fetch EVP_MAC_CTX_new EVP_CIPHER_CTX_new
EVP_EncryptInit_ex EVP_DecryptInit_ex HMAC_Init_ex EVP_MAC_init RAND_bytes RAND_bytes_ex
RAND_priv_bytes_ex EVP_PKEY_derive EVP_DigestSign EVP_DigestVerify X509_free X509_up_ref
tls_ticket_key_cb ticket_key_cb"
PEER_PORT=none
PEER_LOG=""
port=$((BASE_PORT + 1))
for v in $TLS_LIST; do
    if [ "$OUTBOUND" = 1 ]; then
        # The TLS server every outbound listener dials: HAProxy inbound, not profiled.
        port=$((port + 1))
        PEER_PORT=$port
        peer_cmd=$(config haproxy "$v" "$PEER_PORT")
        # shellcheck disable=SC2086
        $peer_cmd >"$OUT/peer-$v.log" 2>&1 &
        PIDS+=("$!")
        wait_port "$PEER_PORT"
        [ "$RESUMED" = 1 ] && PEER_LOG=$OUT/peer-$v.log
    fi
    for s in $SERVERS; do
        port=$((port + 1))
        tag=$s-tls$v-w$WORKERS${LEAF_ONLY:+-leaf}
        [ "$OUTBOUND" = 1 ] && tag=$s-out-tls$v-w$WORKERS
        if [ "$RESUMED" = 1 ]; then
            tag=$tag-resumed
            # shellcheck disable=SC2046
            resumed_run "$port" "$v" "$N" "$tag" $(config "$s" "$v" "$port")
            {
                echo "== $tag: $N resumed handshakes, per resumed handshake"
                cat "$OUT/$tag.callgrind.txt"
                if [ -f "$OUT/$tag.strace.txt" ]; then
                    echo "syscalls per resumed handshake (strace -c -f):"
                    cat "$OUT/$tag.strace.txt"
                fi
                if [ -f "$OUT/$tag.w2.peer" ]; then
                    echo "the HAProxy peer saw: window 1: $(cat "$OUT/$tag.w1.peer"); window 2: $(cat "$OUT/$tag.w2.peer")"
                fi
            } | tee "$OUT/$tag.summary.txt"
            continue
        fi
        # shellcheck disable=SC2046
        dump=$(cg_run client "$port" "$v" 5 "$N" "$tag" $(config "$s" "$v" "$port"))
        # shellcheck disable=SC2046,SC2086
        python3 "$BENCH_DIR/cg_calls.py" "$dump" "$N" $(printf -- '--fn %s ' $FNS) \
            >"$OUT/$tag.callgrind.txt"
        if [ "$STRACE" = 1 ]; then
            port=$((port + 1))
            # shellcheck disable=SC2046
            strace_run client "$port" "$v" "$N" "$OUT/$tag.strace.txt" $(config "$s" "$v" "$port")
        fi
        {
            echo "== $tag: $N handshakes, per handshake"
            cat "$OUT/$tag.callgrind.txt"
            if [ -f "$OUT/$tag.strace.txt" ]; then
                echo "syscalls per handshake (strace -c -f):"
                awk -v n="$N" '$1 ~ /^[0-9.]+$/ && NF >= 5 { c = $4; name = $NF;
                    printf "  %8.2f  %s\n", c / n, name }' "$OUT/$tag.strace.txt"
            fi
        } | tee "$OUT/$tag.summary.txt"
    done
done
echo "handshake-profile: results in $OUT"
