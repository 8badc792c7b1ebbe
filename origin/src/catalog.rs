//! The catalog read path: each public route's data, through the cache-aside helpers, as the
//! exact JSON bytes of the response body.

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use shared::route::{CatalogRoute, EntryRoute};
use shared::types::{BulkPricesResponse, CountriesResponse, ProvidersResponse, ServicesResponse};
use shared::{DataType, Product, Slug, keys};

use crate::cache::{Cache, LoadError, Loaded, Value};
use crate::db::Db;
use crate::db::catalog::PriceLookup;
use crate::small::Small;

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
}

#[derive(Clone)]
pub struct Catalog {
    db: Db,
    cache: Cache,
}

fn unknown_provider(provider: &Slug) -> LoadFailure {
    LoadFailure::Unknown(format!("unknown provider '{provider}'"))
}

fn unknown_provider_or_country(provider: &Slug, country: &Slug) -> LoadFailure {
    LoadFailure::Unknown(format!(
        "unknown provider '{provider}' or country '{country}'"
    ))
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
        Catalog { db, cache }
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
            } => self.bulk_prices(provider, country, services).await,
        }
    }

    pub async fn providers(&self) -> Result<Value, CatalogError> {
        let db = self.db.clone();
        let entry = self
            .cache
            .get_or_load(DataType::Providers, keys::providers(), move || async move {
                let providers = db.providers().await?;
                Ok::<_, LoadFailure>(Loaded::Found(json(&ProvidersResponse { providers })?))
            })
            .await?;
        entry.ok_or_else(|| CatalogError::NotFound("no providers".into()))
    }

    /// An unknown provider is a [`Loaded::Unknown`]: remembered in L1 only, so a flood of one
    /// made-up name costs one probe per L1 lifetime and parks nothing in Redis.
    pub async fn countries(&self, provider: Slug) -> Result<Value, CatalogError> {
        let db = self.db.clone();
        let p = provider.clone();
        let entry = self
            .cache
            .get_or_load(
                DataType::Countries,
                keys::countries(&provider),
                move || async move {
                    Ok::<_, LoadFailure>(match db.countries(&p).await? {
                        Some(countries) => Loaded::Found(json(&CountriesResponse {
                            provider: p.to_string(),
                            countries,
                        })?),
                        None => Loaded::Unknown,
                    })
                },
            )
            .await?;
        entry.ok_or_else(|| CatalogError::NotFound(unknown_provider(&provider).to_string()))
    }

    pub async fn services(&self, provider: Slug) -> Result<Value, CatalogError> {
        let db = self.db.clone();
        let p = provider.clone();
        let entry = self
            .cache
            .get_or_load(
                DataType::Services,
                keys::services(&provider),
                move || async move {
                    Ok::<_, LoadFailure>(match db.services(&p).await? {
                        Some(services) => Loaded::Found(json(&ServicesResponse {
                            provider: p.to_string(),
                            services,
                        })?),
                        None => Loaded::Unknown,
                    })
                },
            )
            .await?;
        entry.ok_or_else(|| CatalogError::NotFound(unknown_provider(&provider).to_string()))
    }

    /// An unknown provider or country is a 404 that is not cached at all (under a price key an
    /// absence means "no such price", and a bulk read served from such entries could not tell an
    /// unknown country from an unsold service); an unknown service is [`Loaded::Unknown`].
    pub async fn price(&self, product: Product) -> Result<Value, CatalogError> {
        let db = self.db.clone();
        let wanted = product.clone();
        let entry = self
            .cache
            .get_or_load(
                DataType::Prices,
                keys::price(&product),
                move || async move {
                    let (p, c) = (&wanted.provider, &wanted.country);
                    let rows = db
                        .prices(p, c, std::slice::from_ref(&wanted.service))
                        .await?
                        .ok_or_else(|| unknown_provider_or_country(p, c))?;
                    match rows.into_iter().next() {
                        Some(lookup) => loaded(lookup),
                        None => Ok(Loaded::Unknown),
                    }
                },
            )
            .await?;
        entry.ok_or_else(|| {
            CatalogError::NotFound(format!(
                "provider '{}' has no price for service '{}' in country '{}'",
                product.provider, product.service, product.country
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
                let wanted: Vec<Slug> = missing.iter().map(|&i| services[i].clone()).collect();
                let (p, c) = (&provider, &country);
                async move {
                    let rows = db
                        .prices(p, c, &wanted)
                        .await?
                        .ok_or_else(|| unknown_provider_or_country(p, c))?;
                    rows.into_iter().map(loaded).collect::<Result<Vec<_>, _>>()
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
