//! The README's settings table is `config::markdown_table()` of the list `config.rs` reads, so
//! a setting cannot be documented and not read, read and not documented, or documented with the
//! wrong default. (`origin env` prints the table to paste.)

#[test]
fn the_readme_settings_table_is_the_one_config_reads() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let begin = "<!-- settings:begin -->\n";
    let start = readme.find(begin).expect("the settings:begin marker") + begin.len();
    let end = readme
        .find("<!-- settings:end -->")
        .expect("the settings:end marker");
    assert_eq!(
        &readme[start..end],
        origin::config::markdown_table(),
        "README.md's settings table is stale: run scripts/readme-settings.sh (make settings)"
    );
}

/// The README's catalog table is the contract clients and the edge are built against: its
/// literal `Cache-Control` strings and Redis TTLs are what every data type's policy produces
/// (read from the README's text, not from the table the code reads, so changing one without
/// the other fails here). Balance and sessions, which the table does not list, are pinned to
/// the guide's values.
#[test]
fn the_readme_catalog_table_is_what_the_policies_send() {
    use shared::DataType;
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let rows: Vec<Vec<String>> = readme
        .lines()
        .skip_while(|l| !l.starts_with("| route | Redis key | Redis TTL | `Cache-Control` |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 5, "the README's catalog table: {rows:?}");
    let ttl = |text: &str| match text {
        "1 h" => 3600,
        "60 s" => 60,
        other => panic!("a Redis TTL the test cannot read: {other}"),
    };
    let mut literal = std::collections::HashMap::<DataType, String>::new();
    for row in &rows {
        let data = match row[0].as_str() {
            r if r.contains("/providers") => DataType::Providers,
            r if r.contains("/countries") => DataType::Countries,
            r if r.contains("/services") => DataType::Services,
            r if r.contains("/prices/") => DataType::Prices,
            other => panic!("a route the test does not know: {other}"),
        };
        let cc = row[3].trim_matches('`').to_owned();
        let cc = match cc.as_str() {
            "same as countries" => literal[&DataType::Countries].clone(),
            "same as prices" => literal[&DataType::Prices].clone(),
            _ => cc,
        };
        literal.entry(data).or_insert(cc.clone());
        assert_eq!(data.policy().cache_control(), cc, "{}", row[0]);
        assert_eq!(data.policy().redis_ttl, ttl(&row[2]), "{}", row[0]);
    }
    assert_eq!(
        DataType::Balance.policy().cache_control(),
        "private, no-store"
    );
    assert_eq!(DataType::Balance.policy().redis_ttl, 30);
    assert_eq!(DataType::Session.policy().redis_ttl, 15 * 60);
}

/// The README's route tables and the API the origin serves name the same operations: every
/// operation of the checked-in `openapi.json` (itself held to the code by `openapi.rs`) is a row
/// of a README table or, for the operator's `/healthz`, named in its text; every row is an
/// operation. A route added, renamed or removed without the README fails here.
#[test]
fn the_readme_route_tables_are_the_operations_openapi_json_has() {
    use std::collections::BTreeSet;
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).expect("README.md");
    let document: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/openapi.json")).expect("openapi.json"),
    )
    .expect("openapi.json is JSON");
    let mut served = BTreeSet::new();
    for (path, operations) in document["paths"].as_object().expect("paths") {
        for method in operations.as_object().expect("operations").keys() {
            served.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    assert!(served.len() >= 15, "openapi.json's operations: {served:?}");

    // A row is "| `METHOD /path…` …": the path ends at a space, a `?` or the backtick.
    let methods = ["GET", "POST", "PUT", "PATCH", "DELETE"];
    let rows: BTreeSet<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| {
            let (method, rest) = l.split_once(' ')?;
            methods.contains(&method).then_some(())?;
            let end = rest.find(['`', '?', ' ']).unwrap_or(rest.len());
            Some(format!("{method} {}", &rest[..end]))
        })
        .collect();
    for row in &rows {
        assert!(
            served.contains(row),
            "README.md has a row for {row}, which openapi.json does not serve"
        );
    }
    for operation in &served {
        let named = rows.contains(operation) || readme.contains(&format!("`{operation}`"));
        assert!(
            named,
            "openapi.json serves {operation}, which README.md's route tables do not list"
        );
    }
}
