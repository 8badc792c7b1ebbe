//! The `origin` command line. `main` only calls [`main`]; each subcommand loads the
//! configuration it needs and maps failure to a non-zero exit code with a one-line reason.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use sqlx::postgres::PgPoolOptions;

use crate::config::{self, Settings};
use crate::seed::{self, Scale};
use crate::startup::{Application, shutdown_signal};
use crate::telemetry;

#[derive(Parser)]
#[command(name = "origin", version, about = "NexNum catalog origin")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP on ORIGIN_ADDR.
    Serve,
    /// Apply pending database migrations.
    Migrate,
    /// As the schema owner (MIGRATE_DATABASE_URL): grant the serving role what serving needs
    /// (rows, never the schema; docs/deploy.md), creating it first when SERVING_ROLE_PASSWORD
    /// is set (idempotent; run after every `migrate`).
    Grant {
        /// The serving role (the user of DATABASE_URL).
        #[arg(long, default_value = "nexnum_origin")]
        role: String,
        /// Its password, to create the role or set its password.
        #[arg(long, env = "SERVING_ROLE_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// Migrate, then fill the catalog deterministically (idempotent).
    Seed {
        #[arg(long, value_enum, default_value = "small")]
        scale: Scale,
    },
    /// Sync prices and stock from the upstreams in SYNC_PROVIDERS (all, or one) once: exactly the
    /// changed rows written, their keys invalidated, downstream caches purged (exit 1 when a run
    /// failed or was held).
    Sync {
        /// Only this provider.
        #[arg(long)]
        provider: Option<String>,
        /// One JSON object per run on its own line instead of the table (for scripts).
        #[arg(long)]
        json: bool,
        /// Apply what the guard would hold, and make it the provider's new baseline (a person
        /// has looked: the provider really repriced). Needs --provider.
        #[arg(long, requires = "provider")]
        accept: bool,
    },
    /// Run the pre-traffic checklist against the live services (exit 1 on any FAIL).
    Check(crate::check::CheckArgs),
    /// Exit 0 if this host's origin answers `/healthz` on METRICS_ADDR (a container health check).
    Probe,
    /// Print the OpenAPI document (what `/openapi.json` serves; `make openapi` checks it in).
    Openapi,
    /// Print every environment variable the origin reads, as the README's markdown table.
    Env {
        /// As JSON (name, default, required, secret): what the infrastructure code reads.
        #[arg(long)]
        json: bool,
    },
    /// Administer users.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an admin account. An existing account is refused unless --promote is given.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, env = "ADMIN_PASSWORD", hide_env_values = true)]
        password: String,
        /// Make an existing account admin: its password is replaced and every session it holds
        /// is ended (needs REDIS_URL too).
        #[arg(long)]
        promote: bool,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        // A health probe, and the commands that only print, need no logging, no Sentry and no
        // runtime: the probe must answer even when the rest of the configuration is wrong.
        Command::Probe => return probe(),
        Command::Openapi => {
            print!("{}", crate::http::openapi_document());
            return ExitCode::SUCCESS;
        }
        Command::Env { json } => {
            if *json {
                print!("{}", config::json_list());
            } else {
                print!("{}", config::markdown_table());
            }
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let telemetry = match config::Telemetry::from_env() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Held for the whole run: dropping it flushes events still queued for Sentry.
    let _sentry = match telemetry::init(&telemetry, !matches!(cli.command, Command::Serve)) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // `FAILPOINTS` (tests; a no-op unless built with the `failpoints` feature).
    let _faults = fail::FailScenario::setup();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            let settings = Settings::from_env()?;
            let app = Application::build(settings).await?;
            tracing::info!(addr = %app.local_addr(), "origin listening");
            app.run_until_stopped(shutdown_signal()).await?;
            Ok(())
        }
        Command::Migrate => {
            let pool = connect_for_admin().await?;
            crate::MIGRATOR.run(&pool).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Grant { role, password } => {
            let pool = connect_for_admin().await?;
            let mut conn = pool.acquire().await?;
            crate::db::roles::ensure_role(&mut conn, &role, password.as_deref()).await?;
            crate::db::roles::grant_serving(&mut conn, &role).await?;
            println!(
                "{role}: rows of every table (no DELETE), the migration log read-only; nothing on the schema"
            );
            Ok(())
        }
        Command::Admin { command } => admin(command).await,
        Command::Openapi | Command::Env { .. } | Command::Probe => Ok(()),
        Command::Sync {
            provider,
            json,
            accept,
        } => sync(provider, json, accept).await,
        Command::Check(args) => {
            let settings = Settings::from_env()?;
            let rows = crate::check::run(&settings, &args).await;
            println!("{}", crate::check::render(&rows, args.json));
            if rows.iter().any(|r| r.status == crate::check::Status::Fail) {
                anyhow::bail!("the checklist has failures");
            }
            Ok(())
        }
        Command::Seed { scale } => {
            let pool = connect_for_admin().await?;
            crate::MIGRATOR.run(&pool).await?;
            let report = seed::seed(&pool, scale).await?;
            println!(
                "seeded {:?}: {} providers x {} countries x {} services, {} price rows, in {:.2?}",
                scale,
                report.providers,
                report.countries,
                report.services,
                report.prices,
                report.elapsed
            );
            Ok(())
        }
    }
}

/// `origin sync`: one run per provider, a table of what each did.
async fn sync(only: Option<String>, json: bool, accept: bool) -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    crate::tls::install_crypto_provider();
    let syncer = crate::sync::from_settings(&settings)?;
    let upstreams: Vec<_> = syncer
        .upstreams()
        .iter()
        .filter(|u| only.as_ref().is_none_or(|p| &u.provider == p))
        .cloned()
        .collect();
    anyhow::ensure!(
        !upstreams.is_empty(),
        "nothing to sync: SYNC_PROVIDERS lists {}",
        only.map_or("no provider".to_owned(), |p| format!("no provider {p:?}"))
    );
    let mut bad = Vec::new();
    if !json {
        println!(
            "provider      outcome    offers  unmapped  new  changed  off-sale  same  keys  seconds"
        );
    }
    for upstream in &upstreams {
        let r = syncer.run_with(upstream, accept).await;
        if json {
            println!("{}", sync_json(&r));
        } else {
            println!(
                "{:<13} {:<10} {:>6}  {:>8}  {:>3}  {:>7}  {:>8}  {:>4}  {:>4}  {:>7.2}{}",
                r.provider,
                r.outcome().as_str(),
                r.offers,
                r.unmapped,
                r.inserted,
                r.updated,
                r.zeroed,
                r.unchanged,
                r.keys_invalidated,
                r.duration.as_secs_f64(),
                if r.detail.is_empty() {
                    String::new()
                } else {
                    format!("  {}", r.detail)
                }
            );
        }
        if matches!(
            r.outcome(),
            crate::sync::Outcome::Failed | crate::sync::Outcome::Held
        ) {
            bad.push(r.provider.clone());
        }
    }
    syncer
        .flush_purges(std::time::Duration::from_secs(10))
        .await;
    anyhow::ensure!(bad.is_empty(), "not applied: {}", bad.join(", "));
    Ok(())
}

/// `origin probe`: `GET /healthz` on this host's operator listener, as plain HTTP/1.1 over a
/// socket: no TLS, no client library, no runtime, so the image's health check depends on nothing
/// but the listener it checks. 2 s in all; exit 0 on a 200.
fn probe() -> ExitCode {
    match probe_once(std::time::Duration::from_secs(2)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn probe_once(within: std::time::Duration) -> Result<(), String> {
    use std::io::{Read, Write};
    let addr = config::probe_addr().map_err(|e| e.to_string())?;
    let deadline = std::time::Instant::now() + within;
    let left = || {
        deadline
            .saturating_duration_since(std::time::Instant::now())
            .max(std::time::Duration::from_millis(1))
    };
    let mut stream = std::net::TcpStream::connect_timeout(&addr, left())
        .map_err(|e| format!("{addr}: cannot connect: {e}"))?;
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .set_write_timeout(Some(left()))
        .and_then(|()| stream.write_all(request.as_bytes()))
        .map_err(|e| format!("{addr}: cannot send: {e}"))?;
    // The status line is all that matters; read until it is complete or the time is up.
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 64];
    while !head.contains(&b'\n') && head.len() < 1024 {
        stream
            .set_read_timeout(Some(left()))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("{addr}: no answer: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let line = text.lines().next().unwrap_or_default();
    match line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        _ => Err(format!("http://{addr}/healthz answered {line:?}")),
    }
}

/// One run of `origin sync --json`.
fn sync_json(r: &crate::sync::Report) -> serde_json::Value {
    serde_json::json!({
        "provider": r.provider,
        "outcome": r.outcome().as_str(),
        "detail": r.detail,
        "offers": r.offers,
        "unmapped": r.unmapped,
        "inserted": r.inserted,
        "updated": r.updated,
        "zeroed": r.zeroed,
        "unchanged": r.unchanged,
        "keys_invalidated": r.keys_invalidated,
        "seconds": r.duration.as_secs_f64(),
    })
}

/// `origin admin …`: needs only PostgreSQL.
async fn admin(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::Create {
            email,
            password,
            promote,
        } => {
            let pool = connect_for_admin().await?;
            crate::MIGRATOR.run(&pool).await?;
            let db = crate::db::Db::from_pool(pool);
            let creds = shared::types::Credentials { email, password };
            let user = if promote {
                let settings = Settings::from_env()?;
                let sessions = crate::accounts::sessions::Sessions::new(
                    crate::redis::Redis::from_settings(&settings)?,
                    settings.cache_ttl_divisor,
                    settings.session_max_age,
                    settings.max_sessions_per_user,
                );
                crate::accounts::promote_admin(&db, &sessions, creds).await?
            } else {
                crate::accounts::create_admin(&db, creds).await?
            };
            println!("admin {} (id {})", user.email, user.id);
            Ok(())
        }
    }
}

/// Connects for `migrate`/`seed`/`admin`, creating the database first when it does not exist.
async fn connect_for_admin() -> anyhow::Result<sqlx::PgPool> {
    use sqlx::migrate::MigrateDatabase;
    let url = config::database_url_from_env()?;
    if !sqlx::Postgres::database_exists(url.expose_secret())
        .await
        .unwrap_or(true)
    {
        sqlx::Postgres::create_database(url.expose_secret())
            .await
            .map_err(|e| anyhow::anyhow!("cannot create the DATABASE_URL database: {e}"))?;
        println!("created database");
    }
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect(url.expose_secret())
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to DATABASE_URL: {e}"))?;
    Ok(pool)
}
