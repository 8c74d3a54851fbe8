#!/usr/bin/env bash
# Goal: end-to-end CouchDB replication across ferry mTLS with a real CouchDB-compatible server
# (pouchdb-server, in-memory): two nodes A and B, each behind one ferry with an inbound and an
# outbound listener, certificates from `ferry certs init-ca/issue`.  A->B and B->A run at the
# same time through the local outbound ferry; afterwards every doc (unicode, nested JSON,
# updates, tombstones) and every attachment (digest and raw bytes, up to ~1 MiB) is identical
# on both nodes and equal to what was written, with exact counts and no conflicts.  Then the
# target side's ferry is SIGKILLed mid-replication, restarted with the same config, and the
# re-run replication completes with everything identical.  Finally the verifier is shown to
# catch a changed doc, a flipped attachment bit and a conflict.
# timeout: 900
source "$(dirname "$0")/lib.sh"

TESTS=$FERRY_SRC/tests
NM=$TESTS/node_modules
REPL=$SUPPORT/replicate.js
N_DOCS=1000          # per side, phase 1
N_CRASH=2000         # phase 2: ~2000 docs with 24..96 KiB attachments (~120 MB)

command -v node >/dev/null || fail "node is required (node >= 20)"
node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' ||
    fail "node >= 20 is required, found $(node --version)"

# ---- pouchdb-server from tests/package-lock.json ----
want=$(node -p 'require(process.argv[1]).dependencies["pouchdb-server"]' "$TESTS/package.json")
have=$(node -p 'try { require(process.argv[1]).version } catch (e) { "" }' \
    "$NM/pouchdb-server/package.json" 2>/dev/null || true)
if [ "$have" != "$want" ]; then
    note "installing node test dependencies: npm ci --prefix $TESTS (log: $T/npm.log)"
    command -v npm >/dev/null || fail "npm is required to install tests/node_modules"
    timeout -k 5 600 npm ci --prefix "$TESTS" --no-audit --no-fund >"$T/npm.log" 2>&1 || {
        tail -n 30 "$T/npm.log" >&2
        fail "npm ci --prefix $TESTS failed"
    }
fi
[ -f "$NM/pouchdb-server/lib/index.js" ] || fail "no $NM/pouchdb-server/lib/index.js after npm ci"

repl() { # repl ARGS...: run replicate.js with a time bound; its summary goes to stderr
    timeout -k 5 "${REPL_SECS:-300}" node "$REPL" "$@" 2>&1 | tee -a "$T/replicate.log" >&2
    return "${PIPESTATUS[0]}"
}

# ---- ports ----
PA=$(free_port)      # pouchdb-server A
PB=$(free_port)      # pouchdb-server B
FA_IN=$(free_port)   # ferry A inbound  (peers -> node A)
FA_OUT=$(free_port)  # ferry A outbound (node A -> ferry B inbound)
FB_IN=$(free_port)
FB_OUT=$(free_port)
A=http://127.0.0.1:$PA
B=http://127.0.0.1:$PB

# ---- PKI: one CA, one certificate per node ----
P=$T/pki
out=$(ferry_cmd certs init-ca --dir "$P/ca" --name "Ferry Replication Test CA" 2>&1) ||
    fail "ferry certs init-ca: $out"
for n in a b; do
    out=$(ferry_cmd certs issue --ca "$P/ca" --name "node$n.test" --ip 127.0.0.1 --out "$P/$n" 2>&1) ||
        fail "ferry certs issue node$n.test: $out"
    for f in "node$n.test.crt" "node$n.test.key" ca.crt; do
        [ -f "$P/$n/$f" ] || fail "ferry certs issue did not write $P/$n/$f"
    done
done
pass "PKI from ferry certs: CA, nodea.test, nodeb.test"

# ---- the two database nodes ----
declare -A NODE_PID=()
start_node() { # start_node NAME PORT
    mkdir -p "$T/$1"
    bg_run "$1" env -C "$T/$1" node "$SUPPORT/pouchdb-node.js" --in-memory --host 127.0.0.1 --port "$2" \
        --config "$T/$1/config.json" --no-stdout-logs
    NODE_PID[$1]=$BG_PID
    wait_port "$2" 30
}
node_alive() { # node_alive NAME: the pouchdb-server started as NAME still runs
    kill -0 "${NODE_PID[$1]}" 2>/dev/null
}
start_node pouch-a "$PA"
start_node pouch-b "$PB"
uuid_a=$(curl -sf --max-time 10 "$A/" | node -p 'JSON.parse(require("fs").readFileSync(0)).uuid')
uuid_b=$(curl -sf --max-time 10 "$B/" | node -p 'JSON.parse(require("fs").readFileSync(0)).uuid')
if [ -z "$uuid_a" ] || [ -z "$uuid_b" ] || [ "$uuid_a" = "$uuid_b" ]; then
    fail "pouchdb-server nodes did not answer with distinct uuids ($uuid_a, $uuid_b)"
fi
pass "pouchdb-server $want nodes A ($PA) and B ($PB)"

# ---- the two ferries ----
write_config() { # write_config FILE n peer_n node_port in out peer_in
    cat >"$1" <<EOF
tls: {cert: $P/$2/node$2.test.crt, key: $P/$2/node$2.test.key, ca: $P/$2/ca.crt}
listeners:
  - {name: from-peers, mode: inbound, listen: "127.0.0.1:$5", backend: "127.0.0.1:$4", allow: ["node$3.test"]}
  - {name: to-node$3, mode: outbound, listen: "127.0.0.1:$6", peer: "node$3.test:$7", connect: "127.0.0.1:$7"}
EOF
}
write_config "$T/ferry-a.yaml" a b "$PA" "$FA_IN" "$FA_OUT" "$FB_IN"
write_config "$T/ferry-b.yaml" b a "$PB" "$FB_IN" "$FB_OUT" "$FA_IN"
ferry_start fa "$T/ferry-a.yaml"
ferry_start fb "$T/ferry-b.yaml"

# The outbound listener of each side reaches the OTHER node, over mTLS.
got=$(curl -sf --max-time 10 "http://127.0.0.1:$FA_OUT/" | node -p 'JSON.parse(require("fs").readFileSync(0)).uuid') ||
    fail "GET / through ferry A's outbound listener failed"
[ "$got" = "$uuid_b" ] || fail "ferry A outbound reached uuid '$got', expected node B's $uuid_b"
got=$(curl -sf --max-time 10 "http://127.0.0.1:$FB_OUT/" | node -p 'JSON.parse(require("fs").readFileSync(0)).uuid') ||
    fail "GET / through ferry B's outbound listener failed"
[ "$got" = "$uuid_a" ] || fail "ferry B outbound reached uuid '$got', expected node A's $uuid_a"
# The inbound listeners do not serve plaintext: nothing bypasses TLS.
body=$(curl -s --max-time 5 "http://127.0.0.1:$FB_IN/" || true)
case "$body" in *"$uuid_b"*) fail "plain HTTP to ferry B's inbound port reached node B" ;; esac
pass "A -> ferry A -> mTLS -> ferry B -> B and back; inbound refuses plaintext"

# ---- phase 1: bidirectional replication of 2 x $N_DOCS docs ----
t0=$SECONDS
repl seed --url "$A" --db db --side a --count "$N_DOCS" & s1=$!
repl seed --url "$B" --db db --side b --count "$N_DOCS" & s2=$!
wait "$s1" || fail "seeding node A failed"
wait "$s2" || fail "seeding node B failed"
pass "seeded $N_DOCS docs on each node ($((SECONDS - t0))s)"

t0=$SECONDS
repl replicate --url "$A" --source db --target "http://127.0.0.1:$FA_OUT/db" & r1=$!
repl replicate --url "$B" --source db --target "http://127.0.0.1:$FB_OUT/db" & r2=$!
rc1=0 rc2=0
wait "$r1" || rc1=$?
wait "$r2" || rc2=$?
[ "$rc1" = 0 ] || fail "replication A -> B through ferry failed (status $rc1)"
[ "$rc2" = 0 ] || fail "replication B -> A through ferry failed (status $rc2)"
pass "replicated A -> B and B -> A concurrently through ferry ($((SECONDS - t0))s)"

repl verify --url "$A" --url "$B" --db db --set "a:$N_DOCS" --set "b:$N_DOCS" ||
    fail "after replication the nodes do not hold the identical union"
pass "every doc and attachment identical on A and B, counts exact, no conflicts"

# Re-running is a no-op: nothing is missing on either side, nothing is written twice.
repl replicate --url "$A" --source db --target "http://127.0.0.1:$FA_OUT/db" --expect-written 0 ||
    fail "re-running A -> B wrote documents (or failed)"
repl replicate --url "$B" --source db --target "http://127.0.0.1:$FB_OUT/db" --expect-written 0 ||
    fail "re-running B -> A wrote documents (or failed)"
pass "re-running both replications writes nothing"

# Sockets a ferry holds that are neither listening nor connections to its peer's port (a
# connection pool may keep those): i.e. client connections and anything leaked.
stray_sockets() { # stray_sockets PID PEER_PORT
    python3 - "$1" "$2" <<'PY'
import os, sys
pid, peer = sys.argv[1], int(sys.argv[2])
skip = set()
for f in ("/proc/net/tcp", "/proc/net/tcp6"):
    try:
        rows = open(f).read().splitlines()[1:]
    except OSError:
        continue
    for row in rows:
        c = row.split()
        if c[3] == "0A" or int(c[2].rsplit(":", 1)[1], 16) == peer:
            skip.add(c[9])
n = 0
for fd in os.listdir(f"/proc/{pid}/fd"):
    try:
        t = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        continue
    if t.startswith("socket:[") and t[8:-1] not in skip:
        n += 1
print(n)
PY
}
sleep 0.5
fa_stray0=$(stray_sockets "$(ferry_pid fa)" "$FB_IN")

# ---- phase 2: SIGKILL the target side's ferry in the middle of a large replication ----
t0=$SECONDS
repl seed --url "$A" --db crash --side c --count "$N_CRASH" --profile bulk ||
    fail "seeding the crash database on A failed"
curl -sf --max-time 10 -X PUT "$B/crash" >/dev/null || fail "cannot create database crash on B"
live=$(curl -sf --max-time 10 "$A/crash" | node -p 'JSON.parse(require("fs").readFileSync(0)).doc_count')
pass "seeded $N_CRASH docs ($live live) with 24-96 KiB attachments on A ($((SECONDS - t0))s)"

t0=$SECONDS
REPL_SECS=90 repl replicate --url "$A" --source crash --target "http://127.0.0.1:$FA_OUT/crash" & r1=$!
partial=$(timeout -k 5 120 node "$REPL" wait-count --url "$B" --db crash --min $((live / 5)) --timeout 110) ||
    fail "replication of crash never reached $((live / 5)) docs on B: $partial"
# Aim the kill at a moment when a large _bulk_docs upload is crossing ferry B: wait (up to 3s)
# for an accepted connection on its inbound port that has already received > 512 KiB.
inflight=no
if command -v ss >/dev/null; then
    end=$((SECONDS + 3))
    while [ "$SECONDS" -lt "$end" ]; do
        big=$(ss -Htin state established "( sport = :$FB_IN )" 2>/dev/null |
            grep -o 'bytes_received:[0-9]*' | cut -d: -f2 | sort -n | tail -n1 || true)
        if [ -n "$big" ] && [ "$big" -gt 524288 ]; then inflight="yes ($big bytes received)"; break; fi
        sleep 0.01
    done
fi
fb_pid=$(ferry_pid fb)
kill -KILL "$fb_pid"
wait "$fb_pid" 2>/dev/null || true
at_kill=$(node "$REPL" count --url "$B" --db crash)
note "SIGKILLed ferry B (pid $fb_pid) when B held $partial/$live docs (after kill: $at_kill); upload in flight: $inflight"
[ "$at_kill" -lt "$live" ] ||
    fail "the replication finished before ferry B was killed; raise N_CRASH"
rc1=0
wait "$r1" || rc1=$?
note "first replication ended with status $rc1 after the kill ($((SECONDS - t0))s)"
# With the peer gone, ferry A must end the replicator's connections (or answer 502), not
# leave them hanging: the interrupted replication has to finish, here by failing.
if [ "$rc1" = 124 ] || [ "$rc1" = 137 ]; then
    fail "the interrupted replication still hung 90s after ferry B was killed (ferry A kept the connection open?)"
fi
ferry_alive fa || fail "ferry A died when its peer was killed"
node_alive pouch-a || fail "pouchdb-server A died after the failed replication (see pouch-a.log)"
note "pouchdb-server A: $(log_count pouch-a 'tolerated replicator error') tolerated replicator error(s)"

ferry_start fb2 "$T/ferry-b.yaml"
wait_port "$FB_IN" 10
t0=$SECONDS
REPL_SECS=180 repl replicate --url "$A" --source crash --target "http://127.0.0.1:$FA_OUT/crash" ||
    fail "replication after restarting ferry B failed"
pass "replication resumed and completed after ferry B's restart ($((SECONDS - t0))s)"

repl verify --url "$A" --url "$B" --db crash --set "c:$N_CRASH:ferry:bulk" ||
    fail "after the crash and re-run the crash database differs"
repl verify --url "$A" --url "$B" --db db --set "a:$N_DOCS" --set "b:$N_DOCS" ||
    fail "the phase-1 database changed"
repl replicate --url "$A" --source crash --target "http://127.0.0.1:$FA_OUT/crash" --expect-written 0 ||
    fail "a further re-run wrote documents"
pass "after SIGKILL + restart: every doc/attachment identical, counts exact, no conflicts"

# ---- negative control: the verifier notices damage ----
repl tamper --url "$B" --db db --id "a-00003-ü東🚀" >/dev/null || fail "tamper (doc) failed"
repl tamper --url "$A" --db db --id b-00007 --attachment large.bin >/dev/null || fail "tamper (attachment) failed"
repl tamper --url "$B" --db db --id b-00010 --conflict yes >/dev/null || fail "tamper (conflict) failed"
rc=0
timeout -k 5 300 node "$REPL" verify --url "$A" --url "$B" --db db --set "a:$N_DOCS" --set "b:$N_DOCS" \
    >"$T/verify-tampered.out" 2>&1 || rc=$?
[ "$rc" = 1 ] || { cat "$T/verify-tampered.out" >&2; fail "verify exited $rc on tampered data, expected 1"; }
for pat in 'a-00003-ü東🚀" body differs' '"large.bin": attachment bytes differ' \
    '"large.bin": digest md5-' '"b-00010" has _conflicts'; do
    grep -qF -- "$pat" "$T/verify-tampered.out" ||
        { cat "$T/verify-tampered.out" >&2; fail "verify did not report: $pat"; }
done
pass "the verifier reports a changed doc, a flipped attachment bit and a conflict"

# ---- ferry A released the connections that were cut when its peer died ----
# (checked last so that a failure here does not hide the data checks above)
end=$((SECONDS + 10))
while :; do
    fa_stray=$(stray_sockets "$(ferry_pid fa)" "$FB_IN")
    [ "$fa_stray" -le "$fa_stray0" ] && break
    if [ "$SECONDS" -ge "$end" ]; then
        ss -tanp 2>/dev/null | grep -E ":($FA_OUT|$FB_IN)\b" >&2 || true
        fail "ferry A still holds $((fa_stray - fa_stray0)) socket(s) of a closed connection 10s" \
            "after all replications ended (idle baseline $fa_stray0, now $fa_stray): the outbound" \
            "connection that was relaying when ferry B was SIGKILLed was never released" \
            "(fa.log: conn_closed ... reason=shutdown at ferry_stop)"
    fi
    sleep 0.2
done
pass "ferry A holds no connection left over from the killed peer"

ferry_stop fa
ferry_stop fb2
