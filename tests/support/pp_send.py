#!/usr/bin/env python3
"""PROXY protocol sender for the integration tests (46-proxy-protocol.sh): a raw socket, bound
to a chosen source address, sends a PROXY protocol v1 or v2 header (good or broken on purpose)
and then does one thing: a TLS session with a client certificate, a hold, or a half-close.

  pp_send.py --connect 127.0.0.1:PORT [--source 127.0.0.2] --header KIND
             [--client IP:PORT] [--split N] [--coalesce]
             [--then hold|shut|http|echo] [--path /p] [--echo-bytes N]
             [--cert C --key K --ca CA --sni NAME] [--timeout S]

--client is the client address the header claims ("203.0.113.7:4242",
"[2001:db8::7]:4242"); the header's destination is --connect's address (for a TCP6 header
with an IPv4 --connect, ::ffff:<that address>).

Header KINDs:
  none             no header at all
  v1               "PROXY TCP4|TCP6 <client> <dst> <cport> <dport>\\r\\n"
  v2               v2, command PROXY, TCP4 or TCP6 (by --client's family), with one custom TLV
                   (type 0xEA, 5 bytes) that the receiver is to skip
  v2-local         v2, command LOCAL, family UNSPEC, no address (HAProxy's health checks)
  bad-sig          v2 signature with its 12th byte changed (0x0A -> 0x0B), rest of a good v2
  v1-bare-lf       a good v1 line ended by "\\n" alone
  v1-bad-port      v1 whose source port is 99999
  v1-tcp4-ipv6     v1 "TCP4" with an IPv6 source address
  v2-version3      v2 with version nibble 3 (0x31)
  v2-udp           v2 with family UDP over IPv4 (0x12)
  v2-tlv-overflow  v2 TCP4 whose one TLV announces 200 bytes with 3 left in the header
  v1-partial       the first 17 bytes of a good v1 line
  v2-partial       the 16-byte v2 preamble (TCP4, 12 address bytes announced) + 5 of them
  v1-long-address  "PROXY TCP4 " + 120 digits, no CRLF (an address that cannot become valid)
  v1-unknown-107   "PROXY UNKNOWN " + 91 bytes + CRLF: the longest v1 line (107 bytes), whose
                   content after UNKNOWN the receiver is to ignore
  v1-oversized     "PROXY UNKNOWN " + 92 bytes + CRLF: 108 bytes, no LF within the first 107
  v2-1024          v2 TCP4 of 1024 bytes in total (the client address, TLVs of type 0x04 NOOP)
  v2-oversized     the same with 1025 bytes

--split N sends the header in pieces of N bytes, 50 ms apart; --coalesce sends the header and
the TLS ClientHello in one write (no other step before the TLS session).

--then:
  hold   (default) read until the other side closes or --timeout
  shut   shutdown(SHUT_WR) right after the header, then read until the other side closes
  http   TLS handshake (--cert/--key/--ca/--sni), "GET --path HTTP/1.1" with Connection: close,
         read the response to its end
  echo   TLS handshake, send --echo-bytes random bytes, read as many back; compare

Prints one JSON object: {"local": "ip:port" (the sender's address), "header_len": N,
"tls": "ok" | "failed: ..." | "-", "tls_version", "status", "headers", "body" (http),
"echo_sent", "echo_got", "echo_equal" (echo), "eof": "fin" | "reset" | "timeout" | "-",
"elapsed": seconds from the header's last byte to the end}.  Exit status 0 (a failed
handshake or a closed connection is a result, not an error), 2 for bad arguments.
"""
import argparse
import hashlib
import ipaddress
import json
import os
import select
import socket
import ssl
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tls_client  # noqa: E402  (tests/support/tls_client.py)

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def split_addr(text):
    """'1.2.3.4:5' or '[::1]:5' -> (ipaddress object, port)."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    return ipaddress.ip_address(host), int(port)


def v6(addr):
    if addr.version == 6:
        return addr
    return ipaddress.IPv6Address("::ffff:" + str(addr))


def v1_line(client, dst, eol=b"\r\n"):
    (cip, cport), (dip, dport) = client, dst
    if cip.version == 6:
        dip = v6(dip)
        fam = "TCP6"
    else:
        fam = "TCP4"
    return ("PROXY %s %s %s %d %d" % (fam, cip, dip, cport, dport)).encode() + eol


def tlv(t, value):
    return struct.pack("!BH", t, len(value)) + value


def v2(client, dst, ver_cmd=0x21, fam=None, tlvs=b"", addr_override=None):
    (cip, cport), (dip, dport) = client, dst
    if addr_override is not None:
        body = addr_override
        fam = 0x11 if fam is None else fam
    elif cip.version == 6:
        body = v6(cip).packed + v6(dip).packed + struct.pack("!HH", cport, dport)
        fam = 0x21 if fam is None else fam
    else:
        body = cip.packed + dip.packed + struct.pack("!HH", cport, dport)
        fam = 0x11 if fam is None else fam
    body += tlvs
    return SIG + struct.pack("!BBH", ver_cmd, fam, len(body)) + body


def make_header(kind, client, dst):
    if kind == "none":
        return b""
    if kind == "v1":
        return v1_line(client, dst)
    if kind == "v2":
        return v2(client, dst, tlvs=tlv(0xEA, b"vpc-1"))
    if kind == "v2-local":
        return SIG + struct.pack("!BBH", 0x20, 0x00, 0)
    if kind == "bad-sig":
        h = bytearray(v2(client, dst))
        h[11] = 0x0B
        return bytes(h)
    if kind == "v1-bare-lf":
        return v1_line(client, dst, eol=b"\n")
    if kind == "v1-bad-port":
        return ("PROXY TCP4 %s %s 99999 %d\r\n" % (client[0], dst[0], dst[1])).encode()
    if kind == "v1-tcp4-ipv6":
        return ("PROXY TCP4 2001:db8::7 %s %d %d\r\n" % (dst[0], client[1], dst[1])).encode()
    if kind == "v2-version3":
        return v2(client, dst, ver_cmd=0x31)
    if kind == "v2-udp":
        return v2(client, dst, fam=0x12)
    if kind == "v2-tlv-overflow":
        # 12 address bytes + a TLV whose length says 200 while 3 value bytes remain.
        return v2(client, dst, tlvs=struct.pack("!BH", 0xEA, 200) + b"abc")
    if kind == "v1-partial":
        return v1_line(client, dst)[:17]
    if kind == "v2-partial":
        return v2(client, dst)[:16 + 5]
    if kind == "v1-long-address":
        return b"PROXY TCP4 " + b"1" * 120
    if kind == "v1-unknown-107":
        return b"PROXY UNKNOWN " + b"x" * 91 + b"\r\n"
    if kind == "v1-oversized":
        return b"PROXY UNKNOWN " + b"x" * 92 + b"\r\n"
    if kind in ("v2-1024", "v2-oversized"):
        total = 1024 if kind == "v2-1024" else 1025
        pad = total - 16 - 12
        tlvs = b""
        while pad > 0:
            n = min(pad - 3, 500)
            tlvs += tlv(0x04, b"\x00" * n)
            pad -= 3 + n
        h = v2(client, dst, tlvs=tlvs)
        assert len(h) == total, len(h)
        return h
    raise SystemExit("unknown header kind %r" % kind)


class Tls(tls_client.Tls):
    """tls_client.Tls (a memory BIO, so that the ClientHello can go out in the header's write),
    plus a read that need not block."""

    def send(self, data):
        self.o.write(data)
        self._flush()

    def read_some(self, block=True):
        """Decrypted bytes; b'' at the end; None when nothing is there (block=False)."""
        while True:
            try:
                return self.o.read(1 << 20)
            except ssl.SSLZeroReturnError:
                return b""
            except ssl.SSLEOFError:
                return b""
            except ssl.SSLWantReadError:
                self._flush()
                if not block:
                    r, _, _ = select.select([self.s], [], [], 0)
                    if not r:
                        return None
                if not self._feed():
                    try:
                        return self.o.read(1 << 20)
                    except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                        return b""
                    except ssl.SSLWantReadError:
                        return b""


def wait_end(sock, deadline):
    """Read (and drop) until the other side closes: 'fin', 'reset' or 'timeout'."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return "timeout"
        sock.settimeout(left)
        try:
            d = sock.recv(65536)
        except socket.timeout:
            return "timeout"
        except ConnectionResetError:
            return "reset"
        except OSError as e:
            return "error: %s" % e
        if not d:
            return "fin"


def parse_http(data):
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1]) if lines and lines[0].startswith("HTTP/") else 0
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = body[:int(headers["content-length"])]
    return status, headers, body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connect", required=True)
    ap.add_argument("--source", default="127.0.0.2")
    ap.add_argument("--header", required=True)
    ap.add_argument("--client", default="203.0.113.7:4242")
    ap.add_argument("--split", type=int, default=0)
    ap.add_argument("--coalesce", action="store_true")
    ap.add_argument("--then", choices=["hold", "shut", "http", "echo"], default="hold")
    ap.add_argument("--path", default="/pp")
    ap.add_argument("--echo-bytes", type=int, default=1 << 20)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--ca")
    ap.add_argument("--sni", default="node1.test")
    ap.add_argument("--timeout", type=float, default=20)
    a = ap.parse_args()

    host, port = a.connect.rsplit(":", 1)
    dst = (ipaddress.ip_address(host), int(port))
    client = split_addr(a.client)
    header = make_header(a.header, client, dst)

    out = {"header_len": len(header), "tls": "-", "eof": "-"}
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((a.source, 0))
    sock.settimeout(a.timeout)
    sock.connect((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    out["local"] = "%s:%d" % sock.getsockname()[:2]
    deadline = time.monotonic() + a.timeout

    tls = None
    prefix = b""
    if a.then in ("http", "echo"):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(a.ca)
        ctx.check_hostname = True
        ctx.load_cert_chain(a.cert, a.key)
        tls = Tls(sock, ctx, a.sni)
    try:
        if a.coalesce and tls is not None:
            prefix = header
        elif a.split > 0:
            for i in range(0, len(header), a.split):
                if i:
                    time.sleep(0.05)
                sock.sendall(header[i:i + a.split])
        elif header:
            sock.sendall(header)
    except (ConnectionResetError, BrokenPipeError):
        out["eof"] = "reset"  # closed by the other side before the header was all out
    except OSError as e:
        out["eof"] = "send failed: %s" % e
    t0 = time.monotonic()

    if a.then == "shut" and out["eof"] == "-":
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    if a.then in ("hold", "shut") and out["eof"] == "-":
        out["eof"] = wait_end(sock, deadline)
    elif tls is not None and out["eof"] == "-":
        try:
            tls.handshake(prefix)
            out["tls"] = "ok"
            out["tls_version"] = tls.o.version()
        except (ssl.SSLError, OSError) as e:
            out["tls"] = "failed: %s" % e
        if out["tls"] == "ok" and a.then == "http":
            try:
                tls.send(("GET %s HTTP/1.1\r\nHost: node1.test\r\nConnection: close\r\n\r\n"
                          % a.path).encode())
                data = b""
                while True:
                    d = tls.read_some()
                    if not d:
                        break
                    data += d
                out["eof"] = "fin"
            except socket.timeout:
                out["eof"] = "timeout"
            except (ssl.SSLError, OSError) as e:
                out["eof"] = "error: %s" % e
            status, headers, body = parse_http(data)
            out["status"] = status
            out["headers"] = headers
            out["body"] = body.decode("utf-8", "replace")
        elif out["tls"] == "ok" and a.then == "echo":
            payload = os.urandom(a.echo_bytes)
            got = bytearray()
            try:
                for i in range(0, len(payload), 1 << 16):
                    tls.send(payload[i:i + (1 << 16)])
                    while True:
                        d = tls.read_some(block=False)
                        if not d:
                            break
                        got += d
                while len(got) < len(payload):
                    d = tls.read_some()
                    if not d:
                        break
                    got += d
                out["eof"] = "-"
            except socket.timeout:
                out["eof"] = "timeout"
            except (ssl.SSLError, OSError) as e:
                out["eof"] = "error: %s" % e
            out["echo_sent"] = len(payload)
            out["echo_got"] = len(got)
            out["echo_equal"] = bytes(got) == payload
            out["echo_sha256"] = hashlib.sha256(payload).hexdigest()
        elif out["tls"] != "ok":
            out["eof"] = wait_end(sock, deadline)
    out["elapsed"] = round(time.monotonic() - t0, 3)
    sock.close()
    print(json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
