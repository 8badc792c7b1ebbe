#!/usr/bin/env bash
# Builds the origin's container image (Containerfile) with podman from the root file system
# scripts/image-rootfs.sh assembles (`FROM scratch`: nothing is pulled).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
command -v podman >/dev/null 2>&1 || { echo "error: podman not found (Debian: apt-get install podman)" >&2; exit 1; }
scripts/image-rootfs.sh
podman build --format docker -f Containerfile -t "${IMAGE:-nexnum-origin:dev}" target/image-root
podman image inspect "${IMAGE:-nexnum-origin:dev}" --format '{{.Size}}' | awk '{printf "image size: %.1f MiB\n", $1/1048576}'
