//! Failed sign-ins, counted by where they come from (OWASP ASVS 2.2.1, and OWASP's device-cookie
//! answer to targeted lockout), and sign-ups per address.
//!
//! Two budgets per account, both *reserved* before a password is hashed, atomically
//! (`login_reserve.lua`), so a burst of any size verifies at most the budget:
//! - **per account and client** (`LOGIN_MAX_FAILURES` in `LOGIN_WINDOW_SECS`, 15 minutes): the
//!   client is the address (IPv6 by its /64), or, for a browser that signed in to this account
//!   before, its device cookie. One attacker locks out only themselves;
//! - **per account, consecutive, from clients without that account's device cookie**
//!   (`LOGIN_MAX_FAILURES_PER_ACCOUNT`, 100: NIST SP 800-63B §5.2.2's limit on consecutive
//!   failures). It does **not** renew with a window (a 15-minute window let ~9 600 guesses a day
//!   at one account): failures count until a successful sign-in, and are forgotten only after
//!   [`ACCOUNT_MEMORY_SECS`] with none. When it is spent, new clients are refused, but the
//!   owner's known browser keeps its own per-client budget, and its success clears the count:
//!   nobody can lock the owner out by failing for them (and an admin's `origin admin create
//!   --promote` replaces the password).
//!
//! A reservation is released when the attempt was no failure (never checked: that attempt is
//! given back; a success: the account's consecutive count starts over) and kept on failure. The
//! email is kept only as a hash; device cookies are 256-bit random tokens, stored as their hash
//! with the account's, for 30 days. If Redis cannot answer, the sign-in is refused (503): a
//! throttle that stepped aside whenever Redis was slow would let a flood that slows Redis guess
//! freely, and a sign-in could not store its session without Redis anyway.
//!
//! Sign-ups: `REGISTRATIONS_PER_HOUR` per address (IPv6 by /64), counted before any work. Whether
//! an email is taken is visible in the answer (409: people need to know), so the oracle is made
//! slow instead: a hash for every attempt, taken or not, and a few attempts per address an hour.

use std::net::IpAddr;
use std::sync::LazyLock;

use redis::Script;
use sha2::{Digest, Sha256};
use shared::keys;

use crate::redis::Redis;

/// How long an account's consecutive failures are kept after the last one (a success clears
/// them at once).
pub const ACCOUNT_MEMORY_SECS: u64 = 30 * 24 * 3600;

/// How long a device cookie is honoured.
pub const DEVICE_SECS: u64 = 30 * 24 * 3600;

/// The sign-up window.
pub const REGISTRATION_WINDOW_SECS: u64 = 3600;

static RESERVE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("login_reserve.lua")));
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("login_release.lua")));

#[derive(Clone)]
pub struct LoginThrottle {
    redis: Redis,
    per_client: u64,
    /// `LOGIN_WINDOW_SECS`: the per-client budget's window.
    window_secs: u64,
    per_account: u64,
    registrations_per_hour: u64,
}

/// Who is signing in, for the per-client budget.
pub struct Client<'a> {
    pub ip: IpAddr,
    /// The `__Host-device` cookie the request carries, if any.
    pub device: Option<&'a str>,
}

/// Why an attempt was not reserved.
#[derive(Debug)]
pub enum Refused {
    /// A budget is spent: retry after this many seconds.
    Wait(u64),
    /// Redis did not answer.
    Unavailable(crate::redis::RedisError),
}

/// A reserved attempt: release it with [`LoginThrottle::release`] unless the password was
/// checked and wrong.
pub struct Reservation {
    account: String,
    client: String,
    /// Whether the account-wide budget was charged (not for a known device).
    charged_account: bool,
}

impl Reservation {
    /// Whether the client was a device cookie this account issued.
    pub fn from_device(&self) -> bool {
        !self.charged_account
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The account's id in Redis: a hash of the normalised email (the email itself is never stored).
fn account_id(email: &str) -> String {
    hex(&Sha256::digest(email.as_bytes())[..16])
}

fn device_key(token: &str) -> String {
    keys::login_device(&hex(&Sha256::digest(token.as_bytes())))
}

impl LoginThrottle {
    pub fn new(
        redis: Redis,
        per_client: u64,
        window_secs: u64,
        per_account: u64,
        registrations_per_hour: u64,
    ) -> Self {
        LoginThrottle {
            redis,
            per_client,
            window_secs,
            per_account,
            registrations_per_hour,
        }
    }

    /// Reserves one attempt for `email` from `client`, or says why not.
    pub async fn reserve(&self, email: &str, client: &Client<'_>) -> Result<Reservation, Refused> {
        let account = account_id(email);
        // A device cookie this account issued: the client is that device, and the account-wide
        // budget does not apply to it.
        let device = match client.device {
            Some(token) => match self
                .redis
                .get_and_expire("login_device", &device_key(token), DEVICE_SECS as u32)
                .await
            {
                Ok(Some(owner)) if owner.as_ref() == account.as_bytes() => {
                    Some(hex(&Sha256::digest(token.as_bytes())[..8]))
                }
                _ => None,
            },
            None => None,
        };
        let (client_id, charged_account) = match &device {
            Some(d) => (format!("device:{d}"), false),
            None => (format!("ip:{}", shared::ratelimit::ip_key(client.ip)), true),
        };
        let account_key = keys::login_account(&account);
        let client_key = keys::login_client(&account, &client_id);
        let account_limit = if charged_account { self.per_account } else { 0 };
        let reply: Result<(u8, i64), _> = self
            .redis
            .eval(
                "login_throttle",
                &RESERVE,
                &[&account_key, &client_key],
                (
                    self.per_client,
                    account_limit,
                    self.window_secs,
                    ACCOUNT_MEMORY_SECS,
                ),
            )
            .await;
        match reply {
            Ok((1, _)) => Ok(Reservation {
                account: account_key,
                client: client_key,
                charged_account,
            }),
            Ok((_, ttl)) => Err(Refused::Wait(u64::try_from(ttl).unwrap_or(1).max(1))),
            Err(e) => Err(Refused::Unavailable(e)),
        }
    }

    /// The attempt was no failure: its password was never checked (`succeeded` false: this
    /// attempt no longer counts), or was right (`succeeded` true: this client's count and the
    /// account's consecutive failures start over).
    pub async fn release(&self, r: Reservation, succeeded: bool) {
        let _ = self
            .redis
            .eval::<i64>(
                "login_throttle",
                &RELEASE,
                &[&r.account, &r.client],
                (u8::from(r.charged_account), u8::from(succeeded)),
            )
            .await;
    }

    /// A device cookie for `email`'s account, for the browser that just signed in (`None` if
    /// Redis could not store it: the sign-in still succeeds).
    pub async fn new_device(&self, email: &str) -> Option<String> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).ok()?;
        let token = hex(&bytes);
        self.redis
            .set_new(
                "login_device",
                &device_key(&token),
                account_id(email).as_bytes(),
                DEVICE_SECS as u32,
            )
            .await
            .ok()
            .filter(|stored| *stored)
            .map(|_| token)
    }

    /// Counts a sign-up attempt from `ip`: `Err(seconds)` once the address has used its hour.
    pub async fn registration(&self, ip: IpAddr) -> Result<(), u64> {
        // The address (IPv6: its /64), then for IPv6 its /56 and /48 at their multiples.
        let mut scopes = vec![(shared::ratelimit::ip_key(ip), 1u64)];
        if let Some(v6) = shared::ratelimit::wider_ipv6(ip) {
            for (len, times) in shared::ratelimit::WIDER_IPV6 {
                let mut prefix = String::new();
                let _ = shared::ratelimit::write_prefix_key(&mut prefix, v6, len);
                scopes.push((prefix, u64::from(times)));
            }
        }
        for (identity, times) in scopes {
            let key = keys::registrations(&identity);
            let budget = self.registrations_per_hour.saturating_mul(times);
            let counted = self
                .redis
                .count_up("registrations", &key, REGISTRATION_WINDOW_SECS)
                .await;
            if matches!(counted, Ok(n) if n > budget) {
                let ttl = self
                    .redis
                    .counter("registrations", &key)
                    .await
                    .ok()
                    .flatten()
                    .map_or(REGISTRATION_WINDOW_SECS as i64, |(_, ttl)| ttl);
                return Err(u64::try_from(ttl).unwrap_or(1).max(1));
            }
        }
        Ok(())
    }
}
