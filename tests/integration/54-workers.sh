#!/usr/bin/env bash
# Goal: issue 7 multi-core.  workers: 4 runs one event loop per worker thread (named
# ferry-w0..3, plus the control thread), every listener on every worker through SO_REUSEPORT.
# (1) 240 new connections through an outbound -> mTLS -> inbound http pair from 8 parallel
# clients all get the right body, every worker served some of them (its thread has used CPU),
# and /metrics sums the workers' counters exactly.  (2) A second ferry on the same port is
# refused at start (SO_REUSEPORT would silently share it).  (3) A reload that adds a listener
# on a new port serves it from every worker; the old ports keep working.  (4) SIGTERM drains
# every worker and exits 0.  (5) workers: 1 works; workers: 0 is a config error.  (6) Balanced
# accepts: with workers: 2, connections held open end up spread evenly (within
# PROXY_BALANCE_SLACK = 2) however SO_REUSEPORT hashed them, as ferry_worker_connections shows.
# valgrind: yes
# timeout: 240
source "$(dirname "$0")/lib.sh"

node1_pki "Ferry Workers Test CA"

PB=$(free_port)
http_backend "$PB" backend
PIN=$(free_port)
POUT=$(free_port)
PADM=$(free_port)
PNEW=$(free_port)

write_cfg() { # write_cfg FILE WORKERS [extra listener yes]
    cat >"$1" <<YAML
tls: {cert: $CRT, key: $KEY, ca: $CA}
workers: $2
admin: {listen: "127.0.0.1:$PADM"}
listeners:
  - {name: in, mode: inbound, listen: "127.0.0.1:$PIN", backend: "127.0.0.1:$PB"}
  - {name: out, mode: outbound, listen: "127.0.0.1:$POUT", peer: "node1.test:$PIN", connect: "127.0.0.1:$PIN"}
YAML
    if [ "${3:-}" = yes ]; then
        echo "  - {name: new, mode: outbound, listen: \"127.0.0.1:$PNEW\", peer: \"node1.test:$PIN\", connect: \"127.0.0.1:$PIN\"}" >>"$1"
    fi
}

# many PORT N PAR: N requests (a new connection each) from PAR parallel clients; prints the
# number that got status 200 and the backend's JSON for the path
many() {
    python3 - "$@" <<'PY'
import concurrent.futures, http.client, sys
port, n, par = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def one(i):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", "/db/doc%d" % i, headers={"Connection": "close"})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status == 200 and (b"/db/doc%d" % i) in body
with concurrent.futures.ThreadPoolExecutor(par) as ex:
    print(sum(ex.map(one, range(n))))
PY
}

VGX=$((1 + VG * 3))
N=240
[ "$VG" = 1 ] && N=60

# ---- (1) load spread over four workers, exact metrics ----
write_cfg "$T/w4.yaml" 4
ferry_start w4 "$T/w4.yaml"
expect_log w4 'event=ready .*workers=4'
PID=$(ferry_pid w4)
if [ "$VG" = 0 ]; then
    names=$(cat /proc/"$PID"/task/*/comm | sort | tr '\n' ' ')
    for i in 0 1 2 3; do
        case "$names" in *"ferry-w$i"*) ;; *) fail "no thread ferry-w$i (threads: $names)" ;; esac
    done
    pass "four worker threads: $names"
fi
got=$(many "$POUT" "$N" 8)
[ "$got" = "$N" ] || fail "$got of $N requests through the pair got the right body"
pass "$N new connections through outbound -> inbound, all answered"
if [ "$VG" = 0 ]; then
    for task in /proc/"$PID"/task/*; do
        comm=$(cat "$task/comm")
        case "$comm" in ferry-w*) ;; *) continue ;; esac
        ticks=$(awk '{print $14 + $15}' "$task/stat")
        [ "$ticks" -gt 0 ] || fail "worker $comm used no CPU: SO_REUSEPORT did not spread the connections"
        note "$comm: $ticks ticks of CPU"
    done
    pass "every worker served connections"
fi
m=$(curl -s --max-time 10 "http://127.0.0.1:$PADM/metrics")
metric() { echo "$m" | awk -v k="$1" '$1 == k {print $2}'; }
for l in in out; do
    v=$(metric "ferry_requests_total{listener=\"$l\",class=\"2xx\"}")
    [ "$v" = "$N" ] || fail "ferry_requests_total{listener=\"$l\",class=\"2xx\"} is '$v', want $N"
done
v=$(metric 'ferry_connections_total{listener="out"}')
[ "$v" = "$N" ] || fail "ferry_connections_total{listener=\"out\"} is '$v', want $N"
# Each worker pools its own mTLS connections to the peer: every client connection either took
# a pooled one or made a new one, and the inbound side saw exactly the new ones.
reused=$(metric 'ferry_pool_reused_total{listener="out"}')
made=$(metric 'ferry_pool_connects_total{listener="out"}')
inconns=$(metric 'ferry_connections_total{listener="in"}')
[ $((reused + made)) = "$N" ] || fail "pool: $reused reused + $made new != $N client connections"
[ "$made" = "$inconns" ] || fail "pool: $made new peer connections but the inbound side counted $inconns"
[ "$reused" -gt 0 ] || fail "pool: no client connection reused a peer connection"
pass "/metrics sums the workers: $N 2xx on each listener; pool: $reused reused + $made new = $N, inbound saw $inconns"

# ---- (2) a second ferry on the same port is refused ----
PADM_SAVE=$PADM
PADM=$(free_port)
write_cfg "$T/dup.yaml" 4
PADM=$PADM_SAVE
ferry_expect_exit 1 dup "$T/dup.yaml"
grep -q "listener in: cannot listen on 127.0.0.1:$PIN: Address already in use" "$T/dup.log" ||
    fail "second ferry: no address-in-use error: $(cat "$T/dup.log")"
got=$(many "$POUT" 8 4)
[ "$got" = 8 ] || fail "after the refused second ferry, $got of 8 requests answered"
pass "a second ferry on the same port exits 1 naming the port; the first keeps serving"

# ---- (3) reload adds a listener on every worker ----
write_cfg "$T/w4.yaml" 4 yes
kill -HUP "$PID"
expect_log w4 'event=reloaded' $((10 * VGX))
wait_port "$PNEW" 10
got=$(many "$PNEW" 40 8)
[ "$got" = 40 ] || fail "new listener after reload: $got of 40 answered"
got=$(many "$POUT" 40 8)
[ "$got" = 40 ] || fail "old listener after reload: $got of 40 answered"
pass "reload: the new listener and the old one answer 40 of 40 each"
# Each worker counts into its own block per listener name; the blocks outlive the reload and
# /metrics sums them all: every request since the start, on each listener, exactly.
m=$(curl -s --max-time 10 "http://127.0.0.1:$PADM/metrics")
for lv in "out $((N + 8 + 40))" "new 40" "in $((N + 8 + 40 + 40))"; do
    set -- $lv
    v=$(metric "ferry_requests_total{listener=\"$1\",class=\"2xx\"}")
    [ "$v" = "$2" ] || fail "after reload: ferry_requests_total{listener=\"$1\",class=\"2xx\"} is '$v', want $2"
    v=$(metric "ferry_request_duration_seconds_count{listener=\"$1\",class=\"2xx\"}")
    [ "$v" = "$2" ] || fail "after reload: ferry_request_duration_seconds_count{listener=\"$1\",class=\"2xx\"} is '$v', want $2"
done
v=$(metric 'ferry_connections_total{listener="out"}')
[ "$v" = $((N + 48)) ] || fail "after reload: ferry_connections_total{listener=\"out\"} is '$v', want $((N + 48))"
pass "after reload /metrics still sums every worker since the start: out $((N + 48)), new 40, in $((N + 88))"

# ---- (4) drain all workers ----
ferry_stop w4
pass "SIGTERM: every worker drained, exit 0"

# ---- (5) workers: 1 and a bad value ----
write_cfg "$T/w1.yaml" 1
ferry_start w1 "$T/w1.yaml"
expect_log w1 'event=ready .*workers=1'
got=$(many "$POUT" 20 4)
[ "$got" = 20 ] || fail "workers: 1: $got of 20 answered"
ferry_stop w1
write_cfg "$T/w0.yaml" 0
ferry_expect_exit 1 w0 "$T/w0.yaml"
grep -q 'w0.yaml:2:10: workers: expected an integer from 1 to 256, got "0"' "$T/w0.log" ||
    fail "workers: 0: $(cat "$T/w0.log")"
pass "workers: 1 serves; workers: 0 is refused with file:line:col"

# ---- (6) balanced accepts: held connections spread evenly over two workers ----
# SO_REUSEPORT hashes each connection to a worker by its ports: 60 connections land anywhere
# from 22:38 to 38:22 by chance.  A worker holding 2 more than the other hands a new one over.
write_cfg "$T/w2.yaml" 2
ferry_start w2 "$T/w2.yaml"
expect_log w2 'event=ready .*workers=2'
K=60
[ "$VG" = 1 ] && K=20
python3 - "$PIN" "$K" "$CRT" "$KEY" "$CA" "$T/held" <<'PY' &
import socket, ssl, sys, time
port, k, crt, key, ca, flag = int(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(crt, key)
held = []
for _ in range(k):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=60),
                        server_hostname="node1.test")
    held.append(s)
open(flag, "w").write("%d\n" % len(held))
time.sleep(120)
PY
HOLDER=$!
bg_register "$HOLDER" holder
end=$((SECONDS + 30 * VGX))
until [ -s "$T/held" ]; do
    [ "$SECONDS" -ge "$end" ] && fail "the $K connections were not all made"
    sleep 0.2
done
m=$(curl -s --max-time 10 "http://127.0.0.1:$PADM/metrics")
w0=$(metric 'ferry_worker_connections{worker="0"}')
w1=$(metric 'ferry_worker_connections{worker="1"}')
[ $((w0 + w1)) = "$K" ] || fail "ferry_worker_connections: $w0 + $w1, want $K in all"
d=$((w0 > w1 ? w0 - w1 : w1 - w0))
[ "$d" -le 2 ] || fail "ferry_worker_connections: $w0 and $w1 for $K held connections (more than 2 apart)"
h=$(( $(metric 'ferry_worker_handoffs_total{worker="0"}') + $(metric 'ferry_worker_handoffs_total{worker="1"}') ))
pass "balanced accepts: $K held connections on two workers: $w0 and $w1 ($h handed over)"
kill "$HOLDER" 2>/dev/null || true
wait "$HOLDER" 2>/dev/null || true
ferry_stop w2
