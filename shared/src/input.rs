//! Parsers of two client inputs the origin authenticates with, kept here (pure, no I/O) so the
//! property tests and the fuzz target reach them: the email an account is named by, and the
//! pairs of a `Cookie` header.

/// An email as a mail system would take it, lower-cased and trimmed, or `None`: ASCII only; a
/// dot-atom local part of at most 64 characters (letters, digits and `!#$%*+-/=?^_{|}~`, dots
/// between them), without the characters markup gives meaning to (`<>"'&` and backquote),
/// control or bidi characters; a domain of two or more LDH labels (letters, digits, inner
/// hyphens; at most 63 each) whose last is letters (or an `xn--` label); at most 254 in all.
/// Internationalised addresses are refused: they would need IDNA and SMTPUTF8 handling this
/// service does not do.
pub fn normalize_email(raw: &str) -> Option<String> {
    let email = raw.trim().to_ascii_lowercase();
    if email.len() > 254 || !email.is_ascii() {
        return None;
    }
    let (local, domain) = email.split_once('@')?;
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%*+-/=?^_{|}~".contains(c);
    let dot_atom = |s: &str| {
        !s.is_empty()
            && s.split('.')
                .all(|part| !part.is_empty() && part.chars().all(atext))
    };
    if local.len() > 64 || !dot_atom(local) {
        return None;
    }
    let ldh = |l: &str| {
        (1..=63).contains(&l.len())
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let last = domain.rsplit('.').next().unwrap_or("");
    let tld_ok = last.starts_with("xn--")
        || (last.len() >= 2 && last.chars().all(|c| c.is_ascii_alphabetic()));
    let labels = domain.split('.').count();
    if domain.len() > 253 || labels < 2 || !domain.split('.').all(ldh) || !tld_ok {
        return None;
    }
    Some(email)
}

/// The `name=value` pairs of one `Cookie` header value, trimmed, in order (a pair without `=`
/// is skipped). Names are compared exactly by callers: `__Host-session` is not `__host-session`.
pub fn cookie_pairs(header: &str) -> impl Iterator<Item = (&str, &str)> {
    header.split(';').filter_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        Some((name.trim(), value.trim()))
    })
}

/// An `Idempotency-Key` as every route that takes one accepts it: 1–64 visible ASCII characters
/// (`^[!-~]{1,64}$`, the pattern `openapi.json` declares). The one check, at the boundary: an
/// empty, overlong or spaced key is a 400 there, never a database error later.
pub fn idempotency_key(raw: &str) -> Option<&str> {
    (!raw.is_empty() && raw.len() <= 64 && raw.bytes().all(|b| b.is_ascii_graphic())).then_some(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_pairs_are_split_and_trimmed() {
        let pairs: Vec<_> = cookie_pairs(" a=1; b = 2 ;junk; c=x=y;").collect();
        assert_eq!(pairs, [("a", "1"), ("b", "2"), ("c", "x=y")]);
    }

    #[test]
    fn emails_are_what_a_mail_system_takes() {
        assert_eq!(
            normalize_email(" A.B+t@Example.COM "),
            Some("a.b+t@example.com".into())
        );
        for bad in [
            "a@b",
            "<b>@x.yz",
            "a\u{202e}@x.yz",
            "a@x.y1",
            "a..b@x.yz",
            "@x.yz",
        ] {
            assert_eq!(normalize_email(bad), None, "{bad:?}");
        }
    }
}
