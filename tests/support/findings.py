#!/usr/bin/env python3
"""findings.py: compare the event=finding lines of a `ferry run` log with `ferry check --json`.

  findings.py same RUNLOG CHECKJSON [ID...]
      Every error finding of CHECKJSON appears in RUNLOG as an event=finding line at level
      error with the same id, file, msg and fix, and RUNLOG has no error finding that check
      lacks; with IDs, those ids must be among them.  Prints the ids.
  findings.py count RUNLOG ID [LEVEL]
      Print how many event=finding lines of RUNLOG have that id (and level).

RUNLOG may be in ferry's text or JSON log format (the same keys in both).  A finding of a
config line is logged with file=FILE:LINE:COL, as `ferry check` prints it.
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


def check_where(f):
    if f.get("file") is None:
        return None
    if f.get("line"):
        return "%s:%d:%d" % (f["file"], f["line"], f["col"])
    return f["file"]


def same(runlog, checkjson, want):
    run = [f for f in run_findings(runlog) if f.get("level") == "error"]
    with open(checkjson, encoding="utf-8") as fh:
        check = [f for f in json.load(fh)["findings"] if f["severity"] == "error"]
    key_run = sorted((f["id"], f.get("file"), f.get("msg", ""), f.get("fix", "")) for f in run)
    key_check = sorted((f["id"], check_where(f), f["message"], f["fix"]) for f in check)
    if key_run != key_check:
        print("run logged:  %r\ncheck found: %r" % (key_run, key_check), file=sys.stderr)
        return 1
    ids = {k[0] for k in key_run}
    missing = [i for i in want if i not in ids]
    if missing or not ids:
        print("expected ids %r, got %r" % (want, sorted(ids)), file=sys.stderr)
        return 1
    print(" ".join(sorted(ids)))
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
