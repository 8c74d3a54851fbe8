#!/usr/bin/env python3
"""Keep-alive HTTP/1.1 clients for 36-lending.sh and 36-inbound-lending.sh (connections to
the other side lent per request).

Talks to an outbound ferry whose peer chain ends at pool_backend.py (Content-Length bodies,
X-Conn = the backend connection, that is the mTLS connection, a response came on), or, with
LENDING_TLS="CA,CERT,KEY[;CERT2,KEY2...]" in the environment, over mTLS to an inbound ferry in
front of pool_backend.py (client k presents certificate k modulo their number).

  idle PORT N FLAG      open N connections, send one GET on each (all at once), read every
                        response, print "READY"; once the file FLAG exists send a second GET on
                        each connection and check it; print "OK N"
  seq PORT C R          C concurrent connections, R sequential GETs each; print "OK C*R"
  pipeline PORT K       one connection, K GETs in one write; the responses must come back in
                        order, with the expected bodies and nothing more; print "OK K conns=..."
  big PORT              one connection: POST /echo with 1 MiB of random bytes, then GET /big;
                        both bodies byte-exact; print "OK"
  hold PORT N FLAG      open N connections (TLS: handshakes done) and send nothing; print
                        "READY"; once FLAG exists send one GET on each and check it; print "OK N"
  whoami PORT R         (TLS, two certificates) two connections, one per certificate, take turns
                        for R sequential GET /whoami each; each answer must name its own
                        certificate (SAN DNS) and never the other's, and no backend connection
                        may serve both; print "OK 2*R conns=A|B" (each one's backend connections)
Exit status 0 on success, 1 with a message on stderr otherwise.
"""
import os
import socket
import ssl
import sys
import threading
import time

BIG = bytes((i * 7 + (i >> 10)) & 0xFF for i in range(1 << 20))
TIMEOUT = 20


def tls_setup():
    """(context per certificate) from LENDING_TLS, or None for plain connections."""
    spec = os.environ.get("LENDING_TLS")
    if not spec:
        return None
    first, *more = spec.split(";")
    ca, cert, key = first.split(",")
    ctxs = []
    for pair in [(cert, key)] + [tuple(m.split(",")) for m in more]:
        ctx = ssl.create_default_context(cafile=ca)
        ctx.check_hostname = False
        ctx.load_cert_chain(pair[0], pair[1])
        ctxs.append(ctx)
    return ctxs


TLS = tls_setup()
made = [0]


class Conn:
    def __init__(self, port, which=None):
        s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        if TLS is not None:
            k = made[0] if which is None else which
            made[0] += 1
            s = TLS[k % len(TLS)].wrap_socket(s, server_hostname="node1.test")
        self.s = s
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


def wait_flag(flag):
    """Wait (60 s at most) until the file ${flag} exists: the test says go on."""
    end = time.monotonic() + 60
    while not os.path.exists(flag):
        if time.monotonic() > end:
            raise RuntimeError("no flag file")
        time.sleep(0.05)


def cmd_idle(port, n, flag):
    conns = [Conn(port) for _ in range(n)]
    for i, c in enumerate(conns):
        c.send(get("/idle/%d" % i))
    for i, c in enumerate(conns):
        expect(c, "/idle/%d" % i)
    print("READY", flush=True)
    wait_flag(flag)
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


def cmd_hold(port, n, flag):
    conns = [Conn(port) for _ in range(n)]
    print("READY", flush=True)
    wait_flag(flag)
    for i, c in enumerate(conns):
        c.send(get("/held/%d" % i))
    for i, c in enumerate(conns):
        expect(c, "/held/%d" % i)
    for c in conns:
        c.close()
    print("OK %d" % n)


def cmd_whoami(port, rounds):
    if TLS is None or len(TLS) < 2:
        raise RuntimeError("whoami needs two certificates in LENDING_TLS")
    names = []
    conns = [Conn(port, 0), Conn(port, 1)]
    seen = [set(), set()]
    backend = [set(), set()]
    for r in range(rounds):
        for k, c in enumerate(conns):
            c.send(get("/whoami/%d/%d" % (k, r)))
            status, headers, body, _ = c.response()
            if status != 200:
                raise RuntimeError("whoami: HTTP %d %r" % (status, body[:80]))
            seen[k].add(body.decode("latin-1").strip())
            backend[k].add(headers.get("x-conn"))
    if backend[0] & backend[1]:
        raise RuntimeError("backend connections %s served both peers" % (backend[0] & backend[1]))
    for k in range(2):
        if len(seen[k]) != 1:
            raise RuntimeError("client %d was named %d ways: %s" % (k, len(seen[k]), seen[k]))
        names.append(next(iter(seen[k])))
    if names[0] == names[1]:
        raise RuntimeError("both clients were named the same: %s" % names[0])
    for c in conns:
        c.close()
    print("OK %d conns=%s|%s" % (2 * rounds, ",".join(sorted(backend[0])),
                                 ",".join(sorted(backend[1]))))
    for k in range(2):
        print("client %d: %s" % (k, names[k]))


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
        elif cmd == "hold":
            cmd_hold(port, int(sys.argv[3]), sys.argv[4])
        elif cmd == "whoami":
            cmd_whoami(port, int(sys.argv[3]))
        else:
            raise RuntimeError("unknown command " + cmd)
    except Exception as e:  # noqa: BLE001 (the test reads stderr)
        print("lending_client %s: %s" % (cmd, e), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
