//! Users, balances, purchases and the ledger. A purchase is one transaction whose row locks make
//! concurrent purchases safe: the price row (`FOR UPDATE`) serialises buyers of one product, the
//! conditional balance update (`balance_cents >= price`) cannot overdraw however many run at
//! once (and the CHECK constraint is the backstop), numbers are taken with `SKIP LOCKED`, and the
//! unique `(user_id, idempotency_key)` makes a retried purchase land once.

use shared::Product;
use shared::types::{Activation, PriceSet};
use sqlx::{PgConnection, Postgres, Transaction};

use super::Db;

/// Roles a user can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Role {
        if s == "admin" {
            Role::Admin
        } else {
            Role::User
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
}

pub struct LoginRow {
    pub id: i64,
    pub password_hash: String,
    pub role: Role,
}

pub enum CreditOutcome {
    /// Credited: the balance after.
    Credited(i64),
    /// The same `Idempotency-Key` credited this before: the balance it answered then.
    Replayed(i64),
    /// The key was used before for another user or amount.
    KeyReused,
    NoSuchUser,
}

pub enum PurchaseOutcome {
    Created {
        activation: Activation,
        balance_cents: i64,
        /// The product's stock before and after (what the purchase may have changed for the
        /// catalog's answers: [`crate::catalog::answer_changes`]).
        stock: (i64, i64),
    },
    /// The same `Idempotency-Key` was used before: the first result.
    Replayed(Activation),
    /// The key was used before for a different product.
    KeyReused,
    NotFound,
    OutOfStock,
    InsufficientFunds,
    /// The price is above what the buyer expected: nothing charged or reserved.
    PriceChanged {
        current_cents: i64,
    },
}

/// Columns of an activation as the API shows it, joined to its codes and number.
const ACTIVATION_SELECT: &str =
    "SELECT a.id, pr.code, c.code, s.code, n.phone_number, a.price_cents, a.status,
        to_char(a.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')
   FROM activations a
   JOIN providers pr ON pr.id = a.provider_id
   JOIN countries c ON c.id = a.country_id
   JOIN services s ON s.id = a.service_id
   JOIN numbers n ON n.id = a.number_id";

type ActivationRow = (i64, String, String, String, String, i64, String, String);

fn activation(row: ActivationRow) -> Activation {
    let (id, provider, country, service, phone_number, price_cents, status, created_at) = row;
    Activation {
        id,
        provider,
        country,
        service,
        phone_number,
        price_cents,
        status,
        created_at,
    }
}

pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

impl Db {
    /// `Err` with a unique violation when the email is taken (any case).
    pub async fn create_user(
        &self,
        email: &str,
        password_hash: &str,
        role: Role,
    ) -> Result<i64, sqlx::Error> {
        self.count("create_user");
        let mut conn = self.conn().await?;
        let id = sqlx::query_scalar(
            "INSERT INTO users (email, password_hash, role) VALUES ($1, $2, $3) RETURNING id",
        )
        .persistent(self.persistent())
        .bind(email)
        .bind(password_hash)
        .bind(role.as_str())
        .fetch_one(&mut *conn)
        .await?;
        conn.done().await?;
        Ok(id)
    }

    /// Makes an existing user admin with this password. `None`: no such user.
    pub async fn promote_to_admin(
        &self,
        email: &str,
        password_hash: &str,
    ) -> Result<Option<i64>, sqlx::Error> {
        self.count("promote_to_admin");
        let mut conn = self.conn().await?;
        let id = sqlx::query_scalar(
            "UPDATE users SET role = 'admin', password_hash = $2
              WHERE lower(email) = lower($1) RETURNING id",
        )
        .persistent(self.persistent())
        .bind(email)
        .bind(password_hash)
        .fetch_optional(&mut *conn)
        .await?;
        conn.done().await?;
        Ok(id)
    }

    pub async fn login_row(&self, email: &str) -> Result<Option<LoginRow>, sqlx::Error> {
        self.count("login_row");
        let mut conn = self.conn().await?;
        let row: Option<(i64, String, String)> = sqlx::query_as(
            "SELECT id, password_hash, role FROM users WHERE lower(email) = lower($1)",
        )
        .persistent(self.persistent())
        .bind(email)
        .fetch_optional(&mut *conn)
        .await?;
        conn.done().await?;
        Ok(row.map(|(id, password_hash, role)| LoginRow {
            id,
            password_hash,
            role: Role::parse(&role),
        }))
    }

    pub async fn balance(&self, user_id: i64) -> Result<Option<i64>, sqlx::Error> {
        self.count("balance");
        let mut conn = self.conn().await?;
        let balance = sqlx::query_scalar("SELECT balance_cents FROM users WHERE id = $1")
            .persistent(self.persistent())
            .bind(user_id)
            .fetch_optional(&mut *conn)
            .await?;
        conn.done().await?;
        Ok(balance)
    }

    pub async fn role(&self, user_id: i64) -> Result<Option<Role>, sqlx::Error> {
        self.count("role");
        let mut conn = self.conn().await?;
        let role: Option<String> = sqlx::query_scalar("SELECT role FROM users WHERE id = $1")
            .persistent(self.persistent())
            .bind(user_id)
            .fetch_optional(&mut *conn)
            .await?;
        conn.done().await?;
        Ok(role.as_deref().map(Role::parse))
    }

    async fn activation_by_key(
        &self,
        conn: &mut PgConnection,
        user_id: i64,
        key: &str,
    ) -> Result<Option<Activation>, sqlx::Error> {
        let sql = format!("{ACTIVATION_SELECT} WHERE a.user_id = $1 AND a.idempotency_key = $2");
        let row: Option<ActivationRow> = sqlx::query_as(&sql)
            .persistent(self.persistent())
            .bind(user_id)
            .bind(key)
            .fetch_optional(conn)
            .await?;
        Ok(row.map(activation))
    }

    /// Buys one number. See the module documentation for why this cannot overdraw or double-charge.
    pub async fn purchase(
        &self,
        user_id: i64,
        product: &Product,
        expected_price_cents: Option<i64>,
        idempotency_key: Option<&str>,
    ) -> Result<PurchaseOutcome, sqlx::Error> {
        self.count("purchase");
        let same_product = |a: &Activation| {
            a.provider == product.provider.as_str()
                && a.country == product.country.as_str()
                && a.service == product.service.as_str()
        };
        let mut tx = self.begin().await?;
        if let Some(key) = idempotency_key
            && let Some(existing) = self.activation_by_key(&mut tx, user_id, key).await?
        {
            return Ok(if same_product(&existing) {
                PurchaseOutcome::Replayed(existing)
            } else {
                PurchaseOutcome::KeyReused
            });
        }
        match self
            .purchase_in(
                &mut tx,
                user_id,
                product,
                expected_price_cents,
                idempotency_key,
            )
            .await
        {
            Ok(PurchaseOutcome::Created {
                activation,
                balance_cents,
                stock,
            }) => {
                crate::faults::delay("purchase::before_commit").await;
                tx.commit().await?;
                crate::faults::delay("purchase::after_commit").await;
                Ok(PurchaseOutcome::Created {
                    activation,
                    balance_cents,
                    stock,
                })
            }
            Ok(other) => Ok(other), // dropped: rolled back
            Err(e) if is_unique_violation(&e) && idempotency_key.is_some() => {
                // A concurrent retry with the same key committed first: ours rolls back, theirs stands.
                drop(tx);
                let mut conn = self.conn().await?;
                let key = idempotency_key.unwrap_or_default();
                let earlier = self.activation_by_key(&mut conn, user_id, key).await?;
                conn.done().await?;
                match earlier {
                    Some(a) if same_product(&a) => Ok(PurchaseOutcome::Replayed(a)),
                    Some(_) => Ok(PurchaseOutcome::KeyReused),
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn purchase_in(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        user_id: i64,
        product: &Product,
        expected_price_cents: Option<i64>,
        idempotency_key: Option<&str>,
    ) -> Result<PurchaseOutcome, sqlx::Error> {
        let Product {
            provider,
            country,
            service,
        } = product;
        // The current price, from PostgreSQL (never the cache), locked for this transaction.
        let product: Option<(i32, i32, i32, i64, i64)> = sqlx::query_as(
            "SELECT p.provider_id, p.country_id, p.service_id, p.price_cents, p.stock
               FROM prices p
               JOIN providers pr ON pr.id = p.provider_id
               JOIN countries c ON c.id = p.country_id
               JOIN services s ON s.id = p.service_id
              WHERE pr.code = $1 AND c.code = $2 AND s.code = $3
                FOR UPDATE OF p",
        )
        .persistent(self.persistent())
        .bind(provider.as_str())
        .bind(country.as_str())
        .bind(service.as_str())
        .fetch_optional(&mut **tx)
        .await?;
        let Some((pid, cid, sid, price, stock)) = product else {
            return Ok(PurchaseOutcome::NotFound);
        };
        crate::faults::delay("purchase::price_locked").await;
        // The locked row's price is the price: a change that commits before this lock is seen
        // here, one after it waits for this purchase. A buyer shown less is asked again.
        if expected_price_cents.is_some_and(|expected| price > expected) {
            return Ok(PurchaseOutcome::PriceChanged {
                current_cents: price,
            });
        }
        if stock <= 0 {
            return Ok(PurchaseOutcome::OutOfStock);
        }
        let balance: Option<i64> = sqlx::query_scalar(
            "UPDATE users SET balance_cents = balance_cents - $2
              WHERE id = $1 AND balance_cents >= $2 RETURNING balance_cents",
        )
        .persistent(self.persistent())
        .bind(user_id)
        .bind(price)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(balance_cents) = balance else {
            return Ok(PurchaseOutcome::InsufficientFunds);
        };
        let number: Option<(i64, String)> = sqlx::query_as(
            "SELECT id, phone_number FROM numbers
              WHERE provider_id = $1 AND country_id = $2 AND status = 'available'
              ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
        )
        .persistent(self.persistent())
        .bind(pid)
        .bind(cid)
        .fetch_optional(&mut **tx)
        .await?;
        let Some((number_id, phone_number)) = number else {
            return Ok(PurchaseOutcome::OutOfStock);
        };
        sqlx::query("UPDATE numbers SET status = 'assigned' WHERE id = $1")
            .persistent(self.persistent())
            .bind(number_id)
            .execute(&mut **tx)
            .await?;
        sqlx::query(
            "UPDATE prices SET stock = stock - 1, updated_at = now()
              WHERE provider_id = $1 AND country_id = $2 AND service_id = $3",
        )
        .persistent(self.persistent())
        .bind(pid)
        .bind(cid)
        .bind(sid)
        .execute(&mut **tx)
        .await?;
        let provider_activation_id = format!("nx-{}", uuid::Uuid::new_v4().simple());
        let (id, status, created_at): (i64, String, String) = sqlx::query_as(
            "INSERT INTO activations (user_id, number_id, provider_id, country_id, service_id,
                                      provider_activation_id, price_cents, idempotency_key)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             RETURNING id, status,
                       to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
        )
        .persistent(self.persistent())
        .bind(user_id)
        .bind(number_id)
        .bind(pid)
        .bind(cid)
        .bind(sid)
        .bind(&provider_activation_id)
        .bind(price)
        .bind(idempotency_key)
        .fetch_one(&mut **tx)
        .await?;
        sqlx::query(
            "INSERT INTO transactions (user_id, type, amount_cents, activation_id)
             VALUES ($1, 'purchase', $2, $3)",
        )
        .persistent(self.persistent())
        .bind(user_id)
        .bind(-price)
        .bind(id)
        .execute(&mut **tx)
        .await?;
        Ok(PurchaseOutcome::Created {
            activation: Activation {
                id,
                provider: provider.to_string(),
                country: country.to_string(),
                service: service.to_string(),
                phone_number,
                price_cents: price,
                status,
                created_at,
            },
            balance_cents,
            stock: (stock, stock - 1),
        })
    }

    /// The user's activations, newest first, after `before_id` when given. Uses
    /// `activations_user_idx (user_id, id DESC)`.
    pub async fn activations(
        &self,
        user_id: i64,
        status: Option<&str>,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Activation>, sqlx::Error> {
        self.count("activations");
        let sql = format!(
            "{ACTIVATION_SELECT}
              WHERE a.user_id = $1 AND ($2::text IS NULL OR a.status = $2)
                AND ($3::bigint IS NULL OR a.id < $3)
              ORDER BY a.id DESC LIMIT $4"
        );
        let mut conn = self.conn().await?;
        let rows: Vec<ActivationRow> = sqlx::query_as(&sql)
            .persistent(self.persistent())
            .bind(user_id)
            .bind(status)
            .bind(before_id)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?;
        conn.done().await?;
        Ok(rows.into_iter().map(activation).collect())
    }

    /// Adds money and records it in the ledger with who did it, atomically. With an
    /// `Idempotency-Key` (unique per actor) a retry lands once and answers what the first did,
    /// like a purchase's (see the module documentation).
    pub async fn credit(
        &self,
        user_id: i64,
        amount_cents: i64,
        actor: Option<i64>,
        idempotency_key: Option<&str>,
    ) -> Result<CreditOutcome, sqlx::Error> {
        self.count("credit");
        if let Some(replay) = self
            .earlier_credit(user_id, amount_cents, actor, idempotency_key)
            .await?
        {
            return Ok(replay);
        }
        let mut tx = self.begin().await?;
        let balance: Option<i64> = sqlx::query_scalar(
            "UPDATE users SET balance_cents = balance_cents + $2 WHERE id = $1 RETURNING balance_cents",
        )
        .persistent(self.persistent())
        .bind(user_id)
        .bind(amount_cents)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(balance) = balance else {
            return Ok(CreditOutcome::NoSuchUser);
        };
        let inserted = sqlx::query(
            "INSERT INTO transactions (user_id, type, amount_cents, actor_id, idempotency_key,
                                       balance_after)
             VALUES ($1, 'credit', $2, $3, $4, $5)",
        )
        .persistent(self.persistent())
        .bind(user_id)
        .bind(amount_cents)
        .bind(actor)
        .bind(idempotency_key)
        .bind(balance)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {
                tx.commit().await?;
                Ok(CreditOutcome::Credited(balance))
            }
            // A concurrent retry with the same key committed first: ours rolls back.
            Err(e) if is_unique_violation(&e) => {
                drop(tx);
                let earlier = self.earlier_credit(user_id, amount_cents, actor, idempotency_key);
                earlier.await?.ok_or(e)
            }
            Err(e) => Err(e),
        }
    }

    /// The credit an earlier request with the same actor and key made, if any.
    async fn earlier_credit(
        &self,
        user_id: i64,
        amount_cents: i64,
        actor: Option<i64>,
        idempotency_key: Option<&str>,
    ) -> Result<Option<CreditOutcome>, sqlx::Error> {
        let Some(key) = idempotency_key else {
            return Ok(None);
        };
        let mut conn = self.conn().await?;
        let row: Option<(i64, i64, Option<i64>)> = sqlx::query_as(
            "SELECT user_id, amount_cents, balance_after FROM transactions
              WHERE actor_id IS NOT DISTINCT FROM $1 AND idempotency_key = $2",
        )
        .persistent(self.persistent())
        .bind(actor)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?;
        conn.done().await?;
        Ok(row.map(|(user, amount, balance_after)| {
            if user == user_id && amount == amount_cents {
                CreditOutcome::Replayed(balance_after.unwrap_or_default())
            } else {
                CreditOutcome::KeyReused
            }
        }))
    }

    /// Sets (or creates) one price. `None`: unknown provider, country or service. Also returns
    /// the row as it was (`None`: new, so the provider's country and service lists changed too).
    #[allow(clippy::type_complexity)]
    pub async fn set_price(
        &self,
        product: &Product,
        price_cents: i64,
        stock: i64,
    ) -> Result<Option<(PriceSet, Option<(i64, i64)>)>, sqlx::Error> {
        self.count("set_price");
        let Product {
            provider,
            country,
            service,
        } = product;
        // The row as it is when locked, not as the upsert's snapshot saw it: a purchase that
        // committed in between changed its stock, and the change is judged against that.
        let mut tx = self.pool().begin().await?;
        let before: Option<(i64, i64)> = sqlx::query_as(
            "SELECT p.price_cents, p.stock FROM prices p
               JOIN providers pr ON pr.id = p.provider_id
               JOIN countries c ON c.id = p.country_id JOIN services s ON s.id = p.service_id
              WHERE pr.code = $1 AND c.code = $2 AND s.code = $3
                FOR UPDATE OF p",
        )
        .persistent(self.persistent())
        .bind(provider.as_str())
        .bind(country.as_str())
        .bind(service.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let row: Option<(i64, i64)> = sqlx::query_as(
            "WITH ids AS (
                SELECT pr.id AS provider_id, c.id AS country_id, s.id AS service_id
                  FROM providers pr, countries c, services s
                 WHERE pr.code = $1 AND c.code = $2 AND s.code = $3)
             INSERT INTO prices (provider_id, country_id, service_id, price_cents, stock)
             SELECT provider_id, country_id, service_id, $4, $5 FROM ids
             ON CONFLICT (provider_id, country_id, service_id)
             DO UPDATE SET price_cents = EXCLUDED.price_cents, stock = EXCLUDED.stock, updated_at = now()
             RETURNING price_cents, stock",
        )
        .persistent(self.persistent())
        .bind(provider.as_str())
        .bind(country.as_str())
        .bind(service.as_str())
        .bind(price_cents)
        .bind(stock)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row.map(|(price_cents, stock)| {
            (
                PriceSet {
                    provider: provider.to_string(),
                    country: country.to_string(),
                    service: service.to_string(),
                    price_cents,
                    stock,
                    availability: shared::types::Availability::of(stock),
                },
                before,
            )
        }))
    }
}
