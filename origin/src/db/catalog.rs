//! Catalog queries. Each one is a single round trip that also tells "unknown provider or
//! country" (no row at all) apart from "known, but nothing there" (a row of NULLs), so a 404
//! never costs a second query.

use shared::Slug;
use shared::types::{Country, Price, Provider, Service};

use super::Db;

/// Public so the query-plan tests EXPLAIN exactly what runs.
pub const PROVIDERS_SQL: &str = "SELECT code, name FROM providers ORDER BY code";

/// `$1` provider code. One row per country with a price; no row at all for an unknown provider.
pub const COUNTRIES_SQL: &str = "SELECT c.code, c.name
               FROM providers pr
               LEFT JOIN LATERAL (
                    SELECT c.code, c.name FROM countries c
                     WHERE EXISTS (SELECT 1 FROM prices p
                                    WHERE p.provider_id = pr.id AND p.country_id = c.id)
               ) c ON true
              WHERE pr.code = $1
              ORDER BY c.code";

/// `$1` provider code. One row per service with a price; no row at all for an unknown provider.
pub const SERVICES_SQL: &str = "SELECT s.code, s.name
               FROM providers pr
               LEFT JOIN LATERAL (
                    SELECT s.code, s.name FROM services s
                     WHERE EXISTS (SELECT 1 FROM prices p
                                    WHERE p.provider_id = pr.id AND p.service_id = s.id)
               ) s ON true
              WHERE pr.code = $1
              ORDER BY s.code";

/// `$1` provider, `$2` country, `$3` service codes. One row per asked code, in order, with NULL
/// price where not sold (and `known` false for a code that is no service at all); no row at all
/// for an unknown provider or country.
pub const PRICES_SQL: &str = "SELECT want.code, s.id IS NOT NULL, p.price_cents, p.stock
               FROM providers pr
               JOIN countries c ON c.code = $2
              CROSS JOIN unnest($3::text[]) WITH ORDINALITY AS want(code, ord)
               LEFT JOIN services s ON s.code = want.code
               LEFT JOIN prices p
                      ON p.provider_id = pr.id AND p.country_id = c.id AND p.service_id = s.id
              WHERE pr.code = $1
              ORDER BY want.ord";

impl Db {
    pub async fn providers(&self) -> Result<Vec<Provider>, sqlx::Error> {
        self.count("providers");
        let mut conn = self.conn().await?;
        let rows: Vec<(String, String)> = sqlx::query_as(PROVIDERS_SQL)
            .persistent(self.persistent())
            .fetch_all(&mut *conn)
            .await?;
        conn.done().await?;
        Ok(rows
            .into_iter()
            .map(|(code, name)| Provider { code, name })
            .collect())
    }

    /// `None`: no such provider. Countries where the provider has at least one price; one
    /// primary-key probe per country, never a scan of `prices`.
    pub async fn countries(&self, provider: &Slug) -> Result<Option<Vec<Country>>, sqlx::Error> {
        self.count("countries");
        let mut conn = self.conn().await?;
        let rows: Vec<(Option<String>, Option<String>)> = sqlx::query_as(COUNTRIES_SQL)
            .persistent(self.persistent())
            .bind(provider.as_str())
            .fetch_all(&mut *conn)
            .await?;
        conn.done().await?;
        Ok(collect_pairs(rows, |code, name| Country { code, name }))
    }

    /// `None`: no such provider. Services the provider prices in at least one country.
    pub async fn services(&self, provider: &Slug) -> Result<Option<Vec<Service>>, sqlx::Error> {
        self.count("services");
        let mut conn = self.conn().await?;
        let rows: Vec<(Option<String>, Option<String>)> = sqlx::query_as(SERVICES_SQL)
            .persistent(self.persistent())
            .bind(provider.as_str())
            .fetch_all(&mut *conn)
            .await?;
        conn.done().await?;
        Ok(collect_pairs(rows, |code, name| Service { code, name }))
    }

    /// Prices of several services of one provider in one country, in one query. `None`: no such
    /// provider or country. Otherwise one entry per asked service, in order.
    pub async fn prices(
        &self,
        provider: &Slug,
        country: &Slug,
        services: &[Slug],
    ) -> Result<Option<Vec<PriceLookup>>, sqlx::Error> {
        self.count("prices");
        let wanted: Vec<&str> = services.iter().map(Slug::as_str).collect();
        let mut conn = self.conn().await?;
        let rows: Vec<(String, bool, Option<i64>, Option<i64>)> = sqlx::query_as(PRICES_SQL)
            .persistent(self.persistent())
            .bind(provider.as_str())
            .bind(country.as_str())
            .bind(&wanted)
            .fetch_all(&mut *conn)
            .await?;
        conn.done().await?;
        if rows.is_empty() && !services.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            rows.into_iter()
                .map(
                    |(service, known, price_cents, stock)| match (price_cents, stock) {
                        (Some(price_cents), Some(stock)) => PriceLookup::Priced(Price {
                            provider: provider.to_string(),
                            country: country.to_string(),
                            service,
                            price_cents,
                            availability: shared::types::Availability::of(stock),
                        }),
                        _ if known => PriceLookup::NotSold,
                        _ => PriceLookup::NoSuchService,
                    },
                )
                .collect(),
        ))
    }
}

/// One asked service's price.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PriceLookup {
    Priced(Price),
    /// A real service the provider does not sell in that country.
    NotSold,
    /// A code that is no service at all (a client made it up).
    NoSuchService,
}

/// Rows of a `LEFT JOIN LATERAL`: none means the parent was not found; a single all-NULL row
/// means it was found with nothing in it.
fn collect_pairs<T>(
    rows: Vec<(Option<String>, Option<String>)>,
    make: impl Fn(String, String) -> T,
) -> Option<Vec<T>> {
    if rows.is_empty() {
        return None;
    }
    Some(
        rows.into_iter()
            .filter_map(|(code, name)| Some(make(code?, name?)))
            .collect(),
    )
}
