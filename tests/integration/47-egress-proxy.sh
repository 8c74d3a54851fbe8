#!/usr/bin/env bash
# Goal: outbound listeners that reach their peer through an HTTP CONNECT proxy (`via:`).
# curl / replicator -> outbound ferry -> [tinyproxy or tests/support/connect_proxy.py] ->
# inbound ferry -> http_backend.py or pouchdb-server.
# 1. Replication through tinyproxy: a 1 MiB attachment written and read back byte-exact, and a
#    pouchdb replication (with a ~1 MiB attachment) verified on both nodes; every CONNECT
#    tinyproxy logged is one counted result="ok".
# 2. BasicAuth (tinyproxy, and a scripted proxy that answers 407 as squid does): good
#    credentials work and the proxy saw "Proxy-Authorization: Basic ..." (never the backend);
#    wrong ones -> auth_failed (407, and tinyproxy's 401) naming the auth_file;
#    none -> auth_required.
# 3. A proxy whose ConnectPort excludes the peer's port -> refused, status 403.
# 4. Nothing listening on the proxy port -> unreachable (http: 502; tcp: the client is closed).
# 5. A proxy that never answers -> timeout after connect_timeout (1s; limits.handshake_timeout
#    when unset), and the 502 then.
# 6. The peer dead behind a working proxy: the scripted proxy's 502, 503, 504 ->
#    peer_unreachable; tinyproxy's 500 "Unable to connect" -> peer_unreachable, status 500.
# 7. An answer with a long reason phrase and extra headers over several TCP segments -> ok; a
#    200 followed in the same send() by a TLS alert -> the alert reaches TLS (the bytes after
#    the head are not lost); not HTTP, HTTP/2, a head over 8 KiB, a head cut by a close ->
#    bad_answer, at once; a head of exactly 8192 bytes is read, 8193 is bad_answer.  Without
#    `connect:` the proxy is asked for the peer name (and Host is the same).
# 8. `ferry check --peer` through the listener's proxy (OK, and naming the 407); `ferry check`
#    on bad and good via blocks (file:line:col of the value; an auth_file others may read or
#    write is an error, its group a warning, as for keys): the plain run only, the script
#    stops before them under valgrind (unit/test_config covers that code under ASan).
# Every failure is checked three ways: the WARN event=proxy_connect_failed line (listener,
# proxy, result, status, msg; a msg that quotes the CONNECT quotes the authority ferry sent),
# the client's 502 JSON {"error":"bad_gateway","reason":<msg>,"proxy_result":<result>}, and
# ferry_proxy_connect_total (every result present from 0; each case counted once).
# Pooling: Connection: close and keep-alive clients share one tunnel (one CONNECT).
# 9. TLS session resumption and two workers through the proxy (an openssl s_server peer).
# valgrind: yes
# timeout: 150
source "$(dirname "$0")/lib.sh"

command -v tinyproxy >/dev/null || fail "tinyproxy is required (deploy/install-deps.sh --test)"
TESTS=$FERRY_SRC/tests
NM=$TESTS/node_modules
REPL=$SUPPORT/replicate.js

# tinyproxy 1.11 answers 401 (not 407) to wrong credentials and 500 "Unable to connect" when
# it cannot reach the target: ferry reads 401 as 407 (auth_failed) and 500 as 502/503/504
# (peer_unreachable).  The scripted proxy covers the 407 and 502, 503, 504 forms.
TP_BADAUTH_RESULT=auth_failed
TP_DEADPEER_RESULT=peer_unreachable

# ---- pouchdb-server from tests/package-lock.json ----
source "$SUPPORT/replication.sh"
repl_require

pki_make "$T/pki"
P=$T/pki

# ---- ports ----
PB=$(free_port)         # http_backend
PPA=$(free_port)        # pouchdb-server A (local source of the replication)
PPB=$(free_port)        # pouchdb-server B (behind the inbound ferry)
PIN_HTTP=$(free_port)   # inbound ferry -> http_backend
PIN_POUCH=$(free_port)  # inbound ferry -> pouchdb-server B
PIN_POOL=$(free_port)   # inbound ferry -> http_backend (only the pooled listener dials it)
PDEAD=$(free_port)      # a peer port where nothing listens
PDOWN=$(free_port)      # a proxy port where nothing listens
POTHER=$(free_port)     # the only port tinyproxy "tpref" allows
TP=$(free_port)         # tinyproxy, open
TPAUTH=$(free_port)     # tinyproxy, BasicAuth
TPREF=$(free_port)      # tinyproxy, ConnectPort $POTHER only
PADM=$(free_port)       # the outbound ferry's admin endpoint
declare -A PY=()        # scripted proxy ports by mode
for m in tunnel segmented trailing stall s503 s504 garbage http2 bighead cut auth h8192 h8193; do
    PY[$m]=$(free_port)
done

HS=3 # limits.handshake_timeout of the outbound ferry: the default connect_timeout
[ "$VG" = 1 ] && HS=8
# how long a failure may take to reach the client (a 1s connect_timeout counts in)
QUICK=3
[ "$VG" = 1 ] && QUICK=15

# ---- backends ----
http_backend "$PB" backend
start_pouch() { # start_pouch NAME PORT
    mkdir -p "$T/$1"
    bg_run "$1" env -C "$T/$1" node "$SUPPORT/pouchdb-node.js" --in-memory --host 127.0.0.1 \
        --port "$2" --config "$T/$1/config.json" --no-stdout-logs
    wait_port "$2" 30
}
start_pouch pouch-a "$PPA"
start_pouch pouch-b "$PPB"

# ---- proxies ----
tp_start() { # tp_start NAME PORT [CONFIG LINE...]
    local name=$1 port=$2
    shift 2
    {
        echo "Port $port"
        echo "Listen 127.0.0.1"
        echo "Timeout 60"
        echo "Allow 127.0.0.1"
        echo "LogLevel Info"
        echo "MaxClients 50"
        printf '%s\n' "$@"
    } >"$T/$name.conf"
    # tinyproxy 1.11 runs as root without User/Group (a warning only); it logs to stderr.
    bg_run "$name" tinyproxy -d -c "$T/$name.conf"
    wait_port "$port"
}
tp_start tp "$TP" "ConnectPort $PIN_HTTP" "ConnectPort $PIN_POUCH" "ConnectPort $PIN_POOL" \
    "ConnectPort $PDEAD"
tp_start tpauth "$TPAUTH" "ConnectPort $PIN_HTTP" "BasicAuth ferry s3cret-pass"
tp_start tpref "$TPREF" "ConnectPort $POTHER"
pyargs=()
for m in "${!PY[@]}"; do
    case $m in
    s503 | s504) mode=status:${m#s} ;;
    auth) mode=auth:ferry:s3cret-pass ;;
    h8192 | h8193) mode=head:${m#h} ;;
    *) mode=$m ;;
    esac
    pyargs+=(--serve "${PY[$m]}=$mode")
done
: >"$T/pyproxy.jsonl"
bg_run pyproxy python3 "$SUPPORT/connect_proxy.py" --log "$T/pyproxy.jsonl" "${pyargs[@]}"
for m in "${!PY[@]}"; do wait_port "${PY[$m]}"; done

# ---- proxy credentials ----
A=$T/auth
mkdir -p "$A"
printf 'ferry:s3cret-pass\n' >"$A/good.auth"
printf 'ferry:wrong-pass\n' >"$A/bad.auth"
chmod 600 "$A/good.auth" "$A/bad.auth"

# ---- the inbound ferry (the peer) ----
cat >"$P/in.yaml" <<YAML
tls: {cert: node1.crt, key: node1.key, ca: ca.crt}
listeners:
  - {name: in-http, mode: inbound, listen: "127.0.0.1:$PIN_HTTP", backend: "127.0.0.1:$PB"}
  - {name: in-pouch, mode: inbound, listen: "127.0.0.1:$PIN_POUCH", backend: "127.0.0.1:$PPB"}
  - {name: in-pool, mode: inbound, listen: "127.0.0.1:$PIN_POOL", backend: "127.0.0.1:$PB"}
YAML
ferry_start in "$P/in.yaml"

# ---- the outbound ferry: one listener per case ----
declare -A LP=()     # listen port by listener name
declare -A TARGET=() # the authority each listener asks its proxy for
VIA_LISTENERS=()
OUT=$P/out.yaml
cat >"$OUT" <<YAML
tls: {cert: node1.crt, key: node1.key, ca: ca.crt}
workers: 1
log: {level: debug}
admin: {listen: "127.0.0.1:$PADM"}
limits: {handshake_timeout: ${HS}s, idle_timeout: 30s}
listeners:
YAML
# listener NAME PEER_PORT PROXY [via lines...] [-- other listener lines...]
# PEER_PORT "-": no connect: (the proxy is asked for node1.test:$PIN_HTTP); PROXY "-": no via.
listener() {
    local name=$1 peer=$2 proxy=$3 l
    shift 3
    LP[$name]=$(free_port)
    {
        echo "  - name: $name"
        echo "    mode: outbound"
        echo "    listen: \"127.0.0.1:${LP[$name]}\""
        if [ "$peer" = - ]; then
            TARGET[$name]=node1.test:$PIN_HTTP
            echo "    peer: \"node1.test:$PIN_HTTP\""
        else
            TARGET[$name]=127.0.0.1:$peer
            echo "    peer: \"node1.test:$peer\""
            echo "    connect: \"127.0.0.1:$peer\""
        fi
        if [ "$proxy" != - ]; then
            echo "    via:"
            echo "      proxy: \"$proxy\""
        fi
        while [ $# -gt 0 ] && [ "$1" != -- ]; do
            echo "      $1"
            shift
        done
        [ $# -gt 0 ] && shift
        for l in "$@"; do echo "    $l"; done
    } >>"$OUT"
    [ "$proxy" != - ] && VIA_LISTENERS+=("$name")
    return 0
}
listener repl "$PIN_POUCH" "http://127.0.0.1:$TP"
listener pool "$PIN_POOL" "http://127.0.0.1:$TP"
listener tcp "$PIN_HTTP" "http://127.0.0.1:$TP" -- "protocol: tcp"
listener tcpdown "$PIN_HTTP" "127.0.0.1:$PDOWN" -- "protocol: tcp"
listener authgood "$PIN_HTTP" "http://127.0.0.1:$TPAUTH" "auth_file: $A/good.auth"
listener authbad "$PIN_HTTP" "http://127.0.0.1:$TPAUTH" "auth_file: $A/bad.auth"
listener authnone "$PIN_HTTP" "http://127.0.0.1:$TPAUTH"
listener pyauthgood "$PIN_HTTP" "http://127.0.0.1:${PY[auth]}" "auth_file: $A/good.auth"
listener pyauthbad "$PIN_HTTP" "http://127.0.0.1:${PY[auth]}" "auth_file: $A/bad.auth"
listener refused "$PIN_HTTP" "http://127.0.0.1:$TPREF"
listener down "$PIN_HTTP" "http://127.0.0.1:$PDOWN"
listener stall "$PIN_HTTP" "http://127.0.0.1:${PY[stall]}" "connect_timeout: 1s"
listener stalldef "$PIN_HTTP" "http://127.0.0.1:${PY[stall]}"
listener deadpeer "$PDEAD" "http://127.0.0.1:$TP"
listener pydead "$PDEAD" "http://127.0.0.1:${PY[tunnel]}"
listener p503 "$PIN_HTTP" "http://127.0.0.1:${PY[s503]}"
listener p504 "$PIN_HTTP" "http://127.0.0.1:${PY[s504]}"
listener seg "$PIN_HTTP" "http://127.0.0.1:${PY[segmented]}"
listener trailing "$PIN_HTTP" "http://127.0.0.1:${PY[trailing]}"
listener garbage "$PIN_HTTP" "http://127.0.0.1:${PY[garbage]}"
listener http2 "$PIN_HTTP" "http://127.0.0.1:${PY[http2]}"
listener bighead "$PIN_HTTP" "http://127.0.0.1:${PY[bighead]}"
listener cut "$PIN_HTTP" "http://127.0.0.1:${PY[cut]}"
listener h8192 "$PIN_HTTP" "http://127.0.0.1:${PY[h8192]}"
listener h8193 "$PIN_HTTP" "http://127.0.0.1:${PY[h8193]}"
listener noconnect - "localhost:${PY[tunnel]}"
listener plain "$PIN_HTTP" -
ferry_start out "$OUT"

# ---- helpers ----
cat >"$T/h.py" <<'PY'
import json, re, sys
sys.path.insert(0, sys.argv[1])
from findings import parse_line  # ferry's text log line -> dict (ts, level, key=value...)

def events(log, event, listener):
    out = []
    for line in open(log, encoding="utf-8", errors="replace"):
        d = parse_line(line)
        if d and d.get("event") == event and d.get("listener") == listener:
            out.append(d)
    return out

def metric(path, listener, result):
    pat = re.compile(r'^ferry_proxy_connect_total\{listener="%s",result="%s"\} (\d+)$'
                     % (re.escape(listener), re.escape(result)))
    hits = [int(m.group(1)) for m in map(pat.match, open(path).read().splitlines()) if m]
    return hits

def _hook(kind, value, tb, _orig=sys.excepthook):
    if kind is AssertionError:
        print(value, file=sys.stderr)
        sys.exit(1)
    _orig(kind, value, tb)
sys.excepthook = _hook

cmd = sys.argv[2]
if cmd == "failed":
    # failed LOG BODY LISTENER PROXY RESULT STATUS_RE [MSG_SUBSTRING]
    log, body, name, proxy, result, status_re = sys.argv[3:9]
    sub = sys.argv[9] if len(sys.argv) > 9 else ""
    ev = events(log, "proxy_connect_failed", name)
    assert len(ev) == 1, f"{len(ev)} event=proxy_connect_failed lines for {name}: {ev}"
    e = ev[0]
    assert e["level"] == "warn", f"level {e['level']}, expected warn: {e}"
    assert e.get("proxy") == proxy, f"proxy={e.get('proxy')}, expected {proxy}: {e}"
    assert e.get("result") == result, f"result={e.get('result')}, expected {result}: {e}"
    assert re.fullmatch(status_re, e.get("status", "")), f"status={e.get('status')}, expected {status_re}: {e}"
    assert e.get("msg"), f"no msg: {e}"
    if sub:
        assert sub in e["msg"], f"msg does not name {sub}: {e['msg']}"
    if body != "-":
        doc = json.loads(open(body, "rb").read())
        assert set(doc) == {"error", "reason", "proxy_result"}, f"502 body keys: {doc}"
        assert doc["error"] == "bad_gateway", doc
        assert doc["proxy_result"] == result, f"proxy_result {doc['proxy_result']}, expected {result}"
        assert doc["reason"] == e["msg"], f"reason {doc['reason']!r} is not the logged msg {e['msg']!r}"
    print(f"{result} status={e['status']} msg={e['msg']}")
elif cmd == "target":
    # target LOG LISTENER AUTHORITY: a msg that quotes the CONNECT it sent quotes AUTHORITY
    e = events(sys.argv[3], "proxy_connect_failed", sys.argv[4])[0]
    m = re.search(r"CONNECT (\S+?):? ", e["msg"] + " ")
    assert m is None or m.group(1) == sys.argv[5], \
        f"msg says CONNECT {m.group(1)}, but ferry sent CONNECT {sys.argv[5]}: {e['msg']}"
elif cmd == "events":
    # events LOG EVENT LISTENER: print the matching lines as JSON, one per line
    for e in events(sys.argv[3], sys.argv[4], sys.argv[5]):
        print(json.dumps(e))
elif cmd == "metric":
    # metric FILE LISTENER RESULT: the value, or "absent" / "duplicate"
    hits = metric(sys.argv[3], sys.argv[4], sys.argv[5])
    print(hits[0] if len(hits) == 1 else ("absent" if not hits else "duplicate"))
elif cmd == "metrics-expect":
    # metrics-expect FILE LISTENER result=N... (results not named must be 0)
    path, name = sys.argv[3], sys.argv[4]
    want = {r: 0 for r in ("ok", "unreachable", "timeout", "auth_required", "auth_failed",
                           "refused", "peer_unreachable", "bad_answer")}
    for kv in sys.argv[5:]:
        k, v = kv.split("=")
        assert k in want, f"unknown result {k}"
        want[k] = v
    bad = []
    for r, v in want.items():
        hits = metric(path, name, r)
        got = hits[0] if len(hits) == 1 else None
        ok = got is not None and (got >= int(v[2:]) if str(v).startswith(">=") else got == int(v))
        if not ok:
            bad.append(f'{r}: {hits} (expected {v})')
    if bad:
        sys.exit(f"{name}: " + "; ".join(bad))
PY
H=(python3 "$T/h.py" "$SUPPORT")

now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 2))" "$1" "$(now)"; }
lt() { python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)" "$1" "$2"; }

# get NAME [CURL ARGS...]: one request through listener NAME; $code, body $T/NAME.body,
# headers $T/NAME.hdrs, seconds taken $took
get() {
    local name=$1 t0
    shift
    t0=$(now)
    code=$(curl -s -o "$T/$name.body" -D "$T/$name.hdrs" -w '%{http_code}' --max-time 30 "$@" \
        "http://127.0.0.1:${LP[$name]}/$name") || true
    took=$(elapsed "$t0")
}
# ok_case NAME: 200 from the backend through the proxy
ok_case() {
    get "$1"
    [ "$code" = 200 ] || fail "$1: HTTP $code through the proxy, expected 200: $(head -c 300 "$T/$1.body")"
    grep -q "\"path\": \"/$1\"" "$T/$1.body" || fail "$1: 200 but not the backend's answer: $(head -c 300 "$T/$1.body")"
}
# fail_case NAME PROXY RESULT STATUS_RE [MSG_SUBSTRING]: 502 JSON naming RESULT, quickly; one
# WARN line with those fields (polled: the line may follow the answer)
fail_case() {
    local name=$1 proxy=$2 result=$3 status=$4 sub=${5:-} out end
    [ -n "${code:-}" ] || get "$name"
    [ "$code" = 502 ] || fail "$name: HTTP $code, expected 502 ($result): $(head -c 300 "$T/$name.body")"
    grep -iq '^content-type: *application/json' "$T/$name.hdrs" || fail "$name: 502 without Content-Type: application/json"
    end=$((SECONDS + (VG == 1 ? 20 : 5)))
    until out=$("${H[@]}" failed "$T/out.log" "$T/$name.body" "$name" "$proxy" "$result" "$status" "$sub" 2>&1); do
        [ "$SECONDS" -ge "$end" ] && fail "$name: $out"
        sleep 0.1
    done
    pass "$name: 502 after ${took}s, $out"
    out=$("${H[@]}" target "$T/out.log" "$name" "${TARGET[$name]}" 2>&1) || bad "$name" "$out"
}
metrics() { curl -s --max-time 10 "http://127.0.0.1:$PADM/metrics" >"$T/metrics.txt" || fail "GET /metrics failed"; }
# expect_metrics NAME [result=N | result=>=N]...: polled for a few seconds
expect_metrics() {
    local out end=$((SECONDS + 5))
    while :; do
        metrics
        out=$("${H[@]}" metrics-expect "$T/metrics.txt" "$@" 2>&1) && return 0
        [ "$SECONDS" -ge "$end" ] && fail "ferry_proxy_connect_total: $out"
        sleep 0.2
    done
}
tp_connects() { # tp_connects LOG PORT: CONNECT requests tinyproxy LOG received for 127.0.0.1:PORT
    grep -c "Request (file descriptor [0-9]*): CONNECT 127.0.0.1:$2 HTTP/1.1" "$T/$1.log" || true
}

# ---- every result of every via listener is there from 0 before any traffic ----
metrics
for name in "${VIA_LISTENERS[@]}"; do
    "${H[@]}" metrics-expect "$T/metrics.txt" "$name" || fail "before any traffic: not every result at 0"
done
[ "$("${H[@]}" metric "$T/metrics.txt" plain ok)" = absent ] ||
    fail "a listener without via has ferry_proxy_connect_total lines"
pass "ferry_proxy_connect_total: 8 results at 0 for each of ${#VIA_LISTENERS[@]} via listeners, none for the plain one"

# The stalling proxy: both cases in the background while the rest runs (1s and ${HS}s).
for name in stall stalldef; do
    (
        t0=$(now)
        c=$(curl -s -o "$T/$name.body" -D "$T/$name.hdrs" -w '%{http_code}' --max-time 60 \
            "http://127.0.0.1:${LP[$name]}/$name") || true
        echo "$c $(elapsed "$t0")" >"$T/$name.result"
    ) &
    bg_register $! "curl-$name"
done

# ---- 1. replication and a 1 MiB attachment through tinyproxy ----
R=http://127.0.0.1:${LP[repl]}
B=http://127.0.0.1:$PPB
for db in blobs db; do
    code=$(curl -s -o "$T/put-db.body" -w '%{http_code}' --max-time 30 -X PUT "$R/$db") || true
    [ "$code" = 201 ] || fail "PUT /$db through the proxy: HTTP $code $(cat "$T/put-db.body")"
done
python3 -c 'import os, sys; sys.stdout.buffer.write(os.urandom(1 << 20))' >"$T/big.bin"
code=$(curl -s -o "$T/put-att.body" -w '%{http_code}' --max-time 60 -X PUT \
    -H 'Content-Type: application/octet-stream' --data-binary @"$T/big.bin" \
    "$R/blobs/doc1/big.bin") || true
[ "$code" = 201 ] || fail "PUT a 1 MiB attachment through the proxy: HTTP $code $(cat "$T/put-att.body")"
curl -sf --max-time 60 -o "$T/big.via" "$R/blobs/doc1/big.bin" || fail "GET the attachment through the proxy failed"
curl -sf --max-time 60 -o "$T/big.direct" "$B/blobs/doc1/big.bin" || fail "GET the attachment from node B failed"
want=$(sha256_of "$T/big.bin")
[ "$(sha256_of "$T/big.direct")" = "$want" ] || fail "node B holds other bytes than were written through the proxy"
[ "$(sha256_of "$T/big.via")" = "$want" ] || fail "the attachment read back through the proxy differs"
pass "1 MiB attachment written and read back through outbound ferry -> tinyproxy -> inbound ferry, byte-exact"

repl() {
    timeout -k 5 120 node "$REPL" "$@" >>"$T/replicate.log" 2>&1 || {
        tail -n 20 "$T/replicate.log" >&2
        return 1
    }
}
N=40
[ "$VG" = 1 ] && N=20
repl seed --url "http://127.0.0.1:$PPA" --db db --side a --count "$N" || fail "seeding node A failed"
repl replicate --url "http://127.0.0.1:$PPA" --source db --target "$R/db" || fail "replication A -> proxy -> B failed"
repl verify --url "http://127.0.0.1:$PPA" --url "$B" --db db --set "a:$N" ||
    fail "after replication through the proxy node B differs from A"
pass "replicated $N docs (attachments up to ~1 MiB) A -> ferry -> tinyproxy -> ferry -> B, verified on both"
tunnels=$(tp_connects tp "$PIN_POUCH")
[ "$tunnels" -ge 1 ] || fail "tinyproxy logged no CONNECT 127.0.0.1:$PIN_POUCH: the traffic did not go through it"
expect_metrics repl "ok=$tunnels"
[ "$("${H[@]}" events "$T/out.log" proxy_connect_failed repl)" = "" ] || fail "repl: a proxy connect failed"
grep 'event=proxy_connect ' "$T/out.log" | grep -q "listener=repl .*status=200" ||
    fail "no debug event=proxy_connect listener=repl ... status=200"
pass "tinyproxy logged $tunnels CONNECT 127.0.0.1:$PIN_POUCH; ferry counted ok=$tunnels for repl"

# ---- pooling: fresh Connection: close clients and a keep-alive client share one tunnel ----
for i in 1 2 3 4 5; do
    get pool -H 'Connection: close'
    [ "$code" = 200 ] || fail "pool request $i: HTTP $code"
done
# one curl, three URLs on one client connection: "code connects" per transfer
got=$(curl -s -w '%{http_code} %{num_connects}\n' --max-time 20 \
    -o /dev/null "http://127.0.0.1:${LP[pool]}/ka1" -o /dev/null "http://127.0.0.1:${LP[pool]}/ka2" \
    -o /dev/null "http://127.0.0.1:${LP[pool]}/ka3" | tr '\n' ,) || true
[ "$got" = "200 1,200 0,200 0," ] || fail "keep-alive client through the pool: $got (expected 200 on one connection, 3 times)"
[ "$(tp_connects tp "$PIN_POOL")" = 1 ] ||
    fail "8 requests through the pooled listener made $(tp_connects tp "$PIN_POOL") CONNECTs, expected 1"
expect_metrics pool ok=1
pass "pool: 5 Connection: close clients and one keep-alive client (3 requests) used one tunnel"

# ---- protocol tcp through the proxy; a tcp listener whose proxy is down just closes ----
ok_case tcp
out=$(python3 - "${LP[tcpdown]}" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(b"GET /tcpdown HTTP/1.1\r\nHost: x\r\n\r\n")
data = b""
try:
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
except ConnectionResetError:
    pass  # ferry closed with the request unread: a reset is a close too
print(len(data))
PY
) || fail "tcpdown: the client connection did not end within 10s: $out"
[ "$out" = 0 ] || fail "tcpdown: the client got $out bytes, expected a plain close"
code=""
end=$((SECONDS + 5))
until r=$("${H[@]}" failed "$T/out.log" - tcpdown "127.0.0.1:$PDOWN" unreachable - 2>&1); do
    [ "$SECONDS" -ge "$end" ] && fail "tcpdown: $r"
    sleep 0.1
done
pass "protocol tcp: a tunnel through tinyproxy works; proxy down -> the client is closed, $r"

# ---- 2. BasicAuth ----
ok_case authgood
ok_case pyauthgood
python3 - "$T/pyproxy.jsonl" "${PY[auth]}" "$PIN_HTTP" "$(printf ferry:s3cret-pass | base64)" <<'PY' ||
import json, sys
log, port, peer, b64 = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
reqs = [json.loads(l) for l in open(log) if json.loads(l)["port"] == port]
good = [r for r in reqs if ["Proxy-Authorization", "Basic " + b64] in r["headers"]]
assert good, f"no CONNECT with Proxy-Authorization: Basic {b64}: {reqs}"
r = good[0]
assert r["request_line"] == f"CONNECT 127.0.0.1:{peer} HTTP/1.1", r
hosts = [v for k, v in r["headers"] if k.lower() == "host"]
assert hosts == [f"127.0.0.1:{peer}"], r
PY
    fail "the scripted proxy did not get CONNECT 127.0.0.1:$PIN_HTTP with Host and Basic credentials"
grep -qi 'proxy-authorization' "$T/authgood.body" "$T/pyauthgood.body" &&
    fail "Proxy-Authorization reached the backend"
[ "$(tp_connects tpauth "$PIN_HTTP")" -ge 1 ] || fail "tinyproxy (BasicAuth) logged no CONNECT"
expect_metrics authgood ok=1
expect_metrics pyauthgood ok=1
pass "good credentials: 200 through tinyproxy BasicAuth and through a 407-style proxy (Basic header as sent)"
code=""; fail_case pyauthbad "127.0.0.1:${PY[auth]}" auth_failed 407 "$A/bad.auth"
code=""; fail_case authnone "127.0.0.1:$TPAUTH" auth_required 407
code=""; fail_case authbad "127.0.0.1:$TPAUTH" "$TP_BADAUTH_RESULT" 401
expect_metrics pyauthbad auth_failed=1
expect_metrics authnone auth_required=1
expect_metrics authbad "$TP_BADAUTH_RESULT=1"

# ---- 3. refused port; 4. proxy down ----
code=""; fail_case refused "127.0.0.1:$TPREF" refused 403
expect_metrics refused refused=1
code=""; fail_case down "127.0.0.1:$PDOWN" unreachable -
lt "$took" "$QUICK" || fail "down: the 502 took ${took}s"
expect_metrics down unreachable=1
expect_metrics tcpdown unreachable=1

# ---- 6. the peer dead behind the proxy ----
code=""; fail_case deadpeer "127.0.0.1:$TP" "$TP_DEADPEER_RESULT" 500
expect_metrics deadpeer "$TP_DEADPEER_RESULT=1"
code=""; fail_case pydead "127.0.0.1:${PY[tunnel]}" peer_unreachable 502
code=""; fail_case p503 "127.0.0.1:${PY[s503]}" peer_unreachable 503
code=""; fail_case p504 "127.0.0.1:${PY[s504]}" peer_unreachable 504
for name in pydead p503 p504; do expect_metrics "$name" peer_unreachable=1; done

# ---- 7. answers split over segments, bytes after the head, bad answers ----
ok_case seg
grep 'event=proxy_connect ' "$T/out.log" | grep -q "listener=seg .*status=200" ||
    fail "seg: no debug event=proxy_connect listener=seg ... status=200"
expect_metrics seg ok=1
pass "seg: a 200 with a 270-byte reason phrase and extra headers in 7 segments -> ok"

get trailing
[ "$code" = 502 ] || fail "trailing: HTTP $code; a TLS alert sent right after the proxy's 200 head (same send) was not seen by TLS (bytes after the head lost?)"
python3 - "$T/trailing.body" <<'PY' || fail "trailing: bad 502 body: $(cat "$T/trailing.body")"
import json, re, sys
d = json.load(open(sys.argv[1]))
assert d["error"] == "bad_gateway" and "proxy_result" not in d, d
assert re.search(r"handshake[ _]failure", d["reason"], re.I), d
PY
[ "$("${H[@]}" events "$T/out.log" proxy_connect_failed trailing)" = "" ] ||
    fail "trailing: a 200 answer was logged as a proxy failure"
expect_metrics trailing ok=1
pass "trailing: the alert right after the 200 head reached TLS: 502 $(cat "$T/trailing.body")"

for name in garbage http2; do
    code=""; fail_case "$name" "127.0.0.1:${PY[$name]}" bad_answer -
    lt "$took" "$QUICK" || fail "$name: bad_answer took ${took}s (waited for the timeout?)"
done
code=""; fail_case bighead "127.0.0.1:${PY[bighead]}" bad_answer '-|200'
lt "$took" "$QUICK" || fail "bighead: bad_answer took ${took}s (waited for the timeout?)"
code=""; fail_case cut "127.0.0.1:${PY[cut]}" bad_answer '-|200'
for name in garbage http2 bighead cut; do expect_metrics "$name" bad_answer=1; done
# the 8 KiB bound: a head of exactly 8192 bytes is read, one of 8193 is not
ok_case h8192
expect_metrics h8192 ok=1
code=""; fail_case h8193 "127.0.0.1:${PY[h8193]}" bad_answer '-|200'
expect_metrics h8193 bad_answer=1

# ---- without connect: the proxy is asked for the peer name; a host-name proxy address ----
ok_case noconnect
python3 - "$T/pyproxy.jsonl" "${PY[tunnel]}" "$PIN_HTTP" <<'PY' ||
import json, sys
log, port, peer = sys.argv[1], int(sys.argv[2]), sys.argv[3]
reqs = [json.loads(l) for l in open(log) if json.loads(l)["port"] == port]
mine = [r for r in reqs if r["request_line"] == f"CONNECT node1.test:{peer} HTTP/1.1"]
assert len(mine) == 1, reqs
hosts = [v for k, v in mine[0]["headers"] if k.lower() == "host"]
assert hosts == [f"node1.test:{peer}"], mine[0]
assert not [k for k, v in mine[0]["headers"] if k.lower() == "proxy-authorization"], mine[0]
PY
    fail "noconnect: the proxy was not asked for CONNECT node1.test:$PIN_HTTP (Host, no credentials)"
expect_metrics noconnect ok=1
pass "no connect: -> CONNECT node1.test:$PIN_HTTP with Host: node1.test:$PIN_HTTP, proxy given as localhost:PORT"

# ---- 5. the stalling proxy (started at the top) ----
for name in stall stalldef; do
    end=$((SECONDS + (VG == 1 ? 60 : 20)))
    until [ -s "$T/$name.result" ]; do
        [ "$SECONDS" -ge "$end" ] && fail "$name: no answer from ferry"
        sleep 0.1
    done
    read -r code took <"$T/$name.result"
    fail_case "$name" "127.0.0.1:${PY[stall]}" timeout -
    expect_metrics "$name" timeout=1
done
read -r _ t1 <"$T/stall.result"
read -r _ t2 <"$T/stalldef.result"
lt 0.8 "$t1" && lt "$t1" 5 || fail "stall: connect_timeout 1s, but the 502 came after ${t1}s"
lt "$((HS - 1)).7" "$t2" && lt "$t2" "$((HS + 4))" ||
    fail "stalldef: no connect_timeout (handshake_timeout ${HS}s), but the 502 came after ${t2}s"
pass "stalling proxy: timeout after ${t1}s (connect_timeout 1s) and ${t2}s (handshake_timeout ${HS}s)"

# ---- metrics, all listeners at once: nothing counted twice or elsewhere ----
expect_metrics repl "ok=$(tp_connects tp "$PIN_POUCH")"
expect_metrics pool ok=1
expect_metrics tcp ok=1
expect_metrics authbad "$TP_BADAUTH_RESULT=1"
expect_metrics p503 peer_unreachable=1
pass "ferry_proxy_connect_total: each case counted once, under its result"

# ---- 8. ferry check --peer through the listener's proxy ----
pcheck() { # pcheck WANT_RC NAME LISTENER
    local rc=0
    ferry_cmd check --peer "127.0.0.1:$PIN_HTTP" -c "$OUT" --listener "$3" >"$T/$2.check" 2>&1 || rc=$?
    [ "$rc" = "$1" ] || { cat "$T/$2.check" >&2; fail "check --peer --listener $3: exit $rc, expected $1"; }
}
before=$(tp_connects tpauth "$PIN_HTTP")
pcheck 0 peer-ok authgood
grep -q '^verdict: OK' "$T/peer-ok.check" || fail "check --peer through the proxy: $(cat "$T/peer-ok.check")"
[ "$(tp_connects tpauth "$PIN_HTTP")" -gt "$before" ] ||
    fail "check --peer --listener authgood did not go through its proxy (tinyproxy logged no CONNECT)"
grep -q "through proxy 127.0.0.1:$TPAUTH" "$T/peer-ok.check" ||
    bad peer-ok "check --peer does not say it went through proxy 127.0.0.1:$TPAUTH: $(head -n 3 "$T/peer-ok.check")"
pass "check --peer through tinyproxy with credentials: OK"
for c in "peer-407|pyauthbad" "peer-407none|authnone"; do
    IFS='|' read -r name l <<<"$c"
    pcheck 1 "$name" "$l"
    v=$(grep '^verdict: ' "$T/$name.check" || true)
    grep -q '^verdict: FAIL.*407' <<<"$v" && grep -qi 'proxy' <<<"$v" ||
        fail "check --peer --listener $l: the verdict does not name the proxy's 407: $(cat "$T/$name.check")"
    grep -Eqi 'alert|not a TLS port|certificate' <<<"$v" &&
        fail "check --peer --listener $l: the verdict names a TLS error, not the proxy: $v"
done
pass "check --peer through a proxy that answers 407: FAIL naming the 407"

# ferry check -c on the running config: valid
rc=0
ferry_cmd check -c "$OUT" >"$T/out.check" 2>&1 || rc=$?
[ "$rc" = 0 ] || { cat "$T/out.check" >&2; fail "ferry check on the running config: exit $rc"; }

ferry_alive out || fail "the outbound ferry died"
ok_case authgood # still serving
ferry_stop out
ferry_stop in

# ---- 9. session resumption and two workers through the proxy ----
# An `openssl s_server -www` peer (it checks ferry's client certificate) says "New" or
# "Reused" in its page; protocol: tcp with two workers: each worker's first connection is a new
# session, later ones resume it through new tunnels (see 23-resumption.sh for why a few more
# new ones are allowed).
PSS=$(free_port)
TPRES=$(free_port)
PRES=$(free_port)
tp_start tpres "$TPRES" "ConnectPort $PSS"
bg_run s_server openssl s_server -accept "127.0.0.1:$PSS" -www -tls1_3 -cert "$P/node1.crt" \
    -key "$P/node1.key" -CAfile "$P/ca.crt" -Verify 2 -verify_return_error
wait_port "$PSS" 10
cat >"$T/res.yaml" <<YAML
tls: {cert: $P/node1.crt, key: $P/node1.key, ca: $P/ca.crt}
workers: 2
listeners:
  - name: res
    mode: outbound
    protocol: tcp
    listen: "127.0.0.1:$PRES"
    peer: "node1.test:$PSS"
    connect: "127.0.0.1:$PSS"
    via: {proxy: "127.0.0.1:$TPRES"}
YAML
ferry_start res "$T/res.yaml"
new=0 reused=0
for i in 1 2 3 4 5 6; do
    curl -s --max-time 15 --http1.0 -o "$T/res$i.page" "http://127.0.0.1:$PRES/" || true
    if grep -q '^New, TLSv1\.3' "$T/res$i.page"; then
        new=$((new + 1))
    elif grep -q '^Reused, TLSv1\.3' "$T/res$i.page"; then
        reused=$((reused + 1))
    else
        fail "resumption: connection $i through the proxy got no s_server page: $(head -c 300 "$T/res$i.page")"
    fi
done
[ "$new" -ge 1 ] && [ "$reused" -ge 1 ] ||
    fail "resumption: $new new and $reused resumed sessions in 6 connections through the proxy (want both)"
[ "$(tp_connects tpres "$PSS")" -ge 6 ] || fail "resumption: tinyproxy logged $(tp_connects tpres "$PSS") CONNECTs, expected 6"
ferry_stop res
pass "two workers, TLS 1.3 through tinyproxy: $new new, $reused resumed sessions, one tunnel each"

# Under valgrind, stop here: the `ferry check` cases below (17 runs of the CLI) check
# configuration code that unit/test_config covers under ASan+UBSan in CI.
if [ "$VG" = 1 ]; then
    bad_report "egress proxy"
    note "valgrind: the ferry check cases run in the plain run only"
    exit 0
fi

# ---- 8. ferry check on via blocks ----
W=$T/chk
mkdir -p "$W"
printf 'ferry:pw\n' >"$W/ok.auth"
chmod 600 "$W/ok.auth"
# vconf NAME MODE [via lines...]: $W/NAME.yaml, one listener whose via has those lines
vconf() {
    local name=$1 mode=$2 l
    shift 2
    {
        echo "tls: {cert: $P/node1.crt, key: $P/node1.key, ca: $P/ca.crt}"
        echo "listeners:"
        echo "  - name: l1"
        echo "    mode: $mode"
        echo "    listen: \"127.0.0.1:$(free_port)\""
        if [ "$mode" = inbound ]; then
            echo "    backend: \"127.0.0.1:$PB\""
        else
            echo "    peer: \"node1.test:$PIN_HTTP\""
        fi
        echo "    via:"
        for l in "$@"; do echo "      $l"; done
    } >"$W/$name.yaml"
}
# vcheck NAME WANT_RC SEVERITY WHERE [TEXT_RE]: `ferry check --json` exits WANT_RC and has a
# finding of SEVERITY at WHERE: "file" (the auth_file itself), "value:KEY" (file:line:col of
# KEY's value in the config) or "line:KEY" (a line from KEY's line to the end of the via block)
vcheck() {
    local name=$1 want=$2 sev=$3 where=$4 re=${5:-} rc=0
    ferry_cmd check -c "$W/$name.yaml" --json >"$W/$name.json" 2>"$W/$name.err" || rc=$?
    if [ "$rc" != "$want" ]; then
        bad "check-$name" "exit $rc, expected $want: $(cat "$W/$name.json" "$W/$name.err")"
        return 0
    fi
    python3 - "$W/$name.json" "$W/$name.yaml" "$sev" "$where" "$re" <<'PY' ||
import json, re, sys
doc, cfg, sev, where, rx = sys.argv[1:6]
d = json.load(open(doc))
lines = open(cfg).read().split("\n")
fs = [f for f in d["findings"] if f["severity"] == sev]
kind, _, key = where.partition(":")
def hit(f):
    if rx and not re.search(rx, f["message"], re.I):
        return False
    if kind == "file":
        auth = [l.split(": ", 1)[1] for l in lines if l.strip().startswith("auth_file:")][0]
        return f["file"] == auth or auth in f["message"]
    if f["file"] != cfg:
        return False
    no = [i for i, l in enumerate(lines, 1) if l.strip().startswith(key + ":")][0]
    if kind == "value":
        col = lines[no - 1].index(key + ":") + len(key) + 3
        return f["line"] == no and f["col"] == col
    return no <= f["line"] <= len(lines)
assert any(hit(f) for f in fs), f"no {sev} finding at {where} matching /{rx}/: {d['findings']}"
print(" | ".join(f["message"] for f in fs if hit(f))[:300])
PY
        bad "check-$name" "$(cat "$W/$name.json")"
}
vconf inbound inbound "proxy: \"http://127.0.0.1:$TP\""
vcheck inbound 1 error line:via
ferry_expect_exit 1 run-inbound "$W/inbound.yaml" 15
same_findings run-inbound "$W/inbound.yaml" >/dev/null
vconf noproxy outbound "auth_file: $W/ok.auth"
vcheck noproxy 1 error line:via
vconf https outbound "proxy: \"https://127.0.0.1:3128\""
vcheck https 1 error line:proxy 'TLS|https'
vconf path outbound "proxy: \"http://127.0.0.1:3128/proxy\""
vcheck path 1 error line:proxy
vconf noport outbound "proxy: \"http://127.0.0.1\""
vcheck noport 1 error line:proxy
vconf noport2 outbound "proxy: \"proxy.example.test\""
vcheck noport2 1 error line:proxy
vconf missing outbound "proxy: \"127.0.0.1:3128\"" "auth_file: $W/no-such.auth"
vcheck missing 1 error file
mkdir -p "$W/adir.auth"
vconf unreadable outbound "proxy: \"127.0.0.1:3128\"" "auth_file: $W/adir.auth"
vcheck unreadable 1 error file
# Others' bits: an error; the group's (read or write): a warning, the rule of keys and
# secrets (a secret volume with fsGroup, root:ferry 0640).
for m in 644 604 602; do
    printf 'ferry:pw\n' >"$W/m$m.auth"
    chmod "$m" "$W/m$m.auth"
    vconf "mode$m" outbound "proxy: \"127.0.0.1:3128\"" "auth_file: $W/m$m.auth"
    vcheck "mode$m" 1 error file
done
for m in 640 620 660; do
    printf 'ferry:pw\n' >"$W/m$m.auth"
    chmod "$m" "$W/m$m.auth"
    vconf "mode$m" outbound "proxy: \"127.0.0.1:3128\"" "auth_file: $W/m$m.auth"
    vcheck "mode$m" 0 warning file
done
printf 'ferry-secret-Zq9x\n' >"$W/nocolon.auth"
printf ':secret-Zq9x\n' >"$W/nouser.auth"
chmod 600 "$W/nocolon.auth" "$W/nouser.auth"
vconf nocolon outbound "proxy: \"127.0.0.1:3128\"" "auth_file: $W/nocolon.auth"
vcheck nocolon 1 error value:auth_file
vconf nouser outbound "proxy: \"127.0.0.1:3128\"" "auth_file: $W/nouser.auth"
vcheck nouser 1 error value:auth_file
grep -q 'secret-Zq9x' "$W/nocolon.json" "$W/nouser.json" &&
    fail "ferry check printed the content of an auth_file"
note "ferry check: via on inbound, no proxy, https/path/no port, auth_file missing/a directory/0644/0604/0602, no ':' or empty user -> errors; 0640/0620/0660 -> warning (failures above, if any)"

# good forms: every one accepted with no finding
cat >"$W/good.yaml" <<YAML
tls: {cert: $P/node1.crt, key: $P/node1.key, ca: $P/ca.crt}
listeners:
  - {name: g1, mode: outbound, listen: "127.0.0.1:$(free_port)", peer: "node1.test:1", via: {proxy: "127.0.0.1:3128"}}
  - {name: g2, mode: outbound, listen: "127.0.0.1:$(free_port)", peer: "node1.test:1", via: {proxy: "[::1]:3128"}}
  - {name: g3, mode: outbound, listen: "127.0.0.1:$(free_port)", peer: "node1.test:1", via: {proxy: "localhost:3128", connect_timeout: 2s}}
  - {name: g4, mode: outbound, listen: "127.0.0.1:$(free_port)", peer: "node1.test:1", via: {proxy: "http://127.0.0.1:3128", auth_file: $W/ok.auth}}
YAML
rc=0
ferry_cmd check -c "$W/good.yaml" --json >"$W/good.json" 2>&1 || rc=$?
[ "$rc" = 0 ] || { cat "$W/good.json" >&2; fail "check good.yaml: exit $rc"; }
python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); assert d["findings"] == [] and d["listeners"] == 4, d' \
    "$W/good.json" || fail "check good.yaml: $(cat "$W/good.json")"
pass "ferry check: host:port, [::1]:port, a host name, http://host:port with a 0600 auth_file -> valid"
bad_report "egress proxy"
