#!/usr/bin/env bash
# Goal: CONTRACT §5 and issue 5 error cases on protocol: http, with curl and raw mTLS sockets.
# Inbound: a malformed head -> 400 JSON; headers over 64 KiB -> 431; request smuggling
# (CL+TE either order, two different CLs, an invalid chunk size, obs-fold,
# Transfer-Encoding: gzip) -> 400 and never forwarded (the backend's raw byte log proves it),
# nor is anything pipelined behind them; Upgrade: websocket -> 501; backend down -> 502
# {"error":"bad_gateway"}; a backend that never answers -> 504 after backend_timeout; a
# client that stalls inside a head -> 408 after header_timeout; a backend that sends part of
# a response then closes, stalls or sends a malformed chunk -> the connection ends with no
# 504/502 appended.
# Outbound: peer down -> 502; a peer whose certificate fails verification -> 502 naming the
# rule; a peer that refuses our certificate (its allow) -> 502.  ferry keeps serving throughout.
# Every answer ferry makes itself (400, 403, 408, 431, 501, 502, 504, 505) has its
# event=request access-log line with that status (issue 13 §4), and a short session with
# log.format json writes only lines that parse as JSON, with numbers as JSON numbers.
# timeout: 180
source "$(dirname "$0")/lib.sh"

pki_make "$T/pki"
P=$T/pki
RAW=(python3 "$SUPPORT/http_raw.py" --cert "$P/good.crt" --key "$P/good.key" --ca "$P/root.crt"
    --sni node1.test)
PB=$(free_port)
PIN=$(free_port)
PDEAD=$(free_port)
PDEADIN=$(free_port)
POUT=$(free_port)
POUTDEAD=$(free_port)
POUTBAD=$(free_port)
PBADSRV=$(free_port)
PDEADPEER=$(free_port)
PRULES=$(free_port)
PALLOW=$(free_port)
POUTALLOW=$(free_port)
bg_run backend python3 "$SUPPORT/http_backend.py" --port "$PB" --name backend --raw-log "$T/backend.raw"
wait_port "$PB"
: >"$T/backend.raw"
bg_run s_server-wrong openssl s_server -accept "127.0.0.1:$PBADSRV" -cert "$P/wrong-san.crt" \
    -key "$P/wrong-san.key" -Verify 1 -CAfile "$P/root.crt" -www -quiet
wait_port "$PBADSRV"

TMO=2
[ "$VG" = 1 ] && TMO=4
cat >"$P/http.yaml" <<YAML
tls: {cert: node1.crt, key: node1.key, ca: ca.crt}
log: {level: debug}
limits: {handshake_timeout: 5s, idle_timeout: 8s, header_timeout: ${TMO}s, backend_timeout: ${TMO}s}
listeners:
  - {name: in, mode: inbound, listen: "127.0.0.1:$PIN", backend: "127.0.0.1:$PB", protocol: http}
  - {name: deadin, mode: inbound, listen: "127.0.0.1:$PDEADIN", backend: "127.0.0.1:$PDEAD", protocol: http}
  - {name: out, mode: outbound, listen: "127.0.0.1:$POUT", peer: "node1.test:$PIN", connect: "127.0.0.1:$PIN"}
  - {name: outdead, mode: outbound, listen: "127.0.0.1:$POUTDEAD", peer: "node1.test:$PDEADPEER", connect: "127.0.0.1:$PDEADPEER"}
  - {name: outbad, mode: outbound, listen: "127.0.0.1:$POUTBAD", peer: "peer.test:$PBADSRV", connect: "127.0.0.1:$PBADSRV"}
  - name: rules
    mode: inbound
    listen: "127.0.0.1:$PRULES"
    backend: "127.0.0.1:$PB"
    access: [{peers: ["nobody.test"], allow: all}]
  - {name: inallow, mode: inbound, listen: "127.0.0.1:$PALLOW", backend: "127.0.0.1:$PB", allow: ["nobody.test"]}
  - {name: outallow, mode: outbound, listen: "127.0.0.1:$POUTALLOW", peer: "node1.test:$PALLOW", connect: "127.0.0.1:$PALLOW"}
YAML
ferry_start http "$P/http.yaml"

CURL=(--cacert "$P/root.crt" --cert "$P/good.crt" --key "$P/good.key"
    --resolve "node1.test:$PIN:127.0.0.1" --resolve "node1.test:$PDEADIN:127.0.0.1")
good_request() {
    local code
    code=$(curl_code "${CURL[@]}" "https://node1.test:$PIN/$1")
    [ "$code" = 200 ] || fail "good request ($1): HTTP $code $(cat "$T/curl.body" 2>/dev/null)"
    grep -q "\"path\": \"/$1\"" "$T/curl.body" || fail "good request ($1): body $(cat "$T/curl.body")"
}
good_request start

# logged NAME LISTENER PATH STATUS: the access-log line of that request, with that status
# (written when ferry answers, or once the request line of an early answer has arrived).
logged() {
    local end=$((SECONDS + 5)) pat="event=request listener=$2 remote=[^ ]+ (peer=[^ ]+ )?method=[A-Z-]+ path=$3 status=$4 bytes_in=[0-9]+ bytes_out=[0-9]+ duration_ms=[0-9]+ "
    [ "$VG" = 1 ] && end=$((SECONDS + 20))
    until grep -Eq -- "$pat" "$T/http.log"; do
        if [ "$SECONDS" -ge "$end" ]; then
            bad "$1" "no access-log line for $3 with status $4: $(grep -E "event=request.* path=$3 " "$T/http.log" | head -3)"
            return
        fi
        sleep 0.1
    done
    [ "$(grep -Ec -- "event=request .*path=$3 " "$T/http.log")" = 1 ] ||
        bad "$1" "more than one access-log line for $3"
}
# jf JSON EXPR: evaluate a python expression on the parsed JSON `j`
jf() {
    python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"
}

# refused NAME STATUS ERROR MARKER... -- RAWARGS: send over mTLS; expect exactly one response
# with STATUS and a JSON body {"error":ERROR,...}, the connection closed promptly, and no
# MARKER (unique path strings) in the backend's raw byte log.
refused() {
    local name=$1 status=$2 err=$3 out why="" m
    shift 3
    local markers=()
    while [ "$1" != -- ]; do markers+=("$1"); shift; done
    shift
    out=$("${RAW[@]}" --connect "127.0.0.1:$PIN" --timeout 10 "$@") || true
    [ "$(jf "$out" 'len(j.get("responses", []))')" = 1 ] || why="expected one response"
    [ "$(jf "$out" 'j["responses"][0]["status"] if j.get("responses") else 0')" = "$status" ] ||
        why="$why; expected HTTP $status"
    [ "$(jf "$out" 'json.loads(j["responses"][0]["body"])["error"] if j.get("responses") else ""' 2>/dev/null)" = "$err" ] ||
        why="$why; expected JSON error $err"
    [ "$(jf "$out" 'j.get("eof")')" = fin ] || why="$why; connection not closed by ferry"
    python3 -c "import sys; sys.exit(0 if $(jf "$out" 'j.get("elapsed", 99)') < 5 else 1)" ||
        why="$why; not answered promptly"
    sleep 0.2
    for m in "${markers[@]}"; do
        grep -aqF -- "$m" "$T/backend.raw" && why="$why; $m reached the backend"
    done
    ferry_alive http || fail "ferry died on $name"
    if [ -n "$why" ]; then bad "$name" "${why#; }: $out"; else pass "$name -> $status $err"; fi
    [ "${markers[0]}" = /m-badmethod ] || logged "$name" in "${markers[0]}" "$status"
}

refused malformed 400 bad_request /m-malformed -- --send 'GET /m-malformed HTTP/1.1\r\nHost x\r\n\r\n'
refused badversion 400 bad_request /m-badversion -- --send 'GET /m-badversion HTTP/9.Z\r\nHost: x\r\n\r\n'
refused badmethod 400 bad_request /m-badmethod -- --send 'G\x01T /m-badmethod HTTP/1.1\r\nHost: x\r\n\r\n'
refused cl-te 400 bad_request /m-cl-te /m-smug1 -- --send \
    'POST /m-cl-te HTTP/1.1\r\nHost: x\r\nContent-Length: 42\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /m-smug1 HTTP/1.1\r\nHost: x\r\n\r\n'
refused te-cl 400 bad_request /m-te-cl /m-smug2 -- --send \
    'POST /m-te-cl HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGET /m-smug2 HTTP/1.1\r\nHost: x\r\n\r\n\r\n0\r\n\r\n'
refused two-cl 400 bad_request /m-two-cl /m-smug3 -- --send \
    'POST /m-two-cl HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 37\r\n\r\nGET /m-smug3 HTTP/1.1\r\nHost: x\r\n\r\n'
refused two-cl-list 400 bad_request /m-two-cl-list -- --send \
    'POST /m-two-cl-list HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\nhello!'
refused obs-fold 400 bad_request /m-obs-fold -- --send \
    'GET /m-obs-fold HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n'
refused te-gzip 400 bad_request /m-te-gzip -- --send \
    'POST /m-te-gzip HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc'
refused te-chunked-gzip 400 bad_request /m-te-cg -- --send \
    'POST /m-te-cg HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n'
# An invalid chunk size in the same write as the head: no part of the request reaches the
# backend, nor the request smuggled behind the bad chunk.
refused bad-chunk 400 bad_request /m-bad-chunk /m-smug4 -- --send \
    'POST /m-bad-chunk HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\nGET /m-smug4 HTTP/1.1\r\nHost: x\r\n\r\n'
# The bad chunk comes after the head was forwarded (a later read): 400 at once (not a 504
# later), the backend never completes the request, and what followed the bad chunk never
# reaches it.
out=$("${RAW[@]}" --connect "127.0.0.1:$PIN" --timeout 10 --send \
    'POST /m-late-chunk HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n' \
    --pause 0.5 --send 'zz\r\nhello\r\n0\r\n\r\nGET /m-smug5 HTTP/1.1\r\nHost: x\r\n\r\n')
st=$(jf "$out" 'j["responses"][0]["status"] if j["responses"] else 0')
el=$(jf "$out" 'j["elapsed"]')
sleep 0.2
if [ "$st" = 400 ] && python3 -c "import sys; sys.exit(0 if $el < 1.5 else 1)" &&
    ! grep -q ' /m-late-chunk$' "$T/backend.log" && ! grep -aqF /m-smug5 "$T/backend.raw"; then
    pass "late-chunk -> 400 after ${el}s; the backend never completed the request"
else
    bad late-chunk "expected 400 at once, the request never completed at the backend: $out"
fi
refused version 505 http_version_not_supported /m-version -- --send 'GET /m-version HTTP/1.2\r\nHost: x\r\n\r\n'
refused upgrade 501 not_implemented /m-upgrade -- --send \
    'GET /m-upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n'
# 20 headers of 4000 bytes: 80 KB of head, each line short enough for the backend to accept
line=$(head -c 4000 /dev/zero | tr '\0' a)
big=""
for i in $(seq 1 20); do big="${big}X-Big-$i: $line\r\n"; done
refused big-headers 431 header_too_large /m-big-headers -- --send "GET /m-big-headers HTTP/1.1\r\nHost: x\r\n$big\r\n"
one=$(head -c 70000 /dev/zero | tr '\0' b)
refused big-header-line 431 header_too_large /m-big-line -- --send "GET /m-big-line HTTP/1.1\r\nHost: x\r\nX-One: $one\r\n\r\n"
# A request after a good one on the same connection: the good one is answered first.
out=$("${RAW[@]}" --connect "127.0.0.1:$PIN" --timeout 10 --send \
    'GET /m-first HTTP/1.1\r\nHost: x\r\n\r\nPOST /m-second HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab')
st=$(jf "$out" '",".join(str(r["status"]) for r in j["responses"])')
[ "$st" = "200,400" ] || bad pipelined-bad "expected 200 then 400, got $st: $out"
grep -aqF /m-second "$T/backend.raw" && bad pipelined-bad "/m-second reached the backend"
[ "$st" = "200,400" ] && pass "a good request then a smuggling one on one connection -> 200, 400"

# Exactly 64 KiB minus a little of head is accepted (the limit is on the head, not lower).
near=$(head -c 60000 /dev/zero | tr '\0' c)
out=$("${RAW[@]}" --connect "127.0.0.1:$PIN" --timeout 10 --send "GET /m-near HTTP/1.1\r\nHost: x\r\nX-Near: $near\r\nConnection: close\r\n\r\n")
[ "$(jf "$out" 'j["responses"][0]["status"]')" = 200 ] || bad near-limit "60 KB head refused: ${out:0:300}"
pass "a 60 KB head is forwarded"

# ---- header_timeout: half a head, then silence -> 408 ----
out=$("${RAW[@]}" --connect "127.0.0.1:$PIN" --timeout 20 --send 'GET /m-slow HTTP/1.1\r\nHost: x\r\nX-Half')
st=$(jf "$out" 'j["responses"][0]["status"] if j["responses"] else 0')
el=$(jf "$out" 'j["elapsed"]')
err=$(jf "$out" 'json.loads(j["responses"][0]["body"])["error"] if j["responses"] else ""' 2>/dev/null || true)
if [ "$st" = 408 ] && [ "$err" = request_timeout ] && python3 -c "import sys; sys.exit(0 if $TMO - 0.5 <= $el < $TMO + 4 else 1)"; then
    pass "half a head then a stall -> 408 request_timeout after ${el}s"
else
    bad header-timeout "expected 408 request_timeout after ~${TMO}s: $out"
fi
grep -aqF /m-slow "$T/backend.raw" && bad header-timeout "/m-slow reached the backend"
logged header-timeout in /m-slow 408

# ---- backend never answers -> 504 after backend_timeout ----
t0=$(date +%s.%N)
code=$(curl_code "${CURL[@]}" "https://node1.test:$PIN/__stall")
el=$(python3 -c "import time; print(round(time.time() - $t0, 2))")
err=$(jq -r .error "$T/curl.body" 2>/dev/null || true)
if [ "$code" = 504 ] && [ "$err" = gateway_timeout ] && python3 -c "import sys; sys.exit(0 if $TMO - 0.5 <= $el < $TMO + 4 else 1)"; then
    pass "backend that never answers -> 504 gateway_timeout after ${el}s: $(cat "$T/curl.body")"
else
    bad backend-timeout "expected 504 gateway_timeout after ~${TMO}s, got $code after ${el}s: $(cat "$T/curl.body" 2>/dev/null)"
fi
expect_log http 'event=backend_timeout' 5
logged backend-timeout in /__stall 504

# ---- backend sends part of a response, then closes / stalls: no error appended ----
for mode in close stall; do
    out=$("${RAW[@]}" --connect "127.0.0.1:$PIN" --timeout 25 --send "GET /__partial-$mode HTTP/1.1\r\nHost: x\r\n\r\n")
    n=$(jf "$out" 'len(j["responses"])')
    st=$(jf "$out" 'j["responses"][0]["status"] if j["responses"] else 0')
    bl=$(jf "$out" 'j["responses"][0]["body_len"] if j["responses"] else 0')
    eof=$(jf "$out" 'j["eof"]')
    if [ "$n" = 1 ] && [ "$st" = 200 ] && [ "$bl" = 1000 ] && [ "$eof" = fin ] &&
        ! grep -qE 'HTTP/1\.[01] (50[0-9]|408)' <<<"$out"; then
        pass "backend cut a response ($mode) after 1000 body bytes: the client got the 1000 bytes, then the connection closed (no error appended) after $(jf "$out" 'j["elapsed"]')s"
    else
        bad "partial-$mode" "expected one 200 with 1000 body bytes then a close: ${out:0:600}"
    fi
done

# A defect later in a response whose head and first chunk went out: the client keeps what it
# got, then the connection ends; ferry's 502 must not land inside the body.
out=$("${RAW[@]}" --connect "127.0.0.1:$PIN" --timeout 25 --send "GET /__partial-badchunk HTTP/1.1\r\nHost: x\r\n\r\n")
if [ "$(jf "$out" 'j["responses"][0]["status"] if j["responses"] else 0')" = 200 ] &&
    [ "$(jf "$out" 'j["eof"]')" = fin ] && ! grep -qE 'HTTP/1\.[01] (50[0-9]|408)|bad_gateway' <<<"$out"; then
    pass "a malformed chunk after a response's head: the client got the head and the first chunk, then the close (no 502 inside the body)"
else
    bad "partial-badchunk" "expected the 200 head, then a close with nothing appended: ${out:0:600}"
fi

# ---- backend down -> 502 ----
code=$(curl_code "${CURL[@]}" "https://node1.test:$PDEADIN/dead")
err=$(jq -r .error "$T/curl.body" 2>/dev/null || true)
reason=$(jq -r .reason "$T/curl.body" 2>/dev/null || true)
if [ "$code" = 502 ] && [ "$err" = bad_gateway ] && [ -n "$reason" ]; then
    pass "backend down -> 502 $(cat "$T/curl.body")"
else
    bad backend-down "expected 502 bad_gateway, got $code $(cat "$T/curl.body" 2>/dev/null)"
fi
logged backend-down deadin /dead 502
# ---- backend closes without answering -> 502 (the request line has that status, not "-") ----
code=$(curl_code "${CURL[@]}" "https://node1.test:$PIN/__drop")
if [ "$code" = 502 ] && [ "$(jq -r .error "$T/curl.body" 2>/dev/null)" = bad_gateway ]; then
    pass "backend closed without answering -> 502 $(cat "$T/curl.body")"
else
    bad backend-drop "expected 502 bad_gateway, got $code $(cat "$T/curl.body" 2>/dev/null)"
fi
logged backend-drop in /__drop 502
# ---- plaintext on the TLS port -> 400 in plaintext, with its request line ----
code=$(curl_code "http://127.0.0.1:$PIN/m-plain")
[ "$code" = 400 ] || bad plaintext "expected 400 for plaintext on the TLS port, got $code"
logged plaintext in /m-plain 400
# ---- an access rule refuses -> 403 ----
code=$(curl_code --cacert "$P/root.crt" --cert "$P/good.crt" --key "$P/good.key" \
    --resolve "node1.test:$PRULES:127.0.0.1" "https://node1.test:$PRULES/m-denied")
if [ "$code" = 403 ] && [ "$(jq -r .error "$T/curl.body" 2>/dev/null)" = forbidden ]; then
    pass "access rule refuses -> 403 $(cat "$T/curl.body")"
else
    bad forbidden "expected 403 forbidden, got $code $(cat "$T/curl.body" 2>/dev/null)"
fi
logged forbidden rules /m-denied 403

# ---- outbound ----
code=$(curl_code "http://127.0.0.1:$POUT/via-out")
[ "$code" = 200 ] || bad outbound-good "outbound to a good peer: HTTP $code $(cat "$T/curl.body")"
grep -q '"path": "/via-out"' "$T/curl.body" && pass "outbound -> mTLS -> inbound -> backend works"
code=$(curl_code "http://127.0.0.1:$POUTDEAD/x-outdead")
err=$(jq -r .error "$T/curl.body" 2>/dev/null || true)
if [ "$code" = 502 ] && [ "$err" = bad_gateway ]; then
    pass "outbound, peer down -> 502 $(cat "$T/curl.body")"
else
    bad outbound-dead "expected 502 bad_gateway, got $code $(cat "$T/curl.body" 2>/dev/null)"
fi
logged outbound-dead outdead /x-outdead 502
code=$(curl_code "http://127.0.0.1:$POUTBAD/x-outbad")
err=$(jq -r .error "$T/curl.body" 2>/dev/null || true)
reason=$(jq -r .reason "$T/curl.body" 2>/dev/null || true)
if [ "$code" = 502 ] && [ "$err" = bad_gateway ] && grep -qi 'peer.test' <<<"$reason" &&
    grep -qiE 'wrong\.test|name' <<<"$reason"; then
    pass "outbound, peer certificate for the wrong name -> 502: $reason"
else
    bad outbound-wrong-cert "expected 502 naming the name rule, got $code $(cat "$T/curl.body" 2>/dev/null)"
fi
expect_log http 'event=handshake_rejected.*name_mismatch' 5
logged outbound-wrong-cert outbad /x-outbad 502
# The peer refuses our certificate (its allow): under TLS 1.3 its alert comes after our side of
# the handshake, with the request already sent: 502, and the request line has it (not "-").
code=$(curl_code "http://127.0.0.1:$POUTALLOW/x-outallow")
if [ "$code" = 502 ] && [ "$(jq -r .error "$T/curl.body" 2>/dev/null)" = bad_gateway ]; then
    pass "outbound, the peer refuses our certificate -> 502 $(cat "$T/curl.body")"
else
    bad outbound-refused "expected 502 bad_gateway, got $code $(cat "$T/curl.body" 2>/dev/null)"
fi
logged outbound-refused outallow /x-outallow 502

# A response with Connection: close, with a second request pipelined behind it: the client gets
# that response and then the close, never a made-up 502 for the request the backend never read
# (through outbound -> inbound, so both ferries see it).
got=$(python3 - "$POUT" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(b"GET /__close HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n")
data = b""
while True:
    d = s.recv(65536)
    if not d:
        break
    data += d
print(data.count(b"HTTP/1.1 "), b"502" in data, data.endswith(b"closed"))
PY
)
if [ "$got" = "1 False True" ]; then
    pass "Connection: close answer with a request pipelined behind it: that answer, then the close"
else
    bad pipelined-close "expected one response and the close, got: $got"
fi

good_request end
# Every case above left one access-log line at most; ferry is still serving and exits cleanly.
ferry_stop http

# ---- log.format json: every line is JSON; numbers are numbers, timestamps RFC 3339 ----
cat >"$P/json.yaml" <<YAML
tls: {cert: node1.crt, key: node1.key, ca: ca.crt}
log: {level: debug, format: json}
admin: {listen: "127.0.0.1:$(free_port)"}
limits: {handshake_timeout: 5s, idle_timeout: 8s, header_timeout: ${TMO}s, backend_timeout: ${TMO}s}
listeners:
  - {name: in, mode: inbound, listen: "127.0.0.1:$PIN", backend: "127.0.0.1:$PB", protocol: http}
  - {name: deadin, mode: inbound, listen: "127.0.0.1:$PDEADIN", backend: "127.0.0.1:$PDEAD", protocol: http}
  - {name: outdead, mode: outbound, listen: "127.0.0.1:$POUTDEAD", peer: "node1.test:$PDEADPEER", connect: "127.0.0.1:$PDEADPEER"}
YAML
ferry_spawn json "$P/json.yaml"
wait_port "$PIN"
good_request json-good
curl_code "${CURL[@]}" "https://node1.test:$PDEADIN/json-dead" >/dev/null
curl_code "http://127.0.0.1:$POUTDEAD/json-outdead" >/dev/null
"${RAW[@]}" --connect "127.0.0.1:$PIN" --timeout 10 --send 'GET /json-bad HTTP/1.1\r\nHost x\r\n\r\n' >/dev/null
# bytes that are not UTF-8 in the target: the line must still be UTF-8 JSON (\u00ff, \u00fe)
"${RAW[@]}" --connect "127.0.0.1:$PIN" --timeout 10 --send 'GET /json-utf8\xff\xfe"x HTTP/1.1\r\nHost: x\r\n\r\n' >/dev/null
curl_code "http://127.0.0.1:$PIN/json-plain" >/dev/null
sleep 0.3
ferry_stop json
if got=$(python3 - "$T/json.log" 2>&1 <<'PY'
import json, re, sys
ts = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
numbers = ("status", "bytes_in", "bytes_out", "duration_ms", "drain_timeout_ms", "connections",
           "workers", "listeners")
seen, n = {}, 0
for no, line in enumerate(open(sys.argv[1], "rb"), 1):
    try:
        j = json.loads(line)  # bytes: must be UTF-8
    except ValueError as e:
        sys.exit(f"line {no} is not JSON ({e}): {line!r}")
    n += 1
    if not ts.match(j.get("ts", "")):
        sys.exit(f"line {no}: ts {j.get('ts')!r} is not RFC 3339 UTC with milliseconds")
    for k in numbers:
        if k in j and not (type(j[k]) is int or (k == "status" and j[k] is None)):
            sys.exit(f"line {no}: {k} is {j[k]!r}, not a JSON number: {line!r}")
    if j.get("event") == "request":
        seen[j["path"]] = j["status"]
want = {"/json-good": 200, "/json-dead": 502, "/json-outdead": 502, "/json-bad": 400,
        "/json-plain": 400, "/json-utf8\u00ff\u00fe\"x": 400}
if seen != want:
    sys.exit(f"request lines {seen}, expected {want}")
print(n)
PY
); then
    pass "log.format json: all $got lines parse, numbers are numbers, ts RFC 3339; 6 request lines, bytes not UTF-8 as \\u00XX"
else
    bad json-log "$got"
fi
bad_report "HTTP error handling"
