/**
 * The settings the origin's task is given, checked against the list the origin itself reads
 * (`origin-settings.json` is `origin env --json`, kept equal to the binary by a test): a name the
 * origin does not read, a secret passed in the open, or a plain value passed as a secret stops
 * synthesis. docs/deploy.md's settings table is checked against the synthesized template too.
 */
import * as fs from "node:fs";
import * as path from "node:path";

import type { Stage } from "./stages";

interface OriginSetting {
  name: string;
  default: string | null;
  required: boolean;
  secret: boolean;
}

const LIST: OriginSetting[] = JSON.parse(
  fs.readFileSync(path.join(__dirname, "..", "..", "origin-settings.json"), "utf8"),
);

function known(name: string): OriginSetting {
  const found = LIST.find((s) => s.name === name);
  if (!found) throw new Error(`${name}: the origin reads no such setting (origin-settings.json)`);
  return found;
}

/** The request deadline, from `shared::policy::budget` (the edge waits 3000 ms). */
export const REQUEST_TIMEOUT_MS = 2500;
/** The operator listener: `/healthz` (the load balancer and the container health check), `/readyz`, `/metrics`. */
export const OPS_PORT = 9091;
export const HTTP_PORT = 8080;
/** How long in-flight requests may finish after SIGTERM; ECS's stopTimeout is 30 s. */
export const SHUTDOWN_GRACE_SECS = 20;
export const STOP_TIMEOUT_SECS = 30;

/** The origin's plain environment in this stage. */
export function plainSettings(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {
    ORIGIN_ENV: stage.name,
    ORIGIN_ADDR: `0.0.0.0:${HTTP_PORT}`,
    METRICS_ADDR: `0.0.0.0:${OPS_PORT}`,
    DB_MAX_CONNECTIONS: "10",
    DB_IDLE_TIMEOUT_SECS: "30",
    DB_CONNECT_TIMEOUT_SECS: "10",
    REDIS_TIMEOUT_MS: "50",
    // The serving user's Redis ACL allows only keys under this prefix (ops/redis/serving.acl).
    REDIS_KEY_PREFIX: "nexnum:",
    REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
    SHUTDOWN_GRACE_SECS: String(SHUTDOWN_GRACE_SECS),
    RUST_LOG: "info,sqlx::query=error,sqlx::postgres::notice=warn",
    CLOUDFLARE_ZONE_ID: stage.cloudflareZoneId,
    NEXT_REVALIDATE_URL: stage.nextRevalidateUrl,
    SYNC_INTERVAL_SECS: String(stage.syncIntervalSecs),
    CLOUDFLARE_PURGE_RATE: stage.cloudflarePurgeRate,
    NEXT_REVALIDATE_RATE: stage.nextRevalidateRate,
    // Behind the ALB every connection comes from one of its addresses: the per-peer cap is the
    // balancer's share, not a client's (docs/deploy.md, "Per-client limits").
    MAX_CONNECTIONS_PER_PEER: "0",
  };
  if (stage.pgbouncer) env.DB_POOLER = "pgbouncer-transaction";
  for (const [name, value] of Object.entries(env)) {
    const s = known(name);
    if (s.secret) throw new Error(`${name} carries a credential: pass it as a secret, not in the open`);
    if (value === "") throw new Error(`${name} is empty in ${stage.name}`);
  }
  return env;
}

/**
 * The settings the serving task reads from its Secrets Manager secret (one JSON key each). The
 * migration owner's URL is not among them: only the one-off migration task gets it.
 */
export const SERVING_SECRETS = [
  "DATABASE_URL",
  "REDIS_URL",
  "EDGE_SECRET",
  "SENTRY_DSN",
  "CLOUDFLARE_API_TOKEN",
  "NEXT_REVALIDATE_SECRET",
  "SYNC_PROVIDERS",
];

/** What the one-off migration task reads (`origin migrate`): the owner's URL only. */
export const MIGRATION_SECRETS = ["MIGRATE_DATABASE_URL"];

for (const name of [...SERVING_SECRETS, ...MIGRATION_SECRETS]) {
  if (!known(name).secret) throw new Error(`${name} is not a credential: pass it in the open`);
}
for (const s of LIST.filter((s) => s.required)) {
  if (!SERVING_SECRETS.includes(s.name) && !(s.name in plainSettings(stageForCheck()))) {
    throw new Error(`${s.name} is required by the origin and the task does not set it`);
  }
}

function stageForCheck(): Stage {
  return {
    name: "staging",
    cloudflareZoneId: "x",
    nextRevalidateUrl: "x",
    syncIntervalSecs: 1,
    cloudflarePurgeRate: "1/s",
    nextRevalidateRate: "1/s",
    pgbouncer: false,
  } as Stage;
}
