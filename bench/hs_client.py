#!/usr/bin/env python3
"""Drive N mTLS handshakes against one TLS server, one after the other (full by default).

  hs_client.py --connect 127.0.0.1:PORT --cert C --key K --ca CA --sni NAME
               [--tls 1.2|1.3] [-n N] [--leaf-only] [--resume]
  hs_client.py --plain --connect 127.0.0.1:PORT [-n N]

Each connection: TCP connect, a full handshake presenting the client certificate (a fresh
session every time: no session is offered), then one byte "x" sent and its echo read back,
which makes sure the server finished its side (under TLS 1.3 it checks our certificate after
our Finished) and dialled its echo backend; then close_notify and close.  Used by
bench/handshake-profile.sh to make the same N handshakes against ferry and HAProxy.
--leaf-only: the client does not load CA (and so does not verify the server): OpenSSL then
finds no issuer to add to the client's Certificate message (its "auto chain" from the trust
store) and sends the leaf alone, where by default it sends leaf + root.  It measures what a
peer's extra root certificate costs the server.
--resume: every connection but the first offers the session of the connection before it (TLS 1.3:
the last ticket the server sent, read with the echo; TLS 1.2: its ticket or session id), and
must be resumed (ssl session_reused), the first must not: the run fails otherwise.  So N
connections = 1 full handshake + N - 1 resumed ones.
--plain: no TLS at all (the client of an outbound listener, which makes the handshake itself):
connect, send "x", read it back, close.
Prints "ok N" (and with --resume "resumed N-1"); exit status 1 on the first failure.
"""
import argparse
import contextlib
import socket
import ssl
import sys


def run(host, port, n, timeout, wrap, done=None):
    """n connections: wrap(socket, i) (TLS or not), send "x", read it back, done(t), close."""
    for i in range(n):
        try:
            with socket.create_connection((host, port), timeout=timeout) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with wrap(s, i) as t:
                    t.sendall(b"x")
                    if t.recv(1) != b"x":
                        raise RuntimeError("no echo")
                    if done is not None:
                        done(t)
        except (OSError, RuntimeError) as e:
            print(f"hs_client: connection {i + 1}/{n}: {e}", file=sys.stderr)
            return 1
    print(f"ok {n}")
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connect", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--ca")
    ap.add_argument("--sni")
    ap.add_argument("--plain", action="store_true")
    ap.add_argument("--tls", choices=["1.2", "1.3"], default="1.3")
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--leaf-only", action="store_true")
    ap.add_argument("--resume", action="store_true")
    a = ap.parse_args()
    host, port = a.connect.rsplit(":", 1)
    if a.plain:
        return run(host, int(port), a.n, a.timeout, lambda s, i: contextlib.nullcontext(s))
    if not (a.cert and a.key and a.ca and a.sni):
        ap.error("--cert, --key, --ca and --sni are required without --plain")

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    v = ssl.TLSVersion.TLSv1_3 if a.tls == "1.3" else ssl.TLSVersion.TLSv1_2
    ctx.minimum_version = v
    ctx.maximum_version = v
    if a.tls == "1.2":
        # One suite for every server: their preferred orders differ (ferry picks AES128-GCM,
        # HAProxy's default list AES256-GCM-SHA384), and the PRF hash with it.
        ctx.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    ctx.load_cert_chain(a.cert, a.key)
    if a.leaf_only:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(a.ca)
    if not a.resume:
        ctx.options |= ssl.OP_NO_TICKET
    last = {"session": None, "resumed": 0}

    def wrap(s, i):
        sess = last["session"] if a.resume else None
        t = ctx.wrap_socket(s, server_hostname=a.sni, session=sess)
        if t.session_reused != (a.resume and i > 0):
            raise RuntimeError("session resumed" if t.session_reused else "session not resumed")
        last["resumed"] += t.session_reused
        return t

    def done(t):
        # After the echo: a TLS 1.3 server's tickets came before it and have been read.
        last["session"] = t.session

    rc = run(host, int(port), a.n, a.timeout, wrap, done if a.resume else None)
    if a.resume and rc == 0:
        print(f"resumed {last['resumed']}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
