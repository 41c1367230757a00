//! Records the build time as the updater's lowest believable "now" (see `src/clock.rs`):
//! `SOURCE_DATE_EPOCH` when set (reproducible builds), the current time otherwise. Writes the
//! man pages and shell completions of `ota-update` from its command line (`src/cli.rs`) into
//! OUT_DIR (build-support/cli_docs.rs).

use std::time::{SystemTime, UNIX_EPOCH};

#[path = "src/cli.rs"]
#[allow(dead_code)]
mod cli;
#[path = "../build-support/cli_docs.rs"]
mod cli_docs;

/// Stand-ins for the library types `src/cli.rs` names: the pages need only their help texts.
mod cli_types {
    pub use crate::cli_docs::stand_ins::ProgressMode;
    /// The same as `ota_updater::config::DEFAULT_CONFIG_PATH` (tests/cli_docs.rs checks the
    /// page shows that one).
    pub const DEFAULT_CONFIG_PATH: &str = "/etc/ota/updater.toml";
    pub type Version = String;
}

fn main() {
    use clap::CommandFactory;
    cli_docs::build_script(cli::Cli::command(), "ota-update");

    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    println!("cargo:rustc-env=OTA_BUILD_EPOCH={epoch}");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
}
