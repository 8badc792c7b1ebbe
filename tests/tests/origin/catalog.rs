//! Each catalog route: status, JSON shape, policy headers, ETag and 304, 400 and 404 bodies.

use harness::{AppOptions, json};
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use shared::DataType;

use crate::common::{absent_price, priced_services, seeded, some_price};

/// 200 with the data type's Cache-Control and a strong ETag; then 304 (plain and weak forms)
/// with the same validators and no body. Returns the JSON body.
async fn check_cacheable(app: &harness::TestApp, path: &str, data: DataType) -> serde_json::Value {
    let resp = app.get(path).await;
    assert_eq!(resp.status(), StatusCode::OK, "{path}");
    let cc = resp.headers()[CACHE_CONTROL].to_str().unwrap().to_owned();
    assert_eq!(cc, data.policy().cache_control(), "{path}");
    assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
    let etag = resp.headers()[ETAG].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && !etag.starts_with("W/"), "strong etag: {etag}");
    let body = resp.bytes().await.unwrap();
    assert_eq!(etag, shared::etag::strong_etag(&body), "ETag is the body's");

    for candidate in [etag.clone(), format!("W/{etag}"), format!("\"other\", {etag}")] {
        let again =
            app.client.get(app.url(path)).header(IF_NONE_MATCH, candidate).send().await.unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(again.headers()[ETAG].to_str().unwrap(), etag);
        assert_eq!(again.headers()[CACHE_CONTROL].to_str().unwrap(), cc);
        assert!(again.bytes().await.unwrap().is_empty());
    }
    let stale = app
        .client
        .get(app.url(path))
        .header(IF_NONE_MATCH, "\"0000000000000000\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::OK, "a different tag gets the body");
    serde_json::from_slice(&body).unwrap()
}

async fn check_error(app: &harness::TestApp, path: &str, status: StatusCode, code: &str) -> String {
    let resp = app.get(path).await;
    assert_eq!(resp.status(), status, "{path}");
    assert_eq!(resp.headers()[CONTENT_TYPE], "application/json", "{path}");
    assert_eq!(resp.headers()[CACHE_CONTROL], "private, no-store", "{path}");
    let body = json(resp).await;
    assert_eq!(body["error"]["code"], code, "{path}: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default().to_owned();
    assert!(!message.is_empty(), "{path}: {body}");
    message
}

#[tokio::test]
async fn providers_route() {
    let s = seeded(AppOptions::default()).await;
    let body = check_cacheable(&s.app, "/v1/catalog/providers", DataType::Providers).await;
    let codes: Vec<&str> =
        body["providers"].as_array().unwrap().iter().map(|p| p["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["5sim", "onlinesim", "sms-activate"]);
    assert!(body["providers"][0]["name"].is_string());
}

#[tokio::test]
async fn countries_and_services_routes() {
    let s = seeded(AppOptions::default()).await;
    let (provider, ..) = some_price(&s.db.pool, 0).await;

    let body =
        check_cacheable(&s.app, &format!("/v1/catalog/{provider}/countries"), DataType::Countries)
            .await;
    assert_eq!(body["provider"], provider);
    let want: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT c.code FROM prices p JOIN providers pr ON pr.id = p.provider_id
           JOIN countries c ON c.id = p.country_id WHERE pr.code = $1 ORDER BY 1",
    )
    .bind(&provider)
    .fetch_all(&s.db.pool)
    .await
    .unwrap();
    let got: Vec<&str> =
        body["countries"].as_array().unwrap().iter().map(|c| c["code"].as_str().unwrap()).collect();
    assert_eq!(got, want);
    assert!(body["countries"][0]["name"].as_str().is_some_and(|n| !n.is_empty()));

    let body =
        check_cacheable(&s.app, &format!("/v1/catalog/{provider}/services"), DataType::Services)
            .await;
    assert_eq!(body["provider"], provider);
    let want: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT s.code FROM prices p JOIN providers pr ON pr.id = p.provider_id
           JOIN services s ON s.id = p.service_id WHERE pr.code = $1 ORDER BY 1",
    )
    .bind(&provider)
    .fetch_all(&s.db.pool)
    .await
    .unwrap();
    let got: Vec<&str> =
        body["services"].as_array().unwrap().iter().map(|c| c["code"].as_str().unwrap()).collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn single_price_route() {
    let s = seeded(AppOptions::default()).await;
    let (p, c, sv, price, stock) = some_price(&s.db.pool, 7).await;
    let body =
        check_cacheable(&s.app, &format!("/v1/catalog/{p}/prices/{c}/{sv}"), DataType::Prices)
            .await;
    assert_eq!(
        body,
        serde_json::json!({"provider": p, "country": c, "service": sv, "price_cents": price,
            "availability": shared::types::Availability::of(stock)})
    );
    assert!(body["price_cents"].is_i64(), "money is an integer");
}

#[tokio::test]
async fn bulk_prices_route() {
    let s = seeded(AppOptions::default()).await;
    let (p, c, ..) = some_price(&s.db.pool, 0).await;
    let priced = priced_services(&s.db.pool, &p, &c).await;
    let (ap, ac, absent) = absent_price(&s.db.pool).await;

    // Named services come back sorted by code, whatever the asked order (one answer per set);
    // unknown or unpriced ones are listed as unavailable.
    let asked = format!("{},{},no-such-service,{}", priced[2], priced[0], priced[1]);
    let body = check_cacheable(
        &s.app,
        &format!("/v1/catalog/{p}/prices/{c}?services={asked}"),
        DataType::Prices,
    )
    .await;
    let got: Vec<&str> =
        body["prices"].as_array().unwrap().iter().map(|x| x["service"].as_str().unwrap()).collect();
    assert_eq!(got, [priced[0].as_str(), priced[1].as_str(), priced[2].as_str()]);
    assert_eq!(body["unavailable"], serde_json::json!(["no-such-service"]));
    let single = json(s.app.get(&format!("/v1/catalog/{p}/prices/{c}/{}", priced[0])).await).await;
    assert_eq!(body["prices"][0], single, "bulk elements equal the single-price bodies");
    let reordered = format!("{},no-such-service,{},{}", priced[1], priced[0], priced[2]);
    let again = s.app.get(&format!("/v1/catalog/{p}/prices/{c}?services={reordered}")).await;
    assert_eq!(json(again).await, body, "every ordering of one set is one answer");

    // Without a list: every service the provider prices in that country.
    let all = json(s.app.get(&format!("/v1/catalog/{p}/prices/{c}")).await).await;
    let got: Vec<String> = all["prices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["service"].as_str().unwrap().to_owned())
        .collect();
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(sorted, priced);
    assert_eq!(all["unavailable"], serde_json::json!([]));

    let body =
        json(s.app.get(&format!("/v1/catalog/{ap}/prices/{ac}?services={absent}")).await).await;
    assert_eq!(body["prices"], serde_json::json!([]));
    assert_eq!(body["unavailable"], serde_json::json!([absent]));
}

#[tokio::test]
async fn client_mistakes_are_json_400s() {
    let s = seeded(AppOptions::default()).await;
    let long = "a".repeat(33);
    for path in [
        "/v1/catalog/BAD/countries".to_owned(),
        "/v1/catalog/a%20b/services".to_owned(),
        format!("/v1/catalog/{long}/services"),
        "/v1/catalog/5sim/prices/US/whatsapp".to_owned(),
        "/v1/catalog/5sim/prices/us/what.sapp".to_owned(),
        "/v1/catalog/5sim/prices/us?services=".to_owned(),
        "/v1/catalog/5sim/prices/us?services=a,,b".to_owned(),
        "/v1/catalog/5sim/prices/us?services=a,B".to_owned(),
        format!(
            "/v1/catalog/5sim/prices/us?services={}",
            (0..201).map(|i| format!("s{i}")).collect::<Vec<_>>().join(",")
        ),
        "/v1/catalog/%F0%9F%92%A5/countries".to_owned(),
    ] {
        check_error(&s.app, &path, StatusCode::BAD_REQUEST, "bad_request").await;
    }
    let msg = check_error(
        &s.app,
        "/v1/catalog/5sim/prices/US/whatsapp",
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    assert!(msg.contains("lowercase"), "the message says what is wrong: {msg}");
}

#[tokio::test]
async fn unknown_things_are_json_404s() {
    let s = seeded(AppOptions::default()).await;
    let (p, c, sv, ..) = some_price(&s.db.pool, 0).await;
    let (ap, ac, asv) = absent_price(&s.db.pool).await;
    for path in [
        "/v1/catalog/nobody/countries".to_owned(),
        "/v1/catalog/nobody/services".to_owned(),
        format!("/v1/catalog/nobody/prices/{c}/{sv}"),
        format!("/v1/catalog/{p}/prices/zz/{sv}"),
        format!("/v1/catalog/{p}/prices/{c}/no-such-service"),
        format!("/v1/catalog/{ap}/prices/{ac}/{asv}"),
        format!("/v1/catalog/{p}/prices/zz?services={sv}"),
        "/v1/catalog/nobody/prices/us".to_owned(),
        "/v1/nothing-here".to_owned(),
        "/v1/catalog/a/b/c/d/e".to_owned(),
    ] {
        check_error(&s.app, &path, StatusCode::NOT_FOUND, "not_found").await;
    }
    let resp = s.app.client.post(s.app.url("/v1/catalog/providers")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(json(resp).await["error"]["code"], "method_not_allowed");
}

/// Large bodies come brotli- or gzip-compressed as the client asks, compressed once per entry,
/// each representation with its own strong ETag (and its own 304); small ones stay as they are.
#[tokio::test]
async fn large_bodies_come_compressed_once_per_entry_with_their_own_etag() {
    let s = seeded(AppOptions::default()).await;
    let path = "/v1/catalog/5sim/prices/ad"; // every service: a few KB
    let plain = s.app.get(path).await;
    assert_eq!(plain.headers()["vary"], "Accept-Encoding");
    assert!(plain.headers().get("content-encoding").is_none());
    let etag = plain.headers()["etag"].to_str().unwrap().to_owned();
    let plain = plain.bytes().await.unwrap();
    assert!(plain.len() >= 1024, "{} bytes", plain.len());
    let get = |coding: &'static str, inm: Option<String>| {
        let mut req = s.app.client.get(s.app.url(path)).header("accept-encoding", coding);
        if let Some(v) = inm {
            req = req.header("if-none-match", v);
        }
        req.send()
    };
    for coding in ["br", "gzip"] {
        for _ in 0..3 {
            let r = get(coding, None).await.unwrap();
            assert_eq!(r.headers()["content-encoding"], coding);
            let tagged = r.headers()["etag"].to_str().unwrap().to_owned();
            assert_eq!(tagged, format!("{}-{coding}\"", etag.trim_end_matches('"')));
            let bytes = r.bytes().await.unwrap();
            assert!(bytes.len() * 3 < plain.len(), "{coding}: {} of {}", bytes.len(), plain.len());
            let mut decoded = Vec::new();
            match coding {
                "br" => brotli::BrotliDecompress(&mut &bytes[..], &mut decoded).unwrap(),
                _ => {
                    let mut d = flate2::read::GzDecoder::new(&bytes[..]);
                    std::io::Read::read_to_end(&mut d, &mut decoded).unwrap();
                }
            }
            assert_eq!(decoded, plain.to_vec(), "{coding} decodes to the same JSON");
            let again = get(coding, Some(tagged)).await.unwrap();
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        }
        // The identity ETag names other bytes: no 304 for a compressed representation.
        assert_eq!(get(coding, Some(etag.clone())).await.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(s.app.state.compressed.made(), 2, "once per coding, not per request");
    // A single price is small: sent as it is, whatever the client accepts.
    let (p, c, sv, ..) = some_price(&s.db.pool, 3).await;
    let small = get_as_coding(&s.app, &format!("/v1/catalog/{p}/prices/{c}/{sv}"), "br").await;
    assert!(small.headers().get("content-encoding").is_none());
}

async fn get_as_coding(app: &harness::TestApp, path: &str, coding: &str) -> reqwest::Response {
    app.client.get(app.url(path)).header("accept-encoding", coding).send().await.unwrap()
}

/// Single-entry catalog reads are answered before routing (`http_hit_path_total`, in the
/// monitoring suite); they must answer exactly what the router answers. Each route with a code
/// is asked once with an escaped spelling (only the router takes those) and once plainly (the
/// hit path, the entry now in L1), for each coding and with a matching `If-None-Match`: same
/// status, body and headers but the per-request ones. So is a 404. (The providers route has no
/// code to escape, and an escaped static segment matches no route.)
#[tokio::test]
async fn a_warm_hit_answers_exactly_what_the_router_answers() {
    let s = seeded(AppOptions::default()).await;
    let (p, c, sv, ..) = some_price(&s.db.pool, 5).await;
    let escape_first = |path: &str| {
        // "/v1/catalog/5sim/…" → "/v1/catalog/%35sim/…": the same route, decoded by the router.
        let (head, rest) = path.split_at("/v1/catalog/".len());
        let first = rest.as_bytes()[0];
        format!("{head}%{first:02X}{}", &rest[1..])
    };
    let per_request = ["date", "x-request-id", "ratelimit", "ratelimit-policy"];
    let headers = |r: &reqwest::Response| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = r
            .headers()
            .iter()
            .filter(|(k, _)| !per_request.contains(&k.as_str()))
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        v.sort();
        v
    };
    // The hit path must really have answered the plain spellings (a process-wide counter, that
    // the tests beside this one can only add to): at least one count per plain request here.
    let hits = || async {
        let text = s.app.ops_get("/metrics").await.text().await.unwrap();
        let line = text.lines().find(|l| l.starts_with("http_hit_path_total"));
        line.and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
    };
    let hits_before = hits().await;
    for path in [
        format!("/v1/catalog/{p}/countries"),
        format!("/v1/catalog/{p}/services"),
        format!("/v1/catalog/{p}/prices/{c}/{sv}"),
    ] {
        let escaped = escape_first(&path);
        for coding in ["identity", "br", "gzip"] {
            let get = |p: String, inm: Option<String>| {
                let mut req = s.app.client.get(s.app.url(&p)).header("accept-encoding", coding);
                if let Some(v) = inm {
                    req = req.header("if-none-match", v);
                }
                req.send()
            };
            let routed = get(escaped.clone(), None).await.unwrap();
            let hit = get(path.clone(), None).await.unwrap();
            assert_eq!(routed.status(), StatusCode::OK, "{escaped}");
            assert_eq!(hit.status(), StatusCode::OK, "{path}");
            assert_eq!(headers(&routed), headers(&hit), "{path} ({coding})");
            for r in [&routed, &hit] {
                for h in ["x-request-id", "ratelimit", "ratelimit-policy"] {
                    assert!(r.headers().contains_key(h), "{path}: {h}");
                }
            }
            let etag = hit.headers()["etag"].to_str().unwrap().to_owned();
            assert_eq!(routed.bytes().await.unwrap(), hit.bytes().await.unwrap(), "{path}");
            let routed = get(escaped.clone(), Some(etag.clone())).await.unwrap();
            let hit = get(path.clone(), Some(etag)).await.unwrap();
            assert_eq!(routed.status(), StatusCode::NOT_MODIFIED, "{escaped}");
            assert_eq!(hit.status(), StatusCode::NOT_MODIFIED, "{path}");
            assert_eq!(headers(&routed), headers(&hit), "{path} ({coding}, 304)");
        }
    }
    let answered = hits().await - hits_before;
    assert!(answered >= 18.0, "the hit path answered {answered} of the 18 plain requests");
    let unknown = "/v1/catalog/nosuchprovider/countries";
    let (routed, plain) = (s.app.get(&escape_first(unknown)).await, s.app.get(unknown).await);
    assert_eq!(routed.status(), StatusCode::NOT_FOUND);
    assert_eq!(plain.status(), StatusCode::NOT_FOUND);
    assert_eq!(headers(&routed), headers(&plain));
    assert_eq!(routed.bytes().await.unwrap(), plain.bytes().await.unwrap());
}
