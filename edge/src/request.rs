//! What of a client's request the edge accepts and passes on: its method (read raw, not as
//! workers-rs maps it), the request headers the origin may see (an allow-list), its body (capped
//! at what the origin accepts), the request id and W3C trace context, and which origin statuses
//! can become a response at all. Pure decisions, tested natively; the glue applies them.

use shared::headers::{EDGE_CLIENT_KEY, REQUEST_ID, TRACEPARENT, TRACESTATE};

/// A request method as the client sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MethodCheck {
    /// One the API uses: passed on under this (upper-case) name.
    Allowed(&'static str),
    /// A standard method the API never serves (`TRACE`, `CONNECT`): 405 with `Allow`.
    NotAllowed,
    /// Anything else (`PROPFIND`, `PURGE`, a typo): 501. workers-rs would have turned it into
    /// a `GET` (`Request::method()` maps unknown methods to `Get`), so it is read raw.
    Unknown,
}

/// What `Allow` says on a 405.
pub const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

pub fn method(raw: &str) -> MethodCheck {
    // Methods are case-sensitive (RFC 9110 §9.1): `get` is not `GET`.
    match raw {
        "GET" => MethodCheck::Allowed("GET"),
        "HEAD" => MethodCheck::Allowed("HEAD"),
        "POST" => MethodCheck::Allowed("POST"),
        "PUT" => MethodCheck::Allowed("PUT"),
        "PATCH" => MethodCheck::Allowed("PATCH"),
        "DELETE" => MethodCheck::Allowed("DELETE"),
        "OPTIONS" => MethodCheck::Allowed("OPTIONS"),
        "TRACE" | "CONNECT" => MethodCheck::NotAllowed,
        _ => MethodCheck::Unknown,
    }
}

/// Whether a method carries a body the origin may read.
pub fn has_body(method: &str) -> bool {
    matches!(method, "POST" | "PUT" | "PATCH" | "DELETE")
}

/// The request headers a client's request may pass on to the origin. Everything else stays at
/// the edge: hop-by-hop headers and whatever `Connection` names, `Expect` (an origin's
/// `100 Continue` handed back to the worker would be a response status it cannot build), `TE`
/// and `Trailer`, `Proxy-*`, every identity header a client could forge (`Forwarded`,
/// `X-Forwarded-*`, `X-Real-IP`, `True-Client-IP`, `CF-*`, the edge's own trust headers),
/// method overrides, `Host`, and the trusted-client key. The edge adds its own trust headers,
/// request id and trace context after this.
const FORWARDED: &[&str] = &[
    "accept",
    "accept-encoding",
    "accept-language",
    "authorization",
    "content-type",
    "cookie",
    "idempotency-key",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-unmodified-since",
    "origin",
    "referer",
    "user-agent",
    "x-requested-with",
];

/// Whether a client's request header is passed on to the origin (names compare
/// case-insensitively).
pub fn forwarded_header(name: &str) -> bool {
    FORWARDED
        .iter()
        .any(|allowed| allowed.eq_ignore_ascii_case(name))
}

/// How a request body goes to the origin, decided from the method and `Content-Length` before
/// any of it is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyPlan {
    /// No body (a `GET`, or a declared length of 0).
    None,
    /// A declared length within the limit: the runtime's stream is handed to the origin fetch as
    /// it is (the runtime holds the client to that length), never read into wasm.
    Stream,
    /// No declared length (chunked): read at most the limit plus one byte, 413 beyond.
    Capped,
    /// Declared over the limit: 413 before anything is read or sent.
    TooLarge,
    /// A `Content-Length` that is not a number: 400.
    BadLength,
}

/// `limit` is the route's ([`shared::headers::max_body_bytes`]).
pub fn body_plan(
    method: &str,
    content_length: Option<&str>,
    has_stream: bool,
    limit: usize,
) -> BodyPlan {
    if !has_body(method) || !has_stream {
        return BodyPlan::None;
    }
    match content_length.map(str::trim) {
        None => BodyPlan::Capped,
        Some(v) => match v.parse::<u64>() {
            Ok(0) => BodyPlan::None,
            Ok(n) if n > limit as u64 => BodyPlan::TooLarge,
            Ok(_) => BodyPlan::Stream,
            Err(_) => BodyPlan::BadLength,
        },
    }
}

/// Whether an origin status can be handed to the client. The Workers runtime only builds
/// responses with 200–599 (anything else makes workers-rs panic and the isolate restart); a
/// `1xx` from the origin is a protocol error at the edge, answered 502.
pub fn answerable_status(status: u16) -> bool {
    (200..=599).contains(&status)
}

/// The request id for a request: Cloudflare's `cf-ray` when it is well formed (production always
/// has one; it is also what Cloudflare's own logs carry), else `None` and the glue makes one.
/// Well formed is what the origin accepts: 1–64 of `A-Z a-z 0-9 - _ .`.
pub fn request_id_from_ray(cf_ray: Option<&str>) -> Option<&str> {
    cf_ray.filter(|id| well_formed_id(id))
}

pub fn well_formed_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c))
}

/// A request id from 16 random bytes: 32 lower-case hex digits (the origin's own form).
pub fn request_id_from_bytes(bytes: &[u8; 16]) -> String {
    let mut id = String::with_capacity(32);
    for b in bytes {
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    id
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A `traceparent` passed on only when it is a valid version-00 header (W3C Trace Context §3.2:
/// 32 hex trace id and 16 hex parent id, neither all zeros, 2 hex flags, lower case); an invalid
/// one is dropped, and so is the `tracestate` that came with it (§3.3: no state without a valid
/// parent).
pub fn valid_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.trim().split('-').collect();
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    };
    let not_zero = |s: &str| s.bytes().any(|c| c != b'0');
    matches!(parts.as_slice(), [version, trace, parent, flags]
        if *version == "00" && hex(trace, 32) && not_zero(trace) && hex(parent, 16)
            && not_zero(parent) && hex(flags, 2))
}

/// `tracestate` is passed on with a valid `traceparent` when it is a plausible list: at most 512
/// characters of printable ASCII (§3.3.1.1), so it cannot carry a header injection or a megabyte.
pub fn valid_tracestate(value: &str) -> bool {
    value.len() <= 512 && value.bytes().all(|c| (0x20..0x7f).contains(&c))
}

/// Names of the headers the edge sets itself toward the origin; a client's copies are never
/// passed on (they are not in the allow-list either; listed for the tests and the docs).
pub const SET_BY_EDGE: &[&str] = &[
    shared::headers::EDGE_SECRET,
    shared::headers::CLIENT_IP,
    REQUEST_ID,
    TRACEPARENT,
    TRACESTATE,
];

/// Never forwarded, whoever sends it.
pub const NEVER_FORWARDED: &[&str] = &[EDGE_CLIENT_KEY];

#[cfg(test)]
mod tests {
    use super::*;
    use shared::headers::MAX_REQUEST_BODY_BYTES;

    #[test]
    fn methods_are_read_raw_and_checked_case_sensitively() {
        assert_eq!(method("GET"), MethodCheck::Allowed("GET"));
        assert_eq!(method("DELETE"), MethodCheck::Allowed("DELETE"));
        for m in ["TRACE", "CONNECT"] {
            assert_eq!(method(m), MethodCheck::NotAllowed, "{m}");
        }
        for m in ["PROPFIND", "PURGE", "get", "GeT", "", "G ET", "BREW"] {
            assert_eq!(method(m), MethodCheck::Unknown, "{m}");
        }
    }

    #[test]
    fn only_the_allow_list_reaches_the_origin() {
        for name in [
            "Authorization",
            "cookie",
            "Content-Type",
            "Idempotency-Key",
            "If-None-Match",
        ] {
            assert!(forwarded_header(name), "{name}");
        }
        let hostile = [
            "Expect",
            "TE",
            "Trailer",
            "Connection",
            "Keep-Alive",
            "Upgrade",
            "Transfer-Encoding",
            "Content-Length",
            "Host",
            "Proxy-Authorization",
            "Proxy-Connection",
            "Forwarded",
            "X-Forwarded-For",
            "X-Forwarded-Host",
            "X-Forwarded-Proto",
            "X-Real-IP",
            "True-Client-IP",
            "CF-Connecting-IP",
            "X-HTTP-Method-Override",
            "X-Method-Override",
            "X-Edge-Secret",
            "X-Client-IP",
            "X-Edge-Client-Key",
            "X-End-User-IP",
            "X-Request-Id",
            "traceparent",
            "tracestate",
        ];
        for name in hostile {
            assert!(!forwarded_header(name), "{name} must not be forwarded");
        }
        for name in SET_BY_EDGE.iter().chain(NEVER_FORWARDED) {
            assert!(!forwarded_header(name), "{name}");
        }
    }

    #[test]
    fn bodies_are_planned_before_they_are_read() {
        let limit = MAX_REQUEST_BODY_BYTES;
        let (max, over) = (limit.to_string(), (limit + 1).to_string());
        let plan = |m, l, s| body_plan(m, l, s, limit);
        assert_eq!(plan("GET", Some("10"), true), BodyPlan::None);
        assert_eq!(plan("POST", None, false), BodyPlan::None);
        assert_eq!(plan("POST", Some("0"), true), BodyPlan::None);
        assert_eq!(plan("POST", Some(&max), true), BodyPlan::Stream);
        assert_eq!(plan("POST", Some(&over), true), BodyPlan::TooLarge);
        assert_eq!(plan("PUT", Some("8000000"), true), BodyPlan::TooLarge);
        assert_eq!(plan("POST", None, true), BodyPlan::Capped);
        assert_eq!(plan("PATCH", Some("12x"), true), BodyPlan::BadLength);
        assert_eq!(plan("POST", Some("-1"), true), BodyPlan::BadLength);
        // The bulk price route takes larger bodies, and only that route.
        let bulk = shared::headers::max_body_bytes("PUT", "/v1/admin/prices");
        assert_eq!(body_plan("PUT", Some(&over), true, bulk), BodyPlan::Stream);
        assert_eq!(
            shared::headers::max_body_bytes("POST", "/v1/admin/prices"),
            limit
        );
        assert_eq!(
            shared::headers::max_body_bytes("PUT", "/v1/admin/prices/a/b/c"),
            limit
        );
    }

    #[test]
    fn only_final_statuses_become_responses() {
        for s in [100, 101, 103, 199, 600, 999, 0] {
            assert!(!answerable_status(s), "{s}");
        }
        for s in [200, 204, 304, 404, 429, 500, 599] {
            assert!(answerable_status(s), "{s}");
        }
    }

    #[test]
    fn request_ids() {
        assert_eq!(
            request_id_from_ray(Some("8c2f1a2b3c4d5e6f-SJC")),
            Some("8c2f1a2b3c4d5e6f-SJC")
        );
        assert_eq!(request_id_from_ray(Some("bad id\r\nx: y")), None);
        assert_eq!(request_id_from_ray(Some(&"a".repeat(65))), None);
        assert_eq!(request_id_from_ray(None), None);
        let id = request_id_from_bytes(&[0xab; 16]);
        assert_eq!(id, "ab".repeat(16));
        assert!(well_formed_id(&id));
    }

    #[test]
    fn trace_context_is_passed_on_only_when_valid() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(valid_traceparent(good));
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(!valid_traceparent(bad), "{bad}");
        }
        assert!(valid_tracestate("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"));
        assert!(!valid_tracestate(&"a".repeat(513)));
        assert!(!valid_tracestate("a=b\r\nx: y"));
    }
}
