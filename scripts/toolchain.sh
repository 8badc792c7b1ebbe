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
# promtool validates ops/alerts.yml in the tests (Debian's prometheus package ships it).
if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing promtool (Debian package prometheus)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >/dev/null \
      || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >/dev/null; }
  else
    echo "error: promtool not found. Install it (Debian: sudo apt-get install prometheus)." >&2; exit 1
  fi
fi
# PgBouncer: the origin suites run a second time through it (transaction pooling).
if ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing PgBouncer (Debian package pgbouncer)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends pgbouncer >/dev/null \
      || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends pgbouncer >/dev/null; }
  else
    echo "error: pgbouncer not found. Install it (Debian: sudo apt-get install pgbouncer)." >&2; exit 1
  fi
fi
