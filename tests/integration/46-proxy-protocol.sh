#!/usr/bin/env bash
# Goal: PROXY protocol on inbound listeners (ferry behind a load balancer), checked against the
# spec: proxy_protocol: {accept: true, from: [...]} on a protocol: http listener (web) and a
# protocol: tcp one (raw), backend_proxy_protocol: v2 to a tcp backend, the log lines, the
# ferry_proxy_protocol_total counters and `ferry check`.
# (1) HAProxy 2.6 in front (mode tcp, `send-proxy` on one frontend, `send-proxy-v2` on another,
#     source 127.0.0.2): curl with a client certificate from 127.0.0.9/127.0.0.10 POSTs 1 MiB
#     and gets it back byte-exact; the backend sees X-Forwarded-For = curl's address; the
#     request and conn_closed lines name curl's address and port (conn_closed also HAProxy's,
#     sender=), the debug event=proxy_protocol
#     line names HAProxy as sender with version=1/2, and no line after it names HAProxy's own
#     address; result="ok" counts +1 each.
# (2) HAProxy health checks (`check send-proxy-v2`, source 127.0.0.5, a bare IP in from): they
#     are v2 LOCAL headers: result="local" grows, and they give no warn/error line, and close at
#     debug only, as health checks (not one client_error line at info per check).
# (3) Raw sockets (tests/support/pp_send.py, source 127.0.0.2): good v1 / v2 (IPv6 client,
#     with a TLV to skip) / header sent in pieces / header and ClientHello in one write / a v2
#     header of 1024 bytes (the limit) -> the mTLS request succeeds and remote, X-Forwarded-For
#     and result="ok" say so; v2 LOCAL and a 107-byte v1 UNKNOWN line (the v1 limit) -> served as
#     the sender, result="local"; a good header then a refused certificate -> handshake_rejected
#     names the header's address; every broken variant (bad signature byte, v1 bare LF, v1 bad
#     port, v1 TCP4 with an IPv6 address, v1 address that cannot become valid, v2 version 3, v2
#     UDP, v2 TLV length overflow), truncated by a close (v1, v2) and by a stall, oversized (a
#     108-byte v1 line, a 1025-byte v2 header), missing (TLS straight away) and nothing sent
#     (timeout): the connection is closed (at once, or at limits.handshake_timeout for a
#     stall) with no TLS session, one warn event=proxy_protocol_rejected with the sender as
#     remote, the reason and a msg, conn_closed reason=proxy_protocol, and exactly that result
#     counted (all eight counters compared).
# (4) A sender outside from (127.0.0.3) with a good v1 or v2 header, or silent: refused at
#     once, logged, counted.
# (5) backend_proxy_protocol: v2 (protocol: tcp, tests/support/pp_backend.py parses it): the
#     client's address (the TCP peer without accept; the header's with it, TCP4 and TCP6; the
#     sender's for LOCAL), ferry's listen address as dst, PP2_TYPE_SSL with the TLS version and
#     the certificate's CN, TLV 0xE0 = the verified peer name (as logged peer=), then 1 MiB
#     echoed byte-exact; a rejected header never reaches the backend.
# (6) `ferry check` names file:line:col for proxy_protocol on an outbound listener, accept
#     without from, bad blocks (10.0.0.0/33, not-an-ip, 2001:db8::/129), an unknown key, and
#     backend_proxy_protocol on protocol: http (explicit and default); the test's config passes.
# (7) The admin's backend probe of a backend_proxy_protocol: v2 listener sends a v2 LOCAL header
#     (as HAProxy's checks do), never a bare connection the backend reads as a broken header.
# timeout: 120
# valgrind: yes
source "$(dirname "$0")/lib.sh"

# python3 may be a version manager's shim that costs 0.2 s a start; this test starts it a few
# hundred times: the interpreter it leads to, directly.  (Background processes are started as
# "$PY" itself, never through this function: bg_run must get the interpreter's own pid to stop.)
PY=$(python3 -c 'import sys; print(sys.executable)')
python3() { "$PY" "$@"; }

command -v haproxy >/dev/null || fail "haproxy is not installed (deploy/install-deps.sh --test installs it)"

pki_make "$T/pki"
P=$T/pki
PB=$(free_port)     # http backend (pp_backend.py --mode http)
PE=$(free_port)     # echo backend reading a PROXY v2 header (pp_backend.py --mode echo)
PIN=$(free_port)    # web: protocol http, accept
PRAW=$(free_port)   # raw: protocol tcp, accept, backend_proxy_protocol v2
PRAW2=$(free_port)  # direct: protocol tcp, no accept, backend_proxy_protocol v2
PPLAIN=$(free_port) # plain: no proxy_protocol at all
PADM=$(free_port)
PHA1=$(free_port)
PHA2=$(free_port)

# The client certificate for (5): CN and SAN differ, so the CN sub-TLV and TLV 0xE0 (the
# verified name) can be told apart.
mkdir -p "$T/ca"
cp "$P/root.crt" "$T/ca/ca.crt"
cp "$P/root.key" "$T/ca/ca.key"
openssl ecparam -name prime256v1 -genkey -noout -out "$P/ppc.key" 2>/dev/null
chmod 600 "$P/ppc.key"
ca_sign_dated "$T/ca" "$P/ppc.key" "PP Client CN" "DNS:pp-client.test" \
    "$(date -u -d '-1 day' +%Y%m%d%H%M%SZ)" "$(date -u -d '+30 days' +%Y%m%d%H%M%SZ)" "$P/ppc.crt"

TMO=2
[ "$VG" = 1 ] && TMO=5
bg_run backend-http "$PY" "$SUPPORT/pp_backend.py" --port "$PB" --mode http --record "$T/http.jsonl"
wait_port "$PB"
bg_run backend-echo "$PY" "$SUPPORT/pp_backend.py" --port "$PE" --mode echo --pp v2 --record "$T/echo.jsonl"
wait_port "$PE"
: >>"$T/http.jsonl"
: >>"$T/echo.jsonl"

cat >"$P/pp.yaml" <<YAML
tls: {cert: node1.crt, key: node1.key, ca: ca.crt}
workers: 1
log: {level: debug}
# probe_interval 1h: the admin's backend probes (a TCP connect and, for backend_proxy_protocol,
# a v2 LOCAL header) would be connections to the echo backend of their own, amid the ones (5)
# counts; (7) checks them
admin: {listen: "127.0.0.1:$PADM", probe_interval: 1h}
limits: {handshake_timeout: ${TMO}s}
listeners:
  - name: web
    mode: inbound
    listen: "127.0.0.1:$PIN"
    backend: "127.0.0.1:$PB"
    proxy_protocol: { accept: true, from: ["127.0.0.2/32", "127.0.0.5", "::1/128"] }
  - name: raw
    mode: inbound
    protocol: tcp
    listen: "127.0.0.1:$PRAW"
    backend: "127.0.0.1:$PE"
    proxy_protocol: { accept: true, from: ["127.0.0.2/32"] }
    backend_proxy_protocol: v2
  - name: direct
    mode: inbound
    protocol: tcp
    listen: "127.0.0.1:$PRAW2"
    backend: "127.0.0.1:$PE"
    backend_proxy_protocol: v2
  - name: plain
    mode: inbound
    listen: "127.0.0.1:$PPLAIN"
    backend: "127.0.0.1:$PB"
YAML
out=$(ferry_cmd check -c "$P/pp.yaml" --json) || fail "ferry check of the test's config: $out"
python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["errors"] == 0, d' "$out" ||
    fail "ferry check of the test's config: $out"
ferry_start pp "$P/pp.yaml"

# re STRING: STRING as an ERE matching itself
re() {
    printf '%s' "$1" | sed 's/[][\.*^$+?(){}|/]/\\&/g'
}
# pp_vars JSON: pp_send.py's output as shell variables r_local r_tls r_status r_eof r_elapsed
# r_xff (X-Forwarded-For the backend reported in the body) r_tls_version r_echo_equal
# r_echo_got ("" when absent, or when JSON is no JSON)
r_local="" r_tls="" r_status="" r_eof="" r_elapsed="" r_xff="" r_tls_version="" r_echo_equal="" r_echo_got=""
pp_vars() {
    eval "$(python3 - "$1" <<'PY'
import json, shlex, sys
try:
    d = json.loads(sys.argv[1])
except ValueError:
    d = {}
try:
    d["xff"] = json.loads(d.get("body") or "{}").get("xff")
except ValueError:
    d["xff"] = None
for k in ("local", "tls", "status", "eof", "elapsed", "xff", "tls_version", "echo_equal",
          "echo_got"):
    v = d.get(k)
    print("r_%s=%s" % (k, shlex.quote("" if v is None else str(v))))
PY
)"
}
RESULTS="ok local refused missing malformed truncated oversized timeout"
# ppm LISTENER: the eight ferry_proxy_protocol_total counters of LISTENER, "ok=N local=N ...",
# or "MISSING <result>" when one is not there.
ppm() {
    curl -s --max-time 10 "http://127.0.0.1:$PADM/metrics" | python3 -c '
import re, sys
lst, results = sys.argv[1], sys.argv[2].split()
got = {}
for line in sys.stdin:
    m = re.match(r"ferry_proxy_protocol_total\{listener=\"([^\"]*)\",result=\"([^\"]*)\"\} (\d+)$", line.strip())
    if m and m.group(1) == lst:
        got[m.group(2)] = int(m.group(3))
out = []
for r in results:
    if r not in got:
        print("MISSING %s" % r)
        sys.exit(0)
    out.append("%s=%d" % (r, got[r]))
extra = sorted(set(got) - set(results))
print(" ".join(out) + (" EXTRA " + ",".join(extra) if extra else ""))' "$1" "$RESULTS"
}
# ppdelta BEFORE AFTER [IGNORED...]: the counters that moved, "malformed=1" (or "none")
ppdelta() {
    python3 - "$@" <<'PY'
import sys
b = dict(kv.split("=") for kv in sys.argv[1].split())
a = dict(kv.split("=") for kv in sys.argv[2].split())
d = ["%s=%d" % (k, int(a[k]) - int(b[k])) for k in b if k not in sys.argv[3:] and a[k] != b[k]]
print(" ".join(d) if d else "none")
PY
}
# wait_delta LISTENER BEFORE WANT [IGNORED...]: until the counters moved by WANT (a few s)
wait_delta() {
    local l=$1 b=$2 want=$3 d end=$((SECONDS + 5))
    shift 3
    [ "$VG" = 1 ] && end=$((SECONDS + 20))
    while :; do
        d=$(ppdelta "$b" "$(ppm "$l")" "$@")
        [ "$d" = "$want" ] && { echo "$d"; return 0; }
        [ "$SECONDS" -ge "$end" ] && { echo "$d"; return 1; }
        sleep 0.1
    done
}
# wait_line PATTERN [SECS]: status 0 once pp.log matches PATTERN (ERE)
wait_line() {
    local end=$((SECONDS + ${2:-5}))
    [ "$VG" = 1 ] && end=$((SECONDS + 4 * ${2:-5}))
    until grep -Eq -- "$1" "$T/pp.log"; do
        [ "$SECONDS" -ge "$end" ] && return 1
        sleep 0.1
    done
}
pp_send() {
    timeout 60 "$PY" "$SUPPORT/pp_send.py" --ca "$P/root.crt" --cert "$P/good.crt" \
        --key "$P/good.key" --timeout "$((TMO * 3))" "$@"
}
# after_pp_line LISTENER CLIENT SENDER: no line after the event=proxy_protocol line of that
# connection names the sender as remote (the header's address replaced it everywhere).
after_pp_line() {
    PP_L="listener=$1 " PP_C="remote=$2 " PP_S="sender=$3 " awk '
        f && index($0, "remote=" substr(ENVIRON["PP_S"], 8)) { print; bad = 1 }
        index($0, "event=proxy_protocol ") && index($0, ENVIRON["PP_L"]) &&
            index($0, ENVIRON["PP_C"]) && index($0, ENVIRON["PP_S"]) { f = 1 }
        END { exit bad }' "$T/pp.log" >&2
}

# ---- metrics: all results of the accepting listeners at 0, none for the others ----
for l in web raw; do
    m=$(ppm "$l")
    [ "$m" = "ok=0 local=0 refused=0 missing=0 malformed=0 truncated=0 oversized=0 timeout=0" ] ||
        fail "/metrics for listener $l before any connection: $m"
done
for l in direct plain; do
    curl -s --max-time 10 "http://127.0.0.1:$PADM/metrics" | grep -q "ferry_proxy_protocol_total{listener=\"$l\"" &&
        fail "/metrics has ferry_proxy_protocol_total for $l, which has no proxy_protocol"
done
pass "metrics: the 8 results of web and raw at 0, none for direct and plain"

# ---- (1) + (2) HAProxy in front ----
cat >"$T/haproxy.cfg" <<CFG
global
    maxconn 200
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend v1
    bind 127.0.0.1:$PHA1
    default_backend v1
frontend v2
    bind 127.0.0.1:$PHA2
    default_backend v2
backend v1
    server ferry 127.0.0.1:$PIN send-proxy source 127.0.0.2
backend v2
    server ferry 127.0.0.1:$PIN send-proxy-v2 source 127.0.0.2
backend checks
    server ferry 127.0.0.1:$PIN send-proxy-v2 check inter 200ms source 127.0.0.5
CFG
haproxy -c -f "$T/haproxy.cfg" >"$T/haproxy-check.log" 2>&1 ||
    { cat "$T/haproxy-check.log" >&2; fail "haproxy -c rejects the test's config"; }
m0=$(ppm web)
bg_run haproxy haproxy -db -f "$T/haproxy.cfg"
HAPID=$BG_PID
# (not wait_port: a probe through HAProxy would be a connection to ferry of its own)
for _ in $(seq 1 100); do
    [ "$(ss -Hltn "( sport = :$PHA1 or sport = :$PHA2 )" | wc -l)" = 2 ] && break
    sleep 0.1
done
[ "$(ss -Hltn "( sport = :$PHA1 or sport = :$PHA2 )" | wc -l)" = 2 ] || fail "HAProxy does not listen"

head -c $((1 << 20)) /dev/urandom >"$T/up.bin"
UPSHA=$(sha256_of "$T/up.bin")
# through_haproxy VERSION PORT CURL_IP: 1 MiB each way through HAProxy and web
through_haproxy() {
    local v=$1 port=$2 ip=$3 w code lip lport b sender line
    b=$(ppm web)
    w=$(curl -s --max-time 60 --interface "$ip" --cacert "$P/root.crt" --cert "$P/good.crt" \
        --key "$P/good.key" --resolve "node1.test:$port:127.0.0.1" -H 'Expect:' \
        -H 'Content-Type: application/octet-stream' --data-binary "@$T/up.bin" \
        -o "$T/down-v$v.bin" -w '%{http_code} %{local_ip} %{local_port}' \
        "https://node1.test:$port/echo-v$v") || true
    read -r code lip lport <<<"$w"
    [ "$code" = 200 ] || { bad "haproxy-v$v" "curl through HAProxy: '$w'"; return; }
    [ "$lip" = "$ip" ] || { bad "haproxy-v$v" "curl's address is $lip, not $ip"; return; }
    [ "$(sha256_of "$T/down-v$v.bin")" = "$UPSHA" ] ||
        bad "haproxy-v$v" "the 1 MiB body came back different ($(stat -c %s "$T/down-v$v.bin") bytes)"
    line=$(grep "\"path\": \"/echo-v$v\"" "$T/http.jsonl" || true)
    [ "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["xff"], d["body_sha256"], d["body_len"])' "$line" 2>&1)" = "$ip $UPSHA 1048576" ] ||
        bad "haproxy-v$v" "the backend should see X-Forwarded-For $ip and the 1 MiB body: $line"
    if wait_line "event=proxy_protocol .*listener=web .*remote=$(re "$ip:$lport") .*sender=127\.0\.0\.2:[0-9]+ .*version=$v( |$)"; then
        sender=$(grep -Eo "event=proxy_protocol .*listener=web .*remote=$(re "$ip:$lport") .*sender=127\.0\.0\.2:[0-9]+" "$T/pp.log" |
            sed 's/.*sender=//' | head -n1)
        after_pp_line web "$ip:$lport" "$sender" ||
            bad "haproxy-v$v" "lines after the header name HAProxy ($sender) as remote"
    else
        bad "haproxy-v$v" "no debug event=proxy_protocol line with remote=$ip:$lport sender=127.0.0.2:* version=$v"
    fi
    wait_line "event=request .*listener=web remote=$(re "$ip:$lport") .*path=/echo-v$v status=200 " ||
        bad "haproxy-v$v" "no request line with remote=$ip:$lport"
    # The close line names the balancer too (sender=), at the default level.
    wait_line "info event=conn_closed listener=web remote=$(re "$ip:$lport") sender=127\.0\.0\.2:[0-9]+ " ||
        bad "haproxy-v$v" "no conn_closed line with remote=$ip:$lport sender=127.0.0.2:*"
    d=$(wait_delta web "$b" "ok=1" local) || bad "haproxy-v$v" "counters moved by '$d', expected ok=1 (local aside)"
    note "HAProxy PROXY v$v from curl at $ip:$lport: HTTP $code, 1 MiB each way, backend X-Forwarded-For $ip, counters $d"
}
through_haproxy 1 "$PHA1" 127.0.0.9
through_haproxy 2 "$PHA2" 127.0.0.10

# (2) health checks: LOCAL headers from 127.0.0.5 every 200 ms
end=$((SECONDS + 10))
[ "$VG" = 1 ] && end=$((SECONDS + 40))
while :; do
    d=$(ppdelta "$m0" "$(ppm web)")
    case "$d" in
    *local=[3-9]* | *local=[1-9][0-9]*) break ;;
    esac
    [ "$SECONDS" -ge "$end" ] && { bad health-checks "result=local did not grow by 3 within the wait: $d"; break; }
    sleep 0.2
done
kill -TERM "$HAPID" 2>/dev/null || true
wait "$HAPID" 2>/dev/null || true
sleep 0.5
d=$(ppdelta "$m0" "$(ppm web)")
note "HAProxy phase, web counters moved by: $d"
case "$d" in
ok=2\ local=[0-9]*) ;;
*) bad health-checks "over the HAProxy phase the counters moved by '$d', expected ok=2 and local only" ;;
esac
# A check (LOCAL, then a close or a reset) closes at debug only, named as a health check.
n=$(log_count pp 'debug event=conn_closed listener=web remote=127\.0\.0\.5:[0-9]+ .*reason=client_closed detail="load balancer health check: a PROXY v2 LOCAL header, then a (close|reset)"')
[ "$n" -ge 3 ] || bad health-checks "$n debug conn_closed lines of health checks with remote=127.0.0.5 (the LOCAL health checks go on as the sender)"
m=$(log_count pp 'info event=conn_closed listener=web remote=127\.0\.0\.5:')
[ "$m" = 0 ] || bad health-checks "$m health checks closed at info (one line per check at the default level)"
if grep -E '^[^ ]+ (warn|error) .*remote=127\.0\.0\.5:' "$T/pp.log" >&2; then
    bad health-checks "health checks (LOCAL) gave warn/error lines"
fi
if grep -E 'event=proxy_protocol_rejected' "$T/pp.log" >&2; then
    bad haproxy "a header from HAProxy was rejected"
fi
pass "HAProxy v1 and v2 in front, health checks as LOCAL ($n conn_closed lines of them)"

# ---- (3) + (4) raw sockets ----
# good NAME VERSION CLIENT [PP_SEND ARGS...]: a good header claiming CLIENT, then an mTLS GET;
# XFF, remote, the debug line and ok=1.
good() {
    local name=$1 v=$2 client=$3 out ip b d
    shift 3
    ip=${client%:*}
    ip=${ip#[}
    ip=${ip%]}
    b=$(ppm web)
    out=$(pp_send --connect "127.0.0.1:$PIN" --client "$client" --then http --path "/pp-$name" "$@") || true
    pp_vars "$out"
    [ "$r_tls $r_status" = "ok 200" ] || { bad "$name" "client: $out"; return; }
    [ "$r_xff" = "$ip" ] || bad "$name" "the backend saw X-Forwarded-For '$r_xff', expected $ip"
    wait_line "debug event=proxy_protocol .*listener=web .*remote=$(re "$client") .*sender=$(re "$r_local") .*version=$v( |$)" ||
        bad "$name" "no debug line event=proxy_protocol remote=$client sender=$r_local version=$v"
    wait_line "event=request .*listener=web remote=$(re "$client") .*path=/pp-$name status=200 " ||
        bad "$name" "no request line with remote=$client"
    wait_line "event=conn_closed listener=web remote=$(re "$client") " ||
        bad "$name" "no conn_closed line with remote=$client"
    after_pp_line web "$client" "$r_local" || bad "$name" "lines after the header name the sender $r_local as remote"
    d=$(wait_delta web "$b" "ok=1") || bad "$name" "counters moved by '$d', expected ok=1"
    pass "$name: header v$v for $client from $r_local -> HTTP 200, X-Forwarded-For $ip, counted ok"
}
good v1 1 203.0.113.7:4201 --header v1
good v2-ipv6 2 "[2001:db8::7]:4202" --header v2
good v1-pieces 1 203.0.113.7:4203 --header v1 --split 7
good v2-pieces 2 203.0.113.7:4204 --header v2 --split 10
good v1-with-hello 1 203.0.113.7:4205 --header v1 --coalesce
good v2-with-hello 2 "[2001:db8::7]:4206" --header v2 --coalesce
good v2-1024-bytes 2 203.0.113.7:4207 --header v2-1024

# as_sender NAME [PP_SEND ARGS...]: a header that names no client (v2 LOCAL; v1 UNKNOWN, which
# the PROXY protocol spec says to treat alike), then mTLS: the sender's own address is the
# client's, counted as local.
as_sender() {
    local name=$1 out b d
    shift
    b=$(ppm web)
    out=$(pp_send --connect "127.0.0.1:$PIN" --then http --path "/pp-$name" "$@") || true
    pp_vars "$out"
    [ "$r_tls $r_status" = "ok 200" ] || { bad "$name" "mTLS GET after the header: $out"; return; }
    [ "$r_xff" = 127.0.0.2 ] || bad "$name" "X-Forwarded-For '$r_xff', expected the sender's 127.0.0.2"
    wait_line "event=request .*listener=web remote=$(re "$r_local") .*path=/pp-$name status=200 " ||
        bad "$name" "no request line with remote=$r_local"
    wait_line "event=conn_closed listener=web remote=$(re "$r_local") " || bad "$name" "no conn_closed with remote=$r_local"
    d=$(wait_delta web "$b" "local=1") || bad "$name" "counters moved by '$d', expected local=1"
    pass "$name then mTLS: HTTP 200 as $r_local, counted local"
}
as_sender v2-local --header v2-local
as_sender v1-unknown-107-bytes --header v1-unknown-107

# A good header, then a certificate of another CA: handshake_rejected names the header's address
b=$(ppm web)
out=$(timeout 60 "$PY" "$SUPPORT/pp_send.py" --ca "$P/root.crt" --cert "$P/other.crt" --key "$P/other.key" \
    --timeout $((TMO * 3)) --connect "127.0.0.1:$PIN" --client 203.0.113.8:4210 --header v1 --then http --path /pp-other) || true
pp_vars "$out"
[ "$r_status" = 200 ] && bad rejected-cert "a certificate of another CA got HTTP 200: $out"
wait_line "warn event=handshake_rejected listener=web remote=203\.0\.113\.8:4210 " ||
    bad rejected-cert "no handshake_rejected line with remote=203.0.113.8:4210"
wait_line "event=conn_closed listener=web remote=203\.0\.113\.8:4210 " ||
    bad rejected-cert "no conn_closed line with remote=203.0.113.8:4210"
d=$(wait_delta web "$b" "ok=1") || bad rejected-cert "counters moved by '$d', expected ok=1"
pass "good header, refused certificate: handshake_rejected remote=203.0.113.8:4210"

# rejected NAME LISTENER REASON TIMING OUT: pp_send.py's OUT shows ferry closed the connection
# (TIMING "prompt": well before handshake_timeout; "timeout": at it) with no TLS session; one
# warn event=proxy_protocol_rejected listener=LISTENER remote=<the sender> reason=REASON
# msg="..."; conn_closed reason=proxy_protocol.
rejected() {
    local name=$1 l=$2 reason=$3 timing=$4 out=$5 msg n
    pp_vars "$out"
    case "$r_eof" in
    fin | reset) ;;
    *) bad "$name" "ferry did not close the connection: $out" ;;
    esac
    [ "$r_tls" = ok ] && bad "$name" "a TLS session was set up: $out"
    if [ "$timing" = prompt ]; then
        python3 -c "import sys; sys.exit(0 if $r_elapsed < $TMO * 0.5 else 1)" ||
            bad "$name" "closed after ${r_elapsed}s, not at once (handshake_timeout ${TMO}s)"
    else
        python3 -c "import sys; sys.exit(0 if $TMO - 0.3 <= $r_elapsed <= $TMO + 3 else 1)" ||
            bad "$name" "closed after ${r_elapsed}s, expected about handshake_timeout (${TMO}s)"
    fi
    if wait_line "warn event=proxy_protocol_rejected .*listener=$l .*remote=$(re "$r_local") .*reason=$reason .*msg=\"[^\"]+\""; then
        msg=$(grep -E "event=proxy_protocol_rejected .*remote=$(re "$r_local") " "$T/pp.log" | sed 's/.*msg=//')
    else
        bad "$name" "no line: warn event=proxy_protocol_rejected listener=$l remote=$r_local reason=$reason msg=\"...\"; the lines of $r_local: $(grep -E "remote=$(re "$r_local") " "$T/pp.log" | grep -v 'event=side\|event=state')"
    fi
    n=$(log_count pp "event=proxy_protocol_rejected .*remote=$(re "$r_local") ")
    [ "$n" = 1 ] || bad "$name" "$n proxy_protocol_rejected lines for $r_local, expected 1"
    wait_line "event=conn_closed listener=$l remote=$(re "$r_local") .*reason=proxy_protocol( |$)" ||
        bad "$name" "no conn_closed line remote=$r_local ... reason=proxy_protocol: $(grep -E "event=conn_closed .*remote=$(re "$r_local") " "$T/pp.log")"
    note "$name: reason=$reason after ${r_elapsed}s ($r_eof), msg=${msg:-?}"
}
# reject NAME REASON [PP_SEND ARGS...]: a prompt rejection on LISTENER (web) at PORT (PIN),
# REASON=1 counted and no other counter moved.
LISTENER=web
PORT=$PIN
reject() {
    local name=$1 reason=$2 out b d
    shift 2
    b=$(ppm "$LISTENER")
    out=$(pp_send --connect "127.0.0.1:$PORT" --client 203.0.113.66:4299 "$@") || true
    rejected "$name" "$LISTENER" "$reason" prompt "$out"
    d=$(wait_delta "$LISTENER" "$b" "$reason=1") || bad "$name" "counters moved by '$d', expected $reason=1"
}
reject bad-signature malformed --header bad-sig
reject v1-bare-lf malformed --header v1-bare-lf
reject v1-bad-port malformed --header v1-bad-port
reject v1-tcp4-ipv6 malformed --header v1-tcp4-ipv6
reject v1-long-address malformed --header v1-long-address
reject v2-version3 malformed --header v2-version3
reject v2-udp malformed --header v2-udp
reject v2-tlv-overflow malformed --header v2-tlv-overflow
reject v1-closed-mid-header truncated --header v1-partial --then shut
reject v2-closed-mid-header truncated --header v2-partial --then shut
reject v1-oversized-108-bytes oversized --header v1-oversized
reject v2-oversized-1025-bytes oversized --header v2-oversized
reject missing-tls-at-once missing --header none --then http
reject refused-v1 refused --source 127.0.0.3 --header v1 --then http
reject refused-v2 refused --source 127.0.0.3 --header v2
reject refused-silent refused --source 127.0.0.3 --header none
# Stalls: handshake_timeout each (the two run side by side, counted together)
b=$(ppm web)
pp_send --connect "127.0.0.1:$PIN" --header v2-partial >"$T/stall.out" &
s1=$!
pp_send --connect "127.0.0.1:$PIN" --header none >"$T/silent.out" &
s2=$!
wait "$s1" "$s2" || true
rejected stalled-mid-header web truncated timeout "$(cat "$T/stall.out")"
rejected sent-nothing web timeout timeout "$(cat "$T/silent.out")"
d=$(wait_delta web "$b" "truncated=1 timeout=1") || bad stalls "counters moved by '$d', expected truncated=1 timeout=1"
ferry_alive pp || fail "ferry died during the raw-socket cases"
[ "${#failures[@]}" = 0 ] || note "failed so far: ${failures[*]}"
pass "raw headers on web: good, LOCAL/UNKNOWN, malformed, truncated, oversized, missing, timeout, refused"

# ---- (5) backend_proxy_protocol: v2 on protocol: tcp ----
# echo_case NAME LISTENER PORT SRC SPORT FAMILY DST [PP_SEND ARGS...]: 1 MiB (64 KiB under
# valgrind) echoed byte-exact; the backend's header: PROXY, FAMILY, SRC:SPORT (SPORT "local":
# the sender's port), DST:PORT, SSL TLV (TLS version, CN), TLV 0xE0 = the peer logged.
EB=$((1 << 20))
[ "$VG" = 1 ] && EB=$((1 << 16))
echo_case() {
    local name=$1 l=$2 port=$3 src=$4 sport=$5 fam=$6 dst=$7 out rec n0 peer
    shift 7
    n0=$(wc -l <"$T/echo.jsonl")
    out=$(timeout 120 "$PY" "$SUPPORT/pp_send.py" --ca "$P/root.crt" --cert "$P/ppc.crt" --key "$P/ppc.key" \
        --timeout 60 --connect "127.0.0.1:$port" --then echo --echo-bytes "$EB" "$@") || true
    pp_vars "$out"
    [ "$sport" = local ] && sport=${r_local##*:}
    [ "$r_tls $r_echo_equal $r_echo_got" = "ok True $EB" ] ||
        bad "$name" "the echo through ferry: $out"
    [ "$(wc -l <"$T/echo.jsonl")" = $((n0 + 1)) ] || { bad "$name" "the backend got $(($(wc -l <"$T/echo.jsonl") - n0)) connections, expected 1"; return; }
    rec=$(tail -n 1 "$T/echo.jsonl")
    peer=""
    if wait_line "event=conn_closed listener=$l remote=$(re "$([ "$fam" = TCP6 ] && echo "[$src]" || echo "$src"):$sport") (sender=[^ ]+ )?peer=[^ ]+ "; then
        peer=$(grep -E "event=conn_closed listener=$l remote=$(re "$([ "$fam" = TCP6 ] && echo "[$src]" || echo "$src"):$sport") " "$T/pp.log" |
            sed 's/.* peer=\([^ ]*\) .*/\1/' | head -n1)
    else
        bad "$name" "no conn_closed line with remote=$src:$sport and a peer"
    fi
    python3 - "$rec" "$fam" "$src" "$sport" "$dst" "$port" "$r_tls_version" "$peer" <<'PY' || bad "$name" "the backend's PROXY v2 header: $rec"
import json, sys
r = json.loads(sys.argv[1])
fam, src, sport, dst, dport, tlsv, peer = sys.argv[2:]
want = {"error": None, "command": "PROXY", "family": fam, "src": src, "sport": int(sport),
        "dst": dst, "dport": int(dport), "e0": "pp-client.test"}
bad = ["%s=%r (expected %r)" % (k, r.get(k), v) for k, v in want.items() if r.get(k) != v]
if peer != "pp-client.test":
    bad.append("ferry logged peer=%r, expected pp-client.test" % peer)
s = r.get("ssl")
if not s:
    bad.append("no PP2_TYPE_SSL TLV (0x20)")
else:
    if s["sub"].get("33") != tlsv:
        bad.append("SSL version sub-TLV %r, the client negotiated %r" % (s["sub"].get("33"), tlsv))
    if s["sub"].get("34") != "PP Client CN":
        bad.append("SSL CN sub-TLV %r, expected 'PP Client CN'" % s["sub"].get("34"))
    if not s["client"] & 0x01 or s["verify"] != 0:
        bad.append("SSL client=0x%02x verify=%d (expected PP2_CLIENT_SSL set, verify 0: the "
                   "certificate was verified)" % (s["client"], s["verify"]))
if bad:
    print("; ".join(bad), file=sys.stderr)
    sys.exit(1)
PY
    note "$name: the backend got PROXY $fam $src:$sport -> $dst:$port, TLVs $(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print([hex(t["type"]) for t in r["tlvs"]], r.get("ssl"), "e0=%s" % r.get("e0"))' "$rec"), $EB bytes echoed"
}
bd=$(ppm raw)
echo_case direct-peer direct "$PRAW2" 127.0.0.9 local TCP4 127.0.0.1 --source 127.0.0.9 --header none
echo_case raw-v1 raw "$PRAW" 203.0.113.9 5151 TCP4 127.0.0.1 --header v1 --client 203.0.113.9:5151
echo_case raw-v2-ipv6 raw "$PRAW" 2001:db8::9 6161 TCP6 ::ffff:127.0.0.1 --header v2 --client "[2001:db8::9]:6161" --coalesce
echo_case raw-local raw "$PRAW" 127.0.0.2 local TCP4 127.0.0.1 --header v2-local
d=$(wait_delta raw "$bd" "ok=2 local=1") || bad raw-counters "counters of raw moved by '$d', expected ok=2 local=1"
n0=$(wc -l <"$T/echo.jsonl")
LISTENER=raw PORT=$PRAW reject raw-v2-version3 malformed --header v2-version3
LISTENER=raw PORT=$PRAW reject raw-refused refused --source 127.0.0.3 --header v2 --then http
sleep 0.3
[ "$(wc -l <"$T/echo.jsonl")" = "$n0" ] || bad raw-rejected "a rejected connection reached the backend: $(tail -n 2 "$T/echo.jsonl")"
pass "backend_proxy_protocol v2: addresses, SSL TLV, TLV 0xE0, echo"

# plain (no proxy_protocol) still serves a client directly
code=$(curl_code --cacert "$P/root.crt" --cert "$P/good.crt" --key "$P/good.key" \
    --resolve "node1.test:$PPLAIN:127.0.0.1" "https://node1.test:$PPLAIN/plain")
[ "$code" = 200 ] || bad plain "a listener without proxy_protocol: HTTP $code"

# ---- (6) ferry check ----
W=$T/check
mkdir -p "$W"
# cfg NAME MODE LINES...: $W/NAME.yaml, one listener (lines 3-6), then LINES from line 7
cfg() {
    local name=$1 mode=$2 l
    shift 2
    {
        echo "tls: {cert: $P/node1.crt, key: $P/node1.key, ca: $P/ca.crt}"
        echo "listeners:"
        echo "  - name: l1"
        echo "    mode: $mode"
        echo "    listen: \"127.0.0.1:$PIN\""
        if [ "$mode" = inbound ]; then echo "    backend: \"127.0.0.1:$PB\""; else echo "    peer: \"node1.test:$PB\""; fi
        for l in "$@"; do echo "$l"; done
    } >"$W/$name.yaml"
}
# check_err NAME WORD LINE:COL...: ferry check exits 1 with one error, config-invalid at one of
# the LINE:COL given, its message containing WORD; the text output names FILE:LINE:COL.
check_err() {
    local name=$1 word=$2 rc=0 txt
    shift 2
    ferry_cmd check -c "$W/$name.yaml" --json >"$W/$name.json" 2>"$W/$name.err" || rc=$?
    [ "$rc" = 1 ] || { bad "check-$name" "exit $rc, expected 1: $(cat "$W/$name.json" "$W/$name.err")"; return; }
    python3 - "$W/$name.json" "$W/$name.yaml" "$word" "$@" <<'PY' || { bad "check-$name" "$(cat "$W/$name.json")"; return; }
import json, sys
d = json.load(open(sys.argv[1]))
path, word, where = sys.argv[2], sys.argv[3], sys.argv[4:]
errs = [f for f in d["findings"] if f["severity"] == "error"]
assert d["errors"] == 1 and len(errs) == 1, "expected exactly one error"
f = errs[0]
assert f["id"] == "config-invalid" and f["file"] == path, f
assert "%s:%s" % (f["line"], f["col"]) in where, "at %s:%s, expected %s" % (f["line"], f["col"], where)
assert word in f["message"], "the message does not name %r" % word
PY
    txt=$(ferry_cmd check -c "$W/$name.yaml" 2>&1) || true
    grep -Eq "$(re "$W/$name.yaml"):[0-9]+:[0-9]+: " <<<"$txt" ||
        bad "check-$name" "the text output names no $W/$name.yaml:LINE:COL: $txt"
    pass "ferry check $name: $(python3 -c 'import json,sys; f=json.load(open(sys.argv[1]))["findings"][0]; print("%s:%s: %s" % (f["line"], f["col"], f["message"]))' "$W/$name.json")"
}
cfg outbound outbound "    proxy_protocol:" "      accept: true" "      from: [127.0.0.2]"
check_err outbound proxy_protocol 7:5
cfg nofrom inbound "    proxy_protocol:" "      accept: true"
check_err nofrom from 7:5 8:7
cfg cidr33 inbound "    proxy_protocol:" "      accept: true" "      from:" "        - 127.0.0.2" "        - 10.0.0.0/33"
check_err cidr33 10.0.0.0/33 11:11
cfg notip inbound "    proxy_protocol:" "      accept: true" "      from:" "        - 127.0.0.2" "        - not-an-ip"
check_err notip not-an-ip 11:11
cfg cidr129 inbound "    proxy_protocol:" "      accept: true" "      from:" "        - 127.0.0.2" "        - 2001:db8::/129"
check_err cidr129 2001:db8::/129 11:11
cfg unknown inbound "    proxy_protocol:" "      accept: true" "      from: [127.0.0.2]" "      trust: all"
check_err unknown trust 10:7
cfg bpp-http inbound "    protocol: http" "    backend_proxy_protocol: v2"
check_err bpp-http backend_proxy_protocol 8:5
cfg bpp-default inbound "    backend_proxy_protocol: v2"
check_err bpp-default backend_proxy_protocol 7:5

ferry_stop pp

# ---- 7. the admin's backend probe of a backend_proxy_protocol listener sends v2 LOCAL ----
PE2=$(free_port)
PADM2=$(free_port)
PRAW2=$(free_port)
bg_run backend-probe "$PY" "$SUPPORT/pp_backend.py" --port "$PE2" --mode echo --pp v2 --record "$T/probe.jsonl"
wait_port "$PE2"
# wait_port's own connection (no header) is the backend's first record: the probes' come after.
end=$((SECONDS + 10))
until [ -s "$T/probe.jsonl" ]; do
    [ "$SECONDS" -ge "$end" ] && fail "probe: the backend recorded no connection from wait_port"
    sleep 0.1
done
sleep 0.3
n0=$(wc -l <"$T/probe.jsonl")
cat >"$P/probe.yaml" <<YAML
tls: {cert: node1.crt, key: node1.key, ca: ca.crt}
admin: {listen: "127.0.0.1:$PADM2", probe_interval: 200ms}
listeners:
  - name: raw2
    mode: inbound
    protocol: tcp
    listen: "127.0.0.1:$PRAW2"
    backend: "127.0.0.1:$PE2"
    backend_proxy_protocol: v2
YAML
ferry_start probe "$P/probe.yaml"
end=$((SECONDS + 20))
until [ "$(tail -n +$((n0 + 1)) "$T/probe.jsonl" | grep -c '"command": "LOCAL"')" -ge 2 ]; do
    [ "$SECONDS" -ge "$end" ] && fail "probe: the backend saw no v2 LOCAL probes: $(cat "$T/probe.jsonl")"
    sleep 0.2
done
ferry_stop probe
"$PY" - "$T/probe.jsonl" "$n0" <<'PY' || fail "probe: $(cat "$T/probe.jsonl")"
import json, sys
docs = [json.loads(l) for l in open(sys.argv[1]).readlines()[int(sys.argv[2]):] if l.strip()]
bad = [d for d in docs if d["error"] or d.get("command") != "LOCAL" or d.get("family") != "UNSPEC"]
assert not bad, "probe connections without a clean v2 LOCAL header: %r" % bad
PY
pass "probe: the admin's backend probes of a backend_proxy_protocol listener each send a v2 LOCAL header ($(($(wc -l <"$T/probe.jsonl") - n0)) seen)"

bad_report "proxy-protocol"
pass
