#!/usr/bin/env python3
"""Test client for ferry's relay: plain TCP or TLS (memory-BIO, so it can half-close TLS).

  tls_client.py --connect 127.0.0.1:PORT [--tls --cert C --key K --ca CA --sni NAME]
                [--line TEXT] [--raw TEXT] [--send N] [--shut wr|none|close]
                [--expect-sink | --expect-stream N | --expect-text TEXT] [--timeout S]

Steps: connect; TLS handshake (--tls); send --line TEXT + "\\n", --raw TEXT (Python escapes
allowed), then N bytes of the deterministic stream (stream.py); then --shut: "wr" (default) =
TLS close_notify (--tls) and TCP shutdown(SHUT_WR), keeping the read side open; "none" =
send nothing more; "close" = close at once.  Then read until EOF or --timeout.

Checks: --expect-sink: the reply is "<sha256 of everything sent after the line>\\n";
--expect-stream N: the reply is the N-byte deterministic stream; --expect-text: the reply
contains TEXT.  Prints one summary line: handshake=... reply_len=... eof=... elapsed=...
Exit status: 0 ok, 3 handshake failed, 4 a check failed, 5 timed out before EOF.
"""
import argparse
import hashlib
import os
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stream  # noqa: E402


class Plain:
    def __init__(self, sock):
        self.s = sock

    def send(self, data):
        self.s.sendall(data)

    def shut_wr(self):
        self.s.shutdown(socket.SHUT_WR)

    def recv(self):
        """bytes, or b'' at EOF; returns (data, how)."""
        d = self.s.recv(1 << 20)
        return d, ("fin" if not d else None)


class Tls:
    def __init__(self, sock, ctx, sni):
        self.s = sock
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.o = ctx.wrap_bio(self.inc, self.out, server_side=False, server_hostname=sni)

    def _flush(self, prefix=b""):
        d = prefix + self.out.read()
        if d:
            self.s.sendall(d)

    def _feed(self):
        d = self.s.recv(1 << 20)
        if d:
            self.inc.write(d)
        else:
            self.inc.write_eof()
        return d

    def handshake(self, prefix=b""):
        """${prefix} (e.g. a PROXY protocol header) goes out in the ClientHello's write."""
        while True:
            try:
                self.o.do_handshake()
                self._flush(prefix)
                return
            except ssl.SSLWantReadError:
                self._flush(prefix)
                prefix = b""
                if not self._feed():
                    # Let OpenSSL report the EOF (or an alert already in the BIO).
                    try:
                        self.o.do_handshake()
                    except ssl.SSLWantReadError:
                        pass
                    raise ssl.SSLEOFError("EOF during handshake")

    def send(self, data):
        mv = memoryview(data)
        for i in range(0, len(mv), 1 << 16):
            self.o.write(mv[i:i + (1 << 16)])
            self._flush()

    def shut_wr(self):
        # unwrap() sends close_notify; without the peer's close_notify yet it raises
        # SSLWantReadError, which leaves us half-closed: we can still read.
        try:
            self.o.unwrap()
        except ssl.SSLWantReadError:
            pass
        self._flush()
        self.s.shutdown(socket.SHUT_WR)

    def recv(self):
        while True:
            try:
                d = self.o.read(1 << 20)
                return d, ("close_notify" if not d else None)
            except ssl.SSLZeroReturnError:
                return b"", "close_notify"
            except ssl.SSLEOFError:
                return b"", "fin_without_close_notify"
            except ssl.SSLWantReadError:
                self._flush()
                self._feed()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connect", required=True)
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--ca")
    ap.add_argument("--sni")
    ap.add_argument("--line")
    ap.add_argument("--raw")
    ap.add_argument("--send", type=int, default=0)
    ap.add_argument("--shut", choices=["wr", "none", "close"], default="wr")
    ap.add_argument("--expect-sink", action="store_true")
    ap.add_argument("--expect-stream", type=int)
    ap.add_argument("--expect-text")
    ap.add_argument("--timeout", type=float, default=30)
    a = ap.parse_args()

    host, port = a.connect.rsplit(":", 1)
    t0 = time.monotonic()
    sock = socket.create_connection((host, int(port)), timeout=a.timeout)
    sock.settimeout(a.timeout)
    if a.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if a.ca:
            ctx.load_verify_locations(a.ca)
            ctx.check_hostname = bool(a.sni)
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if a.cert:
            ctx.load_cert_chain(a.cert, a.key)
        conn = Tls(sock, ctx, a.sni)
        try:
            conn.handshake()
        except (ssl.SSLError, OSError) as e:
            print("handshake=failed error=%r elapsed=%.2f" % (str(e), time.monotonic() - t0))
            return 3
    else:
        conn = Plain(sock)

    sent = hashlib.sha256()
    try:
        if a.line is not None:
            conn.send(a.line.encode() + b"\n")
        if a.raw is not None:
            raw = a.raw.encode().decode("unicode_escape").encode("latin-1")
            conn.send(raw)
            sent.update(raw)
        for b in stream.gen(a.send):
            conn.send(b)
            sent.update(b)
        if a.shut == "wr":
            conn.shut_wr()
        elif a.shut == "close":
            sock.close()
            print("handshake=ok closed=1")
            return 0
    except (ssl.SSLError, OSError) as e:
        # The peer closed or reset while we were sending: report it as the end of the stream.
        print("handshake=ok reply_len=0 eof=send_error:%s elapsed=%.2f"
              % (str(e).replace(" ", "_"), time.monotonic() - t0))
        return 4

    got = hashlib.sha256()
    n = 0
    head = b""
    how = None
    try:
        while True:
            d, how = conn.recv()
            if how:
                break
            got.update(d)
            n += len(d)
            if len(head) < 4096:
                head += d[:4096 - len(head)]
    except socket.timeout:
        how = "timeout"
    except (ssl.SSLError, OSError) as e:
        how = "error:%s" % e
    el = time.monotonic() - t0
    first = head.split(b"\n", 1)[0][:80].rstrip(b"\r").decode("latin-1", "replace")
    if not first.isprintable():
        first = "<binary>"
    print("handshake=ok reply_len=%d reply_sha256=%s eof=%s elapsed=%.2f first=%r"
          % (n, got.hexdigest(), how, el, first))
    sys.stdout.flush()
    if how == "timeout":
        return 5
    ok = True
    if a.expect_sink and head.strip().decode("latin-1") != sent.hexdigest():
        print("MISMATCH: sink replied %r, sent sha256 %s" % (head[:80], sent.hexdigest()))
        ok = False
    if a.expect_stream is not None:
        want = stream.expected_sha256(a.expect_stream)
        if n != a.expect_stream or got.hexdigest() != want:
            print("MISMATCH: got %d bytes sha256 %s, want %d bytes sha256 %s"
                  % (n, got.hexdigest(), a.expect_stream, want))
            ok = False
    if a.expect_text is not None and a.expect_text.encode() not in head:
        print("MISMATCH: reply lacks %r: %r" % (a.expect_text, head[:300]))
        ok = False
    return 0 if ok else 4


if __name__ == "__main__":
    sys.exit(main())
