"""Headline rows for BENCHMARKS.md: each figure next to its anchor, with the ratio.

Reads the RESULTS.md files the benchmark scripts wrote (bench/*/RESULTS.md); prints a
Markdown table. Ratios are lockbox / anchor for times (below 1 is better) and anchor /
lockbox-style speed-ups where the row says so; every row has an anchor and a ratio (a run
not recorded yet says "pending"). Then draws the curves (bench/plots/plot.py: SVG files in
bench/plots/) and prints the Markdown that embeds them.
"""
import re
import sys
from pathlib import Path

root = Path(__file__).resolve().parent
sys.dont_write_bytecode = True
sys.path.insert(0, str(root / "plots"))
import plot  # noqa: E402  (bench/plots/plot.py)

rows = []


def num(s):
    m = re.search(r"-?[\d.]+", s.replace(",", ""))
    return float(m.group()) if m else None


def table(text, first_cell):
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0].startswith(first_cell):
            return cells
    return None


core = root / "core/RESULTS.md"
if core.exists():
    t = core.read_text()
    c = table(t, "create")
    if c:
        v = num(c[1])
        rows.append(("core: create p50 (native API, one connection)", f"{v:.2f} ms", "Swarm 1.2 ms (reference notes)", f"{v / 1.2:.2f}x"))
    i = table(t, "inspect")
    if i:
        v = num(i[1])
        rows.append(("core: inspect p50", f"{v:.3f} ms", "Swarm 0.4 ms (reference notes)", f"{v / 0.4:.2f}x"))
    m = re.search(r"idle ([\d.]+) MiB", t)
    if m:
        rows.append(("core: idle daemon RSS", f"{m.group(1)} MiB", "target 30 MiB", f"{float(m.group(1)) / 30:.2f}x"))

api = root / "docker-api/RESULTS.md"
if api.exists():
    t = api.read_text()
    for op in ["create", "inspect", "list", "delete"]:
        c = table(t, op)
        if c:
            lb, sw = num(c[1]), num(c[2])
            rows.append((f"docker API: {c[0]} p50", f"{lb:.2f} ms", f"Swarm {sw:.2f} ms (same run)", f"{lb / sw:.2f}x"))
    c = table(t, "with 10000 secrets")
    if c:
        lb, sw = num(c[1]), num(c[2])
        rows.append(("docker API: RSS with 10,000 secrets", f"{lb:.1f} MiB", f"Swarm's dockerd {sw:.1f} MiB", f"{lb / sw:.2f}x"))

dl = root / "delivery/RESULTS.md"
if dl.exists():
    t = dl.read_text()
    c = table(t, "overhead (median of per-pair ratios")
    if c:
        v = num(c[1])
        ratio = f"{1 + v / 100:.2f}x wall ({c[1]})" if v is not None else c[1] + " wall"
        rows.append(("delivery: `lockbox docker run` + 10 secrets vs `docker run`", c[1], "plain `docker run` (same run)", ratio))
    c = table(t, "lockbox, relative target")
    if c:
        v = num(c[2])
        rows.append(("delivery: rotation seen by a running container, p50", f"{v} ms", "Swarm recipe 11.8 s", f"{v / 11800:.4f}x"))
    c = table(t, "overhead (median of per-pair differences")
    if c:
        v = num(c[1])
        rows.append(("delivery: `lockbox run -- true` overhead", c[1], "`true` (same run); target 10 ms", f"{v / 10:.2f}x of the target"))

sc = root / "scan/RESULTS.md"
if sc.exists():
    t = sc.read_text()
    lb = table(t, "lockbox scan")
    ds = table(t, "detect-secrets")
    if lb and ds:
        # The speed-up as the benchmark computed it (from unrounded times), else from the table.
        m = re.search(r"Speed-up on the stdlib: \*\*([\d.]+)x wall", t)
        speedup = float(m.group(1)) if m else num(ds[1]) / num(lb[1])
        rows.append(("scan: CPython stdlib wall time", f"{num(lb[1])} s", f"detect-secrets {num(ds[1])} s", f"{speedup:.0f}x faster"))

        def recall(cell):
            m = re.match(r"\s*(\d+)/(\d+)", cell)
            return int(m.group(1)) / int(m.group(2)) if m and int(m.group(2)) else None

        rl, rd = recall(lb[5]), recall(ds[5])
        ratio = f"{rl / rd:.2f}x the recall" if rl is not None and rd else "—"
        rows.append(("scan: corpus recall / false positives", f"{lb[5]} / {lb[6]}", f"detect-secrets {ds[5]} / {ds[6]}",
                     f"{ratio}; false positives {num(lb[6]):.0f} vs {num(ds[6]):.0f}"))

cl = plot.cluster_runs(root / "cluster/RESULTS.md")
if cl:
    lbr, etr = cl.get("lockbox", {}), cl.get("etcd", {})
    for label, clients, key, unit, d in [
        ("cluster: write p50, 1 client (3 managers)", 1, "p50_ms", " ms", 2),
        ("cluster: writes/s, 64 clients", 64, "writes_per_s", "/s", 0),
    ]:
        e, l = etr.get(clients, {}).get(key), lbr.get(clients, {}).get(key)
        anchor = f"etcd 3.4, 3 members: {e:,.{d}f}{unit} (same run)" if e else "etcd 3.4, 3 members: not recorded"
        value = f"{l:,.{d}f}{unit}" if l else "pending"
        ratio = f"{l / e:.2f}x" if l and e else "pending"
        rows.append((label, value, anchor, ratio))

sc = plot.scale_runs(root / "scale/RESULTS.md")
if sc:
    lbs, sws = sc.get("lockbox", {}), sc.get("swarm", {})
    top = max(lbs) if lbs else None
    if top:
        l, w = lbs[top], sws.get(top, {})
        rows.append((f"scale: RSS with {top:,} secrets", f"{l['rss_after_queries_mib']:.1f} MiB",
                     "target 100 MiB" + (f"; Swarm's dockerd {w['rss_after_queries_mib']:.1f} MiB (bench/scale)" if w else ""),
                     f"{l['rss_after_queries_mib'] / 100:.2f}x of the target"))
        rows.append((f"scale: restart to ready, {top:,} secrets", f"{l['ready_s']:.2f} s",
                     "target 1 s" + (f"; Swarm {w['ready_s']:.2f} s (bench/scale)" if w else ""),
                     f"{l['ready_s']:.2f}x of the target"))
        for label, key in [("list all", "list_p50_ms"), ("list with a label filter", "list_label_p50_ms")]:
            ratio = f"{l[key] / w[key]:.2f}x" if w else "Swarm pending"
            anchor = f"Swarm {w[key]:.2f} ms (bench/scale)" if w else "Swarm: not recorded"
            rows.append((f"scale: {label} at {top:,} secrets, p50", f"{l[key]:.2f} ms", anchor, ratio))

print("| figure | lockbox | anchor | ratio |")
print("|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(r) + " |")
if not rows:
    print("| (no results yet) | | | |", file=sys.stdout)

images = plot.main()
if images:
    print()
    print("Curves (drawn by `bench/plots/plot.py` from the raw runs in bench/cluster/RESULTS.md and bench/scale/RESULTS.md):")
    print()
    for line in images:
        print(line)
        print()
