/**
 * The two deployments, staging and production: one list of what differs between them. Every
 * value with a placeholder (`REPLACE`, `123456789012`, `example.com`) is overridden at deploy time
 * with `-c nexnum:<stage>:<key>=<value>` (or in cdk.context.json); docs/deploy.md lists them.
 * Synthesis needs no AWS account: nothing is looked up.
 */
import type { Construct } from "constructs";

export type StageName = "staging" | "production";

export interface Stage {
  readonly name: StageName;
  /** CloudFormation stack name. */
  readonly stackName: string;
  /** The AWS region (concrete: the load balancer's log delivery is per region). No account is
   *  named: the stack deploys to whichever account the credentials belong to. */
  readonly region: string;
  /** Fargate size: 0.5 vCPU and 1 GiB (the origin's steady RSS is ~27 MiB; see docs/deploy.md). */
  readonly cpu: number;
  readonly memoryMiB: number;
  /** The scaling target's bounds (`origin check --ecs-template` grades MaxCapacity's pools). */
  readonly minTasks: number;
  readonly maxTasks: number;
  /** ECR repository name and the image tag of this release. */
  readonly repository: string;
  readonly imageTag: string;
  /** ACM certificate of the origin's public name (the edge's ORIGIN_URL). */
  readonly certificateArn: string;
  /** An existing VPC, or none: one is made (2 AZs, one NAT gateway). */
  readonly vpc?: ImportedVpc;
  /** The security groups of the managed data stores: the tasks are let in on their ports. */
  readonly databaseSecurityGroupId: string;
  readonly redisSecurityGroupId: string;
  readonly databasePort: number;
  readonly redisPort: number;
  /** PgBouncer in transaction mode between the tasks and PostgreSQL (required past 50 tasks). */
  readonly pgbouncer: boolean;
  /** The database PgBouncer pools (host of the RDS/Aurora writer endpoint). */
  readonly databaseHost: string;
  /** Non-secret settings that differ per stage. */
  readonly cloudflareZoneId: string;
  readonly nextRevalidateUrl: string;
  readonly syncIntervalSecs: number;
  /**
   * The purge senders' budgets (`N/s`, `N/min`): Cloudflare's is per account across its zones and
   * tokens (Free 5/min, Pro 5/s, Business 10/s, Enterprise 50/s), so the stages share it.
   */
  readonly cloudflarePurgeRate: string;
  readonly nextRevalidateRate: string;
  /** Who is told when an alert fires (an SNS e-mail subscription). */
  readonly alertEmail: string;
  /** Days the origin's logs are kept. */
  readonly logRetentionDays: number;
}

export interface ImportedVpc {
  readonly vpcId: string;
  readonly availabilityZones: string[];
  readonly publicSubnetIds: string[];
  readonly privateSubnetIds: string[];
}

const DEFAULTS: Record<StageName, Stage> = {
  staging: {
    name: "staging",
    stackName: "NexnumStaging",
    region: "eu-west-1",
    cpu: 512,
    memoryMiB: 1024,
    minTasks: 1,
    maxTasks: 3,
    repository: "nexnum-origin",
    imageTag: "REPLACE_WITH_RELEASE_TAG",
    certificateArn: "arn:aws:acm:eu-west-1:123456789012:certificate/REPLACE-staging",
    databaseSecurityGroupId: "sg-0a1b2c3d4e5f60001",
    redisSecurityGroupId: "sg-0a1b2c3d4e5f60002",
    databasePort: 5432,
    redisPort: 6379,
    pgbouncer: false,
    databaseHost: "nexnum-staging.cluster-REPLACE.eu-west-1.rds.amazonaws.com",
    cloudflareZoneId: "0123456789abcdef0123456789abcdef",
    nextRevalidateUrl: "https://staging.example.com/api/revalidate",
    syncIntervalSecs: 300,
    // A Pro account's 5 calls a second, shared: 1 for staging, 4 for production.
    cloudflarePurgeRate: "1/s",
    nextRevalidateRate: "5/s",
    alertEmail: "oncall-staging@example.com",
    logRetentionDays: 30,
  },
  production: {
    name: "production",
    stackName: "NexnumProduction",
    region: "eu-west-1",
    cpu: 512,
    memoryMiB: 1024,
    minTasks: 2,
    maxTasks: 6,
    repository: "nexnum-origin",
    imageTag: "REPLACE_WITH_RELEASE_TAG",
    certificateArn: "arn:aws:acm:eu-west-1:123456789012:certificate/REPLACE-production",
    databaseSecurityGroupId: "sg-0a1b2c3d4e5f60003",
    redisSecurityGroupId: "sg-0a1b2c3d4e5f60004",
    databasePort: 5432,
    redisPort: 6379,
    pgbouncer: false,
    databaseHost: "nexnum.cluster-REPLACE.eu-west-1.rds.amazonaws.com",
    cloudflareZoneId: "fedcba9876543210fedcba9876543210",
    nextRevalidateUrl: "https://www.example.com/api/revalidate",
    syncIntervalSecs: 300,
    cloudflarePurgeRate: "4/s",
    nextRevalidateRate: "5/s",
    alertEmail: "oncall@example.com",
    logRetentionDays: 90,
  },
};

/** The stage with its context overrides (`nexnum:<stage>:<key>`, JSON for objects). */
export function stage(scope: Construct, name: StageName): Stage {
  const base: Record<string, unknown> = { ...DEFAULTS[name] };
  for (const key of Object.keys(base).concat(["vpc"])) {
    const raw = scope.node.tryGetContext(`nexnum:${name}:${key}`);
    if (raw === undefined) continue;
    const current = base[key];
    if (typeof current === "number") base[key] = Number(raw);
    else if (typeof current === "boolean") base[key] = raw === true || raw === "true";
    else if (key === "vpc") base[key] = typeof raw === "string" ? JSON.parse(raw) : raw;
    else base[key] = String(raw);
  }
  const s = base as unknown as Stage;
  if (!(s.minTasks >= 1 && s.minTasks <= s.maxTasks)) {
    throw new Error(`nexnum:${name}: minTasks ${s.minTasks} / maxTasks ${s.maxTasks}`);
  }
  return s;
}

export const STAGES: StageName[] = ["staging", "production"];
