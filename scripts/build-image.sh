#!/usr/bin/env bash
# Builds the origin's container image (Containerfile) with podman: a release build, then a root
# file system of the binary and the shared libraries `ldd` says it needs, then `FROM scratch`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
command -v podman >/dev/null 2>&1 || { echo "error: podman not found (Debian: apt-get install podman)" >&2; exit 1; }
cargo build --release -p origin
rootfs="$root/target/image-root"
rm -rf "$rootfs"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/tmp"
cp target/release/origin "$rootfs/usr/local/bin/origin"
strip "$rootfs/usr/local/bin/origin" 2>/dev/null || true
# The dynamic loader and every library the binary links, at the paths it expects.
ldd target/release/origin | grep -o '/[^ ]*' | sort -u | while read -r lib; do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done
# Private CA bundles (RDS's, a private Redis CA) for sslrootcert= and REDIS_CA_FILE; see ops/ca/.
mkdir -p "$rootfs/etc/nexnum/ca"
cp ops/ca/*.pem "$rootfs/etc/nexnum/ca/" 2>/dev/null || true
# A passwd entry for the non-root user, so tools that look it up find it.
mkdir -p "$rootfs/etc"
echo 'nonroot:x:65532:65532:nonroot:/tmp:/sbin/nologin' > "$rootfs/etc/passwd"
podman build --format docker -f Containerfile -t "${IMAGE:-nexnum-origin:dev}" "$rootfs"
podman image inspect "${IMAGE:-nexnum-origin:dev}" --format '{{.Size}}' | awk '{printf "image size: %.1f MiB\n", $1/1048576}'
