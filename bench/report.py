#!/usr/bin/env python3
"""bench/report.py: turn bench/run.sh's raw samples into tables and results.json.

Usage: report.py OUT_DIR   (reads OUT_DIR/meta.json and OUT_DIR/results.jsonl,
                            writes OUT_DIR/results.json, prints Markdown tables)

Every rate is a median over the repetitions; "spread" is (max - min) / median.  The best L4
peer of a workload is the best median among stunnel, HAProxy (mode tcp) and nginx stream.
"""
import json
import os
import statistics
import sys

L4 = ["stunnel", "haproxy", "nginx-stream"]
FERRY = ["ferry-tcp", "ferry-http"]
ORDER = ["direct", "ferry-tcp", "ferry-http", "stunnel", "haproxy", "nginx-stream", "nginx-http"]

# workload: (title, unit, goal of issue 7 as a ratio to the best L4 peer)
WORKLOADS = {
    "small": ("small GET 86 B, keep-alive", "req/s", 1.3),
    "k16": ("16 KiB GET, keep-alive", "req/s", 1.2),
    "m1": ("1 MiB GET, keep-alive", "MB/s", 1.1),
    "conn_full": ("new connection per request, full mTLS handshake", "conn/s", 1.2),
    "conn_resumed": ("new connection per request, resumption on", "conn/s", 1.2),
}
POOLED_GOAL = 1.2  # ferry http / nginx pooled HTTP proxy, client Connection: close
IDLE_GOAL_KIB = 40.0


def value_of(sample, workload):
    """Return (value, cpu_us_per_request, errors) of one wrk sample, or None."""
    w = sample.get("wrk")
    if not w or not w.get("duration_us") or not w.get("requests"):
        return None
    secs = w["duration_us"] / 1e6
    if workload == "m1":
        value = w["bytes"] / secs / 1e6
    else:
        value = w["requests"] / secs
    cpu = sample["cpu_ticks"] / CLK_TCK * 1e6 / w["requests"]
    errors = sum(v for k, v in w.items() if k.startswith("err_"))
    return value, cpu, errors


def fmt(v, unit=""):
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


def main():
    out_dir = sys.argv[1]
    meta = json.load(open(os.path.join(out_dir, "meta.json")))
    global CLK_TCK
    CLK_TCK = meta.get("clk_tck", 100)
    samples = [json.loads(l) for l in open(os.path.join(out_dir, "results.jsonl")) if l.strip()]

    result = {"meta": meta, "workloads": {}, "summary": []}
    lines = []
    v = meta["versions"]
    lines.append("# ferry benchmark (%s mode)" % meta["mode"])
    lines.append("")
    lines.append("%d CPUs (%s), kernel %s, %s; %d s per measurement, %d rep(s); %s." % (
        meta["nproc"], meta["cpu"], meta["kernel"], meta["date"], meta["duration_s"],
        meta["reps"], ", ".join("%s %s" % (k, meta["conns"][k]) for k in meta["conns"]) +
        " connections"))
    lines.append("")
    lines.append("Versions: %s; %s; %s; %s; %s; %s; %s." % (
        v["ferry"], "git " + v["ferry_git"], v["openssl"], v["stunnel"], v["haproxy"],
        v["nginx"], v["wrk"]))
    lines.append("")

    medians = {}
    for wl, (title, unit, goal) in WORKLOADS.items():
        per_peer = {}
        for s in samples:
            if s["workload"] != wl:
                continue
            r = value_of(s, wl)
            per_peer.setdefault(s["peer"], []).append(r)
        if not per_peer:
            continue
        rows = {}
        for peer, vals in per_peer.items():
            good = [x for x in vals if x is not None]
            if not good:
                rows[peer] = {"median": None, "samples": [], "failed_samples": len(vals)}
                continue
            values = [x[0] for x in good]
            med = statistics.median(values)
            rows[peer] = {
                "median": med,
                "min": min(values),
                "max": max(values),
                "spread": (max(values) - min(values)) / med if med and len(values) > 1 else None,
                "samples": values,
                "failed_samples": len(vals) - len(good),
                "cpu_us_per_req": statistics.median(x[1] for x in good),
                "errors": sum(x[2] for x in good),
            }
        medians[wl] = {p: r["median"] for p, r in rows.items()}
        l4 = [(rows[p]["median"], p) for p in L4 if p in rows and rows[p]["median"] is not None]
        best = max(l4) if l4 else (None, None)
        direct = rows.get("direct", {}).get("median")
        for p, r in rows.items():
            r["vs_direct"] = ratio(r["median"], direct) if p != "direct" else None
            r["vs_best_l4"] = ratio(r["median"], best[0])
        result["workloads"][wl] = {"title": title, "unit": unit, "goal_vs_best_l4": goal,
                                   "best_l4": best[1], "peers": rows}

        lines.append("## %s (%s)" % (title, unit))
        lines.append("")
        lines.append("| peer | %s | spread | vs direct | vs best L4 | proxy CPU µs/req | errors |"
                     % unit)
        lines.append("|---|---:|---:|---:|---:|---:|---:|")
        for p in [p for p in ORDER if p in rows] + [p for p in rows if p not in ORDER]:
            r = rows[p]
            if r["median"] is None:
                lines.append("| %s | failed | | | | | |" % p)
                continue
            if r["failed_samples"]:
                p_note = " (%d run(s) gave no result)" % r["failed_samples"]
            else:
                p_note = ""
            lines.append("| %s%s%s | %s | %s | %s | %s | %s | %d |" % (
                p, " (best L4)" if p == best[1] else "", p_note, fmt(r["median"], unit),
                "%.0f%%" % (100 * r["spread"]) if r["spread"] is not None else "n/a",
                fmt_ratio(r["vs_direct"]), fmt_ratio(r["vs_best_l4"]),
                "n/a" if p == "direct" else "%.0f" % r["cpu_us_per_req"], r["errors"]))
        lines.append("")

    idle = {}
    for s in samples:
        if s["workload"] == "idle":
            ok = s["ok"]
            idle[s["peer"]] = {
                "n": s["n"], "ok": ok, "failed": s["failed"], "rss0_kib": s["rss0_kib"],
                "rss1_kib": s["rss1_kib"],
                "kib_per_pair": (s["rss1_kib"] - s["rss0_kib"]) / ok if ok else None,
            }
    if idle:
        l4 = [(idle[p]["kib_per_pair"], p) for p in L4
              if p in idle and idle[p]["kib_per_pair"] is not None]
        best = min(l4) if l4 else (None, None)
        for p, r in idle.items():
            r["vs_best_l4"] = ratio(r["kib_per_pair"], best[0])
        result["workloads"]["idle"] = {"title": "memory per idle connection pair", "unit": "KiB",
                                       "goal_kib": IDLE_GOAL_KIB, "best_l4": best[1],
                                       "peers": idle}
        lines.append("## memory per idle connection pair (KiB, RSS of both proxies, lower is better)")
        lines.append("")
        lines.append("| peer | KiB/pair | held | RSS before → after (KiB) | vs best L4 |")
        lines.append("|---|---:|---:|---:|---:|")
        for p in [p for p in ORDER if p in idle]:
            r = idle[p]
            lines.append("| %s%s | %s | %d/%d | %d → %d | %s |" % (
                p, " (best L4)" if p == best[1] else "", fmt(r["kib_per_pair"]), r["ok"],
                r["n"], r["rss0_kib"], r["rss1_kib"], fmt_ratio(r["vs_best_l4"])))
        lines.append("")

    # Summary against the goals of issue 7.
    lines.append("## ferry against the goals of issue 7")
    lines.append("")
    lines.append("| workload | ferry tcp | ferry http | compared with | ferry tcp ratio | "
                 "ferry http ratio | goal |")
    lines.append("|---|---:|---:|---|---:|---:|---:|")
    summary = result["summary"]
    for wl, (title, unit, goal) in WORKLOADS.items():
        w = result["workloads"].get(wl)
        if not w:
            continue
        rows = w["peers"]
        best = w["best_l4"]
        t = rows.get("ferry-tcp", {}).get("median")
        h = rows.get("ferry-http", {}).get("median")
        b = rows.get(best, {}).get("median") if best else None
        entry = {"workload": wl, "against": best, "ferry_tcp": t, "ferry_http": h,
                 "against_value": b, "ratio_tcp": ratio(t, b), "ratio_http": ratio(h, b),
                 "goal": goal}
        summary.append(entry)
        lines.append("| %s | %s | %s | %s %s | %s | %s | ≥ %.1f× |" % (
            title, fmt(t, unit), fmt(h, unit), best or "no L4 peer", fmt(b, unit),
            fmt_ratio(entry["ratio_tcp"]), fmt_ratio(entry["ratio_http"]), goal))
    w = result["workloads"].get("conn_resumed")
    if w and "nginx-http" in w["peers"]:
        h = w["peers"].get("ferry-http", {}).get("median")
        n = w["peers"]["nginx-http"]["median"]
        entry = {"workload": "pooled", "against": "nginx-http", "ferry_http": h,
                 "against_value": n, "ratio_http": ratio(h, n), "goal": POOLED_GOAL}
        summary.append(entry)
        lines.append("| protocol http, client Connection: close (pooled) | | %s | nginx-http %s | "
                     "| %s | ≥ %.1f× |" % (fmt(h), fmt(n), fmt_ratio(entry["ratio_http"]),
                                           POOLED_GOAL))
    if idle:
        t = idle.get("ferry-tcp", {}).get("kib_per_pair")
        h = idle.get("ferry-http", {}).get("kib_per_pair")
        best = result["workloads"]["idle"]["best_l4"]
        b = idle.get(best, {}).get("kib_per_pair") if best else None
        summary.append({"workload": "idle", "against": best, "ferry_tcp": t, "ferry_http": h,
                        "against_value": b, "ratio_tcp": ratio(t, b), "ratio_http": ratio(h, b),
                        "goal_kib": IDLE_GOAL_KIB})
        lines.append("| memory per idle pair, KiB | %s | %s | %s %s | %s | %s | ≤ %.0f KiB |" % (
            fmt(t), fmt(h), best or "no L4 peer", fmt(b), fmt_ratio(ratio(t, b)),
            fmt_ratio(ratio(h, b)), IDLE_GOAL_KIB))
    lines.append("")

    json.dump(result, open(os.path.join(out_dir, "results.json"), "w"), indent=2)
    print("\n".join(lines))


CLK_TCK = 100

if __name__ == "__main__":
    main()
