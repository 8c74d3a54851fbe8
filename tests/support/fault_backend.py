#!/usr/bin/env python3
"""A misbehaving HTTP/1.1 backend for tests/faults/ and tests/soak.sh (asyncio, one process).

  fault_backend.py --port PORT

Paths (keep-alive unless the behaviour ends the connection; request bodies by Content-Length
are read and answered with their sha256 in the X-Body-Sha256 header):
  /blob/N          200, Content-Length N, the N-byte deterministic stream (stream.py)
  /reset/N         head with Content-Length N, N/2 body bytes, then a TCP RST (SO_LINGER 0)
  /stall-head      read the request, never answer (the connection stays open 120s)
  /stall-body/N    head with Content-Length N, 1000 body bytes, then stall 120s
  /close-half/N    head with Content-Length N, N/2 body bytes, then close (FIN)
  anything else    200 with a small text body
One line per request on stdout.
"""
import argparse
import asyncio
import hashlib
import os
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stream  # noqa: E402

_blobs = {}


def blob(n):
    """The n-byte deterministic stream, cached."""
    if n not in _blobs:
        _blobs[n] = b"".join(stream.gen(n))
    return _blobs[n]


def head(n, extra=""):
    """A 200 response head for an n-byte body."""
    return (f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {n}\r\n{extra}\r\n").encode()


async def handle(reader, writer):
    """Serve requests on one connection until EOF or a behaviour ends it."""
    try:
        while True:
            try:
                raw = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return
            lines = raw.decode("latin-1").split("\r\n")
            method, path = lines[0].split(" ")[:2]
            clen = 0
            for ln in lines[1:]:
                if ln.lower().startswith("content-length:"):
                    clen = int(ln.split(":", 1)[1])
            body = await reader.readexactly(clen) if clen else b""
            print(f"{method} {path} body={len(body)}", flush=True)
            parts = path.split("/")
            n = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 0
            if parts[1] == "blob":
                writer.write(head(n, f"X-Body-Sha256: {hashlib.sha256(body).hexdigest()}\r\n"))
                writer.write(blob(n))
                await writer.drain()
            elif parts[1] == "reset":
                writer.write(head(n) + blob(n)[: n // 2])
                await writer.drain()
                await asyncio.sleep(0.2)
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return
            elif parts[1] == "stall-head":
                await asyncio.sleep(120)
                return
            elif parts[1] == "stall-body":
                writer.write(head(n) + blob(n)[:1000])
                await writer.drain()
                await asyncio.sleep(120)
                return
            elif parts[1] == "close-half":
                writer.write(head(n) + blob(n)[: n // 2])
                await writer.drain()
                writer.close()
                return
            else:
                msg = b"ok\n"
                writer.write(head(len(msg)) + msg)
                await writer.drain()
    except (ConnectionError, OSError):
        return
    finally:
        try:
            writer.close()
        except Exception:  # noqa: BLE001 - closing a dead transport
            pass


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    a = ap.parse_args()
    srv = await asyncio.start_server(handle, "127.0.0.1", a.port, backlog=4096,
                                     limit=1 << 20)
    print(f"listening 127.0.0.1:{a.port}", flush=True)
    async with srv:
        await srv.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
