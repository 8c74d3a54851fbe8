#!/usr/bin/env bash
# Fault injection (issue 8 item 3): SIGKILL and restart of a sidecar during two-way CouchDB
# replication (pouchdb-server nodes A and B, each behind one ferry; see
# tests/support/replication.sh).  Both nodes are seeded (docs with attachments, updates,
# tombstones); A -> B and B -> A run at once through the outbound listeners; when B holds a
# fifth of A's docs, ferry B is SIGKILLed, then restarted with the same config 1s later.  The
# replications are re-run until they succeed (at most 3 times): afterwards every document and
# attachment is compared on both nodes against what was written (replicate.js verify), ferry A
# stayed up, and a further run writes nothing.
# timeout: 240
source "$(dirname "$0")/../support/faults.sh"
source "$SUPPORT/replication.sh"

N=400
repl_require
ports PA PB FA_IN FA_OUT FB_IN FB_OUT
A=http://127.0.0.1:$PA
B=http://127.0.0.1:$PB
repl_pki "$T/pki" nodea.test nodeb.test
repl_node pouch-a "$PA"
repl_node pouch-b "$PB"
repl_sidecar "$T/fa.yaml" nodea.test nodeb.test "$PA" "$FA_IN" "$FA_OUT" "$FB_IN"
repl_sidecar "$T/fb.yaml" nodeb.test nodea.test "$PB" "$FB_IN" "$FB_OUT" "$FA_IN"
ferry_start fa "$T/fa.yaml"
ferry_start fb "$T/fb.yaml"
t0=$SECONDS

repl seed --url "$A" --db db --side a --count "$N" --profile bulk & s1=$!
repl seed --url "$B" --db db --side b --count "$N" --profile bulk & s2=$!
wait "$s1" || fail "seeding A failed"
wait "$s2" || fail "seeding B failed"
live=$(node "$REPL" count --url "$A" --db db)

REPL_SECS=90 repl replicate --url "$A" --source db --target "http://127.0.0.1:$FA_OUT/db" & r1=$!
REPL_SECS=90 repl replicate --url "$B" --source db --target "http://127.0.0.1:$FB_OUT/db" & r2=$!
partial=$(timeout -k 5 100 node "$REPL" wait-count --url "$B" --db db --min $((live + live / 5)) --timeout 90) ||
    fail "A -> B never reached a fifth: $partial"
kill -KILL "$(ferry_pid fb)"
at_kill=$(node "$REPL" count --url "$B" --db db)
note "SIGKILLed ferry B with $at_kill docs on B (full: $((2 * live)))"
sleep 1
ferry_start fb2 "$T/fb.yaml"
wait "$r1" || true
wait "$r2" || true
ferry_alive fa || fail "ferry A died when ferry B was killed"

runs=0
for i in 1 2 3; do
    runs=$i
    rc1=0 rc2=0
    REPL_SECS=120 repl replicate --url "$A" --source db --target "http://127.0.0.1:$FA_OUT/db" & r1=$!
    REPL_SECS=120 repl replicate --url "$B" --source db --target "http://127.0.0.1:$FB_OUT/db" & r2=$!
    wait "$r1" || rc1=$?
    wait "$r2" || rc2=$?
    [ "$rc1" = 0 ] && [ "$rc2" = 0 ] && break
    [ "$i" = 3 ] && fail "two-way replication after the restart still fails ($rc1, $rc2)"
    sleep 2
done
repl verify --url "$A" --url "$B" --db db --set "a:$N:ferry:bulk" --set "b:$N:ferry:bulk" ||
    fail "after SIGKILL + restart the nodes differ"
repl replicate --url "$A" --source db --target "http://127.0.0.1:$FA_OUT/db" --expect-written 0 ||
    fail "a further run A -> B wrote documents"
repl replicate --url "$B" --source db --target "http://127.0.0.1:$FB_OUT/db" --expect-written 0 ||
    fail "a further run B -> A wrote documents"
ferry_alive fa || fail "ferry A died"
repl_node_alive pouch-a && repl_node_alive pouch-b || fail "a pouchdb-server node died"
fault_row "SIGKILL+restart during 2-way repl" "converges, every doc/attachment equal" \
    "killed at $at_kill/$((2 * live)) docs on B; converged in $runs run(s); 2x$N docs + attachments verified; A alive ($((SECONDS - t0))s)"
ferry_stop fa
ferry_stop fb2
pass "faults/70-replication-kill"
