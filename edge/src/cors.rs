//! CORS for the Next.js frontend: which origins may read our answers, and the preflight answer.

/// `CORS_ALLOWED_ORIGINS`: `*`, or a comma-separated list of exact origins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowedOrigins {
    Any,
    List(Vec<String>),
}

/// Request headers a browser may send cross-origin.
pub const ALLOW_HEADERS: &str = "Authorization, Content-Type, If-None-Match, Idempotency-Key";
/// Response headers a browser script may read.
pub const EXPOSE_HEADERS: &str =
    "ETag, Age, X-Cache, Retry-After, RateLimit, RateLimit-Policy, X-Request-Id";
pub const ALLOW_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, OPTIONS";
/// How long a browser may reuse a preflight answer.
pub const MAX_AGE_SECS: u32 = 600;

impl AllowedOrigins {
    pub fn parse(raw: &str) -> Self {
        if raw.trim() == "*" {
            return AllowedOrigins::Any;
        }
        AllowedOrigins::List(
            raw.split(',')
                .map(|s| s.trim().trim_end_matches('/').to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        )
    }

    pub fn allows(&self, origin: &str) -> bool {
        match self {
            AllowedOrigins::Any => true,
            AllowedOrigins::List(list) => list.iter().any(|o| o == origin),
        }
    }

    /// Headers for an actual (non-preflight) response to a request from `origin`. `*` answers
    /// `Access-Control-Allow-Origin: *` and never allows credentials: any site could otherwise
    /// read a signed-in user's answers (browsers refuse the pair anyway).
    pub fn response_headers(&self, origin: Option<&str>) -> Vec<(&'static str, String)> {
        match (self, origin) {
            // `Timing-Allow-Origin` lets the page's Performance API see sizes and timings of
            // our answers (without it every entry reports 0 bytes and a frontend cannot tell a
            // browser-cache hit from the network).
            (AllowedOrigins::Any, _) => vec![
                ("Access-Control-Allow-Origin", "*".to_owned()),
                ("Access-Control-Expose-Headers", EXPOSE_HEADERS.to_owned()),
                ("Timing-Allow-Origin", "*".to_owned()),
            ],
            (_, Some(o)) if self.allows(o) => vec![
                ("Access-Control-Allow-Origin", o.to_owned()),
                ("Access-Control-Allow-Credentials", "true".to_owned()),
                ("Access-Control-Expose-Headers", EXPOSE_HEADERS.to_owned()),
                ("Timing-Allow-Origin", o.to_owned()),
            ],
            _ => Vec::new(),
        }
    }

    /// The preflight answer: `Some(headers)` for an allowed origin (204), `None` to refuse (403).
    pub fn preflight(&self, origin: &str, method: &str) -> Option<Vec<(&'static str, String)>> {
        let method_ok = ALLOW_METHODS
            .split(", ")
            .any(|m| m.eq_ignore_ascii_case(method.trim()));
        if !self.allows(origin) || !method_ok {
            return None;
        }
        let mut headers = vec![
            ("Access-Control-Allow-Methods", ALLOW_METHODS.to_owned()),
            ("Access-Control-Allow-Headers", ALLOW_HEADERS.to_owned()),
            ("Access-Control-Max-Age", MAX_AGE_SECS.to_string()),
        ];
        match self {
            AllowedOrigins::Any => headers.push(("Access-Control-Allow-Origin", "*".to_owned())),
            AllowedOrigins::List(_) => {
                headers.push(("Access-Control-Allow-Origin", origin.to_owned()));
                headers.push(("Access-Control-Allow-Credentials", "true".to_owned()));
            }
        }
        Some(headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_wildcards() {
        let list = AllowedOrigins::parse("https://nexnum.app, http://localhost:3000/");
        assert!(list.allows("https://nexnum.app"));
        assert!(list.allows("http://localhost:3000"));
        assert!(!list.allows("https://evil.example"));
        assert!(AllowedOrigins::parse("*").allows("https://anything.example"));
        assert!(!AllowedOrigins::parse("").allows("https://nexnum.app"));
    }

    #[test]
    fn preflight_answers_only_allowed_origins_and_methods() {
        let list = AllowedOrigins::parse("https://nexnum.app");
        let h = list.preflight("https://nexnum.app", "POST").unwrap();
        assert!(h.contains(&(
            "Access-Control-Allow-Origin",
            "https://nexnum.app".to_owned()
        )));
        assert!(list.preflight("https://evil.example", "GET").is_none());
        assert!(list.preflight("https://nexnum.app", "TRACE").is_none());
        assert!(
            list.response_headers(Some("https://evil.example"))
                .is_empty()
        );
        let allowed = list.response_headers(Some("https://nexnum.app"));
        assert_eq!(allowed.len(), 4);
        assert!(allowed.contains(&("Timing-Allow-Origin", "https://nexnum.app".to_owned())));
    }

    #[test]
    fn a_wildcard_never_allows_credentials() {
        let any = AllowedOrigins::parse("*");
        let actual = any.response_headers(Some("https://evil.example"));
        let preflight = any.preflight("https://evil.example", "POST").unwrap();
        for headers in [actual, preflight] {
            assert!(headers.contains(&("Access-Control-Allow-Origin", "*".to_owned())));
            let names: Vec<&str> = headers.iter().map(|(n, _)| *n).collect();
            assert!(
                !names.contains(&"Access-Control-Allow-Credentials"),
                "{names:?}"
            );
        }
    }
}
