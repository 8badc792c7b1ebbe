//! The real `origin` binary as a child process: its own metrics registry, its own Sentry
//! client, its own exit code — for tests of what only a whole process shows.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tokio::process::Child;

/// `target/debug/origin` (or under `CARGO_TARGET_DIR`), built by `cargo test --workspace`.
pub fn origin_binary() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug/origin");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p origin` (make test does)",
        bin.display()
    );
    bin
}

/// Runs `origin <args>` to completion with this environment.
pub fn run_origin(args: &[&str], env: &[(&str, String)]) -> Output {
    Command::new(origin_binary())
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "warn")
        .output()
        .expect("run origin")
}

/// Runs `origin <args>` with this environment (and spare ports) for at most `limit`, then kills
/// it: for commands that should stop by themselves (a refused start-up) but might not.
/// Returns the exit status (`None`: still running at `limit`) and everything it wrote.
pub async fn run_origin_within(
    args: &[&str],
    env: &[(&str, String)],
    limit: Duration,
) -> (Option<std::process::ExitStatus>, String) {
    let mut command = tokio::process::Command::new(origin_binary());
    // Spare ports and an `info` log unless the caller says otherwise.
    for (name, default) in [
        ("ORIGIN_ADDR", format!("127.0.0.1:{}", crate::spare_port())),
        ("METRICS_ADDR", format!("127.0.0.1:{}", crate::spare_port())),
        ("RUST_LOG", "info".to_owned()),
    ] {
        command.env(name, default);
    }
    let mut child = command
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn origin");
    let status = match tokio::time::timeout(limit, child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            let _ = child.kill().await;
            None
        }
    };
    let mut text = String::new();
    use tokio::io::AsyncReadExt;
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut text).await;
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut text).await;
    }
    (status, text)
}

/// `origin serve` on a spare port (and its operator listener on another), killed on drop.
pub struct OriginProcess {
    pub port: u16,
    pub ops_port: u16,
    child: Child,
    /// Its stdout (the JSON log) line by line.
    logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl OriginProcess {
    pub async fn start(env: &[(&str, String)]) -> OriginProcess {
        Self::start_on(env, crate::spare_port(), crate::spare_port()).await
    }

    /// `origin serve` with at most `nofile` open file descriptors (`prlimit`, util-linux).
    pub async fn start_with_nofile(env: &[(&str, String)], nofile: u32) -> OriginProcess {
        let mut cmd = tokio::process::Command::new("prlimit");
        cmd.arg(format!("--nofile={nofile}:{nofile}")).arg("--").arg(origin_binary());
        Self::launch(cmd, env, crate::spare_port(), crate::spare_port()).await
    }

    /// `origin serve` pinned to one CPU (`taskset -c 0`): a one-core task, as a `cpu: 512` ECS
    /// task nearly is.
    pub async fn start_on_one_core(env: &[(&str, String)]) -> OriginProcess {
        let mut cmd = tokio::process::Command::new("taskset");
        cmd.args(["-c", "0"]).arg(origin_binary());
        Self::launch(cmd, env, crate::spare_port(), crate::spare_port()).await
    }

    /// `origin serve` on these ports (a replacement taking over a stopped origin's place).
    pub async fn start_on(env: &[(&str, String)], port: u16, ops_port: u16) -> OriginProcess {
        Self::launch(tokio::process::Command::new(origin_binary()), env, port, ops_port).await
    }

    async fn launch(
        mut command: tokio::process::Command,
        env: &[(&str, String)],
        port: u16,
        ops_port: u16,
    ) -> OriginProcess {
        let log_filter = std::env::var("TEST_ORIGIN_LOG").unwrap_or_else(|_| "warn".into());
        let mut child = command
            .arg("serve")
            .env("RUST_LOG", log_filter)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("ORIGIN_ADDR", format!("127.0.0.1:{port}"))
            .env("METRICS_ADDR", format!("127.0.0.1:{ops_port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn origin serve");
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        if let Some(stdout) = child.stdout.take() {
            let kept = logs.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncBufReadExt;
                let mut lines = tokio::io::BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    kept.lock().unwrap().push(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = reqwest::Client::new();
        loop {
            let url = format!("http://127.0.0.1:{port}/healthz");
            if client.get(url).send().await.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(Instant::now() < deadline, "origin serve did not come up on {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        OriginProcess { port, ops_port, child, logs }
    }

    /// Its process id while it runs (`None` once it has exited).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The lines the origin has logged so far (JSON, per `RUST_LOG`).
    pub fn log_lines(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A URL on the operator listener (`/metrics`, `/readyz`).
    pub fn ops_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ops_port)
    }

    /// SIGKILL (a crash), then wait.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    /// Sends SIGTERM and returns at once (graceful shutdown begins).
    pub fn sigterm(&self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        }
    }

    /// Waits up to `within` for the process to exit; its status, or `None` if it has not.
    pub async fn wait_exit(mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let status =
            tokio::time::timeout(within, self.child.wait()).await.ok().and_then(Result::ok);
        if status.is_none() {
            let _ = self.child.kill().await;
        }
        status
    }

    /// SIGTERM: graceful shutdown; returns the exit status.
    pub async fn terminate(mut self) -> Option<std::process::ExitStatus> {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        }
        tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// The value of one sample line (`name{labels}`) in `/metrics`, 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = reqwest::get(self.ops_url("/metrics"))
            .await
            .expect("scrape")
            .text()
            .await
            .expect("metrics text");
        sample(&text, series)
    }
}

/// The sum of every sample of the metric `name` (any labels) in Prometheus text.
pub fn total(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let value = match rest.strip_prefix('{') {
                Some(labelled) => labelled.rsplit_once("} ")?.1,
                None => rest.strip_prefix(' ')?,
            };
            value.trim().parse::<f64>().ok()
        })
        .sum()
}

/// The value of `series` (exact name and label text) in Prometheus text, 0 when absent.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}
