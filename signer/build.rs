//! Writes the man pages and shell completions of `ota-sign` from its command line
//! (`src/cli.rs`) into OUT_DIR (build-support/cli_docs.rs; `scripts/cli-docs.sh` copies them
//! out for packaging).

use std::path::PathBuf;

#[path = "src/cli.rs"]
#[allow(dead_code)]
mod cli;
#[path = "../build-support/cli_docs.rs"]
mod cli_docs;

/// Stand-ins for the ota-core items `src/cli.rs` names: the pages need only their help texts.
mod cli_types {
    /// The same as `ota_core::bundle::DEFAULT_ZSTD_LEVEL` (tests/cli_docs.rs checks the page
    /// shows that one).
    pub const DEFAULT_ZSTD_LEVEL: i32 = 19;
    pub type Version = String;
    #[derive(Clone, Debug)]
    pub struct Algorithm;
    pub fn parse_algorithm(_: &str) -> Result<Algorithm, String> {
        Ok(Algorithm)
    }
    #[derive(Clone, Debug)]
    pub struct ProgressMode;
    impl ProgressMode {
        pub fn parse(_: &str) -> Result<Self, String> {
            Ok(ProgressMode)
        }
    }
}

fn main() {
    use clap::CommandFactory;
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    if let Err(e) = cli_docs::write(cli::Cli::command(), "ota-sign", &out_dir) {
        panic!(
            "cannot write the man pages and completions to {}: {e}",
            out_dir.display()
        );
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/cli.rs");
    println!("cargo:rerun-if-changed=../build-support/cli_docs.rs");
}
