#!/usr/bin/env bash
# Cluster write benchmark, side by side on loopback: a 3-manager lockbox cluster vs a
# 3-member etcd 3.4 cluster (Debian's etcd-server), the same client (client.py: N threads,
# one keep-alive HTTP/1.1 connection each, sequential writes) against each leader, at 1 and
# 64 clients. Each cluster runs alone (etcd first unless FIRST=lockbox; the first is stopped, and the disk synced and left to settle, before the second starts), data on
# the same disk as the repo. Writes bench/cluster/RESULTS.md.
#
#   bench/cluster/run.sh [SECONDS]              # recorded seconds per run, default 10
#   LOCKBOX=path/to/lockbox bench/cluster/run.sh   # use that binary (else target/release/lockbox,
#                                                # built if missing)
#   CLIENTS=1,64 WARMUP=2 BENCH_TMP=/var/tmp     (defaults)
#   SETTLE=20 (seconds of sync + quiet between the two sides)  FIRST=etcd|lockbox (which runs first)
#
# If the lockbox binary has no cluster CLI yet, the etcd side still runs and the lockbox
# columns say "pending"; the exit status is then 3.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${1:-10}
export CLIENTS=${CLIENTS:-1,64} WARMUP=${WARMUP:-2} BENCH_TMP=${BENCH_TMP:-/var/tmp}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

run_etcd() {
    echo "== etcd (3 members)" >&2
    OUT=$tmp/etcd.jsonl "$here/etcd.sh" "$secs" >&2
}
lb_rc=0
run_lockbox() {
    echo "== lockbox (3 managers)" >&2
    OUT=$tmp/lockbox.jsonl "$here/lockbox.sh" "$secs" 2>&1 | tee "$tmp/lockbox.err" >&2 || lb_rc=${PIPESTATUS[0]}
    [[ $lb_rc = 0 || $lb_rc = 3 ]] || { echo "run.sh: lockbox side failed (exit $lb_rc)" >&2; exit "$lb_rc"; }
}
# The second cluster must not pay for the first one's disk traffic: flush it and let the
# disk settle (measured here: lockbox at 1 client p50 3.3 ms right after etcd's run, 1.5 ms
# alone). SETTLE=seconds, default 20. FIRST=lockbox runs lockbox first (default etcd).
settle() {
    sync
    sleep "${SETTLE:-20}"
}
if [[ ${FIRST:-etcd} = lockbox ]]; then
    run_lockbox; settle; run_etcd
else
    run_etcd; settle; run_lockbox
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

LB=${LOCKBOX:-$root/target/release/lockbox}
lb_version=$("$LB" --version 2>/dev/null || echo "lockbox (not built)")
disk=$(df --output=source,fstype "$BENCH_TMP" | tail -1 | xargs)
dev=$(lsblk -ndo NAME,ROTA,SIZE "$(df --output=source "$BENCH_TMP" | tail -1)" 2>/dev/null | awk '{print $1", lsblk ROTA="$2", "$3}')
cmd="bench/cluster/run.sh $secs"
[[ $CLIENTS = 1,64 && $WARMUP = 2 ]] || cmd="CLIENTS=$CLIENTS WARMUP=$WARMUP $cmd"

joinlines() { awk 'BEGIN{ORS=""} {print (NR>1?"; ":"") $0}' "$1"; }
table=$(python3 "$here/report.py" "$tmp/lockbox.jsonl" "$tmp/etcd.jsonl")
{
    echo "# Cluster writes: lockbox 3 managers vs etcd 3.4 3 members"
    echo
    echo "Command: \`$cmd\` on $(date -u +'%Y-%m-%d %H:%M UTC')."
    echo "Machine: $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p' | head -1)), $(free -g | awk '/Mem:/{print $2}') GiB, kernel $(uname -r), shared with other work."
    echo "Disk for both clusters' data: $disk${dev:+ ($dev)}, under $BENCH_TMP (the repo's disk: $(df --output=source "$root" | tail -1 | xargs))."
    echo "Versions: $lb_version (release build); $(sed -n 1p "$tmp/etcd.jsonl.meta" | cut -d, -f1) (Debian etcd-server $(dpkg-query -W -f='${Version}' etcd-server 2>/dev/null)); Python $(python3 -c 'import platform; print(platform.python_version())')."
    echo
    echo "Same client for both (\`client.py\`, stdlib): N threads, each with its own keep-alive"
    echo "HTTP/1.1 connection, sequential writes of a 32-byte random value under a new key;"
    echo "$WARMUP s warm-up, then $secs s recorded per row. etcd: \`POST /v3/kv/put\` on the leader's"
    echo "JSON gateway (TCP, loopback). lockbox: \`POST /v1.41/secrets/create\` (Docker Engine API,"
    echo "expects 201) on the leader's docker.sock (Unix socket). p50/p99 over every recorded write."
    if [[ ${FIRST:-etcd} = lockbox ]]; then order="lockbox, then etcd"; else order="etcd, then lockbox"; fi
    echo "The clusters run one after the other ($order), never at the same time, with \`sync\` and ${SETTLE:-20} s of quiet between them."
    echo
    echo "$table"
    echo
    echo "Anchor (issue): etcd measured with a Python keep-alive client against the leader's JSON"
    echo "gateway at p50 1.2 ms at one client (about 780 writes/s), p50 16 ms at 64 clients (about"
    echo "3,300 writes/s). Targets: lockbox within 1.5x of etcd's p50 at one client, ahead of etcd at 64."
    echo
    echo "Load average (1, 5, 15 min) before: $load_before; after: $load_after."
    echo
    echo "etcd: $(joinlines "$tmp/etcd.jsonl.meta")."
    if [[ -s $tmp/lockbox.jsonl ]]; then
        echo "lockbox: $(joinlines "$tmp/lockbox.jsonl.meta")."
    else
        echo "lockbox: pending — $(grep -m1 'no cluster CLI' "$tmp/lockbox.err" | sed 's/^lockbox.sh: //')"
        echo "Rerun \`$cmd\` once the cluster CLI is in the binary."
    fi
    echo
    echo "Raw client.py output (one JSON line per run):"
    echo
    echo '```'
    cat "$tmp/etcd.jsonl"
    [[ ! -f $tmp/lockbox.jsonl ]] || cat "$tmp/lockbox.jsonl"
    echo '```'
} >"$here/RESULTS.md"
echo >&2
echo "$table"
echo >&2
echo "wrote $here/RESULTS.md" >&2
exit "$lb_rc"
