#!/usr/bin/env python3
"""HTTP/1.1 test backend: answers every request 200 with a small JSON body describing it.

Body: {"backend": NAME, "method": ..., "path": ..., "headers": {...}, "header_list":
[[name, value], ...] (every header in order, repeats kept), "body_len": N, "body_sha256": hex}.  Keep-alive is supported; request bodies by Content-Length or chunked.
One line per request on stdout.

--raw-log FILE appends every byte the backend receives (on any connection, parsed or not) to
FILE, so a test can prove a request never reached the backend.  Test paths:
  /__stall           read the request, never answer (the connection stays open 60s)
  /__close           answer 200 with Connection: close, then close (pipelined requests unread)
  /__partial-close   answer a head with Content-Length 100000 and 1000 body bytes, then close
  /__partial-stall   the same, then stall 60s without closing
  /__drop            read the request, then close without answering
"""
import argparse
import hashlib
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


RAW_LOCK = threading.Lock()


class TeeReader:
    """A file-like reader that appends what it reads to the raw log."""

    def __init__(self, f, path):
        self.f = f
        self.path = path

    def _log(self, data):
        if data and self.path:
            with RAW_LOCK, open(self.path, "ab") as o:
                o.write(data)
        return data

    def read(self, *a):
        return self._log(self.f.read(*a))

    def readline(self, *a):
        return self._log(self.f.readline(*a))

    def __getattr__(self, name):
        return getattr(self.f, name)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ferry-test-backend"

    def setup(self):
        super().setup()
        if self.server.raw_log:
            self.rfile = TeeReader(self.rfile, self.server.raw_log)

    def _special(self):
        if self.path == "/__stall":
            time.sleep(60)
            self.close_connection = True
            return True
        if self.path == "/__close":
            # A complete answer that ends keep-alive, then the close (requests pipelined
            # behind it are never read).
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\n"
                             b"closed")
            self.wfile.flush()
            self.close_connection = True
            return True
        if self.path == "/__drop":
            self.close_connection = True
            return True
        if self.path in ("/__partial-close", "/__partial-stall"):
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                             b"Content-Length: 100000\r\n\r\n" + b"p" * 1000)
            self.wfile.flush()
            if self.path == "/__partial-stall":
                time.sleep(60)
            self.close_connection = True
            return True
        if self.path == "/__partial-badchunk":
            # A chunked response whose second chunk line is malformed, 300 ms after its head
            # and first chunk went out.
            self.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"5\r\nabcde\r\n")
            self.wfile.flush()
            time.sleep(0.3)
            self.wfile.write(b"zz\r\nhello\r\n0\r\n\r\n")
            self.wfile.flush()
            self.close_connection = True
            return True
        return False

    def _body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            data = bytearray()
            while True:
                line = self.rfile.readline()
                if not line:
                    raise ConnectionError("EOF inside a chunked body")
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunk = self.rfile.read(size)
                if len(chunk) < size:
                    raise ConnectionError("EOF inside a chunk")
                data += chunk
                self.rfile.readline()
            return bytes(data)
        n = int(self.headers.get("Content-Length", "0") or "0")
        data = self.rfile.read(n) if n > 0 else b""
        if len(data) < n:
            raise ConnectionError("EOF inside a Content-Length body")
        return data

    def _answer(self):
        body = self._body()
        sys.stdout.write("%s %s %s\n" % (self.client_address[0], self.command, self.path))
        sys.stdout.flush()
        if self._special():
            return
        doc = {
            "backend": self.server.name,
            "method": self.command,
            "path": self.path,
            "headers": {k: v for k, v in self.headers.items()},
            "header_list": [[k, v] for k, v in self.headers.items()],
            "body_len": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
        }
        out = json.dumps(doc).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_COPY = do_OPTIONS = _answer

    def log_message(self, fmt, *args):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", default="backend")
    ap.add_argument("--raw-log")
    a = ap.parse_args()
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.allow_reuse_address = True
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.name = a.name
    srv.raw_log = a.raw_log
    print("listening 127.0.0.1:%d" % a.port, flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
