#!/usr/bin/env python3
"""bench/tlspeek.py: a TCP relay that tells whether TLS clients offer session resumption.

Listens on 127.0.0.1:LISTEN and relays every connection to 127.0.0.1:TARGET unchanged.  It
reads the ClientHello of each connection (the first TLS record, sent in clear) and appends one
line to LOG: "hello psk=1" when it carries a pre_shared_key extension (a TLS 1.3 resumption
attempt) or a non-empty session ticket extension (TLS 1.2), else "hello psk=0"; then
"accepted=1" when the server's ServerHello accepts the PSK (TLS 1.3 only), else "accepted=0".
bench/run.sh --smoke puts it between the outbound and inbound proxy of each pair to check that
"resumption on" resumes and "resumption off" does not.

Usage: tlspeek.py LISTEN TARGET LOG     (runs until killed)
"""
import socket
import sys
import threading

EXT_SESSION_TICKET = 35
EXT_PRE_SHARED_KEY = 41


def offers_resumption(record, server=False):
    """Whether a ClientHello record offers a PSK or a session ticket (server: whether a
    ServerHello accepts a PSK)."""
    try:
        if record[0] != 0x16 or record[5] != (0x02 if server else 0x01):
            return False
        p = 5 + 4 + 2 + 32  # record header, handshake header, legacy_version, random
        p += 1 + record[p]  # session id
        if server:
            p += 2 + 1  # cipher suite, compression method
        else:
            p += 2 + int.from_bytes(record[p:p + 2], "big")  # cipher suites
            p += 1 + record[p]  # compression methods
        end = p + 2 + int.from_bytes(record[p:p + 2], "big")
        p += 2
        while p + 4 <= end:
            etype = int.from_bytes(record[p:p + 2], "big")
            elen = int.from_bytes(record[p + 2:p + 4], "big")
            if etype == EXT_PRE_SHARED_KEY or (etype == EXT_SESSION_TICKET and elen > 0
                                                and not server):
                return True
            p += 4 + elen
    except IndexError:
        pass
    return False


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def first_record(sock):
    """Read at least one whole TLS record (or what arrives before EOF)."""
    data = b""
    try:
        while len(data) < 5 or len(data) < 5 + int.from_bytes(data[3:5], "big"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    return data


def handle(client, target, log, lock):
    try:
        upstream = socket.create_connection(("127.0.0.1", target), timeout=10)
        upstream.settimeout(None)
    except OSError:
        client.close()
        return
    hello = first_record(client)
    try:
        upstream.sendall(hello)
    except OSError:
        pass
    answer = first_record(upstream)
    try:
        client.sendall(answer)
    except OSError:
        pass
    with lock:
        with open(log, "a") as f:
            f.write("hello psk=%d accepted=%d\n" % (offers_resumption(hello),
                                                    offers_resumption(answer, server=True)))
    t = threading.Thread(target=pump, args=(upstream, client), daemon=True)
    t.start()
    pump(client, upstream)
    t.join()
    client.close()
    upstream.close()


def main():
    listen, target, log = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    lock = threading.Lock()
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", listen))
    srv.listen(128)
    while True:
        client, _ = srv.accept()
        threading.Thread(target=handle, args=(client, target, log, lock), daemon=True).start()


if __name__ == "__main__":
    main()
