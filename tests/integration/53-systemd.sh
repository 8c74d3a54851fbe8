#!/usr/bin/env bash
# Goal: CONTRACT 9 (systemd) and 3 (user:): sd_notify READY=1 / RELOADING=1 + READY=1 /
# STOPPING=1 over $NOTIFY_SOCKET; `user: root` and an unknown user are refused.  The privilege
# drop itself (`user: nobody`, root only) is 53-privs.sh.
# valgrind: yes
# timeout: 120
#
# sd_notify: with NOTIFY_SOCKET pointing at an AF_UNIX datagram socket (a path, then an
# abstract "@name"), ferry sends READY=1 once it serves, RELOADING=1 then READY=1 for each
# SIGHUP (also for a reload that fails), and STOPPING=1 on SIGTERM, in that order and nothing
# else.  `user: root` and an unknown user exit 1 at start (as any user).
source "$(dirname "$0")/lib.sh"

node1_pki "Ferry Privs Test CA"
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
