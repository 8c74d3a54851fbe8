#!/usr/bin/env bash
# Goal: the deploy story runs in CI: deploy/two-sites.sh (the two-site topology of
# deploy/docker/docker-compose.yml on one machine, without containers: two pouchdb-server
# nodes, two ferries with four listeners, certificates from `ferry certs`) replicates a
# database both ways, verifies both nodes identical and exits 0, leaving no process behind.
# timeout: 300
source "$(dirname "$0")/lib.sh"

TESTS=$FERRY_SRC/tests
NM=$TESTS/node_modules
command -v node >/dev/null || fail "node is required (node >= 20)"
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

W=$T/two-sites
rc=0
FERRY=$FERRY_BIN NODE_MODULES=$NM timeout -k 10 240 bash "$FERRY_SRC/deploy/two-sites.sh" \
    --dir "$W" --docs 300 --keep >"$T/two-sites.log" 2>&1 || rc=$?
cat "$T/two-sites.log" >&2
[ "$rc" != 124 ] || fail "deploy/two-sites.sh still ran after 240s"
[ "$rc" = 0 ] || fail "deploy/two-sites.sh exited $rc"
grep -q '^two-sites: OK: two-way replication' "$T/two-sites.log" || fail "no OK line from deploy/two-sites.sh"
grep -q 'A -> B through ferry: docs_written doc_write_failures = 301 0' "$T/two-sites.log" ||
    fail "A -> B did not write 301 documents"
grep -q 'B -> A through ferry: docs_written doc_write_failures = 301 0' "$T/two-sites.log" ||
    fail "B -> A did not write 301 documents"
pass "deploy/two-sites.sh replicated both ways and exited 0"
# Nothing it started is left running.
sleep 0.5
left=$(pgrep -f -- "$W/" || true)
[ -z "$left" ] || fail "processes left behind by deploy/two-sites.sh: $(ps -o pid=,args= -p "$(echo "$left" | tr '\n ' ,,)")"
for s in site-a site-b; do
    grep -q 'event=stopped' "$W/ferry-$s.log" || fail "ferry $s did not stop cleanly"
done
pass "every process it started has exited; both ferries logged event=stopped"
