#!/usr/bin/env bash
# Goal: CONTRACT 9 drain.  (1) A 20 MiB TCP transfer (client -> outbound listener -> mTLS ->
# inbound listener -> backend), read at a limited rate, is in flight when SIGTERM arrives: it
# finishes intact (sha256), while a NEW connection to either listener is refused; ferry exits 0
# promptly once it ends.  (2) With limits.drain_timeout: 2s and a connection that never
# finishes, ferry logs event=drain_timeout, closes it and exits 0 after ~2s.  (3) A second
# SIGTERM ends at once.  (4) Idle keep-alive HTTP connections (plain to an outbound listener,
# mTLS to an inbound one) are closed at drain start; an HTTP request in flight at SIGTERM gets
# its full answer, then its connection is closed too, and ferry exits without waiting for
# drain_timeout.
# valgrind: yes
# timeout: 180
source "$(dirname "$0")/lib.sh"

node1_pki "Ferry Drain Test CA"

PTCP=$(free_port)
tcp_backend "$PTCP" cmd tcpbe
PHTTP=$(free_port)
http_backend "$PHTTP" backend
# a backend that answers after 3 seconds (an HTTP request in flight at SIGTERM)
PSLOW=$(free_port)
cat >"$T/slow_backend.py" <<'PY'
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        time.sleep(3)
        body = b'{"slow":true}\n'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
bg_run slowbe python3 "$T/slow_backend.py" "$PSLOW"
wait_port "$PSLOW"

# write_cfg FILE NAME [DRAIN]: tcp out->in pair, http out->in pair, an inbound http listener
# to the slow backend; ports in PORT_<NAME>_{TIN,TOUT,HIN,HOUT,SLOW}
declare -A PORTS
write_cfg() {
    local f=$1 n=$2 drain=${3:-}
    for k in TIN TOUT HIN HOUT SLOW; do PORTS[$n.$k]=$(free_port); done
    {
        echo "tls: {cert: $CRT, key: $KEY, ca: $CA}"
        [ -n "$drain" ] && echo "limits: {drain_timeout: $drain}"
        cat <<EOF
listeners:
  - {name: tin, mode: inbound, listen: "127.0.0.1:${PORTS[$n.TIN]}", backend: "127.0.0.1:$PTCP", protocol: tcp}
  - {name: tout, mode: outbound, listen: "127.0.0.1:${PORTS[$n.TOUT]}", peer: "node1.test:${PORTS[$n.TIN]}", connect: "127.0.0.1:${PORTS[$n.TIN]}", protocol: tcp}
  - {name: hin, mode: inbound, listen: "127.0.0.1:${PORTS[$n.HIN]}", backend: "127.0.0.1:$PHTTP", protocol: http}
  - {name: hout, mode: outbound, listen: "127.0.0.1:${PORTS[$n.HOUT]}", peer: "node1.test:${PORTS[$n.HIN]}", connect: "127.0.0.1:${PORTS[$n.HIN]}", protocol: http}
  - {name: slow, mode: inbound, listen: "127.0.0.1:${PORTS[$n.SLOW]}", backend: "127.0.0.1:$PSLOW", protocol: http}
EOF
    } >"$f"
}

# refused PORT: a new TCP connection to 127.0.0.1:PORT is refused
refused() {
    python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
s.settimeout(3)
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
except ConnectionRefusedError:
    sys.exit(0)
except OSError as e:
    sys.exit("connect: %r (expected connection refused)" % e)
sys.exit("connected (expected connection refused)")
PY
}

# wait_exit NAME SECS: wait for ferry NAME to exit; sets EXIT_RC and EXIT_AT (ms since epoch)
wait_exit() {
    local pid end
    pid=$(ferry_pid "$1")
    end=$((SECONDS + $2))
    while kill -0 "$pid" 2>/dev/null; do
        [ "$SECONDS" -ge "$end" ] && fail "ferry $1 still runs ${2}s later"
        sleep 0.05
    done
    EXIT_AT=$(date +%s%3N)
    EXIT_RC=0
    wait "$pid" || EXIT_RC=$?
    unset "_FERRY_PIDS[$1]"
    if [ "$VG" = 1 ] && [ "$EXIT_RC" = 99 ]; then fail "valgrind memcheck reported errors in ferry $1"; fi
}
VGX=$((1 + VG * 5)) # time allowances scale under valgrind

# ---- (1) a long transfer finishes after SIGTERM; new connections are refused ----
write_cfg "$T/f1.yaml" f1
ferry_start f1 "$T/f1.yaml"
N=$((20 * 1024 * 1024))
RATE=$((5 * 1024 * 1024)) # bytes/s: about 4 s for the whole stream
[ "$VG" = 1 ] && RATE=$((2 * 1024 * 1024))
cat >"$T/slow_reader.py" <<'PY'
"""slow_reader.py PORT N RATE STARTED: ask the backend for the N-byte stream, read it at RATE
bytes/s; touch STARTED after the first MiB; print JSON {got, sha_ok, eof, secs}."""
import hashlib, json, os, socket, sys, time
sys.path.insert(0, os.environ["SUPPORT"])
import stream
port, n, rate, started = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
s = socket.create_connection(("127.0.0.1", port), timeout=60)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
s.sendall(b"SOURCE %d\n" % n)
h = hashlib.sha256()
got, t0, flagged, eof = 0, time.time(), False, False
while True:
    d = s.recv(65536)
    if not d:
        eof = True
        break
    h.update(d)
    got += len(d)
    if not flagged and got >= (1 << 20):
        open(started, "w").close()
        flagged = True
    ahead = got / rate - (time.time() - t0)
    if ahead > 0:
        time.sleep(ahead)
print(json.dumps({"got": got, "sha_ok": h.hexdigest() == stream.expected_sha256(n), "eof": eof,
                  "secs": round(time.time() - t0, 2)}))
PY
SUPPORT=$SUPPORT python3 "$T/slow_reader.py" "${PORTS[f1.TOUT]}" "$N" "$RATE" "$T/started" \
    >"$T/transfer.json" 2>"$T/transfer.log" &
RD=$!
bg_register "$RD" reader
end=$((SECONDS + 30 * VGX))
while [ ! -e "$T/started" ]; do
    kill -0 "$RD" 2>/dev/null || fail "the transfer ended before its first MiB: $(cat "$T/transfer.log")"
    [ "$SECONDS" -ge "$end" ] && fail "the transfer did not start"
    sleep 0.05
done
kill -TERM "$(ferry_pid f1)"
expect_log f1 'event=draining signal=SIGTERM'
kill -0 "$RD" 2>/dev/null || fail "the transfer was over before SIGTERM took effect; make it longer"
for k in TOUT TIN HOUT HIN; do
    msg=$(refused "${PORTS[f1.$k]}" 2>&1) || fail "listener $k during drain: $msg"
done
kill -0 "$RD" 2>/dev/null || fail "the transfer ended before new connections were checked"
pass "during drain, new connections to every listener are refused while the transfer runs"
ferry_alive f1 || fail "ferry exited while the transfer was in flight"
wait "$RD" || fail "slow reader failed: $(cat "$T/transfer.log")"
DONE_AT=$(date +%s%3N)
res=$(cat "$T/transfer.json")
case "$res" in
*'"got": '"$N"', "sha_ok": true, "eof": true'*) ;;
*) fail "transfer after SIGTERM not intact: $res (want $N bytes, matching sha256, EOF)" ;;
esac
wait_exit f1 $((5 * VGX))
[ "$EXIT_RC" = 0 ] || fail "ferry exited $EXIT_RC after the drain (expected 0)"
lag=$((EXIT_AT - DONE_AT))
[ "$lag" -le $((2000 * VGX)) ] || fail "ferry exited ${lag}ms after the transfer ended"
expect_no_log f1 'event=drain_timeout'
pass "20 MiB transfer in flight at SIGTERM finished intact ($res); ferry exited 0 ${lag}ms later"

# hold_conn PORT FILE: a TCP connection through which the echo backend never gets an EOF
# (cmd mode, ECHO); writes "eof <secs>" to FILE when ferry closes it
cat >"$T/hold.py" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"ECHO\nhello\n")
buf = b""
while b"hello\n" not in buf:
    d = s.recv(100)
    if not d:
        sys.exit("closed before the echo")
    buf += d
open(sys.argv[2] + ".up", "w").close()
s.settimeout(120)
t0 = time.time()
try:
    while s.recv(100):
        pass
except OSError:
    pass
open(sys.argv[2], "w").write("eof %.2f\n" % (time.time() - t0))
PY
hold_conn() {
    bg_run "hold-$(basename "$2")" python3 "$T/hold.py" "$1" "$2"
    HOLD_PID=$BG_PID
    local end=$((SECONDS + 10 * VGX))
    while [ ! -e "$2.up" ]; do
        kill -0 "$HOLD_PID" 2>/dev/null || fail "held connection failed: $(cat "$T/hold-$(basename "$2").log")"
        [ "$SECONDS" -ge "$end" ] && fail "held connection not up"
        sleep 0.05
    done
}

# ---- (2) drain_timeout: 2s with a connection that never finishes ----
write_cfg "$T/f2.yaml" f2 2s
ferry_start f2 "$T/f2.yaml"
hold_conn "${PORTS[f2.TOUT]}" "$T/held2"
t0=$(date +%s%3N)
kill -TERM "$(ferry_pid f2)"
wait_exit f2 $((10 * VGX))
el=$((EXIT_AT - t0))
[ "$EXIT_RC" = 0 ] || fail "ferry exited $EXIT_RC after drain_timeout (expected 0)"
[ "$el" -ge 1800 ] || fail "ferry exited ${el}ms after SIGTERM, before drain_timeout 2s"
[ "$el" -le $((4000 * VGX)) ] || fail "ferry exited ${el}ms after SIGTERM (drain_timeout 2s)"
expect_log f2 'event=drain_timeout connections=[1-9]'
wait "$HOLD_PID" 2>/dev/null || true
grep -q '^eof' "$T/held2" 2>/dev/null || fail "the held connection was not closed"
pass "drain_timeout 2s: event=drain_timeout, connection closed, ferry exited 0 after ${el}ms"

# ---- (3) a second SIGTERM ends at once ----
write_cfg "$T/f3.yaml" f3 # default drain_timeout 30s
ferry_start f3 "$T/f3.yaml"
hold_conn "${PORTS[f3.TOUT]}" "$T/held3"
kill -TERM "$(ferry_pid f3)"
expect_log f3 'event=draining'
sleep 0.5
ferry_alive f3 || fail "ferry exited on the first SIGTERM with a connection open (drain_timeout 30s)"
t0=$(date +%s%3N)
kill -TERM "$(ferry_pid f3)"
wait_exit f3 $((5 * VGX))
el=$((EXIT_AT - t0))
[ "$el" -le $((1000 * VGX)) ] || fail "ferry took ${el}ms to exit after the second SIGTERM"
[ "$EXIT_RC" = 0 ] || fail "ferry exited $EXIT_RC after the second SIGTERM (expected 0)"
wait "$HOLD_PID" 2>/dev/null || true
grep -q '^eof' "$T/held3" 2>/dev/null || fail "the held connection was not closed"
pass "second SIGTERM: ferry exited 0 ${el}ms later, closing the open connection"

# ---- (4) idle keep-alive HTTP connections close at drain start ----
write_cfg "$T/f4.yaml" f4 # drain_timeout 30s: nothing here may wait for it
ferry_start f4 "$T/f4.yaml"
cat >"$T/idle.py" <<'PY'
"""idle.py HOUT HIN SLOW CA CRT KEY READY GO: two idle keep-alive connections (plain to the
outbound listener, mTLS to the inbound one) after one request each, and a request in flight
to the slow backend.  After GO exists: report which connections ferry closed, and when."""
import http.client, json, os, socket, ssl, sys, time
hout, hin, slow = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
ca, crt, key, ready, go = sys.argv[4:9]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(crt, key)
def tls(port):
    c = http.client.HTTPSConnection("node1.test", port, context=ctx, timeout=20)
    c.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=20),
                             server_hostname="node1.test")
    return c
out = {}
c1 = http.client.HTTPConnection("127.0.0.1", hout, timeout=20)
c2 = tls(hin)
for name, c in (("plain_out", c1), ("tls_in", c2)):
    c.request("GET", "/first")
    r = c.getresponse()
    r.read()
    out[name + "_first"] = r.status
    assert not r.will_close, name + ": the first answer closes the connection"
c3 = tls(slow)
c3.request("GET", "/slow")
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.01)
t0 = time.time()
def closed_within(sock, secs):
    sock.settimeout(secs)
    try:
        return sock.recv(1) == b""
    except socket.timeout:
        return False
    except (ssl.SSLError, ConnectionResetError, OSError):
        return True
for name, c in (("plain_out", c1), ("tls_in", c2)):
    out[name + "_closed"] = closed_within(c.sock, 2)
    out[name + "_closed_at"] = round(time.time() - t0, 2)
r = c3.getresponse()
body = r.read()
out["slow_status"] = r.status
out["slow_body_ok"] = body == b'{"slow":true}\n'
out["slow_answered_at"] = round(time.time() - t0, 2)
out["slow_will_close"] = r.will_close
out["slow_closed_after"] = r.will_close or closed_within(c3.sock, 3)
out["slow_closed_at"] = round(time.time() - t0, 2)
print(json.dumps(out))
PY
python3 "$T/idle.py" "${PORTS[f4.HOUT]}" "${PORTS[f4.HIN]}" "${PORTS[f4.SLOW]}" "$CA" "$CRT" "$KEY" \
    "$T/idle.ready" "$T/idle.go" >"$T/idle.json" 2>"$T/idle.log" &
IDLE=$!
bg_register "$IDLE" idle
end=$((SECONDS + 15 * VGX))
while [ ! -e "$T/idle.ready" ]; do
    kill -0 "$IDLE" 2>/dev/null || fail "idle client failed: $(cat "$T/idle.log")"
    [ "$SECONDS" -ge "$end" ] && fail "idle client not ready"
    sleep 0.05
done
t0=$(date +%s%3N)
kill -TERM "$(ferry_pid f4)"
touch "$T/idle.go"
wait "$IDLE" || fail "idle client failed: $(cat "$T/idle.log")"
wait_exit f4 $((10 * VGX))
res=$(cat "$T/idle.json")
note "keep-alive at drain: $res"
j() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$T/idle.json" "$1"; }
[ "$(j plain_out_closed)" = True ] || fail "an idle keep-alive connection to the outbound listener stayed open after SIGTERM: $res"
[ "$(j tls_in_closed)" = True ] || fail "an idle keep-alive mTLS connection to the inbound listener stayed open after SIGTERM: $res"
pass "idle keep-alive connections (outbound plain, inbound mTLS) closed at drain start"
if [ "$(j slow_status)" != 200 ] || [ "$(j slow_body_ok)" != True ]; then
    fail "the HTTP request in flight at SIGTERM did not get its full answer: $res"
fi
pass "an HTTP request in flight at SIGTERM got its full answer"
[ "$(j slow_closed_after)" = True ] ||
    fail "after answering the in-flight request during drain, ferry kept the keep-alive connection open: $res"
el=$((EXIT_AT - t0))
[ "$EXIT_RC" = 0 ] || fail "ferry exited $EXIT_RC (expected 0)"
[ "$el" -le $((8000 * VGX)) ] || fail "ferry took ${el}ms to exit: it waited for drain_timeout"
expect_no_log f4 'event=drain_timeout'
pass "then its connection was closed and ferry exited 0 ${el}ms after SIGTERM, without drain_timeout"
