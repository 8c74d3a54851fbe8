"""Deterministic byte streams for the integration tests (tests/support/).

gen(n) yields n bytes in blocks of at most 1 MiB: a fixed pseudo-random 1 MiB block whose first
8 bytes are replaced by the block's index, so a dropped, duplicated or reordered block changes
the sha256.  expected_sha256(n) is the hex digest of gen(n).
"""
import hashlib

BLOCK = 1 << 20
_base = None


def _base_block():
    global _base
    if _base is None:
        parts = []
        h = b"ferry-test-stream"
        for _ in range(BLOCK // 32):
            h = hashlib.sha256(h).digest()
            parts.append(h)
        _base = bytearray(b"".join(parts))
    return _base


def gen(n):
    base = _base_block()
    i = 0
    while n > 0:
        blk = bytearray(base)
        blk[0:8] = i.to_bytes(8, "big")
        take = min(n, BLOCK)
        yield bytes(blk[:take])
        n -= take
        i += 1


def expected_sha256(n):
    h = hashlib.sha256()
    for b in gen(n):
        h.update(b)
    return h.hexdigest()
