#!/usr/bin/env python3
"""Per-handshake numbers from one callgrind output file (bench/handshake-profile.sh).

  cg_calls.py FILE N [--top K] [--fn NAME]...

Prints, divided by N (the handshakes the dump covers):
  - total Ir;
  - self Ir by shared object (libcrypto, libssl, libc, the server binary, ...);
  - for each --fn NAME (exact symbol name): calls and inclusive Ir (self + callees);
  - the K functions with the most inclusive Ir per handshake among libssl/libcrypto entry
    points (symbols starting with SSL_, X509, EVP_, ERR_, OSSL_, CRYPTO_, PEM_, BIO_, ossl_).
Inclusive Ir is summed over every call, so a function that calls itself is counted once per
level (as callgrind_annotate --inclusive=yes does).
"""
import argparse
import collections
import re
import sys

ENTRY = re.compile(r"^(SSL_|X509|EVP_|ERR_|OSSL_|CRYPTO_|PEM_|BIO_|ossl_|d2i_|i2d_|tls_|ferry_)")


def parse(path):
    names = {"fn": {}, "ob": {}, "fl": {}}
    self_ir = collections.Counter()
    incl_calls = collections.Counter()  # Ir of calls made by fn (callee inclusive)
    calls = collections.Counter()  # calls into fn
    ob_self = collections.Counter()
    fn_ob = {}
    total = None
    fn = ob = cob = cfn = None
    pending_call = None  # callee of the next cost line

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
                if pending_call is not None:
                    incl_calls[fn] += ir
                    pending_call = None
                else:
                    self_ir[fn] += ir
                    ob_self[ob] += ir
                continue
            key, _, rest = line.partition("=")
            if key == "fn":
                fn = name("fn", rest)
                fn_ob.setdefault(fn, ob)
                cob = None
            elif key == "ob":
                ob = name("ob", rest)
            elif key == "cob":
                cob = name("ob", rest)
            elif key == "cfn":
                cfn = name("fn", rest)
                if cob is not None:
                    fn_ob.setdefault(cfn, cob)
            elif key in ("fl", "fi", "fe"):
                name("fl", rest)
            elif key == "cfi" or key == "cfl":
                name("fl", rest)
            elif key == "calls":
                calls[cfn] += int(rest.split()[0])
                pending_call = cfn
            elif line.startswith("summary:") or line.startswith("totals:"):
                total = int(line.split(":")[1].split()[0])
    incl = collections.Counter()
    for f_ in set(self_ir) | set(incl_calls):
        incl[f_] = self_ir[f_] + incl_calls[f_]
    return total, self_ir, incl, calls, ob_self


def short_ob(ob):
    base = ob.rsplit("/", 1)[-1]
    return re.sub(r"\.so[.\d]*$", "", base)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("n", type=int)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--fn", action="append", default=[])
    a = ap.parse_args()
    total, self_ir, incl, calls, ob_self = parse(a.file)
    n = a.n
    if total is None:
        total = sum(self_ir.values())
    print(f"total Ir per handshake: {total / n:,.0f}")
    print("self Ir per handshake by object:")
    byob = collections.Counter()
    for ob, v in ob_self.items():
        byob[short_ob(ob or "?")] += v
    for ob, v in byob.most_common(8):
        print(f"  {v / n:>12,.0f}  {100.0 * v / total:5.1f}%  {ob}")
    if a.fn:
        print("selected functions (calls per handshake, inclusive Ir per handshake):")
        for f_ in a.fn:
            print(f"  {calls[f_] / n:>10.1f} calls  {incl[f_] / n:>12,.0f} Ir  {f_}")
    print(f"top {a.top} library/ferry entry points by inclusive Ir per handshake:")
    rows = [(v, f_) for f_, v in incl.items() if ENTRY.match(f_)]
    rows.sort(reverse=True)
    for v, f_ in rows[: a.top]:
        print(f"  {v / n:>12,.0f} Ir  {calls[f_] / n:>8.1f} calls  {f_}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
