//! How an answer goes out: its status, its headers and whether a body goes with it. A catalog
//! representation gets the policy's headers, its validators and the request's own (CORS, request
//! id, `Date`), or a 304 when the client's tag matches; a `HEAD` gets the same head without the
//! body. Errors are JSON with `private, no-store`. Pure; the glue builds the runtime's response.

use shared::CachePolicy;
use shared::etag::if_none_match_matches;
use shared::policy::PRIVATE_NO_STORE;
use shared::types::ErrorBody;

use crate::headers::{CacheStatus, client_headers};

/// A response's head, and whether the body follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: bool,
}

/// What one request asked of its answer.
pub struct Reply<'a> {
    pub policy: CachePolicy,
    pub if_none_match: Option<&'a str>,
    /// A `HEAD`: the head of the `GET`, no body.
    pub head_only: bool,
    /// Headers every answer to this request carries (CORS, `X-Request-Id`).
    pub extra: &'a [(&'static str, String)],
}

impl Reply<'_> {
    /// The head of a catalog representation with tag `etag`, `age` seconds old.
    pub fn representation(&self, etag: &str, cache: CacheStatus, age: u64, date: String) -> Head {
        let mut headers = client_headers(&self.policy, etag, cache, age);
        headers.extend_from_slice(self.extra);
        headers.push(("Date", date));
        let matches = !etag.is_empty()
            && self
                .if_none_match
                .is_some_and(|v| if_none_match_matches(v, etag));
        if matches {
            headers.retain(|(name, _)| *name != "Content-Type");
            return Head {
                status: 304,
                headers,
                body: false,
            };
        }
        Head {
            status: 200,
            headers,
            body: !self.head_only,
        }
    }
}

/// A JSON error's head; the body is [`error_body`].
pub fn error_head(status: u16, extra: &[(&'static str, String)]) -> Head {
    let mut headers = vec![
        ("Content-Type", "application/json".to_owned()),
        ("Cache-Control", PRIVATE_NO_STORE.to_owned()),
    ];
    headers.extend_from_slice(extra);
    Head {
        status,
        headers,
        body: true,
    }
}

/// `{"error": {"code", "message"}}`, the origin's shape.
pub fn error_body(code: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&ErrorBody::new(code, message)).unwrap_or_default()
}

/// `Vary` with `name` added once (case-insensitively) to what the origin sent: a shared cache
/// (or a browser) must not hand an answer made for one `Origin` to another.
pub fn merge_vary(existing: Option<&str>, name: &str) -> String {
    match existing.map(str::trim).filter(|v| !v.is_empty()) {
        None => name.to_owned(),
        Some(v)
            if v == "*"
                || v.split(',')
                    .any(|item| item.trim().eq_ignore_ascii_case(name)) =>
        {
            v.to_owned()
        }
        Some(v) => format!("{v}, {name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::DataType;

    fn reply<'a>(
        inm: Option<&'a str>,
        head_only: bool,
        extra: &'a [(&'static str, String)],
    ) -> Reply<'a> {
        Reply {
            policy: DataType::Prices.policy(),
            if_none_match: inm,
            head_only,
            extra,
        }
    }

    fn get<'a>(head: &'a Head, name: &str) -> Option<&'a str> {
        head.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_representation_carries_its_policy_validators_and_the_requests_headers() {
        let extra = [("X-Request-Id", "abc".to_owned())];
        let head =
            reply(None, false, &extra).representation("\"t\"", CacheStatus::Hit, 7, "D".into());
        assert_eq!((head.status, head.body), (200, true));
        assert_eq!(
            get(&head, "cache-control"),
            Some(DataType::Prices.policy().cache_control().as_str())
        );
        assert_eq!(get(&head, "etag"), Some("\"t\""));
        assert_eq!(get(&head, "age"), Some("7"));
        assert_eq!(get(&head, "x-cache"), Some("HIT"));
        assert_eq!(get(&head, "x-request-id"), Some("abc"));
        assert_eq!(get(&head, "vary"), Some("Origin"));
        assert_eq!(get(&head, "date"), Some("D"));
    }

    #[test]
    fn a_matching_tag_is_a_304_without_body_or_content_type() {
        for inm in ["\"t\"", "W/\"t\"", "\"x\", \"t\"", "*"] {
            let head = reply(Some(inm), false, &[]).representation(
                "\"t\"",
                CacheStatus::Miss,
                0,
                "D".into(),
            );
            assert_eq!((head.status, head.body), (304, false), "{inm}");
            assert_eq!(get(&head, "content-type"), None);
            assert_eq!(get(&head, "etag"), Some("\"t\""));
        }
        let head = reply(Some("\"other\""), false, &[]).representation(
            "\"t\"",
            CacheStatus::Miss,
            0,
            "D".into(),
        );
        assert_eq!(head.status, 200);
    }

    #[test]
    fn a_head_is_the_gets_head_without_the_body() {
        let get_head =
            reply(None, false, &[]).representation("\"t\"", CacheStatus::Hit, 1, "D".into());
        let head_head =
            reply(None, true, &[]).representation("\"t\"", CacheStatus::Hit, 1, "D".into());
        assert_eq!(head_head.headers, get_head.headers);
        assert_eq!((head_head.status, head_head.body), (200, false));
    }

    #[test]
    fn errors_are_private_json() {
        let head = error_head(502, &[("Retry-After", "1".to_owned())]);
        assert_eq!(get(&head, "cache-control"), Some(PRIVATE_NO_STORE));
        assert_eq!(get(&head, "content-type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_slice(&error_body("x", "y")).unwrap();
        assert_eq!(body["error"]["code"], "x");
    }

    #[test]
    fn vary_gains_origin_once() {
        assert_eq!(merge_vary(None, "Origin"), "Origin");
        assert_eq!(merge_vary(Some(""), "Origin"), "Origin");
        assert_eq!(
            merge_vary(Some("Accept-Encoding"), "Origin"),
            "Accept-Encoding, Origin"
        );
        assert_eq!(
            merge_vary(Some("accept-encoding, origin"), "Origin"),
            "accept-encoding, origin"
        );
        assert_eq!(merge_vary(Some("*"), "Origin"), "*");
    }
}
