#!/usr/bin/env bash
# Fault injection (issue 8 item 3): ferry under `ulimit -n 256` with 1,000 concurrent TLS
# clients, each GETting 64 KiB (sha256 checked).  ferry runs out of descriptors (accept or
# backend connect fails with EMFILE): it must survive, never send wrong bytes, and serve every
# client in the end (clients retry connection failures and 502/503 for up to 60s); then 20
# sequential clients are served at once and the descriptor count returns to its start (the
# pool's idle backend connections included: they close after its idle_timeout, 1 s here).
# timeout: 120
source "$(dirname "$0")/../support/faults.sh"

N=1000
[ "$VG" = 1 ] && N=300
fault_setup PB PIN
fault_backend "$PB" backend
cat >"$T/emfile.yaml" <<YAML
tls: {cert: $P/node1.crt, key: $P/node1.key, ca: $P/ca.crt}
limits: {handshake_timeout: 30s, idle_timeout: 30s}
listeners:
  - {name: in, mode: inbound, listen: "127.0.0.1:$PIN", backend: "127.0.0.1:$PB",
     pool: {idle_timeout: 1s}}
YAML
old=$(ulimit -Sn)
ulimit -Sn 256
ferry_start emfile "$T/emfile.yaml"
ulimit -Sn "$old"
pid=$(ferry_pid emfile)
sleep 0.3
fd0=$(fd_count "$pid")
t0=$SECONDS
rc=0
LOAD_SECS=100 load --connect "127.0.0.1:$PIN" --cert "$P/good.crt" --key "$P/good.key" \
    --ca "$P/root.crt" --conns "$N" --size 65536 --retry-until 60 --timeout 30 \
    >"$T/load.json" 2>"$T/load.log" || rc=$?
res=$(cat "$T/load.json" 2>/dev/null || true)
ferry_alive emfile || fail "ferry died with ulimit -n 256 under $N clients"
[ "$rc" = 0 ] || fail "not every client was served with the right bytes: $res"
emf=$(log_count emfile 'Too many open files|EMFILE')
[ "$emf" -gt 0 ] || fail "ferry never ran out of descriptors: the test proves nothing ($res)"
C=(--cacert "$P/root.crt" --cert "$P/good.crt" --key "$P/good.key" --resolve "node1.test:$PIN:127.0.0.1")
for i in $(seq 1 20); do
    fetch_ok "https://node1.test:$PIN/blob/65536" 65536 "${C[@]}"
done
for i in $(seq 1 50); do [ "$(fd_count "$pid")" -le "$((fd0 + 2))" ] && break; sleep 0.1; done
fd1=$(fd_count "$pid")
[ "$fd1" -le "$((fd0 + 2))" ] || fail "ferry holds $fd1 descriptors after the load (start $fd0)"
note "load: $res; $emf EMFILE log lines; fds $fd0 -> $fd1"
fault_row "ulimit -n 256, $N clients" "survives EMFILE, all served, serves again" \
    "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(str(d["ok"]) + "/" + sys.argv[2] + " ok (sha256), " + str(d["retries"]) + " retries (502 while out of fds), " + str(d["elapsed"]) + "s")' "$res" "$N"); $emf EMFILE lines; fds $fd0->$fd1; alive"
ferry_stop emfile
pass "faults/50-emfile ($((SECONDS - t0))s)"
