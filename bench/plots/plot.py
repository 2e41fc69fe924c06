#!/usr/bin/env python3
"""Line charts (SVG, written by hand, stdlib only) from what the benchmarks already record.

  python3 bench/plots/plot.py     # writes bench/plots/*.svg, prints the Markdown that embeds them

bench/summary.py calls `main()`; bench/run puts its output into BENCHMARKS.md.

Only figures with an x-axis become curves; everything else stays a table:
  cluster-latency.svg      write p50 and p99 against client count, lockbox and etcd
  cluster-throughput.svg   writes/s against client count, lockbox and etcd
  scale-rss.svg            server RSS against secrets stored, lockbox and Swarm (bench/scale)
  scale-list.svg           list p50 (all; label filter) against secrets stored
from the raw client.py JSON lines at the end of bench/cluster/RESULTS.md (one line per
system and client count; `CLIENTS=1,8,16,32,64 bench/cluster/run.sh` gives five points a
curve instead of two). A system without a recorded run is named in the legend as pending.
The scan benchmark records one tree size, so it has no curve.
"""
import json
import math
from pathlib import Path
from xml.sax.saxutils import escape

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent

W, H = 800, 400
LEFT, RIGHT, TOP, BOTTOM = 72, 290, 44, 58
SYSTEMS = [("lockbox", "lockbox, 3 managers", "#1f6fb4"), ("etcd", "etcd 3.4, 3 members", "#e0701a")]


def json_lines(path, marker):
    """The JSON objects of path's lines that start with `{` and contain marker."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not (line.startswith("{") and marker in line):
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def cluster_runs(path=BENCH / "cluster/RESULTS.md"):
    """{system: {clients: run}} from the JSON lines of RESULTS.md."""
    runs = {}
    for r in json_lines(path, '"clients"'):
        runs.setdefault(r.get("target"), {})[int(r["clients"])] = r
    return runs


def fmt(v):
    if v >= 1000 and v == int(v):
        return f"{int(v):,}"
    if v == int(v):
        return str(int(v))
    return f"{v:g}"


def linear_ticks(lo, hi, n=5):
    """Round ticks from 0 (or lo) covering hi."""
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    top = math.ceil(hi / step) * step
    ticks, t = [], lo
    while t <= top + step / 2:
        ticks.append(round(t, 10))
        t += step
    return ticks


def log_ticks(lo, hi):
    """1-2-5 ticks spanning [lo, hi] on a log axis."""
    out = []
    e = math.floor(math.log10(lo))
    while True:
        for m in (1, 2, 5):
            v = m * 10 ** e
            if v >= lo / 2.0001 and (not out or out[-1] < hi):
                out.append(v)
        if out and out[-1] >= hi:
            break
        e += 1
    # Keep the lowest tick at or below lo.
    while len(out) > 1 and out[1] <= lo:
        out.pop(0)
    return [round(v, 10) for v in out]


def chart(path, title, xlabel, ylabel, series, xs, ylog=False, note="", xunit="clients"):
    """series: [(label, color, dash, [(x, y)])]; a series with no points is a legend entry
    only (pending). x is on a log2 axis (client counts)."""
    pts = [p for s in series for p in s[3]]
    xs = sorted(set(xs) | {x for x, _ in pts})
    x0, x1 = math.log2(xs[0]), math.log2(xs[-1])
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    ys = [y for _, y in pts] or [1.0]
    if ylog:
        yt = log_ticks(max(min(ys), 1e-3), max(ys))
        y0, y1 = math.log10(yt[0]), math.log10(yt[-1])
        fy = lambda v: math.log10(v)
    else:
        yt = linear_ticks(0, max(ys))
        y0, y1 = yt[0], yt[-1]
        fy = lambda v: v
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    px = lambda x: LEFT + (math.log2(x) - x0) / (x1 - x0) * pw
    py = lambda y: TOP + ph - (fy(y) - y0) / (y1 - y0) * ph

    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
         'font-family="Helvetica, Arial, sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="#ffffff"/>',
         f'<text x="{LEFT + pw / 2:.1f}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{escape(title)}</text>']
    for t in yt:
        y = py(t)
        o.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + pw}" y2="{y:.1f}" stroke="#e3e3e3"/>')
        o.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{fmt(t)}</text>')
    for x in xs:
        X = px(x)
        o.append(f'<line x1="{X:.1f}" y1="{TOP}" x2="{X:.1f}" y2="{TOP + ph}" stroke="#f0f0f0"/>')
        o.append(f'<text x="{X:.1f}" y="{TOP + ph + 18}" text-anchor="middle">{fmt(x)}</text>')
    o.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>')
    o.append(f'<text x="{LEFT + pw / 2:.1f}" y="{H - 16}" text-anchor="middle">{escape(xlabel)}</text>')
    o.append(f'<text transform="translate(18 {TOP + ph / 2:.1f}) rotate(-90)" text-anchor="middle">{escape(ylabel)}</text>')
    for label, color, dash, data in series:
        if not data:
            continue
        data = sorted(data)
        d = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in data)
        da = ' stroke-dasharray="6 4"' if dash else ""
        o.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="2"{da}/>')
        for x, y in data:
            o.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{color}">'
                     f'<title>{escape(label)}: {fmt(x)} {xunit}, {y:g}</title></circle>')
    ly = TOP + 8
    for label, color, dash, data in series:
        da = ' stroke-dasharray="6 4"' if dash else ""
        lx = LEFT + pw + 14
        o.append(f'<line x1="{lx}" y1="{ly:.1f}" x2="{lx + 26}" y2="{ly:.1f}" stroke="{color}" stroke-width="2"{da}/>')
        text, fill = (label, "#222") if data else (f"{label}: pending", "#888")
        o.append(f'<text x="{lx + 32}" y="{ly + 4:.1f}" fill="{fill}">{escape(text)}</text>')
        ly += 20
    if note:
        for i, line in enumerate(note.split("\n")):
            o.append(f'<text x="{LEFT + pw + 14}" y="{ly + 10 + 15 * i:.1f}" font-size="10.5" fill="#666">{escape(line)}</text>')
    o.append("</svg>")
    path.write_text("\n".join(o) + "\n")


def scale_runs(path=BENCH / "scale/RESULTS.md"):
    """{engine: {n: run}} from the JSON lines of bench/scale/RESULTS.md."""
    runs = {}
    for r in json_lines(path, '"engine"'):
        runs.setdefault(r["engine"], {})[int(r["n"])] = r
    return runs


SCALE_ENGINES = [("lockbox", "lockbox", "#1f6fb4"), ("swarm", "Swarm (1 manager)", "#e0701a")]


def scale_charts():
    """scale-rss.svg and scale-list.svg: RSS and list latency against the number of secrets."""
    runs = scale_runs()
    if not runs:
        return []
    xs = sorted({n for r in runs.values() for n in r})
    rss, lst = [], []
    for key, name, color in SCALE_ENGINES:
        r = runs.get(key, {})
        rss.append((f"{name}, after the fill", color, False, [(n, v["rss_mib"]) for n, v in r.items()]))
        rss.append((f"{name}, after queries", color, True,
                    [(n, v["rss_after_queries_mib"]) for n, v in r.items()]))
        lst.append((f"{name}, list all", color, False, [(n, v["list_p50_ms"]) for n, v in r.items()]))
        lst.append((f"{name}, label filter (1 %)", color, True,
                    [(n, v["list_label_p50_ms"]) for n, v in r.items()]))
    note = "one keep-alive connection;\nsee bench/scale/RESULTS.md"
    chart(HERE / "scale-rss.svg", "Resident memory against stored secrets",
          "secrets stored (log scale)", "RSS, MiB", rss, xs, note=note, xunit="secrets")
    chart(HERE / "scale-list.svg", "List latency (p50) against stored secrets",
          "secrets stored (log scale)", "list p50, ms (log scale)", lst, xs, ylog=True, note=note,
          xunit="secrets")
    sizes = ", ".join(f"{n:,}" for n in xs)
    return [
        f"![Server RSS (MiB) against secrets stored ({sizes}), lockbox vs Swarm](bench/plots/scale-rss.svg)",
        f"![List p50 (ms) against secrets stored ({sizes}), lockbox vs Swarm](bench/plots/scale-list.svg)",
    ]


def main():
    """Writes the charts; returns the Markdown lines that embed them (empty if no data)."""
    runs = cluster_runs()
    if not runs:
        return scale_charts()
    xs = sorted({c for r in runs.values() for c in r}) or [1, 64]
    lat, tput = [], []
    pending = []
    for key, name, color in SYSTEMS:
        r = runs.get(key, {})
        if not r:
            pending.append(key)
        lat.append((f"{name}, p50", color, False, [(c, v["p50_ms"]) for c, v in r.items() if v.get("p50_ms")]))
        lat.append((f"{name}, p99", color, True, [(c, v["p99_ms"]) for c, v in r.items() if v.get("p99_ms")]))
        tput.append((name, color, False, [(c, v["writes_per_s"]) for c, v in r.items() if v.get("writes_per_s")]))
    secs = sorted({v.get("duration_s") for r in runs.values() for v in r.values()} - {None})
    per = "/".join(f"{s:g}" for s in secs) or "?"
    note = f"{per} s recorded per point after warm-up;\none keep-alive connection per client;\nsee bench/cluster/RESULTS.md"
    chart(HERE / "cluster-latency.svg", "Cluster writes: latency against clients",
          "concurrent clients (log scale)", "write latency, ms (log scale)", lat, xs, ylog=True, note=note)
    chart(HERE / "cluster-throughput.svg", "Cluster writes: throughput against clients",
          "concurrent clients (log scale)", "writes per second", tput, xs, note=note)
    counts = ", ".join(str(c) for c in xs)
    caption = f"clients {counts}" + (f"; {' and '.join(pending)} pending" if pending else "")
    return scale_charts() + [
        f"![Cluster write latency p50/p99 (ms) against clients, lockbox vs etcd ({caption})](bench/plots/cluster-latency.svg)",
        f"![Cluster writes/s against clients, lockbox vs etcd ({caption})](bench/plots/cluster-throughput.svg)",
    ]


if __name__ == "__main__":
    print("\n".join(main()))
