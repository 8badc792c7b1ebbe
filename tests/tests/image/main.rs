//! The image as it ships (#32). `scripts/image-rootfs.sh` assembles the image's root file
//! system (the folder the Containerfile copies `FROM scratch`); each command here runs the way a
//! container of it runs: `chroot` into that folder as the image's user (65532:65532), with an
//! empty environment plus what the task definition would give, no system CA store, no shell.
//! Against the test's PostgreSQL and Redis and local stand-ins for Sentry, the three purge sinks
//! and a provider's price API, it runs `probe` (the container health check), `migrate`,
//! `seed`, `admin create`, `serve` with every outbound client configured, and `check`, and fails
//! on any panic, a non-zero exit or a health probe that does not pass.
//!
//! `make image-test` (CI runs it): needs root, for chroot. Ignored by a plain `cargo test`.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::sink::Sink;
use harness::upstream::{Fault, Upstream};
use reqwest::StatusCode;
use serde_json::json;

/// The user the Containerfile names (`USER 65532:65532`).
const USERSPEC: &str = "--userspec=65532:65532";

fn image_root() -> PathBuf {
    let root = std::env::var("IMAGE_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/image-root"));
    assert!(
        root.join("usr/local/bin/origin").exists(),
        "{} holds no image: run scripts/image-rootfs.sh (make image-test does)",
        root.display()
    );
    root
}

/// `origin <args>` inside the image, as its user, with only `env`.
fn in_image(args: &[&str], env: &[(String, String)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("/usr/sbin/chroot");
    cmd.arg(USERSPEC)
        .arg(image_root())
        .arg("/usr/local/bin/origin")
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs a command in the image to its end (at most 60 s): exit code and all it wrote.
async fn run(args: &[&str], env: &[(String, String)]) -> (i32, String) {
    let child = in_image(args, env).spawn().expect("chroot (run as root)");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("origin {args:?} in the image ran past 60 s"))
        .expect("wait");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("panicked"), "origin {args:?} panicked in the image:\n{text}");
    (out.status.code().unwrap_or(-1), text)
}

fn pair(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_owned(), v.into())
}

#[tokio::test]
#[ignore = "make image-test: the image root (scripts/image-rootfs.sh) and root for chroot"]
async fn the_image_runs_as_shipped_with_every_client_configured() {
    let uid = std::process::Command::new("id").arg("-u").output().expect("id -u");
    assert_eq!(String::from_utf8_lossy(&uid.stdout).trim(), "0", "chroot needs root");
    let (port, ops_port) = (harness::spare_port(), harness::spare_port());

    // The health check before anything listens: a clear failure, not a panic.
    let ops = vec![pair("METRICS_ADDR", format!("0.0.0.0:{ops_port}"))];
    let (code, text) = run(&["probe"], &ops).await;
    assert_eq!(code, 1, "probe with nothing listening: {text}");
    assert!(text.contains("cannot connect"), "{text}");

    // A database of its own, created and migrated by the image (`MIGRATE_DATABASE_URL`).
    let db_name = format!("nexnum_image_{}", uuid::Uuid::new_v4().simple());
    let db_url = harness::with_database(&harness::admin_database_url(), &db_name);
    let prefix = format!("image-{}:", uuid::Uuid::new_v4().simple());
    let base = vec![
        pair("DATABASE_URL", db_url.clone()),
        pair("REDIS_URL", harness::shared_redis_url()),
        pair("REDIS_KEY_PREFIX", prefix.clone()),
    ];
    let (code, text) = run(&["migrate"], &base).await;
    assert_eq!(code, 0, "migrate: {text}");
    assert!(text.contains("migrations applied"), "{text}");
    let (code, text) = run(&["seed", "--scale", "small"], &base).await;
    assert_eq!(code, 0, "seed: {text}");
    let mut admin_env = base.clone();
    admin_env.push(pair("ADMIN_PASSWORD", harness::PASSWORD));
    let (code, text) = run(&["admin", "create", "--email", "ops@example.com"], &admin_env).await;
    assert_eq!(code, 0, "admin create: {text}");

    // A provider with an empty catalog, synced from a stand-in of its price API: the first run
    // fails (an ERROR, which must reach Sentry), the next one loads the document.
    let pool = sqlx::PgPool::connect(&db_url).await.expect("the image's database");
    sqlx::query("INSERT INTO providers (code, name) VALUES ('smshub', 'SMSHub')")
        .execute(&pool)
        .await
        .unwrap();
    let countries: Vec<String> =
        sqlx::query_scalar("SELECT code FROM countries").fetch_all(&pool).await.unwrap();
    let mapping = origin::sync::mapping::Mapping::builtin("sms-activate").unwrap();
    let theirs = mapping
        .countries
        .iter()
        .find(|(_, ours)| countries.contains(ours))
        .map(|(theirs, _)| theirs.clone())
        .expect("a seeded country the mapping knows");
    let document = json!({ theirs: {"wa": {"cost": 12.5, "count": 40}} }).to_string();
    let upstream = Upstream::start(document).await;
    upstream.fault(&[Fault::Status(500)]);

    let (sentry, edge, cloudflare, next) =
        (Sink::start().await, Sink::start().await, Sink::start().await, Sink::start().await);
    let sentry_host = sentry.url.trim_start_matches("http://");
    let mut env = base.clone();
    env.extend([
        pair("ORIGIN_ENV", "staging"),
        pair("ORIGIN_ADDR", format!("0.0.0.0:{port}")),
        pair("METRICS_ADDR", format!("0.0.0.0:{ops_port}")),
        pair("RUST_LOG", "info"),
        pair("SENTRY_DSN", format!("http://0123456789abcdef0123456789abcdef@{sentry_host}/7")),
        pair("EDGE_SECRET", "image-test-edge-secret-0001"),
        pair("EDGE_PURGE_URL", format!("{}/__edge/purge", edge.url)),
        pair("CLOUDFLARE_ZONE_ID", "0123abcd"),
        pair("CLOUDFLARE_API_TOKEN", "image-test-cloudflare-token"),
        pair("CLOUDFLARE_API_URL", cloudflare.url.clone()),
        pair("NEXT_REVALIDATE_URL", format!("{}/api/revalidate", next.url)),
        pair("NEXT_REVALIDATE_SECRET", "image-test-next-secret-0001"),
        pair("SYNC_PROVIDERS", format!("smshub=sms-activate@{}", upstream.url)),
        pair("SYNC_INTERVAL_SECS", "1"),
        pair("SYNC_ATTEMPTS", "1"),
        pair("PURGE_BATCH_MS", "20"),
    ]);

    let mut serve = in_image(&["serve"], &env).spawn().expect("chroot serve");
    let output = Arc::new(Mutex::new(String::new()));
    for stream in [
        Box::new(serve.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        Box::new(serve.stderr.take().unwrap()),
    ] {
        let output = output.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                output.lock().unwrap().push_str(&line);
                output.lock().unwrap().push('\n');
            }
        });
    }
    let log = || output.lock().unwrap().clone();

    // The container health check passes within 15 s.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (code, text) = run(&["probe"], &ops).await;
        if code == 0 {
            break;
        }
        assert!(serve.try_wait().unwrap().is_none(), "serve exited:\n{}", log());
        assert!(Instant::now() < deadline, "probe never passed: {text}\n{}", log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let r = http.get(url("/v1/catalog/providers")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // A price change reaches all three purge sinks.
    let (provider, country, service, price, _) = harness::some_price(&pool, 0).await;
    let login = http
        .post(url("/v1/auth/login"))
        .json(&json!({"email": "ops@example.com", "password": harness::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let token =
        login.json::<serde_json::Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    let r = http
        .put(url(&format!("/v1/admin/prices/{provider}/{country}/{service}")))
        .bearer_auth(&token)
        .json(&json!({"price_cents": price + 1, "stock": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
    for (name, sink) in [("edge", &edge), ("cloudflare", &cloudflare), ("next", &next)] {
        let calls = sink.wait_for_calls(1, Duration::from_secs(10)).await;
        assert!(!calls.is_empty(), "no purge reached {name}:\n{}", log());
        assert!(!calls[0].tags().is_empty(), "{name}: {:?}", calls[0].body);
    }

    // The sync reached its upstream twice (the failed run, then the applied one), and the
    // failure reached Sentry as this build, in this environment.
    let deadline = Instant::now() + Duration::from_secs(15);
    while upstream.requests() < 2 {
        assert!(Instant::now() < deadline, "the sync never retried:\n{}", log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = sentry.wait_for_calls(1, Duration::from_secs(10)).await;
    assert!(!events.is_empty(), "nothing reached Sentry:\n{}", log());
    let envelope = String::from_utf8_lossy(&events[0].raw).into_owned();
    assert!(events[0].path.ends_with("/api/7/envelope/"), "{}", events[0].path);
    assert!(envelope.contains(r#""environment":"staging""#), "{envelope}");
    let release = format!("origin@{}+", env!("CARGO_PKG_VERSION"));
    assert!(envelope.contains(&release), "release {release}… in {envelope}");
    assert!(!envelope.contains("origin@0.1.0\""), "a release without its commit: {envelope}");

    // The checklist, from the image, against the same services: every row passes.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let (code, text) = run(&["check"], &env).await;
        if code == 0 {
            break text;
        }
        // The applied sync run may not be logged yet.
        assert!(Instant::now() < deadline, "origin check in the image failed:\n{text}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(text.contains("sync smshub"), "{text}");

    // SIGTERM: drains and exits 0 within the grace.
    let pid = serve.id().unwrap().to_string();
    std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), serve.wait())
        .await
        .expect("serve stops within the grace after SIGTERM")
        .unwrap();
    assert!(status.success(), "serve exited {status}:\n{}", log());
    let log = log();
    assert!(!log.contains("panicked"), "serve panicked:\n{log}");
    println!(
        "image run: probe, migrate, seed, admin, serve (Sentry, 3 purge sinks, sync), check: ok; \
         purge calls edge {} cloudflare {} next {}, sync fetches {}, Sentry envelopes {}",
        edge.calls().len(),
        cloudflare.calls().len(),
        next.calls().len(),
        upstream.requests(),
        sentry.calls().len()
    );
    drop(pool);
    harness::drop_database_blocking(db_name);
}
