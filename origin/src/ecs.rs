//! The checklist's "Verify auto-scaling limits in AWS ECS": the deployment as the CDK app
//! (`ops/cdk`) synthesizes it, one CloudFormation template per stage, graded against the guide's
//! rules and the live limits of PostgreSQL and Redis. There is no hand-written task definition to
//! drift from what deploys: `make infra` synthesizes the templates and grades them here.
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
//!   anyone allowed `ecs:DescribeTaskDefinition` can read; the schema owner's URL never reaches a
//!   serving task;
//! - the container health check is `origin probe`, the load balancer's is liveness (`/healthz`:
//!   a readiness check would turn a Redis blip into the whole fleet replaced), the deployment
//!   circuit breaker rolls a bad release back, the log group the tasks write to exists, and the
//!   task has the memory the origin needs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use crate::check::{Row, Status, grade};

/// The variables that carry credentials: only ever as `secrets`.
pub use crate::config::SECRETS as SECRET_VARS;

/// Redis connections one origin holds open per node: the multiplexed one every request shares,
/// and (on one node) the invalidation subscriber's.
pub const REDIS_CONNECTIONS_PER_TASK: u64 = 2;

/// PgBouncer past this many tasks (the guide).
pub const POOLER_PAST_TASKS: u32 = 50;

/// The least memory a task should have: the measured steady RSS under load (~27 MiB, `make
/// bench`) plus one argon2 hash (7 MiB) per hashing slot, with room for bursts.
pub const MIN_MEMORY_MIB: u32 = 128;

/// What the check needs from a stage's template.
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
    /// The load balancer's health check path on the service's target group (`None`: no
    /// load balancer).
    pub lb_health_path: Option<String>,
    /// The deployment circuit breaker: (enabled, rolls back).
    pub circuit_breaker: (bool, bool),
    /// Whether the origin's awslogs group is a log group of the template (ECS will not start a
    /// task whose group does not exist).
    pub log_group_defined: bool,
}

/// `Ref`'s target, or `GetAtt`'s resource.
fn reference(v: &Value) -> Option<&str> {
    v.get("Ref")
        .and_then(Value::as_str)
        .or_else(|| v.get("Fn::GetAtt")?.get(0)?.as_str())
}

/// Every logical id an intrinsic value mentions (in `Ref`, `GetAtt`, nested `Join`s).
fn mentions(v: &Value, out: &mut BTreeSet<String>) {
    if let Some(r) = reference(v) {
        out.insert(r.to_owned());
    }
    match v {
        Value::Array(items) => items.iter().for_each(|i| mentions(i, out)),
        Value::Object(map) => map.values().for_each(|i| mentions(i, out)),
        _ => {}
    }
}

/// A number CloudFormation may spell as a number or a string.
fn number(v: Option<&Value>) -> Option<u32> {
    match v? {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Whether a secret's `ValueFrom` names Secrets Manager or SSM (an ARN, literal or built by
/// `Fn::Join`), not a value.
fn names_a_secret_store(v: &Value) -> bool {
    let text = v.to_string();
    text.contains(":secretsmanager:") || text.contains(":ssm:") || text.contains("arn:")
}

impl EcsPlan {
    pub fn load(template: &Path) -> Result<EcsPlan, String> {
        let text = std::fs::read_to_string(template)
            .map_err(|e| format!("{}: {e}", template.display()))?;
        EcsPlan::parse(&text)
    }

    /// The serving service of a synthesized CloudFormation template: the ECS service behind a
    /// load balancer, its task definition's origin container (the one that runs `serve`), its
    /// scaling target and its target group.
    pub fn parse(template: &str) -> Result<EcsPlan, String> {
        let template: Value =
            serde_json::from_str(template).map_err(|e| format!("the template: {e}"))?;
        let resources = template
            .get("Resources")
            .and_then(Value::as_object)
            .ok_or("the template has no Resources")?;
        let of_type = |kind: &'static str| {
            resources
                .iter()
                .filter(move |(_, r)| r.get("Type").and_then(Value::as_str) == Some(kind))
                .map(|(id, r)| (id.as_str(), &r["Properties"]))
        };
        let (service_id, service) = of_type("AWS::ECS::Service")
            .find(|(_, p)| {
                p.get("LoadBalancers")
                    .is_some_and(|l| l.as_array().is_some_and(|a| !a.is_empty()))
            })
            .ok_or("the template has no ECS service behind a load balancer")?;
        let task_id = reference(&service["TaskDefinition"])
            .ok_or("the service's TaskDefinition is not a resource of the template")?;
        let task = &resources
            .get(task_id)
            .ok_or_else(|| format!("the task definition {task_id} is not in the template"))?["Properties"];
        let containers = task["ContainerDefinitions"]
            .as_array()
            .ok_or("the task definition has no ContainerDefinitions")?;
        let origin = containers
            .iter()
            .find(|c| {
                c["Command"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == "serve"))
            })
            .ok_or("no container of the task definition runs `serve`")?;
        let name = origin["Name"].as_str().unwrap_or("origin").to_owned();
        let target = of_type("AWS::ApplicationAutoScaling::ScalableTarget")
            .find(|(_, p)| {
                let mut ids = BTreeSet::new();
                mentions(&p["ResourceId"], &mut ids);
                ids.contains(service_id)
            })
            .map(|(_, p)| p)
            .ok_or("the service has no scaling target")?;
        if target["ServiceNamespace"] != "ecs"
            || target["ScalableDimension"] != "ecs:service:DesiredCount"
        {
            return Err("the scaling target is not an ECS service's DesiredCount".into());
        }
        let min_tasks = number(target.get("MinCapacity")).ok_or("no MinCapacity")?;
        let max_tasks = number(target.get("MaxCapacity")).ok_or("no MaxCapacity")?;
        if min_tasks > max_tasks {
            return Err(format!(
                "the scaling target's MinCapacity {min_tasks} is above its MaxCapacity {max_tasks}"
            ));
        }
        let pairs = |field: &str, value: &str| -> Vec<(String, Value)> {
            origin[field]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|nv| Some((nv["Name"].as_str()?.to_owned(), nv[value].clone())))
                        .collect()
                })
                .unwrap_or_default()
        };
        let secrets = pairs("Secrets", "ValueFrom");
        if let Some((bad, _)) = secrets.iter().find(|(_, v)| !names_a_secret_store(v)) {
            return Err(format!(
                "the secret {bad} is not taken from Secrets Manager or SSM"
            ));
        }
        let memory_mib = number(task.get("Memory"))
            .or(number(origin.get("Memory")))
            .ok_or("the task definition sets no memory")?;
        let lb_health_path = service["LoadBalancers"][0]
            .get("TargetGroupArn")
            .and_then(reference)
            .and_then(|tg| resources.get(tg))
            .map(|tg| {
                tg["Properties"]["HealthCheckPath"]
                    .as_str()
                    .unwrap_or("/")
                    .to_owned()
            });
        let breaker = &service["DeploymentConfiguration"]["DeploymentCircuitBreaker"];
        let log_group_defined = reference(&origin["LogConfiguration"]["Options"]["awslogs-group"])
            .and_then(|id| resources.get(id))
            .is_some_and(|r| r["Type"] == "AWS::Logs::LogGroup");
        Ok(EcsPlan {
            container: name,
            min_tasks,
            max_tasks,
            environment: pairs("Environment", "Value")
                .into_iter()
                .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                .collect(),
            secrets: secrets.into_iter().map(|(k, _)| k).collect(),
            memory_mib,
            stop_timeout_secs: number(origin.get("StopTimeout")).unwrap_or(30),
            health_check: origin["HealthCheck"]["Command"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            lb_health_path,
            circuit_breaker: (breaker["Enable"] == true, breaker["Rollback"] == true),
            log_group_defined,
        })
    }

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
    let owner = plan.secrets.contains("MIGRATE_DATABASE_URL")
        || plan.environment.contains_key("MIGRATE_DATABASE_URL");
    rows.push(row(
        "owner credential",
        if owner {
            "MIGRATE_DATABASE_URL".into()
        } else {
            "-".into()
        },
        "not in a serving task".into(),
        if owner { Status::Fail } else { Status::Pass },
        if owner {
            "the schema owner's URL reaches every serving task: give it to the migration task only"
                .into()
        } else {
            "the serving task holds the serving role's URL only".into()
        },
    ));
    let (status, note) = match plan.lb_health_path.as_deref() {
        Some("/healthz") => (
            Status::Pass,
            "liveness: a Redis or PostgreSQL blip does not make the balancer replace tasks"
                .to_owned(),
        ),
        Some("/readyz") => (
            Status::Fail,
            "readiness fails on any dependency error: the balancer marks every task unhealthy \
             and ECS replaces the fleet during a blip it was built to ride out; use /healthz"
                .to_owned(),
        ),
        Some(other) => (
            Status::Fail,
            format!("{other} is not the origin's /healthz"),
        ),
        None => (
            Status::Warn,
            "no load balancer in front of the service".to_owned(),
        ),
    };
    rows.push(row(
        "lb health check",
        plan.lb_health_path.clone().unwrap_or_else(|| "-".into()),
        "/healthz".into(),
        status,
        note,
    ));
    let (on, rollback) = plan.circuit_breaker;
    rows.push(row(
        "circuit breaker",
        format!("enable {on}, rollback {rollback}"),
        "enabled, with rollback".into(),
        if on && rollback {
            Status::Pass
        } else {
            Status::Fail
        },
        if on && rollback {
            "a release whose tasks never turn healthy is rolled back".into()
        } else {
            "a bad release keeps replacing tasks until someone notices".into()
        },
    ));
    rows.push(row(
        "log group",
        if plan.log_group_defined {
            "defined".into()
        } else {
            "not in the template".into()
        },
        "created with the service".into(),
        if plan.log_group_defined {
            Status::Pass
        } else {
            Status::Fail
        },
        if plan.log_group_defined {
            "the awslogs group exists before the first task".into()
        } else {
            "ECS will not start a task whose awslogs group does not exist".into()
        },
    ));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stage's template cut down to what the check reads (the synthesized ones are graded by
    /// `make infra` and the monitoring suite).
    const TEMPLATE: &str = include_str!("../tests/fixtures/ecs-template.json");

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
        let plan = EcsPlan::parse(TEMPLATE).unwrap();
        assert_eq!(plan.container, "origin");
        for r in grade_plan(&plan, &limits(), 80.0) {
            assert_eq!(r.status, Status::Pass, "{r:?}");
        }
    }

    #[test]
    fn each_rule_fails_with_its_numbers() {
        let plan = EcsPlan::parse(TEMPLATE).unwrap();
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
    fn the_deployment_rules_fail_with_their_reasons() {
        let plan = EcsPlan::parse(TEMPLATE).unwrap();
        let mut owner = plan.clone();
        owner.secrets.insert("MIGRATE_DATABASE_URL".into());
        assert_eq!(
            status(&grade_plan(&owner, &limits(), 80.0), "owner credential").0,
            Status::Fail
        );
        let mut ready = plan.clone();
        ready.lb_health_path = Some("/readyz".into());
        let (s, text) = status(&grade_plan(&ready, &limits(), 80.0), "lb health check");
        assert_eq!(s, Status::Fail);
        assert!(text.contains("replaces the fleet"), "{text}");
        let mut reckless = plan.clone();
        reckless.circuit_breaker = (true, false);
        assert_eq!(
            status(&grade_plan(&reckless, &limits(), 80.0), "circuit breaker").0,
            Status::Fail
        );
        let mut homeless = plan;
        homeless.log_group_defined = false;
        assert_eq!(
            status(&grade_plan(&homeless, &limits(), 80.0), "log group").0,
            Status::Fail
        );
    }

    #[test]
    fn the_template_is_read_as_cloudformation_writes_it() {
        let plan = EcsPlan::parse(TEMPLATE).unwrap();
        assert_eq!(
            (plan.min_tasks, plan.max_tasks, plan.memory_mib),
            (2, 6, 1024)
        );
        assert_eq!(plan.lb_health_path.as_deref(), Some("/healthz"));
        assert!(plan.secrets.contains("DATABASE_URL"), "{:?}", plan.secrets);
        assert_eq!(plan.environment["DB_MAX_CONNECTIONS"], "10");
        assert!(plan.log_group_defined && plan.circuit_breaker == (true, true));
    }

    #[test]
    fn malformed_templates_are_refused_with_the_reason() {
        assert!(EcsPlan::parse("{}").unwrap_err().contains("Resources"));
        let wrong = TEMPLATE.replace(
            "ecs:service:DesiredCount",
            "dynamodb:table:ReadCapacityUnits",
        );
        assert!(EcsPlan::parse(&wrong).unwrap_err().contains("DesiredCount"));
        let plain = TEMPLATE
            .replace(":secretsmanager:", ":nowhere:")
            .replace("arn:", "nope:");
        assert!(
            EcsPlan::parse(&plain)
                .unwrap_err()
                .contains("Secrets Manager")
        );
    }
}
