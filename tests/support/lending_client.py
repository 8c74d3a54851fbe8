#!/usr/bin/env python3
"""Keep-alive HTTP/1.1 clients for 36-lending.sh (peer connections lent per request).

Talks to an outbound ferry whose peer chain ends at pool_backend.py (Content-Length bodies,
X-Conn = the backend connection, that is the mTLS connection, a response came on).

  idle PORT N FLAG      open N connections, send one GET on each (all at once), read every
                        response, print "READY"; once the file FLAG exists send a second GET on
                        each connection and check it; print "OK N"
  seq PORT C R          C concurrent connections, R sequential GETs each; print "OK C*R"
  pipeline PORT K       one connection, K GETs in one write; the responses must come back in
                        order, with the expected bodies and nothing more; print "OK K conns=..."
  big PORT              one connection: POST /echo with 1 MiB of random bytes, then GET /big;
                        both bodies byte-exact; print "OK"
Exit status 0 on success, 1 with a message on stderr otherwise.
"""
import os
import socket
import sys
import threading
import time

BIG = bytes((i * 7 + (i >> 10)) & 0xFF for i in range(1 << 20))
TIMEOUT = 20


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def _fill(self):
        d = self.s.recv(1 << 20)
        if not d:
            raise RuntimeError("connection closed by ferry")
        self.buf += d

    def response(self):
        """One response: (status, headers dict, body, raw bytes)."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        self.buf = rest
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body, head + b"\r\n\r\n" + body

    def close(self):
        self.s.close()


def get(path):
    return ("GET %s HTTP/1.1\r\nHost: peer\r\n\r\n" % path).encode()


def expect(conn, path):
    status, headers, body, _ = conn.response()
    want = ("hello GET %s\n" % path).encode()
    if status != 200 or body != want:
        raise RuntimeError("%s: HTTP %d, body %r" % (path, status, body[:80]))
    return headers.get("x-conn")


def cmd_idle(port, n, flag):
    conns = [Conn(port) for _ in range(n)]
    for i, c in enumerate(conns):
        c.send(get("/idle/%d" % i))
    for i, c in enumerate(conns):
        expect(c, "/idle/%d" % i)
    print("READY", flush=True)
    end = time.monotonic() + 60
    while not os.path.exists(flag):
        if time.monotonic() > end:
            raise RuntimeError("no flag file")
        time.sleep(0.05)
    for i, c in enumerate(conns):
        c.send(get("/again/%d" % i))
        expect(c, "/again/%d" % i)
    for c in conns:
        c.close()
    print("OK %d" % n)


def cmd_seq(port, n_clients, n_reqs):
    errors = []

    def one(k):
        try:
            c = Conn(port)
            for r in range(n_reqs):
                c.send(get("/seq/%d/%d" % (k, r)))
                expect(c, "/seq/%d/%d" % (k, r))
            c.close()
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append("client %d: %s" % (k, e))

    threads = [threading.Thread(target=one, args=(k,)) for k in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError("; ".join(errors[:3]))
    print("OK %d" % (n_clients * n_reqs))


def cmd_pipeline(port, k):
    c = Conn(port)
    c.send(b"".join(get("/pipe/%d" % i) for i in range(k)))
    conns = []
    for i in range(k):
        conns.append(expect(c, "/pipe/%d" % i))
    c.s.settimeout(0.5)
    try:
        extra = c.s.recv(65536)
    except socket.timeout:
        extra = b""
    if c.buf or extra:
        raise RuntimeError("bytes after the last response: %r" % (c.buf + extra)[:80])
    c.close()
    print("OK %d conns=%s" % (k, ",".join(sorted(set(conns)))))


def cmd_big(port):
    body = os.urandom(1 << 20)
    c = Conn(port)
    c.send(b"POST /echo HTTP/1.1\r\nHost: peer\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    status, _, got, _ = c.response()
    if status != 200 or got != body:
        raise RuntimeError("POST /echo 1 MiB: HTTP %d, %d bytes, equal=%s" %
                           (status, len(got), got == body))
    c.send(get("/big"))
    status, _, got, _ = c.response()
    if status != 200 or got != BIG:
        raise RuntimeError("GET /big: HTTP %d, %d bytes, equal=%s" % (status, len(got), got == BIG))
    c.close()
    print("OK")


def main():
    cmd, port = sys.argv[1], int(sys.argv[2])
    try:
        if cmd == "idle":
            cmd_idle(port, int(sys.argv[3]), sys.argv[4])
        elif cmd == "seq":
            cmd_seq(port, int(sys.argv[3]), int(sys.argv[4]))
        elif cmd == "pipeline":
            cmd_pipeline(port, int(sys.argv[3]))
        elif cmd == "big":
            cmd_big(port)
        else:
            raise RuntimeError("unknown command " + cmd)
    except Exception as e:  # noqa: BLE001 (the test reads stderr)
        print("lending_client %s: %s" % (cmd, e), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
