#!/usr/bin/env python3
"""A TLS 1.3 server that resets each connection right after the handshake, for 43-runtime-alerts.

  reset_server.py --port PORT --cert C --key K --ca CA [--no-client-cert]

It asks for a client certificate (verified against CA), finishes its handshake, waits until
the client's first bytes (its request) have arrived, and then closes with SO_LINGER 0: a TCP
RST.  This is what a client sees from a server that refuses its certificate after a TLS 1.3
handshake and closes with the request unread: the RST destroys the alert.  Serves until killed;
one line per connection on stdout.  --no-client-cert: ask for no client certificate (then the
reset cannot be a refusal of one).
"""
import argparse
import select
import socket
import ssl
import struct


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--no-client-cert", action="store_true")
    a = ap.parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(a.cert, a.key)
    ctx.load_verify_locations(a.ca)
    ctx.verify_mode = ssl.CERT_NONE if a.no_client_cert else ssl.CERT_REQUIRED
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", a.port))
    ls.listen(16)
    while True:
        raw, _ = ls.accept()
        raw.settimeout(5)
        try:
            s = ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            print("handshake failed: %s" % e, flush=True)
            raw.close()
            continue
        select.select([s], [], [], 2)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        print("reset", flush=True)


if __name__ == "__main__":
    main()
