#!/usr/bin/env python3
"""Sample how many accepted client connections a process holds, for tests/faults/.

  conncount.py PID PORT STOPFILE [MAXSECS]

Every 50 ms: the sockets in /proc/PID/fd that /proc/net/tcp lists as ESTABLISHED with local
port PORT (connections PID accepted on its listener; ones still in the kernel backlog are not
in its descriptor table).  Stops when STOPFILE exists (or after MAXSECS, default 300) and
prints "max=N samples=M".
"""
import os
import sys
import time


def held(pid, port):
    """Established sockets on local port ${port} in ${pid}'s descriptor table."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            t = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if t.startswith("socket:["):
            inodes.add(t[8:-1])
    seen = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = open(path).read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            c = row.split()
            if c[3] == "01" and int(c[1].rsplit(":", 1)[1], 16) == port and c[9] in inodes:
                # /proc/net/tcp read while sockets come and go can list one socket twice.
                seen.add(c[9])
    return len(seen)


def main():
    pid, port, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    end = time.time() + (float(sys.argv[4]) if len(sys.argv) > 4 else 300)
    mx = samples = 0
    while not os.path.exists(stop) and time.time() < end:
        try:
            mx = max(mx, held(pid, port))
        except OSError:
            break
        samples += 1
        time.sleep(0.05)
    print(f"max={mx} samples={samples}", flush=True)


if __name__ == "__main__":
    main()
