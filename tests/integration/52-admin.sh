#!/usr/bin/env bash
# Goal: CONTRACT 9 admin listener: /healthz 200 with its JSON summary, 503 once a certificate
# of the config expires; /metrics in Prometheus text whose counters move exactly as expected
# for accepted, rejected (unknown_ca) and failed (backend/peer down) connections, with the
# certificate expiry per file; only GET/HEAD, and every other request gets a JSON error (404,
# 405 with Allow, 400, 414, 431, 505).  The names follow Prometheus's conventions: `promtool
# check metrics` (package prometheus) passes, and a checker of our own enforces HELP/TYPE per
# family, _total on counters only, unit suffixes, no duplicate series, label escaping.  New
# families (issue 13): ferry_request_duration_seconds moves with a request (class 2xx) and
# with ferry's own 502 (5xx), ferry_build_info, process_*, ferry_config_last_reload_*,
# ferry_backend_up / ferry_peer_up on the listeners they apply to, pool series on http
# listeners (either mode), every handshake-failure reason present from zero.
# timeout: 180
#
# The expiring certificate is a leaf made with `openssl ca -enddate` to expire ~60 s after the
# start (the test waits for it, bounded).  /metrics: every family has # HELP and # TYPE and
# every sample parses; an mTLS request moves connections_total, handshakes ok, requests 2xx,
# bytes_total and the latency histogram; a client certificate from another CA moves
# handshakes_total{outcome="rejected",reason="unknown_ca"} only; a backend or peer that is down
# gives 502 and moves upstream_connect_failures_total and requests_total{class="5xx"};
# ferry_certificate_expiry_timestamp_seconds{file=...} equals openssl's notAfter of each file.
source "$(dirname "$0")/lib.sh"

P=$T/pki
for c in ca other; do
    out=$(ferry_cmd certs init-ca --dir "$P/$c" --name "Ferry Admin Test $c" 2>&1) || fail "init-ca $c: $out"
done
out=$(ferry_cmd certs issue --ca "$P/ca" --name node1.test --ip 127.0.0.1 --out "$P/n" 2>&1) ||
    fail "issue node1.test: $out"
out=$(ferry_cmd certs issue --ca "$P/other" --name node1.test --ip 127.0.0.1 --out "$P/o" 2>&1) ||
    fail "issue from the other CA: $out"
CRT=$P/n/node1.test.crt KEY=$P/n/node1.test.key CA=$P/n/ca.crt

# ---- a leaf of the same CA that expires SHORT seconds from now (openssl ca -enddate) ----
SHORT=60
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$P/short.key" 2>/dev/null
chmod 600 "$P/short.key"
START=$(date -u -d '-1 hour' +%y%m%d%H%M%SZ)
END_EPOCH=$(($(date +%s) + SHORT))
END=$(date -u -d "@$END_EPOCH" +%y%m%d%H%M%SZ)
ca_sign_dated "$P/ca" "$P/short.key" short.test "DNS:short.test,IP:127.0.0.1" "$START" "$END" \
    "$P/short.crt"
not_after() { date -d "$(openssl x509 -enddate -noout -in "$1" | cut -d= -f2)" +%s; }
[ "$(not_after "$P/short.crt")" = "$END_EPOCH" ] || fail "short.crt notAfter is not $END"

# ---- ferry: a good inbound listener, one whose backend is down, an outbound listener whose
# peer is down, and one that serves the short-lived certificate ----
PBE=$(free_port)
http_backend "$PBE" backend
PIN=$(free_port) PDEAD=$(free_port) PNOBE=$(free_port) POUT=$(free_port) PNOPEER=$(free_port)
PSHORT=$(free_port) PADM=$(free_port)
cat >"$T/ferry.yaml" <<EOF
tls: {cert: $CRT, key: $KEY, ca: $CA}
admin: {listen: "127.0.0.1:$PADM"}
listeners:
  - {name: in, mode: inbound, listen: "127.0.0.1:$PIN", backend: "127.0.0.1:$PBE", protocol: http}
  - {name: dead, mode: inbound, listen: "127.0.0.1:$PDEAD", backend: "127.0.0.1:$PNOBE", protocol: http}
  - {name: out, mode: outbound, listen: "127.0.0.1:$POUT", peer: "node1.test:$PNOPEER", connect: "127.0.0.1:$PNOPEER", protocol: http}
  - name: short
    mode: inbound
    listen: "127.0.0.1:$PSHORT"
    backend: "127.0.0.1:$PBE"
    protocol: http
    tls: {cert: $P/short.crt, key: $P/short.key}
EOF
ferry_start f "$T/ferry.yaml"
A=http://127.0.0.1:$PADM

# ---- /healthz while everything is fine ----
code=$(curl_code "$A/healthz")
[ "$code" = 200 ] || fail "/healthz answered $code: $(cat "$T/curl.body")"
cp "$T/curl.body" "$T/health-ok.json"
python3 - "$T/health-ok.json" "$P/short.crt" "$END_EPOCH" <<'PY' || fail "/healthz JSON: $(cat "$T/health-ok.json")"
import json, sys
h = json.load(open(sys.argv[1]))
assert h["status"] == "ok", h["status"]
names = sorted(l["name"] for l in h["listeners"])
assert names == ["dead", "in", "out", "short"], names
assert all(l["up"] is True for l in h["listeners"]), h["listeners"]
files = {c["file"]: c for c in h["certificates"]}
assert sys.argv[2] in files, files.keys()
assert all(c["expired"] is False for c in h["certificates"]), h["certificates"]
assert files[sys.argv[2]]["not_after"] == int(sys.argv[3]), files[sys.argv[2]]
PY
pass "/healthz 200: status ok, 4 listeners up, no certificate expired"

# ---- /metrics format ----
metrics() { curl -sf --max-time 10 "$A/metrics" >"$T/metrics.txt" || fail "GET /metrics failed"; }
# m SAMPLE: the value of one exact sample line (name{labels}) in the last scrape; 0 if absent
m() { awk -v k="$1" '$1 == k { print $2; f = 1 } END { if (!f) print 0 }' "$T/metrics.txt"; }
metrics
python3 - "$T/metrics.txt" <<'PY' || fail "/metrics is not well-formed Prometheus text"
import re, sys
help_, type_, fams = {}, {}, set()
sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.e+-]+|\+Inf|NaN)$')
for ln in open(sys.argv[1]).read().splitlines():
    if ln.startswith("# HELP "):
        help_[ln.split()[2]] = ln
    elif ln.startswith("# TYPE "):
        _, _, name, t = ln.split(None, 3)
        assert t in ("counter", "gauge", "histogram", "summary", "untyped"), ln
        assert name not in fams, "TYPE after samples of " + name
        type_[name] = t
    elif ln.strip():
        mm = sample.match(ln)
        assert mm, "bad sample line: " + ln
        name = mm.group(1)
        fam = re.sub(r"_(bucket|sum|count)$", "", name) if re.sub(r"_(bucket|sum|count)$", "", name) in type_ and type_[re.sub(r"_(bucket|sum|count)$", "", name)] == "histogram" else name
        assert fam in type_, "no # TYPE for " + name
        assert fam in help_, "no # HELP for " + name
        fams.add(fam)
for want in ("ferry_connections_open", "ferry_connections_total", "ferry_handshakes_total",
             "ferry_bytes_total", "ferry_requests_total", "ferry_upstream_connect_failures_total",
             "ferry_handshake_duration_seconds", "ferry_certificate_expiry_timestamp_seconds",
             "ferry_reloads_total", "ferry_request_duration_seconds", "ferry_build_info",
             "ferry_backend_up", "ferry_peer_up", "ferry_config_last_reload_successful",
             "ferry_config_last_reload_success_timestamp_seconds", "process_open_fds",
             "process_max_fds", "process_resident_memory_bytes", "process_cpu_seconds_total",
             "process_start_time_seconds", "ferry_pool_reused_total", "ferry_pool_connects_total"):
    assert want in fams, "missing family " + want
assert type_["ferry_handshake_duration_seconds"] == "histogram"
assert type_["ferry_request_duration_seconds"] == "histogram"
assert type_["ferry_connections_open"] == "gauge"
assert type_["ferry_connections_total"] == "counter"
assert "ferry_certificate_not_after_seconds" not in fams, "the old name is still there"
print("families:", len(fams))
PY
pass "/metrics: every family has # HELP and # TYPE, every sample line parses"

# Prometheus naming rules, by promtool (Debian's prometheus package) and by our own checker.
if command -v promtool >/dev/null 2>&1; then
    out=$(promtool check metrics <"$T/metrics.txt" 2>&1) || fail "promtool check metrics: $out"
    pass "promtool check metrics: no problem found"
else
    note "promtool not installed (deploy/install-deps.sh --test installs it): own checker only"
fi
python3 - "$T/metrics.txt" <<'PY' || fail "/metrics breaks a Prometheus naming rule"
import re, sys
types, seen, fam_of = {}, set(), {}
lab = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')
for ln in open(sys.argv[1]).read().splitlines():
    if ln.startswith("# TYPE "):
        _, _, name, t = ln.split(None, 3)
        assert name not in types, "two # TYPE lines for " + name
        types[name] = t
        # counters end in _total, nothing else does; units are base units in the name
        assert (t == "counter") == name.endswith("_total"), "counter/_total mismatch: " + name
        assert not re.search(r"_(milliseconds|ms|microseconds|kilobytes|kb|percent)(_|$)", name), name
        assert re.match(r"^(ferry|process)_[a-z0-9_]+$", name), "namespace: " + name
        continue
    if not ln or ln.startswith("#"):
        continue
    series, value = ln.rsplit(" ", 1)
    assert series not in seen, "duplicate series " + series
    seen.add(series)
    name = series.split("{", 1)[0]
    if "{" in series:
        body = series[len(name) + 1:-1]
        pos, keys = 0, []
        while pos < len(body):
            mm = lab.match(body, pos)
            assert mm, "bad label escaping in " + series
            keys.append(mm.group(1))
            pos = mm.end()
        assert len(keys) == len(set(keys)), "repeated label in " + series
        if name.endswith("_bucket"):
            assert keys[-1] == "le", series
    float(value)
# durations and sizes carry their unit
for n, t in types.items():
    if "duration" in n or "time" in n:
        assert n.endswith("_seconds") or n.endswith("_seconds_total"), "time without _seconds: " + n
    if "memory" in n or n.startswith("ferry_bytes"):
        assert "_bytes" in n, "size without _bytes: " + n
print("series:", len(seen))
PY
pass "naming rules: _total on counters only, _seconds/_bytes units, no duplicate series, labels escaped"

# New families: where they apply, and from zero
grep -q '^ferry_build_info{version="[0-9][^"]*",openssl="3\.[^"]*",libevent="2\.[^"]*"} 1$' "$T/metrics.txt" ||
    fail "ferry_build_info: $(grep ferry_build_info "$T/metrics.txt")"
[ "$(m 'ferry_config_last_reload_successful')" = 1 ] || fail "ferry_config_last_reload_successful is not 1 at start"
ts=$(m 'ferry_config_last_reload_success_timestamp_seconds')
[ $(($(date +%s) - ts)) -lt 120 ] || fail "ferry_config_last_reload_success_timestamp_seconds = $ts"
st=$(m 'process_start_time_seconds')
python3 -c "import sys,time; s=float(sys.argv[1]); assert time.time()-120 < s <= time.time()+2, s" "$st" ||
    fail "process_start_time_seconds = $st"
fds=$(m process_open_fds) maxfds=$(m process_max_fds) rss=$(m process_resident_memory_bytes)
[ "$fds" -gt 5 ] && [ "$fds" -lt "$maxfds" ] || fail "process_open_fds $fds, process_max_fds $maxfds"
[ "$rss" -gt 1000000 ] || fail "process_resident_memory_bytes $rss"
for l in in dead short; do
    # protocol http, either mode: backend connections are pooled too (issue 14, inbound lending)
    grep -q "^ferry_pool_reused_total{listener=\"$l\"} " "$T/metrics.txt" || fail "no pool series on inbound http listener $l"
    grep -q "^ferry_peer_up{listener=\"$l\"}" "$T/metrics.txt" && fail "ferry_peer_up on inbound listener $l"
    for r in not_tls handshake_timeout handshake_failed; do
        grep -q "^ferry_handshakes_total{listener=\"$l\",outcome=\"failed\",reason=\"$r\"} 0$" "$T/metrics.txt" ||
            fail "ferry_handshakes_total{listener=\"$l\",outcome=\"failed\",reason=\"$r\"} is not there from zero"
    done
done
grep -q '^ferry_pool_reused_total{listener="out"} 0$' "$T/metrics.txt" || fail "no pool series on outbound listener out"
grep -q '^ferry_backend_up{listener="out"}' "$T/metrics.txt" && fail "ferry_backend_up on outbound listener out"
grep -q '^ferry_handshakes_total{listener="out",outcome="failed",reason="peer_handshake_failed"} 0$' "$T/metrics.txt" ||
    fail "peer_handshake_failed is not there from zero on outbound listener out"
[ "$(m 'ferry_peer_up{listener="out"}')" = 1 ] || fail "ferry_peer_up{out} before any traffic: $(m 'ferry_peer_up{listener="out"}')"
# rejection reasons only where the listener's mode can produce them
grep -q '^ferry_handshakes_total{listener="out",outcome="rejected",reason="\(no_cert\|name_not_allowed\)"}' "$T/metrics.txt" &&
    fail "outbound listener out exports an inbound-only rejection reason: $(grep 'listener="out",outcome="rejected"' "$T/metrics.txt")"
grep -q '^ferry_handshakes_total{listener="in",outcome="rejected",reason="name_mismatch"}' "$T/metrics.txt" &&
    fail "inbound listener in exports the outbound-only reason name_mismatch"
grep -q '^ferry_handshakes_total{listener="out",outcome="rejected",reason="name_mismatch"} 0$' "$T/metrics.txt" ||
    fail "name_mismatch is not there from zero on outbound listener out"
for r in no_cert name_not_allowed unknown_ca; do
    grep -q "^ferry_handshakes_total{listener=\"in\",outcome=\"rejected\",reason=\"$r\"} 0$" "$T/metrics.txt" ||
        fail "$r is not there from zero on inbound listener in"
done
[ "$(m 'ferry_request_duration_seconds_count{listener="in",class="2xx"}')" = 0 ] || fail "request histogram not from zero"
pass "build_info, reload, process_* sane; pool series on http listeners, peer series on outbound only; failure and rejection reasons from zero, each on the modes that can produce it"

# certificate expiry per file, as Unix time
for f in "$CRT" "$CA" "$P/short.crt"; do
    got=$(m "ferry_certificate_expiry_timestamp_seconds{file=\"$f\"}")
    want=$(not_after "$f")
    [ "$got" = "$want" ] || fail "ferry_certificate_expiry_timestamp_seconds{file=\"$f\"} = $got, openssl says $want"
done
pass "ferry_certificate_expiry_timestamp_seconds equals openssl's notAfter for node, CA and short-lived cert"

# ---- accepted: one mTLS request ----
L='listener="in"'
c0=$(m "ferry_connections_total{$L}") ok0=$(m "ferry_handshakes_total{$L,outcome=\"ok\",reason=\"none\"}")
r0=$(m "ferry_requests_total{$L,class=\"2xx\"}") bi0=$(m "ferry_bytes_total{$L,direction=\"in\"}")
bo0=$(m "ferry_bytes_total{$L,direction=\"out\"}") hc0=$(m "ferry_handshake_duration_seconds_count{$L}")
code=$(curl_code --cacert "$CA" --cert "$CRT" --key "$KEY" --resolve "node1.test:$PIN:127.0.0.1" \
    -X PUT --data-binary 'hello metrics' "https://node1.test:$PIN/db/doc")
[ "$code" = 200 ] || fail "mTLS request answered $code"
sleep 0.3
metrics
[ "$(m "ferry_connections_total{$L}")" = $((c0 + 1)) ] || fail "connections_total{in}: $c0 -> $(m "ferry_connections_total{$L}")"
[ "$(m "ferry_handshakes_total{$L,outcome=\"ok\",reason=\"none\"}")" = $((ok0 + 1)) ] || fail "handshakes ok did not move by 1"
[ "$(m "ferry_requests_total{$L,class=\"2xx\"}")" = $((r0 + 1)) ] || fail "requests 2xx did not move by 1"
[ "$(m "ferry_handshake_duration_seconds_count{$L}")" = $((hc0 + 1)) ] || fail "handshake histogram count did not move by 1"
[ "$(m "ferry_handshake_duration_seconds_bucket{$L,le=\"+Inf\"}")" = "$(m "ferry_handshake_duration_seconds_count{$L}")" ] ||
    fail "histogram +Inf bucket != count"
[ "$(m "ferry_request_duration_seconds_count{$L,class=\"2xx\"}")" = 1 ] ||
    fail "ferry_request_duration_seconds_count{in,2xx} = $(m "ferry_request_duration_seconds_count{$L,class=\"2xx\"}") after one request"
[ "$(m "ferry_request_duration_seconds_bucket{$L,class=\"2xx\",le=\"+Inf\"}")" = 1 ] || fail "request histogram +Inf bucket != 1"
[ "$(m "ferry_request_duration_seconds_bucket{$L,class=\"2xx\",le=\"60\"}")" = 1 ] || fail "request histogram le=60 bucket != 1"
python3 -c "import sys; assert 0 <= float(sys.argv[1]) < 10, sys.argv[1]" "$(m "ferry_request_duration_seconds_sum{$L,class=\"2xx\"}")" ||
    fail "ferry_request_duration_seconds_sum{in,2xx} = $(m "ferry_request_duration_seconds_sum{$L,class=\"2xx\"}")"
bi=$(m "ferry_bytes_total{$L,direction=\"in\"}") bo=$(m "ferry_bytes_total{$L,direction=\"out\"}")
# in: at least the request body and head; out: at least the backend's JSON answer
[ "$bi" -ge $((bi0 + 13 + 40)) ] || fail "bytes_total in: $bi0 -> $bi"
blen=$(stat -c %s "$T/curl.body")
[ "$bo" -ge $((bo0 + blen)) ] || fail "bytes_total out: $bo0 -> $bo (answer body $blen bytes)"
[ "$(m "ferry_connections_open{$L}")" = 0 ] || fail "connections_open{in} = $(m "ferry_connections_open{$L}") after the request ended"
pass "accepted: connections_total, handshakes ok, requests 2xx, histogram count +1; bytes in +$((bi - bi0)), out +$((bo - bo0))"

# ---- rejected: a client certificate from another CA ----
rj0=$(m "ferry_handshakes_total{$L,outcome=\"rejected\",reason=\"unknown_ca\"}")
ok0=$(m "ferry_handshakes_total{$L,outcome=\"ok\",reason=\"none\"}") r0=$(m "ferry_requests_total{$L,class=\"2xx\"}")
c0=$(m "ferry_connections_total{$L}")
code=$(curl_code --cacert "$CA" --cert "$P/o/node1.test.crt" --key "$P/o/node1.test.key" \
    --resolve "node1.test:$PIN:127.0.0.1" "https://node1.test:$PIN/")
[ "$code" = 000 ] || fail "a client certificate from another CA got HTTP $code"
sleep 0.3
metrics
[ "$(m "ferry_handshakes_total{$L,outcome=\"rejected\",reason=\"unknown_ca\"}")" = $((rj0 + 1)) ] ||
    fail "handshakes_total rejected/unknown_ca: $rj0 -> $(m "ferry_handshakes_total{$L,outcome=\"rejected\",reason=\"unknown_ca\"}")"
[ "$(m "ferry_handshakes_total{$L,outcome=\"ok\",reason=\"none\"}")" = "$ok0" ] || fail "a rejected handshake counted as ok"
[ "$(m "ferry_requests_total{$L,class=\"2xx\"}")" = "$r0" ] || fail "a rejected client counted a request"
[ "$(m "ferry_connections_total{$L}")" = $((c0 + 1)) ] || fail "the rejected connection was not counted in connections_total"
pass "rejected: handshakes_total{outcome=\"rejected\",reason=\"unknown_ca\"} +1, nothing else"

# ---- failed: backend down (inbound) and peer down (outbound) ----
D='listener="dead"' O='listener="out"'
uf0=$(m "ferry_upstream_connect_failures_total{$D}") e0=$(m "ferry_requests_total{$D,class=\"5xx\"}")
uo0=$(m "ferry_upstream_connect_failures_total{$O}") eo0=$(m "ferry_requests_total{$O,class=\"5xx\"}")
code=$(curl_code --cacert "$CA" --cert "$CRT" --key "$KEY" --resolve "node1.test:$PDEAD:127.0.0.1" \
    "https://node1.test:$PDEAD/")
[ "$code" = 502 ] || fail "inbound with its backend down answered $code (expected 502)"
code=$(curl_code "http://127.0.0.1:$POUT/")
[ "$code" = 502 ] || fail "outbound with its peer down answered $code (expected 502)"
sleep 0.3
metrics
[ "$(m "ferry_upstream_connect_failures_total{$D}")" = $((uf0 + 1)) ] || fail "upstream_connect_failures_total{dead} did not move by 1"
[ "$(m "ferry_upstream_connect_failures_total{$O}")" = $((uo0 + 1)) ] || fail "upstream_connect_failures_total{out} did not move by 1"
[ "$(m "ferry_requests_total{$D,class=\"2xx\"}")" = 0 ] || fail "dead listener counted a 2xx"
pass "failed: backend down and peer down -> 502, upstream_connect_failures_total +1"
# The 502 answers are responses of class 5xx: checked here, reported at the end (so that the
# expiry part below still runs when they are missing).
LATE_FAIL=()
[ "$(m "ferry_requests_total{$D,class=\"5xx\"}")" = $((e0 + 1)) ] ||
    LATE_FAIL+=("ferry_requests_total{listener=\"dead\",class=\"5xx\"} $e0 -> $(m "ferry_requests_total{$D,class=\"5xx\"}") after a 502 for an unreachable backend (expected +1)")
[ "$(m "ferry_requests_total{$O,class=\"5xx\"}")" = $((eo0 + 1)) ] ||
    LATE_FAIL+=("ferry_requests_total{listener=\"out\",class=\"5xx\"} $eo0 -> $(m "ferry_requests_total{$O,class=\"5xx\"}") after a 502 for an unreachable peer (expected +1)")
[ "${#LATE_FAIL[@]}" = 0 ] && pass "failed: the 502 answers count in ferry_requests_total{class=\"5xx\"}"
# ferry's own 502 is observed where its access-log line is written (proxy_exchange.c
# access_log()): each event=request line of the 502 must be counted (checked the late way).
if grep -q 'event=request listener=out .*status=502' "$T/f.log"; then
    [ "$(m "ferry_request_duration_seconds_count{$O,class=\"5xx\"}")" -ge 1 ] ||
        LATE_FAIL+=("ferry_request_duration_seconds_count{listener=\"out\",class=\"5xx\"} = $(m "ferry_request_duration_seconds_count{$O,class=\"5xx\"}") after an outbound 502 (expected >= 1)")
else
    note "no event=request line for the outbound 502 (yet): ferry_request_duration_seconds 5xx not checked"
fi

# ---- methods and paths: every refusal is a JSON error ----
# json_err CODE ERROR: the last curl.body is {"error":ERROR,"reason":"..."} (non-empty reason)
json_err() {
    python3 -c "import json, sys
j = json.load(open(sys.argv[1]))
assert j['error'] == sys.argv[2] and len(j['reason']) > 10, j" "$T/curl.body" "$2" ||
        fail "$1: not the JSON error $2: $(head -c 300 "$T/curl.body")"
}
for meth in POST PUT DELETE PATCH OPTIONS PROPFIND; do
    for u in /metrics /healthz /readyz /livez; do
        code=$(curl_code -X "$meth" -D "$T/hdr.txt" "$A$u")
        [ "$code" = 405 ] || fail "$meth $u answered $code (expected 405)"
        json_err "$meth $u" method_not_allowed
        grep -qi '^Allow: GET, HEAD' "$T/hdr.txt" || fail "$meth $u: no Allow header"
        grep -qi '^Content-Type: application/json' "$T/hdr.txt" || fail "$meth $u: not application/json"
    done
done
code=$(curl_code -X POST --data-binary @"$FERRY_BIN" "$A/metrics")
[ "$code" = 405 ] || fail "POST with a 1 MB body answered $code (expected 405, not a reset)"
json_err "POST with a body" method_not_allowed
code=$(curl_code -I "$A/metrics")
[ "$code" = 200 ] || fail "HEAD /metrics answered $code"
python3 "$SUPPORT/http_raw.py" --connect "127.0.0.1:$PADM" --plain --timeout 5 --head-count 1 \
    --send 'HEAD /readyz HTTP/1.1\r\nHost: x\r\n\r\n' >"$T/head.json" || fail "HEAD /readyz: no answer"
python3 -c "import json, sys
d = json.load(open(sys.argv[1]))
r = d['responses'][0]
h = dict((k.lower(), v) for k, v in r['headers'])
assert len(d['responses']) == 1 and r['body_len'] == 0 and d['trailing'] == '', d
assert int(h['content-length']) > 50 and h['content-type'] == 'application/json', h" "$T/head.json" ||
    fail "HEAD /readyz: $(cat "$T/head.json")"
for u in /nope / /metrics/x /healthzz /livez/ "/$(printf 'a%.0s' $(seq 1 200))"; do
    code=$(curl_code "$A$u")
    [ "$code" = 404 ] || fail "GET $u answered $code (expected 404)"
    json_err "GET $u" not_found
done
code=$(curl_code -I "$A/nope")
[ "$code" = 404 ] || fail "HEAD /nope answered $code"
code=$(curl_code "$A/$(printf 'a%.0s' $(seq 1 400))")
[ "$code" = 414 ] || fail "GET of a 400-byte path answered $code (expected 414)"
json_err "long path" uri_too_long
code=$(curl_code "$A/metrics?x=1")
[ "$code" = 200 ] || fail "GET /metrics?x=1 answered $code"
code=$(curl_code "$A/readyz?exclude=nonsense")
[ "$code" = 400 ] || fail "GET /readyz?exclude=nonsense answered $code (expected 400)"
json_err "readyz exclude=nonsense" bad_request
# raw request lines curl will not send
raw() { python3 "$SUPPORT/http_raw.py" --connect "127.0.0.1:$PADM" --plain --timeout 5 --send "$1" |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["responses"][0]; print(r["status"], json.loads(r["body"])["error"])'; }
for case in 'GET /livez HTTP/2.0\r\n\r\n|505 http_version_not_supported' \
    'GET http://127.0.0.1/livez HTTP/1.1\r\n\r\n|400 bad_request' \
    'GET /li\x01vez HTTP/1.1\r\n\r\n|400 bad_request' \
    'GET /li vez HTTP/1.1\r\n\r\n|400 bad_request' \
    'NOT-HTTP\r\n\r\n|400 bad_request' \
    'GET /livez HTTP/1.1\r\nX: '"$(printf 'b%.0s' $(seq 1 9000))"'\r\n\r\n|431 header_too_large'; do
    got=$(raw "${case%%|*}") || fail "raw request ${case:0:40}: no parsable JSON answer"
    [ "$got" = "${case##*|}" ] || fail "raw request ${case:0:40}...: got '$got', want '${case##*|}'"
done
pass "405 + Allow for POST/PUT/DELETE/PATCH/OPTIONS/PROPFIND (with a 1 MB body too), HEAD 200, 404/414/400/431/505 all JSON"

# A request line without a version (HTTP/0.9 style) is complete and malformed: 400 at once,
# not a wait for a head that will not come.
t0=$(date +%s%3N)
got=$(raw 'GET /livez\r\n') || fail "GET /livez without a version: no parsable JSON answer"
ms=$(($(date +%s%3N) - t0))
[ "$got" = "400 bad_request" ] || fail "GET /livez without a version: got '$got', want '400 bad_request'"
[ "$ms" -lt 1500 ] || fail "GET /livez without a version answered after ${ms}ms (want at once)"
# /readyz takes exclude=peers|backends only: a typo in the name, or an empty value, is a 400
for q in 'exlude=peers|exlude' 'exclude=|empty value' 'exclude=peers&verbose=1|verbose' 'exclude=peers,|empty value'; do
    code=$(curl_code "$A/readyz?${q%%|*}")
    [ "$code" = 400 ] || fail "GET /readyz?${q%%|*} answered $code (expected 400)"
    json_err "readyz ?${q%%|*}" bad_request
    grep -q "${q##*|}" "$T/curl.body" || fail "GET /readyz?${q%%|*}: the reason does not name ${q##*|}: $(cat "$T/curl.body")"
done
pass "GET /livez without a version: 400 after ${ms}ms; /readyz?exlude=peers, ?exclude= and unknown parameters: 400 naming them"

# ---- idle connections cannot lock the probes out: 200 held open (64 is the cap), more opened
# while /livez is asked 8 times; each answer must be 200 within 1s.  Then a request head that
# never ends gets its 408 after 3s. ----
python3 - "$PADM" <<'PY' >"$T/flood.out" 2>&1 || fail "/livez under 200 idle connections: $(cat "$T/flood.out")"
import socket, sys, time
port = int(sys.argv[1])
idle = [socket.create_connection(("127.0.0.1", port), timeout=2) for _ in range(200)]
times = []
for i in range(8):
    for _ in range(20):  # the attacker keeps reconnecting
        idle.append(socket.create_connection(("127.0.0.1", port), timeout=2))
    t0 = time.monotonic()
    s = socket.create_connection(("127.0.0.1", port), timeout=1)
    s.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    except OSError as e:
        sys.exit("probe %d: %r after %r" % (i, e, data[:80]))
    s.close()
    ms = (time.monotonic() - t0) * 1000
    assert data.startswith(b"HTTP/1.1 200 "), "probe %d: %r" % (i, data[:200])
    assert ms < 1000, "probe %d took %dms" % (i, ms)
    times.append(int(ms))
    time.sleep(0.3)
for s in idle:
    s.close()
print("livez ms:", times)
# the request head that never ends
s = socket.create_connection(("127.0.0.1", port), timeout=6)
s.sendall(b"GET /livez HTTP/1.1\r\n")
t0 = time.monotonic()
data = s.recv(65536)
ms = (time.monotonic() - t0) * 1000
assert data.startswith(b"HTTP/1.1 408 ") and b"request_timeout" in data, data[:300]
assert 2500 < ms < 4500, "408 after %dms (want ~3000)" % ms
print("408 after %dms" % ms)
PY
expect_log f 'event=admin_evicted'
n=$(grep -c 'event=admin_evicted' "$T/f.log")
[ "$n" = 1 ] || fail "admin_evicted logged $n times (want once: rate-limited)"
pass "200+160 idle connections: /livez 200 every time ($(head -1 "$T/flood.out")), eviction logged once; an unfinished head: $(tail -1 "$T/flood.out")"

# ---- ferry g (while short.crt runs out): files that make every handshake fail make /readyz
# 503 naming them: a certificate not valid yet (ferry starts with it), a CRL past its
# nextUpdate, and a CA file deleted at runtime (read again on the next admin request). ----
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$P/future.key" 2>/dev/null
chmod 600 "$P/future.key"
ca_sign_dated "$P/ca" "$P/future.key" future.test "DNS:future.test,IP:127.0.0.1" \
    "$(date -u -d '+1 day' +%Y%m%d%H%M%SZ)" "$(date -u -d '+2 days' +%Y%m%d%H%M%SZ)" "$P/future.crt"
cnf=$(ls -td "$T"/cadb.*/ | head -1)ca.cnf
openssl ca -batch -config "$cnf" -gencrl -crl_lastupdate 20200101000000Z \
    -crl_nextupdate 20200201000000Z -out "$P/expired.crl" 2>/dev/null || fail "openssl ca -gencrl"
cp "$CA" "$P/gca.crt"
PG1=$(free_port) PG2=$(free_port) PG3=$(free_port) PGADM=$(free_port)
cat >"$T/g.yaml" <<EOF
tls: {cert: $CRT, key: $KEY, ca: $P/gca.crt}
admin: {listen: "127.0.0.1:$PGADM", probe_interval: 200ms}
listeners:
  - {name: g-ok, mode: inbound, listen: "127.0.0.1:$PG1", backend: "127.0.0.1:$PBE"}
  - {name: g-future, mode: inbound, listen: "127.0.0.1:$PG2", backend: "127.0.0.1:$PBE", tls: {cert: $P/future.crt, key: $P/future.key}}
  - {name: g-crl, mode: inbound, listen: "127.0.0.1:$PG3", backend: "127.0.0.1:$PBE", tls: {crl: $P/expired.crl}}
EOF
ferry_start g "$T/g.yaml"
G=http://127.0.0.1:$PGADM
sleep 0.5
code=$(curl_code "$G/readyz")
[ "$code" = 503 ] || fail "/readyz with a not-yet-valid certificate and an expired CRL answered $code: $(cat "$T/curl.body")"
python3 - "$T/curl.body" "$P/future.crt" "$P/expired.crl" <<'PY' || fail "/readyz: $(cat "$T/curl.body")"
import json, sys
j = json.load(open(sys.argv[1]))
rs = j["reasons"]
assert any(sys.argv[2] in r and "not valid yet" in r for r in rs), rs
assert any(sys.argv[3] in r and "nextUpdate" in r for r in rs), rs
assert all(l["backend_up"] for l in j["listeners"]), j["listeners"]
certs = {c["file"]: c for c in j["certificates"]}
assert certs[sys.argv[2]]["not_yet_valid"] is True and certs[sys.argv[2]]["expired"] is False, certs
assert [c["file"] for c in j["crls"]] == [sys.argv[3]] and j["crls"][0]["expired"] is True, j["crls"]
assert len(rs) == 2, rs
PY
pass "/readyz 503 naming the not-yet-valid certificate and the CRL past its nextUpdate"
scrape_g() { curl -sf --max-time 5 "$G/metrics" | awk -v k="ferry_certificate_expiry_timestamp_seconds{file=\"$P/gca.crt\"}" '$1 == k { print $2 }'; }
[ "$(scrape_g)" = "$(not_after "$CA")" ] || fail "expiry of gca.crt before its deletion: $(scrape_g)"
rm -f "$P/gca.crt"
sleep 1.2 # files are read again at most once a second
code=$(curl_code "$G/readyz")
[ "$code" = 503 ] || fail "/readyz with the CA file deleted answered $code"
python3 - "$T/curl.body" "$P/gca.crt" <<'PY' || fail "/readyz after deleting the CA file: $(cat "$T/curl.body")"
import json, sys
j = json.load(open(sys.argv[1]))
assert any(r.startswith("CA file " + sys.argv[2]) and "cannot be read" in r for r in j["reasons"]), j["reasons"]
c = [c for c in j["certificates"] if c["file"] == sys.argv[2]][0]
assert c["readable"] is False and c["not_after"] == 0, c
PY
[ "$(scrape_g)" = 0 ] || fail "ferry_certificate_expiry_timestamp_seconds of the deleted CA file: $(scrape_g) (want 0)"
cp "$CA" "$P/gca.crt"
sleep 1.2
code=$(curl_code "$G/readyz")
python3 - "$T/curl.body" "$P/gca.crt" <<'PY' || fail "/readyz after restoring the CA file: $(cat "$T/curl.body")"
import json, sys
j = json.load(open(sys.argv[1]))
assert not any(sys.argv[2] in r for r in j["reasons"]), j["reasons"]
PY
pass "CA file deleted at runtime: /readyz names it (cannot be read), its expiry metric 0; restored: gone from the reasons"
ferry_stop g

# ---- the short-lived certificate expires: /healthz turns 503 ----
left=$((END_EPOCH - $(date +%s)))
note "waiting ${left}s for short.crt to expire"
while :; do
    code=$(curl_code "$A/healthz")
    [ "$code" = 503 ] && break
    [ "$code" = 200 ] || fail "/healthz answered $code while waiting"
    [ "$(date +%s)" -le $((END_EPOCH + 10)) ] || fail "/healthz still 200 10s after short.crt expired"
    sleep 1
done
now=$(date +%s)
[ "$now" -ge "$END_EPOCH" ] || fail "/healthz turned 503 at $now, before short.crt expired at $END_EPOCH"
cp "$T/curl.body" "$T/health-expired.json"
python3 - "$T/health-expired.json" "$P/short.crt" <<'PY' || fail "/healthz JSON after expiry: $(cat "$T/health-expired.json")"
import json, sys
h = json.load(open(sys.argv[1]))
assert h["status"] != "ok", h["status"]
files = {c["file"]: c for c in h["certificates"]}
assert files[sys.argv[2]]["expired"] is True, files[sys.argv[2]]
others = [c for f, c in files.items() if f != sys.argv[2]]
assert others and all(c["expired"] is False for c in others), others
assert all(l["up"] is True for l in h["listeners"]), h["listeners"]
PY
pass "/healthz 503 $((now - END_EPOCH))s after short.crt's notAfter: \"expired\":true for it only"
code=$(curl_code --cacert "$CA" --cert "$CRT" --key "$KEY" --resolve "node1.test:$PIN:127.0.0.1" "https://node1.test:$PIN/")
[ "$code" = 200 ] || fail "the listener with a valid certificate stopped serving: $code"

ferry_stop f
if [ "${#LATE_FAIL[@]}" -gt 0 ]; then
    printf 'FAIL: %s\n' "${LATE_FAIL[@]}" >&2
    fail "${#LATE_FAIL[@]} metrics check(s) failed (above)"
fi
