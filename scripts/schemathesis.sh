#!/usr/bin/env bash
# `make schemathesis`: Schemathesis (PyPI, pinned in ops/schemathesis-requirements.txt) against a
# real origin with the checked-in openapi.json: every operation, every check, bounded in time.
# The origin runs on a fresh, seeded database and its own Redis namespace, signed in as an admin
# (so the admin operations are exercised too), with the rate-limit tiers lifted (the tool is one
# client sending thousands of requests; 429 is documented, but refusals would hide the API).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
: "${SCHEMATHESIS_SECS:=600}" "${SCHEMATHESIS_EXAMPLES:=100}"

venv=.local/venv
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$(sed 's/.*==//' ops/schemathesis-requirements.txt)"; then
  command -v python3 >/dev/null || { echo "error: python3 not found (Debian: apt-get install python3-venv)" >&2; exit 1; }
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r ops/schemathesis-requirements.txt
fi

# shellcheck source=scripts/services.sh
source scripts/services.sh
cargo build -q -p origin
db=nexnum_schemathesis
export DATABASE_URL="${PG_ADMIN_URL%/*}/$db"
psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
target/debug/origin seed --scale small >/dev/null
password="schemathesis admin password"
ADMIN_PASSWORD="$password" target/debug/origin admin create --email st-admin@example.com >/dev/null
# Funds, so purchases reach their real outcomes (bought, out of stock) and not only 402.
psql -q "$DATABASE_URL" -c "UPDATE users SET balance_cents = 100000000 WHERE email = 'st-admin@example.com'"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ops=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ORIGIN_ADDR="127.0.0.1:$port" METRICS_ADDR="127.0.0.1:$ops" REDIS_KEY_PREFIX="st:$$:" \
  RATE_LIMITS="api=100000000/60000,auth=100000000/60000,admin=100000000/60000,ops=100000000/60000" \
  LOGIN_MAX_FAILURES=100000000 RUST_LOG=warn target/debug/origin serve &
origin=$!
trap 'kill $origin 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
login() {
  curl -sf "http://127.0.0.1:$port/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"st-admin@example.com\",\"password\":\"$password\"}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}

mkdir -p .local/schemathesis
st() {
  "$venv/bin/schemathesis" --config-file ops/schemathesis.toml run openapi.json \
    --url "http://127.0.0.1:$port" --max-examples "$SCHEMATHESIS_EXAMPLES" \
    --seed 1 --report junit --report-dir .local/schemathesis "$@"
}
# Every operation but the two that end the session the run is signed in with; then each of those,
# signed in afresh.
run() {
  timeout "$SCHEMATHESIS_SECS" bash -c "$(declare -f st); venv=$venv port=$port \
    SCHEMATHESIS_EXAMPLES=$SCHEMATHESIS_EXAMPLES st $1 --header 'Authorization: Bearer $(login)'"
}
run "--exclude-path-regex '^/v1/auth/logout'"
run "--include-path /v1/auth/logout"
run "--include-path /v1/auth/logout-all"
