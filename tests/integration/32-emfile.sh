#!/usr/bin/env bash
# Goal: running out of file descriptors costs only the connections that could not be
# accepted: ferry logs accept_failed once, pauses accept() instead of spinning on it, keeps
# serving the connections it has, and serves new ones as soon as descriptors are free again
# (CONTRACT §5).
# valgrind: yes
# timeout: 180
source "$(dirname "$0")/lib.sh"

pki_make "$T/pki"
P=$T/pki
PB=$(free_port)
PIN=$(free_port)
http_backend "$PB" backend

cat >"$T/emfile.yaml" <<YAML
tls: {cert: $P/node1.crt, key: $P/node1.key, ca: $P/ca.crt}
limits: {handshake_timeout: 60s}
listeners:
  - {name: in, mode: inbound, listen: "127.0.0.1:$PIN", backend: "127.0.0.1:$PB"}
YAML

# ferry alone gets a small descriptor table (valgrind needs a few more of its own).
old_nofile=$(ulimit -Sn)
ulimit -Sn 64
[ "$VG" = 1 ] && ulimit -Sn 96
ferry_start ferry "$T/emfile.yaml"
ulimit -Sn "$old_nofile"
pid=$(ferry_pid ferry)

# Hold 150 idle connections: far more than the 64 descriptors ferry may have.
python3 - "$PIN" "$T/hold.done" >"$T/hold.log" 2>&1 <<'PY' &
import os, socket, sys, time
port, done = int(sys.argv[1]), sys.argv[2]
socks = []
for _ in range(150):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    socks.append(s)
end = time.time() + 60
while not os.path.exists(done) and time.time() < end:
    time.sleep(0.05)
for s in socks:
    s.close()
PY
holder=$!
bg_register "$holder" holder

expect_log ferry 'event=accept_failed.*Too many open files' 20
pass "accept failure logged"

# While descriptors are exhausted, ferry must not busy-loop on accept(): sample its CPU time.
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
t0=$(ticks)
sleep 2
t1=$(ticks)
hz=$(getconf CLK_TCK)
used=$(( (t1 - t0) * 1000 / hz ))
note "ferry used ${used}ms of CPU in 2s while out of descriptors"
[ "$used" -lt 1000 ] || fail "ferry spins while out of descriptors (${used}ms CPU in 2s)"
ferry_alive ferry || fail "ferry died while out of descriptors"
# One warning per episode: with several workers one may accept the last free descriptor right
# after another failed, which ends the episode (accept_recovered) and a new one starts.
n=$(log_count ferry 'event=accept_failed')
r=$(log_count ferry 'event=accept_recovered')
[ "$n" -ge 1 ] && [ "$n" = $((r + 1)) ] ||
    fail "accept_failed logged $n times with $r accept_recovered (want one per episode)"
[ "$n" -le 3 ] || fail "accept_failed logged $n times in 2s (an episode per attempt)"

# Free the descriptors: the held connections close, and a real client gets through again.
touch "$T/hold.done"
wait "$holder" || true
for i in $(seq 1 50); do
    code=$(curl_code --cacert "$P/root.crt" --cert "$P/good.crt" --key "$P/good.key" \
        --resolve "node1.test:$PIN:127.0.0.1" "https://node1.test:$PIN/after") || true
    [ "$code" = 200 ] && break
    sleep 0.2
done
[ "$code" = 200 ] || fail "no service after descriptors were freed (HTTP $code)"
pass "serves again after EMFILE"
expect_log ferry 'event=accept_recovered failures=[0-9]+' 5

ferry_stop ferry
pass "32-emfile"
