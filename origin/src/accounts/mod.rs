//! Accounts: sign-up and sessions, balances, purchases and the admin mutations. Every mutation
//! deletes the cache keys it makes stale after it commits (the guide's "clear balance cache on
//! purchase"), so the next read shows the new value instead of waiting out a TTL.
//!
//! - [`password`]: argon2id hashing and the strength rule.
//! - [`sessions`]: `session:{id}` in Redis, sliding, failing closed.

pub mod password;
pub mod sessions;

use std::sync::OnceLock;

use bytes::Bytes;
use shared::types::{
    Activation, ActivationPage, BalanceResponse, Credentials, Price, PurchaseRequest,
    SetPriceRequest, UserResponse,
};
use shared::{DataType, Slug, keys};

use crate::cache::Cache;
use crate::db::Db;
use crate::db::accounts::{PurchaseOutcome, Role, is_unique_violation};
use crate::error::ApiError;
use sessions::{SessionUser, Sessions};

/// Largest single credit: guards against a typo adding a fortune (10 000 $).
pub const MAX_CREDIT_CENTS: i64 = 1_000_000;
/// Largest price an admin can set (1 000 $ per number).
pub const MAX_PRICE_CENTS: i64 = 100_000;
pub const MAX_PAGE: u32 = 100;
pub const DEFAULT_PAGE: u32 = 20;
pub const ACTIVATION_STATUSES: [&str; 5] =
    ["pending", "received", "completed", "cancelled", "expired"];

#[derive(Clone)]
pub struct Accounts {
    db: Db,
    cache: Cache,
    pub sessions: Sessions,
}

/// A purchase's answer and whether it is the replay of an earlier one.
pub struct Purchase {
    pub activation: Activation,
    pub replayed: bool,
}

fn slug(field: &str, raw: &str) -> Result<Slug, ApiError> {
    Slug::parse(raw).map_err(|e| ApiError::BadRequest(format!("{field} {e}")))
}

/// Lower-cased, trimmed, one `@`, a dot in the domain, no spaces, at most 254 characters.
pub fn normalize_email(raw: &str) -> Result<String, ApiError> {
    let email = raw.trim().to_lowercase();
    let bad = || ApiError::BadRequest("email is not a valid address".into());
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let (local, domain) = email.split_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
    {
        return Err(bad());
    }
    Ok(email)
}

impl Accounts {
    pub fn new(db: Db, cache: Cache) -> Self {
        Accounts {
            sessions: Sessions::new(cache.clone()),
            db,
            cache,
        }
    }

    pub async fn register(&self, creds: Credentials) -> Result<UserResponse, ApiError> {
        let email = normalize_email(&creds.email)?;
        if let Some(why) = password::weakness(&creds.password) {
            return Err(ApiError::BadRequest(why));
        }
        let hash = password::hash(creds.password).await?;
        match self.db.create_user(&email, &hash, Role::User).await {
            Ok(id) => Ok(UserResponse { id, email }),
            Err(e) if is_unique_violation(&e) => {
                Err(ApiError::Conflict("email is already registered".into()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A new session token. Unknown email and wrong password answer alike, after the same work.
    pub async fn login(&self, creds: Credentials) -> Result<String, ApiError> {
        let denied = || ApiError::Unauthorized("wrong email or password".into());
        let email = normalize_email(&creds.email).map_err(|_| denied())?;
        let row = self.db.login_row(&email).await?;
        let stored = match &row {
            Some(r) => r.password_hash.clone(),
            None => dummy_hash().await?,
        };
        let ok = password::verify(creds.password, stored).await?;
        match row {
            Some(r) if ok => {
                self.sessions
                    .create(SessionUser {
                        user_id: r.id,
                        role: r.role,
                    })
                    .await
            }
            _ => Err(denied()),
        }
    }

    /// The balance JSON through the cache-aside helper (`cache:balance:{userId}`, 30 s).
    pub async fn balance(&self, user_id: i64) -> Result<Bytes, ApiError> {
        let db = self.db.clone();
        let entry = self
            .cache
            .get_or_load(
                DataType::Balance,
                keys::balance(user_id),
                move || async move {
                    Ok(db
                        .balance(user_id)
                        .await?
                        .map(|balance_cents| BalanceResponse { balance_cents }))
                },
            )
            .await?;
        entry.ok_or_else(|| ApiError::Unauthorized("the account no longer exists".into()))
    }

    pub async fn purchase(
        &self,
        user_id: i64,
        req: PurchaseRequest,
        idempotency_key: Option<String>,
    ) -> Result<Purchase, ApiError> {
        let provider = slug("provider", &req.provider)?;
        let country = slug("country", &req.country)?;
        let service = slug("service", &req.service)?;
        if idempotency_key.as_ref().is_some_and(|k| {
            k.is_empty() || k.len() > 64 || !k.bytes().all(|b| b.is_ascii_graphic())
        }) {
            return Err(ApiError::BadRequest(
                "Idempotency-Key must be 1-64 visible ASCII characters".into(),
            ));
        }
        let outcome = self
            .db
            .purchase(
                user_id,
                &provider,
                &country,
                &service,
                idempotency_key.as_deref(),
            )
            .await?;
        match outcome {
            PurchaseOutcome::Created { activation, .. } => {
                // Balance and stock changed: drop both cached copies.
                self.invalidate(&[
                    keys::balance(user_id),
                    keys::price(&provider, &country, &service),
                ])
                .await;
                Ok(Purchase {
                    activation,
                    replayed: false,
                })
            }
            PurchaseOutcome::Replayed(activation) => Ok(Purchase {
                activation,
                replayed: true,
            }),
            PurchaseOutcome::KeyReused => Err(ApiError::Conflict(
                "Idempotency-Key was already used for a different purchase".into(),
            )),
            PurchaseOutcome::NotFound => Err(ApiError::NotFound(format!(
                "provider '{provider}' has no price for service '{service}' in country '{country}'"
            ))),
            PurchaseOutcome::OutOfStock => Err(ApiError::Conflict("out of stock".into())),
            PurchaseOutcome::InsufficientFunds => {
                Err(ApiError::PaymentRequired("insufficient balance".into()))
            }
        }
    }

    pub async fn history(
        &self,
        user_id: i64,
        status: Option<String>,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> Result<ActivationPage, ApiError> {
        if status
            .as_ref()
            .is_some_and(|s| !ACTIVATION_STATUSES.contains(&s.as_str()))
        {
            return Err(ApiError::BadRequest(format!(
                "status must be one of {}",
                ACTIVATION_STATUSES.join(", ")
            )));
        }
        let before = cursor
            .map(|c| {
                c.parse::<i64>()
                    .map_err(|_| ApiError::BadRequest("cursor is not valid".into()))
            })
            .transpose()?;
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ApiError::BadRequest(format!(
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
        provider: Slug,
        country: Slug,
        service: Slug,
        req: SetPriceRequest,
    ) -> Result<Price, ApiError> {
        if !(0..=MAX_PRICE_CENTS).contains(&req.price_cents) {
            return Err(ApiError::BadRequest(format!(
                "price_cents must be between 0 and {MAX_PRICE_CENTS}"
            )));
        }
        if !(0..=10_000_000).contains(&req.stock) {
            return Err(ApiError::BadRequest(
                "stock must be between 0 and 10000000".into(),
            ));
        }
        let (price, created) = self
            .db
            .set_price(&provider, &country, &service, req.price_cents, req.stock)
            .await?
            .ok_or_else(|| ApiError::NotFound("unknown provider, country or service".into()))?;
        let mut stale = vec![keys::price(&provider, &country, &service)];
        if created {
            // A new combination can add a country or a service to the provider's lists.
            stale.push(keys::countries(&provider));
            stale.push(keys::services(&provider));
        }
        self.invalidate(&stale).await;
        Ok(price)
    }

    pub async fn credit(
        &self,
        user_id: i64,
        amount_cents: i64,
    ) -> Result<BalanceResponse, ApiError> {
        if !(1..=MAX_CREDIT_CENTS).contains(&amount_cents) {
            return Err(ApiError::BadRequest(format!(
                "amount_cents must be between 1 and {MAX_CREDIT_CENTS}"
            )));
        }
        let balance_cents = self
            .db
            .credit(user_id, amount_cents)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no user {user_id}")))?;
        self.invalidate(&[keys::balance(user_id)]).await;
        Ok(BalanceResponse { balance_cents })
    }

    /// Deletes stale keys after a commit. A failure is logged and counted: the value then
    /// expires by its TTL (30 s for balances, 60 s for prices).
    async fn invalidate(&self, keys: &[String]) {
        if let Err(e) = self.cache.invalidate(keys).await {
            metrics::counter!("cache_invalidation_failures_total").increment(1);
            tracing::warn!(error = %e, "cache invalidation failed; entries expire by TTL");
        }
    }
}

/// Creates an admin, or promotes an existing user (`origin admin create`). Needs only PostgreSQL.
pub async fn create_admin(db: &Db, creds: Credentials) -> Result<UserResponse, ApiError> {
    let email = normalize_email(&creds.email)?;
    if let Some(why) = password::weakness(&creds.password) {
        return Err(ApiError::BadRequest(why));
    }
    let hash = password::hash(creds.password).await?;
    let id = db.upsert_admin(&email, &hash).await?;
    Ok(UserResponse { id, email })
}

/// A real argon2 hash of nothing in particular, so a login for an unknown email costs the
/// same verification work as one for a known email.
async fn dummy_hash() -> Result<String, ApiError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h.clone());
    }
    let h = password::hash("not-a-real-password-for-timing".into()).await?;
    Ok(DUMMY.get_or_init(|| h).clone())
}
