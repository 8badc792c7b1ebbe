#!/usr/bin/env bash
# Builds the edge worker to edge/build/ with worker-build, offline: wasm-bindgen, esbuild and
# wasm-opt come from this machine (cargo install / node_modules) instead of being downloaded.
# Run scripts/edge-tools.sh first (make does).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$(command -v wasm-bindgen)}"
export ESBUILD_BIN="${ESBUILD_BIN:-$root/node_modules/.bin/esbuild}"
export WASM_OPT_BIN="${WASM_OPT_BIN:-$root/node_modules/.bin/wasm-opt}"
for tool in "$WASM_BINDGEN_BIN" "$ESBUILD_BIN" "$WASM_OPT_BIN"; do
  [ -x "$tool" ] || { echo "error: $tool missing; run scripts/edge-tools.sh (or make setup)" >&2; exit 1; }
done
cd "$root/edge"
# Unminified, so scripts/lean-entry.mjs can find the shim's parts; it minifies the result.
NO_MINIFY=1 worker-build --profile edge "$@"
node "$root/scripts/lean-entry.mjs" "$root/edge/build/index.js" "$ESBUILD_BIN"
