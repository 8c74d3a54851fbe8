#!/usr/bin/env bash
# Goal: CONTRACT 9 admin listener: /healthz 200 with its JSON summary, 503 once a certificate
# of the config expires; /metrics in Prometheus text whose counters move exactly as expected
# for accepted, rejected (unknown_ca) and failed (backend/peer down) connections, with the
# certificate not-after per file; only GET/HEAD, unknown paths 404.
# timeout: 180
#
# The expiring certificate is a leaf made with `openssl ca -enddate` to expire ~60 s after the
# start (the test waits for it, bounded).  /metrics: every family has # HELP and # TYPE and
# every sample parses; an mTLS request moves connections_total, handshakes ok, requests 2xx,
# bytes_total and the latency histogram; a client certificate from another CA moves
# handshakes_total{outcome="rejected",reason="unknown_ca"} only; a backend or peer that is down
# gives 502 and moves upstream_connect_failures_total and requests_total{class="5xx"};
# ferry_certificate_not_after_seconds{file=...} equals openssl's notAfter of each file.
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
             "ferry_handshake_duration_seconds", "ferry_certificate_not_after_seconds",
             "ferry_reloads_total"):
    assert want in fams, "missing family " + want
assert type_["ferry_handshake_duration_seconds"] == "histogram"
assert type_["ferry_connections_open"] == "gauge"
assert type_["ferry_connections_total"] == "counter"
print("families:", len(fams))
PY
pass "/metrics: every family has # HELP and # TYPE, every sample line parses"

# certificate not-after per file, as Unix time
for f in "$CRT" "$CA" "$P/short.crt"; do
    got=$(m "ferry_certificate_not_after_seconds{file=\"$f\"}")
    want=$(not_after "$f")
    [ "$got" = "$want" ] || fail "ferry_certificate_not_after_seconds{file=\"$f\"} = $got, openssl says $want"
done
pass "ferry_certificate_not_after_seconds equals openssl's notAfter for node, CA and short-lived cert"

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

# ---- methods and paths ----
for meth in POST PUT DELETE; do
    code=$(curl_code -X "$meth" "$A/metrics")
    case "$code" in 200 | 000) fail "$meth /metrics answered $code (expected a refusal)" ;; esac
done
code=$(curl_code -X POST "$A/healthz")
case "$code" in 200 | 000) fail "POST /healthz answered $code" ;; esac
code=$(curl_code -I "$A/metrics")
[ "$code" = 200 ] || fail "HEAD /metrics answered $code"
for u in /nope / /metrics/x /healthzz; do
    code=$(curl_code "$A$u")
    [ "$code" = 404 ] || fail "GET $u answered $code (expected 404)"
done
code=$(curl_code "$A/metrics?x=1")
[ "$code" = 200 ] || fail "GET /metrics?x=1 answered $code"
pass "POST/PUT/DELETE refused ($(curl_code -X POST "$A/metrics")), HEAD 200, unknown paths 404"

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
