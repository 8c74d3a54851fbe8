#!/usr/bin/env bash
# Goal: the command line of CONTRACT §2: version, help, usage errors (exit 2), `ferry check`
# on good and bad configs (file:line:col), and `ferry certs init-ca/issue` making a CA and a
# leaf that openssl accepts for both purposes, keys 0600, SAN = --name/--dns/--ip.
# valgrind: yes
# timeout: 120
source "$(dirname "$0")/lib.sh"

pki_make "$T/pki"
P=$T/pki

# ---- version / help / usage ----
out=$(ferry_cmd version 2>&1) || fail "ferry version exited $?: $out"
for w in ferry openssl libevent libyaml http.parser; do
    grep -Eqi "$w" <<<"$out" || fail "ferry version does not mention $w: $out"
done
grep -Eq '[0-9]+\.[0-9]+' <<<"$out" || fail "ferry version prints no version number: $out"
pass "version"

out=$(ferry_cmd help 2>&1) || fail "ferry help exited $?"
for w in run check certs version; do
    grep -q "$w" <<<"$out" || fail "ferry help does not mention '$w': $out"
done
rc=0
ferry_cmd help certs >/dev/null 2>&1 || rc=$?
[ "$rc" = 0 ] || fail "ferry help certs exited $rc"
pass "help"

# Output that cannot be written is a failure, not exit 0 with nothing written (attack 7 F6).
for args in "version" "help" "certs inspect --help" "check --help"; do
    rc=0
    # shellcheck disable=SC2086  # word splitting of the command is meant
    err=$(ferry_cmd $args 2>&1 >/dev/full) || rc=$?
    [ "$rc" = 1 ] || fail "ferry $args >/dev/full exited $rc, expected 1"
    grep -q 'cannot write to standard output' <<<"$err" || fail "ferry $args >/dev/full: $err"
done
pass "a write error on stdout exits 1 and says so"

# -h / --help after every command: its usage on stdout, exit 0 (run was a usage error).
for cmd in run check certs "certs inspect"; do
    for h in -h --help; do
        rc=0
        # shellcheck disable=SC2086
        out=$(ferry_cmd $cmd $h 2>"$T/help.err") || rc=$?
        [ "$rc" = 0 ] || fail "ferry $cmd $h exited $rc: $(cat "$T/help.err")"
        [[ $out == "usage: ferry ${cmd%% *}"* ]] || fail "ferry $cmd $h: not its usage: $out"
    done
done
grep -q 'event=finding' <<<"$(ferry_cmd run --help)" || fail "ferry run --help does not describe the findings it logs"
pass "run, check, certs: -h and --help print the usage and exit 0"

# Help names nothing that does not ship: no CONTRACT, no docs/ or deploy/ file; the findings
# are documented in ferry(1), section FINDINGS, which names every id the source can report.
all_help=$(for c in "" run check certs; do ferry_cmd help $c 2>&1; done)
if grep -En 'CONTRACT|docs/|deploy/|findings\.md' <<<"$all_help"; then
    fail "help text names a file that does not ship (above)"
fi
for c in check certs; do
    grep -q 'man ferry, section FINDINGS' <<<"$(ferry_cmd help $c)" || fail "ferry help $c does not point at man ferry FINDINGS"
done
man1=$FERRY_SRC/docs/ferry.1
src_ids=$(cat "$FERRY_SRC"/certs/*.c "$FERRY_SRC"/proxy/main.c |
    grep -oE '"[a-z0-9]+(-[a-z0-9]+)+",[[:space:]]*CERTS_SEV_(ERROR|WARNING)' |
    grep -oE '^"[a-z0-9-]+"' | tr -d '"' | sort -u)
[ "$(wc -l <<<"$src_ids")" -ge 30 ] || fail "found only $(wc -l <<<"$src_ids") finding ids in certs/*.c"
man_ids=$(sed -n '/^\.SH FINDINGS/,/^\.SH /p' "$man1" | grep -oE '^\.B [a-z0-9]+(\\-[a-z0-9]+)+' |
    sed -e 's/^\.B //' -e 's/\\-/-/g' | sort -u)
missing=$(comm -23 <(echo "$src_ids") <(echo "$man_ids"))
[ -z "$missing" ] || fail "finding ids used in certs/ but missing from ferry(1) FINDINGS: $missing"
stale=$(comm -13 <(echo "$src_ids") <(echo "$man_ids"))
[ -z "$stale" ] || fail "ferry(1) FINDINGS lists ids no source reports: $stale"
pass "ferry(1) FINDINGS lists all $(wc -l <<<"$src_ids") finding ids of the source"

rc=0
out=$(ferry_cmd frobnicate 2>&1) || rc=$?
[ "$rc" = 2 ] || fail "unknown command: exit $rc, expected 2 ($out)"
[ -n "$out" ] || fail "unknown command: no message"
rc=0
ferry_cmd run --no-such-option >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "unknown option: exit $rc, expected 2"
rc=0
ferry_cmd certs issue --name x.test >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "certs issue without --ca/--out: exit $rc, expected 2"
rc=0
ferry_cmd >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "no command: exit $rc, expected 2"
pass "usage errors exit 2"

# Every command parses the same way (getopt_long): -h/--help prints its own usage on stdout,
# --opt=value equals --opt value, -- ends the options, and an unknown option, a missing value
# or an extra argument is one "ferry CMD: ..." line naming it, then the usage, exit 2.
for cmd in version help "certs init-ca" "certs issue"; do
    for h in -h --help; do
        rc=0
        # shellcheck disable=SC2086
        out=$(ferry_cmd $cmd $h 2>"$T/help.err") || rc=$?
        [ "$rc" = 0 ] || fail "ferry $cmd $h exited $rc: $(cat "$T/help.err")"
        [[ $out == "usage: ferry $cmd"* ]] || fail "ferry $cmd $h: not its usage: $out"
    done
done
for h in -h --help; do
    out=$(ferry_cmd $h) || fail "ferry $h exited $?"
    [[ $out == "usage: ferry COMMAND"* ]] || fail "ferry $h: not the usage: $out"
done
out=$(ferry_cmd help certs issue) || fail "ferry help certs issue exited $?"
[[ $out == "usage: ferry certs issue"* ]] || fail "ferry help certs issue: not its usage: $out"
# usage_err WHAT-IT-NAMES ARGS...: exit 2, stdout empty, stderr "ferry CMD: ..." naming it.
usage_err() {
    local want=$1 rc=0
    shift
    ferry_cmd "$@" >"$T/u.out" 2>"$T/u.err" || rc=$?
    [ "$rc" = 2 ] || fail "ferry $*: exit $rc, expected 2: $(cat "$T/u.err")"
    [ ! -s "$T/u.out" ] || fail "ferry $*: a usage error printed on stdout: $(cat "$T/u.out")"
    head -n1 "$T/u.err" | grep -qF -- "$want" || fail "ferry $*: first line does not say '$want': $(cat "$T/u.err")"
    sed -n 2p "$T/u.err" | grep -q '^usage: ferry' || fail "ferry $*: no usage after the message: $(cat "$T/u.err")"
}
usage_err 'ferry: unknown option "--bogus"' --bogus
usage_err 'ferry run: unknown option "--bogus"' run --bogus
usage_err 'ferry run: -c needs a value' run -c
usage_err 'ferry run: --config needs a value' run --config=
usage_err 'ferry run: --config needs a value' run --config --json
usage_err 'ferry run: unexpected argument "x.yaml"' run x.yaml
usage_err 'ferry run: unknown option "--conf"' run --conf=x.yaml
usage_err 'ferry check: unknown option "--bogus"' check --bogus
usage_err 'ferry check: --peer needs a value' check --peer
usage_err 'ferry check: --json takes no value' check --json=yes
usage_err 'ferry check: unexpected argument "--json"' check -- --json
# No option is silently ignored or silently replaced (attack 7 F7).
usage_err 'ferry run: option given twice: -c/--config' run -c a.yaml --config=b.yaml
usage_err 'ferry check: option given twice: -c/--config' check -c a.yaml -c b.yaml
usage_err 'ferry check: --listener needs --peer HOST:PORT' check --listener out
usage_err 'ferry check: --hostname is for the files alone' check --peer 127.0.0.1:1 --hostname x
usage_err 'ferry version: unknown option "-x"' version -x
usage_err 'ferry version: unexpected argument "now"' version now
usage_err 'ferry help: unknown option "--bogus"' help --bogus
usage_err 'ferry certs init-ca: unknown option "--out"' certs init-ca --dir "$T/u" --out "$T/u"
usage_err 'ferry certs init-ca: --dir needs a value' certs init-ca --dir
usage_err 'ferry certs init-ca: unexpected argument "x"' certs init-ca --dir="$T/u" -- x
usage_err 'ferry certs issue: unknown option "--bogus"' certs issue --bogus
usage_err 'ferry certs issue: --out needs a value' certs issue --ca "$T/u" --name n.test --out
usage_err 'ferry certs issue: unexpected argument "extra"' certs issue --ca=c --name=n --out=o extra
usage_err 'ferry certs inspect: unknown option "--bogus"' certs inspect "$P/node1.crt" --bogus
usage_err 'ferry certs inspect: --ca needs a value' certs inspect "$P/node1.crt" --ca=
usage_err 'ferry certs inspect: more than one certificate file: x' certs inspect "$P/node1.crt" -- x
[ ! -e "$T/u" ] || fail "a usage error wrote $T/u"
pass "every command: -h/--help, unknown option, missing value, extra argument, --"

# ---- ferry check ----
PIN=$(free_port)
PB=$(free_port)
POUT=$(free_port)
cat >"$P/good.yaml" <<YAML
tls:
  cert: node1.crt
  key: node1.key
  ca: ca.crt
log: {level: debug}
limits: {handshake_timeout: 2s, idle_timeout: 30s, max_connections: 100}
listeners:
  - {name: in, mode: inbound, listen: "127.0.0.1:$PIN", backend: "127.0.0.1:$PB", protocol: http}
  - {name: out, mode: outbound, listen: "127.0.0.1:$POUT", peer: "node2.test:$PB", connect: "127.0.0.1:$PB"}
YAML
rc=0
out=$(ferry_cmd check -c "$P/good.yaml" 2>&1) || rc=$?
[ "$rc" = 0 ] || fail "ferry check good.yaml: exit $rc: $out"
pass "check good.yaml"

# Line 10 col 5: an unknown key; line 12 col 22: a bad duration.
cat >"$P/bad.yaml" <<YAML
tls:
  cert: node1.crt
  key: node1.key
  ca: ca.crt
listeners:
  - name: in
    mode: inbound
    listen: "127.0.0.1:$PIN"
    backend: "127.0.0.1:$PB"
    bogus_key: 1
limits:
  handshake_timeout: 10 parsecs
YAML
rc=0
out=$(ferry_cmd check -c "$P/bad.yaml" 2>&1) || rc=$?
[ "$rc" = 1 ] || fail "ferry check bad.yaml: exit $rc, expected 1: $out"
grep -q 'bad.yaml:10:5' <<<"$out" || fail "check bad.yaml: no bad.yaml:10:5 for the unknown key: $out"
grep -q 'bogus_key' <<<"$out" || fail "check bad.yaml: the unknown key is not named: $out"
grep -q 'bad.yaml:12:' <<<"$out" || fail "check bad.yaml: the bad duration (line 12) is not reported: $out"
pass "check bad.yaml names file:line:col"

cat >"$P/workers.yaml" <<YAML
tls: {cert: node1.crt, key: node1.key, ca: ca.crt}
workers: many
listeners:
  - {name: in, mode: inbound, listen: "127.0.0.1:$PIN", backend: "127.0.0.1:$PB"}
YAML
rc=0
out=$(ferry_cmd check -c "$P/workers.yaml" 2>&1) || rc=$?
[ "$rc" = 1 ] || fail "check with workers: many: exit $rc, expected 1: $out"
grep -q 'workers.yaml:2:10: workers: expected "auto" or an integer from 1 to 256' <<<"$out" ||
    fail "check workers.yaml: no workers.yaml:2:10 naming the range: $out"
pass "check rejects a bad workers: value with file:line:col"

cat >"$P/dup.yaml" <<YAML
tls: {cert: node1.crt, key: node1.key, ca: ca.crt}
listeners:
  - {name: in, mode: inbound, listen: "127.0.0.1:$PIN", backend: "127.0.0.1:$PB"}
  - {name: in, mode: inbound, listen: "127.0.0.1:$POUT", backend: "127.0.0.1:$PB"}
YAML
rc=0
out=$(ferry_cmd check -c "$P/dup.yaml" 2>&1) || rc=$?
[ "$rc" = 1 ] || fail "check with duplicate listener names: exit $rc, expected 1: $out"
grep -q 'dup.yaml:4:' <<<"$out" || fail "check dup.yaml: the duplicate (line 4) is not located: $out"
pass "check rejects duplicate listener names"

cat >"$P/missing.yaml" <<YAML
tls: {cert: node1.crt, key: node1.key, ca: no-such-ca.crt}
listeners:
  - {name: in, mode: inbound, listen: "127.0.0.1:$PIN", backend: "127.0.0.1:$PB"}
YAML
rc=0
out=$(ferry_cmd check -c "$P/missing.yaml" 2>&1) || rc=$?
[ "$rc" = 1 ] || fail "check with a missing CA file: exit $rc, expected 1: $out"
grep -q 'no-such-ca.crt' <<<"$out" || fail "check missing.yaml: the missing file is not named: $out"
pass "check names a missing file"

rc=0
out=$(ferry_cmd check -c "$P/no-such-config.yaml" 2>&1) || rc=$?
[ "$rc" = 1 ] || fail "check -c on a missing config: exit $rc, expected 1: $out"
rc=0
out=$(ferry_cmd check --config="$P/good.yaml" --json 2>&1) || rc=$?
[ "$rc" = 0 ] && [[ $out == "{"* ]] || fail "ferry check --config=FILE --json: exit $rc: $out"
rc=0
out=$(ferry_cmd check --json --config "$P/good.yaml" -- 2>&1) || rc=$?
[ "$rc" = 0 ] && [[ $out == "{"* ]] || fail "ferry check --json --config FILE --: exit $rc: $out"
rc=0
out=$(ferry_cmd certs inspect --ca="$P/ca.crt" -- "$P/node1.crt" 2>&1) || rc=$?
[ "$rc" = 0 ] || fail "ferry certs inspect --ca=BUNDLE -- CERT: exit $rc: $out"
pass "check and inspect: --opt=value and --"

# ---- certs init-ca / issue ----
C=$T/ca
rc=0
out=$(ferry_cmd certs init-ca --dir "$C" --name "IT Test CA" 2>&1) || rc=$?
[ "$rc" = 0 ] || fail "certs init-ca: exit $rc: $out"
[ -f "$C/ca.crt" ] && [ -f "$C/ca.key" ] || fail "certs init-ca: no $C/ca.crt or ca.key"
[ "$(stat -c %a "$C/ca.key")" = 600 ] || fail "ca.key mode $(stat -c %a "$C/ca.key"), expected 600"
openssl x509 -in "$C/ca.crt" -noout -subject | grep -q 'IT Test CA' || fail "CA subject lacks --name"
openssl x509 -in "$C/ca.crt" -noout -ext basicConstraints | grep -q 'CA:TRUE' ||
    fail "CA lacks basicConstraints CA:TRUE"
rc=0
ferry_cmd certs init-ca --dir "$C" >/dev/null 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "certs init-ca over an existing CA: exit $rc, expected 1 (must not overwrite)"
pass "certs init-ca"

O=$T/issued
rc=0
out=$(ferry_cmd certs issue --ca "$C" --name node9.test --dns alt9.test --dns other9.test \
    --ip 127.0.0.1 --out "$O" 2>&1) || rc=$?
[ "$rc" = 0 ] || fail "certs issue: exit $rc: $out"
for f in node9.test.crt node9.test.key ca.crt; do
    [ -f "$O/$f" ] || fail "certs issue did not write $O/$f"
done
[ "$(stat -c %a "$O/node9.test.key")" = 600 ] || fail "node9.test.key mode $(stat -c %a "$O/node9.test.key")"
for purpose in sslserver sslclient; do
    v=$(openssl verify -CAfile "$C/ca.crt" -purpose "$purpose" "$O/node9.test.crt" 2>&1) ||
        fail "openssl verify -purpose $purpose: $v"
done
cmp -s "$C/ca.crt" "$O/ca.crt" || fail "OUT/ca.crt differs from the CA's ca.crt"
san=$(openssl x509 -in "$O/node9.test.crt" -noout -ext subjectAltName)
for s in DNS:node9.test DNS:alt9.test DNS:other9.test 'IP Address:127.0.0.1'; do
    grep -q "$s" <<<"$san" || fail "issued SAN lacks $s: $san"
done
txt=$(openssl x509 -in "$O/node9.test.crt" -noout -text)
grep -q 'CA:FALSE' <<<"$txt" || fail "issued leaf lacks CA:FALSE"
grep -q 'TLS Web Server Authentication' <<<"$txt" || fail "issued leaf lacks serverAuth"
grep -q 'TLS Web Client Authentication' <<<"$txt" || fail "issued leaf lacks clientAuth"
grep -Eq 'prime256v1|P-256' <<<"$txt" || fail "default key type is not ECDSA P-256"
pub1=$(openssl x509 -in "$O/node9.test.crt" -noout -pubkey)
pub2=$(openssl pkey -in "$O/node9.test.key" -pubout)
[ "$pub1" = "$pub2" ] || fail "issued key does not match the certificate"
rc=0
out=$(ferry_cmd certs issue --ca "$C" --name rsa9.test --key-type rsa --days 30 --out "$O" 2>&1) || rc=$?
[ "$rc" = 0 ] || fail "certs issue --key-type rsa: exit $rc: $out"
openssl x509 -in "$O/rsa9.test.crt" -noout -text | grep -q 'rsaEncryption' || fail "--key-type rsa gave no RSA key"
end=$(openssl x509 -in "$O/rsa9.test.crt" -noout -enddate | cut -d= -f2)
days=$(( ($(date -d "$end" +%s) - $(date +%s)) / 86400 ))
[ "$days" -ge 29 ] && [ "$days" -le 31 ] || fail "--days 30 gave $days days"
rc=0
out=$(ferry_cmd certs issue --ca="$C" --name=eq9.test --dns=alt-eq9.test --out="$O" -- 2>&1) || rc=$?
[ "$rc" = 0 ] || fail "certs issue --opt=value ... --: exit $rc: $out"
openssl x509 -in "$O/eq9.test.crt" -noout -ext subjectAltName | grep -q 'DNS:alt-eq9.test' ||
    fail "certs issue --dns=NAME: not in the SAN"
pass "certs issue"

# ---- the issued certificates work for a real run ----
PB2=$(free_port)
http_backend "$PB2"
cat >"$O/run.yaml" <<YAML
tls: {cert: node9.test.crt, key: node9.test.key, ca: ca.crt}
listeners:
  - {name: in, mode: inbound, listen: "127.0.0.1:$PIN", backend: "127.0.0.1:$PB2"}
YAML
ferry_start run "$O/run.yaml"
expect_log run "event=listening.*listener=in.*127\.0\.0\.1:$PIN|event=listening.*127\.0\.0\.1:$PIN.*listener=in"
code=$(curl_code --cacert "$O/ca.crt" --cert "$O/node9.test.crt" --key "$O/node9.test.key" \
    --resolve "node9.test:$PIN:127.0.0.1" "https://node9.test:$PIN/cli-check")
[ "$code" = 200 ] || fail "curl through ferry with issued certs: HTTP $code"
grep -q '/cli-check' "$T/curl.body" || fail "backend body does not echo the path: $(cat "$T/curl.body")"
ferry_stop run
pass "ferry run with issued certificates"
