//! The deployment's settings, three ways that must agree (#32 item 2): what the synthesized
//! templates pass to the origin's tasks, what the origin reads (`origin::config::VARS`), and what
//! the deploy guide lists (docs/deploy.md's settings table). Every row the guide calls required is
//! passed by both stages; everything passed is in the guide and read by the origin; a credential
//! is passed only as a secret, and the owner's URL only to the migration task.

use std::collections::BTreeSet;

use crate::{resource_containers, synthesized};

/// The guide's table: (variable, from, in a deployment).
fn guide() -> Vec<(String, String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("docs/deploy.md")).unwrap();
    let a = text.find("<!-- deploy-settings:begin -->").expect("the settings table");
    let b = text.find("<!-- deploy-settings:end -->").unwrap();
    text[a..b]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<String> = l.split('|').map(|c| c.trim().to_owned()).collect();
            (cells[1].trim_matches('`').to_owned(), cells[2].clone(), cells[3].clone())
        })
        .collect()
}

#[test]
fn the_templates_the_origin_and_the_guide_name_the_same_settings() {
    let read: BTreeSet<&str> = origin::config::VARS.iter().map(|v| v.name).collect();
    let rows = guide();
    assert!(rows.len() >= 20, "{rows:?}");
    for (name, ..) in &rows {
        assert!(
            read.contains(name.as_str()),
            "docs/deploy.md lists {name}, which the origin does not read"
        );
    }
    for stack in ["NexnumStaging", "NexnumProduction"] {
        let template = synthesized(stack);
        let containers = resource_containers(&template);
        let serving = containers.iter().find(|c| c["Command"][0] == "serve").expect("serve");
        let migration = containers.iter().find(|c| c["Command"][0] == "migrate").expect("migrate");
        let names = |c: &serde_json::Value, field: &str| -> BTreeSet<String> {
            c[field]
                .as_array()
                .map(|a| a.iter().map(|nv| nv["Name"].as_str().unwrap().to_owned()).collect())
                .unwrap_or_default()
        };
        let (env, secrets) = (names(serving, "Environment"), names(serving, "Secrets"));
        let migration_secrets = names(migration, "Secrets");
        for name in env.iter().chain(&secrets).chain(&migration_secrets) {
            assert!(
                read.contains(name.as_str()),
                "{stack} passes {name}, which the origin does not read"
            );
            assert!(
                rows.iter().any(|(n, ..)| n == name),
                "{stack} passes {name}: not in docs/deploy.md"
            );
        }
        for (name, from, when) in &rows {
            let passed =
                env.contains(name) || secrets.contains(name) || migration_secrets.contains(name);
            if when.starts_with("required") {
                assert!(
                    passed,
                    "{stack}: the guide requires {name}, and the task does not pass it"
                );
            }
            if from.starts_with("secret") && passed {
                assert!(!env.contains(name), "{stack}: {name} in the open");
            }
            if origin::config::SECRETS.contains(&name.as_str()) {
                assert!(from.starts_with("secret"), "docs/deploy.md: {name} is a credential");
            }
        }
        assert!(!secrets.contains("MIGRATE_DATABASE_URL") && !env.contains("MIGRATE_DATABASE_URL"));
        assert_eq!(migration_secrets, BTreeSet::from(["MIGRATE_DATABASE_URL".to_owned()]));
    }
}

/// `ops/cdk/origin-settings.json` (what synthesis checks names against) is `origin env --json`.
#[test]
fn the_cdk_apps_list_of_settings_is_the_origins() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shipped = std::fs::read_to_string(root.join("ops/cdk/origin-settings.json")).unwrap();
    assert_eq!(
        shipped,
        origin::config::json_list(),
        "ops/cdk/origin-settings.json is stale: target/debug/origin env --json > ops/cdk/origin-settings.json"
    );
}
