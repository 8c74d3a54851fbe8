#!/usr/bin/env python3
"""Raw HTTP/1.x client over mTLS (or plain TCP) for ferry's HTTP tests.

  http_raw.py --connect 127.0.0.1:PORT [--cert C --key K --ca CA --sni NAME | --plain]
              [--send TEXT | --send-file FILE]... [--pause S]... [--head-count N]
              [--timeout S] [--close-after S] [--raw-out FILE]

Connects, does the TLS handshake, then performs the steps in order: each --send TEXT
(Python escapes allowed, e.g. '\\r\\n') is written in ONE write, and so is each --send-file
FILE's text (the same escapes; for sends longer than one argument may be); each --pause S
sleeps.
Then reads until the server closes, --timeout expires, or (--close-after S) S seconds pass
without data.  The bytes read are parsed as a sequence of HTTP responses (Content-Length,
chunked, or to EOF; 1xx interim responses count as responses; --head-count N: the first N
final responses answer HEAD, so they have no body).

Prints one JSON object: {"responses": [{"status", "reason", "version", "headers" (list of
[name, value]), "body" (latin-1 text), "body_len"}], "trailing": <unparsed bytes, latin-1>,
"eof": "fin" | "reset" | "timeout" | "idle", "elapsed": seconds, "raw_len": N}.
--raw-out FILE also writes the bytes read, as they came.
Exit status 0, or 3 when the connection or handshake failed.
"""
import argparse
import json
import socket
import ssl
import sys
import time


def parse(raw, head_count):
    out = []
    pos = 0
    heads_left = head_count
    while pos < len(raw):
        end = raw.find(b"\r\n\r\n", pos)
        if end < 0:
            break
        lines = raw[pos:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            break
        try:
            status = int(parts[1])
        except ValueError:
            break
        headers = []
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers.append([k, v.strip()])
        hmap = {k.lower(): v for k, v in headers}
        p = end + 4
        body = b""
        complete = True
        if status < 200 or status in (204, 304):
            pass
        elif heads_left > 0:
            heads_left -= 1
        elif "chunked" in hmap.get("transfer-encoding", "").lower():
            while True:
                le = raw.find(b"\r\n", p)
                if le < 0:
                    complete = False
                    break
                size = int(raw[p:le].split(b";")[0].strip() or b"0", 16)
                p = le + 2
                if size == 0:
                    te = raw.find(b"\r\n\r\n", p - 2)
                    p = te + 4 if te >= 0 else len(raw)
                    break
                body += raw[p:p + size]
                p += size + 2
        elif "content-length" in hmap:
            n = int(hmap["content-length"])
            body = raw[p:p + n]
            complete = len(body) == n
            p += n
        else:
            body = raw[p:]
            p = len(raw)
        out.append({"status": status, "reason": parts[2] if len(parts) > 2 else "",
                    "version": parts[0], "headers": headers,
                    "body": body.decode("latin-1"), "body_len": len(body),
                    "complete": complete})
        pos = p
    return out, raw[pos:]


def reset_seen(sock):
    """After a read that failed or read the end: was the connection reset?  Python reports a
    reset under TLS as an EOF (SSLEOFError, or b"" with suppress_ragged_eofs), like a FIN
    without close_notify; the TCP state tells them apart: CLOSE after a reset, CLOSE_WAIT
    after a FIN."""
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == 7  # TCP_CLOSE
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connect", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--ca")
    ap.add_argument("--sni")
    ap.add_argument("--plain", action="store_true")
    ap.add_argument("--send", action="append", default=[])
    ap.add_argument("--send-file", action="append", default=[])
    ap.add_argument("--pause", action="append", default=[])
    ap.add_argument("--head-count", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=20)
    ap.add_argument("--close-after", type=float)
    ap.add_argument("--raw-out")
    # keep the order of --send/--pause as given
    steps = []
    argv = sys.argv[1:]
    for i, a in enumerate(argv):
        if a in ("--send", "--pause") and i + 1 < len(argv):
            steps.append((a, argv[i + 1]))
        elif a == "--send-file" and i + 1 < len(argv):
            with open(argv[i + 1], encoding="utf-8") as f:
                steps.append(("--send", f.read()))
    a = ap.parse_args()

    host, port = a.connect.rsplit(":", 1)
    t0 = time.monotonic()
    try:
        sock = socket.create_connection((host, int(port)), timeout=a.timeout)
        if not a.plain:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(a.ca)
            ctx.check_hostname = bool(a.sni)
            if a.cert:
                ctx.load_cert_chain(a.cert, a.key)
            sock = ctx.wrap_socket(sock, server_hostname=a.sni)
    except (OSError, ssl.SSLError) as e:
        print(json.dumps({"error": str(e)}))
        return 3
    for kind, val in steps:
        if kind == "--pause":
            time.sleep(float(val))
        else:
            data = val.encode("utf-8").decode("unicode_escape").encode("latin-1")
            try:
                sock.sendall(data)
            except OSError:
                break
    raw = b""
    eof = "timeout"
    deadline = t0 + a.timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        wait = left if a.close_after is None else min(left, a.close_after)
        sock.settimeout(wait)
        try:
            d = sock.recv(1 << 20)
        except socket.timeout:
            eof = "idle" if a.close_after is not None and left > wait else "timeout"
            break
        except (ConnectionResetError, ssl.SSLError, OSError) as e:
            eof = "reset" if "reset" in str(e).lower() or reset_seen(sock) else "fin"
            break
        if not d:
            eof = "reset" if reset_seen(sock) else "fin"
            break
        raw += d
    el = time.monotonic() - t0
    if a.raw_out:
        with open(a.raw_out, "wb") as f:
            f.write(raw)
    responses, trailing = parse(raw, a.head_count)
    print(json.dumps({"responses": responses, "trailing": trailing.decode("latin-1"),
                      "eof": eof, "elapsed": round(el, 2), "raw_len": len(raw)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
