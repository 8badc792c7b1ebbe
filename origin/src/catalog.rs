//! The catalog read path: each public route's data, through the cache-aside helpers, as the
//! exact JSON bytes of the response body; and the write side's rule for what a change makes
//! stale ([`change_of`], [`Stale`], [`invalidate`]).
//!
//! **Made-up codes cost no query.** Before a price is loaded from PostgreSQL (a miss in L1 and
//! Redis), its provider, country and service are looked up in the catalog's own cached lists
//! (the providers list, the provider's countries and services): a code none of them names is a
//! 404 at once. The lists are read through the same cache (L1, then Redis), and each is parsed
//! into a set once per version (its ETag), so random codes from any number of addresses load
//! nothing once the lists are cached.

use std::collections::HashSet;

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use shared::route::{CatalogRoute, EntryRoute};
use shared::types::{BulkPricesResponse, CountriesResponse, ProvidersResponse, ServicesResponse};
use shared::{DataType, Product, Slug, keys};

use crate::cache::{Cache, LoadError, Loaded, Value};
use crate::db::Db;
use crate::db::catalog::PriceLookup;
use crate::purge::{Kind, Purger};
use crate::small::Small;

/// What a change of one product's row (`(price_cents, stock)`, `None`: no row before) does to
/// its cached answers — the write side's one rule for what goes stale: nothing when the answer
/// shows the same (its price and its availability step, [`shared::types::Availability`]: a
/// purchase that leaves a product in its step is invisible to every cache); a soft purge when
/// it shows something new but the product is still there to buy (a buyer acting on the stale
/// copy is refused with `price_changed` and charged nothing); a hard one when the product is
/// new or leaves sale (nobody should be offered what cannot be bought).
pub fn change_of(old: Option<(i64, i64)>, new: (i64, i64)) -> Option<Kind> {
    use shared::types::Availability;
    let shown = |(price, stock): (i64, i64)| (price, Availability::of(stock));
    match old {
        Some(old) if shown(old) == shown(new) => None,
        Some(_) if Availability::of(new.1) != Availability::SoldOut => Some(Kind::Soft),
        _ => Some(Kind::Hard),
    }
}

/// Keys a catalog write made stale, each with how the caches downstream let their copies go.
#[derive(Debug, Default)]
pub struct Stale {
    pub soft: Vec<String>,
    pub hard: Vec<String>,
}

impl Stale {
    pub fn add(&mut self, key: String, kind: Kind) {
        match kind {
            Kind::Soft => self.soft.push(key),
            Kind::Hard => self.hard.push(key),
        }
    }

    /// Adds the product's price key if its change ([`change_of`]) shows.
    pub fn product(&mut self, product: &Product, old: Option<(i64, i64)>, new: (i64, i64)) {
        if let Some(kind) = change_of(old, new) {
            self.add(keys::price(product), kind);
        }
    }

    pub fn len(&self) -> usize {
        self.soft.len() + self.hard.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Keys dropped from Redis per round trip (each batch one message to the replicas' L1s).
pub const INVALIDATE_BATCH: usize = 1000;

/// After a write commits: drops the stale keys fleet-wide (Redis and every replica's L1), then
/// queues the purge of their tags downstream — after, so a purged cache refilling at once finds
/// the new value. A failure to drop is logged and counted: the value then expires by its TTL
/// (60 s for prices, 30 s for balances).
pub async fn invalidate(cache: &Cache, purger: &Purger, stale: &Stale) {
    // Redis and the replicas' L1s drop both kinds alike: one round trip (and one message) per
    // batch; only the downstream caches are told which kind each key's change is.
    let keys: Vec<String> = stale.hard.iter().chain(&stale.soft).cloned().collect();
    for batch in keys.chunks(INVALIDATE_BATCH) {
        if let Err(e) = cache.invalidate(batch).await {
            crate::meters::cache_invalidation_failed();
            tracing::warn!(error = %e, "cache invalidation failed; entries expire by TTL");
        }
    }
    purger.keys(&stale.hard, Kind::Hard);
    purger.keys(&stale.soft, Kind::Soft);
}

/// Why a catalog read has no answer.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Nothing by that name (a 404 for the client).
    #[error("{0}")]
    NotFound(String),
    /// The load failed; shared by every request that waited on it.
    #[error(transparent)]
    Load(#[from] LoadError<LoadFailure>),
    /// Bytes in the cache that are not what this code wrote.
    #[error("cached catalog data is unreadable: {0}")]
    Corrupt(String),
}

/// What a catalog loader can fail with.
#[derive(Debug, thiserror::Error)]
pub enum LoadFailure {
    /// The provider or country of a price does not exist: answered as a 404, not cached.
    #[error("{0}")]
    Unknown(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("encoding a response: {0}")]
    Encode(#[from] serde_json::Error),
    /// The lists that decide whether the codes exist could not be read (`unavailable`: because
    /// PostgreSQL was out of reach).
    #[error("catalog lists: {message}")]
    Lists { message: String, unavailable: bool },
}

#[derive(Clone)]
pub struct Catalog {
    db: Db,
    cache: Cache,
    /// The codes each cached list names, keyed by the list's cache key, with the ETag of the
    /// version they were parsed from.
    codes: moka::sync::Cache<String, std::sync::Arc<(Bytes, HashSet<String>)>>,
}

/// How long a parsed list vouches for the codes it names without being read again.
const KNOWN_CODES_TTL: std::time::Duration = std::time::Duration::from_secs(2);

/// What the cached lists say of a product's codes.
enum Known {
    Yes,
    /// No such provider, or no such country for it: a 404 that caches nothing.
    NoProviderOrCountry,
    /// The provider does not list the service.
    NoService,
}

fn unknown_provider(provider: &Slug) -> LoadFailure {
    LoadFailure::Unknown(format!("unknown provider '{provider}'"))
}

fn unknown_provider_or_country(provider: &Slug, country: &Slug) -> LoadFailure {
    LoadFailure::Unknown(format!(
        "unknown provider '{provider}' or country '{country}'"
    ))
}

/// A failure to read the lists, for a loader that needed them.
fn lists_failure(e: CatalogError) -> LoadFailure {
    let unavailable = matches!(&e, CatalogError::Load(LoadError::Loader(f))
        if matches!(&**f, LoadFailure::Database(db) if crate::db::is_unavailable(db))
            || matches!(&**f, LoadFailure::Lists { unavailable: true, .. }));
    LoadFailure::Lists {
        message: e.to_string(),
        unavailable,
    }
}

fn json(value: &impl Serialize) -> Result<Bytes, LoadFailure> {
    Ok(Bytes::from(serde_json::to_vec(value)?))
}

/// What the cache keeps for one price lookup.
fn loaded(lookup: PriceLookup) -> Result<Loaded, LoadFailure> {
    Ok(match lookup {
        PriceLookup::Priced(price) => Loaded::Found(json(&price)?),
        PriceLookup::NotSold => Loaded::Absent,
        PriceLookup::NoSuchService => Loaded::Unknown,
    })
}

impl Catalog {
    pub fn new(db: Db, cache: Cache) -> Self {
        Catalog {
            db,
            cache,
            // Three lists per provider and the providers list: a few hundred entries at most.
            // A code found in a set is believed for this long without reading its list again
            // (PostgreSQL still decides a price); one not found sends the check to the list.
            codes: moka::sync::Cache::builder()
                .max_capacity(1024)
                .time_to_live(KNOWN_CODES_TTL)
                .build(),
        }
    }

    /// The codes `list` (a cached list's value under `key`) names, parsed once per version.
    fn codes_of(
        &self,
        key: &str,
        list: &Value,
        parse: impl FnOnce(&[u8]) -> Option<HashSet<String>>,
    ) -> Result<std::sync::Arc<(Bytes, HashSet<String>)>, CatalogError> {
        if let Some(known) = self.codes.get(key).filter(|k| k.0 == list.etag) {
            return Ok(known);
        }
        let codes = parse(&list.bytes)
            .ok_or_else(|| CatalogError::Corrupt(format!("the cached list {key}")))?;
        let known = std::sync::Arc::new((list.etag.clone(), codes));
        self.codes.insert(key.to_owned(), known.clone());
        Ok(known)
    }

    /// Whether the cached lists name `provider`, `country` and (if given) `service`. Reads the
    /// lists through the cache; the only query this can cost is loading a list that is not
    /// cached, once.
    async fn known(
        &self,
        provider: &Slug,
        country: &Slug,
        service: Option<&Slug>,
    ) -> Result<Known, CatalogError> {
        // The common case, a real product whose lists were parsed a moment ago: no read at all.
        let vouched = |key: String, code: &str| {
            self.codes
                .get(&key)
                .is_some_and(|known| known.1.contains(code))
        };
        if vouched(keys::providers(), provider.as_str())
            && vouched(keys::countries(provider), country.as_str())
            && service.is_none_or(|s| vouched(keys::services(provider), s.as_str()))
        {
            return Ok(Known::Yes);
        }
        let providers = match self.providers().await {
            Err(CatalogError::NotFound(_)) => return Ok(Known::NoProviderOrCountry),
            other => other?,
        };
        let providers = self.codes_of(&keys::providers(), &providers, |b| {
            let list: ProvidersResponse = serde_json::from_slice(b).ok()?;
            Some(list.providers.into_iter().map(|p| p.code).collect())
        })?;
        if !providers.1.contains(provider.as_str()) {
            return Ok(Known::NoProviderOrCountry);
        }
        let (countries, services) = tokio::join!(self.countries(provider.clone()), async {
            match service {
                Some(_) => self.services(provider.clone()).await.map(Some),
                None => Ok(None),
            }
        });
        let countries = match countries {
            Err(CatalogError::NotFound(_)) => return Ok(Known::NoProviderOrCountry),
            other => other?,
        };
        let countries = self.codes_of(&keys::countries(provider), &countries, |b| {
            let list: CountriesResponse = serde_json::from_slice(b).ok()?;
            Some(list.countries.into_iter().map(|c| c.code).collect())
        })?;
        if !countries.1.contains(country.as_str()) {
            return Ok(Known::NoProviderOrCountry);
        }
        let services = match services {
            Err(CatalogError::NotFound(_)) => return Ok(Known::NoService),
            other => other?,
        };
        if let (Some(service), Some(services)) = (service, services) {
            let services = self.codes_of(&keys::services(provider), &services, |b| {
                let list: ServicesResponse = serde_json::from_slice(b).ok()?;
                Some(list.services.into_iter().map(|s| s.code).collect())
            })?;
            if !services.1.contains(service.as_str()) {
                return Ok(Known::NoService);
            }
        }
        Ok(Known::Yes)
    }

    /// A single-entry route's answer if this process holds it in L1 (the hit path, before any
    /// routing): no allocation, no await. `None` sends the request the full way.
    pub fn cached(&self, route: &EntryRoute<'_>) -> Option<Value> {
        // The longest key: "cache:prices:" and three 32-byte codes with two separators.
        let mut key = Small::<128>::new();
        route.write_key(&mut key).ok()?;
        self.cache.l1_hit(route.data_type(), key.as_str())
    }

    /// Any catalog route's answer, the whole cache-aside way.
    ///
    /// The bulk read is boxed: its future is four times a single entry's (8.5 KiB against
    /// 2.2), and inline it would set the size of this one, which the front door boxes for every
    /// single-entry read that misses L1: copying it there was 8 700 of the 60 800 instructions
    /// of a read from Redis (#26).
    pub async fn answer(&self, route: CatalogRoute) -> Result<Value, CatalogError> {
        match route {
            CatalogRoute::Providers => self.providers().await,
            CatalogRoute::Countries { provider } => self.countries(provider).await,
            CatalogRoute::Services { provider } => self.services(provider).await,
            CatalogRoute::Price(product) => self.price(product).await,
            CatalogRoute::BulkPrices {
                provider,
                country,
                services,
            } => Box::pin(self.bulk_prices(provider, country, services)).await,
        }
    }

    pub async fn providers(&self) -> Result<Value, CatalogError> {
        let loader = || {
            let db = self.db.clone();
            move || async move {
                let providers = db.providers().await?;
                Ok::<_, LoadFailure>(Loaded::Found(json(&ProvidersResponse { providers })?))
            }
        };
        let entry = self
            .cache
            .get_or_load(DataType::Providers, keys::providers(), loader)
            .await?;
        entry.ok_or_else(|| CatalogError::NotFound("no providers".into()))
    }

    /// An unknown provider is a [`Loaded::Unknown`]: remembered in L1 only, so a flood of one
    /// made-up name costs one probe per L1 lifetime and parks nothing in Redis.
    pub async fn countries(&self, provider: Slug) -> Result<Value, CatalogError> {
        let loader = || {
            let db = self.db.clone();
            let p = provider.clone();
            move || async move {
                Ok::<_, LoadFailure>(match db.countries(&p).await? {
                    Some(countries) => Loaded::Found(json(&CountriesResponse {
                        provider: p.to_string(),
                        countries,
                    })?),
                    None => Loaded::Unknown,
                })
            }
        };
        let entry = self
            .cache
            .get_or_load(DataType::Countries, keys::countries(&provider), loader)
            .await?;
        entry.ok_or_else(|| CatalogError::NotFound(unknown_provider(&provider).to_string()))
    }

    pub async fn services(&self, provider: Slug) -> Result<Value, CatalogError> {
        let loader = || {
            let db = self.db.clone();
            let p = provider.clone();
            move || async move {
                Ok::<_, LoadFailure>(match db.services(&p).await? {
                    Some(services) => Loaded::Found(json(&ServicesResponse {
                        provider: p.to_string(),
                        services,
                    })?),
                    None => Loaded::Unknown,
                })
            }
        };
        let entry = self
            .cache
            .get_or_load(DataType::Services, keys::services(&provider), loader)
            .await?;
        entry.ok_or_else(|| CatalogError::NotFound(unknown_provider(&provider).to_string()))
    }

    /// An unknown provider or country is a 404 that is not cached at all (under a price key an
    /// absence means "no such price", and a bulk read served from such entries could not tell an
    /// unknown country from an unsold service); an unknown service is [`Loaded::Unknown`].
    pub async fn price(&self, product: Product) -> Result<Value, CatalogError> {
        let key = keys::price(&product);
        let names = [&product.provider, &product.country, &product.service].map(Slug::as_str);
        self.price_at(key, names, || product.clone()).await
    }

    /// A single-entry route's answer the cache-aside way: the front door's read that missed L1.
    /// A price route's codes stay borrowed: owned ones are made only if a load runs.
    pub async fn entry(&self, route: EntryRoute<'_>) -> Result<Value, CatalogError> {
        match route {
            EntryRoute::Price(codes) => {
                let names = [codes.provider, codes.country, codes.service];
                self.price_at(codes.key(), names, || codes.product()).await
            }
            other => self.answer(other.into()).await,
        }
    }

    /// The price under `key`, of the product `names` (provider, country, service) spell and
    /// `product` makes when a load needs it.
    async fn price_at(
        &self,
        key: String,
        [provider, country, service]: [&str; 3],
        product: impl FnOnce() -> Product,
    ) -> Result<Value, CatalogError> {
        let loader = || {
            let db = self.db.clone();
            let this = self.clone();
            let wanted = product();
            move || async move {
                let (p, c) = (&wanted.provider, &wanted.country);
                match this.known(p, c, Some(&wanted.service)).await {
                    Ok(Known::Yes) => {}
                    Ok(Known::NoProviderOrCountry) => {
                        return Err(unknown_provider_or_country(p, c));
                    }
                    Ok(Known::NoService) => return Ok(Loaded::Unknown),
                    Err(e) => return Err(lists_failure(e)),
                }
                let rows = db
                    .prices(p, c, std::slice::from_ref(&wanted.service))
                    .await?
                    .ok_or_else(|| unknown_provider_or_country(p, c))?;
                match rows.into_iter().next() {
                    Some(lookup) => loaded(lookup),
                    None => Ok(Loaded::Unknown),
                }
            }
        };
        let entry = self
            .cache
            .get_or_load(DataType::Prices, key, loader)
            .await?;
        entry.ok_or_else(|| {
            CatalogError::NotFound(format!(
                "provider '{provider}' has no price for service '{service}' in country \
                 '{country}'"
            ))
        })
    }

    /// Several prices of one provider in one country: one MGET over the per-service price keys,
    /// one query for all that missed. Without a `services` list: every service the provider sells.
    pub async fn bulk_prices(
        &self,
        provider: Slug,
        country: Slug,
        services: Option<Vec<Slug>>,
    ) -> Result<Value, CatalogError> {
        let listed = services.is_some();
        let services = match services {
            Some(list) => list,
            None => self.provider_service_codes(&provider).await?,
        };
        let products: Vec<Product> = services
            .iter()
            .map(|s| Product {
                provider: provider.clone(),
                country: country.clone(),
                service: s.clone(),
            })
            .collect();
        let keys: Vec<String> = products.iter().map(keys::price).collect();
        let db = &self.db;
        let entries = self
            .cache
            .get_multiple(DataType::Prices, &keys, |missing| {
                let asked: Vec<Slug> = missing.iter().map(|&i| services[i].clone()).collect();
                let (p, c) = (&provider, &country);
                async move {
                    // Made-up provider or country, or services the provider does not list:
                    // decided from the cached lists, no query for them.
                    match self.known(p, c, None).await {
                        Ok(Known::NoProviderOrCountry) => {
                            return Err(unknown_provider_or_country(p, c));
                        }
                        Ok(_) => {}
                        Err(e) => return Err(lists_failure(e)),
                    }
                    let sold = match self.codes.get(&keys::services(p)) {
                        Some(sold) if asked.iter().all(|s| sold.1.contains(s.as_str())) => sold,
                        // A code the parsed list does not name: read the list again to be sure.
                        _ => self
                            .services(p.clone())
                            .await
                            .and_then(|list| {
                                self.codes_of(&keys::services(p), &list, |b| {
                                    let list: ServicesResponse = serde_json::from_slice(b).ok()?;
                                    Some(list.services.into_iter().map(|s| s.code).collect())
                                })
                            })
                            .map_err(lists_failure)?,
                    };
                    let sold = &sold.1;
                    let wanted: Vec<Slug> = asked
                        .iter()
                        .filter(|s| sold.contains(s.as_str()))
                        .cloned()
                        .collect();
                    let rows = if wanted.is_empty() {
                        Vec::new()
                    } else {
                        db.prices(p, c, &wanted)
                            .await?
                            .ok_or_else(|| unknown_provider_or_country(p, c))?
                    };
                    let mut rows = rows.into_iter();
                    asked
                        .iter()
                        .map(|s| match sold.contains(s.as_str()) {
                            true => rows.next().map_or(Ok(Loaded::Unknown), loaded),
                            false => Ok(Loaded::Unknown),
                        })
                        .collect::<Result<Vec<_>, _>>()
                }
            })
            .await?;

        let mut prices = Vec::with_capacity(entries.len());
        let mut unavailable = Vec::new();
        for (service, entry) in services.iter().zip(&entries) {
            match entry {
                Some(value) => prices.push(
                    serde_json::from_slice::<&RawValue>(&value.bytes)
                        .map_err(|e| CatalogError::Corrupt(e.to_string()))?,
                ),
                None if listed => unavailable.push(service.to_string()),
                None => {}
            }
        }
        let body = BulkPricesResponse {
            provider: provider.to_string(),
            country: country.to_string(),
            prices,
            unavailable,
        };
        serde_json::to_vec(&body)
            .map(|body| Value::new(Bytes::from(body)))
            .map_err(|e| CatalogError::Corrupt(e.to_string()))
    }

    /// The provider's service codes, from the cached services list.
    async fn provider_service_codes(&self, provider: &Slug) -> Result<Vec<Slug>, CatalogError> {
        let value = self.services(provider.clone()).await?;
        let list: ServicesResponse = serde_json::from_slice(&value.bytes)
            .map_err(|e| CatalogError::Corrupt(e.to_string()))?;
        list.services
            .into_iter()
            .map(|s| {
                Slug::parse(&s.code)
                    .map_err(|e| CatalogError::Corrupt(format!("service code {}: {e}", s.code)))
            })
            .collect()
    }
}
