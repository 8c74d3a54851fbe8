#!/usr/bin/env python3
"""A mutual-TLS HTTP/1.1 keep-alive peer that reports how each connection ended (36-pool-teardown).

  tls_http_peer.py --port P --cert C --key K --ca CA --log FILE

Requires a client certificate signed by CA.  Log lines (appended to FILE, one per event;
connections are numbered from 1 once their handshake succeeds):
  conn=N hs version=TLSv1.3 reused=0|1      the handshake; reused=1: a resumed session
  conn=N req=K GET /path                    each request, when its head has arrived
  conn=N end=close_notify|eof|reset|error   how the client ended: close_notify = a TLS
                                            close_notify; eof = TCP FIN without one
Paths: /slow/S waits S seconds for its response (ending early when the client closes);
/to-eof/notify, /to-eof/fin and /to-eof/garbage answer 200 with a body delimited by the end of
the connection (no Content-Length), then end it with close_notify, with a TCP FIN and no
close_notify, or with a record that fails its MAC (what a truncation on the path looks like); any other path gets 200 "hello METHOD PATH" with
Content-Length, keep-alive.
"""
import argparse
import select
import socket
import socketserver
import ssl
import threading

lock = threading.Lock()
state = {"conns": 0}


def log(path, line):
    with lock, open(path, "a") as f:
        f.write(line + "\n")


class Closed(Exception):
    """The client ended the connection; args[0] says how."""


def recv(sock):
    try:
        d = sock.recv(65536)
    except ssl.SSLZeroReturnError:
        raise Closed("close_notify")
    except ssl.SSLEOFError:
        raise Closed("eof")
    except ConnectionResetError:
        raise Closed("reset")
    except (OSError, ssl.SSLError) as e:
        raise Closed("error " + type(e).__name__)
    if not d:
        # suppress_ragged_eofs=False: b"" only after the client's close_notify.
        raise Closed("close_notify")
    return d


def read_chunked(sock, buf):
    """Read a chunked body (no trailers) from buf + sock; returns what follows it."""
    while True:
        while b"\r\n" not in buf:
            buf += recv(sock)
        line, buf = buf.split(b"\r\n", 1)
        size = int(line.split(b";")[0], 16)
        while len(buf) < size + 2:
            buf += recv(sock)
        buf = buf[size + 2:]
        if size == 0:
            return buf


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        path = self.server.log
        try:
            s = self.server.ctx.wrap_socket(self.request, server_side=True,
                                            suppress_ragged_eofs=False)
        except (OSError, ssl.SSLError) as e:
            log(path, "handshake failed: %s" % e)  # wait_port's probe, among others
            return
        with lock:
            state["conns"] += 1
            n = state["conns"]
        log(path, "conn=%d hs version=%s reused=%d" % (n, s.version(), int(s.session_reused)))
        buf = b""
        k = 0
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    buf += recv(s)
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, target = lines[0].split(" ")[:2]
                clen, chunked = 0, False
                for h in lines[1:]:
                    name, _, value = h.partition(":")
                    if name.strip().lower() == "content-length":
                        clen = int(value.strip())
                    elif name.strip().lower() == "transfer-encoding":
                        chunked = value.strip().lower() == "chunked"
                k += 1
                log(path, "conn=%d req=%d %s %s" % (n, k, method, target))
                if chunked:
                    buf = read_chunked(s, buf)
                else:
                    while len(buf) < clen:
                        buf += recv(s)
                    buf = buf[clen:]
                if target.startswith("/slow/"):
                    # Wait, but notice the client closing meanwhile (ferry's own answer).
                    r, _, _ = select.select([s], [], [], float(target[6:]))
                    if r:
                        buf += recv(s)
                body = ("hello %s %s" % (method, target)).encode()
                if target.startswith("/to-eof/"):
                    s.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body)
                    if target == "/to-eof/fin":
                        log(path, "conn=%d end=sent-fin" % n)
                        socket.socket(fileno=s.detach()).close()
                        return
                    if target == "/to-eof/garbage":
                        # A record that fails its MAC (what anyone on the path can inject).
                        log(path, "conn=%d end=sent-garbage" % n)
                        raw = socket.socket(fileno=s.detach())
                        raw.sendall(b"\x17\x03\x03\x00\x20" + bytes(range(32)))
                        raw.close()
                        return
                    s.settimeout(5)
                    s.unwrap()  # close_notify (and the client's in return)
                    log(path, "conn=%d end=sent-close_notify" % n)
                    return
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                          + str(len(body)).encode() + b"\r\n\r\n" + body)
        except Closed as e:
            log(path, "conn=%d end=%s" % (n, e.args[0]))
        except (OSError, ssl.SSLError) as e:
            log(path, "conn=%d end=error %s" % (n, type(e).__name__))
        finally:
            try:
                s.close()
            except OSError:
                pass


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--log", required=True)
    a = ap.parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    ctx.load_verify_locations(a.ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    # An EOF without close_notify must read as one (SSLEOFError), not as a clean end.
    ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    srv = Server(("127.0.0.1", a.port), Handler)
    srv.ctx = ctx
    srv.log = a.log
    srv.serve_forever()


if __name__ == "__main__":
    main()
