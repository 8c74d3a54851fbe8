#!/usr/bin/env python3
"""A TLS 1.3 client that a server refuses after the client's handshake, for the lingering close.

  refused_client.py --connect 127.0.0.1:PORT --cert C --key K --ca CA [--sni NAME]
                    [--tries N] [--hold N --ready FILE --stop FILE] [--timeout S]

Under TLS 1.3 a client's handshake is over before the server has judged its certificate.  Each
attempt: handshake, send an HTTP request at once (as ferry's outbound does), then read.  A
server that refuses the certificate sends the alert bad_certificate; if it then closed with the
request unread, the kernel's RST would destroy the alert and the read would fail with
ECONNRESET instead (or the write with EPIPE: "EOF occurred in violation of protocol").

--tries N (default 20): N attempts one after the other; each must end in the alert.
--hold N: open N such connections, write each request, then read nothing: create --ready, wait
  until --stop exists (at most --timeout s), then read each connection, which must give the
  alert (the server kept its socket only for its lingering bound, then closed it cleanly).

Prints one line: alerts=A resets=R other=O (and the first unexpected outcome).
Exit status: 0 when every attempt read the alert, 4 otherwise.
"""
import argparse
import os
import socket
import ssl
import sys
import time

REQUEST = b"GET /db HTTP/1.1\r\nHost: node1.test\r\nUser-Agent: refused_client\r\n\r\n"


def ctx_for(a):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.minimum_version = ssl.TLSVersion.TLSv1_3
    c.load_verify_locations(a.ca)
    c.load_cert_chain(a.cert, a.key)
    return c


def open_one(a, ctx):
    """A TLS 1.3 connection whose request is sent, not yet read."""
    host, port = a.connect.rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=a.timeout)
    s = ctx.wrap_socket(raw, server_hostname=a.sni)
    s.sendall(REQUEST)
    return s


def outcome(s):
    """'alert', 'reset' or a word for anything else, after reading ${s}."""
    try:
        d = s.recv(4096)
        return "other: read %r" % d[:40]
    except ssl.SSLError as e:
        if "ALERT_BAD_CERTIFICATE" in str(e) or "alert bad certificate" in str(e):
            return "alert"
        return "other: %s" % e
    except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError):
        return "reset"
    except OSError as e:
        return "other: %s" % e
    finally:
        s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connect", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--sni", default="node1.test")
    ap.add_argument("--tries", type=int, default=20)
    ap.add_argument("--hold", type=int, default=0)
    ap.add_argument("--ready")
    ap.add_argument("--stop")
    ap.add_argument("--timeout", type=float, default=30)
    a = ap.parse_args()
    ctx = ctx_for(a)
    results = []
    if a.hold > 0:
        held = []
        for _ in range(a.hold):
            try:
                held.append(open_one(a, ctx))
            except (ssl.SSLError, OSError) as e:
                results.append("other: while connecting: %s" % e)
        open(a.ready, "w").close()
        end = time.monotonic() + a.timeout
        while not os.path.exists(a.stop) and time.monotonic() < end:
            time.sleep(0.05)
        results += [outcome(s) for s in held]
    else:
        for _ in range(a.tries):
            try:
                s = open_one(a, ctx)
            except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError):
                results.append("reset")  # the RST came before our request went out
                continue
            except (ssl.SSLError, OSError) as e:
                results.append("other: while connecting: %s" % e)
                continue
            results.append(outcome(s))
    odd = [r for r in results if r != "alert"]
    print("alerts=%d resets=%d other=%d%s" % (
        results.count("alert"), results.count("reset"),
        len(odd) - results.count("reset"), (" first: " + odd[0]) if odd else ""))
    return 0 if not odd else 4


if __name__ == "__main__":
    sys.exit(main())
