//! The catalog read path: each public route's data, through the cache-aside helpers, as the
//! exact JSON bytes of the response body.

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use shared::types::{CountriesResponse, ProvidersResponse, ServicesResponse};
use shared::{DataType, Slug, keys};

use crate::cache::Cache;
use crate::db::Db;
use crate::error::ApiError;

#[derive(Clone)]
pub struct Catalog {
    db: Db,
    cache: Cache,
}

fn unknown_provider(provider: &Slug) -> ApiError {
    ApiError::NotFound(format!("unknown provider '{provider}'"))
}

fn unknown_provider_or_country(provider: &Slug, country: &Slug) -> ApiError {
    ApiError::NotFound(format!(
        "unknown provider '{provider}' or country '{country}'"
    ))
}

impl Catalog {
    pub fn new(db: Db, cache: Cache) -> Self {
        Catalog { db, cache }
    }

    pub async fn providers(&self) -> Result<Bytes, ApiError> {
        let db = self.db.clone();
        let entry = self
            .cache
            .get_or_load(DataType::Providers, keys::providers(), move || async move {
                Ok(Some(ProvidersResponse {
                    providers: db.providers().await?,
                }))
            })
            .await?;
        entry.ok_or_else(|| ApiError::NotFound("no providers".into()))
    }

    pub async fn countries(&self, provider: Slug) -> Result<Bytes, ApiError> {
        let db = self.db.clone();
        let key = keys::countries(&provider);
        let p = provider.clone();
        let entry = self
            .cache
            .get_or_load(DataType::Countries, key, move || async move {
                let countries = db
                    .countries(&p)
                    .await?
                    .ok_or_else(|| unknown_provider(&p))?;
                Ok(Some(CountriesResponse {
                    provider: p.to_string(),
                    countries,
                }))
            })
            .await?;
        entry.ok_or_else(|| unknown_provider(&provider))
    }

    pub async fn services(&self, provider: Slug) -> Result<Bytes, ApiError> {
        let db = self.db.clone();
        let key = keys::services(&provider);
        let p = provider.clone();
        let entry = self
            .cache
            .get_or_load(DataType::Services, key, move || async move {
                let services = db.services(&p).await?.ok_or_else(|| unknown_provider(&p))?;
                Ok(Some(ServicesResponse {
                    provider: p.to_string(),
                    services,
                }))
            })
            .await?;
        entry.ok_or_else(|| unknown_provider(&provider))
    }

    pub async fn price(
        &self,
        provider: Slug,
        country: Slug,
        service: Slug,
    ) -> Result<Bytes, ApiError> {
        let db = self.db.clone();
        let key = keys::price(&provider, &country, &service);
        let (p, c, s) = (provider.clone(), country.clone(), service.clone());
        let entry = self
            .cache
            .get_or_load(DataType::Prices, key, move || async move {
                let mut rows = db
                    .prices(&p, &c, std::slice::from_ref(&s))
                    .await?
                    .ok_or_else(|| unknown_provider_or_country(&p, &c))?;
                Ok(rows.pop().flatten())
            })
            .await?;
        entry.ok_or_else(|| {
            ApiError::NotFound(format!(
                "provider '{provider}' has no price for service '{service}' in country '{country}'"
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
    ) -> Result<Bytes, ApiError> {
        let listed = services.is_some();
        let services = match services {
            Some(list) => list,
            None => self.provider_service_codes(&provider).await?,
        };
        let keys: Vec<String> = services
            .iter()
            .map(|s| keys::price(&provider, &country, s))
            .collect();
        let db = &self.db;
        let entries = self
            .cache
            .get_multiple(DataType::Prices, &keys, |missing| {
                let wanted: Vec<Slug> = missing.iter().map(|&i| services[i].clone()).collect();
                let (p, c) = (&provider, &country);
                async move {
                    db.prices(p, c, &wanted)
                        .await?
                        .ok_or_else(|| unknown_provider_or_country(p, c))
                }
            })
            .await?;

        let mut prices = Vec::with_capacity(entries.len());
        let mut unavailable = Vec::new();
        for (service, entry) in services.iter().zip(&entries) {
            match entry {
                Some(bytes) => prices.push(serde_json::from_slice::<&RawValue>(bytes)?),
                None if listed => unavailable.push(service.as_str()),
                None => {}
            }
        }
        #[derive(Serialize)]
        struct Body<'a> {
            provider: &'a str,
            country: &'a str,
            prices: Vec<&'a RawValue>,
            unavailable: Vec<&'a str>,
        }
        let body = Body {
            provider: provider.as_str(),
            country: country.as_str(),
            prices,
            unavailable,
        };
        Ok(Bytes::from(serde_json::to_vec(&body)?))
    }

    /// The provider's service codes, from the cached services list.
    async fn provider_service_codes(&self, provider: &Slug) -> Result<Vec<Slug>, ApiError> {
        let bytes = self.services(provider.clone()).await?;
        let list: ServicesResponse = serde_json::from_slice(&bytes)?;
        list.services
            .into_iter()
            .map(|s| {
                Slug::parse(&s.code)
                    .map_err(|e| ApiError::Internal(format!("bad service code in cache: {e}")))
            })
            .collect()
    }
}
