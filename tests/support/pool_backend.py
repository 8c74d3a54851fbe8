#!/usr/bin/env python3
"""An HTTP/1.1 keep-alive backend for the pool test (36-pool.sh) that tells connections apart.

Every response carries X-Conn (the number of the TCP connection it came on, from 1) and X-Req
(the request's number on that connection, from 1).  Paths:
  /small        a short text body
  /big          1 MiB of deterministic bytes
  /echo         the request's body
  /cut          announces 100000 bytes, sends 1000, then closes (a response cut short)
  /flaky...     answered on a connection's first request only; a later request on the same
                connection is read and then the connection closes without a byte (a stale
                keep-alive connection, as the peer sees it)
  /idle-close/N answered; then the connection closes after N s without another request
  /hints        a 103 Early Hints interim response, then the 200
  /stats        {"conns": N, "requests": N}
  /whoami       the request's X-Forwarded-Client-Cert (what an inbound ferry said of the peer)
  /slow...      answered after 0.5 s
  /double...    answered, then 0.3 s later answered AGAIN on the same connection (a buggy
                backend: the second response belongs to no request)
Every request (method, path, connection, body length) is appended to --log as one line.
"""
import argparse
import json
import socket
import socketserver
import threading
import time

BIG = bytes((i * 7 + (i >> 10)) & 0xFF for i in range(1 << 20))

lock = threading.Lock()
state = {"conns": 0, "requests": 0}


def read_head(f):
    line = f.readline(65536)
    if not line:
        return None
    while line in (b"\r\n", b"\n"):
        line = f.readline(65536)
        if not line:
            return None
    method, target, _ = line.decode("latin-1").split(" ", 2)
    headers = {}
    while True:
        h = f.readline(65536)
        if h in (b"\r\n", b"\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    return method, target, headers


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        with lock:
            state["conns"] += 1
            conn = state["conns"]
        k = 0
        while True:
            try:
                head = read_head(self.rfile)
            except (OSError, ValueError):
                self.close_hard()
                return
            self.connection.settimeout(None)
            if head is None:
                return
            method, target, headers = head
            n = int(headers.get("content-length", "0") or 0)
            body = self.rfile.read(n) if n > 0 else b""
            k += 1
            with lock:
                state["requests"] += 1
                with open(self.server.log, "a") as lf:
                    lf.write("%s %s conn=%d req=%d body=%d connection=%s\n" %
                             (method, target, conn, k, len(body), headers.get("connection", "-")))
            if target.startswith("/flaky") and k > 1:
                self.close_hard()
                return
            extra = ""
            if target == "/big":
                out = BIG
            elif target == "/echo":
                out = body
            elif target.startswith("/whoami"):
                out = (headers.get("x-forwarded-client-cert", "-") + "\n").encode()
            elif target == "/stats":
                with lock:
                    out = json.dumps(state).encode()
            elif target == "/cut":
                self.wfile.write(("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nX-Conn: %d\r\n"
                                  "X-Req: %d\r\n\r\n" % (conn, k)).encode() + BIG[:1000])
                self.wfile.flush()
                self.close_hard()
                return
            else:
                out = ("hello %s %s\n" % (method, target)).encode()
            if target.startswith("/slow"):
                time.sleep(0.5)
            if target == "/hints":
                self.wfile.write(b"HTTP/1.1 103 Early Hints\r\nLink: </small>; rel=preload\r\n\r\n")
                self.wfile.flush()
            if method == "HEAD":
                payload = b""
            else:
                payload = out
            self.wfile.write(("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Conn: %d\r\n"
                              "X-Req: %d\r\n%s\r\n" % (len(out), conn, k, extra)).encode() +
                             payload)
            self.wfile.flush()
            if target.startswith("/double"):
                time.sleep(0.3)
                late = ("LATE second response to %s\n" % target).encode()
                self.wfile.write(("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Conn: %d\r\n"
                                  "X-Req: %d\r\n\r\n" % (len(late), conn, k)).encode() + late)
                self.wfile.flush()
            if headers.get("connection", "").lower() == "close":
                return
            if target.startswith("/idle-close/"):
                self.connection.settimeout(float(target.split("/")[2]))

    def close_hard(self):
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    # A real server's backlog (socketserver's default is 5): a burst of connects (a pool lending
    # to many clients at once) would otherwise overflow the accept queue and stall for seconds.
    request_queue_size = 128


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", required=True)
    a = ap.parse_args()
    srv = Server(("127.0.0.1", a.port), Handler)
    srv.log = a.log
    srv.serve_forever()


if __name__ == "__main__":
    main()
