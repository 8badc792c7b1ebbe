//! `origin`: see `origin --help`. All behaviour lives in the library.

use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: argon2 allocates 19 MiB per password hash, and glibc's
/// arenas keep such blocks after a few sign-ins (an origin grew to ~170 MiB resident after 32
/// logins); mimalloc gives them back. It is also quicker on the many small allocations of the
/// request path. Built without transparent huge pages (see the workspace `Cargo.toml`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    origin::cli::main()
}
