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
        Self::launch(crate::spare_port(), vars, ratelimits).await
    }

    /// As [`start`](Self::start), on `port` (chosen before, e.g. for an origin that purges it).
    pub async fn start_on(port: u16, vars: &[(&str, String)]) -> EdgeWorker {
        Self::launch(port, vars, serde_json::Value::Null).await
    }

    async fn launch(
        port: u16,
        vars: &[(&str, String)],
        ratelimits: serde_json::Value,
    ) -> EdgeWorker {
        let root = repo_root();
        let shim = root.join("edge/build/worker/shim.mjs");
        assert!(
            shim.exists(),
            "the edge worker is not built ({}); run `make test` (or scripts/build-edge.sh)",
            shim.display()
        );
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

/// One request an origin received from the edge.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

/// A recording origin for the edge: every request it receives is kept; it answers as it was
/// told, or passes the request on to a real origin and returns its answer.
pub struct Tap {
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

/// What a [`Tap`] does with a request.
#[derive(Clone)]
pub enum TapAnswer {
    /// This status, these headers, this body.
    Fixed(u16, Vec<(&'static str, &'static str)>, &'static str),
    /// Whatever the origin at this base URL answers.
    Forward(String),
}

impl Tap {
    pub async fn start(answer: TapAnswer) -> Tap {
        use axum::body::Body;
        use axum::http::Request;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let client = reqwest::Client::new();
        let app = axum::Router::new().fallback(move |req: Request<Body>| {
            let (log, answer, client) = (log.clone(), answer.clone(), client.clone());
            async move {
                let (parts, body) = req.into_parts();
                let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
                let path = parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
                log.lock().unwrap().push(Seen {
                    method: parts.method.to_string(),
                    path: path.clone(),
                    headers: parts.headers.clone(),
                    body: body.to_vec(),
                });
                match answer {
                    TapAnswer::Fixed(status, headers, text) => {
                        let mut resp = axum::response::Response::new(Body::from(text));
                        *resp.status_mut() = axum::http::StatusCode::from_u16(status).unwrap();
                        for (k, v) in headers {
                            resp.headers_mut().append(k, v.parse().unwrap());
                        }
                        resp
                    }
                    TapAnswer::Forward(base) => {
                        let mut headers = parts.headers.clone();
                        headers.remove("host");
                        let method =
                            reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).unwrap();
                        let upstream = client
                            .request(method, format!("{base}{path}"))
                            .headers(headers)
                            .body(body)
                            .send()
                            .await
                            .expect("the tapped origin answers");
                        let mut resp = axum::response::Response::new(Body::empty());
                        *resp.status_mut() = upstream.status();
                        *resp.headers_mut() = upstream.headers().clone();
                        resp.headers_mut().remove("transfer-encoding");
                        resp.headers_mut().remove("content-length");
                        *resp.body_mut() = Body::from(upstream.bytes().await.unwrap_or_default());
                        resp
                    }
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Tap { url, seen, task }
    }

    /// A tap answering every request `200` with a public, edge-storable empty provider list.
    pub async fn storable() -> Tap {
        Tap::start(TapAnswer::Fixed(
            200,
            vec![
                ("content-type", "application/json"),
                ("cache-control", "public, max-age=60, s-maxage=60"),
            ],
            "{\"providers\":[]}",
        ))
        .await
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A raw HTTP/1.1 exchange on 127.0.0.1:`port` (for requests a client library would not send):
/// writes `head` and `body`, reads until the server closes or `within` passes. Returns the final
/// status (interim `1xx` skipped) and everything read.
pub async fn raw_exchange(port: u16, head: &str, body: &[u8], within: Duration) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    sock.write_all(head.as_bytes()).await.unwrap();
    let _ = sock.write_all(body).await;
    let mut read = Vec::new();
    let _ = tokio::time::timeout(within, sock.read_to_end(&mut read)).await;
    let text = String::from_utf8_lossy(&read).into_owned();
    let status = text
        .split("\r\n")
        .filter_map(|l| l.strip_prefix("HTTP/1.1 "))
        .filter_map(|l| l.get(..3)?.parse::<u16>().ok())
        .find(|s| *s >= 200)
        .unwrap_or(0);
    (status, text)
}
