#!/usr/bin/env python3
"""Differential corpus for ferry's HTTP framer (issue 12), used by 38-differential.sh.

  diff_corpus.py gen   --seed N --out CORPUS.jsonl
  diff_corpus.py send  --corpus CORPUS.jsonl --connect HOST:PORT --cert C --key K --ca CA
                       --sni NAME --out RESULTS.jsonl [--timeout S]
  diff_corpus.py judge --corpus CORPUS.jsonl --results RESULTS.jsonl --ferry-log FILE
                       --backend-log FILE --listener NAME [--xfcc-hash HEX]

gen: a deterministic (seeded) list of over 500 raw HTTP/1.x requests, one JSON line each:
  {"id", "class": valid|borderline|malformed, "kind", "expect": forward|refuse|either,
   "status": the status ferry must answer a refused one with, "rule": the rule id expected
   (informative), "method", "path", "body_len": decoded body length, "absent": header names
   that must not reach the backend, "raw": the request, latin-1}
  Every request's target holds "/dc/<id>", so that whatever reaches the backend names the item
  it came from; many malformed ones carry a second request, /dc/<id>-smug, behind the first.
  valid: GET/HEAD/POST/PUT/DELETE, Content-Length bodies (0 included), chunked bodies of 1..8
    chunks in lower/upper-case hex with leading zeros, chunk extensions (quoted strings too),
    trailers, keep-alive and close, HTTP/1.0 and 1.1.
  borderline: whitespace before ";" in a chunk line, empty trailer fields, chunks of 8-12 KiB,
    header values with tabs (forwarded); Transfer-Encoding "Chunked", Content-Length "005", two
    equal Content-Lengths, "chunked" twice, HTTP/1.2 (either way, as long as both sides agree).
  malformed: bare CR / bare LF in chunk lines, CTLs in chunk extensions, chunk data without
    CRLF, sizes 2^40+1, 2^63 and beyond, malformed trailer sections, CL+TE both orders, two
    CLs, TE twice, TE "gzip, chunked", TE in HTTP/1.0, whitespace or obs-text in header names,
    HTTP/0.9, 2.0, 3.0, dot segments (refused); "_" spellings of identity headers and headers
    named in Connection (forwarded, stripped).
  Each request is under 14 KiB (one TLS record).

send: each request on its own mTLS connection, in one write; reads until the first final
  response is complete, the server closes, or --timeout; then closes.  One JSON line per item:
  {"id", "port" (the client's local port, as ferry logs remote=), "statuses", "eof", "elapsed",
  "head" (the start of what came back)}.

judge: the oracle.  What the backend (strict_backend.js) parsed must be exactly the requests
  ferry logged as event=request on --listener with a status that is not ferry's own (400, 403,
  408, 411, 413, 414, 431, 501, 505, 502, 504, "-"), in order, with the same method, path and
  body length (bytes_in = decoded length); no clientError of the backend's parser (HPE_*; an
  HPE_INVALID_EOF_STATE only with an allowed abort on that connection); an abort only for a
  request ferry logged with a 4xx after forwarding its head; no identity header but ferry's own
  (X-Forwarded-For 127.0.0.1, X-Forwarded-Proto https, X-Forwarded-Client-Cert Hash=--xfcc-hash),
  no trailer field, no header named by "absent".  Per item: "forward" ones reached the backend
  once, whole; "refuse" ones never did (nor what was behind them), and the client got "status"
  from ferry with an event=bad_request line.  Prints a summary per class (forwarded, refused by
  rule id) and the first differences; exit status 1 when there is any.
"""
import argparse
import json
import random
import re
import socket
import ssl
import sys
import time
from collections import Counter, defaultdict

OWN = {"400", "403", "408", "411", "413", "414", "431", "501", "505"}
GATEWAY = {"502", "504", "-"}
ID_RE = re.compile(r"/dc/(\d+)")
PAIR = re.compile(r'(\w+)=("((?:[^"\\]|\\.)*)"|(\S*))')
FORGED = [("X_Auth_CouchDB_Roles", "_admin"), ("X_AUTH_COUCHDB_USERNAME", "admin"),
          ("x_auth_couchdb_token", "evil"), ("X_Forwarded_Client_Cert", "Hash=evil"),
          ("x-forwarded_for", "6.6.6.6"), ("X_Forwarded_Proto", "http"),
          ("X-Forwarded_Host", "evil.test"), ("Forwarded", "for=6.6.6.6"),
          ("client_cert", ":ZXZpbA==:"), ("Client_Cert_Chain", ":ZXZpbA==:"),
          ("X-Auth-CouchDB-UserName", "admin"), ("X-FORWARDED-FOR", "7.7.7.7")]

# ---------------------------------------------------------------- generation


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)

    def word(self, lo=3, hi=10):
        return "".join(self.r.choice("abcdefghijklmnopqrstuvwxyz0123456789")
                       for _ in range(self.r.randint(lo, hi)))

    def data(self, n):
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 {}[]:,\"\r\n"
        return "".join(self.r.choice(alphabet) for _ in range(n))

    def path(self, i):
        p = "/dc/%d" % i
        c = self.r.random()
        if c < 0.2:
            p += "/" + self.word() + "%2F" + self.word()
        elif c < 0.35:
            p += "/_design%2F" + self.word()
        elif c < 0.5:
            p += "?%s=%s&rev=1-%s" % (self.word(), self.word(), self.word(8, 8))
        return p

    def extra(self):
        hs = []
        for _ in range(self.r.randint(0, 3)):
            hs.append((self.r.choice(["X-Req", "User-Agent", "Accept", "X-Trace-Id", "If-Match"]),
                       self.word()))
        return hs

    def head(self, method, path, version="HTTP/1.1", headers=(), host=True):
        lines = ["%s %s %s" % (method, path, version)]
        if host:
            lines.append("Host: backend.test")
        lines += ["%s: %s" % (k, v) if v is not None else k for k, v in headers]
        return "\r\n".join(lines) + "\r\n\r\n"

    def hexsize(self, n, style=None):
        style = style or self.r.choice(["lower", "lower", "upper", "zeros"])
        if style == "upper":
            return "%X" % n
        if style == "zeros":
            return "%0*x" % (self.r.randint(2, 6), n)
        return "%x" % n

    def ext(self):
        return self.r.choice(["", "", "", ";a", ";a=b", ";name=\"q;u\\\"o te\"",
                              ";a=1;b=\"x y\"", ";%s=%s" % (self.word(), self.word())])

    def chunked(self, parts, trailers=(), style=None):
        out = ""
        for p in parts:
            out += "%s%s\r\n%s\r\n" % (self.hexsize(len(p), style), self.ext(), p)
        out += "0\r\n" + "".join("%s: %s\r\n" % kv for kv in trailers) + "\r\n"
        return out

    def conn(self, version):
        if version == "HTTP/1.0":
            return self.r.choice([[], [("Connection", "keep-alive")]])
        return self.r.choice([[], [], [("Connection", "close")], [("Connection", "keep-alive")]])


def item(**kw):
    d = {"expect": "forward", "status": None, "rule": None, "body_len": 0, "absent": []}
    d["class"] = kw.pop("cls")
    d.update(kw)
    return d


SMUG = "GET /dc/%d-smug HTTP/1.1\r\nHost: backend.test\r\nX-Auth-CouchDB-Roles: _admin\r\n\r\n"


def post_chunked(g, i, body, cls, kind, expect="refuse", status=400, rule=None, smug=True,
                 version="HTTP/1.1", te="chunked", extra=()):
    path = "/dc/%d" % i
    hs = [("Transfer-Encoding", te)] + list(extra)
    raw = g.head("POST", path, version, hs) + body + (SMUG % i if smug else "")
    return item(cls=cls, kind=kind, expect=expect, status=status, rule=rule, method="POST",
                path=path, raw=raw)


def v_get(g, i):
    method = g.r.choice(["GET", "GET", "HEAD", "DELETE"])
    version = g.r.choice(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"])
    path = g.path(i)
    return item(cls="valid", kind="get", method=method, path=path,
                raw=g.head(method, path, version, g.extra() + g.conn(version)))


def v_cl(g, i):
    method = g.r.choice(["POST", "PUT", "DELETE"])
    version = g.r.choice(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"])
    n = g.r.choice([0, 0, 1, 5, 100, 1000, 5000, 12000])
    path = g.path(i)
    hs = [("Content-Type", "application/json"), ("Content-Length", str(n))]
    return item(cls="valid", kind="content-length", method=method, path=path, body_len=n,
                raw=g.head(method, path, version, hs + g.extra() + g.conn("HTTP/1.1")) +
                g.data(n))


def v_chunked(g, i):
    method = g.r.choice(["POST", "PUT"])
    parts = [g.data(g.r.randint(1, 1500)) for _ in range(g.r.randint(1, 8))]
    trailers = g.r.choice([(), (), (("X-Checksum", g.word()),),
                           (("X-Auth-CouchDB-Roles", "_admin"), ("X-T", "1")),
                           (("X_Forwarded_For", "6.6.6.6"),)])
    path = g.path(i)
    hs = [("Transfer-Encoding", "chunked")] + g.extra() + g.conn("HTTP/1.1")
    return item(cls="valid", kind="chunked", method=method, path=path,
                body_len=sum(len(p) for p in parts),
                raw=g.head(method, path, "HTTP/1.1", hs) + g.chunked(parts, trailers))


def b_bws(g, i):
    parts = [g.data(g.r.randint(1, 200)) for _ in range(g.r.randint(1, 4))]
    body = "".join("%x%s;%s\r\n%s\r\n" % (len(p), g.r.choice([" ", "\t", " \t ", "  "]),
                                         g.r.choice(["x", "a=b", "q=\"v w\""]), p) for p in parts)
    body += "0\r\n\r\n"
    path = "/dc/%d" % i
    return item(cls="borderline", kind="bws-before-ext", method="POST", path=path,
                body_len=sum(len(p) for p in parts),
                raw=g.head("POST", path, "HTTP/1.1", [("Transfer-Encoding", "chunked")]) + body)


def b_trailer(g, i):
    p = g.data(g.r.randint(1, 300))
    trailer = g.r.choice(["", "X-Empty:\r\n", "X-Empty: \r\n", "X-A: 1\r\nX-B:\r\n"])
    path = "/dc/%d" % i
    body = "%x\r\n%s\r\n0\r\n%s\r\n" % (len(p), p, trailer)
    return item(cls="borderline", kind="empty-trailer", method="POST", path=path,
                body_len=len(p),
                raw=g.head("POST", path, "HTTP/1.1", [("Transfer-Encoding", "chunked")]) + body)


def b_big(g, i):
    n = g.r.randint(8 * 1024, 12 * 1024)
    p = g.data(n)
    path = "/dc/%d" % i
    return item(cls="borderline", kind="big-chunk", method="PUT", path=path, body_len=n,
                raw=g.head("PUT", path, "HTTP/1.1", [("Transfer-Encoding", "chunked")]) +
                g.chunked([p], style=g.r.choice(["lower", "upper"])))


def b_tabs(g, i):
    hs = [("X-Tab-Lead", "\tlead"), ("X-Tab-Mid", "a\tb"), ("X-Tab-Trail", "trail\t"),
          ("X-Tab-Both", "\t \tboth \t")]
    g.r.shuffle(hs)
    path = "/dc/%d" % i
    return item(cls="borderline", kind="tab-values", method="GET", path=path,
                raw=g.head("GET", path, "HTTP/1.1", hs[:g.r.randint(1, 4)]))


def b_either(g, i):
    path = "/dc/%d" % i
    c = g.r.randrange(5)
    if c == 0:
        return item(cls="borderline", kind="te-Chunked", expect="either", method="POST",
                    path=path, body_len=3,
                    raw=g.head("POST", path, "HTTP/1.1", [("Transfer-Encoding", "Chunked")]) +
                    "3\r\nabc\r\n0\r\n\r\n")
    if c == 1:
        return item(cls="borderline", kind="cl-leading-zeros", expect="either", method="POST",
                    path=path, body_len=5,
                    raw=g.head("POST", path, "HTTP/1.1", [("Content-Length", "005")]) + "hello")
    if c == 2:
        return item(cls="borderline", kind="cl-twice-equal", expect="either", method="POST",
                    path=path, body_len=5,
                    raw=g.head("POST", path, "HTTP/1.1", [("Content-Length", "5"),
                                                          ("Content-Length", "5")]) + "hello")
    if c == 3:
        return item(cls="borderline", kind="te-chunked-twice", expect="either", method="POST",
                    path=path, body_len=3,
                    raw=g.head("POST", path, "HTTP/1.1", [("Transfer-Encoding", "chunked"),
                                                          ("Transfer-Encoding", "chunked")]) +
                    "3\r\nabc\r\n0\r\n\r\n")
    return item(cls="borderline", kind="http-1.2", expect="either", method="GET", path=path,
                raw=g.head("GET", path, "HTTP/1.2"))


def m_chunk_lf(g, i):
    body = g.r.choice(["5\nhello\r\n0\r\n\r\n", "5 \nhello\r\n0\r\n\r\n",
                       "5;x\nhello\r\n0\r\n\r\n", "5;x=y \nhello\r\n0\r\n\r\n",
                       "5\r\nhello\r\n0\n\r\n", "1 \nZ\n0\n\nX\r\n0\r\n0\r\n\r\n"])
    return post_chunked(g, i, body, "malformed", "chunk-line-lf", rule="chunk-line",
                        smug=g.r.random() < 0.6)


def m_chunk_cr(g, i):
    body = g.r.choice(["2\rX{}\r\n0\r\n\r\n", "5;a\rb\r\nhello\r\n0\r\n\r\n",
                       "5\r\rhello\r\n0\r\n\r\n", "5\r\nhello\r\n0\r\r\n\r\n"])
    return post_chunked(g, i, body, "malformed", "chunk-line-cr", rule="chunk-line",
                        smug=g.r.random() < 0.6)


def m_chunk_ctl(g, i):
    ctl = g.r.choice(["\x01", "\x7f", "\x00", "\x1b", "\x0b", "\x0c"])
    ext = g.r.choice([";a=%s", ";%s", ";a=\"x%sy\"", ";a=b%s"]) % ctl
    return post_chunked(g, i, "5%s\r\nhello\r\n0\r\n\r\n" % ext, "malformed", "chunk-ext-ctl",
                        rule="chunk-line", smug=g.r.random() < 0.5)


def m_chunk_nonhex(g, i):
    size = g.r.choice(["0x5", "5g", "+5", "-5", " 5", "", "g", "5.0", "５"])
    size = size.encode("utf-8").decode("latin-1")
    return post_chunked(g, i, "%s\r\nhello\r\n0\r\n\r\n" % size, "malformed", "chunk-size-nonhex",
                        rule="chunk-line", smug=g.r.random() < 0.5)


def m_chunk_data(g, i):
    body = g.r.choice(["5\r\nhelloXY0\r\n\r\n", "5\r\nhello0\r\n\r\n", "5\r\nhello\n0\r\n\r\n",
                       "5\r\nhello\r0\r\n\r\n", "2\r\n{}XY0\r\n\r\n"])
    return post_chunked(g, i, body, "malformed", "chunk-data-no-crlf", rule="chunk-data",
                        smug=g.r.random() < 0.5)


def m_chunk_size(g, i):
    size = g.r.choice(["10000000001", "8000000000000000", "FFFFFFFFFFFFFFFF",
                       "100000000000000000005"])
    return post_chunked(g, i, "%s\r\nhello\r\n0\r\n\r\n" % size, "malformed", "chunk-size-huge",
                        rule="chunk-size", smug=g.r.random() < 0.5)


def m_trailer(g, i):
    body = "3\r\nabc\r\n0\r\n" + g.r.choice(["X: y\n\r\n", "\n", "X y\r\n\r\n",
                                             "X: y\r\n z\r\n\r\n", "X: y\rz\r\n\r\n",
                                             "X: y\r\n\n"])
    return post_chunked(g, i, body, "malformed", "trailer-malformed", rule="trailer",
                        smug=g.r.random() < 0.5)


def m_cl_te(g, i):
    path = "/dc/%d" % i
    hs = [("Content-Length", "6"), ("Transfer-Encoding", "chunked")]
    if g.r.random() < 0.5:
        hs.reverse()
    raw = g.head("POST", path, "HTTP/1.1", hs) + "0\r\n\r\n" + SMUG % i
    return item(cls="malformed", kind="cl-and-te", expect="refuse", status=400, rule="framing",
                method="POST", path=path, raw=raw)


def m_two_cl(g, i):
    path = "/dc/%d" % i
    hs = g.r.choice([[("Content-Length", "0"), ("Content-Length", "5")],
                     [("Content-Length", "5"), ("Content-Length", "0")],
                     [("Content-Length", "0, 5")]])
    raw = g.head("POST", path, "HTTP/1.1", hs) + "hello" + SMUG % i
    return item(cls="malformed", kind="two-cl", expect="refuse", status=400, rule="framing",
                method="POST", path=path, raw=raw)


def m_te_bad(g, i):
    c = g.r.randrange(5)
    body = "3\r\nabc\r\n0\r\n\r\n"
    if c == 0:
        return post_chunked(g, i, body, "malformed", "te-twice", rule="framing",
                            extra=[("Transfer-Encoding", "gzip")])
    te = ["gzip, chunked", "chunked, gzip", "identity", "gzip"][c - 1]
    return post_chunked(g, i, body, "malformed", "te-not-chunked", rule="framing", te=te)


def m_te_10(g, i):
    return post_chunked(g, i, "3\r\nabc\r\n0\r\n\r\n", "malformed", "te-http-1.0",
                        rule="framing", version="HTTP/1.0", smug=g.r.random() < 0.5)


def m_name_ws(g, i):
    path = "/dc/%d" % i
    h = g.r.choice(["Host : evil", "X-A\t: 1", "X-A : 1", "Client-Cert : x",
                    "Forwarded : for=6.6.6.6", "Upgrade : websocket",
                    "X-Auth-CouchDB-Roles : _admin", "Transfer-Encoding : chunked"])
    raw = g.head("GET", path, "HTTP/1.1", [(h, None)])
    return item(cls="malformed", kind="name-whitespace", expect="refuse", status=400,
                rule="header-name", method="GET", path=path, raw=raw)


def m_name_obs(g, i):
    path = "/dc/%d" % i
    h = g.r.choice(["X-\xe9: 1", "X\x80Y: 1", "\xffHost: x", "X-Auth-CouchDB-Rol\xe9s: _admin"])
    raw = g.head("GET", path, "HTTP/1.1", [(h, None)])
    return item(cls="malformed", kind="name-obs-text", expect="refuse", status=400,
                rule="header-name", method="GET", path=path, raw=raw)


def m_version(g, i):
    path = "/dc/%d" % i
    v = g.r.choice(["HTTP/0.9", "HTTP/2.0", "HTTP/3.0"])
    return item(cls="malformed", kind="version", expect="refuse", status=505, rule="version",
                method="GET", path=path, raw=g.head("GET", path, v))


def m_dots(g, i):
    path = "/dc/%d/" % i + g.r.choice(["../x", "%2e%2e/x", "./x", "..%2fx", "%2E", "x/..%5Cy",
                                       "%2e/x", "x/%2E%2e"])
    return item(cls="malformed", kind="dot-segment", expect="refuse", status=400, rule="path",
                method="GET", path=path, raw=g.head("GET", path, "HTTP/1.1"))


def m_underscore(g, i):
    hs = list(FORGED)
    g.r.shuffle(hs)
    hs = hs[:g.r.randint(3, len(hs))]
    path = "/dc/%d" % i
    if g.r.random() < 0.5:
        return item(cls="malformed", kind="identity-spellings", method="GET", path=path,
                    raw=g.head("GET", path, "HTTP/1.1", hs))
    return item(cls="malformed", kind="identity-spellings", method="POST", path=path,
                body_len=2, raw=g.head("POST", path, "HTTP/1.1", hs + [("Content-Length", "2")])
                + "{}")


def m_conn_named(g, i):
    path = "/dc/%d" % i
    c = g.r.randrange(3)
    if c == 0:
        hs = [("Connection", "X-Forwarded-Client-Cert, X-Auth-CouchDB-Token, X-Foo"),
              ("X-Foo", "1")]
        absent = ["X-Foo"]
    elif c == 1:
        hs = [("Connection", "close, X-Bar"), ("X-Bar", "2"), ("X-Keep", "3")]
        absent = ["X-Bar"]
    else:
        hs = [("X-Baz", "1"), ("Connection", "keep-alive"), ("Connection", "X-Baz, X-Qux"),
              ("X-Qux", "2")]
        absent = ["X-Baz", "X-Qux"]
    return item(cls="malformed", kind="connection-named", method="GET", path=path,
                absent=absent, raw=g.head("GET", path, "HTTP/1.1", hs))


PLAN = [(v_get, 90), (v_cl, 90), (v_chunked, 120),
        (b_bws, 20), (b_trailer, 15), (b_big, 15), (b_tabs, 15), (b_either, 20),
        (m_chunk_lf, 14), (m_chunk_cr, 12), (m_chunk_ctl, 12), (m_chunk_nonhex, 12),
        (m_chunk_data, 12), (m_chunk_size, 10), (m_trailer, 12), (m_cl_te, 10), (m_two_cl, 10),
        (m_te_bad, 12), (m_te_10, 8), (m_name_ws, 14), (m_name_obs, 8), (m_version, 8),
        (m_dots, 14), (m_underscore, 16), (m_conn_named, 12)]


def gen(a):
    g = Gen(a.seed)
    kinds = [f for f, n in PLAN for _ in range(n)]
    g.r.shuffle(kinds)
    with open(a.out, "w", encoding="utf-8") as out:
        for i, f in enumerate(kinds, 1):
            it = f(g, i)
            it["id"] = i
            size = len(it["raw"].encode("latin-1"))
            if size > 14 * 1024:
                sys.exit("item %d (%s) is %d bytes" % (i, it["kind"], size))
            out.write(json.dumps(it, sort_keys=True) + "\n")
    print("%d requests in %s" % (len(kinds), a.out))
    return 0

# ---------------------------------------------------------------- sending


def responses(buf, head_only):
    """(statuses of the complete responses in buf, whether a final one is complete)"""
    statuses = []
    pos = 0
    while True:
        end = buf.find(b"\r\n\r\n", pos)
        if end < 0:
            return statuses, False
        lines = buf[pos:end].split(b"\r\n")
        try:
            status = int(lines[0].split(b" ")[1])
        except (IndexError, ValueError):
            return statuses, False
        hdr = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(b":")
            hdr[k.strip().lower()] = v.strip()
        p = end + 4
        if 100 <= status < 200:
            statuses.append(status)
            pos = p
            continue
        if head_only or status in (204, 304):
            statuses.append(status)
            return statuses, True
        if b"chunked" in hdr.get(b"transfer-encoding", b"").lower():
            while True:
                le = buf.find(b"\r\n", p)
                if le < 0:
                    return statuses, False
                try:
                    size = int(buf[p:le].split(b";")[0], 16)
                except ValueError:
                    statuses.append(status)
                    return statuses, True
                if size == 0:
                    statuses.append(status)
                    return statuses, buf.find(b"\r\n\r\n", le) >= 0
                p = le + 2 + size + 2
                if p > len(buf):
                    return statuses, False
        if b"content-length" in hdr:
            try:
                n = int(hdr[b"content-length"])
            except ValueError:
                n = 0
            statuses.append(status)
            return statuses, len(buf) >= p + n
        statuses.append(status)
        return statuses, False  # runs to the end of the connection


def send(a):
    host, port = a.connect.rsplit(":", 1)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(a.ca)
    ctx.load_cert_chain(a.cert, a.key)
    items = [json.loads(ln) for ln in open(a.corpus, encoding="utf-8")]
    session = None
    t_all = time.monotonic()
    with open(a.out, "w", encoding="utf-8") as out:
        for it in items:
            raw = it["raw"].encode("latin-1")
            t0 = time.monotonic()
            res = {"id": it["id"], "port": 0, "statuses": [], "eof": "timeout", "head": ""}
            try:
                s = socket.create_connection((host, int(port)), timeout=a.timeout)
                res["port"] = s.getsockname()[1]
                s = ctx.wrap_socket(s, server_hostname=a.sni, session=session)
                if s.session is not None:
                    session = s.session
                s.sendall(raw)
                buf = b""
                deadline = t0 + a.timeout
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    s.settimeout(left)
                    try:
                        d = s.recv(65536)
                    except socket.timeout:
                        break
                    except (ssl.SSLError, OSError) as e:
                        res["eof"] = "reset" if "reset" in str(e).lower() else "fin"
                        break
                    if not d:
                        res["eof"] = "fin"
                        break
                    buf += d
                    st, done = responses(buf, it["method"] == "HEAD")
                    if done:
                        res["eof"] = "answered"
                        break
                res["statuses"], _ = responses(buf, it["method"] == "HEAD")
                res["head"] = buf[:300].decode("latin-1")
                s.close()
            except (OSError, ssl.SSLError) as e:
                res["eof"] = "error: %s" % e
            res["elapsed"] = round(time.monotonic() - t0, 3)
            out.write(json.dumps(res) + "\n")
    print("sent %d requests in %.1fs" % (len(items), time.monotonic() - t_all))
    return 0

# ---------------------------------------------------------------- judging


def parse_kv(line):
    kv = {}
    for m in PAIR.finditer(line):
        if m.group(3) is not None:
            kv[m.group(1)] = re.sub(r"\\(.)", r"\1", m.group(3))
        else:
            kv[m.group(1)] = m.group(4)
    return kv


def item_id(target):
    m = ID_RE.search(target or "")
    return int(m.group(1)) if m else None


def norm(name):
    return name.strip().lower().replace("_", "-")


def judge(a):
    items = {}
    for ln in open(a.corpus, encoding="utf-8"):
        it = json.loads(ln)
        items[it["id"]] = it
    results = {}
    for ln in open(a.results, encoding="utf-8"):
        r = json.loads(ln)
        results[r["id"]] = r
    ferry_req, ferry_bad = [], defaultdict(list)
    for ln in open(a.ferry_log, encoding="utf-8", errors="replace"):
        kv = parse_kv(ln)
        port = kv.get("remote", ":").rsplit(":", 1)[-1]
        if kv.get("event") == "request" and kv.get("listener") == a.listener:
            kv["_id"] = item_id(kv.get("path"))
            ferry_req.append(kv)
        elif kv.get("event") == "bad_request" and kv.get("listener") == a.listener:
            ferry_bad[port].append(kv)
    backend, aborts, errors = [], [], []
    for ln in open(a.backend_log, encoding="utf-8"):
        ev = json.loads(ln)
        if ev["ev"] == "request":
            ev["_id"] = item_id(ev["url"])
            backend.append(ev)
        elif ev["ev"] == "aborted":
            ev["_id"] = item_id(ev["url"])
            aborts.append(ev)
        else:
            errors.append(ev)

    diffs = []

    def diff(msg, it=None):
        if it is not None:
            msg = "item %d (%s/%s, expect %s): %s\n      raw: %r" % (
                it["id"], it["class"], it["kind"], it["expect"], msg, it["raw"][:240])
        diffs.append(msg)

    # 1. The backend parsed exactly what ferry logged as forwarded, in order.
    fwd = [kv for kv in ferry_req if kv.get("status") not in OWN | GATEWAY]
    for k in range(max(len(fwd), len(backend))):
        f = fwd[k] if k < len(fwd) else None
        b = backend[k] if k < len(backend) else None
        fs = (f.get("method"), f.get("path"), f.get("bytes_in")) if f else None
        bs = (b["method"], b["url"], str(b["body_len"])) if b else None
        if fs != bs:
            it = items.get((f or {}).get("_id") or (b or {}).get("_id"))
            diff("request %d in order: ferry logged forwarded %s, the backend parsed %s" % (
                k + 1, "%s %s bytes_in=%s" % fs if fs else "nothing",
                "%s %s body=%s" % bs if bs else "nothing"), it)
            break

    # 2. The backend's parser never choked; aborts only where ferry answered 4xx itself.
    allowed_abort_conns = set()
    for ab in aborts:
        own4xx = [kv for kv in ferry_req if kv["_id"] == ab["_id"] and
                  kv.get("status", "").startswith("4")]
        if own4xx:
            allowed_abort_conns.add(ab["conn"])
        else:
            diff("the backend saw %s %s aborted after %d body bytes, and ferry logged no 4xx of "
                 "its own for it" % (ab["method"], ab["url"], ab["body_len"]),
                 items.get(ab["_id"]))
    for e in errors:
        code = str(e.get("code"))
        if code == "HPE_INVALID_EOF_STATE" and e.get("conn") in allowed_abort_conns:
            continue
        if code.startswith("HPE_"):
            diff("the backend's parser refused what ferry forwarded: %s (%s) on %r" % (
                code, e.get("reason"), e.get("raw")))

    # 3. What reached the backend carried only ferry's identity, no trailers, no named headers.
    want = {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-client-cert"}
    for b in backend:
        it = items.get(b["_id"])
        got = Counter(norm(n) for n, _ in b["identity"])
        vals = {norm(n): v for n, v in b["identity"]}
        bad = [("%s: %s" % (n, v)) for n, v in b["identity"]
               if norm(n) not in want or "_" in n or got[norm(n)] > 1]
        if bad or set(got) != want:
            diff("%s %s: identity headers at the backend %s (missing %s)" % (
                b["method"], b["url"], bad, sorted(want - set(got))), it)
        elif vals["x-forwarded-for"] != "127.0.0.1" or vals["x-forwarded-proto"] != "https" or (
                a.xfcc_hash and not vals["x-forwarded-client-cert"].startswith(
                    "Hash=%s;" % a.xfcc_hash)):
            diff("%s %s: identity values at the backend %s" % (b["method"], b["url"], vals), it)
        if b["trailers"]:
            diff("%s %s: trailer fields reached the backend: %s" % (
                b["method"], b["url"], b["trailers"]), it)
        if it:
            names = {n.lower() for n in b["names"]}
            leaked = [n for n in it["absent"] if n.lower() in names]
            if leaked:
                diff("%s %s: headers named in Connection reached the backend: %s" % (
                    b["method"], b["url"], leaked), it)

    # 4. Per item: forwarded whole, or refused with nothing of it (or behind it) forwarded.
    at_backend = defaultdict(list)
    for b in backend:
        at_backend[b["_id"]].append(b)
    logged = defaultdict(list)
    for kv in ferry_req:
        logged[kv["_id"]].append(kv)
    per_class = defaultdict(Counter)
    port_seen = Counter()
    for i in sorted(items):
        it = items[i]
        r = results.get(i, {"statuses": [], "eof": "not sent", "port": 0})
        port = str(r["port"])
        bads = ferry_bad.get(port, [])
        badline = bads[port_seen[port]] if port_seen[port] < len(bads) else None
        got = at_backend.get(i, [])
        forwarded = [kv for kv in logged.get(i, []) if kv.get("status") not in OWN | GATEWAY]
        first = r["statuses"][0] if r["statuses"] else None
        if forwarded:
            per_class[it["class"]]["forwarded"] += 1
        elif badline is not None:
            port_seen[port] += 1
            per_class[it["class"]]["refused %s rule=%s" % (
                badline.get("status"), badline.get("rule", "?"))] += 1
        else:
            per_class[it["class"]]["other (%s, %s)" % (first, r["eof"])] += 1
        if it["expect"] == "forward":
            own = [b for b in got if b["url"] == it["path"]]
            if len(own) != 1 or len(got) != 1:
                diff("expected forwarded once; the backend parsed %s; client got %s (%s)" % (
                    [(b["method"], b["url"]) for b in got], r["statuses"], r["eof"]), it)
            elif own[0]["method"] != it["method"] or own[0]["body_len"] != it["body_len"]:
                diff("the backend parsed %s %s with a body of %d bytes, expected %s with %d" % (
                    own[0]["method"], own[0]["url"], own[0]["body_len"], it["method"],
                    it["body_len"]), it)
            elif first != 200:
                diff("forwarded, but the client got %s (%s)" % (r["statuses"], r["eof"]), it)
        elif it["expect"] == "refuse":
            if got:
                diff("expected refused; the backend parsed %s" % (
                    [(b["method"], b["url"], b["body_len"]) for b in got]), it)
            elif first != it["status"]:
                diff("expected ferry's %d, the client got %s (%s): %r" % (
                    it["status"], r["statuses"], r["eof"], r.get("head", "")[:160]), it)
            elif badline is None or badline.get("status") != str(it["status"]):
                diff("refused, but no event=bad_request status=%d line for remote port %s" % (
                    it["status"], port), it)
        if r["eof"].startswith("error"):
            diff("client error: %s" % r["eof"], it)

    # Summary, then the first differences.
    print("differential: %d requests; the backend parsed %d, ferry logged %d forwarded; "
          "%d aborts, %d client errors at the backend" % (
              len(items), len(backend), len(fwd), len(aborts), len(errors)))
    for cls in ("valid", "borderline", "malformed"):
        c = per_class[cls]
        print("  %-10s %4d: %s" % (cls, sum(c.values()), ", ".join(
            "%s %d" % (k, v) for k, v in sorted(c.items(), key=lambda kv: -kv[1]))))
    if diffs:
        print("%d difference(s); the first %d:" % (len(diffs), min(len(diffs), a.show)))
        for d in diffs[:a.show]:
            print("  - " + d)
        return 1
    print("no differences")
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("--seed", type=int, default=12)
    g.add_argument("--out", required=True)
    s = sub.add_parser("send")
    s.add_argument("--corpus", required=True)
    s.add_argument("--connect", required=True)
    s.add_argument("--cert", required=True)
    s.add_argument("--key", required=True)
    s.add_argument("--ca", required=True)
    s.add_argument("--sni", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--timeout", type=float, default=3.0)
    j = sub.add_parser("judge")
    j.add_argument("--corpus", required=True)
    j.add_argument("--results", required=True)
    j.add_argument("--ferry-log", required=True)
    j.add_argument("--backend-log", required=True)
    j.add_argument("--listener", required=True)
    j.add_argument("--xfcc-hash")
    j.add_argument("--show", type=int, default=15)
    a = ap.parse_args()
    return {"gen": gen, "send": send, "judge": judge}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
