#!/usr/bin/env bash
# A throwaway single-node Swarm engine, isolated from the machine's own Docker engine:
# its own network namespace (only loopback), its own mount namespace (so the plugin
# directory /run/docker/plugins it sees is a private directory of ours, not the host's),
# and its own --data-root, --exec-root, --pidfile and socket.
#
#   swarm-engine.sh start DIR   -> prints the socket path; DIR/plugins is where a secret
#                                  driver socket must go (the engine sees it as
#                                  /run/docker/plugins)
#   swarm-engine.sh restart DIR -> stops dockerd and starts it again on the same data
#   swarm-engine.sh stop DIR    -> stops dockerd, deletes the netns, removes DIR
#
# Never start such an engine in the host's network namespace: with --bridge none it would
# delete the host's docker0.
set -euo pipefail

cmd=${1:?start|stop}
dir=${2:?DIR}
# The netns name must be unique per DIR and short (interface-name-like).
ns="lbx-$(printf %s "$dir" | cksum | cut -d" " -f1)"

stop() {
    if [[ -f "$dir/dockerd.pid" ]]; then
        pid=$(cat "$dir/dockerd.pid")
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    # containerd-shims of tasks may outlive dockerd briefly; they live in the netns.
    if ip netns pids "$ns" >/dev/null 2>&1; then
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    fi
    ip netns delete "$ns" 2>/dev/null || true
    # The engine's mounts live in its private mount namespace and die with it; whatever
    # it left on disk goes with DIR.
    rm -rf "$dir" 2>/dev/null || { sleep 1; rm -rf "$dir" || true; }
}

# Starts dockerd on DIR's directories inside the netns (existing or new) and waits for it.
launch() {
    sock="$dir/docker.sock"
    nsenter --net="/run/netns/$ns" unshare -m --propagation private sh -c '
        mkdir -p /run/docker/plugins
        mount --bind "$1/plugins" /run/docker/plugins
        exec dockerd --data-root "$1/data" --exec-root "$1/exec" --pidfile "$1/dockerd.pid" \
            -H "unix://$1/docker.sock" --iptables=false --ip6tables=false --bridge none \
            --ip-forward=false --ip-masq=false --storage-driver vfs \
            --containerd-namespace lbxmoby --containerd-plugins-namespace lbxplugins
    ' sh "$dir" >"$dir/dockerd.log" 2>&1 &
    launcher=$!
    for _ in $(seq 1 300); do
        if docker -H "unix://$sock" version >/dev/null 2>&1; then break; fi
        kill -0 "$launcher" 2>/dev/null || break
        sleep 0.1
    done
    if ! docker -H "unix://$sock" version >/dev/null 2>&1; then
        echo "throwaway dockerd did not start; its log:" >&2
        tail -50 "$dir/dockerd.log" >&2
        stop
        exit 1
    fi
}

case "$cmd" in
start)
    image=${LOCKBOX_TEST_IMAGE:-lockbox-test/busybox:latest}
    mkdir -p "$dir"/{data,exec,plugins}
    ip netns add "$ns"
    ip netns exec "$ns" ip link set lo up
    launch
    docker -H "unix://$sock" swarm init --advertise-addr 127.0.0.1 >/dev/null
    # The test image, copied from the machine's engine (nothing can be pulled here).
    if [[ "${SWARM_ENGINE_IMAGE:-1}" == 1 ]]; then
        docker save "$image" | docker -H "unix://$sock" load >/dev/null
    fi
    echo "$sock"
    ;;
stop)
    stop
    ;;
restart)
    # Same data, same netns: how long a Swarm manager takes to come back (bench/scale).
    # dockerd removes its pidfile on exit: the caller may have stopped it already.
    pid=$(cat "$dir/dockerd.pid" 2>/dev/null || true)
    if [[ -n "$pid" ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    launch
    echo "$dir/docker.sock"
    ;;
*)
    echo "usage: $0 start|restart|stop DIR" >&2
    exit 2
    ;;
esac
