#!/usr/bin/env bash
# Makes sure the Rust toolchain pieces the build needs are here; idempotent.
set -euo pipefail
command -v cargo >/dev/null 2>&1 || { echo "error: cargo not found. Install Rust with rustup (https://rustup.rs)." >&2; exit 1; }
if command -v rustup >/dev/null 2>&1; then
  rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown \
    || rustup target add wasm32-unknown-unknown
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
  done
else
  echo "warning: rustup not found; assuming the wasm32-unknown-unknown target is installed" >&2
fi
# Installs Debian package $2 when command $1 is missing (as root), or says what to install.
need() {
  command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing $1 (Debian package $2)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$2" >/dev/null \
      || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$2" >/dev/null; }
  else
    echo "error: $1 not found. Install it (Debian: sudo apt-get install $2)." >&2; exit 1
  fi
}
# promtool validates ops/alerts.yml in the tests (Debian's prometheus package ships it).
need promtool prometheus
# PgBouncer: the origin suites run a second time through it (transaction pooling).
need pgbouncer pgbouncer
# HAProxy: the fleet scenario (make fleet) balances the origins with it.
need haproxy haproxy
# podman: `make image` builds the origin's container image with it.
need podman podman
# redis-server and redis-cli: the Redis Cluster the suites run against (and the failover tests)
# is made with `redis-cli --cluster create`.
need redis-server redis-server
need redis-cli redis-tools
# Chromium: the browser test (make browser) drives Debian's build with playwright-core (browser
# downloads are not possible here).
need chromium chromium
