#!/usr/bin/env python3
"""Backend for the PROXY protocol test (46-proxy-protocol.sh), one thread per connection.

  pp_backend.py --port P --mode echo --record FILE [--pp v2|none]
  pp_backend.py --port P --mode http --record FILE

--mode echo: with --pp v2 (the default) every connection must start with a PROXY protocol v2
header; it is read to its last byte (never further) and parsed, and one JSON line is appended
to FILE:
  {"peer": "ip:port" (who connected: ferry), "command": "PROXY"|"LOCAL",
   "family": "TCP4"|"TCP6"|"UNSPEC"|"0x..", "src", "sport", "dst", "dport",
   "tlvs": [{"type": 32, "len": N, "hex": "..."}...],
   "ssl": {"client": N, "verify": N, "sub": {"33": "TLSv1.3", "34": "CN"...}} (TLV 0x20),
   "e0": "text of TLV 0xE0", "error": null | "what was wrong"}
then every further byte is echoed back until EOF.  A connection whose first bytes are no valid
v2 header gets its line with "error" set and is closed.
--mode http: an HTTP/1.1 keep-alive backend; every request is appended to FILE as
  {"peer", "method", "path", "xff": X-Forwarded-For or null, "headers", "body_len",
   "body_sha256"}
and answered 200: for /echo... with the request's body (octet-stream, X-Body-Sha256 set),
otherwise with that JSON.
"""
import argparse
import hashlib
import json
import socket
import socketserver
import struct
import threading

SIG = b"\r\n\r\n\x00\r\nQUIT\n"
lock = threading.Lock()


def record(path, doc):
    with lock, open(path, "a") as f:
        f.write(json.dumps(doc, sort_keys=True) + "\n")


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        d = s.recv(n - len(buf))
        if not d:
            raise EOFError("EOF after %d of %d bytes" % (len(buf), n))
        buf += d
    return buf


def text(b):
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return None


def parse_tlvs(data, doc):
    i = 0
    while i < len(data):
        if len(data) - i < 3:
            raise ValueError("TLV header cut at offset %d" % i)
        t, n = struct.unpack("!BH", data[i:i + 3])
        v = data[i + 3:i + 3 + n]
        if len(v) != n:
            raise ValueError("TLV 0x%02x announces %d bytes, %d left" % (t, n, len(v)))
        doc["tlvs"].append({"type": t, "len": n, "hex": v.hex()})
        if t == 0x20:
            if n < 5:
                raise ValueError("PP2_TYPE_SSL shorter than 5 bytes")
            ssl_doc = {"client": v[0], "verify": struct.unpack("!I", v[1:5])[0], "sub": {}}
            j = 5
            while j < n:
                if n - j < 3:
                    raise ValueError("SSL sub-TLV header cut")
                st, sn = struct.unpack("!BH", v[j:j + 3])
                sv = v[j + 3:j + 3 + sn]
                if len(sv) != sn:
                    raise ValueError("SSL sub-TLV 0x%02x announces %d bytes, %d left"
                                     % (st, sn, len(sv)))
                ssl_doc["sub"][str(st)] = text(sv) if text(sv) is not None else sv.hex()
                j += 3 + sn
            doc["ssl"] = ssl_doc
        if t == 0xE0:
            doc["e0"] = text(v)
        i += 3 + n


def read_v2(s, doc):
    pre = recv_exact(s, 16)
    if pre[:12] != SIG:
        raise ValueError("no v2 signature: first bytes %r" % pre)
    ver_cmd, fam, n = struct.unpack("!BBH", pre[12:16])
    if ver_cmd >> 4 != 2:
        raise ValueError("version %d" % (ver_cmd >> 4))
    doc["command"] = {0: "LOCAL", 1: "PROXY"}.get(ver_cmd & 0xF, "0x%x" % (ver_cmd & 0xF))
    body = recv_exact(s, n)
    doc["family"] = {0x00: "UNSPEC", 0x11: "TCP4", 0x21: "TCP6"}.get(fam, "0x%02x" % fam)
    if fam == 0x11:
        if n < 12:
            raise ValueError("TCP4 with %d address bytes" % n)
        doc["src"] = socket.inet_ntop(socket.AF_INET, body[0:4])
        doc["dst"] = socket.inet_ntop(socket.AF_INET, body[4:8])
        doc["sport"], doc["dport"] = struct.unpack("!HH", body[8:12])
        rest = body[12:]
    elif fam == 0x21:
        if n < 36:
            raise ValueError("TCP6 with %d address bytes" % n)
        doc["src"] = socket.inet_ntop(socket.AF_INET6, body[0:16])
        doc["dst"] = socket.inet_ntop(socket.AF_INET6, body[16:32])
        doc["sport"], doc["dport"] = struct.unpack("!HH", body[32:36])
        rest = body[36:]
    elif fam == 0x00:
        rest = b""
    else:
        raise ValueError("family 0x%02x" % fam)
    parse_tlvs(rest, doc)


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        s = self.request
        doc = {"peer": "%s:%d" % self.client_address[:2], "tlvs": [], "error": None}
        if self.server.pp == "v2":
            try:
                read_v2(s, doc)
            except (ValueError, EOFError, OSError) as e:
                doc["error"] = str(e)
                record(self.server.record, doc)
                return
        record(self.server.record, doc)
        n = 0
        try:
            while True:
                d = s.recv(1 << 16)
                if not d:
                    break
                n += len(d)
                s.sendall(d)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class Http(socketserver.StreamRequestHandler):
    def handle(self):
        f = self.rfile
        while True:
            line = f.readline(65536)
            if not line:
                return
            if line in (b"\r\n", b"\n"):
                continue
            method, target, _ = line.decode("latin-1").split(" ", 2)
            headers = {}
            while True:
                h = f.readline(65536)
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode("latin-1").partition(":")
                headers[k.strip().lower()] = v.strip()
            if "chunked" in headers.get("transfer-encoding", "").lower():
                body = bytearray()
                while True:
                    size = int(f.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while f.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    body += f.read(size)
                    f.readline()
                body = bytes(body)
            else:
                body = f.read(int(headers.get("content-length", "0") or "0"))
            doc = {"peer": "%s:%d" % self.client_address[:2], "method": method, "path": target,
                   "xff": headers.get("x-forwarded-for"), "headers": headers,
                   "body_len": len(body), "body_sha256": hashlib.sha256(body).hexdigest()}
            record(self.server.record, doc)
            if target.startswith("/echo"):
                out, ctype = body, "application/octet-stream"
            else:
                out, ctype = json.dumps(doc).encode() + b"\n", "application/json"
            self.wfile.write(("HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                              "X-Body-Sha256: %s\r\n\r\n"
                              % (ctype, len(out), doc["body_sha256"])).encode() + out)
            self.wfile.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mode", choices=["echo", "http"], required=True)
    ap.add_argument("--pp", choices=["v2", "none"], default="v2")
    ap.add_argument("--record", required=True)
    a = ap.parse_args()
    socketserver.ThreadingTCPServer.daemon_threads = True
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", a.port),
                                          Echo if a.mode == "echo" else Http)
    srv.pp = a.pp
    srv.record = a.record
    print("listening 127.0.0.1:%d mode=%s" % (a.port, a.mode), flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
