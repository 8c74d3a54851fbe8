# shellcheck shell=bash
# replication.sh: pouchdb-server nodes and ferry sidecar pairs for tests/faults/ and
# tests/soak.sh, sourced after tests/integration/lib.sh.  The same setup as
# tests/integration/60-replication.sh (which keeps its own copy), as functions:
#
#   repl_require                 node >= 20 and tests/node_modules/pouchdb-server (npm ci if
#                                missing or another version); sets REPL (replicate.js)
#   repl ARGS...                 node replicate.js ARGS..., bounded by REPL_SECS (default 300),
#                                output appended to $T/replicate.log and shown on stderr
#   repl_node NAME PORT          start an in-memory pouchdb-server on 127.0.0.1:PORT, wait
#   repl_node_alive NAME         status 0 while that node runs
#   repl_pki DIR NAME...         `ferry certs init-ca` in DIR/ca, then `ferry certs issue` for
#                                every NAME (DNS NAME, IP 127.0.0.1) into DIR/NAME/
#   repl_sidecar FILE NAME PEER NODE_PORT IN OUT PEER_IN [PKI]
#                                write a ferry config: inbound IN -> the node, allow PEER;
#                                outbound OUT -> PEER's inbound PEER_IN (protocol http)

repl_require() {
    local tests=$FERRY_SRC/tests want have
    REPL=$SUPPORT/replicate.js
    command -v node >/dev/null || fail "node is required (node >= 20)"
    node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' ||
        fail "node >= 20 is required, found $(node --version)"
    want=$(node -p 'require(process.argv[1]).dependencies["pouchdb-server"]' "$tests/package.json")
    have=$(node -p 'try { require(process.argv[1]).version } catch (e) { "" }' \
        "$tests/node_modules/pouchdb-server/package.json" 2>/dev/null || true)
    if [ "$have" != "$want" ]; then
        note "installing node test dependencies: npm ci --prefix $tests (log: $T/npm.log)"
        timeout -k 5 600 npm ci --prefix "$tests" --no-audit --no-fund >"$T/npm.log" 2>&1 || {
            tail -n 30 "$T/npm.log" >&2
            fail "npm ci --prefix $tests failed"
        }
    fi
}

repl() {
    timeout -k 5 "${REPL_SECS:-300}" node "$REPL" "$@" 2>&1 | tee -a "$T/replicate.log" >&2
    return "${PIPESTATUS[0]}"
}

declare -A _REPL_NODE_PID=()

repl_node() {
    mkdir -p "$T/$1"
    bg_run "$1" env -C "$T/$1" node "$SUPPORT/pouchdb-node.js" --in-memory --host 127.0.0.1 \
        --port "$2" --config "$T/$1/config.json" --no-stdout-logs
    _REPL_NODE_PID[$1]=$BG_PID
    wait_port "$2" 30
}

repl_node_alive() {
    kill -0 "${_REPL_NODE_PID[$1]}" 2>/dev/null
}

repl_pki() {
    local dir=$1 out n
    shift
    out=$(ferry_cmd certs init-ca --dir "$dir/ca" --name "Ferry Fault Test CA" 2>&1) ||
        fail "ferry certs init-ca: $out"
    for n in "$@"; do
        out=$(ferry_cmd certs issue --ca "$dir/ca" --name "$n" --ip 127.0.0.1 --out "$dir/$n" 2>&1) ||
            fail "ferry certs issue $n: $out"
    done
}

repl_sidecar() {
    local file=$1 name=$2 peer=$3 node=$4 in=$5 out=$6 peer_in=$7 pki=${8:-$T/pki}
    cat >"$file" <<EOF
tls: {cert: $pki/$name/$name.crt, key: $pki/$name/$name.key, ca: $pki/$name/ca.crt}
listeners:
  - {name: from-peers, mode: inbound, listen: "127.0.0.1:$in", backend: "127.0.0.1:$node", allow: ["$peer"]}
  - {name: to-peer, mode: outbound, listen: "127.0.0.1:$out", peer: "$peer:$peer_in", connect: "127.0.0.1:$peer_in"}
EOF
}
