//! `ota-sign`: the vendor's tool. Makes keys, builds signed bundles, verifies and inspects them.
//!
//! This binary parses arguments, opens files, shows progress and maps errors to exit codes;
//! the bundle format itself lives in `ota-core`.

mod cli;
mod commands;
mod exit;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the chain of causes joined by ": ".
            eprintln!("ota-sign: error: {err:#}");
            ExitCode::from(exit::code_for(&err))
        }
    }
}
