#!/usr/bin/env python3
"""Docker Engine API client for bench/scale: the same requests against lockbox and Swarm.

  client.py fill   SOCK FROM TO [--conns 8]       create secrets FROM..TO-1, print JSON {rate}
  client.py probe  SOCK N [--reps R]              list/inspect/create latencies at size N, JSON
  client.py ready  SOCK NAME [--timeout 60]       poll until NAME inspects, print seconds waited

Secret i is named scale_<i:07d>, has labels {"app": "bench", "team": "t<i % 100>"} and a
33-byte value; `label=team=t7` therefore matches 1 % of the secrets. Standard library only,
one keep-alive connection per thread (as the docker CLI and SDKs use one per call).
"""
import argparse
import http.client
import json
import random
import socket
import sys
import threading
import time
import urllib.parse

API = "/v1.41"
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


class UnixConn(http.client.HTTPConnection):
    def __init__(self, path, timeout=300):
        super().__init__("api.moby.localhost", timeout=timeout)
        self.path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s


def request(c, method, path, body=None):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    return r.status, data


def expect(c, method, path, body, want):
    st, data = request(c, method, path, body)
    if st != want:
        raise SystemExit(f"{method} {path}: {st} {data[:300]!r}")
    return data


def name(i):
    return f"scale_{i:07d}"


def create_body(i, prefix="scale"):
    value = "".join(B64[(i * 7 + k * 13) % 64] for k in range(44))
    return json.dumps(
        {"Name": f"{prefix}_{i:07d}", "Labels": {"app": "bench", "team": f"t{i % 100}"}, "Data": value}
    )


def pct(samples, q):
    s = sorted(samples)
    return s[max(0, min(len(s) - 1, int(len(s) * q + 0.999999) - 1))]


def timed(fn, reps):
    out = []
    for k in range(reps):
        t = time.perf_counter()
        fn(k)
        out.append(time.perf_counter() - t)
    return out


def fill(args):
    nxt = [args.start]
    lock = threading.Lock()
    errors = []

    def worker():
        c = UnixConn(args.sock)
        try:
            while True:
                with lock:
                    i = nxt[0]
                    if i >= args.end:
                        return
                    nxt[0] += 1
                expect(c, "POST", f"{API}/secrets/create", create_body(i), 201)
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(args.conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"fill failed: {errors[0]}")
    print(json.dumps({"created": args.end - args.start, "seconds": wall, "rate": (args.end - args.start) / wall}))


def probe(args):
    n = args.n
    c = UnixConn(args.sock)
    rng = random.Random(19)
    q = urllib.parse.quote(json.dumps({"label": ["team=t7"]}))
    res = {"n": n}
    # Lists of 100k return tens of MB: fewer repetitions keep a run in minutes.
    reps = args.reps or max(5, min(50, 1_000_000 // max(n, 1)))
    lst = timed(lambda _: expect(c, "GET", f"{API}/secrets", None, 200), reps)
    body = expect(c, "GET", f"{API}/secrets", None, 200)
    res["list_count"] = len(json.loads(body))
    res["list_bytes"] = len(body)
    res["list_p50_ms"] = pct(lst, 0.5) * 1e3
    lab = timed(lambda _: expect(c, "GET", f"{API}/secrets?filters={q}", None, 200), max(reps, 20))
    res["list_label_count"] = len(json.loads(expect(c, "GET", f"{API}/secrets?filters={q}", None, 200)))
    res["list_label_p50_ms"] = pct(lab, 0.5) * 1e3
    picks = [rng.randrange(n) for _ in range(300)]
    ins = timed(lambda k: expect(c, "GET", f"{API}/secrets/{name(picks[k])}", None, 200), len(picks))
    res["inspect_p50_ms"] = pct(ins, 0.5) * 1e3
    # Creates at this size, one connection, one at a time; removed again so N stays N.
    base = 9_000_000 + n
    cr = timed(lambda k: expect(c, "POST", f"{API}/secrets/create", create_body(base + k, "probe"), 201), 200)
    res["create_p50_ms"] = pct(cr, 0.5) * 1e3
    for k in range(200):
        expect(c, "DELETE", f"{API}/secrets/probe_{base + k:07d}", None, 204)
    print(json.dumps(res))


def ready(args):
    t0 = time.perf_counter()
    while True:
        try:
            c = UnixConn(args.sock, timeout=5)
            st, _ = request(c, "GET", f"{API}/secrets/{args.name}")
            if st == 200:
                print(f"{time.perf_counter() - t0:.4f}")
                return
        except OSError:
            pass
        if time.perf_counter() - t0 > args.timeout:
            raise SystemExit(f"not ready after {args.timeout} s")
        time.sleep(0.005)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fill")
    f.add_argument("sock")
    f.add_argument("start", type=int)
    f.add_argument("end", type=int)
    f.add_argument("--conns", type=int, default=8)
    pr = sub.add_parser("probe")
    pr.add_argument("sock")
    pr.add_argument("n", type=int)
    pr.add_argument("--reps", type=int, default=0)
    r = sub.add_parser("ready")
    r.add_argument("sock")
    r.add_argument("name")
    r.add_argument("--timeout", type=float, default=120)
    args = p.parse_args()
    {"fill": fill, "probe": probe, "ready": ready}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
