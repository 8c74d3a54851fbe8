#!/usr/bin/env python3
"""A tiny backend that checks CouchDB proxy authentication headers exactly as CouchDB's
couch_httpd_auth:proxy_authentication_handler does with [chttpd_auth] proxy_use_secret = true:

  - user  = X-Auth-CouchDB-UserName (absent -> not authenticated);
  - roles = X-Auth-CouchDB-Roles split on "," with empty pieces dropped and NO trimming
            (Erlang string:tokens(Roles, ","));
  - token = X-Auth-CouchDB-Token must equal, byte for byte, the lowercase hex
            HMAC-<hash>(key = secret, msg = user name)  (couch_util:to_hex(hmac(...))).

  couch_proxy_auth.py --port P --secret-file F [--hash sha256|sha1]

Every request: 200 {"ok":true,"userCtx":{"name":USER,"roles":[...]},"method","path"} when
valid; 401 {"error":"unauthorized","reason":...} when the user name is missing, the token is
missing or wrong.  One line per request on stdout: "<status> <method> <path> user=<name>".
"""
import argparse
import hashlib
import hmac
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self):
        n = int(self.headers.get("Content-Length", "0") or "0")
        if n > 0:
            self.rfile.read(n)
        user = self.headers.get("X-Auth-CouchDB-UserName")
        roles_h = self.headers.get("X-Auth-CouchDB-Roles")
        token = self.headers.get("X-Auth-CouchDB-Token")
        roles = [r for r in roles_h.split(",") if r != ""] if roles_h is not None else []
        status, doc = 401, None
        if user is None:
            doc = {"error": "unauthorized", "reason": "no X-Auth-CouchDB-UserName"}
        elif token is None:
            doc = {"error": "unauthorized", "reason": "no X-Auth-CouchDB-Token"}
        else:
            want = hmac.new(self.server.secret, user.encode("utf-8"),
                            self.server.hash).hexdigest()
            if token == want:
                status = 200
                doc = {"ok": True, "userCtx": {"name": user, "roles": roles},
                       "method": self.command, "path": self.path}
            else:
                doc = {"error": "unauthorized", "reason": "bad X-Auth-CouchDB-Token"}
        out = json.dumps(doc).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
        sys.stdout.write("%d %s %s user=%s\n" % (status, self.command, self.path, user))
        sys.stdout.flush()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer

    def log_message(self, fmt, *args):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--secret-file", required=True)
    ap.add_argument("--hash", choices=["sha256", "sha1"], default="sha256")
    a = ap.parse_args()
    # CouchDB's ini value: the file's content without the trailing newline.
    secret = open(a.secret_file, "rb").read().rstrip(b"\r\n")
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.allow_reuse_address = True
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.secret = secret
    srv.hash = getattr(hashlib, a.hash)
    print("listening 127.0.0.1:%d hash=%s" % (a.port, a.hash), flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
