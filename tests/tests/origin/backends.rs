//! Which tests run on which back end (#22 item 14): the README's table is generated from the test
//! sources here, so its counts cannot drift from what `make test`'s three passes run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The test functions of some Rust sources: name, body (up to the next test), ignored.
fn tests_in(files: &[PathBuf]) -> Vec<(String, String, bool)> {
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        // A test attribute on a line of its own (`#[test]`, `#[tokio::test]`, `#[tokio::test(…)]`).
        let mut marks = Vec::new();
        let mut offset = 0;
        for line in text.split_inclusive('\n') {
            let t = line.trim_start();
            if t.starts_with("#[test]") || t.starts_with("#[tokio::test") {
                marks.push(offset);
            }
            offset += line.len();
        }
        for (n, &at) in marks.iter().enumerate() {
            let body = &text[at..marks.get(n + 1).copied().unwrap_or(text.len())];
            let name = body
                .split("fn ")
                .nth(1)
                .and_then(|rest| rest.split(['(', '<']).next())
                .unwrap_or("?")
                .to_owned();
            let ignored = body.lines().take(4).any(|l| l.trim_start().starts_with("#[ignore"));
            found.push((name, body.to_owned(), ignored));
        }
    }
    found
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The table, as the README must show it.
fn table() -> String {
    let root = root();
    let suites: BTreeMap<String, Vec<(String, String, bool)>> =
        std::fs::read_dir(root.join("tests/tests"))
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                (name, tests_in(&rust_files(&e.path())))
            })
            .collect();
    let crates: usize = ["shared", "origin", "edge", "bench"]
        .iter()
        .map(|c| {
            let mut files = rust_files(&root.join(c).join("src"));
            files.extend(rust_files(&root.join(c).join("tests")));
            tests_in(&files).len()
        })
        .sum();
    let origin = &suites["origin"];
    let private: Vec<&str> = origin
        .iter()
        .filter(|(_, body, _)| {
            body.contains("private_redis()") || body.contains("RedisServer::start")
        })
        .map(|(name, ..)| name.as_str())
        .collect();
    let cluster = suites["cluster"].len();
    let mut rows = vec![
        "| tests | how many | pass 1: plaintext | pass 2: TLS | pass 3: PgBouncer (TLS) + TLS Redis Cluster |".to_owned(),
        "|---|---:|---|---|---|".to_owned(),
        format!(
            "| `origin` suite | {} | yes | yes | yes |",
            origin.len()
        ),
        format!(
            "| … of which on a standalone Redis of their own (they stop, pause or count one server) | {} | plaintext | TLS | TLS, standalone (not the cluster) |",
            private.len()
        ),
        format!("| `cluster` suite (clusters of their own) | {cluster} | plaintext | — | TLS |"),
    ];
    for (name, tests) in &suites {
        if name == "origin" || name == "cluster" {
            continue;
        }
        let ignored = tests.iter().filter(|(.., i)| *i).count();
        // Ignored tests run in a target of their own, named by the suite.
        let target = if name == "image" { "make image-test" } else { "make fleet" };
        let first = match ignored {
            0 => "yes".to_owned(),
            n if n == tests.len() => format!("no: `{target}`"),
            n => format!("yes ({n} in `{target}`)"),
        };
        rows.push(format!("| `{name}` suite | {} | {first} | — | — |", tests.len()));
    }
    rows.push(format!(
        "| unit and property tests of `shared`, `origin`, `edge`, `bench` | {crates} | yes | — | — |"
    ));
    rows.push(String::new());
    rows.push(format!(
        "On a standalone Redis of their own: {}.",
        private.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
    ));
    rows.join("\n")
}

#[test]
fn the_readme_says_which_tests_run_on_which_back_end() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let (begin, end) = ("<!-- backends:begin -->", "<!-- backends:end -->");
    let start = readme.find(begin).map(|at| at + begin.len());
    let stop = readme.find(end);
    let expected = table();
    let found = match (start, stop) {
        (Some(a), Some(b)) if a <= b => readme[a..b].trim(),
        _ => "",
    };
    assert_eq!(found, expected.trim(), "README's back-ends table; it should read:\n{expected}");
}
