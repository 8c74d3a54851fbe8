#!/usr/bin/env python3
"""findings.py: the findings of `ferry run` against those of `ferry check`.

  findings.py same RUNLOG CHECKTEXT [ID...]
      `ferry run` refused to start: RUNLOG holds the findings block of `ferry check` (CHECKTEXT,
      its text output: every line but the summary) verbatim, so each finding has the same id,
      file, text and fix; with IDs, each is an error finding there.  Prints the error ids.
  findings.py count RUNLOG ID [LEVEL]
      Print how many event=finding log lines of RUNLOG (a running ferry: warnings, and errors
      of the clock) have that id (and level).

RUNLOG may be in ferry's text or JSON log format (the same keys in both).
"""
import json
import re
import sys

TEXT_KV = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_line(line):
    line = line.strip()
    if line.startswith("{"):
        try:
            return json.loads(line)
        except ValueError:
            return None
    parts = line.split(" ", 2)
    if len(parts) < 3:
        return None
    d = {"ts": parts[0], "level": parts[1]}
    for k, v in TEXT_KV.findall(parts[2]):
        d[k] = json.loads(v) if v.startswith('"') else v
    return d


def run_findings(path):
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            d = parse_line(line)
            if d is not None and d.get("event") == "finding":
                out.append(d)
    return out


def same(runlog, checktext, want):
    with open(checktext, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    block = "\n".join(lines[:-1]) + "\n"  # the last line is check's summary
    with open(runlog, encoding="utf-8", errors="replace") as fh:
        run = fh.read()
    ids = sorted({m.group(1) for m in re.finditer(r"^error +([a-z0-9-]+)  ", block, re.M)})
    if not ids or block not in run:
        print("ferry check printed:\n%s\nferry run printed:\n%s" % (block, run), file=sys.stderr)
        return 1
    missing = [i for i in want if i not in ids]
    if missing:
        print("expected ids %r, got %r" % (want, ids), file=sys.stderr)
        return 1
    print(" ".join(ids))
    return 0


def main(argv):
    if len(argv) >= 3 and argv[0] == "same":
        return same(argv[1], argv[2], argv[3:])
    if len(argv) in (3, 4) and argv[0] == "count":
        n = sum(1 for f in run_findings(argv[1])
                if f.get("id") == argv[2] and (len(argv) == 3 or f.get("level") == argv[3]))
        print(n)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
