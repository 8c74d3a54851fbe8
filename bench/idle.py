#!/usr/bin/env python3
"""bench/idle.py: hold N idle keep-alive connections open through a proxy pair.

Opens N TCP connections to 127.0.0.1:PORT in batches, sends one keep-alive GET on each and
reads its whole response (so that the whole chain -- client -> outbound proxy -> mTLS ->
inbound proxy -> backend -- is established and its TLS handshakes are done), then prints
"READY ok=K failed=F" and holds every connection open, idle, until the file STOP exists or
HOLD seconds have passed.  bench/run.sh measures the proxies' RSS while the connections wait.

With --sources K (K > 1) the client connections come from 127.0.0.2 .. 127.0.0.(K+1) in turn,
so that more connections than one source address has ephemeral ports can be held.

Usage: idle.py --port PORT --n N --path /86 --stop FILE [--hold 60] [--batch 50] [--sources K]
Exit status: 0 when every connection got a 200 answer, 1 otherwise.
"""
import argparse
import os
import selectors
import socket
import sys
import time

IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h


def read_response(sock, deadline):
    """Read one HTTP/1.1 response with a Content-Length body; return its status or 0."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        if time.monotonic() > deadline:
            return 0
        chunk = sock.recv(65536)
        if not chunk:
            return 0
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return 0
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        if time.monotonic() > deadline:
            return 0
        chunk = sock.recv(65536)
        if not chunk:
            return 0
        body += chunk
    return status


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--path", default="/86")
    ap.add_argument("--stop", required=True)
    ap.add_argument("--hold", type=float, default=60.0)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--sources", type=int, default=1)
    args = ap.parse_args()

    req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % args.path).encode()
    conns, failed = [], 0
    for start in range(0, args.n, args.batch):
        batch = []
        for _ in range(min(args.batch, args.n - start)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(args.timeout)
            try:
                if args.sources > 1:
                    # the port is chosen at connect(), per destination (IP_BIND_ADDRESS_NO_PORT)
                    s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                    s.bind(("127.0.0.%d" % (2 + (start + len(batch)) % args.sources), 0))
                s.connect(("127.0.0.1", args.port))
                s.sendall(req)
                batch.append(s)
            except OSError:
                failed += 1
                s.close()
        deadline = time.monotonic() + args.timeout
        for s in batch:
            try:
                status = read_response(s, deadline)
            except OSError:
                status = 0
            if status == 200:
                conns.append(s)
            else:
                failed += 1
                s.close()
    print("READY ok=%d failed=%d" % (len(conns), failed), flush=True)

    # Hold: watch for a peer closing (counted, not fatal) until told to stop.
    sel = selectors.DefaultSelector()
    for s in conns:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    closed = 0
    end = time.monotonic() + args.hold
    while time.monotonic() < end and not os.path.exists(args.stop):
        for key, _ in sel.select(timeout=0.1):
            sel.unregister(key.fileobj)
            key.fileobj.close()
            closed += 1
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    print("DONE closed_by_peer=%d" % closed, flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
