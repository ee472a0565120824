#!/usr/bin/env python3
"""Tables of criterion medians and ratios, for benches/RESULTS.md.

    python3 benches/report.py [CRITERION_DIR]   # default: target/criterion (or benches/peers/...)

Reads every <group>/<function>/<size>/new/estimates.json (median point estimate, ns per
iteration) and benchmark.json (throughput), and prints markdown tables: per group, one row per
size, one column per library, with throughput and the ratio of wsframe to the best peer.
"""
import json, os, sys
from collections import defaultdict

root = sys.argv[1] if len(sys.argv) > 1 else "target/criterion"
data = defaultdict(dict)  # group -> (fn, size) -> (median_ns, throughput)
for dirpath, dirs, files in os.walk(root):
    if "estimates.json" in files and os.path.basename(dirpath) == "new":
        bench = json.load(open(os.path.join(dirpath, "benchmark.json")))
        est = json.load(open(os.path.join(dirpath, "estimates.json")))
        group = bench["group_id"]
        fn = bench["function_id"]
        size = bench.get("value_str")
        tp = bench.get("throughput") or {}
        data[group][(fn, size)] = (est["median"]["point_estimate"], tp)

PEERS = ["tungstenite", "tokio-tungstenite", "tokio-websockets", "fastwebsockets"]

def rate(ns, tp):
    if "Bytes" in tp:
        return "%.2f GiB/s" % (tp["Bytes"] / ns * 1e9 / 2**30)
    if "Elements" in tp:
        return "%.2f M/s" % (tp["Elements"] / ns * 1e9 / 1e6)
    return ""

def fmt_ns(ns):
    if ns >= 1e6: return "%.3f ms" % (ns / 1e6)
    if ns >= 1e3: return "%.2f µs" % (ns / 1e3)
    return "%.1f ns" % ns

for group in sorted(data):
    entries = data[group]
    fns = sorted({f for f, _ in entries}, key=lambda f: (f != "wsframe", f))
    sizes = sorted({s for _, s in entries}, key=lambda s: int(s) if s and s.isdigit() else 0)
    has_peers = any(f in PEERS for f in fns)
    print("\n### %s\n" % group)
    head = ["size"] + fns + (["wsframe vs best peer"] if has_peers and "wsframe" in fns else [])
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for s in sizes:
        row = [s or ""]
        for f in fns:
            e = entries.get((f, s))
            row.append("%s (%s)" % (fmt_ns(e[0]), rate(*e)) if e else "")
        if has_peers and "wsframe" in fns and (("wsframe", s) in entries):
            peers = [entries[(p, s)][0] for p in PEERS if (p, s) in entries]
            if peers:
                row.append("%.2fx" % (min(peers) / entries[("wsframe", s)][0]))
        print("| " + " | ".join(row) + " |")
