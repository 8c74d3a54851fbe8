#!/usr/bin/env bash
# Goal: the deploy material works with files laid out the way the platforms lay them out, with
# the configs as shipped (only ports and paths rewritten), ferry running as a non-root user
# that reads root-owned files through its group.
# (a) Kubernetes: the ferry.yaml of deploy/kubernetes's ConfigMap; secret volumes as the
# kubelet writes them (a ..TIMESTAMP directory, a ..data symlink to it, tls.crt ->
# ..data/tls.crt, files root:GROUP mode 0440 with GROUP the container's group): ferry starts,
# logs key-group-readable once per secret (warn event=finding), serves a TLS request with
# proxy authentication; an atomic ..data swap to a renewed certificate and key is picked up
# (event=reloaded, the new certificate presented, the warning logged again) without a restart.
# (b) systemd: deploy/ferry.example.yaml in /etc/ferry as deploy/systemd/ferry.service lays it
# out (directory root:ferry 0750, key root:ferry 0640, certificates 0644): starts with the
# warning and serves; the key made readable by others is refused by run with check's finding
# (key-permissions, same id, file, text and fix).
# Needs root (users, chown, setpriv); exits 77 (skipped) otherwise.
# timeout: 90
source "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || skip "45-layouts needs root to create a user and root-owned files"

for tool in setpriv useradd groupadd; do
    command -v "$tool" >/dev/null || fail "$tool is missing (util-linux, passwd)"
done
U=ferry-layouts
getent group "$U" >/dev/null || groupadd --system "$U" || fail "groupadd $U"
getent passwd "$U" >/dev/null ||
    useradd --system --gid "$U" --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$U" ||
    fail "useradd $U"

# Everything the user must reach lives under one 0755 directory outside the build tree (whose
# parents may be private), with a copy of the binary; removed on exit.
L=$(mktemp -d /tmp/ferry-layouts.XXXXXX)
chmod 755 "$L"
layouts_cleanup() {
    local rc=$?
    set +e
    rm -rf -- "$L"
    (exit "$rc")
    _lib_cleanup # reads the status of the line above
}
trap layouts_cleanup EXIT
REAL=$L/ferry
cp "$FERRY_BIN" "$REAL"
chmod 755 "$REAL"
cat >"$L/ferry-as-user" <<EOF
#!/bin/sh
exec setpriv --reuid=$U --regid=$U --init-groups -- "$REAL" "\$@"
EOF
chmod 755 "$L/ferry-as-user"
FERRY_BIN=$L/ferry-as-user # ferry_start, ferry_cmd and same_findings run ferry as $U
[ "$(setpriv --reuid=$U --regid=$U --init-groups id -u)" != 0 ] || fail "setpriv did not drop root"

# ---- a PKI made with ferry certs (as root) ----
CA=$T/ca
"$REAL" certs init-ca --dir "$CA" --name "Layouts CA" >"$T/pki.log" 2>&1 || fail "certs init-ca"
issue() { # issue NAME OUTDIR
    "$REAL" certs issue --ca "$CA" --name "$1" --dns localhost --ip 127.0.0.1 --out "$2" \
        >>"$T/pki.log" 2>&1 || { cat "$T/pki.log" >&2; fail "certs issue $1"; }
}
issue couchdb.site-a.example.org "$T/site-a.1"
issue couchdb.site-a.example.org "$T/site-a.2" # the renewal: new key, new certificate
issue couchdb.site-b.example.org "$T/site-b"
issue node1.example.org "$T/node1"
issue node2.example.org "$T/node2"

# rewrite SRC ROOT DST: the shipped config SRC with /etc/ferry/ under ROOT and every listen:
# and backend: address on 127.0.0.1 (fresh ports; backends to $PB).  Nothing else changes.
PB=$(free_port)
rewrite() {
    python3 - "$1" "$2" "$3" "$PB" "$(free_port)" "$(free_port)" "$(free_port)" "$(free_port)" <<'PY'
import re, sys
src, root, dst, backend = sys.argv[1:5]
ports = sys.argv[5:]
out = []
for line in open(src):
    line = line.replace("/etc/ferry/", root + "/etc/ferry/")
    m = re.match(r'^(\s*(?:-\s*)?)(listen|backend)(:\s*)"[^"]*"(.*)$', line.rstrip("\n"))
    if m:
        value = "127.0.0.1:" + (backend if m.group(2) == "backend" else ports.pop(0))
        line = '%s%s%s"%s"%s\n' % (m.group(1), m.group(2), m.group(3), value, m.group(4))
    out.append(line)
open(dst, "w").write("".join(out))
PY
}

# listen_port NAME LISTENER: the port of LISTENER from ferry NAME's event=listening (text or JSON)
listen_port() {
    python3 - "$T/$1.log" "$2" <<'PY'
import json, re, sys
for line in open(sys.argv[1]):
    if line.startswith("{"):
        d = json.loads(line)
    else:
        d = dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))
    if d.get("event") == "listening" and d.get("listener") == sys.argv[2]:
        print(d["addr"].rsplit(":", 1)[1])
        break
PY
}

# wait_ready NAME: ferry_start for any log format
wait_ready() {
    local end=$((SECONDS + READY_SECS))
    until grep -Eq 'event=ready|"event":"ready"' "$T/$1.log"; do
        ferry_alive "$1" || { cat "$T/$1.log" >&2; fail "ferry $1 exited before it was ready"; }
        [ "$SECONDS" -lt "$end" ] || fail "ferry $1 not ready after ${READY_SECS}s"
        sleep 0.1
    done
}

count() { # count NAME ID [LEVEL]: event=finding lines of ferry NAME with that id (and level)
    local name=$1
    shift
    python3 "$SUPPORT/findings.py" count "$T/$name.log" "$@"
}

# fp_port PORT NAME: the sha256 fingerprint of the certificate a new handshake presents
fp_port() {
    timeout 10 openssl s_client -connect "127.0.0.1:$1" -servername "$2" \
        -cert "$T/site-b/couchdb.site-b.example.org.crt" \
        -key "$T/site-b/couchdb.site-b.example.org.key" </dev/null 2>/dev/null |
        openssl x509 -noout -fingerprint -sha256 2>/dev/null | cut -d= -f2
}
fp_file() { openssl x509 -in "$1" -noout -fingerprint -sha256 | cut -d= -f2; }

http_backend "$PB" couchdb

# ---- (a) Kubernetes secret volumes ----
K=$L/k8s
# volume DIR TS FILE=SRC...: a secret volume as the kubelet writes it (AtomicWriter): the files
# in DIR/..TS (root:$U 0440), DIR/..data -> ..TS swapped by rename, DIR/FILE -> ..data/FILE.
volume() {
    local dir=$1 ts=$2 kv
    shift 2
    mkdir -p "$dir/..$ts"
    chmod 755 "$dir" "$dir/..$ts"
    for kv in "$@"; do
        cp "${kv#*=}" "$dir/..$ts/${kv%%=*}"
        chown "root:$U" "$dir/..$ts/${kv%%=*}"
        chmod 0440 "$dir/..$ts/${kv%%=*}"
        [ -L "$dir/${kv%%=*}" ] || ln -s "..data/${kv%%=*}" "$dir/${kv%%=*}"
    done
    ln -s "..$ts" "$dir/..data_tmp"
    mv -T "$dir/..data_tmp" "$dir/..data" # rename(2): atomic, as the kubelet swaps it
}
A1=$T/site-a.1/couchdb.site-a.example.org
A2=$T/site-a.2/couchdb.site-a.example.org
volume "$K/etc/ferry/tls" 2026_12_05_00_00_00.123 tls.crt="$A1.crt" tls.key="$A1.key" ca.crt="$CA/ca.crt"
printf '%s\n' "$(openssl rand -hex 32)" >"$T/couchdb.secret"
volume "$K/etc/ferry/couchdb" 2026_12_05_00_00_00.123 secret="$T/couchdb.secret"
mkdir -p "$K/etc/ferry/config"
chmod 755 "$K" "$K/etc" "$K/etc/ferry" "$K/etc/ferry/config"
k8s_configmap_yaml "$T/k8s.src.yaml"
rewrite "$T/k8s.src.yaml" "$K" "$K/etc/ferry/config/ferry.yaml"
chmod 644 "$K/etc/ferry/config/ferry.yaml"
[ "$(stat -c '%U:%G %a' "$K/etc/ferry/tls/..data/tls.key")" = "root:$U 440" ] || fail "layout: tls.key not root:$U 0440"

ferry_spawn k8s "$K/etc/ferry/config/ferry.yaml"
wait_ready k8s
[ "$(count k8s key-group-readable warn)" = 2 ] ||
    fail "k8s: expected key-group-readable once for tls.key and once for the secret: $(grep finding "$T/k8s.log")"
grep -q "\"file\":\"$K/etc/ferry/tls/tls.key\"" "$T/k8s.log" || fail "k8s: the finding does not name tls.key as configured"
[ "$(count k8s key-permissions)" = 0 ] || fail "k8s: key-permissions for 0440 files"
PIN=$(listen_port k8s from-peers)
[ -n "$PIN" ] || fail "k8s: no listening line for from-peers"
[ "$(ps -o user= -p "$(ferry_pid k8s)" | tr -d ' ')" = "$U" ] || fail "k8s: ferry does not run as $U"
B=$T/site-b/couchdb.site-b.example.org
code=$(curl_code --cacert "$CA/ca.crt" --cert "$B.crt" --key "$B.key" \
    --resolve "couchdb.site-a.example.org:$PIN:127.0.0.1" "https://couchdb.site-a.example.org:$PIN/")
[ "$code" = 200 ] || fail "k8s: GET / through from-peers: HTTP $code $(cat "$T/curl.body")"
grep -qi '"x-auth-couchdb-username": *"couchdb.site-b.example.org"' "$T/curl.body" ||
    fail "k8s: the backend got no proxy-auth user name: $(cat "$T/curl.body")"
pass "k8s: starts as $U on 0440 root:$U secret volumes, one key-group-readable per secret, serves mTLS"

# The renewal: a new ..TIMESTAMP directory, then the ..data swap; no signal, no restart.
[ "$(fp_port "$PIN" couchdb.site-a.example.org)" = "$(fp_file "$A1.crt")" ] || fail "k8s: not presenting the first certificate"
r0=$(grep -c '"event":"reloaded"' "$T/k8s.log" || true)
volume "$K/etc/ferry/tls" 2026_12_05_00_10_00.456 tls.crt="$A2.crt" tls.key="$A2.key" ca.crt="$CA/ca.crt"
expect_log k8s '"event":"reloaded".*"trigger":"file change"' 10
[ "$(grep -c '"event":"reloaded"' "$T/k8s.log")" -gt "$r0" ] || fail "k8s: no new event=reloaded"
expect_no_log k8s '"event":"reload_failed"'
[ "$(fp_port "$PIN" couchdb.site-a.example.org)" = "$(fp_file "$A2.crt")" ] ||
    fail "k8s: the renewed certificate is not presented after the ..data swap"
[ "$(count k8s key-group-readable warn)" -ge 3 ] || fail "k8s: the warning was not logged again after the reload"
code=$(curl_code --cacert "$CA/ca.crt" --cert "$B.crt" --key "$B.key" \
    --resolve "couchdb.site-a.example.org:$PIN:127.0.0.1" "https://couchdb.site-a.example.org:$PIN/")
[ "$code" = 200 ] || fail "k8s: after the renewal: HTTP $code"
ferry_alive k8s || fail "k8s: ferry exited"
ferry_stop k8s
pass "k8s: ..data swap to a renewed certificate reloaded without a restart, warnings logged again"

# ---- (b) systemd: /etc/ferry root:ferry 0750, the key root:ferry 0640 ----
S=$L/systemd
E=$S/etc/ferry
mkdir -p "$E"
chmod 755 "$S" "$S/etc"
chown "root:$U" "$E"
chmod 0750 "$E"
N1=$T/node1/node1.example.org
install -m 0644 -o root -g root "$N1.crt" "$E/node1.example.org.crt"
install -m 0640 -o root -g "$U" "$N1.key" "$E/node1.example.org.key"
install -m 0644 -o root -g root "$CA/ca.crt" "$E/ca.crt"
rewrite "$FERRY_SRC/deploy/ferry.example.yaml" "$S" "$E/ferry.yaml"
chmod 0644 "$E/ferry.yaml"

ferry_start systemd "$E/ferry.yaml"
[ "$(count systemd key-group-readable warn)" = 1 ] || fail "systemd: expected one key-group-readable: $(grep finding "$T/systemd.log")"
PS=$(listen_port systemd from-peers)
N2=$T/node2/node2.example.org
code=$(curl_code --cacert "$CA/ca.crt" --cert "$N2.crt" --key "$N2.key" \
    --resolve "node1.example.org:$PS:127.0.0.1" "https://node1.example.org:$PS/db")
[ "$code" = 200 ] || fail "systemd: GET /db from node2: HTTP $code"
ferry_stop systemd
pass "systemd: root:$U 0640 key in a root:$U 0750 /etc/ferry: starts as $U with one warning, serves"

chmod 0644 "$E/node1.example.org.key"
ferry_expect_exit 1 systemd-open "$E/ferry.yaml"
ids=$(same_findings systemd-open "$E/ferry.yaml" key-permissions)
[ "$ids" = key-permissions ] || fail "systemd: a key readable by others gave $ids"
pass "systemd: a key readable by others is refused by run with check's finding ($ids)"
