#!/usr/bin/env bash
# etcd side of the cluster write benchmark: a 3-member etcd 3.4 cluster on 127.0.0.1
# (Debian's etcd-server), data on the same disk as the repo, and client.py against the
# leader's JSON gateway at 1 and 64 clients. Stops and removes the cluster on exit.
#
#   bench/cluster/etcd.sh [SECONDS]          # recorded seconds per run, default 10
#   OUT=file.jsonl bench/cluster/etcd.sh     # also append client.py's JSON lines to file
#   CLIENTS=1,64 WARMUP=2 ETCD_PORT_BASE=32370 BENCH_TMP=/var/tmp   (defaults)
#
# Members m1..m3: client URL http://127.0.0.1:$((BASE+i)), peer URL :$((BASE+10+i)).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
secs=${1:-10}
CLIENTS=${CLIENTS:-1,64}
WARMUP=${WARMUP:-2}
BASE=${ETCD_PORT_BASE:-32370}
BENCH_TMP=${BENCH_TMP:-/var/tmp}

if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
    echo "etcd.sh: installing etcd-server and etcd-client (apt)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q etcd-server etcd-client >/dev/null ||
        { apt-get update -q >/dev/null && apt-get install -y -q etcd-server etcd-client >/dev/null; }
fi
case $(uname -m) in x86_64 | amd64) ;; *) export ETCD_UNSUPPORTED_ARCH=$(dpkg --print-architecture) ;; esac

work=$(mktemp -d "$BENCH_TMP/lbx-etcd.XXXXXX")
fstype=$(df --output=fstype "$work" | tail -1 | xargs)
if [[ $fstype == tmpfs || $fstype == ramfs ]]; then
    echo "etcd.sh: $work is on $fstype; set BENCH_TMP to a directory on a real disk" >&2
    rm -rf "$work"
    exit 2
fi
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cluster=""
for i in 1 2 3; do cluster+="${cluster:+,}m$i=http://127.0.0.1:$((BASE + 10 + i))"; done
endpoints=""
for i in 1 2 3; do endpoints+="${endpoints:+,}http://127.0.0.1:$((BASE + i))"; done

for i in 1 2 3; do
    c="http://127.0.0.1:$((BASE + i))" p="http://127.0.0.1:$((BASE + 10 + i))"
    etcd --name "m$i" --data-dir "$work/m$i" \
        --listen-client-urls "$c" --advertise-client-urls "$c" \
        --listen-peer-urls "$p" --initial-advertise-peer-urls "$p" \
        --initial-cluster "$cluster" --initial-cluster-state new \
        --initial-cluster-token "lbx-bench-$$" \
        --logger zap --log-level warn >"$work/m$i.log" 2>&1 &
    pids+=($!)
done

export ETCDCTL_API=3
ok=0
for _ in $(seq 1 150); do
    if etcdctl --endpoints="$endpoints" --dial-timeout=1s endpoint health >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.2
done
if [[ $ok != 1 ]]; then
    echo "etcd.sh: cluster did not become healthy; logs:" >&2
    tail -n 20 "$work"/m*.log >&2
    exit 1
fi

# The leader: the endpoint whose own member id is the leader id it reports.
leader=$(etcdctl --endpoints="$endpoints" endpoint status -w json | python3 -c '
import json, sys
for s in json.load(sys.stdin):
    st = s["Status"]
    if st["header"]["member_id"] == st["leader"]:
        print(s["Endpoint"]); break
')
[[ -n $leader ]] || { echo "etcd.sh: no leader found" >&2; exit 1; }
version=$(etcd --version | awk '/etcd Version/{print $3}')
echo "etcd.sh: etcd $version, 3 members, data in $work ($(df --output=source,fstype "$work" | tail -1 | xargs)), leader $leader" >&2
if [[ -n ${OUT:-} ]]; then
    echo "etcd $version, leader $leader, data $work ($(df --output=source,fstype "$work" | tail -1 | xargs))" >"$OUT.meta"
fi

python3 "$here/client.py" --etcd "$leader" --clients "$CLIENTS" --duration "$secs" --warmup "$WARMUP" \
    ${OUT:+--out "$OUT"}

# Sanity: the keys are really there (every recorded write, plus the warm-up's).
stored=$(python3 - "$leader" <<'PY'
import base64, json, sys, urllib.request
b = lambda s: base64.b64encode(s.encode()).decode()
req = {"key": b("bench/"), "range_end": b("bench0"), "count_only": True}
r = urllib.request.urlopen(sys.argv[1] + "/v3/kv/range", json.dumps(req).encode())
print(json.load(r).get("count", 0))
PY
)
echo "etcd.sh: $stored keys under bench/ after the runs" >&2
[[ -z ${OUT:-} ]] || echo "keys stored under bench/ after the runs: $stored" >>"$OUT.meta"
