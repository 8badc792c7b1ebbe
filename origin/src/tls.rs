//! TLS facts shared by the PostgreSQL and Redis clients (both rustls): the one crypto provider,
//! and how to tell a refused handshake from a network failure.

/// Installs aws-lc-rs as the process's rustls provider (the only one compiled in), so that no
/// library has to pick one, and redis-rs's `#insecure` mode (which asks for the process default)
/// works. Idempotent.
pub fn install_crypto_provider() {
    // Err means one is installed already: the same one, by an earlier call.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A handshake that failed on what the peer sent (a certificate refused, a server that speaks no
/// TLS), as opposed to a network failure: waiting will not mend it.
pub fn is_handshake_failure(io: &std::io::Error) -> bool {
    io.kind() == std::io::ErrorKind::InvalidData
        || io
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
}
