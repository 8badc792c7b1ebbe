//! The origin's hit path and its router agree (#22 item 3): on arbitrary catalog paths, a path
//! the hit path takes (`EntryRoute::parse`, answered before routing) is one axum's router matches
//! to the same pattern with the same parameters, so answering it early changes nothing. The
//! router here is axum's own matcher over the patterns the origin's router serves (read from the
//! checked-in `openapi.json`, itself checked against the served document).

#![allow(clippy::unwrap_used)]

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, RawPathParams};
use axum::http::{Request, StatusCode, Uri};
use axum::routing::get;
use proptest::prelude::*;
use shared::route::{COUNTRIES_ROUTE, EntryRoute, PRICE_ROUTE, PROVIDERS_ROUTE, SERVICES_ROUTE};
use tower::ServiceExt;

const BULK_ROUTE: &str = "/v1/catalog/{provider}/prices/{country}";

/// What the router made of a path: its pattern and decoded parameters.
async fn echo(matched: MatchedPath, params: RawPathParams) -> String {
    let values: Vec<String> = params.iter().map(|(_, v)| v.to_owned()).collect();
    format!("{}|{}", matched.as_str(), values.join("|"))
}

fn router() -> Router {
    let spec =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&spec).unwrap();
    let mut router = Router::new();
    for pattern in [
        PROVIDERS_ROUTE,
        COUNTRIES_ROUTE,
        SERVICES_ROUTE,
        PRICE_ROUTE,
        BULK_ROUTE,
    ] {
        assert!(
            doc["paths"].get(pattern).is_some(),
            "the origin serves {pattern}"
        );
        router = router.route(pattern, get(echo));
    }
    router
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-z0-9][a-z0-9_-]{0,12}",
        1 => "[A-Z][a-z0-9]{0,4}",
        1 => "[a-z]{1,3}%[0-9A-F]{2}[a-z]{0,2}",
        1 => Just(String::new()),
        1 => "[a-z0-9]{33,40}",
        1 => "[a-z]{1,4}[:*.~+][a-z]{0,3}",
    ]
}

fn catalog_path() -> impl Strategy<Value = String> {
    let shape = prop_oneof![
        Just(vec!["providers".to_owned()]),
        segment().prop_map(|p| vec![p, "countries".into()]),
        segment().prop_map(|p| vec![p, "services".into()]),
        (segment(), segment(), segment()).prop_map(|(p, c, s)| vec![p, "prices".into(), c, s]),
        (segment(), segment()).prop_map(|(p, c)| vec![p, "prices".into(), c]),
    ];
    (shape, 0..8u8).prop_map(|(parts, twist)| {
        let path = format!("/v1/catalog/{}", parts.join("/"));
        match twist {
            0 => format!("{path}/"),
            1 => path.replacen("/catalog/", "/catalog//", 1),
            2 => format!("{path}/extra"),
            _ => path,
        }
    })
}

#[test]
fn the_hit_path_takes_only_what_the_router_routes_the_same_way() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let router = router();
    let taken = std::cell::Cell::new(0);
    proptest!(ProptestConfig::with_cases(512), |(path in catalog_path())| {
        let Ok(uri) = path.parse::<Uri>() else {
            return Ok(());
        };
        let request = Request::get(uri).body(Body::empty()).unwrap();
        let routed = runtime.block_on(async {
            let resp = router.clone().oneshot(request).await.unwrap();
            if resp.status() != StatusCode::OK {
                return None;
            }
            let body = axum::body::to_bytes(resp.into_body(), 4096).await.unwrap();
            Some(String::from_utf8(body.to_vec()).unwrap())
        });
        if let Some(entry) = EntryRoute::parse(&path) {
            taken.set(taken.get() + 1);
            let params: Vec<&str> = match entry {
                EntryRoute::Providers => vec![],
                EntryRoute::Countries { provider } | EntryRoute::Services { provider } => {
                    vec![provider]
                }
                EntryRoute::Price(c) => vec![c.provider, c.country, c.service],
            };
            let expected = format!("{}|{}", entry.pattern(), params.join("|"));
            prop_assert_eq!(routed, Some(expected), "{}", path);
        }
    });
    assert!(
        taken.get() > 50,
        "the hit path's useful branch ran {} times",
        taken.get()
    );
}
