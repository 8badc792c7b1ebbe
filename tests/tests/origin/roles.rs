//! Least privilege in PostgreSQL (#32 item 3): every in-process origin of the suites connects as
//! the serving role (`harness::SERVING_ROLE`, granted by `origin::db::roles` as `origin grant`
//! grants it), so every query the suites make is one that role may run. Here, what it may not:
//! change or empty the schema, delete rows, or rewrite the migration log.

use harness::{TestDb, as_user};
use origin::seed::Scale;
use sqlx::Connection;

#[tokio::test]
async fn the_serving_role_reads_and_writes_rows_and_nothing_else() {
    let db = TestDb::new(Some(Scale::Small)).await;
    let mut serving = sqlx::PgConnection::connect(&db.serving_url()).await.unwrap();
    // Rows: read, insert, update.
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM prices").fetch_one(&mut serving).await.unwrap();
    assert!(n > 0);
    sqlx::query(
        "UPDATE prices SET stock = stock WHERE provider_id = (SELECT min(provider_id) FROM prices)",
    )
    .execute(&mut serving)
    .await
    .unwrap();
    sqlx::query("SELECT version FROM _sqlx_migrations LIMIT 1")
        .execute(&mut serving)
        .await
        .unwrap();
    // Everything else: refused by PostgreSQL, naming the privilege.
    for statement in [
        "DROP TABLE prices",
        "ALTER TABLE prices ADD COLUMN x int",
        "TRUNCATE prices",
        "DELETE FROM prices",
        "CREATE TABLE intruder (id int)",
        "CREATE INDEX intruder ON prices (stock)",
        "DELETE FROM _sqlx_migrations",
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
           VALUES (1, 'x', true, '\\x00', 0)",
        "UPDATE _sqlx_migrations SET success = false",
        "DROP SCHEMA public CASCADE",
        "CREATE ROLE intruder",
    ] {
        let err = sqlx::query(statement).execute(&mut serving).await.unwrap_err();
        let code = err.as_database_error().and_then(|d| d.code()).map(|c| c.into_owned());
        assert!(
            matches!(code.as_deref(), Some("42501")),
            "{statement}: expected insufficient_privilege, got {err}"
        );
    }
    // The owner still can (the grants took nothing from it).
    let mut owner = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("CREATE INDEX owner_may ON prices (stock)").execute(&mut owner).await.unwrap();
    // And a role with no grants cannot even read.
    let stranger = as_user(&db.url, "nexnum_no_grants_test", "nope-nope-nope");
    assert!(sqlx::PgConnection::connect(&stranger).await.is_err());
}

#[tokio::test]
async fn a_table_a_later_migration_creates_is_granted_by_default() {
    let db = TestDb::new(None).await;
    let mut owner = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("CREATE TABLE later (id bigserial PRIMARY KEY, note text)")
        .execute(&mut owner)
        .await
        .unwrap();
    let mut serving = sqlx::PgConnection::connect(&db.serving_url()).await.unwrap();
    sqlx::query("INSERT INTO later (note) VALUES ('x')").execute(&mut serving).await.unwrap();
    let err = sqlx::query("DELETE FROM later").execute(&mut serving).await.unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
}

/// Least privilege in Redis (#32 item 3): a server whose only user has the shipped serving rules
/// (ops/redis/serving.acl). The origin works through it (the TLS passes of `make test` run the
/// whole suite so, and fail on any refused command); what it never needs is refused.
#[tokio::test]
async fn the_serving_redis_user_is_refused_what_the_origin_does_not_use() {
    let mut args: Vec<String> =
        ["--user", "default", "off", "--user", "nexnum_origin", "on", ">serving-user-password"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    args.extend(harness::serving_acl_rules());
    let server = harness::RedisServer::start_plain_with(&args);
    let url = format!("redis://nexnum_origin:serving-user-password@127.0.0.1:{}", server.port);
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let refused = |r: redis::RedisResult<redis::Value>| match r {
        Err(e) => e.to_string().contains("NOPERM") || e.code() == Some("NOPERM"),
        Ok(v) => panic!("allowed: {v:?}"),
    };
    let cmd = |parts: &[&str]| {
        let mut c = redis::cmd(parts[0]);
        for p in &parts[1..] {
            c.arg(*p);
        }
        c
    };
    for parts in [
        &["FLUSHALL"][..],
        &["FLUSHDB"],
        &["CONFIG", "GET", "maxmemory"],
        &["CONFIG", "SET", "maxmemory", "1"],
        &["KEYS", "*"],
        &["SET", "outside:the:prefix", "1"],
        &["GET", "cache:prices:5sim:ru:whatsapp"],
        &["SHUTDOWN"],
        &["ACL", "LIST"],
        &["MONITOR"],
        &["PUBLISH", "cache:invalidate", "x"],
    ] {
        let r: redis::RedisResult<redis::Value> = cmd(parts).query_async(&mut conn).await;
        assert!(refused(r), "{parts:?} must be refused");
    }
    // Under the prefix, what the origin does is allowed.
    let _: () = cmd(&["SET", "nexnum:probe", "1"]).query_async(&mut conn).await.unwrap();
    let _: () = cmd(&["SET", "{nexnum:tagged}:x", "1"]).query_async(&mut conn).await.unwrap();

    // And an origin serves through it: the catalog, a sign-in, a purchase.
    let db = TestDb::new(Some(Scale::Small)).await;
    let app =
        harness::TestApp::spawn(&db, harness::AppOptions::default().redis_url(url.clone())).await;
    let (_, token) = app.user_with("acl@nexnum.test", 100_000).await;
    let (p, c, s, _, _) = harness::some_price(&db.pool, 2).await;
    assert_eq!(app.get(&format!("/v1/catalog/{p}/prices/{c}/{s}")).await.status(), 200);
    let product = serde_json::json!({"provider": p, "country": c, "service": s});
    assert_eq!(app.buy(&token, &product, Some("acl-0001")).await.status(), 201);
    drop(app);
    drop(server);
}
