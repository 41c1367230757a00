//! The command line of `ota-sign` (clap): compiled into the program, and into its build script
//! (build.rs), which writes the man pages and shell completions from it. It uses only clap,
//! std and the few items of `crate::cli_types`, which the build script stands in for.

use crate::cli_types::{parse_algorithm, Algorithm, ProgressMode, Version, DEFAULT_ZSTD_LEVEL};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Signs firmware bundles for over-the-air updates, and checks them.
///
/// Exit codes: 0 ok, 1 other failure, 2 usage, 3 I/O, 4 bad signature or threshold not met,
/// 5 corrupt or truncated bundle, 6 unsupported format version, 7 wrong delta base.
#[derive(Parser, Debug)]
#[command(name = "ota-sign", version, about, long_about = None)]
pub struct Cli {
    /// The PKCS#11 module (a .so) that `pkcs11:` key references use when the URI has no
    /// `module-path` (default: $OTA_PKCS11_MODULE).
    #[arg(long, global = true, value_name = "PATH")]
    pub pkcs11_module: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Make an ed25519 key pair: KEY (PKCS#8 PEM, mode 0600) and KEY.pub (PEM public key).
    Keygen(KeygenArgs),
    /// Key references: show the public key of any private key reference.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Build a signed bundle from one or more images.
    Bundle(BundleArgs),
    /// Check a bundle's signatures, every chunk hash and every image hash; optionally extract.
    Verify(VerifyArgs),
    /// Show a bundle's manifest (unverified unless --trusted is given).
    Inspect(InspectArgs),
    /// Create and maintain a signed TUF repository of bundles.
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Fleet rollouts: phased waves, pause, resume, pull, signed with the rollout key.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Fleet views from the repository servers' access logs.
    #[command(subcommand)]
    Fleet(FleetCommand),
}

/// `ota-sign key ...`.
#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Write the public key (SPKI PEM) of a private key reference: a file, env:NAME,
    /// pkcs11:URI or cmd:COMMAND. Trust it on devices (`trusted_keys`) or in `repo init`.
    Public(KeyPublicArgs),
}

/// `ota-sign key public`.
#[derive(Args, Debug)]
pub struct KeyPublicArgs {
    /// The private key reference.
    #[arg(long)]
    pub key: PathBuf,
    /// Write the PEM here (mode 0644) instead of standard output.
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
    /// Print {"public_key_pem", "key_id", "algorithm", "file"} as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ota-sign fleet ...`.
#[derive(Subcommand, Debug)]
pub enum FleetCommand {
    /// Devices per product, release and channel over time, from access logs.
    ///
    /// Reads access logs in ota-server's format and nginx's `combined` format (lines it cannot
    /// parse are counted and reported, not fatal), takes the requests whose User-Agent is
    /// `ota-update/VERSION (PRODUCT; RELEASE; CHANNEL)` and prints, per time bucket, product,
    /// release and channel, the requests and the devices.
    ///
    /// Devices send no id: the device count is the number of distinct (client address, user
    /// agent) pairs in the bucket. It is a lower bound: devices behind one NAT address that run
    /// the same release count once. A device that changed release within a bucket counts under
    /// both releases.
    Report(FleetReportArgs),
}

/// `ota-sign fleet report`.
#[derive(Args, Debug)]
pub struct FleetReportArgs {
    /// An access log, or - for standard input (repeatable; several files after one flag too).
    /// Decompress rotated logs first: `zcat access.log.*.gz | ota-sign fleet report --access-log -`.
    #[arg(long = "access-log", value_name = "FILE", required = true, num_args = 1..)]
    pub access_logs: Vec<PathBuf>,
    /// Width of a time bucket (1h, 1d, 10m, ...); buckets start at multiples of it since the
    /// epoch (UTC).
    #[arg(long, default_value = "1h")]
    pub bucket: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ota-sign rollout ...`: rollout state per (product, channel, version) in the delegated TUF
/// role `rollout`, signed by the rollout key (or the targets key). A release without a rollout
/// entry is offered to every device of its channel.
#[derive(Subcommand, Debug)]
pub enum RolloutCommand {
    /// Delegate the rollout role to the fleet admin's key(s) (signed with the targets key).
    Init(RolloutInitArgs),
    /// Start (or restart) a phased rollout of a release on a channel, from now.
    Start(RolloutStartArgs),
    /// Stop offering the release to devices that do not have it yet.
    Pause(RolloutReleaseArgs),
    /// Offer it again from where the schedule stood when it was paused.
    Resume(RolloutReleaseArgs),
    /// Withdraw the release: offered to nobody; devices running it move back to the newest
    /// release of their channel they may run.
    Pull(RolloutReleaseArgs),
    /// Show every rollout: schedule, share now, state, and what expires when.
    Status(RolloutStatusArgs),
}

/// `ota-sign rollout init`.
#[derive(Args, Debug)]
pub struct RolloutInitArgs {
    /// Repository directory.
    #[arg(long)]
    pub repo: PathBuf,
    /// The fleet admin's public (or private) rollout key (repeatable).
    #[arg(long = "rollout-key", value_name = "KEY", required = true)]
    pub rollout_keys: Vec<PathBuf>,
    /// Signatures needed on rollout state.
    #[arg(long, default_value_t = 1)]
    pub threshold: usize,
    /// The targets key (signs the delegation; may also sign rollout state), plus optionally
    /// the snapshot and timestamp keys to publish at once (repeatable).
    #[arg(long = "key", value_name = "KEY", required = true)]
    pub keys: Vec<PathBuf>,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
}

/// Which release a rollout command is about, and the keys to sign with.
#[derive(Args, Debug)]
pub struct RolloutReleaseArgs {
    /// Repository directory.
    #[arg(long)]
    pub repo: PathBuf,
    /// Product.
    #[arg(long)]
    pub product: String,
    /// Release version.
    #[arg(long)]
    pub version: Version,
    /// Channel the rollout offers the release on.
    #[arg(long, default_value = "stable")]
    pub channel: String,
    /// The rollout key or the targets key; add the snapshot and timestamp keys to make the
    /// change visible at once (repeatable).
    #[arg(long = "key", value_name = "KEY", required = true)]
    pub keys: Vec<PathBuf>,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
}

/// `ota-sign rollout start`.
#[derive(Args, Debug)]
pub struct RolloutStartArgs {
    /// The release and keys.
    #[command(flatten)]
    pub release: RolloutReleaseArgs,
    /// The schedule: OFFSET=PERCENT points after the start, e.g. 0s=1%,4h=5%,1d=25%,3d=100%
    /// (units s, m, h, d; linear between points).
    #[arg(long)]
    pub waves: String,
}

/// `ota-sign rollout status`.
#[derive(Args, Debug)]
pub struct RolloutStatusArgs {
    /// Repository directory.
    #[arg(long)]
    pub repo: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ota-sign repo ...`: the TUF repository. Each role's private key is passed only to the
/// commands that sign for that role, so keys can live in different places (root offline,
/// targets in CI, snapshot and timestamp online).
#[derive(Subcommand, Debug)]
pub enum RepoCommand {
    /// Create a repository: root version 1, and targets/snapshot/timestamp version 1 when
    /// their private keys are given.
    Init(RepoInitArgs),
    /// Copy a bundle in as a target (custom = product, version, channel, images); staged until
    /// `publish`.
    Add(RepoAddArgs),
    /// Stage the removal of a target.
    Remove(RepoRemoveArgs),
    /// Stage a delegation: the targets role trusts another role, with its own key(s), for the
    /// target paths given (a product line, a supplier); signed by the next `publish`.
    Delegate(RepoDelegateArgs),
    /// Sign staged changes: new targets (or, with --role, a delegated role's), snapshot and
    /// timestamp versions. Also re-signs targets that no longer verify under the current root.
    #[command(alias = "sign")]
    Publish(RepoSignArgs),
    /// Re-sign timestamp (and snapshot when it expires soon) before they expire.
    RefreshTimestamp(RepoSignArgs),
    /// Write a new root version with changed keys, signed by the old and the new root keys.
    Rotate(RepoRotateArgs),
    /// List the published and staged targets.
    List(RepoListArgs),
    /// Check the published repository as a device would now: every role's version, expiry and
    /// signing keys, what expires soon, what devices would refuse and the command that fixes
    /// it. Exit 0 when devices accept the repository, 1 when they would refuse it.
    #[command(alias = "status")]
    Doctor(RepoDoctorArgs),
}

/// `ota-sign repo delegate`.
#[derive(Args, Debug)]
pub struct RepoDelegateArgs {
    /// Repository directory.
    #[arg(long)]
    pub repo: PathBuf,
    /// The delegated role's name (published as metadata/N.NAME.json).
    #[arg(long)]
    pub name: String,
    /// Target path patterns the role is trusted for, e.g. 'acme-nas/*' (`*` and `?` within
    /// one path segment, `[seq]`).
    #[arg(long, value_name = "PATTERN", num_args = 1.., required = true)]
    pub paths: Vec<String>,
    /// A key of the role, public or private (repeatable).
    #[arg(long = "key", value_name = "PUB", num_args = 1.., required = true)]
    pub keys: Vec<PathBuf>,
    /// Signatures of the role's keys needed.
    #[arg(long, default_value_t = 1)]
    pub threshold: usize,
    /// A search that reaches this role for a matching path stops at it (roles after it are not
    /// consulted for those paths).
    #[arg(long)]
    pub terminating: bool,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
}

/// `ota-sign repo doctor`.
#[derive(Args, Debug)]
pub struct RepoDoctorArgs {
    /// Repository directory.
    #[arg(long)]
    pub repo: PathBuf,
    /// Report what expires within this many days.
    #[arg(long, default_value_t = 30)]
    pub days: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Keys and thresholds of the top-level roles (public or private key files; a private key may
/// also be env:NAME).
#[derive(Args, Debug, Default)]
pub struct RoleKeyArgs {
    /// A root key file (repeatable).
    #[arg(long = "root-key", value_name = "KEY")]
    pub root: Vec<PathBuf>,
    /// Root signature threshold (default: 1, or unchanged by rotate).
    #[arg(long)]
    pub root_threshold: Option<usize>,
    /// A targets key file (repeatable).
    #[arg(long = "targets-key", value_name = "KEY")]
    pub targets: Vec<PathBuf>,
    /// Targets signature threshold.
    #[arg(long)]
    pub targets_threshold: Option<usize>,
    /// A snapshot key file (repeatable).
    #[arg(long = "snapshot-key", value_name = "KEY")]
    pub snapshot: Vec<PathBuf>,
    /// Snapshot signature threshold.
    #[arg(long)]
    pub snapshot_threshold: Option<usize>,
    /// A timestamp key file (repeatable).
    #[arg(long = "timestamp-key", value_name = "KEY")]
    pub timestamp: Vec<PathBuf>,
    /// Timestamp signature threshold.
    #[arg(long)]
    pub timestamp_threshold: Option<usize>,
}

/// `ota-sign repo init`.
#[derive(Args, Debug)]
pub struct RepoInitArgs {
    /// Repository directory (created).
    #[arg(long)]
    pub repo: PathBuf,
    /// Role keys. Root keys must be private (they sign root v1); other roles may be public.
    #[command(flatten)]
    pub roles: RoleKeyArgs,
    /// Lifetime of a role's metadata as ROLE=DURATION (repeatable), e.g. timestamp=1d,
    /// snapshot=7d, targets=90d, root=365d (the defaults).
    #[arg(long = "expires", value_name = "ROLE=DURATION")]
    pub expires: Vec<String>,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
}

/// `ota-sign repo add`.
#[derive(Args, Debug)]
pub struct RepoAddArgs {
    /// Repository directory.
    #[arg(long)]
    pub repo: PathBuf,
    /// Target name (default: the bundle's file name).
    #[arg(long)]
    pub name: Option<String>,
    /// Release channel devices subscribe to.
    #[arg(long, default_value = "stable")]
    pub channel: String,
    /// Public key(s) the bundle must be signed with; checked before it is added.
    #[arg(long = "trusted", value_name = "PUB")]
    pub trusted: Vec<PathBuf>,
    /// Stage it in this delegated role instead of the top-level targets (its name must be
    /// within the role's delegated paths, e.g. --name acme-nas/fw-2.0.bundle).
    #[arg(long)]
    pub role: Option<String>,
    /// The bundle.
    pub bundle: PathBuf,
    /// Publish the provenance document the bundle's manifest names (checked by SHA-256) as
    /// the target NAME.provenance.json beside it, for auditors.
    #[arg(long, value_name = "FILE")]
    pub provenance: Option<PathBuf>,
    /// Print the target entry as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ota-sign repo remove`.
#[derive(Args, Debug)]
pub struct RepoRemoveArgs {
    /// Repository directory.
    #[arg(long)]
    pub repo: PathBuf,
    /// Target name.
    pub name: String,
    /// Remove it from this delegated role instead of the top-level targets.
    #[arg(long)]
    pub role: Option<String>,
    /// Print {"removed": NAME, "role": ROLE} as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ota-sign repo publish` / `refresh-timestamp`.
#[derive(Args, Debug)]
pub struct RepoSignArgs {
    /// Repository directory.
    #[arg(long)]
    pub repo: PathBuf,
    /// A private key to sign with (repeatable; a PEM file or env:NAME); each role uses the ones
    /// it authorises.
    #[arg(long = "key", value_name = "KEY", required = true)]
    pub keys: Vec<PathBuf>,
    /// `publish` only: sign this delegated role's staged changes (with its key) instead of the
    /// top-level targets.
    #[arg(long)]
    pub role: Option<String>,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
}

/// `ota-sign repo rotate`.
#[derive(Args, Debug)]
pub struct RepoRotateArgs {
    /// Repository directory.
    #[arg(long)]
    pub repo: PathBuf,
    /// New keys for the roles named (a role given here gets exactly these keys).
    #[command(flatten)]
    pub roles: RoleKeyArgs,
    /// A private root key to sign the new root with (repeatable): a threshold of the current
    /// root keys and of the new ones.
    #[arg(long = "key", value_name = "KEY", required = true)]
    pub keys: Vec<PathBuf>,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
}

/// `ota-sign repo list`.
#[derive(Args, Debug)]
pub struct RepoListArgs {
    /// Repository directory.
    #[arg(long)]
    pub repo: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ota-sign keygen`.
#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Where to write the private key; the public key goes to the same path plus `.pub`.
    #[arg(long, short = 'o')]
    pub out: PathBuf,
    /// Replace existing key files.
    #[arg(long)]
    pub force: bool,
    /// The key's algorithm: ed25519 (the default) or ecdsa-p256 (for fleets whose HSM or KMS
    /// keys are P-256; devices verify both).
    #[arg(long, default_value = "ed25519", value_parser = parse_algorithm)]
    pub algorithm: Algorithm,
    /// Print the result as JSON: {"private_key", "public_key", "key_id", "algorithm"}.
    #[arg(long)]
    pub json: bool,
}

/// `ota-sign bundle`.
#[derive(Args, Debug)]
pub struct BundleArgs {
    /// Product (compatible) string the bundle is for; devices refuse other products.
    #[arg(long)]
    pub product: String,
    /// Release version (semver, e.g. 1.4.0).
    #[arg(long = "version")]
    pub release_version: String,
    /// An image to include, as NAME=PATH (repeatable), e.g. rootfs=build/rootfs.ext4.
    #[arg(long = "image", required = true, value_name = "NAME=PATH")]
    pub images: Vec<String>,
    /// Make a delta for image NAME against the exact base image OLD, as NAME=OLD (repeatable:
    /// one delta per base; devices pick the one matching their current slot).
    #[arg(long = "base", value_name = "NAME=OLD")]
    pub bases: Vec<String>,
    /// With --base: also include the full image, for devices holding none of the bases.
    #[arg(long)]
    pub with_full: bool,
    /// Bind the release to its build provenance: an in-toto Statement (SLSA provenance), a
    /// DSSE envelope or a Sigstore bundle holding one. Its SHA-256, predicate type and builder
    /// go in the signed manifest; every image must be one of its subjects.
    #[arg(long, value_name = "FILE")]
    pub provenance: Option<PathBuf>,
    /// A private key to sign with (repeatable): a PEM file, or env:NAME (the PEM text, or the
    /// path of a PEM file, in that variable). Without it: env:OTA_SIGNING_KEY.
    #[arg(long = "key", value_name = "KEY")]
    pub keys: Vec<PathBuf>,
    /// Output bundle file (written atomically).
    #[arg(long, short = 'o', value_name = "OUT.bundle")]
    pub out: PathBuf,
    /// Uncompressed chunk size, bytes or with a K/M suffix (4K..8M).
    #[arg(long, default_value = "4M")]
    pub chunk_size: String,
    /// zstd compression level (1..=22).
    #[arg(long, default_value_t = DEFAULT_ZSTD_LEVEL)]
    pub level: i32,
    /// Delta operations to use: 5 (the default) adds `xz` (made only with --xz-content);
    /// 4 keeps to those of ota-update 2026-12-04 (bsdiff over x86-filtered code, small
    /// operation data inline in the op list); 3 to those of its earlier release (adds bsdiff
    /// patches compressed with LZMA2); 2 to those of ota-update 2026-12-03 (adds `gzip`, which
    /// re-creates changed .gz files from their content); 1 to the operations every ota-update
    /// applies. Without --xz-content, formats 5 and 4 make the same deltas.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub delta_format: u8,
    /// Send the content of changed xz streams (squashfs-xz blocks, .xz files) as a delta and
    /// have the device compress it again, bit for bit: about 3 × smaller deltas of squashfs-xz
    /// images, but applying them takes ~50 × as long (seconds to minutes on a router) and
    /// needs ota-update with delta format 5. Needs --delta-format 5.
    #[arg(long)]
    pub xz_content: bool,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
    /// Progress on standard error: auto (a bar on a terminal, lines when $CI is set, else
    /// nothing), plain (a line per 10 %), json (a JSON line per 10 %) or none.
    #[arg(long, default_value = "auto", value_parser = ProgressMode::parse)]
    pub progress: ProgressMode,
}

/// `ota-sign verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// A trusted public key (repeatable).
    #[arg(long = "trusted", required = true, value_name = "PUB")]
    pub trusted: Vec<PathBuf>,
    /// How many distinct trusted keys must have signed.
    #[arg(long, default_value_t = 1)]
    pub threshold: usize,
    /// Write a verified image out, as NAME=PATH (repeatable).
    #[arg(long = "extract", value_name = "NAME=PATH")]
    pub extract: Vec<String>,
    /// The base image for a delta image, as NAME=OLD (needed to extract a delta image, and to
    /// check its image hash).
    #[arg(long = "base", value_name = "NAME=OLD")]
    pub bases: Vec<String>,
    /// Also check that FILE is the provenance document the signed manifest names (same
    /// SHA-256) and that it attests every image (auditors: then check its own signature with
    /// slsa-verifier or cosign).
    #[arg(long, value_name = "FILE")]
    pub provenance: Option<PathBuf>,
    /// Print a JSON result on stdout.
    #[arg(long)]
    pub json: bool,
    /// Progress on standard error: auto (a bar on a terminal, lines when $CI is set, else
    /// nothing), plain (a line per 10 %), json (a JSON line per 10 %) or none.
    #[arg(long, default_value = "auto", value_parser = ProgressMode::parse)]
    pub progress: ProgressMode,
    /// The bundle, or - for standard input.
    pub bundle: PathBuf,
}

/// `ota-sign inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Check the manifest's signatures against these public keys (payload not checked).
    #[arg(long = "trusted", value_name = "PUB")]
    pub trusted: Vec<PathBuf>,
    /// How many distinct trusted keys must have signed (with --trusted).
    #[arg(long, default_value_t = 1)]
    pub threshold: usize,
    /// Print the manifest as JSON.
    #[arg(long)]
    pub json: bool,
    /// The bundle, or - for standard input.
    pub bundle: PathBuf,
}
