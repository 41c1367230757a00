//! Writes the man pages and shell completions of `ota-server` from its command line
//! (`src/cli.rs`) into OUT_DIR (build-support/cli_docs.rs; `scripts/cli-docs.sh` copies them
//! out for packaging).

use std::path::PathBuf;

#[path = "src/cli.rs"]
#[allow(dead_code)]
mod cli;
#[path = "../build-support/cli_docs.rs"]
mod cli_docs;

fn main() {
    use clap::CommandFactory;
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    if let Err(e) = cli_docs::write(cli::Cli::command(), "ota-server", &out_dir) {
        panic!(
            "cannot write the man pages and completions to {}: {e}",
            out_dir.display()
        );
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/cli.rs");
    println!("cargo:rerun-if-changed=../build-support/cli_docs.rs");
}
