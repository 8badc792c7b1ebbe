//! JSON wire types of the public catalog. Money is always integer minor units (`*_cents`, US
//! cents); there is no float anywhere on the wire.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Provider {
    pub code: String,
    pub name: String,
}

/// `GET /v1/catalog/providers`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProvidersResponse {
    pub providers: Vec<Provider>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Country {
    /// ISO 3166-1 alpha-2, lower case.
    pub code: String,
    pub name: String,
}

/// `GET /v1/catalog/{provider}/countries`: the countries where the provider has at least one price.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CountriesResponse {
    pub provider: String,
    pub countries: Vec<Country>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Service {
    pub code: String,
    pub name: String,
}

/// `GET /v1/catalog/{provider}/services`: the services the provider prices in at least one country.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServicesResponse {
    pub provider: String,
    pub services: Vec<Service>,
}

/// `GET /v1/catalog/{provider}/prices/{country}/{service}`, and one element of the bulk answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Price {
    pub provider: String,
    pub country: String,
    pub service: String,
    /// Price of one number, in US cents.
    pub price_cents: i64,
    /// How many numbers there are, in coarse steps ([`crate::policy::availability`]): what a
    /// cached answer promises about stock. A purchase changes the answer only when it crosses a
    /// step; whether a number is really left is decided when it is bought (409 `out_of_stock`).
    pub availability: Availability,
}

/// Stock in coarse steps: `in_stock`, `few_left` (at most
/// [`crate::policy::availability::FEW_LEFT_AT_MOST`]), `sold_out` (none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    InStock,
    FewLeft,
    SoldOut,
}

impl Availability {
    /// The step `stock` numbers are in.
    pub const fn of(stock: i64) -> Availability {
        if stock <= 0 {
            Availability::SoldOut
        } else if stock <= crate::policy::availability::FEW_LEFT_AT_MOST {
            Availability::FewLeft
        } else {
            Availability::InStock
        }
    }
}

/// `PUT /v1/admin/prices/{provider}/{country}/{service}`: the product as set, its exact stock
/// included (an operator's answer, never cached).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PriceSet {
    pub provider: String,
    pub country: String,
    pub service: String,
    pub price_cents: i64,
    pub stock: i64,
    pub availability: Availability,
}

/// `GET /v1/catalog/{provider}/prices/{country}?services=a,b,c`. Generic over the element so the
/// origin can assemble it from the cached JSON of each price without decoding them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(bound = "P: utoipa::ToSchema"))]
pub struct BulkPricesResponse<P = Price> {
    pub provider: String,
    pub country: String,
    /// Sorted by service code.
    pub prices: Vec<P>,
    /// Asked-for services the provider does not sell in this country.
    pub unavailable: Vec<String>,
}

/// A purge the origin asks of a downstream cache (the edge's purge route, the Next.js
/// revalidation route): the cache tags ([`crate::tags`]) whose answers are out of date.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    pub tags: Vec<String>,
    /// Serve what the tags cover as stale while refreshing it, rather than miss (default: a miss).
    #[serde(default)]
    pub soft: bool,
}

/// Most tags in one purge (Cloudflare's purge API takes 30 per call; a batch is split there).
pub const MAX_PURGE_TAGS: usize = 100;

impl PurgeRequest {
    /// Tags that are what [`crate::tags`] makes: 1–128 characters of `a-z 0-9 : _ -`, between
    /// 1 and [`MAX_PURGE_TAGS`] of them.
    pub fn is_valid(&self) -> bool {
        (1..=MAX_PURGE_TAGS).contains(&self.tags.len())
            && self.tags.iter().all(|t| {
                (1..=128).contains(&t.len())
                    && t.bytes().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || b":_-".contains(&c)
                    })
            })
    }
}

/// Every 4xx/5xx body: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Stable machine-readable code (`bad_request`, `not_found`, `rate_limited`, …).
    pub code: String,
    /// Human-readable explanation; never contains internals.
    pub message: String,
    /// With `price_changed`: the price now, in cents (buy again with it to accept it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_cents: Option<i64>,
}

impl ErrorBody {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
                price_cents: None,
            },
        }
    }
}

/// `POST /v1/auth/register` and `POST /v1/auth/login`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    #[cfg_attr(feature = "openapi", schema(format = Email, max_length = 254, example = "ada@example.com"))]
    pub email: String,
    /// 10–128 characters, at least 4 of them different.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 10, max_length = 128, example = "correct horse battery")
    )]
    pub password: String,
}

/// Limits the origin enforces (and the OpenAPI document states).
pub const PASSWORD_MIN_CHARS: usize = 10;
pub const PASSWORD_MAX_CHARS: usize = 128;
/// Largest single credit: guards against a typo adding a fortune (10 000 $).
pub const MAX_CREDIT_CENTS: i64 = 1_000_000;
/// Largest price an admin can set (1 000 $ per number).
pub const MAX_PRICE_CENTS: i64 = 100_000;
/// Largest stock an admin can set.
pub const MAX_STOCK: i64 = 10_000_000;

/// `201` of `POST /v1/auth/register`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserResponse {
    pub id: i64,
    pub email: String,
}

/// `200` of `POST /v1/auth/login`; the same token is also set as the `__Host-session` cookie.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginResponse {
    pub token: String,
    /// Seconds of inactivity before the session ends (it slides on every authenticated request).
    pub expires_in: u32,
    /// `user` or `admin`: what the account may do (a hint for a user interface, e.g. whether to
    /// load an admin view; every admin route checks the session's role itself).
    pub role: String,
}

/// `GET /v1/me/balance`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BalanceResponse {
    pub balance_cents: i64,
}

/// `POST /v1/activations`: buy a number for a service in a country from a provider, at most at
/// the price the buyer was shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(example = json!({"provider": "5sim", "country": "ad", "service": "whatsapp", "expected_price_cents": 370}))
)]
#[serde(deny_unknown_fields)]
pub struct PurchaseRequest {
    #[cfg_attr(feature = "openapi", schema(example = "5sim"))]
    pub provider: crate::Slug,
    #[cfg_attr(feature = "openapi", schema(example = "ad"))]
    pub country: crate::Slug,
    #[cfg_attr(feature = "openapi", schema(example = "whatsapp"))]
    pub service: crate::Slug,
    /// The price the buyer saw, in cents. When the price is higher now, nothing is charged and
    /// the answer is 409 `price_changed` with the current price. Absent: the current price,
    /// whatever it is (older clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100_000))]
    pub expected_price_cents: Option<i64>,
}

impl PurchaseRequest {
    pub fn product(&self) -> crate::Product {
        crate::Product {
            provider: self.provider.clone(),
            country: self.country.clone(),
            service: self.service.clone(),
        }
    }
}

/// One purchased number (an activation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Activation {
    pub id: i64,
    pub provider: String,
    pub country: String,
    pub service: String,
    pub phone_number: String,
    pub price_cents: i64,
    /// `pending`, `received`, `completed`, `cancelled` or `expired`.
    pub status: String,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// `GET /v1/activations`: newest first; pass `next_cursor` back as `cursor` for the next page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActivationPage {
    pub items: Vec<Activation>,
    pub next_cursor: Option<String>,
}

/// `PUT /v1/admin/prices/{provider}/{country}/{service}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetPriceRequest {
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100_000))]
    #[serde(deserialize_with = "whole")]
    pub price_cents: i64,
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 10_000_000))]
    #[serde(deserialize_with = "whole")]
    pub stock: i64,
}

/// One row of `PUT /v1/admin/prices`: a product's price and stock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(example = json!({"provider": "5sim", "country": "ad", "service": "whatsapp", "price_cents": 370, "stock": 25}))
)]
#[serde(deny_unknown_fields)]
pub struct PriceUpdateRow {
    pub provider: crate::Slug,
    pub country: crate::Slug,
    pub service: crate::Slug,
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100_000))]
    #[serde(deserialize_with = "whole")]
    pub price_cents: i64,
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 10_000_000))]
    #[serde(deserialize_with = "whole")]
    pub stock: i64,
}

/// Most rows in one `PUT /v1/admin/prices`.
pub const MAX_BULK_ROWS: usize = 10_000;

/// `PUT /v1/admin/prices`: many products' prices and stock at once, applied whole or not at all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PriceUpdateRequest {
    /// 1–10 000 rows, each product at most once.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 10_000))]
    pub prices: Vec<PriceUpdateRow>,
}

/// What `PUT /v1/admin/prices` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PriceUpdateResponse {
    /// Rows written: new products and changed prices or stock.
    pub changed: u64,
    /// Rows already so: not written.
    pub unchanged: u64,
    /// Cache keys invalidated (exactly the changed products', and the lists of a provider that
    /// sells something new).
    pub keys_invalidated: u64,
}

/// `POST /v1/admin/users/{id}/credit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreditRequest {
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1_000_000))]
    #[serde(deserialize_with = "whole")]
    pub amount_cents: i64,
}

/// An integer field of a request. JSON has one number type, and JSON Schema counts `5881.0` as
/// the integer 5881, so it is accepted as exactly that; a fraction (`0.5`), or a float too large
/// to be exact (beyond 2^53), is refused. Nothing is ever stored or computed as a float.
fn whole<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    struct Whole;
    impl serde::de::Visitor<'_> for Whole {
        type Value = i64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an integer")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom("integer out of range"))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<i64, E> {
            const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
            if v.fract() == 0.0 && v.abs() <= EXACT {
                Ok(v as i64)
            } else {
                Err(E::custom("expected an integer, found a fraction"))
            }
        }
    }
    d.deserialize_any(Whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_fields_take_whole_numbers_in_either_spelling_and_nothing_else() {
        let credit =
            |json: &str| serde_json::from_str::<CreditRequest>(json).map(|c| c.amount_cents);
        assert_eq!(credit(r#"{"amount_cents": 5881}"#).ok(), Some(5881));
        assert_eq!(credit(r#"{"amount_cents": 5881.0}"#).ok(), Some(5881));
        assert_eq!(credit(r#"{"amount_cents": -3e2}"#).ok(), Some(-300));
        for bad in [
            r#"{"amount_cents": 0.5}"#,
            r#"{"amount_cents": 1e300}"#,
            r#"{"amount_cents": "5"}"#,
            r#"{"amount_cents": 18446744073709551615}"#,
            r#"{"amount_cents": null}"#,
        ] {
            assert!(credit(bad).is_err(), "{bad}");
        }
    }
}
