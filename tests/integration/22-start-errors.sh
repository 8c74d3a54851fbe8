#!/usr/bin/env bash
# Goal: ferry refuses to start (exit 1, a message naming the file or listener) on a key/cert
# mismatch, an encrypted key without a passphrase file (no prompt, no hang), a wrong
# passphrase, an own certificate lacking the EKU of its role, a listen address in use and a
# missing file; it starts with the right passphrase file.  `ferry check` finds the same
# problems (exit 1).  What check calls an error, run refuses, printing check's findings
# verbatim (same id, file, text and fix): a key readable by others, a certificate file without
# its intermediate, tls.ca holding a leaf.  The exception: an expired own certificate is an
# error of check, but run starts, logging the finding at level error (a restart must not
# crash-loop on what only a renewal fixes).  A FIFO named as any file or as the config is
# refused at once by both (file-unreadable), never opened.  With log.format json,
# event=start_failed is JSON also when a file the config names fails to load.
# valgrind: yes
# timeout: 180
source "$(dirname "$0")/lib.sh"

pki_make "$T/pki"
P=$T/pki
PIN=$(free_port)
POUT=$(free_port)
PB=$(free_port)

# conf NAME TLS-FLOW-MAPPING [MODE] [LOG-FORMAT]: write $P/NAME.yaml with one listener
conf() {
    local name=$1 tls=$2 mode=${3:-inbound} format=${4:-text}
    {
        echo "tls: {$tls}"
        echo "log: {level: debug, format: $format}"
        echo "listeners:"
        if [ "$mode" = inbound ]; then
            echo "  - {name: in-$name, mode: inbound, listen: \"127.0.0.1:$PIN\", backend: \"127.0.0.1:$PB\"}"
        else
            echo "  - {name: out-$name, mode: outbound, listen: \"127.0.0.1:$POUT\", peer: \"node2.test:$PB\", connect: \"127.0.0.1:$PB\"}"
        fi
    } >"$P/$name.yaml"
}

# refuse NAME PATTERN...: `ferry run` and `ferry check` both exit 1, the run log matches every ERE
refuse() {
    local name=$1 p rc
    shift
    ferry_expect_exit 1 "$name" "$P/$name.yaml" 15
    for p in "$@"; do
        grep -Eq -- "$p" "$T/$name.log" || { cat "$T/$name.log" >&2; fail "$name: message lacks /$p/"; }
    done
    wait_port_closed "$PIN" 2
    rc=0
    ferry_cmd check -c "$P/$name.yaml" >"$T/check-$name.log" 2>&1 || rc=$?
    [ "$rc" = 1 ] || { cat "$T/check-$name.log" >&2; fail "ferry check $name: exit $rc, expected 1"; }
    pass "$name refused: $(grep -Ev 'event=(listening|ready)' "$T/$name.log" | head -n1 | cut -c1-160)"
}

conf mismatch "cert: mismatch.crt, key: mismatch.key, ca: ca.crt"
refuse mismatch 'mismatch\.(key|crt)'

conf nopass "cert: node1.crt, key: node1-enc.key, ca: ca.crt"
start=$SECONDS
refuse nopass 'node1-enc\.key'
[ $((SECONDS - start)) -lt $((VG == 1 ? 120 : 10)) ] || fail "nopass took $((SECONDS - start))s"

conf wrongpass "cert: node1.crt, key: node1-enc.key, key_passphrase_file: node1-wrong.pass, ca: ca.crt"
refuse wrongpass 'node1-enc\.key|node1-wrong\.pass'

# refuse_same NAME ID: run exits 1 and logs the error findings of check, word for word.
refuse_same() {
    local name=$1 id=$2 ids
    refuse "$name" "^error +$id  "
    ids=$(same_findings "$name" "$P/$name.yaml" "$id")
    grep -q '"event":"start_failed"' "$T/$name.log" || fail "$name: no start_failed log line"
    pass "$name: run refuses with check's findings ($ids)"
}

cp "$P/node1.key" "$P/open.key"
chmod 644 "$P/open.key"
conf openkey "cert: node1.crt, key: open.key, ca: ca.crt" inbound json
refuse_same openkey key-permissions

conf nointer "cert: int-good.crt, key: int-good.key, ca: ca.crt" inbound json
refuse_same nointer chain-incomplete

conf caleaf "cert: node1.crt, key: node1.key, ca: good.crt" outbound json
refuse_same caleaf ca-not-a-ca

# ---- an expired own certificate: check says error, run starts and logs it at error ----
conf expired "cert: node1-expired.crt, key: node1-expired.key, ca: ca.crt"
rc=0
ferry_cmd check -c "$P/expired.yaml" >"$T/check-expired.log" 2>&1 || rc=$?
[ "$rc" = 1 ] || { cat "$T/check-expired.log" >&2; fail "ferry check expired: exit $rc, expected 1"; }
grep -q 'cert-expired' "$T/check-expired.log" || fail "ferry check expired: no cert-expired"
ferry_start expired "$P/expired.yaml"
[ "$(python3 "$SUPPORT/findings.py" count "$T/expired.log" cert-expired error)" = 1 ] ||
    fail "expired: not one cert-expired finding at level error: $(cat "$T/expired.log")"
grep -q 'node1-expired\.crt' "$T/expired.log" || fail "expired: the file is not named"
ferry_stop expired
wait_port_closed "$PIN" 5
pass "expired own certificate: check exits 1, run starts and logs cert-expired at error"

conf noserverauth "cert: node1-client.crt, key: node1-client.key, ca: ca.crt" inbound
refuse noserverauth 'node1-client\.crt' 'serverAuth'

conf noclientauth "cert: node1-server.crt, key: node1-server.key, ca: ca.crt" outbound
refuse noclientauth 'node1-server\.crt' 'clientAuth'

conf missingca "cert: node1.crt, key: node1.key, ca: no-such-ca.crt"
refuse missingca 'no-such-ca\.crt'

conf missingkey "cert: node1.crt, key: no-such.key, ca: ca.crt"
refuse missingkey 'no-such\.key'

# with log.format json, start_failed is JSON also when the config does not load for a file
conf missingcrl "cert: node1.crt, key: node1.key, ca: ca.crt, crl: no-such.crl" inbound json
refuse missingcrl 'no-such\.crl' '^\{"ts":"[^"]+","level":"error","event":"start_failed"'
mkdir -p "$P/dir.key"
conf dirkey "cert: node1.crt, key: dir.key, ca: ca.crt" inbound json
refuse dirkey 'dir\.key' '^\{"ts":"[^"]+","level":"error","event":"start_failed"'
grep -q '^[0-9TZ:.-]* error event=start_failed' "$T/missingcrl.log" "$T/dirkey.log" &&
    fail "a start_failed line in text despite log.format json"

# ---- a FIFO as key, certificate, CA, CRL or passphrase file, or as the config itself: refused
# from its metadata at once (file-unreadable), never opened (an open would block forever) ----
mkfifo "$P/pipe"
FIFO_RE='file-unreadable +[^ ]*/pipe: cannot read the file named by tls\.%s .*not a regular file \(a FIFO\)'
start=$SECONDS
for k in cert key ca crl key_passphrase_file; do
    case $k in
    cert) tls="cert: pipe, key: node1.key, ca: ca.crt" ;;
    key) tls="cert: node1.crt, key: pipe, ca: ca.crt" ;;
    ca) tls="cert: node1.crt, key: node1.key, ca: pipe" ;;
    crl) tls="cert: node1.crt, key: node1.key, ca: ca.crt, crl: pipe" ;;
    *) tls="cert: node1.crt, key: node1-enc.key, key_passphrase_file: pipe, ca: ca.crt" ;;
    esac
    conf "fifo$k" "$tls" inbound json
    # shellcheck disable=SC2059
    refuse "fifo$k" "$(printf "$FIFO_RE" "$k")" '"event":"start_failed"'
    # shellcheck disable=SC2059
    grep -Eq "$(printf "$FIFO_RE" "$k")" "$T/check-fifo$k.log" || fail "check fifo$k: no file-unreadable"
done
for cmd in run check; do
    rc=0
    timeout 10 "$FERRY_BIN" "$cmd" -c "$P/pipe" </dev/null >"$T/fifoconf-$cmd.log" 2>&1 || rc=$?
    [ "$rc" = 1 ] || { cat "$T/fifoconf-$cmd.log" >&2; fail "$cmd -c FIFO: exit $rc, expected 1"; }
    grep -Eq 'file-unreadable +[^ ]*pipe: cannot read the config file: not a regular file \(a FIFO\)' \
        "$T/fifoconf-$cmd.log" || { cat "$T/fifoconf-$cmd.log" >&2; fail "$cmd -c FIFO: no finding"; }
done
[ $((SECONDS - start)) -lt $((VG == 1 ? 150 : 20)) ] || fail "the FIFO cases took $((SECONDS - start))s"
pass "a FIFO as cert, key, ca, crl, passphrase file or config: file-unreadable from check and run"

# ---- listen address in use: names the listener and the address ----
bg_run holder python3 -c "
import socket, time
s = socket.socket(); s.bind(('127.0.0.1', $PIN)); s.listen(1)
print('holding', flush=True); time.sleep(600)"
holder=$BG_PID
wait_port "$PIN"
conf inuse "cert: node1.crt, key: node1.key, ca: ca.crt"
ferry_expect_exit 1 inuse "$P/inuse.yaml" 15
grep -q 'in-inuse' "$T/inuse.log" || fail "address in use: the listener is not named: $(cat "$T/inuse.log")"
grep -q "127.0.0.1:$PIN" "$T/inuse.log" || fail "address in use: the address is not named: $(cat "$T/inuse.log")"
kill "$holder"
wait "$holder" 2>/dev/null || true
wait_port_closed "$PIN"
pass "address in use refused"

# ---- a missing config file ----
rc=0
timeout 15 "$FERRY_BIN" run -c "$P/no-such.yaml" </dev/null >"$T/noconf.log" 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "run -c missing.yaml: exit $rc, expected 1"
grep -q 'no-such.yaml' "$T/noconf.log" || fail "run -c missing.yaml: file not named"
pass "missing config refused"

# ---- the right passphrase starts, serves, and stops with 0 ----
http_backend "$PB"
conf goodpass "cert: node1.crt, key: node1-enc.key, key_passphrase_file: node1.pass, ca: ca.crt"
ferry_start goodpass "$P/goodpass.yaml"
code=$(curl_code --cacert "$P/root.crt" --cert "$P/good.crt" --key "$P/good.key" \
    --resolve "node1.test:$PIN:127.0.0.1" "https://node1.test:$PIN/pass")
[ "$code" = 200 ] || fail "with the passphrase file: HTTP $code"
grep -q 'correct horse' "$T/goodpass.log" && fail "the passphrase appears in the log"
ferry_stop goodpass
rc=0
ferry_cmd check -c "$P/goodpass.yaml" >"$T/check-goodpass.log" 2>&1 || rc=$?
[ "$rc" = 0 ] || { cat "$T/check-goodpass.log" >&2; fail "ferry check goodpass: exit $rc"; }
pass "encrypted key with the right passphrase file"
