//! Who is asking: a client at its address (`CF-Connecting-IP`), or a trusted server-side client
//! (the Next.js server rendering for many users from a few egress addresses) that proves it with
//! one of the `TRUSTED_CLIENTS` keys. A trusted client gets its own, larger budget, counted by its
//! name, and may name the end user it asks for (`X-End-User-IP`), whom the edge then presents to
//! the origin as the client, so the origin's per-user tiers apply per end user.
//!
//! A wrong or missing key earns nothing: the request is an ordinary client's, and its
//! `X-End-User-IP` is ignored. Keys are compared in constant time, never forwarded (the header
//! is not in the forwarding allow-list) and never logged (the log names the client).

use core::net::IpAddr;

use subtle::ConstantTimeEq;

/// Shortest key accepted: 32 characters (a `openssl rand -hex 16` is 32).
pub const MIN_KEY_LEN: usize = 32;

/// `TRUSTED_CLIENTS`: `name=key` pairs, comma-separated.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TrustedClients {
    clients: Vec<(String, String)>,
}

impl core::fmt::Debug for TrustedClients {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let names: Vec<&str> = self.clients.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("TrustedClients")
            .field("names", &names)
            .finish_non_exhaustive()
    }
}

impl TrustedClients {
    /// Parses `name=key,name=key`; names are 1–32 of `a-z 0-9 -`, keys at least
    /// [`MIN_KEY_LEN`] visible ASCII characters, each key used once. Errors never echo a key.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut clients: Vec<(String, String)> = Vec::new();
        for (i, item) in raw.split(',').map(str::trim).enumerate() {
            if item.is_empty() {
                continue;
            }
            let Some((name, key)) = item.split_once('=') else {
                return Err(format!("TRUSTED_CLIENTS entry {} is not name=key", i + 1));
            };
            let (name, key) = (name.trim(), key.trim());
            let name_ok = (1..=32).contains(&name.len())
                && name
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
            if !name_ok {
                return Err(format!(
                    "TRUSTED_CLIENTS entry {}: the name must be 1-32 of a-z, 0-9, -",
                    i + 1
                ));
            }
            if key.len() < MIN_KEY_LEN || !key.bytes().all(|c| c.is_ascii_graphic()) {
                return Err(format!(
                    "TRUSTED_CLIENTS key of {name:?} must be at least {MIN_KEY_LEN} visible ASCII characters"
                ));
            }
            if clients.iter().any(|(n, k)| n == name || k == key) {
                return Err(format!("TRUSTED_CLIENTS names {name:?} or its key twice"));
            }
            clients.push((name.to_owned(), key.to_owned()));
        }
        Ok(TrustedClients { clients })
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// The name of the client whose key `given` is. Every configured key is compared, in
    /// constant time, whatever matches: the time taken says nothing about which key came close.
    pub fn identify(&self, given: &str) -> Option<&str> {
        let mut found = None;
        for (name, key) in &self.clients {
            if bool::from(key.as_bytes().ct_eq(given.as_bytes())) {
                found = Some(name.as_str());
            }
        }
        found
    }
}

/// The caller of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller<'a> {
    /// Anyone, at the address Cloudflare saw.
    Client { ip: Option<&'a str> },
    /// A trusted server-side client, by name, asking for `end_user` (if it said so).
    Trusted {
        name: &'a str,
        end_user: Option<IpAddr>,
    },
}

impl<'a> Caller<'a> {
    /// Who is asking, from the connecting address, the client key header and the end user header.
    pub fn identify(
        trusted: &'a TrustedClients,
        connecting_ip: Option<&'a str>,
        key: Option<&str>,
        end_user: Option<&str>,
    ) -> Caller<'a> {
        let name = key
            .filter(|_| !trusted.is_empty())
            .and_then(|k| trusted.identify(k.trim()));
        match name {
            Some(name) => Caller::Trusted {
                name,
                end_user: end_user.and_then(|v| v.trim().parse().ok()),
            },
            None => Caller::Client { ip: connecting_ip },
        }
    }

    /// The client address the origin is told (`X-Client-IP`): the end user a trusted client
    /// names, else the connecting address.
    pub fn forwarded_ip(&self, connecting_ip: Option<&str>) -> Option<String> {
        match self {
            Caller::Trusted {
                end_user: Some(ip), ..
            } => Some(ip.to_string()),
            _ => connecting_ip.map(|s| s.trim().to_owned()),
        }
    }

    /// How the log line names the caller: never a key.
    pub fn label(&self) -> String {
        match self {
            Caller::Client { .. } => "client".to_owned(),
            Caller::Trusted { name, .. } => format!("trusted:{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEXT_KEY: &str = "next-0123456789abcdef0123456789abcdef";
    const OTHER_KEY: &str = "tool-0123456789abcdef0123456789abcdef";

    fn clients() -> TrustedClients {
        TrustedClients::parse(&format!("nextjs={NEXT_KEY}, tools = {OTHER_KEY}")).unwrap()
    }

    #[test]
    fn the_list_is_validated_and_never_echoes_a_key() {
        assert!(TrustedClients::parse("").unwrap().is_empty());
        let bad = [
            "nextjs".to_owned(),
            format!("Next={NEXT_KEY}"),
            "nextjs=short".to_owned(),
            format!("a={NEXT_KEY},b={NEXT_KEY}"),
            format!("a={NEXT_KEY},a={OTHER_KEY}"),
            format!("a={NEXT_KEY} x"),
        ];
        for raw in bad {
            let err = TrustedClients::parse(&raw).unwrap_err();
            assert!(err.contains("TRUSTED_CLIENTS"), "{err}");
            assert!(
                !err.contains("0123456789abcdef"),
                "a key in an error: {err}"
            );
        }
        let debug = format!("{:?}", clients());
        assert!(
            debug.contains("nextjs") && !debug.contains(NEXT_KEY),
            "{debug}"
        );
    }

    #[test]
    fn a_valid_key_makes_a_trusted_caller_and_anything_else_an_ordinary_one() {
        let list = clients();
        let trusted =
            Caller::identify(&list, Some("10.1.1.1"), Some(NEXT_KEY), Some("203.0.113.9"));
        assert_eq!(
            trusted,
            Caller::Trusted {
                name: "nextjs",
                end_user: Some("203.0.113.9".parse().unwrap())
            }
        );
        assert_eq!(
            trusted.forwarded_ip(Some("10.1.1.1")).as_deref(),
            Some("203.0.113.9")
        );
        assert_eq!(trusted.label(), "trusted:nextjs");

        // No end user named (or nonsense): the connecting address goes on.
        let no_user = Caller::identify(&list, Some("10.1.1.1"), Some(OTHER_KEY), Some("nope"));
        assert_eq!(
            no_user,
            Caller::Trusted {
                name: "tools",
                end_user: None
            }
        );
        assert_eq!(
            no_user.forwarded_ip(Some("10.1.1.1")).as_deref(),
            Some("10.1.1.1")
        );

        for key in [
            None,
            Some(""),
            Some("next-0123456789abcdef0123456789abcdeX"),
            Some(&NEXT_KEY[..31]),
        ] {
            let caller = Caller::identify(&list, Some("198.51.100.1"), key, Some("203.0.113.9"));
            assert_eq!(
                caller,
                Caller::Client {
                    ip: Some("198.51.100.1")
                },
                "{key:?}"
            );
            assert_eq!(
                caller.forwarded_ip(Some("198.51.100.1")).as_deref(),
                Some("198.51.100.1"),
                "a forged end user is ignored"
            );
        }
        let none = TrustedClients::default();
        assert_eq!(
            Caller::identify(&none, None, Some(NEXT_KEY), None),
            Caller::Client { ip: None }
        );
    }
}
