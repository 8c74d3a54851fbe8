#!/usr/bin/env python3
"""Judge one case of tests/integration/37-smuggling.sh (issue 12).

  smuggle_judge.py --name NAME --expect SPEC --resp FILE
      --ferry-log FILE --ferry-from LINES --listeners in,acl
      --lax-log FILE --lax-from LINES [--raw-log FILE --raw-from BYTES] [--marker TEXT]...
      [--victim FILE --victim-line "GET /path"] [--want-echo LINE]... [--want-echo-file FILE]
      [--xfcc-hash HEX] [--auth-user U --auth-roles R --auth-token T]
      [--raw-resp FILE] [--max-elapsed S] [--wait S]

--resp and --victim are http_raw.py outputs (JSON).  SPEC is one of
  refuse:STATUS:ERROR[:RULE]  one JSON answer {"error": ERROR} with STATUS, the connection closed
                              promptly, and a new `event=bad_request ... status=STATUS` line in
                              ferry's log (with rule=RULE when given)
  echo                        every response is 200 and echoes, in order, the request lines
                              given with --want-echo / --want-echo-file (one per line)
  head-close                  one response head (200, no body), nothing after it, the
                              connection closed, no 502 anywhere
  deny                        the responses echo the --want-echo lines, then one 403
                              {"error": "forbidden"}; ferry logged event=access_denied and an
                              event=request line with status=403
  none                        no check of the responses (the oracle below still runs)

Then, always, the oracle over the lines ferry and the lax backend wrote since the case began
(--ferry-from / --lax-from): every request the backend executed was logged by ferry as
forwarded (event=request on one of --listeners with a status not of ferry's own making), every
request ferry logged with status=200 was executed by the backend (else someone else's response
was relayed), with the same decoded body length (bytes_in) and answer length (bytes_out); the
backend never saw an identity header other than ferry's own, a trailer field, a --watch header,
a Connection header naming anything but close/keep-alive, a chunk-size line other than
lower-case hex + CRLF, nor a request it could not frame or that was cut short; none of the
--marker strings is in the backend's raw byte log after --raw-from.
With --victim: the victim's one response is 200 and echoes --victim-line (its own request).
With --raw-resp: the raw bytes the client read hold chunk-size lines of lower-case hex + CRLF
only, and no trailer field.

Prints "ok: NAME ..." or "FAIL: NAME: reasons" and exits 0 or 1.
"""
import argparse
import json
import re
import sys
import time

OWN_STATUSES = {"400", "403", "408", "411", "413", "414", "431", "501", "505"}
PAIR = re.compile(r'(\w+)=("((?:[^"\\]|\\.)*)"|(\S*))')
CHUNK_LINE = re.compile(r"^[0-9a-f]+\r\n$")


def unescape(s):
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r", "t": "\t"}.get(m.group(1),
                                                                          m.group(1)), s)


def parse_log_line(line):
    kv = {}
    for m in PAIR.finditer(line):
        if m.group(3) is not None:
            kv[m.group(1)] = unescape(m.group(3))
        else:
            kv[m.group(1)] = m.group(4)
    return kv


def read_lines(path, start):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().split("\n")
    except OSError:
        return []
    if lines and lines[-1] == "":
        lines.pop()
    return lines[start:]


def norm(name):
    return name.strip().lower().replace("_", "-")


def body_json(r):
    try:
        return json.loads(r["body"])
    except (ValueError, KeyError, TypeError):
        return {}


def check_responses(a, resp, why):
    rs = resp.get("responses", [])
    if "error" in resp:
        why.append("client could not connect: %s" % resp["error"])
        return
    kind = a.expect.split(":")[0]
    if kind == "refuse":
        _, status, error = a.expect.split(":")[:3]
        if len(rs) != 1:
            why.append("expected one response, got %d (%s), eof=%s" % (
                len(rs), ",".join(str(r["status"]) for r in rs), resp.get("eof")))
        if rs and str(rs[0]["status"]) != status:
            why.append("expected HTTP %s, got %s %s" % (status, rs[0]["status"],
                                                        rs[0]["body"][:200]))
        if rs and body_json(rs[0]).get("error") != error:
            why.append("expected JSON error %s, body %r" % (error, rs[0]["body"][:200]))
        if resp.get("eof") != "fin":
            why.append("connection not closed by ferry after the answer (eof=%s after %ss)" % (
                resp.get("eof"), resp.get("elapsed")))
        elif resp.get("elapsed", 99) > a.max_elapsed:
            why.append("answered only after %ss" % resp.get("elapsed"))
    elif kind == "echo":
        want = list(a.want_echo)
        if a.want_echo_file:
            with open(a.want_echo_file, encoding="latin-1") as f:
                want += [ln for ln in f.read().split("\n") if ln]
        got = [body_json(r).get("request") if r["status"] == 200 else "HTTP %s" % r["status"]
               for r in rs]
        if got != want:
            for i, (g, w) in enumerate(zip(got, want)):
                if g != w:
                    why.append("response %d of %d echoes %r, expected %r" % (
                        i + 1, len(got), g, w))
                    break
            if len(got) != len(want):
                why.append("%d responses for %d requests (eof=%s after %ss)" % (
                    len(got), len(want), resp.get("eof"), resp.get("elapsed")))
    elif kind == "deny":
        want = list(a.want_echo)
        got = [body_json(r).get("request") if r["status"] == 200 else r["status"] for r in rs]
        if got != want + [403]:
            why.append("expected %s then 403, got %s" % (want, got))
        elif body_json(rs[-1]).get("error") != "forbidden":
            why.append("403 body %r" % rs[-1]["body"][:200])
    elif kind == "head-close":
        if len(rs) != 1 or rs[0]["status"] != 200 or rs[0]["body_len"] != 0:
            why.append("expected one 200 head, got %s" % [(r["status"], r["body_len"])
                                                          for r in rs])
        if resp.get("trailing"):
            why.append("bytes after the head reached the client: %r" % resp["trailing"][:200])
        if any(r["status"] == 502 for r in rs) or "502" in resp.get("trailing", ""):
            why.append("a 502 was sent")
        if resp.get("eof") != "fin":
            why.append("connection not closed after the head (eof=%s)" % resp.get("eof"))


def check_victim(a, why):
    with open(a.victim) as f:
        v = json.load(f)
    rs = v.get("responses", [])
    if "error" in v:
        why.append("victim could not connect: %s" % v["error"])
    elif len(rs) != 1 or rs[0]["status"] != 200:
        why.append("victim %r got %s" % (a.victim_line, [(r["status"], r["body"][:120])
                                                         for r in rs] or v.get("eof")))
    elif body_json(rs[0]).get("request") != a.victim_line:
        why.append("VICTIM %r RECEIVED THE RESPONSE TO %r (response poisoning; backend "
                   "connection %s)" % (a.victim_line, body_json(rs[0]).get("request"),
                                      body_json(rs[0]).get("conn")))


def check_raw_resp(a, why):
    with open(a.raw_resp, "rb") as f:
        raw = f.read().decode("latin-1")
    head, _, rest = raw.partition("\r\n\r\n")
    if "chunked" not in head.lower():
        return  # re-framed with Content-Length: nothing to check
    p = 0
    while True:
        e = rest.find("\n", p)
        if e < 0:
            why.append("chunked response cut short")
            return
        line = rest[p:e + 1]
        if not CHUNK_LINE.match(line):
            why.append("chunk-size line %r reached the client (want lower-case hex, no "
                       "extension, CRLF)" % line)
            return
        size = int(line, 16)
        p = e + 1
        if size == 0:
            if rest[p:p + 2] != "\r\n":
                why.append("trailer or junk after the last chunk: %r" % rest[p:p + 80])
            return
        p += size + 2


def oracle(a):
    why = []
    listeners = set(a.listeners.split(","))
    ferry = [parse_log_line(ln) for ln in read_lines(a.ferry_log, a.ferry_from)]
    reqs = [kv for kv in ferry if kv.get("event") == "request" and kv.get("listener") in listeners]
    forwarded = [kv for kv in reqs if kv.get("status") not in OWN_STATUSES]
    ok200 = [kv for kv in reqs if kv.get("status") == "200"]
    lax = []
    for ln in read_lines(a.lax_log, a.lax_from):
        try:
            lax.append(json.loads(ln))
        except ValueError:
            pass
    execd = [r for r in lax if r.get("ev") == "exec"]
    for r in lax:
        if r.get("ev") == "garbage":
            why.append("the backend could not frame what it got (%s: %s)" % (r["where"], r["why"]))
        elif r.get("ev") == "eof":
            why.append("a request was cut short at the backend (%s)" % r["where"])
    # Every request the backend executed was forwarded by ferry, as ferry logged it.
    pool = list(forwarded)
    for r in execd:
        for i, kv in enumerate(pool):
            if kv.get("method") == r["method"] and kv.get("path") == r["target"]:
                del pool[i]
                break
        else:
            why.append("THE BACKEND EXECUTED %s %s (connection %s), WHICH FERRY NEVER LOGGED "
                       "AS FORWARDED" % (r["method"], r["target"], r["conn"]))
    # Every 200 ferry logged was an answer of the backend to that very request.
    pool = list(execd)
    for kv in ok200:
        for i, r in enumerate(pool):
            if kv.get("method") == r["method"] and kv.get("path") == r["target"]:
                del pool[i]
                if kv.get("bytes_in") != str(r["body_len"]):
                    why.append("%s %s: ferry logged bytes_in=%s, the backend read a body of %d "
                               "bytes" % (r["method"], r["target"], kv.get("bytes_in"),
                                          r["body_len"]))
                if r["method"] != "HEAD" and kv.get("bytes_out") != str(r["resp_len"]):
                    why.append("%s %s: ferry logged bytes_out=%s, the backend answered %d body "
                               "bytes" % (r["method"], r["target"], kv.get("bytes_out"),
                                          r["resp_len"]))
                break
        else:
            why.append("ferry logged 200 for %s %s, but the backend never executed that request"
                       % (kv.get("method"), kv.get("path")))
    for r in execd:
        what = "%s %s" % (r["method"], r["target"])
        got = {}
        for name, value in r["identity"]:
            n = norm(name)
            if n in got:
                why.append("%s: identity header %s reached the backend twice (%r)" % (
                    what, name, value))
            got[n] = value
            if "_" in name or name != name.strip():
                why.append("%s: client-spelt identity header %r: %r reached the backend" % (
                    what, name, value))
        want = {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-client-cert"}
        if a.auth_user:
            want |= {"x-auth-couchdb-username", "x-auth-couchdb-roles", "x-auth-couchdb-token"}
        if set(got) != want:
            extra = sorted(set(got) - want)
            missing = sorted(want - set(got))
            why.append("%s: identity headers at the backend: extra %s, missing %s" % (
                what, ["%s: %s" % (n, got[n]) for n in extra], missing))
        if got.get("x-forwarded-for", "127.0.0.1") != "127.0.0.1":
            why.append("%s: X-Forwarded-For %r" % (what, got["x-forwarded-for"]))
        if got.get("x-forwarded-proto", "https") != "https":
            why.append("%s: X-Forwarded-Proto %r" % (what, got["x-forwarded-proto"]))
        xfcc = got.get("x-forwarded-client-cert")
        if a.xfcc_hash and xfcc is not None and not xfcc.startswith("Hash=%s;" % a.xfcc_hash):
            why.append("%s: X-Forwarded-Client-Cert %r is not ferry's" % (what, xfcc))
        for key, val in (("x-auth-couchdb-username", a.auth_user),
                         ("x-auth-couchdb-roles", a.auth_roles),
                         ("x-auth-couchdb-token", a.auth_token)):
            if val and key in got and got[key] != val:
                why.append("%s: %s %r, expected %r" % (what, key, got[key], val))
        if r["trailers"]:
            why.append("%s: trailer fields reached the backend: %s" % (what, r["trailers"]))
        if r["watch"]:
            why.append("%s: headers that had to be removed reached the backend: %s" % (
                what, r["watch"]))
        for v in r["connection"]:
            toks = [t.strip().lower() for t in v.split(",") if t.strip()]
            if any(t not in ("close", "keep-alive") for t in toks):
                why.append("%s: the backend got Connection: %s" % (what, v))
        for ln in r["chunk_lines"] or []:
            if not CHUNK_LINE.match(ln):
                why.append("%s: chunk-size line %r reached the backend (want lower-case hex, "
                           "no extension, CRLF)" % (what, ln))
                break
    if a.raw_log:
        try:
            with open(a.raw_log, "rb") as f:
                f.seek(a.raw_from)
                raw = f.read()
        except OSError:
            raw = b""
        for m in a.marker:
            if m.encode("latin-1") in raw:
                why.append("%s reached the backend (raw byte log)" % m)
    return why, len(execd), len(reqs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--expect", required=True)
    ap.add_argument("--resp", required=True)
    ap.add_argument("--ferry-log", required=True)
    ap.add_argument("--ferry-from", type=int, default=0)
    ap.add_argument("--listeners", required=True)
    ap.add_argument("--lax-log", required=True)
    ap.add_argument("--lax-from", type=int, default=0)
    ap.add_argument("--raw-log")
    ap.add_argument("--raw-from", type=int, default=0)
    ap.add_argument("--marker", action="append", default=[])
    ap.add_argument("--victim")
    ap.add_argument("--victim-line")
    ap.add_argument("--want-echo", action="append", default=[])
    ap.add_argument("--want-echo-file")
    ap.add_argument("--xfcc-hash")
    ap.add_argument("--auth-user")
    ap.add_argument("--auth-roles")
    ap.add_argument("--auth-token")
    ap.add_argument("--raw-resp")
    ap.add_argument("--max-elapsed", type=float, default=3.0)
    ap.add_argument("--wait", type=float, default=2.0)
    a = ap.parse_args()

    with open(a.resp) as f:
        resp = json.load(f)
    fixed = []
    check_responses(a, resp, fixed)
    if a.victim:
        check_victim(a, fixed)
    if a.raw_resp:
        check_raw_resp(a, fixed)
    # Log lines may trail the bytes the client got by a moment: look again until they agree.
    end = time.monotonic() + a.wait
    while True:
        why, n_exec, n_req = oracle(a)
        if a.expect.startswith("refuse:"):
            parts = a.expect.split(":")
            bad = [parse_log_line(ln) for ln in read_lines(a.ferry_log, a.ferry_from)]
            bad = [kv for kv in bad if kv.get("event") == "bad_request"]
            if not any(kv.get("status") == parts[1] for kv in bad):
                why.append("no event=bad_request with status=%s in ferry's log" % parts[1])
            elif len(parts) > 3 and not any(kv.get("status") == parts[1] and
                                            kv.get("rule") == parts[3] for kv in bad):
                why.append("event=bad_request without rule=%s: %s" % (
                    parts[3], [kv.get("rule") for kv in bad]))
        if a.expect == "deny":
            kvs = [parse_log_line(ln) for ln in read_lines(a.ferry_log, a.ferry_from)]
            if not any(kv.get("event") == "access_denied" for kv in kvs):
                why.append("no event=access_denied in ferry's log")
            if not any(kv.get("event") == "request" and kv.get("status") == "403" for kv in kvs):
                why.append("no event=request status=403 line in ferry's log")
        if not why or time.monotonic() >= end:
            break
        time.sleep(0.1)
    why = fixed + why
    if why:
        print("FAIL: %s: %s" % (a.name, "; ".join(why)))
        return 1
    print("ok: %s (%d response(s), backend executed %d, ferry logged %d)" % (
        a.name, len(resp.get("responses", [])), n_exec, n_req))
    return 0


if __name__ == "__main__":
    sys.exit(main())
