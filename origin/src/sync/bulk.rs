//! `PUT /v1/admin/prices`: an operator's (or a tool's) many prices at once, through the sync's
//! path: validated whole (one bad row refuses the batch, naming it), diffed against PostgreSQL,
//! the changed rows applied in one transaction, exactly their keys invalidated and their tags
//! purged. With an `Idempotency-Key` the first answer is recorded in that same transaction and a
//! retry with the same body replays it (another body with the key is a conflict).

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use shared::types::{
    MAX_BULK_ROWS, MAX_PRICE_CENTS, MAX_STOCK, PriceUpdateRequest, PriceUpdateResponse,
};
use shared::{Product, keys};

use crate::cache::Cache;
use crate::db::Db;
use crate::db::accounts::is_unique_violation;
use crate::db::sync::{BulkRecord, PriceRow, Reference};
use crate::purge::Purger;

#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    /// The batch is refused whole; the message names the first bad row.
    #[error("{0}")]
    Invalid(String),
    /// A row names a provider, country or service the catalog does not have (404, as for one
    /// price): nothing applied; the message names the row.
    #[error("{0}")]
    Unknown(String),
    /// The key was used for another body.
    #[error("Idempotency-Key was already used for a different update")]
    KeyReused,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// Applies `request` for admin `actor`; the answer, and whether it is a replay.
pub async fn apply(
    db: &Db,
    cache: &Cache,
    purger: &Purger,
    actor: i64,
    key: Option<String>,
    request: &PriceUpdateRequest,
) -> Result<(PriceUpdateResponse, bool), BulkError> {
    let rows = &request.prices;
    if rows.is_empty() || rows.len() > MAX_BULK_ROWS {
        return Err(BulkError::Invalid(format!(
            "prices must hold 1 to {MAX_BULK_ROWS} rows, not {}",
            rows.len()
        )));
    }
    let mut seen: HashMap<(&str, &str, &str), usize> = HashMap::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        if !(0..=MAX_PRICE_CENTS).contains(&row.price_cents) {
            return Err(BulkError::Invalid(format!(
                "prices[{i}].price_cents must be between 0 and {MAX_PRICE_CENTS}"
            )));
        }
        if !(0..=MAX_STOCK).contains(&row.stock) {
            return Err(BulkError::Invalid(format!(
                "prices[{i}].stock must be between 0 and {MAX_STOCK}"
            )));
        }
        let product = (
            row.provider.as_str(),
            row.country.as_str(),
            row.service.as_str(),
        );
        if let Some(first) = seen.insert(product, i) {
            return Err(BulkError::Invalid(format!(
                "prices[{i}] is the same product as prices[{first}]"
            )));
        }
    }
    let hash = hex(&Sha256::digest(
        serde_json::to_vec(request).unwrap_or_default(),
    ));
    if let Some(key) = &key
        && let Some(answer) = replay(db, actor, key, &hash).await?
    {
        return Ok((answer, true));
    }

    let providers = db.provider_ids().await?;
    let countries = db.reference_ids(Reference::Countries).await?;
    let services = db.reference_ids(Reference::Services).await?;
    let mut ids = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let unknown = |field: &str, code: &str| {
            BulkError::Unknown(format!(
                "prices[{i}].{field}: no {field} {code:?} in the catalog"
            ))
        };
        let p = *providers
            .get(row.provider.as_str())
            .ok_or_else(|| unknown("provider", row.provider.as_str()))?;
        let c = *countries
            .get(row.country.as_str())
            .ok_or_else(|| unknown("country", row.country.as_str()))?;
        let s = *services
            .get(row.service.as_str())
            .ok_or_else(|| unknown("service", row.service.as_str()))?;
        ids.push((p, c, s));
    }
    let current = db.prices_of(&ids).await?;
    let (mut upserts, mut new_for) = (Vec::new(), Vec::new());
    let mut stale = crate::catalog::Stale::default();
    let mut unchanged = 0u64;
    // Per row, what it writes (None: unchanged, not written).
    let mut upserts_of: Vec<Option<(i64, i64)>> = Vec::with_capacity(rows.len());
    for (row, &(p, c, s)) in rows.iter().zip(&ids) {
        match current.get(&(p, c, s)) {
            Some(&(price, stock)) if (price, stock) == (row.price_cents, row.stock) => {
                unchanged += 1;
                upserts_of.push(None);
                continue;
            }
            Some(_) => {}
            None => new_for.push(row.provider.clone()),
        }
        upserts.push(PriceRow {
            provider_id: p,
            country_id: c,
            service_id: s,
            price_cents: row.price_cents,
            stock: row.stock,
        });
        upserts_of.push(Some((row.price_cents, row.stock)));
        // Written either way; stale only if what its answers show changed.
        let old = current.get(&(p, c, s)).copied();
        let product = Product {
            provider: row.provider.clone(),
            country: row.country.clone(),
            service: row.service.clone(),
        };
        stale.product(&product, old, (row.price_cents, row.stock));
    }
    new_for.sort();
    new_for.dedup();
    for provider in &new_for {
        stale.add(keys::countries(provider), crate::purge::Kind::Soft);
        stale.add(keys::services(provider), crate::purge::Kind::Soft);
    }
    let answer = PriceUpdateResponse {
        changed: upserts.len() as u64,
        unchanged,
        keys_invalidated: stale.len() as u64,
    };
    let record = key.as_ref().map(|key| BulkRecord {
        user_id: actor,
        key: key.clone(),
        request_hash: hash.clone(),
        response: serde_json::to_string(&answer).unwrap_or_default(),
    });
    // Tests pause here, between reading the rows and writing them.
    crate::faults::delay("bulk::before_apply").await;
    match db.apply_prices(&upserts, &[], record.as_ref()).await {
        // Judged again against the rows as locked (a purchase in between may have moved a
        // product's step); the answer counts what was judged before the write.
        Ok((_, locked)) => {
            for ((row, &(p, c, s)), write) in rows.iter().zip(&ids).zip(&upserts_of) {
                let Some(write) = write else { continue };
                let now = locked.get(&(p, c, s)).copied();
                if now == current.get(&(p, c, s)).copied() {
                    continue;
                }
                let product = Product {
                    provider: row.provider.clone(),
                    country: row.country.clone(),
                    service: row.service.clone(),
                };
                stale.product(&product, now, *write);
            }
        }
        // The same key committed first by a concurrent retry: answer what it answered.
        Err(e) if is_unique_violation(&e) && key.is_some() => {
            let key = key.unwrap_or_default();
            return match replay(db, actor, &key, &hash).await? {
                Some(answer) => Ok((answer, true)),
                None => Err(BulkError::Database(e)),
            };
        }
        Err(e) => return Err(e.into()),
    }
    crate::catalog::invalidate(cache, purger, &stale).await;
    Ok((answer, false))
}

/// The recorded answer for this key, if this body made it; a conflict if another did.
async fn replay(
    db: &Db,
    actor: i64,
    key: &str,
    hash: &str,
) -> Result<Option<PriceUpdateResponse>, BulkError> {
    match db.bulk_request(actor, key).await? {
        None => Ok(None),
        Some((recorded, _)) if recorded != hash => Err(BulkError::KeyReused),
        Some((_, answer)) => Ok(serde_json::from_str(&answer).ok()),
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
