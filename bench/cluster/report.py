#!/usr/bin/env python3
"""Side-by-side table for the cluster write benchmark, from client.py's JSON lines.

  report.py LOCKBOX.jsonl ETCD.jsonl [--lockbox-note TEXT]

Prints the Markdown table (rows "1 client" / "64 clients"; a missing lockbox file or run
shows "pending") and a verdict against the issue's targets: lockbox p50 within 1.5x of
etcd's at one client; lockbox ahead of etcd (writes/s) at 64 clients.
"""
import json
import sys
from pathlib import Path


def load(path):
    out = {}
    p = Path(path)
    if p.exists():
        for line in p.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                out[r["clients"]] = r
    return out


def main():
    lb, et = load(sys.argv[1]), load(sys.argv[2])
    counts = sorted(set(lb) | set(et)) or [1, 64]
    f = lambda v, d=2: "—" if v is None else f"{v:.{d}f}"
    print("| clients | lockbox p50 | lockbox p99 | lockbox writes/s | etcd p50 | etcd p99 | etcd writes/s | p50 lockbox/etcd | writes/s lockbox/etcd |")
    print("|---|---|---|---|---|---|---|---|---|")
    for c in counts:
        label = f"{c} client" + ("s" if c != 1 else "")
        e = et.get(c)
        l = lb.get(c)
        ecells = [f"{f(e['p50_ms'])} ms", f"{f(e['p99_ms'])} ms", f"{e['writes_per_s']:.0f}"] if e else ["—"] * 3
        if l:
            lcells = [f"{f(l['p50_ms'])} ms", f"{f(l['p99_ms'])} ms", f"{l['writes_per_s']:.0f}"]
            r1 = f"{l['p50_ms'] / e['p50_ms']:.2f}x" if e and l["p50_ms"] and e["p50_ms"] else "—"
            r2 = f"{l['writes_per_s'] / e['writes_per_s']:.2f}x" if e and e["writes_per_s"] else "—"
        else:
            lcells, r1, r2 = ["pending"] * 3, "pending", "pending"
        print("| " + " | ".join([label] + lcells + ecells + [r1, r2]) + " |")
    errs = {f"{r['target']}@{r['clients']}": r["errors"] for d in (lb, et) for r in d.values() if r["errors"]}
    print()
    print("Errors: " + (", ".join(f"{k} {v}" for k, v in errs.items()) if errs else "none") + ".")
    print()
    if 1 in lb and 1 in et and 64 in lb and 64 in et:
        r1 = lb[1]["p50_ms"] / et[1]["p50_ms"]
        r64 = lb[64]["writes_per_s"] / et[64]["writes_per_s"]
        print(f"Targets: 1 client p50 within 1.5x of etcd's — {r1:.2f}x, {'met' if r1 <= 1.5 else 'NOT met'}; "
              f"64 clients ahead of etcd — {r64:.2f}x etcd's writes/s"
              f" (p50 {lb[64]['p50_ms']:.1f} vs {et[64]['p50_ms']:.1f} ms), {'met' if r64 > 1 else 'NOT met'}.")
    else:
        print("Targets (1 client p50 within 1.5x of etcd's; ahead of etcd at 64 clients): "
              "not evaluated, the lockbox column is pending.")


if __name__ == "__main__":
    main()
