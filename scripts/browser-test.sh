#!/usr/bin/env bash
# `make browser`: the Next.js example (examples/nextjs) in real headless Chromium against the real
# origin and the edge under `wrangler dev`. Starts everything on spare loopback ports, runs
# examples/nextjs/e2e/browser.test.mjs, stops everything. Artifacts (screenshots, logs) go to
# .local/browser/. Bounded: BROWSER_TEST_SECS (default 600) for the whole run. BROWSER_TEST_ONLY
# (a pattern) runs only the tests whose names match.
set -euo pipefail
# Nothing leaves loopback: no usage reports from Next.js or wrangler.
export NEXT_TELEMETRY_DISABLED=1 WRANGLER_SEND_METRICS=false
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
command -v chromium >/dev/null || [ -x /usr/bin/chromium ] \
  || { echo "error: chromium not found (Debian: apt-get install chromium; scripts/toolchain.sh does)" >&2; exit 1; }
art="$root/.local/browser"
rm -rf "$art"; mkdir -p "$art"

# shellcheck source=scripts/services.sh
source scripts/services.sh
cargo build -q -p origin
(cd clients/ts && npm ci --no-audit --no-fund --silent)
(cd examples/nextjs && npm ci --no-audit --no-fund --silent && npx next build >"$art/next-build.log" 2>&1) \
  || { echo "error: next build failed; see $art/next-build.log" >&2; exit 1; }

spare() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
origin_port=$(spare); ops_port=$(spare); edge_port=$(spare); web_port=$(spare)
secret="browser-test-edge-secret-$$"
# The origin purges the example's data cache through its revalidation route with this secret.
revalidate_secret="browser-test-revalidate-$$-$(date +%s%N)"
# The Next.js server's key: it is a trusted client of the edge (its own budget).
client_key="browser-test-nextjs-key-$$-$(date +%s%N)"
db=nexnum_browser
export DATABASE_URL="${PG_ADMIN_URL%/*}/$db"
psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
target/debug/origin seed --scale small >/dev/null
admin_password="browser admin password"
ADMIN_PASSWORD="$admin_password" target/debug/origin admin create --email admin@example.com >/dev/null

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
wait_for() { for _ in $(seq 600); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; echo "error: $1 never answered" >&2; return 1; }

ORIGIN_ADDR="127.0.0.1:$origin_port" METRICS_ADDR="127.0.0.1:$ops_port" REDIS_KEY_PREFIX="browser:$$:" \
  EDGE_SECRET="$secret" LOGIN_MAX_FAILURES=3 RUST_LOG=warn \
  EDGE_PURGE_URL="http://127.0.0.1:$edge_port/__edge/purge" \
  NEXT_REVALIDATE_URL="http://127.0.0.1:$web_port/api/revalidate" NEXT_REVALIDATE_SECRET="$revalidate_secret" \
  target/debug/origin serve >"$art/origin.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$origin_port/healthz"

# The user the page signs in as, funded through the admin API.
json() { python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }
user_password="browser user password"
user_id=$(curl -sf "http://127.0.0.1:$origin_port/v1/auth/register" -H 'content-type: application/json' \
  -d "{\"email\":\"shopper@example.com\",\"password\":\"$user_password\"}" | json id)
admin_token=$(curl -sf "http://127.0.0.1:$origin_port/v1/auth/login" -H 'content-type: application/json' \
  -d "{\"email\":\"admin@example.com\",\"password\":\"$admin_password\"}" | json token)
curl -sf -o /dev/null "http://127.0.0.1:$origin_port/v1/admin/users/$user_id/credit" \
  -H "authorization: Bearer $admin_token" -H 'content-type: application/json' -d '{"amount_cents":100000}'

# A fresh edge cache each run (wrangler dev keeps its Cache API state between runs otherwise: an
# entry hours old would be served with an Age past the browser's max-age).
WRANGLER_SEND_METRICS=false npx wrangler dev --ip 127.0.0.1 --port "$edge_port" --persist-to "$art/wrangler-state" \
  --var "ORIGIN_URL:http://127.0.0.1:$origin_port" --var "EDGE_SECRET:$secret" \
  --var "CORS_ALLOWED_ORIGINS:http://localhost:$web_port" --var "TRUSTED_CLIENTS:nextjs=$client_key" \
  >"$art/wrangler.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$edge_port/v1/catalog/providers"

(cd examples/nextjs && EDGE_URL="http://localhost:$edge_port" PORT="$web_port" EDGE_CLIENT_KEY="$client_key" \
  REVALIDATE_SECRET="$revalidate_secret" \
  exec npx next start --port "$web_port" --hostname 127.0.0.1 >"$art/next.log" 2>&1) &
pids+=($!)
wait_for "http://127.0.0.1:$web_port/"

cd examples/nextjs
WEB_URL="http://localhost:$web_port" EDGE_URL="http://localhost:$edge_port" \
  ORIGIN_URL="http://127.0.0.1:$origin_port" USER_EMAIL=shopper@example.com \
  USER_PASSWORD="$user_password" ARTIFACTS="$art" EDGE_CLIENT_KEY="$client_key" \
  ADMIN_EMAIL=admin@example.com ADMIN_PASSWORD="$admin_password" \
  timeout "${BROWSER_TEST_SECS:-600}" node --test --test-reporter=spec \
  ${BROWSER_TEST_ONLY:+--test-name-pattern="$BROWSER_TEST_ONLY"} e2e/browser.test.mjs
echo "screenshots: $art/example.png, $art/rate-limited.png"
