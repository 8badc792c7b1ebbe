#!/usr/bin/env bash
# Installs what building and running the edge worker needs, offline-safe and idempotent:
#   node_modules (wrangler, miniflare, binaryen's wasm-opt, esbuild) from package-lock.json,
#   worker-build 0.8.7 and the wasm-bindgen-cli matching Cargo.lock's wasm-bindgen.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || {
  echo "error: node and npm are needed for the edge (wrangler, workerd). Install Node.js 20+ (Debian: apt-get install nodejs npm)." >&2; exit 1; }
if [ ! -x node_modules/.bin/wrangler ] || [ ! -x node_modules/.bin/wasm-opt ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
want_wb=0.8.7
if ! worker-build --version 2>/dev/null | grep -q "$want_wb"; then
  cargo install worker-build --version "$want_wb" --locked
fi
want_bg=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -q " $want_bg\$\| $want_bg "; then
  # Its own lockfile may pin a crate the registry no longer serves; fall back to fresh resolution.
  cargo install wasm-bindgen-cli --version "$want_bg" --locked || cargo install wasm-bindgen-cli --version "$want_bg"
fi
