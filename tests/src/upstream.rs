//! A stand-in for a provider's price API (5sim's, sms-activate's): it serves the document the test
//! gives it, and the faults the test scripts first (a status, a 429 with `Retry-After`, a delay
//! past the caller's timeout, a body cut short).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// What the next request gets instead of the document.
#[derive(Clone, Debug)]
pub enum Fault {
    Status(u16),
    /// 429 with `Retry-After` seconds.
    RateLimited(u64),
    /// The document, after this long.
    Delay(Duration),
    /// Half the document, declared whole, then the connection closes.
    Truncated,
    /// This text instead of the document.
    Body(String),
    /// A redirect (`302`) to this URL.
    Redirect(String),
}

#[derive(Default)]
struct State {
    document: String,
    faults: VecDeque<Fault>,
    requests: usize,
}

pub struct Upstream {
    pub url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start(document: String) -> Upstream {
        Self::start_at("127.0.0.1", document).await
    }

    /// On another loopback address (`127.0.0.2`): another host, as far as a client can tell.
    pub async fn start_at(ip: &str, document: String) -> Upstream {
        let state = Arc::new(Mutex::new(State { document, ..State::default() }));
        let shared = state.clone();
        let app = axum::Router::new().fallback(move || {
            let shared = shared.clone();
            async move {
                let (fault, document) = {
                    let mut s = shared.lock().unwrap();
                    s.requests += 1;
                    (s.faults.pop_front(), s.document.clone())
                };
                let json = |body: String| {
                    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
                };
                match fault {
                    Some(Fault::Redirect(to)) => {
                        (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
                    }
                    None => json(document),
                    Some(Fault::Status(s)) => StatusCode::from_u16(s).unwrap().into_response(),
                    Some(Fault::RateLimited(secs)) => {
                        (StatusCode::TOO_MANY_REQUESTS, [("retry-after", secs.to_string())])
                            .into_response()
                    }
                    Some(Fault::Delay(d)) => {
                        tokio::time::sleep(d).await;
                        json(document)
                    }
                    Some(Fault::Body(text)) => json(text),
                    Some(Fault::Truncated) => {
                        let half = document.as_bytes()[..document.len() / 2].to_vec();
                        let (mut tx, body) = {
                            let (tx, rx) = futures::channel::mpsc::channel::<
                                Result<bytes::Bytes, std::io::Error>,
                            >(1);
                            (tx, Body::from_stream(rx))
                        };
                        tokio::spawn(async move {
                            use futures::SinkExt;
                            let _ = tx.send(Ok(bytes::Bytes::from(half))).await;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            let _ =
                                tx.send(Err(std::io::Error::other("the upstream went away"))).await;
                        });
                        let mut resp = Response::new(body);
                        resp.headers_mut().insert(
                            header::CONTENT_LENGTH,
                            document.len().to_string().parse().unwrap(),
                        );
                        resp
                    }
                }
            }
        });
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let url = format!("http://{}/prices", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Upstream { url, state, task }
    }

    /// Serves `document` from now on.
    pub fn set_document(&self, document: String) {
        self.state.lock().unwrap().document = document;
    }

    /// The next requests get these, in order; then the document again.
    pub fn fault(&self, faults: &[Fault]) {
        self.state.lock().unwrap().faults.extend(faults.iter().cloned());
    }

    pub fn requests(&self) -> usize {
        self.state.lock().unwrap().requests
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
