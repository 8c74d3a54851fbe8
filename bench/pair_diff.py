#!/usr/bin/env python3
"""Per-request (or per-handshake) differences between two runs, for bench/pair-counts.sh.

  pair_diff.py callgrind FILE1 FILE2 D [--top K] [--fn NAME]...
  pair_diff.py strace FILE1 FILE2 D
  pair_diff.py malloc FILE1 FILE2 D
  pair_diff.py table DIR D SERVERS SIDES [--top K]

FILE1 and FILE2 come from the same program and workload with N1 and N2 requests; D = N2 - N1.
Every number printed is (count(FILE2) - count(FILE1)) / D: the cost of one more request, with
start-up, the handshake and exit taken out.
  callgrind: total Ir; self Ir by object; the K functions with the most self Ir; calls and
             inclusive Ir of each --fn; calls into malloc/free/CRYPTO_malloc/CRYPTO_free by
             the caller's object (who allocates: libssl, libcrypto, the program, libevent).
  strace:    calls by syscall name (strace -c -f -o FILE).
  malloc:    bench/malloc_count.c's counters.
  table:     DIR holds SERVER-SIDE.TOOL.N files (pair-counts.sh --out); prints every tool's
             numbers for each SERVER and SIDE side by side (columns SERVER/SIDE).
Ir of a function is callgrind's self cost in user space (the kernel is not visible).
"""
import argparse
import collections
import glob
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

DEFAULT_FNS = [
    "malloc", "free", "realloc", "calloc", "CRYPTO_malloc", "CRYPTO_zalloc", "CRYPTO_free",
    "CRYPTO_clear_free", "SSL_read", "SSL_read_ex", "SSL_write", "SSL_write_ex", "SSL_pending",
    "SSL_get_error", "SSL_has_pending", "ERR_clear_error", "ERR_peek_error", "ERR_peek_last_error",
    "EVP_CipherUpdate", "EVP_EncryptUpdate", "EVP_DecryptUpdate", "EVP_CipherFinal_ex",
    "EVP_EncryptFinal_ex", "EVP_DecryptFinal_ex", "EVP_CIPHER_CTX_ctrl",
    "BIO_read", "BIO_write", "BIO_ctrl", "read", "write", "recv", "send", "recvfrom", "sendto",
    "readv", "writev", "epoll_wait", "epoll_ctl", "clock_gettime", "gettimeofday",
    "event_base_loop", "event_add", "event_del", "evbuffer_add", "evbuffer_drain",
    "evbuffer_remove", "bufferevent_write", "bufferevent_read", "memcpy", "memmove", "memset",
    "__memcpy_avx_unaligned_erms", "__memmove_avx_unaligned_erms", "__memset_avx2_unaligned_erms",
]
ALLOC_FNS = ("malloc", "free", "calloc", "realloc", "CRYPTO_malloc", "CRYPTO_zalloc", "CRYPTO_free",
             "CRYPTO_clear_free")


def short_ob(ob):
    base = (ob or "?").rsplit("/", 1)[-1]
    return re.sub(r"\.so[.\d]*$", "", base)


def parse_cg(path):
    """Self Ir per (object, fn), calls into fns, inclusive call cost, calls by caller object.

    Function names are keyed with their object: callgrind names a symbol-less function by its
    offset ("0x...52e40"), the same string in libssl and libc.  A cob= line names the callee's
    object for the next call only; without one the callee is in the caller's object."""
    names = {"fn": {}, "ob": {}, "fl": {}}
    self_ir = collections.Counter()  # (ob, fn) -> Ir
    call_ir = collections.Counter()  # (ob, fn) -> Ir of the calls it made
    calls = collections.Counter()  # (ob, fn) callee -> calls
    calls_by_ob = collections.Counter()  # (callee name, caller object) -> calls
    total = None
    fn = ob = cob = cfn = None
    pending = False

    def name(kind, rest):
        m = re.match(r"\((\d+)\)(?: (.*))?$", rest)
        if not m:
            return rest
        if m.group(2) is not None:
            names[kind][m.group(1)] = m.group(2)
        return names[kind].get(m.group(1), "?")

    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                ir = int(parts[1]) if len(parts) > 1 else 0
                if pending:
                    call_ir[(ob, fn)] += ir
                    pending = False
                else:
                    self_ir[(ob, fn)] += ir
                continue
            key, _, rest = line.partition("=")
            if key == "fn":
                fn = name("fn", rest)
                cob = None
            elif key == "ob":
                ob = name("ob", rest)
            elif key == "cob":
                cob = name("ob", rest)
            elif key == "cfn":
                cfn = name("fn", rest)
            elif key in ("fl", "fi", "fe", "cfi", "cfl"):
                name("fl", rest)
            elif key == "calls":
                k = int(rest.split()[0])
                callee = (cob if cob is not None else ob, cfn)
                calls[callee] += k
                if cfn in ALLOC_FNS:
                    calls_by_ob[(cfn, short_ob(ob))] += k
                cob = None
                pending = True
            elif line.startswith("summary:") or line.startswith("totals:"):
                total = int(line.split(":")[1].split()[0])
    if total is None:
        total = sum(self_ir.values())
    by_ob = collections.Counter()
    for (o, _), v in self_ir.items():
        by_ob[short_ob(o)] += v
    incl = collections.Counter()
    for k in set(self_ir) | set(call_ir):
        incl[k] = self_ir[k] + call_ir[k]
    # By name alone (exported names are unique): for --fn.
    calls_n, incl_n = collections.Counter(), collections.Counter()
    for (o, f_), v in calls.items():
        calls_n[f_] += v
    for (o, f_), v in incl.items():
        incl_n[f_] += v
    return {"total": total, "self": self_ir, "incl": incl, "calls": calls, "by_ob": by_ob,
            "calls_n": calls_n, "incl_n": incl_n, "calls_by_ob": calls_by_ob}


def diff(c1, c2, d):
    keys = set(c1) | set(c2)
    return {k: (c2.get(k, 0) - c1.get(k, 0)) / d for k in keys}


def cg_numbers(f1, f2, d, fns):
    a, b = parse_cg(f1), parse_cg(f2)
    out = collections.OrderedDict()
    out["total Ir"] = (b["total"] - a["total"]) / d
    for k, v in sorted(diff(a["by_ob"], b["by_ob"], d).items(), key=lambda x: -x[1]):
        out["self Ir " + k] = v
    selfd = diff(a["self"], b["self"], d)
    callsd = diff(a["calls_n"], b["calls_n"], d)
    incld = diff(a["incl_n"], b["incl_n"], d)
    for f_ in fns:
        out["calls " + f_] = callsd.get(f_, 0.0)
    for f_ in fns:
        out["incl Ir " + f_] = incld.get(f_, 0.0)
    for (callee, cob), v in sorted(diff(a["calls_by_ob"], b["calls_by_ob"], d).items()):
        out[f"calls {callee} from {cob}"] = v
    fcalls = diff(a["calls"], b["calls"], d)
    fnself = {f"{f_} [{short_ob(o)}]": v for (o, f_), v in selfd.items()}
    fncalls = {f"{f_} [{short_ob(o)}]": v for (o, f_), v in fcalls.items()}
    return out, fnself, fncalls


def strace_counts(path):
    c = collections.Counter()
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) >= 5 and re.match(r"^[0-9.]+$", p[0]) and p[-1] != "total":
                # % time, seconds, usecs/call, calls, [errors], syscall
                c[p[-1]] += int(p[3])
    return c


def malloc_counts(path):
    c = collections.Counter()
    for p in glob.glob(path) if "*" in path else [path]:
        with open(p) as f:
            for line in f:
                k, v = line.split()
                c[k] += int(v)
    return c


def fmt(v):
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:,.2f}"


def table(dirname, d, servers, sides, top):
    cols = [(s, side) for s in servers for side in sides]
    head = ["per request"] + [f"{s} {side}" for s, side in cols]

    def files(tool, s, side):
        f = sorted(glob.glob(os.path.join(dirname, f"{s}-{side}.{tool}.*")),
                   key=lambda p: int(p.rsplit(".", 1)[1]))
        return f if len(f) == 2 else None

    def emit(title, rows):
        print(f"\n== {title}")
        w = max([len(r[0]) for r in rows] + [len(head[0])])
        print(head[0].ljust(w) + "".join(h.rjust(16) for h in head[1:]))
        for r in rows:
            print(r[0].ljust(w) + "".join(c.rjust(16) for c in r[1:]))

    # callgrind
    per, fself, fcalls = {}, {}, {}
    for col in cols:
        f = files("cg", *col)
        if f:
            per[col], fself[col], fcalls[col] = cg_numbers(f[0], f[1], d, DEFAULT_FNS)
    if per:
        keys = []
        for col in cols:
            for k in per.get(col, {}):
                if k not in keys:
                    keys.append(k)
        rows = []
        for k in keys:
            vals = [per.get(col, {}).get(k, 0.0) for col in cols]
            if k.startswith(("calls", "incl")) and all(abs(v) < 0.005 for v in vals):
                continue
            if k.startswith("self Ir") and all(abs(v) < 50 for v in vals):
                continue
            rows.append([k] + [fmt(v) for v in vals])
        emit("callgrind (Ir, user space)", rows)
        # top functions by self Ir, union of each column's top K
        names = []
        for col in cols:
            for k, _ in sorted(fself.get(col, {}).items(), key=lambda x: -x[1])[:top]:
                if k not in names:
                    names.append(k)
        names.sort(key=lambda k: -max(fself.get(col, {}).get(k, 0.0) for col in cols))
        rows = [[k] + [fmt(fself.get(col, {}).get(k, 0.0)) for col in cols] for k in names]
        emit(f"self Ir by function (top {top} of each column)", rows)
        rows = [[k] + [fmt(fcalls.get(col, {}).get(k, 0.0)) for col in cols] for k in names]
        emit("calls into those functions", rows)
    # strace
    st = {}
    for col in cols:
        f = files("strace", *col)
        if f:
            st[col] = diff(strace_counts(f[0]), strace_counts(f[1]), d)
    if st:
        keys = sorted({k for v in st.values() for k in v},
                      key=lambda k: -max(st.get(col, {}).get(k, 0.0) for col in cols))
        rows = [["syscalls total"] + [fmt(sum(st.get(col, {}).values())) for col in cols]]
        rows += [[k] + [fmt(st.get(col, {}).get(k, 0.0)) for col in cols] for k in keys
                 if any(abs(st.get(col, {}).get(k, 0.0)) >= 0.005 for col in cols)]
        emit("syscalls (strace -c -f)", rows)
    mc = {}
    for col in cols:
        f = files("malloc", *col)
        if f:
            mc[col] = diff(malloc_counts(f[0]), malloc_counts(f[1]), d)
    if mc:
        keys = []
        for col in mc:
            for k in sorted(mc[col]):
                if k not in keys:
                    keys.append(k)
        rows = [[k] + [fmt(mc.get(col, {}).get(k, 0.0)) for col in cols] for k in keys]
        emit("allocations (bench/malloc_count.c)", rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["callgrind", "strace", "malloc", "table"])
    ap.add_argument("args", nargs="+")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--fn", action="append", default=[])
    a = ap.parse_args()
    if a.mode == "table":
        dirname, d, servers, sides = a.args
        table(dirname, float(d), servers.split(","), sides.split(","), a.top)
        return 0
    f1, f2, d = a.args[0], a.args[1], float(a.args[2])
    if a.mode == "callgrind":
        out, fself, _ = cg_numbers(f1, f2, d, a.fn or DEFAULT_FNS)
        for k, v in out.items():
            if abs(v) >= 0.005:
                print(f"{fmt(v):>14}  {k}")
        for k, v in sorted(fself.items(), key=lambda x: -x[1])[: a.top]:
            print(f"{fmt(v):>14}  self {k}")
    elif a.mode == "strace":
        for k, v in sorted(diff(strace_counts(f1), strace_counts(f2), d).items(), key=lambda x: -x[1]):
            print(f"{fmt(v):>10}  {k}")
    else:
        for k, v in sorted(diff(malloc_counts(f1), malloc_counts(f2), d).items()):
            print(f"{fmt(v):>10}  {k}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
