//! Catalog codes (provider, country, service) are short lowercase slugs. Parsing them once at
//! the boundary means a cache key can never contain a separator, a space or an upper-case twin
//! of another key.

use std::fmt;

/// Longest accepted code. Real codes are 2–20 characters; 32 leaves room without letting a
/// client grow keys without bound.
pub const MAX_SLUG_LEN: usize = 32;

/// A validated code: 1–32 characters of `a-z`, `0-9`, `-`, `_`, starting with a letter or digit.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Slug(String);

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Slug {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[a-z0-9][a-z0-9_-]{0,31}$"))
            .min_length(Some(1))
            .max_length(Some(32))
            .examples(["whatsapp"])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Slug {}

impl TryFrom<String> for Slug {
    type Error = SlugError;
    fn try_from(raw: String) -> Result<Self, SlugError> {
        Slug::parse(&raw)
    }
}

impl From<Slug> for String {
    fn from(s: Slug) -> String {
        s.0
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlugError {
    Empty,
    TooLong,
    InvalidChar,
}

impl fmt::Display for SlugError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SlugError::Empty => "must not be empty",
            SlugError::TooLong => "must be at most 32 characters",
            SlugError::InvalidChar => {
                "must be lowercase letters, digits, '-' or '_', starting with a letter or digit"
            }
        })
    }
}

impl std::error::Error for SlugError {}

impl Slug {
    pub fn parse(raw: &str) -> Result<Self, SlugError> {
        Slug::check(raw).map(|()| Slug(raw.to_owned()))
    }

    /// What [`Slug::parse`] decides, without keeping the string (a hot path that only needs to
    /// know a borrowed segment is a valid code allocates nothing).
    pub fn check(raw: &str) -> Result<(), SlugError> {
        if raw.is_empty() {
            return Err(SlugError::Empty);
        }
        if raw.len() > MAX_SLUG_LEN {
            return Err(SlugError::TooLong);
        }
        let bytes = raw.as_bytes();
        let lead_ok = bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit();
        let rest_ok = bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_');
        if lead_ok && rest_ok {
            Ok(())
        } else {
            Err(SlugError::InvalidChar)
        }
    }

    /// A code [`Slug::check`] already accepted (this crate's borrowed parsers hand them on).
    pub(crate) fn checked(raw: &str) -> Slug {
        debug_assert!(Slug::check(raw).is_ok(), "{raw}");
        Slug(raw.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Slug {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_codes() {
        for ok in ["us", "5sim", "sms-activate", "whatsapp", "svc_0701", "a"] {
            assert_eq!(
                Slug::parse(ok).map(|s| s.as_str().to_owned()),
                Ok(ok.to_owned())
            );
        }
    }

    #[test]
    fn rejects_everything_else() {
        assert_eq!(Slug::parse(""), Err(SlugError::Empty));
        assert_eq!(Slug::parse(&"a".repeat(33)), Err(SlugError::TooLong));
        for bad in [
            "US", "w a", "a:b", "-x", "_x", "é", "a/b", "a%20", "{x}", "a.b",
        ] {
            assert_eq!(Slug::parse(bad), Err(SlugError::InvalidChar), "{bad}");
        }
    }
}
