//! The checklist's "Verify auto-scaling limits in AWS ECS": the task definition and the
//! service's scaling target (the JSON `aws ecs register-task-definition --cli-input-json` and
//! `aws application-autoscaling register-scalable-target --cli-input-json` take, as shipped in
//! `ops/ecs/`) graded against the guide's rules and the live limits of PostgreSQL and Redis.
//!
//! What the fleet may do at its largest (`MaxCapacity` tasks, each with the settings its task
//! definition gives the origin container):
//! - its pools together (`MaxCapacity` × `DB_MAX_CONNECTIONS`) stay within the guide's 80 % of
//!   PostgreSQL's `max_connections`, unless `DB_POOLER` puts PgBouncer in between;
//! - past 50 tasks, PgBouncer is required (the guide's number);
//! - its Redis connections (two per task per node: the shared multiplexed one and the
//!   invalidation subscriber) stay within 80 % of each node's `maxclients`;
//! - ECS waits longer than the origin drains (`stopTimeout` > `SHUTDOWN_GRACE_SECS`), or
//!   draining requests are SIGKILLed;
//! - credentials come from `secrets` (Secrets Manager), never from plain `environment`, which
//!   anyone allowed `ecs:DescribeTaskDefinition` can read;
//! - the health check is `origin probe`, and the task has the memory the origin needs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;

use crate::check::{Row, Status, grade};

/// The variables that carry credentials: only ever as `secrets`.
pub const SECRET_VARS: [&str; 6] = [
    "DATABASE_URL",
    "MIGRATE_DATABASE_URL",
    "REDIS_URL",
    "EDGE_SECRET",
    "SENTRY_DSN",
    "ADMIN_PASSWORD",
];

/// Redis connections one origin holds open per node: the multiplexed one every request shares,
/// and (on one node) the invalidation subscriber's.
pub const REDIS_CONNECTIONS_PER_TASK: u64 = 2;

/// PgBouncer past this many tasks (the guide).
pub const POOLER_PAST_TASKS: u32 = 50;

/// The least memory a task should have: the measured steady RSS under load (~27 MiB, `make
/// bench`) plus one argon2 hash (7 MiB) per hashing slot, with room for bursts.
pub const MIN_MEMORY_MIB: u32 = 128;

/// What the check needs from the two files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EcsPlan {
    pub container: String,
    pub min_tasks: u32,
    pub max_tasks: u32,
    /// The origin container's plain `environment`.
    pub environment: BTreeMap<String, String>,
    /// The names its `secrets` set.
    pub secrets: BTreeSet<String>,
    /// Task memory, MiB.
    pub memory_mib: u32,
    /// Seconds ECS waits after SIGTERM before SIGKILL (its default is 30).
    pub stop_timeout_secs: u32,
    pub health_check: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TaskDefinition {
    container_definitions: Vec<ContainerDefinition>,
    memory: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerDefinition {
    name: String,
    #[serde(default)]
    command: Vec<String>,
    image: String,
    #[serde(default)]
    environment: Vec<NameValue>,
    #[serde(default)]
    secrets: Vec<NameValueFrom>,
    memory: Option<u32>,
    stop_timeout: Option<u32>,
    health_check: Option<HealthCheck>,
}

#[derive(Deserialize)]
struct NameValue {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NameValueFrom {
    name: String,
    value_from: String,
}

#[derive(Deserialize)]
struct HealthCheck {
    command: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ScalableTarget {
    service_namespace: String,
    scalable_dimension: String,
    min_capacity: u32,
    max_capacity: u32,
}

impl EcsPlan {
    /// Reads the two files; the origin is the container that runs `serve` (or the only one).
    pub fn load(task: &Path, scaling: &Path) -> Result<EcsPlan, String> {
        let read =
            |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
        EcsPlan::parse(&read(task)?, &read(scaling)?)
    }

    pub fn parse(task: &str, scaling: &str) -> Result<EcsPlan, String> {
        let task: TaskDefinition =
            serde_json::from_str(task).map_err(|e| format!("the task definition: {e}"))?;
        let target: ScalableTarget =
            serde_json::from_str(scaling).map_err(|e| format!("the scaling target: {e}"))?;
        if target.service_namespace != "ecs"
            || target.scalable_dimension != "ecs:service:DesiredCount"
        {
            return Err("the scaling target is not an ECS service's DesiredCount".into());
        }
        if target.min_capacity > target.max_capacity {
            return Err(format!(
                "the scaling target's MinCapacity {} is above its MaxCapacity {}",
                target.min_capacity, target.max_capacity
            ));
        }
        let containers = &task.container_definitions;
        let origin = containers
            .iter()
            .find(|c| c.command.iter().any(|a| a == "serve") || c.image.contains("origin"))
            .or(containers.first())
            .ok_or("the task definition has no container")?;
        if let Some(bad) = origin
            .secrets
            .iter()
            .find(|s| !s.value_from.starts_with("arn:"))
        {
            return Err(format!(
                "the secret {} is not taken from an ARN (Secrets Manager or SSM): {:?}",
                bad.name, bad.value_from
            ));
        }
        let memory_mib = task
            .memory
            .as_deref()
            .and_then(|m| m.parse().ok())
            .or(origin.memory)
            .ok_or("the task definition sets no memory")?;
        Ok(EcsPlan {
            container: origin.name.clone(),
            min_tasks: target.min_capacity,
            max_tasks: target.max_capacity,
            environment: origin
                .environment
                .iter()
                .map(|nv| (nv.name.clone(), nv.value.clone()))
                .collect(),
            secrets: origin.secrets.iter().map(|s| s.name.clone()).collect(),
            memory_mib,
            stop_timeout_secs: origin.stop_timeout.unwrap_or(30),
            health_check: origin
                .health_check
                .as_ref()
                .map(|h| h.command.clone())
                .unwrap_or_default(),
        })
    }

    /// A setting as the task will see it: its plain environment, else the origin's default.
    fn setting(&self, name: &str) -> Option<String> {
        self.environment.get(name).cloned().or_else(|| {
            crate::config::VARS
                .iter()
                .find(|v| v.name == name)
                .and_then(|v| match v.default {
                    crate::config::WhenUnset::Value(v) => Some(v.to_owned()),
                    _ => None,
                })
        })
    }

    fn pooled(&self) -> bool {
        self.setting("DB_POOLER")
            .is_some_and(|p| p.trim() == "pgbouncer-transaction")
    }
}

/// The live limits the plan is graded against (`None`: not measured).
#[derive(Clone, Debug, Default)]
pub struct Limits {
    pub pg_max_connections: Option<i64>,
    /// `maxclients` of each Redis node (one for a single server).
    pub redis_maxclients: Vec<(String, u64)>,
}

/// One row per rule (see the module documentation); `max_pct` is the guide's 80 %.
pub fn grade_plan(plan: &EcsPlan, limits: &Limits, max_pct: f64) -> Vec<Row> {
    let mut rows = Vec::new();
    let row = |check: &str, value: String, threshold: String, status, note: String| Row {
        check: format!("ecs {check}"),
        value,
        threshold,
        status,
        note,
    };
    let tasks = plan.max_tasks;
    let pool: Option<u64> = plan
        .setting("DB_MAX_CONNECTIONS")
        .and_then(|v| v.trim().parse().ok())
        .filter(|v| *v > 0);

    // 1. The fleet's pools against max_connections.
    let threshold = format!("< {max_pct}% of max_connections");
    rows.push(match (pool, limits.pg_max_connections) {
        (None, _) => row(
            "fleet pool budget",
            "unmeasured".into(),
            threshold,
            Status::Fail,
            format!(
                "{}: DB_MAX_CONNECTIONS is not a positive number",
                plan.container
            ),
        ),
        (Some(pool), _) if plan.pooled() => row(
            "fleet pool budget",
            format!(
                "{} ({tasks} tasks x DB_MAX_CONNECTIONS {pool})",
                u64::from(tasks) * pool
            ),
            "PgBouncer max_client_conn".into(),
            Status::Pass,
            "DB_POOLER=pgbouncer-transaction: PostgreSQL sees PgBouncer's default_pool_size".into(),
        ),
        (Some(_), None) => row(
            "fleet pool budget",
            "unmeasured".into(),
            threshold,
            Status::Fail,
            "max_connections unreadable".into(),
        ),
        (Some(pool), Some(max)) => {
            let planned = u64::from(tasks) * pool;
            let pct = planned as f64 * 100.0 / max.max(1) as f64;
            row(
                "fleet pool budget",
                format!("{planned} ({tasks} tasks x DB_MAX_CONNECTIONS {pool})"),
                threshold,
                grade(pct, max_pct),
                format!(
                    "{pct:.0}% of max_connections {max}; at most {} tasks fit, or set DB_POOLER",
                    ((max as f64 * max_pct / 100.0) as u64).saturating_sub(1) / pool
                ),
            )
        }
    });

    // 2. PgBouncer past 50 tasks.
    let needs_pooler = tasks > POOLER_PAST_TASKS && !plan.pooled();
    rows.push(row(
        "pgbouncer past 50 tasks",
        format!(
            "MaxCapacity {tasks}, DB_POOLER {}",
            plan.setting("DB_POOLER").unwrap_or_default()
        ),
        format!("DB_POOLER set when MaxCapacity > {POOLER_PAST_TASKS}"),
        if needs_pooler {
            Status::Fail
        } else {
            Status::Pass
        },
        if needs_pooler {
            format!(
                "{tasks} tasks without PgBouncer: the guide requires it past {POOLER_PAST_TASKS}"
            )
        } else {
            "the guide's rule holds".into()
        },
    ));

    // 3. Redis connections against each node's maxclients.
    let threshold = format!("< {max_pct}% of maxclients");
    let connections = u64::from(tasks) * REDIS_CONNECTIONS_PER_TASK;
    match limits.redis_maxclients.iter().min_by_key(|(_, max)| *max) {
        None => rows.push(row(
            "redis clients",
            "unmeasured".into(),
            threshold,
            Status::Fail,
            "maxclients unreadable (INFO clients)".into(),
        )),
        Some((node, max)) => {
            let pct = connections as f64 * 100.0 / (*max).max(1) as f64;
            rows.push(row(
                "redis clients",
                format!("{connections} ({tasks} tasks x {REDIS_CONNECTIONS_PER_TASK} per node)"),
                threshold,
                grade(pct, max_pct),
                format!("{pct:.1}% of maxclients {max} on {node}"),
            ));
        }
    }

    // 4. ECS waits for the drain.
    let grace: Option<u32> = plan
        .setting("SHUTDOWN_GRACE_SECS")
        .and_then(|v| v.trim().parse().ok());
    let (status, note) = match grace {
        None => (
            Status::Fail,
            "SHUTDOWN_GRACE_SECS is not a number".to_owned(),
        ),
        Some(g) if g + 5 <= plan.stop_timeout_secs => (
            Status::Pass,
            "in-flight requests finish before ECS sends SIGKILL".to_owned(),
        ),
        Some(g) => (
            Status::Fail,
            format!(
                "ECS kills the task {}s after SIGTERM, the origin drains for {g}s: raise \
                 stopTimeout or lower SHUTDOWN_GRACE_SECS",
                plan.stop_timeout_secs
            ),
        ),
    };
    rows.push(row(
        "shutdown grace",
        format!(
            "SHUTDOWN_GRACE_SECS {} vs stopTimeout {}",
            grace.map_or("?".into(), |g| g.to_string()),
            plan.stop_timeout_secs
        ),
        "grace + 5 s <= stopTimeout".into(),
        status,
        note,
    ));

    // 5. Credentials only as secrets, and the two URLs present.
    let exposed: Vec<&str> = SECRET_VARS
        .iter()
        .copied()
        .filter(|v| plan.environment.contains_key(*v))
        .collect();
    let missing: Vec<&str> = ["DATABASE_URL", "REDIS_URL"]
        .into_iter()
        .filter(|v| !plan.environment.contains_key(*v) && !plan.secrets.contains(*v))
        .collect();
    let (status, note) = if !exposed.is_empty() {
        (
            Status::Fail,
            format!(
                "{} in plain environment: move to secrets (Secrets Manager)",
                exposed.join(", ")
            ),
        )
    } else if !missing.is_empty() {
        (Status::Fail, format!("{} not set", missing.join(", ")))
    } else {
        (
            Status::Pass,
            "credentials come from Secrets Manager".to_owned(),
        )
    };
    rows.push(row(
        "secrets",
        format!("{} from secrets", plan.secrets.len()),
        "no credential in environment".into(),
        status,
        note,
    ));

    // 6. The health check and the memory.
    let probes = plan.health_check.iter().any(|a| a.ends_with("probe"));
    rows.push(row(
        "health check",
        plan.health_check.join(" "),
        "origin probe".into(),
        if probes { Status::Pass } else { Status::Warn },
        if probes {
            "ECS replaces a task whose origin stops answering /healthz".into()
        } else {
            "no `origin probe` health check: a wedged task is never replaced".into()
        },
    ));
    rows.push(row(
        "task memory",
        format!("{} MiB", plan.memory_mib),
        format!(">= {MIN_MEMORY_MIB} MiB"),
        if plan.memory_mib >= MIN_MEMORY_MIB {
            Status::Pass
        } else {
            Status::Fail
        },
        "steady RSS under load ~27 MiB (make bench) + 7 MiB per concurrent password hash".into(),
    ));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    const TASK: &str = include_str!("../../ops/ecs/task-definition.json");
    const SCALING: &str = include_str!("../../ops/ecs/scalable-target.json");

    fn limits() -> Limits {
        Limits {
            pg_max_connections: Some(100),
            redis_maxclients: vec![("127.0.0.1:6379".into(), 10_000)],
        }
    }

    fn status(rows: &[Row], check: &str) -> (Status, String) {
        let r = rows
            .iter()
            .find(|r| r.check == format!("ecs {check}"))
            .unwrap();
        (r.status, format!("{} | {}", r.value, r.note))
    }

    #[test]
    fn the_shipped_files_pass() {
        let plan = EcsPlan::parse(TASK, SCALING).unwrap();
        assert_eq!(plan.container, "origin");
        for r in grade_plan(&plan, &limits(), 80.0) {
            assert_eq!(r.status, Status::Pass, "{r:?}");
        }
    }

    #[test]
    fn each_rule_fails_with_its_numbers() {
        let plan = EcsPlan::parse(TASK, SCALING).unwrap();
        let mut big = plan.clone();
        big.max_tasks = 9;
        let (s, text) = status(&grade_plan(&big, &limits(), 80.0), "fleet pool budget");
        assert_eq!(s, Status::Fail);
        assert!(
            text.contains("90 (9 tasks x DB_MAX_CONNECTIONS 10)"),
            "{text}"
        );
        assert!(text.contains("90% of max_connections 100"), "{text}");

        let mut huge = plan.clone();
        huge.max_tasks = 60;
        huge.environment
            .insert("DB_POOLER".into(), "pgbouncer-transaction".into());
        let rows = grade_plan(&huge, &limits(), 80.0);
        assert_eq!(status(&rows, "pgbouncer past 50 tasks").0, Status::Pass);
        assert_eq!(status(&rows, "fleet pool budget").0, Status::Pass);
        huge.environment.remove("DB_POOLER");
        let (s, text) = status(
            &grade_plan(&huge, &limits(), 80.0),
            "pgbouncer past 50 tasks",
        );
        assert_eq!(s, Status::Fail);
        assert!(text.contains("60 tasks"), "{text}");

        let tight = Limits {
            redis_maxclients: vec![("a:1".into(), 10_000), ("b:2".into(), 100)],
            ..limits()
        };
        let mut many = plan.clone();
        many.max_tasks = 45;
        many.environment
            .insert("DB_POOLER".into(), "pgbouncer-transaction".into());
        let (s, text) = status(&grade_plan(&many, &tight, 80.0), "redis clients");
        assert_eq!(s, Status::Fail);
        assert!(
            text.contains("90 (45 tasks x 2 per node)") && text.contains("b:2"),
            "{text}"
        );

        let mut slow = plan.clone();
        slow.stop_timeout_secs = 10;
        let (s, text) = status(&grade_plan(&slow, &limits(), 80.0), "shutdown grace");
        assert_eq!(s, Status::Fail);
        assert!(text.contains("stopTimeout 10"), "{text}");

        let mut leaky = plan.clone();
        leaky
            .environment
            .insert("REDIS_URL".into(), "rediss://u:p@h:6379".into());
        let (s, text) = status(&grade_plan(&leaky, &limits(), 80.0), "secrets");
        assert_eq!(s, Status::Fail);
        assert!(text.contains("REDIS_URL in plain environment"), "{text}");
        assert!(!text.contains("u:p@"), "the value is never printed: {text}");

        let mut small = plan;
        small.memory_mib = 64;
        assert_eq!(
            status(&grade_plan(&small, &limits(), 80.0), "task memory").0,
            Status::Fail
        );
    }

    #[test]
    fn malformed_files_are_refused_with_the_reason() {
        assert!(
            EcsPlan::parse("{}", SCALING)
                .unwrap_err()
                .contains("task definition")
        );
        let wrong = SCALING.replace(
            "ecs:service:DesiredCount",
            "dynamodb:table:ReadCapacityUnits",
        );
        assert!(
            EcsPlan::parse(TASK, &wrong)
                .unwrap_err()
                .contains("DesiredCount")
        );
    }
}
