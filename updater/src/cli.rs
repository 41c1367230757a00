//! The command line of `ota-update` (clap): compiled into the program, and into its build
//! script (build.rs), which writes the man pages and shell completions from it. It uses only
//! clap, std and the few types of [`crate::cli_types`], which the build script stands in for.

use crate::cli_types::{ProgressMode, Version, DEFAULT_CONFIG_PATH};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Installs signed updates into the inactive A/B slot, commits them after a healthy trial
/// boot, and falls back automatically when they fail.
///
/// Exit codes: 0 ok, 1 failure, 2 usage or configuration, 3 I/O, 4 bad signature, 5 corrupt
/// bundle, 6 unsupported format, 7 incompatible bundle, 8 downgrade refused, 9 another
/// instance running, 10 refused in the current state, 11 health check failed, 12 download
/// failed.
#[derive(Parser, Debug)]
#[command(name = "ota-update", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, global = true, default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Install a bundle into the inactive slot: without SOURCE, the newest release for this
    /// device from the repository (TUF-verified); else a file path, an http(s):// URL, or -
    /// for standard input (bundle signatures only).
    Install {
        /// The bundle; omit it to install from the configured repository.
        source: Option<PathBuf>,
        /// Install even if the version is not newer than the booted one.
        #[arg(long)]
        allow_downgrade: bool,
        /// Reboot into the new slot when the install succeeded.
        #[arg(long)]
        reboot: bool,
        /// Print progress as JSON lines instead of a progress bar.
        #[arg(long)]
        json: bool,
        /// Progress on standard error (without --json): auto (a bar on a terminal, lines when
        /// $CI is set, else nothing), plain (a line per 10 %), json (a JSON line per 10 %), none.
        #[arg(long, default_value = "auto", value_parser = ProgressMode::parse)]
        progress: ProgressMode,
    },
    /// Refresh the repository's TUF metadata and say which release this device would install.
    Check {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Poll the repository: check, install, reboot; jitter between rounds, back-off on errors.
    Daemon {
        /// Stop after this many rounds (tests); default: run until stopped.
        #[arg(long, hide = true)]
        rounds: Option<u64>,
        /// Log each round's outcome as a JSON line on standard output
        /// ({"time", "event", "message", ...}) instead of text on standard error.
        #[arg(long)]
        json: bool,
    },
    /// A generic TUF client for debugging any repository (exit 0 on success, 1 on failure).
    Tuf(TufArgs),
    /// Show the booted slot, each slot's version and health, what boots next, the last result.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run at every boot: commit a healthy trial slot, fall back from an unhealthy one, record
    /// rollbacks.
    Boot {
        /// Do not reboot after a failed health check (tests).
        #[arg(long)]
        no_reboot: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Mark the booted slot good by hand.
    Commit {
        /// Print {"committed": SLOT} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make the other slot boot next, if it holds a verified good image. A newer release left
    /// is held: it is not installed again until `release-hold`.
    Rollback {
        /// Reboot into it now.
        #[arg(long)]
        reboot: bool,
        /// Print {"next_boot": SLOT, "reboot": BOOL} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Hold updates: the daemon and `install` without a SOURCE install nothing until the hold
    /// ends (`--until`) or is released. An explicit `install SOURCE` still works.
    Hold {
        /// When the hold ends: an RFC 3339 time (2027-01-31T00:00:00Z) or a duration from now
        /// (12h, 7d); default: until `release-hold`.
        #[arg(long)]
        until: Option<String>,
        /// Why (shown by status and check).
        #[arg(long, default_value = "held by the administrator")]
        reason: String,
        /// Print {"held": true, "until": TIME or null, "reason"} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lift holds: every hold, or only the one on --version (set by a rollback or downgrade).
    ReleaseHold {
        /// Lift only the hold on this release.
        #[arg(long)]
        version: Option<Version>,
        /// Print {"lifted": [...]} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Simulate the bootloader at power-on (file backend, tests and the demo).
    #[command(hide = true)]
    SimulateBoot,
    /// Provision the bootloader environment (fresh board): write the boot variables the boot
    /// scripts read, in the factory state (first slot good); U-Boot: every copy, GRUB: creates
    /// the grubenv. Refused (exit 10) if the environment already holds OTA_ORDER.
    InitBootloader {
        /// Overwrite an existing boot state (resets a live device to its first slot) or an
        /// environment area that holds something else.
        #[arg(long)]
        force: bool,
        /// Print {"summary", "warnings"} as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `ota-update tuf`: works on a metadata directory, no device configuration.
#[derive(clap::Args, Debug)]
pub struct TufArgs {
    /// Directory of the trusted metadata (root.json, timestamp.json, ... unversioned names).
    #[arg(long)]
    pub metadata_dir: PathBuf,
    /// Base URL of the repository's metadata.
    #[arg(long)]
    pub metadata_url: Option<String>,
    /// A target to download (repeatable, processed in order).
    #[arg(long = "target-name")]
    pub target_names: Vec<String>,
    /// Base URL of the targets.
    #[arg(long)]
    pub target_base_url: Option<String>,
    /// Where downloaded targets are written.
    #[arg(long)]
    pub target_dir: Option<PathBuf>,
    /// PEM CA certificates for HTTPS (replaces the built-in web roots).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// The time expiry is checked against: `floor` is the device's policy (the latest of the
    /// system clock, the build time and the last refresh's time, which it raises); `system` is
    /// the system clock alone, the floor neither read nor raised (a repository checked at a
    /// chosen, faked time).
    #[arg(long, value_enum, default_value_t = TufClock::Floor)]
    pub clock: TufClock,
    /// Print the result as JSON (errors too: {"error": {...}}).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: TufCommand,
}

/// `ota-update tuf --clock`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum TufClock {
    Floor,
    System,
}

#[derive(Subcommand, Debug)]
pub enum TufCommand {
    /// Trust ROOT_JSON (obtained out of band) as the starting root.
    Init {
        /// The root metadata file.
        root_json: PathBuf,
    },
    /// Run the client workflow: root chain, timestamp, snapshot, top-level targets (delegated
    /// roles load only when a download's search reaches them).
    Refresh,
    /// Refresh, then download each --target-name, verified against the signed length and
    /// hashes (a file already in --target-dir with them is not fetched again).
    Download,
}
