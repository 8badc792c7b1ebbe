//! Catalog handlers: extract and validate, call [`crate::catalog::Catalog`], answer with the
//! policy headers.

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use shared::route::parse_services_param;
use shared::types::ErrorBody;
use shared::{DataType, Product, Slug};

use shared::types::{
    BulkPricesResponse, CountriesResponse, Price, ProvidersResponse, ServicesResponse,
};
use utoipa::IntoParams;

use super::error::ApiError;
use super::extract::{Negotiation, ValidPath, ValidQuery};
use super::respond::cacheable;
use crate::state::AppState;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ProviderPath {
    /// Provider code.
    #[param(example = "5sim")]
    provider: Slug,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CountryPath {
    /// Provider code.
    #[param(example = "5sim")]
    provider: Slug,
    /// Country code (ISO 3166-1 alpha-2, lower case).
    #[param(example = "ad")]
    country: Slug,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BulkQuery {
    /// Comma-separated service codes, at most 200 (duplicates ignored; answered sorted).
    /// Absent: every service the provider sells in the country.
    #[param(
        example = "whatsapp,telegram",
        pattern = "^[a-z0-9][a-z0-9_-]{0,31}(,[a-z0-9][a-z0-9_-]{0,31}){0,199}$"
    )]
    services: Option<String>,
}

/// The request headers every catalog route honours.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // only its description is used
pub struct Conditional {
    /// The `ETag` of a copy the client holds: `304 Not Modified` when it is still current.
    #[param(rename = "If-None-Match")]
    if_none_match: Option<String>,
    /// `br` or `gzip`: bodies of 1 KiB or more come compressed (each coding has its own `ETag`).
    #[param(rename = "Accept-Encoding")]
    accept_encoding: Option<String>,
}

/// Every provider.
#[utoipa::path(
    get,
    path = "/v1/catalog/providers",
    tag = "catalog",
    params(Conditional),
    responses(
        (status = 200, description = "The current answer; cacheable per the policy table.", body = ProvidersResponse,
            headers(
                ("ETag" = String, description = "Strong validator of this representation (xxh3 of the JSON; `-br`/`-gzip` appended for a compressed one)."),
                ("Vary" = String, description = "`Accept-Encoding`."),
                ("Content-Encoding" = String, description = "`br` or `gzip` when the body is compressed."),
                ("Cache-Control" = String, description = "The policy table's directives for this data type."),
            )),
        (status = 304, description = "The `If-None-Match` copy is current (no body)."),

    ),
)]
pub async fn providers(
    State(state): State<AppState>,
    request: Negotiation,
) -> Result<Response, ApiError> {
    let body = state.catalog.providers().await?;
    Ok(cacheable(
        &state.headers,
        &state.compressed,
        DataType::Providers,
        &request,
        body,
    ))
}

/// The countries where a provider has at least one price.
#[utoipa::path(
    get,
    path = "/v1/catalog/{provider}/countries",
    tag = "catalog",
    params(ProviderPath, Conditional),
    responses(
        (status = 200, description = "The current answer; cacheable per the policy table.", body = CountriesResponse,
            headers(
                ("ETag" = String, description = "Strong validator of this representation (xxh3 of the JSON; `-br`/`-gzip` appended for a compressed one)."),
                ("Vary" = String, description = "`Accept-Encoding`."),
                ("Content-Encoding" = String, description = "`br` or `gzip` when the body is compressed."),
                ("Cache-Control" = String, description = "The policy table's directives for this data type."),
            )),
        (status = 304, description = "The `If-None-Match` copy is current (no body)."),
        (status = 400, description = "A malformed code (`bad_request`).", body = ErrorBody),
        (status = 404, description = "Unknown provider (`not_found`).", body = ErrorBody),
    ),
)]
pub async fn countries(
    State(state): State<AppState>,
    ValidPath(path): ValidPath<ProviderPath>,
    request: Negotiation,
) -> Result<Response, ApiError> {
    let body = state.catalog.countries(path.provider).await?;
    Ok(cacheable(
        &state.headers,
        &state.compressed,
        DataType::Countries,
        &request,
        body,
    ))
}

/// The services a provider prices in at least one country.
#[utoipa::path(
    get,
    path = "/v1/catalog/{provider}/services",
    tag = "catalog",
    params(ProviderPath, Conditional),
    responses(
        (status = 200, description = "The current answer; cacheable per the policy table.", body = ServicesResponse,
            headers(
                ("ETag" = String, description = "Strong validator of this representation (xxh3 of the JSON; `-br`/`-gzip` appended for a compressed one)."),
                ("Vary" = String, description = "`Accept-Encoding`."),
                ("Content-Encoding" = String, description = "`br` or `gzip` when the body is compressed."),
                ("Cache-Control" = String, description = "The policy table's directives for this data type."),
            )),
        (status = 304, description = "The `If-None-Match` copy is current (no body)."),
        (status = 400, description = "A malformed code (`bad_request`).", body = ErrorBody),
        (status = 404, description = "Unknown provider (`not_found`).", body = ErrorBody),
    ),
)]
pub async fn services(
    State(state): State<AppState>,
    ValidPath(path): ValidPath<ProviderPath>,
    request: Negotiation,
) -> Result<Response, ApiError> {
    let body = state.catalog.services(path.provider).await?;
    Ok(cacheable(
        &state.headers,
        &state.compressed,
        DataType::Services,
        &request,
        body,
    ))
}

/// One product's price and stock.
#[utoipa::path(
    get,
    path = "/v1/catalog/{provider}/prices/{country}/{service}",
    tag = "catalog",
    params(Product, Conditional),
    responses(
        (status = 200, description = "The current answer; cacheable per the policy table.", body = Price,
            headers(
                ("ETag" = String, description = "Strong validator of this representation (xxh3 of the JSON; `-br`/`-gzip` appended for a compressed one)."),
                ("Vary" = String, description = "`Accept-Encoding`."),
                ("Content-Encoding" = String, description = "`br` or `gzip` when the body is compressed."),
                ("Cache-Control" = String, description = "The policy table's directives for this data type."),
            )),
        (status = 304, description = "The `If-None-Match` copy is current (no body)."),
        (status = 400, description = "A malformed code (`bad_request`).", body = ErrorBody),
        (status = 404, description = "Not sold (`not_found`).", body = ErrorBody),
    ),
)]
pub async fn price(
    State(state): State<AppState>,
    ValidPath(product): ValidPath<Product>,
    request: Negotiation,
) -> Result<Response, ApiError> {
    let body = state.catalog.price(product).await?;
    Ok(cacheable(
        &state.headers,
        &state.compressed,
        DataType::Prices,
        &request,
        body,
    ))
}

/// Many prices of one provider in one country, in one request.
#[utoipa::path(
    get,
    path = "/v1/catalog/{provider}/prices/{country}",
    tag = "catalog",
    params(CountryPath, BulkQuery, Conditional),
    responses(
        (status = 200, description = "The current answer; cacheable per the policy table.", body = BulkPricesResponse<Price>,
            headers(
                ("ETag" = String, description = "Strong validator of this representation (xxh3 of the JSON; `-br`/`-gzip` appended for a compressed one)."),
                ("Vary" = String, description = "`Accept-Encoding`."),
                ("Content-Encoding" = String, description = "`br` or `gzip` when the body is compressed."),
                ("Cache-Control" = String, description = "The policy table's directives for this data type."),
            )),
        (status = 304, description = "The `If-None-Match` copy is current (no body)."),
        (status = 400, description = "A malformed code or list (`bad_request`).", body = ErrorBody),
        (status = 404, description = "Unknown provider or country (`not_found`).", body = ErrorBody),
    ),
)]
pub async fn bulk_prices(
    State(state): State<AppState>,
    ValidPath(path): ValidPath<CountryPath>,
    ValidQuery(query): ValidQuery<BulkQuery>,
    request: Negotiation,
) -> Result<Response, ApiError> {
    let services = query
        .services
        .as_deref()
        .map(parse_services_param)
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let body = state
        .catalog
        .bulk_prices(path.provider, path.country, services)
        .await?;
    Ok(cacheable(
        &state.headers,
        &state.compressed,
        DataType::Prices,
        &request,
        body,
    ))
}
