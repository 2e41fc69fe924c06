#!/usr/bin/env python3
"""One write-load client for both sides of the cluster benchmark (stdlib only, Python 3.11).

N threads, each with its own keep-alive HTTP/1.1 connection, each doing sequential writes:
first for --warmup seconds (not recorded), then for --duration seconds (every request's
latency recorded). All threads start each phase together (barrier). Prints one JSON line
per run on stdout and a human table on stderr.

Targets:
  --etcd http://127.0.0.1:PORT        POST /v3/kv/put {"key": b64, "value": b64}  -> 200
                                      (etcd 3.4's gRPC-JSON gateway; unique key per request)
  --lockbox-unix /path/docker.sock    POST /v1.41/secrets/create
                                      {"Name": "bench-<run>-<thread>-<n>", "Data": b64} -> 201
                                      (Docker Engine API as lockbox serves it)
Both write a 32-byte random value per request.

  client.py --etcd http://127.0.0.1:32371 --clients 1,64 --duration 10 --warmup 2
"""
import argparse
import base64
import http.client
import json
import os
import socket
import sys
import threading
import time
import urllib.parse

VALUE_BYTES = 32


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a Unix socket (Host: localhost, as the docker CLI sends)."""

    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


class Etcd:
    name = "etcd"
    expect = 200

    def __init__(self, url, path):
        u = urllib.parse.urlsplit(url)
        if u.scheme != "http" or not u.hostname:
            sys.exit(f"client.py: --etcd wants http://HOST:PORT, got {url!r}")
        self.host, self.port, self.path = u.hostname, u.port or 2379, path
        self.where = f"{url}{path}"

    def connect(self):
        # http.client sets TCP_NODELAY and sends headers + body in one send().
        return http.client.HTTPConnection(self.host, self.port, timeout=30)

    def body(self, run, thread, n):
        key = f"bench/{run}/{thread}/{n}".encode()
        return {
            "key": base64.b64encode(key).decode(),
            "value": base64.b64encode(os.urandom(VALUE_BYTES)).decode(),
        }


class Lockbox:
    name = "lockbox"
    expect = 201
    path = "/v1.41/secrets/create"

    def __init__(self, sock):
        self.sock = sock
        self.where = f"unix://{sock} {self.path}"

    def connect(self):
        return UnixHTTPConnection(self.sock, timeout=30)

    def body(self, run, thread, n):
        return {
            "Name": f"bench-{run}-{thread}-{n}",
            "Data": base64.b64encode(os.urandom(VALUE_BYTES)).decode(),
        }


def pct(sorted_vals, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(-(-p * len(sorted_vals) // 100)) - 1))
    return sorted_vals[k]


def run_once(target, clients, duration, warmup, run_id):
    barrier = threading.Barrier(clients + 1)
    phase = {"record": False, "stop": False}
    lat = [[] for _ in range(clients)]
    errs = [0] * clients
    first_err = [None]
    headers = {"Content-Type": "application/json", "Connection": "keep-alive"}

    def worker(t):
        conn = target.connect()
        n = 0
        barrier.wait()  # start of warm-up
        while not phase["stop"]:
            body = json.dumps(target.body(run_id, t, n)).encode()
            n += 1
            t0 = time.perf_counter_ns()
            try:
                conn.request("POST", target.path, body=body, headers=headers)
                r = conn.getresponse()
                data = r.read()
                ok = r.status == target.expect
                if not ok and first_err[0] is None:
                    first_err[0] = f"HTTP {r.status}: {data[:200]!r}"
            except (OSError, http.client.HTTPException) as e:
                ok = False
                if first_err[0] is None:
                    first_err[0] = f"{type(e).__name__}: {e}"
                conn.close()
                conn = target.connect()
            dt = time.perf_counter_ns() - t0
            if phase["record"] and not phase["stop"]:
                if ok:
                    lat[t].append(dt)
                else:
                    errs[t] += 1
        conn.close()

    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(clients)]
    for th in threads:
        th.start()
    barrier.wait()
    time.sleep(warmup)
    phase["record"] = True
    t_start = time.perf_counter()
    time.sleep(duration)
    phase["stop"] = True
    elapsed = time.perf_counter() - t_start
    for th in threads:
        th.join(timeout=60)

    all_lat = sorted(x for l in lat for x in l)
    ms = lambda v: None if v is None else round(v / 1e6, 3)
    return {
        "target": target.name,
        "endpoint": target.where,
        "clients": clients,
        "duration_s": round(elapsed, 3),
        "warmup_s": warmup,
        "writes": len(all_lat),
        "errors": sum(errs),
        "first_error": first_err[0],
        "p50_ms": ms(pct(all_lat, 50)),
        "p99_ms": ms(pct(all_lat, 99)),
        "mean_ms": ms(sum(all_lat) / len(all_lat)) if all_lat else None,
        "max_ms": ms(all_lat[-1]) if all_lat else None,
        "writes_per_s": round(len(all_lat) / elapsed, 1),
        "value_bytes": VALUE_BYTES,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--etcd", metavar="URL", help="etcd client URL (the leader's), e.g. http://127.0.0.1:2379")
    g.add_argument("--lockbox-unix", metavar="SOCK", help="lockbox's Docker API socket (the leader's docker.sock)")
    ap.add_argument("--etcd-path", default="/v3/kv/put", help="gateway path (etcd 3.4: /v3/kv/put; /v3beta/kv/put is also served, /v3alpha is not)")
    ap.add_argument("--clients", default="1,64", help="comma-separated client counts, one run each (default 1,64)")
    ap.add_argument("--duration", type=float, default=10.0, help="recorded seconds per run (default 10)")
    ap.add_argument("--warmup", type=float, default=2.0, help="unrecorded seconds before each run (default 2)")
    ap.add_argument("--out", metavar="FILE", help="also append the JSON lines to FILE")
    a = ap.parse_args()

    target = Etcd(a.etcd, a.etcd_path) if a.etcd else Lockbox(a.lockbox_unix)
    counts = [int(c) for c in a.clients.split(",") if c.strip()]
    try:  # fail fast on a wrong address rather than spin on connection errors
        c = target.connect()
        c.connect()
        c.close()
    except OSError as e:
        sys.exit(f"client.py: cannot connect to {target.where}: {e}")
    results = []
    for c in counts:
        run_id = f"{os.getpid():x}{int(time.time()) % 100000:x}c{c}"
        r = run_once(target, c, a.duration, a.warmup, run_id)
        results.append(r)
        line = json.dumps(r, sort_keys=True)
        print(line, flush=True)
        if a.out:
            with open(a.out, "a") as f:
                f.write(line + "\n")
        if r["errors"]:
            print(f"client.py: {r['errors']} errors at {c} clients; first: {r['first_error']}", file=sys.stderr)

    print(f"\n{target.name} writes ({target.where}), {a.duration:g} s per run after {a.warmup:g} s warm-up", file=sys.stderr)
    print(f"{'clients':>8} {'p50 ms':>9} {'p99 ms':>9} {'mean ms':>9} {'writes/s':>10} {'writes':>8} {'errors':>7}", file=sys.stderr)
    for r in results:
        f = lambda v: "-" if v is None else f"{v:.2f}"
        print(f"{r['clients']:>8} {f(r['p50_ms']):>9} {f(r['p99_ms']):>9} {f(r['mean_ms']):>9} "
              f"{r['writes_per_s']:>10.0f} {r['writes']:>8} {r['errors']:>7}", file=sys.stderr)
    sys.exit(1 if any(r["writes"] == 0 for r in results) else 0)


if __name__ == "__main__":
    main()
