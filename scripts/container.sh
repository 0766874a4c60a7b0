#!/usr/bin/env bash
# The classroom container (Dockerfile): build it, start it, stop it. podman or docker.
#
#   scripts/container.sh build       build the image bigmodel-lab:latest (minutes, once);
#                                    more arguments go to `podman|docker build` (--no-cache)
#   scripts/container.sh run         start it on http://127.0.0.1:8888 and print the URL
#                                    with its token; students' work in the volume
#                                    bigmodel-lab-work (mounted at /lab); HF_HUB_OFFLINE=1
#                                    is passed on (no hub look-up)
#   scripts/container.sh url|logs|stop|shell
#   scripts/container.sh build-base  a Debian bookworm base image made with debootstrap from
#                                    Debian's packages, for machines that reach no container
#                                    registry (build does this by itself when needed)
#
# Settings (environment): ENGINE (podman|docker; default: whichever is installed, podman
# first), IMAGE (bigmodel-lab:latest), NAME (bigmodel-lab), PORT (8888), VOLUME
# (bigmodel-lab-work), JUPYTER_TOKEN (default: a new random one), BASE (the base image;
# default debian:bookworm-slim, or the local debootstrap one when no registry answers),
# TORCH_WHEELS (a folder holding the torch CPU wheel, used when PyTorch's CPU index cannot be
# reached), CA_BUNDLE (a PEM file HTTPS trusts during the build, e.g. a proxy's CA; default:
# pip's configured `global.cert`), BIGMODEL_LAB_PROFILE (cpu).
set -euo pipefail
cd "$(dirname "$0")/.."

ENGINE="${ENGINE:-$(command -v podman >/dev/null && echo podman || echo docker)}"
IMAGE="${IMAGE:-bigmodel-lab:latest}"
NAME="${NAME:-bigmodel-lab}"
PORT="${PORT:-8888}"
VOLUME="${VOLUME:-bigmodel-lab-work}"
LOCAL_BASE="localhost/bigmodel-lab-base:bookworm"
ROOTFS="${ROOTFS:-build/container/rootfs}"

say() { echo "==> $*" >&2; }

reachable() {  # reachable HOST: an HTTPS connection within 5 s
  timeout 5 bash -c "exec 3<>/dev/tcp/$1/443" 2>/dev/null
}

build_base() {
  command -v debootstrap >/dev/null || {
    echo "debootstrap is missing: apt-get install -y debootstrap (needs root)" >&2; exit 1; }
  say "Debian bookworm (minbase) from deb.debian.org into $ROOTFS"
  rm -rf "$ROOTFS" && mkdir -p "$(dirname "$ROOTFS")"
  debootstrap --variant=minbase bookworm "$ROOTFS" http://deb.debian.org/debian
  cat > "$ROOTFS/etc/apt/sources.list" <<'EOF'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
  rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
  say "Importing it as $LOCAL_BASE"
  tar -C "$ROOTFS" -c . | "$ENGINE" import --change 'CMD ["/bin/bash"]' - "$LOCAL_BASE"
  rm -rf "$ROOTFS"
}

probe() {  # probe IMAGE: can this engine start a container at all? Else say the fix.
  local err
  err="$("$ENGINE" run --rm "$1" true 2>&1)" && return 0
  echo "$ENGINE cannot start a container here: $err" >&2
  case "$err" in
    *"hybrid mode"*)
      echo "Fix: crun refuses this machine's cgroups (v1 with a controller on cgroup2); use" \
           "runc: apt-get install runc, then in /etc/containers/containers.conf:" \
           "[engine] runtime = \"runc\"" >&2 ;;
    *setrlimit*|*rlimit*)
      echo "Fix: this machine does not let containers raise their open-files or process" \
           "limits; in /etc/containers/containers.conf: [containers] default_ulimits =" \
           "[\"nofile=$(ulimit -Hn):$(ulimit -Hn)\", \"nproc=32768:32768\"]" >&2 ;;
  esac
  exit 1
}

build() {
  local base="${BASE:-}" args=()
  if [[ -z "$base" ]]; then
    if reachable registry-1.docker.io; then
      base=debian:bookworm-slim
    else
      say "No container registry reachable: the base image is made from Debian's packages"
      "$ENGINE" image exists "$LOCAL_BASE" 2>/dev/null || build_base
      base="$LOCAL_BASE"
    fi
  fi
  [[ "$ENGINE" != podman ]] || ! "$ENGINE" image exists "$base" || probe "$base"
  args+=(--build-arg "BASE=$base")
  local wheels="${TORCH_WHEELS:-}"
  if [[ -z "$wheels" ]] && ! reachable download.pytorch.org; then
    wheels=/opt/wheels  # a local wheel folder, if this machine has one
    [[ -n "$(ls "$wheels"/torch-*+cpu-*.whl 2>/dev/null)" ]] || {
      echo "PyTorch's CPU index cannot be reached. Fix: put the torch CPU wheel pinned in" \
           "requirements/torch-cpu.txt in a folder and run TORCH_WHEELS=/that/folder $0 build" >&2
      exit 1; }
  fi
  if [[ -n "$wheels" ]]; then
    [[ "$ENGINE" == podman ]] || {
      echo "TORCH_WHEELS needs podman (docker build cannot mount a folder)" >&2; exit 1; }
    say "torch from the wheels in $wheels"
    args+=(--volume "$(cd "$wheels" && pwd):/wheels:ro" --build-arg TORCH_WHEELS=/wheels)
  fi
  local ca="${CA_BUNDLE:-${PIP_CERT:-}}"
  [[ -n "$ca" ]] || ca="$(python3 -m pip config list 2>/dev/null \
    | sed -n "s/^[^=]*\.cert='\(.*\)'$/\1/p" | head -1)"
  if [[ -n "$ca" ]]; then
    [[ "$ENGINE" == podman ]] || {
      echo "CA_BUNDLE needs podman (docker build cannot mount a file)" >&2; exit 1; }
    say "HTTPS during the build trusts $ca (pip's configured certificate bundle)"
    args+=(--volume "$(realpath "$ca"):/run/ca-bundle.crt:ro" --build-arg CA_BUNDLE=/run/ca-bundle.crt)
  fi
  say "Building $IMAGE with $ENGINE from $base"
  "$ENGINE" build "${args[@]}" "$@" -t "$IMAGE" -f Dockerfile .
  "$ENGINE" images "$IMAGE"
}

url() {
  local token
  token="$("$ENGINE" exec "$NAME" printenv JUPYTER_TOKEN)"
  echo "http://127.0.0.1:$PORT/lab/tree/notebooks/00_welcome.ipynb?token=$token"
}

run() {
  "$ENGINE" image exists "$IMAGE" 2>/dev/null || "$ENGINE" image inspect "$IMAGE" >/dev/null || {
    echo "No image $IMAGE: run $0 build first" >&2; exit 1; }
  if "$ENGINE" container inspect "$NAME" >/dev/null 2>&1; then
    echo "A container $NAME exists already: $0 url shows its address, $0 stop removes it" >&2
    exit 1
  fi
  local token="${JUPYTER_TOKEN:-$(python3 -c 'import secrets; print(secrets.token_hex(24))')}"
  local env=(-e JUPYTER_TOKEN="$token" -e BIGMODEL_LAB_PROFILE="${BIGMODEL_LAB_PROFILE:-cpu}")
  [[ -z "${HF_HUB_OFFLINE:-}" ]] || env+=(-e HF_HUB_OFFLINE="$HF_HUB_OFFLINE")
  say "Starting $NAME from $IMAGE on 127.0.0.1:$PORT (work in the volume $VOLUME, at /lab)"
  "$ENGINE" run -d --name "$NAME" -p "127.0.0.1:$PORT:8888" -v "$VOLUME:/lab" "${env[@]}" \
    "$IMAGE" >/dev/null
  for _ in $(seq 120); do
    if python3 - "$PORT" "$token" <<'EOF' 2>/dev/null; then
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/api/status?token={sys.argv[2]}", timeout=2)
EOF
      say "Ready. Open: http://127.0.0.1:$PORT/lab/tree/notebooks/00_welcome.ipynb?token=$token"
      say "(again: $0 url; stop: $0 stop; the volume $VOLUME keeps the work)"
      return
    fi
    sleep 1
  done
  "$ENGINE" logs "$NAME" | tail -20 >&2
  echo "The lab did not answer within 120 s (log above)" >&2
  exit 1
}

case "${1:-}" in
  build-base) build_base ;;
  build) shift; build "$@" ;;
  run) run ;;
  url) url ;;
  logs) "$ENGINE" logs "$NAME" ;;
  stop) "$ENGINE" rm -f "$NAME" >/dev/null && say "Stopped $NAME (the volume $VOLUME stays)" ;;
  shell) "$ENGINE" exec -it "$NAME" bash ;;
  *) awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"; exit 2 ;;
esac
