//! Tracing (structured logs, one span per request) and Sentry. Metrics live in
//! [`crate::meters`].

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global tracing subscriber: JSON lines, filtered by `RUST_LOG` (default `info`);
/// with a Sentry DSN, ERROR events (every 5xx is logged once, in `ApiError`) and panics also go
/// to Sentry, and lower levels become breadcrumbs. Without a DSN nothing is sent anywhere.
/// Keep the returned guard alive: dropping it flushes pending events.
///
/// The log lines go to stdout for the server (what a container's log driver collects) and to
/// stderr for one-shot commands (`to_stderr`), whose stdout is their answer (`check --json`,
/// `sync --json`): a script reads one without filtering out the other.
pub fn init(
    filter: &str,
    sentry_dsn: Option<&str>,
    to_stderr: bool,
) -> Option<sentry::ClientInitGuard> {
    let guard = sentry_dsn.map(|dsn| {
        let mut options = sentry::ClientOptions::default();
        options.release = sentry::release_name!();
        options.attach_stacktrace = true;
        sentry::init((dsn, options))
    });
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let sentry_layer = guard
        .as_ref()
        .map(|_| sentry::integrations::tracing::layer());
    let writer = if to_stderr {
        BoxMakeWriter::new(std::io::stderr)
    } else {
        BoxMakeWriter::new(std::io::stdout)
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_writer(writer),
        )
        .with(sentry_layer)
        .try_init();
    guard
}
