#!/usr/bin/env bash
# Fault injection (issue 8 item 3): 5,000 TLS clients at once against max_connections: 1000.
# Each does one GET of a 16 KiB body (sha256 checked) and then holds its connection 1s, so
# ferry sits at the limit while the rest wait in the kernel backlog.  At most 2,000 clients
# connect at once: 1,000 in ferry and ~1,000 in its listen backlog (1024); more would only
# measure the kernel dropping SYNs and clients retransmitting them after 1, 3, 7... s.  Checks: every client is served with
# the right bytes in the end, ferry's own count of open connections (ferry_connections_open,
# sampled every 200 ms) never exceeds 1000 by more than its number of workers (each may accept
# one before it sees the limit), the client sockets in its descriptor table (sampled every 50 ms
# by tests/support/conncount.py, each socket counted once: /proc/net/tcp read under churn can
# list one twice, which once made this test count 2,028 sockets with 2,021 descriptors) stay
# within 5% of the limit, it logs accept_paused, and its CPU while paused at the
# limit stays low (sampled over 1s once accept is paused: under one core; measured figures
# are printed).
# timeout: 150
source "$(dirname "$0")/../support/faults.sh"

N=5000
MAX=1000
[ "$VG" = 1 ] && N=1500 && MAX=300
fault_setup PB PIN PADM
fault_backend "$PB" backend
cat >"$T/maxconn.yaml" <<YAML
tls: {cert: $P/node1.crt, key: $P/node1.key, ca: $P/ca.crt}
limits: {max_connections: $MAX, handshake_timeout: 60s, idle_timeout: 60s}
admin: {listen: "127.0.0.1:$PADM"}
listeners:
  - {name: in, mode: inbound, listen: "127.0.0.1:$PIN", backend: "127.0.0.1:$PB"}
YAML
ulimit -n 20000
ferry_start maxconn "$T/maxconn.yaml"
pid=$(ferry_pid maxconn)
fd0=$(fd_count "$pid")
cpu0=$(cpu_ms "$pid")
t0=$SECONDS

LOAD_SECS=130 load --connect "127.0.0.1:$PIN" --cert "$P/good.crt" --key "$P/good.key" \
    --ca "$P/root.crt" --conns "$N" --concurrency $((2 * MAX)) --size 16384 --hold 1 --timeout 120 >"$T/load.json" \
    2>"$T/load.log" &
lp=$!
bg_register "$lp" load

# Count the client connections ferry holds every 50 ms (tests/support/conncount.py) while
# the load runs; measure CPU over 1s once paused.
python3 "$SUPPORT/conncount.py" "$pid" "$PIN" "$T/load.done" 200 >"$T/conncount.out" 2>&1 &
cc=$!
bg_register "$cc" conncount
maxfd=0
maxopen=0
paused_cpu=""
while kill -0 "$lp" 2>/dev/null; do
    f=$(fd_count "$pid")
    [ "$f" -gt "$maxfd" ] && maxfd=$f
    o=$(curl -s --max-time 2 "http://127.0.0.1:$PADM/metrics" |
        awk '$1 == "ferry_connections_open{listener=\"in\"}" {print $2}')
    [ -n "$o" ] && [ "$o" -gt "$maxopen" ] && maxopen=$o
    if [ -z "$paused_cpu" ] && grep -q 'event=accept_paused' "$T/maxconn.log"; then
        sleep 0.5
        c1=$(cpu_ms "$pid")
        sleep 1
        c2=$(cpu_ms "$pid")
        paused_cpu=$((c2 - c1))
    fi
    sleep 0.2
done
rc=0
wait "$lp" || rc=$?
touch "$T/load.done"
wait "$cc" || true
held=$(sed -n 's/^max=\([0-9]*\).*/\1/p' "$T/conncount.out")
[ -n "$held" ] || fail "conncount.py failed: $(cat "$T/conncount.out")"
elapsed=$((SECONDS - t0))
res=$(cat "$T/load.json")
[ "$rc" = 0 ] || fail "not every client was served with the right bytes: $res $(tail -5 "$T/load.log")"
python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if d["ok"]==int(sys.argv[2]) else 1)' "$res" "$N" ||
    fail "expected $N good answers: $res"
ferry_alive maxconn || fail "ferry died at max_connections"
expect_log maxconn 'event=accept_paused'
expect_log maxconn 'event=accept_resumed'
NW=$(grep -Eo 'event=ready .*workers=[0-9]+' "$T/maxconn.log" | grep -Eo '[0-9]+$')
[ "$maxopen" -gt 0 ] || fail "never read ferry_connections_open from /metrics"
[ "$maxopen" -le $((MAX + NW)) ] ||
    fail "ferry_connections_open reached $maxopen with max_connections $MAX and $NW workers"
[ "$held" -le $((MAX + MAX / 20)) ] ||
    fail "ferry held $held client sockets at once with max_connections $MAX (max fds $maxfd)"
[ -n "$paused_cpu" ] || fail "never saw accept_paused while sampling"
# Under one core: the connections already accepted still handshake and answer meanwhile (about
# 1.5 ms of CPU each); a busy accept loop would take a whole core per worker.
# Under ASan/UBSan (CI's sanitizer stage sets ASAN_OPTIONS) every handshake costs several
# times more, so the bound says nothing there: that run is for memory errors, not CPU.
if [ -z "${ASAN_OPTIONS:-}" ]; then
    [ "$paused_cpu" -lt 1000 ] || fail "ferry used ${paused_cpu}ms CPU in 1s while paused at max_connections"
fi
cpu_total=$(($(cpu_ms "$pid") - cpu0))
note "load: $res; ferry_connections_open at most $maxopen ($NW workers); max $held client sockets held, max fds $maxfd (start $fd0); CPU ${paused_cpu}ms/1s while paused; total CPU ${cpu_total}ms"
fault_row "$N conns vs max_connections $MAX" "backlog waits, low CPU, all served" \
    "$N/$N ok (sha256) in ${elapsed}s; at most $maxopen open (max $held sockets); ${paused_cpu}ms CPU/s paused; ${cpu_total}ms CPU total"
ferry_stop maxconn
pass "faults/40-maxconn"
