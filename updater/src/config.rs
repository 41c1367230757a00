//! The updater's configuration (`/etc/ota/updater.toml` by default), parsed and checked at
//! the edge so the rest of the code can trust it. Every key is documented in docs/updater.md.
//!
//! Relative paths are taken relative to the configuration file's directory and made
//! absolute, whatever form the `--config` argument has; a bare health check program name (no
//! `/`) is the one exception: it is looked up in PATH.

use crate::bootloader::ubootenv::UbootEnvConfig;
use crate::error::{Result, UpdateError};
use crate::fetch::FetchSettings;
use crate::slot::SlotName;
use ota_core::bundle::TrustPolicy;
use ota_core::keys::VerifyingKey;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// Where the configuration is read from when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/ota/updater.toml";

/// The `fw_env.config` the U-Boot backend reads its environment's copies from when
/// `[bootloader] env` is not given (`fw_env_config` names another).
pub const DEFAULT_FW_ENV_CONFIG: &str = "/etc/fw_env.config";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    product: String,
    state_dir: PathBuf,
    factory_version: Option<String>,
    reboot_command: Option<Vec<String>>,
    slots: BTreeMap<String, BTreeMap<String, PathBuf>>,
    bootloader: RawBootloader,
    trust: RawTrust,
    health_check: Option<RawHealthCheck>,
    repository: Option<RawRepository>,
    daemon: Option<RawDaemon>,
    device_id: Option<String>,
    device_id_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
enum RawBootloader {
    Grub {
        grubenv: PathBuf,
        cmdline: Option<PathBuf>,
    },
    Uboot {
        env_size: Option<usize>,
        env: Option<Vec<RawUbootCopy>>,
        fw_env_config: Option<PathBuf>,
        cmdline: Option<PathBuf>,
        default_env: Option<PathBuf>,
    },
    File {
        path: PathBuf,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUbootCopy {
    device: PathBuf,
    offset: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrust {
    keys: Vec<PathBuf>,
    threshold: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealthCheck {
    command: Vec<String>,
    timeout_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepository {
    url: String,
    channel: Option<String>,
    root: PathBuf,
    metadata_url: Option<String>,
    targets_url: Option<String>,
    ca_file: Option<PathBuf>,
    connect_timeout_secs: Option<u64>,
    min_speed_bytes_per_sec: Option<u64>,
    min_speed_window_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    interval_secs: Option<u64>,
    jitter_secs: Option<u64>,
    reboot: Option<bool>,
    max_backoff_secs: Option<u64>,
}

/// The bootloader backend and its parameters.
#[derive(Debug, Clone)]
pub enum BootloaderConfig {
    /// GRUB: a grubenv file; the booted slot comes from `ota.slot=` on the kernel command line.
    Grub {
        /// The grubenv file (on the EFI system partition or /boot).
        grubenv: PathBuf,
        /// The kernel command line to read `ota.slot=` from.
        cmdline: PathBuf,
    },
    /// U-Boot: an environment with one or two copies; booted slot from the command line.
    Uboot {
        /// The environment's copies.
        env: crate::bootloader::ubootenv::UbootEnvConfig,
        /// The kernel command line to read `ota.slot=` from.
        cmdline: PathBuf,
        /// U-Boot's built-in default environment as text (`make u-boot-initial-env`): what a
        /// never-saved environment boots with, and the seed when the updater creates it.
        default_env: Option<PathBuf>,
    },
    /// A simulated boot-counting bootloader in a JSON file (tests and the demo).
    File {
        /// The file.
        path: PathBuf,
    },
}

/// The health check run on a trial boot.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    /// Program and arguments; exit status 0 means healthy.
    pub command: Vec<String>,
    /// Seconds before the check is killed and counted as failed.
    pub timeout_secs: u64,
}

/// Where updates are fetched from (the TUF client).
#[derive(Debug, Clone)]
pub struct Repository {
    /// Base URL of the repository.
    pub url: String,
    /// Release channel.
    pub channel: String,
    /// The root metadata shipped on the device: the trust anchor used until the cache in the
    /// state directory holds a newer verified root.
    pub root: PathBuf,
    /// Where TUF metadata is (default `URL/metadata`).
    pub metadata_url: String,
    /// Where targets are (default `URL/targets`).
    pub targets_url: String,
}

/// `ota-update daemon` settings (`[daemon]`).
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// Seconds between checks.
    pub interval_secs: u64,
    /// Up to this many seconds are added at random to each wait, so a fleet does not check in
    /// lockstep.
    pub jitter_secs: u64,
    /// Reboot into the new slot after an install.
    pub reboot: bool,
    /// Longest wait after repeated failures (the wait doubles from `interval_secs` / 4).
    pub max_backoff_secs: u64,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        Self {
            interval_secs: 3600,
            jitter_secs: 900,
            reboot: true,
            max_backoff_secs: 6 * 3600,
        }
    }
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the configuration came from.
    pub path: PathBuf,
    /// Product (compatible) string; bundles for other products are refused.
    pub product: String,
    /// The updater's state directory.
    pub state_dir: PathBuf,
    /// Version of the factory image, for a slot the updater never installed.
    pub factory_version: Option<semver::Version>,
    /// Command that reboots the device.
    pub reboot_command: Vec<String>,
    /// The two slots, in boot-preference order of a fresh device: slot → image name → device.
    pub slots: BTreeMap<SlotName, BTreeMap<String, PathBuf>>,
    /// Bootloader backend.
    pub bootloader: BootloaderConfig,
    /// Trusted bundle signing keys and threshold.
    pub trust: TrustPolicy,
    /// Health check, if any (without one, a trial boot that reaches `ota-update boot` passes).
    pub health_check: Option<HealthCheck>,
    /// Repository, if any.
    pub repository: Option<Repository>,
    /// Network settings for downloads: from `[repository]`, defaults without it.
    pub fetch: crate::fetch::FetchSettings,
    /// `ota-update daemon` settings.
    pub daemon: DaemonSettings,
    /// This device's id, for its place in phased rollouts (`device_id`, else the first line of
    /// `device_id_file`, default `/etc/machine-id`); `None` when neither gives one: the device
    /// then comes last in every rollout (offered a release only at 100 %).
    pub device_id: Option<String>,
}

impl Config {
    /// Reads and checks the configuration file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| UpdateError::Config {
            path: path.display().to_string(),
            reason: format!("cannot read it: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// Parses configuration text; `path` locates relative paths and names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        Self::check(text, path).map_err(|reason| UpdateError::Config {
            path: path.display().to_string(),
            reason,
        })
    }

    /// Checks every key, section by section, in the order of docs/updater.md. A new top-level
    /// key is a field in `RawConfig` and in `Config`, and a `check_*` function called here.
    fn check(text: &str, path: &Path) -> Checked<Self> {
        let raw = parse_toml(text)?;
        let paths = Paths::of_config(path)?;
        Ok(Config {
            path: path.to_owned(),
            product: check_product(raw.product)?,
            state_dir: paths.resolve(&raw.state_dir),
            factory_version: check_factory_version(raw.factory_version.as_deref())?,
            reboot_command: check_reboot_command(raw.reboot_command)?,
            slots: check_slots(raw.slots, &paths)?,
            bootloader: check_bootloader(raw.bootloader, &paths)?,
            trust: check_trust(&raw.trust, &paths)?,
            health_check: raw
                .health_check
                .map(|h| check_health_check(h, &paths))
                .transpose()?,
            fetch: fetch_settings(raw.repository.as_ref(), &paths),
            repository: raw
                .repository
                .map(|r| check_repository(r, &paths))
                .transpose()?,
            daemon: daemon_settings(raw.daemon),
            device_id: check_device_id(raw.device_id, raw.device_id_file.as_deref(), &paths)?,
        })
    }

    /// The slot that is not `slot`.
    pub fn other_slot(&self, slot: &SlotName) -> Result<SlotName> {
        self.slots
            .keys()
            .find(|s| *s != slot)
            .cloned()
            .ok_or_else(|| UpdateError::Refused(format!("no slot other than {slot} is configured")))
    }

    /// Checks that `slot` is configured.
    pub fn check_slot(&self, slot: &SlotName) -> Result<()> {
        if self.slots.contains_key(slot) {
            Ok(())
        } else {
            Err(UpdateError::Bootloader(format!(
                "the booted slot {slot} is not one of the configured slots ({})",
                self.slots
                    .keys()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    }
}

/// A checked value, or the one-line reason it is refused, naming the key.
type Checked<T> = std::result::Result<T, String>;

/// Slot → image name → device.
type Slots = BTreeMap<SlotName, BTreeMap<String, PathBuf>>;

/// Resolves the configuration's relative paths against the file's directory, made absolute
/// however `--config` was spelled (`updater.toml`, `./sub/../updater.toml`, ...): every path
/// of a [`Config`] is absolute, so none is looked up in PATH or depends on the current
/// directory of a later step.
struct Paths {
    /// The configuration file's directory, absolute.
    base: PathBuf,
}

impl Paths {
    /// For the configuration file at `config`: its directory, or the current directory for a
    /// bare file name.
    fn of_config(config: &Path) -> Checked<Self> {
        let dir = match config.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let base = std::path::absolute(dir).map_err(|e| {
            format!(
                "cannot locate the configuration's directory {}: {e}",
                dir.display()
            )
        })?;
        Ok(Paths { base })
    }

    /// `path` itself when absolute, else `path` in the configuration's directory; `.`
    /// components are dropped (`..` are kept: they mean what the kernel makes of them).
    fn resolve(&self, path: &Path) -> PathBuf {
        self.base.join(path).components().collect()
    }
}

/// The TOML structure; a syntax error, unknown key or wrong type names its line.
fn parse_toml(text: &str) -> Checked<RawConfig> {
    toml::from_str(text).map_err(|e| {
        let message = e.message().replace('\n', " ");
        match e.span() {
            Some(span) => {
                let newlines = text.bytes().take(span.start).filter(|b| *b == b'\n');
                format!("line {}: {message}", newlines.count() + 1)
            }
            None => message,
        }
    })
}

/// Where the device id is read from when `device_id` is not given.
pub const DEFAULT_DEVICE_ID_FILE: &str = "/etc/machine-id";

/// `device_id` as given, else the first line of `device_id_file` (default
/// [`DEFAULT_DEVICE_ID_FILE`]); a missing default file gives no id, a missing file the
/// configuration names is an error.
fn check_device_id(
    given: Option<String>,
    file: Option<&Path>,
    paths: &Paths,
) -> Checked<Option<String>> {
    if let Some(id) = given {
        let id = id.trim().to_owned();
        if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
            return Err("device_id: 1 to 256 printable characters".into());
        }
        return Ok(Some(id));
    }
    let (path, named) = match file {
        Some(f) => (paths.resolve(f), true),
        None => (PathBuf::from(DEFAULT_DEVICE_ID_FILE), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text
            .lines()
            .next()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)),
        Err(e) if !named && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("device_id_file {}: {e}", path.display())),
    }
}

/// `product`.
fn check_product(product: String) -> Checked<String> {
    if ota_core::bundle::manifest::is_valid_product(&product) {
        Ok(product)
    } else {
        Err(format!(
            "product {product:?}: use printable ASCII without spaces"
        ))
    }
}

/// `factory_version`.
fn check_factory_version(version: Option<&str>) -> Checked<Option<semver::Version>> {
    version
        .map(semver::Version::parse)
        .transpose()
        .map_err(|e| format!("factory_version: not a semantic version: {e}"))
}

/// `reboot_command` (default `["reboot"]`).
fn check_reboot_command(command: Option<Vec<String>>) -> Checked<Vec<String>> {
    let command = command.unwrap_or_else(|| vec!["reboot".into()]);
    if command.is_empty() {
        return Err("reboot_command: must name a program".into());
    }
    Ok(command)
}

/// `[slots.<NAME>]`: two slots holding the same image names, every image on its own device.
fn check_slots(raw: BTreeMap<String, BTreeMap<String, PathBuf>>, paths: &Paths) -> Checked<Slots> {
    if raw.len() != 2 {
        return Err(format!(
            "[slots]: exactly two slots are needed (A/B), found {}",
            raw.len()
        ));
    }
    let mut slots = Slots::new();
    let mut image_names: Option<Vec<String>> = None;
    for (name, images) in raw {
        let slot = SlotName::parse(&name).map_err(|e| format!("[slots.{name}]: {e}"))?;
        if images.is_empty() {
            return Err(format!("[slots.{name}]: map at least one image to a device, e.g. rootfs = \"/dev/mmcblk0p2\""));
        }
        if let Some(image) = images
            .keys()
            .find(|i| !ota_core::bundle::manifest::is_valid_image_name(i))
        {
            return Err(format!("[slots.{name}]: invalid image name {image:?}"));
        }
        let names: Vec<String> = images.keys().cloned().collect();
        if let Some(first) = image_names.as_ref().filter(|first| **first != names) {
            return Err(format!(
                "[slots.{name}]: both slots must hold the same images ({} vs {})",
                first.join(", "),
                names.join(", ")
            ));
        }
        image_names = Some(names);
        let devices = images.into_iter().map(|(k, v)| (k, paths.resolve(&v)));
        slots.insert(slot, devices.collect());
    }
    check_distinct_devices(&slots)?;
    Ok(slots)
}

/// Every image of both slots on its own device, compared by what the paths designate: a slot
/// given as a symlink (a `/dev/disk/by-*` alias) or hard link to another image's device is
/// refused, naming both keys and what they resolve to.
fn check_distinct_devices(slots: &Slots) -> Checked<()> {
    let mut seen: Vec<(String, &Path, DeviceIdentity)> = Vec::new();
    for (slot, images) in slots {
        for (image, device) in images {
            let key = format!("[slots.{slot}] {image}");
            let identity = DeviceIdentity::of(device).map_err(|e| {
                format!(
                    "{key}: cannot tell which device {} is: {e}",
                    device.display()
                )
            })?;
            if let Some((other_key, other, _)) = seen.iter().find(|(.., id)| *id == identity) {
                return Err(format!(
                    "{other_key} and {key} are one device ({} and {}: {identity}); every image \
                     needs its own",
                    resolved(other),
                    resolved(device)
                ));
            }
            seen.push((key, device, identity));
        }
    }
    Ok(())
}

/// `path`, and what it resolves to when that is another path.
fn resolved(path: &Path) -> String {
    match std::fs::canonicalize(path) {
        Ok(real) if real != path => format!("{} -> {}", path.display(), real.display()),
        _ => path.display().to_string(),
    }
}

/// What a device path designates, to tell whether two paths are one device. Symlinks are
/// followed; a block or character device node is its device number (two nodes of one device
/// are one device), any other file its file system and inode (hard links are one file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceIdentity {
    /// A block device: its device number (`st_rdev`).
    Block(u64),
    /// A character device: its device number (`st_rdev`).
    Char(u64),
    /// Any other existing file: its file system (`st_dev`) and inode.
    File {
        /// The file system's device number.
        dev: u64,
        /// The inode.
        ino: u64,
    },
    /// A path that does not exist (yet): its lexically normalised absolute path, the only
    /// thing to compare it by.
    Missing(PathBuf),
}

impl DeviceIdentity {
    /// The identity of `path` (relative paths are taken from the current directory). A path
    /// that does not exist is [`DeviceIdentity::Missing`]; other errors (permissions) are
    /// returned.
    pub fn of(path: &Path) -> io::Result<Self> {
        match std::fs::metadata(path) {
            Ok(meta) => {
                let kind = meta.file_type();
                Ok(if kind.is_block_device() {
                    DeviceIdentity::Block(meta.rdev())
                } else if kind.is_char_device() {
                    DeviceIdentity::Char(meta.rdev())
                } else {
                    DeviceIdentity::File {
                        dev: meta.dev(),
                        ino: meta.ino(),
                    }
                })
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                let absolute = std::path::absolute(path)?;
                Ok(DeviceIdentity::Missing(normalize_lexically(&absolute)))
            }
            Err(e) => Err(e),
        }
    }
}

impl std::fmt::Display for DeviceIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceIdentity::Block(rdev) => write!(f, "block device {}", major_minor(*rdev)),
            DeviceIdentity::Char(rdev) => write!(f, "character device {}", major_minor(*rdev)),
            DeviceIdentity::File { dev, ino } => {
                write!(f, "inode {ino} of file system {}", major_minor(*dev))
            }
            DeviceIdentity::Missing(path) => write!(f, "not present, path {}", path.display()),
        }
    }
}

/// Whether `a` and `b` designate one device (see [`DeviceIdentity`]); for re-checking right
/// before writing a slot that it is not the one running.
pub fn same_device(a: &Path, b: &Path) -> io::Result<bool> {
    Ok(DeviceIdentity::of(a)? == DeviceIdentity::of(b)?)
}

/// `MAJOR:MINOR` of a Linux device number (glibc's `major()` and `minor()`).
fn major_minor(dev: u64) -> String {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    format!("{major}:{minor}")
}

/// `path` with `.` dropped and each `..` taking away the component before it, without looking
/// at the file system.
fn normalize_lexically(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            Component::ParentDir if out.has_root() => {}
            other => out.push(other),
        }
    }
    out
}

/// `[bootloader]`.
fn check_bootloader(raw: RawBootloader, paths: &Paths) -> Checked<BootloaderConfig> {
    let cmdline =
        |c: Option<PathBuf>| paths.resolve(&c.unwrap_or_else(|| PathBuf::from("/proc/cmdline")));
    Ok(match raw {
        RawBootloader::Grub {
            grubenv,
            cmdline: c,
        } => BootloaderConfig::Grub {
            grubenv: paths.resolve(&grubenv),
            cmdline: cmdline(c),
        },
        RawBootloader::Uboot {
            env_size,
            env,
            fw_env_config,
            cmdline: c,
            default_env,
        } => BootloaderConfig::Uboot {
            env: check_uboot_env(env, env_size, fw_env_config, paths)?,
            cmdline: cmdline(c),
            default_env: default_env.map(|d| paths.resolve(&d)),
        },
        RawBootloader::File { path } => BootloaderConfig::File {
            path: paths.resolve(&path),
        },
    })
}

/// The U-Boot environment's copies: `[bootloader] env` and `env_size` when given (they win
/// over a `fw_env_config`), else the `fw_env.config` file named by `fw_env_config`.
fn check_uboot_env(
    env: Option<Vec<RawUbootCopy>>,
    env_size: Option<usize>,
    fw_env_config: Option<PathBuf>,
    paths: &Paths,
) -> Checked<UbootEnvConfig> {
    match (env, env_size) {
        (Some(env), Some(size)) => {
            let copies: Vec<(PathBuf, u64)> = env
                .into_iter()
                .map(|c| (paths.resolve(&c.device), c.offset))
                .collect();
            if copies.is_empty() || copies.len() > 2 {
                return Err("[bootloader] env: give one copy (single) or two (redundant)".into());
            }
            Ok(UbootEnvConfig { copies, size })
        }
        (Some(_), None) => {
            Err("[bootloader] env_size: needed with env (the size of one copy, header included)".into())
        }
        (None, Some(_)) => Err("[bootloader] env_size: only with env; without env the copies and their size come from fw_env_config".into()),
        (None, None) => {
            let file = fw_env_config.unwrap_or_else(|| PathBuf::from(DEFAULT_FW_ENV_CONFIG));
            read_fw_env_config(&paths.resolve(&file))
        }
    }
}

/// The copies an `fw_env.config` describes; its relative device paths are in its directory.
fn read_fw_env_config(file: &Path) -> Checked<UbootEnvConfig> {
    let bad = |reason: String| format!("[bootloader] fw_env_config {}: {reason}", file.display());
    let text = std::fs::read_to_string(file).map_err(|e| {
        bad(format!(
            "cannot read it: {e} (or give the copies here, with env and env_size)"
        ))
    })?;
    let mut env = UbootEnvConfig::parse_fw_env_config(&text).map_err(|e| bad(e.to_string()))?;
    let local = Paths {
        base: file.parent().unwrap_or(Path::new("/")).to_owned(),
    };
    for (device, _) in &mut env.copies {
        *device = local.resolve(device);
    }
    Ok(env)
}

/// `[trust]`: the keys are read now, so a missing or invalid key fails at load.
fn check_trust(raw: &RawTrust, paths: &Paths) -> Checked<TrustPolicy> {
    if raw.keys.is_empty() {
        return Err("[trust] keys: list at least one trusted public key".into());
    }
    let keys = raw
        .keys
        .iter()
        .map(|key| VerifyingKey::from_file(&paths.resolve(key)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| format!("[trust] keys: {e}"))?;
    TrustPolicy::new(keys, raw.threshold.unwrap_or(1))
        .map_err(|e| format!("[trust] threshold: {e}"))
}

/// `[health_check]`.
fn check_health_check(raw: RawHealthCheck, paths: &Paths) -> Checked<HealthCheck> {
    let mut command = raw.command;
    let Some(program) = command.first_mut() else {
        return Err("[health_check] command: must name a program".into());
    };
    // A program path with a slash is a path like every other here (relative ones are in the
    // configuration's directory); a bare name is looked up in PATH.
    if program.contains('/') {
        let resolved = paths.resolve(Path::new(program)).into_os_string();
        *program = resolved.into_string().map_err(|p| {
            format!(
                "[health_check] command: {} is not UTF-8",
                p.to_string_lossy()
            )
        })?;
    }
    let timeout_secs = raw.timeout_secs.unwrap_or(60);
    if timeout_secs == 0 {
        return Err("[health_check] timeout_secs: must be at least 1".into());
    }
    Ok(HealthCheck {
        command,
        timeout_secs,
    })
}

/// The download settings of `[repository]`, defaults without it.
fn fetch_settings(raw: Option<&RawRepository>, paths: &Paths) -> FetchSettings {
    let mut fetch = FetchSettings::default();
    let Some(r) = raw else {
        return fetch;
    };
    fetch.ca_file = r.ca_file.as_deref().map(|p| paths.resolve(p));
    if let Some(s) = r.connect_timeout_secs {
        fetch.connect_timeout = Duration::from_secs(s.max(1));
    }
    if let Some(b) = r.min_speed_bytes_per_sec {
        fetch.min_bytes_per_sec = b;
    }
    if let Some(s) = r.min_speed_window_secs {
        fetch.min_speed_window = Duration::from_secs(s.max(1));
    }
    fetch
}

/// `[repository]`: where updates come from.
fn check_repository(raw: RawRepository, paths: &Paths) -> Checked<Repository> {
    let url = raw.url.trim_end_matches('/').to_owned();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err("repository.url must start with http:// or https://".into());
    }
    let under = |u: Option<String>, default: &str| match u {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => format!("{url}/{default}"),
    };
    Ok(Repository {
        metadata_url: under(raw.metadata_url, "metadata"),
        targets_url: under(raw.targets_url, "targets"),
        channel: raw.channel.unwrap_or_else(|| "stable".into()),
        root: paths.resolve(&raw.root),
        url,
    })
}

/// `[daemon]`, defaults for what is not given.
fn daemon_settings(raw: Option<RawDaemon>) -> DaemonSettings {
    let defaults = DaemonSettings::default();
    let Some(d) = raw else {
        return defaults;
    };
    DaemonSettings {
        interval_secs: d.interval_secs.unwrap_or(defaults.interval_secs).max(1),
        jitter_secs: d.jitter_secs.unwrap_or(defaults.jitter_secs),
        reboot: d.reboot.unwrap_or(defaults.reboot),
        max_backoff_secs: d
            .max_backoff_secs
            .unwrap_or(defaults.max_backoff_secs)
            .max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write_key(dir: &Path) {
        let key = ota_core::keys::SigningKey::generate();
        std::fs::write(dir.join("release.pub"), key.verifying_key().to_pem()).unwrap();
    }

    const GOOD: &str = r#"
product = "acme-router"
state_dir = "state"
[slots.A]
rootfs = "slot-a.img"
[slots.B]
rootfs = "slot-b.img"
[bootloader]
backend = "file"
path = "boot.json"
[trust]
keys = ["release.pub"]
"#;

    #[test]
    fn valid_configuration_resolves_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        write_key(dir.path());
        let cfg = Config::parse(GOOD, &dir.path().join("updater.toml")).unwrap();
        assert_eq!(cfg.state_dir, dir.path().join("state"));
        assert_eq!(cfg.slots.len(), 2);
        assert!(matches!(cfg.bootloader, BootloaderConfig::File { .. }));
    }

    #[test]
    fn unknown_key_is_refused_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        write_key(dir.path());
        let text = GOOD.replace("[trust]", "[trust]\nthreshhold = 1");
        let err = Config::parse(&text, &dir.path().join("u.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 12"), "{err}");
        assert!(err.contains("threshhold"), "{err}");
        assert_eq!(err.lines().count(), 1);
    }

    #[test]
    fn invalid_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        write_key(dir.path());
        let p = dir.path().join("u.toml");
        for (from, to) in [
            ("backend = \"file\"", "backend = \"lilo\""),
            ("[slots.B]\nrootfs = \"slot-b.img\"", ""),
            ("rootfs = \"slot-b.img\"", "rootfs = \"slot-a.img\""),
            ("keys = [\"release.pub\"]", "keys = [\"missing.pub\"]"),
            (
                "keys = [\"release.pub\"]",
                "keys = [\"release.pub\"]\nthreshold = 2",
            ),
            ("product = \"acme-router\"", "product = \"acme router\""),
        ] {
            let text = GOOD.replace(from, to);
            assert!(Config::parse(&text, &p).is_err(), "accepted: {to}");
        }
    }

    /// `dir` (absolute) spelled relative to the current directory, starting with `./`.
    fn relative_to_cwd(dir: &Path) -> PathBuf {
        let cwd = fs::canonicalize(".").unwrap();
        let mut rel = PathBuf::from(".");
        rel.extend(cwd.components().skip(1).map(|_| ".."));
        rel.join(dir.strip_prefix("/").unwrap())
    }

    #[test]
    fn relative_config_path_forms_resolve_to_absolute_paths_in_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        write_key(&root);
        fs::create_dir(root.join("sub")).unwrap();
        let text = format!(
            "{GOOD}[health_check]\ncommand = [\"./health-check.sh\", \"./arg\"]\n\
             [repository]\nurl = \"https://u.example\"\nroot = \"root.json\"\n\
             ca_file = \"./sub/ca.pem\"\n"
        );
        let rel = relative_to_cwd(&root);
        for form in [
            "updater.toml",
            "./sub/../updater.toml",
            "sub/./../updater.toml",
        ] {
            let path = rel.join(form);
            let cfg = Config::parse(&text, &path).unwrap();
            let in_root = |p: &Path, name: &str| {
                assert!(p.is_absolute(), "{form}: {}", p.display());
                assert_eq!(p.file_name().unwrap(), name, "{form}: {}", p.display());
                let parent = fs::canonicalize(p.parent().unwrap()).unwrap();
                assert_eq!(parent, root, "{form}: {}", p.display());
            };
            in_root(&cfg.state_dir, "state");
            in_root(
                &cfg.slots[&SlotName::parse("B").unwrap()]["rootfs"],
                "slot-b.img",
            );
            let BootloaderConfig::File { path: boot } = &cfg.bootloader else {
                panic!("{:?}", cfg.bootloader)
            };
            in_root(boot, "boot.json");
            let check = cfg.health_check.unwrap();
            in_root(Path::new(&check.command[0]), "health-check.sh");
            assert_eq!(check.command[1], "./arg", "arguments are not paths");
            in_root(&cfg.repository.unwrap().root, "root.json");
            let ca_file = cfg.fetch.ca_file.unwrap();
            assert!(ca_file.is_absolute() && ca_file.ends_with("sub/ca.pem"));
            assert_eq!(cfg.path, path);
        }
    }

    #[test]
    fn bare_config_file_name_is_in_the_current_directory() {
        let paths = Paths::of_config(Path::new("updater.toml")).unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(paths.base, cwd);
        assert_eq!(
            paths.resolve(Path::new("./health-check.sh")),
            cwd.join("health-check.sh")
        );
        assert_eq!(
            paths.resolve(Path::new("/dev/sda2")),
            Path::new("/dev/sda2")
        );
    }

    #[test]
    fn bare_health_check_program_is_left_to_path() {
        let dir = tempfile::tempdir().unwrap();
        write_key(dir.path());
        let text = format!("{GOOD}[health_check]\ncommand = [\"health-check\", \"x/y\"]\n");
        let cfg = Config::parse(&text, &dir.path().join("updater.toml")).unwrap();
        assert_eq!(cfg.health_check.unwrap().command, ["health-check", "x/y"]);
    }

    /// [`GOOD`] with slot A's rootfs at `a` and slot B's at `b`.
    fn with_slots(a: &str, b: &str) -> String {
        GOOD.replace("\"slot-a.img\"", &format!("{a:?}"))
            .replace("\"slot-b.img\"", &format!("{b:?}"))
    }

    #[test]
    fn two_names_of_one_device_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        write_key(&root);
        fs::write(root.join("slot-a.img"), "A").unwrap();
        std::os::unix::fs::symlink("slot-a.img", root.join("alias.img")).unwrap();
        fs::hard_link(root.join("slot-a.img"), root.join("hard.img")).unwrap();
        fs::create_dir(root.join("sub")).unwrap();
        let a = root.join("slot-a.img").display().to_string();
        for (b, shown) in [
            ("alias.img", format!("alias.img -> {a}")),
            ("hard.img", "hard.img: inode".to_owned()),
            ("sub/../slot-a.img", format!("sub/../slot-a.img -> {a}")),
            ("./slot-a.img", format!("{a} and {a}:")),
            (&a, format!("{a} and {a}:")),
        ] {
            let err =
                Config::parse(&with_slots("slot-a.img", b), &root.join("u.toml")).unwrap_err();
            assert!(matches!(err, UpdateError::Config { .. }), "{err:?}");
            let err = err.to_string();
            assert!(
                err.contains("[slots.A] rootfs and [slots.B] rootfs are one device"),
                "{b}: {err}"
            );
            assert!(err.contains(&shown), "{b}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
        // Within one slot too.
        let text = with_slots("slot-a.img", "slot-b.img")
            .replace("[slots.A]", "[slots.A]\nkernel = \"alias.img\"")
            .replace("[slots.B]", "[slots.B]\nkernel = \"kernel-b.img\"");
        let err = Config::parse(&text, &root.join("u.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[slots.A] kernel and [slots.A] rootfs are one device"),
            "{err}"
        );
    }

    #[test]
    fn distinct_and_missing_devices_are_accepted() {
        let dir = tempfile::tempdir().unwrap();
        write_key(dir.path());
        fs::write(dir.path().join("slot-a.img"), "A").unwrap();
        fs::write(dir.path().join("slot-b.img"), "A").unwrap();
        let p = dir.path().join("u.toml");
        for (a, b) in [
            ("slot-a.img", "slot-b.img"),
            ("slot-a.img", "missing-b.img"),
            ("missing-a.img", "missing-b.img"),
            ("slot-a.img/missing", "missing-b.img"),
        ] {
            let cfg = Config::parse(&with_slots(a, b), &p);
            assert!(cfg.is_ok(), "{a}, {b}: {cfg:?}");
        }
        // Missing devices are compared by their normalised paths.
        let err = Config::parse(&with_slots("gone.img", "no/../gone.img"), &p)
            .unwrap_err()
            .to_string();
        assert!(err.contains("are one device"), "{err}");
        assert!(err.contains("not present"), "{err}");
    }

    #[test]
    fn same_device_follows_links_to_the_device_number() {
        let dir = tempfile::tempdir().unwrap();
        let null = Path::new("/dev/null");
        let link = dir.path().join("null-alias");
        std::os::unix::fs::symlink(null, &link).unwrap();
        assert!(same_device(null, &link).unwrap());
        assert!(!same_device(null, Path::new("/dev/zero")).unwrap());
        fs::write(dir.path().join("file"), "").unwrap();
        assert!(!same_device(null, &dir.path().join("file")).unwrap());
        let gone = dir.path().join("gone");
        assert!(same_device(&gone, &dir.path().join("x/../gone")).unwrap());
        assert!(!same_device(&gone, &dir.path().join("file")).unwrap());
        assert!(matches!(
            DeviceIdentity::of(null).unwrap(),
            DeviceIdentity::Char(_)
        ));
        assert_eq!(major_minor(0x103), "1:3");
        assert_eq!(major_minor((259 << 8) | 5), "259:5");
    }

    /// [`GOOD`] with the U-Boot backend and `settings` in `[bootloader]`.
    fn uboot(settings: &str) -> String {
        GOOD.replace(
            "backend = \"file\"\npath = \"boot.json\"",
            &format!("backend = \"uboot\"\n{settings}"),
        )
    }

    /// The U-Boot environment of a parsed configuration.
    fn uboot_env(cfg: Config) -> UbootEnvConfig {
        match cfg.bootloader {
            BootloaderConfig::Uboot { env, .. } => env,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn uboot_copies_come_from_fw_env_config() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        write_key(&root);
        let p = root.join("u.toml");
        // Single, with a device relative to the fw_env.config (and a size read as hex).
        fs::write(
            root.join("fw_env.config"),
            "# one copy\nflash.img 0x2000 4000\n",
        )
        .unwrap();
        let env =
            uboot_env(Config::parse(&uboot("fw_env_config = \"fw_env.config\""), &p).unwrap());
        assert_eq!(env.copies, [(root.join("flash.img"), 0x2000)]);
        assert_eq!(env.size, 0x4000);
        // Redundant.
        fs::create_dir(root.join("etc")).unwrap();
        fs::write(
            root.join("etc/fw_env.config"),
            "/dev/mmcblk0 0x3c0000 0x20000\n/dev/mmcblk0 0x3e0000 0x20000\n",
        )
        .unwrap();
        let text = uboot("fw_env_config = \"./etc/fw_env.config\"");
        let env = uboot_env(Config::parse(&text, &p).unwrap());
        let mmc = PathBuf::from("/dev/mmcblk0");
        assert_eq!(env.copies, [(mmc.clone(), 0x3c0000), (mmc, 0x3e0000)]);
        assert_eq!(env.size, 0x20000);
    }

    #[test]
    fn uboot_env_in_the_configuration_wins_over_fw_env_config() {
        let dir = tempfile::tempdir().unwrap();
        write_key(dir.path());
        let text = uboot(
            "fw_env_config = \"missing.config\"\nenv_size = 0x4000\n\
             env = [{ device = \"env.img\", offset = 0x100 }]",
        );
        let env = uboot_env(Config::parse(&text, &dir.path().join("u.toml")).unwrap());
        assert_eq!(env.copies, [(dir.path().join("env.img"), 0x100)]);
        assert_eq!(env.size, 0x4000);
    }

    #[test]
    fn bad_uboot_environment_settings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        write_key(&root);
        fs::write(root.join("fw_env.config"), "f 0 0x4000\n").unwrap();
        fs::write(root.join("bad.config"), "f 0 0x4000\nf zz 0x4000\n").unwrap();
        fs::write(root.join("tiny.config"), "f 0 0x4\n").unwrap();
        let file = |name: &str| format!("fw_env_config {}: ", root.join(name).display());
        for (settings, expected) in [
            (
                "fw_env_config = \"nope.config\"",
                file("nope.config") + "cannot read it",
            ),
            (
                "fw_env_config = \"bad.config\"",
                file("bad.config") + "fw_env.config line 2",
            ),
            (
                "fw_env_config = \"tiny.config\"",
                file("tiny.config") + "invalid U-Boot",
            ),
            (
                "env = [{ device = \"e\", offset = 0 }]",
                "env_size: needed with env".into(),
            ),
            ("env_size = 0x4000", "env_size: only with env".into()),
            ("env_size = 0x4000\nenv = []", "env: give one copy".into()),
        ] {
            let err = Config::parse(&uboot(settings), &root.join("u.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(&expected), "{settings}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }
}
