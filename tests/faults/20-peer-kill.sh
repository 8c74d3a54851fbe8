#!/usr/bin/env bash
# Fault injection (issue 8 item 3): the peer ferry is SIGKILLed mid-stream, in both directions,
# protocol tcp:  client -> ferry A (outbound) -> mTLS -> ferry B (inbound) -> tcp backend.
#   download: B is killed while a 200 MiB stream flows backend -> client.  A must end the
#             client's connection within 5s (no hang), the bytes the client got are an exact
#             prefix, A stays up and releases the connection (descriptors back to idle).
#   upload:   A is killed while the client streams 200 MiB towards the backend.  B must end the
#             backend connection within 5s, what the backend got is an exact prefix, B stays up
#             and releases it.
# After each kill the ferry is restarted with the same config and an 8 MiB transfer in that
# direction is byte-exact (sha256).
# timeout: 90
source "$(dirname "$0")/../support/faults.sh"

fault_setup PBK PA PBI
tcp_backend "$PBK" cmd backend
cat >"$T/a.yaml" <<YAML
tls: {cert: $P/good.crt, key: $P/good.key, ca: $P/ca.crt}
limits: {idle_timeout: 60s}
listeners:
  - {name: out, mode: outbound, protocol: tcp, listen: "127.0.0.1:$PA", peer: "node1.test:$PBI", connect: "127.0.0.1:$PBI"}
YAML
cat >"$T/b.yaml" <<YAML
tls: {cert: $P/node1.crt, key: $P/node1.key, ca: $P/ca.crt}
limits: {idle_timeout: 60s}
listeners:
  - {name: in, mode: inbound, protocol: tcp, listen: "127.0.0.1:$PBI", backend: "127.0.0.1:$PBK"}
YAML
ferry_start fa "$T/a.yaml"
ferry_start fb "$T/b.yaml"

# client.py MODE PORT FLAG OUT: download = "SOURCE 200MiB" and read; upload = "SINK" + stream.
# Touches FLAG after 4 MiB moved; writes "bytes prefix_ok seconds_after_flag end" to OUT.
cat >"$T/client.py" <<'PY'
import os, socket, sys, time
sys.path.insert(0, os.environ["SUPPORT"])
import stream
mode, port, flag, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
N = 200 << 20
s = socket.create_connection(("127.0.0.1", port), timeout=20)
moved, ok, tflag, end = 0, True, None, "eof"
gen = stream.gen(N)
want = b""
try:
    if mode == "download":
        s.sendall(b"SOURCE %d\n" % N)
        while True:
            d = s.recv(1 << 16)
            if not d:
                break
            while len(want) < len(d):
                want += next(gen)
            ok = ok and d == want[:len(d)]
            want = want[len(d):]
            moved += len(d)
            if tflag is None and moved >= 4 << 20:
                open(flag, "w").close(); tflag = time.time()
                time.sleep(0.2)   # let buffers fill: the kill lands mid-stream
    else:
        s.sendall(b"SINK\n")
        for b in gen:
            for i in range(0, len(b), 1 << 16):
                s.sendall(b[i:i + (1 << 16)])
                moved += len(b[i:i + (1 << 16)])
                if tflag is None and moved >= 4 << 20:
                    open(flag, "w").close(); tflag = time.time()
                time.sleep(0.0005)
        end = "sent-all"
except socket.timeout:
    end = "timeout"
except OSError as e:
    end = type(e).__name__
after = round(time.time() - tflag, 2) if tflag else -1
open(out, "w").write(f"{moved} {ok} {after} {end}\n")
PY
wait_flag() { for i in $(seq 1 100); do [ -f "$1" ] && return 0; sleep 0.05; done; fail "no flag $1"; }
idle_fds() { # idle_fds PID BASE: wait up to 5s until PID holds <= BASE descriptors
    local i
    for i in $(seq 1 50); do [ "$(fd_count "$1")" -le "$2" ] && return 0; sleep 0.1; done
    return 1
}
sleep 0.3
fa0=$(fd_count "$(ferry_pid fa)")
fb0=$(fd_count "$(ferry_pid fb)")

# ---- download, kill B ----
python3 "$T/client.py" download "$PA" "$T/flag1" "$T/dl.out" 2>"$T/dl.log" &
cl=$!
bg_register "$cl" dl-client
wait_flag "$T/flag1"
kill -KILL "$(ferry_pid fb)"
tk=$(date +%s%N)
wait "$cl" || fail "download client crashed: $(cat "$T/dl.log")"
read -r moved ok _ end <"$T/dl.out"
ms=$((($(date +%s%N) - tk) / 1000000))
[ "$ok" = True ] || fail "download: the bytes before the kill differ"
[ "$moved" -lt $((200 << 20)) ] || fail "download: finished before the kill"
[ "$ms" -lt 5000 ] || fail "download: client connection still open ${ms}ms after the peer died"
ferry_alive fa || fail "ferry A died when its peer was killed"
idle_fds "$(ferry_pid fa)" "$fa0" || fail "ferry A holds $(fd_count "$(ferry_pid fa)") fds (idle $fa0) after its peer died"
ferry_start fb2 "$T/b.yaml"
out=$(tls_client --connect "127.0.0.1:$PA" --line "SOURCE 8388608" --shut none --expect-stream 8388608 --timeout 20) ||
    fail "download after restarting B: $out"
fault_row "peer (inbound ferry) killed, download" "client closed fast, exact prefix, A alive" \
    "client ended ($end) ${ms}ms after kill at $moved bytes, prefix exact; A fds back to $fa0; 8 MiB ok after restart"

# ---- upload, kill A ----
fbp=$(ferry_pid fb2)
sleep 0.3
fb0=$(fd_count "$fbp")
: >"$T/backend.sha256"
nsink0=$(grep -c '^sink\|^error' "$T/backend.log" || true)
python3 "$T/client.py" upload "$PA" "$T/flag2" "$T/ul.out" 2>"$T/ul.log" &
cl=$!
bg_register "$cl" ul-client
wait_flag "$T/flag2"
sleep 0.2
kill -KILL "$(ferry_pid fa)"
tk=$(date +%s%N)
wait "$cl" || true
end=$((SECONDS + 5))
while [ "$(grep -c '^sink\|^error' "$T/backend.log" || true)" -le "$nsink0" ]; do
    [ "$SECONDS" -lt "$end" ] || fail "upload: backend connection still open 5s after ferry A died"
    sleep 0.05
done
ms=$((($(date +%s%N) - tk) / 1000000))
how=$(grep '^sink\|^error' "$T/backend.log" | tail -n1)
if [ -s "$T/backend.sha256" ]; then
    read -r n sha <"$T/backend.sha256"
    [ "$sha" = "$(stream_sha "$n")" ] || fail "upload: the $n bytes the backend got are not an exact prefix"
    got="backend saw EOF after $n bytes (exact prefix)"
else
    got="backend saw: $how"
fi
ferry_alive fb2 || fail "ferry B died when its peer was killed"
idle_fds "$fbp" "$fb0" || fail "ferry B holds $(fd_count "$fbp") fds (idle $fb0) after its peer died"
ferry_start fa2 "$T/a.yaml"
out=$(tls_client --connect "127.0.0.1:$PA" --line SINK --send 8388608 --shut wr --expect-sink --timeout 20) ||
    fail "upload after restarting A: $out"
fault_row "peer (outbound ferry) killed, upload" "backend closed fast, exact prefix, B alive" \
    "$got ${ms}ms after kill; B fds back to $fb0; 8 MiB ok after restart"
ferry_stop fa2
ferry_stop fb2
pass "faults/20-peer-kill"
