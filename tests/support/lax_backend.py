#!/usr/bin/env python3
"""A lenient HTTP/1.1 backend that frames requests the way nginx and CouchDB's mochiweb do.

  lax_backend.py --port PORT --log FILE [--raw-log FILE] [--watch NAME]...

No HTTP library: bytes are read from the socket and framed here, so that a test can show what
a real backend makes of the bytes ferry forwards (issue 12, request smuggling):
  - a line ends at LF; one CR right before the LF is dropped (a CR anywhere else is data);
  - empty lines before a request line are skipped; the request line is METHOD SP TARGET SP
    HTTP/x.y (split on whitespace); header names are trimmed of whitespace (lenient, as
    Erlang's packet parser), values trimmed; a line starting with SP/HTAB continues the
    previous value (obs-fold);
  - Transfer-Encoding whose last token is "chunked" wins over Content-Length; another
    Transfer-Encoding cannot be framed (the connection is closed); else the first
    Content-Length; else no body;
  - a chunk size is the run of hex digits at the start of its line, the rest of the line is
    ignored (extensions, junk); the chunk data must be followed by an empty line (CRLF or LF);
    after the last chunk, trailer lines up to an empty line;
  - keep-alive (HTTP/1.1 unless "Connection: close"; HTTP/1.0 only with "keep-alive") and
    pipelining: requests are executed one after the other as they are framed.
Whatever cannot be framed closes that connection (logged as {"ev": "garbage"}); a connection
that ends inside a request is logged as {"ev": "eof"}.  The server itself never stops.

Every request executed is answered 200 with Content-Length and a JSON body
{"request": "METHOD TARGET", "n": <global request counter>, "conn": <connection number>,
"body_len": N}, and logged as one JSON line in --log:
  {"ev": "exec", "n", "conn", "method", "target", "version", "body_len",
   "identity": [[name, value], ...]   every header (or trailer) whose name starts, ignoring
                                       case and reading "_" as "-", with x-auth, x-forwarded,
                                       forwarded or client-cert,
   "connection": [value, ...]          raw Connection header values,
   "watch": [[name, value], ...]       headers named by --watch (same matching),
   "trailers": [[name, value], ...]    trailer fields of a chunked body,
   "chunk_lines": [raw line, ...]      chunked bodies: each chunk-size line as received (with
                                       its CR/LF), null otherwise,
   "resp_len": N}                      body bytes of the answer
Strings are latin-1 decoded.  --raw-log appends every byte received (any connection).

Test paths (matched anywhere in the target):
  __head_body     a HEAD is answered with its Content-Length body anyway (a misbehaving backend)
  __chunked_resp  the answer is chunked, with upper-case hex sizes, a chunk extension and a
                  trailer field (ferry must re-encode it), whatever the request's version
  __keep          the connection stays open after the answer (no Connection: close) even
                  for an HTTP/1.0 request without keep-alive (a misbehaving backend)
  __extra         the answer is followed, in the same write, by the start of a response head
                  nobody asked for ("HTTP/1.1 200 OK", "Set-Cookie: AuthSession=attacker",
                  "X-Junk: "): bytes past its Content-Length
  __extra_whole   the same with a whole head ("HTTP/1.1 200 OK", "Set-Cookie: ...", blank line)
  __extra_junk    the same with bytes that are no response at all ("attacker junk", blank line)
  __early         answered at once, before its body is read; the body is then read as the
                  next request (a backend that answers early and keeps its connection)
  __rst_to_eof    the answer's body runs to the end of the connection ("hello"), which the
                  backend then resets (SO_LINGER 0)
  __cut           the answer is chunked and ends after its first chunk ("5\\r\\nhello\\r\\n"):
                  the backend closes its connection at a chunk boundary (a crash mid-response)
"""
import argparse
import json
import re
import socket
import sys
import threading

IDENTITY_PREFIXES = ("x-auth", "x-forwarded", "forwarded", "client-cert", "x-ssl", "ssl-client",
                     "x-client-cert", "x-client-verify", "x-client-dn", "x-client-s-dn",
                     "x-real-ip", "x-arr-clientcert", "x-amzn-mtls", "x-remote-user",
                     "remote-user", "x-http-method", "x-method-override", "x-original-method",
                     "true-client-ip", "x-user", "x-auth-request", "x-tls-client")
MAX_LINE = 128 * 1024
HEX = re.compile(rb"[0-9A-Fa-f]+")


class Garbage(Exception):
    pass


def norm(name):
    return name.strip().lower().replace("_", "-")


class Server:
    def __init__(self, args):
        self.log_path = args.log
        self.raw_path = args.raw_log
        self.watch = [norm(w) for w in args.watch]
        self.lock = threading.Lock()
        self.n = 0
        self.conns = 0

    def record(self, doc):
        line = json.dumps(doc) + "\n"
        with self.lock:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(line)

    def raw(self, data):
        if self.raw_path:
            with self.lock:
                with open(self.raw_path, "ab") as f:
                    f.write(data)

    def next_n(self):
        with self.lock:
            self.n += 1
            return self.n

    def next_conn(self):
        with self.lock:
            self.conns += 1
            return self.conns


class Conn:
    def __init__(self, srv, sock, num):
        self.srv = srv
        self.sock = sock
        self.num = num
        self.buf = b""

    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.srv.raw(data)
        self.buf += data

    def readline(self):
        """(line without its LF and one CR before it, raw line with its line end)"""
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                raw, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                line = raw[:-1]
                if line.endswith(b"\r"):
                    line = line[:-1]
                return line, raw
            if len(self.buf) > MAX_LINE:
                raise Garbage("line longer than %d bytes" % MAX_LINE)
            self.fill()

    def skip(self, n):
        """Consume n bytes (counted, not kept: a chunk size may be huge)."""
        left = n
        while left > 0:
            if not self.buf:
                self.fill()
            take = min(left, len(self.buf))
            self.buf = self.buf[take:]
            left -= take

    def head(self):
        for _ in range(16):
            line, _raw = self.readline()
            if line.strip():
                break
        else:
            raise Garbage("only empty lines")
        parts = line.split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            raise Garbage("bad request line %r" % line[:200])
        headers = []
        while True:
            h, _raw = self.readline()
            if h == b"":
                break
            if h[:1] in (b" ", b"\t") and headers:
                name, value = headers[-1]
                headers[-1] = (name, value + " " + h.strip().decode("latin-1"))
                continue
            if b":" not in h:
                raise Garbage("header line without a colon %r" % h[:200])
            name, value = h.split(b":", 1)
            headers.append((name.strip().decode("latin-1"), value.strip().decode("latin-1")))
            if len(headers) > 1000:
                raise Garbage("too many header fields")
        return [p.decode("latin-1") for p in parts], headers

    def body(self, headers):
        """(body length, trailers, chunk lines or None)"""
        te = [v for n, v in headers if norm(n) == "transfer-encoding"]
        if te:
            tokens = [t.strip().lower() for t in ",".join(te).split(",") if t.strip()]
            if not tokens or tokens[-1] != "chunked":
                raise Garbage("Transfer-Encoding %r" % te)
            total = 0
            lines = []
            while True:
                line, raw = self.readline()
                lines.append(raw.decode("latin-1"))
                m = HEX.match(line)
                if not m:
                    raise Garbage("chunk-size line %r" % line[:100])
                size = int(m.group(), 16)
                if size == 0:
                    break
                self.skip(size)
                total += size
                after, _raw = self.readline()
                if after != b"":
                    raise Garbage("chunk data not followed by a line end")
            trailers = []
            while True:
                t, _raw = self.readline()
                if t == b"":
                    break
                name, _, value = t.partition(b":")
                trailers.append((name.strip().decode("latin-1"), value.strip().decode("latin-1")))
            return total, trailers, lines
        cl = [v for n, v in headers if norm(n) == "content-length"]
        if cl:
            if not re.fullmatch(r"[0-9]+", cl[0]):
                raise Garbage("Content-Length %r" % cl[0])
            n = int(cl[0])
            self.skip(n)
            return n, [], None
        return 0, [], None

    def answer(self, method, target, version, headers, body_len, trailers, chunk_lines):
        n = self.srv.next_n()
        conn_vals = [v for k, v in headers if norm(k) == "connection"]
        tokens = [t.strip().lower() for t in ",".join(conn_vals).split(",")]
        if version == "HTTP/1.1":
            keep = "close" not in tokens
        else:
            keep = "keep-alive" in tokens
        if "__keep" in target:
            keep = True
        doc = {"request": "%s %s" % (method, target), "n": n, "conn": self.num,
               "body_len": body_len}
        body = json.dumps(doc).encode() + b"\n"
        with_body = method != "HEAD" or "__head_body" in target
        close = b"" if keep else b"Connection: close\r\n"
        cut = None
        if "__rst_to_eof" in target and method != "HEAD":
            # A body delimited by the end of the connection, then a reset: a crash mid-body.
            cut = b"Connection: close\r\n\r\nhello"
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00"
                                 b"\x00\x00\x00\x00")
        elif "__cut" in target and method != "HEAD":
            cut = b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        if cut is not None:
            self.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + cut)
            self.srv.record({"ev": "exec", "n": n, "conn": self.num, "method": method,
                             "target": target, "version": version, "body_len": body_len,
                             "identity": [], "connection": conn_vals, "watch": [],
                             "trailers": [], "chunk_lines": chunk_lines, "resp_len": 5})
            return False
        if "__chunked_resp" in target and method != "HEAD":
            out = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                   b"Transfer-Encoding: chunked\r\n" + close + b"\r\n")
            for i in range(0, len(body), 11):
                part = body[i:i + 11]
                out += b"%X;ext=\"q v\"\r\n%s\r\n" % (len(part), part)
            out += b"0\r\nX-Resp-Trailer: t\r\n\r\n"
        else:
            out = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n" % len(body) + close + b"\r\n")
            if with_body:
                out += body
        ident = [[k, v] for k, v in headers + trailers if norm(k).startswith(IDENTITY_PREFIXES)]
        watch = [[k, v] for k, v in headers + trailers if norm(k) in self.srv.watch]
        self.srv.record({"ev": "exec", "n": n, "conn": self.num, "method": method,
                         "target": target, "version": version, "body_len": body_len,
                         "identity": ident, "connection": conn_vals, "watch": watch,
                         "trailers": [[k, v] for k, v in trailers],
                         "chunk_lines": chunk_lines, "resp_len": len(body) if with_body else 0})
        if "__extra_whole" in target:
            out += b"HTTP/1.1 200 OK\r\nSet-Cookie: AuthSession=attacker; Path=/\r\n\r\n"
        elif "__extra_junk" in target:
            out += b"attacker junk\r\n\r\n"
        elif "__extra" in target:
            out += b"HTTP/1.1 200 OK\r\nSet-Cookie: AuthSession=attacker; Path=/\r\nX-Junk: "
        self.sock.sendall(out)
        return keep

    def run(self):
        where = "idle"
        try:
            while True:
                where = "idle"
                if not self.buf:
                    self.fill()
                where = "head"
                (method, target, version), headers = self.head()
                where = "body of %s %s" % (method, target)
                if "__early" in target:
                    body_len, trailers, chunk_lines = 0, [], None
                else:
                    body_len, trailers, chunk_lines = self.body(headers)
                if not self.answer(method, target, version, headers, body_len, trailers,
                                   chunk_lines):
                    break
        except EOFError:
            if where != "idle":
                self.srv.record({"ev": "eof", "conn": self.num, "where": where})
        except Garbage as e:
            self.srv.record({"ev": "garbage", "conn": self.num, "where": where, "why": str(e)})
        except OSError as e:
            self.srv.record({"ev": "error", "conn": self.num, "where": where, "why": str(e)})
        except Exception as e:  # pylint: disable=broad-except; a test backend must not die
            self.srv.record({"ev": "garbage", "conn": self.num, "where": where,
                             "why": "%s: %s" % (type(e).__name__, e)})
        finally:
            try:
                self.sock.close()
            except OSError:
                pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--raw-log")
    ap.add_argument("--watch", action="append", default=[])
    args = ap.parse_args()
    srv = Server(args)
    open(args.log, "a").close()
    if args.raw_log:
        open(args.raw_log, "ab").close()
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", args.port))
    ls.listen(256)
    print("listening 127.0.0.1:%d" % args.port, flush=True)
    while True:
        try:
            sock, _addr = ls.accept()
        except OSError:
            continue
        c = Conn(srv, sock, srv.next_conn())
        threading.Thread(target=c.run, daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
