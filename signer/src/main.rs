//! `ota-sign`: the vendor's tool. Makes keys, builds signed bundles, verifies and inspects them.
//!
//! This binary parses arguments, opens files, shows progress and maps errors to exit codes;
//! the bundle format itself lives in `ota-core`.

mod cli;
mod commands;

/// The types and parsers the command line needs from ota-core (build.rs has stand-ins).
mod cli_types {
    pub use ota_core::bundle::DEFAULT_ZSTD_LEVEL;
    pub use ota_core::keys::Algorithm;
    pub use ota_core::progress::ProgressMode;
    pub use semver::Version;

    /// `--algorithm`: ed25519 or ecdsa-p256.
    pub fn parse_algorithm(text: &str) -> Result<Algorithm, String> {
        Algorithm::parse(text).ok_or_else(|| format!("{text:?}: use ed25519 or ecdsa-p256"))
    }
}
mod exit;
mod keys;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    ota_core::exit::end_quietly_on_broken_pipe();
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = exit::code_for(&err);
            if err.chain().any(|c| c.is::<exit::ReportedFailure>()) {
                eprintln!("ota-sign: error: {}", one_line(&err));
            } else {
                ota_core::exit::report_error("ota-sign", code, &one_line(&err));
            }
            ExitCode::from(code)
        }
    }
}

/// The chain of causes joined by ": ", each said once (an error whose message already
/// includes its source's is not followed by that source again).
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
