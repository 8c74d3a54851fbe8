#!/usr/bin/env python3
"""A scripted HTTP CONNECT proxy for tests/integration/47-egress-proxy.sh: the answers a real
proxy (tinyproxy) cannot be made to give.  One process, one thread per connection.

  connect_proxy.py --serve PORT=MODE [--serve PORT=MODE ...] [--log FILE]

Every MODE first reads the request head (up to the blank line) and appends one JSON line to
--log: {"port", "mode", "request_line", "headers": [[name, value], ...]}; then:
  tunnel            200 in one send(), then relay bytes to the CONNECT target both ways.  A
                    target host that is not an IP address and ends in ".test" is dialled at
                    127.0.0.1; a target that cannot be reached gets 502 (as squid answers)
  segmented         a 200 with a long reason phrase and extra headers, sent in several TCP
                    segments 50 ms apart (the blank line itself split "\\r\\n\\r" | "\\n"), then
                    relay as tunnel
  trailing          "HTTP/1.1 200 OK\\r\\n\\r\\n" and, in the SAME send(), a TLS fatal alert
                    record (handshake_failure); then relay as tunnel.  A client that hands
                    the bytes after the head to TLS fails its handshake on that alert; one
                    that drops them completes the handshake with the real peer
  stall             never answer; the connection stays open until the client closes it
  status:CODE       answer CODE with a small body and Connection: close, then close
  garbage           a complete head that is not HTTP ("SSH-2.0-...\\r\\n\\r\\n"), then hold open
  http2             "HTTP/2 200\\r\\n\\r\\n" (not HTTP/1.x), then hold open
  bighead           "HTTP/1.1 200 OK\\r\\n" and 9000 bytes of headers that never end, hold open
  head:N            a 200 whose head is exactly N bytes (blank line included; sent in one
                    send()), then relay as tunnel
  cut               "HTTP/1.1 200 OK\\r\\nProxy-Agent: cut\\r\\n" (no blank line), then close
  auth:USER:PASS    407 (Proxy-Authenticate: Basic) unless Proxy-Authorization is Basic
                    USER:PASS, then relay as tunnel
A MODE that holds a connection open does so for at most 120 s.
"""
import argparse
import base64
import ipaddress
import json
import socket
import sys
import threading
import time

LOG_LOCK = threading.Lock()
LOG_FILE = None
HOLD_SECS = 120
# A TLS record: alert (21), version 3.3, length 2, level fatal (2), handshake_failure (40).
TLS_ALERT = bytes([21, 3, 3, 0, 2, 2, 40])


def log(entry):
    if LOG_FILE is None:
        return
    with LOG_LOCK:
        with open(LOG_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")


def read_head(c):
    """The request head (bytes up to and including the blank line) and what followed it."""
    data = b""
    while b"\r\n\r\n" not in data:
        d = c.recv(65536)
        if not d:
            return None, b""
        data += d
        if len(data) > 65536:
            return None, b""
    head, rest = data.split(b"\r\n\r\n", 1)
    return head.decode("latin-1"), rest


def hold(c):
    """Keep ${c} open, reading and dropping, until the client closes or HOLD_SECS pass."""
    c.settimeout(0.5)
    end = time.time() + HOLD_SECS
    while time.time() < end:
        try:
            if not c.recv(65536):
                return
        except socket.timeout:
            continue
        except OSError:
            return


def pump(src, dst):
    try:
        while True:
            d = src.recv(65536)
            if not d:
                break
            dst.sendall(d)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def dial(target):
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host.endswith(".test"):
            host = "127.0.0.1"
    return socket.create_connection((host, int(port)), timeout=5)


def relay(c, target, answer, rest):
    """Dial ${target}; on success send ${answer} (a list of (bytes, pause) pieces) and relay."""
    try:
        up = dial(target)
    except (OSError, ValueError):
        body = b"cannot reach " + target.encode() + b"\n"
        c.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: "
                  + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        return
    up.settimeout(None)
    for piece, pause in answer:
        c.sendall(piece)
        if pause:
            time.sleep(pause)
    if rest:
        up.sendall(rest)
    t = threading.Thread(target=pump, args=(up, c), daemon=True)
    t.start()
    pump(c, up)
    t.join(HOLD_SECS)
    up.close()


def segmented_answer():
    reason = "Connection established " + "through the scripted test proxy " * 8
    head = ("HTTP/1.1 200 " + reason.strip() + "\r\n"
            "Proxy-Agent: connect_proxy.py/1\r\n"
            "X-Extra-One: " + "a" * 200 + "\r\n"
            "Via: 1.1 scripted\r\n"
            "X-Extra-Two: two\r\n\r\n").encode()
    cuts = [7, 13, 60, len(head) // 2, len(head) - 40, len(head) - 1]
    pieces, at = [], 0
    for cut in cuts:
        pieces.append((head[at:cut], 0.05))
        at = cut
    pieces.append((head[at:], 0))
    return pieces


def handle(c, port, mode):
    try:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head, rest = read_head(c)
        if head is None:
            return
        lines = head.split("\r\n")
        headers = [ln.split(":", 1) for ln in lines[1:] if ":" in ln]
        headers = [[k.strip(), v.strip()] for k, v in headers]
        log({"port": port, "mode": mode, "request_line": lines[0], "headers": headers})
        parts = lines[0].split(" ")
        target = parts[1] if len(parts) == 3 and parts[0] == "CONNECT" else ""
        if mode == "tunnel":
            relay(c, target, [(b"HTTP/1.1 200 Connection established\r\n\r\n", 0)], rest)
        elif mode == "segmented":
            relay(c, target, segmented_answer(), rest)
        elif mode == "trailing":
            relay(c, target, [(b"HTTP/1.1 200 OK\r\n\r\n" + TLS_ALERT, 0)], rest)
        elif mode == "stall":
            hold(c)
        elif mode.startswith("status:"):
            code = int(mode.split(":")[1])
            body = b"scripted answer %d\n" % code
            c.sendall(b"HTTP/1.1 %d Scripted %d\r\nContent-Type: text/plain\r\n"
                      b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                      % (code, code, len(body), body))
        elif mode == "garbage":
            c.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n\r\n")
            hold(c)
        elif mode == "http2":
            c.sendall(b"HTTP/2 200\r\n\r\n")
            hold(c)
        elif mode == "bighead":
            c.sendall(b"HTTP/1.1 200 OK\r\n" + b"".join(
                b"X-Filler-%03d: %s\r\n" % (i, b"f" * 80) for i in range(100)))
            hold(c)
        elif mode.startswith("head:"):
            n = int(mode.split(":")[1])
            fixed = b"HTTP/1.1 200 OK\r\nX-Pad: \r\n\r\n"
            head = fixed.replace(b"X-Pad: ", b"X-Pad: " + b"p" * (n - len(fixed)))
            assert len(head) == n
            relay(c, target, [(head, 0)], rest)
        elif mode == "cut":
            c.sendall(b"HTTP/1.1 200 OK\r\nProxy-Agent: cut\r\n")
        elif mode.startswith("auth:"):
            want = "Basic " + base64.b64encode(mode[5:].encode()).decode()
            got = [v for k, v in headers if k.lower() == "proxy-authorization"]
            if got == [want]:
                relay(c, target, [(b"HTTP/1.1 200 Connection established\r\n\r\n", 0)], rest)
            else:
                body = b"credentials required\n"
                c.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                          b"Proxy-Authenticate: Basic realm=\"scripted\"\r\n"
                          b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        else:
            print(f"connect_proxy.py: unknown mode {mode}", file=sys.stderr, flush=True)
    except OSError:
        pass
    finally:
        try:
            c.close()
        except OSError:
            pass


def serve(port, mode):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(64)
    return s


def accept_loop(s, port, mode):
    while True:
        c, _ = s.accept()
        threading.Thread(target=handle, args=(c, port, mode), daemon=True).start()


def main():
    global LOG_FILE
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--serve", action="append", required=True, metavar="PORT=MODE")
    ap.add_argument("--log")
    a = ap.parse_args()
    LOG_FILE = a.log
    socks = []
    for spec in a.serve:
        port, mode = spec.split("=", 1)
        socks.append((serve(int(port), mode), int(port), mode))
    for s, port, mode in socks:
        threading.Thread(target=accept_loop, args=(s, port, mode), daemon=True).start()
        print(f"listening on 127.0.0.1:{port} mode {mode}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
