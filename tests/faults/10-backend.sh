#!/usr/bin/env bash
# Fault injection (issue 8 item 3), backend side, inbound protocol http and tcp:
#   backend refuses          -> 502 JSON at once
#   backend resets mid-body  -> the client's transfer ends short (never "complete")
#   stall before headers     -> 504 after limits.backend_timeout (2s)
#   stall mid-body           -> closed after limits.idle_timeout (3s), no 504 after bytes went out
#   closes half-way (http)   -> the client gets exactly the bytes sent, then EOF
#   backend half-closes (tcp)-> the client gets EOF, and what it sends afterwards still reaches
#                               the backend (half-close kept), sha256 compared
# After each: ferry alive, and a fresh 1 MiB GET has the right sha256.
# timeout: 90
source "$(dirname "$0")/../support/faults.sh"

fault_setup PB PDEAD PHC PIN PREF PTCP
fault_backend "$PB" backend

# A tcp backend that writes 256 KiB, half-closes, then reads to EOF and records the sha256.
cat >"$T/halfclose.py" <<'PY'
import hashlib, os, socket, sys, threading
sys.path.insert(0, os.environ["SUPPORT"])
import stream
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
def serve(c):
    for b in stream.gen(262144):
        c.sendall(b)
    c.shutdown(socket.SHUT_WR)
    h, n = hashlib.sha256(), 0
    while True:
        d = c.recv(1 << 16)
        if not d:
            break
        h.update(d)
        n += len(d)
    with open(sys.argv[2], "a") as f:
        f.write(f"{n} {h.hexdigest()}\n")
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
bg_run halfclose python3 "$T/halfclose.py" "$PHC" "$T/halfclose.sha"
wait_port "$PHC"

cat >"$T/backend.yaml" <<YAML
tls: {cert: $P/node1.crt, key: $P/node1.key, ca: $P/ca.crt}
limits: {backend_timeout: 2s, idle_timeout: 3s, handshake_timeout: 5s}
listeners:
  - {name: in, mode: inbound, listen: "127.0.0.1:$PIN", backend: "127.0.0.1:$PB"}
  - {name: in-refused, mode: inbound, listen: "127.0.0.1:$PREF", backend: "127.0.0.1:$PDEAD"}
  - {name: in-tcp, mode: inbound, protocol: tcp, listen: "127.0.0.1:$PTCP", backend: "127.0.0.1:$PHC"}
YAML
ferry_start backend "$T/backend.yaml"

C=(--cacert "$P/root.crt" --cert "$P/good.crt" --key "$P/good.key"
    --resolve "node1.test:$PIN:127.0.0.1" --resolve "node1.test:$PREF:127.0.0.1")
U=https://node1.test:$PIN
still_serves() { # still_serves FAULT
    ferry_alive backend || fail "ferry died after: $1"
    fetch_ok "$U/blob/1048576" 1048576 "${C[@]}"
}
# get PATH: curl through ferry; sets CODE, RC (curl's status), LEN, MS; body in $T/get.body
get() {
    local t0 out
    t0=$(date +%s%N)
    RC=0
    out=$(curl -s -o "$T/get.body" -w '%{http_code}' --max-time 15 "${C[@]}" "$1") || RC=$?
    CODE=${out:-000}
    LEN=$(stat -c %s "$T/get.body" 2>/dev/null || echo 0)
    MS=$((($(date +%s%N) - t0) / 1000000))
}

# ---- backend refuses ----
get "https://node1.test:$PREF/x"
[ "$CODE" = 502 ] || fail "refusing backend: HTTP $CODE, expected 502"
grep -q '"error":"bad_gateway"' "$T/get.body" || fail "refusing backend: body $(cat "$T/get.body")"
[ "$MS" -lt 2000 ] || fail "refusing backend: 502 took ${MS}ms"
still_serves refuse
fault_row "backend refuses" "502 bad_gateway JSON at once" "502 in ${MS}ms; alive; next 1 MiB ok"

# ---- backend resets mid-response ----
get "$U/reset/1048576"
[ "$RC" != 0 ] || fail "backend reset mid-body: curl saw a complete transfer (status 0, $LEN bytes)"
[ "$LEN" -lt 1048576 ] || fail "backend reset mid-body: client got all $LEN bytes"
head -c "$LEN" "$T/get.body" | cmp -s - <(python3 -c 'import sys; sys.path.insert(0,sys.argv[1]); import stream; sys.stdout.buffer.write(b"".join(stream.gen(int(sys.argv[2]))))' "$SUPPORT" "$LEN") ||
    fail "backend reset mid-body: the $LEN bytes the client got differ from what was sent"
still_serves reset
fault_row "backend resets mid-response" "client transfer ends short, bytes so far exact" "curl status $RC after $LEN/1048576 bytes (prefix exact); alive"

# ---- backend stalls before headers ----
get "$U/stall-head"
[ "$CODE" = 504 ] || fail "stall before headers: HTTP $CODE, expected 504"
grep -q '"error":"gateway_timeout"' "$T/get.body" || fail "stall before headers: body $(cat "$T/get.body")"
[ "$MS" -ge 1800 ] && [ "$MS" -lt 4000 ] || fail "stall before headers: 504 after ${MS}ms, expected ~2000"
still_serves stall-head
fault_row "backend stalls before headers" "504 after backend_timeout (2s)" "504 gateway_timeout after ${MS}ms; alive"

# ---- backend stalls mid-body ----
get "$U/stall-body/1048576"
[ "$CODE" = 200 ] || fail "stall mid-body: HTTP $CODE, expected the 200 head"
[ "$LEN" = 1000 ] || fail "stall mid-body: client got $LEN bytes, expected the 1000 sent"
if grep -q 'gateway_timeout\|504' "$T/get.body"; then fail "stall mid-body: a 504 was written after body bytes"; fi
[ "$RC" != 0 ] || fail "stall mid-body: curl saw a complete transfer"
[ "$MS" -ge 2800 ] && [ "$MS" -lt 6000 ] || fail "stall mid-body: closed after ${MS}ms, expected ~3000 (idle_timeout)"
still_serves stall-body
fault_row "backend stalls mid-body" "closed after idle_timeout (3s), no 504" "closed after ${MS}ms with 1000 bytes, curl status $RC, no 504; alive"

# ---- backend closes half-way (http) ----
get "$U/close-half/1048576"
[ "$LEN" = 524288 ] || fail "close half-way: client got $LEN bytes, expected 524288"
[ "$RC" != 0 ] || fail "close half-way: curl saw a complete transfer"
[ "$(sha256_of "$T/get.body")" = "$(stream_sha 524288)" ] || fail "close half-way: bytes differ"
still_serves close-half
fault_row "backend closes half-way (http)" "client gets the bytes sent, then EOF" "524288/1048576 bytes exact, curl status $RC, ${MS}ms; alive"

# ---- backend half-closes (tcp): the client's later bytes still arrive ----
out=$(tls_client --connect "127.0.0.1:$PTCP" --tls --cert "$P/good.crt" --key "$P/good.key" \
    --ca "$P/root.crt" --sni node1.test --send 1048576 --shut wr --expect-stream 262144 --timeout 15) ||
    fail "tcp half-close: client check failed: $out"
for i in $(seq 1 50); do [ -s "$T/halfclose.sha" ] && break; sleep 0.1; done
got=$(cat "$T/halfclose.sha" 2>/dev/null || true)
[ "$got" = "1048576 $(stream_sha 1048576)" ] ||
    fail "tcp half-close: backend got '$got' after its own FIN, expected the 1 MiB stream"
still_serves half-close
fault_row "backend half-closes (tcp)" "client sees EOF, its later 1 MiB still arrives" "256 KiB + EOF to client; backend got 1 MiB exact after its FIN; alive"

ferry_stop backend
pass "faults/10-backend"
