//! The shipped `wrangler.toml`, environment by environment, read as wrangler reads it: each one
//! configures a valid edge (a deployed one refuses what only a local run may do), the deployed
//! ones are on a custom domain with all their rate-limit bindings sized as the limiter is, and
//! `docs/edge.md` lists exactly the settings the worker reads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use edge::config::{Deployment, EdgeConfig, VARS};
use edge::limiter::{BINDING_CLIENT, BINDING_TRUSTED, BINDING_V6_48, BINDING_V6_56};

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn wrangler() -> toml::Table {
    repo_file("wrangler.toml")
        .parse()
        .expect("wrangler.toml parses")
}

/// The environment's table: the top level for `None`.
fn environment(all: &toml::Table, name: Option<&str>) -> toml::Table {
    match name {
        None => all.clone(),
        Some(name) => all["env"][name]
            .as_table()
            .expect("the environment")
            .clone(),
    }
}

fn vars(env: &toml::Table) -> BTreeMap<String, String> {
    env["vars"]
        .as_table()
        .expect("vars")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("vars are strings").to_owned()))
        .collect()
}

/// The configuration the worker builds from an environment's vars, with its secret set.
fn config(vars: &BTreeMap<String, String>) -> Result<EdgeConfig, String> {
    EdgeConfig::from_lookup(|name| match name {
        "EDGE_SECRET" => Some("a-placeholder-secret-of-32-chars!".to_owned()),
        _ => vars.get(name).cloned(),
    })
}

#[test]
fn each_environment_configures_a_valid_edge() {
    let all = wrangler();
    for (name, deployment) in [
        (None, Deployment::Local),
        (Some("staging"), Deployment::Staging),
        (Some("production"), Deployment::Production),
    ] {
        let vars = vars(&environment(&all, name));
        let cfg = config(&vars).unwrap_or_else(|e| panic!("{name:?}: {e}"));
        assert_eq!(cfg.deployment, deployment, "{name:?}");
        for var in vars.keys() {
            assert!(
                VARS.iter().any(|(n, ..)| n == var),
                "{name:?}: {var} is read by nobody"
            );
        }
        assert!(
            !vars.contains_key("EDGE_SECRET"),
            "a secret in wrangler.toml"
        );
        assert!(
            !vars.contains_key("TRUSTED_CLIENTS"),
            "a secret in wrangler.toml"
        );
    }
    assert_eq!(
        all["observability"]["enabled"].as_bool(),
        Some(true),
        "Workers Logs on"
    );
}

#[test]
fn deployed_environments_are_on_a_custom_domain_with_their_bindings() {
    let all = wrangler();
    for name in ["staging", "production"] {
        let env = environment(&all, Some(name));
        let vars = vars(&env);
        for knob in ["CACHE_TTL_DIVISOR", "EDGE_INSECURE_DEV"] {
            assert!(!vars.contains_key(knob), "{name}: {knob} is for local runs");
        }
        assert_eq!(
            env["workers_dev"].as_bool(),
            Some(false),
            "{name}: the Cache API needs a custom domain"
        );
        let routes = env["routes"].as_array().expect("routes");
        assert!(!routes.is_empty());
        for route in routes {
            assert_eq!(
                route["custom_domain"].as_bool(),
                Some(true),
                "{name}: {route}"
            );
            assert_eq!(
                route["pattern"].as_str(),
                Some(vars["PUBLIC_HOST"].as_str()),
                "{name}: cache keys are made on the served host"
            );
        }
        let per_minute: u64 = vars["RATE_LIMIT_PER_MINUTE"].parse().unwrap();
        let trusted: u64 = vars["TRUSTED_RATE_LIMIT_PER_MINUTE"].parse().unwrap();
        let period: u64 = vars["RATE_LIMIT_PERIOD_SECS"].parse().unwrap();
        let times = |len: u8| {
            let (_, t) = shared::ratelimit::WIDER_IPV6
                .iter()
                .find(|(l, _)| *l == len)
                .unwrap();
            u64::from(*t)
        };
        let expected = BTreeMap::from([
            (BINDING_CLIENT, per_minute),
            (BINDING_V6_56, per_minute * times(56)),
            (BINDING_V6_48, per_minute * times(48)),
            (BINDING_TRUSTED, trusted),
        ]);
        let mut namespaces = BTreeSet::new();
        let bound: BTreeMap<&str, u64> = env["ratelimits"]
            .as_array()
            .expect("ratelimits")
            .iter()
            .map(|b| {
                let simple = &b["simple"];
                assert_eq!(
                    simple["period"].as_integer(),
                    Some(period as i64),
                    "{name}: {b}"
                );
                assert!(namespaces.insert(b["namespace_id"].as_str().unwrap().to_owned()));
                (
                    b["name"].as_str().unwrap(),
                    simple["limit"].as_integer().unwrap() as u64,
                )
            })
            .collect();
        assert_eq!(
            bound, expected,
            "{name}: per minute, as the isolate's limiter counts"
        );
    }
}

#[test]
fn the_docs_list_every_setting_the_edge_reads() {
    let docs = repo_file("docs/edge.md");
    let documented: Vec<&str> = docs
        .lines()
        .filter(|l| l.starts_with("| `") && l.ends_with(" |"))
        .filter(|l| l[3..].starts_with(|c: char| c.is_ascii_uppercase()))
        .collect();
    let expected: Vec<String> = VARS
        .iter()
        .map(|(name, default, meaning)| format!("| `{name}` | {default} | {meaning} |"))
        .collect();
    assert_eq!(
        documented,
        expected,
        "docs/edge.md's settings table is not config::VARS; the table should read:\n{}",
        expected.join("\n")
    );
    let read: BTreeSet<&str> = VARS.iter().map(|(n, ..)| *n).collect();
    // And the worker asks for nothing else.
    let asked = std::cell::RefCell::new(BTreeSet::new());
    let _ = EdgeConfig::from_lookup(|name| {
        asked.borrow_mut().insert(name.to_owned());
        None
    });
    let _ = EdgeConfig::from_lookup(|name| {
        asked.borrow_mut().insert(name.to_owned());
        match name {
            "EDGE_ENV" => Some("local".into()),
            "ORIGIN_URL" => Some("http://127.0.0.1:1".into()),
            "EDGE_INSECURE_DEV" => Some("true".into()),
            _ => None,
        }
    });
    for name in asked.into_inner() {
        assert!(
            read.contains(name.as_str()),
            "{name} is read but not in VARS"
        );
    }
}

#[test]
fn wrangler_deploy_without_an_environment_cannot_replace_a_deployed_worker() {
    // The trap of workers-sdk#3392/#9344: `wrangler deploy` without `--env` uses the top level.
    // Ours is named for local runs only, reachable nowhere, and differs from both deployments.
    let all = wrangler();
    let top = all["name"].as_str().expect("a top-level name");
    assert!(
        top.ends_with("-local"),
        "the top level is {top:?}: name it for local runs"
    );
    assert_eq!(
        all["workers_dev"].as_bool(),
        Some(false),
        "the top level on workers.dev"
    );
    assert!(
        all.get("routes").is_none() && all.get("route").is_none(),
        "a top-level route"
    );
    let mut names = BTreeSet::new();
    for name in ["staging", "production"] {
        let env = environment(&all, Some(name));
        let deployed = env["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: its own name"));
        assert_ne!(deployed, top, "{name} shares the local name");
        assert!(names.insert(deployed.to_owned()), "{name} shares a name");
    }
}

#[test]
fn every_environment_waits_for_the_origin_longer_than_the_origin_runs() {
    let all = wrangler();
    for name in [None, Some("staging"), Some("production")] {
        let cfg = config(&vars(&environment(&all, name))).unwrap();
        assert!(
            shared::policy::budget::agree(
                u64::from(cfg.origin_timeout_ms),
                u64::from(shared::policy::budget::ORIGIN_REQUEST_TIMEOUT_MS)
            ),
            "{name:?}: ORIGIN_TIMEOUT_MS {} is not {} ms past the origin's deadline",
            cfg.origin_timeout_ms,
            shared::policy::budget::MARGIN_MS
        );
    }
}
