#!/usr/bin/env bash
# Goal: bytes are relayed exactly (CONTRACT §5): 1 GiB each way, at the same time, through
# plain client -> ferry A (outbound, tcp) -> mTLS -> ferry B (inbound, tcp) -> TCP backend,
# checked by sha256: the upload is hashed at the backend, the download (a deterministic
# stream made by the backend) at the client.  16 MiB under valgrind.
# valgrind: yes
# timeout: 600
source "$(dirname "$0")/lib.sh"

pki_make "$T/pki"
P=$T/pki
N=$((1024 * 1024 * 1024))
[ "$VG" = 1 ] && N=$((16 * 1024 * 1024))
[ -n "${FERRY_BULK_BYTES:-}" ] && N=$FERRY_BULK_BYTES

PBACK=$(free_port)
PB=$(free_port)
PA=$(free_port)
tcp_backend "$PBACK" cmd backend

cat >"$P/b.yaml" <<YAML
tls: {cert: node1.crt, key: node1.key, ca: ca.crt}
log: {level: info}
limits: {handshake_timeout: 10s, idle_timeout: 120s}
listeners:
  - {name: from-a, mode: inbound, listen: "127.0.0.1:$PB", backend: "127.0.0.1:$PBACK", protocol: tcp, allow: ["peer.test"]}
YAML
cat >"$P/a.yaml" <<YAML
tls: {cert: good.crt, key: good.key, ca: ca.crt}
log: {level: info}
limits: {handshake_timeout: 10s, idle_timeout: 120s}
listeners:
  - {name: to-b, mode: outbound, listen: "127.0.0.1:$PA", peer: "node1.test:$PB", connect: "127.0.0.1:$PB", protocol: tcp}
YAML
ferry_start b "$P/b.yaml"
ferry_start a "$P/a.yaml"

note "transferring $N bytes each way"
start=$SECONDS
python3 "$SUPPORT/tls_client.py" --connect "127.0.0.1:$PA" --line SINK --send "$N" --shut wr \
    --expect-sink --timeout 300 >"$T/up.out" 2>&1 &
up=$!
bg_register "$up" upload
python3 "$SUPPORT/tls_client.py" --connect "127.0.0.1:$PA" --line "SOURCE $N" --shut wr \
    --expect-stream "$N" --timeout 300 >"$T/down.out" 2>&1 &
down=$!
bg_register "$down" download
rc_up=0
rc_down=0
wait "$up" || rc_up=$?
wait "$down" || rc_down=$?
el=$((SECONDS - start))
cat "$T/up.out" "$T/down.out" >&2
[ "$rc_up" = 0 ] || fail "upload of $N bytes: status $rc_up: $(cat "$T/up.out")"
[ "$rc_down" = 0 ] || fail "download of $N bytes: status $rc_down: $(cat "$T/down.out")"
grep -q "^$N " "$T/backend.sha256" || fail "backend did not record $N bytes: $(cat "$T/backend.sha256")"
grep -q 'eof=fin' "$T/down.out" || fail "download did not end with a FIN: $(cat "$T/down.out")"
pass "$N bytes each way intact in ${el}s"

# one conn_closed summary per connection, with byte counts
for f in a b; do
    expect_log "$f" 'event=conn_closed'
    if ! grep 'event=conn_closed' "$T/$f.log" | grep -Eq "bytes_(in|out)=$((N + 5))( |$)"; then
        note "WARNING: ferry $f: no conn_closed with bytes_in/out=$((N + 5)) (upload incl. 'SINK\\n'): $(grep 'event=conn_closed' "$T/$f.log")"
    fi
done
ferry_alive a || fail "ferry a died"
ferry_alive b || fail "ferry b died"
ferry_stop a
ferry_stop b
