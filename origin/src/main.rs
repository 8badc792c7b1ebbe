//! `origin`: see `origin --help`. All behaviour lives in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    origin::cli::main()
}
