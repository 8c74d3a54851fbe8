#!/usr/bin/env bash
# Goal: issue 14 "one teardown per side": when ferry answers the local client itself on an
# outbound `protocol: http` listener with the pool on, the peer connection ends the right way.
# curl / a raw client -> outbound ferry (pool, one worker) -> tls_http_peer.py, a real mTLS
# peer that logs each connection's handshake (reused=1: a resumed session), requests and end
# (end=close_notify, or end=eof for a TCP FIN without one).
# 1. Between exchanges: a client's good request, then a request ferry refuses itself (400,
#    Content-Length with Transfer-Encoding) on the same connection: the peer connection goes
#    back to the pool, and the next client reuses it (same peer connection, /metrics: one
#    connect, reused counted, the peer saw no end).  The same when the refused request was
#    pipelined behind one in flight (ferry answers once that response is relayed).
# 2. Mid-exchange, an answer for the peer's side (504, backend_timeout): the peer connection
#    is closed with close_notify, and the next connection resumes the session (a connection
#    freed without SSL_shutdown leaves no session to resume).
# 3. Mid-exchange, an answer for the client's side (400 for a bad chunk line after a chunk of
#    the body was forwarded): never pooled (part of a request is on it), closed with
#    close_notify; the next client gets a new peer connection that resumes the session.
# 4. A response delimited by the end of the connection: whole when the peer ends it with
#    close_notify (curl gets it, exit 0); cut when the stream ends with a bare FIN, which anyone
#    on the path can forge: the client gets what came, then a reset (curl: exit 56), and the log
#    says bad_response rule=truncated (before: a clean end, the truncation unseen).
# timeout: 60
source "$(dirname "$0")/lib.sh"

pki_make "$T/pki"
P=$T/pki
PPEER=$(free_port)
POUT=$(free_port)
PADM=$(free_port)
EV=$T/peer.events
: >"$EV"
bg_run peer python3 "$SUPPORT/tls_http_peer.py" --port "$PPEER" --cert "$P/node1.crt" \
    --key "$P/node1.key" --ca "$P/ca.crt" --log "$EV"
wait_port "$PPEER"

cat >"$P/out.yaml" <<YAML
tls: {cert: node1.crt, key: node1.key, ca: ca.crt}
workers: 1
log: {level: debug}
admin: {listen: "127.0.0.1:$PADM"}
limits: {backend_timeout: 1s}
listeners:
  - name: pooled
    mode: outbound
    listen: "127.0.0.1:$POUT"
    peer: "node1.test:$PPEER"
    connect: "127.0.0.1:$PPEER"
    pool: {max_idle: 4, idle_timeout: 60s}
YAML
ferry_start out "$P/out.yaml"

# metric NAME: the value of ferry_NAME{listener="pooled"}.
metric() {
    curl -s --max-time 10 "http://127.0.0.1:$PADM/metrics" |
        sed -n "s/^ferry_$1{listener=\"pooled\"} //p"
}
# expect_event ERE [SECS]: wait until the peer logged a line matching ERE.
expect_event() {
    local _
    for _ in $(seq 1 $((${2:-5} * 10))); do
        grep -Eq "$1" "$EV" && return 0
        sleep 0.1
    done
    fail "the peer never logged /$1/: $(tr '\n' ';' <"$EV")"
}
# get PATH: one request through the pooled listener; its status in $code.
get() {
    code=$(curl -s -o "$T/b" -w '%{http_code}' --max-time 10 "http://127.0.0.1:$POUT$1") || true
}
# ended_clean N WHAT: the peer saw peer connection N end, with a close_notify.
ended_clean() {
    expect_event "conn=$1 end=" 5
    grep -q "conn=$1 end=close_notify" "$EV" ||
        fail "$2: peer connection $1 ended without close_notify: $(grep "conn=$1 end=" "$EV")"
}
# new_conn_resumes N PATH WHAT: GET PATH succeeds on a new peer connection N that resumed
# the session (a connection freed without SSL_shutdown leaves no session to resume).
new_conn_resumes() {
    get "$2"
    [ "$code" = 200 ] || fail "$3: GET $2: HTTP $code"
    grep -q "conn=$1 req=1 GET $2" "$EV" ||
        fail "$3: GET $2 did not go on a new peer connection $1: $(tr '\n' ';' <"$EV")"
    grep -q "conn=$1 hs version=.* reused=1" "$EV" ||
        fail "$3: peer connection $1 did not resume the session: $(grep "conn=$1 hs" "$EV")"
}
# raw SCRIPT: run a python client on 127.0.0.1:$POUT with socket s; print what it reads to EOF.
raw() {
    python3 - "$POUT" "$1" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=15)
buf = b""
def read_response():
    global buf
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, buf = buf.split(b"\r\n\r\n", 1)
    n = [int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")][0]
    while len(buf) < n:
        buf += s.recv(65536)
    buf = buf[n:]
    return head.split(b"\r\n")[0].decode()
def read_to_eof():
    global buf
    while True:
        d = s.recv(65536)
        if not d:
            return buf.split(b"\r\n")[0].decode()
        buf += d
exec(sys.argv[2])
PY
}

# 1. A good request, then one ferry refuses (400) on the same connection, which then ends.
out=$(raw '
s.sendall(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
print(read_response())
s.sendall(b"POST /smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
print(read_to_eof())')
[ "$out" = $'HTTP/1.1 200 OK\nHTTP/1.1 400 Bad Request' ] || fail "client 1: $out"
grep -q 'conn=1 req=1 GET /one' "$EV" || fail "the peer did not see GET /one on connection 1"
grep -q 'smuggle' "$EV" && fail "the refused request reached the peer"
get /two
[ "$code" = 200 ] || fail "client 2: HTTP $code"
grep -q 'conn=1 req=2 GET /two' "$EV" ||
    fail "client 2 did not reuse the pooled peer connection: $(tr '\n' ';' <"$EV")"
grep -q 'conn=1 end=' "$EV" && fail "the peer connection ended: $(grep 'conn=1 end=' "$EV")"
grep -q 'conn=2' "$EV" && fail "client 2 made a new peer connection"
reused=$(metric pool_reused_total)
connects=$(metric pool_connects_total)
[ "$reused" = 1 ] && [ "$connects" = 1 ] ||
    fail "after a 400 to client 1: ferry_pool_reused_total '$reused' (want 1), connects '$connects' (want 1)"
pass "400 between exchanges: the peer connection went back to the pool and client 2 reused it"

# The same with the refused request pipelined behind one in flight: ferry answers it once
# the response before it has gone out (from inside that response's relay), and pools.
out=$(raw '
s.sendall(b"GET /slow/0.3 HTTP/1.1\r\nHost: x\r\n\r\n"
          b"POST /smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
print(read_response())
print(read_to_eof())')
[ "$out" = $'HTTP/1.1 200 OK\nHTTP/1.1 400 Bad Request' ] || fail "pipelined: $out"
get /after-pipelined
[ "$code" = 200 ] || fail "after the pipelined 400: HTTP $code"
grep -q 'conn=1 req=[0-9]* GET /after-pipelined' "$EV" ||
    fail "after a pipelined 400, the pooled peer connection was not reused: $(tr '\n' ';' <"$EV")"
pass "pipelined 400 behind a request in flight: pooled once its response was relayed"

# 2. A request the peer is slow to answer: ferry answers 504 and closes the peer connection.
get /slow/4
[ "$code" = 504 ] || fail "slow request: HTTP $code, expected 504: $(cat "$T/b")"
grep -q 'conn=1 req=[0-9]* GET /slow/4' "$EV" || fail "the slow request did not use the pooled connection"
ended_clean 1 "504 mid-exchange"
new_conn_resumes 2 /four "after the 504"
pass "504 mid-exchange: close_notify to the peer; the next connection resumed the session"

# 3. A chunked body refused after its first chunk left (a bad chunk line): 400, and the
# peer connection, holding half a request, is closed with close_notify, never pooled.
out=$(raw '
s.sendall(b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
time.sleep(0.5)
s.sendall(b"zz\r\nhello\r\n0\r\n\r\n")
print(read_to_eof())')
[ "$out" = 'HTTP/1.1 400 Bad Request' ] || fail "bad chunk line: $out"
grep -q 'conn=2 req=2 POST /chunked' "$EV" || fail "the chunked request did not reach the peer on connection 2"
ended_clean 2 "400 mid-body"
new_conn_resumes 3 /six "after the 400 mid-body"
pass "400 mid-body: close_notify to the peer, never pooled"

# 4. Responses that run to the end of the connection: ended by the peer's close_notify (on the
# pooled connection 3), or by a FIN without one (a new connection, 4).  Each ends its peer
# connection, so the next request opens connection 5, left idle in the pool for the stop.
rc=0
body=$(curl -sS --max-time 10 "http://127.0.0.1:$POUT/to-eof/notify" 2>"$T/curl.err") || rc=$?
[ "$rc" = 0 ] && [ "$body" = "hello GET /to-eof/notify" ] ||
    fail "to-eof ended by close_notify: curl exit $rc, body '$body': $(cat "$T/curl.err")"
rc=0
body=$(curl -sS --max-time 10 "http://127.0.0.1:$POUT/to-eof/fin" 2>"$T/curl.err") || rc=$?
[ "$rc" = 56 ] && grep -qi 'reset' "$T/curl.err" ||
    fail "to-eof cut by a bare FIN: curl should see a reset (exit 56), got exit $rc, body '$body': $(cat "$T/curl.err")"
[ "$body" = "hello GET /to-eof/fin" ] || fail "what came before the FIN should reach the client: '$body'"
# The same cut by a forged record (it fails its MAC): not a clean end either (fourth black-box
# attack: the client got a FIN and the log status=200).
rc=0
body=$(curl -sS --max-time 10 "http://127.0.0.1:$POUT/to-eof/garbage" 2>"$T/curl.err") || rc=$?
[ "$rc" = 56 ] && grep -qi 'reset' "$T/curl.err" ||
    fail "to-eof cut by a bad record: curl should see a reset (exit 56), got exit $rc, body '$body': $(cat "$T/curl.err")"
expect_log out 'event=bad_response .*rule=truncated .*without close_notify'
expect_log out 'event=bad_response .*rule=truncated .*cut by a failure of the other side'
n=$(log_count out 'event=bad_response')
[ "$n" = 2 ] || fail "two bad_response lines expected (the bare FIN, the bad record), got $n: $(grep bad_response "$T/out.log")"
pass "a response to the end of the connection: whole with close_notify, a reset after a bare FIN"
get /seven
[ "$code" = 200 ] || fail "/seven: HTTP $code"
grep -q 'conn=6 req=1 GET /seven' "$EV" || fail "/seven should open peer connection 6: $(tr '\n' ';' <"$EV")"

ferry_stop out
# Stopping: the idle pooled connection (6) is closed with close_notify too.
ended_clean 6 "stop"
pass
