#!/usr/bin/env python3
"""max_connections check: with limits.max_connections: 2 in front of an echo backend.

Opens two TLS connections A and B and proves each works (an echo round trip), then starts a
third, C, which must neither be refused nor complete while A and B are open, and must complete
its echo round trip once A closes.  Exit 0 on success, 1 with a message otherwise.
  maxconn.py --connect 127.0.0.1:PORT --cert C --key K --ca CA [--wait S]
"""
import argparse
import socket
import ssl
import sys
import threading
import time


def open_conn(addr, ctx, timeout):
    s = socket.create_connection(addr, timeout=timeout)
    return ctx.wrap_socket(s, server_hostname="node1.test")


def roundtrip(c, msg):
    c.sendall(msg)
    got = b""
    while len(got) < len(msg):
        d = c.recv(4096)
        if not d:
            raise EOFError("closed after %r" % got)
        got += d
    if got != msg:
        raise ValueError("echo %r != %r" % (got, msg))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connect", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--wait", type=float, default=2.0)
    a = ap.parse_args()
    host, port = a.connect.rsplit(":", 1)
    addr = (host, int(port))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(a.ca)
    ctx.load_cert_chain(a.cert, a.key)

    A = open_conn(addr, ctx, 10)
    roundtrip(A, b"A\n")
    B = open_conn(addr, ctx, 10)
    roundtrip(B, b"B\n")

    res = {}

    def third():
        t0 = time.monotonic()
        try:
            C = open_conn(addr, ctx, 30)
            roundtrip(C, b"C\n")
            res["ok"] = time.monotonic()
            C.close()
        except Exception as e:  # noqa: BLE001
            res["err"] = "%s after %.2fs" % (e, time.monotonic() - t0)

    th = threading.Thread(target=third, daemon=True)
    th.start()
    time.sleep(a.wait)
    if "err" in res:
        print("FAIL: the third connection failed while two were open: %s" % res["err"])
        return 1
    if "ok" in res:
        print("FAIL: the third connection was served while two were open (max_connections: 2)")
        return 1
    # both first connections still work
    roundtrip(B, b"B2\n")
    t_close = time.monotonic()
    A.close()
    th.join(30)
    if "ok" not in res:
        print("FAIL: the third connection did not proceed after one closed: %s"
              % res.get("err", "still waiting"))
        return 1
    print("ok: third connection waited and completed %.2fs after A closed"
          % (res["ok"] - t_close))
    B.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
