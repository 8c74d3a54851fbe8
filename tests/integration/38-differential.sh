#!/usr/bin/env bash
# Goal: issue 12, differential test of ferry's HTTP framer against a strict parser.  ferry
# (workers: 1, one inbound protocol: http listener) sits in front of
# tests/support/strict_backend.js (Node's llhttp, insecureHTTPParser: false).  A seeded corpus
# of 581 requests (tests/support/diff_corpus.py: valid, borderline and malformed framing) is
# sent, each on its own mTLS connection in one write.  The oracle: what the strict backend
# parsed is exactly what ferry logged as forwarded (event=request with a backend status), in
# order, with the same method, path and decoded body length; the backend's parser never
# refused a byte ferry forwarded; valid requests reach it whole, malformed ones (and what was
# smuggled behind them) never do and get ferry's own 400/505 with event=bad_request; no
# client identity header, trailer field or Connection-named header reaches it.  Prints the
# counts per class (forwarded, refused by rule id) and the first differences.
# timeout: 240
source "$(dirname "$0")/lib.sh"

command -v node >/dev/null || fail "node is not installed (tests need Node 20)"
pki_make "$T/pki"
P=$T/pki
PB=$(free_port)
PIN=$(free_port)
bg_run strict node "$SUPPORT/strict_backend.js" --port "$PB" --log "$T/strict.jsonl"
wait_port "$PB"

cat >"$P/diff.yaml" <<YAML
tls: {cert: node1.crt, key: node1.key, ca: ca.crt}
workers: 1
log: {level: info}
limits: {handshake_timeout: 10s, idle_timeout: 30s, header_timeout: 5s, backend_timeout: 5s}
listeners:
  - {name: in, mode: inbound, listen: "127.0.0.1:$PIN", backend: "127.0.0.1:$PB"}
YAML
ferry_start diff "$P/diff.yaml"

python3 "$SUPPORT/diff_corpus.py" gen --seed 12 --out "$T/corpus.jsonl" >&2 ||
    fail "cannot generate the corpus"
# Each exchange ends with its first complete answer, or when ferry closes; 3 s bound a
# request that neither side answers (the current framer waits for 2^63 body bytes).
python3 "$SUPPORT/diff_corpus.py" send --corpus "$T/corpus.jsonl" --connect "127.0.0.1:$PIN" \
    --cert "$P/good.crt" --key "$P/good.key" --ca "$P/root.crt" --sni node1.test \
    --timeout 3 --out "$T/results.jsonl" >&2 || fail "the sender failed"
ferry_alive diff || fail "ferry died during the corpus"
# Stopping ferry writes the access-log line of anything still in flight.
ferry_stop diff
sleep 0.2
XFCC_HASH=$(openssl x509 -in "$P/good.crt" -outform DER | sha256sum | cut -d' ' -f1)
if python3 "$SUPPORT/diff_corpus.py" judge --corpus "$T/corpus.jsonl" \
    --results "$T/results.jsonl" --ferry-log "$T/diff.log" --backend-log "$T/strict.jsonl" \
    --listener in --xfcc-hash "$XFCC_HASH" >"$T/judge.txt" 2>&1; then
    cat "$T/judge.txt" >&2
    pass "differential: ferry and a strict parser agree on every request of the corpus"
else
    cat "$T/judge.txt" >&2
    fail "differential: ferry forwarded what a strict parser reads differently (above)"
fi
