#![allow(clippy::expect_used)]

//! The checked-in `openapi.json` (what the TypeScript client is generated from) is exactly what
//! the code generates: a route, a body or a status changed without `make openapi` fails here.

#[test]
fn the_checked_in_openapi_json_is_what_the_code_generates() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.json");
    let checked_in = std::fs::read_to_string(path).expect("openapi.json at the repository root");
    let generated = origin::http::openapi_document();
    assert!(
        checked_in == generated,
        "openapi.json differs from what the code generates: run `make openapi` and commit it"
    );
}

#[test]
fn every_operation_documents_its_errors_and_the_shared_refusals() {
    let doc: serde_json::Value =
        serde_json::from_str(&origin::http::openapi_document()).expect("JSON");
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            operations += 1;
            let responses = op["responses"].as_object().expect("responses");
            for status in ["429", "503", "504"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} lacks {status}"
                );
            }
            for (status, r) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let schema = &r["content"]["application/json"]["schema"]["$ref"];
                    assert_eq!(
                        schema, "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
            let secured = op.get("security").is_some();
            let personal = path.starts_with("/v1/me")
                || path.starts_with("/v1/admin")
                || path.starts_with("/v1/ops")
                || path == "/v1/activations"
                || path.starts_with("/v1/auth/logout");
            assert_eq!(secured, personal, "{method} {path}: security schemes");
        }
    }
    assert_eq!(operations, 18);
}
