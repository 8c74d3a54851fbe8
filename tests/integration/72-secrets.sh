#!/usr/bin/env bash
# Goal (issue 8 item 5): no secret ever reaches ferry's output.  ferry runs with an encrypted
# key (tls.key_passphrase_file) and couchdb_proxy_auth.secret_file, at log level debug, once
# with format text and once with json; each run sees good clients, a client with a certificate
# from another CA, plaintext HTTP on the TLS port, a good reload, a reload with a WRONG
# passphrase in the passphrase file (kept configuration), /metrics, then SIGTERM.  `ferry
# check` (text and --json, also with a wrong passphrase) and `certs inspect` (with --key on
# the encrypted and the plain key, and on the key file itself) run too.  All of that output
# (stderr and stdout of every command) must not contain: the passphrase, the wrong passphrase,
# the CouchDB secret, a "-----BEGIN/END ... PRIVATE KEY-----" line (naming the PEM label in a
# diagnostic, as `certs inspect KEYFILE` does, is fine), any 16-character run of the base64 body of the key (plain or
# encrypted PEM), or the private scalar in hex.  The backend's view is not ferry's output and
# is only used to prove the secret was used (the X-Auth-CouchDB-Token is its HMAC).
# valgrind: yes
# timeout: 180
source "$(dirname "$0")/lib.sh"

pki_make "$T/pki"
P=$T/pki
PB=$(free_port)
PIN=$(free_port)
PADM=$(free_port)
http_backend "$PB" backend

umask 077
cp "$P/node1.pass" "$T/key.pass"
PASS=$(head -n1 "$P/node1.pass")
WRONG="wrong-$(openssl rand -hex 12)" # pki.sh's node1-wrong.pass is the words "wrong passphrase"
printf '%s\n' "$WRONG" >"$T/wrong.pass"
SECRET="couch-$(openssl rand -hex 24)"
printf '%s' "$SECRET" >"$T/couch.secret"
[ -n "$PASS" ] && [ -n "$WRONG" ] || fail "pki.sh gave an empty passphrase"
grep -q 'ENCRYPTED' "$P/node1-enc.key" || fail "node1-enc.key is not an encrypted PEM"

C=(--cacert "$P/root.crt" --cert "$P/good.crt" --key "$P/good.key" --resolve "node1.test:$PIN:127.0.0.1")
BADC=(--cacert "$P/root.crt" --cert "$P/other.crt" --key "$P/other.key" --resolve "node1.test:$PIN:127.0.0.1")

for fmt in text json; do
    cat >"$T/secrets-$fmt.yaml" <<YAML
tls: {cert: $P/node1.crt, key: $P/node1-enc.key, key_passphrase_file: $T/key.pass, ca: $P/ca.crt}
log: {level: debug, format: $fmt}
admin: {listen: "127.0.0.1:$PADM"}
listeners:
  - name: in
    mode: inbound
    listen: "127.0.0.1:$PIN"
    backend: "127.0.0.1:$PB"
    couchdb_proxy_auth: {secret_file: $T/couch.secret, hash: sha256, roles: ["replicator"]}
YAML
    cp "$P/node1.pass" "$T/key.pass"
    if [ "$fmt" = text ]; then
        ferry_start "run-$fmt" "$T/secrets-$fmt.yaml"
    else # ferry_start waits for the text form "event=ready"
        ferry_spawn "run-$fmt" "$T/secrets-$fmt.yaml"
        expect_log "run-$fmt" '"event":"ready"' "$READY_SECS"
    fi
    code=$(curl_code "${C[@]}" "https://node1.test:$PIN/db/doc")
    [ "$code" = 200 ] || fail "$fmt: good client got HTTP $code"
    # The secret was used: the backend got the HMAC token of the user name.
    want=$(printf '%s' peer.test | openssl dgst -sha256 -hmac "$SECRET" -r | cut -d' ' -f1)
    grep -q "\"X-Auth-CouchDB-Token\": \"$want\"" "$T/curl.body" ||
        fail "$fmt: backend did not get the HMAC token of peer.test keyed with the secret"
    code=$(curl_code "${BADC[@]}" "https://node1.test:$PIN/db")
    [ "$code" = 000 ] || fail "$fmt: a client from another CA got HTTP $code"
    curl -s --max-time 5 "http://127.0.0.1:$PIN/" >/dev/null || true
    curl -s --max-time 5 "http://127.0.0.1:$PADM/metrics" >"$T/metrics-$fmt.out" || true
    n0=$(log_count "run-$fmt" 'reloaded')
    kill -HUP "$(ferry_pid "run-$fmt")"
    expect_log "run-$fmt" 'reloaded' 10
    [ "$(log_count "run-$fmt" 'reloaded')" -gt "$n0" ] || fail "$fmt: no reload"
    cp "$T/wrong.pass" "$T/key.pass"
    kill -HUP "$(ferry_pid "run-$fmt")"
    expect_log "run-$fmt" 'reload_failed' 10
    cp "$P/node1.pass" "$T/key.pass"
    code=$(curl_code "${C[@]}" "https://node1.test:$PIN/after")
    [ "$code" = 200 ] || fail "$fmt: after the failed reload a good client got HTTP $code"
    ferry_stop "run-$fmt"
    pass "$fmt: connections, rejected client, plaintext, reload, wrong-passphrase reload"
done

# ---- ferry check and certs inspect ----
ferry_cmd check -c "$T/secrets-text.yaml" >"$T/check.out" 2>&1 || fail "ferry check failed: $(cat "$T/check.out")"
ferry_cmd check -c "$T/secrets-json.yaml" --json >"$T/check-json.out" 2>&1 || fail "ferry check --json failed"
cp "$T/wrong.pass" "$T/key.pass"
rc=0
ferry_cmd check -c "$T/secrets-text.yaml" >"$T/check-wrong.out" 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "ferry check with a wrong passphrase exited $rc, expected 1"
ferry_cmd check -c "$T/secrets-text.yaml" --json >"$T/check-wrong-json.out" 2>&1 || true
cp "$P/node1.pass" "$T/key.pass"
ferry_cmd certs inspect "$P/node1.crt" --key "$P/node1.key" --ca "$P/ca.crt" >"$T/inspect.out" 2>&1 || true
ferry_cmd certs inspect "$P/node1.crt" --key "$P/node1-enc.key" >"$T/inspect-enc.out" 2>&1 || true
ferry_cmd certs inspect "$P/node1.crt" --key "$P/node1.key" --json >"$T/inspect-json.out" 2>&1 || true
ferry_cmd certs inspect "$P/node1.key" >"$T/inspect-keyfile.out" 2>&1 || true
grep -q . "$T/inspect.out" || fail "certs inspect printed nothing"

# ---- the scan ----
cat >"$T/scan.py" <<'PY'
import glob, os, re, subprocess, sys
tdir, secrets = sys.argv[1], {"passphrase": sys.argv[2], "wrong passphrase": sys.argv[3],
                              "couchdb secret": sys.argv[4]}
pem = re.compile(r"-----(BEGIN|END) [A-Z ]*PRIVATE KEY-----")
frags = {}
for path in sys.argv[5:7]:
    body = "".join(l.strip() for l in open(path) if l.strip() and not l.startswith("-----")
                   and ":" not in l)
    for i in range(0, len(body) - 16, 4):
        frags[body[i:i + 16]] = os.path.basename(path)
txt = subprocess.run(["openssl", "pkey", "-in", sys.argv[5], "-noout", "-text"],
                     capture_output=True, text=True).stdout
m = re.search(r"priv:\s*((?:[0-9a-f]{2}:?\s*)+)", txt)
hexes = []
if m:
    h = re.sub(r"[^0-9a-f]", "", m.group(1)).lstrip("0")
    hexes = [h[i:i + 16] for i in range(0, len(h) - 16, 8)]
files = [f for f in glob.glob(os.path.join(tdir, "*")) if os.path.isfile(f)
         and (f.endswith((".out", ".log")) and not os.path.basename(f).startswith(("backend", "pki", "curl")))]
bad = 0
for f in files:
    data = open(f, errors="replace").read()
    for what, s in secrets.items():
        if s and s in data:
            print(f"  {os.path.basename(f)}: contains the {what}", file=sys.stderr); bad += 1
    if pem.search(data):
        print(f"  {os.path.basename(f)}: contains a PEM PRIVATE KEY block", file=sys.stderr); bad += 1
    for frag, src in frags.items():
        if frag in data:
            print(f"  {os.path.basename(f)}: contains base64 of {src}: {frag}", file=sys.stderr); bad += 1
            break
    for h in hexes:
        if h in data.replace(":", ""):
            print(f"  {os.path.basename(f)}: contains the private scalar (hex)", file=sys.stderr); bad += 1
            break
print(f"scanned {len(files)} files ({sum(os.path.getsize(f) for f in files)} bytes): "
      f"{len(frags)} key fragments, {len(hexes)} scalar fragments, {len(secrets)} strings",
      file=sys.stderr)
sys.exit(1 if bad else 0)
PY
# Negative control: the scan finds each kind of secret planted in a directory of its own.
mkdir -p "$T/control"
printf 'x %s y\n' "$PASS" >"$T/control/a.log"
printf 'msg="%s"\n' "$SECRET" >"$T/control/b.out"
sed -n 2p "$P/node1-enc.key" | cut -c5-30 >"$T/control/c.log"
printf -- '-----BEGIN EC PRIVATE KEY-----\n' >"$T/control/d.out"
rc=0
python3 "$T/scan.py" "$T/control" "$PASS" "$WRONG" "$SECRET" "$P/node1.key" "$P/node1-enc.key" \
    2>"$T/control.txt" || rc=$?
[ "$rc" = 1 ] && [ "$(grep -c ': contains' "$T/control.txt")" = 4 ] ||
    { cat "$T/control.txt" >&2; fail "the scan does not find planted secrets"; }
python3 "$T/scan.py" "$T" "$PASS" "$WRONG" "$SECRET" "$P/node1.key" "$P/node1-enc.key" ||
    fail "secret material in ferry's output (above)"
pass "no passphrase, secret, PEM key block or key fragment in any output"
pass "72-secrets"
