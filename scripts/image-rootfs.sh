#!/usr/bin/env bash
# Assembles the origin image's root file system in target/image-root: the release binary, the
# shared libraries `ldd` says it needs, the private CA bundles, a passwd entry for the non-root
# user. This folder *is* the image (Containerfile: FROM scratch, COPY . /): `make image` hands it
# to podman, and `make image-test` runs the binary inside it with chroot, as the image's user.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# The commit the binary reports (Sentry's release, origin_build_info): from git, or the caller.
export NEXNUM_COMMIT="${NEXNUM_COMMIT:-$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}"
cargo build --release -p origin
rootfs="$root/target/image-root"
rm -rf "$rootfs"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
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
echo 'nonroot:x:65532:' > "$rootfs/etc/group"
echo "image root: $rootfs ($(du -sh "$rootfs" | cut -f1))"
