#!/usr/bin/env bash
# Makes a Docker engine and the local test image available on this machine.
# Idempotent: installs Debian's docker.io and busybox-static when absent,
# starts dockerd when it does not answer, and builds lattice-test/busybox:latest
# with `docker import` (no registry is reachable, so nothing can be pulled).
set -euo pipefail

log() { printf '[setup-docker] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need_pkgs=()
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
[ -x /bin/busybox ] || need_pkgs+=(busybox-static)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  as_root sh -c 'nohup dockerd >/var/log/lattice-dockerd.log 2>&1 &'
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { log "dockerd did not answer within 60 s; see /var/log/lattice-dockerd.log"; exit 1; }
fi

if ! docker image inspect lattice-test/busybox:latest >/dev/null 2>&1; then
  log "building lattice-test/busybox:latest from /bin/busybox"
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  mkdir -p "$root/bin" "$root/www" "$root/tmp"
  cp /bin/busybox "$root/bin/busybox"
  for tool in sh httpd echo cat sleep ls env true false; do ln -s busybox "$root/bin/$tool"; done
  echo 'hello from lattice' > "$root/www/index.html"
  tar -C "$root" -c . | docker import -c 'ENV PATH=/bin' - lattice-test/busybox:latest >/dev/null
fi
log "docker ready: $(docker version --format '{{.Server.Version}}')"
