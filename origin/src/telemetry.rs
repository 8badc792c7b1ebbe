//! Tracing (structured logs, one span per request) and Sentry. Metrics live in
//! [`crate::meters`].

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormattedFields;
use tracing_subscriber::fmt::format::{FormatFields, Writer};
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
    settings: &crate::config::Telemetry,
    to_stderr: bool,
) -> Result<Option<sentry::ClientInitGuard>, crate::outbound::ClientError> {
    let guard =
        match &settings.sentry {
            None => None,
            Some(config) => {
                use secrecy::ExposeSecret;
                // Sentry's own transport would build a reqwest client on the platform's roots (none
                // in the image: a panic at start); it gets one of ours instead.
                let client = settings.roots.client(
                    "SENTRY_DSN",
                    std::time::Duration::from_secs(10),
                    crate::outbound::Redirects::None,
                )?;
                let dsn: sentry::types::Dsn = config.dsn.expose_secret().parse().map_err(
                    |e: sentry::types::ParseDsnError| crate::outbound::ClientError {
                        setting: "SENTRY_DSN",
                        reason: e.to_string(),
                    },
                )?;
                let mut options = sentry::ClientOptions::default();
                options.dsn = Some(dsn);
                options.release = Some(crate::build::release().into());
                options.environment = Some(config.environment.as_str().into());
                options.attach_stacktrace = true;
                options.transport = Some(std::sync::Arc::new(
                    move |options: &sentry::ClientOptions| {
                        let transport: std::sync::Arc<dyn sentry::Transport> =
                            match sentry::TransportOptions::try_from_client_options(options) {
                                Some(t) => std::sync::Arc::new(
                                    sentry::transports::ReqwestHttpTransportOptions::from(t)
                                        .with_client(client.clone())
                                        .build(),
                                ),
                                // Unreachable with the DSN set above; never panic for it.
                                None => std::sync::Arc::new(NoTransport),
                            };
                        transport
                    },
                ));
                Some(sentry::init(options))
            }
        };
    let filter = settings.log_filter.as_str();
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
                .fmt_fields(SpanFields)
                .with_writer(writer),
        )
        .with(sentry_layer)
        .try_init();
    Ok(guard)
}

/// Sends nothing (a transport that could not be made).
struct NoTransport;

impl sentry::Transport for NoTransport {
    fn send_envelope(&self, _: sentry::Envelope) {}
}

/// A span's fields as the JSON log stores them (an object, read back when a line is logged in
/// the span), written straight into the span's string. `tracing-subscriber`'s own `JsonFields`
/// collects them into a map of `serde_json::Value`s and serializes that: ~2 900 instructions for
/// a request's span of one field, most of what a span cost a request that has to wait (#26).
/// Same JSON (an object of the same keys and values; the event formatter parses it into a
/// sorted map, so the order of the keys does not show); tested against `JsonFields` below.
#[derive(Debug, Default)]
pub struct SpanFields;

impl<'writer> FormatFields<'writer> for SpanFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        // Made on the stack and handed over in one write: the span's string is then allocated
        // once, at its size, instead of growing through a write per piece. Fields too long for
        // the buffer are written straight through.
        let mut object = crate::small::Small::<256>::new();
        if write_object(&mut object, &fields).is_ok() {
            return writer.write_str(object.as_str());
        }
        write_object(&mut writer, &fields)
    }

    /// Fields recorded after the span was made (`Span::record`): added inside the object. A
    /// key recorded twice appears twice; read back, the later value wins, as with `JsonFields`.
    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        if current.fields.is_empty() {
            return self.format_fields(current.as_writer(), fields);
        }
        if !current.fields.ends_with('}') {
            return Err(fmt::Error);
        }
        current.fields.pop();
        let first = current.fields.ends_with('{');
        let mut visitor = ObjectWriter {
            out: &mut current.fields,
            first,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result?;
        current.fields.push('}');
        Ok(())
    }
}

/// `{` the fields as `"name":value` pairs `}`.
fn write_object<W: fmt::Write>(out: &mut W, fields: &impl RecordFields) -> fmt::Result {
    out.write_char('{')?;
    let mut visitor = ObjectWriter {
        out: &mut *out,
        first: true,
        result: Ok(()),
    };
    fields.record(&mut visitor);
    visitor.result?;
    out.write_char('}')
}

/// Writes `"name":value` pairs, comma-separated, as a [`Visit`]or.
struct ObjectWriter<'a, W: fmt::Write> {
    out: &'a mut W,
    first: bool,
    result: fmt::Result,
}

impl<W: fmt::Write> ObjectWriter<'_, W> {
    /// The key (a raw identifier's `r#` dropped, as `JsonFields` does) and what writes its value.
    fn pair(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.result = (|| {
            if !std::mem::take(&mut self.first) {
                self.out.write_char(',')?;
            }
            json_str(self.out, name)?;
            self.out.write_char(':')?;
            value(self.out)
        })();
    }
}

impl<W: fmt::Write> Visit for ObjectWriter<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.pair(field, |out| json_str(out, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.pair(field, |out| {
            out.write_char('"')?;
            fmt::write(&mut Escaping(out), format_args!("{value:?}"))?;
            out.write_char('"')
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.pair(field, |out| write!(out, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.pair(field, |out| write!(out, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.pair(field, |out| write!(out, "{value}"));
    }

    /// As `serde_json` writes an `f64`: not finite is `null`.
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.pair(field, |out| match serde_json::Number::from_f64(value) {
            Some(n) => write!(out, "{n}"),
            None => out.write_str("null"),
        });
    }

    /// As `JsonFields` writes bytes: an array of numbers.
    fn record_bytes(&mut self, field: &Field, value: &[u8]) {
        self.pair(field, |out| {
            out.write_char('[')?;
            for (i, b) in value.iter().enumerate() {
                if i > 0 {
                    out.write_char(',')?;
                }
                write!(out, "{b}")?;
            }
            out.write_char(']')
        });
    }
}

/// `text` as a JSON string, quotes included.
fn json_str(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    out.write_char('"')?;
    Escaping(&mut *out).write_str_escaped(text)?;
    out.write_char('"')
}

/// The bytes a JSON string cannot hold as they are: `"`, `\\` and the control characters.
const NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// Writes what it is given escaped for the inside of a JSON string (as it is formatted, for a
/// `Debug` value: nothing is collected first).
struct Escaping<'a, W: fmt::Write>(&'a mut W);

impl<W: fmt::Write> Escaping<'_, W> {
    fn write_str_escaped(&mut self, s: &str) -> fmt::Result {
        // Runs of plain text go out whole (a request id is one run), found by table lookup.
        let mut plain = 0;
        for (i, b) in s.bytes().enumerate() {
            if !NEEDS_ESCAPE[usize::from(b)] {
                continue;
            }
            let escaped = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                b if b < b' ' => "",
                _ => continue,
            };
            // `i` is at an ASCII byte, so both slices end on character boundaries.
            self.0.write_str(&s[plain..i])?;
            if escaped.is_empty() {
                write!(self.0, "\\u{:04x}", b)?;
            } else {
                self.0.write_str(escaped)?;
            }
            plain = i + 1;
        }
        self.0.write_str(&s[plain..])
    }
}

impl<W: fmt::Write> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write_str_escaped(s)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::format::JsonFields;
    use tracing_subscriber::layer::SubscriberExt;

    use super::SpanFields;

    /// A writer the tests read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Logs the same spans and events through the JSON layer with `fields` as its span
    /// formatter; the lines, parsed, without their timestamps.
    fn lines<N>(fields: N) -> Vec<serde_json::Value>
    where
        N: for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static,
    {
        let out = Captured::default();
        let writer = out.clone();
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .fmt_fields(fields)
            .with_writer(move || writer.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            #[derive(Debug)]
            #[allow(dead_code)]
            struct Odd {
                quote: &'static str,
            }
            // Past the stack buffer: written straight through.
            let long = "long \"text\" ".repeat(40);
            let span = tracing::info_span!(
                "request",
                request_id = "0af7651916cd43dd8448eb211c80319c",
                text = "a \"quoted\" back\\slash, tab\t, newline\n, bell\u{7}, é, 日本",
                count = 42u64,
                delta = -7i64,
                ok = true,
                ratio = 0.25f64,
                nan = f64::NAN,
                odd = ?Odd { quote: "\"" },
                r#type = "raw",
                long = long.as_str(),
                later = tracing::field::Empty,
            );
            span.in_scope(|| tracing::info!(status = 502, "inside"));
            span.record("later", "recorded after");
            span.record("count", 43u64);
            span.in_scope(|| tracing::warn!("after a record"));
            let empty = tracing::info_span!("empty", later = tracing::field::Empty);
            empty.in_scope(|| tracing::info!("in an empty span"));
            empty.record("later", 1u64);
            empty.in_scope(|| tracing::info!("recorded into an empty span"));
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| {
                let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
                v.as_object_mut().unwrap().remove("timestamp");
                v
            })
            .collect()
    }

    #[test]
    fn span_fields_read_back_as_json_fields_do() {
        let lean = lines(SpanFields);
        let reference = lines(JsonFields::new());
        assert_eq!(lean.len(), 4);
        assert_eq!(lean, reference);
        // And they carry what they should (so equal is not equally empty).
        assert_eq!(
            lean[0]["span"]["request_id"],
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(lean[0]["span"]["type"], "raw");
        assert_eq!(lean[0]["span"]["long"].as_str().map(str::len), Some(480));
        assert!(lean[0]["span"]["nan"].is_null());
        assert_eq!(lean[1]["span"]["later"], "recorded after");
        assert_eq!(lean[1]["span"]["count"], 43);
        assert_eq!(lean[3]["span"]["later"], 1);
    }
}
