//! The updater's configuration (`/etc/ota/updater.toml` by default), parsed and checked at
//! the edge so the rest of the code can trust it. Every key is documented in docs/updater.md.
//!
//! Relative paths are taken relative to the configuration file's directory.

use crate::error::{Result, UpdateError};
use crate::slot::SlotName;
use ota_core::bundle::TrustPolicy;
use ota_core::keys::VerifyingKey;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the configuration is read from when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/ota/updater.toml";

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
}

#[derive(Debug, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
enum RawBootloader {
    Grub {
        grubenv: PathBuf,
        cmdline: Option<PathBuf>,
    },
    Uboot {
        env_size: usize,
        env: Vec<RawUbootCopy>,
        cmdline: Option<PathBuf>,
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
        let bad = |reason: String| UpdateError::Config {
            path: path.display().to_string(),
            reason,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let message = e.message().replace('\n', " ");
            match line {
                Some(line) => bad(format!("line {line}: {message}")),
                None => bad(message),
            }
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p.strip_prefix("./").unwrap_or(p))
            }
        };

        if !ota_core::bundle::manifest::is_valid_product(&raw.product) {
            return Err(bad(format!(
                "product {:?}: use printable ASCII without spaces",
                raw.product
            )));
        }
        let factory_version = raw
            .factory_version
            .as_deref()
            .map(semver::Version::parse)
            .transpose()
            .map_err(|e| bad(format!("factory_version: not a semantic version: {e}")))?;
        let reboot_command = raw.reboot_command.unwrap_or_else(|| vec!["reboot".into()]);
        if reboot_command.is_empty() {
            return Err(bad("reboot_command: must name a program".into()));
        }

        if raw.slots.len() != 2 {
            return Err(bad(format!(
                "[slots]: exactly two slots are needed (A/B), found {}",
                raw.slots.len()
            )));
        }
        let mut slots = BTreeMap::new();
        let mut image_names: Option<Vec<String>> = None;
        for (name, images) in raw.slots {
            let slot = SlotName::parse(&name).map_err(|e| bad(format!("[slots.{name}]: {e}")))?;
            if images.is_empty() {
                return Err(bad(format!("[slots.{name}]: map at least one image to a device, e.g. rootfs = \"/dev/mmcblk0p2\"")));
            }
            for image in images.keys() {
                if !ota_core::bundle::manifest::is_valid_image_name(image) {
                    return Err(bad(format!("[slots.{name}]: invalid image name {image:?}")));
                }
            }
            let names: Vec<String> = images.keys().cloned().collect();
            match &image_names {
                Some(first) if *first != names => {
                    return Err(bad(format!(
                        "[slots.{name}]: both slots must hold the same images ({} vs {})",
                        first.join(", "),
                        names.join(", ")
                    )))
                }
                _ => image_names = Some(names),
            }
            slots.insert(
                slot,
                images.into_iter().map(|(k, v)| (k, resolve(&v))).collect(),
            );
        }
        let mut all_devices: Vec<&PathBuf> = slots
            .values()
            .flat_map(|m: &BTreeMap<String, PathBuf>| m.values())
            .collect();
        all_devices.sort();
        if all_devices.windows(2).any(|w| w[0] == w[1]) {
            return Err(bad(
                "[slots]: two images share one device; every image needs its own".into(),
            ));
        }

        let bootloader = match raw.bootloader {
            RawBootloader::Grub { grubenv, cmdline } => BootloaderConfig::Grub {
                grubenv: resolve(&grubenv),
                cmdline: resolve(&cmdline.unwrap_or_else(|| "/proc/cmdline".into())),
            },
            RawBootloader::Uboot {
                env_size,
                env,
                cmdline,
            } => {
                let copies: Vec<(PathBuf, u64)> = env
                    .into_iter()
                    .map(|c| (resolve(&c.device), c.offset))
                    .collect();
                if copies.is_empty() || copies.len() > 2 {
                    return Err(bad(
                        "[bootloader] env: give one copy (single) or two (redundant)".into(),
                    ));
                }
                let env = crate::bootloader::ubootenv::UbootEnvConfig {
                    copies,
                    size: env_size,
                };
                BootloaderConfig::Uboot {
                    env,
                    cmdline: resolve(&cmdline.unwrap_or_else(|| "/proc/cmdline".into())),
                }
            }
            RawBootloader::File { path } => BootloaderConfig::File {
                path: resolve(&path),
            },
        };

        if raw.trust.keys.is_empty() {
            return Err(bad(
                "[trust] keys: list at least one trusted public key".into()
            ));
        }
        let mut keys = Vec::new();
        for key in &raw.trust.keys {
            keys.push(
                VerifyingKey::from_file(&resolve(key))
                    .map_err(|e| bad(format!("[trust] keys: {e}")))?,
            );
        }
        let trust = TrustPolicy::new(keys, raw.trust.threshold.unwrap_or(1))
            .map_err(|e| bad(format!("[trust] threshold: {e}")))?;

        let health_check = match raw.health_check {
            Some(h) => {
                if h.command.is_empty() {
                    return Err(bad("[health_check] command: must name a program".into()));
                }
                let timeout_secs = h.timeout_secs.unwrap_or(60);
                if timeout_secs == 0 {
                    return Err(bad("[health_check] timeout_secs: must be at least 1".into()));
                }
                let mut command = h.command;
                // A relative program path with a slash is relative to this file, like every
                // other path here; a bare name is looked up in PATH.
                if command[0].contains('/') {
                    command[0] = resolve(Path::new(&command[0])).display().to_string();
                }
                Some(HealthCheck {
                    command,
                    timeout_secs,
                })
            }
            None => None,
        };
        let mut fetch = crate::fetch::FetchSettings::default();
        if let Some(r) = &raw.repository {
            fetch.ca_file = r.ca_file.as_deref().map(&resolve);
            if let Some(s) = r.connect_timeout_secs {
                fetch.connect_timeout = std::time::Duration::from_secs(s.max(1));
            }
            if let Some(b) = r.min_speed_bytes_per_sec {
                fetch.min_bytes_per_sec = b;
            }
            if let Some(s) = r.min_speed_window_secs {
                fetch.min_speed_window = std::time::Duration::from_secs(s.max(1));
            }
        }
        let repository = match raw.repository {
            None => None,
            Some(r) => {
                let base = r.url.trim_end_matches('/').to_owned();
                if !(base.starts_with("http://") || base.starts_with("https://")) {
                    return Err(bad(
                        "repository.url must start with http:// or https://".into()
                    ));
                }
                Some(Repository {
                    metadata_url: r
                        .metadata_url
                        .map(|u| u.trim_end_matches('/').to_owned())
                        .unwrap_or_else(|| format!("{base}/metadata")),
                    targets_url: r
                        .targets_url
                        .map(|u| u.trim_end_matches('/').to_owned())
                        .unwrap_or_else(|| format!("{base}/targets")),
                    url: base,
                    channel: r.channel.unwrap_or_else(|| "stable".into()),
                    root: resolve(&r.root),
                })
            }
        };
        let defaults = DaemonSettings::default();
        let daemon = match raw.daemon {
            None => defaults,
            Some(d) => DaemonSettings {
                interval_secs: d.interval_secs.unwrap_or(defaults.interval_secs).max(1),
                jitter_secs: d.jitter_secs.unwrap_or(defaults.jitter_secs),
                reboot: d.reboot.unwrap_or(defaults.reboot),
                max_backoff_secs: d
                    .max_backoff_secs
                    .unwrap_or(defaults.max_backoff_secs)
                    .max(1),
            },
        };
        Ok(Config {
            path: path.to_owned(),
            product: raw.product,
            state_dir: resolve(&raw.state_dir),
            factory_version,
            reboot_command,
            slots,
            bootloader,
            trust,
            health_check,
            repository,
            fetch,
            daemon,
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
