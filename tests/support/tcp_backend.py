#!/usr/bin/env python3
"""TCP test backend, one thread per connection.

--mode echo   echo every byte back; on EOF shut down the write side and close.
--mode sink   read until EOF, then reply "<sha256 hex>\n", append "<len> <sha256>" to --record,
              and close.  (Also the half-close test: the reply only comes after the client's FIN.)
--mode cmd    the first line picks: "SINK" (as above), "SOURCE <n>" (send the n-byte
              deterministic stream of stream.py, then close), "ECHO".
"""
import argparse
import hashlib
import os
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stream  # noqa: E402

lock = threading.Lock()


def log(msg):
    with lock:
        sys.stdout.write(msg + "\n")
        sys.stdout.flush()


def do_sink(c, record, first=b""):
    h = hashlib.sha256()
    h.update(first)
    n = len(first)
    while True:
        d = c.recv(1 << 20)
        if not d:
            break
        h.update(d)
        n += len(d)
    hx = h.hexdigest()
    if record:
        with lock, open(record, "a") as f:
            f.write("%d %s\n" % (n, hx))
    log("sink %d %s" % (n, hx))
    c.sendall(hx.encode() + b"\n")


def do_echo(c, first=b""):
    if first:
        c.sendall(first)
    n = len(first)
    while True:
        d = c.recv(1 << 16)
        if not d:
            break
        n += len(d)
        c.sendall(d)
    log("echo %d" % n)


def do_source(c, n):
    for b in stream.gen(n):
        c.sendall(b)
    log("source %d" % n)


def serve(c, mode, record):
    try:
        if mode == "echo":
            do_echo(c)
        elif mode == "sink":
            do_sink(c, record)
        else:
            buf = b""
            while b"\n" not in buf:
                d = c.recv(4096)
                if not d:
                    log("cmd: EOF before command")
                    return
                buf += d
            line, rest = buf.split(b"\n", 1)
            words = line.decode().split()
            if words[0] == "SINK":
                do_sink(c, record, rest)
            elif words[0] == "SOURCE":
                do_source(c, int(words[1]))
            elif words[0] == "ECHO":
                do_echo(c, rest)
            else:
                log("cmd: unknown %r" % line)
                return
        try:
            c.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    except OSError as e:
        log("error %s" % e)
    finally:
        c.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mode", choices=["echo", "sink", "cmd"], required=True)
    ap.add_argument("--record", default="")
    a = ap.parse_args()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", a.port))
    s.listen(64)
    log("listening 127.0.0.1:%d mode=%s" % (a.port, a.mode))
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c, a.mode, a.record), daemon=True).start()


if __name__ == "__main__":
    main()
