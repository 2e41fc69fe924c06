#!/usr/bin/env python3
"""The Markdown table of bench/scale from its JSON lines on stdin.

  table.py LOCKBOX_IDLE_MIB [SWARM_IDLE_MIB]
"""
import json
import sys

ROWS = [
    ("fill rate (8 connections)", "fill_rate", "{:,.0f} creates/s"),
    ("RSS after the fill", "rss_mib", "{:.1f} MiB"),
    ("RSS after the queries below", "rss_after_queries_mib", "{:.1f} MiB"),
    ("list all, p50", "list_p50_ms", "{:.1f} ms"),
    ("list `label=team=t7` (1 %), p50", "list_label_p50_ms", "{:.2f} ms"),
    ("inspect by name, p50", "inspect_p50_ms", "{:.2f} ms"),
    ("create at this size, p50", "create_p50_ms", "{:.2f} ms"),
    ("restart to ready", "ready_s", "{:.2f} s"),
    ("RSS after the restart", "rss_restart_mib", "{:.1f} MiB"),
]


def main():
    runs = [json.loads(l) for l in sys.stdin if l.strip()]
    idle = {"lockbox": sys.argv[1]} if sys.argv[1] else {}
    if len(sys.argv) > 2 and sys.argv[2]:
        idle["swarm"] = sys.argv[2]
    engines = [e for e in ("lockbox", "swarm") if any(r["engine"] == e for r in runs)]
    sizes = sorted({r["n"] for r in runs})
    cols = [(n, e) for n in sizes for e in engines]
    out = ["| figure | " + " | ".join(f"{e} {n:,}" for n, e in cols) + " |"]
    out.append("|---" * (len(cols) + 1) + "|")
    by = {(r["n"], r["engine"]): r for r in runs}
    for label, key, fmt in ROWS:
        cells = []
        for c in cols:
            r = by.get(c)
            cells.append(fmt.format(r[key]) if r and key in r else "—")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    out.append("")
    out.append("Idle RSS before the fill: " + ", ".join(f"{e} {v} MiB" for e, v in idle.items()) + ".")
    print("\n".join(out))


if __name__ == "__main__":
    main()
