#!/usr/bin/env bash
# lockbox side of the cluster write benchmark: 3 lockbox managers on 127.0.0.1, data on the
# same disk as the repo, and client.py against the leader's Docker API socket
# (POST /v1.41/secrets/create) at 1 and 64 clients. Stops and removes the daemons on exit.
#
#   bench/cluster/lockbox.sh [SECONDS]       # recorded seconds per run, default 10
#   OUT=file.jsonl bench/cluster/lockbox.sh  # also append client.py's JSON lines to file
#   LOCKBOX=target/release/lockbox CLIENTS=1,64 WARMUP=2 LB_PORT_BASE=32470 BENCH_TMP=/var/tmp
#
# Exit 3 (and a message) when the binary has no cluster CLI. The interface used:
#   lockbox daemon --data-dir D -H S/lockbox.sock --docker-api S/docker.sock
#   lockbox -H unix://S1/lockbox.sock cluster init --listen-addr 127.0.0.1:P1 --advertise-addr 127.0.0.1:P1
#   lockbox -H unix://S1/lockbox.sock cluster join-token manager -q
#   lockbox -H unix://Si/lockbox.sock cluster join --token T --listen-addr 127.0.0.1:Pi \
#       --advertise-addr 127.0.0.1:Pi 127.0.0.1:P1                           (i = 2, 3)
#   lockbox -H … node ls [--format '{{.ManagerStatus}}']   (3 managers)
#   GET /v1/cluster on each node's socket                    (Self.IsLeader: the leader)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${1:-10}
CLIENTS=${CLIENTS:-1,64}
WARMUP=${WARMUP:-2}
BASE=${LB_PORT_BASE:-32470}
BENCH_TMP=${BENCH_TMP:-/var/tmp}

if [[ -z ${LOCKBOX:-} ]]; then
    LOCKBOX=$root/target/release/lockbox
    if [[ ! -x $LOCKBOX ]]; then
        echo "lockbox.sh: building $LOCKBOX" >&2
        cargo build --release -p lockbox --manifest-path "$root/Cargo.toml" >&2
    fi
fi
LB=$LOCKBOX

missing=()
"$LB" cluster --help >/dev/null 2>&1 || missing+=("'lockbox cluster'")
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "lockbox.sh: $LB ($("$LB" --version 2>/dev/null)) has no cluster CLI yet: missing ${missing[*]}." >&2
    echo "lockbox.sh: the lockbox column is pending; rebuild once the cluster CLI lands (or set LOCKBOX=path)." >&2
    exit 3
fi

work=$(mktemp -d "$BENCH_TMP/lbx-cluster.XXXXXX")
fstype=$(df --output=fstype "$work" | tail -1 | xargs)
if [[ $fstype == tmpfs || $fstype == ramfs ]]; then
    echo "lockbox.sh: $work is on $fstype; set BENCH_TMP to a directory on a real disk" >&2
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

sock() { echo "unix://$work/n$1/lockbox.sock"; }
lbx() { local n=$1; shift; "$LB" -H "$(sock "$n")" "$@"; }
die() {
    echo "lockbox.sh: $*" >&2
    for i in 1 2 3; do [[ -f $work/n$i/daemon.log ]] && { echo "--- n$i/daemon.log" >&2; tail -n 15 "$work/n$i/daemon.log" >&2; }; done
    exit 1
}

for i in 1 2 3; do
    mkdir -p "$work/n$i"
    addr=127.0.0.1:$((BASE + i))
    "$LB" daemon --data-dir "$work/n$i/data" -H "$work/n$i/lockbox.sock" \
        --docker-api "$work/n$i/docker.sock" \
        --log-level warn >"$work/n$i/daemon.log" 2>&1 &
    pids+=($!)
done
for i in 1 2 3; do
    up=0
    for _ in $(seq 1 200); do
        if lbx "$i" info >/dev/null 2>&1; then up=1; break; fi
        kill -0 "${pids[$((i - 1))]}" 2>/dev/null || break
        sleep 0.05
    done
    [[ $up = 1 ]] || die "daemon n$i did not answer 'info'"
done

a1=127.0.0.1:$((BASE + 1))
lbx 1 cluster init --listen-addr "$a1" --advertise-addr "$a1" >"$work/init.out" 2>&1 || { cat "$work/init.out" >&2; die "cluster init failed on n1"; }
token=$(lbx 1 cluster join-token manager -q) || die "cluster join-token manager -q failed on n1"
[[ -n $token ]] || die "empty manager join token"
for i in 2 3; do
    ai=127.0.0.1:$((BASE + i))
    lbx "$i" cluster join --token "$token" --listen-addr "$ai" --advertise-addr "$ai" "$a1" >"$work/join$i.out" 2>&1 ||
        { cat "$work/join$i.out" >&2; die "cluster join failed on n$i"; }
done

managers() {
    local out
    if out=$(lbx 1 node ls --format '{{.ManagerStatus}}' 2>/dev/null); then
        grep -c -v -e '^[[:space:]]*$' -e '<no value>' <<<"$out" || true
    else
        lbx 1 node ls 2>/dev/null | tail -n +2 | grep -c . || true
    fi
}
n=0
for _ in $(seq 1 300); do
    n=$(managers)
    [[ $n -ge 3 ]] && break
    sleep 0.1
done
[[ $n -ge 3 ]] || { lbx 1 node ls >&2 || true; die "node ls shows $n managers after 30 s, not 3"; }

# The leader: the node whose GET /v1/cluster says Self.IsLeader.
leader=$(python3 - "$work" <<'PY'
import http.client, json, socket, sys
work = sys.argv[1]
class Unix(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("lockbox")
        self.path_ = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.path_)
for i in (1, 2, 3):
    c = Unix(f"{work}/n{i}/lockbox.sock")
    c.request("GET", "/v1/cluster")
    v = json.loads(c.getresponse().read() or b"{}")
    if v.get("Self", {}).get("IsLeader"):
        print(f"{i} (GET /v1/cluster)"); sys.exit()
print("1 assumed: no node said it leads")
PY
)
leader_n=${leader%% *}
echo "lockbox.sh: $("$LB" --version), 3 managers, data in $work ($(df --output=source,fstype "$work" | tail -1 | xargs)), leader n$leader ($work/n$leader_n/docker.sock)" >&2
if [[ -n ${OUT:-} ]]; then
    echo "$("$LB" --version), leader n$leader, data $work ($(df --output=source,fstype "$work" | tail -1 | xargs))" >"$OUT.meta"
fi

python3 "$here/client.py" --lockbox-unix "$work/n$leader_n/docker.sock" --clients "$CLIENTS" \
    --duration "$secs" --warmup "$WARMUP" ${OUT:+--out "$OUT"}

# Sanity: the secrets are there, on the leader and (if it serves reads) on each follower.
for i in 1 2 3; do
    c=$(timeout 20 "$LB" -H "$(sock "$i")" secret ls -q 2>/dev/null | grep -c '' || true)
    echo "lockbox.sh: n$i lists $c secrets after the runs" >&2
    [[ -z ${OUT:-} ]] || echo "n$i lists $c secrets after the runs" >>"$OUT.meta"
done
