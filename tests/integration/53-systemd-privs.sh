#!/usr/bin/env bash
# Goal: CONTRACT 9 (systemd) and 3 (user:): sd_notify READY=1 / RELOADING=1 + READY=1 /
# STOPPING=1 over $NOTIFY_SOCKET; `user: nobody` binds a port below 1024 and reads its
# root-only key as root, then runs as nobody and still serves; `user: root` is refused.
# valgrind: yes
# timeout: 120
#
# sd_notify: with NOTIFY_SOCKET pointing at an AF_UNIX datagram socket (a path, then an
# abstract "@name"), ferry sends READY=1 once it serves, RELOADING=1 then READY=1 for each
# SIGHUP (also for a reload that fails), and STOPPING=1 on SIGTERM, in that order and nothing
# else.  Privilege drop (root only; otherwise skipped with the reason printed): ferry logs
# event=privileges_dropped, all four /proc/PID/status Uid and Gid fields are nobody's, no other
# groups remain, mTLS requests get 200; no spurious reload follows; a SIGHUP that would need
# the key again fails and the old config keeps serving.  `user: root` and an unknown user
# exit 1 at start.
source "$(dirname "$0")/lib.sh"

P=$T/pki
out=$(ferry_cmd certs init-ca --dir "$P/ca" --name "Ferry Privs Test CA" 2>&1) || fail "init-ca: $out"
out=$(ferry_cmd certs issue --ca "$P/ca" --name node1.test --ip 127.0.0.1 --out "$P/n" 2>&1) ||
    fail "issue: $out"
CRT=$P/n/node1.test.crt KEY=$P/n/node1.test.key CA=$P/n/ca.crt
PBE=$(free_port)
http_backend "$PBE" backend
VGX=$((1 + VG * 5))

# ---- sd_notify ----
cat >"$T/notify.py" <<'PY'
"""notify.py ADDR OUT: receive sd_notify datagrams on ADDR (a path, or @name = abstract) and
append each one to OUT, one per line."""
import os, socket, sys
addr, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + addr[1:] if addr.startswith("@") else addr)
open(out + ".up", "w").close()
while True:
    d = s.recv(4096)
    with open(out, "a") as f:
        for line in d.decode("utf-8", "replace").splitlines():
            f.write(line + "\n")
PY
# msgs FILE: the notifications received so far, space separated
msgs() { tr '\n' ' ' <"$1" 2>/dev/null | sed 's/ $//'; }
wait_msgs() { # wait_msgs FILE WANT: until exactly WANT was received (bounded)
    local end=$((SECONDS + 10 * VGX))
    while [ "$(msgs "$1")" != "$2" ]; do
        if [ "$SECONDS" -ge "$end" ]; then
            fail "sd_notify: received '$(msgs "$1")', expected '$2'"
        fi
        sleep 0.05
    done
}

notify_run() { # notify_run TAG ADDR
    local tag=$1 addr=$2 out=$T/notify-$1.txt pin cfg=$T/notify-$1.yaml
    : >"$out"
    bg_run "notify-$tag" python3 "$T/notify.py" "$addr" "$out"
    local end=$((SECONDS + 10))
    while [ ! -e "$out.up" ]; do
        [ "$SECONDS" -ge "$end" ] && fail "notify listener $addr not up"
        sleep 0.05
    done
    pin=$(free_port)
    cat >"$cfg" <<EOF
tls: {cert: $CRT, key: $KEY, ca: $CA}
listeners:
  - {name: in, mode: inbound, listen: "127.0.0.1:$pin", backend: "127.0.0.1:$PBE", protocol: http}
EOF
    NOTIFY_SOCKET=$addr ferry_start "n-$tag" "$cfg"
    wait_msgs "$out" "READY=1"
    pass "sd_notify ($addr): READY=1 after start"
    kill -HUP "$(ferry_pid "n-$tag")"
    wait_msgs "$out" "READY=1 RELOADING=1 READY=1"
    expect_log "n-$tag" 'event=reloaded trigger=SIGHUP'
    # a reload that fails still ends with READY=1 (the old config serves)
    cp "$cfg" "$cfg.good"
    echo 'listeners: [' >"$cfg"
    kill -HUP "$(ferry_pid "n-$tag")"
    wait_msgs "$out" "READY=1 RELOADING=1 READY=1 RELOADING=1 READY=1"
    expect_log "n-$tag" 'event=reload_failed'
    cp "$cfg.good" "$cfg"
    pass "sd_notify ($addr): RELOADING=1 then READY=1 on SIGHUP, also when the reload fails"
    ferry_stop "n-$tag"
    sleep 0.2
    [ "$(msgs "$out")" = "READY=1 RELOADING=1 READY=1 RELOADING=1 READY=1 STOPPING=1" ] ||
        fail "sd_notify ($addr) after SIGTERM: '$(msgs "$out")'"
    pass "sd_notify ($addr): STOPPING=1 on SIGTERM, exit 0"
}
notify_run path "$T/notify.sock"
notify_run abstract "@ferry-test-notify-$$-$RANDOM"

# ---- user: root and an unknown user are refused ----
PX=$(free_port)
for u in root ferry-no-such-user-x; do
    cat >"$T/user-$u.yaml" <<EOF
tls: {cert: $CRT, key: $KEY, ca: $CA}
user: $u
listeners:
  - {name: in, mode: inbound, listen: "127.0.0.1:$PX", backend: "127.0.0.1:$PBE", protocol: http}
EOF
    ferry_expect_exit 1 "user-$u" "$T/user-$u.yaml"
    grep -q "$u" "$T/user-$u.log" || fail "user: $u refused without naming it: $(cat "$T/user-$u.log")"
    expect_no_log "user-$u" 'event=ready'
done
grep -qi 'root' "$T/user-root.log" || fail "user: root refused without saying why"
pass "user: root and an unknown user are refused at start (exit 1)"

# ---- privilege drop ----
if [ "$(id -u)" != 0 ]; then
    echo "SKIP: privilege drop needs root (running as uid $(id -u)); the user: root refusal was tested" >&2
    exit 0
fi
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
