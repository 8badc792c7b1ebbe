//! The policy table from `shared`, rendered once as header values for this configuration
//! (`CACHE_TTL_DIVISOR` scales it in tests), so a response never formats one.

use axum::http::HeaderValue;
use shared::DataType;

/// Precomputed `Cache-Control` values, one per data type.
#[derive(Clone, Debug)]
pub struct HeaderPolicies {
    values: Vec<(DataType, HeaderValue)>,
}

impl HeaderPolicies {
    pub fn new(ttl_divisor: u32) -> Self {
        let values = DataType::ALL
            .iter()
            .map(|&t| {
                let v = t.policy().scaled_down(ttl_divisor).cache_control();
                (
                    t,
                    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("no-store")),
                )
            })
            .collect();
        HeaderPolicies { values }
    }

    pub fn cache_control(&self, data: DataType) -> HeaderValue {
        self.values
            .iter()
            .find(|(t, _)| *t == data)
            .map(|(_, v)| v.clone())
            .unwrap_or(HeaderValue::from_static("no-store"))
    }
}
