//! Accounts: sign-up and sessions, balances, purchases and the admin mutations. Every mutation
//! deletes the cache keys it makes stale after it commits (the guide's "clear balance cache on
//! purchase"), so the next read shows the new value instead of waiting out a TTL.
//!
//! - [`password`]: argon2id hashing and the strength rule; [`hashing`]: its slots, one per core,
//!   shared fairly between clients.
//! - [`sessions`]: `session:{id}` in Redis, sliding, failing closed, revocable per user.
//! - [`throttle`]: failed sign-ins reserved before hashing, per account and client (address or
//!   device cookie) and per account; sign-ups per address.

pub mod hashing;
pub mod password;
pub mod sessions;
pub mod throttle;

use std::time::Duration;

use bytes::Bytes;
use shared::types::{
    Activation, ActivationPage, BalanceResponse, Credentials, PriceSet, PurchaseRequest,
    SetPriceRequest, UserResponse,
};
use shared::{DataType, Product, keys};

use crate::cache::{Cache, LoadError, Loaded};
use crate::catalog::Stale;
use crate::db::Db;
use crate::db::accounts::{CreditOutcome, PurchaseOutcome, Role, is_unique_violation};
use crate::purge::{Kind, Purger};
use hashing::{Hashing, Slot};
use password::PasswordError;
use sessions::{SessionError, SessionUser, Sessions};
use throttle::{Client, LoginThrottle, Refused};

pub use shared::types::{MAX_CREDIT_CENTS, MAX_PRICE_CENTS, MAX_STOCK};
pub const MAX_PAGE: u32 = 100;
pub const DEFAULT_PAGE: u32 = 20;
pub const ACTIVATION_STATUSES: [&str; 5] =
    ["pending", "received", "completed", "cancelled", "expired"];

/// Why an account operation did not happen. Each variant says whose fault it is; the HTTP layer
/// maps them to statuses in one place.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    /// The request is malformed or out of range.
    #[error("{0}")]
    Invalid(String),
    #[error("wrong email or password")]
    BadCredentials,
    /// Too many failed sign-ins for this account lately: retry after this many seconds.
    #[error("too many failed sign-ins for this account; retry later")]
    Throttled(u64),
    /// Too many sign-ups from this address lately: retry after this many seconds.
    #[error("too many sign-ups from this address; retry later")]
    TooManySignUps(u64),
    #[error("the account no longer exists")]
    Gone,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("insufficient balance")]
    InsufficientFunds,
    /// The price is above what the buyer was shown: the current price, nothing charged.
    #[error("the price changed to {0} cents; buy again at that price to accept it")]
    PriceChanged(i64),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Load(#[from] LoadError<sqlx::Error>),
}

#[derive(Clone)]
pub struct Accounts {
    db: Db,
    cache: Cache,
    /// The caches downstream of the origin, told what a mutation changed.
    purger: Purger,
    pub sessions: Sessions,
    throttle: LoginThrottle,
    hashing: Hashing,
    /// `PASSWORD_QUEUE_TIMEOUT_MS`: longest a sign-in waits for a hashing slot before a 503.
    password_wait: Duration,
}

/// The hashing wait of the command line (`origin admin create`): nothing else competes there.
const CLI_PASSWORD_WAIT: Duration = Duration::from_secs(60);

/// A successful sign-in: the session token, and a device cookie for a browser that had none for
/// this account.
pub struct SignedIn {
    pub token: String,
    pub device: Option<String>,
    pub role: Role,
}

/// A purchase's answer and whether it is the replay of an earlier one.
pub struct Purchase {
    pub activation: Activation,
    pub replayed: bool,
}

/// An email as a mail system would take it, lower-cased and trimmed
/// ([`shared::input::normalize_email`]), or a 400 saying it is not.
pub fn normalize_email(raw: &str) -> Result<String, AccountsError> {
    shared::input::normalize_email(raw)
        .ok_or_else(|| AccountsError::Invalid("email is not a valid address".into()))
}

impl Accounts {
    pub fn new(
        db: Db,
        cache: Cache,
        purger: Purger,
        sessions: Sessions,
        throttle: LoginThrottle,
        password_wait: Duration,
    ) -> Self {
        Accounts {
            db,
            cache,
            purger,
            sessions,
            throttle,
            hashing: Hashing::per_core(),
            password_wait,
        }
    }

    /// Password hashes started by this instance (each sign-in and sign-up costs one).
    pub fn hashes(&self) -> u64 {
        self.hashing.granted()
    }

    /// A hashing slot for `client`, in its turn.
    async fn hashing_slot(&self, client: std::net::IpAddr) -> Result<Slot, PasswordError> {
        self.hashing.slot(client, self.password_wait).await
    }

    pub async fn register(
        &self,
        creds: Credentials,
        from: std::net::IpAddr,
    ) -> Result<UserResponse, AccountsError> {
        self.throttle
            .registration(from)
            .await
            .map_err(AccountsError::TooManySignUps)?;
        let email = normalize_email(&creds.email)?;
        if let Some(why) = password::weakness(&creds.password) {
            return Err(AccountsError::Invalid(why));
        }
        let hash = password::hash(creds.password, self.hashing_slot(from).await?).await?;
        match self.db.create_user(&email, &hash, Role::User).await {
            Ok(id) => Ok(UserResponse { id, email }),
            Err(e) if is_unique_violation(&e) => Err(AccountsError::Conflict(
                "email is already registered".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// A new session token. Unknown email and wrong password answer alike, after the same work.
    /// The hashing slot comes first, in the client's turn ([`hashing`]): a sign-in refused for
    /// want of one has cost nothing else (no Redis, no query), so a flood's refusals cannot load
    /// the stores the others need. Then the attempt is reserved against the throttle's budgets
    /// (see [`throttle`]), before the hash, so concurrent guesses cannot outrun it.
    pub async fn login(
        &self,
        creds: Credentials,
        client: Client<'_>,
    ) -> Result<SignedIn, AccountsError> {
        let email = normalize_email(&creds.email).map_err(|_| AccountsError::BadCredentials)?;
        // No password longer than registration accepts can match: refuse it without hashing.
        if creds.password.chars().count() > password::MAX_LEN {
            return Err(AccountsError::BadCredentials);
        }
        let slot = self.hashing_slot(client.ip).await?;
        let reservation = match self.throttle.reserve(&email, &client).await {
            Ok(r) => r,
            Err(Refused::Wait(secs)) => return Err(AccountsError::Throttled(secs)),
            Err(Refused::Unavailable(e)) => return Err(SessionError::Unavailable(e).into()),
        };
        let checked = self.check_password(&email, creds.password, slot).await;
        match checked {
            Ok(Some((user_id, role))) => {
                let known_device = reservation.from_device();
                self.throttle.release(reservation, true).await;
                let token = self.sessions.create(SessionUser { user_id }).await?;
                let device = if known_device {
                    None
                } else {
                    self.throttle.new_device(&email).await
                };
                Ok(SignedIn {
                    token,
                    device,
                    role,
                })
            }
            // A wrong password keeps its reservation: it is the count.
            Ok(None) => Err(AccountsError::BadCredentials),
            // Never checked (no hashing slot, the database out of reach): no failure either.
            Err(e) => {
                self.throttle.release(reservation, false).await;
                Err(e)
            }
        }
    }

    /// The user whose password this is (`None`: unknown email or wrong password, after the same
    /// work either way), hashed in `slot`.
    async fn check_password(
        &self,
        email: &str,
        password: String,
        slot: Slot,
    ) -> Result<Option<(i64, Role)>, AccountsError> {
        let row = self.db.login_row(email).await?;
        let stored = row.as_ref().map(|r| r.password_hash.clone());
        let ok = password::verify(password, stored, slot).await?;
        Ok(row.filter(|_| ok).map(|r| (r.id, r.role)))
    }

    /// The balance JSON through the cache-aside helper (`cache:balance:{userId}`, 30 s).
    pub async fn balance(&self, user_id: i64) -> Result<Bytes, AccountsError> {
        let loader = || {
            let db = self.db.clone();
            move || async move {
                let balance = db.balance(user_id).await?;
                Ok::<_, sqlx::Error>(match balance {
                    Some(balance_cents) => {
                        let body = BalanceResponse { balance_cents };
                        Loaded::Found(Bytes::from(serde_json::to_vec(&body).unwrap_or_default()))
                    }
                    None => Loaded::Absent,
                })
            }
        };
        let entry = self
            .cache
            .get_or_load(DataType::Balance, keys::balance(user_id), loader)
            .await?;
        entry.map(|v| v.bytes).ok_or(AccountsError::Gone)
    }

    pub async fn purchase(
        &self,
        user_id: i64,
        request: PurchaseRequest,
        idempotency_key: Option<String>,
    ) -> Result<Purchase, AccountsError> {
        let expected = request.expected_price_cents;
        if expected.is_some_and(|e| !(0..=MAX_PRICE_CENTS).contains(&e)) {
            return Err(AccountsError::Invalid(format!(
                "expected_price_cents must be between 0 and {MAX_PRICE_CENTS}"
            )));
        }
        let product = request.product();
        let outcome = self
            .db
            .purchase(user_id, &product, expected, idempotency_key.as_deref())
            .await?;
        match outcome {
            PurchaseOutcome::Created {
                activation, stock, ..
            } => {
                // The balance changed; the product's answers only if its availability step did
                // (`shared::policy::availability`): most purchases purge nothing downstream.
                let price = activation.price_cents;
                let mut stale = Stale::default();
                stale.add(keys::balance(user_id), Kind::Hard);
                stale.product(&product, Some((price, stock.0)), (price, stock.1));
                self.invalidate(&stale).await;
                Ok(Purchase {
                    activation,
                    replayed: false,
                })
            }
            PurchaseOutcome::Replayed(activation) => Ok(Purchase {
                activation,
                replayed: true,
            }),
            PurchaseOutcome::KeyReused => Err(AccountsError::Conflict(
                "Idempotency-Key was already used for a different purchase".into(),
            )),
            PurchaseOutcome::NotFound => Err(AccountsError::NotFound(format!(
                "provider '{}' has no price for service '{}' in country '{}'",
                product.provider, product.service, product.country
            ))),
            PurchaseOutcome::OutOfStock => Err(AccountsError::Conflict("out of stock".into())),
            PurchaseOutcome::InsufficientFunds => Err(AccountsError::InsufficientFunds),
            PurchaseOutcome::PriceChanged { current_cents } => {
                Err(AccountsError::PriceChanged(current_cents))
            }
        }
    }

    pub async fn history(
        &self,
        user_id: i64,
        status: Option<String>,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> Result<ActivationPage, AccountsError> {
        if status
            .as_ref()
            .is_some_and(|s| !ACTIVATION_STATUSES.contains(&s.as_str()))
        {
            return Err(AccountsError::Invalid(format!(
                "status must be one of {}",
                ACTIVATION_STATUSES.join(", ")
            )));
        }
        let before = cursor
            .map(|c| {
                c.parse::<i64>()
                    .map_err(|_| AccountsError::Invalid("cursor is not valid".into()))
            })
            .transpose()?;
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(AccountsError::Invalid(format!(
                "limit must be between 1 and {MAX_PAGE}"
            )));
        }
        let mut items = self
            .db
            .activations(user_id, status.as_deref(), before, i64::from(limit) + 1)
            .await?;
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|a| a.id.to_string())
        } else {
            None
        };
        Ok(ActivationPage { items, next_cursor })
    }

    pub async fn set_price(
        &self,
        product: Product,
        req: SetPriceRequest,
    ) -> Result<PriceSet, AccountsError> {
        if !(0..=MAX_PRICE_CENTS).contains(&req.price_cents) {
            return Err(AccountsError::Invalid(format!(
                "price_cents must be between 0 and {MAX_PRICE_CENTS}"
            )));
        }
        if !(0..=MAX_STOCK).contains(&req.stock) {
            return Err(AccountsError::Invalid(format!(
                "stock must be between 0 and {MAX_STOCK}"
            )));
        }
        let (price, old) = self
            .db
            .set_price(&product, req.price_cents, req.stock)
            .await?
            .ok_or_else(|| {
                AccountsError::NotFound("unknown provider, country or service".into())
            })?;
        let mut stale = Stale::default();
        stale.product(&product, old, (price.price_cents, price.stock));
        if old.is_none() {
            // A new combination can add a country or a service to the provider's lists.
            stale.add(keys::countries(&product.provider), Kind::Soft);
            stale.add(keys::services(&product.provider), Kind::Soft);
        }
        self.invalidate(&stale).await;
        Ok(price)
    }

    /// An admin's credit to a user, recorded with the admin as its actor; with an
    /// `Idempotency-Key`, a retry lands once. Returns the balance and whether it is a replay.
    pub async fn credit(
        &self,
        actor: i64,
        user_id: i64,
        amount_cents: i64,
        idempotency_key: Option<String>,
    ) -> Result<(BalanceResponse, bool), AccountsError> {
        if !(1..=MAX_CREDIT_CENTS).contains(&amount_cents) {
            return Err(AccountsError::Invalid(format!(
                "amount_cents must be between 1 and {MAX_CREDIT_CENTS}"
            )));
        }
        let outcome = self
            .db
            .credit(
                user_id,
                amount_cents,
                Some(actor),
                idempotency_key.as_deref(),
            )
            .await?;
        let (balance_cents, replayed) = match outcome {
            CreditOutcome::Credited(balance) => {
                let mut stale = Stale::default();
                stale.add(keys::balance(user_id), Kind::Hard);
                self.invalidate(&stale).await;
                (balance, false)
            }
            CreditOutcome::Replayed(balance) => (balance, true),
            CreditOutcome::KeyReused => {
                return Err(AccountsError::Conflict(
                    "Idempotency-Key was already used for a different credit".into(),
                ));
            }
            CreditOutcome::NoSuchUser => {
                return Err(AccountsError::NotFound(format!("no user {user_id}")));
            }
        };
        Ok((BalanceResponse { balance_cents }, replayed))
    }

    /// After a commit: the stale keys dropped fleet-wide and purged downstream
    /// ([`crate::catalog::invalidate`]).
    async fn invalidate(&self, stale: &Stale) {
        crate::catalog::invalidate(&self.cache, &self.purger, stale).await;
    }
}

/// Creates a new admin account (`origin admin create`). An existing account is never taken over
/// silently: whoever registered that email first may be holding a session (see
/// [`promote_admin`]). Needs only PostgreSQL.
pub async fn create_admin(db: &Db, creds: Credentials) -> Result<UserResponse, AccountsError> {
    let email = normalize_email(&creds.email)?;
    if let Some(why) = password::weakness(&creds.password) {
        return Err(AccountsError::Invalid(why));
    }
    let hash = password::hash(creds.password, cli_slot().await?).await?;
    match db.create_user(&email, &hash, Role::Admin).await {
        Ok(id) => Ok(UserResponse { id, email }),
        Err(e) if is_unique_violation(&e) => Err(AccountsError::Conflict(
            "an account with this email exists; pass --promote to make it admin (its password \
             is replaced and every session it holds is ended)"
                .into(),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Makes an existing account admin with a new password (`origin admin create --promote`), and
/// ends every session it holds: a session opened before the promotion (perhaps by whoever
/// registered the email first) must not inherit the new rights.
pub async fn promote_admin(
    db: &Db,
    sessions: &Sessions,
    creds: Credentials,
) -> Result<UserResponse, AccountsError> {
    let email = normalize_email(&creds.email)?;
    if let Some(why) = password::weakness(&creds.password) {
        return Err(AccountsError::Invalid(why));
    }
    let hash = password::hash(creds.password, cli_slot().await?).await?;
    let id = db
        .promote_to_admin(&email, &hash)
        .await?
        .ok_or_else(|| AccountsError::NotFound(format!("no account {email}")))?;
    sessions.revoke_all(id).await?;
    Ok(UserResponse { id, email })
}

/// A hashing slot for the command line (nothing else competes there).
async fn cli_slot() -> Result<Slot, PasswordError> {
    let local = std::net::Ipv4Addr::LOCALHOST.into();
    Hashing::new(1).slot(local, CLI_PASSWORD_WAIT).await
}
