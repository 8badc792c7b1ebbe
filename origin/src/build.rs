//! What this binary is: its version and the commit it was built from (`build.rs`).

/// The crate version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit it was built from (12 hex digits), or `unknown` outside a git checkout without
/// `NEXNUM_COMMIT`.
pub const COMMIT: &str = env!("NEXNUM_COMMIT");

/// Sentry's release name: `origin@<version>+<commit>`, one per build, so an error is tied to the
/// exact code that raised it (a constant `origin@0.1.0` lumps every release together).
pub fn release() -> String {
    format!("origin@{VERSION}+{COMMIT}")
}
