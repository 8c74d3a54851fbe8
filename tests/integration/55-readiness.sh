#!/usr/bin/env bash
# Goal: issue 13 part 3, readiness and liveness (CONTRACT 9).  ferry A has an inbound listener
# whose backend is stopped and an outbound listener whose peer (ferry B) is not running;
# admin.probe_interval: 1s, workers: 2.
# (1) Backend stopped: /readyz 503 naming the listener, the backend and why (the probe's
#     "Connection refused"); /livez 200; /healthz 200 with backend_up false;
#     ferry_backend_up 0; ferry_peer_up 1 (no traffic yet is no evidence against a peer);
#     /readyz?exclude=backends 200.
# (2) Backend started: /readyz 200 and ferry_backend_up 1 within the probe interval (+slack).
# (3) Peer down: two failed connections leave /readyz 200, the third makes it 503 naming the
#     peer, ferry_peer_up 0.  (4) Peer back (ferry B starts): one request through it makes
#     /readyz 200, ferry_peer_up 1.
# (5) One worker's event loop stopped (that thread alone, with ptrace): /livez 503 naming the
#     worker after 5s, 200 again once it runs (skipped where ptrace is not permitted).
# (6) Backend stopped again: /readyz 503 within the probe interval, by the probe alone.
#     A failed reload sets ferry_config_last_reload_successful 0, a good one 1 and moves
#     ..._success_timestamp_seconds; a reload pointing the listener at another (dead) backend
#     makes /readyz 503 naming the new address.  Failed handshakes with a live peer count too:
#     a peer certificate we refuse (name) and ours refused by the peer (another CA; under TLS
#     1.3 the refusal comes after our side of the handshake).
# (7) Draining (SIGTERM with a request in flight): /readyz 503 "draining", /livez 200.
# timeout: 90
source "$(dirname "$0")/lib.sh"

node1_pki "Ferry Readiness Test CA"
out=$(ferry_cmd certs init-ca --dir "$P/other" --name "Another CA" 2>&1) || fail "init-ca other: $out"
out=$(ferry_cmd certs issue --ca "$P/other" --name node1.test --ip 127.0.0.1 --out "$P/o" 2>&1) ||
    fail "issue from the other CA: $out"

PBE=$(free_port) PIN=$(free_port) POUT=$(free_port) PPEER=$(free_port)
PADM=$(free_port) PADMB=$(free_port) PWRONG=$(free_port) PUNTRUSTED=$(free_port)
cat >"$T/a.yaml" <<EOF
tls: {cert: $CRT, key: $KEY, ca: $CA}
admin: {listen: "127.0.0.1:$PADM", probe_interval: 1s}
workers: 2
limits: {drain_timeout: 4s}
listeners:
  - {name: from-peers, mode: inbound, listen: "127.0.0.1:$PIN", backend: "127.0.0.1:$PBE"}
  - {name: to-peer, mode: outbound, listen: "127.0.0.1:$POUT", peer: "node1.test:$PPEER", connect: "127.0.0.1:$PPEER"}
  - {name: to-wrong-name, mode: outbound, listen: "127.0.0.1:$PWRONG", peer: "other.test:$PPEER", connect: "127.0.0.1:$PPEER"}
  - name: to-untrusted
    mode: outbound
    listen: "127.0.0.1:$PUNTRUSTED"
    peer: "node1.test:$PPEER"
    connect: "127.0.0.1:$PPEER"
    tls: {cert: $P/o/node1.test.crt, key: $P/o/node1.test.key, ca: $P/both-cas.crt}
EOF
# The listener trusts both CAs (its own chain must verify, or run refuses to start with
# chain-incomplete); the peer trusts only the first, so it refuses this listener's certificate.
cat "$CA" "$P/o/ca.crt" >"$P/both-cas.crt"
cat >"$T/b.yaml" <<EOF
tls: {cert: $CRT, key: $KEY, ca: $CA}
admin: {listen: "127.0.0.1:$PADMB"}
listeners:
  - {name: from-a, mode: inbound, listen: "127.0.0.1:$PPEER", backend: "127.0.0.1:$PBE"}
EOF
A=http://127.0.0.1:$PADM

# get NAME PATH: GET the admin PATH into $T/NAME.json, print the status code
get() { curl -s -o "$T/$1.json" -w '%{http_code}' --max-time 5 "$A$2" || echo 000; }
# metric SAMPLE: the value of one sample line of /metrics (empty when absent)
metric() { curl -sf --max-time 5 "$A/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }
# wait_ready CODE SECS: poll /readyz until it answers CODE; prints the milliseconds it took
wait_ready() {
    local want=$1 secs=$2 t0 code
    t0=$(date +%s%3N)
    while :; do
        code=$(get ready /readyz)
        [ "$code" = "$want" ] && break
        [ $(($(date +%s%3N) - t0)) -lt $((secs * 1000)) ] ||
            fail "/readyz still $code after ${secs}s (want $want): $(cat "$T/ready.json")"
        sleep 0.1
    done
    echo $(($(date +%s%3N) - t0))
}
# check_json FILE PYTHON: run PYTHON with j = the parsed FILE; fail with the body if it fails
check_json() {
    python3 -c "import json, sys
j = json.load(open(sys.argv[1]))
ls = {l['name']: l for l in j.get('listeners', [])}
$2" "$T/$1.json" || fail "$1: $(cat "$T/$1.json")"
}
mtls() { curl_code --cacert "$CA" --cert "$CRT" --key "$KEY" --resolve "node1.test:$PIN:127.0.0.1" "$@"; }

ferry_start a "$T/a.yaml"

# ---- (1) backend stopped ----
wait_ready 503 3 >/dev/null
check_json ready "
assert j['status'] == 'unready', j['status']
l = ls['from-peers']
assert l['backend'] == '127.0.0.1:$PBE' and l['backend_up'] is False and l['backend_state'] == 'down', l
assert 'Connection refused' in l['reason'] and '127.0.0.1:$PBE' in l['reason'], l['reason']
assert any(r.startswith('listener from-peers: ') and 'Connection refused' in r for r in j['reasons']), j['reasons']
p = ls['to-peer']
assert p['peer'] == 'node1.test:$PPEER' and p['peer_up'] is True and p['peer_state'] == 'unknown', p
assert not any('to-peer' in r for r in j['reasons']), j['reasons']
assert j['draining'] is False
"
reason=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["reasons"][0])' "$T/ready.json")
[ "$(get live /livez)" = 200 ] || fail "/livez with the backend stopped: $(cat "$T/live.json")"
check_json live "assert j['status'] == 'ok' and len(j['workers']) == 2, j"
[ "$(get health /healthz)" = 200 ] || fail "/healthz with the backend stopped: $(cat "$T/health.json")"
check_json health "
assert ls['from-peers']['backend_up'] is False and ls['from-peers']['up'] is True, ls
assert ls['to-peer']['peer_up'] is True, ls
"
[ "$(metric 'ferry_backend_up{listener="from-peers"}')" = 0 ] || fail "ferry_backend_up is not 0 with the backend stopped"
[ "$(metric 'ferry_peer_up{listener="to-peer"}')" = 1 ] || fail "ferry_peer_up is not 1 before any traffic"
[ -z "$(metric 'ferry_peer_up{listener="from-peers"}')" ] || fail "ferry_peer_up on an inbound listener"
[ -z "$(metric 'ferry_backend_up{listener="to-peer"}')" ] || fail "ferry_backend_up on an outbound listener"
[ "$(get ready /readyz?exclude=backends)" = 200 ] || fail "/readyz?exclude=backends: $(cat "$T/ready.json")"
expect_log a 'event=backend_down listener=from-peers'
pass "backend stopped: /readyz 503 ($reason), /livez 200, /healthz 200, ferry_backend_up 0, ferry_peer_up 1"

# ---- (2) backend started: ready within the probe interval ----
http_backend "$PBE" backend
BE_PID=$BG_PID
ms=$(wait_ready 200 3)
check_json ready "assert j['status'] == 'ready' and ls['from-peers']['backend_up'] is True and j['reasons'] == [], j"
[ "$(metric 'ferry_backend_up{listener="from-peers"}')" = 1 ] || fail "ferry_backend_up is not 1 with the backend up"
expect_log a 'event=backend_up listener=from-peers'
pass "backend started: /readyz 200 after ${ms}ms (probe_interval 1s), ferry_backend_up 1"

# ---- (3) peer down: down after the third failed connection in a row ----
for i in 1 2 3; do
    code=$(curl_code "http://127.0.0.1:$POUT/db")
    [ "$code" = 502 ] || fail "request $i through to-peer with its peer down answered $code"
    if [ "$i" = 2 ]; then
        sleep 0.5
        [ "$(get ready /readyz)" = 200 ] || fail "/readyz after 2 failed peer connections: $(cat "$T/ready.json")"
    fi
done
wait_ready 503 3 >/dev/null
check_json ready "
p = ls['to-peer']
assert p['peer_up'] is False and p['peer_state'] == 'down', p
assert '$PPEER' in p['reason'] and '3 failed attempts' in p['reason'], p['reason']
assert ls['from-peers']['backend_up'] is True, ls
"
[ "$(metric 'ferry_peer_up{listener="to-peer"}')" = 0 ] || fail "ferry_peer_up is not 0 after 3 failed connections"
expect_log a 'event=peer_down listener=to-peer'
pass "peer down: /readyz 200 after 2 failures, 503 after the 3rd ($(python3 -c 'import json,sys; print([l["reason"] for l in json.load(open(sys.argv[1]))["listeners"] if l["name"]=="to-peer"][0])' "$T/ready.json")), ferry_peer_up 0"

# ---- (4) peer back ----
ferry_start b "$T/b.yaml"
code=$(curl_code "http://127.0.0.1:$POUT/db")
[ "$code" = 200 ] || fail "request through to-peer with ferry B up answered $code: $(cat "$T/curl.body")"
wait_ready 200 3 >/dev/null
[ "$(metric 'ferry_peer_up{listener="to-peer"}')" = 1 ] || fail "ferry_peer_up is not 1 after a good request"
pass "peer back: one request through it, /readyz 200, ferry_peer_up 1"

# ---- (5) a stalled worker loop: /livez 503 (ptrace stops that thread alone) ----
python3 "$SUPPORT/thread_stop.py" "$(ferry_pid a)" ferry-w1 7 >"$T/stop.out" 2>&1 &
STOP_PID=$!
bg_register "$STOP_PID" thread_stop
for _ in $(seq 1 30); do
    grep -q stopped "$T/stop.out" && break
    kill -0 "$STOP_PID" 2>/dev/null || break
    sleep 0.1
done
if grep -q stopped "$T/stop.out"; then
    t0=$(date +%s%3N)
    [ "$(get live /livez)" = 200 ] || fail "/livez 503 at once after stopping a worker: $(cat "$T/live.json")"
    while [ "$(get live /livez)" != 503 ]; do
        [ $(($(date +%s%3N) - t0)) -lt 6500 ] || fail "/livez still 200 6.5s after worker 1 stopped"
        sleep 0.2
    done
    stalled_ms=$(($(date +%s%3N) - t0))
    [ "$stalled_ms" -ge 3000 ] || fail "/livez 503 after ${stalled_ms}ms, before the 5s limit"
    check_json live "
assert j['status'] == 'stalled' and 'worker 1' in j['reason'], j
assert [w['stalled'] for w in j['workers']] == [False, True], j['workers']
"
    wait "$STOP_PID" || fail "thread_stop.py: $(cat "$T/stop.out")"
    for _ in $(seq 1 30); do
        [ "$(get live /livez)" = 200 ] && break
        sleep 0.1
    done
    [ "$(get live /livez)" = 200 ] || fail "/livez not 200 after worker 1 runs again: $(cat "$T/live.json")"
    pass "worker 1's loop stopped: /livez 503 after ${stalled_ms}ms naming it, 200 once it runs again"
else
    wait "$STOP_PID" 2>/dev/null || true
    note "ptrace is not permitted here ($(cat "$T/stop.out")): stalled-loop check skipped (unit test_admin covers the rule)"
fi
ferry_alive a || fail "ferry A died"

# ---- (6) backend stopped again: the probe alone finds it ----
_stop_pid "$BE_PID"
ms=$(wait_ready 503 3)
check_json ready "assert ls['from-peers']['backend_up'] is False and 'probe' in ls['from-peers']['reason'], ls"
pass "backend stopped again: /readyz 503 after ${ms}ms, by the probe"
http_backend "$PBE" backend
wait_ready 200 3 >/dev/null

# ---- (6b) reloads: last_reload_successful; a listener pointed at another backend starts over ----
ts0=$(metric ferry_config_last_reload_success_timestamp_seconds)
[ "$(metric ferry_config_last_reload_successful)" = 1 ] || fail "ferry_config_last_reload_successful is not 1 at start"
cp "$T/a.yaml" "$T/a.good"
echo "nonsense_key: 1" >>"$T/a.yaml"
kill -HUP "$(ferry_pid a)"
expect_log a 'event=reload_failed'
[ "$(metric ferry_config_last_reload_successful)" = 0 ] || fail "ferry_config_last_reload_successful is not 0 after a failed reload"
[ "$(metric ferry_config_last_reload_success_timestamp_seconds)" = "$ts0" ] || fail "a failed reload moved the success timestamp"
PBE2=$(free_port)
sed "s/backend: \"127.0.0.1:$PBE\"/backend: \"127.0.0.1:$PBE2\"/" "$T/a.good" >"$T/a.yaml"
sleep 1 # the success timestamp has a resolution of one second
kill -HUP "$(ferry_pid a)"
expect_log a 'event=reloaded'
[ "$(metric ferry_config_last_reload_successful)" = 1 ] || fail "ferry_config_last_reload_successful is not 1 after a good reload"
[ "$(metric ferry_config_last_reload_success_timestamp_seconds)" -gt "$ts0" ] || fail "the success timestamp did not move"
wait_ready 503 3 >/dev/null
check_json ready "assert ls['from-peers']['backend'] == '127.0.0.1:$PBE2' and '$PBE2' in ls['from-peers']['reason'], ls"
cp "$T/a.good" "$T/a.yaml"
kill -HUP "$(ferry_pid a)"
wait_ready 200 3 >/dev/null
pass "reloads: last_reload_successful 0 then 1, timestamp moves on success only; a new backend address is probed afresh"

# ---- (6c) handshakes that fail with a live peer: we refuse its certificate (name), it refuses
# ours (TLS 1.3: its alert comes after our side of the handshake is done) ----
U='listener="to-untrusted"'
hs_ok0=$(metric "ferry_handshakes_total{$U,outcome=\"ok\",reason=\"none\"}")
hs_f0=$(metric "ferry_handshakes_total{$U,outcome=\"failed\",reason=\"peer_handshake_failed\"}")
for l in to-wrong-name:$PWRONG to-untrusted:$PUNTRUSTED; do
    for i in 1 2 3; do
        code=$(curl_code "http://127.0.0.1:${l#*:}/db")
        [ "$code" = 502 ] || fail "request $i through ${l%%:*} answered $code (expected 502)"
    done
done
for _ in $(seq 1 30); do
    [ "$(metric 'ferry_peer_up{listener="to-wrong-name"}')" = 0 ] &&
        [ "$(metric 'ferry_peer_up{listener="to-untrusted"}')" = 0 ] && break
    sleep 0.1
done
[ "$(get ready /readyz)" = 503 ] || fail "/readyz with two peers failing handshakes: $(cat "$T/ready.json")"
check_json ready "
assert ls['to-wrong-name']['peer_up'] is False and 'other.test' in ls['to-wrong-name']['reason'], ls['to-wrong-name']
assert ls['to-untrusted']['peer_up'] is False and '3 failed attempts' in ls['to-untrusted']['reason'], ls['to-untrusted']
assert ls['to-peer']['peer_up'] is True, ls['to-peer']
"
# Each refused handshake counts once, as failed: never also as ok (TLS 1.3 finishes our side
# before the peer's verdict arrives).
hs_ok=$(metric "ferry_handshakes_total{$U,outcome=\"ok\",reason=\"none\"}")
hs_f=$(metric "ferry_handshakes_total{$U,outcome=\"failed\",reason=\"peer_handshake_failed\"}")
[ "$hs_ok" = "$hs_ok0" ] || fail "handshakes refused by the peer counted ok: $hs_ok0 -> $hs_ok"
[ "$hs_f" = $((hs_f0 + 3)) ] || fail "3 handshakes refused by the peer: failed/peer_handshake_failed $hs_f0 -> $hs_f (want +3)"
[ "$(metric "ferry_handshake_duration_seconds_count{$U}")" = "$hs_ok" ] || fail "handshake histogram counts refused handshakes"
pass "failed handshakes with a live peer: name refused by us, our certificate refused by it -> ferry_peer_up 0 for both"

# ---- (7) draining: 503 while the drain lasts ----
curl -s -o /dev/null --max-time 10 --cacert "$CA" --cert "$CRT" --key "$KEY" \
    --resolve "node1.test:$PIN:127.0.0.1" "https://node1.test:$PIN/__stall" &
STALL_PID=$!
bg_register "$STALL_PID" stall-client
sleep 0.5
kill -TERM "$(ferry_pid a)"
expect_log a 'event=draining'
[ "$(get ready /readyz)" = 503 ] || fail "/readyz while draining: $(cat "$T/ready.json")"
check_json ready "assert j['draining'] is True and j['status'] == 'unready' and 'draining' in j['reasons'][0], j"
[ "$(get live /livez)" = 200 ] || fail "/livez while draining: $(cat "$T/live.json")"
pass "draining: /readyz 503 ($(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["reasons"][0])' "$T/ready.json")), /livez 200"
ferry_stop a
ferry_stop b
