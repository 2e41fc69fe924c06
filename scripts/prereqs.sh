#!/usr/bin/env bash
# Installs and starts what the test suite needs on a Debian machine: a Docker engine,
# docker-compose v1, busybox-static, iproute2, and the FROM-scratch test image.
# Idempotent: what is present is left alone. Engines this script starts are recorded in
# $LOCKBOX_PREREQ_STATE so scripts/stop-prereqs.sh can stop exactly those.
set -euo pipefail

state=${LOCKBOX_PREREQ_STATE:-/tmp/lockbox-prereqs}
mkdir -p "$state"

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
[ -x /usr/bin/docker-compose ] || need+=(docker-compose)
[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || need+=(busybox-static)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "prereqs: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  echo "prereqs: no Docker engine answers; starting dockerd" >&2
  if command -v update-alternatives >/dev/null && [ -x /usr/sbin/iptables-legacy ]; then
    # Sandboxed kernels often lack nf_tables; the legacy backend works where it does not.
    iptables -L >/dev/null 2>&1 || update-alternatives --set iptables /usr/sbin/iptables-legacy >/dev/null 2>&1 || true
  fi
  nohup dockerd >"$state/dockerd.log" 2>&1 &
  echo $! >"$state/dockerd.pid"
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { echo "prereqs: dockerd did not start; log:" >&2; tail -n 40 "$state/dockerd.log" >&2; exit 1; }
fi

# The test image: busybox-static on scratch, since images cannot be pulled here.
if ! docker image inspect lockbox-test/busybox:latest >/dev/null 2>&1; then
  ctx=$(mktemp -d)
  bb=$(command -v busybox || echo /bin/busybox)
  cp "$bb" "$ctx/busybox"
  cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
CMD ["/bin/sh"]
DOCKERFILE
  DOCKER_BUILDKIT=0 docker build -q -t lockbox-test/busybox:latest "$ctx" >/dev/null
  rm -rf "$ctx"
fi
echo "prereqs: ready (docker $(docker version --format '{{.Server.Version}}'))" >&2
