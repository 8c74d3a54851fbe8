#!/usr/bin/env bash
# Fault injection (issue 8 item 3): 100 SIGHUPs (one every 50 ms) while clients keep working:
# 8 workers opening new TLS connections for 16 KiB GETs and 4 workers doing keep-alive series
# of 1 MiB GETs (every body sha256-checked), on an inbound listener, for the whole time.  No
# request may fail, ferry stays up, and every SIGHUP is answered by a reload (coalesced ones
# allowed: at least 20 event=reloaded, no reload_failed).
# timeout: 90
source "$(dirname "$0")/../support/faults.sh"

fault_setup PB PIN
fault_backend "$PB" backend
cat >"$T/hup.yaml" <<YAML
tls: {cert: $P/node1.crt, key: $P/node1.key, ca: $P/ca.crt}
limits: {idle_timeout: 30s}
listeners:
  - {name: in, mode: inbound, listen: "127.0.0.1:$PIN", backend: "127.0.0.1:$PB"}
YAML
ferry_start hup "$T/hup.yaml"
pid=$(ferry_pid hup)
L=(--connect "127.0.0.1:$PIN" --cert "$P/good.crt" --key "$P/good.key" --ca "$P/root.crt"
    --duration 40 --stop-file "$T/stop" --timeout 20)
load "${L[@]}" --concurrency 8 --size 16384 >"$T/small.json" 2>"$T/small.log" &
l1=$!
load "${L[@]}" --concurrency 4 --size 1048576 --requests 10 >"$T/big.json" 2>"$T/big.log" &
l2=$!
bg_register "$l1" load-small
bg_register "$l2" load-big
sleep 1
t0=$SECONDS
for i in $(seq 1 100); do
    kill -HUP "$pid" || fail "ferry gone at SIGHUP $i"
    sleep 0.05
done
sleep 1
touch "$T/stop"
rc1=0 rc2=0
wait "$l1" || rc1=$?
wait "$l2" || rc2=$?
ferry_alive hup || fail "ferry died under 100 SIGHUPs"
[ "$rc1" = 0 ] || fail "new-connection clients failed during SIGHUPs: $(cat "$T/small.json")"
[ "$rc2" = 0 ] || fail "keep-alive clients failed during SIGHUPs: $(cat "$T/big.json")"
nre=$(log_count hup 'event=reloaded')
nfail=$(log_count hup 'event=reload_failed')
[ "$nfail" = 0 ] || fail "$nfail reloads failed"
[ "$nre" -ge 20 ] || fail "only $nre reloads logged for 100 SIGHUPs"
ok1=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ok"])' "$T/small.json")
ok2=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ok"])' "$T/big.json")
[ "$ok1" -gt 50 ] && [ "$ok2" -gt 10 ] || fail "too little load to mean anything ($ok1 small, $ok2 big)"
fault_row "100 SIGHUPs under load" "no failed request, reloads, alive" \
    "0 failed of $ok1 x 16 KiB (new conns) + $ok2 x 1 MiB (keep-alive), sha256 ok; $nre reloads; alive"
ferry_stop hup
pass "faults/60-sighup"
