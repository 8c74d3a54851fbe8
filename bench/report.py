#!/usr/bin/env python3
"""bench/report.py: turn bench/run.sh's raw samples into Markdown tables and results.json.

Usage: report.py OUT_DIR [ELAPSED_S]
       reads OUT_DIR/meta.json and OUT_DIR/results.jsonl, writes OUT_DIR/results.json and
       prints the Markdown report (the goals table first: the one for the README).

Every rate is the median over the repetitions, with its min-max.  The best L4 peer of a
workload is the best median among stunnel, HAProxy (mode tcp) and nginx stream; ferry-tcp is
the ferry compared with it (ferry-http is shown beside it).  The pooled row compares
ferry-http with nginx's pooled HTTP proxy.  Proxy CPU per request is the user+system time of
both sides of the pair (/proc/PID/stat) over the measurement, divided by the requests done.
With run.sh --ferry-base, ferry-tcp-base and ferry-http-base run an earlier ferry build, and a
table compares each ferry pair with its base pair.
"""
import json
import os
import statistics
import sys

L4 = ["stunnel", "haproxy", "nginx-stream"]
ORDER = ["direct", "ferry-tcp", "ferry-tcp-base", "ferry-http", "ferry-http-base", "stunnel",
         "haproxy", "nginx-stream", "nginx-http"]
# ferry pair -> the same pair running the --ferry-base build
BASE_OF = {"ferry-http": "ferry-http-base", "ferry-tcp": "ferry-tcp-base"}

# workload: (title, unit, goal as a ratio to the best L4 peer, or None): the goals of issue 14
# (data path v2).  The chunked workloads k16c, m1c have no goal: their rows show the ratio for
# information.
WORKLOADS = {
    "small": ("small GET 86 B, keep-alive", "req/s", 1.10),
    "k16": ("16 KiB GET, keep-alive", "req/s", 1.10),
    "m1": ("1 MiB GET, keep-alive", "MB/s", 1.05),
    "k16c": ("16 KiB GET, chunked, keep-alive", "req/s", None),
    "m1c": ("1 MiB GET, chunked, keep-alive", "MB/s", None),
    "conn_full": ("new connection per request, full mTLS handshake (resumption off)", "conn/s",
                  1.00),
    "conn_resumed": ("new connection per request, resumed", "conn/s", 1.10),
    "pooled": ("protocol http, client Connection: close, pooled peer connections", "conn/s", None),
}
POOLED_GOAL = 1.2  # ferry-http / nginx-http on the pooled workload
IDLE_GOAL_KIB = 32.0  # per idle tcp pair
HTTP_IDLE_GOAL_KIB = 16.0  # per idle http pair (the local client's side dominates)
REPL_GOAL = 0.98  # replication through the http pair / direct
CLK_TCK = 100
SMOKE = False


def value_of(sample, workload):
    """Return (value, cpu µs/request A+B, A, B, errors) of one wrk sample, or None."""
    w = sample.get("wrk")
    if not w or not w.get("duration_us") or not w.get("requests"):
        return None
    secs = w["duration_us"] / 1e6
    value = w["bytes"] / secs / 1e6 if WORKLOADS[workload][1] == "MB/s" else w["requests"] / secs
    per = 1e6 / CLK_TCK / w["requests"]
    cpu = sample["cpu_ticks"] * per
    cpu_a = sample.get("cpu_ticks_a", 0) * per
    cpu_b = sample.get("cpu_ticks_b", 0) * per
    errors = sum(v for k, v in w.items() if k.startswith("err_"))
    return value, cpu, cpu_a, cpu_b, errors


def fmt(v, unit=""):
    """A number for a table: one decimal below 100 (and for MB/s), else grouped."""
    if v is None:
        return "n/a"
    if unit == "MB/s" or abs(v) < 100:
        return "%.1f" % v
    return "{:,.0f}".format(v)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(r):
    return "n/a" if r is None else "%.2f×" % r


def met(r, goal, lower_is_better=False):
    """'yes' / 'no' / 'n/a' for a value against its goal ('–' in a smoke run)."""
    if SMOKE:
        return "–"
    if r is None or goal is None:
        return "n/a"
    ok = r <= goal if lower_is_better else r >= goal
    return "**yes**" if ok else "no"


def peers_in_order(rows):
    return [p for p in ORDER if p in rows] + [p for p in rows if p not in ORDER]


def load_rates(samples):
    """Per workload and peer: median, min, max, samples, CPU µs/request, errors."""
    out = {}
    for wl in WORKLOADS:
        per_peer = {}
        p99 = {}  # peer -> wrk's p99 latency of each sample, ms
        for s in samples:
            if s["workload"] == wl:
                per_peer.setdefault(s["peer"], []).append(value_of(s, wl))
                w = s.get("wrk") or {}
                if w.get("lat_p99_us"):
                    p99.setdefault(s["peer"], []).append(w["lat_p99_us"] / 1000.0)
        if not per_peer:
            continue
        rows = {}
        for peer, vals in per_peer.items():
            good = [x for x in vals if x is not None]
            if not good:
                rows[peer] = {"median": None, "samples": [], "failed_samples": len(vals)}
                continue
            values = [x[0] for x in good]
            rows[peer] = {
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
                "samples": values,
                "failed_samples": len(vals) - len(good),
                "cpu_us_per_req": statistics.median(x[1] for x in good),
                "cpu_us_per_req_min": min(x[1] for x in good),
                "cpu_us_per_req_max": max(x[1] for x in good),
                "cpu_us_per_req_a": statistics.median(x[2] for x in good),
                "cpu_us_per_req_b": statistics.median(x[3] for x in good),
                "errors": sum(x[4] for x in good),
            }
            if p99.get(peer):
                rows[peer]["p99_ms"] = statistics.median(p99[peer])
                rows[peer]["p99_ms_min"] = min(p99[peer])
                rows[peer]["p99_ms_max"] = max(p99[peer])
        l4 = [(rows[p]["median"], p) for p in L4 if p in rows and rows[p]["median"] is not None]
        best = max(l4) if l4 else (None, None)
        direct = rows.get("direct", {}).get("median")
        for p, r in rows.items():
            r["vs_direct"] = ratio(r.get("median"), direct) if p != "direct" else None
            r["vs_best_l4"] = ratio(r.get("median"), best[0])
        title, unit, goal = WORKLOADS[wl]
        out[wl] = {"title": title, "unit": unit, "goal_vs_best_l4": goal, "best_l4": best[1],
                   "peers": rows}
    return out


def load_idle(samples):
    """Per idle count N and peer: KiB per pair (RSS of both sides after - before, / held)."""
    idle = {}
    for s in samples:
        if s["workload"] != "idle":
            continue
        ok = s["ok"]
        row = {"n": s["n"], "ok": ok, "failed": s["failed"], "rss0_kib": s["rss0_kib"],
               "rss1_kib": s["rss1_kib"],
               "kib_per_pair": (s["rss1_kib"] - s["rss0_kib"]) / ok if ok else None}
        for side in "ab":
            r0, r1 = s.get("rss0_%s_kib" % side), s.get("rss1_%s_kib" % side)
            if r0 is not None and ok:
                row["kib_per_conn_%s" % side] = (r1 - r0) / ok
                row["rss1_%s_kib" % side] = r1
        idle.setdefault(s["n"], {})[s["peer"]] = row
    for n, rows in idle.items():
        l4 = [(rows[p]["kib_per_pair"], p) for p in L4
              if p in rows and rows[p]["kib_per_pair"] is not None]
        best = min(l4) if l4 else (None, None)
        for r in rows.values():
            r["vs_best_l4"] = ratio(r["kib_per_pair"], best[0])
            r["best_l4"] = best[1]
    return idle


def load_repl(samples, meta):
    """Per peer: docs/s median, min, max, seconds, proxy CPU µs per document."""
    per_peer = {}
    for s in samples:
        if s["workload"] == "repl":
            per_peer.setdefault(s["peer"], []).append(s)
    rows = {}
    for peer, ss in per_peer.items():
        good = [s for s in ss if s["result"].get("ok")]
        if not good:
            rows[peer] = {"median": None, "failed_samples": len(ss),
                          "error": ss[-1]["result"].get("error")}
            continue
        rates = [s["result"]["docs_per_s"] for s in good]
        rows[peer] = {
            "docs": good[0]["docs"],
            "median": statistics.median(rates), "min": min(rates), "max": max(rates),
            "samples": rates, "failed_samples": len(ss) - len(good),
            "seconds": statistics.median(s["result"]["ms"] / 1000 for s in good),
            "cpu_us_per_doc": statistics.median(s["cpu_ticks"] * 1e6 / CLK_TCK / s["docs"]
                                                for s in good),
        }
    direct = rows.get("direct", {}).get("median")
    for p, r in rows.items():
        r["vs_direct"] = ratio(r.get("median"), direct) if p != "direct" else None
    return rows


def header(meta, elapsed):
    v = meta["versions"]
    lines = ["# ferry vs stunnel, HAProxy, nginx: `%s`" % meta.get("command", "bench/run.sh"), ""]
    lines.append("Machine: %d CPUs (%s), %s RAM, kernel %s; %s%s." % (
        meta["nproc"], meta["cpu"], meta.get("memory", "?"), meta["kernel"], meta["date"],
        "; the run took %d s" % elapsed if elapsed is not None else ""))
    lines.append("")
    lines.append("Settings: %s mode, %d s per measurement, %d rep(s) interleaved across peers; "
                 "wrk connections: %s; idle connections: %s; replication: %s docs; "
                 "ferry `workers`: %s, ferry-http `pool`: %s." % (
                     meta["mode"], meta["duration_s"], meta["reps"],
                     ", ".join("%s %s" % (k, meta["conns"][k]) for k in meta["conns"]),
                     ", ".join("{:,}".format(n) for n in meta.get("idle_n", [])) or "none",
                     "{:,}".format(meta.get("repl_docs", 0)),
                     meta.get("ferry_config", {}).get("workers", "?"),
                     meta.get("ferry_config", {}).get("pool", "?")))
    lines.append("")
    if meta["mode"] == "smoke":
        lines.append("**Smoke run: a check that every pair and workload works, not a measurement** "
                     "(1 s per workload, and A reaches B through a Python relay that reads the TLS "
                     "hellos).")
        lines.append("")
    lines.append("Versions: %s (git %s); %s; %s; %s; %s; %s; node %s, pouchdb-server %s." % (
        v["ferry"], v["ferry_git"], v["openssl"], v["stunnel"], v["haproxy"], v["nginx"],
        v["wrk"], v.get("node", "?"), v.get("pouchdb_server", "?")))
    lines.append("")
    base = meta.get("ferry_base")
    if base:
        lines.append("Base build (peers %s): `%s`, %s (git %s); `workers`: %s, ferry-http-base "
                     "`pool`: %s." % (", ".join(BASE_OF.values()), base["path"],
                                      base["version"], base["git"], base["workers"],
                                      base["pool"]))
        lines.append("")
    return lines


def goals(result, idle, repl, meta):
    """The goals table of issue 14: ferry, the peer it is compared with, ratio, goal, met."""
    lines = ["## ferry against the goals of issue 14", "",
             "| workload | ferry | compared with | ratio | goal | met | ferry-http (ratio) | "
             "CPU µs/req, ferry : peer |",
             "|---|---:|---|---:|---:|:-:|---:|---:|"]
    summary = []
    for wl, (title, unit, goal) in WORKLOADS.items():
        w = result["workloads"].get(wl)
        if not w:
            continue
        rows = w["peers"]
        if wl == "pooled":
            f, fname, b, bname, goal = (rows.get("ferry-http", {}), "ferry-http",
                                        rows.get("nginx-http", {}), "nginx-http", POOLED_GOAL)
            h = {}
        else:
            f, fname = rows.get("ferry-tcp", {}), "ferry-tcp"
            bname = w["best_l4"]
            b = rows.get(bname, {}) if bname else {}
            h = rows.get("ferry-http", {})
        r = ratio(f.get("median"), b.get("median"))
        rh = ratio(h.get("median"), b.get("median")) if h else None
        entry = {"workload": wl, "title": title, "unit": unit, "ferry": fname,
                 "ferry_value": f.get("median"), "against": bname,
                 "against_value": b.get("median"), "ratio": r, "goal": goal,
                 "met": None if r is None or goal is None else r >= goal,
                 "ferry_http_value": h.get("median"), "ferry_http_ratio": rh,
                 "ferry_cpu_us_per_req": f.get("cpu_us_per_req"),
                 "against_cpu_us_per_req": b.get("cpu_us_per_req")}
        summary.append(entry)
        cpu = "%s : %s" % (fmt(f.get("cpu_us_per_req")), fmt(b.get("cpu_us_per_req")))
        lines.append("| %s (%s) | %s %s | %s %s | %s | %s | %s | %s | %s |" % (
            title, unit, fname, fmt(f.get("median"), unit), bname or "no peer",
            fmt(b.get("median"), unit), fmt_ratio(r),
            "(none)" if goal is None else "≥ %.2f×" % goal, "" if goal is None else met(r, goal),
            "%s (%s)" % (fmt(h.get("median"), unit), fmt_ratio(rh)) if h else "",
            cpu))
    small = result["workloads"].get("small")
    if small:
        rows = small["peers"]
        l4 = [(rows[p]["p99_ms"], p) for p in L4 if rows.get(p, {}).get("p99_ms") is not None]
        for fname, (bp99, bname) in (("ferry-tcp", min(l4) if l4 else (None, None)),
                                     ("ferry-http", (rows.get("nginx-http", {}).get("p99_ms"),
                                                     "nginx-http"))):
            f = rows.get(fname, {}).get("p99_ms")
            if f is None or bp99 is None:
                continue
            ok = f <= bp99
            summary.append({"workload": "p99", "ferry": fname, "ferry_value": f,
                            "against": bname, "against_value": bp99, "met": ok})
            lines.append("| p99 latency, small GET (ms; lower is better) | %s %.2f | %s %.2f | "
                         "%s | ≤ peer | %s | | |" % (fname, f, bname, bp99, fmt_ratio(f / bp99),
                                                    "–" if SMOKE else "**yes**" if ok else "no"))
    if idle:
        n = max(idle)
        rows = idle[n]
        f = rows.get("ferry-tcp", {})
        h = rows.get("ferry-http", {})
        bname = next((r["best_l4"] for r in rows.values()), None)
        b = rows.get(bname, {}) if bname else {}
        k = f.get("kib_per_pair")
        entry = {"workload": "idle", "title": "memory per idle connection pair", "unit": "KiB",
                 "n": n, "ferry": "ferry-tcp", "ferry_value": k, "against": bname,
                 "against_value": b.get("kib_per_pair"),
                 "ratio": ratio(k, b.get("kib_per_pair")), "goal_kib": IDLE_GOAL_KIB,
                 "met": None if k is None else k <= IDLE_GOAL_KIB,
                 "ferry_http_value": h.get("kib_per_pair")}
        summary.append(entry)
        lines.append("| memory per idle connection pair, %s held (KiB) | ferry-tcp %s | %s %s | "
                     "%s | ≤ %.0f KiB | %s | %s | |" % (
                         "{:,}".format(n), fmt(k), bname or "no peer", fmt(b.get("kib_per_pair")),
                         fmt_ratio(entry["ratio"]), IDLE_GOAL_KIB, met(k, IDLE_GOAL_KIB, True),
                         fmt(h.get("kib_per_pair")) if h else ""))
        if h.get("kib_per_pair") is not None:
            hk = h["kib_per_pair"]
            nh = rows.get("nginx-http", {})
            summary.append({"workload": "idle_http", "n": n, "ferry": "ferry-http",
                            "ferry_value": hk, "against": "nginx-http",
                            "against_value": nh.get("kib_per_pair"), "goal_kib": HTTP_IDLE_GOAL_KIB,
                            "met": hk <= HTTP_IDLE_GOAL_KIB})
            lines.append("| memory per idle http pair, %s held (KiB) | ferry-http %s | nginx-http %s "
                         "| %s | ≤ %.0f KiB | %s | | |" % (
                             "{:,}".format(n), fmt(hk), fmt(nh.get("kib_per_pair")),
                             fmt_ratio(ratio(hk, nh.get("kib_per_pair"))), HTTP_IDLE_GOAL_KIB,
                             met(hk, HTTP_IDLE_GOAL_KIB, True)))
    if repl:
        d = repl.get("direct", {})
        for p in [p for p in ORDER if p in repl and p != "direct"]:
            f = repl[p]
            goal = REPL_GOAL if p == "ferry-http" else None
            r = f.get("vs_direct")
            entry = {"workload": "repl", "ferry": p, "ferry_value": f.get("median"),
                     "against": "direct", "against_value": d.get("median"),
                     "ratio": r, "goal": goal,
                     "met": None if goal is None or r is None else r >= goal}
            summary.append(entry)
            lines.append("| replication of %s docs, pouchdb-server (docs/s) | %s %s | direct %s | "
                         "%s | %s | %s | | |" % (
                             "{:,}".format(meta.get("repl_docs", 0)), p, fmt(f.get("median")),
                             fmt(d.get("median")), fmt_ratio(r),
                             "(none)" if goal is None else "≥ %.2f×" % goal,
                             "" if goal is None else met(r, goal)))
    lines.append("")
    lines.append("ferry = ferry-tcp against the best L4 peer (stunnel, HAProxy `mode tcp`, nginx "
                 "`stream`), ferry-http against nginx's pooled HTTP proxy; \"met\" = the ratio "
                 "reaches the goal in this run; the chunked rows have no goal. CPU = user+system "
                 "time of both proxies of the pair per request (/proc/PID/stat).")
    lines.append("")
    return lines, summary


def fmt_range(r, key, unit=""):
    """'median (min–max)' of one row's value or CPU."""
    if key == "median":
        return "%s (%s–%s)" % (fmt(r["median"], unit), fmt(r["min"], unit), fmt(r["max"], unit))
    return "%s (%s–%s)" % (fmt(r[key]), fmt(r[key + "_min"]), fmt(r[key + "_max"]))


def overlap(a, b, key):
    """Whether the min–max ranges of two rows meet ('yes'), or are apart ('no'); 'n/a' when
    either has a single sample (no range to judge noise by)."""
    if len(a["samples"]) < 2 or len(b["samples"]) < 2:
        return "n/a"
    lo, hi = (("min", "max") if key == "median" else (key + "_min", key + "_max"))
    return "yes" if a[lo] <= b[hi] and b[lo] <= a[hi] else "**no**"


def base_table(result):
    """ferry against the --ferry-base build: per workload and mode, both medians with their
    min–max, the ratio, and the same for CPU µs per request.  Returns (lines, entries)."""
    lines, entries = [], []
    for wl, w in result["workloads"].items():
        unit = w["unit"]
        for cur, base in BASE_OF.items():
            f, b = w["peers"].get(cur), w["peers"].get(base)
            if not f or not b:
                continue
            if f["median"] is None or b["median"] is None:
                lines.append("| %s (%s) | %s | %s | %s | | | | | | |" % (
                    wl, unit, cur, "failed" if f["median"] is None else fmt_range(f, "median", unit),
                    "failed" if b["median"] is None else fmt_range(b, "median", unit)))
                continue
            entry = {"workload": wl, "unit": unit, "ferry": cur, "base": base,
                     "ferry_value": f["median"], "ferry_min": f["min"], "ferry_max": f["max"],
                     "base_value": b["median"], "base_min": b["min"], "base_max": b["max"],
                     "ratio": ratio(f["median"], b["median"]),
                     "ferry_cpu_us_per_req": f["cpu_us_per_req"],
                     "base_cpu_us_per_req": b["cpu_us_per_req"],
                     "cpu_ratio": ratio(f["cpu_us_per_req"], b["cpu_us_per_req"])}
            entries.append(entry)
            lines.append("| %s (%s) | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                wl, unit, cur, fmt_range(f, "median", unit), fmt_range(b, "median", unit),
                fmt_ratio(entry["ratio"]), overlap(f, b, "median"),
                fmt_range(f, "cpu_us_per_req"), fmt_range(b, "cpu_us_per_req"),
                fmt_ratio(entry["cpu_ratio"]), overlap(f, b, "cpu_us_per_req")))
    if not lines:
        return [], []
    head = ["## ferry against the base build", "",
            "| workload | pair | ferry median (min–max) | base median (min–max) | ratio | "
            "ranges meet | CPU µs/req ferry (min–max) | CPU µs/req base (min–max) | CPU ratio | "
            "ranges meet |",
            "|---|---|---:|---:|---:|:-:|---:|---:|---:|:-:|"]
    tail = ["", "base = the same pair (same configuration) running the `--ferry-base` binary, "
            "interleaved with ferry in every rep. ratio = ferry's median / the base's (above 1: "
            "ferry is faster); CPU ratio = ferry's CPU µs per request (A + B) / the base's "
            "(below 1: ferry is cheaper). \"ranges meet\" = the two min–max ranges over the "
            "reps overlap: the difference is within this run's noise (n/a with a single rep).", ""]
    return head + lines + tail, entries


def detail_tables(result):
    lines = []
    for wl, w in result["workloads"].items():
        if wl not in WORKLOADS:
            continue
        unit = w["unit"]
        rows = w["peers"]
        best = w["best_l4"]
        lines.append("### %s (%s)" % (w["title"], unit))
        lines.append("")
        lines.append("| peer | %s median | min–max | vs direct | vs best L4 | "
                     "proxy CPU µs/req (A + B) | errors |" % unit)
        lines.append("|---|---:|---:|---:|---:|---:|---:|")
        for p in peers_in_order(rows):
            r = rows[p]
            if r["median"] is None:
                lines.append("| %s | failed | | | | | |" % p)
                continue
            p_note = " (%d run(s) failed)" % r["failed_samples"] if r["failed_samples"] else ""
            cpu = ("n/a" if p == "direct" else "%s (%s + %s)" % (
                fmt(r["cpu_us_per_req"]), fmt(r["cpu_us_per_req_a"]), fmt(r["cpu_us_per_req_b"])))
            lines.append("| %s%s%s | %s | %s–%s | %s | %s | %s | %d |" % (
                p, " (best L4)" if p == best else "", p_note, fmt(r["median"], unit),
                fmt(r["min"], unit), fmt(r["max"], unit), fmt_ratio(r["vs_direct"]),
                fmt_ratio(r["vs_best_l4"]), cpu, r["errors"]))
        lines.append("")
    return lines


def idle_tables(idle):
    lines = []
    if not idle:
        return lines
    ns = sorted(idle)
    lines.append("### memory per idle connection pair (KiB of RSS, both proxies; lower is better)")
    lines.append("")
    lines.append("| peer | " + " | ".join("KiB/pair at {:,}".format(n) for n in ns) + " | " +
                 " | ".join("RSS A + B at {:,} (MiB)".format(n) for n in ns) + " | held |")
    lines.append("|---|" + "---:|" * (2 * len(ns)) + "---:|")
    peers = []
    for n in ns:
        peers += [p for p in peers_in_order(idle[n]) if p not in peers]
    for p in peers:
        cells, rss, held = [], [], []
        for n in ns:
            r = idle[n].get(p)
            if not r:
                cells.append("n/a")
                rss.append("n/a")
                continue
            best = " (best L4)" if r.get("best_l4") == p else ""
            cells.append("%s%s" % (fmt(r["kib_per_pair"]), best))
            rss.append("%.1f" % (r["rss1_kib"] / 1024.0))
            held.append("%d/%d" % (r["ok"], r["n"]))
        lines.append("| %s | %s | %s | %s |" % (p, " | ".join(cells), " | ".join(rss),
                                                ", ".join(held)))
    lines.append("")
    return lines


def repl_table(repl, meta):
    lines = []
    if not repl:
        return lines
    lines.append("### replication of %s documents (pouchdb-server, in memory; docs/s)" %
                 "{:,}".format(meta.get("repl_docs", 0)))
    lines.append("")
    lines.append("| path | docs/s median | min–max | seconds | vs direct | proxy CPU µs/doc |")
    lines.append("|---|---:|---:|---:|---:|---:|")
    for p in peers_in_order(repl):
        r = repl[p]
        if r["median"] is None:
            lines.append("| %s | failed: %s | | | | |" % (p, r.get("error")))
            continue
        lines.append("| %s | %s | %s–%s | %.2f | %s | %s |" % (
            p, fmt(r["median"]), fmt(r["min"]), fmt(r["max"]), r["seconds"],
            fmt_ratio(r["vs_direct"]), "n/a" if p == "direct" else fmt(r["cpu_us_per_doc"])))
    lines.append("")
    return lines


def main():
    global CLK_TCK, SMOKE
    out_dir = sys.argv[1]
    elapsed = int(sys.argv[2]) if len(sys.argv) > 2 else None
    meta = json.load(open(os.path.join(out_dir, "meta.json")))
    CLK_TCK = meta.get("clk_tck", 100)
    SMOKE = meta["mode"] == "smoke"
    samples = [json.loads(l) for l in open(os.path.join(out_dir, "results.jsonl")) if l.strip()]
    meta["elapsed_s"] = elapsed

    result = {"meta": meta, "workloads": load_rates(samples)}
    idle = load_idle(samples)
    repl = load_repl(samples, meta)
    result["idle"] = {str(n): rows for n, rows in sorted(idle.items())}
    result["repl"] = repl

    lines = header(meta, elapsed)
    g, summary = goals(result, idle, repl, meta)
    result["summary"] = summary
    lines += g
    b, result["vs_base"] = base_table(result)
    lines += b
    lines.append("## Details")
    lines.append("")
    lines += detail_tables(result)
    lines += idle_tables(idle)
    lines += repl_table(repl, meta)
    result["samples"] = samples

    json.dump(result, open(os.path.join(out_dir, "results.json"), "w"), indent=2)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
