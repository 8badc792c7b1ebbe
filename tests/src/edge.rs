//! The real edge worker (edge/build, built by `make`) in workerd through Miniflare
//! (`tests/edge/serve.mjs`), one fresh instance per test: its own cache and limiter. Everything
//! the worker prints is kept ([`EdgeWorker::lines`], [`EdgeWorker::access_log`]), and a worker
//! that panicked fails the test that ran it (a panic resets the isolate: its memo and limiter).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub struct EdgeWorker {
    pub port: u16,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
}

/// What a worker prints when a panic took its isolate down.
const PANIC_SIGNS: [&str; 3] = ["panicked", "Reinitializing", "RuntimeError: unreachable"];

impl EdgeWorker {
    /// Starts the worker with these vars (e.g. `ORIGIN_URL`, `EDGE_SECRET`); `EDGE_ENV` is
    /// `local` unless given.
    pub async fn start(vars: &[(&str, String)]) -> EdgeWorker {
        Self::start_with(vars, serde_json::Value::Null).await
    }

    /// As [`start`](Self::start), with Cloudflare rate-limit bindings (Miniflare's
    /// `ratelimits` option: `{"NAME": {"simple": {"limit": 10, "period": 60}}}`).
    pub async fn start_with(vars: &[(&str, String)], ratelimits: serde_json::Value) -> EdgeWorker {
        let root = repo_root();
        let shim = root.join("edge/build/worker/shim.mjs");
        assert!(
            shim.exists(),
            "the edge worker is not built ({}); run `make test` (or scripts/build-edge.sh)",
            shim.display()
        );
        let port = crate::spare_port();
        let mut vars: serde_json::Map<String, serde_json::Value> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String(v.clone())))
            .collect();
        vars.entry("EDGE_ENV").or_insert_with(|| "local".into());
        let mut child = Command::new("node")
            .arg(root.join("tests/edge/serve.mjs"))
            .env("EDGE_PORT", port.to_string())
            .env("EDGE_VARS", serde_json::Value::Object(vars).to_string())
            .env("EDGE_RATELIMITS", ratelimits.to_string())
            .current_dir(&root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node must be installed to run the edge tests");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let kept = Arc::new(Mutex::new(Vec::new()));
        // stderr: kept, and shown as the test's own output.
        let errors = kept.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("edge: {line}");
                errors.lock().unwrap().push(line);
            }
        });
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("READY") {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(matches!(ready, Ok(true)), "the edge worker did not start");
        // Keep draining stdout (the child must never block on a full pipe), keeping each line.
        let out = kept.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                out.lock().unwrap().push(line);
            }
        });
        EdgeWorker { port, child, stdin, lines: kept }
    }

    /// Every line the worker (and workerd) printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The worker's access log so far: one JSON object per request (see `edge/src/log.rs`).
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        self.lines()
            .iter()
            .filter_map(|l| l.find("{\"request_id\"").map(|at| &l[at..]))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits (up to 5 s) for the access-log line of the request with this id.
    pub async fn access_line(&self, request_id: &str) -> serde_json::Value {
        for _ in 0..100 {
            if let Some(line) =
                self.access_log().into_iter().find(|l| l["request_id"] == request_id)
            {
                return line;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no access-log line for {request_id}: {:#?}", self.lines());
    }

    fn panic_lines(&self) -> Vec<String> {
        self.lines().into_iter().filter(|l| PANIC_SIGNS.iter().any(|s| l.contains(s))).collect()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Stops workerd cleanly (closing stdin makes the runner dispose Miniflare).
    pub async fn stop(mut self) {
        self.assert_no_panic();
        drop(self.stdin.take());
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

impl EdgeWorker {
    /// Fails the test if the worker panicked at any point.
    pub fn assert_no_panic(&self) {
        let panics = self.panic_lines();
        assert!(panics.is_empty(), "the edge worker panicked: {panics:#?}");
    }
}

impl Drop for EdgeWorker {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.assert_no_panic();
        }
        drop(self.stdin.take());
        // Give the runner a moment to dispose workerd before kill_on_drop fires.
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
