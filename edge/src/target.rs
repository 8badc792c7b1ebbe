//! The parts of a request URL the worker uses (host, path, query), sliced from the URL string
//! the runtime hands over, without a URL parser: the runtime has already parsed and normalised
//! it (WHATWG URL: lower-case host, default port dropped, path percent-encoded), so all that is
//! left is to find the separators. The `url` crate would also bring IDNA's Unicode tables into
//! the wasm (a large part of its size) to re-parse what is already parsed.

/// A request URL cut into what the worker reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target<'a> {
    /// `host[:port]` as it appears in the URL.
    pub authority: &'a str,
    /// Never empty: `/` at least.
    pub path: &'a str,
    /// Without the `?`; `None` when there is no `?`.
    pub query: Option<&'a str>,
}

impl<'a> Target<'a> {
    /// `None` when `url` is not absolute (`scheme://…`); the runtime always gives absolute URLs.
    pub fn parse(url: &'a str) -> Option<Self> {
        let (_scheme, rest) = url.split_once("://")?;
        // Nothing after a fragment mark is sent by clients or used here.
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, rest) = rest.split_at(authority_end);
        // Credentials in a URL are not part of the host.
        let authority = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        let path = if path.is_empty() { "/" } else { path };
        Some(Target {
            authority,
            path,
            query,
        })
    }

    /// The path and query, as sent on to the origin.
    pub fn path_and_query(&self) -> String {
        match self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(url: &str) -> (&str, &str, Option<&str>) {
        let t = Target::parse(url).unwrap();
        (t.authority, t.path, t.query)
    }

    #[test]
    fn cuts_the_urls_the_runtime_gives() {
        assert_eq!(
            t("https://edge.example/v1/catalog/providers"),
            ("edge.example", "/v1/catalog/providers", None)
        );
        assert_eq!(
            t("http://127.0.0.1:8787/v1/catalog/5sim/prices/us?services=a,b&x=1"),
            (
                "127.0.0.1:8787",
                "/v1/catalog/5sim/prices/us",
                Some("services=a,b&x=1")
            )
        );
        assert_eq!(t("https://h/?q"), ("h", "/", Some("q")));
        assert_eq!(t("https://h"), ("h", "/", None));
        assert_eq!(t("https://h?q=1"), ("h", "/", Some("q=1")));
        assert_eq!(t("https://h/a?"), ("h", "/a", Some("")));
        assert_eq!(t("https://h/a#frag?x"), ("h", "/a", None));
        assert_eq!(
            t("https://u:p@h:1/a%2Fb?c=%3F"),
            ("h:1", "/a%2Fb", Some("c=%3F"))
        );
        assert_eq!(t("https://[::1]:8787/p"), ("[::1]:8787", "/p", None));
        assert_eq!(Target::parse("/relative"), None);
    }

    #[test]
    fn path_and_query_round_trip() {
        for url in ["https://h/a/b?c=1&d", "https://h/a", "https://h/a?"] {
            let target = Target::parse(url).unwrap();
            let rest = url.trim_start_matches("https://h");
            assert_eq!(target.path_and_query(), rest, "{url}");
        }
    }
}
