//! The worker's configuration: wrangler vars (`[vars]`, or `wrangler dev --var NAME:VALUE`) and
//! secrets (`wrangler secret put EDGE_SECRET`; locally `.dev.vars`). Read through one lookup so
//! it is testable natively; a bad value names the variable.

use crate::cors::AllowedOrigins;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeConfig {
    /// `ORIGIN_URL` (required): scheme, host and port of the origin, no trailing slash.
    pub origin_url: String,
    /// `EDGE_SECRET` (a secret): sent to the origin so it trusts our client IP. Required, except
    /// under `EDGE_INSECURE_DEV=true` (local runs only: the origin then sees the edge's own
    /// address for every client, and one client's flood limits everyone).
    pub edge_secret: Option<String>,
    /// `ORIGIN_TIMEOUT_MS` (default 3000): past it, stale-if-error or 504.
    pub origin_timeout_ms: u32,
    /// `RATE_LIMIT_PER_MINUTE` (default 600): sustained requests per client IP per minute.
    pub rate_per_minute: u32,
    /// `RATE_LIMIT_BURST` (default 100): how many may arrive at once.
    pub rate_burst: u32,
    /// `CORS_ALLOWED_ORIGINS` (default none): `*` or a comma-separated list of origins.
    pub cors: AllowedOrigins,
    /// `CACHE_TTL_DIVISOR` (default 1): divides every policy duration (tests only).
    pub ttl_divisor: u32,
}

impl EdgeConfig {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let origin_url = get("ORIGIN_URL")
            .map(|v| v.trim().trim_end_matches('/').to_owned())
            .filter(|v| !v.is_empty())
            .ok_or("ORIGIN_URL is required")?;
        if !(origin_url.starts_with("http://") || origin_url.starts_with("https://")) {
            return Err(format!(
                "ORIGIN_URL={origin_url:?} must start with http:// or https://"
            ));
        }
        let number = |name: &str, default: u32| -> Result<u32, String> {
            match get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
            {
                None => Ok(default),
                Some(v) => match v.parse::<u32>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(format!("{name}={v:?} must be a whole number above 0")),
                },
            }
        };
        let edge_secret = get("EDGE_SECRET").filter(|s| !s.is_empty());
        let insecure_dev = get("EDGE_INSECURE_DEV").is_some_and(|v| v.trim() == "true");
        if edge_secret.is_none() && !insecure_dev {
            return Err(
                "EDGE_SECRET is required (wrangler secret put EDGE_SECRET); only a local \
                        run may go without it, with EDGE_INSECURE_DEV=true"
                    .into(),
            );
        }
        Ok(EdgeConfig {
            origin_url,
            edge_secret,
            origin_timeout_ms: number("ORIGIN_TIMEOUT_MS", 3000)?,
            rate_per_minute: number("RATE_LIMIT_PER_MINUTE", 600)?,
            rate_burst: number("RATE_LIMIT_BURST", 100)?,
            cors: AllowedOrigins::parse(get("CORS_ALLOWED_ORIGINS").as_deref().unwrap_or("")),
            ttl_divisor: number("CACHE_TTL_DIVISOR", 1)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<EdgeConfig, String> {
        EdgeConfig::from_lookup(|k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn defaults_and_errors() {
        let c = cfg(&[
            ("ORIGIN_URL", "http://127.0.0.1:8080/"),
            ("EDGE_INSECURE_DEV", "true"),
        ])
        .unwrap();
        assert_eq!(c.origin_url, "http://127.0.0.1:8080");
        assert_eq!(
            (
                c.origin_timeout_ms,
                c.rate_per_minute,
                c.rate_burst,
                c.ttl_divisor
            ),
            (3000, 600, 100, 1)
        );
        assert_eq!(c.edge_secret, None);
        assert!(cfg(&[]).unwrap_err().contains("ORIGIN_URL"));
        assert!(
            cfg(&[("ORIGIN_URL", "ftp://x")])
                .unwrap_err()
                .contains("ORIGIN_URL")
        );
        let err = cfg(&[
            ("ORIGIN_URL", "http://x"),
            ("EDGE_SECRET", "s"),
            ("RATE_LIMIT_BURST", "lots"),
        ])
        .unwrap_err();
        assert!(err.contains("RATE_LIMIT_BURST"), "{err}");
    }

    #[test]
    fn a_production_edge_needs_its_secret() {
        let err = cfg(&[("ORIGIN_URL", "http://x")]).unwrap_err();
        assert!(err.contains("EDGE_SECRET"), "{err}");
        assert!(cfg(&[("ORIGIN_URL", "http://x"), ("EDGE_SECRET", "s")]).is_ok());
    }
}
