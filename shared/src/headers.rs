//! Header names the edge, the origin and clients exchange, spelled once (lower case, as HTTP/2
//! and the `http` crate want them; HTTP/1 and the Workers runtime compare them case-insensitively).

/// Edge → origin: the secret that makes the origin believe [`CLIENT_IP`].
pub const EDGE_SECRET: &str = "x-edge-secret";
/// Edge → origin: the client address the edge saw (`CF-Connecting-IP`).
pub const CLIENT_IP: &str = "x-client-ip";
/// Both ways: the request id (accepted from the client only when well formed).
pub const REQUEST_ID: &str = "x-request-id";
/// Edge → client: what the edge cache did (`HIT`, `MISS`, `STALE`, `BYPASS`).
pub const X_CACHE: &str = "x-cache";
/// Client → origin: makes a purchase safe to retry.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Origin → client: this answer is the replay of an earlier request with the same key.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
/// Origin → client (draft-ietf-httpapi-ratelimit-headers): the quota policy.
pub const RATELIMIT_POLICY: &str = "ratelimit-policy";
/// Origin → client: the remaining quota and the seconds until it resets.
pub const RATELIMIT: &str = "ratelimit";
/// Trusted server-side client → edge: the key that earns a client its own, larger budget (a
/// `wrangler secret`); never forwarded to the origin, never logged.
pub const EDGE_CLIENT_KEY: &str = "x-edge-client-key";
/// Trusted server-side client → edge: the address of the end user it asks for, which the edge
/// forwards as [`CLIENT_IP`] (ignored from anyone without a valid [`EDGE_CLIENT_KEY`]).
pub const END_USER_IP: &str = "x-end-user-ip";
/// W3C Trace Context, passed from the client through the edge to the origin when well formed.
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// Largest request body the origin reads (every body here is a few fields); the edge refuses a
/// larger one before contacting the origin.
pub const MAX_REQUEST_BODY_BYTES: usize = 16 * 1024;

/// The one route with larger bodies: `PUT` of many prices at once (an operator's tool).
pub const BULK_BODY_PATH: &str = "/v1/admin/prices";
/// Its body limit (10 000 rows of about 90 bytes).
pub const MAX_BULK_BODY_BYTES: usize = 1024 * 1024;

/// The body limit of a request: [`MAX_BULK_BODY_BYTES`] for `PUT` [`BULK_BODY_PATH`], else
/// [`MAX_REQUEST_BODY_BYTES`].
pub fn max_body_bytes(method: &str, path: &str) -> usize {
    if method.eq_ignore_ascii_case("PUT") && path == BULK_BODY_PATH {
        MAX_BULK_BODY_BYTES
    } else {
        MAX_REQUEST_BODY_BYTES
    }
}
