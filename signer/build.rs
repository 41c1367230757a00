//! Writes the man pages and shell completions of `ota-sign` from its command line
//! (`src/cli.rs`) into OUT_DIR (build-support/cli_docs.rs; `scripts/cli-docs.sh` copies them
//! out for packaging).

#[path = "src/cli.rs"]
#[allow(dead_code)]
mod cli;
#[path = "../build-support/cli_docs.rs"]
mod cli_docs;

/// Stand-ins for the ota-core items `src/cli.rs` names: the pages need only their help texts.
mod cli_types {
    pub use crate::cli_docs::stand_ins::ProgressMode;
    /// The same as `ota_core::bundle::DEFAULT_ZSTD_LEVEL` (tests/cli_docs.rs checks the page
    /// shows that one).
    pub const DEFAULT_ZSTD_LEVEL: i32 = 19;
    pub type Version = String;
    #[derive(Clone, Debug)]
    pub struct Algorithm;
    pub fn parse_algorithm(_: &str) -> Result<Algorithm, String> {
        Ok(Algorithm)
    }
}

fn main() {
    use clap::CommandFactory;
    cli_docs::build_script(cli::Cli::command(), "ota-sign");
}
