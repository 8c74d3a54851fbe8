#!/usr/bin/env python3
"""asyncio load client for tests/faults/ and tests/soak.sh: many TLS (or plain) clients that
GET /blob/N from fault_backend.py through ferry and check every byte.

  load.py --connect 127.0.0.1:PORT [--cert C --key K --ca CA --sni NAME | --plain]
          [--conns N] [--concurrency C] [--size BYTES] [--hold S] [--requests R]
          [--duration S] [--pause S] [--retry-until S] [--timeout S] [--stop-file F] [--upload]

--conns N connections in all, at most C open at once (default C = N); each does R requests
(keep-alive) of /blob/SIZE, checks status 200 and the body's sha256, holds the connection
--hold seconds, then closes.  With --duration S, workers (C of them) keep opening new
connections (--pause S between two) until S seconds have passed (or --stop-file exists), and
--conns is ignored.  --upload: POST SIZE stream bytes to /blob/0 instead and check the
backend's X-Body-Sha256 of what it received.
--retry-until S: a connection that fails before any response byte (refused, reset, handshake
failure) or is answered 502/503 is retried until S seconds after start; otherwise it counts
as failed.
Prints one JSON line: {"ok": n, "failed": n, "bad_bytes": n, "retries": n, "errors": {...},
"elapsed": s}.  Exit status 0 when failed == 0 and bad_bytes == 0, else 1.
"""
import argparse
import asyncio
import collections
import hashlib
import json
import os
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stream  # noqa: E402


class RetryableStatus(Exception):
    """A 502/503 answer inside the --retry-until window: retried like a connect failure."""


class Stats:
    """Counters shared by every worker."""

    def __init__(self):
        self.ok = self.failed = self.bad = self.retries = 0
        self.errors = collections.Counter()


payload = b""


async def one_conn(a, ctx, want, st, t0):
    """Open one connection, do --requests requests, hold, close; retry early failures."""
    host, port = a.connect.rsplit(":", 1)
    while True:
        got_bytes = False
        try:
            r, w = await asyncio.wait_for(
                asyncio.open_connection(host, int(port), ssl=ctx,
                                        server_hostname=a.sni if ctx else None),
                a.timeout)
            try:
                for _ in range(a.requests):
                    if a.upload:
                        w.write(f"POST /blob/0 HTTP/1.1\r\nHost: {a.sni}\r\n"
                                f"Content-Length: {a.size}\r\n\r\n".encode())
                        w.write(payload)
                    else:
                        w.write(f"GET /blob/{a.size} HTTP/1.1\r\nHost: {a.sni}\r\n\r\n".encode())
                    h = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), a.timeout)
                    got_bytes = True
                    status = h.split(b" ", 2)[1]
                    n = 0
                    for ln in h.split(b"\r\n"):
                        if ln.lower().startswith(b"content-length:"):
                            n = int(ln.split(b":", 1)[1])
                    body = await asyncio.wait_for(r.readexactly(n), a.timeout)
                    if status in (b"502", b"503") and time.time() - t0 < a.retry_until:
                        raise RetryableStatus(status.decode())
                    if status != b"200":
                        st.failed += 1
                        st.errors[f"status {status.decode()}"] += 1
                        return
                    if a.upload:
                        echoed = b""
                        for ln in h.split(b"\r\n"):
                            if ln.lower().startswith(b"x-body-sha256:"):
                                echoed = ln.split(b":", 1)[1].strip()
                        if echoed.decode() != want:
                            st.bad += 1
                            st.errors["bad bytes (upload)"] += 1
                            return
                    elif hashlib.sha256(body).hexdigest() != want:
                        st.bad += 1
                        st.errors["bad bytes"] += 1
                        return
                    st.ok += 1
                if a.hold:
                    await asyncio.sleep(a.hold)
            finally:
                w.close()
                try:
                    await asyncio.wait_for(w.wait_closed(), 2)
                except Exception:  # noqa: BLE001 - the peer may already be gone
                    pass
            return
        except Exception as e:  # noqa: BLE001 - every failure is counted by kind
            kind = type(e).__name__
            if isinstance(e, RetryableStatus):
                st.errors[f"retried status {e}"] += 1
                got_bytes = False
            if not got_bytes and time.time() - t0 < a.retry_until:
                st.retries += 1
                await asyncio.sleep(0.2)
                continue
            st.failed += 1
            st.errors[kind + (": " + str(e)[:60] if str(e) else "")] += 1
            return


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connect", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--ca")
    ap.add_argument("--sni", default="node1.test")
    ap.add_argument("--plain", action="store_true")
    ap.add_argument("--conns", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=0)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--hold", type=float, default=0)
    ap.add_argument("--requests", type=int, default=1)
    ap.add_argument("--duration", type=float, default=0)
    ap.add_argument("--retry-until", type=float, default=0)
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("--stop-file", default="")
    ap.add_argument("--upload", action="store_true")
    ap.add_argument("--pause", type=float, default=0)
    a = ap.parse_args()
    global payload
    if a.upload:
        payload = b"".join(stream.gen(a.size))
    ctx = None
    if not a.plain:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(a.ca)
        ctx.load_cert_chain(a.cert, a.key)
    want = stream.expected_sha256(a.size)
    st = Stats()
    t0 = time.time()
    conc = a.concurrency or a.conns
    if a.duration:
        async def worker():
            while time.time() - t0 < a.duration and not (a.stop_file and os.path.exists(a.stop_file)):
                await one_conn(a, ctx, want, st, t0)
                if a.pause:
                    await asyncio.sleep(a.pause)
        await asyncio.gather(*(worker() for _ in range(conc)))
    else:
        sem = asyncio.Semaphore(conc)

        async def limited():
            async with sem:
                await one_conn(a, ctx, want, st, t0)
        await asyncio.gather(*(limited() for _ in range(a.conns)))
    print(json.dumps({"ok": st.ok, "failed": st.failed, "bad_bytes": st.bad,
                      "retries": st.retries, "errors": dict(st.errors),
                      "elapsed": round(time.time() - t0, 2)}), flush=True)
    sys.exit(0 if st.failed == 0 and st.bad == 0 else 1)


if __name__ == "__main__":
    asyncio.run(main())
