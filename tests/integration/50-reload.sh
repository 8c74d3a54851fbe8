#!/usr/bin/env bash
# Goal: CONTRACT 9 reload.  Certificates rotated by rename and ten SIGHUPs under load fail no
# request and new handshakes present the new certificate; a changed file alone reloads; a bad
# YAML, a mismatched key and a key readable by others each fail the reload (log + /metrics)
# while the old config keeps serving; a group-readable key and an expired certificate reload
# with their finding logged (warn, error); listeners added/removed by a reload open/close while
# a kept listener never refuses a connection.
# valgrind: yes
# timeout: 240
#
# (a) A bounded client keeps making requests through an inbound listener (mTLS, new and
# kept-alive connections) and through an outbound listener whose peer is that inbound listener
# while the node certificate is rotated four times by atomic rename (write a tmp file, then mv,
# as cert-manager/certbot do) and SIGHUP is sent ten times: no request fails, connections
# opened before the rotation keep working, and new handshakes present the new certificate
# (sha256 fingerprint seen by openssl s_client before and after).
# (b) A rotated file alone (no SIGHUP) triggers event=reloaded trigger="file change".
# (c) Bad YAML and a schema error (SIGHUP), a deleted CA file, the CA swapped for a FIFO by a
# symlink swap, a key that does not match the certificate, a key readable by others (by file
# change) each log event=reload_failed, every config error and file problem as the
# event=finding `ferry check` computes (config-invalid, file-missing, file-unreadable; /livez
# and /metrics keep answering: nothing opens the FIFO);
# requests still get 200 with the old certificate and ferry_reloads_total{result="failed"}
# moves by exactly one.  A key readable by its group reloads with one warn event=finding
# key-group-readable; an expired certificate reloads (a renewal must not need a restart, nor
# an expiry a crash loop) with one error event=finding cert-expired.
# (d) Ten reloads alternately add and remove a listener: its port starts/stops accepting, and
# a kept listener (with a client looping on fresh connections) never refuses or fails one.
source "$(dirname "$0")/lib.sh"

P=$T/pki
LIVE=$T/live
mkdir -p "$LIVE"
out=$(ferry_cmd certs init-ca --dir "$P/ca" --name "Ferry Reload Test CA" 2>&1) ||
    fail "ferry certs init-ca: $out"
issue() { # issue DIR: a node1.test certificate from the same CA into DIR
    local o
    o=$(ferry_cmd certs issue --ca "$P/ca" --name node1.test --dns localhost --ip 127.0.0.1 \
        --days 2 --out "$1" 2>&1) || fail "ferry certs issue into $1: $o"
}
# install SRC DST: atomic replacement by rename, as cert-manager and certbot do it
install_file() {
    cp "$1" "$2.tmp.$$"
    chmod 600 "$2.tmp.$$"
    mv -f "$2.tmp.$$" "$2"
}
issue "$P/gen0"
install_file "$P/gen0/node1.test.crt" "$LIVE/node.crt"
install_file "$P/gen0/node1.test.key" "$LIVE/node.key"
install_file "$P/ca/ca.crt" "$LIVE/ca.crt"

fp_file() { openssl x509 -in "$1" -noout -fingerprint -sha256 | cut -d= -f2; }
# fp_port PORT: the fingerprint of the certificate a new handshake on PORT presents
fp_port() {
    timeout 10 openssl s_client -connect "127.0.0.1:$1" -servername node1.test \
        -cert "$P/gen0/node1.test.crt" -key "$P/gen0/node1.test.key" -CAfile "$P/ca/ca.crt" \
        </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256 2>/dev/null | cut -d= -f2
}

PBE=$(free_port)
PIN=$(free_port)
POUT=$(free_port)
PADM=$(free_port)
http_backend "$PBE" backend

write_main() { # write_main FILE
    cat >"$1" <<EOF
tls: {cert: $LIVE/node.crt, key: $LIVE/node.key, ca: $LIVE/ca.crt}
admin: {listen: "127.0.0.1:$PADM"}
limits: {idle_timeout: 120s, drain_timeout: 5s}
listeners:
  - {name: in, mode: inbound, listen: "127.0.0.1:$PIN", backend: "127.0.0.1:$PBE", protocol: http}
  - {name: out, mode: outbound, listen: "127.0.0.1:$POUT", peer: "node1.test:$PIN", connect: "127.0.0.1:$PIN", protocol: http}
EOF
}
write_main "$T/main.yaml"
ferry_start main "$T/main.yaml"
MPID=$(ferry_pid main)

reloads() { # reloads ok|failed: the ferry_reloads_total counter of main
    curl -sf --max-time 10 "http://127.0.0.1:$PADM/metrics" |
        awk -v r="$1" '$1 == "ferry_reloads_total{result=\"" r "\"}" { print $2 }'
}
# one_request: a fresh mTLS request to the inbound listener and one through the outbound one
one_request() {
    local c1 c2
    c1=$(curl_code --cacert "$P/ca/ca.crt" --cert "$P/gen0/node1.test.crt" \
        --key "$P/gen0/node1.test.key" --resolve "node1.test:$PIN:127.0.0.1" \
        "https://node1.test:$PIN/check")
    c2=$(curl_code "http://127.0.0.1:$POUT/check")
    echo "$c1 $c2"
}

# ---- (a) rotation and ten SIGHUPs under load ----
cat >"$T/load.py" <<'PY'
"""load.py: requests through ferry until STOPFILE exists (at least MIN, at most MAX).

Per round: a fresh mTLS connection to the inbound listener (Connection: close), a fresh plain
connection to the outbound listener, and one request on each of two connections kept alive
from the start (one inbound, one outbound).  Every answer must be 200 from the backend.
Prints a JSON summary; exit 1 when any request failed.
"""
import hashlib, http.client, json, os, socket, ssl, sys, time

pin, pout, ca, cert, key, stop, lo, hi = sys.argv[1:9]
pin, pout, lo, hi = int(pin), int(pout), int(lo), int(hi)
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)


class TLSConn(http.client.HTTPSConnection):
    def connect(self):
        s = socket.create_connection(("127.0.0.1", pin), timeout=15)
        self.sock = ctx.wrap_socket(s, server_hostname="node1.test")
        self.fp = hashlib.sha256(self.sock.getpeercert(binary_form=True)).hexdigest()


def new_in():
    return TLSConn("node1.test", pin, context=ctx, timeout=15)


def new_out():
    return http.client.HTTPConnection("127.0.0.1", pout, timeout=15)


res = {"total": 0, "failed": 0, "errors": [], "fingerprints": [], "by_kind": {}}


def req(kind, conn, close):
    res["total"] += 1
    res["by_kind"][kind] = res["by_kind"].get(kind, 0) + 1
    try:
        hdrs = {"Connection": "close"} if close else {}
        conn.request("GET", "/load/%s/%d" % (kind, res["total"]), headers=hdrs)
        r = conn.getresponse()
        body = r.read()
        if r.status != 200 or b'"backend": "backend"' not in body:
            raise RuntimeError("status %d body %r" % (r.status, body[:120]))
        if kind == "in-new":
            fp = conn.fp
            if not res["fingerprints"] or res["fingerprints"][-1] != fp:
                res["fingerprints"].append(fp)
    except Exception as e:  # noqa: BLE001
        res["failed"] += 1
        res["errors"].append("%s #%d at %.3f: %r" % (kind, res["total"], time.time(), e))
    finally:
        if close:
            conn.close()


kin, kout = new_in(), new_out()
t0 = time.time()
n = 0
while n < hi and (n < lo or not os.path.exists(stop)):
    req("in-new", new_in(), True)
    req("out-new", new_out(), True)
    req("in-kept", kin, False)
    req("out-kept", kout, False)
    n += 4
    time.sleep(0.01)
res["elapsed"] = round(time.time() - t0, 2)
res["errors"] = res["errors"][:20]
print(json.dumps(res))
sys.exit(1 if res["failed"] else 0)
PY

FP0=$(fp_file "$LIVE/node.crt")
[ "$(fp_port "$PIN")" = "$FP0" ] || fail "before rotation the inbound listener does not present gen0"
[ "$(one_request)" = "200 200" ] || fail "requests before rotation: $(one_request)"
hup0=$(log_count main 'event=reloaded trigger=SIGHUP')
ok0=$(reloads ok)

python3 "$T/load.py" "$PIN" "$POUT" "$P/ca/ca.crt" "$P/gen0/node1.test.crt" \
    "$P/gen0/node1.test.key" "$T/load.stop" 300 4000 >"$T/load.json" 2>"$T/load.log" &
LOAD_PID=$!
bg_register "$LOAD_PID" load
sleep 0.5
for i in $(seq 1 10); do
    if [ $((i % 3)) = 1 ]; then # rotations before SIGHUP 1, 4, 7 (and 10)
        g=$(((i + 2) / 3))
        issue "$P/gen$g"
        install_file "$P/gen$g/node1.test.key" "$LIVE/node.key"
        install_file "$P/gen$g/node1.test.crt" "$LIVE/node.crt"
    fi
    kill -HUP "$MPID"
    end=$((SECONDS + 10 * (VG * 3 + 1)))
    while [ "$(log_count main 'event=(reloaded|reload_failed) trigger=SIGHUP')" -lt $((hup0 + i)) ]; do
        [ "$SECONDS" -ge "$end" ] && fail "SIGHUP $i was not answered by a reload"
        sleep 0.05
    done
    sleep 0.3
done
touch "$T/load.stop"
rc=0
wait "$LOAD_PID" || rc=$?
summary=$(cat "$T/load.json")
note "load: $summary"
[ "$rc" = 0 ] || fail "requests failed during rotation and reloads: $summary"
total=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["total"])' "$T/load.json")
[ "$total" -ge 300 ] || fail "load client made only $total requests"
nfp=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["fingerprints"]))' "$T/load.json")
[ "$nfp" -ge 2 ] || fail "the load client's new handshakes never saw a rotated certificate"
pass "$total requests (new and kept-alive, inbound and outbound) during 4 rotations and 10 SIGHUPs, none failed; $nfp certificates seen"

hups=$(($(log_count main 'event=reloaded trigger=SIGHUP') - hup0))
[ "$hups" -ge 9 ] || fail "only $hups of 10 SIGHUPs reloaded successfully"
[ "$(($(reloads ok) - ok0))" -ge "$hups" ] || fail "ferry_reloads_total{result=\"ok\"} did not count the reloads"
FP1=$(fp_file "$LIVE/node.crt")
[ "$FP1" != "$FP0" ] || fail "rotation did not change the certificate"
got=$(fp_port "$PIN")
[ "$got" = "$FP1" ] || fail "after rotation the inbound listener presents $got, expected the new $FP1 (old $FP0)"
[ "$(one_request)" = "200 200" ] || fail "requests after rotation: $(one_request)"
pass "after rotation new handshakes present the new certificate ($FP0 -> $FP1)"

# ---- (b) a watched file changed, no signal ----
fc0=$(log_count main 'event=reloaded trigger="file change"')
issue "$P/gen-watch"
install_file "$P/gen-watch/node1.test.key" "$LIVE/node.key"
install_file "$P/gen-watch/node1.test.crt" "$LIVE/node.crt"
end=$((SECONDS + 10 * (VG * 3 + 1)))
FPW=$(fp_file "$LIVE/node.crt")
while [ "$(fp_port "$PIN")" != "$FPW" ]; do
    [ "$SECONDS" -ge "$end" ] && fail "a rotated certificate file was not picked up without SIGHUP"
    sleep 0.3
done
[ "$(log_count main 'event=reloaded trigger="file change"')" -gt "$fc0" ] ||
    fail "no event=reloaded trigger=\"file change\" after the rotation"
expect_log main 'event=file_changed file=[^ ]*live/node\.(crt|key)'
[ "$(one_request)" = "200 200" ] || fail "requests after the file-change reload: $(one_request)"
pass "a rotated certificate alone triggers event=reloaded trigger=\"file change\""
FP1=$FPW

# ---- (c) broken reloads keep the old configuration ----
# broken CASE TRIGGER PATTERN: wait for one more reload_failed; old config still serves
broken() {
    local what=$1 pat=$2 f0=$3 end
    end=$((SECONDS + 10 * (VG * 3 + 1)))
    while [ "$(log_count main 'event=reload_failed')" -le "$f0" ]; do
        [ "$SECONDS" -ge "$end" ] && fail "$what: no event=reload_failed"
        sleep 0.1
    done
    sleep 2.5 # a poll of the watched files in between must not reload anything else
    expect_log main "event=reload_failed .*$pat"
    [ "$(log_count main 'event=reload_failed')" = $((f0 + 1)) ] ||
        fail "$what: expected exactly one more reload_failed, got $(($(log_count main 'event=reload_failed') - f0))"
    expect_log main 'event=reload_kept'
    [ "$(one_request)" = "200 200" ] || fail "$what: requests after the failed reload: $(one_request)"
    [ "$(fp_port "$PIN")" = "$FP1" ] || fail "$what: the old certificate is no longer presented"
    [ "$(reloads failed)" = $((f0 + 1)) ] ||
        fail "$what: ferry_reloads_total{result=\"failed\"} is $(reloads failed), expected $((f0 + 1))"
    ferry_alive main || fail "$what: ferry exited"
    pass "$what: event=reload_failed, old config serves, reloads_total{failed} = $((f0 + 1))"
}
wait_reloaded() { # wait_reloaded COUNT_BEFORE: one more event=reloaded
    local end=$((SECONDS + 10 * (VG * 3 + 1)))
    while [ "$(log_count main 'event=reloaded')" -le "$1" ]; do
        [ "$SECONDS" -ge "$end" ] && fail "no event=reloaded after restoring the good files"
        sleep 0.1
    done
}

fail0=$(log_count main 'event=reload_failed')
[ "$(reloads failed)" = "$fail0" ] || fail "reloads_total{failed} $(reloads failed) != log count $fail0"

# bad YAML, by SIGHUP
cp "$T/main.yaml" "$T/main.good.yaml"
printf 'listeners:\n  - {name: in, mode: inbound\n   listen: [oops\n' >"$T/main.yaml"
kill -HUP "$MPID"
broken "bad YAML" 'trigger=SIGHUP' "$fail0"
# every config error is logged as the finding `ferry check` computes for it
expect_log main "error event=finding id=config-invalid file=$T/main\.yaml:[0-9]+:[0-9]+ msg=.* fix="
restore_config() { # the good main.yaml back, by SIGHUP: one more event=reloaded
    local r0
    r0=$(log_count main 'event=reloaded')
    cp "$T/main.good.yaml" "$T/main.yaml"
    kill -HUP "$MPID"
    wait_reloaded "$r0"
}
restore_config

# a schema error (admin.probe_interval out of range), by SIGHUP: config-invalid at its line
sed 's/^admin: {listen: \("[^"]*"\)}/admin: {listen: \1, probe_interval: 50ms}/' "$T/main.good.yaml" >"$T/main.yaml"
grep -q 'probe_interval: 50ms' "$T/main.yaml" || fail "could not write the schema error"
f=$(log_count main 'event=reload_failed')
kill -HUP "$MPID"
broken "admin.probe_interval: 50ms" 'trigger=SIGHUP.*error finding' "$f"
expect_log main "error event=finding id=config-invalid file=$T/main\.yaml:2:[0-9]+ msg=.*probe_interval"
restore_config

# the CA file deleted, by file change: file-missing against it
cp "$LIVE/ca.crt" "$T/good-ca.crt"
f=$(log_count main 'event=reload_failed')
rm -f "$LIVE/ca.crt"
broken "deleted CA file" 'trigger="file change".*error finding' "$f"
expect_log main "error event=finding id=file-missing file=$LIVE/ca\.crt msg=.* fix="
r0=$(log_count main 'event=reloaded')
install_file "$T/good-ca.crt" "$LIVE/ca.crt"
wait_reloaded "$r0"

# the CA swapped for a FIFO by an atomic symlink swap (a Kubernetes ..data update): the
# watcher only stat()s, the reload refuses the FIFO from its metadata and never opens it, and
# the admin, which re-reads the CA for /readyz and /metrics, opens it non-blocking and refuses
# it too, so the control thread keeps answering (broken() reads /metrics)
cp "$LIVE/ca.crt" "$T/good-ca.crt"
mkfifo "$T/ca.fifo"
f=$(log_count main 'event=reload_failed')
ln -sfn "$T/ca.fifo" "$LIVE/ca.crt.lnk"
mv -T "$LIVE/ca.crt.lnk" "$LIVE/ca.crt"
broken "CA swapped for a FIFO" 'trigger="file change".*error finding' "$f"
expect_log main "error event=finding id=file-unreadable file=$LIVE/ca\.crt msg=.*not a regular file \(a FIFO\)"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$PADM/livez") || true
[ "$code" = 200 ] || fail "/livez answers $code after the FIFO swap, expected 200"
code=$(curl -s -o "$T/readyz.json" -w '%{http_code}' --max-time 5 "http://127.0.0.1:$PADM/readyz") || true
[ "$code" = 503 ] && grep -q "ca.crt" "$T/readyz.json" ||
    fail "/readyz answers $code after the CA became a FIFO, expected 503 naming it: $(cat "$T/readyz.json")"
# SIGHUP with the FIFO still in place: handled (one more reload_failed), not lost in an open
f=$(log_count main 'event=reload_failed')
kill -HUP "$MPID"
broken "SIGHUP with the CA a FIFO" 'trigger=SIGHUP.*error finding' "$f"
r0=$(log_count main 'event=reloaded')
install_file "$T/good-ca.crt" "$LIVE/ca.crt"
wait_reloaded "$r0"
pass "a FIFO swapped in for the CA: reload_failed with file-unreadable, /livez, /readyz and /metrics answer"

# a key that does not match the certificate, by file change
cp "$LIVE/node.key" "$T/good.key"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/other.key" 2>/dev/null
f=$(log_count main 'event=reload_failed')
install_file "$T/other.key" "$LIVE/node.key"
broken "mismatched key" 'trigger="file change"' "$f"
r0=$(log_count main 'event=reloaded')
install_file "$T/good.key" "$LIVE/node.key"
wait_reloaded "$r0"

# install_mode SRC DST MODE: install_file with another mode
install_mode() {
    cp "$1" "$2.tmp.$$"
    chmod "$3" "$2.tmp.$$"
    mv -f "$2.tmp.$$" "$2"
}

# a key readable by others (the same key), by file change: check's error stops the reload
f=$(log_count main 'event=reload_failed')
install_mode "$T/good.key" "$LIVE/node.key" 644
broken "key readable by others" 'trigger="file change".*error finding' "$f"
expect_log main "error event=finding id=key-permissions file=$LIVE/node.key "
r0=$(log_count main 'event=reloaded')

# readable by its group: a warning, logged once by the reload that applies it
w0=$(log_count main 'event=finding id=key-group-readable')
install_mode "$T/good.key" "$LIVE/node.key" 640
wait_reloaded "$r0"
expect_log main "warn event=finding id=key-group-readable file=$LIVE/node.key "
[ "$(log_count main 'event=finding id=key-group-readable')" = $((w0 + 1)) ] ||
    fail "key-group-readable: not logged exactly once by the reload"
[ "$(one_request)" = "200 200" ] || fail "requests after the group-readable key: $(one_request)"
r0=$(log_count main 'event=reloaded')
install_file "$T/good.key" "$LIVE/node.key"
wait_reloaded "$r0"
pass "key readable by its group: reloaded, one warn event=finding key-group-readable"

# an expired certificate for the same key, signed by the same CA, by file change: reloaded
# (the clock exception), its finding logged at error
ca_sign_dated "$P/ca" "$T/good.key" node1.test "DNS:node1.test,DNS:localhost,IP:127.0.0.1" \
    20200101000000Z 20200201000000Z "$T/expired.crt"
cp "$LIVE/node.crt" "$T/good.crt"
f=$(log_count main 'event=reload_failed')
r0=$(log_count main 'event=reloaded')
install_file "$T/expired.crt" "$LIVE/node.crt"
wait_reloaded "$r0"
expect_log main "error event=finding id=cert-expired file=$LIVE/node.crt "
[ "$(log_count main 'event=reload_failed')" = "$f" ] || fail "the expired certificate failed the reload"
[ "$(fp_port "$PIN")" = "$(fp_file "$T/expired.crt")" ] || fail "the expired certificate is not presented"
r0=$(log_count main 'event=reloaded')
install_file "$T/good.crt" "$LIVE/node.crt"
wait_reloaded "$r0"
[ "$(one_request)" = "200 200" ] || fail "requests after restoring the good files: $(one_request)"
pass "expired certificate: reloaded with an error event=finding cert-expired; renewal reloads"

# ---- (d) listeners added and removed; a kept listener never refuses ----
PK=$(free_port)
PB=$(free_port)
PC=$(free_port)
write_lst() { # write_lst FILE EXTRA_NAME EXTRA_PORT
    cat >"$1" <<EOF
tls: {cert: $LIVE/node.crt, key: $LIVE/node.key, ca: $LIVE/ca.crt}
listeners:
  - {name: keep, mode: outbound, listen: "127.0.0.1:$PK", peer: "node1.test:$PIN", connect: "127.0.0.1:$PIN", protocol: http}
  - {name: $2, mode: inbound, listen: "127.0.0.1:$3", backend: "127.0.0.1:$PBE", protocol: http}
EOF
}
write_lst "$T/lst.yaml" extra-b "$PB"
ferry_start lst "$T/lst.yaml"
LPID=$(ferry_pid lst)
wait_port "$PB"
_port_open "$PC" && fail "port $PC accepts before its listener exists"

cat >"$T/keep.py" <<'PY'
"""keep.py PORT STOPFILE MIN MAX: fresh connections + one request each until STOPFILE exists."""
import http.client, json, os, sys, time
port, stop, lo, hi = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
res = {"total": 0, "refused": 0, "failed": 0, "errors": []}
while res["total"] < hi and (res["total"] < lo or not os.path.exists(stop)):
    res["total"] += 1
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        c.request("GET", "/keep/%d" % res["total"], headers={"Connection": "close"})
        r = c.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError("status %d" % r.status)
    except ConnectionRefusedError as e:
        res["refused"] += 1
        res["errors"].append("#%d: %r" % (res["total"], e))
    except Exception as e:  # noqa: BLE001
        res["failed"] += 1
        res["errors"].append("#%d: %r" % (res["total"], e))
    finally:
        c.close()
    time.sleep(0.005)
res["errors"] = res["errors"][:20]
print(json.dumps(res))
sys.exit(1 if res["refused"] or res["failed"] else 0)
PY
python3 "$T/keep.py" "$PK" "$T/keep.stop" 100 4000 >"$T/keep.json" 2>"$T/keep.log" &
KEEP_PID=$!
bg_register "$KEEP_PID" keep
for i in $(seq 1 10); do
    r0=$(log_count lst 'event=reloaded')
    if [ $((i % 2)) = 1 ]; then
        write_lst "$T/lst.yaml" extra-c "$PC"
        on=$PC off=$PB
    else
        write_lst "$T/lst.yaml" extra-b "$PB"
        on=$PB off=$PC
    fi
    kill -HUP "$LPID"
    end=$((SECONDS + 10 * (VG * 3 + 1)))
    while [ "$(log_count lst 'event=reloaded')" -le "$r0" ]; do
        [ "$SECONDS" -ge "$end" ] && fail "lst: reload $i did not happen"
        sleep 0.05
    done
    wait_port "$on" 5
    wait_port_closed "$off" 5
    c=$(curl_code --cacert "$P/ca/ca.crt" --cert "$P/gen0/node1.test.crt" \
        --key "$P/gen0/node1.test.key" --resolve "node1.test:$on:127.0.0.1" "https://node1.test:$on/x")
    [ "$c" = 200 ] || fail "reload $i: the added listener on $on answers $c"
done
expect_no_log lst 'event=reload_failed'
touch "$T/keep.stop"
rc=0
wait "$KEEP_PID" || rc=$?
summary=$(cat "$T/keep.json")
note "kept listener: $summary"
[ "$rc" = 0 ] || fail "the kept listener refused or failed connections during reloads: $summary"
pass "10 reloads adding/removing a listener: it opens and closes each time; the kept listener never refused ($summary)"

ferry_stop lst
ferry_stop main
