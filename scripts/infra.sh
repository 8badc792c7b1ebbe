#!/usr/bin/env bash
# The deployment as infrastructure code, checked offline (no AWS account, no network beyond the
# package registries):
#   scripts/infra.sh synth   the CDK app (ops/cdk) synthesized: both stages into ops/cdk/cdk.out,
#                            and production with PgBouncer into ops/cdk/cdk.out.pgbouncer;
#                            cdk-nag's AWS Solutions rules run at synthesis (a finding fails it)
#   scripts/infra.sh check   synth, then cfn-lint and checkov over every template, then
#                            `origin check --ecs-template` grades each stage's serving service
#                            against this machine's PostgreSQL and Redis
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/ops/cdk"
command -v npm >/dev/null || { echo "error: npm not found (Node.js 20: apt-get install nodejs npm)" >&2; exit 1; }
[ -x node_modules/.bin/cdk ] && cmp -s package-lock.json node_modules/.package-lock.json 2>/dev/null \
  || npm ci --no-audit --no-fund --silent
npx tsc -p tsconfig.json
export CDK_DISABLE_VERSION_CHECK=1 CDK_DISABLE_CLI_TELEMETRY=1
rm -rf cdk.out cdk.out.pgbouncer
npx cdk synth --quiet --no-notices --output cdk.out > cdk.out.log 2>&1 \
  || { cat cdk.out.log; echo "error: cdk synth failed (above)" >&2; exit 1; }
npx cdk synth --quiet --no-notices --output cdk.out.pgbouncer -c nexnum:production:pgbouncer=true \
  -c nexnum:staging:pgbouncer=true > cdk.out.log 2>&1 \
  || { cat cdk.out.log; echo "error: cdk synth (with PgBouncer) failed (above)" >&2; exit 1; }
rm -f cdk.out.log
echo "synthesized: $(ls cdk.out/*.template.json cdk.out.pgbouncer/*.template.json | tr '\n' ' ')"
[ "${1:-synth}" = check ] || exit 0

venv="$root/.local/venv-infra"
if ! "$venv/bin/pip" freeze 2>/dev/null | grep -qxF "$(grep ^cfn-lint "$root/ops/infra-requirements.txt")" \
   || ! "$venv/bin/pip" freeze 2>/dev/null | grep -qxF "$(grep ^checkov "$root/ops/infra-requirements.txt")"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$root/ops/infra-requirements.txt"
fi
templates=(cdk.out/*.template.json cdk.out.pgbouncer/*.template.json)
"$venv/bin/cfn-lint" --ignore-checks W3005 -- "${templates[@]}"
echo "cfn-lint: ${#templates[@]} templates, no finding"
for dir in cdk.out cdk.out.pgbouncer; do
  "$venv/bin/checkov" -d "$dir" --framework cloudformation --quiet --compact --skip-download \
    > "$dir.checkov" 2>&1 || { cat "$dir.checkov"; echo "error: checkov found problems in $dir" >&2; exit 1; }
  grep -E "Passed checks" "$dir.checkov" | sed "s|^|checkov $dir: |"
  rm -f "$dir.checkov"
done
cd "$root"
# shellcheck source=scripts/services.sh
source scripts/services.sh
cargo build -q -p origin
# Only the ECS rows count here: the live limits (max_connections, maxclients) are read from this
# machine's servers, through the administrative database (no schema needed).
for t in "${templates[@]}"; do
  out=$(DATABASE_URL="$PG_ADMIN_URL" target/debug/origin check --json --ecs-template "ops/cdk/$t" 2>/dev/null || true)
  python3 - "$t" "$out" <<'PY'
import json, sys
name, text = sys.argv[1], sys.argv[2]
rows = [r for r in json.loads(text)["checks"] if r["check"].startswith("ecs ")]
bad = [r for r in rows if r["status"] != "PASS"]
for r in bad:
    print(f"  {r['check']}: {r['status']} {r['value']} ({r['note']})")
print(f"origin check --ecs-template {name}: {len(rows) - len(bad)} of {len(rows)} rows PASS")
sys.exit(1 if bad or not rows else 0)
PY
done
