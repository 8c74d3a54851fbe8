#!/usr/bin/env bash
# Goal: issue 14, inbound lending: on an inbound `protocol: http` listener, backend connections
# are lent per request, not per client (pool on by default), as on an outbound one.  mTLS
# clients (Python ssl, two certificates) -> inbound ferry (pool max_idle 4) -> pool_backend.py,
# which numbers its connections.
# (a) 20 clients whose handshakes passed and which send nothing hold no backend connection
#     (before: one each, until idle_timeout); they are served when they speak.
# (b) 20 idle keep-alive clients after one request each hold at most max_idle backend
#     connections.
# (c) 10 clients x 5 keep-alive requests make few backend connections.
# (d) Requests of two peers alternate: each gets its own identity header (X-Forwarded-Client-
#     Cert) and its own pooled backend connection, never the other's.
# (d2) A backend that answers a request twice (the second answer late): the late answer never
#     reaches another peer (the fifth black-box attack: it did when backend connections were
#     shared between peers), and it is logged (bad_response rule=unsolicited).
# (e) A client's Connection: close is not forwarded (the backend connection goes back to the
#     pool); ferry closes the client after the response, which says Connection: close.
# (f) A 1 MiB request body and a 1 MiB response through a lent connection, byte-exact.
# (g) pool: {max_idle: 0} keeps the old way: one backend connection per client, from its
#     handshake.
# timeout: 120
# valgrind: yes
source "$(dirname "$0")/lib.sh"

pki_make "$T/pki"
P=$T/pki
PB=$(free_port)
PIN=$(free_port)
PIN0=$(free_port)
PADM=$(free_port)
bg_run backend python3 "$SUPPORT/pool_backend.py" --port "$PB" --log "$T/backend.log"
wait_port "$PB"

cat >"$P/in.yaml" <<YAML
tls: {cert: node1.crt, key: node1.key, ca: ca.crt}
workers: 1
log: {level: debug}
admin: {listen: "127.0.0.1:$PADM"}
listeners:
  - name: lend
    mode: inbound
    listen: "127.0.0.1:$PIN"
    backend: "127.0.0.1:$PB"
    pool: {max_idle: 4, idle_timeout: 60s}
  - name: own
    mode: inbound
    listen: "127.0.0.1:$PIN0"
    backend: "127.0.0.1:$PB"
    pool: {max_idle: 0}
YAML
ferry_start in "$P/in.yaml"

# metric NAME [LISTENER]: the value of NAME{listener=...} in ferry's /metrics.
metric() {
    curl -s --max-time 10 "http://127.0.0.1:$PADM/metrics" |
        sed -n "s/^$1{listener=\"${2:-lend}\"} //p"
}
# backend_conns: connections from ferry to the backend, established now.
backend_conns() {
    ss -Htn state established "( dport = :$PB )" | wc -l
}
export LENDING_TLS="$P/ca.crt,$P/good.crt,$P/good.key;$P/wrong-san.crt,$P/wrong-san.key"
client() {
    timeout 60 python3 "$SUPPORT/lending_client.py" "$@"
}
# wait_ready FILE: the client writing FILE printed READY.
wait_ready() {
    for _ in $(seq 1 300); do grep -q READY "$1" && return 0; sleep 0.1; done
    fail "clients not ready: $(cat "$1")"
}

# (a) Handshakes done, nothing sent: no backend connection.
client hold "$PIN" 20 "$T/a.flag" >"$T/a.out" 2>&1 &
a=$!
bg_register "$a" hold-clients
wait_ready "$T/a.out"
sleep 0.3
held=$(backend_conns)
open=$(metric ferry_connections_open)
note "20 TLS clients, handshakes done, nothing sent: $open client connections, $held backend connections"
[ "$open" = 20 ] || fail "ferry_connections_open: '$open', expected the 20 clients"
[ "$held" = 0 ] || fail "20 clients that sent nothing hold $held backend connections; they should hold none"
: >"$T/a.flag"
wait "$a" || fail "held clients, first request: $(cat "$T/a.out")"
grep -q '^OK 20' "$T/a.out" || fail "held clients: $(cat "$T/a.out")"

# (b) Idle keep-alive clients after one request each: at most max_idle backend connections.
client idle "$PIN" 20 "$T/b.flag" >"$T/b.out" 2>&1 &
b=$!
bg_register "$b" idle-clients
wait_ready "$T/b.out"
sleep 0.3
held=$(backend_conns)
note "20 idle keep-alive TLS clients after one request each: $held backend connections"
[ "$held" -le 4 ] || fail "20 idle clients hold $held backend connections; at most max_idle (4) may stay"
: >"$T/b.flag"
wait "$b" || fail "idle clients, second request: $(cat "$T/b.out")"
grep -q '^OK 20' "$T/b.out" || fail "idle clients: $(cat "$T/b.out")"

# (c) 10 clients x 5 sequential keep-alive requests: few backend connections.
c0=$(metric ferry_pool_connects_total)
r0=$(metric ferry_pool_reused_total)
client seq "$PIN" 10 5 >"$T/c.out" 2>&1 || fail "10 x 5 requests: $(cat "$T/c.out")"
connects=$(($(metric ferry_pool_connects_total) - c0))
reused=$(($(metric ferry_pool_reused_total) - r0))
note "10 TLS clients x 5 keep-alive requests: $connects new backend connections, $reused lent from the pool"
[ "$connects" -le 20 ] || fail "50 requests of 10 keep-alive clients made $connects backend connections"
[ $((connects + reused)) -ge 50 ] || fail "50 requests: $connects connects + $reused reused < 50"

# (d) Two peers take turns, each named as itself, each on its own backend connection.
client whoami "$PIN" 10 >"$T/d.out" 2>&1 || fail "two peers taking turns: $(cat "$T/d.out")"
note "two peers taking turns (backend connections of each): $(head -n 1 "$T/d.out")"
grep -q 'client 0: .*DNS=peer.test' "$T/d.out" || fail "the first peer's identity header: $(cat "$T/d.out")"
grep -q 'client 1: .*DNS=wrong.test' "$T/d.out" || fail "the second peer's identity header: $(cat "$T/d.out")"
grep -q '^OK 20 conns=[0-9]*|[0-9]*$' "$T/d.out" ||
    fail "each peer should keep one pooled backend connection of its own: $(cat "$T/d.out")"

# (d2) The backend answers alice's /double twice, the second 0.3 s late; bob's /slow, sent
# right after, waits 0.5 s for its answer: on a shared connection the late answer was bob's.
out=$(timeout 30 python3 - "$PIN" "$P" <<'PY'
import socket, ssl, sys
port, p = int(sys.argv[1]), sys.argv[2]
def conn(name):
    ctx = ssl.create_default_context(cafile=p + "/ca.crt")
    ctx.check_hostname = False
    ctx.load_cert_chain(p + "/%s.crt" % name, p + "/%s.key" % name)
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=20),
                           server_hostname="node1.test")
def read_one(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, _, body = buf.partition(b"\r\n\r\n")
    n = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
    while len(body) < n:
        body += s.recv(65536)
    return body.decode()
a, b = conn("good"), conn("wrong-san")
for i in range(3):
    a.sendall(b"GET /double/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
    got_a = read_one(a)
    b.sendall(b"GET /slow/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
    got_b = read_one(b)
    print(got_a.strip(), "|", got_b.strip())
PY
) || fail "a backend that answers twice: $out"
note "a backend that answers twice (alice | bob): $(echo "$out" | tr '\n' ';')"
while IFS='|' read -r ga gb; do
    case "$ga" in "hello GET /double/"*) ;; *) fail "alice's answer: $out" ;; esac
    case "$gb" in " hello GET /slow/"*) ;; *) fail "bob got another peer's answer: $out" ;; esac
done <<<"$out"
expect_log in 'event=bad_response.*listener=lend.*rule=unsolicited' 5

# (e) Connection: close from the client: not forwarded; ferry closes the client itself.
out=$(timeout 30 python3 - "$PIN" "$P" <<'PY'
import socket, ssl, sys
port, p = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=p + "/ca.crt")
ctx.check_hostname = False
ctx.load_cert_chain(p + "/good.crt", p + "/good.key")
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=20), server_hostname="node1.test")
s.sendall(b"GET /closing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
buf = b""
while True:
    try:
        d = s.recv(65536)
    except (ssl.SSLEOFError, ConnectionResetError):
        break
    if not d:
        break
    buf += d
head = buf.split(b"\r\n\r\n")[0].decode("latin-1")
print("closed", "connection: close" in head.lower(), buf.endswith(b"hello GET /closing\n"))
PY
) || fail "Connection: close through the inbound pool: $out"
note "client Connection: close: $out"
[ "$out" = "closed True True" ] || fail "the client should get its response with Connection: close, then the end: $out"
line=$(grep '^GET /closing ' "$T/backend.log")
case "$line" in
*"connection=-"*) ;;
*) fail "the client's Connection: close reached the backend: $line" ;;
esac

# (f) 1 MiB each way through a lent backend connection, byte-exact.
client big "$PIN" >"$T/f.out" 2>&1 || fail "1 MiB bodies: $(cat "$T/f.out")"

# (g) max_idle 0: one backend connection per client, from its handshake (the pool of `lend`
# holds some of its own: counted first).
base=$(backend_conns)
client hold "$PIN0" 5 "$T/g.flag" >"$T/g.out" 2>&1 &
g=$!
bg_register "$g" own-clients
wait_ready "$T/g.out"
for _ in $(seq 1 30); do [ $(($(backend_conns) - base)) -ge 5 ] && break; sleep 0.1; done
held=$(($(backend_conns) - base))
note "pool max_idle 0: 5 TLS clients that sent nothing hold $held backend connections"
[ "$held" -ge 5 ] || fail "with max_idle 0 each client should hold its own backend connection: $held"
: >"$T/g.flag"
wait "$g" || fail "max_idle 0 clients: $(cat "$T/g.out")"

ferry_stop in
pass
