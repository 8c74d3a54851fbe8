#!/usr/bin/env bash
# Goal: TLS session resumption (tls.h "Session resumption").  Inbound (client_cert: required):
# a session saved by `openssl s_client -sess_out` resumes ("Reused") under TLS 1.2 and 1.3; it
# still resumes after a SIGHUP reload that changed nothing (the ticket keys are the process's,
# not the SSL_CTX's); after a reload that added a CA to the bundle it is refused and a full
# handshake (still accepted) runs instead; a listener with session_resumption: false never
# resumes.  Outbound: after the first connection of each worker, connections through an
# outbound listener resume their session with the peer (an `openssl s_server -www` peer that says "Reused" in its page), under TLS 1.2
# and 1.3, and an outbound listener in front of ferry's own inbound listener serves sequential
# connections.
# valgrind: yes
# timeout: 120
source "$(dirname "$0")/lib.sh"

pki_make "$T/pki"
P=$T/pki
LIVE=$T/live
mkdir -p "$LIVE"
cp "$P/ca.crt" "$LIVE/ca.crt"

PB=$(free_port)
PIN=$(free_port)
PNORES=$(free_port)
PINTCP=$(free_port)
POUT13=$(free_port)
POUT12=$(free_port)
POUTIN=$(free_port)
PSRV13=$(free_port)
PSRV12=$(free_port)
http_backend "$PB" backend

# Two TLS peers for the outbound listeners: s_server -www answers each GET with a page that
# says "New, TLSv1.x" or "Reused, TLSv1.x".  They require and check ferry's client certificate.
for v in 13 12; do
    port=PSRV$v
    bg_run "s_server$v" openssl s_server -accept "127.0.0.1:${!port}" -www -tls1_${v#1} \
        -cert "$P/node1.crt" -key "$P/node1.key" -CAfile "$P/ca.crt" -Verify 2 \
        -verify_return_error
    wait_port "${!port}" 10
done

cat >"$T/ferry.yaml" <<YAML
tls: {cert: $P/node1.crt, key: $P/node1.key, ca: $LIVE/ca.crt}
log: {level: debug}
limits: {handshake_timeout: 10s, idle_timeout: 30s}
listeners:
  - {name: in, mode: inbound, listen: "127.0.0.1:$PIN", backend: "127.0.0.1:$PB", protocol: http, client_cert: required}
  - name: nores
    mode: inbound
    listen: "127.0.0.1:$PNORES"
    backend: "127.0.0.1:$PB"
    protocol: http
    client_cert: required
    tls: {session_resumption: false}
  - {name: intcp, mode: inbound, listen: "127.0.0.1:$PINTCP", backend: "127.0.0.1:$PB", protocol: tcp, client_cert: required}
  - {name: out13, mode: outbound, listen: "127.0.0.1:$POUT13", peer: "node1.test:$PSRV13", connect: "127.0.0.1:$PSRV13", protocol: tcp}
  - {name: out12, mode: outbound, listen: "127.0.0.1:$POUT12", peer: "node1.test:$PSRV12", connect: "127.0.0.1:$PSRV12", protocol: tcp}
  - {name: outin, mode: outbound, listen: "127.0.0.1:$POUTIN", peer: "node1.test:$PINTCP", connect: "127.0.0.1:$PINTCP", protocol: tcp}
YAML
ferry_start main "$T/ferry.yaml"

# sclient PORT VERSION OUT [s_client args...]: one mTLS request with the `good` client
# certificate; s_client's output in OUT.  -ign_eof keeps s_client reading after it sent the
# request, so the TLS 1.3 NewSessionTicket (sent after the handshake) arrives before the
# connection ends and -sess_out has a ticket to write.
sclient() {
    local port=$1 v=$2 out=$3
    shift 3
    printf 'GET /r HTTP/1.1\r\nHost: node1.test\r\nConnection: close\r\n\r\n' |
        timeout 20 openssl s_client -connect "127.0.0.1:$port" -servername node1.test \
            -cert "$P/good.crt" -key "$P/good.key" -CAfile "$P/root.crt" -verify_return_error \
            "-tls1_${v#1}" -ign_eof "$@" >"$out" 2>&1 || true
}

# handshake PORT VERSION NAME WANT [args]: WANT = New or Reused; the request must reach the
# backend (HTTP 200) either way.
handshake() {
    local port=$1 v=$2 name=$3 want=$4 got
    shift 4
    sclient "$port" "$v" "$T/$name.sc" "$@"
    grep -q 'HTTP/1.1 200 ' "$T/$name.sc" || {
        cat "$T/$name.sc" >&2
        fail "$name: no HTTP 200 through the listener"
    }
    got=$(grep -Eo '^(New|Reused), TLSv1\.[23]' "$T/$name.sc" | head -n1)
    [ "$got" = "$want, TLSv1.${v#1}" ] || {
        cat "$T/$name.sc" >&2
        fail "$name: expected \"$want, TLSv1.${v#1}\", got \"$got\""
    }
    pass "$name: $got"
}

reloaded() { log_count main 'event=reloaded'; }

# reload_and_wait: SIGHUP, then wait for one more event=reloaded
reload_and_wait() {
    local before end
    before=$(reloaded)
    kill -HUP "$(ferry_pid main)"
    end=$((SECONDS + (VG == 1 ? 60 : 15)))
    while [ "$(reloaded)" -le "$before" ]; do
        [ "$SECONDS" -ge "$end" ] && fail "no event=reloaded after SIGHUP"
        grep -q 'event=reload_failed' "$T/main.log" && fail "reload failed"
        sleep 0.1
    done
}

# ---- inbound: save, resume, across a reload that changes nothing ----
for v in 13 12; do
    handshake "$PIN" "$v" "in$v-first" New -sess_out "$T/sess$v.pem"
    [ -s "$T/sess$v.pem" ] || fail "s_client wrote no session for TLS 1.${v#1}"
    handshake "$PIN" "$v" "in$v-resumed" Reused -sess_in "$T/sess$v.pem"
done

# session_resumption: false: a session of the same policy is not resumed, nor its own.
for v in 13 12; do
    handshake "$PNORES" "$v" "nores$v-other" New -sess_in "$T/sess$v.pem"
    handshake "$PNORES" "$v" "nores$v-first" New -sess_out "$T/nores$v.pem"
    if [ -s "$T/nores$v.pem" ]; then
        handshake "$PNORES" "$v" "nores$v-again" New -sess_in "$T/nores$v.pem"
    fi
done

reload_and_wait
for v in 13 12; do
    handshake "$PIN" "$v" "in$v-after-reload" Reused -sess_in "$T/sess$v.pem"
done

# ---- a reload that changes the trust policy: the old sessions are refused ----
cat "$P/ca.crt" "$P/other-ca.crt" >"$LIVE/ca.crt.tmp"
mv -f "$LIVE/ca.crt.tmp" "$LIVE/ca.crt"
reload_and_wait
for v in 13 12; do
    handshake "$PIN" "$v" "in$v-new-ca" New -sess_in "$T/sess$v.pem" -sess_out "$T/sess$v-b.pem"
    handshake "$PIN" "$v" "in$v-new-ca-resumed" Reused -sess_in "$T/sess$v-b.pem"
done
expect_no_log main 'event=handshake_rejected'

# ---- outbound: the second connection to the peer resumes ----
# outbound_get PORT NAME: GET / through an outbound listener (plain TCP to ferry); the peer's
# page in $T/NAME.page
outbound_get() {
    local port=$1 name=$2
    curl -s --max-time 15 --http1.0 -o "$T/$name.page" "http://127.0.0.1:$port/" || true
    [ -s "$T/$name.page" ] || fail "$name: no answer through the outbound listener"
}
# Each worker keeps its own session per peer (tls.h): with N workers the first connection of
# each worker starts a new session and later ones resume it.  Only a cleanly closed connection
# leaves a resumable session (tls.h), and which connection closes first (ferry's side or
# s_server's) varies with timing (under valgrind especially), so a few more new sessions are
# allowed; at least one connection must resume and at least one must be new.
NW=$(grep -Eo 'event=ready .*workers=[0-9]+' "$T/main.log" | grep -Eo '[0-9]+$')
[ -n "$NW" ] || fail "no workers= in the ready line"
for v in 13 12; do
    port=POUT$v
    new=0 reused=0
    for i in $(seq 1 $((2 * NW + 2))); do
        outbound_get "${!port}" "out$v-$i"
        if grep -q "^New, TLSv1\.${v#1}" "$T/out$v-$i.page"; then
            new=$((new + 1))
        elif grep -q "^Reused, TLSv1\.${v#1}" "$T/out$v-$i.page"; then
            reused=$((reused + 1))
        else
            cat "$T/out$v-$i.page" >&2
            fail "out$v: connection $i to the peer is neither a new nor a resumed TLS 1.${v#1} session"
        fi
    done
    [ "$new" -ge 1 ] && [ "$reused" -ge 1 ] ||
        fail "out$v: $new new and $reused resumed sessions in $((2 * NW + 2)) connections (want both)"
    pass "outbound TLS 1.${v#1}: $new new ($NW workers), $reused resumed"
done

# Outbound in front of ferry's own inbound listener: sequential connections all get through.
for i in 1 2 3; do
    code=$(curl_code -H 'Host: node1.test' "http://127.0.0.1:$POUTIN/chain/$i")
    [ "$code" = 200 ] || fail "outbound -> inbound request $i: HTTP $code"
    grep -q "\"/chain/$i\"" "$T/curl.body" || fail "request $i did not reach the backend"
done
pass "outbound -> inbound: three sequential connections"

expect_no_log main 'event=handshake_rejected'
ferry_stop main
