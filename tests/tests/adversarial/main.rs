//! The origin as an attacker meets it: every test here sends what a hostile client sends and
//! checks the system holds (each failed against the code before its fix). Real PostgreSQL, real
//! Redis, the real origin on a real port.

mod catalog;
mod connections;
mod outage;
mod requests;
mod signin;
mod sync;

use std::time::Duration;

use harness::{AppOptions, PASSWORD, TestApp, TestDb, assert_error};
use origin::seed::Scale;
use reqwest::{Method, StatusCode};
use serde_json::json as j;

async fn app(options: AppOptions) -> (TestDb, TestApp) {
    let db = TestDb::new(Some(Scale::Small)).await;
    let app = TestApp::spawn(&db, options).await;
    (db, app)
}

/// Every key of this app in Redis, with everything it holds, read with the command for its
/// type (a `GET` of a set or a sorted set is an error, which must not read as "empty").
async fn keys_and_values(app: &TestApp) -> Vec<(String, String)> {
    let mut conn = app.redis().await;
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{}*", app.prefix)).query_async(&mut conn).await.unwrap();
    let mut out = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await.unwrap();
        let read = match kind.as_str() {
            "string" => redis::cmd("GET").arg(&key).to_owned(),
            "set" => redis::cmd("SMEMBERS").arg(&key).to_owned(),
            "zset" => redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).arg("WITHSCORES").to_owned(),
            "hash" => redis::cmd("HGETALL").arg(&key).to_owned(),
            "list" => redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).to_owned(),
            "none" => continue, // expired between KEYS and TYPE
            other => panic!("{key}: a {other} the test cannot read"),
        };
        let value: Vec<String> = if kind == "string" {
            vec![read.query_async::<String>(&mut conn).await.unwrap()]
        } else {
            read.query_async(&mut conn).await.unwrap()
        };
        out.push((key, value.join(" ")));
    }
    out
}

/// Item 4: a load of an unknown name (a successful load of "nothing") releases the fleet fill
/// lock, and repeated asks for the same unknown name are answered without PostgreSQL for a while.
#[tokio::test]
async fn a_failed_load_releases_the_fill_lock_and_404_floods_stay_off_the_database() {
    let (_db, app) = app(AppOptions::default()).await;
    app.wait_for_l1().await;
    let path = "/v1/catalog/nobody/countries";
    assert_error(app.get(path).await, 404, "not_found").await;
    assert_eq!(
        app.ttl(&shared::keys::fill_lock("cache:countries:nobody")).await,
        -2,
        "the lock was released"
    );
    let before = app.db_queries();
    for _ in 0..20 {
        assert_error(app.get(path).await, 404, "not_found").await;
    }
    assert_eq!(app.db_queries() - before, 0, "known unknowns are answered from the cache");
}

/// A load that fails (its PostgreSQL connection cut mid-query) gives its fill lock up before it
/// answers, so another replica's requests waiting on that lock load at once instead of sitting
/// out its lease: the lock's holder is read while the load hangs, and right after the failed
/// answer the lock is no longer that holder's; the waiters then all get the price. (Waiters in
/// the leader's own process share its load, and its answer.)
#[tokio::test]
async fn a_load_cut_mid_query_releases_its_fill_lock_for_the_waiters() {
    let db = TestDb::new(Some(Scale::Small)).await;
    let prefix = harness::key_prefix();
    let app = TestApp::spawn_with_prefix(&db, AppOptions::default(), prefix.clone()).await;
    let other = TestApp::spawn_with_prefix(&db, AppOptions::default(), prefix).await;
    let (p, c, s, price): (String, String, String, i64) = sqlx::query_as(
        "SELECT pr.code, c.code, s.code, p.price_cents FROM prices p
           JOIN providers pr ON pr.id = p.provider_id JOIN countries c ON c.id = p.country_id
           JOIN services s ON s.id = p.service_id ORDER BY pr.code, c.code, s.code OFFSET 11 LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let path = format!("/v1/catalog/{p}/prices/{c}/{s}");
    let lock = app.key(&shared::keys::fill_lock(&format!("cache:prices:{p}:{c}:{s}")));
    let mut conn = app.redis().await;
    let holder = async |conn: &mut origin::redis::Conn| -> Option<String> {
        redis::cmd("GET").arg(&lock).query_async(conn).await.unwrap()
    };

    // The provider's lists cached first (a price's load reads them), so the price's load is
    // one query. It hangs on a table lock, holding the fill lock; others wait on it.
    for list in ["countries", "services"] {
        for replica in [&app, &other] {
            let r = replica.get(&format!("/v1/catalog/{p}/{list}")).await;
            assert_eq!(r.status(), StatusCode::OK);
        }
    }
    let mut blocker = db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE prices IN ACCESS EXCLUSIVE MODE").execute(&mut *blocker).await.unwrap();
    let leader = tokio::spawn({
        let (client, url) = (app.client.clone(), app.url(&path));
        async move { client.get(url).send().await.unwrap().status() }
    });
    let waiting = "SELECT pid FROM pg_stat_activity WHERE datname = current_database()
                     AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()";
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (pid, held_by) = loop {
        let pids: Vec<i32> = sqlx::query_scalar(waiting).fetch_all(&db.pool).await.unwrap();
        if let ([pid], Some(owner)) = (pids.as_slice(), holder(&mut conn).await) {
            break (*pid, owner);
        }
        assert!(std::time::Instant::now() < deadline, "the load never reached the database");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let waiters: Vec<_> = (0..5)
        .map(|_| {
            let (client, url) = (other.client.clone(), other.url(&path));
            tokio::spawn(async move {
                let r = client.get(url).send().await.unwrap();
                (r.status(), r.json::<serde_json::Value>().await.unwrap())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await; // they are polling the lock

    // Cut the loading connection, then let the table go.
    let _: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    blocker.rollback().await.unwrap();
    let status = leader.await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "the cut load fails");
    let now = holder(&mut conn).await;
    assert_ne!(now.as_deref(), Some(held_by.as_str()), "the failed load still holds the lock");
    for w in waiters {
        let (status, body) = w.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["price_cents"], price);
    }
}

/// Item 8: client-chosen methods and paths never become metric labels. The registry is the
/// process's, shared with the other tests running beside this one, so the check is on what any
/// request can add: every `route` label is a routed pattern or `unmatched`, every `method` one of
/// the standard nine or `OTHER`, and the series fifty hostile methods and paths land in are the
/// ones one warm-up request of each made.
#[tokio::test]
async fn hostile_methods_and_paths_do_not_grow_metric_series() {
    let (_db, app) = app(AppOptions::default()).await;
    let labels = |line: &str, name: &str| -> Option<String> {
        let start = line.find(&format!("{name}=\""))? + name.len() + 2;
        Some(line[start..].split('"').next()?.to_owned())
    };
    let http = |text: &str| -> Vec<String> {
        let series = text.lines().filter(|l| l.starts_with("http_request"));
        series.map(|l| l.rsplit_once(' ').map_or(l, |(name, _)| name).to_owned()).collect()
    };
    let ours = |text: &str| -> std::collections::BTreeSet<String> {
        let lines = http(text).into_iter();
        lines
            .filter(|l| l.contains("method=\"OTHER\"") || l.contains("route=\"unmatched\""))
            .collect()
    };
    let warm = |app: &TestApp, m: Method, p: String| app.client.request(m, app.url(&p)).send();
    warm(&app, Method::from_bytes(b"WARM").unwrap(), "/healthz".into()).await.unwrap();
    warm(&app, Method::GET, "/warm-unknown".into()).await.unwrap();
    let before = ours(&app.ops_get("/metrics").await.text().await.unwrap());
    assert!(!before.is_empty(), "the warm-up requests were counted");
    for i in 0..50 {
        let method = Method::from_bytes(format!("Z{i}").as_bytes()).unwrap();
        warm(&app, method, "/healthz".into()).await.unwrap();
        warm(&app, Method::GET, format!("/nothing/{i}")).await.unwrap();
    }
    let text = app.ops_get("/metrics").await.text().await.unwrap();
    let doc: serde_json::Value = serde_json::from_str(&origin::http::openapi_document()).unwrap();
    let mut routes: Vec<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    routes.extend(["unmatched".to_owned(), "/openapi.json".to_owned()]);
    let methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"];
    for line in http(&text) {
        let route = labels(&line, "route").unwrap();
        assert!(routes.contains(&route), "a route label that is no route: {line}");
        let method = labels(&line, "method").unwrap();
        assert!(method == "OTHER" || methods.contains(&method.as_str()), "{line}");
    }
    let after = ours(&text);
    let grown: Vec<_> = after.difference(&before).collect();
    assert!(grown.is_empty(), "the series grew with hostile input: {grown:#?}");
}

/// Item 12: every "dependency unavailable" answer is a 503 the client can act on.
#[tokio::test]
async fn a_database_outage_is_a_503_with_retry_after() {
    let db = TestDb::new(None).await;
    let dead = format!("postgres://postgres@127.0.0.1:{}/none", harness::spare_port());
    let options =
        AppOptions::default().env("DATABASE_URL", &dead).env("DB_CONNECT_TIMEOUT_SECS", "1");
    let app = TestApp::spawn(&db, options).await;
    let resp = app.get("/v1/catalog/providers").await;
    let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    assert!(retry.is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1)), "Retry-After");
    assert_error(resp, 503, "unavailable").await;
    let creds = j!({"email": "a@b.co", "password": PASSWORD});
    let resp = app.post_json("/v1/auth/login", &creds).await;
    assert!(resp.headers().contains_key("retry-after"));
    assert_error(resp, 503, "unavailable").await;
}

/// Item 13: request bodies with fields the API does not know are refused, not half-read.
#[tokio::test]
async fn unknown_fields_are_refused_everywhere() {
    let (_db, app) = app(AppOptions::default()).await;
    let admin = app.admin("root@nexnum.test").await;
    let (user, token) = app.user_with("u@example.com", 0).await;
    let extra = j!({"email": "x@example.com", "password": PASSWORD, "role": "admin"});
    assert_error(app.post_json("/v1/auth/register", &extra).await, 400, "bad_request").await;
    assert_error(app.post_json("/v1/auth/login", &extra).await, 400, "bad_request").await;
    let credit = format!("/v1/admin/users/{user}/credit");
    let body = j!({"amount_cents": 5, "note": "x"});
    assert_error(app.post_json_as(&admin, &credit, &body).await, 400, "bad_request").await;
    let body = j!({"price_cents": 5, "stock": 1, "currency": "EUR"});
    let path = "/v1/admin/prices/5sim/ad/whatsapp";
    assert_error(app.put_json_as(&admin, path, &body).await, 400, "bad_request").await;
    let body = j!({"provider": "5sim", "country": "ad", "service": "whatsapp", "price_cents": 0});
    assert_error(app.buy(&token, &body, None).await, 400, "bad_request").await;
}

/// Item 13, and one id from edge to origin (#23 item 3): a request id is adopted only from the
/// edge (with its secret), and only when short and well formed; anyone else's is replaced, so a
/// client cannot plant ids (or markup) in the logs.
#[tokio::test]
async fn request_ids_are_adopted_from_the_edge_only() {
    const SECRET: &str = "edge-secret-0123456789abcdef";
    let (_db, app) = app(AppOptions::default().env("EDGE_SECRET", SECRET)).await;
    let id_for = |sent: String, secret: Option<&'static str>| {
        let mut req = app.client.get(app.url("/healthz")).header("x-request-id", sent);
        if let Some(secret) = secret {
            req = req.header("x-edge-secret", secret);
        }
        async move {
            let resp = req.send().await.unwrap();
            resp.headers()["x-request-id"].to_str().unwrap().to_owned()
        }
    };
    let good = "edge-7f3a9c01-trace".to_owned();
    assert_eq!(id_for(good.clone(), Some(SECRET)).await, good, "the edge's id is propagated");
    for secret in [None, Some("not-the-edge-secret-at-all")] {
        let got = id_for(good.clone(), secret).await;
        assert_ne!(got, good, "a client's id ({secret:?}) is replaced");
        assert_eq!(got.len(), 32);
    }
    for bad in ["a".repeat(300), "<script>alert(1)</script>".into(), "id with spaces".into()] {
        let got = id_for(bad.clone(), Some(SECRET)).await;
        assert_ne!(got, bad);
        assert!(got.len() <= 64 && got.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    }
}

/// Item 3: whoever reads Redis (SCAN, MONITOR, a replica, an RDB file) finds no usable token.
#[tokio::test]
async fn session_tokens_are_never_stored_in_redis() {
    let (_db, app) = app(AppOptions::default()).await;
    let (_, token) = app.user_with("u@example.com", 0).await;
    assert_eq!(app.get_as(&token, "/v1/me/balance").await.status(), StatusCode::OK);
    let stored = keys_and_values(&app).await;
    assert!(stored.iter().any(|(k, _)| k.contains("session:")), "{stored:?}");
    let index = stored.iter().find(|(k, _)| k.contains("sessions:user:"));
    assert!(index.is_some_and(|(_, ids)| ids.len() >= 64), "the index was read: {stored:?}");
    for (key, value) in &stored {
        assert!(!key.contains(&token) && !value.contains(&token), "{key} holds the token");
    }
}

/// Item 1: holding more sessions buys no more requests from one address, in any tier.
#[tokio::test]
async fn accounts_do_not_multiply_an_address_budget() {
    let options = AppOptions::default().env("RATE_LIMITS", "api=6/60000,auth=6/60000");
    let (_db, app) = app(options).await;
    // Auth tier: two registrations and two sign-ins (4 of 6)...
    let (_, first) = app.user_with("u1@example.com", 0).await;
    let (_, second) = app.user_with("u2@example.com", 0).await;
    // ...then a wrong password with each token (6 of 6): the address's budget is spent.
    let guess = j!({"email": "victim@example.com", "password": "guess guess guess"});
    for token in [&first, &second] {
        let r = app.post_json_as(token, "/v1/auth/login", &guess).await;
        assert_error(r, 401, "unauthorized").await;
    }
    let r = app.post_json("/v1/auth/login", &guess).await;
    assert_error(r, 429, "rate_limited").await;
    // API tier: three requests with each token use the address's six.
    for token in [&first, &second, &first, &second, &first, &second] {
        assert_eq!(app.get_as(token, "/v1/me/balance").await.status(), StatusCode::OK);
    }
    assert_error(app.get_as(&first, "/v1/me/balance").await, 429, "rate_limited").await;
}

/// Item 2: `origin admin create` never hands admin rights to an account someone else may hold;
/// `--promote` does it deliberately and ends every session the account had.
#[tokio::test]
async fn admin_create_never_takes_over_a_live_account() {
    let (db, app) = app(AppOptions::default()).await;
    let (user, squatter) = app.user_with("ops@example.com", 0).await;
    let credit = format!("/v1/admin/users/{user}/credit");
    let env = [("DATABASE_URL", db.url.clone())];
    let create = ["admin", "create", "--email", "ops@example.com", "--password", PASSWORD];
    let out = harness::process::run_origin(&create, &env);
    assert!(!out.status.success(), "an existing account is not taken over silently");
    let r = app.post_json_as(&squatter, &credit, &j!({"amount_cents": 1000000})).await;
    assert_error(r, 403, "forbidden").await;

    let env = [
        ("DATABASE_URL", db.url.clone()),
        ("REDIS_URL", app.redis_url.clone()),
        ("REDIS_KEY_PREFIX", app.prefix.clone()),
    ];
    let out = harness::process::run_origin(&[&create[..], &["--promote"]].concat(), &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = app.get_as(&squatter, "/v1/me/balance").await;
    assert_error(r, 401, "unauthorized").await;
    let admin = app.login("ops@example.com").await;
    let r = app.post_json_as(&admin, &credit, &j!({"amount_cents": 5})).await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// Item 3: logout ends every session the request presents; "log out everywhere" ends them all.
#[tokio::test]
async fn logout_ends_every_presented_session_and_logout_all_ends_the_rest() {
    let (_db, app) = app(AppOptions::default()).await;
    let (_, bearer) = app.user_with("u@example.com", 0).await;
    let cookie = app.login("u@example.com").await;
    let req = app.client.post(app.url("/v1/auth/logout")).bearer_auth(&bearer);
    let r = req.header("cookie", format!("__Host-session={cookie}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for token in [&bearer, &cookie] {
        assert_error(app.get_as(token, "/v1/me/balance").await, 401, "unauthorized").await;
    }
    let (first, second) = (app.login("u@example.com").await, app.login("u@example.com").await);
    let r = app.post_json_as(&first, "/v1/auth/logout-all", &j!({})).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for token in [&first, &second] {
        assert_error(app.get_as(token, "/v1/me/balance").await, 401, "unauthorized").await;
    }
}

/// Item 3: a session ends at its absolute lifetime however actively it is used.
#[tokio::test]
async fn sessions_end_at_their_absolute_lifetime() {
    let (_db, app) = app(AppOptions::default().env("SESSION_MAX_AGE_SECS", "2")).await;
    // Timed from both ends of the sign-in: uses before `asked + 1.2 s` are inside the lifetime
    // and the last check after `answered + 2.2 s` is past it, however slow the sign-in was.
    app.register("u@example.com").await;
    let asked = std::time::Instant::now();
    let token = app.login("u@example.com").await;
    let answered = std::time::Instant::now();
    let mut used = 0;
    while asked.elapsed() < std::time::Duration::from_millis(1200) {
        let status = app.get_as(&token, "/v1/me/balance").await.status();
        assert_eq!(
            status,
            StatusCode::OK,
            "used {:?} after the sign-in was asked",
            asked.elapsed()
        );
        used += 1;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(used >= 2, "used actively while it lived");
    tokio::time::sleep(std::time::Duration::from_millis(2200).saturating_sub(answered.elapsed()))
        .await;
    assert_error(app.get_as(&token, "/v1/me/balance").await, 401, "unauthorized").await;
}

/// Item 7: a sign-in flood waits a bounded time for a hashing slot, then gets a 503 it can retry.
#[tokio::test]
async fn a_login_flood_is_shed_with_503_not_queued_without_bound() {
    let options = AppOptions::default()
        .env("PASSWORD_QUEUE_TIMEOUT_MS", "1")
        // Shedding is the subject here, not the per-account throttle.
        .env("LOGIN_MAX_FAILURES", "1000")
        .env("RATE_LIMITS", "auth=1000/60000");
    let (_db, app) = app(options).await;
    let guess = j!({"email": "victim@example.com", "password": "guess guess guess"});
    let flood = (0..24).map(|_| async { app.post_json("/v1/auth/login", &guess).await });
    let answers = futures::future::join_all(flood).await;
    let shed: Vec<_> = answers.iter().filter(|r| r.status() == 503).collect();
    assert!(!shed.is_empty(), "24 concurrent sign-ins on a 1 ms wait: some are shed");
    assert!(shed.iter().all(|r| r.headers().contains_key("retry-after")));
    assert!(answers.iter().all(|r| [401, 503].contains(&r.status().as_u16())));
}

/// Item 5: request bodies are bounded (a few KB of fields, never megabytes).
#[tokio::test]
async fn oversized_bodies_are_413() {
    let (_db, app) = app(AppOptions::default()).await;
    let huge = j!({"email": "a@example.com", "password": "x".repeat(100_000)});
    assert_error(app.post_json("/v1/auth/login", &huge).await, 413, "payload_too_large").await;
    assert_error(app.post_json("/v1/auth/register", &huge).await, 413, "payload_too_large").await;
    // At the boundary: a body of exactly 16 KiB is read (and refused for what it says: a
    // password longer than any account's is a failed sign-in), one byte more is 413; with a
    // declared length or chunked alike.
    let sized = |n: usize| {
        let shell = r#"{"email":"a@example.com","password":""}"#.len();
        format!(r#"{{"email":"a@example.com","password":"{}"}}"#, "x".repeat(n - shell))
    };
    let send = |body: String| {
        let req = app.client.post(app.url("/v1/auth/login"));
        req.header("content-type", "application/json").body(body).send()
    };
    assert_error(send(sized(16 * 1024)).await.unwrap(), 401, "unauthorized").await;
    let over = send(sized(16 * 1024 + 1)).await.unwrap();
    assert_error(over, 413, "payload_too_large").await;
    // Chunked, no declared length: counted as it arrives.
    let chunked = |body: String| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        let head = "POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                    Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        let (a, b) = body.split_at(body.len() / 2);
        let chunks = format!("{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n", a.len(), b.len());
        s.write_all(format!("{head}{chunks}").as_bytes()).await.unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer).await;
        answer.get(9..12).unwrap_or_default().to_owned()
    };
    assert_eq!(chunked(sized(16 * 1024)).await, "401", "exactly the limit, chunked");
    assert_eq!(chunked(sized(16 * 1024 + 1)).await, "413", "one byte over, chunked");
}

/// Reads from `stream` until the server closes it (or sends something); `None` if it is still
/// open after `guard`.
async fn closed_within(stream: &mut tokio::net::TcpStream, guard: Duration) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let read = tokio::time::timeout(guard, stream.read_to_end(&mut got)).await;
    read.ok().map(|_| got)
}

/// Item 6: a half-sent request head, or an idle kept-alive connection, is not held for long.
#[tokio::test]
async fn slow_and_idle_connections_are_dropped() {
    use tokio::io::AsyncWriteExt;
    let (_db, app) = app(AppOptions::default().env("HEADER_READ_TIMEOUT_MS", "500")).await;
    let mut slow = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    assert!(closed_within(&mut slow, Duration::from_secs(5)).await.is_some(), "half head held");
    let mut idle = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let answer = closed_within(&mut idle, Duration::from_secs(5)).await.expect("idle held");
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
}

/// Item 5: an oversized request head (headers or request line) is refused by the server itself.
#[tokio::test]
async fn oversized_request_heads_are_431() {
    let (_db, app) = app(AppOptions::default()).await;
    let req = app.client.get(app.url("/healthz")).header("x-junk", "j".repeat(64 * 1024));
    assert_eq!(req.send().await.unwrap().status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let long = format!("/v1/catalog/5sim/prices/ad?services={}", "a,".repeat(20 * 1024));
    let status = app.get(&long).await.status().as_u16();
    assert!([414, 431].contains(&status), "a 40 KB request line: {status}");
}

/// Item 6: a request stuck on the database is cut at the request timeout (504), and requests
/// beyond the concurrency bound are shed at once (503 + Retry-After) instead of queueing.
#[tokio::test]
async fn stuck_requests_time_out_and_excess_is_shed() {
    let options = AppOptions::default()
        .env("REQUEST_TIMEOUT_MS", "1500")
        .env("MAX_CONCURRENT_REQUESTS", "1")
        .env("L1_CACHE", "off");
    let (db, app) = app(options).await;
    let mut blocker = db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE prices IN ACCESS EXCLUSIVE MODE").execute(&mut *blocker).await.unwrap();
    let stuck = app.get("/v1/catalog/5sim/prices/ad/whatsapp");
    let shed = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.get("/healthz").await
    };
    // Bounded here too: without a request timeout the stuck request would wait for the lock.
    let both = tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(stuck, shed) });
    let (stuck, shed) = both.await.expect("the stuck request was never cut");
    assert!(shed.headers().contains_key("retry-after"));
    assert_error(shed, 503, "overloaded").await;
    assert_error(stuck, 504, "timeout").await;
    blocker.rollback().await.unwrap();
    let r = app.get("/v1/catalog/5sim/prices/ad/whatsapp").await;
    assert_eq!(r.status(), StatusCode::OK, "served again once the database is free");
}

/// Item 10: made-up service codes are answered (as unavailable) without parking anything in the
/// shared Redis, where sessions and rate-limit windows live.
#[tokio::test]
async fn made_up_codes_never_reach_redis() {
    let (_db, app) = app(AppOptions::default()).await;
    let junk: Vec<String> = (0..50).map(|i| format!("madeup{i}")).collect();
    let r = app.get(&format!("/v1/catalog/5sim/prices/ad?services={}", junk.join(","))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["unavailable"].as_array().unwrap().len(), 50);
    assert_error(app.get("/v1/catalog/5sim/prices/ad/madeup0").await, 404, "not_found").await;
    assert_error(app.get("/v1/catalog/nobody/services").await, 404, "not_found").await;
    let stored = keys_and_values(&app).await;
    let junk_keys: Vec<_> =
        stored.iter().filter(|(k, _)| k.contains("madeup") || k.contains("nobody")).collect();
    assert!(junk_keys.is_empty(), "{junk_keys:?}");
}

/// Item 13: an admin's credit is recorded with the admin who made it, and a retried credit
/// (same `Idempotency-Key`) lands once.
#[tokio::test]
async fn admin_credits_are_idempotent_and_name_their_actor() {
    let (_db, app) = app(AppOptions::default()).await;
    let admin = app.admin("root@nexnum.test").await;
    let (user, _) = app.user_with("u@example.com", 0).await;
    let credit = |amount: i64, key: &'static str| {
        let req = app.client.post(app.url(&format!("/v1/admin/users/{user}/credit")));
        req.bearer_auth(&admin).header("Idempotency-Key", key).json(&j!({"amount_cents": amount}))
    };
    let first = credit(500, "credit-1").send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let again = credit(500, "credit-1").send().await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<serde_json::Value>().await.unwrap()["balance_cents"], 500);
    assert_error(credit(900, "credit-1").send().await.unwrap(), 409, "conflict").await;
    let rows: Vec<(i64, Option<i64>)> = sqlx::query_as(
        "SELECT t.amount_cents, t.actor_id FROM transactions t WHERE t.user_id = $1",
    )
    .bind(user)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let admin_id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE email = 'root@nexnum.test'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, [(500, Some(admin_id))], "one ledger row, naming its admin");
}

/// Item 1: guesses at one account from many addresses (credential stuffing) are throttled per
/// account, before any hashing; other accounts are untouched.
#[tokio::test]
async fn failed_sign_ins_are_throttled_per_account_across_addresses() {
    const SECRET: &str = "adversarial-edge-secret-0123456789";
    let options = AppOptions::default()
        .env("LOGIN_MAX_FAILURES_PER_ACCOUNT", "3")
        .env("EDGE_SECRET", SECRET)
        .env("RATE_LIMITS", "auth=1000/60000");
    let (_db, app) = app(options).await;
    app.register("victim@example.com").await;
    app.register("bystander@example.com").await;
    let login = |email: &str, password: &str, ip: String| {
        let req = app.client.post(app.url("/v1/auth/login"));
        let req = req.header("x-edge-secret", SECRET).header("x-client-ip", ip);
        req.json(&j!({"email": email, "password": password})).send()
    };
    for i in 0..3 {
        let r = login("victim@example.com", "guess guess guess", format!("198.51.100.{i}"));
        assert_error(r.await.unwrap(), 401, "unauthorized").await;
    }
    let r = login("victim@example.com", PASSWORD, "203.0.113.9".into()).await.unwrap();
    assert!(r.headers().get("retry-after").is_some_and(|v| v.to_str().unwrap() != "0"));
    assert_error(r, 429, "rate_limited").await;
    let r = login("bystander@example.com", PASSWORD, "203.0.113.9".into()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "other accounts are untouched");
}

/// Item 9: operator endpoints answer on the operator listener only, never on the public one.
#[tokio::test]
async fn operator_endpoints_are_not_public() {
    let (_db, app) = app(AppOptions::default()).await;
    for path in ["/metrics", "/readyz"] {
        assert_error(app.get(path).await, 404, "not_found").await;
        assert_eq!(app.ops_get(path).await.status(), StatusCode::OK, "{path} for operators");
    }
}

/// Item 12: a purchase whose database connection is killed mid-flight (the server shutting it
/// down) answers 503 with Retry-After and charges nothing; never a 500.
#[tokio::test]
async fn a_purchase_cut_off_from_the_database_is_a_503_and_charges_nothing() {
    let (db, app) = app(AppOptions::default()).await;
    let (user, token) = app.user_with("u@example.com", 10_000).await;
    let product = j!({"provider": "5sim", "country": "ad", "service": "whatsapp"});
    let mut blocker = db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE prices IN ACCESS EXCLUSIVE MODE").execute(&mut *blocker).await.unwrap();
    let purchase = app.buy(&token, &product, Some("cut-off-1"));
    let cut = async {
        // The purchase's backend, waiting on the lock: terminate it, as a failover would.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let killed: Vec<bool> = sqlx::query_scalar(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                  WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_all(&db.pool)
            .await
            .unwrap();
            if killed.contains(&true) || std::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (resp, ()) = tokio::join!(purchase, cut);
    blocker.rollback().await.unwrap();
    assert!(resp.headers().contains_key("retry-after"));
    assert_error(resp, 503, "unavailable").await;
    let balance: i64 = sqlx::query_scalar("SELECT balance_cents FROM users WHERE id = $1")
        .bind(user)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(balance, 10_000, "nothing charged");
}
