#!/usr/bin/env python3
"""Misbehaving TLS clients for tests/integration/71-tls-edge.sh (memory-BIO, raw socket).

  tls_attack.py MODE --connect 127.0.0.1:PORT --cert C --key K --ca CA [--sni NAME]
                [--timeout S] [--hold S]

MODE:
  oversized-hello   send a TLS record header announcing 20,480 bytes (> 16 KiB + 2048) and
                    that many bytes; expect the server to close (alert or EOF)
  oversized-app     finish the handshake, then send a 18,688-byte application_data record;
                    expect the server to close
  fragment-tcp      do a full handshake + "GET /frag" writing every byte in its own send()
                    (TCP_NODELAY, 1 ms apart); expect an HTTP/1.1 200 answer
  fragment-records  the same, but the ClientHello is re-cut into TLS records of ONE byte of
                    payload each (legal record-layer fragmentation); expect HTTP/1.1 200
  stall-cert        TLS 1.2, send the client's second flight only up to its Certificate
                    record, then wait (at most --hold s); print how long until the server
                    closed.  Exit 0 when it closed, 5 when still open after --hold.

Prints one line: mode=... result=... elapsed=...  Exit status: 0 as expected, 4 otherwise.
"""
import argparse
import os
import socket
import ssl
import sys
import time


def ctx_for(a, tls12=False):
    """A client SSLContext with the test identity and CA."""
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.load_verify_locations(a.ca)
    c.load_cert_chain(a.cert, a.key)
    if tls12:
        c.maximum_version = ssl.TLSVersion.TLSv1_2
    return c


def connect(a):
    """A TCP connection to --connect with TCP_NODELAY."""
    host, port = a.connect.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=a.timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def records(data):
    """Split raw TLS bytes into (type, version, payload) records."""
    out, i = [], 0
    while i + 5 <= len(data):
        n = int.from_bytes(data[i + 3:i + 5], "big")
        out.append((data[i], data[i + 1:i + 3], data[i + 5:i + 5 + n]))
        i += 5 + n
    return out


class Conn:
    """A TLS client over a raw socket, with a hook deciding how bytes are written."""

    def __init__(self, a, tls12=False, writer=None):
        self.s = connect(a)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.o = ctx_for(a, tls12).wrap_bio(self.inc, self.out, server_hostname=a.sni)
        self.writer = writer or (lambda s, d: s.sendall(d))

    def flush(self):
        d = self.out.read()
        if d:
            self.writer(self.s, d)

    def feed(self):
        d = self.s.recv(1 << 16)
        if not d:
            raise EOFError("server closed")
        self.inc.write(d)

    def handshake(self):
        while True:
            try:
                self.o.do_handshake()
                self.flush()
                return
            except ssl.SSLWantReadError:
                self.flush()
                self.feed()

    def request(self, path):
        """Send GET path (keep-alive off) and return the whole answer."""
        self.o.write(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        self.flush()
        got = b""
        while True:
            try:
                d = self.o.read(1 << 16)
                if not d:
                    return got
                got += d
            except ssl.SSLWantReadError:
                try:
                    self.feed()
                except EOFError:
                    return got
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return got


def wait_closed(s, secs):
    """Seconds until the peer closes s (EOF or reset), or None after secs."""
    t0 = time.time()
    s.settimeout(0.2)
    while time.time() - t0 < secs:
        try:
            d = s.recv(1 << 16)
            if not d:
                return time.time() - t0
        except socket.timeout:
            continue
        except OSError:
            return time.time() - t0
    return None


def bytewise(s, d):
    """Write d one byte per send(), 1 ms apart."""
    for i in range(len(d)):
        s.send(d[i:i + 1])
        time.sleep(0.001)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["oversized-hello", "oversized-app", "fragment-tcp",
                                     "fragment-records", "stall-cert"])
    ap.add_argument("--connect", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--sni", default="node1.test")
    ap.add_argument("--timeout", type=float, default=10)
    ap.add_argument("--hold", type=float, default=30)
    a = ap.parse_args()
    t0 = time.time()
    ok, result = False, ""
    if a.mode == "oversized-hello":
        s = connect(a)
        n = 20480
        s.sendall(b"\x16\x03\x01" + n.to_bytes(2, "big") + os.urandom(n)[: n])
        took = wait_closed(s, a.timeout)
        ok, result = took is not None, f"closed_after={took}"
    elif a.mode == "oversized-app":
        c = Conn(a)
        c.handshake()
        n = 18688
        try:
            c.s.sendall(b"\x17\x03\x03" + n.to_bytes(2, "big") + os.urandom(n))
        except OSError:
            pass
        took = wait_closed(c.s, a.timeout)
        ok, result = took is not None, f"closed_after={took}"
    elif a.mode in ("fragment-tcp", "fragment-records"):
        first = [True]

        def recut(s, d):
            """The first flight (ClientHello) as 1-byte records, the rest byte by byte."""
            if first[0] and a.mode == "fragment-records":
                first[0] = False
                buf = b""
                for typ, ver, payload in records(d):
                    for i in range(len(payload)):
                        buf += bytes([typ]) + ver + b"\x00\x01" + payload[i:i + 1]
                s.sendall(buf)
                return
            bytewise(s, d)

        c = Conn(a, writer=recut)
        c.handshake()
        got = c.request("/frag")
        ok = got.startswith(b"HTTP/1.1 200")
        result = f"answer={got[:40]!r} len={len(got)}"
    elif a.mode == "stall-cert":
        sent = []

        def partial(s, d):
            """Send the first flight whole; of the second, only up to the Certificate."""
            if not sent:
                sent.append(1)
                s.sendall(d)
                return
            recs = records(d)
            buf = b""
            for typ, ver, payload in recs:
                buf += bytes([typ]) + ver + len(payload).to_bytes(2, "big") + payload
                if typ == 22 and payload[:1] == b"\x0b":
                    break
            else:
                raise SystemExit("mode=stall-cert result=no-certificate-record")
            s.sendall(buf)
            raise StopIteration

        c = Conn(a, tls12=True, writer=partial)
        try:
            c.handshake()
            result = "handshake-finished?"
        except StopIteration:
            took = wait_closed(c.s, a.hold)
            print(f"mode={a.mode} result=closed_after={took} elapsed={time.time() - t0:.2f}")
            sys.exit(0 if took is not None else 5)
    print(f"mode={a.mode} ok={ok} result={result} elapsed={time.time() - t0:.2f}")
    sys.exit(0 if ok else 4)


if __name__ == "__main__":
    main()
