#!/usr/bin/env bash
# Goal: CONTRACT 3 (user:): `user: nobody` binds a port below 1024 and reads its root-only key
# as root, then runs as nobody and still serves.
# valgrind: yes
# timeout: 120
#
# Needs root (chown, su, a port below 1024); exits 77 (skipped, with the reason) otherwise.
# ferry logs event=privileges_dropped, all four /proc/PID/status Uid and Gid fields are
# nobody's, no other groups remain, mTLS requests get 200; no spurious reload follows; a SIGHUP
# that would need the key again fails and the old config keeps serving.  (`user: root` and an
# unknown user are refused: 53-systemd.sh, as any user.)
source "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "the privilege drop needs root (running as uid $(id -u))"
node1_pki "Ferry Privs Test CA"
PBE=$(free_port)
http_backend "$PBE" backend

id nobody >/dev/null 2>&1 || fail "no user 'nobody' on this machine"
NU=$(id -u nobody) NG=$(id -g nobody)
# a port below 1024 proves the bind happened as root
LOW=$(python3 - <<'PY'
import socket
for p in [844] + list(range(845, 1000)):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    print(p)
    break
PY
)
[ -n "$LOW" ] || fail "no free port below 1024 on 127.0.0.1"
# key 0600 root; directories searchable (as /etc/ferry would be)
chmod 755 "$P" "$P/n"
chown root:root "$KEY"
chmod 600 "$KEY"
su -s /bin/sh nobody -c "cat '$KEY'" >/dev/null 2>&1 && fail "nobody can read $KEY; the test would prove nothing"
# The files must stay visible (stat) to nobody, as under /etc/ferry: let it search our own
# work directories (a mktemp -d parent is 0700).
for d in "$FERRY_TEST_TMP" "$T"; do chmod o+x "$d"; done
su -s /bin/sh nobody -c "test -e '$KEY' && test -r '$CRT'" ||
    fail "nobody cannot see $KEY / read $CRT (is a parent of $FERRY_TEST_TMP closed to others?)"
PADM=$(free_port)
cat >"$T/privs.yaml" <<EOF
tls: {cert: $CRT, key: $KEY, ca: $CA}
user: nobody
admin: {listen: "127.0.0.1:$PADM"}
listeners:
  - {name: low, mode: inbound, listen: "127.0.0.1:$LOW", backend: "127.0.0.1:$PBE", protocol: http}
EOF
chmod 644 "$T/privs.yaml"
ferry_start privs "$T/privs.yaml"
PID=$(ferry_pid privs)
expect_log privs "event=privileges_dropped user=nobody uid=$NU"
st=/proc/$PID/status
uids=$(awk '/^Uid:/ { print $2, $3, $4, $5 }' "$st")
gids=$(awk '/^Gid:/ { print $2, $3, $4, $5 }' "$st")
groups=$(awk '/^Groups:/ { $1 = ""; print }' "$st" | xargs)
[ "$uids" = "$NU $NU $NU $NU" ] || fail "Uid (real, effective, saved, fs) is '$uids', expected nobody ($NU)"
[ "$gids" = "$NG $NG $NG $NG" ] || fail "Gid is '$gids', expected nobody's group ($NG)"
[ -z "$groups" ] || [ "$groups" = "$NG" ] || fail "supplementary groups left: '$groups'"
pass "after start ferry runs as nobody: Uid $uids, Gid $gids, groups '${groups}'"
ss -Hltn "sport = :$LOW" 2>/dev/null | grep -q LISTEN || wait_port "$LOW" 5
req() {
    curl_code --cacert "$CA" --cert "$CRT" --key "$KEY" --resolve "node1.test:$LOW:127.0.0.1" \
        "https://node1.test:$LOW/as-nobody"
}
[ "$(req)" = 200 ] || fail "mTLS request to 127.0.0.1:$LOW answered $(req) after the drop"
[ "$(curl_code "http://127.0.0.1:$PADM/healthz")" = 200 ] || fail "/healthz not 200 after the drop"
pass "it serves mTLS on 127.0.0.1:$LOW (bound as root) with the root-only key read before the drop"
# nothing changed: no spurious reload once the files are checked as nobody
sleep 3
expect_no_log privs 'event=(file_changed|reload_failed|reloaded)'
# a reload needs the key again, which nobody cannot read: it fails and the old config serves
kill -HUP "$PID"
expect_log privs 'event=reload_failed trigger=SIGHUP' 10
ferry_alive privs || fail "ferry exited after a reload it could not do"
[ "$(req)" = 200 ] || fail "after the failed reload the old config does not serve: $(req)"
pass "SIGHUP as nobody with a root-only key: event=reload_failed, the old config keeps serving"
ferry_stop privs
