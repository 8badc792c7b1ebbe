//! The NexNum edge worker (Cloudflare Workers, wasm32). Placeholder until the edge issue lands:
//! it only proves that `shared` links into a wasm `cdylib`.

/// The `Cache-Control` the edge will apply to a catalog path, from `shared`'s policy table.
pub fn cache_control_for(path: &str, query: Option<&str>) -> Option<String> {
    shared::route::CatalogRoute::parse(path, query)
        .ok()
        .flatten()
        .map(|r| r.data_type().policy().cache_control())
}
