//! Operator actions. `POST /v1/ops/cache/invalidate` (admin, Ops tier) drops the cached catalog
//! of one provider, or every key of one data type, by the guide's key patterns — with SCAN,
//! never KEYS, so Redis keeps serving while it runs.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use shared::{DataType, Slug, keys};

use super::auth::AdminUser;
use super::error::ApiError;
use super::extract::ValidJson;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvalidateRequest {
    provider: Option<Slug>,
    #[serde(rename = "type")]
    data_type: Option<String>,
}

/// Key patterns (as `shared::keys` spells them) for one request.
fn patterns(req: &InvalidateRequest) -> Result<Vec<String>, ApiError> {
    match (&req.provider, req.data_type.as_deref()) {
        (Some(p), None) => Ok(vec![
            keys::countries(p),
            keys::services(p),
            keys::prices_of_provider_pattern(p),
        ]),
        (None, Some(name)) => DataType::ALL
            .iter()
            .filter(|d| d.as_str() == name)
            .find_map(|&d| keys::pattern_of(d))
            .map(|pattern| vec![pattern])
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "type '{name}' must be one of providers, countries, services, prices, balance"
                ))
            }),
        _ => Err(ApiError::BadRequest(
            "give exactly one of provider or type".into(),
        )),
    }
}

pub async fn invalidate(
    State(state): State<AppState>,
    _admin: AdminUser,
    ValidJson(req): ValidJson<InvalidateRequest>,
) -> Result<Response, ApiError> {
    let patterns = patterns(&req)?;
    let deleted = state.cache.delete_matching(&patterns).await?;
    Ok(Json(json!({"deleted": deleted})).into_response())
}
