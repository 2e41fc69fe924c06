#!/usr/bin/env bash
# lockbox vs a real Swarm, through the Docker Engine API, with the same client code.
#
#   bench/docker-api/run.sh            # N=1000 secrets, MEM=10000 for the memory row
#   N=200 MEM=2000 bench/docker-api/run.sh
#   LOCKBOX=target/release/lockbox bench/docker-api/run.sh   # skip the build
#
# Builds lockbox in release, starts it on a temp directory with its Docker API socket,
# starts a throwaway single-node Swarm engine in its own network namespace
# (swarm-engine.sh: the machine's own engine is not touched), runs client/ against both,
# prints the table and writes RESULTS.md next to this script. Needs root (netns, dockerd).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
N=${N:-1000}
MEM=${MEM:-10000}
LIST_REPS=${LIST_REPS:-200}

# LOCKBOX=path/to/lockbox uses an already built binary instead (the working tree may be
# mid-change while others work in it).
if [[ -z "${LOCKBOX:-}" ]]; then
    cargo build --release -p lockbox --manifest-path "$root/Cargo.toml"
    LOCKBOX="$root/target/release/lockbox"
fi
cargo build --release --offline --manifest-path "$here/client/Cargo.toml" \
    --target-dir "$root/target/docker-api-bench"
client="$root/target/docker-api-bench/release/docker-api-bench"

work=$(mktemp -d /tmp/lbxbench.XXXXXX)
lb_pid=
cleanup() {
    if [[ -n "$lb_pid" ]]; then
        kill -TERM "$lb_pid" 2>/dev/null || true
        wait "$lb_pid" 2>/dev/null || true
    fi
    "$here/swarm-engine.sh" stop "$work/swarm" || true
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/lb"
"$LOCKBOX" daemon --data-dir "$work/lb/data" -H "$work/lb/lockbox.sock" \
    --docker-api "$work/lb/docker.sock" >"$work/lb/daemon.log" 2>&1 &
lb_pid=$!
for _ in $(seq 1 200); do [[ -S "$work/lb/docker.sock" ]] && break; sleep 0.05; done
[[ -S "$work/lb/docker.sock" ]] || { cat "$work/lb/daemon.log" >&2; exit 1; }

SWARM_ENGINE_IMAGE=0 "$here/swarm-engine.sh" start "$work/swarm" >/dev/null
swarm_pid=$(cat "$work/swarm/dockerd.pid")

table="$work/table.md"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
"$client" --n "$N" --mem "$MEM" --list-reps "$LIST_REPS" --out "$table" \
    "lockbox=$work/lb/docker.sock:$lb_pid" "swarm=$work/swarm/docker.sock:$swarm_pid"

{
    echo "# Docker Engine API: lockbox vs Swarm"
    echo
    echo "Run: \`bench/docker-api/run.sh\` (N=$N, MEM=$MEM, LIST_REPS=$LIST_REPS) on $(date -u +%Y-%m-%d),"
    echo "$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), kernel $(uname -r)."
    echo "lockbox $("$LOCKBOX" --version 2>/dev/null | awk '{print $2}') (release build) vs"
    echo "Docker Engine $(docker -H "unix://$work/swarm/docker.sock" version --format '{{.Server.Version}}') as a single-node Swarm manager"
    echo "(throwaway \`dockerd\` in its own network namespace, vfs storage, \`swarm init --advertise-addr 127.0.0.1\`)."
    echo
    echo "Same client for both (\`client/\`, std only): one keep-alive connection over the Unix"
    echo "socket, one request at a time, as the docker CLI does; 33-byte values with one label."
    echo "Rows: create $N secrets; inspect each by name; list all $N ($LIST_REPS times); delete each."
    echo "Memory: VmRSS of the server process (lockbox daemon; dockerd, which holds Swarm's raft"
    echo "store in-process) before and after creating $MEM more secrets."
    echo
    cat "$table"
    echo
    echo "Load average (1, 5, 15 min) before: $load_before; after: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo "Both engines share the machine's CPUs with whatever else runs; compare rows of one run."
    echo
    echo "Both write durably per create: lockbox appends the raft entry and the audit record"
    echo "(fsync) before answering; Swarm commits the raft entry to its WAL (fsync)."
} >"$here/RESULTS.md"
echo
echo "wrote $here/RESULTS.md"
