//! JSON wire types of the public catalog. Money is always integer minor units (`*_cents`, US
//! cents); there is no float anywhere on the wire.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provider {
    pub code: String,
    pub name: String,
}

/// `GET /v1/catalog/providers`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvidersResponse {
    pub providers: Vec<Provider>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Country {
    /// ISO 3166-1 alpha-2, lower case.
    pub code: String,
    pub name: String,
}

/// `GET /v1/catalog/{provider}/countries`: the countries where the provider has at least one price.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountriesResponse {
    pub provider: String,
    pub countries: Vec<Country>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub code: String,
    pub name: String,
}

/// `GET /v1/catalog/{provider}/services`: the services the provider prices in at least one country.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicesResponse {
    pub provider: String,
    pub services: Vec<Service>,
}

/// `GET /v1/catalog/{provider}/prices/{country}/{service}`, and one element of the bulk answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    pub provider: String,
    pub country: String,
    pub service: String,
    /// Price of one number, in US cents.
    pub price_cents: i64,
    /// Numbers in stock at the time of reading (cached up to the price TTL).
    pub stock: i64,
}

/// `GET /v1/catalog/{provider}/prices/{country}?services=a,b,c`. Generic over the element so the
/// origin can assemble it from the cached JSON of each price without decoding them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkPricesResponse<P = Price> {
    pub provider: String,
    pub country: String,
    /// Sorted by service code.
    pub prices: Vec<P>,
    /// Asked-for services the provider does not sell in this country.
    pub unavailable: Vec<String>,
}

/// Every 4xx/5xx body: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable machine-readable code (`bad_request`, `not_found`, `rate_limited`, …).
    pub code: String,
    /// Human-readable explanation; never contains internals.
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
            },
        }
    }
}

/// `POST /v1/auth/register` and `POST /v1/auth/login`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

/// `201` of `POST /v1/auth/register`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserResponse {
    pub id: i64,
    pub email: String,
}

/// `200` of `POST /v1/auth/login`; the same token is also set as the `session` cookie.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginResponse {
    pub token: String,
    /// Seconds of inactivity before the session ends (it slides on every authenticated request).
    pub expires_in: u32,
}

/// `GET /v1/me/balance`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceResponse {
    pub balance_cents: i64,
}

/// `POST /v1/activations`: buy a number for a service in a country from a provider.
pub type PurchaseRequest = crate::product::Product;

/// One purchased number (an activation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
pub struct ActivationPage {
    pub items: Vec<Activation>,
    pub next_cursor: Option<String>,
}

/// `PUT /v1/admin/prices/{provider}/{country}/{service}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPriceRequest {
    pub price_cents: i64,
    pub stock: i64,
}

/// `POST /v1/admin/users/{id}/credit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditRequest {
    pub amount_cents: i64,
}
