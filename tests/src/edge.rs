//! The real edge worker (edge/build, built by `make`) in workerd through Miniflare
//! (`tests/edge/serve.mjs`), one fresh instance per test: its own cache and limiter.

use std::path::PathBuf;
use std::process::Stdio;
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
}

impl EdgeWorker {
    /// Starts the worker with these vars (e.g. `ORIGIN_URL`, `EDGE_SECRET`).
    pub async fn start(vars: &[(&str, String)]) -> EdgeWorker {
        let root = repo_root();
        let shim = root.join("edge/build/worker/shim.mjs");
        assert!(
            shim.exists(),
            "the edge worker is not built ({}); run `make test` (or scripts/build-edge.sh)",
            shim.display()
        );
        let port = crate::spare_port();
        let vars: serde_json::Map<String, serde_json::Value> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String(v.clone())))
            .collect();
        let mut child = Command::new("node")
            .arg(root.join("tests/edge/serve.mjs"))
            .env("EDGE_PORT", port.to_string())
            .env("EDGE_VARS", serde_json::Value::Object(vars).to_string())
            .current_dir(&root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node must be installed to run the edge tests");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
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
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        EdgeWorker { port, child, stdin }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Stops workerd cleanly (closing stdin makes the runner dispose Miniflare).
    pub async fn stop(mut self) {
        drop(self.stdin.take());
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

impl Drop for EdgeWorker {
    fn drop(&mut self) {
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
