//! Catalog handlers: extract and validate, call [`crate::catalog::Catalog`], answer with the
//! policy headers.

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use shared::route::parse_services_param;
use shared::{DataType, Product, Slug};

use super::error::ApiError;
use super::extract::{IfNoneMatch, ValidPath, ValidQuery};
use super::respond::cacheable;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct ProviderPath {
    provider: Slug,
}

#[derive(Deserialize)]
pub struct CountryPath {
    provider: Slug,
    country: Slug,
}

#[derive(Deserialize)]
pub struct BulkQuery {
    services: Option<String>,
}

pub async fn providers(
    State(state): State<AppState>,
    inm: IfNoneMatch,
) -> Result<Response, ApiError> {
    let body = state.catalog.providers().await?;
    Ok(cacheable(
        &state.headers,
        DataType::Providers,
        inm.0.as_ref(),
        body,
    ))
}

pub async fn countries(
    State(state): State<AppState>,
    ValidPath(path): ValidPath<ProviderPath>,
    inm: IfNoneMatch,
) -> Result<Response, ApiError> {
    let body = state.catalog.countries(path.provider).await?;
    Ok(cacheable(
        &state.headers,
        DataType::Countries,
        inm.0.as_ref(),
        body,
    ))
}

pub async fn services(
    State(state): State<AppState>,
    ValidPath(path): ValidPath<ProviderPath>,
    inm: IfNoneMatch,
) -> Result<Response, ApiError> {
    let body = state.catalog.services(path.provider).await?;
    Ok(cacheable(
        &state.headers,
        DataType::Services,
        inm.0.as_ref(),
        body,
    ))
}

pub async fn price(
    State(state): State<AppState>,
    ValidPath(product): ValidPath<Product>,
    inm: IfNoneMatch,
) -> Result<Response, ApiError> {
    let body = state.catalog.price(product).await?;
    Ok(cacheable(
        &state.headers,
        DataType::Prices,
        inm.0.as_ref(),
        body,
    ))
}

pub async fn bulk_prices(
    State(state): State<AppState>,
    ValidPath(path): ValidPath<CountryPath>,
    ValidQuery(query): ValidQuery<BulkQuery>,
    inm: IfNoneMatch,
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
        DataType::Prices,
        inm.0.as_ref(),
        body,
    ))
}
