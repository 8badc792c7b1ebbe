//! Operator actions. `POST /v1/ops/cache/invalidate` (admin, Ops tier) drops the cached catalog
//! of one provider, or every key of one data type, by the guide's key patterns — with SCAN,
//! never KEYS, so Redis keeps serving while it runs.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use shared::types::ErrorBody;
use shared::{DataType, Slug, keys};
use utoipa::ToSchema;

use super::auth::AdminUser;
use super::error::ApiError;
use super::extract::ValidJson;
use super::openapi::InvalidateResponse;
use crate::state::AppState;

/// What to drop: every cached key of one provider (its countries, services and prices), or every
/// key of one data type. Exactly one of the two; anything else is a 400.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum InvalidateRequest {
    Provider(ByProvider),
    Type(ByType),
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ByProvider {
    provider: Slug,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ByType {
    #[serde(rename = "type")]
    data_type: CachedType,
}

/// The cached data types an operator may drop wholesale (sessions are never dropped this way).
#[derive(Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CachedType {
    Providers,
    Countries,
    Services,
    Prices,
    Balance,
}

/// Key patterns (as `shared::keys` spells them) for one request.
fn patterns(req: &InvalidateRequest) -> Vec<String> {
    match req {
        InvalidateRequest::Provider(ByProvider { provider: p }) => vec![
            keys::countries(p),
            keys::services(p),
            keys::prices_of_provider_pattern(p),
        ],
        InvalidateRequest::Type(ByType { data_type }) => {
            let data = match data_type {
                CachedType::Providers => DataType::Providers,
                CachedType::Countries => DataType::Countries,
                CachedType::Services => DataType::Services,
                CachedType::Prices => DataType::Prices,
                CachedType::Balance => DataType::Balance,
            };
            keys::pattern_of(data).into_iter().collect()
        }
    }
}

/// Drops cached catalog keys by the guide's patterns (admin, Ops tier), with SCAN and UNLINK.
#[utoipa::path(post, path = "/v1/ops/cache/invalidate", tag = "admin",
    security(("bearer" = []), ("session_cookie" = [])), request_body = InvalidateRequest,
    responses(
        (status = 200, description = "How many keys were dropped.", body = InvalidateResponse),
        (status = 400, description = "Neither or both fields, or an unknown type (`bad_request`).", body = ErrorBody),
        (status = 401, description = "No valid session (`unauthorized`).", body = ErrorBody),
        (status = 403, description = "Not an admin (`forbidden`).", body = ErrorBody),
    ))]
pub async fn invalidate(
    State(state): State<AppState>,
    _admin: AdminUser,
    ValidJson(req): ValidJson<InvalidateRequest>,
) -> Result<Response, ApiError> {
    let patterns = patterns(&req);
    let deleted = state.cache.delete_matching(&patterns).await?;
    let mut tags: Vec<String> = patterns
        .iter()
        .filter_map(|p| shared::tags::for_pattern(p))
        .collect();
    tags.dedup();
    // An operator's drop: gone downstream too.
    state.purger.tags(tags, crate::purge::Kind::Hard);
    Ok(Json(InvalidateResponse { deleted }).into_response())
}
