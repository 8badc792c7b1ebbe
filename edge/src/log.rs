//! One structured line per request (JSON on `console.log`, which Workers Logs indexes field by
//! field and `wrangler tail` shows): what was asked, what was answered, what the cache did, what
//! the origin said and how long it took, and the request id the origin logs too, so an edge line
//! and an origin line for one request can be joined. It never holds a credential: no headers,
//! no query string, the caller by label only.

use std::borrow::Cow;

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct AccessLog {
    pub request_id: String,
    pub method: String,
    /// The path only: a query string is the client's to keep.
    pub path: String,
    pub status: u16,
    /// `HIT`, `MISS`, `STALE`, `BYPASS`; absent for answers the edge made itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_ms: Option<u64>,
    /// `client` or `trusted:<name>`.
    pub caller: Cow<'static, str>,
    /// Why the edge answered by itself (`rate_limited`, `method_not_allowed`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<&'static str>,
    pub ms: u64,
}

impl Default for AccessLog {
    fn default() -> Self {
        AccessLog {
            request_id: String::new(),
            method: String::new(),
            path: String::new(),
            status: 0,
            cache: None,
            origin_status: None,
            origin_ms: None,
            caller: Cow::Borrowed("client"),
            refused: None,
            ms: 0,
        }
    }
}

impl AccessLog {
    pub fn line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_one_json_object_without_empty_fields() {
        let log = AccessLog {
            request_id: "abc".into(),
            method: "GET".into(),
            path: "/v1/catalog/providers".into(),
            status: 200,
            cache: Some("MISS"),
            origin_status: Some(200),
            origin_ms: Some(12),
            caller: "client".into(),
            refused: None,
            ms: 14,
        };
        let line = log.line();
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["request_id"], "abc");
        assert_eq!(v["origin_ms"], 12);
        assert!(v.get("refused").is_none());
        let quiet = AccessLog::default().line();
        let v: serde_json::Value = serde_json::from_str(&quiet).unwrap();
        assert!(v.get("cache").is_none() && v.get("origin_status").is_none());
    }
}
