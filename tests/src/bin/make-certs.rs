//! `make-certs DIR`: writes the suites' certificate set (see `harness::tls`) into DIR, keeping a
//! complete set that is already there. `make test` runs it before starting its TLS servers.

fn main() -> std::process::ExitCode {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: make-certs DIR");
        return std::process::ExitCode::from(2);
    };
    match harness::tls::write_set(std::path::Path::new(&dir)) {
        Ok(true) => eprintln!("wrote a new certificate set to {}", dir.to_string_lossy()),
        Ok(false) => {}
        Err(e) => {
            eprintln!("error: cannot write certificates to {}: {e}", dir.to_string_lossy());
            return std::process::ExitCode::FAILURE;
        }
    }
    std::process::ExitCode::SUCCESS
}
