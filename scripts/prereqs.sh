#!/usr/bin/env bash
# Installs and starts what the test suite needs on a Debian 12 machine: today's Docker
# (Engine and CLI 26.1 and buildx from Debian 13), Compose v1 (docker-compose 1.29, bookworm)
# and Compose v2 (the CLI plugin from Debian 13's docker-compose package), busybox-static,
# iproute2, python3-venv, and the FROM-scratch test image. Prints the versions it set up.
# Idempotent: what is present is left alone. Engines this script starts are recorded in
# $LOCKBOX_PREREQ_STATE so scripts/stop-prereqs.sh can stop exactly those.
set -euo pipefail

state=${LOCKBOX_PREREQ_STATE:-/tmp/lockbox-prereqs}
mkdir -p -m 0700 "$state"
export DEBIAN_FRONTEND=noninteractive

plugins=/usr/libexec/docker/cli-plugins
trixie_sources=/etc/apt/sources.list.d/lockbox-trixie.sources
trixie_pin=/etc/apt/preferences.d/lockbox-trixie
# Only these come from Debian 13; everything else (containerd, runc, libc, Compose v1) stays
# bookworm's. docker-compose is held at bookworm so /usr/bin/docker-compose remains v1.
trixie_packages=(docker.io docker-cli docker-buildx)

# The Debian mirror the machine already uses for bookworm (deb822 or one-line sources).
debian_mirror() {
  local files=()
  [ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && [ "$f" != "$trixie_sources" ] && files+=("$f")
  done
  [ ${#files[@]} -gt 0 ] && awk '
    /^[[:space:]]*deb[[:space:]]/ {
      for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($(i+1) == "bookworm") { print $i; exit } break }
    }
    /^URIs:/ { uri = $2 }
    /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm" && uri != "") { print uri; exit } }
    /^[[:space:]]*$/ { uri = "" }
  ' "${files[@]}" | head -n 1
}

engine_major() {
  command -v dockerd >/dev/null 2>&1 || { echo 0; return; }
  local v
  v=$(dockerd --version 2>/dev/null | sed -n 's/^Docker version \([0-9]*\)\..*/\1/p' | head -n 1)
  echo "${v:-0}"
}

ensure_trixie_source() {
  [ -f "$trixie_sources" ] && [ -f "$trixie_pin" ] && return 1
  local mirror
  mirror=$(debian_mirror)
  mirror=${mirror:-http://deb.debian.org/debian}
  echo "prereqs: adding Debian 13 (trixie) from $mirror, pinned to ${trixie_packages[*]}" >&2
  install -m 0644 /dev/stdin "$trixie_sources" <<EOF
# Added by lockbox's scripts/prereqs.sh: today's Docker (Engine 26) from Debian 13.
Types: deb
URIs: $mirror
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # Priority 1: nothing from trixie is chosen unless named below; the named packages win.
  install -m 0644 /dev/stdin "$trixie_pin" <<EOF
Package: *
Pin: release n=trixie
Pin-Priority: 1

Package: ${trixie_packages[*]}
Pin: release n=trixie
Pin-Priority: 990

Package: docker-compose
Pin: release n=trixie
Pin-Priority: -1
EOF
  return 0
}

updated=0
apt_update() {
  [ "$updated" = 1 ] && return
  apt-get update -qq
  updated=1
}

if ensure_trixie_source; then apt_update; fi

need=()
[ "$(engine_major)" -ge 26 ] || need+=("${trixie_packages[@]}")
[ -x /usr/bin/docker ] || need+=(docker-cli)
[ -x "$plugins/docker-buildx" ] || need+=(docker-buildx)
[ -x /usr/bin/docker-compose ] || need+=(docker-compose)
[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || need+=(busybox-static)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
  echo "prereqs: installing ${need[*]}" >&2
  apt_update
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Compose v2 as the CLI plugin, unpacked from trixie's package so that installing it does not
# replace bookworm's Compose v1 (both are the package docker-compose).
if ! [ -x "$plugins/docker-compose" ] || ! "$plugins/docker-compose" version >/dev/null 2>&1; then
  echo "prereqs: unpacking Compose v2 into $plugins" >&2
  apt_update
  work=$(mktemp -d)
  chmod 0700 "$work"
  (cd "$work" && apt-get download -qq -o APT::Sandbox::User=root docker-compose/trixie >/dev/null)
  dpkg-deb -x "$work"/docker-compose_*.deb "$work/x"
  install -d -m 0755 "$plugins"
  install -m 0755 "$work/x/usr/libexec/docker/cli-plugins/docker-compose" "$plugins/docker-compose"
  rm -rf "$work"
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
  chmod 0700 "$ctx"
  bb=$(command -v busybox || echo /bin/busybox)
  cp "$bb" "$ctx/busybox"
  cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
CMD ["/bin/sh"]
DOCKERFILE
  docker build -q -t lockbox-test/busybox:latest "$ctx" >/dev/null
  rm -rf "$ctx"
fi

first_line() { "$@" 2>&1 | head -n 1; }
cat <<EOF
== Docker versions under test
engine (dockerd):               $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')
docker CLI /usr/local/bin:      $(if [ -x /usr/local/bin/docker ]; then /usr/local/bin/docker version --format '{{.Client.Version}}'; else echo absent; fi)
docker CLI /usr/bin:            $(/usr/bin/docker version --format '{{.Client.Version}}')
compose v1 (docker-compose):    $(first_line /usr/bin/docker-compose version --short)
compose v2 (docker compose):    $(docker compose version --short)
buildx (docker buildx):         $(first_line docker buildx version)
EOF
