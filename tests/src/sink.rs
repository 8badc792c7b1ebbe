//! A stand-in for a downstream cache's purge endpoint (Cloudflare's purge API, the edge's purge
//! route, the Next.js revalidation route): it records every call (path, headers, JSON body) and
//! answers as scripted — the first calls can fail, be rate limited, or be held until released.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};

/// One call the sink received.
#[derive(Clone, Debug)]
pub struct Call {
    pub path: String,
    pub headers: HeaderMap,
    pub body: serde_json::Value,
    /// The body as sent (for bodies that are not one JSON value: Sentry's envelopes).
    pub raw: bytes::Bytes,
    /// When it arrived.
    pub at: std::time::Instant,
    /// Answered 429 by the sink's own rate limit ([`Sink::limit`]).
    pub limited: bool,
}

impl Call {
    /// The purged tags of the call (`{"tags": [...]}`).
    pub fn tags(&self) -> Vec<String> {
        self.body["tags"]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }
}

/// How the sink answers the next call.
#[derive(Clone, Debug)]
pub enum Answer {
    Status(u16),
    /// 429 with `Retry-After` seconds.
    RateLimited(u64),
    /// A redirect (`307`) to this URL.
    Redirect(String),
}

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    script: VecDeque<Answer>,
    held: bool,
    /// A token bucket, as Cloudflare's purge API keeps per account: (tokens, capacity, refill
    /// per second, last refill).
    bucket: Option<(f64, f64, f64, std::time::Instant)>,
}

impl State {
    /// Takes a token from the bucket (true), or finds it empty (false: a 429).
    fn admit(&mut self) -> bool {
        let Some((tokens, capacity, per_sec, last)) = self.bucket.as_mut() else {
            return true;
        };
        let now = std::time::Instant::now();
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * *per_sec).min(*capacity);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub struct Sink {
    pub url: String,
    state: Arc<Mutex<State>>,
    release: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Sink {
    /// A sink answering 200 `{"success": true}` unless scripted otherwise.
    pub async fn start() -> Sink {
        let state = Arc::new(Mutex::new(State::default()));
        let release = Arc::new(tokio::sync::Notify::new());
        let (st, rel) = (state.clone(), release.clone());
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: HeaderMap, body: axum::body::Bytes| {
                let (st, rel) = (st.clone(), rel.clone());
                async move {
                    let (held, admitted) = {
                        let mut s = st.lock().unwrap();
                        let admitted = s.admit();
                        s.calls.push(Call {
                            path: uri.path().to_owned(),
                            headers,
                            body: serde_json::from_slice(&body).unwrap_or_default(),
                            raw: body.clone(),
                            at: std::time::Instant::now(),
                            limited: !admitted,
                        });
                        (s.held, admitted)
                    };
                    if !admitted {
                        let headers = [("retry-after", "1")];
                        let body =
                            r#"{"success":false,"errors":[{"code":971,"message":"rate limited"}]}"#;
                        return axum::response::IntoResponse::into_response((
                            StatusCode::TOO_MANY_REQUESTS,
                            headers,
                            body,
                        ));
                    }
                    if held {
                        rel.notified().await;
                    }
                    let answer = st.lock().unwrap().script.pop_front();
                    let (status, retry_after) = match answer {
                        None => (StatusCode::OK, 0),
                        Some(Answer::Status(s)) => (StatusCode::from_u16(s).unwrap(), 0),
                        Some(Answer::RateLimited(secs)) => (StatusCode::TOO_MANY_REQUESTS, secs),
                        Some(Answer::Redirect(to)) => {
                            return axum::response::IntoResponse::into_response((
                                StatusCode::TEMPORARY_REDIRECT,
                                [("location", to)],
                            ));
                        }
                    };
                    let body = format!("{{\"success\":{}}}", status.is_success());
                    let headers = [("retry-after", retry_after.to_string())];
                    axum::response::IntoResponse::into_response((status, headers, body))
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Sink { url, state, release, task }
    }

    /// The next calls are answered like this, in order.
    pub fn script(&self, answers: &[Answer]) {
        self.state.lock().unwrap().script.extend(answers.iter().cloned());
    }

    /// Rate limits calls as Cloudflare's purge API does: a bucket of `capacity` calls refilled
    /// at `per_sec`; a call finding it empty is answered 429 with `Retry-After: 1` (and marked
    /// [`Call::limited`]).
    pub fn limit(&self, per_sec: f64, capacity: u32) {
        let capacity = capacity as f64;
        self.state.lock().unwrap().bucket =
            Some((capacity, capacity, per_sec, std::time::Instant::now()));
    }

    /// Calls are held (unanswered) until [`Sink::release`].
    pub fn hold(&self) {
        self.state.lock().unwrap().held = true;
    }

    pub fn release(&self) {
        self.state.lock().unwrap().held = false;
        self.release.notify_waiters();
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Waits (up to `within`) until `n` calls have arrived.
    pub async fn wait_for_calls(&self, n: usize, within: Duration) -> Vec<Call> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let calls = self.calls();
            if calls.len() >= n || tokio::time::Instant::now() >= deadline {
                return calls;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}
