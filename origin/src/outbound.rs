//! Every outbound HTTP client the origin makes (the purge sinks, the sync upstreams, Sentry's
//! transport, `origin check --origin`) is built here, from one trust store: Mozilla's roots
//! bundled in the binary (webpki-roots) plus the PEM files `HTTP_CA_FILE` names.
//!
//! Why not reqwest's own roots: its `rustls` feature verifies through rustls-platform-verifier,
//! which reads the *system* store when a client is built, and the image is `FROM scratch` with no
//! system store. Every client then failed to build there ("No CA certificates were loaded from
//! the system"), even a plain-http one, and the callers that fell back to a default client
//! panicked. Here the store is ours and complete before any client exists, and a client that
//! cannot be built is an error naming the setting, never a fallback.

use std::sync::Arc;
use std::time::Duration;

/// A client could not be built; `setting` names what to fix.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: cannot build an HTTP client: {reason}")]
pub struct ClientError {
    pub setting: &'static str,
    pub reason: String,
}

/// Where a client may be redirected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redirects {
    /// Never: a redirect is an answer like any other (the purge sinks: a secret travels with
    /// every call, and a redirect would carry it to whoever the sink names).
    None,
    /// Only to the same host over https, at most 3 hops (the sync upstreams: a document from
    /// another host is not the provider's).
    SameHostHttps,
}

/// The trust store every outbound client uses: bundled roots + the extra CA certificates (DER).
#[derive(Clone)]
pub struct Roots {
    store: Arc<rustls::RootCertStore>,
}

impl std::fmt::Debug for Roots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Roots({} anchors)", self.store.len())
    }
}

impl Default for Roots {
    fn default() -> Self {
        Roots::with_extra(&[]).unwrap_or_else(|_| Roots {
            store: Arc::new(bundled()),
        })
    }
}

fn bundled() -> rustls::RootCertStore {
    rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

impl Roots {
    /// The bundled roots plus `extra` (PEM bytes of one or more certificates each).
    pub fn with_extra(extra: &[Vec<u8>]) -> Result<Roots, String> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut store = bundled();
        for pem in extra {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("not PEM certificates: {e}"))?;
                store
                    .add(cert)
                    .map_err(|e| format!("a certificate is not a usable CA: {e}"))?;
            }
        }
        Ok(Roots {
            store: Arc::new(store),
        })
    }

    /// How many trust anchors (for the start-up line).
    pub fn len(&self) -> usize {
        self.store.len()
    }

    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    /// A client for `setting`'s endpoints: these roots, `timeout` on every call (connect to last
    /// byte), `redirects`, no proxy from the environment.
    pub fn client(
        &self,
        setting: &'static str,
        timeout: Duration,
        redirects: Redirects,
    ) -> Result<reqwest::Client, ClientError> {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError {
            setting,
            reason: e.to_string(),
        })?
        .with_root_certificates(self.store.clone())
        .with_no_client_auth();
        let policy = match redirects {
            Redirects::None => reqwest::redirect::Policy::none(),
            Redirects::SameHostHttps => reqwest::redirect::Policy::custom(|attempt| {
                let from = attempt.previous().last().and_then(|u| u.host_str());
                if attempt.previous().len() > 3 {
                    attempt.error("more than 3 redirects")
                } else if attempt.url().scheme() != "https" {
                    attempt.error("a redirect away from https")
                } else if from != attempt.url().host_str() {
                    attempt.error("a redirect to another host")
                } else {
                    attempt.follow()
                }
            }),
        };
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(policy)
            .no_proxy()
            .build()
            .map_err(|e| ClientError {
                setting,
                reason: crate::outbound::chain(&e),
            })
    }
}

/// A response's `Retry-After` in seconds (the HTTP-date form is not used by the services we
/// call), at most `cap`: how long a 429 or a 503 asks the caller to wait.
pub fn retry_after(
    resp: &reqwest::Response,
    cap: std::time::Duration,
) -> Option<std::time::Duration> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| std::time::Duration::from_secs(s).min(cap))
}

/// An error with its causes, one line (reqwest's `Display` stops at the outermost).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_builds_without_any_system_store() {
        // The image has no /etc/ssl: this must not read one. (Run under the image's chroot by
        // the image test too; here it pins that building does not depend on the platform.)
        let roots = Roots::with_extra(&[]).unwrap_or_default();
        assert!(
            roots.len() > 100,
            "the bundled Mozilla roots: {}",
            roots.len()
        );
        for redirects in [Redirects::None, Redirects::SameHostHttps] {
            assert!(roots.client("X", Duration::from_secs(1), redirects).is_ok());
        }
    }

    #[test]
    fn extra_roots_are_added_and_garbage_is_refused() {
        let ca = rcgen_free_ca();
        let roots = Roots::with_extra(&[ca.into_bytes()]).unwrap_or_default();
        assert_eq!(roots.len(), bundled().len() + 1);
        let bad = Roots::with_extra(&[
            b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n".to_vec(),
        ]);
        assert!(bad.is_err());
    }

    /// A fixed self-signed CA (no rcgen in the origin's own dependencies).
    fn rcgen_free_ca() -> String {
        include_str!("../tests/fixtures/test-ca.pem").to_owned()
    }
}
